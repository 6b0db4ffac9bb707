// The control socket's wire format: each frame is a u32 little-endian length
// followed by that many bytes of msgpack.
//   request:  { id?: number, op: string, args?: object }
//   response: { id, result: object }  or  { id, errno: number, error: 'EBUSY', message: string }
// 64-bit values travel as msgpack integers (numbers when they fit in 2^53,
// bigints above), byte strings as msgpack bin.
import { Packr } from 'msgpackr';

export const MAX_FRAME = 80 * 1024 * 1024; // a 64 MiB dma.write plus headroom

export const packr = new Packr({ useRecords: false, int64AsType: 'auto' as 'bigint', mapsAsObjects: true });

export interface ControlRequest { id?: number; op: string; args?: Record<string, unknown> }
export type ControlResponse =
  | { id: number | null; result: Record<string, unknown> }
  | { id: number | null; errno: number; error: string; message: string };

export function encodeFrame(value: unknown): Buffer {
  const body = packr.pack(value);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32LE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/** Splits a byte stream into frames; throws on a frame above MAX_FRAME. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: Buffer[] = [];
    while (this.buf.length >= 4) {
      const n = this.buf.readUInt32LE(0);
      if (n > MAX_FRAME) throw new Error(`control frame of ${n} bytes is above the ${MAX_FRAME} limit`);
      if (this.buf.length < 4 + n) break;
      frames.push(this.buf.subarray(4, 4 + n));
      this.buf = this.buf.subarray(4 + n);
    }
    return frames;
  }
}
