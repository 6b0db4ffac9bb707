// Devices from the user's own ESM module: `serve ./my-device.js`, a config
// file's `"kind": "./my-device.js"` and startServer's kinds; bad modules get
// errors that name the module and what is missing.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startServer } from '../../server/runtime.js';
import { loadConfigFile } from '../../cli/config.js';
import { serveConfig } from '../../cli/cli.js';
import { DefinitionError } from '../../devices/definition.js';
import { loadDeviceModule } from '../../devices/load.js';
import { VfioUserClient } from '../../testing/vfio-user-client.js';
import { startServeChild } from './serve-child.js';
import { Command } from '../../protocol/constants.js';
import { encodeDeviceGetInfoRequest, decodeDeviceGetInfoReply } from '../../protocol/commands/device-get-info.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const bin = path.join(root, 'bin/vfio-user-ts.js');

/** A whole device in plain JS with no imports: GET_INFO reports `regions` from its options. */
const TINY = `export default {
  kind: 'tiny',
  description: 'a test device',
  options: {
    regions: { type: 'u32', help: 'regions it reports', min: 1, max: 9, default: 9 },
    label: { type: 'string', help: 'a label' },
  },
  create(options, context) {
    const device = {
      name: context.name,
      info: () => ({ flags: 3, numRegions: options.regions, numIrqs: 5 }),
      regionInfo: () => ({ size: 0, flags: 0 }),
      regionRead: () => Buffer.alloc(0),
      regionWrite() {},
      irqInfo: () => ({ count: 0, flags: 0 }),
      setIrqs() {},
      reset() {},
      attachClient() {},
      detachClient() {},
    };
    return { device, label: options.label };
  },
};
`;

function tempDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-sdk-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // As a user's project would: .js files are ES modules.
  fs.writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
  return dir;
}

function write(dir: string, file: string, text: string): string {
  const p = path.join(dir, file);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, text);
  return p;
}

async function getInfo(sock: string): Promise<{ flags: number; numRegions: number; numIrqs: number }> {
  const c = await VfioUserClient.open(sock);
  try {
    const r = await c.request(Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest());
    if (r.errno) throw new Error(`GET_INFO errno ${r.errno}`);
    return decodeDeviceGetInfoReply(r.payload);
  } finally {
    c.close();
  }
}

t.test('bad modules: the error names the module and what is missing', async (t) => {
  const dir = tempDir(t);
  write(dir, 'named.js', 'export const device = {};\n');
  write(dir, 'empty.mjs', '');
  write(dir, 'half.js', "export default { kind: 'half', options: {} };\n");
  write(dir, 'badopt.js', "export default { kind: 'b', description: 'd', options: { n: { type: 'number', help: 'n' } }, create() {} };\n");
  write(dir, 'throws.js', "throw new Error('boom at load');\n");
  const load = (f: string) => loadDeviceModule(f, dir);
  await t.rejects(load('./named.js'), { message: /^device module \.\/named\.js: no default export .*it exports only device\)$/ });
  await t.rejects(load('./empty.mjs'), { message: /^device module \.\/empty\.mjs: no default export/ });
  await t.rejects(load('./half.js'), { message: /^device module \.\/half\.js: not a valid device definition: 'description' must be a non-empty string; 'create' must be a function/ });
  await t.rejects(load('./badopt.js'), { message: /^device module \.\/badopt\.js: .*option 'n': 'type' must be one of u32, size, string, boolean \(got "number"\)/ });
  await t.rejects(load('./throws.js'), { message: /^device module \.\/throws\.js .*cannot load it: boom at load/ });
  await t.rejects(load('./missing.js'), { message: /^device module \.\/missing\.js \(.*\): no such file$/ });
  t.ok((await load('./half.js').catch((e: unknown) => e)) instanceof DefinitionError, 'a DefinitionError (the CLI exits with 2)');
});

t.test('startServer serves a module kind, a definition and a ready model; GET_INFO answers', async (t) => {
  const dir = tempDir(t);
  const mod = write(dir, 'tiny.js', TINY);
  const { default: definition } = (await import(mod)) as { default: import('../../devices/definition.js').DeviceDefinition };
  const ready = await definition.create({ regions: 2 }, { name: 'ready', log: console });
  const rt = await startServer({
    devices: [
      { name: 'bypath', kind: path.relative(process.cwd(), mod).replace(/^(?!\.)/, './'), socket: path.join(dir, 'a.sock'), options: { regions: '0x4' } },
      { name: 'bydef', kind: definition, socket: path.join(dir, 'b.sock') },
      { name: 'ready', model: ready, socket: path.join(dir, 'c.sock') },
    ],
  });
  t.teardown(() => rt.close());
  t.match(await getInfo(path.join(dir, 'a.sock')), { flags: 3, numRegions: 4, numIrqs: 5 }, 'options from a string, parsed by the schema');
  t.equal((await getInfo(path.join(dir, 'b.sock'))).numRegions, 9, 'the default applies');
  t.equal((await getInfo(path.join(dir, 'c.sock'))).numRegions, 2);
  t.equal(rt.models.get('ready'), ready, 'the ready model is served as it is');
  await t.rejects(
    startServer({ devices: [{ name: 'x', kind: definition, socket: path.join(dir, 'd.sock'), options: { colour: 1 } }] }),
    { message: "device 'x': 'colour': unknown option for a tiny device (known: regions, label)" },
  );
  t.notOk(fs.existsSync(path.join(dir, 'd.sock')), 'nothing listens after a refused option');
});

t.test('a config file names a module relative to its own folder', async (t) => {
  const dir = tempDir(t);
  write(dir, 'devs/tiny.js', TINY);
  const cfgFile = write(dir, 'devs/config.json', JSON.stringify({
    devices: [{ kind: './tiny.js', socket: path.join(dir, 't.sock'), regions: 3, label: 'hi' }],
  }));
  const cfg = await loadConfigFile(cfgFile);
  t.equal(cfg.devices[0]!.name, 'tiny0', 'the default name comes from the definition');
  t.equal(cfg.devices[0]!.kind.kind, 'tiny');
  t.same(cfg.devices[0]!.options, { regions: 3, label: 'hi' });
  const rt = await startServer(cfg);
  t.teardown(() => rt.close());
  t.equal((await getInfo(path.join(dir, 't.sock'))).numRegions, 3);
  t.equal((rt.models.get('tiny0') as unknown as { label: string }).label, 'hi');

  write(dir, 'devs/bad.json', JSON.stringify({ devices: [{ kind: './tiny.js', socket: path.join(dir, 'u.sock'), colour: 'red' }] }));
  await t.rejects(loadConfigFile(path.join(dir, 'devs/bad.json')), {
    message: /devs\/bad\.json: devices\[0\]: 'colour': unknown option for the device module \.\/tiny\.js \(known: regions, label\)$/,
  });
  write(dir, 'devs/nomod.json', JSON.stringify({ devices: [{ kind: './none.js', socket: path.join(dir, 'v.sock') }] }));
  await t.rejects(loadConfigFile(path.join(dir, 'devs/nomod.json')), { message: /nomod\.json: devices\[0\]: device module \.\/none\.js .*no such file/ });
  write(dir, 'devs/unknown.json', JSON.stringify({ devices: [{ kind: 'scsi', socket: path.join(dir, 'w.sock') }] }));
  await t.rejects(loadConfigFile(path.join(dir, 'devs/unknown.json')), { message: /devices\[0\]: unknown device kind 'scsi' \(known: gpio, rng, blk, nvme; a device module is a path/ });
});

t.test('serve flags for a module device come from its schema', async (t) => {
  const dir = tempDir(t);
  const mod = write(dir, 'tiny.js', TINY);
  const cfg = await serveConfig([mod, '--socket', path.join(dir, 's.sock'), '--regions', '5', '--label', 'x']);
  t.same(cfg.devices[0]!.options, { regions: 5, label: 'x' });
  await t.rejects(serveConfig([mod, '--socket', path.join(dir, 's.sock'), '--colour', 'red']), {
    message: /^unknown option --colour for .*tiny\.js \(its options: --regions, --label; serve options: --log-level, /,
  });
  await t.rejects(serveConfig([mod, '--socket', path.join(dir, 's.sock'), '--regions', '10']), { message: '--regions must be at most 9' });
});

t.test('the CLI: help shows a module device options; serve answers GET_INFO', async (t) => {
  const dir = tempDir(t);
  write(dir, 'tiny.js', TINY);
  const help = spawnSync(process.execPath, [bin, 'serve', './tiny.js', '--help'], { cwd: dir, encoding: 'utf8' });
  t.equal(help.status, 0, help.stderr);
  t.match(help.stdout, /usage: vfio-user-ts serve \.\/tiny\.js --socket PATH/);
  t.match(help.stdout, /--regions <n>\s+regions it reports \(1\.\.9, default 9\)/);
  t.match(help.stdout, /--label <value>\s+a label\n/);

  const bad = spawnSync(process.execPath, [bin, 'serve', './tiny.js', '--socket', 'x.sock', '--colour', 'red'], { cwd: dir, encoding: 'utf8' });
  t.equal(bad.status, 2, 'a usage error');
  t.match(bad.stderr, /unknown option --colour for \.\/tiny\.js \(its options: --regions, --label;/);

  const sock = path.join(dir, 'cli.sock');
  const child = await startServeChild(process.execPath, [bin, 'serve', './tiny.js', '--socket', sock, '--regions', '7'], dir);
  t.match(child.stderr(), `vfio-user-ts: serving tiny 'tiny0' on ${sock}`);
  t.match(await getInfo(sock), { flags: 3, numRegions: 7, numIrqs: 5 });
  child.kill('SIGTERM');
  t.equal(await child.exited, 0, 'SIGTERM exits cleanly');
  t.notOk(fs.existsSync(sock), 'and removes the socket');
});
