// Fault rules at run time: the control socket's fault.add/list/clear/release
// (a bad rule is an error frame with errno and a message naming the field,
// and the connection goes on), the `fault` CLI over it, and the --faults
// file and config checks.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { Command } from '../../protocol/constants.js';
import { Errno } from '../../protocol/errno.js';
import { encodeRegionReadRequest } from '../../protocol/commands/region-access.js';
import { ControlClient } from '../../server/control-client.js';
import { faultCommand } from '../../cli/fault-cli.js';
import { serveConfig } from '../../cli/cli.js';
import { ConfigError, validateConfig } from '../../cli/config.js';
import { UsageError } from '../../cli/cli-args.js';
import { FaultsFileError, loadFaultsFile } from '../../faults/file.js';
import { CFG, assertServes, openClient, send } from '../conformance/helpers.js';
import { startGpioWithFaults } from './helpers.js';

const readIds = encodeRegionReadRequest({ offset: 0, region: CFG, count: 4 });
const eio = { id: 'e', match: { command: 'REGION_READ', region: CFG, offset: [0, 4] }, action: { type: 'error', errno: 'EIO' } };

t.test('fault.add, fault.list with counts, fault.clear over the control socket', async (t) => {
  const fx = await startGpioWithFaults(t, { control: true });
  const ctl = await ControlClient.connect(fx.control!);
  t.teardown(() => ctl.close());
  const added = await ctl.request('fault.add', { rule: eio });
  t.same(added, { id: 1, result: { rule: { id: 'e', match: { command: ['REGION_READ'], region: CFG, offset: [0, 4] }, seed: 0, action: { type: 'error', errno: Errno.EIO } } } });
  const c = await openClient(t, fx);
  t.equal((await send(c, Command.REGION_READ, readIds)).reply.errno, Errno.EIO, 'the rule added at run time fires');
  const listed = await ctl.request('fault.list');
  t.match(listed, { result: { rules: [{ rule: { id: 'e' }, matched: 1, injected: 1 }], injected: { gpio0: { error: 1 } } } });
  const auto = await ctl.request('fault.add', { rule: { match: { command: 'DEVICE_RESET' }, action: { type: 'drop' } } });
  t.match(auto, { result: { rule: { id: 'f2' } } }, 'a rule without id gets one');
  t.same(await ctl.request('fault.clear', { id: 'e' }), { id: 4, result: { removed: 1 } });
  t.same(await ctl.request('fault.clear'), { id: 5, result: { removed: 1 } });
  await assertServes(t, c, 'no rule left');
  t.match(await ctl.request('fault.list'), { result: { rules: [], injected: { gpio0: { error: 1 } } } }, 'totals outlive the rules');
});

t.test('bad rules and arguments: errno and a message naming the field; the connection goes on', async (t) => {
  const fx = await startGpioWithFaults(t, { control: true });
  const ctl = await ControlClient.connect(fx.control!);
  t.teardown(() => ctl.close());
  const bad: Array<[Record<string, unknown>, number, RegExp]> = [
    [{}, Errno.EINVAL, /needs 'rule'/],
    [{ rule: 5 }, Errno.EINVAL, /a rule must be an object/],
    [{ rule: { action: { type: 'explode' } } }, Errno.EINVAL, /action\.type: must be one of error, delay/],
    [{ rule: { action: { type: 'error', errno: 'ENOPE' } } }, Errno.EINVAL, /action\.errno: must be an errno name/],
    [{ rule: { action: { type: 'delay', ms: -1 } } }, Errno.EINVAL, /action\.ms: must be an integer in \[0, 600000\]/],
    [{ rule: { match: { iova: [0, 4096] }, action: { type: 'drop' } } }, Errno.EINVAL, /'iova' does not apply to a message rule/],
    [{ rule: { match: { command: 'NOT_A_COMMAND' }, action: { type: 'drop' } } }, Errno.EINVAL, /match\.command: must be a command name/],
    [{ rule: { match: { offset: [8, 4] }, action: { type: 'drop' } } }, Errno.EINVAL, /match\.offset: is empty/],
    [{ rule: { probability: 1.5, action: { type: 'drop' } } }, Errno.EINVAL, /probability: must be a number in \(0, 1\]/],
    [{ rule: { window: { fromMs: 10, untilMs: 5 }, action: { type: 'drop' } } }, Errno.EINVAL, /untilMs 5 is not after fromMs 10/],
    [{ rule: { action: { type: 'corrupt', field: 'msgId', xor: 0x10000 } } }, Errno.EINVAL, /action\.xor: must be an integer in \[1, 65535\]/],
    [{ rule: { action: { type: 'drop' }, color: 'red' } }, Errno.EINVAL, /unknown field 'color'/],
    [{ rule: { device: 'nope', action: { type: 'drop' } } }, Errno.ENODEV, /no device 'nope'/],
    [{ rule: { id: 'has space', action: { type: 'drop' } } }, Errno.EINVAL, /id: must match/],
    [{ rule: eio, extra: 1 }, Errno.EINVAL, /unknown argument 'extra'/],
  ];
  for (const [args, errno, message] of bad) {
    const r = await ctl.request('fault.add', args);
    t.match(r, { errno, message }, JSON.stringify(args));
  }
  t.match(await ctl.request('fault.clear', { id: 'missing' }), { errno: Errno.ENOENT, message: /no rule 'missing'/ });
  t.match(await ctl.request('fault.list', { device: 'nope' }), { errno: Errno.ENODEV });
  t.match(await ctl.request('fault.add', { rule: eio }), { result: { rule: { id: 'e' } } }, 'the same connection still works');
  t.match(await ctl.request('fault.add', { rule: eio }), { errno: Errno.EEXIST, message: /rule 'e' exists already/ });
  t.match(await ctl.request('fault.list'), { result: { rules: [{ rule: { id: 'e' }, matched: 0, injected: 0 }] } }, 'only the good rule is in force');
});

t.test('the fault CLI: add (JSON or --file), list, release, clear; errors exit 1', async (t) => {
  const fx = await startGpioWithFaults(t, { control: true });
  const out: string[] = [];
  const err: string[] = [];
  const io = { out: (s: string) => out.push(s), err: (s: string) => err.push(s) };
  const ctl = ['--control', fx.control!];
  t.equal(await faultCommand(['add', ...ctl, JSON.stringify(eio)], io), 0);
  const file = path.join(fx.dir, 'more.json');
  fs.writeFileSync(file, JSON.stringify({ rules: [{ id: 'h', match: { command: 'DEVICE_RESET' }, action: { type: 'hold' } }] }));
  t.equal(await faultCommand(['add', ...ctl, '--file', file], io), 0);
  const c = await openClient(t, fx);
  await send(c, Command.REGION_READ, readIds);
  out.length = 0;
  t.equal(await faultCommand(['list', ...ctl], io), 0);
  const listed = JSON.parse(out[0]!);
  t.same(listed.result.rules.map((r: { rule: { id: string }; injected: number }) => [r.rule.id, r.injected]), [['e', 1], ['h', 0]]);
  t.equal(await faultCommand(['release', ...ctl, '--id', 'h'], io), 0);
  t.equal(await faultCommand(['clear', ...ctl, '--id', 'e'], io), 0);
  t.equal(await faultCommand(['clear', ...ctl, '--id', 'e'], io), 1, 'an unknown id');
  t.match(err.join(''), /fault\.clear: ENOENT: no rule 'e'/);
  t.equal(await faultCommand(['add', ...ctl, '{"action":{"type":"nope"}}'], io), 1, 'a bad rule');
  t.match(err.join(''), /action\.type: must be one of/);
  for (const [argv, message] of [
    [['add', ...ctl, '{not json'], /not valid JSON/],
    [['list'], /needs --control PATH/],
    [['frobnicate', ...ctl], /needs add, list, clear or release/],
  ] as const) {
    const e = await faultCommand(argv, io).then(() => null, (x: unknown) => x);
    t.ok(e instanceof UsageError && message.test(e.message), `usage error: ${argv.join(' ')}`);
  }
});

t.test('--faults file and config checks: each problem named, good rules in force from the start', async (t) => {
  const fx = await startGpioWithFaults(t);
  const f = (name: string, text: string) => {
    const p = path.join(fx.dir, name);
    fs.writeFileSync(p, text);
    return p;
  };
  const devices = ['gpio0'];
  const thrown = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      return e;
    }
    return null;
  };
  t.ok(thrown(() => loadFaultsFile(path.join(fx.dir, 'missing.json'), devices)) instanceof FaultsFileError, 'a missing file');
  t.throws(() => loadFaultsFile(f('a.json', '{'), devices), /not valid JSON/);
  t.throws(() => loadFaultsFile(f('b.json', '[]'), devices), /expected \{ "rules": \[\.\.\.\] \}/);
  t.throws(() => loadFaultsFile(f('c.json', '{"rules":[],"x":1}'), devices), /unknown key 'x'/);
  t.throws(() => loadFaultsFile(f('d.json', '{"rules":{}}'), devices), /'rules' must be an array/);
  t.throws(() => loadFaultsFile(f('e.json', '{"rules":[{"action":{"type":"drop"}},{"action":{"type":"error"}}]}'), devices), /rules\[1\].*action\.errno/);
  t.throws(() => loadFaultsFile(f('g.json', '{"rules":[{"id":"a","action":{"type":"drop"}},{"id":"a","action":{"type":"drop"}}]}'), devices), /id 'a' is used twice/);
  t.throws(() => loadFaultsFile(f('h.json', '{"rules":[{"device":"blk9","action":{"type":"drop"}}]}'), devices), /no device 'blk9'/);
  const good = f('good.json', JSON.stringify({ rules: [eio] }));
  t.same(loadFaultsFile(good, devices), [eio]);

  const sock = path.join(fx.dir, 'x.sock');
  const cfg = await serveConfig(['gpio', '--socket', sock, '--faults', good, '--deterministic', '42']);
  t.same(cfg.faults, [eio]);
  t.equal(cfg.deterministic, 42);
  const e = await serveConfig(['gpio', '--socket', sock, '--faults', f('bad.json', '{"rules":[{"action":{}}]}')]).then(() => null, (x: unknown) => x);
  t.ok(e instanceof ConfigError && /bad.json: rules\[0\] 'f1': action\.type/.test(e.message), `serve --faults with a bad rule: ${String(e)}`);
  await t.rejects(validateConfig({ devices: [{ kind: 'gpio', socket: sock }], faults: [{ action: { type: 'drop', ms: 3 } }] }, 'cfg'), /cfg: faults: rules\[0\].*unknown field 'ms'/);
  await t.rejects(validateConfig({ devices: [{ kind: 'gpio', socket: sock }], deterministic: -1 }, 'cfg'), /deterministic must be an integer/);
  const viaConfig = await validateConfig({ devices: [{ kind: 'gpio', socket: sock }], faults: 'good.json' }, 'cfg', fx.dir);
  t.same(viaConfig.faults, [eio], 'a config names a faults file relative to itself');
});
