// `trace stats`: message counts and reply latency per command, the DMA
// mappings over time, guest-memory accesses and the other events (e.g.
// injected faults) of a recording.
import { Command, commandName } from '../protocol/constants.js';
import { hasError, isReply } from '../protocol/header.js';
import { decodeMessage } from './decode.js';
import { isMessage, type MessageRecord, type TraceRecord } from './format.js';

/** Counts and latency of one command. */
export interface CommandStats {
  /** Requests sent by the client / by the server. */
  fromClient: number;
  fromServer: number;
  replies: number;
  /** Replies with the error flag. */
  errors: number;
  /** Request-to-reply times in microseconds, sorted. */
  latencyUs: number[];
}

/** One step of the DMA mapping timeline. */
export interface MapSample {
  /** Seconds since the recording started (end of the interval). */
  t: number;
  maps: number;
  unmaps: number;
  /** Mappings and mapped bytes live at the end of the interval (all devices). */
  live: number;
  bytes: bigint;
}

/** What `trace stats` reports. */
export interface TraceStats {
  records: number;
  messages: number;
  /** Seconds from the first to the last record. */
  duration: number;
  commands: Map<string, CommandStats>;
  sessions: number;
  dma: { reads: number; readBytes: number; writes: number; writeBytes: number };
  /** Records of other parts of the server (fault, ...) by type. */
  notes: Map<string, number>;
  maps: MapSample[];
  /** The `end` record's reason, when recording stopped on purpose. */
  ended?: string;
}

/** Computes the figures; `interval` is the mapping timeline's step in seconds. */
export function traceStats(records: readonly TraceRecord[], interval = 1): TraceStats {
  const s: TraceStats = {
    records: records.length, messages: 0, duration: 0, commands: new Map(), sessions: 0,
    dma: { reads: 0, readBytes: 0, writes: 0, writeBytes: 0 }, notes: new Map(), maps: [],
  };
  const pending = new Map<string, MessageRecord>();
  const live = new Map<string, Map<bigint, bigint>>(); // per device+session: addr → size
  let bucket: MapSample | null = null;
  const step = interval * 1e9;
  const sample = (t: number): MapSample => {
    const end = (Math.floor(t / step) + 1) * interval;
    if (bucket && bucket.t === end) return bucket;
    bucket = { t: end, maps: 0, unmaps: 0, live: 0, bytes: 0n };
    s.maps.push(bucket);
    return bucket;
  };
  const tally = (b: MapSample): void => {
    b.live = 0;
    b.bytes = 0n;
    for (const m of live.values()) for (const size of m.values()) { b.live++; b.bytes += size; }
  };
  for (const r of records) {
    s.duration = Math.max(s.duration, r.t / 1e9);
    if (r.type === 'open') s.sessions++;
    if (r.type === 'end') s.ended = String(r.reason);
    if (r.type === 'close') live.delete(`${r.device}#${r.session}`);
    if (r.type === 'dma') {
      const n = (r.data as Uint8Array).length;
      if (r.op === 'read') { s.dma.reads++; s.dma.readBytes += n; } else { s.dma.writes++; s.dma.writeBytes += n; }
    }
    if (!isMessage(r)) {
      if (!['open', 'close', 'dma', 'end'].includes(r.type)) s.notes.set(r.type, (s.notes.get(r.type) ?? 0) + 1);
      continue;
    }
    s.messages++;
    const name = commandName(r.header.command);
    const c = s.commands.get(name) ?? { fromClient: 0, fromServer: 0, replies: 0, errors: 0, latencyUs: [] };
    s.commands.set(name, c);
    // A reply answers the other side's request with the same msg id.
    const requester = isReply(r.header.flags) ? (r.from === 'client' ? 'server' : 'client') : r.from;
    const key = `${r.device}#${r.session}/${requester}/${r.header.msgId}`;
    if (!isReply(r.header.flags)) {
      if (r.from === 'client') c.fromClient++;
      else c.fromServer++;
      pending.set(key, r);
      continue;
    }
    c.replies++;
    if (hasError(r.header.flags)) c.errors++;
    const req = pending.get(key);
    pending.delete(key);
    if (req && req.header.command === r.header.command) {
      c.latencyUs.push((r.t - req.t) / 1000);
      if (!hasError(r.header.flags)) mapChange(req, live, s, sample, tally, r.t);
    }
  }
  for (const c of s.commands.values()) c.latencyUs.sort((a, b) => a - b);
  return s;
}

/** A DMA_MAP or DMA_UNMAP that succeeded changes the live mappings. */
function mapChange(
  req: MessageRecord, live: Map<string, Map<bigint, bigint>>, s: TraceStats,
  sample: (t: number) => MapSample, tally: (b: MapSample) => void, t: number,
): void {
  const cmd = req.header.command;
  if (cmd !== Command.DMA_MAP && cmd !== Command.DMA_UNMAP) return;
  const f = decodeMessage(req).fields as { addr?: bigint; size?: bigint; all?: boolean };
  if (f.addr === undefined || f.size === undefined) return;
  const key = `${req.device}#${req.session}`;
  const m = live.get(key) ?? new Map<bigint, bigint>();
  live.set(key, m);
  const b = sample(t);
  if (cmd === Command.DMA_MAP) {
    m.set(f.addr, f.size);
    b.maps++;
  } else {
    for (const [addr] of m) if (f.all || (addr >= f.addr && addr < f.addr + f.size)) m.delete(addr);
    b.unmaps++;
  }
  tally(b);
}

/** The nearest-rank percentile of sorted values. */
function pct(sorted: readonly number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.max(0, Math.ceil((sorted.length * p) / 100) - 1)]!;
}

/** The report as text. */
export function formatStats(s: TraceStats): string {
  const out: string[] = [];
  out.push(`${s.records} records, ${s.messages} messages, ${s.sessions} session(s), ${s.duration.toFixed(3)} s`);
  out.push('');
  out.push(`${'command'.padEnd(24)}${'client'.padStart(8)}${'server'.padStart(8)}${'replies'.padStart(9)}${'errors'.padStart(8)}   latency us: median   p99     max`);
  for (const [name, c] of [...s.commands].sort((a, b) => a[0].localeCompare(b[0]))) {
    const l = c.latencyUs;
    const lat = l.length ? `${pct(l, 50).toFixed(1).padStart(19)}${pct(l, 99).toFixed(1).padStart(8)}${l[l.length - 1]!.toFixed(1).padStart(8)}` : '';
    out.push(`${name.padEnd(24)}${String(c.fromClient).padStart(8)}${String(c.fromServer).padStart(8)}${String(c.replies).padStart(9)}${String(c.errors).padStart(8)}${lat}`);
  }
  if (s.dma.reads + s.dma.writes > 0) {
    out.push('');
    out.push(`guest memory (--record-dma): ${s.dma.reads} reads (${s.dma.readBytes} bytes), ${s.dma.writes} writes (${s.dma.writeBytes} bytes)`);
  }
  if (s.maps.length) {
    out.push('');
    out.push('DMA mappings over time:   t (s)   maps  unmaps    live   mapped bytes');
    for (const m of s.maps) {
      out.push(`${''.padEnd(24)}${m.t.toFixed(0).padStart(8)}${String(m.maps).padStart(7)}${String(m.unmaps).padStart(8)}${String(m.live).padStart(8)}   0x${m.bytes.toString(16)}`);
    }
  }
  if (s.notes.size) {
    out.push('');
    for (const [type, n] of s.notes) out.push(`${type} events: ${n}`);
  }
  if (s.ended) out.push(`recording stopped on purpose: ${s.ended}`);
  return out.join('\n') + '\n';
}
