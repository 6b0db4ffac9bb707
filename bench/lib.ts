// Shared helpers for the benchmarks: the row type every bench returns, the
// project root, compiling the C helpers, running child processes, the result
// table, and what the guest benches share (images, the server log, medians).

import { spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, fsyncSync, openSync, readFileSync, realpathSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../qemu-configs/exec.js';

/** One line of the result table. `value` is ours, `floor` the reference measured in the same run. */
export interface BenchRow {
  name: string;
  value: number;
  floor: number;
  /** value / floor (for rates: higher is better). */
  ratio: number;
  unit: string;
  /** Minimum ratio we aim for; absent = informational row. */
  goal?: number;
  /** Short remark printed under the table (how it was measured). */
  note?: string;
  /** Set when something failed to run: the run then exits non-zero. */
  error?: string;
}

/** A bench module's entry point. */
export type BenchFn = () => Promise<BenchRow[]>;

/** The directory holding package.json, found by walking up from this file (works from dist/ too). */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('bench: cannot find package.json above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

/** Progress goes to stderr so that stdout holds only the result table. */
export function progress(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

/**
 * How many of a disk's timed dd runs of one step (results
 * n_<label>_<step>_<run>, run 1..runs: see block.ts's timed_dd) were redone
 * because the guest split their blocks, and how many still were split in
 * the end.
 */
export function ddRedone(results: Readonly<Record<string, string>>, label: string, step: string, runs: number): string {
  let redone = 0;
  let split = 0;
  for (let run = 1; run <= runs; run++) {
    const [made, again, max] = (results[`n_${label}_${step}_${run}`] ?? '').trim().split(/\s+/).map(Number);
    if (!Number.isInteger(made) || !Number.isInteger(again) || !Number.isInteger(max)) continue;
    redone += again!;
    if (max! > 0 && made! > max!) split++;
  }
  return `${label} ${redone} runs redone for split blocks, ${split} of ${runs} split in the end`;
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}

/** Where the true median of what `xs` were drawn from lies, at `coverage` (a fraction) or better. */
export interface MedianInterval {
  low: number;
  high: number;
  /** The interval's own coverage, at least the one asked for unless there are too few values. */
  coverage: number;
}

/**
 * The distribution-free interval for a median (the sign test's): the k-th
 * smallest and k-th largest of n values hold the median with probability
 * 1 - 2 P(Binomial(n, 1/2) < k), whatever the distribution. The largest k
 * that still gives `confidence` is taken; with too few values for it (n < 6
 * at 0.95) the whole range, and its smaller coverage, are returned. It says
 * whether a ratio's miss is more than the rounds' noise.
 */
export function medianInterval(xs: readonly number[], confidence = 0.95): MedianInterval {
  const n = xs.length;
  if (n === 0) throw new RangeError('medianInterval: no values');
  if (!(confidence > 0 && confidence < 1)) throw new RangeError(`medianInterval: confidence ${confidence} is not in (0, 1)`);
  const s = [...xs].sort((a, b) => a - b);
  // below[k] = P(X < k) for X ~ Binomial(n, 1/2), built term by term.
  let term = 0.5 ** n;
  let below = 0;
  let k = 1;
  let coverage = 1 - 2 * term; // k = 1: the whole range
  for (;;) {
    below += term;
    term = (term * (n - k + 1)) / k;
    const next = 1 - 2 * (below + term);
    if (k + 1 > n - k || next < confidence) break;
    k++;
    coverage = next;
  }
  return { low: s[k - 1]!, high: s[n - k]!, coverage };
}

export function envNumber(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}=${v}: expected a positive number`);
  return n;
}

/** Keeps the last `max` bytes of a stream. */
export class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly max: number) {}
  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
    while (this.size > this.max && this.chunks.length > 1) this.size -= this.chunks.shift()!.length;
  }
  text(): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - this.max)).toString('utf8');
  }
}

/** Compile one C file with the system compiler (CC, default cc) at -O2. */
export async function compileC(src: string, out: string): Promise<void> {
  const cc = process.env.CC || 'cc';
  await run(cc, ['-O2', '-Wall', '-o', out, src], { timeoutMs: 120_000 });
}

export function haveCommand(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return r.status === 0;
}

/** Send SIGTERM to a detached child's process group, then SIGKILL if it lingers. */
export async function stopGroup(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, sig);
    } catch {
      /* already gone */
    }
  };
  signal('SIGTERM');
  const t = setTimeout(() => signal('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

/** The file system type holding `p` (longest mount-point prefix in /proc/mounts). */
export function fsTypeOf(p: string): string {
  try {
    const real = realpathSync(p);
    let best = { mnt: '', type: 'unknown', dev: '' };
    for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const [dev, mnt, type] = line.split(' ');
      if (!dev || !mnt || !type) continue;
      const m = mnt.replace(/\\040/g, ' ');
      if ((real === m || real.startsWith(m.endsWith('/') ? m : m + '/')) && m.length >= best.mnt.length) best = { mnt: m, type, dev };
    }
    return `${best.type} on ${best.dev}`;
  } catch {
    return 'unknown';
  }
}

/**
 * dd's write time includes reading /dev/zero in the guest (TCG makes that slow),
 * the same for both devices: without it the write ratio is the devices' own.
 */
export function netOfSource(ours: number, qemu: number, zero: number): string {
  if (!(ours > zero && qemu > zero)) return '';
  return `; net of the guest's /dev/zero read (${zero.toFixed(3)} s, rough): ratio ${((qemu - zero) / (ours - zero)).toFixed(2)}`;
}

/**
 * Makes one raw image of `bytes` zeros per path, fully allocated (no device
 * under test pays for block allocation) and all made the same way: copies of
 * one template, which is then removed. The written template and its copy do
 * not cost the same to overwrite, though both sit in the page cache (on ext4
 * here, a 1 MiB pwritev took 90-97 µs into the one and 73-77 µs into the
 * other, medians), so no device may get the template while the device it is
 * compared with gets a copy.
 */
export function allocatedImages(paths: string[], bytes: number): void {
  if (paths.length === 0) throw new RangeError('allocatedImages: no paths');
  const template = `${paths[0]}.template`;
  const fd = openSync(template, 'w');
  try {
    const zeros = Buffer.alloc(16 << 20);
    for (let off = 0; off < bytes; off += zeros.length) writeSync(fd, zeros, 0, Math.min(zeros.length, bytes - off), off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    for (const p of paths) copyFileSync(template, p);
  } finally {
    unlinkSync(template);
  }
}

function fmtNumber(v: number, unit: string): string {
  if (!Number.isFinite(v)) return 'n/a';
  if (unit === 'ops/s' || Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  return Number(v.toPrecision(3)).toString();
}

/** The result table (plain text, fixed columns). */
export function formatTable(rows: BenchRow[]): string {
  const head = ['metric', 'ours', 'floor', 'unit', 'ratio', 'goal', 'result'];
  const body = rows.map((r) => {
    const ratioOk = Number.isFinite(r.ratio);
    let result: string;
    if (r.error) result = 'FAILED';
    else if (r.goal === undefined) result = 'info';
    else result = ratioOk && r.ratio >= r.goal ? 'ok' : 'MISSED';
    return [
      r.name,
      fmtNumber(r.value, r.unit),
      fmtNumber(r.floor, r.unit),
      r.unit,
      ratioOk ? r.ratio.toFixed(2) : 'n/a',
      r.goal === undefined ? '-' : `>= ${r.goal}`,
      result,
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const numeric = new Set([1, 2, 4]);
  const line = (cells: string[]) =>
    cells.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)];
  const notes = rows.filter((r) => r.note || r.error);
  if (notes.length) {
    out.push('');
    let lastError = '';
    for (const r of notes) {
      if (r.note) out.push(`  ${r.name}: ${r.note}`);
      if (r.error) {
        const text = r.error === lastError ? '(as above)' : r.error.split('\n').join('\n      ');
        out.push(`  ${r.name}: FAILED: ${text}`);
        lastError = r.error;
      }
    }
  }
  return out.join('\n');
}

/** Clock ticks per second of /proc's CPU times. */
export const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const v = Number(r.stdout?.trim());
  return Number.isInteger(v) && v > 0 ? v : 100;
})();

/** utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15). */
export function procCpu(pid: number): number {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}
