// NVMe guest throughput: the Debian guest in QEMU 11.1 runs `dd bs=1M` of
// 256 MiB with O_DIRECT, write (from /dev/zero) then read (to /dev/null), on
// our NVMe controller over vfio-user and on QEMU's built-in `-device nvme`,
// each on its own copy of one image, in the same boot, rounds interleaved (odd
// rounds in order, even rounds reversed). Times are taken in the guest
// ($EPOCHREALTIME, microseconds); MB/s = 10^6 bytes/s. Each run starts with
// the guest's memory compacted and is redone when the guest split its 1 MiB
// blocks more than the controller's limit makes it (block.ts's timed_dd).
// Two rows per direction: the ratio of the medians of the rounds, and of
// the best rounds (ours / QEMU's); goal >= 1.0 for both.
//
// Like for like: our controller does buffered file I/O on the image (the host
// page cache, pread/pwrite on the thread pool, a Flush is fdatasync) and
// reports a volatile write cache; QEMU's drive therefore runs with
// cache=writeback (host page cache, flushes honoured, VWC reported), not
// cache=none (O_DIRECT on the host: no page cache) or cache=unsafe (flushes
// ignored). Both take up to 1 MiB per command (QEMU's mdts set to ours:
// its default, half that, would make it two commands per dd block where
// ours makes one). Neither device sits behind a vIOMMU; guest RAM is
// shared (memfd: our DMA is zero copy, as QEMU's own device reads guest RAM
// directly).
//
// Runnable alone: node dist/bench/nvme.js
// Environment: BENCH_NVME_ROUNDS (7), BENCH_NVME_MIB (256), BENCH_NVME_DIR
// (where the images go; default os.tmpdir()), BENCH_NVME_LOG (server log
// level, default 'warn'; the log is printed when the run fails),
// BENCH_NVME_OURS=qemu (tests the harness: "ours" is a second built-in
// nvme on its own copy of the image, so the ratios should be near 1).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { provision } from '../qemu-configs/provision.js';
import { bootGuest, describeBoot, type BootResult } from '../qemu-configs/boot.js';
import { builtinNvmeArgs, vfioUserDeviceArgs } from '../qemu-configs/qemu-args.js';
import { nvmeBenchScript } from '../qemu-configs/guest-scripts/nvme.js';
import { startServer, type RunningServer } from '../server/runtime.js';
import { allocatedImages, ddRedone, envNumber, formatTable, fsTypeOf, median, netOfSource, progress, type BenchRow } from './lib.js';
import { keepLogTail } from '../server/log.js';
import { MDTS } from '../devices/nvme/constants.js';

const MiB = 1 << 20;
const GOAL = 1.0;
const QEMU_CACHE = 'writeback';
const OURS = { label: 'ours', slot: '08.0', pci: '0000:00:08.0' };
const QEMU = { label: 'qemu', slot: '10.0', pci: '0000:00:10.0' };
const OPS = ['write', 'read'] as const;

/** Guest-clock seconds of each round of `label`'s `op`; throws when a dd failed. */
function roundTimes(r: BootResult, label: string, op: string, rounds: number, failure: (why: string) => Error): number[] {
  const times: number[] = [];
  for (let i = 1; i <= rounds; i++) {
    const st = r.results[`st_${label}_${op}_${i}`];
    if (!st || !st.startsWith('0 ')) throw failure(`dd ${op} on ${label} (round ${i}) failed: ${st ?? 'no status'}`);
    const s = Number(r.results[`t_${label}_${op}_${i}`]);
    if (!(s > 0)) throw failure(`no time for ${label} ${op} round ${i}`);
    times.push(s);
  }
  return times;
}

/** What each controller looks like to the guest, for the note under the table. */
function describeDisks(r: BootResult): string {
  const res = r.results;
  return [OURS.label, QEMU.label]
    .map((l) => {
      const dev = res[`${l}_dev`] ?? '?';
      return `${l}: ${res[`${l}_ids`]} ${dev}, ${res[`${dev}_nr_queues`]} I/O queue(s) of ${Number(res[`${l}_sqsize`]) + 1}, ` +
        `max ${res[`${dev}_max_hw_kb`]} KiB per command, ${res[`${l}_msix_vectors`]} MSI-X vectors`;
    })
    .join('; ');
}

export async function benchNvme(): Promise<BenchRow[]> {
  const rounds = envNumber('BENCH_NVME_ROUNDS', 7);
  const mib = envNumber('BENCH_NVME_MIB', 256);
  const p = await provision({ log: (m) => progress(`provision: ${m}`) });
  const base = process.env.BENCH_NVME_DIR || os.tmpdir();
  const dir = fs.mkdtempSync(path.join(base, 'vut-bench-nvme-'));
  const socket = path.join(dir, 'nvme.sock');
  const image = path.join(dir, 'ours.img');
  const copy = path.join(dir, 'qemu.img');
  const where = `${base} (${fsTypeOf(dir)})`;
  const log = keepLogTail(process.env.BENCH_NVME_LOG || 'warn', 300);
  let rt: RunningServer | null = null;
  try {
    allocatedImages([image, copy], mib * MiB);
    progress(`nvme: ${mib} MiB images in ${where}; ${rounds} rounds of dd write+read on each controller`);

    const standIn = process.env.BENCH_NVME_OURS === 'qemu';
    let oursArgs: string[];
    if (standIn) {
      oursArgs = builtinNvmeArgs([image], { id: 'standin', addr: OURS.slot, cache: QEMU_CACHE, mdts: MDTS });
    } else {
      rt = await startServer({ devices: [{ name: 'nvme0', kind: 'nvme', socket, options: { disk: [image] } }] });
      oursArgs = vfioUserDeviceArgs(socket, { addr: OURS.slot });
    }
    const qemuArgs = builtinNvmeArgs([copy], { id: 'qnvme0', addr: QEMU.slot, cache: QEMU_CACHE, mdts: MDTS });
    const r = await bootGuest({
      provisioned: p,
      script: nvmeBenchScript({ disks: [OURS, QEMU], mib, rounds }),
      extraArgs: [...oursArgs, ...qemuArgs],
      memory: 'shared',
      timeoutMs: 30 * 60 * 1000,
    });
    const res = r.results;
    const failure = (why: string) =>
      new Error(`nvme bench: ${why}\n${describeBoot(r)}\n--- server log (last ${log.lines.length} lines) ---\n${log.lines.join('\n')}`);
    if (!r.done || r.exitCode !== 0) throw failure(`the guest script did not finish (${res.error ?? 'see the console'})`);
    if (res.warmup_error) throw failure(`warm-up dd failed: ${res.warmup_error}`);

    const mb = (s: number) => (mib * MiB) / 1e6 / s;
    const fmt = (xs: number[]) => xs.map((s) => mb(s).toFixed(0)).join('/');
    const rows: BenchRow[] = [];
    for (const op of OPS) {
      const ours = roundTimes(r, OURS.label, op, rounds, failure);
      const qemu = roundTimes(r, QEMU.label, op, rounds, failure);
      const zero = Number(res.t_zero_to_null);
      for (const pick of ['median', 'best'] as const) {
        const of = (xs: number[]) => (pick === 'median' ? median(xs) : Math.min(...xs));
        const value = mb(of(ours));
        const floor = mb(of(qemu));
        rows.push({
          name: `nvme guest dd ${op} ${mib} MiB O_DIRECT bs=1M, ${pick} of ${rounds}`,
          value,
          floor,
          ratio: value / floor,
          unit: 'MB/s',
          goal: GOAL,
          note:
            (pick === 'median'
              ? `floor = QEMU's built-in nvme (cache=${QEMU_CACHE}) on a copy of the image, same boot; ` +
                `rounds ours ${fmt(ours)}, QEMU ${fmt(qemu)} MB/s; ` +
                [OURS, QEMU].map((d) => ddRedone(res, d.label, op, rounds)).join(', ')
              : `the best rounds of the same runs`) +
            (op === 'write' && zero > 0 ? netOfSource(of(ours), of(qemu), zero) : ''),
        });
      }
    }
    rows[rows.length - 1]!.note +=
      `\n      ${standIn ? 'HARNESS CHECK (BENCH_NVME_OURS=qemu): "ours" is a second built-in nvme; ' : ''}` +
      `${r.accel.toUpperCase()} guest, 1 vCPU, ${os.cpus().length} host CPUs; images ${where}; ` +
      `guest dd /dev/zero→/dev/null alone: ${mb(Number(res.t_zero_to_null)).toFixed(0)} MB/s` +
      `\n      ${describeDisks(r)}` +
      `\n      QEMU's drive uses cache=${QEMU_CACHE}: like ours, it reads and writes through the host page cache ` +
      `and honours flushes (cache=none would bypass the page cache, cache=unsafe would drop flushes)`;
    return rows;
  } finally {
    await rt?.close();
    log.restore();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    const rows = await benchNvme();
    process.stdout.write(formatTable(rows) + '\n');
  } catch (e) {
    console.error((e as Error).stack ?? e);
    process.exitCode = 1;
  }
}
