// A byte budget for the replies the client owes us (to our DMA_READ and
// DMA_WRITE requests).
//
// Why: QEMU 11.1 writes each message with one non-blocking sendmsg and, when
// that write is partial, drops the rest instead of sending it later
// (hw/vfio-user/proxy.c, vfio_user_send_one): the stream then carries half a
// message and both sides lose framing (seen here: a garbage msg_size from
// QEMU, then QEMU aborting). Its send buffer toward us only fills when it owes
// us more than that buffer holds (net.core.wmem_default, about 208 KiB), and
// the bulk of what it owes us is DMA_READ data. So the server keeps the reply
// bytes it has asked for well below that, and asks for more as replies come.
//
// Grants are FIFO so that requests go out in the order the devices made them.

export class ReplyBudget {
  private used = 0;
  private readonly waiting: Array<{ bytes: number; grant: () => void; refuse: (e: Error) => void }> = [];
  private failed: Error | null = null;

  constructor(readonly limit: number) {}

  /** Bytes asked for and not yet released. */
  get inUse(): number { return this.used; }

  /**
   * Resolves once `bytes` fit. A request larger than the whole budget goes
   * alone (when nothing else is outstanding), so it can never wait forever.
   */
  acquire(bytes: number): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.waiting.length === 0 && this.fits(bytes)) {
      this.used += bytes;
      return Promise.resolve();
    }
    return new Promise((grant, refuse) => this.waiting.push({ bytes, grant, refuse }));
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
    while (this.waiting.length > 0 && this.fits(this.waiting[0]!.bytes)) {
      const w = this.waiting.shift()!;
      this.used += w.bytes;
      w.grant();
    }
  }

  /** The connection is gone: refuse everyone waiting and every later acquire. */
  fail(err: Error): void {
    this.failed = err;
    for (const w of this.waiting.splice(0)) w.refuse(err);
  }

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.limit;
  }
}
