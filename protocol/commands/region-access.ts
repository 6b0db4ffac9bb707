// VFIO_USER_REGION_READ / VFIO_USER_REGION_WRITE (client → server).
//
// Request and reply share one layout (struct vfio_user_region_access):
//   off size field
//    0   8   offset  into the region
//    8   4   region  region index
//   12   4   count   bytes, <= max_data_xfer_size
//   16   n   data    READ reply and WRITE request only (n = count)
// A READ request is exactly 16 bytes; a WRITE request exactly 16 + count.
// The WRITE reply is the 16 bytes (count = bytes written).
// Offsets are JS numbers: a u64 above Number.MAX_SAFE_INTEGER cannot be
// inside a region, so it is EINVAL here. The device checks offset + count
// against the region's size.
import { fail } from '../errno.js';
import type { NegotiatedLimits } from '../limits.js';
import { SAFE_HI, exactLength, minLength, noFds, readSafeU64, writeU64 } from '../wire.js';
import { HEADER_SIZE, putU32At, u32At, writeHeaderFields } from '../header.js';
import { VFIO_USER_F_TYPE_REPLY } from '../constants.js';

export const REGION_ACCESS_SIZE = 16;

export interface RegionAccess {
  offset: number;
  region: number;
  count: number;
}

export interface RegionWriteRequest extends RegionAccess {
  /** The bytes to write: a view into the payload, valid during dispatch. */
  data: Buffer;
}

function decodeAccess(payload: Buffer, limits: NegotiatedLimits, nfds: number, what: string): RegionAccess {
  minLength(payload, REGION_ACCESS_SIZE, what);
  noFds(nfds, what);
  const offset = readSafeU64(payload, 0, `${what} offset`);
  const region = payload.readUInt32LE(8);
  const count = payload.readUInt32LE(12);
  if (count > limits.maxDataXferSize) {
    throw fail('EINVAL', `${what}: count ${count} > max_data_xfer_size ${limits.maxDataXferSize}`);
  }
  if (offset + count > Number.MAX_SAFE_INTEGER) throw fail('EINVAL', `${what}: offset + count out of range`);
  return { offset, region, count };
}

export function decodeRegionReadRequest(payload: Buffer, limits: NegotiatedLimits, nfds: number): RegionAccess {
  exactLength(payload, REGION_ACCESS_SIZE, 'REGION_READ');
  return decodeAccess(payload, limits, nfds, 'REGION_READ');
}

export function decodeRegionWriteRequest(payload: Buffer, limits: NegotiatedLimits, nfds: number): RegionWriteRequest {
  const a = decodeAccess(payload, limits, nfds, 'REGION_WRITE');
  exactLength(payload, REGION_ACCESS_SIZE + a.count, 'REGION_WRITE');
  return { offset: a.offset, region: a.region, count: a.count, data: payload.subarray(REGION_ACCESS_SIZE) };
}

function accessHeader(offset: number, region: number, count: number): Buffer {
  const b = Buffer.alloc(REGION_ACCESS_SIZE);
  writeU64(b, 0, offset);
  b.writeUInt32LE(region, 8);
  b.writeUInt32LE(count, 12);
  return b;
}

/**
 * The READ reply as [16-byte header, data] (the data is not copied). `data`
 * may be shorter than asked (count says how much), never longer.
 */
export function encodeRegionReadReply(req: RegionAccess, data: Buffer): Buffer[] {
  if (data.length > req.count) throw fail('EIO', `REGION_READ: device returned ${data.length} bytes for ${req.count}`);
  return [accessHeader(req.offset, req.region, data.length), data];
}

export function encodeRegionWriteReply(req: RegionAccess, written = req.count): Buffer {
  return accessHeader(req.offset, req.region, written);
}

// ---- the server's hot path: no allocation ----------------------------------
// REGION_READ/WRITE are most of a live guest's traffic (every MMIO access and
// doorbell), so the session serves them straight from its receive buffer into
// its send buffer. These two functions are that path's codec; they accept only
// what the decoders above accept, and leave every error to them.

/**
 * Reads the access fields of a REGION_READ (`write` false) or REGION_WRITE
 * payload of `length` bytes at `at` into `out`. True only when the decoders
 * above would accept it (no fds assumed); false means "take the general path",
 * which then reports the exact error.
 */
export function peekRegionAccess(
  buf: Uint8Array, at: number, length: number, write: boolean, limits: NegotiatedLimits, out: RegionAccess,
): boolean {
  if (length < REGION_ACCESS_SIZE) return false;
  const hi = u32At(buf, at + 4);
  if (hi > SAFE_HI) return false;
  const offset = hi * 0x1_0000_0000 + u32At(buf, at);
  const count = u32At(buf, at + 12);
  if (count > limits.maxDataXferSize || offset + count > Number.MAX_SAFE_INTEGER) return false;
  if (length !== REGION_ACCESS_SIZE + (write ? count : 0)) return false;
  out.offset = offset;
  out.region = u32At(buf, at + 8);
  out.count = count;
  return true;
}

/**
 * Writes the header and access fields of a successful REGION_READ/WRITE reply
 * at `at`; a READ reply's `count` data bytes follow at at + 32 (the caller
 * puts them there). Returns the reply's whole size.
 */
export function writeRegionAccessReply(
  buf: Uint8Array & Buffer, at: number, msgId: number, command: number, a: RegionAccess, dataBytes: number,
): number {
  const size = HEADER_SIZE + REGION_ACCESS_SIZE + dataBytes;
  writeHeaderFields(buf, at, msgId, command, size, VFIO_USER_F_TYPE_REPLY, 0);
  const p = at + HEADER_SIZE;
  putU32At(buf, p, a.offset % 0x1_0000_0000);
  putU32At(buf, p + 4, Math.floor(a.offset / 0x1_0000_0000));
  putU32At(buf, p + 8, a.region);
  putU32At(buf, p + 12, a.count);
  return size;
}

/** Client side (test client). */
export function encodeRegionReadRequest(a: RegionAccess): Buffer {
  return accessHeader(a.offset, a.region, a.count);
}

/** Client side. `count` defaults to data.length (set it to forge a mismatch). */
export function encodeRegionWriteRequest(a: { offset: number; region: number; data: Uint8Array; count?: number }): Buffer {
  const b = Buffer.alloc(REGION_ACCESS_SIZE + a.data.length);
  writeU64(b, 0, a.offset);
  b.writeUInt32LE(a.region, 8);
  b.writeUInt32LE(a.count ?? a.data.length, 12);
  b.set(a.data, REGION_ACCESS_SIZE);
  return b;
}

/** Client side: as QEMU, more data than asked is E2BIG. */
export function decodeRegionReadReply(payload: Buffer, requested?: number): RegionWriteRequest {
  minLength(payload, REGION_ACCESS_SIZE, 'REGION_READ reply');
  const count = payload.readUInt32LE(12);
  if (requested !== undefined && count > requested) throw fail('E2BIG', `REGION_READ reply: ${count} > ${requested} bytes`);
  minLength(payload, REGION_ACCESS_SIZE + count, 'REGION_READ reply');
  return {
    offset: readSafeU64(payload, 0, 'REGION_READ reply offset'), region: payload.readUInt32LE(8), count,
    data: payload.subarray(REGION_ACCESS_SIZE, REGION_ACCESS_SIZE + count),
  };
}

/** Client side. */
export function decodeRegionWriteReply(payload: Buffer): RegionAccess {
  minLength(payload, REGION_ACCESS_SIZE, 'REGION_WRITE reply');
  return { offset: readSafeU64(payload, 0, 'REGION_WRITE reply offset'), region: payload.readUInt32LE(8), count: payload.readUInt32LE(12) };
}
