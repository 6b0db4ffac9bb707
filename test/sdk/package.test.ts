// The package as a user gets it: `npm pack`, then `npm install --omit=dev
// <tarball>` in an empty project builds only the addon (no TypeScript), and
// the installed CLI lists the built-in kinds and serves a device module that
// imports the installed package.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startServeChild } from './serve-child.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { name: string; version: string };

/** A device module as its author would ship it, against the installed package's public API. */
const DEVICE = `import { defineDevice, PciDevice } from 'vfio-user-ts/device';
export default defineDevice({
  kind: 'ext',
  description: 'an out-of-tree device',
  options: { id: { type: 'u32', help: 'PCI device id', max: 0xffff, hex: true, default: 0x11e8 } },
  create: (options, context) => ({
    device: new PciDevice({ name: context.name, ids: { vendor: 0x1234, device: options.id, classCode: 0xff0000 } }, { log: context.log }),
  }),
});
`;

/** Reads the config-space ids of the device on `sock` with the installed testing client. */
const PROBE = `import { VfioUserClient, Command, encodeRegionReadRequest, decodeRegionReadReply } from 'vfio-user-ts/testing';
const c = await VfioUserClient.open(process.argv[2]);
const r = await c.request(Command.REGION_READ, encodeRegionReadRequest({ region: 7, offset: 0, count: 4 }));
const ids = decodeRegionReadReply(r.payload, 4).data;
c.close();
console.log(ids.readUInt16LE(0).toString(16) + ':' + ids.readUInt16LE(2).toString(16));
`;

// As in a fresh shell: `npm exec -c CMD` around this test would hand its --call to our npx.
const env = { ...process.env };
delete env.npm_config_call;

function run(cmd: string, args: string[], opts: SpawnSyncOptions): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, ...opts });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

t.test('npm pack, install --omit=dev in an empty project, then the CLI and a device module', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-pack-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // dist/ is what this suite runs from; --ignore-scripts skips `prepare` recompiling it.
  const pack = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: root });
  t.equal(pack.status, 0, pack.out);
  const files = (JSON.parse(pack.out.slice(pack.out.indexOf('['))) as [{ files: { path: string }[] }])[0].files.map((f) => f.path);
  t.ok(files.includes('dist/api/device.d.ts'), 'declarations');
  t.ok(files.includes('dist/cli/cli.js'), 'compiled JS');
  t.ok(files.includes('native/vfio_native.c') && files.includes('binding.gyp'), "the addon's source");
  t.notOk(files.some((f) => f.startsWith('dist/test/') || f.startsWith('dist/bench/') || f.endsWith('.ts') && !f.endsWith('.d.ts')), 'no tests, benchmarks or TS sources');

  const app = path.join(dir, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  const tarball = path.join(dir, `${pkg.name}-${pkg.version}.tgz`);
  const install = run('npm', ['install', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: app });
  t.equal(install.status, 0, install.out);
  const installed = path.join(app, 'node_modules', pkg.name);
  t.ok(fs.existsSync(path.join(installed, 'build/Release/vfio_native.node')), 'the install script built the addon');
  t.notOk(fs.existsSync(path.join(app, 'node_modules/typescript')), 'without TypeScript');

  const devices = run('npx', ['vfio-user-ts', 'devices'], { cwd: app });
  t.equal(devices.status, 0, devices.out);
  t.same(devices.out.trim().split('\n').map((l) => l.split('\t')[0]), ['gpio', 'rng', 'blk', 'nvme']);

  fs.writeFileSync(path.join(app, 'ext.js'), DEVICE);
  fs.writeFileSync(path.join(app, 'probe.js'), PROBE);
  const sock = path.join(dir, 'ext.sock');
  // The installed bin itself (npx would not pass SIGTERM on to it).
  const bin = path.join(app, 'node_modules/.bin/vfio-user-ts');
  const child = await startServeChild(bin, ['serve', './ext.js', '--socket', sock, '--id', '0xabcd'], app);
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const probe = run(process.execPath, ['probe.js', sock], { cwd: app });
  t.equal(probe.out.trim(), '1234:abcd', 'the module device answers with the ids its option set');
  child.kill('SIGTERM');
  t.equal(await child.exited, 0, child.stderr());
});
