// What a device model declares. The PCI layer turns this into a config
// space, BAR regions, capabilities and interrupt plumbing.
import type { DeviceClient } from '../device.js';

export interface PciIds {
  vendor: number;
  device: number;
  subsystemVendor?: number;
  subsystem?: number;
  /** 24 bits: base class << 16 | sub-class << 8 | programming interface. */
  classCode: number;
  revision?: number;
}

export type BarKind = 'io' | 'mem32' | 'mem64';

/**
 * A value a BAR read handler may return: numbers and bigints are taken
 * little-endian and cut to the access width; a Buffer of exactly the access
 * width is used as is (return a fresh one), others are cut or zero-padded.
 */
export type BarValue = number | bigint | Buffer;

/**
 * Register handlers of a BAR. Offsets are relative to the BAR; `size` is the
 * access width (QEMU sends 1, 2, 4 or 8; raw clients may send any count).
 */
export interface BarHandlers {
  read(offset: number, size: number): BarValue | Promise<BarValue>;
  /**
   * `data` is only valid during the call. `value` is the little-endian value
   * for 1/2/4-byte writes (number) and 8-byte writes (bigint), else undefined.
   */
  write(offset: number, data: Buffer, value: number | bigint | undefined): void | Promise<void>;
}

export interface BarSpec {
  /** 0..5; a mem64 BAR also takes index + 1. */
  index: number;
  /** Bytes, a power of two (io >= 4, memory >= 16). */
  size: number;
  kind: BarKind;
  /** Memory BARs only. */
  prefetchable?: boolean;
  /** Register-style BAR. */
  handlers?: BarHandlers;
  /**
   * Memory-style BAR backed by bytes (at least `size` long). Writes land in
   * the buffer, then `onWrite` (if any) is told.
   */
  backing?: Buffer;
  onWrite?(offset: number, length: number): void;
  // Neither handlers nor backing: reads as zeros, writes are dropped (e.g. a
  // BAR that only holds the MSI-X table and PBA).
}

export type CapabilitySpec =
  | PmCapSpec
  | MsiCapSpec
  | MsixCapSpec
  | ExpressCapSpec
  | VendorCapSpec;

/** Power management: D0 and D3hot, state kept across D3hot→D0. */
export interface PmCapSpec {
  kind: 'pm';
  offset?: number;
}

export interface MsiCapSpec {
  kind: 'msi';
  /** Vectors the function can use (1, 2, 4, 8, 16 or 32). */
  vectors: number;
  /** 64-bit message address (default true). */
  address64?: boolean;
  /** Per-vector mask and pending bits (default true). */
  perVectorMask?: boolean;
  offset?: number;
}

export interface MsixCapSpec {
  kind: 'msix';
  /** Table size, 1..2048. */
  vectors: number;
  /** Where the table lives (8-byte aligned offset inside a memory BAR). */
  table: { bar: number; offset: number };
  /** Where the pending-bit array lives (8-byte aligned). */
  pba: { bar: number; offset: number };
  offset?: number;
}

export interface ExpressCapSpec {
  kind: 'express';
  /** Advertise function-level reset (default true). */
  flr?: boolean;
  /** Max payload supported, bytes (128..4096, default 128). */
  maxPayload?: number;
  /** Link speed code (1 = 2.5 GT/s ...) and width (default x1 at 2.5 GT/s). */
  link?: { speed: number; width: number };
  offset?: number;
}

export interface VendorCapSpec {
  kind: 'vendor';
  /** Bytes after the 3-byte header (ID, next, length). */
  data: Uint8Array;
  offset?: number;
}

export interface PciDeviceSpec {
  name: string;
  ids: PciIds;
  bars?: BarSpec[];
  /** Expansion ROM contents; the ROM BAR is sized to a power of two >= 2 KiB. */
  rom?: Buffer;
  /** 0 = no INTx, 1..4 = INTA..INTD. */
  interruptPin?: number;
  /** In order; laid out from 0x40 unless an offset is given. */
  capabilities?: CapabilitySpec[];
  /** Offer the ERR IRQ index, for reportError() (default true; QEMU warns when it is missing). */
  errIrq?: boolean;
  /** Offer the REQ (release request) IRQ index (default true). */
  reqIrq?: boolean;
  /** The model's reset: FLR and VFIO_USER_DEVICE_RESET (config is reset by the PCI layer). */
  reset?(): void | Promise<void>;
  /** A client connected (its DMA is available from now on). */
  attach?(client: DeviceClient): void;
  /** The client went away. */
  detach?(): void;
  /** Enter the model's own error state (virtio: DEVICE_NEEDS_RESET); without it the ERR interrupt is signalled. */
  errorState?(reason: string): void;
}

/** Which path an interrupt took (handy for logs and tests). */
export type IrqRoute =
  | 'intx' // INTx line asserted (delivered or held by masking)
  | 'msi' // MSI eventfd signalled
  | 'msix' // MSI-X eventfd signalled
  | 'pending' // masked: pending bit set, delivered on unmask
  | 'dropped'; // nothing to deliver to (disabled, no eventfd, INTx off)
