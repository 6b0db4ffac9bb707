// The control socket's fault operations, plain objects in and out:
//   fault.add     {rule}         → {rule}: the rule as checked (with its id)
//   fault.list    {device?}      → {rules: [{rule, matched, injected}], injected: {device: {action: n}}}
//   fault.clear   {id?}          → {removed}: one rule, or every rule without id
//   fault.release {id?}          → {released}: replies held by one rule, or all
// A bad rule or argument is EINVAL (ENOENT for an unknown id, ENODEV for an
// unknown device, EEXIST for an id in use) with a message naming the field.
import { Errno, VfioUserError } from '../protocol/errno.js';
import type { FaultInjector } from './injector.js';
import { ruleToJson } from './rule.js';

/** The operation names this module answers. */
export const FAULT_OPS = ['fault.add', 'fault.list', 'fault.clear', 'fault.release'] as const;

/** True for an op this module answers. */
export function isFaultOp(op: string): boolean {
  return (FAULT_OPS as readonly string[]).includes(op);
}

function onlyArgs(args: Record<string, unknown>, op: string, keys: string[]): void {
  for (const k of Object.keys(args)) {
    if (!keys.includes(k)) throw new VfioUserError(Errno.EINVAL, `${op}: unknown argument '${k}' (takes: ${keys.join(', ') || 'none'})`);
  }
}

function optionalString(v: unknown, what: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw new VfioUserError(Errno.EINVAL, `${what} must be a non-empty string`);
  return v;
}

/** Runs one fault operation against `injector`. */
export function dispatchFaultOp(injector: FaultInjector, op: string, args: Record<string, unknown>): Record<string, unknown> {
  switch (op) {
    case 'fault.add': {
      onlyArgs(args, op, ['rule']);
      if (args.rule === undefined) throw new VfioUserError(Errno.EINVAL, "fault.add needs 'rule'");
      return { rule: ruleToJson(injector.add(args.rule, 'fault.add: rule')) };
    }
    case 'fault.list': {
      onlyArgs(args, op, ['device']);
      const device = optionalString(args.device, "fault.list: 'device'");
      if (device !== undefined && injector.device(device) === undefined) throw new VfioUserError(Errno.ENODEV, `no device '${device}'`);
      return { ...injector.list(device) };
    }
    case 'fault.clear':
      onlyArgs(args, op, ['id']);
      return { removed: injector.clear(optionalString(args.id, "fault.clear: 'id'")) };
    case 'fault.release':
      onlyArgs(args, op, ['id']);
      return { released: injector.release(optionalString(args.id, "fault.release: 'id'")) };
    default:
      throw new VfioUserError(Errno.EOPNOTSUPP, `unknown fault operation '${op}' (${FAULT_OPS.join(', ')})`);
  }
}
