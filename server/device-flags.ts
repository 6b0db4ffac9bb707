// Command-line flags of each device kind, turned into the model's options
// (`serve gpio --input 0xBEEF` → { inputs: 0xbeef }). Config files give the
// same options by name; numbers may be JSON numbers or "0x..." strings.
import { ConfigError } from './config.js';
import { parseUnsigned, UsageError, type FlagSpec } from './cli-args.js';

interface OptionSpec {
  flag: string;
  option: string;
  help: string;
  max: number;
}

const OPTIONS: Record<string, OptionSpec[]> = {
  gpio: [{ flag: 'input', option: 'inputs', help: 'initial input lines, e.g. 0xBEEF (bit n = IIN n)', max: 0xffff }],
};

export function deviceFlagSpecs(kind: string): Record<string, FlagSpec> {
  const out: Record<string, FlagSpec> = {};
  for (const o of OPTIONS[kind] ?? []) out[o.flag] = { type: 'u32', help: o.help };
  return out;
}

export function optionsFromFlags(kind: string, flags: Record<string, unknown>): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  for (const o of OPTIONS[kind] ?? []) {
    const v = flags[o.flag];
    if (v === undefined) continue;
    if (typeof v !== 'number' || v > o.max) throw new UsageError(`--${o.flag} must be at most 0x${o.max.toString(16)}`);
    options[o.option] = v;
  }
  return options;
}

/** Normalises a config file's device options (hex strings → numbers), rejecting unknown ones. */
export function normaliseOptions(kind: string, options: Record<string, unknown>, what: string): Record<string, unknown> {
  const specs = OPTIONS[kind] ?? [];
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options)) {
    const spec = specs.find((s) => s.option === k);
    if (!spec) throw new ConfigError(`${what}: unknown option '${k}' for a ${kind} device`);
    let n: number;
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0) n = v;
    else if (typeof v === 'string') {
      try { n = Number(parseUnsigned(v, `${what}.${k}`)); } catch (err) { throw new ConfigError((err as Error).message); }
    } else throw new ConfigError(`${what}: '${k}' must be an unsigned number`);
    if (n > spec.max) throw new ConfigError(`${what}: '${k}' must be at most 0x${spec.max.toString(16)}`);
    out[k] = n;
  }
  return out;
}
