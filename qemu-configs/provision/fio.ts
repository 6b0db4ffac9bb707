// fio for the guest: Debian trixie's dynamically linked fio, with every shared
// library it loads and the dynamic loader, as a separate initramfs archive that
// only the boots that run fio append to the base image.
//
// The packages are fio and the runtime libraries of its dependency closure
// (its Depends also name python3 and init-system-helpers, which serve only its
// helper scripts and service file). What goes into the archive is decided by
// the ELF files themselves: the interpreter and the DT_NEEDED closure,
// resolved as the loader will in the guest (DT_RUNPATH, then the system
// directories), so a library missing from the packages is an error here, not
// in the guest.
import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink, symlink } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { join, posix } from 'node:path';
import { run } from '../exec.js';
import { removeTree, type ProgressLog } from '../cache.js';
import { cpioArchive, type CpioEntry } from '../cpio.js';
import { ensureHostTool } from './host-tools.js';
import { readElfDynamic } from './elf-dynamic.js';
import type { TrixieApt } from './apt.js';

/** Where fio lives in the guest (on the base image's PATH). */
export const GUEST_FIO = '/usr/bin/fio';

/** The loader's search directories after DT_RUNPATH (Debian's ld.so, no ld.so.cache in the guest). */
const SYSTEM_DIRS = ['/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/lib', '/usr/lib'];

/** Runtime library packages: what the closure follows. */
const isLibraryPackage = (p: string) => /^(lib[a-z0-9]|zlib1g$)/.test(p);

/** Bounds against a broken package graph or symlink loop. */
const MAX_PACKAGES = 200;
const MAX_LINK_HOPS = 40;

export interface FioArchive {
  /** gzip'd cpio with /usr/bin/fio, its libraries and the loader. */
  image: Buffer;
  /** The package version, e.g. "3.39-1". */
  version: string;
  /** Guest paths of the shared objects (loader included). */
  libraries: string[];
  packages: number;
}

/** Downloads fio and its library closure into `workDir` and builds the archive (the work dir is removed after). */
export async function buildFioArchive(apt: TrixieApt, workDir: string, log: ProgressLog): Promise<FioArchive> {
  const dpkgDeb = await ensureHostTool('dpkg-deb', 'dpkg', log);
  const packages = await libraryClosure(apt, 'fio');
  await removeTree(workDir);
  const debs = join(workDir, 'debs');
  const root = join(workDir, 'root');
  await mkdir(debs, { recursive: true });
  await mkdir(root, { recursive: true });
  try {
    log(`downloading fio and ${packages.length - 1} library packages...`);
    await apt.downloadAll(packages, debs);
    const files = (await readdir(debs)).filter((f) => f.endsWith('.deb'));
    const fioDeb = files.find((f) => f.startsWith('fio_'));
    if (!fioDeb) throw new Error('apt-get download left no fio .deb');
    for (const f of files) await run(dpkgDeb, ['-x', join(debs, f), root]);
    await mergeUsr(root);
    const version = (await run(dpkgDeb, ['-f', join(debs, fioDeb), 'Version'])).stdout.trim();
    const objects = await sharedObjectClosure(root, GUEST_FIO);
    const entries: CpioEntry[] = [];
    const dirs = new Set<string>();
    const addFile = (guestPath: string, data: Buffer) => {
      const parts = guestPath.split('/').filter(Boolean);
      for (let i = 1; i < parts.length; i++) {
        const d = parts.slice(0, i).join('/');
        if (!dirs.has(d)) {
          dirs.add(d);
          entries.push({ type: 'dir', path: d, mode: 0o755 });
        }
      }
      entries.push({ type: 'file', path: guestPath, data, mode: 0o755 });
    };
    addFile(GUEST_FIO, await readFile(await realInRoot(root, GUEST_FIO)));
    for (const o of objects) addFile(o.guestPath, await readFile(o.file));
    return {
      image: gzipSync(cpioArchive(entries), { level: 6 }),
      version,
      libraries: objects.map((o) => o.guestPath),
      packages: packages.length,
    };
  } finally {
    await removeTree(workDir);
  }
}

/**
 * trixie's packages install below /usr only; its base-files makes /lib, /lib64,
 * /bin and /sbin links into /usr (so PT_INTERP /lib64/ld-linux-x86-64.so.2 is
 * /usr/lib64/...). The unpacked tree gets the same links.
 */
async function mergeUsr(root: string): Promise<void> {
  for (const d of ['bin', 'sbin', 'lib', 'lib64']) {
    if (!existsSync(join(root, d)) && existsSync(join(root, 'usr', d))) await symlink(`usr/${d}`, join(root, d));
  }
}

/** `pkg` and the library packages it depends on, directly or not. */
async function libraryClosure(apt: TrixieApt, pkg: string): Promise<string[]> {
  const seen = new Set<string>([pkg]);
  const queue = [pkg];
  while (queue.length) {
    for (const d of await apt.depends(queue.shift()!)) {
      if (d.startsWith('<') || !isLibraryPackage(d) || seen.has(d)) continue;
      if (seen.size >= MAX_PACKAGES) throw new Error(`fio's library closure passes ${MAX_PACKAGES} packages`);
      seen.add(d);
      queue.push(d);
    }
  }
  return [...seen];
}

export interface SharedObject {
  /** Where the guest's loader looks for it (and where the archive puts it). */
  guestPath: string;
  /** The file's contents on the host (symlinks resolved inside the unpacked root). */
  file: string;
}

/**
 * The interpreter and every shared object `exe` loads, directly or not, found
 * in `root` (an unpacked file tree standing for the guest's /).
 */
export async function sharedObjectClosure(root: string, exe: string): Promise<SharedObject[]> {
  const top = readElfDynamic(await readFile(await realInRoot(root, exe)));
  if (!top.interpreter) throw new Error(`${exe} has no program interpreter (statically linked?)`);
  const loader = await realInRoot(root, top.interpreter);
  const out: SharedObject[] = [{ guestPath: top.interpreter, file: loader }];
  const found = new Map<string, string>(); // soname → guest path
  const queue: { path: string; needed: string[]; runpath: string[] }[] = [{ path: exe, ...top }];
  while (queue.length) {
    const obj = queue.shift()!;
    const origin = posix.dirname(obj.path);
    const dirs = [...obj.runpath.map((d) => d.replace(/\$\{?ORIGIN\}?/g, origin)), ...SYSTEM_DIRS];
    for (const soname of obj.needed) {
      if (found.has(soname)) continue;
      if (soname.includes('/')) throw new Error(`${obj.path} needs a library by path (${soname})`);
      let hit: { guestPath: string; file: string } | undefined;
      for (const d of dirs) {
        const guestPath = posix.join(d, soname);
        const file = await realInRoot(root, guestPath).catch(() => undefined);
        if (file) {
          hit = { guestPath, file };
          break;
        }
      }
      if (!hit) throw new Error(`${obj.path} needs ${soname}, which no downloaded package has (looked in ${dirs.join(', ')})`);
      found.set(soname, hit.guestPath);
      // The loader is in the list already, under its PT_INTERP path.
      if (hit.file === loader) continue;
      out.push(hit);
      queue.push({ path: hit.guestPath, ...readElfDynamic(await readFile(hit.file)) });
    }
  }
  return out;
}

/**
 * The host path of guest path `p` inside `root`, following symlinks as the guest
 * would (an absolute target is relative to `root`); throws if it does not exist.
 */
export async function realInRoot(root: string, p: string): Promise<string> {
  // As in the guest, '..' never climbs above the root.
  let parts = posix.normalize(`/${p}`).split('/').filter(Boolean);
  for (let hops = 0; ; ) {
    let i = 0;
    for (; i < parts.length; i++) {
      const host = join(root, ...parts.slice(0, i + 1));
      const st = await lstat(host);
      if (!st.isSymbolicLink()) continue;
      if (++hops > MAX_LINK_HOPS) throw new Error(`${p}: too many symbolic links`);
      const target = await readlink(host);
      const base = target.startsWith('/') ? [] : parts.slice(0, i);
      const resolved = posix.normalize(posix.join('/', ...base, target, ...parts.slice(i + 1)));
      parts = resolved.split('/').filter(Boolean);
      break;
    }
    if (i === parts.length) return join(root, ...parts);
  }
}
