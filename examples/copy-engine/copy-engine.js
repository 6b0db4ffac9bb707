// @ts-check
// A copy engine: the guest writes a source IOVA, a destination IOVA and a
// length into BAR0, then rings the doorbell; the device copies the bytes
// through its DeviceDma (the IOMMU model), counts the completion and raises
// INTx. A bad address, a length over the limit or bus mastering off set the
// ERROR bit instead. The guest acknowledges by writing 1s to STATUS (which
// also lowers INTx).
import { defineDevice, PciDevice } from 'vfio-user-ts/device';

/** BAR0 register offsets (all 32-bit; SRC and DST are 64-bit as two halves). */
export const Reg = {
  SRC_LO: 0x00, SRC_HI: 0x04, DST_LO: 0x08, DST_HI: 0x0c,
  LEN: 0x10,
  /** Write anything: start the copy. */
  DOORBELL: 0x14,
  /** BUSY | DONE | ERROR; DONE and ERROR are write-1-to-clear. */
  STATUS: 0x18,
  /** Copies completed since reset. */
  COMPLETIONS: 0x1c,
  /** Copies that ended with ERROR since reset. */
  ERRORS: 0x20,
};

/** STATUS bits. */
export const Status = { BUSY: 1, DONE: 2, ERROR: 4 };

export default defineDevice({
  kind: 'copy-engine',
  description: 'DMA copy engine (1234:c0de): SRC/DST/LEN registers in BAR0, a doorbell, INTx on completion',
  options: {
    maxLength: {
      type: 'size', help: 'the longest copy the device accepts', unit: 'bytes', min: 1, max: 64 * 2 ** 20, default: 2 ** 20,
    },
  },
  create(options, context) {
    const regs = new Uint32Array(Reg.ERRORS / 4 + 1);
    let interrupts = 0;
    /** Bumped by reset: a copy still in flight then finishes without touching the registers. */
    let generation = 0;
    const reg = (/** @type {number} */ offset) => regs[offset / 4] ?? 0;
    const iova = (/** @type {number} */ lo) => (BigInt(reg(lo + 4)) << 32n) | BigInt(reg(lo));

    async function copy() {
      const started = generation;
      const dma = device.dma;
      const length = reg(Reg.LEN);
      try {
        if (!dma) throw new Error('no DMA: no client, or bus mastering is off');
        if (length === 0 || length > options.maxLength) throw new Error(`length ${length} (1..${options.maxLength})`);
        // Whole read before the write: overlapping ranges copy like memmove.
        await dma.write(iova(Reg.DST_LO), await dma.read(iova(Reg.SRC_LO), length));
        if (started !== generation) return;
        regs[Reg.COMPLETIONS / 4] = reg(Reg.COMPLETIONS) + 1;
        finish(Status.DONE);
      } catch (err) {
        if (started !== generation) return;
        context.log.warn(`${context.name}: copy failed: ${/** @type {Error} */ (err).message}`);
        regs[Reg.ERRORS / 4] = reg(Reg.ERRORS) + 1;
        finish(Status.ERROR);
      }
    }

    function finish(/** @type {number} */ bit) {
      regs[Reg.STATUS / 4] = (reg(Reg.STATUS) & ~Status.BUSY) | bit;
      if (device.setIntx(true) === 'intx') interrupts++;
    }

    const device = new PciDevice({
      name: context.name,
      ids: { vendor: 0x1234, device: 0xc0de, classCode: 0xff0000 },
      interruptPin: 1,
      bars: [{
        index: 0, kind: 'mem32', size: 4096,
        handlers: {
          read: (offset, size) => (size === 4 ? reg(offset) : 0),
          write(offset, data, value) {
            if (data.length !== 4 || typeof value !== 'number' || offset % 4 !== 0 || offset >= regs.byteLength) return;
            if (offset === Reg.STATUS) {
              regs[Reg.STATUS / 4] = reg(Reg.STATUS) & ~(value & (Status.DONE | Status.ERROR));
              if (!(reg(Reg.STATUS) & (Status.DONE | Status.ERROR))) device.lowerIrq();
            } else if (offset === Reg.DOORBELL) {
              if (reg(Reg.STATUS) & Status.BUSY) return; // one copy at a time
              device.lowerIrq(); // a new copy drops the last one's DONE or ERROR
              regs[Reg.STATUS / 4] = Status.BUSY;
              void copy();
            } else if (offset < Reg.DOORBELL) {
              regs[offset / 4] = value;
            }
          },
        },
      }],
      reset() { regs.fill(0); generation++; },
    }, { log: context.log });
    /** The device, and how often a completion asserted INTx while the guest had it enabled. */
    return { device, get interrupts() { return interrupts; } };
  },
});
