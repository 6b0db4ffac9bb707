import t from 'tap';
import { PciDevice, type BarSpec } from '../../devices/pci/index.js';
import { fullDevice } from './fixtures.js';
import { barRead, barWrite, cfgRead, cfgWrite, EINVAL, fakeFds } from './helpers.js';

function withBars(bars: BarSpec[], rom?: Buffer): PciDevice {
  return new PciDevice({ name: 'b', ids: { vendor: 1, device: 2, classCode: 0 }, bars, rom }, { fdOps: fakeFds().ops });
}

/** Write all-ones to a BAR register and read back what sticks. */
function size(dev: PciDevice, reg: number): number {
  cfgWrite(dev, reg, 4, 0xffffffff);
  return cfgRead(dev, reg, 4);
}

t.test('BAR sizing: mem32, prefetchable mem32, I/O', async (t) => {
  const dev = withBars([
    { index: 0, kind: 'mem32', size: 0x1000 },
    { index: 1, kind: 'mem32', size: 0x100000, prefetchable: true },
    { index: 2, kind: 'io', size: 0x100 },
    { index: 3, kind: 'io', size: 4 },
    { index: 5, kind: 'mem32', size: 16 },
  ]);
  t.equal(cfgRead(dev, 0x10, 4), 0x0, 'mem32 type bits');
  t.equal(cfgRead(dev, 0x14, 4), 0x8, 'prefetchable bit');
  t.equal(cfgRead(dev, 0x18, 4), 0x1, 'I/O space bit');
  t.equal(size(dev, 0x10), 0xfffff000);
  t.equal(size(dev, 0x14), 0xfff00008);
  t.equal(size(dev, 0x18), 0xffffff01);
  t.equal(size(dev, 0x1c), 0xfffffffd);
  t.equal(size(dev, 0x24), 0xfffffff0);
  t.equal(size(dev, 0x20), 0, 'unimplemented BAR reads 0');
  cfgWrite(dev, 0x10, 4, 0xfebc1234);
  t.equal(cfgRead(dev, 0x10, 4), 0xfebc1000, 'address below the size is dropped');
  cfgWrite(dev, 0x18, 4, 0xc0ff);
  t.equal(cfgRead(dev, 0x18, 4), 0xc001, 'I/O address');
  cfgWrite(dev, 0x10, 1, 0xff);
  t.equal(cfgRead(dev, 0x10, 4), 0xfebc1000, 'byte write to the low byte changes nothing');
  cfgWrite(dev, 0x13, 1, 0x12);
  t.equal(cfgRead(dev, 0x10, 4), 0x12bc1000, 'byte write to the top byte');
});

t.test('BAR sizing: 64-bit BARs take two slots', async (t) => {
  const dev = withBars([
    { index: 0, kind: 'mem64', size: 0x4000 },
    { index: 2, kind: 'mem64', size: 2 ** 34, prefetchable: true },
  ]);
  t.equal(cfgRead(dev, 0x10, 4), 0x4, '64-bit type');
  t.equal(cfgRead(dev, 0x18, 4), 0xc, '64-bit prefetchable');
  t.equal(size(dev, 0x10), 0xffffc004);
  t.equal(size(dev, 0x14), 0xffffffff, 'upper dword all writable below 4 GiB');
  t.equal(size(dev, 0x18), 0x0000000c, '16 GiB: no low address bits');
  t.equal(size(dev, 0x1c), 0xfffffffc, 'upper dword masks 16 GiB');
  t.equal(dev.regionInfo(0).size, 0x4000);
  t.equal(dev.regionInfo(1).size, 0, 'the upper slot is no region');
  t.equal(dev.regionInfo(2).size, 2 ** 34);
  t.equal(dev.regionInfo(2).flags, 3, 'read|write');
});

t.test('BAR spec validation', async (t) => {
  t.throws(() => withBars([{ index: 0, kind: 'mem32', size: 0x1800 }]), RangeError, 'not a power of two');
  t.throws(() => withBars([{ index: 0, kind: 'mem32', size: 8 }]), RangeError, 'memory < 16');
  t.throws(() => withBars([{ index: 0, kind: 'io', size: 2 }]), RangeError, 'I/O < 4');
  t.throws(() => withBars([{ index: 5, kind: 'mem64', size: 16 }]), RangeError, 'mem64 at BAR5');
  t.throws(() => withBars([{ index: 6, kind: 'mem32', size: 16 }]), RangeError, 'index 6');
  t.throws(
    () => withBars([{ index: 0, kind: 'mem64', size: 16 }, { index: 1, kind: 'io', size: 4 }]),
    RangeError,
    'slot taken by a 64-bit BAR',
  );
  t.throws(() => withBars([{ index: 0, kind: 'io', size: 4, prefetchable: true }]), RangeError, 'prefetchable I/O');
  t.throws(() => withBars([{ index: 0, kind: 'mem32', size: 64, backing: Buffer.alloc(32) }]), RangeError, 'short backing');
});

t.test('expansion ROM: BAR sizing, enable bit, read-only region', async (t) => {
  const rom = Buffer.alloc(3000, 0x11);
  rom[0] = 0x55;
  rom[1] = 0xaa;
  const dev = withBars([], rom);
  t.equal(dev.regionInfo(6).size, 4096, 'rounded up to a power of two');
  t.equal(dev.regionInfo(6).flags, 1, 'read only');
  // QEMU's vfio_pci_size_rom: write ~0x7ff, read back, restore.
  cfgWrite(dev, 0x30, 4, 0xfffff800);
  t.equal(cfgRead(dev, 0x30, 4), 0xfffff000);
  cfgWrite(dev, 0x30, 4, 0xfffff801);
  t.equal(cfgRead(dev, 0x30, 4), 0xfffff001, 'enable bit');
  cfgWrite(dev, 0x30, 4, 0);
  const head = (await dev.regionRead(6, 0, 2)) as Buffer;
  t.same([...head], [0x55, 0xaa]);
  const tail = (await dev.regionRead(6, 2998, 4)) as Buffer;
  t.same([...tail], [0x11, 0x11, 0xff, 0xff], 'padded with 0xff');
  t.throws(() => dev.regionWrite(6, 0, Buffer.alloc(1)), EINVAL, 'ROM writes refused');
  t.throws(() => dev.regionRead(6, 4095, 2), EINVAL);
  const none = withBars([]);
  t.equal(none.regionInfo(6).size, 0);
  t.equal(size(none, 0x30), 0, 'no ROM: hardwired 0');
  t.throws(() => none.regionRead(6, 0, 1), EINVAL);
  t.equal(withBars([], Buffer.alloc(10)).regionInfo(6).size, 2048, 'at least 2 KiB');
});

t.test('register-style BAR: handler values and widths', async (t) => {
  const fx = fullDevice();
  const { dev } = fx;
  fx.regs.set(0x10, 0xdeadbeef);
  t.equal(await barRead(dev, 0, 0x10, 4), 0xdeadbeef, 'number, 4 bytes');
  t.equal(await barRead(dev, 0, 0x10, 2), 0xbeef, 'number truncated to the access width');
  await barWrite(dev, 0, 0x20, 2, 0x1234);
  await dev.regionWrite(0, 0x28, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]));
  await dev.regionWrite(0, 0x30, Buffer.from([1, 2, 3]));
  t.same(fx.writes, [
    { off: 0x20, data: [0x34, 0x12], value: 0x1234 },
    { off: 0x28, data: [1, 2, 3, 4, 5, 6, 7, 8], value: 0x0807060504030201n },
    { off: 0x30, data: [1, 2, 3], value: undefined },
  ]);
  const big = new PciDevice(
    {
      name: 'h',
      ids: { vendor: 1, device: 2, classCode: 0 },
      bars: [
        {
          index: 0,
          kind: 'mem32',
          size: 64,
          handlers: {
            read: (off, n) => (off === 0 ? 0x1122334455667788n : off === 8 ? Buffer.from([9, 8]) : Promise.resolve(n)),
            write: () => Promise.resolve(),
          },
        },
      ],
    },
    { fdOps: fakeFds().ops },
  );
  t.equal(((await big.regionRead(0, 0, 8)) as Buffer).readBigUInt64LE(0), 0x1122334455667788n, 'bigint');
  t.same([...((await big.regionRead(0, 8, 4)) as Buffer)], [9, 8, 0, 0], 'short Buffer padded');
  const p = big.regionRead(0, 16, 4);
  t.ok(p instanceof Promise, 'async handler gives a promise');
  t.equal((await p).readUInt32LE(0), 4);
  t.ok(big.regionWrite(0, 0, Buffer.alloc(4)) instanceof Promise, 'async write');
});

t.test('memory-style BAR: backing bytes and onWrite', async (t) => {
  const backing = Buffer.alloc(64);
  const seen: [number, number][] = [];
  const dev = withBars([{ index: 3, kind: 'mem32', size: 64, backing, onWrite: (o, n) => void seen.push([o, n]) }]);
  await dev.regionWrite(3, 60, Buffer.from([1, 2, 3, 4]));
  t.same([...backing.subarray(60)], [1, 2, 3, 4]);
  t.same(seen, [[60, 4]]);
  t.equal(await barRead(dev, 3, 60, 4), 0x04030201);
  const io = fullDevice().dev;
  await barWrite(io, 1, 0x1f, 1, 0x5a);
  t.equal(await barRead(io, 1, 0x1c, 4), 0x5a000000, 'I/O BAR backed by bytes');
});

t.test('BAR region bounds → EINVAL', async (t) => {
  const { dev } = fullDevice();
  t.throws(() => dev.regionRead(0, 0x1000, 1), EINVAL, 'past the end');
  t.throws(() => dev.regionRead(0, 0xffc, 8), EINVAL, 'straddles the end');
  t.throws(() => dev.regionWrite(1, 0x20, Buffer.alloc(1)), EINVAL, 'I/O BAR end');
  t.throws(() => dev.regionRead(3, 0, 4), EINVAL, 'upper half of a 64-bit BAR');
  t.throws(() => dev.regionRead(5, 0, 4), EINVAL, 'unimplemented BAR');
  t.throws(() => dev.regionRead(0, Number.MAX_SAFE_INTEGER, 4), EINVAL, 'offset near 2^53');
  t.throws(() => dev.regionRead(0, 0, -1), EINVAL, 'negative count');
  t.equal(((await dev.regionRead(2, 0x1ffff8, 8)) as Buffer).length, 8, 'last qword of the 64-bit BAR');
  t.same(((await dev.regionRead(2, 0, 4)) as Buffer).readUInt32LE(0), 0, 'no handlers: zeros');
  await dev.regionWrite(2, 0, Buffer.alloc(4, 1)); // dropped, no throw
});

t.test('device info', async (t) => {
  const { dev } = fullDevice();
  t.same(dev.info(), { flags: 3, numRegions: 9, numIrqs: 5 }, 'PCI|RESET, 9 regions, 5 IRQ indices');
  t.same(dev.regionInfo(8), { size: 0, flags: 0 }, 'no VGA');
  t.same(dev.regionInfo(5), { size: 0, flags: 0 });
});

t.test('handler values are cut to the access width', async (t) => {
  const { toBytes, valueOf } = await import('../../devices/pci/bars.js');
  t.same([...toBytes(0x1ff, 1)], [0xff]);
  t.same([...toBytes(-1, 2)], [0xff, 0xff]);
  t.same([...toBytes(-1n, 8)], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  t.same([...toBytes(2 ** 40 + 1, 8)], [1, 0, 0, 0, 0, 1, 0, 0]);
  t.same([...toBytes(0x0102030405060708n, 4)], [8, 7, 6, 5]);
  const b = Buffer.from([1, 2]);
  t.equal(toBytes(b, 2), b, 'exact-size Buffer used as is');
  t.same([...toBytes(b, 3)], [1, 2, 0]);
  t.equal(valueOf(Buffer.from([1, 2, 3, 4])), 0x04030201);
  t.equal(valueOf(Buffer.from([1, 2, 3])), undefined);
});
