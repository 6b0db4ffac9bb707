// One dispatcher for the legacy (type1.*) and the new (ioas.*, device.*,
// dirty.*, dma.*) operations. Arguments are plain objects as msgpack decodes
// them; results are plain objects. u64 fields are accepted as number, bigint
// or decimal/0x string, and returned as numbers when <= 2^53-1, else bigint.
// Failures throw VfioUserError (IommuError adds `data`, e.g. EMSGSIZE).
import { VfioUserError, fail } from '../protocol/errno.js';
import { PROT_READ, PROT_WRITE } from '../native/prot.js';
import type { Backing } from './backing.js';
import type { DmaMessenger } from './backing-message.js';
import type { DeviceDma } from './device-dma.js';
import type { Ioas, UnmapResult } from './ioas.js';
import type { Type1Compat } from './type1.js';
import type { MemorySource } from './memory-source.js';
import { IommuError } from './errors.js';
import { VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP } from '../protocol/constants.js';
import { PAGE_SIZE, u64, u64Out, type U64Like } from './u64.js';

export type OpResult = Record<string, unknown>;
type Args = Record<string, unknown>;

/**
 * What the operations act on: the IommuContext, named by its shape so that
 * the context (which owns a dispatcher) and this module do not import each
 * other.
 */
export interface DispatchContext {
  readonly type1: Type1Compat;
  readonly compatIoas: Ioas;
  allocIoas(): Ioas;
  getIoas(id: number): Ioas;
  destroy(id: number): UnmapResult;
  compatSet(id: number): void;
  compatClear(): void;
  deviceList(): { info(): Record<string, unknown> }[];
  dma(name: string): DeviceDma;
  attach(name: string, ioasId: number, pasid?: number): void;
  replace(name: string, ioasId: number, pasid?: number): void;
  detach(name: string, pasid?: number): void;
  mapMemory(ioasId: number, req: { length: U64Like; iova?: U64Like; prot: number } & MemorySource): bigint;
  copy(req: { srcIoasId: number; srcIova: U64Like; length: U64Like; dstIoasId: number; dstIova?: U64Like; prot?: number }): bigint;
  info(): Record<string, unknown>;
}

type Op = (ctx: DispatchContext, a: Args) => OpResult | Promise<OpResult>;

/** Largest dma.read / dma.write, and largest dirty bitmap, through the dispatcher. */
export const DMA_OP_MAX = 64 * 1024 * 1024;

export class IommuDispatcher {
  constructor(private readonly ctx: DispatchContext) {}

  /** Names of every operation. */
  static get ops(): string[] {
    return Object.keys(OPS);
  }

  async dispatch(op: string, args: Args = {}): Promise<OpResult> {
    const f = Object.prototype.hasOwnProperty.call(OPS, op) ? OPS[op] : undefined;
    if (!f) throw fail('ENOSYS', `unknown operation ${JSON.stringify(op)}`);
    if (args === null || typeof args !== 'object') throw fail('EINVAL', 'arguments must be an object');
    try {
      return await f(this.ctx, args);
    } catch (e) {
      if (e instanceof VfioUserError) throw e;
      throw fail('EIO', `${op}: ${(e as Error)?.message ?? String(e)}`);
    }
  }
}

// ---- argument parsing ----------------------------------------------------------

function req(a: Args, k: string): unknown {
  if (a[k] === undefined || a[k] === null) throw fail('EINVAL', `missing argument ${k}`);
  return a[k];
}

function int(a: Args, k: string, max = 0xffffffff): number {
  const v = req(a, k);
  const n = typeof v === 'bigint' ? Number(v) : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > max) throw fail('EINVAL', `${k} must be an integer in [0, ${max}]`);
  return n;
}

function optInt(a: Args, k: string, max?: number): number | undefined {
  return a[k] === undefined || a[k] === null ? undefined : int(a, k, max);
}

function big(a: Args, k: string): bigint {
  return u64(req(a, k), k);
}

function optBig(a: Args, k: string): bigint | undefined {
  return a[k] === undefined || a[k] === null ? undefined : u64(a[k], k);
}

function bool(a: Args, k: string, dflt: boolean): boolean {
  const v = a[k];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw fail('EINVAL', `${k} must be a boolean`);
  return v;
}

function str(a: Args, k: string): string {
  const v = req(a, k);
  if (typeof v !== 'string' || v.length === 0) throw fail('EINVAL', `${k} must be a string`);
  return v;
}

function pasid(a: Args): number | undefined {
  return optInt(a, 'pasid', (1 << 20) - 1);
}

/** readable / writeable booleans (default both) → PROT_* */
function prot(a: Args): number {
  const w = a.writeable !== undefined ? bool(a, 'writeable', true) : bool(a, 'writable', true);
  return (bool(a, 'readable', true) ? PROT_READ : 0) | (w ? PROT_WRITE : 0);
}

function bytes(a: Args, k: string): Uint8Array {
  const v = req(a, k);
  if (v instanceof Uint8Array) return v;
  if (Array.isArray(v) && v.length > DMA_OP_MAX) throw fail('EINVAL', `${k}: more than ${DMA_OP_MAX} bytes`);
  if (Array.isArray(v) && v.every((x) => Number.isInteger(x) && x >= 0 && x <= 255)) return Uint8Array.from(v as number[]);
  if (typeof v === 'string' && /^([0-9a-f]{2})*$/i.test(v)) return Buffer.from(v, 'hex');
  throw fail('EINVAL', `${k} must be bytes, an array of bytes or a hex string`);
}

/** In-process callers may pass a backing, an fd or a messenger; remote ones a file or nothing. */
function source(a: Args): MemorySource {
  const s: MemorySource = {};
  if (a.backing !== undefined) s.backing = a.backing as Backing;
  if (a.fd !== undefined) s.fd = int(a, 'fd', 0x7fffffff);
  if (a.messenger !== undefined) s.messenger = a.messenger as DmaMessenger;
  if (a.messageBase !== undefined) s.messageBase = big(a, 'messageBase');
  if (a.file !== undefined) s.file = str(a, 'file');
  if (a.offset !== undefined) s.offset = int(a, 'offset', Number.MAX_SAFE_INTEGER);
  return s;
}

function ioasId(a: Args, k = 'ioasId'): number {
  return int(a, k);
}

function rangesOut(list: { start: bigint; last: bigint }[]): { start: number | bigint; last: number | bigint }[] {
  return list.map((r) => ({ start: u64Out(r.start), last: u64Out(r.last) }));
}

// ---- operations ------------------------------------------------------------------

const OPS: Record<string, Op> = {
  // -- IOAS (iommufd) --
  'ioas.alloc': (ctx) => ({ ioasId: ctx.allocIoas().id }),

  'ioas.destroy': async (ctx, a) => {
    await ctx.destroy(ioasId(a)).drained;
    return {};
  },

  'ioas.map': (ctx, a) => {
    const iova = ctx.mapMemory(ioasId(a), { length: big(a, 'length'), iova: optBig(a, 'iova'), prot: prot(a), ...source(a) });
    return { iova: u64Out(iova) };
  },

  'ioas.unmap': async (ctx, a) => {
    const r = ctx.getIoas(ioasId(a)).unmap(big(a, 'iova'), big(a, 'length'));
    await r.drained;
    return { length: u64Out(r.length) };
  },

  'ioas.copy': (ctx, a) => {
    // No rights given: each new area keeps the rights of its source area.
    const given = ['readable', 'writeable', 'writable'].some((k) => a[k] !== undefined && a[k] !== null);
    const dst = ctx.copy({
      srcIoasId: ioasId(a, 'srcIoasId'),
      srcIova: big(a, 'srcIova'),
      length: big(a, 'length'),
      dstIoasId: ioasId(a, 'dstIoasId'),
      dstIova: optBig(a, 'dstIova'),
      prot: given ? prot(a) : undefined,
    });
    return { dstIova: u64Out(dst) };
  },

  'ioas.iovaRanges': (ctx, a) => {
    const r = ctx.getIoas(ioasId(a)).iovaRanges(optInt(a, 'numIovas'));
    return { ranges: rangesOut(r.ranges), alignment: r.alignment };
  },

  'ioas.allowIovas': (ctx, a) => {
    const list = a.ranges ?? [];
    if (!Array.isArray(list)) throw fail('EINVAL', 'ranges must be an array of {start, last}');
    ctx.getIoas(ioasId(a)).allowIovas(list as { start: bigint; last: bigint }[]);
    return {};
  },

  'ioas.addReserved': (ctx, a) => {
    const start = big(a, 'start');
    const last = a.last !== undefined ? big(a, 'last') : start + big(a, 'length') - 1n;
    ctx.getIoas(ioasId(a)).addReserved(start, last, typeof a.owner === 'string' ? a.owner : 'user');
    return {};
  },

  'ioas.removeReserved': (ctx, a) => {
    ctx.getIoas(ioasId(a)).removeReserved(typeof a.owner === 'string' ? a.owner : 'user');
    return {};
  },

  'ioas.list': (ctx, a) => {
    const ioas = ctx.getIoas(ioasId(a));
    return {
      ioasId: ioas.id,
      users: ioas.users,
      dirtyTracking: ioas.dirtyTracking,
      areas: ioas.list().map((x) => ({ ...x, iova: u64Out(x.iova), backing: plain(x.backing) })),
      reserved: ioas.reservedRanges.map((r) => ({ start: u64Out(r.start), last: u64Out(r.last), owner: r.owner })),
      allowed: rangesOut(ioas.allowedRanges),
    };
  },

  'context.info': (ctx) => plain(ctx.info()) as OpResult,

  // -- compat IOAS (IOMMU_VFIO_IOAS) --
  'compat.get': (ctx) => ({ ioasId: ctx.compatIoas.id }),
  'compat.set': (ctx, a) => {
    ctx.compatSet(ioasId(a));
    return {};
  },
  'compat.clear': (ctx) => {
    ctx.compatClear();
    return {};
  },

  // -- devices --
  'device.list': (ctx) => ({ devices: ctx.deviceList().map((d) => d.info()) }),
  'device.attach': (ctx, a) => {
    ctx.attach(str(a, 'device'), ioasId(a), pasid(a));
    return {};
  },
  'device.replace': (ctx, a) => {
    ctx.replace(str(a, 'device'), ioasId(a), pasid(a));
    return {};
  },
  'device.detach': (ctx, a) => {
    ctx.detach(str(a, 'device'), pasid(a));
    return {};
  },

  // -- legacy type1 on the compat IOAS --
  'type1.map': (ctx, a) => {
    // PROT_READ / PROT_WRITE are the VFIO_DMA_MAP_FLAG_* bits.
    const flags = a.flags !== undefined ? int(a, 'flags') : prot(a);
    ctx.type1.map({ iova: big(a, 'iova'), size: big(a, 'size'), flags, ...source(a) });
    return {};
  },
  'type1.unmap': async (ctx, a) => {
    const flags = optInt(a, 'flags') ?? 0;
    const size = big(a, 'size');
    const bitmapPgsize = optInt(a, 'bitmapPgsize');
    if (flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) checkBitmapReply(size, bitmapPgsize);
    const r = ctx.type1.unmap({ iova: big(a, 'iova'), size, flags, bitmapPgsize });
    await r.drained;
    return r.bitmap ? { size: u64Out(r.size), bitmap: r.bitmap } : { size: u64Out(r.size) };
  },
  'type1.getInfo': (ctx) => {
    const info = ctx.type1.getInfo();
    return plain(info) as OpResult;
  },
  'type1.dirtyPages': (ctx, a) => {
    const flags = int(a, 'flags');
    const size = optBig(a, 'size');
    const pgsize = optInt(a, 'pgsize');
    if (flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP && size !== undefined) checkBitmapReply(size, pgsize);
    const r = ctx.type1.dirtyPages({ flags, iova: optBig(a, 'iova'), size, pgsize });
    return r.bitmap ? { bitmap: r.bitmap } : {};
  },

  // -- dirty tracking per IOAS (default: the compat IOAS) --
  'dirty.start': (ctx, a) => {
    dirtyIoas(ctx, a).dirtyStart();
    return {};
  },
  'dirty.stop': (ctx, a) => {
    dirtyIoas(ctx, a).dirtyStop();
    return {};
  },
  'dirty.report': (ctx, a) => {
    const pgsize = optInt(a, 'pgsize') ?? PAGE_SIZE;
    const length = big(a, 'length');
    checkBitmapReply(length, pgsize);
    const bitmap = dirtyIoas(ctx, a).dirtyReport(big(a, 'iova'), length, pgsize, bool(a, 'clear', true));
    return { bitmap, pgsize };
  },

  // -- a DMA as device X (PASID P) would do it --
  'dma.read': async (ctx, a) => {
    const length = int(a, 'length', DMA_OP_MAX);
    const data = await ctx.dma(str(a, 'device')).read(big(a, 'iova'), length, pasid(a));
    return { data };
  },
  'dma.write': async (ctx, a) => {
    const data = bytes(a, 'data');
    if (data.length > DMA_OP_MAX) throw fail('EINVAL', 'data too large');
    await ctx.dma(str(a, 'device')).write(big(a, 'iova'), data, pasid(a));
    return {};
  },
};

/**
 * A dirty bitmap of `length` bytes at `pgsize` must fit DMA_OP_MAX: checked
 * before anything is allocated (bad page sizes are left to the operation).
 */
function checkBitmapReply(length: bigint, pgsize: number | undefined): void {
  if (pgsize === undefined || pgsize <= 0) return;
  const bytes = ((length / BigInt(pgsize) + 63n) / 64n) * 8n;
  if (bytes > BigInt(DMA_OP_MAX)) {
    throw new IommuError('EINVAL', `a dirty bitmap of ${bytes} bytes is above the ${DMA_OP_MAX}-byte limit`, {
      bitmapBytes: u64Out(bytes),
      max: DMA_OP_MAX,
    });
  }
}

function dirtyIoas(ctx: DispatchContext, a: Args) {
  return a.ioasId === undefined || a.ioasId === null ? ctx.compatIoas : ctx.getIoas(ioasId(a));
}

/** Results travel as msgpack: u64 bigints that fit become numbers. */
function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return u64Out(v);
  if (v instanceof Uint8Array || v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(plain);
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = plain(x);
  return out;
}
