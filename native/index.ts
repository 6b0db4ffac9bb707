// Typed wrapper for the Node-API addon (native/vfio_native.c, built by
// `node native/build.mjs` into build/Release/vfio_native.node).
//
// Conventions: I/O calls (accept, recvmsg, sendmsg, eventfdRead/Write, close)
// return -errno instead of throwing, so hot paths never allocate errors.
// Setup calls throw an Error with .code ('EADDRINUSE'), .errno (positive, e.g.
// 98), .syscall and sometimes .path. Bad JS arguments throw TypeError/RangeError.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROT_READ, PROT_WRITE } from './prot.js';

/**
 * The per-message calls of one socket with its buffers registered once (see
 * channel()). Offsets and lengths are int32s; [offset, offset+length) must be
 * a non-empty range inside the registered buffer (RangeError otherwise).
 */
export interface Channel {
  /** recvmsg into the receive buffer: bytes, 0 at EOF, or -errno; meta as for recvmsg(). */
  recv(offset: number, length: number): number;
  /** sendmsg from the send buffer without fds: bytes sent or -errno. */
  send(offset: number, length: number): number;
  /** Registers new buffers (Uint8Arrays, held until replaced); null keeps the current one. */
  setBuffers(recvBuf: Uint8Array | null, sendBuf: Uint8Array | null): void;
  /** Releases the buffers; recv/send then return -EBADF. The fd stays open. */
  close(): void;
}

/**
 * A watcher's callback: `status` < 0 is a -errno from libuv; `events` holds
 * READABLE/WRITABLE and, with watchPoll, how the last poll window went
 * (POLL_HIT, POLL_MISS, POLL_CONTENDED), and with watchReads whether the
 * readiness was a request already answered (POLL_READ_SERVED, POLL_READ_UNSENT);
 * `ns` is the ns spun for a POLL_HIT,
 * else the ns since the previous callback (and its window) ended (-1: first).
 */
export type WatchCallback = (status: number, events: number, ns: number) => void;

/** An open uv_poll_t on `fd`. */
export interface Watcher {
  readonly fd: number;
}

/** A range of a region that watchReads answers from: `bytes` are what [offset, offset + length) reads as. */
export interface ReadRange {
  region: number;
  offset: number;
  bytes: Uint8Array;
}

interface Addon {
  listenUnix(path: string, backlog: number): number;
  connectUnix(path: string): number;
  accept(lfd: number): number;
  socketpair(): [number, number];
  recvmsg(fd: number, buf: Uint8Array, offset: number, length: number, meta: Int32Array): number;
  sendmsg(fd: number, buf: Uint8Array, offset: number, length: number, fds?: ArrayLike<number> | null): number;
  channel(fd: number, meta: Int32Array): Channel;
  watch(fd: number, events: number, cb: WatchCallback): Watcher;
  watchSet(w: Watcher, events: number): void;
  watchClose(w: Watcher): void;
  watchPoll(w: Watcher, ns: number): void;
  watchReads(w: Watcher, shared: Int32Array, out: Uint8Array, ranges: readonly ReadRange[]): void;
  yieldCpu(ns: number): boolean;
  virtioBlkServe(window: Uint8Array, state: Float64Array): number;
  mmap(fd: number, offset: number, length: number, prot: number): ArrayBuffer;
  munmap(ab: ArrayBuffer): void;
  fileSize(fd: number): number;
  fileStat(fd: number): FileStat;
  fallocate(fd: number, mode: number, offset: number, length: number): Promise<void>;
  preadvFull(fd: number, buffers: ArrayBuffer[], spans: Float64Array, count: number, position: number, tryInline: boolean): number | Promise<number>;
  pwritevFull(fd: number, buffers: ArrayBuffer[], spans: Float64Array, count: number, position: number, tryInline: boolean, block?: boolean): number | Promise<number>;
  getSeals(fd: number): number;
  addSeals(fd: number, seals: number): void;
  ftruncate(fd: number, size: number): void;
  memfdCreate(name: string, size: number): number;
  eventfd(initval: number): number;
  eventfdWrite(fd: number, value: number): number;
  eventfdRead(fd: number): number;
  close(fd: number): number;
  fdCount(): number;
  errnoName(errno: number): string;
  [constant: string]: unknown;
}

const ADDON = path.join('build', 'Release', 'vfio_native.node');

// Walk up from this file (dist/native/ when compiled, native/ under a loader
// that runs TS directly) to the project root that holds the built addon.
function addonPath(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, ADDON);
    if (existsSync(candidate)) return candidate;
    const up = path.dirname(dir);
    if (up === dir) {
      throw new Error(
        `vfio_native: ${ADDON} not found above ${fileURLToPath(import.meta.url)}; run \`npm run build\``,
      );
    }
    dir = up;
  }
}

const addon = createRequire(import.meta.url)(addonPath()) as Addon;

function constant(name: string): number {
  const v = addon[name];
  if (typeof v !== 'number') throw new Error(`vfio_native: addon lacks constant ${name}`);
  return v;
}

// errno values this module returns (negated) or throws (as .code/.errno).
export const EAGAIN = constant('EAGAIN');
export const EWOULDBLOCK = constant('EWOULDBLOCK');
export const EINTR = constant('EINTR');
export const EBADF = constant('EBADF');
export const EINVAL = constant('EINVAL');
export const EPIPE = constant('EPIPE');
export const ECONNRESET = constant('ECONNRESET');
export const ENOTCONN = constant('ENOTCONN');
export const ECONNREFUSED = constant('ECONNREFUSED');
export const EADDRINUSE = constant('EADDRINUSE');
export const ENOENT = constant('ENOENT');
export const EEXIST = constant('EEXIST');
export const EACCES = constant('EACCES');
export const EPERM = constant('EPERM');
export const EMFILE = constant('EMFILE');
export const ENFILE = constant('ENFILE');
export const ENOMEM = constant('ENOMEM');
export const ENOBUFS = constant('ENOBUFS');
export const EMSGSIZE = constant('EMSGSIZE');
export const ENAMETOOLONG = constant('ENAMETOOLONG');
export const ENOTSOCK = constant('ENOTSOCK');
export const EOVERFLOW = constant('EOVERFLOW');
export const EFAULT = constant('EFAULT');

/** recvmsg meta[1] bit: fds were dropped (the kernel's or ours). Treat as fatal. */
export const MSG_CTRUNC = constant('MSG_CTRUNC');
/** The kernel's limit on fds in one message (SCM_MAX_FD). */
export const MAX_FDS = constant('MAX_FDS');

export const F_SEAL_SEAL = constant('F_SEAL_SEAL');
export const F_SEAL_SHRINK = constant('F_SEAL_SHRINK');
export const F_SEAL_GROW = constant('F_SEAL_GROW');
export const F_SEAL_WRITE = constant('F_SEAL_WRITE');
export const F_SEAL_FUTURE_WRITE = constant('F_SEAL_FUTURE_WRITE');

export const READABLE = 1;
export const WRITABLE = 2;
/** Watcher callback events bit: the readiness was caught by the poll window (ns: spun). */
export const POLL_HIT = constant('POLL_HIT');
/** The last poll window ran out before the fd became readable. */
export const POLL_MISS = constant('POLL_MISS');
/** The last poll window stopped because another thread wanted this CPU. */
export const POLL_CONTENDED = constant('POLL_CONTENDED');
/** The readiness was a REGION_READ that watchReads answered (nothing of it is left to read). */
export const POLL_READ_SERVED = constant('POLL_READ_SERVED');
/** With POLL_READ_SERVED: the reply in `out` went out only up to shared[READS_SENT_BYTES]; the rest is the caller's to send. */
export const POLL_READ_UNSENT = constant('POLL_READ_UNSENT');
/** The longest poll window watchPoll takes, in ns. */
export const POLL_MAX_NS = constant('SPIN_MAX_NS');
export { PROT_READ, PROT_WRITE };
for (const [name, v] of [['READABLE', READABLE], ['WRITABLE', WRITABLE], ['PROT_READ', PROT_READ], ['PROT_WRITE', PROT_WRITE]] as const) {
  if (constant(name) !== v) throw new Error(`vfio_native: ${name} is ${constant(name)}, expected ${v}`);
}

/** Non-blocking, close-on-exec listening SOCK_STREAM socket bound to `path` (not unlinked first). Throws. */
export const listenUnix: (path: string, backlog: number) => number = addon.listenUnix;

/**
 * Connected, non-blocking, close-on-exec socket. The connect itself blocks
 * (UNIX connects are immediate unless the backlog is full; that case fails
 * with EAGAIN after 10 s instead of hanging). Throws.
 */
export const connectUnix: (path: string) => number = addon.connectUnix;

/** A new non-blocking close-on-exec fd, or -errno (-EAGAIN when none is pending). */
export const accept: (lfd: number) => number = addon.accept;

/** A connected AF_UNIX SOCK_STREAM pair, non-blocking, close-on-exec. Throws. */
export const socketpair: () => [number, number] = addon.socketpair;

/**
 * Reads into buf[offset, offset+length) (length >= 1). Returns bytes > 0,
 * 0 on EOF, or -errno (-EAGAIN when nothing is ready); never blocks.
 * meta[0] = number of fds received (in meta[2..]), meta[1] = msg_flags.
 * Room is made for meta.length - 2 fds (at most MAX_FDS); fds beyond that are
 * closed and MSG_CTRUNC is set. The received fds are close-on-exec and are
 * the caller's to close, also when MSG_CTRUNC is set.
 */
export const recvmsg: (fd: number, buf: Uint8Array, offset: number, length: number, meta: Int32Array) => number =
  addon.recvmsg;

/**
 * Sends buf[offset, offset+length) with MSG_NOSIGNAL|MSG_DONTWAIT; returns
 * bytes sent (possibly fewer) or -errno. `fds` (an array or Int32Array, at
 * most MAX_FDS) go as one SCM_RIGHTS message with the first byte, so they are
 * sent only if the result is > 0; they stay open here (the peer gets dups).
 * With fds, length must be >= 1.
 */
export const sendmsg: (
  fd: number,
  buf: Uint8Array,
  offset: number,
  length: number,
  fds?: ArrayLike<number> | null,
) => number = addon.sendmsg;

/**
 * A Channel on connected socket `fd` whose recv() reports fds and flags in
 * `meta` (as recvmsg does; held for the channel's life). The same checks as
 * recvmsg/sendmsg, done once: the per-call cost is little more than the
 * syscall. Call setBuffers() before recv/send (until then they return -EBADF).
 */
export const channel: (fd: number, meta: Int32Array) => Channel = addon.channel;

/**
 * Polls `fd` with libuv (uv_poll_t) for READABLE|WRITABLE (0 = created but
 * stopped). cb(status, events, ns) (see WatchCallback): status < 0 is a -errno from libuv; libuv
 * reports any POLLERR (a socket error pending, such as ECONNRESET: read it
 * with recv) as -EBADF and stops the watcher (watchSet restarts it). An open
 * watcher keeps itself, its callback and the event loop alive until
 * watchClose. One watcher per fd: a second watch() on it throws EEXIST.
 * Exceptions from cb go to process 'uncaughtException'.
 */
export const watch: (fd: number, events: number, cb: WatchCallback) => Watcher = addon.watch;

/** Changes the event mask; 0 stops polling but keeps the handle. Throws EBADF after watchClose. */
export const watchSet: (w: Watcher, events: number) => void = addon.watchSet;

/**
 * After each callback (once its microtasks ran) look at the fd for up to
 * `ns` (0..POLL_MAX_NS; 0 = never) before going back to epoll, so a request
 * arriving meanwhile needs no wake-up. The window ends early when anything
 * else of the event loop is ready, and when another thread wants the CPU
 * (it yields every round). Throws EBADF after watchClose.
 */
export const watchPoll: (w: Watcher, ns: number) => void = addon.watchPoll;

/** watchReads' shared Int32Array: the element JS sets (largest count answered natively; < 0: closed). */
export const READS_GATE = constant('READS_GATE');
/** The element the watcher sets with POLL_READ_UNSENT: bytes of the reply that went out. */
export const READS_SENT_BYTES = constant('READS_SENT_BYTES');
/** watchReads' shared array has this many elements. */
export const READS_SHARED_FIELDS = constant('READS_SHARED_FIELDS');
/** watchReads takes at most this many ranges. */
export const READS_MAX_RANGES = constant('READS_MAX_RANGES');

/**
 * Before each readable callback, the watcher answers a REGION_READ itself
 * (native/region_reads.c) when it is the only request queued, carries no
 * fds, has flags 0 and lies wholly inside one of `ranges` with a count of at
 * most shared[READS_GATE] (< 0: never) and out.length - 32; the callback then
 * gets POLL_READ_SERVED. The reply is built in `out`. The arrays are held
 * until watchClose or the next watchReads; `ranges`' bytes are read live, so
 * they must stay attached. Throws EBADF after watchClose.
 */
export const watchReads: (w: Watcher, shared: Int32Array, out: Uint8Array, ranges: readonly ReadRange[]) => void =
  addon.watchReads;

/**
 * sched_yield: a thread waiting for this CPU runs now (for a poller in JS,
 * every round). True when this thread then waited more than `ns`
 * (0..POLL_MAX_NS) for the CPU: the poller should stop and leave it.
 */
export const yieldCpu: (ns: number) => boolean = addon.yieldCpu;

/**
 * The fields of virtioBlkServe's state array (native/virtio_blk_ring.h):
 * "in" fields are set by the caller, "out" fields by the call.
 */
export const BlkRing = {
  /** in: IOVA of the window's first byte. */
  WINDOW_IOVA: 0,
  /** in: IOVAs of the descriptor table, the available ring and the used ring. */
  DESC: 1,
  AVAIL: 2,
  USED: 3,
  /** in: queue size (1..1024). */
  SIZE: 4,
  /** in: 1 if VIRTIO_F_INDIRECT_DESC was negotiated. */
  INDIRECT: 5,
  /** in: the image's fd. */
  FD: 6,
  /** in: the image's size in sectors. */
  CAPACITY: 7,
  /** in: the largest OUT request (bytes) to write, blocking; 0: leave writes alone. */
  MAX_WRITE: 8,
  /** in/out: the next available entry, and used->idx. */
  LAST_AVAIL: 9,
  USED_IDX: 10,
  /** out: IN and OUT requests served, their bytes, and the longest write in ns. */
  READS: 11,
  WRITES: 12,
  BYTES_READ: 13,
  BYTES_WRITTEN: 14,
  WRITE_NS: 15,
  /** The length of the array. */
  FIELDS: 16,
} as const;

/**
 * Serves virtio-blk requests straight off a split ring in `window` (guest
 * memory mapped here, its first byte at state[WINDOW_IOVA]): in order, while
 * each is a plain IN (a page-cache hit) or OUT (at most MAX_WRITE bytes)
 * wholly inside the window, stopping untouched before the first that is not.
 * Stores the status bytes, the used elements and used->idx; returns the
 * chains served. Throws RangeError for an "in" field out of its range.
 */
export const virtioBlkServe: (window: Uint8Array, state: Float64Array) => number = addon.virtioBlkServe;

/** Stops and frees the poll handle (idempotent). The fd stays open: close it after this, never before. */
export const watchClose: (w: Watcher) => void = addon.watchClose;

/**
 * Maps [offset, offset+length) of fd (any offset; length >= 1, at most
 * buffer.constants.MAX_LENGTH) as an external ArrayBuffer. prot with
 * PROT_WRITE: MAP_SHARED read/write. prot = PROT_READ: a private
 * copy-on-write mapping (it sees the file, but JS writes stay private instead
 * of crashing the process on a read-only page). Throws with .code on failure.
 * Touching pages beyond the file's end raises SIGBUS: check fileSize/getSeals first.
 */
export const mmap: (fd: number, offset: number, length: number, prot: number) => ArrayBuffer = addon.mmap;

/**
 * Detaches `ab` (its views then have length 0) and unmaps it. Idempotent;
 * TypeError if ab did not come from mmap(). Unreferenced mappings are also
 * unmapped by GC, but call this for deterministic release.
 */
export const munmap: (ab: ArrayBuffer) => void = addon.munmap;

/** fstat st_size. Throws. */
export const fileSize: (fd: number) => number = addon.fileSize;

/** What fileStat tells of an fd. */
export interface FileStat {
  /** st_dev and st_ino: (dev, ino) names the file, whichever fd reaches it. */
  dev: bigint;
  ino: bigint;
  /** st_size in bytes. */
  size: number;
  /** The fd's access mode (O_RDONLY / O_WRONLY / O_RDWR) allows reads / writes. */
  readable: boolean;
  writable: boolean;
}

/** fstat + fcntl(F_GETFL) in one call. Throws (e.g. EBADF). */
export const fileStat: (fd: number) => FileStat = addon.fileStat;
/** fallocate(2) modes (combine PUNCH_HOLE with KEEP_SIZE, as Linux requires). */
export const FALLOC_FL_KEEP_SIZE = constant('FALLOC_FL_KEEP_SIZE');
export const FALLOC_FL_PUNCH_HOLE = constant('FALLOC_FL_PUNCH_HOLE');
export const FALLOC_FL_ZERO_RANGE = constant('FALLOC_FL_ZERO_RANGE');
export const EOPNOTSUPP = constant('EOPNOTSUPP');

/**
 * fallocate(fd, mode, offset, length) on the libuv thread pool (a large
 * punch or zero range must not stall the event loop). Rejects with an Error
 * carrying .code/.errno (EOPNOTSUPP where the file system cannot do `mode`);
 * bad arguments throw at once.
 */
export const fallocate: (fd: number, mode: number, offset: number, length: number) => Promise<void> = addon.fallocate;

/**
 * Positioned scatter read into `views` (at most 65536) until they are full
 * or the file ends: the bytes read. With `tryInline`, one preadv2(RWF_NOWAIT) first copies what the page
 * cache holds on this thread (it never waits for the disk); when that
 * finishes the request the result is a number, otherwise the rest runs on
 * the libuv thread pool and the result is a promise. I/O errors reject
 * (.code/.errno); bad arguments throw. The views' memory must stay valid
 * until the promise settles (the call keeps the ArrayBuffers alive).
 */
export function preadvFull(fd: number, views: readonly ArrayBufferView[], position: number, tryInline: boolean): number | Promise<number> {
  const buffers = packSpans(views);
  return addon.preadvFull(fd, buffers, spans, views.length, position, tryInline);
}

/** The same for a gathered write of every byte of `views` (a write that makes no progress rejects with EIO). */
export function pwritevFull(fd: number, views: readonly ArrayBufferView[], position: number, tryInline: boolean): number | Promise<number> {
  const buffers = packSpans(views);
  return addon.pwritevFull(fd, buffers, spans, views.length, position, tryInline);
}

/**
 * A scatter list as byte ranges of ArrayBuffers: range i is
 * buffers[spans[3i]] bytes [spans[3i+1], +spans[3i+2]). DeviceDma.withSpans
 * hands it out instead of one view object per range, so native I/O on
 * hundreds of guest pages reads one Float64Array.
 */
export interface SpanList {
  readonly buffers: ArrayBufferLike[];
  readonly spans: Float64Array;
  readonly count: number;
}

/** preadvFull on a span list as it is (no view objects; the buffers must be ArrayBuffers). */
export function preadvSpans(fd: number, list: SpanList, position: number, tryInline: boolean): number | Promise<number> {
  return addon.preadvFull(fd, list.buffers as ArrayBuffer[], list.spans, list.count, position, tryInline);
}

/**
 * pwritevFull on a span list as it is. With `block` the write is made on
 * this thread even when it has to wait (no RWF_NOWAIT, no thread pool):
 * for callers that decided the page cache takes it quickly.
 */
export function pwritevSpans(fd: number, list: SpanList, position: number, tryInline: boolean, block = false): number | Promise<number> {
  return addon.pwritevFull(fd, list.buffers as ArrayBuffer[], list.spans, list.count, position, tryInline, block);
}

// The views as (buffer index, byte offset, byte length) triples: the addon
// reads one Float64Array instead of fetching every view object. Reused: the
// addon copies it into its iovec before it returns.
let spans = new Float64Array(3 * 256);

function packSpans(views: readonly ArrayBufferView[]): ArrayBuffer[] {
  if (!Array.isArray(views)) throw new TypeError('views must be an array of ArrayBufferViews');
  if (spans.length < 3 * views.length) spans = new Float64Array(3 * views.length);
  const buffers: ArrayBuffer[] = [];
  let last: ArrayBufferLike | null = null;
  let index = -1;
  for (let i = 0; i < views.length; i++) {
    const v = views[i]!;
    if (!ArrayBuffer.isView(v)) throw new TypeError('views must be an array of ArrayBufferViews');
    const b = v.buffer;
    if (b !== last) {
      index = buffers.indexOf(b as ArrayBuffer);
      if (index < 0) index = buffers.push(b as ArrayBuffer) - 1;
      last = b;
    }
    spans[3 * i] = index;
    spans[3 * i + 1] = v.byteOffset;
    spans[3 * i + 2] = v.byteLength;
  }
  return buffers;
}

/** F_GET_SEALS (0 for files that cannot be sealed). Throws (e.g. EBADF). */
export const getSeals: (fd: number) => number = addon.getSeals;
/** F_ADD_SEALS. Throws (e.g. EPERM when F_SEAL_SEAL is set). */
export const addSeals: (fd: number, seals: number) => void = addon.addSeals;
/** Throws. */
export const ftruncate: (fd: number, size: number) => void = addon.ftruncate;
/** memfd_create(MFD_CLOEXEC|MFD_ALLOW_SEALING), ftruncated to size. Throws. */
export const memfdCreate: (name: string, size: number) => number = addon.memfdCreate;

/** eventfd(initval, EFD_CLOEXEC|EFD_NONBLOCK). Throws. */
export const eventfd: (initval: number) => number = addon.eventfd;
/** Adds value (0..2^53-1) to the counter: 0 or -errno (-EAGAIN if it would overflow). */
export const eventfdWrite: (fd: number, value: number) => number = addon.eventfdWrite;
/** Reads and resets the counter: value >= 1, or -errno (-EAGAIN when it is zero). */
export const eventfdRead: (fd: number) => number = addon.eventfdRead;

/** 0 or -errno. Never retried (Linux releases the fd even on EINTR). */
export const close: (fd: number) => number = addon.close;
/** Number of open fds of this process (entries of /proc/self/fd). */
export const fdCount: () => number = addon.fdCount;
/** 'EAGAIN' for 11 or -11: any errno the C library names (protocol/errno.ts errnoName knows only the protocol's). */
export const systemErrnoName: (errno: number) => string = addon.errnoName;
