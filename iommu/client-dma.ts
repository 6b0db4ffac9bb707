// One vfio-user client's view of the IOMMU model, in the shape the session
// wants (server/dma-space.ts's DmaSpace, matched structurally so iommu/ needs
// no server or protocol import): DMA_MAP / DMA_UNMAP through type1 on the
// compat IOAS, DMA logging through dirty tracking, the device's DeviceDma.
import { closeSync } from 'node:fs';
import { fail } from '../protocol/errno.js';
import type { DmaMessenger } from './backing-message.js';
import type { IommuContext } from './context.js';
import type { DeviceDma } from './device-dma.js';
import { VFIO_DMA_UNMAP_FLAG_ALL, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP } from '../protocol/constants.js';
import { PAGE_SIZE } from './u64.js';

/** The fields of a decoded DMA_MAP this needs. flags: READ=1, WRITE=2. */
export interface DmaMapLike {
  flags: number;
  offset: bigint;
  addr: bigint;
  size: bigint;
}

/** The fields of a decoded DMA_UNMAP this needs. */
export interface DmaUnmapLike {
  flags: number;
  all?: boolean;
  addr: bigint;
  size: bigint;
  bitmap?: { pgsize: bigint; size: number };
}

export class ClientDmaSpace {
  readonly dma: DeviceDma;

  constructor(
    private readonly ctx: IommuContext,
    deviceName: string,
  ) {
    this.dma = ctx.dma(deviceName);
  }

  /** The client's negotiated max_dma_maps becomes the type1 dma_entry_limit. */
  setMaxMappings(n: number): void {
    if (!Number.isInteger(n) || n < 0) throw fail('EINVAL', `bad mapping limit ${n}`);
    this.ctx.type1.dmaEntryLimit = n;
  }

  /** DMA_MAP. Takes ownership of fd (closed once mapped, or on error). */
  map(req: DmaMapLike, fd: number | null, messenger: DmaMessenger): void {
    if (fd === null) {
      this.ctx.type1.map({ iova: req.addr, size: req.size, flags: req.flags, messenger });
      return;
    }
    if (req.offset > BigInt(Number.MAX_SAFE_INTEGER)) {
      closeSync(fd);
      throw fail('EINVAL', 'file offset too large');
    }
    this.ctx.type1.map({ iova: req.addr, size: req.size, flags: req.flags, fd, offset: Number(req.offset) });
  }

  /**
   * DMA_UNMAP: the dirty bitmap when asked, once no device access can still
   * touch the unmapped memory (reply only then): at once when nothing was in
   * flight, else a promise. Synchronous in the common case so that the
   * session need not hold the requests behind it.
   */
  unmap(req: DmaUnmapLike): Buffer | undefined | Promise<Buffer | undefined> {
    const flags = req.flags | (req.all ? VFIO_DMA_UNMAP_FLAG_ALL : 0);
    const bm = req.bitmap;
    const r = this.ctx.type1.unmap({
      iova: req.addr,
      size: req.size,
      flags: bm ? flags | VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP : flags,
      bitmapPgsize: bm ? Number(bm.pgsize) : undefined,
      bitmapSize: bm?.size,
    });
    const bitmap = r.bitmap ? Buffer.from(r.bitmap.buffer, r.bitmap.byteOffset, r.bitmap.length) : undefined;
    return r.idle ? bitmap : r.drained.then(() => bitmap);
  }

  /**
   * DEVICE_FEATURE DMA_LOGGING_START. Every mapping is tracked (at 4 KiB);
   * returns the page size used, as the kernel lets a driver pick its own.
   */
  loggingStart(pageSize: bigint, _ranges: readonly { iova: bigint; length: bigint }[]): number {
    if (pageSize <= 0n || (pageSize & (pageSize - 1n)) !== 0n) throw fail('EINVAL', 'page size is not a power of two');
    const ioas = this.ctx.compatIoas;
    if (!ioas.dirtyTracking) ioas.dirtyStart();
    return PAGE_SIZE;
  }

  loggingStop(): void {
    const ioas = this.ctx.compatIoas;
    if (ioas.dirtyTracking) ioas.dirtyStop();
  }

  /** DMA_LOGGING_REPORT: bitmap (u64 words) of [iova, iova+length), cleared as read. */
  loggingReport(iova: bigint, length: bigint, pageSize: bigint): Buffer {
    if (pageSize <= 0n || pageSize > 1n << 40n) throw fail('EINVAL', 'bad page size');
    const bm = this.ctx.compatIoas.dirtyReport(iova, length, Number(pageSize), true);
    return Buffer.from(bm.buffer, bm.byteOffset, bm.length);
  }

  /** The client went away: every mapping it made goes. */
  dropAll(): Promise<void> {
    return this.ctx.dropClientMappings();
  }
}
