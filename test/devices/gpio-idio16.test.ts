import t from 'tap';
import { builtinDevice, createDevice, deviceKinds, isDeviceKind } from '../../devices/index.js';
import { Idio16, Idio16Reg as R } from '../../devices/gpio-idio16/index.js';
import { barRead, barWrite, cfgRead, cfgWrite, F, fakeFds, IDX } from './helpers.js';

const BAR = 2;

function gpio(inputs = 0) {
  const fds = fakeFds();
  const g = new Idio16({ inputs, fdOps: fds.ops });
  return { g, dev: g.device, fds };
}

/** What Linux's probe does (gpio-pci-idio-16 + gpio-idio-16 + regmap-irq). */
async function probe(dev: Idio16['device']): Promise<void> {
  cfgWrite(dev, 0x04, 2, 0x0001); // pcim_enable_device: I/O decode
  await barWrite(dev, BAR, R.IRQ_CTL, 1, 0); // disable IRQ before regmap-irq
  await barWrite(dev, BAR, R.IRQ_CTL, 1, 0); // regmap-irq: initial mask sync (all masked)
  if ((await barRead(dev, BAR, R.IRQ_STATUS, 1)) !== 0) await barWrite(dev, BAR, R.IN0_7, 1, 4);
  await barWrite(dev, BAR, R.FILTER_CTL, 1, 0); // deactivate input filters
}

/** regmap-irq unmasking the first line: clear, then enable by reading. */
async function enableIrq(dev: Idio16['device']): Promise<void> {
  await barWrite(dev, BAR, R.IN0_7, 1, 0);
  await barRead(dev, BAR, R.IRQ_CTL, 1);
}

t.test('PCI identity and BAR layout the driver expects', async (t) => {
  const { dev } = gpio();
  t.equal(cfgRead(dev, 0x00, 2), 0x494f, 'ACCES vendor');
  t.equal(cfgRead(dev, 0x02, 2), 0x0dc8, 'PCI-IDIO-16');
  t.equal(cfgRead(dev, 0x3d, 1), 1, 'INTA');
  t.same(dev.regionInfo(2), { size: 0x100, flags: 3 }, 'BAR2: 256 bytes');
  t.equal(cfgRead(dev, 0x18, 4) & 1, 1, 'BAR2 is an I/O BAR');
  for (const i of [0, 1, 3, 4, 5, 6]) t.equal(dev.regionInfo(i).size, 0, `region ${i} absent`);
  t.equal(dev.regionInfo(7).size, 256, 'conventional PCI config space');
  t.same(dev.irqInfo(IDX.INTX), { count: 1, flags: 7 });
  t.equal(dev.irqInfo(IDX.MSI).count, 0);
  t.equal(dev.irqInfo(IDX.MSIX).count, 0);
});

t.test('inputs read at offsets 1 and 5; outputs at 0 and 4', async (t) => {
  const { g, dev } = gpio(0xbeef);
  await probe(dev);
  t.equal(await barRead(dev, BAR, R.IN0_7, 1), 0xef);
  t.equal(await barRead(dev, BAR, R.IN8_15, 1), 0xbe);
  const events: [number, number][] = [];
  g.on('outputs', (v: number, prev: number) => events.push([v, prev]));
  await barWrite(dev, BAR, R.OUT0_7, 1, 0x5a);
  await barWrite(dev, BAR, R.OUT8_15, 1, 0xc3);
  await barWrite(dev, BAR, R.OUT8_15, 1, 0xc3); // unchanged: no event
  t.equal(g.outputs, 0xc35a);
  t.same(events, [
    [0x005a, 0],
    [0xc35a, 0x005a],
  ]);
  t.equal(await barRead(dev, BAR, R.OUT0_7, 1), 0x5a, 'output latch reads back (pre-regmap driver)');
  t.equal(await barRead(dev, BAR, R.OUT8_15, 1), 0xc3);
  g.setInputs(0x1234);
  t.equal(g.inputs, 0x1234);
  t.equal(await barRead(dev, BAR, R.IN0_7, 1), 0x34);
  t.equal(await barRead(dev, BAR, R.IN8_15, 1), 0x12);
  t.equal(await barRead(dev, BAR, 0x80, 1), 0, 'unused offsets read 0');
  await barWrite(dev, BAR, R.IN8_15, 1, 0xff);
  t.equal(g.inputs, 0x1234, 'inputs are not writable');
  // A 4-byte access is four byte accesses in order.
  t.equal(await barRead(dev, BAR, 0, 4), 0x0000345a, 'out0_7, in0_7, irq_ctl (0), filter_ctl (0)');
  t.ok(g.interruptEnabled, 'that read touched IRQ_CTL (enable)');
  t.ok(g.inputFilters, 'and FILTER_CTL (activate)');
});

t.test('input change raises INTx only when the guest enabled the interrupt', async (t) => {
  const { g, dev, fds } = gpio(0);
  await probe(dev);
  dev.setIrqs({ flags: F.EVENTFD | F.TRIGGER, index: IDX.INTX, start: 0, count: 1, fds: [9] });
  g.setInputs(0x0001);
  t.same(fds.signals, [], 'IRQ disabled in the device: nothing');
  t.equal(await barRead(dev, BAR, R.IRQ_STATUS, 1), 0, 'nothing pending');
  await enableIrq(dev);
  t.ok(g.interruptEnabled);
  g.setInputs(0x0101);
  t.same(fds.signals, [9], 'INTx raised');
  t.equal(cfgRead(dev, 0x06, 2) & 0x08, 0x08, 'Status.INTERRUPT');
  // The guest's handler: status, then clear (QEMU unmasks after each BAR access).
  t.equal(await barRead(dev, BAR, R.IRQ_STATUS, 1), 0x06, 'pending, IN8_15 changed');
  dev.setIrqs({ flags: F.NONE | F.UNMASK, index: IDX.INTX, start: 0, count: 1 });
  t.same(fds.signals, [9, 9], 'still asserted after the status read: fires again (level)');
  await barWrite(dev, BAR, R.IN0_7, 1, 4); // regmap-irq ack: clear interrupt
  dev.setIrqs({ flags: F.NONE | F.UNMASK, index: IDX.INTX, start: 0, count: 1 });
  t.same(fds.signals, [9, 9], 'cleared: no more');
  t.equal(await barRead(dev, BAR, R.IRQ_STATUS, 1), 0);
  t.equal(cfgRead(dev, 0x06, 2) & 0x08, 0);
  g.setInputs(0x0103);
  t.same(fds.signals, [9, 9, 9], 'next change');
  t.equal(await barRead(dev, BAR, R.IRQ_STATUS, 1), 0x05, 'IN0_7 changed');
  g.setInputs(0x0103);
  t.equal(await barRead(dev, BAR, R.IRQ_STATUS, 1), 0x05, 'no change, no new bits');
  // The guest masks every line: regmap-irq writes IRQ_CTL (disable).
  await barWrite(dev, BAR, R.IRQ_CTL, 1, 0);
  t.notOk(dev.intxLevel, 'disabling the interrupt drops the line');
  await barWrite(dev, BAR, R.IN0_7, 1, 0);
  dev.setIrqs({ flags: F.NONE | F.UNMASK, index: IDX.INTX, start: 0, count: 1 });
  g.setInputs(0xffff);
  t.same(fds.signals, [9, 9, 9], 'disabled again: nothing');
});

t.test('the pre-regmap driver’s interrupt test passes', async (t) => {
  const { g, dev } = gpio(0);
  await enableIrq(dev);
  g.setInputs(0x8000);
  const status = await barRead(dev, BAR, R.IRQ_STATUS, 1);
  t.ok(status & 0x3 && status & 0x4, '(status & 3) && (status & 4)');
});

t.test('device reset: outputs off, interrupt disabled, inputs kept', async (t) => {
  const { g, dev } = gpio(0x00ff);
  await enableIrq(dev);
  await barWrite(dev, BAR, R.OUT0_7, 1, 0xff);
  g.setInputs(0x0f0f);
  t.ok(dev.intxLevel);
  const events: number[] = [];
  g.on('outputs', (v: number) => events.push(v));
  await dev.reset();
  t.equal(g.outputs, 0);
  t.same(events, [0]);
  t.notOk(g.interruptEnabled);
  t.notOk(dev.intxLevel);
  t.equal(g.inputs, 0x0f0f);
  t.equal(cfgRead(dev, 0x04, 2), 0, 'config reset too');
});

t.test('a throwing outputs listener does not break the guest write', async (t) => {
  const { g, dev } = gpio();
  g.on('outputs', () => {
    throw new Error('listener bug');
  });
  await barWrite(dev, BAR, R.OUT0_7, 1, 1);
  t.equal(g.outputs, 1);
});

t.test('host API validation', async (t) => {
  t.throws(() => new Idio16({ inputs: 0x10000 }), RangeError);
  const { g } = gpio();
  t.throws(() => g.setInputs(-1), RangeError);
  t.throws(() => g.setInputs(1.5), RangeError);
});

t.test('registry', async (t) => {
  const m = createDevice('gpio', { inputs: 0xbeef, fdOps: fakeFds().ops });
  t.ok(m instanceof Idio16);
  t.equal(m.inputs, 0xbeef);
  t.equal(m.device.name, 'gpio-idio16');
  t.equal(m.kind, 'gpio');
  t.ok(isDeviceKind('gpio'));
  t.notOk(isDeviceKind('toString'), 'no prototype keys');
  t.ok(deviceKinds().some((k) => k.kind === 'gpio'), 'gpio is listed');
  t.throws(() => builtinDevice('scsi'), /unknown device kind 'scsi'/);
  t.equal(builtinDevice('gpio').kind, 'gpio');
});
