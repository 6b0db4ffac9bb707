// REGION_READ, REGION_WRITE and REGION_WRITE_MULTI.
import t from 'tap';
import {
  decodeRegionReadReply, decodeRegionReadRequest, decodeRegionWriteReply, decodeRegionWriteRequest,
  encodeRegionReadReply, encodeRegionReadRequest, encodeRegionWriteReply, encodeRegionWriteRequest,
} from '../../protocol/commands/region-access.js';
import {
  decodeRegionWriteMultiReply, decodeRegionWriteMultiRequest, encodeRegionWriteMultiReply, encodeRegionWriteMultiRequest,
} from '../../protocol/commands/region-write-multi.js';
import { VFIO_PCI_CONFIG_REGION_INDEX as CFG } from '../../protocol/constants.js';
import { QEMU_LIMITS as L, concat, errnoOf, with32, with64 } from './helpers.js';

t.test('REGION_READ round trip (the reply data is not copied)', async (t) => {
  const p = encodeRegionReadRequest({ offset: 0x40, region: CFG, count: 4 });
  t.equal(p.length, 16);
  const req = decodeRegionReadRequest(p, L, 0);
  t.same(req, { offset: 0x40, region: CFG, count: 4 });
  const data = Buffer.from([1, 2, 3, 4]);
  const parts = encodeRegionReadReply(req, data);
  t.equal(parts.length, 2);
  t.equal(parts[1], data);
  const r = decodeRegionReadReply(concat(parts), 4);
  t.same([r.offset, r.region, r.count, [...r.data]], [0x40, CFG, 4, [1, 2, 3, 4]]);
  t.equal(decodeRegionReadRequest(encodeRegionReadRequest({ offset: 0, region: CFG, count: 4096 }), L, 0).count, 4096,
    'a whole PCIe config space in one read');
  t.equal(decodeRegionReadRequest(encodeRegionReadRequest({ offset: 0, region: 0, count: L.maxDataXferSize }), L, 0).count,
    L.maxDataXferSize, 'count == max_data_xfer_size is fine');
});

t.test('REGION_WRITE round trip (the data is a view into the payload)', async (t) => {
  const p = encodeRegionWriteRequest({ offset: 0x1000, region: 2, data: Buffer.from('abcdefgh') });
  t.equal(p.length, 24);
  const req = decodeRegionWriteRequest(p, L, 0);
  t.same([req.offset, req.region, req.count, req.data.toString()], [0x1000, 2, 8, 'abcdefgh']);
  t.equal(req.data.buffer, p.buffer);
  t.equal(req.data.byteOffset, p.byteOffset + 16);
  const reply = encodeRegionWriteReply(req);
  t.equal(reply.length, 16);
  t.same(decodeRegionWriteReply(reply), { offset: 0x1000, region: 2, count: 8 });
});

t.test('REGION_READ / REGION_WRITE validation', async (t) => {
  const rd = encodeRegionReadRequest({ offset: 0, region: 0, count: 8 });
  const wr = encodeRegionWriteRequest({ offset: 0, region: 0, data: Buffer.alloc(8) });
  const cases: Array<[string, () => unknown]> = [
    ['read: 15 bytes', () => decodeRegionReadRequest(rd.subarray(0, 15), L, 0)],
    ['read: 17 bytes', () => decodeRegionReadRequest(Buffer.concat([rd, Buffer.alloc(1)]), L, 0)],
    ['read: an fd', () => decodeRegionReadRequest(rd, L, 1)],
    ['read: count > max_data_xfer_size', () => decodeRegionReadRequest(with32(rd, 12, L.maxDataXferSize + 1), L, 0)],
    ['read: offset 0xFFFFFFFFFFFFFFF0 + 0x20', () => decodeRegionReadRequest(with32(with64(rd, 0, 0xffff_ffff_ffff_fff0n), 12, 0x20), L, 0)],
    ['read: offset 2^53', () => decodeRegionReadRequest(with64(rd, 0, 1n << 53n), L, 0)],
    ['read: offset + count past 2^53', () => decodeRegionReadRequest(with64(rd, 0, BigInt(Number.MAX_SAFE_INTEGER - 3)), L, 0)],
    ['write: count larger than the data', () => decodeRegionWriteRequest(with32(wr, 12, 9), L, 0)],
    ['write: count smaller than the data', () => decodeRegionWriteRequest(with32(wr, 12, 7), L, 0)],
    ['write: header only', () => decodeRegionWriteRequest(wr.subarray(0, 12), L, 0)],
    ['write: an fd', () => decodeRegionWriteRequest(wr, L, 1)],
    ['write: count > max_data_xfer_size', () => decodeRegionWriteRequest(
      encodeRegionWriteRequest({ offset: 0, region: 0, data: Buffer.alloc(L.maxDataXferSize + 1) }), L, 0)],
    ['write: offset near 2^64', () => decodeRegionWriteRequest(with64(wr, 0, 0xffff_ffff_ffff_fff0n), L, 0)],
  ];
  for (const [name, fn] of cases) t.equal(errnoOf(fn), 'EINVAL', name);
  t.equal(errnoOf(() => decodeRegionReadRequest(with64(rd, 0, BigInt(Number.MAX_SAFE_INTEGER - 8)), L, 0)), 'no error');
});

t.test('replies', async (t) => {
  const req = { offset: 0, region: 0, count: 4 };
  t.equal(errnoOf(() => encodeRegionReadReply(req, Buffer.alloc(5))), 'EIO', 'device returned too much');
  t.equal(concat(encodeRegionReadReply(req, Buffer.alloc(2))).readUInt32LE(12), 2, 'short read: count says so');
  const full = concat(encodeRegionReadReply(req, Buffer.alloc(4)));
  t.equal(errnoOf(() => decodeRegionReadReply(full, 2)), 'E2BIG', 'client: more than asked (QEMU: E2BIG)');
  t.equal(errnoOf(() => decodeRegionReadReply(full.subarray(0, 18), 4)), 'EINVAL', 'client: data missing');
});

t.test('REGION_WRITE_MULTI round trip', async (t) => {
  const writes = [
    { offset: 0x10, region: 0, data: Buffer.from([1]) },
    { offset: 0x20, region: 2, data: Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]) },
    { offset: 0x30, region: 0, data: Buffer.from([9, 9]) },
  ];
  const p = encodeRegionWriteMultiRequest(writes);
  t.equal(p.length, 8 + 3 * 24, 'QEMU VFIOUserWRMulti without the unused entries');
  const got = decodeRegionWriteMultiRequest(p, L, 0);
  t.same(got.map((w) => [w.offset, w.region, w.count, [...w.data]]),
    writes.map((w) => [w.offset, w.region, w.data.length, [...w.data]]));
  t.equal(decodeRegionWriteMultiReply(encodeRegionWriteMultiReply(3)), 3);
});

t.test('REGION_WRITE_MULTI validation', async (t) => {
  const one = encodeRegionWriteMultiRequest([{ offset: 0, region: 0, data: Buffer.from([1, 2]) }]);
  const cases: Array<[string, () => unknown]> = [
    ['not negotiated', () => decodeRegionWriteMultiRequest(one, { ...L, writeMultiple: false }, 0)],
    ['short', () => decodeRegionWriteMultiRequest(one.subarray(0, 4), L, 0)],
    ['wr_cnt 0', () => decodeRegionWriteMultiRequest(with64(one, 0, 0n), L, 0)],
    ['wr_cnt 201', () => decodeRegionWriteMultiRequest(with64(one, 0, 201n), L, 0)],
    ['wr_cnt 2^63', () => decodeRegionWriteMultiRequest(with64(one, 0, 1n << 63n), L, 0)],
    ['wr_cnt 2 with one entry', () => decodeRegionWriteMultiRequest(with64(one, 0, 2n), L, 0)],
    ['trailing bytes', () => decodeRegionWriteMultiRequest(Buffer.concat([one, Buffer.alloc(1)]), L, 0)],
    ['entry count 9', () => decodeRegionWriteMultiRequest(with32(one, 8 + 12, 9), L, 0)],
    ['entry count 0', () => decodeRegionWriteMultiRequest(with32(one, 8 + 12, 0), L, 0)],
    ['entry offset near 2^64', () => decodeRegionWriteMultiRequest(with64(one, 8, 0xffff_ffff_ffff_fff8n), L, 0)],
    ['an fd', () => decodeRegionWriteMultiRequest(one, L, 1)],
  ];
  for (const [name, fn] of cases) t.equal(errnoOf(fn), 'EINVAL', name);
  const max = encodeRegionWriteMultiRequest(Array.from({ length: 200 }, (_, i) => ({ offset: i * 4, region: 0, data: Buffer.alloc(4) })));
  t.equal(decodeRegionWriteMultiRequest(max, L, 0).length, 200, '200 entries is the maximum');
});
