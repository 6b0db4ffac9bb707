// Completion interrupts (Base 3.5, 5.27.1.9-10): MSI-X with the vector each
// CQ was created with (CQs may share a vector), or the INTx line, high while
// any interrupt-enabled CQ holds entries the host has not consumed and
// INTMS does not mask it. Interrupt coalescing (aggregation threshold and
// time) applies to I/O CQs on vectors not excluded by Interrupt Vector
// Configuration; the admin CQ always interrupts at once.
import type { Features } from './features.js';
import type { CompletionQueue } from './queues.js';
import type { NvmeCounters } from './stats.js';

/** How interrupts leave the function (the PCI layer). */
export interface IrqSink {
  readonly msixEnabled: boolean;
  msixNotify(vector: number): void;
  setIntx(level: boolean): void;
}

export class CompletionInterrupts {
  /** INTMS: bit 0 masks the single INTx/MSI vector. */
  mask = 0;
  private level = false;
  /** Coalesced entries per vector, and the timer that ends the wait. */
  private readonly pending = new Map<number, number>();
  private readonly timers = new Map<number, NodeJS.Timeout>();

  constructor(
    private readonly sink: IrqSink,
    private readonly features: Features,
    private readonly counters: NvmeCounters,
    /** The CQs that exist (for the INTx level). */
    private readonly cqs: () => Iterable<CompletionQueue>,
  ) {}

  /** `cq` got `entries` new entries the host has not been told of. */
  completed(cq: CompletionQueue, entries: number): void {
    if (!cq.ien || entries === 0) return;
    if (!this.sink.msixEnabled) {
      this.updateIntx();
      return;
    }
    const v = cq.vector;
    const c = cq.id === 0 ? undefined : this.features.coalescingFor(v);
    if (!c) return this.fire(v);
    const n = (this.pending.get(v) ?? 0) + entries;
    if (n >= c.threshold) return this.fire(v);
    this.pending.set(v, n);
    if (!this.timers.has(v)) {
      const t = setTimeout(() => this.fire(v), Math.max(1, Math.ceil(c.timeUs / 1000)));
      t.unref?.();
      this.timers.set(v, t);
    }
  }

  private fire(v: number): void {
    const t = this.timers.get(v);
    if (t) clearTimeout(t);
    this.timers.delete(v);
    this.pending.delete(v);
    this.counters.interrupts++;
    this.sink.msixNotify(v);
  }

  /** Recompute the INTx line (after a CQ head moved, INTMS/INTMC, or new entries). */
  updateIntx(): void {
    let want = false;
    if (!this.sink.msixEnabled && !(this.mask & 1)) {
      for (const cq of this.cqs()) {
        if (cq.ien && cq.head !== cq.tail) {
          want = true;
          break;
        }
      }
    }
    if (want === this.level) return;
    this.level = want;
    if (want) this.counters.interrupts++;
    this.sink.setIntx(want);
  }

  /** Controller reset: nothing pending, the line low. */
  reset(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.pending.clear();
    this.mask = 0;
    if (this.level) {
      this.level = false;
      this.sink.setIntx(false);
    }
  }
}
