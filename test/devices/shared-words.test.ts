// Words shared with a driver are read and written whole: a thread storing
// values across a byte boundary (0x00ff / 0x0100, as a ring index does every
// 256 buffers) is never seen half-way by loadU16 / loadU32, and a storeU32 is
// never seen half-way by a reader on another thread.
import t from 'tap';
import { Worker } from 'node:worker_threads';
import { loadU16, loadU32, storeU16, storeU32 } from '../../devices/shared-words.js';

const WRITER = `
const { workerData: { sab, width, a, b } } = require('node:worker_threads');
const view = width === 2 ? new Uint16Array(sab, 8, 1) : new Uint32Array(sab, 8, 1);
const stop = new Int32Array(sab, 0, 1);
for (let i = 0; Atomics.load(stop, 0) === 0; i++) Atomics.store(view, 0, i & 1 ? a : b);
`;

/** Reads `reads` times while another thread flips the word between a and b; returns the values seen that are neither. */
async function torn(width: 2 | 4, a: number, b: number, read: (v: Uint8Array) => number, reads: number): Promise<number[]> {
  const sab = new SharedArrayBuffer(16);
  const w = new Worker(WRITER, { eval: true, workerData: { sab, width, a, b } });
  await new Promise((r) => w.once('online', r));
  const bytes = new Uint8Array(sab, 8, width);
  const odd: number[] = [];
  for (let i = 0; i < reads; i++) {
    const x = read(bytes);
    if (x !== a && x !== b && x !== 0 && odd.length < 10) odd.push(x);
  }
  Atomics.store(new Int32Array(sab, 0, 1), 0, 1);
  await w.terminate();
  return odd;
}

const bytes16 = (v: Uint8Array) => v[0]! | (v[1]! << 8);

t.test('loadU16 never sees half of a store that crosses a byte boundary', async (t) => {
  t.same(await torn(2, 0x00ff, 0x0100, loadU16, 2_000_000), []);
});

t.test('loadU32 neither', async (t) => {
  t.same(await torn(4, 0x00ffffff, 0x01000000, loadU32, 2_000_000), []);
});

t.test('byte by byte, the same reads do tear (what the whole-word loads prevent)', async (t) => {
  // A tear needs both threads on a CPU at once: on a machine busy with other
  // work that can take many tries, so try for a while (usually the first one tears).
  let seen: number[] = [];
  const until = Date.now() + 30_000;
  while (seen.length === 0 && Date.now() < until) seen = await torn(2, 0x00ff, 0x0100, bytes16, 2_000_000);
  t.ok(seen.length > 0, `torn values seen: ${seen.map((x) => x.toString(16)).join(' ')}`);
});

t.test('storeU32 writes the whole word; unaligned views fall back to bytes', async (t) => {
  const buf = new Uint8Array(new ArrayBuffer(12));
  storeU32(buf.subarray(4), 0x01020304);
  t.same([...buf.subarray(4, 8)], [4, 3, 2, 1]);
  t.equal(loadU32(buf.subarray(4)), 0x01020304);
  storeU32(buf.subarray(5), 0xa0b0c0d0);
  t.same([...buf.subarray(5, 9)], [0xd0, 0xc0, 0xb0, 0xa0]);
  t.equal(loadU32(buf.subarray(5)), 0xa0b0c0d0, 'unaligned, little-endian');
  t.equal(loadU16(buf.subarray(5)), 0xc0d0);
  const w = new Uint8Array(new ArrayBuffer(6));
  storeU16(w, 0x0102);
  storeU16(w.subarray(3), 0x0304);
  t.same([...w], [2, 1, 0, 4, 3, 0], 'aligned and unaligned u16 stores, little-endian');
});
