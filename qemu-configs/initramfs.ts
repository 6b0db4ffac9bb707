// The guest's initramfs: a base image (busybox, modules, /init) built once at provision
// time, optional cached layers (fio), plus a small per-boot archive with /test.sh
// appended to it at each boot.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { concatInitramfs, cpioArchive, type CpioEntry } from './cpio.js';

/**
 * The guest's /init. Mounts the usual file systems, loads the modules of
 * /etc/modules.list in order, runs /test.sh if present, reports on the serial
 * console, and powers off (QEMU then exits by itself).
 */
export const INIT_SCRIPT = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts /dev/shm
mount -t tmpfs tmpfs /dev/shm
[ -d /sys/kernel/debug ] && mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
while read -r m; do
  [ -n "$m" ] && { insmod "/lib/modules/$m" || echo "@@MODFAIL $m"; }
done < /etc/modules.list
echo "@@BOOTED $(cut -d' ' -f1 /proc/uptime)"
if [ -f /test.sh ]; then
  cd /root
  sh /test.sh
  echo "@@EXIT $?"
else
  echo "@@EXIT none"
fi
cd /
sync
poweroff -f
`;

export interface BaseInitramfsInput {
  busybox: string;
  modulesDir: string;
  /** Module file names in load order. */
  modules: readonly string[];
}

/** Builds the base image (cpio newc, gzip-compressed). */
export async function buildBaseInitramfs(input: BaseInitramfsInput): Promise<Buffer> {
  const entries: CpioEntry[] = [];
  for (const d of ['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'etc', 'lib', 'lib/modules', 'proc', 'sys', 'dev', 'tmp', 'root', 'run', 'mnt']) {
    entries.push({ type: 'dir', path: d, mode: d === 'tmp' ? 0o1777 : d === 'root' ? 0o700 : 0o755 });
  }
  // The kernel opens /dev/console for init's stdio before anything is mounted.
  entries.push({ type: 'chardev', path: 'dev/console', major: 5, minor: 1, mode: 0o600 });
  entries.push({ type: 'chardev', path: 'dev/null', major: 1, minor: 3, mode: 0o666 });
  entries.push({ type: 'file', path: 'bin/busybox', data: await readFile(input.busybox), mode: 0o755 });
  entries.push({ type: 'symlink', path: 'bin/sh', target: 'busybox' });
  entries.push({ type: 'file', path: 'init', data: INIT_SCRIPT, mode: 0o755 });
  for (const m of input.modules) {
    entries.push({ type: 'file', path: `lib/modules/${m}`, data: await readFile(join(input.modulesDir, m)) });
  }
  entries.push({ type: 'file', path: 'etc/modules.list', data: input.modules.join('\n') + '\n' });
  entries.push({ type: 'file', path: 'etc/hostname', data: 'guest\n' });
  return gzipSync(cpioArchive(entries), { level: 6 });
}

export interface ExtraFile {
  /** Absolute guest path; parent directories are created. */
  path: string;
  data: Buffer | string;
  mode?: number;
}

/** The per-boot archive: `/test.sh` and any extra files, with their parent directories. */
export function perBootArchive(script: string, extra: readonly ExtraFile[] = []): Buffer {
  const entries: CpioEntry[] = [];
  const dirs = new Set<string>();
  for (const f of extra) {
    const parts = f.path.replace(/^\/+/, '').split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!dirs.has(d)) {
        dirs.add(d);
        entries.push({ type: 'dir', path: d });
      }
    }
    entries.push({ type: 'file', path: f.path, data: f.data, mode: f.mode ?? 0o644 });
  }
  entries.push({ type: 'file', path: 'test.sh', data: script, mode: 0o755 });
  return cpioArchive(entries);
}

/** The base image, then `layers` (cached archives), then the per-boot archive, ready for `-initrd`. */
export async function bootInitramfs(
  base: string,
  script: string,
  extra: readonly ExtraFile[] = [],
  layers: readonly string[] = [],
): Promise<Buffer> {
  const pieces = [await readFile(base)];
  for (const l of layers) pieces.push(await readFile(l));
  return concatInitramfs([...pieces, perBootArchive(script, extra)]);
}
