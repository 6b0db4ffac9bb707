// The one seeded pseudo-random generator of the project: xoshiro128**
// seeded through splitmix32. Deterministic mode draws virtio-rng's bytes
// from it, and fault rules draw their probabilities from it, so a run is
// reproduced by its seeds alone. Not for secrets.

/** A seed: an integer in [0, 2^53). */
export function checkSeed(seed: unknown, what: string): number {
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`${what} must be an integer in [0, 2^53), got ${JSON.stringify(seed)}`);
  }
  return seed;
}

/** splitmix32 step: spreads a seed's bits over a state word. */
function mix(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  let z = x;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** A stream of pseudo-random numbers fixed by its seed (and label). */
export class SeededRandom {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  /** Bytes of the last word fill() did not use yet (low byte first). */
  private spare = 0;
  private spareBytes = 0;

  /** `label` separates streams of one seed (e.g. one per device). */
  constructor(seed: number, label = '') {
    checkSeed(seed, 'seed');
    let h = mix((seed % 0x100000000) ^ mix(Math.floor(seed / 0x100000000)));
    for (let i = 0; i < label.length; i++) h = mix(h ^ label.charCodeAt(i));
    this.a = mix(h);
    this.b = mix(this.a);
    this.c = mix(this.b);
    this.d = mix(this.c) | 1; // never the all-zero state
  }

  /** The next 32 random bits as an unsigned integer. */
  nextU32(): number {
    const r = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return r;
  }

  /** A number in [0, 1). */
  nextFloat(): number {
    return this.nextU32() / 0x100000000;
  }

  /**
   * Fills `out` with the next random bytes. The bytes form one stream
   * however it is cut: fill(3) then fill(5) gives what fill(8) would.
   */
  fill(out: Uint8Array): void {
    let i = 0;
    while (i < out.length && this.spareBytes > 0) {
      out[i++] = this.spare;
      this.spare >>>= 8;
      this.spareBytes--;
    }
    for (; i + 4 <= out.length; i += 4) {
      const r = this.nextU32();
      out[i] = r;
      out[i + 1] = r >>> 8;
      out[i + 2] = r >>> 16;
      out[i + 3] = r >>> 24;
    }
    if (i < out.length) {
      let r = this.nextU32();
      this.spareBytes = 4;
      for (; i < out.length; i++, r >>>= 8, this.spareBytes--) out[i] = r;
      this.spare = r;
    }
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
