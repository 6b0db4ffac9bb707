// Interrupt routing: what the guest enabled in config space (MSI-X enable,
// MSI enable, Command.INTx-disable, the masks) decides which VFIO eventfd a
// device event becomes, or whether it waits as a pending bit.
//
// INTx is level-triggered with VFIO's auto-mask, as in Linux vfio-pci:
// while the line is high and the client has not masked INTx, we signal the
// trigger eventfd once and mask; the client (QEMU: on the guest's next BAR
// access after injecting) sends ACTION_UNMASK, and if the line is still high
// we signal again. Nothing is lost when the guest clears the cause late, and
// QEMU's own "unmask in case we missed an EOI" paths work.
import type { ConfigSpace } from './config-space.js';
import type { MsiCap, MsixCap } from './capabilities/index.js';
import { setInterruptStatus } from './header.js';
import type { IrqState } from './irqs.js';
import type { MsixTable } from './msix.js';
import { Cmd, Hdr } from './regs.js';
import type { IrqRoute } from './types.js';
import {
  VFIO_PCI_INTX_IRQ_INDEX as INTX,
  VFIO_PCI_MSI_IRQ_INDEX as MSI,
  VFIO_PCI_MSIX_IRQ_INDEX as MSIX,
} from './vfio-constants.js';

export interface RouterParts {
  cfg: ConfigSpace;
  irqs: IrqState;
  hasPin: boolean;
  msi?: MsiCap;
  msix?: MsixCap;
  table?: MsixTable;
}

export class InterruptRouter {
  private level = false;
  /** MSI vectors waiting for an unmask (bit per vector). */
  private msiPending = 0;

  constructor(private readonly p: RouterParts) {}

  get intxLevel(): boolean {
    return this.level;
  }

  /** INTx is the live mechanism: a pin, not disabled, MSI and MSI-X off. */
  private intxMode(): boolean {
    const { cfg, msi, msix, hasPin } = this.p;
    return (
      hasPin &&
      (cfg.u16(Hdr.COMMAND) & Cmd.INTX_DISABLE) === 0 &&
      !msi?.enabled &&
      !msix?.enabled
    );
  }

  setIntx(level: boolean): IrqRoute {
    if (!this.p.hasPin) return 'dropped';
    this.level = level;
    setInterruptStatus(this.p.cfg, level);
    this.updateIntx();
    if (!level) return 'dropped';
    return this.intxMode() ? 'intx' : 'pending';
  }

  /** Re-evaluate INTx after anything that can change its delivery. */
  updateIntx(): void {
    const { irqs } = this.p;
    if (!this.level || !this.intxMode()) return;
    if (!irqs.isEnabled(INTX) || irqs.isMasked(INTX, 0)) return;
    if (irqs.signal(INTX, 0)) irqs.setMasked(INTX, 0, true); // VFIO auto-mask
  }

  /** A message-style event: MSI-X, else MSI, else assert INTx. */
  raiseIrq(vector = 0): IrqRoute {
    if (this.p.msix?.enabled) return this.msixNotify(vector);
    if (this.p.msi?.enabled) return this.msiNotify(vector);
    return this.setIntx(true);
  }

  msiNotify(vector: number): IrqRoute {
    const { msi, irqs } = this.p;
    if (!msi?.enabled || vector < 0 || vector >= msi.enabledVectors) return 'dropped';
    if (msi.isMasked(vector) || irqs.isMasked(MSI, vector)) {
      this.msiPending |= 1 << vector;
      msi.setPendingBits(this.msiPending);
      return 'pending';
    }
    return irqs.signal(MSI, vector) ? 'msi' : 'dropped';
  }

  msixNotify(vector: number): IrqRoute {
    const { msix, table, irqs } = this.p;
    if (!msix?.enabled || !table || vector < 0 || vector >= table.vectors) return 'dropped';
    if (msix.functionMasked || table.isMasked(vector) || irqs.isMasked(MSIX, vector)) {
      table.setPending(vector, true);
      return 'pending';
    }
    return irqs.signal(MSIX, vector) ? 'msix' : 'dropped';
  }

  /** MSI config (enable, vector count, masks) changed: flush what can go. */
  msiChanged(): void {
    const { msi, irqs } = this.p;
    if (msi?.enabled && this.msiPending) {
      for (let v = 0; v < 32; v++) {
        if (!((this.msiPending >>> v) & 1)) continue;
        if (v >= msi.enabledVectors || msi.isMasked(v) || irqs.isMasked(MSI, v)) continue;
        this.msiPending &= ~(1 << v);
        irqs.signal(MSI, v);
      }
      msi.setPendingBits(this.msiPending);
    }
    this.updateIntx();
  }

  /** MSI-X enable/function mask/vector mask changed: flush what can go. */
  msixChanged(): void {
    const { msix, table, irqs } = this.p;
    if (msix?.enabled && !msix.functionMasked && table) {
      for (const v of [...table.pending()]) {
        if (table.isMasked(v) || irqs.isMasked(MSIX, v)) continue;
        table.setPending(v, false);
        irqs.signal(MSIX, v);
      }
    }
    this.updateIntx();
  }

  /** SET_IRQS unmasked a vector or changed the fds of `index`: re-evaluate. */
  reevaluate(index: number): void {
    if (index === INTX) this.updateIntx();
    else if (index === MSI) this.msiChanged();
    else if (index === MSIX) this.msixChanged();
  }

  /** Device reset: the line drops, pending messages are forgotten. */
  reset(): void {
    this.level = false;
    this.msiPending = 0;
    setInterruptStatus(this.p.cfg, false);
  }
}
