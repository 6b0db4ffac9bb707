// Malformed and edge-case requests, table-driven. Each row is one message
// (bytes, fds, flags) and the errno the server must answer with. For every
// row the suite checks the exact error reply (msg_id and command echoed,
// header only, REPLY|ERROR, the errno, no fds), that every fd sent with the
// request was closed by the server, and that the same connection still
// serves a valid request afterwards.
import fs from 'node:fs';
import t from 'tap';
import type { Test } from 'tap';
import {
  Command, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET,
  VFIO_DMA_UNMAP_FLAG_ALL, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, VFIO_IRQ_SET_ACTION_MASK,
  VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
} from '../../protocol/constants.js';
import { Errno, errnoName } from '../../protocol/errno.js';
import { encodeVersionRequest } from '../../protocol/version.js';
import { encodeDmaMapRequest } from '../../protocol/commands/dma-map.js';
import { encodeDmaUnmapRequest } from '../../protocol/commands/dma-unmap.js';
import { encodeDeviceGetInfoRequest } from '../../protocol/commands/device-get-info.js';
import { encodeRegionInfoRequest } from '../../protocol/commands/region-info.js';
import { encodeRegionIoFdsRequest } from '../../protocol/commands/region-io-fds.js';
import { encodeIrqInfoRequest } from '../../protocol/commands/irq-info.js';
import { encodeSetIrqsRequest } from '../../protocol/commands/set-irqs.js';
import { encodeRegionReadRequest, encodeRegionWriteRequest } from '../../protocol/commands/region-access.js';
import { encodeRegionWriteMultiRequest } from '../../protocol/commands/region-write-multi.js';
import {
  dmaLoggingReportData, dmaLoggingStartData, encodeDeviceFeatureRequest,
} from '../../protocol/commands/device-feature.js';
import { encodeMigDataReadRequest, encodeMigDataWriteRequest } from '../../protocol/commands/mig-data.js';
import { encodeDmaReadReply } from '../../protocol/commands/dma-access.js';
import {
  BAR2, CFG, assertErrorReply, assertReply, assertServes, closeClient, native, send, startGpio,
  VfioUserClient, QEMU_CAPS,
} from './helpers.js';

const fx = await startGpio(t);
let shared: VfioUserClient | null = null;
/** One connection for all rows; reopened (and reported) if a row killed it. */
async function client(t: Test): Promise<VfioUserClient> {
  if (shared && !shared.closed && fx.host.connected) return shared;
  if (shared) {
    t.fail('the previous row ended the connection');
    await closeClient(fx, shared);
  }
  shared = await VfioUserClient.open(fx.sock, QEMU_CAPS);
  return shared;
}
t.teardown(async () => { if (shared) await closeClient(fx, shared); });

const { EINVAL, EEXIST, E2BIG } = Errno;
const MAX_XFER = 1 << 20;
const U64_MAX = (1n << 64n) - 1n;
const TOP_PAGE = (1n << 64n) - 0x1000n;
const RW = 3;
const TRIGGER = VFIO_IRQ_SET_ACTION_TRIGGER;

function with32(buf: Buffer, off: number, v: number): Buffer {
  const b = Buffer.from(buf);
  b.writeUInt32LE(v >>> 0, off);
  return b;
}
function with64(buf: Buffer, off: number, v: bigint): Buffer {
  const b = Buffer.from(buf);
  b.writeBigUInt64LE(v, off);
  return b;
}
function bytes(n: number, fill = 0): Buffer {
  return Buffer.alloc(n, fill);
}
const readReq = (offset: number, region: number, count: number): Buffer => encodeRegionReadRequest({ offset, region, count });
/** REGION_READ/WRITE fixed part with a u64 offset that does not fit a JS number. */
const accessAt = (offset: bigint, region: number, count: number, data = Buffer.alloc(0)): Buffer => {
  const b = Buffer.alloc(16 + data.length);
  b.writeBigUInt64LE(offset, 0);
  b.writeUInt32LE(region, 8);
  b.writeUInt32LE(count, 12);
  data.copy(b, 16);
  return b;
};
const mapReq = (addr: bigint, size: bigint, offset = 0n, flags = RW): Buffer => encodeDmaMapRequest({ addr, size, offset, flags });
const unmapReq = (addr: bigint, size: bigint, flags = 0): Buffer => encodeDmaUnmapRequest({ addr, size, flags });
const setIrqs = (flags: number, index: number, start: number, count: number, bools?: Uint8Array): Buffer =>
  encodeSetIrqsRequest({ flags, index, start, count, ...(bools ? { bools } : {}) });
const multi = (entries: Array<{ offset: number; region: number; data: number[] }>): Buffer =>
  encodeRegionWriteMultiRequest(entries.map((e) => ({ ...e, data: Uint8Array.from(e.data) })));
const feature = (feat: number, ops: number, data?: Buffer, argsz?: number): Buffer =>
  encodeDeviceFeatureRequest({ feature: feat, ops, ...(data ? { data } : {}), ...(argsz !== undefined ? { argsz } : {}) });

type FdKind = 'memfd' | 'eventfd' | 'memfd-small' | 'memfd-readonly';
function makeFd(kind: FdKind): number {
  if (kind === 'eventfd') return native.eventfd(0);
  if (kind === 'memfd-readonly') {
    // The same memory opened O_RDONLY: it cannot be mapped shared and writable.
    const rw = native.memfdCreate('malformed-ro', 0x10000);
    const ro = fs.openSync(`/proc/self/fd/${rw}`, 'r');
    native.close(rw);
    return ro;
  }
  return native.memfdCreate('malformed', kind === 'memfd-small' ? 0x1000 : 0x10000);
}

interface Row {
  name: string;
  command: number;
  payload: Buffer;
  errno: number;
  fds?: FdKind[];
  flags?: number;
  /** State the row needs; undone by `cleanup`. */
  setup?: (c: VfioUserClient) => Promise<void>;
  cleanup?: (c: VfioUserClient) => Promise<void>;
}

const MAPPED = 0x1000_0000n;
const withMapping = {
  async setup(c: VfioUserClient) {
    const r = await c.request(Command.DMA_MAP, mapReq(MAPPED, 0x2000n));
    if (r.errno) throw new Error(`setup DMA_MAP failed: ${errnoName(r.errno)}`);
  },
  async cleanup(c: VfioUserClient) {
    await c.request(Command.DMA_UNMAP, unmapReq(0n, 0n, VFIO_DMA_UNMAP_FLAG_ALL));
  },
};

const rows: Row[] = [
  // ---- header / dispatch ----
  { name: 'unknown command 0', command: 0, payload: bytes(0), errno: EINVAL },
  { name: 'unknown command 19', command: 19, payload: bytes(8), errno: EINVAL },
  { name: 'unknown command 0xffff', command: 0xffff, payload: bytes(0), errno: EINVAL },
  { name: 'DMA_READ sent by the client (server→client only)', command: Command.DMA_READ, payload: bytes(16), errno: EINVAL },
  { name: 'DMA_WRITE sent by the client (server→client only)', command: Command.DMA_WRITE, payload: bytes(20), errno: EINVAL },
  { name: 'DIRTY_PAGES (deprecated, not served)', command: Command.DIRTY_PAGES, payload: bytes(8), errno: EINVAL },
  { name: 'message type 2 (neither command nor reply)', command: Command.REGION_READ, payload: readReq(0, CFG, 4), flags: 2, errno: EINVAL },
  { name: 'message type 15', command: Command.REGION_READ, payload: readReq(0, CFG, 4), flags: 0xf, errno: EINVAL },
  { name: 'VERSION again after negotiation', command: Command.VERSION, payload: encodeVersionRequest(QEMU_CAPS), errno: EINVAL },

  // ---- DMA_MAP ----
  { name: 'DMA_MAP header only', command: Command.DMA_MAP, payload: bytes(0), errno: EINVAL },
  { name: 'DMA_MAP short payload (31 bytes)', command: Command.DMA_MAP, payload: mapReq(0x100000n, 0x1000n).subarray(0, 31), errno: EINVAL },
  { name: 'DMA_MAP long payload (40 bytes)', command: Command.DMA_MAP, payload: Buffer.concat([mapReq(0x100000n, 0x1000n), bytes(8)]), errno: EINVAL },
  { name: 'DMA_MAP argsz 31', command: Command.DMA_MAP, payload: with32(mapReq(0x100000n, 0x1000n), 0, 31), errno: EINVAL },
  { name: 'DMA_MAP flags 0 (neither READ nor WRITE)', command: Command.DMA_MAP, payload: mapReq(0x100000n, 0x1000n, 0n, 0), errno: EINVAL },
  { name: 'DMA_MAP unknown flag bit', command: Command.DMA_MAP, payload: mapReq(0x100000n, 0x1000n, 0n, RW | 4), errno: EINVAL },
  { name: 'DMA_MAP size 0', command: Command.DMA_MAP, payload: mapReq(0x100000n, 0n), errno: EINVAL },
  { name: 'DMA_MAP addr not page aligned', command: Command.DMA_MAP, payload: mapReq(0x100800n, 0x1000n), errno: EINVAL },
  { name: 'DMA_MAP size not page aligned', command: Command.DMA_MAP, payload: mapReq(0x100000n, 0x1800n), errno: EINVAL },
  { name: 'DMA_MAP addr + size wraps past 2^64', command: Command.DMA_MAP, payload: mapReq(TOP_PAGE, 0x2000n), errno: EINVAL },
  { name: 'DMA_MAP size 2^64 - 4096', command: Command.DMA_MAP, payload: mapReq(0x1000n, TOP_PAGE), errno: EINVAL },
  { name: 'DMA_MAP non-zero offset without an fd', command: Command.DMA_MAP, payload: mapReq(0x100000n, 0x1000n, 0x1000n), errno: EINVAL },
  { name: 'DMA_MAP with two fds', command: Command.DMA_MAP, payload: mapReq(0x100000n, 0x1000n), fds: ['memfd', 'memfd'], errno: EINVAL },
  { name: 'DMA_MAP file offset not page aligned', command: Command.DMA_MAP, payload: mapReq(0x100000n, 0x1000n, 0x10n), fds: ['memfd'], errno: EINVAL },
  { name: 'DMA_MAP file offset + size wraps past 2^64', command: Command.DMA_MAP, payload: mapReq(0x100000n, 0x2000n, TOP_PAGE), fds: ['memfd'], errno: EINVAL },
  { name: 'DMA_MAP past the end of the memfd', command: Command.DMA_MAP, payload: mapReq(0x100000n, 0x2000n), fds: ['memfd-small'], errno: EINVAL },
  { name: 'DMA_MAP file offset past the end of the memfd', command: Command.DMA_MAP, payload: mapReq(0x100000n, 0x1000n, 0x10000n), fds: ['memfd'], errno: EINVAL },
  { name: 'DMA_MAP with an eventfd as memory', command: Command.DMA_MAP, payload: mapReq(0x100000n, 0x1000n), fds: ['eventfd'], errno: EINVAL },
  { name: 'DMA_MAP READ|WRITE of a read-only fd', command: Command.DMA_MAP, payload: mapReq(0x100000n, 0x1000n), fds: ['memfd-readonly'], errno: Errno.EACCES },
  { name: 'DMA_MAP overlapping an existing mapping', command: Command.DMA_MAP, payload: mapReq(MAPPED + 0x1000n, 0x2000n), errno: EEXIST, ...withMapping },

  // ---- DMA_UNMAP ----
  { name: 'DMA_UNMAP short payload (23 bytes)', command: Command.DMA_UNMAP, payload: unmapReq(0x100000n, 0x1000n).subarray(0, 23), errno: EINVAL },
  { name: 'DMA_UNMAP trailing bytes without a bitmap', command: Command.DMA_UNMAP, payload: Buffer.concat([unmapReq(0x100000n, 0x1000n), bytes(8)]), errno: EINVAL },
  { name: 'DMA_UNMAP argsz 23', command: Command.DMA_UNMAP, payload: with32(unmapReq(0x100000n, 0x1000n), 0, 23), errno: EINVAL },
  { name: 'DMA_UNMAP unknown flag', command: Command.DMA_UNMAP, payload: unmapReq(0x100000n, 0x1000n, 4), errno: EINVAL },
  { name: 'DMA_UNMAP ALL with a non-zero addr', command: Command.DMA_UNMAP, payload: unmapReq(0x1000n, 0n, VFIO_DMA_UNMAP_FLAG_ALL), errno: EINVAL },
  { name: 'DMA_UNMAP ALL with GET_DIRTY_BITMAP', command: Command.DMA_UNMAP, payload: unmapReq(0n, 0n, VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP), errno: EINVAL },
  { name: 'DMA_UNMAP size 0', command: Command.DMA_UNMAP, payload: unmapReq(0x100000n, 0n), errno: EINVAL },
  { name: 'DMA_UNMAP addr not page aligned', command: Command.DMA_UNMAP, payload: unmapReq(0x100010n, 0x1000n), errno: EINVAL },
  { name: 'DMA_UNMAP addr + size wraps past 2^64', command: Command.DMA_UNMAP, payload: unmapReq(TOP_PAGE, 0x2000n), errno: EINVAL },
  { name: 'DMA_UNMAP with an fd', command: Command.DMA_UNMAP, payload: unmapReq(0x100000n, 0x1000n), fds: ['memfd'], errno: EINVAL },
  { name: 'DMA_UNMAP bisecting a mapping', command: Command.DMA_UNMAP, payload: unmapReq(MAPPED, 0x1000n), errno: EINVAL, ...withMapping },
  {
    name: 'DMA_UNMAP GET_DIRTY_BITMAP with logging off', command: Command.DMA_UNMAP,
    payload: encodeDmaUnmapRequest({ addr: MAPPED, size: 0x2000n, bitmap: { pgsize: 4096n, size: 8 } }), errno: EINVAL, ...withMapping,
  },
  {
    name: 'DMA_UNMAP GET_DIRTY_BITMAP with a bitmap too small', command: Command.DMA_UNMAP,
    payload: encodeDmaUnmapRequest({ addr: 0n, size: 0x1000000n, bitmap: { pgsize: 4096n, size: 8 } }), errno: EINVAL,
  },

  // ---- DEVICE_GET_INFO ----
  { name: 'DEVICE_GET_INFO header only', command: Command.DEVICE_GET_INFO, payload: bytes(0), errno: EINVAL },
  { name: 'DEVICE_GET_INFO short payload (12 bytes)', command: Command.DEVICE_GET_INFO, payload: encodeDeviceGetInfoRequest().subarray(0, 12), errno: EINVAL },
  { name: 'DEVICE_GET_INFO argsz 8', command: Command.DEVICE_GET_INFO, payload: encodeDeviceGetInfoRequest(8), errno: EINVAL },
  { name: 'DEVICE_GET_INFO non-zero flags', command: Command.DEVICE_GET_INFO, payload: with32(encodeDeviceGetInfoRequest(), 4, 1), errno: EINVAL },
  { name: 'DEVICE_GET_INFO with an eventfd', command: Command.DEVICE_GET_INFO, payload: encodeDeviceGetInfoRequest(), fds: ['eventfd'], errno: EINVAL },

  // ---- DEVICE_GET_REGION_INFO ----
  { name: 'GET_REGION_INFO index 9', command: Command.DEVICE_GET_REGION_INFO, payload: encodeRegionInfoRequest(9), errno: EINVAL },
  { name: 'GET_REGION_INFO index 0xffffffff', command: Command.DEVICE_GET_REGION_INFO, payload: encodeRegionInfoRequest(0xffffffff), errno: EINVAL },
  { name: 'GET_REGION_INFO argsz 16', command: Command.DEVICE_GET_REGION_INFO, payload: encodeRegionInfoRequest(2, 16), errno: EINVAL },
  { name: 'GET_REGION_INFO short payload (16 bytes)', command: Command.DEVICE_GET_REGION_INFO, payload: encodeRegionInfoRequest(2).subarray(0, 16), errno: EINVAL },
  { name: 'GET_REGION_INFO non-zero size field', command: Command.DEVICE_GET_REGION_INFO, payload: with64(encodeRegionInfoRequest(2), 16, 1n), errno: EINVAL },
  { name: 'GET_REGION_INFO with a memfd', command: Command.DEVICE_GET_REGION_INFO, payload: encodeRegionInfoRequest(2), fds: ['memfd'], errno: EINVAL },

  // ---- DEVICE_GET_REGION_IO_FDS ----
  { name: 'GET_REGION_IO_FDS index 9', command: Command.DEVICE_GET_REGION_IO_FDS, payload: encodeRegionIoFdsRequest(9, 16), errno: EINVAL },
  { name: 'GET_REGION_IO_FDS argsz 8', command: Command.DEVICE_GET_REGION_IO_FDS, payload: encodeRegionIoFdsRequest(2, 8), errno: EINVAL },
  { name: 'GET_REGION_IO_FDS argsz above max_data_xfer_size', command: Command.DEVICE_GET_REGION_IO_FDS, payload: encodeRegionIoFdsRequest(2, MAX_XFER + 1), errno: EINVAL },
  { name: 'GET_REGION_IO_FDS non-zero count', command: Command.DEVICE_GET_REGION_IO_FDS, payload: with32(encodeRegionIoFdsRequest(2, 16), 12, 1), errno: EINVAL },

  // ---- DEVICE_GET_IRQ_INFO ----
  { name: 'GET_IRQ_INFO index 5', command: Command.DEVICE_GET_IRQ_INFO, payload: encodeIrqInfoRequest(5), errno: EINVAL },
  { name: 'GET_IRQ_INFO argsz 8', command: Command.DEVICE_GET_IRQ_INFO, payload: encodeIrqInfoRequest(0, 8), errno: EINVAL },
  { name: 'GET_IRQ_INFO long payload (20 bytes)', command: Command.DEVICE_GET_IRQ_INFO, payload: Buffer.concat([encodeIrqInfoRequest(0), bytes(4)]), errno: EINVAL },
  { name: 'GET_IRQ_INFO non-zero count', command: Command.DEVICE_GET_IRQ_INFO, payload: with32(encodeIrqInfoRequest(0), 12, 1), errno: EINVAL },

  // ---- DEVICE_SET_IRQS ----
  { name: 'SET_IRQS short payload (16 bytes)', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_NONE | TRIGGER, 0, 0, 1).subarray(0, 16), errno: EINVAL },
  { name: 'SET_IRQS argsz != payload size', command: Command.DEVICE_SET_IRQS, payload: with32(setIrqs(VFIO_IRQ_SET_DATA_NONE | TRIGGER, 0, 0, 1), 0, 24), errno: EINVAL },
  { name: 'SET_IRQS two DATA_* flags', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | TRIGGER, 0, 0, 1), errno: EINVAL },
  { name: 'SET_IRQS no ACTION_* flag', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_NONE, 0, 0, 1), errno: EINVAL },
  { name: 'SET_IRQS unknown flag bit', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_NONE | TRIGGER | 0x40, 0, 0, 1), errno: EINVAL },
  { name: 'SET_IRQS index 5', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_NONE | TRIGGER, 5, 0, 1), errno: EINVAL },
  { name: 'SET_IRQS start + count wraps u32', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_EVENTFD | TRIGGER, 0, 0xffffffff, 2), errno: EINVAL },
  { name: 'SET_IRQS INTx start 1 (only vector 0 exists)', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_EVENTFD | TRIGGER, 0, 1, 1), fds: ['eventfd'], errno: EINVAL },
  { name: 'SET_IRQS MSI vector on a device without MSI', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_EVENTFD | TRIGGER, 1, 0, 1), fds: ['eventfd'], errno: EINVAL },
  { name: 'SET_IRQS ERR start 1 (only vector 0 exists)', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_EVENTFD | TRIGGER, 3, 1, 1), fds: ['eventfd'], errno: EINVAL },
  { name: 'SET_IRQS DATA_EVENTFD count 1 with two fds', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_EVENTFD | TRIGGER, 0, 0, 1), fds: ['eventfd', 'eventfd'], errno: EINVAL },
  { name: 'SET_IRQS DATA_BOOL with an fd', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_BOOL | TRIGGER, 0, 0, 1, Uint8Array.of(1)), fds: ['eventfd'], errno: EINVAL },
  { name: 'SET_IRQS DATA_NONE with an fd', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_NONE | TRIGGER, 0, 0, 1), fds: ['eventfd'], errno: EINVAL },
  { name: 'SET_IRQS DATA_BOOL without its bytes', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_BOOL | TRIGGER, 0, 0, 1), errno: EINVAL },
  { name: 'SET_IRQS count 0 with DATA_EVENTFD', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_EVENTFD | TRIGGER, 0, 0, 0), errno: EINVAL },
  { name: 'SET_IRQS UNMASK on a disabled index', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1), errno: EINVAL },
  { name: 'SET_IRQS loopback trigger on a disabled index', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_NONE | TRIGGER, 0, 0, 1), errno: EINVAL },
  { name: 'SET_IRQS MASK on the REQ index', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, 4, 0, 1), errno: EINVAL },
  { name: 'SET_IRQS MASK by eventfd (resample fd)', command: Command.DEVICE_SET_IRQS, payload: setIrqs(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_MASK, 0, 0, 1), fds: ['eventfd'], errno: EINVAL },

  // ---- REGION_READ ----
  { name: 'REGION_READ header only', command: Command.REGION_READ, payload: bytes(0), errno: EINVAL },
  { name: 'REGION_READ short payload (8 bytes)', command: Command.REGION_READ, payload: readReq(0, CFG, 4).subarray(0, 8), errno: EINVAL },
  { name: 'REGION_READ long payload (20 bytes)', command: Command.REGION_READ, payload: Buffer.concat([readReq(0, CFG, 4), bytes(4)]), errno: EINVAL },
  { name: 'REGION_READ region 9', command: Command.REGION_READ, payload: readReq(0, 9, 4), errno: EINVAL },
  { name: 'REGION_READ region 0xffffffff', command: Command.REGION_READ, payload: readReq(0, 0xffffffff, 4), errno: EINVAL },
  { name: 'REGION_READ absent BAR0', command: Command.REGION_READ, payload: readReq(0, 0, 4), errno: EINVAL },
  { name: 'REGION_READ absent expansion ROM', command: Command.REGION_READ, payload: readReq(0, 6, 4), errno: EINVAL },
  { name: 'REGION_READ absent VGA region', command: Command.REGION_READ, payload: readReq(0, 8, 1), errno: EINVAL },
  { name: 'REGION_READ config offset 256 (just past the end)', command: Command.REGION_READ, payload: readReq(256, CFG, 1), errno: EINVAL },
  { name: 'REGION_READ config 255 + 2 (straddles the end)', command: Command.REGION_READ, payload: readReq(255, CFG, 2), errno: EINVAL },
  { name: 'REGION_READ BAR2 offset 0x100', command: Command.REGION_READ, payload: readReq(0x100, BAR2, 1), errno: EINVAL },
  { name: 'REGION_READ offset 2^64 - 1', command: Command.REGION_READ, payload: accessAt(U64_MAX, CFG, 1), errno: EINVAL },
  { name: 'REGION_READ offset 2^64 - 4 count 8 (wraps)', command: Command.REGION_READ, payload: accessAt(U64_MAX - 3n, CFG, 8), errno: EINVAL },
  { name: 'REGION_READ offset 2^63', command: Command.REGION_READ, payload: accessAt(1n << 63n, CFG, 4), errno: EINVAL },
  { name: 'REGION_READ offset 2^53 - 1 count 2', command: Command.REGION_READ, payload: accessAt((1n << 53n) - 1n, CFG, 2), errno: EINVAL },
  { name: 'REGION_READ count max_data_xfer_size + 1', command: Command.REGION_READ, payload: readReq(0, CFG, MAX_XFER + 1), errno: EINVAL },
  { name: 'REGION_READ count 0xffffffff', command: Command.REGION_READ, payload: readReq(0, CFG, 0xffffffff), errno: EINVAL },
  { name: 'REGION_READ count max_data_xfer_size on a 256-byte region', command: Command.REGION_READ, payload: readReq(0, CFG, MAX_XFER), errno: EINVAL },
  { name: 'REGION_READ with a memfd', command: Command.REGION_READ, payload: readReq(0, CFG, 4), fds: ['memfd'], errno: EINVAL },

  // ---- REGION_WRITE ----
  { name: 'REGION_WRITE count 4 with 2 data bytes', command: Command.REGION_WRITE, payload: encodeRegionWriteRequest({ offset: 0, region: BAR2, data: Buffer.from([1, 2]), count: 4 }), errno: EINVAL },
  { name: 'REGION_WRITE count 1 with 2 data bytes', command: Command.REGION_WRITE, payload: encodeRegionWriteRequest({ offset: 0, region: BAR2, data: Buffer.from([1, 2]), count: 1 }), errno: EINVAL },
  { name: 'REGION_WRITE short payload (10 bytes)', command: Command.REGION_WRITE, payload: bytes(10), errno: EINVAL },
  { name: 'REGION_WRITE count above max_data_xfer_size', command: Command.REGION_WRITE, payload: encodeRegionWriteRequest({ offset: 0, region: BAR2, data: Buffer.from([1]), count: MAX_XFER + 1 }), errno: EINVAL },
  { name: 'REGION_WRITE config 255 + 2 (straddles the end)', command: Command.REGION_WRITE, payload: encodeRegionWriteRequest({ offset: 255, region: CFG, data: Buffer.from([1, 2]) }), errno: EINVAL },
  { name: 'REGION_WRITE to the absent expansion ROM', command: Command.REGION_WRITE, payload: encodeRegionWriteRequest({ offset: 0, region: 6, data: Buffer.from([1]) }), errno: EINVAL },
  { name: 'REGION_WRITE region 9', command: Command.REGION_WRITE, payload: encodeRegionWriteRequest({ offset: 0, region: 9, data: Buffer.from([1]) }), errno: EINVAL },
  { name: 'REGION_WRITE offset 2^64 - 1', command: Command.REGION_WRITE, payload: accessAt(U64_MAX, BAR2, 1, Buffer.from([1])), errno: EINVAL },
  { name: 'REGION_WRITE with an eventfd', command: Command.REGION_WRITE, payload: encodeRegionWriteRequest({ offset: 0x3c, region: CFG, data: Buffer.from([1]) }), fds: ['eventfd'], errno: EINVAL },

  // ---- REGION_WRITE_MULTI ----
  { name: 'REGION_WRITE_MULTI short payload (4 bytes)', command: Command.REGION_WRITE_MULTI, payload: bytes(4), errno: EINVAL },
  { name: 'REGION_WRITE_MULTI wr_cnt 0', command: Command.REGION_WRITE_MULTI, payload: bytes(8), errno: EINVAL },
  {
    name: 'REGION_WRITE_MULTI wr_cnt 201 (max 200)', command: Command.REGION_WRITE_MULTI,
    payload: multi(Array.from({ length: 201 }, () => ({ offset: 0x3c, region: CFG, data: [1] }))), errno: EINVAL,
  },
  { name: 'REGION_WRITE_MULTI wr_cnt 2 with one entry', command: Command.REGION_WRITE_MULTI, payload: with64(multi([{ offset: 0x3c, region: CFG, data: [1] }]), 0, 2n), errno: EINVAL },
  { name: 'REGION_WRITE_MULTI entry count 9', command: Command.REGION_WRITE_MULTI, payload: with32(multi([{ offset: 0x3c, region: CFG, data: [1] }]), 8 + 12, 9), errno: EINVAL },
  { name: 'REGION_WRITE_MULTI entry count 0', command: Command.REGION_WRITE_MULTI, payload: with32(multi([{ offset: 0x3c, region: CFG, data: [1] }]), 8 + 12, 0), errno: EINVAL },
  { name: 'REGION_WRITE_MULTI entry offset 2^64 - 1', command: Command.REGION_WRITE_MULTI, payload: with64(multi([{ offset: 0, region: CFG, data: [1] }]), 8, U64_MAX), errno: EINVAL },
  { name: 'REGION_WRITE_MULTI entry in region 9', command: Command.REGION_WRITE_MULTI, payload: multi([{ offset: 0, region: 9, data: [1] }]), errno: EINVAL },
  { name: 'REGION_WRITE_MULTI entry past the region end', command: Command.REGION_WRITE_MULTI, payload: multi([{ offset: 0xfe, region: CFG, data: [1, 2, 3, 4] }]), errno: EINVAL },
  { name: 'REGION_WRITE_MULTI with an fd', command: Command.REGION_WRITE_MULTI, payload: multi([{ offset: 0x3c, region: CFG, data: [1] }]), fds: ['eventfd'], errno: EINVAL },

  // ---- DEVICE_RESET ----
  { name: 'DEVICE_RESET with a payload', command: Command.DEVICE_RESET, payload: bytes(4), errno: EINVAL },
  { name: 'DEVICE_RESET with an fd', command: Command.DEVICE_RESET, payload: bytes(0), fds: ['eventfd'], errno: EINVAL },

  // ---- DEVICE_FEATURE ----
  { name: 'DEVICE_FEATURE short payload (4 bytes)', command: Command.DEVICE_FEATURE, payload: bytes(4), errno: EINVAL },
  { name: 'DEVICE_FEATURE none of GET/SET/PROBE', command: Command.DEVICE_FEATURE, payload: feature(VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, 0), errno: EINVAL },
  { name: 'DEVICE_FEATURE GET|SET without PROBE', command: Command.DEVICE_FEATURE, payload: feature(VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET), errno: EINVAL },
  { name: 'DEVICE_FEATURE unknown feature 99', command: Command.DEVICE_FEATURE, payload: feature(99, VFIO_DEVICE_FEATURE_GET), errno: EINVAL },
  { name: 'DEVICE_FEATURE unknown flag bit', command: Command.DEVICE_FEATURE, payload: feature(VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, VFIO_DEVICE_FEATURE_SET | (1 << 20)), errno: EINVAL },
  { name: 'DEVICE_FEATURE LOGGING_STOP with GET', command: Command.DEVICE_FEATURE, payload: feature(VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, VFIO_DEVICE_FEATURE_GET), errno: EINVAL },
  {
    name: 'DEVICE_FEATURE LOGGING_START with 257 ranges', command: Command.DEVICE_FEATURE,
    payload: feature(VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_SET,
      dmaLoggingStartData(4096n, Array.from({ length: 257 }, (_, i) => ({ iova: BigInt(i) * 0x1000n, length: 0x1000n })))),
    errno: E2BIG,
  },
  {
    name: 'DEVICE_FEATURE LOGGING_START page size 0', command: Command.DEVICE_FEATURE,
    payload: feature(VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_SET, dmaLoggingStartData(0n, [{ iova: 0n, length: 0x1000n }])), errno: EINVAL,
  },
  {
    name: 'DEVICE_FEATURE LOGGING_START page size not a power of two', command: Command.DEVICE_FEATURE,
    payload: feature(VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_SET, dmaLoggingStartData(3000n, [{ iova: 0n, length: 0x1000n }])), errno: EINVAL,
  },
  {
    name: 'DEVICE_FEATURE LOGGING_START overlapping ranges', command: Command.DEVICE_FEATURE,
    payload: feature(VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_SET,
      dmaLoggingStartData(4096n, [{ iova: 0x2000n, length: 0x2000n }, { iova: 0x3000n, length: 0x1000n }])), errno: EINVAL,
  },
  {
    name: 'DEVICE_FEATURE LOGGING_START range wraps past 2^64', command: Command.DEVICE_FEATURE,
    payload: feature(VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_SET, dmaLoggingStartData(4096n, [{ iova: TOP_PAGE, length: 0x2000n }])), errno: EINVAL,
  },
  {
    name: 'DEVICE_FEATURE LOGGING_START num_ranges larger than the payload', command: Command.DEVICE_FEATURE,
    payload: with32(feature(VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_SET, dmaLoggingStartData(4096n, [{ iova: 0n, length: 0x1000n }])), 8 + 8, 2), errno: EINVAL,
  },
  {
    name: 'DEVICE_FEATURE LOGGING_REPORT page size not a power of two', command: Command.DEVICE_FEATURE,
    payload: feature(VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_GET, dmaLoggingReportData(0n, 0x1000n, 3000n), 64), errno: EINVAL,
  },
  {
    name: 'DEVICE_FEATURE LOGGING_REPORT argsz too small for the bitmap', command: Command.DEVICE_FEATURE,
    payload: feature(VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_GET, dmaLoggingReportData(0n, 0x1000n, 4096n), 8), errno: EINVAL,
  },
  {
    name: 'DEVICE_FEATURE LOGGING_REPORT range wraps past 2^64', command: Command.DEVICE_FEATURE,
    payload: feature(VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_GET, dmaLoggingReportData(TOP_PAGE, 0x2000n, 4096n), 64), errno: EINVAL,
  },
  { name: 'DEVICE_FEATURE with an fd', command: Command.DEVICE_FEATURE, payload: feature(VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET), fds: ['memfd'], errno: EINVAL },

  // ---- MIG_DATA_* ----
  { name: 'MIG_DATA_READ short payload', command: Command.MIG_DATA_READ, payload: bytes(4), errno: EINVAL },
  { name: 'MIG_DATA_READ size above max_data_xfer_size', command: Command.MIG_DATA_READ, payload: encodeMigDataReadRequest(MAX_XFER + 1), errno: EINVAL },
  { name: 'MIG_DATA_READ argsz smaller than 8 + size', command: Command.MIG_DATA_READ, payload: encodeMigDataReadRequest(64, 16), errno: EINVAL },
  { name: 'MIG_DATA_WRITE size larger than its data', command: Command.MIG_DATA_WRITE, payload: with32(encodeMigDataWriteRequest(bytes(8, 1)), 4, 16), errno: EINVAL },
  { name: 'MIG_DATA_WRITE with an fd', command: Command.MIG_DATA_WRITE, payload: encodeMigDataWriteRequest(bytes(8, 1)), fds: ['memfd'], errno: EINVAL },
];

t.test(`${rows.length} malformed requests: exact error reply, fds closed, server still serves`, async (t) => {
  for (const row of rows) {
    await t.test(row.name, async (t) => {
      const c = await client(t);
      if (row.setup) await row.setup(c);
      const fds = (row.fds ?? []).map(makeFd);
      const before = native.fdCount();
      try {
        const r = await send(c, row.command, row.payload, { fds, ...(row.flags !== undefined ? { flags: row.flags } : {}) });
        assertErrorReply(t, r.reply, r, row.errno);
        t.equal(native.fdCount(), before, fds.length ? 'the server closed the fds it got' : 'no fd leaked');
      } finally {
        for (const fd of fds) native.close(fd);
      }
      if (row.cleanup) await row.cleanup(c);
      t.equal(fx.ctx.compatIoas.areaCount, 0, 'nothing left mapped');
      await assertServes(t, c);
    });
  }
});

// Edge inputs that are valid: the server must accept them, not trip over them.
t.test('edge inputs that succeed', async (t) => {
  const c = await client(t);
  const top = await send(c, Command.DMA_MAP, mapReq(TOP_PAGE, 0x1000n));
  assertReply(t, top.reply, top, Buffer.alloc(0), 'DMA_MAP of the last page below 2^64');
  const topUnmap = await send(c, Command.DMA_UNMAP, unmapReq(TOP_PAGE, 0x1000n));
  assertReply(t, topUnmap.reply, topUnmap, unmapReq(TOP_PAGE, 0x1000n), 'DMA_UNMAP of the last page');
  t.equal(fx.ctx.compatIoas.areaCount, 0);

  const rw = native.memfdCreate('readonly', 0x1000);
  const ro = fs.openSync(`/proc/self/fd/${rw}`, 'r');
  native.close(rw);
  const roMap = await send(c, Command.DMA_MAP, mapReq(0x100000n, 0x1000n, 0n, 1), { fds: [ro] });
  native.close(ro);
  assertReply(t, roMap.reply, roMap, Buffer.alloc(0), 'READ-only DMA_MAP of a read-only fd');
  await c.request(Command.DMA_UNMAP, unmapReq(0n, 0n, VFIO_DMA_UNMAP_FLAG_ALL));

  const nothing = await send(c, Command.DMA_UNMAP, unmapReq(0x7000_0000n, 0x1000n));
  assertReply(t, nothing.reply, nothing, unmapReq(0x7000_0000n, 0x1000n), 'DMA_UNMAP of an unmapped range (type1 v2: no-op)');

  const vga = await send(c, Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest(8, 64));
  t.equal(vga.reply.errno, 0, 'region info of an absent region');
  const max = await send(c, Command.REGION_WRITE, encodeRegionWriteRequest({ offset: 0, region: CFG, data: Buffer.alloc(0) }));
  assertReply(t, max.reply, max, encodeRegionReadRequest({ offset: 0, region: CFG, count: 0 }), 'zero-length write');

  // A DMA_READ *reply* shape sent as a command is still DMA_READ from the client.
  const odd = await send(c, Command.DMA_READ, Buffer.concat(encodeDmaReadReply({ addr: 0n, count: 4 }, Buffer.alloc(4))));
  assertErrorReply(t, odd.reply, odd, EINVAL, 'DMA_READ from the client');

  const ioFds = await send(c, Command.DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest(BAR2, MAX_XFER));
  assertReply(t, ioFds.reply, ioFds, Buffer.from([16, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]), 'argsz = max_data_xfer_size');
  await assertServes(t, c);
});
