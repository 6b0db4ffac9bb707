// One handler per vfio-user command: decode (protocol/ validates every field),
// act on the device or the DMA space, encode the reply payload.
import type { Header } from '../protocol/header.js';
import { Command, VFIO_IRQ_SET_DATA_EVENTFD } from '../protocol/constants.js';
import { fail } from '../protocol/errno.js';
import { decodeVersionRequest, encodeVersionReply, negotiateVersion } from '../protocol/version.js';
import { decodeDmaMapRequest } from '../protocol/commands/dma-map.js';
import { decodeDmaUnmapRequest, encodeDmaUnmapReply } from '../protocol/commands/dma-unmap.js';
import { decodeDeviceGetInfoRequest, encodeDeviceGetInfoReply } from '../protocol/commands/device-get-info.js';
import {
  decodeRegionInfoRequest, encodeRegionInfoReply, regionInfoReplySize, type RegionInfo,
} from '../protocol/commands/region-info.js';
import { decodeRegionIoFdsRequest, encodeRegionIoFdsReply } from '../protocol/commands/region-io-fds.js';
import { decodeIrqInfoRequest, encodeIrqInfoReply } from '../protocol/commands/irq-info.js';
import { checkSetIrqsRange, decodeSetIrqsRequest, setIrqsEventfds } from '../protocol/commands/set-irqs.js';
import {
  decodeRegionReadRequest, decodeRegionWriteRequest, encodeRegionReadReply, encodeRegionWriteReply,
  type RegionAccess,
} from '../protocol/commands/region-access.js';
import { decodeRegionWriteMultiRequest, encodeRegionWriteMultiReply } from '../protocol/commands/region-write-multi.js';
import { decodeDeviceResetRequest } from '../protocol/commands/device-reset.js';
import { decodeMigDataReadRequest, decodeMigDataWriteRequest } from '../protocol/commands/mig-data.js';
import type { VfioUserDevice } from '../devices/device.js';
import { handleDeviceFeature } from './feature.js';
import { faultyDma } from '../faults/dma.js';
import type { FdBag } from './fd-bag.js';
import type { HandlerContext, Reply } from './handler-context.js';

type Handler = (s: HandlerContext, payload: Buffer, fds: FdBag, h: Header) => Reply | Promise<Reply>;

const handlers: Partial<Record<number, Handler>> = {
  [Command.VERSION]: (s, payload, fds) => {
    if (s.negotiated) throw fail('EINVAL', 'VERSION after negotiation');
    const req = decodeVersionRequest(payload, s.limits, fds.count);
    const { reply, limits } = negotiateVersion(req);
    s.setLimits(limits);
    s.space.setMaxMappings(limits.maxDmaMaps);
    s.device.attachClient(s.faults === null
      ? { dma: s.space.dma, log: s.log, poll: s.poll }
      : { dma: faultyDma(s.space.dma, s.faults), log: s.log, faults: s.faults, poll: s.poll });
    s.log.info(`client negotiated`, limits);
    return { payload: encodeVersionReply(reply) };
  },

  [Command.DMA_MAP]: (s, payload, fds) => {
    const req = decodeDmaMapRequest(payload, s.limits, fds.count);
    s.space.map(req, req.fdIndex === null ? null : fds.take(req.fdIndex), s.messenger);
  },

  [Command.DMA_UNMAP]: (s, payload, fds) => {
    const req = decodeDmaUnmapRequest(payload, s.limits, fds.count);
    const bitmap = s.space.unmap(req);
    if (bitmap instanceof Promise) return bitmap.then((b) => ({ payload: encodeDmaUnmapReply(req, b) }));
    return { payload: encodeDmaUnmapReply(req, bitmap) };
  },

  [Command.DEVICE_GET_INFO]: (s, payload, fds) => {
    decodeDeviceGetInfoRequest(payload, s.limits, fds.count);
    return { payload: encodeDeviceGetInfoReply(s.device.info()) };
  },

  [Command.DEVICE_GET_REGION_INFO]: (s, payload, fds) => {
    const req = decodeRegionInfoRequest(payload, s.limits, fds.count);
    const info = s.device.regionInfo(req.index);
    const full: RegionInfo = {
      index: req.index, flags: info.flags, size: info.size, offset: 0,
      ...(info.mmap ? { sparseAreas: info.mmap.areas } : {}),
    };
    const reply = encodeRegionInfoReply(req, full);
    // The fd goes with the whole reply only: a cut one makes the client ask
    // again with the argsz it says (as libvfio-user).
    const whole = reply.length === regionInfoReplySize(full);
    return { payload: reply, ...(info.mmap && whole ? { fds: [info.mmap.fd] } : {}) };
  },

  [Command.DEVICE_GET_REGION_IO_FDS]: (s, payload, fds) => {
    const req = decodeRegionIoFdsRequest(payload, s.limits, fds.count);
    s.device.regionInfo(req.index); // EINVAL for a bad index
    // No device offers ioeventfds yet: the answer is "no sub-regions".
    return { payload: encodeRegionIoFdsReply(req, []) };
  },

  [Command.DEVICE_GET_IRQ_INFO]: (s, payload, fds) => {
    const req = decodeIrqInfoRequest(payload, s.limits, fds.count);
    return { payload: encodeIrqInfoReply(req.index, s.device.irqInfo(req.index)) };
  },

  [Command.DEVICE_SET_IRQS]: (s, payload, fds) => {
    const req = decodeSetIrqsRequest(payload, s.limits, fds.count);
    // Before anything is sized by `count` (the device loops over the range).
    const irqCount = s.device.irqInfo(req.index).count;
    checkSetIrqsRange(req, irqCount);
    let eventfds: number[] | undefined;
    if (req.dataType === VFIO_IRQ_SET_DATA_EVENTFD) {
      const taken = Array.from({ length: req.fdCount }, (_, i) => fds.take(i));
      eventfds = setIrqsEventfds(req, taken, irqCount);
    }
    s.device.setIrqs({
      flags: req.flags, index: req.index, start: req.start, count: req.count,
      ...(req.bools ? { bools: req.bools } : {}),
      ...(eventfds ? { fds: eventfds } : {}),
    });
  },

  [Command.REGION_READ]: (s, payload, fds) => {
    const req = decodeRegionReadRequest(payload, s.limits, fds.count);
    const data = s.device.regionRead(req.region, req.offset, req.count);
    if (data instanceof Promise) return data.then((d) => ({ payload: encodeRegionReadReply(req, d) }));
    return { payload: encodeRegionReadReply(req, data) };
  },

  [Command.REGION_WRITE]: (s, payload, fds) => {
    const req = decodeRegionWriteRequest(payload, s.limits, fds.count);
    const done = s.device.regionWrite(req.region, req.offset, req.data);
    const reply = { payload: encodeRegionWriteReply(req) };
    if (done instanceof Promise) return done.then(() => reply);
    return reply;
  },

  [Command.REGION_WRITE_MULTI]: (s, payload, fds) => {
    const writes = decodeRegionWriteMultiRequest(payload, s.limits, fds.count);
    return writeInOrder(s.device, writes, 0);
  },

  [Command.DEVICE_RESET]: (s, payload, fds) => {
    decodeDeviceResetRequest(payload, s.limits, fds.count);
    const done = s.device.reset();
    if (done instanceof Promise) return done.then(() => undefined);
  },

  [Command.DEVICE_FEATURE]: (s, payload, fds) => handleDeviceFeature(s, payload, fds.count),

  [Command.MIG_DATA_READ]: (s, payload, fds) => {
    decodeMigDataReadRequest(payload, s.limits, fds.count);
    throw fail('EOPNOTSUPP', 'migration is not supported');
  },

  [Command.MIG_DATA_WRITE]: (s, payload, fds) => {
    decodeMigDataWriteRequest(payload, s.limits, fds.count);
    throw fail('EOPNOTSUPP', 'migration is not supported');
  },
};

/** REGION_WRITE_MULTI: the writes in order, waiting on any that is async. */
function writeInOrder(device: VfioUserDevice, writes: ReadonlyArray<RegionAccess & { data: Buffer }>, from: number): Reply | Promise<Reply> {
  for (let i = from; i < writes.length; i++) {
    const w = writes[i]!;
    const done = device.regionWrite(w.region, w.offset, w.data);
    if (done instanceof Promise) {
      // The payload is reused after dispatch: copy what is still to be written.
      const rest = writes.slice(i + 1).map((x) => ({ ...x, data: Buffer.from(x.data) }));
      return done.then(() => writeInOrder(device, rest, 0)).then(() => ({ payload: encodeRegionWriteMultiReply(writes.length) }));
    }
  }
  return { payload: encodeRegionWriteMultiReply(writes.length) };
}

/**
 * Commands whose request starts with a u32 argsz that is the largest reply
 * payload the client takes (DMA_MAP's, SET_IRQS' and MIG_DATA_WRITE's is the
 * request's own size, and their replies are empty). Their codecs keep the
 * reply within it (EINVAL, or a cut reply that tells the size needed).
 */
const ARGSZ_COMMANDS: ReadonlySet<number> = new Set([
  Command.DMA_UNMAP, Command.DEVICE_GET_INFO, Command.DEVICE_GET_REGION_INFO, Command.DEVICE_GET_REGION_IO_FDS,
  Command.DEVICE_GET_IRQ_INFO, Command.DEVICE_FEATURE, Command.MIG_DATA_READ,
]);

/** A reply larger than the request's argsz would overrun the client's buffer: refuse it. */
function withinArgsz(r: Reply, argsz: number, command: number): Reply {
  const p = r?.payload;
  let size = 0;
  if (p !== undefined) for (const part of Buffer.isBuffer(p) ? [p] : p) size += part.length;
  if (size > argsz) throw fail('EINVAL', `command ${command}: reply of ${size} bytes > argsz ${argsz}`);
  return r;
}

export function handleCommand(s: HandlerContext, h: Header, payload: Buffer, fds: FdBag): Reply | Promise<Reply> {
  const handler = handlers[h.command];
  if (!handler) throw fail('EINVAL', `unsupported command ${h.command}`);
  const reply = handler(s, payload, fds, h);
  if (!ARGSZ_COMMANDS.has(h.command)) return reply;
  // The handler's decoder has checked that the payload holds argsz.
  const argsz = payload.readUInt32LE(0);
  return reply instanceof Promise ? reply.then((r) => withinArgsz(r, argsz, h.command)) : withinArgsz(reply, argsz, h.command);
}
