// The DmaSpace of one device: vfio-user DMA_MAP/DMA_UNMAP go through the
// IOMMU model's type1 compat path (the device's context's default IOAS), and
// DEVICE_FEATURE dirty logging through that IOAS's dirty tracking.
import type { IommuContext } from '../iommu/context.js';
import type { DmaSpace } from './dma-space.js';

export function iommuSpace(ctx: IommuContext, deviceName: string): DmaSpace {
  return {
    dma: ctx.dma(deviceName),

    map(req, fd, messenger) {
      ctx.type1.map({
        iova: req.addr,
        size: req.size,
        flags: req.flags,
        ...(fd === null ? { messenger } : { fd, offset: Number(req.offset) }),
      });
    },

    async unmap(req) {
      const r = ctx.type1.unmap({
        iova: req.addr,
        size: req.size,
        flags: req.flags,
        ...(req.bitmap ? { bitmapPgsize: Number(req.bitmap.pgsize) } : {}),
      });
      await r.drained;
      if (!r.bitmap) return undefined;
      const want = req.bitmap!.size;
      const out = Buffer.alloc(want);
      out.set(r.bitmap.subarray(0, want));
      return out;
    },

    loggingStart() {
      const ioas = ctx.compatIoas;
      if (!ioas.dirtyTracking) ioas.dirtyStart();
    },

    loggingStop() {
      const ioas = ctx.compatIoas;
      if (ioas.dirtyTracking) ioas.dirtyStop();
    },

    loggingReport(iova, length, pageSize) {
      const bitmap = ctx.compatIoas.dirtyReport(iova, length, Number(pageSize), true);
      return Buffer.from(bitmap.buffer, bitmap.byteOffset, bitmap.byteLength);
    },

    dropAll() {
      return ctx.dropClientMappings();
    },
  };
}
