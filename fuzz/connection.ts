// One fuzz client connection: raw bytes and fds out (whole, split or
// coalesced), replies in, each checked against the request it answers (same
// msg_id and command, in order, no larger than the request allowed), and the
// server's own DMA_READ/DMA_WRITE requests answered through a callback.
import * as native from '../native/index.js';
import { HEADER_SIZE, readHeader, type Header } from '../protocol/header.js';
import { VFIO_USER_F_ERROR, VFIO_USER_F_TYPE_MASK, VFIO_USER_F_TYPE_REPLY } from '../protocol/constants.js';

/** A request whose reply is still owed, and what that reply may be. */
export interface Expectation {
  msgId: number;
  command: number;
  /** Largest reply payload the request allows. */
  maxPayload: number;
  /** The request's bytes (for the report). */
  bytes: Buffer;
  /** Gets the reply payload (null for an error reply). */
  onReply?: ((payload: Buffer | null) => void) | undefined;
}

/** A reply that broke the rules, with the request it answered. */
export interface Finding {
  kind: 'mismatch' | 'oversized' | 'disconnect';
  detail: string;
  /** Hex of the request (if any). */
  request?: string;
}

/** Bytes queued for one sendmsg; `fds` go with its first byte and are closed once sent. */
interface Segment {
  bytes: Buffer;
  off: number;
  fds: number[];
}

/** Answers a server→client request; returns the whole reply message. */
export type ServerRequestHandler = (h: Header, payload: Buffer) => Buffer;

const RECV_INITIAL = 1 << 17;
/** Requests shown in full in a finding (longer ones are cut). */
const HEX_MAX = 256;

export function hex(b: Buffer): string {
  return b.length > HEX_MAX ? `${b.subarray(0, HEX_MAX).toString('hex')}...(${b.length} bytes)` : b.toString('hex');
}

export class FuzzConnection {
  readonly expected: Expectation[] = [];
  readonly findings: Finding[] = [];
  replies = 0;
  serverRequests = 0;
  /** Set after a message that breaks framing: later replies cannot be attributed. */
  desynced = false;
  closed = false;
  /** The server closed the connection (rather than us). */
  closedByServer = false;
  /** While set, answers to server requests wait (a split message is half sent). */
  private holdAnswers = false;
  private held: Buffer[] = [];
  private outq: Segment[] = [];
  private rbuf = Buffer.alloc(RECV_INITIAL);
  private rlen = 0;
  private readonly meta = new Int32Array(2 + native.MAX_FDS);
  private watcher: native.Watcher | null;
  private waiters: Array<() => void> = [];

  constructor(readonly fd: number, private readonly onServerRequest: ServerRequestHandler) {
    this.watcher = native.watch(fd, native.READABLE, (status, events) => {
      if (status < 0) return this.shutdown(true);
      if (events & native.WRITABLE) this.flush();
      if (events & native.READABLE) this.onReadable();
    });
  }

  static connect(path: string, onServerRequest: ServerRequestHandler): FuzzConnection {
    return new FuzzConnection(native.connectUnix(path), onServerRequest);
  }

  /** Bytes queued and not yet taken by the socket. */
  get unsent(): number {
    let n = 0;
    for (const s of this.outq) n += s.bytes.length - s.off;
    return n;
  }

  /** Queue one sendmsg's worth of bytes (with fds on its first byte). Owns `fds`. */
  send(bytes: Buffer, fds: number[] = []): void {
    if (this.closed) {
      for (const fd of fds) native.close(fd);
      return;
    }
    this.outq.push({ bytes, off: 0, fds });
    if (this.outq.length === 1) this.flush();
  }

  /** Hold server-request answers back (true) or release them (false). */
  setHold(hold: boolean): void {
    this.holdAnswers = hold;
    if (!hold) {
      for (const b of this.held) this.send(b);
      this.held = [];
    }
  }

  expect(e: Expectation): void {
    this.expected.push(e);
  }

  /** Resolves when at most `n` replies are owed (or the connection ended), false after `timeoutMs`. */
  waitOwed(n: number, timeoutMs: number): Promise<boolean> {
    if (this.expected.length <= n || this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.expected.length <= n || this.closed) {
          clearTimeout(timer);
          this.waiters = this.waiters.filter((w) => w !== check);
          resolve(true);
        }
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(false);
      }, timeoutMs);
      this.waiters.push(check);
    });
  }

  /** Resolves when the server has closed the connection, false after `timeoutMs`. */
  waitClosed(timeoutMs: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.closed) { clearTimeout(timer); resolve(true); }
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(false);
      }, timeoutMs);
      this.waiters.push(check);
    });
  }

  close(): void {
    this.shutdown(false);
  }

  private flush(): void {
    while (this.outq.length > 0 && !this.closed) {
      const s = this.outq[0]!;
      const n = native.sendmsg(this.fd, s.bytes, s.off, s.bytes.length - s.off, s.off === 0 && s.fds.length ? s.fds : undefined);
      if (n === -native.EAGAIN) {
        if (this.watcher) native.watchSet(this.watcher, native.READABLE | native.WRITABLE);
        return;
      }
      if (n < 0) return this.shutdown(true);
      if (s.off === 0) this.closeFds(s);
      s.off += n;
      if (s.off === s.bytes.length) this.outq.shift();
    }
    if (this.watcher) native.watchSet(this.watcher, native.READABLE);
  }

  private closeFds(s: Segment): void {
    for (const fd of s.fds) native.close(fd);
    s.fds = [];
  }

  private onReadable(): void {
    for (;;) {
      if (this.closed) return;
      if (this.rlen === this.rbuf.length) {
        const bigger = Buffer.alloc(this.rbuf.length * 2);
        this.rbuf.copy(bigger, 0, 0, this.rlen);
        this.rbuf = bigger;
      }
      const n = native.recvmsg(this.fd, this.rbuf, this.rlen, this.rbuf.length - this.rlen, this.meta);
      if (n === -native.EAGAIN) return;
      if (n <= 0) return this.shutdown(true);
      for (let i = 0; i < this.meta[0]!; i++) native.close(this.meta[2 + i]!);
      this.rlen += n;
      this.parse();
    }
  }

  private parse(): void {
    let off = 0;
    while (this.rlen - off >= HEADER_SIZE && !this.closed) {
      const h = readHeader(this.rbuf, off);
      if (h.size < HEADER_SIZE) {
        this.finding('mismatch', `server sent msg_size ${h.size}`);
        return this.shutdown(false);
      }
      if (this.rlen - off < h.size) break;
      const payload = this.rbuf.subarray(off + HEADER_SIZE, off + h.size);
      off += h.size;
      if ((h.flags & VFIO_USER_F_TYPE_MASK) === VFIO_USER_F_TYPE_REPLY) this.onReply(h, payload);
      else this.answer(h, payload);
    }
    this.rbuf.copy(this.rbuf, 0, off, this.rlen);
    this.rlen -= off;
    this.wake();
  }

  private answer(h: Header, payload: Buffer): void {
    this.serverRequests++;
    const reply = this.onServerRequest(h, payload);
    if (this.holdAnswers) this.held.push(reply);
    else this.send(reply);
  }

  private onReply(h: Header, body: Buffer): void {
    this.replies++;
    const e = this.expected.shift();
    if (this.desynced) return;
    if (!e) {
      this.finding('mismatch', `reply #${h.msgId} (command ${h.command}) with no request outstanding`);
      return;
    }
    if (h.msgId !== e.msgId || h.command !== e.command) {
      this.finding('mismatch', `reply #${h.msgId} command ${h.command}, expected #${e.msgId} command ${e.command}`, e);
      return;
    }
    const payload = h.size - HEADER_SIZE;
    if (h.flags & VFIO_USER_F_ERROR) {
      if (payload !== 0) this.finding('oversized', `error reply to command ${h.command} has ${payload} payload bytes`, e);
    } else if (payload > e.maxPayload) {
      this.finding('oversized', `reply to command ${h.command} has ${payload} payload bytes, request allowed ${e.maxPayload}`, e);
    }
    e.onReply?.(h.flags & VFIO_USER_F_ERROR ? null : Buffer.from(body));
  }

  private finding(kind: Finding['kind'], detail: string, e?: Expectation): void {
    this.findings.push(e ? { kind, detail, request: hex(e.bytes) } : { kind, detail });
  }

  private shutdown(byServer: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.closedByServer = byServer;
    if (byServer && !this.desynced && this.expected.length > 0) {
      const e = this.expected[0]!;
      this.finding('disconnect', `server closed the connection with ${this.expected.length} replies owed`, e);
    }
    if (this.watcher) native.watchClose(this.watcher);
    this.watcher = null;
    native.close(this.fd);
    for (const s of this.outq) this.closeFds(s);
    this.outq = [];
    this.held = [];
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}
