// The guest's userland: Debian trixie's busybox-static (one static binary).
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../exec.js';
import { removeTree, type ProgressLog } from '../cache.js';
import { ensureHostTool } from './host-tools.js';
import type { TrixieApt } from './apt.js';

/** Downloads busybox-static and leaves `<outDir>/busybox`; returns its path. */
export async function installBusybox(apt: TrixieApt, outDir: string, log: ProgressLog): Promise<string> {
  const dpkgDeb = await ensureHostTool('dpkg-deb', 'dpkg', log);
  const deb = await apt.download('busybox-static', log);
  await removeTree(outDir);
  const unpacked = join(outDir, 'unpacked');
  await mkdir(unpacked, { recursive: true });
  await run(dpkgDeb, ['-x', deb, unpacked]);
  const out = join(outDir, 'busybox');
  let copied = false;
  for (const p of ['usr/bin/busybox', 'bin/busybox']) {
    try {
      await copyFile(join(unpacked, p), out);
      copied = true;
      break;
    } catch {
      /* next */
    }
  }
  await removeTree(unpacked);
  if (!copied) throw new Error('busybox-static has no busybox binary');
  return out;
}
