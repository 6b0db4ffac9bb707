// Long random sequences of map / unmap / copy / allowIovas / reserved on the
// model and on a simple reference (linear lists, page arithmetic), comparing
// every errno, every returned IOVA or length, the area lists and the
// translation of every page of the window after every step.
import t from 'tap';
import { PROT_READ, PROT_WRITE } from '../../native/prot.js';
import { MemoryBacking, type Backing } from '../../iommu/backing.js';
import { IommuContext } from '../../iommu/context.js';
import type { Ioas } from '../../iommu/ioas.js';
import { PAGE, errnoOf } from './helpers.js';
import { rng, randInt } from './rng.js';

interface RArea {
  start: number; // bytes, page aligned
  end: number;
  backing: Backing;
  offset: number;
  prot: number;
}
/** What a copy or map may grant: the source area's rights, or the backing's. */
interface RSlice {
  backing: Backing;
  offset: number;
  length: number;
  maxProt: number;
}
function backingProt(b: Backing): number {
  return b.writable ? PROT_READ | PROT_WRITE : PROT_READ;
}
interface RRange {
  start: number;
  last: number;
}

class RefIoas {
  areas: RArea[] = [];
  reserved: RRange[] = [];
  allowed: RRange[] = [];

  overlapsArea(s: number, l: number): boolean {
    return this.areas.some((a) => a.start <= l && s <= a.end - 1);
  }
  overlapsRes(s: number, l: number): boolean {
    return this.reserved.some((r) => r.start <= l && s <= r.last);
  }
  inAllowed(s: number, l: number): boolean {
    if (this.allowed.length === 0) return true;
    // merged coverage, byte exact
    const sorted = [...this.allowed].sort((a, b) => a.start - b.start);
    let cur = s;
    for (const r of sorted) {
      if (r.start > cur) continue;
      if (r.last >= cur) cur = r.last + 1;
      if (cur > l) return true;
    }
    return cur > l;
  }
  alloc(len: number, offset: number): number | string {
    let align = 1;
    while (align < len) align *= 2;
    if (offset) align = Math.min(align, offset & -offset);
    let bound = len * 4 + align * 2;
    for (const a of this.areas) bound = Math.max(bound, a.end + align * 2 + len);
    for (const r of [...this.reserved, ...this.allowed]) bound = Math.max(bound, r.last + align * 2 + len);
    for (let x = align; x <= bound; x += align) {
      if (x < PAGE) continue;
      const l = x + len - 1;
      if (!this.overlapsArea(x, l) && !this.overlapsRes(x, l) && this.inAllowed(x, l)) return x;
    }
    return 'ENOSPC';
  }
  mapSlices(slices: RSlice[], len: number, prot: number, iova: number | undefined): number | string {
    if (prot === 0) return 'EINVAL';
    if (slices.some((s) => prot & ~s.maxProt)) return 'EPERM';
    let at: number;
    if (iova === undefined) {
      const r = this.alloc(len, slices[0].offset);
      if (typeof r === 'string') return r;
      at = r;
    } else {
      if (this.overlapsRes(iova, iova + len - 1)) return 'EINVAL';
      if (this.overlapsArea(iova, iova + len - 1)) return 'EEXIST';
      at = iova;
    }
    if (slices.some((s) => s.offset + s.length > s.backing.size)) return 'EINVAL';
    let cur = at;
    for (const s of slices) {
      this.areas.push({ start: cur, end: cur + s.length, backing: s.backing, offset: s.offset, prot });
      cur += s.length;
    }
    this.areas.sort((a, b) => a.start - b.start);
    return at;
  }
  unmap(iova: number, len: number): number | string {
    const last = iova + len - 1;
    const hit = this.areas.filter((a) => a.start <= last && iova <= a.end - 1);
    if (hit.length === 0) return 'ENOENT';
    if (hit.some((a) => a.start < iova || a.end - 1 > last)) return 'ENOENT';
    this.areas = this.areas.filter((a) => !hit.includes(a));
    return hit.reduce((n, a) => n + (a.end - a.start), 0);
  }
  slices(iova: number, len: number): RSlice[] | string {
    const out = [];
    let cur = iova;
    const last = iova + len - 1;
    while (cur <= last) {
      const a = this.areas.find((x) => x.start <= cur && cur < x.end);
      if (!a) return 'ENOENT';
      const n = Math.min(a.end - cur, last - cur + 1);
      out.push({ backing: a.backing, offset: a.offset + (cur - a.start), length: n, maxProt: a.prot & backingProt(a.backing) });
      cur += n;
    }
    return out;
  }
  allow(list: RRange[]): string {
    for (let i = 0; i < list.length; i++) {
      if (list[i].start >= list[i].last) return 'EINVAL';
      for (let j = 0; j < i; j++) if (list[j].start <= list[i].last && list[i].start <= list[j].last) return 'EINVAL';
    }
    for (const r of list) if (this.overlapsRes(r.start, r.last)) return 'EADDRINUSE';
    this.allowed = list;
    return 'ok';
  }
  reserve(r: RRange): string {
    if (this.overlapsArea(r.start, r.last)) return 'EADDRINUSE';
    if (this.allowed.some((a) => a.start <= r.last && r.start <= a.last)) return 'EADDRINUSE';
    this.reserved.push(r);
    return 'ok';
  }
}

function outcome(f: () => unknown): string {
  let v: unknown;
  const e = errnoOf(() => {
    v = f();
  });
  return e === 'ok' ? `=${String(v)}` : e;
}

function expect(v: number | string): string {
  return typeof v === 'string' ? v : `=${v}`;
}

const WINDOW = 256; // pages compared page by page

function compare(model: Ioas, ref: RefIoas): string | null {
  const l = model.list();
  if (l.length !== ref.areas.length) return `area count ${l.length} vs ${ref.areas.length}`;
  const areas = model.allAreas();
  for (let i = 0; i < l.length; i++) {
    const a = areas[i];
    const r = ref.areas[i];
    if (a.start !== r.start || a.end !== r.end || a.backing !== r.backing || a.offset !== r.offset || a.prot !== r.prot) {
      return `area ${i}: [${a.start},${a.end}) off ${a.offset} vs [${r.start},${r.end}) off ${r.offset}`;
    }
  }
  for (let p = 0; p < WINDOW; p++) {
    const x = p * PAGE + (p % 7) * 100;
    const m = model.find(x);
    const r = ref.areas.find((a) => a.start <= x && x < a.end);
    if ((m === undefined) !== (r === undefined)) return `page ${p}: mapped ${!!m} vs ${!!r}`;
    if (m && r && (m.backing !== r.backing || m.offset + (x - m.start) !== r.offset + (x - r.start) || m.prot !== r.prot)) return `page ${p} translates differently`;
  }
  return null;
}

for (const seed of [7, 99, 2024, 31337]) {
  t.test(`model matches the reference over 4000 random ops (seed ${seed})`, async (t) => {
    const r = rng(seed);
    const ctx = new IommuContext({ defaultIoas: false });
    const ioas = [ctx.allocIoas(), ctx.allocIoas()];
    const refs = [new RefIoas(), new RefIoas()];
    const backings: Backing[] = [new MemoryBacking(32 * PAGE), new MemoryBacking(16 * PAGE), new MemoryBacking(8 * PAGE, { writable: false })];
    const tally: Record<string, number> = {};
    let failures = 0;
    const check = (what: string, got: string, want: string) => {
      tally[`${what} ${got.startsWith('=') ? 'ok' : got}`] = (tally[`${what} ${got.startsWith('=') ? 'ok' : got}`] ?? 0) + 1;
      if (got !== want) {
        failures++;
        if (failures < 5) t.fail(`${what}: got ${got}, reference ${want}`);
      }
    };
    const pg = (n: number) => n * PAGE;
    for (let step = 0; step < 4000 && failures < 5; step++) {
      const k = randInt(r, 2);
      const m = ioas[k];
      const ref = refs[k];
      const op = r();
      const prot = r() < 0.05 ? 0 : 1 + randInt(r, 3);
      if (op < 0.3) {
        const b = backings[randInt(r, 3)];
        const pages = 1 + randInt(r, 6);
        const off = pg(randInt(r, b.size / PAGE + 1));
        const iova = pg(randInt(r, WINDOW - 4));
        const got = outcome(() => m.map({ backing: b, offset: off, length: BigInt(pg(pages)), prot, iova: BigInt(iova) }));
        check('map', got, expect(ref.mapSlices([{ backing: b, offset: off, length: pg(pages), maxProt: backingProt(b) }], pg(pages), prot, iova)));
      } else if (op < 0.4) {
        const b = backings[randInt(r, 3)];
        const pages = 1 + randInt(r, 6);
        const off = pg(randInt(r, b.size / PAGE));
        const got = outcome(() => m.map({ backing: b, offset: off, length: BigInt(pg(pages)), prot }));
        check('alloc', got, expect(ref.mapSlices([{ backing: b, offset: off, length: pg(pages), maxProt: backingProt(b) }], pg(pages), prot, undefined)));
      } else if (op < 0.7) {
        let iova = pg(randInt(r, WINDOW));
        let len = pg(1 + randInt(r, 24));
        if (r() < 0.3 && iova > 0) {
          const j = 1 + randInt(r, PAGE - 1);
          iova -= j;
          len += j + randInt(r, 50);
        }
        const got = outcome(() => String(m.unmap(BigInt(iova), BigInt(len)).length));
        check('unmap', got, expect(ref.unmap(iova, len)));
      } else if (op < 0.71) {
        m.unmapAll();
        ref.areas = [];
      } else if (op < 0.88) {
        const d = randInt(r, 2);
        const src = pg(randInt(r, WINDOW));
        const len = pg(1 + randInt(r, 8));
        const fixed = r() < 0.7 ? pg(randInt(r, WINDOW)) : undefined;
        const got = outcome(() =>
          ctx.copy({ srcIoasId: m.id, srcIova: BigInt(src), length: BigInt(len), dstIoasId: ioas[d].id, dstIova: fixed === undefined ? undefined : BigInt(fixed), prot }),
        );
        let want: number | string;
        if (prot === 0) want = 'EINVAL';
        else {
          const sl = ref.slices(src, len);
          want = typeof sl === 'string' ? sl : refs[d].mapSlices(sl, len, prot, fixed);
        }
        check('copy', got, expect(want));
      } else if (op < 0.93) {
        const list: { start: number; last: number }[] = [];
        const n = randInt(r, 3);
        for (let i = 0; i < n; i++) {
          const s = pg(randInt(r, WINDOW));
          list.push({ start: s, last: s + pg(1 + randInt(r, 64)) - 1 });
        }
        if (r() < 0.05 && list.length) list[0].last = list[0].start;
        const got = errnoOf(() => m.allowIovas(list.map((x) => ({ start: BigInt(x.start), last: BigInt(x.last) }))));
        check('allow', got, ref.allow(list));
      } else if (op < 0.97) {
        const s = pg(randInt(r, WINDOW));
        const range = { start: s, last: s + pg(1 + randInt(r, 4)) - 1 };
        const got = errnoOf(() => m.addReserved(BigInt(range.start), BigInt(range.last)));
        check('reserve', got, ref.reserve(range));
      } else {
        m.removeReserved('user');
        ref.reserved = [];
      }
      for (let i = 0; i < 2; i++) {
        const diff = compare(ioas[i], refs[i]);
        if (diff) {
          failures++;
          t.fail(`step ${step}, IOAS ${i}: ${diff}`);
          break;
        }
      }
    }
    t.equal(failures, 0, 'no divergence');
    // every interesting outcome was exercised
    for (const key of ['map ok', 'map EEXIST', 'map EINVAL', 'map EPERM', 'alloc ok', 'unmap ok', 'unmap ENOENT', 'copy ok', 'copy ENOENT', 'copy EEXIST', 'allow ok', 'allow EADDRINUSE', 'reserve ok', 'reserve EADDRINUSE']) {
      t.ok((tally[key] ?? 0) > 0, `exercised ${key} (${tally[key] ?? 0})`);
    }
    // all memory released once the IOAS are emptied
    for (const m of ioas) m.unmapAll();
    t.same(backings.map((b) => b.refs), [1, 1, 1], 'no leaked backing references');
  });
}
