// Connection lifecycle: 50 connect/close cycles without fd growth, what a
// disconnect drops (DMA mappings, IRQ fds, dirty logging) and keeps (device
// state), one client at a time, and the socket file (stale replaced, live
// refused, 0600, removed on close).
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import {
  Command, VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_SET, VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
} from '../../protocol/constants.js';
import { Errno } from '../../protocol/errno.js';
import { encodeVersionRequest } from '../../protocol/version.js';
import { encodeDmaMapRequest } from '../../protocol/commands/dma-map.js';
import { encodeSetIrqsRequest } from '../../protocol/commands/set-irqs.js';
import { dmaLoggingStartData, encodeDeviceFeatureRequest } from '../../protocol/commands/device-feature.js';
import { startServer } from '../../server/runtime.js';
import {
  BAR2, CFG, DEVICE, QEMU_CAPS, REG, VfioUserClient, assertReply, assertServes, closeClient, native, openClient,
  patternMemfd, regionRead, regionWrite, rejectsErrno, send, sleep, startGpio, suiteOptions, waitIdle,
} from './helpers.js';

const fx = await startGpio(t);
const intxEventfd = (c: VfioUserClient, efd: number) => c.request(Command.DEVICE_SET_IRQS,
  encodeSetIrqsRequest({ flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: 0, start: 0, count: 1 }), { fds: [efd] });

/** One full client life: negotiate, map guest RAM, wire INTx, read, leave. */
async function cycle(i: number): Promise<void> {
  const c = await VfioUserClient.open(fx.sock, QEMU_CAPS);
  const mem = patternMemfd(0x4000, i);
  const efd = native.eventfd(0);
  const reqfd = native.eventfd(0);
  try {
    const m = await c.request(Command.DMA_MAP, encodeDmaMapRequest({ addr: 0x100000n, size: 0x4000n }), { fds: [mem.fd] });
    const s = await intxEventfd(c, efd);
    const q = await c.request(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({
      flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: 4, start: 0, count: 1,
    }), { fds: [reqfd] });
    if (m.errno || s.errno || q.errno) throw new Error(`cycle ${i}: DMA_MAP ${m.errno}, SET_IRQS ${s.errno}/${q.errno}`);
    const got = await regionRead(c, CFG, 0, 4);
    if (got.readUInt32LE(0) !== 0x0dc8494f) throw new Error(`cycle ${i}: bad PCI ids`);
  } finally {
    native.close(mem.fd);
    native.close(efd);
    native.close(reqfd);
    await closeClient(fx, c);
  }
  if (fx.ctx.compatIoas.areaCount !== 0) throw new Error(`cycle ${i}: mappings left after disconnect`);
  if (fx.model.device.requestRelease()) throw new Error(`cycle ${i}: the REQ eventfd survived the disconnect`);
}

t.test('50 connect/close cycles leave no fd behind', async (t) => {
  await cycle(0); // warm up lazily opened fds (addon, timers, ...)
  const base = native.fdCount();
  const conns = fx.host.connections;
  for (let i = 1; i <= 50; i++) await cycle(i);
  t.equal(fx.host.connections, conns + 50, '50 clients served');
  t.equal(fx.disconnects, fx.host.connections, 'each one seen leaving');
  t.equal(native.fdCount(), base, 'fd count unchanged after 50 cycles');
  t.equal(fx.ctx.compatIoas.areaCount, 0, 'no mapping left');
});

t.test('a disconnect drops DMA mappings, IRQ fds and dirty logging', async (t) => {
  const mem = patternMemfd(0x2000);
  const efd = native.eventfd(0);
  const reqfd = native.eventfd(0);
  t.teardown(() => { native.close(mem.fd); native.close(efd); native.close(reqfd); });
  const base = native.fdCount();
  const c = await VfioUserClient.open(fx.sock, QEMU_CAPS);
  c.guest = { base: 0x200000n, mem: Buffer.alloc(0x1000) };
  t.equal((await c.request(Command.DMA_MAP, encodeDmaMapRequest({ addr: 0x100000n, size: 0x2000n }), { fds: [mem.fd] })).errno, 0);
  t.equal((await c.request(Command.DMA_MAP, encodeDmaMapRequest({ addr: 0x200000n, size: 0x1000n }))).errno, 0);
  t.equal((await intxEventfd(c, efd)).errno, 0);
  t.equal((await c.request(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({
    flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: 4, start: 0, count: 1,
  }), { fds: [reqfd] })).errno, 0);
  t.equal((await c.request(Command.DEVICE_FEATURE, encodeDeviceFeatureRequest({
    feature: VFIO_DEVICE_FEATURE_DMA_LOGGING_START, ops: VFIO_DEVICE_FEATURE_SET,
    data: dmaLoggingStartData(4096n, [{ iova: 0x100000n, length: 0x2000n }]),
  }))).errno, 0);
  await regionRead(c, BAR2, REG.IRQ_CTL, 1); // the guest enables the device interrupt
  t.equal(fx.ctx.compatIoas.areaCount, 2, 'two mappings while connected');
  t.equal(fx.ctx.compatIoas.dirtyTracking, true);
  fx.model.setInputs(0x10);
  t.equal(native.eventfdRead(efd), 1, 'INTx wired while connected');
  // The guest acknowledges and QEMU unmasks: INTx is armed again when the client leaves.
  await regionWrite(c, BAR2, REG.IN0_7, [0]);
  t.equal((await c.request(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({
    flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, index: 0, start: 0, count: 1,
  }))).errno, 0);
  t.equal(native.eventfdRead(efd), -native.EAGAIN, 'line low after the acknowledge');

  await closeClient(fx, c);
  t.equal(fx.ctx.compatIoas.areaCount, 0, 'mappings dropped');
  t.same(fx.ctx.compatIoas.list(), [], 'compat IOAS empty');
  t.equal(fx.ctx.compatIoas.dirtyTracking, false, 'dirty logging stopped');
  await rejectsErrno(t, fx.ctx.dma(DEVICE).read(0x100000n, 4), Errno.EFAULT, 'the device can no longer reach the old memory');
  fx.model.setInputs(0x20);
  t.equal(fx.model.interruptEnabled, true, 'the device still has its interrupt enabled (device state)');
  t.equal(native.eventfdRead(efd), -native.EAGAIN, 'but the old INTx eventfd is no longer signalled');
  t.equal(fx.model.device.requestRelease(), false, 'no REQ eventfd any more');
  t.equal(native.eventfdRead(reqfd), -native.EAGAIN);
  t.equal(native.fdCount(), base, 'the server closed its copies of both eventfds');
  fx.model.setInputs(0);
  const next = await VfioUserClient.open(fx.sock, QEMU_CAPS);
  await regionWrite(next, BAR2, REG.IN0_7, [0]);
  await closeClient(fx, next);
});

t.test('device state survives the client', async (t) => {
  const c1 = await VfioUserClient.open(fx.sock, QEMU_CAPS);
  await regionWrite(c1, BAR2, REG.OUT0_7, [0xef]);
  await regionWrite(c1, BAR2, REG.OUT8_15, [0xbe]);
  await regionWrite(c1, CFG, 0x18, [0x00, 0xc0, 0, 0]);
  await regionWrite(c1, CFG, 0x04, [0x01, 0x00]);
  await closeClient(fx, c1);
  t.equal(fx.model.outputs, 0xbeef, 'outputs kept while nobody is connected');
  const c2 = await openClient(t, fx);
  const lo = await send(c2, Command.REGION_READ, Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, BAR2, 0, 0, 0, 1, 0, 0, 0]));
  assertReply(t, lo.reply, lo, Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, BAR2, 0, 0, 0, 1, 0, 0, 0]), Buffer.from([0xef])]), 'OUT0_7 reads back');
  t.equal((await regionRead(c2, BAR2, REG.OUT8_15, 1))[0], 0xbe, 'OUT8_15 reads back');
  t.equal((await regionRead(c2, CFG, 0x18, 4)).readUInt32LE(0), 0xc001, 'BAR2 address kept');
  t.equal((await regionRead(c2, CFG, 0x04, 2)).readUInt16LE(0), 0x0001, 'command register kept');
});

t.test('a second client waits until the first leaves', async (t) => {
  const c1 = await VfioUserClient.open(fx.sock, QEMU_CAPS);
  const conns = fx.host.connections;
  const c2 = VfioUserClient.connect(fx.sock);
  t.teardown(() => closeClient(fx, c2));
  let answered = false;
  const v = c2.request(Command.VERSION, encodeVersionRequest(QEMU_CAPS)).then((r) => { answered = true; return r; });
  await sleep(150);
  t.equal(answered, false, 'the second client gets nothing while the first is connected');
  t.equal(fx.host.connections, conns, 'and is not accepted yet');
  await assertServes(t, c1, 'the first client is unaffected');
  await regionWrite(c1, BAR2, REG.OUT0_7, [0x5a]);
  c1.close(); // c2, waiting in the backlog, is accepted as soon as the server has let c1 go
  const r = await v;
  t.equal(r.errno, 0, 'the second client is served once the first leaves');
  t.equal(fx.host.connections, conns + 1);
  await assertServes(t, c2, 'the second client');
  t.equal((await regionRead(c2, BAR2, REG.OUT0_7, 1))[0], 0x5a, 'and sees what the first one did');
});

t.test('a client that leaves before VERSION', async (t) => {
  const c = VfioUserClient.connect(fx.sock);
  await sleep(20);
  c.close();
  await waitIdle(fx);
  const next = await openClient(t, fx);
  await assertServes(t, next);
});

t.test('the socket file is mode 0600', async (t) => {
  t.equal(fs.statSync(fx.sock).mode & 0o777, 0o600);
});

t.test('a live socket is refused; the running server is untouched', async (t) => {
  const c = await openClient(t, fx);
  await t.rejects(startServer({ devices: [{ name: 'other', kind: 'gpio', socket: fx.sock, options: {} }] }),
    /in use by a live server/, 'refused with a clear message');
  t.ok(fs.statSync(fx.sock).isSocket(), 'socket file still there');
  await assertServes(t, c, 'connected client still served');
});

t.test('a path that is not a socket is refused and left alone', async (t) => {
  const file = path.join(fx.dir, 'not-a-socket');
  fs.writeFileSync(file, 'precious');
  await t.rejects(startServer({ devices: [{ name: 'other', kind: 'gpio', socket: file, options: {} }] }), /not a socket/);
  t.equal(fs.readFileSync(file, 'utf8'), 'precious', 'file untouched');
});

t.test('a stale socket file is replaced', async (t) => {
  const sock = path.join(fx.dir, 'stale.sock');
  native.close(native.listenUnix(sock, 1)); // a socket file nobody listens on
  t.ok(fs.statSync(sock).isSocket(), 'stale socket file exists');
  const rt = await startServer({ devices: [{ name: 'stale', kind: 'gpio', socket: sock, options: {} }], ...suiteOptions() });
  t.teardown(() => rt.close());
  const c = await VfioUserClient.open(sock, QEMU_CAPS);
  await assertServes(t, c, 'served on the replaced socket');
  c.close();
  await rt.close();
  t.equal(fs.existsSync(sock), false, 'socket removed on close');
});

t.test('closing the server ends its client and removes the socket', async (t) => {
  const sock = path.join(fx.dir, 'closing.sock');
  const rt = await startServer({ devices: [{ name: 'closing', kind: 'gpio', socket: sock, options: {} }], ...suiteOptions() });
  const c = await VfioUserClient.open(sock, QEMU_CAPS);
  t.teardown(() => c.close());
  await assertServes(t, c);
  await rt.close();
  await c.waitClosed().then(() => t.pass('client disconnected'), (e: Error) => t.fail(e.message));
  t.equal(fs.existsSync(sock), false, 'socket file removed');
});

t.test('two devices in one server are independent', async (t) => {
  const a = path.join(fx.dir, 'a.sock');
  const b = path.join(fx.dir, 'b.sock');
  const rt = await startServer({
    devices: [
      { name: 'a', kind: 'gpio', socket: a, options: {} },
      { name: 'b', kind: 'gpio', socket: b, options: {} },
    ],
    ...suiteOptions(),
  });
  t.teardown(() => rt.close());
  const ca = await VfioUserClient.open(a, QEMU_CAPS);
  const cb = await VfioUserClient.open(b, QEMU_CAPS);
  t.teardown(() => { ca.close(); cb.close(); });
  const ma = await send(ca, Command.DMA_MAP, encodeDmaMapRequest({ addr: 0x100000n, size: 0x1000n }));
  const mb = await send(cb, Command.DMA_MAP, encodeDmaMapRequest({ addr: 0x100000n, size: 0x1000n }));
  assertReply(t, ma.reply, ma, Buffer.alloc(0), 'device a maps 0x100000');
  assertReply(t, mb.reply, mb, Buffer.alloc(0), 'device b maps the same IOVA');
  await regionWrite(ca, BAR2, REG.OUT0_7, [0x11]);
  await regionWrite(cb, BAR2, REG.OUT0_7, [0x22]);
  t.equal((await regionRead(ca, BAR2, REG.OUT0_7, 1))[0], 0x11);
  t.equal((await regionRead(cb, BAR2, REG.OUT0_7, 1))[0], 0x22);
  ca.close();
  await assertServes(t, cb, 'b is unaffected by a\'s client leaving');
});
