// Writes a recording (format.ts) as the server runs. Each record goes to the
// file with one write(2) as it happens, so a crash loses at most the record
// being written and a reader sees a readable file up to there. With a size
// bound, the last record that fits is followed by an `end` record and
// recording stops; the server goes on serving.
import fs from 'node:fs';
import { Packr } from 'msgpackr';
import type { Logger } from '../devices/device.js';
import { HEADER_SIZE, readHeader } from '../protocol/header.js';
import { describeFd } from './fd-meta.js';
import {
  RESERVED_TYPES, TRACE_FORMAT, TRACE_VERSION,
  type HeaderFields, type HeaderRecord, type MessageRecord, type Sender,
} from './format.js';

/** How a recording is made. */
export interface RecorderOptions {
  /** Stop recording (with an `end` record) before the file would pass this many bytes. */
  maxBytes?: number;
  /** Also record device accesses to guest memory reached without messages (shared RAM). */
  dma?: boolean;
}

/** Room kept for the `end` record, so that the file never passes maxBytes. */
const END_RESERVE = 128;
/** The smallest bound that holds the header, one small record and the end. */
export const MIN_RECORD_MAX = 4096;

/** msgpack without msgpackr's record extension: plain maps any reader understands. */
const tracePackr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true });

/** A recording being written. */
export class Recorder {
  private fd: number;
  private bytes = 0;
  private stopped = false;
  private readonly start = process.hrtime.bigint();
  private readonly sessions = new Map<string, number>();

  private constructor(readonly file: string, private readonly opts: RecorderOptions, private readonly log?: Logger) {
    if (opts.maxBytes !== undefined && (!Number.isSafeInteger(opts.maxBytes) || opts.maxBytes < MIN_RECORD_MAX)) {
      throw new RangeError(`record max must be at least ${MIN_RECORD_MAX} bytes, got ${opts.maxBytes}`);
    }
    this.fd = fs.openSync(file, 'w', 0o600);
    const header: HeaderRecord = {
      type: 'trace', format: TRACE_FORMAT, version: TRACE_VERSION, started: new Date().toISOString(), dma: opts.dma === true,
    };
    this.write(header);
  }

  /** Creates (or truncates) `file` and writes the header record. Throws when it cannot. */
  static open(file: string, opts: RecorderOptions = {}, log?: Logger): Recorder {
    return new Recorder(file, opts, log);
  }

  /** Whether guest-memory accesses are recorded too. */
  get recordsDma(): boolean { return this.opts.dma === true; }

  /** Bytes written so far. */
  get size(): number { return this.bytes; }

  /** False once the size bound was reached, writing failed, or close() was called. */
  get active(): boolean { return !this.stopped; }

  /**
   * Writes an event that is not a message, e.g. an injected fault:
   * `{ type: 'fault', rule, action, device, session }`. `type` must not be
   * one of the record types of the format itself.
   */
  note(event: { type: string; device?: string; session?: number; [k: string]: unknown }): void {
    if (typeof event.type !== 'string' || event.type === '' || RESERVED_TYPES.has(event.type)) {
      throw new TypeError(`a note's type must be a string other than ${[...RESERVED_TYPES].join(', ')}`);
    }
    this.write({ ...event, t: this.now() });
  }

  /** A new client connection of `device`: its records carry the next session number. */
  session(device: string): SessionRecording {
    const n = (this.sessions.get(device) ?? 0) + 1;
    this.sessions.set(device, n);
    this.write({ type: 'open', t: this.now(), device, session: n });
    return new SessionRecording(this, device, n);
  }

  /** Stops recording; the file stays as written. */
  close(): void {
    if (this.fd < 0) return;
    this.stopped = true;
    fs.closeSync(this.fd);
    this.fd = -1;
  }

  /** Nanoseconds since the recording started. */
  now(): number {
    return Number(process.hrtime.bigint() - this.start);
  }

  /** Packs and writes one record (nothing once stopped). */
  write(record: object): void {
    if (this.stopped) return;
    const bytes = tracePackr.pack(record);
    const max = this.opts.maxBytes;
    if (max !== undefined && this.bytes + bytes.length + END_RESERVE > max) {
      this.finish('record-max');
      return;
    }
    this.append(bytes);
  }

  private finish(reason: string): void {
    // The end record counts itself: pack once to learn its size, then for real.
    const end = { type: 'end', t: this.now(), reason, bytes: 0 };
    end.bytes = this.bytes + tracePackr.pack(end).length;
    end.bytes = this.bytes + tracePackr.pack(end).length;
    this.append(tracePackr.pack(end));
    this.stopped = true;
    this.log?.warn(`recording ${this.file} stopped at ${end.bytes} bytes (${reason}); serving goes on`);
  }

  private append(bytes: Buffer): void {
    try {
      let done = 0;
      while (done < bytes.length) done += fs.writeSync(this.fd, bytes, done, bytes.length - done);
      this.bytes += bytes.length;
    } catch (err) {
      this.stopped = true;
      this.log?.error(`recording ${this.file} failed; serving goes on without it`, err);
    }
  }
}

/** One client connection's records: what the transport and the DMA tap call. */
export class SessionRecording {
  constructor(private readonly rec: Recorder, readonly device: string, readonly session: number) {}

  /** A message as received, `buf[at, at+size)` with its header, and the fds that came with it (still open). */
  received(buf: Buffer, at: number, size: number, fds: readonly number[]): void {
    if (!this.rec.active) return;
    this.message('client', readHeader(buf, at), buf.subarray(at + HEADER_SIZE, at + size), fds);
  }

  /** A message as queued for sending, its payload in parts. */
  sent(header: HeaderFields, parts: readonly Uint8Array[], fds?: readonly number[]): void {
    if (!this.rec.active) return;
    const payload = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    this.message('server', header, payload, fds ?? []);
  }

  /** The device read (`op` read) or wrote guest memory at `iova` without a message. */
  dma(op: 'read' | 'write', iova: number | bigint, data: Uint8Array): void {
    if (!this.rec.active) return;
    this.rec.write({ type: 'dma', t: this.rec.now(), device: this.device, session: this.session, op, iova, data });
  }

  /** The connection ended. */
  closed(reason: string): void {
    this.rec.write({ type: 'close', t: this.rec.now(), device: this.device, session: this.session, reason });
  }

  private message(from: Sender, header: HeaderFields, payload: Uint8Array, fds: readonly number[]): void {
    const r: MessageRecord = {
      type: 'msg', t: this.rec.now(), device: this.device, session: this.session, from,
      header: { msgId: header.msgId, command: header.command, size: header.size, flags: header.flags, error: header.error },
      payload,
    };
    if (fds.length > 0) r.fds = fds.map(describeFd);
    this.rec.write(r);
  }
}

