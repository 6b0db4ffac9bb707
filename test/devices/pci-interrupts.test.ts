import t from 'tap';
import { fullDevice } from './fixtures.js';
import { barRead, cfgRead, cfgWrite, F, IDX } from './helpers.js';

const TRIG_FD = F.EVENTFD | F.TRIGGER;
const unmaskIntx = { flags: F.NONE | F.UNMASK, index: IDX.INTX, start: 0, count: 1 };

t.test('INTx: level-triggered with VFIO auto-mask (the QEMU EOI/unmask cycle)', async (t) => {
  const { dev, fds } = fullDevice();
  t.equal(dev.setIntx(true), 'intx', 'asserted, no fd yet');
  t.same(fds.signals, []);
  t.equal(cfgRead(dev, 0x06, 2) & 0x08, 0x08, 'Status.INTERRUPT follows the line');
  // Enabling with the line high fires at once (as the host IRQ would).
  dev.setIrqs({ flags: TRIG_FD, index: IDX.INTX, start: 0, count: 1, fds: [5] });
  t.same(fds.signals, [5]);
  dev.setIntx(true);
  t.same(fds.signals, [5], 'auto-masked: no second signal');
  dev.setIrqs(unmaskIntx); // QEMU: guest touched a BAR, line still high
  t.same(fds.signals, [5, 5], 'unmask with the line still high fires again');
  dev.setIntx(false);
  dev.setIrqs(unmaskIntx);
  t.same(fds.signals, [5, 5], 'unmask with the line low: nothing');
  t.equal(cfgRead(dev, 0x06, 2) & 0x08, 0);
  dev.setIntx(true);
  t.same(fds.signals, [5, 5, 5], 'next assertion fires');
  dev.setIrqs({ flags: F.NONE | F.MASK, index: IDX.INTX, start: 0, count: 1 });
  dev.setIntx(false);
  dev.setIrqs(unmaskIntx);
  dev.setIrqs({ flags: F.NONE | F.MASK, index: IDX.INTX, start: 0, count: 1 });
  dev.setIntx(true);
  t.same(fds.signals, [5, 5, 5], 'client mask holds the interrupt');
  dev.setIrqs({ flags: F.BOOL | F.UNMASK, index: IDX.INTX, start: 0, count: 1, bools: Uint8Array.of(1) });
  t.same(fds.signals, [5, 5, 5, 5], 'and unmask delivers it');
});

t.test('INTx: Command.INTX_DISABLE holds the line, clearing it delivers', async (t) => {
  const { dev, fds } = fullDevice();
  dev.setIrqs({ flags: TRIG_FD, index: IDX.INTX, start: 0, count: 1, fds: [5] });
  cfgWrite(dev, 0x04, 2, 0x0400);
  t.equal(dev.setIntx(true), 'pending');
  t.same(fds.signals, []);
  t.equal(cfgRead(dev, 0x06, 2) & 0x08, 0x08, 'status still shows the interrupt');
  cfgWrite(dev, 0x04, 2, 0x0000);
  t.same(fds.signals, [5]);
});

t.test('INTx: disabled by SET_IRQS, re-enabled later', async (t) => {
  const { dev, fds } = fullDevice();
  dev.setIrqs({ flags: TRIG_FD, index: IDX.INTX, start: 0, count: 1, fds: [5] });
  dev.setIrqs({ flags: F.NONE | F.TRIGGER, index: IDX.INTX, start: 0, count: 0 });
  t.same(fds.closed, [5]);
  dev.setIntx(true);
  t.same(fds.signals, []);
  dev.setIrqs({ flags: TRIG_FD, index: IDX.INTX, start: 0, count: 1, fds: [6] });
  t.same(fds.signals, [6], 'mask state was reset with the index');
});

t.test('raiseIrq routes by what the guest enabled: MSI-X > MSI > INTx', async (t) => {
  const { dev, fds } = fullDevice();
  const msi = dev.caps.msi!.offset;
  const x = dev.caps.msix!.offset;
  dev.setIrqs({ flags: TRIG_FD, index: IDX.INTX, start: 0, count: 1, fds: [1] });
  t.equal(dev.raiseIrq(), 'intx');
  t.same(fds.signals, [1]);
  dev.lowerIrq();
  dev.setIrqs(unmaskIntx);
  // Guest switches to MSI (QEMU disables INTx first).
  dev.setIrqs({ flags: F.NONE | F.TRIGGER, index: IDX.INTX, start: 0, count: 0 });
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSI, start: 0, count: 4, fds: [10, 11, 12, 13] });
  cfgWrite(dev, msi + 2, 2, 0x0021); // enable, 4 vectors
  t.equal(dev.raiseIrq(2), 'msi');
  t.equal(dev.raiseIrq(7), 'dropped', 'beyond the enabled vectors');
  t.same(fds.signals, [1, 12]);
  cfgWrite(dev, msi + 2, 2, 0x0001); // only one vector enabled now
  t.equal(dev.msiNotify(1), 'dropped');
  // Then to MSI-X.
  cfgWrite(dev, msi + 2, 2, 0);
  dev.setIrqs({ flags: F.NONE | F.TRIGGER, index: IDX.MSI, start: 0, count: 0 });
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 0, count: 8, fds: [20, 21, 22, 23, 24, 25, 26, 27] });
  cfgWrite(dev, x + 2, 2, 0x8000);
  t.equal(dev.raiseIrq(5), 'msix');
  t.equal(dev.raiseIrq(8), 'dropped', 'no vector 8');
  t.same(fds.signals, [1, 12, 25]);
  // INTx is not used while MSI-X is on, even with the line high.
  t.equal(dev.setIntx(true), 'pending');
  t.equal(dev.msiNotify(0), 'dropped', 'MSI off');
});

t.test('MSI: per-vector mask → pending bit → delivered on unmask', async (t) => {
  const { dev, fds } = fullDevice();
  const msi = dev.caps.msi!.offset;
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSI, start: 0, count: 4, fds: [10, 11, 12, 13] });
  cfgWrite(dev, msi + 2, 2, 0x0021);
  cfgWrite(dev, msi + 16, 4, 0b0110); // mask vectors 1 and 2
  t.equal(dev.msiNotify(1), 'pending');
  t.equal(dev.msiNotify(2), 'pending');
  t.equal(dev.msiNotify(3), 'msi');
  t.equal(cfgRead(dev, msi + 20, 4), 0b0110, 'pending register');
  cfgWrite(dev, msi + 16, 4, 0b0100);
  t.same(fds.signals, [13, 11], 'vector 1 delivered on unmask');
  t.equal(cfgRead(dev, msi + 20, 4), 0b0100);
  // A SET_IRQS mask also holds MSI vectors.
  dev.setIrqs({ flags: F.NONE | F.MASK, index: IDX.MSI, start: 0, count: 1 });
  t.equal(dev.msiNotify(0), 'pending');
  dev.setIrqs({ flags: F.NONE | F.UNMASK, index: IDX.MSI, start: 0, count: 1 });
  t.same(fds.signals, [13, 11, 10]);
  t.equal(dev.msiNotify(3), 'msi');
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSI, start: 3, count: 1, fds: [-1] });
  t.equal(dev.msiNotify(3), 'dropped', 'no eventfd for the vector');
});

t.test('MSI-X table: reads, writes, reset values', async (t) => {
  const { dev } = fullDevice();
  t.equal(await barRead(dev, 4, 12, 4), 1, 'vector control resets to masked');
  t.equal(await barRead(dev, 4, 16 * 7 + 12, 4), 1);
  await dev.regionWrite(4, 16, Buffer.from('0000e0fe000000002140000000000000', 'hex'));
  t.same(dev.msixTable!.entry(1), { address: 0xfee00000n, data: 0x4021, masked: false });
  t.equal(await barRead(dev, 4, 16 + 8, 4), 0x4021);
  const whole = (await dev.regionRead(4, 0, 128)) as Buffer;
  t.equal(whole.length, 128);
  t.equal(whole.readUInt32LE(16 + 8), 0x4021);
  t.equal(await barRead(dev, 4, 0x2000, 1), 0, 'PBA reads 0');
  await dev.regionWrite(4, 0x2000, Buffer.of(0xff));
  t.equal(await barRead(dev, 4, 0x2000, 1), 0, 'PBA is read-only');
  const span = (await dev.regionRead(4, 0x1ffc, 12)) as Buffer;
  t.equal(span.length, 12, 'a read across the gap and into the PBA');
});

t.test('MSI-X: table mask and function mask → pending bits, unmask delivers', async (t) => {
  const { dev, fds } = fullDevice();
  const x = dev.caps.msix!.offset;
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 0, count: 8, fds: [20, 21, 22, 23, 24, 25, 26, 27] });
  cfgWrite(dev, x + 2, 2, 0x8000);
  // A client that forwards the table: Linux masks every entry first.
  for (let v = 0; v < 8; v++) await dev.regionWrite(4, v * 16 + 12, Buffer.from([1, 0, 0, 0]));
  t.equal(dev.msixNotify(2), 'pending');
  t.equal(await barRead(dev, 4, 0x2000, 1), 0b100, 'PBA bit 2');
  await dev.regionWrite(4, 2 * 16 + 12, Buffer.from([0, 0, 0, 0]));
  t.same(fds.signals, [22], 'unmasking the entry delivers');
  t.equal(await barRead(dev, 4, 0x2000, 1), 0);
  t.equal(dev.msixNotify(2), 'msix');
  // Function mask holds everything.
  cfgWrite(dev, x + 2, 2, 0xc000);
  t.equal(dev.msixNotify(2), 'pending');
  t.same(fds.signals, [22, 22]);
  cfgWrite(dev, x + 2, 2, 0x8000);
  t.same(fds.signals, [22, 22, 22], 'clearing the function mask delivers');
  // Disabled MSI-X: nothing.
  cfgWrite(dev, x + 2, 2, 0);
  t.equal(dev.msixNotify(2), 'dropped');
});

t.test('MSI-X under QEMU: the table is never forwarded, vectors still fire', async (t) => {
  const { dev, fds } = fullDevice();
  const x = dev.caps.msix!.offset;
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 0, count: 1 });
  cfgWrite(dev, x + 2, 2, 0xc000); // Linux: enable + mask all while programming
  cfgWrite(dev, x + 2, 2, 0x8000);
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 0, count: 1, fds: [30] });
  t.ok(dev.msixTable!.tableMaskBit(0), 'our table says masked (reset value)...');
  t.equal(dev.msixNotify(0), 'msix', '...but an entry the client never wrote does not hold vectors');
  t.same(fds.signals, [30]);
});
