// A Debian trixie root (debootstrap minbase) with qemu-system-x86 from trixie-backports,
// for hosts whose own QEMU is too old (Debian 12 has 7.2; trixie's own has no vfio-user-pci).
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../exec.js';
import { removeTree, type ProgressLog } from '../cache.js';
import { ensureHostTool } from './host-tools.js';

export const DEBIAN_MIRROR = process.env.VFIO_USER_TS_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
export const SUITE = 'trixie';

const aptEnv = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  DEBIAN_FRONTEND: 'noninteractive',
  LANG: 'C.UTF-8',
  HOME: '/root',
};

/** Creates `root` from scratch (any partial content is removed first). */
export async function debootstrapRoot(root: string, log: ProgressLog): Promise<void> {
  const debootstrap = await ensureHostTool('debootstrap', 'debootstrap', log);
  await removeTree(root);
  await mkdir(root, { recursive: true });
  log(`debootstrap ${SUITE} minbase into ${root} (about 30 s)...`);
  await run(debootstrap, ['--variant=minbase', SUITE, root, DEBIAN_MIRROR], { timeoutMs: 30 * 60_000 });
}

/** Runs a command inside the root with chroot (package management only; nothing is mounted). */
function inRoot(root: string, args: string[]) {
  return run('chroot', [root, ...args], { env: aptEnv, timeoutMs: 30 * 60_000 });
}

/** Adds trixie-backports and installs qemu-system-x86 from it, without recommends. */
export async function installQemu(root: string, log: ProgressLog): Promise<void> {
  await writeFile(
    join(root, 'etc/apt/sources.list.d/backports.list'),
    `deb ${DEBIAN_MIRROR} ${SUITE}-backports main\n`,
  );
  // Keep the root small and quiet: no docs, no man pages.
  await writeFile(
    join(root, 'etc/dpkg/dpkg.cfg.d/01-nodoc'),
    'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n',
  );
  log(`installing qemu-system-x86 from ${SUITE}-backports in the root (about 30 s)...`);
  await inRoot(root, ['apt-get', 'update']);
  await inRoot(root, [
    'apt-get',
    'install',
    '-y',
    '--no-install-recommends',
    '-t',
    `${SUITE}-backports`,
    'qemu-system-x86',
  ]);
  await inRoot(root, ['apt-get', 'clean']);
}
