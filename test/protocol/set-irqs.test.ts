import t from 'tap';
import {
  checkSetIrqsRange, decodeSetIrqsRequest, encodeSetIrqsRequest, setIrqsEventfds,
} from '../../protocol/commands/set-irqs.js';
import {
  VFIO_IRQ_SET_ACTION_MASK as MASK, VFIO_IRQ_SET_ACTION_TRIGGER as TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK as UNMASK,
  VFIO_IRQ_SET_DATA_BOOL as BOOL, VFIO_IRQ_SET_DATA_EVENTFD as EVENTFD, VFIO_IRQ_SET_DATA_NONE as NONE,
  VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
} from '../../protocol/constants.js';
import { QEMU_LIMITS as L, errnoOf, with32 } from './helpers.js';

const MSIX = VFIO_PCI_MSIX_IRQ_INDEX;

t.test('DATA_EVENTFD with one fd per vector', async (t) => {
  const p = encodeSetIrqsRequest({ flags: EVENTFD | TRIGGER, index: MSIX, start: 4, count: 3 });
  t.equal(p.length, 20, 'QEMU sends exactly struct vfio_irq_set');
  const req = decodeSetIrqsRequest(p, L, 3);
  t.same(req, { argsz: 20, flags: EVENTFD | TRIGGER, dataType: EVENTFD, action: TRIGGER, index: MSIX, start: 4, count: 3, fdCount: 3 });
  t.same(setIrqsEventfds(req, [10, 11, 12], 8), [10, 11, 12]);
});

t.test('DATA_EVENTFD without fds unassigns', async (t) => {
  const req = decodeSetIrqsRequest(encodeSetIrqsRequest({ flags: EVENTFD | TRIGGER, index: MSIX, start: 0, count: 2 }), L, 0);
  t.equal(req.fdCount, 0);
  t.same(setIrqsEventfds(req, [], 2), [-1, -1]);
});

t.test('the range is checked against the device\'s IRQ count before the -1 run is built', async (t) => {
  const huge = decodeSetIrqsRequest(
    encodeSetIrqsRequest({ flags: EVENTFD | TRIGGER, index: VFIO_PCI_INTX_IRQ_INDEX, start: 0, count: 0xffffffff }), L, 0);
  t.equal(huge.count, 0xffffffff, 'the decoder alone cannot refuse it (it knows no device)');
  const before = process.memoryUsage().heapUsed;
  t.equal(errnoOf(() => setIrqsEventfds(huge, [], 1)), 'EINVAL', 'count 0xFFFFFFFF against 1 INTx');
  t.ok(process.memoryUsage().heapUsed - before < 1 << 20, 'nothing proportional to count was allocated');
  const range = (start: number, count: number): ReturnType<typeof decodeSetIrqsRequest> =>
    decodeSetIrqsRequest(encodeSetIrqsRequest({ flags: NONE | TRIGGER, index: MSIX, start, count }), L, 0);
  t.equal(errnoOf(() => checkSetIrqsRange(range(0, 8), 8)), 'no error', '[0, 8) of 8');
  t.equal(errnoOf(() => checkSetIrqsRange(range(7, 1), 8)), 'no error', '[7, 8) of 8');
  t.equal(errnoOf(() => checkSetIrqsRange(range(0, 0), 0)), 'no error', 'disable an index without IRQs');
  t.equal(errnoOf(() => checkSetIrqsRange(range(8, 1), 8)), 'EINVAL', '[8, 9) of 8');
  t.equal(errnoOf(() => checkSetIrqsRange(range(0, 9), 8)), 'EINVAL', '[0, 9) of 8');
  t.equal(errnoOf(() => checkSetIrqsRange(range(0xfffffffe, 1), 8)), 'EINVAL', 'start near 2^32');
});

t.test('DATA_BOOL: the bools are a view into the payload', async (t) => {
  const p = encodeSetIrqsRequest({ flags: BOOL | MASK, index: MSIX, start: 1, count: 3, bools: Uint8Array.of(1, 0, 1) });
  t.equal(p.length, 23);
  const req = decodeSetIrqsRequest(p, L, 0);
  t.same([...req.bools!], [1, 0, 1]);
  t.equal(req.bools!.buffer, p.buffer);
});

t.test('DATA_NONE, and count 0 disabling a whole index', async (t) => {
  t.equal(decodeSetIrqsRequest(encodeSetIrqsRequest({ flags: NONE | UNMASK, index: VFIO_PCI_INTX_IRQ_INDEX, start: 0, count: 1 }), L, 0).action, UNMASK);
  t.equal(decodeSetIrqsRequest(encodeSetIrqsRequest({ flags: NONE | TRIGGER, index: MSIX, start: 0, count: 0 }), L, 0).count, 0);
});

t.test('validation', async (t) => {
  const ev = { flags: EVENTFD | TRIGGER, index: MSIX, start: 0, count: 3 };
  const cases: Array<[string, Buffer, number]> = [
    ['short', encodeSetIrqsRequest(ev).subarray(0, 16), 0],
    ['argsz != payload', encodeSetIrqsRequest({ ...ev, argsz: 24 }), 3],
    ['argsz 0', encodeSetIrqsRequest({ ...ev, argsz: 0 }), 3],
    ['fewer fds than count', encodeSetIrqsRequest(ev), 2],
    ['more fds than count', encodeSetIrqsRequest(ev), 4],
    ['eventfd with data', encodeSetIrqsRequest({ ...ev, bools: Uint8Array.of(1, 1, 1) }), 3],
    ['bool with fds', encodeSetIrqsRequest({ ...ev, flags: BOOL | TRIGGER, bools: Uint8Array.of(1, 1, 1) }), 1],
    ['bool data too short', encodeSetIrqsRequest({ ...ev, flags: BOOL | TRIGGER, bools: Uint8Array.of(1, 1) }), 0],
    ['none with fds', encodeSetIrqsRequest({ ...ev, flags: NONE | TRIGGER }), 3],
    ['none with data', encodeSetIrqsRequest({ ...ev, flags: NONE | TRIGGER, bools: Uint8Array.of(1) }), 0],
    ['two data types', encodeSetIrqsRequest({ ...ev, flags: NONE | BOOL | TRIGGER }), 0],
    ['no data type', encodeSetIrqsRequest({ ...ev, flags: TRIGGER }), 0],
    ['two actions', encodeSetIrqsRequest({ ...ev, flags: EVENTFD | MASK | UNMASK }), 3],
    ['no action', encodeSetIrqsRequest({ ...ev, flags: EVENTFD }), 3],
    ['unknown flag', encodeSetIrqsRequest({ ...ev, flags: EVENTFD | TRIGGER | 0x40 }), 3],
    ['index 5', encodeSetIrqsRequest({ ...ev, index: 5 }), 3],
    ['ERR with MASK', encodeSetIrqsRequest({ ...ev, flags: NONE | MASK, index: VFIO_PCI_ERR_IRQ_INDEX, count: 1 }), 0],
    ['start + count overflows', encodeSetIrqsRequest({ ...ev, flags: NONE | TRIGGER, start: 0xffffffff, count: 2 }), 0],
    ['count 0 with MASK', encodeSetIrqsRequest({ ...ev, flags: NONE | MASK, count: 0 }), 0],
    ['count 0 with DATA_BOOL', encodeSetIrqsRequest({ ...ev, flags: BOOL | TRIGGER, count: 0 }), 0],
    ['count 0 with start 1', encodeSetIrqsRequest({ ...ev, flags: NONE | TRIGGER, start: 1, count: 0 }), 0],
  ];
  for (const [name, p, nfds] of cases) t.equal(errnoOf(() => decodeSetIrqsRequest(p, L, nfds)), 'EINVAL', name);
  const p = encodeSetIrqsRequest(ev);
  t.equal(errnoOf(() => decodeSetIrqsRequest(with32(p, 0, 19), L, 3)), 'EINVAL', 'argsz 19');
});
