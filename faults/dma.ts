// The DMA fault point: a DeviceDma that asks the device's DMA rules before
// passing each access on. While no DMA rule is in force each call costs one
// array-length check; while one is, mappedView and mappedSpans decline (the
// device takes the general path), so every access is asked exactly once.
import {
  DMA_ACCESS_READ, DMA_ACCESS_WRITE, DmaFault, type DeviceDma, type Iova, type MappedWindow,
  type SpanBuffer, type SpanList,
} from '../iommu/device-dma.js';
import type { DeviceFaults } from './device-faults.js';

class FaultyDma implements DeviceDma {
  constructor(private readonly dma: DeviceDma, private readonly faults: DeviceFaults) {}

  /** The injected fault for one range, or null. */
  private check(iova: Iova, length: number, access: number, pasid?: number): DmaFault | null {
    if (this.faults.dma.length === 0) return null;
    const r = this.faults.dmaFault(BigInt(iova), length, access);
    return r === undefined ? null : new DmaFault('injected', iova, length, pasid, `fault rule '${r.rule.id}'`);
  }

  private checkAll(iovas: readonly Iova[], lengths: readonly number[], access: number, pasid?: number): DmaFault | null {
    if (this.faults.dma.length === 0) return null;
    for (let i = 0; i < iovas.length; i++) {
      const f = this.check(iovas[i]!, lengths[i]!, access, pasid);
      if (f) return f;
    }
    return null;
  }

  read(iova: Iova, length: number, pasid?: number): Promise<Buffer> {
    const f = this.check(iova, length, DMA_ACCESS_READ, pasid);
    return f ? Promise.reject(f) : this.dma.read(iova, length, pasid);
  }

  write(iova: Iova, data: Uint8Array, pasid?: number): Promise<void> {
    const f = this.check(iova, data.length, DMA_ACCESS_WRITE, pasid);
    return f ? Promise.reject(f) : this.dma.write(iova, data, pasid);
  }

  withView<T>(iova: Iova, length: number, access: number, fn: (segments: Uint8Array[]) => T | Promise<T>, pasid?: number): Promise<T> {
    const f = this.check(iova, length, access, pasid);
    return f ? Promise.reject(f) : this.dma.withView(iova, length, access, fn, pasid);
  }

  withViews<T>(iovas: readonly Iova[], lengths: readonly number[], access: number, fn: (segments: Uint8Array[]) => T | Promise<T>, pasid?: number): Promise<T> {
    const f = this.checkAll(iovas, lengths, access, pasid);
    return f ? Promise.reject(f) : this.dma.withViews(iovas, lengths, access, fn, pasid);
  }

  withSpans<T>(iovas: readonly Iova[], lengths: readonly number[], access: number, fn: (list: SpanList) => T | Promise<T>, pasid?: number): Promise<T> {
    const f = this.checkAll(iovas, lengths, access, pasid);
    return f ? Promise.reject(f) : this.dma.withSpans(iovas, lengths, access, fn, pasid);
  }

  mappedView(iova: Iova, length: number, access: number, pasid?: number): Uint8Array | null {
    return this.faults.dma.length === 0 ? this.dma.mappedView(iova, length, access, pasid) : null;
  }

  mappedSpans(iovas: readonly Iova[], lengths: readonly number[], skip: number, length: number, access: number, out: SpanBuffer, pasid?: number): boolean {
    return this.faults.dma.length === 0 && this.dma.mappedSpans(iovas, lengths, skip, length, access, out, pasid);
  }

  mappedWindow(iova: Iova, access: number, pasid?: number): MappedWindow | null {
    return this.faults.dma.length === 0 ? this.dma.mappedWindow(iova, access, pasid) : null;
  }
}

/** `dma` with the device's DMA fault rules in front of it. */
export function faultyDma(dma: DeviceDma, faults: DeviceFaults): DeviceDma {
  return new FaultyDma(dma, faults);
}
