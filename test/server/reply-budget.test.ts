// ReplyBudget: FIFO grants within a byte limit, an oversized request alone,
// and refusal after the connection failed.
import t from 'tap';
import { ReplyBudget } from '../../server/reply-budget.js';

const settled = async (p: Promise<unknown>): Promise<boolean> => {
  let done = false;
  p.then(() => { done = true; }, () => { done = true; });
  await new Promise((r) => setImmediate(r));
  return done;
};

t.test('grants within the limit at once, later ones in order as bytes come back', async (t) => {
  const b = new ReplyBudget(100);
  await b.acquire(60);
  await b.acquire(40);
  t.equal(b.inUse, 100);
  const order: string[] = [];
  const c = b.acquire(30).then(() => order.push('c'));
  const d = b.acquire(10).then(() => order.push('d'));
  t.notOk(await settled(c), 'c waits: the budget is full');
  t.notOk(await settled(d), 'd waits behind c even though it would fit after a smaller release');
  b.release(20);
  t.notOk(await settled(c), '20 free is not enough for c');
  b.release(40);
  await Promise.all([c, d]);
  t.same(order, ['c', 'd'], 'first come, first served');
  t.equal(b.inUse, 80);
});

t.test('a request larger than the whole budget goes alone', async (t) => {
  const b = new ReplyBudget(100);
  await b.acquire(10);
  const big = b.acquire(500);
  t.notOk(await settled(big), 'waits while anything is outstanding');
  b.release(10);
  await big;
  t.equal(b.inUse, 500);
  const small = b.acquire(1);
  t.notOk(await settled(small), 'nothing else while it is out');
  b.release(500);
  await small;
  t.equal(b.inUse, 1);
});

t.test('fail() refuses the waiting and every later acquire', async (t) => {
  const b = new ReplyBudget(10);
  await b.acquire(10);
  const waiting = b.acquire(5);
  b.fail(new Error('gone'));
  await t.rejects(waiting, { message: 'gone' });
  await t.rejects(b.acquire(1), { message: 'gone' });
});
