// Context: object ids, IOAS alloc/destroy, compat IOAS, devices, attach /
// detach / replace per device and per PASID, copy between IOAS.
import t from 'tap';
import { MemoryBacking } from '../../iommu/backing.js';
import { IommuContext } from '../../iommu/context.js';
import { U64_MAX } from '../../protocol/wire.js';
import { PAGE, RW, errnoOf } from './helpers.js';

const P = BigInt(PAGE);

t.test('object ids start at 1 and the lowest free id is reused', async (t) => {
  const ctx = new IommuContext();
  t.equal(ctx.compatIoas.id, 1, 'the compat IOAS is object 1');
  const a = ctx.allocIoas();
  const b = ctx.allocIoas();
  t.same([a.id, b.id], [2, 3]);
  ctx.destroy(a.id);
  t.equal(ctx.allocIoas().id, 2);
  t.equal(errnoOf(() => ctx.destroy(0)), 'ENOENT', 'object id is invalid');
  t.equal(errnoOf(() => ctx.destroy(99)), 'ENOENT');
  t.equal(errnoOf(() => ctx.getIoas(99)), 'ENOENT');
  const dev = ctx.addDevice('nvme0');
  t.equal(dev.id, 4);
  t.equal(errnoOf(() => ctx.getIoas(dev.id)), 'ENOENT', 'a device id is not an IOAS');
  t.equal(errnoOf(() => ctx.destroy(dev.id)), 'EBUSY', 'devices belong to the server');
});

t.test('destroy: EBUSY while attached, unmaps everything otherwise (ioas_destroy / ioas_area_destroy)', async (t) => {
  const ctx = new IommuContext();
  const mem = new MemoryBacking(4 * PAGE);
  const ioas = ctx.allocIoas();
  ioas.map({ backing: mem, length: P, prot: RW, iova: P });
  ctx.addDevice('d');
  ctx.attach('d', ioas.id, 1);
  t.equal(errnoOf(() => ctx.destroy(ioas.id)), 'EBUSY');
  t.equal(errnoOf(() => ctx.destroy(ctx.compatIoas.id)), 'EBUSY', 'compat IOAS has the device RID');
  ctx.detach('d', 1);
  const r = ctx.destroy(ioas.id);
  t.equal(r.length, P);
  t.equal(mem.refs, 1, 'areas released their backing');
  t.equal(errnoOf(() => ctx.getIoas(ioas.id)), 'ENOENT');
});

t.test('compat IOAS get / set / clear (vfio_ioas)', async (t) => {
  const ctx = new IommuContext({ defaultIoas: false });
  t.equal(errnoOf(() => ctx.compatIoas), 'ENODEV', 'no compat IOAS');
  t.equal(errnoOf(() => ctx.type1.getInfo()), 'ENODEV');
  t.equal(errnoOf(() => ctx.compatSet(5)), 'ENOENT', 'invalid id for set');
  const a = ctx.allocIoas();
  ctx.compatSet(a.id);
  t.equal(ctx.compatIoas, a);
  ctx.compatClear();
  t.equal(errnoOf(() => ctx.compatIoas), 'ENODEV');
  ctx.compatSet(a.id);
  ctx.destroy(a.id);
  t.equal(errnoOf(() => ctx.compatIoas), 'ENODEV', 'destroying the compat IOAS clears it');
});

t.test('devices: register, attach, replace, detach per RID and per PASID', async (t) => {
  const ctx = new IommuContext();
  const d = ctx.addDevice('gpio0');
  t.equal(d.rid, ctx.compatIoas, 'RID attached to the compat IOAS by default');
  t.equal(errnoOf(() => ctx.addDevice('gpio0')), 'EEXIST');
  const lone = ctx.addDevice('lone', { attach: false });
  t.equal(lone.rid, null);
  t.equal(errnoOf(() => ctx.device('nope')), 'ENODEV');
  const b = ctx.allocIoas();
  t.equal(errnoOf(() => ctx.attach('gpio0', b.id)), 'EINVAL', 'already attached: replace it');
  t.equal(errnoOf(() => ctx.attach('gpio0', 77)), 'ENOENT');
  t.equal(errnoOf(() => ctx.attach('gpio0', b.id, -1)), 'EINVAL', 'bad PASID');
  t.equal(errnoOf(() => ctx.attach('gpio0', b.id, 1 << 20)), 'EINVAL', 'PASID is 20 bits');
  ctx.attach('gpio0', b.id, 1);
  t.equal(b.users, 1);
  t.equal(d.ioasFor(1), b);
  t.equal(d.ioasFor(2), null);
  t.equal(errnoOf(() => ctx.replace('gpio0', b.id, 2)), 'EINVAL', 'replace needs an attachment');
  ctx.replace('gpio0', b.id);
  t.equal(d.rid, b);
  t.equal(ctx.compatIoas.users, 0);
  t.equal(b.users, 2);
  ctx.replace('gpio0', b.id); // same IOAS: no-op
  t.equal(b.users, 2);
  ctx.detach('gpio0');
  ctx.detach('gpio0', 1);
  t.equal(b.users, 0);
  t.equal(errnoOf(() => ctx.detach('gpio0')), 'ENOENT');
  ctx.attach('gpio0', b.id, 9);
  ctx.removeDevice('gpio0');
  t.equal(b.users, 0, 'removing a device detaches it');
  t.same(
    ctx.deviceList().map((x) => x.name),
    ['lone'],
  );
});

t.test('copy: within and between IOAS, shares the backing (copy_area)', async (t) => {
  const ctx = new IommuContext();
  const mem = new MemoryBacking(8 * PAGE);
  const a = ctx.compatIoas;
  a.map({ backing: mem, length: P, prot: RW, iova: 0x10000n });
  t.equal(ctx.copy({ srcIoasId: a.id, srcIova: 0x10000n, length: P, dstIoasId: a.id, dstIova: 0x10000n + P, prot: RW }), 0x10000n + P);
  const b = ctx.allocIoas();
  t.equal(ctx.copy({ srcIoasId: a.id, srcIova: 0x10000n, length: P, dstIoasId: b.id, dstIova: 0n, prot: RW }), 0n, 'fixed IOVA 0 is fine');
  const got = ctx.copy({ srcIoasId: a.id, srcIova: 0x10000n, length: 2n * P, dstIoasId: b.id, prot: 1 });
  t.ok(got > 0n, 'allocated destination');
  t.equal(b.areaCount, 3, 'one destination area per source area');
  t.equal(mem.refs, 1 + 2 + 3);
  t.equal(errnoOf(() => ctx.copy({ srcIoasId: a.id, srcIova: 0x10000n, length: 3n * P, dstIoasId: b.id, prot: RW })), 'ENOENT', 'source not fully mapped');
  t.equal(errnoOf(() => ctx.copy({ srcIoasId: a.id, srcIova: 0x10000n, length: 0n, dstIoasId: b.id, prot: RW })), 'EINVAL');
  t.equal(errnoOf(() => ctx.copy({ srcIoasId: a.id, srcIova: U64_MAX, length: P, dstIoasId: b.id, prot: RW })), 'EOVERFLOW');
  t.equal(errnoOf(() => ctx.copy({ srcIoasId: a.id, srcIova: 0x10000n, length: P, dstIoasId: b.id, prot: 0 })), 'EINVAL');
  t.equal(errnoOf(() => ctx.copy({ srcIoasId: a.id, srcIova: 0x10000n, length: P, dstIoasId: 50, prot: RW })), 'ENOENT');
  t.equal(errnoOf(() => ctx.copy({ srcIoasId: a.id, srcIova: 0x10000n, length: P, dstIoasId: b.id, dstIova: 0n, prot: RW })), 'EEXIST');
  const ro = new MemoryBacking(PAGE, { writable: false });
  a.map({ backing: ro, length: P, prot: 1, iova: 0x40000n });
  t.equal(errnoOf(() => ctx.copy({ srcIoasId: a.id, srcIova: 0x40000n, length: P, dstIoasId: b.id, prot: RW })), 'EPERM', 'cannot gain write on read-only memory');
});

t.test('mapMemory: anonymous heap memory without the native addon', async (t) => {
  const ctx = new IommuContext();
  const iova = ctx.mapMemory(ctx.compatIoas.id, { length: 4n * P, prot: RW });
  t.ok(iova > 0n);
  const area = ctx.compatIoas.list()[0];
  t.equal(area.backing.kind, 'memory');
  t.equal(errnoOf(() => ctx.mapMemory(ctx.compatIoas.id, { length: P, prot: RW, file: '/etc/hostname' })), 'EOPNOTSUPP');
  t.equal(errnoOf(() => ctx.mapMemory(ctx.compatIoas.id, { length: 0n, prot: RW })), 'EINVAL');
});

t.test('dropClientMappings removes client memory everywhere, keeps the rest', async (t) => {
  const ctx = new IommuContext();
  const client = new MemoryBacking(4 * PAGE);
  client.clientOwned = true;
  const mine = new MemoryBacking(PAGE);
  ctx.compatIoas.map({ backing: client, length: 4n * P, prot: RW, iova: 0x100000n });
  const b = ctx.allocIoas();
  ctx.copy({ srcIoasId: 1, srcIova: 0x100000n, length: P, dstIoasId: b.id, dstIova: P, prot: RW });
  b.map({ backing: mine, length: P, prot: RW, iova: 8n * P });
  ctx.compatIoas.dirtyStart();
  await ctx.dropClientMappings();
  t.equal(ctx.compatIoas.areaCount, 0);
  t.equal(b.areaCount, 1);
  t.equal(client.refs, 1);
  t.equal(ctx.compatIoas.dirtyTracking, false);
});
