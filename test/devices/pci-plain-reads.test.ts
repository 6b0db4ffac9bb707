// PciDevice.plainReads: the ranges the server may answer from the bytes
// alone. The promise behind each one is checked against regionRead itself:
// every read inside a range returns exactly the range's bytes at that moment.
import t, { type Test } from 'tap';
import { PciDevice } from '../../devices/pci/index.js';
import type { PlainRead } from '../../devices/device.js';
import { fullDevice } from './fixtures.js';
import { cfgWrite, fakeFds } from './helpers.js';

const CFG = 7;
const ROM = 6;

/** Reads of every range through regionRead, at a few offsets and sizes, against the range's bytes. */
function checkPromise(t: Test, dev: PciDevice, ranges: readonly PlainRead[]): void {
  for (const r of ranges) {
    for (const [at, n] of [[0, 1], [0, 4], [r.bytes.length - 4, 4], [Math.floor(r.bytes.length / 2), 2], [0, r.bytes.length]] as const) {
      const got = dev.regionRead(r.region, r.offset + at, n) as Buffer;
      t.equal(got.toString('hex'), Buffer.from(r.bytes.subarray(at, at + n)).toString('hex'), `region ${r.region} [${r.offset + at}, +${n})`);
    }
  }
}

t.test('config space, the ROM and a backing-bytes BAR are plain; handler and overlay BARs are not', async (t) => {
  const { dev } = fullDevice();
  const ranges = dev.plainReads();
  t.same(ranges.map((r) => [r.region, r.offset, r.bytes.length]), [[CFG, 0, 4096], [ROM, 0, dev.regionInfo(ROM).size], [1, 0, 0x20]],
    'config space whole, the ROM, BAR1 (backing); not BAR0 (handlers), BAR2 (nothing), BAR4 (MSI-X)');
  checkPromise(t, dev, ranges);
  cfgWrite(dev, 0x04, 2, 0x6);
  t.equal(ranges[0]!.bytes[4], 0x6, 'the config range is a live view: a write shows in it');
  checkPromise(t, dev, ranges);
});

t.test('a config read hook cuts its register out, and runs before a read that touches it', async (t) => {
  const dev = new PciDevice({ name: 'h', ids: { vendor: 1, device: 2, classCode: 0 } }, { fdOps: fakeFds().ops });
  let fetched = 0;
  dev.config.onRead(0x40, 4, () => {
    fetched++;
    dev.config.set32(0x40, 0xc0ffee00 + fetched);
  });
  const ranges = dev.plainReads();
  t.same(ranges.map((r) => [r.region, r.offset, r.bytes.length]), [[CFG, 0, 0x40], [CFG, 0x44, 0xbc]], 'the two sides of the register');
  checkPromise(t, dev, ranges);
  t.equal(fetched, 0, 'reads beside the register do not run the hook');
  t.equal((dev.regionRead(CFG, 0x42, 4) as Buffer).readUInt16LE(0), 0xc0ff, 'a read across it runs the hook first');
  t.equal(fetched, 1, 'once');
});

t.test('a subclass that overrides regionRead declares nothing (only it knows what its reads do)', async (t) => {
  class Counting extends PciDevice {
    reads = 0;
    override regionRead(index: number, offset: number, count: number): Buffer | Promise<Buffer> {
      this.reads++;
      return super.regionRead(index, offset, count);
    }
  }
  const dev = new Counting({ name: 'c', ids: { vendor: 1, device: 2, classCode: 0 } }, { fdOps: fakeFds().ops });
  t.same(dev.plainReads(), [], 'no ranges');
});
