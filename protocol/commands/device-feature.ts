// VFIO_USER_DEVICE_FEATURE (client → server): get / set / probe a feature
// (struct vfio_device_feature). QEMU 11.1 does not send it (no migration).
//
// Request:
//   0 4 argsz   max reply payload
//   4 4 flags   feature id (bits 0-15) | GET (1<<16) | SET (1<<17) | PROBE (1<<18)
//               GET and SET together only with PROBE
//   8 n data    per feature and operation (none for PROBE)
// Reply: the request echoed for SET and PROBE; for GET the feature's data,
// with argsz = 8 + its length. The reply never exceeds the request's argsz:
// a smaller argsz is EINVAL (as libvfio-user), for every operation.
// Feature data:
//   MIGRATION (1)          GET reply:  0 8 flags (VFIO_MIGRATION_STOP_COPY|P2P|PRE_COPY)
//   MIG_DEVICE_STATE (2)   SET request / GET reply: 0 4 device_state, 4 4 data_fd (unused)
//   DMA_LOGGING_START (6)  SET: 0 8 page_size, 8 4 num_ranges, 12 4 reserved,
//                               16.. ranges { 0 8 iova, 8 8 length }
//   DMA_LOGGING_STOP (7)   SET: none
//   DMA_LOGGING_REPORT (8) GET: 0 8 iova, 8 8 length, 16 8 page_size;
//                          reply adds the bitmap (u64s, 1 bit per page) at 24
import {
  DMA_LOGGING_MAX_RANGES, MIG_STATE_COUNT, MigState, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MASK, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET,
} from '../constants.js';
import { fail } from '../errno.js';
import type { NegotiatedLimits } from '../limits.js';
import { argszAtLeast, checkRange64, exactLength, isPowerOfTwo, minLength, noFds, readU64, writeU64 } from '../wire.js';

export const FEATURE_HDR = 8;
const OPS = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE;
/** Which operations each known feature supports. */
const SUPPORTED: Record<number, number> = {
  [VFIO_DEVICE_FEATURE_MIGRATION]: VFIO_DEVICE_FEATURE_GET,
  [VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE]: VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET,
  [VFIO_DEVICE_FEATURE_DMA_LOGGING_START]: VFIO_DEVICE_FEATURE_SET,
  [VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP]: VFIO_DEVICE_FEATURE_SET,
  [VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT]: VFIO_DEVICE_FEATURE_GET,
};

export interface DmaLoggingRange { iova: bigint; length: bigint }
export interface DmaLoggingStart { pageSize: bigint; ranges: DmaLoggingRange[] }
export interface DmaLoggingReport { iova: bigint; length: bigint; pageSize: bigint; bitmapBytes: number }

export interface DeviceFeatureRequest {
  argsz: number;
  flags: number;
  feature: number;
  /** 'probe' whenever PROBE is set (then get/set say what is probed). */
  op: 'get' | 'set' | 'probe';
  get: boolean;
  set: boolean;
  /** Bytes after the 8-byte header (a view into the payload). */
  data: Buffer;
  /** MIG_DEVICE_STATE SET: the state to go to. */
  migState?: number;
  /** DMA_LOGGING_START SET. */
  logging?: DmaLoggingStart;
  /** DMA_LOGGING_REPORT GET. */
  report?: DmaLoggingReport;
}

export function decodeDeviceFeatureRequest(payload: Buffer, limits: NegotiatedLimits, nfds: number): DeviceFeatureRequest {
  minLength(payload, FEATURE_HDR, 'DEVICE_FEATURE');
  noFds(nfds, 'DEVICE_FEATURE');
  const argsz = payload.readUInt32LE(0);
  const flags = payload.readUInt32LE(4);
  const feature = flags & VFIO_DEVICE_FEATURE_MASK;
  const get = (flags & VFIO_DEVICE_FEATURE_GET) !== 0;
  const set = (flags & VFIO_DEVICE_FEATURE_SET) !== 0;
  const probe = (flags & VFIO_DEVICE_FEATURE_PROBE) !== 0;
  if (flags & ~(VFIO_DEVICE_FEATURE_MASK | OPS)) throw fail('EINVAL', `DEVICE_FEATURE: unknown flags 0x${flags.toString(16)}`);
  if (!get && !set && !probe) throw fail('EINVAL', 'DEVICE_FEATURE: none of GET, SET, PROBE');
  if (get && set && !probe) throw fail('EINVAL', 'DEVICE_FEATURE: GET and SET without PROBE');
  const supported = SUPPORTED[feature];
  if (supported === undefined) throw fail('EINVAL', `DEVICE_FEATURE: unknown feature ${feature}`);
  if ((get && !(supported & VFIO_DEVICE_FEATURE_GET)) || (set && !(supported & VFIO_DEVICE_FEATURE_SET))) {
    throw fail('EINVAL', `DEVICE_FEATURE: feature ${feature} does not support ${get ? 'GET' : 'SET'}`);
  }
  argszAtLeast(argsz, FEATURE_HDR, 'DEVICE_FEATURE');
  // SET and PROBE echo the request: it must fit the reply (libvfio-user: EINVAL).
  if (set || probe) argszAtLeast(argsz, payload.length, 'DEVICE_FEATURE');
  const data = payload.subarray(FEATURE_HDR);
  const req: DeviceFeatureRequest = { argsz, flags, feature, op: probe ? 'probe' : get ? 'get' : 'set', get, set, data };
  if (probe) return req;
  const what = `DEVICE_FEATURE ${feature}`;
  switch (feature) {
    case VFIO_DEVICE_FEATURE_MIGRATION:
      exactLength(payload, FEATURE_HDR, what);
      argszAtLeast(argsz, FEATURE_HDR + 8, what);
      break;
    case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE:
      if (get) {
        exactLength(payload, FEATURE_HDR, what);
        argszAtLeast(argsz, FEATURE_HDR + 8, what);
      } else {
        exactLength(payload, FEATURE_HDR + 8, what);
        const state = data.readUInt32LE(0);
        if (state >= MIG_STATE_COUNT || state === MigState.ERROR) throw fail('EINVAL', `${what}: bad device_state ${state}`);
        req.migState = state;
      }
      break;
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_START:
      req.logging = decodeLoggingStart(payload, what);
      break;
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
      exactLength(payload, FEATURE_HDR, what);
      break;
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT:
      req.report = decodeLoggingReport(payload, limits, what);
      argszAtLeast(argsz, FEATURE_HDR + 24 + req.report.bitmapBytes, what);
      break;
  }
  return req;
}

function decodeLoggingStart(payload: Buffer, what: string): DmaLoggingStart {
  minLength(payload, FEATURE_HDR + 16, what);
  const pageSize = readU64(payload, FEATURE_HDR);
  const n = payload.readUInt32LE(FEATURE_HDR + 8);
  if (pageSize === 0n) throw fail('EINVAL', `${what}: page_size 0`);
  if (n > DMA_LOGGING_MAX_RANGES) throw fail('E2BIG', `${what}: ${n} ranges > ${DMA_LOGGING_MAX_RANGES}`);
  exactLength(payload, FEATURE_HDR + 16 + 16 * n, what);
  const ranges: DmaLoggingRange[] = [];
  for (let i = 0; i < n; i++) {
    const at = FEATURE_HDR + 16 + 16 * i;
    const iova = readU64(payload, at);
    const length = readU64(payload, at + 8);
    if (length === 0n) throw fail('EINVAL', `${what}: range ${i} has length 0`);
    checkRange64(iova, length, `${what} range ${i}`);
    ranges.push({ iova, length });
  }
  const sorted = [...ranges].sort((a, b) => (a.iova < b.iova ? -1 : a.iova > b.iova ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    if (prev.iova + prev.length > sorted[i]!.iova) throw fail('EINVAL', `${what}: ranges overlap`);
  }
  return { pageSize, ranges };
}

function decodeLoggingReport(payload: Buffer, limits: NegotiatedLimits, what: string): DmaLoggingReport {
  exactLength(payload, FEATURE_HDR + 24, what);
  const iova = readU64(payload, FEATURE_HDR);
  const length = readU64(payload, FEATURE_HDR + 8);
  const pageSize = readU64(payload, FEATURE_HDR + 16);
  if (!isPowerOfTwo(pageSize)) throw fail('EINVAL', `${what}: page_size 0x${pageSize.toString(16)} not a power of two`);
  if (length === 0n) throw fail('EINVAL', `${what}: length 0`);
  checkRange64(iova, length, what);
  const bytes = dmaLoggingBitmapBytes(length, pageSize);
  if (bytes > BigInt(limits.maxDataXferSize)) throw fail('EINVAL', `${what}: bitmap of ${bytes} bytes too large`);
  return { iova, length, pageSize, bitmapBytes: Number(bytes) };
}

/** Bitmap bytes for a report: one bit per page, in whole u64s. */
export function dmaLoggingBitmapBytes(length: bigint, pageSize: bigint): bigint {
  const pages = (length + pageSize - 1n) / pageSize;
  return ((pages + 63n) / 64n) * 8n;
}

// ---- replies ----

function replyParts(flags: number, data: Buffer): Buffer[] {
  const h = Buffer.alloc(FEATURE_HDR);
  h.writeUInt32LE(FEATURE_HDR + data.length, 0);
  h.writeUInt32LE(flags, 4);
  return [h, data];
}

/** SET and PROBE: the request echoed. GET: pass the feature's data. */
export function encodeDeviceFeatureReply(req: DeviceFeatureRequest, data: Buffer = req.data): Buffer[] {
  return replyParts(req.flags, data);
}

/** DMA_LOGGING_START: the request echoed, with the page size the device chose. */
export function encodeDmaLoggingStartReply(req: DeviceFeatureRequest, pageSize = req.logging?.pageSize ?? 0n): Buffer[] {
  const d = Buffer.from(req.data);
  writeU64(d, 0, pageSize);
  return replyParts(req.flags, d);
}

export function encodeDmaLoggingReportReply(req: DeviceFeatureRequest, bitmap: Buffer): Buffer[] {
  const r = req.report;
  if (!r || bitmap.length !== r.bitmapBytes) throw fail('EIO', `DMA_LOGGING_REPORT: bitmap must be ${r?.bitmapBytes} bytes`);
  const h = Buffer.alloc(FEATURE_HDR + 24);
  h.writeUInt32LE(FEATURE_HDR + 24 + bitmap.length, 0);
  h.writeUInt32LE(req.flags, 4);
  writeU64(h, 8, r.iova);
  writeU64(h, 16, r.length);
  writeU64(h, 24, r.pageSize);
  return [h, bitmap];
}

// ---- client side (test client) ----

export function migStateData(state: number): Buffer {
  const d = Buffer.alloc(8);
  d.writeUInt32LE(state, 0);
  d.writeUInt32LE(0xffffffff, 4); // data_fd: unused (-1)
  return d;
}

export function dmaLoggingStartData(pageSize: bigint, ranges: readonly DmaLoggingRange[]): Buffer {
  const d = Buffer.alloc(16 + 16 * ranges.length);
  writeU64(d, 0, pageSize);
  d.writeUInt32LE(ranges.length, 8);
  ranges.forEach((r, i) => { writeU64(d, 16 + 16 * i, r.iova); writeU64(d, 24 + 16 * i, r.length); });
  return d;
}

export function dmaLoggingReportData(iova: bigint, length: bigint, pageSize: bigint): Buffer {
  const d = Buffer.alloc(24);
  writeU64(d, 0, iova);
  writeU64(d, 8, length);
  writeU64(d, 16, pageSize);
  return d;
}

export interface DeviceFeatureArgs {
  feature: number;
  /** Any of VFIO_DEVICE_FEATURE_GET | SET | PROBE. */
  ops: number;
  data?: Uint8Array;
  /** Default: 8 + data, or enough for the GET reply you expect. */
  argsz?: number;
}

export function encodeDeviceFeatureRequest(a: DeviceFeatureArgs): Buffer {
  const n = a.data?.length ?? 0;
  const b = Buffer.alloc(FEATURE_HDR + n);
  b.writeUInt32LE(a.argsz ?? FEATURE_HDR + n, 0);
  b.writeUInt32LE((a.feature & VFIO_DEVICE_FEATURE_MASK) | a.ops, 4);
  if (a.data) b.set(a.data, FEATURE_HDR);
  return b;
}

export interface DeviceFeatureReply { argsz: number; flags: number; feature: number; data: Buffer }

export function decodeDeviceFeatureReply(payload: Buffer): DeviceFeatureReply {
  minLength(payload, FEATURE_HDR, 'DEVICE_FEATURE reply');
  const flags = payload.readUInt32LE(4);
  return { argsz: payload.readUInt32LE(0), flags, feature: flags & VFIO_DEVICE_FEATURE_MASK, data: payload.subarray(FEATURE_HDR) };
}
