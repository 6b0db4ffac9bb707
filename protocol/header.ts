// The 16-byte header in front of every vfio-user message.
//
//   off size field
//    0   2   msg_id    echoed in the reply; owned by the sender
//    2   2   command   Command.*; also set in the reply
//    4   4   msg_size  whole message, header included
//    8   4   flags     bits 0-3 type (0 command, 1 reply), bit 4 no_reply,
//                      bit 5 error
//   12   4   error     errno of an error reply (reserved in commands)
import { Command, COMMAND_MAX, COMMAND_MIN, VFIO_USER_F_ERROR, VFIO_USER_F_NO_REPLY,
  VFIO_USER_F_TYPE_COMMAND, VFIO_USER_F_TYPE_MASK, VFIO_USER_F_TYPE_REPLY } from './constants.js';
import { Errno } from './errno.js';
import type { NegotiatedLimits } from './limits.js';

export const HEADER_SIZE = 16;

export interface Header {
  msgId: number;
  command: number;
  /** msg_size: the whole message, header included. */
  size: number;
  flags: number;
  error: number;
}

export function readHeader(buf: Buffer, off = 0): Header {
  return {
    msgId: u16At(buf, off),
    command: u16At(buf, off + 2),
    size: u32At(buf, off + 4),
    flags: u32At(buf, off + 8),
    error: u32At(buf, off + 12),
  };
}

export function writeHeader(buf: Buffer, off: number, h: Header): void {
  writeHeaderFields(buf, off, h.msgId, h.command, h.size, h.flags, h.error);
}

/** writeHeader without a Header object (the server's hot path). */
export function writeHeaderFields(
  buf: Buffer, off: number, msgId: number, command: number, size: number, flags: number, error: number,
): void {
  putU16At(buf, off, msgId);
  putU16At(buf, off + 2, command);
  putU32At(buf, off + 4, size);
  putU32At(buf, off + 8, flags);
  putU32At(buf, off + 12, error);
}

// Little-endian field access without Buffer's per-call argument checks; the
// callers have checked that [off, off+n) lies inside `buf`.
export function u16At(b: Uint8Array, off: number): number {
  return b[off]! | (b[off + 1]! << 8);
}
export function u32At(b: Uint8Array, off: number): number {
  return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16)) + b[off + 3]! * 0x100_0000;
}
export function putU16At(b: Uint8Array, off: number, v: number): void {
  b[off] = v;
  b[off + 1] = v >>> 8;
}
export function putU32At(b: Uint8Array, off: number, v: number): void {
  b[off] = v;
  b[off + 1] = v >>> 8;
  b[off + 2] = v >>> 16;
  b[off + 3] = v >>> 24;
}

export function messageType(flags: number): number { return flags & VFIO_USER_F_TYPE_MASK; }
export function isReply(flags: number): boolean { return messageType(flags) === VFIO_USER_F_TYPE_REPLY; }
export function noReply(flags: number): boolean { return (flags & VFIO_USER_F_NO_REPLY) !== 0; }
export function hasError(flags: number): boolean { return (flags & VFIO_USER_F_ERROR) !== 0; }

/** Header of a request we send (server → client DMA_*, or our test client). */
export function requestHeader(msgId: number, command: number, payloadSize: number, flags = 0): Header {
  return {
    msgId, command, size: HEADER_SIZE + payloadSize,
    flags: (flags & ~VFIO_USER_F_TYPE_MASK) | VFIO_USER_F_TYPE_COMMAND, error: 0,
  };
}

/** Header of the reply to `req`; an errno makes it an error reply (no payload). */
export function replyHeader(req: Header, payloadSize: number, errno = 0): Header {
  if (errno !== 0) {
    return { msgId: req.msgId, command: req.command, size: HEADER_SIZE,
      flags: VFIO_USER_F_TYPE_REPLY | VFIO_USER_F_ERROR, error: errno };
  }
  return { msgId: req.msgId, command: req.command, size: HEADER_SIZE + payloadSize,
    flags: VFIO_USER_F_TYPE_REPLY, error: 0 };
}

/**
 * Largest payload of a request that carries no bulk data: VERSION JSON,
 * SET_IRQS with DATA_BOOL (20 + 2048 MSI-X vectors), REGION_WRITE_MULTI
 * (8 + 200 × 24), DMA_LOGGING_START (24 + 256 × 16), ...
 */
export const CONTROL_PAYLOAD_MAX = 8192;
/** REGION_READ/WRITE fixed part in front of the data. */
const DATA_MESSAGE_FIXED = 16;

/**
 * The largest msg_size accepted under `limits`: a REGION_WRITE (or the reply
 * to one of our DMA_READs) of max_data_xfer_size bytes, or any control
 * message. A header announcing more cannot be buffered: the stream is
 * unusable and the client must be dropped (see validateRequestHeader).
 */
export function maxMessageSize(limits: NegotiatedLimits): number {
  return HEADER_SIZE + Math.max(DATA_MESSAGE_FIXED + limits.maxDataXferSize, CONTROL_PAYLOAD_MAX);
}

/**
 * What the session does with a message whose header it has read:
 *  - `accept`: decode the payload with the command's codec;
 *  - `reply-error`: framing is intact (the whole message can be skipped) but
 *    the request is bad: send an error reply with `errno` (unless NO_REPLY);
 *  - `ignore`: skip the message, send nothing (a stray reply must not be
 *    answered: its msg_id belongs to the client's own requests);
 *  - `drop`: msg_size cannot be trusted, the byte stream has no next message
 *    boundary: close the connection (nothing can be replied).
 */
export type HeaderVerdict =
  | { readonly action: 'accept' }
  | { readonly action: 'reply-error' | 'ignore' | 'drop'; readonly errno: number; readonly reason: string };

export const HEADER_OK: HeaderVerdict = Object.freeze({ action: 'accept' });

/**
 * Check the framing fields of a message received where the session expects a
 * client→server command. Replies to our own DMA_READ/WRITE must be routed
 * before this (by isReply + a pending msg_id); see validateReplyHeader.
 */
export function validateRequestHeader(h: Header, limits: NegotiatedLimits): HeaderVerdict {
  const framing = checkFraming(h, limits);
  if (framing !== HEADER_OK) return framing;
  const type = messageType(h.flags);
  if (type === VFIO_USER_F_TYPE_REPLY) {
    return { action: 'ignore', errno: Errno.EINVAL, reason: `unexpected reply (msg_id ${h.msgId}, command ${h.command})` };
  }
  if (type !== VFIO_USER_F_TYPE_COMMAND) {
    return { action: 'reply-error', errno: Errno.EINVAL, reason: `unknown message type ${type}` };
  }
  if (h.command < COMMAND_MIN || h.command > COMMAND_MAX) {
    return { action: 'reply-error', errno: Errno.EINVAL, reason: `unknown command ${h.command}` };
  }
  if (h.command === Command.DMA_READ || h.command === Command.DMA_WRITE) {
    return { action: 'reply-error', errno: Errno.EINVAL, reason: `command ${h.command} goes server to client only` };
  }
  return HEADER_OK;
}

/** Framing check of a reply from the client (to our DMA_READ/WRITE). */
export function validateReplyHeader(h: Header, limits: NegotiatedLimits): HeaderVerdict {
  const framing = checkFraming(h, limits);
  if (framing !== HEADER_OK) return framing;
  if (!isReply(h.flags)) return { action: 'reply-error', errno: Errno.EINVAL, reason: 'not a reply' };
  return HEADER_OK;
}

function checkFraming(h: Header, limits: NegotiatedLimits): HeaderVerdict {
  if (h.size < HEADER_SIZE) {
    return { action: 'drop', errno: Errno.EINVAL, reason: `msg_size ${h.size} < ${HEADER_SIZE}` };
  }
  const max = maxMessageSize(limits);
  if (h.size > max) {
    return { action: 'drop', errno: Errno.EMSGSIZE, reason: `msg_size ${h.size} > ${max}` };
  }
  return HEADER_OK;
}
