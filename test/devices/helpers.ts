// Shared test helpers: a fake FdOps that records what the PCI layer did with
// fds, and little-endian config/region accessors.
import type { VfioUserDevice } from '../../devices/device.js';
import type { FdOps } from '../../devices/pci/fd-ops.js';
import * as V from '../../devices/pci/vfio-constants.js';

export interface FakeFds {
  ops: FdOps;
  /** fds signalled, in order. */
  signals: number[];
  /** fds closed, in order. */
  closed: number[];
}

export function fakeFds(): FakeFds {
  const f: FakeFds = {
    signals: [],
    closed: [],
    ops: {
      signal: (fd) => (f.signals.push(fd), 0),
      close: (fd) => (f.closed.push(fd), 0),
    },
  };
  return f;
}

const CFG = V.VFIO_PCI_CONFIG_REGION_INDEX;

export function cfgRead(dev: VfioUserDevice, off: number, len: 1 | 2 | 4): number {
  const b = dev.regionRead(CFG, off, len) as Buffer;
  return b.readUIntLE(0, len);
}

export function cfgWrite(dev: VfioUserDevice, off: number, len: 1 | 2 | 4, value: number): void {
  const b = Buffer.alloc(len);
  b.writeUIntLE(len === 4 ? value >>> 0 : value, 0, len);
  dev.regionWrite(CFG, off, b);
}

export async function barRead(dev: VfioUserDevice, bar: number, off: number, len: 1 | 2 | 4): Promise<number> {
  const b = await dev.regionRead(bar, off, len);
  return b.readUIntLE(0, len);
}

export async function barWrite(dev: VfioUserDevice, bar: number, off: number, len: 1 | 2 | 4, value: number): Promise<void> {
  const b = Buffer.alloc(len);
  b.writeUIntLE(len === 4 ? value >>> 0 : value, 0, len);
  await dev.regionWrite(bar, off, b);
}

export const F = {
  NONE: V.VFIO_IRQ_SET_DATA_NONE,
  BOOL: V.VFIO_IRQ_SET_DATA_BOOL,
  EVENTFD: V.VFIO_IRQ_SET_DATA_EVENTFD,
  MASK: V.VFIO_IRQ_SET_ACTION_MASK,
  UNMASK: V.VFIO_IRQ_SET_ACTION_UNMASK,
  TRIGGER: V.VFIO_IRQ_SET_ACTION_TRIGGER,
} as const;

export const IDX = {
  INTX: V.VFIO_PCI_INTX_IRQ_INDEX,
  MSI: V.VFIO_PCI_MSI_IRQ_INDEX,
  MSIX: V.VFIO_PCI_MSIX_IRQ_INDEX,
  ERR: V.VFIO_PCI_ERR_IRQ_INDEX,
  REQ: V.VFIO_PCI_REQ_IRQ_INDEX,
} as const;

/** Walk the capability list: [id, offset] in link order. */
export function walkCaps(dev: VfioUserDevice): [number, number][] {
  const out: [number, number][] = [];
  let p = cfgRead(dev, 0x34, 1);
  while (p && out.length < 48) {
    out.push([cfgRead(dev, p, 1), p]);
    p = cfgRead(dev, p + 1, 1);
  }
  return out;
}

/** tap matcher for a VfioUserError with EINVAL. */
export const EINVAL = { name: 'VfioUserError', errno: 22 };
