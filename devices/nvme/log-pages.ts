// Get Log Page contents (Base 5.16.1): error information (no errors kept),
// SMART / health information, the firmware slot information and the
// commands supported and effects log. Each page is built whole; the
// command's offset and length pick the bytes.
import { AdminOp, IoOp, LogId } from './constants.js';

/** Commands Supported and Effects: CSUPP (bit 0); LBCC (bit 1) for commands that change media. */
const CSUPP = 1 << 0;
const LBCC = 1 << 1;

export interface HealthInputs {
  /** Host read and write commands, 512-byte units read and written. */
  reads: number;
  writes: number;
  bytesRead: number;
  bytesWritten: number;
  /** Seconds since the controller was created. */
  powerOnSeconds: number;
  /** Firmware revision (8 characters). */
  firmware: string;
}

/** The admin opcodes this controller supports (also the answer to "is this opcode known"). */
export const ADMIN_OPCODES: readonly number[] = [
  AdminOp.DELETE_SQ, AdminOp.CREATE_SQ, AdminOp.GET_LOG_PAGE, AdminOp.DELETE_CQ, AdminOp.CREATE_CQ,
  AdminOp.IDENTIFY, AdminOp.ABORT, AdminOp.SET_FEATURES, AdminOp.GET_FEATURES, AdminOp.ASYNC_EVENT,
  AdminOp.DOORBELL_BUFFER_CONFIG,
];
const IO_OPCODES: readonly number[] = [IoOp.FLUSH, IoOp.WRITE, IoOp.READ, IoOp.COMPARE, IoOp.WRITE_ZEROES, IoOp.DSM];
const MEDIA_CHANGING = new Set<number>([IoOp.WRITE, IoOp.WRITE_ZEROES, IoOp.DSM]);

/** The whole log page `lid`, or undefined for a page we do not have. */
export function logPage(lid: number, h: HealthInputs): Buffer | undefined {
  switch (lid) {
    case LogId.ERROR:
      return Buffer.alloc(64); // one entry, error count 0: nothing to report
    case LogId.SMART:
      return smart(h);
    case LogId.FIRMWARE_SLOT: {
      const b = Buffer.alloc(512);
      b[0] = 1; // AFI: slot 1 active
      b.write(h.firmware.padEnd(8, ' ').slice(0, 8), 8, 8, 'latin1'); // FRS1
      return b;
    }
    case LogId.COMMANDS_EFFECTS: {
      const b = Buffer.alloc(4096);
      for (const op of ADMIN_OPCODES) b.writeUInt32LE(CSUPP, op * 4);
      for (const op of IO_OPCODES) b.writeUInt32LE(CSUPP | (MEDIA_CHANGING.has(op) ? LBCC : 0), 1024 + op * 4);
      return b;
    }
    default:
      return undefined;
  }
}

function u128(b: Buffer, off: number, v: number): void {
  b.writeBigUInt64LE(BigInt(Math.floor(v)), off);
}

/** SMART / Health Information (02h), controller-wide. */
function smart(h: HealthInputs): Buffer {
  const b = Buffer.alloc(512);
  b[0] = 0; // critical warning: none
  b.writeUInt16LE(0x141, 1); // composite temperature: 321 K
  b[3] = 100; // available spare
  b[4] = 10; // available spare threshold
  b[5] = 0; // percentage used
  // Data units are thousands of 512-byte units, rounded up.
  u128(b, 32, Math.ceil(h.bytesRead / 512 / 1000));
  u128(b, 48, Math.ceil(h.bytesWritten / 512 / 1000));
  u128(b, 64, h.reads);
  u128(b, 80, h.writes);
  u128(b, 128, Math.floor(h.powerOnSeconds / 3600)); // power-on hours
  u128(b, 112, 1); // power cycles
  return b;
}
