// VFIO_USER_MIG_DATA_READ / VFIO_USER_MIG_DATA_WRITE (client → server):
// the migration data stream. QEMU 11.1 has no vfio-user migration.
//
// READ request (8 bytes):          READ reply (8 + n bytes):
//   0 4 argsz  >= 8 + size           0 4 argsz  8 + n
//   4 4 size   <= max_data_xfer      4 4 size   n (< size: stream ended)
//                                    8 n data
// WRITE request (8 + size bytes):  WRITE reply: no payload.
//   0 4 argsz  >= 8 + size (libvfio-user's check)
//   4 4 size   <= max_data_xfer
//   8 n data
// Errors are EINVAL, as libvfio-user.
import { fail } from '../errno.js';
import type { NegotiatedLimits } from '../limits.js';
import { exactLength, minLength, noFds } from '../wire.js';

export const MIG_DATA_SIZE = 8;

export interface MigDataReadRequest {
  argsz: number;
  size: number;
}

export interface MigDataWriteRequest extends MigDataReadRequest {
  /** A view into the payload. */
  data: Buffer;
}

function decodeFixed(payload: Buffer, limits: NegotiatedLimits, nfds: number, what: string): MigDataReadRequest {
  minLength(payload, MIG_DATA_SIZE, what);
  noFds(nfds, what);
  const argsz = payload.readUInt32LE(0);
  const size = payload.readUInt32LE(4);
  if (size > limits.maxDataXferSize) throw fail('EINVAL', `${what}: size ${size} > max_data_xfer_size`);
  if (argsz < MIG_DATA_SIZE + size) throw fail('EINVAL', `${what}: argsz ${argsz} < ${MIG_DATA_SIZE + size}`);
  return { argsz, size };
}

export function decodeMigDataReadRequest(payload: Buffer, limits: NegotiatedLimits, nfds: number): MigDataReadRequest {
  exactLength(payload, MIG_DATA_SIZE, 'MIG_DATA_READ');
  return decodeFixed(payload, limits, nfds, 'MIG_DATA_READ');
}

export function decodeMigDataWriteRequest(payload: Buffer, limits: NegotiatedLimits, nfds: number): MigDataWriteRequest {
  const f = decodeFixed(payload, limits, nfds, 'MIG_DATA_WRITE');
  exactLength(payload, MIG_DATA_SIZE + f.size, 'MIG_DATA_WRITE');
  return { ...f, data: payload.subarray(MIG_DATA_SIZE) };
}

/** Client side (test client). */
export function encodeMigDataReadRequest(size: number, argsz = MIG_DATA_SIZE + size): Buffer {
  const b = Buffer.alloc(MIG_DATA_SIZE);
  b.writeUInt32LE(argsz, 0);
  b.writeUInt32LE(size, 4);
  return b;
}

/** Client side. */
export function encodeMigDataWriteRequest(data: Uint8Array, argsz = MIG_DATA_SIZE + data.length): Buffer {
  const b = Buffer.alloc(MIG_DATA_SIZE + data.length);
  b.writeUInt32LE(argsz, 0);
  b.writeUInt32LE(data.length, 4);
  b.set(data, MIG_DATA_SIZE);
  return b;
}
