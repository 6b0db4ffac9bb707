// `vfio-user-ts replay FILE --socket PATH [--device NAME] [--ignore FIELD ...]`:
// plays a recording's client side against a server and compares what it
// sends with the recording. Exit 0 only when everything matched.
import { helpFor, parseArgs, UsageError, type FlagSpec } from './cli-args.js';
import { readTrace } from '../trace/reader.js';
import { formatReplay, replay, ReplayError } from '../replay/replay.js';
import { STDIO, type CommandOutput } from './iommu-cli.js';

const REPLAY_FLAGS: Record<string, FlagSpec> = {
  socket: { type: 'string', help: 'the server to replay against (its UNIX socket)', placeholder: 'path' },
  device: { type: 'string', help: 'the recorded device to replay (when the recording has several)', placeholder: 'name' },
  ignore: { type: 'string', repeat: true, help: 'leave fields out of the comparison: data, REGION_READ.data, fds.0.size (repeatable, or comma-separated)', placeholder: 'field' },
  timeout: { type: 'u32', help: 'ms a recorded server message may take to come (default 10000)' },
  help: { type: 'boolean', help: 'show help' },
};

function replayHelp(): string {
  return `usage: vfio-user-ts replay FILE --socket PATH [options]

Plays the client side of a recording (serve --record FILE) against the
server on PATH: fresh memfds of the recorded sizes stand in for guest
memory, the server's DMA_READ/DMA_WRITE are answered from the recording,
and every reply and server request is compared with the recorded one.
Reports the first divergence with a field diff; exits 0 only when all matched.

options:
${helpFor(REPLAY_FLAGS)}
`;
}

/** Runs `replay ...`; returns the exit code (0: no divergence, 1: a divergence). */
export async function replayCommand(argv: readonly string[], io: CommandOutput = STDIO): Promise<number> {
  const { flags, positionals } = parseArgs(argv, REPLAY_FLAGS);
  if (flags.help) {
    io.out(replayHelp());
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError('replay needs one recording FILE');
  if (flags.socket === undefined) throw new UsageError('replay needs --socket PATH');
  if (flags.timeout === 0) throw new UsageError('--timeout must be at least 1 ms');
  const trace = readTrace(positionals[0]!);
  if (trace.truncated) io.err(`note: ${positionals[0]} ends inside a record at byte ${trace.readableBytes}; replaying the ${trace.records.length} whole records before it\n`);
  try {
    const r = await replay(trace, {
      socket: flags.socket as string,
      device: flags.device as string | undefined,
      ignore: ((flags.ignore as string[] | undefined) ?? []).flatMap((f) => f.split(',')).filter((f) => f !== ''),
      timeoutMs: flags.timeout as number | undefined,
    });
    io.out(formatReplay(r, trace));
    return r.divergence ? 1 : 0;
  } catch (err) {
    if (err instanceof ReplayError) throw new UsageError(err.message);
    throw err;
  }
}
