// VFIO_USER_DEVICE_GET_REGION_INFO (client → server): one region.
//
// Request and reply (32 bytes, struct vfio_region_info):
//   off size field
//    0   4   argsz       request: max reply payload (>= 32); reply: bytes
//                        needed for the full reply (32 + capabilities)
//    4   4   flags       VFIO_REGION_INFO_FLAG_READ|WRITE|MMAP|CAPS (request: 0)
//    8   4   index       region index
//   12   4   cap_offset  first capability, from the payload start (0: none)
//   16   8   size        (request: 0)
//   24   8   offset      mmap offset in the region's fd (request: 0)
// Capability chain (after the 32 bytes), each one starting with
//   0 2 id, 2 2 version, 4 4 next (offset of the next cap from the payload
//   start; 0 ends the chain)
// VFIO_REGION_INFO_CAP_SPARSE_MMAP (version 1), 16 + 16 × nr_areas bytes:
//   8 4 nr_areas, 12 4 reserved, 16.. areas { 0 8 offset, 8 8 size }
// VFIO_REGION_INFO_CAP_TYPE (version 1), 16 bytes: 8 4 type, 12 4 subtype
// If the capabilities do not fit argsz, the reply stops after 32 bytes,
// without the CAPS flag, with argsz telling the size needed (QEMU retries).
// An MMAP region's whole reply carries its fd, a cut one none (the client
// asks again); QEMU accepts at most ONE fd here (libvfio-user sends one per
// sparse area, which QEMU would refuse).
import { VFIO_REGION_INFO_CAP_SPARSE_MMAP, VFIO_REGION_INFO_CAP_TYPE, VFIO_REGION_INFO_FLAG_CAPS } from '../constants.js';
import { fail } from '../errno.js';
import type { NegotiatedLimits } from '../limits.js';
import { argszAtLeast, exactLength, minLength, noFds, readU64, writeU64 } from '../wire.js';

export const REGION_INFO_SIZE = 32;
const CAP_HDR = 8;
const SPARSE_FIXED = 16;
const SPARSE_AREA = 16;
const CAP_TYPE_SIZE = 16;
/** A chain longer than this is treated as a loop. */
const MAX_CAPS = 64;

export interface RegionInfoRequest {
  argsz: number;
  index: number;
}

export interface SparseArea { offset: bigint | number; size: bigint | number }

export interface RegionInfo {
  index: number;
  /** READ/WRITE/MMAP; CAPS is set by the encoder when capabilities fit. */
  flags: number;
  size: bigint | number;
  /** mmap offset in the region's fd. */
  offset: bigint | number;
  /** Sparse mmap areas, relative to `offset`. */
  sparseAreas?: readonly SparseArea[];
  /** VFIO_REGION_INFO_CAP_TYPE (device-specific regions). */
  capType?: { type: number; subtype: number };
}

export function decodeRegionInfoRequest(payload: Buffer, _limits: NegotiatedLimits, nfds: number): RegionInfoRequest {
  exactLength(payload, REGION_INFO_SIZE, 'DEVICE_GET_REGION_INFO');
  noFds(nfds, 'DEVICE_GET_REGION_INFO');
  const argsz = payload.readUInt32LE(0);
  argszAtLeast(argsz, REGION_INFO_SIZE, 'DEVICE_GET_REGION_INFO');
  if (payload.readUInt32LE(4) !== 0 || payload.readUInt32LE(12) !== 0 ||
      readU64(payload, 16) !== 0n || readU64(payload, 24) !== 0n) {
    throw fail('EINVAL', 'DEVICE_GET_REGION_INFO: only argsz and index may be set');
  }
  return { argsz, index: payload.readUInt32LE(8) };
}

/** Bytes of the full reply for `info` (what the reply's argsz says). */
export function regionInfoReplySize(info: RegionInfo): number {
  let n = REGION_INFO_SIZE;
  if (info.sparseAreas) n += SPARSE_FIXED + SPARSE_AREA * info.sparseAreas.length;
  if (info.capType) n += CAP_TYPE_SIZE;
  return n;
}

/**
 * The reply payload, cut to the client's argsz: capabilities only when they
 * all fit (then flags |= CAPS and cap_offset = 32).
 */
export function encodeRegionInfoReply(req: RegionInfoRequest, info: RegionInfo): Buffer {
  const needed = regionInfoReplySize(info);
  const withCaps = needed > REGION_INFO_SIZE && req.argsz >= needed;
  const b = Buffer.alloc(withCaps ? needed : REGION_INFO_SIZE);
  b.writeUInt32LE(needed, 0);
  b.writeUInt32LE((info.flags & ~VFIO_REGION_INFO_FLAG_CAPS) | (withCaps ? VFIO_REGION_INFO_FLAG_CAPS : 0), 4);
  b.writeUInt32LE(info.index, 8);
  b.writeUInt32LE(withCaps ? REGION_INFO_SIZE : 0, 12);
  writeU64(b, 16, info.size);
  writeU64(b, 24, info.offset);
  if (!withCaps) return b;
  // Each capability: its size and a writer given its offset and `next`.
  const caps: Array<{ size: number; write: (at: number, next: number) => void }> = [];
  const areas = info.sparseAreas;
  if (areas) {
    caps.push({ size: SPARSE_FIXED + SPARSE_AREA * areas.length, write: (at, next) => {
      writeCapHeader(b, at, VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, next);
      b.writeUInt32LE(areas.length, at + 8);
      areas.forEach((a, i) => {
        writeU64(b, at + SPARSE_FIXED + i * SPARSE_AREA, a.offset);
        writeU64(b, at + SPARSE_FIXED + i * SPARSE_AREA + 8, a.size);
      });
    } });
  }
  const t = info.capType;
  if (t) {
    caps.push({ size: CAP_TYPE_SIZE, write: (at, next) => {
      writeCapHeader(b, at, VFIO_REGION_INFO_CAP_TYPE, 1, next);
      b.writeUInt32LE(t.type, at + 8);
      b.writeUInt32LE(t.subtype, at + 12);
    } });
  }
  let off = REGION_INFO_SIZE;
  caps.forEach((cap, i) => {
    cap.write(off, i + 1 < caps.length ? off + cap.size : 0);
    off += cap.size;
  });
  return b;
}

function writeCapHeader(b: Buffer, at: number, id: number, version: number, next: number): void {
  b.writeUInt16LE(id, at);
  b.writeUInt16LE(version, at + 2);
  b.writeUInt32LE(next, at + 4);
}

/** Client side (test client). */
export function encodeRegionInfoRequest(index: number, argsz = REGION_INFO_SIZE): Buffer {
  const b = Buffer.alloc(REGION_INFO_SIZE);
  b.writeUInt32LE(argsz, 0);
  b.writeUInt32LE(index, 8);
  return b;
}

export interface RegionCap { id: number; version: number; offset: number; body: Buffer }

export interface RegionInfoReply {
  argsz: number;
  flags: number;
  index: number;
  capOffset: number;
  size: bigint;
  offset: bigint;
  caps: RegionCap[];
  sparseAreas?: Array<{ offset: bigint; size: bigint }>;
  capType?: { type: number; subtype: number };
}

/** Client side: the reply with its capability chain walked and checked. */
export function decodeRegionInfoReply(payload: Buffer): RegionInfoReply {
  minLength(payload, REGION_INFO_SIZE, 'DEVICE_GET_REGION_INFO reply');
  const r: RegionInfoReply = {
    argsz: payload.readUInt32LE(0), flags: payload.readUInt32LE(4),
    index: payload.readUInt32LE(8), capOffset: payload.readUInt32LE(12),
    size: readU64(payload, 16), offset: readU64(payload, 24), caps: [],
  };
  if (!(r.flags & VFIO_REGION_INFO_FLAG_CAPS)) return r;
  let at = r.capOffset;
  if (at < REGION_INFO_SIZE) throw fail('EINVAL', `region info: cap_offset ${at} inside the fixed part`);
  while (at !== 0) {
    if (r.caps.length >= MAX_CAPS) throw fail('EINVAL', 'region info: capability chain too long');
    if (at + CAP_HDR > payload.length) throw fail('EINVAL', `region info: capability at ${at} past the end`);
    const id = payload.readUInt16LE(at);
    const version = payload.readUInt16LE(at + 2);
    const next = payload.readUInt32LE(at + 4);
    if (next !== 0 && next < at + CAP_HDR) throw fail('EINVAL', `region info: capability next ${next} goes backwards`);
    const end = next !== 0 ? next : payload.length;
    if (end > payload.length) throw fail('EINVAL', `region info: capability next ${next} past the end`);
    const body = payload.subarray(at, end);
    r.caps.push({ id, version, offset: at, body });
    if (id === VFIO_REGION_INFO_CAP_SPARSE_MMAP) r.sparseAreas = decodeSparse(body);
    if (id === VFIO_REGION_INFO_CAP_TYPE) {
      if (body.length < CAP_TYPE_SIZE) throw fail('EINVAL', 'region info: short type capability');
      r.capType = { type: body.readUInt32LE(8), subtype: body.readUInt32LE(12) };
    }
    at = next;
  }
  return r;
}

function decodeSparse(cap: Buffer): Array<{ offset: bigint; size: bigint }> {
  if (cap.length < SPARSE_FIXED) throw fail('EINVAL', 'region info: short sparse mmap capability');
  const n = cap.readUInt32LE(8);
  if (cap.length < SPARSE_FIXED + n * SPARSE_AREA) throw fail('EINVAL', `region info: ${n} sparse areas do not fit`);
  const areas: Array<{ offset: bigint; size: bigint }> = [];
  for (let i = 0; i < n; i++) {
    const at = SPARSE_FIXED + i * SPARSE_AREA;
    areas.push({ offset: readU64(cap, at), size: readU64(cap, at + 8) });
  }
  return areas;
}
