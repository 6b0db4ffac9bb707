// Leveled logging to stderr, quiet by default (only errors). One logger per
// component, e.g. log.child('gpio0').
import type { Logger } from '../devices/device.js';

export const LEVELS = ['silent', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LEVELS)[number];

let threshold = LEVELS.indexOf('error');
let sink: (line: string) => void = (line) => process.stderr.write(line + '\n');

export function setLogLevel(level: string): void {
  const i = LEVELS.indexOf(level as LogLevel);
  if (i < 0) throw new Error(`unknown log level '${level}' (one of ${LEVELS.join(', ')})`);
  threshold = i;
}

/** Tests capture log lines with this. Returns a function that restores stderr. */
export function setLogSink(fn: (line: string) => void): () => void {
  const prev = sink;
  sink = fn;
  return () => { sink = prev; };
}

/** Sets the level and keeps the last `max` log lines (a failure report prints them); `restore` puts the previous sink back. */
export function keepLogTail(level: string, max: number): { lines: string[]; restore: () => void } {
  const lines: string[] = [];
  setLogLevel(level);
  const restore = setLogSink((line) => {
    lines.push(line);
    if (lines.length > max) lines.shift();
  });
  return { lines, restore };
}

export function levelEnabled(level: LogLevel): boolean {
  return LEVELS.indexOf(level) <= threshold;
}

function fmt(v: unknown): string {
  if (v instanceof Error) return v.message;
  if (typeof v === 'string') return v;
  if (typeof v === 'bigint') return `0x${v.toString(16)}`;
  try { return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `0x${x.toString(16)}` : x)); }
  catch { return String(v); }
}

export class Log implements Logger {
  constructor(readonly scope: string) {}
  child(scope: string): Log { return new Log(this.scope ? `${this.scope}/${scope}` : scope); }
  private emit(level: LogLevel, msg: string, args: unknown[]): void {
    if (!levelEnabled(level)) return;
    const extra = args.length ? ' ' + args.map(fmt).join(' ') : '';
    sink(`${new Date().toISOString()} ${level.padEnd(5)} [${this.scope}] ${msg}${extra}`);
  }
  error(msg: string, ...args: unknown[]): void { this.emit('error', msg, args); }
  warn(msg: string, ...args: unknown[]): void { this.emit('warn', msg, args); }
  info(msg: string, ...args: unknown[]): void { this.emit('info', msg, args); }
  debug(msg: string, ...args: unknown[]): void { this.emit('debug', msg, args); }
  trace(msg: string, ...args: unknown[]): void { this.emit('trace', msg, args); }
}

export const rootLog = new Log('vfio-user-ts');
