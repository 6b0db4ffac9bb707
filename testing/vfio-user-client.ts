// A raw vfio-user client for tests: sends exactly the bytes it is told (also
// malformed ones), matches replies by msg_id, and answers the server's
// DMA_READ/DMA_WRITE from a guest-memory Buffer, as QEMU 11.1 would.
import * as native from '../native/index.js';
import { HEADER_SIZE, readHeader, writeHeader, type Header } from '../protocol/header.js';
import { Command, VFIO_USER_F_ERROR, VFIO_USER_F_NO_REPLY, VFIO_USER_F_TYPE_REPLY } from '../protocol/constants.js';
import { DEFAULT_LIMITS } from '../protocol/limits.js';
import {
  decodeDmaReadRequest, decodeDmaWriteRequest, encodeDmaReadReply, encodeDmaWriteReply,
} from '../protocol/commands/dma-access.js';
import { encodeVersionRequest, decodeVersionReply, type VersionCaps } from '../protocol/version.js';

/** A reply as received: its header, payload, fds and errno. */
export interface ReplyMessage {
  header: Header;
  payload: Buffer;
  fds: number[];
  /** errno of an error reply, else 0. */
  errno: number;
}

/** Guest RAM as the client holds it, for the server's DMA_READ/DMA_WRITE. */
export interface GuestMemory {
  /** Client address of mem[0]. */
  base: bigint;
  mem: Buffer;
}

/** One connection to a vfio-user server, driven message by message. */
export class VfioUserClient {
  private rbuf = Buffer.alloc(1 << 16);
  private rlen = 0;
  private readonly meta = new Int32Array(2 + 16);
  private pendingFds: number[] = [];
  private watcher: native.Watcher | null;
  /** Bytes the socket did not take yet (sent when it is writable again). */
  private outq: Array<{ bytes: Buffer; off: number; fds?: number[] }> = [];
  private waiters = new Map<number, { resolve(m: ReplyMessage): void; reject(e: Error): void }>();
  private nextId = 1;
  private closedErr: Error | null = null;
  private closeWaiters: Array<() => void> = [];
  /** Server→client requests seen (DMA_READ / DMA_WRITE), for assertions. */
  readonly serverRequests: Header[] = [];
  /** Guest memory that DMA_READ/DMA_WRITE act on (no memory: EFAULT). */
  guest: GuestMemory | null = null;
  /**
   * Takes the server's requests instead of `guest` (a replay answers from a
   * recording); it owns the fds and answers with sendRaw.
   */
  onServerRequest: ((header: Header, payload: Buffer, fds: number[]) => void) | null = null;

  private constructor(readonly fd: number) {
    this.watcher = native.watch(fd, native.READABLE, (_status, events) => {
      if (events & native.WRITABLE) this.flushOut();
      if (events & native.READABLE) this.onReadable();
    });
  }

  static connect(path: string): VfioUserClient {
    return new VfioUserClient(native.connectUnix(path));
  }

  /** Connect and negotiate; resolves with the VERSION reply's capabilities. */
  static async open(path: string, caps: VersionCaps = { maxMsgFds: 16, maxDataXferSize: 1 << 20, writeMultiple: true }): Promise<VfioUserClient> {
    const c = VfioUserClient.connect(path);
    const r = await c.request(Command.VERSION, encodeVersionRequest(caps));
    if (r.errno) throw new Error(`VERSION failed: errno ${r.errno}`);
    decodeVersionReply(r.payload);
    return c;
  }

  get closed(): boolean { return this.closedErr !== null; }

  /** Raw bytes straight onto the socket (for split and malformed messages). */
  sendRaw(bytes: Buffer, fds?: number[]): void {
    if (this.closedErr) throw this.closedErr;
    // Queued, never spun on: a server in this same process can only drain
    // the socket once we return to the event loop.
    this.outq.push({ bytes, off: 0, ...(fds ? { fds } : {}) });
    if (this.outq.length === 1) this.flushOut();
  }

  /** Bytes queued by sendRaw that the socket has not taken yet. */
  get unsent(): number {
    let n = 0;
    for (const q of this.outq) n += q.bytes.length - q.off;
    return n;
  }

  private flushOut(): void {
    while (this.outq.length > 0 && !this.closedErr) {
      const q = this.outq[0]!;
      const n = native.sendmsg(this.fd, q.bytes, q.off, q.bytes.length - q.off, q.off === 0 ? q.fds : undefined);
      if (n === -native.EAGAIN) {
        if (this.watcher) native.watchSet(this.watcher, native.READABLE | native.WRITABLE);
        return;
      }
      if (n < 0) return this.shutdown(new Error(`sendmsg: errno ${-n}`));
      q.off += n;
      if (q.off === q.bytes.length) this.outq.shift();
    }
    if (this.watcher) native.watchSet(this.watcher, native.READABLE);
  }

  /** Encode a message (header + payload) without sending it. */
  encode(command: number, payload: Buffer = Buffer.alloc(0), opts: { flags?: number; msgId?: number; size?: number } = {}): { bytes: Buffer; msgId: number } {
    const msgId = opts.msgId ?? this.allocId();
    const bytes = Buffer.alloc(HEADER_SIZE + payload.length);
    writeHeader(bytes, 0, { msgId, command, size: opts.size ?? bytes.length, flags: opts.flags ?? 0, error: 0 });
    payload.copy(bytes, HEADER_SIZE);
    return { bytes, msgId };
  }

  /** Send a request and wait for its reply. */
  request(command: number, payload?: Buffer, opts: { fds?: number[]; flags?: number; msgId?: number; size?: number } = {}): Promise<ReplyMessage> {
    const { bytes, msgId } = this.encode(command, payload, opts);
    const p = this.expectReply(msgId);
    this.sendRaw(bytes, opts.fds);
    return p;
  }

  /** Send with NO_REPLY (a posted write); nothing comes back. */
  post(command: number, payload?: Buffer, fds?: number[]): void {
    const { bytes } = this.encode(command, payload, { flags: VFIO_USER_F_NO_REPLY });
    this.sendRaw(bytes, fds);
  }

  expectReply(msgId: number, timeoutMs = 10_000): Promise<ReplyMessage> {
    if (this.closedErr) return Promise.reject(this.closedErr);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(msgId);
        reject(new Error(`no reply to msg_id ${msgId} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.set(msgId, {
        resolve: (m) => { clearTimeout(timer); resolve(m); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
    });
  }

  allocId(): number {
    const id = this.nextId;
    this.nextId = (this.nextId + 1) & 0xffff;
    return id;
  }

  /** Resolves when the server closes the connection. */
  waitClosed(timeoutMs = 5000): Promise<void> {
    if (this.closedErr) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('server did not close the connection')), timeoutMs);
      this.closeWaiters.push(() => { clearTimeout(timer); resolve(); });
    });
  }

  close(): void {
    this.shutdown(new Error('client closed'));
  }

  private shutdown(err: Error): void {
    if (this.closedErr) return;
    this.closedErr = err;
    if (this.watcher) native.watchClose(this.watcher);
    this.watcher = null;
    native.close(this.fd);
    this.outq = [];
    for (const fd of this.pendingFds) native.close(fd);
    for (const [, w] of this.waiters) w.reject(err);
    this.waiters.clear();
    for (const w of this.closeWaiters) w();
    this.closeWaiters = [];
  }

  private onReadable(): void {
    for (;;) {
      if (this.closedErr) return;
      if (this.rlen === this.rbuf.length) {
        const bigger = Buffer.alloc(this.rbuf.length * 2);
        this.rbuf.copy(bigger, 0, 0, this.rlen);
        this.rbuf = bigger;
      }
      const n = native.recvmsg(this.fd, this.rbuf, this.rlen, this.rbuf.length - this.rlen, this.meta);
      if (n === -native.EAGAIN) return;
      if (n <= 0) return this.shutdown(new Error(n === 0 ? 'server closed the connection' : `recvmsg errno ${-n}`));
      for (let i = 0; i < this.meta[0]!; i++) this.pendingFds.push(this.meta[2 + i]!);
      this.rlen += n;
      this.parse();
    }
  }

  private parse(): void {
    let off = 0;
    while (this.rlen - off >= HEADER_SIZE) {
      const h = readHeader(this.rbuf, off);
      if (h.size < HEADER_SIZE) return this.shutdown(new Error(`bad msg_size ${h.size} from server`));
      if (this.rlen - off < h.size) break;
      const payload = Buffer.from(this.rbuf.subarray(off + HEADER_SIZE, off + h.size));
      const fds = this.pendingFds;
      this.pendingFds = [];
      off += h.size;
      this.dispatch(h, payload, fds);
    }
    this.rbuf.copy(this.rbuf, 0, off, this.rlen);
    this.rlen -= off;
  }

  private dispatch(h: Header, payload: Buffer, fds: number[]): void {
    if ((h.flags & 0xf) === VFIO_USER_F_TYPE_REPLY) {
      const w = this.waiters.get(h.msgId);
      this.waiters.delete(h.msgId);
      const errno = h.flags & VFIO_USER_F_ERROR ? h.error : 0;
      if (w) w.resolve({ header: h, payload, fds, errno });
      else for (const fd of fds) native.close(fd);
      return;
    }
    this.serverRequests.push(h);
    if (this.onServerRequest) return this.onServerRequest(h, payload, fds);
    for (const fd of fds) native.close(fd);
    this.answerServerRequest(h, payload);
  }

  /** DMA_READ/DMA_WRITE against `guest`, replying as QEMU does. */
  private answerServerRequest(h: Header, payload: Buffer): void {
    const reply = (parts: Buffer[], errno = 0): void => {
      let size = 0;
      for (const p of parts) size += p.length;
      const out = Buffer.alloc(HEADER_SIZE + (errno ? 0 : size));
      writeHeader(out, 0, {
        msgId: h.msgId, command: h.command, size: out.length,
        flags: VFIO_USER_F_TYPE_REPLY | (errno ? VFIO_USER_F_ERROR : 0), error: errno,
      });
      if (!errno) Buffer.concat(parts).copy(out, HEADER_SIZE);
      this.sendRaw(out);
    };
    try {
      if (h.command === Command.DMA_READ) {
        const req = decodeDmaReadRequest(payload, DEFAULT_LIMITS, 0);
        const at = this.guestOffset(req.addr, req.count);
        reply(encodeDmaReadReply(req, Buffer.from(this.guest!.mem.subarray(at, at + req.count))));
      } else if (h.command === Command.DMA_WRITE) {
        const req = decodeDmaWriteRequest(payload, DEFAULT_LIMITS, 0);
        const at = this.guestOffset(req.addr, req.count);
        req.data.copy(this.guest!.mem, at);
        reply([encodeDmaWriteReply(req)]);
      } else {
        reply([], 22);
      }
    } catch (err) {
      reply([], (err as { errno?: number }).errno ?? 14);
    }
  }

  private guestOffset(addr: bigint, count: number): number {
    const g = this.guest;
    if (!g || addr < g.base || addr + BigInt(count) > g.base + BigInt(g.mem.length)) {
      throw Object.assign(new Error('outside guest memory'), { errno: 14 });
    }
    return Number(addr - g.base);
  }
}
