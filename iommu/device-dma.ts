// The device-facing door to guest memory. Devices import only this interface;
// the IOMMU model implements it (translation through the IOAS the device, or
// one of its PASIDs, is attached to). Owned by iommu/.
export type Iova = bigint | number;

export interface DeviceDma {
  /** Copy `length` bytes at `iova` out of guest memory. Rejects with DmaFault. */
  read(iova: Iova, length: number, pasid?: number): Promise<Buffer>;
  /** Copy `data` into guest memory at `iova`. Rejects with DmaFault. */
  write(iova: Iova, data: Uint8Array, pasid?: number): Promise<void>;
}
