// The MSI-X table and pending-bit array, emulated inside a BAR.
//
// Table entries reset to masked (PCI spec). QEMU, however, emulates the table
// itself and never forwards table accesses to the server (only PBA reads),
// so honouring never-written reset masks would block every vector under
// QEMU. Hence a table mask counts only once the client has written that
// entry's vector-control word: a client that forwards the table gets exact
// per-vector masking; one that keeps it to itself masks in its own copy.
import type { Overlay } from './bars.js';
import { Msix } from './regs.js';

export class MsixTable {
  readonly vectors: number;
  readonly table: Buffer;
  readonly pba: Buffer;
  /** Entries whose vector control the client wrote since reset. */
  private readonly ctrlWritten: Uint8Array;

  constructor(
    vectors: number,
    private readonly onUnmask: (vector: number) => void,
  ) {
    this.vectors = vectors;
    this.table = Buffer.alloc(vectors * Msix.ENTRY_SIZE);
    this.pba = Buffer.alloc(Math.ceil(vectors / 64) * 8);
    this.ctrlWritten = new Uint8Array(vectors);
    this.reset();
  }

  get tableSize(): number {
    return this.table.length;
  }
  get pbaSize(): number {
    return this.pba.length;
  }

  reset(): void {
    this.table.fill(0);
    for (let v = 0; v < this.vectors; v++) {
      this.table.writeUInt32LE(Msix.ENTRY_CTRL_MASKBIT, v * Msix.ENTRY_SIZE + Msix.ENTRY_VECTOR_CTRL);
    }
    this.pba.fill(0);
    this.ctrlWritten.fill(0);
  }

  private ctrl(v: number): number {
    return this.table.readUInt32LE(v * Msix.ENTRY_SIZE + Msix.ENTRY_VECTOR_CTRL);
  }

  /** The per-vector mask as the device honours it (see the file comment). */
  isMasked(v: number): boolean {
    return this.ctrlWritten[v] === 1 && (this.ctrl(v) & Msix.ENTRY_CTRL_MASKBIT) !== 0;
  }

  /** The mask bit as stored in the table. */
  tableMaskBit(v: number): boolean {
    return (this.ctrl(v) & Msix.ENTRY_CTRL_MASKBIT) !== 0;
  }

  entry(v: number): { address: bigint; data: number; masked: boolean } {
    const o = v * Msix.ENTRY_SIZE;
    return {
      address: this.table.readBigUInt64LE(o + Msix.ENTRY_LOWER_ADDR),
      data: this.table.readUInt32LE(o + Msix.ENTRY_DATA),
      masked: this.tableMaskBit(v),
    };
  }

  isPending(v: number): boolean {
    return ((this.pba[v >> 3]! >> (v & 7)) & 1) === 1;
  }

  setPending(v: number, on: boolean): void {
    const bit = 1 << (v & 7);
    this.pba[v >> 3] = on ? this.pba[v >> 3]! | bit : this.pba[v >> 3]! & ~bit;
  }

  /** Vectors with the pending bit set. */
  *pending(): Generator<number> {
    for (let i = 0; i < this.pba.length; i++) {
      if (this.pba[i] === 0) continue;
      for (let b = 0; b < 8; b++) if ((this.pba[i]! >> b) & 1) yield i * 8 + b;
    }
  }

  tableOverlay(start: number): Overlay {
    return {
      start,
      end: start + this.table.length,
      read: (off, len) => Buffer.from(this.table.subarray(off, off + len)),
      write: (off, data) => this.writeTable(off, data),
    };
  }

  /** The PBA is read-only; writes are dropped. */
  pbaOverlay(start: number): Overlay {
    return {
      start,
      end: start + this.pba.length,
      read: (off, len) => Buffer.from(this.pba.subarray(off, off + len)),
      write: () => {},
    };
  }

  private writeTable(off: number, data: Buffer): void {
    const first = Math.floor(off / Msix.ENTRY_SIZE);
    const last = Math.floor((off + data.length - 1) / Msix.ENTRY_SIZE);
    const before: boolean[] = [];
    for (let v = first; v <= last; v++) before.push(this.isMasked(v));
    data.copy(this.table, off);
    for (let v = first; v <= last; v++) {
      const ctrl = v * Msix.ENTRY_SIZE + Msix.ENTRY_VECTOR_CTRL;
      if (off < ctrl + 4 && ctrl < off + data.length) this.ctrlWritten[v] = 1;
      if (before[v - first] && !this.isMasked(v)) this.onUnmask(v);
    }
  }
}
