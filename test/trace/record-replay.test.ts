// Recording, trace tools and replay without QEMU: the test client plays
// QEMU and the guest driver against a real virtio-blk server with
// --record; the recording is read back, shown, counted, and replayed
// against a fresh server with a fresh image (which must end up identical),
// and against one whose image differs in a sector the guest read first
// (which must diverge there, with a field diff).
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import * as native from '../../native/index.js';
import { startServer, type RunningServer } from '../../server/runtime.js';
import { Command } from '../../protocol/constants.js';
import { encodeDmaMapRequest } from '../../protocol/commands/dma-map.js';
import { VfioUserClient } from '../../testing/vfio-user-client.js';
import { BlkStatus, BlkType } from '../../devices/virtio-blk/constants.js';
import { BASE, GuestMem, until } from '../devices/virtio/env.js';
import { bringUp, submitBlk, type DriverRig } from '../devices/virtio/socket-rig.js';
import { readTrace } from '../../trace/reader.js';
import { isDma, isMessage } from '../../trace/format.js';
import { showLines } from '../../trace/show.js';
import { traceStats } from '../../trace/stats.js';
import { replay } from '../../replay/replay.js';
import { replayCommand } from '../../cli/replay-cli.js';
import { traceCommand } from '../../cli/trace-cli.js';

const MiB = 1 << 20;
const MEM = 8 * MiB;
const IMAGE = 16 * MiB;
/** The sector the "guest" reads before anything writes it. */
const FIRST_READ = 100;
const DATA_SECTOR = 2048;

type Memory = 'messages' | 'memfd';

function tmpDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-rr-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function blkServer(dir: string, name: string, image: string, record?: { file: string; dma?: boolean; maxBytes?: number }): Promise<{ rt: RunningServer; sock: string }> {
  const sock = path.join(dir, `${name}.sock`);
  const rt = await startServer({
    devices: [{ name: 'blk0', kind: 'blk', socket: sock, options: { disk: image, size: IMAGE } }],
    ...(record ? { record } : {}),
  });
  return { rt, sock };
}

/** What the recorded "guest" did: read a sector nobody wrote, write 64 KiB, read it back, flush. */
async function guestRun(sock: string, memory: Memory): Promise<{ written: Buffer; firstRead: Buffer }> {
  const c = await VfioUserClient.open(sock);
  let unmap: (() => void) | undefined;
  const efds: number[] = [];
  try {
    let bytes: Uint8Array;
    if (memory === 'memfd') {
      const fd = native.memfdCreate('guest-ram', MEM);
      native.addSeals(fd, native.F_SEAL_SHRINK | native.F_SEAL_GROW);
      const ab = native.mmap(fd, 0, MEM, native.PROT_READ | native.PROT_WRITE);
      bytes = new Uint8Array(ab);
      unmap = () => native.munmap(ab);
      const r = await c.request(Command.DMA_MAP, encodeDmaMapRequest({ addr: BigInt(BASE), size: BigInt(MEM) }), { fds: [fd] });
      native.close(fd);
      if (r.errno) throw new Error(`DMA_MAP errno ${r.errno}`);
    } else {
      const buf = Buffer.alloc(MEM);
      c.guest = { base: BigInt(BASE), mem: buf };
      bytes = buf;
      const r = await c.request(Command.DMA_MAP, encodeDmaMapRequest({ addr: BigInt(BASE), size: BigInt(MEM) }));
      if (r.errno) throw new Error(`DMA_MAP errno ${r.errno}`);
    }
    const rig: DriverRig = { c, mem: new GuestMem(bytes, BASE), efds };
    const ring = await bringUp(rig);
    const first = submitBlk(rig, ring, BlkType.IN, FIRST_READ, { inLen: 4096 });
    await until(() => ring.usedIdx === 1, 'first read used', 10_000);
    const firstRead = Buffer.from(rig.mem.read(first.din, 4096));
    ring.usedEvent = 1;
    const written = randomBytes(64 * 1024);
    const w = submitBlk(rig, ring, BlkType.OUT, DATA_SECTOR, { out: written });
    await until(() => ring.usedIdx === 2, 'write used', 10_000);
    if (rig.mem.read(w.st, 1)[0] !== BlkStatus.OK) throw new Error('write failed');
    ring.usedEvent = 2;
    const rd = submitBlk(rig, ring, BlkType.IN, DATA_SECTOR, { inLen: written.length });
    await until(() => ring.usedIdx === 3, 'read used', 10_000);
    if (!rig.mem.read(rd.din, written.length).equals(written)) throw new Error('read back differs');
    ring.usedEvent = 3;
    submitBlk(rig, ring, BlkType.FLUSH, 0, {});
    await until(() => ring.usedIdx === 4, 'flush used', 10_000);
    // Let the device's last ring writes come before the client goes.
    await new Promise((r) => setTimeout(r, 50));
    return { written, firstRead };
  } finally {
    c.close();
    unmap?.();
    for (const fd of efds) native.close(fd);
  }
}

/** Records one run; returns the recording's path and the image it left. */
async function recordRun(t: Test, dir: string, memory: Memory): Promise<{ file: string; image: string; written: Buffer }> {
  const image = path.join(dir, 'orig.img');
  const file = path.join(dir, `run-${memory}.vut`);
  const { rt, sock } = await blkServer(dir, 'orig', image, { file, dma: memory === 'memfd' });
  try {
    const { written, firstRead } = await guestRun(sock, memory);
    t.ok(firstRead.equals(Buffer.alloc(4096)), 'the first read saw the fresh image (zeros)');
    await until(() => !rt.host('blk0').connected, 'disconnect');
    return { file, image, written };
  } finally {
    await rt.close();
  }
}

async function replayAgainst(dir: string, name: string, file: string, prepare?: (image: string) => void, ignore: string[] = []) {
  const image = path.join(dir, `${name}.img`);
  if (prepare) prepare(image);
  const { rt, sock } = await blkServer(dir, name, image);
  try {
    const r = await replay(readTrace(file), { socket: sock, ignore, timeoutMs: 5000 });
    await until(() => !rt.host('blk0').connected, 'replay disconnect');
    return { r, image };
  } finally {
    await rt.close();
  }
}

for (const memory of ['messages', 'memfd'] as const) {
  t.test(`record and replay a virtio-blk session, guest memory ${memory === 'messages' ? 'by DMA_READ/DMA_WRITE' : 'in a memfd, with --record-dma'}`, async (t) => {
    const dir = tmpDir(t);
    const { file, image } = await recordRun(t, dir, memory);
    const trace = readTrace(file);
    t.equal(trace.truncated, false, 'the recording is whole');
    t.equal(trace.header.dma, memory === 'memfd', 'the header says whether guest memory was recorded');
    const msgs = trace.records.filter(isMessage);
    t.equal(msgs[0]?.header.command, Command.VERSION, 'the first message is the client\'s VERSION');
    t.ok(msgs.some((m) => m.from === 'server' && m.header.command === Command.VERSION), 'and our reply is recorded');
    const irqs = msgs.find((m) => m.header.command === Command.DEVICE_SET_IRQS && m.fds?.length);
    t.same(irqs?.fds?.map((f) => f.kind), ['eventfd', 'eventfd'], 'SET_IRQS eventfds recorded as kind eventfd');
    const regionReads = msgs.filter((m) => m.header.command === Command.REGION_READ);
    t.ok(regionReads.some((m) => m.from === 'client') && regionReads.some((m) => m.from === 'server'),
      'REGION_READ requests and their replies are recorded (the raw fast path is off while recording)');
    t.ok(msgs.every((m) => m.device === 'blk0' && m.session === 1), 'every message names device and session');
    t.ok(msgs.every((m, i) => i === 0 || m.t >= msgs[i - 1]!.t), 'timestamps are monotonic');
    if (memory === 'messages') {
      const dmaReads = msgs.filter((m) => m.from === 'server' && m.header.command === Command.DMA_READ);
      const dmaReplies = msgs.filter((m) => m.from === 'client' && m.header.command === Command.DMA_READ);
      t.ok(dmaReads.length > 0 && dmaReads.length === dmaReplies.length, `our DMA_READs and their replies are recorded (${dmaReads.length})`);
      t.equal(trace.records.filter(isDma).length, 0, 'no guest-memory records without --record-dma');
    } else {
      const map = msgs.find((m) => m.header.command === Command.DMA_MAP && m.from === 'client');
      t.equal(map?.fds?.[0]?.kind, 'memfd', 'the DMA_MAP fd is recorded as a memfd');
      t.equal(map?.fds?.[0]?.size, MEM, 'with its size');
      t.equal(map?.fds?.[0]?.seals, native.F_SEAL_SHRINK | native.F_SEAL_GROW, 'and its seals');
      const dma = trace.records.filter(isDma);
      const bytes = (op: string) => dma.filter((d) => d.op === op).reduce((n, d) => n + d.data.length, 0);
      t.ok(bytes('read') > 64 * 1024, `the written data was recorded as read from guest memory (${bytes('read')} bytes read)`);
      t.ok(bytes('write') > 64 * 1024 + 4096, `the data read was recorded as written to guest memory (${bytes('write')} bytes written)`);
    }

    // trace show: decoded lines
    const lines = [...showLines(trace.records)];
    t.match(lines.join('\n'), /C->S VERSION #\d+ major=0 minor=0/, 'show decodes VERSION');
    t.match(lines.join('\n'), /C->S REGION_WRITE #\d+ noReply=true offset=\d+ region=4 count=2/, 'show decodes a posted doorbell');
    const onlyMaps = [...showLines(trace.records, { commands: ['dma_map'] })];
    t.equal(onlyMaps.length, 2, 'the command filter keeps DMA_MAP and its reply');
    const region7 = [...showLines(trace.records, { region: 7 })];
    t.ok(region7.length > 0 && region7.every((l) => /region=7/.test(l)), 'the region filter keeps config-space accesses only');
    t.equal([...showLines(trace.records, { device: 'other' })].length, 0, 'the device filter');
    t.equal([...showLines(trace.records, { to: 0 })].length, 0, 'the time filter');

    // trace stats: counts and latency
    const s = traceStats(trace.records);
    const version = s.commands.get('VERSION')!;
    t.same([version.fromClient, version.replies, version.errors], [1, 1, 0], 'stats: one VERSION, answered');
    t.equal(version.latencyUs.length, 1, 'stats: VERSION latency measured');
    const rr = s.commands.get('REGION_READ')!;
    t.equal(rr.fromClient, regionReads.filter((m) => m.from === 'client').length, 'stats: REGION_READ count');
    t.equal(s.sessions, 1, 'stats: one session');
    t.ok(s.maps.some((m) => m.maps === 1 && m.live === 1 && m.bytes === BigInt(MEM)), 'stats: the DMA mapping in the timeline');

    // Replay against a fresh server with a fresh image: no divergence, the same image.
    const fresh = await replayAgainst(dir, 'fresh', file);
    t.equal(fresh.r.divergence, null, 'replay: 0 divergences', { divergence: fresh.r.divergence });
    t.equal(fresh.r.matched, msgs.filter((m) => m.from === 'server').length, `replay: every recorded server message matched (${fresh.r.matched})`);
    t.ok(fs.readFileSync(fresh.image).equals(fs.readFileSync(image)), 'replay: the image is byte-identical to the recorded run\'s');

    // Against an image that differs in the sector read before any write.
    const changed = await replayAgainst(dir, 'changed', file, (img) => {
      const b = Buffer.alloc(IMAGE);
      b[FIRST_READ * 512 + 10] = 0x5a;
      fs.writeFileSync(img, b);
    });
    const d = changed.r.divergence;
    t.ok(d, 'replay against a changed image diverges');
    const rec = trace.records[d?.record ?? 0];
    if (memory === 'messages') {
      t.ok(isMessage(rec!) && rec.header.command === Command.DMA_WRITE && rec.from === 'server', 'at our recorded DMA_WRITE of the sector', { d });
      t.match(d?.fields.map((f) => f.field).join(','), /^data \(4096 vs 4096 bytes, first difference at byte 10\)/, 'field diff: data, at byte 10');
    } else {
      // Shared memory: the sector reaches guest memory without a message; the
      // device's recorded write of it (--record-dma) is what differs.
      t.ok(rec && isDma(rec) && rec.op === 'write' && rec.data.length === 4096, 'at the device\'s recorded guest-memory write of the sector', { d });
      t.match(d?.fields.map((f) => f.field).join(','), /^data \(4096 vs 4096 bytes, first difference at byte 10\)/, 'field diff: data, at byte 10');
      t.match(d?.recorded ?? '', /-- dma op=write iova=0x[0-9a-f]+ data=0{32}…\(4096 bytes\)/, 'the recorded access is printed');
    }
  });
}

t.test('replay CLI: exit 0 on a match, 1 with the divergence printed, --ignore skips a field', async (t) => {
  const dir = tmpDir(t);
  const { file } = await recordRun(t, dir, 'messages');
  const run = async (name: string, args: string[], prepare?: (img: string) => void) => {
    const image = path.join(dir, `${name}.img`);
    if (prepare) prepare(image);
    const { rt, sock } = await blkServer(dir, name, image);
    let out = '';
    try {
      const code = await replayCommand([file, '--socket', sock, ...args], { out: (s) => { out += s; }, err: (s) => { out += s; } });
      await until(() => !rt.host('blk0').connected, 'replay disconnect');
      return { code, out };
    } finally {
      await rt.close();
    }
  };
  const ok = await run('ok', []);
  t.equal(ok.code, 0, 'exit 0');
  t.match(ok.out, /0 divergences/, 'says 0 divergences');
  const changed = (img: string) => {
    const b = Buffer.alloc(IMAGE);
    b[FIRST_READ * 512 + 10] = 0x5a;
    fs.writeFileSync(img, b);
  };
  const bad = await run('bad', [], changed);
  t.equal(bad.code, 1, 'exit 1 on a divergence');
  t.match(bad.out, /DIVERGENCE at record \d+ .*DMA_WRITE/, 'names the message');
  t.match(bad.out, /recorded: S->C DMA_WRITE #\d+ addr=0x[0-9a-f]+ count=4096/, 'prints the recorded message decoded');
  t.match(bad.out, /data \(4096 vs 4096 bytes, first difference at byte 10\): recorded @6: 0{32}, replayed @6: 000000005a/, 'and the field diff');
  const ignored = await run('ignored', ['--ignore', 'DMA_WRITE.data'], changed);
  t.equal(ignored.code, 0, '--ignore DMA_WRITE.data: the changed sector is not a divergence', { out: ignored.out });
  const listed = await run('listed', ['--ignore', 'REGION_READ.data,DMA_WRITE.data'], changed);
  t.equal(listed.code, 0, '--ignore with a comma-separated list', { out: listed.out });
});

t.test('a recording cut short is read up to its last whole record; trace show says so', async (t) => {
  const dir = tmpDir(t);
  const { file } = await recordRun(t, dir, 'messages');
  const whole = readTrace(file);
  const bytes = fs.readFileSync(file);
  const cut = path.join(dir, 'cut.vut');
  let checked = 0;
  for (const n of [200, Math.floor(bytes.length / 2), bytes.length - 1]) {
    fs.writeFileSync(cut, bytes.subarray(0, n));
    const tr = readTrace(cut);
    t.equal(tr.truncated, true, `cut at ${n}: marked truncated`);
    t.ok(tr.records.length < whole.records.length, `cut at ${n}: fewer records (${tr.records.length})`);
    t.same(tr.records.map((r) => r.t), whole.records.slice(0, tr.records.length).map((r) => r.t), `cut at ${n}: the records before the cut, unchanged`);
    checked++;
  }
  t.equal(checked, 3);
  let out = '';
  let err = '';
  const code = await traceCommand(['show', cut], { out: (s) => { out += s; }, err: (s) => { err += s; } });
  t.equal(code, 0, 'trace show on a cut recording succeeds');
  t.match(err, /ends inside a record at byte \d+/, 'and notes the cut');
  t.match(out, /C->S VERSION/, 'and shows what is there');
});

t.test('--record-max: the recording stops with an end record, the server keeps serving', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'max.vut');
  const max = 16 * 1024;
  const { rt, sock } = await blkServer(dir, 'max', path.join(dir, 'max.img'), { file, maxBytes: max });
  try {
    const { written } = await guestRun(sock, 'messages'); // throws if the server stopped serving
    t.equal(written.length, 64 * 1024, 'the whole run completed past the bound');
    t.equal(rt.recorder?.active, false, 'recording stopped');
  } finally {
    await until(() => !rt.host('blk0').connected, 'disconnect');
    await rt.close();
  }
  const size = fs.statSync(file).size;
  t.ok(size <= max, `the file (${size} bytes) is within --record-max (${max})`);
  t.ok(size > max - 4096, 'and was filled up to near it');
  const tr = readTrace(file);
  t.equal(tr.truncated, false, 'it ends with a whole record');
  const last = tr.records[tr.records.length - 1]!;
  t.equal(last.type, 'end', 'the last record is the end marker');
  t.equal((last as { reason?: string }).reason, 'record-max', 'saying why');
  t.equal((last as { bytes?: number }).bytes, size, 'with the file size');
  t.equal(traceStats(tr.records).ended, 'record-max', 'stats report the end');
});

t.test('notes from other parts of the server: written, shown, counted', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'notes.vut');
  const { rt } = await blkServer(dir, 'notes', path.join(dir, 'n.img'), { file });
  rt.recorder!.note({ type: 'fault', rule: 3, action: 'error', errno: 'EIO', device: 'blk0', session: 1 });
  rt.recorder!.note({ type: 'fault', rule: 4, action: 'delay' });
  t.throws(() => rt.recorder!.note({ type: 'msg' }), /type/, 'a note may not pose as a message');
  await rt.close();
  const tr = readTrace(file);
  const lines = [...showLines(tr.records)];
  t.ok(lines.some((l) => / blk0#1 -- fault rule=3 action=error errno=EIO$/.test(l)), 'show prints a fault readably', { lines });
  t.equal(traceStats(tr.records).notes.get('fault'), 2, 'stats count the faults');
  t.equal([...showLines(tr.records, { commands: ['REGION_READ'] })].length, 0, 'a command filter hides notes');
});

t.test('bad recordings: a clear error, never a crash', async (t) => {
  const dir = tmpDir(t);
  const { Packr } = await import('msgpackr');
  const p = new Packr({ useRecords: false });
  const header = { type: 'trace', format: 'vfio-user-ts trace', version: 1, started: 'x', dma: false };
  const cases: Array<[string, Buffer, RegExp]> = [
    ['empty', Buffer.alloc(0), /empty file/],
    ['text', Buffer.from('hello world, not msgpack\n'), /not a vfio-user-ts recording|not msgpack|no whole record/],
    ['random', randomBytes(4096), /not a vfio-user-ts recording|not msgpack|no whole record/],
    ['another msgpack', p.pack({ hello: 1 }), /not a vfio-user-ts recording/],
    ['newer version', p.pack({ ...header, version: 99 }), /version 99/],
    ['record without type', Buffer.concat([p.pack(header), p.pack({ t: 1 })]), /record 1 at byte \d+: record without a type/],
    ['message with a bad header', Buffer.concat([p.pack(header), p.pack({ type: 'msg', t: 1, device: 'd', session: 1, from: 'client', header: { msgId: 70000, command: 1, size: 16, flags: 0, error: 0 }, payload: Buffer.alloc(0) })]), /msgId is 70000/],
    ['message whose size does not match its payload', Buffer.concat([p.pack(header), p.pack({ type: 'msg', t: 1, device: 'd', session: 1, from: 'client', header: { msgId: 1, command: 1, size: 99, flags: 0, error: 0 }, payload: Buffer.alloc(3) })]), /header size 99 does not match its 3-byte payload/],
    ['message without payload', Buffer.concat([p.pack(header), p.pack({ type: 'msg', t: 1, device: 'd', session: 1, from: 'client', header: { msgId: 1, command: 1, size: 16, flags: 0, error: 0 } })]), /without payload bytes/],
    ['dma with a bad op', Buffer.concat([p.pack(header), p.pack({ type: 'dma', t: 1, device: 'd', session: 1, op: 'poke', iova: 0, data: Buffer.alloc(1) })]), /op poke/],
    ['not a map', Buffer.concat([p.pack(header), p.pack([1, 2, 3])]), /not a record/],
  ];
  const { main } = await import('../../cli/cli.js');
  for (const [name, bytes, re] of cases) {
    const f = path.join(dir, `${name.replace(/ /g, '-')}.vut`);
    fs.writeFileSync(f, bytes);
    t.throws(() => readTrace(f), re, `${name}: ${re}`);
    const write = process.stderr.write.bind(process.stderr);
    let err = '';
    process.stderr.write = ((s: string) => { err += s; return true; }) as typeof process.stderr.write;
    let code: number;
    try {
      code = await main(['trace', 'stats', f]);
    } finally {
      process.stderr.write = write;
    }
    t.equal(code, 1, `${name}: trace stats exits 1`);
    t.match(err, re, `${name}: with the message`);
    t.notMatch(err, /at .*\.js:\d+/, `${name}: and no stack trace`);
  }
  t.throws(() => readTrace(path.join(dir, 'missing.vut')), /cannot read/, 'a missing file');
  // A message with a payload its codec refuses is shown, marked, not thrown.
  const f = path.join(dir, 'refused.vut');
  fs.writeFileSync(f, Buffer.concat([p.pack(header), p.pack({ type: 'msg', t: 5, device: 'd', session: 1, from: 'client', header: { msgId: 1, command: Command.DMA_MAP, size: 19, flags: 0, error: 0 }, payload: Buffer.from([1, 2, 3]) })]));
  const lines = [...showLines(readTrace(f).records)];
  t.match(lines[0], /C->S DMA_MAP #1 MALFORMED: .* raw=010203/, 'a refused payload is marked MALFORMED with its bytes');
});

t.test('error replies: recorded, marked in show, counted in stats, and compared by replay', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'gpio.vut');
  const serve = async (name: string, record?: { file: string }) => {
    const sock = path.join(dir, `${name}.sock`);
    const rt = await startServer({ devices: [{ name: 'gpio0', kind: 'gpio', socket: sock, options: {} }], ...(record ? { record } : {}) });
    return { rt, sock };
  };
  const orig = await serve('g', { file });
  const c = await VfioUserClient.open(orig.sock);
  const { encodeRegionReadRequest } = await import('../../protocol/commands/region-access.js');
  const bad = await c.request(Command.REGION_READ, encodeRegionReadRequest({ region: 99, offset: 0, count: 4 }));
  t.equal(bad.errno, 22, 'the server refused a read of region 99 (EINVAL)');
  const good = await c.request(Command.REGION_READ, encodeRegionReadRequest({ region: 7, offset: 0, count: 4 }));
  t.equal(good.errno, 0, 'and answered a config read');
  c.close();
  await until(() => !orig.rt.host('gpio0').connected, 'disconnect');
  await orig.rt.close();
  const tr = readTrace(file);
  const lines = [...showLines(tr.records, { commands: ['REGION_READ'] })];
  t.match(lines.join('\n'), /S->C REGION_READ reply #\d+ ERROR EINVAL/, 'show marks the error reply');
  t.match([...showLines(tr.records, { commands: ['REGION_READ'] }, { color: true })].join('\n'), /\x1b\[31;1m ERROR EINVAL\x1b\[0m/, 'in red with --color');
  t.equal(traceStats(tr.records).commands.get('REGION_READ')?.errors, 1, 'stats count it');
  const r99 = [...showLines(tr.records, { region: 99 })];
  t.equal(r99.length, 2, 'the region filter keeps the request and its error reply');
  t.match(r99[1], /REGION_READ reply #\d+ ERROR EINVAL/, 'the reply is the error');
  const again = await serve('again');
  try {
    const r = await replay(tr, { socket: again.sock, timeoutMs: 5000 });
    t.equal(r.divergence, null, 'a replay against a GPIO server reproduces the error reply');
    await until(() => !again.rt.host('gpio0').connected, 'disconnect');
  } finally {
    await again.rt.close();
  }
  // Against a device without region 7's contents (another kind): the reply differs.
  const blk = await blkServer(dir, 'blk', path.join(dir, 'x.img'));
  try {
    const r = await replay(tr, { socket: blk.sock, timeoutMs: 5000 });
    t.ok(r.divergence, 'against another device kind it diverges');
    t.ok(r.divergence?.fields.some((f) => f.field.startsWith('data') || f.field === 'numRegions' || f.field.startsWith('caps')), 'with the differing field named', { d: r.divergence });
    await until(() => !blk.rt.host('blk0').connected, 'disconnect');
  } finally {
    await blk.rt.close();
  }
});

t.test('serve flags and config files take the recording options', async (t) => {
  const dir = tmpDir(t);
  const { serveConfig } = await import('../../cli/cli.js');
  const cfg = await serveConfig(['gpio', '--socket', path.join(dir, 'g.sock'), '--record', path.join(dir, 'r.vut'), '--record-max', '1M', '--record-dma']);
  t.same(cfg.record, { file: path.join(dir, 'r.vut'), maxBytes: MiB, dma: true }, '--record, --record-max, --record-dma');
  await t.rejects(serveConfig(['gpio', '--socket', path.join(dir, 'g.sock'), '--record-max', '1M']), /need --record/, '--record-max alone');
  await t.rejects(serveConfig(['gpio', '--socket', path.join(dir, 'g.sock'), '--record', path.join(dir, 'r.vut'), '--record-max', '100']), /at least 4096/, 'a bound too small');
  await t.rejects(serveConfig(['gpio', '--socket', path.join(dir, 'g.sock'), '--record', '/nonexistent-dir/r.vut']), /does not exist/, 'a folder that does not exist');
  const { validateConfig } = await import('../../cli/config.js');
  const devices = [{ kind: 'gpio', socket: path.join(dir, 'g.sock') }];
  t.same((await validateConfig({ devices, record: path.join(dir, 'a.vut') }, 'cfg')).record, { file: path.join(dir, 'a.vut') }, 'record: a path');
  t.same((await validateConfig({ devices, record: { file: path.join(dir, 'a.vut'), max: '64K', dma: true } }, 'cfg')).record,
    { file: path.join(dir, 'a.vut'), maxBytes: 65536, dma: true }, 'record: an object');
  await t.rejects(validateConfig({ devices, record: { file: 'a', color: 1 } }, 'cfg'), /unknown key 'color'/, 'unknown record key');
  await t.rejects(validateConfig({ devices, record: 7 }, 'cfg'), /file path or/, 'record of the wrong type');
});

t.test('without --record nothing records and the REGION_READ fast path answers; with it every reply passes the tap', async (t) => {
  const dir = tmpDir(t);
  const { Transport } = await import('../../server/transport.js');
  const { encodeRegionReadRequest } = await import('../../protocol/commands/region-access.js');
  const sends: number[] = [];
  const orig = Transport.prototype.send;
  Transport.prototype.send = function (this: InstanceType<typeof Transport>, h, p, f) {
    sends.push(h.command);
    return orig.call(this, h, p, f);
  };
  t.teardown(() => { Transport.prototype.send = orig; });
  const probe = async (record?: { file: string }): Promise<number> => {
    const sock = path.join(dir, `p${sends.length}-${record ? 'r' : 'n'}.sock`);
    const rt = await startServer({ devices: [{ name: 'gpio0', kind: 'gpio', socket: sock, options: {} }], ...(record ? { record } : {}) });
    try {
      t.equal(rt.recorder === null, record === undefined, record ? 'a recorder' : 'no recorder');
      const device = rt.host('gpio0').device;
      const attach = device.attachClient.bind(device);
      let polls: boolean | undefined;
      device.attachClient = (client) => {
        polls = client.poll !== undefined;
        attach(client);
      };
      const c = await VfioUserClient.open(sock);
      // Watching guest memory would make the device's accesses depend on timing: not while recording.
      t.equal(polls, record === undefined, record ? 'recording: the device gets no polling budget' : 'the device gets the polling budget');
      sends.length = 0;
      for (let i = 0; i < 10; i++) {
        const r = await c.request(Command.REGION_READ, encodeRegionReadRequest({ region: 7, offset: 0, count: 4 }));
        if (r.errno) throw new Error(`errno ${r.errno}`);
      }
      const n = sends.filter((c) => c === Command.REGION_READ).length;
      c.close();
      await until(() => !rt.host('gpio0').connected, 'disconnect');
      return n;
    } finally {
      await rt.close();
    }
  };
  t.equal(await probe(), 0, 'not recording: the 10 REGION_READ replies come from the fast path (no send() call)');
  const file = path.join(dir, 'fast.vut');
  t.equal(await probe({ file }), 10, 'recording: all 10 go through send(), past the tap');
  t.equal(readTrace(file).records.filter((r) => isMessage(r) && r.header.command === Command.REGION_READ).length, 20, 'and all 10 requests and 10 replies are recorded');
});

t.test('a serve process killed with SIGKILL leaves a readable recording of what it did', async (t) => {
  const dir = tmpDir(t);
  const { startServeChild } = await import('../sdk/serve-child.js');
  const { encodeRegionReadRequest } = await import('../../protocol/commands/region-access.js');
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');
  const sock = path.join(dir, 'k.sock');
  const file = path.join(dir, 'killed.vut');
  const child = await startServeChild(process.execPath, [path.join(root, 'bin/vfio-user-ts.js'), 'serve', 'gpio', '--socket', sock, '--record', file], dir);
  const c = await VfioUserClient.open(sock);
  for (let i = 0; i < 5; i++) await c.request(Command.REGION_READ, encodeRegionReadRequest({ region: 7, offset: 0, count: 4 }));
  child.kill('SIGKILL');
  await child.exited;
  c.close();
  const tr = readTrace(file);
  t.equal(tr.truncated, false, 'every record written before the kill is whole');
  const msgs = tr.records.filter(isMessage);
  t.equal(msgs.filter((m) => m.header.command === Command.REGION_READ).length, 10, 'the 5 reads and their 5 replies are there');
  t.equal(msgs[0]?.header.command, Command.VERSION, 'from VERSION on');
});
