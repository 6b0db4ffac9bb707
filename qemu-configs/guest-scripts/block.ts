// Guest shell pieces for any block device, shared by the virtio-blk and NVMe
// scripts: the known-pattern round trip of the e2e tests and the timed `dd`
// rounds of the benchmarks. Each piece expects the caller's script to have
// found the device and set the shell variable(s) it names; finding devices
// is the device-specific part (virtio.ts, nvme.ts).
//
// Guest tools are busybox's: dd (iflag/oflag=direct work), sha256sum,
// md5sum, cmp. Its date has no %N; times come from ash's builtin
// $EPOCHREALTIME (microseconds, read without a fork). The host may also time
// the @@MARK lines.

/** Printed as `@@MARK <what>` around timed work, for timing on the host. */
export const MARK = '@@MARK';

const PCI_ADDR_RE = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

/** A PCI address as the guest's sysfs names it (e.g. 0000:00:08.0), or '' for none. */
export function checkPci(pci: string | undefined): string {
  if (pci === undefined) return '';
  if (!PCI_ADDR_RE.test(pci)) throw new RangeError(`bad PCI address '${pci}' (want e.g. 0000:00:08.0)`);
  return pci;
}

/** A whole number of MiB a guest script may move (1..4096). */
export function checkMiB(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1 || n > 4096) throw new RangeError(`${what}: ${n} MiB`);
  return n;
}

/**
 * Shell helpers (times are ash's builtin $EPOCHREALTIME, taken into a variable
 * before any command substitution forks):
 *   up              guest uptime in seconds (10 ms resolution)
 *   elapsed T0 T1   T1 - T0 in seconds, 6 decimals
 */
export const TIMING_HELPERS = `
up() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }
`;

/**
 * The known-pattern round trip on `$dev` (needs TIMING_HELPERS): `mib` MiB of
 * /dev/urandom into /tmp/pattern (kept for the caller; its sha256 is the
 * pattern the host checks the image against), written to the disk at offset 0
 * with O_DIRECT (+ fsync, so a flush is sent when the device has a volatile
 * cache), read back with O_DIRECT after dropping caches, and compared.
 *
 * Results: pattern_sha256, pattern_md5s (md5 of each MiB, space separated),
 * write_status, write_s, read_status, read_s, readback_sha256, match (yes|no),
 * and on a mismatch first_diff (cmp's line) and bad_mib (the MiB indices that
 * differ). Console marks: `@@MARK write-start|write-end|read-start|read-end`.
 */
export function patternRoundTrip(mib: number): string {
  checkMiB(mib, 'mib');
  return `
MIB=${mib}
dd if=/dev/urandom of=/tmp/pattern bs=1M count=$MIB 2>/dev/null
result pattern_sha256 "$(sha256sum < /tmp/pattern | cut -d' ' -f1)"
sums=
i=0
while [ $i -lt $MIB ]; do
  sums="$sums $(dd if=/tmp/pattern bs=1M skip=$i count=1 2>/dev/null | md5sum | cut -d' ' -f1)"
  i=$((i + 1))
done
result pattern_md5s $sums
echo "${MARK} write-start"
t0=$EPOCHREALTIME
dd if=/tmp/pattern of=$dev bs=1M count=$MIB oflag=direct conv=fsync 2>/tmp/dd.err
st=$?
result write_status "$st $(tail -n 1 /tmp/dd.err)"
t1=$EPOCHREALTIME
result write_s "$(elapsed $t0 $t1)"
echo "${MARK} write-end"
echo 3 > /proc/sys/vm/drop_caches
echo "${MARK} read-start"
t0=$EPOCHREALTIME
dd if=$dev of=/tmp/readback bs=1M count=$MIB iflag=direct 2>/tmp/dd.err
st=$?
result read_status "$st $(tail -n 1 /tmp/dd.err)"
t1=$EPOCHREALTIME
result read_s "$(elapsed $t0 $t1)"
echo "${MARK} read-end"
rsum=$(sha256sum < /tmp/readback | cut -d' ' -f1)
result readback_sha256 "$rsum"
if [ "$rsum" = "$(sha256sum < /tmp/pattern | cut -d' ' -f1)" ]; then
  result match yes
else
  result match no
  result first_diff "$(cmp /tmp/pattern /tmp/readback 2>&1 | head -n 1)"
  bad=
  i=0
  for s in $sums; do
    r=$(dd if=/tmp/readback bs=1M skip=$i count=1 2>/dev/null | md5sum | cut -d' ' -f1)
    [ "$r" = "$s" ] || bad="$bad $i"
    i=$((i + 1))
  done
  result bad_mib $bad
fi
rm -f /tmp/readback
`;
}

/**
 * How often a dd run whose blocks the guest split is run again. A 1 MiB
 * O_DIRECT block is one request only when dd's buffer has few enough
 * physically contiguous pieces (virtio-blk: seg_max, 254 for both devices of
 * the bench; NVMe: the driver's 128 segments per command). The buffer's
 * pages come from the CPU's free list, where the previous dd run's buffer
 * went in reverse order, so every second run got 256 separate pages and
 * made two requests per MiB (a third more guest time per MiB), whichever
 * disk it ran on: in an interleaved round one disk's run split and the
 * other's did not. Compacting memory first makes a whole buffer likely; a
 * run that split anyway is redone.
 */
export const DD_REDO = 3;

/**
 * Shell helpers for timed dd runs (with TIMING_HELPERS):
 *   disk_requests DEV        reads plus writes the disk has completed (/sys/block/X/stat)
 *   max_sectors_kb DEV       the disk's request size limit (/sys/block/X/queue)
 *   whole_requests MIB KB    the requests MIB blocks of 1 MiB make when the guest
 *                            keeps each whole, under a limit of KB KiB per request
 *   compact_memory           compacts the guest's memory
 *   timed_dd KEY DEV MAX ARGS...
 *                            `dd ARGS`, timed, after compact_memory; run again (at
 *                            most DD_REDO times) while it succeeded and made more
 *                            than MAX requests on DEV (0: no check). Results
 *                            t_KEY (seconds), st_KEY (exit status and dd's last
 *                            line), n_KEY (requests made, runs redone, MAX);
 *                            dd's messages go to $dd_err (default /tmp/dd.err)
 */
export const DD_HELPERS = `
dd_err=/tmp/dd.err
disk_requests() {
  set -- $(cat /sys/block/\${1##*/}/stat)
  echo $(($1 + $5))
}
max_sectors_kb() { cat /sys/block/\${1##*/}/queue/max_sectors_kb; }
whole_requests() {
  if [ "$2" -ge 1024 ]; then echo $1; else echo $(($1 * ((1024 + $2 - 1) / $2))); fi
}
compact_memory() { echo 1 > /proc/sys/vm/compact_memory 2>/dev/null; }
timed_dd() {
  key=$1; dev=$2; max=$3; shift 3
  redone=0
  while :; do
    compact_memory
    n0=$(disk_requests $dev)
    t0=$EPOCHREALTIME
    dd "$@" 2>$dd_err
    st=$?
    t1=$EPOCHREALTIME
    n=$(($(disk_requests $dev) - n0))
    [ $st = 0 ] && [ $max -gt 0 ] && [ $n -gt $max ] && [ $redone -lt ${DD_REDO} ] || break
    redone=$((redone + 1))
  done
  result t_$key "$(elapsed $t0 $t1)"
  result st_$key "$st $(tail -n 1 $dd_err)"
  result n_$key "$n $redone $max"
}
`;

export interface DdRoundsOptions {
  /** Result key parts, [a-z0-9]+ each; the caller has set `$dev_<label>` for each. */
  labels: readonly string[];
  /** MiB per dd (default 256). */
  mib?: number;
  /** Timed rounds; each round runs write then read on every disk in turn (default 3). */
  rounds?: number;
  /** Untimed MiB written and read on each disk first (default 16). */
  warmupMiB?: number;
}

/** Checks the labels of a benchmark script: [a-z0-9]+, none repeated. */
export function checkLabels(labels: readonly string[]): void {
  if (labels.length === 0) throw new RangeError('no disks');
  const seen = new Set<string>();
  for (const l of labels) {
    if (!/^[a-z0-9]+$/.test(l) || seen.has(l)) throw new RangeError(`bad or repeated label '${l}'`);
    seen.add(l);
  }
}

/**
 * Timed `dd bs=1M` of `mib` MiB with O_DIRECT (needs TIMING_HELPERS), write
 * (from /dev/zero) then read (to /dev/null), on each disk in turn, `rounds`
 * times, interleaved so every disk sees the same guest and host state (odd
 * rounds in the given order, even rounds reversed). Each run is DD_HELPERS'
 * timed_dd: redone while the guest split its blocks.
 *
 * Results per round r (1-based): t_<label>_<op>_<r> (seconds),
 * st_<label>_<op>_<r> (dd's exit status and last line) and
 * n_<label>_<op>_<r> (requests, runs redone, the most a whole run makes),
 * op write or read; also clock_overhead (two clock reads), t_zero_to_null
 * (the same dd from /dev/zero to /dev/null: the guest's own share of a
 * write's time) and warmup_error.
 */
export function ddRounds(o: DdRoundsOptions): string {
  const mib = checkMiB(o.mib ?? 256, 'mib');
  const rounds = o.rounds ?? 3;
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 100) throw new RangeError(`rounds ${rounds}`);
  const warm = o.warmupMiB ?? 16;
  if (!Number.isInteger(warm) || warm < 0 || warm > mib) throw new RangeError(`warmupMiB ${warm}`);
  checkLabels(o.labels);
  const devOf = (label: string) => `$dev_${label}`;
  const warmup =
    warm === 0
      ? ''
      : o.labels
          .map(
            (l) => `
dd if=/dev/zero of=${devOf(l)} bs=1M count=${warm} oflag=direct 2>/dev/null || result warmup_error "${l} write"
dd if=${devOf(l)} of=/dev/null bs=1M count=${warm} iflag=direct 2>/dev/null || result warmup_error "${l} read"`,
          )
          .join('');
  const whole = o.labels.map((l) => `\nwhole_${l}=$(whole_requests ${mib} $(max_sectors_kb ${devOf(l)}))`).join('');
  const round = (labels: readonly string[]) =>
    labels
      .map(
        (l) => `
    timed_dd ${l}_write_$r ${devOf(l)} $whole_${l} if=/dev/zero of=${devOf(l)} bs=1M count=${mib} oflag=direct
    timed_dd ${l}_read_$r ${devOf(l)} $whole_${l} if=${devOf(l)} of=/dev/null bs=1M count=${mib} iflag=direct`,
      )
      .join('');
  return `${DD_HELPERS}
t0=$EPOCHREALTIME; t1=$EPOCHREALTIME
result clock_overhead "$(elapsed $t0 $t1)"
t0=$EPOCHREALTIME
dd if=/dev/zero of=/dev/null bs=1M count=${mib} 2>/dev/null
t1=$EPOCHREALTIME
result t_zero_to_null "$(elapsed $t0 $t1)"
${warmup}${whole}
r=1
while [ $r -le ${rounds} ]; do
  if [ $((r % 2)) = 1 ]; then${round(o.labels)}
  else${round([...o.labels].reverse())}
  fi
  r=$((r + 1))
done
`;
}
