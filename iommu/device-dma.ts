// The device-facing door to guest memory. Devices import only this module;
// the IOMMU model implements DeviceDma (translation through the IOAS the
// device, or one of its PASIDs, is attached to). Owned by iommu/.
import { Errno, VfioUserError } from '../protocol/errno.js';
import type { SpanList } from '../native/index.js';

export type Iova = bigint | number;

/** The access a DMA reads with (the mapping needs its READ right). */
export const DMA_ACCESS_READ = 1;
/** The access a DMA writes with (the mapping needs its WRITE right). */
export const DMA_ACCESS_WRITE = 2;

export type DmaFaultReason =
  /** No mapping at (some byte of) the range. */
  | 'unmapped'
  /** The mapping lacks the READ or WRITE right the access needs. */
  | 'permission'
  /** The device (or this PASID of it) is attached to no IOAS. */
  | 'not-attached'
  /** The memory behind the mapping failed (e.g. a DMA_ACCESS_READ message). */
  | 'io'
  /** Malformed request: negative length, IOVA past 2^64, ... */
  | 'invalid'
  /** A synchronous view was asked of memory reached only by messages. */
  | 'indirect'
  /** A fault rule failed the access on purpose (faults/). */
  | 'injected';

/**
 * A DMA the IOMMU refused. errno is EFAULT; the device turns it into its own
 * error status (an NVMe status code, a virtio used length of 0, ...).
 */
export class DmaFault extends VfioUserError {
  readonly iova: bigint;
  readonly length: number;
  readonly pasid: number | undefined;
  readonly reason: DmaFaultReason;
  constructor(reason: DmaFaultReason, iova: Iova, length: number, pasid?: number, detail?: string) {
    const at = typeof iova === 'bigint' ? iova : BigInt(Number.isSafeInteger(iova) ? iova : 0);
    const p = pasid === undefined ? '' : ` pasid ${pasid}`;
    super(Errno.EFAULT, `DMA fault (${reason}) at iova 0x${at.toString(16)}+${length}${p}${detail ? `: ${detail}` : ''}`);
    this.name = 'DmaFault';
    this.iova = at;
    this.length = length;
    this.pasid = pasid;
    this.reason = reason;
  }
}

/** A scatter list as byte ranges of ArrayBuffers (native/index.ts). */
export type { SpanList };

export interface DeviceDma {
  /** Copy `length` bytes at `iova` out of guest memory. Rejects with DmaFault. */
  read(iova: Iova, length: number, pasid?: number): Promise<Buffer>;
  /** Copy `data` into guest memory at `iova`. Rejects with DmaFault. */
  write(iova: Iova, data: Uint8Array, pasid?: number): Promise<void>;
  /**
   * Zero-copy access: fn gets the range as one Uint8Array per mapping it
   * spans (a scatter list). The views are valid only until fn returns (or
   * its promise settles): never keep them. Memory reached by messages is
   * bounced (read before fn for DMA_ACCESS_READ, written back after for DMA_ACCESS_WRITE).
   * Rejects with DmaFault before fn runs if any byte is not accessible.
   */
  withView<T>(
    iova: Iova,
    length: number,
    access: number,
    fn: (segments: Uint8Array[]) => T | Promise<T>,
    pasid?: number,
  ): Promise<T>;
  /**
   * withView over many ranges at once (a descriptor chain's buffers): fn
   * gets the segments of every range, in order, with ranges that are
   * adjacent in the same mapping merged into one segment (fewer iovecs for a
   * preadv). One translation pass and one fault for the whole list: rejects
   * with DmaFault before fn runs if any byte of any range is not accessible.
   */
  withViews<T>(
    iovas: readonly Iova[],
    lengths: readonly number[],
    access: number,
    fn: (segments: Uint8Array[]) => T | Promise<T>,
    pasid?: number,
  ): Promise<T>;
  /**
   * withViews with the segments as a SpanList instead of views: the same
   * translation, merging, holds, bouncing, dirty logging and faults, and
   * the same rule (valid until fn returns or its promise settles).
   */
  withSpans<T>(
    iovas: readonly Iova[],
    lengths: readonly number[],
    access: number,
    fn: (list: SpanList) => T | Promise<T>,
    pasid?: number,
  ): Promise<T>;
  /**
   * The synchronous fast path for small, hot accesses (ring fields, request
   * headers, status bytes): a view of [iova, iova+length) when the range is
   * inside one mapping of memory mapped into this process, with `access`.
   * No promise, no hold: the view is valid only until the current
   * synchronous code ends (an unmap runs on a later turn), so read or write
   * it at once and never keep it across an await. Writing through it counts
   * for dirty tracking. null means "take the general path" (read, write,
   * withView), which also reports any fault: memory reached by messages,
   * read-only memory for a write, a range across mappings, a bad address.
   */
  mappedView(iova: Iova, length: number, access: number, pasid?: number): Uint8Array | null;
  /**
   * mappedView for a scatter list, as spans instead of views: bytes
   * [skip, skip+length) of the ranges (iovas[i], lengths[i]) taken in order,
   * written into `out` (its `spans` replaced by a larger array when full)
   * with pieces adjacent in one buffer merged, when every byte is in memory
   * mapped into this process with `access`. The rules of mappedView hold:
   * valid only until the current synchronous code ends; false (out left
   * unspecified) means take the general path (withSpans), which reports any
   * fault.
   */
  mappedSpans(iovas: readonly Iova[], lengths: readonly number[], skip: number, length: number, access: number, out: SpanBuffer, pasid?: number): boolean;
  /**
   * The whole mapping that holds `iova`, as one view and the IOVA of its
   * first byte, for code that translates many addresses itself (a native
   * ring walk): when that mapping is memory mapped into this process with
   * `access`, and nothing needs to see each access (no dirty tracking, no
   * recording, no DMA fault rule, bus mastering on). The rules of
   * mappedView hold: valid only until the current synchronous code ends;
   * null means take the other doors.
   */
  mappedWindow(iova: Iova, access: number, pasid?: number): MappedWindow | null;
}

/** A mapping as one view: `bytes[i]` is the byte at IOVA `iova + i`. */
export interface MappedWindow {
  iova: number;
  bytes: Uint8Array;
}

/** A span list a caller owns and mappedSpans fills (reused from request to request). */
export interface SpanBuffer {
  buffers: ArrayBufferLike[];
  spans: Float64Array;
  count: number;
}
