// The hot path of virtio-blk: a read or write whose header, data and status
// byte all lie in guest memory mapped into this process (shared guest RAM,
// the usual case). Everything is done in the turn that took the chain off the
// ring: the header is read in place, the data descriptors become one reused
// span list (no per-request arrays, promises or closures), the file I/O is
// tried inline (page-cache hits copy at once; writes are made inline,
// blocking, while they stay quick: ../block/blocking-writes.ts), the status byte is stored in
// place and the chain completes, so its used entry goes out with the rest of
// the batch. Measured on this path: the general one (DeviceDma.withSpans,
// async/await) spent about a sixth of its time in the garbage collector.
//
// The views come from DeviceDma.mappedView and are only valid in this
// synchronous code. When the I/O cannot finish inline (not in the page
// cache) and goes to the thread pool, the same ranges are held with
// DeviceDma.withSpans before this code ends, so an unmap waits for the I/O.
//
// Anything else (message-backed or unmapped memory, other request types,
// a bad sector, a write-through disk) is left to the general path untouched.
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, type DeviceDma, type SpanBuffer } from '../../iommu/device-dma.js';
import { chainRanges, chainView } from '../virtio/chain-io.js';
import type { DescChain } from '../virtio/virtqueue.js';
import { BlkType, OUTHDR_SIZE, SECTOR } from './constants.js';
import { readFull, writeFull } from '../block/file-io.js';

/** What the path needs of its device. */
export interface MappedIoDisk {
  /** The image's fd (negative once closed). */
  readonly fd: number;
  /** Sectors. */
  readonly capacity: number;
  /** True when writes may complete before they are durable (FLUSH negotiated, not read-only). */
  readonly writesBuffered: boolean;
  /**
   * A request this path took over has ended, `bytes` moved or `error`: count
   * it, store its status byte and complete the chain (unless it is stale).
   */
  finished(chain: DescChain, type: number, bytes: number, error: unknown): void;
}

/** Most requests have a few data descriptors; Linux caps them at seg_max. */
const INITIAL_SPANS = 64;

export class MappedIo {
  /** Reused for every request: the addon copies it into its iovec before it returns. */
  private readonly list: SpanBuffer = { buffers: [], spans: new Float64Array(3 * INITIAL_SPANS), count: 0 };

  constructor(private readonly disk: MappedIoDisk) {}

  /**
   * Serves an IN or OUT request whose memory is all mapped. False: nothing was
   * done, the general path takes the chain. True: the request is this path's;
   * it has completed, or will when its thread-pool I/O ends.
   */
  tryServe(dma: DeviceDma, chain: DescChain): boolean {
    const disk = this.disk;
    // A stale chain (reset under us) is the general path's to drop untouched.
    if (disk.fd < 0 || chain.stale || chain.writable < 1 || chain.readable < OUTHDR_SIZE) return false;
    const hdr = chainView(dma, chain, 'readable', 0, OUTHDR_SIZE);
    if (!hdr) return false;
    // struct virtio_blk_outhdr: le32 type, le32 reserved, le64 sector.
    const type = hdr[0]! | (hdr[1]! << 8) | (hdr[2]! << 16) | (hdr[3]! << 24);
    const lo = (hdr[8]! | (hdr[9]! << 8) | (hdr[10]! << 16) | (hdr[11]! << 24)) >>> 0;
    const hi = (hdr[12]! | (hdr[13]! << 8) | (hdr[14]! << 16) | (hdr[15]! << 24)) >>> 0;
    let len: number;
    let access: number;
    if (type === BlkType.IN) {
      len = chain.writable - 1;
      access = DMA_ACCESS_WRITE;
    } else if (type === BlkType.OUT && disk.writesBuffered) {
      len = chain.readable - OUTHDR_SIZE;
      access = DMA_ACCESS_READ;
    } else return false;
    // Out of range or misaligned: the general path reports it.
    if (len % SECTOR !== 0 || hi >= 0x200000) return false;
    const sector = hi * 0x1_0000_0000 + lo;
    if (sector + len / SECTOR > disk.capacity) return false;
    // The status byte must be reachable in place too (finished() stores it so).
    if (!chainView(dma, chain, 'writable', chain.writable - 1, 1) || !this.gather(dma, chain, type === BlkType.IN, len, access)) return false;

    const pos = sector * SECTOR;
    let r: void | Promise<void>;
    try {
      r = type === BlkType.IN ? readFull(disk.fd, this.list, pos, len) : writeFull(disk.fd, this.list, pos, len);
    } catch (e) {
      // Refused before any byte moved (bad arguments): nothing in flight.
      disk.finished(chain, type, 0, e);
      return true;
    }
    if (r === undefined) {
      disk.finished(chain, type, len, null);
      return true;
    }
    // On the thread pool: hold the ranges until it is done (same synchronous
    // turn as the views, so no unmap came between).
    const { addrs, lens } = type === BlkType.IN ? chainRanges(chain, 'writable', 0, len) : chainRanges(chain, 'readable', OUTHDR_SIZE, len);
    const io = r;
    const settled = io.then(
      () => null,
      (e: unknown) => e ?? new Error('I/O failed'),
    );
    dma.withSpans(addrs, lens, access, () => settled).then(
      (err) => disk.finished(chain, type, err ? 0 : len, err),
      // Not held after all (cannot happen for memory just seen mapped): still wait for the I/O.
      (e: unknown) => void settled.then(() => disk.finished(chain, type, 0, e)),
    );
    return true;
  }

  /**
   * The data bytes as spans of mapped memory: the writable bytes before the
   * status byte (IN), or the readable bytes after the header (OUT). False if
   * any of them is not mapped for `access`.
   */
  private gather(dma: DeviceDma, chain: DescChain, writable: boolean, len: number, access: number): boolean {
    return writable
      ? dma.mappedSpans(chain.wAddr, chain.wLen, 0, len, access, this.list)
      : dma.mappedSpans(chain.rAddr, chain.rLen, OUTHDR_SIZE, len, access, this.list);
  }
}
