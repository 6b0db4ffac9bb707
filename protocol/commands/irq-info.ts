// VFIO_USER_DEVICE_GET_IRQ_INFO (client → server): one interrupt type.
//
// Request and reply (16 bytes, struct vfio_irq_info):
//   off size field
//    0   4   argsz   request: max reply payload (>= 16); reply: 16
//    4   4   flags   VFIO_IRQ_INFO_EVENTFD | _MASKABLE | _AUTOMASKED | _NORESIZE
//                    (request: 0)
//    8   4   index   VFIO_PCI_*_IRQ_INDEX, < VFIO_PCI_NUM_IRQS
//   12   4   count   interrupts of that type (request: 0)
import { VFIO_PCI_NUM_IRQS } from '../constants.js';
import { fail } from '../errno.js';
import type { NegotiatedLimits } from '../limits.js';
import { argszAtLeast, exactLength, minLength, noFds } from '../wire.js';

export const IRQ_INFO_SIZE = 16;

export interface IrqInfoRequest {
  argsz: number;
  index: number;
}

export interface IrqInfoReply {
  argsz: number;
  flags: number;
  index: number;
  count: number;
}

export function decodeIrqInfoRequest(payload: Buffer, _limits: NegotiatedLimits, nfds: number): IrqInfoRequest {
  exactLength(payload, IRQ_INFO_SIZE, 'DEVICE_GET_IRQ_INFO');
  noFds(nfds, 'DEVICE_GET_IRQ_INFO');
  const argsz = payload.readUInt32LE(0);
  const index = payload.readUInt32LE(8);
  argszAtLeast(argsz, IRQ_INFO_SIZE, 'DEVICE_GET_IRQ_INFO');
  if (payload.readUInt32LE(4) !== 0 || payload.readUInt32LE(12) !== 0) {
    throw fail('EINVAL', 'DEVICE_GET_IRQ_INFO: flags and count must be 0');
  }
  if (index >= VFIO_PCI_NUM_IRQS) throw fail('EINVAL', `DEVICE_GET_IRQ_INFO: bad index ${index}`);
  return { argsz, index };
}

export function encodeIrqInfoReply(index: number, info: { flags: number; count: number }): Buffer {
  const b = Buffer.alloc(IRQ_INFO_SIZE);
  b.writeUInt32LE(IRQ_INFO_SIZE, 0);
  b.writeUInt32LE(info.flags, 4);
  b.writeUInt32LE(index, 8);
  b.writeUInt32LE(info.count, 12);
  return b;
}

/** Client side (test client). */
export function encodeIrqInfoRequest(index: number, argsz = IRQ_INFO_SIZE): Buffer {
  const b = Buffer.alloc(IRQ_INFO_SIZE);
  b.writeUInt32LE(argsz, 0);
  b.writeUInt32LE(index, 8);
  return b;
}

/** Client side. */
export function decodeIrqInfoReply(payload: Buffer): IrqInfoReply {
  minLength(payload, IRQ_INFO_SIZE, 'DEVICE_GET_IRQ_INFO reply');
  return {
    argsz: payload.readUInt32LE(0),
    flags: payload.readUInt32LE(4),
    index: payload.readUInt32LE(8),
    count: payload.readUInt32LE(12),
  };
}
