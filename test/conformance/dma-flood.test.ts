// A DMA_MAP flood through the real socket, as a guest behind a vIOMMU drives
// it through QEMU: one DMA_MAP per guest page, every one a 4 KiB window of
// the same (sealed) guest-RAM memfd, pipelined. Every map up to the
// advertised max_dma_maps succeeds, the next one is ENOSPC, UNMAP_ALL
// removes them all, and the server keeps serving. The maps share one
// mapping of the file (one mapping per map would exhaust vm.max_map_count,
// 65,530, and crash the process).
import fs from 'node:fs';
import t from 'tap';
import { Command } from '../../protocol/constants.js';
import { Errno } from '../../protocol/errno.js';
import { encodeDmaMapRequest } from '../../protocol/commands/dma-map.js';
import { encodeDmaUnmapRequest } from '../../protocol/commands/dma-unmap.js';
import { VFIO_DMA_UNMAP_FLAG_ALL } from '../../iommu/type1.js';
import {
  QEMU_CAPS, assertErrorReply, assertReply, assertServes, native, openClient, send, startGpio,
  type ReplyMessage, type VfioUserClient,
} from './helpers.js';

const PAGE = 4096;
const MAPS = QEMU_CAPS.maxDmaMaps!;
/** Requests in flight at once (msg_ids are 16 bits: stay well below). */
const WINDOW = 4096;
/** Pages of the memfd the windows cycle over. */
const FILE_PAGES = 4096;
const IOVA_BASE = 1n << 32n;

/** QEMU's memory-backend-memfd: sealed against growing and shrinking. */
function sealedMemfd(size: number): number {
  const fd = native.memfdCreate('guest-ram', size);
  native.addSeals(fd, native.F_SEAL_GROW | native.F_SEAL_SHRINK | native.F_SEAL_SEAL);
  return fd;
}

/** Lines of /proc/self/maps: all of them, and those of the guest-RAM memfd. */
function mappings(): { all: number; file: number } {
  const lines = fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter(Boolean);
  return { all: lines.length, file: lines.filter((l) => l.includes('/memfd:guest-ram')).length };
}

/** DMA_MAP of page i of the file at IOVA_BASE + i pages. */
function mapRequest(c: VfioUserClient, fd: number, i: number): Promise<ReplyMessage> {
  const payload = encodeDmaMapRequest({
    addr: IOVA_BASE + BigInt(i) * BigInt(PAGE), size: BigInt(PAGE), offset: BigInt((i % FILE_PAGES) * PAGE),
  });
  return c.request(Command.DMA_MAP, payload, { fds: [fd] });
}

t.test('65,535 pipelined DMA_MAPs of one memfd, one more, UNMAP_ALL', async (t) => {
  const fx = await startGpio(t);
  const c = await openClient(t, fx);
  const fd = sealedMemfd(FILE_PAGES * PAGE);
  t.teardown(() => native.close(fd));
  const fdsBefore = native.fdCount();
  const before = mappings();

  let failed = 0;
  let firstErr = '';
  for (let start = 0; start < MAPS; start += WINDOW) {
    const batch: Promise<ReplyMessage>[] = [];
    for (let i = start; i < Math.min(MAPS, start + WINDOW); i++) batch.push(mapRequest(c, fd, i));
    for (const r of await Promise.all(batch)) {
      if (r.errno !== 0 && failed++ === 0) firstErr = `msg ${r.header.msgId}: errno ${r.errno}`;
    }
  }
  t.equal(failed, 0, `every DMA_MAP up to max_dma_maps succeeds${firstErr ? ` (first failure ${firstErr})` : ''}`);
  t.equal(fx.ctx.compatIoas.areaCount, MAPS, 'all of them are mapped');
  const during = mappings();
  t.equal(during.file - before.file, 1, 'one mapping of the memfd serves every DMA_MAP');
  // The rest is the V8 heap growing (256 KiB pages) with the JS objects of
  // 65,535 maps and of the requests; a mapping per DMA_MAP would be 65,535.
  t.ok(during.all - before.all < 1024, `the process's mappings grew by ${during.all - before.all}, far below one per DMA_MAP`);
  t.equal(native.fdCount(), fdsBefore, 'every received fd was closed');

  const over = await send(c, Command.DMA_MAP, encodeDmaMapRequest({ addr: IOVA_BASE - BigInt(PAGE), size: BigInt(PAGE) }), { fds: [fd] });
  assertErrorReply(t, over.reply, over, Errno.ENOSPC, 'one DMA_MAP beyond max_dma_maps');
  t.equal(native.fdCount(), fdsBefore, 'the refused map closed its fd too');

  const all = encodeDmaUnmapRequest({ addr: 0n, size: 0n, flags: VFIO_DMA_UNMAP_FLAG_ALL });
  const ua = await send(c, Command.DMA_UNMAP, all);
  assertReply(t, ua.reply, ua, all, 'UNMAP_ALL');
  t.equal(fx.ctx.compatIoas.areaCount, 0, 'nothing is mapped');
  await assertServes(t, c, 'after UNMAP_ALL');
  t.equal(mappings().file, before.file, 'UNMAP_ALL munmap\'d the memfd');
});
