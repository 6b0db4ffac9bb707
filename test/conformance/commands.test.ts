// The success path of every vfio-user command against the GPIO device, over
// the real socket with our own client; each reply is checked byte for byte.
import t from 'tap';
import {
  Command, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET, VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
} from '../../protocol/constants.js';
import { Errno } from '../../protocol/errno.js';
import { decodeVersionReply, encodeVersionRequest } from '../../protocol/version.js';
import { encodeDmaMapRequest } from '../../protocol/commands/dma-map.js';
import { encodeDmaUnmapRequest } from '../../protocol/commands/dma-unmap.js';
import { encodeDeviceGetInfoRequest } from '../../protocol/commands/device-get-info.js';
import { encodeRegionInfoRequest } from '../../protocol/commands/region-info.js';
import { encodeRegionIoFdsRequest } from '../../protocol/commands/region-io-fds.js';
import { encodeIrqInfoRequest } from '../../protocol/commands/irq-info.js';
import { encodeSetIrqsRequest } from '../../protocol/commands/set-irqs.js';
import { encodeRegionReadRequest, encodeRegionWriteRequest } from '../../protocol/commands/region-access.js';
import { encodeRegionWriteMultiRequest } from '../../protocol/commands/region-write-multi.js';
import { encodeDeviceResetRequest } from '../../protocol/commands/device-reset.js';
import {
  dmaLoggingReportData, dmaLoggingStartData, encodeDeviceFeatureRequest,
} from '../../protocol/commands/device-feature.js';
import { encodeMigDataReadRequest, encodeMigDataWriteRequest } from '../../protocol/commands/mig-data.js';
import {
  BAR2, CFG, DEVICE, QEMU_CAPS, REG, accessReply, assertErrorReply, assertReply, assertServes, connectClient,
  delayServerRequests, native, openClient, patternMemfd, rejectsErrno, recordIncoming, sleep, preadFd, regionRead, regionWrite, send, startGpio,
} from './helpers.js';

const fx = await startGpio(t);
const dma = () => fx.ctx.dma(DEVICE);
const u32s = (...v: number[]): Buffer => {
  const b = Buffer.alloc(4 * v.length);
  v.forEach((x, i) => b.writeUInt32LE(x >>> 0, 4 * i));
  return b;
};
const u64 = (v: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
};
const trigger = VFIO_IRQ_SET_ACTION_TRIGGER;

t.test('VERSION: QEMU\'s offer gets exactly our capabilities', async (t) => {
  const c = connectClient(t, fx);
  const r = await send(c, Command.VERSION, encodeVersionRequest({ ...QEMU_CAPS, migration: { pgsize: 4096 } }));
  t.equal(r.reply.errno, 0);
  t.equal(r.reply.header.flags, 1, 'plain reply');
  t.equal(r.reply.header.msgId, r.msgId);
  t.equal(r.reply.fds.length, 0, 'no fd with the VERSION reply (QEMU refuses one)');
  const p = r.reply.payload;
  t.equal(p.readUInt16LE(0), 0, 'major 0');
  t.equal(p.readUInt16LE(2), 0, 'minor 0');
  t.equal(p[p.length - 1], 0, 'JSON is NUL-terminated');
  t.same(JSON.parse(p.subarray(4, p.length - 1).toString('utf8')), {
    capabilities: { max_msg_fds: 16, max_data_xfer_size: 1 << 20, pgsizes: 4096, max_dma_maps: 65535, write_multiple: true },
  }, 'exactly the proposed capabilities, no migration');
  t.doesNotThrow(() => decodeVersionReply(p), 'QEMU 11.1 would accept the reply');
  await assertServes(t, c);
});

t.test('DEVICE_GET_INFO', async (t) => {
  const c = await openClient(t, fx);
  const r = await send(c, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest());
  assertReply(t, r.reply, r, u32s(16, 3, 9, 5), 'argsz 16, PCI|RESET, 9 regions, 5 IRQ types');
  // A client buffer larger than needed still gets the 16-byte reply.
  const big = await send(c, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest(64));
  assertReply(t, big.reply, big, u32s(16, 3, 9, 5), 'argsz 64');
});

t.test('DEVICE_GET_REGION_INFO for every region', async (t) => {
  const c = await openClient(t, fx);
  const expected: Record<number, [number, number]> = {
    0: [0, 0], 1: [0, 0], 2: [3, 0x100], 3: [0, 0], 4: [0, 0], 5: [0, 0], 6: [0, 0], 7: [3, 0x100], 8: [0, 0],
  };
  for (let i = 0; i <= 8; i++) {
    const r = await send(c, Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest(i));
    const [flags, size] = expected[i]!;
    const want = Buffer.concat([u32s(32, flags, i, 0), u64(BigInt(size)), u64(0n)]);
    assertReply(t, r.reply, r, want, `region ${i}`);
  }
});

t.test('DEVICE_GET_REGION_IO_FDS: no sub-regions', async (t) => {
  const c = await openClient(t, fx);
  for (const index of [BAR2, CFG]) {
    const r = await send(c, Command.DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest(index, 16));
    assertReply(t, r.reply, r, u32s(16, 0, index, 0), `region ${index}`);
  }
  const r = await send(c, Command.DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest(BAR2, 4096));
  assertReply(t, r.reply, r, u32s(16, 0, BAR2, 0), 'large argsz: still only the 16-byte header');
});

t.test('DEVICE_GET_IRQ_INFO for every index', async (t) => {
  const c = await openClient(t, fx);
  // [flags, count]: INTx EVENTFD|MASKABLE|AUTOMASKED, MSI/MSI-X absent, ERR and REQ EVENTFD|NORESIZE 1.
  const expected: Array<[number, number]> = [[7, 1], [11, 0], [3, 0], [9, 1], [9, 1]];
  for (let i = 0; i < 5; i++) {
    const r = await send(c, Command.DEVICE_GET_IRQ_INFO, encodeIrqInfoRequest(i));
    assertReply(t, r.reply, r, u32s(16, expected[i]![0], i, expected[i]![1]), `IRQ index ${i}`);
  }
});

t.test('REGION_READ and REGION_WRITE: config space and the GPIO BAR', async (t) => {
  const c = await openClient(t, fx);
  const cfg = await send(c, Command.REGION_READ, encodeRegionReadRequest({ offset: 0, region: CFG, count: 256 }));
  t.equal(cfg.reply.errno, 0);
  t.equal(cfg.reply.payload.length, 16 + 256, 'whole config space in one read');
  const data = cfg.reply.payload.subarray(16);
  t.equal(cfg.reply.payload.subarray(0, 16).toString('hex'), accessReply(0, CFG, 256).toString('hex'));
  t.equal(data.readUInt16LE(0), 0x494f, 'vendor');
  t.equal(data.readUInt16LE(2), 0x0dc8, 'device');
  t.equal(data.readUIntLE(9, 3), 0x118000, 'class code');
  t.equal(data.readUInt32LE(0x18), 0x1, 'BAR2 is an I/O BAR');
  t.equal(data[0x3d], 1, 'INTA');

  // BAR sizing through config writes.
  const w = await send(c, Command.REGION_WRITE, encodeRegionWriteRequest({ offset: 0x18, region: CFG, data: u32s(0xffffffff) }));
  assertReply(t, w.reply, w, accessReply(0x18, CFG, 4), 'config write reply');
  t.equal((await regionRead(c, CFG, 0x18, 4)).readUInt32LE(0), 0xffffff01, 'BAR2 size mask');
  await regionWrite(c, CFG, 0x18, u32s(0xc000));
  t.equal((await regionRead(c, CFG, 0x18, 4)).readUInt32LE(0), 0xc001, 'BAR2 programmed');

  // Outputs through the BAR.
  const lo = await send(c, Command.REGION_WRITE, encodeRegionWriteRequest({ offset: REG.OUT0_7, region: BAR2, data: Buffer.from([0xef]) }));
  assertReply(t, lo.reply, lo, accessReply(REG.OUT0_7, BAR2, 1));
  await regionWrite(c, BAR2, REG.OUT8_15, [0xbe]);
  t.equal(fx.model.outputs, 0xbeef, 'the device saw both output bytes');
  const rd = await send(c, Command.REGION_READ, encodeRegionReadRequest({ offset: REG.OUT0_7, region: BAR2, count: 1 }));
  assertReply(t, rd.reply, rd, accessReply(REG.OUT0_7, BAR2, 1, Buffer.from([0xef])), 'OUT0_7 reads back');
  fx.model.setInputs(0xa55a);
  const ins = await send(c, Command.REGION_READ, encodeRegionReadRequest({ offset: REG.IN0_7, region: BAR2, count: 1 }));
  assertReply(t, ins.reply, ins, accessReply(REG.IN0_7, BAR2, 1, Buffer.from([0x5a])), 'IN0_7');
  t.equal((await regionRead(c, BAR2, REG.IN8_15, 1))[0], 0xa5, 'IN8_15');
  // Last byte of the region, and a zero-length read at its end.
  const last = await send(c, Command.REGION_READ, encodeRegionReadRequest({ offset: 0xff, region: BAR2, count: 1 }));
  assertReply(t, last.reply, last, accessReply(0xff, BAR2, 1, Buffer.from([0])), 'last byte of BAR2');
  const none = await send(c, Command.REGION_READ, encodeRegionReadRequest({ offset: 0x100, region: CFG, count: 0 }));
  assertReply(t, none.reply, none, accessReply(0x100, CFG, 0), 'count 0 at the end of config space');
  fx.model.setInputs(0);
});

t.test('REGION_WRITE_MULTI applies every write in order', async (t) => {
  const c = await openClient(t, fx);
  const r = await send(c, Command.REGION_WRITE_MULTI, encodeRegionWriteMultiRequest([
    { offset: REG.OUT0_7, region: BAR2, data: Buffer.from([0x11]) },
    { offset: REG.OUT8_15, region: BAR2, data: Buffer.from([0x22]) },
    { offset: REG.OUT0_7, region: BAR2, data: Buffer.from([0x34]) },
    { offset: 0x3c, region: CFG, data: Buffer.from([0x0b]) },
  ]));
  assertReply(t, r.reply, r, u64(4n), 'wr_cnt 4 done');
  t.equal(fx.model.outputs, 0x2234, 'later write to OUT0_7 wins');
  t.equal((await regionRead(c, CFG, 0x3c, 1))[0], 0x0b, 'interrupt line written');
});

t.test('DEVICE_RESET: outputs and config space back to power-on', async (t) => {
  const c = await openClient(t, fx);
  await regionWrite(c, BAR2, REG.OUT0_7, [0x77]);
  await regionWrite(c, CFG, 0x18, u32s(0xd000));
  await regionWrite(c, CFG, 0x04, [0x01, 0x00]);
  t.equal(fx.model.outputs & 0xff, 0x77);
  const r = await send(c, Command.DEVICE_RESET, encodeDeviceResetRequest());
  assertReply(t, r.reply, r, Buffer.alloc(0), 'header-only reply');
  t.equal(fx.model.outputs, 0, 'outputs off');
  t.equal((await regionRead(c, CFG, 0x18, 4)).readUInt32LE(0), 0x1, 'BAR2 address cleared');
  t.equal((await regionRead(c, CFG, 0x04, 2)).readUInt16LE(0), 0, 'command register cleared');
});

t.test('DMA_MAP with a memfd, DMA through it, DMA_UNMAP', async (t) => {
  const c = await openClient(t, fx);
  const mem = patternMemfd(0x10000);
  t.teardown(() => native.close(mem.fd));
  const iova = 0x100000n;
  const m = await send(c, Command.DMA_MAP, encodeDmaMapRequest({ addr: iova, size: 0x10000n }), { fds: [mem.fd] });
  assertReply(t, m.reply, m, Buffer.alloc(0), 'DMA_MAP reply');
  const list = fx.ctx.compatIoas.list();
  t.equal(list.length, 1, 'one mapping');
  t.same(list.map((a) => [a.iova, a.length, a.readable, a.writeable]), [[iova, 0x10000n, true, true]]);
  t.same(await dma().read(iova + 0x123n, 64), mem.data.subarray(0x123, 0x123 + 64), 'device reads the memfd');
  await dma().write(iova + 0x8000n, Buffer.from('written by the device'));
  t.equal(preadFd(mem.fd, 0x8000, 21).toString(), 'written by the device', 'device writes land in the memfd');
  t.equal(c.serverRequests.length, 0, 'no DMA_READ/WRITE messages for fd-backed memory');

  // A second mapping at a file offset.
  const m2 = await send(c, Command.DMA_MAP, encodeDmaMapRequest({ addr: 0x200000n, size: 0x1000n, offset: 0x3000n, flags: 1 }), { fds: [mem.fd] });
  assertReply(t, m2.reply, m2, Buffer.alloc(0), 'read-only map at offset 0x3000');
  t.same(await dma().read(0x200000n, 16), mem.data.subarray(0x3000, 0x3010), 'offset honoured');
  await rejectsErrno(t, dma().write(0x200000n, Buffer.from([1])), Errno.EFAULT, 'read-only mapping refuses device writes');

  const u = await send(c, Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: iova, size: 0x10000n }));
  assertReply(t, u.reply, u, encodeDmaUnmapRequest({ addr: iova, size: 0x10000n }), 'the request echoed');
  t.same(fx.ctx.compatIoas.list().map((a) => a.iova), [0x200000n], 'only the second mapping is left');
  await rejectsErrno(t, dma().read(iova, 4), Errno.EFAULT, 'unmapped memory is unreachable');

  const all = encodeDmaUnmapRequest({ addr: 0n, size: 0n, flags: VFIO_DMA_UNMAP_FLAG_ALL });
  const ua = await send(c, Command.DMA_UNMAP, all);
  assertReply(t, ua.reply, ua, all, 'UNMAP_ALL echoed');
  t.equal(fx.ctx.compatIoas.areaCount, 0, 'nothing mapped');
});

t.test('DMA_MAP without an fd: the device reaches memory through DMA_READ/DMA_WRITE', async (t) => {
  const c = await openClient(t, fx);
  const base = 0x4000_0000n;
  const mem = Buffer.alloc(0x3000);
  for (let i = 0; i < mem.length; i++) mem[i] = (i * 13) & 0xff;
  c.guest = { base, mem };
  const m = await send(c, Command.DMA_MAP, encodeDmaMapRequest({ addr: base, size: 0x3000n }));
  assertReply(t, m.reply, m, Buffer.alloc(0), 'DMA_MAP without fd');
  t.same(await dma().read(base + 0xff0n, 0x20), mem.subarray(0xff0, 0x1010), 'read across a page boundary');
  t.ok(c.serverRequests.some((h) => h.command === Command.DMA_READ), 'the server sent DMA_READ');
  await dma().write(base + 0x2000n, Buffer.from([9, 8, 7, 6]));
  t.same([...mem.subarray(0x2000, 0x2004)], [9, 8, 7, 6], 'DMA_WRITE landed in the client\'s memory');
  t.ok(c.serverRequests.some((h) => h.command === Command.DMA_WRITE), 'the server sent DMA_WRITE');
  // Server requests carry their own ids and are plain commands.
  t.ok(c.serverRequests.every((h) => (h.flags & 0xf) === 0), 'server requests are typed COMMAND');
  // A client that cannot serve the access: the device sees a fault, the session goes on.
  c.guest = null;
  await rejectsErrno(t, dma().read(base, 8), Errno.EFAULT, 'client error reply → DMA fault');
  await assertServes(t, c);
  const u = await send(c, Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: base, size: 0x3000n }));
  assertReply(t, u.reply, u, encodeDmaUnmapRequest({ addr: base, size: 0x3000n }));
  t.equal(fx.ctx.compatIoas.areaCount, 0);
});

t.test('SET_IRQS: INTx eventfd fires on a GPIO input change', async (t) => {
  const c = await openClient(t, fx);
  const efd = native.eventfd(0);
  t.teardown(() => native.close(efd));
  fx.model.setInputs(0);
  const set = await send(c, Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: VFIO_IRQ_SET_DATA_EVENTFD | trigger, index: 0, start: 0, count: 1 }), { fds: [efd] });
  assertReply(t, set.reply, set, Buffer.alloc(0), 'SET_IRQS reply');
  t.equal(native.eventfdRead(efd), -native.EAGAIN, 'nothing yet');

  // The guest driver enables the device interrupt by reading IRQ_CTL.
  t.equal((await regionRead(c, BAR2, REG.IRQ_CTL, 1))[0], 0);
  t.equal(fx.model.interruptEnabled, true);
  fx.model.setInputs(0x0100);
  t.equal(native.eventfdRead(efd), 1, 'INTx signalled once');
  t.equal((await regionRead(c, BAR2, REG.IRQ_STATUS, 1))[0], 0x06, 'status: IN8_15 changed, pending');
  t.equal((await regionRead(c, CFG, 0x06, 2)).readUInt16LE(0) & 0x8, 0x8, 'config status: interrupt asserted');

  // Auto-masked: another change is not signalled until UNMASK; the line is still high then.
  fx.model.setInputs(0x0101);
  t.equal(native.eventfdRead(efd), -native.EAGAIN, 'auto-masked');
  const un = await send(c, Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, index: 0, start: 0, count: 1 }));
  assertReply(t, un.reply, un, Buffer.alloc(0), 'UNMASK reply');
  t.equal(native.eventfdRead(efd), 1, 'unmask with the line high signals again');

  // The guest clears the interrupt: the line drops; an unmask signals nothing.
  await regionWrite(c, BAR2, REG.IN0_7, [0]);
  await send(c, Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, index: 0, start: 0, count: 1 }));
  t.equal(native.eventfdRead(efd), -native.EAGAIN, 'line low: no signal');

  // MASK holds a new edge back until UNMASK.
  const mk = await send(c, Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, index: 0, start: 0, count: 1 }));
  assertReply(t, mk.reply, mk, Buffer.alloc(0), 'MASK reply');
  fx.model.setInputs(0x0001);
  t.equal(native.eventfdRead(efd), -native.EAGAIN, 'masked');
  await send(c, Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, index: 0, start: 0, count: 1 }));
  t.equal(native.eventfdRead(efd), 1, 'delivered on unmask');
  await regionWrite(c, BAR2, REG.IN0_7, [0]);

  // Loopback triggers: DATA_NONE and DATA_BOOL.
  const lb = await send(c, Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: VFIO_IRQ_SET_DATA_NONE | trigger, index: 0, start: 0, count: 1 }));
  assertReply(t, lb.reply, lb, Buffer.alloc(0), 'loopback trigger');
  t.equal(native.eventfdRead(efd), 1, 'DATA_NONE trigger signals');
  await send(c, Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: VFIO_IRQ_SET_DATA_BOOL | trigger, index: 0, start: 0, count: 1, bools: Uint8Array.of(0) }));
  t.equal(native.eventfdRead(efd), -native.EAGAIN, 'DATA_BOOL false: nothing');
  const bt = await send(c, Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: VFIO_IRQ_SET_DATA_BOOL | trigger, index: 0, start: 0, count: 1, bools: Uint8Array.of(1) }));
  assertReply(t, bt.reply, bt, Buffer.alloc(0), 'DATA_BOOL trigger');
  t.equal(native.eventfdRead(efd), 1, 'DATA_BOOL true signals');

  // Disable the index: the server closes its copy of the eventfd.
  const before = native.fdCount();
  const off = await send(c, Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: VFIO_IRQ_SET_DATA_NONE | trigger, index: 0, start: 0, count: 0 }));
  assertReply(t, off.reply, off, Buffer.alloc(0), 'disable reply');
  t.equal(native.fdCount(), before - 1, 'server closed its eventfd');
  fx.model.setInputs(0x0002);
  t.equal(native.eventfdRead(efd), -native.EAGAIN, 'disabled: no signal');

  // REQ index: an eventfd the device can use to ask for release.
  const req = native.eventfd(0);
  t.teardown(() => native.close(req));
  const rq = await send(c, Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: VFIO_IRQ_SET_DATA_EVENTFD | trigger, index: 4, start: 0, count: 1 }), { fds: [req] });
  assertReply(t, rq.reply, rq, Buffer.alloc(0), 'REQ eventfd');
  t.equal(fx.model.device.requestRelease(), true, 'the device can signal REQ');
  t.equal(native.eventfdRead(req), 1);
  // Unassign with DATA_EVENTFD and no fds (QEMU's -1 run).
  const un2 = await send(c, Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: VFIO_IRQ_SET_DATA_EVENTFD | trigger, index: 4, start: 0, count: 1 }));
  assertReply(t, un2.reply, un2, Buffer.alloc(0), 'unassign REQ');
  t.equal(fx.model.device.requestRelease(), false, 'no REQ fd any more');
  fx.model.setInputs(0);
});

t.test('DEVICE_FEATURE: DMA logging start / report / stop', async (t) => {
  const c = await openClient(t, fx);
  const mem = patternMemfd(0x8000);
  t.teardown(() => native.close(mem.fd));
  const iova = 0x800000n;
  await send(c, Command.DMA_MAP, encodeDmaMapRequest({ addr: iova, size: 0x8000n }), { fds: [mem.fd] });

  // PROBE: the request echoed.
  const probeReq = encodeDeviceFeatureRequest({ feature: VFIO_DEVICE_FEATURE_DMA_LOGGING_START, ops: VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET });
  const probe = await send(c, Command.DEVICE_FEATURE, probeReq);
  assertReply(t, probe.reply, probe, probeReq, 'PROBE echoed');

  const startReq = encodeDeviceFeatureRequest({
    feature: VFIO_DEVICE_FEATURE_DMA_LOGGING_START, ops: VFIO_DEVICE_FEATURE_SET,
    data: dmaLoggingStartData(4096n, [{ iova, length: 0x8000n }]),
  });
  const start = await send(c, Command.DEVICE_FEATURE, startReq);
  assertReply(t, start.reply, start, startReq, 'START echoed (page size 4096 kept)');
  t.equal(fx.ctx.compatIoas.dirtyTracking, true);

  await dma().write(iova + 0x1000n, Buffer.from([1]));
  await dma().write(iova + 0x5fffn, Buffer.from([2, 3]));
  const reportReq = (): Buffer => encodeDeviceFeatureRequest({
    feature: VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, ops: VFIO_DEVICE_FEATURE_GET,
    data: dmaLoggingReportData(iova, 0x8000n, 4096n), argsz: 8 + 24 + 8,
  });
  const rep = await send(c, Command.DEVICE_FEATURE, reportReq());
  const bitmap = u64((1n << 1n) | (1n << 5n) | (1n << 6n));
  const head = Buffer.concat([u32s(8 + 24 + 8, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT | VFIO_DEVICE_FEATURE_GET), dmaLoggingReportData(iova, 0x8000n, 4096n)]);
  assertReply(t, rep.reply, rep, Buffer.concat([head, bitmap]), 'pages 1, 5 and 6 dirty');
  const again = await send(c, Command.DEVICE_FEATURE, reportReq());
  assertReply(t, again.reply, again, Buffer.concat([head, u64(0n)]), 'a report clears what it reported');

  // The legacy GET_DIRTY_BITMAP form of DMA_UNMAP.
  await dma().write(iova + 0x7000n, Buffer.from([4]));
  const unmapReq = encodeDmaUnmapRequest({ addr: iova, size: 0x8000n, bitmap: { pgsize: 4096n, size: 8 } });
  const um = await send(c, Command.DMA_UNMAP, unmapReq);
  t.equal(unmapReq.readUInt32LE(4), VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP);
  assertReply(t, um.reply, um, Buffer.concat([unmapReq, u64(1n << 7n)]), 'DMA_UNMAP with the dirty bitmap');

  const stopReq = encodeDeviceFeatureRequest({ feature: VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, ops: VFIO_DEVICE_FEATURE_SET });
  const stop = await send(c, Command.DEVICE_FEATURE, stopReq);
  assertReply(t, stop.reply, stop, stopReq, 'STOP echoed');
  t.equal(fx.ctx.compatIoas.dirtyTracking, false);
  const late = await send(c, Command.DEVICE_FEATURE, reportReq());
  assertErrorReply(t, late.reply, late, Errno.EINVAL, 'REPORT after STOP');
  await assertServes(t, c);
});

t.test('DEVICE_FEATURE migration and MIG_DATA_*: not supported', async (t) => {
  const c = await openClient(t, fx);
  const mig = await send(c, Command.DEVICE_FEATURE, encodeDeviceFeatureRequest({ feature: VFIO_DEVICE_FEATURE_MIGRATION, ops: VFIO_DEVICE_FEATURE_GET, argsz: 16 }));
  assertErrorReply(t, mig.reply, mig, Errno.EOPNOTSUPP, 'MIGRATION GET');
  const probe = await send(c, Command.DEVICE_FEATURE, encodeDeviceFeatureRequest({ feature: VFIO_DEVICE_FEATURE_MIGRATION, ops: VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_PROBE }));
  assertErrorReply(t, probe.reply, probe, Errno.EOPNOTSUPP, 'MIGRATION PROBE');
  const rd = await send(c, Command.MIG_DATA_READ, encodeMigDataReadRequest(64));
  assertErrorReply(t, rd.reply, rd, Errno.EOPNOTSUPP, 'MIG_DATA_READ');
  const wr = await send(c, Command.MIG_DATA_WRITE, encodeMigDataWriteRequest(Buffer.alloc(64, 1)));
  assertErrorReply(t, wr.reply, wr, Errno.EOPNOTSUPP, 'MIG_DATA_WRITE');
  await assertServes(t, c);
});

t.test('DMA_UNMAP is answered only once in-flight device access has finished', async (t) => {
  const c = await openClient(t, fx);
  const mem = patternMemfd(0x2000, 3);
  t.teardown(() => native.close(mem.fd));
  const iova = 0xa00000n;
  await c.request(Command.DMA_MAP, encodeDmaMapRequest({ addr: iova, size: 0x2000n }), { fds: [mem.fd] });
  const log = recordIncoming(c);
  const events: string[] = [];
  // A device holds a zero-copy view of guest memory across an await.
  const view = dma().withView(iova + 0x100n, 8, 1, async (segs) => {
    await sleep(80);
    events.push('device done');
    return Buffer.from(segs[0]!);
  });
  const unmap = send(c, Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: iova, size: 0x2000n }))
    .then((r) => { events.push('unmap reply'); return r; });
  const after = send(c, Command.REGION_READ, encodeRegionReadRequest({ offset: 0, region: CFG, count: 4 }))
    .then((r) => { events.push('next reply'); return r; });
  const [seen, u, n] = await Promise.all([view, unmap, after]);
  t.same(seen, mem.data.subarray(0x100, 0x108), 'the view stayed valid until the device was done');
  t.same(events, ['device done', 'unmap reply', 'next reply'], 'unmap replied after the device let go, and in order');
  assertReply(t, u.reply, u, encodeDmaUnmapRequest({ addr: iova, size: 0x2000n }));
  t.equal(n.reply.errno, 0);
  t.same(log.map((h) => h.msgId), [u.msgId, n.msgId]);
  await rejectsErrno(t, dma().read(iova, 4), Errno.EFAULT, 'gone afterwards');
});

t.test('DMA_UNMAP of message-backed memory waits for an outstanding DMA_READ, which is still served', async (t) => {
  const c = await openClient(t, fx);
  const base = 0xb00000n;
  const mem = Buffer.alloc(0x1000, 0x5c);
  c.guest = { base, mem };
  await c.request(Command.DMA_MAP, encodeDmaMapRequest({ addr: base, size: 0x1000n }));
  const slow = delayServerRequests(c, 60);
  const events: string[] = [];
  const read = dma().read(base + 8n, 8).then((b) => { events.push('dma read done'); return b; });
  await sleep(5); // the DMA_READ is out, the client sits on it
  const unmap = send(c, Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: base, size: 0x1000n }))
    .then((r) => { events.push('unmap reply'); return r; });
  const [data, u] = await Promise.all([read, unmap]);
  t.same(data, Buffer.alloc(8, 0x5c), 'the DMA_READ answer was taken while DMA_UNMAP waited (no deadlock)');
  t.equal(slow.answered.length, 1, 'one DMA_READ');
  t.same(events, ['dma read done', 'unmap reply'], 'unmap replied after the in-flight access');
  assertReply(t, u.reply, u, encodeDmaUnmapRequest({ addr: base, size: 0x1000n }));
  await assertServes(t, c);
});

t.test('DEVICE_FEATURE: DMA logging with a page-size hint the device does not track at', async (t) => {
  const c = await openClient(t, fx);
  const mem = patternMemfd(0x20000, 4);
  t.teardown(() => native.close(mem.fd));
  const iova = 0xd00000n;
  await c.request(Command.DMA_MAP, encodeDmaMapRequest({ addr: iova, size: 0x20000n }), { fds: [mem.fd] });
  const startReq = encodeDeviceFeatureRequest({
    feature: VFIO_DEVICE_FEATURE_DMA_LOGGING_START, ops: VFIO_DEVICE_FEATURE_SET,
    data: dmaLoggingStartData(0x10000n, [{ iova, length: 0x20000n }]),
  });
  const start = await send(c, Command.DEVICE_FEATURE, startReq);
  const chosen = Buffer.from(startReq);
  chosen.writeBigUInt64LE(4096n, 8);
  assertReply(t, start.reply, start, chosen, 'START answers with the page size it tracks at (4096)');
  await dma().write(iova + 0x11000n, Buffer.from([1]));
  const report = await send(c, Command.DEVICE_FEATURE, encodeDeviceFeatureRequest({
    feature: VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, ops: VFIO_DEVICE_FEATURE_GET,
    data: dmaLoggingReportData(iova, 0x20000n, 0x10000n), argsz: 8 + 24 + 8,
  }));
  const head = Buffer.concat([u32s(8 + 24 + 8, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT | VFIO_DEVICE_FEATURE_GET), dmaLoggingReportData(iova, 0x20000n, 0x10000n)]);
  assertReply(t, report.reply, report, Buffer.concat([head, u64(2n)]), 'a REPORT at 64 KiB granularity: page 1 dirty');
  const stop = encodeDeviceFeatureRequest({ feature: VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, ops: VFIO_DEVICE_FEATURE_SET });
  t.equal((await c.request(Command.DEVICE_FEATURE, stop)).errno, 0);
  t.equal((await c.request(Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: 0n, size: 0n, flags: VFIO_DMA_UNMAP_FLAG_ALL }))).errno, 0);
});
