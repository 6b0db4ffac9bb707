// DMA_READ / DMA_WRITE: the server sends the requests, the client replies.
import t from 'tap';
import {
  decodeDmaReadReply, decodeDmaReadRequest, decodeDmaWriteReply, decodeDmaWriteRequest, encodeDmaReadReply,
  encodeDmaReadRequest, encodeDmaWriteReply, encodeDmaWriteRequest,
} from '../../protocol/commands/dma-access.js';
import { QEMU_LIMITS as L, concat, errnoOf, with32 } from './helpers.js';

const A = 0x1234_5000n;

/** The bytes QEMU 11.1 sends back for a DMA_READ (pci.c vfio_user_dma_read). */
function qemuReadReply(request: Buffer, data: Buffer): Buffer {
  const msg = Buffer.alloc(32 + data.length); // g_malloc0(count + sizeof(VFIOUserDMARW))
  request.copy(msg, 16, 0, 12); // memcpy(res, msg, sizeof(*res)) (addr and count)
  data.copy(msg, 28); // pci_dma_read(..., &res->data, ...)
  return msg.subarray(16); // the payload
}

t.test('DMA_READ, the non-default \'qemu\' layout: 16-byte request, data at 12 in the reply', async (t) => {
  const p = encodeDmaReadRequest(A, 8, L, 'qemu');
  t.equal(p.length, 16, 'QEMU needs msg_size >= sizeof(VFIOUserDMARW) = 32');
  t.equal(p.readBigUInt64LE(0), A);
  t.equal(p.readUInt32LE(8), 8);
  t.equal(p.readUInt32LE(12), 0, 'padding');
  const data = Buffer.from('01234567');
  t.same(decodeDmaReadReply(qemuReadReply(p, data), { addr: A, count: 8 }, 'qemu'), data);
  // our test client does the same
  const req = decodeDmaReadRequest(p, L, 0, 'qemu');
  t.same(req, { addr: A, count: 8 });
  const reply = concat(encodeDmaReadReply(req, data, 'qemu'));
  t.same(reply, qemuReadReply(p, data), 'byte for byte what QEMU sends');
});

t.test('DMA_WRITE, the non-default \'qemu\' layout: data at 12, 4 padding bytes after it', async (t) => {
  const data = Buffer.from('hello, guest');
  const parts = encodeDmaWriteRequest(A, data, L, 'qemu');
  t.equal(parts[1], data, 'data not copied');
  const p = concat(parts);
  const size = 16 + p.length;
  const count = p.readUInt32LE(8);
  t.ok(size >= 32 && count <= size - 32, 'passes QEMU checks in vfio_user_dma_write');
  t.same(p.subarray(12, 12 + count), data, 'where QEMU reads the data (&msg->data)');
  const req = decodeDmaWriteRequest(p, L, 0, 'qemu');
  t.same([req.addr, req.count, req.data.toString()], [A, data.length, 'hello, guest']);
  t.equal(encodeDmaWriteReply(req, 'qemu').length, 0, 'QEMU replies with the header alone');
  t.equal(errnoOf(() => decodeDmaWriteReply(Buffer.alloc(0), req, 'qemu')), 'no error');
});

t.test('spec layout: u64 count, data at 16', async (t) => {
  const p = encodeDmaReadRequest(A, 4, L, 'spec');
  t.equal(p.length, 16);
  t.equal(p.readBigUInt64LE(8), 4n);
  const req = decodeDmaReadRequest(p, L, 0, 'spec');
  const reply = concat(encodeDmaReadReply(req, Buffer.from([9, 8, 7, 6]), 'spec'));
  t.equal(reply.length, 20);
  t.same([...decodeDmaReadReply(reply, req, 'spec')], [9, 8, 7, 6]);
  const w = concat(encodeDmaWriteRequest(A, Buffer.from([1, 2]), L, 'spec'));
  t.equal(w.length, 18);
  const wreq = decodeDmaWriteRequest(w, L, 0, 'spec');
  t.same([...wreq.data], [1, 2]);
  t.equal(encodeDmaWriteReply(wreq, 'spec').length, 16);
  t.equal(errnoOf(() => decodeDmaWriteReply(encodeDmaWriteReply(wreq, 'spec'), wreq, 'spec')), 'no error');
});

t.test('server side: what we may send, and checking what comes back', async (t) => {
  t.equal(errnoOf(() => encodeDmaReadRequest(A, L.peerMaxDataXferSize + 1, L)), 'E2BIG');
  t.equal(errnoOf(() => encodeDmaWriteRequest(A, Buffer.alloc(5), { ...L, peerMaxDataXferSize: 4 })), 'E2BIG');
  t.equal(errnoOf(() => encodeDmaReadRequest(0xffff_ffff_ffff_fff0n, 0x20, L)), 'EINVAL', 'addr + count overflows');
  t.equal(errnoOf(() => encodeDmaReadRequest(0xffff_ffff_ffff_fff0n, 0x10, L)), 'no error', 'ends at 2^64');
  const p = encodeDmaReadRequest(A, 8, L);
  const good = qemuReadReply(p, Buffer.alloc(8));
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
