// Memory behind a file descriptor for the control API (an anonymous memfd,
// a file by path), mmap'd MAP_SHARED. The fd is closed right after mmap:
// the mapping lives on until the last reference goes. (DMA_MAP's guest
// files are shared per file instead: guest-files.ts.)
import { closeSync, openSync } from 'node:fs';
import { fail, VfioUserError } from '../protocol/errno.js';
import { BackingBase } from './backing.js';
import { PAGE_SIZE } from './u64.js';
import { PROT_READ, PROT_WRITE } from '../native/prot.js';

/** The part of the native addon (native/index.ts) that backings use. */
export interface NativeMem {
  mmap(fd: number, offset: number, length: number, prot: number): ArrayBuffer;
  munmap(ab: ArrayBuffer): unknown;
  fileSize(fd: number): number;
  getSeals(fd: number): number;
  readonly F_SEAL_SHRINK: number;
  memfdCreate(name: string, size: number): number;
  close(fd: number): number;
}


export interface FdMapOptions {
  /** Byte offset in the file (any alignment). */
  offset?: number;
  size: number;
  /** Areas over it may be mapped WRITE. */
  writable?: boolean;
  /** Close the fd once mapped (also on failure). Default true. */
  closeFd?: boolean;
}

/** The file behind fd has F_SEAL_SHRINK: it can never be truncated under a mapping. */
export function sealedAgainstShrink(native: Pick<NativeMem, 'getSeals' | 'F_SEAL_SHRINK'>, fd: number): boolean {
  let seals = 0;
  try {
    seals = native.getSeals(fd);
  } catch {
    seals = 0; // not sealable (not a memfd): no seals
  }
  return seals > 0 && (seals & native.F_SEAL_SHRINK) !== 0;
}

export class MmapBacking extends BackingBase {
  readonly kind = 'mmap' as const;
  readonly size: number;
  readonly writable: boolean;
  override readonly readOnlyMemory: boolean;
  /** The file had F_SEAL_SHRINK: it can never be truncated under us. */
  readonly sealed: boolean;
  private ab: ArrayBuffer | null;
  private view: Uint8Array | null;

  private constructor(
    private readonly native: NativeMem,
    ab: ArrayBuffer,
    delta: number,
    size: number,
    writable: boolean,
    readOnlyMemory: boolean,
    sealed: boolean,
  ) {
    super();
    this.ab = ab;
    this.view = new Uint8Array(ab, delta, size);
    this.size = size;
    this.writable = writable;
    this.readOnlyMemory = readOnlyMemory;
    this.sealed = sealed;
  }

  /**
   * Map [offset, offset+size) of fd. The file size is checked first (a
   * mapping past EOF would SIGBUS on first touch). Memory is mapped
   * read-write when the fd allows it, even for read-only DMA, so that no JS
   * view can ever fault on a write; a read-only fd gives copies instead.
   */
  static fromFd(native: NativeMem, fd: number, opts: FdMapOptions): MmapBacking {
    const { offset = 0, size, writable = true, closeFd = true } = opts;
    try {
      if (!Number.isSafeInteger(offset) || offset < 0) throw fail('EINVAL', 'bad file offset');
      if (!Number.isSafeInteger(size) || size <= 0) throw fail('EINVAL', 'bad mapping size');
      let fsize: number;
      try {
        fsize = native.fileSize(fd);
      } catch (e) {
        throw fail('EBADF', `cannot stat fd ${fd}: ${(e as Error).message}`);
      }
      if (typeof fsize !== 'number' || fsize < 0) throw fail('EBADF', `cannot stat fd ${fd}`);
      if (offset + size > fsize) {
        throw fail('EINVAL', `mapping [${offset}, ${offset + size}) is past the end of the file (${fsize} bytes)`);
      }
      const sealed = sealedAgainstShrink(native, fd);
      const delta = offset % PAGE_SIZE;
      const mapOff = offset - delta;
      let ab: ArrayBuffer;
      let roMemory = false;
      try {
        ab = native.mmap(fd, mapOff, size + delta, PROT_READ | PROT_WRITE);
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (writable) throw fail(code === 'EACCES' || code === 'EPERM' ? 'EACCES' : 'ENOMEM', `cannot mmap fd ${fd} read-write: ${(e as Error).message}`);
        try {
          ab = native.mmap(fd, mapOff, size + delta, PROT_READ);
          roMemory = true;
        } catch (e2) {
          throw fail('EFAULT', `cannot mmap fd ${fd}: ${(e2 as Error).message}`);
        }
      }
      return new MmapBacking(native, ab, delta, size, writable && !roMemory, roMemory, sealed);
    } finally {
      if (closeFd) native.close(fd);
    }
  }

  /** Fresh zeroed anonymous memory (a memfd, closed once mapped). */
  static anonymous(native: NativeMem, size: number, name = 'vfio-user-ts-ioas'): MmapBacking {
    let fd: number;
    try {
      fd = native.memfdCreate(name, size);
    } catch (e) {
      throw fail('ENOMEM', `memfd_create(${size}): ${(e as Error).message}`);
    }
    if (typeof fd !== 'number' || fd < 0) throw fail('ENOMEM', `memfd_create(${size}) failed`);
    return MmapBacking.fromFd(native, fd, { size, writable: true });
  }

  /** A file on disk, shared (writes reach the file). */
  static fromFile(
    native: NativeMem,
    path: string,
    opts: { offset?: number; size?: number; writable?: boolean } = {},
  ): MmapBacking {
    const writable = opts.writable ?? true;
    let fd: number;
    try {
      fd = openSync(path, writable ? 'r+' : 'r');
    } catch (e) {
      throw fail('ENOENT', `cannot open ${path}: ${(e as Error).message}`);
    }
    try {
      const offset = opts.offset ?? 0;
      const size = opts.size ?? native.fileSize(fd) - offset;
      return MmapBacking.fromFd(native, fd, { offset, size, writable, closeFd: false });
    } catch (e) {
      if (e instanceof VfioUserError) throw e;
      throw fail('EINVAL', (e as Error).message);
    } finally {
      closeSync(fd);
    }
  }

  get bytes(): Uint8Array | null {
    return this.view;
  }

  override describe(): Record<string, unknown> {
    return { ...super.describe(), sealed: this.sealed, readOnlyMemory: this.readOnlyMemory };
  }

  // munmap detaches the ArrayBuffer first: a stale view reads as empty.
  protected dispose(): void {
    const ab = this.ab;
    this.ab = null;
    this.view = null;
    if (ab) this.native.munmap(ab);
  }
}
