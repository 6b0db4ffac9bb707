// The protocol actions of a fired message rule, around the session's real
// handler: error (instead of the handler), drop, needs-reset (then the
// handler), delay and hold (the handler runs at once, its reply waits), and
// corrupt (the handler runs, its reply goes out with one field flipped;
// corruptReply below). Later requests wait behind a delayed or held reply,
// as they wait behind any reply that takes time. Fault timers are unref'd:
// they never keep a process alive on their own.
import { Errno, VfioUserError } from '../protocol/errno.js';
import { HEADER_SIZE, writeHeader, type Header } from '../protocol/header.js';
import type { VfioUserDevice } from '../devices/device.js';
import type { ArmedRule } from './armed-rule.js';
import type { DeviceFaults } from './device-faults.js';
import type { FaultAction } from './rule.js';

export type CorruptAction = Extract<FaultAction, { type: 'corrupt' }>;

/** What a message fault needs of the session. */
export interface MessageFaultSite<R> {
  readonly device: VfioUserDevice;
  readonly faults: DeviceFaults;
  /** The real handler. */
  run(): R | Promise<R>;
  /** Close the connection. */
  drop(reason: string): void;
}

/** The reply (or the promise of it) for a request a rule fired on. */
export function runMessageFault<R>(fired: ArmedRule, site: MessageFaultSite<R>): R | undefined | Promise<R> {
  const { id, action: a } = fired.rule;
  switch (a.type) {
    case 'error':
      throw new VfioUserError(a.errno, `injected by fault rule '${id}'`);
    case 'drop':
      site.drop(`connection dropped by fault rule '${id}'`);
      return undefined;
    case 'needs-reset': {
      const did = site.device.enterErrorState?.(`fault rule '${id}'`) ?? 'none';
      if (did === 'none') throw new VfioUserError(Errno.EIO, `fault rule '${id}': the device has no error state to enter`);
      return site.run();
    }
    case 'delay':
      return after(site.run, new Promise((r) => setTimeout(r, a.ms).unref()));
    case 'hold':
      return after(site.run, site.faults.hold(id, a.ms));
    case 'corrupt':
      return site.run();
    default:
      throw new VfioUserError(Errno.EINVAL, `fault rule '${id}': ${a.type} is not a message action`);
  }
}

/** run()'s result or error, once `gate` settles. */
function after<R>(run: () => R | Promise<R>, gate: Promise<unknown>): Promise<R> {
  let result: Promise<R>;
  try {
    result = Promise.resolve(run());
  } catch (e) {
    result = Promise.reject(e);
  }
  return result.then((r) => gate.then(() => r), (e) => gate.then(() => { throw e; }));
}

/** Byte offset and width of each header field. */
const FIELD_AT: Record<Exclude<CorruptAction['field'], 'payload'>, [number, number]> = {
  msgId: [0, 2], command: [2, 2], size: [4, 4], flags: [8, 4], error: [12, 4],
};

/**
 * The whole reply message (header with its true size, then the payload) with
 * the rule's field XORed. A payload offset past the end flips the message's
 * last byte instead, so the reply is never sent unchanged.
 */
export function corruptReply(header: Header, parts: readonly Buffer[], a: CorruptAction): Buffer {
  let size = HEADER_SIZE;
  for (const p of parts) size += p.length;
  const out = Buffer.alloc(size);
  writeHeader(out, 0, { ...header, size });
  let at = HEADER_SIZE;
  for (const p of parts) at += p.copy(out, at);
  if (a.field === 'payload') {
    const i = Math.min(HEADER_SIZE + a.offset!, size - 1);
    out[i] = out[i]! ^ a.xor;
    return out;
  }
  const [off, width] = FIELD_AT[a.field];
  if (width === 2) out.writeUInt16LE(out.readUInt16LE(off) ^ a.xor, off);
  else out.writeUInt32LE((out.readUInt32LE(off) ^ a.xor) >>> 0, off);
  return out;
}
