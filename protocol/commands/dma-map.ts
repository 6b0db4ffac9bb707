// VFIO_USER_DMA_MAP (client → server): guest memory the device may access.
//
// Request (32 bytes, struct vfio_iommu_type1_dma_map):
//   off size field
//    0   4   argsz    >= 32 (QEMU: 32)
//    4   4   flags    VFIO_DMA_MAP_FLAG_READ | _WRITE (at least one)
//    8   8   offset   file offset of the region in the fd; 0 without fd
//   16   8   addr     IOVA (DMA address)
//   24   8   size
// fds: 0 (no mmap: DMA_READ/WRITE messages) or 1 (mmap-able memory).
// Reply: no payload.
import { VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE } from '../constants.js';
import { fail } from '../errno.js';
import { minPageSize, type NegotiatedLimits } from '../limits.js';
import { argszAtLeast, checkRange64, exactLength, readU64, writeU64 } from '../wire.js';

export const DMA_MAP_SIZE = 32;
const KNOWN_FLAGS = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;

export interface DmaMapRequest {
  argsz: number;
  flags: number;
  readable: boolean;
  writable: boolean;
  /** File offset in the fd (0 when there is none). */
  offset: bigint;
  addr: bigint;
  size: bigint;
  /** Index of the memory fd among the message's fds, or null (no fd). */
  fdIndex: number | null;
}

export function decodeDmaMapRequest(payload: Buffer, limits: NegotiatedLimits, nfds: number): DmaMapRequest {
  exactLength(payload, DMA_MAP_SIZE, 'DMA_MAP');
  const argsz = payload.readUInt32LE(0);
  const flags = payload.readUInt32LE(4);
  const offset = readU64(payload, 8);
  const addr = readU64(payload, 16);
  const size = readU64(payload, 24);
  argszAtLeast(argsz, DMA_MAP_SIZE, 'DMA_MAP');
  if (flags & ~KNOWN_FLAGS) throw fail('EINVAL', `DMA_MAP: unknown flags 0x${flags.toString(16)}`);
  if ((flags & KNOWN_FLAGS) === 0) throw fail('EINVAL', 'DMA_MAP: neither READ nor WRITE');
  if (nfds > 1) throw fail('EINVAL', `DMA_MAP: ${nfds} fds, takes 0 or 1`);
  if (size === 0n) throw fail('EINVAL', 'DMA_MAP: size 0');
  const page = BigInt(minPageSize(limits));
  if (addr % page !== 0n || size % page !== 0n) {
    throw fail('EINVAL', `DMA_MAP: [0x${addr.toString(16)}, +0x${size.toString(16)}) not ${page}-aligned`);
  }
  checkRange64(addr, size, 'DMA_MAP addr');
  if (nfds === 1) {
    if (offset % page !== 0n) throw fail('EINVAL', `DMA_MAP: file offset 0x${offset.toString(16)} not page-aligned`);
    checkRange64(offset, size, 'DMA_MAP offset');
  } else if (offset !== 0n) {
    throw fail('EINVAL', 'DMA_MAP: non-zero offset without an fd');
  }
  return {
    argsz, flags,
    readable: (flags & VFIO_DMA_MAP_FLAG_READ) !== 0,
    writable: (flags & VFIO_DMA_MAP_FLAG_WRITE) !== 0,
    offset, addr, size,
    fdIndex: nfds === 1 ? 0 : null,
  };
}

export interface DmaMapArgs {
  addr: bigint;
  size: bigint;
  /** Default 0. */
  offset?: bigint;
  /** Default READ | WRITE. */
  flags?: number;
  /** Default 32. */
  argsz?: number;
}

/** Client side (test client). Send the memfd, if any, with the message. */
export function encodeDmaMapRequest(a: DmaMapArgs): Buffer {
  const b = Buffer.alloc(DMA_MAP_SIZE);
  b.writeUInt32LE(a.argsz ?? DMA_MAP_SIZE, 0);
  b.writeUInt32LE(a.flags ?? KNOWN_FLAGS, 4);
  writeU64(b, 8, a.offset ?? 0n);
  writeU64(b, 16, a.addr);
  writeU64(b, 24, a.size);
  return b;
}
