// The split virtqueue (virtio 1.2, 2.7), device side. Every ring and buffer
// access goes through DeviceDma (mapped memory, DMA_READ/WRITE messages, a
// guest vIOMMU: it is all the same here), and nothing in it ever blocks a
// register access: a doorbell only sets a flag and starts (or extends) an
// asynchronous drain of the available ring. Ring memory that is mapped into
// this process is read and written in place, without awaiting
// (DeviceDma.mappedView); anything else takes the asynchronous path.
//
// Notifications: while a drain runs the driver need not kick. With
// EVENT_IDX, avail_event stays where it was while the drain runs (the
// driver's kick check fails for every buffer after the first) and is moved
// to the next buffer only when the ring is empty; without it, used->flags
// carries VRING_USED_F_NO_NOTIFY for the drain (mapped rings only: through
// messages the two extra writes would cost more than the kicks they save).
// Either way the ring is looked at once more after notifications are back
// on, so a buffer added in between is not lost.
//
// Available side: read avail->idx, then the new ring entries, then each head
// descriptor (the whole table once per batch when a chain continues with
// NEXT), following NEXT and one INDIRECT table per chain, with loop and range
// checks. Each chain goes to the device's handler; the device completes it
// (possibly much later, many in flight) with `complete(chain, len)`.
//
// Mapped rings (avail ring, descriptor table and used ring in memory mapped
// into this process: shared guest RAM, the usual case) are drained
// synchronously, in the turn of the kick: chains are walked in place and
// handed out, and what the device completed meanwhile (a page-cache hit is
// served at once) is published at the end of that turn (a microtask, so the
// doorbells of one socket read share it), with at most one interrupt,
// raised last. A ring that is not all mapped
// (message-backed memory, a vIOMMU mapping that moved, an indirect table
// elsewhere) takes the asynchronous drain from where the synchronous one
// stopped; every chain is taken whole by one or the other. Before either
// hands chains out, the host may serve some in place (serveInPlace: a
// native loop that takes and completes plain requests itself); the queue
// then publishes them at once.
//
// Used side: completions that come later (thread-pool I/O) are coalesced
// per event-loop turn (setImmediate), or published at the end of the current
// one when nothing else is in flight: one write of the new used elements,
// one fenced store of used->idx, then one interrupt decision for the whole
// batch (EVENT_IDX: used_event; otherwise VRING_AVAIL_F_NO_INTERRUPT).
// In order (deterministic mode): a completion waits until every chain taken
// before it has completed, so the used ring depends only on what the driver
// made available, never on which I/O happened to finish first.
//
// A malformed ring (avail idx too far ahead, a head or next index out of
// range, a loop, nested indirect, a bad indirect length, an unreadable ring)
// is a RingError: the host puts the device in DEVICE_NEEDS_RESET. A reset
// bumps the queue's epoch, which drops everything still in flight.
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, type DeviceDma, type Iova } from '../../iommu/device-dma.js';
import { Desc, NO_VECTOR, VRING_AVAIL_F_NO_INTERRUPT, VRING_USED_F_NO_NOTIFY } from './constants.js';
import { iovaAdd, iovaFrom, iovaHex, iovaOf, mapped16, readU16, store16Fenced, storeU16Fenced } from './dma-util.js';
import { RingPollWindow } from './ring-poll.js';
import type { PollGate } from '../device.js';

/** The driver broke the ring: the device needs a reset. */
export class RingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RingError';
  }
}

/** Longest chain / indirect table we follow (QEMU's VIRTQUEUE_MAX_SIZE). */
export const MAX_INDIRECT = 1024;

/**
 * One available descriptor chain, flattened into its device-readable and
 * device-writable buffers (readable ones always come first in a chain).
 */
export class DescChain {
  readonly rAddr: Iova[] = [];
  readonly rLen: number[] = [];
  readonly wAddr: Iova[] = [];
  readonly wLen: number[] = [];
  /** Total bytes of the readable / writable buffers. */
  readable = 0;
  writable = 0;
  /** Descriptors in the chain (including the indirect one, if any). */
  descriptors = 0;
  indirect = false;

  constructor(
    readonly queue: Virtqueue,
    readonly head: number,
    /** The queue's epoch when the chain was taken (stale after a reset). */
    readonly epoch: number,
  ) {}

  /** Its place in the order chains were taken off the ring (in-order publication). */
  taken = 0;

  /** Hand the chain back with `len` bytes written (see Virtqueue.complete). */
  complete(len: number): void {
    this.queue.complete(this, len);
  }

  /**
   * The queue was reset (or the client left) since the chain was taken: its
   * buffers may belong to someone else now. Do not touch them any more.
   */
  get stale(): boolean {
    return this.epoch !== this.queue.epoch;
  }
}

/** What a queue needs from its device / transport. */
export interface VirtqueueHost {
  /** The device's door to guest memory (undefined: no client, bus master off, ...). */
  readonly dma: DeviceDma | undefined;
  /** May the queue consume buffers (DRIVER_OK, not NEEDS_RESET)? */
  canProcess(): boolean;
  /** A chain is available. Must not throw; complete it sooner or later. */
  handle(chain: DescChain): void;
  /** Raise the queue's interrupt (MSI-X vector or INTx + ISR). */
  notify(vq: Virtqueue): void;
  /** The ring is malformed or unreachable: DEVICE_NEEDS_RESET. */
  ringError(vq: Virtqueue, err: Error): void;
  /** The polling budget, when the queue may watch its ring instead of waiting for kicks. */
  readonly pollGate?: PollGate | undefined;
  /** Publish completions in the order the chains were taken, not as they come (deterministic mode). */
  readonly inOrder?: boolean;
  /**
   * Serve available chains in place, in order from ring.lastAvail, without
   * their being handed out (a native loop that completes each at once):
   * moves ring.lastAvail and ring.usedIdx past what it served, having stored
   * the used elements and used->idx, and returns how many. It may serve none.
   */
  serveInPlace?(ring: InPlaceRing, dma: DeviceDma): number;
}

/** A queue's split ring as serveInPlace sees it (IOVAs as numbers). */
export interface InPlaceRing {
  desc: number;
  avail: number;
  used: number;
  size: number;
  /** VIRTIO_F_INDIRECT_DESC negotiated. */
  indirect: boolean;
  /** The next available entry to take; moved past what was served. */
  lastAvail: number;
  /** used->idx; moved past what was served. */
  usedIdx: number;
}

export interface QueueStats {
  kicks: number;
  batches: number;
  chains: number;
  /** Descriptors in the chains taken (direct + indirect), not counting those served in place. */
  descriptors: number;
  completions: number;
  flushes: number;
  interrupts: number;
  suppressed: number;
  /** Buffers found by watching the ring (no kick), and windows that ended with none. */
  polledHits: number;
  polledMisses: number;
  /** Windows ended because another thread held this CPU for long. */
  polledYields: number;
}

export class Virtqueue {
  // ---- registers (common config, per queue) ----
  size: number;
  descAddr: bigint = 0n;
  driverAddr: bigint = 0n;
  deviceAddr: bigint = 0n;
  msixVector = NO_VECTOR;
  enabled = false;

  // ---- negotiated behaviour ----
  eventIdx = false;
  indirectDesc = false;

  // ---- ring state ----
  /** Next avail ring index we will look at (free-running u16). */
  lastAvail = 0;
  /** used->idx as we last published it (free-running u16). */
  usedIdx = 0;
  /** Chains handed to the device and not yet published as used. */
  inFlight = 0;
  readonly stats: QueueStats = { kicks: 0, batches: 0, chains: 0, descriptors: 0, completions: 0, flushes: 0, interrupts: 0, suppressed: 0, polledHits: 0, polledMisses: 0, polledYields: 0 };

  private desc: Iova = 0;
  private avail: Iova = 0;
  private used: Iova = 0;
  private epochNo = 0;
  /** Bumped by every reset / abandon: chains from an older epoch are stale. */
  get epoch(): number {
    return this.epochNo;
  }
  private running = false;
  /** A synchronous drain is handing out chains: completions wait for its end. */
  private draining = false;
  private kicked = false;
  private signalledUsed = 0;
  private signalledValid = false;
  /** Completed (head, len) pairs not yet written to the used ring. */
  private pendingUsed: number[] = [];
  private spareUsed: number[] = [];
  /** In order: chains taken so far, and the next one whose completion may be published. */
  private takenCount = 0;
  private nextToPublish = 0;
  /** In order: completions that wait for an earlier chain, by `taken`: [head, len]. */
  private readonly held = new Map<number, [number, number]>();
  private flushScheduled = false;
  private flushing = false;
  private usedBuf: Buffer;
  private readonly flushCb = (): void => this.flush();
  // ---- watching the ring (ring-poll.ts) ----
  /** How long the ring is watched once empty (ring-poll.ts). */
  readonly window: RingPollWindow;
  /** When the ring went empty (ms, performance.now), NaN while it is not. */
  private emptyAt = NaN;
  /** The open window's end (ms); 0: no window. */
  private pollUntil = 0;
  /** The open window's length (ns). */
  private pollNs = 0;
  private pollTicking = false;
  private readonly pollTickCb = (): void => this.pollTick();
  private readonly inPlace: InPlaceRing = { desc: 0, avail: 0, used: 0, size: 0, indirect: false, lastAvail: 0, usedIdx: 0 };

  /** `window`: how the queue watches its ring (tests give one whose yields never lose the CPU). */
  constructor(
    readonly index: number,
    readonly maxSize: number,
    private readonly host: VirtqueueHost,
    window?: RingPollWindow,
  ) {
    this.size = maxSize;
    this.usedBuf = Buffer.alloc(8 * maxSize);
    this.window = window ?? new RingPollWindow(() => this.host.pollGate);
  }

  /** Queue reset: registers to their defaults, everything in flight dropped. */
  reset(): void {
    this.epochNo++;
    this.size = this.maxSize;
    this.descAddr = this.driverAddr = this.deviceAddr = 0n;
    this.msixVector = NO_VECTOR;
    this.enabled = false;
    this.eventIdx = false;
    this.indirectDesc = false;
    this.abandon();
  }

  /**
   * Forget the ring position and whatever is in flight (reset, client gone):
   * completions of older chains are ignored from now on.
   */
  abandon(): void {
    this.epochNo++;
    this.lastAvail = 0;
    this.usedIdx = 0;
    this.inFlight = 0;
    this.signalledUsed = 0;
    this.signalledValid = false;
    this.pendingUsed = [];
    this.takenCount = this.nextToPublish = 0;
    this.held.clear();
    this.running = false;
    this.draining = false;
    this.kicked = false;
    this.flushing = false;
    this.pollUntil = 0;
    this.emptyAt = NaN;
  }

  /** The driver set queue_enable: the ring addresses are final. */
  enable(): void {
    this.desc = iovaOf(this.descAddr);
    this.avail = iovaOf(this.driverAddr);
    this.used = iovaOf(this.deviceAddr);
    this.lastAvail = 0;
    this.usedIdx = 0;
    this.signalledValid = false;
    this.enabled = true;
  }

  /** True while chains are in flight or ring work is under way. */
  get busy(): boolean {
    return this.running || this.flushing || this.flushScheduled || this.inFlight > 0 || this.pendingUsed.length > 0;
  }

  /**
   * The driver notified us (or the device became ready): drain the available
   * ring, at once when it is mapped, else in the background. Never waits,
   * never throws.
   */
  kick(): void {
    this.stats.kicks++;
    if (!this.enabled) return;
    this.sawBuffer();
    this.wake();
  }

  /** Drain now (or have the running drain go on). */
  private wake(): void {
    this.kicked = true;
    if (this.running || !this.host.canProcess()) return;
    this.running = true;
    this.run(this.epochNo);
  }

  /**
   * Drain synchronously while the ring is mapped; the asynchronous drain
   * takes over where it is not. What completed meanwhile is published at the
   * end of this turn (a microtask): the drains of every doorbell in one read
   * of the socket are one used-ring update and at most one interrupt, the
   * last thing the turn does.
   */
  private run(epoch: number): void {
    let rest = false;
    this.draining = true;
    try {
      while (this.kicked && epoch === this.epochNo && this.host.canProcess()) {
        this.kicked = false;
        if (!this.drainNow(epoch)) {
          this.kicked = true;
          rest = true;
          break;
        }
      }
    } catch (e) {
      if (epoch === this.epochNo) this.host.ringError(this, asError(e));
    } finally {
      if (epoch === this.epochNo) this.draining = false;
    }
    if (epoch !== this.epochNo) return;
    if (rest) void this.runAsync(epoch);
    else {
      this.running = false;
      if (this.host.canProcess()) this.ringEmpty();
    }
    if (this.pendingUsed.length > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(this.flushCb);
    }
  }

  /**
   * The synchronous drain left the ring empty and asked for a kick at the
   * next buffer (avail_event = lastAvail). When the window says so, watch
   * the ring instead: avail_event one behind, so the driver adds buffers
   * without kicking, and avail->idx looked at on every turn of the event
   * loop until a buffer comes or the window ends (EVENT_IDX only).
   */
  private ringEmpty(): void {
    if (!this.eventIdx) return;
    const now = performance.now();
    this.emptyAt = now;
    const ns = this.window.open();
    const dma = this.host.dma;
    if (ns === 0 || !dma || !store16Fenced(dma, this.availEventAddr(), (this.lastAvail - 1) & 0xffff)) return;
    this.pollUntil = now + ns / 1e6;
    this.pollNs = ns;
    if (!this.pollTicking) {
      this.pollTicking = true;
      setImmediate(this.pollTickCb);
    }
  }

  private pollTick(): void {
    this.pollTicking = false;
    if (this.pollUntil === 0) return; // reset, or a kick came and the window was not renewed
    const kept = this.window.turn();
    const dma = this.host.dma;
    const idx = dma && this.enabled && this.host.canProcess() ? mapped16(dma, iovaAdd(this.avail, 2)) : null;
    if (idx !== null && idx !== this.lastAvail) {
      this.pollUntil = 0;
      this.stats.polledHits++;
      this.sawBuffer();
      this.wake();
    } else if (!kept) {
      // Another thread needed this CPU: not a miss of the window's length.
      this.pollUntil = 0;
      this.stats.polledYields++;
      this.askForKicks();
    } else if (idx === null || performance.now() >= this.pollUntil) {
      this.pollUntil = 0;
      this.stats.polledMisses++;
      this.window.missed(this.pollNs);
      this.askForKicks();
    } else {
      this.pollTicking = true;
      setImmediate(this.pollTickCb);
    }
  }

  /**
   * The window is over: avail_event back to the next buffer, then one more
   * look (the driver may have added one while it saw the old value). Where
   * the store cannot be made in place, a drain makes it on its way to idle.
   */
  private askForKicks(): void {
    const dma = this.host.dma;
    if (!dma || !this.enabled) return;
    if (store16Fenced(dma, this.availEventAddr(), this.lastAvail) && mapped16(dma, iovaAdd(this.avail, 2)) === this.lastAvail) return;
    this.wake();
  }

  /** A buffer came (kicked or seen): the time since the ring went empty tunes the window. */
  private sawBuffer(): void {
    if (Number.isNaN(this.emptyAt)) return;
    this.window.next((performance.now() - this.emptyAt) * 1e6);
    this.emptyAt = NaN;
  }

  private availEventAddr(): Iova {
    return iovaAdd(this.used, 4 + 8 * this.size);
  }

  private async runAsync(epoch: number): Promise<void> {
    try {
      while (this.kicked && epoch === this.epochNo && this.host.canProcess()) {
        this.kicked = false;
        await this.drain(epoch);
      }
    } catch (e) {
      if (epoch === this.epochNo) this.host.ringError(this, asError(e));
    } finally {
      if (epoch === this.epochNo) this.running = false;
    }
  }

  /**
   * The synchronous drain: every available chain, walked and handed out in
   * place. True when the ring is empty and kicks are asked for again; false
   * when some ring memory is not mapped (nothing half-taken: the
   * asynchronous drain goes on from lastAvail).
   */
  private drainNow(epoch: number): boolean {
    const dma = this.host.dma;
    if (!dma) return true;
    // Without EVENT_IDX: no kicks while we drain (false: the used ring is not mapped).
    const quiet = !this.eventIdx && store16Fenced(dma, this.used, VRING_USED_F_NO_NOTIFY);
    if (!this.eventIdx && !quiet) return false;
    let done = false;
    try {
      done = this.drainRingNow(dma, epoch, quiet);
    } finally {
      // Left early: kicks back on for whoever comes next.
      if (quiet && !done && epoch === this.epochNo && this.host.dma === dma) store16Fenced(dma, this.used, 0);
    }
    return done;
  }

  private drainRingNow(dma: DeviceDma, epoch: number, quiet: boolean): boolean {
    const size = this.size;
    const idxAddr = iovaAdd(this.avail, 2);
    for (;;) {
      this.takeInPlace(dma);
      let availIdx = mapped16(dma, idxAddr);
      if (availIdx === null) return false;
      let n = (availIdx - this.lastAvail) & 0xffff;
      if (n === 0) {
        // Going idle: ask for a notification at the next buffer, then look
        // once more (the driver may have added one before it saw the request).
        if (this.eventIdx) {
          if (!store16Fenced(dma, this.availEventAddr(), this.lastAvail)) return false;
        } else store16Fenced(dma, this.used, 0);
        availIdx = mapped16(dma, idxAddr);
        if (availIdx === null) return false;
        n = (availIdx - this.lastAvail) & 0xffff;
        if (n === 0) return true;
        if (quiet) store16Fenced(dma, this.used, VRING_USED_F_NO_NOTIFY);
      }
      if (n > this.size) {
        throw new RingError(`queue ${this.index}: avail->idx ${availIdx} is ${n} entries past ${this.lastAvail} (size ${this.size})`);
      }
      // The views are taken after avail->idx is read, for each batch: the
      // driver writes entries and descriptors before it moves the index, so
      // everything up to that index is in them when taken (a recording with
      // --record-dma copies them there and then).
      const table = dma.mappedView(this.desc, size * Desc.SIZE, DMA_ACCESS_READ);
      const ring = dma.mappedView(iovaAdd(this.avail, 4), 2 * size, DMA_ACCESS_READ);
      if (!table || !ring) return false;
      const descs = descView(table);
      this.stats.batches++;
      for (let i = 0; i < n; i++) {
        const slot = 2 * (this.lastAvail % this.size);
        const head = ring[slot]! | (ring[slot + 1]! << 8);
        if (this.inFlight >= this.size) {
          throw new RingError(`queue ${this.index}: more than ${this.size} chains in flight (a head was made available twice)`);
        }
        const chain = this.walk(dma, head, epoch, descs, null);
        if (!chain) return false;
        this.take(chain);
        if (epoch !== this.epochNo || !this.host.canProcess()) return true;
      }
    }
  }

  /**
   * Let the host serve what it can in place, first. Only while nothing of
   * ours waits to be published: its used elements go straight to the ring.
   * What it served is published, with the interrupt decision, at once.
   */
  private takeInPlace(dma: DeviceDma): void {
    if (!this.host.serveInPlace || this.pendingUsed.length > 0 || this.flushing) return;
    // In order, what it serves must not overtake a chain still in flight.
    if (this.host.inOrder && this.inFlight > 0) return;
    const r = this.inPlace;
    if (typeof this.desc !== 'number' || typeof this.avail !== 'number' || typeof this.used !== 'number') return;
    r.desc = this.desc;
    r.avail = this.avail;
    r.used = this.used;
    r.size = this.size;
    r.indirect = this.indirectDesc;
    r.lastAvail = this.lastAvail;
    r.usedIdx = this.usedIdx;
    const n = this.host.serveInPlace(r, dma);
    if (n <= 0) return;
    const old = this.usedIdx;
    this.lastAvail = r.lastAvail & 0xffff;
    this.stats.chains += n;
    this.stats.completions += n;
    this.inFlight += n;
    this.published(old, r.usedIdx & 0xffff, n);
    this.interruptNow(dma);
  }

  /** Account for a chain taken off the ring and hand it to the device. */
  private take(chain: DescChain): void {
    chain.taken = this.takenCount++;
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    this.inFlight++;
    this.stats.chains++;
    this.stats.descriptors += chain.descriptors;
    this.host.handle(chain);
  }

  /** Take every available chain; returns when the ring is empty. */
  private async drain(epoch: number): Promise<void> {
    const dma = this.host.dma;
    if (!dma) return;
    // Without EVENT_IDX: no kicks while we drain (false: not mapped, not asked).
    const quiet = !this.eventIdx && store16Fenced(dma, this.used, VRING_USED_F_NO_NOTIFY);
    try {
      await this.drainRing(dma, epoch, quiet);
    } finally {
      // Left early (reset, device stopped): kicks back on for whoever comes next.
      if (quiet && epoch === this.epochNo && this.host.dma === dma) store16Fenced(dma, this.used, 0);
    }
  }

  private async drainRing(dma: DeviceDma, epoch: number, quiet: boolean): Promise<void> {
    const idxAddr = iovaAdd(this.avail, 2);
    for (;;) {
      let availIdx = mapped16(dma, idxAddr) ?? (await this.ringRead16(dma, idxAddr, 'avail->idx'));
      if (epoch !== this.epochNo) return;
      let n = (availIdx - this.lastAvail) & 0xffff;
      if (n === 0) {
        // Going idle: ask for a notification at the next buffer, then look
        // once more (the driver may have added one before it saw the request).
        if (this.eventIdx) {
          const eventAddr = this.availEventAddr();
          if (!store16Fenced(dma, eventAddr, this.lastAvail)) await this.ringStore16(dma, eventAddr, this.lastAvail, 'avail_event');
        } else if (quiet) {
          store16Fenced(dma, this.used, 0);
        } else return;
        availIdx = mapped16(dma, idxAddr) ?? (await this.ringRead16(dma, idxAddr, 'avail->idx'));
        if (epoch !== this.epochNo) return;
        n = (availIdx - this.lastAvail) & 0xffff;
        if (n === 0) return;
        if (quiet) store16Fenced(dma, this.used, VRING_USED_F_NO_NOTIFY);
      }
      if (n > this.size) {
        throw new RingError(`queue ${this.index}: avail->idx ${availIdx} is ${n} entries past ${this.lastAvail} (size ${this.size})`);
      }
      this.stats.batches++;
      const heads = this.headsNow(dma, n) ?? (await this.readHeads(dma, n));
      if (epoch !== this.epochNo) return;
      const copies: DescCopies = { table: null, head: null, indirect: null, indirectAt: 0, indirectLen: 0 };
      for (let i = 0; i < n; i++) {
        const head = heads.readUInt16LE(2 * i);
        if (this.inFlight >= this.size) {
          throw new RingError(`queue ${this.index}: more than ${this.size} chains in flight (a head was made available twice)`);
        }
        const chain = await this.parseChain(dma, head, epoch, copies);
        if (epoch !== this.epochNo) return;
        this.take(chain);
        if (epoch !== this.epochNo || !this.host.canProcess()) return;
      }
    }
  }

  /** The avail ring entries, copied at once from mapped memory when they do not wrap; null: use readHeads. */
  private headsNow(dma: DeviceDma, n: number): Buffer | null {
    const start = this.lastAvail % this.size;
    if (start + n > this.size) return null;
    const v = dma.mappedView(iovaAdd(this.avail, 4 + 2 * start), 2 * n, DMA_ACCESS_READ);
    return v ? Buffer.from(v) : null;
  }

  /** The avail ring entries [lastAvail, lastAvail + n) (at most two reads). */
  private async readHeads(dma: DeviceDma, n: number): Promise<Buffer> {
    const start = this.lastAvail % this.size;
    const first = Math.min(n, this.size - start);
    const ring = iovaAdd(this.avail, 4);
    const a = await this.ringRead(dma, iovaAdd(ring, 2 * start), 2 * first, 'avail ring');
    if (first === n) return a;
    const b = await this.ringRead(dma, ring, 2 * (n - first), 'avail ring');
    return Buffer.concat([a, b]);
  }

  /**
   * Walk one chain from `head`: direct descriptors, then at most one
   * indirect table, which must end the chain. Synchronous: descriptors are
   * read from `table` (the whole descriptor table), from the copies the
   * asynchronous path fetched, or in place when mapped. Null when something
   * it needs is in none of these; with `copies` the missing range is noted
   * there for parseChain to fetch.
   */
  private walk(dma: DeviceDma, head: number, epoch: number, table: DataView | null, copies: DescCopies | null): DescChain | null {
    const size = this.size;
    const q = this.index;
    if (head >= size) throw new RingError(`queue ${q}: head ${head} out of range (size ${size})`);
    const chain = new DescChain(this, head, epoch);
    table ??= copies?.table ?? null;
    let d: DataView;
    let base: number;
    let i = head;
    if (table) {
      d = table;
      base = Desc.SIZE * head;
    } else {
      // The head alone first: most chains are one descriptor (an indirect one).
      const headAddr = iovaAdd(this.desc, Desc.SIZE * head);
      const v = copies?.head ?? dma.mappedView(headAddr, Desc.SIZE, DMA_ACCESS_READ);
      if (!v) return missing(copies, 'descriptor', headAddr, Desc.SIZE);
      d = descView(v);
      base = 0;
    }
    let count = 0;
    for (;;) {
      if (++count > size) throw new RingError(`queue ${q}: descriptor loop in chain ${head}`);
      const flags = d.getUint16(base + 12, true);
      if (flags & Desc.INDIRECT) {
        if (!this.indirectDesc) throw new RingError(`queue ${q}: INDIRECT descriptor without VIRTIO_F_INDIRECT_DESC`);
        if (flags & Desc.NEXT) throw new RingError(`queue ${q}: descriptor ${i} has both INDIRECT and NEXT`);
        const len = d.getUint32(base + 8, true);
        const addr = iovaFrom(d.getUint32(base, true), d.getUint32(base + 4, true));
        if (len === 0 || len % Desc.SIZE !== 0) {
          throw new RingError(`queue ${q}: indirect table length ${len} is not a positive multiple of 16`);
        }
        const n = len / Desc.SIZE;
        if (n > MAX_INDIRECT) throw new RingError(`queue ${q}: indirect table of ${n} descriptors (max ${MAX_INDIRECT})`);
        const fetched = copies?.indirect && copies.indirectAt === addr && copies.indirectLen === len ? copies.indirect : null;
        const t = fetched ?? dma.mappedView(addr, len, DMA_ACCESS_READ);
        if (!t) return missing(copies, 'indirect table', addr, len);
        this.walkIndirect(chain, descView(t), n);
        chain.descriptors++;
        return chain;
      }
      addBuffer(chain, d, base, flags, q);
      if (!(flags & Desc.NEXT)) return chain;
      const next = d.getUint16(base + 14, true);
      if (next >= size) throw new RingError(`queue ${q}: next ${next} out of range in chain ${head} (size ${size})`);
      if (!table) {
        const v = dma.mappedView(this.desc, size * Desc.SIZE, DMA_ACCESS_READ);
        if (!v) return missing(copies, 'descriptor table', this.desc, size * Desc.SIZE);
        table = descView(v);
      }
      d = table;
      base = Desc.SIZE * next;
      i = next;
    }
  }

  /**
   * walk() over memory that is not all mapped: fetch (copy) what it was
   * missing and walk again; the copies of the descriptor table are kept for
   * the batch. Each range is fetched once, so a few rounds at most.
   */
  private async parseChain(dma: DeviceDma, head: number, epoch: number, copies: DescCopies): Promise<DescChain> {
    copies.head = null;
    copies.indirect = null;
    for (let round = 0; round < 4; round++) {
      copies.need = undefined;
      const chain = this.walk(dma, head, epoch, null, copies);
      if (chain) return chain;
      const need = copies.need!;
      const b = await this.ringRead(dma, need.addr, need.len, need.what);
      if (need.what === 'descriptor') copies.head = b;
      else if (need.what === 'descriptor table') copies.table = descView(b);
      else {
        copies.indirect = b;
        copies.indirectAt = need.addr;
        copies.indirectLen = need.len;
      }
    }
    throw new RingError(`queue ${this.index}: the descriptors of chain ${head} kept changing while they were read`);
  }

  /** The descriptors of an indirect table of `n`, from its first. */
  private walkIndirect(chain: DescChain, t: DataView, n: number): void {
    const q = this.index;
    chain.indirect = true;
    let i = 0;
    let count = 0;
    for (;;) {
      if (++count > n) throw new RingError(`queue ${q}: descriptor loop in the indirect table of chain ${chain.head}`);
      const base = Desc.SIZE * i;
      const flags = t.getUint16(base + 12, true);
      if (flags & Desc.INDIRECT) throw new RingError(`queue ${q}: INDIRECT descriptor inside an indirect table`);
      addBuffer(chain, t, base, flags, q);
      if (!(flags & Desc.NEXT)) return;
      const next = t.getUint16(base + 14, true);
      if (next >= n) throw new RingError(`queue ${q}: indirect next ${next} out of range (table of ${n})`);
      i = next;
    }
  }

  // ---- used side ----

  /**
   * The device is done with `chain` and wrote `len` bytes into its writable
   * buffers (from the start). Published with the next batch; completions of
   * chains taken before a reset are ignored.
   */
  complete(chain: DescChain, len: number): void {
    if (chain.epoch !== this.epochNo || chain.queue !== this) return;
    this.stats.completions++;
    if (this.host.inOrder) {
      if (chain.taken !== this.nextToPublish) {
        this.held.set(chain.taken, [chain.head, len >>> 0]);
        return;
      }
      this.pendingUsed.push(chain.head, len >>> 0);
      this.nextToPublish++;
      for (let next = this.held.get(this.nextToPublish); next; next = this.held.get(this.nextToPublish)) {
        this.held.delete(this.nextToPublish++);
        this.pendingUsed.push(next[0], next[1]);
      }
    } else this.pendingUsed.push(chain.head, len >>> 0);
    if (this.draining) return; // published at the end of the drain
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // Nothing else outstanding and no drain handing out more: nothing to
      // batch with, so publish once this turn's code is done. Otherwise wait
      // for the completions that arrive in this event-loop turn.
      if (!this.running && this.pendingUsed.length >> 1 >= this.inFlight) queueMicrotask(this.flushCb);
      else setImmediate(this.flushCb);
    }
  }

  /** Publish the pending completions: in place when the used ring is mapped, else asynchronously. */
  private flush(): void {
    this.flushScheduled = false;
    if (this.flushing || this.pendingUsed.length === 0) return; // a running flush loops until nothing is pending
    if (!this.flushNow()) void this.flushAsync();
  }

  /**
   * flushAsync done synchronously: used elements, fenced used->idx, the
   * interrupt decision and the interrupt, last. False (nothing done) when
   * the used ring or the driver's interrupt field is not mapped.
   */
  private flushNow(): boolean {
    const dma = this.host.dma;
    if (!dma) return false;
    const list = this.pendingUsed;
    const n = list.length >> 1;
    const size = this.size;
    const start = this.usedIdx % size;
    const first = Math.min(n, size - start);
    const a = dma.mappedView(iovaAdd(this.used, 4 + 8 * start), 8 * first, DMA_ACCESS_WRITE);
    const b = first < n ? dma.mappedView(iovaAdd(this.used, 4), 8 * (n - first), DMA_ACCESS_WRITE) : null;
    const decideAt = this.eventIdx ? iovaAdd(this.avail, 4 + 2 * size) : this.avail;
    if (!a || (first < n && !b) || !dma.mappedView(decideAt, 2, DMA_ACCESS_READ)) return false;
    const elems = this.usedElems(list, n);
    a.set(elems.subarray(0, 8 * first));
    if (b) b.set(elems.subarray(8 * first));
    const old = this.usedIdx;
    const idx = (old + n) & 0xffff;
    if (!store16Fenced(dma, iovaAdd(this.used, 2), idx)) return false;
    list.length = 0;
    this.published(old, idx, n);
    this.interruptNow(dma);
    return true;
  }

  /** The interrupt decision for what was just published, where the driver's field is mapped. */
  private interruptNow(dma: DeviceDma): void {
    const notify = this.shouldNotify(dma, this.epochNo);
    if (typeof notify !== 'boolean') return; // cannot happen: its field was seen mapped
    if (notify) {
      this.stats.interrupts++;
      this.host.notify(this);
    } else this.stats.suppressed++;
  }

  /** used->idx went from `old` to `idx` (n elements). */
  private published(old: number, idx: number, n: number): void {
    this.usedIdx = idx;
    this.inFlight -= n;
    this.stats.flushes++;
    // The driver fell more than a whole window behind what we signalled.
    if (((idx - this.signalledUsed) << 16 >> 16) < ((idx - old) & 0xffff)) this.signalledValid = false;
  }

  private async flushAsync(): Promise<void> {
    const epoch = this.epochNo;
    this.flushing = true;
    try {
      while (this.pendingUsed.length > 0 && epoch === this.epochNo) {
        const dma = this.host.dma;
        if (!dma) return;
        const list = this.pendingUsed;
        this.pendingUsed = this.spareUsed;
        this.spareUsed = list;
        const n = list.length >> 1;
        const old = this.usedIdx;
        const elems = this.usedElems(list, n);
        list.length = 0;
        await this.writeUsed(dma, elems, n, epoch);
        if (epoch !== this.epochNo) return;
        const idx = (old + n) & 0xffff;
        const idxAddr = iovaAdd(this.used, 2);
        if (!store16Fenced(dma, idxAddr, idx)) await this.ringStore16(dma, idxAddr, idx, 'used->idx');
        if (epoch !== this.epochNo) return;
        this.published(old, idx, n);
        const notify = this.shouldNotify(dma, epoch);
        if (typeof notify === 'boolean' ? notify : await notify) {
          this.stats.interrupts++;
          this.host.notify(this);
        } else this.stats.suppressed++;
      }
    } catch (e) {
      if (epoch === this.epochNo) this.host.ringError(this, asError(e));
    } finally {
      if (epoch === this.epochNo) this.flushing = false;
    }
  }

  /** The (head, len) pairs as struct virtq_used_elem bytes (le32 id, le32 len). */
  private usedElems(list: number[], n: number): Buffer {
    if (this.usedBuf.length < 8 * n) this.usedBuf = Buffer.alloc(8 * n);
    const b = this.usedBuf;
    for (let k = 0; k < n; k++) {
      b.writeUInt32LE(list[2 * k]!, 8 * k);
      b.writeUInt32LE(list[2 * k + 1]!, 8 * k + 4);
    }
    return b.subarray(0, 8 * n);
  }

  /** used->ring[usedIdx .. +n) = the pending elements (at most two writes). */
  private async writeUsed(dma: DeviceDma, elems: Buffer, n: number, epoch: number): Promise<void> {
    const ring = iovaAdd(this.used, 4);
    const start = this.usedIdx % this.size;
    const first = Math.min(n, this.size - start);
    await this.ringWrite(dma, iovaAdd(ring, 8 * start), elems.subarray(0, 8 * first), 'used ring');
    if (first < n && epoch === this.epochNo) await this.ringWrite(dma, ring, elems.subarray(8 * first, 8 * n), 'used ring');
  }

  /** Interrupt or not (a boolean at once when the ring is mapped). */
  private shouldNotify(dma: DeviceDma, epoch: number): boolean | Promise<boolean> {
    if (!this.eventIdx) {
      const flags = mapped16(dma, this.avail);
      const decide = (f: number) => (f & VRING_AVAIL_F_NO_INTERRUPT) === 0;
      if (flags !== null) return decide(flags);
      return this.ringRead16(dma, this.avail, 'avail->flags').then((f) => epoch === this.epochNo && decide(f));
    }
    const valid = this.signalledValid;
    this.signalledValid = true;
    const old = this.signalledUsed;
    const now = (this.signalledUsed = this.usedIdx);
    if (!valid) return true;
    const eventAddr = iovaAdd(this.avail, 4 + 2 * this.size);
    const usedEvent = mapped16(dma, eventAddr);
    if (usedEvent !== null) return needEvent(usedEvent, now, old);
    return this.ringRead16(dma, eventAddr, 'used_event').then((e) => epoch === this.epochNo && needEvent(e, now, old));
  }

  // ---- ring access: faults become RingErrors ----

  private async ringRead(dma: DeviceDma, addr: Iova, len: number, what: string): Promise<Buffer> {
    try {
      return await dma.read(addr, len);
    } catch (e) {
      throw new RingError(`queue ${this.index}: cannot read ${what} at ${iovaHex(addr)}+${len}: ${asError(e).message}`);
    }
  }

  private async ringRead16(dma: DeviceDma, addr: Iova, what: string): Promise<number> {
    try {
      return await readU16(dma, addr);
    } catch (e) {
      throw new RingError(`queue ${this.index}: cannot read ${what} at ${iovaHex(addr)}: ${asError(e).message}`);
    }
  }

  private async ringWrite(dma: DeviceDma, addr: Iova, data: Uint8Array, what: string): Promise<void> {
    try {
      await dma.write(addr, data);
    } catch (e) {
      throw new RingError(`queue ${this.index}: cannot write ${what} at ${iovaHex(addr)}: ${asError(e).message}`);
    }
  }

  private async ringStore16(dma: DeviceDma, addr: Iova, v: number, what: string): Promise<void> {
    try {
      await storeU16Fenced(dma, addr, v);
    } catch (e) {
      throw new RingError(`queue ${this.index}: cannot write ${what} at ${iovaHex(addr)}: ${asError(e).message}`);
    }
  }
}

/** What the asynchronous path copied of one chain's descriptors (walk reads them before the mapped memory). */
interface DescCopies {
  /** The whole descriptor table (kept for the batch). */
  table: DataView | null;
  /** The chain's head descriptor. */
  head: Buffer | null;
  /** The chain's indirect table, copied from indirectAt (indirectLen bytes). */
  indirect: Buffer | null;
  indirectAt: Iova;
  indirectLen: number;
  /** Set by walk: the range it could not read. */
  need?: { what: 'descriptor' | 'descriptor table' | 'indirect table'; addr: Iova; len: number };
}

/** walk() could not read a range: note it for parseChain (if it fetches), and give up. */
function missing(copies: DescCopies | null, what: NonNullable<DescCopies['need']>['what'], addr: Iova, len: number): null {
  if (copies) copies.need = { what, addr, len };
  return null;
}

/** vring_need_event: has `newIdx` passed `event` since `oldIdx`? */
export function needEvent(event: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - event - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}

/**
 * Descriptors are read through a DataView: several times faster than
 * Buffer.readUInt32LE in this loop (a request has ~250 of them).
 */
function descView(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.length);
}

/** Append one direct descriptor's buffer to the chain. */
function addBuffer(chain: DescChain, d: DataView, base: number, flags: number, q: number): void {
  const len = d.getUint32(base + 8, true);
  chain.descriptors++;
  if (len === 0) return;
  const addr = iovaFrom(d.getUint32(base, true), d.getUint32(base + 4, true));
  if (flags & Desc.WRITE) {
    chain.wAddr.push(addr);
    chain.wLen.push(len);
    chain.writable += len;
  } else {
    if (chain.writable > 0) throw new RingError(`queue ${q}: a device-readable descriptor follows a writable one in chain ${chain.head}`);
    chain.rAddr.push(addr);
    chain.rLen.push(len);
    chain.readable += len;
  }
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}
