// Configuration space as bytes plus two masks, the way hardware behaves:
// a byte write changes only its writable bits (wmask) and clears the RW1C
// bits written as 1 (w1cmask). Everything is byte-granular, so accesses of
// any size at any offset (QEMU reads the whole space in one go) just work.
// Registers with side effects register a write hook; hooks run after the
// bytes have been updated and see what was written. A register whose read
// has a side effect registers a read hook, which runs before the bytes are
// read; everything else reads as plain memory (plainRanges).

/** One guest (or client) write, as handed to hooks. */
export interface ConfigWrite {
  offset: number;
  data: Buffer;
}

type WriteHook = (w: ConfigWrite) => void;
type ReadHook = () => void;

export class ConfigSpace {
  readonly size: number;
  readonly bytes: Buffer;
  /** Bits a write may change. */
  readonly wmask: Buffer;
  /** Bits a write of 1 clears (RW1C). */
  readonly w1cmask: Buffer;
  private initial: Buffer | undefined;
  private readonly hooks: { start: number; end: number; fn: WriteHook }[] = [];
  private readonly readHooks: { start: number; end: number; fn: ReadHook }[] = [];

  constructor(size: number) {
    this.size = size;
    this.bytes = Buffer.alloc(size);
    this.wmask = Buffer.alloc(size);
    this.w1cmask = Buffer.alloc(size);
  }

  // Raw accessors: the device's own view, masks do not apply.
  u8(off: number): number {
    return this.bytes[off]!;
  }
  u16(off: number): number {
    return this.bytes.readUInt16LE(off);
  }
  u32(off: number): number {
    return this.bytes.readUInt32LE(off);
  }
  set8(off: number, v: number): void {
    this.bytes[off] = v & 0xff;
  }
  set16(off: number, v: number): void {
    this.bytes.writeUInt16LE(v & 0xffff, off);
  }
  set32(off: number, v: number): void {
    this.bytes.writeUInt32LE(v >>> 0, off);
  }

  /** Declare which bits of a register the guest may write. */
  writable(off: number, len: 1 | 2 | 4, mask: number): void {
    this.wmask.writeUIntLE(len === 4 ? mask >>> 0 : mask, off, len);
  }
  /** Declare which bits of a register are write-1-to-clear. */
  rw1c(off: number, len: 1 | 2 | 4, mask: number): void {
    this.w1cmask.writeUIntLE(len === 4 ? mask >>> 0 : mask, off, len);
  }

  /** Call `fn` after every write that touches [off, off+len). */
  onWrite(off: number, len: number, fn: WriteHook): void {
    this.hooks.push({ start: off, end: off + len, fn });
  }

  /** Call `fn` before every read that touches [off, off+len). */
  onRead(off: number, len: number, fn: ReadHook): void {
    this.readHooks.push({ start: off, end: off + len, fn });
  }

  /** The ranges no read hook covers, as [offset, live view of the bytes]: they read as plain memory. */
  plainRanges(): { offset: number; bytes: Buffer }[] {
    const cuts = [...this.readHooks].sort((a, b) => a.start - b.start);
    const out: { offset: number; bytes: Buffer }[] = [];
    let at = 0;
    for (const h of cuts) {
      if (h.start > at) out.push({ offset: at, bytes: this.bytes.subarray(at, h.start) });
      at = Math.max(at, h.end);
    }
    if (at < this.size) out.push({ offset: at, bytes: this.bytes.subarray(at) });
    return out;
  }

  /** Freeze the current contents as the power-on/reset state. */
  seal(): void {
    this.initial = Buffer.from(this.bytes);
  }

  /** Back to the sealed state (FLR, device reset). */
  reset(): void {
    if (this.initial) this.initial.copy(this.bytes);
  }

  /** Caller has checked the range. Returns a copy. */
  read(off: number, len: number): Buffer {
    const end = off + len;
    for (const h of this.readHooks) {
      if (h.start < end && off < h.end) h.fn();
    }
    // allocUnsafe takes small sizes from Node's pool: one object, no zeroing.
    const out = Buffer.allocUnsafe(len);
    const b = this.bytes;
    for (let i = 0; i < len; i++) out[i] = b[off + i]!;
    return out;
  }

  /** Caller has checked the range. */
  write(off: number, data: Buffer): void {
    const b = this.bytes;
    for (let i = 0; i < data.length; i++) {
      const o = off + i;
      const v = data[i]!;
      const wm = this.wmask[o]!;
      b[o] = ((b[o]! & ~wm) | (v & wm)) & ~(v & this.w1cmask[o]!);
    }
    const end = off + data.length;
    const w: ConfigWrite = { offset: off, data };
    for (const h of this.hooks) {
      if (h.start < end && off < h.end) h.fn(w);
    }
  }
}

/**
 * The part of a write that covers the register [reg, reg+len): the written
 * value (bytes not covered read as 0) and a mask of the bits that were
 * covered. Undefined if the write misses the register.
 */
export function written(
  w: ConfigWrite,
  reg: number,
  len: number,
): { value: number; mask: number } | undefined {
  let value = 0;
  let mask = 0;
  let hit = false;
  for (let i = 0; i < len; i++) {
    const j = reg + i - w.offset;
    if (j < 0 || j >= w.data.length) continue;
    hit = true;
    value |= w.data[j]! << (8 * i);
    mask |= 0xff << (8 * i);
  }
  return hit ? { value: value >>> 0, mask: mask >>> 0 } : undefined;
}
