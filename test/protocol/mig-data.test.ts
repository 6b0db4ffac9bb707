// MIG_DATA_READ / MIG_DATA_WRITE and the deprecated DIRTY_PAGES.
import t from 'tap';
import {
  decodeDirtyPagesRequest, dirtyPagesReplySize, encodeDirtyPagesReply, encodeDirtyPagesRequest,
} from '../../protocol/commands/dirty-pages.js';
import {
  decodeMigDataReadReply, decodeMigDataReadRequest, decodeMigDataWriteRequest, encodeMigDataReadReply, encodeMigDataReadRequest,
  encodeMigDataWriteReply, encodeMigDataWriteRequest,
} from '../../protocol/commands/mig-data.js';
import {
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP as GET_BITMAP, VFIO_IOMMU_DIRTY_PAGES_FLAG_START as DSTART,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP as DSTOP,
} from '../../protocol/constants.js';
import { QEMU_LIMITS as L, concat, errnoOf, with32 } from './helpers.js';

t.test('MIG_DATA_READ round trip', async (t) => {
  const req = decodeMigDataReadRequest(encodeMigDataReadRequest(100), L, 0);
  t.same(req, { argsz: 108, size: 100 });
  const parts = encodeMigDataReadReply(req, Buffer.from('state'));
  const reply = concat(parts);
  t.same([reply.readUInt32LE(0), reply.readUInt32LE(4)], [13, 5], 'argsz 8 + n, size n < asked: end of stream');
  t.equal(decodeMigDataReadReply(reply).toString(), 'state');
  t.equal(errnoOf(() => encodeMigDataReadReply(req, Buffer.alloc(101))), 'EIO');
});

t.test('MIG_DATA_WRITE round trip', async (t) => {
  const p = encodeMigDataWriteRequest(Buffer.from([1, 2, 3, 4]));
  const req = decodeMigDataWriteRequest(p, L, 0);
  t.same([req.argsz, req.size, [...req.data]], [12, 4, [1, 2, 3, 4]]);
  t.equal(req.data.buffer, p.buffer);
  t.equal(encodeMigDataWriteReply().length, 0);
});

t.test('MIG_DATA validation (EINVAL, as libvfio-user)', async (t) => {
  const rd = encodeMigDataReadRequest(16);
  const wr = encodeMigDataWriteRequest(Buffer.alloc(4));
  const cases: Array<[string, () => unknown]> = [
    ['read: short', () => decodeMigDataReadRequest(rd.subarray(0, 4), L, 0)],
    ['read: long', () => decodeMigDataReadRequest(Buffer.concat([rd, Buffer.alloc(1)]), L, 0)],
    ['read: size > max_data_xfer_size', () => decodeMigDataReadRequest(encodeMigDataReadRequest(L.maxDataXferSize + 1), L, 0)],
    ['read: argsz < 8 + size', () => decodeMigDataReadRequest(encodeMigDataReadRequest(16, 23), L, 0)],
    ['read: an fd', () => decodeMigDataReadRequest(rd, L, 1)],
    ['write: short data', () => decodeMigDataWriteRequest(wr.subarray(0, 10), L, 0)],
    ['write: extra data', () => decodeMigDataWriteRequest(Buffer.concat([wr, Buffer.alloc(1)]), L, 0)],
    ['write: argsz too small', () => decodeMigDataWriteRequest(with32(wr, 0, 11), L, 0)],
    ['write: size > max', () => decodeMigDataWriteRequest(with32(wr, 4, L.maxDataXferSize + 1), L, 0)],
    ['write: an fd', () => decodeMigDataWriteRequest(wr, L, 1)],
  ];
  for (const [name, fn] of cases) t.equal(errnoOf(fn), 'EINVAL', name);
});

t.test('DIRTY_PAGES (deprecated)', async (t) => {
  t.same(decodeDirtyPagesRequest(encodeDirtyPagesRequest(DSTART), L, 0), { argsz: 8, flags: DSTART });
  t.same(decodeDirtyPagesRequest(encodeDirtyPagesRequest(DSTOP), L, 0), { argsz: 8, flags: DSTOP });
  const range = { iova: 0x10_0000n, size: 0x40000n, pgsize: 4096n, bitmapBytes: 8 };
  const req = decodeDirtyPagesRequest(encodeDirtyPagesRequest(GET_BITMAP, range), L, 0);
  t.same(req.range, range);
  t.equal(dirtyPagesReplySize(req), 48);
  const reply = concat(encodeDirtyPagesReply(req, Buffer.alloc(8, 1)));
  t.same([reply.length, reply.readUInt32LE(0), reply[40]], [48, 48, 1]);
  const small = decodeDirtyPagesRequest(encodeDirtyPagesRequest(GET_BITMAP, range, 8), L, 0);
  const cut = concat(encodeDirtyPagesReply(small));
  t.same([cut.length, cut.readUInt32LE(0)], [8, 48], 'argsz too small: header with the size needed');
  t.equal(concat(encodeDirtyPagesReply(decodeDirtyPagesRequest(encodeDirtyPagesRequest(DSTART), L, 0))).length, 0);
  const cases: Array<[string, Buffer, number?]> = [
    ['flags 0', encodeDirtyPagesRequest(0)],
    ['START|STOP', encodeDirtyPagesRequest(DSTART | DSTOP)],
    ['START with a range', encodeDirtyPagesRequest(DSTART, range)],
    ['GET_BITMAP without a range', encodeDirtyPagesRequest(GET_BITMAP)],
    ['bitmap too small', encodeDirtyPagesRequest(GET_BITMAP, { ...range, bitmapBytes: 0 })],
    ['pgsize 1000', encodeDirtyPagesRequest(GET_BITMAP, { ...range, pgsize: 1000n })],
    ['size 0', encodeDirtyPagesRequest(GET_BITMAP, { ...range, size: 0n })],
    ['overflow', encodeDirtyPagesRequest(GET_BITMAP, { ...range, iova: 0xffff_ffff_ffff_f000n })],
    ['argsz 4', encodeDirtyPagesRequest(DSTART, undefined, 4)],
    ['an fd', encodeDirtyPagesRequest(DSTART), 1],
  ];
  for (const [name, p, nfds] of cases) t.equal(errnoOf(() => decodeDirtyPagesRequest(p, L, nfds ?? 0)), 'EINVAL', name);
});
