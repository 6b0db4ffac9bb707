import t from 'tap';
import { Errno, VfioUserError, fail } from '../../protocol/errno.js';

t.test('fail() carries the errno and names it', async (t) => {
  const e = fail('EINVAL', 'bad argsz');
  t.ok(e instanceof VfioUserError);
  t.equal(e.errno, Errno.EINVAL);
  t.match(e.message, /^EINVAL: bad argsz/);
});
