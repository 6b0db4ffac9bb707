import t from 'tap';
import { fullDevice } from './fixtures.js';
import { EINVAL, F, IDX } from './helpers.js';

const TRIG_FD = F.EVENTFD | F.TRIGGER;

t.test('GET_IRQ_INFO per index', async (t) => {
  const { dev } = fullDevice();
  t.same(dev.irqInfo(IDX.INTX), { count: 1, flags: 0x7 }, 'INTx: eventfd, maskable, automasked');
  t.same(dev.irqInfo(IDX.MSI), { count: 4, flags: 0xb }, 'MSI: count from the cap, noresize');
  t.same(dev.irqInfo(IDX.MSIX), { count: 8, flags: 0x3 }, 'MSI-X: count from the cap');
  t.same(dev.irqInfo(IDX.ERR), { count: 1, flags: 0x9 }, 'ERR: one eventfd, noresize (as Linux)');
  t.same(dev.irqInfo(IDX.REQ), { count: 1, flags: 0x9 }, 'REQ: one eventfd, noresize (as Linux)');
  t.throws(() => dev.irqInfo(5), EINVAL);
  const conventional = fullDevice({ capabilities: [] }).dev;
  t.same(conventional.irqInfo(IDX.ERR), { count: 1, flags: 0x9 }, 'ERR on a conventional function too (QEMU warns without it)');
  const plain = fullDevice({ interruptPin: 0, capabilities: [], errIrq: false, reqIrq: false }).dev;
  t.same(
    [0, 1, 2, 3, 4].map((i) => plain.irqInfo(i).count),
    [0, 0, 0, 0, 0],
    'no pin, no caps, no ERR, no REQ',
  );
});

t.test('bad flags, index and ranges → EINVAL (and given fds closed)', async (t) => {
  const { dev, fds } = fullDevice();
  const bad: [string, Parameters<typeof dev.setIrqs>[0]][] = [
    ['no action', { flags: F.NONE, index: 0, start: 0, count: 1 }],
    ['no data type', { flags: F.TRIGGER, index: 0, start: 0, count: 1 }],
    ['two data types', { flags: F.NONE | F.BOOL | F.TRIGGER, index: 0, start: 0, count: 1, bools: Uint8Array.of(1) }],
    ['two actions', { flags: F.NONE | F.MASK | F.UNMASK, index: 0, start: 0, count: 1 }],
    ['unknown flag bit', { flags: F.NONE | F.TRIGGER | 0x40, index: 0, start: 0, count: 0 }],
    ['index 5', { flags: F.NONE | F.TRIGGER, index: 5, start: 0, count: 0 }],
    ['INTx start 1', { flags: TRIG_FD, index: 0, start: 1, count: 1, fds: [100] }],
    ['INTx count 2', { flags: TRIG_FD, index: 0, start: 0, count: 2, fds: [101, 102] }],
    ['MSI past 4', { flags: TRIG_FD, index: 1, start: 3, count: 2, fds: [103, 104] }],
    ['MSI-X start 8', { flags: TRIG_FD, index: 2, start: 8, count: 1, fds: [105] }],
    ['start + count overflows', { flags: TRIG_FD, index: 2, start: 0xffffffff, count: 2, fds: [106, 107] }],
    ['fd count mismatch', { flags: TRIG_FD, index: 2, start: 0, count: 3, fds: [108, 109] }],
    ['duplicate fd', { flags: TRIG_FD, index: 2, start: 0, count: 2, fds: [110, 110] }],
    ['count 0 with eventfd', { flags: TRIG_FD, index: 2, start: 0, count: 0 }],
    ['count 0 with mask', { flags: F.NONE | F.MASK, index: 0, start: 0, count: 0 }],
    ['bool too short', { flags: F.BOOL | F.MASK, index: 2, start: 0, count: 4, bools: Uint8Array.of(1) }],
    ['fds without DATA_EVENTFD', { flags: F.NONE | F.TRIGGER, index: 2, start: 0, count: 1, fds: [111] }],
    ['ERR mask', { flags: F.NONE | F.MASK, index: 3, start: 0, count: 1 }],
    ['REQ unmask', { flags: F.NONE | F.UNMASK, index: 4, start: 0, count: 1 }],
    ['unmask by eventfd (resample)', { flags: F.EVENTFD | F.UNMASK, index: 0, start: 0, count: 1, fds: [112] }],
    ['mask by eventfd', { flags: F.EVENTFD | F.MASK, index: 0, start: 0, count: 1, fds: [113] }],
    ['mask on a disabled index', { flags: F.NONE | F.MASK, index: 0, start: 0, count: 1 }],
    ['loopback on a disabled index', { flags: F.NONE | F.TRIGGER, index: 2, start: 0, count: 1 }],
  ];
  for (const [what, req] of bad) t.throws(() => dev.setIrqs(req), EINVAL, what);
  t.same(
    fds.closed.sort((a, b) => a - b),
    [100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113],
    'every fd of a refused request is closed, once',
  );
  t.same(fds.signals, [], 'nothing signalled');
});

t.test('count 0 disables an index (also when nothing is enabled)', async (t) => {
  const { dev, fds } = fullDevice();
  dev.setIrqs({ flags: F.NONE | F.TRIGGER, index: IDX.MSIX, start: 0, count: 0 });
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 0, count: 3, fds: [10, 11, 12] });
  dev.setIrqs({ flags: F.NONE | F.TRIGGER, index: IDX.MSIX, start: 0, count: 0 });
  t.same(fds.closed, [10, 11, 12], 'disable closes every fd of the index');
  // Disabled: a loopback is refused and enabling another index is allowed.
  t.throws(() => dev.setIrqs({ flags: F.NONE | F.TRIGGER, index: IDX.MSIX, start: 0, count: 1 }), EINVAL);
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSI, start: 0, count: 1, fds: [13] });
  t.pass('MSI enabled after MSI-X was disabled');
});

t.test('DATA_EVENTFD: assign, replace (old closed), unassign with -1 or no fds', async (t) => {
  const { dev, fds } = fullDevice();
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 0, count: 4, fds: [20, 21, -1, 23] });
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 1, count: 1, fds: [31] });
  t.same(fds.closed, [21], 'replaced fd closed');
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 3, count: 1, fds: [-1] });
  t.same(fds.closed, [21, 23], '-1 unassigns and closes');
  // QEMU sends a run of -1 as count N with no fds at all.
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 0, count: 2 });
  t.same(fds.closed, [21, 23, 20, 31]);
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 5, count: 1, fds: [40] });
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 5, count: 1, fds: [40] });
  t.same(fds.closed, [21, 23, 20, 31], 'the same fd again is not closed under us');
});

t.test('QEMU MSI-X sequence: enable with no vectors, then one by one', async (t) => {
  const { dev, fds } = fullDevice();
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 0, count: 1 }); // vfio_enable_msix_no_vec
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 0, count: 1, fds: [50] });
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 2, count: 1, fds: [52] });
  dev.setIrqs({ flags: F.NONE | F.TRIGGER, index: IDX.MSIX, start: 0, count: 3 }); // loopback
  t.same(fds.signals, [50, 52], 'loopback signals assigned vectors only');
});

t.test('INTx, MSI and MSI-X are exclusive', async (t) => {
  const { dev, fds } = fullDevice();
  dev.setIrqs({ flags: TRIG_FD, index: IDX.INTX, start: 0, count: 1, fds: [60] });
  t.throws(() => dev.setIrqs({ flags: TRIG_FD, index: IDX.MSI, start: 0, count: 1, fds: [61] }), EINVAL);
  t.throws(() => dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 0, count: 1, fds: [-1] }), EINVAL);
  t.same(fds.closed, [61]);
  dev.setIrqs({ flags: TRIG_FD, index: IDX.ERR, start: 0, count: 1, fds: [62] });
  dev.setIrqs({ flags: TRIG_FD, index: IDX.REQ, start: 0, count: 1, fds: [63] });
  t.pass('ERR and REQ are independent');
  dev.setIrqs({ flags: TRIG_FD, index: IDX.INTX, start: 0, count: 1, fds: [-1] }); // disable INTx
  t.same(fds.closed, [61, 60], 'INTx fd -1 disables INTx');
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSI, start: 0, count: 4, fds: [64, 65, 66, 67] });
  t.pass('MSI after INTx disabled');
});

t.test('loopback TRIGGER with DATA_NONE and DATA_BOOL', async (t) => {
  const { dev, fds } = fullDevice();
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSI, start: 0, count: 4, fds: [70, 71, 72, 73] });
  dev.setIrqs({ flags: F.NONE | F.TRIGGER, index: IDX.MSI, start: 1, count: 2 });
  dev.setIrqs({ flags: F.BOOL | F.TRIGGER, index: IDX.MSI, start: 0, count: 4, bools: Uint8Array.of(1, 0, 0, 1) });
  t.same(fds.signals, [71, 72, 70, 73]);
  dev.setIrqs({ flags: TRIG_FD, index: IDX.REQ, start: 0, count: 1, fds: [74] });
  dev.setIrqs({ flags: F.NONE | F.TRIGGER, index: IDX.REQ, start: 0, count: 1 });
  dev.setIrqs({ flags: F.BOOL | F.TRIGGER, index: IDX.REQ, start: 0, count: 1, bools: Uint8Array.of(0) });
  t.same(fds.signals.slice(4), [74], 'REQ loopback');
  t.ok(dev.requestRelease(), 'device-side REQ');
  t.notOk(dev.reportError(), 'no ERR fd');
  dev.setIrqs({ flags: F.NONE | F.TRIGGER, index: IDX.REQ, start: 0, count: 0 });
  t.same(fds.closed, [74]);
  t.notOk(dev.requestRelease());
});

t.test('MASK/UNMASK with DATA_NONE and DATA_BOOL', async (t) => {
  const { dev, fds } = fullDevice();
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 0, count: 4, fds: [80, 81, 82, 83] });
  const x = dev.caps.msix!.offset;
  dev.regionWrite(7, x + 2, Buffer.from([0x00, 0x80])); // MSI-X enable
  dev.setIrqs({ flags: F.BOOL | F.MASK, index: IDX.MSIX, start: 0, count: 4, bools: Uint8Array.of(0, 1, 0, 1) });
  t.equal(dev.msixNotify(0), 'msix');
  t.equal(dev.msixNotify(1), 'pending');
  t.equal(dev.msixNotify(3), 'pending');
  t.same(fds.signals, [80]);
  dev.setIrqs({ flags: F.NONE | F.UNMASK, index: IDX.MSIX, start: 1, count: 1 });
  t.same(fds.signals, [80, 81], 'unmask delivers the pending vector');
  t.notOk(dev.msixTable!.isPending(1));
  t.ok(dev.msixTable!.isPending(3));
  dev.setIrqs({ flags: F.NONE | F.MASK, index: IDX.MSIX, start: 0, count: 4 });
  t.equal(dev.msixNotify(0), 'pending');
  dev.setIrqs({ flags: F.BOOL | F.UNMASK, index: IDX.MSIX, start: 0, count: 4, bools: Uint8Array.of(1, 1, 1, 1) });
  t.same(fds.signals, [80, 81, 80, 83]);
});

t.test('detachClient closes every fd; device state is kept', async (t) => {
  const { dev, fds } = fullDevice();
  dev.regionWrite(7, 0x3c, Buffer.of(9));
  dev.setIrqs({ flags: TRIG_FD, index: IDX.MSIX, start: 0, count: 2, fds: [90, 91] });
  dev.setIrqs({ flags: TRIG_FD, index: IDX.ERR, start: 0, count: 1, fds: [92] });
  dev.setIrqs({ flags: TRIG_FD, index: IDX.REQ, start: 0, count: 1, fds: [93] });
  dev.detachClient();
  t.same(fds.closed.sort(), [90, 91, 92, 93]);
  t.equal((dev.regionRead(7, 0x3c, 1) as Buffer)[0], 9, 'config kept');
  dev.setIrqs({ flags: TRIG_FD, index: IDX.INTX, start: 0, count: 1, fds: [94] });
  t.pass('a new client starts with nothing enabled');
});
