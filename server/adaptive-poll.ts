// Adaptive polling of a connection's socket. After a callback the native
// watcher may look at the socket for a short window before going back to
// epoll (native watchPoll), so that a request arriving meanwhile is caught
// without the sleep and the cross-CPU wake-up. This module decides how long
// that window is, from what each window reported to the next callback:
//
// - a hit (caught after t ns) keeps the window, and widens it a little when
//   t came close to its end;
// - a miss followed soon (within the cap) by the request doubles it: a
//   little longer would have caught it;
// - a miss followed by a long silence closes it at once: the peer is idle;
// - with the window closed, a request that follows the previous one within
//   twice the cap (the gap includes our own wake-up) opens it again.
//
// And windows must pay (PollTrial, ../devices/poll-trial.ts): the wait for
// the next request is compared in short trials with windows and without.
// Without windows the scheduler may put the peer on our CPU when we sleep,
// and a ping-pong on one CPU beats one across two; with windows a peer on
// another CPU is answered without our wake-up.
//
// Three process-wide bounds keep it from costing a guest its CPU (one thread
// serves every connection, so they are shared):
// - no windows while threads wait for a CPU: the kernel's CPU pressure
//   (/proc/pressure/cpu, the time some runnable thread was not running)
//   grew by more than CROWD_SHARE of the time since the last look (at most
//   every CROWD_CHECK_MS); a window would keep a CPU from them. Without
//   pressure accounting, more runnable threads than CPUs (/proc/loadavg)
//   means the same;
// - windows that caught nothing are debt, paid back at MISS_SHARE of wall
//   time; past MAX_DEBT_NS polling stops until half of it is paid;
// - a window that lost the CPU to another thread (the watcher yields every
//   round and sees the jump) stops polling for a hold-off that doubles
//   while that keeps happening (HOLD_MIN_MS .. HOLD_MAX_MS).
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { PollTrial } from '../devices/poll-trial.js';
import { POLL_CONTENDED, POLL_HIT, POLL_MAX_NS, POLL_MISS } from '../native/index.js';

/** The default cap of the window, in µs (`--poll-us`). */
export const DEFAULT_POLL_US = 50;
/** The largest `--poll-us` the watcher takes. */
export const MAX_POLL_US = POLL_MAX_NS / 1000;

/**
 * Socket windows pay when they cut the mean wait to this share of the wait
 * without: below that, a client the scheduler would move onto our CPU is
 * better left to it.
 */
const SOCKET_WINDOWS_PAY = 0.85;
/** The smallest window worth opening (a spin round is about 1 µs). */
const MIN_WINDOW_NS = 5_000;
/** Share of wall time that windows catching nothing may burn on average. */
const MISS_SHARE = 0.1;
/** Debt (ns of missed windows) past which polling pauses. */
const MAX_DEBT_NS = 2_000_000;
const HOLD_MIN_MS = 10;
const HOLD_MAX_MS = 1000;
/** How often the machine's CPU pressure is read. */
const CROWD_CHECK_MS = 10;
/**
 * Share of wall time that some thread may have waited for a CPU before
 * windows stop. A ping-pong peer's own wake-ups count too (a woken thread
 * waits while its CPU leaves idle), so it is not zero.
 */
const CROWD_SHARE = 0.25;

/** The process-wide part: the cap, the miss debt and the contention hold-off. */
export class PollBudget {
  /** The cap of every window in ns (0: polling off). */
  capNs = DEFAULT_POLL_US * 1000;
  private debt = 0;
  private debtAt = 0;
  private paused = false;
  private holdUntil = 0;
  private holdMs = 0;
  private crowded = false;
  private crowdAt = -Infinity;
  private stallAt = NaN;

  constructor(
    private readonly now: () => number = () => performance.now(),
    private readonly load: CpuLoad = machineLoad,
    private readonly cpus: number = availableParallelism(),
  ) {}

  /** A window of `ns` caught nothing. */
  charge(ns: number): void {
    this.repay();
    this.debt += ns;
    if (this.debt > MAX_DEBT_NS) this.paused = true;
  }

  /** A window lost the CPU to another thread: stop polling for a while. */
  contended(): void {
    const t = this.now();
    // Again soon after the last hold-off ended: hold off longer.
    this.holdMs = t < this.holdUntil + 2 * this.holdMs ? Math.min(HOLD_MAX_MS, 2 * this.holdMs) : HOLD_MIN_MS;
    this.holdUntil = t + this.holdMs;
  }

  /** May a window open now? */
  allows(): boolean {
    if (this.capNs === 0) return false;
    const t = this.now();
    if (t < this.holdUntil) return false;
    if (t - this.crowdAt >= CROWD_CHECK_MS) {
      this.crowded = this.someoneWaits(t);
      this.crowdAt = t;
    }
    if (this.crowded) return false;
    if (this.paused) {
      this.repay();
      if (this.debt > MAX_DEBT_NS / 2) return false;
      this.paused = false;
    }
    return true;
  }

  /** Did threads wait for a CPU since the last look (or, without pressure accounting, do they now)? */
  private someoneWaits(t: number): boolean {
    const stall = this.load.stallUs();
    if (Number.isNaN(stall)) return this.load.runnable() > this.cpus;
    const waited = (stall - this.stallAt) / 1000;
    this.stallAt = stall;
    // The first look has nothing to compare with.
    return waited > CROWD_SHARE * (t - this.crowdAt);
  }

  private repay(): void {
    const t = this.now();
    this.debt = Math.max(0, this.debt - (t - this.debtAt) * 1e6 * MISS_SHARE);
    this.debtAt = t;
  }
}

/** What the budget reads of the machine's load. */
export interface CpuLoad {
  /** µs in which some runnable thread waited for a CPU, since boot (NaN: not accounted). */
  stallUs(): number;
  /** Threads runnable now, this one included (NaN: unknown). */
  runnable(): number;
}

/** The kernel's figures: /proc/pressure/cpu ("some ... total=µs") and /proc/loadavg (running/total). */
const machineLoad: CpuLoad = {
  stallUs: () => {
    const m = /^some .*total=(\d+)/m.exec(readProc('/proc/pressure/cpu'));
    return m ? Number(m[1]) : NaN;
  },
  runnable: () => parseInt(readProc('/proc/loadavg').split(' ')[3] ?? '', 10),
};

function readProc(file: string): string {
  try {
    return readFileSync(file, 'latin1');
  } catch {
    return '';
  }
}

/** The budget of this process's connections (the `--poll-us` setting lands here). */
export const processPollBudget = new PollBudget();

/** Sets the cap of every poll window, in µs (0 turns polling off). */
export function setPollLimit(us: number): void {
  if (!Number.isInteger(us) || us < 0 || us > MAX_POLL_US) throw new RangeError(`poll limit must be an integer in [0, ${MAX_POLL_US}] µs, got ${us}`);
  processPollBudget.capNs = us * 1000;
}

/** What one connection's windows did (logged when it ends). */
export interface PollStats {
  /** Requests caught by a window, and the ns spun for them. */
  hits: number;
  hitNs: number;
  /** Windows that ran out, and their ns. */
  misses: number;
  missNs: number;
  /** Windows that lost the CPU to another thread. */
  contended: number;
}

/** One connection's window. */
export class AdaptivePoller {
  /** The window (ns) the policy would open, before the budget's say. */
  private window = 0;
  /** The window the last update returned (what the watcher spun, or 0). */
  private opened = 0;
  readonly stats: PollStats = { hits: 0, hitNs: 0, misses: 0, missNs: 0, contended: 0 };
  readonly trial = new PollTrial(SOCKET_WINDOWS_PAY);

  constructor(private readonly budget: PollBudget = processPollBudget) {}

  /** The window the last update returned was not opened after all (the caller turned it off). */
  withhold(): void {
    this.opened = 0;
  }

  /**
   * One watcher callback (its `events` and `ns`, see native.WatchCallback):
   * returns the window for the spin after it, in ns (0: none).
   */
  update(events: number, ns: number): number {
    const cap = this.budget.capNs;
    // The wait for this request: spun for it, or window + gap after a miss, or the gap.
    const wait = events & POLL_MISS ? this.opened + ns : ns;
    if (!(events & POLL_CONTENDED) && wait >= 0) this.trial.wait(Math.min(wait, 4 * cap), this.opened > 0);
    if (events & POLL_HIT) {
      this.stats.hits++;
      this.stats.hitNs += ns;
      if (ns > (this.window * 3) / 4) this.window = Math.min(cap, Math.round(this.window * 1.5));
    } else if (events & POLL_CONTENDED) {
      this.stats.contended++;
      this.window = 0;
      this.budget.contended();
    } else if (events & POLL_MISS) {
      this.stats.misses++;
      this.stats.missNs += this.window;
      this.budget.charge(this.window);
      this.window = ns <= cap ? Math.min(cap, 2 * this.window) : 0;
    } else if (this.window === 0 && ns >= 0 && ns <= 2 * cap) {
      this.window = Math.min(cap, Math.max(MIN_WINDOW_NS, ns));
    }
    if (this.window > cap) this.window = cap;
    this.opened = this.window > 0 && this.trial.polling && this.budget.allows() ? this.window : 0;
    return this.opened;
  }
}
