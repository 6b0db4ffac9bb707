// REGION_READs answered by the socket watcher in C (native/region_reads.c):
// only for a lone, well-formed read wholly inside a range the device declared
// plain, only while the session would take its own fast path with nothing
// queued or in progress, and byte for byte what the TypeScript path sends.
// The test device counts its regionRead calls: a read that did not call it
// was answered natively.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as native from '../../native/index.js';
import { startServer, type RunningServer } from '../../server/runtime.js';
import { serveConfig } from '../../cli/cli.js';
import { validateConfig } from '../../cli/config.js';
import type { PciDevice } from '../../devices/pci/pci-device.js';
import { readTrace } from '../../trace/reader.js';
import type { MessageRecord } from '../../trace/format.js';
import { Command } from '../../protocol/constants.js';
import { Errno, fail } from '../../protocol/errno.js';
import { HEADER_SIZE, readHeader, writeHeader } from '../../protocol/header.js';
import { encodeRegionReadRequest, encodeRegionWriteRequest } from '../../protocol/commands/region-access.js';
import { encodeVersionRequest } from '../../protocol/version.js';
import type { PlainRead, RegionDescription, VfioUserDevice } from '../../devices/device.js';
import { VfioUserClient, type ReplyMessage } from '../../testing/vfio-user-client.js';

const RW = 3; // VFIO_REGION_INFO_FLAG_READ | WRITE
/** Region 0's plain range: [PLAIN_AT, PLAIN_END). */
const PLAIN_AT = 16;
const PLAIN_END = 48;

class TwoPathDevice implements VfioUserDevice {
  readonly name = 'two-path';
  readonly mem = Buffer.from(Array.from({ length: 64 }, (_, i) => 0xa0 + i));
  regionReadCalls = 0;
  /** Settles the REGION_WRITE of region 1 in progress. */
  finishWrite: (() => void) | null = null;

  info() { return { flags: 0, numRegions: 2, numIrqs: 0 }; }
  regionInfo(index: number): RegionDescription {
    if (index === 0) return { size: 64, flags: RW };
    if (index === 1) return { size: 64, flags: RW };
    throw fail('EINVAL', `no region ${index}`);
  }
  plainReads(): PlainRead[] {
    return [{ region: 0, offset: PLAIN_AT, bytes: this.mem.subarray(PLAIN_AT, PLAIN_END) }];
  }
  regionRead(index: number, offset: number, count: number): Buffer {
    this.regionReadCalls++;
    const size = this.regionInfo(index).size;
    if (offset + count > size) throw fail('EINVAL', `[${offset}, +${count}) outside ${size}`);
    return index === 0 ? Buffer.from(this.mem.subarray(offset, offset + count)) : Buffer.alloc(count);
  }
  regionWrite(index: number, offset: number, data: Buffer): void | Promise<void> {
    if (index === 1) return new Promise((resolve) => { this.finishWrite = () => { this.finishWrite = null; resolve(); }; });
    data.copy(this.mem, offset);
  }
  irqInfo() { return { count: 0, flags: 0 }; }
  setIrqs(): void { throw fail('EINVAL', 'no IRQs'); }
  reset(): void {}
  attachClient(): void {}
  detachClient(): void {}
}

interface Served { rt: RunningServer; sock: string; device: TwoPathDevice; recording?: string }

async function serve(t: Test, opts: { nativeReads?: boolean; record?: boolean; faults?: boolean } = {}): Promise<Served> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-native-reads-'));
  const sock = path.join(dir, 'd.sock');
  const device = new TwoPathDevice();
  const recording = opts.record ? path.join(dir, 'r.vut') : undefined;
  const rt = await startServer({
    devices: [{ name: 'd', socket: sock, model: { device } }],
    ...(opts.nativeReads === undefined ? {} : { nativeReads: opts.nativeReads }),
    ...(recording ? { record: { file: recording } } : {}),
    ...(opts.faults ? { faults: [] } : {}),
  });
  t.teardown(async () => {
    await rt.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { rt, sock, device, recording };
}

async function open(t: Test, s: Served, caps?: Parameters<typeof VfioUserClient.open>[1]): Promise<VfioUserClient> {
  const c = await VfioUserClient.open(s.sock, caps);
  t.teardown(() => c.close());
  return c;
}

function read(c: VfioUserClient, region: number, offset: number, count: number, flags = 0): Promise<ReplyMessage> {
  return c.request(Command.REGION_READ, encodeRegionReadRequest({ region, offset, count }), { flags });
}

/** Every field of a reply, for comparing two of them whole. */
function whole(r: ReplyMessage): string {
  const { msgId, command, size, flags, error } = r.header;
  return JSON.stringify({ msgId, command, size, flags, error, payload: r.payload.toString('hex'), fds: r.fds.length });
}

t.test('a lone read inside the plain range is answered without calling the device, with its current bytes', async (t) => {
  const s = await serve(t);
  const c = await open(t, s);
  const r = await read(c, 0, 20, 4);
  t.equal(r.errno, 0, 'success');
  t.equal(r.payload.subarray(16).toString('hex'), s.device.mem.subarray(20, 24).toString('hex'), 'the bytes');
  t.equal(s.device.regionReadCalls, 0, 'regionRead was not called');
  s.device.mem[20] = 0x11; // the range is a live view
  t.equal((await read(c, 0, 20, 1)).payload[16], 0x11, 'a change to the bytes shows at once');
  t.equal(s.device.regionReadCalls, 0, 'still natively');
  t.equal(s.rt.host('d').commandCounts.REGION_READ, 2, 'both are counted');
});

t.test('after 16 requests with no read among them the watcher stops looking; a read starts it again', async (t) => {
  const s = await serve(t);
  const c = await open(t, s);
  const write = (v: number) => c.request(Command.REGION_WRITE, encodeRegionWriteRequest({ region: 0, offset: 0, data: Buffer.from([v]) }));
  await read(c, 0, 20, 4);
  for (let i = 0; i < 15; i++) await write(i);
  await read(c, 0, 20, 4);
  t.equal(s.device.regionReadCalls, 0, 'a read within 16 requests of the last one: native');
  for (let i = 0; i < 16; i++) await write(i);
  const r = await read(c, 0, 20, 4);
  t.equal(s.device.regionReadCalls, 1, '16 writes since the last read: this read took the TypeScript path');
  t.equal(r.payload.subarray(16).toString('hex'), s.device.mem.subarray(20, 24).toString('hex'), 'with the same bytes');
  await read(c, 0, 20, 4);
  t.equal(s.device.regionReadCalls, 1, 'and the next one is native again');
  t.equal(s.rt.host('d').commandCounts.REGION_READ, 4, 'every read counted');
});

t.test('the replies are byte for byte those of the TypeScript path', async (t) => {
  const fast = await serve(t);
  const slow = await serve(t, { nativeReads: false });
  const a = await open(t, fast);
  const b = await open(t, slow);
  const cases: [number, number][] = [[PLAIN_AT, 0], [PLAIN_AT, 1], [PLAIN_AT, 32], [30, 2], [PLAIN_END - 4, 4], [PLAIN_END, 0], [PLAIN_AT + 8, 8]];
  for (const [offset, count] of cases) {
    t.equal(whole(await read(a, 0, offset, count)), whole(await read(b, 0, offset, count)), `[${offset}, +${count})`);
  }
  t.equal(fast.device.regionReadCalls, 0, 'every one of them native on one side');
  t.equal(slow.device.regionReadCalls, cases.length, 'and through regionRead on the other');
});

t.test('anything but a lone plain read takes the TypeScript path, which gives the same answers', async (t) => {
  const s = await serve(t);
  const c = await open(t, s);
  let calls = 0;
  const viaDevice = (what: string) => {
    calls++;
    t.equal(s.device.regionReadCalls, calls, `${what}: through regionRead`);
  };
  t.equal((await read(c, 0, PLAIN_AT - 1, 2)).payload.length, 18, 'across the start of the range');
  viaDevice('across the start');
  t.equal((await read(c, 0, PLAIN_END - 1, 2)).payload.length, 18, 'across the end of the range');
  viaDevice('across the end');
  t.equal((await read(c, 0, 0, 4)).errno, 0, 'outside the range');
  viaDevice('outside');
  t.equal((await read(c, 1, PLAIN_AT, 4)).errno, 0, 'another region at the same offsets');
  viaDevice('another region');
  t.equal((await read(c, 0, 60, 8)).errno, Errno.EINVAL, 'past the region: the device says EINVAL');
  viaDevice('past the region');
  // Two queued at once: the watcher leaves both to the batch path.
  const [r1, r2] = await Promise.all([read(c, 0, PLAIN_AT, 4), read(c, 0, PLAIN_AT + 4, 4)]);
  t.same([r1.errno, r2.errno], [0, 0], 'two in flight');
  calls++;
  viaDevice('two in flight');
  // NO_REPLY: nothing comes back, and the device was asked.
  const counts = s.rt.host('d').commandCounts;
  const before = counts.REGION_READ!;
  c.post(Command.REGION_READ, encodeRegionReadRequest({ region: 0, offset: PLAIN_AT, count: 4 }));
  while (counts.REGION_READ === before) await new Promise((r) => setImmediate(r));
  viaDevice('a posted read');
  // With an fd: REGION_READ takes none, so EINVAL, and the fd is closed.
  const fd = native.eventfd(0);
  t.teardown(() => native.close(fd));
  t.equal((await c.request(Command.REGION_READ, encodeRegionReadRequest({ region: 0, offset: PLAIN_AT, count: 4 }), { fds: [fd] })).errno, Errno.EINVAL, 'with an fd: EINVAL');
  t.equal(s.device.regionReadCalls, calls, 'refused before the device');
  // A wrong size field: TypeScript's reply (EINVAL for a 36-byte READ).
  const bad = Buffer.concat([encodeRegionReadRequest({ region: 0, offset: PLAIN_AT, count: 4 }), Buffer.alloc(4)]);
  t.equal((await c.request(Command.REGION_READ, bad)).errno, Errno.EINVAL, 'a READ with 4 bytes too many: EINVAL');
  t.equal(s.device.regionReadCalls, calls, 'refused before the device');
});

t.test('before VERSION, and above the negotiated transfer size, the errors are the TypeScript path\'s', async (t) => {
  const s = await serve(t);
  const raw = VfioUserClient.connect(s.sock);
  t.teardown(() => raw.close());
  t.equal((await read(raw, 0, PLAIN_AT, 4)).errno, Errno.EINVAL, 'before VERSION: EINVAL');
  raw.close();
  while (s.rt.host('d').connected) await new Promise((r) => setTimeout(r, 2));
  const small = await open(t, s, { maxMsgFds: 16, maxDataXferSize: 4096, writeMultiple: true });
  t.equal((await read(small, 0, PLAIN_AT, 4)).errno, 0, 'a small read after VERSION');
  t.equal(s.device.regionReadCalls, 0, 'natively');
  t.equal((await read(small, 0, 0, 4097)).errno, Errno.EINVAL, 'count above max_data_xfer_size: EINVAL');
  t.equal(s.device.regionReadCalls, 0, 'refused before the device');
});

t.test('a read waits behind a request in progress, as on the TypeScript path', async (t) => {
  const s = await serve(t);
  const c = await open(t, s);
  const order: string[] = [];
  const write = c.request(Command.REGION_WRITE, encodeRegionWriteRequest({ region: 1, offset: 0, data: Buffer.from([1]) }))
    .then((r) => { order.push('write'); return r; });
  while (!s.device.finishWrite) await new Promise((r) => setImmediate(r));
  const readReply = read(c, 0, PLAIN_AT, 4).then((r) => { order.push('read'); return r; });
  await new Promise((r) => setTimeout(r, 50));
  t.same(order, [], 'no reply while the write is in progress');
  s.device.finishWrite!();
  t.equal((await write).errno, 0, 'the write');
  t.equal((await readReply).errno, 0, 'the read');
  t.same(order, ['write', 'read'], 'replies in request order');
  t.equal(s.device.regionReadCalls, 1, 'the queued read went through regionRead');
  t.equal((await read(c, 0, PLAIN_AT, 4)).errno, 0, 'a read once it is idle again');
  t.equal(s.device.regionReadCalls, 1, 'natively again');
});

t.test('a message fault rule added while connected sees the very next read', async (t) => {
  const s = await serve(t, { faults: true });
  const c = await open(t, s);
  t.equal((await read(c, 0, PLAIN_AT, 4)).errno, 0, 'a read before the rule');
  t.equal(s.device.regionReadCalls, 0, 'natively');
  s.rt.faults!.add({ id: 'e', match: { command: 'REGION_READ', region: 0 }, action: { type: 'error', errno: 'EIO' } });
  t.equal((await read(c, 0, PLAIN_AT, 4)).errno, Errno.EIO, 'the rule fired on the next read');
  t.equal(s.device.regionReadCalls, 0, 'the rule answered it, not the device');
  s.rt.faults!.clear('e');
  t.equal((await read(c, 0, PLAIN_AT, 4)).errno, 0, 'after clearing it, a read succeeds');
  t.equal(s.device.regionReadCalls, 0, 'natively again at once');
});

t.test('a recorded connection sends every read through TypeScript, so that its recording has them all', async (t) => {
  const s = await serve(t, { record: true });
  const c = await open(t, s);
  for (let i = 0; i < 3; i++) t.equal((await read(c, 0, PLAIN_AT, 4)).errno, 0, `read ${i}`);
  t.equal(s.device.regionReadCalls, 3, 'through regionRead');
  c.close();
  await s.rt.close();
  const records = readTrace(s.recording!).records as MessageRecord[];
  const reads = (from: string) => records.filter((r) => r.type === 'msg' && r.from === from && r.header.command === Command.REGION_READ).length;
  t.same([reads('client'), reads('server')], [3, 3], 'three requests and three replies recorded');
});

t.test('nativeReads: false sends every read through TypeScript', async (t) => {
  const s = await serve(t, { nativeReads: false });
  const c = await open(t, s);
  t.equal((await read(c, 0, PLAIN_AT, 4)).errno, 0, 'a read');
  t.equal(s.device.regionReadCalls, 1, 'through regionRead');
});

/** A raw negotiated connection that reads nothing until told to. */
async function rawClient(t: Test, sock: string): Promise<number> {
  const fd = native.connectUnix(sock);
  t.teardown(() => native.close(fd));
  const version = encodeVersionRequest({ maxMsgFds: 16, maxDataXferSize: 1 << 20 });
  const msg = Buffer.alloc(HEADER_SIZE + version.length);
  writeHeader(msg, 0, { msgId: 0, command: Command.VERSION, size: msg.length, flags: 0, error: 0 });
  version.copy(msg, HEADER_SIZE);
  t.equal(native.sendmsg(fd, msg, 0, msg.length), msg.length, 'VERSION sent');
  const buf = Buffer.alloc(4096);
  const meta = new Int32Array(2);
  let n = -native.EAGAIN;
  while (n === -native.EAGAIN) {
    await new Promise((r) => setImmediate(r));
    n = native.recvmsg(fd, buf, 0, buf.length, meta);
  }
  t.equal(readHeader(buf).error, 0, 'VERSION accepted');
  return fd;
}

t.test('a client that stops reading: replies the socket cannot take go out later, whole and in order', async (t) => {
  const s = await serve(t);
  const fd = await rawClient(t, s.sock);
  const counts = s.rt.host('d').commandCounts;
  const req = Buffer.alloc(HEADER_SIZE + 16);
  encodeRegionReadRequest({ region: 0, offset: PLAIN_AT, count: 32 }).copy(req, HEADER_SIZE);
  // One read at a time, each taken by the server before the next is sent,
  // until the server's sends have met a full socket (then it answers the
  // following reads through TypeScript: its reply queue is not empty).
  let sent = 0;
  for (; sent < 50_000 && s.device.regionReadCalls < 8; sent++) {
    writeHeader(req, 0, { msgId: sent & 0xffff, command: Command.REGION_READ, size: req.length, flags: 0, error: 0 });
    if (native.sendmsg(fd, req, 0, req.length) !== req.length) break;
    while ((counts.REGION_READ ?? 0) <= sent) await new Promise((r) => setImmediate(r));
  }
  t.ok(sent < 50_000 && s.device.regionReadCalls >= 8, `the socket filled after ${sent} reads and later reads went through TypeScript`);
  t.ok(sent - s.device.regionReadCalls > 100, 'most were answered natively before that');
  const buf = Buffer.alloc(1 << 20);
  const meta = new Int32Array(2);
  // Take some replies, so that the socket has room again, and at once send
  // one more read: its reply must not overtake those still queued.
  let have = native.recvmsg(fd, buf, 0, 16 << 10, meta);
  t.ok(have > 0, 'some replies read');
  writeHeader(req, 0, { msgId: sent & 0xffff, command: Command.REGION_READ, size: req.length, flags: 0, error: 0 });
  t.equal(native.sendmsg(fd, req, 0, req.length), req.length, 'one more read');
  sent++;
  // Now read everything: every reply whole, in order, with the bytes.
  const expect = s.device.mem.subarray(PLAIN_AT, PLAIN_END).toString('hex');
  let got = 0;
  let wrong = 0;
  const until = Date.now() + 10_000;
  while (got < sent && Date.now() < until) {
    const n = native.recvmsg(fd, buf, have, buf.length - have, meta);
    if (n === -native.EAGAIN) { await new Promise((r) => setImmediate(r)); continue; }
    if (n <= 0) break;
    have += n;
    let at = 0;
    while (have - at >= HEADER_SIZE && have - at >= buf.readUInt32LE(at + 4)) {
      const h = readHeader(buf, at);
      if (h.msgId !== (got & 0xffff) || h.error !== 0 || h.size !== HEADER_SIZE + 48 ||
          buf.subarray(at + HEADER_SIZE + 16, at + h.size).toString('hex') !== expect) wrong++;
      got++;
      at += h.size;
    }
    buf.copy(buf, 0, at, have);
    have -= at;
  }
  t.equal(got, sent, 'a reply for every read');
  t.equal(wrong, 0, 'each one whole, in order, with the bytes');
  t.equal(have, 0, 'nothing left over');
});

t.test('--no-native-reads and nativeReads: checked, and they reach the server', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-native-reads-cfg-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const sock = path.join(dir, 'g.sock');
  t.equal((await serveConfig(['gpio', '--socket', sock, '--no-native-reads'])).nativeReads, false, 'the flag lands in the config');
  t.equal((await serveConfig(['gpio', '--socket', sock])).nativeReads, undefined, 'absent: the default (on)');
  const devices = [{ kind: 'gpio', socket: sock }];
  t.equal((await validateConfig({ devices, nativeReads: false }, 'cfg')).nativeReads, false);
  await t.rejects(validateConfig({ devices, nativeReads: 'no' }, 'cfg'), { message: /cfg: nativeReads must be true or false/ });
  // A gpio served with and without the flag: its config reads reach ConfigSpace.read only without native reads.
  for (const [flags, via] of [[['--no-native-reads'], 1], [[], 0]] as const) {
    const rt = await startServer(await serveConfig(['gpio', '--socket', sock, ...flags]));
    const config = (rt.models.get('gpio0')!.device as PciDevice).config;
    let calls = 0;
    const plain = config.read.bind(config);
    config.read = (o, n) => { calls++; return plain(o, n); };
    const c = await VfioUserClient.open(sock);
    t.equal((await read(c, 7, 0, 4)).errno, 0, `${flags.join(' ') || 'no flag'}: a config read`);
    t.equal(calls, via, `${flags.join(' ') || 'no flag'}: ${via ? 'through' : 'not through'} TypeScript`);
    c.close();
    await rt.close();
  }
});
