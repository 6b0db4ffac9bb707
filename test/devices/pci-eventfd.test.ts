// The PCI layer with its default fd operations (the native addon) and real
// eventfds: signals arrive, replaced/disabled fds really get closed.
import { existsSync } from 'node:fs';
import t from 'tap';
import { fullDevice } from './fixtures.js';
import { cfgWrite, F, IDX } from './helpers.js';

type Native = typeof import('../../native/index.js');
let native: Native | undefined;
try {
  native = await import('../../native/index.js');
} catch {
  native = undefined;
}

const isOpen = (fd: number): boolean => existsSync(`/proc/self/fd/${fd}`);

t.test('real eventfds through the native addon', { skip: native ? false : 'native addon not built' }, async (t) => {
  const n = native!;
  const before = n.fdCount();
  const { PciDevice } = await import('../../devices/pci/index.js');
  const spec = fullDevice().dev.spec; // same device, default (native) fd ops
  const dev = new PciDevice({ ...spec, reset: undefined });

  const intx = n.eventfd(0);
  dev.setIrqs({ flags: F.EVENTFD | F.TRIGGER, index: IDX.INTX, start: 0, count: 1, fds: [intx] });
  t.equal(n.eventfdRead(intx), -11, 'nothing yet (EAGAIN)');
  dev.setIntx(true);
  t.equal(n.eventfdRead(intx), 1, 'INTx signalled once');
  dev.setIrqs({ flags: F.NONE | F.UNMASK, index: IDX.INTX, start: 0, count: 1 });
  t.equal(n.eventfdRead(intx), 1, 'line still high: signalled again after unmask');
  dev.setIntx(false);
  dev.setIrqs({ flags: F.NONE | F.TRIGGER, index: IDX.INTX, start: 0, count: 0 });
  t.notOk(isOpen(intx), 'disable closed the INTx eventfd');

  const v0 = n.eventfd(0);
  const v1 = n.eventfd(0);
  const v1b = n.eventfd(0);
  dev.setIrqs({ flags: F.EVENTFD | F.TRIGGER, index: IDX.MSIX, start: 0, count: 2, fds: [v0, v1] });
  cfgWrite(dev, dev.caps.msix!.offset + 2, 2, 0x8000);
  t.equal(dev.msixNotify(1), 'msix');
  t.equal(dev.msixNotify(1), 'msix');
  t.equal(n.eventfdRead(v1), 2, 'two MSI-X messages counted');
  dev.setIrqs({ flags: F.EVENTFD | F.TRIGGER, index: IDX.MSIX, start: 1, count: 1, fds: [v1b] });
  t.notOk(isOpen(v1), 'replaced fd closed');
  t.ok(isOpen(v1b));
  dev.detachClient();
  t.notOk(isOpen(v0) || isOpen(v1b), 'detach closed the rest');
  t.equal(n.fdCount(), before, 'no fd leaked');
});
