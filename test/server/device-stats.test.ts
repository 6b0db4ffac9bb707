// The control socket's device.stats: a served device model's counters by
// name (a stats() method or a stats object), through startServer's wiring and
// a real control socket; a device without counters, an unknown device, a
// missing name among several devices and counters that are not a flat map of
// numbers each get their error frame, and the connection goes on.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer } from '../../server/runtime.js';
import { ControlClient, ControlError } from '../../server/control-client.js';
import { DEVICE_STATS_OP, MAX_COUNTERS } from '../../server/device-stats.js';
import type { VfioUserDevice } from '../../devices/device.js';
import type { DeviceModel } from '../../devices/definition.js';

/** A model whose device is never connected to: only its name and its counters matter here. */
function counting(name: string, stats?: () => Record<string, number>): DeviceModel {
  const device: VfioUserDevice = {
    name,
    info: () => ({ flags: 0, numRegions: 0, numIrqs: 0 }),
    regionInfo: () => ({ size: 0, flags: 0 }),
    regionRead: () => Buffer.alloc(0),
    regionWrite: () => {},
    irqInfo: () => ({ count: 0, flags: 0 }),
    setIrqs: () => {},
    reset: () => {},
    attachClient: () => {},
    detachClient: () => {},
  };
  const model: DeviceModel & { stats?: () => Record<string, number> } = stats ? { device, stats } : { device };
  return model;
}

async function serve(t: Test, devices: Array<{ name: string; model: DeviceModel }>): Promise<ControlClient> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-devstats-'));
  const rt = await startServer({
    devices: devices.map((d) => ({ ...d, socket: path.join(dir, `${d.name}.sock`) })),
    control: path.join(dir, 'control.sock'),
    logLevel: 'silent',
  });
  const c = await ControlClient.connect(path.join(dir, 'control.sock'));
  t.teardown(async () => {
    c.close();
    await rt.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return c;
}

async function errorOf(p: Promise<unknown>): Promise<ControlError> {
  const e = await p.then(() => null, (x: unknown) => x);
  if (!(e instanceof ControlError)) throw new Error(`expected a ControlError, got ${String(e)}`);
  return e;
}

t.test('device.stats returns the counters of the named device, as they are at the time', async (t) => {
  let commands = 0;
  const c = await serve(t, [
    { name: 'ctl0', model: counting('ctl0', () => ({ commands, doorbells: commands * 2 })) },
    { name: 'plain0', model: counting('plain0') },
  ]);
  t.same(await c.call(DEVICE_STATS_OP, { device: 'ctl0' }), { device: 'ctl0', stats: { commands: 0, doorbells: 0 } });
  commands = 7;
  t.same(await c.call(DEVICE_STATS_OP, { device: 'ctl0' }), { device: 'ctl0', stats: { commands: 7, doorbells: 14 } }, 'read anew on each call');
  const none = await errorOf(c.call(DEVICE_STATS_OP, { device: 'plain0' }));
  t.equal(none.error, 'EOPNOTSUPP', 'a model without stats: EOPNOTSUPP');
  const unknown = await errorOf(c.call(DEVICE_STATS_OP, { device: 'nope' }));
  t.equal(unknown.error, 'ENODEV', 'an unknown device: ENODEV');
  const unnamed = await errorOf(c.call(DEVICE_STATS_OP));
  t.equal(unnamed.error, 'EINVAL', 'no name among two devices: EINVAL');
  const badName = await errorOf(c.call(DEVICE_STATS_OP, { device: 5 }));
  t.equal(badName.error, 'EINVAL', 'a name that is not a string: EINVAL');
  t.same(await c.call(DEVICE_STATS_OP, { device: 'ctl0' }), { device: 'ctl0', stats: { commands: 7, doorbells: 14 } }, 'the connection goes on');
});

t.test("a stats object (virtio-blk's) is read as it is at the time", async (t) => {
  const counts = { reads: 1, writes: 2 };
  const c = await serve(t, [{ name: 'blk', model: { ...counting('blk'), stats: counts } as DeviceModel }]);
  t.same(await c.call(DEVICE_STATS_OP), { device: 'blk', stats: { reads: 1, writes: 2 } });
  counts.reads = 5;
  t.same(await c.call(DEVICE_STATS_OP), { device: 'blk', stats: { reads: 5, writes: 2 } });
});

t.test('with one device the name may be left out', async (t) => {
  const c = await serve(t, [{ name: 'only', model: counting('only', () => ({ commands: 3 })) }]);
  t.same(await c.call(DEVICE_STATS_OP), { device: 'only', stats: { commands: 3 } });
});

t.test('what a device returns is checked: a flat map of at most MAX_COUNTERS finite numbers, else EIO', async (t) => {
  const bad: Record<string, () => Record<string, number>> = {
    nan: () => ({ commands: NaN }),
    string: () => ({ commands: '3' as unknown as number }),
    nested: () => ({ commands: { n: 1 } as unknown as number }),
    notMap: () => [1, 2] as unknown as Record<string, number>,
    nullMap: () => null as unknown as Record<string, number>,
    tooMany: () => Object.fromEntries(Array.from({ length: MAX_COUNTERS + 1 }, (_, i) => [`c${i}`, i])),
    throws: () => { throw new Error('counter broke'); },
  };
  const c = await serve(t, [
    ...Object.entries(bad).map(([name, stats]) => ({ name, model: counting(name, stats) })),
    { name: 'good', model: counting('good', () => Object.fromEntries(Array.from({ length: MAX_COUNTERS }, (_, i) => [`c${i}`, i]))) },
  ]);
  for (const name of Object.keys(bad)) {
    const e = await errorOf(c.call(DEVICE_STATS_OP, { device: name }));
    t.equal(e.error, 'EIO', `${name}: EIO`);
  }
  const good = await c.call(DEVICE_STATS_OP, { device: 'good' });
  t.equal(Object.keys(good.stats as object).length, MAX_COUNTERS, 'exactly MAX_COUNTERS counters are fine');
});
