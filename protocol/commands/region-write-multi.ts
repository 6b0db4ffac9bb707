// VFIO_USER_REGION_WRITE_MULTI (client → server): coalesced small posted
// writes (QEMU sends it with NO_REPLY when its send queue backs up, only if
// "write_multiple" was negotiated).
//
// Request (8 + 24 × wr_cnt bytes, QEMU VFIOUserWRMulti):
//   off size field
//    0   8   wr_cnt   1 .. VFIO_USER_MULTI_MAX (200)
//    8  24×n wrs      { 0 8 offset, 8 4 region, 12 4 count (1..8), 16 8 data }
// Reply (8 bytes): wr_cnt = writes done.
import { VFIO_USER_MULTI_DATA, VFIO_USER_MULTI_MAX } from '../constants.js';
import { fail } from '../errno.js';
import type { NegotiatedLimits } from '../limits.js';
import { exactLength, minLength, noFds, readSafeU64, readU64, writeU64 } from '../wire.js';
import type { RegionWriteRequest } from './region-access.js';

const MULTI_FIXED = 8;
export const MULTI_ENTRY_SIZE = 24;

export function decodeRegionWriteMultiRequest(payload: Buffer, limits: NegotiatedLimits, nfds: number): RegionWriteRequest[] {
  if (!limits.writeMultiple) throw fail('EINVAL', 'REGION_WRITE_MULTI: write_multiple was not negotiated');
  minLength(payload, MULTI_FIXED, 'REGION_WRITE_MULTI');
  noFds(nfds, 'REGION_WRITE_MULTI');
  const n = readU64(payload, 0);
  if (n === 0n || n > BigInt(VFIO_USER_MULTI_MAX)) throw fail('EINVAL', `REGION_WRITE_MULTI: wr_cnt ${n}`);
  const count = Number(n);
  exactLength(payload, MULTI_FIXED + MULTI_ENTRY_SIZE * count, 'REGION_WRITE_MULTI');
  const writes: RegionWriteRequest[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const at = MULTI_FIXED + i * MULTI_ENTRY_SIZE;
    const offset = readSafeU64(payload, at, `REGION_WRITE_MULTI[${i}] offset`);
    const len = payload.readUInt32LE(at + 12);
    if (len === 0 || len > VFIO_USER_MULTI_DATA) throw fail('EINVAL', `REGION_WRITE_MULTI[${i}]: count ${len}`);
    if (offset + len > Number.MAX_SAFE_INTEGER) throw fail('EINVAL', `REGION_WRITE_MULTI[${i}]: offset out of range`);
    writes[i] = { offset, region: payload.readUInt32LE(at + 8), count: len, data: payload.subarray(at + 16, at + 16 + len) };
  }
  return writes;
}

export function encodeRegionWriteMultiReply(done: number): Buffer {
  const b = Buffer.alloc(MULTI_FIXED);
  writeU64(b, 0, done);
  return b;
}

/** Client side (test client). */
export function encodeRegionWriteMultiRequest(writes: ReadonlyArray<{ offset: number; region: number; data: Uint8Array }>): Buffer {
  const b = Buffer.alloc(MULTI_FIXED + MULTI_ENTRY_SIZE * writes.length);
  writeU64(b, 0, writes.length);
  writes.forEach((w, i) => {
    const at = MULTI_FIXED + i * MULTI_ENTRY_SIZE;
    writeU64(b, at, w.offset);
    b.writeUInt32LE(w.region, at + 8);
    b.writeUInt32LE(w.data.length, at + 12);
    b.set(w.data.subarray(0, VFIO_USER_MULTI_DATA), at + 16);
  });
  return b;
}

/** Client side: writes done. */
export function decodeRegionWriteMultiReply(payload: Buffer): number {
  exactLength(payload, MULTI_FIXED, 'REGION_WRITE_MULTI reply');
  return Number(readU64(payload, 0));
}
