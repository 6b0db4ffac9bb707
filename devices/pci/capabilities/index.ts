// Capability list builder: places each declared capability (from 0x40, dword
// aligned, or at its given offset), writes ID and next pointers in declared
// order, sets the header's capability pointer and Status.CAP_LIST.
import type { ConfigSpace } from '../config-space.js';
import { CapId, Hdr, PCI_CFG_SPACE_SIZE, Sts } from '../regs.js';
import type { CapabilitySpec } from '../types.js';
import { EXPRESS_CAP_SIZE, ExpressCap } from './express.js';
import { MsiCap, msiCapSize } from './msi.js';
import { MSIX_CAP_SIZE, MsixCap } from './msix.js';
import { PM_SIZE, PmCap } from './pm.js';
import { buildVendorCap, vendorCapSize } from './vendor.js';

export { ExpressCap, MsiCap, MsixCap, PmCap };

export interface PlacedCap {
  kind: CapabilitySpec['kind'];
  id: number;
  offset: number;
  size: number;
}

export interface Capabilities {
  list: PlacedCap[];
  pm?: PmCap;
  msi?: MsiCap;
  msix?: MsixCap;
  express?: ExpressCap;
}

export interface CapHooks {
  msiChanged(): void;
  msixChanged(): void;
  flr(): void;
}

const ID: Record<CapabilitySpec['kind'], number> = {
  pm: CapId.PM,
  msi: CapId.MSI,
  msix: CapId.MSIX,
  express: CapId.EXP,
  vendor: CapId.VENDOR,
};

function sizeOf(spec: CapabilitySpec): number {
  switch (spec.kind) {
    case 'pm':
      return PM_SIZE;
    case 'msi':
      return msiCapSize(spec);
    case 'msix':
      return MSIX_CAP_SIZE;
    case 'express':
      return EXPRESS_CAP_SIZE;
    case 'vendor':
      return vendorCapSize(spec.data);
  }
}

/** Offsets for each capability, checked for alignment, bounds and overlap. */
function layout(specs: CapabilitySpec[]): number[] {
  const taken: [number, number][] = [];
  const offsets: number[] = [];
  let next: number = Hdr.SIZEOF;
  for (const spec of specs) {
    const size = sizeOf(spec);
    const off = spec.offset ?? next;
    if (!Number.isInteger(off) || off % 4 || off < Hdr.SIZEOF || off + size > PCI_CFG_SPACE_SIZE) {
      throw new RangeError(`${spec.kind} capability at 0x${off.toString(16)} (+${size}) does not fit`);
    }
    for (const [s, e] of taken) {
      if (off < e && s < off + size) throw new RangeError(`${spec.kind} capability overlaps another`);
    }
    taken.push([off, off + size]);
    offsets.push(off);
    next = Math.max(next, (off + size + 3) & ~3);
  }
  return offsets;
}

export function buildCapabilities(
  cfg: ConfigSpace,
  specs: CapabilitySpec[],
  hooks: CapHooks,
): Capabilities {
  const caps: Capabilities = { list: [] };
  const offsets = layout(specs);
  const once = (kind: string, present: unknown): void => {
    if (present) throw new RangeError(`more than one ${kind} capability`);
  };
  specs.forEach((spec, i) => {
    const off = offsets[i]!;
    cfg.set8(off, ID[spec.kind]);
    cfg.set8(off + 1, offsets[i + 1] ?? 0);
    switch (spec.kind) {
      case 'pm':
        once('pm', caps.pm);
        caps.pm = new PmCap(cfg, off);
        break;
      case 'msi':
        once('msi', caps.msi);
        caps.msi = new MsiCap(cfg, off, spec, hooks.msiChanged);
        break;
      case 'msix':
        once('msix', caps.msix);
        caps.msix = new MsixCap(cfg, off, spec, hooks.msixChanged);
        break;
      case 'express':
        once('express', caps.express);
        caps.express = new ExpressCap(cfg, off, spec, hooks.flr);
        break;
      case 'vendor':
        buildVendorCap(cfg, off, spec.data);
        break;
    }
    caps.list.push({ kind: spec.kind, id: ID[spec.kind], offset: off, size: sizeOf(spec) });
  });
  if (specs.length) {
    cfg.set8(Hdr.CAPABILITY_LIST, offsets[0]!);
    cfg.set16(Hdr.STATUS, cfg.u16(Hdr.STATUS) | Sts.CAP_LIST);
  }
  return caps;
}
