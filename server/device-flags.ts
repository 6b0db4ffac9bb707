// Command-line flags of each device kind, turned into the model's options
// (`serve gpio --input 0xBEEF` → { inputs: 0xbeef }, `serve blk --disk d.img
// --size 64M --queues 2` → { disk: 'd.img', size: 67108864, queues: 2 }).
// Config files give the same options by name; numbers may be JSON numbers or
// "0x..." strings, sizes also "64M" style strings, booleans JSON booleans.
import { ConfigError } from './config.js';
import { parseUnsigned, UsageError, type FlagSpec } from './cli-args.js';

type OptionType = 'u32' | 'string' | 'boolean' | 'size';

interface OptionSpec {
  flag: string;
  option: string;
  help: string;
  type: OptionType;
  /** u32 and size: inclusive bounds. */
  min?: number;
  max?: number;
  /** Show the bound in hex (register-like values). */
  hex?: boolean;
}

const OPTIONS: Record<string, OptionSpec[]> = {
  gpio: [{ flag: 'input', option: 'inputs', type: 'u32', help: 'initial input lines, e.g. 0xBEEF (bit n = IIN n)', max: 0xffff, hex: true }],
  rng: [
    { flag: 'queue-size', option: 'queueSize', type: 'u32', help: 'request queue size (power of two, default 64)', min: 1, max: 32768 },
  ],
  blk: [
    { flag: 'disk', option: 'disk', type: 'string', help: 'raw image file (created at --size if missing)' },
    { flag: 'size', option: 'size', type: 'size', help: 'image size when creating it, bytes or 64M/2G style', min: 512, max: Number.MAX_SAFE_INTEGER },
    { flag: 'readonly', option: 'readonly', type: 'boolean', help: 'read-only disk (VIRTIO_BLK_F_RO)' },
    { flag: 'queues', option: 'queues', type: 'u32', help: 'request queues (1..64, default 1; >1 offers VIRTIO_BLK_F_MQ)', min: 1, max: 64 },
    { flag: 'queue-size', option: 'queueSize', type: 'u32', help: 'size of each queue (power of two, 4..1024, default 256)', min: 4, max: 1024 },
    { flag: 'serial', option: 'serial', type: 'string', help: 'GET_ID serial (at most 20 bytes, default: the image file name)' },
  ],
};

const FLAG_TYPE: Record<OptionType, FlagSpec['type']> = { u32: 'u32', string: 'string', boolean: 'boolean', size: 'string' };

const SIZE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** "4096", "0x1000", "64M", "64MiB", "2G" → bytes (whole numbers; K = 1024). */
export function parseSize(raw: string, what: string): number {
  const s = raw.trim().replace(/_/g, '');
  const m = /^(0x[0-9a-f]+|[0-9]+)\s*(?:([kmgt])(?:i?b)?|b)?$/i.exec(s);
  if (!m) throw new UsageError(`${what}: '${raw}' is not a size (bytes, or a number with K, M, G or T)`);
  const n = Number(BigInt(m[1]!)) * SIZE_UNITS[(m[2] ?? '').toLowerCase()]!;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${what}: '${raw}' is too large`);
  return n;
}

function checkBounds(o: OptionSpec, n: number, fail: (msg: string) => Error, name: string): number {
  if (o.max !== undefined && n > o.max) throw fail(`${name} must be at most ${o.hex ? `0x${o.max.toString(16)}` : o.max}`);
  if (o.min !== undefined && n < o.min) throw fail(`${name} must be at least ${o.min}`);
  return n;
}

export function deviceFlagSpecs(kind: string): Record<string, FlagSpec> {
  const out: Record<string, FlagSpec> = {};
  for (const o of OPTIONS[kind] ?? []) out[o.flag] = { type: FLAG_TYPE[o.type], help: o.help };
  return out;
}

export function optionsFromFlags(kind: string, flags: Record<string, unknown>): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  const usage = (m: string) => new UsageError(m);
  for (const o of OPTIONS[kind] ?? []) {
    const v = flags[o.flag];
    if (v === undefined) continue;
    const name = `--${o.flag}`;
    switch (o.type) {
      case 'u32':
        if (typeof v !== 'number') throw new UsageError(`${name} must be a number`);
        options[o.option] = checkBounds(o, v, usage, name);
        break;
      case 'size':
        options[o.option] = checkBounds(o, parseSize(String(v), name), usage, name);
        break;
      case 'boolean':
        options[o.option] = v === true;
        break;
      case 'string':
        if (typeof v !== 'string' || v === '') throw new UsageError(`${name} must not be empty`);
        options[o.option] = v;
        break;
    }
  }
  return options;
}

/** Normalises a config file's device options (hex strings → numbers, "64M" → bytes), rejecting unknown ones. */
export function normaliseOptions(kind: string, options: Record<string, unknown>, what: string): Record<string, unknown> {
  const specs = OPTIONS[kind] ?? [];
  const out: Record<string, unknown> = {};
  const config = (m: string) => new ConfigError(m);
  for (const [k, v] of Object.entries(options)) {
    const spec = specs.find((s) => s.option === k);
    if (!spec) throw new ConfigError(`${what}: unknown option '${k}' for a ${kind} device`);
    const name = `${what}: '${k}'`;
    switch (spec.type) {
      case 'boolean':
        if (typeof v !== 'boolean') throw new ConfigError(`${name} must be true or false`);
        out[k] = v;
        break;
      case 'string':
        if (typeof v !== 'string' || v === '') throw new ConfigError(`${name} must be a non-empty string`);
        out[k] = v;
        break;
      case 'u32':
      case 'size': {
        let n: number;
        if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) n = v;
        else if (typeof v === 'string') {
          try {
            n = spec.type === 'size' ? parseSize(v, `${what}.${k}`) : Number(parseUnsigned(v, `${what}.${k}`));
          } catch (err) {
            throw new ConfigError((err as Error).message);
          }
        } else throw new ConfigError(`${name} must be an unsigned number${spec.type === 'size' ? ' or a size like "64M"' : ''}`);
        out[k] = checkBounds(spec, n, config, name);
        break;
      }
    }
  }
  return out;
}
