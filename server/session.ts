// One client connection: negotiation state, in-order dispatch and replies.
// The server→client requests (DMA_READ/DMA_WRITE) are dma-messenger.ts.
//
// Ordering: requests are handled strictly in arrival order. A handler that
// returns a promise (a device waiting on guest memory) holds later requests
// in a queue, but replies to our own requests are matched at once, so a
// device that awaits a DMA_READ never deadlocks the connection.
//
// REGION_READs of ranges the device declares plain (VfioUserDevice.plainReads)
// may be answered by the transport's watcher in C, while this session says
// they may (nativeReadLimit): those replies are byte for byte this path's.
import {
  isReply, noReply, replyHeader, validateRequestHeader, maxMessageSize,
  readHeader, u16At, u32At, HEADER_SIZE, type Header,
} from '../protocol/header.js';
import { Command, commandName, VFIO_USER_F_NO_REPLY, VFIO_USER_F_TYPE_COMMAND } from '../protocol/constants.js';
import {
  encodeRegionReadReply, encodeRegionWriteReply, peekRegionAccess, writeRegionAccessReply, REGION_ACCESS_SIZE,
  type RegionAccess,
} from '../protocol/commands/region-access.js';
import { DEFAULT_LIMITS, type NegotiatedLimits } from '../protocol/limits.js';
import { Errno, VfioUserError } from '../protocol/errno.js';
import * as native from '../native/index.js';
import type { PlainRead, PollGate, VfioUserDevice } from '../devices/device.js';
import { processPollBudget } from './adaptive-poll.js';
import { Disconnect, Transport, type IncomingMessage, type MessageTap } from './transport.js';
import type { DmaSpace } from './dma-space.js';
import { ClientDmaMessenger } from './dma-messenger.js';
import { FdBag } from './fd-bag.js';
import { handleCommand } from './handlers.js';
import type { HandlerContext, Reply } from './handler-context.js';
import type { Log } from './log.js';
import type { DeviceFaults } from '../faults/device-faults.js';
import { corruptReply, runMessageFault, type CorruptAction } from '../faults/message-fault.js';

interface Queued { header: Header; payload: Buffer; fds: number[] }

/** The largest plain read answered natively (PCIe config space is 4 KiB). */
const MAX_NATIVE_READ = 4096;
/** Messages after a REGION_READ during which the watcher looks for more (see readsLately). */
const READS_LATELY = 16;

export class Session implements HandlerContext {
  limits: NegotiatedLimits = DEFAULT_LIMITS;
  negotiated = false;
  private readonly transport: Transport;
  private queue: Queued[] = [];
  private busy = false;
  private closed = false;
  /** The fast path's decoded access (reused). */
  private readonly access: RegionAccess = { offset: 0, region: 0, count: 0 };
  private readonly scratch: Buffer[] = Array.from({ length: 9 }, (_, n) => Buffer.alloc(n));
  readonly messenger: ClientDmaMessenger;
  /** The request whose reply a fault rule corrupts (at most one reply is outstanding at a time). */
  private corrupting: { h: Header; action: CorruptAction } | null = null;
  readonly poll: PollGate | undefined;
  /**
   * Messages left before the watcher stops looking for plain reads: the
   * look is a system call before every message, wasted on a socket that
   * carries doorbells and DMA maps. A REGION_READ sets it again.
   */
  private readsLately = READS_LATELY;

  constructor(
    fd: number,
    readonly device: VfioUserDevice,
    readonly space: DmaSpace,
    readonly log: Log,
    private readonly onEnd: (error?: Error) => void,
    /** Requests seen per command name (shared with the host, for tests and status). */
    private readonly counts: Record<string, number> = {},
    /** The device's fault rules, when the server injects faults. */
    readonly faults: DeviceFaults | null = null,
    /** Sees every message (a recording); the raw fast path is off while it is set. */
    tap?: MessageTap,
    /** Let the transport answer the device's plain reads in native code (never with a tap). */
    nativeReads = true,
  ) {
    this.poll = tap ? undefined : processPollBudget;
    this.transport = new Transport(fd, {
      onRawMessage: (buf, at, size) => this.onRawMessage(buf, at, size),
      onMessage: (m) => this.onMessage(m),
      onNativeRead: () => this.counted('REGION_READ'),
      onClose: (err) => this.onClose(err),
    }, log, { maxMessageSize: maxMessageSize(DEFAULT_LIMITS), maxFds: DEFAULT_LIMITS.maxMsgFds }, tap);
    if (nativeReads && !tap) this.serveReadsNatively();
    const session = this;
    this.messenger = new ClientDmaMessenger({
      get limits() { return session.limits; },
      send: (header, payload) => this.transport.send(header, payload),
    }, log);
  }

  /** After VERSION: the limits every later message is checked against. */
  setLimits(limits: NegotiatedLimits): void {
    this.limits = limits;
    this.negotiated = true;
    this.transport.setLimits({ maxMessageSize: maxMessageSize(limits), maxFds: limits.maxMsgFds });
  }

  close(end?: Disconnect): void {
    this.transport.close(end);
  }

  /** Hands the device's plain ranges to the transport; a device that gets them wrong is served without. */
  private serveReadsNatively(): void {
    let ranges: readonly PlainRead[];
    try {
      ranges = this.device.plainReads?.() ?? [];
      if (ranges.length === 0) return;
      let longest = 0;
      for (const r of ranges) longest = Math.max(longest, r.bytes.length);
      const out = Buffer.alloc(HEADER_SIZE + REGION_ACCESS_SIZE + Math.min(longest, MAX_NATIVE_READ));
      this.transport.serveReads(ranges, out, () => this.nativeReadLimit());
    } catch (err) {
      this.log.warn(`plain reads of ${this.device.name} are served in TypeScript: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    if (this.faults !== null) this.faults.rulesChanged = this.rulesChanged;
  }

  /**
   * Counts a request (either path). After a REGION_READ the watcher looks for
   * plain reads for READS_LATELY more messages, one fewer after anything else.
   */
  private counted(name: string): void {
    this.counts[name] = (this.counts[name] ?? 0) + 1;
    this.readsLately = name === 'REGION_READ' ? READS_LATELY : Math.max(0, this.readsLately - 1);
  }

  /** Fault rules changed: a message rule must see the next request, so the gate is set again now. */
  private readonly rulesChanged = (): void => this.transport.updateReadGate();

  /**
   * The largest REGION_READ the watcher may answer now, or -1: only when this
   * path would take the raw fast path too, with nothing queued or in progress.
   */
  private nativeReadLimit(): number {
    if (this.readsLately === 0 || !this.negotiated || this.busy || this.queue.length > 0 || this.closed) return -1;
    if (this.faults !== null && this.faults.message.length !== 0) return -1;
    return this.limits.maxDataXferSize;
  }

  /**
   * The hot path: a well-formed REGION_READ/WRITE, in order and with nothing
   * queued, served from the receive buffer into the send buffer with no
   * intermediate objects. Anything else (or anything odd about it) returns
   * false and takes the general path, which owns every error reply.
   */
  private onRawMessage(buf: Buffer, at: number, size: number): boolean {
    if (!this.negotiated || this.busy || this.queue.length > 0) return false;
    if (this.faults !== null && this.faults.message.length !== 0) return false; // rules look at every message
    const flags = u32At(buf, at + 8);
    if ((flags & ~VFIO_USER_F_NO_REPLY) !== VFIO_USER_F_TYPE_COMMAND) return false;
    const command = u16At(buf, at + 2);
    const write = command === Command.REGION_WRITE;
    if (!write && command !== Command.REGION_READ) return false;
    const a = this.access;
    if (!peekRegionAccess(buf, at + HEADER_SIZE, size - HEADER_SIZE, write, this.limits, a)) return false;
    this.counted(write ? 'REGION_WRITE' : 'REGION_READ');
    const msgId = u16At(buf, at);
    const quiet = (flags & VFIO_USER_F_NO_REPLY) !== 0;
    let result: Buffer | void | Promise<Buffer | void>;
    try {
      result = write
        ? this.device.regionWrite(a.region, a.offset, this.writeData(buf, at + HEADER_SIZE + REGION_ACCESS_SIZE, a.count))
        : this.device.regionRead(a.region, a.offset, a.count);
    } catch (err) {
      this.replyError(readHeader(buf, at), err);
      return true;
    }
    if (result instanceof Promise) {
      // A device that needs time: the general path's ordering takes over.
      const req: RegionAccess = { offset: a.offset, region: a.region, count: a.count };
      this.finish(readHeader(buf, at), result.then((d) => ({
        payload: write ? encodeRegionWriteReply(req) : encodeRegionReadReply(req, d as Buffer),
      })), new FdBag([]));
      return true;
    }
    if (quiet || this.closed) return true;
    if (write) {
      const out = this.transport.reserveMessage(HEADER_SIZE + REGION_ACCESS_SIZE);
      if (out >= 0) writeRegionAccessReply(this.transport.outBuffer, out, msgId, command, a, 0);
      return true;
    }
    const data = result as Buffer;
    if (data.length > a.count) {
      this.replyError(readHeader(buf, at), new VfioUserError(Errno.EIO, `REGION_READ: device returned ${data.length} bytes for ${a.count}`));
      return true;
    }
    a.count = data.length;
    const out = this.transport.reserveMessage(HEADER_SIZE + REGION_ACCESS_SIZE + data.length);
    if (out < 0) return true;
    const wbuf = this.transport.outBuffer;
    writeRegionAccessReply(wbuf, out, msgId, command, a, data.length);
    copySmall(data, wbuf, out + HEADER_SIZE + REGION_ACCESS_SIZE);
    return true;
  }

  /** The bytes of a REGION_WRITE, valid during the device call only. */
  private writeData(buf: Buffer, at: number, count: number): Buffer {
    // Register-sized writes reuse one view per size instead of a new one.
    const scratch = count <= 8 ? this.scratch[count] : undefined;
    if (scratch === undefined) return buf.subarray(at, at + count);
    for (let i = 0; i < count; i++) scratch[i] = buf[at + i]!;
    return scratch;
  }

  private onMessage(m: IncomingMessage): void {
    if (isReply(m.header.flags)) return this.messenger.onReply(m);
    if (this.busy || this.queue.length > 0) {
      // Keep a copy: the receive buffer is reused after this call.
      this.queue.push({ header: m.header, payload: Buffer.from(m.payload), fds: m.fds });
      return;
    }
    this.process(m.header, m.payload, m.fds);
  }

  private process(h: Header, payload: Buffer, fds: number[]): void {
    this.counted(commandName(h.command));
    const fdBag = new FdBag(fds);
    let result: Reply | Promise<Reply>;
    try {
      const verdict = validateRequestHeader(h, this.limits);
      if (verdict.action !== 'accept') throw new VfioUserError(verdict.errno, verdict.reason);
      if (!this.negotiated && h.command !== Command.VERSION) {
        throw new VfioUserError(Errno.EINVAL, `${commandName(h.command)} before VERSION`);
      }
      const fired = this.faults === null || this.faults.message.length === 0 ? undefined : this.faults.onMessage(h, payload, !noReply(h.flags));
      if (fired === undefined) result = handleCommand(this, h, payload, fdBag);
      else {
        if (fired.rule.action.type === 'corrupt') this.corrupting = { h, action: fired.rule.action };
        result = runMessageFault<Reply>(fired, {
          device: this.device,
          faults: this.faults!,
          run: () => handleCommand(this, h, payload, fdBag),
          drop: (reason) => this.transport.close(new Disconnect('fault', reason)),
        });
      }
    } catch (err) {
      fdBag.closeRest();
      this.replyError(h, err);
      return;
    }
    if (!(result instanceof Promise)) {
      fdBag.closeRest();
      this.reply(h, result);
      return;
    }
    this.finish(h, result, fdBag);
  }

  /** An asynchronous handler: later requests wait in the queue until it settles. */
  private finish(h: Header, result: Promise<Reply>, fdBag: FdBag): void {
    this.busy = true;
    this.transport.updateReadGate();
    result.then(
      (r) => this.reply(h, r),
      (err) => this.replyError(h, err),
    ).finally(() => {
      fdBag.closeRest();
      this.busy = false;
      this.drain();
      this.transport.updateReadGate();
    });
  }

  private drain(): void {
    while (!this.busy && !this.closed && this.queue.length > 0) {
      const q = this.queue.shift()!;
      this.process(q.header, q.payload, q.fds);
    }
  }

  private reply(h: Header, r: Reply): void {
    if (noReply(h.flags) || this.closed) return;
    const parts = r?.payload === undefined ? [] : Buffer.isBuffer(r.payload) ? [r.payload] : r.payload;
    let size = 0;
    for (const p of parts) size += p.length;
    if (this.corrupting?.h === h) return this.sendCorrupted(replyHeader(h, size), parts);
    this.transport.send(replyHeader(h, size), parts, r?.fds);
  }

  /** The reply with the fault rule's field flipped (any fds it carried are not sent). */
  private sendCorrupted(header: Header, parts: readonly Buffer[]): void {
    const bytes = corruptReply(header, parts, this.corrupting!.action);
    this.corrupting = null;
    const at = this.transport.reserveMessage(bytes.length);
    if (at >= 0) bytes.copy(this.transport.outBuffer, at);
  }

  private replyError(h: Header, err: unknown): void {
    let errno: number = Errno.EINVAL;
    if (err instanceof VfioUserError) {
      errno = err.errno;
      this.log.debug(`${commandName(h.command)} #${h.msgId} failed: ${err.message}`);
    } else {
      // Not a validation error: a bug in a handler or device. Say so, keep going.
      errno = Errno.EIO;
      this.log.error(`${commandName(h.command)} #${h.msgId} failed unexpectedly`, err);
    }
    if (noReply(h.flags) || this.closed) return;
    if (this.corrupting?.h === h) return this.sendCorrupted(replyHeader(h, 0, errno), []);
    this.transport.send(replyHeader(h, 0, errno));
  }

  private onClose(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    for (const q of this.queue) for (const fd of q.fds) native.close(fd);
    this.queue = [];
    if (this.faults !== null && this.faults.rulesChanged === this.rulesChanged) this.faults.rulesChanged = null;
    this.messenger.close();
    this.onEnd(error);
  }
}

/** Copies `src` to dst[at...]: a plain loop beats the copy call for register-sized data. */
function copySmall(src: Uint8Array, dst: Uint8Array, at: number): void {
  const n = src.length;
  if (n > 64) {
    dst.set(src, at);
    return;
  }
  for (let i = 0; i < n; i++) dst[at + i] = src[i]!;
}
