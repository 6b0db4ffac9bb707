// The server's configuration: from `serve --config devices.json` or from the
// flags of `serve <kind> --socket PATH ...`. Every field is checked here, so
// a typo is a clear message at start-up, not a surprise later. A device's
// options are checked against its definition's schema (devices/definition.ts);
// a kind that is a path loads the user's device module, relative to the
// config file's folder.
import fs from 'node:fs';
import path from 'node:path';
import { LEVELS } from '../server/log.js';
import { MAX_POLL_US } from '../server/adaptive-poll.js';
import { DefinitionError, validateOptions, type DeviceDefinition } from '../devices/definition.js';
import { kindLabel, resolveDeviceKind } from '../devices/load.js';
import { checkFaultRules, FaultsFileError, loadFaultsFile } from '../faults/file.js';
import { checkSeed } from '../faults/prng.js';
import { recordFromConfig, RecordOptionError, type RecordConfig } from './record-options.js';

/** One checked device of a config. */
export interface DeviceConfig {
  /** Unique; names the device in logs and on the control socket. */
  name: string;
  /** The device kind: a built-in definition or one loaded from a module. */
  kind: DeviceDefinition;
  /** UNIX socket path QEMU connects to. */
  socket: string;
  /** Options checked against the kind's schema, defaults applied. */
  options: Record<string, unknown>;
}

/** A checked configuration, ready for startServer. */
export interface ServerConfig {
  devices: DeviceConfig[];
  /** Control socket for the IOMMU API (msgpack frames). */
  control?: string;
  logLevel?: string;
  /** Fault rules in force from the start (checked). */
  faults?: unknown[];
  /** Deterministic mode's seed. */
  deterministic?: number;
  /** Record every message to a file. */
  record?: RecordConfig;
  /** Cap of the adaptive socket poll window in µs (0: off). */
  pollUs?: number;
  /** false: every message through TypeScript (no native answers to plain reads). */
  nativeReads?: boolean;
}

/** A configuration (file or command line) that cannot be served; the message says where and why. */
export class ConfigError extends Error {}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** sun_path is 108 bytes including the NUL. */
const MAX_SOCKET_PATH = 107;

/** A socket path that fits in sun_path and whose folder exists; returns it unchanged. */
export function checkSocketPath(p: unknown, what: string): string {
  if (typeof p !== 'string' || p === '') throw new ConfigError(`${what}: a socket path is required`);
  if (Buffer.byteLength(p) > MAX_SOCKET_PATH) throw new ConfigError(`${what}: socket path longer than ${MAX_SOCKET_PATH} bytes: ${p}`);
  const dir = path.dirname(path.resolve(p));
  if (!fs.existsSync(dir)) throw new ConfigError(`${what}: directory ${dir} does not exist`);
  return p;
}

/**
 * Checks a parsed config (`source` names it in errors) and loads the device
 * modules it names; module paths are resolved against `baseDir`.
 */
export async function validateConfig(raw: unknown, source: string, baseDir: string = process.cwd()): Promise<ServerConfig> {
  if (!isObject(raw)) throw new ConfigError(`${source}: expected a JSON object`);
  const known = new Set(['devices', 'control', 'logLevel', 'faults', 'deterministic', 'record', 'pollUs', 'nativeReads']);
  for (const k of Object.keys(raw)) if (!known.has(k)) throw new ConfigError(`${source}: unknown key '${k}'`);
  if (!Array.isArray(raw.devices) || raw.devices.length === 0) throw new ConfigError(`${source}: 'devices' must be a non-empty array`);
  const names = new Set<string>();
  const sockets = new Set<string>();
  const devices: DeviceConfig[] = [];
  for (const [i, d] of (raw.devices as unknown[]).entries()) {
    const what = `${source}: devices[${i}]`;
    if (!isObject(d)) throw new ConfigError(`${what}: expected an object`);
    const { name, kind, socket, ...options } = d;
    if (typeof kind !== 'string' || kind === '') throw new ConfigError(`${what}: 'kind' is required`);
    let definition: DeviceDefinition;
    try {
      definition = await resolveDeviceKind(kind, baseDir);
    } catch (err) {
      if (err instanceof DefinitionError) throw new ConfigError(`${what}: ${err.message}`);
      throw err;
    }
    const n = name === undefined ? `${definition.kind}${i}` : name;
    if (typeof n !== 'string' || !NAME_RE.test(n)) throw new ConfigError(`${what}: bad name ${JSON.stringify(n)}`);
    if (names.has(n)) throw new ConfigError(`${what}: name '${n}' is used twice`);
    names.add(n);
    const sock = path.resolve(checkSocketPath(socket, what));
    if (sockets.has(sock)) throw new ConfigError(`${what}: socket ${sock} is used twice`);
    sockets.add(sock);
    const checked = validateOptions(definition, options, (k) => `${what}: '${k}'`, kindLabel(kind, definition));
    devices.push({ name: n, kind: definition, socket: sock, options: checked });
  }
  const cfg: ServerConfig = { devices };
  if (raw.control !== undefined) cfg.control = path.resolve(checkSocketPath(raw.control, `${source}: control`));
  if (raw.record !== undefined) {
    try {
      cfg.record = recordFromConfig(raw.record, source);
    } catch (err) {
      if (err instanceof RecordOptionError) throw new ConfigError(err.message);
      throw err;
    }
  }
  if (raw.logLevel !== undefined) {
    if (typeof raw.logLevel !== 'string' || !LEVELS.includes(raw.logLevel as never)) {
      throw new ConfigError(`${source}: logLevel must be one of ${LEVELS.join(', ')}`);
    }
    cfg.logLevel = raw.logLevel;
  }
  if (raw.faults !== undefined) cfg.faults = faultRules(raw.faults, `${source}: faults`, baseDir, devices.map((d) => d.name));
  if (raw.deterministic !== undefined) {
    try {
      cfg.deterministic = checkSeed(raw.deterministic, `${source}: deterministic`);
    } catch (e) {
      throw new ConfigError((e as Error).message);
    }
  }
  if (raw.pollUs !== undefined) cfg.pollUs = checkPollUs(raw.pollUs, `${source}: pollUs`);
  if (raw.nativeReads !== undefined) {
    if (typeof raw.nativeReads !== 'boolean') throw new ConfigError(`${source}: nativeReads must be true or false`);
    cfg.nativeReads = raw.nativeReads;
  }
  return cfg;
}

/** `faults`: a list of rules, or the path of a faults file (relative to `baseDir`); ConfigError when bad. */
export function faultRules(v: unknown, what: string, baseDir: string, devices: string[]): unknown[] {
  try {
    return typeof v === 'string' ? loadFaultsFile(path.resolve(baseDir, v), devices) : checkFaultRules(v, what, devices);
  } catch (e) {
    if (e instanceof FaultsFileError) throw new ConfigError(e.message);
    throw e;
  }
}

/** A poll window cap in µs: an integer in [0, MAX_POLL_US]; returns it. */
export function checkPollUs(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_POLL_US) {
    throw new ConfigError(`${what} must be an integer in [0, ${MAX_POLL_US}] (µs; 0 turns polling off)`);
  }
  return v;
}

/** Reads and checks a JSON config file; module paths in it are relative to its folder. */
export async function loadConfigFile(file: string): Promise<ServerConfig> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file}: not valid JSON: ${(err as Error).message}`);
  }
  return validateConfig(raw, file, path.dirname(path.resolve(file)));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
