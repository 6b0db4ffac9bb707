// VFIO interrupt plumbing: the eventfds and mask state that the client sets
// with SET_IRQS, with the semantics of Linux vfio-pci (vfio.h and
// vfio_pci_intrs.c). This file knows nothing about config space: the router
// (interrupts.ts) decides *whether* to signal; this decides *what* fd.
//
// Rules enforced here (EINVAL otherwise):
// - flags: exactly one DATA_* and one ACTION_* bit, nothing else;
// - index < 5; [start, start+count) within the index's count;
// - count 0 only as DATA_NONE|ACTION_TRIGGER: disable the index;
// - ERR/REQ take ACTION_TRIGGER only;
// - INTx, MSI and MSI-X are exclusive: enabling one while another is
//   enabled fails (the client disables the old one first, as QEMU does);
// - loopback TRIGGER (DATA_NONE/BOOL) and MASK/UNMASK need the index enabled;
// - MASK/UNMASK with DATA_EVENTFD (irqfd-style resampling) is refused: a
//   device here cannot poll fds. QEMU then falls back to unmasking INTx
//   with DATA_NONE after each EOI, which is what we implement.
import type { IrqInfo, Logger, IrqSetRequest } from '../device.js';
import type { DeviceFaultHooks } from '../fault-hooks.js';
import { fail } from '../../protocol/errno.js';
import type { FdOps } from './fd-ops.js';
import {
  VFIO_IRQ_SET_ACTION_MASK,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_IRQ_SET_DATA_TYPE_MASK,
  VFIO_PCI_ERR_IRQ_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_PCI_REQ_IRQ_INDEX,
} from './vfio-constants.js';

export interface IrqListener {
  /** The client unmasked `vector`: deliver what is pending. */
  unmasked(index: number, vector: number): void;
  /** Trigger fds or the enabled state of `index` changed. */
  changed(index: number): void;
}

interface IndexState {
  info: IrqInfo;
  /** Enabled with ACTION_TRIGGER (INTx/MSI/MSI-X). */
  enabled: boolean;
  /** Trigger eventfd per vector, -1 = none. We own every fd >= 0 here. */
  fds: number[];
  /** Client mask (ACTION_MASK, and INTx auto-mask after a trigger). */
  masked: boolean[];
}

const EXCLUSIVE = new Set([VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX]);
const ONE_BIT = (x: number): boolean => x !== 0 && (x & (x - 1)) === 0;
const isU32 = (x: number): boolean => Number.isInteger(x) && x >= 0 && x <= 0xffffffff;

export class IrqState {
  private readonly idx: IndexState[];

  /** Fault injection's interrupt question, while a client with an injector is attached. */
  faults: DeviceFaultHooks | undefined;

  constructor(
    infos: IrqInfo[],
    private readonly fdOps: FdOps,
    private readonly log: () => Logger,
    private readonly listener: IrqListener,
  ) {
    if (infos.length !== VFIO_PCI_NUM_IRQS) throw new RangeError('need one IrqInfo per VFIO PCI IRQ index');
    this.idx = infos.map((info) => ({
      info,
      enabled: false,
      fds: new Array<number>(info.count).fill(-1),
      masked: new Array<boolean>(info.count).fill(false),
    }));
  }

  info(index: number): IrqInfo {
    if (!isU32(index) || index >= this.idx.length) throw fail('EINVAL', `no IRQ index ${index}`);
    const { count, flags } = this.idx[index]!.info;
    return { count, flags };
  }

  isEnabled(index: number): boolean {
    return this.idx[index]!.enabled;
  }
  hasFd(index: number, vector: number): boolean {
    return (this.idx[index]!.fds[vector] ?? -1) >= 0;
  }
  isMasked(index: number, vector: number): boolean {
    return this.idx[index]!.masked[vector] ?? false;
  }
  setMasked(index: number, vector: number, masked: boolean): void {
    this.idx[index]!.masked[vector] = masked;
  }

  /** Signal the trigger eventfd of a vector. False if there is none (or it failed). */
  signal(index: number, vector: number): boolean {
    const fd = this.idx[index]!.fds[vector] ?? -1;
    if (fd < 0) return false;
    if (this.faults !== undefined) {
      const f = this.faults.interrupt(index, vector);
      // Lost: as if signalled. Late: whatever fd the vector has by then (none after a detach).
      if (f?.kind === 'lose') return true;
      if (f?.kind === 'delay') {
        setTimeout(() => this.signalNow(index, vector), f.delayMs).unref();
        return true;
      }
    }
    return this.signalNow(index, vector);
  }

  private signalNow(index: number, vector: number): boolean {
    const fd = this.idx[index]!.fds[vector] ?? -1;
    if (fd < 0) return false;
    const r = this.fdOps.signal(fd);
    if (r < 0) {
      this.log().warn(`IRQ ${index}/${vector}: eventfd ${fd} write failed (${r})`);
      return false;
    }
    return true;
  }

  setIrqs(req: IrqSetRequest): void {
    try {
      this.validate(req);
    } catch (e) {
      // We own the fds from the moment we are called, also on failure.
      for (const fd of new Set(req.fds ?? [])) if (fd >= 0 && !this.holds(fd)) this.fdOps.close(fd);
      throw e;
    }
    this.apply(req);
  }

  /** The client went away: close every fd, forget enables and masks. */
  closeAll(): void {
    for (let i = 0; i < this.idx.length; i++) this.disable(i, false);
  }

  private validate(req: IrqSetRequest): void {
    const { flags, index, start, count } = req;
    const data = flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
    const action = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
    if (!isU32(flags) || flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK)) {
      throw fail('EINVAL', `SET_IRQS: unknown flags 0x${flags.toString(16)}`);
    }
    if (!ONE_BIT(data) || !ONE_BIT(action)) {
      throw fail('EINVAL', 'SET_IRQS: need exactly one DATA_* and one ACTION_* flag');
    }
    if (!isU32(index) || index >= this.idx.length) throw fail('EINVAL', `SET_IRQS: no IRQ index ${index}`);
    if (!isU32(start) || !isU32(count)) throw fail('EINVAL', 'SET_IRQS: bad start/count');
    const st = this.idx[index]!;
    const max = st.info.count;
    if (start + count > max || (count > 0 && start >= max)) {
      throw fail('EINVAL', `SET_IRQS: [${start}, +${count}) outside index ${index} (count ${max})`);
    }
    if (count === 0 && !(action === VFIO_IRQ_SET_ACTION_TRIGGER && data === VFIO_IRQ_SET_DATA_NONE)) {
      throw fail('EINVAL', 'SET_IRQS: count 0 is only valid as DATA_NONE|ACTION_TRIGGER');
    }
    const fds = req.fds ?? [];
    if (data !== VFIO_IRQ_SET_DATA_EVENTFD && fds.some((fd) => fd >= 0)) {
      throw fail('EINVAL', 'SET_IRQS: fds sent without DATA_EVENTFD');
    }
    if (data === VFIO_IRQ_SET_DATA_BOOL && (!req.bools || req.bools.length < count)) {
      throw fail('EINVAL', 'SET_IRQS: DATA_BOOL needs one byte per IRQ');
    }
    if (data === VFIO_IRQ_SET_DATA_EVENTFD) {
      // No fds at all means "unassign the range" (QEMU sends -1 runs without fds).
      if (fds.length !== 0 && fds.length !== count) {
        throw fail('EINVAL', `SET_IRQS: ${fds.length} fds for count ${count}`);
      }
      const seen = new Set<number>();
      for (const fd of fds) {
        if (!Number.isInteger(fd) || fd < -1) throw fail('EINVAL', `SET_IRQS: bad fd ${fd}`);
        if (fd >= 0 && seen.has(fd)) throw fail('EINVAL', `SET_IRQS: fd ${fd} given twice`);
        seen.add(fd);
      }
    }
    if (index === VFIO_PCI_ERR_IRQ_INDEX || index === VFIO_PCI_REQ_IRQ_INDEX) {
      if (action !== VFIO_IRQ_SET_ACTION_TRIGGER) throw fail('EINVAL', 'SET_IRQS: ERR/REQ only trigger');
      return;
    }
    if (action !== VFIO_IRQ_SET_ACTION_TRIGGER) {
      if (data === VFIO_IRQ_SET_DATA_EVENTFD) {
        throw fail('EINVAL', 'SET_IRQS: mask/unmask by eventfd is not supported');
      }
      if (!st.enabled) throw fail('EINVAL', `SET_IRQS: index ${index} is not enabled`);
      return;
    }
    if (count === 0) return; // disable: always fine
    if (data === VFIO_IRQ_SET_DATA_EVENTFD) {
      const enables = index === VFIO_PCI_INTX_IRQ_INDEX ? (fds[0] ?? -1) >= 0 : true;
      if (enables && !st.enabled) {
        for (const other of EXCLUSIVE) {
          if (other !== index && this.idx[other]!.enabled) {
            throw fail('EINVAL', `SET_IRQS: index ${other} is enabled; disable it first`);
          }
        }
      }
      return;
    }
    if (!st.enabled) throw fail('EINVAL', `SET_IRQS: loopback on disabled index ${index}`);
  }

  private apply(req: IrqSetRequest): void {
    const { flags, index, start, count } = req;
    const data = flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
    const action = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
    const st = this.idx[index]!;
    const selected = (i: number): boolean =>
      data === VFIO_IRQ_SET_DATA_NONE || (data === VFIO_IRQ_SET_DATA_BOOL && req.bools![i] !== 0);

    if (action === VFIO_IRQ_SET_ACTION_TRIGGER) {
      if (count === 0) return this.disable(index, true);
      if (data !== VFIO_IRQ_SET_DATA_EVENTFD) {
        // Loopback: simulate the device firing, whatever the masks say.
        for (let i = 0; i < count; i++) if (selected(i)) this.signal(index, start + i);
        return;
      }
      const fds = req.fds ?? [];
      if (index === VFIO_PCI_INTX_IRQ_INDEX && (fds[0] ?? -1) < 0) return this.disable(index, true);
      if (!st.enabled && EXCLUSIVE.has(index)) {
        st.enabled = true;
        st.masked.fill(false);
      }
      for (let i = 0; i < count; i++) this.replaceFd(st, start + i, fds[i] ?? -1);
      this.listener.changed(index);
      return;
    }
    const mask = action === VFIO_IRQ_SET_ACTION_MASK;
    for (let i = 0; i < count; i++) {
      if (!selected(i)) continue;
      st.masked[start + i] = mask;
      if (action === VFIO_IRQ_SET_ACTION_UNMASK) this.listener.unmasked(index, start + i);
    }
  }

  private disable(index: number, notify: boolean): void {
    const st = this.idx[index]!;
    for (let v = 0; v < st.fds.length; v++) this.replaceFd(st, v, -1);
    st.enabled = false;
    st.masked.fill(false);
    if (notify) this.listener.changed(index);
  }

  private holds(fd: number): boolean {
    return this.idx.some((s) => s.fds.includes(fd));
  }

  private replaceFd(st: IndexState, vector: number, fd: number): void {
    const old = st.fds[vector]!;
    st.fds[vector] = fd;
    if (old < 0 || old === fd) return;
    if (this.holds(old)) return; // another slot still uses it
    const r = this.fdOps.close(old);
    if (r < 0) this.log().debug(`close(${old}) failed (${r})`);
  }
}
