// VFIO_USER_DEVICE_SET_IRQS (client → server): interrupt actions.
//
// Request (20 bytes + data, struct vfio_irq_set):
//   off size field
//    0   4   argsz   the request payload size (== msg_size - 16)
//    4   4   flags   exactly one of VFIO_IRQ_SET_DATA_{NONE,BOOL,EVENTFD}
//                    and one of VFIO_IRQ_SET_ACTION_{MASK,UNMASK,TRIGGER}
//    8   4   index   VFIO_PCI_*_IRQ_INDEX
//   12   4   start   first sub-index
//   16   4   count   sub-indexes; 0 (with start 0, DATA_NONE|ACTION_TRIGGER)
//                    disables the whole index
//   20   n   data    DATA_BOOL: count bytes; otherwise nothing
// fds: DATA_EVENTFD carries `count` eventfds, or none to unassign
// [start, start+count) (QEMU sends a run of -1 entries that way, in chunks
// of at most max_msg_fds). Other data types carry no fds.
// `start + count` is only checked against u32 here; checkSetIrqsRange checks
// it against the device's IRQ count for the index.
// Reply: no payload.
import {
  VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
  VFIO_IRQ_SET_DATA_TYPE_MASK, VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_NUM_IRQS, VFIO_PCI_REQ_IRQ_INDEX,
} from '../constants.js';
import { fail } from '../errno.js';
import type { NegotiatedLimits } from '../limits.js';
import { exactLength, minLength } from '../wire.js';

export const SET_IRQS_SIZE = 20;

export interface SetIrqsRequest {
  argsz: number;
  flags: number;
  /** VFIO_IRQ_SET_DATA_{NONE,BOOL,EVENTFD}. */
  dataType: number;
  /** VFIO_IRQ_SET_ACTION_{MASK,UNMASK,TRIGGER}. */
  action: number;
  index: number;
  start: number;
  count: number;
  /** DATA_BOOL: one byte per sub-index (a view into the payload). */
  bools?: Buffer;
  /**
   * DATA_EVENTFD: how many of the message's fds belong to [start, start+count)
   * in order: `count`, or 0 meaning "unassign them all" (treat each as -1).
   */
  fdCount: number;
}

export function decodeSetIrqsRequest(payload: Buffer, _limits: NegotiatedLimits, nfds: number): SetIrqsRequest {
  minLength(payload, SET_IRQS_SIZE, 'DEVICE_SET_IRQS');
  const argsz = payload.readUInt32LE(0);
  const flags = payload.readUInt32LE(4);
  const index = payload.readUInt32LE(8);
  const start = payload.readUInt32LE(12);
  const count = payload.readUInt32LE(16);
  if (argsz !== payload.length) throw fail('EINVAL', `DEVICE_SET_IRQS: argsz ${argsz} != payload ${payload.length}`);
  if (flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK)) {
    throw fail('EINVAL', `DEVICE_SET_IRQS: unknown flags 0x${flags.toString(16)}`);
  }
  const dataType = flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
  const action = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
  if (dataType !== VFIO_IRQ_SET_DATA_NONE && dataType !== VFIO_IRQ_SET_DATA_BOOL && dataType !== VFIO_IRQ_SET_DATA_EVENTFD) {
    throw fail('EINVAL', `DEVICE_SET_IRQS: data flags 0x${dataType.toString(16)} not exactly one type`);
  }
  if (action !== VFIO_IRQ_SET_ACTION_MASK && action !== VFIO_IRQ_SET_ACTION_UNMASK && action !== VFIO_IRQ_SET_ACTION_TRIGGER) {
    throw fail('EINVAL', `DEVICE_SET_IRQS: action flags 0x${action.toString(16)} not exactly one action`);
  }
  if (index >= VFIO_PCI_NUM_IRQS) throw fail('EINVAL', `DEVICE_SET_IRQS: bad index ${index}`);
  if (start + count > 0xffffffff) throw fail('EINVAL', `DEVICE_SET_IRQS: start ${start} + count ${count} overflows`);
  if ((index === VFIO_PCI_ERR_IRQ_INDEX || index === VFIO_PCI_REQ_IRQ_INDEX) && action !== VFIO_IRQ_SET_ACTION_TRIGGER) {
    throw fail('EINVAL', 'DEVICE_SET_IRQS: ERR/REQ only take ACTION_TRIGGER');
  }
  if (count === 0 && (dataType !== VFIO_IRQ_SET_DATA_NONE || action !== VFIO_IRQ_SET_ACTION_TRIGGER || start !== 0)) {
    throw fail('EINVAL', 'DEVICE_SET_IRQS: count 0 needs start 0 and DATA_NONE|ACTION_TRIGGER');
  }
  const req: SetIrqsRequest = { argsz, flags, dataType, action, index, start, count, fdCount: 0 };
  switch (dataType) {
    case VFIO_IRQ_SET_DATA_BOOL:
      exactLength(payload, SET_IRQS_SIZE + count, 'DEVICE_SET_IRQS (DATA_BOOL)');
      if (nfds !== 0) throw fail('EINVAL', `DEVICE_SET_IRQS: DATA_BOOL with ${nfds} fds`);
      req.bools = payload.subarray(SET_IRQS_SIZE, SET_IRQS_SIZE + count);
      break;
    case VFIO_IRQ_SET_DATA_EVENTFD:
      exactLength(payload, SET_IRQS_SIZE, 'DEVICE_SET_IRQS (DATA_EVENTFD)');
      if (nfds !== 0 && nfds !== count) throw fail('EINVAL', `DEVICE_SET_IRQS: ${nfds} fds for count ${count}`);
      req.fdCount = nfds;
      break;
    default:
      exactLength(payload, SET_IRQS_SIZE, 'DEVICE_SET_IRQS (DATA_NONE)');
      if (nfds !== 0) throw fail('EINVAL', `DEVICE_SET_IRQS: DATA_NONE with ${nfds} fds`);
  }
  return req;
}

/**
 * [start, start+count) must lie within the `irqCount` interrupts the device
 * has at `req.index` (its irqInfo(index).count). The decoder cannot know that
 * count, so the handler calls this before anything is sized by `count`.
 */
export function checkSetIrqsRange(req: SetIrqsRequest, irqCount: number): void {
  if (req.start + req.count > irqCount) {
    throw fail('EINVAL', `DEVICE_SET_IRQS: [${req.start}, +${req.count}) outside index ${req.index} (${irqCount} IRQs)`);
  }
}

/**
 * The per-sub-index eventfds for a DATA_EVENTFD request: the message's fds
 * in order, or -1 for each when none came (unassign). `irqCount` is the
 * device's count for the index: the range is checked against it before the
 * -1 run is built.
 */
export function setIrqsEventfds(req: SetIrqsRequest, fds: readonly number[], irqCount: number): number[] {
  checkSetIrqsRange(req, irqCount);
  return req.fdCount === 0 ? new Array<number>(req.count).fill(-1) : fds.slice(0, req.fdCount);
}

export interface SetIrqsArgs {
  flags: number;
  index: number;
  start: number;
  count: number;
  /** DATA_BOOL payload. */
  bools?: Uint8Array;
  /** Default: the payload size. */
  argsz?: number;
}

/** Client side (test client). Send the eventfds, if any, with the message. */
export function encodeSetIrqsRequest(a: SetIrqsArgs): Buffer {
  const n = a.bools?.length ?? 0;
  const b = Buffer.alloc(SET_IRQS_SIZE + n);
  b.writeUInt32LE(a.argsz ?? SET_IRQS_SIZE + n, 0);
  b.writeUInt32LE(a.flags, 4);
  b.writeUInt32LE(a.index, 8);
  b.writeUInt32LE(a.start, 12);
  b.writeUInt32LE(a.count, 16);
  if (a.bools) b.set(a.bools, SET_IRQS_SIZE);
  return b;
}
