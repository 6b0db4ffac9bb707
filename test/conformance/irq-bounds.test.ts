// SET_IRQS ranges beyond the device's IRQ count: refused with EINVAL before
// anything proportional to `count` is built, and the connection keeps serving.
import t from 'tap';
import {
  Command, VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
} from '../../protocol/constants.js';
import { Errno } from '../../protocol/errno.js';
import { encodeIrqInfoRequest } from '../../protocol/commands/irq-info.js';
import { encodeSetIrqsRequest } from '../../protocol/commands/set-irqs.js';
import { assertErrorReply, assertReply, assertServes, native, openClient, send, startGpio } from './helpers.js';

const fx = await startGpio(t);
/** A request allocating one element per sub-index would take far more than this. */
const HEAP_SLACK = 8 * 1024 * 1024;
const EVENTFD_TRIGGER = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;

t.test('DATA_EVENTFD|TRIGGER, count 0xFFFFFFFF, no fds: EINVAL, heap flat, still serving', async (t) => {
  const c = await openClient(t, fx);
  const before = process.memoryUsage().heapUsed;
  const r = await send(c, Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: EVENTFD_TRIGGER, index: VFIO_PCI_INTX_IRQ_INDEX, start: 0, count: 0xffffffff }));
  const grown = process.memoryUsage().heapUsed - before;
  assertErrorReply(t, r.reply, r, Errno.EINVAL, 'count 0xFFFFFFFF');
  t.ok(grown < HEAP_SLACK, `heap grew by ${grown} bytes, less than ${HEAP_SLACK}`);
  await assertServes(t, c);
});

t.test('every range past the index\'s IRQ count is EINVAL, with or without fds', async (t) => {
  const c = await openClient(t, fx);
  const info = await send(c, Command.DEVICE_GET_IRQ_INFO, encodeIrqInfoRequest(VFIO_PCI_INTX_IRQ_INDEX));
  t.equal(info.reply.payload.readUInt32LE(12), 1, 'the GPIO has one INTx');
  const cases: Array<[string, { flags: number; index: number; start: number; count: number; bools?: Uint8Array }, number]> = [
    ['eventfd count 0x1000000', { flags: EVENTFD_TRIGGER, index: VFIO_PCI_INTX_IRQ_INDEX, start: 0, count: 0x1000000 }, 0],
    ['eventfd start 1', { flags: EVENTFD_TRIGGER, index: VFIO_PCI_INTX_IRQ_INDEX, start: 1, count: 1 }, 0],
    ['eventfd start 0xFFFFFFFE, count 1', { flags: EVENTFD_TRIGGER, index: VFIO_PCI_INTX_IRQ_INDEX, start: 0xfffffffe, count: 1 }, 0],
    ['eventfd count 2 with 2 fds', { flags: EVENTFD_TRIGGER, index: VFIO_PCI_INTX_IRQ_INDEX, start: 0, count: 2 }, 2],
    ['MSI-X (no vectors) count 1', { flags: EVENTFD_TRIGGER, index: VFIO_PCI_MSIX_IRQ_INDEX, start: 0, count: 1 }, 0],
    ['DATA_NONE mask count 0x10000', { flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, index: VFIO_PCI_INTX_IRQ_INDEX, start: 0, count: 0x10000 }, 0],
    ['DATA_BOOL count 4096', { flags: VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_INTX_IRQ_INDEX, start: 0, count: 4096, bools: new Uint8Array(4096).fill(1) }, 0],
  ];
  const fdsBefore = native.fdCount();
  const heapBefore = process.memoryUsage().heapUsed;
  for (const [what, args, nfds] of cases) {
    const fds = Array.from({ length: nfds }, () => native.eventfd(0));
    const r = await send(c, Command.DEVICE_SET_IRQS, encodeSetIrqsRequest(args), { fds });
    for (const fd of fds) native.close(fd);
    assertErrorReply(t, r.reply, r, Errno.EINVAL, what);
  }
  const grown = process.memoryUsage().heapUsed - heapBefore;
  t.ok(grown < HEAP_SLACK, `heap grew by ${grown} bytes, less than ${HEAP_SLACK}`);
  t.equal(native.fdCount(), fdsBefore, 'the server closed every fd it was sent');
  const ok = await send(c, Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: EVENTFD_TRIGGER, index: VFIO_PCI_INTX_IRQ_INDEX, start: 0, count: 1 }));
  assertReply(t, ok.reply, ok, Buffer.alloc(0), 'the one INTx, unassigned without fds');
  await assertServes(t, c);
});
