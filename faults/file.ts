// The --faults file: JSON `{ "rules": [rule, ...] }` (rule format in
// README.md, checked by rule.ts). Every rule is checked when the file is
// read, so a typo stops the server at start-up with the rule and field named.
import fs from 'node:fs';
import { MAX_RULES, parseRule } from './rule.js';

/** A faults file or list that cannot be used; the message says where and why. */
export class FaultsFileError extends Error {}

/**
 * Checks a list of rules (from a faults file or a config file's `faults`):
 * each is a valid rule, ids are unique, and named devices exist. Returns the
 * rules as given, for FaultInjector.add.
 */
export function checkFaultRules(raw: unknown, source: string, devices: readonly string[]): unknown[] {
  if (!Array.isArray(raw)) throw new FaultsFileError(`${source}: 'rules' must be an array of rules`);
  if (raw.length > MAX_RULES) throw new FaultsFileError(`${source}: ${raw.length} rules, at most ${MAX_RULES}`);
  const ids = new Set<string>();
  raw.forEach((r, i) => {
    let rule;
    try {
      rule = parseRule(r, `${source}: rules[${i}]`, `f${i + 1}`);
    } catch (e) {
      throw new FaultsFileError((e as Error).message.replace(/^EINVAL: /, ''));
    }
    if (ids.has(rule.id)) throw new FaultsFileError(`${source}: rules[${i}]: id '${rule.id}' is used twice`);
    ids.add(rule.id);
    if (rule.device !== undefined && !devices.includes(rule.device)) {
      throw new FaultsFileError(`${source}: rules[${i}]: no device '${rule.device}' (${devices.join(', ')})`);
    }
  });
  return raw;
}

/** Reads and checks a faults file. */
export function loadFaultsFile(file: string, devices: readonly string[]): unknown[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new FaultsFileError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new FaultsFileError(`${file}: not valid JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new FaultsFileError(`${file}: expected { "rules": [...] }`);
  for (const k of Object.keys(raw)) if (k !== 'rules') throw new FaultsFileError(`${file}: unknown key '${k}' (expected { "rules": [...] })`);
  return checkFaultRules((raw as { rules?: unknown }).rules, file, devices);
}
