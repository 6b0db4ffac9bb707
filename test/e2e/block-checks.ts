// What the block-device e2e tests (virtio-blk, NVMe) share: watching the
// server's IOMMU context while a guest runs (maps, unmaps, DMA messages,
// backing kinds), keeping the server's log for failure reports, and the
// checks of a known-pattern round trip (guest-scripts/block.ts) and of the
// DMA path a variant (shared RAM, vIOMMU, private RAM) must have taken.
import type { Test } from 'tap';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { IommuContext } from '../../iommu/context.js';
import type { DmaMessenger } from '../../iommu/backing-message.js';

export const MiB = 1 << 20;

/** How a variant's guest reaches the device: its RAM shared or private, behind a vIOMMU or not. */
export interface Variant {
  name: string;
  memory: 'shared' | 'private';
  viommu: boolean;
}

/** What the server's IOMMU context saw: counted by wrapping its type1 entry points. */
export interface DmaStats {
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

/** Counts what reaches `ctx`'s type1 map/unmap, and the DMA messages of message-backed maps. */
export function instrument(ctx: IommuContext): DmaStats {
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

/** Adds the backing kinds of the compat IOAS's areas as they are now (call while the guest runs). */
export function sampleAreas(ctx: IommuContext, s: DmaStats): void {
  for (const a of ctx.compatIoas.list()) {
    const kind = String(a.backing.kind);
    s.sampledKinds[kind] = (s.sampledKinds[kind] ?? 0) + 1;
    s.sampledAreas++;
  }
}


export function md5(b: Buffer): string {
  return createHash('md5').update(b).digest('hex');
}

/**
 * The pattern round trip's results (guest-scripts/block.ts), then the image on
 * the host: its size, the guest's `patternMiB` MiB at offset 0 (sha256, and
 * which MiB differ when it does not match) and nothing written past them.
 * False when the guest made no pattern (nothing more to check).
 */
export function checkPatternImage(t: Test, res: Record<string, string>, image: string, imageBytes: number, patternMiB: number): boolean {
  if (!res.pattern_sha256) return false;
  t.match(res.write_status, /^0 /, 'dd oflag=direct succeeded');
  t.match(res.read_status, /^0 /, 'dd iflag=direct succeeded');
  t.match(res.pattern_sha256, /^[0-9a-f]{64}$/, 'the guest made its pattern');
  t.equal(res.readback_sha256, res.pattern_sha256, 'the guest read back what it wrote', {
    first_diff: res.first_diff,
    bad_mib: res.bad_mib,
  });
  t.equal(res.match, 'yes', 'the guest compared the bytes');

  // The same bytes in the image on the host (the guest is gone; our server still has it open).
  const img = fs.readFileSync(image);
  t.equal(img.length, imageBytes, 'the image kept its size');
  const head = img.subarray(0, patternMiB * MiB);
  const hostSha = createHash('sha256').update(head).digest('hex');
  const guestMd5s = patternMd5s(res);
  const badMiB: number[] = [];
  if (hostSha !== res.pattern_sha256) {
    for (let i = 0; i < patternMiB; i++) if (md5(head.subarray(i * MiB, (i + 1) * MiB)) !== guestMd5s[i]) badMiB.push(i);
  }
  t.equal(hostSha, res.pattern_sha256, `the image holds the guest's ${patternMiB} MiB (sha256 on the host)`, {
    differing_mib: badMiB,
  });
  const tail = img.subarray(patternMiB * MiB);
  const firstNonZero = tail.findIndex((b) => b !== 0);
  t.equal(firstNonZero, -1, 'nothing was written past the pattern', {
    offset: firstNonZero < 0 ? undefined : patternMiB * MiB + firstNonZero,
  });
  return true;
}

/** The md5 of each MiB of the guest's pattern, as the guest printed them. */
export function patternMd5s(res: Record<string, string>): string[] {
  return (res.pattern_md5s ?? '').trim().split(/\s+/);
}

/**
 * The DMA path the variant must have taken: behind a vIOMMU, more than 10
 * DMA_MAP/UNMAP that reached the IOMMU model; with private RAM, every map
 * message-backed and the data over DMA_READ/DMA_WRITE (at least `dataBytes`
 * each way); with shared RAM, fd maps, mmap-backed areas and no DMA message.
 */
export function checkDmaPath(t: Test, v: Variant, stats: DmaStats, counts: Record<string, number>, dataBytes: number): void {
  const mapUnmap = (counts.DMA_MAP ?? 0) + (counts.DMA_UNMAP ?? 0);
  if (v.viommu) {
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
    t.ok(stats.dmaReadBytes >= dataBytes, `the written data came over DMA_READ (${stats.dmaReadBytes} bytes)`);
    t.ok(stats.dmaWriteBytes >= dataBytes, `the read data went over DMA_WRITE (${stats.dmaWriteBytes} bytes)`);
  } else {
    t.ok(stats.fdMaps > 0, `guest RAM came as fds (${stats.fdMaps} DMA_MAPs with an fd)`);
    // (QEMU maps its ROMs without an fd even then: a few message-backed areas are normal.)
    t.ok((stats.sampledKinds.mmap ?? 0) > 0, `guest RAM was mmap-backed in the IOAS (${JSON.stringify(stats.sampledKinds)})`);
    t.equal(stats.dmaReads + stats.dmaWrites, 0, 'no DMA_READ/DMA_WRITE messages (zero copy)');
  }
}

/** One line on what the IOMMU context saw, for the test's comments. */
export function describeDma(stats: DmaStats, counts: Record<string, number>): string {
  return `DMA_MAP ${counts.DMA_MAP ?? 0}, DMA_UNMAP ${counts.DMA_UNMAP ?? 0} ` +
    `(type1 map ${stats.maps} [fd ${stats.fdMaps}, message ${stats.messageMaps}], unmap ${stats.unmaps}); ` +
    `DMA_READ ${stats.dmaReads} (${(stats.dmaReadBytes / MiB).toFixed(1)} MiB), ` +
    `DMA_WRITE ${stats.dmaWrites} (${(stats.dmaWriteBytes / MiB).toFixed(1)} MiB); ` +
    `sampled areas ${JSON.stringify(stats.sampledKinds)}`;
}

/** The guest's first console line comes after ~2 s under TCG; this long without one = stuck in firmware. */
export const FIRST_LINE_MS = 120_000;

/**
 * SeaBIOS probes a boot disk before the kernel prints a thing: a device that
 * never answers it leaves the console silent. `signal` aborts the boot when no
 * line came within `ms`; feed every console line to `line()`, call `stop()`
 * after the boot; `fired` tells whether it aborted.
 */
export function firstLineWatch(ms = FIRST_LINE_MS): { signal: AbortSignal; line: () => void; stop: () => void; readonly fired: boolean } {
  const silent = new AbortController();
  let lines = 0;
  const timer = setTimeout(() => { if (lines === 0) silent.abort(); }, ms);
  return {
    signal: silent.signal,
    line: () => { lines++; },
    stop: () => clearTimeout(timer),
    get fired() { return silent.signal.aborted; },
  };
}
