// A strict command-line parser: known flags only, typed values, clear errors.
import { parseUnsigned } from '../devices/definition.js';

/** A command line that cannot be run; the CLI prints it and exits with 2. */
export class UsageError extends Error {}

/** A flag that the command does not have. */
export class UnknownFlagError extends UsageError {
  constructor(readonly flag: string) {
    super(`unknown option --${flag}`);
  }
}

/** How a flag's value is parsed. */
export type FlagType = 'string' | 'boolean' | 'u32' | 'u64';

/** One flag of a command. */
export interface FlagSpec {
  type: FlagType;
  /** Shown in help. */
  help: string;
  /** The value's name in help (default: n for numbers, value for strings). */
  placeholder?: string;
  /** May be given more than once (values collect into an array). */
  repeat?: boolean;
}

/** Parsed flags by name. */
export type FlagValues = Record<string, string | boolean | number | bigint | Array<string | number | bigint>>;

/** Parse `--name value`, `--name=value` and boolean `--name`; rest are positionals. */
export function parseArgs(argv: readonly string[], spec: Record<string, FlagSpec>): { flags: FlagValues; positionals: string[] } {
  const flags: FlagValues = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') { positionals.push(...argv.slice(i + 1)); break; }
    if (!arg.startsWith('--')) { positionals.push(arg); continue; }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const s = spec[name];
    if (!s) throw new UnknownFlagError(name);
    let raw: string | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
    let value: string | boolean | number | bigint;
    if (s.type === 'boolean') {
      if (raw !== undefined && raw !== 'true' && raw !== 'false') throw new UsageError(`--${name} takes no value`);
      value = raw !== 'false';
    } else {
      if (raw === undefined) {
        raw = argv[++i];
        if (raw === undefined) throw new UsageError(`--${name} needs a value`);
      }
      value = parseValue(name, s.type, raw);
    }
    if (s.repeat) {
      const list = (flags[name] ??= []) as Array<string | number | bigint>;
      list.push(value as string | number | bigint);
    } else {
      if (name in flags) throw new UsageError(`--${name} given twice`);
      flags[name] = value;
    }
  }
  return { flags, positionals };
}

function parseValue(name: string, type: FlagType, raw: string): string | number | bigint {
  switch (type) {
    case 'string':
      if (raw === '') throw new UsageError(`--${name} must not be empty`);
      return raw;
    case 'u32': {
      const v = parseUnsigned(raw, name);
      if (v > 0xffffffffn) throw new UsageError(`--${name} ${raw} is above 2^32-1`);
      return Number(v);
    }
    case 'u64': {
      const v = parseUnsigned(raw, name);
      if (v >= 1n << 64n) throw new UsageError(`--${name} ${raw} is above 2^64-1`);
      return v;
    }
    default:
      throw new UsageError(`--${name}: bad flag type`);
  }
}

/** One line per flag: name, value placeholder, help. */
export function helpFor(spec: Record<string, FlagSpec>): string {
  return Object.entries(spec)
    .map(([k, s]) => `  --${k}${s.type === 'boolean' ? '' : ` <${s.placeholder ?? (s.type === 'string' ? 'value' : 'n')}>`}`.padEnd(28) + s.help)
    .join('\n');
}
