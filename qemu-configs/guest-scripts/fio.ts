// Running fio in the guest (the fio layer of provisionFio must be in the boot)
// and reading its results: fio prints one terse line (version 3,
// semicolon-separated) per job group, which the script passes on as a
// result; parseFioTerse reads the fields the checks and benchmarks use.

/** Field positions (0-based) of `--output-format=terse --terse-version=3`. */
const F = {
  VERSION: 0,
  FIO: 1,
  ERROR: 4,
  /** Read section: KiB, KiB/s, IOPS, runtime ms; total latency mean (µs) at +34. */
  READ: 5,
  /** Write section: the same 41 fields after the read section. */
  WRITE: 46,
  LAT_MEAN: 34,
  FIELDS: 121,
} as const;

export interface FioDirection {
  kib: number;
  bwKiBs: number;
  iops: number;
  runtimeMs: number;
  /** Mean submit-to-completion latency, microseconds. */
  latMeanUs: number;
}

export interface FioResult {
  /** e.g. "fio-3.39". */
  fio: string;
  /** fio's error code for the job (0 = none). */
  error: number;
  read: FioDirection;
  write: FioDirection;
}

/**
 * Shell function for /test.sh: `fio_run KEY fio-arguments...` runs fio with
 * terse output for the group and prints `@@RESULT KEY=<terse line>` and
 * `@@RESULT KEY_status=<exit status>`.
 */
export const FIO_HELPERS = `
fio_run() {
  k=$1; shift
  fio --output-format=terse --terse-version=3 --group_reporting "$@" >/tmp/fio.out 2>/tmp/fio.err
  st=$?
  result "$k" "$(grep '^3;' /tmp/fio.out | tail -n 1)"
  result "\${k}_status" "$st $(tail -n 1 /tmp/fio.err)"
}
`;

/** Reads one terse line (throws when it is not one). */
export function parseFioTerse(line: string): FioResult {
  const f = line.trim().split(';');
  if (f.length < F.FIELDS || f[F.VERSION] !== '3') throw new Error(`not a fio terse v3 line (${f.length} fields): ${line.slice(0, 120)}`);
  const num = (i: number) => {
    const v = Number(f[i]);
    if (!Number.isFinite(v)) throw new Error(`fio terse field ${i + 1} is not a number: ${f[i]}`);
    return v;
  };
  const dir = (at: number): FioDirection => ({
    kib: num(at),
    bwKiBs: num(at + 1),
    iops: num(at + 2),
    runtimeMs: num(at + 3),
    latMeanUs: num(at + F.LAT_MEAN),
  });
  return { fio: f[F.FIO]!, error: num(F.ERROR), read: dir(F.READ), write: dir(F.WRITE) };
}
