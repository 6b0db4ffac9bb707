// Identify data structures (Base 5.17.2, NVM Command Set 4.1.5): the
// controller, a namespace, the active namespace list, the namespace
// identification descriptors, and the (all-zero) NVM command set specific
// controller and namespace structures the Linux driver asks for. Each is
// 4 KiB, built on request.
import { AER_LIMIT, CSI_NVM, IDENTIFY_SIZE, MDTS, NVME_VERSION } from './constants.js';
import type { Namespace } from './namespace.js';

/** What the controller says about itself. */
export interface ControllerIdentity {
  vendor: number;
  subsystemVendor: number;
  /** Serial number (at most 20 ASCII characters). */
  serial: string;
  /** Model number (at most 40). */
  model: string;
  /** Firmware revision (at most 8). */
  firmware: string;
  /** Largest I/O queue (MQES + 1): MAXCMD. */
  maxCommands: number;
}

/** Optional Admin Command Support: Doorbell Buffer Config (bit 8). */
export const OACS_DBBC = 1 << 8;
/** Optional NVM Command Support: Compare, Dataset Management, Write Zeroes, Timestamp. */
export const ONCS = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 6);
/** Log Page Attributes: commands supported and effects log, extended data (NUMDU, LPO). */
const LPA = (1 << 1) | (1 << 2);
/** Volatile write cache present; flush with NSID FFFFFFFFh applies to every namespace. */
const VWC = 0x07;
/** SGL support: SGLs without alignment requirements. */
const SGLS = 0x1;

function ascii(b: Buffer, off: number, len: number, s: string): void {
  b.fill(0x20, off, off + len);
  b.write(s.slice(0, len), off, len, 'latin1');
}

/** Identify Controller (CNS 01h). */
export function identifyController(id: ControllerIdentity, namespaces: number): Buffer {
  const b = Buffer.alloc(IDENTIFY_SIZE);
  b.writeUInt16LE(id.vendor, 0); // VID
  b.writeUInt16LE(id.subsystemVendor, 2); // SSVID
  ascii(b, 4, 20, id.serial); // SN
  ascii(b, 24, 40, id.model); // MN
  ascii(b, 64, 8, id.firmware); // FR
  b[72] = 6; // RAB: 64 commands
  b[77] = MDTS;
  b.writeUInt16LE(0, 78); // CNTLID
  b.writeUInt32LE(NVME_VERSION, 80); // VER
  b[111] = 1; // CNTRLTYPE: I/O controller
  b.writeUInt16LE(OACS_DBBC, 256); // OACS
  b[258] = 3; // ACL: 4 Abort commands
  b[259] = AER_LIMIT - 1; // AERL (0's based)
  b[260] = 0x03; // FRMW: one slot, slot 1 read-only
  b[261] = LPA;
  b[262] = 0; // ELPE: one error log entry
  b[263] = 0; // NPSS: one power state
  b.writeUInt16LE(0x157, 266); // WCTEMP 343 K
  b.writeUInt16LE(0x175, 268); // CCTEMP 373 K
  b[512] = 0x66; // SQES: 64 bytes
  b[513] = 0x44; // CQES: 16 bytes
  b.writeUInt16LE(Math.min(id.maxCommands, 0xffff), 514); // MAXCMD
  b.writeUInt32LE(namespaces, 516); // NN
  b.writeUInt16LE(ONCS, 520);
  b[525] = VWC;
  b.writeUInt32LE(SGLS, 536);
  b.write(`nqn.2026-12.io.vfio-user-ts:nvme:${id.serial}`, 768, 256, 'latin1'); // SUBNQN
  // Power state 0: 25 W, no entry/exit latency of note.
  b.writeUInt16LE(2500, 2048);
  return b;
}

/** Identify Namespace (CNS 00h) of an active namespace. */
export function identifyNamespace(ns: Namespace): Buffer {
  const b = Buffer.alloc(IDENTIFY_SIZE);
  const blocks = BigInt(ns.blocks);
  b.writeBigUInt64LE(blocks, 0); // NSZE
  b.writeBigUInt64LE(blocks, 8); // NCAP
  b.writeBigUInt64LE(blocks, 16); // NUSE
  b[25] = 0; // NLBAF: one format
  b[26] = 0; // FLBAS: format 0, no metadata
  b[33] = 0x09; // DLFEAT: deallocated blocks read as zeros; Write Zeroes may deallocate
  b[99] = ns.readonly ? 1 : 0; // NSATTR: write protected
  nguid(ns).copy(b, 104); // NGUID
  eui64(ns).copy(b, 120); // EUI64
  b[128 + 2] = ns.lbaShift; // LBAF0: LBADS, no metadata, best performance
  return b;
}

/** Active Namespace ID list (CNS 02h / 07h): ids above `after`, ascending. */
export function activeNamespaceList(namespaces: readonly Namespace[], after: number): Buffer {
  const b = Buffer.alloc(IDENTIFY_SIZE);
  let o = 0;
  for (const ns of namespaces) {
    if (ns.nsid <= after) continue;
    if (o >= IDENTIFY_SIZE) break;
    b.writeUInt32LE(ns.nsid, o);
    o += 4;
  }
  return b;
}

/** Namespace Identification Descriptor list (CNS 03h): EUI64, NGUID, CSI. */
export function namespaceDescriptors(ns: Namespace): Buffer {
  const b = Buffer.alloc(IDENTIFY_SIZE);
  let o = 0;
  const put = (type: number, data: Buffer) => {
    b[o] = type; // NIDT
    b[o + 1] = data.length; // NIDL
    data.copy(b, o + 4);
    o += 4 + data.length;
  };
  put(0x01, eui64(ns));
  put(0x02, nguid(ns));
  put(0x04, Buffer.from([CSI_NVM]));
  return b;
}

/** The NVM command set specific structures (CNS 05h, 06h): nothing beyond the defaults. */
export function emptyIdentify(): Buffer {
  return Buffer.alloc(IDENTIFY_SIZE);
}

// Unique per image path and namespace id, stable across restarts.
function digest(ns: Namespace): Buffer {
  let h = 0xcbf29ce484222325n;
  for (const c of Buffer.from(`${ns.disk}\0${ns.nsid}`)) h = ((h ^ BigInt(c)) * 0x100000001b3n) & 0xffffffffffffffffn;
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(h);
  return b;
}

function eui64(ns: Namespace): Buffer {
  return digest(ns);
}

function nguid(ns: Namespace): Buffer {
  const d = digest(ns);
  const b = Buffer.alloc(16);
  d.copy(b, 0);
  b.writeUInt32BE(ns.nsid, 12);
  b[8] = 0x76; // distinguishes it from the EUI64 bytes
  return b;
}
