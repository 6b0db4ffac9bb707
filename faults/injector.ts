// The fault injector of a server: the rules in force, one DeviceFaults per
// device (what the session, the DMA door and the device ask), the counters,
// and the listeners that receive every injected fault (the log is one).
import { Errno, VfioUserError } from '../protocol/errno.js';
import type { Logger } from '../devices/device.js';
import { ArmedRule } from './armed-rule.js';
import { DeviceFaults } from './device-faults.js';
import type { FaultEvent, FaultListener } from './events.js';
import { MAX_RULES, parseRule, ruleToJson, type FaultRule } from './rule.js';

/** One rule as fault.list shows it: the rule and its counters. */
export interface RuleStatus {
  rule: Record<string, unknown>;
  /** Occurrences that matched its fields inside its window. */
  matched: number;
  /** Faults it injected. */
  injected: number;
}

/** What fault.list returns. */
export interface FaultList {
  rules: RuleStatus[];
  /** Faults injected per device and action, over all rules (cleared ones included). */
  injected: Record<string, Record<string, number>>;
}

export interface FaultInjectorOptions {
  log: Logger;
  /** Monotonic milliseconds for time windows (default performance.now). */
  now?: () => number;
}

export class FaultInjector {
  private rules: ArmedRule[] = [];
  private readonly devices = new Map<string, DeviceFaults>();
  private readonly listeners = new Set<FaultListener>();
  private readonly totals: Record<string, Record<string, number>> = {};
  private nextId = 1;
  private readonly log: Logger;
  readonly now: () => number;

  /** `devices`: the names a rule may name. */
  constructor(devices: readonly string[], opts: FaultInjectorOptions) {
    this.log = opts.log;
    this.now = opts.now ?? (() => performance.now());
    const sink = { now: () => this.now(), report: (e: FaultEvent) => this.report(e) };
    for (const d of devices) this.devices.set(d, new DeviceFaults(d, sink));
  }

  /** The fault point of one device (undefined for an unknown name). */
  device(name: string): DeviceFaults | undefined {
    return this.devices.get(name);
  }

  /** Calls `listener` with every injected fault; returns the function that stops it. */
  onFault(listener: FaultListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Checks a rule (EINVAL naming the field when it is bad) and puts it in force. */
  add(raw: unknown, where = 'rule'): FaultRule {
    if (this.rules.length >= MAX_RULES) throw new VfioUserError(Errno.ENOSPC, `${MAX_RULES} rules are in force already`);
    const rule = parseRule(raw, where, `f${this.nextId}`);
    if (this.rules.some((r) => r.rule.id === rule.id)) throw new VfioUserError(Errno.EEXIST, `rule '${rule.id}' exists already`);
    if (rule.device !== undefined && !this.devices.has(rule.device)) {
      throw new VfioUserError(Errno.ENODEV, `rule '${rule.id}': no device '${rule.device}' (${[...this.devices.keys()].join(', ')})`);
    }
    this.nextId++;
    this.rules.push(new ArmedRule(rule, this.now()));
    this.rebuild();
    this.log.info(`fault rule '${rule.id}' added: ${JSON.stringify(ruleToJson(rule))}`);
    return rule;
  }

  /** The rules (of one device, or all) with their counters, and the totals. */
  list(device?: string): FaultList {
    const rules = this.rules
      .filter((r) => device === undefined || r.rule.device === undefined || r.rule.device === device)
      .map((r) => ({ rule: ruleToJson(r.rule), matched: r.matched, injected: r.injected }));
    return { rules, injected: structuredClone(this.totals) };
  }

  /** Removes rule `id` (all rules when absent) and releases the replies they hold; returns how many were removed. */
  clear(id?: string): number {
    const gone = this.rules.filter((r) => id === undefined || r.rule.id === id);
    if (id !== undefined && gone.length === 0) throw new VfioUserError(Errno.ENOENT, `no rule '${id}'`);
    this.rules = this.rules.filter((r) => !gone.includes(r));
    this.rebuild();
    for (const r of gone) this.release(r.rule.id);
    return gone.length;
  }

  /** Releases the replies held by rule `id` (all when absent); returns how many. */
  release(id?: string): number {
    let n = 0;
    for (const d of this.devices.values()) n += d.release(id);
    return n;
  }

  /** Releases every hold (server shutdown). */
  close(): void {
    this.release();
  }

  private rebuild(): void {
    for (const d of this.devices.values()) {
      const mine = this.rules.filter((r) => r.rule.device === undefined || r.rule.device === d.device);
      d.message = mine.filter((r) => r.rule.point === 'message');
      d.dma = mine.filter((r) => r.rule.point === 'dma');
      d.block = mine.filter((r) => r.rule.point === 'block');
      d.irq = mine.filter((r) => r.rule.point === 'irq');
      d.rulesChanged?.();
    }
  }

  private report(e: FaultEvent): void {
    const perDevice = (this.totals[e.device] ??= {});
    perDevice[e.action] = (perDevice[e.action] ?? 0) + 1;
    const { type: _t, rule, action, device, ...where } = e;
    this.log.info(`fault injected: rule '${rule}' ${action} on ${device} ${JSON.stringify(where)}`);
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        this.log.error(`fault listener failed: ${String(err)}`);
      }
    }
  }
}
