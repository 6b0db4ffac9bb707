// Reads a recording back, checking every record's shape, so that tools
// (show, stats, replay) work on typed records or stop with a clear message.
// A file that ends inside a record (a crash while writing, a copy cut short)
// is read up to the last whole record and marked `truncated`.
import fs from 'node:fs';
import { Unpackr } from 'msgpackr';
import { HEADER_SIZE } from '../protocol/header.js';
import { TRACE_FORMAT, TRACE_VERSION, type HeaderRecord, type TraceRecord } from './format.js';

/** A file that is not a readable recording; the message says where and why. */
export class TraceError extends Error {}

/** A recording as read. */
export interface Trace {
  header: HeaderRecord;
  /** Every whole record after the header, in file order. */
  records: TraceRecord[];
  /** The file ended inside a record; `records` holds those before it. */
  truncated: boolean;
  /** Byte offset where the unreadable tail begins (the file size when not truncated). */
  readableBytes: number;
}

const unpackr = new Unpackr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true });

/** Reads and checks `file`. Throws TraceError for anything but a (possibly truncated) recording. */
export function readTrace(file: string): Trace {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    throw new TraceError(`cannot read ${file}: ${(err as Error).message}`);
  }
  return parseTrace(buf, file);
}

/** Checks a recording held in memory; `name` is used in messages. */
export function parseTrace(buf: Buffer, name = 'recording'): Trace {
  if (buf.length === 0) throw new TraceError(`${name}: empty file, not a recording`);
  const values: Array<{ value: unknown; start: number }> = [];
  let truncated = false;
  let readable = buf.length;
  try {
    unpackr.unpackMultiple(buf, (value: unknown, start?: number) => {
      values.push({ value, start: start ?? 0 });
    });
  } catch (err) {
    const e = err as Error & { incomplete?: boolean; lastPosition?: number };
    if (!e.incomplete) throw new TraceError(`${name}: after record ${values.length}: not msgpack (${e.message})`);
    truncated = true;
    readable = typeof e.lastPosition === 'number' ? e.lastPosition : values.length ? buf.length : 0;
  }
  if (values.length === 0) throw new TraceError(`${name}: no whole record: not a recording${truncated ? ' (or cut short in its first record)' : ''}`);
  const header = checkHeader(values[0]!.value, name);
  const records: TraceRecord[] = [];
  for (let i = 1; i < values.length; i++) {
    const { value, start } = values[i]!;
    const problem = recordProblem(value);
    if (problem) throw new TraceError(`${name}: record ${i} at byte ${start}: ${problem}`);
    records.push(value as TraceRecord);
  }
  return { header, records, truncated, readableBytes: readable };
}

function checkHeader(v: unknown, name: string): HeaderRecord {
  const h = v as Partial<HeaderRecord> | null;
  if (!isObject(h) || h.type !== 'trace' || h.format !== TRACE_FORMAT) {
    throw new TraceError(`${name}: not a vfio-user-ts recording (its first record is not a '${TRACE_FORMAT}' header)`);
  }
  if (typeof h.version !== 'number' || h.version > TRACE_VERSION || h.version < 1) {
    throw new TraceError(`${name}: recording format version ${String(h.version)}; this program reads version ${TRACE_VERSION}`);
  }
  return h as HeaderRecord;
}

/** What is wrong with a record, or null when it has the shape its type promises. */
function recordProblem(v: unknown): string | null {
  if (!isObject(v)) return 'not a record (expected a map)';
  const r = v as Record<string, unknown>;
  if (typeof r.type !== 'string' || r.type === '') return 'record without a type';
  if (!isCount(r.t)) return `${r.type} record without a valid time t`;
  switch (r.type) {
    case 'trace':
      return 'a second header';
    case 'msg':
      return sessionProblem(r) ?? messageProblem(r);
    case 'open':
    case 'close':
      return sessionProblem(r);
    case 'dma':
      if (r.op !== 'read' && r.op !== 'write') return `dma record with op ${String(r.op)}`;
      if (!isCount(r.iova) && !(typeof r.iova === 'bigint' && r.iova >= 0n)) return 'dma record without an iova';
      if (!(r.data instanceof Uint8Array)) return 'dma record without data bytes';
      return sessionProblem(r);
    case 'end':
      return typeof r.reason === 'string' && isCount(r.bytes) ? null : 'end record without reason and bytes';
    default:
      return null; // a note of another part of the server: free-form
  }
}

function sessionProblem(r: Record<string, unknown>): string | null {
  if (typeof r.device !== 'string') return `${String(r.type)} record without a device`;
  if (!isCount(r.session) || r.session === 0) return `${String(r.type)} record without a session number`;
  return null;
}

function messageProblem(r: Record<string, unknown>): string | null {
  if (r.from !== 'client' && r.from !== 'server') return `message from '${String(r.from)}' (client or server expected)`;
  const h = r.header as Record<string, unknown> | undefined;
  if (!isObject(h)) return 'message without a header';
  for (const [k, max] of [['msgId', 0xffff], ['command', 0xffff], ['size', 0xffffffff], ['flags', 0xffffffff], ['error', 0xffffffff]] as const) {
    if (!isCount(h[k]) || (h[k] as number) > max) return `message header field ${k} is ${String(h[k])}`;
  }
  if (!(r.payload instanceof Uint8Array)) return 'message without payload bytes';
  if (h.size !== HEADER_SIZE + r.payload.length) return `message header size ${String(h.size)} does not match its ${r.payload.length}-byte payload`;
  if (r.fds !== undefined) {
    if (!Array.isArray(r.fds)) return 'message fds is not a list';
    for (const f of r.fds as unknown[]) {
      const m = f as Record<string, unknown>;
      if (!isObject(m) || typeof m.kind !== 'string' || !isCount(m.size) || !isCount(m.seals) || typeof m.id !== 'string') {
        return 'message fd without kind, size, seals and id';
      }
    }
  }
  return null;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}
