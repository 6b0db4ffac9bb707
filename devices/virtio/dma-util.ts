// Small helpers over DeviceDma for ring and buffer access: IOVA arithmetic
// (numbers while exact, bigint above 2^53), little-endian u16 access (whole
// words, ../shared-words.ts), a store with a full fence (the store→load
// ordering event-index suppression depends on). Views over many ranges at
// once: DeviceDma.withViews.
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, type DeviceDma, type Iova } from '../../iommu/device-dma.js';
import { loadU16, storeU16 } from '../shared-words.js';

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const TWO32 = 0x1_0000_0000;

/** base + off as an Iova (stays a number while it is exact). */
export function iovaAdd(base: Iova, off: number): Iova {
  if (typeof base === 'number') {
    const r = base + off;
    return r <= MAX_SAFE ? r : BigInt(base) + BigInt(off);
  }
  return base + BigInt(off);
}

/** A u64 from two u32 halves, as a number when exact. */
export function iovaFrom(lo: number, hi: number): Iova {
  return hi < 0x200000 ? hi * TWO32 + lo : (BigInt(hi) << 32n) | BigInt(lo);
}

/** A u64 bigint as an Iova. */
export function iovaOf(v: bigint): Iova {
  return v <= BigInt(MAX_SAFE) ? Number(v) : v;
}

export function iovaHex(a: Iova): string {
  return `0x${a.toString(16)}`;
}

/** A u16 of mapped guest memory, read synchronously; null: use readU16. */
export function mapped16(dma: DeviceDma, addr: Iova): number | null {
  const v = dma.mappedView(addr, 2, DMA_ACCESS_READ);
  return v ? loadU16(v) : null;
}

export async function readU16(dma: DeviceDma, addr: Iova): Promise<number> {
  const b = await dma.read(addr, 2);
  return b[0]! | (b[1]! << 8);
}

/**
 * Store a u16 into guest memory with a full barrier after it (Atomics.store
 * is sequentially consistent: on x86 an XCHG), so a following load of a
 * driver field cannot pass it. Falls back to plain bytes when the view is
 * not 2-byte aligned (bounced memory reached by messages has no ordering
 * issue: each message completes before the next access).
 */
export function storeU16Fenced(dma: DeviceDma, addr: Iova, value: number): Promise<void> {
  return dma.withView(addr, 2, DMA_ACCESS_WRITE, (segs) => {
    const s = segs[0]!;
    if (segs.length === 1 && (s.byteOffset & 1) === 0) {
      storeU16(s, value);
    } else {
      // Two segments (a page boundary inside a u16) cannot happen for an
      // aligned ring; write byte by byte anyway.
      let i = 0;
      for (const seg of segs) for (let j = 0; j < seg.length; j++, i++) seg[j] = (value >> (8 * i)) & 0xff;
    }
  });
}

/** storeU16Fenced done synchronously in mapped, aligned memory; false: use storeU16Fenced. */
export function store16Fenced(dma: DeviceDma, addr: Iova, value: number): boolean {
  const v = dma.mappedView(addr, 2, DMA_ACCESS_WRITE);
  if (!v || (v.byteOffset & 1) !== 0) return false;
  storeU16(v, value);
  return true;
}

