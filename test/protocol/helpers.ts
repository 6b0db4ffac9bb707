// Shared helpers for the protocol tests (not a test file itself).
import { VfioUserError, errnoName } from '../../protocol/errno.js';
import { DEFAULT_LIMITS, type NegotiatedLimits } from '../../protocol/limits.js';
import { decodeVersionRequest, encodeVersionRequest, negotiateVersion, type VersionCaps } from '../../protocol/version.js';

/** The errno name `fn` throws ("EINVAL"), or a description of what else happened. */
export function errnoOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return e instanceof VfioUserError ? errnoName(e.errno) : `not a VfioUserError: ${String(e)}`;
  }
  return 'no error';
}

/** What QEMU 11.1 offers in its VERSION request. */
export const QEMU_CAPS: VersionCaps = {
  maxMsgFds: 16, maxDataXferSize: 1024 * 1024, pgsizes: 4096, maxDmaMaps: 65535, writeMultiple: true,
  migration: { pgsize: 4096, max_bitmap_size: 256 * 1024 * 1024 },
};

/** The limits a session with QEMU ends up with. */
export const QEMU_LIMITS: NegotiatedLimits = negotiateVersion(
  decodeVersionRequest(encodeVersionRequest(QEMU_CAPS), DEFAULT_LIMITS, 0)).limits;

/** A copy of `buf` with a u32 / u64 replaced at `off`. */
export function with32(buf: Buffer, off: number, v: number): Buffer {
  const b = Buffer.from(buf);
  b.writeUInt32LE(v >>> 0, off);
  return b;
}
export function with64(buf: Buffer, off: number, v: bigint): Buffer {
  const b = Buffer.from(buf);
  b.writeBigUInt64LE(v, off);
  return b;
}

export function concat(parts: Buffer | readonly Buffer[]): Buffer {
  return Buffer.isBuffer(parts) ? parts : Buffer.concat(parts as Buffer[]);
}
