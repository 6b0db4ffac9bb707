// The IOMMU context (iommufd's ictx): an object table (IOAS and devices,
// ids from 1, lowest free first), the compat IOAS the type1 operations act
// on, devices by name with per-device and per-PASID attachments, and the
// one dispatcher both the legacy and the new operations go through.
import { closeSync } from 'node:fs';
import { fail } from '../protocol/errno.js';
import { MemoryBacking, type Backing } from './backing.js';
import { MessageBacking } from './backing-message.js';
import { MmapBacking } from './backing-mmap.js';
import type { DeviceDma } from './device-dma.js';
import { IommuDispatcher, type OpResult } from './dispatcher.js';
import { DeviceDmaPort } from './dma-port.js';
import type { MemorySource } from './memory-source.js';
import { GuestFiles, type GuestFileNative, type GuestFilesOptions } from './guest-files.js';
import { Ioas, checkProt, type UnmapResult } from './ioas.js';
import { Type1Compat, type Type1Options } from './type1.js';
import { u64, type U64Like } from './u64.js';
import { U64_MAX } from '../protocol/wire.js';

/** PASIDs are 20 bits wide (PCIe). */
export const PASID_MAX = (1 << 20) - 1;

export interface IommuContextOptions {
  /** The native addon (mmap of fds); without it only heap memory is used. */
  native?: GuestFileNative;
  /** Limits of the guest-file registry (fd-backed maps). */
  guestFiles?: GuestFilesOptions;
  type1?: Type1Options;
  /** Create the compat (default) IOAS at once. Default true. */
  defaultIoas?: boolean;
}

export class IommuDevice {
  readonly dma: DeviceDmaPort;
  /** IOAS of DMA without PASID. */
  rid: Ioas | null = null;
  readonly pasids = new Map<number, Ioas>();

  constructor(
    readonly id: number,
    readonly name: string,
  ) {
    this.dma = new DeviceDmaPort(this);
  }

  /** Name, id and attachments, as `device.list` and `context.info` report them. */
  info(): Record<string, unknown> {
    return {
      name: this.name,
      id: this.id,
      ioasId: this.rid?.id ?? null,
      pasids: [...this.pasids].map(([pasid, ioas]) => ({ pasid, ioasId: ioas.id })),
    };
  }

  ioasFor(pasid?: number): Ioas | null {
    return pasid === undefined ? this.rid : (this.pasids.get(pasid) ?? null);
  }

  get attached(): boolean {
    return this.rid !== null || this.pasids.size > 0;
  }
}

type IommuObject = Ioas | IommuDevice;

export class IommuContext {
  readonly native: GuestFileNative | undefined;
  /**
   * The files behind fd-backed maps: one mapping (or I/O fd) per file, each
   * map an area over it at its file offset. Per context: a context is one client's container,
   * whose files go with dropClientMappings; the budget is per process.
   */
  readonly guestFiles: GuestFiles | null;
  readonly type1: Type1Compat;
  readonly dispatcher: IommuDispatcher;
  private readonly objects = new Map<number, IommuObject>();
  private readonly devices = new Map<string, IommuDevice>();
  private compat: Ioas | null = null;

  constructor(opts: IommuContextOptions = {}) {
    this.native = opts.native;
    this.guestFiles = opts.native ? new GuestFiles(opts.native, opts.guestFiles) : null;
    if (opts.defaultIoas !== false) this.compat = this.allocIoas();
    this.type1 = new Type1Compat(this, opts.type1);
    this.dispatcher = new IommuDispatcher(this);
  }

  /** Run one operation: `{op: 'ioas.map', ...}` style, see dispatcher.ts. */
  dispatch(op: string, args: Record<string, unknown> = {}): Promise<OpResult> {
    return this.dispatcher.dispatch(op, args);
  }

  // ---- objects ----------------------------------------------------------------

  private nextId(): number {
    let id = 1;
    while (this.objects.has(id)) id++;
    return id;
  }

  allocIoas(): Ioas {
    const ioas = new Ioas(this.nextId());
    this.objects.set(ioas.id, ioas);
    return ioas;
  }

  getIoas(id: number): Ioas {
    const o = this.objects.get(id);
    if (!(o instanceof Ioas)) throw fail('ENOENT', `no IOAS ${id}`);
    return o;
  }

  ioasList(): Ioas[] {
    return [...this.objects.values()].filter((o): o is Ioas => o instanceof Ioas);
  }

  /** IOMMU_DESTROY. An IOAS in use by a device is EBUSY; devices belong to the server. */
  destroy(id: number): UnmapResult {
    const o = this.objects.get(id);
    if (!o) throw fail('ENOENT', `no object ${id}`);
    if (o instanceof IommuDevice) throw fail('EBUSY', `object ${id} is device ${o.name}, owned by the server`);
    if (o.users > 0) throw fail('EBUSY', `IOAS ${id} has ${o.users} attachment(s)`);
    this.objects.delete(id);
    if (this.compat === o) this.compat = null;
    return o.destroy();
  }

  // ---- compat IOAS (IOMMU_VFIO_IOAS) ------------------------------------------

  /** The IOAS the type1 operations act on; ENODEV when there is none. */
  get compatIoas(): Ioas {
    if (!this.compat) throw fail('ENODEV', 'no compat IOAS');
    return this.compat;
  }

  compatSet(id: number): void {
    this.compat = this.getIoas(id);
  }

  compatClear(): void {
    this.compat = null;
  }

  // ---- devices --------------------------------------------------------------------

  /**
   * Register a device (iommufd bind). By default its RID is attached to the
   * compat IOAS, as a VFIO group in a type1 container would be.
   */
  addDevice(name: string, opts: { attach?: boolean } = {}): IommuDevice {
    if (this.devices.has(name)) throw fail('EEXIST', `device ${name} exists`);
    const dev = new IommuDevice(this.nextId(), name);
    this.objects.set(dev.id, dev);
    this.devices.set(name, dev);
    if ((opts.attach ?? true) && this.compat) this.attach(name, this.compat.id);
    return dev;
  }

  removeDevice(name: string): void {
    const dev = this.device(name);
    if (dev.rid) this.detach(name);
    for (const p of [...dev.pasids.keys()]) this.detach(name, p);
    this.devices.delete(name);
    this.objects.delete(dev.id);
  }

  device(name: string): IommuDevice {
    const d = this.devices.get(name);
    if (!d) throw fail('ENODEV', `no device ${name}`);
    return d;
  }

  deviceList(): IommuDevice[] {
    return [...this.devices.values()];
  }

  /** The DeviceDma a device model gets. */
  dma(name: string): DeviceDma {
    return this.device(name).dma;
  }

  /** Attach a device (or one PASID of it); EINVAL if already attached. */
  attach(name: string, ioasId: number, pasid?: number): void {
    const dev = this.device(name);
    checkPasid(pasid);
    const ioas = this.getIoas(ioasId);
    if (dev.ioasFor(pasid)) throw fail('EINVAL', `${who(name, pasid)} is already attached (use replace)`);
    this.link(dev, ioas, pasid);
  }

  /** Switch an attached device (or PASID) to another IOAS in one step. */
  replace(name: string, ioasId: number, pasid?: number): void {
    const dev = this.device(name);
    checkPasid(pasid);
    const ioas = this.getIoas(ioasId);
    const old = dev.ioasFor(pasid);
    if (!old) throw fail('EINVAL', `${who(name, pasid)} is not attached`);
    if (old === ioas) return;
    old.users--;
    this.link(dev, ioas, pasid);
  }

  detach(name: string, pasid?: number): void {
    const dev = this.device(name);
    checkPasid(pasid);
    const old = dev.ioasFor(pasid);
    if (!old) throw fail('ENOENT', `${who(name, pasid)} is not attached`);
    old.users--;
    if (pasid === undefined) dev.rid = null;
    else dev.pasids.delete(pasid);
  }

  private link(dev: IommuDevice, ioas: Ioas, pasid: number | undefined): void {
    ioas.users++;
    if (pasid === undefined) dev.rid = ioas;
    else dev.pasids.set(pasid, ioas);
  }

  // ---- memory ----------------------------------------------------------------------

  /**
   * The backing of [offset, offset+length) of a source and where that range
   * starts in it, holding one reference for the caller (release it once
   * mapped). `iova` is the default client address of a messenger.
   */
  makeBacking(src: MemorySource, length: number, writable: boolean, iova = 0n): { backing: Backing; offset: number } {
    if (src.backing) {
      src.backing.retain();
      return { backing: src.backing, offset: src.offset ?? 0 };
    }
    if (src.fd !== undefined) {
      if (!this.guestFiles) {
        closeFd(src.fd);
        throw fail('EOPNOTSUPP', 'mapping an fd needs the native addon');
      }
      return this.guestFiles.window(src.fd, src.offset ?? 0, length, writable);
    }
    const whole = (backing: Backing) => ({ backing, offset: 0 });
    if (src.messenger) return whole(new MessageBacking(src.messenger, src.messageBase ?? iova, length, { writable }));
    if (src.file !== undefined) {
      if (!this.native) throw fail('EOPNOTSUPP', 'mapping a file needs the native addon');
      return whole(MmapBacking.fromFile(this.native, src.file, { offset: src.offset ?? 0, size: length, writable }));
    }
    if (this.native) return whole(MmapBacking.anonymous(this.native, length));
    return whole(new MemoryBacking(length));
  }

  /**
   * IOMMU_IOAS_MAP of new memory (anonymous by default, or a file / fd /
   * messenger / given backing). Returns the IOVA.
   */
  mapMemory(ioasId: number, req: { length: U64Like; iova?: U64Like; prot: number } & MemorySource): bigint {
    const ioas = this.getIoas(ioasId);
    const length = u64(req.length, 'length');
    const iova = req.iova === undefined ? undefined : u64(req.iova, 'iova');
    if (iova === U64_MAX || length === U64_MAX) throw fail('EOVERFLOW', 'iova or length is U64_MAX');
    checkProt(req.prot);
    if (length === 0n || length > BigInt(Number.MAX_SAFE_INTEGER)) {
      if (req.fd !== undefined) closeFd(req.fd);
      throw fail('EINVAL', 'bad length');
    }
    const { backing, offset } = this.makeBacking(req, Number(length), true, iova ?? 0n);
    try {
      return ioas.map({ backing, offset, length, prot: req.prot, iova });
    } finally {
      backing.release();
    }
  }

  /**
   * IOMMU_IOAS_COPY: map the memory behind [srcIova, srcIova+length) of one
   * IOAS into another (or the same) at dstIova or an allocated IOVA. The
   * copy shares the backing (no bytes move). Without `prot` each new area
   * keeps its source area's rights; a `prot` beyond them is EPERM (access
   * rights never widen). Returns the destination IOVA.
   */
  copy(req: {
    srcIoasId: number;
    srcIova: U64Like;
    length: U64Like;
    dstIoasId: number;
    dstIova?: U64Like;
    prot?: number;
  }): bigint {
    const srcIova = u64(req.srcIova, 'srcIova');
    const length = u64(req.length, 'length');
    const dstIova = req.dstIova === undefined ? undefined : u64(req.dstIova, 'dstIova');
    if (length === U64_MAX || srcIova === U64_MAX || dstIova === U64_MAX) throw fail('EOVERFLOW', 'value is U64_MAX');
    if (req.prot !== undefined) checkProt(req.prot);
    const src = this.getIoas(req.srcIoasId);
    const slices = src.slices(srcIova, length);
    const dst = this.getIoas(req.dstIoasId);
    return dst.mapSlices(slices, length, req.prot, dstIova);
  }

  /**
   * The client went away: unmap every area whose memory it owned, in every
   * IOAS, and stop compat dirty tracking. Settles once nothing uses it.
   */
  dropClientMappings(): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const ioas of this.ioasList()) {
      const mine = ioas.allAreas().filter((a) => a.backing.clientOwned);
      // All of them (the usual case): clear the tree in one step.
      if (mine.length > 0 && mine.length === ioas.areaCount) waits.push(ioas.unmapAll().drained);
      else if (mine.length) waits.push(ioas.removeAreas(mine).drained);
    }
    if (this.compat?.dirtyTracking) this.compat.dirtyStop();
    return Promise.all(waits).then(() => undefined);
  }

  /** Everything, for `context.info`. */
  info(): Record<string, unknown> {
    return {
      compatIoasId: this.compat?.id ?? null,
      ioas: this.ioasList().map((i) => ({ ioasId: i.id, areas: i.areaCount, users: i.users, dirtyTracking: i.dirtyTracking })),
      devices: this.deviceList().map((d) => d.info()),
    };
  }
}

function checkPasid(pasid: number | undefined): void {
  if (pasid === undefined) return;
  if (!Number.isInteger(pasid) || pasid < 0 || pasid > PASID_MAX) throw fail('EINVAL', `bad PASID ${pasid}`);
}

function who(name: string, pasid: number | undefined): string {
  return pasid === undefined ? `device ${name}` : `device ${name} pasid ${pasid}`;
}

function closeFd(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed: nothing to leak
  }
}

