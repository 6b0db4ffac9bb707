// ClientDmaSpace: the session-shaped adapter (DMA_MAP / DMA_UNMAP / DMA
// logging / disconnect) over type1 and dirty tracking.
import t from 'tap';
import { ClientDmaSpace } from '../../iommu/client-dma.js';
import { IommuContext } from '../../iommu/context.js';
import { MemoryBacking } from '../../iommu/backing.js';
import { DMA_ACCESS_WRITE } from '../../iommu/device-dma.js';
import { PAGE, errnoOf } from './helpers.js';

const P = BigInt(PAGE);

function messengerOver(mem: Buffer, base: bigint) {
  return {
    maxChunk: 1 << 20,
    read: async (addr: bigint, len: number) => Buffer.from(mem.subarray(Number(addr - base), Number(addr - base) + len)),
    write: async (addr: bigint, data: Uint8Array) => {
      mem.set(data, Number(addr - base));
    },
  };
}

t.test('DMA_MAP without fd, DMA through messages, DMA_UNMAP with the bitmap', async (t) => {
  const ctx = new IommuContext();
  ctx.addDevice('dev');
  const space = new ClientDmaSpace(ctx, 'dev');
  const ram = Buffer.alloc(16 * PAGE);
  space.map({ flags: 3, offset: 0n, addr: 0x10000n, size: 16n * P }, null, messengerOver(ram, 0x10000n));
  space.loggingStart(4096n, []);
  await space.dma.write(0x10000n + 3n * P, Buffer.from('abc'));
  t.equal(ram.subarray(3 * PAGE, 3 * PAGE + 3).toString(), 'abc');
  const rep = space.loggingReport(0x10000n, 16n * P, 4096n);
  t.same([...rep], [0b1000, 0, 0, 0, 0, 0, 0, 0]);
  await space.dma.write(0x10000n, Buffer.from([1]));
  const sub = space.loggingReport(0x10000n, P, 1024n);
  t.same([...sub], [0b1111, 0, 0, 0, 0, 0, 0, 0], 'a dirty 4 KiB page covers four 1 KiB bits');
  await space.dma.withView(0x10000n + 15n * P, 1, DMA_ACCESS_WRITE, (v) => v[0].fill(7));
  t.equal(errnoOf(() => space.unmap({ flags: 1, addr: 0x10000n, size: 16n * P, bitmap: { pgsize: 4096n, size: 1 } })), 'EINVAL', 'bitmap buffer too small');
  const bm = await space.unmap({ flags: 1, addr: 0x10000n, size: 16n * P, bitmap: { pgsize: 4096n, size: 16 } });
  t.equal(bm!.length, 16, 'padded to the client buffer');
  t.equal(bm![1], 0b10000000, 'page 15');
  space.loggingStop();
  t.equal(ctx.compatIoas.dirtyTracking, false);
});

t.test('UNMAP_ALL, bisect errno, disconnect drops client memory only', async (t) => {
  const ctx = new IommuContext();
  ctx.addDevice('dev');
  const space = new ClientDmaSpace(ctx, 'dev');
  const ram = Buffer.alloc(8 * PAGE);
  space.map({ flags: 3, offset: 0n, addr: 0x10000n, size: 8n * P }, null, messengerOver(ram, 0x10000n));
  t.equal(errnoOf(() => space.unmap({ flags: 0, addr: 0x10000n, size: P })), 'EINVAL', 'v2 bisect');
  t.equal(await space.unmap({ flags: 0, all: true, addr: 0n, size: 0n }), undefined);
  t.equal(ctx.compatIoas.areaCount, 0);
  space.map({ flags: 3, offset: 0n, addr: 0x10000n, size: 8n * P }, null, messengerOver(ram, 0x10000n));
  const mine = new MemoryBacking(PAGE);
  ctx.compatIoas.map({ backing: mine, length: P, prot: 3, iova: 0x900000n });
  await space.dropAll();
  t.same(ctx.compatIoas.list().map((a) => a.iova), [0x900000n]);
  t.equal(errnoOf(() => space.loggingStart(3n, [])), 'EINVAL');
});
