// The NVMe controller's own error: a command that ends with an NVMe status.
// Thrown inside command handlers and turned into that command's completion,
// never past the controller.
import type { Status } from './constants.js';

/** A command failed with `status` (a CQE Status field); `message` says why, for the debug log. */
export class NvmeError extends Error {
  constructor(
    readonly status: Status,
    message: string,
  ) {
    super(message);
    this.name = 'NvmeError';
  }
}

/** Throws an NvmeError: `if (bad) fail(S.INVALID_FIELD, 'why')`. */
export function fail(status: Status, message: string): never {
  throw new NvmeError(status, message);
}
