// The control socket, through a real socket: every error is a structured
// frame {id, errno, error, message, data?}; a malformed frame (bad msgpack,
// wrong types, unknown op, oversized, a huge length prefix) gets one and the
// connection goes on; responses too large for a frame are errors too; the
// client and the `iommu` CLI show an error's data.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as native from '../../native/index.js';
import { IommuContext } from '../../iommu/context.js';
import { ControlServer } from '../../server/control.js';
import { ControlClient, ControlError } from '../../server/control-client.js';
import { FrameReader, encodeFrame, packr, type ControlFailure, type ControlResponse } from '../../server/control-frames.js';
import { iommuCommand } from '../../cli/iommu-cli.js';
import { Log, setLogLevel, setLogSink } from '../../server/log.js';

const PAGE = 4096;
const MAX_FRAME = 64 * 1024;

interface Fixture {
  path: string;
  ctx: IommuContext;
  server: ControlServer;
}

/** A control server for one device 'dev0' whose IOAS 1 has two IOVA ranges (one reserved hole). */
async function start(t: Test): Promise<Fixture> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-ctl-'));
  const sock = path.join(dir, 'control.sock');
  const ctx = new IommuContext();
  ctx.addDevice('dev0');
  ctx.compatIoas.addReserved(0xfee00000n, 0xfeefffffn, 'msi');
  const server = await ControlServer.open(sock, new Map([['dev0', ctx]]), new Log('test'), { maxFrame: MAX_FRAME });
  t.teardown(async () => {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { path: sock, ctx, server };
}

/** A raw connection: write any bytes, read whole response frames in order. */
class RawConn {
  private readonly reader = new FrameReader();
  private readonly got: ControlResponse[] = [];
  private wake: (() => void) | null = null;
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => {
      for (const f of this.reader.push(c)) if ('body' in f) this.got.push(packr.unpack(f.body) as ControlResponse);
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    socket.on('error', () => {});
  }

  static open(p: string): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(p, () => resolve(new RawConn(s)));
      s.once('error', reject);
    });
  }

  send(bytes: Buffer | Uint8Array): void {
    this.socket.write(bytes);
  }

  /** The next `n` responses (rejects if the server closes first). */
  async next(n = 1): Promise<ControlResponse[]> {
    while (this.got.length < n) {
      if (this.closed) throw new Error(`connection closed with ${this.got.length} of ${n} responses`);
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
    return this.got.splice(0, n);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A frame with any length prefix and body. */
function rawFrame(body: Uint8Array, length = body.length): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32LE(length, 0);
  return Buffer.concat([head, body]);
}

function isFailure(r: ControlResponse): r is ControlFailure {
  return 'errno' in r;
}

/** The response is an error frame with exactly these fields (message aside). */
function assertFailure(t: Test, r: ControlResponse, want: { id: number | null; error: string; data?: Record<string, unknown> }, what: string): void {
  t.ok(isFailure(r), `${what}: an error frame`);
  if (!isFailure(r)) return;
  const keys = Object.keys(r).sort();
  t.same(keys, want.data ? ['data', 'errno', 'error', 'id', 'message'] : ['errno', 'error', 'id', 'message'], `${what}: {id, errno, error, message${want.data ? ', data' : ''}}`);
  t.equal(r.id, want.id, `${what}: id`);
  t.equal(r.error, want.error, `${what}: ${want.error}`);
  t.equal(typeof r.errno, 'number');
  t.match(r.message, new RegExp(`^${want.error}: `), `${what}: message names the errno`);
  if (want.data) t.match(r.data, want.data, `${what}: data`);
}

/** The connection still answers a good request. */
async function stillServes(t: Test, c: RawConn, what: string): Promise<void> {
  c.send(encodeFrame({ id: 999, op: 'compat.get' }));
  const [r] = await c.next();
  t.same(r, { id: 999, result: { ioasId: 1 } }, `after ${what}: the connection still answers`);
}

t.test('ioas.iovaRanges with too small a buffer: EMSGSIZE with data.numIovas', async (t) => {
  const fx = await start(t);
  const c = await ControlClient.connect(fx.path);
  t.teardown(() => c.close());
  const r = await c.request('ioas.iovaRanges', { ioasId: 1, numIovas: 1 });
  assertFailure(t, r, { id: 1, error: 'EMSGSIZE', data: { numIovas: 2, alignment: PAGE } }, 'iovaRanges');
  t.same((r as ControlFailure).data?.ranges, [{ start: 0, last: 0xfedfffff }], 'the ranges that fit');
  const e = await c.call('ioas.iovaRanges', { ioasId: 1, numIovas: 0 }).catch((x: unknown) => x);
  t.ok(e instanceof ControlError, 'call() throws a ControlError');
  t.equal((e as ControlError).data?.numIovas, 2, 'with the data');
  t.same(await c.call('ioas.iovaRanges', { ioasId: 1, numIovas: 2 }), {
    ranges: [{ start: 0, last: 0xfedfffff }, { start: 0xfef00000, last: 2n ** 64n - 1n }],
    alignment: PAGE,
  }, 'enough room: the ranges');
});

t.test('a DMA fault carries where and why; a plain errno has no data', async (t) => {
  const fx = await start(t);
  const c = await ControlClient.connect(fx.path);
  t.teardown(() => c.close());
  const r = await c.request('dma.read', { iova: 0x5000, length: 16, pasid: 3 });
  assertFailure(t, r, { id: 1, error: 'EFAULT', data: { reason: 'not-attached', iova: 0x5000, length: 16, pasid: 3 } }, 'dma.read');
  await c.call('type1.map', { iova: 0x10000, size: PAGE, flags: 1 });
  const w = await c.request('dma.write', { iova: 0x10000, data: 'ff' });
  assertFailure(t, w, { id: 3, error: 'EFAULT', data: { reason: 'permission', iova: 0x10000, length: 1 } }, 'dma.write to a read-only mapping');
  assertFailure(t, await c.request('ioas.destroy', { ioasId: 77 }), { id: 4, error: 'ENOENT' }, 'plain errno');
});

t.test('malformed frames get an error frame and the connection goes on', async (t) => {
  const fx = await start(t);
  const c = await RawConn.open(fx.path);
  t.teardown(() => c.close());
  const cases: [string, Buffer, { id: number | null; error: string; data?: Record<string, unknown> }][] = [
    ['bad msgpack', rawFrame(Buffer.from([0xc1])), { id: null, error: 'EINVAL' }],
    ['an empty frame', rawFrame(Buffer.alloc(0)), { id: null, error: 'EINVAL' }],
    ['bytes after the request', rawFrame(Buffer.concat([packr.pack({ id: 5, op: 'compat.get' }), Buffer.from([1])])), { id: null, error: 'EINVAL' }],
    ['a truncated map', rawFrame(packr.pack({ id: 6, op: 'compat.get' }).subarray(0, 5)), { id: null, error: 'EINVAL' }],
    ['an array32 claiming 2^32-1 items', rawFrame(Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0x01])), { id: null, error: 'EINVAL' }],
    ['a bin32 claiming 4 GiB', rawFrame(Buffer.from([0xc6, 0xff, 0xff, 0xff, 0xff, 0x01])), { id: null, error: 'EINVAL' }],
    ['nesting deeper than the stack', rawFrame(Buffer.concat([Buffer.alloc(60000, 0x91), Buffer.from([0])])), { id: null, error: 'EINVAL' }],
    ['not a map', encodeFrame([1, 2, 3]), { id: null, error: 'EINVAL' }],
    ['op not a string', encodeFrame({ id: 7, op: 12 }), { id: 7, error: 'EINVAL' }],
    ['args not a map', encodeFrame({ id: 8, op: 'compat.get', args: 'x' }), { id: 8, error: 'EINVAL' }],
    ['wrong argument type', encodeFrame({ id: 9, op: 'ioas.map', args: { ioasId: 'one', length: PAGE } }), { id: 9, error: 'EINVAL' }],
    ['unknown op', encodeFrame({ id: 10, op: 'ioas.frobnicate' }), { id: 10, error: 'ENOSYS' }],
    ['prototype name as op', encodeFrame({ id: 11, op: '__proto__' }), { id: 11, error: 'ENOSYS' }],
    ['an in-process-only argument', encodeFrame({ id: 12, op: 'ioas.map', args: { ioasId: 1, length: PAGE, fd: 0 } }), { id: 12, error: 'EINVAL' }],
    ['an unknown device', encodeFrame({ id: 13, op: 'compat.get', args: { device: 'nope' } }), { id: 13, error: 'ENODEV' }],
    ['numIovas out of range', encodeFrame({ id: 14, op: 'ioas.iovaRanges', args: { ioasId: 1, numIovas: -1 } }), { id: 14, error: 'EINVAL' }],
    ['dma.read longer than the limit', encodeFrame({ id: 15, op: 'dma.read', args: { iova: 0, length: 2 ** 31 } }), { id: 15, error: 'EINVAL' }],
  ];
  for (const [what, bytes, want] of cases) {
    c.send(bytes);
    const [r] = await c.next();
    assertFailure(t, r, want, what);
  }
  await stillServes(t, c, 'every malformed frame');
});

t.test('a frame above the limit: EMSGSIZE with its length, its bytes skipped, the next frame answered', async (t) => {
  const fx = await start(t);
  const c = await RawConn.open(fx.path);
  t.teardown(() => c.close());
  const big = encodeFrame({ id: 20, op: 'dma.write', args: { iova: 0, data: Buffer.alloc(MAX_FRAME) } });
  // Sent in pieces, with the next request right behind the last one.
  c.send(big.subarray(0, 1000));
  const [r] = await c.next();
  assertFailure(t, r, { id: null, error: 'EMSGSIZE', data: { length: big.length - 4, max: MAX_FRAME } }, 'oversized frame, answered before its body came');
  c.send(big.subarray(1000, 40000));
  c.send(Buffer.concat([big.subarray(40000), encodeFrame({ id: 21, op: 'compat.get' })]));
  t.same(await c.next(), [{ id: 21, result: { ioasId: 1 } }], 'the stream is back in step');
});

t.test('a 4 GiB length prefix is refused at once, without waiting for (or allocating) its body', async (t) => {
  const fx = await start(t);
  const c = await RawConn.open(fx.path);
  t.teardown(() => c.close());
  c.send(Buffer.from([0xff, 0xff, 0xff, 0xff]));
  const [r] = await c.next();
  assertFailure(t, r, { id: null, error: 'EMSGSIZE', data: { length: 0xffffffff, max: MAX_FRAME } }, 'huge prefix');
  t.equal(c.closed, false, 'the connection stays open');
  const other = await ControlClient.connect(fx.path);
  t.same(await other.call('compat.get'), { ioasId: 1 }, 'other connections are served meanwhile');
  other.close();
});

t.test('a response above the frame limit becomes EMSGSIZE; the connection goes on', async (t) => {
  const fx = await start(t);
  const c = await ControlClient.connect(fx.path);
  t.teardown(() => c.close());
  await c.call('type1.map', { iova: 0x100000, size: 32 * PAGE, flags: 3 });
  const r = await c.request('dma.read', { iova: 0x100000, length: 32 * PAGE });
  assertFailure(t, r, { id: 2, error: 'EMSGSIZE', data: { max: MAX_FRAME } }, 'dma.read of 128 KiB');
  t.ok(((r as ControlFailure).data?.length as number) > MAX_FRAME, 'data.length is the size it would have had');
  const ok = await c.call('dma.read', { iova: 0x100000, length: 4 * PAGE });
  t.equal((ok.data as Uint8Array).length, 4 * PAGE, 'a smaller read works');
});

t.test('dirty.report: a bitmap beyond the reply limit is refused before it is allocated', async (t) => {
  const fx = await start(t);
  const c = await ControlClient.connect(fx.path);
  t.teardown(() => c.close());
  await c.call('dirty.start');
  const e = await c.call('dirty.report', { iova: 0, length: 2n ** 62n, pgsize: 4096 }).catch((x: unknown) => x);
  t.ok(e instanceof ControlError);
  t.equal((e as ControlError).error, 'EINVAL');
  const e2 = await c.call('dirty.report', { iova: 0, length: 2 ** 40, pgsize: 1 }).catch((x: unknown) => x);
  t.equal((e2 as ControlError).error, 'EINVAL', 'one bit per byte of 1 TiB');
  t.ok((e2 as ControlError).data, 'with the sizes as data');
  const ok = await c.call('dirty.report', { iova: 0, length: 64 * PAGE });
  t.equal((ok.bitmap as Uint8Array).length, 8);
});

t.test('hundreds of pipelined requests are all answered, in order', async (t) => {
  const fx = await start(t);
  const c = await RawConn.open(fx.path);
  t.teardown(() => c.close());
  const n = 500;
  c.send(Buffer.concat(Array.from({ length: n }, (_, i) => encodeFrame({ id: i, op: i % 2 ? 'compat.get' : 'nope' }))));
  const got = await c.next(n);
  t.same(got.map((r) => r.id), Array.from({ length: n }, (_, i) => i), 'ids in order');
  t.equal(got.filter((r) => isFailure(r) && r.error === 'ENOSYS').length, n / 2);
});

t.test('a client that shuts down its side after the last request still gets the answers', async (t) => {
  const fx = await start(t);
  const c = await RawConn.open(fx.path);
  c.socket.end(Buffer.concat([encodeFrame({ id: 1, op: 'ioas.alloc' }), encodeFrame({ id: 2, op: 'compat.get' })]));
  const got = await c.next(2);
  t.same(got, [{ id: 1, result: { ioasId: 3 } }, { id: 2, result: { ioasId: 1 } }]);
  await new Promise<void>((r) => (c.closed ? r() : c.socket.once('close', () => r())));
  t.pass('then the server closes');
});

t.test('the control log names why a client went away', async (t) => {
  const lines: string[] = [];
  setLogLevel('debug');
  const restore = setLogSink((l) => lines.push(l));
  t.teardown(() => { restore(); setLogLevel('error'); });
  const fx = await start(t);
  // The first line matching re logged from index `from` on.
  const seen = (re: RegExp, from: number) => new Promise<string>((resolve) => {
    const poll = () => {
      const l = lines.slice(from).find((x) => re.test(x));
      if (l) resolve(l);
      else setImmediate(poll);
    };
    poll();
  });
  // Reset: the answer is in our socket, unread, when we close.
  const fd = native.connectUnix(fx.path);
  const req = encodeFrame({ id: 1, op: 'compat.get' });
  t.equal(native.sendmsg(fd, req, 0, req.length), req.length);
  await new Promise<void>((resolve) => {
    const w = native.watch(fd, native.READABLE, () => { native.watchClose(w); resolve(); });
  });
  let from = lines.length;
  native.close(fd);
  t.match(await seen(/control client (dropped|disconnected)/, from), /control client dropped: connection reset by peer \(ECONNRESET\)/);
  const c = await ControlClient.connect(fx.path);
  await c.call('compat.get');
  from = lines.length;
  c.close();
  t.match(await seen(/control client (dropped|disconnected)/, from), /debug .*control client disconnected: peer closed the connection \(EOF\)/);
});

t.test('the iommu CLI prints an error with its data and exits 1', async (t) => {
  const fx = await start(t);
  let out = '';
  let err = '';
  const io = { out: (s: string) => { out += s; }, err: (s: string) => { err += s; } };
  const code = await iommuCommand(['ioas.iovaRanges', '--control', fx.path, 'ioasId=1', 'numIovas=1'], io);
  t.equal(code, 1);
  const r = JSON.parse(out) as ControlFailure;
  t.equal(r.error, 'EMSGSIZE');
  t.equal(r.data?.numIovas, 2, 'stdout: the whole error frame, data included');
  t.match(err, /iommu ioas.iovaRanges: EMSGSIZE: .*\(errno 90\)/);
  t.match(err, /data: \{"numIovas":2,/, 'stderr: the data');
  out = err = '';
  t.equal(await iommuCommand(['compat.get', '--control', fx.path], io), 0);
  t.same(JSON.parse(out), { id: 1, result: { ioasId: 1 } });
  t.equal(err, '');
});

t.test('at most 8 control connections at once; the next is refused, later ones served', async (t) => {
  const lines: string[] = [];
  setLogLevel('debug');
  const restore = setLogSink((l) => lines.push(l));
  t.teardown(() => { restore(); setLogLevel('error'); });
  const fx = await start(t);
  const open = await Promise.all(Array.from({ length: 8 }, () => ControlClient.connect(fx.path)));
  for (const c of open) t.same(await c.call('compat.get'), { ioasId: 1 });
  const ninth = await ControlClient.connect(fx.path);
  const r = await ninth.request('compat.get').catch((e: Error) => ({ error: e.message }));
  t.match(r, { error: /ENOTCONN|closed/ }, 'the ninth is closed unanswered');
  ninth.close();
  t.ok(lines.some((l) => /warn .*control connection refused: 8 are open already/.test(l)), 'the refusal is logged');
  const from = lines.length;
  open.pop()!.close();
  while (!lines.slice(from).some((l) => /control client disconnected: peer closed/.test(l))) await new Promise((resolve) => setImmediate(resolve));
  const again = await ControlClient.connect(fx.path);
  t.same(await again.call('compat.get'), { ioasId: 1 }, 'a connection is served once one is free');
  again.close();
  for (const c of open) c.close();
});
