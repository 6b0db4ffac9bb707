// VFIO_USER_DEVICE_GET_REGION_IO_FDS (client → server): ioeventfds or
// ioregionfds for sub-regions of a region. QEMU 11.1 never sends it.
//
// Request (16 bytes):
//   off size field
//    0   4   argsz   max reply payload, >= 16 and <= max_data_xfer_size
//    4   4   flags   0
//    8   4   index   region index
//   12   4   count   0
// Reply: the same 16 bytes (argsz = 16 + 40 × count, flags 0, count =
// sub-regions) then, if argsz allowed, count entries of 40 bytes:
//    0   8   offset     in the region
//    8   8   size       (0: any access size)
//   16   4   fd_index   into the reply's fds (fds may be shared)
//   20   4   type       VFIO_USER_IO_FD_TYPE_IOEVENTFD | _IOREGIONFD
//   24   4   flags      KVM_IOEVENTFD_FLAG_* / KVM_IOREGION_*
//   28   4   padding
//   32   8   datamatch (ioeventfd) | user_data (ioregionfd)
// The spec text says entry i is at i × ((argsz - 32) / count); the header is
// 16 bytes (libvfio-user's struct), so we lay entries out from offset 16.
import { fail } from '../errno.js';
import type { NegotiatedLimits } from '../limits.js';
import { exactLength, minLength, noFds, readU64, writeU64 } from '../wire.js';

export const REGION_IO_FDS_SIZE = 16;
export const SUB_REGION_SIZE = 40;

export interface RegionIoFdsRequest {
  argsz: number;
  index: number;
}

export interface SubRegionIoFd {
  offset: bigint | number;
  size: bigint | number;
  fdIndex: number;
  type: number;
  flags: number;
  /** datamatch (ioeventfd) or user_data (ioregionfd). */
  data: bigint | number;
}

export function decodeRegionIoFdsRequest(payload: Buffer, limits: NegotiatedLimits, nfds: number): RegionIoFdsRequest {
  exactLength(payload, REGION_IO_FDS_SIZE, 'DEVICE_GET_REGION_IO_FDS');
  noFds(nfds, 'DEVICE_GET_REGION_IO_FDS');
  const argsz = payload.readUInt32LE(0);
  if (payload.readUInt32LE(4) !== 0 || payload.readUInt32LE(12) !== 0) {
    throw fail('EINVAL', 'DEVICE_GET_REGION_IO_FDS: flags and count must be 0');
  }
  if (argsz < REGION_IO_FDS_SIZE || argsz > limits.maxDataXferSize) {
    throw fail('EINVAL', `DEVICE_GET_REGION_IO_FDS: argsz ${argsz} out of range`);
  }
  return { argsz, index: payload.readUInt32LE(8) };
}

/** Bytes of the full reply with `count` sub-regions. */
export function regionIoFdsReplySize(count: number): number {
  return REGION_IO_FDS_SIZE + SUB_REGION_SIZE * count;
}

/**
 * The reply payload. The sub-regions (and so the fds) are included only if
 * `regionIoFdsReplySize(subRegions.length) <= req.argsz`; otherwise only
 * the 16-byte header goes, and the session sends no fds.
 */
export function encodeRegionIoFdsReply(req: RegionIoFdsRequest, subRegions: readonly SubRegionIoFd[]): Buffer {
  const needed = regionIoFdsReplySize(subRegions.length);
  const full = req.argsz >= needed;
  const b = Buffer.alloc(full ? needed : REGION_IO_FDS_SIZE);
  b.writeUInt32LE(needed, 0);
  b.writeUInt32LE(req.index, 8);
  b.writeUInt32LE(subRegions.length, 12);
  if (!full) return b;
  subRegions.forEach((s, i) => {
    const at = REGION_IO_FDS_SIZE + i * SUB_REGION_SIZE;
    writeU64(b, at, s.offset);
    writeU64(b, at + 8, s.size);
    b.writeUInt32LE(s.fdIndex, at + 16);
    b.writeUInt32LE(s.type, at + 20);
    b.writeUInt32LE(s.flags, at + 24);
    writeU64(b, at + 32, s.data);
  });
  return b;
}

/** Client side (test client). */
export function encodeRegionIoFdsRequest(index: number, argsz: number): Buffer {
  const b = Buffer.alloc(REGION_IO_FDS_SIZE);
  b.writeUInt32LE(argsz, 0);
  b.writeUInt32LE(index, 8);
  return b;
}

export interface RegionIoFdsReply {
  argsz: number;
  flags: number;
  index: number;
  count: number;
  /** Empty when the reply was cut to the header. */
  subRegions: Array<{ offset: bigint; size: bigint; fdIndex: number; type: number; flags: number; data: bigint }>;
}

/** Client side. */
export function decodeRegionIoFdsReply(payload: Buffer): RegionIoFdsReply {
  minLength(payload, REGION_IO_FDS_SIZE, 'DEVICE_GET_REGION_IO_FDS reply');
  const r: RegionIoFdsReply = {
    argsz: payload.readUInt32LE(0), flags: payload.readUInt32LE(4),
    index: payload.readUInt32LE(8), count: payload.readUInt32LE(12), subRegions: [],
  };
  if (payload.length === REGION_IO_FDS_SIZE) return r;
  exactLength(payload, regionIoFdsReplySize(r.count), 'DEVICE_GET_REGION_IO_FDS reply');
  for (let i = 0; i < r.count; i++) {
    const at = REGION_IO_FDS_SIZE + i * SUB_REGION_SIZE;
    r.subRegions.push({
      offset: readU64(payload, at), size: readU64(payload, at + 8),
      fdIndex: payload.readUInt32LE(at + 16), type: payload.readUInt32LE(at + 20),
      flags: payload.readUInt32LE(at + 24), data: readU64(payload, at + 32),
    });
  }
  return r;
}
