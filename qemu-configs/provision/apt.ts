// Downloading Debian trixie packages (.deb files) with the host's apt-get and a private
// configuration in the cache: no change to the host's apt state, no root file system needed.
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../exec.js';
import type { ProgressLog } from '../cache.js';
import { ensureHostFile, ensureHostTool } from './host-tools.js';
import { DEBIAN_MIRROR, SUITE } from './debootstrap.js';

const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

export class TrixieApt {
  private constructor(
    private readonly dir: string,
    private readonly aptGet: string,
    private readonly aptCache: string,
  ) {}

  /** Sets up `dir` and refreshes its package lists (about 10 MB from the mirror). */
  static async open(dir: string, log: ProgressLog): Promise<TrixieApt> {
    const aptGet = await ensureHostTool('apt-get', 'apt', log);
    const aptCache = await ensureHostTool('apt-cache', 'apt', log);
    await ensureHostFile(KEYRING, 'debian-archive-keyring', log);
    for (const d of ['etc/sources.list.d', 'etc/preferences.d', 'lists/partial', 'archives/partial', 'debs']) {
      await mkdir(join(dir, d), { recursive: true });
    }
    await writeFile(join(dir, 'etc/sources.list'), `deb [signed-by=${KEYRING}] ${DEBIAN_MIRROR} ${SUITE} main\n`);
    await writeFile(join(dir, 'status'), '');
    const apt = new TrixieApt(dir, aptGet, aptCache);
    log(`refreshing the ${SUITE} package lists...`);
    await run(aptGet, [...apt.options(), 'update'], { timeoutMs: 10 * 60_000 });
    return apt;
  }

  private options(): string[] {
    const d = this.dir;
    const o: Record<string, string> = {
      'Dir::Etc::SourceList': join(d, 'etc/sources.list'),
      'Dir::Etc::SourceParts': join(d, 'etc/sources.list.d'),
      'Dir::Etc::Preferences': join(d, 'etc/preferences'),
      'Dir::Etc::PreferencesParts': join(d, 'etc/preferences.d'),
      'Dir::State': d,
      'Dir::State::Lists': join(d, 'lists'),
      'Dir::State::status': join(d, 'status'),
      'Dir::Cache': d,
      'Dir::Cache::Archives': join(d, 'archives'),
      'APT::Architecture': 'amd64',
      'APT::Architectures': 'amd64',
      'APT::Sandbox::User': 'root',
    };
    return Object.entries(o).flatMap(([k, v]) => ['-o', `${k}=${v}`]);
  }

  /** The package names in `pkg`'s Depends (every alternative). */
  async depends(pkg: string): Promise<string[]> {
    const r = await run(this.aptCache, [...this.options(), 'depends', pkg]);
    return [...r.stdout.matchAll(/^\s+\|?Depends: (\S+)/gm)].map((m) => m[1]!);
  }

  /** Downloads `pkg` (a name, or name=version) and returns the .deb's path. */
  async download(pkg: string, log: ProgressLog): Promise<string> {
    const debs = join(this.dir, 'debs');
    const name = pkg.split('=')[0]!;
    const isOld = (f: string) => f.startsWith(`${name}_`) && f.endsWith('.deb');
    for (const f of (await readdir(debs)).filter(isOld)) await rm(join(debs, f));
    log(`downloading ${name}...`);
    await run(this.aptGet, [...this.options(), 'download', pkg], { cwd: debs, timeoutMs: 20 * 60_000 });
    const found = (await readdir(debs)).filter(isOld);
    if (found.length !== 1) throw new Error(`apt-get download ${pkg} left ${found.length} .deb files in ${debs}`);
    return join(debs, found[0]!);
  }

  /** Downloads every package of `pkgs` (names) into the directory `dir` with one apt-get run. */
  async downloadAll(pkgs: readonly string[], dir: string): Promise<void> {
    await run(this.aptGet, [...this.options(), 'download', ...pkgs], { cwd: dir, timeoutMs: 20 * 60_000 });
  }
}
