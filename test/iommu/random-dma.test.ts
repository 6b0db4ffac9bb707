// Randomized: DMA through the device port (reads, writes, views, scatter
// lists, PASIDs) against a byte-level reference, and type1 v1 / v2
// MAP_DMA / UNMAP_DMA sequences against a page-level reference.
import t from 'tap';
import { MemoryBacking } from '../../iommu/backing.js';
import { IommuContext } from '../../iommu/context.js';
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, DmaFault } from '../../iommu/device-dma.js';
import { PAGE, errnoOf } from './helpers.js';
import { rng, randInt } from './rng.js';

const WIN = 64; // pages

t.test('random DMA matches a byte-level reference (3 seeds x 3000 ops)', async (t) => {
  for (const seed of [11, 12, 13]) {
    const r = rng(seed);
    const ctx = new IommuContext();
    const dev = ctx.addDevice('d');
    const ioas = ctx.compatIoas;
    const mems = [new MemoryBacking(16 * PAGE), new MemoryBacking(16 * PAGE)];
    const shadow = mems.map((m) => Buffer.from(m.bytes!));
    // reference translation: page → {mem index, offset, prot}
    const pt = new Map<number, { m: number; off: number; prot: number }>();
    let bad = 0;
    const note = (msg: string) => {
      if (bad++ < 5) t.fail(`seed ${seed}: ${msg}`);
    };
    for (let step = 0; step < 3000; step++) {
      const op = r();
      if (op < 0.25) {
        const m = randInt(r, 2);
        const pages = 1 + randInt(r, 4);
        const off = randInt(r, 16 - pages + 1) * PAGE;
        const at = randInt(r, WIN - pages);
        const prot = 1 + randInt(r, 3);
        let free = true;
        for (let p = at; p < at + pages; p++) if (pt.has(p)) free = false;
        const e = errnoOf(() => ioas.map({ backing: mems[m], offset: off, length: BigInt(pages * PAGE), prot, iova: BigInt(at * PAGE) }));
        if (e !== (free ? 'ok' : 'EEXIST')) note(`map ${e}`);
        if (free) for (let p = 0; p < pages; p++) pt.set(at + p, { m, off: off + p * PAGE, prot });
      } else if (op < 0.35) {
        // unmap whatever whole areas a random range covers
        const list = ioas.list();
        if (list.length) {
          const a = list[randInt(r, list.length)];
          ioas.unmap(a.iova, BigInt(a.length));
          for (let p = Number(a.iova) / PAGE; p < (Number(a.iova) + a.length) / PAGE; p++) pt.delete(p);
        }
      } else {
        const iova = randInt(r, WIN * PAGE - 10);
        const len = 1 + randInt(r, Math.min(3 * PAGE, WIN * PAGE - iova));
        const write = r() < 0.5;
        const need = write ? 2 : 1;
        // reference: every byte mapped with the right
        let ok = true;
        for (let p = Math.floor(iova / PAGE); p <= Math.floor((iova + len - 1) / PAGE); p++) {
          const e = pt.get(p);
          if (!e || (e.prot & need) !== need) ok = false;
        }
        const where = (x: number) => {
          const e = pt.get(Math.floor(x / PAGE))!;
          return { buf: shadow[e.m], off: e.off + (x % PAGE) };
        };
        const useView = r() < 0.3;
        const big = r() < 0.2; // bigint IOVA path
        const addr = big ? BigInt(iova) : iova;
        try {
          if (write) {
            const data = Buffer.alloc(len);
            for (let i = 0; i < len; i++) data[i] = randInt(r, 256);
            if (useView) {
              await dev.dma.withView(addr, len, DMA_ACCESS_WRITE, (segs) => {
                let o = 0;
                for (const s of segs) {
                  s.set(data.subarray(o, o + s.length));
                  o += s.length;
                }
              });
            } else await dev.dma.write(addr, data);
            if (!ok) note(`write at ${iova}+${len} succeeded, reference faults`);
            for (let i = 0; i < len; i++) {
              const w = where(iova + i);
              w.buf[w.off] = data[i];
            }
          } else {
            const got = useView
              ? await dev.dma.withView(addr, len, DMA_ACCESS_READ, (segs) => Buffer.concat(segs.map((s) => Buffer.from(s))))
              : await dev.dma.read(addr, len);
            if (!ok) note(`read at ${iova}+${len} succeeded, reference faults`);
            for (let i = 0; i < len; i++) {
              const w = where(iova + i);
              if (got[i] !== w.buf[w.off]) {
                note(`read byte ${iova + i} differs`);
                break;
              }
            }
          }
        } catch (e) {
          if (!(e instanceof DmaFault)) throw e;
          if (ok) note(`${write ? 'write' : 'read'} at ${iova}+${len} faulted (${e.reason}), reference succeeds`);
        }
      }
      if (bad) break;
    }
    for (let m = 0; m < 2; m++) if (!shadow[m].equals(Buffer.from(mems[m].bytes!))) note(`backing ${m} contents differ`);
    t.equal(bad, 0, `seed ${seed}`);
  }
});

t.test('random type1 v2 / v1 sequences match a page-level reference', async (t) => {
  for (const version of [2, 1] as const) {
    for (const seed of [5, 6]) {
      const r = rng(seed * 10 + version);
      const ctx = new IommuContext({ type1: { version, dmaEntryLimit: 40 } });
      const mem = new MemoryBacking(8 * PAGE);
      // reference: list of mappings [start, end) pages with backing offset (pages)
      let ref: { s: number; e: number; off: number }[] = [];
      let bad = 0;
      for (let step = 0; step < 3000 && bad < 5; step++) {
        if (r() < 0.5) {
          const pages = 1 + randInt(r, 8);
          const at = randInt(r, WIN);
          const off = randInt(r, 8 - pages + 1);
          const overlap = ref.some((m) => m.s < at + pages && at < m.e);
          const want = overlap ? 'EEXIST' : ref.length >= 40 ? 'ENOSPC' : 'ok';
          const got = errnoOf(() => ctx.type1.map({ iova: BigInt(at * PAGE), size: BigInt(pages * PAGE), flags: 3, backing: mem, offset: off * PAGE }));
          if (got !== want) {
            bad++;
            t.fail(`v${version} map at ${at}+${pages}: ${got} vs ${want}`);
          }
          if (want === 'ok') ref.push({ s: at, e: at + pages, off });
        } else {
          const at = randInt(r, WIN);
          const pages = 1 + randInt(r, 12);
          const e = at + pages;
          let want: string;
          let bytes = 0;
          if (version === 2) {
            const bisect = ref.some((m) => (m.s < at && at < m.e) || (m.s < e && e < m.e));
            want = bisect ? 'EINVAL' : 'ok';
            if (!bisect) {
              for (const m of ref) if (m.s >= at && m.e <= e) bytes += (m.e - m.s) * PAGE;
              ref = ref.filter((m) => !(m.s >= at && m.e <= e));
            }
          } else {
            want = 'ok';
            const next: typeof ref = [];
            for (const m of ref) {
              if (m.e <= at || m.s >= e) next.push(m);
              else {
                if (m.s < at) next.push({ s: m.s, e: at, off: m.off });
                if (m.e > e) next.push({ s: e, e: m.e, off: m.off + (e - m.s) });
                bytes += (Math.min(m.e, e) - Math.max(m.s, at)) * PAGE;
              }
            }
            ref = next;
          }
          let size = -1n;
          const got = errnoOf(() => {
            size = ctx.type1.unmap({ iova: BigInt(at * PAGE), size: BigInt(pages * PAGE) }).size;
          });
          if (got !== want || (got === 'ok' && size !== BigInt(bytes))) {
            bad++;
            t.fail(`v${version} unmap ${at}+${pages}: ${got}/${size} vs ${want}/${bytes}`);
          }
        }
        // translations of every page
        for (let p = 0; p < WIN + 8; p++) {
          const m = ref.find((x) => x.s <= p && p < x.e);
          const hit = ctx.compatIoas.locate(p * PAGE);
          const want = m ? (m.off + p - m.s) * PAGE : -1;
          const got = hit ? hit.area.offset + hit.pos : -1;
          if (want !== got) {
            bad++;
            t.fail(`v${version} step ${step}: page ${p} → ${got} vs ${want}`);
            break;
          }
        }
      }
      t.equal(bad, 0, `type1 v${version} seed ${seed}`);
      ctx.type1.unmap({ iova: 0n, size: 0n, flags: 2 });
      t.equal(mem.refs, 1, 'no leaked references');
    }
  }
});
