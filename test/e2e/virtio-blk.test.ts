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
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { provision, type Provisioned } from '../../qemu-configs/provision.js';
import { bootGuest, describeBoot, NO_ERROR_RECOVERY, type BootResult } from '../../qemu-configs/boot.js';
import { MARK, virtioBlkGuestScript } from '../../qemu-configs/guest-scripts/virtio.js';
import { startServer, type RunningServer } from '../../server/runtime.js';
import { setLogLevel, setLogSink } from '../../server/log.js';
import type { IommuContext } from '../../iommu/context.js';
import type { DmaMessenger } from '../../iommu/backing-message.js';
import type { VirtioBlk } from '../../devices/virtio-blk/index.js';

t.setTimeout(30 * 60 * 1000);

const MiB = 1 << 20;
const IMAGE_MIB = 64;
const PATTERN_MIB = 32;
/** VIRTIO_F_ACCESS_PLATFORM: the device's DMA goes through the platform IOMMU. */
const VIRTIO_F_ACCESS_PLATFORM = 33;
const VIRTIO_BLK_F_FLUSH = 9;
/** The guest's first console line comes after ~2 s under TCG; this long without one = stuck in firmware. */
const FIRST_LINE_MS = 120_000;

interface Variant {
  name: string;
  memory: 'shared' | 'private';
  viommu: boolean;
}

/** What the server's IOMMU context saw: counted by wrapping its type1 entry points. */
interface DmaStats {
  maps: number;
  unmaps: number;
  fdMaps: number;
  messageMaps: number;
  /** Server→client DMA_READ / DMA_WRITE requests (one per chunk) and their bytes. */
  dmaReads: number;
  dmaReadBytes: number;
  dmaWrites: number;
  dmaWriteBytes: number;
  /** Backing kinds of the default IOAS's areas, sampled while the guest ran. */
  sampledKinds: Record<string, number>;
  sampledAreas: number;
  /** The first DMA_READs (address+length → first bytes), for failure reports. */
  firstReads: string[];
}

function instrument(ctx: IommuContext): DmaStats {
  const s: DmaStats = {
    maps: 0, unmaps: 0, fdMaps: 0, messageMaps: 0,
    dmaReads: 0, dmaReadBytes: 0, dmaWrites: 0, dmaWriteBytes: 0,
    sampledKinds: {}, sampledAreas: 0, firstReads: [],
  };
  const type1 = ctx.type1;
  const map = type1.map.bind(type1);
  const unmap = type1.unmap.bind(type1);
  type1.map = (req) => {
    s.maps++;
    if (req.fd !== undefined) s.fdMaps++;
    if (req.messenger) {
      s.messageMaps++;
      const m: DmaMessenger = req.messenger;
      const counted: DmaMessenger = {
        get maxChunk() { return m.maxChunk; },
        read: async (addr, len) => {
          s.dmaReads++;
          s.dmaReadBytes += len;
          const data = await m.read(addr, len);
          if (s.firstReads.length < 8) s.firstReads.push(`0x${addr.toString(16)}+${len}: ${data.subarray(0, 16).toString('hex')}`);
          return data;
        },
        write: (addr, data) => { s.dmaWrites++; s.dmaWriteBytes += data.length; return m.write(addr, data); },
      };
      req = { ...req, messenger: counted };
    }
    return map(req);
  };
  type1.unmap = (req) => {
    s.unmaps++;
    return unmap(req);
  };
  return s;
}

function sampleAreas(ctx: IommuContext, s: DmaStats): void {
  for (const a of ctx.compatIoas.list()) {
    const kind = String(a.backing.kind);
    s.sampledKinds[kind] = (s.sampledKinds[kind] ?? 0) + 1;
    s.sampledAreas++;
  }
}

/** Keeps the server's log lines (the last `max`) for failure reports. */
function captureLog(max = 400): { lines: string[]; restore: () => void } {
  const lines: string[] = [];
  setLogLevel(process.env.VFIO_USER_TS_E2E_LOG || 'warn');
  const restore = setLogSink((line) => {
    lines.push(line);
    if (lines.length > max) lines.shift();
  });
  return { lines, restore };
}

function md5(b: Buffer): string {
  return createHash('md5').update(b).digest('hex');
}

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
  // SeaBIOS reads our disk before the kernel prints a thing: a device that
  // never answers it leaves the console silent. Don't wait the full timeout.
  const silent = new AbortController();
  let lines = 0;
  const firstLine = setTimeout(() => { if (lines === 0) silent.abort(); }, FIRST_LINE_MS);
  const r: BootResult = await bootGuest({
    provisioned: p,
    script: virtioBlkGuestScript({ mib: PATTERN_MIB }),
    vfioUserSockets: [socket],
    memory: v.memory,
    viommu: v.viommu,
    timeoutMs: 5 * 60 * 1000,
    signal: silent.signal,
    onLine: (l) => {
      lines++;
      // Mid-run, while QEMU's mappings are live (they go when it disconnects).
      if (l.includes(`${MARK} write-end`) || l.includes(`${MARK} read-start`)) sampleAreas(ctx, stats);
    },
  });
  clearTimeout(firstLine);
  if (silent.signal.aborted) {
    t.comment(`${v.name}: no console output in ${FIRST_LINE_MS / 1000} s: stopped (the guest never got past the firmware)`);
  }
  const res = r.results;
  const why = () => `${describeBoot(r)}\n--- server log (last ${log.lines.length} lines) ---\n${log.lines.join('\n')}`;
  t.comment(
    `${v.name}: boot+script ${((Date.now() - started) / 1000).toFixed(1)} s (accel ${r.accel}); ` +
      `guest dd write ${res.write_s ?? '?'} s, read ${res.read_s ?? '?'} s for ${PATTERN_MIB} MiB`,
  );
  const counts = rt.host('blk0').commandCounts;
  t.comment(
    `${v.name}: DMA_MAP ${counts.DMA_MAP ?? 0}, DMA_UNMAP ${counts.DMA_UNMAP ?? 0} ` +
      `(type1 map ${stats.maps} [fd ${stats.fdMaps}, message ${stats.messageMaps}], unmap ${stats.unmaps}); ` +
      `DMA_READ ${stats.dmaReads} (${(stats.dmaReadBytes / MiB).toFixed(1)} MiB), ` +
      `DMA_WRITE ${stats.dmaWrites} (${(stats.dmaWriteBytes / MiB).toFixed(1)} MiB); ` +
      `sampled areas ${JSON.stringify(stats.sampledKinds)}`,
  );

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
  t.match(res.write_status, /^0 /, 'dd oflag=direct succeeded');
  t.match(res.read_status, /^0 /, 'dd iflag=direct succeeded');
  t.match(res.pattern_sha256, /^[0-9a-f]{64}$/, 'the guest made its pattern');
  t.equal(res.readback_sha256, res.pattern_sha256, 'the guest read back what it wrote', {
    first_diff: res.first_diff,
    bad_mib: res.bad_mib,
  });
  t.equal(res.match, 'yes', 'the guest compared the bytes');
  t.ok(r.poweredOff, 'the guest powered off by itself');

  // The same bytes in the image on the host (the guest is gone; our server still has it open).
  const img = fs.readFileSync(image);
  t.equal(img.length, IMAGE_MIB * MiB, 'the image kept its size');
  const head = img.subarray(0, PATTERN_MIB * MiB);
  const hostSha = createHash('sha256').update(head).digest('hex');
  const guestMd5s = (res.pattern_md5s ?? '').trim().split(/\s+/);
  const badMiB: number[] = [];
  if (hostSha !== res.pattern_sha256) {
    for (let i = 0; i < PATTERN_MIB; i++) if (md5(head.subarray(i * MiB, (i + 1) * MiB)) !== guestMd5s[i]) badMiB.push(i);
  }
  t.equal(hostSha, res.pattern_sha256, `the image holds the guest's ${PATTERN_MIB} MiB (sha256 on the host)`, {
    differing_mib: badMiB,
  });
  const tail = img.subarray(PATTERN_MIB * MiB);
  const firstNonZero = tail.findIndex((b) => b !== 0);
  t.equal(firstNonZero, -1, 'nothing was written past the pattern', {
    offset: firstNonZero < 0 ? undefined : PATTERN_MIB * MiB + firstNonZero,
  });
  t.equal(counts.VERSION, 1, 'QEMU connected once (one VERSION)');

  const mapUnmap = (counts.DMA_MAP ?? 0) + (counts.DMA_UNMAP ?? 0);
  if (v.viommu) {
    t.equal(res.blk_features?.[VIRTIO_F_ACCESS_PLATFORM], '1', 'VIRTIO_F_ACCESS_PLATFORM negotiated');
    t.match(res.blk_iommu_domain ?? '', /^DMA/, `the guest put the device in a DMA domain (${res.blk_iommu_domain})`);
    t.ok(mapUnmap > 10, `the server saw more than 10 DMA_MAP/UNMAP messages (${mapUnmap})`);
    t.ok(stats.maps + stats.unmaps > 10, `and they reached the IOMMU model (${stats.maps} maps, ${stats.unmaps} unmaps)`);
  } else {
    t.ok(mapUnmap > 0, `QEMU mapped guest RAM (${mapUnmap} DMA_MAP/UNMAP)`);
  }
  if (v.memory === 'private') {
    t.equal(stats.fdMaps, 0, 'no DMA_MAP carried an fd');
    t.ok(stats.messageMaps > 0, `every DMA_MAP was message-backed (${stats.messageMaps})`);
    t.ok(stats.sampledAreas > 0, 'the IOAS had areas while the guest ran');
    t.same(Object.keys(stats.sampledKinds), ['message'], "every area's backing kind was 'message'");
    t.ok(stats.dmaReadBytes >= PATTERN_MIB * MiB, `the written data came over DMA_READ (${stats.dmaReadBytes} bytes)`);
    t.ok(stats.dmaWriteBytes >= PATTERN_MIB * MiB, `the read data went over DMA_WRITE (${stats.dmaWriteBytes} bytes)`);
  } else {
    t.ok(stats.fdMaps > 0, `guest RAM came as fds (${stats.fdMaps} DMA_MAPs with an fd)`);
    // (QEMU maps its ROMs without an fd even then: a few message-backed areas are normal.)
    t.ok((stats.sampledKinds.mmap ?? 0) > 0, `guest RAM was mmap-backed in the IOAS (${JSON.stringify(stats.sampledKinds)})`);
    t.equal(stats.dmaReads + stats.dmaWrites, 0, 'no DMA_READ/DMA_WRITE messages (zero copy)');
  }
}

t.test('virtio-blk: 32 MiB through the guest, shared RAM (fd DMA)', (t) =>
  blkRoundTrip(t, { name: 'plain', memory: 'shared', viommu: false }));

t.test('virtio-blk: 32 MiB through the guest, behind a guest vIOMMU', (t) =>
  blkRoundTrip(t, { name: 'viommu', memory: 'shared', viommu: true }));

t.test('virtio-blk: 32 MiB through the guest, private RAM (DMA_READ/DMA_WRITE)', (t) =>
  blkRoundTrip(t, { name: 'private', memory: 'private', viommu: false }));
