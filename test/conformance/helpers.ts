// Shared fixtures for the protocol conformance suite (not a test file): a
// fresh GPIO server per test file on a temp-dir socket, raw clients, exact
// reply assertions, "the server still serves" probes and fd accounting.
//
// The server runs in this process, so /proc/self/fd counts its fds too: a
// request that brings fds it does not keep must leave the count unchanged.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import * as native from '../../native/index.js';
import { startServer, type RunningServer } from '../../server/runtime.js';
import type { DeviceHost } from '../../server/server.js';
import type { Idio16 } from '../../devices/gpio-idio16/idio16.js';
import type { IommuContext } from '../../iommu/context.js';
import { HEADER_SIZE, writeHeader, type Header } from '../../protocol/header.js';
import {
  Command, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_USER_F_ERROR, VFIO_USER_F_TYPE_REPLY,
} from '../../protocol/constants.js';
import { errnoName } from '../../protocol/errno.js';
import { encodeRegionReadRequest, encodeRegionWriteRequest } from '../../protocol/commands/region-access.js';
import type { VersionCaps } from '../../protocol/version.js';
import { VfioUserClient, type ReplyMessage } from '../../testing/vfio-user-client.js';

export { VfioUserClient, type ReplyMessage };

/** The GPIO's I/O BAR (region 2) and its registers. */
export const BAR2 = 2;
export const CFG = VFIO_PCI_CONFIG_REGION_INDEX;
export const REG = { OUT0_7: 0, IN0_7: 1, IRQ_CTL: 2, FILTER_CTL: 3, OUT8_15: 4, IN8_15: 5, IRQ_STATUS: 6 } as const;

/** What QEMU 11.1 offers in VERSION. */
export const QEMU_CAPS: VersionCaps = {
  maxMsgFds: 16, maxDataXferSize: 1 << 20, pgsizes: 4096, maxDmaMaps: 65535, writeMultiple: true,
};

/** Flags of a successful reply and of an error reply. */
export const F_REPLY = VFIO_USER_F_TYPE_REPLY;
export const F_REPLY_ERROR = VFIO_USER_F_TYPE_REPLY | VFIO_USER_F_ERROR;

export interface Fixture {
  dir: string;
  sock: string;
  rt: RunningServer;
  host: DeviceHost;
  model: Idio16;
  ctx: IommuContext;
  /** 'disconnect' events seen so far. */
  disconnects: number;
}

export const DEVICE = 'gpio0';

let nativeReads = true;

/** Run the suite with the server's native reads on (the default) or off: every message through TypeScript. */
export function useNativeReads(on: boolean): void {
  nativeReads = on;
}

/** What every server the suite starts in this process is started with (spread into startServer's spec). */
export function suiteOptions(): { nativeReads: boolean } {
  return { nativeReads };
}

/** A fresh server with one GPIO device on a socket in a new temp dir. */
export async function startGpio(t: Test, name = DEVICE): Promise<Fixture> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-conf-'));
  const sock = path.join(dir, `${name}.sock`);
  const rt = await startServer({ devices: [{ name, kind: 'gpio', socket: sock, options: {} }], ...suiteOptions() });
  const host = rt.host(name);
  const fx: Fixture = {
    dir, sock, rt, host,
    model: rt.models.get(name) as unknown as Idio16,
    ctx: rt.contexts.get(name)!,
    disconnects: 0,
  };
  host.on('disconnect', () => { fx.disconnects++; });
  t.teardown(async () => {
    await rt.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return fx;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll `cond` until true; throws after `timeoutMs`. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

/** Wait until the server has finished with every client it accepted. */
export async function waitIdle(fx: Fixture, timeoutMs = 5000): Promise<void> {
  await waitFor(() => !fx.host.connected && fx.disconnects === fx.host.connections, 'the server to drop its client', timeoutMs);
}

/** Close a client and wait until the server has processed the disconnect. */
export async function closeClient(fx: Fixture, c: VfioUserClient): Promise<void> {
  c.close();
  await waitIdle(fx);
}

/** Connect and negotiate; closed (and waited for) at the end of the test. */
export async function openClient(t: Test, fx: Fixture, caps: VersionCaps = QEMU_CAPS): Promise<VfioUserClient> {
  const c = await VfioUserClient.open(fx.sock, caps);
  t.teardown(() => closeClient(fx, c));
  return c;
}

/** Connect without negotiating; closed at the end of the test. */
export function connectClient(t: Test, fx: Fixture): VfioUserClient {
  const c = VfioUserClient.connect(fx.sock);
  t.teardown(() => closeClient(fx, c));
  return c;
}

/** The header fields of a reply and its payload/fd counts, for one t.same. */
function shape(r: ReplyMessage): Record<string, number> {
  return {
    msgId: r.header.msgId, command: r.header.command, size: r.header.size,
    flags: r.header.flags, error: r.header.error, payload: r.payload.length, fds: r.fds.length,
  };
}

/** The reply is exactly an error reply to (command, msgId) with `errno`. */
export function assertErrorReply(t: Test, r: ReplyMessage, req: { command: number; msgId: number }, errno: number, what = ''): void {
  for (const fd of r.fds) native.close(fd);
  t.same(shape(r), {
    msgId: req.msgId, command: req.command, size: HEADER_SIZE, flags: F_REPLY_ERROR, error: errno, payload: 0, fds: 0,
  }, `${what ? `${what}: ` : ''}error reply ${errnoName(errno)}`);
}

/** The reply is exactly a success reply to (command, msgId) carrying `payload`. */
export function assertReply(t: Test, r: ReplyMessage, req: { command: number; msgId: number }, payload: Buffer, what = ''): void {
  for (const fd of r.fds) native.close(fd);
  t.same(shape(r), {
    msgId: req.msgId, command: req.command, size: HEADER_SIZE + payload.length, flags: F_REPLY, error: 0,
    payload: payload.length, fds: 0,
  }, `${what ? `${what}: ` : ''}success reply header`);
  t.equal(r.payload.toString('hex'), payload.toString('hex'), `${what ? `${what}: ` : ''}reply payload`);
}

/** Send one request (optionally raw flags/size/fds) and return [reply, msgId]. */
export async function send(
  c: VfioUserClient, command: number, payload: Buffer = Buffer.alloc(0),
  opts: { fds?: number[]; flags?: number; size?: number } = {},
): Promise<{ reply: ReplyMessage; msgId: number; command: number }> {
  const msgId = c.allocId();
  const reply = await c.request(command, payload, { ...opts, msgId });
  return { reply, msgId, command };
}

/** Expected REGION_READ/WRITE reply payload: the 16-byte access header (+ data). */
export function accessReply(offset: number, region: number, count: number, data?: Buffer): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(BigInt(offset), 0);
  b.writeUInt32LE(region, 8);
  b.writeUInt32LE(count, 12);
  return data ? Buffer.concat([b, data]) : b;
}

/** Config space bytes 0-3: vendor 494f, device 0dc8. */
export const VENDOR_DEVICE = Buffer.from([0x4f, 0x49, 0xc8, 0x0d]);

/** A valid request still works on `c`: REGION_READ of the PCI ids, exact reply. */
export async function assertServes(t: Test, c: VfioUserClient, what = 'server still serves'): Promise<void> {
  const r = await send(c, Command.REGION_READ, encodeRegionReadRequest({ offset: 0, region: CFG, count: 4 }));
  t.same(shape(r.reply), {
    msgId: r.msgId, command: Command.REGION_READ, size: HEADER_SIZE + 20, flags: F_REPLY, error: 0, payload: 20, fds: 0,
  }, `${what}: reply header`);
  t.equal(r.reply.payload.toString('hex'), accessReply(0, CFG, 4, VENDOR_DEVICE).toString('hex'), `${what}: PCI ids`);
}

/** `p` rejects with a VfioUserError (or DmaFault) carrying `errno`. */
export async function rejectsErrno(t: Test, p: Promise<unknown>, errno: number, what: string): Promise<void> {
  try {
    await p;
    t.fail(`${what}: resolved, expected ${errnoName(errno)}`);
  } catch (e) {
    t.equal(errnoName((e as { errno?: number }).errno ?? -1), errnoName(errno), what);
  }
}

/** Read `count` bytes of a region; fails the test on an error reply. */
export async function regionRead(c: VfioUserClient, region: number, offset: number, count: number): Promise<Buffer> {
  const r = await c.request(Command.REGION_READ, encodeRegionReadRequest({ offset, region, count }));
  if (r.errno) throw new Error(`REGION_READ ${region}@${offset}+${count}: errno ${errnoName(r.errno)}`);
  return r.payload.subarray(16);
}

export async function regionWrite(c: VfioUserClient, region: number, offset: number, data: Buffer | number[]): Promise<void> {
  const r = await c.request(Command.REGION_WRITE, encodeRegionWriteRequest({ offset, region, data: Buffer.from(data) }));
  if (r.errno) throw new Error(`REGION_WRITE ${region}@${offset}: errno ${errnoName(r.errno)}`);
}

/**
 * Every message the server sends to `c`, in arrival order (replies and its
 * own DMA requests). Wraps the client's private dispatch, so that tests can
 * prove that *nothing* came back for a message.
 */
export function recordIncoming(c: VfioUserClient): Header[] {
  type Dispatch = (h: Header, payload: Buffer, fds: number[]) => void;
  const inner = c as unknown as { dispatch: Dispatch };
  if (typeof inner.dispatch !== 'function') throw new Error('VfioUserClient has no dispatch method to wrap');
  const orig = inner.dispatch.bind(c);
  const log: Header[] = [];
  inner.dispatch = (h, p, f) => { log.push({ ...h }); orig(h, p, f); };
  return log;
}

/**
 * Hold every server→client request (DMA_READ/DMA_WRITE) for `ms` before the
 * client answers it, as a slow QEMU would. Returns a log of when each
 * answer was released.
 */
export function delayServerRequests(c: VfioUserClient, ms: number): { answered: number[] } {
  type Dispatch = (h: Header, payload: Buffer, fds: number[]) => void;
  const inner = c as unknown as { dispatch: Dispatch };
  if (typeof inner.dispatch !== 'function') throw new Error('VfioUserClient has no dispatch method to wrap');
  const orig = inner.dispatch.bind(c);
  const out = { answered: [] as number[] };
  inner.dispatch = (h, p, f) => {
    if ((h.flags & 0xf) === VFIO_USER_F_TYPE_REPLY) return orig(h, p, f);
    const copy = Buffer.from(p);
    setTimeout(() => { out.answered.push(h.msgId); orig(h, copy, f); }, ms);
  };
  return out;
}

/**
 * Answer the server's requests with `answer(header, payload)` instead of the
 * client's own correct replies (return the raw bytes to send, or null to
 * stay silent).
 */
export function answerServerRequests(c: VfioUserClient, answer: (h: Header, payload: Buffer) => Buffer | null): Header[] {
  type Dispatch = (h: Header, payload: Buffer, fds: number[]) => void;
  const inner = c as unknown as { dispatch: Dispatch };
  if (typeof inner.dispatch !== 'function') throw new Error('VfioUserClient has no dispatch method to wrap');
  const orig = inner.dispatch.bind(c);
  const seen: Header[] = [];
  inner.dispatch = (h, p, f) => {
    if ((h.flags & 0xf) === VFIO_USER_F_TYPE_REPLY) return orig(h, p, f);
    for (const fd of f) native.close(fd);
    seen.push({ ...h });
    const bytes = answer(h, p);
    if (bytes) c.sendRaw(bytes);
  };
  return seen;
}

/** A message as bytes: header + payload, with any msg_size/flags. */
export function frame(msgId: number, command: number, payload: Buffer = Buffer.alloc(0), opts: { flags?: number; size?: number; error?: number } = {}): Buffer {
  const b = Buffer.alloc(HEADER_SIZE + payload.length);
  writeHeader(b, 0, { msgId, command, size: opts.size ?? b.length, flags: opts.flags ?? 0, error: opts.error ?? 0 });
  payload.copy(b, HEADER_SIZE);
  return b;
}

/**
 * Send bytes without blocking the event loop (the server runs in this
 * process): on a full socket buffer, yield so that the server can read.
 */
export async function sendAll(c: VfioUserClient, bytes: Buffer, fds?: number[]): Promise<void> {
  c.sendRaw(bytes, fds);
  await waitFor(() => c.unsent === 0 || c.closed, 'the socket to take every byte', 20_000);
}

/** A memfd of `size` bytes filled with a recognisable pattern (byte i = f(i)). */
export function patternMemfd(size: number, seed = 1): { fd: number; data: Buffer } {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) data[i] = (i * 7 + seed + (i >> 8)) & 0xff;
  const fd = native.memfdCreate('conformance', size);
  fs.writeSync(fd, data, 0, size, 0);
  return { fd, data };
}

/** Read `n` bytes at `pos` of an fd (e.g. a memfd the server mapped). */
export function preadFd(fd: number, pos: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  fs.readSync(fd, b, 0, n, pos);
  return b;
}

export { native };
