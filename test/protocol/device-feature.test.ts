import t from 'tap';
import {
  decodeDeviceFeatureReply, decodeDeviceFeatureRequest, dmaLoggingBitmapBytes, dmaLoggingReportData, dmaLoggingStartData,
  encodeDeviceFeatureReply, encodeDeviceFeatureRequest, encodeDmaLoggingReportReply, encodeDmaLoggingStartReply,
  migStateData,
} from '../../protocol/commands/device-feature.js';
import {
  MigState, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT as REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START as START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP as STOP, VFIO_DEVICE_FEATURE_GET as GET, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE as STATE,
  VFIO_DEVICE_FEATURE_MIGRATION as MIGRATION, VFIO_DEVICE_FEATURE_PROBE as PROBE, VFIO_DEVICE_FEATURE_SET as SET,
} from '../../protocol/constants.js';
import { QEMU_LIMITS as L, concat, errnoOf } from './helpers.js';

const dec = (p: Buffer, nfds = 0) => decodeDeviceFeatureRequest(p, L, nfds);
const G = 0x1_0000_0000n;

t.test('PROBE', async (t) => {
  const req = dec(encodeDeviceFeatureRequest({ feature: MIGRATION, ops: PROBE | GET }));
  t.same([req.op, req.get, req.set, req.feature], ['probe', true, false, MIGRATION]);
  const both = dec(encodeDeviceFeatureRequest({ feature: STATE, ops: PROBE | GET | SET }));
  t.equal(both.op, 'probe');
  t.same(concat(encodeDeviceFeatureReply(both)), encodeDeviceFeatureRequest({ feature: STATE, ops: PROBE | GET | SET }), 'echo');
  t.equal(errnoOf(() => dec(encodeDeviceFeatureRequest({ feature: MIGRATION, ops: PROBE | SET }))), 'EINVAL', 'MIGRATION cannot be SET');
});

t.test('MIG_DEVICE_STATE SET', async (t) => {
  const set = encodeDeviceFeatureRequest({ feature: STATE, ops: SET, data: migStateData(MigState.STOP) });
  const req = dec(set);
  t.same([req.op, req.migState], ['set', MigState.STOP]);
  t.same(concat(encodeDeviceFeatureReply(req)), set, 'SET reply echoes the request');
});

t.test('DMA logging start / stop', async (t) => {
  const ranges = [{ iova: G, length: 0x10_0000n }, { iova: 0n, length: 0x1000n }];
  const p = encodeDeviceFeatureRequest({ feature: START, ops: SET, data: dmaLoggingStartData(4096n, ranges) });
  t.equal(p.length, 8 + 16 + 32);
  const req = dec(p);
  t.same(req.logging, { pageSize: 4096n, ranges });
  const reply = concat(encodeDmaLoggingStartReply(req, 0x20_0000n));
  t.equal(reply.readBigUInt64LE(8), 0x20_0000n, 'device picked another page size');
  t.same(reply.subarray(16), p.subarray(16), 'the rest echoed');
  t.equal(dec(encodeDeviceFeatureRequest({ feature: STOP, ops: SET })).op, 'set');
});

t.test('DMA logging report', async (t) => {
  t.equal(dmaLoggingBitmapBytes(0x10_0000n, 4096n), 32n, '256 pages, 4 u64s');
  t.equal(dmaLoggingBitmapBytes(4097n, 4096n), 8n);
  const p = encodeDeviceFeatureRequest({ feature: REPORT, ops: GET, data: dmaLoggingReportData(G, 0x10_0000n, 4096n), argsz: 8 + 24 + 32 });
  const req = dec(p);
  t.same(req.report, { iova: G, length: 0x10_0000n, pageSize: 4096n, bitmapBytes: 32 });
  const bitmap = Buffer.alloc(32, 0xff);
  const r = decodeDeviceFeatureReply(concat(encodeDmaLoggingReportReply(req, bitmap)));
  t.equal(r.argsz, 8 + 24 + 32);
  t.same(r.data.subarray(24), bitmap);
  t.equal(errnoOf(() => encodeDmaLoggingReportReply(req, Buffer.alloc(8))), 'EIO');
});

t.test('validation', async (t) => {
  const req = (feature: number, ops: number, data?: Buffer, argsz?: number) => encodeDeviceFeatureRequest({ feature, ops, data, argsz });
  const cases: Array<[string, Buffer, number?]> = [
    ['short', Buffer.alloc(4)],
    ['an fd', req(STOP, SET), 1],
    ['no operation', req(MIGRATION, 0)],
    ['GET | SET without PROBE', req(STATE, GET | SET, undefined, 16)],
    ['unknown flag bit', req(MIGRATION, GET | (1 << 19), undefined, 16)],
    ['unknown feature', req(3, GET, undefined, 64)],
    ['feature 0', req(0, PROBE | GET)],
    ['MIGRATION SET', req(MIGRATION, SET, Buffer.alloc(8))],
    ['MIGRATION GET argsz too small', req(MIGRATION, GET)],
    ['MIGRATION GET with data', req(MIGRATION, GET, Buffer.alloc(8), 16)],
    ['state SET to ERROR', req(STATE, SET, migStateData(MigState.ERROR))],
    ['state SET to 8', req(STATE, SET, migStateData(8))],
    ['state SET without data', req(STATE, SET, undefined, 16)],
    ['STOP with data', req(STOP, SET, Buffer.alloc(8))],
    ['START with GET', req(START, GET, undefined, 64)],
    ['START page_size 0', req(START, SET, dmaLoggingStartData(0n, []))],
    ['START range length 0', req(START, SET, dmaLoggingStartData(4096n, [{ iova: 0n, length: 0n }]))],
    ['START range overflows', req(START, SET, dmaLoggingStartData(4096n, [{ iova: 0xffff_ffff_ffff_f000n, length: 0x2000n }]))],
    ['START ranges overlap', req(START, SET, dmaLoggingStartData(4096n, [{ iova: 0n, length: 0x2000n }, { iova: 0x1000n, length: 0x1000n }]))],
    ['START num_ranges beyond the data', req(START, SET, dmaLoggingStartData(4096n, [{ iova: 0n, length: 1n }]).subarray(0, 24))],
    ['START argsz < payload', req(START, SET, dmaLoggingStartData(4096n, []), 8)],
    ['PROBE argsz < payload (the echo would not fit)', req(START, PROBE | SET, Buffer.alloc(64), 8)],
    ['PROBE argsz one short', req(STATE, PROBE | GET, Buffer.alloc(8), 15)],
    ['state SET argsz < payload', req(STATE, SET, migStateData(MigState.STOP), 15)],
    ['REPORT page_size 3', req(REPORT, GET, dmaLoggingReportData(0n, 0x1000n, 3n), 4096)],
    ['REPORT length 0', req(REPORT, GET, dmaLoggingReportData(0n, 0n, 4096n), 4096)],
    ['REPORT overflow', req(REPORT, GET, dmaLoggingReportData(0xffff_ffff_ffff_f000n, 0x2000n, 4096n), 4096)],
    ['REPORT argsz too small for the bitmap', req(REPORT, GET, dmaLoggingReportData(0n, 0x10_0000n, 4096n), 8 + 24 + 31)],
    ['REPORT bitmap > max_data_xfer_size', req(REPORT, GET, dmaLoggingReportData(0n, 1n << 48n, 4096n), 0xffffffff)],
    ['REPORT SET', req(REPORT, SET, dmaLoggingReportData(0n, 0x1000n, 4096n))],
  ];
  for (const [name, p, nfds] of cases) t.equal(errnoOf(() => dec(p, nfds ?? 0)), 'EINVAL', name);
  const many = Array.from({ length: 257 }, (_, i) => ({ iova: BigInt(i) * 0x1000n, length: 0x1000n }));
  t.equal(errnoOf(() => dec(req(START, SET, dmaLoggingStartData(4096n, many)))), 'E2BIG', '257 ranges');
  const huge = dmaLoggingStartData(4096n, []);
  huge.writeUInt32LE(0xffffffff, 8);
  t.equal(errnoOf(() => dec(req(START, SET, huge))), 'E2BIG', 'num_ranges 0xFFFFFFFF: refused before any range is read');
  t.equal(dec(req(START, PROBE | SET, Buffer.alloc(64), 72)).op, 'probe', 'PROBE with data fits an argsz of its size');
});
