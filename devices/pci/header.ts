// The type-0 header: identity, command/status, and the scratch registers an
// OS writes. BARs, the ROM BAR and the capability pointer are filled in by
// bars.ts and capabilities/.
import type { ConfigSpace } from './config-space.js';
import { CMD_WRITABLE, Cmd, Hdr, STS_RW1C, Sts } from './regs.js';
import type { PciIds } from './types.js';

function checkId(name: string, v: number | undefined, bits: number): number {
  const x = v ?? 0;
  if (!Number.isInteger(x) || x < 0 || x >= 2 ** bits) {
    throw new RangeError(`PCI ${name} must fit in ${bits} bits, got ${x}`);
  }
  return x;
}

export function buildHeader(
  cfg: ConfigSpace,
  ids: PciIds,
  opts: { interruptPin: number; express: boolean },
): void {
  cfg.set16(Hdr.VENDOR_ID, checkId('vendor', ids.vendor, 16));
  cfg.set16(Hdr.DEVICE_ID, checkId('device', ids.device, 16));
  cfg.set16(Hdr.SUBSYSTEM_VENDOR_ID, checkId('subsystemVendor', ids.subsystemVendor, 16));
  cfg.set16(Hdr.SUBSYSTEM_ID, checkId('subsystem', ids.subsystem, 16));
  cfg.set8(Hdr.REVISION_ID, checkId('revision', ids.revision, 8));
  const cls = checkId('classCode', ids.classCode, 24);
  cfg.set8(Hdr.CLASS_PROG, cls & 0xff);
  cfg.set16(Hdr.CLASS_DEVICE, cls >> 8);
  cfg.set8(Hdr.HEADER_TYPE, 0x00); // type 0, single function

  const pin = checkId('interruptPin', opts.interruptPin, 3);
  if (pin > 4) throw new RangeError(`interruptPin must be 0..4, got ${pin}`);
  cfg.set8(Hdr.INTERRUPT_PIN, pin);

  // INTx disable is only meaningful with a pin; hardwired 0 otherwise.
  cfg.writable(Hdr.COMMAND, 2, pin ? CMD_WRITABLE : CMD_WRITABLE & ~Cmd.INTX_DISABLE);
  cfg.rw1c(Hdr.STATUS, 2, STS_RW1C);
  cfg.writable(Hdr.CACHE_LINE_SIZE, 1, 0xff);
  // PCIe has no latency timer (reads 0); conventional PCI lets the OS set it.
  cfg.writable(Hdr.LATENCY_TIMER, 1, opts.express ? 0 : 0xff);
  cfg.writable(Hdr.INTERRUPT_LINE, 1, 0xff);
}

/** Reflect the INTx level in the status register (RO bit 3). */
export function setInterruptStatus(cfg: ConfigSpace, asserted: boolean): void {
  const s = cfg.u16(Hdr.STATUS);
  cfg.set16(Hdr.STATUS, asserted ? s | Sts.INTERRUPT : s & ~Sts.INTERRUPT);
}
