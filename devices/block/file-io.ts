// File I/O for block devices (virtio-blk, nvme): positioned scatter/gather straight between the
// image and the guest's buffers (native preadvSpans/pwritevSpans: one iovec
// built once, a page-cache hit copied inline without waiting for the disk,
// the rest on the libuv thread pool; writes, where the caller accepts it,
// inline and blocking while they stay quick), fdatasync, and the
// fallocate-based DISCARD / WRITE_ZEROES helpers.
import fs from 'node:fs';
import type { SpanList } from '../../iommu/device-dma.js';
import * as native from '../../native/index.js';
import { BlockingWrites } from './blocking-writes.js';

/** Inline page-cache copies (and blocking writes) can be turned off (VFIO_USER_TS_BLK_INLINE_IO=0) to compare. */
export const INLINE = process.env.VFIO_USER_TS_BLK_INLINE_IO !== '0';

/** When writes may block the event loop (see blocking-writes.ts); one per process. */
export const blockingWrites = new BlockingWrites(INLINE);

export function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

function pwrite(fd: number, buf: Uint8Array, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, buf, 0, buf.length, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

/**
 * Fill the span list (`bytes` in all) from the file at `pos`; bytes past the
 * end of file read as zeros. Returns nothing when it completed inline, else
 * a promise.
 */
export function readFull(fd: number, list: SpanList, pos: number, bytes: number): void | Promise<void> {
  const r = native.preadvSpans(fd, list, pos, INLINE);
  if (typeof r === 'number') return r < bytes ? zeroTail(list, r) : undefined;
  // The caller may reuse its list once this returns: keep what zeroTail needs.
  const kept: SpanList = { buffers: [...list.buffers], spans: list.spans.slice(0, 3 * list.count), count: list.count };
  return r.then((n) => (n < bytes ? zeroTail(kept, n) : undefined));
}

/** Zero what is past the first `n` bytes of the list (the file ended there). */
function zeroTail({ buffers, spans, count }: SpanList, n: number): void {
  for (let i = 0; i < count; i++) {
    const len = spans[3 * i + 2]!;
    if (n >= len) n -= len;
    else {
      new Uint8Array(buffers[spans[3 * i]!]!, spans[3 * i + 1]!, len).fill(0, n);
      n = 0;
    }
  }
}

/**
 * Write all of the span list to the file at `pos`: nothing when done inline,
 * else a promise. A caller that gives `bytes` (the list's total) lets
 * blockingWrites make it on this thread, blocking, while writes stay quick.
 */
export function writeFull(fd: number, list: SpanList, pos: number, bytes?: number): void | Promise<void> {
  const block = bytes !== undefined && blockingWrites.allow(bytes);
  const start = block ? blockingWrites.clock() : 0;
  const r = native.pwritevSpans(fd, list, pos, INLINE, block);
  if (block) blockingWrites.done(start);
  if (typeof r !== 'number') return r.then(() => undefined);
}

const ZERO_CHUNK = 1 << 20;
let zeros: Buffer | undefined;

/** Write `len` zero bytes at `pos`. */
export async function writeZeros(fd: number, pos: number, len: number): Promise<void> {
  zeros ??= Buffer.alloc(ZERO_CHUNK);
  while (len > 0) {
    const n = Math.min(len, ZERO_CHUNK);
    const w = await pwrite(fd, zeros.subarray(0, n), pos);
    if (w <= 0) throw new Error(`pwrite wrote ${w} bytes at ${pos}`);
    pos += w;
    len -= w;
  }
}

/**
 * fallocate(mode) over [pos, pos+len) on the thread pool. False when the file
 * system cannot do it (EOPNOTSUPP): the caller falls back or treats it as a
 * hint; other errors throw.
 */
async function tryFallocate(fd: number, mode: number, pos: number, len: number): Promise<boolean> {
  try {
    await native.fallocate(fd, mode | native.FALLOC_FL_KEEP_SIZE, pos, len);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EOPNOTSUPP') return false;
    throw e;
  }
}

/** Give [pos, pos+len) back to the file system; it then reads as zeros. False where that is not possible. */
export function punchHole(fd: number, pos: number, len: number): Promise<boolean> {
  return tryFallocate(fd, native.FALLOC_FL_PUNCH_HOLE, pos, len);
}

/**
 * Make [pos, pos+len) read as zeros: a hole when `unmap` allows it, else
 * zeroed blocks (FALLOC_FL_ZERO_RANGE), else written zeros.
 */
export async function zeroRange(fd: number, pos: number, len: number, unmap: boolean): Promise<void> {
  if (unmap && (await punchHole(fd, pos, len))) return;
  if (await tryFallocate(fd, native.FALLOC_FL_ZERO_RANGE, pos, len)) return;
  await writeZeros(fd, pos, len);
}
