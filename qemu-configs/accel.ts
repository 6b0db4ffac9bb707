// Choosing the accelerator: KVM only where it really runs a guest (on this machine kind
// /dev/kvm exists but KVM fails at the first instruction), TCG otherwise.
import { constants } from 'node:fs';
import { access, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Accel } from './qemu-args.js';

/** Boots a tiny guest with KVM; true if it ran to its end. */
export type KvmProbe = () => Promise<{ ok: boolean; detail: string }>;

const memo = new Map<string, Promise<Accel>>();

/**
 * `$VFIO_USER_TS_ACCEL` (kvm|tcg) if set; else 'tcg' without a usable /dev/kvm; else
 * the result of `probe`, cached per host boot in `<cacheDir>/accel-<boot id>.json`.
 */
export function chooseAccel(cacheDir: string, probe: KvmProbe): Promise<Accel> {
  const env = process.env.VFIO_USER_TS_ACCEL;
  if (env === 'kvm' || env === 'tcg') return Promise.resolve(env);
  if (env) return Promise.reject(new Error(`VFIO_USER_TS_ACCEL must be kvm or tcg, not ${env}`));
  let p = memo.get(cacheDir);
  if (!p) {
    p = decide(cacheDir, probe);
    memo.set(cacheDir, p);
  }
  return p;
}

/** Records that KVM failed after all (a later boot on this host uses TCG at once). */
export async function markKvmBroken(cacheDir: string, detail: string): Promise<void> {
  memo.set(cacheDir, Promise.resolve('tcg'));
  await writeFile(await cacheFile(cacheDir), JSON.stringify({ accel: 'tcg', detail }) + '\n').catch(() => {});
}

async function cacheFile(cacheDir: string): Promise<string> {
  const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => 'unknown')).trim();
  return join(cacheDir, `accel-${bootId}.json`);
}

async function decide(cacheDir: string, probe: KvmProbe): Promise<Accel> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return 'tcg';
  }
  const file = await cacheFile(cacheDir);
  try {
    const cached = JSON.parse(await readFile(file, 'utf8')) as { accel?: string };
    if (cached.accel === 'kvm' || cached.accel === 'tcg') return cached.accel;
  } catch {
    /* not probed yet on this boot */
  }
  const r = await probe();
  const accel: Accel = r.ok ? 'kvm' : 'tcg';
  await writeFile(file, JSON.stringify({ accel, detail: r.detail }) + '\n').catch(() => {});
  return accel;
}
