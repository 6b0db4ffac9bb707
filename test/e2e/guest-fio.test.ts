// fio in the guest: the ELF reading that decides what goes into the fio layer
// (checked against binutils and the host's own loader), then a real boot with
// the layer: `fio --version`, and fio driving our virtio-blk over vfio-user
// (a write+verify job at depth 16, a random-read job at depth 8).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { provision, provisionFio } from '../../qemu-configs/provision.js';
import { bootGuest, describeBoot } from '../../qemu-configs/boot.js';
import { readElfDynamic } from '../../qemu-configs/provision/elf-dynamic.js';
import { realInRoot, sharedObjectClosure } from '../../qemu-configs/provision/fio.js';
import { FIO_HELPERS, parseFioTerse } from '../../qemu-configs/guest-scripts/fio.js';
import { VIRTIO_HELPERS } from '../../qemu-configs/guest-scripts/virtio.js';
import { startServer, type RunningServer } from '../../server/runtime.js';
import type { VirtioBlk } from '../../devices/virtio-blk/index.js';

t.setTimeout(30 * 60 * 1000);

const MiB = 1 << 20;
const HOST_BIN = '/usr/bin/ls';

function readelf(args: string[]): string {
  return execFileSync('readelf', args, { encoding: 'utf8' });
}

t.test('ELF dynamic facts match readelf', { skip: !fs.existsSync(HOST_BIN) && `no ${HOST_BIN}` }, async (t) => {
  const file = fs.realpathSync(HOST_BIN);
  const d = readElfDynamic(fs.readFileSync(file));
  const dyn = readelf(['-d', file]);
  const needed = [...dyn.matchAll(/\(NEEDED\)\s+Shared library: \[(.*)\]/g)].map((m) => m[1]);
  t.ok(needed.length > 0, 'readelf lists needed libraries');
  t.same(d.needed, needed, 'the same DT_NEEDED list, in order');
  const interp = /Requesting program interpreter: (.*)\]/.exec(readelf(['-l', file]))?.[1];
  t.equal(d.interpreter, interp, 'the same PT_INTERP');

  const libc = fs.realpathSync(path.join('/lib/x86_64-linux-gnu', 'libc.so.6'));
  const l = readElfDynamic(fs.readFileSync(libc));
  t.equal(l.soname, 'libc.so.6', "libc's DT_SONAME");
  t.equal(l.interpreter !== undefined, /program interpreter/.test(readelf(['-l', libc])), 'PT_INTERP only where readelf sees one');

  const good = fs.readFileSync(file);
  t.throws(() => readElfDynamic(good.subarray(0, 40)), /not an ELF/, 'a truncated file');
  const noMagic = Buffer.from(good);
  noMagic[1] = 0;
  t.throws(() => readElfDynamic(noMagic), /not an ELF/, 'a wrong magic');
  const manyHeaders = Buffer.from(good);
  manyHeaders.writeUInt16LE(0xffff, 0x38);
  t.throws(() => readElfDynamic(manyHeaders), /program header table/, 'a program header count past the file');
  const farHeaders = Buffer.from(good);
  farHeaders.writeBigUInt64LE(BigInt(good.length), 0x20);
  t.throws(() => readElfDynamic(farHeaders), /program header table/, 'a program header table past the end');
});

t.test("the shared-object closure is what the host's loader loads", async (t) => {
  // The host is its own unpacked tree: the closure of ls from / must be ldd's list.
  const ours = await sharedObjectClosure('/', HOST_BIN);
  const ldd = execFileSync('ldd', [HOST_BIN], { encoding: 'utf8' });
  const lddFiles = [...ldd.matchAll(/=>\s+(\S+)\s+\(0x/g)].map((m) => fs.realpathSync(m[1]!));
  const interp = readElfDynamic(fs.readFileSync(fs.realpathSync(HOST_BIN))).interpreter!;
  t.equal(ours[0]!.guestPath, interp, 'the loader comes first, at its PT_INTERP path');
  t.same(
    ours.slice(1).map((o) => fs.realpathSync(o.file)).sort(),
    lddFiles.filter((f) => f !== fs.realpathSync(interp)).sort(),
    'the same libraries as ldd',
  );

  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-root-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.mkdirSync(path.join(root, 'usr/lib64'), { recursive: true });
  fs.writeFileSync(path.join(root, 'usr/lib64/real'), 'x');
  fs.symlinkSync('usr/lib64', path.join(root, 'lib64'));
  fs.symlinkSync('/usr/lib64/real', path.join(root, 'usr/lib64/abs'));
  fs.symlinkSync('loop', path.join(root, 'loop'));
  t.equal(await realInRoot(root, '/lib64/abs'), path.join(root, 'usr/lib64/real'), 'absolute links stay inside the root');
  t.equal(await realInRoot(root, '/../../lib64/real'), path.join(root, 'usr/lib64/real'), "'..' stops at the root");
  await t.rejects(realInRoot(root, '/loop'), /too many symbolic links/, 'a link loop');
  await t.rejects(realInRoot(root, '/usr/lib64/missing'), { code: 'ENOENT' }, 'a missing file');
});

t.test('the guest runs fio from the fio layer, against our virtio-blk', async (t) => {
  const log = (m: string) => t.comment(`provision: ${m}`);
  const p = await provision({ log });
  const fio = await provisionFio({ log });
  t.match(fio.version, /^3\.39/, `trixie's fio (${fio.version})`);
  const base = fs.statSync(p.initramfsBase);
  t.ok(fs.statSync(fio.archive).size > 1 * MiB, 'the fio layer is its own archive');

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-fio-'));
  const socket = path.join(dir, 'blk.sock');
  const image = path.join(dir, 'disk.img');
  let rt: RunningServer | null = null;
  t.teardown(async () => {
    await rt?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  rt = await startServer({ devices: [{ name: 'blk0', kind: 'blk', socket, options: { disk: image, size: 64 * MiB } }] });
  const script = `${VIRTIO_HELPERS}${FIO_HELPERS}
result fio_version "$(fio --version 2>&1)"
v=$(virtio_find 0x0002) || { result error "no virtio-blk"; exit 1; }
dev=/dev/$(ls $v/block | head -n 1)
fio_run verify --name=verify --filename=$dev --ioengine=libaio --direct=1 --rw=randwrite --bs=4k --size=8M --iodepth=16 --verify=crc32c --do_verify=1
fio_run randread --name=rr --filename=$dev --ioengine=libaio --direct=1 --rw=randread --bs=4k --size=32M --iodepth=8 --time_based --runtime=2
echo @@DONE
`;
  const r = await bootGuest({ provisioned: p, script, layers: [fio.archive], vfioUserSockets: [socket], timeoutMs: 5 * 60 * 1000 });
  const why = describeBoot(r);
  t.equal(r.results.fio_version, 'fio-3.39', 'fio --version in the guest', { boot: why });
  t.ok(r.done && r.exitCode === 0, 'the script ran to its end', { boot: why });
  t.same(r.moduleFailures, [], 'the base image is intact: every module loaded');
  t.equal(fs.statSync(p.initramfsBase).mtimeMs, base.mtimeMs, 'the base image was not rebuilt');

  t.match(r.results.verify_status, /^0 /, 'the write+verify job passed', { boot: why });
  const v = parseFioTerse(r.results.verify!);
  t.equal(v.error, 0, 'no fio error');
  t.equal(v.write.kib, 8 * 1024, 'fio wrote 8 MiB');
  t.equal(v.read.kib, 8 * 1024, 'and read all of it back to verify it');
  t.match(r.results.randread_status, /^0 /, 'the random-read job passed', { boot: why });
  const rr = parseFioTerse(r.results.randread!);
  t.equal(rr.fio, 'fio-3.39');
  t.ok(rr.read.iops > 0 && rr.read.kib > 0, `random reads completed (${rr.read.iops} IOPS, ${rr.read.latMeanUs.toFixed(0)} µs mean)`);
  const stats = (rt.models.get('blk0') as VirtioBlk).stats;
  t.ok(stats.reads >= rr.read.kib / 4 + v.read.kib / 4, `the reads reached our device (${stats.reads})`);
  t.ok(stats.writes >= v.write.kib / 4, `the writes reached our device (${stats.writes})`);
  t.equal(stats.ioErrors, 0, 'no request failed');
  t.throws(() => parseFioTerse('3;fio-3.39;x'), /not a fio terse/, 'a short line is refused');
});
