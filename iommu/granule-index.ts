// A hash from granule (page) number to the small interval that covers it,
// in front of IntervalMap's binary searches: the translation cache of a
// guest behind a vIOMMU, which maps its DMA buffers a page or a few at a
// time (65,535 single-page maps is the usual worst case). A lookup is one
// hash probe and the checks, in typed arrays; a binary search over 65,535
// starts touches a cache line per level.
//
// Only intervals that start and end on granule boundaries and span at most
// MAX_GRANULES granules are indexed, so each granule belongs to at most one
// of them; anything else is IntervalMap's alone, and a granule not found
// here sends the lookup there. Open addressing with linear probing, at most
// half full, deletion by moving later entries back (no tombstones); the
// hash mixes both halves of the granule number, so maps that differ only
// above bit 32 do not share a probe run. A bucket holds the granule number,
// how many granules the interval has from there and its rights in 16 bytes
// of one Int32Array, its value in a parallel array: a hit reads two cache
// lines, and 65,535 single-page intervals take 3 MiB.

/** Largest interval indexed, in granules (each costs one hash entry per granule). */
export const MAX_GRANULES = 8;
/** High word of a free bucket's key (granule numbers are >= 0). */
const EMPTY = -1;
const MIN_CAPACITY = 16;
/** Int32s per bucket: the granule number's low and high words, then granules to the end << 8 | rights, unused (16 bytes: a bucket never straddles a cache line). */
const B = 4;
const TWO_32 = 2 ** 32;

/** A half-open interval [start, end) of an index (interval-map.ts too). */
export interface Interval {
  readonly start: number;
  readonly end: number;
  /** Access right bits checked by findWithin (absent: none). */
  readonly prot?: number;
}

/** Small granule-aligned intervals by granule number: a hash lookup IntervalMap asks first. */
export class GranuleIndex<V extends Interval> {
  // Bucket i: table[B*i], [B*i+1] the granule number's low and high words
  // (high EMPTY if free), [B*i+2] the granules from it to the interval's end
  // << 8 | its rights; vals[i] the interval.
  private table = emptyTable(MIN_CAPACITY);
  private vals: (V | undefined)[] = new Array(MIN_CAPACITY).fill(undefined);
  private mask = MIN_CAPACITY - 1;
  private used = 0;
  private entries = 0;

  /** `granule`: a power of two (the page size); interval bounds that are its multiples are exact doubles. */
  constructor(private readonly granule: number) {
    if (!(granule >= 1 && Number.isInteger(granule) && (granule & (granule - 1)) === 0)) throw new RangeError(`granule ${granule}`);
  }

  /** Intervals indexed. */
  get size(): number {
    return this.entries;
  }

  /** Whether v is one this index takes: granule aligned and at most MAX_GRANULES long. */
  takes(v: Interval): boolean {
    const g = this.granule;
    return v.start % g === 0 && v.end % g === 0 && v.end > v.start && v.end - v.start <= MAX_GRANULES * g;
  }

  /** Index v when it is one this index takes (the caller has checked that it overlaps nothing). */
  insert(v: V): void {
    if (!this.takes(v)) return;
    const g = this.granule;
    for (let k = v.start / g, last = v.end / g; k < last; k++) this.put(k >>> 0, Math.floor(k / TWO_32), ((last - k) << 8) | (v.prot ?? 0), v);
    this.entries++;
  }

  /** Forget v (nothing when it was not indexed). */
  remove(v: V): void {
    if (!this.takes(v) || this.find(v.start) !== v) return;
    const g = this.granule;
    for (let k = v.start / g, last = v.end / g; k < last; k++) this.drop(k >>> 0, Math.floor(k / TWO_32));
    this.entries--;
    if (this.entries === 0) this.clear();
  }

  clear(): void {
    this.table = emptyTable(MIN_CAPACITY);
    this.vals = new Array(MIN_CAPACITY).fill(undefined);
    this.mask = MIN_CAPACITY - 1;
    this.used = 0;
    this.entries = 0;
  }

  /** The indexed interval holding x; undefined when x's granule is not indexed (ask the full index). */
  find(x: number): V | undefined {
    const i = this.bucket(Math.floor(x / this.granule));
    return i < 0 ? undefined : this.vals[i];
  }

  /**
   * The indexed interval holding all of [x, x+len) with every right of
   * `need`; null when x's interval is indexed and does not (intervals are
   * disjoint: no other can); undefined when x's granule is not indexed (ask
   * the full index).
   */
  findWithin(x: number, len: number, need: number): V | null | undefined {
    const g = this.granule;
    const k = Math.floor(x / g);
    const i = this.bucket(k);
    if (i < 0) return undefined;
    const m = this.table[B * i + 2]!;
    // The interval ends (m >> 8) granules after k's start: an exact double.
    return x + len <= (k + (m >> 8)) * g && (m & need) === need ? this.vals[i]! : null;
  }

  /** The bucket of granule k, or -1. */
  private bucket(k: number): number {
    if (this.used === 0) return -1;
    const lo = k >>> 0;
    const hi = Math.floor(k / TWO_32);
    const t = this.table;
    const mask = this.mask;
    for (let i = hash(lo, hi) & mask; ; i = (i + 1) & mask) {
      const h = t[B * i + 1]!;
      if (h === hi && t[B * i]! >>> 0 === lo) return i;
      if (h === EMPTY) return -1;
    }
  }

  private put(lo: number, hi: number, meta: number, v: V): void {
    if (2 * (this.used + 1) > this.mask + 1) this.rehash(2 * (this.mask + 1));
    const t = this.table;
    const mask = this.mask;
    let i = hash(lo, hi) & mask;
    while (t[B * i + 1] !== EMPTY) i = (i + 1) & mask;
    t[B * i] = lo;
    t[B * i + 1] = hi;
    t[B * i + 2] = meta;
    this.vals[i] = v;
    this.used++;
  }

  /** Removes granule k's bucket (nothing if absent); later buckets of its run move back into the hole. */
  private drop(lo: number, hi: number): void {
    const t = this.table;
    const vals = this.vals;
    const mask = this.mask;
    let hole = hash(lo, hi) & mask;
    for (;;) {
      const h = t[B * hole + 1]!;
      if (h === EMPTY) return;
      if (h === hi && t[B * hole]! >>> 0 === lo) break;
      hole = (hole + 1) & mask;
    }
    // A bucket further on whose home is not in (hole, itself] moves into the hole.
    for (let j = (hole + 1) & mask; t[B * j + 1] !== EMPTY; j = (j + 1) & mask) {
      const home = hash(t[B * j]! >>> 0, t[B * j + 1]!) & mask;
      if (hole <= j ? hole < home && home <= j : hole < home || home <= j) continue;
      t.copyWithin(B * hole, B * j, B * j + B);
      vals[hole] = vals[j];
      hole = j;
    }
    t[B * hole + 1] = EMPTY;
    vals[hole] = undefined;
    this.used--;
  }

  private rehash(capacity: number): void {
    const t = this.table;
    const vals = this.vals;
    this.table = emptyTable(capacity);
    this.vals = new Array(capacity).fill(undefined);
    this.mask = capacity - 1;
    this.used = 0;
    for (let i = 0; i < vals.length; i++) if (t[B * i + 1] !== EMPTY) this.put(t[B * i]! >>> 0, t[B * i + 1]!, t[B * i + 2]!, vals[i]!);
  }
}

function emptyTable(capacity: number): Int32Array {
  const t = new Int32Array(B * capacity);
  for (let i = 0; i < capacity; i++) t[B * i + 1] = EMPTY;
  return t;
}

/** Both 32-bit halves of a granule number, mixed (Murmur3's finalizer). */
function hash(lo: number, hi: number): number {
  let h = lo ^ Math.imul(hi, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
