// The recording options of `serve`: `--record FILE`, `--record-max SIZE`,
// `--record-dma`, or in a config file `"record": "FILE"` or
// `"record": { "file": FILE, "max": SIZE, "dma": true }`.
import fs from 'node:fs';
import path from 'node:path';
import { OptionError, parseSize } from '../devices/definition.js';
import { MIN_RECORD_MAX } from '../trace/recorder.js';
import type { FlagSpec, FlagValues } from './cli-args.js';

/** A checked recording request. */
export interface RecordConfig {
  /** Absolute path of the recording. */
  file: string;
  /** Size bound in bytes. */
  maxBytes?: number;
  /** Record guest-memory accesses too. */
  dma?: boolean;
}

/** The flags `serve` takes for recording. */
export const RECORD_FLAGS: Record<string, FlagSpec> = {
  record: { type: 'string', help: 'record every vfio-user message to FILE (msgpack; see `trace show`)', placeholder: 'file' },
  'record-max': { type: 'string', help: 'stop recording (end marker, serving goes on) before FILE passes SIZE', placeholder: 'size' },
  'record-dma': { type: 'boolean', help: 'also record what devices read from and wrote to shared guest RAM' },
};

/** A recording option that cannot be used; `where` names the source in the message. */
export class RecordOptionError extends Error {}

/** From a config file's `record` value. */
export function recordFromConfig(raw: unknown, where: string): RecordConfig {
  if (typeof raw === 'string') return check({ file: raw }, where);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new RecordOptionError(`${where}: 'record' must be a file path or { file, max?, dma? }`);
  }
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r)) if (!['file', 'max', 'dma'].includes(k)) throw new RecordOptionError(`${where}: record: unknown key '${k}'`);
  if (typeof r.file !== 'string') throw new RecordOptionError(`${where}: record.file must be a path`);
  if (r.dma !== undefined && typeof r.dma !== 'boolean') throw new RecordOptionError(`${where}: record.dma must be true or false`);
  let max: number | undefined;
  if (typeof r.max === 'number') max = r.max;
  else if (typeof r.max === 'string') max = size(r.max, `${where}: record.max`);
  else if (r.max !== undefined) throw new RecordOptionError(`${where}: record.max must be a size (bytes or "64M")`);
  return check({ file: r.file, maxBytes: max, dma: r.dma as boolean | undefined }, where);
}

/** From `--record`, `--record-max`, `--record-dma`; undefined when not recording. */
export function recordFromFlags(flags: FlagValues): RecordConfig | undefined {
  const file = flags.record as string | undefined;
  if (file === undefined) {
    if (flags['record-max'] !== undefined || flags['record-dma'] !== undefined) {
      throw new RecordOptionError('--record-max and --record-dma need --record FILE');
    }
    return undefined;
  }
  const max = flags['record-max'] === undefined ? undefined : size(flags['record-max'] as string, '--record-max');
  return check({ file, maxBytes: max, dma: flags['record-dma'] === true ? true : undefined }, 'command line');
}

function size(raw: string, what: string): number {
  try {
    return parseSize(raw, what);
  } catch (err) {
    if (err instanceof OptionError) throw new RecordOptionError(err.message);
    throw err;
  }
}

function check(r: RecordConfig, where: string): RecordConfig {
  if (r.file === '') throw new RecordOptionError(`${where}: the recording needs a file path`);
  const file = path.resolve(r.file);
  if (!fs.existsSync(path.dirname(file))) throw new RecordOptionError(`${where}: directory ${path.dirname(file)} does not exist (recording ${r.file})`);
  if (r.maxBytes !== undefined && (!Number.isSafeInteger(r.maxBytes) || r.maxBytes < MIN_RECORD_MAX)) {
    throw new RecordOptionError(`${where}: the record size bound must be at least ${MIN_RECORD_MAX} bytes, got ${r.maxBytes}`);
  }
  const out: RecordConfig = { file };
  if (r.maxBytes !== undefined) out.maxBytes = r.maxBytes;
  if (r.dma) out.dma = true;
  return out;
}
