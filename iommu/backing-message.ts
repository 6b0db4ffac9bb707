// Guest memory without an fd: every access is a DMA_READ / DMA_WRITE message
// to the client, chunked to the negotiated max_data_xfer_size. The session
// implements DmaMessenger; requests never block it (devices await replies).
import { fail, VfioUserError } from '../protocol/errno.js';
import { BackingBase } from './backing.js';

/** Reads and writes guest memory with DMA_READ/DMA_WRITE messages to the client. */
export interface DmaMessenger {
  /** Largest payload of one DMA_READ/DMA_WRITE (max_data_xfer_size). */
  readonly maxChunk: number;
  read(addr: bigint, len: number): Promise<Buffer>;
  write(addr: bigint, data: Uint8Array): Promise<void>;
}

/** Reads of one request that may be in flight at once. */
const READ_WINDOW = 4;

export class MessageBacking extends BackingBase {
  readonly kind = 'message' as const;
  readonly size: number;
  readonly writable: boolean;

  /** `base` is the client address of byte 0 (the DMA_MAP IOVA). */
  constructor(
    private readonly messenger: DmaMessenger,
    readonly base: bigint,
    size: number,
    opts: { writable?: boolean } = {},
  ) {
    super();
    if (!(messenger.maxChunk > 0)) throw fail('EINVAL', 'messenger.maxChunk must be positive');
    this.size = size;
    this.writable = opts.writable ?? true;
  }

  get bytes(): null {
    return null;
  }

  override async read(offset: number, length: number): Promise<Buffer> {
    this.check(offset, length);
    const out = Buffer.allocUnsafe(length);
    const chunk = this.messenger.maxChunk;
    const jobs: { off: number; n: number }[] = [];
    for (let off = 0; off < length; off += chunk) jobs.push({ off, n: Math.min(chunk, length - off) });
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < jobs.length) {
        const { off, n } = jobs[next++];
        const data = await this.io(() => this.messenger.read(this.base + BigInt(offset + off), n));
        if (data.length !== n) throw fail('EIO', `DMA_READ returned ${data.length} bytes, wanted ${n}`);
        data.copy(out, off);
      }
    };
    const workers: Promise<void>[] = [];
    for (let i = 0; i < Math.min(READ_WINDOW, jobs.length); i++) workers.push(worker());
    await Promise.all(workers);
    return out;
  }

  // Writes go in order, one chunk at a time, so they land as the device wrote.
  override async write(offset: number, data: Uint8Array): Promise<void> {
    this.check(offset, data.length);
    const chunk = this.messenger.maxChunk;
    for (let off = 0; off < data.length; off += chunk) {
      const part = data.subarray(off, Math.min(data.length, off + chunk));
      await this.io(() => this.messenger.write(this.base + BigInt(offset + off), part));
    }
  }

  override describe(): Record<string, unknown> {
    return { ...super.describe(), base: this.base, maxChunk: this.messenger.maxChunk };
  }

  protected dispose(): void {
    // Nothing is mapped on our side.
  }

  private check(offset: number, length: number): void {
    if (this.disposed) throw fail('EFAULT', 'message backing is gone');
    if (offset < 0 || length < 0 || offset + length > this.size) throw fail('EFAULT', 'access outside backing');
  }

  private async io<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      if (e instanceof VfioUserError) throw e;
      throw fail('EIO', `DMA message failed: ${(e as Error).message}`);
    }
  }
}
