// The contract between the server (which speaks vfio-user) and a device model
// (which knows registers). The server validates message framing and sizes;
// the device validates indices and ranges against its own regions and IRQs,
// throwing VfioUserError with the errno the client should see.
import type { DeviceDma } from '../iommu/device-dma.js';
import type { DeviceFaultHooks } from './fault-hooks.js';

/** Minimal structured logger handed to devices (quiet unless enabled). */
export interface Logger {
  error(msg: string, ...args: unknown[]): void;
  warn(msg: string, ...args: unknown[]): void;
  info(msg: string, ...args: unknown[]): void;
  debug(msg: string, ...args: unknown[]): void;
}

export interface MmapArea {
  offset: number;
  size: number;
}

export interface RegionDescription {
  /** Bytes; 0 means the region does not exist. */
  size: number;
  /** VFIO_REGION_INFO_FLAG_{READ,WRITE,MMAP,CAPS} (protocol/constants). */
  flags: number;
  /** For mmap-able regions: the fd the client maps and the sparse areas. */
  mmap?: { fd: number; areas: MmapArea[] };
}

export interface IrqInfo {
  count: number;
  /** VFIO_IRQ_INFO_{EVENTFD,MASKABLE,AUTOMASKED,NORESIZE}. */
  flags: number;
}

/** A decoded VFIO_USER_DEVICE_SET_IRQS request. */
export interface IrqSetRequest {
  /** DATA_{NONE,BOOL,EVENTFD} | ACTION_{MASK,UNMASK,TRIGGER}. */
  flags: number;
  index: number;
  start: number;
  count: number;
  /** DATA_BOOL: one byte per IRQ in [start, start+count). */
  bools?: Uint8Array;
  /**
   * DATA_EVENTFD: one fd per IRQ in [start, start+count); -1 unassigns. The
   * device takes ownership of every fd >= 0 it is given (it closes them when
   * replaced, on disable and on detachClient), also when it throws.
   */
  fds?: number[];
}

/** What a device gets while a client is connected. */
export interface DeviceClient {
  /** The device's only door to guest memory (through the IOMMU model). */
  dma: DeviceDma;
  log: Logger;
  /** Fault injection's device-side questions, when the server runs an injector. */
  faults?: DeviceFaultHooks;
  /**
   * The server's polling budget (`--poll-us`; 0 turns it off), for a device
   * that polls guest memory instead of waiting for a doorbell. Absent: do not poll.
   */
  poll?: PollGate;
}

/** May a device spend a CPU polling now? Shared with the server's socket polling. */
export interface PollGate {
  /** May a window open now (polling on, no thread waiting for a CPU, misses paid back)? */
  allows(): boolean;
  /** A window of `ns` caught nothing. */
  charge(ns: number): void;
  /** A window lost the CPU to another thread: polling stops for a while. */
  contended(): void;
}

/**
 * A range of a region that reads as plain memory: a read of it has no side
 * effects and returns `bytes` as they are at that moment (PCI config space
 * without read hooks, say). `bytes` is a live view, not a copy.
 */
export interface PlainRead {
  region: number;
  offset: number;
  bytes: Uint8Array;
}

export interface VfioUserDevice {
  readonly name: string;
  /** VFIO_DEVICE_FLAGS_{PCI,RESET}, region and IRQ counts. */
  info(): { flags: number; numRegions: number; numIrqs: number };
  regionInfo(index: number): RegionDescription;
  /**
   * Read `count` bytes at `offset` of region `index`. The session has already
   * checked `count` against max_data_xfer_size; the device checks the range.
   */
  regionRead(index: number, offset: number, count: number): Buffer | Promise<Buffer>;
  /**
   * Ranges whose REGION_READs the server may answer from the bytes alone,
   * without calling regionRead (in native code). Asked once per connection;
   * at most 16 ranges. Absent or empty: every read calls regionRead.
   */
  plainReads?(): readonly PlainRead[];
  /** `data` is only valid during the call: copy what you keep. */
  regionWrite(index: number, offset: number, data: Buffer): void | Promise<void>;
  irqInfo(index: number): IrqInfo;
  setIrqs(req: IrqSetRequest): void;
  /** VFIO_USER_DEVICE_RESET. */
  reset(): void | Promise<void>;
  /**
   * Signal the REQ eventfd the client gave (VFIO_PCI_REQ_IRQ_INDEX): ask it
   * to release the device. The server calls it on shutdown. True if signalled.
   */
  requestRelease?(): boolean;
  /**
   * Fault injection: put the device in its error state (virtio: DEVICE_NEEDS_RESET;
   * otherwise the ERR interrupt). Returns what it did; 'none' when it could not.
   */
  enterErrorState?(reason: string): 'needs-reset' | 'err-irq' | 'none';
  /** A client connected (after VERSION). */
  attachClient(client: DeviceClient): void;
  /** The client went away: close IRQ fds, stop DMA, keep device state. */
  detachClient(): void;
}
