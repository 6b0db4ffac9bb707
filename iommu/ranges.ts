// Small lists of inclusive bigint ranges: the reserved and allowed IOVA
// ranges of an IOAS. They hold a handful of entries, so plain sorted arrays.
import { U64_MAX } from '../protocol/wire.js';

export interface IovaRange {
  start: bigint;
  /** Inclusive. */
  last: bigint;
}

export interface ReservedRange extends IovaRange {
  owner: string;
}

export function overlaps(a: IovaRange, start: bigint, last: bigint): boolean {
  return a.start <= last && start <= a.last;
}

export function firstOverlap<R extends IovaRange>(list: readonly R[], start: bigint, last: bigint): R | undefined {
  for (const r of list) if (overlaps(r, start, last)) return r;
  return undefined;
}

/** Sorted, with touching or overlapping ranges merged. */
export function mergeRanges(list: readonly IovaRange[]): IovaRange[] {
  const s = [...list].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: IovaRange[] = [];
  for (const r of s) {
    const top = out[out.length - 1];
    if (top && r.start <= top.last + 1n) {
      if (r.last > top.last) top.last = r.last;
    } else out.push({ start: r.start, last: r.last });
  }
  return out;
}

/** The gaps of `used` (any order, may overlap) inside [lo, hi]. */
export function holes(used: readonly IovaRange[], lo = 0n, hi = U64_MAX): IovaRange[] {
  const out: IovaRange[] = [];
  let cur = lo;
  for (const r of mergeRanges(used)) {
    if (r.last < lo) continue;
    if (r.start > hi) break;
    if (r.start > cur) out.push({ start: cur, last: r.start - 1n });
    if (r.last >= hi) return out;
    if (r.last + 1n > cur) cur = r.last + 1n;
  }
  if (cur <= hi) out.push({ start: cur, last: hi });
  return out;
}
