// When a write may be made on the event loop, blocking it, instead of on the
// libuv thread pool. A buffered write into the page cache is a copy that
// seldom waits (RWF_NOWAIT would say so, but not every file system takes it
// for buffered writes, and then every write paid two thread hand-offs: on a
// loaded 2-CPU machine a 1 MiB virtio-blk write's median from kick to
// interrupt was 227-421 µs through the pool, 196-249 µs inline). It can wait, though (dirty-page
// throttling, a journal): so writes go inline only while they stay quick. A
// write that took longer than SLOW_MS sends the writes to the pool for a
// hold-off that doubles while that keeps happening, and requests larger than
// MAX_BYTES always go there.
import { performance } from 'node:perf_hooks';

/** Larger writes go to the pool: they would hold the loop too long. */
export const MAX_BLOCKING_WRITE = 2 << 20;
/** An inline write longer than this (ms) moves writes to the pool for a while. */
export const SLOW_WRITE_MS = 2;
const HOLD_MIN_MS = 100;
const HOLD_MAX_MS = 10_000;

/** The decision and what it learned, per process (one event loop). */
export class BlockingWrites {
  private holdUntil = 0;
  private holdMs = 0;
  /** Writes made inline / sent to the pool while held off / slow inline writes seen. */
  readonly stats = { inline: 0, heldOff: 0, slow: 0 };

  constructor(
    private readonly enabled: boolean,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** May a write of `bytes` block the loop now? */
  allow(bytes: number): boolean {
    if (!this.enabled || bytes > MAX_BLOCKING_WRITE) return false;
    if (this.open()) return true;
    this.stats.heldOff++;
    return false;
  }

  /** The largest write that may block the loop now (0: none), for a caller that does not know its writes yet. */
  largest(): number {
    return this.enabled && this.open() ? MAX_BLOCKING_WRITE : 0;
  }

  /** Not held off (any hold-off that ran out is over). */
  private open(): boolean {
    if (this.holdUntil === 0) return true;
    if (this.now() < this.holdUntil) return false;
    this.holdUntil = 0;
    return true;
  }

  /** An inline write that started at `start` (this clock) has returned. */
  done(start: number): void {
    this.took(this.now() - start);
  }

  /** `count` inline writes have returned, the longest after `ms`. */
  took(ms: number, count = 1): void {
    this.stats.inline += count;
    if (ms <= SLOW_WRITE_MS) {
      this.holdMs = 0;
      return;
    }
    this.stats.slow++;
    this.holdMs = Math.min(HOLD_MAX_MS, this.holdMs === 0 ? HOLD_MIN_MS : 2 * this.holdMs);
    this.holdUntil = this.now() + this.holdMs;
  }

  /** This clock's time (the start to give done()). */
  clock(): number {
    return this.now();
  }
}
