// Scale within one process: DEVICES GPIO devices served by one server process,
// one C loadgen per device socket, all in `window` mode (REGION_READs and
// acknowledged REGION_WRITEs in turn, DEPTH in flight each), started
// together on the wall clock and counted over the same window. The floor is
// the same clients against as many C responder processes (one per socket):
// what the machine does with that many sockets when each has its own
// blocking C server. Rounds interleave ours and the floor. Every client runs
// on CPU A and every server process on CPU B (BENCH_CPUS, as socket.ts's
// 2-CPU rows: QEMU's vCPU threads beside a server), so that the kernel
// shares one CPU evenly among the clients; BENCH_SCALE_PIN=0 leaves
// placement to the scheduler.
//
// Rows: the aggregate rate (ours vs the floor), and fairness: the lowest
// device's rate against the highest one's in the same round (goal >= 0.8).
// How the CPUs are used goes in the notes: CPU-seconds per second of the
// server process(es) (/proc/PID/stat), of the clients (their getrusage in the
// window) and of everything else on the machine (/proc/stat), and idle.
//
// Environment: BENCH_SCALE_DEVICES (16), BENCH_SCALE_DEPTH (4),
// BENCH_SCALE_SECONDS (2), BENCH_SCALE_ROUNDS (3), BENCH_SCALE_PIN (1),
// BENCH_CPUS (0,1), BENCH_KEEP=1.
// Runnable alone: node dist/bench/scale.js
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CLK_TCK, compileC, envNumber, formatTable, haveCommand, median, procCpu, progress, projectRoot, stopGroup, Tail, type BenchRow } from './lib.js';
import { run } from '../qemu-configs/exec.js';
import { cpuPair } from './socket.js';

const WARM_S = 0.5;
const READ_TARGET = '7:0:4'; // config space
const WRITE_TARGET = '2:0:1'; // the GPIO's I/O BAR

interface Side {
  label: string;
  /** Server processes (one for ours, one per socket for the floor). */
  procs: { child: ChildProcess; out: Tail }[];
  socks: string[];
}

interface WindowResult {
  n: number;
  ops_per_s: number;
  cpu_s: number;
}

interface Round {
  rates: number[]; // per device, ops/s
  clientCpu: number[]; // per client, CPU-s per s
  aggregate: number;
  fairness: number; // lowest / highest
  cpu: { server: number; clients: number; rest: number; idle: number }; // CPU-s per s
}

/** Whole-machine busy and idle CPU seconds (/proc/stat, first line). */
function machineCpu(): { busy: number; idle: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
  return { busy: (user + nice + system + irq + softirq + steal) / CLK_TCK, idle: (idle + iowait) / CLK_TCK };
}

const sleepUntil = (epochMs: number) => new Promise((r) => setTimeout(r, Math.max(0, epochMs - Date.now())));

function startProc(argv: string[]): { child: ChildProcess; out: Tail } {
  const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = new Tail(8 << 10);
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => out.push(b));
  return { child, out };
}

async function waitForSockets(side: Side): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!side.socks.every((s) => existsSync(s))) {
    for (const p of side.procs) {
      if (p.child.exitCode !== null || p.child.signalCode !== null) throw new Error(`${side.label} exited at start: ${p.out.text().trim()}`);
    }
    if (Date.now() > deadline) throw new Error(`${side.label}: sockets not created within 30 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** taskset prefixes: every client on CPU A, every server process on CPU B (BENCH_CPUS). */
interface Placement {
  client: string[];
  server: string[];
}

async function round(side: Side, loadgen: string, depth: number, seconds: number, at: Placement): Promise<Round> {
  // Every loadgen connects and negotiates first, then waits for the common start.
  const startMs = Date.now() + 1000 + 40 * side.socks.length;
  const start = (startMs / 1000).toFixed(3);
  const runs = side.socks.map((s) =>
    run(at.client[0] ?? loadgen, [...at.client.slice(1), ...(at.client.length ? [loadgen] : []), '-s', s, '-m', 'window', '-S', start, '-W', String(WARM_S), '-t', String(seconds), '-d', String(depth), '-r', READ_TARGET, '-w', WRITE_TARGET], {
      timeoutMs: 60_000 + seconds * 10_000,
    }),
  );
  const pids = side.procs.map((p) => p.child.pid!);
  const sample = () => ({ at: performance.now(), server: pids.reduce((a, p) => a + procCpu(p), 0), machine: machineCpu() });
  let a: ReturnType<typeof sample> | undefined;
  let b: ReturnType<typeof sample> | undefined;
  const sampling = (async () => {
    await sleepUntil(startMs + WARM_S * 1000);
    a = sample();
    await sleepUntil(startMs + (WARM_S + seconds) * 1000);
    b = sample();
  })();
  const outs = await Promise.all(runs);
  await sampling;
  const results = outs.map(({ stdout }) => JSON.parse(stdout.trim().split('\n').pop()!) as WindowResult);
  const rates = results.map((r) => r.ops_per_s);
  if (rates.some((r) => !(r > 0))) throw new Error(`${side.label}: a client counted no replies: ${rates.join(' ')}`);
  const wall = (b!.at - a!.at) / 1000;
  const server = (b!.server - a!.server) / wall;
  const clients = results.reduce((s, r) => s + r.cpu_s, 0) / seconds;
  const busy = (b!.machine.busy - a!.machine.busy) / wall;
  const idle = (b!.machine.idle - a!.machine.idle) / wall;
  return {
    rates,
    clientCpu: results.map((r) => r.cpu_s / seconds),
    aggregate: rates.reduce((s, r) => s + r, 0),
    fairness: Math.min(...rates) / Math.max(...rates),
    cpu: { server, clients, rest: Math.max(0, busy - server - clients), idle },
  };
}

export async function benchScale(): Promise<BenchRow[]> {
  const root = projectRoot();
  const devices = Math.round(envNumber('BENCH_SCALE_DEVICES', 16));
  const depth = Math.round(envNumber('BENCH_SCALE_DEPTH', 4));
  const seconds = envNumber('BENCH_SCALE_SECONDS', 2);
  const rounds = Math.round(envNumber('BENCH_SCALE_ROUNDS', 3));
  const [cpuA, cpuB] = cpuPair();
  const pin = process.env.BENCH_SCALE_PIN !== '0' && haveCommand('taskset', ['-c', cpuA, 'true']);
  const at: Placement = pin ? { client: ['taskset', '-c', cpuA], server: ['taskset', '-c', cpuB] } : { client: [], server: [] };
  const work = mkdtempSync(join(tmpdir(), 'vfio-user-ts-scale-'));
  const sides: Side[] = [];
  try {
    const loadgen = join(work, 'loadgen');
    const responder = join(work, 'responder');
    progress(`scale: compiling loadgen and responder into ${work}`);
    await Promise.all([compileC(join(root, 'bench', 'c', 'loadgen.c'), loadgen), compileC(join(root, 'bench', 'c', 'responder.c'), responder)]);

    const oursSocks = Array.from({ length: devices }, (_, i) => join(work, `gpio${i}.sock`));
    const config = join(work, 'devices.json');
    writeFileSync(config, JSON.stringify({ devices: oursSocks.map((socket, i) => ({ kind: 'gpio', name: `gpio${i}`, socket })) }));
    const ours: Side = {
      label: `our server (${devices} devices, one process)`,
      procs: [startProc([...at.server, process.execPath, join(root, 'bin', 'vfio-user-ts.js'), 'serve', '--config', config])],
      socks: oursSocks,
    };
    sides.push(ours);
    const floorSocks = Array.from({ length: devices }, (_, i) => join(work, `c${i}.sock`));
    const floor: Side = {
      label: `${devices} C responder processes`,
      procs: floorSocks.map((s) => startProc([...at.server, responder, s])),
      socks: floorSocks,
    };
    sides.push(floor);
    await Promise.all([waitForSockets(ours), waitForSockets(floor)]);
    const where = pin ? `clients on CPU ${cpuA}, servers on CPU ${cpuB}` : 'unpinned';
    progress(`scale: ${devices} devices, ${devices} clients, ${depth} in flight each, ${rounds} rounds of ${seconds} s (after ${WARM_S} s warm-up), ${where}`);

    const got = new Map<Side, Round[]>([
      [ours, []],
      [floor, []],
    ]);
    for (let i = 0; i < rounds; i++) {
      for (const side of i % 2 === 0 ? [ours, floor] : [floor, ours]) {
        const r = await round(side, loadgen, depth, seconds, at);
        got.get(side)!.push(r);
        const k = (v: number) => `${Math.round(v / 1000)}k`;
        progress(
          `scale round ${i + 1}, ${side.label}: aggregate ${k(r.aggregate)}/s, per device ${k(Math.min(...r.rates))}-${k(Math.max(...r.rates))} ` +
            `(fairness ${r.fairness.toFixed(2)}; slowest client had ${r.clientCpu[r.rates.indexOf(Math.min(...r.rates))]!.toFixed(3)} CPU-s/s, fastest ${r.clientCpu[r.rates.indexOf(Math.max(...r.rates))]!.toFixed(3)}); CPU-s/s: server ${r.cpu.server.toFixed(2)}, clients ${r.cpu.clients.toFixed(2)}, rest ${r.cpu.rest.toFixed(2)}, idle ${r.cpu.idle.toFixed(2)}`,
        );
      }
    }
    const o = got.get(ours)!;
    const f = got.get(floor)!;
    const ratios = o.map((r, i) => r.aggregate / f[i]!.aggregate);
    const spread = (xs: number[]) => `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;
    const cpu = (rs: Round[], what: string) => {
      const m = (k: keyof Round['cpu']) => median(rs.map((r) => r.cpu[k])).toFixed(2);
      const perOp = median(rs.map((r) => (r.cpu.server / r.aggregate) * 1e6)).toFixed(2);
      return `${what} ${m('server')} (${perOp} CPU-us/op), clients ${m('clients')}, rest of the machine ${m('rest')}, idle ${m('idle')}`;
    };
    const fair = o.map((r) => r.fairness);
    return [
      {
        name: `${devices} devices, ${devices} clients: aggregate`,
        value: median(o.map((r) => r.aggregate)),
        floor: median(f.map((r) => r.aggregate)),
        ratio: median(ratios),
        unit: 'ops/s',
        note:
          `REGION_READ and acknowledged REGION_WRITE in turn, ${depth} in flight per client, ${devices} C loadgens started together, ` +
          `${seconds} s windows after ${WARM_S} s, ${where}; ours: one server process, floor: ${devices} C responder processes; ` +
          `median of ${rounds} rounds' ratios, spread ${spread(ratios)}. CPU-seconds per second (of ${cpuCount()}): ` +
          `${cpu(o, 'our server')}; floor: ${cpu(f, 'C responders')}`,
      },
      {
        name: `  lowest / highest device`,
        value: median(o.map((r) => Math.min(...r.rates))),
        floor: median(o.map((r) => Math.max(...r.rates))),
        ratio: median(fair),
        unit: 'ops/s',
        goal: 0.8,
        note:
          `fairness in our one process: the slowest device's rate over the fastest one's in the same round (median; rounds ${fair.map((x) => x.toFixed(2)).join(' ')}); ` +
          `the floor's ${devices} processes under the kernel's scheduler: ${f.map((r) => r.fairness.toFixed(2)).join(' ')}`,
      },
    ];
  } finally {
    await Promise.all(sides.flatMap((s) => s.procs.map((p) => stopGroup(p.child))));
    if (process.env.BENCH_KEEP !== '1') rmSync(work, { recursive: true, force: true });
  }
}

function cpuCount(): number {
  return readFileSync('/proc/stat', 'utf8').split('\n').filter((l) => /^cpu\d/.test(l)).length;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await benchScale();
  process.stdout.write(formatTable(rows) + '\n');
}
