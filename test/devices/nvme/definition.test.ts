// The nvme kind from the command line and config files: `--disk` repeated
// becomes the namespace list, every option is checked (errors, not crashes),
// and the controller it builds has one namespace per image.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { serveConfig } from '../../../cli/cli.js';
import { validateConfig } from '../../../cli/config.js';
import { createDevice } from '../../../devices/index.js';
import { checkDefinition, describeOption } from '../../../devices/definition.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvme-def-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const sock = path.join(dir, 'n.sock');
const a = path.join(dir, 'a.img');
const b = path.join(dir, 'b.img');

t.test('serve nvme --disk A --disk B: a list, in order', async (t) => {
  const cfg = await serveConfig(['nvme', '--socket', sock, '--disk', a, '--disk', b, '--size', '1M', '--lba-size', '4096', '--queues', '2']);
  const o = cfg.devices[0]!.options;
  t.same(o.disk, [a, b]);
  t.equal(o.size, 1 << 20);
  t.equal(o.lbaSize, 4096);
  t.equal(o.queues, 2);
  t.equal(o.queueSize, 1024, 'default');
  t.equal(o.readonly, false, 'default');
});

t.test('one --disk is a list of one', async (t) => {
  const cfg = await serveConfig(['nvme', '--socket', sock, '--disk', a]);
  t.same(cfg.devices[0]!.options.disk, [a]);
});

t.test('bad command lines are errors', async (t) => {
  await t.rejects(serveConfig(['nvme', '--socket', sock]), /--disk is required/, 'no --disk');
  await t.rejects(serveConfig(['nvme', '--socket', sock, '--disk', a, '--queues', '0']), /--queues must be at least 1/, 'zero queues');
  await t.rejects(serveConfig(['nvme', '--socket', sock, '--disk', a, '--queues', '65']), /--queues must be at most 64/, '65 queues');
  await t.rejects(serveConfig(['nvme', '--socket', sock, '--disk', a, '--queue-size', '1']), /--queue-size must be at least 2/, 'queue of one');
  await t.rejects(serveConfig(['nvme', '--socket', sock, '--disk', a, '--size', 'lots']), /is not a size/, 'a size that is not one');
  await t.rejects(serveConfig(['nvme', '--socket', sock, '--disk', a, '--readonly', '--readonly']), /given twice/, 'a flag twice');
  await t.rejects(serveConfig(['nvme', '--socket', sock, '--disk']), /needs a value/, '--disk without a value');
});

t.test('config files: "disk" as an array or a string', async (t) => {
  const cfg = await validateConfig({ devices: [{ kind: 'nvme', socket: sock, disk: [a, b], serial: 'X1' }] }, 'test.json');
  t.same(cfg.devices[0]!.options.disk, [a, b]);
  const one = await validateConfig({ devices: [{ kind: 'nvme', socket: sock, disk: a }] }, 'test.json');
  t.same(one.devices[0]!.options.disk, [a]);
  await t.rejects(validateConfig({ devices: [{ kind: 'nvme', socket: sock, disk: [] }] }, 'test.json'), /at least one value/);
  await t.rejects(validateConfig({ devices: [{ kind: 'nvme', socket: sock, disk: [a, 7] }] }, 'test.json'), /disk'\[1\] must be a non-empty string/);
  await t.rejects(validateConfig({ devices: [{ kind: 'nvme', socket: sock, disk: a, lbaSize: 'big' }] }, 'test.json'), /'lbaSize': 'big' is not an unsigned number/);
  await t.rejects(validateConfig({ devices: [{ kind: 'nvme', socket: sock, disk: a, bogus: 1 }] }, 'test.json'), /unknown option/);
});

t.test('the controller: one namespace per image; bad values are errors', async (t) => {
  const n = createDevice('nvme', { disk: [a, b], size: 1 << 20, serial: 'S' } as never);
  t.teardown(() => n.close());
  t.equal(n.namespaces.length, 2);
  t.equal(n.namespaces[1]!.blocks, 2048);
  t.throws(() => createDevice('nvme', { disk: [a], lbaSize: 1024 } as never), /lbaSize must be 512 or 4096/, 'LBA size 1024');
  t.throws(() => createDevice('nvme', { disk: [a], serial: 'x'.repeat(21) } as never), /serial must be 1..20/, 'serial of 21 characters');
  t.throws(() => createDevice('nvme', { disk: [path.join(dir, 'missing.img')] } as never), /give a size to create it/, 'a missing image without a size');
  t.throws(() => createDevice('nvme', { disk: [a], size: 1000 } as never), /multiple of 512/, 'a size that is not whole blocks');
});

t.test('the schema checks of repeatable options', async (t) => {
  const base = { kind: 'x', description: 'x', create: () => ({}) };
  t.throws(() => checkDefinition({ ...base, options: { on: { type: 'boolean', help: 'h', repeatable: true } } }, 'm.js'), /a boolean option cannot be repeatable/);
  t.throws(() => checkDefinition({ ...base, options: { d: { type: 'string', help: 'h', repeatable: 'yes' } } }, 'm.js'), /'repeatable' must be true or false/);
  t.ok(checkDefinition({ ...base, options: { d: { type: 'string', help: 'h', repeatable: true, default: ['a', 'b'] } } }, 'm.js'), 'a list default');
  t.match(describeOption({ type: 'string', help: 'an image', repeatable: true }), /repeatable/, 'help says so');
});
