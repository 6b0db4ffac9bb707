// Type1 compatibility on the compat IOAS (vfio_iommu_type1.c rules; the
// iommufd flavour follows the vfio_compat_mock_domain selftests).
import t from 'tap';
import { MemoryBacking } from '../../iommu/backing.js';
import { IommuContext } from '../../iommu/context.js';
import {
  VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
} from '../../protocol/constants.js';
import {
  VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_INFO_PGSIZES,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
  type Type1Options,
} from '../../iommu/type1.js';
import { U64_MAX } from '../../protocol/wire.js';
import { PAGE, errnoOf } from './helpers.js';
import { rng } from './rng.js';

const P = BigInt(PAGE);
const RW = 3;
const APERTURE = 0x1000000n;
const BUF = 16 * PAGE;

function setup(opts: Type1Options = {}) {
  const ctx = new IommuContext({ type1: opts });
  const mem = new MemoryBacking(64 * PAGE);
  const map = (iova: bigint, size: number, offset = 0, flags = RW) => ctx.type1.map({ iova, size: BigInt(size), flags, backing: mem, offset });
  return { ctx, t1: ctx.type1, mem, map };
}

t.test('map/unmap, UNMAP_FLAG_ALL needs iova = size = 0, small pages (vfio_compat map)', async (t) => {
  const { t1, map } = setup();
  map(APERTURE, BUF);
  t.equal(t1.unmap({ iova: APERTURE, size: BigInt(BUF) }).size, BigInt(BUF));
  map(APERTURE, BUF);
  t.equal(errnoOf(() => t1.unmap({ iova: APERTURE, size: BigInt(BUF), flags: VFIO_DMA_UNMAP_FLAG_ALL })), 'EINVAL');
  t.equal(t1.unmap({ iova: 0n, size: 0n, flags: VFIO_DMA_UNMAP_FLAG_ALL }).size, BigInt(BUF));
  const pages: bigint[] = [];
  for (let i = 0; i < 16; i++) {
    pages.push(APERTURE + BigInt(i) * P);
    map(pages[i], PAGE, i * PAGE);
  }
  const r = rng(5);
  pages.sort(() => r() - 0.5);
  for (const p of pages) t.equal(t1.unmap({ iova: p, size: P }).size, P);
  t.equal(t1.unmap({ iova: APERTURE, size: P }).size, 0n, 'v2: nothing mapped is success, 0 bytes');
});

t.test('argument errors (vfio_iommu_type1.c)', async (t) => {
  const { t1, map, mem } = setup();
  t.equal(errnoOf(() => t1.map({ iova: APERTURE, size: P, flags: 1 << 31, backing: mem })), 'EINVAL', 'unknown map flag');
  t.equal(errnoOf(() => t1.map({ iova: APERTURE, size: P, flags: 0, backing: mem })), 'EINVAL', 'no READ/WRITE');
  t.equal(errnoOf(() => map(APERTURE, 0)), 'EINVAL', 'zero size');
  t.equal(errnoOf(() => map(APERTURE + 1n, PAGE)), 'EINVAL', 'unaligned iova');
  t.equal(errnoOf(() => map(APERTURE, 100)), 'EINVAL', 'unaligned size');
  t.equal(errnoOf(() => map(U64_MAX - P + 1n, 2 * PAGE)), 'EINVAL', 'wrap is EINVAL in type1');
  t.equal(errnoOf(() => map(APERTURE, 128 * PAGE)), 'EINVAL', 'past the backing');
  map(APERTURE, 2 * PAGE);
  t.equal(errnoOf(() => map(APERTURE + P, 2 * PAGE)), 'EEXIST');
  t.equal(errnoOf(() => t1.unmap({ iova: APERTURE, size: P, flags: 1 << 31 })), 'EINVAL', 'unknown unmap flag');
  t.equal(errnoOf(() => t1.unmap({ iova: APERTURE + 1n, size: P })), 'EINVAL', 'unaligned unmap iova');
  t.equal(errnoOf(() => t1.unmap({ iova: APERTURE, size: 0n })), 'EINVAL', 'zero unmap size');
  t.equal(errnoOf(() => t1.unmap({ iova: APERTURE, size: 10n })), 'EINVAL', 'unaligned unmap size');
  t.equal(errnoOf(() => t1.unmap({ iova: 2n * P, size: U64_MAX - P + 1n })), 'EINVAL', 'unmap wraps');
  t.equal(errnoOf(() => t1.unmap({ iova: 0n, size: 0n, flags: VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP })), 'EINVAL');
  const ro = new MemoryBacking(PAGE, { writable: false });
  t.equal(errnoOf(() => t1.map({ iova: 0x9000000n, size: P, flags: RW, backing: ro })), 'EPERM');
  t.equal(errnoOf(() => t1.map({ iova: 0x9000000n, size: P, flags: 1, backing: ro })), 'ok');
});

t.test('v2: an unmap that bisects a mapping fails (huge_map)', async (t) => {
  for (const errnos of ['vfio', 'iommufd'] as const) {
    const { ctx, t1, map } = setup({ errnos });
    map(APERTURE, 16 * PAGE);
    const want = errnos === 'vfio' ? 'EINVAL' : 'ENOENT';
    for (let i = 0n; i < 16n; i++) t.equal(errnoOf(() => t1.unmap({ iova: APERTURE + i * P, size: P })), want, `${errnos}: page ${i}`);
    t.equal(errnoOf(() => t1.unmap({ iova: APERTURE - P, size: 2n * P })), want, 'cuts the start');
    t.equal(ctx.compatIoas.areaCount, 1, 'nothing removed');
    t.equal(errnoOf(() => t1.unmap({ iova: 0x100n * P * 1000n, size: P })), errnos === 'vfio' ? 'ok' : 'ENOENT', 'empty range');
    t.equal(t1.unmap({ iova: APERTURE - P, size: 18n * P }).size, 16n * P, 'covering range works');
  }
});

t.test('v1: unmap may cut mappings (huge_map, type1 mode)', async (t) => {
  const { ctx, t1, map, mem } = setup({ version: 1 });
  map(APERTURE, 16 * PAGE, 8 * PAGE);
  const r = rng(3);
  const order = [...Array(16).keys()].sort(() => r() - 0.5);
  for (const i of order.slice(0, 8)) t.equal(t1.unmap({ iova: APERTURE + BigInt(i) * P, size: P }).size, P, `cut page ${i}`);
  t.equal(ctx.compatIoas.areaCount <= 8 + 1 + 8, true);
  // what is left still translates to the right backing bytes
  for (const i of order.slice(8)) {
    const hit = ctx.compatIoas.locate(APERTURE + BigInt(i) * P)!;
    t.equal(hit.area.offset + hit.pos, (8 + i) * PAGE);
  }
  t.equal(t1.unmap({ iova: APERTURE, size: 16n * P }).size, 8n * P);
  t.equal(mem.refs, 1);
  t.equal(errnoOf(() => t1.dirtyPages({ flags: VFIO_IOMMU_DIRTY_PAGES_FLAG_START })), 'EACCES', 'dirty tracking needs v2');
});

t.test('dma_entry_limit: ENOSPC, and DMA_AVAIL counts down', async (t) => {
  const { t1, map } = setup({ dmaEntryLimit: 3 });
  t.equal(t1.dmaAvail, 3);
  for (let i = 0n; i < 3n; i++) map(APERTURE + i * P, PAGE);
  t.equal(t1.dmaAvail, 0);
  t.equal(errnoOf(() => map(APERTURE + 10n * P, PAGE)), 'ENOSPC');
  t.equal(errnoOf(() => map(APERTURE, PAGE)), 'EEXIST', 'EEXIST is checked first');
  t1.unmap({ iova: APERTURE, size: P });
  map(APERTURE + 10n * P, PAGE);
  const info = t1.getInfo();
  const avail = info.caps.find((c) => c.id === VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);
  t.same(avail, { id: VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, version: 1, avail: 0 });
});

t.test('GET_INFO: pgsizes and capabilities; reserved ranges narrow the IOVA ranges', async (t) => {
  const { ctx, t1, map } = setup();
  let info = t1.getInfo();
  t.equal(info.flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
  t.equal(info.iovaPgsizes & (P - 1n), 0n);
  t.equal(info.iovaPgsizes & P, P, '4 KiB supported');
  t.same(info.caps.find((c) => c.id === VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE), {
    id: VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
    version: 1,
    iovaRanges: [{ start: 0n, end: U64_MAX }],
  });
  t.equal(info.caps.length, 3);
  ctx.compatIoas.addReserved(0xfee00000n, 0xfeefffffn, 'msi');
  info = t1.getInfo();
  t.same((info.caps[0] as { iovaRanges: unknown }).iovaRanges, [
    { start: 0n, end: 0xfedfffffn },
    { start: 0xfef00000n, end: U64_MAX },
  ]);
  t.equal(errnoOf(() => map(0xfee00000n, PAGE)), 'EINVAL', 'map into a reserved range');
});

t.test('dirty pages: start / get bitmap / stop, unmap with bitmap', async (t) => {
  const { ctx, t1, map } = setup();
  const dev = ctx.addDevice('nic');
  map(APERTURE, 8 * PAGE);
  map(APERTURE + 8n * P, 8 * PAGE, 8 * PAGE);
  const get = (iova: bigint, size: bigint, pgsize = PAGE) => t1.dirtyPages({ flags: VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, iova, size, pgsize }).bitmap!;
  t.equal(errnoOf(() => get(APERTURE, 16n * P)), 'EINVAL', 'not started');
  t.equal(errnoOf(() => t1.dirtyPages({ flags: VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP })), 'EINVAL', 'one flag at a time');
  t1.dirtyPages({ flags: VFIO_IOMMU_DIRTY_PAGES_FLAG_START });
  await dev.dma.write(Number(APERTURE) + 2 * PAGE + 10, Buffer.alloc(PAGE)); // pages 2 and 3
  await dev.dma.write(APERTURE + 9n * P, Buffer.from([1])); // page 9
  t.equal(errnoOf(() => get(APERTURE, 16n * P, 2 * PAGE)), 'EINVAL', 'only the minimum page size');
  t.equal(errnoOf(() => get(APERTURE + P, 2n * P)), 'EINVAL', 'bisects a mapping');
  t.equal(errnoOf(() => get(APERTURE, 10n)), 'EINVAL', 'unaligned size');
  let bm = get(APERTURE, 16n * P);
  t.equal(bm.length, 8, 'one u64 word');
  t.same([...bm], [0b00001100, 0b00000010, 0, 0, 0, 0, 0, 0]);
  bm = get(APERTURE, 16n * P);
  t.same([...bm], [0, 0, 0, 0, 0, 0, 0, 0], 'cleared by the report');
  await dev.dma.write(APERTURE + 15n * P, Buffer.from([1]));
  t.equal(errnoOf(() => t1.unmap({ iova: APERTURE + 8n * P, size: 8n * P, flags: VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, bitmapPgsize: 2 * PAGE })), 'EINVAL');
  const u = t1.unmap({ iova: APERTURE + 8n * P, size: 8n * P, flags: VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, bitmapPgsize: PAGE });
  t.equal(u.size, 8n * P);
  t.same([...u.bitmap!], [0b10000000, 0, 0, 0, 0, 0, 0, 0], 'page 7 of the unmapped range');
  t1.dirtyPages({ flags: VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP });
  t.equal(errnoOf(() => t1.unmap({ iova: APERTURE, size: 8n * P, flags: VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, bitmapPgsize: PAGE })), 'EINVAL', 'tracking stopped');
});

t.test('no compat IOAS: ENODEV (unmap_cmd / map_cmd / info_cmd)', async (t) => {
  const ctx = new IommuContext({ defaultIoas: false });
  const mem = new MemoryBacking(PAGE);
  t.equal(errnoOf(() => ctx.type1.unmap({ iova: APERTURE, size: P })), 'ENODEV');
  t.equal(errnoOf(() => ctx.type1.map({ iova: APERTURE, size: P, flags: RW, backing: mem })), 'ENODEV');
  t.equal(errnoOf(() => ctx.type1.getInfo()), 'ENODEV');
});

t.test('messenger-backed DMA_MAP: the backing base is the DMA address', async (t) => {
  const { ctx, t1 } = setup();
  const seen: bigint[] = [];
  const messenger = {
    maxChunk: 1024,
    read: async (addr: bigint, len: number) => {
      seen.push(addr);
      return Buffer.alloc(len, 0xab);
    },
    write: async () => {},
  };
  t1.map({ iova: APERTURE, size: 4n * P, flags: RW, messenger });
  const area = ctx.compatIoas.list()[0];
  t.equal(area.backing.kind, 'message');
  const data = await ctx.addDevice('d').dma.read(APERTURE + P, 2048);
  t.equal(data.length, 2048);
  t.same(seen, [APERTURE + P, APERTURE + P + 1024n], 'chunked to maxChunk');
});
