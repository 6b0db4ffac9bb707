// The recording format: a file of concatenated msgpack values, one record
// each (no framing of our own, so any msgpack reader can walk it; a record
// cut short by a crash is simply incomplete msgpack at the end). The first
// record is the file header; every later one carries `type` and `t`, the
// monotonic time in nanoseconds since recording started.
//
// 64-bit values (iova) are msgpack integers: numbers when they fit in 2^53,
// bigints above. Byte strings (message payloads, DMA data) are msgpack bin.

/** `format` of the header record: what identifies a recording. */
export const TRACE_FORMAT = 'vfio-user-ts trace';
/** The format version this code writes and reads. */
export const TRACE_VERSION = 1;

/** The first record of every recording. */
export interface HeaderRecord {
  type: 'trace';
  format: typeof TRACE_FORMAT;
  version: number;
  /** Wall-clock time the recording started (ISO 8601), for humans only. */
  started: string;
  /** Whether device accesses to guest memory are recorded (`--record-dma`). */
  dma: boolean;
}

/** What a recorded fd was, from fstat, /proc/self/fd and F_GET_SEALS. */
export interface FdMeta {
  /** memfd, file, eventfd, socket, pipe, anon (another anonymous inode) or other. */
  kind: string;
  /** st_size (bytes). */
  size: number;
  /** F_GET_SEALS bits (0 for files that cannot be sealed). */
  seals: number;
  /** "st_dev:st_ino": the same id in two messages is the same file. */
  id: string;
}

/** Fields every record after the header has. */
export interface Stamped {
  /** Nanoseconds since the recording started (monotonic clock). */
  t: number;
  /** The device's name (server config). */
  device?: string;
  /** 1 for the device's first client connection, 2 for the next, ... */
  session?: number;
}

/** Which side sent a message. */
export type Sender = 'client' | 'server';

/** The 16-byte vfio-user header, as fields. */
export interface HeaderFields {
  msgId: number;
  command: number;
  size: number;
  flags: number;
  error: number;
}

/** One vfio-user message, either direction. */
export interface MessageRecord extends Stamped {
  type: 'msg';
  device: string;
  session: number;
  from: Sender;
  header: HeaderFields;
  /** The bytes after the header. */
  payload: Uint8Array;
  /** The fds that came with the message, in order. */
  fds?: FdMeta[];
}

/** A client connection began or ended. */
export interface SessionRecord extends Stamped {
  type: 'open' | 'close';
  device: string;
  session: number;
  /** Why it ended (close only). */
  reason?: string;
}

/** A device access to guest memory reached without messages (`--record-dma`). */
export interface DmaRecord extends Stamped {
  type: 'dma';
  device: string;
  session: number;
  /** read: the device read `data` from guest memory; write: it wrote `data` there. */
  op: 'read' | 'write';
  iova: number | bigint;
  data: Uint8Array;
}

/** The recording stopped on purpose (`--record-max` reached); the server kept serving. */
export interface EndRecord extends Stamped {
  type: 'end';
  reason: string;
  /** Bytes in the file, this record included. */
  bytes: number;
}

/** An event of another part of the server (e.g. `{ type: 'fault', rule, action }`). */
export interface NoteRecord extends Stamped {
  type: string;
  [field: string]: unknown;
}

/** Any record after the header. */
export type TraceRecord = MessageRecord | SessionRecord | DmaRecord | EndRecord | NoteRecord;

/** Record types with a meaning of their own; a note may not use them. */
export const RESERVED_TYPES: ReadonlySet<string> = new Set(['trace', 'msg', 'open', 'close', 'dma', 'end']);

/** A record is a message record. */
export function isMessage(r: TraceRecord): r is MessageRecord {
  return r.type === 'msg';
}

/** A record is a guest-memory access record. */
export function isDma(r: TraceRecord): r is DmaRecord {
  return r.type === 'dma';
}
