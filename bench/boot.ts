// Does adaptive polling slow a guest that needs the CPU? A TCG guest with
// two vCPUs (QEMU's vCPU threads want both host CPUs) boots against our
// server (a GPIO and a virtio-rng device, the server in its own process),
// loads virtio_rng and reads from /dev/hwrng; rounds alternate between the
// server's default polling and `--poll-us 0`. The figure is the time from
// QEMU's start to the guest's power-off, median of the rounds; the ratio is
// (polling off) / (polling on), so below 1 means polling slowed the guest.
//
//   BENCH_BOOT_ROUNDS  boots per setting (default 3)
//
// Boots QEMU: run it under the machine's guest lock when others share it.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BenchRow, envNumber, median, progress, projectRoot, stopGroup, Tail } from './lib.js';
import { provision } from '../qemu-configs/provision.js';
import { bootGuest, describeBoot } from '../qemu-configs/boot.js';
import { virtioRngGuestScript } from '../qemu-configs/guest-scripts/virtio.js';

/** One boot against a fresh server process started with `pollArgs`; its duration in s. */
async function bootOnce(root: string, dir: string, pollArgs: string[], p: Awaited<ReturnType<typeof provision>>): Promise<number> {
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
      script: virtioRngGuestScript({ bytes: 64 * 1024 }),
      vfioUserSockets: [gpio, rng],
      smp: 2,
      accel: 'tcg',
      timeoutMs: 5 * 60_000,
    });
    if (!r.done || r.exitCode !== 0 || r.results.read_bytes !== String(64 * 1024)) {
      throw new Error(`the guest did not finish its script:\n${describeBoot(r)}\nserver: ${out.text().trim()}`);
    }
    return r.durationMs / 1000;
  } finally {
    await stopGroup(child);
  }
}

export async function benchBoot(): Promise<BenchRow[]> {
  const rounds = Math.round(envNumber('BENCH_BOOT_ROUNDS', 3));
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
  try {
    const on: number[] = [];
    const off: number[] = [];
    for (let i = 0; i < rounds; i++) {
      // Alternate which goes first, so a drift in the machine's load hits both.
      const order: [number[], string[]][] = i % 2 ? [[off, ['--poll-us', '0']], [on, []]] : [[on, []], [off, ['--poll-us', '0']]];
      for (const [list, args] of order) {
        list.push(await bootOnce(root, dir, args, p));
        progress(`boot ${list === on ? 'polling on' : 'polling off'}: ${list[list.length - 1]!.toFixed(2)} s`);
      }
    }
    row.value = median(on);
    row.floor = median(off);
    row.ratio = row.floor / row.value;
    const fmt = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
    row.note =
      `QEMU start to guest power-off with a GPIO and a virtio-rng device (server in its own process), virtio_rng loaded and 64 KiB read; ` +
      `"ours" = default polling, "floor" = --poll-us 0; ratio = off / on (below 1: polling slowed the guest) ` +
      `[rounds: on ${fmt(on)}, off ${fmt(off)}; per-round ratios ${on.map((x, i) => (off[i]! / x).toFixed(2)).join(' ')}]`;
  } catch (e) {
    row.error = (e as Error).message;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return [row];
}
