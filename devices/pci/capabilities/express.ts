// PCI Express capability (version 2) for an endpoint. Most of it is
// read-only identity; the guest writes device control (including the
// function-level-reset trigger), link control and clears error status.
// QEMU rewrites the port type itself when the device sits on a root bus.
import { type ConfigSpace, written } from '../config-space.js';
import { Exp } from '../regs.js';
import type { ExpressCapSpec } from '../types.js';

export const EXPRESS_CAP_SIZE = Exp.SIZEOF_V2;

export class ExpressCap {
  readonly flr: boolean;

  constructor(
    cfg: ConfigSpace,
    readonly offset: number,
    spec: ExpressCapSpec,
    onFlr: () => void,
  ) {
    const payload = spec.maxPayload ?? 128;
    const payloadCode = Math.log2(payload / 128);
    if (!Number.isInteger(payloadCode) || payloadCode < 0 || payloadCode > 5) {
      throw new RangeError(`maxPayload must be 128..4096 (a power of two), got ${payload}`);
    }
    const { speed, width } = spec.link ?? { speed: 1, width: 1 };
    if (!Number.isInteger(speed) || speed < 1 || speed > 6 || ![1, 2, 4, 8, 12, 16, 32].includes(width)) {
      throw new RangeError(`bad PCIe link speed ${speed} / width ${width}`);
    }
    this.flr = spec.flr ?? true;
    const o = offset;
    cfg.set16(o + Exp.FLAGS, Exp.FLAGS_VERSION_2 | Exp.TYPE_ENDPOINT);
    cfg.set32(o + Exp.DEVCAP, payloadCode | (this.flr ? Exp.DEVCAP_FLR : 0));
    cfg.set16(o + Exp.DEVCTL, Exp.DEVCTL_DEFAULT);
    cfg.writable(o + Exp.DEVCTL, 2, Exp.DEVCTL_WRITABLE);
    cfg.rw1c(o + Exp.DEVSTA, 2, Exp.DEVSTA_RW1C);
    cfg.set32(o + Exp.LNKCAP, speed | (width << 4));
    cfg.writable(o + Exp.LNKCTL, 2, Exp.LNKCTL_WRITABLE);
    cfg.set16(o + Exp.LNKSTA, speed | (width << 4));
    cfg.set32(o + Exp.LNKCAP2, ((1 << speed) - 1) << 1); // supported speeds vector
    cfg.set16(o + Exp.LNKCTL2, speed); // target link speed
    cfg.writable(o + Exp.LNKCTL2, 2, Exp.LNKCTL2_WRITABLE);

    // Initiate FLR is write-only: it never sticks (not in wmask), so look at
    // what was written rather than at the register.
    cfg.onWrite(o + Exp.DEVCTL, 2, (w) => {
      const v = written(w, o + Exp.DEVCTL, 2);
      if (this.flr && v && v.value & Exp.DEVCTL_BCR_FLR) onFlr();
    });
  }
}
