// Submission and completion queues (Base 3.3): a ring of entries in guest
// memory, a head and a tail, and for a CQ the phase tag that flips on each
// wrap. Commands are decoded into Command objects kept in a per-queue pool,
// so the hot path allocates no command state. Shadow doorbells (Doorbell
// Buffer Config) give I/O queues a tail/head slot and an EventIdx slot in
// guest memory; their addresses live here, their use in shadow-doorbells.ts.
import { CQE_SIZE, SQE_SIZE, Sqe } from './constants.js';
import type { DataPointer, ScatterList } from './data-pointer.js';
import { iovaOf } from './data-pointer.js';

const u32 = (b: Uint8Array, o: number) => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;

/** One decoded submission queue entry and what executing it needs. */
export class Command implements DataPointer, ScatterList {
  /** The queue it came from. */
  readonly sq: SubmissionQueue;
  opcode = 0;
  /** CDW0 bits 15:8 (FUSE, PSDT). */
  flags = 0;
  cid = 0;
  nsid = 0;
  psdt = 0;
  prp1 = 0;
  prp2Lo = 0;
  prp2Hi = 0;
  cdw10 = 0;
  cdw11 = 0;
  cdw12 = 0;
  cdw13 = 0;
  cdw14 = 0;
  cdw15 = 0;
  /** Completion dword 0 (command specific result). */
  result = 0;
  /** The status it completed with (kept while it waits for room in a full CQ). */
  status = 0;
  /** The controller generation it was fetched in: after a reset its completion is dropped. */
  epoch = 0;
  /** Scatter list of its data (reused). */
  readonly iovas: number[] = [];
  readonly lengths: number[] = [];

  constructor(sq: SubmissionQueue) {
    this.sq = sq;
  }

  /** Decode a 64-byte entry. */
  decode(e: Uint8Array, epoch: number): void {
    this.opcode = e[Sqe.OPCODE]!;
    this.flags = e[Sqe.FLAGS]!;
    this.psdt = this.flags >> 6;
    this.cid = e[Sqe.CID]! | (e[Sqe.CID + 1]! << 8);
    this.nsid = u32(e, Sqe.NSID);
    this.prp1 = iovaOf(u32(e, Sqe.DPTR), u32(e, Sqe.DPTR + 4));
    this.prp2Lo = u32(e, Sqe.PRP2);
    this.prp2Hi = u32(e, Sqe.PRP2 + 4);
    this.cdw10 = u32(e, Sqe.CDW10);
    this.cdw11 = u32(e, Sqe.CDW11);
    this.cdw12 = u32(e, Sqe.CDW12);
    this.cdw13 = u32(e, Sqe.CDW13);
    this.cdw14 = u32(e, Sqe.CDW14);
    this.cdw15 = u32(e, Sqe.CDW15);
    this.result = 0;
    this.epoch = epoch;
  }
}

/** Guest addresses of a queue's shadow doorbell and EventIdx slots. */
export interface ShadowSlots {
  doorbell: number;
  eventIdx: number;
}

export class CompletionQueue {
  head = 0;
  tail = 0;
  /** The phase tag written with the next entry. */
  phase = 1;
  /** Submission queues that post here (a CQ in use cannot be deleted). */
  users = 0;
  /** Completions waiting for room (the CQ was full). */
  readonly waiting: Command[] = [];
  /** Entries posted since the last interrupt. */
  unsignalled = 0;
  /** CQE writes through DMA messages still under way (the interrupt waits for them). */
  writesInFlight = 0;
  shadow: ShadowSlots | undefined;

  constructor(
    readonly id: number,
    /** Guest address of entry 0 (physically contiguous, page aligned). */
    readonly base: number,
    /** Entries (2..65536). */
    readonly size: number,
    /** Interrupts enabled. */
    readonly ien: boolean,
    /** MSI-X vector (0 for INTx). */
    readonly vector: number,
  ) {}

  get full(): boolean {
    return (this.tail + 1) % this.size === this.head;
  }

  /** Guest address of the next entry to post. */
  get tailAddr(): number {
    return this.base + this.tail * CQE_SIZE;
  }

  /**
   * Take a new head if it lies between the head and the tail: the host
   * only consumes posted entries. A value behind the head (a posted MMIO
   * write older than a shadow head already read) is refused, or the CQ
   * would look emptier than it is and entries the host has not read yet
   * would be overwritten.
   */
  acceptHead(h: number): boolean {
    if (!(h >= 0 && h < this.size)) return false;
    const posted = (this.tail - this.head + this.size) % this.size;
    if ((h - this.head + this.size) % this.size > posted) return false;
    this.head = h;
    return true;
  }

  /** Move the tail past the entry just written; the phase flips on a wrap. */
  advance(): void {
    if (++this.tail === this.size) {
      this.tail = 0;
      this.phase ^= 1;
    }
  }
}

/** Writes a completion queue entry (Base 4.6) into `e` (16 bytes), the status and phase last. */
export function writeCqe(e: Uint8Array, result: number, sqHead: number, sqid: number, cid: number, status: number, phase: number): void {
  e[0] = result;
  e[1] = result >>> 8;
  e[2] = result >>> 16;
  e[3] = result >>> 24;
  e[4] = e[5] = e[6] = e[7] = 0;
  e[8] = sqHead;
  e[9] = sqHead >>> 8;
  e[10] = sqid;
  e[11] = sqid >>> 8;
  e[12] = cid;
  e[13] = cid >>> 8;
  const sf = (status << 1) | phase;
  e[14] = sf;
  e[15] = sf >>> 8; // the driver looks at the phase: written last
}

export class SubmissionQueue {
  head = 0;
  tail = 0;
  /** Commands fetched and not yet completed. */
  inFlight = 0;
  /** An entry is being fetched through DMA messages (one at a time, in order). */
  fetching = false;
  /** Deleted (or the controller reset): nothing more is fetched. */
  deleted = false;
  shadow: ShadowSlots | undefined;
  /** The tail the shadow EventIdx was last set to, or -1 while the queue is being polled. */
  eventIdx = -1;
  /** Counts tail changes: a value read through DMA messages is taken only if none came meanwhile. */
  tailUpdates = 0;
  /** The last tail written to the MMIO doorbell (posted writes arrive in order). */
  mmioTail = 0;
  /** When the queue last had work (performance.now()), for the polling window. */
  lastActive = 0;
  private readonly pool: Command[] = [];
  /** Called when the last in-flight command completed (Delete SQ waits for it). */
  onDrained: (() => void) | undefined;

  constructor(
    readonly id: number,
    readonly base: number,
    readonly size: number,
    readonly cq: CompletionQueue,
  ) {}

  get empty(): boolean {
    return this.head === this.tail;
  }

  /** Guest address of the entry at the head. */
  get headAddr(): number {
    return this.base + this.head * SQE_SIZE;
  }

  /** A command object from the pool (grows up to the queue size). */
  take(): Command {
    return this.pool.pop() ?? new Command(this);
  }

  /** The command completed: back to the pool. */
  release(cmd: Command): void {
    if (this.pool.length < this.size) this.pool.push(cmd);
  }

  /**
   * Take a new tail if it only adds entries: a value that would move the
   * tail back over entries already announced (a stale shadow value read
   * late, or a host error) is refused.
   */
  acceptTail(t: number): boolean {
    if (!(t >= 0 && t < this.size)) return false;
    const pending = (this.tail - this.head + this.size) % this.size;
    const added = (t - this.tail + this.size) % this.size;
    if (pending + added >= this.size) return false;
    this.tail = t;
    this.tailUpdates++;
    return true;
  }

  /**
   * The tail an MMIO doorbell write stands for when the shadow slot cannot
   * be read at once: a value the tail already passed through shadow reads
   * since the previous MMIO write (the posted write came late) adds nothing.
   * (Ambiguous only if shadow reads alone moved the tail most of a lap.)
   */
  tailFromMmio(value: number): number {
    const taken = (this.tail - this.mmioTail + this.size) % this.size;
    const ahead = (value - this.mmioTail + this.size) % this.size;
    return ahead <= taken ? this.tail : value;
  }

  consume(): void {
    if (++this.head === this.size) this.head = 0;
  }
}
