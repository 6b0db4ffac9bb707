// Socket benchmarks: REGION_READ ping-pong, REGION_READ with 32 in flight,
// posted (NO_REPLY) REGION_WRITEs and DMA_MAP+DMA_UNMAP pairs (fd-carrying
// windows of one memfd, as QEMU sends them for a guest behind a vIOMMU), each
// against our server and against a minimal C responder (bench/c/responder.c)
// measured in the same run.  The
// load generator is C as well (bench/c/loadgen.c) so the client is never the
// bottleneck.  Both C programs are compiled here at run time.
//
// Environment:
//   BENCH_SERVER_CMD  the server under test, a shell command with `{socket}`
//                     where the socket path goes; `floor` = the C responder
//                     (to test the harness).  Default:
//                     node bin/vfio-user-ts.js serve gpio --socket {socket}
//   BENCH_SECONDS     target duration of one measurement (default 2)
//   BENCH_REPEATS     rounds per metric (default 5): in each round every side
//                     runs once, floor first; a figure is the median of its
//                     rounds, a ratio the median of the per-round ratios, and
//                     the spread (lowest and highest per-round ratio) is printed
//   BENCH_CPUS        A,B (default 0,1): 1-CPU runs put both sides on A; 2-CPU
//                     runs put the loadgen on A and the server on B
//   BENCH_READ        read target  REGION:OFFSET:COUNT (default 7:0:4, config space)
//   BENCH_WRITE       write target REGION:OFFSET:COUNT (default 2:0:1, the GPIO I/O BAR)
//   BENCH_FULL=1      also the 1-CPU 32-in-flight / posted variants and
//                     posted writes batched 256 per write()
//   BENCH_KEEP=1      keep the build/socket directory

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type BenchRow,
  compileC,
  envNumber,
  haveCommand,
  median,
  progress,
  projectRoot,
  stopGroup,
  Tail,
} from './lib.js';
import { run } from '../qemu-configs/exec.js';

/**
 * Where the two processes run: `same` = both on one CPU (no cross-CPU
 * wake-up), `split` = loadgen on one CPU and the server on another (the shape
 * of QEMU's vCPU threads beside a server; fixed, so the scheduler cannot
 * sometimes co-locate them), `free` = left to the scheduler.
 */
type Placement = 'same' | 'split' | 'free';

interface Metric {
  key: string;
  name: string;
  /** loadgen arguments besides -s, -n, -r, -w */
  args: string[];
  placement: Placement;
  goal?: number;
  /** count for the first (warm-up / calibration) run */
  calibN: number;
  note?: string;
  /** What one loadgen op is (default ops/s). */
  unit?: string;
  /** The minimal Node responder speaks only REGION_*: no row for it. */
  noNodeRow?: boolean;
  /**
   * Also run our server with polling off (--poll-us 0) and with native reads
   * off (--no-native-reads), and print CPU time per message.
   */
  pollRows?: boolean;
}

interface ServerKind {
  key: 'floor' | 'ours' | 'ours-nopoll' | 'ours-nonative' | 'node';
  label: string;
  argv(sock: string): string[];
  /** A reason this server cannot run at all (e.g. not built yet). */
  unavailable?: string;
}

interface RunningServer {
  child: ChildProcess;
  sock: string;
  out: Tail;
  exited: boolean;
  exitInfo: string;
}

interface LoadgenResult {
  mode: string;
  n: number;
  depth: number;
  seconds: number;
  ops_per_s: number;
  /** The loadgen's own CPU time over the timed part. */
  cpu_us: number;
}

/** One measured run: the rate, and the CPU µs per op of the server and of the loadgen. */
interface Run {
  rate: number;
  serverCpu: number;
  clientCpu: number;
}

const TARGET_RE = /^\d+:(0x[0-9a-fA-F]+|\d+):\d+$/;

function target(name: string, dflt: string): string {
  const v = process.env[name] || dflt;
  if (!TARGET_RE.test(v)) throw new Error(`${name}=${v}: expected REGION:OFFSET:COUNT`);
  return v;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function metrics(full: boolean): Metric[] {
  const list: Metric[] = [
    {
      key: 'pingpong-same',
      name: 'REGION_READ ping-pong, 1 CPU',
      args: ['-m', 'pingpong'],
      placement: 'same',
      goal: 0.9,
      calibN: 5_000,
      pollRows: true,
      note: 'one request in flight; server and loadgen pinned to one CPU, so no cross-CPU wake-up',
    },
    {
      key: 'pingpong-free',
      name: 'REGION_READ ping-pong, unpinned',
      args: ['-m', 'pingpong'],
      placement: 'free',
      goal: 1.0,
      calibN: 2_000,
      pollRows: true,
      note: 'left to the scheduler: the VM cross-CPU wake-up latency when it puts them apart, which adaptive polling avoids on our side; noisy, as it sometimes co-locates the two',
    },
    {
      key: 'pingpong-split',
      name: 'REGION_READ ping-pong, 2 CPUs',
      args: ['-m', 'pingpong'],
      placement: 'split',
      calibN: 2_000,
      pollRows: true,
      note: 'loadgen and server pinned to two different CPUs: every request crosses CPUs, as a vCPU thread\'s does',
    },
    {
      key: 'inflight32-split',
      name: 'REGION_READ, 32 in flight, 2 CPUs',
      args: ['-m', 'inflight', '-d', '32'],
      placement: 'split',
      goal: 0.8,
      calibN: 20_000,
      pollRows: true,
      note: 'loadgen and server pinned to two different CPUs; one request per write(), as QEMU sends them',
    },
    {
      key: 'posted-split',
      name: 'posted REGION_WRITE, 2 CPUs',
      args: ['-m', 'posted'],
      placement: 'split',
      goal: 0.8,
      calibN: 50_000,
      pollRows: true,
      note: 'NO_REPLY writes, one per write() as QEMU sends them, then one REGION_READ whose reply proves all were consumed',
    },
    ...[
      { live: 4096, depth: 1, what: 'one at a time (each reply awaited)' },
      { live: 4096, depth: 32, what: '32 in flight' },
      { live: 65535 - 32, depth: 32, what: '32 in flight, 65,535 maps at the peak' },
    ].map(({ live, depth, what }): Metric => ({
      key: `dmamap-${live}-${depth}`,
      name: `DMA_MAP+DMA_UNMAP, ${live.toLocaleString('en-US')} live, ${depth === 1 ? '1' : depth} in flight, 2 CPUs`,
      args: ['-m', 'dmamap', '-d', String(depth), '-l', String(live)],
      placement: 'split',
      calibN: 5_000,
      unit: 'pairs/s',
      noNodeRow: true,
      note: `pairs of an fd-carrying DMA_MAP of a 4 KiB window of one sealed memfd and its DMA_UNMAP, ${what}; floor: the C responder receives and closes the fd and answers, keeping no table`,
    })),
  ];
  if (full) {
    list.push(
      {
        key: 'inflight32-same',
        name: 'REGION_READ, 32 in flight, 1 CPU',
        args: ['-m', 'inflight', '-d', '32'],
        placement: 'same',
        calibN: 20_000,
      },
      {
        key: 'posted-same',
        name: 'posted REGION_WRITE, 1 CPU',
        args: ['-m', 'posted'],
        placement: 'same',
        calibN: 50_000,
      },
      {
        key: 'posted-batched-split',
        name: 'posted REGION_WRITE, 256 per write(), 2 CPUs',
        args: ['-m', 'posted', '-b', '256'],
        placement: 'split',
        calibN: 200_000,
        note: 'server-bound: the client hands over 256 messages per syscall',
      },
    );
  }
  return list;
}

export async function benchSocket(): Promise<BenchRow[]> {
  const root = projectRoot();
  const seconds = envNumber('BENCH_SECONDS', 2);
  const repeats = Math.round(envNumber('BENCH_REPEATS', 5));
  const [cpuA, cpuB] = cpuPair();
  const readTarget = target('BENCH_READ', '7:0:4');
  const writeTarget = target('BENCH_WRITE', '2:0:1');
  const full = process.env.BENCH_FULL === '1';

  const work = mkdtempSync(join(tmpdir(), 'vfio-user-ts-bench-'));
  const servers = new Map<string, RunningServer>();
  const cleanup = async () => {
    await Promise.all([...servers.values()].map((s) => stopGroup(s.child)));
    servers.clear();
    if (process.env.BENCH_KEEP !== '1') rmSync(work, { recursive: true, force: true });
  };
  const onSignal = () => {
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const csrc = join(root, 'bench', 'c');
    const responder = join(work, 'responder');
    const loadgen = join(work, 'loadgen');
    progress(`compiling ${csrc}/{responder,loadgen}.c into ${work}`);
    await Promise.all([
      compileC(join(csrc, 'responder.c'), responder),
      compileC(join(csrc, 'loadgen.c'), loadgen),
    ]);

    const haveTaskset = haveCommand('taskset', ['-c', cpuA, 'true']);
    const floor: ServerKind = { key: 'floor', label: 'C responder', argv: (sock) => [responder, sock] };
    const ours = oursServer(root, responder);
    const oursNoPoll = oursVariant(ours, 'ours-nopoll', 'our server, polling off', ['--poll-us', '0']);
    const oursNoNative = oursVariant(ours, 'ours-nonative', 'our server, native reads off', ['--no-native-reads']);
    const nodeFloor = nodeResponder(root);
    progress(`server under test: ${ours.unavailable ?? ours.argv('{socket}').join(' ')}`);
    progress(
      `each figure: median of ${repeats} rounds of ~${seconds} s per side, sides interleaved; read ${readTarget}, write ${writeTarget}`,
    );

    // The CPU of the load generator and of the server for each placement.
    const cpus = (p: Placement): [string | null, string | null] =>
      p === 'same' ? [cpuA, cpuA] : p === 'split' ? [cpuA, cpuB] : [null, null];
    const prefix = (cpu: string | null) => (cpu === null ? [] : ['taskset', '-c', cpu]);

    const serverFor = async (kind: ServerKind, cpu: string | null): Promise<RunningServer> => {
      const id = `${kind.key}-${cpu === null ? 'free' : 'cpu' + cpu}`;
      const have = servers.get(id);
      if (have) {
        if (have.exited) throw new Error(`died earlier (${have.exitInfo})`);
        return have;
      }
      if (kind.unavailable) throw new Error(kind.unavailable);
      const sock = join(work, `${id}.sock`);
      const argv = [...prefix(cpu), ...kind.argv(sock)];
      const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      const s: RunningServer = { child, sock, out: new Tail(16 << 10), exited: false, exitInfo: '' };
      child.stdout!.on('data', (b: Buffer) => s.out.push(b));
      child.stderr!.on('data', (b: Buffer) => s.out.push(b));
      child.on('error', (e) => {
        s.exited = true;
        s.exitInfo = e.message;
      });
      child.on('exit', (code, sig) => {
        s.exited = true;
        s.exitInfo = sig ? `killed by ${sig}` : `exit ${code}`;
      });
      servers.set(id, s);
      const deadline = Date.now() + 20_000;
      while (!existsSync(sock)) {
        if (s.exited) throw new Error(`exited at start (${s.exitInfo}): ${argv.join(' ')}\n${s.out.text().trim()}`);
        if (Date.now() > deadline) throw new Error(`did not create ${sock} within 20 s: ${argv.join(' ')}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return s;
    };

    const measure = async (kind: ServerKind, m: Metric, n: number): Promise<Run> => {
      const [clientCpu, serverCpu] = cpus(m.placement);
      const s = await serverFor(kind, serverCpu);
      const args = [...prefix(clientCpu), loadgen, '-s', s.sock, '-n', String(n), '-r', readTarget, '-w', writeTarget, ...m.args];
      // Generous: a run is sized for `seconds`; 15x covers a slow first run, not a hang.
      const timeout = Math.max(30_000, seconds * 15_000);
      let stdout: string;
      const cpuBefore = groupCpuUs(s.child.pid!);
      try {
        ({ stdout } = await run(args[0]!, args.slice(1), { timeoutMs: timeout }));
      } catch (e) {
        const died = s.exited ? `\nthe server exited (${s.exitInfo}); its output:\n${s.out.text().trim()}` : '';
        throw new Error(`${(e as Error).message}${died}`);
      }
      const serverUs = groupCpuUs(s.child.pid!) - cpuBefore;
      const line = stdout.trim().split('\n').pop() ?? '';
      const r = JSON.parse(line) as LoadgenResult;
      if (!(r.ops_per_s > 0)) throw new Error(`loadgen printed no rate: ${line}`);
      // The server's figure includes the connect and VERSION (one message of thousands).
      return { rate: r.ops_per_s, serverCpu: serverUs / r.n, clientCpu: r.cpu_us / r.n };
    };

    /** Warm up and find the count that takes about `seconds`. */
    const calibrate = async (kind: ServerKind, m: Metric): Promise<number> => {
      let r = await measure(kind, m, m.calibN);
      if (r.rate * 0.25 > m.calibN) r = await measure(kind, m, Math.max(m.calibN, Math.ceil(r.rate * 0.5)));
      return Math.max(1000, Math.round(r.rate * seconds));
    };

    const rows: BenchRow[] = [];
    const list = metrics(full);
    list[0]!.note = `each figure: median of ${repeats} rounds of ~${seconds} s per side, sides interleaved; ` + list[0]!.note;
    for (const m of list) {
      const row: BenchRow = { name: m.name, value: NaN, floor: NaN, ratio: NaN, unit: m.unit ?? 'ops/s' };
      if (m.goal !== undefined) row.goal = m.goal;
      if (m.note) row.note = m.note;
      // The same metric for the minimal Node responder: what the runtime alone reaches.
      const nodeRow: BenchRow = {
        name: `  minimal Node responder`, value: NaN, floor: NaN, ratio: NaN, unit: 'ops/s',
        note: `${m.name}: bench/node-responder.ts (our addon, no protocol layer, no device) against the same C floor`,
      };
      const noPollRow: BenchRow = {
        name: `  ours, polling off`, value: NaN, floor: NaN, ratio: NaN, unit: 'ops/s',
        note: `${m.name}: our server with --poll-us 0 against the same C floor`,
      };
      const noNativeRow: BenchRow = {
        name: `  ours, native reads off`, value: NaN, floor: NaN, ratio: NaN, unit: 'ops/s',
        note: `${m.name}: our server with --no-native-reads (every message through TypeScript) against the same C floor`,
      };
      const cpuRow: BenchRow = {
        name: `  CPU per message, server`, value: NaN, floor: NaN, ratio: NaN, unit: 'CPU-µs',
        note: `${m.name}: user + system time of the server process per message (lower is better), ours and the C responder`,
      };
      const sideRows = new Map<ServerKind, BenchRow>([[ours, row]]);
      const sides: ServerKind[] = [floor, ours];
      rows.push(row);
      if (!m.noNodeRow) {
        rows.push(nodeRow);
        sides.push(nodeFloor);
        sideRows.set(nodeFloor, nodeRow);
      }
      if (m.pollRows && oursNoPoll) {
        rows.push(noPollRow);
        sides.push(oursNoPoll);
        sideRows.set(oursNoPoll, noPollRow);
      }
      if (m.pollRows && oursNoNative) {
        rows.push(noNativeRow);
        sides.push(oursNoNative);
        sideRows.set(oursNoNative, noNativeRow);
      }
      if (m.pollRows) rows.push(cpuRow);
      if (m.placement !== 'free' && !haveTaskset) {
        for (const r of [row, ...sideRows.values(), cpuRow]) r.error = 'taskset (util-linux) is missing: cannot pin';
        continue;
      }
      const counts = new Map<ServerKind, number>();
      const errors = new Map<ServerKind, string>();
      for (const kind of sides) {
        try {
          counts.set(kind, await calibrate(kind, m));
        } catch (e) {
          errors.set(kind, `${kind.label}: ${(e as Error).message}`);
        }
      }
      // rounds.get(kind)[i]: round i's run of that side (undefined if it failed).
      const rounds = new Map<ServerKind, (Run | undefined)[]>(sides.map((k) => [k, []]));
      for (let rep = 0; rep < repeats; rep++) {
        for (const kind of sides) {
          let r: Run | undefined;
          if (!errors.has(kind)) {
            try {
              r = await measure(kind, m, counts.get(kind)!);
            } catch (e) {
              errors.set(kind, `${kind.label}: ${(e as Error).message}`);
            }
          }
          rounds.get(kind)!.push(r);
        }
      }
      const runsOf = (kind: ServerKind) => (errors.has(kind) ? [] : (rounds.get(kind)!.filter(Boolean) as Run[]));
      const floorRuns = rounds.get(floor)!;
      const fmtK = (v: number) => Math.round(v / 1000) + 'k';
      const summary: string[] = [];
      for (const [kind, r] of sideRows) {
        // Each round's ratio against the floor's run of the same round.
        const ratios = rounds.get(kind)!.flatMap((x, i) => (x && floorRuns[i] ? [x.rate / floorRuns[i]!.rate] : []));
        const mine = runsOf(kind);
        r.floor = runsOf(floor).length ? median(runsOf(floor).map((x) => x.rate)) : NaN;
        if (mine.length && ratios.length && !errors.has(floor)) {
          r.value = median(mine.map((x) => x.rate));
          r.ratio = median(ratios);
          const spread = `ratio per round ${ratios.map((x) => x.toFixed(2)).join(' ')} (spread ${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`;
          r.note = `${r.note ? r.note + ' ' : ''}[${spread}; runs ${mine.map((x) => fmtK(x.rate)).join(' ')}, floor ${runsOf(floor).map((x) => fmtK(x.rate)).join(' ')}]`;
          summary.push(`${kind.label}: ${spread}`);
        }
        const err = [floor, kind].map((k) => errors.get(k)).filter(Boolean).join('\n');
        if (err) r.error = err;
      }
      if (m.pollRows) {
        const cpu = (kind: ServerKind, which: 'serverCpu' | 'clientCpu') =>
          runsOf(kind).length ? median(runsOf(kind).map((x) => x[which])) : NaN;
        cpuRow.value = cpu(ours, 'serverCpu');
        cpuRow.floor = cpu(floor, 'serverCpu');
        cpuRow.ratio = cpuRow.value / cpuRow.floor;
        const us = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : 'n/a');
        const noPoll = oursNoPoll ? `, ours with polling off ${us(cpu(oursNoPoll, 'serverCpu'))}` : '';
        const noNative = oursNoNative ? `, ours with native reads off ${us(cpu(oursNoNative, 'serverCpu'))}` : '';
        cpuRow.note += ` [median CPU-µs per message: server ours ${us(cpuRow.value)}${noPoll}${noNative}, C responder ${us(cpuRow.floor)}; ` +
          `loadgen against ours ${us(cpu(ours, 'clientCpu'))}, against the C responder ${us(cpu(floor, 'clientCpu'))}]`;
        if (errors.has(floor) || errors.has(ours)) cpuRow.error = row.error ?? 'no runs';
      }
      progress(`${m.name}: ${summary.join('; ')}`);
    }
    return rows;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
  }
}

/** BENCH_CPUS=A,B: A for the loadgen (and for both in 1-CPU runs), B for the server in 2-CPU runs. */
export function cpuPair(): [string, string] {
  const v = process.env.BENCH_CPUS ?? '0,1';
  const m = /^(\d+),(\d+)$/.exec(v);
  if (!m || m[1] === m[2]) throw new Error(`BENCH_CPUS=${v}: expected two different CPU numbers, e.g. 0,1`);
  return [m[1]!, m[2]!];
}

/** Our server with more flags (polling off, native reads off); none for a BENCH_SERVER_CMD. */
function oursVariant(ours: ServerKind, key: ServerKind['key'], label: string, flags: string[]): ServerKind | null {
  if (process.env.BENCH_SERVER_CMD) return null;
  return { ...ours, key, label, argv: (sock) => [...ours.argv(sock), ...flags] };
}

/**
 * CPU time (user + system, µs) of every live process in process group
 * `pgid` (the server was started detached: its own group), from /proc.
 */
function groupCpuUs(pgid: number): number {
  let ticks = 0;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // Fields after the parenthesised command: state ppid pgrp ... utime(14) stime(15).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(f[2]) === pgid) ticks += Number(f[11]) + Number(f[12]);
  }
  return (ticks * 1e6) / CLOCK_TICKS;
}

/** sysconf(_SC_CLK_TCK): the unit of /proc/<pid>/stat times. */
const CLOCK_TICKS = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const v = Number(r.stdout?.trim());
  return Number.isInteger(v) && v > 0 ? v : 100;
})();

/** bench/node-responder.ts: the Node runtime's own floor on our addon. */
function nodeResponder(root: string): ServerKind {
  const script = join(root, 'dist', 'bench', 'node-responder.js');
  const kind: ServerKind = {
    key: 'node',
    label: 'minimal Node responder',
    argv: (sock) => [process.execPath, script, sock],
  };
  if (!existsSync(script)) kind.unavailable = `${script} does not exist (run tsc)`;
  return kind;
}

function oursServer(root: string, responder: string): ServerKind {
  const cmd = process.env.BENCH_SERVER_CMD;
  if (cmd === 'floor') return { key: 'ours', label: 'server (C responder stand-in)', argv: (sock) => [responder, sock] };
  if (cmd) {
    if (!cmd.includes('{socket}')) throw new Error('BENCH_SERVER_CMD must contain {socket} where the socket path goes');
    return {
      key: 'ours',
      label: 'server (BENCH_SERVER_CMD)',
      argv: (sock) => ['/bin/sh', '-c', cmd.replaceAll('{socket}', shellQuote(sock))],
    };
  }
  const bin = join(root, 'bin', 'vfio-user-ts.js');
  const kind: ServerKind = {
    key: 'ours',
    label: 'our server',
    argv: (sock) => [process.execPath, bin, 'serve', 'gpio', '--socket', sock],
  };
  if (!existsSync(bin)) kind.unavailable = `${bin} does not exist yet (set BENCH_SERVER_CMD=floor to test the harness)`;
  return kind;
}
