// A fuzz message as sent: its bytes, fds, and what the server owes for it,
// worked out from the bytes themselves (so a mutated header or argsz is
// judged by what actually went on the wire).
import { CONTROL_PAYLOAD_MAX, HEADER_SIZE, readHeader, writeHeader } from '../protocol/header.js';
import {
  Command, MAX_MSG_FDS_LIMIT, VFIO_USER_F_NO_REPLY, VFIO_USER_F_TYPE_MASK, VFIO_USER_F_TYPE_REPLY,
} from '../protocol/constants.js';

/** One message for the fuzz connection. */
export interface FuzzMessage {
  bytes: Buffer;
  /** fds sent with the message's first byte (owned: closed once sent). */
  fds: number[];
  command: number;
  msgId: number;
  /** A reply is owed. */
  reply: boolean;
  /** Largest reply payload allowed. */
  maxPayload: number;
  /** Framing is broken (msg_size is not the real length, or too many fds): the stream is lost after it. */
  desync: boolean;
  /** Counting bucket: the command name, or "raw" for garbage framing. */
  label: string;
  /** Called with the reply's payload (null on an error reply). */
  onReply?: (payload: Buffer | null) => void;
}

/** Fixed reply parts a request may get back even with a smaller argsz (the codecs refuse smaller ones). */
const ARGSZ_REPLY_MIN: Partial<Record<number, number>> = {
  [Command.DEVICE_GET_INFO]: 16,
  [Command.DEVICE_GET_REGION_INFO]: 32,
  [Command.DEVICE_GET_IRQ_INFO]: 16,
  [Command.DEVICE_GET_REGION_IO_FDS]: 16,
  [Command.DEVICE_FEATURE]: 8,
  [Command.DMA_UNMAP]: 24,
  [Command.DIRTY_PAGES]: 8,
  [Command.MIG_DATA_READ]: 8,
};

/** Fixed reply sizes of the commands without argsz. */
const FIXED_REPLY: Partial<Record<number, number>> = {
  [Command.VERSION]: CONTROL_PAYLOAD_MAX,
  [Command.DMA_MAP]: 0,
  [Command.DEVICE_SET_IRQS]: 0,
  [Command.REGION_WRITE]: 16,
  [Command.DEVICE_RESET]: 0,
  [Command.REGION_WRITE_MULTI]: 8,
  [Command.MIG_DATA_WRITE]: 0,
};

/** The largest reply payload `payload` (a request for `command`) allows. */
export function maxReplyPayload(command: number, payload: Buffer): number {
  if (command === Command.REGION_READ) return payload.length >= 16 ? 16 + payload.readUInt32LE(12) : 0;
  const min = ARGSZ_REPLY_MIN[command];
  if (min !== undefined) return payload.length >= 4 ? Math.max(payload.readUInt32LE(0), min) : 0;
  return FIXED_REPLY[command] ?? 0;
}

/** Header + payload with an honest msg_size. */
export function frame(msgId: number, command: number, payload: Buffer, flags = 0): Buffer {
  const b = Buffer.alloc(HEADER_SIZE + payload.length);
  writeHeader(b, 0, { msgId, command, size: b.length, flags, error: 0 });
  payload.copy(b, HEADER_SIZE);
  return b;
}

/** What the server owes for `bytes` sent with `nfds` fds. */
export function describe(bytes: Buffer, fds: number[], label: string): FuzzMessage {
  const h = readHeader(bytes, 0);
  const desync = bytes.length < HEADER_SIZE || h.size !== bytes.length || fds.length > MAX_MSG_FDS_LIMIT;
  const type = h.flags & VFIO_USER_F_TYPE_MASK;
  const reply = !desync && type !== VFIO_USER_F_TYPE_REPLY && (h.flags & VFIO_USER_F_NO_REPLY) === 0;
  return {
    bytes, fds, command: h.command, msgId: h.msgId, reply, desync, label,
    maxPayload: maxReplyPayload(h.command, bytes.subarray(HEADER_SIZE)),
  };
}
