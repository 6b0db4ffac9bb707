// Per-connection limits that VERSION negotiation settles. Every codec gets
// them, so that no count, size or fd number is trusted beyond them.
import {
  DEFAULT_MAX_DATA_XFER_SIZE,
  DEFAULT_MAX_MSG_FDS,
  DEFAULT_PGSIZE,
  MAX_DMA_MAPS_LIMIT,
  MAX_MSG_FDS_LIMIT,
} from './constants.js';

export interface NegotiatedLimits {
  /** fds we accept with one message (the max_msg_fds we advertised). */
  maxMsgFds: number;
  /**
   * Largest data count we accept in REGION_READ/WRITE and MIG_DATA_* (the
   * max_data_xfer_size we advertised; QEMU also caps its own receive side,
   * i.e. our DMA_READ/WRITE, with it).
   */
  maxDataXferSize: number;
  /** Page sizes for DMA_MAP/UNMAP, OR'ed (we advertise 4096). */
  pgsizes: number;
  /** DMA mappings that may exist at once (the IOMMU model enforces it). */
  maxDmaMaps: number;
  /** REGION_WRITE_MULTI was negotiated. */
  writeMultiple: boolean;
  /** fds the client accepts with one message from us (1 unless it said). */
  peerMaxMsgFds: number;
  /** Largest data count we may put in a DMA_READ/WRITE request. */
  peerMaxDataXferSize: number;
}

/**
 * What applies before VERSION, or after a VERSION without capabilities: our
 * own receive limits, and the spec defaults for what the client accepts.
 */
export const DEFAULT_LIMITS: Readonly<NegotiatedLimits> = Object.freeze({
  maxMsgFds: MAX_MSG_FDS_LIMIT,
  maxDataXferSize: DEFAULT_MAX_DATA_XFER_SIZE,
  pgsizes: DEFAULT_PGSIZE,
  maxDmaMaps: MAX_DMA_MAPS_LIMIT,
  writeMultiple: false,
  peerMaxMsgFds: DEFAULT_MAX_MSG_FDS,
  peerMaxDataXferSize: DEFAULT_MAX_DATA_XFER_SIZE,
});

/** Smallest page size in `pgsizes` (DMA_MAP/UNMAP alignment). */
export function minPageSize(limits: NegotiatedLimits): number {
  const p = limits.pgsizes;
  if (!Number.isSafeInteger(p) || p <= 0) return DEFAULT_PGSIZE;
  return Number(BigInt(p) & -BigInt(p));
}
