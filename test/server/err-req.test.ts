// The ERR and REQ interrupts over the real socket: QEMU enables error
// recovery only when GET_IRQ_INFO(ERR) reports count 1, and registers an
// eventfd for each; the device reports errors on ERR and the server asks for
// release on REQ before it closes the socket at shutdown.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import {
  Command, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_NORESIZE, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_ERR_IRQ_INDEX as ERR, VFIO_PCI_REQ_IRQ_INDEX as REQ,
} from '../../protocol/constants.js';
import { decodeIrqInfoReply, encodeIrqInfoRequest } from '../../protocol/commands/irq-info.js';
import { encodeSetIrqsRequest } from '../../protocol/commands/set-irqs.js';
import { encodeDeviceResetRequest } from '../../protocol/commands/device-reset.js';
import {
  assertReply, assertServes, native, openClient, send, startGpio, waitFor, waitIdle, VfioUserClient, type Fixture,
} from '../conformance/helpers.js';

const TRIGGER = VFIO_IRQ_SET_ACTION_TRIGGER;

/** Give the server `fd` as the trigger of `index` (or unassign it with no fd). */
async function setEventfd(t: Test, c: VfioUserClient, index: number, fd?: number): Promise<void> {
  const r = await send(c, Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: VFIO_IRQ_SET_DATA_EVENTFD | TRIGGER, index, start: 0, count: 1 }),
    fd === undefined ? {} : { fds: [fd] });
  assertReply(t, r.reply, r, Buffer.alloc(0), `SET_IRQS eventfd on index ${index}`);
}

/** A client-side eventfd, closed at the end of the test. */
function eventfd(t: Test): number {
  const fd = native.eventfd(0);
  t.teardown(() => native.close(fd));
  return fd;
}

const EMPTY = -native.EAGAIN;

t.test('GET_IRQ_INFO: ERR and REQ have one eventfd each, flagged as Linux vfio-pci does', async (t) => {
  const fx = await startGpio(t);
  const c = await openClient(t, fx);
  for (const [name, index] of [['ERR', ERR], ['REQ', REQ]] as const) {
    const r = await send(c, Command.DEVICE_GET_IRQ_INFO, encodeIrqInfoRequest(index));
    const info = decodeIrqInfoReply(r.reply.payload);
    t.same({ index: info.index, count: info.count, flags: info.flags },
      { index, count: 1, flags: VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE }, `${name}: count 1, EVENTFD|NORESIZE`);
  }
});

t.test('ERR and REQ eventfds: accepted, signalled, replaced, unassigned, kept over reset, closed on disconnect', async (t) => {
  const fx = await startGpio(t);
  const device = fx.model.device;
  const errFd = eventfd(t);
  const reqFd = eventfd(t);
  const errFd2 = eventfd(t);
  const baseline = native.fdCount();
  const c = await openClient(t, fx);
  const connected = native.fdCount(); // + the client's socket and the server's end

  await setEventfd(t, c, ERR, errFd);
  await setEventfd(t, c, REQ, reqFd);
  t.equal(native.fdCount(), connected + 2, 'the server keeps one copy of each eventfd');

  t.equal(device.reportError(), true, 'the device reports an error');
  t.equal(native.eventfdRead(errFd), 1, 'ERR eventfd signalled');
  t.equal(native.eventfdRead(reqFd), EMPTY, 'REQ untouched');
  t.equal(device.requestRelease(), true, 'the device asks for release');
  t.equal(native.eventfdRead(reqFd), 1, 'REQ eventfd signalled');
  t.equal(native.eventfdRead(errFd), EMPTY, 'ERR untouched');

  // Loopback triggers, as Linux allows them for testing.
  const none = await send(c, Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: VFIO_IRQ_SET_DATA_NONE | TRIGGER, index: ERR, start: 0, count: 1 }));
  assertReply(t, none.reply, none, Buffer.alloc(0), 'DATA_NONE trigger on ERR');
  t.equal(native.eventfdRead(errFd), 1, 'DATA_NONE signals ERR');
  const bool = await send(c, Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: VFIO_IRQ_SET_DATA_BOOL | TRIGGER, index: REQ, start: 0, count: 1, bools: Uint8Array.of(1) }));
  assertReply(t, bool.reply, bool, Buffer.alloc(0), 'DATA_BOOL trigger on REQ');
  t.equal(native.eventfdRead(reqFd), 1, 'DATA_BOOL signals REQ');

  // DEVICE_RESET keeps them: QEMU registers them once, when the device is realized.
  const rs = await send(c, Command.DEVICE_RESET, encodeDeviceResetRequest());
  assertReply(t, rs.reply, rs, Buffer.alloc(0), 'DEVICE_RESET');
  t.equal(device.reportError(), true, 'ERR still assigned after reset');
  t.equal(native.eventfdRead(errFd), 1);

  // Replacing closes the server's copy of the old fd.
  await setEventfd(t, c, ERR, errFd2);
  t.equal(native.fdCount(), connected + 2, 'the old ERR copy was closed, the new one kept');
  t.equal(device.reportError(), true);
  t.equal(native.eventfdRead(errFd2), 1, 'the new ERR eventfd is signalled');
  t.equal(native.eventfdRead(errFd), EMPTY, 'the old one is not');

  // Unassigning (QEMU's fd -1: DATA_EVENTFD without an fd) closes the copy.
  await setEventfd(t, c, ERR);
  t.equal(native.fdCount(), connected + 1, 'ERR copy closed on unassign');
  t.equal(device.reportError(), false, 'no ERR eventfd any more');
  t.equal(native.eventfdRead(errFd2), EMPTY);

  // Disconnect closes what is left.
  c.close();
  await waitIdle(fx);
  t.equal(native.fdCount(), baseline, 'fd count back to the baseline before the client connected');
  t.equal(device.requestRelease(), false, 'no REQ eventfd after the disconnect');
});

/** Connect a client that gives the server a REQ eventfd. */
async function clientWithReq(t: Test, fx: Fixture): Promise<{ c: VfioUserClient; reqFd: number }> {
  const c = await openClient(t, fx);
  const reqFd = eventfd(t);
  await setEventfd(t, c, REQ, reqFd);
  return { c, reqFd };
}

t.test('close() signals REQ and waits while the client, still connected, releases the device', async (t) => {
  const fx = await startGpio(t);
  const { c, reqFd } = await clientWithReq(t, fx);
  let closed = false;
  const closing = fx.rt.close({ releaseTimeoutMs: 60_000 }).then(() => { closed = true; });
  let seen = 0;
  await waitFor(() => (seen = native.eventfdRead(reqFd)) > 0, 'the REQ eventfd');
  t.equal(seen, 1, 'REQ signalled once');
  t.notOk(fs.existsSync(fx.sock), 'the listening socket is gone: no new client can come');
  t.notOk(c.closed, 'the connection is still open');
  await assertServes(t, c, 'the client can still talk to the device after REQ');
  t.notOk(closed, 'close() is waiting for the client');
  c.close(); // what QEMU does once the guest ejected the device
  await closing;
  t.equal(fx.host.connected, false, 'no client left');
});

t.test('close() gives a client that keeps the device a bounded time, then closes the socket', async (t) => {
  const fx = await startGpio(t);
  const { c, reqFd } = await clientWithReq(t, fx);
  await fx.rt.close({ releaseTimeoutMs: 20 });
  t.equal(native.eventfdRead(reqFd), 1, 'REQ was signalled');
  await c.waitClosed();
  t.ok(c.closed, 'the server closed the connection after the timeout');
});

t.test('a bad release timeout is refused with nothing stopped; 0 closes without signalling REQ', async (t) => {
  const fx = await startGpio(t);
  const { c, reqFd } = await clientWithReq(t, fx);
  await t.rejects(fx.rt.close({ releaseTimeoutMs: -1 }), RangeError, 'a negative timeout is refused');
  t.ok(fs.existsSync(fx.sock), 'still listening');
  await assertServes(t, c, 'the client is still served');
  await fx.rt.close({ releaseTimeoutMs: 0 });
  await c.waitClosed();
  t.ok(c.closed, 'the server closed the connection');
  t.equal(native.eventfdRead(reqFd), EMPTY, 'REQ not signalled');
  t.notOk(fs.existsSync(fx.sock), 'the socket file is removed');
});

t.test('release request without a REQ eventfd: nothing to wait for', async (t) => {
  const fx = await startGpio(t);
  await openClient(t, fx);
  t.equal(await fx.host.requestRelease(60_000), false, 'not asked: the client gave no REQ eventfd');
  t.ok(fx.host.connected, 'the client stays connected');
});
