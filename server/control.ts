// The control socket (`--control PATH`): the IOMMU model's new API (and the
// legacy type1 ops) from outside the process. Each device has its own IOMMU
// context; `args.device` picks it (optional when there is one device).
import net from 'node:net';
import fs from 'node:fs';
import { Errno, VfioUserError, errnoName } from '../protocol/errno.js';
import type { IommuContext } from '../iommu/context.js';
import { FrameReader, encodeFrame, packr, type ControlResponse } from './control-frames.js';
import { clearStaleSocket } from './listener.js';
import type { Log } from './log.js';

/** In-process only: an fd or object from outside must never reach the model. */
const LOCAL_ONLY = ['fd', 'backing', 'messenger', 'messageBase'];

export class ControlServer {
  private readonly server: net.Server;
  private readonly clients = new Set<net.Socket>();

  private constructor(readonly path: string, private readonly contexts: ReadonlyMap<string, IommuContext>, private readonly log: Log) {
    this.server = net.createServer((s) => this.onClient(s));
  }

  static async open(path: string, contexts: ReadonlyMap<string, IommuContext>, log: Log): Promise<ControlServer> {
    clearStaleSocket(path);
    const c = new ControlServer(path, contexts, log);
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
      const ctx = this.contextFor(args);
      const result = await ctx.dispatch(raw.op, args);
      return { id, result };
    } catch (err) {
      if (err instanceof VfioUserError) {
        return { id, errno: err.errno, error: errnoName(err.errno), message: err.message };
      }
      this.log.error('control request failed unexpectedly', err);
      return { id, errno: Errno.EIO, error: 'EIO', message: String((err as Error)?.message ?? err) };
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

  private onClient(s: net.Socket): void {
    this.clients.add(s);
    const reader = new FrameReader();
    // Requests on one connection are answered in order.
    let chain = Promise.resolve();
    s.on('data', (chunk) => {
      let frames: Buffer[];
      try {
        frames = reader.push(chunk);
      } catch (err) {
        this.log.warn(`control client dropped: ${(err as Error).message}`);
        s.destroy();
        return;
      }
      for (const f of frames) {
        chain = chain.then(async () => {
          let req: unknown;
          try {
            req = packr.unpack(f);
          } catch {
            req = undefined;
          }
          const res = req === undefined
            ? { id: null, errno: Errno.EINVAL, error: 'EINVAL', message: 'frame is not valid msgpack' }
            : await this.handle(req);
          if (!s.destroyed) s.write(encodeFrame(res));
        });
      }
    });
    s.on('error', () => s.destroy());
    s.on('close', () => this.clients.delete(s));
  }

  async close(): Promise<void> {
    for (const s of this.clients) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    try { fs.unlinkSync(this.path); } catch { /* gone */ }
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}
