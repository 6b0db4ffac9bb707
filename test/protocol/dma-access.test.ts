// DMA_READ / DMA_WRITE: the server sends the requests, the client replies.
import t from 'tap';
import {
  decodeDmaReadReply, decodeDmaReadRequest, decodeDmaWriteReply, decodeDmaWriteRequest, encodeDmaReadReply,
  encodeDmaReadRequest, encodeDmaWriteReply, encodeDmaWriteRequest,
} from '../../protocol/commands/dma-access.js';
import { QEMU_LIMITS as L, concat, errnoOf, with32 } from './helpers.js';

const A = 0x1234_5000n;

t.test('u64 count, data at 16', async (t) => {
  const p = encodeDmaReadRequest(A, 4, L);
  t.equal(p.length, 16);
  t.equal(p.readBigUInt64LE(8), 4n);
  const req = decodeDmaReadRequest(p, L, 0);
  const reply = concat(encodeDmaReadReply(req, Buffer.from([9, 8, 7, 6])));
  t.equal(reply.length, 20);
  t.same([...decodeDmaReadReply(reply, req)], [9, 8, 7, 6]);
  const w = concat(encodeDmaWriteRequest(A, Buffer.from([1, 2]), L));
  t.equal(w.length, 18);
  const wreq = decodeDmaWriteRequest(w, L, 0);
  t.same([...wreq.data], [1, 2]);
  t.equal(encodeDmaWriteReply(wreq).length, 16);
  t.equal(errnoOf(() => decodeDmaWriteReply(encodeDmaWriteReply(wreq), wreq)), 'no error');
});

t.test('server side: what we may send, and checking what comes back', async (t) => {
  t.equal(errnoOf(() => encodeDmaReadRequest(A, L.peerMaxDataXferSize + 1, L)), 'E2BIG');
  t.equal(errnoOf(() => encodeDmaWriteRequest(A, Buffer.alloc(5), { ...L, peerMaxDataXferSize: 4 })), 'E2BIG');
  t.equal(errnoOf(() => encodeDmaReadRequest(0xffff_ffff_ffff_fff0n, 0x20, L)), 'EINVAL', 'addr + count overflows');
  t.equal(errnoOf(() => encodeDmaReadRequest(0xffff_ffff_ffff_fff0n, 0x10, L)), 'no error', 'ends at 2^64');
  const good = concat(encodeDmaReadReply({ addr: A, count: 8 }, Buffer.alloc(8)));
  t.equal(errnoOf(() => decodeDmaReadReply(with32(good, 8, 4), { addr: A, count: 8 })), 'EPROTO', 'count differs');
  t.equal(errnoOf(() => decodeDmaReadReply(good, { addr: A + 8n, count: 8 })), 'EPROTO', 'addr differs');
  t.equal(errnoOf(() => decodeDmaReadReply(good.subarray(0, 16), { addr: A, count: 8 })), 'EINVAL', 'data missing');
  t.equal(errnoOf(() => decodeDmaReadReply(good.subarray(0, 8), { addr: A, count: 8 })), 'EINVAL', 'too short');
});

t.test('client side (QEMU behaviour) validation', async (t) => {
  const rd = encodeDmaReadRequest(A, 8, L);
  t.equal(errnoOf(() => decodeDmaReadRequest(rd.subarray(0, 12), L, 0)), 'EINVAL', 'msg_size < 32');
  t.equal(errnoOf(() => decodeDmaReadRequest(rd, L, 1)), 'EINVAL', 'fds');
  t.equal(errnoOf(() => decodeDmaReadRequest(with32(rd, 8, L.maxDataXferSize + 1), L, 0)), 'E2BIG', 'count too large');
  const wr = concat(encodeDmaWriteRequest(A, Buffer.alloc(8), L));
  t.equal(errnoOf(() => decodeDmaWriteRequest(with32(wr, 8, 9), L, 0)), 'E2BIG', 'count > data');
  t.equal(errnoOf(() => decodeDmaWriteRequest(wr.subarray(0, 19), L, 0)), 'E2BIG', 'padding missing');
  t.equal(errnoOf(() => decodeDmaWriteRequest(wr, L, 2)), 'EINVAL', 'fds');
  t.equal(errnoOf(() => encodeDmaReadReply({ addr: A, count: 8 }, Buffer.alloc(7))), 'EIO');
});
