// VFIO_USER_DMA_READ / VFIO_USER_DMA_WRITE (server → client): guest memory
// access over the socket, for DMA_MAP'ed ranges that came without an fd.
//
// Two layouts; the default is 'spec', and it is what QEMU 11.1 really puts
// on the wire (checked end to end: with 'qemu' a guest with private RAM
// read every DMA_READ 4 bytes late, with 'spec' it boots and does I/O):
//
//  'spec' (default, docs/interop/vfio-user.rst)   'qemu' (a reading of QEMU's
//   0 8 addr                                       struct that proved wrong;
//   8 8 count (u64)                                kept for the unit tests)
//  16 n data                                        0 8 addr, 8 4 count,
//                                                  12 n data, 4 pad bytes
//  QEMU answers count > max_data_xfer_size with E2BIG, and drops a request
//  message larger than max_data_xfer_size + 32 (so count <= our advertised
//  max_data_xfer_size); guest memory faults come back as EFAULT, ENODEV
//  (decode error) or EPERM (access error).
import { fail } from '../errno.js';
import type { NegotiatedLimits } from '../limits.js';
import { checkRange64, minLength, noFds, readU64, writeU64 } from '../wire.js';

export type DmaRwLayout = 'qemu' | 'spec';

interface Layout { dataAt: number; countU64: boolean; tailPad: number }
const LAYOUTS: Record<DmaRwLayout, Layout> = {
  qemu: { dataAt: 12, countU64: false, tailPad: 4 },
  spec: { dataAt: 16, countU64: true, tailPad: 0 },
};
/** Minimum request payload (QEMU: sizeof(VFIOUserDMARW) - header). */
export const DMA_ACCESS_MIN = 16;

export interface DmaAccess {
  addr: bigint;
  count: number;
}

export interface DmaWriteAccess extends DmaAccess {
  /** A view into the payload. */
  data: Buffer;
}

/** addr and count, in a zeroed buffer of `size` (>= dataAt) bytes. */
function fixedPart(addr: bigint, count: number, l: Layout, size = l.dataAt): Buffer {
  const b = Buffer.alloc(size);
  writeU64(b, 0, addr);
  if (l.countU64) writeU64(b, 8, count); else b.writeUInt32LE(count, 8);
  return b;
}

function checkOutgoing(addr: bigint, count: number, limits: NegotiatedLimits, what: string): void {
  if (count > limits.peerMaxDataXferSize) {
    throw fail('E2BIG', `${what}: count ${count} > client's max_data_xfer_size ${limits.peerMaxDataXferSize}`);
  }
  checkRange64(addr, BigInt(count), what);
}

function readCount(payload: Buffer, l: Layout, what: string): number {
  if (!l.countU64) return payload.readUInt32LE(8);
  const c = readU64(payload, 8);
  if (c > 0xffffffffn) throw fail('E2BIG', `${what}: count ${c} too large`);
  return Number(c);
}

// ---- server side: we send the requests, the client replies ----

export function encodeDmaReadRequest(addr: bigint, count: number, limits: NegotiatedLimits, layout: DmaRwLayout = 'spec'): Buffer {
  checkOutgoing(addr, count, limits, 'DMA_READ');
  const l = LAYOUTS[layout];
  return fixedPart(addr, count, l, l.dataAt + l.tailPad);
}

/** The data read (a view into the reply payload). */
export function decodeDmaReadReply(payload: Buffer, req: DmaAccess, layout: DmaRwLayout = 'spec'): Buffer {
  const l = LAYOUTS[layout];
  minLength(payload, l.dataAt, 'DMA_READ reply');
  const addr = readU64(payload, 0);
  const count = readCount(payload, l, 'DMA_READ reply');
  if (addr !== req.addr || count !== req.count) {
    throw fail('EPROTO', `DMA_READ reply: [0x${addr.toString(16)}, +${count}) for a request of [0x${req.addr.toString(16)}, +${req.count})`);
  }
  minLength(payload, l.dataAt + count, 'DMA_READ reply');
  return payload.subarray(l.dataAt, l.dataAt + count);
}

/** The DMA_WRITE request as parts [fixed, data(, pad)]: `data` is not copied. */
export function encodeDmaWriteRequest(addr: bigint, data: Buffer, limits: NegotiatedLimits, layout: DmaRwLayout = 'spec'): Buffer[] {
  checkOutgoing(addr, data.length, limits, 'DMA_WRITE');
  const l = LAYOUTS[layout];
  const parts = [fixedPart(addr, data.length, l), data];
  if (l.tailPad) parts.push(Buffer.alloc(l.tailPad));
  return parts;
}

/** QEMU replies with no payload; a spec reply echoes addr and count. */
export function decodeDmaWriteReply(payload: Buffer, req: DmaAccess, layout: DmaRwLayout = 'spec'): void {
  if (payload.length === 0) return;
  const l = LAYOUTS[layout];
  minLength(payload, l.dataAt, 'DMA_WRITE reply');
  if (readU64(payload, 0) !== req.addr) throw fail('EPROTO', 'DMA_WRITE reply: address differs');
}

// ---- client side (our test client, behaving as QEMU 11.1) ----

export function decodeDmaReadRequest(payload: Buffer, limits: NegotiatedLimits, nfds: number, layout: DmaRwLayout = 'spec'): DmaAccess {
  const l = LAYOUTS[layout];
  minLength(payload, Math.max(DMA_ACCESS_MIN, l.dataAt), 'DMA_READ');
  noFds(nfds, 'DMA_READ');
  const addr = readU64(payload, 0);
  const count = readCount(payload, l, 'DMA_READ');
  if (count > limits.maxDataXferSize) throw fail('E2BIG', `DMA_READ: count ${count} > ${limits.maxDataXferSize}`);
  return { addr, count };
}

export function encodeDmaReadReply(req: DmaAccess, data: Buffer, layout: DmaRwLayout = 'spec'): Buffer[] {
  const l = LAYOUTS[layout];
  if (data.length !== req.count) throw fail('EIO', `DMA_READ: ${data.length} bytes for ${req.count}`);
  const parts = [fixedPart(req.addr, req.count, l), data];
  if (l.tailPad) parts.push(Buffer.alloc(l.tailPad));
  return parts;
}

export function decodeDmaWriteRequest(payload: Buffer, limits: NegotiatedLimits, nfds: number, layout: DmaRwLayout = 'spec'): DmaWriteAccess {
  const l = LAYOUTS[layout];
  minLength(payload, Math.max(DMA_ACCESS_MIN, l.dataAt), 'DMA_WRITE');
  noFds(nfds, 'DMA_WRITE');
  const addr = readU64(payload, 0);
  const count = readCount(payload, l, 'DMA_WRITE');
  if (count > limits.maxDataXferSize) throw fail('E2BIG', `DMA_WRITE: count ${count} > ${limits.maxDataXferSize}`);
  if (count > payload.length - l.dataAt - l.tailPad) throw fail('E2BIG', `DMA_WRITE: count ${count} > data in message`);
  return { addr, count, data: payload.subarray(l.dataAt, l.dataAt + count) };
}

export function encodeDmaWriteReply(req: DmaAccess, layout: DmaRwLayout = 'spec'): Buffer {
  return layout === 'qemu' ? Buffer.alloc(0) : fixedPart(req.addr, req.count, LAYOUTS.spec);
}
