import t from 'tap';
import { decodeDmaMapRequest, encodeDmaMapRequest } from '../../protocol/commands/dma-map.js';
import {
  decodeDmaUnmapReply, decodeDmaUnmapRequest, encodeDmaUnmapReply, encodeDmaUnmapRequest,
} from '../../protocol/commands/dma-unmap.js';
import { VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_UNMAP_FLAG_ALL, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP } from '../../protocol/constants.js';
import { QEMU_LIMITS as L, concat, errnoOf, with32 } from './helpers.js';

const G = 0x1_0000_0000n; // 4 GiB

t.test('DMA_MAP round trip', async (t) => {
  const p = encodeDmaMapRequest({ addr: G, size: 0x4000_0000n, offset: 0x20_0000n });
  t.equal(p.length, 32);
  t.same(decodeDmaMapRequest(p, L, 1), {
    argsz: 32, flags: 3, readable: true, writable: true, offset: 0x20_0000n, addr: G, size: 0x4000_0000n, fdIndex: 0,
  });
  const ro = decodeDmaMapRequest(encodeDmaMapRequest({ addr: 0n, size: 0x1000n, flags: VFIO_DMA_MAP_FLAG_READ }), L, 0);
  t.same([ro.readable, ro.writable, ro.fdIndex], [true, false, null]);
  t.equal(decodeDmaMapRequest(encodeDmaMapRequest({ addr: 0xffff_ffff_ffff_f000n, size: 0x1000n }), L, 0).size, 0x1000n,
    'a mapping may end exactly at 2^64');
});

t.test('DMA_MAP validation', async (t) => {
  const ok = { addr: G, size: 0x10000n };
  const cases: Array<[string, Buffer, number]> = [
    ['31 bytes', encodeDmaMapRequest(ok).subarray(0, 31), 0],
    ['33 bytes', Buffer.concat([encodeDmaMapRequest(ok), Buffer.alloc(1)]), 0],
    ['argsz 31', encodeDmaMapRequest({ ...ok, argsz: 31 }), 0],
    ['unknown flag', encodeDmaMapRequest({ ...ok, flags: 7 }), 0],
    ['no READ nor WRITE', encodeDmaMapRequest({ ...ok, flags: 0 }), 0],
    ['two fds', encodeDmaMapRequest(ok), 2],
    ['size 0', encodeDmaMapRequest({ addr: G, size: 0n }), 0],
    ['addr unaligned', encodeDmaMapRequest({ addr: G + 0x10n, size: 0x1000n }), 0],
    ['size unaligned', encodeDmaMapRequest({ addr: G, size: 0x1001n }), 0],
    ['addr + size overflows', encodeDmaMapRequest({ addr: 0xffff_ffff_ffff_f000n, size: 0x2000n }), 0],
    ['offset unaligned (fd)', encodeDmaMapRequest({ ...ok, offset: 0x800n }), 1],
    ['offset + size overflows (fd)', encodeDmaMapRequest({ ...ok, offset: 0xffff_ffff_ffff_f000n }), 1],
    ['offset without fd', encodeDmaMapRequest({ ...ok, offset: 0x1000n }), 0],
  ];
  for (const [name, p, nfds] of cases) t.equal(errnoOf(() => decodeDmaMapRequest(p, L, nfds)), 'EINVAL', name);
  t.equal(errnoOf(() => decodeDmaMapRequest(encodeDmaMapRequest(ok), { ...L, pgsizes: 0x200000 }, 0)), 'EINVAL',
    'alignment follows the negotiated page size');
  t.equal(errnoOf(() => decodeDmaMapRequest(encodeDmaMapRequest({ ...ok, argsz: 64 }), L, 0)), 'no error', 'larger argsz is fine');
});

t.test('DMA_UNMAP round trip: the reply echoes the request', async (t) => {
  const p = encodeDmaUnmapRequest({ addr: G, size: 0x2000n });
  t.equal(p.length, 24);
  const req = decodeDmaUnmapRequest(p, L, 0);
  t.same(req, { argsz: 24, flags: 0, all: false, addr: G, size: 0x2000n });
  const reply = concat(encodeDmaUnmapReply(req));
  t.same(reply, p, 'identical to the request (QEMU allots exactly that much)');
  t.same(decodeDmaUnmapReply(reply), { argsz: 24, flags: 0, addr: G, size: 0x2000n });
  const all = decodeDmaUnmapRequest(encodeDmaUnmapRequest({ addr: 0n, size: 0n, flags: VFIO_DMA_UNMAP_FLAG_ALL }), L, 0);
  t.equal(all.all, true);
});

t.test('DMA_UNMAP validation', async (t) => {
  const ok = { addr: G, size: 0x2000n };
  const cases: Array<[string, Buffer, number]> = [
    ['23 bytes', encodeDmaUnmapRequest(ok).subarray(0, 23), 0],
    ['25 bytes', Buffer.concat([encodeDmaUnmapRequest(ok), Buffer.alloc(1)]), 0],
    ['argsz 16', encodeDmaUnmapRequest({ ...ok, argsz: 16 }), 0],
    ['an fd', encodeDmaUnmapRequest(ok), 1],
    ['unknown flag', encodeDmaUnmapRequest({ ...ok, flags: 4 }), 0],
    ['ALL | GET_DIRTY_BITMAP', encodeDmaUnmapRequest({ ...ok, flags: 3 }), 0],
    ['ALL with an address', encodeDmaUnmapRequest({ addr: G, size: 0n, flags: VFIO_DMA_UNMAP_FLAG_ALL }), 0],
    ['ALL with a size', encodeDmaUnmapRequest({ addr: 0n, size: 0x1000n, flags: VFIO_DMA_UNMAP_FLAG_ALL }), 0],
    ['size 0', encodeDmaUnmapRequest({ addr: G, size: 0n }), 0],
    ['unaligned', encodeDmaUnmapRequest({ addr: G + 1n, size: 0x1000n }), 0],
    ['overflow', encodeDmaUnmapRequest({ addr: 0xffff_ffff_ffff_f000n, size: 0x2000n }), 0],
  ];
  for (const [name, p, nfds] of cases) t.equal(errnoOf(() => decodeDmaUnmapRequest(p, L, nfds)), 'EINVAL', name);
});

t.test('DMA_UNMAP with a dirty bitmap (legacy)', async (t) => {
  const bitmap = { pgsize: 4096n, size: 8 };
  const p = encodeDmaUnmapRequest({ addr: G, size: 0x40000n, bitmap }); // 64 pages → 8 bytes
  t.equal(p.length, 40);
  const req = decodeDmaUnmapRequest(p, L, 0);
  t.same(req.bitmap, bitmap);
  const bits = Buffer.from('0102030405060708', 'hex');
  const reply = decodeDmaUnmapReply(concat(encodeDmaUnmapReply(req, bits)));
  t.same(reply.bitmap, bits);
  t.equal(errnoOf(() => encodeDmaUnmapReply(req, Buffer.alloc(4))), 'EIO', 'wrong bitmap length is a server bug');
  const flags = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
  t.equal(errnoOf(() => decodeDmaUnmapRequest(encodeDmaUnmapRequest({ addr: G, size: 0x80000n, bitmap }), L, 0)), 'EINVAL', 'bitmap too small');
  t.equal(errnoOf(() => decodeDmaUnmapRequest(encodeDmaUnmapRequest({ addr: G, size: 0x40000n, bitmap: { pgsize: 3000n, size: 8 } }), L, 0)), 'EINVAL', 'pgsize not a power of two');
  t.equal(errnoOf(() => decodeDmaUnmapRequest(with32(p, 0, 40), L, 0)), 'EINVAL', 'argsz leaves no room for the bitmap');
  t.equal(errnoOf(() => decodeDmaUnmapRequest(encodeDmaUnmapRequest({ addr: G, size: 0x1000n, flags }), L, 0)), 'EINVAL', 'bitmap header missing');
});
