// DeviceDma for one registered device: every access is translated through
// the IOAS its RID (or PASID) is attached to, checked against the mapping's
// rights, and holds the areas it uses until done (so an unmap in between
// defers the real munmap and its drained promise waits for us).
import { VfioUserError } from '../protocol/errno.js';
import type { Area } from './area.js';
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, DmaFault, type DeviceDma, type Iova, type MappedWindow, type SpanBuffer, type SpanList } from './device-dma.js';
import { markDirty } from './dirty.js';
import type { Ioas } from './ioas.js';
import { TWO_POW_64 } from './u64.js';
import { U64_MAX } from '../protocol/wire.js';

/** What the port needs to know of its device. */
export interface DmaTarget {
  readonly name: string;
  ioasFor(pasid?: number): Ioas | null;
}

const isThenable = <T>(v: T | Promise<T>): v is Promise<T> => typeof (v as { then?: unknown } | null)?.then === 'function';

/** One view per span (what withViews hands out). */
function viewsOf(list: SpanList): Uint8Array[] {
  const { buffers, spans, count } = list;
  const views = new Array<Uint8Array>(count);
  // new Uint8Array(buffer, ...) costs half of subarray() per view.
  for (let i = 0; i < count; i++) views[i] = new Uint8Array(buffers[spans[3 * i]!]!, spans[3 * i + 1]!, spans[3 * i + 2]!);
  return views;
}

/** READ, WRITE or both: the only access values a DMA may ask for. */
function isAccess(access: number): boolean {
  return access === DMA_ACCESS_READ || access === DMA_ACCESS_WRITE || access === (DMA_ACCESS_READ | DMA_ACCESS_WRITE);
}

interface Seg {
  area: Area;
  pos: number;
  n: number;
}

export class DeviceDmaPort implements DeviceDma {
  // Last-hit cache: the area of the last translation and the IOAS it came
  // from. A device mostly touches the same area again (its rings, a
  // request's pages). Valid while the area is alive (an unmap, a v1 cut or
  // an IOAS destroy retires it: `dead`) and the device (this PASID) still
  // translates through that IOAS (attach / replace / detach change it).
  private hit: Area | null = null;
  private hitIoas: Ioas | null = null;

  constructor(private readonly target: DmaTarget) {}

  /** Ioas.translate behind the last-hit cache. */
  private translate(ioas: Ioas, iova: number, len: number, access: number): Area | null {
    const h = this.hit;
    if (h !== null && this.hitIoas === ioas && !h.dead && iova >= h.start && iova + len <= h.end && (h.prot & access) === access) return h;
    const a = ioas.translate(iova, len, access);
    if (a !== null) {
      this.hit = a;
      this.hitIoas = ioas;
    }
    return a;
  }

  read(iova: Iova, length: number, pasid?: number): Promise<Buffer> {
    try {
      const ioas = this.check(iova, length, pasid);
      if (length === 0) return Promise.resolve(Buffer.alloc(0));
      // Fast path: one area of directly mapped memory.
      if (typeof iova === 'number') {
        const a = this.translate(ioas, iova, length, DMA_ACCESS_READ);
        const b = a?.backing.bytes;
        if (a && b) {
          const off = a.offset + (iova - a.start);
          return Promise.resolve(Buffer.from(b.subarray(off, off + length)));
        }
      }
      return this.readSegs(this.resolve(ioas, iova, length, DMA_ACCESS_READ, pasid), length, iova, pasid);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  write(iova: Iova, data: Uint8Array, pasid?: number): Promise<void> {
    try {
      const length = data.length;
      const ioas = this.check(iova, length, pasid);
      if (length === 0) return Promise.resolve();
      if (typeof iova === 'number') {
        const a = this.translate(ioas, iova, length, DMA_ACCESS_WRITE);
        const b = a?.backing.bytes;
        if (a && b && !a.backing.readOnlyMemory) {
          const pos = iova - a.start;
          b.set(data, a.offset + pos);
          if (ioas.dirtyTracking) markDirty(a, pos, length);
          return Promise.resolve();
        }
      }
      return this.writeSegs(ioas, this.resolve(ioas, iova, length, DMA_ACCESS_WRITE, pasid), data, iova, pasid);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  withView<T>(
    iova: Iova,
    length: number,
    access: number,
    fn: (segments: Uint8Array[]) => T | Promise<T>,
    pasid?: number,
  ): Promise<T> {
    return this.withViews([iova], [length], access, fn, pasid);
  }

  withViews<T>(
    iovas: readonly Iova[],
    lengths: readonly number[],
    access: number,
    fn: (segments: Uint8Array[]) => T | Promise<T>,
    pasid?: number,
  ): Promise<T> {
    return this.withSpans(iovas, lengths, access, (list) => fn(viewsOf(list)), pasid);
  }

  withSpans<T>(
    iovas: readonly Iova[],
    lengths: readonly number[],
    access: number,
    fn: (list: SpanList) => T | Promise<T>,
    pasid?: number,
  ): Promise<T> {
    const first = iovas.length > 0 ? iovas[0]! : 0;
    try {
      if (!isAccess(access)) {
        throw new DmaFault('invalid', first, 0, pasid, 'access must be DMA_ACCESS_READ and/or DMA_ACCESS_WRITE');
      }
      if (!Array.isArray(iovas) || !Array.isArray(lengths) || lengths.length !== iovas.length) {
        throw new DmaFault('invalid', first, 0, pasid, 'one length per IOVA');
      }
      if (iovas.length > 0) this.checkRange(first, lengths[0]!, pasid);
      const ioas = this.ioasOf(first, lengths[0] ?? 0, pasid);
      // Translated (and held, inside spansOf) before anything awaits: an
      // unmap from here on waits for fn to finish.
      return this.spansOf(ioas, this.scatter(ioas, iovas, lengths, access, pasid), access, fn, pasid);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  mappedView(iova: Iova, length: number, access: number, pasid?: number): Uint8Array | null {
    // Numbers only (a bigint IOVA is above 2^53: never guest RAM in practice).
    if (typeof iova !== 'number' || !Number.isSafeInteger(iova) || iova < 0 || !Number.isSafeInteger(length) || length <= 0) return null;
    if (!isAccess(access)) return null;
    const ioas = this.target.ioasFor(pasid);
    const a = ioas ? this.translate(ioas, iova, length, access) : null;
    const b = a ? a.backing.bytes : null;
    if (!a || !b || (access & DMA_ACCESS_WRITE && a.backing.readOnlyMemory)) return null;
    const pos = iova - a.start;
    if (access & DMA_ACCESS_WRITE && ioas!.dirtyTracking) markDirty(a, pos, length);
    const off = b.byteOffset + a.offset + pos;
    return new Uint8Array(b.buffer, off, length);
  }

  mappedWindow(iova: Iova, access: number, pasid?: number): MappedWindow | null {
    if (typeof iova !== 'number' || !Number.isSafeInteger(iova) || iova < 0 || !isAccess(access)) return null;
    const ioas = this.target.ioasFor(pasid);
    // Dirty tracking must see every write: the window would bypass it.
    if (!ioas || ioas.dirtyTracking) return null;
    const a = this.translate(ioas, iova, 1, access);
    const b = a ? a.backing.bytes : null;
    if (!a || !b || (access & DMA_ACCESS_WRITE && a.backing.readOnlyMemory) || a.offset + a.length > b.length) return null;
    return { iova: a.start, bytes: new Uint8Array(b.buffer, b.byteOffset + a.offset, a.length) };
  }

  mappedSpans(iovas: readonly Iova[], lengths: readonly number[], skip: number, length: number, access: number, out: SpanBuffer, pasid?: number): boolean {
    if (!Number.isSafeInteger(skip) || skip < 0 || !Number.isSafeInteger(length) || length <= 0) return false;
    if (!isAccess(access)) return false;
    const ioas = this.target.ioasFor(pasid);
    if (!ioas) return false;
    const dirty = (access & DMA_ACCESS_WRITE) !== 0 && ioas.dirtyTracking;
    const buffers = out.buffers;
    buffers.length = 0;
    let spans = out.spans;
    let count = 0;
    let left = length;
    let buf = -1; // index in buffers of the last span's buffer
    for (let i = 0; i < iovas.length && left > 0; i++) {
      const l = lengths[i]!;
      if (!Number.isSafeInteger(l) || l < 0) return false;
      if (skip >= l) {
        skip -= l;
        continue;
      }
      const iova = iovas[i]!;
      const start = typeof iova === 'number' ? iova + skip : NaN;
      const n = Math.min(l - skip, left);
      skip = 0;
      if (!Number.isSafeInteger(start) || start < 0) return false;
      const a = this.translate(ioas, start, n, access);
      const b = a !== null ? a.backing.bytes : null;
      if (a === null || b === null || ((access & DMA_ACCESS_WRITE) !== 0 && a.backing.readOnlyMemory)) return false;
      const pos = start - a.start;
      if (dirty) markDirty(a, pos, n);
      const off = b.byteOffset + a.offset + pos;
      if (buf >= 0 && buffers[buf] === b.buffer && spans[3 * count - 2]! + spans[3 * count - 1]! === off) {
        spans[3 * count - 1] = spans[3 * count - 1]! + n;
      } else {
        if (buf < 0 || buffers[buf] !== b.buffer) {
          buf = buffers.indexOf(b.buffer);
          if (buf < 0) buf = buffers.push(b.buffer) - 1;
        }
        if (3 * count + 3 > spans.length) {
          const next = new Float64Array(Math.max(48, 2 * spans.length));
          next.set(spans);
          spans = out.spans = next;
        }
        spans[3 * count] = buf;
        spans[3 * count + 1] = off;
        spans[3 * count + 2] = n;
        count++;
      }
      left -= n;
    }
    out.count = count;
    return left === 0;
  }

  // The scatter list of many ranges, adjacent pieces of one area merged.
  private scatter(ioas: Ioas, iovas: readonly Iova[], lengths: readonly number[], access: number, pasid: number | undefined): Seg[] {
    const segs: Seg[] = [];
    let last: Seg | undefined;
    for (let i = 0; i < iovas.length; i++) {
      const iova = iovas[i]!;
      const len = lengths[i]!;
      this.checkRange(iova, len, pasid);
      if (len === 0) continue;
      // Fast path: the whole range in one area (numbers only; bigint below),
      // most often the area of the previous range (no tree walk then; it has
      // the rights, and nothing can unmap it during this synchronous loop).
      const a =
        typeof iova === 'number'
          ? last !== undefined && iova >= last.area.start && iova + len <= last.area.end
            ? last.area
            : this.translate(ioas, iova, len, access)
          : null;
      const parts = a ? null : this.resolve(ioas, iova, len, access, pasid);
      for (let k = 0, n = parts ? parts.length : 1; k < n; k++) {
        const area = parts ? parts[k]!.area : a!;
        const pos = parts ? parts[k]!.pos : (iova as number) - area.start;
        const cnt = parts ? parts[k]!.n : len;
        if (last !== undefined && last.area === area && last.pos + last.n === pos) last.n += cnt;
        else segs.push((last = { area, pos, n: cnt }));
      }
    }
    return segs;
  }

  // Holds the areas of segs until fn settles; fn gets them as spans of
  // ArrayBuffers: the mapped memory itself, or bounce buffers.
  private async spansOf<T>(
    ioas: Ioas,
    segs: Seg[],
    access: number,
    fn: (list: SpanList) => T | Promise<T>,
    pasid: number | undefined,
  ): Promise<T> {
    // One hold per run of segments in the same area (a guest request is
    // usually hundreds of pages of one RAM area).
    const held: Area[] = [];
    for (const s of segs) if (held.length === 0 || held[held.length - 1] !== s.area) (held[held.length] = s.area).hold();
    try {
      const spans = new Float64Array(3 * segs.length);
      const buffers: ArrayBufferLike[] = [];
      const indexOf = (b: ArrayBufferLike): number => {
        const i = buffers.lastIndexOf(b);
        return i >= 0 ? i : buffers.push(b) - 1;
      };
      let bounced: { s: Seg; buf: Buffer }[] | null = null;
      let area: Area | null = null;
      let bytes: Uint8Array | null = null;
      let direct = -1; // buffers index of the area's memory when it is used in place
      let base = 0;
      for (let i = 0; i < segs.length; i++) {
        const s = segs[i]!;
        if (s.area !== area) {
          area = s.area;
          bytes = area.backing.bytes;
          direct = bytes !== null && !area.backing.readOnlyMemory ? indexOf(bytes.buffer) : -1;
          base = bytes !== null ? bytes.byteOffset + area.offset : 0;
        }
        if (direct >= 0) {
          spans[3 * i] = direct;
          spans[3 * i + 1] = base + s.pos;
        } else {
          const off = area.offset + s.pos;
          let buf: Buffer | Uint8Array;
          if (bytes) buf = Uint8Array.prototype.slice.call(bytes, off, off + s.n); // read-only memory: a copy
          else {
            const b = area.backing;
            const bb = access & DMA_ACCESS_READ ? await this.io(() => b.read(off, s.n), s, pasid) : Buffer.alloc(s.n);
            (bounced ??= []).push({ s, buf: bb });
            buf = bb;
          }
          spans[3 * i] = indexOf(buf.buffer);
          spans[3 * i + 1] = buf.byteOffset;
        }
        spans[3 * i + 2] = s.n;
      }
      if (access & DMA_ACCESS_WRITE && ioas.dirtyTracking) for (const s of segs) markDirty(s.area, s.pos, s.n);
      // No await when fn finished synchronously: one turn less per request.
      const r0 = fn({ buffers, spans, count: segs.length });
      const r = isThenable(r0) ? await r0 : r0;
      if (access & DMA_ACCESS_WRITE && bounced) {
        for (const { s, buf } of bounced) await this.io(() => s.area.backing.write(s.area.offset + s.pos, buf), s, pasid);
      }
      return r;
    } finally {
      for (const a of held) a.release();
    }
  }

  // Validates the request and finds the IOAS for the PASID.
  private check(iova: Iova, length: number, pasid: number | undefined): Ioas {
    this.checkRange(iova, length, pasid);
    return this.ioasOf(iova, length, pasid);
  }

  private checkRange(iova: Iova, length: number, pasid: number | undefined): void {
    if (!Number.isSafeInteger(length) || length < 0) throw new DmaFault('invalid', iova, 0, pasid, 'bad length');
    if (typeof iova === 'number') {
      if (!Number.isSafeInteger(iova) || iova < 0) throw new DmaFault('invalid', iova, length, pasid, 'iova must be a safe integer (use bigint)');
      if (iova + length > TWO_POW_64) throw new DmaFault('invalid', iova, length, pasid, 'range wraps past 2^64');
    } else if (typeof iova !== 'bigint' || iova < 0n || iova > U64_MAX || iova + BigInt(length) > U64_MAX + 1n) {
      throw new DmaFault('invalid', typeof iova === 'bigint' ? iova : 0n, length, pasid, 'iova out of range');
    }
  }

  private ioasOf(iova: Iova, length: number, pasid: number | undefined): Ioas {
    const ioas = this.target.ioasFor(pasid);
    if (!ioas) {
      const who = pasid === undefined ? this.target.name : `${this.target.name} pasid ${pasid}`;
      throw new DmaFault('not-attached', iova, length, pasid, `${who} is attached to no IOAS`);
    }
    return ioas;
  }

  // The areas (scatter list) covering [iova, iova+length), all with access.
  private resolve(ioas: Ioas, iova: Iova, length: number, access: number, pasid: number | undefined): Seg[] {
    const hit = ioas.locate(iova);
    if (!hit) throw new DmaFault('unmapped', iova, length, pasid);
    let area = hit.area;
    let pos = hit.pos;
    let left = length;
    const segs: Seg[] = [];
    for (;;) {
      if ((area.prot & access) !== access) {
        throw new DmaFault('permission', BigInt(area.start) + BigInt(pos), left, pasid, `mapping lacks ${access & DMA_ACCESS_WRITE && !(area.prot & DMA_ACCESS_WRITE) ? 'WRITE' : 'READ'}`);
      }
      const n = Math.min(left, area.length - pos);
      segs.push({ area, pos, n });
      left -= n;
      if (left === 0) return segs;
      const next = ioas.find(area.end);
      if (!next || next.start !== area.end) throw new DmaFault('unmapped', BigInt(area.end), left, pasid);
      area = next;
      pos = 0;
    }
  }

  private async readSegs(segs: Seg[], length: number, iova: Iova, pasid: number | undefined): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    for (const s of segs) s.area.hold();
    try {
      let o = 0;
      for (const s of segs) {
        const b = s.area.backing;
        const off = s.area.offset + s.pos;
        const bytes = b.bytes;
        if (bytes) out.set(bytes.subarray(off, off + s.n), o);
        else (await this.io(() => b.read(off, s.n), s, pasid)).copy(out, o);
        o += s.n;
      }
      return out;
    } catch (e) {
      if (e instanceof DmaFault) throw e;
      throw new DmaFault('io', iova, length, pasid, (e as Error).message);
    } finally {
      for (const s of segs) s.area.release();
    }
  }

  private async writeSegs(ioas: Ioas, segs: Seg[], data: Uint8Array, iova: Iova, pasid: number | undefined): Promise<void> {
    for (const s of segs) s.area.hold();
    try {
      let o = 0;
      for (const s of segs) {
        const b = s.area.backing;
        const off = s.area.offset + s.pos;
        const part = data.subarray(o, o + s.n);
        const bytes = b.bytes;
        if (bytes && !b.readOnlyMemory) bytes.set(part, off);
        else await this.io(() => b.write(off, part), s, pasid);
        if (ioas.dirtyTracking) markDirty(s.area, s.pos, s.n);
        o += s.n;
      }
    } catch (e) {
      if (e instanceof DmaFault) throw e;
      throw new DmaFault('io', iova, data.length, pasid, (e as Error).message);
    } finally {
      for (const s of segs) s.area.release();
    }
  }

  private async io<T>(f: () => Promise<T>, s: Seg, pasid: number | undefined): Promise<T> {
    try {
      return await f();
    } catch (e) {
      const msg = e instanceof VfioUserError ? e.message : String((e as Error)?.message ?? e);
      throw new DmaFault('io', BigInt(s.area.start) + BigInt(s.pos), s.n, pasid, msg);
    }
  }
}
