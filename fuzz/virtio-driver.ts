// The guest side of a virtio device under fuzz: guest RAM that is a memfd
// full of seeded random bytes (DMA_MAP with the fd, sealed like QEMU's) or
// client memory reached by DMA_READ/DMA_WRITE (DMA_MAP without fd), a driver
// bring-up through the common configuration, and then operations on the
// queues: well-formed and random descriptor chains, ring corruption,
// reprogrammed queue registers, doorbells, resets, and DMA_UNMAP while
// requests are in flight.
import fs from 'node:fs';
import * as native from '../native/index.js';
import { Command, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_DATA_EVENTFD, VFIO_USER_F_NO_REPLY } from '../protocol/constants.js';
import { encodeDmaMapRequest } from '../protocol/commands/dma-map.js';
import { encodeDmaUnmapRequest } from '../protocol/commands/dma-unmap.js';
import { encodeRegionReadRequest, encodeRegionWriteRequest } from '../protocol/commands/region-access.js';
import { encodeSetIrqsRequest } from '../protocol/commands/set-irqs.js';
import { CapType, Common, Desc, Status } from '../devices/virtio/constants.js';
import { BlkType } from '../devices/virtio-blk/constants.js';
import { Layout, MSIX_BAR, VIRTIO_BAR } from '../devices/virtio/transport.js';
import { CapId } from '../devices/pci/regs.js';
import type { FuzzMessage } from './frame.js';
import { sealedMemfd, type FdMaker } from './fds.js';
import type { MessageFactory } from './messages.js';
import type { Prng } from './prng.js';

/** Sends a message; `ask` also waits for its reply payload (null: error reply or no reply). */
export interface Link {
  send(m: FuzzMessage): void;
  ask(m: FuzzMessage): Promise<Buffer | null>;
}

/** Guest RAM: IOVA base and size. */
export const GUEST_BASE = 0x100000;
export const GUEST_SIZE = 1 << 20;
/** Where an unsealed memfd is mapped and then truncated under the device. */
const TRUNC_BASE = 0x4000000;
const TRUNC_SIZE = 0x10000;
/** Per queue q: descriptor table at q*QUEUE_STRIDE, avail ring +AVAIL, used ring +USED. */
const QUEUE_STRIDE = 0x10000;
const AVAIL = 0x4000;
const USED = 0x8000;
/** Request buffers live above the rings. */
const DATA_START = 0x40000;
const MAX_QUEUES = 4;

interface QueueState { size: number; availIdx: number; nextDesc: number }

/** The guest memory and driver state of one connection. */
export class VirtioDriver {
  /** The guest RAM bytes the fuzzer writes rings into (the memfd mapping, or the DMA-message backing). */
  private mem: Uint8Array;
  /** The memfd behind `mem` (-1 when guest RAM is reached by messages only). */
  private readonly memfd: number;
  private readonly mapping: ArrayBuffer | null;
  private queues: QueueState[] = [];
  private mapped = false;
  private released = false;
  private pciCfgCap: number | null = null;

  constructor(private readonly rng: Prng, private readonly f: MessageFactory, private readonly fds: FdMaker,
    private readonly kind: string, withFd: boolean) {
    if (withFd) {
      this.memfd = sealedMemfd(GUEST_SIZE);
      this.mapping = native.mmap(this.memfd, 0, GUEST_SIZE, native.PROT_READ | native.PROT_WRITE);
      this.mem = new Uint8Array(this.mapping);
    } else {
      this.memfd = -1;
      this.mapping = null;
      this.mem = new Uint8Array(GUEST_SIZE);
    }
    rng.fill(this.mem);
  }

  /** Guest bytes at `iova` for a DMA_READ/WRITE message, or null outside guest RAM. */
  view(iova: bigint, count: number): Uint8Array | null {
    if (!this.mapped || this.memfd >= 0) return null;
    const at = iova - BigInt(GUEST_BASE);
    if (at < 0n || at + BigInt(count) > BigInt(GUEST_SIZE)) return null;
    return this.mem.subarray(Number(at), Number(at) + count);
  }

  /** Used-ring index sum over the queues: requests the device completed (mod 2^16 per queue). */
  completions(): number {
    let n = 0;
    this.queues.forEach((_, q) => {
      const at = q * QUEUE_STRIDE + USED + 2;
      n += this.mem[at]! | (this.mem[at + 1]! << 8);
    });
    return n;
  }

  /** Unmaps and closes guest RAM; an operation still under way writes to scratch bytes instead. */
  release(): void {
    if (this.mapping) native.munmap(this.mapping);
    if (this.memfd >= 0) native.close(this.memfd);
    this.mem = new Uint8Array(GUEST_SIZE);
    this.mapped = false;
    this.released = true;
  }

  /** DMA_MAP of guest RAM. */
  map(link: Link): Promise<Buffer | null> {
    if (this.released) return Promise.resolve(null);
    this.mapped = true;
    const fds = this.memfd >= 0 ? [this.fds.adopt(dup(this.memfd), 'memfd')] : [];
    return link.ask(this.f.valid(Command.DMA_MAP, encodeDmaMapRequest({ addr: BigInt(GUEST_BASE), size: BigInt(GUEST_SIZE) }), fds));
  }

  /** What Linux's virtio_pci probe does, with seeded variations. */
  async bringUp(link: Link): Promise<void> {
    const r = this.rng;
    await this.map(link);
    await link.ask(this.cfgWrite(4, 2, 0x6));
    await this.findPciCfgCap(link);
    if (r.chance(0.5)) {
      const efds = this.fds.many(2, 'eventfd');
      link.send(this.f.valid(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({
        flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_MSIX_IRQ_INDEX, start: 0, count: 2,
      }), efds));
      const cap = await this.read(link, VFIO_PCI_CONFIG_REGION_INDEX, 0x34, 1);
      if (cap !== null) link.send(this.cfgWrite(cap + 2, 2, 0x8000));
    }
    this.post(link, Common.DEVICE_STATUS, 1, 0);
    this.post(link, Common.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER);
    this.post(link, Common.DEVICE_FEATURE_SELECT, 4, 0);
    const lo = (await this.read(link, VIRTIO_BAR, Common.DEVICE_FEATURE, 4)) ?? 0;
    this.post(link, Common.DEVICE_FEATURE_SELECT, 4, 1);
    const hi = (await this.read(link, VIRTIO_BAR, Common.DEVICE_FEATURE, 4)) ?? 0;
    const mask = r.chance(0.8) ? 0xffffffff : r.u32();
    this.post(link, Common.DRIVER_FEATURE_SELECT, 4, 0);
    this.post(link, Common.DRIVER_FEATURE, 4, (lo & mask) >>> 0);
    this.post(link, Common.DRIVER_FEATURE_SELECT, 4, 1);
    this.post(link, Common.DRIVER_FEATURE, 4, r.chance(0.95) ? hi : r.u32());
    this.post(link, Common.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
    const nq = Math.min((await this.read(link, VIRTIO_BAR, Common.NUM_QUEUES, 2)) ?? 1, MAX_QUEUES);
    this.queues = [];
    for (let q = 0; q < nq; q++) {
      this.post(link, Common.QUEUE_SELECT, 2, q);
      let size = (await this.read(link, VIRTIO_BAR, Common.QUEUE_SIZE, 2)) ?? 0;
      if (size > 256 || r.chance(0.2)) {
        size = r.pick([1, 2, 4, 8, 16, 64, 256]);
        this.post(link, Common.QUEUE_SIZE, 2, size);
      }
      const base = GUEST_BASE + q * QUEUE_STRIDE;
      this.post64(link, Common.QUEUE_DESC, BigInt(base));
      this.post64(link, Common.QUEUE_DRIVER, BigInt(base + AVAIL));
      this.post64(link, Common.QUEUE_DEVICE, BigInt(base + USED));
      this.post(link, Common.QUEUE_MSIX_VECTOR, 2, r.chance(0.8) ? q : r.u32Field() & 0xffff);
      this.post(link, Common.QUEUE_ENABLE, 2, 1);
      this.mem.fill(0, q * QUEUE_STRIDE + AVAIL, q * QUEUE_STRIDE + AVAIL + 6 + 2 * size);
      this.mem.fill(0, q * QUEUE_STRIDE + USED, q * QUEUE_STRIDE + USED + 6 + 8 * size);
      this.queues.push({ size, availIdx: 0, nextDesc: 0 });
    }
    this.post(link, Common.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
  }

  /** One seeded queue operation. */
  async op(link: Link): Promise<void> {
    const r = this.rng;
    const roll = r.below(1000);
    if (roll < 550) return this.submit(link, r.range(1, 4));
    if (roll < 650) return this.corrupt(link);
    if (roll < 760) return this.reprogram(link);
    if (roll < 830) return this.kick(link, r.chance(0.8) ? r.below(Math.max(1, this.queues.length)) : r.u32Field() & 0xffff);
    if (roll < 860) {
      link.send(this.regionRead(VIRTIO_BAR, r.pick([Layout.ISR, Layout.DEVICE + r.below(64), r.below(Common.SIZE)]), r.pick([1, 2, 4, 8])));
      return;
    }
    if (roll < 900) return this.sideDoor(link);
    if (roll < 940) {
      link.send(this.f.valid(Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: BigInt(GUEST_BASE), size: BigInt(GUEST_SIZE) })));
      this.mapped = false;
      return this.submit(link, 2);
    }
    if (roll < 975) {
      await this.map(link);
      return;
    }
    if (roll < 998) return this.bringUp(link);
    return this.truncatedMemfd(link);
  }

  /** Well-formed (often) or random (sometimes) descriptor chains on a queue, then its doorbell. */
  private submit(link: Link, n: number): void {
    if (this.queues.length === 0) return;
    const qi = this.rng.below(this.queues.length);
    const q = this.queues[qi]!;
    for (let i = 0; i < n; i++) {
      const head = this.rng.chance(0.85) ? this.chain(qi, q, this.requestBuffers()) : this.randomChain(qi, q);
      const avail = qi * QUEUE_STRIDE + AVAIL;
      this.put16(avail + 4 + 2 * (q.availIdx % q.size), head);
      q.availIdx = (q.availIdx + 1) & 0xffff;
      this.put16(avail + 2, q.availIdx);
    }
    this.kick(link, qi);
  }

  /** The buffers of one request: blk header/data/status, or rng's write buffers. */
  private requestBuffers(): Array<{ addr: number; len: number; write: boolean }> {
    const r = this.rng;
    const bufs: Array<{ addr: number; len: number; write: boolean }> = [];
    const data = (len: number, write: boolean) => bufs.push({ addr: this.dataAddr(len), len, write });
    if (this.kind === 'blk') {
      const type = r.chance(0.9) ? r.pick([BlkType.IN, BlkType.OUT, BlkType.FLUSH, BlkType.GET_ID, BlkType.DISCARD, BlkType.WRITE_ZEROES]) : r.u32Field();
      const hdr = this.dataAddr(16);
      const at = hdr - GUEST_BASE;
      const sector = r.chance(0.8) ? BigInt(r.below(8192 + 16)) : r.u64Field();
      if (at >= 0 && at + 16 <= GUEST_SIZE) {
        const dv = new DataView(this.mem.buffer, this.mem.byteOffset);
        dv.setUint32(at, type >>> 0, true);
        dv.setUint32(at + 4, 0, true);
        dv.setBigUint64(at + 8, sector, true);
      }
      bufs.push({ addr: hdr, len: r.chance(0.9) ? 16 : r.pick([0, 8, 15, 17]), write: false });
      const len = r.pick([512, 1024, 4096, 16, 1, 511, 8192]);
      if (type === BlkType.OUT || type === BlkType.DISCARD || type === BlkType.WRITE_ZEROES) {
        data(type === BlkType.OUT ? len : 16 * r.range(0, 3), false);
      } else if (type !== BlkType.FLUSH) {
        for (let i = r.range(1, 3); i > 0; i--) data(len, true);
      }
      data(1, true);
    } else {
      for (let i = r.range(1, 3); i > 0; i--) data(r.pick([1, 8, 64, 4096, 65536]), r.chance(0.95));
    }
    return bufs;
  }

  /** A guest address for `len` bytes: inside guest RAM mostly, sometimes outside or straddling its end. */
  private dataAddr(len: number): number {
    const r = this.rng;
    if (r.chance(0.05)) return r.pick([0, GUEST_BASE - 8, GUEST_BASE + GUEST_SIZE - 1, TRUNC_BASE, 0xfffff000, r.u32()]);
    const room = GUEST_SIZE - DATA_START - Math.min(len, GUEST_SIZE - DATA_START);
    return GUEST_BASE + DATA_START + (r.below(room + 1) & ~0xf);
  }

  /** Writes `bufs` as a chain (direct or indirect) into queue q's table; returns the head. */
  private chain(qi: number, q: QueueState, bufs: Array<{ addr: number; len: number; write: boolean }>): number {
    const table = qi * QUEUE_STRIDE;
    if (bufs.length > 1 && this.rng.chance(0.2)) {
      const ind = this.dataAddr(16 * bufs.length);
      const at = ind - GUEST_BASE;
      if (at >= 0 && at + 16 * bufs.length <= GUEST_SIZE) {
        bufs.forEach((b, i) => this.desc(at + 16 * i, b.addr, b.len, (b.write ? Desc.WRITE : 0) | (i + 1 < bufs.length ? Desc.NEXT : 0), i + 1));
        const head = this.slot(q);
        this.desc(table + 16 * head, ind, 16 * bufs.length, Desc.INDIRECT, 0);
        return head;
      }
    }
    const slots = bufs.map(() => this.slot(q));
    bufs.forEach((b, i) => this.desc(table + 16 * slots[i]!, b.addr, b.len,
      (b.write ? Desc.WRITE : 0) | (i + 1 < bufs.length ? Desc.NEXT : 0), slots[i + 1] ?? 0));
    return slots[0]!;
  }

  /** Random descriptors (loops, bad next, huge lengths, nested indirect). */
  private randomChain(qi: number, q: QueueState): number {
    const r = this.rng;
    const table = qi * QUEUE_STRIDE;
    const head = this.slot(q);
    let at = head;
    for (let i = r.range(1, 4); i > 0; i--) {
      const next = r.chance(0.7) ? this.slot(q) : r.below(0x10000);
      const flags = r.below(8);
      const addr = r.chance(0.5) ? this.dataAddr(64) : r.u32();
      this.desc(table + 16 * at, addr, r.chance(0.5) ? r.below(8192) : r.u32Field(), flags, next);
      if (next >= q.size) break;
      at = next;
    }
    return r.chance(0.9) ? head : r.below(0x10000);
  }

  private slot(q: QueueState): number {
    const s = q.nextDesc % q.size;
    q.nextDesc = (q.nextDesc + 1) % q.size;
    return s;
  }

  /** Random bytes over a ring (indices, flags, entries). */
  private corrupt(link: Link): void {
    const r = this.rng;
    const qi = r.below(Math.max(1, this.queues.length));
    const at = qi * QUEUE_STRIDE + r.pick([0, AVAIL, AVAIL + 2, USED]) + r.below(64);
    this.mem.set(r.bytes(r.range(1, 16)).subarray(0, Math.max(0, GUEST_SIZE - at)), at);
    if (r.chance(0.3) && this.queues[qi]) this.queues[qi]!.availIdx = r.below(0x10000);
    this.kick(link, qi);
  }

  /** A common configuration register set to a random or boundary value (posted, as QEMU sends it). */
  private reprogram(link: Link): void {
    const r = this.rng;
    const reg = r.pick([Common.QUEUE_SELECT, Common.QUEUE_SIZE, Common.QUEUE_ENABLE, Common.QUEUE_DESC, Common.QUEUE_DRIVER,
      Common.QUEUE_DEVICE, Common.QUEUE_MSIX_VECTOR, Common.DEVICE_STATUS, Common.CONFIG_MSIX_VECTOR,
      Common.DRIVER_FEATURE, Common.DRIVER_FEATURE_SELECT, Common.DEVICE_FEATURE_SELECT, Common.QUEUE_RESET]);
    const width = r.pick([1, 2, 4, 8]);
    const v = reg === Common.QUEUE_DESC || reg === Common.QUEUE_DRIVER || reg === Common.QUEUE_DEVICE
      ? r.pick([GUEST_BASE + r.below(GUEST_SIZE), GUEST_BASE + GUEST_SIZE - 2, TRUNC_BASE, 0, r.u32Field()])
      : r.u32Field();
    this.post(link, reg, Math.min(width, 4), v);
  }

  /** The doorbell of queue `q` (posted), sometimes with a random value or width. */
  private kick(link: Link, q: number): void {
    const r = this.rng;
    this.post(link, Layout.NOTIFY - Layout.COMMON + Layout.NOTIFY_MULTIPLIER * (q & 0xfff), r.chance(0.9) ? 2 : r.pick([1, 4]), r.chance(0.9) ? q : r.u32Field());
  }

  /**
   * The other ways into the device: device configuration writes, MSI-X
   * table and PBA accesses (BAR1), and the VIRTIO_PCI_CAP_PCI_CFG window in
   * config space that reaches BAR4 through pci_cfg_data.
   */
  private sideDoor(link: Link): void {
    const r = this.rng;
    const width = r.pick([1, 2, 4]);
    const data = r.bytes(r.chance(0.9) ? width : r.pick([3, 8]));
    const write = (region: number, offset: number, posted: boolean) => link.send(this.f.valid(Command.REGION_WRITE,
      encodeRegionWriteRequest({ offset, region, data }), [], posted ? VFIO_USER_F_NO_REPLY : 0));
    switch (r.below(4)) {
      case 0: return write(VIRTIO_BAR, Layout.DEVICE + r.below(72), true);
      case 1: return write(MSIX_BAR, r.chance(0.8) ? 16 * r.below(8) + 4 * r.below(4) : r.pick([0x800, 0x7fc, 0xffc, r.below(0x1000)]), true);
      case 2: {
        // pci_cfg_data: cap +4 bar, +8 offset, +12 length, +16 data (the cap's place is read at bring-up).
        const c = this.pciCfgCap;
        if (c === null) return;
        link.send(this.cfgWrite(c + 4, 1, r.chance(0.8) ? VIRTIO_BAR : r.below(256)));
        link.send(this.cfgWrite(c + 8, 4, r.chance(0.8) ? r.pick([Layout.COMMON, Layout.ISR, Layout.DEVICE, Layout.NOTIFY]) + r.below(0x40) : r.u32Field()));
        link.send(this.cfgWrite(c + 12, 4, r.chance(0.8) ? width : r.u32Field()));
        if (r.chance(0.5)) return write(VFIO_PCI_CONFIG_REGION_INDEX, c + 16, false);
        link.send(this.regionRead(VFIO_PCI_CONFIG_REGION_INDEX, c + 16 + r.below(4), r.pick([1, 2, 4])));
        return;
      }
      default: link.send(this.regionRead(MSIX_BAR, r.pick([0, 0x800, 16 * r.below(8)]), r.pick([1, 4, 8, 16])));
    }
  }

  /** Finds VIRTIO_PCI_CAP_PCI_CFG in the capability list. */
  private async findPciCfgCap(link: Link): Promise<void> {
    const p = await link.ask(this.regionRead(VFIO_PCI_CONFIG_REGION_INDEX, 0, 256));
    if (!p || p.length < 16 + 256) return;
    const cfg = p.subarray(16);
    for (let at = cfg[0x34]!, n = 0; at >= 0x40 && at < 0xfc && n < 48; at = cfg[at + 1]!, n++) {
      if (cfg[at] === CapId.VENDOR && cfg[at + 3] === CapType.PCI_CFG) {
        this.pciCfgCap = at;
        return;
      }
    }
  }

  /** An unsealed memfd mapped for DMA, then truncated while the device may use it. */
  private async truncatedMemfd(link: Link): Promise<void> {
    const fd = native.memfdCreate('fuzz-truncated', TRUNC_SIZE);
    await link.ask(this.f.valid(Command.DMA_MAP, encodeDmaMapRequest({ addr: BigInt(TRUNC_BASE), size: BigInt(TRUNC_SIZE) }), [this.fds.adopt(dup(fd), 'memfd-unsealed')]));
    native.ftruncate(fd, 0);
    native.close(fd);
    if (this.queues.length === 0) return;
    const q = this.queues[0]!;
    const head = this.chain(0, q, [{ addr: TRUNC_BASE, len: 16, write: false }, { addr: TRUNC_BASE + 4096, len: 512, write: true }, { addr: TRUNC_BASE + 8192, len: 1, write: true }]);
    this.put16(AVAIL + 4 + 2 * (q.availIdx % q.size), head);
    q.availIdx = (q.availIdx + 1) & 0xffff;
    this.put16(AVAIL + 2, q.availIdx);
    this.kick(link, 0);
  }

  private desc(at: number, addr: number, len: number, flags: number, next: number): void {
    if (at < 0 || at + 16 > GUEST_SIZE) return;
    const dv = new DataView(this.mem.buffer, this.mem.byteOffset);
    dv.setBigUint64(at, BigInt(addr >>> 0), true);
    dv.setUint32(at + 8, len >>> 0, true);
    dv.setUint16(at + 12, flags, true);
    dv.setUint16(at + 14, next & 0xffff, true);
  }

  private put16(at: number, v: number): void {
    this.mem[at] = v;
    this.mem[at + 1] = v >>> 8;
  }

  private regionRead(region: number, offset: number, count: number): FuzzMessage {
    return this.f.valid(Command.REGION_READ, encodeRegionReadRequest({ offset, region, count }));
  }

  private async read(link: Link, region: number, offset: number, count: number): Promise<number | null> {
    const p = await link.ask(this.regionRead(region, region === VIRTIO_BAR ? Layout.COMMON + offset : offset, count));
    return p && p.length >= 16 + count ? p.readUIntLE(16, count) : null;
  }

  private cfgWrite(offset: number, count: number, v: number): FuzzMessage {
    const data = Buffer.alloc(count);
    data.writeUIntLE(v, 0, count);
    return this.f.valid(Command.REGION_WRITE, encodeRegionWriteRequest({ offset, region: VFIO_PCI_CONFIG_REGION_INDEX, data }));
  }

  /** A posted BAR4 write at common-config offset `reg` (NOTIFY offsets are relative to COMMON too). */
  private post(link: Link, reg: number, count: number, v: number): void {
    const data = Buffer.alloc(count);
    data.writeUIntLE(count === 4 ? v >>> 0 : v & ((1 << (8 * count)) - 1), 0, count);
    const m = this.f.valid(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: Layout.COMMON + reg, region: VIRTIO_BAR, data }), [], VFIO_USER_F_NO_REPLY);
    link.send(m);
  }

  private post64(link: Link, reg: number, v: bigint): void {
    this.post(link, reg, 4, Number(v & 0xffffffffn));
    this.post(link, reg + 4, 4, Number(v >> 32n));
  }
}

/** A second fd on the same memfd: a message's fds are closed once sent, the driver keeps its own. */
function dup(fd: number): number {
  return fs.openSync(`/proc/self/fd/${fd}`, 'r+');
}
