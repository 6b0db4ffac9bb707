// virtio-blk guest I/O: one Debian guest (QEMU 11.1) with our virtio-blk over
// vfio-user and QEMU's built-in virtio-blk-pci, each on its own copy of one
// raw image, runs dd and fio (Debian's, from the fio layer) on both, rounds
// interleaved (odd rounds ours first, even rounds QEMU's first; dd steps run
// several times per round). Per step the figure of a device is the median of
// its runs; the ratio is ours / QEMU's medians, and the spread is the range
// of the paired ratios (the two devices' runs taken back to back), with the
// median of those and the interval that holds their true median at 95% or
// better (medianInterval): a miss inside it is within the rounds' noise.
//
// Like for like: QEMU's device has iommu_platform=on (it negotiates
// VIRTIO_F_ACCESS_PLATFORM as ours does, so the guest maps every buffer
// through its DMA API for both) and the same number of queues; its drive has
// cache=writeback: reads and writes through the host page cache and FLUSH as
// fdatasync, which is what our device does with its plain file descriptor.
//
// Steps: dd bs=1M O_DIRECT write and read (MB/s, guest-timed); fio 4 KiB
// random read at iodepth 1 and 32 (IOPS); fio 128 KiB sequential read at
// iodepth 4 (MB/s); and multiqueue: fio 4 KiB random read with one job per
// guest CPU at iodepth 16 each, on ours with `queues` = guest CPUs, on QEMU's,
// and on a second device of ours with one queue (the multiqueue gain row).
//
// Our server runs in this process (shared guest RAM: zero-copy DMA), so
// `node --cpu-prof dist/bench/virtio-blk.js` profiles our side of the run.
//
// Runnable alone: node dist/bench/virtio-blk.js
// Environment: BENCH_VBLK_ROUNDS (9: one round moves a few seconds of I/O, so
// rounds vary by ±20% on a shared machine), BENCH_VBLK_DD_RUNS (5: dd runs
// per disk and round; a 256 MiB run takes a fraction of a second and varies by
// ±30%), BENCH_VBLK_MIB (256: image and dd size),
// BENCH_VBLK_FIO_SECONDS (3 per fio step, after 1 s of ramp), BENCH_VBLK_SMP
// (guest CPUs, 2), BENCH_VBLK_STEPS (comma-separated subset of
// ddw,ddr,rr1,rr32,seq,mq), BENCH_VBLK_DIR (where the images go; default
// os.tmpdir()), BENCH_VBLK_LOG (server log level, default 'warn'; the log is
// printed when the run fails), BENCH_VBLK_OURS=qemu (tests the harness: "ours"
// is another built-in virtio-blk-pci, so the ratios should be near 1),
// BENCH_VBLK_TRACE=1 (where the time goes, as QEMU's trace events see it:
// qemu-trace.ts; it slows QEMU, so run it with one step, e.g. rr1).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { provision, provisionFio } from '../qemu-configs/provision.js';
import { bootGuest, describeBoot, type BootResult } from '../qemu-configs/boot.js';
import { builtinVirtioBlkArgs, vfioUserDeviceArgs } from '../qemu-configs/qemu-args.js';
import { blkBenchScript, type BlkBenchStep } from '../qemu-configs/guest-scripts/blk-bench.js';
import { parseFioTerse } from '../qemu-configs/guest-scripts/fio.js';
import { startServer, type RunningServer } from '../server/runtime.js';
import { parseQemuTrace, qemuTraceArgs, type Timeline } from './qemu-trace.js';
import type { VirtioBlk } from '../devices/virtio-blk/index.js';
import { allocatedImages, ddRedone, envNumber, formatTable, fsTypeOf, median, medianInterval, progress, type BenchRow } from './lib.js';
import { keepLogTail } from '../server/log.js';

const MiB = 1 << 20;
const GOAL = 1.0;
const CACHE_MODE = 'writeback';

interface Disk {
  label: string;
  slot: string;
  pci: string;
}
const OURS: Disk = { label: 'ours', slot: '08.0', pci: '0000:00:08.0' };
const QEMU: Disk = { label: 'qemu', slot: '10.0', pci: '0000:00:10.0' };
const OURS_1Q: Disk = { label: 'ours1q', slot: '18.0', pci: '0000:00:18.0' };

interface StepDef {
  id: string;
  title: string;
  unit: 'MB/s' | 'IOPS';
  goal?: number;
  step: Omit<BlkBenchStep, 'id' | 'disks'>;
}

function stepDefs(mib: number, seconds: number, smp: number, ddRuns: number): StepDef[] {
  const fio = `--ioengine=libaio --direct=1 --size=${mib}M --norandommap --randrepeat=0 --time_based --runtime=${seconds} --ramp_time=1`;
  return [
    { id: 'ddw', title: 'dd write 1 MiB O_DIRECT', unit: 'MB/s', goal: GOAL, step: { dd: `if=/dev/zero of=$dev bs=1M count=${mib} oflag=direct`, ddRequests: mib, runs: ddRuns } },
    { id: 'ddr', title: 'dd read 1 MiB O_DIRECT', unit: 'MB/s', goal: GOAL, step: { dd: `if=$dev of=/dev/null bs=1M count=${mib} iflag=direct`, ddRequests: mib, runs: ddRuns } },
    { id: 'rr1', title: 'fio 4K randread iodepth 1', unit: 'IOPS', goal: GOAL, step: { fio: `${fio} --rw=randread --bs=4k --iodepth=1` } },
    { id: 'rr32', title: 'fio 4K randread iodepth 32', unit: 'IOPS', goal: GOAL, step: { fio: `${fio} --rw=randread --bs=4k --iodepth=32` } },
    { id: 'seq', title: 'fio 128K seq read iodepth 4', unit: 'MB/s', step: { fio: `${fio} --rw=read --bs=128k --iodepth=4` } },
    {
      id: 'mq',
      title: `fio 4K randread ${smp} jobs x iodepth 16`,
      unit: 'IOPS',
      step: { fio: `${fio} --rw=randread --bs=4k --iodepth=16 --numjobs=${smp} --cpus_allowed=0-${smp - 1} --cpus_allowed_policy=split` },
    },
  ];
}

export async function benchVirtioBlk(): Promise<BenchRow[]> {
  const rounds = envNumber('BENCH_VBLK_ROUNDS', 9);
  const mib = envNumber('BENCH_VBLK_MIB', 256);
  const seconds = envNumber('BENCH_VBLK_FIO_SECONDS', 3);
  const smp = envNumber('BENCH_VBLK_SMP', 2);
  const ddRuns = envNumber('BENCH_VBLK_DD_RUNS', 5);
  const only = process.env.BENCH_VBLK_STEPS?.split(',').map((s) => s.trim()).filter(Boolean);
  const defs = stepDefs(mib, seconds, smp, ddRuns).filter((d) => !only || only.includes(d.id));
  if (defs.length === 0) throw new Error(`BENCH_VBLK_STEPS=${process.env.BENCH_VBLK_STEPS}: no known step`);
  const withOneQueue = smp > 1 && defs.some((d) => d.id === 'mq');
  const log = (m: string) => progress(`provision: ${m}`);
  const p = await provision({ log });
  const fioLayer = await provisionFio({ log });
  const base = process.env.BENCH_VBLK_DIR || os.tmpdir();
  const dir = fs.mkdtempSync(path.join(base, 'vut-bench-blk-'));
  const image = (d: Disk) => path.join(dir, `${d.label}.img`);
  const where = `${base} (${fsTypeOf(dir)})`;
  const { lines: logLines, restore: restoreLog } = keepLogTail(process.env.BENCH_VBLK_LOG || 'warn', 300);
  let rt: RunningServer | null = null;
  try {
    // Each device has its own image, all made alike and in the host page cache.
    const disks = withOneQueue ? [OURS, QEMU, OURS_1Q] : [OURS, QEMU];
    allocatedImages(disks.map(image), mib * MiB);
    progress(
      `virtio-blk: ${mib} MiB images in ${where}; ${rounds} rounds of ${defs.map((d) => d.id).join(',')} ` +
        `(fio ${seconds} s each) on ${disks.map((d) => d.label).join(', ')}; guest CPUs ${smp}`,
    );

    const standIn = process.env.BENCH_VBLK_OURS === 'qemu';
    const ours = (d: Disk, queues: number) => {
      if (standIn) return builtinArgs(d, image(d), queues);
      return vfioUserDeviceArgs(path.join(dir, `${d.label}.sock`), { addr: d.slot });
    };
    if (!standIn) {
      rt = await startServer({
        devices: disks
          .filter((d) => d !== QEMU)
          .map((d) => ({
            name: d.label,
            kind: 'blk',
            socket: path.join(dir, `${d.label}.sock`),
            options: { disk: image(d), queues: d === OURS_1Q ? 1 : smp },
          })),
      });
    }
    const steps: BlkBenchStep[] = defs.map((d) => ({
      id: d.id,
      disks: d.id === 'mq' && withOneQueue ? [OURS.label, QEMU.label, OURS_1Q.label] : [OURS.label, QEMU.label],
      ...d.step,
    }));
    const traceFile = process.env.BENCH_VBLK_TRACE === '1' && !standIn ? path.join(dir, 'qemu-trace.log') : undefined;
    const started = performance.now();
    const r = await bootGuest({
      provisioned: p,
      layers: [fioLayer.archive],
      script: blkBenchScript({ disks, steps, rounds }),
      extraArgs: [
        ...ours(OURS, smp),
        ...builtinArgs(QEMU, image(QEMU), smp),
        ...(withOneQueue ? ours(OURS_1Q, 1) : []),
        ...(traceFile ? qemuTraceArgs(traceFile) : []),
      ],
      memory: 'shared',
      smp,
      timeoutMs: 60 * 60 * 1000,
      onLine: (l) => {
        const m = /@@ROUND (\d+)/.exec(l);
        if (m) progress(`virtio-blk: round ${m[1]} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
      },
    });
    const failure = (why: string) =>
      new Error(`virtio-blk bench: ${why}\n${describeBoot(r)}\n--- server log (last ${logLines.length} lines) ---\n${logLines.join('\n')}`);
    if (!r.done || r.exitCode !== 0) throw failure(`the guest script did not finish (${r.results.error ?? 'see the console'})`);
    if (r.results.warmup_error) throw failure(`warm-up dd failed: ${r.results.warmup_error}`);

    const rows: BenchRow[] = [];
    for (const d of defs) {
      const runs = rounds * (d.step.runs ?? 1);
      const value = (disk: Disk, run: number) => measure(r, d, disk.label, run, mib, failure);
      const series = (disk: Disk) => Array.from({ length: runs }, (_, i) => value(disk, i + 1));
      const pairs: [Disk, Disk, string][] = [[OURS, QEMU, `${d.title}`]];
      if (d.id === 'mq' && withOneQueue) pairs.push([OURS, OURS_1Q, `  multiqueue gain: ours ${smp} queues vs ours 1 queue`]);
      for (const [a, b, name] of pairs) {
        const xs = series(a);
        const ys = series(b);
        // Each run's two figures were taken back to back.
        const perRun = xs.map((x, i) => x / ys[i]!);
        const fmt = (v: number[]) => v.map((x) => (d.unit === 'IOPS' ? Math.round(x) : x.toFixed(0))).join('/');
        const whole = d.step.ddRequests === undefined ? '' : `; ${[a, b].map((disk) => ddRedone(r.results, disk.label, d.id, runs)).join(', ')}`;
        const ci = medianInterval(perRun);
        rows.push({
          name: b === QEMU ? `virtio-blk guest ${name}` : name,
          value: median(xs),
          floor: median(ys),
          ratio: median(xs) / median(ys),
          unit: d.unit,
          ...(b === QEMU && d.goal !== undefined ? { goal: d.goal } : {}),
          note:
            `medians of ${runs === rounds ? rounds : `${runs} runs (${rounds} rounds x ${d.step.runs})`}; ` +
            `paired ratio ${Math.min(...perRun).toFixed(2)}-${Math.max(...perRun).toFixed(2)}, median ${median(perRun).toFixed(2)}, ` +
            `its ${Math.floor(ci.coverage * 100)}% interval ${ci.low.toFixed(2)}-${ci.high.toFixed(2)} ` +
            `(${a.label} ${fmt(xs)}, ${b.label} ${fmt(ys)})${whole}`,
        });
      }
    }
    const model = rt ? (rt.models.get(OURS.label) as VirtioBlk) : undefined;
    const stats = model?.stats;
    const q = model?.transport.queues.reduce(
      (a, v) => ({
        kicks: a.kicks + v.stats.kicks,
        hits: a.hits + v.stats.polledHits,
        misses: a.misses + v.stats.polledMisses,
        yields: a.yields + v.stats.polledYields,
        paid: a.paid + v.window.trial.paid,
        unpaid: a.unpaid + v.window.trial.unpaid,
      }),
      { kicks: 0, hits: 0, misses: 0, yields: 0, paid: 0, unpaid: 0 },
    );
    rows[rows.length - 1]!.note += `\n      ${[
      (standIn ? 'HARNESS CHECK (BENCH_VBLK_OURS=qemu): "ours" is a built-in virtio-blk-pci; ' : '') +
        `floor = QEMU's built-in virtio-blk-pci, iommu_platform=on, cache=${CACHE_MODE} (host page cache + fdatasync on FLUSH, ` +
        `as our plain-fd file I/O), aio=threads, same number of queues; each device on its own copy of one ${mib} MiB image`,
      `${r.accel.toUpperCase()} guest, ${smp} vCPUs, ${os.cpus().length} host CPUs, host load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} at the end; ` +
        `images ${where}; blk-mq queues ours ${r.results.ours_nr_queues}, QEMU ${r.results.qemu_nr_queues}` +
        (withOneQueue ? `, ours1q ${r.results.ours1q_nr_queues}` : '') +
        `; scheduler ${(r.results.ours_scheduler ?? '').trim()}; fio ${fioLayer.version}` +
        (stats ? `; our device served ${stats.reads} reads, ${stats.writes} writes` : '') +
        (q ? `; its queues took ${q.kicks} kicks; ring watch windows: ${q.hits} found a buffer, ${q.misses} did not, ${q.yields} ended when another thread held the CPU; they paid in ${q.paid} of ${q.paid + q.unpaid} trials` : ''),
      ...[OURS, QEMU].map(
        (d) =>
          `${d.label}: features ${r.results[`${d.label}_features`] ?? '?'}; ${r.results[`${d.label}_geometry`] ?? ''}; ` +
          `/sys/block stat ${(r.results[`${d.label}_stat`] ?? '').trim().split(/\s+/).join(' ')}`,
      ),
    ].join('\n      ')}`;
    if (traceFile) rows.push(...traceRows(parseQemuTrace(fs.readFileSync(traceFile, 'utf8'), path.join(dir, `${OURS.label}.sock`))));
    return rows;
  } finally {
    await rt?.close();
    restoreLog();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Median doorbell-to-interrupt and interrupt-to-doorbell times of both devices (ratio: QEMU's / ours, above 1: ours is quicker). */
function traceRows({ ours, qemu }: { ours: Timeline; qemu: Timeline }): BenchRow[] {
  const spread = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    const at = (q: number) => (s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]!.toFixed(0) : '-');
    return `${at(0.1)}/${at(0.5)}/${at(0.9)}`;
  };
  const row = (name: string, of: (t: Timeline) => number[], what: string): BenchRow => ({
    name,
    value: median(of(ours)),
    floor: median(of(qemu)),
    ratio: median(of(qemu)) / median(of(ours)),
    unit: 'µs',
    note: `${what}; p10/p50/p90 ours ${spread(of(ours))}, QEMU's ${spread(of(qemu))} µs`,
  });
  return [
    row('  traced: doorbell to interrupt', (t) => t.doorbellToInterrupt, `as QEMU's trace events see it (traced run: slower than untraced); the device's part, for ours with both hops between the processes`),
    row(
      '  traced: interrupt to doorbell',
      (t) => t.interruptToDoorbell,
      `the guest's part; doorbells / interrupts: ours ${ours.doorbells} / ${ours.interrupts} (requests taken while our queue watched its ring have none), QEMU's ${qemu.doorbells} / ${qemu.interrupts}`,
    ),
  ];
}

/** QEMU's built-in virtio-blk-pci as the like-for-like floor, at the disk's slot. */
function builtinArgs(d: Disk, img: string, queues: number): string[] {
  const a = builtinVirtioBlkArgs(img, { id: `drv${d.label}`, iommuPlatform: true, cache: CACHE_MODE, queues });
  a[a.length - 1] += `,addr=${d.slot}`;
  return a;
}

/** One step's figure for one disk and run (see blk-bench.ts): MB/s (10^6 bytes/s) or IOPS. */
function measure(r: BootResult, d: StepDef, label: string, run: number, mib: number, failure: (why: string) => Error): number {
  const res = r.results;
  const key = `${label}_${d.id}_${run}`;
  if (d.step.dd !== undefined) {
    const st = res[`st_${key}`];
    if (!st?.startsWith('0 ')) throw failure(`dd ${d.id} on ${label} (run ${run}) failed: ${st ?? 'no status'}`);
    const s = Number(res[`t_${key}`]);
    if (!(s > 0)) throw failure(`no time for ${d.id} on ${label} run ${run}`);
    return (mib * MiB) / 1e6 / s;
  }
  const st = res[`f_${key}_status`];
  if (!st?.startsWith('0 ')) throw failure(`fio ${d.id} on ${label} (run ${run}) failed: ${st ?? 'no status'}`);
  const f = parseFioTerse(res[`f_${key}`] ?? '');
  if (f.error !== 0) throw failure(`fio ${d.id} on ${label} (run ${run}): error ${f.error}`);
  return d.unit === 'IOPS' ? f.read.iops : (f.read.bwKiBs * 1024) / 1e6;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    const rows = await benchVirtioBlk();
    process.stdout.write(formatTable(rows) + '\n');
  } catch (e) {
    console.error((e as Error).stack ?? e);
    process.exitCode = 1;
  }
}
