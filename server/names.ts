import { Command } from '../protocol/constants.js';

const byNumber = new Map<number, string>(Object.entries(Command).map(([k, v]) => [v as number, k]));

/** "REGION_READ" for 9; "command 99" for an unknown number. */
export function commandName(command: number): string {
  return byNumber.get(command) ?? `command ${command}`;
}
