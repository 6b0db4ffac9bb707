// What guest memory held according to a recording made with --record-dma:
// every byte the device read or wrote, as of the last record applied. A
// replay compares the bytes the device wrote with this, since with shared
// guest RAM those writes are no messages.
const PAGE = 4096;

/** Sparse guest memory, by IOVA page. */
export class ShadowMemory {
  private readonly pages = new Map<bigint, Buffer>();

  /** Memory held `data` at `iova` (the device read or wrote it). */
  apply(iova: bigint, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const at = iova + BigInt(done);
      const page = at / BigInt(PAGE);
      const off = Number(at % BigInt(PAGE));
      const n = Math.min(PAGE - off, data.length - done);
      let p = this.pages.get(page);
      if (!p) this.pages.set(page, (p = Buffer.alloc(PAGE)));
      p.set(data.subarray(done, done + n), off);
      done += n;
    }
  }

  /** The bytes at [iova, iova+length) as recorded (only ranges applied before are meaningful). */
  bytes(iova: bigint, length: number): Buffer {
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const at = iova + BigInt(done);
      const off = Number(at % BigInt(PAGE));
      const n = Math.min(PAGE - off, length - done);
      this.pages.get(at / BigInt(PAGE))?.copy(out, done, off, off + n);
      done += n;
    }
    return out;
  }
}
