// The guest kernel: Debian trixie's linux-image-6.12.*-amd64, its vmlinuz and the
// modules the tests need (with their dependencies, decompressed for busybox insmod).
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { run } from '../exec.js';
import { removeTree, type ProgressLog } from '../cache.js';
import { ensureHostTool } from './host-tools.js';
import { normModName, readModInfo } from './modinfo.js';
import type { TrixieApt } from './apt.js';

/** Modules the guest loads at boot; their dependencies are added automatically. */
export const GUEST_MODULES: readonly string[] = ['nvme', 'virtio_blk', 'virtio_rng', 'gpio_pci_idio_16'];

export interface GuestKernel {
  /** e.g. "6.12.117+deb13-amd64". */
  version: string;
  vmlinuz: string;
  /** Directory holding the decompressed `<name>.ko` files. */
  modulesDir: string;
  /** File names in `modulesDir`, in load order (dependencies first). */
  modules: string[];
}

/** The versioned package that `linux-image-amd64` of trixie points at. */
export async function kernelPackage(apt: TrixieApt): Promise<string> {
  const pkg = (await apt.depends('linux-image-amd64')).find((p) => /^linux-image-6\.12\.\d+.*-amd64$/.test(p));
  if (!pkg) throw new Error('trixie linux-image-amd64 does not depend on a linux-image-6.12.*-amd64 package');
  return pkg;
}

/**
 * Downloads and unpacks kernel package `pkg` and leaves `<outDir>/vmlinuz`,
 * `<outDir>/modules/*.ko` and `<outDir>/modules/load-order`.
 */
export async function installKernel(
  apt: TrixieApt,
  pkg: string,
  modules: readonly string[],
  outDir: string,
  log: ProgressLog,
): Promise<GuestKernel> {
  const dpkgDeb = await ensureHostTool('dpkg-deb', 'dpkg', log);
  const xz = await ensureHostTool('xz', 'xz-utils', log);
  const deb = await apt.download(pkg, log);
  await removeTree(outDir);
  const unpacked = join(outDir, 'unpacked');
  await mkdir(unpacked, { recursive: true });
  log(`unpacking ${basename(deb)}...`);
  await run(dpkgDeb, ['-x', deb, unpacked]);

  const vmlinuzName = (await readdir(join(unpacked, 'boot'))).find((f) => f.startsWith('vmlinuz-'));
  if (!vmlinuzName) throw new Error(`${pkg} has no boot/vmlinuz-*`);
  const version = vmlinuzName.slice('vmlinuz-'.length);
  const vmlinuz = join(outDir, 'vmlinuz');
  await copyFile(join(unpacked, 'boot', vmlinuzName), vmlinuz);

  const treeBase = [join(unpacked, 'usr/lib/modules', version), join(unpacked, 'lib/modules', version)];
  const tree = await findModuleTree(treeBase);
  const files = await indexModules(tree);
  const modulesDir = join(outDir, 'modules');
  await mkdir(modulesDir);

  // Depth-first, dependencies before dependents: the load order for insmod.
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = async (name: string, chain: string[]): Promise<void> => {
    const key = normModName(name);
    if (state.get(key) === 'done') return;
    if (state.get(key) === 'visiting') throw new Error(`module dependency loop: ${[...chain, name].join(' -> ')}`);
    const src = files.get(key);
    if (!src) throw new Error(`module ${name} not found in ${pkg} (needed by ${chain.join(' -> ') || 'the guest'})`);
    state.set(key, 'visiting');
    const ko = join(modulesDir, `${key}.ko`);
    if (src.endsWith('.ko.xz')) {
      await copyFile(src, `${ko}.xz`);
      await run(xz, ['-d', '-f', `${ko}.xz`]);
    } else if (src.endsWith('.ko')) {
      await copyFile(src, ko);
    } else {
      throw new Error(`cannot decompress ${src}`);
    }
    for (const dep of readModInfo(await readFile(ko)).depends) await visit(dep, [...chain, name]);
    state.set(key, 'done');
    order.push(`${key}.ko`);
  };
  for (const m of modules) await visit(m, []);
  await writeFile(join(modulesDir, 'load-order'), order.join('\n') + '\n');
  await removeTree(unpacked);
  return { version, vmlinuz, modulesDir, modules: order };
}

async function findModuleTree(candidates: string[]): Promise<string> {
  for (const c of candidates) {
    try {
      await readdir(c);
      return c;
    } catch {
      /* next */
    }
  }
  throw new Error(`no modules directory in the kernel package (looked in ${candidates.join(', ')})`);
}

/** Maps each module name (normalised) to its file under `tree`. */
async function indexModules(tree: string): Promise<Map<string, string>> {
  const map = new Map<string, string>();
  const entries = await readdir(tree, { recursive: true, withFileTypes: true });
  for (const e of entries) {
    if (!e.isFile()) continue;
    const m = /^(.*)\.ko(\.xz|\.zst|\.gz)?$/.exec(e.name);
    if (!m) continue;
    map.set(normModName(m[1]!), join(e.parentPath, e.name));
  }
  return map;
}
