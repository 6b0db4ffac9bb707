// A small client for the control socket (the `iommu` CLI command and tests).
import net from 'node:net';
import { Errno } from '../protocol/errno.js';
import { FrameReader, encodeFrame, packr, type ControlFailure, type ControlResponse } from './control-frames.js';

/** An error frame as an exception: errno, its name, the message and any structured data. */
export class ControlError extends Error {
  constructor(readonly errno: number, readonly error: string, message: string, readonly data?: Record<string, unknown>) {
    super(message);
    this.name = 'ControlError';
  }

  static from(r: ControlFailure): ControlError {
    return new ControlError(r.errno, r.error, r.message, r.data);
  }
}

export class ControlClient {
  private nextId = 1;
  private readonly waiting = new Map<number, (r: ControlResponse) => void>();
  private readonly reader = new FrameReader();
  private closedError: Error | null = null;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const f of this.reader.push(chunk)) {
          if (!('body' in f)) throw new Error(`the server sent a frame of ${f.oversize} bytes, above the limit`);
          const r = packr.unpack(f.body) as ControlResponse;
          const w = r.id === null ? undefined : this.waiting.get(r.id);
          if (w) { this.waiting.delete(r.id!); w(r); }
        }
      } catch (err) {
        // A stream we cannot read any more: fail what waits, and close.
        this.fail(`unreadable response: ${(err as Error).message}`);
        socket.destroy();
      }
    });
    socket.on('close', () => this.fail('control socket closed'));
    socket.on('error', () => {});
  }

  static connect(path: string): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(path, () => { s.off('error', reject); resolve(new ControlClient(s)); });
      s.once('error', reject);
    });
  }

  /** The raw response: `{id, result}` or `{id, errno, error, message, data?}`. */
  request(op: string, args: Record<string, unknown> = {}): Promise<ControlResponse> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.socket.write(encodeFrame({ id, op, args }));
    });
  }

  /** The result, or throws ControlError with the errno and data. */
  async call(op: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const r = await this.request(op, args);
    if ('errno' in r) throw ControlError.from(r);
    return r.result;
  }

  close(): void {
    this.socket.destroy();
  }

  private fail(message: string): void {
    this.closedError ??= new Error(message);
    for (const [id, w] of this.waiting) w({ id, errno: Errno.ENOTCONN, error: 'ENOTCONN', message });
    this.waiting.clear();
  }
}
