// 64-bit IOVA helpers. The API takes bigint (or safe-integer numbers); the
// model keeps area boundaries as numbers, which is exact because every area
// boundary is a multiple of 4096 below or equal to 2^64 (such values need at
// most 52 significant bits, a double has 53).
import { fail } from '../protocol/errno.js';
import { U64_MAX } from '../protocol/wire.js';

export const PAGE_SIZE = 4096;
/** 2^64 as a number (exact): the exclusive end of the IOVA space. */
export const TWO_POW_64 = 2 ** 64;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** Longest u64 text parsed (room for leading zeros): BigInt of a long string costs time quadratic in its length. */
const U64_TEXT_MAX = 66;

/** Anything the API accepts as a u64 (decimal or 0x strings come from CLIs). */
export type U64Like = bigint | number | string;

/** Parse a u64 argument; EINVAL when it is not an integer in [0, 2^64-1]. */
export function u64(x: unknown, name = 'value'): bigint {
  let v: bigint;
  if (typeof x === 'bigint') v = x;
  else if (typeof x === 'number') {
    if (!Number.isSafeInteger(x)) throw fail('EINVAL', `${name} must be a safe integer or a bigint`);
    v = BigInt(x);
  } else if (typeof x === 'string' && x.length <= U64_TEXT_MAX && /^(0x[0-9a-f]+|[0-9]+)$/i.test(x.trim())) v = BigInt(x.trim());
  else throw fail('EINVAL', `${name} must be a u64`);
  if (v < 0n || v > U64_MAX) throw fail('EINVAL', `${name} out of u64 range`);
  return v;
}

/** A u64 for results: a number when it is a safe integer, a bigint above. */
export function u64Out(v: bigint | number): number | bigint {
  if (typeof v === 'number') return Number.isSafeInteger(v) ? v : BigInt(v);
  return v <= MAX_SAFE ? Number(v) : v;
}

/** bigint → number for values known to be exact (page multiples, or safe). */
export function exact(v: bigint): number {
  return Number(v);
}

export function isPow2(n: number): boolean {
  return n > 0 && Number.isInteger(n) && Number.isInteger(Math.log2(n));
}

/** Smallest power of two >= v (v > 0). */
export function roundupPow2(v: bigint): bigint {
  let p = 1n;
  while (p < v) p <<= 1n;
  return p;
}

/** Lowest set bit of v (v > 0). */
export function lowBit(v: bigint): bigint {
  return v & -v;
}

export function alignUp(v: bigint, a: bigint): bigint {
  return (v + a - 1n) & ~(a - 1n);
}
