// End to end: unmodified QEMU 11.1 boots the Debian guest against our
// virtio-blk device over vfio-user. The guest's own virtio_blk driver writes
// 32 MiB of random bytes (their sha256 is the known pattern) to /dev/vda with
// O_DIRECT, reads them back with O_DIRECT and compares; after the guest has
// powered off, the test finds the same bytes in the image file on the host
// (and nothing written past them). Three variants of the same body:
//   plain    shared guest RAM: QEMU passes memfds in DMA_MAP, DMA is zero copy
//   viommu   intel-iommu,caching-mode=on + intel_iommu=on: the guest maps and
//            unmaps IOVAs per request, QEMU sends a DMA_MAP/UNMAP for each
//   private  guest RAM not shareable: no fd in DMA_MAP, every DMA is a
//            DMA_READ/DMA_WRITE message to QEMU
//
// VFIO_USER_TS_E2E_LOG=debug (any server log level) shows the server's log
// on failure (the last lines; `warn` is kept by default).
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { provision, type Provisioned } from '../../qemu-configs/provision.js';
import { bootGuest, describeBoot, NO_ERROR_RECOVERY, type BootResult } from '../../qemu-configs/boot.js';
import { MARK, virtioBlkGuestScript } from '../../qemu-configs/guest-scripts/virtio.js';
import { startServer, type RunningServer } from '../../server/runtime.js';
import type { VirtioBlk } from '../../devices/virtio-blk/index.js';
import {
  FIRST_LINE_MS, MiB, checkDmaPath, checkPatternImage, describeDma, firstLineWatch, instrument, sampleAreas, type DmaStats, type Variant,
} from './block-checks.js';
import { captureLog } from './server-log.js';

t.setTimeout(30 * 60 * 1000);

const IMAGE_MIB = 64;
const PATTERN_MIB = 32;
/** VIRTIO_F_ACCESS_PLATFORM: the device's DMA goes through the platform IOMMU. */
const VIRTIO_F_ACCESS_PLATFORM = 33;
const VIRTIO_BLK_F_FLUSH = 9;

async function blkRoundTrip(t: Test, v: Variant): Promise<void> {
  const p: Provisioned = await provision({ log: (m) => t.comment(`provision: ${m}`) });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `vut-blk-${v.name}-`));
  const socket = path.join(dir, 'blk.sock');
  const image = path.join(dir, 'disk.img');
  fs.writeFileSync(image, '');
  fs.truncateSync(image, IMAGE_MIB * MiB);
  const log = captureLog();
  let rt: RunningServer | null = null;
  t.teardown(async () => {
    await rt?.close();
    log.restore();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  rt = await startServer({
    devices: [{ name: 'blk0', kind: 'blk', socket, options: { disk: image, size: IMAGE_MIB * MiB } }],
  });
  const ctx = rt.contexts.get('blk0')!;
  const stats = instrument(ctx);

  const started = Date.now();
  const watch = firstLineWatch();
  const r: BootResult = await bootGuest({
    provisioned: p,
    script: virtioBlkGuestScript({ mib: PATTERN_MIB }),
    vfioUserSockets: [socket],
    memory: v.memory,
    viommu: v.viommu,
    timeoutMs: 5 * 60 * 1000,
    signal: watch.signal,
    onLine: (l) => {
      watch.line();
      // Mid-run, while QEMU's mappings are live (they go when it disconnects).
      if (l.includes(`${MARK} write-end`) || l.includes(`${MARK} read-start`)) sampleAreas(ctx, stats);
    },
  });
  watch.stop();
  if (watch.fired) {
    t.comment(`${v.name}: no console output in ${FIRST_LINE_MS / 1000} s: stopped (the guest never got past the firmware)`);
  }
  const res = r.results;
  const why = () => `${describeBoot(r)}\n--- server log (last ${log.lines.length} lines) ---\n${log.lines.join('\n')}`;
  t.comment(
    `${v.name}: boot+script ${((Date.now() - started) / 1000).toFixed(1)} s (accel ${r.accel}); ` +
      `guest dd write ${res.write_s ?? '?'} s, read ${res.read_s ?? '?'} s for ${PATTERN_MIB} MiB`,
  );
  const counts = rt.host('blk0').commandCounts;
  t.comment(`${v.name}: ${describeDma(stats, counts)}`);

  const blk = (rt.models.get('blk0') as VirtioBlk).stats;
  t.comment(`${v.name}: device stats ${JSON.stringify(blk)}`);
  checkRun(t, v, r, stats, counts, image);
  t.ok(blk.bytesWritten >= PATTERN_MIB * MiB, `the writes reached our device (${blk.bytesWritten} bytes)`);
  t.ok(blk.bytesRead >= PATTERN_MIB * MiB, `the reads came from our device (${blk.bytesRead} bytes)`);
  t.equal(blk.ioErrors, 0, 'no request failed');
  if (r.results.blk_features?.[VIRTIO_BLK_F_FLUSH] === '1') {
    t.ok(blk.flushes >= 1, `dd conv=fsync sent a FLUSH (${blk.flushes})`);
  }
  if (!t.passing()) {
    if (stats.firstReads.length) t.comment(`${v.name}: first DMA_READs: ${stats.firstReads.join('; ')}`);
    t.comment(`${v.name}: what went wrong\n${why()}`);
  }
}

function checkRun(t: Test, v: Variant, r: BootResult, stats: DmaStats, counts: Record<string, number>, image: string): void {
  const res = r.results;
  t.ok(r.done && r.exitCode === 0, `the guest ran its script to the end (${r.accel}, script exit ${r.exitCode})`);
  t.notOk(r.stderr.includes(NO_ERROR_RECOVERY), 'QEMU enabled error recovery (ERR interrupt)');
  if (!res.pattern_sha256) return; // nothing to check: the console and the server log say why
  t.equal(res.blk_ids, '0x1af4:0x1042', 'the guest sees a modern virtio-blk (1af4:1042)');
  t.equal(res.blk_pci_driver, 'virtio-pci', 'virtio-pci bound to the PCI function');
  t.equal(res.blk_driver, 'virtio_blk', 'virtio_blk bound to the virtio device');
  t.equal(res.sectors, String((IMAGE_MIB * MiB) / 512), 'capacity = the image size');
  t.equal(res.ro, '0', 'the disk is writable');
  t.ok(r.poweredOff, 'the guest powered off by itself');
  checkPatternImage(t, res, image, IMAGE_MIB * MiB, PATTERN_MIB);
  t.equal(counts.VERSION, 1, 'QEMU connected once (one VERSION)');
  if (v.viommu) {
    t.equal(res.blk_features?.[VIRTIO_F_ACCESS_PLATFORM], '1', 'VIRTIO_F_ACCESS_PLATFORM negotiated');
    t.match(res.blk_iommu_domain ?? '', /^DMA/, `the guest put the device in a DMA domain (${res.blk_iommu_domain})`);
  }
  checkDmaPath(t, v, stats, counts, PATTERN_MIB * MiB);
}

t.test('virtio-blk: 32 MiB through the guest, shared RAM (fd DMA)', (t) =>
  blkRoundTrip(t, { name: 'plain', memory: 'shared', viommu: false }));

t.test('virtio-blk: 32 MiB through the guest, behind a guest vIOMMU', (t) =>
  blkRoundTrip(t, { name: 'viommu', memory: 'shared', viommu: true }));

t.test('virtio-blk: 32 MiB through the guest, private RAM (DMA_READ/DMA_WRITE)', (t) =>
  blkRoundTrip(t, { name: 'private', memory: 'private', viommu: false }));
