// Provisioning: a QEMU >= 10.1 with vfio-user-pci and a guest (Debian kernel + busybox
// initramfs), built from Debian packages into a cache outside the repository and reused.
//
// Cache layout ($VFIO_USER_TS_CACHE or ~/.cache/vfio-user-ts):
//   lock                      held while a run provisions (pid inside; stale ones are taken over)
//   stamps/<step>.json        written only after a step succeeded (a killed run redoes it)
//   trixie-root/              debootstrap minbase + qemu-system-x86 from trixie-backports
//                             (only when the host has no suitable QEMU)
//   apt/                      private apt state for downloading trixie .debs (apt/debs/)
//   kernel/                   vmlinuz, modules/<name>.ko (decompressed), modules/load-order
//   busybox/busybox           busybox-static
//   initramfs/base.cpio.gz    busybox + modules + /init
//   initramfs/fio.cpio.gz     fio with its libraries and loader (provisionFio; only boots that run fio append it)
//   accel-<boot id>.json      whether KVM works on this boot of the host (see accel.ts)
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { acquireLock, defaultCacheDir, Stamps, type ProgressLog } from './cache.js';
import { which } from './exec.js';
import { checkQemu, loaderQemu, systemQemu, type QemuCommand } from './qemu-command.js';
import { debootstrapRoot, installQemu, DEBIAN_MIRROR } from './provision/debootstrap.js';
import { TrixieApt } from './provision/apt.js';
import { GUEST_MODULES, installKernel, kernelPackage } from './provision/kernel.js';
import { installBusybox } from './provision/busybox.js';
import { buildFioArchive } from './provision/fio.js';
import { buildBaseInitramfs, INIT_SCRIPT } from './initramfs.js';

export type { QemuCommand } from './qemu-command.js';
export type { ProgressLog } from './cache.js';

export interface ProvisionOptions {
  cacheDir?: string;
  /** Progress messages for long steps. */
  log?: ProgressLog;
}

export interface Provisioned {
  cacheDir: string;
  qemu: QemuCommand;
  /** Why this QEMU was chosen. */
  qemuNote: string;
  /** Path of the guest kernel (bzImage). */
  kernel: string;
  /** e.g. "6.12.117+deb13-amd64". */
  kernelVersion: string;
  /** The base initramfs (gzip'd cpio); boot.ts appends a per-boot archive to it. */
  initramfsBase: string;
  /** Decompressed modules (`<name>.ko`), also inside the initramfs under /lib/modules. */
  modulesDir: string;
  /** Module file names in the order /init loads them. */
  modules: string[];
  busybox: string;
}

// Bump a recipe version to make every cache redo that step.
const RECIPE = { root: 'v1', kernel: 'v1', busybox: 'v1', initramfs: 'v1', fio: 'v1' };

const inFlight = new Map<string, Promise<Provisioned>>();

/** Provisions what is missing (idempotent; concurrent callers share one run per cache). */
export function provision(opts: ProvisionOptions = {}): Promise<Provisioned> {
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  let p = inFlight.get(cacheDir);
  if (!p) {
    p = provisionLocked(cacheDir, opts.log ?? (() => {}));
    inFlight.set(cacheDir, p);
    p.catch(() => inFlight.delete(cacheDir));
  }
  return p;
}

async function provisionLocked(cacheDir: string, log: ProgressLog): Promise<Provisioned> {
  await mkdir(cacheDir, { recursive: true });
  const release = await acquireLock(cacheDir, log);
  try {
    return await provisionSteps(cacheDir, log);
  } finally {
    await release();
  }
}

async function provisionSteps(cacheDir: string, log: ProgressLog): Promise<Provisioned> {
  const stamps = new Stamps(cacheDir);
  const { qemu, note } = await provisionQemu(cacheDir, stamps, log);

  let apt: TrixieApt | undefined;
  const getApt = async () => (apt ??= await TrixieApt.open(join(cacheDir, 'apt'), log));

  const kernelDir = join(cacheDir, 'kernel');
  const kernel = await stamps.step(
    'kernel',
    `${RECIPE.kernel} ${GUEST_MODULES.join(',')} ${DEBIAN_MIRROR}`,
    async () => {
      const a = await getApt();
      const k = await installKernel(a, await kernelPackage(a), GUEST_MODULES, kernelDir, log);
      return { version: k.version, modules: k.modules };
    },
    () => existsSync(join(kernelDir, 'vmlinuz')) && existsSync(join(kernelDir, 'modules/load-order')),
  );
  const modulesDir = join(kernelDir, 'modules');

  const busyboxDir = join(cacheDir, 'busybox');
  const busybox = join(busyboxDir, 'busybox');
  const bb = await stamps.step(
    'busybox',
    `${RECIPE.busybox} ${DEBIAN_MIRROR}`,
    async () => {
      await installBusybox(await getApt(), busyboxDir, log);
      return { at: new Date().toISOString() };
    },
    () => existsSync(busybox),
  );

  const initramfsBase = join(cacheDir, 'initramfs', 'base.cpio.gz');
  const initKey = createHash('sha256')
    .update(JSON.stringify([RECIPE.initramfs, INIT_SCRIPT, kernel.version, kernel.modules, bb.at]))
    .digest('hex');
  await stamps.step(
    'initramfs',
    initKey,
    async () => {
      log('building the base initramfs...');
      const image = await buildBaseInitramfs({ busybox, modulesDir, modules: kernel.modules });
      await mkdir(join(cacheDir, 'initramfs'), { recursive: true });
      await writeFile(`${initramfsBase}.tmp`, image);
      await rename(`${initramfsBase}.tmp`, initramfsBase);
      return { bytes: image.length };
    },
    () => existsSync(initramfsBase),
  );

  return {
    cacheDir,
    qemu,
    qemuNote: note,
    kernel: join(kernelDir, 'vmlinuz'),
    kernelVersion: kernel.version,
    initramfsBase,
    modulesDir,
    modules: kernel.modules,
    busybox,
  };
}

/** A cached initramfs archive that a boot appends to the base image (`BootOptions.layers`). */
export interface GuestLayer {
  /** gzip'd cpio in the cache. */
  archive: string;
  /** The packaged program's version, e.g. "3.39-1". */
  version: string;
}

const fioInFlight = new Map<string, Promise<GuestLayer>>();

/**
 * Provisions the guest (as `provision`) and fio for it: Debian trixie's fio with
 * its shared libraries and loader, as its own archive. The base image is not
 * touched; only boots that pass the layer get fio.
 */
export function provisionFio(opts: ProvisionOptions = {}): Promise<GuestLayer> {
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  let p = fioInFlight.get(cacheDir);
  if (!p) {
    p = provisionFioLocked(cacheDir, opts.log ?? (() => {}));
    fioInFlight.set(cacheDir, p);
    p.catch(() => fioInFlight.delete(cacheDir));
  }
  return p;
}

async function provisionFioLocked(cacheDir: string, log: ProgressLog): Promise<GuestLayer> {
  await provision({ cacheDir, log });
  const release = await acquireLock(cacheDir, log);
  try {
    const archive = join(cacheDir, 'initramfs', 'fio.cpio.gz');
    const stamp = await new Stamps(cacheDir).step(
      'fio',
      `${RECIPE.fio} ${DEBIAN_MIRROR}`,
      async () => {
        const apt = await TrixieApt.open(join(cacheDir, 'apt'), log);
        const fio = await buildFioArchive(apt, join(cacheDir, 'fio-work'), log);
        await mkdir(join(cacheDir, 'initramfs'), { recursive: true });
        await writeFile(`${archive}.tmp`, fio.image);
        await rename(`${archive}.tmp`, archive);
        log(`fio ${fio.version}: ${fio.libraries.length} shared objects from ${fio.packages} packages, ${fio.image.length} bytes`);
        return { version: fio.version, bytes: fio.image.length, libraries: fio.libraries };
      },
      () => existsSync(archive),
    );
    return { archive, version: stamp.version };
  } finally {
    await release();
  }
}

/**
 * (a) $VFIO_USER_TS_QEMU, which must be suitable; else (b) qemu-system-x86_64 on PATH
 * if it is >= 10.1 with vfio-user-pci; else (c) the cached trixie root's QEMU.
 */
async function provisionQemu(cacheDir: string, stamps: Stamps, log: ProgressLog): Promise<{ qemu: QemuCommand; note: string }> {
  const explicit = process.env.VFIO_USER_TS_QEMU;
  if (explicit) {
    const q = systemQemu(explicit);
    const c = await checkQemu(q);
    if (!c.ok) throw new Error(`VFIO_USER_TS_QEMU=${explicit} is not usable: ${c.reason}`);
    q.version = c.version;
    return { qemu: q, note: `VFIO_USER_TS_QEMU=${explicit} (${c.version})` };
  }
  let why = 'no qemu-system-x86_64 on PATH';
  const onPath = await which('qemu-system-x86_64');
  if (onPath) {
    const q = systemQemu(onPath);
    const c = await checkQemu(q);
    if (c.ok) {
      q.version = c.version;
      return { qemu: q, note: `${onPath} (${c.version}) from PATH` };
    }
    why = `${onPath} is not usable: ${c.reason}`;
  }

  const root = join(cacheDir, 'trixie-root');
  const stamp = await stamps.step(
    'trixie-root',
    `${RECIPE.root} ${DEBIAN_MIRROR}`,
    async () => {
      log(`no suitable system QEMU (${why}): provisioning a trixie root with QEMU from trixie-backports`);
      await debootstrapRoot(root, log);
      await installQemu(root, log);
      const c = await checkQemu(loaderQemu(root));
      if (!c.ok) throw new Error(`the trixie root's QEMU is not usable: ${c.reason}`);
      return { version: c.version };
    },
    () => existsSync(join(root, 'usr/bin/qemu-system-x86_64')),
  );
  const qemu = loaderQemu(root); // after the step: its -L dirs are those that exist
  qemu.version = stamp.version;
  return {
    qemu,
    note: `trixie-backports QEMU ${stamp.version} run through the root's own ld.so (${why})`,
  };
}
