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
 * rounds in the given order, even rounds reversed).
 *
 * Results per round r (1-based): t_<label>_write_<r> / t_<label>_read_<r>
 * (seconds) and st_<label>_<op>_<r> (dd's exit status and last line); also
 * clock_overhead (two clock reads), t_zero_to_null (the same dd from /dev/zero
 * to /dev/null: the guest's own share of a write's time) and warmup_error.
 * Console marks: `@@MARK <label> <op> <r> start|end`.
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
  const round = (labels: readonly string[]) =>
    labels
      .map(
        (l) => `
    timed ${l} write $r if=/dev/zero of=${devOf(l)} oflag=direct
    timed ${l} read $r if=${devOf(l)} of=/dev/null iflag=direct`,
      )
      .join('');
  return `
t0=$EPOCHREALTIME; t1=$EPOCHREALTIME
result clock_overhead "$(elapsed $t0 $t1)"
t0=$EPOCHREALTIME
dd if=/dev/zero of=/dev/null bs=1M count=${mib} 2>/dev/null
t1=$EPOCHREALTIME
result t_zero_to_null "$(elapsed $t0 $t1)"
timed() {
  l=$1; op=$2; n=$3; shift 3
  echo "${MARK} $l $op $n start"
  t0=$EPOCHREALTIME
  dd "$@" bs=1M count=${mib} 2>/tmp/dd.err
  st=$?
  t1=$EPOCHREALTIME
  echo "${MARK} $l $op $n end"
  result t_\${l}_\${op}_$n "$(elapsed $t0 $t1)"
  result st_\${l}_\${op}_$n "$st $(tail -n 1 /tmp/dd.err)"
}
${warmup}
r=1
while [ $r -le ${rounds} ]; do
  if [ $((r % 2)) = 1 ]; then${round(o.labels)}
  else${round([...o.labels].reverse())}
  fi
  r=$((r + 1))
done
`;
}
