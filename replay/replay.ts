// `vfio-user-ts replay`: plays the client side of a recording against a
// server, one recorded connection after the other, and reports the first
// divergence (replay/session.ts says how messages are matched).
import type { Trace } from '../trace/reader.js';
import { ignoreRule } from './diff.js';
import { replaySession, type Divergence } from './session.js';

/** How a recording is replayed. */
export interface ReplayOptions {
  /** The server's socket. */
  socket: string;
  /** The recorded device to replay (needed when the recording has several). */
  device?: string;
  /** Fields left out of the comparison (replay/diff.ts: ignoreRule). */
  ignore?: readonly string[];
  /** How long a recorded server message may take to come (ms, default 10000). */
  timeoutMs?: number;
}

/** What a replay did. */
export interface ReplayResult {
  device: string;
  sessions: number;
  /** Client requests sent. */
  sent: number;
  /** Server messages that came and matched their recorded counterparts. */
  matched: number;
  /** The first divergence, or null when everything matched. */
  divergence: Divergence | null;
}

/** A recording that cannot be replayed as asked (no such device, several devices, no messages). */
export class ReplayError extends Error {}

/** Replays `trace`; resolves when it matched to the end or at the first divergence. */
export async function replay(trace: Trace, opts: ReplayOptions): Promise<ReplayResult> {
  const devices = [...new Set(trace.records.filter((r) => r.type === 'msg').map((r) => r.device as string))];
  if (devices.length === 0) throw new ReplayError('the recording holds no messages');
  const device = opts.device ?? (devices.length === 1 ? devices[0]! : undefined);
  if (device === undefined) throw new ReplayError(`the recording holds devices ${devices.join(', ')}: choose one with --device`);
  if (!devices.includes(device)) throw new ReplayError(`the recording has no messages of device '${device}' (it has ${devices.join(', ')})`);
  const bySession = new Map<number, number[]>();
  trace.records.forEach((r, i) => {
    if (r.device !== device || (r.type !== 'msg' && r.type !== 'dma')) return;
    const list = bySession.get(r.session!) ?? [];
    list.push(i);
    bySession.set(r.session!, list);
  });
  const result: ReplayResult = { device, sessions: 0, sent: 0, matched: 0, divergence: null };
  const ignore = ignoreRule(opts.ignore ?? []);
  for (const [session, positions] of [...bySession].sort((a, b) => a[0] - b[0])) {
    const r = await replaySession(trace.records, positions, session, { socket: opts.socket, ignore, timeoutMs: opts.timeoutMs ?? 10_000 });
    result.sessions++;
    result.sent += r.sent;
    result.matched += r.matched;
    if (r.divergence) {
      result.divergence = r.divergence;
      break;
    }
  }
  return result;
}

/** The report: a summary line, and for a divergence the messages and the differing fields. */
export function formatReplay(r: ReplayResult, trace: Trace): string {
  const head = `replayed ${r.sessions} session(s) of '${r.device}': ${r.sent} requests sent, ${r.matched} server messages matched`;
  const d = r.divergence;
  if (!d) return `${head}; 0 divergences\n`;
  const at = trace.records[d.record];
  const out = [`${head}; DIVERGENCE at record ${d.record} (session ${d.session}, t=${at ? (at.t / 1e9).toFixed(6) : '?'} s): ${d.what}`];
  if (d.recorded) out.push(`  recorded: ${d.recorded}`);
  if (d.replayed) out.push(`  replayed: ${d.replayed}`);
  if (d.fields.length) {
    out.push('  fields that differ:');
    for (const f of d.fields) out.push(`    ${f.field}: recorded ${f.recorded}, replayed ${f.replayed}`);
  }
  return out.join('\n') + '\n';
}
