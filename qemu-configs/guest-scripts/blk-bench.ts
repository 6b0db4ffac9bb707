// The guest side of the virtio-blk benchmark: timed steps (dd, or fio from the
// fio layer) on several virtio-blk disks of one guest, rounds interleaved so
// that every disk sees the same guest and host state: within a round each
// step runs on its disks one after another, in the given order in odd rounds
// and reversed in even ones (a step with `runs` does that `runs` times).
//
// Results per step, disk and run n (1-based; run j of round r is
// n = (r - 1) * runs + j, so n = r for a step that runs once per round):
//   dd:  t_<disk>_<step>_<n> (seconds, $EPOCHREALTIME), st_<disk>_<step>_<n> (exit status, dd's last line)
//        and n_<disk>_<step>_<n> (requests the disk completed during the run, runs redone, ddRequests):
//        block.ts's timed_dd
//   fio: f_<disk>_<step>_<n> (terse line, see fio.ts) and f_<disk>_<step>_<n>_status
// and per disk: <disk>_dev, <disk>_nr_queues (blk-mq hardware queues), <disk>_scheduler,
// <disk>_geometry (request limits from /sys/block/X/queue), <disk>_stat (/sys/block/X/stat
// at the end: requests and sectors per direction), plus the virtio_report fields.
import { DD_HELPERS } from './block.js';
import { FIO_HELPERS } from './fio.js';
import { VIRTIO_HELPERS, VIRTIO_ID_BLOCK } from './virtio.js';

export interface BlkBenchDisk {
  /** Result key part: [a-z0-9]+ (e.g. "ours", "qemu"). */
  label: string;
  /** PCI address of its virtio-blk device (e.g. 0000:00:08.0). */
  pci: string;
}

export interface BlkBenchStep {
  /** Result key part: [a-z0-9]+. */
  id: string;
  /** Labels of the disks it runs on, in the odd-round order. */
  disks: readonly string[];
  /** `dd` arguments (timed), or `fio` arguments; `$dev` is the disk's device node. */
  dd?: string;
  /**
   * The requests one dd run makes when the guest keeps each of its blocks
   * whole. A run that made more (the guest split its blocks) is run again.
   */
  ddRequests?: number;
  /** Times the step runs on each disk per round (default 1): short dd runs vary a lot, more of them steady the median. */
  runs?: number;
  fio?: string;
}

export interface BlkBenchScriptOptions {
  disks: readonly BlkBenchDisk[];
  steps: readonly BlkBenchStep[];
  rounds: number;
  /** Untimed MiB written and read on each disk first (default 16). */
  warmupMiB?: number;
}

const LABEL = /^[a-z0-9]+$/;
const PCI_ADDR = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;
/** Characters a step's arguments may use (they are pasted into the script). */
const ARGS = /^[A-Za-z0-9_=,.:/$ -]*$/;

/** /test.sh of the benchmark boot. */
export function blkBenchScript(o: BlkBenchScriptOptions): string {
  if (!Number.isInteger(o.rounds) || o.rounds < 1 || o.rounds > 100) throw new RangeError(`rounds ${o.rounds}`);
  const warm = o.warmupMiB ?? 16;
  if (!Number.isInteger(warm) || warm < 0 || warm > 4096) throw new RangeError(`warmupMiB ${warm}`);
  if (o.disks.length === 0) throw new RangeError('no disks');
  const labels = new Set<string>();
  for (const d of o.disks) {
    if (!LABEL.test(d.label) || labels.has(d.label)) throw new RangeError(`bad or repeated disk label '${d.label}'`);
    if (!PCI_ADDR.test(d.pci)) throw new RangeError(`bad PCI address '${d.pci}'`);
    labels.add(d.label);
  }
  const ids = new Set<string>();
  for (const s of o.steps) {
    if (!LABEL.test(s.id) || ids.has(s.id)) throw new RangeError(`bad or repeated step id '${s.id}'`);
    ids.add(s.id);
    if ((s.dd === undefined) === (s.fio === undefined)) throw new RangeError(`step ${s.id}: give dd or fio arguments`);
    if (s.runs !== undefined && (!Number.isInteger(s.runs) || s.runs < 1 || s.runs > 100)) throw new RangeError(`step ${s.id}: runs ${s.runs}`);
    if (s.ddRequests !== undefined && (s.dd === undefined || !Number.isInteger(s.ddRequests) || s.ddRequests < 1)) {
      throw new RangeError(`step ${s.id}: ddRequests must be a positive integer, with dd arguments`);
    }
    if (!ARGS.test(s.dd ?? s.fio!)) throw new RangeError(`step ${s.id}: unexpected characters in its arguments`);
    if (s.disks.length === 0 || s.disks.some((d) => !labels.has(d))) throw new RangeError(`step ${s.id}: unknown disk`);
  }
  const hex4 = `0x${VIRTIO_ID_BLOCK.toString(16).padStart(4, '0')}`;
  const find = o.disks
    .map(
      (d) => `
v=$(virtio_find ${hex4} "${d.pci}") || { result error "no virtio-blk at ${d.pci}"; ls -l /sys/bus/virtio/devices/; exit 1; }
virtio_report ${d.label} $v
i=0
while [ $i -lt 100 ] && ! ls $v/block/* >/dev/null 2>&1; do sleep 0.1; i=$((i + 1)); done
b=$(ls $v/block 2>/dev/null | head -n 1)
[ -n "$b" ] || { result error "virtio-blk at ${d.pci} has no block device"; exit 1; }
dev_${d.label}=/dev/$b
result ${d.label}_dev $b
result ${d.label}_scheduler "$(cat /sys/block/$b/queue/scheduler)"
result ${d.label}_nr_queues "$(ls /sys/block/$b/mq | wc -l)"
q=/sys/block/$b/queue
result ${d.label}_geometry "max_sectors_kb $(cat $q/max_sectors_kb) max_hw_sectors_kb $(cat $q/max_hw_sectors_kb) max_segments $(cat $q/max_segments) max_segment_size $(cat $q/max_segment_size) nr_requests $(cat $q/nr_requests)"`,
    )
    .join('\n');
  const warmup = o.disks
    .map(
      (d) => `
dd if=/dev/zero of=$dev_${d.label} bs=1M count=${warm} oflag=direct 2>/dev/null || result warmup_error "${d.label} write"
dd if=$dev_${d.label} of=/dev/null bs=1M count=${warm} iflag=direct 2>/dev/null || result warmup_error "${d.label} read"`,
    )
    .join('');
  const stepFns = o.steps
    .map((s) =>
      s.dd !== undefined
        ? `step_${s.id}() {
  dev=$2
  timed_dd $1_${s.id}_$3 $dev ${s.ddRequests ?? 0} ${s.dd}
}`
        : `step_${s.id}() {
  dev=$2
  fio_run f_$1_${s.id}_$3 --name=${s.id} --filename=$dev ${s.fio}
}`,
    )
    .join('\n');
  const calls = (reverse: boolean) =>
    o.steps
      .flatMap((s) => {
        const runs = s.runs ?? 1;
        const order = reverse ? [...s.disks].reverse() : s.disks;
        return Array.from({ length: runs }, (_, j) => order.map((d) => `    step_${s.id} ${d} $dev_${d} $(((r - 1) * ${runs} + ${j + 1}))`)).flat();
      })
      .join('\n');
  return `${VIRTIO_HELPERS}${FIO_HELPERS}${DD_HELPERS}
${find}
${warm > 0 ? warmup : ''}
${stepFns}
r=1
while [ $r -le ${o.rounds} ]; do
  echo "@@ROUND $r"
  if [ $((r % 2)) = 1 ]; then
${calls(false)}
  else
${calls(true)}
  fi
  r=$((r + 1))
done
${o.disks.map((d) => `result ${d.label}_stat "$(cat /sys/block/$(basename $dev_${d.label})/stat)"`).join('\n')}
echo @@DONE
`;
}
