// The device SDK's schema checks: definitions, option values, defaults, and
// the README's device table generated from the built-in definitions.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  checkDefinition,
  DefinitionError,
  describeOption,
  OptionError,
  parseSize,
  validateOptions,
  type DeviceDefinition,
} from '../../devices/definition.js';
import { builtinDevice, deviceKinds } from '../../devices/index.js';
import { deviceFlagSpecs, deviceTable, optionsFromFlags } from '../../cli/device-flags.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

const tiny: DeviceDefinition = {
  kind: 'tiny',
  description: 'a test device',
  options: {
    count: { type: 'u32', help: 'how many', min: 1, max: 8, default: 2 },
    mask: { type: 'u32', help: 'a mask', max: 0xff, hex: true },
    bytes: { type: 'size', help: 'a size', min: 512, unit: 'bytes' },
    path: { type: 'string', help: 'a file', required: true },
    fast: { type: 'boolean', help: 'go fast', default: false },
  },
  create: () => { throw new Error('not called'); },
};

t.test('every built-in definition passes its own checks', async (t) => {
  for (const d of deviceKinds()) t.equal(checkDefinition(d, d.kind), d, d.kind);
  t.same(deviceKinds().map((d) => d.kind), ['gpio', 'rng', 'blk', 'nvme']);
});

t.test('checkDefinition lists every problem and names the source', async (t) => {
  t.throws(() => checkDefinition(undefined, 'mod.js'), { message: /^mod\.js: the definition must be an object, got undefined/ });
  const err = t.throws(() => checkDefinition({ kind: 'Bad Kind', options: { x: { type: 'int' }, y: { type: 'string', help: 'y', min: 1 } } }, 'mod.js')) as Error;
  t.ok(err instanceof DefinitionError);
  t.match(err.message, /^mod\.js: not a valid device definition: /);
  t.match(err.message, /'kind' must be a short lower-case name/);
  t.match(err.message, /'description' must be a non-empty string/);
  t.match(err.message, /'create' must be a function/);
  t.match(err.message, /option 'x': 'type' must be one of u32, size, string, boolean \(got "int"\)/);
  t.match(err.message, /option 'x': 'help' must be a non-empty string/);
  t.match(err.message, /option 'y': 'min' only applies to u32 and size options/);
  t.throws(() => checkDefinition({ ...tiny, options: undefined }, 'm'), /'options' must be an object/);
  t.throws(() => checkDefinition({ ...tiny, options: { a: { type: 'u32', help: 'a', default: 'lots' } } }, 'm'), /option 'a': bad default: .*not an unsigned number/);
  t.throws(() => checkDefinition({ ...tiny, options: { a: { type: 'u32', help: 'a', min: 9, max: 1 } } }, 'm'), /'min' is above 'max'/);
  t.throws(
    () => checkDefinition({ ...tiny, options: { queueSize: { type: 'u32', help: 'a' }, other: { type: 'u32', help: 'b', flag: 'queue-size' } } }, 'm'),
    /options 'queueSize' and 'other' both use the flag --queue-size/,
  );
});

t.test('validateOptions parses, bounds, defaults and refuses unknown names', async (t) => {
  const what = (k: string) => `cfg '${k}'`;
  t.same(validateOptions(tiny, { path: 'f', mask: '0xF0', bytes: '1K' }, what), { path: 'f', mask: 0xf0, bytes: 1024, count: 2, fast: false });
  t.same(validateOptions(tiny, { path: 'f', count: '8', fast: 'true' }, what), { path: 'f', count: 8, fast: true });
  const unknown = t.throws(() => validateOptions(tiny, { path: 'f', colour: 'red' }, what)) as Error;
  t.ok(unknown instanceof OptionError);
  t.equal(unknown.message, "cfg 'colour': unknown option for a tiny device (known: count, mask, bytes, path, fast)");
  t.throws(() => validateOptions({ ...tiny, options: {} }, { x: 1 }, what), /it has no options/);
  t.throws(() => validateOptions(tiny, {}, what), /^cfg 'path' is required for a tiny device$/);
  t.throws(() => validateOptions(tiny, { path: 'f', count: 9 }, what), /^cfg 'count' must be at most 8$/);
  t.throws(() => validateOptions(tiny, { path: 'f', count: 0 }, what), /^cfg 'count' must be at least 1$/);
  t.throws(() => validateOptions(tiny, { path: 'f', mask: 0x100 }, what), /must be at most 0xff$/);
  t.throws(() => validateOptions(tiny, { path: 'f', count: -1 }, what), /unsigned whole number/);
  t.throws(() => validateOptions(tiny, { path: 'f', count: 1.5 }, what), /unsigned whole number/);
  t.throws(() => validateOptions(tiny, { path: 'f', count: '2x' }, what), /not an unsigned number/);
  t.throws(() => validateOptions(tiny, { path: 'f', bytes: 100 }, what), /at least 512/);
  t.throws(() => validateOptions(tiny, { path: '' }, what), /non-empty string/);
  const sized: DeviceDefinition = { ...tiny, options: { ...tiny.options, bytes: { type: 'size', help: 'a size', default: '1M' } } };
  t.equal(validateOptions(sized, { path: 'f' }, what)['bytes'], 1 << 20, "a size default written '1M' reaches create as bytes");
  t.throws(() => validateOptions(tiny, { path: 'f', fast: 1 }, what), /true or false/);
  t.throws(() => validateOptions(tiny, { path: 'f', count: 2 ** 32 }, what), /at most/, 'u32 without max is still 32-bit');
  t.throws(() => validateOptions(tiny, { path: 'f', toString: 1 }, what), /unknown option/, 'no prototype keys');
});

t.test('parseSize', async (t) => {
  t.equal(parseSize('4096', 's'), 4096);
  t.equal(parseSize('0x1000', 's'), 4096);
  t.equal(parseSize('64M', 's'), 64 * 2 ** 20);
  t.equal(parseSize('2GiB', 's'), 2 * 2 ** 30);
  t.throws(() => parseSize('1.5G', 's'), /not a size/);
  t.throws(() => parseSize('99999999T', 's'), /too large/);
});

t.test('CLI flags come from the schema', async (t) => {
  const gpio = builtinDevice('gpio');
  t.same(Object.keys(deviceFlagSpecs(gpio)), ['input'], 'an explicit flag name');
  t.same(Object.keys(deviceFlagSpecs(builtinDevice('blk'))), ['disk', 'size', 'readonly', 'queues', 'queue-size', 'serial'], 'kebab-case by default');
  t.same(optionsFromFlags(gpio, { input: '0xBEEF', socket: 's' }, 'a gpio device'), { inputs: 0xbeef });
  t.throws(() => optionsFromFlags(gpio, { input: '0x10000' }, 'a gpio device'), /^--input must be at most 0xffff$/);
  t.equal(describeOption(tiny.options.count!), 'how many (1..8, default 2)');
  t.equal(describeOption(tiny.options.path!), 'a file (required)');
});

t.test("the README's device table is the one the definitions generate", async (t) => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const m = /<!-- device table: generated by `vfio-user-ts devices --markdown` -->\n([\s\S]*?)<!-- end of device table -->/.exec(readme);
  t.ok(m, 'README has the marked table');
  t.equal(m?.[1], deviceTable(deviceKinds()), 'regenerate it with `npx vfio-user-ts devices --markdown`');
});
