// Field-by-field comparison of a recorded message with the one a replay
// got, on the decoded form (trace/decode.ts), so a divergence names the
// field (`data`, `error`, `count`, ...) rather than a byte offset.
import { flatten, showValue, type Decoded } from '../trace/decode.js';

/** One field that differs. */
export interface FieldDiff {
  field: string;
  recorded: string;
  replayed: string;
}

/** Decides whether a field is left out of the comparison. */
export type IgnoreRule = (command: string, field: string) => boolean;

/**
 * Fields never compared: an fd's file identity (st_dev:st_ino) belongs to
 * the process that made the file, so it differs in every run.
 */
const ALWAYS_IGNORED = /^fds\.\d+\.id$/;

/**
 * `--ignore` names: a whole field path (`fds.0.size`), a last path segment
 * (`data`: every field called data), or either prefixed with a command
 * (`REGION_READ.data`: only there).
 */
export function ignoreRule(names: readonly string[]): IgnoreRule {
  const set = new Set(names);
  return (command, field) => {
    if (ALWAYS_IGNORED.test(field)) return true;
    const last = field.slice(field.lastIndexOf('.') + 1);
    return set.has(field) || set.has(last) || set.has(`${command}.${field}`) || set.has(`${command}.${last}`);
  };
}

/** The fields of `recorded` and `replayed` that differ (none: they match). */
export function diffDecoded(recorded: Decoded, replayed: Decoded, ignore: IgnoreRule): FieldDiff[] {
  const a = flatten(recorded);
  const b = flatten(replayed);
  const out: FieldDiff[] = [];
  for (const field of new Set([...a.keys(), ...b.keys()])) {
    if (ignore(recorded.command, field)) continue;
    const x = a.get(field);
    const y = b.get(field);
    if (sameValue(x, y)) continue;
    out.push(describe(field, x, y, a.has(field), b.has(field)));
  }
  return out;
}

function sameValue(x: unknown, y: unknown): boolean {
  if (x instanceof Uint8Array && y instanceof Uint8Array) return Buffer.compare(x, y) === 0;
  return x === y;
}

function describe(field: string, x: unknown, y: unknown, hasX: boolean, hasY: boolean): FieldDiff {
  if (x instanceof Uint8Array && y instanceof Uint8Array) {
    // Bytes: where they first differ, and the bytes around it.
    let i = 0;
    while (i < x.length && i < y.length && x[i] === y[i]) i++;
    const at = Math.max(0, i - 4);
    return {
      field: `${field} (${x.length} vs ${y.length} bytes, first difference at byte ${i})`,
      recorded: `@${at}: ${showValue(x.subarray(at, at + 16))}`,
      replayed: `@${at}: ${showValue(y.subarray(at, at + 16))}`,
    };
  }
  return { field, recorded: hasX ? showValue(x) : '(absent)', replayed: hasY ? showValue(y) : '(absent)' };
}
