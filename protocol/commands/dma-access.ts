// VFIO_USER_DMA_READ / VFIO_USER_DMA_WRITE (server → client): guest memory
// access over the socket, for DMA_MAP'ed ranges that came without an fd.
// The layout of docs/interop/vfio-user.rst, which is what QEMU 11.1 puts on
// the wire (a guest with private RAM boots and does I/O with it):
//
//   0 8 addr
//   8 8 count (u64)
//  16 n data
//
//  QEMU answers count > max_data_xfer_size with E2BIG, and drops a request
//  message larger than max_data_xfer_size + 32 (so count <= our advertised
//  max_data_xfer_size); guest memory faults come back as EFAULT, ENODEV
//  (decode error) or EPERM (access error).
import { fail } from '../errno.js';
import type { NegotiatedLimits } from '../limits.js';
import { checkRange64, minLength, noFds, readU64, writeU64 } from '../wire.js';

/** Where the data starts: also the minimum payload (QEMU: sizeof(VFIOUserDMARW) - header). */
export const DMA_ACCESS_MIN = 16;

export interface DmaAccess {
  addr: bigint;
  count: number;
}

export interface DmaWriteAccess extends DmaAccess {
  /** A view into the payload. */
  data: Buffer;
}

/** addr and count: the 16 bytes before the data. */
function fixedPart(addr: bigint, count: number): Buffer {
  const b = Buffer.alloc(DMA_ACCESS_MIN);
  writeU64(b, 0, addr);
  writeU64(b, 8, count);
  return b;
}

function checkOutgoing(addr: bigint, count: number, limits: NegotiatedLimits, what: string): void {
  if (count > limits.peerMaxDataXferSize) {
    throw fail('E2BIG', `${what}: count ${count} > client's max_data_xfer_size ${limits.peerMaxDataXferSize}`);
  }
  checkRange64(addr, BigInt(count), what);
}

function readCount(payload: Buffer, what: string): number {
  const c = readU64(payload, 8);
  if (c > 0xffffffffn) throw fail('E2BIG', `${what}: count ${c} too large`);
  return Number(c);
}

// ---- server side: we send the requests, the client replies ----

export function encodeDmaReadRequest(addr: bigint, count: number, limits: NegotiatedLimits): Buffer {
  checkOutgoing(addr, count, limits, 'DMA_READ');
  return fixedPart(addr, count);
}

/** The data read (a view into the reply payload). */
export function decodeDmaReadReply(payload: Buffer, req: DmaAccess): Buffer {
  minLength(payload, DMA_ACCESS_MIN, 'DMA_READ reply');
  const addr = readU64(payload, 0);
  const count = readCount(payload, 'DMA_READ reply');
  if (addr !== req.addr || count !== req.count) {
    throw fail('EPROTO', `DMA_READ reply: [0x${addr.toString(16)}, +${count}) for a request of [0x${req.addr.toString(16)}, +${req.count})`);
  }
  minLength(payload, DMA_ACCESS_MIN + count, 'DMA_READ reply');
  return payload.subarray(DMA_ACCESS_MIN, DMA_ACCESS_MIN + count);
}

/** The DMA_WRITE request as parts [fixed, data]: `data` is not copied. */
export function encodeDmaWriteRequest(addr: bigint, data: Buffer, limits: NegotiatedLimits): Buffer[] {
  checkOutgoing(addr, data.length, limits, 'DMA_WRITE');
  return [fixedPart(addr, data.length), data];
}

/** QEMU replies with no payload; a spec reply echoes addr and count. */
export function decodeDmaWriteReply(payload: Buffer, req: DmaAccess): void {
  if (payload.length === 0) return;
  minLength(payload, DMA_ACCESS_MIN, 'DMA_WRITE reply');
  if (readU64(payload, 0) !== req.addr) throw fail('EPROTO', 'DMA_WRITE reply: address differs');
}

// ---- client side (our test client, behaving as QEMU 11.1) ----

export function decodeDmaReadRequest(payload: Buffer, limits: NegotiatedLimits, nfds: number): DmaAccess {
  minLength(payload, DMA_ACCESS_MIN, 'DMA_READ');
  noFds(nfds, 'DMA_READ');
  const addr = readU64(payload, 0);
  const count = readCount(payload, 'DMA_READ');
  if (count > limits.maxDataXferSize) throw fail('E2BIG', `DMA_READ: count ${count} > ${limits.maxDataXferSize}`);
  return { addr, count };
}

export function encodeDmaReadReply(req: DmaAccess, data: Buffer): Buffer[] {
  if (data.length !== req.count) throw fail('EIO', `DMA_READ: ${data.length} bytes for ${req.count}`);
  return [fixedPart(req.addr, req.count), data];
}

export function decodeDmaWriteRequest(payload: Buffer, limits: NegotiatedLimits, nfds: number): DmaWriteAccess {
  minLength(payload, DMA_ACCESS_MIN, 'DMA_WRITE');
  noFds(nfds, 'DMA_WRITE');
  const addr = readU64(payload, 0);
  const count = readCount(payload, 'DMA_WRITE');
  if (count > limits.maxDataXferSize) throw fail('E2BIG', `DMA_WRITE: count ${count} > ${limits.maxDataXferSize}`);
  if (count > payload.length - DMA_ACCESS_MIN) throw fail('E2BIG', `DMA_WRITE: count ${count} > data in message`);
  return { addr, count, data: payload.subarray(DMA_ACCESS_MIN, DMA_ACCESS_MIN + count) };
}

export function encodeDmaWriteReply(req: DmaAccess): Buffer {
  return fixedPart(req.addr, req.count);
}
