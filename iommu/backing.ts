// Backings: the memory behind IOAS areas. An area holds a reference on its
// backing; a backing is disposed (munmap'd, detached) only when no area and
// no in-flight view or I/O holds it any more.
import { fail } from '../protocol/errno.js';

export type BackingKind = 'memory' | 'mmap' | 'message' | 'file';

export interface Backing {
  readonly kind: BackingKind;
  /** Bytes the backing covers (area offsets index into this). */
  readonly size: number;
  /** May areas over it be mapped with WRITE permission? */
  readonly writable: boolean;
  /**
   * Zero-copy access to the whole backing, or null when the memory can only
   * be reached asynchronously (read/write below). Valid while referenced.
   */
  readonly bytes: Uint8Array | null;
  /** Set when `bytes` is mapped read-only: hand out copies, never views. */
  readonly readOnlyMemory: boolean;
  /** The client (vfio-user peer) owns this memory: dropped on disconnect. */
  clientOwned: boolean;
  readonly refs: number;
  readonly disposed: boolean;
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Uint8Array): Promise<void>;
  retain(): void;
  release(): void;
  describe(): Record<string, unknown>;
}

/** Reference counting shared by every backing. Created with one reference. */
export abstract class BackingBase implements Backing {
  abstract readonly kind: BackingKind;
  abstract readonly size: number;
  abstract readonly writable: boolean;
  abstract get bytes(): Uint8Array | null;
  readonly readOnlyMemory: boolean = false;
  clientOwned = false;
  private count = 1;
  private gone = false;

  get refs(): number {
    return this.count;
  }
  get disposed(): boolean {
    return this.gone;
  }

  retain(): void {
    if (this.gone) throw new Error(`${this.kind} backing used after dispose`);
    this.count++;
  }

  release(): void {
    if (this.gone) return;
    if (--this.count === 0) {
      this.gone = true;
      this.dispose();
    }
  }

  /** Zero-copy backings read through `bytes`; message ones override. */
  async read(offset: number, length: number): Promise<Buffer> {
    const b = this.bytes;
    if (!b) throw fail('EFAULT', `${this.kind} backing is gone`);
    return Buffer.from(b.subarray(offset, offset + length));
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const b = this.bytes;
    if (!b || this.readOnlyMemory) throw fail('EFAULT', `${this.kind} backing is not writable`);
    b.set(data, offset);
  }

  describe(): Record<string, unknown> {
    return { kind: this.kind, size: this.size, writable: this.writable, refs: this.count };
  }

  protected abstract dispose(): void;
}

/**
 * Memory in the JS heap: tests, and anonymous control-API memory when the
 * native addon is absent. Dispose detaches its own ArrayBuffer (the same
 * effect munmap has on an mmap'd one: stale views read as empty, never crash).
 */
export class MemoryBacking extends BackingBase {
  readonly kind = 'memory' as const;
  readonly size: number;
  readonly writable: boolean;
  private buf: Uint8Array | null;
  private readonly owned: boolean;

  constructor(sizeOrBytes: number | Uint8Array, opts: { writable?: boolean } = {}) {
    super();
    if (typeof sizeOrBytes === 'number') {
      try {
        this.buf = new Uint8Array(new ArrayBuffer(sizeOrBytes));
      } catch {
        throw fail('ENOMEM', `cannot allocate ${sizeOrBytes} bytes`);
      }
      this.owned = true;
    } else {
      this.buf = sizeOrBytes;
      this.owned = false;
    }
    this.size = this.buf.length;
    this.writable = opts.writable ?? true;
  }

  get bytes(): Uint8Array | null {
    return this.buf;
  }

  protected dispose(): void {
    const b = this.buf;
    this.buf = null;
    if (b && this.owned) structuredClone(b.buffer, { transfer: [b.buffer] });
  }
}
