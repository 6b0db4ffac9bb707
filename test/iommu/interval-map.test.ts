import t from 'tap';
import { IntervalMap } from '../../iommu/interval-map.js';
import { rng, randInt } from './rng.js';

interface Iv {
  start: number;
  end: number;
}

// Reference: a sorted array of disjoint intervals.
class Ref {
  list: Iv[] = [];
  find(x: number): Iv | undefined {
    return this.list.find((v) => v.start <= x && x < v.end);
  }
  overlaps(s: number, e: number): boolean {
    return this.list.some((v) => v.start < e && s < v.end);
  }
  insert(v: Iv): void {
    this.list.push(v);
    this.list.sort((a, b) => a.start - b.start);
  }
  remove(s: number): Iv | undefined {
    const i = this.list.findIndex((v) => v.start === s);
    return i < 0 ? undefined : this.list.splice(i, 1)[0];
  }
}

// A granule also indexes the small aligned intervals in a hash (granule 1:
// all of them up to 8 long; granule 2: those on even bounds).
const RUNS: [number, number, number, number | undefined][] = [
  [1, 4000, 20000, undefined],
  [2, 4000, 20000, undefined],
  [3, 4000, 20000, undefined],
  [42, 60000, 60000, undefined],
  [1234, 60000, 60000, undefined],
  [5, 4000, 20000, 1],
  [6, 4000, 20000, 2],
  [77, 60000, 60000, 1],
];
for (const [seed, SPACE, OPS, granule] of RUNS) {
  t.test(`random insert/remove/find matches a sorted array (seed ${seed}, ${OPS} ops${granule ? `, granule ${granule}` : ''})`, async (t) => {
    const r = rng(seed);
    const m = new IntervalMap<Iv>(granule);
    const ref = new Ref();
    let ops = 0;
    let mismatches = 0;
    for (let i = 0; i < OPS; i++) {
      // grow for the first half, shrink for the second: deep trees, then merges
      const op = i < OPS / 2 ? r() * 0.9 : 0.3 + r() * 0.7;
      if (op < 0.55) {
        const s = randInt(r, SPACE);
        const e = s + 1 + randInt(r, 4);
        if (!ref.overlaps(s, e)) {
          const v = { start: s, end: e };
          m.insert(v);
          ref.insert(v);
        }
      } else if (op < 0.9 && ref.list.length) {
        const victim = r() < 0.9 ? ref.list[randInt(r, ref.list.length)].start : randInt(r, SPACE);
        const a = m.remove(victim);
        const b = ref.remove(victim);
        if (a !== b) mismatches++;
      } else {
        const x = randInt(r, SPACE + 10);
        if (m.find(x) !== ref.find(x)) mismatches++;
      }
      ops++;
      if (m.size !== ref.list.length) mismatches++;
      if (i % 997 === 0) {
        const all = [...m];
        if (all.length !== ref.list.length || all.some((v, k) => v !== ref.list[k])) mismatches++;
        for (let x = 0; x < SPACE + 5; x += 7) if (m.find(x) !== ref.find(x)) mismatches++;
        const lo = randInt(r, SPACE);
        const hi = lo + randInt(r, 200);
        const got = m.collect(lo, hi);
        const want = ref.list.filter((v) => v.end > lo && v.start <= hi);
        if (got.length !== want.length || got.some((v, k) => v !== want[k])) mismatches++;
      }
    }
    t.equal(mismatches, 0, `${ops} ops`);
    // drain to empty
    for (const v of [...ref.list]) {
      t.equal(m.remove(v.start), v);
    }
    t.equal(m.size, 0);
    t.equal(m.find(10), undefined);
  });
}

t.test('sequential fill and drain of 100k entries (deep tree)', async (t) => {
  const m = new IntervalMap<Iv>();
  const N = 100000;
  for (let i = 0; i < N; i++) m.insert({ start: i * 2, end: i * 2 + 1 });
  t.equal(m.size, N);
  let bad = 0;
  for (let i = 0; i < N; i += 13) {
    if (m.find(i * 2)?.start !== i * 2) bad++;
    if (m.find(i * 2 + 1) !== undefined) bad++;
  }
  t.equal(bad, 0);
  // remove from the front, the back and the middle
  for (let i = 0; i < N; i += 2) m.remove(i * 2);
  for (let i = N - 1; i > 0; i -= 4) m.remove(i * 2);
  const left = [...m].map((v) => v.start);
  const want: number[] = [];
  for (let i = 1; i < N; i += 2) if ((N - 1 - i) % 4 !== 0) want.push(i * 2);
  t.same(left, want);
  for (const s of left) m.remove(s);
  t.equal(m.size, 0);
  t.same([...m], []);
});

t.test('keys above 2^53 (page multiples) stay exact', async (t) => {
  const m = new IntervalMap<Iv>();
  const top = 2 ** 64;
  const a = { start: top - 4096, end: top };
  const b = { start: 2 ** 60, end: 2 ** 60 + 8192 };
  m.insert(a);
  m.insert(b);
  t.equal(m.find(top - 4096), a);
  t.equal(m.find(2 ** 60 + 4096), b);
  t.equal(m.find(2 ** 60 + 8192), undefined);
  t.same(m.collect(2 ** 60, top - 1), [b, a]);
});

for (const granule of [undefined, 1]) t.test(`findWithin checks the whole range and the rights, across chunk splits, borrows and merges${granule ? ' (granule 1: intervals up to 8 long also hashed)' : ''}`, async (t) => {
  interface Pv { start: number; end: number; prot: number }
  const r = rng(77);
  const m = new IntervalMap<Pv>(granule);
  const live: Pv[] = [];
  let bad = 0;
  const check = (k: number) => {
    for (let q = 0; q < k; q++) {
      const x = randInt(r, 200_000);
      const len = 1 + randInt(r, 6);
      const need = 1 + randInt(r, 3);
      const v = live.find((p) => p.start <= x && x < p.end);
      const want = v && x + len <= v.end && (v.prot & need) === need ? v : undefined;
      if (m.findWithin(x, len, need) !== want) bad++;
    }
  };
  // Grow to 20,000 intervals (~160 chunks), then remove in runs (chunks fall
  // below a quarter: borrow and merge), then random churn.
  for (let i = 0; i < 20_000; i++) {
    const v = { start: i * 10, end: i * 10 + 1 + randInt(r, 9), prot: 1 + randInt(r, 3) };
    live.push(v);
  }
  for (let i = live.length - 1; i > 0; i--) {
    const j = randInt(r, i + 1);
    [live[i], live[j]] = [live[j]!, live[i]!];
  }
  for (const v of live) m.insert(v);
  live.sort((a, b) => a.start - b.start);
  check(3000);
  for (let i = 0; i < live.length; ) {
    const run = 1 + randInt(r, 300);
    for (const v of live.splice(i, run)) if (m.remove(v.start) !== v) bad++;
    i += randInt(r, 40);
    if (r() < 0.05) check(50);
  }
  t.equal(m.size, live.length);
  t.same([...m], live, 'order kept');
  check(3000);
  t.equal(bad, 0);
  for (const v of [...live]) m.remove(v.start);
  t.equal(m.size, 0);
  t.equal(m.findWithin(0, 1, 1), undefined);
});
