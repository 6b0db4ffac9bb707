// Every protocol-level fault action through the raw client against a GPIO
// server: error, delay, drop, hold and corrupt, each with a rule that matches
// and one that does not; the Nth occurrence; a seeded probability that
// reproduces; a time window; needs-reset on a device without its own error
// state. Counts are checked as fault.list reports them.
import t, { type Test } from 'tap';
import { Command } from '../../protocol/constants.js';
import { Errno } from '../../protocol/errno.js';
import { encodeRegionReadRequest } from '../../protocol/commands/region-access.js';
import { encodeDeviceGetInfoRequest } from '../../protocol/commands/device-get-info.js';
import { encodeIrqInfoRequest } from '../../protocol/commands/irq-info.js';
import { encodeRegionInfoRequest } from '../../protocol/commands/region-info.js';
import {
  CFG, VENDOR_DEVICE, accessReply, assertErrorReply, assertReply, assertServes, openClient, recordIncoming, send, sleep, waitFor, waitIdle,
} from '../conformance/helpers.js';
import { VfioUserClient } from '../../testing/vfio-user-client.js';
import { encodeSetIrqsRequest } from '../../protocol/commands/set-irqs.js';
import * as V from '../../devices/pci/vfio-constants.js';
import * as native from '../../native/index.js';
import type { FaultEvent } from '../../faults/events.js';
import { counts, startGpioWithFaults } from './helpers.js';

/** REGION_READ of 4 bytes of config space at `offset`. */
const cfgRead = (offset: number) => encodeRegionReadRequest({ offset, region: CFG, count: 4 });
const idsRule = (action: unknown, more: Record<string, unknown> = {}) => ({
  id: 'r', match: { command: 'REGION_READ', region: CFG, offset: [0, 4] }, action, ...more,
});

t.test('error: a matching REGION_READ gets the chosen errno, others are served; counted and reported', async (t) => {
  const fx = await startGpioWithFaults(t, { rules: [idsRule({ type: 'error', errno: 'EPERM' })] });
  const events: FaultEvent[] = [];
  fx.faults.onFault((e) => events.push(e));
  const c = await openClient(t, fx);
  const hit = await send(c, Command.REGION_READ, cfgRead(0));
  assertErrorReply(t, hit.reply, hit, Errno.EPERM, 'ids read');
  const miss = await send(c, Command.REGION_READ, cfgRead(8)); // class code: outside [0, 4)
  t.equal(miss.reply.errno, 0, 'a read outside the offset range is served');
  const info = await send(c, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest());
  t.equal(info.reply.errno, 0, 'another command is served');
  t.same(counts(fx.faults, 'r'), { matched: 1, injected: 1 });
  t.same(fx.faults.list().injected, { gpio0: { error: 1 } }, 'totals per device and action');
  t.same(events, [{ type: 'fault', rule: 'r', action: 'error', device: 'gpio0', session: 1, command: 'REGION_READ', msgId: hit.msgId }]);
  fx.faults.clear('r');
  await assertServes(t, c, 'after clear, the fast path serves the read again');
});

t.test('error on a posted (NO_REPLY) write: the write is not done, nothing comes back, the connection goes on', async (t) => {
  const fx = await startGpioWithFaults(t, { rules: [{ id: 'w', match: { command: 'REGION_WRITE', region: 2 }, action: { type: 'error', errno: 'EIO' } }] });
  const c = await openClient(t, fx);
  const seen = recordIncoming(c);
  c.post(Command.REGION_WRITE, Buffer.concat([accessReply(0, 2, 1), Buffer.from([0x5a])]));
  await assertServes(t, c);
  t.equal(fx.model.outputs & 0xff, 0, 'the output register was not written');
  t.equal(seen.length, 1, 'only the probe was answered');
  t.same(counts(fx.faults, 'w'), { matched: 1, injected: 1 });
});

t.test('delay: the reply waits (later requests wait behind it); a non-matching rule delays nothing', async (t) => {
  const fx = await startGpioWithFaults(t, {
    rules: [
      { id: 'slow', match: { command: 'DEVICE_GET_INFO' }, action: { type: 'delay', ms: 1500 } },
      { id: 'other', match: { command: 'DEVICE_RESET' }, action: { type: 'delay', ms: 60000 } },
    ],
  });
  const c = await openClient(t, fx);
  const seen = recordIncoming(c);
  const slow = send(c, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest());
  const after = send(c, Command.REGION_READ, cfgRead(0));
  await sleep(300);
  t.equal(seen.length, 0, 'no reply yet, not even to the request behind it (a lower bound: the timer cannot fire early)');
  const [a, b] = await Promise.all([slow, after]);
  t.equal(a.reply.errno, 0, 'the delayed reply is a normal reply');
  assertReply(t, b.reply, b, accessReply(0, CFG, 4, VENDOR_DEVICE), 'the read behind it');
  t.same(seen.map((h) => h.msgId), [a.msgId, b.msgId], 'in request order');
  t.same(counts(fx.faults, 'slow'), { matched: 1, injected: 1 });
  t.same(counts(fx.faults, 'other'), { matched: 0, injected: 0 });
});

t.test('drop: the connection is closed at the matching request; the next client is served', async (t) => {
  const fx = await startGpioWithFaults(t, {
    rules: [
      { id: 'cut', match: { command: 'DEVICE_GET_REGION_INFO' }, action: { type: 'drop' } },
      { id: 'never', match: { command: 'DEVICE_RESET' }, action: { type: 'drop' } },
    ],
  });
  const c = await VfioUserClient.open(fx.sock);
  await assertServes(t, c, 'a non-matching request first');
  const p = c.request(Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest(CFG));
  await t.rejects(p, 'no reply: the connection is gone');
  await c.waitClosed();
  c.close();
  await waitIdle(fx);
  t.same(counts(fx.faults, 'cut'), { matched: 1, injected: 1 });
  t.same(counts(fx.faults, 'never'), { matched: 0, injected: 0 });
  fx.faults.clear('cut');
  const c2 = await openClient(t, fx);
  await assertServes(t, c2, 'a new client');
  t.equal(fx.host.connections, 2);
});

t.test('hold: the reply waits until released; clear releases too; a timed hold lets go by itself', async (t) => {
  const fx = await startGpioWithFaults(t, {
    rules: [
      { id: 'h', match: { command: 'DEVICE_GET_INFO' }, times: 2, action: { type: 'hold' } },
      { id: 'not-me', match: { command: 'DEVICE_GET_IRQ_INFO' }, action: { type: 'hold' } },
    ],
  });
  const c = await openClient(t, fx);
  const seen = recordIncoming(c);
  const held = send(c, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest());
  const behind = send(c, Command.REGION_READ, cfgRead(0));
  await sleep(300);
  t.equal(seen.length, 0, 'held: nothing answered');
  t.equal(fx.faults.release('h'), 1, 'one reply released');
  const [a, b] = await Promise.all([held, behind]);
  t.equal(a.reply.errno, 0);
  t.equal(b.reply.errno, 0);
  t.same(seen.map((h) => h.msgId), [a.msgId, b.msgId]);

  const again = send(c, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest());
  await sleep(100);
  t.equal(seen.length, 2, 'held again');
  t.equal(fx.faults.clear('h'), 1, 'clearing the rule');
  t.equal((await again).reply.errno, 0, 'clear released the reply');
  t.same(counts(fx.faults, 'not-me'), { matched: 0, injected: 0 });

  fx.faults.add({ id: 't', match: { command: 'DEVICE_GET_INFO' }, action: { type: 'hold', ms: 200 } });
  t.equal((await send(c, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest())).reply.errno, 0, 'a timed hold lets go on its own');
});

t.test('corrupt: the chosen reply field is flipped; other replies are intact', async (t) => {
  const fx = await startGpioWithFaults(t, {
    rules: [
      idsRule({ type: 'corrupt', field: 'payload', offset: 16, xor: 0xff }, { id: 'data', times: 1 }),
      { id: 'id', match: { command: 'DEVICE_GET_INFO' }, times: 1, action: { type: 'corrupt', field: 'msgId', xor: 0x100 } },
      { id: 'err', match: { command: 'DEVICE_GET_IRQ_INFO' }, times: 1, action: { type: 'corrupt', field: 'error', xor: 7 } },
      { id: 'none', match: { command: 'DEVICE_RESET' }, action: { type: 'corrupt', field: 'flags', xor: 1 } },
    ],
  });
  const c = await openClient(t, fx);
  const r = await send(c, Command.REGION_READ, cfgRead(0));
  const flipped = Buffer.from(VENDOR_DEVICE.map((b, i) => (i === 0 ? b ^ 0xff : b)));
  assertReply(t, r.reply, r, accessReply(0, CFG, 4, flipped), 'first data byte flipped');
  await assertServes(t, c, 'the next read is intact');

  const seen = recordIncoming(c);
  const msgId = c.allocId();
  c.sendRaw(c.encode(Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest(), { msgId }).bytes);
  await waitFor(() => seen.length === 1, 'the corrupted reply');
  t.equal(seen[0]!.msgId, msgId ^ 0x100, 'msg_id flipped');
  t.equal(seen[0]!.command, Command.DEVICE_GET_INFO, 'command intact');

  const e = await send(c, Command.DEVICE_GET_IRQ_INFO, encodeIrqInfoRequest(99));
  t.equal(e.reply.errno, Errno.EINVAL ^ 7, 'an error reply (no IRQ index 99) with its errno flipped');
  t.same(counts(fx.faults, 'none'), { matched: 0, injected: 0 });
  t.same(fx.faults.list().injected, { gpio0: { corrupt: 3 } });
});

t.test('nth and times: the 3rd and 4th matching reads fail, no other', async (t) => {
  const fx = await startGpioWithFaults(t, { rules: [idsRule({ type: 'error', errno: 'EIO' }, { nth: 3, times: 2 })] });
  const c = await openClient(t, fx);
  const errnos: number[] = [];
  for (let i = 0; i < 6; i++) errnos.push((await send(c, Command.REGION_READ, cfgRead(0))).reply.errno);
  await send(c, Command.REGION_READ, cfgRead(8)); // outside the range: not an occurrence
  t.same(errnos, [0, 0, Errno.EIO, Errno.EIO, 0, 0]);
  t.same(counts(fx.faults, 'r'), { matched: 6, injected: 2 });
});

/** The error pattern of `n` reads under a probability rule with `seed`. */
async function pattern(t: Test, seed: number, n = 48): Promise<string> {
  const fx = await startGpioWithFaults(t, { rules: [idsRule({ type: 'error', errno: 'EIO' }, { probability: 0.5, seed })] });
  const c = await VfioUserClient.open(fx.sock);
  let s = '';
  for (let i = 0; i < n; i++) s += (await send(c, Command.REGION_READ, cfgRead(0))).reply.errno ? 'x' : '.';
  t.same(counts(fx.faults, 'r'), { matched: n, injected: s.split('x').length - 1 }, `seed ${seed}: injected = errors seen`);
  c.close();
  await waitIdle(fx);
  return s;
}

t.test('probability with a seed: the same seed gives the same faults, another seed others', async (t) => {
  const a = await pattern(t, 7);
  const b = await pattern(t, 7);
  const c = await pattern(t, 8);
  t.equal(a, b, `seed 7 twice: ${a}`);
  t.not(a, c, `seed 8: ${c}`);
  t.ok(a.includes('x') && a.includes('.'), 'some reads fail, some do not');
});

t.test('time window: the rule fires only inside [fromMs, untilMs) after it was added', async (t) => {
  const fx = await startGpioWithFaults(t);
  const c = await openClient(t, fx);
  fx.faults.add(idsRule({ type: 'error', errno: 'EIO' }, { window: { fromMs: 1500, untilMs: 3500 } }));
  const t0 = performance.now();
  t.equal((await send(c, Command.REGION_READ, cfgRead(0))).reply.errno, 0, 'before the window');
  t.same(counts(fx.faults, 'r'), { matched: 0, injected: 0 }, 'outside the window nothing is counted');
  await sleep(2000 - (performance.now() - t0));
  t.equal((await send(c, Command.REGION_READ, cfgRead(0))).reply.errno, Errno.EIO, 'inside the window');
  await sleep(3700 - (performance.now() - t0));
  t.equal((await send(c, Command.REGION_READ, cfgRead(0))).reply.errno, 0, 'after the window');
  t.same(counts(fx.faults, 'r'), { matched: 1, injected: 1 });
});

t.test('needs-reset on a device without its own error state and no ERR eventfd: EIO, the device goes on', async (t) => {
  const fx = await startGpioWithFaults(t, { rules: [{ id: 'nr', match: { command: 'DEVICE_GET_INFO' }, times: 1, action: { type: 'needs-reset' } }] });
  const c = await openClient(t, fx);
  const r = await send(c, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest());
  assertErrorReply(t, r.reply, r, Errno.EIO, 'no error state to enter');
  t.equal((await send(c, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest())).reply.errno, 0, 'times: 1');
  await assertServes(t, c);
});

t.test('needs-reset on a PCI device with an ERR eventfd: ERR is signalled, the request is served', async (t) => {
  const fx = await startGpioWithFaults(t, { rules: [{ id: 'nr', match: { command: 'DEVICE_GET_INFO' }, times: 1, action: { type: 'needs-reset' } }] });
  const c = await openClient(t, fx);
  const efd = native.eventfd(0);
  t.teardown(() => native.close(efd));
  const set = await send(c, Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({
    flags: V.VFIO_IRQ_SET_DATA_EVENTFD | V.VFIO_IRQ_SET_ACTION_TRIGGER, index: V.VFIO_PCI_ERR_IRQ_INDEX, start: 0, count: 1,
  }), { fds: [efd] });
  t.equal(set.reply.errno, 0, 'ERR eventfd set');
  t.equal(native.eventfdRead(efd), -native.EAGAIN, 'not signalled before');
  t.equal((await send(c, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest())).reply.errno, 0, 'the request itself is served');
  t.equal(native.eventfdRead(efd), 1, 'ERR signalled once');
  t.same(counts(fx.faults, 'nr'), { matched: 1, injected: 1 });
});

t.test('a posted write can be delayed (the requests behind it wait) but not corrupted', async (t) => {
  const fx = await startGpioWithFaults(t, {
    rules: [
      { id: 'c', match: { command: 'REGION_WRITE' }, action: { type: 'corrupt', field: 'flags', xor: 1 } },
      { id: 'd', match: { command: 'REGION_WRITE' }, times: 1, action: { type: 'delay', ms: 1000 } },
    ],
  });
  const c = await openClient(t, fx);
  const seen = recordIncoming(c);
  c.post(Command.REGION_WRITE, Buffer.concat([accessReply(0, 2, 1), Buffer.from([0x5a])]));
  const probe = send(c, Command.REGION_READ, cfgRead(0));
  await sleep(200);
  t.equal(seen.length, 0, 'the read behind the delayed write waits (a lower bound)');
  assertReply(t, (await probe).reply, await probe, accessReply(0, CFG, 4, VENDOR_DEVICE), 'then it is served');
  t.equal(fx.model.outputs & 0xff, 0x5a, 'the delayed write was done');
  t.same(counts(fx.faults, 'c'), { matched: 0, injected: 0 }, 'corrupt skipped the posted write');
  t.same(counts(fx.faults, 'd'), { matched: 1, injected: 1 });
});
