// Message framing over one connected UNIX stream socket (the native addon owns
// the fd). Incoming bytes are parsed in place into whole messages; the fds that
// arrived with a read go to the last message that starts in that read (the
// kernel hands fds out with the read that holds their message's first byte).
// Outgoing messages are appended to one buffer and flushed with as few
// sendmsg calls as possible; a message that carries fds starts its own send.
// After each readiness callback the watcher keeps looking at the socket for
// a window that adaptive-poll.ts sets from how the previous windows went.
// With serveReads, the watcher answers a lone plain REGION_READ itself before
// it calls in (native/region_reads.c), while a gate set here says that
// nothing this side holds could be overtaken by that reply.
import * as native from '../native/index.js';
import { HEADER_SIZE, readHeader, u32At, writeHeader, type Header } from '../protocol/header.js';
import type { Log } from './log.js';
import { AdaptivePoller } from './adaptive-poll.js';

export interface IncomingMessage {
  header: Header;
  /** The bytes after the header. Valid only during onMessage: copy to keep. */
  payload: Buffer;
  /** fds that came with this message; the handler owns them (must close). */
  fds: number[];
}

/** Why a connection ended (the kind, for code; the message, for the log). */
export type DisconnectReason =
  | 'eof' // the peer closed its end after we had sent everything
  | 'reset' // ECONNRESET: the peer closed with our replies unread
  | 'broken-pipe' // EPIPE: the peer was gone when we sent
  | 'protocol' // the byte stream cannot be parsed any further
  | 'fd-truncation' // MSG_CTRUNC: more fds than allowed in one message
  | 'stalled' // the peer stopped reading its replies
  | 'io-error' // any other socket error
  | 'internal' // a bug of ours (a handler threw)
  | 'fault' // a fault rule dropped it on purpose
  | 'shutdown'; // the server closed it

/** The end of a connection, passed to onClose. Orderly ends (EOF, shutdown) are not failures. */
export class Disconnect extends Error {
  constructor(readonly reason: DisconnectReason, message: string) {
    super(message);
    this.name = 'Disconnect';
  }

  get orderly(): boolean {
    return this.reason === 'eof' || this.reason === 'shutdown';
  }

  /** The end a failed socket call (`op`, -errno `status`) means. */
  static fromErrno(op: string, status: number): Disconnect {
    const name = native.systemErrnoName(-status);
    if (-status === native.ECONNRESET) return new Disconnect('reset', 'connection reset by peer (ECONNRESET)');
    if (-status === native.EPIPE) return new Disconnect('broken-pipe', `broken pipe (EPIPE): the peer was gone when we sent (${op})`);
    return new Disconnect('io-error', `${op} failed: ${name}`);
  }
}

export interface TransportHandler {
  /**
   * Optional fast path, offered every whole message that came without fds
   * before onMessage: `buf[at, at+size)` is the message (header included),
   * valid only during the call. Return true when it was handled; false hands
   * it to onMessage as usual.
   */
  onRawMessage?(buf: Buffer, at: number, size: number): boolean;
  onMessage(msg: IncomingMessage): void;
  /** A REGION_READ the watcher answered itself (serveReads): for counting. */
  onNativeRead?(): void;
  /** Called once, after the fd is closed, with why (`orderly` for EOF and shutdown). */
  onClose(end: Disconnect): void;
}

/**
 * Sees every message of a connection (a recording): set only while
 * recording, so without one the transport pays one field check per message.
 * The raw fast path is not offered while a tap is set (its replies never
 * pass through send()), so every message goes past the tap.
 */
export interface MessageTap {
  /** A whole message as received, `buf[at, at+size)` with its header, and its fds (still open). */
  received(buf: Buffer, at: number, size: number, fds: readonly number[]): void;
  /** A message as queued for sending. */
  sent(header: Header, parts: readonly Buffer[], fds?: readonly number[]): void;
  /** The connection ended; `reason` says why. */
  closed(reason: string): void;
}

export interface TransportLimits {
  /** Largest acceptable msg_size; anything bigger makes the stream unusable. */
  maxMessageSize: number;
  /** fds one read may carry; more is MSG_CTRUNC and ends the connection. */
  maxFds: number;
}

interface FdBatch { start: number; end: number; fds: number[] }
interface FdMark { offset: number; fds: number[] }

const INITIAL_BUFFER = 64 * 1024;
const MAX_READS_PER_WAKEUP = 64;
/**
 * Messages one wake-up handles before it yields to the event loop (the poll
 * is level-triggered: the rest is read on the next turn), shared by the
 * open connections of the process. Without it a client that refills while
 * we answer keeps us reading its socket while the other sockets wait: with
 * 16 devices the slowest got a fifth to a half of the fastest one's rate.
 */
const WAKEUP_MESSAGES = 64;
const MIN_WAKEUP_MESSAGES = 4;
let openConnections = 0;
/** A peer that stops reading gets cut off rather than growing us forever. */
const MAX_UNSENT = 256 * 1024 * 1024;

export class Transport {
  private rbuf = Buffer.allocUnsafe(INITIAL_BUFFER);
  private rstart = 0; // first unparsed byte
  private rend = 0; // end of received bytes
  private rbase = 0; // stream offset of rbuf[0]
  private batches: FdBatch[] = [];
  private meta: Int32Array;

  private wbuf = Buffer.allocUnsafe(INITIAL_BUFFER);
  private wlen = 0;
  private wsent = 0;
  private marks: FdMark[] = [];
  private flushScheduled = false;
  private dispatching = false;
  private wantWrite = false;
  /** Messages handled so far (the per-wake-up budget counts them). */
  private handled = 0;

  private watcher: native.Watcher | null;
  /** How long the watcher looks for the next request after each callback. */
  private readonly poller = new AdaptivePoller();
  private pollWindow = 0;
  /** recv/send with rbuf, wbuf and meta registered once (re-registered when they change). */
  private channel: native.Channel;
  private closed = false;
  /** serveReads' shared gate, the reply buffer and the session's limit. */
  private reads: { shared: Int32Array; out: Buffer; limit: () => number } | null = null;

  constructor(
    readonly fd: number,
    private readonly handler: TransportHandler,
    private readonly log: Log,
    private limits: TransportLimits,
    private readonly tap?: MessageTap,
  ) {
    this.meta = new Int32Array(2 + limits.maxFds);
    this.channel = this.openChannel();
    this.watcher = native.watch(fd, native.READABLE, (status, events, ns) => this.onPoll(status, events, ns));
    openConnections++;
  }

  get isClosed(): boolean { return this.closed; }

  setLimits(limits: TransportLimits): void {
    this.limits = limits;
    if (this.meta.length !== 2 + limits.maxFds) {
      // meta's length is the fds one read may carry: a new meta, a new channel.
      this.meta = new Int32Array(2 + limits.maxFds);
      this.channel.close();
      this.channel = this.openChannel();
    }
  }

  /**
   * Lets the watcher answer REGION_READs inside `ranges` itself, building
   * replies in `out`, while the gate is open: `limit()` is the largest count
   * the handler allows at that moment (< 0: none). Throws what watchReads
   * throws for bad ranges. Not with a tap: the watcher's replies bypass it.
   */
  serveReads(ranges: readonly native.ReadRange[], out: Buffer, limit: () => number): void {
    if (this.tap) throw new Error('serveReads: a tapped connection must see every message');
    const shared = new Int32Array(native.READS_SHARED_FIELDS);
    shared[native.READS_GATE] = -1;
    native.watchReads(this.watcher!, shared, out, ranges);
    this.reads = { shared, out, limit };
    this.updateReadGate();
  }

  /**
   * Opens the gate when no reply of the watcher's could overtake anything:
   * no partial message or fds held here, nothing unsent, and the handler's
   * limit allows it. Called after every callback and every flush that
   * emptied the send buffer; the handler calls it when its limit changes
   * outside a callback (the watcher reads the gate before every request).
   */
  updateReadGate(): void {
    const r = this.reads;
    if (r === null) return;
    const idle = !this.closed && this.rstart === this.rend && this.batches.length === 0 && this.wsent === this.wlen && !this.wantWrite;
    r.shared[native.READS_GATE] = idle ? Math.min(r.limit(), 0x7fff_ffff) : -1;
  }

  private openChannel(): native.Channel {
    const ch = native.channel(this.fd, this.meta);
    ch.setBuffers(this.rbuf, this.wbuf);
    return ch;
  }

  /** Queue one message; it goes out at the end of the current dispatch round. */
  send(header: Header, payload?: Buffer | readonly Buffer[], fds?: readonly number[]): void {
    if (this.closed) return;
    const parts = payload === undefined ? [] : Buffer.isBuffer(payload) ? [payload] : payload;
    let size = HEADER_SIZE;
    for (const p of parts) size += p.length;
    this.reserve(size);
    if (this.closed) return;
    if (fds && fds.length > 0) this.marks.push({ offset: this.wlen, fds: [...fds] });
    this.tap?.sent({ ...header, size }, parts, fds);
    writeHeader(this.wbuf, this.wlen, { ...header, size });
    let at = this.wlen + HEADER_SIZE;
    for (const p of parts) at += p.copy(this.wbuf, at);
    this.wlen = at;
    this.scheduleFlush();
  }

  /**
   * Room for one whole outgoing message of `size` bytes (no fds): returns the
   * offset in `outBuffer` where the caller writes it right away, or -1 when
   * the connection is closed. It goes out like a send().
   */
  reserveMessage(size: number): number {
    if (this.closed) return -1;
    this.reserve(size);
    if (this.closed) return -1;
    const at = this.wlen;
    this.wlen = at + size;
    this.scheduleFlush();
    return at;
  }

  /** The send buffer reserveMessage() hands out offsets into. */
  get outBuffer(): Buffer { return this.wbuf; }

  private scheduleFlush(): void {
    if (!this.dispatching && !this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => { this.flushScheduled = false; this.flush(); });
    }
  }

  /** Close the connection; without a reason it is the server's doing (shutdown). */
  close(end: Disconnect = new Disconnect('shutdown', 'server shutdown')): void {
    if (this.closed) return;
    this.closed = true;
    openConnections--;
    const p = this.poller.stats;
    this.log.debug(`poll windows: ${p.hits} hits (${Math.round(p.hitNs / 1000)} µs), ${p.misses} misses (${Math.round(p.missNs / 1000)} µs), ${p.contended} lost the CPU`);
    if (this.watcher) native.watchClose(this.watcher);
    this.watcher = null;
    this.channel.close();
    native.close(this.fd);
    for (const b of this.batches) closeAll(b.fds);
    this.batches = [];
    this.marks = [];
    this.tap?.closed(`${end.reason}: ${end.message}`);
    this.handler.onClose(end);
  }

  private onPoll(status: number, events: number, ns: number): void {
    if (this.closed) return;
    const window = this.poller.update(events, ns);
    if (window !== this.pollWindow) {
      this.pollWindow = window;
      native.watchPoll(this.watcher!, window);
    }
    this.onReady(status, events);
    this.updateReadGate();
  }

  private onReady(status: number, events: number): void {
    if (events & native.POLL_READ_SERVED) return this.readServed(events);
    if (status < 0) return this.onPollError(status);
    if (events & native.WRITABLE) this.flush();
    if (events & native.READABLE && !this.readAvailable() && this.pollWindow !== 0) {
      // Stopped at the wake-up budget with more to read: the other sockets
      // get their turn first, not a window that would find ours ready at once.
      this.poller.withhold();
      this.pollWindow = 0;
      native.watchPoll(this.watcher!, 0);
    }
  }

  /**
   * The watcher answered a REGION_READ; with POLL_READ_UNSENT, the rest of
   * its reply goes out from here. With no poll window to follow, read on:
   * a client that shares our CPU has likely sent its next request already
   * (our reply woke it), and a read finds it sooner than epoll would.
   */
  private readServed(events: number): void {
    this.handled++;
    this.handler.onNativeRead?.();
    if (events & native.POLL_READ_UNSENT) {
      const { shared, out } = this.reads!;
      const tail = out.subarray(shared[native.READS_SENT_BYTES], u32At(out, 4));
      const at = this.reserveMessage(tail.length);
      if (at >= 0) tail.copy(this.wbuf, at);
      return;
    }
    if (this.pollWindow === 0) this.readAvailable();
  }

  /**
   * libuv reports any POLLERR as status EBADF (and stops the watcher), though
   * the fd is fine: the socket has an error pending, e.g. ECONNRESET when the
   * peer closed with our replies unread. recv returns it once the data still
   * queued is read: read on, and watch again while there is more to read.
   */
  private onPollError(status: number): void {
    const received = this.rbase + this.rend;
    this.readAvailable();
    if (this.closed) return;
    if (this.rbase + this.rend === received) {
      this.close(new Disconnect('io-error', `poll reported ${native.systemErrnoName(-status)} and the socket has no error to read`));
      return;
    }
    native.watchSet(this.watcher!, native.READABLE | (this.wantWrite ? native.WRITABLE : 0));
  }

  /** Reads and dispatches what the wake-up budget allows; false when it stopped with more to read. */
  private readAvailable(): boolean {
    this.dispatching = true;
    const budgetEnd = this.handled + Math.max(MIN_WAKEUP_MESSAGES, Math.floor(WAKEUP_MESSAGES / openConnections));
    let drained = false;
    try {
      for (let i = 0; i < MAX_READS_PER_WAKEUP && !this.closed && this.handled < budgetEnd; i++) {
        this.makeRoom();
        const room = this.rbuf.length - this.rend;
        const n = this.channel.recv(this.rend, room);
        if (n === -native.EAGAIN) {
          drained = true;
          break;
        }
        if (n === 0) { this.close(new Disconnect('eof', 'peer closed the connection (EOF)')); return true; }
        if (n < 0) { this.close(Disconnect.fromErrno('recvmsg', n)); return true; }
        const nfds = this.meta[0]!;
        if (nfds > 0) {
          const fds = Array.from(this.meta.subarray(2, 2 + nfds));
          this.batches.push({ start: this.rbase + this.rend, end: this.rbase + this.rend + n, fds });
        }
        this.rend += n;
        if (this.meta[1]! & native.MSG_CTRUNC) {
          this.close(new Disconnect('fd-truncation', `fd truncation (MSG_CTRUNC): more than ${this.limits.maxFds} fds in one message`));
          return true;
        }
        this.parse();
        if (n < room && nfds === 0) {
          // The socket is drained: answer what we have at once, then look
          // again, since a pipelining client has likely sent more meanwhile.
          // (A read that brought fds ends at that message, drained or not:
          // read on, and answer the whole run of them with one send.)
          this.flush();
        }
      }
    } finally {
      this.dispatching = false;
    }
    this.flush();
    return drained || this.closed || this.handled < budgetEnd;
  }

  /** Dispatch every whole message in the buffer. */
  private parse(): void {
    const raw = this.tap ? undefined : this.handler.onRawMessage;
    while (!this.closed && this.rend - this.rstart >= HEADER_SIZE) {
      const at = this.rstart;
      const size = u32At(this.rbuf, at + 4);
      if (size < HEADER_SIZE || size > this.limits.maxMessageSize) {
        this.close(new Disconnect('protocol', `protocol error: message size ${size} outside [${HEADER_SIZE}, ${this.limits.maxMessageSize}], the stream is unusable`));
        return;
      }
      if (this.rend - at < size) {
        this.ensureCapacity(size);
        return;
      }
      try {
        // No fds are pending at all, so none can belong to this message.
        this.handled++;
        if (raw !== undefined && this.batches.length === 0 && raw.call(this.handler, this.rbuf, at, size)) {
          this.rstart = at + size;
          continue;
        }
        const header = readHeader(this.rbuf, at);
        const start = this.rbase + at;
        const fds = this.takeFds(start, start + size);
        const payload = this.rbuf.subarray(at + HEADER_SIZE, at + size);
        this.tap?.received(this.rbuf, at, size, fds);
        this.rstart = at + size;
        this.handler.onMessage({ header, payload, fds });
      } catch (err) {
        // Handlers answer bad input themselves; reaching here is our own bug.
        this.log.error('message handler threw', err);
        this.close(new Disconnect('internal', `internal error: message handler threw: ${err instanceof Error ? err.message : String(err)}`));
        return;
      }
    }
    if (this.rstart === this.rend) {
      this.rbase += this.rend;
      this.rstart = this.rend = 0;
    }
  }

  /** fd batches whose read ended inside [start, end) belong to this message
   * if that read also held the message's first byte; others are strays. */
  private takeFds(start: number, end: number): number[] {
    let fds: number[] = [];
    while (this.batches.length > 0 && this.batches[0]!.end <= end) {
      const b = this.batches.shift()!;
      if (b.start <= start && fds.length === 0) fds = b.fds;
      else closeAll(b.fds);
    }
    return fds;
  }

  private makeRoom(): void {
    if (this.rend < this.rbuf.length) return;
    if (this.rstart > 0) this.compact();
    else this.ensureCapacity(this.rbuf.length * 2);
  }

  private compact(): void {
    this.rbuf.copy(this.rbuf, 0, this.rstart, this.rend);
    this.rbase += this.rstart;
    this.rend -= this.rstart;
    this.rstart = 0;
  }

  private ensureCapacity(messageSize: number): void {
    if (this.rstart > 0) this.compact();
    if (this.rbuf.length >= messageSize) return;
    let size = this.rbuf.length;
    while (size < messageSize) size *= 2;
    const bigger = Buffer.allocUnsafe(Math.min(size, Math.max(messageSize, this.limits.maxMessageSize)));
    this.rbuf.copy(bigger, 0, 0, this.rend);
    this.rbuf = bigger;
    this.channel.setBuffers(bigger, null);
  }

  private reserve(size: number): void {
    if (this.wlen + size <= this.wbuf.length) return;
    if (this.wsent > 0) {
      this.wbuf.copy(this.wbuf, 0, this.wsent, this.wlen);
      for (const m of this.marks) m.offset -= this.wsent;
      this.wlen -= this.wsent;
      this.wsent = 0;
      if (this.wlen + size <= this.wbuf.length) return;
    }
    let cap = this.wbuf.length;
    while (cap < this.wlen + size) cap *= 2;
    if (cap > MAX_UNSENT) {
      this.close(new Disconnect('stalled', `peer is not reading its replies (${this.wlen - this.wsent} bytes unsent)`));
      return;
    }
    const bigger = Buffer.allocUnsafe(cap);
    this.wbuf.copy(bigger, 0, 0, this.wlen);
    this.wbuf = bigger;
    this.channel.setBuffers(null, bigger);
  }

  flush(): void {
    while (!this.closed && this.wsent < this.wlen) {
      let end = this.wlen;
      let fds: number[] | undefined;
      const mark = this.marks[0];
      if (mark && mark.offset === this.wsent) {
        fds = mark.fds;
        end = this.marks[1]?.offset ?? this.wlen;
      } else if (mark) {
        end = mark.offset;
      }
      const n = fds
        ? native.sendmsg(this.fd, this.wbuf, this.wsent, end - this.wsent, fds)
        : this.channel.send(this.wsent, end - this.wsent);
      if (n === -native.EAGAIN) return this.waitWritable(true);
      if (n < 0) return this.close(Disconnect.fromErrno('sendmsg', n));
      if (fds) this.marks.shift();
      this.wsent += n;
    }
    if (this.closed) return;
    this.wlen = this.wsent = 0;
    this.waitWritable(false);
    this.updateReadGate();
  }

  private waitWritable(on: boolean): void {
    if (on === this.wantWrite || !this.watcher) return;
    this.wantWrite = on;
    if (on) this.updateReadGate();
    native.watchSet(this.watcher, native.READABLE | (on ? native.WRITABLE : 0));
  }
}

function closeAll(fds: readonly number[]): void {
  for (const fd of fds) native.close(fd);
}
