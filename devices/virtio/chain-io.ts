// Byte access to a descriptor chain's buffers as two flat spaces: the
// device-readable bytes (in chain order) and the device-writable bytes.
// A request header may straddle descriptors, a status byte may share the
// last data descriptor: device models address bytes, not descriptors.
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, type DeviceDma, type Iova, type SpanList } from '../../iommu/device-dma.js';
import { iovaAdd } from './dma-util.js';
import type { DescChain } from './virtqueue.js';

export type ChainSpace = 'readable' | 'writable';

/** A space's descriptors (addresses, lengths), total bytes and DMA access. */
function spaceOf(chain: DescChain, space: ChainSpace): { A: Iova[]; L: number[]; total: number; access: number } {
  return space === 'readable'
    ? { A: chain.rAddr, L: chain.rLen, total: chain.readable, access: DMA_ACCESS_READ }
    : { A: chain.wAddr, L: chain.wLen, total: chain.writable, access: DMA_ACCESS_WRITE };
}

/** The guest ranges holding bytes [offset, offset+len) of one space. */
export function chainRanges(chain: DescChain, space: ChainSpace, offset: number, len: number): { addrs: Iova[]; lens: number[] } {
  const { A, L, total } = spaceOf(chain, space);
  if (offset < 0 || len < 0 || offset + len > total) {
    throw new RangeError(`bytes [${offset}, +${len}) outside the ${total} ${space} bytes of chain ${chain.head}`);
  }
  // The usual request covers whole descriptors (data between a header and a
  // status descriptor): two slices instead of a push per descriptor.
  let i0 = 0;
  let skip = offset;
  while (skip > 0 && i0 < L.length && skip >= L[i0]!) skip -= L[i0++]!;
  if (skip === 0) {
    let i1 = i0;
    let rest = len;
    while (rest > 0 && i1 < L.length && rest >= L[i1]!) rest -= L[i1++]!;
    if (rest === 0) return { addrs: A.slice(i0, i1), lens: L.slice(i0, i1) };
  }
  const addrs: Iova[] = [];
  const lens: number[] = [];
  skip = offset;
  let left = len;
  for (let i = 0; i < A.length && left > 0; i++) {
    const l = L[i]!;
    if (skip >= l) {
      skip -= l;
      continue;
    }
    const n = Math.min(l - skip, left);
    addrs.push(skip === 0 ? A[i]! : iovaAdd(A[i]!, skip));
    lens.push(n);
    left -= n;
    skip = 0;
  }
  return { addrs, lens };
}

/**
 * Bytes [offset, offset+len) of a space in place, synchronously, when they
 * lie in one descriptor of mapped memory (a request header, a status byte);
 * null: use chainRead / chainWrite. The rules of DeviceDma.mappedView hold:
 * use the view at once, never across an await.
 */
export function chainView(dma: DeviceDma, chain: DescChain, space: ChainSpace, offset: number, len: number): Uint8Array | null {
  const { A, L, access } = spaceOf(chain, space);
  if (!(offset >= 0 && len > 0)) return null;
  let skip = offset;
  for (let i = 0; i < L.length; i++) {
    const l = L[i]!;
    if (skip < l) {
      if (skip + len > l) return null;
      return dma.mappedView(skip === 0 ? A[i]! : iovaAdd(A[i]!, skip), len, access);
    }
    skip -= l;
  }
  return null;
}

/** Copy bytes [offset, offset+len) of the readable space. */
export async function chainRead(dma: DeviceDma, chain: DescChain, offset: number, len: number): Promise<Buffer> {
  const { addrs, lens } = chainRanges(chain, 'readable', offset, len);
  if (addrs.length === 1) return dma.read(addrs[0]!, lens[0]!);
  const out = Buffer.allocUnsafe(len);
  let o = 0;
  for (let i = 0; i < addrs.length; i++) {
    (await dma.read(addrs[i]!, lens[i]!)).copy(out, o);
    o += lens[i]!;
  }
  return out;
}

/** Copy `data` into the writable space at `offset`. */
export async function chainWrite(dma: DeviceDma, chain: DescChain, offset: number, data: Uint8Array): Promise<void> {
  const { addrs, lens } = chainRanges(chain, 'writable', offset, data.length);
  let o = 0;
  for (let i = 0; i < addrs.length; i++) {
    await dma.write(addrs[i]!, lens[i] === data.length ? data : data.subarray(o, o + lens[i]!));
    o += lens[i]!;
  }
}

/**
 * Zero-copy views of bytes [offset, offset+len) of a space (readable: for
 * DMA_ACCESS_READ, writable: for DMA_ACCESS_WRITE), held until fn's promise settles.
 */
export function withChainViews<T>(
  dma: DeviceDma,
  chain: DescChain,
  space: ChainSpace,
  offset: number,
  len: number,
  fn: (segments: Uint8Array[]) => T | Promise<T>,
): Promise<T> {
  return withRanges(chain, space, offset, len, (addrs, lens, access) => dma.withViews(addrs, lens, access, fn));
}

/** withChainViews as a span list (DeviceDma.withSpans): for native I/O on the whole request. */
export function withChainSpans<T>(
  dma: DeviceDma,
  chain: DescChain,
  space: ChainSpace,
  offset: number,
  len: number,
  fn: (list: SpanList) => T | Promise<T>,
): Promise<T> {
  return withRanges(chain, space, offset, len, (addrs, lens, access) => dma.withSpans(addrs, lens, access, fn));
}

function withRanges<T>(
  chain: DescChain,
  space: ChainSpace,
  offset: number,
  len: number,
  go: (addrs: Iova[], lens: number[], access: number) => Promise<T>,
): Promise<T> {
  let r: { addrs: Iova[]; lens: number[] };
  try {
    r = chainRanges(chain, space, offset, len);
  } catch (e) {
    return Promise.reject(e);
  }
  return go(r.addrs, r.lens, spaceOf(chain, space).access);
}
