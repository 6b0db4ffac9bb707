// `npm run bench`: runs every bench module of BENCHES in turn and prints one
// table of ratios against floors measured in the same run.  Exits 0 even when
// a goal is missed (this is a report); non-zero only when something failed to
// run.  To add a bench: write bench/<name>.ts exporting an async function that
// returns BenchRow[] (see ./lib.ts) and add a line below.
//
//   BENCH_ONLY=socket,iommu,dma-map,scale,virtio-blk,nvme,boot   run only these modules
//   BENCH_JSON=path           also write all rows as JSON to path

import { existsSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { type BenchRow, formatTable, progress } from './lib.js';

interface BenchModule {
  name: string;
  /** compiled module, relative to this file */
  file: string;
  exportName: string;
  /** optional: skipped (not failed) while its module is not built */
  optional: boolean;
}

const BENCHES: BenchModule[] = [
  { name: 'socket', file: './socket.js', exportName: 'benchSocket', optional: false },
  { name: 'iommu', file: './iommu.js', exportName: 'benchIommu', optional: true },
  { name: 'dma-map', file: './dma-map.js', exportName: 'benchDmaMap', optional: true },
  { name: 'scale', file: './scale.js', exportName: 'benchScale', optional: true },
  { name: 'virtio-blk-path', file: './virtio-blk-path.js', exportName: 'benchVirtioBlkPath', optional: true },
  { name: 'virtio-blk', file: './virtio-blk.js', exportName: 'benchVirtioBlk', optional: true },
  { name: 'nvme', file: './nvme.js', exportName: 'benchNvme', optional: true },
  { name: 'boot', file: './boot.js', exportName: 'benchBoot', optional: true },
];

function checkRows(name: string, rows: unknown): BenchRow[] {
  if (!Array.isArray(rows)) throw new Error(`${name}: expected an array of rows, got ${typeof rows}`);
  return rows.map((r: unknown, i) => {
    const o = r as Partial<BenchRow> | null;
    if (!o || typeof o.name !== 'string' || typeof o.unit !== 'string')
      throw new Error(`${name}: row ${i} lacks name/unit: ${JSON.stringify(r)}`);
    for (const k of ['value', 'floor', 'ratio'] as const)
      if (typeof o[k] !== 'number') throw new Error(`${name}: row ${i} (${o.name}): ${k} is not a number`);
    return o as BenchRow;
  });
}

async function main(): Promise<number> {
  const only = process.env.BENCH_ONLY?.split(',').map((s) => s.trim()).filter(Boolean);
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  progress(`node ${process.version}, ${cpus().length} CPUs (${cpu})`);

  const rows: BenchRow[] = [];
  const skipped: string[] = [];
  let failed = false;
  for (const b of BENCHES) {
    if (only && !only.includes(b.name)) continue;
    const url = new URL(b.file, import.meta.url);
    if (!existsSync(fileURLToPath(url))) {
      if (b.optional) {
        skipped.push(`${b.name} (${b.file} not built)`);
        continue;
      }
      failed = true;
      rows.push({ name: b.name, value: NaN, floor: NaN, ratio: NaN, unit: '', error: `${b.file} not found` });
      continue;
    }
    try {
      const mod = (await import(url.href)) as Record<string, unknown>;
      const fn = mod[b.exportName];
      if (typeof fn !== 'function') {
        if (b.optional) {
          skipped.push(`${b.name} (${b.file} does not export ${b.exportName})`);
          continue;
        }
        throw new Error(`${b.file} does not export ${b.exportName}()`);
      }
      progress(`running ${b.name}`);
      const got = checkRows(b.name, await (fn as () => Promise<unknown>)());
      rows.push(...got);
    } catch (e) {
      failed = true;
      const err = e as Error;
      progress(`${b.name} failed: ${err.stack ?? err.message}`);
      rows.push({ name: b.name, value: NaN, floor: NaN, ratio: NaN, unit: '', error: err.message });
    }
  }

  console.log('');
  console.log('vfio-user-ts benchmarks: ours vs a floor measured in the same run (ratio = ours / floor)');
  console.log('');
  console.log(formatTable(rows));
  if (skipped.length) console.log(`\nskipped: ${skipped.join('; ')}`);
  if (process.env.BENCH_JSON) writeFileSync(process.env.BENCH_JSON, JSON.stringify(rows, null, 2) + '\n');
  if (rows.some((r) => r.error)) failed = true;
  return failed ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(e);
    process.exitCode = 2;
  },
);
