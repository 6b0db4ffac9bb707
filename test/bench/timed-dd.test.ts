// The benchmarks' timed dd runs (block.ts's DD_HELPERS), run by the host's
// shell with dd, the disk's request counter and compaction played by the
// test: a run the guest split is redone, at most DD_REDO times, and only
// when it succeeded and a limit was given.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DD_HELPERS, DD_REDO } from '../../qemu-configs/guest-scripts/block.js';

interface Run {
  results: Record<string, string>;
  /** What dd wrote to $dd_err (in the test's directory), or null when there is no such file. */
  ddErr: string | null;
  /** dd calls made, and compactions before them. */
  dds: number;
  compactions: number;
}

/** timed_dd KEY /dev/vdz MAX, where the n-th dd call makes plan[n] requests and exits with its status. */
function timedDd(t: Test, max: number, plan: number[], status = 0): Run {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-timed-dd-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'plan'), plan.join('\n') + '\n');
  const script = `${DD_HELPERS}
S=${dir}
dd_err=$S/dd.err
echo 0 > $S/count; echo 0 > $S/dds; echo 0 > $S/compactions
result() { echo "$1=$2"; }
elapsed() { echo 0.5; }
disk_requests() { cat $S/count; }
compact_memory() { echo $(($(cat $S/compactions) + 1)) > $S/compactions; }
dd() {
  k=$(($(cat $S/dds) + 1)); echo $k > $S/dds
  echo $(($(cat $S/count) + $(sed -n "\${k}p" $S/plan))) > $S/count
  echo "dd run $k" >&2
  return ${status}
}
timed_dd key /dev/vdz ${max} if=/dev/zero of=/dev/vdz bs=1M count=256
echo "dds=$(cat $S/dds)"
echo "compactions=$(cat $S/compactions)"
`;
  const r = spawnSync('/bin/sh', ['-c', script], { encoding: 'utf8' });
  t.equal(r.status, 0, `the shell ran it: ${r.stderr}`);
  const out: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  const errFile = path.join(dir, 'dd.err');
  const ddErr = fs.existsSync(errFile) ? fs.readFileSync(errFile, 'utf8') : null;
  return { results: out, ddErr, dds: Number(out.dds), compactions: Number(out.compactions) };
}

t.test('a whole run is taken as it is', async (t) => {
  const r = timedDd(t, 256, [256]);
  t.same({ dds: r.dds, compactions: r.compactions }, { dds: 1, compactions: 1 });
  t.equal(r.results.n_key, '256 0 256');
  t.equal(r.results.t_key, '0.5');
  t.equal(r.results.st_key, '0 dd run 1');
  t.equal(r.ddErr, 'dd run 1\n', "dd's messages went to $dd_err, in the test's directory");
});

t.test('a split run is redone until one is whole', async (t) => {
  const r = timedDd(t, 256, [512, 512, 256]);
  t.same({ dds: r.dds, compactions: r.compactions }, { dds: 3, compactions: 3 }, 'memory compacted before every run');
  t.equal(r.results.n_key, '256 2 256', 'the kept run, and two redone');
  t.equal(r.results.st_key, '0 dd run 3', 'the last run is the one reported');
});

t.test(`at most ${DD_REDO} redos`, async (t) => {
  const r = timedDd(t, 256, Array(DD_REDO + 3).fill(300));
  t.equal(r.dds, DD_REDO + 1);
  t.equal(r.results.n_key, `300 ${DD_REDO} 256`, 'still split in the end, and says so');
});

t.test('no limit: never redone', async (t) => {
  const r = timedDd(t, 0, [512, 256]);
  t.equal(r.dds, 1);
  t.equal(r.results.n_key, '512 0 0');
});

t.test('a failed dd is not redone', async (t) => {
  const r = timedDd(t, 256, [512, 256], 1);
  t.equal(r.dds, 1);
  t.equal(r.results.st_key, '1 dd run 1');
  t.equal(r.results.n_key, '512 0 256');
});

t.test('whole_requests: 1 MiB blocks under the disk limit', async (t) => {
  const cases: [number, number, number][] = [
    [256, 1280, 256], // virtio-blk: max_sectors_kb 1280
    [256, 1024, 256], // NVMe at MDTS 1 MiB
    [256, 512, 512], // NVMe at 512 KiB
    [256, 384, 768], // a limit that does not divide 1 MiB: three pieces each
    [1, 4, 256],
  ];
  for (const [mib, kb, want] of cases) {
    const r = spawnSync('/bin/sh', ['-c', `${DD_HELPERS}\nwhole_requests ${mib} ${kb}`], { encoding: 'utf8' });
    t.equal(r.stdout.trim(), String(want), `${mib} MiB at ${kb} KiB`);
  }
});
