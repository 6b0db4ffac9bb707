// A recorded message in decoded form, through the protocol/ codecs: the
// fields `trace show` prints and `replay` compares. A payload a codec
// refuses is not an error here (recordings of bad input are useful): the
// decoded form then says what the codec said and keeps the raw bytes.
import { Command, commandName, VFIO_USER_F_NO_REPLY } from '../protocol/constants.js';
import { errnoName } from '../protocol/errno.js';
import { hasError, isReply } from '../protocol/header.js';
import { MAX_DATA_XFER_SIZE_LIMIT, MAX_MSG_FDS_LIMIT, MAX_DMA_MAPS_LIMIT, DEFAULT_PGSIZE } from '../protocol/constants.js';
import type { NegotiatedLimits } from '../protocol/limits.js';
import { decodeVersionReply, decodeVersionRequest } from '../protocol/version.js';
import { decodeDmaMapRequest } from '../protocol/commands/dma-map.js';
import { decodeDmaUnmapReply, decodeDmaUnmapRequest } from '../protocol/commands/dma-unmap.js';
import { decodeDeviceGetInfoReply, decodeDeviceGetInfoRequest } from '../protocol/commands/device-get-info.js';
import { decodeRegionInfoReply, decodeRegionInfoRequest } from '../protocol/commands/region-info.js';
import { decodeRegionIoFdsReply, decodeRegionIoFdsRequest } from '../protocol/commands/region-io-fds.js';
import { decodeIrqInfoReply, decodeIrqInfoRequest } from '../protocol/commands/irq-info.js';
import { decodeSetIrqsRequest } from '../protocol/commands/set-irqs.js';
import {
  decodeRegionReadReply, decodeRegionReadRequest, decodeRegionWriteReply, decodeRegionWriteRequest,
} from '../protocol/commands/region-access.js';
import { decodeDmaReadRequest, decodeDmaWriteRequest } from '../protocol/commands/dma-access.js';
import { decodeRegionWriteMultiReply, decodeRegionWriteMultiRequest } from '../protocol/commands/region-write-multi.js';
import { decodeDeviceFeatureReply, decodeDeviceFeatureRequest } from '../protocol/commands/device-feature.js';
import { decodeMigDataReadRequest, decodeMigDataWriteRequest } from '../protocol/commands/mig-data.js';
import type { MessageRecord } from './format.js';

/** A message's decoded form. */
export interface Decoded {
  /** The command's name (REGION_READ, ...). */
  command: string;
  reply: boolean;
  /** An error reply's errno name (EINVAL, ...). */
  error?: string;
  /** The payload's fields; `raw` holds the bytes when no codec read them. */
  fields: Record<string, unknown>;
  /** Why the codec refused the payload. */
  problem?: string;
}

/** The widest limits any peer may negotiate: recorded messages are read, not judged. */
const READ_LIMITS: NegotiatedLimits = {
  maxMsgFds: MAX_MSG_FDS_LIMIT, maxDataXferSize: MAX_DATA_XFER_SIZE_LIMIT, pgsizes: DEFAULT_PGSIZE,
  maxDmaMaps: MAX_DMA_MAPS_LIMIT, writeMultiple: true, peerMaxMsgFds: MAX_MSG_FDS_LIMIT,
  peerMaxDataXferSize: MAX_DATA_XFER_SIZE_LIMIT,
};

type Decoder = (payload: Buffer, nfds: number) => unknown;

const requests: Record<number, Decoder> = {
  [Command.VERSION]: (p, n) => decodeVersionRequest(p, READ_LIMITS, n),
  [Command.DMA_MAP]: (p, n) => decodeDmaMapRequest(p, READ_LIMITS, n),
  [Command.DMA_UNMAP]: (p, n) => decodeDmaUnmapRequest(p, READ_LIMITS, n),
  [Command.DEVICE_GET_INFO]: (p, n) => decodeDeviceGetInfoRequest(p, READ_LIMITS, n),
  [Command.DEVICE_GET_REGION_INFO]: (p, n) => decodeRegionInfoRequest(p, READ_LIMITS, n),
  [Command.DEVICE_GET_REGION_IO_FDS]: (p, n) => decodeRegionIoFdsRequest(p, READ_LIMITS, n),
  [Command.DEVICE_GET_IRQ_INFO]: (p, n) => decodeIrqInfoRequest(p, READ_LIMITS, n),
  [Command.DEVICE_SET_IRQS]: (p, n) => decodeSetIrqsRequest(p, READ_LIMITS, n),
  [Command.REGION_READ]: (p, n) => decodeRegionReadRequest(p, READ_LIMITS, n),
  [Command.REGION_WRITE]: (p, n) => decodeRegionWriteRequest(p, READ_LIMITS, n),
  [Command.DMA_READ]: (p, n) => decodeDmaReadRequest(p, READ_LIMITS, n),
  [Command.DMA_WRITE]: (p, n) => decodeDmaWriteRequest(p, READ_LIMITS, n),
  [Command.DEVICE_RESET]: () => ({}),
  [Command.REGION_WRITE_MULTI]: (p, n) => ({ writes: decodeRegionWriteMultiRequest(p, READ_LIMITS, n) }),
  [Command.DEVICE_FEATURE]: (p, n) => decodeDeviceFeatureRequest(p, READ_LIMITS, n),
  [Command.MIG_DATA_READ]: (p, n) => decodeMigDataReadRequest(p, READ_LIMITS, n),
  [Command.MIG_DATA_WRITE]: (p, n) => decodeMigDataWriteRequest(p, READ_LIMITS, n),
};

const empty: Decoder = () => ({});
const replies: Record<number, Decoder> = {
  [Command.VERSION]: (p) => decodeVersionReply(p),
  [Command.DMA_MAP]: empty,
  [Command.DMA_UNMAP]: (p) => decodeDmaUnmapReply(p),
  [Command.DEVICE_GET_INFO]: (p) => decodeDeviceGetInfoReply(p),
  [Command.DEVICE_GET_REGION_INFO]: (p) => decodeRegionInfoReply(p),
  [Command.DEVICE_GET_REGION_IO_FDS]: (p) => decodeRegionIoFdsReply(p),
  [Command.DEVICE_GET_IRQ_INFO]: (p) => decodeIrqInfoReply(p),
  [Command.DEVICE_SET_IRQS]: empty,
  [Command.REGION_READ]: (p) => decodeRegionReadReply(p),
  [Command.REGION_WRITE]: (p) => decodeRegionWriteReply(p),
  // A DMA_READ reply is laid out as a DMA_WRITE request (addr, count, data),
  // a DMA_WRITE reply as a DMA_READ request (addr, count).
  [Command.DMA_READ]: (p, n) => decodeDmaWriteRequest(p, READ_LIMITS, n),
  [Command.DMA_WRITE]: (p, n) => decodeDmaReadRequest(p, READ_LIMITS, n),
  [Command.DEVICE_RESET]: empty,
  [Command.REGION_WRITE_MULTI]: (p) => ({ done: decodeRegionWriteMultiReply(p) }),
  [Command.DEVICE_FEATURE]: (p) => decodeDeviceFeatureReply(p),
};

/** Decodes one recorded message (never throws). */
export function decodeMessage(m: MessageRecord): Decoded {
  const h = m.header;
  const reply = isReply(h.flags);
  const payload = Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength);
  const out: Decoded = { command: commandName(h.command), reply, fields: {} };
  if (reply && hasError(h.flags)) {
    out.error = errnoName(h.error);
    if (payload.length === 0) return out;
  }
  if (!reply && h.flags & VFIO_USER_F_NO_REPLY) out.fields.noReply = true;
  const decoder = (reply ? replies : requests)[h.command];
  if (!decoder) {
    out.fields.raw = payload;
    return out;
  }
  try {
    const f = decoder(payload, m.fds?.length ?? 0);
    if (f && typeof f === 'object') Object.assign(out.fields, f);
  } catch (err) {
    out.problem = (err as Error).message;
    out.fields.raw = payload;
  }
  if (m.fds?.length) out.fields.fds = m.fds.map((f) => ({ ...f }));
  return out;
}

/** The decoded form as `path → value` leaves (objects and arrays flattened: `writes.0.data`). */
export function flatten(d: Decoded): Map<string, unknown> {
  const out = new Map<string, unknown>();
  out.set('command', d.command);
  out.set('reply', d.reply);
  if (d.error !== undefined) out.set('error', d.error);
  if (d.problem !== undefined) out.set('problem', d.problem);
  const walk = (prefix: string, v: unknown): void => {
    if (v instanceof Uint8Array || v === null || typeof v !== 'object') {
      out.set(prefix, v);
      return;
    }
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) walk(prefix ? `${prefix}.${k}` : k, x);
  };
  walk('', d.fields);
  return out;
}

/** A field's value for humans: bigints and numbers as given, bytes as hex (long ones cut). */
export function showValue(v: unknown, maxBytes = 16): string {
  if (v instanceof Uint8Array) {
    const hex = Buffer.from(v.buffer, v.byteOffset, Math.min(v.byteLength, maxBytes)).toString('hex');
    return v.byteLength > maxBytes ? `${hex}…(${v.byteLength} bytes)` : hex || '(empty)';
  }
  if (typeof v === 'bigint') return `0x${v.toString(16)}`;
  if (typeof v === 'object' && v !== null) return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `0x${x.toString(16)}` : x));
  return String(v);
}
