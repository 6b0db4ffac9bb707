// chainRanges: the guest ranges behind bytes [offset, offset+len) of a
// chain's readable or writable space, checked against a byte-by-byte model
// for every offset and length (the whole-descriptor fast path and the
// general walk must agree).
import t from 'tap';
import { chainRanges } from '../../../devices/virtio/chain-io.js';
import { DescChain } from '../../../devices/virtio/virtqueue.js';

function chain(lens: number[], space: 'readable' | 'writable'): DescChain {
  const c = new DescChain(null as never, 0, 0);
  let addr = 0x10000;
  for (const l of lens) {
    (space === 'readable' ? c.rAddr : c.wAddr).push(addr);
    (space === 'readable' ? c.rLen : c.wLen).push(l);
    if (space === 'readable') c.readable += l;
    else c.writable += l;
    addr += 0x1000; // never adjacent
  }
  return c;
}

/** The model: the address of every byte, then runs of consecutive addresses cut at descriptor ends. */
function model(lens: number[], offset: number, len: number): { addrs: number[]; lens: number[] } {
  const bytes: { a: number; d: number }[] = [];
  lens.forEach((l, d) => {
    for (let k = 0; k < l; k++) bytes.push({ a: 0x10000 + 0x1000 * d + k, d });
  });
  const out = { addrs: [] as number[], lens: [] as number[] };
  let prev: { a: number; d: number } | null = null;
  for (const b of bytes.slice(offset, offset + len)) {
    if (prev && prev.d === b.d) out.lens[out.lens.length - 1]!++;
    else {
      out.addrs.push(b.a);
      out.lens.push(1);
    }
    prev = b;
  }
  return out;
}

t.test('every offset and length matches the byte model, in both spaces', async (t) => {
  const lens = [16, 3, 40, 1, 7];
  const total = lens.reduce((s, l) => s + l, 0);
  let cases = 0;
  for (const space of ['readable', 'writable'] as const) {
    const c = chain(lens, space);
    for (let off = 0; off <= total; off++) {
      for (let len = 0; off + len <= total; len++) {
        const got = chainRanges(c, space, off, len);
        const want = model(lens, off, len);
        if (JSON.stringify(got) !== JSON.stringify(want)) t.fail(`${space} [${off}, +${len}): ${JSON.stringify(got)} != ${JSON.stringify(want)}`);
        cases++;
      }
    }
  }
  t.pass(`${cases} ranges agree`);
  const c = chain(lens, 'readable');
  const whole = chainRanges(c, 'readable', 16, 3 + 40 + 1);
  t.same(whole, { addrs: [0x11000, 0x12000, 0x13000], lens: [3, 40, 1] }, 'whole descriptors in the middle');
  t.not(whole.addrs, c.rAddr, 'a copy, not the chain’s own array');
  t.throws(() => chainRanges(c, 'readable', 60, 10), RangeError, 'past the end');
  t.throws(() => chainRanges(c, 'readable', -1, 1), RangeError, 'negative offset');
});
