// A command's data pointer → a scatter list of guest IOVA ranges (Base 4.1):
// PRP1/PRP2 and PRP lists (chained across list pages), or an SGL of Data
// Block descriptors reached through Segment and Last Segment descriptors.
// Every loop is bounded by the command's transfer length, which the caller
// has already checked against MDTS. PRP and SGL lists are read with the
// synchronous mapped view where the memory is mapped, else copied through
// DeviceDma; a fault there is a Data Transfer Error.
import { DMA_ACCESS_READ, type DeviceDma } from '../../iommu/device-dma.js';
import { SGL_DESC_SIZE, SglType, S } from './constants.js';
import { fail, NvmeError } from './errors.js';

/** Where a command's data is: filled in place (arrays reused from command to command). */
export interface ScatterList {
  iovas: number[];
  lengths: number[];
}

/** The raw data pointer fields of a command (SQE bytes 24-39) and its PSDT. */
export interface DataPointer {
  /** PSDT: 0 PRPs, else an SGL. */
  psdt: number;
  /** PRP1, or the SGL descriptor's address. */
  prp1: number;
  /** PRP2 (low and high dwords): for an SGL, its length and type byte. */
  prp2Lo: number;
  prp2Hi: number;
}

/** Most descriptors one SGL may have in all (ample for MDTS in 512-byte blocks). */
export const SGL_MAX_DESCRIPTORS = 4096;
/** Largest SGL segment we read at once, in descriptors. */
const SGL_MAX_SEGMENT = 256;

/** An IOVA as a number: the two dwords, or NaN at or above 2^53 (refused as a Data Transfer Error). */
export function iovaOf(lo: number, hi: number): number {
  return hi < 0x200000 ? hi * 0x1_0000_0000 + lo : NaN;
}

function finite(iova: number): number {
  if (!Number.isFinite(iova)) fail(S.DATA_TRANSFER_ERROR, 'IOVA at or above 2^53');
  return iova;
}

function push(out: ScatterList, iova: number, len: number): void {
  finite(iova);
  const n = out.iovas.length;
  // Ranges that continue the previous one make one segment (fewer iovecs).
  if (n > 0 && out.iovas[n - 1]! + out.lengths[n - 1]! === iova) out.lengths[n - 1]! += len;
  else {
    out.iovas.push(iova);
    out.lengths.push(len);
  }
}

/** Bytes of guest memory at `iova` (a PRP or SGL list), or a Data Transfer Error. */
async function readList(dma: DeviceDma, iova: number, bytes: number): Promise<Uint8Array> {
  if (!Number.isFinite(iova)) fail(S.DATA_TRANSFER_ERROR, 'list at an IOVA at or above 2^53');
  const v = dma.mappedView(iova, bytes, DMA_ACCESS_READ);
  // The view is good until this synchronous code ends: copy out of it.
  if (v) return Uint8Array.prototype.slice.call(v);
  try {
    return await dma.read(iova, bytes);
  } catch (e) {
    throw new NvmeError(S.DATA_TRANSFER_ERROR, `cannot read a list at 0x${iova.toString(16)}: ${(e as Error).message}`);
  }
}

const u32 = (b: Uint8Array, o: number) => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
const u64 = (b: Uint8Array, o: number) => iovaOf(u32(b, o), u32(b, o + 4));

/**
 * Fills `out` with the ranges holding `len` bytes (len > 0). `pageSize` is
 * the controller's memory page size (CC.MPS). Throws NvmeError with the
 * spec's status for a malformed pointer.
 */
export function mapDataPointer(dma: DeviceDma, dp: DataPointer, len: number, pageSize: number, out: ScatterList): Promise<void> | void {
  out.iovas.length = 0;
  out.lengths.length = 0;
  if (dp.psdt !== 0) return mapSgl(dma, dp, len, out);
  return mapPrps(dma, dp, len, pageSize, out);
}

function mapPrps(dma: DeviceDma, dp: DataPointer, len: number, ps: number, out: ScatterList): Promise<void> | void {
  const prp1 = dp.prp1;
  finite(prp1);
  if (prp1 % 4 !== 0) fail(S.INVALID_PRP_OFFSET, `PRP1 0x${prp1.toString(16)} is not dword aligned`);
  const first = Math.min(len, ps - (prp1 % ps));
  push(out, prp1, first);
  let rem = len - first;
  if (rem === 0) return;
  const prp2 = iovaOf(dp.prp2Lo, dp.prp2Hi);
  finite(prp2);
  if (rem <= ps) {
    // PRP2 is the second (and last) page.
    if (prp2 % ps !== 0) fail(S.INVALID_PRP_OFFSET, `PRP2 0x${prp2.toString(16)} is not page aligned`);
    push(out, prp2, rem);
    return;
  }
  return walkPrpList(dma, prp2, rem, ps, out);
}

async function walkPrpList(dma: DeviceDma, list: number, rem: number, ps: number, out: ScatterList): Promise<void> {
  let entries = Math.ceil(rem / ps);
  // Each list page holds at least one entry we take, so this bounds the walk.
  while (entries > 0) {
    if (!(list % 8 === 0)) fail(S.INVALID_PRP_OFFSET, `PRP list pointer 0x${list.toString(16)} not 8-byte aligned`);
    const inPage = (ps - (list % ps)) / 8;
    const last = entries <= inPage;
    const take = last ? entries : inPage - 1; // the page's last entry points to the next list page
    if (take < 1) fail(S.INVALID_PRP_OFFSET, 'PRP list pointer at the last entry of a page');
    const b = await readList(dma, list, (last ? take : inPage) * 8);
    for (let i = 0; i < take; i++) {
      const e = finite(u64(b, i * 8));
      if (e % ps !== 0) fail(S.INVALID_PRP_OFFSET, `PRP entry 0x${e.toString(16)} is not page aligned`);
      const n = Math.min(ps, rem);
      push(out, e, n);
      rem -= n;
    }
    entries -= take;
    if (entries > 0) list = finite(u64(b, take * 8));
  }
}

interface Walk {
  rem: number;
  descriptors: number;
}

async function mapSgl(dma: DeviceDma, dp: DataPointer, len: number, out: ScatterList): Promise<void> {
  const w: Walk = { rem: len, descriptors: 1 };
  let addr = dp.prp1;
  let length = dp.prp2Lo;
  let type = dp.prp2Hi >>> 24;
  // The descriptor in the command: a data block, or the first segment.
  if (type >> 4 === SglType.DATA_BLOCK) {
    dataBlock(w, addr, length, type, out);
  } else {
    // Segment lists: each may end with a (Last) Segment descriptor to the next list.
    for (;;) {
      const kind = type >> 4;
      if (kind !== SglType.SEGMENT && kind !== SglType.LAST_SEGMENT) fail(S.SGL_TYPE_INVALID, `SGL descriptor type ${kind}`);
      if ((type & 0xf) !== 0) fail(S.SGL_TYPE_INVALID, `SGL segment subtype ${type & 0xf}`);
      if (length === 0 || length % SGL_DESC_SIZE !== 0) fail(S.INVALID_SGL_COUNT, `SGL segment of ${length} bytes`);
      const count = length / SGL_DESC_SIZE;
      if (count > SGL_MAX_SEGMENT) fail(S.INVALID_SGL_COUNT, `SGL segment of ${count} descriptors`);
      w.descriptors += count;
      if (w.descriptors > SGL_MAX_DESCRIPTORS) fail(S.INVALID_SGL_COUNT, 'too many SGL descriptors');
      const b = await readList(dma, addr, length);
      let next = false;
      for (let i = 0; i < count && w.rem > 0; i++) {
        const o = i * SGL_DESC_SIZE;
        const dAddr = u64(b, o);
        const dLen = u32(b, o + 8);
        const dType = b[o + 15]!;
        const dKind = dType >> 4;
        if (dKind === SglType.SEGMENT || dKind === SglType.LAST_SEGMENT) {
          // Only the last descriptor of a Segment (not a Last Segment) may chain.
          if (kind === SglType.LAST_SEGMENT || i !== count - 1) fail(S.INVALID_SGL_SEGMENT, 'misplaced SGL segment descriptor');
          addr = dAddr;
          length = dLen;
          type = dType;
          next = true;
        } else {
          dataBlock(w, dAddr, dLen, dType, out);
        }
      }
      if (!next || w.rem === 0) break;
    }
  }
  if (w.rem > 0) fail(S.DATA_SGL_LENGTH_INVALID, `the SGL describes ${len - w.rem} of ${len} bytes`);
}

function dataBlock(w: Walk, addr: number, length: number, type: number, out: ScatterList): void {
  if (type >> 4 !== SglType.DATA_BLOCK) fail(S.SGL_TYPE_INVALID, `SGL descriptor type ${type >> 4}`);
  if ((type & 0xf) !== 0) fail(S.SGL_TYPE_INVALID, `SGL data block subtype ${type & 0xf}`);
  const n = Math.min(length, w.rem);
  if (n === 0) return;
  push(out, addr, n);
  w.rem -= n;
}

/** The device's bus-master door; without one (no client, or bus mastering off) the command fails with Data Transfer Error. */
export function dmaOrFail(dma: DeviceDma | undefined): DeviceDma {
  if (!dma) fail(S.DATA_TRANSFER_ERROR, 'no client attached (or bus mastering off)');
  return dma;
}

/** A copy of the first `len` bytes of a command's data (its data pointer mapped into `cmd`'s scatter list first). */
export async function copyCommandData(dma: DeviceDma, cmd: DataPointer & ScatterList, len: number, pageSize: number): Promise<Buffer> {
  const p = mapDataPointer(dma, cmd, len, pageSize, cmd);
  if (p) await p;
  const out = Buffer.allocUnsafe(len);
  await dma.withViews(cmd.iovas, cmd.lengths, DMA_ACCESS_READ, (segs) => {
    let o = 0;
    for (const s of segs) {
      out.set(s, o);
      o += s.length;
    }
  });
  return out;
}
