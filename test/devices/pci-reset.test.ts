import t, { type Test } from 'tap';
import type { DeviceClient } from '../../devices/device.js';
import { DmaFault, type DeviceDma } from '../../iommu/device-dma.js';
import { fullDevice } from './fixtures.js';
import { barRead, cfgRead, cfgWrite, F, IDX } from './helpers.js';

/** Dirty config space the way a guest driver would. */
function program(fx: ReturnType<typeof fullDevice>): void {
  const { dev } = fx;
  cfgWrite(dev, 0x04, 2, 0x0406);
  cfgWrite(dev, 0x10, 4, 0xfebd0000);
  cfgWrite(dev, 0x30, 4, 0xfeb00001);
  cfgWrite(dev, 0x3c, 1, 10);
  cfgWrite(dev, dev.caps.msix!.offset + 2, 2, 0x8000);
  cfgWrite(dev, dev.caps.msi!.offset + 4, 4, 0xfee00000);
  cfgWrite(dev, 0x40 + 4, 2, 3); // D3hot
}

function checkPowerOn(t: Test, fx: ReturnType<typeof fullDevice>): void {
  const { dev } = fx;
  t.equal(cfgRead(dev, 0x04, 2), 0, 'command cleared');
  t.equal(cfgRead(dev, 0x10, 4), 0, 'BAR0 address cleared');
  t.equal(cfgRead(dev, 0x18, 4), 0xc, 'BAR2 type bits kept');
  t.equal(cfgRead(dev, 0x30, 4), 0, 'ROM BAR cleared');
  t.equal(cfgRead(dev, 0x3c, 1), 0, 'interrupt line cleared');
  t.notOk(dev.caps.msix!.enabled, 'MSI-X off');
  t.equal(dev.caps.msi!.address, 0n, 'MSI address cleared');
  t.equal(dev.caps.pm!.powerState, 0, 'D0');
  t.equal(cfgRead(dev, 0x00, 4), 0x12341b36, 'identity kept');
  t.equal(cfgRead(dev, 0x06, 2), 0x10, 'status: only the capability list bit');
}

t.test('FLR: config back to power-on, model reset hook runs', async (t) => {
  const fx = fullDevice();
  const { dev } = fx;
  program(fx);
  await dev.regionWrite(4, 12, Buffer.from([0, 0, 0, 0])); // unmask MSI-X entry 0
  dev.setIntx(true);
  const e = dev.caps.express!.offset;
  cfgWrite(dev, e + 8, 2, 0x8000 | 0x2810); // Initiate FLR
  t.equal(fx.resets, 1, 'reset hook');
  checkPowerOn(t, fx);
  t.equal(cfgRead(dev, e + 8, 2), 0x2810, 'device control default, FLR bit reads 0');
  t.equal(await barRead(dev, 4, 12, 4), 1, 'MSI-X entries masked again');
  t.notOk(dev.intxLevel, 'INTx line dropped');
  // Writing device control without the FLR bit does not reset.
  cfgWrite(dev, e + 8, 2, 0x2010);
  t.equal(fx.resets, 1);
});

t.test('no FLR when the capability says so', async (t) => {
  const fx = fullDevice({ capabilities: [{ kind: 'express', flr: false }] });
  const e = fx.dev.caps.express!.offset;
  t.equal(cfgRead(fx.dev, e + 4, 4) & 0x10000000, 0);
  cfgWrite(fx.dev, e + 8, 2, 0x8000);
  t.equal(fx.resets, 0);
});

t.test('VFIO_USER_DEVICE_RESET: same state, IRQ fds kept', async (t) => {
  const fx = fullDevice();
  fx.dev.setIrqs({ flags: F.EVENTFD | F.TRIGGER, index: IDX.INTX, start: 0, count: 1, fds: [7] });
  program(fx);
  await fx.dev.reset();
  t.equal(fx.resets, 1);
  checkPowerOn(t, fx);
  t.same(fx.fds.closed, [], 'eventfds are the client’s plumbing: kept');
  fx.dev.setIntx(true);
  t.same(fx.fds.signals, [7], 'INTx still wired');
});

t.test('async model reset is awaited by reset(), logged on FLR', async (t) => {
  let done = false;
  const errors: string[] = [];
  const fx = fullDevice({
    reset: () => new Promise<void>((r) => setTimeout(() => ((done = true), r()), 5)),
  });
  await fx.dev.reset();
  t.ok(done);
  const bad = fullDevice({ reset: () => Promise.reject(new Error('boom')) });
  const log = { error: (m: string) => void errors.push(m), warn() {}, info() {}, debug() {} };
  bad.dev.attachClient({ dma: {} as DeviceDma, log });
  cfgWrite(bad.dev, bad.dev.caps.express!.offset + 8, 2, 0x8000);
  await new Promise((r) => setImmediate(r));
  t.match(errors, [/reset failed: Error: boom/]);
});

t.test('DMA goes through only with bus mastering on; attach/detach hooks', async (t) => {
  const calls: string[] = [];
  const dma = {
    read: async (iova: bigint | number, len: number) => (calls.push(`read ${iova}+${len}`), Buffer.alloc(len)),
    write: async (iova: bigint | number, data: Uint8Array) => void calls.push(`write ${iova}+${data.length}`),
    withView: async () => 'view',
    mappedView: (iova: bigint | number, len: number) => (calls.push(`mapped ${iova}+${len}`), new Uint8Array(len)),
    mappedSpans: (iovas: (bigint | number)[], _l: number[], skip: number, len: number) => (calls.push(`spans ${iovas[0]}+${skip}+${len}`), true),
    mappedWindow: (iova: number) => (calls.push(`window ${iova}`), { iova, bytes: new Uint8Array(8) }),
  } as unknown as DeviceDma;
  const out = { buffers: [], spans: new Float64Array(3), count: 0 };
  const log = { error() {}, warn() {}, info() {}, debug() {} };
  const seen: string[] = [];
  const fx = fullDevice({ attach: () => void seen.push('attach'), detach: () => void seen.push('detach') });
  const { dev } = fx;
  t.equal(dev.dma, undefined, 'no client, no DMA');
  const client: DeviceClient = { dma, log };
  dev.attachClient(client);
  t.equal(dev.client, client);
  t.equal(dev.log, log, 'the client’s logger');
  await t.rejects(dev.dma!.read(0x1000, 4), DmaFault, 'bus master off');
  await t.rejects(dev.dma!.write(0x1000, Buffer.alloc(2)), { name: 'DmaFault', reason: 'permission', length: 2 });
  t.equal(dev.dma!.mappedView(0x1000, 4, 1), null, 'no in-place view either (the general path refuses)');
  t.equal(dev.dma!.mappedSpans([0x1000], [8], 0, 8, 1, out), false, 'nor in-place spans');
  t.equal(dev.dma!.mappedWindow(0x1000, 1), null, 'nor a window');
  cfgWrite(dev, 0x04, 2, 0x0004);
  t.equal(dev.dma!.mappedView(0x3000, 2, 1)?.length, 2, 'in-place view once bus mastering is on');
  t.equal(dev.dma!.mappedSpans([0x3000], [8], 2, 6, 1, out), true, 'and in-place spans');
  t.equal(dev.dma!.mappedWindow(0x3000, 1)?.iova, 0x3000, 'and a window');
  t.equal((await dev.dma!.read(0x1000, 4)).length, 4);
  await dev.dma!.write(0x2000, Buffer.alloc(2));
  t.equal(await dev.dma!.withView(0, 1, 1, () => 0), 'view');
  t.same(calls, ['mapped 12288+2', 'spans 12288+2+6', 'window 12288', 'read 4096+4', 'write 8192+2']);
  dev.detachClient();
  t.equal(dev.dma, undefined);
  t.same(seen, ['attach', 'detach']);
});
