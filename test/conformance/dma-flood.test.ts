// A DMA_MAP flood through the real socket, as a guest behind a vIOMMU drives
// it through QEMU: one DMA_MAP per guest page, every one a 4 KiB window of
// the same (sealed) guest-RAM memfd, pipelined. Every map up to the
// advertised max_dma_maps succeeds, the next one is ENOSPC, UNMAP_ALL
// removes them all, and the server keeps serving. The maps share one
// mapping of the file (one mapping per map would exhaust vm.max_map_count,
// 65,530, and crash the process).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { Command, VFIO_DMA_UNMAP_FLAG_ALL } from '../../protocol/constants.js';
import { Errno } from '../../protocol/errno.js';
import { encodeDmaMapRequest } from '../../protocol/commands/dma-map.js';
import { encodeDmaUnmapRequest } from '../../protocol/commands/dma-unmap.js';
import {
  QEMU_CAPS, VfioUserClient, assertErrorReply, assertReply, assertServes, native, openClient, send, startGpio,
  type ReplyMessage,
} from './helpers.js';
import { ServerProcess } from '../../fuzz/server-process.js';

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

/** V8 grows its heap in anonymous 256 KiB pages, one line of maps each. */
const V8_PAGE = 256 * 1024;

/**
 * Lines of /proc/PID/maps: all of them, those of the guest-RAM memfd, and
 * those that are not V8 heap pages (anonymous, exactly 256 KiB).
 */
function mappings(pid: number | 'self' = 'self'): { all: number; file: number; notHeap: number } {
  const lines = fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter(Boolean);
  const heapPage = (l: string) => {
    const [range, , , , , name] = l.split(/\s+/);
    const [lo, hi] = range!.split('-').map((x) => parseInt(x, 16));
    return !name && hi! - lo! === V8_PAGE;
  };
  return {
    all: lines.length,
    file: lines.filter((l) => l.includes('/memfd:guest-ram')).length,
    notHeap: lines.filter((l) => !heapPage(l)).length,
  };
}

/** Every DMA_MAP of 0..MAPS-1, WINDOW in flight; returns how many failed and the first failure. */
async function flood(c: VfioUserClient, fd: number): Promise<{ failed: number; firstErr: string }> {
  let failed = 0;
  let firstErr = '';
  for (let start = 0; start < MAPS; start += WINDOW) {
    const batch: Promise<ReplyMessage>[] = [];
    for (let i = start; i < Math.min(MAPS, start + WINDOW); i++) batch.push(mapRequest(c, fd, i));
    for (const r of await Promise.all(batch)) {
      if (r.errno !== 0 && failed++ === 0) firstErr = `msg ${r.header.msgId}: errno ${r.errno}`;
    }
  }
  return { failed, firstErr };
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

  const { failed, firstErr } = await flood(c, fd);
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

t.test('the same flood against a server process: its mappings stay within a few dozen', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-flood-'));
  const server = await ServerProcess.start('gpio', dir);
  t.teardown(async () => {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const c = await VfioUserClient.open(server.socket, QEMU_CAPS);
  t.teardown(() => c.close());
  const fd = sealedMemfd(FILE_PAGES * PAGE);
  t.teardown(() => native.close(fd));
  await assertServes(t, c, 'before the flood');
  const fdsBefore = server.fdCount();
  const before = mappings(server.pid);

  const { failed, firstErr } = await flood(c, fd);
  t.equal(failed, 0, `every DMA_MAP up to max_dma_maps succeeds${firstErr ? ` (first failure ${firstErr})` : ''}`);
  const peak = mappings(server.pid);
  t.equal(peak.file - before.file, 1, 'one mapping of the memfd serves every DMA_MAP');
  // Besides V8's heap pages (the JS objects of 65,535 areas, about 180 bytes
  // each, and garbage not yet collected), a few dozen at most.
  t.ok(peak.notHeap - before.notHeap <= 36, `the server's mappings other than V8 heap pages grew by ${peak.notHeap - before.notHeap} (${before.notHeap} → ${peak.notHeap})`);
  t.ok(peak.all - before.all <= 512, `all of the server's mappings grew by ${peak.all - before.all} (${before.all} → ${peak.all}), far below one per DMA_MAP`);
  t.equal(server.fdCount(), fdsBefore, 'the server closed every received fd');

  const over = await send(c, Command.DMA_MAP, encodeDmaMapRequest({ addr: IOVA_BASE - BigInt(PAGE), size: BigInt(PAGE) }), { fds: [fd] });
  assertErrorReply(t, over.reply, over, Errno.ENOSPC, 'one DMA_MAP beyond max_dma_maps');
  const all = encodeDmaUnmapRequest({ addr: 0n, size: 0n, flags: VFIO_DMA_UNMAP_FLAG_ALL });
  const ua = await send(c, Command.DMA_UNMAP, all);
  assertReply(t, ua.reply, ua, all, 'UNMAP_ALL');
  await assertServes(t, c, 'after UNMAP_ALL');
  t.equal(mappings(server.pid).file, before.file, 'UNMAP_ALL munmap\'d the memfd');
  t.ok(server.alive, 'the server process is alive');
});
