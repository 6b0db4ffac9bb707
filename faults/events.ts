// The event every injected fault produces (for logs, listeners and the
// session recording): which rule, what it did, where.
import type { ActionType } from './rule.js';
import type { BlockOp } from '../devices/fault-hooks.js';

/** One injected fault. */
export interface FaultEvent {
  type: 'fault';
  /** The rule's id. */
  rule: string;
  action: ActionType;
  device: string;
  /** The device's connection number (1 for its first client). */
  session: number;
  /** message: the request's command name and id. */
  command?: string;
  msgId?: number;
  /** dma: the range (hex IOVA) and DMA_ACCESS_* bits. */
  iova?: string;
  length?: number;
  access?: number;
  /** block: the I/O. */
  op?: BlockOp;
  lba?: number;
  count?: number;
  /** irq: VFIO IRQ index and vector. */
  irq?: number;
  vector?: number;
}

/** Receives every injected fault, synchronously, as it happens. */
export type FaultListener = (event: FaultEvent) => void;
