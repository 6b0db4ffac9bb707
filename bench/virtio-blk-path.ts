// virtio-blk's own request path, in process, without QEMU or a guest: the
// CPU time per 4 KiB read (ring walk, DMA translation, file I/O, used ring,
// interrupt decision) of our device, with a ring driver written in the test
// environment over guest memory in this process, beside a floor measured in
// the same run: the same 4 KiB preadv from the same page-cached image into
// the same memory, with nothing around it. Ratio = floor / ours in CPU time
// (1.0 would mean the device costs nothing beyond its file I/O). The ring
// driver's own work counts on our side. Load on the machine moves the wall
// clock a lot and CPU time little: this row shows what the device code costs.
//
// Runnable alone: node dist/bench/virtio-blk-path.js
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as native from '../native/index.js';
import { VirtioBlk } from '../devices/virtio-blk/index.js';
import { BlkType } from '../devices/virtio-blk/constants.js';
import { attach, DEFAULT_DRIVER_FEATURES, enableMsix, makeGuest, PciDriver, type DriverRing } from '../test/devices/virtio/env.js';
import { envNumber, formatTable, median, type BenchRow } from './lib.js';

const IMAGE = 64 << 20;
const BLOCK = 4096;
const ROUNDS = 5;

/** CPU µs per operation of `n` operations done by `fn`. */
async function cpuPer(n: number, fn: () => Promise<void> | void): Promise<number> {
  const c0 = process.cpuUsage();
  await fn();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n;
}

export async function benchVirtioBlkPath(): Promise<BenchRow[]> {
  const requests = envNumber('BENCH_VBLK_PATH_REQUESTS', 40_000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-blk-path-'));
  const image = path.join(dir, 'disk.img');
  fs.writeFileSync(image, Buffer.alloc(IMAGE, 1)); // in the page cache from here on
  let wake: (() => void) | null = null;
  const fdOps = {
    signal: () => {
      const w = wake;
      wake = null;
      w?.();
      return 0;
    },
    close: () => 0,
  };
  const blk = new VirtioBlk({ disk: image, fdOps });
  try {
    const g = makeGuest(32 << 20);
    attach(blk.device, g);
    const drv = new PciDriver(blk.device, g.mem);
    const ring: DriverRing = drv.init(1, { msix: true, features: DEFAULT_DRIVER_FEATURES | (drv.enablePci(), drv.deviceFeatures()) })[0]!;
    enableMsix(blk.device, { signals: [], closed: [], ops: fdOps });
    const mem = g.mem;
    const reqs = Array.from({ length: 32 }, () => {
      const hdr = mem.alloc(16);
      const data = mem.alloc(BLOCK, BLOCK);
      const st = mem.alloc(1);
      mem.set32(hdr, BlkType.IN);
      const head = ring.indirect([
        { addr: hdr, len: 16 },
        { addr: data, len: BLOCK, write: true },
        { addr: st, len: 1, write: true },
      ]);
      return { hdr, data, head };
    });
    let seed = 1;
    const sector = () => ((seed = (seed * 1103515245 + 12345) >>> 0) % (IMAGE / BLOCK)) * (BLOCK / 512);
    const ours = (depth: number) =>
      cpuPer(requests, async () => {
        for (let done = 0; done < requests; done += depth) {
          for (let k = 0; k < depth; k++) mem.set64(reqs[k]!.hdr + 8, sector());
          const want = (ring.usedIdx + depth) & 0xffff;
          // used_event: one interrupt, at the last completion (as a driver that waits for all).
          mem.set16(ring.avail + 4 + 2 * ring.size, (want - 1) & 0xffff);
          ring.push(...reqs.slice(0, depth).map((r) => r.head));
          drv.notify(0);
          while (ring.usedIdx !== want) await new Promise<void>((r) => (wake = r));
          ring.takeUsed();
        }
      });
    // The floor: the same reads into the same guest memory, straight.
    const fd = fs.openSync(image, 'r');
    const view = mem.view(reqs[0]!.data, BLOCK);
    const list = { buffers: [view.buffer], spans: new Float64Array([0, view.byteOffset, BLOCK]), count: 1 };
    const floor = () =>
      cpuPer(requests, () => {
        for (let i = 0; i < requests; i++) {
          const r = native.preadvSpans(fd, list, sector() * 512, true);
          if (typeof r !== 'number') throw new Error('the floor read went to the thread pool');
        }
      });
    const rows: BenchRow[] = [];
    try {
      for (const depth of [1, 32]) {
        await ours(depth); // warm-up: optimized code on both sides
        await floor();
        const o: number[] = [];
        const f: number[] = [];
        for (let i = 0; i < ROUNDS; i++) {
          o.push(await ours(depth));
          f.push(await floor());
        }
        const mo = median(o);
        const mf = median(f);
        rows.push({
          name: `virtio-blk request path, 4K read, ${depth} in flight`,
          value: mo,
          floor: mf,
          ratio: mf / mo,
          unit: 'CPU-µs/req',
          note:
            `in process, no QEMU: medians of ${ROUNDS} x ${requests} requests (ours ${o.map((x) => x.toFixed(2)).join('/')}, ` +
            `bare preadv ${f.map((x) => x.toFixed(2)).join('/')} CPU-µs); ratio = preadv / ours`,
        });
      }
    } finally {
      fs.closeSync(fd);
    }
    return rows;
  } finally {
    blk.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    process.stdout.write(formatTable(await benchVirtioBlkPath()) + '\n');
  } catch (e) {
    console.error((e as Error).stack ?? e);
    process.exitCode = 1;
  }
}
