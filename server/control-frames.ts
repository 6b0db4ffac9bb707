// The control socket's wire format: each frame is a u32 little-endian length
// followed by that many bytes of msgpack.
//   request:  { id?: number, op: string, args?: object }
//   response: { id, result: object }
//         or  { id, errno: number, error: 'EBUSY', message: string, data?: object }
// `data` carries what an error has beyond its errno (IommuError.data, e.g.
// numIovas for EMSGSIZE). `id` is null when the request had none (or could
// not be read). 64-bit values travel as msgpack integers (numbers when they
// fit in 2^53, bigints above), byte strings as msgpack bin.
import { Packr } from 'msgpackr';
import { DmaFault } from '../iommu/device-dma.js';
import { IommuError } from '../iommu/errors.js';
import { Errno, VfioUserError, errnoName, type ErrnoName } from '../protocol/errno.js';

export const MAX_FRAME = 80 * 1024 * 1024; // a 64 MiB dma.write plus headroom

export const packr = new Packr({ useRecords: false, int64AsType: 'auto' as 'bigint', mapsAsObjects: true });

export interface ControlRequest { id?: number; op: string; args?: Record<string, unknown> }
export interface ControlResult { id: number | null; result: Record<string, unknown> }
export interface ControlFailure {
  id: number | null;
  errno: number;
  /** The errno's name, e.g. 'EMSGSIZE'. */
  error: string;
  message: string;
  /** Structured details of the error, when it has any. */
  data?: Record<string, unknown>;
}
export type ControlResponse = ControlResult | ControlFailure;

/** An error frame for `err` (a VfioUserError keeps its errno and data; anything else is EIO). */
export function errorResponse(id: number | null, err: unknown): ControlFailure {
  if (!(err instanceof VfioUserError)) {
    return { id, errno: Errno.EIO, error: 'EIO', message: String((err as Error)?.message ?? err) };
  }
  const out: ControlFailure = { id, errno: err.errno, error: errnoName(err.errno), message: err.message };
  const data = errorData(err);
  if (data && Object.keys(data).length > 0) out.data = data;
  return out;
}

/** What an error carries beyond errno and message. */
function errorData(err: VfioUserError): Record<string, unknown> | undefined {
  if (err instanceof IommuError) return err.data;
  if (err instanceof DmaFault) {
    const where = { reason: err.reason, iova: err.iova, length: err.length };
    return err.pasid === undefined ? where : { ...where, pasid: err.pasid };
  }
  return undefined;
}

/** An error frame from an errno name (the message starts with the name, as a VfioUserError's does). */
export function failure(id: number | null, name: ErrnoName, message: string, data?: Record<string, unknown>): ControlFailure {
  const out: ControlFailure = { id, errno: Errno[name], error: name, message: `${name}: ${message}` };
  if (data) out.data = data;
  return out;
}

/** A frame for `value`: the 4-byte length, then the msgpack. */
export function encodeFrame(value: unknown): Buffer {
  const body = packr.pack(value);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32LE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/** One frame out of the stream: its body, or only the length of one above the limit. */
export type Frame = { body: Buffer } | { oversize: number };

/**
 * Splits a byte stream into frames. A frame above `max` is reported by its
 * length and its bytes are skipped as they arrive, so the stream stays in
 * step; nothing is allocated from a length prefix before its bytes are here.
 */
export class FrameReader {
  private readonly head = Buffer.alloc(4);
  private headLen = 0;
  /** Body bytes still expected for the frame in progress (-1: reading a head). */
  private need = -1;
  private parts: Buffer[] = [];
  private got = 0;
  /** Bytes of an oversized frame still to drop. */
  private skip = 0;

  constructor(readonly max = MAX_FRAME) {}

  /** Bytes held for a frame not yet complete. */
  get buffered(): number {
    return this.got + this.headLen;
  }

  push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - at);
        this.skip -= n;
        at += n;
      } else if (this.need < 0) {
        const n = Math.min(4 - this.headLen, chunk.length - at);
        chunk.copy(this.head, this.headLen, at, at + n);
        this.headLen += n;
        at += n;
        if (this.headLen < 4) break;
        this.headLen = 0;
        const len = this.head.readUInt32LE(0);
        if (len > this.max) {
          frames.push({ oversize: len });
          this.skip = len;
        } else if (len === 0) {
          frames.push({ body: Buffer.alloc(0) });
        } else {
          this.need = len;
        }
      } else {
        const n = Math.min(this.need - this.got, chunk.length - at);
        this.parts.push(chunk.subarray(at, at + n));
        this.got += n;
        at += n;
        if (this.got === this.need) {
          frames.push({ body: this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.got) });
          this.parts = [];
          this.got = 0;
          this.need = -1;
        }
      }
    }
    return frames;
  }
}
