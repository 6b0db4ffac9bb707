// fds of every kind a request might carry: right (sealed memfd, eventfd) and
// wrong (unsealed memfd, a socket whose peer is closed, a pipe, /dev/null, a
// regular file).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as native from '../native/index.js';
import type { Prng } from './prng.js';

/** The kinds of fd the fuzzer sends. */
export type FdKind = 'memfd' | 'memfd-unsealed' | 'eventfd' | 'socket' | 'pipe' | 'devnull' | 'file';
const KINDS: readonly FdKind[] = ['memfd', 'memfd-unsealed', 'eventfd', 'socket', 'pipe', 'devnull', 'file'];

/** QEMU seals guest RAM memfds against resizing. */
export const GUEST_SEALS = native.F_SEAL_SHRINK | native.F_SEAL_GROW;

/** A sealed memfd of `size` bytes, as QEMU backs guest RAM. */
export function sealedMemfd(size: number): number {
  const fd = native.memfdCreate('fuzz-ram', size);
  native.addSeals(fd, GUEST_SEALS);
  return fd;
}

export class FdMaker {
  /** What each open fd made here is (for reports). */
  private readonly kinds = new Map<number, string>();

  private readonly scratchFile: string;
  private readonly fifo: string;

  /** Scratch files (a regular file, a FIFO) go in `dir`. */
  constructor(private readonly rng: Prng, dir: string) {
    this.scratchFile = path.join(dir, 'scratch');
    this.fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [this.fifo]);
  }

  /** One new fd of `kind` (random when not given). */
  make(kind: FdKind = this.rng.pick(KINDS)): number {
    const fd = this.open(kind);
    this.kinds.set(fd, kind);
    return fd;
  }

  /** "memfd(8192)", "eventfd", ... for a report. */
  describe(fd: number): string {
    const kind = this.kinds.get(fd) ?? 'fd';
    return kind.startsWith('memfd') ? `${kind}(${native.fileSize(fd)})` : kind;
  }

  /** Labels an fd opened elsewhere that goes into a message. */
  adopt(fd: number, kind: FdKind): number {
    this.kinds.set(fd, kind);
    return fd;
  }

  /** Forgets an fd (it is being closed elsewhere). */
  forget(fd: number): void {
    this.kinds.delete(fd);
  }

  private open(kind: FdKind): number {
    switch (kind) {
      case 'memfd': return sealedMemfd(this.pageMultiple());
      case 'memfd-unsealed': return native.memfdCreate('fuzz-unsealed', this.pageMultiple());
      case 'eventfd': return native.eventfd(0);
      case 'socket': {
        const [a, b] = native.socketpair();
        native.close(b);
        return a;
      }
      case 'pipe': return fs.openSync(this.fifo, 'r+'); // read-write: the open does not wait for a peer
      case 'devnull': return fs.openSync('/dev/null', 'r');
      case 'file': return fs.openSync(this.scratchFile, 'a+');
    }
  }

  /** Closes an fd made here that will not be sent. */
  release(fd: number): void {
    this.kinds.delete(fd);
    native.close(fd);
  }

  /** `n` fds, all of one kind or mixed. */
  many(n: number, kind?: FdKind): number[] {
    const fds: number[] = [];
    for (let i = 0; i < n; i++) fds.push(this.make(kind));
    return fds;
  }

  private pageMultiple(): number {
    return this.rng.pick([0, 4096, 8192, 65536, 4096 * this.rng.range(1, 64)]);
  }
}
