// Whether one occurrence at a fault point matches a rule's fields (absent
// fields match anything). Ranges are [start, end) and an access matches when
// any of its bytes (blocks) falls inside.
import type { BlockIo } from '../devices/fault-hooks.js';
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE } from '../iommu/device-dma.js';
import { Command } from '../protocol/constants.js';
import type { FaultMatch, Range } from './rule.js';

/** [start, start+length) overlaps r (a zero length: start inside r). */
function overlaps(r: Range, start: bigint, length: bigint): boolean {
  return length === 0n ? start >= r.start && start < r.end : start < r.end && start + length > r.start;
}

/** The region access a REGION_READ/WRITE payload names: offset u64, region u32, count u32. */
function regionAccess(command: number, payload: Buffer): { region: number; offset: bigint; count: number } | null {
  if ((command !== Command.REGION_READ && command !== Command.REGION_WRITE) || payload.length < 16) return null;
  return { offset: payload.readBigUInt64LE(0), region: payload.readUInt32LE(8), count: payload.readUInt32LE(12) };
}

/** A message (command and payload as received); region and offset only match region accesses. */
export function matchesMessage(m: FaultMatch, command: number, payload: Buffer): boolean {
  if (m.commands !== undefined && !m.commands.includes(command)) return false;
  if (m.region === undefined && m.offset === undefined) return true;
  const a = regionAccess(command, payload);
  if (a === null) return false;
  if (m.region !== undefined && a.region !== m.region) return false;
  return m.offset === undefined || overlaps(m.offset, a.offset, BigInt(a.count));
}

/** A DMA of `length` bytes at `iova` with DMA_ACCESS_READ and/or DMA_ACCESS_WRITE. */
export function matchesDma(m: FaultMatch, iova: bigint, length: number, access: number): boolean {
  if (m.access === 'read' && !(access & DMA_ACCESS_READ)) return false;
  if (m.access === 'write' && !(access & DMA_ACCESS_WRITE)) return false;
  return m.iova === undefined || overlaps(m.iova, iova, BigInt(length));
}

/** A block I/O. */
export function matchesBlock(m: FaultMatch, io: BlockIo): boolean {
  if (m.ops !== undefined && !m.ops.includes(io.op)) return false;
  return m.lba === undefined || overlaps(m.lba, io.lba, BigInt(io.count));
}

/** An interrupt about to be signalled. */
export function matchesIrq(m: FaultMatch, index: number, vector: number): boolean {
  return (m.irq === undefined || m.irq === index) && (m.vector === undefined || m.vector === vector);
}
