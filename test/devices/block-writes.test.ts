// When virtio-blk's writes may block the event loop: quick writes inline,
// a slow one sends them to the thread pool for a hold-off that doubles while
// slow writes keep coming, large ones always go there; and writeFull's use
// of it (a write it allows completes before writeFull returns), and the
// form the native ring loop uses (largest, took).
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BlockingWrites, MAX_BLOCKING_WRITE, SLOW_WRITE_MS } from '../../devices/block/blocking-writes.js';
import { blockingWrites, writeFull } from '../../devices/block/file-io.js';

function clocked(enabled = true) {
  const c = { t: 1000 };
  return { c, p: new BlockingWrites(enabled, () => c.t) };
}

/** One inline write that takes `ms`. */
function write(x: ReturnType<typeof clocked>, ms: number): void {
  const start = x.p.clock();
  x.c.t += ms;
  x.p.done(start);
}

t.test('quick writes stay inline; larger than MAX_BLOCKING_WRITE or turned off: the pool', async (t) => {
  const x = clocked();
  for (let i = 0; i < 5; i++) {
    t.ok(x.p.allow(1 << 20));
    write(x, 0.2);
  }
  t.notOk(x.p.allow(MAX_BLOCKING_WRITE + 1), 'too large');
  t.ok(x.p.allow(MAX_BLOCKING_WRITE), 'the largest allowed');
  t.notOk(clocked(false).p.allow(4096), 'VFIO_USER_TS_BLK_INLINE_IO=0');
  t.same(x.p.stats, { inline: 5, heldOff: 0, slow: 0 });
});

t.test('a slow write holds writes off the loop for 100 ms, doubling while they stay slow, reset by a quick one', async (t) => {
  const x = clocked();
  write(x, SLOW_WRITE_MS + 1);
  t.notOk(x.p.allow(4096), 'held off at once');
  x.c.t += 99;
  t.notOk(x.p.allow(4096), 'still within 100 ms');
  x.c.t += 1;
  t.ok(x.p.allow(4096), 'allowed again after 100 ms');
  write(x, SLOW_WRITE_MS + 1); // slow again: 200 ms
  x.c.t += 199;
  t.notOk(x.p.allow(4096));
  x.c.t += 1;
  t.ok(x.p.allow(4096), 'after 200 ms');
  write(x, 0.1); // quick: the next slow one holds 100 ms again
  write(x, SLOW_WRITE_MS + 5);
  x.c.t += 100;
  t.ok(x.p.allow(4096), 'back to 100 ms');
  t.same(x.p.stats, { inline: 4, heldOff: 3, slow: 3 });
  for (let i = 0; i < 20; i++) {
    write(x, SLOW_WRITE_MS + 1);
    x.c.t += 20_000;
  }
  write(x, SLOW_WRITE_MS + 1);
  x.c.t += 9_999;
  t.notOk(x.p.allow(4096), 'the hold-off stops growing at 10 s');
  x.c.t += 1;
  t.ok(x.p.allow(4096));
});

t.test('largest() and took(): the same rules for a native loop that makes several writes at once', async (t) => {
  const x = clocked();
  t.equal(x.p.largest(), MAX_BLOCKING_WRITE, 'writes up to the limit may block');
  t.equal(clocked(false).p.largest(), 0, 'VFIO_USER_TS_BLK_INLINE_IO=0: none');
  x.p.took(0.5, 3);
  t.same(x.p.stats, { inline: 3, heldOff: 0, slow: 0 }, 'three quick writes counted');
  x.p.took(SLOW_WRITE_MS + 1, 2);
  t.equal(x.p.largest(), 0, 'the longest was slow: held off');
  t.same(x.p.stats, { inline: 5, heldOff: 0, slow: 1 }, 'asking is not counted as a write held off');
  x.c.t += 100;
  t.equal(x.p.largest(), MAX_BLOCKING_WRITE, 'after 100 ms');
});

t.test('writeFull with the byte count writes before it returns; without it, as before', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-bw-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const f = path.join(dir, 'img');
  fs.writeFileSync(f, Buffer.alloc(1 << 20));
  const fd = fs.openSync(f, 'r+');
  t.teardown(() => fs.closeSync(fd));
  const mem = new ArrayBuffer(256 << 10);
  new Uint8Array(mem).fill(0x5a);
  const list = { buffers: [mem], spans: new Float64Array([0, 0, 128 << 10, 0, 128 << 10, 128 << 10]), count: 2 };
  const before = blockingWrites.stats.inline;
  t.equal(writeFull(fd, list, 4096, 256 << 10), undefined, 'done inline');
  t.equal(blockingWrites.stats.inline, before + 1, 'counted as a blocking write');
  const got = fs.readFileSync(f);
  t.equal(got[4095], 0, 'nothing before pos');
  t.ok(got.subarray(4096, 4096 + (256 << 10)).every((b) => b === 0x5a), 'every byte written');
  await writeFull(fd, list, 512 << 10);
  t.equal(blockingWrites.stats.inline, before + 1, 'without the byte count: not a blocking write');
  t.ok(fs.readFileSync(f).subarray(512 << 10, 768 << 10).every((b) => b === 0x5a));
});
