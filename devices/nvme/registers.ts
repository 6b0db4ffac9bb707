// The controller registers of BAR0 (Base 3.1.3) and the doorbells after
// them. Accesses of any width at any offset are laid over a little-endian
// image of the register block (the driver writes the 64-bit ASQ/ACQ as two
// dwords); what a write means (enable, reset, shutdown, masks) is the
// controller's.
import { CC, MIN_PAGE_SHIFT, MPS_MAX, NVME_VERSION, Reg } from './constants.js';

/** Reactions to register writes. */
export interface RegisterHost {
  /** CC was written (old and new value; the register already holds the new one). */
  ccWritten(old: number, value: number): void;
  /** Bits written to INTMS (set) or INTMC (clear). */
  interruptMask(set: number, clear: number): void;
  /** Doorbell `index` (SQ y tail: 2y, CQ y head: 2y+1) was written. */
  doorbell(index: number, value: number): void;
}

/** CAP.TO: ready within 7.5 s (500 ms units); we are ready at once. */
const CAP_TIMEOUT = 15;

/** The capabilities register for queues of up to `maxEntries` entries. */
export function capabilities(maxEntries: number): bigint {
  return (
    BigInt(maxEntries - 1) | // MQES (0's based)
    (1n << 16n) | // CQR: queues must be physically contiguous
    (BigInt(CAP_TIMEOUT) << 24n) | // TO
    (0n << 32n) | // DSTRD: 4-byte doorbell stride
    (1n << 37n) | // CSS: NVM command set
    (BigInt(0) << 48n) | // MPSMIN: 4 KiB
    (BigInt(MPS_MAX) << 52n) // MPSMAX
  );
}

export class Registers {
  readonly cap: bigint;
  cc = 0;
  csts = 0;
  aqa = 0;
  asq = 0;
  acq = 0;
  /** INTMS/INTMC read back the current mask. */
  intMask = 0;
  private readonly img = Buffer.alloc(Reg.SIZE);

  constructor(
    maxEntries: number,
    private readonly host: RegisterHost,
    /** Doorbell registers served (2 per queue, admin included). */
    private readonly doorbells: number,
  ) {
    this.cap = capabilities(maxEntries);
  }

  /** Power-on values (FLR, VFIO reset). */
  reset(): void {
    this.cc = this.csts = this.aqa = this.asq = this.acq = this.intMask = 0;
  }

  /** The memory page size CC.MPS selects, in bytes. */
  get pageSize(): number {
    return 1 << (MIN_PAGE_SHIFT + ((this.cc >>> CC.MPS_SHIFT) & CC.MPS_MASK));
  }

  private image(): Buffer {
    const b = this.img;
    b.fill(0);
    b.writeBigUInt64LE(this.cap, Reg.CAP);
    b.writeUInt32LE(NVME_VERSION, Reg.VS);
    b.writeUInt32LE(this.intMask >>> 0, Reg.INTMS);
    b.writeUInt32LE(this.intMask >>> 0, Reg.INTMC);
    b.writeUInt32LE(this.cc >>> 0, Reg.CC);
    b.writeUInt32LE(this.csts >>> 0, Reg.CSTS);
    b.writeUInt32LE(this.aqa >>> 0, Reg.AQA);
    b.writeBigUInt64LE(Number.isFinite(this.asq) ? BigInt(this.asq) : 0n, Reg.ASQ);
    b.writeBigUInt64LE(Number.isFinite(this.acq) ? BigInt(this.acq) : 0n, Reg.ACQ);
    return b;
  }

  read(off: number, size: number): Buffer {
    const out = Buffer.alloc(size);
    if (off < Reg.SIZE) this.image().copy(out, 0, off, Math.min(Reg.SIZE, off + size));
    return out; // reserved space and the doorbells read as zero
  }

  write(off: number, data: Buffer, value: number | bigint | undefined): void {
    if (off >= Reg.DBS) {
      // Doorbells: dword writes at dword offsets; anything else is ignored.
      const rel = off - Reg.DBS;
      if (data.length !== 4 || rel % 4 !== 0) return;
      const index = rel / 4;
      if (index < this.doorbells) this.host.doorbell(index, (value as number) >>> 0);
      return;
    }
    if (off >= Reg.SIZE) return;
    const end = Math.min(Reg.SIZE, off + data.length);
    const b = this.image();
    data.copy(b, off, 0, end - off);
    const hit = (reg: number, len: number) => off < reg + len && reg < end;
    if (hit(Reg.AQA, 4)) this.aqa = b.readUInt32LE(Reg.AQA) & 0x0fff0fff;
    // Bits 11:0 of the admin queue bases are reserved.
    if (hit(Reg.ASQ, 8)) this.asq = queueBase(b.readBigUInt64LE(Reg.ASQ));
    if (hit(Reg.ACQ, 8)) this.acq = queueBase(b.readBigUInt64LE(Reg.ACQ));
    if (hit(Reg.INTMS, 4)) this.host.interruptMask(b.readUInt32LE(Reg.INTMS), 0);
    if (hit(Reg.INTMC, 4)) this.host.interruptMask(0, b.readUInt32LE(Reg.INTMC));
    if (hit(Reg.CC, 4)) {
      const old = this.cc;
      this.cc = b.readUInt32LE(Reg.CC);
      this.host.ccWritten(old, this.cc);
    }
    // CAP, VS, CSTS and NSSR (not offered) are read-only here.
  }
}

/** An admin queue base as a number; NaN at or above 2^53 (enabling then fails). */
function queueBase(v: bigint): number {
  const base = v & ~0xfffn;
  return base < 1n << 53n ? Number(base) : NaN;
}
