// What a session needs from the IOMMU model for one client: the type1 view
// (DMA_MAP/DMA_UNMAP on the client's default address space), dirty logging
// for DEVICE_FEATURE, and the DeviceDma handed to the device.
import type { DmaMapRequest } from '../protocol/commands/dma-map.js';
import type { DmaUnmapRequest } from '../protocol/commands/dma-unmap.js';
import type { DmaLoggingRange } from '../protocol/commands/device-feature.js';
import type { DeviceDma } from '../iommu/device-dma.js';
import type { DmaMessenger } from '../iommu/backing-message.js';

export interface DmaSpace {
  readonly dma: DeviceDma;
  /** The negotiated max_dma_maps: DMA_MAP beyond it fails with ENOSPC. */
  setMaxMappings(n: number): void;
  /** Takes ownership of `fd` (closes it once mapped, or on error). */
  map(req: DmaMapRequest, fd: number | null, messenger: DmaMessenger): void;
  /**
   * The dirty bitmap when the request asked for one, once no device access
   * can still touch the unmapped memory (reply only then): a promise while
   * device I/O on that memory is still in flight.
   */
  unmap(req: DmaUnmapRequest): Buffer | undefined | Promise<Buffer | undefined>;
  /** Returns the page size the log is kept at (the reply tells the client). */
  loggingStart(pageSize: bigint, ranges: readonly DmaLoggingRange[]): number;
  loggingStop(): void;
  loggingReport(iova: bigint, length: bigint, pageSize: bigint): Buffer;
  /** The client went away: every mapping it made goes. */
  dropAll(): Promise<void>;
}

/** `space` with another DeviceDma handed to the device (e.g. one that records its accesses). */
export function withDeviceDma(space: DmaSpace, dma: DeviceDma): DmaSpace {
  return {
    dma,
    setMaxMappings: (n) => space.setMaxMappings(n),
    map: (req, fd, messenger) => space.map(req, fd, messenger),
    unmap: (req) => space.unmap(req),
    loggingStart: (pageSize, ranges) => space.loggingStart(pageSize, ranges),
    loggingStop: () => space.loggingStop(),
    loggingReport: (iova, length, pageSize) => space.loggingReport(iova, length, pageSize),
    dropAll: () => space.dropAll(),
  };
}
