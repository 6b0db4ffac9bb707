// The NVM command set's I/O commands (NVM Command Set 3): Read, Write,
// Flush, Write Zeroes, Dataset Management (deallocate punches a hole) and
// Compare. `execute` is the one place an I/O command runs: it takes the
// decoded command and returns its status, so anything that must see every
// I/O (fault injection, tracing) hooks in here.
//
// Data moves straight between the image and guest memory: the command's
// scatter list goes to DeviceDma.withSpans and from there to the native
// preadv/pwritev (mapped guest RAM in place, memory behind DMA messages
// through bounce buffers).
import fs from 'node:fs';
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, DmaFault, type DeviceDma } from '../../iommu/device-dma.js';
import { fdatasync, punchHole, readFull, writeFull, zeroRange } from '../block/file-io.js';
import {
  CDW12_DEAC,
  CDW12_FUA,
  DSM_DEALLOCATE,
  DSM_RANGE_SIZE,
  IoOp,
  NSID_ALL,
  S,
  type Status,
} from './constants.js';
import { copyCommandData, dmaOrFail, iovaOf, mapDataPointer } from './data-pointer.js';
import { fail, NvmeError } from './errors.js';
import type { Namespace } from './namespace.js';
import type { Command } from './queues.js';
import type { NvmeCounters } from './stats.js';
import type { DeviceFaultHooks } from '../fault-hooks.js';
import { injectedStatus, nvmeFaultIo } from './fault-io.js';

/** What I/O commands need from the controller. */
export interface IoHost {
  readonly dma: DeviceDma | undefined;
  /** CC.MPS page size in bytes. */
  readonly pageSize: number;
  /** Largest data transfer (MDTS) in bytes. */
  readonly maxTransfer: number;
  /** Volatile write cache enabled (else every write is made durable before it completes). */
  readonly writeCache: boolean;
  readonly namespaces: readonly Namespace[];
  readonly counters: NvmeCounters;
  readonly log: { debug(msg: string): void; warn(msg: string): void };
  /** The fault injector's questions, when the server runs one. */
  readonly faults: DeviceFaultHooks | undefined;
}

export class IoCommands {
  constructor(private readonly host: IoHost) {}

  /** Runs one I/O command; resolves to its status (never rejects). */
  execute(cmd: Command): Status | Promise<Status> {
    const faults = this.host.faults;
    if (faults !== undefined) {
      const injected = faults.blockStatus(nvmeFaultIo(cmd));
      if (injected !== undefined) return injectedStatus(injected);
    }
    try {
      const r = this.run(cmd);
      return typeof r === 'number' ? r : r.catch((e: unknown) => this.statusOf(cmd, e));
    } catch (e) {
      return this.statusOf(cmd, e);
    }
  }

  private statusOf(cmd: Command, e: unknown): Status {
    if (e instanceof NvmeError) {
      this.host.log.debug(`nvme: I/O command 0x${cmd.opcode.toString(16)} cid ${cmd.cid}: ${e.message}`);
      return e.status;
    }
    if (e instanceof DmaFault) {
      this.host.log.debug(`nvme: I/O command 0x${cmd.opcode.toString(16)} cid ${cmd.cid}: ${e.message}`);
      return S.DATA_TRANSFER_ERROR;
    }
    this.host.log.warn(`nvme: I/O command 0x${cmd.opcode.toString(16)} cid ${cmd.cid} failed: ${String((e as Error)?.message ?? e)}`);
    return S.INTERNAL_ERROR;
  }

  private namespace(nsid: number): Namespace {
    const ns = this.host.namespaces[nsid - 1];
    if (!ns || ns.fd < 0) fail(S.INVALID_NAMESPACE, `namespace ${nsid}`);
    return ns;
  }

  private run(cmd: Command): Status | Promise<Status> {
    const c = this.host.counters;
    switch (cmd.opcode) {
      case IoOp.READ:
        c.reads++;
        return this.transfer(cmd, false);
      case IoOp.WRITE:
        c.writes++;
        return this.transfer(cmd, true);
      case IoOp.FLUSH:
        c.flushes++;
        return this.flush(cmd.nsid);
      case IoOp.WRITE_ZEROES:
        c.writeZeroes++;
        return this.writeZeroes(cmd);
      case IoOp.DSM:
        c.dsm++;
        return this.dsm(cmd);
      case IoOp.COMPARE:
        c.compares++;
        return this.compare(cmd);
      default:
        fail(S.INVALID_OPCODE, `I/O opcode 0x${cmd.opcode.toString(16)}`);
    }
  }

  /** The command's block range as (namespace, byte position, byte length), checked. */
  private range(cmd: Command, limit: boolean): { ns: Namespace; pos: number; len: number } {
    const ns = this.namespace(cmd.nsid);
    const slba = iovaOf(cmd.cdw10, cmd.cdw11);
    const nlb = (cmd.cdw12 & 0xffff) + 1;
    const len = nlb * ns.lbaSize;
    if (limit && len > this.host.maxTransfer) fail(S.INVALID_FIELD, `${len} bytes is above MDTS`);
    if (!ns.inRange(slba, nlb)) fail(S.LBA_OUT_OF_RANGE, `blocks [${slba}, +${nlb}) past ${ns.blocks}`);
    return { ns, pos: slba * ns.lbaSize, len };
  }

  private async transfer(cmd: Command, write: boolean): Promise<Status> {
    const { ns, pos, len } = this.range(cmd, true);
    if (write && ns.readonly) fail(S.NAMESPACE_WRITE_PROTECTED, 'write to a read-only namespace');
    const dma = dmaOrFail(this.host.dma);
    const p = mapDataPointer(dma, cmd, len, this.host.pageSize, cmd);
    if (p) await p;
    const fd = ns.fd;
    if (write) {
      await dma.withSpans(cmd.iovas, cmd.lengths, DMA_ACCESS_READ, (list) => writeFull(fd, list, pos, len));
      if (cmd.cdw12 & CDW12_FUA || !this.host.writeCache) await fdatasync(fd);
      this.host.counters.bytesWritten += len;
    } else {
      await dma.withSpans(cmd.iovas, cmd.lengths, DMA_ACCESS_WRITE, (list) => readFull(fd, list, pos, len));
      this.host.counters.bytesRead += len;
    }
    return S.SUCCESS;
  }

  private async flush(nsid: number): Promise<Status> {
    const list = nsid === NSID_ALL ? this.host.namespaces : [this.namespace(nsid)];
    for (const ns of list) if (!ns.readonly && ns.fd >= 0) await fdatasync(ns.fd);
    return S.SUCCESS;
  }

  private async writeZeroes(cmd: Command): Promise<Status> {
    const { ns, pos, len } = this.range(cmd, false);
    if (ns.readonly) fail(S.NAMESPACE_WRITE_PROTECTED, 'write zeroes on a read-only namespace');
    await zeroRange(ns.fd, pos, len, (cmd.cdw12 & CDW12_DEAC) !== 0);
    if (cmd.cdw12 & CDW12_FUA || !this.host.writeCache) await fdatasync(ns.fd);
    return S.SUCCESS;
  }

  private async dsm(cmd: Command): Promise<Status> {
    const ns = this.namespace(cmd.nsid);
    const nr = (cmd.cdw10 & 0xff) + 1;
    const ranges = await copyCommandData(dmaOrFail(this.host.dma), cmd, nr * DSM_RANGE_SIZE, this.host.pageSize);
    if (!(cmd.cdw11 & DSM_DEALLOCATE)) return S.SUCCESS; // access hints only
    if (ns.readonly) fail(S.NAMESPACE_WRITE_PROTECTED, 'deallocate on a read-only namespace');
    const checked: [number, number][] = [];
    for (let i = 0; i < nr; i++) {
      const o = i * DSM_RANGE_SIZE;
      const nlb = ranges.readUInt32LE(o + 4);
      const slba = iovaOf(ranges.readUInt32LE(o + 8), ranges.readUInt32LE(o + 12));
      if (!ns.inRange(slba, nlb)) fail(S.LBA_OUT_OF_RANGE, `deallocate [${slba}, +${nlb}) past ${ns.blocks}`);
      if (nlb > 0) checked.push([slba * ns.lbaSize, nlb * ns.lbaSize]);
    }
    // Where the file system cannot punch holes, deallocate stays the hint the spec allows.
    for (const [pos, len] of checked) if (!(await punchHole(ns.fd, pos, len))) break;
    return S.SUCCESS;
  }

  private async compare(cmd: Command): Promise<Status> {
    const { ns, pos, len } = this.range(cmd, true);
    const guest = await copyCommandData(dmaOrFail(this.host.dma), cmd, len, this.host.pageSize);
    const media = Buffer.alloc(len); // Compare is rare: no pool
    const n = await new Promise<number>((resolve, reject) =>
      fs.read(ns.fd, media, 0, len, pos, (err, bytes) => (err ? reject(err) : resolve(bytes))),
    );
    media.fill(0, n); // past the end of the file reads as zeros
    return media.equals(guest) ? S.SUCCESS : S.COMPARE_FAILURE;
  }


}
