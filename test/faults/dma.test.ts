// The DMA fault point's synchronous fast paths: while any DMA rule is in
// force, mappedView, mappedSpans and mappedWindow decline (the device takes the general
// path, where the rule is asked); with none, they pass straight through.
import t from 'tap';
import type { DeviceDma } from '../../iommu/device-dma.js';
import type { DeviceFaults } from '../../faults/device-faults.js';
import { faultyDma } from '../../faults/dma.js';

t.test('mappedView, mappedSpans and mappedWindow: through with no DMA rule, declined with one', async (t) => {
  const calls: string[] = [];
  const inner = {
    mappedView: (iova: number, len: number) => (calls.push(`view ${iova}+${len}`), new Uint8Array(len)),
    mappedSpans: (iovas: number[], _l: number[], skip: number, len: number) => (calls.push(`spans ${iovas[0]}+${skip}+${len}`), true),
    mappedWindow: (iova: number) => (calls.push(`window ${iova}`), { iova, bytes: new Uint8Array(8) }),
  } as unknown as DeviceDma;
  const faults = { dma: [] as unknown[] } as unknown as DeviceFaults;
  const dma = faultyDma(inner, faults);
  const out = { buffers: [], spans: new Float64Array(3), count: 0 };
  t.equal(dma.mappedView(0x1000, 4, 1)?.length, 4, 'a view with no rule');
  t.equal(dma.mappedSpans([0x2000], [8], 2, 6, 1, out), true, 'spans with no rule');
  t.equal(dma.mappedWindow(0x3000, 1)?.iova, 0x3000, 'a window with no rule');
  (faults.dma as unknown[]).push({});
  t.equal(dma.mappedView(0x1000, 4, 1), null, 'no view while a rule is in force');
  t.equal(dma.mappedSpans([0x2000], [8], 2, 6, 1, out), false, 'no spans either');
  t.equal(dma.mappedWindow(0x3000, 1), null, 'nor a window');
  t.same(calls, ['view 4096+4', 'spans 8192+2+6', 'window 12288'], 'declined calls never reach the memory');
});
