// Does adaptive polling slow a guest that needs the CPU? A TCG guest with
// two vCPUs (QEMU's vCPU threads want both host CPUs) boots against our
// server (a GPIO and a virtio-rng device, the server in its own process),
// loads virtio_rng and reads from /dev/hwrng, then reads the GPIO's config
// space through sysfs (one REGION_READ per dword, each one a vCPU waiting
// for our reply: the round trip as the guest sees it); rounds alternate
// between the server's default polling and `--poll-us 0`. The figures are
// the time from QEMU's start to the guest's power-off and the guest's time
// per config read, medians of the rounds; the ratios are (polling off) /
// (polling on), so below 1 means polling slowed the guest.
//
//   BENCH_BOOT_ROUNDS  boots per setting (default 11: single boots vary by
//                      ±15% here, the ratio's median by about ±5% at 7)
//
// Boots QEMU: run it under the machine's guest lock when others share it.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BenchRow, envNumber, median, procCpu, progress, projectRoot, stopGroup, Tail } from './lib.js';
import { provision } from '../qemu-configs/provision.js';
import { bootGuest, describeBoot } from '../qemu-configs/boot.js';
import { virtioRngGuestScript } from '../qemu-configs/guest-scripts/virtio.js';

const CONFIG_PASSES = 200;

/** Config-space reads of the GPIO (vendor 0x494f) through sysfs, timed in the guest (one cat: no process start per pass). */
const CONFIG_READS = `
for d in /sys/bus/pci/devices/*; do [ "$(cat $d/vendor)" = 0x494f ] && g=$d; done
[ -n "$g" ] || { result error "no GPIO function"; exit 1; }
result cfg_bytes "$(cat $g/config | wc -c)"
set --
i=0
while [ $i -lt ${CONFIG_PASSES} ]; do set -- "$@" $g/config; i=$((i + 1)); done
t0=$EPOCHREALTIME
cat "$@" > /dev/null
t1=$EPOCHREALTIME
result cfg_s "$(elapsed $t0 $t1)"
`;

interface Boot {
  /** QEMU start to power-off, s. */
  seconds: number;
  /** Guest time per config-space dword read, µs. */
  readUs: number;
  /** CPU seconds the server process used, start to power-off. */
  serverCpu: number;
}

/** One boot against a fresh server process started with `pollArgs`. */
async function bootOnce(root: string, dir: string, pollArgs: string[], p: Awaited<ReturnType<typeof provision>>): Promise<Boot> {
  const gpio = join(dir, 'gpio.sock');
  const rng = join(dir, 'rng.sock');
  const config = join(dir, 'devices.json');
  writeFileSync(config, JSON.stringify({ devices: [{ name: 'gpio0', kind: 'gpio', socket: gpio }, { name: 'rng0', kind: 'rng', socket: rng }] }));
  const out = new Tail(8 << 10);
  const child = spawn(process.execPath, [join(root, 'bin', 'vfio-user-ts.js'), 'serve', '--config', config, ...pollArgs], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => out.push(b));
  try {
    const deadline = Date.now() + 20_000;
    while (!existsSync(gpio) || !existsSync(rng)) {
      if (child.exitCode !== null) throw new Error(`server exited at start: ${out.text().trim()}`);
      if (Date.now() > deadline) throw new Error('server did not listen within 20 s');
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = await bootGuest({
      provisioned: p,
      script: virtioRngGuestScript({ bytes: 64 * 1024 }).replace(/echo @@DONE\n$/, `${CONFIG_READS}echo @@DONE\n`),
      vfioUserSockets: [gpio, rng],
      smp: 2,
      accel: 'tcg',
      timeoutMs: 5 * 60_000,
    });
    if (!r.done || r.exitCode !== 0 || r.results.read_bytes !== String(64 * 1024)) {
      throw new Error(`the guest did not finish its script:\n${describeBoot(r)}\nserver: ${out.text().trim()}`);
    }
    const reads = (CONFIG_PASSES * Number(r.results.cfg_bytes)) / 4;
    const cfgSeconds = Number(r.results.cfg_s);
    if (!(reads > 0) || !(cfgSeconds > 0)) throw new Error(`no config-space timing from the guest: ${JSON.stringify(r.results)}`);
    return { seconds: r.durationMs / 1000, readUs: (cfgSeconds * 1e6) / reads, serverCpu: procCpu(child.pid!) };
  } finally {
    await stopGroup(child);
  }
}

export async function benchBoot(): Promise<BenchRow[]> {
  const rounds = Math.round(envNumber('BENCH_BOOT_ROUNDS', 11));
  const root = projectRoot();
  const p = await provision({ log: (m) => progress(`provision: ${m}`) });
  const dir = mkdtempSync(join(tmpdir(), 'vfio-user-ts-boot-'));
  const row: BenchRow = {
    name: 'TCG guest boot, 2 vCPUs, polling on vs off',
    value: NaN,
    floor: NaN,
    ratio: NaN,
    unit: 's',
    goal: 0.95,
  };
  const readRow: BenchRow = {
    name: '  guest config-space read, polling on vs off',
    value: NaN,
    floor: NaN,
    ratio: NaN,
    unit: 'µs',
  };
  try {
    // One boot first, not counted: QEMU, kernel and initramfs into the page cache.
    await bootOnce(root, dir, [], p);
    progress('warm-up boot done');
    const on: Boot[] = [];
    const off: Boot[] = [];
    for (let i = 0; i < rounds; i++) {
      // Alternate which goes first, so a drift in the machine's load hits both.
      const order: [Boot[], string[]][] = i % 2 ? [[off, ['--poll-us', '0']], [on, []]] : [[on, []], [off, ['--poll-us', '0']]];
      for (const [list, args] of order) {
        list.push(await bootOnce(root, dir, args, p));
        const b = list[list.length - 1]!;
        progress(`boot ${list === on ? 'polling on' : 'polling off'}: ${b.seconds.toFixed(2)} s, ${b.readUs.toFixed(1)} µs per config read, server ${b.serverCpu.toFixed(2)} CPU-s`);
      }
    }
    const fill = (r: BenchRow, of: (b: Boot) => number, digits: number) => {
      r.value = median(on.map(of));
      r.floor = median(off.map(of));
      const ratios = on.map((b, i) => of(off[i]!) / of(b));
      r.ratio = median(ratios);
      const fmt = (l: Boot[]) => l.map((b) => of(b).toFixed(digits)).join(' ');
      r.note = `${r.note ?? ''}[rounds: on ${fmt(on)}, off ${fmt(off)}; per-round ratios ${ratios.map((x) => x.toFixed(2)).join(' ')}]`;
    };
    row.note =
      `QEMU start to guest power-off with a GPIO and a virtio-rng device (server in its own process), virtio_rng loaded, 64 KiB read, ` +
      `then the config reads below; "ours" = default polling, "floor" = --poll-us 0; ratio = off / on (below 1: polling slowed the guest) `;
    readRow.note =
      `the guest's time per dword of ${CONFIG_PASSES} sysfs reads of the GPIO's config space by one cat (each dword a REGION_READ ` +
      `the vCPU waits for), median of the rounds; ratio = off / on `;
    fill(row, (b) => b.seconds, 2);
    row.note += `[server CPU-s per boot, median: on ${median(on.map((b) => b.serverCpu)).toFixed(2)}, off ${median(off.map((b) => b.serverCpu)).toFixed(2)}]`;
    fill(readRow, (b) => b.readUs, 1);
  } catch (e) {
    row.error = readRow.error = (e as Error).message;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return [row, readRow];
}
