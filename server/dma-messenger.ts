// Guest memory reached by messages: the server→client DMA_READ/DMA_WRITE
// requests with their own msg ids, split into chunks and paced by the reply
// budget (reply-budget.ts), matched with the client's replies.
import { hasError, requestHeader, HEADER_SIZE, type Header } from '../protocol/header.js';
import { Command, commandName } from '../protocol/constants.js';
import {
  decodeDmaReadReply, decodeDmaWriteReply, encodeDmaReadRequest, encodeDmaWriteRequest,
} from '../protocol/commands/dma-access.js';
import type { NegotiatedLimits } from '../protocol/limits.js';
import { Errno, VfioUserError, errnoName } from '../protocol/errno.js';
import * as native from '../native/index.js';
import type { DmaMessenger } from '../iommu/backing-message.js';
import { ReplyBudget } from './reply-budget.js';
import type { IncomingMessage } from './transport.js';
import type { Log } from './log.js';

interface Pending {
  command: number;
  resolve(payload: Buffer): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** A client that does not answer our DMA_READ/WRITE within this is broken. */
const REQUEST_TIMEOUT_MS = 30_000;
/**
 * Largest DMA_READ/WRITE we send, and the reply bytes we may be owed at once
 * (see reply-budget.ts: QEMU's send buffer toward us must never fill).
 */
const DMA_CHUNK_MAX = 64 * 1024;
/** header + {address u64, count u64} in front of DMA_READ data / as the DMA_WRITE reply */
const DMA_REPLY_OVERHEAD = HEADER_SIZE + 16;
/** Two whole chunks in flight: about 128 KiB, well under QEMU's ~208 KiB send buffer. */
const REPLY_BUDGET = 2 * (DMA_CHUNK_MAX + DMA_REPLY_OVERHEAD);

/** What the messenger needs from its connection. */
export interface RequestChannel {
  /** The limits negotiated with the client (they change at VERSION). */
  readonly limits: NegotiatedLimits;
  /** Queue one message to the client. */
  send(header: Header, payload: readonly Buffer[]): void;
}

/** DmaMessenger over one client connection. */
export class ClientDmaMessenger implements DmaMessenger {
  private nextMsgId = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly budget = new ReplyBudget(REPLY_BUDGET);
  private closed = false;

  constructor(private readonly channel: RequestChannel, private readonly log: Log) {}

  /** Largest count one DMA_READ/DMA_WRITE carries: the client's limit, at most DMA_CHUNK_MAX. */
  get maxChunk(): number {
    return Math.min(this.channel.limits.peerMaxDataXferSize, DMA_CHUNK_MAX);
  }

  /** Reads guest memory in chunks sent at once (the budget paces them). */
  async read(addr: bigint, length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    const chunk = this.maxChunk;
    const jobs: Promise<void>[] = [];
    for (let done = 0; done < length; done += chunk) {
      const n = Math.min(chunk, length - done);
      const at = addr + BigInt(done);
      const req = encodeDmaReadRequest(at, n, this.channel.limits);
      jobs.push(this.request(Command.DMA_READ, [req], DMA_REPLY_OVERHEAD + n).then((reply) => {
        decodeDmaReadReply(reply, { addr: at, count: n }).copy(out, done);
      }));
    }
    await Promise.all(jobs);
    return out;
  }

  /** Writes guest memory in chunks; `data` is sent without a copy. */
  async write(addr: bigint, data: Uint8Array): Promise<void> {
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const chunk = this.maxChunk;
    const jobs: Promise<void>[] = [];
    for (let done = 0; done < buf.length; done += chunk) {
      const piece = buf.subarray(done, Math.min(buf.length, done + chunk));
      const at = addr + BigInt(done);
      jobs.push(this.request(Command.DMA_WRITE, encodeDmaWriteRequest(at, piece, this.channel.limits), DMA_REPLY_OVERHEAD).then((reply) => {
        decodeDmaWriteReply(reply, { addr: at, count: piece.length });
      }));
    }
    await Promise.all(jobs);
  }

  /**
   * Send a request to the client and resolve with (a copy of) its reply
   * payload, once the reply budget has room for `replyBytes` (the whole reply
   * we expect, header included).
   */
  async request(command: number, payload: readonly Buffer[], replyBytes: number): Promise<Buffer> {
    if (this.closed) throw new VfioUserError(Errno.ENOTCONN, 'client disconnected');
    await this.budget.acquire(replyBytes);
    try {
      return await this.send(command, payload);
    } finally {
      this.budget.release(replyBytes);
    }
  }

  /** A reply from the client: settles the request it answers. */
  onReply(m: IncomingMessage): void {
    for (const fd of m.fds) native.close(fd);
    const h = m.header;
    const p = this.pending.get(h.msgId);
    if (!p || p.command !== h.command) {
      this.log.warn(`ignoring unexpected reply #${h.msgId} (${commandName(h.command)})`);
      return;
    }
    this.pending.delete(h.msgId);
    clearTimeout(p.timer);
    if (hasError(h.flags)) p.reject(new VfioUserError(h.error || Errno.EIO, `client answered ${commandName(h.command)} with ${errnoName(h.error)}`));
    else p.resolve(Buffer.from(m.payload));
  }

  /** The client is gone: every request sent or waiting for budget fails with ENOTCONN. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new VfioUserError(Errno.ENOTCONN, 'client disconnected'));
    }
    this.pending.clear();
    this.budget.fail(new VfioUserError(Errno.ENOTCONN, 'client disconnected'));
  }

  private send(command: number, payload: readonly Buffer[]): Promise<Buffer> {
    if (this.closed) return Promise.reject(new VfioUserError(Errno.ENOTCONN, 'client disconnected'));
    let id = this.nextMsgId;
    while (this.pending.has(id)) id = (id + 1) & 0xffff;
    this.nextMsgId = (id + 1) & 0xffff;
    let size = 0;
    for (const p of payload) size += p.length;
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new VfioUserError(Errno.ETIMEDOUT, `${commandName(command)} #${id}: no reply from client`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { command, resolve, reject, timer });
      this.channel.send(requestHeader(id, command, size), payload);
    });
  }
}
