// eventfd counters: write adds, read returns and resets, -EAGAIN when empty.
import t from 'tap';
import * as n from '../../native/index.js';
import { O_CLOEXEC, O_NONBLOCK, fdFlags, fdTarget } from './util.js';

t.test('eventfd write/read', async (t) => {
  const fd = n.eventfd(0);
  t.match(fdTarget(fd), /eventfd/);
  t.equal(fdFlags(fd) & (O_CLOEXEC | O_NONBLOCK), O_CLOEXEC | O_NONBLOCK);
  t.equal(n.eventfdRead(fd), -n.EAGAIN, 'zero counter: -EAGAIN');
  t.equal(n.eventfdWrite(fd, 3), 0);
  t.equal(n.eventfdWrite(fd, 4), 0);
  t.equal(n.eventfdRead(fd), 7, 'writes add up');
  t.equal(n.eventfdRead(fd), -n.EAGAIN, 'a read resets the counter');
  t.equal(n.eventfdWrite(fd, Number.MAX_SAFE_INTEGER), 0, 'large values fit');
  t.equal(n.eventfdRead(fd), Number.MAX_SAFE_INTEGER);
  n.close(fd);

  const pre = n.eventfd(5);
  t.equal(n.eventfdRead(pre), 5, 'initial value');
  t.throws(() => n.eventfd(-1), RangeError);
  t.throws(() => n.eventfd(2 ** 32), RangeError);
  t.throws(() => n.eventfdWrite(pre, -1), RangeError);
  t.throws(() => n.eventfdWrite(pre, 2 ** 53), RangeError);
  t.throws(() => n.eventfdWrite(pre, 1.5), RangeError);
  n.close(pre);
  t.equal(n.eventfdWrite(pre, 1), -n.EBADF, 'closed fd: -EBADF');
  t.equal(n.eventfdRead(pre), -n.EBADF);
});

t.test('a counter that would overflow refuses with -EAGAIN', async (t) => {
  const fd = n.eventfd(0);
  // the counter's maximum is 2^64 - 2: fill it with safe-integer writes
  let r = 0;
  let writes = 0;
  while ((r = n.eventfdWrite(fd, Number.MAX_SAFE_INTEGER)) === 0) writes++;
  t.equal(r, -n.EAGAIN);
  t.ok(writes >= 2047, `${writes} writes fit`);
  t.ok(n.eventfdRead(fd) > 2 ** 63, 'a huge counter comes back as an approximate number');
  n.close(fd);
});
