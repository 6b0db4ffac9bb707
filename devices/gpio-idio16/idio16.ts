// ACCES PCI-IDIO-16: 16 FET outputs, 16 isolated inputs, one INTx raised
// when an input changes while the guest has the interrupt enabled. Binds to
// Linux's gpio-pci-idio-16 driver (a gpiochip of 32 lines: OUT0-15, IIN0-15).
//
// Host side: setInputs()/inputs, outputs, and an 'outputs' event
// (value, previous) whenever the guest changes an output.
import { EventEmitter } from 'node:events';
import type { Logger } from '../device.js';
import { PciDevice } from '../pci/pci-device.js';
import type { FdOps } from '../pci/fd-ops.js';
import {
  IDIO16_BAR,
  IDIO16_BAR_SIZE,
  IDIO16_DEVICE,
  IDIO16_VENDOR,
  Idio16Reg as R,
  Idio16Status as S,
} from './registers.js';

export interface Idio16Options {
  /** Initial input lines (bit n = IIN n). */
  inputs?: number;
  /** Socket-free fd operations (tests). */
  fdOps?: FdOps;
  log?: Logger;
}

export class Idio16 extends EventEmitter {
  readonly kind = 'gpio';
  readonly device: PciDevice;
  private out = 0;
  private in: number;
  private irqEnabled = false;
  private pending = false;
  private changedPorts = 0;
  private filtersActive = false;

  constructor(options: Idio16Options = {}) {
    super();
    this.in = checkLines(options.inputs ?? 0);
    this.device = new PciDevice(
      {
        name: 'gpio-idio16',
        ids: {
          vendor: IDIO16_VENDOR,
          device: IDIO16_DEVICE,
          subsystemVendor: IDIO16_VENDOR,
          subsystem: IDIO16_DEVICE,
          classCode: 0x118000, // data acquisition controller, other
        },
        bars: [
          {
            index: IDIO16_BAR,
            kind: 'io',
            size: IDIO16_BAR_SIZE,
            handlers: {
              read: (off, size) => this.readBytes(off, size),
              write: (off, data) => this.writeBytes(off, data),
            },
          },
        ],
        interruptPin: 1, // INTA
        reset: () => this.reset(),
      },
      { fdOps: options.fdOps, log: options.log },
    );
  }

  get inputs(): number {
    return this.in;
  }

  get outputs(): number {
    return this.out;
  }

  /** Whether the guest has the device interrupt enabled. */
  get interruptEnabled(): boolean {
    return this.irqEnabled;
  }

  /** Drive the 16 input lines; a change interrupts the guest if it asked. */
  setInputs(value: number): void {
    const v = checkLines(value);
    const changed = v ^ this.in;
    if (!changed) return;
    this.in = v;
    if (this.irqEnabled) {
      this.pending = true;
      if (changed & 0x00ff) this.changedPorts |= S.IN0_7_CHANGED;
      if (changed & 0xff00) this.changedPorts |= S.IN8_15_CHANGED;
      this.updateIrq();
    }
  }

  private updateIrq(): void {
    this.device.setIntx(this.pending && this.irqEnabled);
  }

  private setOutputs(v: number): void {
    const prev = this.out;
    this.out = v & 0xffff;
    if (prev === this.out) return;
    try {
      this.emit('outputs', this.out, prev);
    } catch (e) {
      this.device.log.error(`gpio-idio16: 'outputs' listener threw: ${String(e)}`);
    }
  }

  // Accesses of any width are handled a byte at a time, in address order,
  // each with its register's side effect.
  private readBytes(off: number, size: number): number | Buffer {
    if (size === 1) return this.readReg(off); // the driver's only width
    const out = Buffer.alloc(size);
    for (let i = 0; i < size; i++) out[i] = this.readReg(off + i);
    return out;
  }

  private writeBytes(off: number, data: Buffer): void {
    for (let i = 0; i < data.length; i++) this.writeReg(off + i, data[i]!);
  }

  private readReg(reg: number): number {
    switch (reg) {
      case R.OUT0_7:
        return this.out & 0xff;
      case R.IN0_7:
        return this.in & 0xff;
      case R.IRQ_CTL:
        this.irqEnabled = true;
        this.updateIrq();
        return 0;
      case R.FILTER_CTL:
        this.filtersActive = true;
        return 0;
      case R.OUT8_15:
        return this.out >> 8;
      case R.IN8_15:
        return this.in >> 8;
      case R.IRQ_STATUS:
        return this.pending ? this.changedPorts | S.PENDING : 0;
      default:
        return 0;
    }
  }

  private writeReg(reg: number, v: number): void {
    switch (reg) {
      case R.OUT0_7:
        return this.setOutputs((this.out & 0xff00) | v);
      case R.IN0_7: // clear interrupt
        this.pending = false;
        this.changedPorts = 0;
        return this.updateIrq();
      case R.IRQ_CTL: // disable interrupt
        this.irqEnabled = false;
        return this.updateIrq();
      case R.FILTER_CTL:
        this.filtersActive = false;
        return;
      case R.OUT8_15:
        return this.setOutputs((this.out & 0x00ff) | (v << 8));
      default:
        return; // IN8_15, IRQ_STATUS and the rest: writes ignored
    }
  }

  /** Whether the guest activated the input filters (no effect on values). */
  get inputFilters(): boolean {
    return this.filtersActive;
  }

  /** Power-on state: outputs off, interrupt disabled; inputs are the host's. */
  private reset(): void {
    this.irqEnabled = false;
    this.pending = false;
    this.changedPorts = 0;
    this.filtersActive = false;
    this.updateIrq();
    this.setOutputs(0);
  }
}

function checkLines(v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) {
    throw new RangeError(`GPIO lines must be a 16-bit value, got ${v}`);
  }
  return v;
}
