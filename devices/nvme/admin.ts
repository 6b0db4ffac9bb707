// Admin commands (Base 5): one handler per opcode. Each returns the
// command's status (completion dword 0 goes in cmd.result) or throws an
// NvmeError; anything not listed is Invalid Command Opcode. Admin commands
// use PRPs only (PSDT 00b).
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, DmaFault, type DeviceDma } from '../../iommu/device-dma.js';
import {
  AdminOp,
  Cns,
  CSI_NVM,
  Fid,
  NSID_ALL,
  S,
  type Status,
} from './constants.js';
import { iovaOf, mapDataPointer } from './data-pointer.js';
import { fail, NvmeError } from './errors.js';
import type { AsyncEvents } from './events.js';
import { Features } from './features.js';
import {
  activeNamespaceList,
  emptyIdentify,
  identifyController,
  identifyNamespace,
  namespaceDescriptors,
  type ControllerIdentity,
} from './identify.js';
import { logPage, type HealthInputs } from './log-pages.js';
import type { Namespace } from './namespace.js';
import type { Command, CompletionQueue, SubmissionQueue } from './queues.js';

/** What admin commands need from the controller. */
export interface AdminHost {
  readonly dma: DeviceDma | undefined;
  readonly pageSize: number;
  readonly identity: ControllerIdentity;
  readonly namespaces: readonly Namespace[];
  readonly features: Features;
  readonly events: AsyncEvents;
  /** I/O queue pairs the controller has (queue ids 1..maxQueues). */
  readonly maxQueues: number;
  /** Largest queue in entries (CAP.MQES + 1). */
  readonly maxQueueEntries: number;
  /** MSI-X vectors. */
  readonly vectors: number;
  readonly log: { debug(msg: string): void; warn(msg: string): void };
  sq(id: number): SubmissionQueue | undefined;
  cq(id: number): CompletionQueue | undefined;
  createCq(id: number, base: number, size: number, ien: boolean, vector: number): void;
  createSq(id: number, base: number, size: number, cq: CompletionQueue): void;
  /** Resolves once the queue's in-flight commands completed and it is gone. */
  deleteSq(sq: SubmissionQueue): Promise<void> | void;
  deleteCq(cq: CompletionQueue): void;
  /** Doorbell Buffer Config: shadow doorbells at `dbs`, EventIdx at `eis`. */
  configureShadowDoorbells(dbs: number, eis: number): void;
  health(): HealthInputs;
}

export class AdminCommands {
  constructor(private readonly host: AdminHost) {}

  /** Runs one admin command; resolves to its status (never rejects). */
  execute(cmd: Command): Status | Promise<Status> {
    try {
      const r = this.run(cmd);
      return typeof r === 'number' ? r : r.catch((e: unknown) => this.statusOf(cmd, e));
    } catch (e) {
      return this.statusOf(cmd, e);
    }
  }

  private statusOf(cmd: Command, e: unknown): Status {
    const what = `nvme: admin command 0x${cmd.opcode.toString(16)} cid ${cmd.cid}`;
    if (e instanceof NvmeError) {
      this.host.log.debug(`${what}: ${e.message}`);
      return e.status;
    }
    if (e instanceof DmaFault) {
      this.host.log.debug(`${what}: ${e.message}`);
      return S.DATA_TRANSFER_ERROR;
    }
    this.host.log.warn(`${what} failed: ${String((e as Error)?.message ?? e)}`);
    return S.INTERNAL_ERROR;
  }

  private run(cmd: Command): Status | Promise<Status> {
    if (cmd.psdt !== 0) fail(S.INVALID_FIELD, 'admin commands take PRPs only');
    switch (cmd.opcode) {
      case AdminOp.DELETE_SQ:
        return this.deleteSq(cmd);
      case AdminOp.CREATE_SQ:
        return this.createSq(cmd);
      case AdminOp.GET_LOG_PAGE:
        return this.getLogPage(cmd);
      case AdminOp.DELETE_CQ:
        return this.deleteCq(cmd);
      case AdminOp.CREATE_CQ:
        return this.createCq(cmd);
      case AdminOp.IDENTIFY:
        return this.identify(cmd);
      case AdminOp.ABORT:
        cmd.result = 1; // best effort, and we never abort: "command not aborted"
        return S.SUCCESS;
      case AdminOp.SET_FEATURES:
        return this.setFeatures(cmd);
      case AdminOp.GET_FEATURES:
        return this.getFeatures(cmd);
      case AdminOp.ASYNC_EVENT:
        return this.host.events.request((dw0) => (cmd.result = dw0));
      case AdminOp.DOORBELL_BUFFER_CONFIG:
        return this.doorbellBufferConfig(cmd);
      default:
        fail(S.INVALID_OPCODE, 'not an admin command we have');
    }
  }

  // ---- queues ----

  private queueId(cmd: Command): number {
    const qid = cmd.cdw10 & 0xffff;
    if (qid === 0 || qid > this.host.maxQueues) fail(S.INVALID_QID, `queue id ${qid}`);
    return qid;
  }

  private queueBase(cmd: Command): number {
    // CAP.CQR: queues are physically contiguous, PC must be set, the base page aligned.
    if (!(cmd.cdw11 & 1)) fail(S.INVALID_FIELD, 'queue not physically contiguous');
    const base = cmd.prp1;
    if (!Number.isFinite(base) || base % this.host.pageSize !== 0) fail(S.INVALID_PRP_OFFSET, 'queue base not page aligned');
    return base;
  }

  private queueSize(cmd: Command): number {
    const entries = (cmd.cdw10 >>> 16) + 1;
    if (entries < 2 || entries > this.host.maxQueueEntries) fail(S.INVALID_QUEUE_SIZE, `${entries} entries`);
    return entries;
  }

  private createCq(cmd: Command): Status {
    const qid = this.queueId(cmd);
    if (this.host.cq(qid)) fail(S.INVALID_QID, `completion queue ${qid} exists`);
    const size = this.queueSize(cmd);
    const base = this.queueBase(cmd);
    const ien = (cmd.cdw11 & 2) !== 0;
    const iv = cmd.cdw11 >>> 16;
    if (iv >= this.host.vectors) fail(S.INVALID_VECTOR, `interrupt vector ${iv}`);
    this.host.createCq(qid, base, size, ien, iv);
    return S.SUCCESS;
  }

  private createSq(cmd: Command): Status {
    const qid = this.queueId(cmd);
    if (this.host.sq(qid)) fail(S.INVALID_QID, `submission queue ${qid} exists`);
    const size = this.queueSize(cmd);
    const base = this.queueBase(cmd);
    const cqid = cmd.cdw11 >>> 16;
    const cq = cqid === 0 ? undefined : this.host.cq(cqid);
    if (!cq) fail(S.CQ_INVALID, `completion queue ${cqid}`);
    this.host.createSq(qid, base, size, cq);
    return S.SUCCESS;
  }

  private async deleteSq(cmd: Command): Promise<Status> {
    const qid = this.queueId(cmd);
    const sq = this.host.sq(qid);
    if (!sq) fail(S.INVALID_QID, `no submission queue ${qid}`);
    await this.host.deleteSq(sq);
    return S.SUCCESS;
  }

  private deleteCq(cmd: Command): Status {
    const qid = this.queueId(cmd);
    const cq = this.host.cq(qid);
    if (!cq) fail(S.INVALID_QID, `no completion queue ${qid}`);
    if (cq.users > 0) fail(S.INVALID_QUEUE_DELETION, `completion queue ${qid} still has submission queues`);
    this.host.deleteCq(cq);
    return S.SUCCESS;
  }

  // ---- data transfers ----

  /** Copy `data` to the command's buffer (PRPs for data.length bytes). */
  private async sendData(cmd: Command, data: Buffer): Promise<void> {
    const dma = this.dmaOf();
    const p = mapDataPointer(dma, cmd, data.length, this.host.pageSize, cmd);
    if (p) await p;
    await dma.withViews(cmd.iovas, cmd.lengths, DMA_ACCESS_WRITE, (segs) => {
      let o = 0;
      for (const s of segs) {
        s.set(data.subarray(o, o + s.length));
        o += s.length;
      }
    });
  }

  /** The command's `len` bytes of data. */
  private async receiveData(cmd: Command, len: number): Promise<Buffer> {
    const dma = this.dmaOf();
    const p = mapDataPointer(dma, cmd, len, this.host.pageSize, cmd);
    if (p) await p;
    const out = Buffer.alloc(len);
    await dma.withViews(cmd.iovas, cmd.lengths, DMA_ACCESS_READ, (segs) => {
      let o = 0;
      for (const s of segs) {
        out.set(s, o);
        o += s.length;
      }
    });
    return out;
  }

  private dmaOf(): DeviceDma {
    const dma = this.host.dma;
    if (!dma) fail(S.DATA_TRANSFER_ERROR, 'no client attached (or bus mastering off)');
    return dma;
  }

  // ---- identify ----

  private namespace(nsid: number): Namespace {
    const ns = this.host.namespaces[nsid - 1];
    if (nsid === 0 || !ns) fail(S.INVALID_NAMESPACE, `namespace ${nsid}`);
    return ns;
  }

  private async identify(cmd: Command): Promise<Status> {
    const cns = cmd.cdw10 & 0xff;
    const csi = cmd.cdw11 >>> 24;
    const h = this.host;
    let data: Buffer;
    switch (cns) {
      case Cns.NAMESPACE:
        data = identifyNamespace(this.namespace(cmd.nsid));
        break;
      case Cns.CONTROLLER:
        data = identifyController(h.identity, h.namespaces.length);
        break;
      case Cns.ACTIVE_NS_LIST:
      case Cns.CSI_ACTIVE_NS_LIST:
        if (cns === Cns.CSI_ACTIVE_NS_LIST && csi !== CSI_NVM) fail(S.INVALID_FIELD, `command set ${csi}`);
        if (cmd.nsid >= 0xfffffffe) fail(S.INVALID_NAMESPACE, `namespace list after ${cmd.nsid}`);
        data = activeNamespaceList(h.namespaces, cmd.nsid);
        break;
      case Cns.NS_DESCRIPTORS:
        data = namespaceDescriptors(this.namespace(cmd.nsid));
        break;
      case Cns.CSI_NAMESPACE:
        if (csi !== CSI_NVM) fail(S.INVALID_FIELD, `command set ${csi}`);
        this.namespace(cmd.nsid);
        data = emptyIdentify();
        break;
      case Cns.CSI_CONTROLLER:
        if (csi !== CSI_NVM) fail(S.INVALID_FIELD, `command set ${csi}`);
        data = emptyIdentify();
        break;
      default:
        fail(S.INVALID_FIELD, `CNS 0x${cns.toString(16)}`);
    }
    await this.sendData(cmd, data);
    return S.SUCCESS;
  }

  // ---- features ----

  private featureNamespace(cmd: Command): void {
    // Every feature here is controller-wide: NSID 0 or FFFFFFFFh.
    if (cmd.nsid !== 0 && cmd.nsid !== NSID_ALL) {
      this.namespace(cmd.nsid);
    }
  }

  private async getFeatures(cmd: Command): Promise<Status> {
    this.featureNamespace(cmd);
    const fid = cmd.cdw10 & 0xff;
    const sel = (cmd.cdw10 >>> 8) & 0x7;
    const r = this.host.features.get(fid, cmd.cdw11, sel);
    if (r.data) await this.sendData(cmd, r.data);
    cmd.result = r.dw0;
    return S.SUCCESS;
  }

  private async setFeatures(cmd: Command): Promise<Status> {
    this.featureNamespace(cmd);
    const fid = cmd.cdw10 & 0xff;
    if (cmd.cdw10 >>> 31) fail(S.FEATURE_NOT_SAVEABLE, `feature 0x${fid.toString(16)} is not saveable`);
    const data = Features.movesData(fid) ? await this.receiveData(cmd, 8) : undefined;
    if (fid === Fid.NUMBER_OF_QUEUES && this.anyIoQueue()) {
      // Allowed only before I/O queues exist; the grant stays what it was.
      cmd.result = this.host.features.get(fid, 0, 0).dw0;
      fail(S.COMMAND_SEQUENCE_ERROR, 'number of queues set with I/O queues in place');
    }
    cmd.result = this.host.features.set(fid, cmd.cdw11, data);
    return S.SUCCESS;
  }

  private anyIoQueue(): boolean {
    for (let q = 1; q <= this.host.maxQueues; q++) if (this.host.sq(q) || this.host.cq(q)) return true;
    return false;
  }

  // ---- log pages ----

  private async getLogPage(cmd: Command): Promise<Status> {
    const lid = cmd.cdw10 & 0xff;
    // NUMDU:NUMDL, 0's based dwords (up to 2^32: kept in floating point, checked below).
    const numd = (cmd.cdw11 & 0xffff) * 0x10000 + (cmd.cdw10 >>> 16) + 1;
    const len = numd * 4;
    const offset = iovaOf(cmd.cdw12, cmd.cdw13);
    if (offset % 4 !== 0) fail(S.INVALID_FIELD, 'log page offset not dword aligned');
    const page = logPage(lid, this.host.health());
    if (!page) fail(S.INVALID_LOG_PAGE, `log page 0x${lid.toString(16)}`);
    if (offset > page.length) fail(S.INVALID_FIELD, `offset ${offset} past the log page`);
    if (len > 1 << 20) fail(S.INVALID_FIELD, `log page read of ${len} bytes`);
    const out = Buffer.alloc(len);
    page.copy(out, 0, offset, Math.min(page.length, offset + len));
    await this.sendData(cmd, out);
    return S.SUCCESS;
  }

  // ---- shadow doorbells ----

  private doorbellBufferConfig(cmd: Command): Status {
    const dbs = cmd.prp1;
    const eis = iovaOf(cmd.prp2Lo, cmd.prp2Hi);
    const ps = this.host.pageSize;
    if (!Number.isFinite(dbs) || !Number.isFinite(eis) || dbs % ps !== 0 || eis % ps !== 0) {
      fail(S.INVALID_FIELD, 'shadow doorbell buffers must be page aligned');
    }
    this.host.configureShadowDoorbells(dbs, eis);
    return S.SUCCESS;
  }
}
