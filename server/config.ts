// The server's configuration: from `serve --config devices.json` or from the
// flags of `serve <kind> --socket PATH ...`. Every field is checked here, so
// a typo is a clear message at start-up, not a surprise later.
import fs from 'node:fs';
import path from 'node:path';
import { LEVELS } from './log.js';
import { normaliseOptions } from './device-flags.js';
import { isDeviceKind, deviceKinds } from '../devices/index.js';

export interface DeviceConfig {
  /** Unique; names the device in logs and on the control socket. */
  name: string;
  /** Device model, e.g. "gpio". */
  kind: string;
  /** UNIX socket path QEMU connects to. */
  socket: string;
  /** Model-specific options (checked by the model's factory). */
  options: Record<string, unknown>;
}

export interface ServerConfig {
  devices: DeviceConfig[];
  /** Control socket for the IOMMU API (msgpack frames). */
  control?: string;
  logLevel?: string;
}

export class ConfigError extends Error {}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** sun_path is 108 bytes including the NUL. */
const MAX_SOCKET_PATH = 107;

export function checkSocketPath(p: unknown, what: string): string {
  if (typeof p !== 'string' || p === '') throw new ConfigError(`${what}: a socket path is required`);
  if (Buffer.byteLength(p) > MAX_SOCKET_PATH) throw new ConfigError(`${what}: socket path longer than ${MAX_SOCKET_PATH} bytes: ${p}`);
  const dir = path.dirname(path.resolve(p));
  if (!fs.existsSync(dir)) throw new ConfigError(`${what}: directory ${dir} does not exist`);
  return p;
}

export function validateConfig(raw: unknown, source: string): ServerConfig {
  if (!isObject(raw)) throw new ConfigError(`${source}: expected a JSON object`);
  const known = new Set(['devices', 'control', 'logLevel']);
  for (const k of Object.keys(raw)) if (!known.has(k)) throw new ConfigError(`${source}: unknown key '${k}'`);
  if (!Array.isArray(raw.devices) || raw.devices.length === 0) throw new ConfigError(`${source}: 'devices' must be a non-empty array`);
  const names = new Set<string>();
  const sockets = new Set<string>();
  const devices = raw.devices.map((d: unknown, i: number): DeviceConfig => {
    const what = `${source}: devices[${i}]`;
    if (!isObject(d)) throw new ConfigError(`${what}: expected an object`);
    const { name, kind, socket, ...options } = d;
    if (typeof kind !== 'string' || kind === '') throw new ConfigError(`${what}: 'kind' is required`);
    if (!isDeviceKind(kind)) {
      throw new ConfigError(`${what}: unknown kind '${kind}' (known: ${deviceKinds().map((k) => k.kind).join(', ')})`);
    }
    const n = name === undefined ? `${kind}${i}` : name;
    if (typeof n !== 'string' || !NAME_RE.test(n)) throw new ConfigError(`${what}: bad name ${JSON.stringify(n)}`);
    if (names.has(n)) throw new ConfigError(`${what}: name '${n}' is used twice`);
    names.add(n);
    const sock = path.resolve(checkSocketPath(socket, what));
    if (sockets.has(sock)) throw new ConfigError(`${what}: socket ${sock} is used twice`);
    sockets.add(sock);
    return { name: n, kind, socket: sock, options: normaliseOptions(kind, options, what) };
  });
  const cfg: ServerConfig = { devices };
  if (raw.control !== undefined) cfg.control = path.resolve(checkSocketPath(raw.control, `${source}: control`));
  if (raw.logLevel !== undefined) {
    if (typeof raw.logLevel !== 'string' || !LEVELS.includes(raw.logLevel as never)) {
      throw new ConfigError(`${source}: logLevel must be one of ${LEVELS.join(', ')}`);
    }
    cfg.logLevel = raw.logLevel;
  }
  return cfg;
}

export function loadConfigFile(file: string): ServerConfig {
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
  return validateConfig(raw, file);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
