// The granule hash in front of the interval index: only small aligned
// intervals, a definite answer for an indexed granule and "ask the index"
// for any other, correct through growth, collisions and deletions.
import t from 'tap';
import { GranuleIndex, MAX_GRANULES, type Interval } from '../../iommu/granule-index.js';
import { rng, randInt } from './rng.js';

const G = 4096;
const iv = (start: number, end: number, prot = 3): Interval => ({ start, end, prot });

t.test('what it takes: aligned, non-empty, at most MAX_GRANULES long', async (t) => {
  const x = new GranuleIndex<Interval>(G);
  t.ok(x.takes(iv(0, G)));
  t.ok(x.takes(iv(G, G + MAX_GRANULES * G)));
  t.notOk(x.takes(iv(0, (MAX_GRANULES + 1) * G)), 'too long');
  t.notOk(x.takes(iv(1, G + 1)), 'start not aligned');
  t.notOk(x.takes(iv(0, G + 512)), 'end not aligned');
  for (const v of [iv(1, G + 1), iv(G * 100, G * 200)]) x.insert(v);
  t.equal(x.size, 0, 'others are left to the full index');
  t.equal(x.find(G * 150), undefined);
  t.throws(() => new GranuleIndex(3000), RangeError);
  t.throws(() => new GranuleIndex(0), RangeError);
});

t.test('an indexed granule answers for itself; any other is unknown', async (t) => {
  const x = new GranuleIndex<Interval>(G);
  const a = iv(8 * G, 10 * G, 1); // read only, two granules
  x.insert(a);
  t.equal(x.find(8 * G), a);
  t.equal(x.find(10 * G - 1), a);
  t.equal(x.find(10 * G), undefined, 'past the end: not indexed');
  t.equal(x.find(8 * G - 1), undefined);
  t.equal(x.findWithin(9 * G, G, 1), a, 'to the last byte');
  t.equal(x.findWithin(9 * G, G + 1, 1), null, 'one byte past the end: known not to fit');
  t.equal(x.findWithin(8 * G, 64, 2), null, 'no write right');
  t.equal(x.findWithin(20 * G, 64, 1), undefined);
  x.remove(a);
  t.equal(x.size, 0);
  t.equal(x.find(8 * G), undefined);
  x.remove(a);
  t.equal(x.size, 0, 'a second remove changes nothing');
});

t.test('granule numbers that differ only above bit 32, and above 2^53', async (t) => {
  const x = new GranuleIndex<Interval>(G);
  const list: Interval[] = [];
  // Same low 32 bits of the granule number: a weak hash would put all of them in one run.
  for (let hi = 0; hi < 300; hi++) list.push(iv((hi * 2 ** 32 + 5) * G, (hi * 2 ** 32 + 6) * G));
  list.push(iv(2 ** 64 - G, 2 ** 64), iv(2 ** 60, 2 ** 60 + 2 * G));
  for (const v of list) x.insert(v);
  let bad = 0;
  for (const v of list) if (x.find(v.start) !== v || x.find(v.end - G) !== v || x.findWithin(v.start, G, 3) !== v) bad++;
  t.equal(bad, 0);
  t.equal(x.find(2 ** 60 + 2 * G), undefined);
  for (const v of list.splice(0, 150)) x.remove(v);
  for (const v of list) if (x.find(v.start) !== v) bad++;
  t.equal(bad, 0, 'the rest are found after half are removed');
  t.equal(x.size, list.length);
});

for (const seed of [1, 2, 3]) {
  t.test(`random inserts and removes against a list (seed ${seed})`, async (t) => {
    const r = rng(seed);
    const x = new GranuleIndex<Interval>(G);
    const SPACE = 5000; // granules: dense, so probe runs wrap and deletions move entries
    const owner: (Interval | undefined)[] = new Array(SPACE).fill(undefined);
    const live: Interval[] = [];
    let bad = 0;
    const check = (k: number) => {
      for (let i = 0; i < k; i++) {
        const g = randInt(r, SPACE);
        const want = owner[g];
        const at = g * G + randInt(r, G);
        if (x.find(at) !== want) bad++;
        const len = 1 + randInt(r, 3 * G);
        const w = want ? (at + len <= want.end ? want : null) : undefined;
        if (x.findWithin(at, len, 1) !== w) bad++;
      }
    };
    for (let i = 0; i < 40_000; i++) {
      if (r() < (i < 20_000 ? 0.7 : 0.3)) {
        const g = randInt(r, SPACE);
        const n = 1 + randInt(r, MAX_GRANULES + 2); // some too long: not indexed
        if (g + n > SPACE || owner.slice(g, g + n).some((o) => o)) continue;
        const v = iv(g * G, (g + n) * G);
        x.insert(v);
        // Too long: the caller's index holds it; this one must not.
        if (n <= MAX_GRANULES) for (let k = g; k < g + n; k++) owner[k] = v;
        live.push(v);
      } else if (live.length > 0) {
        const at = randInt(r, live.length);
        const v = live[at]!;
        live[at] = live[live.length - 1]!;
        live.pop();
        x.remove(v);
        for (let k = v.start / G; k < v.end / G; k++) if (owner[k] === v) owner[k] = undefined;
      }
      if (i % 1000 === 0) check(200);
    }
    check(5000);
    t.equal(bad, 0);
    t.equal(x.size, live.filter((v) => v.end - v.start <= MAX_GRANULES * G).length);
  });
}
