// DEVICE_GET_INFO, DEVICE_GET_IRQ_INFO and DEVICE_RESET.
import t from 'tap';
import {
  decodeDeviceGetInfoReply, decodeDeviceGetInfoRequest, encodeDeviceGetInfoReply, encodeDeviceGetInfoRequest,
} from '../../protocol/commands/device-get-info.js';
import { decodeDeviceResetRequest, encodeDeviceResetRequest } from '../../protocol/commands/device-reset.js';
import { decodeIrqInfoReply, decodeIrqInfoRequest, encodeIrqInfoReply, encodeIrqInfoRequest } from '../../protocol/commands/irq-info.js';
import {
  VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_RESET, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_NORESIZE, VFIO_PCI_MSIX_IRQ_INDEX,
} from '../../protocol/constants.js';
import { QEMU_LIMITS as L, errnoOf, with32 } from './helpers.js';

t.test('DEVICE_GET_INFO round trip', async (t) => {
  const p = encodeDeviceGetInfoRequest();
  t.equal(p.length, 16);
  t.same(decodeDeviceGetInfoRequest(p, L, 0), { argsz: 16 });
  t.same(decodeDeviceGetInfoRequest(encodeDeviceGetInfoRequest(64), L, 0), { argsz: 64 });
  const flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
  const r = encodeDeviceGetInfoReply({ flags, numRegions: 9, numIrqs: 5 });
  t.equal(r.length, 16);
  t.same(decodeDeviceGetInfoReply(r), { argsz: 16, flags, numRegions: 9, numIrqs: 5 });
});

t.test('DEVICE_GET_INFO validation', async (t) => {
  const p = encodeDeviceGetInfoRequest();
  t.equal(errnoOf(() => decodeDeviceGetInfoRequest(p.subarray(0, 12), L, 0)), 'EINVAL', 'short');
  t.equal(errnoOf(() => decodeDeviceGetInfoRequest(Buffer.concat([p, Buffer.alloc(4)]), L, 0)), 'EINVAL', 'long');
  t.equal(errnoOf(() => decodeDeviceGetInfoRequest(with32(p, 0, 15), L, 0)), 'EINVAL', 'argsz 15');
  t.equal(errnoOf(() => decodeDeviceGetInfoRequest(with32(p, 4, 1), L, 0)), 'EINVAL', 'flags set');
  t.equal(errnoOf(() => decodeDeviceGetInfoRequest(with32(p, 8, 9), L, 0)), 'EINVAL', 'num_regions set');
  t.equal(errnoOf(() => decodeDeviceGetInfoRequest(with32(p, 12, 5), L, 0)), 'EINVAL', 'num_irqs set');
  t.equal(errnoOf(() => decodeDeviceGetInfoRequest(p, L, 1)), 'EINVAL', 'an fd');
});

t.test('DEVICE_GET_IRQ_INFO round trip', async (t) => {
  const p = encodeIrqInfoRequest(VFIO_PCI_MSIX_IRQ_INDEX);
  t.same(decodeIrqInfoRequest(p, L, 0), { argsz: 16, index: 2 });
  const flags = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE;
  t.same(decodeIrqInfoReply(encodeIrqInfoReply(2, { flags, count: 2048 })), { argsz: 16, flags, index: 2, count: 2048 });
});

t.test('DEVICE_GET_IRQ_INFO validation', async (t) => {
  const p = encodeIrqInfoRequest(0);
  t.equal(errnoOf(() => decodeIrqInfoRequest(encodeIrqInfoRequest(5), L, 0)), 'EINVAL', 'index 5');
  t.equal(errnoOf(() => decodeIrqInfoRequest(encodeIrqInfoRequest(0xffffffff), L, 0)), 'EINVAL', 'index 2^32-1');
  t.equal(errnoOf(() => decodeIrqInfoRequest(encodeIrqInfoRequest(0, 12), L, 0)), 'EINVAL', 'argsz 12');
  t.equal(errnoOf(() => decodeIrqInfoRequest(with32(p, 4, 1), L, 0)), 'EINVAL', 'flags set');
  t.equal(errnoOf(() => decodeIrqInfoRequest(with32(p, 12, 1), L, 0)), 'EINVAL', 'count set');
  t.equal(errnoOf(() => decodeIrqInfoRequest(p.subarray(0, 8), L, 0)), 'EINVAL', 'short');
  t.equal(errnoOf(() => decodeIrqInfoRequest(p, L, 2)), 'EINVAL', 'fds');
});

t.test('DEVICE_RESET', async (t) => {
  t.equal(errnoOf(() => decodeDeviceResetRequest(encodeDeviceResetRequest(), L, 0)), 'no error');
  t.equal(errnoOf(() => decodeDeviceResetRequest(Buffer.alloc(1), L, 0)), 'EINVAL', 'payload');
  t.equal(errnoOf(() => decodeDeviceResetRequest(Buffer.alloc(0), L, 1)), 'EINVAL', 'an fd');
});
