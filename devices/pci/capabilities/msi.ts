// MSI capability registers. The guest programs address/data, enables, picks
// how many vectors to use (multiple message enable) and may mask vectors
// one by one; the device reports pending bits for masked vectors. Delivery
// itself is the router's job: this class only tells it when something
// changed.
import type { ConfigSpace } from '../config-space.js';
import { Msi } from '../regs.js';
import type { MsiCapSpec } from '../types.js';

export function msiCapSize(spec: MsiCapSpec): number {
  const is64 = spec.address64 ?? true;
  const mask = spec.perVectorMask ?? true;
  return 0xa + (mask ? 0xa : 0) + (is64 ? 4 : 0);
}

export class MsiCap {
  readonly vectors: number;
  readonly is64: boolean;
  readonly hasMask: boolean;
  private readonly maskReg: number;
  private readonly pendingReg: number;

  constructor(
    private readonly cfg: ConfigSpace,
    readonly offset: number,
    spec: MsiCapSpec,
    onChange: () => void,
  ) {
    const log2 = Math.log2(spec.vectors);
    if (!Number.isInteger(log2) || log2 < 0 || log2 > 5) {
      throw new RangeError(`MSI vectors must be 1, 2, 4, 8, 16 or 32, got ${spec.vectors}`);
    }
    this.vectors = spec.vectors;
    this.is64 = spec.address64 ?? true;
    this.hasMask = spec.perVectorMask ?? true;
    const flags =
      (log2 << 1) | (this.is64 ? Msi.FLAGS_64BIT : 0) | (this.hasMask ? Msi.FLAGS_MASKBIT : 0);
    cfg.set16(offset + Msi.FLAGS, flags);
    cfg.writable(offset + Msi.FLAGS, 2, Msi.FLAGS_ENABLE | Msi.FLAGS_QSIZE);
    cfg.writable(offset + Msi.ADDRESS_LO, 4, 0xfffffffc);
    if (this.is64) cfg.writable(offset + Msi.ADDRESS_HI, 4, 0xffffffff);
    cfg.writable(offset + (this.is64 ? Msi.DATA_64 : Msi.DATA_32), 2, 0xffff);
    this.maskReg = offset + (this.is64 ? Msi.MASK_64 : Msi.MASK_32);
    this.pendingReg = offset + (this.is64 ? Msi.PENDING_64 : Msi.PENDING_32);
    if (this.hasMask) cfg.writable(this.maskReg, 4, this.allVectors);

    cfg.onWrite(offset + Msi.FLAGS, 2, () => {
      // A guest may not enable more vectors than the function can use.
      const f = cfg.u16(offset + Msi.FLAGS);
      if (((f & Msi.FLAGS_QSIZE) >> 4) > log2) {
        cfg.set16(offset + Msi.FLAGS, (f & ~Msi.FLAGS_QSIZE) | (log2 << 4));
      }
      onChange();
    });
    if (this.hasMask) cfg.onWrite(this.maskReg, 4, onChange);
  }

  private get allVectors(): number {
    return this.vectors === 32 ? 0xffffffff : (1 << this.vectors) - 1;
  }

  get enabled(): boolean {
    return (this.cfg.u16(this.offset + Msi.FLAGS) & Msi.FLAGS_ENABLE) !== 0;
  }

  /** Vectors the guest enabled (multiple message enable). */
  get enabledVectors(): number {
    return 1 << ((this.cfg.u16(this.offset + Msi.FLAGS) & Msi.FLAGS_QSIZE) >> 4);
  }

  get address(): bigint {
    const lo = BigInt(this.cfg.u32(this.offset + Msi.ADDRESS_LO));
    const hi = this.is64 ? BigInt(this.cfg.u32(this.offset + Msi.ADDRESS_HI)) : 0n;
    return (hi << 32n) | lo;
  }

  get data(): number {
    return this.cfg.u16(this.offset + (this.is64 ? Msi.DATA_64 : Msi.DATA_32));
  }

  isMasked(vector: number): boolean {
    return this.hasMask && ((this.cfg.u32(this.maskReg) >>> vector) & 1) === 1;
  }

  /** Mirror the pending vectors into the (RO) pending register. */
  setPendingBits(bits: number): void {
    if (this.hasMask) this.cfg.set32(this.pendingReg, bits & this.allVectors);
  }
}
