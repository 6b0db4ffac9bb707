// `npm run fuzz -- --kind gpio|rng|blk --count N --seed S [--verbose] [--json]`:
// one seeded fuzz run; prints the rate, counts per command and every check,
// and exits 1 if any check failed (2 on a usage error).
import { parseArgs } from 'node:util';
import { FUZZ_KINDS, runFuzz, type FuzzKind } from './campaign.js';
import { formatReport } from './report.js';

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        kind: { type: 'string' }, count: { type: 'string', default: '50000' }, seed: { type: 'string', default: '1' },
        verbose: { type: 'boolean', default: false }, json: { type: 'boolean', default: false },
      },
    }));
  } catch (err) {
    process.stderr.write(`fuzz: ${(err as Error).message}\n`);
    return 2;
  }
  const kind = values.kind as FuzzKind;
  const count = Number(values.count);
  const seed = Number(values.seed);
  if (!FUZZ_KINDS.includes(kind) || !Number.isSafeInteger(count) || count < 1 || !Number.isSafeInteger(seed)) {
    process.stderr.write(`usage: npm run fuzz -- --kind ${FUZZ_KINDS.join('|')} --count N --seed S [--verbose] [--json]\n`);
    return 2;
  }
  const r = await runFuzz({
    kind, count, seed,
    log: values.verbose ? (l) => process.stderr.write(`${l}\n`) : undefined,
  });
  process.stdout.write(`${values.json ? JSON.stringify(r, null, 2) : formatReport(r)}\n`);
  return r.failures.length ? 1 : 0;
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`fuzz: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
