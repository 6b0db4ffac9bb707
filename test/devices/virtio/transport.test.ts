// The virtio modern PCI transport, register by register: identity and the
// vendor capabilities Linux's virtio_pci_modern parses, feature negotiation
// and FEATURES_OK refusal, status and reset, queue registers, MSI-X vectors,
// ISR + INTx, config generation, NEEDS_RESET on a broken ring, the
// PCI_CFG window, and doorbells that never return a promise.
import t from 'tap';
import { VirtioPciTransport, type VirtioDeviceSpec } from '../../../devices/virtio/transport.js';
import {
  bit,
  CapType,
  Common,
  Desc,
  Feature,
  Isr,
  NO_VECTOR,
  Status,
} from '../../../devices/virtio/constants.js';
import type { DescChain } from '../../../devices/virtio/virtqueue.js';
import { cfgRead, cfgWrite, fakeFds, walkCaps } from '../helpers.js';
import {
  attach,
  DEFAULT_DRIVER_FEATURES,
  enableIntx,
  enableMsix,
  makeGuest,
  PciDriver,
  turns,
  until,
} from './env.js';

const DEV_FEATURE = 7; // some device-type feature bit

function make(patch: Partial<VirtioDeviceSpec> = {}) {
  const fds = fakeFds();
  const chains: DescChain[] = [];
  const resets: number[] = [];
  const config = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const tr = new VirtioPciTransport(
    {
      name: 'test-virtio',
      deviceId: 4,
      classCode: 0xff0000,
      queueSizes: [8, 16],
      features: bit(DEV_FEATURE),
      config,
      handle: (c) => {
        chains.push(c);
        c.complete(c.writable);
      },
      reset: () => void resets.push(1),
      configWritable: (off, len) => off >= 4 && off + len <= 8,
      ...patch,
    },
    { fdOps: fds.ops },
  );
  const g = makeGuest();
  const { log } = attach(tr.pci, g);
  const drv = new PciDriver(tr.pci, g.mem);
  return { tr, dev: tr.pci, fds, g, drv, chains, resets, log, config };
}

t.test('PCI identity and the virtio capabilities', async (t) => {
  const { dev } = make();
  t.equal(cfgRead(dev, 0x00, 2), 0x1af4, 'vendor');
  t.equal(cfgRead(dev, 0x02, 2), 0x1044, 'device 0x1040 + type');
  t.equal(cfgRead(dev, 0x08, 1), 1, 'revision 1 (modern)');
  t.equal(cfgRead(dev, 0x2c, 2), 0x1af4, 'subsystem vendor');
  t.equal(cfgRead(dev, 0x0a, 2), 0xff00, 'class');
  t.equal(cfgRead(dev, 0x3d, 1), 1, 'INTA');
  t.equal(cfgRead(dev, 0x10 + 4 * 4, 4) & 0xf, 0xc, 'BAR4: 64-bit prefetchable memory');
  t.equal(cfgRead(dev, 0x10 + 4 * 1, 4) & 0xf, 0x0, 'BAR1: 32-bit memory');
  t.equal(dev.regionInfo(4).size, 0x4000);
  t.equal(dev.regionInfo(1).size, 0x1000);

  const caps = walkCaps(dev);
  t.same(caps.map(([id]) => id), [0x11, 9, 9, 9, 9, 9], 'MSI-X, then five vendor capabilities');
  const vendor = caps.filter(([id]) => id === 9).map(([, off]) => ({
    len: cfgRead(dev, off + 2, 1),
    type: cfgRead(dev, off + 3, 1),
    bar: cfgRead(dev, off + 4, 1),
    offset: cfgRead(dev, off + 8, 4),
    length: cfgRead(dev, off + 12, 4),
    extra: cfgRead(dev, off + 16, 4),
  }));
  t.same(vendor.map((v) => [v.type, v.len]), [
    [CapType.COMMON, 16],
    [CapType.ISR, 16],
    [CapType.DEVICE, 16],
    [CapType.NOTIFY, 20],
    [CapType.PCI_CFG, 20],
  ], 'cfg_type and cap_len of each');
  t.same(vendor.slice(0, 4).map((v) => [v.bar, v.offset, v.length]), [
    [4, 0x0000, 0x1000],
    [4, 0x1000, 0x1000],
    [4, 0x2000, 0x1000],
    [4, 0x3000, 0x1000],
  ], 'bar, offset, length');
  t.equal(vendor[3]!.extra, 4, 'notify_off_multiplier');
  const msix = caps[0]![1];
  t.equal(cfgRead(dev, msix + 2, 2) & 0x7ff, 2, 'MSI-X table of 3 vectors (2 queues + config)');
  t.equal(cfgRead(dev, msix + 4, 4), 0x0 | 1, 'table in BAR1 at 0');
  t.equal(cfgRead(dev, msix + 8, 4), 0x800 | 1, 'PBA in BAR1 at 0x800');
});

t.test('feature negotiation', async (t) => {
  const { drv, tr } = make();
  drv.enablePci();
  const offered = drv.deviceFeatures();
  t.equal(offered, bit(DEV_FEATURE) | DEFAULT_DRIVER_FEATURES, 'VERSION_1, EVENT_IDX, INDIRECT_DESC, ACCESS_PLATFORM + device bits');
  drv.setCommon(Common.DEVICE_FEATURE_SELECT, 4, 2);
  t.equal(drv.common(Common.DEVICE_FEATURE, 4), 0, 'feature words past 1 read 0');
  const want = bit(Feature.VERSION_1) | bit(Feature.EVENT_IDX) | bit(DEV_FEATURE);
  const st = drv.negotiate(want);
  t.equal(st & Status.FEATURES_OK, Status.FEATURES_OK, 'FEATURES_OK sticks');
  t.equal(tr.negotiated, want);
  t.ok(tr.has(Feature.EVENT_IDX) && !tr.has(Feature.INDIRECT_DESC));
  drv.setCommon(Common.DRIVER_FEATURE_SELECT, 4, 0);
  t.equal(drv.common(Common.DRIVER_FEATURE, 4), Number(want & 0xffffffffn), 'driver_feature reads back');
  // Changing features after FEATURES_OK has no effect.
  drv.setCommon(Common.DRIVER_FEATURE, 4, 0);
  t.equal(drv.common(Common.DRIVER_FEATURE, 4), Number(want & 0xffffffffn), 'frozen after FEATURES_OK');
  t.equal(tr.negotiated, want);
});

t.test('FEATURES_OK refused: no VERSION_1, or a feature that was not offered', async (t) => {
  const { drv, tr } = make();
  drv.enablePci();
  let st = drv.negotiate(bit(Feature.EVENT_IDX));
  t.equal(st & Status.FEATURES_OK, 0, 'without VERSION_1: FEATURES_OK does not stick');
  t.equal(tr.negotiated, 0n);
  // negotiate() masks with the offer; set an unoffered bit by hand.
  drv.status = 0;
  drv.status = Status.ACKNOWLEDGE | Status.DRIVER;
  drv.setDriverFeatures(bit(Feature.VERSION_1) | bit(Feature.RING_PACKED));
  drv.status = Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK;
  st = drv.status;
  t.equal(st & Status.FEATURES_OK, 0, 'unoffered RING_PACKED: refused');
  const { drv: drv2 } = make({ validateFeatures: (f) => (f & bit(DEV_FEATURE)) !== 0n });
  drv2.enablePci();
  t.equal(drv2.negotiate(bit(Feature.VERSION_1)) & Status.FEATURES_OK, 0, 'the device model can refuse too');
  t.equal(drv2.negotiate(bit(Feature.VERSION_1) | bit(DEV_FEATURE)) & Status.FEATURES_OK, Status.FEATURES_OK);
});

t.test('queue registers, vectors and reset', async (t) => {
  const { drv, tr, resets } = make();
  drv.enablePci();
  drv.negotiate();
  t.equal(drv.common(Common.NUM_QUEUES, 2), 2);
  drv.setCommon(Common.QUEUE_SELECT, 2, 1);
  t.equal(drv.common(Common.QUEUE_SIZE, 2), 16, 'max size of queue 1');
  t.equal(drv.common(Common.QUEUE_NOTIFY_OFF, 2), 1);
  t.equal(drv.common(Common.QUEUE_MSIX_VECTOR, 2), NO_VECTOR, 'no vector after reset');
  drv.setCommon(Common.QUEUE_SIZE, 2, 32);
  t.equal(drv.common(Common.QUEUE_SIZE, 2), 16, 'a size above the maximum is refused');
  drv.setCommon(Common.QUEUE_SIZE, 2, 4);
  t.equal(drv.common(Common.QUEUE_SIZE, 2), 4, 'a smaller size is taken');
  drv.setCommon(Common.QUEUE_MSIX_VECTOR, 2, 2);
  t.equal(drv.common(Common.QUEUE_MSIX_VECTOR, 2), 2);
  drv.setCommon(Common.QUEUE_MSIX_VECTOR, 2, 3);
  t.equal(drv.common(Common.QUEUE_MSIX_VECTOR, 2), NO_VECTOR, 'a vector past the table reads back NO_VECTOR');
  drv.setCommon(Common.CONFIG_MSIX_VECTOR, 2, 0);
  t.equal(drv.common(Common.CONFIG_MSIX_VECTOR, 2), 0);
  drv.set64(Common.QUEUE_DESC, 0x1_2345_6000);
  drv.set64(Common.QUEUE_DRIVER, 0x20000);
  drv.set64(Common.QUEUE_DEVICE, 0x30000);
  const b = drv.dev.regionRead(4, Common.QUEUE_DESC, 8) as Buffer;
  t.equal(b.readBigUInt64LE(0), 0x1_2345_6000n, 'queue_desc as one 64-bit read');
  drv.setCommon(Common.QUEUE_ENABLE, 2, 1);
  t.equal(drv.common(Common.QUEUE_ENABLE, 2), 1);
  drv.set64(Common.QUEUE_DESC, 0x5000);
  drv.setCommon(Common.QUEUE_SIZE, 2, 8);
  t.equal(drv.common(Common.QUEUE_DESC, 4), 0x2345_6000, 'addresses frozen once enabled');
  t.equal(drv.common(Common.QUEUE_SIZE, 2), 4, 'size frozen once enabled');
  drv.setCommon(Common.QUEUE_SELECT, 2, 7);
  t.equal(drv.common(Common.QUEUE_SIZE, 2), 0, 'a queue that does not exist has size 0');
  drv.setCommon(Common.QUEUE_ENABLE, 2, 1); // ignored

  const before = resets.length;
  drv.status = 0;
  t.equal(drv.status, 0, 'reset: status reads 0');
  t.equal(resets.length, before + 1, "the model's reset ran");
  t.equal(tr.negotiated, 0n, 'features cleared');
  t.equal(drv.common(Common.QUEUE_SELECT, 2), 0);
  t.equal(drv.common(Common.CONFIG_MSIX_VECTOR, 2), NO_VECTOR);
  drv.setCommon(Common.QUEUE_SELECT, 2, 1);
  t.same(
    [Common.QUEUE_ENABLE, Common.QUEUE_SIZE, Common.QUEUE_MSIX_VECTOR].map((r) => drv.common(r, 2)),
    [0, 16, NO_VECTOR],
    'queue 1: disabled, max size, no vector',
  );
  t.equal(drv.common(Common.QUEUE_DESC, 4) + drv.common(Common.QUEUE_DRIVER, 4) + drv.common(Common.QUEUE_DEVICE, 4), 0, 'addresses cleared');
  t.notOk(tr.queues[1]!.enabled);
});

t.test('accesses of odd widths hit the right registers', async (t) => {
  const { drv, dev } = make();
  drv.enablePci();
  drv.negotiate();
  // One 4-byte write over queue_select (0x16) and queue_size (0x18).
  dev.regionWrite(4, Common.QUEUE_SELECT, Buffer.from([1, 0, 8, 0]));
  t.equal(drv.common(Common.QUEUE_SELECT, 2), 1);
  t.equal(drv.common(Common.QUEUE_SIZE, 2), 8);
  t.equal(drv.common(Common.QUEUE_SIZE + 1, 1), 0, 'a byte read inside a register');
  const whole = dev.regionRead(4, 0, 0x40) as Buffer;
  t.equal(whole.length, 0x40);
  t.equal(whole.readUInt16LE(Common.NUM_QUEUES), 2, 'one big read sees the whole structure');
  t.equal((dev.regionRead(4, 0x800, 4) as Buffer).readUInt32LE(0), 0, 'past the structure reads 0');
});

t.test('device configuration: reads, writable bytes, generation, config interrupt', async (t) => {
  const { drv, tr, dev, fds, config } = make();
  drv.init(2, { msix: true });
  enableMsix(dev, fds);
  t.equal(drv.read(0x2000, 4), 0x04030201, 'config read');
  t.equal(drv.read(0x2000 + 6, 2), 0x0807);
  t.equal(drv.read(0x2000 + 8, 4), 0, 'past the config: 0');
  drv.write(0x2000, 1, 0xff);
  t.equal(config[0], 1, 'read-only config bytes ignore writes');
  drv.write(0x2004, 2, 0xbbaa);
  t.same([config[4], config[5]], [0xaa, 0xbb], 'writable config bytes take writes');
  const gen = drv.common(Common.CONFIG_GENERATION, 1);
  fds.signals.length = 0;
  tr.configChanged();
  t.equal(drv.common(Common.CONFIG_GENERATION, 1), (gen + 1) & 0xff, 'generation bumps');
  t.same(fds.signals, [100 + 2], 'config change → MSI-X config vector (2)');
});

t.test('queue interrupts: MSI-X per-queue vectors', async (t) => {
  const { drv, dev, fds, g } = make();
  const [r0, r1] = drv.init(2, { msix: true });
  enableMsix(dev, fds);
  fds.signals.length = 0;
  r1!.push(r1!.chain([{ addr: g.mem.alloc(4), len: 4, write: true }]));
  drv.notify(1);
  await until(() => r1!.usedIdx === 1, 'queue 1 used');
  await turns();
  t.same(fds.signals, [101], 'queue 1 → vector 1');
  r0!.push(r0!.chain([{ addr: g.mem.alloc(4), len: 4, write: true }]));
  drv.notify(0);
  await until(() => r0!.usedIdx === 1, 'queue 0 used');
  await turns();
  t.same(fds.signals, [101, 100], 'queue 0 → vector 0');
  // NO_VECTOR: nothing is signalled (and nothing falls back to INTx).
  drv.status = 0;
  drv.negotiate();
  const r = drv.setupQueue(0);
  drv.driverOk();
  fds.signals.length = 0;
  r.push(r.chain([{ addr: g.mem.alloc(4), len: 4, write: true }]));
  drv.notify(0);
  await until(() => r.usedIdx === 1, 'used');
  await turns();
  t.same(fds.signals, [], 'NO_VECTOR: no interrupt');
  t.notOk(dev.intxLevel, 'and no INTx while MSI-X is on');
});

t.test('INTx fallback: ISR bits, read-to-clear, the line follows', async (t) => {
  const { drv, dev, fds, g } = make();
  const [r0] = drv.init(2);
  enableIntx(dev);
  r0!.push(r0!.chain([{ addr: g.mem.alloc(4), len: 4, write: true }]));
  drv.notify(0);
  await until(() => r0!.usedIdx === 1, 'used');
  await turns();
  t.ok(dev.intxLevel, 'INTx asserted');
  t.same(fds.signals, [50], 'INTx eventfd signalled');
  t.equal(cfgRead(dev, 0x06, 2) & 0x8, 0x8, 'Status.INTERRUPT set');
  t.equal(drv.isr(), Isr.QUEUE, 'ISR: queue interrupt');
  t.notOk(dev.intxLevel, 'reading ISR lowers the line');
  t.equal(drv.isr(), 0, 'and clears it');
});

t.test('a malformed ring: NEEDS_RESET, config interrupt, recovery by reset', async (t) => {
  const { drv, dev, fds, g, chains, log } = make();
  const [r0] = drv.init(2, { msix: true });
  enableMsix(dev, fds);
  fds.signals.length = 0;
  r0!.writeDesc(0, g.mem.alloc(4), 4, Desc.NEXT, 0); // a self loop
  r0!.push(0);
  drv.notify(0);
  await until(() => (drv.status & Status.DEVICE_NEEDS_RESET) !== 0, 'NEEDS_RESET');
  t.equal(drv.status & (Status.DRIVER_OK | Status.DEVICE_NEEDS_RESET), Status.DRIVER_OK | Status.DEVICE_NEEDS_RESET);
  t.same(fds.signals, [102], 'config vector signalled');
  t.match(log.lines.map((l) => l.msg).join('\n'), /needs reset: queue 0: descriptor loop/);
  // Kicks do nothing now.
  r0!.push(r0!.chain([{ addr: g.mem.alloc(4), len: 4, write: true }]));
  drv.notify(0);
  await turns();
  t.equal(chains.length, 0);
  // The driver resets and starts again.
  const [n0] = drv.init(2, { msix: true });
  t.equal(drv.status & Status.DEVICE_NEEDS_RESET, 0, 'reset cleared NEEDS_RESET');
  const head = n0!.chain([{ addr: g.mem.alloc(4), len: 4, write: true }]);
  n0!.push(head);
  drv.notify(0);
  await until(() => n0!.usedIdx === 1, 'used after reset');
  t.same(n0!.takeUsed(), [{ id: head, len: 4 }]);
});

t.test('kicks before DRIVER_OK wait for it; doorbells never return a promise', async (t) => {
  const { drv, g, chains } = make();
  drv.enablePci();
  drv.negotiate();
  const r = drv.setupQueue(0);
  r.push(r.chain([{ addr: g.mem.alloc(4), len: 4, write: true }]));
  drv.notify(0); // PciDriver.write throws if a promise comes back
  drv.notify(1);
  drv.write(0x3000 + 2, 2, 0); // not a doorbell offset
  drv.write(0x3000 + 4 * 40, 2, 40); // no such queue
  await turns();
  t.equal(chains.length, 0, 'nothing consumed before DRIVER_OK');
  drv.driverOk();
  await until(() => r.usedIdx === 1, 'used after DRIVER_OK');
  t.equal(chains.length, 1);
});

t.test('bus mastering off: DMA refused, the device asks for a reset', async (t) => {
  const { drv, g } = make();
  const [r0] = drv.init(1);
  cfgWrite(drv.dev, 0x04, 2, cfgRead(drv.dev, 0x04, 2) & ~0x4);
  r0!.push(r0!.chain([{ addr: g.mem.alloc(4), len: 4, write: true }]));
  drv.notify(0);
  await until(() => (drv.status & Status.DEVICE_NEEDS_RESET) !== 0, 'NEEDS_RESET');
  t.pass('no crash, no DMA');
  // Every door is guarded, the batched one too; bus mastering back on opens it.
  const buf = g.mem.alloc(8);
  const dma = drv.dev.dma!;
  let ran = false;
  await t.rejects(dma.withViews([buf, buf + 4], [4, 4], 2, () => void (ran = true)), { name: 'DmaFault', reason: 'permission' });
  await t.rejects(dma.withView(buf, 4, 2, () => void (ran = true)), { name: 'DmaFault', reason: 'permission' });
  t.notOk(ran, 'no view was handed out');
  cfgWrite(drv.dev, 0x04, 2, cfgRead(drv.dev, 0x04, 2) | 0x4);
  await dma.withViews([buf, buf + 4], [4, 4], 2, (v) => v.forEach((s) => s.fill(7)));
  t.same([...g.mem.read(buf, 8)], Array(8).fill(7), 'bus master on: the views are guest memory');
});

t.test('VIRTIO_PCI_CAP_PCI_CFG: BAR4 through config space', async (t) => {
  const { dev, drv } = make();
  drv.enablePci();
  drv.negotiate();
  const cap = walkCaps(dev).filter(([id]) => id === 9).map(([, off]) => off).find((off) => cfgRead(dev, off + 3, 1) === CapType.PCI_CFG)!;
  cfgWrite(dev, cap + 4, 1, 4);
  cfgWrite(dev, cap + 8, 4, Common.DEVICE_STATUS);
  cfgWrite(dev, cap + 12, 4, 1);
  t.equal(cfgRead(dev, cap + 16, 1), drv.status, 'device_status read through the window');
  cfgWrite(dev, cap + 8, 4, Common.QUEUE_SELECT);
  cfgWrite(dev, cap + 12, 4, 2);
  cfgWrite(dev, cap + 16, 2, 1);
  t.equal(drv.common(Common.QUEUE_SELECT, 2), 1, 'queue_select written through the window');
  cfgWrite(dev, cap + 8, 4, Common.QUEUE_SIZE);
  t.equal(cfgRead(dev, cap + 16, 2), 16, 'queue 1 size through the window');
  // Reset restores the window's registers.
  dev.reset();
  t.equal(cfgRead(dev, cap + 4, 1), 0);
  t.equal(cfgRead(dev, cap + 12, 4), 0);
});

t.test('the PCI_CFG window is not plain: a plain read never skips its fetch from BAR4', async (t) => {
  const { dev } = make();
  const cap = walkCaps(dev).filter(([id]) => id === 9).map(([, off]) => off).find((off) => cfgRead(dev, off + 3, 1) === CapType.PCI_CFG)!;
  const cfg = dev.plainReads().filter((r) => r.region === 7);
  t.same(cfg.map((r) => [r.offset, r.offset + r.bytes.length]), [[0, cap + 16], [cap + 20, dev.regionInfo(7).size]],
    'config space around the 4 bytes of pci_cfg_data');
});

t.test('VFIO device reset and client loss', async (t) => {
  const { drv, dev, tr, g, resets } = make();
  const [r0] = drv.init(1);
  const before = resets.length;
  await dev.reset();
  t.equal(tr.status, 0, 'VFIO_USER_DEVICE_RESET resets virtio too');
  t.equal(resets.length, before + 1, "the model's reset ran");
  t.notOk(tr.queues[0]!.enabled);
  // Client loss keeps registers but drops in-flight work.
  const [n0] = drv.init(1);
  void r0;
  dev.detachClient();
  t.equal(tr.status & Status.DRIVER_OK, Status.DRIVER_OK, 'state kept across detach');
  n0!.push(n0!.chain([{ addr: g.mem.alloc(4), len: 4, write: true }]));
  drv.notify(0);
  await turns();
  t.equal(n0!.usedIdx, 0, 'no DMA without a client');
});
