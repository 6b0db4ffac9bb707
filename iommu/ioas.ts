// An I/O address space (iommufd's IOAS / io_pagetable): IOVA areas over
// backings, reserved ranges, allowed ranges, dirty logging. Semantics and
// errnos follow drivers/iommu/iommufd/{ioas,io_pagetable}.c, with the IOVA
// alignment of a 4 KiB-page domain (every area boundary is page aligned).
import { fail } from '../protocol/errno.js';
import { Area } from './area.js';
import { PROT_READ, PROT_WRITE } from '../native/prot.js';
import type { Backing } from './backing.js';
import { bitmapBytes, checkReport, collectDirty, sliceDirty } from './dirty.js';
import { IommuError } from './errors.js';
import { IntervalMap } from './interval-map.js';
import { firstOverlap, holes, mergeRanges, overlaps, type IovaRange, type ReservedRange } from './ranges.js';
import { PAGE_SIZE, alignUp, lowBit, roundupPow2, u64, type U64Like } from './u64.js';
import { U64_MAX } from '../protocol/wire.js';

const PAGE = BigInt(PAGE_SIZE);
const PAGE_MASK = ~(PAGE - 1n);
const RESOLVED: Promise<void> = Promise.resolve();
/** Allowed ranges one IOAS may have, and reserved ranges: small lists, scanned linearly. */
export const MAX_IOVA_RANGES = 1024;

/** A piece of backing to map (one per source area for COPY). */
export interface Slice {
  backing: Backing;
  offset: number;
  length: bigint;
  /**
   * The most an area over this slice may be granted (PROT_*): the source
   * area's rights for COPY, what the backing allows for a map. Access rights
   * never widen: asking for more is EPERM.
   */
  maxProt: number;
}

export interface UnmapResult {
  /** Bytes unmapped. */
  length: bigint;
  /**
   * Settles when no in-flight view or DMA still uses the unmapped memory.
   * The table changed at once (no new translation reaches the range); send
   * the unmap reply after this settles so that nothing touches it afterwards.
   */
  drained: Promise<void>;
  /** Nothing was in flight: `drained` has already settled (reply at once). */
  idle: boolean;
}

export interface AreaInfo {
  iova: bigint;
  length: number;
  readable: boolean;
  writeable: boolean;
  offset: number;
  backing: Record<string, unknown>;
}

export interface IovaRangesResult {
  ranges: IovaRange[];
  alignment: number;
}

/** Page-aligned bigint → number (exact). */
function pageFloor(v: bigint): number {
  return Number(v & PAGE_MASK);
}

export class Ioas {
  private readonly areas = new IntervalMap<Area>(PAGE_SIZE);
  private reserved: ReservedRange[] = [];
  private allowed: IovaRange[] = [];
  /** Devices / PASIDs attached (destroy is EBUSY while > 0). */
  users = 0;
  dirtyTracking = false;
  destroyed = false;

  constructor(readonly id: number) {}

  get areaCount(): number {
    return this.areas.size;
  }

  // ---- translation (the device fast path) ----------------------------------

  /** The area containing iova (an exact number: safe, or page aligned). */
  find(iova: number): Area | undefined {
    return this.areas.find(iova);
  }

  /**
   * The area holding all of [iova, iova+len) with `access` rights, or null
   * (range and rights are checked in the index's typed arrays). Devices keep
   * a last-hit cache in front of this (dma-port.ts).
   */
  translate(iova: number, len: number, access: number): Area | null {
    return this.areas.findWithin(iova, len, access) ?? null;
  }

  /** Area and byte position in it for any u64 IOVA. */
  locate(iova: bigint | number): { area: Area; pos: number } | null {
    if (typeof iova === 'number') {
      const a = this.find(iova);
      return a ? { area: a, pos: iova - a.start } : null;
    }
    const base = pageFloor(iova);
    const a = this.find(base);
    return a ? { area: a, pos: base - a.start + Number(iova & (PAGE - 1n)) } : null;
  }

  // ---- map ------------------------------------------------------------------

  /**
   * IOMMU_IOAS_MAP: map [offset, offset+length) of backing at `iova`, or at
   * an allocated IOVA when iova is undefined. Returns the IOVA.
   */
  map(req: { backing: Backing; offset?: number; length: U64Like; prot: number; iova?: U64Like }): bigint {
    const length = u64(req.length, 'length');
    const iova = req.iova === undefined ? undefined : u64(req.iova, 'iova');
    if (iova === U64_MAX || length === U64_MAX) throw fail('EOVERFLOW', 'iova or length is U64_MAX');
    const offset = req.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0) throw fail('EINVAL', 'bad backing offset');
    return this.mapSlices([{ backing: req.backing, offset, length, maxProt: backingProt(req.backing) }], length, req.prot, iova);
  }

  /**
   * iopt_map_pages: slices land back to back from the (fixed or found) IOVA,
   * each area with `prot`, or, when prot is undefined, with the rights of its
   * slice (a COPY that keeps the source rights).
   */
  mapSlices(slices: readonly Slice[], length: bigint, prot: number | undefined, iova?: bigint): bigint {
    if (prot !== undefined) checkProt(prot);
    if (this.destroyed) throw fail('ENOENT', `IOAS ${this.id} is destroyed`);
    // iopt_insert_area: EPERM for write on read-only pages; here for any
    // right the memory was not mapped with.
    if (prot !== undefined) {
      for (const s of slices) {
        const extra = prot & ~s.maxProt;
        if (extra !== 0) throw fail('EPERM', `the memory grants no ${extra & PROT_WRITE ? 'WRITE' : 'READ'} access (access rights never widen)`);
      }
    }
    if (length === 0n || length % PAGE !== 0n) throw fail('EINVAL', `length ${length} is zero or not ${PAGE_SIZE}-aligned`);
    let at: bigint;
    if (iova === undefined) at = this.allocIova(length, slices[0]?.offset ?? 0);
    else {
      this.checkIova(iova, length);
      at = iova;
    }
    for (const s of slices) {
      if (s.offset % PAGE_SIZE !== 0 || s.length % PAGE !== 0n) throw fail('EINVAL', 'backing offset not page aligned');
      if (BigInt(s.offset) + s.length > BigInt(s.backing.size)) throw fail('EINVAL', 'range is outside the backing');
    }
    let cur = Number(at);
    for (const s of slices) {
      const n = Number(s.length);
      this.insert(new Area(cur, cur + n, s.backing, s.offset, prot ?? s.maxProt));
      cur += n;
    }
    return at;
  }

  /** iopt_check_iova: alignment, wrap, reserved (EINVAL), existing (EEXIST). */
  checkIova(iova: bigint, length: bigint): void {
    if (iova % PAGE !== 0n) throw fail('EINVAL', `iova 0x${iova.toString(16)} is not ${PAGE_SIZE}-aligned`);
    const last = iova + length - 1n;
    if (last > U64_MAX) throw fail('EOVERFLOW', 'iova + length wraps past 2^64');
    if (firstOverlap(this.reserved, iova, last)) throw fail('EINVAL', 'range overlaps a reserved IOVA range');
    if (this.areas.collect(Number(iova), pageFloor(last)).length > 0) throw fail('EEXIST', 'range overlaps an existing mapping');
  }

  /** Insert a checked area (type1 does its own checks, then calls this). */
  insert(area: Area): void {
    this.areas.insert(area);
  }

  /**
   * iopt_alloc_iova: the lowest hole (never IOVA 0) inside the allowed
   * ranges, outside reserved ranges and areas, aligned to the length rounded
   * up to a power of two (capped by the alignment of the backing offset).
   */
  allocIova(length: bigint, offset: number): bigint {
    if (length === 0n || length >= U64_MAX / 2n) throw fail('EOVERFLOW', 'length too large to allocate');
    let align = roundupPow2(length);
    if (offset !== 0) {
      const b = lowBit(BigInt(offset));
      if (b < align) align = b;
    }
    if (align < PAGE) throw fail('EINVAL', 'backing offset not page aligned');
    const lo = PAGE;
    const hi = U64_MAX - PAGE;
    const spans: IovaRange[] = [];
    if (this.allowed.length === 0) spans.push({ start: lo, last: hi });
    else {
      for (const r of mergeRanges(this.allowed)) {
        const s = r.start > lo ? r.start : lo;
        const l = r.last < hi ? r.last : hi;
        if (s <= l) spans.push({ start: s, last: l });
      }
    }
    for (const span of spans) {
      const got = this.allocIn(span, length, align);
      if (got !== undefined) return got;
    }
    throw fail('ENOSPC', `no free IOVA range of ${length} bytes`);
  }

  // First fit inside one allowed span, walking reserved ranges and areas in
  // IOVA order (early exit: usually only the first few areas are visited).
  private allocIn(span: IovaRange, length: bigint, align: bigint): bigint | undefined {
    const res = this.reserved
      .filter((r) => overlaps(r, span.start, span.last))
      .sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    let ri = 0;
    let cur = span.start;
    let found: bigint | undefined;
    let done = false;
    const use = (s: bigint, l: bigint): void => {
      if (s > cur) {
        const st = alignUp(cur, align);
        if (st < s && s - 1n - st >= length - 1n) {
          found = st;
          done = true;
          return;
        }
      }
      if (l >= cur) cur = l + 1n;
      if (cur > span.last) done = true;
    };
    this.areas.forEachFrom(pageFloor(cur), (a) => {
      const as = BigInt(a.start);
      while (!done && ri < res.length && res[ri].start <= as) use(res[ri].start, res[ri++].last);
      if (done || as > span.last) return false;
      use(as, BigInt(a.end) - 1n);
      return !done;
    });
    while (!done && ri < res.length) use(res[ri].start, res[ri++].last);
    if (found !== undefined) return found;
    if (cur <= span.last) {
      const st = alignUp(cur, align);
      if (st <= span.last && span.last - st >= length - 1n) return st;
    }
    return undefined;
  }

  // ---- unmap ----------------------------------------------------------------

  /**
   * IOMMU_IOAS_UNMAP: removes whole areas inside [iova, iova+length); a range
   * that cuts an area, or holds no area, is ENOENT (nothing is removed: the
   * check runs before any removal). iova 0 + length U64_MAX unmaps all.
   */
  unmap(iovaIn: U64Like, lengthIn: U64Like): UnmapResult {
    const iova = u64(iovaIn, 'iova');
    const length = u64(lengthIn, 'length');
    if (iova === 0n && length === U64_MAX) return this.unmapAll();
    if (iova === U64_MAX || length === U64_MAX) throw fail('EOVERFLOW', 'iova or length is U64_MAX');
    if (length === 0n) throw fail('EINVAL', 'zero length');
    const last = iova + length - 1n;
    if (last > U64_MAX) throw fail('EOVERFLOW', 'iova + length wraps past 2^64');
    const list = this.areasIn(iova, last);
    if (list.length === 0) throw fail('ENOENT', 'no mapping in range');
    if (list[0].start < iova || list[list.length - 1].end > last + 1n) {
      throw fail('ENOENT', 'range cuts a mapping (only whole mappings can be unmapped)');
    }
    return this.removeAreas(list);
  }

  unmapAll(): UnmapResult {
    const list = [...this.areas];
    this.areas.clear();
    return this.retireAll(list);
  }

  /** Areas intersecting [iova, last] (inclusive), in order. */
  areasIn(iova: bigint | number, last: bigint | number): Area[] {
    const lo = typeof iova === 'number' ? iova : pageFloor(iova);
    const hi = typeof last === 'number' ? last : pageFloor(last);
    return this.areas.collect(lo, hi);
  }

  /** Remove the given (current) areas. */
  removeAreas(list: readonly Area[]): UnmapResult {
    for (const a of list) this.areas.remove(a.start);
    return this.retireAll(list);
  }

  private retireAll(list: readonly Area[]): UnmapResult {
    let bytes = 0n;
    let waits: Promise<void>[] | null = null;
    for (const a of list) {
      bytes += BigInt(a.length);
      const p = a.retire();
      if (p) (waits ??= []).push(p);
    }
    const drained = waits ? Promise.all(waits).then(() => undefined) : RESOLVED;
    return { length: bytes, drained, idle: waits === null };
  }

  /**
   * Make `at` (page aligned) an area boundary, splitting the area that spans
   * it (type1 v1 lets unmap cut mappings). Both halves share the backing.
   */
  cutAt(at: number): void {
    const a = this.areas.find(at);
    if (!a || a.start === at) return;
    const leftLen = at - a.start;
    const left = new Area(a.start, at, a.backing, a.offset, a.prot);
    const right = new Area(at, a.end, a.backing, a.offset + leftLen, a.prot);
    left.dirty = sliceDirty(a.dirty, 0, leftLen / PAGE_SIZE);
    right.dirty = sliceDirty(a.dirty, leftLen / PAGE_SIZE, right.length / PAGE_SIZE);
    a.adopt(left);
    a.adopt(right);
    this.areas.remove(a.start);
    this.areas.insert(left);
    this.areas.insert(right);
    a.retire();
  }

  // ---- copy support -----------------------------------------------------------

  /** iopt_get_pages: the backing slices behind a fully mapped range, each with its area's rights. */
  slices(iova: bigint, length: bigint): Slice[] {
    if (length === 0n) throw fail('EINVAL', 'zero length');
    const last = iova + length - 1n;
    if (last > U64_MAX) throw fail('EOVERFLOW', 'iova + length wraps past 2^64');
    const out: Slice[] = [];
    let cur = iova;
    while (cur <= last) {
      const hit = this.locate(cur);
      if (!hit) throw fail('ENOENT', `0x${cur.toString(16)} is not mapped`);
      const { area, pos } = hit;
      const avail = BigInt(area.length - pos);
      const n = last - cur + 1n < avail ? last - cur + 1n : avail;
      out.push({ backing: area.backing, offset: area.offset + pos, length: n, maxProt: area.prot & backingProt(area.backing) });
      cur += n;
    }
    return out;
  }

  // ---- ranges ---------------------------------------------------------------

  /**
   * IOMMU_IOAS_IOVA_RANGES: the holes between reserved ranges. With `max`
   * smaller than the count: EMSGSIZE, data {numIovas, ranges (the first max)}.
   */
  iovaRanges(max?: number): IovaRangesResult {
    const ranges = holes(this.reserved);
    if (max !== undefined && ranges.length > max) {
      throw new IommuError('EMSGSIZE', `${ranges.length} ranges, room for ${max}`, {
        numIovas: ranges.length,
        ranges: ranges.slice(0, max),
        alignment: PAGE_SIZE,
      });
    }
    return { ranges, alignment: PAGE_SIZE };
  }

  /**
   * IOMMU_IOAS_ALLOW_IOVAS: atomically replace the allowed ranges (used by
   * IOVA allocation). start >= last or overlapping entries: EINVAL; a range
   * over a reserved one: EADDRINUSE. An empty list allows everything.
   */
  allowIovas(list: readonly { start: U64Like; last: U64Like }[]): void {
    if (list.length > MAX_IOVA_RANGES) throw fail('E2BIG', `${list.length} allowed ranges, at most ${MAX_IOVA_RANGES}`);
    const next: IovaRange[] = [];
    for (const r of list) {
      if (r === null || typeof r !== 'object') throw fail('EINVAL', 'an allowed range is {start, last}');
      const start = u64(r.start, 'start');
      const last = u64(r.last, 'last');
      if (start >= last) throw fail('EINVAL', 'allowed range start >= last');
      next.push({ start, last });
    }
    const sorted = [...next].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].start <= sorted[i - 1].last) throw fail('EINVAL', 'allowed ranges overlap');
    }
    for (const r of next) {
      if (firstOverlap(this.reserved, r.start, r.last)) throw fail('EADDRINUSE', 'allowed range overlaps a reserved range');
    }
    this.allowed = next;
  }

  get allowedRanges(): IovaRange[] {
    return this.allowed.map((r) => ({ ...r }));
  }

  get reservedRanges(): ReservedRange[] {
    return this.reserved.map((r) => ({ ...r }));
  }

  /**
   * iopt_reserve_iova: no mapping may ever use [start, last]. EADDRINUSE if
   * a mapping or an allowed range is already there.
   */
  addReserved(startIn: U64Like, lastIn: U64Like, owner = 'user'): void {
    const start = u64(startIn, 'start');
    const last = u64(lastIn, 'last');
    if (start > last) throw fail('EINVAL', 'reserved range start > last');
    if (this.reserved.length >= MAX_IOVA_RANGES) throw fail('ENOSPC', `already ${MAX_IOVA_RANGES} reserved ranges`);
    if (this.areasIn(start, last).length > 0) throw fail('EADDRINUSE', 'a mapping is in the reserved range');
    if (firstOverlap(this.allowed, start, last)) throw fail('EADDRINUSE', 'an allowed range is in the reserved range');
    this.reserved.push({ start, last, owner });
  }

  /** Does [start, last] touch a reserved range? */
  isReserved(start: bigint, last: bigint): boolean {
    return firstOverlap(this.reserved, start, last) !== undefined;
  }

  removeReserved(owner: string): void {
    this.reserved = this.reserved.filter((r) => r.owner !== owner);
  }

  // ---- dirty tracking ---------------------------------------------------------

  dirtyStart(): void {
    for (const a of this.areas) a.dirty = null;
    this.dirtyTracking = true;
  }

  dirtyStop(): void {
    this.dirtyTracking = false;
    for (const a of this.areas) a.dirty = null;
  }

  /**
   * Bitmap of pages (pgsize each) written by devices in [iova, iova+length)
   * since the last report; clears what it reports unless clear is false.
   */
  dirtyReport(iovaIn: U64Like, lengthIn: U64Like, pgsize = PAGE_SIZE, clear = true): Uint8Array {
    const iova = u64(iovaIn, 'iova');
    const length = u64(lengthIn, 'length');
    const pages = checkReport(iova, length, pgsize);
    if (!this.dirtyTracking) throw fail('EINVAL', 'dirty tracking is off');
    const out = new Uint8Array(bitmapBytes(pages));
    const list = this.areasIn(iova, iova + length - 1n);
    collectDirty(list, Number(iova), pages, pgsize, out, clear);
    return out;
  }

  // ---- introspection ------------------------------------------------------------

  list(): AreaInfo[] {
    const out: AreaInfo[] = [];
    for (const a of this.areas) {
      out.push({
        iova: BigInt(a.start),
        length: a.length,
        readable: (a.prot & PROT_READ) !== 0,
        writeable: (a.prot & PROT_WRITE) !== 0,
        offset: a.offset,
        backing: a.backing.describe(),
      });
    }
    return out;
  }

  /** Every area (for bulk operations such as dropping a client's memory). */
  allAreas(): Area[] {
    return [...this.areas];
  }

  /** IOMMU_DESTROY: unmap everything. The context checks for users. */
  destroy(): UnmapResult {
    const r = this.unmapAll();
    this.destroyed = true;
    return r;
  }
}

/** The rights a backing allows any area over it: always READ, WRITE if writable. */
function backingProt(b: Backing): number {
  return b.writable ? PROT_READ | PROT_WRITE : PROT_READ;
}

export function checkProt(prot: number): void {
  if (!Number.isInteger(prot) || (prot & ~(PROT_READ | PROT_WRITE)) !== 0) throw fail('EOPNOTSUPP', 'unknown access flags');
  if ((prot & (PROT_READ | PROT_WRITE)) === 0) throw fail('EINVAL', 'mapping must be readable or writeable');
}
