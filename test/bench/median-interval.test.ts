// The interval the guest I/O benches print beside a paired median.
import t from 'tap';
import { medianInterval } from '../../bench/lib.js';

const ranks = (n: number) => Array.from({ length: n }, (_, i) => n - i); // n..1, unsorted on purpose

t.test('the order statistics and coverage of the sign-test interval', async (t) => {
  // n = 9: P(X < 2) = 10/512, so the 2nd smallest to the 2nd largest, 96.1%.
  const nine = medianInterval(ranks(9));
  t.same([nine.low, nine.high], [2, 8]);
  t.equal(nine.coverage.toFixed(4), (1 - 20 / 512).toFixed(4));
  // n = 21: P(X < 6) = 0.0133 and P(X < 7) = 0.0392, so the 6th to the 16th, 97.3%.
  const many = medianInterval(ranks(21));
  t.same([many.low, many.high], [6, 16]);
  t.ok(many.coverage > 0.973 && many.coverage < 0.974, `coverage ${many.coverage}`);
  // The 3rd to the 7th of nine cover 82% (P(X < 3) = 46/512): enough for 0.8, not for 0.9.
  t.same(medianInterval(ranks(9), 0.9), nine);
  t.same([medianInterval(ranks(9), 0.8).low, medianInterval(ranks(9), 0.8).high], [3, 7]);
});

t.test('too few values for the confidence give the whole range and say so', async (t) => {
  const five = medianInterval([1.1, 0.9, 1.0, 0.8, 1.2]);
  t.same([five.low, five.high], [0.8, 1.2]);
  t.equal(five.coverage, 1 - 2 / 32);
  t.same(medianInterval([0.7]), { low: 0.7, high: 0.7, coverage: 0 });
});

t.test('an empty series or a confidence outside (0, 1) is the caller\'s mistake', async (t) => {
  t.throws(() => medianInterval([]), RangeError);
  t.throws(() => medianInterval([1, 2, 3], 1), RangeError);
  t.throws(() => medianInterval([1, 2, 3], 0), RangeError);
});
