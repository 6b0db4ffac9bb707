// Do polling windows pay? A window keeps a CPU busy so that the next
// request is caught without a wake-up; whether that gets requests sooner
// depends on the machine and the peer (a peer the scheduler moves onto our
// CPU while we sleep beats one answered across CPUs, and a guest whose
// vCPU needs the CPU we spin on comes back later). So it is measured, not
// assumed: the mean wait for the next request over a short trial with
// windows and one without, and the shorter way runs for a while, longer
// each time it wins again. Used by the socket windows
// (server/adaptive-poll.ts) and the ring windows (virtio/ring-poll.ts).

/** Waits for a request in each trial, with windows and without. */
const TRIAL_WAITS = 64;
/** Waits the winner runs for before the next trial (doubling while it keeps winning). */
const RUN_MIN_WAITS = 1024;
const RUN_MAX_WAITS = 32768;

/**
 * Do windows pay? The mean wait for a request (each wait capped, so idle
 * spells weigh the same either way) with windows and then without, over
 * TRIAL_WAITS each; the shorter way runs for RUN_MIN_WAITS and more.
 */
export class PollTrial {
  /**
   * `bar`: windows pay when the mean wait with them is below this share of
   * the wait without.
   */
  constructor(private readonly bar: number) {}

  /** May windows open now? */
  polling = true;
  /** Trials that windows won, and that they lost. */
  paid = 0;
  unpaid = 0;
  private phase: 'with' | 'without' | 'run' = 'with';
  private waits = 0;
  private sum = 0;
  private meanWith = 0;
  private target = TRIAL_WAITS;
  private run = RUN_MIN_WAITS;
  private lastWinner: boolean | null = null;

  /**
   * One wait for a request, in ns (already capped by the caller); `windowed`:
   * a window was open for it. The 'with' side counts only those: a wait the
   * budget refused a window for says nothing about windows.
   */
  wait(ns: number, windowed: boolean): void {
    if (this.phase === 'with' && !windowed) return;
    this.sum += ns;
    if (++this.waits < this.target) return;
    const mean = this.sum / this.waits;
    this.waits = this.sum = 0;
    if (this.phase === 'with') {
      this.meanWith = mean;
      this.phase = 'without';
      this.polling = false;
      this.target = TRIAL_WAITS;
    } else if (this.phase === 'without') {
      const pays = this.meanWith < mean * this.bar;
      if (pays) this.paid++;
      else this.unpaid++;
      this.run = pays === this.lastWinner ? Math.min(RUN_MAX_WAITS, 2 * this.run) : RUN_MIN_WAITS;
      this.lastWinner = pays;
      this.polling = pays;
      this.phase = 'run';
      this.target = this.run;
    } else {
      this.phase = 'with';
      this.polling = true;
      this.target = TRIAL_WAITS;
    }
  }
}
