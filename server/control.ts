// The control socket (`--control PATH`): the IOMMU model's new API (and the
// legacy type1 ops) from outside the process, plus `device.stats` (a device's
// own counters). Each device has its own IOMMU context; `args.device` picks it
// (optional when there is one device).
// Every request gets exactly one response frame, in order; anything wrong
// with a frame (bad msgpack, wrong types, unknown op, too large) is an error
// frame and the connection goes on.
import net from 'node:net';
import fs from 'node:fs';
import { Errno, VfioUserError } from '../protocol/errno.js';
import type { IommuContext } from '../iommu/context.js';
import type { DeviceModel } from '../devices/definition.js';
import {
  FrameReader, MAX_FRAME, encodeFrame, errorResponse, failure, packr, type ControlResponse, type Frame,
} from './control-frames.js';
import { DEVICE_STATS_OP, deviceStats } from './device-stats.js';
import { clearStaleSocket } from './listener.js';
import type { Log } from './log.js';
import { Disconnect } from './transport.js';
import type { FaultInjector } from '../faults/injector.js';
import { dispatchFaultOp, isFaultOp } from '../faults/control-ops.js';

/** In-process only: an fd or object from outside must never reach the model. */
const LOCAL_ONLY = ['fd', 'backing', 'messenger', 'messageBase'];
/** Frames one connection may have read ahead of their answers before reading pauses. */
const MAX_QUEUED = 64;
/** Control connections at once (each may hold a frame of up to maxFrame being read and one being answered). */
const MAX_CLIENTS = 8;

export interface ControlOptions {
  /** Largest request or response frame body (default MAX_FRAME). */
  maxFrame?: number;
  /** The served device models by name, for `device.stats` (without it that op finds no device). */
  models?: ReadonlyMap<string, DeviceModel>;
  /** The fault injector the fault.* operations act on (absent: they are EOPNOTSUPP). */
  faults?: FaultInjector | null;
}

export class ControlServer {
  private readonly server: net.Server;
  private readonly clients = new Map<net.Socket, { end?: Disconnect }>();
  private readonly maxFrame: number;
  private readonly models: ReadonlyMap<string, DeviceModel>;
  private readonly faults: FaultInjector | null;

  private constructor(readonly path: string, private readonly contexts: ReadonlyMap<string, IommuContext>, private readonly log: Log, opts: ControlOptions) {
    this.maxFrame = opts.maxFrame ?? MAX_FRAME;
    this.models = opts.models ?? new Map();
    this.faults = opts.faults ?? null;
    // Half-open: a client that shuts down its side after its last request still gets every answer.
    this.server = net.createServer({ allowHalfOpen: true }, (s) => this.onClient(s));
    this.server.maxConnections = MAX_CLIENTS;
    this.server.on('drop', () => this.log.warn(`control connection refused: ${MAX_CLIENTS} are open already`));
  }

  static async open(path: string, contexts: ReadonlyMap<string, IommuContext>, log: Log, opts: ControlOptions = {}): Promise<ControlServer> {
    clearStaleSocket(path);
    const c = new ControlServer(path, contexts, log, opts);
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        c.server.once('error', reject);
        c.server.listen(path, () => { c.server.off('error', reject); resolve(); });
      });
    } finally {
      process.umask(oldMask);
    }
    fs.chmodSync(path, 0o600);
    log.info(`control socket on ${path}`);
    return c;
  }

  /** Run one request (also used in-process and by tests). */
  async handle(raw: unknown): Promise<ControlResponse> {
    const id = isObject(raw) && typeof raw.id === 'number' ? raw.id : null;
    try {
      if (!isObject(raw) || typeof raw.op !== 'string') throw new VfioUserError(Errno.EINVAL, 'a request is {id, op, args}');
      const args = raw.args === undefined ? {} : raw.args;
      if (!isObject(args)) throw new VfioUserError(Errno.EINVAL, 'args must be a map');
      for (const k of LOCAL_ONLY) {
        if (k in args) throw new VfioUserError(Errno.EINVAL, `'${k}' cannot be passed over the control socket`);
      }
      if (isFaultOp(raw.op)) {
        if (!this.faults) throw new VfioUserError(Errno.EOPNOTSUPP, 'this server injects no faults');
        return { id, result: dispatchFaultOp(this.faults, raw.op, args) };
      }
      const ctx = this.contextFor(args);
      if (raw.op === DEVICE_STATS_OP) {
        const name = args.device as string; // contextFor checked it (or named the only device)
        return { id, result: { ...deviceStats(name, this.models.get(name)) } };
      }
      const result = await ctx.dispatch(raw.op, args);
      return { id, result };
    } catch (err) {
      if (!(err instanceof VfioUserError)) this.log.error('control request failed unexpectedly', err);
      return errorResponse(id, err);
    }
  }

  private contextFor(args: Record<string, unknown>): IommuContext {
    const name = args.device;
    if (name === undefined) {
      if (this.contexts.size === 1) {
        const [only] = this.contexts.keys();
        args.device = only;
        return this.contexts.get(only!)!;
      }
      throw new VfioUserError(Errno.EINVAL, `several devices: name one with 'device' (${[...this.contexts.keys()].join(', ')})`);
    }
    if (typeof name !== 'string') throw new VfioUserError(Errno.EINVAL, "'device' must be a string");
    const ctx = this.contexts.get(name);
    if (!ctx) throw new VfioUserError(Errno.ENODEV, `no device '${name}'`);
    return ctx;
  }

  /** The response to one frame as read off the socket. */
  private async answer(frame: Frame): Promise<ControlResponse> {
    if ('oversize' in frame) {
      return failure(null, 'EMSGSIZE', `a frame of ${frame.oversize} bytes is above the ${this.maxFrame}-byte limit (skipped)`, {
        length: frame.oversize,
        max: this.maxFrame,
      });
    }
    let req: unknown;
    try {
      req = packr.unpack(frame.body);
    } catch (err) {
      return failure(null, 'EINVAL', `frame is not valid msgpack: ${(err as Error)?.message ?? String(err)}`);
    }
    return this.handle(req);
  }

  /** A response as a frame; one above the frame limit becomes an EMSGSIZE error. */
  private encode(res: ControlResponse): Buffer {
    const out = encodeFrame(res);
    const length = out.length - 4;
    if (length <= this.maxFrame) return out;
    return encodeFrame(failure(res.id, 'EMSGSIZE', `the response of ${length} bytes is above the ${this.maxFrame}-byte frame limit`, {
      length,
      max: this.maxFrame,
    }));
  }

  private onClient(s: net.Socket): void {
    const state: { end?: Disconnect } = {};
    this.clients.set(s, state);
    const reader = new FrameReader(this.maxFrame);
    // Answers go out in request order. Reading pauses while many frames (or
    // many bytes) wait, and each answer waits until the socket takes it:
    // a client that floods or never reads holds a bounded amount of memory.
    let chain = Promise.resolve();
    let queued = 0;
    let queuedBytes = 0;
    const busy = () => queued >= MAX_QUEUED || queuedBytes >= this.maxFrame;
    s.on('data', (chunk: Buffer) => {
      for (const f of reader.push(chunk)) {
        const size = 'body' in f ? f.body.length : 0;
        queued++;
        queuedBytes += size;
        if (busy()) s.pause();
        chain = chain.then(async () => {
          await this.reply(s, f);
          queued--;
          queuedBytes -= size;
          if (!busy() && s.isPaused()) s.resume();
        });
      }
    });
    s.on('end', () => {
      state.end ??= new Disconnect('eof', 'peer closed the connection (EOF)');
      chain = chain.then(() => { s.end(); });
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      state.end ??= typeof err.errno === 'number' ? Disconnect.fromErrno(err.syscall ?? 'socket', err.errno) : new Disconnect('io-error', err.message);
    });
    s.on('close', () => {
      this.clients.delete(s);
      const end = state.end ?? new Disconnect('io-error', 'connection closed');
      if (end.orderly) this.log.debug(`control client disconnected: ${end.message}`);
      else this.log.info(`control client dropped: ${end.message}`);
    });
  }

  /** Answer one frame (never throws: the chain of answers must go on). */
  private async reply(s: net.Socket, f: Frame): Promise<void> {
    let out: Buffer;
    try {
      out = this.encode(await this.answer(f));
    } catch (err) {
      this.log.error('control response failed unexpectedly', err);
      out = encodeFrame(errorResponse(null, err));
    }
    if (s.destroyed || s.writableEnded) return;
    if (!s.write(out)) await writable(s);
  }

  async close(): Promise<void> {
    for (const [s, state] of this.clients) {
      state.end ??= new Disconnect('shutdown', 'server shutdown');
      s.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    try { fs.unlinkSync(this.path); } catch { /* gone */ }
  }
}

/** Settles once the socket has taken its queued bytes (or is gone). */
function writable(s: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      s.off('drain', done);
      s.off('close', done);
      resolve();
    };
    s.on('drain', done);
    s.on('close', done);
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}
