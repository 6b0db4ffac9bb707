// preadvFull / pwritevFull: positioned scatter/gather between a file and
// many views (several ArrayBuffers, mapped memory too), inline page-cache
// copies or the thread pool, end of file, errors, bad arguments.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import * as n from '../../native/index.js';
import { tmpDir } from './util.js';

const KiB = 1024;

function pattern(size: number, seed = 1): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 13 + seed) & 0xff;
  return b;
}

/** `count` views of `len` bytes, every other slot of a few ArrayBuffers (never adjacent). */
function scattered(count: number, len: number, buffers = 3): Uint8Array[] {
  const abs = Array.from({ length: buffers }, () => new ArrayBuffer(2 * len * Math.ceil(count / buffers)));
  return Array.from({ length: count }, (_, i) => new Uint8Array(abs[i % buffers]!, 2 * len * Math.floor(i / buffers), len));
}

const concat = (views: Uint8Array[]) => Buffer.concat(views.map((v) => Buffer.from(v)));

function file(t: { teardown(fn: () => void): void }, data: Buffer): { fd: number; file: string } {
  const { dir, cleanup } = tmpDir();
  const f = path.join(dir, 'img');
  fs.writeFileSync(f, data);
  const fd = fs.openSync(f, 'r+');
  t.teardown(() => {
    fs.closeSync(fd);
    cleanup();
  });
  return { fd, file: f };
}

const settle = async (r: number | Promise<number>) => (typeof r === 'number' ? r : await r);

for (const inline of [true, false]) {
  t.test(`scatter read and gather write, tryInline ${inline}`, async (t) => {
    const data = pattern(1024 * KiB);
    const { fd, file: f } = file(t, data);
    const views = scattered(100, 4 * KiB);
    const r = n.preadvFull(fd, views, 64 * KiB, inline);
    if (!inline) t.ok(r instanceof Promise, 'without tryInline the pool does it: a promise');
    t.equal(await settle(r), 400 * KiB, 'every byte read');
    t.ok(concat(views).equals(data.subarray(64 * KiB, 464 * KiB)), 'views hold the file bytes in order');

    const out = scattered(37, 3 * KiB + 5, 2);
    out.forEach((v, i) => v.fill(i + 1));
    t.equal(await settle(n.pwritevFull(fd, out, 10, inline)), 37 * (3 * KiB + 5), 'every byte written');
    const back = fs.readFileSync(f);
    t.ok(back.subarray(10, 10 + 37 * (3 * KiB + 5)).equals(concat(out)), 'the file holds the views in order');
    t.ok(back.subarray(0, 10).equals(data.subarray(0, 10)), 'bytes before untouched');
  });
}

t.test('a file in the page cache is read inline (a number, not a promise) where RWF_NOWAIT works', async (t) => {
  const data = pattern(256 * KiB, 7);
  const { fd } = file(t, data);
  fs.readFileSync(`/proc/self/fd/${fd}`); // in the page cache now
  const views = scattered(8, 32 * KiB);
  const r = n.preadvFull(fd, views, 0, true);
  if (typeof r !== 'number') t.comment('RWF_NOWAIT not honoured here: the pool finished it');
  t.equal(await settle(r), 256 * KiB);
  t.ok(concat(views).equals(data));
});

t.test('a read past the end of the file returns what there was', async (t) => {
  const data = pattern(10 * KiB, 3);
  const { fd } = file(t, data);
  for (const inline of [true, false]) {
    const views = scattered(4, 4 * KiB);
    views.forEach((v) => v.fill(0xee));
    t.equal(await settle(n.preadvFull(fd, views, 2 * KiB, inline)), 8 * KiB, `short count (tryInline ${inline})`);
    t.ok(concat(views).subarray(0, 8 * KiB).equals(data.subarray(2 * KiB)), 'the bytes that exist');
    t.ok(concat(views).subarray(8 * KiB).every((b) => b === 0xee), 'the rest untouched (the caller zeroes it)');
    t.equal(await settle(n.preadvFull(fd, views, 64 * KiB, inline)), 0, 'at or past the end: 0');
  }
});

t.test('into and out of mmap\'d memory (how guest RAM is reached)', async (t) => {
  const data = pattern(512 * KiB, 9);
  const { fd } = file(t, data);
  const mfd = n.memfdCreate('guest', 1024 * KiB);
  const ab = n.mmap(mfd, 0, 1024 * KiB, n.PROT_READ | n.PROT_WRITE);
  t.teardown(() => {
    n.munmap(ab);
    n.close(mfd);
  });
  const views = Array.from({ length: 64 }, (_, i) => new Uint8Array(ab, (i * 2 + 1) * 8 * KiB, 8 * KiB));
  t.equal(await settle(n.preadvFull(fd, views, 0, true)), 512 * KiB);
  t.ok(concat(views).equals(data), 'guest pages filled from the file');
});

t.test('empty and zero-length views, and no views', async (t) => {
  const { fd } = file(t, pattern(8 * KiB));
  const views = [new Uint8Array(0), new Uint8Array(16), new Uint8Array(new ArrayBuffer(8), 8, 0), new Uint8Array(16)];
  t.equal(await settle(n.preadvFull(fd, views, 0, true)), 32);
  t.same([...views[3]!], [...pattern(8 * KiB).subarray(16, 32)], 'the empty ones are skipped');
  t.equal(await settle(n.preadvFull(fd, [], 0, true)), 0, 'nothing to do');
});

t.test('many distinct buffers (bounce buffers of memory reached by messages)', async (t) => {
  const data = pattern(300 * 512, 5);
  const { fd } = file(t, data);
  const views = Array.from({ length: 300 }, () => new Uint8Array(512));
  t.equal(await settle(n.preadvFull(fd, views, 0, false)), 300 * 512);
  t.ok(concat(views).equals(data));
});

t.test('I/O errors reject with the errno, whichever path', async (t) => {
  const { dir, cleanup } = tmpDir();
  t.teardown(cleanup);
  const ro = path.join(dir, 'ro');
  fs.writeFileSync(ro, pattern(4 * KiB));
  const rfd = fs.openSync(ro, 'r');
  t.teardown(() => fs.closeSync(rfd));
  for (const inline of [true, false]) {
    await t.rejects(settle(n.pwritevFull(rfd, [new Uint8Array(16)], 0, inline)), { code: 'EBADF', syscall: 'pwritev' }, `write to a read-only fd (tryInline ${inline})`);
    await t.rejects(settle(n.preadvFull(1 << 20, [new Uint8Array(16)], 0, inline)), { code: 'EBADF', syscall: 'preadv' }, 'a closed fd');
  }
  const wfd = fs.openSync(path.join(dir, 'wo'), 'w');
  t.teardown(() => fs.closeSync(wfd));
  await t.rejects(settle(n.preadvFull(wfd, [new Uint8Array(16)], 0, true)), { code: 'EBADF' }, 'read from a write-only fd');
});

t.test('bad arguments throw at once', async (t) => {
  const { fd } = file(t, pattern(4 * KiB));
  const v = [new Uint8Array(8)];
  t.throws(() => n.preadvFull(-1, v, 0, true), RangeError);
  t.throws(() => n.preadvFull(fd, 'x' as never, 0, true), TypeError);
  t.throws(() => n.preadvFull(fd, [{} as Uint8Array], 0, true), TypeError);
  t.throws(() => n.preadvFull(fd, v, -1, true), RangeError);
  t.throws(() => n.preadvFull(fd, v, 2 ** 53, true), RangeError);
  t.throws(() => n.preadvFull(fd, v, 0, 1 as never), TypeError);
  t.throws(() => n.pwritevFull(fd, v, 1.5, true), RangeError);
  const detached = new Uint8Array(new ArrayBuffer(64));
  structuredClone(detached.buffer, { transfer: [detached.buffer] });
  t.equal(await settle(n.preadvFull(fd, [detached, new Uint8Array(4)], 0, true)), 4, 'a detached view is empty, not a crash');
  t.equal(n.preadvFull(fd, v, 0, true) !== undefined, true, 'still works afterwards');
});

t.test('preadvSpans / pwritevSpans take a span list as it is, and check every span', async (t) => {
  const data = pattern(64 * KiB, 11);
  const { fd, file: f } = file(t, data);
  const a = new ArrayBuffer(16 * KiB);
  const b = new ArrayBuffer(16 * KiB);
  const spans = new Float64Array([1, 4 * KiB, 4 * KiB, 0, 0, 2 * KiB, 1, 0, 1 * KiB]);
  t.equal(await settle(n.preadvSpans(fd, { buffers: [a, b], spans, count: 3 }, 1000, true)), 7 * KiB);
  const got = Buffer.concat([Buffer.from(b, 4 * KiB, 4 * KiB), Buffer.from(a, 0, 2 * KiB), Buffer.from(b, 0, 1 * KiB)]);
  t.ok(got.equals(data.subarray(1000, 1000 + 7 * KiB)), 'spans filled in list order');
  t.equal(await settle(n.pwritevSpans(fd, { buffers: [a, b], spans, count: 2 }, 0, false)), 6 * KiB, 'count limits the spans used');
  t.ok(fs.readFileSync(f).subarray(0, 6 * KiB).equals(got.subarray(0, 6 * KiB)));

  const bad = (s: number[], what: string, count = 1, buffers: ArrayBufferLike[] = [a]) =>
    t.throws(() => n.preadvSpans(fd, { buffers, spans: new Float64Array(s), count }, 0, true), RangeError, what);
  bad([0, 16 * KiB - 1, 2], 'a span past the end of its buffer');
  bad([1, 0, 1], 'a buffer index out of range');
  bad([0, 0.5, 1], 'a fractional offset');
  bad([0, -1, 1], 'a negative offset');
  bad([0, 0, 1], 'count larger than the spans hold', 2);
  t.throws(() => n.preadvSpans(fd, { buffers: [new SharedArrayBuffer(8)], spans: new Float64Array([0, 0, 1]), count: 1 }, 0, true), TypeError, 'ArrayBuffers only');
  t.throws(() => n.preadvSpans(fd, { buffers: [a], spans: new Uint32Array(3) as never, count: 1 }, 0, true), TypeError, 'spans must be a Float64Array');
});

t.test('pwritevSpans with block writes on the calling thread: a number, never a promise', async (t) => {
  const { fd, file: f } = file(t, Buffer.alloc(64 * KiB));
  const data = pattern(12 * KiB, 5);
  const a = data.buffer.slice(data.byteOffset, data.byteOffset + data.length);
  const spans = new Float64Array([0, 8 * KiB, 4 * KiB, 0, 0, 8 * KiB]);
  const r = n.pwritevSpans(fd, { buffers: [a], spans, count: 2 }, 4 * KiB, false, true);
  t.equal(r, 12 * KiB, 'done before it returned, whatever RWF_NOWAIT would have said');
  const want = Buffer.concat([data.subarray(8 * KiB), data.subarray(0, 8 * KiB)]);
  t.ok(fs.readFileSync(f).subarray(4 * KiB, 16 * KiB).equals(want), 'spans written in list order');
  t.throws(() => n.pwritevSpans(fd, { buffers: [a], spans, count: 1 }, 0, false, 1 as never), TypeError, 'block must be a boolean');
  // A failing blocking write is repeated on the pool, which reports it.
  const { dir, cleanup } = tmpDir();
  t.teardown(cleanup);
  fs.writeFileSync(path.join(dir, 'ro'), pattern(4 * KiB));
  const rfd = fs.openSync(path.join(dir, 'ro'), 'r');
  t.teardown(() => fs.closeSync(rfd));
  await t.rejects(settle(n.pwritevSpans(rfd, { buffers: [a], spans, count: 1 }, 0, false, true)), { code: 'EBADF', syscall: 'pwritev' });
});
