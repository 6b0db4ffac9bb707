// Access rights never widen: every path that creates an area or hands a
// device a view keeps the rights of the memory it comes from. A copy of a
// read-only mapping cannot be written (iopt_insert_area: EPERM), and devices
// see exactly the rights of the area they reach, whatever PASID or IOAS.
import t from 'tap';
import { PROT_READ, PROT_WRITE } from '../../native/prot.js';
import { MemoryBacking } from '../../iommu/backing.js';
import { IommuContext } from '../../iommu/context.js';
import { DMA_ACCESS_WRITE } from '../../iommu/device-dma.js';
import { Type1Compat } from '../../iommu/type1.js';
import { PAGE, RW, errnoOf, errnoOfAsync, fault } from './helpers.js';

const P = BigInt(PAGE);

/** A context with device 'dev', read-only memory at 0x100000 of the compat IOAS and an empty second IOAS. */
async function setup() {
  const ctx = new IommuContext();
  ctx.addDevice('dev');
  const d = (op: string, a: Record<string, unknown> = {}) => ctx.dispatch(op, a);
  await d('ioas.map', { ioasId: 1, iova: 0x100000, length: 4 * PAGE, readable: true, writeable: false });
  const { ioasId } = (await d('ioas.alloc')) as { ioasId: number };
  return { ctx, d, ioasId };
}

t.test('ioas.copy of a read-only area asking for write: EPERM, nothing mapped', async (t) => {
  const { ctx, d, ioasId } = await setup();
  t.equal(await errnoOfAsync(() => d('ioas.copy', { srcIoasId: 1, srcIova: 0x100000, length: PAGE, dstIoasId: ioasId, dstIova: 0x200000, writeable: true })), 'EPERM');
  t.equal(await errnoOfAsync(() => d('ioas.copy', { srcIoasId: 1, srcIova: 0x100000, length: PAGE, dstIoasId: ioasId, dstIova: 0x200000, readable: true, writeable: true })), 'EPERM');
  t.equal(ctx.getIoas(ioasId).areaCount, 0, 'a refused copy maps nothing');
});

t.test('ioas.copy without rights keeps the source rights; dma.write through the copy faults', async (t) => {
  const { ctx, d, ioasId } = await setup();
  await d('ioas.copy', { srcIoasId: 1, srcIova: 0x100000, length: PAGE, dstIoasId: ioasId, dstIova: 0x200000 });
  const [area] = ctx.getIoas(ioasId).list();
  t.equal(area.readable, true);
  t.equal(area.writeable, false, 'the copy is read-only like its source');
  await d('device.attach', { device: 'dev', ioasId, pasid: 5 });
  t.equal(await errnoOfAsync(() => d('dma.write', { device: 'dev', iova: 0x200000, data: 'ff', pasid: 5 })), 'EFAULT', 'write through the copy faults');
  const back = (await d('dma.read', { device: 'dev', iova: 0x100000, length: 1 })) as { data: Uint8Array };
  t.equal(back.data[0], 0, 'the read-only memory is unchanged');
});

t.test('a copy of several areas keeps each area its own rights', async (t) => {
  const ctx = new IommuContext();
  const mem = new MemoryBacking(4 * PAGE);
  const a = ctx.compatIoas;
  a.map({ backing: mem, length: P, prot: PROT_READ, iova: 0x10000n });
  a.map({ backing: mem, offset: PAGE, length: P, prot: RW, iova: 0x10000n + P });
  a.map({ backing: mem, offset: 2 * PAGE, length: P, prot: PROT_WRITE, iova: 0x10000n + 2n * P });
  const b = ctx.allocIoas();
  ctx.copy({ srcIoasId: a.id, srcIova: 0x10000n, length: 3n * P, dstIoasId: b.id, dstIova: 0x80000n });
  t.same(b.allAreas().map((x) => x.prot), [PROT_READ, RW, PROT_WRITE]);
  const c = ctx.allocIoas();
  t.equal(errnoOf(() => ctx.copy({ srcIoasId: a.id, srcIova: 0x10000n, length: 2n * P, dstIoasId: c.id, prot: RW })), 'EPERM', 'write over the read-only part');
  t.equal(errnoOf(() => ctx.copy({ srcIoasId: a.id, srcIova: 0x10000n + P, length: 2n * P, dstIoasId: c.id, prot: PROT_READ })), 'EPERM', 'read over the write-only part');
  t.equal(errnoOf(() => ctx.copy({ srcIoasId: a.id, srcIova: 0x10000n + P, length: P, dstIoasId: c.id, prot: PROT_READ })), 'ok', 'narrowing is fine');
  t.equal(c.allAreas()[0].prot, PROT_READ);
  t.equal(errnoOf(() => ctx.copy({ srcIoasId: c.id, srcIova: c.allAreas()[0].start, length: P, dstIoasId: b.id, prot: RW })), 'EPERM', 'a narrowed copy cannot be widened again');
});

t.test('map of a given backing: no write on read-only memory (ioas and type1)', async (t) => {
  const ctx = new IommuContext();
  const ro = new MemoryBacking(2 * PAGE, { writable: false });
  t.equal(errnoOf(() => ctx.compatIoas.map({ backing: ro, length: P, prot: RW, iova: P })), 'EPERM');
  t.equal(errnoOf(() => ctx.type1.map({ iova: 0x10000n, size: P, flags: 3, backing: ro })), 'EPERM');
  ctx.type1.map({ iova: 0x10000n, size: P, flags: 1, backing: ro });
  t.equal(ctx.compatIoas.allAreas()[0].prot, PROT_READ);
  const b = ctx.allocIoas();
  t.equal(errnoOf(() => ctx.copy({ srcIoasId: 1, srcIova: 0x10000n, length: P, dstIoasId: b.id, prot: RW })), 'EPERM', 'copy of a type1 read-only map');
});

t.test('type1 v1 split keeps the rights of both halves', async (t) => {
  const ctx = new IommuContext({ type1: { version: 1 } });
  t.ok(ctx.type1 instanceof Type1Compat);
  ctx.type1.map({ iova: 0x10000n, size: 4n * P, flags: 1 });
  ctx.type1.unmap({ iova: 0x10000n + P, size: P });
  t.same(ctx.compatIoas.allAreas().map((x) => x.prot), [PROT_READ, PROT_READ]);
  ctx.addDevice('dev');
  const f = await fault(ctx.dma('dev').write(0x10000 + 2 * PAGE, new Uint8Array(4)));
  t.equal(f.reason, 'permission');
});

t.test('PASID attach / replace: a device sees the rights of the IOAS it is attached to, no more', async (t) => {
  const ctx = new IommuContext();
  ctx.addDevice('dev');
  const mem = new MemoryBacking(PAGE);
  const rw = ctx.allocIoas();
  const ro = ctx.allocIoas();
  rw.map({ backing: mem, length: P, prot: RW, iova: 0x10000n });
  ctx.copy({ srcIoasId: rw.id, srcIova: 0x10000n, length: P, dstIoasId: ro.id, dstIova: 0x10000n, prot: PROT_READ });
  const dma = ctx.dma('dev');
  ctx.attach('dev', rw.id, 3);
  await dma.write(0x10000, Uint8Array.of(7), 3);
  ctx.replace('dev', ro.id, 3);
  t.equal((await fault(dma.write(0x10000, Uint8Array.of(9), 3))).reason, 'permission', 'after replace: read-only');
  t.equal(dma.mappedView(0x10000, 1, DMA_ACCESS_WRITE, 3), null, 'no writable view either');
  t.equal((await fault(dma.withView(0x10000, 1, DMA_ACCESS_WRITE, () => undefined, 3))).reason, 'permission');
  t.equal((await dma.read(0x10000, 1, 3))[0], 7);
  ctx.attach('dev', rw.id, 4);
  await dma.write(0x10000, Uint8Array.of(8), 4);
  t.equal((await dma.read(0x10000, 1, 3))[0], 8, 'the read-only PASID sees writes made through another one');
  ctx.replace('dev', rw.id, 3);
  await dma.write(0x10000, Uint8Array.of(10), 3);
  t.equal(mem.bytes![0], 10, 'replace back to the writable IOAS writes again');
});
