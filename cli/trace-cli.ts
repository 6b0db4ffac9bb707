// `vfio-user-ts trace show FILE [filters]` and `trace stats FILE`: a recording
// made with `serve --record FILE`, as a transcript or as figures.
import { helpFor, parseArgs, UsageError, type FlagSpec } from './cli-args.js';
import { readTrace, type Trace } from '../trace/reader.js';
import { showLines, type ShowFilter } from '../trace/show.js';
import { formatStats, traceStats } from '../trace/stats.js';
import { STDIO, type CommandOutput } from './iommu-cli.js';

const SHOW_FLAGS: Record<string, FlagSpec> = {
  command: { type: 'string', repeat: true, help: 'only this command (REGION_READ, DMA_MAP, ...; repeatable)', placeholder: 'name' },
  region: { type: 'u32', help: 'only accesses to (and info of) this region index' },
  device: { type: 'string', help: 'only this device', placeholder: 'name' },
  session: { type: 'u32', help: 'only this client connection (1, 2, ...)' },
  from: { type: 'string', help: 'only records at or after this many seconds', placeholder: 's' },
  to: { type: 'string', help: 'only records at or before this many seconds', placeholder: 's' },
  bytes: { type: 'u32', help: 'data bytes shown before cutting (default 16)' },
  color: { type: 'boolean', help: 'errors in red (default: when stdout is a terminal)' },
  help: { type: 'boolean', help: 'show help' },
};

const STATS_FLAGS: Record<string, FlagSpec> = {
  interval: { type: 'string', help: 'step of the DMA mapping timeline in seconds (default 1)', placeholder: 's' },
  help: { type: 'boolean', help: 'show help' },
};

function traceHelp(): string {
  return `usage: vfio-user-ts trace show FILE [options]   one line per message, decoded; errors marked
       vfio-user-ts trace stats FILE [options]  counts and latency per command, DMA mappings over time

show options:
${helpFor(SHOW_FLAGS)}

stats options:
${helpFor(STATS_FLAGS)}
`;
}

/** Runs `trace <show|stats> ...`; returns the exit code (a bad file throws TraceError). */
export async function traceCommand(argv: readonly string[], io: CommandOutput = STDIO): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === 'help' || sub === '--help') {
    io.out(traceHelp());
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'show' && sub !== 'stats') throw new UsageError(`unknown trace command '${sub}' (show or stats)`);
  const { flags, positionals } = parseArgs(rest, sub === 'show' ? SHOW_FLAGS : STATS_FLAGS);
  if (flags.help) {
    io.out(traceHelp());
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(`trace ${sub} needs one recording FILE`);
  const trace = readTrace(positionals[0]!);
  noteTruncation(trace, positionals[0]!, io);
  if (sub === 'stats') {
    const interval = flags.interval === undefined ? 1 : seconds(flags.interval as string, '--interval');
    if (interval <= 0) throw new UsageError('--interval must be above 0');
    io.out(formatStats(traceStats(trace.records, interval)));
    return 0;
  }
  const filter: ShowFilter = {};
  if (flags.command) filter.commands = (flags.command as string[]).map(String);
  if (flags.region !== undefined) filter.region = flags.region as number;
  if (flags.device !== undefined) filter.device = flags.device as string;
  if (flags.session !== undefined) filter.session = flags.session as number;
  if (flags.from !== undefined) filter.from = seconds(flags.from as string, '--from');
  if (flags.to !== undefined) filter.to = seconds(flags.to as string, '--to');
  const color = flags.color === undefined ? process.stdout.isTTY === true : flags.color === true;
  for (const line of showLines(trace.records, filter, { color, maxBytes: flags.bytes as number | undefined })) io.out(line + '\n');
  return 0;
}

function noteTruncation(trace: Trace, file: string, io: CommandOutput): void {
  if (trace.truncated) {
    io.err(`note: ${file} ends inside a record at byte ${trace.readableBytes} (cut short); the ${trace.records.length} whole records before it follow\n`);
  }
}

function seconds(raw: string, what: string): number {
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n < 0) throw new UsageError(`${what} must be seconds (a number >= 0), got '${raw}'`);
  return n;
}
