// VFIO_USER_VERSION: the first message; negotiates version and capabilities.
//
//   off size field
//    0   2   major    must be 0
//    2   2   minor    reply: <= the client's (QEMU 11.1 rejects > 0)
//    4   n   data     optional UTF-8 JSON, NUL-terminated (the NUL is the
//                     last byte of the payload):
//                     {"capabilities": {"max_msg_fds": N, "max_data_xfer_size": N,
//                      "pgsizes": N, "max_dma_maps": N, "write_multiple": bool,
//                      "migration": {...}, "twin_socket": {...}}}
//
// Every malformed request is EINVAL (as libvfio-user), and so is a payload
// above CONTROL_PAYLOAD_MAX (8 KiB) bytes. Capability values:
// what we accept is ours (SERVER_CAPS, within QEMU's bounds); what we may
// send is capped by what the client offered. The reply only names
// capabilities the client proposed (the spec's subset rule) and never
// "migration" (we do not migrate).
import {
  DEFAULT_MAX_DATA_XFER_SIZE, DEFAULT_MAX_MSG_FDS, DEFAULT_PGSIZE, MAX_DATA_XFER_SIZE_LIMIT,
  MAX_DMA_MAPS_LIMIT, MAX_MSG_FDS_LIMIT, MIN_DATA_XFER_SIZE, VFIO_USER_MAJOR, VFIO_USER_MINOR,
} from './constants.js';
import { fail } from './errno.js';
import { CONTROL_PAYLOAD_MAX } from './header.js';
import type { NegotiatedLimits } from './limits.js';
import { minLength, noFds } from './wire.js';

export { DEFAULT_LIMITS, type NegotiatedLimits } from './limits.js';

/** Capabilities as named on the wire, parsed and type-checked. */
export interface VersionCaps {
  maxMsgFds?: number;
  maxDataXferSize?: number;
  pgsizes?: number;
  maxDmaMaps?: number;
  writeMultiple?: boolean;
  /** Present when offered; its content is not used. */
  migration?: Record<string, unknown>;
  twinSocket?: Record<string, unknown>;
}

export interface VersionMessage {
  major: number;
  minor: number;
  /** null: no JSON at all; {}: JSON without "capabilities". */
  caps: VersionCaps | null;
}

/** What this server accepts and offers (clamped to QEMU's bounds). */
export interface ServerCaps {
  maxMsgFds: number;
  maxDataXferSize: number;
  pgsizes: number;
  maxDmaMaps: number;
  writeMultiple: boolean;
}

export const SERVER_CAPS: Readonly<ServerCaps> = Object.freeze({
  maxMsgFds: MAX_MSG_FDS_LIMIT,
  maxDataXferSize: DEFAULT_MAX_DATA_XFER_SIZE,
  pgsizes: DEFAULT_PGSIZE,
  maxDmaMaps: MAX_DMA_MAPS_LIMIT,
  writeMultiple: true,
});

const VERSION_FIXED = 4;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Server side: decode and check the client's VERSION request. */
export function decodeVersionRequest(payload: Buffer, _limits: NegotiatedLimits, nfds: number): VersionMessage {
  noFds(nfds, 'VERSION');
  const msg = decodeVersion(payload, 'VERSION');
  if (msg.major !== VFIO_USER_MAJOR) throw fail('EINVAL', `VERSION: unsupported major ${msg.major}`);
  return msg;
}

export interface Negotiated {
  /** The reply's fields (pass to encodeVersionReply). */
  reply: VersionMessage;
  limits: NegotiatedLimits;
}

/** Settle the connection's limits from the client's offer and ours. */
export function negotiateVersion(req: VersionMessage, server: ServerCaps = SERVER_CAPS): Negotiated {
  const offer = req.caps ?? {};
  const ownFds = clamp(server.maxMsgFds, 0, MAX_MSG_FDS_LIMIT);
  const ownXfer = clamp(server.maxDataXferSize, MIN_DATA_XFER_SIZE, MAX_DATA_XFER_SIZE_LIMIT);
  // QEMU uses our max_data_xfer_size for both directions: never above its offer
  // (except to cover a 4 KiB config space read).
  const xfer = clamp(Math.min(offer.maxDataXferSize ?? ownXfer, ownXfer), MIN_DATA_XFER_SIZE, MAX_DATA_XFER_SIZE_LIMIT);
  const pgsizes = negotiatePgsizes(offer.pgsizes, server.pgsizes);
  const limits: NegotiatedLimits = {
    maxMsgFds: ownFds,
    maxDataXferSize: xfer,
    pgsizes,
    maxDmaMaps: clamp(Math.min(offer.maxDmaMaps ?? MAX_DMA_MAPS_LIMIT, server.maxDmaMaps), 0, MAX_DMA_MAPS_LIMIT),
    writeMultiple: server.writeMultiple && offer.writeMultiple === true,
    peerMaxMsgFds: clamp(offer.maxMsgFds ?? DEFAULT_MAX_MSG_FDS, 0, MAX_MSG_FDS_LIMIT),
    peerMaxDataXferSize: Math.min(offer.maxDataXferSize ?? DEFAULT_MAX_DATA_XFER_SIZE, xfer),
  };
  const caps: VersionCaps = {};
  // Never advertise more fds than the client offered: QEMU reads the reply
  // into a buffer the size of its request, so the reply must not grow (and
  // accepting more fds than we advertise is harmless).
  if (offer.maxMsgFds !== undefined) caps.maxMsgFds = Math.min(limits.maxMsgFds, limits.peerMaxMsgFds);
  if (offer.maxDataXferSize !== undefined) caps.maxDataXferSize = limits.maxDataXferSize;
  if (offer.pgsizes !== undefined) caps.pgsizes = limits.pgsizes;
  if (offer.maxDmaMaps !== undefined) caps.maxDmaMaps = limits.maxDmaMaps;
  if (offer.writeMultiple !== undefined) caps.writeMultiple = limits.writeMultiple;
  return {
    reply: { major: VFIO_USER_MAJOR, minor: Math.min(req.minor, VFIO_USER_MINOR), caps },
    limits,
  };
}

/** Server side: the reply payload (always carries JSON: QEMU requires it). */
export function encodeVersionReply(reply: VersionMessage): Buffer {
  return encodeVersion(reply.major, reply.minor, reply.caps ?? {});
}

/** Client side (test client): a VERSION request. `caps` null sends no JSON. */
export function encodeVersionRequest(caps: VersionCaps | null, major = VFIO_USER_MAJOR, minor = VFIO_USER_MINOR): Buffer {
  return encodeVersion(major, minor, caps);
}

/** Client side: decode a VERSION reply, with QEMU 11.1's acceptance rules. */
export function decodeVersionReply(payload: Buffer): VersionMessage {
  const msg = decodeVersion(payload, 'VERSION reply');
  if (msg.major !== VFIO_USER_MAJOR || msg.minor > VFIO_USER_MINOR) {
    throw fail('EINVAL', `VERSION reply: incompatible version ${msg.major}.${msg.minor}`);
  }
  if (msg.caps === null) throw fail('EINVAL', 'VERSION reply: no capabilities JSON');
  const c = msg.caps;
  if (c.maxMsgFds !== undefined && c.maxMsgFds > MAX_MSG_FDS_LIMIT) throw fail('EINVAL', 'max_msg_fds too large');
  if (c.maxDataXferSize !== undefined && c.maxDataXferSize > MAX_DATA_XFER_SIZE_LIMIT) throw fail('EINVAL', 'max_data_xfer_size too large');
  if (c.pgsizes !== undefined && c.pgsizes % DEFAULT_PGSIZE !== 0) throw fail('EINVAL', 'pgsizes not a multiple of 4096');
  if (c.maxDmaMaps !== undefined && c.maxDmaMaps > MAX_DMA_MAPS_LIMIT) throw fail('EINVAL', 'max_dma_maps too large');
  return msg;
}

// ---------------------------------------------------------------------------

function decodeVersion(payload: Buffer, what: string): VersionMessage {
  minLength(payload, VERSION_FIXED, what);
  // Before VERSION a message may be max_data_xfer_size long; parsing that much
  // JSON would stall the loop for every client that connects.
  if (payload.length > CONTROL_PAYLOAD_MAX) {
    throw fail('EINVAL', `${what}: ${payload.length} bytes > ${CONTROL_PAYLOAD_MAX}`);
  }
  const major = payload.readUInt16LE(0);
  const minor = payload.readUInt16LE(2);
  if (payload.length === VERSION_FIXED) return { major, minor, caps: null };
  const nul = payload.indexOf(0, VERSION_FIXED);
  if (nul !== payload.length - 1) {
    throw fail('EINVAL', `${what}: JSON ${nul < 0 ? 'not NUL-terminated' : 'followed by trailing bytes'}`);
  }
  let text: string;
  let top: unknown;
  try {
    text = utf8.decode(payload.subarray(VERSION_FIXED, nul));
    top = JSON.parse(text);
  } catch {
    throw fail('EINVAL', `${what}: malformed JSON`);
  }
  if (!isObject(top)) throw fail('EINVAL', `${what}: JSON is not an object`);
  return { major, minor, caps: parseCaps(top.capabilities, what) };
}

function parseCaps(v: unknown, what: string): VersionCaps {
  if (v === undefined) return {};
  if (!isObject(v)) throw fail('EINVAL', `${what}: "capabilities" is not an object`);
  const caps: VersionCaps = {};
  const num = (key: string): number | undefined => {
    const x = v[key];
    if (x === undefined) return undefined;
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0) throw fail('EINVAL', `${what}: malformed ${key}`);
    return x;
  };
  const obj = (key: string): Record<string, unknown> | undefined => {
    const x = v[key];
    if (x === undefined) return undefined;
    if (!isObject(x)) throw fail('EINVAL', `${what}: malformed ${key}`);
    return x;
  };
  const fds = num('max_msg_fds'); if (fds !== undefined) caps.maxMsgFds = fds;
  const xfer = num('max_data_xfer_size'); if (xfer !== undefined) caps.maxDataXferSize = xfer;
  const pg = num('pgsizes');
  if (pg !== undefined) {
    if (pg === 0) throw fail('EINVAL', `${what}: pgsizes is 0`);
    caps.pgsizes = pg;
  }
  const maps = num('max_dma_maps'); if (maps !== undefined) caps.maxDmaMaps = maps;
  const wm = v.write_multiple;
  if (wm !== undefined) {
    if (typeof wm !== 'boolean') throw fail('EINVAL', `${what}: malformed write_multiple`);
    caps.writeMultiple = wm;
  }
  const mig = obj('migration'); if (mig !== undefined) caps.migration = mig;
  const twin = obj('twin_socket'); if (twin !== undefined) caps.twinSocket = twin;
  return caps; // unknown keys are ignored
}

function encodeVersion(major: number, minor: number, caps: VersionCaps | null): Buffer {
  if (caps === null) {
    const b = Buffer.alloc(VERSION_FIXED);
    b.writeUInt16LE(major, 0);
    b.writeUInt16LE(minor, 2);
    return b;
  }
  const wire: Record<string, unknown> = {};
  if (caps.maxMsgFds !== undefined) wire.max_msg_fds = caps.maxMsgFds;
  if (caps.maxDataXferSize !== undefined) wire.max_data_xfer_size = caps.maxDataXferSize;
  if (caps.pgsizes !== undefined) wire.pgsizes = caps.pgsizes;
  if (caps.maxDmaMaps !== undefined) wire.max_dma_maps = caps.maxDmaMaps;
  if (caps.writeMultiple !== undefined) wire.write_multiple = caps.writeMultiple;
  if (caps.migration !== undefined) wire.migration = caps.migration;
  if (caps.twinSocket !== undefined) wire.twin_socket = caps.twinSocket;
  const json = Buffer.from(JSON.stringify({ capabilities: wire }), 'utf8');
  const b = Buffer.alloc(VERSION_FIXED + json.length + 1); // + NUL
  b.writeUInt16LE(major, 0);
  b.writeUInt16LE(minor, 2);
  json.copy(b, VERSION_FIXED);
  return b;
}

/**
 * One page size for DMA_MAP/UNMAP alignment: our smallest if the client
 * offered nothing, else the smallest offered size that is >= our smallest and
 * <= 1 GiB (page-granular mappings work with any coarser page).
 */
function negotiatePgsizes(offer: number | undefined, ours: number): number {
  const own = BigInt(ours);
  const ownMin = own & -own;
  if (offer === undefined) return Number(ownMin);
  const usable = BigInt(offer) & ~(ownMin - 1n) & ((1n << 31n) - 1n);
  if (usable === 0n) throw fail('EINVAL', `VERSION: pgsizes 0x${offer.toString(16)} has no usable page size`);
  return Number(usable & -usable);
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(Math.max(v, lo), hi);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
