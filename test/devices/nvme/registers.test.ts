// NVMe controller registers and states: CAP/VS, enable (CSTS.RDY), a bad
// configuration (CSTS.CFS), CC.EN 1→0 dropping every queue, normal and
// abrupt shutdown (CSTS.SHST), FLR back to power-on, and the PCI identity.
import t from 'tap';
import { Reg } from '../../../devices/nvme/constants.js';
import { cfgRead } from '../helpers.js';
import { make, tempDir, turns } from './env.js';

const image = tempDir(t);

t.test('PCI identity: class 01 08 02, our ids, PM + MSI-X + PCIe capabilities', async (t) => {
  const { ctrl } = await make(t, image, { enable: false, vendorId: 0x1af0, deviceId: 0x0042 });
  const dev = ctrl.device;
  t.equal(cfgRead(dev, 0, 2), 0x1af0);
  t.equal(cfgRead(dev, 2, 2), 0x0042);
  t.equal(cfgRead(dev, 0x09, 1) | (cfgRead(dev, 0x0a, 2) << 8), 0x010802, 'class code');
  t.same(dev.caps.list.map((c) => c.kind), ['pm', 'msix', 'express']);
  t.equal(dev.caps.msix!.vectors, 5, 'one vector per queue (admin + 4 I/O)');
  t.ok(dev.caps.express!.flr, 'FLR offered');
});

t.test('CAP and VS', async (t) => {
  const { drv } = await make(t, image, { enable: false, queueSize: 256 });
  const cap = await drv.read64(Reg.CAP);
  t.equal(Number(cap & 0xffffn), 255, 'MQES is 0-based');
  t.equal(Number((cap >> 16n) & 1n), 1, 'CQR');
  t.equal(Number((cap >> 32n) & 0xfn), 0, 'DSTRD 0');
  t.equal(Number((cap >> 37n) & 1n), 1, 'CSS: NVM');
  t.equal(await drv.read32(Reg.VS), 0x10400, 'version 1.4');
  t.equal(await drv.read32(Reg.CSTS), 0, 'not ready before enable');
});

t.test('enable sets RDY; a second 8-byte ASQ write form works', async (t) => {
  const { drv } = await make(t, image, { enable: false });
  drv.enable();
  t.equal((await drv.csts()) & 3, 1, 'RDY, no CFS');
  t.equal(Number(await drv.read64(Reg.ASQ)), drv.admin.sqBase, 'ASQ reads back');
  const c = await drv.cmd(drv.admin, { opcode: 0x06, prp1: drv.g.mem.alloc(4096, 4096), cdw10: 1 });
  t.equal(c.status, 0, 'the admin queue works');
});

for (const [what, setup] of [
  ['admin SQ of one entry', (d: Awaited<ReturnType<typeof make>>['drv']) => d.write32(Reg.AQA, (31 << 16) | 0)],
  ['no ACQ', (d: Awaited<ReturnType<typeof make>>['drv']) => d.write64(Reg.ACQ, 0)],
  ['admin CQ above MQES', (d: Awaited<ReturnType<typeof make>>['drv']) => d.write32(Reg.AQA, (4095 << 16) | 31)],
] as const) {
  t.test(`a bad configuration (${what}) is Controller Fatal Status`, async (t) => {
    const { drv } = await make(t, image, { enable: false });
    const a = drv.admin;
    drv.write32(Reg.AQA, ((a.cqSize - 1) << 16) | (a.sqSize - 1));
    drv.write64(Reg.ASQ, a.sqBase);
    drv.write64(Reg.ACQ, a.cqBase);
    setup(drv);
    drv.write32(Reg.CC, 0x00460001);
    t.equal((await drv.csts()) & 3, 2, 'CFS, not RDY');
    drv.write32(Reg.CC, 0);
    t.equal(await drv.csts(), 0, 'a reset clears CFS');
  });
}

t.test('CC.MPS above MPSMAX and an unknown CC.CSS are fatal too', async (t) => {
  const { drv } = await make(t, image, { enable: false });
  drv.enable(0x00460001 | (5 << 7));
  t.equal((await drv.csts()) & 2, 2, 'MPS 5 (128 KiB)');
  drv.write32(Reg.CC, 0);
  drv.enable(0x00460001 | (1 << 4));
  t.equal((await drv.csts()) & 2, 2, 'CSS 1');
});

t.test('CC.EN 1→0 drops every queue; commands in flight are not completed after it', async (t) => {
  const { drv, ctrl } = await make(t, image);
  const q = await drv.createIoQueues(1, 8);
  t.ok(ctrl.sq(1) && ctrl.cq(1), 'I/O queues exist');
  drv.write32(Reg.CC, 0);
  t.equal(await drv.csts(), 0, 'not ready');
  t.equal(ctrl.sq(1), undefined, 'SQ gone');
  t.equal(ctrl.cq(1), undefined, 'CQ gone');
  // A doorbell for a queue that no longer exists does nothing.
  drv.put(q, { opcode: 0x00, nsid: 1 });
  drv.ring(q);
  await turns();
  t.equal(drv.peek(q), undefined, 'no completion');
  // Enable again: the admin queue restarts at entry 0.
  drv.admin.sqTail = drv.admin.cqHead = 0;
  drv.admin.phase = 1;
  drv.g.mem.view(drv.admin.cqBase, drv.admin.cqSize * 16).fill(0);
  drv.enable();
  t.equal((await drv.csts()) & 1, 1);
  const c = await drv.cmd(drv.admin, { opcode: 0x06, prp1: drv.g.mem.alloc(4096, 4096), cdw10: 1 });
  t.equal(c.status, 0);
  t.equal(c.sqHead, 1, 'SQ head restarted');
});

for (const [name, shn] of [['normal', 1], ['abrupt', 2]] as const) {
  t.test(`${name} shutdown reports SHST complete, and clearing SHN clears it`, async (t) => {
    const { drv } = await make(t, image);
    drv.write32(Reg.CC, 0x00460001 | (shn << 14));
    const end = Date.now() + 5000;
    let st = 0;
    while (Date.now() < end && ((st = await drv.csts()) >> 2 & 3) !== 2) await new Promise((r) => setTimeout(r, 1));
    t.equal((st >> 2) & 3, 2, 'SHST: shutdown complete');
    t.equal(st & 1, 1, 'still ready (the host disables next)');
    drv.write32(Reg.CC, 0x00460001);
    t.equal(((await drv.csts()) >> 2) & 3, 0, 'SHST back to normal');
  });
}

t.test('FLR returns the registers to power-on', async (t) => {
  const { drv, ctrl } = await make(t, image);
  await drv.createIoQueues(1, 4);
  const exp = ctrl.device.caps.express!.offset;
  const b = Buffer.alloc(2);
  b.writeUInt16LE(0x8000); // Initiate Function Level Reset
  ctrl.device.regionWrite(7, exp + 8, b);
  t.equal(await drv.read32(Reg.CC), 0);
  t.equal(await drv.read32(Reg.CSTS), 0);
  t.equal(await drv.read32(Reg.AQA), 0);
  t.equal(ctrl.sq(1), undefined);
});

t.test('INTMS/INTMC mask the INTx line', async (t) => {
  const { drv, ctrl } = await make(t, image);
  t.equal(ctrl.device.intxLevel, false);
  drv.write32(Reg.INTMS, 1);
  t.equal(await drv.read32(Reg.INTMS), 1);
  drv.put(drv.admin, { opcode: 0x08 });
  drv.ring(drv.admin);
  await turns();
  t.equal(ctrl.device.intxLevel, false, 'masked: the line stays low');
  drv.write32(Reg.INTMC, 1);
  t.equal(ctrl.device.intxLevel, true, 'unmasked with an unconsumed entry: high');
  await drv.reap(drv.admin);
  t.equal(ctrl.device.intxLevel, false, 'the head doorbell consumed it: low');
});
