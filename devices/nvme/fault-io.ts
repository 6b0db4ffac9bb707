// An NVMe I/O command as the fault injector's block question sees it
// (devices/fault-hooks.ts), and the completion status an injected answer
// means. Dataset Management carries its ranges in a data buffer, not in the
// command: it is asked with LBA 0 and a count of 0, like Flush.
import type { BlockIo, BlockOp, InjectedBlockStatus } from '../fault-hooks.js';
import { DNR, IoOp, S, type Status } from './constants.js';
import type { Command } from './queues.js';

const OPS: Partial<Record<number, BlockOp>> = {
  [IoOp.READ]: 'read',
  [IoOp.WRITE]: 'write',
  [IoOp.FLUSH]: 'flush',
  [IoOp.DSM]: 'discard',
  [IoOp.WRITE_ZEROES]: 'write-zeroes',
};

/** Opcodes whose CDW10-12 are SLBA and NLB. */
const RANGED: ReadonlySet<number> = new Set([IoOp.READ, IoOp.WRITE, IoOp.WRITE_ZEROES, IoOp.COMPARE]);

/** The block I/O of a decoded command: operation, first LBA, LBA count. */
export function nvmeFaultIo(cmd: Command): BlockIo {
  const ranged = RANGED.has(cmd.opcode);
  return {
    op: OPS[cmd.opcode] ?? 'other',
    lba: ranged ? (BigInt(cmd.cdw11 >>> 0) << 32n) | BigInt(cmd.cdw10 >>> 0) : 0n,
    count: ranged ? (cmd.cdw12 & 0xffff) + 1 : 0,
  };
}

/**
 * The status an injected answer completes the command with: an `nvme-status`
 * rule's own type and code, virtio-blk's IOERR as Internal Error and UNSUPP
 * as Invalid Command Opcode. Do Not Retry is set, so that one injected fault
 * is one failed I/O in the guest (the driver would otherwise retry it).
 */
export function injectedStatus(s: InjectedBlockStatus): Status {
  if (s.kind === 'nvme') return ((s.sct & 0x7) << 8) | (s.sc & 0xff) | DNR;
  return (s.kind === 'unsupp' ? S.INVALID_OPCODE : S.INTERNAL_ERROR) | DNR;
}
