// fileStat(): (st_dev, st_ino) names a file whichever fd reaches it; size
// and the fd's access mode come with it.
import t from 'tap';
import { openSync } from 'node:fs';
import * as n from '../../native/index.js';

t.test('two fds of one memfd: same (dev, ino); another memfd: another ino', async (t) => {
  const a = n.memfdCreate('a', 3 * 4096);
  const a2 = openSync(`/proc/self/fd/${a}`, 'r');
  const b = n.memfdCreate('b', 4096);
  const sa = n.fileStat(a);
  const sa2 = n.fileStat(a2);
  const sb = n.fileStat(b);
  t.equal(typeof sa.dev, 'bigint');
  t.equal(typeof sa.ino, 'bigint');
  t.same([sa2.dev, sa2.ino], [sa.dev, sa.ino], 'the same file through another fd');
  t.not(sb.ino, sa.ino, 'another memfd is another file');
  t.equal(sa.size, 3 * 4096, 'st_size');
  t.same([sa.readable, sa.writable], [true, true], 'memfd_create gives O_RDWR');
  t.same([sa2.readable, sa2.writable], [true, false], 'an O_RDONLY fd is read-only');
  n.ftruncate(a, 0);
  t.equal(n.fileStat(a2).size, 0, 'sees a truncate through any fd');
  for (const fd of [a, a2, b]) n.close(fd);
});

t.test('bad fds throw with the errno', async (t) => {
  t.throws(() => n.fileStat(999_999), { code: 'EBADF', syscall: 'fstat' });
  t.throws(() => n.fileStat(-1));
});
