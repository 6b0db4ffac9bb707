// The guest results protocol, as printed on the serial console:
//   @@RESULT key=value   a result of the test script (value: the rest of the line)
//   @@DONE               the script got to its end
// and, printed by the guest's /init:
//   @@MODFAIL name.ko    a module failed to load
//   @@BOOTED seconds     /init is about to run /test.sh (guest uptime)
//   @@EXIT code          /test.sh exited with this status ("none": there was no /test.sh)

export interface GuestReport {
  results: Record<string, string>;
  /** Every value of each key, in order (a key may be printed more than once). */
  all: Record<string, string[]>;
  done: boolean;
  /** /test.sh's exit status; null if /init never printed it. */
  exitCode: number | null;
  /** Guest uptime in seconds when /test.sh started. */
  bootedAt: number | null;
  moduleFailures: string[];
}

/** A shell prelude for /test.sh: `result KEY VALUE...` prints one @@RESULT line. */
export const SCRIPT_PRELUDE = `result() { k="$1"; shift; echo "@@RESULT $k=$*"; }\n`;

/** Reads the @@ lines of a console transcript (lines may carry kernel noise before the @@). */
export function parseGuestOutput(lines: readonly string[] | string): GuestReport {
  const list = typeof lines === 'string' ? lines.split(/\r?\n/) : lines;
  const r: GuestReport = { results: {}, all: {}, done: false, exitCode: null, bootedAt: null, moduleFailures: [] };
  for (const raw of list) {
    const at = raw.indexOf('@@');
    if (at < 0) continue;
    const line = raw.slice(at);
    let m: RegExpExecArray | null;
    if ((m = /^@@RESULT ([^=\s]+)=(.*)$/.exec(line))) {
      r.results[m[1]!] = m[2]!;
      (r.all[m[1]!] ??= []).push(m[2]!);
    } else if (/^@@DONE\s*$/.test(line)) {
      r.done = true;
    } else if ((m = /^@@EXIT (\d+)\s*$/.exec(line))) {
      r.exitCode = Number(m[1]);
    } else if ((m = /^@@BOOTED ([\d.]+)/.exec(line))) {
      r.bootedAt = Number(m[1]);
    } else if ((m = /^@@MODFAIL (\S+)/.exec(line))) {
      r.moduleFailures.push(m[1]!);
    }
  }
  return r;
}
