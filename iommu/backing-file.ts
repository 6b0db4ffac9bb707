// The backings of guest-memory files (DMA_MAP with an fd), shared by every
// DMA_MAP of the same file (guest-files.ts keeps one entry per file): each
// map is an area over one of them at its file position (area.offset).
//  - FileMapping: one mmap of a file sealed against shrinking; zero copy.
//  - FileIoBacking: pread / pwrite on one fd of the file; `bytes` is null,
//    so DeviceDma bounces, and a short transfer (the client shrank the file)
//    is a fault instead of the SIGBUS a mapping would raise.
import { fail } from '../protocol/errno.js';
import { BackingBase } from './backing.js';
import type { NativeMem } from './backing-mmap.js';

/** The part of the native addon file I/O uses (native/index.ts). */
export interface NativeFileIo {
  preadvFull(fd: number, views: readonly ArrayBufferView[], position: number, tryInline: boolean): number | Promise<number>;
  pwritevFull(fd: number, views: readonly ArrayBufferView[], position: number, tryInline: boolean): number | Promise<number>;
  fileSize(fd: number): number;
  close(fd: number): number;
}

/** Told when a backing of a file is disposed (the registry entry). */
export interface FileOwner {
  gone(b: FileMapping | FileIoBacking): void;
}

/**
 * [fileOffset, fileOffset + size) of a guest file, mmap'd once. Offsets of
 * areas over it are relative to fileOffset. munmap'd (views detached) when
 * the last area and in-flight access holding it goes.
 */
export class FileMapping extends BackingBase {
  readonly kind = 'mmap' as const;
  readonly size: number;
  readonly writable: boolean;
  override readonly readOnlyMemory: boolean;
  private ab: ArrayBuffer | null;
  private view: Uint8Array | null;

  /** `writable`: mapped MAP_SHARED read-write; else a private read-only copy. */
  constructor(
    private readonly native: NativeMem,
    private readonly owner: FileOwner,
    ab: ArrayBuffer,
    readonly fileOffset: number,
    writable: boolean,
  ) {
    super();
    this.ab = ab;
    this.view = new Uint8Array(ab);
    this.size = ab.byteLength;
    this.writable = writable;
    this.readOnlyMemory = !writable;
  }

  get bytes(): Uint8Array | null {
    return this.view;
  }

  override describe(): Record<string, unknown> {
    return { ...super.describe(), fileOffset: this.fileOffset, readOnlyMemory: this.readOnlyMemory };
  }

  protected dispose(): void {
    const ab = this.ab;
    this.ab = null;
    this.view = null;
    if (ab) this.native.munmap(ab);
    this.owner.gone(this);
  }
}

/**
 * A guest file reached by pread / pwrite on one fd (closed on dispose).
 * Area offsets are file offsets. Every access must transfer every byte; a
 * write checks the file size first, so that it never grows back a file the
 * client shrank.
 */
export class FileIoBacking extends BackingBase {
  readonly kind = 'file' as const;
  /** Any file offset: the file's real end is checked at each access. */
  readonly size = Number.MAX_SAFE_INTEGER;
  readonly writable: boolean;

  constructor(
    private readonly native: NativeFileIo,
    private readonly owner: FileOwner,
    readonly fd: number,
    writable: boolean,
  ) {
    super();
    this.writable = writable;
  }

  get bytes(): null {
    return null;
  }

  override async read(offset: number, length: number): Promise<Buffer> {
    this.check();
    const out = Buffer.allocUnsafe(length);
    const n = await this.transfer(() => this.native.preadvFull(this.fd, [out], offset, true), 'pread');
    if (n !== length) throw fail('EFAULT', `the guest file ends inside the mapping (read ${n} of ${length} bytes at ${offset})`);
    return out;
  }

  override async write(offset: number, data: Uint8Array): Promise<void> {
    this.check();
    if (!this.writable) throw fail('EFAULT', 'the guest file is read-only');
    const end = offset + data.length;
    let size: number;
    try {
      size = this.native.fileSize(this.fd);
    } catch (e) {
      throw fail('EFAULT', `guest file: ${(e as Error).message}`);
    }
    if (size < end) throw fail('EFAULT', `the guest file ends inside the mapping (${size} < ${end})`);
    const n = await this.transfer(() => this.native.pwritevFull(this.fd, [data], offset, true), 'pwrite');
    if (n !== data.length) throw fail('EFAULT', `short write to the guest file (${n} of ${data.length} bytes)`);
  }

  override describe(): Record<string, unknown> {
    return { ...super.describe(), size: 'file', fd: this.fd };
  }

  protected dispose(): void {
    this.native.close(this.fd);
    this.owner.gone(this);
  }

  private check(): void {
    if (this.disposed) throw fail('EFAULT', 'the guest file is gone');
  }

  private async transfer(f: () => number | Promise<number>, what: string): Promise<number> {
    try {
      return await f();
    } catch (e) {
      throw fail('EFAULT', `${what} of the guest file: ${(e as Error).message}`);
    }
  }
}
