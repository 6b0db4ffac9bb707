// DEVICE_GET_REGION_INFO (with its capability chain) and GET_REGION_IO_FDS.
import t from 'tap';
import {
  decodeRegionInfoReply, decodeRegionInfoRequest, encodeRegionInfoReply, encodeRegionInfoRequest, regionInfoReplySize,
  type RegionInfo,
} from '../../protocol/commands/region-info.js';
import {
  decodeRegionIoFdsReply, decodeRegionIoFdsRequest, encodeRegionIoFdsReply, encodeRegionIoFdsRequest, regionIoFdsReplySize,
} from '../../protocol/commands/region-io-fds.js';
import {
  VFIO_REGION_INFO_CAP_SPARSE_MMAP, VFIO_REGION_INFO_CAP_TYPE, VFIO_REGION_INFO_FLAG_CAPS, VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE, VFIO_USER_IO_FD_TYPE_IOEVENTFD,
} from '../../protocol/constants.js';
import { QEMU_LIMITS as L, errnoOf, with32, with64 } from './helpers.js';

const RW = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
const bar0: RegionInfo = {
  index: 0, flags: RW | VFIO_REGION_INFO_FLAG_MMAP, size: 0x4000, offset: 0,
  sparseAreas: [{ offset: 0x1000, size: 0x1000 }, { offset: 0x3000, size: 0x1000 }],
};

t.test('request round trip and validation', async (t) => {
  const p = encodeRegionInfoRequest(7, 256);
  t.same(decodeRegionInfoRequest(p, L, 0), { argsz: 256, index: 7 });
  t.equal(errnoOf(() => decodeRegionInfoRequest(encodeRegionInfoRequest(0, 31), L, 0)), 'EINVAL', 'argsz 31');
  t.equal(errnoOf(() => decodeRegionInfoRequest(p.subarray(0, 16), L, 0)), 'EINVAL', 'short');
  t.equal(errnoOf(() => decodeRegionInfoRequest(Buffer.concat([p, Buffer.alloc(8)]), L, 0)), 'EINVAL', 'long');
  t.equal(errnoOf(() => decodeRegionInfoRequest(with32(p, 4, 1), L, 0)), 'EINVAL', 'flags set');
  t.equal(errnoOf(() => decodeRegionInfoRequest(with32(p, 12, 32), L, 0)), 'EINVAL', 'cap_offset set');
  t.equal(errnoOf(() => decodeRegionInfoRequest(with64(p, 16, 1n), L, 0)), 'EINVAL', 'size set');
  t.equal(errnoOf(() => decodeRegionInfoRequest(with64(p, 24, 1n), L, 0)), 'EINVAL', 'offset set');
  t.equal(errnoOf(() => decodeRegionInfoRequest(p, L, 1)), 'EINVAL', 'an fd');
});

t.test('a plain region: 32 bytes', async (t) => {
  const r = encodeRegionInfoReply({ argsz: 32, index: 7 }, { index: 7, flags: RW, size: 4096, offset: 0 });
  t.equal(r.length, 32);
  t.same(decodeRegionInfoReply(r), { argsz: 32, flags: RW, index: 7, capOffset: 0, size: 4096n, offset: 0n, caps: [] });
});

t.test('sparse mmap capability, when argsz allows', async (t) => {
  t.equal(regionInfoReplySize(bar0), 32 + 16 + 32);
  const r = encodeRegionInfoReply({ argsz: 4096, index: 0 }, bar0);
  t.equal(r.length, 80);
  const d = decodeRegionInfoReply(r);
  t.equal(d.argsz, 80);
  t.equal(d.flags, RW | VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS);
  t.equal(d.capOffset, 32);
  t.same(d.caps.map((c) => [c.id, c.version, c.offset]), [[VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, 32]]);
  t.same(d.sparseAreas, [{ offset: 0x1000n, size: 0x1000n }, { offset: 0x3000n, size: 0x1000n }]);
  t.equal(r.readUInt32LE(32 + 4), 0, 'last capability: next 0');
});

t.test('capabilities that do not fit: 32 bytes, argsz says what is needed', async (t) => {
  const r = encodeRegionInfoReply({ argsz: 32, index: 0 }, bar0);
  t.equal(r.length, 32);
  const d = decodeRegionInfoReply(r);
  t.equal(d.argsz, 80);
  t.equal(d.flags & VFIO_REGION_INFO_FLAG_CAPS, 0);
  t.equal(d.capOffset, 0);
  t.equal(encodeRegionInfoReply({ argsz: 79, index: 0 }, bar0).length, 32, 'one byte short is still too short');
});

t.test('a chain of two capabilities', async (t) => {
  const info: RegionInfo = { ...bar0, index: 9, capType: { type: 3, subtype: 1 } };
  const r = encodeRegionInfoReply({ argsz: 1024, index: 9 }, info);
  t.equal(r.length, 96);
  const d = decodeRegionInfoReply(r);
  t.same(d.caps.map((c) => [c.id, c.offset]), [[VFIO_REGION_INFO_CAP_SPARSE_MMAP, 32], [VFIO_REGION_INFO_CAP_TYPE, 80]]);
  t.equal(r.readUInt32LE(32 + 4), 80, 'first cap points at the second');
  t.same(d.capType, { type: 3, subtype: 1 });
  t.equal(d.sparseAreas?.length, 2);
});

t.test('client side: a broken chain is EINVAL', async (t) => {
  const r = encodeRegionInfoReply({ argsz: 1024, index: 9 }, { ...bar0, capType: { type: 3, subtype: 1 } });
  t.equal(errnoOf(() => decodeRegionInfoReply(with32(r, 12, 8))), 'EINVAL', 'cap_offset inside the fixed part');
  t.equal(errnoOf(() => decodeRegionInfoReply(with32(r, 12, 200))), 'EINVAL', 'cap_offset past the end');
  t.equal(errnoOf(() => decodeRegionInfoReply(with32(r, 36, 32))), 'EINVAL', 'next loops back');
  t.equal(errnoOf(() => decodeRegionInfoReply(with32(r, 36, 500))), 'EINVAL', 'next past the end');
  t.equal(errnoOf(() => decodeRegionInfoReply(with32(r, 40, 100))), 'EINVAL', 'nr_areas too large');
});

t.test('GET_REGION_IO_FDS', async (t) => {
  const p = encodeRegionIoFdsRequest(0, 256);
  const req = decodeRegionIoFdsRequest(p, L, 0);
  t.same(req, { argsz: 256, index: 0 });
  const subs = [
    { offset: 0x1000, size: 4, fdIndex: 0, type: VFIO_USER_IO_FD_TYPE_IOEVENTFD, flags: 1, data: 0x55n },
    { offset: 0x2000, size: 0, fdIndex: 0, type: VFIO_USER_IO_FD_TYPE_IOEVENTFD, flags: 0, data: 0 },
  ];
  t.equal(regionIoFdsReplySize(2), 96);
  const full = decodeRegionIoFdsReply(encodeRegionIoFdsReply(req, subs));
  t.same([full.argsz, full.count, full.subRegions.length], [96, 2, 2]);
  t.same(full.subRegions[0], { offset: 0x1000n, size: 4n, fdIndex: 0, type: 0, flags: 1, data: 0x55n });
  const cut = decodeRegionIoFdsReply(encodeRegionIoFdsReply({ argsz: 16, index: 0 }, subs));
  t.same([cut.argsz, cut.count, cut.subRegions.length], [96, 2, 0], 'argsz too small: header only');
  t.equal(errnoOf(() => decodeRegionIoFdsRequest(with32(p, 4, 1), L, 0)), 'EINVAL', 'flags');
  t.equal(errnoOf(() => decodeRegionIoFdsRequest(with32(p, 12, 1), L, 0)), 'EINVAL', 'count');
  t.equal(errnoOf(() => decodeRegionIoFdsRequest(encodeRegionIoFdsRequest(0, 8), L, 0)), 'EINVAL', 'argsz 8');
  t.equal(errnoOf(() => decodeRegionIoFdsRequest(encodeRegionIoFdsRequest(0, L.maxDataXferSize + 1), L, 0)), 'EINVAL', 'argsz huge');
  t.equal(errnoOf(() => decodeRegionIoFdsRequest(p, L, 1)), 'EINVAL', 'an fd');
  t.equal(errnoOf(() => decodeRegionIoFdsRequest(p.subarray(0, 12), L, 0)), 'EINVAL', 'short');
});
