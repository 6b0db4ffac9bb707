// virtio-blk (virtio device type 2) backed by a raw image file.
//
// Requests: IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES; anything else is
// VIRTIO_BLK_S_UNSUPP. Data moves with preadv/pwritev straight between the
// file and guest memory (DeviceDma views: the mapped guest RAM itself, or
// bounce buffers when the memory is reached by DMA_READ/WRITE messages):
// what the page cache holds is copied at once on the event loop (it never
// waits for the disk), the rest on the libuv thread pool (../block/file-io.ts). The
// header and status byte are read and written in place when mapped. Plain
// reads and writes are served by a native loop straight off the ring
// (ring-in-place.ts) before the queue hands chains out; one it leaves, if
// entirely in mapped memory, takes mapped-io.ts, which completes it in the
// same turn without promises; everything else the async path here.
// A failed request (bad sector, DMA fault, I/O error, write to a read-only
// disk) completes with VIRTIO_BLK_S_IOERR; the device keeps going. A fault
// rule may complete a request with IOERR or UNSUPP before it runs.
//
// Durability: a write completes after pwritev returned (page cache); FLUSH
// completes after fdatasync, which is what a writeback-cache disk promises.
// A driver that does not negotiate VIRTIO_BLK_F_FLUSH gets a write-through
// disk instead (fdatasync before each write completes).
//
// Every queue is processed on its own, with as many requests in flight as
// the driver makes available.
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../device.js';
import type { FdOps } from '../pci/fd-ops.js';
import type { PciDevice } from '../pci/pci-device.js';
import { bit, VirtioId } from '../virtio/constants.js';
import { chainRead, chainView, chainWrite, withChainSpans } from '../virtio/chain-io.js';
import { VirtioPciTransport } from '../virtio/transport.js';
import type { DescChain } from '../virtio/virtqueue.js';
import {
  BlkConfig,
  BlkFeature,
  BlkStatus,
  BlkType,
  DWZ_FLAG_UNMAP,
  DWZ_SEGMENT_SIZE,
  ID_BYTES,
  OUTHDR_SIZE,
  SECTOR,
} from './constants.js';
import { fdatasync, punchHole, readFull, writeFull, zeroRange } from '../block/file-io.js';
import { openImage } from '../block/image.js';
import { blkFaultIo } from './fault-io.js';
import { MappedIo, type MappedIoDisk } from './mapped-io.js';
import { BlkRingInPlace, type RingInPlaceDisk } from './ring-in-place.js';

export interface VirtioBlkOptions {
  /** Raw image file. */
  disk: string;
  /** Bytes; the image is created at this size if it does not exist (a multiple of 512). */
  size?: number;
  /** Offer VIRTIO_BLK_F_RO; writes fail with IOERR. */
  readonly?: boolean;
  /** Request queues (1..64, default 1); more than one offers VIRTIO_BLK_F_MQ. */
  queues?: number;
  /** Size of each queue (power of two, 4..1024, default 256). */
  queueSize?: number;
  /** The GET_ID string (at most 20 bytes; default: the image's file name). */
  serial?: string;
  /** Deterministic mode: requests complete in the order they were made available. */
  inOrder?: boolean;
  /** Socket-free fd operations (tests). */
  fdOps?: FdOps;
  log?: Logger;
}

export interface BlkStats {
  reads: number;
  writes: number;
  flushes: number;
  getIds: number;
  discards: number;
  writeZeroes: number;
  bytesRead: number;
  bytesWritten: number;
  ioErrors: number;
  unsupported: number;
}

/** Limits advertised for DISCARD and WRITE_ZEROES. */
const MAX_DISCARD_SECTORS = 0x400000; // 2 GiB per segment
const MAX_DISCARD_SEG = 16;
const MAX_WRITE_ZEROES_SECTORS = 0x10000; // 32 MiB per segment
const MAX_WRITE_ZEROES_SEG = 16;
/** GET_ID buffers larger than this are refused (the id is 20 bytes). */
const MAX_ID_BUFFER = 4096;

const STATUS_BYTES = [Buffer.from([BlkStatus.OK]), Buffer.from([BlkStatus.IOERR]), Buffer.from([BlkStatus.UNSUPP])];

/** A request that ends with this status (not an exception worth logging loudly). */
class BlkError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const ioerr = (m: string) => new BlkError(BlkStatus.IOERR, m);
const unsupp = (m: string) => new BlkError(BlkStatus.UNSUPP, m);

export class VirtioBlk {
  readonly kind = 'blk';
  readonly transport: VirtioPciTransport;
  readonly device: PciDevice;
  readonly disk: string;
  readonly readonly: boolean;
  /** Bytes of the image (as opened). */
  readonly size: number;
  /** 512-byte sectors exposed to the guest. */
  readonly capacity: number;
  readonly numQueues: number;
  readonly stats: BlkStats = {
    reads: 0, writes: 0, flushes: 0, getIds: 0, discards: 0, writeZeroes: 0,
    bytesRead: 0, bytesWritten: 0, ioErrors: 0, unsupported: 0,
  };
  private fd: number;
  private readonly id: Buffer;
  /** Writes complete once in the page cache (FLUSH negotiated, see Durability above); set at DRIVER_OK. */
  private writesBuffered = false;
  private readonly mapped: MappedIo;
  private readonly inPlace: BlkRingInPlace;
  /** The device configuration space (struct virtio_blk_config). */
  readonly config: Buffer;

  constructor(options: VirtioBlkOptions) {
    if (!options || typeof options.disk !== 'string' || options.disk === '') throw new Error("virtio-blk needs a 'disk' image path");
    this.disk = options.disk;
    this.readonly = options.readonly ?? false;
    const queues = options.queues ?? 1;
    if (!Number.isInteger(queues) || queues < 1 || queues > 64) throw new RangeError(`queues must be 1..64, got ${queues}`);
    const queueSize = options.queueSize ?? 256;
    if (!Number.isInteger(queueSize) || queueSize < 4 || queueSize > 1024 || (queueSize & (queueSize - 1))) {
      throw new RangeError(`queueSize must be a power of two in 4..1024, got ${queueSize}`);
    }
    this.numQueues = queues;
    const { fd, size } = openImage('virtio-blk', options.disk, options.size, this.readonly, SECTOR);
    this.fd = fd;
    this.size = size;
    this.capacity = Math.floor(size / SECTOR);
    const serial = options.serial ?? path.basename(options.disk);
    this.id = Buffer.alloc(ID_BYTES);
    this.id.write(serial, 0, ID_BYTES, 'utf8');

    const c = (this.config = Buffer.alloc(BlkConfig.SIZE));
    c.writeBigUInt64LE(BigInt(this.capacity), BlkConfig.CAPACITY);
    c.writeUInt32LE(queueSize - 2, BlkConfig.SEG_MAX); // header and status take a descriptor each
    c.writeUInt32LE(SECTOR, BlkConfig.BLK_SIZE);
    c.writeUInt16LE(queues, BlkConfig.NUM_QUEUES);
    c.writeUInt32LE(MAX_DISCARD_SECTORS, BlkConfig.MAX_DISCARD_SECTORS);
    c.writeUInt32LE(MAX_DISCARD_SEG, BlkConfig.MAX_DISCARD_SEG);
    c.writeUInt32LE(1, BlkConfig.DISCARD_SECTOR_ALIGNMENT);
    c.writeUInt32LE(MAX_WRITE_ZEROES_SECTORS, BlkConfig.MAX_WRITE_ZEROES_SECTORS);
    c.writeUInt32LE(MAX_WRITE_ZEROES_SEG, BlkConfig.MAX_WRITE_ZEROES_SEG);
    c[BlkConfig.WRITE_ZEROES_MAY_UNMAP] = 0;

    let features = bit(BlkFeature.SEG_MAX) | bit(BlkFeature.BLK_SIZE) | bit(BlkFeature.FLUSH);
    if (queues > 1) features |= bit(BlkFeature.MQ);
    if (this.readonly) features |= bit(BlkFeature.RO);
    else features |= bit(BlkFeature.DISCARD) | bit(BlkFeature.WRITE_ZEROES);

    this.transport = new VirtioPciTransport(
      {
        name: 'virtio-blk',
        deviceId: VirtioId.BLOCK,
        classCode: 0x010000, // mass storage, SCSI: what QEMU's virtio-blk-pci reports
        queueSizes: new Array<number>(queues).fill(queueSize),
        features,
        config: c,
        handle: (chain) => this.serve(chain),
        // Fault injection asks about every request: none is served in place meanwhile.
        serveInPlace: (ring, dma) => (this.device.client?.faults === undefined ? this.inPlace.serve(ring, dma) : 0),
        driverOk: (negotiated) => {
          this.writesBuffered = !this.readonly && (negotiated & bit(BlkFeature.FLUSH)) !== 0n;
        },
      },
      { fdOps: options.fdOps, log: options.log, inOrder: options.inOrder },
    );
    this.device = this.transport.pci;
    const self = this;
    // What the two fast paths need of the device (the image's fd changes on close).
    const disk: MappedIoDisk & RingInPlaceDisk = {
      get fd() {
        return self.fd;
      },
      capacity: this.capacity,
      get writesBuffered() {
        return self.writesBuffered;
      },
      finished: (chain, type, bytes, error) => this.finishedMapped(chain, type, bytes, error),
      served: (reads, bytesRead, writes, bytesWritten) => {
        this.stats.reads += reads;
        this.stats.bytesRead += bytesRead;
        this.stats.writes += writes;
        this.stats.bytesWritten += bytesWritten;
      },
    };
    this.mapped = new MappedIo(disk);
    this.inPlace = new BlkRingInPlace(disk);
  }

  /** Close the image (further requests fail with IOERR). */
  close(): void {
    if (this.fd < 0) return;
    fs.closeSync(this.fd);
    this.fd = -1;
  }

  private get writeback(): boolean {
    return this.transport.has(BlkFeature.FLUSH);
  }

  /**
   * A chain from a queue: the mapped fast path when it can, else the general
   * one. While the server injects faults every request takes the general
   * path, the one place the fault question is asked.
   */
  private serve(chain: DescChain): void {
    const dma = this.transport.dma;
    if (dma && this.device.client?.faults === undefined && this.mapped.tryServe(dma, chain)) return;
    void this.serveGeneral(chain);
  }

  private async serveGeneral(chain: DescChain): Promise<void> {
    const dma = this.transport.dma;
    if (!dma || chain.writable < 1) {
      // No room for a status byte: nothing sensible to report.
      this.transport.log.warn(`virtio-blk: queue ${chain.queue.index}: request ${chain.head} without a status byte`);
      return chain.complete(0);
    }
    let status: number = BlkStatus.OK;
    try {
      await this.execute(chain);
    } catch (e) {
      status = this.failed(chain, e);
    }
    await this.finish(chain, status);
  }

  /** The end of a request the mapped path took over (see MappedIoDisk.finished). */
  private finishedMapped(chain: DescChain, type: number, bytes: number, error: unknown): void {
    if (type === BlkType.IN) {
      this.stats.reads++;
      this.stats.bytesRead += bytes;
    } else {
      this.stats.writes++;
      this.stats.bytesWritten += bytes;
    }
    void this.finish(chain, error ? this.failed(chain, error) : BlkStatus.OK);
  }

  /** The status of a failed request (counted and logged). */
  private failed(chain: DescChain, e: unknown): number {
    let status: number;
    if (e instanceof BlkError) {
      status = e.status;
      this.transport.log.debug(`virtio-blk: queue ${chain.queue.index}: request ${chain.head}: ${e.message}`);
    } else {
      status = BlkStatus.IOERR;
      this.transport.log.warn(`virtio-blk: queue ${chain.queue.index}: request ${chain.head} failed: ${String((e as Error)?.message ?? e)}`);
    }
    if (status === BlkStatus.UNSUPP) this.stats.unsupported++;
    else this.stats.ioErrors++;
    return status;
  }

  /** Store the status byte (in place when mapped) and complete the chain; nothing once it is stale. */
  private finish(chain: DescChain, status: number): void | Promise<void> {
    if (chain.stale) return; // reset under us: the buffers are not ours any more
    const dma = this.transport.dma;
    if (!dma) return chain.complete(0);
    const at = chain.writable - 1;
    const v = chainView(dma, chain, 'writable', at, 1);
    if (v) {
      v[0] = status;
      return this.completed(chain, status);
    }
    return chainWrite(dma, chain, at, STATUS_BYTES[status]!).then(
      () => this.completed(chain, status),
      (e: unknown) => {
        this.transport.log.warn(`virtio-blk: queue ${chain.queue.index}: cannot write the status of request ${chain.head}: ${String(e)}`);
        chain.complete(0);
      },
    );
  }

  private completed(chain: DescChain, status: number): void {
    // On success every writable byte was written; on failure only the status
    // is known to be, and it is not at the start unless it is alone.
    chain.complete(status === BlkStatus.OK || chain.writable === 1 ? chain.writable : 0);
  }

  private async execute(chain: DescChain): Promise<void> {
    const dma = this.transport.dma!;
    if (chain.readable < OUTHDR_SIZE) throw ioerr(`header of ${chain.readable} bytes`);
    const raw =
      chainView(dma, chain, 'readable', 0, OUTHDR_SIZE) ??
      (await chainRead(dma, chain, 0, OUTHDR_SIZE).catch((e: Error) => {
        throw ioerr(`cannot read the header: ${e.message}`);
      }));
    // struct virtio_blk_outhdr: le32 type, le32 reserved, le64 sector.
    const hdr = new DataView(raw.buffer, raw.byteOffset, OUTHDR_SIZE);
    const type = hdr.getUint32(0, true);
    const sector = hdr.getBigUint64(8, true);
    if (this.fd < 0) throw ioerr('the image is closed');
    if (chain.stale) throw ioerr('the queue was reset');
    const faults = this.device.client?.faults;
    if (faults !== undefined) {
      const injected = faults.blockStatus(blkFaultIo(type, sector, chain));
      if (injected !== undefined) throw new BlkError(injected.kind === 'unsupp' ? BlkStatus.UNSUPP : BlkStatus.IOERR, 'injected fault');
    }
    switch (type) {
      case BlkType.IN: {
        const len = chain.writable - 1;
        const pos = this.range(sector, len);
        this.stats.reads++;
        await withChainSpans(dma, chain, 'writable', 0, len, (list) => readFull(this.fd, list, pos, len));
        this.stats.bytesRead += len;
        return;
      }
      case BlkType.OUT: {
        if (this.readonly) throw ioerr('write to a read-only disk');
        const len = chain.readable - OUTHDR_SIZE;
        const pos = this.range(sector, len);
        this.stats.writes++;
        await withChainSpans(dma, chain, 'readable', OUTHDR_SIZE, len, (list) => writeFull(this.fd, list, pos, len));
        if (!this.writeback) await fdatasync(this.fd);
        this.stats.bytesWritten += len;
        return;
      }
      case BlkType.FLUSH:
        this.stats.flushes++;
        if (!this.readonly) await fdatasync(this.fd);
        return;
      case BlkType.GET_ID: {
        const len = chain.writable - 1;
        if (len > MAX_ID_BUFFER) throw ioerr(`GET_ID buffer of ${len} bytes`);
        this.stats.getIds++;
        const out = Buffer.alloc(len);
        this.id.copy(out, 0, 0, Math.min(len, ID_BYTES));
        await chainWrite(dma, chain, 0, out);
        return;
      }
      case BlkType.DISCARD:
      case BlkType.WRITE_ZEROES:
        return this.discardOrZero(chain, type === BlkType.DISCARD);
      default:
        throw unsupp(`request type ${type}`);
    }
  }

  /** Byte position of [sector, +len bytes), checked against the capacity. */
  private range(sector: bigint, len: number): number {
    if (len % SECTOR !== 0) throw ioerr(`data length ${len} is not a multiple of ${SECTOR}`);
    const end = sector + BigInt(len / SECTOR);
    if (end > BigInt(this.capacity)) throw ioerr(`sectors [${sector}, ${end}) past the capacity ${this.capacity}`);
    return Number(sector) * SECTOR;
  }

  private async discardOrZero(chain: DescChain, discard: boolean): Promise<void> {
    const what = discard ? 'DISCARD' : 'WRITE_ZEROES';
    if (this.readonly) throw ioerr(`${what} on a read-only disk`);
    const bytes = chain.readable - OUTHDR_SIZE;
    if (bytes === 0 || bytes % DWZ_SEGMENT_SIZE !== 0) throw ioerr(`${what} with ${bytes} bytes of segments`);
    const nseg = bytes / DWZ_SEGMENT_SIZE;
    if (nseg > (discard ? MAX_DISCARD_SEG : MAX_WRITE_ZEROES_SEG)) throw unsupp(`${what} with ${nseg} segments`);
    const segs = await chainRead(this.transport.dma!, chain, OUTHDR_SIZE, bytes);
    const maxSectors = discard ? MAX_DISCARD_SECTORS : MAX_WRITE_ZEROES_SECTORS;
    const ranges: [number, number, boolean][] = [];
    for (let i = 0; i < nseg; i++) {
      const o = i * DWZ_SEGMENT_SIZE;
      const sector = segs.readBigUInt64LE(o);
      const num = segs.readUInt32LE(o + 8);
      const flags = segs.readUInt32LE(o + 12);
      if (flags & ~DWZ_FLAG_UNMAP) throw unsupp(`${what} with unknown flags 0x${flags.toString(16)}`);
      if (discard && flags & DWZ_FLAG_UNMAP) throw unsupp('DISCARD with the UNMAP flag');
      if (num > maxSectors) throw ioerr(`${what} of ${num} sectors (max ${maxSectors})`);
      ranges.push([this.range(sector, num * SECTOR), num * SECTOR, (flags & DWZ_FLAG_UNMAP) !== 0]);
    }
    if (discard) {
      // The space goes back to the host file system where it can; elsewhere
      // DISCARD stays the hint the spec allows it to be.
      this.stats.discards++;
      for (const [pos, len] of ranges) if (len > 0 && !(await punchHole(this.fd, pos, len))) break;
      return;
    }
    this.stats.writeZeroes++;
    for (const [pos, len, unmap] of ranges) if (len > 0) await zeroRange(this.fd, pos, len, unmap);
    if (!this.writeback) await fdatasync(this.fd);
    this.stats.bytesWritten += ranges.reduce((s, r) => s + r[1], 0);
  }
}
