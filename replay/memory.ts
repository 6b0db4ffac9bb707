// The replay's stand-ins for the fds a recording saw: a fresh memfd of the
// recorded size (one per recorded file, so two maps of one file share it as
// they did), with the recorded seals that do not forbid writing; a fresh
// eventfd for an eventfd. The memfds of DMA_MAPs are kept, so that guest
// memory a device read in the recording (--record-dma) can be put there.
import fs from 'node:fs';
import * as native from '../native/index.js';
import type { FdMeta } from '../trace/format.js';

/** Largest memory file a replay creates (memfds are sparse: only written pages cost). */
const MAX_FILE = 2 ** 40;
/** Seals that stop our own writes of recorded guest memory: never applied. */
const WRITE_SEALS = native.F_SEAL_WRITE | native.F_SEAL_FUTURE_WRITE;

interface Mapping { addr: bigint; size: bigint; fd: number; offset: bigint }

/** The fds one replayed connection sends, and the guest memory they stand for. */
export class ReplayMemory {
  private readonly files = new Map<string, number>();
  private readonly owned: number[] = [];
  private maps: Mapping[] = [];

  /** Fds to send in place of the recorded ones. Throws on a recorded size that cannot be a file. */
  fdsFor(recorded: readonly FdMeta[]): number[] {
    return recorded.map((m) => this.fdFor(m));
  }

  private fdFor(m: FdMeta): number {
    if (m.kind === 'eventfd') return this.own(native.eventfd(0));
    const known = m.id ? this.files.get(m.id) : undefined;
    if (known !== undefined) return known;
    if (!Number.isSafeInteger(m.size) || m.size < 0 || m.size > MAX_FILE) {
      throw new RangeError(`recorded fd size ${m.size} is not a file size this replay makes (at most 2^40)`);
    }
    const fd = this.own(native.memfdCreate(`replay-${m.kind}`, m.size));
    const seals = m.seals & ~WRITE_SEALS;
    if (seals) native.addSeals(fd, seals);
    if (m.id) this.files.set(m.id, fd);
    return fd;
  }

  private own(fd: number): number {
    this.owned.push(fd);
    return fd;
  }

  /** A DMA_MAP that carried `fd` was sent: [addr, addr+size) is that file from `offset`. */
  mapped(addr: bigint, size: bigint, offset: bigint, fd: number): void {
    this.maps.push({ addr, size, fd, offset });
  }

  /** A DMA_UNMAP was sent (all: every mapping). */
  unmapped(addr: bigint, size: bigint, all: boolean): void {
    this.maps = all ? [] : this.maps.filter((m) => m.addr + m.size <= addr || m.addr >= addr + size);
  }

  /**
   * Puts recorded guest-memory bytes at `iova`; false when some of it is in
   * no fd-backed mapping (memory reached by messages needs no placing).
   */
  place(iova: bigint, data: Uint8Array): boolean {
    let done = 0;
    while (done < data.length) {
      const at = iova + BigInt(done);
      const m = this.maps.find((x) => at >= x.addr && at < x.addr + x.size);
      if (!m) return false;
      const n = Math.min(data.length - done, Number(m.addr + m.size - at));
      fs.writeSync(m.fd, data, done, n, Number(m.offset + (at - m.addr)));
      done += n;
    }
    return true;
  }

  /** The bytes at [iova, iova+length) of fd-backed guest memory; null when some are in no such mapping. */
  read(iova: bigint, length: number): Buffer | null {
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const at = iova + BigInt(done);
      const m = this.maps.find((x) => at >= x.addr && at < x.addr + x.size);
      if (!m) return null;
      const n = Math.min(length - done, Number(m.addr + m.size - at));
      fs.readSync(m.fd, out, done, n, Number(m.offset + (at - m.addr)));
      done += n;
    }
    return out;
  }

  /** Closes every fd this replay made. */
  close(): void {
    for (const fd of this.owned) native.close(fd);
    this.owned.length = 0;
    this.files.clear();
    this.maps = [];
  }
}
