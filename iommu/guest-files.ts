// The guest-memory files of one IOMMU context, one entry per file named by
// (st_dev, st_ino). Every DMA_MAP with an fd becomes an area over a backing
// shared by all maps of its file (backing-file.ts), at its file position:
// a guest behind a vIOMMU, which maps its RAM one page at a time (65,535
// DMA_MAPs of one memfd), costs one mapping instead of 65,535 (the kernel's
// vm.max_map_count is 65,530).
//
// - A file sealed against shrinking (F_SEAL_SHRINK) is mapped whole, once.
//   A map beyond that mapping (the file grew) gets a new, larger mapping;
//   the old one lives on while areas still use it. A file larger than the
//   largest ArrayBuffer (buffer.constants.MAX_LENGTH, 4 GiB on Node 20) is
//   mapped in segments of that size starting every half of it, so any map
//   up to half of it lies inside one segment; a larger map that fits in no
//   segment is reached by file I/O.
// - Any other file could shrink under a mapping (SIGBUS on the next touch),
//   so it is never mapped: it is read and written by pread / pwrite on one
//   fd kept per file.
// - The fd of every DMA_MAP is closed at once, except the first one of a
//   file reached by file I/O, which becomes that file's fd (as good as a dup:
//   pread / pwrite do not use the shared file position).
// - A mapping is munmap'd, or the fd closed, when the last area and
//   in-flight access holding it goes (areas hold backings, area.ts); the
//   entry goes with its last backing.
//
// Every mapping and kept fd takes one unit of a process-wide budget
// (mappings and fds are process resources, whichever context holds them);
// a DMA_MAP that needs one more than the budget allows is ENOSPC.
import { constants as bufferConstants } from 'node:buffer';
import { fail } from '../protocol/errno.js';
import type { Backing } from './backing.js';
import { sealedAgainstShrink, type NativeMem } from './backing-mmap.js';
import { FileIoBacking, FileMapping, type FileOwner, type NativeFileIo } from './backing-file.js';
import { PAGE_SIZE } from './u64.js';
import { PROT_READ, PROT_WRITE } from '../native/prot.js';

/** fileStat of the native addon (native/index.ts FileStat). */
export interface GuestFileStat {
  dev: bigint;
  ino: bigint;
  size: number;
  readable: boolean;
  writable: boolean;
}

/** The native calls guest files need. */
export interface GuestFileNative extends NativeMem, NativeFileIo {
  fileStat(fd: number): GuestFileStat;
}

/**
 * Mappings and fds that guest files may hold at once, over every context
 * of the process. The default leaves most of vm.max_map_count (65,530) and
 * of the usual fd limits to V8, libuv and the rest of the server.
 */
export class MappingBudget {
  private used = 0;
  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.used;
  }

  take(what: string): void {
    if (this.used >= this.limit) throw fail('ENOSPC', `guest-memory budget of ${this.limit} mappings and fds used up (${what})`);
    this.used++;
  }

  give(): void {
    this.used--;
  }
}

/** Mappings + fds of guest files per process (see MappingBudget). */
export const DEFAULT_GUEST_FILE_BUDGET = 1024;
const processBudget = new MappingBudget(DEFAULT_GUEST_FILE_BUDGET);

/** Largest single mapping: one ArrayBuffer (a multiple of two pages). */
const MAX_MAPPING = Math.floor(bufferConstants.MAX_LENGTH / (2 * PAGE_SIZE)) * 2 * PAGE_SIZE;

export interface GuestFilesOptions {
  /** Shared limit on mappings + fds (default: one for the whole process). */
  budget?: MappingBudget;
  /** Largest mapping in bytes (tests shrink it to exercise segments). */
  maxMapping?: number;
}

export class GuestFiles {
  private readonly files = new Map<string, GuestFile>();
  readonly budget: MappingBudget;
  readonly maxMapping: number;

  constructor(
    private readonly native: GuestFileNative,
    opts: GuestFilesOptions = {},
  ) {
    this.budget = opts.budget ?? processBudget;
    this.maxMapping = opts.maxMapping ?? MAX_MAPPING;
    // Segments start every half of it: both must be page aligned.
    if (!Number.isSafeInteger(this.maxMapping) || this.maxMapping <= 0 || this.maxMapping % (2 * PAGE_SIZE) !== 0) {
      throw fail('EINVAL', `bad maxMapping ${this.maxMapping}`);
    }
  }

  /** Files with live backings. */
  get size(): number {
    return this.files.size;
  }

  /** The entry of a file by its fileStat, while it has live backings. */
  fileOf(stat: { dev: bigint; ino: bigint }): GuestFile | undefined {
    return this.files.get(keyOf(stat));
  }

  /**
   * The backing of [offset, offset+size) of the file behind `fd`, holding
   * one reference for the caller, and where the range starts in it. Takes
   * ownership of fd (kept as the file's I/O fd or closed, also on failure).
   */
  window(fd: number, offset: number, size: number, writable: boolean): { backing: Backing; offset: number } {
    let kept = false;
    try {
      if (!Number.isSafeInteger(offset) || offset < 0) throw fail('EINVAL', 'bad file offset');
      if (!Number.isSafeInteger(size) || size <= 0) throw fail('EINVAL', 'bad mapping size');
      let st: GuestFileStat;
      try {
        st = this.native.fileStat(fd);
      } catch (e) {
        throw fail('EBADF', `cannot stat fd ${fd}: ${(e as Error).message}`);
      }
      if (offset + size > st.size) {
        throw fail('EINVAL', `mapping [${offset}, ${offset + size}) is past the end of the file (${st.size} bytes)`);
      }
      if (!st.readable) throw fail('EACCES', `fd ${fd} is write-only`);
      if (writable && !st.writable) throw fail('EACCES', `fd ${fd} is read-only`);
      const key = keyOf(st);
      let file = this.files.get(key);
      if (!file) {
        file = new GuestFile(this, key, sealedAgainstShrink(this.native, fd));
        this.files.set(key, file);
      }
      try {
        const r = file.window(fd, st, offset, size, writable);
        kept = r.keptFd;
        return { backing: r.backing, offset: r.offset };
      } finally {
        if (file.empty) this.forget(file);
      }
    } finally {
      if (!kept) this.native.close(fd);
    }
  }

  /** @internal The last backing of `file` went. */
  forget(file: GuestFile): void {
    if (this.files.get(file.key) === file) this.files.delete(file.key);
  }

  /** @internal */
  get nat(): GuestFileNative {
    return this.native;
  }

}

function keyOf(st: { dev: bigint; ino: bigint }): string {
  return `${st.dev}:${st.ino}`;
}

/** One guest file: its live mappings (sealed files) and its I/O backing. */
export class GuestFile implements FileOwner {
  /** The newest whole-file mapping (files up to maxMapping). */
  whole: FileMapping | null = null;
  /** Segment k covers [k * maxMapping / 2, + maxMapping) (larger files). */
  readonly segments = new Map<number, FileMapping>();
  /** pread / pwrite on the file's fd. */
  io: FileIoBacking | null = null;
  /** Live mappings, also those replaced by a larger one but still in use. */
  private live = 0;
  /** A read-write mapping was refused (F_SEAL_WRITE): do not try again per map. */
  private writeRefused = false;

  constructor(
    private readonly owner: GuestFiles,
    readonly key: string,
    /** F_SEAL_SHRINK: the file can never shrink, mapping it is safe. */
    readonly sealed: boolean,
  ) {}

  /** Live mmaps of this file. */
  get mappings(): number {
    return this.live;
  }

  /** No backing of the file is left. */
  get empty(): boolean {
    return this.live === 0 && this.io === null;
  }

  /** A backing was disposed. */
  gone(b: FileMapping | FileIoBacking): void {
    if (b instanceof FileIoBacking) {
      if (this.io === b) this.io = null;
    } else {
      this.live--;
      if (this.whole === b) this.whole = null;
      for (const [k, m] of this.segments) if (m === b) this.segments.delete(k);
    }
    this.owner.budget.give();
    if (this.empty) this.owner.forget(this);
  }

  /** @internal See GuestFiles.window; keptFd when fd became the I/O fd. */
  window(fd: number, st: GuestFileStat, offset: number, size: number, writable: boolean): { backing: Backing; offset: number; keptFd: boolean } {
    if (this.sealed) {
      const m = this.mappingFor(fd, st, offset, size);
      if (m) {
        if (writable && !m.writable) {
          m.release();
          throw fail('EACCES', 'the guest file cannot be mapped for writing');
        }
        return { backing: m, offset: offset - m.fileOffset, keptFd: false };
      }
    }
    if (this.io && (this.io.writable || !st.writable)) {
      this.io.retain();
      return { backing: this.io, offset, keptFd: false };
    }
    // The first fd of the file (or the first that may write) becomes its I/O fd.
    this.owner.budget.take('an fd for file I/O');
    this.io = new FileIoBacking(this.owner.nat, this, fd, st.writable);
    return { backing: this.io, offset, keptFd: true };
  }

  // A mapping (holding one reference for the caller) that covers the
  // range; null: reach it by file I/O.
  private mappingFor(fd: number, st: GuestFileStat, offset: number, size: number): FileMapping | null {
    const max = this.owner.maxMapping;
    const end = offset + size;
    // A read-only mapping is replaced when this fd could map it read-write.
    const fits = (m: FileMapping | null | undefined): m is FileMapping =>
      m != null && m.fileOffset <= offset && end <= m.fileOffset + m.size && (m.writable || !st.writable || this.writeRefused);
    if (st.size <= max) {
      if (fits(this.whole)) {
        this.whole.retain();
        return this.whole;
      }
      this.whole = this.map(fd, 0, st.size, st.writable);
      return this.whole;
    }
    const stride = max / 2;
    const k = Math.floor(offset / stride);
    const from = k * stride;
    const to = Math.min(from + max, st.size);
    if (end > to) return null; // larger than a segment can hold here
    const seg = this.segments.get(k);
    if (fits(seg)) {
      seg.retain();
      return seg;
    }
    const m = this.map(fd, from, to - from, st.writable);
    this.segments.set(k, m);
    return m;
  }

  // Read-write MAP_SHARED when the fd allows it (even for maps the device
  // may only read: no JS view can then fault on a write); else a private
  // read-only copy. A file sealed against writes refuses the former.
  private map(fd: number, offset: number, length: number, writable: boolean): FileMapping {
    const native = this.owner.nat;
    this.owner.budget.take('a mapping of a guest file');
    let ab: ArrayBuffer | null = null;
    let rw = false;
    try {
      if (writable && !this.writeRefused) {
        try {
          ab = native.mmap(fd, offset, length, PROT_READ | PROT_WRITE);
          rw = true;
        } catch (e) {
          const code = (e as { code?: string }).code;
          if (code !== 'EPERM' && code !== 'EACCES') throw e;
          this.writeRefused = true;
        }
      }
      ab ??= native.mmap(fd, offset, length, PROT_READ);
    } catch (e) {
      this.owner.budget.give();
      const code = (e as { code?: string }).code;
      // ENOMEM here is the process's mappings running out: no space for one more.
      throw fail(code === 'ENOMEM' ? 'ENOSPC' : 'EFAULT', `cannot mmap the guest file: ${(e as Error).message}`);
    }
    this.live++;
    return new FileMapping(native, this, ab, offset, rw);
  }
}
