// `vfio-user-ts iommu <op> --control PATH [key=value ...]`: one operation over
// the control socket; prints the response as JSON. An error response also
// goes to stderr (message, then its data) and the exit code is 1.
//   npx vfio-user-ts iommu ioas.alloc --control /tmp/ctl.sock
//   npx vfio-user-ts iommu ioas.copy --control /tmp/ctl.sock srcIoasId=1 srcIova=0x100000 length=0x10000 dstIoasId=3 dstIova=0x40000000
// Values: true/false, numbers (decimal or 0x hex; 64-bit ones stay exact),
// JSON arrays/objects, hex bytes as hex:0011ff, anything else a string.
import { parseArgs, UsageError } from './cli-args.js';
import { ControlClient } from '../server/control-client.js';

/** Where the command writes (the process's stdout / stderr unless a test says otherwise). */
export interface CommandOutput {
  out: (text: string) => void;
  err: (text: string) => void;
}

/** The process's stdout and stderr. */
export const STDIO: CommandOutput = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

export async function iommuCommand(argv: readonly string[], io: CommandOutput = STDIO): Promise<number> {
  const { flags, positionals } = parseArgs(argv, {
    control: { type: 'string', help: 'the server\'s control socket' },
    device: { type: 'string', help: 'device (IOMMU context) to act on' },
  });
  const [op, ...pairs] = positionals;
  if (!op) throw new UsageError('iommu needs an operation, e.g. ioas.alloc (see README)');
  if (flags.control === undefined) throw new UsageError('iommu needs --control PATH');
  const args: Record<string, unknown> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new UsageError(`argument '${p}' is not key=value`);
    args[p.slice(0, eq)] = parseValue(p.slice(eq + 1));
  }
  if (flags.device !== undefined) args.device = flags.device;
  const client = await ControlClient.connect(flags.control as string);
  try {
    const r = await client.request(op, args);
    io.out(toJson(r) + '\n');
    if (!('errno' in r)) return 0;
    io.err(`iommu ${op}: ${r.message} (errno ${r.errno})\n`);
    if (r.data) io.err(`  data: ${toJson(r.data)}\n`);
    return 1;
  } finally {
    client.close();
  }
}

export function parseValue(v: string): unknown {
  if (v === 'true') return true;
  if (v === 'false') return false;
  if (/^(0x[0-9a-f]+|[0-9]+)$/i.test(v)) {
    const n = BigInt(v);
    return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
  }
  if (v.startsWith('hex:')) return Buffer.from(v.slice(4), 'hex');
  if (v.startsWith('[') || v.startsWith('{')) {
    try { return JSON.parse(v); } catch { throw new UsageError(`'${v}' is not valid JSON`); }
  }
  return v;
}

/** JSON with bigints as 0x strings and bytes as hex strings. */
export function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => {
    if (typeof x === 'bigint') return `0x${x.toString(16)}`;
    if (x && typeof x === 'object' && x.type === 'Buffer' && Array.isArray(x.data)) return Buffer.from(x.data).toString('hex');
    if (x instanceof Uint8Array) return Buffer.from(x).toString('hex');
    return x;
  });
}
