// Host commands and files that provisioning needs, installed from the host's Debian
// packages when missing (with one `apt-get update` first if the install fails).
import { existsSync } from 'node:fs';
import { run, which } from '../exec.js';
import type { ProgressLog } from '../cache.js';

let updated = false;

async function installHostPackage(pkg: string, why: string, log: ProgressLog): Promise<void> {
  const apt = await which('apt-get');
  if (!apt) throw new Error(`${why}, and this host has no apt-get to install '${pkg}'`);
  if (process.getuid?.() !== 0) throw new Error(`${why}: install the '${pkg}' package (as root)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => run(apt, ['install', '-y', '--no-install-recommends', pkg], { env, timeoutMs: 10 * 60_000 });
  log(`installing host package ${pkg}...`);
  try {
    await install();
  } catch (e) {
    // A fresh machine may have no (or stale) package lists: refresh them once, then retry.
    if (updated) throw e;
    updated = true;
    await run(apt, ['update'], { env, timeoutMs: 10 * 60_000 });
    await install();
  }
}

/** Returns the path of `command`, installing Debian package `pkg` if it is missing. */
export async function ensureHostTool(command: string, pkg: string, log: ProgressLog): Promise<string> {
  const found = await which(command);
  if (found) return found;
  await installHostPackage(pkg, `'${command}' is missing`, log);
  const path = await which(command);
  if (!path) throw new Error(`installed '${pkg}' but '${command}' is still not on PATH`);
  return path;
}

/** Makes sure `path` exists, installing Debian package `pkg` if it does not. */
export async function ensureHostFile(path: string, pkg: string, log: ProgressLog): Promise<void> {
  if (existsSync(path)) return;
  await installHostPackage(pkg, `${path} is missing`, log);
  if (!existsSync(path)) throw new Error(`installed '${pkg}' but ${path} is still missing`);
}
