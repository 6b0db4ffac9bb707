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
