// Every count, size and length a decoder reads is checked against the
// negotiated limits (or the payload that must hold it) before anything is
// sized by it: the largest values a u32/u64 field can carry are refused with
// the errno a server returns, and the heap does not grow.
import t, { type Test } from 'tap';
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_GET,
  VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_BOOL, VFIO_PCI_MSIX_IRQ_INDEX,
} from '../../protocol/constants.js';
import { decodeRegionWriteMultiRequest, encodeRegionWriteMultiRequest } from '../../protocol/commands/region-write-multi.js';
import { decodeDmaUnmapRequest, encodeDmaUnmapRequest } from '../../protocol/commands/dma-unmap.js';
import {
  decodeDeviceFeatureRequest, dmaLoggingReportData, encodeDeviceFeatureRequest,
} from '../../protocol/commands/device-feature.js';
import {
  decodeMigDataReadRequest, decodeMigDataWriteRequest, encodeMigDataReadRequest, encodeMigDataWriteRequest,
} from '../../protocol/commands/mig-data.js';
import { decodeRegionIoFdsRequest, encodeRegionIoFdsRequest } from '../../protocol/commands/region-io-fds.js';
import { decodeSetIrqsRequest, encodeSetIrqsRequest } from '../../protocol/commands/set-irqs.js';
import {
  decodeRegionReadRequest, decodeRegionWriteRequest, encodeRegionReadRequest, encodeRegionWriteRequest,
} from '../../protocol/commands/region-access.js';
import { decodeDmaWriteRequest } from '../../protocol/commands/dma-access.js';
import { QEMU_LIMITS as L, errnoOf, with32, with64 } from './helpers.js';

const U64_MAX = (1n << 64n) - 1n;
const U32_MAX = 0xffffffff;

/** `fn` throws `errno` and leaves the heap (nearly) as it was. */
function refused(t: Test, fn: () => unknown, errno: string, what: string): void {
  const before = process.memoryUsage().heapUsed;
  t.equal(errnoOf(fn), errno, what);
  const grown = process.memoryUsage().heapUsed - before;
  t.ok(grown < 1 << 20, `${what}: heap grew by ${grown} bytes`);
}

t.test('REGION_WRITE_MULTI: wr_cnt', async (t) => {
  const one = encodeRegionWriteMultiRequest([{ offset: 0, region: 2, data: Buffer.from([1]) }]);
  refused(t, () => decodeRegionWriteMultiRequest(with64(one, 0, U64_MAX), L, 0), 'EINVAL', 'wr_cnt 2^64-1');
  refused(t, () => decodeRegionWriteMultiRequest(with64(one, 0, 0xffffffffn), L, 0), 'EINVAL', 'wr_cnt 2^32-1');
  refused(t, () => decodeRegionWriteMultiRequest(with64(one, 0, 200n), L, 0), 'EINVAL', 'wr_cnt 200 with one entry sent');
  const many = encodeRegionWriteMultiRequest(Array.from({ length: 201 }, () => ({ offset: 0, region: 2, data: Buffer.from([1]) })));
  refused(t, () => decodeRegionWriteMultiRequest(many, L, 0), 'EINVAL', 'wr_cnt 201 with 201 entries');
  refused(t, () => decodeRegionWriteMultiRequest(with32(one, 8 + 12, U32_MAX), L, 0), 'EINVAL', 'entry count 2^32-1');
});

t.test('DMA_UNMAP: dirty bitmap size', async (t) => {
  const req = (size: bigint, bytes: number, argsz = U32_MAX): Buffer =>
    encodeDmaUnmapRequest({ addr: 0n, size, bitmap: { pgsize: 4096n, size: bytes }, argsz });
  refused(t, () => decodeDmaUnmapRequest(with64(req(0x1000n, 8), 32, U64_MAX), L, 0), 'EINVAL', 'bitmap size 2^64-1');
  refused(t, () => decodeDmaUnmapRequest(req(0xffff_f000_0000_0000n, L.maxDataXferSize + 8), L, 0), 'EINVAL',
    'bitmap above max_data_xfer_size for a range that would need it');
  refused(t, () => decodeDmaUnmapRequest(req(0xffff_f000_0000_0000n, 8), L, 0), 'EINVAL', 'bitmap too small for the range');
});

t.test('DEVICE_FEATURE DMA_LOGGING_REPORT: bitmap size', async (t) => {
  const report = (length: bigint, page: bigint): Buffer => encodeDeviceFeatureRequest({
    feature: VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, ops: VFIO_DEVICE_FEATURE_GET,
    data: dmaLoggingReportData(0n, length, page), argsz: U32_MAX,
  });
  refused(t, () => decodeDeviceFeatureRequest(report(1n << 63n, 1n), L, 0), 'EINVAL', 'length 2^63 at page size 1');
  refused(t, () => decodeDeviceFeatureRequest(report(BigInt(L.maxDataXferSize) * 8n * 4096n + 4096n, 4096n), L, 0), 'EINVAL',
    'one page past a max_data_xfer_size bitmap');
});

t.test('MIG_DATA_READ / MIG_DATA_WRITE: size', async (t) => {
  refused(t, () => decodeMigDataReadRequest(encodeMigDataReadRequest(U32_MAX, U32_MAX), L, 0), 'EINVAL', 'READ size 2^32-1');
  refused(t, () => decodeMigDataReadRequest(encodeMigDataReadRequest(L.maxDataXferSize + 1, U32_MAX), L, 0), 'EINVAL',
    'READ size max_data_xfer_size + 1');
  const w = encodeMigDataWriteRequest(Buffer.alloc(8));
  refused(t, () => decodeMigDataWriteRequest(with32(with32(w, 4, U32_MAX), 0, U32_MAX), L, 0), 'EINVAL', 'WRITE size 2^32-1, 8 bytes sent');
});

t.test('DEVICE_GET_REGION_IO_FDS: count and argsz', async (t) => {
  refused(t, () => decodeRegionIoFdsRequest(with32(encodeRegionIoFdsRequest(2, 16), 12, U32_MAX), L, 0), 'EINVAL', 'count 2^32-1');
  refused(t, () => decodeRegionIoFdsRequest(encodeRegionIoFdsRequest(2, U32_MAX), L, 0), 'EINVAL', 'argsz 2^32-1');
  refused(t, () => decodeRegionIoFdsRequest(encodeRegionIoFdsRequest(2, L.maxDataXferSize + 1), L, 0), 'EINVAL',
    'argsz max_data_xfer_size + 1');
});

t.test('DEVICE_SET_IRQS: DATA_BOOL count beyond the payload', async (t) => {
  const p = encodeSetIrqsRequest({ flags: VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_MSIX_IRQ_INDEX, start: 0, count: U32_MAX });
  refused(t, () => decodeSetIrqsRequest(p, L, 0), 'EINVAL', 'count 2^32-1 with no bools');
});

t.test('REGION_READ / REGION_WRITE: count', async (t) => {
  refused(t, () => decodeRegionReadRequest(encodeRegionReadRequest({ offset: 0, region: 2, count: U32_MAX }), L, 0), 'EINVAL', 'READ count 2^32-1');
  refused(t, () => decodeRegionReadRequest(encodeRegionReadRequest({ offset: 0, region: 2, count: L.maxDataXferSize + 1 }), L, 0), 'EINVAL',
    'READ count max_data_xfer_size + 1');
  const w = encodeRegionWriteRequest({ offset: 0, region: 2, data: Buffer.from([1]), count: U32_MAX });
  refused(t, () => decodeRegionWriteRequest(w, L, 0), 'EINVAL', 'WRITE count 2^32-1, one byte sent');
});

t.test('DMA_WRITE (client side): count', async (t) => {
  const p = Buffer.alloc(24);
  p.writeBigUInt64LE(U64_MAX, 8);
  refused(t, () => decodeDmaWriteRequest(p, L, 0), 'E2BIG', 'count 2^64-1');
  p.writeBigUInt64LE(BigInt(L.maxDataXferSize) + 1n, 8);
  refused(t, () => decodeDmaWriteRequest(p, L, 0), 'E2BIG', 'count max_data_xfer_size + 1');
});
