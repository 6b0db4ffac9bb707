// One fuzz run against one device kind: a server child, a seeded stream of
// messages over a succession of connections, and the checks: the server
// stays alive, answers a valid request within 5 s, answers every request in
// order with the right id and command and no more bytes than allowed, and
// ends with its fd count back at baseline and its RSS grown by < 100 MiB.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setImmediate as yieldLoop } from 'node:timers/promises';
import { Command, VFIO_USER_F_ERROR, VFIO_USER_F_TYPE_REPLY } from '../protocol/constants.js';
import { HEADER_SIZE, writeHeader, type Header } from '../protocol/header.js';
import { DEFAULT_LIMITS, type NegotiatedLimits } from '../protocol/limits.js';
import { Errno } from '../protocol/errno.js';
import {
  decodeDmaReadRequest, decodeDmaWriteRequest, encodeDmaReadReply, encodeDmaWriteReply,
} from '../protocol/commands/dma-access.js';
import { FuzzConnection, hex, type Finding } from './connection.js';
import { FdMaker } from './fds.js';
import type { FuzzMessage } from './frame.js';
import { MessageFactory } from './messages.js';
import { Prng } from './prng.js';
import { ServerProcess, type ExitInfo } from './server-process.js';
import { VirtioDriver, type Link } from './virtio-driver.js';

/** The device kinds the fuzzer drives. */
export const FUZZ_KINDS = ['gpio', 'rng', 'blk'] as const;
export type FuzzKind = (typeof FUZZ_KINDS)[number];

export interface FuzzOptions {
  kind: FuzzKind;
  /** Messages to send (setup, probes and answers to the server's requests included). */
  count: number;
  seed: number;
  /** Progress and each finding as it happens. */
  log?: (line: string) => void;
}

/** A request that went unanswered for LIVENESS_MS. */
export interface Hang {
  message: number;
  owed: number;
  /** The oldest unanswered request (hex). */
  request: string;
  /** The last messages sent, oldest first (hex). */
  lastMessages: string[];
  /** Share of one core the server used while it did not answer (near 1: its event loop was blocked). */
  cpuBusy: number;
}

/** The server died. */
export interface Crash {
  message: number;
  exit: ExitInfo;
  /** The last messages sent, oldest first (hex), with the kinds of fd sent and where connections began. */
  lastMessages: string[];
  stderr: string[];
}

export interface FuzzReport {
  kind: FuzzKind;
  seed: number;
  messages: number;
  seconds: number;
  perSecond: number;
  perCommand: Record<string, number>;
  connections: number;
  splitMessages: number;
  coalescedSends: number;
  virtioOps: number;
  /** Requests the virtio device put in a used ring (as seen in guest RAM when connections ended). */
  virtioCompletions: number;
  serverRequests: number;
  replies: number;
  hangs: Hang[];
  crashes: Crash[];
  /** Replies that broke the rules (first FINDINGS_KEPT of each kind) and their counts. */
  findings: Finding[];
  mismatches: number;
  oversized: number;
  unexpectedDisconnects: number;
  loggedErrors: number;
  errorSamples: string[];
  alive: boolean;
  fdBaseline: number;
  fdFinal: number;
  rssBaseline: number;
  rssFinal: number;
  /** Largest RSS sampled (at each probe), over every server started. */
  rssPeak: number;
  /** Servers started (1 + restarts after crashes and hangs). */
  serverStarts: number;
  /** Why the run failed (empty: it passed). */
  failures: string[];
}

/** A valid request must be answered within this. */
export const LIVENESS_MS = 5000;
/** RSS growth allowed over a run. */
export const RSS_GROWTH_LIMIT = 100 * 1024 * 1024;
const PROBE_EVERY = 1000;
/** Hangs in a row (the next client not served either) after which the server is restarted. */
const RESTART_AFTER_HANGS = 2;
/** Replies owed before the fuzzer waits (the server must keep up, not buffer without end). */
const MAX_OWED = 64;
const RESUME_OWED = 16;
/** Bytes the socket has not taken yet before the fuzzer waits. */
const MAX_UNSENT = 1 << 20;
const FINDINGS_KEPT = 20;
const LAST_KEPT = 80;
const FD_SETTLE_MS = 10_000;
/** How long a server that dropped a client with replies owed gets to show that it is dying. */
const DEATH_GRACE_MS = 300;
/** Limits for decoding the server's DMA requests: as large as any negotiation allows. */
const ANSWER_LIMITS: NegotiatedLimits = { ...DEFAULT_LIMITS, maxDataXferSize: 64 << 20 };

export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const c = new Campaign(opts);
  try {
    return await c.run();
  } finally {
    await c.cleanup();
  }
}

class Campaign {
  private readonly rng: Prng;
  /**
   * Answers to server requests, and how queued messages are grouped into
   * sends, depend on timing: their randomness is kept apart, so that the
   * message stream itself is the same for a seed.
   */
  private readonly answerRng: Prng;
  private readonly batchRng: Prng;
  private readonly dir: string;
  private readonly fds: FdMaker;
  private readonly f: MessageFactory;
  private server: ServerProcess | null = null;
  private conn: FuzzConnection | null = null;
  private driver: VirtioDriver | null = null;
  private connLeft = 0;
  private sent = 0;
  private consecutiveHangs = 0;
  /** The latest LAST_KEPT messages sent (hex, with their fds), and where connections began. */
  private last: string[] = [];
  private batch: Buffer[] = [];
  private batchTarget = 0;
  private readonly r: FuzzReport;
  private readonly link: Link;
  private readonly log: (line: string) => void;

  constructor(private readonly opts: FuzzOptions) {
    this.rng = new Prng(opts.seed);
    this.answerRng = new Prng(opts.seed ^ 0x5bd1e995);
    this.batchRng = new Prng(opts.seed ^ 0x27d4eb2f);
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `vut-fuzz-${opts.kind}-`));
    this.fds = new FdMaker(this.rng, this.dir);
    this.f = new MessageFactory(this.rng, this.fds);
    this.log = opts.log ?? (() => {});
    this.r = {
      kind: opts.kind, seed: opts.seed, messages: 0, seconds: 0, perSecond: 0, perCommand: {}, connections: 0,
      splitMessages: 0, coalescedSends: 0, virtioOps: 0, virtioCompletions: 0, serverRequests: 0, replies: 0, hangs: [], crashes: [],
      findings: [], mismatches: 0, oversized: 0, unexpectedDisconnects: 0, loggedErrors: 0, errorSamples: [],
      alive: false, fdBaseline: -1, fdFinal: -1, rssBaseline: 0, rssFinal: 0, rssPeak: 0, serverStarts: 0, failures: [],
    };
    this.link = {
      send: (m) => this.send(m),
      ask: (m) => this.ask(m),
    };
  }

  async run(): Promise<FuzzReport> {
    const t0 = process.hrtime.bigint();
    await this.startServer();
    let nextProbe = PROBE_EVERY;
    let nextYield = 256;
    while (this.sent < this.opts.count) {
      if (!this.server!.alive) await this.onCrash();
      if (!this.conn || this.conn.closed || this.connLeft <= 0) await this.reconnect();
      await this.step();
      if (this.conn && (this.conn.expected.length > MAX_OWED || this.conn.unsent > MAX_UNSENT)) await this.settle(RESUME_OWED);
      if (this.sent >= nextProbe) {
        nextProbe = this.sent + PROBE_EVERY;
        await this.probe();
        if (this.sent % 50_000 < PROBE_EVERY) this.progress();
      } else if (this.sent >= nextYield) {
        nextYield = this.sent + 256;
        await yieldLoop();
      }
    }
    await this.probe();
    this.r.seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    this.r.messages = this.sent;
    this.r.perSecond = Math.round(this.sent / this.r.seconds);
    await this.finish();
    return this.r;
  }

  async cleanup(): Promise<void> {
    this.endConnection();
    if (this.server) await this.server.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  // ---- the message stream ----

  private async step(): Promise<void> {
    if (!this.conn) return;
    const r = this.rng;
    const roll = r.below(1000);
    if (roll < 4) {
      this.flushBatch();
      this.connLeft = 0; // abrupt disconnect, replies still owed
      return;
    }
    if (roll < 10) return this.send(this.f.garbage());
    if (this.driver && roll < 400) {
      this.r.virtioOps++;
      return this.driver.op(this.link);
    }
    const m = this.f.random();
    if (roll >= 970) return this.sendSplit(m, r.chance(0.05));
    this.send(m);
  }

  /** Queue `m` (coalesced with its neighbours when it has no fds), expecting what it is owed. */
  private send(m: FuzzMessage): void {
    const conn = this.conn;
    if (!conn || conn.closed) {
      for (const fd of m.fds) this.fds.release(fd);
      return;
    }
    this.account(m);
    if (m.fds.length > 0 || m.desync) {
      this.flushBatch();
      conn.send(m.bytes, m.fds);
    } else {
      if (this.batch.length === 0) this.batchTarget = this.batchRng.chance(0.3) ? this.batchRng.range(2, 32) : 1;
      this.batch.push(m.bytes);
      if (this.batch.length >= this.batchTarget) this.flushBatch();
    }
    this.afterSend(m);
  }

  /** One message over several sendmsg calls; with pauses, the server sees each piece alone. */
  private async sendSplit(m: FuzzMessage, pause: boolean): Promise<void> {
    const conn = this.conn;
    if (!conn || conn.closed) {
      for (const fd of m.fds) this.fds.release(fd);
      return;
    }
    this.flushBatch();
    this.account(m);
    this.r.splitMessages++;
    const cuts = new Set<number>();
    for (let i = this.rng.range(1, 6); i > 0; i--) cuts.add(1 + this.rng.below(Math.max(1, m.bytes.length - 1)));
    const points = [0, ...[...cuts].filter((c) => c < m.bytes.length).sort((a, b) => a - b), m.bytes.length];
    conn.setHold(true);
    for (let i = 0; i + 1 < points.length; i++) {
      conn.send(m.bytes.subarray(points[i]!, points[i + 1]!), i === 0 ? m.fds : []);
      if (pause && i + 2 < points.length) await new Promise((res) => setTimeout(res, 1));
    }
    conn.setHold(false);
    this.afterSend(m);
  }

  private account(m: FuzzMessage): void {
    this.sent++;
    this.r.perCommand[m.label] = (this.r.perCommand[m.label] ?? 0) + 1;
    this.remember(m.fds.length ? `${m.bytes.toString('hex')} fds=${m.fds.map((fd) => this.fds.describe(fd)).join(',')}` : m.bytes.toString('hex'));
    for (const fd of m.fds) this.fds.forget(fd);
    const conn = this.conn!;
    if (m.desync) conn.desynced = true;
    if (m.reply && !conn.desynced) {
      conn.expect({ msgId: m.msgId, command: m.command, maxPayload: m.maxPayload, bytes: m.bytes, onReply: m.onReply });
    }
  }

  private remember(line: string): void {
    this.last.push(line);
    if (this.last.length > LAST_KEPT) this.last.shift();
  }

  private afterSend(m: FuzzMessage): void {
    this.connLeft--;
    if (m.desync) {
      this.flushBatch();
      this.connLeft = 0;
    }
  }

  private flushBatch(): void {
    if (this.batch.length === 0) return;
    if (this.batch.length > 1) this.r.coalescedSends++;
    const bytes = this.batch.length === 1 ? this.batch[0]! : Buffer.concat(this.batch);
    this.batch = [];
    this.conn?.send(bytes);
  }

  /** Sends `m` and waits for its reply payload (null: an error reply, none, or the connection ended). */
  private async ask(m: FuzzMessage): Promise<Buffer | null> {
    let payload: Buffer | null = null;
    m.onReply = (p) => { payload = p; };
    this.send(m);
    await this.settle(0);
    return payload;
  }

  /** Waits until at most `owed` replies are owed; a wait over LIVENESS_MS is a hang. */
  private async settle(owed: number): Promise<void> {
    this.flushBatch();
    const conn = this.conn;
    if (!conn || conn.closed) return;
    const cpu0 = this.server!.cpuSeconds();
    if (await conn.waitOwed(owed, LIVENESS_MS)) {
      this.consecutiveHangs = 0;
      return;
    }
    const e = conn.expected[0]!;
    const hang: Hang = { message: this.sent, owed: conn.expected.length, request: hex(e.bytes), lastMessages: [...this.last],
      cpuBusy: Math.round(((this.server!.cpuSeconds() - cpu0) * 1000) / LIVENESS_MS * 100) / 100,
    };
    this.r.hangs.push(hang);
    this.log(`HANG at message ${this.sent}: server cpu ${hang.cpuBusy}, ${hang.owed} replies owed, oldest request ${hang.request}\n  last messages:\n    ${hang.lastMessages.join('\n    ')}`);
    this.endConnection();
    if (++this.consecutiveHangs >= RESTART_AFTER_HANGS && this.server!.alive) {
      this.log('server unresponsive: restarting it');
      await this.server!.stop();
      await this.startServer();
    }
  }

  private async probe(): Promise<void> {
    this.r.rssPeak = Math.max(this.r.rssPeak, this.server!.rss());
    if (!this.conn || this.conn.closed || this.conn.desynced) await this.reconnect();
    this.send(this.f.probe());
    await this.settle(0);
  }

  private progress(): void {
    const s = this.server!;
    this.log(`${this.sent} messages, ${this.r.hangs.length} hangs, ${this.r.crashes.length} crashes, `
      + `rss ${(s.rss() / 1048576).toFixed(1)} MiB, fds ${s.fdCount()}`);
  }

  // ---- connections and the server ----

  private async reconnect(): Promise<void> {
    // A server that cut the connection may be dying: let its exit show before judging the connection.
    if (this.conn?.closedByServer) await this.exitWithin(DEATH_GRACE_MS);
    this.endConnection();
    if (!this.server!.alive) await this.onCrash();
    const r = this.rng;
    this.conn = await this.connect();
    this.r.connections++;
    this.connLeft = r.range(20, 4000);
    if (r.chance(0.95)) await this.ask(this.f.version());
    if (this.opts.kind !== 'gpio' && r.chance(0.85)) {
      this.driver = new VirtioDriver(r, this.f, this.fds, this.opts.kind, r.chance(0.75));
      await this.driver.bringUp(this.link);
    }
  }

  /** A new connection; a refused connect means the server died (restarted here) or stopped listening (thrown). */
  private async connect(): Promise<FuzzConnection> {
    for (;;) {
      try {
        const conn = FuzzConnection.connect(this.server!.socket, (h, p) => this.answer(h, p));
        this.remember(`-- connection ${this.r.connections + 1} --`);
        return conn;
      } catch (err) {
        if (!(await this.exitWithin(LIVENESS_MS))) throw err;
        await this.onCrash();
      }
    }
  }

  /** True if the server exits within `ms`. */
  private async exitWithin(ms: number): Promise<boolean> {
    const s = this.server!;
    if (!s.alive) return true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([s.waitExit(), new Promise((res) => { timer = setTimeout(res, ms); })]);
    clearTimeout(timer);
    return !s.alive;
  }

  private endConnection(): void {
    this.batch = [];
    const conn = this.conn;
    if (conn) {
      this.r.replies += conn.replies;
      this.r.serverRequests += conn.serverRequests;
      // A connection cut by the server's death is reported as the crash, not as a finding.
      for (const f of conn.findings) if (f.kind !== 'disconnect' || this.server?.alive) this.addFinding(f);
      conn.close();
    }
    this.conn = null;
    if (this.driver) {
      this.r.virtioCompletions += this.driver.completions();
      this.driver.release();
    }
    this.driver = null;
  }

  private addFinding(f: Finding): void {
    if (f.kind === 'mismatch') this.r.mismatches++;
    else if (f.kind === 'oversized') this.r.oversized++;
    else this.r.unexpectedDisconnects++;
    if (this.r.findings.filter((x) => x.kind === f.kind).length < FINDINGS_KEPT) {
      this.r.findings.push(f);
      this.log(`${f.kind.toUpperCase()}: ${f.detail}${f.request ? ` (request ${f.request})` : ''}`);
    }
  }

  private async startServer(): Promise<void> {
    this.server = await ServerProcess.start(this.opts.kind, this.dir);
    this.r.serverStarts++;
    await this.warmUp();
  }

  /** A first client that sets the device up, then leaves: the fd and RSS baselines are taken after it. */
  private async warmUp(): Promise<void> {
    const r = this.rng;
    this.conn = await this.connect();
    await this.ask(this.f.version());
    if (this.opts.kind !== 'gpio') {
      this.driver = new VirtioDriver(r, this.f, this.fds, this.opts.kind, true);
      await this.driver.bringUp(this.link);
      for (let i = 0; i < 8; i++) await this.driver.op(this.link);
    }
    await this.ask(this.f.probe());
    this.endConnection();
    this.r.fdBaseline = await this.settledFdCount();
    this.r.rssBaseline = this.server!.rss();
  }

  /** The child's fd count once it stops changing (a leaving client is torn down asynchronously). */
  private async settledFdCount(target = -1): Promise<number> {
    const until = Date.now() + FD_SETTLE_MS;
    let prev = -2;
    let same = 0;
    for (;;) {
      const n = this.server!.fdCount();
      if (n === target) return n;
      same = n === prev ? same + 1 : 0;
      prev = n;
      if ((target < 0 && same >= 4) || Date.now() > until) return n;
      await new Promise((res) => setTimeout(res, 25));
    }
  }

  private async onCrash(): Promise<void> {
    const s = this.server!;
    const exit = await s.waitExit();
    const crash: Crash = { message: this.sent, exit, lastMessages: [...this.last], stderr: [...s.stderrTail] };
    this.r.crashes.push(crash);
    this.log(`CRASH at message ${this.sent}: exit code ${exit.code}, signal ${exit.signal}\n  last messages:\n    ${crash.lastMessages.join('\n    ')}\n  stderr:\n    ${crash.stderr.slice(-10).join('\n    ')}`);
    this.collectErrors(s);
    this.endConnection();
    await this.startServer();
  }

  private collectErrors(s: ServerProcess): void {
    this.r.loggedErrors += s.loggedErrors;
    for (const e of s.errorSamples) if (this.r.errorSamples.length < FINDINGS_KEPT) this.r.errorSamples.push(e);
  }

  private async finish(): Promise<void> {
    this.endConnection();
    const s = this.server!;
    this.r.fdFinal = await this.settledFdCount(this.r.fdBaseline);
    this.r.rssFinal = s.rss();
    this.r.alive = s.alive;
    this.collectErrors(s);
    const fail = this.r.failures;
    if (this.r.crashes.length) fail.push(`${this.r.crashes.length} crashes`);
    if (!this.r.alive) fail.push('server not alive at the end');
    if (this.r.hangs.length) fail.push(`${this.r.hangs.length} hangs`);
    if (this.r.mismatches) fail.push(`${this.r.mismatches} mismatched replies`);
    if (this.r.oversized) fail.push(`${this.r.oversized} oversized replies`);
    if (this.r.unexpectedDisconnects) fail.push(`${this.r.unexpectedDisconnects} connections dropped with replies owed`);
    if (this.r.loggedErrors) fail.push(`${this.r.loggedErrors} errors logged by the server`);
    if (this.r.fdFinal !== this.r.fdBaseline) fail.push(`fd count ${this.r.fdFinal}, baseline ${this.r.fdBaseline}`);
    if (this.r.rssFinal - this.r.rssBaseline >= RSS_GROWTH_LIMIT) {
      fail.push(`RSS grew by ${((this.r.rssFinal - this.r.rssBaseline) / 1048576).toFixed(1)} MiB`);
    }
  }

  // ---- the server's DMA_READ / DMA_WRITE ----

  /** Answers from the driver's guest memory; sometimes with an error, as a failing client would. */
  private answer(h: Header, payload: Buffer): Buffer {
    const r = this.answerRng;
    const view = (addr: bigint, count: number) => this.driver?.view(addr, count) ?? null;
    try {
      if (r.chance(0.02)) return errorReply(h, r.pick([Errno.EIO, Errno.EFAULT, Errno.EINVAL]));
      if (h.command === Command.DMA_READ) {
        const req = decodeDmaReadRequest(payload, ANSWER_LIMITS, 0);
        const v = view(req.addr, req.count);
        if (!v) return errorReply(h, Errno.EFAULT);
        return replyMessage(h, Buffer.concat(encodeDmaReadReply(req, Buffer.from(v))));
      }
      if (h.command === Command.DMA_WRITE) {
        const req = decodeDmaWriteRequest(payload, ANSWER_LIMITS, 0);
        const v = view(req.addr, req.count);
        if (!v) return errorReply(h, Errno.EFAULT);
        v.set(req.data);
        return replyMessage(h, encodeDmaWriteReply(req));
      }
    } catch {
      return errorReply(h, Errno.EINVAL);
    }
    return errorReply(h, Errno.EINVAL);
  }
}

function replyMessage(h: Header, payload: Buffer): Buffer {
  const b = Buffer.alloc(HEADER_SIZE + payload.length);
  writeHeader(b, 0, { msgId: h.msgId, command: h.command, size: b.length, flags: VFIO_USER_F_TYPE_REPLY, error: 0 });
  payload.copy(b, HEADER_SIZE);
  return b;
}

function errorReply(h: Header, errno: number): Buffer {
  const b = Buffer.alloc(HEADER_SIZE);
  writeHeader(b, 0, { msgId: h.msgId, command: h.command, size: HEADER_SIZE, flags: VFIO_USER_F_TYPE_REPLY | VFIO_USER_F_ERROR, error: errno });
  return b;
}
