// An NVMe controller (NVM Express Base 2.0 over PCIe) on raw image files,
// one namespace per image. The PCI function (class 01 08 02) has BAR0 with
// the registers and doorbells, BAR4 with the MSI-X table and PBA, and the
// PM, MSI-X and PCIe (with FLR) capabilities, plus INTA for the fallback.
//
// Doorbell writes are posted: they only move a tail or head and start the
// queue's fetch loop, which decodes entries (a mapped view of the SQ where
// memory is mapped, DMA messages otherwise) and runs each command at once;
// many commands are in flight per queue and every queue runs concurrently.
// A completion is written to its CQ as soon as its command ends; interrupts
// go out once per event-loop turn for every CQ that got entries, so
// completions that end together share one interrupt.
//
// Controller states (Base 3.6): CC.EN 0→1 checks the admin queue and CC,
// creates the admin queues and sets CSTS.RDY (a bad configuration sets
// CSTS.CFS instead); CC.EN 1→0 drops every queue and in-flight completion;
// CC.SHN waits for I/O, syncs the images and reports shutdown complete.
// A broken queue (an SQ or CQ in unmapped memory) is Controller Fatal
// Status; a bad data pointer fails only its command.
import { performance } from 'node:perf_hooks';
import * as native from '../../native/index.js';
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, type DeviceDma } from '../../iommu/device-dma.js';
import type { Logger } from '../device.js';
import type { FdOps } from '../pci/fd-ops.js';
import { PciDevice } from '../pci/pci-device.js';
import { fdatasync } from '../block/file-io.js';
import { AdminCommands, type AdminHost } from './admin.js';
import {
  AsyncEvent,
  CC,
  CQE_SIZE,
  CSTS,
  DEFAULT_DEVICE_ID,
  DEFAULT_VENDOR_ID,
  LogId,
  MDTS,
  MIN_PAGE_SHIFT,
  MPS_MAX,
  NVME_CLASS_CODE,
  Reg,
  SQE_SIZE,
  type Status,
} from './constants.js';
import { AsyncEvents } from './events.js';
import { Features } from './features.js';
import type { ControllerIdentity } from './identify.js';
import { CompletionInterrupts } from './interrupts.js';
import { IoCommands, type IoHost } from './io.js';
import type { DeviceFaultHooks } from '../fault-hooks.js';
import type { HealthInputs } from './log-pages.js';
import { Namespace } from './namespace.js';
import { Command, CompletionQueue, SubmissionQueue, writeCqe, type ShadowSlots } from './queues.js';
import { Registers, type RegisterHost } from './registers.js';
import { ShadowDoorbells } from './shadow-doorbells.js';
import { newCounters, type NvmeCounters } from './stats.js';

export interface NvmeOptions {
  /** Raw image files, one namespace each (nsid 1, 2, ...). */
  disks: string[];
  /** Bytes; images that do not exist are created at this size. */
  size?: number;
  /** I/O queue pairs (1..64, default 4). */
  queues?: number;
  /** Largest queue in entries (CAP.MQES + 1; 2..4096, default 1024). */
  queueSize?: number;
  /** LBA size of every namespace: 512 (default) or 4096. */
  lbaSize?: number;
  /** Serial number (at most 20 ASCII characters; default from the first image's name). */
  serial?: string;
  /** Namespaces are write protected. */
  readonly?: boolean;
  /** PCI vendor and device id (subsystem ids follow them). */
  vendorId?: number;
  deviceId?: number;
  /** Wall clock in ms (the Timestamp feature); default Date.now. */
  clock?: () => number;
  /** How long (µs) to keep reading shadow doorbells after the last completion before publishing EventIdx (default 1000). */
  shadowPollUs?: number;
  /** Socket-free fd operations (tests). */
  fdOps?: FdOps;
  log?: Logger;
}

const MSIX_BAR = 4;
const MAX_NAMESPACES = 16;

function checkInt(name: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`${name} must be ${min}..${max}, got ${v}`);
  return v;
}

export class NvmeController implements AdminHost, IoHost, RegisterHost {
  readonly kind = 'nvme';
  readonly device: PciDevice;
  readonly namespaces: Namespace[];
  readonly regs: Registers;
  readonly features: Features;
  readonly events = new AsyncEvents();
  readonly counters: NvmeCounters = newCounters();
  readonly identity: ControllerIdentity;
  readonly maxQueues: number;
  readonly maxQueueEntries: number;
  readonly vectors: number;
  readonly maxTransfer = (1 << MDTS) << MIN_PAGE_SHIFT;
  private readonly sqs: (SubmissionQueue | undefined)[] = [];
  private readonly cqs: (CompletionQueue | undefined)[] = [];
  private readonly irq: CompletionInterrupts;
  private readonly admin: AdminCommands;
  private readonly io: IoCommands;
  private readonly shadow: ShadowDoorbells;
  private readonly clock: () => number;
  private readonly bornAt: number;
  private readonly pollWindowMs: number;
  private readonly fallbackLog: Logger;
  /** Bumped by every reset: completions of commands fetched before it are dropped. */
  private epoch = 0;
  private flushScheduled = false;
  private readonly flushBound = () => this.flush();

  constructor(options: NvmeOptions) {
    const disks = options?.disks;
    if (!Array.isArray(disks) || disks.length === 0 || disks.some((d) => typeof d !== 'string' || d === '')) {
      throw new Error("nvme needs at least one 'disk' image path");
    }
    if (disks.length > MAX_NAMESPACES) throw new RangeError(`at most ${MAX_NAMESPACES} disks, got ${disks.length}`);
    this.maxQueues = checkInt('queues', options.queues ?? 4, 1, 64);
    this.maxQueueEntries = checkInt('queueSize', options.queueSize ?? 1024, 2, 4096);
    const lbaSize = options.lbaSize ?? 512;
    if (lbaSize !== 512 && lbaSize !== 4096) throw new RangeError(`lbaSize must be 512 or 4096, got ${lbaSize}`);
    const serial = options.serial ?? defaultSerial(disks[0]!);
    if (!/^[\x20-\x7e]{1,20}$/.test(serial)) throw new RangeError('serial must be 1..20 printable ASCII characters');
    const vendor = checkInt('vendorId', options.vendorId ?? DEFAULT_VENDOR_ID, 0, 0xfffe);
    const device = checkInt('deviceId', options.deviceId ?? DEFAULT_DEVICE_ID, 0, 0xffff);
    if (options.shadowPollUs !== undefined) checkInt('shadowPollUs', options.shadowPollUs, 0, 1_000_000);
    this.pollWindowMs = (options.shadowPollUs ?? 1000) / 1000;
    this.clock = options.clock ?? Date.now;
    this.bornAt = this.clock();
    this.fallbackLog = options.log ?? { error() {}, warn() {}, info() {}, debug() {} };
    this.vectors = this.maxQueues + 1;
    this.identity = {
      vendor,
      subsystemVendor: vendor,
      serial,
      model: 'vfio-user-ts NVMe controller',
      firmware: '1.0',
      maxCommands: this.maxQueueEntries,
    };

    const opened: Namespace[] = [];
    try {
      for (const [i, disk] of disks.entries()) opened.push(new Namespace(i + 1, disk, options.size, lbaSize, options.readonly ?? false));
    } catch (e) {
      for (const ns of opened) ns.close();
      throw e;
    }
    this.namespaces = opened;

    this.regs = new Registers(this.maxQueueEntries, this, 2 * (this.maxQueues + 1));
    this.features = new Features(this.maxQueues, this.vectors, this.clock);
    this.shadow = new ShadowDoorbells(() => this.dma);
    this.admin = new AdminCommands(this);
    this.io = new IoCommands(this);

    const tableSize = this.vectors * 16;
    const pbaOffset = Math.max(0x1000, Math.ceil(tableSize / 0x1000) * 0x1000);
    let msixBarSize = 0x2000;
    while (msixBarSize < pbaOffset + Math.ceil(this.vectors / 64) * 8) msixBarSize *= 2;
    let bar0 = 0x4000;
    while (bar0 < Reg.DBS + 8 * (this.maxQueues + 1)) bar0 *= 2;
    this.device = new PciDevice(
      {
        name: 'nvme',
        ids: { vendor, device, subsystemVendor: vendor, subsystem: device, classCode: NVME_CLASS_CODE, revision: 2 },
        bars: [
          {
            index: 0,
            kind: 'mem64',
            size: bar0,
            handlers: {
              read: (off, size) => this.regs.read(off, size),
              write: (off, data, value) => this.regs.write(off, data, value),
            },
          },
          { index: MSIX_BAR, kind: 'mem32', size: msixBarSize },
        ],
        interruptPin: 1,
        capabilities: [
          { kind: 'pm' },
          { kind: 'msix', vectors: this.vectors, table: { bar: MSIX_BAR, offset: 0 }, pba: { bar: MSIX_BAR, offset: pbaOffset } },
          { kind: 'express', flr: true },
        ],
        reset: () => this.reset(),
        detach: () => this.reset(),
      },
      { fdOps: options.fdOps, log: options.log },
    );
    const pci = this.device;
    this.irq = new CompletionInterrupts(
      {
        get msixEnabled() {
          return pci.caps.msix?.enabled ?? false;
        },
        msixNotify: (v) => void pci.msixNotify(v),
        setIntx: (level) => void pci.setIntx(level),
      },
      this.features,
      this.counters,
      () => this.liveCqs(),
    );
  }

  // ---- host-side API ----

  /** Counters: commands (admin + I/O), per kind, doorbell writes, shadow doorbells on (1) or off (0). */
  stats(): Record<string, number> {
    return { ...this.counters };
  }

  /** Close the images (later I/O fails with Invalid Namespace). */
  close(): void {
    for (const ns of this.namespaces) ns.close();
  }

  /** True while any command is in flight (tests, orderly shutdown). */
  get busy(): boolean {
    return this.sqs.some((sq) => sq !== undefined && sq.inFlight > (sq.id === 0 ? this.events.outstanding : 0));
  }

  // ---- what the command handlers see ----

  get log(): Logger {
    return this.device?.client?.log ?? this.fallbackLog;
  }

  get dma(): DeviceDma | undefined {
    return this.device.dma;
  }

  get faults(): DeviceFaultHooks | undefined {
    return this.device?.client?.faults;
  }

  get pageSize(): number {
    return this.regs.pageSize;
  }

  get writeCache(): boolean {
    return (this.features.state.volatileWriteCache & 1) === 1;
  }

  sq(id: number): SubmissionQueue | undefined {
    return this.sqs[id];
  }

  cq(id: number): CompletionQueue | undefined {
    return this.cqs[id];
  }

  health(): HealthInputs {
    const c = this.counters;
    return {
      reads: c.reads,
      writes: c.writes,
      bytesRead: c.bytesRead,
      bytesWritten: c.bytesWritten,
      powerOnSeconds: Math.max(0, (this.clock() - this.bornAt) / 1000),
      firmware: this.identity.firmware,
    };
  }

  createCq(id: number, base: number, size: number, ien: boolean, vector: number): void {
    const cq = new CompletionQueue(id, base, size, ien, vector);
    this.cqs[id] = cq;
    this.attachShadow(undefined, cq);
  }

  createSq(id: number, base: number, size: number, cq: CompletionQueue): void {
    const sq = new SubmissionQueue(id, base, size, cq);
    cq.users++;
    this.sqs[id] = sq;
    this.attachShadow(sq, undefined);
  }

  deleteSq(sq: SubmissionQueue): Promise<void> | void {
    sq.deleted = true; // nothing more is fetched; what is in flight still completes
    const gone = () => {
      if (this.sqs[sq.id] === sq) {
        this.sqs[sq.id] = undefined;
        sq.cq.users--;
      }
    };
    if (sq.inFlight === 0) return gone();
    return new Promise<void>((resolve) => {
      sq.onDrained = () => {
        gone();
        resolve();
      };
    });
  }

  deleteCq(cq: CompletionQueue): void {
    this.cqs[cq.id] = undefined;
    this.irq.updateIntx();
  }

  configureShadowDoorbells(dbs: number, eis: number): void {
    this.shadow.enable(dbs, eis);
    this.counters.shadowDoorbells = 1;
    this.counters.shadowDoorbellsActive = 1;
    for (const sq of this.sqs) if (sq && sq.id > 0) this.attachShadow(sq, undefined);
    for (const cq of this.cqs) if (cq && cq.id > 0) this.attachShadow(undefined, cq);
  }

  /** Give an I/O queue its shadow slots and a first EventIdx. */
  private attachShadow(sq: SubmissionQueue | undefined, cq: CompletionQueue | undefined): void {
    if (sq) {
      sq.shadow = this.shadow.slots(2 * sq.id);
      if (sq.shadow) this.publishSqEventIdx(sq);
    }
    if (cq) {
      cq.shadow = this.shadow.slots(2 * cq.id + 1);
      if (cq.shadow) this.quietCq(cq);
    }
  }

  // ---- registers ----

  ccWritten(old: number, cc: number): void {
    const wasOn = (old & CC.EN) !== 0;
    const on = (cc & CC.EN) !== 0;
    if (wasOn && !on) {
      this.controllerReset();
      return;
    }
    if (!wasOn && on) this.enable(cc);
    const shn = (cc >>> CC.SHN_SHIFT) & CC.SHN_MASK;
    const oldShn = (old >>> CC.SHN_SHIFT) & CC.SHN_MASK;
    if (shn !== CC.SHN_NONE && oldShn === CC.SHN_NONE) void this.shutdown(shn === CC.SHN_ABRUPT);
    else if (shn === CC.SHN_NONE && oldShn !== CC.SHN_NONE) this.setShutdownStatus(CSTS.SHST_NORMAL);
  }

  interruptMask(set: number, clear: number): void {
    // INTMS/INTMC are for INTx and MSI; with MSI-X on they are ignored.
    if (this.device.caps.msix?.enabled) return;
    this.regs.intMask = ((this.regs.intMask | set) & ~clear) >>> 0;
    this.irq.mask = this.regs.intMask;
    this.irq.updateIntx();
  }

  doorbell(index: number, value: number): void {
    this.counters.mmioDoorbellWrites++;
    if ((this.regs.csts & (CSTS.RDY | CSTS.CFS)) !== CSTS.RDY) return;
    const qid = index >>> 1;
    if (index & 1) {
      const cq = this.cqs[qid];
      if (!cq) return this.invalidDoorbell(AsyncEvent.INFO_INVALID_DB_REGISTER, `CQ ${qid} head`);
      if (value >= cq.size) return this.invalidDoorbell(AsyncEvent.INFO_INVALID_DB_VALUE, `CQ ${qid} head ${value}`);
      const shadowHead = this.shadowForMmio(cq.shadow, value);
      if (!cq.acceptHead(shadowHead >= 0 ? shadowHead : value)) {
        if (cq.shadow) return; // the shadow slot is the host's word; it did not move
        return this.invalidDoorbell(AsyncEvent.INFO_INVALID_DB_VALUE, `CQ ${qid} head ${value}`);
      }
      if (cq.shadow) this.quietCq(cq);
      this.cqHeadMoved(cq);
      return;
    }
    const sq = this.sqs[qid];
    if (!sq) return this.invalidDoorbell(AsyncEvent.INFO_INVALID_DB_REGISTER, `SQ ${qid} tail`);
    if (value >= sq.size) return this.invalidDoorbell(AsyncEvent.INFO_INVALID_DB_VALUE, `SQ ${qid} tail ${value}`);
    const shadowTail = this.shadowForMmio(sq.shadow, value);
    const tail = shadowTail >= 0 ? shadowTail : sq.tailFromMmio(value);
    if (!sq.acceptTail(tail)) return this.invalidDoorbell(AsyncEvent.INFO_INVALID_DB_VALUE, `SQ ${qid} tail ${tail}`);
    sq.mmioTail = value;
    sq.eventIdx = -1; // being polled again until it goes idle
    sq.lastActive = performance.now();
    this.pump(sq);
  }

  /**
   * What an MMIO doorbell write of a shadowed queue stands for: the shadow
   * slot, or -1 when it cannot be read at once. The driver writes the slot
   * before it rings, so the slot is at least as new as the posted MMIO
   * write, which can arrive after later values were already read from the
   * slot: taken as is, an old SQ tail would announce a whole lap of stale
   * entries and an old CQ head would free unread entries.
   */
  private shadowForMmio(slots: ShadowSlots | undefined, value: number): number {
    const v = slots ? this.shadow.read(slots) : -1;
    if (v >= 0 && v !== value) this.counters.lateMmioDoorbells++;
    return v;
  }

  private invalidDoorbell(info: number, what: string): void {
    this.log.debug(`nvme: invalid doorbell write: ${what}`);
    this.events.post(AsyncEvent.TYPE_ERROR, info, LogId.ERROR);
  }

  // ---- controller states ----

  private enable(cc: number): void {
    const r = this.regs;
    const asqs = (r.aqa & 0xfff) + 1;
    const acqs = ((r.aqa >>> 16) & 0xfff) + 1;
    const mps = (cc >>> CC.MPS_SHIFT) & CC.MPS_MASK;
    const css = (cc >>> CC.CSS_SHIFT) & CC.CSS_MASK;
    const ams = (cc >>> CC.AMS_SHIFT) & CC.AMS_MASK;
    const iosqes = (cc >>> CC.IOSQES_SHIFT) & CC.ES_MASK;
    const iocqes = (cc >>> CC.IOCQES_SHIFT) & CC.ES_MASK;
    let why: string | undefined;
    if (asqs < 2 || acqs < 2) why = `admin queues of ${asqs}/${acqs} entries`;
    else if (asqs > this.maxQueueEntries || acqs > this.maxQueueEntries) why = `admin queues above ${this.maxQueueEntries} entries`;
    else if (!Number.isFinite(r.asq) || !Number.isFinite(r.acq) || r.asq === 0 || r.acq === 0) why = 'admin queue base missing or above 2^53';
    else if (mps > MPS_MAX) why = `CC.MPS ${mps} above MPSMAX`;
    else if (css !== CC.CSS_NVM) why = `CC.CSS ${css}`;
    else if (ams !== 0) why = `CC.AMS ${ams}`;
    else if ((iosqes !== 0 && iosqes !== Math.log2(SQE_SIZE)) || (iocqes !== 0 && iocqes !== Math.log2(CQE_SIZE))) {
      why = `CC.IOSQES/IOCQES ${iosqes}/${iocqes}`;
    } else if (r.asq % this.regs.pageSize !== 0 || r.acq % this.regs.pageSize !== 0) why = 'admin queues not page aligned';
    if (why) return this.fatal(`cannot enable: ${why}`);
    this.createCq(0, r.acq, acqs, true, 0);
    this.createSq(0, r.asq, asqs, this.cqs[0]!);
    r.csts |= CSTS.RDY;
    this.log.debug(`nvme: enabled: admin SQ 0x${r.asq.toString(16)}/${asqs}, CQ 0x${r.acq.toString(16)}/${acqs}, page ${this.pageSize}`);
  }

  /** Controller Fatal Status: the host must reset the controller. */
  private fatal(why: string): void {
    this.log.warn(`nvme: controller fatal status: ${why}`);
    this.regs.csts |= CSTS.CFS;
  }

  private setShutdownStatus(shst: number): void {
    this.regs.csts = (this.regs.csts & ~(3 << CSTS.SHST_SHIFT)) | (shst << CSTS.SHST_SHIFT);
  }

  private async shutdown(abrupt: boolean): Promise<void> {
    const epoch = this.epoch;
    this.setShutdownStatus(CSTS.SHST_OCCURRING);
    if (!abrupt) await this.idle(epoch);
    for (const ns of this.namespaces) {
      if (ns.readonly || ns.fd < 0) continue;
      try {
        await fdatasync(ns.fd);
      } catch (e) {
        this.log.warn(`nvme: shutdown: cannot sync ${ns.disk}: ${(e as Error).message}`);
      }
    }
    if (epoch === this.epoch && this.regs.csts & (3 << CSTS.SHST_SHIFT)) this.setShutdownStatus(CSTS.SHST_COMPLETE);
  }

  /** Resolves when no I/O command is in flight (or the controller was reset). */
  private async idle(epoch: number): Promise<void> {
    // Bounded by the commands in flight: each completes or the epoch moves on.
    while (epoch === this.epoch && this.busy) await new Promise((r) => setTimeout(r, 1));
  }

  /** CC.EN 1→0: every queue and in-flight completion goes; AQA/ASQ/ACQ stay. */
  private controllerReset(): void {
    this.epoch++;
    for (const sq of this.sqs) if (sq) sq.deleted = true;
    this.sqs.length = 0;
    this.cqs.length = 0;
    this.features.reset();
    this.events.reset();
    this.irq.reset();
    this.shadow.disable();
    this.counters.shadowDoorbellsActive = 0;
    this.regs.csts = 0;
  }

  /** FLR, VFIO reset, the client going away: back to power-on. */
  reset(): void {
    this.controllerReset();
    this.regs.reset();
  }

  // ---- submission ----

  private pump(sq: SubmissionQueue): void {
    if (sq.deleted || sq.fetching || (this.regs.csts & (CSTS.RDY | CSTS.CFS)) !== CSTS.RDY) return;
    const dma = this.dma;
    if (!dma) return;
    while (sq.head !== sq.tail && sq.inFlight < sq.size) {
      const v = dma.mappedView(sq.headAddr, SQE_SIZE, DMA_ACCESS_READ);
      if (!v) {
        void this.fetchSlow(sq, dma);
        return;
      }
      const cmd = sq.take();
      cmd.decode(v, this.epoch);
      sq.consume();
      this.start(cmd);
    }
  }

  /** One entry through DMA messages (or a fault that makes the controller fatal). */
  private async fetchSlow(sq: SubmissionQueue, dma: DeviceDma): Promise<void> {
    const epoch = this.epoch;
    sq.fetching = true;
    let entry: Buffer;
    try {
      entry = await dma.read(sq.headAddr, SQE_SIZE);
    } catch (e) {
      sq.fetching = false;
      if (epoch === this.epoch && !sq.deleted) this.fatal(`SQ ${sq.id} entry ${sq.head}: ${(e as Error).message}`);
      return;
    }
    sq.fetching = false;
    if (epoch !== this.epoch || sq.deleted) return;
    const cmd = sq.take();
    cmd.decode(entry, epoch);
    sq.consume();
    this.start(cmd);
    this.pump(sq);
  }

  private start(cmd: Command): void {
    const sq = cmd.sq;
    const c = this.counters;
    c.commands++;
    if (sq.id === 0) c.adminCommands++;
    else c.ioCommands++;
    sq.inFlight++;
    const r = sq.id === 0 ? this.admin.execute(cmd) : this.io.execute(cmd);
    if (typeof r === 'number') this.complete(cmd, r);
    else void r.then((status) => this.complete(cmd, status));
  }

  // ---- completion ----

  private complete(cmd: Command, status: Status): void {
    if (cmd.epoch !== this.epoch) return; // reset meanwhile: the host forgot it
    const sq = cmd.sq;
    sq.inFlight--;
    if (status !== 0) this.counters.errors++;
    cmd.status = status;
    const cq = sq.cq;
    if (cq.waiting.length > 0 || !this.roomIn(cq)) {
      cq.waiting.push(cmd);
      if (cq.shadow) this.askForCqHead(cq);
    } else {
      this.post(cq, cmd);
    }
    if (sq.inFlight === 0) sq.onDrained?.();
    if (sq.head !== sq.tail) this.pump(sq);
  }

  /** Room for one more entry, after a look at the shadow head when it seemed full. */
  private roomIn(cq: CompletionQueue): boolean {
    if (!cq.full) return true;
    if (cq.shadow) cq.acceptHead(this.shadow.read(cq.shadow));
    return !cq.full;
  }

  /**
   * The CQ is full: EventIdx = head asks the driver to ring the head
   * doorbell when it consumes entries; a second look catches a head it
   * moved before it could see that.
   */
  private askForCqHead(cq: CompletionQueue): void {
    const slots = cq.shadow!;
    const before = cq.head;
    cq.acceptHead(this.shadow.read(slots));
    void this.shadow.setEventIdx(slots, cq.head);
    cq.acceptHead(this.shadow.read(slots));
    if (cq.head !== before) this.cqHeadMoved(cq);
  }

  private post(cq: CompletionQueue, cmd: Command): void {
    const sq = cmd.sq;
    const dma = this.dma;
    if (dma) {
      const addr = cq.tailAddr;
      const v = dma.mappedView(addr, CQE_SIZE, DMA_ACCESS_WRITE);
      if (v) writeCqe(v, cmd.result, sq.head, sq.id, cmd.cid, cmd.status, cq.phase);
      else {
        const e = new Uint8Array(CQE_SIZE);
        writeCqe(e, cmd.result, sq.head, sq.id, cmd.cid, cmd.status, cq.phase);
        cq.writesInFlight++;
        const epoch = this.epoch;
        dma.write(addr, e).then(
          () => {
            cq.writesInFlight--;
            this.scheduleFlush();
          },
          (err: Error) => {
            cq.writesInFlight--;
            if (epoch === this.epoch) this.fatal(`CQ ${cq.id} entry ${addr}: ${err.message}`);
          },
        );
      }
      cq.advance();
      cq.unsignalled++;
      this.scheduleFlush();
    }
    sq.release(cmd);
  }

  /** The host consumed CQ entries: post what waited for room, update INTx. */
  private cqHeadMoved(cq: CompletionQueue): void {
    while (cq.waiting.length > 0 && !cq.full) {
      const cmd = cq.waiting.shift()!;
      if (cmd.epoch === this.epoch) this.post(cq, cmd);
    }
    this.irq.updateIntx();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(this.flushBound);
  }

  /** Once per event-loop turn: one interrupt per CQ that got entries, then the shadow doorbells. */
  private flush(): void {
    this.flushScheduled = false;
    for (const cq of this.cqs) {
      if (!cq || cq.unsignalled === 0 || cq.writesInFlight > 0) continue;
      const n = cq.unsignalled;
      cq.unsignalled = 0;
      this.irq.completed(cq, n);
    }
    if (this.shadow.enabled) this.pollShadow();
  }

  /**
   * Reads every I/O SQ's shadow tail and starts what the driver submitted
   * without ringing. A queue with nothing in flight and nothing new for
   * longer than the polling window gets EventIdx = its tail, so the
   * driver's next submission rings the MMIO doorbell again.
   */
  private pollShadow(): void {
    const now = performance.now();
    let again = false;
    for (const sq of this.sqs) {
      if (!sq || !sq.shadow || sq.deleted) continue;
      const t = this.shadow.read(sq.shadow);
      if (t < 0) {
        // Memory behind DMA messages: no polling; let every submission ring.
        if (sq.eventIdx !== sq.tail) this.publishSqEventIdx(sq);
        continue;
      }
      if (t !== sq.tail && sq.acceptTail(t)) {
        sq.lastActive = now;
        this.counters.shadowTailReads++;
        this.pump(sq);
      }
      if (sq.inFlight > 0 || sq.head !== sq.tail) {
        sq.lastActive = now;
        continue; // its completions bring us back here
      }
      if (sq.eventIdx === sq.tail) continue;
      if (now - sq.lastActive < this.pollWindowMs) again = true;
      else this.publishSqEventIdx(sq);
    }
    for (const cq of this.cqs) {
      if (cq?.shadow && cq.waiting.length > 0) this.askForCqHead(cq);
      // With INTx the line follows the CQ heads: have the driver ring each one.
      if (cq?.shadow && !this.device.caps.msix?.enabled) {
        const before = cq.head;
        if (cq.acceptHead(this.shadow.read(cq.shadow)) && cq.head !== before) this.cqHeadMoved(cq);
        void this.shadow.setEventIdx(cq.shadow, cq.head);
      }
    }
    if (again) {
      // Let a thread waiting for this CPU run first (our interrupt just woke QEMU's main loop, the guest's vCPU may wake next).
      native.yieldCpu(0);
      this.scheduleFlush();
    }
  }

  /** EventIdx = tail, then one more look in case the driver wrote a tail just before seeing it. */
  private publishSqEventIdx(sq: SubmissionQueue): void {
    const slots = sq.shadow!;
    sq.eventIdx = sq.tail;
    const w = this.shadow.setEventIdx(slots, sq.tail);
    const seen = sq.tailUpdates;
    const recheck = (t: number) => {
      // Through DMA messages the value may be older than a doorbell that came meanwhile.
      if (seen !== sq.tailUpdates || sq.deleted || t === sq.tail) return;
      if (sq.acceptTail(t)) {
        sq.eventIdx = -1;
        sq.lastActive = performance.now();
        this.counters.shadowTailReads++;
        this.pump(sq);
      }
    };
    if (w) void w.then(() => this.shadow.readSlow(slots)).then(recheck);
    else recheck(this.shadow.read(slots));
  }

  /** A CQ's EventIdx one behind its head: the driver rings the head doorbell only once a lap. */
  private quietCq(cq: CompletionQueue): void {
    void this.shadow.setEventIdx(cq.shadow!, (cq.head + cq.size - 1) % cq.size);
  }

  private *liveCqs(): Iterable<CompletionQueue> {
    for (const cq of this.cqs) if (cq) yield cq;
  }
}

function defaultSerial(disk: string): string {
  const base = disk.split('/').pop() ?? 'nvme';
  const s = base.replace(/[^\x20-\x7e]/g, '').slice(0, 20);
  return s === '' ? 'nvme' : s;
}
