// How to start QEMU: either a system binary, or the trixie root's binary run through
// that root's own dynamic loader (no chroot, so socket paths are plain host paths).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { runCapture } from './exec.js';

export interface QemuCommand {
  /** The executable to spawn. */
  file: string;
  /** Arguments that go before QEMU's own (loader options, the binary, `-L` dirs). */
  prefixArgs: string[];
  /** Extra environment variables. */
  env: Record<string, string>;
  /** e.g. "11.1.3". */
  version: string;
  /** 'system': a QEMU from PATH or $VFIO_USER_TS_QEMU; 'loader': the cached trixie root's QEMU. */
  method: 'system' | 'loader';
}

/** What to pass to `spawn()` to run QEMU with `args`. */
export function qemuSpawn(q: QemuCommand, args: readonly string[]): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
  return { file: q.file, args: [...q.prefixArgs, ...args], env: { ...process.env, ...q.env } };
}

/** A QEMU at `path` on the host. */
export function systemQemu(path: string): QemuCommand {
  return { file: path, prefixArgs: [], env: {}, version: '', method: 'system' };
}

/**
 * The QEMU of a (debootstrapped) root file system, started through the root's own
 * ld.so with the root's libraries, data and module dirs, without chroot.
 */
export function loaderQemu(root: string): QemuCommand {
  const libdirs = ['usr/lib/x86_64-linux-gnu', 'lib/x86_64-linux-gnu'].map((d) => join(root, d));
  const ldso = join(root, 'usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2');
  // Firmware dirs that Debian's QEMU searches (it is built with --firmwarepath=these).
  const dataDirs = ['usr/share/qemu', 'usr/share/seabios', 'usr/lib/ipxe/qemu']
    .map((d) => join(root, d))
    .filter((d) => existsSync(d));
  return {
    file: ldso,
    prefixArgs: [
      '--inhibit-cache', // never mix in the host's libraries from /etc/ld.so.cache
      '--library-path',
      libdirs.join(':'),
      '--argv0',
      'qemu-system-x86_64',
      join(root, 'usr/bin/qemu-system-x86_64'),
      ...dataDirs.flatMap((d) => ['-L', d]),
    ],
    env: { QEMU_MODULE_DIR: join(root, 'usr/lib/x86_64-linux-gnu/qemu') },
    version: '',
    method: 'loader',
  };
}

export const MIN_QEMU: readonly [number, number] = [10, 1];

export interface QemuCheck {
  ok: boolean;
  version: string;
  reason?: string;
}

/** Runs `--version` and `-device help`: usable if >= 10.1 and it has vfio-user-pci. */
export async function checkQemu(q: QemuCommand): Promise<QemuCheck> {
  const spec = (args: string[]) => qemuSpawn(q, args);
  let v;
  try {
    const s = spec(['--version']);
    v = await runCapture(s.file, s.args, { env: s.env, timeoutMs: 30_000 });
  } catch (e) {
    return { ok: false, version: '', reason: `cannot run: ${(e as Error).message}` };
  }
  const m = /version (\d+)\.(\d+)(?:\.(\d+))?/.exec(v.stdout);
  if (v.code !== 0 || !m) {
    return { ok: false, version: '', reason: `--version failed: ${(v.stderr || v.stdout).trim().slice(0, 300)}` };
  }
  const version = `${m[1]}.${m[2]}.${m[3] ?? 0}`;
  const [maj, min] = [Number(m[1]), Number(m[2])];
  if (maj < MIN_QEMU[0] || (maj === MIN_QEMU[0] && min < MIN_QEMU[1])) {
    return { ok: false, version, reason: `version ${version} < ${MIN_QEMU.join('.')}` };
  }
  const s = spec(['-machine', 'none', '-device', 'help']);
  const h = await runCapture(s.file, s.args, { env: s.env, timeoutMs: 30_000 });
  if (!/name "vfio-user-pci"/.test(h.stdout)) {
    return { ok: false, version, reason: 'no vfio-user-pci in -device help' };
  }
  return { ok: true, version };
}
