// Dirty-page logging: one bit per 4 KiB page per area, set by device writes
// while tracking is on; reports are bitmaps of u64 words, bit i = page i
// from the report's start (the layout of VFIO and iommufd bitmaps).
import { fail } from '../protocol/errno.js';
import type { Area } from './area.js';
import { PAGE_SIZE, isPow2 } from './u64.js';

/** Same cap as VFIO's DIRTY_BITMAP_SIZE_MAX (INT_MAX pages). */
export const DIRTY_BITMAP_PAGES_MAX = 2 ** 31 - 1;
export const DIRTY_BITMAP_SIZE_MAX = Math.ceil(DIRTY_BITMAP_PAGES_MAX / 64) * 8;

/** Mark [pos, pos+len) of area dirty (pos relative to area.start). */
export function markDirty(area: Area, pos: number, len: number): void {
  if (len <= 0) return;
  let bm = area.dirty;
  if (!bm) bm = area.dirty = new Uint8Array(Math.ceil(area.length / PAGE_SIZE / 8));
  const first = Math.floor(pos / PAGE_SIZE);
  const last = Math.floor((pos + len - 1) / PAGE_SIZE);
  for (let p = first; p <= last; p++) bm[p >> 3] |= 1 << (p & 7);
}

/** Bytes of a report bitmap for `pages` pages (rounded to u64 words). */
export function bitmapBytes(pages: number): number {
  return Math.ceil(pages / 64) * 8;
}

/** Validates a report request; returns the page count. */
export function checkReport(iova: bigint, length: bigint, pgsize: number): number {
  if (!isPow2(pgsize)) throw fail('EINVAL', `page size ${pgsize} is not a power of two`);
  const pg = BigInt(pgsize);
  if (length === 0n) throw fail('EINVAL', 'zero length');
  if (iova % pg !== 0n || length % pg !== 0n) throw fail('EINVAL', 'range not aligned to the page size');
  if (iova + length - 1n > (1n << 64n) - 1n) throw fail('EOVERFLOW', 'range wraps');
  const pages = length / pg;
  if (pages > BigInt(DIRTY_BITMAP_PAGES_MAX)) throw fail('EINVAL', 'bitmap too large');
  return Number(pages);
}

/**
 * OR the dirty pages of `areas` that fall in [iova, iova+pages*pgsize) into
 * out (bit per pgsize page from iova); clear them in the areas if `clear`.
 * iova is a pgsize multiple (exact as a number).
 */
export function collectDirty(areas: readonly Area[], iova: number, pages: number, pgsize: number, out: Uint8Array, clear: boolean): void {
  const endIova = iova + pages * pgsize;
  for (const a of areas) {
    const bm = a.dirty;
    if (!bm) continue;
    // Area pages that intersect the report window.
    const fromPage = a.start >= iova ? 0 : (iova - a.start) / PAGE_SIZE;
    const toPage = a.end <= endIova ? a.length / PAGE_SIZE : (endIova - a.start) / PAGE_SIZE;
    for (let p = fromPage; p < toPage; ) {
      const byte = bm[p >> 3];
      if (byte === 0 && (p & 7) === 0) {
        p += 8;
        continue;
      }
      if (byte & (1 << (p & 7))) {
        // A 4 KiB page is one bit, or several when the report page is smaller.
        const rel = a.start + p * PAGE_SIZE - iova;
        const first = Math.max(0, Math.floor(rel / pgsize));
        const last = Math.min(pages - 1, Math.floor((rel + PAGE_SIZE - 1) / pgsize));
        for (let bit = first; bit <= last; bit++) out[bit >> 3] |= 1 << (bit & 7);
        if (clear) bm[p >> 3] &= ~(1 << (p & 7));
      }
      p++;
    }
  }
}

/** Split bitmap bits of `from` for a sub-area starting `pagesIn` pages in. */
export function sliceDirty(from: Uint8Array | null, pagesIn: number, pages: number): Uint8Array | null {
  if (!from) return null;
  const out = new Uint8Array(Math.ceil(pages / 8));
  for (let p = 0; p < pages; p++) {
    const q = p + pagesIn;
    if (from[q >> 3] & (1 << (q & 7))) out[p >> 3] |= 1 << (p & 7);
  }
  return out;
}

