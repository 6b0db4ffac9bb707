// The picks the fuzzer makes, drawn from the project's one seeded generator
// (faults/prng.ts). Everything the fuzzer generates comes from one Prng,
// so a seed replays the same run against the same server.
import { SeededRandom } from '../faults/prng.js';

/** A deterministic random source for one fuzz run. */
export class Prng {
  private readonly source: SeededRandom;

  constructor(seed: number) {
    this.source = new SeededRandom(seed >>> 0, 'fuzz');
  }

  /** A uniform u32. */
  u32(): number {
    return this.source.nextU32();
  }

  /** An integer in [0, n) (n >= 1, at most 2^32). */
  below(n: number): number {
    return Math.floor((this.u32() / 0x1_0000_0000) * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.below(hi - lo + 1);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.u32() < p * 0x1_0000_0000;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }

  /** A uniform u64. */
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }

  /** Fills `buf` with random bytes. */
  fill(buf: Uint8Array): void {
    this.source.fill(buf);
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    this.fill(b);
    return b;
  }

  /** A u32 field value: often a boundary (0, 1, 2^31, 2^32-1, ...), else random. */
  u32Field(): number {
    return this.chance(0.6) ? this.pick(U32_EDGES) : this.u32();
  }

  /** A u64 field value, boundaries favoured. */
  u64Field(): bigint {
    return this.chance(0.6) ? this.pick(U64_EDGES) : this.u64();
  }
}

/** u32 values at the edges of what codecs check. */
export const U32_EDGES: readonly number[] = [
  0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 63, 64, 255, 256, 4095, 4096, 4097, 0x7fff, 0x8000, 0xffff, 0x10000,
  0x100000, 0x100001, 0x7fffffff, 0x80000000, 0x80000001, 0xfffffffe, 0xffffffff,
];

/** u64 values at the edges: page multiples, 2^53, sign bits, all ones. */
export const U64_EDGES: readonly bigint[] = [
  0n, 1n, 0xfffn, 0x1000n, 0x1001n, 0x100000n, 0xffffffffn, 0x100000000n, 0x1fffffffffffffn, 0x20000000000000n,
  0x7fffffffffffffffn, 0x8000000000000000n, 0xfffffffffffff000n, 0xffffffffffffffffn,
];
