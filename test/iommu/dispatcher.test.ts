// The one dispatcher: every operation's shape, legacy and new, with plain
// objects in and out (as the control socket will use it).
import t from 'tap';
import { IommuContext } from '../../iommu/context.js';
import { IommuDispatcher } from '../../iommu/dispatcher.js';
import { IommuError } from '../../iommu/errors.js';
import { VfioUserError } from '../../protocol/errno.js';
import { PAGE, errnoOfAsync } from './helpers.js';


t.test('issue scenario: second IOAS, copy of guest RAM, PASID 1, same bytes; bisect and EBUSY', async (t) => {
  const ctx = new IommuContext();
  ctx.addDevice('gpio0');
  const d = (op: string, a: Record<string, unknown> = {}) => ctx.dispatch(op, a);
  // "guest RAM" mapped the legacy way
  await d('type1.map', { iova: 0x100000, size: 64 * PAGE, flags: 3 });
  await d('dma.write', { device: 'gpio0', iova: 0x100000 + 8 * PAGE, data: 'deadbeef' });
  const { ioasId } = (await d('ioas.alloc')) as { ioasId: number };
  t.equal(ioasId, 3, 'object 1 is the compat IOAS, 2 the device');
  const { dstIova } = await d('ioas.copy', { srcIoasId: 1, srcIova: 0x100000 + 8 * PAGE, length: 4 * PAGE, dstIoasId: ioasId, dstIova: '0x40000000' });
  t.equal(dstIova, 0x40000000);
  await d('device.attach', { device: 'gpio0', ioasId, pasid: 1 });
  const a = (await d('dma.read', { device: 'gpio0', iova: 0x100000 + 8 * PAGE, length: 4 })) as { data: Buffer };
  const b = (await d('dma.read', { device: 'gpio0', iova: 0x40000000, length: 4, pasid: 1 })) as { data: Buffer };
  t.same(b.data, a.data);
  t.equal(b.data.toString('hex'), 'deadbeef');
  t.equal(await errnoOfAsync(() => d('type1.unmap', { iova: 0x100000 + PAGE, size: PAGE })), 'EINVAL', 'type1 bisect');
  t.equal(await errnoOfAsync(() => d('ioas.destroy', { ioasId })), 'EBUSY');
  await d('device.detach', { device: 'gpio0', pasid: 1 });
  t.same(await d('ioas.destroy', { ioasId }), {});
});

t.test('ioas.* operations and result shapes', async (t) => {
  const ctx = new IommuContext();
  const d = (op: string, a: Record<string, unknown> = {}) => ctx.dispatch(op, a);
  const { ioasId } = (await d('ioas.alloc')) as { ioasId: number };
  const m1 = (await d('ioas.map', { ioasId, length: 2 * PAGE })) as { iova: number };
  t.equal(typeof m1.iova, 'number');
  const m2 = await d('ioas.map', { ioasId, length: PAGE, iova: 2n ** 63n, readable: true, writeable: false });
  t.equal(m2.iova, 2n ** 63n, 'IOVAs above 2^53 come back as bigint');
  const list = (await d('ioas.list', { ioasId })) as { areas: { iova: unknown; writeable: boolean; length: number }[] };
  t.equal(list.areas.length, 2);
  t.equal(list.areas[1].writeable, false);
  await d('ioas.addReserved', { ioasId, start: 0xfee00000, length: 0x100000, owner: 'msi' });
  const r = (await d('ioas.iovaRanges', { ioasId })) as { ranges: { start: unknown; last: unknown }[]; alignment: number };
  t.same(r.ranges, [
    { start: 0, last: 0xfedfffff },
    { start: 0xfef00000, last: 2n ** 64n - 1n },
  ]);
  t.equal(r.alignment, PAGE);
  try {
    await d('ioas.iovaRanges', { ioasId, numIovas: 1 });
    t.fail('EMSGSIZE');
  } catch (e) {
    t.ok(e instanceof IommuError);
    t.equal((e as IommuError).errno, 90);
    t.equal((e as IommuError).data.numIovas, 2);
  }
  t.equal(await errnoOfAsync(() => d('ioas.allowIovas', { ioasId, ranges: [{ start: 0xfe000000, last: 0xfeffffff }] })), 'EADDRINUSE');
  await d('ioas.allowIovas', { ioasId, ranges: [{ start: '0x10000000', last: '0x1fffffff' }] });
  const m3 = (await d('ioas.map', { ioasId, length: PAGE })) as { iova: number };
  t.ok(m3.iova >= 0x10000000 && m3.iova < 0x20000000);
  await d('ioas.removeReserved', { ioasId, owner: 'msi' });
  t.same(await d('ioas.unmap', { ioasId, iova: m1.iova, length: 2 * PAGE }), { length: 2 * PAGE });
  t.same(await d('ioas.unmap', { ioasId, iova: 0, length: 2n ** 64n - 1n }), { length: 2 * PAGE }, 'unmap all');
  t.equal(await errnoOfAsync(() => d('ioas.unmap', { ioasId, iova: 0, length: PAGE })), 'ENOENT');
  const info = (await d('context.info')) as { ioas: unknown[]; compatIoasId: number };
  t.equal(info.compatIoasId, 1);
  t.equal(info.ioas.length, 2);
});

t.test('device, compat and dirty operations', async (t) => {
  const ctx = new IommuContext();
  ctx.addDevice('nvme0');
  const d = (op: string, a: Record<string, unknown> = {}) => ctx.dispatch(op, a);
  const { ioasId } = (await d('ioas.alloc')) as { ioasId: number };
  await d('device.replace', { device: 'nvme0', ioasId });
  let devs = (await d('device.list')) as { devices: { name: string; ioasId: number }[] };
  t.same(devs.devices[0], { name: 'nvme0', id: 2, ioasId, pasids: [] });
  await d('device.replace', { device: 'nvme0', ioasId: 1 });
  await d('device.attach', { device: 'nvme0', ioasId, pasid: 7 });
  devs = (await d('device.list')) as { devices: { name: string; ioasId: number }[] };
  t.same(devs.devices[0], { name: 'nvme0', id: 2, ioasId: 1, pasids: [{ pasid: 7, ioasId }] });
  t.equal(await errnoOfAsync(() => d('device.attach', { device: 'nope', ioasId })), 'ENODEV');
  t.same(await d('compat.get'), { ioasId: 1 });
  await d('compat.set', { ioasId });
  t.same(await d('compat.get'), { ioasId });
  await d('compat.clear');
  t.equal(await errnoOfAsync(() => d('compat.get')), 'ENODEV');
  await d('compat.set', { ioasId: 1 });
  await d('type1.map', { iova: 0x10000, size: 4 * PAGE, flags: 3 });
  await d('dirty.start');
  await d('dma.write', { device: 'nvme0', iova: 0x10000 + 2 * PAGE, data: [1, 2] });
  const rep = (await d('dirty.report', { iova: 0x10000, length: 4 * PAGE, clear: false })) as { bitmap: Uint8Array };
  t.equal(rep.bitmap[0], 0b100);
  const t1 = (await d('type1.dirtyPages', { flags: 4, iova: 0x10000, size: 4 * PAGE, pgsize: PAGE })) as { bitmap: Uint8Array };
  t.equal(t1.bitmap[0], 0b100, 'legacy GET_BITMAP sees the same pages');
  await d('dma.write', { device: 'nvme0', iova: 0x10000, data: Buffer.from([5]) });
  const u = (await d('type1.unmap', { iova: 0x10000, size: 4 * PAGE, flags: 1, bitmapPgsize: PAGE })) as { size: number; bitmap: Uint8Array };
  t.equal(u.size, 4 * PAGE);
  t.equal(u.bitmap[0], 1);
  await d('dirty.stop');
  const info = (await d('type1.getInfo')) as { iovaPgsizes: bigint; caps: { id: number }[] };
  t.equal(typeof info.iovaPgsizes, 'bigint');
  t.same(info.caps.map((c) => c.id), [1, 2, 3]);
});

t.test('argument errors', async (t) => {
  const ctx = new IommuContext();
  const d = (op: string, a: Record<string, unknown> = {}) => ctx.dispatch(op, a);
  t.equal(await errnoOfAsync(() => d('no.such.op')), 'ENOSYS');
  t.equal(await errnoOfAsync(() => d('toString')), 'ENOSYS', 'no prototype lookups');
  t.equal(await errnoOfAsync(() => d('ioas.map', { ioasId: 1 })), 'EINVAL', 'missing length');
  t.equal(await errnoOfAsync(() => d('ioas.map', { ioasId: 1, length: -4096 })), 'EINVAL');
  t.equal(await errnoOfAsync(() => d('ioas.map', { ioasId: 1, length: 'lots' })), 'EINVAL');
  t.equal(await errnoOfAsync(() => d('ioas.map', { ioasId: 1, length: PAGE, readable: 'yes' })), 'EINVAL');
  t.equal(await errnoOfAsync(() => d('ioas.map', { ioasId: 1, length: PAGE, readable: false, writeable: false })), 'EINVAL');
  t.equal(await errnoOfAsync(() => d('ioas.map', { ioasId: 9, length: PAGE })), 'ENOENT');
  t.equal(await errnoOfAsync(() => d('device.attach', { device: 'x', ioasId: 1, pasid: 1 << 20 })), 'EINVAL');
  t.equal(await errnoOfAsync(() => d('dma.read', { device: 'x', iova: 0, length: 1 << 30 })), 'EINVAL', 'too large');
  t.equal(await errnoOfAsync(() => d('dma.write', { device: 'x', iova: 0, data: 'xyz' })), 'EINVAL', 'odd hex');
  const e = await d('ioas.unmap', { ioasId: 1, iova: 0, length: 0 }).catch((x) => x);
  t.ok(e instanceof VfioUserError);
  t.ok(IommuDispatcher.ops.includes('type1.map'));
  t.ok(IommuDispatcher.ops.length >= 25);
});

t.test('u64 text is bounded before it is parsed', async (t) => {
  const ctx = new IommuContext();
  const d = (op: string, a: Record<string, unknown> = {}) => ctx.dispatch(op, a);
  t.equal(await errnoOfAsync(() => d('ioas.unmap', { ioasId: 1, iova: `0x${'0'.repeat(200_000)}1`, length: PAGE })), 'EINVAL', 'a 200 kB number');
  t.equal(await errnoOfAsync(() => d('ioas.unmap', { ioasId: 1, iova: `0x${'0'.repeat(40)}1000`, length: PAGE })), 'ENOENT', 'leading zeros within reason parse');
  t.equal(await errnoOfAsync(() => d('ioas.allowIovas', { ioasId: 1, ranges: [7] })), 'EINVAL', 'a range that is not {start, last}');
});
