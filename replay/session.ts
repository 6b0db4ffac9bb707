// Replays one recorded client connection against a server: sends the
// client's requests, answers the server's DMA_READ/DMA_WRITE from the
// recording, and compares every message the server sends with the
// recorded one; stops at the first divergence.
//
// Ordering. The client's requests go out in recorded order, each only once
// every server message recorded before it has come (so the server has done
// what it had done when the request reached it in the recording). What the
// server sends may legitimately come in another order: its device serves
// requests concurrently (file I/O completes when it completes), so two
// DMA_READs of different requests can swap, and a device may run ahead of
// the next client request. Hence:
//   - replies are matched to requests by msg id (the replay sends the
//     recorded ids), then compared field by field;
//   - a server request is matched to the oldest recorded server request not
//     yet matched with the same command, address and count whose decoded
//     fields all agree (data included); it is answered with that request's
//     recorded reply. DMA_READs of one address (a ring index read again and
//     again) thus take the recorded answers in their recorded order.
// Nothing is hidden by this: a request whose content matches no recorded one
// is a divergence at once, and a recorded server message that never comes
// is one when the replay waits for it (before the next request, or at the
// end), reported against the recording.
//
// Shared guest RAM (a recording made with --record-dma): the device reads and
// writes the replay's memfds directly. What it read in the recording is put
// there before the client request after which it was read; what it wrote
// must show up there before the next client request goes out (as the guest
// had seen it before sending that request), else that write is the
// divergence. Bytes are compared as of that point (a later write or read of
// the same bytes in the recording wins).
import { HEADER_SIZE, isReply, writeHeader, type Header } from '../protocol/header.js';
import { commandName, Command } from '../protocol/constants.js';
import { VfioUserClient } from '../testing/vfio-user-client.js';
import * as native from '../native/index.js';
import { decodeMessage, showValue } from '../trace/decode.js';
import { describeFd } from '../trace/fd-meta.js';
import { isDma, isMessage, type DmaRecord, type MessageRecord, type TraceRecord } from '../trace/format.js';
import { messageLine, showLines } from '../trace/show.js';
import { diffDecoded, type FieldDiff, type IgnoreRule } from './diff.js';
import { ReplayMemory } from './memory.js';
import { ShadowMemory } from './shadow.js';

/** Where and how a replay went another way than its recording. */
export interface Divergence {
  /** Index in the trace's records of the recorded message concerned. */
  record: number;
  session: number;
  /** What happened, in a sentence. */
  what: string;
  /** The recorded message, as `trace show` prints it. */
  recorded?: string;
  /** The message the replay got instead. */
  replayed?: string;
  /** The decoded fields that differ. */
  fields: FieldDiff[];
}

/** How one session is replayed. */
export interface SessionOptions {
  socket: string;
  ignore: IgnoreRule;
  /** How long a recorded server message may take to come (ms). */
  timeoutMs: number;
}

/** What one session's replay did. */
export interface SessionResult {
  sent: number;
  matched: number;
  divergence: Divergence | null;
}

/** Replays the records at `positions` (one session's, in order) of `records`. */
export function replaySession(records: readonly TraceRecord[], positions: readonly number[], session: number, opts: SessionOptions): Promise<SessionResult> {
  return new SessionReplay(records, positions, session, opts).run();
}

class SessionReplay {
  private readonly items: TraceRecord[];
  /** For a client request: the position of its recorded reply; for a server request: of the client's recorded answer. */
  private readonly answer = new Map<number, number>();
  /** Positions of the server's messages, in order (what the replay waits for). */
  private readonly expected: number[] = [];
  private readonly observed = new Set<number>();
  private firstOpen = 0;
  /** Unmatched recorded server requests by command+address+count. */
  private readonly pendingRequests = new Map<string, number[]>();
  private readonly memory = new ReplayMemory();
  private readonly shadow = new ShadowMemory();
  /** Positions of the device's recorded guest-memory writes not yet checked. */
  private unchecked: number[] = [];
  private client: VfioUserClient | null = null;
  private divergence: Divergence | null = null;
  private wake: (() => void) | null = null;
  private sent = 0;

  constructor(
    records: readonly TraceRecord[],
    private readonly positions: readonly number[],
    private readonly session: number,
    private readonly opts: SessionOptions,
  ) {
    this.items = positions.map((p) => records[p]!);
    const open = new Map<string, number>();
    this.items.forEach((r, i) => {
      if (!isMessage(r)) return;
      const reply = isReply(r.header.flags);
      if (r.from === 'server') this.expected.push(i);
      if (!reply) {
        open.set(`${r.from}/${r.header.msgId}/${r.header.command}`, i);
        if (r.from === 'server') {
          const key = requestKey(r.header.command, r.payload);
          const list = this.pendingRequests.get(key) ?? [];
          list.push(i);
          this.pendingRequests.set(key, list);
        }
        return;
      }
      const requester = r.from === 'client' ? 'server' : 'client';
      const key = `${requester}/${r.header.msgId}/${r.header.command}`;
      const req = open.get(key);
      if (req !== undefined) {
        this.answer.set(req, i);
        open.delete(key);
      }
    });
  }

  async run(): Promise<SessionResult> {
    try {
      this.client = VfioUserClient.connect(this.opts.socket);
    } catch (err) {
      this.diverge(0, `cannot connect to ${this.opts.socket}: ${(err as Error).message}`);
      return this.result();
    }
    const client = this.client;
    client.onServerRequest = (h, payload, fds) => this.onServerRequest(h, payload, fds);
    client.waitClosed(2 ** 31 - 1).then(() => this.onClosed(), () => {});
    try {
      for (let i = 0; i < this.items.length && !this.divergence; i++) {
        const r = this.items[i]!;
        if (isDma(r)) {
          this.shadow.apply(BigInt(r.iova), r.data);
          if (r.op === 'write') this.unchecked.push(i);
        }
        if (!isMessage(r) || r.from !== 'client' || isReply(r.header.flags)) continue;
        if (!(await this.waitFor(i)) || !(await this.guestMemoryWritten())) break;
        this.placeGuestMemory(i);
        this.send(i, r);
      }
      if (!this.divergence && (await this.waitFor(this.items.length))) await this.guestMemoryWritten();
    } finally {
      client.close();
      this.memory.close();
    }
    return this.result();
  }

  private result(): SessionResult {
    return { sent: this.sent, matched: this.observed.size, divergence: this.divergence };
  }

  /** Sends the recorded client request at `i` (fresh fds for its fds) and checks its reply when one was recorded. */
  private send(i: number, r: MessageRecord): void {
    let fds: number[];
    try {
      fds = this.memory.fdsFor(r.fds ?? []);
    } catch (err) {
      this.diverge(i, `cannot stand in for the fds of this message: ${(err as Error).message}`, r);
      return;
    }
    this.trackMappings(r, fds);
    const bytes = Buffer.alloc(HEADER_SIZE + r.payload.length);
    writeHeader(bytes, 0, r.header);
    bytes.set(r.payload, HEADER_SIZE);
    const replyAt = this.answer.get(i);
    if (replyAt !== undefined) {
      this.client!.expectReply(r.header.msgId, this.opts.timeoutMs).then(
        (m) => this.checkReply(replyAt, m.header, m.payload, m.fds),
        (err: Error) => this.diverge(replyAt, `no reply to ${commandName(r.header.command)} #${r.header.msgId}: ${err.message}`, this.items[replyAt] as MessageRecord),
      );
    }
    this.sent++;
    this.client!.sendRaw(bytes, fds.length ? fds : undefined);
  }

  /** The replay's memfds stand for guest RAM where the recorded DMA_MAPs put it. */
  private trackMappings(r: MessageRecord, fds: readonly number[]): void {
    if (r.header.command !== Command.DMA_MAP && r.header.command !== Command.DMA_UNMAP) return;
    const f = decodeMessage(r).fields as { addr?: bigint; size?: bigint; offset?: bigint; fdIndex?: number | null; all?: boolean };
    if (f.addr === undefined || f.size === undefined) return;
    if (r.header.command === Command.DMA_UNMAP) this.memory.unmapped(f.addr, f.size, f.all === true);
    else if (typeof f.fdIndex === 'number' && fds[f.fdIndex] !== undefined) this.memory.mapped(f.addr, f.size, f.offset ?? 0n, fds[f.fdIndex]!);
  }

  /** Guest memory the device read (--record-dma) after request `i` in the recording goes in before it is sent. */
  private placeGuestMemory(i: number): void {
    for (let j = i + 1; j < this.items.length; j++) {
      const r = this.items[j]!;
      if (isMessage(r) && r.from === 'client' && !isReply(r.header.flags)) break;
      if (isDma(r) && r.op === 'read') this.memory.place(BigInt(r.iova), r.data);
    }
  }

  /**
   * Waits (up to the timeout) until the device's recorded guest-memory
   * writes not yet checked show in the memfds; false, with the first that
   * does not, on a divergence.
   */
  private async guestMemoryWritten(): Promise<boolean> {
    const deadline = Date.now() + this.opts.timeoutMs;
    for (;;) {
      const bad = this.unchecked.find((i) => {
        const r = this.items[i] as DmaRecord;
        const got = this.memory.read(BigInt(r.iova), r.data.length);
        return got !== null && !got.equals(this.shadow.bytes(BigInt(r.iova), r.data.length));
      });
      if (bad === undefined) {
        this.unchecked = [];
        return true;
      }
      if (Date.now() >= deadline || this.client!.closed) {
        const r = this.items[bad] as DmaRecord;
        const want = this.shadow.bytes(BigInt(r.iova), r.data.length);
        const got = this.memory.read(BigInt(r.iova), r.data.length)!;
        const as = (data: Buffer) => ({ command: 'guest memory write', reply: false, fields: { iova: BigInt(r.iova), data } });
        this.diverge(bad, `the device's recorded write to guest memory at 0x${BigInt(r.iova).toString(16)} (${r.data.length} bytes) is not there`,
          undefined, undefined, diffDecoded(as(want), as(got), this.opts.ignore));
        return false;
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  private checkReply(at: number, header: Header, payload: Buffer, fds: number[]): void {
    const recorded = this.items[at] as MessageRecord;
    const got = this.actual('server', header, payload, fds);
    const diff = diffDecoded(decodeMessage(recorded), decodeMessage(got), this.opts.ignore);
    if (diff.length > 0) {
      this.diverge(at, `the reply to ${commandName(header.command)} #${header.msgId} differs`, recorded, got, diff);
      return;
    }
    this.observe(at);
  }

  private onServerRequest(h: Header, payload: Buffer, fds: number[]): void {
    if (this.divergence) {
      for (const fd of fds) native.close(fd);
      return;
    }
    const got = this.actual('server', h, payload, fds);
    const mine = decodeMessage(got);
    const key = requestKey(h.command, payload);
    const list = this.pendingRequests.get(key) ?? [];
    const k = list.findIndex((i) => {
      const rec = this.items[i] as MessageRecord;
      return Buffer.compare(rec.payload, payload) === 0 || diffDecoded(decodeMessage(rec), mine, this.opts.ignore).length === 0;
    });
    if (k < 0) {
      // Compare with the likeliest counterpart: the oldest of the same address, else the oldest the server still owes.
      const near = list[0] ?? this.oldestOwedRequest();
      const what = `the server sent ${commandName(h.command)} #${h.msgId}, which matches no recorded request still owed`;
      if (near === undefined) this.diverge(this.items.length - 1, what, undefined, got);
      else this.diverge(near, what, this.items[near] as MessageRecord, got, diffDecoded(decodeMessage(this.items[near] as MessageRecord), mine, this.opts.ignore));
      return;
    }
    const at = list.splice(k, 1)[0]!;
    this.observe(at);
    const answerAt = this.answer.get(at);
    if (answerAt === undefined) return; // the recording ended before the client answered: neither do we
    const ans = this.items[answerAt] as MessageRecord;
    const out = Buffer.alloc(HEADER_SIZE + ans.payload.length);
    writeHeader(out, 0, { ...ans.header, msgId: h.msgId });
    out.set(ans.payload, HEADER_SIZE);
    this.client!.sendRaw(out);
  }

  private oldestOwedRequest(): number | undefined {
    let best: number | undefined;
    for (const list of this.pendingRequests.values()) if (list.length && (best === undefined || list[0]! < best)) best = list[0];
    return best;
  }

  /** A received message in the recorded shape (its fds described, then closed). */
  private actual(from: 'server', header: Header, payload: Buffer, fds: number[]): MessageRecord {
    const m: MessageRecord = { type: 'msg', t: 0, device: '', session: this.session, from, header, payload };
    if (fds.length) m.fds = fds.map(describeFd);
    for (const fd of fds) native.close(fd);
    return m;
  }

  private observe(at: number): void {
    this.observed.add(at);
    this.wake?.();
  }

  /** Waits until every server message recorded before position `i` has come; false on a divergence. */
  private async waitFor(i: number): Promise<boolean> {
    const deadline = Date.now() + this.opts.timeoutMs;
    for (;;) {
      if (this.divergence) return false;
      while (this.firstOpen < this.expected.length && this.observed.has(this.expected[this.firstOpen]!)) this.firstOpen++;
      const next = this.expected[this.firstOpen];
      if (next === undefined || next >= i) return true;
      const left = deadline - Date.now();
      if (left <= 0 || this.client!.closed) {
        const r = this.items[next] as MessageRecord;
        const why = this.client!.closed ? 'the server closed the connection first' : `not within ${this.opts.timeoutMs} ms`;
        this.diverge(next, `the server did not send the recorded ${commandName(r.header.command)}${isReply(r.header.flags) ? ' reply' : ''} #${r.header.msgId}: ${why}`, r);
        return false;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 1000));
        this.wake = () => { clearTimeout(timer); resolve(); };
      });
      this.wake = null;
    }
  }

  private onClosed(): void {
    this.wake?.();
  }

  private diverge(at: number, what: string, recorded?: MessageRecord, replayed?: MessageRecord, fields: FieldDiff[] = []): void {
    if (this.divergence) return;
    this.divergence = {
      record: this.positions[Math.max(0, Math.min(at, this.positions.length - 1))] ?? 0,
      session: this.session,
      what,
      fields,
    };
    const at0 = this.items[at];
    if (recorded) this.divergence.recorded = messageLine(recorded, decodeMessage(recorded));
    else if (at0 && isDma(at0)) this.divergence.recorded = [...showLines([at0])][0];
    if (replayed) this.divergence.replayed = messageLine(replayed, decodeMessage(replayed));
    this.wake?.();
  }
}

/** Server requests are matched within command + the bytes that name the memory (address and count). */
function requestKey(command: number, payload: Uint8Array): string {
  return `${command}:${showValue(payload.subarray(0, 16), 16)}`;
}
