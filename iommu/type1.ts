// VFIO type1 compatibility on the compat IOAS: MAP_DMA / UNMAP_DMA /
// GET_INFO / DIRTY_PAGES with the rules of drivers/vfio/vfio_iommu_type1.c
// (v2: an unmap that bisects a mapping fails, FLAG_ALL needs iova = size = 0;
// v1: unmap may split mappings, as iommufd's vfio_compat.c emulates it).
// errnos: 'vfio' (default) as vfio_iommu_type1.c; 'iommufd' as
// iommufd/vfio_compat.c (ENOENT for bisect / nothing mapped, EOVERFLOW wrap).
import { closeSync } from 'node:fs';
import { fail, type ErrnoName } from '../protocol/errno.js';
import { Area } from './area.js';
import { PROT_READ, PROT_WRITE } from '../native/prot.js';
import {
  VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE, VFIO_DMA_UNMAP_FLAG_ALL, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, VFIO_IOMMU_DIRTY_PAGES_FLAG_START, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
} from '../protocol/constants.js';
import type { MemorySource } from './memory-source.js';
import type { Backing } from './backing.js';
import type { Ioas } from './ioas.js';
import { DIRTY_BITMAP_SIZE_MAX, bitmapBytes, checkReport } from './dirty.js';
import { PAGE_SIZE, isPow2, u64, type U64Like } from './u64.js';
import { U64_MAX } from '../protocol/wire.js';

export const VFIO_IOMMU_INFO_PGSIZES = 1 << 0;
export const VFIO_IOMMU_INFO_CAPS = 1 << 1;
export const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
export const VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2;
export const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;

/** What type1 needs of its context (IommuContext): the compat IOAS and backings. */
export interface Type1Host {
  /** The IOAS the type1 operations act on (throws ENODEV when there is none). */
  readonly compatIoas: Ioas;
  /** Memory for a map: a retained backing and the offset into it. */
  makeBacking(src: MemorySource, length: number, writable: boolean, iova?: bigint): { backing: Backing; offset: number };
}

export interface Type1Options {
  /** 2 = VFIO_TYPE1v2_IOMMU (default), 1 = VFIO_TYPE1_IOMMU. */
  version?: 1 | 2;
  /** Minimum IOMMU page size (a power of two >= 4096). Default 4096. */
  pgsize?: number;
  /** vfio_iommu_type1's dma_entry_limit. Default 65535. */
  dmaEntryLimit?: number;
  errnos?: 'vfio' | 'iommufd';
}

export interface Type1MapRequest extends MemorySource {
  iova: U64Like;
  size: U64Like;
  /** VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE. */
  flags: number;
}

export interface Type1UnmapRequest {
  iova: U64Like;
  size: U64Like;
  /** VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL. */
  flags?: number;
  /** Page size of the requested bitmap (GET_DIRTY_BITMAP). */
  bitmapPgsize?: number;
  /** Bytes the client has room for: EINVAL if too small; the bitmap is padded to it. */
  bitmapSize?: number;
}

export interface Type1UnmapResult {
  /** Bytes unmapped. */
  size: bigint;
  /** With GET_DIRTY_BITMAP: u64 words, bit i = page i from iova. */
  bitmap?: Uint8Array;
  /** Reply after this: no in-flight DMA touches the memory any more. */
  drained: Promise<void>;
  /** Nothing was in flight: `drained` has already settled. */
  idle: boolean;
}

export type Type1Cap =
  | { id: typeof VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE; version: 1; iovaRanges: { start: bigint; end: bigint }[] }
  | { id: typeof VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION; version: 1; flags: number; pgsizeBitmap: number; maxDirtyBitmapSize: number }
  | { id: typeof VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL; version: 1; avail: number };

export interface Type1Info {
  flags: number;
  iovaPgsizes: bigint;
  caps: Type1Cap[];
}

export class Type1Compat {
  readonly version: 1 | 2;
  readonly pgsize: number;
  /** vfio_iommu_type1's dma_entry_limit (a vfio-user client negotiates its own: max_dma_maps). */
  dmaEntryLimit: number;
  readonly errnos: 'vfio' | 'iommufd';
  private readonly pg: bigint;

  constructor(
    private readonly ctx: Type1Host,
    opts: Type1Options = {},
  ) {
    this.version = opts.version ?? 2;
    this.pgsize = opts.pgsize ?? PAGE_SIZE;
    if (!isPow2(this.pgsize) || this.pgsize < PAGE_SIZE) throw fail('EINVAL', `bad type1 pgsize ${this.pgsize}`);
    this.dmaEntryLimit = opts.dmaEntryLimit ?? 65535;
    this.errnos = opts.errnos ?? 'vfio';
    this.pg = BigInt(this.pgsize);
  }

  /** Mappings still available under dma_entry_limit. */
  get dmaAvail(): number {
    const ioas = this.ctx.compatIoas;
    return Math.max(0, this.dmaEntryLimit - ioas.areaCount);
  }

  /**
   * VFIO_IOMMU_MAP_DMA. The memory comes from `fd` (+offset; we own the fd
   * and close it), a `messenger` (DMA_READ/WRITE messages at base = iova),
   * a `backing`, or anonymous memory. Everything is checked before any fd
   * is mapped.
   */
  map(req: Type1MapRequest): void {
    let fdOwned = req.fd !== undefined;
    try {
      const flags = req.flags;
      if (!Number.isInteger(flags) || flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)) throw fail('EINVAL', 'unknown map flags');
      const prot = (flags & VFIO_DMA_MAP_FLAG_READ ? PROT_READ : 0) | (flags & VFIO_DMA_MAP_FLAG_WRITE ? PROT_WRITE : 0);
      if (!prot) throw fail('EINVAL', 'mapping must be readable or writeable');
      const ioas = this.ctx.compatIoas;
      const iova = u64(req.iova, 'iova');
      const size = u64(req.size, 'size');
      if (size === 0n || iova % this.pg !== 0n || size % this.pg !== 0n) throw fail('EINVAL', 'iova/size zero or not page aligned');
      const last = iova + size - 1n;
      if (last > U64_MAX) throw fail(this.e('EINVAL', 'EOVERFLOW'), 'iova + size wraps');
      if (ioas.areasIn(iova, last).length > 0) throw fail('EEXIST', 'range overlaps an existing mapping');
      if (ioas.areaCount >= this.dmaEntryLimit) throw fail('ENOSPC', `dma_entry_limit (${this.dmaEntryLimit}) reached`);
      if (ioas.isReserved(iova, last)) throw fail('EINVAL', 'range is outside the valid IOVA ranges');
      if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw fail('EINVAL', 'size too large');
      const n = Number(size);
      fdOwned = false; // makeBacking takes the fd over from here
      const { backing, offset } = this.ctx.makeBacking(req, n, (prot & PROT_WRITE) !== 0, iova);
      try {
        if (!req.backing) backing.clientOwned = true;
        if (prot & PROT_WRITE && !backing.writable) throw fail('EPERM', 'backing memory is read-only');
        if (offset % PAGE_SIZE !== 0 || offset + n > backing.size) throw fail('EINVAL', 'range is outside the backing');
        const start = Number(iova);
        ioas.insert(new Area(start, start + n, backing, offset, prot));
      } finally {
        backing.release();
      }
    } finally {
      // Refused before the fd was handed on: still ours to close.
      if (fdOwned && req.fd !== undefined) closeQuietly(req.fd);
    }
  }

  /** VFIO_IOMMU_UNMAP_DMA (optionally with the dirty bitmap of the range). */
  unmap(req: Type1UnmapRequest): Type1UnmapResult {
    const flags = req.flags ?? 0;
    if (!Number.isInteger(flags) || flags & ~(VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL)) throw fail('EINVAL', 'unknown unmap flags');
    const all = (flags & VFIO_DMA_UNMAP_FLAG_ALL) !== 0;
    const wantBitmap = (flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) !== 0;
    if (all && wantBitmap) throw fail('EINVAL', 'GET_DIRTY_BITMAP with ALL');
    const ioas = this.ctx.compatIoas;
    const iova = u64(req.iova, 'iova');
    const size = u64(req.size, 'size');
    if (iova % this.pg !== 0n) throw fail('EINVAL', 'iova not page aligned');
    if (all) {
      if (iova !== 0n || size !== 0n) throw fail('EINVAL', 'UNMAP_FLAG_ALL needs iova = size = 0');
      const r = ioas.unmapAll();
      return { size: r.length, drained: r.drained, idle: r.idle };
    }
    if (size === 0n || size % this.pg !== 0n) throw fail('EINVAL', 'size zero or not page aligned');
    const last = iova + size - 1n;
    if (last > U64_MAX) throw fail(this.e('EINVAL', 'EOVERFLOW'), 'iova + size wraps');
    if (wantBitmap) {
      if (!ioas.dirtyTracking || req.bitmapPgsize !== this.pgsize) throw fail('EINVAL', 'dirty tracking off or bitmap page size mismatch');
      const pages = checkReport(iova, size, this.pgsize);
      checkBitmapSize(pages, req.bitmapSize);
    }
    let list;
    if (this.version === 2) {
      list = ioas.areasIn(iova, last);
      if (list.length && (list[0].start < iova || list[list.length - 1].end > last + 1n)) {
        throw fail(this.e('EINVAL', 'ENOENT'), 'range bisects a mapping');
      }
    } else {
      // v1: cut the mappings at both ends of the range, then unmap inside.
      ioas.cutAt(Number(iova));
      if (last < U64_MAX) ioas.cutAt(Number(last + 1n));
      list = ioas.areasIn(iova, last);
    }
    if (list.length === 0 && this.errnos === 'iommufd') throw fail('ENOENT', 'no mapping in range');
    const bitmap = wantBitmap ? padTo(ioas.dirtyReport(iova, size, this.pgsize), req.bitmapSize) : undefined;
    // Every area at once: clear the index in one step instead of one removal each.
    const r = list.length === ioas.areaCount ? ioas.unmapAll() : ioas.removeAreas(list);
    return { size: r.length, bitmap, drained: r.drained, idle: r.idle };
  }

  /** VFIO_IOMMU_GET_INFO, with the capability chain as objects. */
  getInfo(): Type1Info {
    const ioas = this.ctx.compatIoas;
    const ranges = ioas.iovaRanges().ranges.map((r) => ({ start: r.start, end: r.last }));
    return {
      flags: VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS,
      iovaPgsizes: U64_MAX & ~(this.pg - 1n),
      caps: [
        { id: VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, version: 1, iovaRanges: ranges },
        { id: VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, version: 1, flags: 0, pgsizeBitmap: this.pgsize, maxDirtyBitmapSize: DIRTY_BITMAP_SIZE_MAX },
        { id: VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, version: 1, avail: this.dmaAvail },
      ],
    };
  }

  /**
   * VFIO_IOMMU_DIRTY_PAGES: exactly one of START / STOP / GET_BITMAP. v2
   * only (EACCES on v1). GET_BITMAP must not bisect a mapping, uses the
   * minimum page size, and clears what it reports.
   */
  dirtyPages(req: { flags: number; iova?: U64Like; size?: U64Like; pgsize?: number; bitmapSize?: number }): { bitmap?: Uint8Array } {
    if (this.version !== 2) throw fail('EACCES', 'dirty tracking needs type1v2');
    const f = req.flags;
    const mask = VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP | VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
    if (!Number.isInteger(f) || f & ~mask || f === 0 || (f & (f - 1)) !== 0) throw fail('EINVAL', 'exactly one dirty-pages flag');
    const ioas = this.ctx.compatIoas;
    if (f === VFIO_IOMMU_DIRTY_PAGES_FLAG_START) {
      if (!ioas.dirtyTracking) ioas.dirtyStart();
      return {};
    }
    if (f === VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP) {
      if (ioas.dirtyTracking) ioas.dirtyStop();
      return {};
    }
    const iova = u64(req.iova ?? 0, 'iova');
    const size = u64(req.size ?? 0, 'size');
    if (iova + size < iova || iova + size - 1n > U64_MAX) throw fail('EINVAL', 'range wraps');
    if (req.pgsize !== this.pgsize) throw fail('EINVAL', 'bitmap page size must be the minimum IOMMU page size');
    if (size === 0n || iova % this.pg !== 0n || size % this.pg !== 0n) throw fail('EINVAL', 'range zero or not page aligned');
    checkBitmapSize(checkReport(iova, size, this.pgsize), req.bitmapSize);
    if (!ioas.dirtyTracking) throw fail('EINVAL', 'dirty tracking is not started');
    const last = iova + size - 1n;
    const list = ioas.areasIn(iova, last);
    if (list.length && (list[0].start < iova || list[list.length - 1].end > last + 1n)) throw fail('EINVAL', 'range bisects a mapping');
    return { bitmap: padTo(ioas.dirtyReport(iova, size, this.pgsize, true), req.bitmapSize) };
  }

  private e(vfio: ErrnoName, iommufd: ErrnoName): ErrnoName {
    return this.errnos === 'vfio' ? vfio : iommufd;
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

// verify_bitmap_size(): the client's buffer must hold the whole bitmap.
function checkBitmapSize(pages: number, size: number | undefined): void {
  if (size === undefined) return;
  if (!Number.isSafeInteger(size) || size <= 0 || size > DIRTY_BITMAP_SIZE_MAX || size < bitmapBytes(pages)) {
    throw fail('EINVAL', `bitmap of ${size} bytes cannot hold ${pages} pages`);
  }
}

function padTo(bm: Uint8Array, size: number | undefined): Uint8Array {
  if (size === undefined || size === bm.length) return bm;
  const out = new Uint8Array(size);
  out.set(bm.subarray(0, Math.min(size, bm.length)));
  return out;
}
