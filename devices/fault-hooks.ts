// What a device asks the fault injector (faults/), when the server runs one.
// A device gets these hooks in DeviceClient.faults; without an injector the
// field is absent and the device pays one property check per question.
// Every answer that injects something has already been counted and logged.

/** The block operations a rule can name (virtio-blk request types, NVMe I/O commands). */
export type BlockOp = 'read' | 'write' | 'flush' | 'discard' | 'write-zeroes' | 'get-id' | 'other';

/** One block I/O, in the device's own block units (virtio-blk: 512-byte sectors; NVMe: LBAs). */
export interface BlockIo {
  op: BlockOp;
  /** First block. */
  lba: bigint;
  /** Blocks it covers (0 for flush and the like). */
  count: number;
}

/** The status a rule injects: virtio-blk's IOERR or UNSUPP, or an NVMe status (type and code). */
export type InjectedBlockStatus =
  | { kind: 'ioerr' }
  | { kind: 'unsupp' }
  | { kind: 'nvme'; sct: number; sc: number };

/** What happens to one interrupt: lost, or signalled `delayMs` later. */
export type InjectedIrq = { kind: 'lose' } | { kind: 'delay'; delayMs: number };

/** The device-side questions; each returns undefined when no rule fires. */
export interface DeviceFaultHooks {
  /** Asked once per block I/O before it runs: a status to complete it with instead. */
  blockStatus(io: BlockIo): InjectedBlockStatus | undefined;
  /** Asked once per interrupt about to be signalled (VFIO IRQ index and vector). */
  interrupt(index: number, vector: number): InjectedIrq | undefined;
}
