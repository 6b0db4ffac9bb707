// Positioned scatter/gather file I/O on an fd (libuv thread pool), straight
// from/to the caller's views: preadv/pwritev until every byte is done (the
// kernel may do less per call, libuv caps one call at IOV_MAX buffers).
import fs from 'node:fs';
import * as native from '../../native/index.js';

function preadv(fd: number, bufs: readonly Uint8Array[], pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.readv(fd, bufs, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

function pwritev(fd: number, bufs: readonly Uint8Array[], pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.writev(fd, bufs, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

export function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

function pwrite(fd: number, buf: Uint8Array, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, buf, 0, buf.length, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

/** The buffers left after skipping `n` bytes of `bufs`. */
function advance(bufs: readonly Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const b of bufs) {
    if (n >= b.length) {
      n -= b.length;
      continue;
    }
    out.push(n > 0 ? b.subarray(n) : b);
    n = 0;
  }
  return out;
}

const total = (bufs: readonly Uint8Array[]): number => bufs.reduce((s, b) => s + b.length, 0);

/** Fill `bufs` from the file at `pos`; bytes past the end of file read as zeros. */
export async function readFull(fd: number, bufs: readonly Uint8Array[], pos: number): Promise<void> {
  let left = total(bufs);
  let cur: readonly Uint8Array[] = bufs;
  while (left > 0) {
    const n = await preadv(fd, cur, pos);
    if (n === 0) {
      for (const b of cur) b.fill(0);
      return;
    }
    left -= n;
    pos += n;
    if (left > 0) cur = advance(cur, n);
  }
}

/** Write all of `bufs` to the file at `pos`. */
export async function writeFull(fd: number, bufs: readonly Uint8Array[], pos: number): Promise<void> {
  let left = total(bufs);
  let cur: readonly Uint8Array[] = bufs;
  while (left > 0) {
    const n = await pwritev(fd, cur, pos);
    if (n <= 0) throw new Error(`pwritev wrote ${n} bytes at ${pos}`);
    left -= n;
    pos += n;
    if (left > 0) cur = advance(cur, n);
  }
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
