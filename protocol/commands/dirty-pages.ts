// VFIO_USER_DIRTY_PAGES (client → server, command 14) — DEPRECATED: dropped
// from the current spec in favour of DEVICE_FEATURE DMA_LOGGING_*; kept in
// QEMU's and libvfio-user's enums. QEMU 11.1 never sends it.
//
// Request (struct vfio_user_dirty_pages, 8 bytes):
//   0 4 argsz   max reply payload
//   4 4 flags   exactly one of START (1), STOP (2), GET_BITMAP (4)
// GET_BITMAP appends struct vfio_user_bitmap_range (32 bytes):
//   8 8 iova, 16 8 size, 24 8 bitmap.pgsize, 32 8 bitmap.size (bytes)
// Reply: START/STOP nothing; GET_BITMAP the 40 request bytes with argsz =
// 40 + bitmap.size, then the bitmap. If argsz is too small only the 8-byte
// header goes back, telling the size needed (libvfio-user).
import {
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, VFIO_IOMMU_DIRTY_PAGES_FLAG_START, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
} from '../constants.js';
import { fail } from '../errno.js';
import { minPageSize, type NegotiatedLimits } from '../limits.js';
import { argszAtLeast, checkRange64, exactLength, isPowerOfTwo, minLength, noFds, readU64, writeU64 } from '../wire.js';

const HDR = 8;
const RANGE = 32;

export interface DirtyPagesRequest {
  argsz: number;
  flags: number;
  /** GET_BITMAP only. */
  range?: { iova: bigint; size: bigint; pgsize: bigint; bitmapBytes: number };
}

export function decodeDirtyPagesRequest(payload: Buffer, limits: NegotiatedLimits, nfds: number): DirtyPagesRequest {
  minLength(payload, HDR, 'DIRTY_PAGES');
  noFds(nfds, 'DIRTY_PAGES');
  const argsz = payload.readUInt32LE(0);
  const flags = payload.readUInt32LE(4);
  argszAtLeast(argsz, HDR, 'DIRTY_PAGES');
  if (flags === VFIO_IOMMU_DIRTY_PAGES_FLAG_START || flags === VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP) {
    exactLength(payload, HDR, 'DIRTY_PAGES');
    return { argsz, flags };
  }
  if (flags !== VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP) throw fail('EINVAL', `DIRTY_PAGES: bad flags 0x${flags.toString(16)}`);
  exactLength(payload, HDR + RANGE, 'DIRTY_PAGES');
  const iova = readU64(payload, 8);
  const size = readU64(payload, 16);
  const pgsize = readU64(payload, 24);
  const bytes = readU64(payload, 32);
  if (size === 0n) throw fail('EINVAL', 'DIRTY_PAGES: size 0');
  if (!isPowerOfTwo(pgsize) || pgsize < BigInt(minPageSize(limits))) throw fail('EINVAL', 'DIRTY_PAGES: bad pgsize');
  checkRange64(iova, size, 'DIRTY_PAGES');
  const needed = (((size + pgsize - 1n) / pgsize + 63n) / 64n) * 8n;
  if (bytes < needed) throw fail('EINVAL', `DIRTY_PAGES: bitmap of ${bytes} bytes, need ${needed}`);
  if (bytes > BigInt(limits.maxDataXferSize)) throw fail('EINVAL', `DIRTY_PAGES: bitmap of ${bytes} bytes too large`);
  return { argsz, flags, range: { iova, size, pgsize, bitmapBytes: Number(bytes) } };
}

/** Bytes of the full GET_BITMAP reply. */
export function dirtyPagesReplySize(req: DirtyPagesRequest): number {
  return req.range ? HDR + RANGE + req.range.bitmapBytes : 0;
}

/** START/STOP: empty. GET_BITMAP: [40 bytes, bitmap], or 8 bytes if argsz is too small. */
export function encodeDirtyPagesReply(req: DirtyPagesRequest, bitmap?: Buffer): Buffer | Buffer[] {
  const r = req.range;
  if (!r) return Buffer.alloc(0);
  const needed = dirtyPagesReplySize(req);
  const full = req.argsz >= needed;
  const h = Buffer.alloc(full ? HDR + RANGE : HDR);
  h.writeUInt32LE(needed, 0);
  h.writeUInt32LE(req.flags, 4);
  if (!full) return h;
  if (!bitmap || bitmap.length !== r.bitmapBytes) throw fail('EIO', `DIRTY_PAGES: bitmap must be ${r.bitmapBytes} bytes`);
  writeU64(h, 8, r.iova);
  writeU64(h, 16, r.size);
  writeU64(h, 24, r.pgsize);
  writeU64(h, 32, r.bitmapBytes);
  return [h, bitmap];
}

/** Client side (test client). */
export function encodeDirtyPagesRequest(flags: number, range?: { iova: bigint; size: bigint; pgsize: bigint; bitmapBytes: number }, argsz?: number): Buffer {
  const b = Buffer.alloc(HDR + (range ? RANGE : 0));
  b.writeUInt32LE(argsz ?? (range ? HDR + RANGE + range.bitmapBytes : HDR), 0);
  b.writeUInt32LE(flags, 4);
  if (range) {
    writeU64(b, 8, range.iova);
    writeU64(b, 16, range.size);
    writeU64(b, 24, range.pgsize);
    writeU64(b, 32, range.bitmapBytes);
  }
  return b;
}
