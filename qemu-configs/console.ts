// The guest side of an interactive boot (`vfio-user-ts vm`): the base /init
// mounts the file systems and loads every guest module (the drivers of our
// devices among them), then runs /test.sh; here /test.sh is a shell on the
// serial console, and leaving it powers the guest off (QEMU then exits).
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bootInitramfs } from './initramfs.js';
import type { Provisioned } from './provision.js';

/** Printed on the console just before the shell starts. */
export const CONSOLE_BANNER = 'vfio-user-ts vm: a shell on the guest serial console; exit or poweroff -f powers off, Ctrl-A X quits QEMU';

/** The shell's prompt. */
export const CONSOLE_PROMPT = 'guest# ';

/**
 * /test.sh of an interactive boot. setsid + cttyhack make the serial port the
 * shell's controlling terminal, so Ctrl-C and job control work in the guest.
 */
export const CONSOLE_SCRIPT = `export PS1='${CONSOLE_PROMPT}'
echo "${CONSOLE_BANNER}"
setsid cttyhack sh -i
`;

/**
 * Writes the console initramfs (the base image + CONSOLE_SCRIPT) next to the
 * base image in the cache and returns its path. It stays there, so that a
 * printed QEMU command line can use it; each call rewrites it atomically.
 */
export async function consoleInitramfs(p: Provisioned): Promise<string> {
  const dir = join(p.cacheDir, 'initramfs');
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'console.cpio.gz');
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, await bootInitramfs(p.initramfsBase, CONSOLE_SCRIPT));
  await rename(tmp, file);
  return file;
}
