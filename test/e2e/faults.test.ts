// End to end: an injected I/O error reaches the guest, and only there.
// Unmodified QEMU 11.1 boots the Debian guest against our virtio-blk; a
// fault rule fails every read that touches sectors [X, X+8) with IOERR.
//   - the guest's O_DIRECT dd over that range fails with an I/O error (twice,
//     and once more at the end), and a buffered read across it fails too;
//   - the ranges around it, and the disk's first MiB, read back the image's
//     bytes;
//   - the server keeps serving (the reads after the faults work, the guest
//     powers off by itself);
//   - the count is exact: the rule fired on every read request that touched
//     the range (matched = injected), the device completed that many with
//     IOERR and nothing else failed, the fault events say the same, and the
//     guest kernel logged one I/O error per request it sent.
//
// VFIO_USER_TS_E2E_LOG=debug (any server log level) shows the server's log
// on failure (the last lines; `warn` is kept by default).
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { provision } from '../../qemu-configs/provision.js';
import { bootGuest, describeBoot } from '../../qemu-configs/boot.js';
import { blkFaultGuestScript } from '../../qemu-configs/guest-scripts/blk-faults.js';
import { serveInTempDir } from './server-log.js';
import type { VirtioBlk } from '../../devices/virtio-blk/index.js';
import type { FaultEvent } from '../../faults/events.js';

t.setTimeout(30 * 60 * 1000);

const MiB = 1 << 20;
const IMAGE_MIB = 16;
/** The failing range: 8 sectors (one 4 KiB page) at 2 MiB, away from anything the boot reads. */
const X = 4096;
const EMPTY_MD5 = createHash('md5').update(Buffer.alloc(0)).digest('hex');

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

t.test('an injected IOERR on sectors [X, X+8) reaches the guest, and only there', async (t) => {
  const p = await provision({ log: (m) => t.comment(`provision: ${m}`) });
  const { rt, logLines, socket, content } = await serveInTempDir(t, 'vut-faults-', (dir) => {
    const socket = path.join(dir, 'blk.sock');
    const image = path.join(dir, 'disk.img');
    const content = randomBytes(IMAGE_MIB * MiB);
    fs.writeFileSync(image, content);
    const spec = {
      devices: [{ name: 'blk0', kind: 'blk', socket, options: { disk: image } }],
      faults: [{ id: 'bad-sectors', match: { lba: [X, X + 8], op: 'read' }, action: { type: 'blk-status', status: 'ioerr' } }],
    };
    return { socket, content, spec };
  });
  const events: FaultEvent[] = [];
  rt.faults!.onFault((e) => events.push(e));

  const started = Date.now();
  const r = await bootGuest({
    provisioned: p,
    script: blkFaultGuestScript({ sector: X }),
    vfioUserSockets: [socket],
    timeoutMs: 10 * 60 * 1000,
  });
  const res = r.results;
  const why = () => `${describeBoot(r)}\n--- server log (last ${logLines.length} lines) ---\n${logLines.join('\n')}`;
  t.comment(`boot+script ${((Date.now() - started) / 1000).toFixed(1)} s (accel ${r.accel})`);
  t.comment(`guest: ${r.lines.filter((l) => l.startsWith('IOERR ')).join('\n')}`);

  t.ok(r.done && r.exitCode === 0, 'the guest ran its script to the end');
  t.equal(res.blk_driver, 'virtio_blk', 'virtio_blk bound to our device');
  const at = (sector: number, bytes: number) => md5(content.subarray(sector * 512, sector * 512 + bytes));
  for (const name of ['bad1', 'bad2', 'again']) {
    t.match(res[`${name}_status`], /^1 .*Input\/output error/, `${name}: dd over the range fails with an I/O error`);
    t.equal(res[`${name}_md5`], EMPTY_MD5, `${name}: no bytes came back`);
  }
  t.match(res.buffered_status, /^1 .*Input\/output error/, 'a buffered read across the range fails too');
  t.equal(res.buffered_md5, at(X - 32, 16 * 1024), '... after handing over the 16 KiB below it intact');
  t.match(res.before_status, /^0 /, 'the 64 KiB below the range read');
  t.equal(res.before_md5, at(X - 128, 64 * 1024), '... and hold the image bytes');
  t.match(res.after_status, /^0 /, 'the 64 KiB above the range read');
  t.equal(res.after_md5, at(X + 8, 64 * 1024), '... and hold the image bytes');
  t.match(res.head_status, /^0 /, 'the first MiB read');
  t.equal(res.head_md5, at(0, MiB), '... and holds the image bytes');
  t.ok(r.poweredOff, 'the guest powered off by itself: the server kept serving');

  const listed = rt.faults!.list();
  const rule = listed.rules.find((x) => x.rule.id === 'bad-sectors')!;
  const blk = (rt.models.get('blk0') as VirtioBlk).stats;
  const guestErrors = Number(res.ioerr_lines);
  t.comment(`rule: matched ${rule.matched}, injected ${rule.injected}; device ioErrors ${blk.ioErrors}; guest I/O error lines ${guestErrors}`);
  t.ok(rule.injected >= 4, 'at least the three direct reads and the buffered one');
  t.equal(rule.matched, rule.injected, 'every read request that touched the range got the fault');
  t.equal(blk.ioErrors, rule.injected, 'the device failed exactly those requests, no other');
  t.equal(events.length, rule.injected, 'one fault event per injected fault');
  t.ok(events.every((e) => e.action === 'blk-status' && e.op === 'read' && e.lba! < X + 8 && e.lba! + e.count! > X), 'every event names a read over the range');
  t.same(listed.injected, { blk0: { 'blk-status': rule.injected } }, 'the totals agree');
  t.equal(guestErrors, rule.injected, 'the guest kernel saw exactly as many failed requests as the server injected');
  if (!t.passing()) t.comment(why());
});
