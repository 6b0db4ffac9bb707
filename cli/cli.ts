// `vfio-user-ts <command>`: serve, vm, demo, iommu, fault, trace, replay, provision, devices, help.
// Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
import path from 'node:path';
import { helpFor, parseArgs, UnknownFlagError, UsageError, type FlagSpec, type FlagValues } from './cli-args.js';
import { checkPollUs, ConfigError, faultRules, loadConfigFile, validateConfig, type ServerConfig } from './config.js';
import { deviceFlagSpecs, deviceTable, optionsFromFlags } from './device-flags.js';
import { setLogLevel, rootLog } from '../server/log.js';
import { startServer } from '../server/runtime.js';
import { DEFAULT_POLL_US } from '../server/adaptive-poll.js';
import { SocketInUseError } from '../server/listener.js';
import { deviceKinds } from '../devices/index.js';
import { DefinitionError, OptionError, type DeviceDefinition } from '../devices/definition.js';
import { kindLabel, resolveDeviceKind } from '../devices/load.js';
import { RECORD_FLAGS, recordFromFlags, RecordOptionError } from './record-options.js';
import { TraceError } from '../trace/reader.js';

const COMMON: Record<string, FlagSpec> = {
  'log-level': { type: 'string', help: 'silent, error (default), warn, info, debug, trace' },
  help: { type: 'boolean', help: 'show help' },
};

/** The flags of `serve` (and of `vm`, which takes them too). */
export const SERVE_FLAGS: Record<string, FlagSpec> = {
  ...COMMON,
  socket: { type: 'string', help: 'UNIX socket path QEMU connects to' },
  name: { type: 'string', help: 'device name (default: <kind>0)' },
  config: { type: 'string', help: 'JSON file describing several devices' },
  control: { type: 'string', help: 'control socket for the IOMMU API and fault operations' },
  faults: { type: 'string', help: 'JSON file of fault rules in force from the start', placeholder: 'FILE' },
  deterministic: { type: 'u32', help: 'deterministic mode: seeded random values (virtio-rng), completions in request order; same seed and requests give the same replies', placeholder: 'SEED' },
    'poll-us': { type: 'u32', help: `cap of the adaptive socket poll window in µs (default ${DEFAULT_POLL_US}; 0 turns off all polling, virtio ring watching included)` },
  'no-native-reads': { type: 'boolean', help: 'answer every message in TypeScript (no native answers to plain register reads, such as config space)' },
  ...RECORD_FLAGS,
};

function usage(): string {
  return `usage: vfio-user-ts <command> [options]

commands:
  serve <kind> --socket PATH [device options]   serve one device (<kind>: a built-in kind or ./my-device.js)
  serve <kind> --help                           the options of one kind
  serve --config devices.json                   serve the devices in a file
  vm <kind> [device options] | vm --config F     boot the guest against devices, its shell on this terminal
  vm ... --print-qemu-args                      print the QEMU command line for them instead
  demo                                          provision, serve a GPIO device, boot a guest, show what it saw
  iommu <op> --control PATH [key=value ...]     one IOMMU operation over a server's control socket
  fault add|list|clear|release --control PATH   fault rules of a running server (add: a rule as JSON or --file F)
  trace show FILE [filters]                     a recording (serve --record FILE), one line per message
  trace stats FILE                              counts and latency per command, DMA mappings over time
  replay FILE --socket PATH [--ignore FIELD]    play a recording's client side against a server, compare
  provision [--json]                            fetch and build QEMU + guest into the cache
  devices [--markdown]                          list the built-in device kinds (--markdown: as the README's table)
  help                                          this text

serve options:
${helpFor(SERVE_FLAGS)}

device kinds:
${deviceKinds().map((d) => kindHelp(d)).join('\n')}
`;
}

/** A kind's description and options, for help. */
export function kindHelp(d: DeviceDefinition, label = d.kind): string {
  const flags = deviceFlagSpecs(d);
  return `  ${label.padEnd(10)} ${d.description}\n${Object.keys(flags).length ? helpFor(flags).replace(/^/gm, '  ') : '    (no options)'}`;
}

/** Runs one command line (without node and the script) and returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'serve':
        return await serve(rest);
      case 'vm': {
        const { vm } = await import('./vm.js');
        return await vm(rest);
      }
      case 'demo': {
        const { demo } = await import('./demo.js');
        return await demo(rest);
      }
      case 'iommu': {
        const { iommuCommand } = await import('./iommu-cli.js');
        return await iommuCommand(rest);
      }
      case 'fault': {
        const { faultCommand } = await import('./fault-cli.js');
        return await faultCommand(rest);
      }
      case 'trace': {
        const { traceCommand } = await import('./trace-cli.js');
        return await traceCommand(rest);
      }
      case 'replay': {
        const { replayCommand } = await import('./replay-cli.js');
        return await replayCommand(rest);
      }
      case 'provision':
        return await provisionCommand(rest);
      case 'devices': {
        const { flags, positionals } = parseArgs(rest, { markdown: { type: 'boolean', help: 'the README table' } });
        if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
        if (flags.markdown) process.stdout.write(deviceTable(deviceKinds()));
        else for (const k of deviceKinds()) process.stdout.write(`${k.kind}\t${k.description}\n`);
        return 0;
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(usage());
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command '${command}'`);
    }
  } catch (err) {
    if (
      err instanceof UsageError || err instanceof ConfigError || err instanceof DefinitionError || err instanceof OptionError ||
      err instanceof RecordOptionError
    ) {
      process.stderr.write(`vfio-user-ts: ${err.message}\n(see 'vfio-user-ts help')\n`);
      return 2;
    }
    if (err instanceof SocketInUseError || err instanceof TraceError) {
      process.stderr.write(`vfio-user-ts: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`vfio-user-ts: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    return 1;
  }
}

/** The kind named first on a `serve` command line, if any. */
function serveKind(argv: readonly string[]): string | undefined {
  return argv[0] && !argv[0].startsWith('--') ? argv[0] : undefined;
}

/** How a command that takes `serve`'s flags (`vm`) reads them. */
export interface ServeArgsOptions {
  /** The command in messages. */
  command: string;
  /** The command's own flags, on top of serve's. */
  flags: Record<string, FlagSpec>;
  /** The socket of a device given by kind without --socket (without this, --socket is required). */
  defaultSocket?: (name: string) => string;
}

/** Parse `serve` arguments into a validated ServerConfig (loading a device module if the kind is a path). */
export async function serveConfig(argv: readonly string[]): Promise<ServerConfig> {
  return (await parseServeArgs(argv, { command: 'serve', flags: {} })).cfg;
}

/** Parse `serve`'s flags plus a command's own: the validated ServerConfig and all parsed flags. */
export async function parseServeArgs(argv: readonly string[], o: ServeArgsOptions): Promise<{ cfg: ServerConfig; flags: FlagValues }> {
  const kind = serveKind(argv);
  const definition = kind === undefined ? undefined : await resolveDeviceKind(kind);
  const commandFlags = { ...SERVE_FLAGS, ...o.flags };
  const spec = { ...commandFlags, ...(definition ? deviceFlagSpecs(definition) : {}) };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs(kind ? argv.slice(1) : argv, spec);
  } catch (err) {
    if (err instanceof UnknownFlagError) {
      const listed = `${o.command} options: ${Object.keys(commandFlags).map((f) => `--${f}`).join(', ')}`;
      if (!definition || !kind) throw new UsageError(`${err.message} (${listed})`);
      const known = Object.keys(deviceFlagSpecs(definition)).map((f) => `--${f}`);
      throw new UsageError(`${err.message} for ${kind} (its options: ${known.length ? known.join(', ') : 'none'}; ${listed})`);
    }
    throw err;
  }
  const { flags, positionals } = parsed;
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  if (flags['log-level'] !== undefined) setLogLevel(flags['log-level'] as string);
  if (flags.config !== undefined) {
    if (kind || flags.socket !== undefined || flags.name !== undefined) {
      throw new UsageError('--config describes the devices: give no kind, --socket or --name with it');
    }
    const cfg = await loadConfigFile(flags.config as string);
    if (flags.control !== undefined) cfg.control = path.resolve(flags.control as string);
    if (flags.faults !== undefined) cfg.faults = faultRules(flags.faults, '--faults', process.cwd(), cfg.devices.map((d) => d.name));
    if (flags.deterministic !== undefined) cfg.deterministic = flags.deterministic as number;
    cfg.record = recordFromFlags(flags) ?? cfg.record;
    if (flags['poll-us'] !== undefined) cfg.pollUs = checkPollUs(flags['poll-us'], '--poll-us');
    if (flags['no-native-reads']) cfg.nativeReads = false;
    return { cfg, flags };
  }
  if (!kind || !definition) throw new UsageError(`${o.command} needs a device kind (see \`vfio-user-ts devices\`) or --config`);
  const name = (flags.name as string | undefined) ?? `${definition.kind}0`;
  const socket = (flags.socket as string | undefined) ?? o.defaultSocket?.(name);
  if (socket === undefined) throw new UsageError(`${o.command} needs --socket PATH`);
  const raw: Record<string, unknown> = {
    devices: [{ kind, socket, name, ...optionsFromFlags(definition, flags, kindLabel(kind, definition)) }],
  };
  if (flags.control !== undefined) raw.control = flags.control;
  if (flags['poll-us'] !== undefined) raw.pollUs = checkPollUs(flags['poll-us'], '--poll-us');
  if (flags['no-native-reads']) raw.nativeReads = false;
  if (flags.faults !== undefined) raw.faults = flags.faults;
  if (flags.deterministic !== undefined) raw.deterministic = flags.deterministic;
  const cfg = await validateConfig(raw, 'command line');
  const record = recordFromFlags(flags);
  if (record) cfg.record = record;
  return { cfg, flags };
}

async function serve(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help')) {
    const kind = serveKind(argv);
    process.stdout.write(kind === undefined ? usage() : serveHelp(kind, await resolveDeviceKind(kind)));
    return 0;
  }
  const cfg = await serveConfig(argv);
  const rt = await startServer(cfg);
  for (const d of cfg.devices) process.stderr.write(`vfio-user-ts: serving ${d.kind.kind} '${d.name}' on ${d.socket}\n`);
  return await new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      rootLog.info(`${signal}: shutting down`);
      rt.close().then(() => resolve(0), () => resolve(1));
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

function serveHelp(kind: string, definition: DeviceDefinition): string {
  return `usage: vfio-user-ts serve ${kind} --socket PATH [options]

serve options:
${helpFor(SERVE_FLAGS)}

device:
${kindHelp(definition, kind)}
`;
}

async function provisionCommand(argv: readonly string[]): Promise<number> {
  const { flags, positionals } = parseArgs(argv, { ...COMMON, json: { type: 'boolean', help: 'print JSON' } });
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const { provision } = await import('../qemu-configs/provision.js');
  const started = Date.now();
  const p = await provision({ log: (m) => process.stderr.write(`provision: ${m}\n`) });
  if (flags.json) process.stdout.write(JSON.stringify(p, null, 2) + '\n');
  else process.stdout.write(`qemu: ${p.qemuNote}\nkernel: ${p.kernelVersion}\ncache: ${p.cacheDir}\nready in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return 0;
}
