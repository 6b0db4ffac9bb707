// A fault rule: what it matches and what it injects, checked field by field.
// Rules come from a --faults file, a config file or the control socket's
// fault.add; each is checked here before anything uses it, and a bad field is
// an EINVAL naming the rule and the field.
import { Errno, VfioUserError, type ErrnoName } from '../protocol/errno.js';
import { Command, commandName } from '../protocol/constants.js';
import type { BlockOp } from '../devices/fault-hooks.js';
import { checkSeed } from './prng.js';

/** [start, end) over u64 values (IOVAs, offsets, LBAs). */
export interface Range { start: bigint; end: bigint }

/** Where in the server a rule is asked. */
export type FaultPoint = 'message' | 'dma' | 'block' | 'irq';

/** What a rule injects. */
export type FaultAction =
  /** message: an error reply with this errno instead of the handler's reply. */
  | { type: 'error'; errno: number }
  /** message: the reply goes out `ms` later (later requests wait behind it). */
  | { type: 'delay'; ms: number }
  /** message: the connection is closed instead of answering. */
  | { type: 'drop' }
  /** message: the reply is held until fault.release or fault.clear (or `ms`, when given). */
  | { type: 'hold'; ms?: number }
  /** message: one field of the reply is XORed with `xor` (payload: the byte at `offset`). */
  | { type: 'corrupt'; field: CorruptField; xor: number; offset?: number }
  /** message: the device enters its error state, then the message is handled as usual. */
  | { type: 'needs-reset' }
  /** dma: the device's DMA fails as if the IOMMU refused it. */
  | { type: 'dma-fault' }
  /** block: virtio-blk completes the request with IOERR or UNSUPP. */
  | { type: 'blk-status'; status: 'ioerr' | 'unsupp' }
  /** block: an NVMe device completes the command with this status code type and code. */
  | { type: 'nvme-status'; sct: number; sc: number }
  /** irq: the interrupt is not signalled. */
  | { type: 'irq-lose' }
  /** irq: the interrupt is signalled `ms` later. */
  | { type: 'irq-delay'; ms: number };

export type ActionType = FaultAction['type'];

/** Reply fields a corrupt action can flip (the header's, or one payload byte). */
export const CORRUPT_FIELDS = ['msgId', 'command', 'size', 'flags', 'error', 'payload'] as const;
export type CorruptField = (typeof CORRUPT_FIELDS)[number];

/** What a rule looks at, by point; absent fields match anything. */
export interface FaultMatch {
  /** message: command numbers. */
  commands?: number[];
  /** message: REGION_READ/WRITE region index. */
  region?: number;
  /** message: bytes of the region access overlapping [start, end). */
  offset?: Range;
  /** dma: bytes of the DMA overlapping [start, end). */
  iova?: Range;
  /** dma: only reads (device reads guest memory) or writes. */
  access?: 'read' | 'write';
  /** block: blocks of the I/O overlapping [start, end). */
  lba?: Range;
  /** block: these operations only. */
  ops?: BlockOp[];
  /** irq: VFIO IRQ index (0 INTx, 1 MSI, 2 MSI-X, 3 ERR, 4 REQ). */
  irq?: number;
  /** irq: this vector only. */
  vector?: number;
}

/** A checked rule. */
export interface FaultRule {
  id: string;
  /** The device it applies to; absent: every device. */
  device?: string;
  point: FaultPoint;
  match: FaultMatch;
  /** Fire from the nth matching occurrence on (1-based). */
  nth?: number;
  /** Fire at most this many times (default 1 with nth, else unlimited). */
  times?: number;
  /** Fire with this probability, drawn from a generator seeded with `seed`. */
  probability?: number;
  seed: number;
  /** Only from `fromMs` until `untilMs` after the rule was added. */
  window?: { fromMs: number; untilMs?: number };
  action: FaultAction;
}

/** Longest delay or hold a rule may ask for (QEMU gives up on a reply after 5 s by default). */
export const MAX_FAULT_MS = 600_000;
/** Rules a server holds at once. */
export const MAX_RULES = 1024;

const POINT_OF: Record<ActionType, FaultPoint> = {
  error: 'message', delay: 'message', drop: 'message', hold: 'message', corrupt: 'message', 'needs-reset': 'message',
  'dma-fault': 'dma',
  'blk-status': 'block', 'nvme-status': 'block',
  'irq-lose': 'irq', 'irq-delay': 'irq',
};
const MATCH_KEYS: Record<FaultPoint, string[]> = {
  message: ['command', 'region', 'offset'],
  dma: ['iova', 'access'],
  block: ['lba', 'op'],
  irq: ['irq', 'vector'],
};
const BLOCK_OPS: BlockOp[] = ['read', 'write', 'flush', 'discard', 'write-zeroes', 'get-id', 'other'];
const IRQ_NAMES: Record<string, number> = { intx: 0, msi: 1, msix: 2, err: 3, req: 4 };
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const U64_MAX = (1n << 64n) - 1n;
const CORRUPT_WIDTH: Record<CorruptField, number> = { msgId: 0xffff, command: 0xffff, size: 0xffffffff, flags: 0xffffffff, error: 0xffffffff, payload: 0xff };

/** A rule that cannot be used: EINVAL with the rule and field in the message. */
function bad(where: string, message: string): VfioUserError {
  return new VfioUserError(Errno.EINVAL, `${where}: ${message}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function onlyKeys(o: Record<string, unknown>, keys: readonly string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) throw bad(where, `unknown field '${k}' (known: ${keys.join(', ')})`);
  }
}

function int(v: unknown, min: number, max: number, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw bad(where, `must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}

/** A u64 from a number or a "0x..."/decimal string (IOVAs above 2^53 need the string). */
function u64(v: unknown, where: string): bigint {
  let n: bigint;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) n = BigInt(v);
  else if (typeof v === 'bigint') n = v;
  else if (typeof v === 'string' && /^(0x[0-9a-f]{1,16}|[0-9]{1,20})$/i.test(v)) n = BigInt(v);
  else throw bad(where, `must be a u64 (a number, or a decimal or 0x string), got ${JSON.stringify(v)}`);
  if (n < 0n || n > U64_MAX) throw bad(where, 'is above 2^64-1');
  return n;
}

/** [start, end) as a two-element array, start < end. */
function range(v: unknown, where: string): Range {
  if (!Array.isArray(v) || v.length !== 2) throw bad(where, 'must be [start, end) as a two-element array');
  const start = u64(v[0], `${where}[0]`);
  const end = u64(v[1], `${where}[1]`);
  if (end <= start) throw bad(where, `is empty: end ${end} is not above start ${start}`);
  return { start, end };
}

function commandOf(v: unknown, where: string): number {
  if (typeof v === 'number') {
    if (Object.values(Command).includes(v as never)) return v;
    throw bad(where, `no command ${v}`);
  }
  if (typeof v === 'string') {
    const n = (Command as Record<string, number>)[v.toUpperCase()];
    if (n !== undefined) return n;
  }
  throw bad(where, `must be a command name (${Object.keys(Command).join(', ')}) or number, got ${JSON.stringify(v)}`);
}

function errnoOf(v: unknown, where: string): number {
  if (typeof v === 'string' && v in Errno) return Errno[v as ErrnoName];
  if (typeof v === 'number') return int(v, 1, 4095, where);
  throw bad(where, `must be an errno name (${Object.keys(Errno).join(', ')}) or a number in [1, 4095], got ${JSON.stringify(v)}`);
}

function oneOrMany<T>(v: unknown, each: (x: unknown, w: string) => T, where: string): T[] {
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0 || list.length > 64) throw bad(where, 'must name 1 to 64 values');
  return list.map((x, i) => each(x, Array.isArray(v) ? `${where}[${i}]` : where));
}

function parseAction(v: unknown, where: string): FaultAction {
  if (!isObject(v)) throw bad(where, "must be an object with a 'type'");
  const type = v.type;
  if (typeof type !== 'string' || !(type in POINT_OF)) throw bad(`${where}.type`, `must be one of ${Object.keys(POINT_OF).join(', ')}, got ${JSON.stringify(type)}`);
  const w = (k: string) => `${where}.${k}`;
  switch (type as ActionType) {
    case 'error':
      onlyKeys(v, ['type', 'errno'], where);
      return { type: 'error', errno: errnoOf(v.errno, w('errno')) };
    case 'delay':
    case 'irq-delay':
      onlyKeys(v, ['type', 'ms'], where);
      return { type: type as 'delay', ms: int(v.ms, 0, MAX_FAULT_MS, w('ms')) };
    case 'hold': {
      onlyKeys(v, ['type', 'ms'], where);
      return v.ms === undefined ? { type: 'hold' } : { type: 'hold', ms: int(v.ms, 0, MAX_FAULT_MS, w('ms')) };
    }
    case 'corrupt': {
      onlyKeys(v, ['type', 'field', 'xor', 'offset'], where);
      if (!CORRUPT_FIELDS.includes(v.field as never)) throw bad(w('field'), `must be one of ${CORRUPT_FIELDS.join(', ')}, got ${JSON.stringify(v.field)}`);
      const field = v.field as CorruptField;
      const xor = int(v.xor, 1, CORRUPT_WIDTH[field], w('xor'));
      if (field !== 'payload') {
        if (v.offset !== undefined) throw bad(w('offset'), 'only a payload corruption has an offset');
        return { type: 'corrupt', field, xor };
      }
      return { type: 'corrupt', field, xor, offset: int(v.offset, 0, 0xffffffff, w('offset')) };
    }
    case 'blk-status':
      onlyKeys(v, ['type', 'status'], where);
      if (v.status !== 'ioerr' && v.status !== 'unsupp') throw bad(w('status'), `must be 'ioerr' or 'unsupp', got ${JSON.stringify(v.status)}`);
      return { type: 'blk-status', status: v.status };
    case 'nvme-status':
      onlyKeys(v, ['type', 'sct', 'sc'], where);
      return { type: 'nvme-status', sct: int(v.sct, 0, 7, w('sct')), sc: int(v.sc, 1, 0xff, w('sc')) };
    default:
      onlyKeys(v, ['type'], where);
      return { type } as FaultAction;
  }
}

function parseMatch(v: unknown, point: FaultPoint, where: string): FaultMatch {
  if (v === undefined) return {};
  if (!isObject(v)) throw bad(where, 'must be an object');
  const allowed = MATCH_KEYS[point];
  for (const k of Object.keys(v)) {
    if (!allowed.includes(k)) throw bad(where, `'${k}' does not apply to a ${point} rule (it matches on: ${allowed.join(', ')})`);
  }
  const w = (k: string) => `${where}.${k}`;
  const m: FaultMatch = {};
  if (v.command !== undefined) m.commands = oneOrMany(v.command, commandOf, w('command'));
  if (v.region !== undefined) m.region = int(v.region, 0, 0xffffffff, w('region'));
  if (v.offset !== undefined) m.offset = range(v.offset, w('offset'));
  if (v.iova !== undefined) m.iova = range(v.iova, w('iova'));
  if (v.access !== undefined) {
    if (v.access !== 'read' && v.access !== 'write') throw bad(w('access'), `must be 'read' or 'write', got ${JSON.stringify(v.access)}`);
    m.access = v.access;
  }
  if (v.lba !== undefined) m.lba = range(v.lba, w('lba'));
  if (v.op !== undefined) {
    m.ops = oneOrMany(v.op, (x, ww) => {
      if (!BLOCK_OPS.includes(x as BlockOp)) throw bad(ww, `must be one of ${BLOCK_OPS.join(', ')}, got ${JSON.stringify(x)}`);
      return x as BlockOp;
    }, w('op'));
  }
  if (v.irq !== undefined) {
    m.irq = typeof v.irq === 'string' && v.irq in IRQ_NAMES ? IRQ_NAMES[v.irq]! : int(v.irq, 0, 4, `${w('irq')} (or intx, msi, msix, err, req)`);
  }
  if (v.vector !== undefined) m.vector = int(v.vector, 0, 2047, w('vector'));
  return m;
}

const RULE_KEYS = ['id', 'device', 'match', 'nth', 'times', 'probability', 'seed', 'window', 'action'];

/**
 * Checks one rule as given (JSON or msgpack); `where` names it in errors.
 * `defaultId` is used when the rule has no id.
 */
export function parseRule(raw: unknown, where: string, defaultId: string): FaultRule {
  if (!isObject(raw)) throw bad(where, 'a rule must be an object');
  onlyKeys(raw, RULE_KEYS, where);
  const id = raw.id === undefined ? defaultId : raw.id;
  if (typeof id !== 'string' || !ID_RE.test(id)) throw bad(`${where}.id`, `must match ${ID_RE}, got ${JSON.stringify(id)}`);
  const at = `${where} '${id}'`;
  const action = parseAction(raw.action, `${at}: action`);
  const point = POINT_OF[action.type];
  const rule: FaultRule = { id, point, match: parseMatch(raw.match, point, `${at}: match`), seed: 0, action };
  if (raw.device !== undefined) {
    if (typeof raw.device !== 'string' || raw.device === '') throw bad(`${at}: device`, 'must be a device name');
    rule.device = raw.device;
  }
  if (raw.nth !== undefined) rule.nth = int(raw.nth, 1, 2 ** 32, `${at}: nth`);
  if (raw.times !== undefined) rule.times = int(raw.times, 1, 2 ** 32, `${at}: times`);
  if (raw.probability !== undefined) {
    const p = raw.probability;
    if (typeof p !== 'number' || !(p > 0 && p <= 1)) throw bad(`${at}: probability`, `must be a number in (0, 1], got ${JSON.stringify(p)}`);
    rule.probability = p;
  }
  if (raw.seed !== undefined) {
    try {
      rule.seed = checkSeed(raw.seed, 'seed');
    } catch (e) {
      throw bad(`${at}: seed`, (e as Error).message);
    }
  }
  if (raw.window !== undefined) {
    const win = raw.window;
    if (!isObject(win)) throw bad(`${at}: window`, 'must be {fromMs?, untilMs?}');
    onlyKeys(win, ['fromMs', 'untilMs'], `${at}: window`);
    const fromMs = win.fromMs === undefined ? 0 : int(win.fromMs, 0, 2 ** 40, `${at}: window.fromMs`);
    rule.window = { fromMs };
    if (win.untilMs !== undefined) {
      rule.window.untilMs = int(win.untilMs, 1, 2 ** 40, `${at}: window.untilMs`);
      if (rule.window.untilMs <= fromMs) throw bad(`${at}: window`, `untilMs ${rule.window.untilMs} is not after fromMs ${fromMs}`);
    }
  }
  return rule;
}

/** The JSON form of a rule (fault.list, logs): what parseRule would accept again. */
export function ruleToJson(r: FaultRule): Record<string, unknown> {
  const m: Record<string, unknown> = {};
  const rng = (x: Range) => [jsonU64(x.start), jsonU64(x.end)];
  const { match } = r;
  if (match.commands) m.command = match.commands.map(commandName);
  if (match.region !== undefined) m.region = match.region;
  if (match.offset) m.offset = rng(match.offset);
  if (match.iova) m.iova = rng(match.iova);
  if (match.access) m.access = match.access;
  if (match.lba) m.lba = rng(match.lba);
  if (match.ops) m.op = match.ops;
  if (match.irq !== undefined) m.irq = match.irq;
  if (match.vector !== undefined) m.vector = match.vector;
  const out: Record<string, unknown> = { id: r.id };
  if (r.device !== undefined) out.device = r.device;
  out.match = m;
  for (const k of ['nth', 'times', 'probability', 'window'] as const) if (r[k] !== undefined) out[k] = r[k];
  out.seed = r.seed;
  out.action = r.action;
  return out;
}

function jsonU64(n: bigint): number | string {
  return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : `0x${n.toString(16)}`;
}
