// `vfio-user-ts/device`: what a device author needs. A device module's
// default export is a DeviceDefinition; its `create` returns a model whose
// `device` is a VfioUserDevice, usually a PciDevice built from a
// PciDeviceSpec. Guest memory is reached only through DeviceDma.

/** Writes a definition with option types inferred from its schema: `export default defineDevice({...})`. */
export { defineDevice } from '../devices/definition.js';
/** What a device module exports: kind, description, options schema and `create`. */
export type { DeviceDefinition } from '../devices/definition.js';
/** What `create` receives besides its options: the device's name and logger. */
export type { DeviceContext } from '../devices/definition.js';
/** What `create` returns: `{ device }` plus the model's own host-side API. */
export type { DeviceModel } from '../devices/definition.js';
/** One option of a definition: type, bounds, default, unit, help, flag. */
export type { OptionSpec } from '../devices/definition.js';
/** The value types of options: u32, size, string, boolean. */
export type { OptionType } from '../devices/definition.js';
/** A definition's options by name. */
export type { OptionsSchema } from '../devices/definition.js';
/** The options object `create` receives for a schema. */
export type { OptionValues } from '../devices/definition.js';
/** The TypeScript type of one option's value. */
export type { OptionValue } from '../devices/definition.js';
/** Checks an object is a valid definition (as the server does when it loads a module). */
export { checkDefinition } from '../devices/definition.js';
/** Checks options against a definition's schema and applies defaults (as the server does). */
export { validateOptions } from '../devices/definition.js';
/** Thrown for a module or object that is not a valid definition. */
export { DefinitionError } from '../devices/definition.js';
/** Thrown for an option value the schema refuses. */
export { OptionError } from '../devices/definition.js';
/** A logger that drops everything. */
export { quietLogger } from '../devices/definition.js';

/** The contract between the server and a device: regions, IRQs, reset, client attach/detach. */
export type { VfioUserDevice } from '../devices/device.js';
/** What a device gets while a client is connected: its DeviceDma and a logger. */
export type { DeviceClient } from '../devices/device.js';
/** Fault injection's questions to a device (DeviceClient.faults): blockStatus per block I/O, interrupt per signal. */
export type { DeviceFaultHooks } from '../devices/fault-hooks.js';
/** One block I/O as a block device asks about it: op, first block, block count. */
export type { BlockIo } from '../devices/fault-hooks.js';
/** The block operations a fault rule can name. */
export type { BlockOp } from '../devices/fault-hooks.js';
/** A status a fault rule injects into a block I/O (virtio-blk IOERR/UNSUPP, or an NVMe status). */
export type { InjectedBlockStatus } from '../devices/fault-hooks.js';
/** What a fault rule does to an interrupt: lose it or delay it. */
export type { InjectedIrq } from '../devices/fault-hooks.js';
/** The logger interface devices are given. */
export type { Logger } from '../devices/device.js';
/** A region's size, VFIO flags and mmap-able areas (device side of REGION_INFO). */
export type { RegionDescription } from '../devices/device.js';
/** One sparse mmap-able area of a region. */
export type { MmapArea } from '../devices/device.js';
/** A range of a region that reads as plain memory (VfioUserDevice.plainReads): the server may answer reads of it natively. */
export type { PlainRead } from '../devices/device.js';
/** An IRQ index's count and VFIO flags. */
export type { IrqInfo } from '../devices/device.js';
/** A decoded SET_IRQS request as the device sees it. */
export type { IrqSetRequest } from '../devices/device.js';

/** A PCI function from a declarative spec: config space, BARs, capabilities, interrupts, reset. */
export { PciDevice } from '../devices/pci/pci-device.js';
/** PciDevice's constructor options (fd operations, logger). */
export type { PciDeviceOptions } from '../devices/pci/pci-device.js';
/** The declarative description of a PCI function. */
export type { PciDeviceSpec } from '../devices/pci/types.js';
/** Vendor, device, subsystem ids and class code. */
export type { PciIds } from '../devices/pci/types.js';
/** One BAR: index, kind, size and its handlers. */
export type { BarSpec } from '../devices/pci/types.js';
/** A BAR's read/write handlers. */
export type { BarHandlers } from '../devices/pci/types.js';
/** 'io', 'mem32' or 'mem64'. */
export type { BarKind } from '../devices/pci/types.js';
/** A value a BAR handler returns. */
export type { BarValue } from '../devices/pci/types.js';
/** Any capability of a PciDeviceSpec. */
export type { CapabilitySpec } from '../devices/pci/types.js';
/** The MSI capability. */
export type { MsiCapSpec } from '../devices/pci/types.js';
/** The MSI-X capability. */
export type { MsixCapSpec } from '../devices/pci/types.js';
/** The PCI Express capability. */
export type { ExpressCapSpec } from '../devices/pci/types.js';
/** The power-management capability. */
export type { PmCapSpec } from '../devices/pci/types.js';
/** A vendor-specific capability. */
export type { VendorCapSpec } from '../devices/pci/types.js';
/** Where an interrupt is routed (INTx, MSI or MSI-X vector). */
export type { IrqRoute } from '../devices/pci/types.js';

/** A device's only door to guest memory, through the IOMMU model. */
export type { DeviceDma } from '../iommu/device-dma.js';
/** An I/O virtual address (bigint or a safe number). */
export type { Iova } from '../iommu/device-dma.js';
/** A scatter list as (buffer, offset, length) spans, as withSpans hands it out. */
export type { SpanList } from '../iommu/device-dma.js';
/** A span list the device owns and mappedSpans fills. */
export type { SpanBuffer } from '../iommu/device-dma.js';
/** A whole mapping as one view, as mappedWindow hands it out. */
export type { MappedWindow } from '../iommu/device-dma.js';
/** The access bit for a DMA that reads guest memory (withView/withSpans/mappedView). */
export { DMA_ACCESS_READ } from '../iommu/device-dma.js';
/** The access bit for a DMA that writes guest memory. */
export { DMA_ACCESS_WRITE } from '../iommu/device-dma.js';
/** The error a DMA to an unmapped or forbidden address throws. */
export { DmaFault } from '../iommu/device-dma.js';
/** Why a DMA faulted. */
export type { DmaFaultReason } from '../iommu/device-dma.js';
/** An error carrying the errno the client should see. */
export { VfioUserError } from '../protocol/errno.js';
/** Errno values by name. */
export { Errno } from '../protocol/errno.js';
/** `fail('EINVAL', msg)`: a VfioUserError with that errno. */
export { fail } from '../protocol/errno.js';
