import t from 'tap';
import { PciDevice } from '../../devices/pci/index.js';

import { fullDevice } from './fixtures.js';
import { cfgRead, cfgWrite, EINVAL, fakeFds, walkCaps } from './helpers.js';

const CFG = 7;

t.test('type-0 header fields', async (t) => {
  const { dev } = fullDevice();
  t.equal(cfgRead(dev, 0x00, 2), 0x1b36, 'vendor');
  t.equal(cfgRead(dev, 0x02, 2), 0x1234, 'device');
  t.equal(cfgRead(dev, 0x00, 4), 0x12341b36, 'vendor+device as one dword');
  t.equal(cfgRead(dev, 0x08, 1), 3, 'revision');
  t.equal(cfgRead(dev, 0x09, 1), 0x02, 'prog-if');
  t.equal(cfgRead(dev, 0x0a, 2), 0x0108, 'class');
  t.equal(cfgRead(dev, 0x0e, 1), 0, 'header type 0');
  t.equal(cfgRead(dev, 0x2c, 2), 0x1af4, 'subsystem vendor');
  t.equal(cfgRead(dev, 0x2e, 2), 0x1100, 'subsystem');
  t.equal(cfgRead(dev, 0x3d, 1), 1, 'INTA');
  t.equal(cfgRead(dev, 0x04, 2), 0, 'command starts at 0');
  t.equal(cfgRead(dev, 0x06, 2) & 0x10, 0x10, 'status: capability list');
});

t.test('config space is 4 KiB with PCIe, 256 bytes without', async (t) => {
  t.equal(fullDevice().dev.regionInfo(CFG).size, 4096);
  t.equal(fullDevice().dev.regionInfo(CFG).flags, 3);
  const plain = new PciDevice({ name: 'p', ids: { vendor: 1, device: 2, classCode: 0 } }, { fdOps: fakeFds().ops });
  t.equal(plain.regionInfo(CFG).size, 256);
  t.equal(cfgRead(plain, 0x06, 2) & 0x10, 0, 'no capability list bit');
  t.equal(cfgRead(plain, 0x34, 1), 0, 'no capability pointer');
  t.equal(plain.irqInfo(0).count, 0, 'no pin: no INTx');
});

t.test('read-only identity and registers ignore writes', async (t) => {
  const { dev } = fullDevice();
  cfgWrite(dev, 0x00, 4, 0xffffffff);
  cfgWrite(dev, 0x08, 4, 0xffffffff);
  cfgWrite(dev, 0x2c, 4, 0);
  cfgWrite(dev, 0x3d, 1, 4);
  cfgWrite(dev, 0x34, 1, 0x80);
  t.equal(cfgRead(dev, 0x00, 4), 0x12341b36);
  t.equal(cfgRead(dev, 0x08, 4), 0x01080203);
  t.equal(cfgRead(dev, 0x2c, 4), 0x11001af4);
  t.equal(cfgRead(dev, 0x3d, 1), 1);
  t.equal(cfgRead(dev, 0x34, 1), 0x40);
});

t.test('command register: writable bits only', async (t) => {
  const { dev } = fullDevice();
  cfgWrite(dev, 0x04, 2, 0xffff);
  t.equal(cfgRead(dev, 0x04, 2), 0x0547, 'IO|MEM|MASTER|PARITY|SERR|INTX_DISABLE');
  t.ok(dev.ioEnabled && dev.memoryEnabled && dev.busMaster);
  cfgWrite(dev, 0x04, 2, 0x0006);
  t.equal(cfgRead(dev, 0x04, 2), 0x0006);
  t.notOk(dev.ioEnabled);
  const nopin = fullDevice({ interruptPin: 0 }).dev;
  cfgWrite(nopin, 0x04, 2, 0xffff);
  t.equal(cfgRead(nopin, 0x04, 2), 0x0147, 'INTx disable hardwired 0 without a pin');
});

t.test('status: RW1C bits clear on 1, RO bits stay', async (t) => {
  const { dev } = fullDevice();
  dev.config.set16(0x06, dev.config.u16(0x06) | 0xf900); // device records errors
  t.equal(cfgRead(dev, 0x06, 2), 0xf910);
  cfgWrite(dev, 0x06, 2, 0x2000 | 0x0010); // clear received master abort; CAP_LIST is RO
  t.equal(cfgRead(dev, 0x06, 2), 0xd910);
  cfgWrite(dev, 0x06, 2, 0);
  t.equal(cfgRead(dev, 0x06, 2), 0xd910, 'writing 0 clears nothing');
  // A dword write at 0x04 sets command and clears status in one go.
  cfgWrite(dev, 0x04, 4, 0xffff0002);
  t.equal(cfgRead(dev, 0x04, 4), 0x00100002);
});

t.test('scratch registers: cache line, latency (RO on PCIe), interrupt line', async (t) => {
  const { dev } = fullDevice();
  cfgWrite(dev, 0x0c, 2, 0xff10);
  t.equal(cfgRead(dev, 0x0c, 1), 0x10);
  t.equal(cfgRead(dev, 0x0d, 1), 0, 'no latency timer on PCIe');
  cfgWrite(dev, 0x3c, 1, 11);
  t.equal(cfgRead(dev, 0x3c, 1), 11);
  const conv = new PciDevice(
    { name: 'c', ids: { vendor: 1, device: 2, classCode: 0 }, interruptPin: 2 },
    { fdOps: fakeFds().ops },
  );
  cfgWrite(conv, 0x0d, 1, 0x40);
  t.equal(cfgRead(conv, 0x0d, 1), 0x40, 'conventional PCI: latency timer RW');
  t.equal(cfgRead(conv, 0x3d, 1), 2, 'INTB');
});

t.test('accesses of any size at any offset; one big read', async (t) => {
  const { dev } = fullDevice();
  const all = dev.regionRead(CFG, 0, 4096) as Buffer;
  t.equal(all.length, 4096);
  t.equal(all.readUInt16LE(0), 0x1b36);
  const odd = dev.regionRead(CFG, 1, 3) as Buffer;
  t.same([...odd], [0x1b, 0x34, 0x12]);
  t.equal(cfgRead(dev, 0x03, 1), 0x12);
  t.equal((dev.regionRead(CFG, 0x0ff, 2) as Buffer).length, 2, 'straddles 0x100');
  t.equal((dev.regionRead(CFG, 4095, 1) as Buffer).length, 1);
  t.equal((dev.regionRead(CFG, 4096, 0) as Buffer).length, 0, 'empty read at the end');
  // Unaligned 2-byte write across command/status.
  cfgWrite(dev, 0x05, 2, 0x0004);
  t.equal(cfgRead(dev, 0x04, 2), 0x0400, 'byte 0x05 of command set');
});

t.test('config out-of-range accesses → EINVAL', async (t) => {
  const { dev } = fullDevice();
  for (const [off, n] of [
    [4096, 1],
    [4095, 2],
    [-1, 1],
    [0, 4097],
    [2 ** 60, 4],
    [0.5, 1],
  ]) {
    t.throws(() => dev.regionRead(CFG, off!, n!), EINVAL, `read ${off}+${n}`);
  }
  t.throws(() => dev.regionWrite(CFG, 4094, Buffer.alloc(4)), EINVAL);
  t.throws(() => dev.regionRead(9, 0, 1), EINVAL, 'no region 9');
  t.throws(() => dev.regionInfo(9), EINVAL);
  t.throws(() => dev.regionRead(8, 0, 1), EINVAL, 'VGA absent');
});

t.test('capability chain walk', async (t) => {
  const { dev } = fullDevice();
  const caps = walkCaps(dev);
  t.same(
    caps.map(([id]) => id),
    [0x01, 0x05, 0x11, 0x10, 0x09],
    'PM, MSI, MSI-X, PCIe, vendor in declared order',
  );
  t.equal(caps[0]![1], 0x40, 'first at 0x40');
  for (const [, off] of caps) t.equal(off % 4, 0, `cap at 0x${off.toString(16)} dword aligned`);
  const [, vOff] = caps[4]!;
  t.equal(cfgRead(dev, vOff + 2, 1), 7, 'vendor cap length');
  t.equal(cfgRead(dev, vOff + 3, 4), 0xefbeadde, 'vendor bytes');
  cfgWrite(dev, vOff + 3, 4, 0);
  t.equal(cfgRead(dev, vOff + 3, 4), 0xefbeadde, 'vendor cap is read-only');
  cfgWrite(dev, 0x41, 1, 0);
  t.equal(cfgRead(dev, 0x41, 1), caps[1]![1], 'next pointers are read-only');
  t.same(dev.caps.list.map((c) => c.kind), ['pm', 'msi', 'msix', 'express', 'vendor']);
});

t.test('capability layout errors', async (t) => {
  const mk = (capabilities: never[]) => () =>
    new PciDevice({ name: 'x', ids: { vendor: 1, device: 1, classCode: 0 }, capabilities }, { fdOps: fakeFds().ops });
  t.throws(mk([{ kind: 'pm', offset: 0x3c }] as never[]), RangeError, 'inside the header');
  t.throws(mk([{ kind: 'pm', offset: 0x42 }] as never[]), RangeError, 'unaligned');
  t.throws(mk([{ kind: 'pm', offset: 0xfc }] as never[]), RangeError, 'past 0x100');
  t.throws(mk([{ kind: 'pm', offset: 0x40 }, { kind: 'vendor', data: new Uint8Array(4), offset: 0x44 }] as never[]), RangeError, 'overlap');
  t.throws(mk([{ kind: 'pm' }, { kind: 'pm' }] as never[]), RangeError, 'two PM caps');
  t.throws(mk([{ kind: 'msi', vectors: 3 }] as never[]), RangeError, 'MSI vectors not a power of two');
  t.throws(mk([{ kind: 'vendor', data: new Uint8Array(300) }] as never[]), RangeError, 'vendor too long');
  const explicit = mk([{ kind: 'vendor', data: new Uint8Array(1), offset: 0x80 }, { kind: 'pm' }] as never[])();
  t.same(walkCaps(explicit).map(([, o]) => o), [0x80, 0x84], 'explicit offset, next placed after it');
});

t.test('PM capability: D0/D3hot only, no soft reset', async (t) => {
  const { dev } = fullDevice();
  const pm = 0x40;
  t.equal(cfgRead(dev, pm + 2, 2), 0x0003, 'PMC: version 1.2, no D1/D2, no PME');
  t.equal(cfgRead(dev, pm + 4, 2), 0x0008, 'PMCSR: D0, No_Soft_Reset');
  cfgWrite(dev, pm + 4, 2, 3);
  t.equal(dev.caps.pm!.powerState, 3, 'D3hot');
  cfgWrite(dev, pm + 4, 2, 1);
  t.equal(dev.caps.pm!.powerState, 3, 'D1 unsupported: unchanged');
  cfgWrite(dev, pm + 4, 2, 0xffff & ~3);
  t.equal(cfgRead(dev, pm + 4, 2), 0x0008, 'D0; other bits read-only');
});

t.test('MSI capability registers', async (t) => {
  const { dev } = fullDevice();
  const msi = dev.caps.msi!.offset;
  t.equal(cfgRead(dev, msi + 2, 2), 0x0184, '64-bit, per-vector mask, 4 vectors capable');
  cfgWrite(dev, msi + 2, 2, 0x0071); // ask for 128 vectors
  t.equal(cfgRead(dev, msi + 2, 2), 0x01a5, 'multiple message enable clamped to 4, enabled');
  t.equal(dev.caps.msi!.enabledVectors, 4);
  cfgWrite(dev, msi + 4, 4, 0xfee00003);
  cfgWrite(dev, msi + 8, 4, 0x1);
  cfgWrite(dev, msi + 12, 2, 0x4041);
  t.equal(dev.caps.msi!.address, 0x1fee00000n, 'address low bits 1:0 read-only');
  t.equal(dev.caps.msi!.data, 0x4041);
  cfgWrite(dev, msi + 16, 4, 0xffffffff);
  t.equal(cfgRead(dev, msi + 16, 4), 0xf, 'only 4 mask bits');
  cfgWrite(dev, msi + 20, 4, 0xffffffff);
  t.equal(cfgRead(dev, msi + 20, 4), 0, 'pending bits are read-only');
  const m32 = new PciDevice(
    { name: 'm', ids: { vendor: 1, device: 1, classCode: 0 }, capabilities: [{ kind: 'msi', vectors: 1, address64: false, perVectorMask: false }] },
    { fdOps: fakeFds().ops },
  );
  t.equal(cfgRead(m32, 0x42, 2), 0, '32-bit, no mask, 1 vector');
  t.equal(m32.caps.list[0]!.size, 10);
});

t.test('MSI-X capability registers', async (t) => {
  const { dev } = fullDevice();
  const x = dev.caps.msix!.offset;
  t.equal(cfgRead(dev, x + 2, 2), 7, 'table size 8 (N-1)');
  t.equal(cfgRead(dev, x + 4, 4), 0x00000004, 'table in BAR4 at 0');
  t.equal(cfgRead(dev, x + 8, 4), 0x00002004, 'PBA in BAR4 at 0x2000');
  cfgWrite(dev, x + 2, 2, 0xffff);
  t.equal(cfgRead(dev, x + 2, 2), 0xc007, 'enable and function mask writable');
  t.ok(dev.caps.msix!.enabled && dev.caps.msix!.functionMasked);
});

t.test('PCIe capability registers', async (t) => {
  const { dev } = fullDevice();
  const e = dev.caps.express!.offset;
  t.equal(cfgRead(dev, e + 2, 2), 0x0002, 'v2 endpoint');
  t.equal(cfgRead(dev, e + 4, 4) & 0x10000000, 0x10000000, 'FLR capable');
  t.equal(cfgRead(dev, e + 8, 2), 0x2810, 'device control default');
  cfgWrite(dev, e + 8, 2, 0x7fff);
  t.equal(cfgRead(dev, e + 8, 2), 0x7fff);
  t.equal(cfgRead(dev, e + 12, 4), 0x11, 'x1 at 2.5 GT/s');
  t.equal(cfgRead(dev, e + 0x12, 2), 0x11, 'link status');
  dev.config.set16(e + 0xa, 0x0009);
  cfgWrite(dev, e + 0xa, 2, 0x0001);
  t.equal(cfgRead(dev, e + 0xa, 2), 0x0008, 'device status RW1C');
  cfgWrite(dev, e + 0x0c, 4, 0);
  t.equal(cfgRead(dev, e + 12, 4), 0x11, 'link capabilities read-only');
});
