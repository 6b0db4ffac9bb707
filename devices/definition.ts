// The device SDK's core: what a device module exports. One definition feeds
// the registry, the CLI flags and their help, config-file validation and the
// README's device table, for built-in and out-of-tree devices alike.
import type { Logger, VfioUserDevice } from './device.js';

/** The value types an option can have: `size` accepts "64M"-style strings on top of numbers. */
export type OptionType = 'u32' | 'size' | 'string' | 'boolean';

/** One option of a device: type, bounds, default and the help shown by `vfio-user-ts help`. */
export interface OptionSpec {
  /** How the value is parsed and checked. */
  readonly type: OptionType;
  /** One line for help and the README. */
  readonly help: string;
  /** Used when the option is not given (and shown in help). */
  readonly default?: number | string | boolean;
  /** Must be given (an option with a default never needs to be). */
  readonly required?: boolean;
  /** u32 and size: inclusive lower bound. */
  readonly min?: number;
  /** u32 and size: inclusive upper bound (u32 options are at most 2^32-1 anyway). */
  readonly max?: number;
  /** Unit shown in help, e.g. "bytes" or "entries". */
  readonly unit?: string;
  /** Show numbers in hex (register-like values). */
  readonly hex?: boolean;
  /** Command-line flag without the dashes (default: the option name in kebab-case). */
  readonly flag?: string;
  /**
   * May be given more than once: the value is a non-empty list (`--disk a.img
   * --disk b.img` on the command line, an array or a single value in a config file).
   */
  readonly repeatable?: boolean;
}

/** A device's options by name (the name used in config files and by `create`). */
export type OptionsSchema = { readonly [name: string]: OptionSpec };

/** The TypeScript type of one option's value. */
export type OptionValue<T extends OptionType> = T extends 'boolean' ? boolean : T extends 'string' ? string : number;

/** An option's value as `create` gets it: a list for a repeatable option. */
type SpecValue<S extends OptionSpec> = S extends { readonly repeatable: true } ? OptionValue<S['type']>[] : OptionValue<S['type']>;

type Present<S extends OptionSpec> = S extends { readonly required: true } | { readonly default: unknown } ? true : false;

/**
 * The options object `create` receives: options with a default or marked
 * required are always present. For a schema not known statically (any
 * definition at all) it is `any`, so every definition fits DeviceDefinition.
 */
export type OptionValues<S extends OptionsSchema> = string extends keyof S ? any : KnownOptionValues<S>;

type KnownOptionValues<S extends OptionsSchema> = {
  -readonly [K in keyof S as Present<S[K]> extends true ? K : never]: SpecValue<S[K]>;
} & {
  -readonly [K in keyof S as Present<S[K]> extends true ? never : K]?: SpecValue<S[K]>;
};

/** What the server hands to `create`. */
export interface DeviceContext {
  /** The device's name (unique in the server; names it in logs and on the control socket). */
  readonly name: string;
  /** Logger for this device, quiet unless the server's log level says otherwise. */
  readonly log: Logger;
  /**
   * Deterministic mode (`--deterministic SEED`): fills a buffer from a seeded
   * generator. A device that makes random values must draw them from this
   * when it is given, so that the same seed and requests give the same replies.
   */
  readonly entropy?: (out: Uint8Array) => void;
  /**
   * Deterministic mode: a device with requests in flight at once must
   * complete them in the order they came, so that what the guest sees does
   * not depend on which I/O happened to finish first.
   */
  readonly deterministic?: boolean;
}

/** What `create` returns: the device the server serves, plus whatever host-side API the model offers. */
export interface DeviceModel {
  /** The device the server serves on its socket. */
  readonly device: VfioUserDevice;
}

/** A device kind: the default export of a device module, and the form of every built-in device. */
export interface DeviceDefinition<S extends OptionsSchema = OptionsSchema, M extends DeviceModel = DeviceModel> {
  /** Short name, e.g. "gpio" (for a module device, the module path names it on the command line). */
  readonly kind: string;
  /** One line: what the device is (shown by `vfio-user-ts devices`). */
  readonly description: string;
  /** The Linux driver that binds to it, if any (for the README's table). */
  readonly guestDriver?: string;
  /** Its options. */
  readonly options: S;
  /** Builds one device from checked options (defaults applied). */
  create(options: OptionValues<S>, context: DeviceContext): M | Promise<M>;
}

/** Identity function that infers option types from the schema: `export default defineDevice({...})`. */
export function defineDevice<const S extends OptionsSchema, M extends DeviceModel>(definition: DeviceDefinition<S, M>): DeviceDefinition<S, M> {
  return definition;
}

/** A module or object that is not a valid device definition; the message names it and what is wrong. */
export class DefinitionError extends Error {}

/** An option value (from a config file, the command line or code) that the schema refuses. */
export class OptionError extends Error {}

/** A logger that drops everything (for devices built outside a server). */
export const quietLogger: Logger = { error() {}, warn() {}, info() {}, debug() {} };

const OPTION_TYPES: readonly OptionType[] = ['u32', 'size', 'string', 'boolean'];
const KIND_RE = /^[a-z][a-z0-9-]{0,31}$/;
const FLAG_RE = /^[a-z][a-z0-9-]{0,63}$/;
const U32_MAX = 0xffff_ffff;

/** The option's command-line flag (without dashes). */
export function flagName(name: string, spec: OptionSpec): string {
  return spec.flag ?? name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/**
 * Checks that `value` is a usable definition and returns it; otherwise throws
 * a DefinitionError listing every problem, prefixed with `source`.
 */
export function checkDefinition(value: unknown, source: string): DeviceDefinition {
  if (typeof value !== 'object' || value === null) throw new DefinitionError(`${source}: the definition must be an object, got ${typeName(value)}`);
  const d = value as Record<string, unknown>;
  const problems: string[] = [];
  if (typeof d.kind !== 'string' || !KIND_RE.test(d.kind)) problems.push(`'kind' must be a short lower-case name like "my-device" (got ${show(d.kind)})`);
  if (typeof d.description !== 'string' || d.description === '') problems.push("'description' must be a non-empty string");
  if (d.guestDriver !== undefined && typeof d.guestDriver !== 'string') problems.push("'guestDriver' must be a string");
  if (typeof d.create !== 'function') problems.push("'create' must be a function (options, context) => { device }");
  if (typeof d.options !== 'object' || d.options === null || Array.isArray(d.options)) problems.push("'options' must be an object (use {} for none)");
  else problems.push(...schemaProblems(d.options as Record<string, unknown>));
  if (problems.length) throw new DefinitionError(`${source}: not a valid device definition: ${problems.join('; ')}`);
  return value as DeviceDefinition;
}

function schemaProblems(options: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const flags = new Map<string, string>();
  for (const [name, raw] of Object.entries(options)) {
    const what = `option '${name}'`;
    if (typeof raw !== 'object' || raw === null) { problems.push(`${what} must be an object { type, help, ... }`); continue; }
    const s = raw as Record<string, unknown>;
    if (!OPTION_TYPES.includes(s.type as OptionType)) problems.push(`${what}: 'type' must be one of ${OPTION_TYPES.join(', ')} (got ${show(s.type)})`);
    if (typeof s.help !== 'string' || s.help === '') problems.push(`${what}: 'help' must be a non-empty string`);
    for (const k of ['min', 'max'] as const) {
      if (s[k] === undefined) continue;
      if (s.type !== 'u32' && s.type !== 'size') problems.push(`${what}: '${k}' only applies to u32 and size options`);
      else if (!Number.isSafeInteger(s[k]) || (s[k] as number) < 0) problems.push(`${what}: '${k}' must be a non-negative integer`);
    }
    if (typeof s.min === 'number' && typeof s.max === 'number' && s.min > s.max) problems.push(`${what}: 'min' is above 'max'`);
    if (s.unit !== undefined && typeof s.unit !== 'string') problems.push(`${what}: 'unit' must be a string`);
    if (s.required !== undefined && typeof s.required !== 'boolean') problems.push(`${what}: 'required' must be true or false`);
    if (s.required === true && s.default !== undefined) problems.push(`${what}: a required option has no default`);
    if (s.flag !== undefined && (typeof s.flag !== 'string' || !FLAG_RE.test(s.flag))) problems.push(`${what}: 'flag' must be a lower-case name like "queue-size"`);
    if (s.repeatable !== undefined && typeof s.repeatable !== 'boolean') problems.push(`${what}: 'repeatable' must be true or false`);
    if (s.repeatable === true && s.type === 'boolean') problems.push(`${what}: a boolean option cannot be repeatable`);
    if (s.default !== undefined && OPTION_TYPES.includes(s.type as OptionType)) {
      try {
        parseValue(name, s as unknown as OptionSpec, s.default, 'default');
      } catch (err) {
        problems.push(`${what}: bad default: ${(err as Error).message}`);
      }
    }
    const flag = flagName(name, s as unknown as OptionSpec);
    const other = flags.get(flag);
    if (other !== undefined) problems.push(`options '${other}' and '${name}' both use the flag --${flag}`);
    flags.set(flag, name);
  }
  return problems;
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** "4096", "0x1000", "64M", "64MiB", "2G" → bytes (whole numbers; K = 1024). */
export function parseSize(raw: string, what: string): number {
  const s = raw.trim().replace(/_/g, '');
  const m = /^(0x[0-9a-f]+|[0-9]+)\s*(?:([kmgt])(?:i?b)?|b)?$/i.exec(s);
  if (!m) throw new OptionError(`${what}: '${raw}' is not a size (bytes, or a number with K, M, G or T)`);
  const n = Number(BigInt(m[1]!)) * SIZE_UNITS[(m[2] ?? '').toLowerCase()]!;
  if (!Number.isSafeInteger(n)) throw new OptionError(`${what}: '${raw}' is too large`);
  return n;
}

/** Decimal, 0x hex or 0b binary (underscores allowed); no sign, no garbage. */
export function parseUnsigned(raw: string, what: string): bigint {
  const s = raw.trim().replace(/_/g, '');
  if (!/^(0x[0-9a-f]+|0b[01]+|[0-9]+)$/i.test(s)) throw new OptionError(`${what}: '${raw}' is not an unsigned number`);
  return BigInt(s);
}

function parseNumber(raw: string, what: string): number {
  const n = Number(parseUnsigned(raw, what));
  if (!Number.isSafeInteger(n)) throw new OptionError(`${what}: '${raw}' is too large`);
  return n;
}

/**
 * One option's value from a config file, the command line (always a string
 * there) or code: numbers may be "0x..." strings, sizes "64M", booleans
 * "true"/"false". `what` names the option in the error ("--queue-size").
 */
export function parseOption(name: string, spec: OptionSpec, value: unknown, what: string): number | string | boolean {
  switch (spec.type) {
    case 'boolean':
      if (value === true || value === 'true') return true;
      if (value === false || value === 'false') return false;
      throw new OptionError(`${what} must be true or false`);
    case 'string':
      if (typeof value !== 'string' || value === '') throw new OptionError(`${what} must be a non-empty string`);
      return value;
    case 'u32':
    case 'size': {
      let n: number;
      if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) n = value;
      else if (typeof value === 'string') n = spec.type === 'size' ? parseSize(value, what) : parseNumber(value, what);
      else throw new OptionError(`${what} must be an unsigned whole number${spec.type === 'size' ? ' or a size like "64M"' : ''}`);
      const max = spec.type === 'u32' ? Math.min(spec.max ?? U32_MAX, U32_MAX) : spec.max;
      if (max !== undefined && n > max) throw new OptionError(`${what} must be at most ${formatNumber(spec, max)}`);
      if (spec.min !== undefined && n < spec.min) throw new OptionError(`${what} must be at least ${formatNumber(spec, spec.min)}`);
      return n;
    }
    default:
      throw new OptionError(`${what}: option '${name}' has an unknown type`);
  }
}

/**
 * Checks a device's options against its schema: refuses unknown names (listing
 * the known ones) and missing required ones, parses each value, applies
 * defaults. `what(name)` names an option in errors, e.g. `devices[0]: 'disk'`.
 */
export function validateOptions(
  definition: DeviceDefinition,
  options: Readonly<Record<string, unknown>>,
  what: (name: string) => string,
  device = `a ${definition.kind} device`,
): Record<string, unknown> {
  const schema = definition.options;
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(options)) {
    if (!Object.hasOwn(schema, name)) {
      const known = Object.keys(schema);
      throw new OptionError(`${what(name)}: unknown option for ${device} (${known.length ? `known: ${known.join(', ')}` : 'it has no options'})`);
    }
    if (value === undefined) continue;
    out[name] = parseValue(name, schema[name]!, value, what(name));
  }
  for (const [name, spec] of Object.entries(schema)) {
    if (out[name] !== undefined) continue;
    // Defaults go through the same parser: a size default may be written '1M'.
    if (spec.default !== undefined) out[name] = parseValue(name, spec, spec.default, `${what(name)} (default)`);
    else if (spec.required) throw new OptionError(`${what(name)} is required for ${device}`);
  }
  return out;
}

/** Most values a repeatable option takes. */
const MAX_REPEAT = 64;

/** An option's value: parseOption, or for a repeatable option a list of them (one value alone is a list of one). */
export function parseValue(name: string, spec: OptionSpec, value: unknown, what: string): unknown {
  if (!spec.repeatable) return parseOption(name, spec, value, what);
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0) throw new OptionError(`${what} needs at least one value`);
  if (list.length > MAX_REPEAT) throw new OptionError(`${what}: at most ${MAX_REPEAT} values`);
  return list.map((v, i) => parseOption(name, spec, v, list.length > 1 ? `${what}[${i}]` : what));
}

/** One line of help for an option: its text, range, unit and default. */
export function describeOption(spec: OptionSpec): string {
  const notes: string[] = [];
  if (spec.min !== undefined && spec.max !== undefined) notes.push(`${formatNumber(spec, spec.min)}..${formatNumber(spec, spec.max)}`);
  else if (spec.min !== undefined) notes.push(`at least ${formatNumber(spec, spec.min)}`);
  else if (spec.max !== undefined) notes.push(`at most ${formatNumber(spec, spec.max)}`);
  if (spec.unit) notes.push(spec.unit);
  if (spec.required) notes.push('required');
  if (spec.repeatable) notes.push('repeatable');
  if (spec.default !== undefined) notes.push(`default ${typeof spec.default === 'number' ? formatNumber(spec, spec.default) : String(spec.default)}`);
  return notes.length ? `${spec.help} (${notes.join(', ')})` : spec.help;
}

function formatNumber(spec: OptionSpec, n: number): string {
  return spec.hex ? `0x${n.toString(16)}` : String(n);
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : typeName(v);
}
