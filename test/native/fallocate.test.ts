// fallocate(): punching and zeroing ranges of a file off the event loop.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import * as n from '../../native/index.js';
import { tmpDir } from './util.js';

const MiB = 1 << 20;

function pattern(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 7 + 1) & 0xff;
  return b;
}

t.test('PUNCH_HOLE frees the range, keeps the size and reads back zeros', async (t) => {
  const { dir, cleanup } = tmpDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'img');
  const data = pattern(4 * MiB);
  fs.writeFileSync(file, data);
  const fd = fs.openSync(file, 'r+');
  t.teardown(() => fs.closeSync(fd));
  fs.fsyncSync(fd);
  const blocksBefore = fs.fstatSync(fd).blocks;
  const p = n.fallocate(fd, n.FALLOC_FL_PUNCH_HOLE | n.FALLOC_FL_KEEP_SIZE, MiB, 2 * MiB);
  t.ok(p instanceof Promise, 'returns a promise');
  try {
    await p;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EOPNOTSUPP') {
      t.comment(`the file system under ${dir} cannot punch holes`);
      return;
    }
    throw e;
  }
  const st = fs.fstatSync(fd);
  t.equal(st.size, 4 * MiB, 'size unchanged');
  t.ok(st.blocks < blocksBefore, `blocks freed (${blocksBefore} -> ${st.blocks})`);
  const back = fs.readFileSync(file);
  t.ok(back.subarray(MiB, 3 * MiB).every((b) => b === 0), 'the hole reads as zeros');
  t.ok(back.subarray(0, MiB).equals(data.subarray(0, MiB)), 'data before it untouched');
  t.ok(back.subarray(3 * MiB).equals(data.subarray(3 * MiB)), 'data after it untouched');
});

t.test('ZERO_RANGE zeroes without changing the size', async (t) => {
  const { dir, cleanup } = tmpDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'img');
  const data = pattern(MiB);
  fs.writeFileSync(file, data);
  const fd = fs.openSync(file, 'r+');
  t.teardown(() => fs.closeSync(fd));
  try {
    await n.fallocate(fd, n.FALLOC_FL_ZERO_RANGE | n.FALLOC_FL_KEEP_SIZE, 4096, 8192);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EOPNOTSUPP') {
      t.comment(`the file system under ${dir} cannot zero ranges`);
      return;
    }
    throw e;
  }
  const back = fs.readFileSync(file);
  t.equal(back.length, MiB);
  t.ok(back.subarray(4096, 12288).every((b) => b === 0), 'zeroed');
  t.ok(back.subarray(0, 4096).equals(data.subarray(0, 4096)) && back.subarray(12288).equals(data.subarray(12288)), 'the rest untouched');
});

t.test('errors: a bad fd rejects with EBADF, bad arguments throw', async (t) => {
  const { dir, cleanup } = tmpDir();
  t.teardown(cleanup);
  const fd = fs.openSync(path.join(dir, 'f'), 'w+');
  t.teardown(() => fs.closeSync(fd));
  await t.rejects(n.fallocate(99999, n.FALLOC_FL_PUNCH_HOLE | n.FALLOC_FL_KEEP_SIZE, 0, 4096), { code: 'EBADF', errno: n.EBADF, syscall: 'fallocate' });
  await t.rejects(n.fallocate(fd, n.FALLOC_FL_PUNCH_HOLE, 0, 4096), { code: 'EOPNOTSUPP' }, 'PUNCH_HOLE without KEEP_SIZE is refused by Linux');
  t.throws(() => n.fallocate(fd, 0, -1, 4096), RangeError, 'negative offset');
  t.throws(() => n.fallocate(fd, 0, 0, 0), RangeError, 'zero length');
  t.throws(() => n.fallocate(fd, 0, 2 ** 53 - 10, 4096), RangeError, 'offset + length overflows');
  t.throws(() => n.fallocate(fd, 0, 0, 'x' as unknown as number), TypeError, 'length must be a number');
});
