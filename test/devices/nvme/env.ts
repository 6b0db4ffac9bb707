// Test side of the NVMe controller: a register-level driver that brings the
// controller up through BAR0 and builds submission and completion queues by
// hand in guest memory (a real IommuContext and DeviceDma, as in the virtio
// tests), submits 64-byte entries and reads 16-byte completions by their
// phase tag.
import type { DeviceFaultHooks } from '../../../devices/fault-hooks.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NvmeController, type NvmeOptions } from '../../../devices/nvme/index.js';
import { Reg } from '../../../devices/nvme/constants.js';
import { cfgWrite, fakeFds, type FakeFds } from '../helpers.js';
import { makeGuest, recordingLog, type Guest } from '../virtio/env.js';

export { makeGuest, makeMessageGuest, until, turns, enableMsix } from '../virtio/env.js';

export const PAGE = 4096;

/** A temp folder for images, removed at exit. */
export function tempDir(t: { teardown(fn: () => void): void }): () => string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvme-unit-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  return () => path.join(dir, `disk${n++}.img`);
}

/** One submission entry as the test writes it (missing fields are zero). */
export interface Sqe {
  opcode: number;
  flags?: number;
  cid?: number;
  nsid?: number;
  prp1?: number;
  prp2?: number;
  /** A whole SGL descriptor in bytes 24-39 instead of PRP1/PRP2. */
  sgl?: { addr: number; length: number; type: number };
  cdw10?: number;
  cdw11?: number;
  cdw12?: number;
  cdw13?: number;
  cdw14?: number;
  cdw15?: number;
}

export interface Cqe {
  dw0: number;
  sqHead: number;
  sqid: number;
  cid: number;
  /** Status field without the phase bit. */
  status: number;
  phase: number;
}

/** A queue pair as the driver keeps it. */
export class QueuePair {
  sqTail = 0;
  cqHead = 0;
  phase = 1;
  nextCid = 1;
  constructor(
    readonly qid: number,
    readonly sqBase: number,
    readonly sqSize: number,
    readonly cqBase: number,
    readonly cqSize: number,
  ) {}
}

export class NvmeDriver {
  readonly admin: QueuePair;

  constructor(
    readonly ctrl: NvmeController,
    readonly g: Guest,
    adminEntries = 32,
  ) {
    const sq = g.mem.alloc(adminEntries * 64, PAGE);
    const cq = g.mem.alloc(adminEntries * 16, PAGE);
    this.admin = new QueuePair(0, sq, adminEntries, cq, adminEntries);
  }

  async read32(off: number): Promise<number> {
    return (await this.ctrl.device.regionRead(0, off, 4)).readUInt32LE(0);
  }

  async read64(off: number): Promise<bigint> {
    return (await this.ctrl.device.regionRead(0, off, 8)).readBigUInt64LE(0);
  }

  write32(off: number, v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    void this.ctrl.device.regionWrite(0, off, b);
  }

  write64(off: number, v: number): void {
    // As the Linux driver does: two dword writes, low first.
    this.write32(off, v % 2 ** 32);
    this.write32(off + 4, Math.floor(v / 2 ** 32));
  }

  /** Program AQA/ASQ/ACQ and set CC (EN, 4 KiB pages, 64/16-byte entries by default). */
  enable(cc = 0x00460001): void {
    const a = this.admin;
    this.write32(Reg.AQA, ((a.cqSize - 1) << 16) | (a.sqSize - 1));
    this.write64(Reg.ASQ, a.sqBase);
    this.write64(Reg.ACQ, a.cqBase);
    this.write32(Reg.CC, cc);
  }

  async csts(): Promise<number> {
    return this.read32(Reg.CSTS);
  }

  /** Write one entry at the SQ tail (no doorbell). */
  put(q: QueuePair, e: Sqe): number {
    const cid = e.cid ?? q.nextCid++ & 0xffff;
    const at = q.sqBase + q.sqTail * 64;
    const v = this.g.mem.view(at, 64);
    v.fill(0);
    const dv = this.g.mem.dv(at, 64);
    dv.setUint8(0, e.opcode);
    dv.setUint8(1, e.flags ?? 0);
    dv.setUint16(2, cid, true);
    dv.setUint32(4, e.nsid ?? 0, true);
    if (e.sgl) {
      dv.setBigUint64(24, BigInt(e.sgl.addr), true);
      dv.setUint32(32, e.sgl.length, true);
      dv.setUint8(39, e.sgl.type);
    } else {
      dv.setBigUint64(24, BigInt(e.prp1 ?? 0), true);
      dv.setBigUint64(32, BigInt(e.prp2 ?? 0), true);
    }
    const dws = [e.cdw10, e.cdw11, e.cdw12, e.cdw13, e.cdw14, e.cdw15];
    dws.forEach((d, i) => dv.setUint32(40 + 4 * i, (d ?? 0) >>> 0, true));
    q.sqTail = (q.sqTail + 1) % q.sqSize;
    return cid;
  }

  ring(q: QueuePair): void {
    this.write32(Reg.DBS + 8 * q.qid, q.sqTail);
  }

  /** The next completion, if its phase says it is there. */
  peek(q: QueuePair): Cqe | undefined {
    const dv = this.g.mem.dv(q.cqBase + q.cqHead * 16, 16);
    const sf = dv.getUint16(14, true);
    if ((sf & 1) !== q.phase) return undefined;
    return { dw0: dv.getUint32(0, true), sqHead: dv.getUint16(8, true), sqid: dv.getUint16(10, true), cid: dv.getUint16(12, true), status: sf >> 1, phase: sf & 1 };
  }

  /** Wait for the next completion, consume it and ring the CQ head doorbell. */
  async reap(q: QueuePair, ms = 5000): Promise<Cqe> {
    const end = Date.now() + ms;
    for (;;) {
      const c = this.peek(q);
      if (c) {
        q.cqHead++;
        if (q.cqHead === q.cqSize) {
          q.cqHead = 0;
          q.phase ^= 1;
        }
        this.write32(Reg.DBS + 8 * q.qid + 4, q.cqHead);
        return c;
      }
      if (Date.now() > end) throw new Error(`no completion on queue ${q.qid}`);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /** Submit, ring, wait: the completion. */
  async cmd(q: QueuePair, e: Sqe): Promise<Cqe> {
    this.put(q, e);
    this.ring(q);
    return this.reap(q);
  }

  /** Create I/O CQ and SQ `qid` of `entries` entries (interrupts on vector qid). */
  async createIoQueues(qid: number, entries: number): Promise<QueuePair> {
    const sq = this.g.mem.alloc(entries * 64, PAGE);
    const cq = this.g.mem.alloc(entries * 16, PAGE);
    const c1 = await this.cmd(this.admin, { opcode: 0x05, prp1: cq, cdw10: ((entries - 1) << 16) | qid, cdw11: (qid << 16) | 3 });
    if (c1.status !== 0) throw new Error(`create CQ ${qid}: status 0x${c1.status.toString(16)}`);
    const c2 = await this.cmd(this.admin, { opcode: 0x01, prp1: sq, cdw10: ((entries - 1) << 16) | qid, cdw11: (qid << 16) | 1 });
    if (c2.status !== 0) throw new Error(`create SQ ${qid}: status 0x${c2.status.toString(16)}`);
    return new QueuePair(qid, sq, entries, cq, entries);
  }
}

export interface Env {
  ctrl: NvmeController;
  drv: NvmeDriver;
  g: Guest;
  fds: FakeFds;
  log: ReturnType<typeof recordingLog>;
  disks: string[];
}

/** A controller on fresh images, attached to guest memory, bus mastering on; enabled unless `enable: false`. */
export async function make(
  t: { teardown(fn: () => void): void },
  image: () => string,
  opts: Partial<NvmeOptions> & { guest?: Guest; enable?: boolean; images?: number; faults?: DeviceFaultHooks } = {},
): Promise<Env> {
  const disks = opts.disks ?? Array.from({ length: opts.images ?? 1 }, image);
  const fds = fakeFds();
  const ctrl = new NvmeController({ size: 1 << 20, ...opts, disks, fdOps: fds.ops });
  t.teardown(() => ctrl.close());
  const g = opts.guest ?? makeGuest();
  const log = recordingLog();
  ctrl.device.attachClient({ dma: g.dma, log, faults: opts.faults });
  cfgWrite(ctrl.device, 4, 2, 0x6); // memory space + bus master
  const drv = new NvmeDriver(ctrl, g);
  if (opts.enable !== false) {
    drv.enable();
    if (((await drv.csts()) & 3) !== 1) throw new Error('controller did not become ready');
  }
  return { ctrl, drv, g, fds, log, disks };
}

/** Status values as the tests compare them (SCT << 8 | SC, DNR bit 14). */
export const DNR = 1 << 14;
export const sc = (sct: number, code: number, dnr = true) => (sct << 8) | code | (dnr ? DNR : 0);
