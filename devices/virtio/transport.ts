// The virtio 1.x modern PCI transport (virtio 1.2, 4.1) over the declarative
// PCI core. Layout, as QEMU's virtio-pci lays it out:
//
//   BAR1  32-bit memory, MSI-X table at 0, PBA at 0x800 (more if many vectors)
//   BAR4  64-bit prefetchable memory, 16 KiB:
//           0x0000 common configuration   (VIRTIO_PCI_CAP_COMMON_CFG)
//           0x1000 ISR status             (VIRTIO_PCI_CAP_ISR_CFG)
//           0x2000 device configuration   (VIRTIO_PCI_CAP_DEVICE_CFG)
//           0x3000 notifications          (VIRTIO_PCI_CAP_NOTIFY_CFG, queue q at 4*q)
//   config space: MSI-X capability, the five virtio vendor capabilities
//   (including VIRTIO_PCI_CAP_PCI_CFG, the window into BAR4 through config
//   space), INTA for the INTx fallback.
//
// Memory-BAR writes come from QEMU as posted (NO_REPLY) messages: a doorbell
// only kicks its queue's background drain and returns; nothing here waits on
// guest memory. Interrupts: MSI-X (per-queue and config vectors) when the
// guest enabled it, else INTx with the ISR register (read-to-clear).
import { PciDevice, type PciDeviceOptions } from '../pci/pci-device.js';
import type { BarValue } from '../pci/types.js';
import type { DeviceDma } from '../../iommu/device-dma.js';
import type { Logger, PollGate } from '../device.js';
import {
  bit,
  CapType,
  Common,
  Feature,
  Isr,
  NO_VECTOR,
  QUEUE_SIZE_MAX,
  Status,
  TRANSPORT_FEATURES,
  VIRTIO_PCI_DEVICE_BASE,
  VIRTIO_PCI_SUBSYSTEM,
  VIRTIO_PCI_VENDOR,
} from './constants.js';
import { DescChain, RingError, Virtqueue, type InPlaceRing, type VirtqueueHost } from './virtqueue.js';

export const VIRTIO_BAR = 4;
export const VIRTIO_BAR_SIZE = 0x4000;
export const MSIX_BAR = 1;
export const Layout = {
  COMMON: 0x0000,
  ISR: 0x1000,
  DEVICE: 0x2000,
  NOTIFY: 0x3000,
  REGION: 0x1000,
  NOTIFY_MULTIPLIER: 4,
} as const;

/** What a virtio device type declares; the transport does the rest. */
export interface VirtioDeviceSpec {
  /** PCI device name (logs). */
  name: string;
  /** Virtio device type (2 = block, 4 = entropy, ...). */
  deviceId: number;
  /** PCI class code (24 bits). */
  classCode: number;
  /** Largest size of each queue (a power of two). */
  queueSizes: number[];
  /** Device-type feature bits offered (the transport adds its own). */
  features: bigint;
  /** Device configuration space (the transport serves reads from it). */
  config: Buffer;
  /** The driver wrote device configuration bytes (after they were stored, if writable). */
  writeConfig?(offset: number, data: Buffer): void;
  /** Which device configuration bytes the driver may write (default none). */
  configWritable?(offset: number, length: number): boolean;
  /** Extra check at FEATURES_OK (the transport already requires VERSION_1 and a subset). */
  validateFeatures?(features: bigint): boolean;
  /** A chain is available on a queue: process it and call chain.complete(len). Must not throw. */
  handle(chain: DescChain): void;
  /** Optional: serve chains in place before they are handed out (VirtqueueHost.serveInPlace). */
  serveInPlace?(ring: InPlaceRing, dma: DeviceDma): number;
  /** DRIVER_OK with these features. */
  driverOk?(features: bigint): void;
  /** Device reset (status 0, FLR, VFIO reset): in-flight chains are already abandoned. */
  reset?(): void;
}

export interface VirtioTransportOptions extends PciDeviceOptions {
  log?: Logger;
  /** Publish each queue's completions in the order its chains were taken (deterministic mode). */
  inOrder?: boolean;
}

const silent: Logger = { error() {}, warn() {}, info() {}, debug() {} };
const MASK32 = 0xffffffffn;

/** Builds the bytes after the 3-byte header of a struct virtio_pci_cap. */
function virtioCap(cfgType: number, bar: number, offset: number, length: number, extra?: number): Uint8Array {
  const b = Buffer.alloc(extra === undefined ? 13 : 17);
  b[0] = cfgType; // cfg_type
  b[1] = bar; // bar
  b[2] = 0; // id
  // b[3..4]: padding
  b.writeUInt32LE(offset, 5);
  b.writeUInt32LE(length, 9);
  if (extra !== undefined) b.writeUInt32LE(extra, 13); // notify_off_multiplier / pci_cfg_data
  return b;
}

export class VirtioPciTransport implements VirtqueueHost {
  readonly pci: PciDevice;
  readonly queues: Virtqueue[];
  readonly spec: VirtioDeviceSpec;
  /** Every feature offered (transport + device). */
  readonly offered: bigint;
  /** Written by the driver (valid once FEATURES_OK stuck). */
  driverFeatures = 0n;
  /** Accepted at FEATURES_OK. */
  negotiated = 0n;
  status = 0;
  isr = 0;
  generation = 0;
  configVector = NO_VECTOR;
  private deviceFeatureSelect = 0;
  private driverFeatureSelect = 0;
  private queueSelect = 0;
  private readonly img = Buffer.alloc(Common.SIZE);
  private readonly msixVectors: number;
  private readonly pciCfgCap: number;
  private readonly fallbackLog: Logger;
  readonly inOrder: boolean;

  constructor(spec: VirtioDeviceSpec, options: VirtioTransportOptions = {}) {
    this.spec = spec;
    this.fallbackLog = options.log ?? silent;
    this.inOrder = options.inOrder ?? false;
    if (spec.queueSizes.length < 1 || spec.queueSizes.length > 1024) throw new RangeError('a virtio device has 1..1024 queues');
    for (const s of spec.queueSizes) {
      if (!Number.isInteger(s) || s < 1 || s > QUEUE_SIZE_MAX || (s & (s - 1)) !== 0) {
        throw new RangeError(`queue size ${s} must be a power of two in 1..${QUEUE_SIZE_MAX}`);
      }
    }
    if (spec.config.length > Layout.REGION) throw new RangeError('device configuration larger than its region');
    this.offered = TRANSPORT_FEATURES | spec.features;
    this.msixVectors = spec.queueSizes.length + 1;
    const tableSize = this.msixVectors * 16;
    const pbaOffset = Math.max(0x800, Math.ceil(tableSize / 0x800) * 0x800);
    const pbaSize = Math.ceil(this.msixVectors / 64) * 8;
    let msixBarSize = 0x1000;
    while (msixBarSize < pbaOffset + pbaSize) msixBarSize *= 2;

    const caps = [
      { kind: 'msix' as const, vectors: this.msixVectors, table: { bar: MSIX_BAR, offset: 0 }, pba: { bar: MSIX_BAR, offset: pbaOffset } },
      { kind: 'vendor' as const, data: virtioCap(CapType.COMMON, VIRTIO_BAR, Layout.COMMON, Layout.REGION) },
      { kind: 'vendor' as const, data: virtioCap(CapType.ISR, VIRTIO_BAR, Layout.ISR, Layout.REGION) },
      { kind: 'vendor' as const, data: virtioCap(CapType.DEVICE, VIRTIO_BAR, Layout.DEVICE, Layout.REGION) },
      {
        kind: 'vendor' as const,
        data: virtioCap(CapType.NOTIFY, VIRTIO_BAR, Layout.NOTIFY, Layout.REGION, Layout.NOTIFY_MULTIPLIER),
      },
      // bar/offset/length/data are the driver's to set (made writable below).
      { kind: 'vendor' as const, data: virtioCap(CapType.PCI_CFG, 0, 0, 0, 0) },
    ];
    const pci = new PciDevice(
      {
        name: spec.name,
        ids: {
          vendor: VIRTIO_PCI_VENDOR,
          device: VIRTIO_PCI_DEVICE_BASE + spec.deviceId,
          subsystemVendor: VIRTIO_PCI_VENDOR,
          subsystem: VIRTIO_PCI_SUBSYSTEM,
          classCode: spec.classCode,
          revision: 1,
        },
        bars: [
          { index: MSIX_BAR, kind: 'mem32', size: msixBarSize },
          {
            index: VIRTIO_BAR,
            kind: 'mem64',
            prefetchable: true,
            size: VIRTIO_BAR_SIZE,
            handlers: {
              read: (off, size) => this.barRead(off, size),
              write: (off, data) => this.barWrite(off, data),
            },
          },
        ],
        interruptPin: 1,
        capabilities: caps,
        reset: () => this.reset(),
        detach: () => this.detached(),
        errorState: (reason) => this.needsReset(reason),
      },
      options,
    );
    this.pci = pci;
    this.queues = spec.queueSizes.map((s, i) => new Virtqueue(i, s, this));

    // VIRTIO_PCI_CAP_PCI_CFG: bar (u8 at +4), offset (+8), length (+12) and
    // pci_cfg_data (+16) are writable; a write of the data window writes BAR
    // bytes, a read of it fetches them first.
    const placed = pci.caps.list.filter((c) => c.kind === 'vendor');
    this.pciCfgCap = placed[placed.length - 1]!.offset;
    const c = this.pciCfgCap;
    const cfg = pci.config;
    cfg.writable(c + 4, 1, 0xff);
    cfg.writable(c + 8, 4, 0xffffffff);
    cfg.writable(c + 12, 4, 0xffffffff);
    cfg.writable(c + 16, 4, 0xffffffff);
    cfg.onWrite(c + 16, 4, () => this.cfgWindow('write'));
    cfg.onRead(c + 16, 4, () => this.cfgWindow('read'));
  }

  get log(): Logger {
    return this.pci.client?.log ?? this.fallbackLog;
  }

  // ---- VirtqueueHost ----

  get dma(): DeviceDma | undefined {
    return this.pci.dma;
  }

  get pollGate(): PollGate | undefined {
    return this.pci.client?.poll;
  }

  canProcess(): boolean {
    return (this.status & (Status.DRIVER_OK | Status.DEVICE_NEEDS_RESET | Status.FAILED)) === Status.DRIVER_OK;
  }

  handle(chain: DescChain): void {
    try {
      this.spec.handle(chain);
    } catch (e) {
      this.log.error(`${this.spec.name}: queue ${chain.queue.index} handler threw: ${String(e)}`);
      chain.complete(0);
    }
  }

  serveInPlace(ring: InPlaceRing, dma: DeviceDma): number {
    if (!this.spec.serveInPlace) return 0;
    try {
      return this.spec.serveInPlace(ring, dma);
    } catch (e) {
      // Nothing was served: the chains go out one by one as usual.
      this.log.error(`${this.spec.name}: serving in place threw: ${String(e)}`);
      return 0;
    }
  }

  notify(vq: Virtqueue): void {
    this.interrupt(vq.msixVector, Isr.QUEUE);
  }

  ringError(vq: Virtqueue, err: Error): void {
    this.needsReset(err instanceof RingError ? err.message : `queue ${vq.index}: ${err.message}`);
  }

  // ---- device-model API ----

  /** Whether a feature bit was negotiated. */
  has(featureBit: number): boolean {
    return (this.negotiated & bit(featureBit)) !== 0n;
  }

  /** The device configuration changed: bump the generation, config interrupt. */
  configChanged(): void {
    this.generation = (this.generation + 1) & 0xff;
    if (this.status & Status.DRIVER_OK) this.interrupt(this.configVector, Isr.CONFIG);
  }

  /** Something is beyond repair until the driver resets the device. */
  needsReset(reason: string): void {
    if (this.status & Status.DEVICE_NEEDS_RESET) return;
    this.log.warn(`${this.spec.name}: device needs reset: ${reason}`);
    this.status |= Status.DEVICE_NEEDS_RESET;
    if (this.status & Status.DRIVER_OK) this.interrupt(this.configVector, Isr.CONFIG);
  }

  /** True while any queue has work under way (tests, orderly shutdown). */
  get busy(): boolean {
    return this.queues.some((q) => q.busy);
  }

  private interrupt(vector: number, isrBit: number): void {
    this.isr |= isrBit;
    if (this.pci.caps.msix?.enabled) {
      if (vector !== NO_VECTOR) this.pci.msixNotify(vector);
      return;
    }
    this.pci.setIntx(true);
  }

  // ---- reset ----

  /** Writing 0 to device_status, FLR, VFIO_USER_DEVICE_RESET. */
  reset(): void {
    this.status = 0;
    this.driverFeatures = 0n;
    this.negotiated = 0n;
    this.deviceFeatureSelect = 0;
    this.driverFeatureSelect = 0;
    this.queueSelect = 0;
    this.configVector = NO_VECTOR;
    this.isr = 0;
    for (const q of this.queues) q.reset();
    if (this.pci.intxLevel) this.pci.setIntx(false);
    try {
      this.spec.reset?.();
    } catch (e) {
      this.log.error(`${this.spec.name}: device reset failed: ${String(e)}`);
    }
  }

  /** The client went away: nothing in flight can complete any more. */
  private detached(): void {
    for (const q of this.queues) q.abandon();
  }

  // ---- BAR4 ----

  private barRead(off: number, size: number): BarValue {
    if (off < Layout.COMMON + Layout.REGION) return this.commonRead(off - Layout.COMMON, size);
    if (off < Layout.ISR + Layout.REGION) return off === Layout.ISR ? this.isrRead() : 0;
    if (off < Layout.DEVICE + Layout.REGION) return this.configRead(off - Layout.DEVICE, size);
    return 0; // notify region: write-only
  }

  private barWrite(off: number, data: Buffer): void {
    if (off < Layout.COMMON + Layout.REGION) return this.commonWrite(off - Layout.COMMON, data);
    if (off < Layout.ISR + Layout.REGION) return; // ISR is read-only
    if (off < Layout.DEVICE + Layout.REGION) return this.configWrite(off - Layout.DEVICE, data);
    const rel = off - Layout.NOTIFY;
    if (rel % Layout.NOTIFY_MULTIPLIER !== 0) return;
    const q = this.queues[rel / Layout.NOTIFY_MULTIPLIER];
    q?.kick(); // never awaited: the doorbell is a posted write
  }

  private isrRead(): number {
    const v = this.isr;
    this.isr = 0;
    if (this.pci.intxLevel) this.pci.setIntx(false);
    return v;
  }

  private configRead(off: number, size: number): Buffer {
    const out = Buffer.alloc(size);
    const cfg = this.spec.config;
    if (off < cfg.length) cfg.copy(out, 0, off, Math.min(cfg.length, off + size));
    return out;
  }

  private configWrite(off: number, data: Buffer): void {
    const cfg = this.spec.config;
    if (off >= cfg.length) return;
    const n = Math.min(data.length, cfg.length - off);
    if (!this.spec.configWritable?.(off, n)) return;
    data.copy(cfg, off, 0, n);
    this.spec.writeConfig?.(off, data.subarray(0, n));
  }

  // ---- common configuration ----

  private get selected(): Virtqueue | undefined {
    return this.queues[this.queueSelect];
  }

  /** The common configuration structure as the driver would read it now. */
  private image(): Buffer {
    const b = this.img;
    b.fill(0);
    b.writeUInt32LE(this.deviceFeatureSelect, Common.DEVICE_FEATURE_SELECT);
    b.writeUInt32LE(half(this.offered, this.deviceFeatureSelect), Common.DEVICE_FEATURE);
    b.writeUInt32LE(this.driverFeatureSelect, Common.DRIVER_FEATURE_SELECT);
    b.writeUInt32LE(half(this.driverFeatures, this.driverFeatureSelect), Common.DRIVER_FEATURE);
    b.writeUInt16LE(this.configVector, Common.CONFIG_MSIX_VECTOR);
    b.writeUInt16LE(this.queues.length, Common.NUM_QUEUES);
    b[Common.DEVICE_STATUS] = this.status;
    b[Common.CONFIG_GENERATION] = this.generation;
    b.writeUInt16LE(this.queueSelect, Common.QUEUE_SELECT);
    const q = this.selected;
    if (q) {
      b.writeUInt16LE(q.size, Common.QUEUE_SIZE);
      b.writeUInt16LE(q.msixVector, Common.QUEUE_MSIX_VECTOR);
      b.writeUInt16LE(q.enabled ? 1 : 0, Common.QUEUE_ENABLE);
      b.writeUInt16LE(q.index, Common.QUEUE_NOTIFY_OFF);
      b.writeBigUInt64LE(q.descAddr, Common.QUEUE_DESC);
      b.writeBigUInt64LE(q.driverAddr, Common.QUEUE_DRIVER);
      b.writeBigUInt64LE(q.deviceAddr, Common.QUEUE_DEVICE);
    }
    return b;
  }

  private commonRead(off: number, size: number): Buffer {
    const out = Buffer.alloc(size);
    if (off < Common.SIZE) this.image().copy(out, 0, off, Math.min(Common.SIZE, off + size));
    return out;
  }

  /**
   * Any width at any offset: the written bytes are laid over the current
   * image, then every register they touch takes its new value.
   */
  private commonWrite(off: number, data: Buffer): void {
    if (off >= Common.SIZE) return;
    const end = Math.min(Common.SIZE, off + data.length);
    const b = this.image();
    data.copy(b, off, 0, end - off);
    const hit = (reg: number, len: number) => off < reg + len && reg < end;
    if (hit(Common.DEVICE_FEATURE_SELECT, 4)) this.deviceFeatureSelect = b.readUInt32LE(Common.DEVICE_FEATURE_SELECT);
    if (hit(Common.DRIVER_FEATURE_SELECT, 4)) this.driverFeatureSelect = b.readUInt32LE(Common.DRIVER_FEATURE_SELECT);
    if (hit(Common.DRIVER_FEATURE, 4)) this.writeDriverFeature(b.readUInt32LE(Common.DRIVER_FEATURE));
    if (hit(Common.CONFIG_MSIX_VECTOR, 2)) this.configVector = this.vector(b.readUInt16LE(Common.CONFIG_MSIX_VECTOR));
    if (hit(Common.DEVICE_STATUS, 1)) this.writeStatus(b[Common.DEVICE_STATUS]!);
    if (hit(Common.QUEUE_SELECT, 2)) this.queueSelect = b.readUInt16LE(Common.QUEUE_SELECT);
    const q = this.selected;
    if (!q) return;
    if (hit(Common.QUEUE_MSIX_VECTOR, 2)) q.msixVector = this.vector(b.readUInt16LE(Common.QUEUE_MSIX_VECTOR));
    // The ring layout is frozen once the queue is enabled.
    if (!q.enabled) {
      if (hit(Common.QUEUE_SIZE, 2)) {
        const s = b.readUInt16LE(Common.QUEUE_SIZE);
        if (s >= 1 && s <= q.maxSize) q.size = s;
        else this.log.debug(`${this.spec.name}: queue ${q.index}: size ${s} refused (max ${q.maxSize})`);
      }
      if (hit(Common.QUEUE_DESC, 8)) q.descAddr = b.readBigUInt64LE(Common.QUEUE_DESC);
      if (hit(Common.QUEUE_DRIVER, 8)) q.driverAddr = b.readBigUInt64LE(Common.QUEUE_DRIVER);
      if (hit(Common.QUEUE_DEVICE, 8)) q.deviceAddr = b.readBigUInt64LE(Common.QUEUE_DEVICE);
    }
    if (hit(Common.QUEUE_ENABLE, 2) && b.readUInt16LE(Common.QUEUE_ENABLE) === 1 && !q.enabled) this.enableQueue(q);
  }

  /** A vector the table has, else NO_VECTOR (the driver reads it back). */
  private vector(v: number): number {
    return v < this.msixVectors ? v : NO_VECTOR;
  }

  private writeDriverFeature(v: number): void {
    if (this.status & Status.FEATURES_OK) return; // negotiation is over
    const sel = this.driverFeatureSelect;
    if (sel > 1) return;
    const shift = BigInt(32 * sel);
    this.driverFeatures = (this.driverFeatures & ~(MASK32 << shift)) | (BigInt(v >>> 0) << shift);
  }

  private featuresAcceptable(f: bigint): string | undefined {
    if (f & ~this.offered) return `features 0x${(f & ~this.offered).toString(16)} were not offered`;
    if (!(f & bit(Feature.VERSION_1))) return 'VIRTIO_F_VERSION_1 not accepted (modern-only device)';
    if (this.spec.validateFeatures && !this.spec.validateFeatures(f)) return 'the device refused the feature set';
    return undefined;
  }

  private writeStatus(v: number): void {
    if (v === 0) {
      this.reset();
      return;
    }
    const old = this.status;
    let next = v | (old & Status.DEVICE_NEEDS_RESET);
    if (next & Status.FEATURES_OK && !(old & Status.FEATURES_OK)) {
      const why = this.featuresAcceptable(this.driverFeatures);
      if (why) {
        this.log.info(`${this.spec.name}: FEATURES_OK refused: ${why}`);
        next &= ~Status.FEATURES_OK;
      } else {
        this.negotiated = this.driverFeatures;
        for (const q of this.queues) this.applyFeatures(q);
      }
    }
    this.status = next;
    if (next & Status.DRIVER_OK && !(old & Status.DRIVER_OK)) {
      if (!(next & Status.FEATURES_OK)) this.log.warn(`${this.spec.name}: DRIVER_OK without FEATURES_OK`);
      try {
        this.spec.driverOk?.(this.negotiated);
      } catch (e) {
        this.log.error(`${this.spec.name}: driverOk failed: ${String(e)}`);
      }
      // Buffers made available before DRIVER_OK (or kicks we held back).
      for (const q of this.queues) if (q.enabled) q.kick();
    }
  }

  private applyFeatures(q: Virtqueue): void {
    q.eventIdx = this.has(Feature.EVENT_IDX);
    q.indirectDesc = this.has(Feature.INDIRECT_DESC);
  }

  private enableQueue(q: Virtqueue): void {
    this.applyFeatures(q);
    q.enable();
    this.log.debug(
      `${this.spec.name}: queue ${q.index} enabled: size ${q.size}, desc 0x${q.descAddr.toString(16)}, ` +
        `avail 0x${q.driverAddr.toString(16)}, used 0x${q.deviceAddr.toString(16)}, vector ${q.msixVector}`,
    );
    if (this.canProcess()) q.kick();
  }

  // ---- VIRTIO_PCI_CAP_PCI_CFG window ----

  private cfgWindow(dir: 'read' | 'write'): void {
    const cfg = this.pci.config;
    const c = this.pciCfgCap;
    const bar = cfg.u8(c + 4);
    const offset = cfg.u32(c + 8);
    const length = cfg.u32(c + 12);
    if (bar !== VIRTIO_BAR || !(length === 1 || length === 2 || length === 4) || offset % length !== 0) return;
    if (offset + length > VIRTIO_BAR_SIZE) return;
    if (dir === 'write') {
      this.barWrite(offset, Buffer.from(cfg.bytes.subarray(c + 16, c + 16 + length)));
      return;
    }
    const v = this.barRead(offset, length);
    const out = Buffer.alloc(4);
    if (Buffer.isBuffer(v)) v.copy(out, 0, 0, length);
    else out.writeUInt32LE(Number(v) >>> 0, 0);
    out.copy(cfg.bytes, c + 16, 0, 4);
  }
}

function half(v: bigint, sel: number): number {
  if (sel > 1) return 0;
  return Number((v >> BigInt(32 * sel)) & MASK32);
}
