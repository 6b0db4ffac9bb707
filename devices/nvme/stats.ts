// What the controller counts: commands by kind, doorbell writes and bytes
// moved. `NvmeController.stats()` hands out a copy.

/** Counters of one controller since it was created. */
export interface NvmeCounters {
  /** Commands fetched from any submission queue (admin and I/O). */
  commands: number;
  adminCommands: number;
  ioCommands: number;
  reads: number;
  writes: number;
  flushes: number;
  writeZeroes: number;
  dsm: number;
  compares: number;
  bytesRead: number;
  bytesWritten: number;
  /** Commands completed with a status other than success. */
  errors: number;
  /** Doorbell registers written through BAR0 (SQ tails and CQ heads). */
  mmioDoorbellWrites: number;
  /** Submissions picked up from shadow doorbells without an MMIO doorbell. */
  shadowTailReads: number;
  /** MMIO doorbells of shadowed queues whose value was not the shadow slot's (late posted writes). */
  lateMmioDoorbells: number;
  /** Interrupts signalled (MSI-X vectors or INTx assertions). */
  interrupts: number;
  /** 1 once the driver turned shadow doorbells on (Doorbell Buffer Config), kept across resets. */
  shadowDoorbells: number;
  /** 1 while shadow doorbells are in effect (a controller reset turns them off). */
  shadowDoorbellsActive: number;
}

export function newCounters(): NvmeCounters {
  return {
    commands: 0, adminCommands: 0, ioCommands: 0,
    reads: 0, writes: 0, flushes: 0, writeZeroes: 0, dsm: 0, compares: 0,
    bytesRead: 0, bytesWritten: 0, errors: 0,
    mmioDoorbellWrites: 0, shadowTailReads: 0, lateMmioDoorbells: 0, interrupts: 0, shadowDoorbells: 0, shadowDoorbellsActive: 0,
  };
}
