// Where the memory of one map comes from: shared by the context (which turns
// it into a backing), type1 and the dispatcher (which fill it from requests).
import type { Backing } from './backing.js';
import type { DmaMessenger } from './backing-message.js';

/** Where the memory of a map comes from (the first one given wins). */
export interface MemorySource {
  backing?: Backing;
  /** Offset in `backing` or in the fd / file. */
  offset?: number;
  /** An fd we take ownership of (kept or closed by guestFiles, also on failure). */
  fd?: number;
  messenger?: DmaMessenger;
  /** Client address of byte 0 for a messenger (default: the IOVA). */
  messageBase?: bigint;
  file?: string;
  anonymous?: boolean;
}
