// A PCI function built from a declarative spec, exposed to the server as a
// VfioUserDevice: regions 0-5 are the BARs, 6 the expansion ROM, 7 config
// space (8, VGA, is absent); IRQ indices INTx, MSI, MSI-X, ERR, REQ.
// Device models drive interrupts through setIntx/raiseIrq/msiNotify/
// msixNotify and reach guest memory through `dma` (bus mastering enforced).
import { DmaFault, type DeviceDma, type Iova, type MappedWindow, type SpanBuffer, type SpanList } from '../../iommu/device-dma.js';
import type {
  DeviceClient,
  IrqInfo,
  Logger,
  PlainRead,
  RegionDescription,
  IrqSetRequest,
  VfioUserDevice,
} from '../device.js';
import { fail } from '../../protocol/errno.js';
import { BarRegion, buildBarRegisters, buildRomRegister, romSize } from './bars.js';
import { buildCapabilities, type Capabilities } from './capabilities/index.js';
import { ConfigSpace } from './config-space.js';
import { type FdOps, nativeFdOps } from './fd-ops.js';
import { buildHeader } from './header.js';
import { InterruptRouter } from './interrupts.js';
import { IrqState } from './irqs.js';
import { MsixTable } from './msix.js';
import { Cmd, Hdr, PCI_CFG_SPACE_EXP_SIZE, PCI_CFG_SPACE_SIZE } from './regs.js';
import type { IrqRoute, PciDeviceSpec } from './types.js';
import * as V from './vfio-constants.js';

export interface PciDeviceOptions {
  /** eventfd signalling and closing; defaults to the native addon. */
  fdOps?: FdOps;
  /** Logger used while no client is attached (default: silent). */
  log?: Logger;
}

const silent: Logger = { error() {}, warn() {}, info() {}, debug() {} };
const RW = V.VFIO_REGION_INFO_FLAG_READ | V.VFIO_REGION_INFO_FLAG_WRITE;

export class PciDevice implements VfioUserDevice {
  readonly name: string;
  readonly spec: PciDeviceSpec;
  readonly config: ConfigSpace;
  readonly caps: Capabilities;
  readonly msixTable: MsixTable | undefined;
  private readonly bars: (BarRegion | undefined)[] = [];
  private readonly rom: Buffer | undefined;
  private readonly irqs: IrqState;
  private readonly router: InterruptRouter;
  private readonly fallbackLog: Logger;
  private current: DeviceClient | undefined;
  private guardedDma: DeviceDma | undefined;

  constructor(spec: PciDeviceSpec, options: PciDeviceOptions = {}) {
    this.name = spec.name;
    this.spec = spec;
    this.fallbackLog = options.log ?? silent;
    const capSpecs = spec.capabilities ?? [];
    const express = capSpecs.some((c) => c.kind === 'express');
    const pin = spec.interruptPin ?? 0;

    const cfg = (this.config = new ConfigSpace(express ? PCI_CFG_SPACE_EXP_SIZE : PCI_CFG_SPACE_SIZE));
    buildHeader(cfg, spec.ids, { interruptPin: pin, express });
    const barSpecs = spec.bars ?? [];
    buildBarRegisters(cfg, barSpecs);
    for (const b of barSpecs) this.bars[b.index] = new BarRegion(b);
    const rs = romSize(spec.rom);
    if (rs) {
      this.rom = Buffer.alloc(rs, 0xff);
      spec.rom!.copy(this.rom);
    }
    buildRomRegister(cfg, rs);

    // The router does not exist yet while capabilities are built; the hooks
    // only fire on guest writes, long after construction.
    this.caps = buildCapabilities(cfg, capSpecs, {
      msiChanged: () => this.router.msiChanged(),
      msixChanged: () => this.router.msixChanged(),
      flr: () => this.functionLevelReset(),
    });
    if (this.caps.msix) this.msixTable = this.placeMsix();
    cfg.onWrite(Hdr.COMMAND, 2, () => this.router.updateIntx());
    cfg.seal();

    const msiCount = this.caps.msi?.vectors ?? 0;
    const msixCount = this.caps.msix?.vectors ?? 0;
    const ev = V.VFIO_IRQ_INFO_EVENTFD;
    // ERR and REQ: one eventfd each, flagged as Linux vfio-pci flags them.
    // QEMU enables error recovery only when ERR has count 1 (and warns
    // otherwise), so ERR is offered on conventional functions too: here it
    // reports a failed device model, not a PCIe AER event.
    const single = ev | V.VFIO_IRQ_INFO_NORESIZE;
    const infos: IrqInfo[] = [
      { count: pin ? 1 : 0, flags: ev | V.VFIO_IRQ_INFO_MASKABLE | V.VFIO_IRQ_INFO_AUTOMASKED },
      { count: msiCount, flags: ev | V.VFIO_IRQ_INFO_MASKABLE | V.VFIO_IRQ_INFO_NORESIZE },
      // No NORESIZE: vectors can be (de)assigned one by one while enabled.
      { count: msixCount, flags: ev | V.VFIO_IRQ_INFO_MASKABLE },
      { count: (spec.errIrq ?? true) ? 1 : 0, flags: single },
      { count: (spec.reqIrq ?? true) ? 1 : 0, flags: single },
    ];
    this.irqs = new IrqState(infos, options.fdOps ?? nativeFdOps, () => this.log, {
      unmasked: (index) => this.router.reevaluate(index),
      changed: (index) => this.router.reevaluate(index),
    });
    this.router = new InterruptRouter({
      cfg,
      irqs: this.irqs,
      hasPin: pin !== 0,
      msi: this.caps.msi,
      msix: this.caps.msix,
      table: this.msixTable,
    });
  }

  /** Put the MSI-X table and PBA over their BAR ranges. */
  private placeMsix(): MsixTable {
    const cap = this.caps.msix!;
    const table = new MsixTable(cap.vectors, () => this.router.msixChanged());
    const place = (what: string, bar: number, offset: number, size: number) => {
      const region = this.bars[bar];
      if (!region || region.spec.kind === 'io') {
        throw new RangeError(`MSI-X ${what}: BAR${bar} is not a memory BAR`);
      }
      if (offset + size > region.size) throw new RangeError(`MSI-X ${what} does not fit in BAR${bar}`);
      return region;
    };
    const { table: t, pba: p } = cap.spec;
    place('table', t.bar, t.offset, table.tableSize).addOverlay(table.tableOverlay(t.offset));
    place('PBA', p.bar, p.offset, table.pbaSize).addOverlay(table.pbaOverlay(p.offset));
    return table;
  }

  // ---- device-model API -------------------------------------------------

  get log(): Logger {
    return this.current?.log ?? this.fallbackLog;
  }

  get client(): DeviceClient | undefined {
    return this.current;
  }

  /** Guest memory, refused while the guest has bus mastering off. */
  get dma(): DeviceDma | undefined {
    return this.guardedDma;
  }

  get busMaster(): boolean {
    return (this.config.u16(Hdr.COMMAND) & Cmd.MASTER) !== 0;
  }
  get memoryEnabled(): boolean {
    return (this.config.u16(Hdr.COMMAND) & Cmd.MEMORY) !== 0;
  }
  get ioEnabled(): boolean {
    return (this.config.u16(Hdr.COMMAND) & Cmd.IO) !== 0;
  }

  /** Drive the INTx line (level-triggered; deasserting is the model's job). */
  setIntx(level: boolean): IrqRoute {
    return this.router.setIntx(level);
  }

  get intxLevel(): boolean {
    return this.router.intxLevel;
  }

  /** One event: MSI-X vector, else MSI vector, else assert INTx. */
  raiseIrq(vector = 0): IrqRoute {
    return this.router.raiseIrq(vector);
  }

  /** Deassert INTx (after the guest acknowledged the cause). */
  lowerIrq(): void {
    this.router.setIntx(false);
  }

  msiNotify(vector: number): IrqRoute {
    return this.router.msiNotify(vector);
  }

  msixNotify(vector: number): IrqRoute {
    return this.router.msixNotify(vector);
  }

  /**
   * Ask the client to release the device: signals the REQ eventfd. QEMU
   * answers with an unplug request for the device (the guest ejects it where
   * the bus supports hot-unplug). False when the client gave no REQ eventfd.
   */
  requestRelease(): boolean {
    return this.irqs.signal(V.VFIO_PCI_REQ_IRQ_INDEX, 0);
  }

  /**
   * Report an unrecoverable device error: signals the ERR eventfd. QEMU
   * stops the VM (run state internal-error) so the failure is contained and
   * can be inspected. False when the client gave no ERR eventfd.
   */
  reportError(): boolean {
    return this.irqs.signal(V.VFIO_PCI_ERR_IRQ_INDEX, 0);
  }

  // ---- VfioUserDevice ---------------------------------------------------

  info(): { flags: number; numRegions: number; numIrqs: number } {
    return {
      flags: V.VFIO_DEVICE_FLAGS_PCI | V.VFIO_DEVICE_FLAGS_RESET,
      numRegions: V.VFIO_PCI_NUM_REGIONS,
      numIrqs: V.VFIO_PCI_NUM_IRQS,
    };
  }

  regionInfo(index: number): RegionDescription {
    if (!Number.isInteger(index) || index < 0 || index >= V.VFIO_PCI_NUM_REGIONS) {
      throw fail('EINVAL', `no region ${index}`);
    }
    if (index <= V.VFIO_PCI_BAR5_REGION_INDEX) {
      const bar = this.bars[index];
      return bar ? { size: bar.size, flags: RW } : { size: 0, flags: 0 };
    }
    if (index === V.VFIO_PCI_ROM_REGION_INDEX) {
      return this.rom ? { size: this.rom.length, flags: V.VFIO_REGION_INFO_FLAG_READ } : { size: 0, flags: 0 };
    }
    if (index === V.VFIO_PCI_CONFIG_REGION_INDEX) return { size: this.config.size, flags: RW };
    return { size: 0, flags: 0 }; // VGA
  }

  private regionSize(index: number): number {
    if (index >= 0 && index <= V.VFIO_PCI_BAR5_REGION_INDEX) return this.bars[index]?.size ?? 0;
    if (index === V.VFIO_PCI_CONFIG_REGION_INDEX) return this.config.size;
    if (index === V.VFIO_PCI_ROM_REGION_INDEX) return this.rom?.length ?? 0;
    if (index === V.VFIO_PCI_VGA_REGION_INDEX) return 0;
    throw fail('EINVAL', `no region ${index}`);
  }

  private checkRange(index: number, offset: number, count: number): void {
    const size = this.regionSize(index);
    if (size === 0) throw fail('EINVAL', `region ${index} does not exist`);
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(count) ||
      offset < 0 ||
      count < 0 ||
      offset + count > size
    ) {
      throw fail('EINVAL', `region ${index}: [${offset}, +${count}) outside ${size} bytes`);
    }
  }

  regionRead(index: number, offset: number, count: number): Buffer | Promise<Buffer> {
    this.checkRange(index, offset, count);
    if (index === V.VFIO_PCI_CONFIG_REGION_INDEX) return this.config.read(offset, count);
    if (index === V.VFIO_PCI_ROM_REGION_INDEX) return Buffer.from(this.rom!.subarray(offset, offset + count));
    return this.bars[index]!.read(offset, count);
  }

  /**
   * Config space outside its read hooks, the expansion ROM, and BARs that are
   * plain backing bytes. None when a subclass overrides regionRead: only it
   * knows what its reads do.
   */
  plainReads(): PlainRead[] {
    if (this.regionRead !== PciDevice.prototype.regionRead) return [];
    const ranges: PlainRead[] = this.config.plainRanges().map((r) => ({ region: V.VFIO_PCI_CONFIG_REGION_INDEX, ...r }));
    if (this.rom) ranges.push({ region: V.VFIO_PCI_ROM_REGION_INDEX, offset: 0, bytes: this.rom });
    this.bars.forEach((bar, index) => {
      const bytes = bar?.plainBytes();
      if (bytes) ranges.push({ region: index, offset: 0, bytes });
    });
    return ranges;
  }

  regionWrite(index: number, offset: number, data: Buffer): void | Promise<void> {
    this.checkRange(index, offset, data.length);
    if (index === V.VFIO_PCI_CONFIG_REGION_INDEX) return this.config.write(offset, data);
    if (index === V.VFIO_PCI_ROM_REGION_INDEX) throw fail('EINVAL', 'the expansion ROM is read-only');
    return this.bars[index]!.write(offset, data);
  }

  irqInfo(index: number): IrqInfo {
    return this.irqs.info(index);
  }

  setIrqs(req: IrqSetRequest): void {
    this.irqs.setIrqs(req);
  }

  /** VFIO_USER_DEVICE_RESET: config space and the model back to power-on. */
  reset(): void | Promise<void> {
    this.resetState();
    return this.spec.reset?.();
  }

  /** Fault injection: the model's error state, else the ERR interrupt. */
  enterErrorState(reason: string): 'needs-reset' | 'err-irq' | 'none' {
    if (this.spec.errorState) {
      this.spec.errorState(reason);
      return 'needs-reset';
    }
    return this.reportError() ? 'err-irq' : 'none';
  }

  attachClient(client: DeviceClient): void {
    this.current = client;
    this.irqs.faults = client.faults;
    this.guardedDma = busMasterGuard(client.dma, () => this.busMaster);
    this.spec.attach?.(client);
  }

  detachClient(): void {
    this.irqs.closeAll();
    this.spec.detach?.();
    this.current = undefined;
    this.guardedDma = undefined;
    this.irqs.faults = undefined;
  }

  // ---- reset --------------------------------------------------------------

  private resetState(): void {
    this.config.reset();
    this.caps.pm?.reset();
    this.msixTable?.reset();
    this.router.reset();
  }

  /** PCIe FLR, triggered by a config write: same as a device reset. */
  private functionLevelReset(): void {
    this.log.debug(`${this.name}: function-level reset`);
    this.resetState();
    try {
      const r = this.spec.reset?.();
      if (r instanceof Promise) r.catch((e) => this.log.error(`${this.name}: reset failed: ${String(e)}`));
    } catch (e) {
      this.log.error(`${this.name}: reset failed: ${String(e)}`);
    }
  }
}

/**
 * A DeviceDma whose every method first checks Command.BUS_MASTER: a function
 * with bus mastering off must not touch memory. A plain class (not a Proxy
 * making a closure per call): a request makes several DMA calls.
 */
class BusMasterDma implements DeviceDma {
  constructor(
    private readonly dma: DeviceDma,
    private readonly enabled: () => boolean,
  ) {}

  read(iova: Iova, length: number, pasid?: number): Promise<Buffer> {
    return this.enabled() ? this.dma.read(iova, length, pasid) : refused(iova, length);
  }

  write(iova: Iova, data: Uint8Array, pasid?: number): Promise<void> {
    return this.enabled() ? this.dma.write(iova, data, pasid) : refused(iova, data.length);
  }

  withView<T>(iova: Iova, length: number, access: number, fn: (segments: Uint8Array[]) => T | Promise<T>, pasid?: number): Promise<T> {
    return this.enabled() ? this.dma.withView(iova, length, access, fn, pasid) : refused(iova, length);
  }

  withViews<T>(
    iovas: readonly Iova[],
    lengths: readonly number[],
    access: number,
    fn: (segments: Uint8Array[]) => T | Promise<T>,
    pasid?: number,
  ): Promise<T> {
    return this.enabled() ? this.dma.withViews(iovas, lengths, access, fn, pasid) : refused(iovas[0] ?? 0, lengths[0] ?? 0);
  }

  withSpans<T>(
    iovas: readonly Iova[],
    lengths: readonly number[],
    access: number,
    fn: (list: SpanList) => T | Promise<T>,
    pasid?: number,
  ): Promise<T> {
    return this.enabled() ? this.dma.withSpans(iovas, lengths, access, fn, pasid) : refused(iovas[0] ?? 0, lengths[0] ?? 0);
  }

  mappedView(iova: Iova, length: number, access: number, pasid?: number): Uint8Array | null {
    // Off: null sends the caller to the general path, which refuses.
    return this.enabled() ? this.dma.mappedView(iova, length, access, pasid) : null;
  }

  mappedSpans(iovas: readonly Iova[], lengths: readonly number[], skip: number, length: number, access: number, out: SpanBuffer, pasid?: number): boolean {
    return this.enabled() && this.dma.mappedSpans(iovas, lengths, skip, length, access, out, pasid);
  }

  mappedWindow(iova: Iova, access: number, pasid?: number): MappedWindow | null {
    return this.enabled() ? this.dma.mappedWindow(iova, access, pasid) : null;
  }
}

function refused(iova: Iova, length: number): Promise<never> {
  return Promise.reject(new DmaFault('permission', iova, length, undefined, 'bus mastering disabled'));
}

function busMasterGuard(dma: DeviceDma, enabled: () => boolean): DeviceDma {
  return new BusMasterDma(dma, enabled);
}
