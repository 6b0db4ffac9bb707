// What a command handler sees of its session, and what it returns: shared by
// handlers.ts, feature.ts and the session, so none of them imports another.
import type { NegotiatedLimits } from '../protocol/limits.js';
import type { PollGate, VfioUserDevice } from '../devices/device.js';
import type { DmaMessenger } from '../iommu/backing-message.js';
import type { DmaSpace } from './dma-space.js';
import type { Log } from './log.js';
import type { DeviceFaults } from '../faults/device-faults.js';

/** A handler's reply payload and the fds that go with it (nothing: an empty reply). */
export type Reply = { payload?: Buffer | readonly Buffer[]; fds?: readonly number[] } | undefined | void;

/** What handlers may see of the session. */
export interface HandlerContext {
  readonly limits: NegotiatedLimits;
  readonly negotiated: boolean;
  readonly device: VfioUserDevice;
  readonly space: DmaSpace;
  readonly messenger: DmaMessenger;
  readonly log: Log;
  /** The device's fault rules, when the server injects faults. */
  readonly faults: DeviceFaults | null;
  /** The polling budget the device may use (undefined while recording: a replay must see the same ring accesses). */
  readonly poll: PollGate | undefined;
  setLimits(limits: NegotiatedLimits): void;
}
