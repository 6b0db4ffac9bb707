// Small helpers over DeviceDma for ring and buffer access: IOVA arithmetic
// (numbers while exact, bigint above 2^53), little-endian u16 access, a
// store with a full fence (the store→load ordering event-index suppression
// depends on), and zero-copy views over several guest ranges at once.
import { DMA_WRITE, type DeviceDma, type Iova } from '../../iommu/device-dma.js';

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
  return dma.withView(addr, 2, DMA_WRITE, (segs) => {
    const s = segs[0]!;
    if (segs.length === 1 && (s.byteOffset & 1) === 0) {
      Atomics.store(new Uint16Array(s.buffer, s.byteOffset, 1), 0, value);
    } else {
      // Two segments (a page boundary inside a u16) cannot happen for an
      // aligned ring; write byte by byte anyway.
      let i = 0;
      for (const seg of segs) for (let j = 0; j < seg.length; j++, i++) seg[j] = (value >> (8 * i)) & 0xff;
    }
  });
}

/**
 * Zero-copy views over several guest ranges at once: fn gets the segments of
 * every range in order (a scatter list). The views are held (and valid) until
 * fn's promise settles. Rejects with DmaFault before fn runs if any range is
 * not accessible.
 */
export function withViews<T>(
  dma: DeviceDma,
  addrs: readonly Iova[],
  lens: readonly number[],
  access: number,
  fn: (segments: Uint8Array[]) => T | Promise<T>,
): Promise<T> {
  const n = addrs.length;
  if (n === 1) return dma.withView(addrs[0]!, lens[0]!, access, fn);
  if (n === 0) {
    try {
      return Promise.resolve(fn([]));
    } catch (e) {
      return Promise.reject(e);
    }
  }
  // Every range's withView runs at once; each callback parks on `done` (its
  // views stay held) until the last one arrives, which runs fn over them all.
  // A guest request has ~256 scattered pages: one level of promises instead
  // of 256 nested ones.
  const parts: Uint8Array[][] = new Array<Uint8Array[]>(n);
  let arrived = 0;
  let release!: () => void;
  const done = new Promise<void>((r) => (release = r));
  let result: Promise<T> | undefined;
  const calls: Promise<void>[] = new Array<Promise<void>>(n);
  for (let i = 0; i < n; i++) {
    calls[i] = dma
      .withView(addrs[i]!, lens[i]!, access, (segs) => {
        parts[i] = segs;
        if (++arrived === n) {
          const all: Uint8Array[] = [];
          for (const p of parts) for (const s of p) all.push(s);
          result = (async () => fn(all))();
          result.then(release, release);
        }
        return done;
      })
      .catch((e: unknown) => {
        release(); // a range faulted before fn: let the others go
        throw e;
      });
  }
  // Settles after every view is released (bounced memory written back).
  return Promise.all(calls).then(() => result!);
}
