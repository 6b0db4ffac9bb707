// UNMAP_ALL of a full map table through the real socket path: our TS test
// client fills max_dma_maps (65,535) fd-carrying DMA_MAPs of 4 KiB windows of
// one sealed memfd (as QEMU does for a guest behind a vIOMMU) on our server in
// this process, then sends one UNMAP_ALL. The row is the longest event-loop
// stall (perf_hooks.monitorEventLoopDelay, 1 ms resolution) meanwhile: the
// server answers nothing else while it lasts. Pair rates through the socket
// are in socket.ts (a C client against a server process); the model alone in
// iommu.ts. Runnable alone: node dist/bench/dma-map.js
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import * as native from '../native/index.js';
import { Command, VFIO_DMA_UNMAP_FLAG_ALL } from '../protocol/constants.js';
import { encodeDmaMapRequest } from '../protocol/commands/dma-map.js';
import { encodeDmaUnmapRequest } from '../protocol/commands/dma-unmap.js';
import { startServer } from '../server/runtime.js';
import { VfioUserClient, type ReplyMessage } from '../testing/vfio-user-client.js';
import { formatTable, type BenchRow } from './lib.js';

const PAGE = 4096;
const MAX_MAPS = 65535;
const FILE_PAGES = 4096;
const IOVA_BASE = 2 ** 32;
/** Pipelined requests while filling (msg_ids are 16 bits). */
const FILL_WINDOW = 4096;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function check(r: ReplyMessage, what: string): void {
  if (r.errno !== 0) throw new Error(`${what}: errno ${r.errno}`);
}

function mapPayload(iova: bigint, filePage: number): Buffer {
  return encodeDmaMapRequest({ addr: iova, size: BigInt(PAGE), offset: BigInt(filePage * PAGE) });
}

const UNMAP_ALL = encodeDmaUnmapRequest({ addr: 0n, size: 0n, flags: VFIO_DMA_UNMAP_FLAG_ALL });

/** Map windows [from, to) at IOVA_BASE + i pages, pipelined. */
async function fill(c: VfioUserClient, fd: number, from: number, to: number): Promise<void> {
  for (let s = from; s < to; s += FILL_WINDOW) {
    const batch: Promise<ReplyMessage>[] = [];
    for (let i = s; i < Math.min(to, s + FILL_WINDOW); i++) {
      batch.push(c.request(Command.DMA_MAP, mapPayload(BigInt(IOVA_BASE + i * PAGE), i % FILE_PAGES), { fds: [fd] }));
    }
    for (const r of await Promise.all(batch)) check(r, 'DMA_MAP (fill)');
  }
}

export async function benchDmaMap(): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'vut-bench-dma-'));
  const sock = join(dir, 'gpio.sock');
  const rt = await startServer({ devices: [{ name: 'gpio0', kind: 'gpio', socket: sock, options: {} }] });
  const fd = native.memfdCreate('guest-ram', FILE_PAGES * PAGE);
  native.addSeals(fd, native.F_SEAL_GROW | native.F_SEAL_SHRINK | native.F_SEAL_SEAL);
  const c = await VfioUserClient.open(sock, { maxMsgFds: 16, maxDataXferSize: 1 << 20, pgsizes: PAGE, maxDmaMaps: MAX_MAPS, writeMultiple: true });
  try {
    const rows: BenchRow[] = [];
    await fill(c, fd, 0, MAX_MAPS);

    // The histogram samples when its timer runs: keep it running a little
    // before and after, so that the stall (if any) delays one sample.
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    await sleep(20);
    const t0 = performance.now();
    check(await c.request(Command.DMA_UNMAP, UNMAP_ALL), 'UNMAP_ALL');
    const took = performance.now() - t0;
    await sleep(20);
    h.disable();
    const stall = h.max / 1e6;
    rows.push({
      name: 'longest event-loop stall, UNMAP_ALL of 65,535 maps',
      value: stall,
      floor: took,
      ratio: stall / took,
      unit: 'ms',
      note: 'monitorEventLoopDelay (1 ms resolution) max while the server handles UNMAP_ALL; floor column: the whole request, send to reply (ms)',
    });
    return rows;
  } finally {
    c.close();
    native.close(fd);
    await rt.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await benchDmaMap();
  process.stdout.write(formatTable(rows) + '\n');
}
