// End to end: unmodified QEMU 11.1 boots the Debian guest against our NVMe
// controller over vfio-user, and the guest's own nvme driver uses it. Three
// boots, each writing 32 MiB of random bytes (their sha256 is the known
// pattern) to namespace 1 with O_DIRECT, reading them back with O_DIRECT and
// comparing; after the guest has powered off, the test finds the same bytes
// in the image file on the host (and nothing written past them).
//   plain    shared guest RAM (fd DMA, zero copy), and in the same boot:
//            two namespaces (two images) seen as nvme0n1 and nvme0n2 with
//            their images' sizes; a blkdiscard of 8 MiB on namespace 2 that
//            frees the image's blocks (st_blocks drops, zeros read back on the
//            host, the rest intact); 2000 single 4 KiB reads during which the
//            guest rings far fewer MMIO doorbells than it submits commands
//            (shadow doorbells, read through the control socket's device.stats);
//            a serial number of our choosing
//   viommu   intel-iommu,caching-mode=on + intel_iommu=on: the guest maps and
//            unmaps IOVAs per command, QEMU sends a DMA_MAP/UNMAP for each;
//            the namespace has 4096-byte LBAs
//   private  guest RAM not shareable: every DMA is a DMA_READ/DMA_WRITE message
//
// VFIO_USER_TS_E2E_LOG=debug (any server log level) shows the server's log
// on failure (the last lines; `warn` is kept by default).
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { provision } from '../../qemu-configs/provision.js';
import { bootGuest, describeBoot, NO_ERROR_RECOVERY, type BootResult } from '../../qemu-configs/boot.js';
import { MARK, nvmeGuestScript, type NvmeScriptOptions } from '../../qemu-configs/guest-scripts/nvme.js';
import { startServer, type RunningServer } from '../../server/runtime.js';
import { ControlClient } from '../../server/control-client.js';
import { DEVICE_STATS_OP } from '../../server/device-stats.js';
import {
  FIRST_LINE_MS, MiB, checkDmaPath, checkPatternImage, describeDma, firstLineWatch, instrument, md5,
  patternMd5s, sampleAreas, type Variant,
} from './block-checks.js';
import { captureLog } from './server-log.js';

t.setTimeout(30 * 60 * 1000);

const DEVICE = 'nvme0';
/** Namespace sizes (NSID 1, 2): different, so that each block device can be matched to its image. */
const NS_MIB = [64, 32] as const;
const PATTERN_MIB = 32;
/** On namespace 2: the first WRITE MiB of the pattern, then a discard of [OFFSET, OFFSET + LENGTH) MiB. */
const DISCARD = { nsid: 2, writeMiB: 16, offsetMiB: 4, lengthMiB: 8 } as const;
/** Single 4 KiB reads with O_DIRECT, one command each, to count doorbells against. */
const SMALL_READS = 2000;
/**
 * "Far fewer": MMIO doorbell writes during the small reads at most this share
 * of the commands. Without shadow doorbells each read costs two, an SQ tail
 * and a CQ head (measured: 4000 for 2000 reads with OACS bit 8 cleared); with
 * them 230-290 for 2000 on this machine kind, loaded or not.
 */
const MAX_MMIO_PER_COMMAND = 0.25;

type Counters = Record<string, number>;

interface Boot {
  r: BootResult;
  rt: RunningServer;
  images: string[];
  /** device.stats snapshots taken when the guest printed these marks, and after the boot ('end'). */
  snapshots: Map<string, Counters>;
  /** The images' allocated bytes (st_blocks * 512) when the guest printed these marks. */
  allocated: Map<string, number>;
  log: { lines: string[] };
}

/** What a boot serves: how many namespaces, and controller options beyond the images. */
interface Served {
  namespaces: number;
  lbaSize?: 512 | 4096;
  serial?: string;
}

async function bootNvme(t: Test, v: Variant, script: NvmeScriptOptions, served: Served): Promise<Boot | null> {
  const namespaces = served.namespaces;
  const p = await provision({ log: (m) => t.comment(`provision: ${m}`) });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `vut-nvme-${v.name}-`));
  const socket = path.join(dir, 'nvme.sock');
  const control = path.join(dir, 'control.sock');
  const images = NS_MIB.slice(0, namespaces).map((mib, i) => {
    const image = path.join(dir, `ns${i + 1}.img`);
    fs.writeFileSync(image, '');
    fs.truncateSync(image, mib * MiB);
    return image;
  });
  const log = captureLog();
  let rt: RunningServer | null = null;
  let client: ControlClient | null = null;
  t.teardown(async () => {
    client?.close();
    await rt?.close();
    log.restore();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const options = { disk: images, ...(served.lbaSize ? { lbaSize: served.lbaSize } : {}), ...(served.serial ? { serial: served.serial } : {}) };
  rt = await startServer({ devices: [{ name: DEVICE, kind: 'nvme', socket, options }], control });
  client = await ControlClient.connect(control);
  const ctx = rt.contexts.get(DEVICE)!;
  const dma = instrument(ctx);
  const snapshots = new Map<string, Counters>();
  const pending: Promise<void>[] = [];
  const snapshot = (label: string) => {
    pending.push(client!.call(DEVICE_STATS_OP, { device: DEVICE }).then((r) => { snapshots.set(label, r.stats as Counters); }));
  };
  const allocated = new Map<string, number>();

  const started = Date.now();
  const watch = firstLineWatch();
  const r = await bootGuest({
    provisioned: p,
    script: nvmeGuestScript({ namespaces, ...script }),
    vfioUserSockets: [socket],
    memory: v.memory,
    viommu: v.viommu,
    timeoutMs: 5 * 60 * 1000,
    signal: watch.signal,
    onLine: (l) => {
      watch.line();
      const m = l.indexOf(MARK);
      if (m < 0) return;
      const mark = l.slice(m + MARK.length).trim();
      // Mid-run, while QEMU's mappings are live (they go when it disconnects).
      if (mark === 'write-end' || mark === 'read-start') sampleAreas(ctx, dma);
      if (mark === 'small-start' || mark === 'small-end') snapshot(mark);
      if (mark === 'discard-start' || mark === 'discard-end') allocated.set(mark, fs.statSync(images[DISCARD.nsid - 1]!).blocks * 512);
    },
  });
  watch.stop();
  if (watch.fired) t.comment(`${v.name}: no console output in ${FIRST_LINE_MS / 1000} s: stopped (the guest never got past the firmware)`);
  snapshot('end');
  await Promise.all(pending);
  const res = r.results;
  t.comment(
    `${v.name}: boot+script ${((Date.now() - started) / 1000).toFixed(1)} s (accel ${r.accel}); ` +
      `guest dd write ${res.write_s ?? '?'} s, read ${res.read_s ?? '?'} s for ${PATTERN_MIB} MiB`,
  );
  const counts = rt.host(DEVICE).commandCounts;
  t.comment(`${v.name}: ${describeDma(dma, counts)}`);
  t.comment(`${v.name}: device stats ${JSON.stringify(snapshots.get('end'))}; guest irqs ${res.irqs ?? '?'}`);

  t.ok(r.done && r.exitCode === 0, `the guest ran its script to the end (${r.accel}, script exit ${r.exitCode}${res.error ? `: ${res.error}` : ''})`);
  t.notOk(r.stderr.includes(NO_ERROR_RECOVERY), 'QEMU enabled error recovery (ERR interrupt)');
  t.ok(r.poweredOff, 'the guest powered off by itself');
  t.equal(counts.VERSION, 1, 'QEMU connected once (one VERSION)');
  const boot: Boot = { r, rt, images, snapshots, allocated, log };
  if (!res.nvme_pci_driver) {
    explain(t, v, boot);
    return null;
  }
  checkController(t, v, boot, served);
  t.equal(res.kernel_trouble, '0', 'the driver logged no timeout, abort, reset, I/O error or unexpected completion', {
    first: res.kernel_trouble_first,
  });
  t.equal(snapshots.get('end')?.errors, 0, 'no command completed with an error status');
  if (checkPatternImage(t, res, images[0]!, NS_MIB[0] * MiB, PATTERN_MIB)) {
    checkDmaPath(t, v, dma, counts, PATTERN_MIB * MiB);
    const end = snapshots.get('end') ?? {};
    t.ok((end.bytesWritten ?? 0) >= PATTERN_MIB * MiB, `the writes reached our controller (${end.bytesWritten} bytes)`);
    t.ok((end.bytesRead ?? 0) >= PATTERN_MIB * MiB, `the reads came from our controller (${end.bytesRead} bytes)`);
    const dev = res.pattern_dev!;
    if (res[`${dev}_write_cache`] === 'write back') {
      t.ok((end.flushes ?? 0) >= 1, `dd conv=fsync sent a Flush to the volatile write cache (${end.flushes})`);
    }
  }
  return boot;
}

/** The controller and its namespaces as the guest's driver sees them. */
function checkController(t: Test, v: Variant, b: Boot, served: Served): void {
  const res = b.r.results;
  const namespaces = served.namespaces;
  t.equal(res.nvme_class, '0x010802', 'class code 01 08 02 (NVM Express)');
  t.equal(res.nvme_pci_driver, 'nvme', 'the nvme driver bound to the PCI function');
  t.equal(res.nvme_ctrl, 'nvme0', 'the controller is nvme0');
  t.equal(res.nvme_state, 'live', 'the controller is live');
  if (served.serial) t.equal(res.nvme_serial?.trim(), served.serial, `the serial number is the one served (${served.serial})`);
  t.ok(Number(res.nvme_msix_vectors) >= 2, `the driver enabled MSI-X vectors for the admin and I/O queues (${res.nvme_msix_vectors})`);
  t.ok(Number(res.nvme_queue_count) >= 2, `the driver created I/O queues (queue_count ${res.nvme_queue_count})`);
  if (v.viommu) t.match(res.nvme_iommu_domain ?? '', /^DMA/, `the guest put the controller in a DMA domain (${res.nvme_iommu_domain})`);
  const names = (res.names ?? '').trim().split(/\s+/).filter(Boolean);
  t.same([...names].sort(), Array.from({ length: namespaces }, (_, i) => `nvme0n${i + 1}`), `namespaces visible as ${names.join(' ')}`);
  for (let nsid = 1; nsid <= namespaces; nsid++) {
    const name = names.find((n) => res[`${n}_nsid`] === String(nsid));
    t.ok(name, `a block device for NSID ${nsid}`);
    if (!name) continue;
    const bytes = Number(res[`${name}_sectors`]) * 512; // sysfs counts 512-byte sectors whatever the LBA size
    t.equal(bytes, NS_MIB[nsid - 1]! * MiB, `/dev/${name} (NSID ${nsid}) has its image's size, ${NS_MIB[nsid - 1]} MiB`);
    t.equal(res[`${name}_ro`], '0', `/dev/${name} is writable`);
    t.equal(res[`${name}_lbs`], String(served.lbaSize ?? 512), `/dev/${name} has ${served.lbaSize ?? 512}-byte logical blocks`);
  }
}

/** The discard on namespace 2: the image lost the blocks, holds zeros there and the pattern around them. */
function checkDiscard(t: Test, b: Boot): void {
  const res = b.r.results;
  const dev = res.discard_dev ?? '?';
  t.match(res.discard_write_status, /^0 /, `the guest wrote ${DISCARD.writeMiB} MiB to /dev/${dev}`);
  t.ok(Number(res[`${dev}_discard_max`]) > 0, `the namespace supports discard (discard_max_bytes ${res[`${dev}_discard_max`]})`);
  t.match(res.discard_status, /^0/, `blkdiscard of ${DISCARD.lengthMiB} MiB at ${DISCARD.offsetMiB} MiB succeeded`);
  const image = b.images[DISCARD.nsid - 1]!;
  const before = b.allocated.get('discard-start');
  const after = fs.statSync(image).blocks * 512;
  const written = DISCARD.writeMiB * MiB;
  const kept = written - DISCARD.lengthMiB * MiB;
  t.comment(`discard: image allocation ${before === undefined ? '?' : before / MiB} MiB before, ${after / MiB} MiB after`);
  t.ok(before !== undefined && before >= written, `before the discard the image had the ${DISCARD.writeMiB} MiB allocated (${before})`);
  t.ok(after <= kept + MiB, `after it, at most ${kept / MiB + 1} MiB stay allocated: st_blocks dropped (${after} bytes)`);
  const img = fs.readFileSync(image);
  const hole = img.subarray(DISCARD.offsetMiB * MiB, (DISCARD.offsetMiB + DISCARD.lengthMiB) * MiB);
  t.equal(hole.findIndex((x) => x !== 0), -1, 'the discarded range reads as zeros on the host');
  const sums = patternMd5s(res);
  const bad: number[] = [];
  for (let i = 0; i < DISCARD.writeMiB; i++) {
    if (i >= DISCARD.offsetMiB && i < DISCARD.offsetMiB + DISCARD.lengthMiB) continue;
    if (md5(img.subarray(i * MiB, (i + 1) * MiB)) !== sums[i]) bad.push(i);
  }
  t.same(bad, [], 'the MiB around the discarded range still hold the pattern');
  const end = b.snapshots.get('end') ?? {};
  t.ok((end.dsm ?? 0) >= 1, `the controller got Dataset Management commands (${end.dsm})`);
}

/** Shadow doorbells: during the small reads, far fewer MMIO doorbell writes than commands. */
function checkShadowDoorbells(t: Test, b: Boot): void {
  const res = b.r.results;
  t.match(res.small_status, /^0 /, `${SMALL_READS} reads of 4 KiB with O_DIRECT succeeded`);
  const s0 = b.snapshots.get('small-start');
  const s1 = b.snapshots.get('small-end');
  if (!s0 || !s1) {
    t.fail('device.stats snapshots around the small reads');
    return;
  }
  t.equal(s1.shadowDoorbells, 1, 'Doorbell Buffer Config is in effect (the driver set up shadow doorbells)');
  const commands = s1.commands! - s0.commands!;
  const mmio = s1.mmioDoorbellWrites! - s0.mmioDoorbellWrites!;
  t.comment(`small reads: ${commands} commands, ${mmio} MMIO doorbell writes, ${s1.shadowTailReads! - s0.shadowTailReads!} submissions seen through shadow doorbells`);
  t.ok(commands >= SMALL_READS * 0.9, `the controller counted the reads as commands (${commands})`);
  t.ok(mmio <= commands * MAX_MMIO_PER_COMMAND, `far fewer MMIO doorbell writes than commands: ${mmio} for ${commands} (at most ${MAX_MMIO_PER_COMMAND} each)`);
}

function explain(t: Test, v: Variant, b: Boot): void {
  if (t.passing()) return;
  t.comment(`${v.name}: what went wrong\n${describeBoot(b.r)}\n--- server log (last ${b.log.lines.length} lines) ---\n${b.log.lines.join('\n')}`);
}

t.test('nvme: shared RAM; two namespaces, 32 MiB pattern, discard, shadow doorbells', async (t) => {
  const v: Variant = { name: 'plain', memory: 'shared', viommu: false };
  const b = await bootNvme(t, v, {
    pattern: { nsid: 1, mib: PATTERN_MIB },
    discard: DISCARD,
    smallReads: { nsid: 1, count: SMALL_READS },
  }, { namespaces: 2, serial: 'E2E-SERIAL-7' });
  if (!b) return;
  checkDiscard(t, b);
  checkShadowDoorbells(t, b);
  explain(t, v, b);
});

t.test('nvme: 32 MiB pattern behind a guest vIOMMU, 4096-byte LBAs', async (t) => {
  const v: Variant = { name: 'viommu', memory: 'shared', viommu: true };
  const b = await bootNvme(t, v, { pattern: { nsid: 1, mib: PATTERN_MIB } }, { namespaces: 1, lbaSize: 4096 });
  if (b) explain(t, v, b);
});

t.test('nvme: 32 MiB pattern with private RAM (DMA_READ/DMA_WRITE)', async (t) => {
  const v: Variant = { name: 'private', memory: 'private', viommu: false };
  const b = await bootNvme(t, v, { pattern: { nsid: 1, mib: PATTERN_MIB } }, { namespaces: 1 });
  if (b) explain(t, v, b);
});
