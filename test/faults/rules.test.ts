// The seeded generator and the rule semantics without a server: streams
// fixed by seed and label, byte fills of any length, and the order of a
// rule's checks (window, nth, times, probability) on an injected clock; the
// NVMe status a block rule answers with.
import t from 'tap';
import { SeededRandom } from '../../faults/prng.js';
import { FaultInjector } from '../../faults/injector.js';
import { quietLogger } from '../../devices/definition.js';

t.test('SeededRandom: fixed by seed and label, fills any length', async (t) => {
  const a = new SeededRandom(1);
  const b = new SeededRandom(1);
  const seq = (r: SeededRandom) => Array.from({ length: 8 }, () => r.nextU32());
  const first = seq(a);
  t.same(first, seq(b), 'same seed, same sequence');
  t.not(seq(new SeededRandom(2)).join(), first.join(), 'another seed');
  t.not(seq(new SeededRandom(1, 'dev')).join(), first.join(), 'another label');
  t.not(seq(new SeededRandom(2 ** 40 + 1)).join(), first.join(), 'high seed bits count');
  t.ok(first.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32), 'u32 values');
  for (const len of [0, 1, 3, 4, 5, 4099]) {
    const x = new Uint8Array(len);
    const y = new Uint8Array(len);
    new SeededRandom(9).fill(x);
    new SeededRandom(9).fill(y);
    t.same(x, y, `fill ${len} bytes reproduces`);
  }
  const whole = new Uint8Array(23);
  new SeededRandom(4).fill(whole);
  const cut = new Uint8Array(23);
  const r4 = new SeededRandom(4);
  for (const [from, to] of [[0, 3], [3, 8], [8, 9], [9, 9], [9, 23]]) r4.fill(cut.subarray(from, to));
  t.same(cut, whole, 'one byte stream however fill() cuts it');
  const big = new Uint8Array(65536);
  new SeededRandom(3).fill(big);
  t.equal(new Set(big).size, 256, 'every byte value shows up');
  const r = new SeededRandom(5);
  let sum = 0;
  for (let i = 0; i < 10000; i++) sum += r.nextFloat();
  t.ok(sum > 4800 && sum < 5200, `floats average about 0.5 (${(sum / 10000).toFixed(3)})`);
  t.throws(() => new SeededRandom(-1), RangeError);
  t.throws(() => new SeededRandom(1.5), RangeError);
});

t.test('window, nth, times and probability on an injected clock', async (t) => {
  let now = 0;
  const inj = new FaultInjector(['blk0', 'nvme0'], { log: quietLogger, now: () => now });
  const dev = inj.device('blk0')!;
  inj.add({ id: 'w', match: { op: 'read' }, nth: 2, times: 2, window: { fromMs: 100, untilMs: 200 }, action: { type: 'blk-status', status: 'ioerr' } });
  const ask = () => dev.blockStatus({ op: 'read', lba: 0n, count: 1 });
  t.equal(ask(), undefined, 'before the window');
  now = 100;
  t.equal(ask(), undefined, 'first occurrence in the window (nth 2)');
  t.same(ask(), { kind: 'ioerr' }, 'second');
  t.same(ask(), { kind: 'ioerr' }, 'third (times 2)');
  t.equal(ask(), undefined, 'times used up');
  now = 200;
  t.equal(ask(), undefined, 'the window is [from, until)');
  t.match(inj.list().rules[0], { matched: 4, injected: 2 });
});

t.test('an NVMe status rule answers any block device that asks, per device', async (t) => {
  const inj = new FaultInjector(['blk0', 'nvme0'], { log: quietLogger });
  inj.add({ id: 'n', device: 'nvme0', match: { lba: ['0x1000', '0x1010'] }, action: { type: 'nvme-status', sct: 0, sc: 0x81 } });
  t.same(inj.device('nvme0')!.blockStatus({ op: 'write', lba: 0x100fn, count: 4 }), { kind: 'nvme', sct: 0, sc: 0x81 });
  t.equal(inj.device('nvme0')!.blockStatus({ op: 'write', lba: 0x1010n, count: 4 }), undefined, 'past the range');
  t.equal(inj.device('blk0')!.blockStatus({ op: 'write', lba: 0x1000n, count: 4 }), undefined, 'another device');
});
