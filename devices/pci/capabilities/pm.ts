// Power management capability: D0 and D3hot only, No_Soft_Reset set (a
// D3hot→D0 transition keeps all state, as for most virtual devices), no PME.
import type { ConfigSpace } from '../config-space.js';
import { Pm } from '../regs.js';

export const PM_SIZE = Pm.SIZEOF;

export class PmCap {
  private state = 0;

  constructor(
    private readonly cfg: ConfigSpace,
    readonly offset: number,
  ) {
    cfg.set16(offset + Pm.PMC, Pm.PMC_VERSION_1_2);
    cfg.set16(offset + Pm.CTRL, Pm.CTRL_NO_SOFT_RESET);
    cfg.writable(offset + Pm.CTRL, 2, Pm.CTRL_STATE_MASK);
    cfg.onWrite(offset + Pm.CTRL, 1, () => this.onCtrl());
  }

  /** 0 = D0, 3 = D3hot. */
  get powerState(): number {
    return this.cfg.u16(this.offset + Pm.CTRL) & Pm.CTRL_STATE_MASK;
  }

  // D1/D2 are not supported: such a write completes but changes nothing.
  private onCtrl(): void {
    const s = this.powerState;
    if (s === 1 || s === 2) {
      const v = this.cfg.u16(this.offset + Pm.CTRL);
      this.cfg.set16(this.offset + Pm.CTRL, (v & ~Pm.CTRL_STATE_MASK) | this.state);
    } else {
      this.state = s;
    }
  }

  reset(): void {
    this.state = 0;
  }
}
