// The ring-watching window's policy: follows the gaps between the ring going
// empty and the next buffer, and asks the server's polling budget.
import t from 'tap';
import { RING_POLL_MAX_NS, RingPollWindow } from '../../../devices/virtio/ring-poll.js';
import type { PollGate } from '../../../devices/device.js';

function gate(allows = true): PollGate & { charged: number; contentions: number } {
  return { charged: 0, contentions: 0, allows: () => allows, charge(ns) { this.charged += ns; }, contended() { this.contentions++; } };
}

t.test('closed at first; a gap within reach opens it at twice the gap', async (t) => {
  const w = new RingPollWindow(() => gate());
  t.equal(w.open(), 0, 'closed until a gap is seen');
  w.next(150_000);
  t.equal(w.open(), 300_000);
  w.next(400_000);
  t.equal(w.open(), RING_POLL_MAX_NS, 'never past the longest window');
});

t.test('short gaps narrow it slowly, long ones halve it, and it closes', async (t) => {
  const w = new RingPollWindow(() => gate());
  w.next(200_000);
  w.next(10_000);
  t.equal(w.ns, 400_000 - (400_000 - 20_000) / 8, 'an eighth of the way down');
  const before = w.ns;
  w.next(RING_POLL_MAX_NS + 1);
  t.equal(w.ns, before / 2, 'a gap past reach halves it');
  for (let i = 0; i < 10; i++) w.next(10 * RING_POLL_MAX_NS);
  t.equal(w.ns, 0, 'an idle driver closes it');
  t.equal(w.open(), 0);
});

t.test('the budget decides whether it opens, and pays for misses', async (t) => {
  const refusing = gate(false);
  const w = new RingPollWindow(() => refusing);
  w.next(100_000);
  t.equal(w.open(), 0, 'refused: no window');
  const g = gate();
  const v = new RingPollWindow(() => g);
  v.next(100_000);
  v.missed(200_000);
  t.equal(g.charged, 200_000, 'a miss is charged');
  const none = new RingPollWindow(() => undefined);
  none.next(100_000);
  t.equal(none.open(), 0, 'no budget (recording, no client): no window');
});

t.test('each turn yields the CPU; a turn that lost it for long ends the window and tells the budget', async (t) => {
  const g = gate();
  let lost = false;
  let yields = 0;
  const w = new RingPollWindow(
    () => g,
    () => {
      yields++;
      return lost;
    },
  );
  t.equal(w.turn(), true, 'another thread ran briefly or not at all: keep watching');
  t.equal(g.contentions, 0);
  lost = true;
  t.equal(w.turn(), false, 'held off the CPU: stop');
  t.equal(g.contentions, 1, 'the budget holds polling off');
  t.equal(yields, 2, 'every turn yields');
  t.equal(new RingPollWindow(() => undefined, () => true).turn(), false, 'without a budget still stops');
});

t.test('the real yield returns a boolean and does not throw', async (t) => {
  const w = new RingPollWindow(() => gate());
  t.type(w.turn(), 'boolean');
});

/** `n` gaps of `ns` each, each after the ring went empty: the windows that opened for them. */
function gaps(w: RingPollWindow, n: number, ns: number): number {
  let opened = 0;
  for (let i = 0; i < n; i++) {
    opened += w.open() > 0 ? 1 : 0;
    w.next(ns);
  }
  return opened;
}

t.test('windows must pay: a trial with them and one without, then the shorter gaps win', async (t) => {
  // With windows the driver comes back after 150 µs; without them its buffer
  // comes with a kick after 300 µs: windows pay, and keep opening.
  const w = new RingPollWindow(() => gate(), () => false);
  w.next(150_000); // opens the first window (no window was open for this gap: not counted)
  t.equal(gaps(w, 64, 150_000), 64, 'windows open through the trial with them');
  t.equal(w.trial.polling, false, 'then the trial without them');
  t.equal(gaps(w, 64, 300_000), 0, 'no window during it');
  t.equal(w.trial.polling, true, 'windows paid');
  t.ok(w.open() > 0);
  t.same([w.trial.paid, w.trial.unpaid], [1, 0]);

  // With windows the guest is slower to come back (the CPU we spun on was
  // the one it needed) than it is without them: they stay shut for the run.
  const v = new RingPollWindow(() => gate(), () => false);
  v.next(150_000);
  gaps(v, 64, 200_000);
  gaps(v, 64, 190_000);
  t.equal(v.trial.polling, false, 'windows did not pay');
  t.equal(gaps(v, 1024, 190_000), 0, 'shut for the 1024 gaps of the run');
  t.ok(v.ns > 0, 'the window kept following the gaps meanwhile');
  t.ok(v.open() > 0, 'then a new trial with windows');
  t.same([v.trial.paid, v.trial.unpaid], [0, 1]);
});

t.test('the trial counts neither gaps the budget refused a window for nor gaps whose window lost the CPU', async (t) => {
  let allows = false;
  const g: PollGate = { allows: () => allows, charge() {}, contended() {} };
  let lost = false;
  const w = new RingPollWindow(() => g, () => lost);
  w.next(150_000);
  t.equal(gaps(w, 200, 900_000), 0, 'the budget refused every window');
  t.equal(w.trial.polling, true, '200 long gaps without a window did not end the trial with windows');
  allows = true;
  lost = true;
  let opened = 0;
  let kept = 0;
  for (let i = 0; i < 200; i++) {
    w.ns = 300_000;
    opened += w.open() > 0 ? 1 : 0;
    kept += w.turn() ? 1 : 0;
    w.next(900_000);
  }
  t.same([opened, kept], [200, 0], 'windows opened, and each lost the CPU');
  t.equal(w.trial.polling, true, 'nor did 200 windows that lost the CPU');
  lost = false;
  gaps(w, 64, 100_000);
  t.equal(w.trial.polling, false, '64 gaps with a window open end it');
});
