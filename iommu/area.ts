// One mapped IOVA area: [start, end) → backing[offset, offset + length).
// In-flight views and I/O hold the area; an unmapped ("retired") area keeps
// its backing reference until the last hold is released, then lets it go.
import type { Backing } from './backing.js';

export class Area {
  /** In-flight views / DMA holding this area. */
  holds = 0;
  /** Unmapped: no new translation reaches it. */
  dead = false;
  /** Dirty bitmap, one bit per 4 KiB page, allocated on first write. */
  dirty: Uint8Array | null = null;
  /**
   * The area this one was split from (type1 v1 unmap), while views taken
   * through it are still in flight: unmapping this one waits for them too.
   */
  parent: Area | null = null;
  private waiters: (() => void)[] | null = null;

  constructor(
    readonly start: number,
    readonly end: number,
    readonly backing: Backing,
    readonly offset: number,
    /** Device access rights: PROT_READ | PROT_WRITE (native/prot.ts). */
    readonly prot: number,
  ) {
    backing.retain();
  }

  get length(): number {
    return this.end - this.start;
  }

  hold(): void {
    this.holds++;
  }

  release(): void {
    if (--this.holds !== 0) return;
    if (this.dead) this.finish();
    else this.wake();
  }

  /**
   * Unmapped: returns null when nothing holds the area (its backing reference
   * is dropped at once), else a promise that settles when the last hold goes.
   */
  retire(): Promise<void> | null {
    this.dead = true;
    const waits: Promise<void>[] = [];
    if (this.holds === 0) this.finish();
    else waits.push(this.idle());
    for (let p = this.parent; p; p = p.parent) if (p.holds > 0) waits.push(p.idle());
    this.parent = null;
    if (waits.length === 0) return null;
    return waits.length === 1 ? waits[0] : Promise.all(waits).then(() => undefined);
  }

  /** Link a piece split off this area (drops idle links on the way). */
  adopt(piece: Area): void {
    let p: Area | null = this;
    while (p && p.holds === 0) p = p.parent;
    piece.parent = p;
  }

  /** Settles when no hold is left. */
  idle(): Promise<void> {
    if (this.holds === 0) return Promise.resolve();
    return new Promise<void>((resolve) => (this.waiters ??= []).push(resolve));
  }

  private finish(): void {
    this.backing.release();
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = null;
    if (w) for (const f of w) f();
  }
}
