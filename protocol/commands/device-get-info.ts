// VFIO_USER_DEVICE_GET_INFO (client → server): device flags and counts.
//
// Request and reply (16 bytes, struct vfio_device_info without caps):
//   off size field
//    0   4   argsz        request: max reply payload (>= 16); reply: 16
//    4   4   flags        VFIO_DEVICE_FLAGS_PCI | _RESET (request: 0)
//    8   4   num_regions  (request: 0)
//   12   4   num_irqs     (request: 0)
import { fail } from '../errno.js';
import type { NegotiatedLimits } from '../limits.js';
import { argszAtLeast, exactLength, minLength, noFds } from '../wire.js';

export const DEVICE_INFO_SIZE = 16;

export interface DeviceGetInfoRequest {
  argsz: number;
}

export interface DeviceInfo {
  flags: number;
  numRegions: number;
  numIrqs: number;
}

export function decodeDeviceGetInfoRequest(payload: Buffer, _limits: NegotiatedLimits, nfds: number): DeviceGetInfoRequest {
  exactLength(payload, DEVICE_INFO_SIZE, 'DEVICE_GET_INFO');
  noFds(nfds, 'DEVICE_GET_INFO');
  const argsz = payload.readUInt32LE(0);
  argszAtLeast(argsz, DEVICE_INFO_SIZE, 'DEVICE_GET_INFO');
  if (payload.readUInt32LE(4) !== 0 || payload.readUInt32LE(8) !== 0 || payload.readUInt32LE(12) !== 0) {
    throw fail('EINVAL', 'DEVICE_GET_INFO: flags, num_regions and num_irqs must be 0');
  }
  return { argsz };
}

export function encodeDeviceGetInfoReply(info: DeviceInfo): Buffer {
  const b = Buffer.alloc(DEVICE_INFO_SIZE);
  b.writeUInt32LE(DEVICE_INFO_SIZE, 0);
  b.writeUInt32LE(info.flags, 4);
  b.writeUInt32LE(info.numRegions, 8);
  b.writeUInt32LE(info.numIrqs, 12);
  return b;
}

/** Client side (test client). */
export function encodeDeviceGetInfoRequest(argsz = DEVICE_INFO_SIZE): Buffer {
  const b = Buffer.alloc(DEVICE_INFO_SIZE);
  b.writeUInt32LE(argsz, 0);
  return b;
}

/** Client side. */
export function decodeDeviceGetInfoReply(payload: Buffer): DeviceInfo & { argsz: number } {
  minLength(payload, DEVICE_INFO_SIZE, 'DEVICE_GET_INFO reply');
  return {
    argsz: payload.readUInt32LE(0),
    flags: payload.readUInt32LE(4),
    numRegions: payload.readUInt32LE(8),
    numIrqs: payload.readUInt32LE(12),
  };
}
