// The control socket's `device.stats` operation: a device's own counters
// (e.g. an NVMe controller's commands and doorbell writes), for tests and
// operators. A device offers them through the optional `stats()` of
// VfioUserDevice; the IOMMU dispatcher knows nothing of them.
import { fail } from '../protocol/errno.js';
import type { VfioUserDevice } from '../devices/device.js';

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
 * when it keeps no counters, EIO when what it returns is not a flat map of at
 * most MAX_COUNTERS finite numbers.
 */
export function deviceStats(name: string, device: VfioUserDevice | undefined): DeviceStatsResult {
  if (!device) throw fail('ENODEV', `no device '${name}'`);
  if (typeof device.stats !== 'function') throw fail('EOPNOTSUPP', `device '${name}' keeps no counters`);
  const raw: unknown = device.stats();
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw fail('EIO', `device '${name}': stats() is not a map`);
  const entries = Object.entries(raw);
  if (entries.length > MAX_COUNTERS) throw fail('EIO', `device '${name}': ${entries.length} counters, above ${MAX_COUNTERS}`);
  const stats: Record<string, number> = {};
  for (const [k, v] of entries) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw fail('EIO', `device '${name}': counter '${k}' is not a finite number`);
    stats[k] = v;
  }
  return { device: name, stats };
}
