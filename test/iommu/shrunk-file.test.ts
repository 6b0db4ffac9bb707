// A client may ftruncate an unsealed file it passed in DMA_MAP. The device's
// next access to that memory must be a DMA fault (EFAULT), never a SIGBUS:
// only files sealed against shrinking are mapped; others are reached by
// pread / pwrite, where a short transfer is a fault.
import { openSync, readSync } from 'node:fs';
import t from 'tap';
import * as native from '../../native/index.js';
import { IommuContext } from '../../iommu/context.js';
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE } from '../../iommu/device-dma.js';
import { PAGE, fault } from './helpers.js';

const IOVA = 0x100000;

function setup(sealed: boolean): { ctx: IommuContext; dma: ReturnType<IommuContext['dma']>; fd: number } {
  const ctx = new IommuContext({ native });
  ctx.addDevice('d');
  const fd = native.memfdCreate('guest-ram', 16 * PAGE);
  if (sealed) native.addSeals(fd, native.F_SEAL_SHRINK | native.F_SEAL_GROW);
  // The server gets its own fd, as it would from SCM_RIGHTS; the client keeps `fd`.
  ctx.type1.map({ iova: BigInt(IOVA), size: BigInt(16 * PAGE), flags: 3, fd: dupFd(fd) });
  return { ctx, dma: ctx.dma('d'), fd };
}

/** A second fd of the same memfd (what SCM_RIGHTS would give the server). */
function dupFd(fd: number): number {
  return openSync(`/proc/self/fd/${fd}`, 'r+');
}

t.test('an unsealed memfd truncated behind the server: DMA is EFAULT, the process lives', async (t) => {
  const { dma, fd } = setup(false);
  await dma.write(IOVA + PAGE, Buffer.from('before'));
  t.equal((await dma.read(IOVA + PAGE, 6)).toString(), 'before', 'the memory works before the truncate');
  native.ftruncate(fd, 0);
  t.equal((await fault(dma.read(IOVA + PAGE, 6))).errno, 14, 'read: EFAULT');
  t.equal((await fault(dma.write(IOVA + 2 * PAGE, Buffer.from('x')))).errno, 14, 'write: EFAULT');
  t.equal((await fault(dma.withView(IOVA, PAGE, DMA_ACCESS_READ, (v) => v[0]![0]))).errno, 14, 'withView read: EFAULT');
  t.equal((await fault(dma.withSpans([IOVA], [PAGE], DMA_ACCESS_WRITE, () => 0))).errno, 14, 'withSpans write: EFAULT');
  t.equal(dma.mappedView(IOVA, 4, DMA_ACCESS_READ), null, 'no direct view of a file that can shrink');
  native.close(fd);
});

t.test('a sealed memfd is mapped directly (zero copy); an unsealed one is not', async (t) => {
  const s = setup(true);
  const view = s.dma.mappedView(IOVA, 4, DMA_ACCESS_WRITE);
  t.ok(view, 'sealed: a direct view');
  view!.set([1, 2, 3, 4]);
  const b = Buffer.alloc(4);
  readSync(s.fd, b, 0, 4, 0);
  t.same([...b], [1, 2, 3, 4], 'the view is the file itself');
  t.not(s.ctx.compatIoas.allAreas()[0]!.backing.bytes, null, 'sealed backing has bytes');
  const u = setup(false);
  t.equal(u.dma.mappedView(IOVA, 4, DMA_ACCESS_WRITE), null, 'unsealed: no direct view');
  t.equal(u.ctx.compatIoas.allAreas()[0]!.backing.bytes, null, 'unsealed backing is reached by file I/O');
  await u.dma.write(IOVA, Buffer.from([9, 8, 7]));
  readSync(u.fd, b, 0, 3, 0);
  t.same([...b.subarray(0, 3)], [9, 8, 7], 'file I/O writes reach the file');
  native.close(s.fd);
  native.close(u.fd);
});
