// End to end: in deterministic mode every byte the guest gets from our
// virtio-rng comes from the seeded generator. The guest kernel's own hwrng
// reads interleave with the script's (so the script's bytes are not at a
// fixed place), but they are one stream: the host regenerates the device's
// whole output from the seed alone and finds the guest's bytes in it, and
// finds them nowhere in the stream of another seed.
//
// VFIO_USER_TS_E2E_LOG=debug (any server log level) shows the server's log
// on failure (the last lines; `warn` is kept by default).
import t from 'tap';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { provision } from '../../qemu-configs/provision.js';
import { bootGuest, describeBoot } from '../../qemu-configs/boot.js';
import { virtioRngGuestScript } from '../../qemu-configs/guest-scripts/virtio.js';
import { serveInTempDir } from './server-log.js';
import type { VirtioRng } from '../../devices/virtio-rng/index.js';
import { SeededRandom } from '../../faults/prng.js';

t.setTimeout(30 * 60 * 1000);

const BYTES = 64 * 1024;
const SEED = 20261206;

/** The first `n` bytes device `name` serves with `seed` (what runtime.ts seeds it with). */
function stream(seed: number, name: string, n: number): Buffer {
  const b = Buffer.alloc(n);
  new SeededRandom(seed, `device:${name}`).fill(b);
  return b;
}

t.test('deterministic mode: the guest reads the seeded stream from virtio-rng', async (t) => {
  const p = await provision({ log: (m) => t.comment(`provision: ${m}`) });
  const { rt, logLines, socket } = await serveInTempDir(t, 'vut-det-', (dir) => {
    const socket = path.join(dir, 'rng.sock');
    return { socket, spec: { devices: [{ name: 'rng0', kind: 'rng', socket, options: {} }], deterministic: SEED } };
  });
  const r = await bootGuest({
    provisioned: p,
    script: virtioRngGuestScript({ bytes: BYTES }),
    vfioUserSockets: [socket],
    timeoutMs: 10 * 60 * 1000,
  });
  const res = r.results;
  const served = (rt.models.get('rng0') as VirtioRng).bytesServed;
  t.comment(`accel ${r.accel}; the device served ${served} bytes; the guest read ${res.read_bytes}`);
  t.ok(r.done && r.exitCode === 0, 'the guest ran its script to the end');
  t.match(res.read_status, /^0 /, 'dd from /dev/hwrng succeeded');
  t.equal(res.read_bytes, String(BYTES));
  t.ok(served >= BYTES, 'the device served at least what the guest read');
  const first = Buffer.from(res.first_bytes ?? '', 'hex');
  t.equal(first.length, 16, 'the guest printed its first 16 bytes');
  const ours = stream(SEED, 'rng0', served);
  const at = ours.indexOf(first);
  t.ok(at >= 0, `the guest's first bytes are in the seeded stream (at ${at} of ${served})`);
  t.equal(stream(SEED + 1, 'rng0', served).indexOf(first), -1, 'and nowhere in the stream of another seed');
  // The script read 64 KiB in 1 KiB reads; when the kernel took nothing in
  // between, they are the stream's next 64 KiB. Said, not asserted: the
  // kernel's hwrng thread may read at any time.
  const md5 = createHash('md5').update(ours.subarray(at, at + BYTES)).digest('hex');
  t.comment(`64 KiB from there ${md5 === res.md5 ? 'match' : 'do not match'} the guest's md5 (the kernel ${md5 === res.md5 ? 'took nothing between' : 'read in between'})`);
  if (!t.passing()) t.comment(`${describeBoot(r)}\n--- server log ---\n${logLines.join('\n')}`);
});
