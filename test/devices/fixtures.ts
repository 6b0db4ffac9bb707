// A device that uses every feature of the PCI layer, for the PCI tests.
import { PciDevice, type PciDeviceSpec } from '../../devices/pci/index.js';
import { fakeFds, type FakeFds } from './helpers.js';

export interface Fixture {
  dev: PciDevice;
  fds: FakeFds;
  /** Register file behind BAR0 (a register-style BAR). */
  regs: Map<number, number>;
  writes: { off: number; data: number[]; value: number | bigint | undefined }[];
  resets: number;
}

export function fullDevice(patch: Partial<PciDeviceSpec> = {}): Fixture {
  const fds = fakeFds();
  const fx: Fixture = { dev: undefined as unknown as PciDevice, fds, regs: new Map(), writes: [], resets: 0 };
  const spec: PciDeviceSpec = {
    name: 'fixture',
    ids: { vendor: 0x1b36, device: 0x1234, subsystemVendor: 0x1af4, subsystem: 0x1100, classCode: 0x010802, revision: 3 },
    bars: [
      {
        index: 0,
        kind: 'mem32',
        size: 0x1000,
        handlers: {
          read: (off) => fx.regs.get(off) ?? 0,
          write: (off, data, value) => {
            fx.writes.push({ off, data: [...data], value });
            if (typeof value === 'number') fx.regs.set(off, value);
          },
        },
      },
      { index: 1, kind: 'io', size: 0x20, backing: Buffer.alloc(0x20) },
      { index: 2, kind: 'mem64', size: 0x200000, prefetchable: true },
      { index: 4, kind: 'mem32', size: 0x4000 },
    ],
    rom: Buffer.from([0x55, 0xaa, 0x01, 0x02]),
    interruptPin: 1,
    capabilities: [
      { kind: 'pm' },
      { kind: 'msi', vectors: 4 },
      { kind: 'msix', vectors: 8, table: { bar: 4, offset: 0 }, pba: { bar: 4, offset: 0x2000 } },
      { kind: 'express' },
      { kind: 'vendor', data: Uint8Array.from([0xde, 0xad, 0xbe, 0xef]) },
    ],
    reset: () => void fx.resets++,
    ...patch,
  };
  fx.dev = new PciDevice(spec, { fdOps: fds.ops });
  return fx;
}
