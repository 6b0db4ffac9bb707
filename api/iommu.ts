// `vfio-user-ts/iommu`: the IOMMU model (shaped like Linux iommufd) that every
// device DMA goes through, and the client of a server's control socket.

/** One IOMMU context: IOASes, the type1 compat IOAS, devices and `dispatch(op, args)`. */
export { IommuContext } from '../iommu/context.js';
/** IommuContext's constructor options. */
export type { IommuContextOptions } from '../iommu/context.js';
/** A device (RID) attached to a context, with its PASIDs. */
export { IommuDevice } from '../iommu/context.js';
/** The largest PASID (20 bits). */
export { PASID_MAX } from '../iommu/context.js';
/** An I/O address space: its areas, reserved ranges and allowed IOVAs. */
export { Ioas } from '../iommu/ioas.js';
/** One mapped area as listed by an IOAS. */
export type { AreaInfo } from '../iommu/ioas.js';
/** An IOMMU operation's failure, with the errno Linux would return. */
export { IommuError } from '../iommu/errors.js';
/** The IOMMU page size. */
export { PAGE_SIZE } from '../iommu/u64.js';
/** A device's only door to guest memory. */
export type { DeviceDma } from '../iommu/device-dma.js';
/** The error a DMA to an unmapped or forbidden address throws. */
export { DmaFault } from '../iommu/device-dma.js';
/** Why a DMA faulted. */
export type { DmaFaultReason } from '../iommu/device-dma.js';
/** Speaks a server's control socket (`serve --control PATH`): `request(op, args)`. */
export { ControlClient } from '../server/control-client.js';
/** A control-socket operation that failed, with its errno. */
export { ControlError } from '../server/control-client.js';
