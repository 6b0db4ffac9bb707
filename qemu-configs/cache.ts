// The provisioning cache: where it lives, an exclusive lock, and steps that leave a
// stamp only after they succeed (a killed run redoes the step it was in).
import { mkdir, open, readFile, rm, writeFile, rename } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { runCapture } from './exec.js';
import { join, resolve } from 'node:path';

/** Where provisioning reports its progress, one line a call. */
export type ProgressLog = (message: string) => void;

/** `$VFIO_USER_TS_CACHE`, else `~/.cache/vfio-user-ts` (outside the repository). */
export function defaultCacheDir(): string {
  const env = process.env.VFIO_USER_TS_CACHE;
  if (env) return resolve(env);
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg ? resolve(xdg) : join(homedir(), '.cache'), 'vfio-user-ts');
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes `<dir>/lock` (a file created with O_EXCL holding our pid). A lock left by a
 * dead process is taken over; a live holder is waited for. Returns the release function.
 */
export async function acquireLock(dir: string, log: ProgressLog, waitMs = 60 * 60 * 1000): Promise<() => Promise<void>> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, 'lock');
  const deadline = Date.now() + waitMs;
  let told = false;
  let sawGarbage = false;
  for (;;) {
    try {
      const fh = await open(path, 'wx');
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        await rm(path, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const holder = await readHolder(path);
    if (holder === undefined) continue; // released meanwhile: try again
    if (Number.isNaN(holder) && !sawGarbage) {
      // Possibly a holder between creating and writing the file: look again shortly.
      sawGarbage = true;
      await sleep(300);
      continue;
    }
    if (Number.isNaN(holder) || holder === process.pid || !pidAlive(holder)) {
      // Stale (dead holder, or a half-written file from a killed run). Remove it only
      // if it still holds what we read, so two waiters do not both take it over.
      if (Object.is(await readHolder(path), holder)) await rm(path, { force: true });
      sawGarbage = false;
      continue;
    }
    if (Date.now() > deadline) throw new Error(`provision cache ${dir} is locked by pid ${holder} for too long`);
    if (!told) {
      log(`waiting for another provisioning run (pid ${holder}) to finish...`);
      told = true;
    }
    await sleep(500);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The pid in a lock file; NaN if unreadable as a number, undefined if the file is gone. */
async function readHolder(path: string): Promise<number | undefined> {
  try {
    return parseInt(await readFile(path, 'utf8'), 10);
  } catch {
    return undefined;
  }
}

/** A step is done when its stamp exists and records the same key. */
export class Stamps {
  constructor(readonly dir: string) {}

  private path(name: string): string {
    return join(this.dir, 'stamps', `${name}.json`);
  }

  read<T = Record<string, unknown>>(name: string): (T & { key: string }) | undefined {
    try {
      return JSON.parse(readFileSync(this.path(name), 'utf8')) as T & { key: string };
    } catch {
      return undefined;
    }
  }

  /**
   * Returns the stamp data of step `name` if it was done with this `key` (and its
   * output still passes `isValid`); otherwise removes the stamp, runs `fn` and writes
   * the stamp with the data `fn` returned.
   */
  async step<T extends Record<string, unknown>>(
    name: string,
    key: string,
    fn: () => Promise<T>,
    isValid: () => boolean = () => true,
  ): Promise<T> {
    const old = this.read<T>(name);
    if (old && old.key === key && isValid()) return old;
    const path = this.path(name);
    await rm(path, { force: true });
    const data = await fn();
    await mkdir(join(this.dir, 'stamps'), { recursive: true });
    await writeFile(`${path}.tmp`, JSON.stringify({ ...data, key }, null, 2) + '\n');
    await rename(`${path}.tmp`, path);
    return data;
  }
}

async function mountsUnder(abs: string): Promise<string[]> {
  return (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m)
    .map((m) => m.replace(/\\040/g, ' '))
    .filter((m) => m === abs || m.startsWith(abs + '/'));
}

/**
 * `rm -rf` that first unmounts whatever a killed run left mounted inside `path`
 * (e.g. debootstrap's /proc) and refuses to delete while anything is still mounted
 * there, so a leftover bind mount can never make us delete the host's files.
 */
export async function removeTree(path: string): Promise<void> {
  const abs = resolve(path);
  const mounted = (await mountsUnder(abs)).sort((a, b) => b.length - a.length);
  for (const m of mounted) await runCapture('umount', ['-l', m]);
  const still = await mountsUnder(abs);
  if (still.length) throw new Error(`refusing to delete ${abs}: still mounted inside it: ${still.join(', ')}`);
  await rm(abs, { recursive: true, force: true });
}
