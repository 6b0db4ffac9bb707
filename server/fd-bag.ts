// The fds that came with one request: a handler takes the ones it keeps
// (DMA_MAP's memory, SET_IRQS eventfds) and the session closes the rest, so
// a request never leaks an fd whatever its handler does.
import { Errno, VfioUserError } from '../protocol/errno.js';
import * as native from '../native/index.js';

/** The fds of one request: handlers take what they keep, the rest is closed. */
export class FdBag {
  private taken: boolean[];
  constructor(readonly fds: readonly number[]) {
    this.taken = fds.map(() => false);
  }
  /** How many fds came with the request. */
  get count(): number { return this.fds.length; }
  /** Take ownership of fd number `i` of this message. */
  take(i: number): number {
    if (i < 0 || i >= this.fds.length || this.taken[i]) throw new VfioUserError(Errno.EINVAL, `no fd #${i} in message`);
    this.taken[i] = true;
    return this.fds[i]!;
  }
  /** Close every fd no handler took. */
  closeRest(): void {
    this.fds.forEach((fd, i) => {
      if (!this.taken[i]) { this.taken[i] = true; native.close(fd); }
    });
  }
}
