// virtio-blk guest throughput: the Debian guest in QEMU 11.1 runs `dd bs=1M`
// of 256 MiB with O_DIRECT, write (from /dev/zero) then read (to /dev/null),
// on our virtio-blk over vfio-user and on QEMU's built-in virtio-blk-pci, all
// on the same raw image, in the same boot, rounds interleaved (odd rounds in
// order, even rounds reversed). Times are taken in the guest ($EPOCHREALTIME,
// microseconds); the figure per device and direction is the best round, MB/s =
// 10^6 bytes/s. Ratio = ours / QEMU's; goal >= 0.8.
//
// QEMU's device runs twice: with iommu_platform=on, so that it negotiates
// VIRTIO_F_ACCESS_PLATFORM as ours does (the guest then maps every buffer
// through its DMA API, which costs guest time whatever the device): the like-
// for-like floor that carries the goal; and in its default configuration
// (no ACCESS_PLATFORM), as an informational row.
//
// Our server runs in this process (as in the e2e tests), guest RAM is shared
// (memfd: zero-copy DMA), no vIOMMU. QEMU's drive uses cache=writeback (host
// page cache), like a plain file descriptor.
//
// Runnable alone: node dist/bench/virtio-blk.js
// Environment: BENCH_VBLK_ROUNDS (5), BENCH_VBLK_MIB (256), BENCH_VBLK_DIR
// (where the image goes; default os.tmpdir()), BENCH_VBLK_LOG (server log
// level, default 'warn'; the log is printed when the run fails),
// BENCH_VBLK_OURS=qemu (tests the harness: "ours" is a second built-in
// virtio-blk-pci on a copy of the image, so the ratios should be near 1).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { provision } from '../qemu-configs/provision.js';
import { bootGuest, describeBoot } from '../qemu-configs/boot.js';
import { builtinVirtioBlkArgs, vfioUserDeviceArgs } from '../qemu-configs/qemu-args.js';
import { virtioBlkBenchScript } from '../qemu-configs/guest-scripts/virtio.js';
import { startServer, type RunningServer } from '../server/runtime.js';
import { allocatedImage, envNumber, formatTable, fsTypeOf, median, netOfSource, progress, serverLogTail, type BenchRow } from './lib.js';

const MiB = 1 << 20;
const GOAL = 0.8;
const OURS = { label: 'ours', slot: '08.0', pci: '0000:00:08.0' };
const QEMU = { label: 'qemu', slot: '10.0', pci: '0000:00:10.0' };
const QEMU_AP = { label: 'qemuap', slot: '18.0', pci: '0000:00:18.0' };

export async function benchVirtioBlk(): Promise<BenchRow[]> {
  const rounds = envNumber('BENCH_VBLK_ROUNDS', 5);
  const mib = envNumber('BENCH_VBLK_MIB', 256);
  const p = await provision({ log: (m) => progress(`provision: ${m}`) });
  const base = process.env.BENCH_VBLK_DIR || os.tmpdir();
  const dir = fs.mkdtempSync(path.join(base, 'vut-bench-blk-'));
  const socket = path.join(dir, 'blk.sock');
  const image = path.join(dir, 'disk.img');
  const where = `${base} (${fsTypeOf(dir)})`;
  const log = serverLogTail(process.env.BENCH_VBLK_LOG || 'warn');
  let rt: RunningServer | null = null;
  try {
    allocatedImage(image, mib * MiB);
    progress(`virtio-blk: ${mib} MiB image in ${where}; ${rounds} rounds of dd write+read on each device`);

    const standIn = process.env.BENCH_VBLK_OURS === 'qemu';
    let oursArgs: string[];
    if (standIn) {
      // QEMU locks its images: the stand-in gets its own copy.
      fs.copyFileSync(image, image + '.copy');
      oursArgs = builtinVirtioBlkArgs(image + '.copy', { id: 'standin' });
      oursArgs[oursArgs.length - 1] += `,addr=${OURS.slot}`;
    } else {
      rt = await startServer({ devices: [{ name: 'blk0', kind: 'blk', socket, options: { disk: image, size: mib * MiB } }] });
      oursArgs = vfioUserDeviceArgs(socket, { addr: OURS.slot });
    }
    // Both built-in drives share the image (used one at a time): no QEMU lock.
    const builtin = builtinVirtioBlkArgs(image, { id: 'qblk0', noLocking: true });
    builtin[builtin.length - 1] += `,addr=${QEMU.slot}`;
    const builtinAp = builtinVirtioBlkArgs(image, { id: 'qblk1', noLocking: true, iommuPlatform: true });
    builtinAp[builtinAp.length - 1] += `,addr=${QEMU_AP.slot}`;
    const marks: Record<string, number> = {};
    const r = await bootGuest({
      provisioned: p,
      script: virtioBlkBenchScript({
        disks: [
          { label: OURS.label, pci: OURS.pci },
          { label: QEMU_AP.label, pci: QEMU_AP.pci },
          { label: QEMU.label, pci: QEMU.pci },
        ],
        mib,
        rounds,
      }),
      extraArgs: [...oursArgs, ...builtinAp, ...builtin],
      memory: 'shared',
      timeoutMs: 30 * 60 * 1000,
      onLine: (l) => {
        const m = /@@MARK (\S+ \S+ \d+) (start|end)/.exec(l);
        if (m) marks[`${m[1]} ${m[2]}`] = performance.now();
      },
    });
    const res = r.results;
    const failure = (why: string) =>
      new Error(`virtio-blk bench: ${why}\n${describeBoot(r)}\n--- server log (last ${log.lines.length} lines) ---\n${log.lines.join('\n')}`);
    if (!r.done || r.exitCode !== 0) throw failure(`the guest script did not finish (${res.error ?? 'see the console'})`);
    if (res.warmup_error) throw failure(`warm-up dd failed: ${res.warmup_error}`);

    const rows: BenchRow[] = [];
    const notes: string[] = [];
    const mb = (s: number) => (mib * MiB) / 1e6 / s;
    for (const op of ['write', 'read'] as const) {
      const times: Record<string, number[]> = { ours: [], qemuap: [], qemu: [] };
      const hostTimes: Record<string, number[]> = { ours: [], qemuap: [], qemu: [] };
      for (const d of [OURS.label, QEMU_AP.label, QEMU.label]) {
        for (let i = 1; i <= rounds; i++) {
          const st = res[`st_${d}_${op}_${i}`];
          if (!st || !st.startsWith('0 ')) throw failure(`dd ${op} on ${d} (round ${i}) failed: ${st ?? 'no status'}`);
          const s = Number(res[`t_${d}_${op}_${i}`]);
          if (!(s > 0)) throw failure(`no time for ${d} ${op} round ${i}`);
          times[d]!.push(s);
          const a = marks[`${d} ${op} ${i} start`];
          const b = marks[`${d} ${op} ${i} end`];
          if (a !== undefined && b !== undefined) hostTimes[d]!.push((b - a) / 1000);
        }
      }
      const fmt = (xs: number[]) => xs.map((s) => mb(s).toFixed(0)).join('/');
      const ours = mb(Math.min(...times.ours!));
      for (const floorDev of [QEMU_AP.label, QEMU.label]) {
        const qemu = mb(Math.min(...times[floorDev]!));
        const like = floorDev === QEMU_AP.label;
        rows.push({
          name: like
            ? `virtio-blk guest dd ${op} ${mib} MiB O_DIRECT bs=1M`
            : `  vs QEMU's default virtio-blk-pci (no ACCESS_PLATFORM)`,
          value: ours,
          floor: qemu,
          ratio: ours / qemu,
          unit: 'MB/s',
          ...(like ? { goal: GOAL } : {}),
          note:
            (like
              ? `floor = QEMU's built-in virtio-blk-pci with iommu_platform=on (ACCESS_PLATFORM, as ours), same image/boot`
              : `floor = QEMU's built-in virtio-blk-pci as configured by default, same image/boot`) +
            `; best of ${rounds} (rounds ours ${fmt(times.ours!)}, QEMU ${fmt(times[floorDev]!)} MB/s; ` +
            `median ratio ${(mb(median(times.ours!)) / mb(median(times[floorDev]!))).toFixed(2)}` +
            (op === 'write' && Number(res.t_zero_to_null) > 0
              ? netOfSource(Math.min(...times.ours!), Math.min(...times[floorDev]!), Number(res.t_zero_to_null))
              : '') +
            (hostTimes.ours!.length === rounds && hostTimes[floorDev]!.length === rounds
              ? `; host-timed from console marks: ${(mb(Math.min(...hostTimes.ours!))).toFixed(0)} vs ${mb(Math.min(...hostTimes[floorDev]!)).toFixed(0)} MB/s`
              : '') +
            ')',
        });
      }
    }
    notes.push(
      (standIn ? 'HARNESS CHECK (BENCH_VBLK_OURS=qemu): "ours" is a second built-in virtio-blk-pci; ' : '') +
      `${r.accel.toUpperCase()} guest, 1 vCPU, ${os.cpus().length} host CPUs; image ${where}; ` +
        `guest dd /dev/zero→/dev/null alone: ${mb(Number(res.t_zero_to_null)).toFixed(0)} MB/s; ` +
        `queues ours ${res.ours_nr_queues}, QEMU ${res.qemu_nr_queues}; scheduler ${(res.ours_scheduler ?? "").trim()}`,
    );
    rows[rows.length - 1]!.note += `\n      ${notes.join('\n      ')}`;
    return rows;
  } finally {
    await rt?.close();
    log.restore();
    fs.rmSync(dir, { recursive: true, force: true });
  }
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
