// How long a virtqueue watches its available ring for the driver's next
// buffer once the ring is empty, instead of asking for a kick. While it
// watches, avail_event is held behind (EVENT_IDX), so the driver adds buffers
// without the doorbell (a trap and a message for a vfio-user device) and we
// take them without a wake-up. Worth it when the driver comes back soon, as a
// guest at I/O depth 1 does after each completion.
//
// The window follows the gaps between the ring going empty and the next
// buffer, in the manner of adaptive event-loop polling: a gap within reach
// widens it to twice that gap (a hit near its end would be a miss next time),
// short gaps shrink it slowly, a gap past the longest window halves it, and
// it closes below the shortest window worth opening. And windows must pay
// (PollTrial): the gaps are compared with windows and without, and the
// shorter way runs for a while. A window keeps this CPU busy, and the CPU
// may be the one the guest's vCPU or QEMU's main loop needed: then the
// driver comes back later than a kick would have brought its buffer, and
// the trial turns windows off. Misses are charged to
// the server's polling budget (the one its socket windows use), which also
// refuses windows while threads wait for a CPU: polling must not take a CPU a
// guest needs. Each round of a window first yields the CPU: the interrupt we
// just sent woke QEMU's main loop, often on this CPU, and a watcher that did
// not yield kept it waiting (measured: 91 µs median from our eventfd write
// to QEMU's handler with a window open, 19 µs without, 18 µs with the
// yield). A round that then waited long for the CPU ends the window and
// holds polling off a while.
import * as native from '../../native/index.js';
import type { PollGate } from '../device.js';
import { PollTrial } from '../poll-trial.js';

/** The longest window, in ns: a TCG guest takes about 200 µs from a completion to its next request. */
export const RING_POLL_MAX_NS = 500_000;
/**
 * A turn that waited longer than this for the CPU ends the window: another
 * thread needed this CPU for longer than any window (QEMU's main loop taking
 * our interrupt runs for a few µs; a guest's vCPU thread that was woken here
 * runs until its guest halts, about as long as a turnaround). Measured at fio
 * depth 1: ending windows after 100 µs of waiting left them open for 6% of
 * the requests, after 1 ms for 87%.
 */
const LOST_CPU_NS = 1_000_000;
/** The shortest window worth opening. */
const MIN_WINDOW_NS = 10_000;
/** Gaps are capped at this in the trial, so idle spells weigh the same either way. */
const TRIAL_GAP_CAP_NS = 2 * RING_POLL_MAX_NS;
/**
 * Windows pay when the mean gap with them is below this share of the gap
 * without. Lower than the socket's bar: what a window costs is bounded by
 * the budget already, and a gap a few per cent shorter is a request rate a
 * few per cent higher (measured at fio depth 1: gaps 131 against 143 µs,
 * buffer to buffer 152 against 159 µs).
 */
const RING_WINDOWS_PAY = 0.95;

/** One queue's window. */
export class RingPollWindow {
  /** The window in ns (0: closed, ask for a kick). */
  ns = 0;
  /** Whether windows pay here, measured. */
  readonly trial = new PollTrial(RING_WINDOWS_PAY);
  /** A window was opened for the gap now running. */
  private windowed = false;
  /** A window of this gap lost the CPU: the gap says nothing about windows. */
  private lost = false;

  /** `lostCpu`: yield the CPU, true when this thread then waited long for it (tests give a fake). */
  constructor(
    private readonly gate: () => PollGate | undefined,
    private readonly lostCpu: () => boolean = () => native.yieldCpu(LOST_CPU_NS),
  ) {}

  /** The window to open now that the ring is empty (0: none). */
  open(): number {
    this.windowed = false;
    if (this.ns === 0 || !this.trial.polling) return 0;
    const gate = this.gate();
    if (!gate || !gate.allows()) return 0;
    this.windowed = true;
    return this.ns;
  }

  /**
   * Before each look at the ring: let a thread that waits for this CPU run.
   * False when one held it for long: the window ends (and the budget holds
   * polling off).
   */
  turn(): boolean {
    if (!this.lostCpu()) return true;
    this.lost = true;
    this.gate()?.contended();
    return false;
  }

  /** A window of `ns` ended with no buffer. */
  missed(ns: number): void {
    this.gate()?.charge(ns);
  }

  /** The next buffer came `gapNs` after the ring went empty (by a kick or in a window). */
  next(gapNs: number): void {
    if (!this.lost) this.trial.wait(Math.min(gapNs, TRIAL_GAP_CAP_NS), this.windowed);
    this.windowed = this.lost = false;
    if (gapNs > RING_POLL_MAX_NS) {
      this.ns = this.ns / 2 < MIN_WINDOW_NS ? 0 : this.ns / 2;
      return;
    }
    const want = Math.min(RING_POLL_MAX_NS, Math.max(MIN_WINDOW_NS, 2 * gapNs));
    // Widen at once; narrow by an eighth of the difference per buffer.
    this.ns = want >= this.ns ? want : this.ns - (this.ns - want) / 8;
  }
}
