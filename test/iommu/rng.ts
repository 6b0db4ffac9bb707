// Numbers in [0, 1) for randomized tests, from the project's one seeded generator.
import { SeededRandom } from '../../faults/prng.js';

/** A seeded stream of numbers in [0, 1). */
export function rng(seed: number): () => number {
  const r = new SeededRandom(seed >>> 0, 'test');
  return () => r.nextFloat();
}

export function randInt(r: () => number, n: number): number {
  return Math.floor(r() * n);
}
