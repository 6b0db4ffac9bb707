// `--record-dma`: a DeviceDma that passes every access through to the real
// one and records what the device read from guest memory (before it used
// it) and what it wrote there (once it is written), so that a replay can put
// the same bytes in guest memory. Installed only while recording with
// --record-dma: the device's DMA path is untouched otherwise.
//
// mappedView (and mappedSpans) hand out memory the device reads or writes after the call
// returns, within the same synchronous run: a read view is recorded at
// once (the device reads it before anything else can change it), a write
// view in a microtask, after that run, before any unmap can come (unmaps
// are handled on a later turn of the event loop).
import {
  DMA_ACCESS_READ, DMA_ACCESS_WRITE, type DeviceDma, type Iova, type SpanList,
} from '../iommu/device-dma.js';

/** Where the accesses go (a SessionRecording). */
export interface DmaSink {
  dma(op: 'read' | 'write', iova: number | bigint, data: Uint8Array): void;
}

/** `inner`, recording every access to `sink`. */
export function tapDeviceDma(inner: DeviceDma, sink: DmaSink): DeviceDma {
  // The ranges' bytes in order, one record per range; `skip` bytes of the
  // ranges come before the first of `bytes` (mappedSpans' slice).
  const ranges = (op: 'read' | 'write', iovas: readonly Iova[], lengths: readonly number[], bytes: Buffer, skip = 0): void => {
    let at = 0;
    for (let i = 0; i < iovas.length && at < bytes.length; i++) {
      const l = lengths[i]!;
      if (skip >= l) {
        skip -= l;
        continue;
      }
      const n = Math.min(l - skip, bytes.length - at);
      const iova = iovas[i]!;
      sink.dma(op, typeof iova === 'number' ? iova + skip : iova + BigInt(skip), bytes.subarray(at, at + n));
      at += n;
      skip = 0;
    }
  };
  // The device's segments as bytes, recorded on the way in (READ) and the way out (WRITE).
  const around = <S, T>(
    iovas: readonly Iova[], lengths: readonly number[], access: number, gather: (s: S) => Buffer,
    fn: (s: S) => T | Promise<T>,
  ) => async (s: S): Promise<T> => {
    if (access & DMA_ACCESS_READ) ranges('read', iovas, lengths, gather(s));
    const r = await fn(s);
    if (access & DMA_ACCESS_WRITE) ranges('write', iovas, lengths, gather(s));
    return r;
  };
  return {
    async read(iova, length, pasid) {
      const data = await inner.read(iova, length, pasid);
      sink.dma('read', iova, data);
      return data;
    },
    async write(iova, data, pasid) {
      await inner.write(iova, data, pasid);
      sink.dma('write', iova, Buffer.from(data));
    },
    withView(iova, length, access, fn, pasid) {
      return inner.withView(iova, length, access, around([iova], [length], access, concatViews, fn), pasid);
    },
    withViews(iovas, lengths, access, fn, pasid) {
      return inner.withViews(iovas, lengths, access, around(iovas, lengths, access, concatViews, fn), pasid);
    },
    withSpans(iovas, lengths, access, fn, pasid) {
      return inner.withSpans(iovas, lengths, access, around(iovas, lengths, access, concatSpans, fn), pasid);
    },
    mappedView(iova, length, access, pasid) {
      const v = inner.mappedView(iova, length, access, pasid);
      if (v === null) return v;
      if (access & DMA_ACCESS_READ) sink.dma('read', iova, Buffer.from(v));
      if (access & DMA_ACCESS_WRITE) queueMicrotask(() => sink.dma('write', iova, Buffer.from(v)));
      return v;
    },
    // A recording must see every access: no window.
    mappedWindow() {
      return null;
    },
    mappedSpans(iovas, lengths, skip, length, access, out, pasid) {
      if (!inner.mappedSpans(iovas, lengths, skip, length, access, out, pasid)) return false;
      if (access & DMA_ACCESS_READ) ranges('read', iovas, lengths, concatSpans(out), skip);
      if (access & DMA_ACCESS_WRITE) {
        // Like mappedView's write view; out is the caller's to reuse, so keep its views.
        const views = spanViews(out);
        const [A, L] = [[...iovas], [...lengths]];
        queueMicrotask(() => ranges('write', A, L, Buffer.concat(views), skip));
      }
      return true;
    },
  };
}

function concatViews(views: Uint8Array[]): Buffer {
  return Buffer.concat(views);
}

function spanViews(list: SpanList): Uint8Array[] {
  const views: Uint8Array[] = [];
  const s = list.spans;
  for (let i = 0; i < list.count; i++) views.push(new Uint8Array(list.buffers[s[3 * i]!]!, s[3 * i + 1]!, s[3 * i + 2]!));
  return views;
}

function concatSpans(list: SpanList): Buffer {
  return Buffer.concat(spanViews(list));
}
