// `vfio-user-ts/testing`: a raw vfio-user client for tests of a device or a
// server: it speaks the protocol message by message, as QEMU would, and lets
// a test send malformed bytes too.

/** The client: `open(socket)` negotiates VERSION; `request(command, payload)` resolves with the reply. */
export { VfioUserClient } from '../testing/vfio-user-client.js';
/** A reply: header fields, errno and payload. */
export type { ReplyMessage } from '../testing/vfio-user-client.js';
/** Guest memory that the server's DMA_READ/DMA_WRITE requests act on. */
export type { GuestMemory } from '../testing/vfio-user-client.js';
/** The capabilities the client offers in VERSION. */
export type { VersionCaps } from '../protocol/version.js';
/** vfio-user command numbers (VERSION, DEVICE_GET_INFO, REGION_READ, ...). */
export { Command } from '../protocol/constants.js';
/** The DEVICE_GET_INFO request payload. */
export { encodeDeviceGetInfoRequest } from '../protocol/commands/device-get-info.js';
/** Decodes a DEVICE_GET_INFO reply: flags, numRegions, numIrqs. */
export { decodeDeviceGetInfoReply } from '../protocol/commands/device-get-info.js';
/** The DEVICE_GET_REGION_INFO request payload for a region index. */
export { encodeRegionInfoRequest } from '../protocol/commands/region-info.js';
/** Decodes a DEVICE_GET_REGION_INFO reply. */
export { decodeRegionInfoReply } from '../protocol/commands/region-info.js';
/** The REGION_READ request payload. */
export { encodeRegionReadRequest } from '../protocol/commands/region-access.js';
/** Decodes a REGION_READ reply (its data). */
export { decodeRegionReadReply } from '../protocol/commands/region-access.js';
/** The REGION_WRITE request payload. */
export { encodeRegionWriteRequest } from '../protocol/commands/region-access.js';
/** Decodes a REGION_WRITE reply. */
export { decodeRegionWriteReply } from '../protocol/commands/region-access.js';
/** The name of an errno number ("EINVAL"). */
export { errnoName } from '../protocol/errno.js';
/** Reads a recording made with `serve --record FILE` (throws TraceError on a file that is none). */
export { readTrace } from '../trace/reader.js';
/** A file that is not a readable recording; the message says where and why. */
export { TraceError } from '../trace/reader.js';
/** A recording as read: header, records, whether it was cut short. */
export type { Trace } from '../trace/reader.js';
/** Plays a recording's client side against a server and compares; resolves with the first divergence or none. */
export { replay } from '../replay/replay.js';
/** A replay's result as the CLI prints it. */
export { formatReplay } from '../replay/replay.js';
/** How a recording is replayed: socket, device, fields to ignore, timeout. */
export type { ReplayOptions } from '../replay/replay.js';
/** What a replay did: sessions, requests sent, messages matched, the divergence. */
export type { ReplayResult } from '../replay/replay.js';
/** Where a replay went another way than its recording, with the fields that differ. */
export type { Divergence } from '../replay/session.js';
