// Running QEMU on the user's terminal: its stdin, stdout and stderr are ours,
// so the guest's serial console is the terminal (QEMU puts it in raw mode and
// restores it). QEMU never outlives us (see dieWithParent).
import { spawn } from 'node:child_process';
import { qemuSpawn, type QemuCommand } from './qemu-command.js';
import { dieWithParent } from './exec.js';

/** How QEMU ended: its exit code, or the signal that stopped it. */
export interface QemuExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Runs QEMU with our stdio until it exits. SIGINT, SIGTERM and SIGHUP sent to
 * us while it runs are passed on to it (as SIGTERM), so we clean up after it.
 */
export function runQemuOnConsole(qemu: QemuCommand, args: readonly string[]): Promise<QemuExit> {
  const spec = qemuSpawn(qemu, args);
  const [file, argv] = dieWithParent(spec.file, spec.args, 'KILL');
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { env: spec.env, stdio: 'inherit' });
    const forward = () => child.kill('SIGTERM');
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
    for (const s of signals) process.on(s, forward);
    const done = () => {
      for (const s of signals) process.off(s, forward);
    };
    child.on('error', (e) => {
      done();
      reject(e);
    });
    child.on('exit', (code, signal) => {
      done();
      resolve({ code, signal });
    });
  });
}

/** A command line as one shell-quoted text, a new line before each option, ready to paste. */
export function shellCommand(env: Record<string, string>, file: string, args: readonly string[]): string {
  const words = [...Object.entries(env).map(([k, v]) => `${k}=${shellQuote(v)}`), shellQuote(file)];
  for (const a of args) words.push(`${a.startsWith('-') ? '\\\n  ' : ''}${shellQuote(a)}`);
  return words.join(' ') + '\n';
}

/** One word for sh: as it is when it is plain, else in single quotes. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
