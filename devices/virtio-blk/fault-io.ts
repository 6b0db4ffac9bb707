// A virtio-blk request as the fault injector's block question sees it
// (devices/fault-hooks.ts): its operation, first sector and sector count.
// DISCARD and WRITE_ZEROES carry their ranges in segments, not the header:
// they are asked with the header's sector and a count of 0.
import type { BlockIo, BlockOp } from '../fault-hooks.js';
import type { DescChain } from '../virtio/virtqueue.js';
import { BlkType, OUTHDR_SIZE, SECTOR } from './constants.js';

const OPS: Partial<Record<number, BlockOp>> = {
  [BlkType.IN]: 'read',
  [BlkType.OUT]: 'write',
  [BlkType.FLUSH]: 'flush',
  [BlkType.GET_ID]: 'get-id',
  [BlkType.DISCARD]: 'discard',
  [BlkType.WRITE_ZEROES]: 'write-zeroes',
};

/** The block I/O of a request with header `type` and `sector`. */
export function blkFaultIo(type: number, sector: bigint, chain: DescChain): BlockIo {
  const op = OPS[type] ?? 'other';
  const bytes = op === 'read' ? chain.writable - 1 : op === 'write' ? chain.readable - OUTHDR_SIZE : 0;
  return { op, lba: sector, count: Math.max(0, Math.floor(bytes / SECTOR)) };
}
