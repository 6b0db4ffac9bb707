// VFIO_USER_DMA_UNMAP (client → server): a DMA_MAP'ed range goes away.
//
// Request (24 bytes, struct vfio_iommu_type1_dma_unmap):
//   off size field
//    0   4   argsz    max reply payload, >= 24 (QEMU: 24)
//    4   4   flags    0 | VFIO_DMA_UNMAP_FLAG_ALL (addr = size = 0) |
//                     VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP (legacy, see below)
//    8   8   addr
//   16   8   size
// With GET_DIRTY_BITMAP (libvfio-user's legacy format, gone from the current
// spec) a struct vfio_bitmap follows:
//   24   8   pgsize   bitmap granularity
//   32   8   size     bitmap bytes (the reply appends that many)
// Reply: the request's 24 bytes echoed (+ bitmap header and data).
// QEMU's reply buffer holds exactly the request: the echo must not be longer.
import { VFIO_DMA_UNMAP_FLAG_ALL, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP } from '../constants.js';
import { fail } from '../errno.js';
import { minPageSize, type NegotiatedLimits } from '../limits.js';
import { argszAtLeast, checkRange64, exactLength, isPowerOfTwo, minLength, noFds, readU64, writeU64 } from '../wire.js';

export const DMA_UNMAP_SIZE = 24;
const BITMAP_HDR = 16;

export interface DmaUnmapRequest {
  argsz: number;
  flags: number;
  /** VFIO_DMA_UNMAP_FLAG_ALL: remove every mapping (addr and size are 0). */
  all: boolean;
  addr: bigint;
  size: bigint;
  /** GET_DIRTY_BITMAP only. */
  bitmap?: { pgsize: bigint; size: number };
}

export function decodeDmaUnmapRequest(payload: Buffer, limits: NegotiatedLimits, nfds: number): DmaUnmapRequest {
  minLength(payload, DMA_UNMAP_SIZE, 'DMA_UNMAP');
  noFds(nfds, 'DMA_UNMAP');
  const argsz = payload.readUInt32LE(0);
  const flags = payload.readUInt32LE(4);
  const addr = readU64(payload, 8);
  const size = readU64(payload, 16);
  if (flags & ~(VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP)) {
    throw fail('EINVAL', `DMA_UNMAP: unknown flags 0x${flags.toString(16)}`);
  }
  if (flags === (VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP)) {
    throw fail('EINVAL', 'DMA_UNMAP: ALL with GET_DIRTY_BITMAP');
  }
  const withBitmap = flags === VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
  exactLength(payload, DMA_UNMAP_SIZE + (withBitmap ? BITMAP_HDR : 0), 'DMA_UNMAP');
  argszAtLeast(argsz, DMA_UNMAP_SIZE, 'DMA_UNMAP');
  if (flags === VFIO_DMA_UNMAP_FLAG_ALL) {
    if (addr !== 0n || size !== 0n) throw fail('EINVAL', 'DMA_UNMAP: ALL with non-zero addr or size');
    return { argsz, flags, all: true, addr, size };
  }
  if (size === 0n) throw fail('EINVAL', 'DMA_UNMAP: size 0');
  const page = BigInt(minPageSize(limits));
  if (addr % page !== 0n || size % page !== 0n) {
    throw fail('EINVAL', `DMA_UNMAP: [0x${addr.toString(16)}, +0x${size.toString(16)}) not ${page}-aligned`);
  }
  checkRange64(addr, size, 'DMA_UNMAP');
  const req: DmaUnmapRequest = { argsz, flags, all: false, addr, size };
  if (withBitmap) req.bitmap = decodeBitmap(payload, req, limits);
  return req;
}

function decodeBitmap(payload: Buffer, req: DmaUnmapRequest, limits: NegotiatedLimits): { pgsize: bigint; size: number } {
  const pgsize = readU64(payload, 24);
  const bytes = readU64(payload, 32);
  if (!isPowerOfTwo(pgsize) || pgsize < BigInt(minPageSize(limits))) {
    throw fail('EINVAL', `DMA_UNMAP: bad bitmap pgsize 0x${pgsize.toString(16)}`);
  }
  const pages = (req.size + pgsize - 1n) / pgsize;
  const needed = ((pages + 63n) / 64n) * 8n;
  if (bytes < needed) throw fail('EINVAL', `DMA_UNMAP: bitmap of ${bytes} bytes, need ${needed}`);
  if (bytes > BigInt(limits.maxDataXferSize)) throw fail('EINVAL', `DMA_UNMAP: bitmap of ${bytes} bytes too large`);
  argszAtLeast(req.argsz, DMA_UNMAP_SIZE + BITMAP_HDR + Number(bytes), 'DMA_UNMAP bitmap');
  return { pgsize, size: Number(bytes) };
}

/** The reply: the request echoed (with the bitmap, if one was asked for). */
export function encodeDmaUnmapReply(req: DmaUnmapRequest, bitmap?: Buffer): Buffer | Buffer[] {
  const head = Buffer.alloc(DMA_UNMAP_SIZE + (req.bitmap ? BITMAP_HDR : 0));
  head.writeUInt32LE(req.argsz, 0);
  head.writeUInt32LE(req.flags, 4);
  writeU64(head, 8, req.addr);
  writeU64(head, 16, req.size);
  if (!req.bitmap) return head;
  if (!bitmap || bitmap.length !== req.bitmap.size) {
    throw fail('EIO', `DMA_UNMAP: dirty bitmap must be ${req.bitmap.size} bytes`);
  }
  writeU64(head, 24, req.bitmap.pgsize);
  writeU64(head, 32, req.bitmap.size);
  return [head, bitmap];
}

export interface DmaUnmapArgs {
  addr: bigint;
  size: bigint;
  flags?: number;
  argsz?: number;
  bitmap?: { pgsize: bigint; size: number };
}

/** Client side (test client). */
export function encodeDmaUnmapRequest(a: DmaUnmapArgs): Buffer {
  const b = Buffer.alloc(DMA_UNMAP_SIZE + (a.bitmap ? BITMAP_HDR : 0));
  const bm = a.bitmap ? DMA_UNMAP_SIZE + BITMAP_HDR + a.bitmap.size : DMA_UNMAP_SIZE;
  b.writeUInt32LE(a.argsz ?? bm, 0);
  b.writeUInt32LE(a.flags ?? (a.bitmap ? VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP : 0), 4);
  writeU64(b, 8, a.addr);
  writeU64(b, 16, a.size);
  if (a.bitmap) {
    writeU64(b, 24, a.bitmap.pgsize);
    writeU64(b, 32, a.bitmap.size);
  }
  return b;
}

export interface DmaUnmapReply {
  argsz: number;
  flags: number;
  addr: bigint;
  size: bigint;
  bitmap?: Buffer;
}

/** Client side. */
export function decodeDmaUnmapReply(payload: Buffer): DmaUnmapReply {
  minLength(payload, DMA_UNMAP_SIZE, 'DMA_UNMAP reply');
  const r: DmaUnmapReply = {
    argsz: payload.readUInt32LE(0), flags: payload.readUInt32LE(4),
    addr: readU64(payload, 8), size: readU64(payload, 16),
  };
  if (r.flags === VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) {
    minLength(payload, DMA_UNMAP_SIZE + BITMAP_HDR, 'DMA_UNMAP reply');
    const n = Number(readU64(payload, 32));
    minLength(payload, DMA_UNMAP_SIZE + BITMAP_HDR + n, 'DMA_UNMAP reply');
    r.bitmap = payload.subarray(DMA_UNMAP_SIZE + BITMAP_HDR, DMA_UNMAP_SIZE + BITMAP_HDR + n);
  }
  return r;
}
