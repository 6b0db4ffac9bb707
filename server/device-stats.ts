// The control socket's `device.stats` operation: a device model's own
// counters (e.g. an NVMe controller's commands and doorbell writes), for
// tests and operators. They are part of the model's host-side API, beside
// its `device`: a `stats()` method, or a `stats` object of numbers (as
// virtio-blk keeps them). The IOMMU dispatcher knows nothing of them.
import { fail } from '../protocol/errno.js';
import type { DeviceModel } from '../devices/definition.js';

/** The operation's name on the control socket. */
export const DEVICE_STATS_OP = 'device.stats';

/** Counters one answer may carry: keeps a device's answer well inside a control frame. */
export const MAX_COUNTERS = 1024;

/** The answer: which device, and its counters by name. */
export interface DeviceStatsResult {
  device: string;
  stats: Record<string, number>;
}

/**
 * `device.stats` for `name`: ENODEV when no such device is served, EOPNOTSUPP
 * when its model keeps no counters, EIO when they are not a flat map of at
 * most MAX_COUNTERS finite numbers.
 */
export function deviceStats(name: string, model: DeviceModel | undefined): DeviceStatsResult {
  if (!model) throw fail('ENODEV', `no device '${name}'`);
  const source = (model as { stats?: unknown }).stats;
  let raw: unknown;
  if (typeof source === 'function') raw = source.call(model);
  else if (typeof source === 'object' && source !== null) raw = source;
  else throw fail('EOPNOTSUPP', `device '${name}' keeps no counters`);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw fail('EIO', `device '${name}': its stats are not a map`);
  const entries = Object.entries(raw);
  if (entries.length > MAX_COUNTERS) throw fail('EIO', `device '${name}': ${entries.length} counters, above ${MAX_COUNTERS}`);
  const stats: Record<string, number> = {};
  for (const [k, v] of entries) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw fail('EIO', `device '${name}': counter '${k}' is not a finite number`);
    stats[k] = v;
  }
  return { device: name, stats };
}
