// The IOMMU model: one context, many IOAS, type1 compat on the compat IOAS,
// one dispatcher, backings, and DeviceDma (the devices' only door to memory).
export { IommuContext, IommuDevice, PASID_MAX, type IommuContextOptions, type MemorySource } from './context.js';
export { Ioas, type AreaInfo, type IovaRangesResult, type Slice, type UnmapResult } from './ioas.js';
export { Area } from './area.js';
export { IntervalMap, type Interval } from './interval-map.js';
export { BackingBase, MemoryBacking, type Backing, type BackingKind } from './backing.js';
export { MmapBacking, type FdMapOptions, type NativeMem } from './backing-mmap.js';
export { MessageBacking, type DmaMessenger } from './backing-message.js';
export { FileIoBacking, FileMapping, type NativeFileIo } from './backing-file.js';
export { GuestFiles, GuestFile, MappingBudget, DEFAULT_GUEST_FILE_BUDGET, type GuestFileNative, type GuestFilesOptions } from './guest-files.js';
export { DMA_ACCESS_READ, DMA_ACCESS_WRITE, DmaFault, type DeviceDma, type DmaFaultReason, type Iova } from './device-dma.js';
export { DeviceDmaPort, type DmaTarget } from './dma-port.js';
export * from './type1.js';
export { IommuDispatcher, DMA_OP_MAX, type OpResult } from './dispatcher.js';
export { IommuError } from './errors.js';
export { DIRTY_BITMAP_SIZE_MAX } from './dirty.js';
export { PAGE_SIZE, u64, u64Out, type U64Like } from './u64.js';
export type { IovaRange, ReservedRange } from './ranges.js';
export { ClientDmaSpace, type DmaMapLike, type DmaUnmapLike } from './client-dma.js';
