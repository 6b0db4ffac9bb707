// `trace show`: one line per record, messages decoded, errors marked, with
// filters by command, region, device, session and time.
import { decodeMessage, showValue, type Decoded } from './decode.js';
import { isMessage, type MessageRecord, type TraceRecord } from './format.js';

/** Which records to show (every given condition must hold). */
export interface ShowFilter {
  /** Command names (REGION_READ, or without underscores' case: region_read). */
  commands?: readonly string[];
  /** A region index: region accesses and region info of that region. */
  region?: number;
  device?: string;
  session?: number;
  /** Seconds since the recording started: show records at or after. */
  from?: number;
  /** Seconds since the recording started: show records at or before. */
  to?: number;
}

/** How lines look. */
export interface ShowStyle {
  /** Mark errors in red (ANSI) as well as with "ERROR". */
  color?: boolean;
  /** Bytes of data shown before cutting (default 16). */
  maxBytes?: number;
}

const RED = '\x1b[31;1m';
const RESET = '\x1b[0m';

/** The lines for the records that pass the filter. */
export function* showLines(records: readonly TraceRecord[], filter: ShowFilter = {}, style: ShowStyle = {}): Generator<string> {
  const commands = filter.commands?.map((c) => c.toUpperCase());
  // A reply is about the regions its request was about (an error reply has no fields of its own).
  const asked = new Map<string, number[]>();
  for (const r of records) {
    if (filter.device !== undefined && r.device !== filter.device) continue;
    if (filter.session !== undefined && r.session !== filter.session) continue;
    if (filter.from !== undefined && r.t < filter.from * 1e9) continue;
    if (filter.to !== undefined && r.t > filter.to * 1e9) continue;
    if (!isMessage(r)) {
      if (commands !== undefined || filter.region !== undefined) continue;
      yield `${stamp(r)} ${otherLine(r, style)}`;
      continue;
    }
    const d = decodeMessage(r);
    if (commands !== undefined && !commands.includes(d.command)) continue;
    if (filter.region !== undefined) {
      const requester = d.reply ? (r.from === 'client' ? 'server' : 'client') : r.from;
      const key = `${r.device}#${r.session}/${requester}/${r.header.msgId}/${r.header.command}`;
      let regions = regionsOf(d);
      if (!d.reply) asked.set(key, regions);
      else if (regions.length === 0) regions = asked.get(key) ?? [];
      if (!regions.includes(filter.region)) continue;
    }
    yield `${stamp(r)} ${messageLine(r, d, style)}`;
  }
}

function stamp(r: TraceRecord): string {
  const who = r.device === undefined ? '' : ` ${r.device}${r.session === undefined ? '' : `#${r.session}`}`;
  return `${(r.t / 1e9).toFixed(6).padStart(12)}${who}`;
}

/** One message: direction, command, msg id, decoded fields; errors and refused payloads marked. */
export function messageLine(m: MessageRecord, d: Decoded, style: ShowStyle = {}): string {
  const arrow = m.from === 'client' ? 'C->S' : 'S->C';
  const head = `${arrow} ${d.command}${d.reply ? ' reply' : ''} #${m.header.msgId}`;
  const fields = Object.entries(d.fields)
    .map(([k, v]) => `${k}=${showValue(v, style.maxBytes)}`)
    .join(' ');
  let bad = '';
  if (d.error !== undefined) bad = ` ERROR ${d.error}`;
  if (d.problem !== undefined) bad += ` MALFORMED: ${d.problem}`;
  if (bad && style.color) bad = `${RED}${bad}${RESET}`;
  return `${head}${bad}${fields ? ' ' + fields : ''}`;
}

function otherLine(r: TraceRecord, style: ShowStyle): string {
  const { t: _t, device: _d, session: _s, type, ...rest } = r as unknown as Record<string, unknown>;
  const fields = Object.entries(rest)
    .map(([k, v]) => `${k}=${k === 'iova' && typeof v === 'number' ? `0x${v.toString(16)}` : showValue(v, style.maxBytes)}`)
    .join(' ');
  const line = `-- ${String(type)}${fields ? ' ' + fields : ''}`;
  // Injected faults are errors on purpose: marked like errors.
  return type === 'fault' && style.color ? `${RED}${line}${RESET}` : line;
}

/** The regions a message is about: region accesses, region info and I/O fds. */
function regionsOf(d: Decoded): number[] {
  const f = d.fields;
  if (typeof f.region === 'number') return [f.region];
  if (d.command === 'DEVICE_GET_REGION_INFO' || d.command === 'DEVICE_GET_REGION_IO_FDS') {
    return typeof f.index === 'number' ? [f.index] : [];
  }
  if (Array.isArray(f.writes)) return (f.writes as Array<{ region: number }>).map((w) => w.region);
  return [];
}
