// The guest-file registry: every DMA_MAP of one file shares one mapping (or
// one I/O fd), kept while an area or an in-flight access uses it; segments
// for files larger than one mapping; the process budget answers ENOSPC.
import { openSync } from 'node:fs';
import t from 'tap';
import * as native from '../../native/index.js';
import { IommuContext } from '../../iommu/context.js';
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE } from '../../iommu/device-dma.js';
import { MappingBudget } from '../../iommu/guest-files.js';
import { PAGE, errnoOf } from './helpers.js';

const P = BigInt(PAGE);

/** A second fd of the same file, as SCM_RIGHTS would hand the server. */
function fdOf(fd: number): number {
  return openSync(`/proc/self/fd/${fd}`, 'r+');
}

function sealedMemfd(pages: number): number {
  const fd = native.memfdCreate('guest-ram', pages * PAGE);
  native.addSeals(fd, native.F_SEAL_SHRINK);
  return fd;
}

function setup(opts: ConstructorParameters<typeof IommuContext>[0] = {}) {
  const ctx = new IommuContext({ native, ...opts });
  ctx.addDevice('d');
  const map = (fd: number, iova: number, pages: number, offset = 0, flags = 3) =>
    ctx.type1.map({ iova: BigInt(iova), size: BigInt(pages) * P, flags, fd: fdOf(fd), offset });
  const unmap = (iova: number, pages: number) => ctx.type1.unmap({ iova: BigInt(iova), size: BigInt(pages) * P });
  const file = (fd: number) => ctx.guestFiles!.fileOf(native.fileStat(fd));
  const backingAt = (iova: number) => ctx.compatIoas.find(iova)!.backing;
  return { ctx, dma: ctx.dma('d'), map, unmap, file, backingAt };
}

t.test('two DMA_MAPs of one memfd share one mapping; it goes with the last', async (t) => {
  const { dma, map, unmap, file, backingAt, ctx } = setup();
  const fd = sealedMemfd(16);
  const fds = native.fdCount();
  map(fd, 0x100000, 4, 0);
  map(fd, 0x200000, 2, 8 * PAGE);
  t.equal(native.fdCount(), fds, 'both received fds were closed');
  const f = file(fd)!;
  t.equal(f.mappings, 1, 'one mmap of the file');
  const m = backingAt(0x100000);
  t.equal(backingAt(0x200000), m, 'both areas use the same mapping');
  t.equal(ctx.compatIoas.find(0x200000)!.offset, 8 * PAGE, 'at their file offsets');
  const bytes = m.bytes!;
  await dma.write(0x200000 + 5, Buffer.from('second'));
  t.equal(Buffer.from(bytes.subarray(8 * PAGE + 5, 8 * PAGE + 11)).toString(), 'second', 'the second map is a window of the file');

  await unmap(0x100000, 4).drained;
  t.equal(m.disposed, false, 'unmapping one keeps the mapping');
  t.equal((await dma.read(0x200000 + 5, 6)).toString(), 'second', 'the other map still works');
  await unmap(0x200000, 2).drained;
  t.equal(m.disposed, true, 'the last unmap munmaps');
  t.equal(bytes.length, 0, 'its views are detached');
  t.equal(file(fd), undefined, 'the file left the registry');
  native.close(fd);
});

t.test('an in-flight access keeps the mapping until it is done', async (t) => {
  const { dma, map, unmap, backingAt } = setup();
  const fd = sealedMemfd(4);
  map(fd, 0x100000, 4);
  const m = backingAt(0x100000);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let sawDisposed: boolean | null = null;
  const access = dma.withView(0x100000, 16, DMA_ACCESS_WRITE, async (v) => {
    await gate;
    sawDisposed = m.disposed;
    v[0]!.fill(7);
  });
  const u = unmap(0x100000, 4);
  let drained = false;
  void u.drained.then(() => (drained = true));
  await new Promise((r) => setImmediate(r));
  t.equal(drained, false, 'the unmap waits for the access');
  t.equal(m.disposed, false, 'the mapping stays while held');
  release();
  await access;
  await u.drained;
  t.equal(sawDisposed, false, 'the access ran on live memory');
  t.equal(m.disposed, true, 'munmap once the hold is released');
  native.close(fd);
});

t.test('a file that grew gets a larger mapping; the old one lives while used', async (t) => {
  const { dma, map, unmap, file, backingAt } = setup();
  const fd = native.memfdCreate('growing', 4 * PAGE);
  native.addSeals(fd, native.F_SEAL_SHRINK);
  map(fd, 0x100000, 1, 0);
  const old = backingAt(0x100000);
  native.ftruncate(fd, 8 * PAGE);
  map(fd, 0x200000, 1, 6 * PAGE);
  const grown = backingAt(0x200000);
  t.not(grown, old, 'a new mapping for the range past the old end');
  t.equal(grown.size, 8 * PAGE, 'of the whole grown file');
  t.equal(file(fd)!.mappings, 2, 'the old mapping is still used');
  map(fd, 0x300000, 1, 0);
  t.equal(backingAt(0x300000), grown, 'later maps use the newest mapping');
  await dma.write(0x100000, Buffer.from('old'));
  t.equal((await dma.read(0x300000, 3)).toString(), 'old', 'both mappings show the same file');
  await unmap(0x100000, 1).drained;
  t.equal(old.disposed, true, 'the old mapping goes with its last map');
  t.equal(file(fd)!.mappings, 1);
  native.close(fd);
});

t.test('a file larger than one mapping is mapped in overlapping segments', async (t) => {
  const max = 8 * PAGE;
  const { dma, map, file, backingAt } = setup({ guestFiles: { maxMapping: max } });
  const fd = sealedMemfd(40);
  map(fd, 0x100000, 1, 0);
  map(fd, 0x200000, 4, 2 * PAGE);
  t.equal(backingAt(0x200000), backingAt(0x100000), 'segment 0 holds both');
  map(fd, 0x300000, 4, 6 * PAGE); // crosses 8 pages: lies in segment 1 ([4, 12) pages)
  const seg1 = backingAt(0x300000);
  t.not(seg1, backingAt(0x100000), 'a second segment');
  t.equal(seg1.size, max, 'a segment is one mapping long');
  t.equal(file(fd)!.mappings, 2);
  map(fd, 0x400000, 6, 3 * PAGE); // 6 pages from page 3: no segment holds it
  t.equal(backingAt(0x400000).bytes, null, 'a map larger than a segment can hold is reached by file I/O');
  await dma.write(0x400000 + 3 * PAGE, Buffer.from('seg'));
  t.equal((await dma.read(0x300000, 3)).toString(), 'seg', 'file I/O and the segment see the same bytes');
  native.close(fd);
});

t.test('an unsealed file: one kept fd for all its maps, closed with the last', async (t) => {
  const { map, unmap, file, backingAt } = setup();
  const fd = native.memfdCreate('unsealed', 8 * PAGE);
  const fds = native.fdCount();
  map(fd, 0x100000, 2, 0);
  map(fd, 0x200000, 2, 4 * PAGE);
  t.equal(native.fdCount(), fds + 1, 'one fd kept for the file, the other closed');
  t.equal(backingAt(0x100000), backingAt(0x200000), 'one file-I/O backing');
  t.equal(file(fd)!.mappings, 0, 'never mapped');
  await unmap(0x100000, 2).drained;
  t.equal(native.fdCount(), fds + 1, 'kept while a map uses it');
  await unmap(0x200000, 2).drained;
  t.equal(native.fdCount(), fds, 'closed with the last map');
  native.close(fd);
});

t.test('the mapping budget: a new file beyond it is ENOSPC, never a crash', async (t) => {
  const budget = new MappingBudget(2);
  const { map, dma } = setup({ guestFiles: { budget } });
  const a = sealedMemfd(2);
  const b = native.memfdCreate('unsealed', 2 * PAGE);
  const c = sealedMemfd(2);
  const fds = native.fdCount();
  map(a, 0x100000, 1);
  map(b, 0x200000, 1);
  map(a, 0x300000, 1, PAGE);
  t.equal(budget.inUse, 2, 'a mapping and an fd');
  t.equal(errnoOf(() => map(c, 0x400000, 1)), 'ENOSPC', 'a third file is refused');
  t.equal(native.fdCount(), fds + 1, 'its fd was closed');
  t.same([...(await dma.read(0x300000, 1))], [0], 'the others keep working');
  for (const fd of [a, b, c]) native.close(fd);
});

t.test('read-only maps and fds: copies, never writes', async (t) => {
  const { ctx, dma, backingAt } = setup();
  const fd = sealedMemfd(2);
  const ro = openSync(`/proc/self/fd/${fd}`, 'r');
  t.equal(errnoOf(() => ctx.type1.map({ iova: 0x100000n, size: P, flags: 3, fd: openSync(`/proc/self/fd/${fd}`, 'r') })), 'EACCES', 'a writable map of a read-only fd');
  ctx.type1.map({ iova: 0x100000n, size: P, flags: 1, fd: ro });
  t.equal(backingAt(0x100000).readOnlyMemory, true, 'a private read-only mapping');
  t.equal(dma.mappedView(0x100000, 4, DMA_ACCESS_READ) !== null, true, 'readable in place');
  native.close(fd);
});
