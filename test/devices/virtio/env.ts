// Test side of virtio: guest memory behind a real IommuContext, a minimal
// "driver" that builds split rings by hand (descriptors, indirect tables,
// avail/used rings, event indices), and a register-level PCI driver that
// walks the virtio init sequence through BAR4 like Linux's virtio_pci does.
import { MemoryBacking } from '../../../iommu/backing.js';
import { MessageBacking, type DmaMessenger } from '../../../iommu/backing-message.js';
import { IommuContext } from '../../../iommu/context.js';
import type { DeviceDma } from '../../../iommu/device-dma.js';
import type { Logger } from '../../../devices/device.js';
import type { PciDevice } from '../../../devices/pci/pci-device.js';
import { Common, Desc, Feature, Status, bit } from '../../../devices/virtio/constants.js';
import { Layout, VIRTIO_BAR, VirtioPciTransport } from '../../../devices/virtio/transport.js';
import { cfgRead, cfgWrite, fakeFds, F, IDX, type FakeFds } from '../helpers.js';

export const BASE = 0x10_0000; // guest memory starts at IOVA 1 MiB
export const MEM_SIZE = 8 << 20;

export interface LogLine {
  level: string;
  msg: string;
}

export function recordingLog(): Logger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const rec = (level: string) => (msg: string) => void lines.push({ level, msg });
  return { lines, error: rec('error'), warn: rec('warn'), info: rec('info'), debug: rec('debug') };
}

/** Guest memory as the test (the "driver") sees it: IOVA-addressed bytes. */
export class GuestMem {
  private next: number;
  constructor(
    readonly bytes: Uint8Array,
    readonly base: number,
    /** Where alloc() starts handing out buffers. */
    heap = base + (1 << 20),
  ) {
    this.next = heap;
  }
  private o(iova: number, len: number): number {
    const off = iova - this.base;
    if (off < 0 || off + len > this.bytes.length) throw new RangeError(`test bug: iova 0x${iova.toString(16)} outside guest memory`);
    return off;
  }
  view(iova: number, len: number): Uint8Array {
    const off = this.o(iova, len);
    return this.bytes.subarray(off, off + len);
  }
  dv(iova: number, len: number): DataView {
    const off = this.o(iova, len);
    return new DataView(this.bytes.buffer, this.bytes.byteOffset + off, len);
  }
  u16(iova: number): number {
    return this.dv(iova, 2).getUint16(0, true);
  }
  u32(iova: number): number {
    return this.dv(iova, 4).getUint32(0, true);
  }
  set16(iova: number, v: number): void {
    this.dv(iova, 2).setUint16(0, v, true);
  }
  set32(iova: number, v: number): void {
    this.dv(iova, 4).setUint32(0, v, true);
  }
  set64(iova: number, v: bigint | number): void {
    this.dv(iova, 8).setBigUint64(0, BigInt(v), true);
  }
  write(iova: number, data: Uint8Array): void {
    this.view(iova, data.length).set(data);
  }
  read(iova: number, len: number): Buffer {
    return Buffer.from(this.view(iova, len));
  }
  /** A zeroed buffer (16-byte aligned) from the heap. */
  alloc(len: number, align = 16): number {
    const a = Math.ceil(this.next / align) * align;
    this.next = a + len;
    this.view(a, len).fill(0);
    return a;
  }
}

export interface Guest {
  ctx: IommuContext;
  dma: DeviceDma;
  mem: GuestMem;
  backing: MemoryBacking;
}

/** Guest RAM mapped at BASE in the device's IOAS (type1, like QEMU's DMA_MAP). */
export function makeGuest(size = MEM_SIZE): Guest {
  const ctx = new IommuContext();
  ctx.addDevice('d');
  const backing = new MemoryBacking(size);
  ctx.type1.map({ iova: BASE, size, flags: 3, backing });
  return { ctx, dma: ctx.dma('d'), mem: new GuestMem(backing.bytes!, BASE), backing };
}

/**
 * Guest RAM without an fd: the same bytes, but reached through a messenger
 * (DMA_READ / DMA_WRITE), every access asynchronous, as with private QEMU RAM.
 */
export function makeMessageGuest(size = MEM_SIZE): Guest & { messages: { reads: number; writes: number } } {
  const ctx = new IommuContext();
  ctx.addDevice('d');
  const backing = new MemoryBacking(size);
  const bytes = backing.bytes!;
  const messages = { reads: 0, writes: 0 };
  const later = () => new Promise<void>((r) => setImmediate(r));
  const messenger: DmaMessenger = {
    maxChunk: 64 * 1024,
    async read(addr, len) {
      messages.reads++;
      await later();
      const off = Number(addr) - BASE;
      return Buffer.from(bytes.subarray(off, off + len));
    },
    async write(addr, data) {
      messages.writes++;
      await later();
      bytes.set(data, Number(addr) - BASE);
    },
  };
  ctx.type1.map({ iova: BASE, size, flags: 3, messenger });
  return { ctx, dma: ctx.dma('d'), mem: new GuestMem(bytes, BASE), backing, messages };
}

export { MessageBacking };

export interface Buf {
  addr: number;
  len: number;
  write?: boolean;
}

/** A split ring laid out by the "driver" in guest memory. */
export class DriverRing {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  /** Next free descriptor (handed out round-robin; tests stay well below size). */
  private nextDesc = 0;
  availIdx = 0;
  lastUsed = 0;

  constructor(
    readonly mem: GuestMem,
    readonly size: number,
    at?: number,
  ) {
    const descBytes = 16 * size;
    const availBytes = 6 + 2 * size;
    const usedBytes = 6 + 8 * size;
    const base = at ?? mem.alloc(descBytes + availBytes + usedBytes + 64, 4096);
    this.desc = base;
    this.avail = base + descBytes;
    this.used = Math.ceil((this.avail + availBytes) / 4) * 4;
  }

  writeDesc(i: number, addr: number | bigint, len: number, flags: number, next = 0, table = this.desc): void {
    const d = table + 16 * i;
    this.mem.set64(d, addr);
    this.mem.set32(d + 8, len);
    this.mem.set16(d + 12, flags);
    this.mem.set16(d + 14, next);
  }

  allocDesc(): number {
    const i = this.nextDesc;
    this.nextDesc = (this.nextDesc + 1) % this.size;
    return i;
  }

  /** Chain `bufs` through the descriptor table; returns the head. */
  chain(bufs: Buf[]): number {
    const ids = bufs.map(() => this.allocDesc());
    bufs.forEach((b, k) => {
      const last = k === bufs.length - 1;
      this.writeDesc(ids[k]!, b.addr, b.len, (b.write ? Desc.WRITE : 0) | (last ? 0 : Desc.NEXT), last ? 0 : ids[k + 1]!);
    });
    return ids[0]!;
  }

  /** An indirect table holding `bufs`, and a head descriptor pointing at it. */
  indirect(bufs: Buf[]): number {
    const table = this.mem.alloc(16 * bufs.length);
    bufs.forEach((b, k) => {
      const last = k === bufs.length - 1;
      this.writeDesc(k, b.addr, b.len, (b.write ? Desc.WRITE : 0) | (last ? 0 : Desc.NEXT), last ? 0 : k + 1, table);
    });
    const head = this.allocDesc();
    this.writeDesc(head, table, 16 * bufs.length, Desc.INDIRECT);
    return head;
  }

  /** Put heads in the avail ring and publish the new avail->idx. */
  push(...heads: number[]): void {
    for (const h of heads) {
      this.mem.set16(this.avail + 4 + 2 * (this.availIdx % this.size), h);
      this.availIdx = (this.availIdx + 1) & 0xffff;
    }
    this.mem.set16(this.avail + 2, this.availIdx);
  }

  /** Both rings start at `idx` (as if 65536 - n requests had gone by). */
  startAt(idx: number): void {
    this.availIdx = idx;
    this.lastUsed = idx;
    this.mem.set16(this.avail + 2, idx);
    this.mem.set16(this.used + 2, idx);
  }

  set availFlags(v: number) {
    this.mem.set16(this.avail, v);
  }
  set usedEvent(v: number) {
    this.mem.set16(this.avail + 4 + 2 * this.size, v);
  }
  get availEvent(): number {
    return this.mem.u16(this.used + 4 + 8 * this.size);
  }
  /** used->flags (VRING_USED_F_NO_NOTIFY: the device asks for no kicks). */
  get usedFlags(): number {
    return this.mem.u16(this.used);
  }
  get usedIdx(): number {
    return this.mem.u16(this.used + 2);
  }
  usedElem(n: number): { id: number; len: number } {
    const e = this.used + 4 + 8 * (n % this.size);
    return { id: this.mem.u32(e), len: this.mem.u32(e + 4) };
  }
  /** Used elements published since the last call. */
  takeUsed(): { id: number; len: number }[] {
    const out: { id: number; len: number }[] = [];
    const idx = this.usedIdx;
    while (this.lastUsed !== idx) {
      out.push(this.usedElem(this.lastUsed));
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }
}

/** Let setImmediate-scheduled work (and fs callbacks) run until `done()`. */
export async function until(done: () => boolean, what = 'condition', ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!done()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** A few event-loop turns (for "nothing happens" checks). */
export async function turns(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

// ---- register-level driver over BAR4 ----

const BAR = VIRTIO_BAR;

export const DEFAULT_DRIVER_FEATURES =
  bit(Feature.VERSION_1) | bit(Feature.EVENT_IDX) | bit(Feature.INDIRECT_DESC) | bit(Feature.ACCESS_PLATFORM);

export class PciDriver {
  readonly rings: DriverRing[] = [];
  constructor(
    readonly dev: PciDevice,
    readonly mem: GuestMem,
  ) {}

  read(off: number, len: 1 | 2 | 4): number {
    const b = this.dev.regionRead(BAR, off, len) as Buffer;
    return b.readUIntLE(0, len);
  }
  write(off: number, len: 1 | 2 | 4, v: number): void {
    const b = Buffer.alloc(len);
    b.writeUIntLE(len === 4 ? v >>> 0 : v, 0, len);
    const r = this.dev.regionWrite(BAR, off, b);
    if (r instanceof Promise) throw new Error('a BAR write returned a promise');
  }
  common(off: number, len: 1 | 2 | 4): number {
    return this.read(Layout.COMMON + off, len);
  }
  setCommon(off: number, len: 1 | 2 | 4, v: number): void {
    this.write(Layout.COMMON + off, len, v);
  }
  get status(): number {
    return this.common(Common.DEVICE_STATUS, 1);
  }
  set status(v: number) {
    this.setCommon(Common.DEVICE_STATUS, 1, v);
  }
  deviceFeatures(): bigint {
    this.setCommon(Common.DEVICE_FEATURE_SELECT, 4, 0);
    const lo = this.common(Common.DEVICE_FEATURE, 4);
    this.setCommon(Common.DEVICE_FEATURE_SELECT, 4, 1);
    const hi = this.common(Common.DEVICE_FEATURE, 4);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }
  setDriverFeatures(f: bigint): void {
    this.setCommon(Common.DRIVER_FEATURE_SELECT, 4, 0);
    this.setCommon(Common.DRIVER_FEATURE, 4, Number(f & 0xffffffffn));
    this.setCommon(Common.DRIVER_FEATURE_SELECT, 4, 1);
    this.setCommon(Common.DRIVER_FEATURE, 4, Number((f >> 32n) & 0xffffffffn));
  }
  set64(off: number, v: number): void {
    // Like Linux's vp_iowrite64_twopart: low dword, then high.
    this.setCommon(off, 4, v % 2 ** 32);
    this.setCommon(off + 4, 4, Math.floor(v / 2 ** 32));
  }

  /** Enable bus mastering and memory decoding (the guest's pci_enable_device + set_master). */
  enablePci(): void {
    cfgWrite(this.dev, 0x04, 2, cfgRead(this.dev, 0x04, 2) | 0x6);
  }

  /** Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK. Returns the status read back. */
  negotiate(features: bigint = DEFAULT_DRIVER_FEATURES): number {
    this.status = 0;
    this.status = Status.ACKNOWLEDGE;
    this.status = Status.ACKNOWLEDGE | Status.DRIVER;
    this.setDriverFeatures(features & this.deviceFeatures());
    this.status = Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK;
    return this.status;
  }

  /** Set up and enable queue q with a ring of `size` in guest memory. */
  setupQueue(q: number, size?: number, vector?: number): DriverRing {
    this.setCommon(Common.QUEUE_SELECT, 2, q);
    const max = this.common(Common.QUEUE_SIZE, 2);
    const n = size ?? max;
    this.setCommon(Common.QUEUE_SIZE, 2, n);
    const ring = new DriverRing(this.mem, n);
    this.set64(Common.QUEUE_DESC, ring.desc);
    this.set64(Common.QUEUE_DRIVER, ring.avail);
    this.set64(Common.QUEUE_DEVICE, ring.used);
    if (vector !== undefined) this.setCommon(Common.QUEUE_MSIX_VECTOR, 2, vector);
    this.setCommon(Common.QUEUE_ENABLE, 2, 1);
    this.rings[q] = ring;
    return ring;
  }

  driverOk(): void {
    this.status = this.status | Status.DRIVER_OK;
  }

  /** Full bring-up: negotiate, queues, DRIVER_OK. */
  init(queues: number, opts: { features?: bigint; size?: number; msix?: boolean } = {}): DriverRing[] {
    this.enablePci();
    const st = this.negotiate(opts.features);
    if (!(st & Status.FEATURES_OK)) throw new Error(`FEATURES_OK refused (status 0x${st.toString(16)})`);
    if (opts.msix) this.setCommon(Common.CONFIG_MSIX_VECTOR, 2, queues);
    for (let q = 0; q < queues; q++) this.setupQueue(q, opts.size, opts.msix ? q : undefined);
    this.driverOk();
    return this.rings;
  }

  notify(q: number): void {
    this.write(Layout.NOTIFY + Layout.NOTIFY_MULTIPLIER * q, 2, q);
  }

  isr(): number {
    return this.read(Layout.ISR, 1);
  }
}

/** Enable MSI-X in config space and give every vector an eventfd (fake fds 100+v). */
export function enableMsix(dev: PciDevice, fds: FakeFds): number {
  const cap = dev.caps.msix!;
  const ctrl = cfgRead(dev, cap.offset + 2, 2);
  cfgWrite(dev, cap.offset + 2, 2, ctrl | 0x8000);
  const n = cap.vectors;
  dev.setIrqs({
    flags: F.EVENTFD | F.TRIGGER,
    index: IDX.MSIX,
    start: 0,
    count: n,
    fds: Array.from({ length: n }, (_, v) => 100 + v),
  });
  void fds;
  return n;
}

/** Give INTx an eventfd (fake fd 50). */
export function enableIntx(dev: PciDevice): void {
  dev.setIrqs({ flags: F.EVENTFD | F.TRIGGER, index: IDX.INTX, start: 0, count: 1, fds: [50] });
}

/** A transport's device attached to a guest, with fake fds and a recording log. */
export function attach(dev: PciDevice, guest: Guest): { log: ReturnType<typeof recordingLog> } {
  const log = recordingLog();
  dev.attachClient({ dma: guest.dma, log });
  return { log };
}

export { fakeFds, VirtioPciTransport };
