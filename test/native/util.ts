// Helpers shared by the native addon tests.
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as n from '../../native/index.js';

/** The repository root (the directory holding package.json). */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('package.json not found');
    dir = up;
  }
  return dir;
}

/** A fresh directory for sockets, removed by the returned cleanup. */
export function tmpDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vfio-native-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Resolves with the events once fd is ready; the watcher is closed first. */
export function ready(fd: number, events = n.READABLE, timeoutMs = 5000): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      n.watchClose(w);
      reject(new Error(`fd ${fd} not ready within ${timeoutMs} ms`));
    }, timeoutMs);
    const w = n.watch(fd, events, (status, ev) => {
      clearTimeout(timer);
      n.watchClose(w);
      if (status < 0) reject(new Error(`poll error ${n.systemErrnoName(status)}`));
      else resolve(ev);
    });
  });
}

/** The open flags of fd as the kernel reports them (octal in fdinfo). */
export function fdFlags(fd: number): number {
  const m = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  if (!m) throw new Error(`no flags for fd ${fd}`);
  return parseInt(m[1]!, 8);
}
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

/** What fd refers to, e.g. 'socket:[123]' or '/memfd:x (deleted)'. */
export function fdTarget(fd: number): string {
  return readlinkSync(`/proc/self/fd/${fd}`);
}

/** Lines of /proc/self/maps that mention `needle`. */
export function mapsWith(needle: string): string[] {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes(needle));
}

export const tick = (ms = 20): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs an ES module snippet in a fresh node with the addon imported as `n`. */
export function child(script: string): { status: number | null; stdout: string; stderr: string } {
  const url = pathToFileURL(path.join(repoRoot(), 'dist', 'native', 'index.js')).href;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import * as n from ${JSON.stringify(url)};\n${script}`], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
