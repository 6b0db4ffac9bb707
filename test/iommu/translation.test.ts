// Translation through a device port (the typed-array index and the port's
// last-hit cache) after every kind of table change: map, unmap, type1 v1
// cuts, unmap-all, IOAS destroy, attach / replace / detach. A stale cache hit
// would be DMA into unmapped memory, so each case touches the address right
// before the change (filling the cache) and right after it.
import t from 'tap';
import { MemoryBacking } from '../../iommu/backing.js';
import { IommuContext } from '../../iommu/context.js';
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE } from '../../iommu/device-dma.js';
import { PAGE, RW, errnoOf, fault } from './helpers.js';
import { rng, randInt } from './rng.js';

const R = DMA_ACCESS_READ;
const W = DMA_ACCESS_WRITE;

/** Where a view points: [backing bytes, offset in them], or null. */
function target(v: Uint8Array | null, mems: readonly MemoryBacking[]): [number, number] | null {
  if (v === null) return null;
  const m = mems.findIndex((x) => x.bytes!.buffer === v.buffer);
  return [m, v.byteOffset - mems[m]!.bytes!.byteOffset];
}

interface RefArea {
  start: number; // pages
  end: number;
  m: number;
  off: number; // bytes
  prot: number;
}

t.test('random map / unmap / v1 cut / replace: every translation matches a reference (3 seeds x 4000 steps)', async (t) => {
  const WIN = 256; // pages of IOVA space used
  for (const seed of [21, 22, 23]) {
    const r = rng(seed);
    const ctx = new IommuContext({ type1: { version: 1 } });
    const dev = ctx.addDevice('d');
    const ioasA = ctx.compatIoas;
    const ioasB = ctx.allocIoas();
    const mems = [0, 1, 2].map(() => new MemoryBacking(64 * PAGE));
    const ref = new Map<number, RefArea[]>([
      [ioasA.id, []],
      [ioasB.id, []],
    ]);
    let cur = ioasA.id; // the IOAS the device's RID is attached to
    let last = 0; // IOVA of the last translation (so that the cache is hit often)
    let bad = 0;
    const note = (msg: string) => {
      if (bad++ < 5) t.fail(`seed ${seed}: ${msg}`);
    };
    const expect = (iova: number, len: number, access: number): [number, number] | null => {
      const a = ref.get(cur)!.find((x) => x.start * PAGE <= iova && iova < x.end * PAGE);
      if (!a || iova + len > a.end * PAGE || (a.prot & access) !== access) return null;
      return [a.m, a.off + iova - a.start * PAGE];
    };
    // Every byte in areas with the access (possibly several areas).
    const covered = (iova: number, len: number, access: number): boolean => {
      for (let x = iova; x < iova + len; ) {
        const a = ref.get(cur)!.find((y) => y.start * PAGE <= x && x < y.end * PAGE);
        if (!a || (a.prot & access) !== access) return false;
        x = a.end * PAGE;
      }
      return true;
    };
    for (let step = 0; step < 4000; step++) {
      const op = r();
      if (op < 0.3) {
        const id = r() < 0.7 ? ioasA.id : ioasB.id;
        const pages = 1 + randInt(r, 8);
        const at = randInt(r, WIN - pages);
        const m = randInt(r, 3);
        const off = randInt(r, 64 - pages + 1) * PAGE;
        const prot = 1 + randInt(r, 3);
        const list = ref.get(id)!;
        const free = !list.some((x) => x.start < at + pages && at < x.end);
        const e = errnoOf(() => ctx.getIoas(id).map({ backing: mems[m]!, offset: off, length: BigInt(pages * PAGE), prot, iova: BigInt(at * PAGE) }));
        if (e !== (free ? 'ok' : 'EEXIST')) note(`map: ${e}`);
        if (free) list.push({ start: at, end: at + pages, m, off, prot });
      } else if (op < 0.45) {
        // unmap one whole area, then touch it at once
        const id = r() < 0.7 ? ioasA.id : ioasB.id;
        const list = ref.get(id)!;
        if (list.length) {
          const k = randInt(r, list.length);
          const a = list[k]!;
          ctx.getIoas(id).unmap(BigInt(a.start * PAGE), BigInt((a.end - a.start) * PAGE));
          list.splice(k, 1);
          last = a.start * PAGE + randInt(r, (a.end - a.start) * PAGE);
        }
      } else if (op < 0.55) {
        // type1 v1 unmap on the compat IOAS: cuts the areas at both ends
        const lo = randInt(r, WIN);
        const hi = lo + 1 + randInt(r, 6);
        ctx.type1.unmap({ iova: BigInt(lo * PAGE), size: BigInt((hi - lo) * PAGE) });
        const next: RefArea[] = [];
        for (const a of ref.get(ioasA.id)!) {
          if (a.end <= lo || a.start >= hi) next.push(a);
          else {
            if (a.start < lo) next.push({ ...a, end: lo });
            if (a.end > hi) next.push({ ...a, start: hi, off: a.off + (hi - a.start) * PAGE });
          }
        }
        ref.set(ioasA.id, next);
        last = lo * PAGE;
      } else if (op < 0.58) {
        cur = cur === ioasA.id ? ioasB.id : ioasA.id;
        ctx.replace('d', cur);
      } else {
        // translations: half of them in the page of the previous one
        for (let q = 0; q < 8; q++) {
          const iova = r() < 0.5 ? Math.floor(last / PAGE) * PAGE + randInt(r, PAGE) : randInt(r, WIN * PAGE);
          const len = 1 + randInt(r, 2 * PAGE);
          const access = 1 + randInt(r, 3);
          const want = expect(iova, len, access);
          const got = target(dev.dma.mappedView(iova, len, access), mems);
          if (JSON.stringify(got) !== JSON.stringify(want)) note(`mappedView(${iova}, ${len}, ${access}) = ${JSON.stringify(got)}, reference ${JSON.stringify(want)}`);
          last = iova;
        }
        // the copying door agrees on the single-area case, and faults when the reference does
        const iova = Math.floor(last / PAGE) * PAGE + randInt(r, PAGE);
        const want = expect(iova, 16, R);
        const ok = covered(iova, 16, R);
        try {
          const data = await dev.dma.read(iova, 16);
          if (want && !data.equals(Buffer.from(mems[want[0]]!.bytes!.subarray(want[1], want[1] + 16)))) note(`read(${iova}) returned other bytes`);
          if (!ok) note(`read(${iova}) succeeded, the reference faults`);
        } catch (e) {
          if (ok) note(`read(${iova}) failed: ${(e as Error).message}`);
        }
      }
    }
    t.equal(bad, 0, `seed ${seed}: no mismatch`);
  }
});

t.test('the last-hit cache never outlives an unmap (same IOVA remapped to other memory)', async (t) => {
  const ctx = new IommuContext();
  const dev = ctx.addDevice('d');
  const ioas = ctx.compatIoas;
  const a = new MemoryBacking(4 * PAGE);
  const b = new MemoryBacking(4 * PAGE);
  a.bytes!.fill(0xaa);
  b.bytes!.fill(0xbb);
  ioas.map({ backing: a, length: BigInt(4 * PAGE), prot: RW, iova: BigInt(16 * PAGE) });
  t.equal(dev.dma.mappedView(16 * PAGE + 8, 8, R)![0], 0xaa, 'the cache now holds the area');
  ioas.unmap(BigInt(16 * PAGE), BigInt(4 * PAGE));
  t.equal(dev.dma.mappedView(16 * PAGE + 8, 8, R), null, 'no view after the unmap');
  t.equal((await fault(dev.dma.read(16 * PAGE + 8, 8))).reason, 'unmapped');
  t.equal((await fault(dev.dma.write(16 * PAGE + 8, Buffer.alloc(8)))).reason, 'unmapped');
  t.equal((await fault(dev.dma.withView(16 * PAGE, 8, W, () => undefined))).reason, 'unmapped');
  ioas.map({ backing: b, length: BigInt(4 * PAGE), prot: RW, iova: BigInt(16 * PAGE) });
  t.equal(dev.dma.mappedView(16 * PAGE + 8, 8, R)![0], 0xbb, 'the new mapping, not the old one');
  t.equal((await dev.dma.read(16 * PAGE + 8, 1))[0], 0xbb);
});

t.test('the cache after a v1 cut: the kept piece still translates, the cut one faults', async (t) => {
  const ctx = new IommuContext({ type1: { version: 1 } });
  const dev = ctx.addDevice('d');
  const mem = new MemoryBacking(4 * PAGE);
  ctx.type1.map({ iova: BigInt(8 * PAGE), size: BigInt(4 * PAGE), flags: RW, backing: mem });
  const v0 = dev.dma.mappedView(8 * PAGE, 16, R)!;
  t.equal(v0.byteOffset - mem.bytes!.byteOffset, 0);
  ctx.type1.unmap({ iova: BigInt(9 * PAGE), size: BigInt(2 * PAGE) });
  const v1 = dev.dma.mappedView(8 * PAGE + 4, 16, R);
  t.equal(v1 && v1.byteOffset - mem.bytes!.byteOffset, 4, 'left piece');
  t.equal(dev.dma.mappedView(9 * PAGE, 16, R), null, 'cut page 9');
  t.equal(dev.dma.mappedView(10 * PAGE + 8, 16, R), null, 'cut page 10');
  t.equal(dev.dma.mappedView(8 * PAGE + PAGE - 8, 16, R), null, 'a range into the cut page');
  const v3 = dev.dma.mappedView(11 * PAGE, 16, R);
  t.equal(v3 && v3.byteOffset - mem.bytes!.byteOffset, 3 * PAGE, 'right piece at its own offset');
});

t.test('the cache follows attach, replace and detach, and IOAS destroy', async (t) => {
  const ctx = new IommuContext();
  const dev = ctx.addDevice('d');
  const a = new MemoryBacking(PAGE);
  const b = new MemoryBacking(PAGE);
  a.bytes!.fill(1);
  b.bytes!.fill(2);
  ctx.compatIoas.map({ backing: a, length: BigInt(PAGE), prot: RW, iova: BigInt(PAGE) });
  const other = ctx.allocIoas();
  other.map({ backing: b, length: BigInt(PAGE), prot: RW, iova: BigInt(PAGE) });
  t.equal(dev.dma.mappedView(PAGE, 4, R)![0], 1);
  ctx.replace('d', other.id);
  t.equal(dev.dma.mappedView(PAGE, 4, R)![0], 2, 'replaced: the other IOAS');
  ctx.detach('d');
  t.equal(dev.dma.mappedView(PAGE, 4, R), null, 'detached');
  t.equal((await fault(dev.dma.read(PAGE, 4))).reason, 'not-attached');
  ctx.attach('d', ctx.compatIoas.id);
  t.equal(dev.dma.mappedView(PAGE, 4, R)![0], 1, 'attached again');
  ctx.detach('d');
  ctx.attach('d', other.id);
  t.equal(dev.dma.mappedView(PAGE, 4, R)![0], 2);
  ctx.detach('d');
  ctx.destroy(other.id);
  ctx.attach('d', ctx.compatIoas.id);
  ctx.type1.unmap({ iova: 0n, size: 0n, flags: 2 }); // UNMAP_ALL
  t.equal(dev.dma.mappedView(PAGE, 4, R), null, 'after UNMAP_ALL');
  t.equal((await fault(dev.dma.read(PAGE, 4))).reason, 'unmapped');
});

t.test('the cache keeps rights: a read-only area hit by a read is no write target', async (t) => {
  const ctx = new IommuContext();
  const dev = ctx.addDevice('d');
  const mem = new MemoryBacking(2 * PAGE);
  ctx.compatIoas.map({ backing: mem, length: BigInt(PAGE), prot: R, iova: BigInt(PAGE) });
  ctx.compatIoas.map({ backing: mem, offset: PAGE, length: BigInt(PAGE), prot: W, iova: BigInt(2 * PAGE) });
  t.not(dev.dma.mappedView(PAGE, 8, R), null, 'read of the read-only area');
  t.equal(dev.dma.mappedView(PAGE, 8, W), null, 'write view refused');
  t.equal(dev.dma.mappedView(PAGE, 8, R | W), null, 'read-write view refused');
  t.equal((await fault(dev.dma.write(PAGE, Buffer.alloc(8)))).reason, 'permission');
  t.equal((await fault(dev.dma.withViews([PAGE + 8], [8], W, () => undefined))).reason, 'permission');
  t.not(dev.dma.mappedView(2 * PAGE, 8, W), null, 'write of the write-only area');
  t.equal(dev.dma.mappedView(2 * PAGE, 8, R), null, 'read view of the write-only area refused');
  t.equal((await fault(dev.dma.read(2 * PAGE, 8))).reason, 'permission');
  t.equal(dev.dma.mappedView(PAGE + PAGE - 4, 8, R), null, 'a range past the cached area is not served from it');
});
