// The adaptive poll window's policy, fed the callbacks a watcher would
// report, on a clock the test moves: it opens for close requests, widens
// while windows pay, closes at once when the peer goes idle, stays within
// the cap, and the process-wide budget stops it after too many misses and
// after losing the CPU to another thread.
import t from 'tap';
import { POLL_CONTENDED, POLL_HIT, POLL_MISS, READABLE } from '../../native/index.js';
import os from 'node:os';
import path from 'node:path';
import { serveConfig } from '../../cli/cli.js';
import { validateConfig } from '../../cli/config.js';
import { startServer } from '../../server/runtime.js';
import { AdaptivePoller, DEFAULT_POLL_US, MAX_POLL_US, PollBudget, setPollLimit, processPollBudget } from '../../server/adaptive-poll.js';

const US = 1000;

function make(capUs = 50) {
  const clock = { ms: 1000, runnable: 1, stallUs: NaN };
  const budget = new PollBudget(() => clock.ms, { stallUs: () => clock.stallUs, runnable: () => clock.runnable }, 2);
  budget.capNs = capUs * US;
  return { clock, budget, p: new AdaptivePoller(budget) };
}

const plain = (p: AdaptivePoller, gapNs: number) => p.update(READABLE, gapNs);
const hit = (p: AdaptivePoller, spunNs: number) => p.update(READABLE | POLL_HIT, spunNs);
const miss = (p: AdaptivePoller, gapNs: number) => p.update(READABLE | POLL_MISS, gapNs);

t.test('closed at first; a request soon after the last one opens the window', async (t) => {
  const { p } = make();
  t.equal(plain(p, -1), 0, 'the first callback has no gap: no window');
  t.equal(plain(p, 1_000 * US), 0, 'a gap of 1 ms (20x the cap): stays closed');
  t.equal(plain(p, 30 * US), 30 * US, 'a gap of 30 µs opens a 30 µs window');
  const q = make().p;
  t.equal(plain(q, 1 * US), 5 * US, 'never narrower than 5 µs');
  const r = make().p;
  t.equal(plain(r, 90 * US), 50 * US, 'a gap within twice the cap (it includes our wake-up) opens it at the cap');
});

t.test('hits keep the window; a hit near its end widens it, up to the cap', async (t) => {
  const { p } = make();
  plain(p, 20 * US);
  t.equal(hit(p, 5 * US), 20 * US, 'an early hit keeps it');
  t.equal(hit(p, 18 * US), 30 * US, 'a hit in the last quarter widens it by half');
  t.equal(hit(p, 29 * US), 45 * US);
  t.equal(hit(p, 44 * US), 50 * US, 'never past the cap');
  t.equal(p.stats.hits, 4);
  t.equal(p.stats.hitNs, (5 + 18 + 29 + 44) * US);
});

t.test('a miss followed soon by the request doubles the window; a long silence closes it at once', async (t) => {
  const { p } = make(100);
  plain(p, 10 * US);
  t.equal(miss(p, 15 * US), 20 * US, 'the request came 15 µs after the window: double it');
  t.equal(miss(p, 50 * US), 40 * US);
  t.equal(miss(p, 5_000 * US), 0, 'then 5 ms of silence: closed');
  t.equal(p.stats.misses, 3);
  t.equal(p.stats.missNs, (10 + 20 + 40) * US);
  t.equal(plain(p, 5_000 * US), 0, 'and it stays closed while the peer is idle');
});

t.test('cap 0 turns polling off; the cap bounds every window', async (t) => {
  const { p, budget } = make(0);
  t.equal(plain(p, 10 * US), 0);
  t.equal(hit(p, 10 * US), 0);
  budget.capNs = 20 * US;
  t.equal(plain(p, 10 * US), 10 * US);
  t.equal(miss(p, 1 * US), 20 * US, 'doubling stops at the cap');
  budget.capNs = 8 * US;
  t.equal(hit(p, 1 * US), 8 * US, 'a lower cap takes effect at once');
});

t.test('windows that catch nothing are debt: past 2 ms of it polling pauses until half is paid', async (t) => {
  const { p, clock } = make(50);
  plain(p, 50 * US);
  let spent = 0;
  let allowed = 50 * US;
  // Every window misses, and the request always follows 10 µs later.
  while (allowed > 0) {
    spent += allowed;
    allowed = miss(p, 10 * US);
    t.ok(spent < 3_000 * US, 'stops within the debt limit');
    if (spent >= 3_000 * US) break;
  }
  t.ok(spent > 2_000 * US, `about 2 ms of misses first (${spent / US} µs)`);
  t.equal(plain(p, 10 * US), 0, 'paused');
  clock.ms += 5; // 10% of 5 ms = 0.5 ms repaid: still above half
  t.equal(plain(p, 10 * US), 0, 'still paused');
  clock.ms += 10; // 1.5 ms repaid in all
  t.equal(plain(p, 10 * US), 50 * US, 'open again once half the limit is left');
});

t.test('losing the CPU closes the window and holds polling off, longer when it recurs', async (t) => {
  const { p, clock } = make(50);
  plain(p, 20 * US);
  t.equal(p.update(READABLE | POLL_CONTENDED, 0), 0, 'closed at once');
  t.equal(p.stats.contended, 1);
  clock.ms += 5;
  t.equal(plain(p, 20 * US), 0, 'held off within 10 ms, even for a close request');
  clock.ms += 6;
  t.equal(plain(p, 20 * US), 20 * US, 'open again after 10 ms');
  t.equal(p.update(READABLE | POLL_CONTENDED, 0), 0, 'contended again soon after');
  clock.ms += 11;
  t.equal(plain(p, 20 * US), 0, 'now held off for 20 ms');
  clock.ms += 10;
  t.equal(plain(p, 20 * US), 20 * US);
  clock.ms += 10_000;
  p.update(READABLE | POLL_CONTENDED, 0);
  clock.ms += 11;
  t.equal(plain(p, 20 * US), 20 * US, 'after a long quiet spell the hold-off is back to 10 ms');
});

t.test('no windows while threads wait for a CPU (pressure above a quarter of the time since the last look)', async (t) => {
  const { p, clock } = make(50);
  clock.stallUs = 5_000_000;
  t.equal(plain(p, 20 * US), 20 * US, 'the first look has nothing to compare with: open');
  clock.ms += 10;
  clock.stallUs += 2_000; // 2 ms of 10: a ping-pong peer's own wake-ups
  t.equal(plain(p, 20 * US), 20 * US, 'waits of a fifth of the time: open');
  clock.stallUs += 4_000;
  clock.ms += 5;
  t.equal(plain(p, 20 * US), 20 * US, 'the pressure is read at most every 10 ms');
  clock.ms += 5;
  t.equal(plain(p, 20 * US), 0, '4 ms of waiting in 10 ms: someone needs the CPU, no window');
  clock.runnable = 5;
  clock.ms += 40;
  clock.stallUs += 1_000;
  t.equal(plain(p, 20 * US), 20 * US, '1 ms in 40 ms: open again (the runnable count is not asked when pressure is known)');
});

t.test('without pressure accounting: no windows while more threads are runnable than there are CPUs', async (t) => {
  const { p, clock } = make(50);
  t.equal(plain(p, 20 * US), 20 * US, 'one runnable thread (this one) on 2 CPUs: open');
  clock.runnable = 3; // e.g. two vCPU threads and this one
  t.equal(plain(p, 20 * US), 20 * US, 'the count is read at most every 10 ms');
  clock.ms += 10;
  t.equal(plain(p, 20 * US), 0, 'three runnable on 2 CPUs: someone waits, no window');
  clock.runnable = 2;
  clock.ms += 5;
  t.equal(plain(p, 20 * US), 0, 'still the old count');
  clock.ms += 5;
  t.equal(plain(p, 20 * US), 20 * US, 'two runnable on 2 CPUs: nobody waits, open again');
  const unknown = new AdaptivePoller(new PollBudget(() => 0, { stallUs: () => NaN, runnable: () => NaN }, 2));
  t.equal(unknown.update(READABLE, 20 * US), 20 * US, 'an unknown count does not stop polling');
});

t.test('the budget is shared: one connection\'s misses pause the others', async (t) => {
  const { budget } = make(50);
  const a = new AdaptivePoller(budget);
  const b = new AdaptivePoller(budget);
  plain(a, 50 * US);
  t.equal(plain(b, 50 * US), 50 * US);
  for (let i = 0; i < 100; i++) miss(a, 10 * US);
  t.equal(hit(b, 1 * US), 0, 'b pauses too');
});

t.test('windows must pay: a trial with and one without, then the faster way runs', async (t) => {
  // Windows catch each request after 30 µs; without them a request waits 60 µs (our wake-up): they pay.
  const { p } = make(50);
  plain(p, 30 * US); // opens the first window (no window was open for this wait: not counted)
  let open = 0;
  for (let i = 0; i < 63; i++) open += hit(p, 30 * US) > 0 ? 1 : 0;
  t.equal(open, 63, 'windows open through the trial with them');
  t.equal(hit(p, 30 * US), 0, 'its 64th wait ends it: the trial without windows');
  t.equal(p.trial.polling, false);
  for (let i = 0; i < 63; i++) open -= plain(p, 60 * US) > 0 ? 1 : 0;
  t.equal(open, 63, 'no window during it');
  t.ok(plain(p, 60 * US) > 0, 'its 64th wait ends it: windows pay, open again');
  t.equal(p.trial.polling, true);

  // Windows catch each request after 30 µs, but without them requests come after 10 µs (the peer
  // moved to our CPU): they do not pay, and stay shut for the run.
  const q = make(50).p;
  plain(q, 30 * US);
  for (let i = 0; i < 64; i++) hit(q, 30 * US);
  for (let i = 0; i < 64; i++) plain(q, 10 * US);
  t.equal(q.trial.polling, false, 'windows do not pay');
  let opened = 0;
  for (let i = 0; i < 1023; i++) opened += plain(q, 10 * US) > 0 ? 1 : 0;
  t.equal(opened, 0, 'shut for the 1024 waits of the run, close as the requests are');
  t.ok(plain(q, 10 * US) > 0, 'then a new trial with windows');
});

t.test('the trial with windows counts only waits a window was open for', async (t) => {
  // The budget refuses windows (threads wait for a CPU) during the trial with them: those
  // waits say nothing about windows and must not decide against them.
  const { p, clock } = make(50);
  clock.stallUs = 0;
  plain(p, 30 * US);
  clock.ms += 10;
  clock.stallUs += 9_000;
  let refused = 0;
  for (let i = 0; i < 200; i++) refused += plain(p, 80 * US) === 0 ? 1 : 0;
  t.equal(refused, 200, 'the budget refused every window');
  t.equal(p.trial.polling, true, '200 refused waits of 80 µs did not end the trial with windows');
  clock.ms += 10; // the pressure is gone
  // Counted so far: the wait the first window was open for (the first refused one).
  let open = 0;
  for (let i = 0; i < 63; i++) open += hit(p, 20 * US) > 0 ? 1 : 0;
  t.equal(open, 63, 'windows open again, and the trial goes on');
  t.equal(hit(p, 20 * US), 0, 'its 64th windowed wait ends it');
  for (let i = 0; i < 63; i++) plain(p, 60 * US);
  t.equal(p.trial.polling, false, 'the trial without windows runs');
  plain(p, 60 * US);
  t.equal(p.trial.polling, true, 'caught after 20 µs with windows against 60 µs without: they pay');
});

t.test('setPollLimit sets the process-wide cap and checks it', async (t) => {
  t.equal(processPollBudget.capNs, DEFAULT_POLL_US * US, 'the default');
  setPollLimit(0);
  t.equal(processPollBudget.capNs, 0);
  setPollLimit(MAX_POLL_US);
  t.equal(processPollBudget.capNs, MAX_POLL_US * US);
  t.throws(() => setPollLimit(-1), RangeError);
  t.throws(() => setPollLimit(MAX_POLL_US + 1), RangeError);
  t.throws(() => setPollLimit(1.5), RangeError);
  setPollLimit(DEFAULT_POLL_US);
});

t.test('--poll-us and pollUs: checked, and applied by startServer', async (t) => {
  const sock = path.join(os.tmpdir(), `vut-poll-${process.pid}.sock`);
  const cfg = await serveConfig(['gpio', '--socket', sock, '--poll-us', '20']);
  t.equal(cfg.pollUs, 20, 'the flag lands in the config');
  t.equal((await serveConfig(['gpio', '--socket', sock])).pollUs, undefined, 'absent: the default stays');
  await t.rejects(serveConfig(['gpio', '--socket', sock, '--poll-us', String(MAX_POLL_US + 1)]), { message: /--poll-us must be an integer in \[0, 1000\]/ });
  await t.rejects(serveConfig(['gpio', '--socket', sock, '--poll-us', '-1']));
  const devices = [{ kind: 'gpio', socket: sock }];
  t.equal((await validateConfig({ devices, pollUs: 0 }, 'cfg')).pollUs, 0);
  await t.rejects(validateConfig({ devices, pollUs: 1.5 }, 'cfg'), { message: /cfg: pollUs must be an integer/ });
  await t.rejects(validateConfig({ devices, pollUs: '5' }, 'cfg'), { message: /cfg: pollUs must be an integer/ });

  const rt = await startServer({ devices: [{ name: 'g', kind: 'gpio', socket: sock }], pollUs: 7 });
  t.teardown(() => setPollLimit(DEFAULT_POLL_US));
  t.equal(processPollBudget.capNs, 7 * US, 'startServer sets the process-wide cap');
  await rt.close();
});
