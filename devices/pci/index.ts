// The PCI core: declare a device (PciDeviceSpec), get a VfioUserDevice.
export { PciDevice, type PciDeviceOptions } from './pci-device.js';
export type {
  BarHandlers,
  BarKind,
  BarSpec,
  BarValue,
  CapabilitySpec,
  ExpressCapSpec,
  IrqRoute,
  MsiCapSpec,
  MsixCapSpec,
  PciDeviceSpec,
  PciIds,
  PmCapSpec,
  VendorCapSpec,
} from './types.js';
export { type FdOps, nativeFdOps } from './fd-ops.js';
