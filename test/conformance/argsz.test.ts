// argsz is the client's reply buffer: for every command whose request carries
// one, a reply payload is never larger than it. Too small an argsz is EINVAL
// (as libvfio-user), except where the spec cuts the reply and reports the
// size needed in the reply's argsz (GET_REGION_INFO capabilities,
// GET_REGION_IO_FDS sub-regions). Commands whose argsz is the request's own
// size (DMA_MAP, SET_IRQS, MIG_DATA_WRITE) refuse an argsz below it.
import t, { type Test } from 'tap';
import {
  Command, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET,
  VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_REGION_INFO_FLAG_CAPS, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ,
} from '../../protocol/constants.js';
import { Errno } from '../../protocol/errno.js';
import { encodeDmaMapRequest } from '../../protocol/commands/dma-map.js';
import { encodeDmaUnmapRequest } from '../../protocol/commands/dma-unmap.js';
import { encodeDeviceGetInfoRequest } from '../../protocol/commands/device-get-info.js';
import { decodeRegionInfoReply, encodeRegionInfoRequest } from '../../protocol/commands/region-info.js';
import { encodeRegionIoFdsRequest } from '../../protocol/commands/region-io-fds.js';
import { encodeIrqInfoRequest } from '../../protocol/commands/irq-info.js';
import { encodeSetIrqsRequest } from '../../protocol/commands/set-irqs.js';
import {
  dmaLoggingReportData, dmaLoggingStartData, encodeDeviceFeatureRequest, migStateData,
} from '../../protocol/commands/device-feature.js';
import { encodeMigDataReadRequest, encodeMigDataWriteRequest } from '../../protocol/commands/mig-data.js';
import type { RegionDescription } from '../../devices/device.js';
import {
  BAR2, assertErrorReply, assertServes, native, openClient, patternMemfd, send, startGpio, type ReplyMessage,
  type VfioUserClient,
} from './helpers.js';

const fx = await startGpio(t);

/** A success reply whose payload fits `argsz`; returns the payload. */
function fits(t: Test, r: ReplyMessage, argsz: number, what: string): Buffer {
  for (const fd of r.fds) native.close(fd);
  t.equal(r.errno, 0, `${what}: success`);
  t.ok(r.payload.length <= argsz, `${what}: reply of ${r.payload.length} bytes <= argsz ${argsz}`);
  return r.payload;
}

/** Send `payload`, expect an EINVAL error reply. */
async function einval(t: Test, c: VfioUserClient, command: number, payload: Buffer, what: string): Promise<void> {
  const r = await send(c, command, payload);
  assertErrorReply(t, r.reply, r, Errno.EINVAL, what);
}

t.test('DEVICE_GET_INFO and DEVICE_GET_IRQ_INFO: argsz below 16 is EINVAL', async (t) => {
  const c = await openClient(t, fx);
  for (const argsz of [0, 8, 15]) {
    await einval(t, c, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest(argsz), `GET_INFO argsz ${argsz}`);
    await einval(t, c, Command.DEVICE_GET_IRQ_INFO, encodeIrqInfoRequest(VFIO_PCI_INTX_IRQ_INDEX, argsz), `GET_IRQ_INFO argsz ${argsz}`);
  }
  fits(t, (await send(c, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest(16))).reply, 16, 'GET_INFO argsz 16');
  fits(t, (await send(c, Command.DEVICE_GET_IRQ_INFO, encodeIrqInfoRequest(VFIO_PCI_INTX_IRQ_INDEX, 16))).reply, 16, 'GET_IRQ_INFO argsz 16');
  await assertServes(t, c);
});

t.test('DEVICE_GET_REGION_INFO: below 32 EINVAL; capabilities only when they fit, the fd only with them', async (t) => {
  const c = await openClient(t, fx);
  for (const argsz of [0, 16, 31]) {
    await einval(t, c, Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest(BAR2, argsz), `argsz ${argsz}`);
  }
  fits(t, (await send(c, Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest(BAR2, 32))).reply, 32, 'BAR2, argsz 32');

  // No device here has an mmap-able region: give BAR0 one for this test.
  const mem = patternMemfd(0x2000);
  const dev = fx.model.device;
  const plain = dev.regionInfo.bind(dev);
  const mmapped: RegionDescription = {
    size: 0x2000, flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_MMAP,
    mmap: { fd: mem.fd, areas: [{ offset: 0, size: 0x1000 }, { offset: 0x1000, size: 0x1000 }] },
  };
  dev.regionInfo = (index: number) => (index === VFIO_PCI_BAR0_REGION_INDEX ? mmapped : plain(index));
  t.teardown(() => { dev.regionInfo = plain; native.close(mem.fd); });
  const needed = 32 + 16 + 2 * 16;
  for (const argsz of [32, needed - 1]) {
    const r = await send(c, Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest(VFIO_PCI_BAR0_REGION_INDEX, argsz));
    t.equal(r.reply.fds.length, 0, `argsz ${argsz}: no fd with a cut reply`);
    const p = fits(t, r.reply, argsz, `argsz ${argsz}`);
    t.equal(p.length, 32, `argsz ${argsz}: the fixed part only`);
    const info = decodeRegionInfoReply(p);
    t.equal(info.argsz, needed, `argsz ${argsz}: the reply tells the size needed`);
    t.equal(info.flags & VFIO_REGION_INFO_FLAG_CAPS, 0, `argsz ${argsz}: no CAPS flag`);
  }
  const r = await send(c, Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest(VFIO_PCI_BAR0_REGION_INDEX, needed));
  t.equal(r.reply.fds.length, 1, 'the whole reply carries the fd');
  const info = decodeRegionInfoReply(fits(t, r.reply, needed, `argsz ${needed}`));
  t.same(info.sparseAreas, [{ offset: 0n, size: 0x1000n }, { offset: 0x1000n, size: 0x1000n }], 'with the sparse areas');
  await assertServes(t, c);
});

t.test('DEVICE_GET_REGION_IO_FDS: below 16 EINVAL; 16 is enough for the header', async (t) => {
  const c = await openClient(t, fx);
  for (const argsz of [0, 15]) {
    await einval(t, c, Command.DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest(BAR2, argsz), `argsz ${argsz}`);
  }
  const p = fits(t, (await send(c, Command.DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest(BAR2, 16))).reply, 16, 'argsz 16');
  t.equal(p.readUInt32LE(0), 16, 'argsz needed: no sub-regions');
  await assertServes(t, c);
});

t.test('DMA_UNMAP: argsz below the echo (and its bitmap) is EINVAL', async (t) => {
  const c = await openClient(t, fx);
  const mem = patternMemfd(0x8000);
  t.teardown(() => native.close(mem.fd));
  const iova = 0x400000n;
  await send(c, Command.DMA_MAP, encodeDmaMapRequest({ addr: iova, size: 0x8000n }), { fds: [mem.fd] });
  await einval(t, c, Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: iova, size: 0x8000n, argsz: 23 }), 'argsz 23');
  const bitmap = { pgsize: 4096n, size: 8 };
  await einval(t, c, Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: iova, size: 0x8000n, bitmap, argsz: 40 }), 'bitmap, argsz 40');
  await einval(t, c, Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: iova, size: 0x8000n, bitmap, argsz: 47 }), 'bitmap, argsz 47');
  t.equal(fx.ctx.compatIoas.areaCount, 1, 'nothing was unmapped');
  const start = encodeDeviceFeatureRequest({
    feature: VFIO_DEVICE_FEATURE_DMA_LOGGING_START, ops: VFIO_DEVICE_FEATURE_SET,
    data: dmaLoggingStartData(4096n, [{ iova, length: 0x8000n }]),
  });
  t.equal((await send(c, Command.DEVICE_FEATURE, start)).reply.errno, 0, 'logging started');
  fits(t, (await send(c, Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: iova, size: 0x8000n, bitmap, argsz: 48 }))).reply, 48, 'bitmap, argsz 48');
  const stop = encodeDeviceFeatureRequest({ feature: VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, ops: VFIO_DEVICE_FEATURE_SET });
  fits(t, (await send(c, Command.DEVICE_FEATURE, stop)).reply, 8, 'STOP with argsz 8');
  await assertServes(t, c);
});

t.test('DEVICE_FEATURE: PROBE, SET and GET never reply beyond argsz', async (t) => {
  const c = await openClient(t, fx);
  const mem = patternMemfd(0x8000);
  t.teardown(() => native.close(mem.fd));
  const iova = 0x600000n;
  await send(c, Command.DMA_MAP, encodeDmaMapRequest({ addr: iova, size: 0x8000n }), { fds: [mem.fd] });
  const startData = dmaLoggingStartData(4096n, [{ iova, length: 0x8000n }]);
  const probe = (argsz: number, data?: Buffer): Buffer => encodeDeviceFeatureRequest({
    feature: VFIO_DEVICE_FEATURE_DMA_LOGGING_START, ops: VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET,
    argsz, ...(data ? { data } : {}),
  });
  // PROBE echoes the request: data after the header must fit too.
  await einval(t, c, Command.DEVICE_FEATURE, probe(8, startData), 'PROBE with 32 data bytes, argsz 8');
  await einval(t, c, Command.DEVICE_FEATURE, probe(8 + startData.length - 1, startData), 'PROBE, argsz one short');
  fits(t, (await send(c, Command.DEVICE_FEATURE, probe(8 + startData.length, startData))).reply, 8 + startData.length, 'PROBE, argsz exact');
  fits(t, (await send(c, Command.DEVICE_FEATURE, probe(8))).reply, 8, 'PROBE without data, argsz 8');

  const set = (feature: number, argsz: number, data?: Buffer): Buffer => encodeDeviceFeatureRequest({
    feature, ops: VFIO_DEVICE_FEATURE_SET, argsz, ...(data ? { data } : {}),
  });
  await einval(t, c, Command.DEVICE_FEATURE, set(VFIO_DEVICE_FEATURE_DMA_LOGGING_START, 8, startData), 'START, argsz 8');
  await einval(t, c, Command.DEVICE_FEATURE, set(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, 15, migStateData(2)), 'MIG_DEVICE_STATE SET, argsz 15');
  fits(t, (await send(c, Command.DEVICE_FEATURE, set(VFIO_DEVICE_FEATURE_DMA_LOGGING_START, 8 + startData.length, startData))).reply,
    8 + startData.length, 'START, argsz exact');

  const report = (argsz: number): Buffer => encodeDeviceFeatureRequest({
    feature: VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, ops: VFIO_DEVICE_FEATURE_GET,
    data: dmaLoggingReportData(iova, 0x8000n, 4096n), argsz,
  });
  await einval(t, c, Command.DEVICE_FEATURE, report(32), 'REPORT, argsz without the bitmap');
  await einval(t, c, Command.DEVICE_FEATURE, report(39), 'REPORT, argsz one short');
  fits(t, (await send(c, Command.DEVICE_FEATURE, report(40))).reply, 40, 'REPORT, argsz exact');
  const get = encodeDeviceFeatureRequest({ feature: VFIO_DEVICE_FEATURE_MIGRATION, ops: VFIO_DEVICE_FEATURE_GET, argsz: 15 });
  await einval(t, c, Command.DEVICE_FEATURE, get, 'MIGRATION GET, argsz 15');
  fits(t, (await send(c, Command.DEVICE_FEATURE, set(VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, 8))).reply, 8, 'STOP');
  await assertServes(t, c);
});

t.test('MIG_DATA_READ: argsz below 8 + size is EINVAL', async (t) => {
  const c = await openClient(t, fx);
  await einval(t, c, Command.MIG_DATA_READ, encodeMigDataReadRequest(64, 8 + 63), 'size 64, argsz 71');
  await einval(t, c, Command.MIG_DATA_READ, encodeMigDataReadRequest(64, 0), 'size 64, argsz 0');
  await assertServes(t, c);
});

t.test('argsz below the request itself: DMA_MAP, SET_IRQS, MIG_DATA_WRITE', async (t) => {
  const c = await openClient(t, fx);
  await einval(t, c, Command.DMA_MAP, encodeDmaMapRequest({ addr: 0x1000n, size: 0x1000n, argsz: 31 }), 'DMA_MAP argsz 31');
  await einval(t, c, Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({
    flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_INTX_IRQ_INDEX, start: 0, count: 1, argsz: 19,
  }), 'SET_IRQS argsz 19');
  await einval(t, c, Command.MIG_DATA_WRITE, encodeMigDataWriteRequest(Buffer.alloc(16), 8 + 15), 'MIG_DATA_WRITE argsz 23');
  await assertServes(t, c);
});
