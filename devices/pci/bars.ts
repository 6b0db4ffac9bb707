// BARs: their config registers (type bits RO, address bits writable down to
// the size, so writing all-ones reads back the size mask), the expansion ROM
// BAR, and access dispatch for the VFIO BAR regions. The PCI layer can lay
// "overlays" over a BAR range (the MSI-X table and PBA) that it emulates
// itself; everything else goes to the model's handlers or backing bytes.
import type { ConfigSpace } from './config-space.js';
import { Bar, Hdr, ROM_ADDRESS_ENABLE, ROM_ADDRESS_MASK } from './regs.js';
import type { BarSpec, BarValue } from './types.js';

/** A range of a BAR emulated by the PCI layer (offsets relative to `start`). */
export interface Overlay {
  start: number;
  end: number;
  read(offset: number, length: number): Buffer;
  write(offset: number, data: Buffer): void;
}

const isPow2 = (n: number): boolean => Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;

function validate(specs: BarSpec[]): void {
  const used = new Set<number>();
  for (const b of specs) {
    const slots = b.kind === 'mem64' ? [b.index, b.index + 1] : [b.index];
    if (!Number.isInteger(b.index) || b.index < 0 || slots[slots.length - 1]! > 5) {
      throw new RangeError(`BAR${b.index}: index must be 0..5 (a mem64 BAR takes two slots)`);
    }
    for (const s of slots) {
      if (used.has(s)) throw new RangeError(`BAR${b.index}: slot ${s} is already taken`);
      used.add(s);
    }
    const min = b.kind === 'io' ? 4 : 16;
    const max = b.kind === 'mem64' ? 2 ** 52 : b.kind === 'mem32' ? 2 ** 31 : 2 ** 16;
    if (!isPow2(b.size) || b.size < min || b.size > max) {
      throw new RangeError(`BAR${b.index}: size ${b.size} must be a power of two in [${min}, ${max}]`);
    }
    if (b.kind === 'io' && b.prefetchable) {
      throw new RangeError(`BAR${b.index}: an I/O BAR cannot be prefetchable`);
    }
    if (b.backing && b.backing.length < b.size) {
      throw new RangeError(`BAR${b.index}: backing is smaller than the BAR`);
    }
    if (b.backing && b.handlers) {
      throw new RangeError(`BAR${b.index}: give handlers or backing, not both`);
    }
  }
}

/** Low type bits of a BAR register. */
function typeBits(b: BarSpec): number {
  if (b.kind === 'io') return Bar.SPACE_IO;
  return (b.kind === 'mem64' ? Bar.MEM_TYPE_64 : 0) | (b.prefetchable ? Bar.MEM_PREFETCH : 0);
}

/** Write the BAR registers' reset values and masks into config space. */
export function buildBarRegisters(cfg: ConfigSpace, specs: BarSpec[]): void {
  validate(specs);
  for (const b of specs) {
    const reg = Hdr.BAR0 + 4 * b.index;
    // Address bits above the size are writable; a 64-bit mask spans two dwords.
    const mask = (1n << 64n) - BigInt(b.size);
    const flagBits = b.kind === 'io' ? Bar.IO_FLAG_BITS : Bar.MEM_FLAG_BITS;
    cfg.set32(reg, typeBits(b));
    cfg.writable(reg, 4, Number(mask & 0xffffffffn) & ~flagBits);
    if (b.kind === 'mem64') cfg.writable(reg + 4, 4, Number(mask >> 32n));
  }
}

/** Size of the ROM BAR for `rom` (power of two, at least 2 KiB), 0 if none. */
export function romSize(rom: Buffer | undefined): number {
  if (!rom || rom.length === 0) return 0;
  let size = 2048;
  while (size < rom.length) size *= 2;
  return size;
}

export function buildRomRegister(cfg: ConfigSpace, size: number): void {
  if (!size) return; // no ROM: the register is hardwired to 0
  cfg.writable(Hdr.ROM_ADDRESS, 4, ((ROM_ADDRESS_MASK & ~(size - 1)) | ROM_ADDRESS_ENABLE) >>> 0);
}

/**
 * Little-endian bytes of a handler's return value, exactly `size` long. A
 * Buffer of exactly `size` bytes is used as is (hand out a fresh one).
 */
export function toBytes(v: BarValue, size: number): Buffer {
  if (Buffer.isBuffer(v)) {
    if (v.length === size) return v;
    const out = Buffer.alloc(size);
    v.copy(out, 0, 0, Math.min(size, v.length));
    return out;
  }
  if (typeof v === 'number' && size <= 4 && (v | 0) === v) {
    // Register widths: the low bytes of the value, wrapped like hardware.
    const out = Buffer.allocUnsafe(size);
    for (let i = 0; i < size; i++) out[i] = v >>> (8 * i);
    return out;
  }
  const out = Buffer.alloc(size);
  if (typeof v === 'number' && size <= 6 && Number.isSafeInteger(v)) {
    // Wider registers: wrap to the access width like hardware.
    const m = 2 ** (8 * size);
    out.writeUIntLE(((v % m) + m) % m, 0, size);
    return out;
  }
  let x = typeof v === 'bigint' ? v : BigInt(Math.trunc(v));
  if (x < 0n) x = BigInt.asUintN(64, x);
  for (let i = 0; i < size && x !== 0n; i++) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}

/** The value a write handler sees for common widths. */
export function valueOf(data: Buffer): number | bigint | undefined {
  switch (data.length) {
    case 1:
    case 2:
    case 4:
      return data.readUIntLE(0, data.length);
    case 8:
      return data.readBigUInt64LE(0);
    default:
      return undefined;
  }
}

/** One BAR as a VFIO region: dispatch to overlays, then to the model. */
export class BarRegion {
  readonly spec: BarSpec;
  private readonly overlays: Overlay[] = [];

  constructor(spec: BarSpec) {
    this.spec = spec;
  }

  get size(): number {
    return this.spec.size;
  }

  addOverlay(o: Overlay): void {
    if (o.start < 0 || o.end > this.spec.size || o.start >= o.end) {
      throw new RangeError(`BAR${this.spec.index}: overlay [${o.start}, ${o.end}) outside the BAR`);
    }
    for (const p of this.overlays) {
      if (o.start < p.end && p.start < o.end) {
        throw new RangeError(`BAR${this.spec.index}: overlays overlap`);
      }
    }
    this.overlays.push(o);
    this.overlays.sort((a, b) => a.start - b.start);
  }

  /** Split [off, end) into the piece at `off`: an overlay's or the model's. */
  private segment(off: number, end: number): { ov?: Overlay; end: number } {
    for (const o of this.overlays) {
      if (off >= o.start && off < o.end) return { ov: o, end: Math.min(end, o.end) };
      if (o.start > off) return { end: Math.min(end, o.start) };
    }
    return { end };
  }

  /** The backing bytes when the whole BAR reads as them (no handlers, no overlays). */
  plainBytes(): Buffer | undefined {
    const s = this.spec;
    return s.backing && !s.handlers && this.overlays.length === 0 ? s.backing.subarray(0, this.size) : undefined;
  }

  /** Caller has checked the range. */
  read(off: number, count: number): Buffer | Promise<Buffer> {
    if (this.overlays.length === 0) return this.readModel(off, count);
    const out = Buffer.alloc(count);
    const waits: Promise<void>[] = [];
    for (let pos = off; pos < off + count; ) {
      const seg = this.segment(pos, off + count);
      const len = seg.end - pos;
      if (seg.ov) {
        seg.ov.read(pos - seg.ov.start, len).copy(out, pos - off);
      } else {
        const r = this.readModel(pos, len);
        const at = pos - off;
        if (r instanceof Promise) waits.push(r.then((b) => void b.copy(out, at)));
        else r.copy(out, at);
      }
      pos = seg.end;
    }
    return waits.length ? Promise.all(waits).then(() => out) : out;
  }

  /** Caller has checked the range. */
  write(off: number, data: Buffer): void | Promise<void> {
    if (this.overlays.length === 0) return this.writeModel(off, data);
    const waits: Promise<void>[] = [];
    for (let pos = off; pos < off + data.length; ) {
      const seg = this.segment(pos, off + data.length);
      const piece = data.subarray(pos - off, seg.end - off);
      if (seg.ov) seg.ov.write(pos - seg.ov.start, piece);
      else {
        const r = this.writeModel(pos, piece);
        if (r instanceof Promise) waits.push(r);
      }
      pos = seg.end;
    }
    if (waits.length) return Promise.all(waits).then(() => undefined);
  }

  private readModel(off: number, count: number): Buffer | Promise<Buffer> {
    const s = this.spec;
    if (s.handlers) {
      const v = s.handlers.read(off, count);
      return v instanceof Promise ? v.then((x) => toBytes(x, count)) : toBytes(v, count);
    }
    if (s.backing) return Buffer.from(s.backing.subarray(off, off + count));
    return Buffer.alloc(count);
  }

  private writeModel(off: number, data: Buffer): void | Promise<void> {
    const s = this.spec;
    if (s.handlers) return s.handlers.write(off, data, valueOf(data));
    if (s.backing) {
      data.copy(s.backing, off);
      s.onWrite?.(off, data.length);
    }
  }
}
