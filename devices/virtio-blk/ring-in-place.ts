// virtio-blk's hottest path: requests served by the native loop straight off
// the ring (native/virtio_blk_ring.c), before the virtqueue hands chains out
// one by one. For a 1 MiB request of ~250 data descriptors, walking,
// translating and gathering them in TS cost 50-65 µs (measured in process,
// page-cache hits); the native loop does it in a few, on this thread, in
// the same synchronous turn, with the window of guest memory taken in that
// turn (DeviceDma.mappedWindow: an unmap waits for the turn to end).
//
// The loop serves only plain IN and OUT requests wholly inside the window,
// reads that hit the page cache and writes that may block (the rules of
// ../block/blocking-writes.ts); it stops before anything else, untouched,
// and the TS path (mapped-io.ts, then the general one) serves or fails it.
// No window is given while the port must see every access (dirty tracking,
// --record-dma, DMA fault rules, bus mastering off), and the device does not
// ask while the server injects faults.
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, type DeviceDma } from '../../iommu/device-dma.js';
import * as native from '../../native/index.js';
import type { InPlaceRing } from '../virtio/virtqueue.js';
import type { MappedIoDisk } from './mapped-io.js';
import { blockingWrites, INLINE } from '../block/file-io.js';

const F = native.BlkRing;

/** What the loop needs of its device: the image, as the mapped path sees it, and a count of what it served. */
export interface RingInPlaceDisk extends Pick<MappedIoDisk, 'fd' | 'capacity' | 'writesBuffered'> {
  served(reads: number, bytesRead: number, writes: number, bytesWritten: number): void;
}

export class BlkRingInPlace {
  /** Reused: the loop's arguments and results (native.BlkRing fields). */
  private readonly state = new Float64Array(F.FIELDS);

  constructor(private readonly disk: RingInPlaceDisk) {}

  /** VirtqueueHost.serveInPlace for virtio-blk. */
  serve(ring: InPlaceRing, dma: DeviceDma): number {
    const disk = this.disk;
    if (!INLINE || disk.fd < 0) return 0;
    // The rings and the buffers must all be in the mapping that holds the descriptor table.
    const w = dma.mappedWindow(ring.desc, DMA_ACCESS_READ | DMA_ACCESS_WRITE);
    if (!w) return 0;
    const st = this.state;
    st[F.WINDOW_IOVA] = w.iova;
    st[F.DESC] = ring.desc;
    st[F.AVAIL] = ring.avail;
    st[F.USED] = ring.used;
    st[F.SIZE] = ring.size;
    st[F.INDIRECT] = ring.indirect ? 1 : 0;
    st[F.FD] = disk.fd;
    st[F.CAPACITY] = disk.capacity;
    st[F.MAX_WRITE] = disk.writesBuffered ? blockingWrites.largest() : 0;
    st[F.LAST_AVAIL] = ring.lastAvail;
    st[F.USED_IDX] = ring.usedIdx;
    const n = native.virtioBlkServe(w.bytes, st);
    const writes = st[F.WRITES]!;
    if (st[F.WRITE_NS]! > 0) blockingWrites.took(st[F.WRITE_NS]! / 1e6, writes);
    if (n === 0) return 0;
    ring.lastAvail = st[F.LAST_AVAIL]!;
    ring.usedIdx = st[F.USED_IDX]!;
    disk.served(st[F.READS]!, st[F.BYTES_READ]!, writes, st[F.BYTES_WRITTEN]!);
    return n;
  }
}
