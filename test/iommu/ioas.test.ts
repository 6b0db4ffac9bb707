// IOAS behaviour, following tools/testing/selftests/iommu/iommufd.c.
import t from 'tap';
import { MemoryBacking } from '../../iommu/backing.js';
import { IommuError } from '../../iommu/errors.js';
import { Ioas, MAX_IOVA_RANGES } from '../../iommu/ioas.js';
import { PROT_READ, PROT_WRITE } from '../../native/prot.js';
import { U64_MAX } from '../../protocol/wire.js';
import { PAGE, RW, errnoOf } from './helpers.js';

const BASE = 0x100000n;
const P = BigInt(PAGE);

function setup(size = 64 * PAGE) {
  const ioas = new Ioas(1);
  const mem = new MemoryBacking(size);
  const mapFixed = (iova: bigint, length: number, offset = 0, prot = RW) => ioas.map({ backing: mem, offset, length: BigInt(length), prot, iova });
  const mapAlloc = (length: number, offset = 0) => ioas.map({ backing: mem, offset, length: BigInt(length), prot: RW });
  return { ioas, mem, mapFixed, mapAlloc };
}

t.test('area: unmap, split and over-map errors (selftest iommufd_ioas.area)', async (t) => {
  const { ioas, mapFixed } = setup();
  for (let i = 0n; i < 10n; i++) t.equal(errnoOf(() => ioas.unmap(i * P, P)), 'ENOENT', 'unmap fails if nothing is mapped');
  for (let i = 0n; i < 10n; i++) mapFixed(BASE + i * P, PAGE);
  for (let i = 0n; i < 10n; i++) t.equal(ioas.unmap(BASE + i * P, P).length, P);
  mapFixed(BASE + 16n * P, 2 * PAGE);
  t.equal(errnoOf(() => ioas.unmap(BASE + 16n * P, P)), 'ENOENT', 'split at start fails');
  t.equal(errnoOf(() => ioas.unmap(BASE + 17n * P, P)), 'ENOENT', 'split at end fails');
  t.equal(errnoOf(() => mapFixed(BASE + 16n * P, 2 * PAGE)), 'EEXIST');
  t.equal(errnoOf(() => mapFixed(BASE + 16n * P, PAGE)), 'EEXIST');
  t.equal(errnoOf(() => mapFixed(BASE + 17n * P, PAGE)), 'EEXIST');
  t.equal(errnoOf(() => mapFixed(BASE + 15n * P, 2 * PAGE)), 'EEXIST');
  t.equal(errnoOf(() => mapFixed(BASE + 15n * P, 3 * PAGE)), 'EEXIST');
  t.equal(ioas.unmap(0n, U64_MAX).length, 2n * P, 'unmap all works');
  t.equal(ioas.unmap(0n, U64_MAX).length, 0n, 'unmap all succeeds on an empty IOAS');
  t.equal(ioas.areaCount, 0);
});

t.test('unmap removes fully contained areas only; holes are fine', async (t) => {
  const { ioas, mapFixed } = setup();
  const base = BASE + 4n * P;
  for (let i = 0n; i < 4n; i++) mapFixed(base + i * 16n * P, 8 * PAGE);
  t.equal(errnoOf(() => ioas.unmap(base - 4n * P, 8n * P)), 'ENOENT');
  t.equal(errnoOf(() => ioas.unmap(base + 3n * 16n * P + 8n * P - 4n * P, 8n * P)), 'ENOENT');
  t.equal(ioas.areaCount, 4, 'a failed unmap removes nothing');
  const r = ioas.unmap(base - 4n * P, 3n * 16n * P + 8n * P + 4n * P);
  t.equal(r.length, 32n * P);
  t.equal(ioas.areaCount, 0);
});

t.test('unmap argument errors', async (t) => {
  const { ioas, mapFixed } = setup();
  mapFixed(BASE, PAGE);
  t.equal(errnoOf(() => ioas.unmap(BASE, 0n)), 'EINVAL', 'zero length');
  t.equal(errnoOf(() => ioas.unmap(U64_MAX, 1n)), 'EOVERFLOW', 'iova U64_MAX');
  t.equal(errnoOf(() => ioas.unmap(P, U64_MAX)), 'EOVERFLOW', 'length U64_MAX');
  t.equal(errnoOf(() => ioas.unmap(U64_MAX - P, 2n * P)), 'EOVERFLOW', 'wraps');
  t.equal(ioas.unmap(BASE - 1n, P + 2n).length, P, 'unaligned range around a whole area');
});

t.test('map argument errors', async (t) => {
  const { ioas, mem, mapFixed } = setup(16 * PAGE);
  t.equal(errnoOf(() => mapFixed(BASE, 0)), 'EINVAL', 'zero length');
  t.equal(errnoOf(() => mapFixed(BASE, 100)), 'EINVAL', 'unaligned length');
  t.equal(errnoOf(() => mapFixed(BASE + 1n, PAGE)), 'EINVAL', 'unaligned iova');
  t.equal(errnoOf(() => mapFixed(BASE, PAGE, 512)), 'EINVAL', 'unaligned backing offset');
  t.equal(errnoOf(() => mapFixed(BASE, 32 * PAGE)), 'EINVAL', 'longer than the backing');
  t.equal(errnoOf(() => mapFixed(BASE, PAGE, 0, 0)), 'EINVAL', 'neither readable nor writeable');
  t.equal(errnoOf(() => mapFixed(BASE, PAGE, 0, 8)), 'EOPNOTSUPP', 'unknown flag');
  t.equal(errnoOf(() => ioas.map({ backing: mem, length: P, prot: RW, iova: U64_MAX })), 'EOVERFLOW');
  t.equal(errnoOf(() => ioas.map({ backing: mem, length: U64_MAX, prot: RW, iova: 0n })), 'EOVERFLOW');
  t.equal(errnoOf(() => ioas.map({ backing: mem, length: 2n * P, prot: RW, iova: U64_MAX - P + 1n })), 'EOVERFLOW', 'wraps past 2^64');
  const ro = new MemoryBacking(PAGE, { writable: false });
  t.equal(errnoOf(() => ioas.map({ backing: ro, length: P, prot: RW, iova: BASE })), 'EPERM', 'write map of read-only memory');
  t.equal(errnoOf(() => ioas.map({ backing: ro, length: P, prot: PROT_READ, iova: BASE })), 'ok');
  t.equal(ioas.areaCount, 1);
});

t.test('full 64-bit IOVAs', async (t) => {
  const { ioas, mem, mapFixed } = setup();
  const top = U64_MAX - 2n * P + 1n; // last byte is 2^64-1
  mapFixed(top, 2 * PAGE, 4 * PAGE);
  mapFixed(1n << 63n, PAGE);
  mapFixed((1n << 53n) + P, PAGE, PAGE);
  const hit = ioas.locate(U64_MAX);
  t.ok(hit);
  t.equal(hit!.area.backing, mem);
  t.equal(hit!.area.offset + hit!.pos, 6 * PAGE - 1, 'last byte of the IOVA space');
  t.equal(ioas.locate((1n << 63n) + 5n)!.pos, 5);
  t.equal(ioas.locate((1n << 53n) + P + 7n)!.pos, 7);
  t.equal(ioas.locate((1n << 53n) + 7n), null);
  t.equal(errnoOf(() => mapFixed(U64_MAX - P + 1n, PAGE)), 'EEXIST');
  t.equal(ioas.list()[2].iova, top);
  t.equal(ioas.unmap(top, 2n * P).length, 2n * P, 'unmap up to the last byte');
  t.equal(ioas.unmap(1n << 63n, 1n << 62n).length, P);
  t.equal(ioas.areaCount, 1);
});

t.test('allocated IOVAs: aligned, never 0, avoid reserved, inside allowed (area_auto_iova)', async (t) => {
  const { ioas, mapAlloc } = setup(32 * PAGE);
  const iovas: bigint[] = [];
  for (let i = 0; i < 10; i++) iovas.push(mapAlloc(PAGE));
  t.notOk(iovas.includes(0n), 'never IOVA 0');
  t.equal(new Set(iovas).size, 10);
  for (const v of iovas) ioas.unmap(v, P);
  for (let i = 1; i <= 10; i++) {
    const len = i * PAGE;
    const v = mapAlloc(len);
    t.equal(v % BigInt(len & -len), 0n, `length ${i} pages: aligned`);
    iovas[i - 1] = v;
  }
  for (let i = 1; i <= 10; i++) ioas.unmap(iovas[i - 1], BigInt(i * PAGE));
  // avoids a reserved region
  ioas.addReserved(4n * P, 4n * P + 100n * P - 1n);
  for (let i = 1; i <= 10; i++) {
    const len = BigInt(i * PAGE);
    const v = mapAlloc(i * PAGE);
    t.notOk(v + len > 4n * P && v < 104n * P, 'outside the reserved range');
    iovas[i - 1] = v;
  }
  for (let i = 1; i <= 10; i++) ioas.unmap(iovas[i - 1], BigInt(i * PAGE));
  t.equal(errnoOf(() => ioas.allowIovas([{ start: P, last: 600n * P }])), 'EADDRINUSE', 'allowed overlaps reserved');
  ioas.allowIovas([{ start: 200n * P, last: 600n * P - 1n }]);
  for (let i = 1; i <= 10; i++) {
    const len = BigInt(i * PAGE);
    const v = mapAlloc(i * PAGE);
    t.ok(v >= 200n * P && v + len <= 600n * P, 'inside the allowed range');
    t.equal(v % (len & -len), 0n);
  }
  t.equal(errnoOf(() => mapAlloc(33 * PAGE)), 'EINVAL', 'longer than the backing');
  ioas.allowIovas([{ start: 700n * P, last: 701n * P - 1n }]);
  t.equal(errnoOf(() => mapAlloc(2 * PAGE)), 'ENOSPC', 'no room in the allowed range');
  t.equal(errnoOf(() => mapAlloc(PAGE)), 'ok');
});

t.test('allowed and reserved exclude each other (area_allowed)', async (t) => {
  const { ioas, mapFixed } = setup();
  ioas.allowIovas([{ start: BASE, last: BASE + 600n * P }]);
  t.equal(errnoOf(() => ioas.addReserved(BASE + P, BASE + 2n * P - 1n)), 'EADDRINUSE', 'reserved over allowed');
  ioas.allowIovas([]);
  ioas.addReserved(BASE + P, BASE + 2n * P - 1n);
  t.equal(errnoOf(() => ioas.allowIovas([{ start: BASE, last: BASE + 600n * P }])), 'EADDRINUSE', 'allowed over reserved');
  t.equal(errnoOf(() => mapFixed(BASE, 4 * PAGE)), 'EINVAL', 'fixed map over reserved');
  mapFixed(BASE + 8n * P, PAGE);
  t.equal(errnoOf(() => ioas.addReserved(BASE + 8n * P, BASE + 8n * P)), 'EADDRINUSE', 'reserved over a mapping');
  ioas.removeReserved('user');
  t.equal(errnoOf(() => mapFixed(BASE, 4 * PAGE)), 'ok');
});

t.test('allowIovas validates and is atomic', async (t) => {
  const { ioas } = setup();
  ioas.allowIovas([{ start: P, last: 10n * P }]);
  t.equal(errnoOf(() => ioas.allowIovas([{ start: 5n, last: 5n }])), 'EINVAL', 'start >= last');
  t.equal(errnoOf(() => ioas.allowIovas([{ start: 0n, last: 10n }, { start: 10n, last: 20n }])), 'EINVAL', 'overlapping');
  ioas.addReserved(100n * P, 101n * P);
  t.equal(errnoOf(() => ioas.allowIovas([{ start: 0n, last: 10n }, { start: 99n * P, last: 100n * P }])), 'EADDRINUSE');
  t.same(ioas.allowedRanges, [{ start: P, last: 10n * P }], 'failed calls changed nothing');
});

t.test('iova ranges and the too-small answer (iova_ranges)', async (t) => {
  const { ioas } = setup();
  let r = ioas.iovaRanges();
  t.same(r.ranges, [{ start: 0n, last: U64_MAX }]);
  t.equal(r.alignment, PAGE);
  try {
    ioas.iovaRanges(0);
    t.fail('EMSGSIZE expected');
  } catch (e) {
    t.ok(e instanceof IommuError);
    t.equal(errnoOf(() => { throw e; }), 'EMSGSIZE');
    t.equal((e as IommuError).data.numIovas, 1);
  }
  ioas.addReserved(P, 2n * P - 1n);
  r = ioas.iovaRanges(10);
  t.same(r.ranges, [
    { start: 0n, last: P - 1n },
    { start: 2n * P, last: U64_MAX },
  ]);
  try {
    ioas.iovaRanges(1);
    t.fail('EMSGSIZE expected');
  } catch (e) {
    t.equal((e as IommuError).data.numIovas, 2);
    t.same((e as IommuError).data.ranges, [{ start: 0n, last: P - 1n }], 'filled what fits');
  }
  ioas.addReserved(U64_MAX - P + 1n, U64_MAX);
  t.equal(ioas.iovaRanges().ranges[1].last, U64_MAX - P);
});

t.test('every length 1..2 pages: unaligned lengths are EINVAL (ioas_iova_alloc)', async (t) => {
  const { ioas, mapAlloc } = setup();
  let bad = 0;
  for (let len = 1; len < 2 * PAGE; len++) {
    const e = errnoOf(() => {
      const v = mapAlloc(len);
      ioas.unmap(v, BigInt(len));
    });
    if (e !== (len % PAGE ? 'EINVAL' : 'ok')) bad++;
  }
  t.equal(bad, 0);
});

t.test('slices for copy: must be fully covered (copy_sweep)', async (t) => {
  const { ioas, mapFixed } = setup();
  mapFixed(BASE, 8 * PAGE);
  mapFixed(BASE + 8n * P, 4 * PAGE, 20 * PAGE);
  const s = ioas.slices(BASE + 6n * P, 4n * P);
  t.equal(s.length, 2);
  t.same(s.map((x) => [x.offset, x.length]), [[6 * PAGE, 2n * P], [20 * PAGE, 2n * P]]);
  t.equal(errnoOf(() => ioas.slices(BASE - P, 2n * P)), 'ENOENT');
  t.equal(errnoOf(() => ioas.slices(BASE + 11n * P, 2n * P)), 'ENOENT');
  t.equal(errnoOf(() => ioas.slices(BASE, 0n)), 'EINVAL');
  t.equal(errnoOf(() => ioas.slices(U64_MAX, 2n)), 'EOVERFLOW');
});

t.test('translate: bounds and rights', async (t) => {
  const { ioas, mapFixed } = setup();
  mapFixed(BASE, 2 * PAGE, 0, PROT_READ);
  mapFixed(BASE + 2n * P, PAGE, 0, PROT_WRITE);
  const b = Number(BASE);
  t.ok(ioas.translate(b, 2 * PAGE, PROT_READ));
  t.equal(ioas.translate(b, 2 * PAGE + 1, PROT_READ), null, 'crosses the area end');
  t.equal(ioas.translate(b, 4, PROT_WRITE), null, 'no write right');
  t.ok(ioas.translate(b + 2 * PAGE, 4, PROT_WRITE));
  t.equal(ioas.translate(b + 3 * PAGE, 1, PROT_READ), null, 'unmapped');
  t.equal(ioas.translate(b - 1, 1, PROT_READ), null);
});

t.test('cutAt splits an area; both halves share the backing', async (t) => {
  const { ioas, mem, mapFixed } = setup();
  mapFixed(BASE, 4 * PAGE, 8 * PAGE);
  ioas.cutAt(Number(BASE + P));
  ioas.cutAt(Number(BASE)); // already a boundary
  const l = ioas.list();
  t.same(l.map((a) => [a.iova, a.length, a.offset]), [[BASE, PAGE, 8 * PAGE], [BASE + P, 3 * PAGE, 9 * PAGE]]);
  t.equal(mem.refs, 3, 'creator + two areas');
  ioas.unmapAll();
  t.equal(mem.refs, 1);
});

t.test('range lists are bounded: allowIovas and addReserved refuse beyond MAX_IOVA_RANGES', async (t) => {
  const { ioas } = setup();
  const many = (n: number) => Array.from({ length: n }, (_, i) => ({ start: BigInt(2 * i) * P, last: BigInt(2 * i + 1) * P - 1n }));
  t.equal(errnoOf(() => ioas.allowIovas(many(MAX_IOVA_RANGES + 1))), 'E2BIG', 'one range too many');
  t.same(ioas.allowedRanges, [], 'nothing changed');
  t.equal(errnoOf(() => ioas.allowIovas(many(MAX_IOVA_RANGES).reverse())), 'ok', 'the most, in any order');
  t.equal(ioas.allowedRanges.length, MAX_IOVA_RANGES);
  const overlapFar = [...many(100), { start: 10n * P, last: 10n * P + 1n }];
  t.equal(errnoOf(() => ioas.allowIovas(overlapFar)), 'EINVAL', 'an overlap far apart in the list is still found');
  t.equal(errnoOf(() => ioas.allowIovas([null as unknown as { start: bigint; last: bigint }])), 'EINVAL', 'not a range');
  ioas.allowIovas([]);
  for (let i = 0; i < MAX_IOVA_RANGES; i++) ioas.addReserved(BigInt(i) * P, BigInt(i) * P);
  t.equal(errnoOf(() => ioas.addReserved(U64_MAX - P, U64_MAX)), 'ENOSPC', 'reserved list is full');
  ioas.removeReserved('user');
  t.equal(errnoOf(() => ioas.addReserved(U64_MAX - P, U64_MAX)), 'ok');
});
