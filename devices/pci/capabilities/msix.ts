// MSI-X capability registers: table size, where the table and PBA live, and
// the two control bits the guest writes (enable, function mask). The table
// and PBA themselves are emulated in ../msix.ts.
import type { ConfigSpace } from '../config-space.js';
import { Msix } from '../regs.js';
import type { MsixCapSpec } from '../types.js';

export const MSIX_CAP_SIZE = Msix.SIZEOF;

export class MsixCap {
  readonly vectors: number;

  constructor(
    private readonly cfg: ConfigSpace,
    readonly offset: number,
    readonly spec: MsixCapSpec,
    onChange: () => void,
  ) {
    if (!Number.isInteger(spec.vectors) || spec.vectors < 1 || spec.vectors > 2048) {
      throw new RangeError(`MSI-X vectors must be 1..2048, got ${spec.vectors}`);
    }
    for (const [what, loc] of [
      ['table', spec.table],
      ['PBA', spec.pba],
    ] as const) {
      if (!Number.isInteger(loc.bar) || loc.bar < 0 || loc.bar > 5) {
        throw new RangeError(`MSI-X ${what}: BAR must be 0..5`);
      }
      if (!Number.isInteger(loc.offset) || loc.offset < 0 || loc.offset % 8 || loc.offset > 0xfffffff8) {
        throw new RangeError(`MSI-X ${what}: offset must be 8-byte aligned`);
      }
    }
    this.vectors = spec.vectors;
    cfg.set16(offset + Msix.FLAGS, spec.vectors - 1);
    cfg.set32(offset + Msix.TABLE, spec.table.offset | spec.table.bar);
    cfg.set32(offset + Msix.PBA, spec.pba.offset | spec.pba.bar);
    cfg.writable(offset + Msix.FLAGS, 2, Msix.FLAGS_ENABLE | Msix.FLAGS_MASKALL);
    cfg.onWrite(offset + Msix.FLAGS, 2, onChange);
  }

  get enabled(): boolean {
    return (this.cfg.u16(this.offset + Msix.FLAGS) & Msix.FLAGS_ENABLE) !== 0;
  }

  get functionMasked(): boolean {
    return (this.cfg.u16(this.offset + Msix.FLAGS) & Msix.FLAGS_MASKALL) !== 0;
  }
}
