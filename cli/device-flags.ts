// A device kind's command-line flags, derived from its definition's options
// schema: `serve gpio --input 0xBEEF` → { inputs: 0xbeef }, `serve blk --disk
// d.img --size 64M --queues 2` → { disk: 'd.img', size: 67108864, queues: 2 }.
// Values are parsed by the same schema checks as a config file's.
import { describeOption, flagName, validateOptions, type DeviceDefinition } from '../devices/definition.js';
import type { FlagSpec } from './cli-args.js';

const PLACEHOLDER = { u32: 'n', size: 'size', string: 'value' } as const;

/** The flags of a kind, for parseArgs and help. */
export function deviceFlagSpecs(definition: DeviceDefinition): Record<string, FlagSpec> {
  const out: Record<string, FlagSpec> = {};
  for (const [name, o] of Object.entries(definition.options)) {
    out[flagName(name, o)] = o.type === 'boolean'
      ? { type: 'boolean', help: describeOption(o) }
      : { type: 'string', help: describeOption(o), placeholder: PLACEHOLDER[o.type], ...(o.repeatable ? { repeat: true } : {}) };
  }
  return out;
}

/** Parsed flags → the kind's options (checked against its schema, defaults applied). */
export function optionsFromFlags(definition: DeviceDefinition, flags: Record<string, unknown>, device: string): Record<string, unknown> {
  const given: Record<string, unknown> = {};
  const flagOf = new Map<string, string>();
  for (const [name, o] of Object.entries(definition.options)) {
    const flag = flagName(name, o);
    flagOf.set(name, flag);
    if (flags[flag] !== undefined) given[name] = flags[flag];
  }
  return validateOptions(definition, given, (name) => `--${flagOf.get(name) ?? name}`, device);
}

/** The README's device table (Markdown), one row per kind with its flags. */
export function deviceTable(definitions: readonly DeviceDefinition[]): string {
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  const rows = definitions.map((d) => {
    const flags = Object.entries(deviceFlagSpecs(d)).map(([f, s]) => `\`--${f}\`: ${cell(s.help)}`);
    return `| \`${d.kind}\` | ${cell(d.description)} | ${d.guestDriver ? `\`${d.guestDriver}\`` : ''} | ${flags.join('<br>')} |`;
  });
  return ['| kind | what | guest driver | options |', '|---|---|---|---|', ...rows].join('\n') + '\n';
}
