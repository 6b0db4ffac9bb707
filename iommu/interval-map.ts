// A sorted index of disjoint half-open intervals [start, end) keyed by start
// (a number), laid out flat in typed arrays: the translation fast path.
//
// Two levels. Entries live in chunks of up to CHUNK consecutive intervals;
// each chunk is a fixed-size slot of three shared typed arrays (starts, ends,
// access rights) plus a parallel array of the values. A directory, also typed
// arrays, lists the chunks in key order with their smallest start, slot and
// entry count. A lookup is two binary searches over Float64Arrays (the
// directory, a few KiB and always in cache, then one chunk) and the range and
// rights are checked in the typed arrays too: no object is touched but the
// value returned. Insert and remove shift at most one chunk (copyWithin); a
// full chunk splits, a chunk below a quarter full merges with or borrows from
// a neighbour, so every chunk but a lone one is at least a quarter full and
// the storage stays within 4x the entries.
//
// Keys are exact as doubles: IOVA area boundaries are page multiples, and
// every page multiple up to 2^64 is a double.
//
// Given a granule (the IOAS gives its page size), small aligned intervals
// are also found by granule through a hash (granule-index.ts), which a
// lookup asks first: one probe instead of two searches for a guest that maps
// its DMA buffers a page at a time.
import { GranuleIndex, type Interval } from './granule-index.js';

const CHUNK = 128; // entries per chunk (slot size)
const MIN_FILL = CHUNK >> 2; // a chunk below this merges or borrows (unless it is the only one)
const INITIAL_SLOTS = 2;
const INITIAL_CHUNKS = 8;

function grow<T extends Float64Array | Int32Array | Uint8Array>(a: T, min: number): T {
  let n = a.length;
  while (n < min) n *= 2;
  if (n === a.length) return a;
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a);
  return b;
}

export class IntervalMap<V extends Interval> {
  // Directory, in key order: chunk r starts at mins[r], lives in slot slots[r], holds counts[r] entries.
  private mins = new Float64Array(INITIAL_CHUNKS);
  private slots = new Int32Array(INITIAL_CHUNKS);
  private counts = new Int32Array(INITIAL_CHUNKS);
  private chunks = 0;
  // Storage: slot s holds its chunk's entries at [s * CHUNK, s * CHUNK + count).
  private starts = new Float64Array(INITIAL_SLOTS * CHUNK);
  private ends = new Float64Array(INITIAL_SLOTS * CHUNK);
  private rights = new Uint8Array(INITIAL_SLOTS * CHUNK);
  private vals: (V | undefined)[] = [];
  private usedSlots = 0; // slots ever handed out (storage in use up to here)
  private freeSlots: number[] = [];
  private count = 0;
  /** Small granule-aligned intervals by granule as well (granule-index.ts), when a granule is given. */
  private readonly small: GranuleIndex<V> | undefined;

  /** `granule`: also index small intervals aligned to it (a power of two, e.g. the page size) in a hash. */
  constructor(granule?: number) {
    this.small = granule === undefined ? undefined : new GranuleIndex<V>(granule);
  }

  get size(): number {
    return this.count;
  }

  /** The interval containing x, if any. */
  find(x: number): V | undefined {
    const hit = this.small?.find(x);
    if (hit !== undefined) return hit;
    const j = this.entryAtOrBefore(x);
    return j >= 0 && x < this.ends[j]! ? this.vals[j] : undefined;
  }

  /**
   * The interval holding all of [x, x+len) whose rights include every bit of
   * `need`, if any (len >= 1; x + len must be exact, as for a safe integer).
   */
  findWithin(x: number, len: number, need: number): V | undefined {
    const small = this.small?.findWithin(x, len, need);
    if (small !== undefined) return small ?? undefined;
    const j = this.entryAtOrBefore(x);
    if (j < 0 || x + len > this.ends[j]! || (this.rights[j]! & need) !== need) return undefined;
    return this.vals[j];
  }

  // Storage index of the entry with the largest start <= x, or -1. Both
  // searches are branch-free (`half & -Number(cond)` compiles to a mask, not
  // a jump): a random lookup's comparisons are unpredictable, and a
  // mispredicted branch per level costs more than the level's load.
  private entryAtOrBefore(x: number): number {
    const mins = this.mins;
    let r = 0;
    for (let len = this.chunks; len > 1; ) {
      const half = len >> 1;
      r += half & -Number(mins[r + half]! <= x);
      len -= half;
    }
    if (!(this.chunks > 0 && mins[r]! <= x)) return -1;
    const starts = this.starts;
    let j = this.slots[r]! * CHUNK; // starts[j] === mins[r] <= x
    for (let len = this.counts[r]!; len > 1; ) {
      const half = len >> 1;
      j += half & -Number(starts[j + half]! <= x);
      len -= half;
    }
    return j;
  }

  /**
   * Calls fn for each interval with end > x, in order, until fn returns
   * false. fn must not change the map.
   */
  forEachFrom(x: number, fn: (v: V) => boolean | void): void {
    if (this.chunks === 0) return;
    let r = this.chunkFor(x);
    let i = this.posAtOrBefore(r, x) + 1; // first entry with start > x
    if (i > 0 && this.ends[this.slots[r]! * CHUNK + i - 1]! > x) i--; // the one holding x
    for (; r < this.chunks; r++, i = 0) {
      const base = this.slots[r]! * CHUNK;
      for (const n = this.counts[r]!; i < n; i++) if (fn(this.vals[base + i] as V) === false) return;
    }
  }

  /** Intervals that intersect [lo, hiIncl], in order. */
  collect(lo: number, hiIncl: number, out: V[] = []): V[] {
    this.forEachFrom(lo, (v) => {
      if (v.start > hiIncl) return false;
      out.push(v);
      return true;
    });
    return out;
  }

  *[Symbol.iterator](): IterableIterator<V> {
    for (let r = 0; r < this.chunks; r++) {
      const base = this.slots[r]! * CHUNK;
      const n = this.counts[r]!;
      for (let i = 0; i < n; i++) yield this.vals[base + i] as V;
    }
  }

  clear(): void {
    this.mins = new Float64Array(INITIAL_CHUNKS);
    this.slots = new Int32Array(INITIAL_CHUNKS);
    this.counts = new Int32Array(INITIAL_CHUNKS);
    this.chunks = 0;
    this.starts = new Float64Array(INITIAL_SLOTS * CHUNK);
    this.ends = new Float64Array(INITIAL_SLOTS * CHUNK);
    this.rights = new Uint8Array(INITIAL_SLOTS * CHUNK);
    this.vals = [];
    this.usedSlots = 0;
    this.freeSlots = [];
    this.count = 0;
    this.small?.clear();
  }

  /** Insert v; the caller has checked that it overlaps nothing. */
  insert(v: V): void {
    const x = v.start;
    if (this.chunks === 0) this.addChunk(0, this.allocSlot(), x);
    let r = this.chunkFor(x);
    if (this.counts[r] === CHUNK) {
      this.split(r);
      if (x >= this.mins[r + 1]!) r++;
    }
    const at = this.posAtOrBefore(r, x) + 1;
    const base = this.slots[r]! * CHUNK;
    const n = this.counts[r]!;
    this.shift(base + at, base + n, 1);
    this.starts[base + at] = x;
    this.ends[base + at] = v.end;
    this.rights[base + at] = v.prot ?? 0;
    this.vals[base + at] = v;
    this.counts[r] = n + 1;
    if (at === 0) this.mins[r] = x;
    this.count++;
    this.small?.insert(v);
  }

  /** Remove the interval that starts at x; returns it, or undefined. */
  remove(x: number): V | undefined {
    if (this.chunks === 0) return undefined;
    const r = this.chunkFor(x);
    const at = this.posAtOrBefore(r, x);
    const base = this.slots[r]! * CHUNK;
    if (at < 0 || this.starts[base + at] !== x) return undefined;
    const v = this.vals[base + at] as V;
    this.small?.remove(v);
    const n = this.counts[r]! - 1;
    this.shift(base + at + 1, base + n + 1, -1);
    this.vals[base + n] = undefined;
    this.counts[r] = n;
    this.count--;
    if (this.count === 0) {
      this.clear();
      return v;
    }
    if (n > 0 && at === 0) this.mins[r] = this.starts[base]!;
    if (n < MIN_FILL && this.chunks > 1) this.rebalance(r);
    return v;
  }

  // Directory rank of the chunk that holds (or would hold) x: the last with
  // mins <= x, or 0 when x is below every start.
  private chunkFor(x: number): number {
    const mins = this.mins;
    let lo = 0;
    let hi = this.chunks - 1;
    let r = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (mins[mid]! <= x) {
        r = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return r;
  }

  // Position (0-based, inside chunk r) of the last entry with start <= x, or -1.
  private posAtOrBefore(r: number, x: number): number {
    const starts = this.starts;
    const base = this.slots[r]! * CHUNK;
    let lo = 0;
    let hi = this.counts[r]! - 1;
    let p = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (starts[base + mid]! <= x) {
        p = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return p;
  }

  // Moves storage entries [from, to) by `by` places (within one slot).
  private shift(from: number, to: number, by: number): void {
    if (from >= to) return;
    this.starts.copyWithin(from + by, from, to);
    this.ends.copyWithin(from + by, from, to);
    this.rights.copyWithin(from + by, from, to);
    const vals = this.vals;
    if (by > 0) for (let i = to - 1; i >= from; i--) vals[i + by] = vals[i];
    else for (let i = from; i < to; i++) vals[i + by] = vals[i];
  }

  // Copies n entries from storage index src to dst (different slots).
  private move(src: number, dst: number, n: number): void {
    this.starts.copyWithin(dst, src, src + n);
    this.ends.copyWithin(dst, src, src + n);
    this.rights.copyWithin(dst, src, src + n);
    const vals = this.vals;
    for (let i = 0; i < n; i++) {
      vals[dst + i] = vals[src + i];
      vals[src + i] = undefined;
    }
  }

  private allocSlot(): number {
    const reuse = this.freeSlots.pop();
    if (reuse !== undefined) return reuse;
    const s = this.usedSlots++;
    const need = this.usedSlots * CHUNK;
    this.starts = grow(this.starts, need);
    this.ends = grow(this.ends, need);
    this.rights = grow(this.rights, need);
    for (let i = s * CHUNK; i < need; i++) this.vals.push(undefined);
    return s;
  }

  // A new, empty chunk at directory rank r.
  private addChunk(r: number, slot: number, min: number): void {
    const n = this.chunks;
    this.mins = grow(this.mins, n + 1);
    this.slots = grow(this.slots, n + 1);
    this.counts = grow(this.counts, n + 1);
    this.mins.copyWithin(r + 1, r, n);
    this.slots.copyWithin(r + 1, r, n);
    this.counts.copyWithin(r + 1, r, n);
    this.mins[r] = min;
    this.slots[r] = slot;
    this.counts[r] = 0;
    this.chunks = n + 1;
  }

  private dropChunk(r: number): void {
    this.freeSlots.push(this.slots[r]!);
    const n = this.chunks;
    this.mins.copyWithin(r, r + 1, n);
    this.slots.copyWithin(r, r + 1, n);
    this.counts.copyWithin(r, r + 1, n);
    this.chunks = n - 1;
  }

  // Full chunk r: its upper half becomes a new chunk r + 1.
  private split(r: number): void {
    const half = CHUNK >> 1;
    const slot = this.allocSlot();
    const src = this.slots[r]! * CHUNK + half;
    this.move(src, slot * CHUNK, CHUNK - half);
    this.counts[r] = half;
    this.addChunk(r + 1, slot, this.starts[slot * CHUNK]!);
    this.counts[r + 1] = CHUNK - half;
  }

  // Chunk r fell below MIN_FILL: merge it with a neighbour when both fit in
  // one chunk, else move entries over from the neighbour to even them out.
  private rebalance(r: number): void {
    const left = r > 0 ? r - 1 : r; // the pair (left, left + 1)
    const right = left + 1;
    const cl = this.counts[left]!;
    const cr = this.counts[right]!;
    const lb = this.slots[left]! * CHUNK;
    const rb = this.slots[right]! * CHUNK;
    if (cl + cr <= CHUNK) {
      this.move(rb, lb + cl, cr);
      this.counts[left] = cl + cr;
      if (cl === 0) this.mins[left] = this.starts[lb]!;
      this.dropChunk(right);
      return;
    }
    const half = (cl + cr) >> 1;
    if (cl < half) {
      const k = half - cl; // the right chunk's first k go to the end of the left one
      this.move(rb, lb + cl, k);
      this.shift(rb + k, rb + cr, -k);
      this.vals.fill(undefined, rb + cr - k, rb + cr);
      if (cl === 0) this.mins[left] = this.starts[lb]!;
    } else {
      const k = cl - half; // the left chunk's last k go to the front of the right one
      this.shift(rb, rb + cr, k);
      this.move(lb + half, rb, k);
    }
    this.counts[left] = half;
    this.counts[right] = cl + cr - half;
    this.mins[right] = this.starts[rb]!;
  }
}
