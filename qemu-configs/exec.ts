// Running host commands for provisioning: capture output, fail with the tail of stderr.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Kill the command after this many ms (default: no limit). */
  timeoutMs?: number;
  /** Bytes for stdin; stdin is /dev/null otherwise. */
  input?: Buffer | string;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** util-linux `setpriv`, if present (it is Essential on Debian). */
export const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

/**
 * `file args` wrapped so that the kernel sends `sig` to the command when we die,
 * even by SIGKILL (no orphaned debootstrap or QEMU keeps running after us).
 */
export function dieWithParent(file: string, args: readonly string[], sig: 'TERM' | 'KILL'): [string, string[]] {
  return SETPRIV ? [SETPRIV, ['--pdeathsig', sig, '--', file, ...args]] : [file, [...args]];
}

/** Runs a command to completion; never throws for a non-zero exit (see `run`). */
export function runCapture(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    // TERM, not KILL: debootstrap then still unmounts what it mounted in its target.
    const [f, a] = dieWithParent(file, args, 'TERM');
    const child = spawn(f, a, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs !== undefined) {
      timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    }
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}

/** Runs a command and throws (with the last lines of its output) unless it exits 0. */
export async function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await runCapture(file, args, opts);
  if (r.code !== 0) {
    const tail = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-15).join('\n');
    throw new Error(
      `command failed (${r.signal ?? `exit ${r.code}`}): ${[file, ...args].join(' ')}\n${tail}`,
    );
  }
  return r;
}

/** The absolute path of an executable found on PATH (or under the sbin dirs root has), or undefined. */
export async function which(name: string): Promise<string | undefined> {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const extra of ['/usr/local/sbin', '/usr/sbin', '/sbin']) if (!dirs.includes(extra)) dirs.push(extra);
  for (const d of dirs) {
    const p = join(d, name);
    try {
      await access(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}
