// A small client for the control socket (the `iommu` CLI command and tests).
import net from 'node:net';
import { FrameReader, encodeFrame, packr, type ControlResponse } from './control-frames.js';

export class ControlError extends Error {
  constructor(readonly errno: number, readonly error: string, message: string) {
    super(message);
  }
}

export class ControlClient {
  private nextId = 1;
  private readonly waiting = new Map<number, (r: ControlResponse) => void>();
  private readonly reader = new FrameReader();
  private closedError: Error | null = null;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk) => {
      for (const f of this.reader.push(chunk)) {
        const r = packr.unpack(f) as ControlResponse;
        const w = r.id === null ? undefined : this.waiting.get(r.id);
        if (w) { this.waiting.delete(r.id!); w(r); }
      }
    });
    socket.on('close', () => {
      this.closedError = new Error('control socket closed');
      for (const [, w] of this.waiting) w({ id: null, errno: 107, error: 'ENOTCONN', message: 'control socket closed' });
      this.waiting.clear();
    });
    socket.on('error', () => {});
  }

  static connect(path: string): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(path, () => { s.off('error', reject); resolve(new ControlClient(s)); });
      s.once('error', reject);
    });
  }

  /** The raw response: `{result}` or `{errno, error, message}`. */
  request(op: string, args: Record<string, unknown> = {}): Promise<ControlResponse> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.socket.write(encodeFrame({ id, op, args }));
    });
  }

  /** The result, or throws ControlError with the errno. */
  async call(op: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const r = await this.request(op, args);
    if ('errno' in r) throw new ControlError(r.errno, r.error, r.message);
    return r.result;
  }

  close(): void {
    this.socket.destroy();
  }
}
