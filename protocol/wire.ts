// Small helpers shared by the codecs: length and fd checks that throw the
// errno a server returns, and u64 handling (U64_MAX is shared with iommu/).
import { fail } from './errno.js';

export const U64_LIMIT = 1n << 64n; // one past the largest u64
export const U64_MAX = U64_LIMIT - 1n;
export const SAFE_HI = 0x1fffff; // high u32 of Number.MAX_SAFE_INTEGER

/** `payload` must be exactly `n` bytes (fixed-layout requests). */
export function exactLength(payload: Buffer, n: number, what: string): void {
  if (payload.length !== n) {
    throw fail('EINVAL', `${what}: payload is ${payload.length} bytes, expected ${n}`);
  }
}

/** `payload` must hold at least the `n`-byte fixed part. */
export function minLength(payload: Buffer, n: number, what: string): void {
  if (payload.length < n) {
    throw fail('EINVAL', `${what}: payload is ${payload.length} bytes, need at least ${n}`);
  }
}

/** The command takes no fds. */
export function noFds(nfds: number, what: string): void {
  if (nfds !== 0) throw fail('EINVAL', `${what}: takes no fds, got ${nfds}`);
}

/** argsz (the client's reply buffer or request size) must be >= `min`. */
export function argszAtLeast(argsz: number, min: number, what: string): void {
  if (argsz < min) throw fail('EINVAL', `${what}: argsz ${argsz} < ${min}`);
}

export function readU64(buf: Buffer, off: number): bigint {
  return buf.readBigUInt64LE(off);
}

/**
 * A u64 that must fit a JS number (region offsets): anything above
 * Number.MAX_SAFE_INTEGER cannot be inside any region → EINVAL.
 */
export function readSafeU64(buf: Buffer, off: number, what: string): number {
  const lo = buf.readUInt32LE(off);
  const hi = buf.readUInt32LE(off + 4);
  if (hi > SAFE_HI) throw fail('EINVAL', `${what}: 0x${buf.readBigUInt64LE(off).toString(16)} out of range`);
  return hi * 0x1_0000_0000 + lo;
}

export function writeU64(buf: Buffer, off: number, v: bigint | number): void {
  buf.writeBigUInt64LE(BigInt(v), off);
}

/** [start, start+size) must not run past 2^64 (size 0 is fine here). */
export function checkRange64(start: bigint, size: bigint, what: string): void {
  if (start + size > U64_LIMIT) {
    throw fail('EINVAL', `${what}: 0x${start.toString(16)} + 0x${size.toString(16)} overflows u64`);
  }
}

export function isPowerOfTwo(v: bigint): boolean {
  return v > 0n && (v & (v - 1n)) === 0n;
}
