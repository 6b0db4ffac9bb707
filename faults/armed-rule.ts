// A rule in force: its counters, its own seeded generator, and the decision
// whether one occurrence that matched its fields fires. The order of the
// checks is part of the contract (and what makes runs reproducible): the
// time window first (outside it nothing is counted), then the occurrence
// count (nth), then the firing limit (times), then the probability draw, so a
// rule draws once per eligible occurrence and never otherwise.
import type { FaultRule } from './rule.js';
import { SeededRandom } from './prng.js';

export class ArmedRule {
  /** Occurrences that matched the rule's fields inside its window. */
  matched = 0;
  /** Occurrences it fired on (the faults it injected). */
  injected = 0;
  private readonly random: SeededRandom | null;
  private readonly times: number;

  /** `addedAt`: the monotonic time (ms) the window counts from. */
  constructor(readonly rule: FaultRule, readonly addedAt: number) {
    this.random = rule.probability !== undefined && rule.probability < 1 ? new SeededRandom(rule.seed, rule.id) : null;
    this.times = rule.times ?? (rule.nth !== undefined ? 1 : Infinity);
  }

  /** One occurrence matched the rule's fields at `now`: true if the fault is injected (and counted). */
  fire(now: number): boolean {
    const { window: w, nth, probability } = this.rule;
    if (w !== undefined) {
      const t = now - this.addedAt;
      if (t < w.fromMs || (w.untilMs !== undefined && t >= w.untilMs)) return false;
    }
    this.matched++;
    if (nth !== undefined && this.matched < nth) return false;
    if (this.injected >= this.times) return false;
    if (this.random !== null && this.random.nextFloat() >= probability!) return false;
    this.injected++;
    return true;
  }
}
