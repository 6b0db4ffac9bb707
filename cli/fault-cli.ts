// `vfio-user-ts fault add|list|clear|release --control PATH ...`: the fault
// operations over a server's control socket; prints each response as JSON.
// An error response also goes to stderr and the exit code is 1.
//   vfio-user-ts fault add --control /tmp/ctl.sock '{"match":{"command":"REGION_READ"},"action":{"type":"error","errno":"EIO"}}'
//   vfio-user-ts fault list --control /tmp/ctl.sock
//   vfio-user-ts fault clear --control /tmp/ctl.sock --id f1
import fs from 'node:fs';
import { parseArgs, UsageError } from './cli-args.js';
import { ControlClient } from '../server/control-client.js';
import { toJson, type CommandOutput } from './iommu-cli.js';

const STDIO: CommandOutput = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

const USAGE = 'fault add|list|clear|release --control PATH (add: a rule as JSON, or --file F with { "rules": [...] })';

export async function faultCommand(argv: readonly string[], io: CommandOutput = STDIO): Promise<number> {
  const { flags, positionals } = parseArgs(argv, {
    control: { type: 'string', help: "the server's control socket" },
    device: { type: 'string', help: 'list: only the rules of this device' },
    id: { type: 'string', help: 'clear/release: only this rule' },
    file: { type: 'string', help: 'add: every rule of a faults file' },
  });
  const [sub, ...rest] = positionals;
  if (flags.control === undefined) throw new UsageError(`fault needs --control PATH (${USAGE})`);
  const requests: Array<[string, Record<string, unknown>]> = [];
  switch (sub) {
    case 'add': {
      if ((rest.length === 1) === (flags.file !== undefined)) throw new UsageError(`fault add takes one rule as JSON or --file F (${USAGE})`);
      for (const rule of flags.file !== undefined ? rulesOfFile(flags.file as string) : [parseJson(rest[0]!)]) requests.push(['fault.add', { rule }]);
      break;
    }
    case 'list':
      requests.push(['fault.list', flags.device === undefined ? {} : { device: flags.device }]);
      break;
    case 'clear':
    case 'release':
      requests.push([`fault.${sub}`, flags.id === undefined ? {} : { id: flags.id }]);
      break;
    default:
      throw new UsageError(`fault needs add, list, clear or release (${USAGE})`);
  }
  if (sub !== 'add' && rest.length) throw new UsageError(`unexpected argument '${rest[0]}'`);
  const client = await ControlClient.connect(flags.control as string);
  try {
    for (const [op, args] of requests) {
      const r = await client.request(op, args);
      io.out(toJson(r) + '\n');
      if ('errno' in r) {
        io.err(`${op}: ${r.message} (errno ${r.errno})\n`);
        return 1;
      }
    }
    return 0;
  } finally {
    client.close();
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UsageError(`the rule is not valid JSON: ${(e as Error).message}`);
  }
}

/** The rules of a faults file, as given (the server checks them). */
function rulesOfFile(file: string): unknown[] {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
  }
  const rules = (raw as { rules?: unknown } | null)?.rules;
  if (!Array.isArray(rules)) throw new UsageError(`${file}: expected { "rules": [...] }`);
  return rules;
}
