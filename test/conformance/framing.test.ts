// Framing: messages split into pieces and many in one write, fds matched to
// the message whose first byte they came with, pipelining and ordering,
// NO_REPLY, REPLY-typed messages from the client, and messages that make the
// stream unusable (they end that client only; the next one is served).
import t from 'tap';
import type { Test } from 'tap';
import { Command, VFIO_USER_F_ERROR, VFIO_USER_F_NO_REPLY, VFIO_USER_F_TYPE_REPLY } from '../../protocol/constants.js';
import { Errno } from '../../protocol/errno.js';
import { HEADER_SIZE } from '../../protocol/header.js';
import { encodeVersionRequest } from '../../protocol/version.js';
import { encodeDmaMapRequest } from '../../protocol/commands/dma-map.js';
import { encodeDmaUnmapRequest } from '../../protocol/commands/dma-unmap.js';
import { encodeDeviceGetInfoRequest } from '../../protocol/commands/device-get-info.js';
import { encodeIrqInfoRequest } from '../../protocol/commands/irq-info.js';
import { encodeRegionReadRequest, encodeRegionWriteRequest } from '../../protocol/commands/region-access.js';
import {
  BAR2, CFG, DEVICE, QEMU_CAPS, REG, VfioUserClient, accessReply, answerServerRequests, rejectsErrno, assertErrorReply, assertReply, assertServes,
  closeClient, connectClient, frame, native, openClient, patternMemfd, recordIncoming, regionRead, send, sendAll,
  sleep, startGpio, waitIdle, type ReplyMessage,
} from './helpers.js';

const fx = await startGpio(t);
const readCfg = (offset: number, count: number): Buffer => encodeRegionReadRequest({ offset, region: CFG, count });

/** Send `bytes` in the given pieces, pausing between them so the server reads each separately. */
async function sendPieces(c: VfioUserClient, bytes: Buffer, cuts: number[], fdsAt: Map<number, number[]> = new Map()): Promise<void> {
  const points = [0, ...cuts, bytes.length];
  for (let i = 0; i + 1 < points.length; i++) {
    c.sendRaw(bytes.subarray(points[i]!, points[i + 1]!), fdsAt.get(i));
    await sleep(3);
  }
}

/** A fresh negotiated client with an incoming-message log. */
async function recorded(t: Test): Promise<{ c: VfioUserClient; log: ReturnType<typeof recordIncoming> }> {
  const c = await openClient(t, fx);
  return { c, log: recordIncoming(c) };
}

let config: Buffer;
t.before(async () => {
  const c = await VfioUserClient.open(fx.sock, QEMU_CAPS);
  config = await regionRead(c, CFG, 0, 256);
  await closeClient(fx, c);
});

t.test('a request sent one byte at a time', async (t) => {
  const c = await openClient(t, fx);
  const msgId = c.allocId();
  const p = c.expectReply(msgId);
  await sendPieces(c, frame(msgId, Command.REGION_READ, readCfg(0, 4)), Array.from({ length: 31 }, (_, i) => i + 1));
  assertReply(t, await p, { msgId, command: Command.REGION_READ }, accessReply(0, CFG, 4, config.subarray(0, 4)));
});

t.test('VERSION sent one byte at a time on a fresh connection', async (t) => {
  const c = connectClient(t, fx);
  const msgId = c.allocId();
  const bytes = frame(msgId, Command.VERSION, encodeVersionRequest(QEMU_CAPS));
  const p = c.expectReply(msgId);
  await sendPieces(c, bytes, Array.from({ length: bytes.length - 1 }, (_, i) => i + 1));
  const r = await p;
  t.equal(r.errno, 0, 'negotiated');
  t.equal(r.header.flags, VFIO_USER_F_TYPE_REPLY);
  await assertServes(t, c);
});

t.test('a request split at every possible point', async (t) => {
  const c = await openClient(t, fx);
  for (let cut = 1; cut < 32; cut++) {
    const msgId = c.allocId();
    const p = c.expectReply(msgId);
    await sendPieces(c, frame(msgId, Command.REGION_READ, readCfg(cut, 4)), [cut]);
    assertReply(t, await p, { msgId, command: Command.REGION_READ }, accessReply(cut, CFG, 4, config.subarray(cut, cut + 4)), `cut at ${cut}`);
  }
});

t.test('fds sent with the first byte of a split message belong to it', async (t) => {
  const c = await openClient(t, fx);
  const mem = patternMemfd(0x2000, 5);
  t.teardown(() => native.close(mem.fd));
  const msgId = c.allocId();
  const p = c.expectReply(msgId);
  await sendPieces(c, frame(msgId, Command.DMA_MAP, encodeDmaMapRequest({ addr: 0x300000n, size: 0x2000n })), [1, 20], new Map([[0, [mem.fd]]]));
  assertReply(t, await p, { msgId, command: Command.DMA_MAP }, Buffer.alloc(0));
  const list = fx.ctx.compatIoas.list();
  t.equal(list.length, 1);
  t.not(list[0]?.backing.kind, 'message', 'reached through the memfd, not through messages');
  t.same(await fx.ctx.dma(DEVICE).read(0x300000n, 32), mem.data.subarray(0, 32));
  await c.request(Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: 0n, size: 0n, flags: 2 }));
});

t.test('fds that arrive with a later piece of a message are not its fds (closed)', async (t) => {
  const c = await openClient(t, fx);
  const efd = native.eventfd(0);
  t.teardown(() => native.close(efd));
  const before = native.fdCount();
  const msgId = c.allocId();
  const p = c.expectReply(msgId);
  // REGION_READ takes no fds: had the fd been attributed to it, the reply would be EINVAL.
  await sendPieces(c, frame(msgId, Command.REGION_READ, readCfg(0, 4)), [16], new Map([[1, [efd]]]));
  assertReply(t, await p, { msgId, command: Command.REGION_READ }, accessReply(0, CFG, 4, config.subarray(0, 4)));
  t.equal(native.fdCount(), before, 'the stray fd was closed');
});

t.test('tail of one message and head of the next in one read: the fds go to the next', async (t) => {
  const c = await openClient(t, fx);
  const mem = patternMemfd(0x1000, 9);
  t.teardown(() => native.close(mem.fd));
  const idA = c.allocId();
  const idB = c.allocId();
  const a = frame(idA, Command.REGION_READ, readCfg(8, 4));
  const b = frame(idB, Command.DMA_MAP, encodeDmaMapRequest({ addr: 0x400000n, size: 0x1000n }));
  const pa = c.expectReply(idA);
  const pb = c.expectReply(idB);
  const both = Buffer.concat([a, b]);
  // Pieces: a[0..10) | a[10..32) + b[0..5) with the memfd | b[5..)
  await sendPieces(c, both, [10, a.length + 5], new Map([[1, [mem.fd]]]));
  assertReply(t, await pa, { msgId: idA, command: Command.REGION_READ }, accessReply(8, CFG, 4, config.subarray(8, 12)), 'A: no fds attributed');
  assertReply(t, await pb, { msgId: idB, command: Command.DMA_MAP }, Buffer.alloc(0), 'B: mapped with the memfd');
  t.same(await fx.ctx.dma(DEVICE).read(0x400000n, 16), mem.data.subarray(0, 16), 'B got the memfd');
  await c.request(Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: 0n, size: 0n, flags: 2 }));
});

t.test('many messages in one write, malformed ones among them', async (t) => {
  const { c, log } = await recorded(t);
  const parts: Buffer[] = [];
  const expect: Array<{ msgId: number; command: number; check: (r: ReplyMessage) => void }> = [];
  for (let i = 0; i < 40; i++) {
    const msgId = c.allocId();
    if (i % 10 === 3) {
      parts.push(frame(msgId, Command.REGION_READ, readCfg(300, 4)));
      expect.push({ msgId, command: Command.REGION_READ, check: (r) => assertErrorReply(t, r, { msgId, command: Command.REGION_READ }, Errno.EINVAL, `#${i}`) });
    } else if (i % 10 === 7) {
      parts.push(frame(msgId, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest()));
      expect.push({ msgId, command: Command.DEVICE_GET_INFO, check: (r) => assertReply(t, r, { msgId, command: Command.DEVICE_GET_INFO }, Buffer.from('10000000030000000900000005000000', 'hex'), `#${i}`) });
    } else if (i % 10 === 9) {
      parts.push(frame(msgId, Command.DEVICE_GET_IRQ_INFO, encodeIrqInfoRequest(0)));
      expect.push({ msgId, command: Command.DEVICE_GET_IRQ_INFO, check: (r) => assertReply(t, r, { msgId, command: Command.DEVICE_GET_IRQ_INFO }, Buffer.from('10000000070000000000000001000000', 'hex'), `#${i}`) });
    } else {
      parts.push(frame(msgId, Command.REGION_READ, readCfg(i, 2)));
      expect.push({ msgId, command: Command.REGION_READ, check: (r) => assertReply(t, r, { msgId, command: Command.REGION_READ }, accessReply(i, CFG, 2, config.subarray(i, i + 2)), `#${i}`) });
    }
  }
  const pending = expect.map((e) => c.expectReply(e.msgId));
  c.sendRaw(Buffer.concat(parts));
  const replies = await Promise.all(pending);
  replies.forEach((r, i) => expect[i]!.check(r));
  t.same(log.map((h) => h.msgId), expect.map((e) => e.msgId), 'replies in request order, nothing else');
  await assertServes(t, c);
});

t.test('2000 requests in one write (more than the initial receive buffer)', async (t) => {
  const { c, log } = await recorded(t);
  const ids: number[] = [];
  const parts: Buffer[] = [];
  for (let i = 0; i < 2000; i++) {
    const id = c.allocId();
    ids.push(id);
    parts.push(frame(id, Command.REGION_READ, readCfg(i % 252, 4)));
  }
  const pending = ids.map((id) => c.expectReply(id, 20_000));
  await sendAll(c, Buffer.concat(parts));
  const replies = await Promise.all(pending);
  let good = 0;
  replies.forEach((r, i) => {
    if (r.errno === 0 && r.payload.equals(accessReply(i % 252, CFG, 4, config.subarray(i % 252, (i % 252) + 4)))) good++;
  });
  t.equal(good, 2000, 'every reply correct');
  t.same(log.map((h) => h.msgId), ids, 'in order');
});

t.test('a burst larger than the socket buffer is queued by the client and drained by the server', async (t) => {
  // The client must never spin on a full socket: the server runs in this
  // very thread and can only read once we yield.
  const { c } = await recorded(t);
  const before = fx.host.commandCounts.REGION_WRITE ?? 0;
  const n = 60_000;
  const one = frame(0, Command.REGION_WRITE, encodeRegionWriteRequest({ offset: REG.OUT0_7, region: BAR2, data: Buffer.from([0x5a]) }), { flags: VFIO_USER_F_NO_REPLY });
  const burst = Buffer.alloc(one.length * n);
  for (let i = 0; i < n; i++) one.copy(burst, i * one.length);
  c.sendRaw(burst);
  t.ok(c.unsent > 0, `the socket did not take all ${burst.length} bytes at once (${c.unsent} queued)`);
  const last = await c.request(Command.REGION_READ, readCfg(0, 4));
  assertReply(t, last, { msgId: last.header.msgId, command: Command.REGION_READ }, accessReply(0, CFG, 4, config.subarray(0, 4)));
  t.equal(c.unsent, 0, 'everything went out');
  t.equal((fx.host.commandCounts.REGION_WRITE ?? 0) - before, n, 'the server handled every posted write, in order before the read');
});

t.test('64 requests pipelined', async (t) => {
  const { c, log } = await recorded(t);
  const order: number[] = [];
  const reqs = Array.from({ length: 64 }, (_, i) => {
    const msgId = c.allocId();
    const off = (i * 4) % 256;
    const p = c.request(Command.REGION_READ, readCfg(off, 4), { msgId });
    p.then(() => order.push(msgId), () => {});
    return { msgId, off, p };
  });
  for (const r of reqs) {
    assertReply(t, await r.p, { msgId: r.msgId, command: Command.REGION_READ }, accessReply(r.off, CFG, 4, config.subarray(r.off, r.off + 4)));
  }
  t.same(order, reqs.map((r) => r.msgId), 'replies arrive in request order');
  t.equal(log.length, 64, 'exactly 64 messages back');
});

t.test('64 pipelined write/unmap/read triples keep their order across async handlers', async (t) => {
  const { c, log } = await recorded(t);
  const jobs: Array<{ i: number; w: Promise<ReplyMessage>; u: Promise<ReplyMessage>; r: Promise<ReplyMessage> }> = [];
  const ids: number[] = [];
  const req = (command: number, payload: Buffer): Promise<ReplyMessage> => {
    const msgId = c.allocId();
    ids.push(msgId);
    return c.request(command, payload, { msgId });
  };
  for (let i = 0; i < 64; i++) {
    const w = req(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: REG.OUT0_7, region: BAR2, data: Buffer.from([i]) }));
    // DMA_UNMAP always completes asynchronously (it waits for in-flight DMA).
    const u = req(Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: 0x9000_0000n, size: 0x1000n }));
    const r = req(Command.REGION_READ, encodeRegionReadRequest({ offset: REG.OUT0_7, region: BAR2, count: 1 }));
    jobs.push({ i, w, u, r });
  }
  let ok = 0;
  for (const j of jobs) {
    const [w, u, r] = await Promise.all([j.w, j.u, j.r]);
    if (w.errno === 0 && u.errno === 0 && r.errno === 0 && r.payload[16] === j.i) ok++;
    else t.fail(`triple ${j.i}: write ${w.errno} unmap ${u.errno} read ${r.errno} value ${r.payload[16]}`);
  }
  t.equal(ok, 64, 'each read sees the write before it');
  t.same(log.map((h) => h.msgId), ids, 'the 192 replies come in request order');
});

t.test('NO_REPLY: posted writes are applied and never answered, also on error', async (t) => {
  const { c, log } = await recorded(t);
  c.post(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: REG.OUT0_7, region: BAR2, data: Buffer.from([0x42]) }));
  c.post(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: 0, region: 9, data: Buffer.from([1]) }));
  c.post(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: 0, region: BAR2, data: Buffer.from([1, 2]), count: 7 }));
  c.post(0x99, Buffer.alloc(4));
  c.post(Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest());
  const efd = native.eventfd(0);
  t.teardown(() => native.close(efd));
  const before = native.fdCount();
  c.post(Command.REGION_READ, readCfg(0, 4), [efd]);
  const probe = await send(c, Command.REGION_READ, encodeRegionReadRequest({ offset: REG.OUT0_7, region: BAR2, count: 1 }));
  assertReply(t, probe.reply, probe, accessReply(REG.OUT0_7, BAR2, 1, Buffer.from([0x42])), 'the posted write was applied first');
  t.equal(fx.model.outputs & 0xff, 0x42);
  t.same(log.map((h) => h.msgId), [probe.msgId], 'nothing came back for the six posted messages');
  t.equal(native.fdCount(), before, 'the fd of a posted bad request was closed');
});

t.test('REPLY-typed messages from the client are ignored', async (t) => {
  const { c, log } = await recorded(t);
  const mem = native.memfdCreate('stray-reply', 4096);
  t.teardown(() => native.close(mem));
  const before = native.fdCount();
  c.sendRaw(frame(c.allocId(), Command.REGION_READ, readCfg(0, 4), { flags: VFIO_USER_F_TYPE_REPLY }));
  c.sendRaw(frame(c.allocId(), Command.DEVICE_RESET, Buffer.alloc(0), { flags: VFIO_USER_F_TYPE_REPLY | VFIO_USER_F_ERROR, error: Errno.EIO }));
  c.sendRaw(frame(c.allocId(), Command.DMA_READ, Buffer.alloc(20), { flags: VFIO_USER_F_TYPE_REPLY }));
  c.sendRaw(frame(0xffff, 0x77, Buffer.alloc(3), { flags: VFIO_USER_F_TYPE_REPLY }));
  c.sendRaw(frame(c.allocId(), Command.DMA_MAP, encodeDmaMapRequest({ addr: 0x500000n, size: 0x1000n }), { flags: VFIO_USER_F_TYPE_REPLY }), [mem]);
  await assertServes(t, c);
  t.equal(log.length, 1, 'only the probe was answered');
  t.equal(fx.ctx.compatIoas.areaCount, 0, 'the REPLY-typed DMA_MAP did nothing');
  t.equal(native.fdCount(), before, 'the fd sent with a REPLY-typed message was closed');
  t.equal(fx.host.connected, true);
});

t.test('exactly max_msg_fds fds on a request that takes none: EINVAL, all closed', async (t) => {
  const c = await openClient(t, fx);
  const fds = Array.from({ length: 16 }, () => native.eventfd(0));
  t.teardown(() => fds.forEach((fd) => native.close(fd)));
  const before = native.fdCount();
  const r = await send(c, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest(), { fds });
  assertErrorReply(t, r.reply, r, Errno.EINVAL);
  t.equal(native.fdCount(), before, '16 fds closed');
  await assertServes(t, c);
});

/** Open a client, make it send `bytes`, expect the server to hang up; the next client is served. */
async function expectDrop(t: Test, bytes: Buffer, what: string, caps = QEMU_CAPS, fds?: number[]): Promise<void> {
  const before = native.fdCount();
  const c = await VfioUserClient.open(fx.sock, caps);
  await sendAll(c, bytes, fds);
  await c.waitClosed().then(() => t.pass(`${what}: server closed the connection`), (e: Error) => t.fail(`${what}: ${e.message}`));
  c.close(); // if the server did not hang up, do not block the next tests
  await waitIdle(fx);
  t.equal(native.fdCount(), before, `${what}: no fd left behind`);
  const next = await VfioUserClient.open(fx.sock, caps);
  await assertServes(t, next, `${what}: the next client is served`);
  await closeClient(fx, next);
}

t.test('msg_size 2 GiB ends only that client', async (t) => {
  await expectDrop(t, frame(1, Command.REGION_WRITE, readCfg(0, 4), { size: 0x8000_0000 }), '2 GiB');
  await expectDrop(t, frame(1, Command.REGION_WRITE, Buffer.alloc(0), { size: 0xffff_ffff }), '4 GiB - 1');
});

t.test('msg_size below the header size ends the client', async (t) => {
  await expectDrop(t, frame(1, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest(), { size: 0 }), 'msg_size 0');
  await expectDrop(t, frame(1, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest(), { size: 15 }), 'msg_size 15');
});

t.test('msg_size at the negotiated maximum is framed; one byte more ends the client', async (t) => {
  const MiB = 1 << 20;
  const c = await openClient(t, fx);
  // The largest legal message: a REGION_WRITE of max_data_xfer_size bytes (too big for config space).
  const big = encodeRegionWriteRequest({ offset: 0, region: CFG, data: Buffer.alloc(MiB) });
  const msgId = c.allocId();
  const p = c.expectReply(msgId);
  await sendAll(c, frame(msgId, Command.REGION_WRITE, big));
  assertErrorReply(t, await p, { msgId, command: Command.REGION_WRITE }, Errno.EINVAL, 'max-size message answered');
  await assertServes(t, c);
  await closeClient(fx, c);
  await expectDrop(t, frame(1, Command.REGION_WRITE, Buffer.alloc(16), { size: HEADER_SIZE + 16 + MiB + 1 }), 'max + 1');
  // With a smaller negotiated max_data_xfer_size the bound follows it.
  const small = { ...QEMU_CAPS, maxDataXferSize: 8192 };
  await expectDrop(t, frame(1, Command.REGION_WRITE, Buffer.alloc(16), { size: HEADER_SIZE + 16 + 8192 + 1 }), 'small max + 1', small);
});

t.test('more than max_msg_fds fds in one message end the client, every fd closed', async (t) => {
  const fds = Array.from({ length: 17 }, () => native.eventfd(0));
  t.teardown(() => fds.forEach((fd) => native.close(fd)));
  await expectDrop(t, frame(1, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest()), '17 fds', QEMU_CAPS, fds);
});

t.test('a client that dies mid-message', async (t) => {
  for (const [what, cut] of [['mid-header', 9], ['mid-payload', 16 + 20]] as const) {
    const mem = patternMemfd(0x1000);
    const before = native.fdCount();
    const c = await VfioUserClient.open(fx.sock, QEMU_CAPS);
    const bytes = frame(c.allocId(), Command.DMA_MAP, encodeDmaMapRequest({ addr: 0x600000n, size: 0x1000n }));
    c.sendRaw(bytes.subarray(0, cut), [mem.fd]);
    await sleep(5);
    c.close();
    await waitIdle(fx);
    t.equal(native.fdCount(), before, `${what}: the fd of the unfinished message was closed`);
    t.equal(fx.ctx.compatIoas.areaCount, 0, `${what}: nothing mapped`);
    native.close(mem.fd);
    const next = await VfioUserClient.open(fx.sock, QEMU_CAPS);
    await assertServes(t, next, `${what}: next client served`);
    await closeClient(fx, next);
  }
});

t.test('a client that dies with 64 requests in flight', async (t) => {
  const c = await VfioUserClient.open(fx.sock, QEMU_CAPS);
  const parts = Array.from({ length: 64 }, (_, i) => frame(c.allocId(), Command.REGION_READ, readCfg(i, 4)));
  c.sendRaw(Buffer.concat(parts));
  c.close();
  await waitIdle(fx);
  const next = await VfioUserClient.open(fx.sock, QEMU_CAPS);
  await assertServes(t, next, 'next client served');
  await closeClient(fx, next);
});

t.test('a request with NO_REPLY before VERSION is not answered either', async (t) => {
  const c = connectClient(t, fx);
  const log = recordIncoming(c);
  c.sendRaw(frame(c.allocId(), Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest(), { flags: VFIO_USER_F_NO_REPLY }));
  const v = await send(c, Command.VERSION, encodeVersionRequest(QEMU_CAPS));
  t.equal(v.reply.errno, 0);
  t.same(log.map((h) => h.msgId), [v.msgId], 'only VERSION answered');
  await assertServes(t, c);
});

t.test('duplicate msg_ids from the client are each answered, in order', async (t) => {
  const { c, log } = await recorded(t);
  const id = c.allocId();
  c.sendRaw(Buffer.concat([
    frame(id, Command.REGION_READ, readCfg(0, 2)),
    frame(id, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest()),
    frame(id, Command.REGION_READ, readCfg(300, 2)),
  ]));
  await assertServes(t, c);
  t.same(log.map((h) => [h.msgId, h.command, h.flags]), [
    [id, Command.REGION_READ, VFIO_USER_F_TYPE_REPLY],
    [id, Command.DEVICE_GET_INFO, VFIO_USER_F_TYPE_REPLY],
    [id, Command.REGION_READ, VFIO_USER_F_TYPE_REPLY | VFIO_USER_F_ERROR],
    [log[3]?.msgId, Command.REGION_READ, VFIO_USER_F_TYPE_REPLY],
  ], 'three replies with the same msg_id, then the probe');
});

t.test('malformed replies from the client to the server\'s DMA_READ fault the access, not the session', async (t) => {
  const c = await openClient(t, fx);
  const base = 0xc00000n;
  await c.request(Command.DMA_MAP, encodeDmaMapRequest({ addr: base, size: 0x1000n }));
  const REPLY = VFIO_USER_F_TYPE_REPLY;
  const answers: Array<[string, (h: { msgId: number; command: number }, p: Buffer) => Buffer | null]> = [
    ['a reply with no payload', (h) => frame(h.msgId, h.command, Buffer.alloc(0), { flags: REPLY })],
    ['a reply for the wrong address', (h, p) => {
      const body = Buffer.alloc(12 + 8 + 4);
      body.writeBigUInt64LE(p.readBigUInt64LE(0) + 0x1000n, 0);
      body.writeUInt32LE(p.readUInt32LE(8), 8);
      return frame(h.msgId, h.command, body, { flags: REPLY });
    }],
    ['a reply with fewer bytes than asked', (h, p) => {
      const body = Buffer.alloc(12 + 4);
      body.writeBigUInt64LE(p.readBigUInt64LE(0), 0);
      body.writeUInt32LE(p.readUInt32LE(8), 8);
      return frame(h.msgId, h.command, body, { flags: REPLY });
    }],
    ['an error reply', (h) => frame(h.msgId, h.command, Buffer.alloc(0), { flags: REPLY | VFIO_USER_F_ERROR, error: Errno.EPERM })],
  ];
  for (const [what, answer] of answers) {
    const seen = answerServerRequests(c, answer);
    await rejectsErrno(t, fx.ctx.dma(DEVICE).read(base + 0x10n, 8), Errno.EFAULT, `${what}: the device sees a DMA fault`);
    t.equal(seen.length, 1, `${what}: one DMA_READ was sent`);
    t.equal(seen[0]?.command, Command.DMA_READ);
    await assertServes(t, c, `${what}: the session goes on`);
  }
  t.equal(fx.host.connected, true);
  await c.request(Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: 0n, size: 0n, flags: 2 }));
});
