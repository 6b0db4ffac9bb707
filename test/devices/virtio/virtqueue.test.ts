// The split virtqueue against hand-built rings in guest memory, through a
// real IommuContext and DeviceDma: chains, indirect tables, completions and
// their coalescing, event-index suppression, NO_INTERRUPT, 16-bit index
// wrap-around, and every malformed case we know (which must end in a
// RingError → NEEDS_RESET, never a crash), with the queue usable after reset.
import t, { type Test } from 'tap';
import { Worker } from 'node:worker_threads';
import * as native from '../../../native/index.js';
import { IommuContext } from '../../../iommu/context.js';
import { MemoryBacking } from '../../../iommu/backing.js';
import type { DriverData, DriverMessage } from './concurrent-driver.js';
import type { DeviceDma } from '../../../iommu/device-dma.js';
import type { PollGate } from '../../../devices/device.js';
import { RingPollWindow } from '../../../devices/virtio/ring-poll.js';
import { Desc, VRING_AVAIL_F_NO_INTERRUPT, VRING_USED_F_NO_NOTIFY } from '../../../devices/virtio/constants.js';
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE } from '../../../iommu/device-dma.js';
import { chainRead, chainWrite } from '../../../devices/virtio/chain-io.js';
import { DescChain, needEvent, Virtqueue, type VirtqueueHost } from '../../../devices/virtio/virtqueue.js';
import { BASE, DriverRing, makeGuest, makeMessageGuest, turns, until, type Guest } from './env.js';

class Host implements VirtqueueHost {
  chains: DescChain[] = [];
  notifies = 0;
  errors: Error[] = [];
  ready = true;
  pollGate: PollGate | undefined;
  inOrder = false;
  /** Complete each chain at once with this length (undefined: leave it to the test). */
  autoComplete: number | undefined;
  constructor(public dma: DeviceDma | undefined) {}
  canProcess(): boolean {
    return this.ready && this.errors.length === 0;
  }
  handle(chain: DescChain): void {
    this.chains.push(chain);
    if (this.autoComplete !== undefined) chain.complete(this.autoComplete);
  }
  notify(): void {
    this.notifies++;
  }
  ringError(_vq: Virtqueue, err: Error): void {
    this.errors.push(err);
  }
}

interface Setup {
  g: Guest;
  host: Host;
  vq: Virtqueue;
  ring: DriverRing;
}

function setup(opts: { size?: number; eventIdx?: boolean; indirect?: boolean; guest?: Guest; lostCpu?: () => boolean } = {}): Setup {
  const g = opts.guest ?? makeGuest();
  const size = opts.size ?? 8;
  const host = new Host(g.dma);
  // Yields that never lose the CPU unless a test says so: a loaded machine must not end a test's window early.
  const vq = new Virtqueue(0, size, host, new RingPollWindow(() => host.pollGate, opts.lostCpu ?? (() => false)));
  const ring = new DriverRing(g.mem, size);
  vq.descAddr = BigInt(ring.desc);
  vq.driverAddr = BigInt(ring.avail);
  vq.deviceAddr = BigInt(ring.used);
  vq.eventIdx = opts.eventIdx ?? false;
  vq.indirectDesc = opts.indirect ?? true;
  vq.enable();
  return { g, host, vq, ring };
}

/** Kick and wait until the queue has taken `n` chains in all (or failed). */
async function kickFor(s: Setup, n: number): Promise<void> {
  s.vq.kick();
  await until(() => s.host.chains.length >= n || s.host.errors.length > 0, `${n} chains`);
  await turns(5);
}

/** Re-arm the queue after a RingError, as a driver reset + re-init would. */
function rearm(s: Setup): void {
  s.vq.reset();
  s.host.errors = [];
  s.host.chains = [];
  s.vq.descAddr = BigInt(s.ring.desc);
  s.vq.driverAddr = BigInt(s.ring.avail);
  s.vq.deviceAddr = BigInt(s.ring.used);
  s.vq.indirectDesc = true;
  s.vq.enable();
  s.ring.startAt(0);
}

t.test('a simple chain: header out, data in, completion in the used ring', async (t) => {
  const s = setup();
  const hdr = s.g.mem.alloc(16);
  s.g.mem.write(hdr, Buffer.from('0123456789abcdef'));
  const data = s.g.mem.alloc(100);
  const head = s.ring.chain([
    { addr: hdr, len: 16 },
    { addr: data, len: 100, write: true },
  ]);
  s.ring.push(head);
  await kickFor(s, 1);
  t.equal(s.host.chains.length, 1);
  const c = s.host.chains[0]!;
  t.equal(c.head, head);
  t.same([c.readable, c.writable, c.descriptors, c.indirect], [16, 100, 2, false]);
  t.same(c.rAddr, [hdr]);
  t.same(c.wAddr, [data]);
  t.equal((await chainRead(s.g.dma, c, 4, 8)).toString(), '456789ab', 'readable bytes by offset');
  await chainWrite(s.g.dma, c, 98, Buffer.from([7, 9]));
  t.same([...s.g.mem.read(data + 98, 2)], [7, 9], 'writable bytes by offset');
  t.equal(s.ring.usedIdx, 0, 'nothing used before completion');
  c.complete(100);
  await until(() => s.ring.usedIdx === 1, 'used idx');
  t.same(s.ring.takeUsed(), [{ id: head, len: 100 }]);
  t.equal(s.host.notifies, 1, 'one interrupt');
  t.equal(s.vq.inFlight, 0);
  t.same(s.host.errors, []);
});

t.test('a header split across descriptors reads as one byte space', async (t) => {
  const s = setup();
  const a = s.g.mem.alloc(5);
  const b = s.g.mem.alloc(11);
  s.g.mem.write(a, Buffer.from('01234'));
  s.g.mem.write(b, Buffer.from('56789abcdef'));
  s.ring.push(s.ring.chain([{ addr: a, len: 5 }, { addr: b, len: 11 }, { addr: s.g.mem.alloc(1), len: 1, write: true }]));
  await kickFor(s, 1);
  t.equal((await chainRead(s.g.dma, s.host.chains[0]!, 3, 6)).toString(), '345678');
});

t.test('indirect tables, also after direct descriptors', async (t) => {
  const s = setup();
  const bufs = [16, 512, 512, 1].map((n) => s.g.mem.alloc(n));
  const head = s.ring.indirect([
    { addr: bufs[0]!, len: 16 },
    { addr: bufs[1]!, len: 512, write: true },
    { addr: bufs[2]!, len: 512, write: true },
    { addr: bufs[3]!, len: 1, write: true },
  ]);
  // A direct readable descriptor whose NEXT is an indirect one.
  const table = s.g.mem.alloc(32);
  const x = s.g.mem.alloc(8);
  s.ring.writeDesc(0, x, 4, Desc.WRITE, 0, table);
  s.ring.writeDesc(1, x + 4, 4, Desc.WRITE, 0, table);
  s.ring.writeDesc(1, x + 4, 4, Desc.WRITE, 0, table);
  s.ring.writeDesc(0, x, 4, Desc.WRITE | Desc.NEXT, 1, table);
  const d0 = s.ring.allocDesc();
  const d1 = s.ring.allocDesc();
  s.ring.writeDesc(d0, s.g.mem.alloc(16), 16, Desc.NEXT, d1);
  s.ring.writeDesc(d1, table, 32, Desc.INDIRECT);
  s.ring.push(head, d0);
  await kickFor(s, 2);
  const [c1, c2] = s.host.chains;
  t.same([c1!.readable, c1!.writable, c1!.indirect, c1!.descriptors], [16, 1025, true, 5]);
  t.same(c1!.wLen, [512, 512, 1]);
  t.same([c2!.readable, c2!.writable, c2!.indirect], [16, 8, true]);
  t.same(s.host.errors, []);
});

t.test('completions in one turn are one used-ring update and one interrupt', async (t) => {
  const s = setup();
  const heads = [0, 1, 2, 3, 4].map(() => s.ring.chain([{ addr: s.g.mem.alloc(4), len: 4, write: true }]));
  s.ring.push(...heads);
  await kickFor(s, 5);
  t.equal(s.vq.stats.batches, 1, 'one avail batch');
  // Out of order, all in the same turn.
  for (const i of [3, 0, 4, 1, 2]) s.host.chains[i]!.complete(i);
  await until(() => s.ring.usedIdx === 5, 'used idx 5');
  t.same(s.ring.takeUsed().map((e) => e.id), [heads[3], heads[0], heads[4], heads[1], heads[2]], 'completion order kept');
  t.equal(s.vq.stats.flushes, 1, 'one flush');
  t.equal(s.host.notifies, 1, 'one interrupt for five completions');
});

t.test('many chains in flight, completed later in any order', async (t) => {
  const s = setup({ size: 16 });
  const heads = Array.from({ length: 16 }, () => s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]));
  s.ring.push(...heads);
  await kickFor(s, 16);
  t.equal(s.vq.inFlight, 16);
  const order = [...s.host.chains].reverse();
  for (const c of order) {
    c.complete(1);
    await turns(2);
  }
  await until(() => s.ring.usedIdx === 16, 'all used');
  t.equal(s.vq.inFlight, 0);
  t.same(s.ring.takeUsed().map((e) => e.id), order.map((c) => c.head));
});

t.test('in order (deterministic mode): completions wait for every chain taken before them', async (t) => {
  const s = setup({ size: 8 });
  s.host.inOrder = true;
  const heads = Array.from({ length: 6 }, () => s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]));
  // Taken in the order 2, 0, 5, 1, 4, 3 (the avail ring's), completed in reverse.
  const avail = [heads[2]!, heads[0]!, heads[5]!, heads[1]!, heads[4]!, heads[3]!];
  s.ring.push(...avail);
  await kickFor(s, 6);
  const taken = s.host.chains;
  for (const c of [taken[5]!, taken[4]!, taken[3]!]) {
    c.complete(1);
    await turns(2);
  }
  t.equal(s.ring.usedIdx, 0, 'nothing published while the first chain taken is in flight');
  t.equal(s.vq.inFlight, 6, 'the held completions are still in flight');
  taken[1]!.complete(1);
  await turns(2);
  t.equal(s.ring.usedIdx, 0, 'nor while the first is');
  taken[0]!.complete(1);
  await until(() => s.ring.usedIdx === 2, 'the first two published');
  await turns(2);
  t.equal(s.ring.usedIdx, 2, 'the third still holds back the three after it');
  taken[2]!.complete(1);
  await until(() => s.ring.usedIdx === 6, 'all used');
  t.same(s.ring.takeUsed().map((e) => e.id), avail, 'the used ring in the order the chains were taken');
  t.equal(s.vq.inFlight, 0);

  // A reset drops what waits; the order starts again.
  const [a, b] = [0, 1].map(() => s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]));
  s.ring.push(a!, b!);
  await kickFor(s, 8);
  s.host.chains[7]!.complete(1);
  rearm(s);
  t.equal(s.vq.inFlight, 0, 'reset: nothing in flight');
  const [c, d] = [0, 1].map(() => s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]));
  s.ring.push(c!, d!);
  await kickFor(s, 2);
  s.host.chains[1]!.complete(1);
  s.host.chains[0]!.complete(1);
  await until(() => s.ring.usedIdx === 2, 'used after the reset');
  t.same(s.ring.takeUsed().map((e) => e.id), [c, d], 'in the new order, nothing from before the reset');
});

t.test('EVENT_IDX: used_event suppresses interrupts, avail_event asks for kicks', async (t) => {
  const s = setup({ eventIdx: true });
  s.host.autoComplete = 1;
  const one = () => s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]);
  s.ring.push(one());
  await kickFor(s, 1);
  await until(() => s.ring.usedIdx === 1, 'used 1');
  t.equal(s.host.notifies, 1, 'the first completion always interrupts');
  t.equal(s.ring.availEvent, 1, 'device asks to be kicked at the next buffer (avail_event = 1)');

  s.ring.usedEvent = 2; // "interrupt me when used idx passes 2"
  s.ring.push(one());
  await kickFor(s, 2);
  await until(() => s.ring.usedIdx === 2, 'used 2');
  await turns();
  t.equal(s.host.notifies, 1, 'used idx 1→2 does not pass used_event 2: suppressed');
  s.ring.push(one());
  await kickFor(s, 3);
  await until(() => s.ring.usedIdx === 3, 'used 3');
  await turns();
  t.equal(s.host.notifies, 2, 'used idx 2→3 passes used_event 2: interrupt');
  t.equal(s.ring.availEvent, 3);

  // A driver that never moves used_event gets no more interrupts.
  s.ring.push(one(), one());
  await kickFor(s, 5);
  await until(() => s.ring.usedIdx === 5, 'used 5');
  await turns();
  t.equal(s.host.notifies, 2, 'stale used_event: suppressed');
  t.ok(s.vq.stats.suppressed >= 2);
  t.same(s.host.errors, []);
});

t.test('EVENT_IDX: buffers added while the device drains are found without a kick', async (t) => {
  const s = setup({ eventIdx: true, size: 32 });
  let added = false;
  s.host.autoComplete = undefined;
  const orig = s.host.handle.bind(s.host);
  s.host.handle = (c) => {
    orig(c);
    if (!added) {
      added = true; // the driver adds one more while we process; it sees a stale avail_event and does not kick
      s.ring.push(s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]));
    }
  };
  s.ring.push(s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]));
  await kickFor(s, 2);
  t.equal(s.host.chains.length, 2, 'the second chain was found by the re-check');
  t.equal(s.ring.availEvent, 2);
});

t.test('NO_INTERRUPT (without EVENT_IDX)', async (t) => {
  const s = setup();
  s.host.autoComplete = 1;
  s.ring.availFlags = VRING_AVAIL_F_NO_INTERRUPT;
  s.ring.push(s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]));
  await kickFor(s, 1);
  await until(() => s.ring.usedIdx === 1, 'used');
  await turns();
  t.equal(s.host.notifies, 0, 'suppressed by the driver');
  s.ring.availFlags = 0;
  s.ring.push(s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]));
  await kickFor(s, 2);
  await until(() => s.ring.usedIdx === 2, 'used');
  await turns();
  t.equal(s.host.notifies, 1, 'delivered once the flag is clear');
});

t.test('16-bit indices wrap around (with and without EVENT_IDX)', async (t) => {
  for (const eventIdx of [false, true]) {
    const s = setup({ size: 8, eventIdx });
    s.host.autoComplete = 2;
    s.ring.startAt(65534);
    s.vq.lastAvail = 65534;
    s.vq.usedIdx = 65534;
    if (eventIdx) s.ring.usedEvent = 65535;
    const heads = [0, 1, 2, 3].map(() => s.ring.chain([{ addr: s.g.mem.alloc(2), len: 2, write: true }]));
    s.ring.push(...heads);
    t.equal(s.ring.availIdx, 2, 'avail idx wrapped to 2');
    await kickFor(s, 4);
    await until(() => s.ring.usedIdx === 2, 'used idx wraps to 2');
    t.same(s.host.chains.map((c) => c.head), heads, `heads taken across the wrap (eventIdx ${eventIdx})`);
    // Slots 65534 % 8 = 6, 7, then 0, 1.
    t.same([6, 7, 0, 1].map((slot) => s.ring.usedElem(slot).id), heads, 'used slots 6, 7, 0, 1');
    t.equal(s.vq.lastAvail, 2);
    t.equal(s.host.notifies, 1, 'one interrupt');
    if (eventIdx) {
      t.equal(s.ring.availEvent, 2, 'avail_event wrapped too');
      s.ring.usedEvent = 2; // next interrupt when used passes 2
      s.ring.push(s.ring.chain([{ addr: s.g.mem.alloc(2), len: 2, write: true }]));
      await kickFor(s, 5);
      await until(() => s.ring.usedIdx === 3, 'used 3');
      await turns();
      t.equal(s.host.notifies, 2, 'used_event across the wrap honoured');
    }
    t.same(s.host.errors, []);
  }
});

t.test('needEvent matches vring_need_event', async (t) => {
  t.ok(needEvent(0, 1, 0));
  t.notOk(needEvent(1, 1, 0));
  t.ok(needEvent(65535, 0, 65535), 'across the wrap');
  t.ok(needEvent(65534, 2, 65530));
  t.notOk(needEvent(3, 2, 65530));
});

// ---- notification suppression: no kicks needed while the device drains, none lost when it stops ----

t.test('without EVENT_IDX, used->flags asks for no kicks while the queue is serviced', async (t) => {
  const s = setup({ size: 16 });
  const seen: number[] = [];
  s.host.handle = (c) => {
    seen.push(s.ring.usedFlags);
    s.host.chains.push(c);
    c.complete(1);
  };
  const one = () => s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]);
  s.ring.push(one(), one(), one());
  t.equal(s.ring.usedFlags, 0, 'kicks wanted before');
  await kickFor(s, 3);
  t.same(seen, [VRING_USED_F_NO_NOTIFY, VRING_USED_F_NO_NOTIFY, VRING_USED_F_NO_NOTIFY], 'NO_NOTIFY while each chain is handed out');
  t.equal(s.ring.usedFlags, 0, 'kicks wanted again once the ring is empty');
  t.equal(s.ring.availEvent, 0, 'avail_event untouched without EVENT_IDX');
});

t.test('with EVENT_IDX, avail_event stays behind while the queue is serviced and moves on when it is empty', async (t) => {
  const s = setup({ size: 16, eventIdx: true });
  const seen: number[][] = [];
  s.host.handle = (c) => {
    seen.push([s.ring.availEvent, s.ring.usedFlags]);
    s.host.chains.push(c);
    c.complete(1);
  };
  const one = () => s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]);
  s.ring.push(one(), one(), one());
  await kickFor(s, 3);
  t.same(seen, [[0, 0], [0, 0], [0, 0]], 'avail_event 0 (the driver kicks only for the first buffer past it), used->flags unused');
  t.equal(s.ring.availEvent, 3, 'then avail_event asks for a kick at the next buffer');
});

/** `real` with its mappedView replaced (everything else passes through). */
function withMappedView(real: DeviceDma, mappedView: DeviceDma['mappedView']): DeviceDma {
  return new Proxy(real, {
    get(target, prop) {
      if (prop === 'mappedView') return mappedView;
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * The driver's side of the race: it adds a buffer right after the device
 * turned notifications back on, having read the old setting (so it does not
 * kick). The device looks at the ring once more and must find it.
 */
function raceAfterReenable(s: Setup, eventIdx: boolean): { added: () => boolean } {
  const real = s.g.dma;
  const idxAddr = s.ring.avail + 2;
  const reenableAddr = eventIdx ? s.ring.used + 4 + 8 * s.ring.size : s.ring.used;
  let armed = false;
  let added = false;
  const mappedView: typeof real.mappedView = (addr, len, access) => {
    const v = real.mappedView(addr, len, access);
    if (Number(addr) === reenableAddr && access === DMA_ACCESS_WRITE) armed = true;
    // The next look at avail->idx after the re-enabling store: the driver got in between.
    const reenabled = eventIdx ? s.ring.availEvent === s.vq.lastAvail : s.ring.usedFlags === 0;
    if (Number(addr) === idxAddr && armed && reenabled && !added) {
      added = true;
      s.ring.push(s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]));
    }
    return v;
  };
  s.host.dma = withMappedView(real, mappedView);
  return { added: () => added };
}

for (const eventIdx of [false, true]) {
  t.test(`no lost notification: a buffer added just as kicks are re-enabled is found (EVENT_IDX ${eventIdx})`, async (t) => {
    const s = setup({ size: 16, eventIdx });
    s.host.autoComplete = 1;
    const race = raceAfterReenable(s, eventIdx);
    s.ring.push(s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]));
    await kickFor(s, 2);
    t.ok(race.added(), 'the driver added a buffer between the re-enabling store and the last look');
    t.equal(s.host.chains.length, 2, 'and the device took it without a kick');
    t.equal(s.vq.stats.kicks, 1, 'one kick in all');
    await until(() => s.ring.usedIdx === 2, 'both used');
    if (eventIdx) t.equal(s.ring.availEvent, 2, 'avail_event now past both');
    else t.equal(s.ring.usedFlags, 0, 'kicks wanted again');
  });
}

for (const eventIdx of [false, true]) {
  t.test(`a batch of completions is one interrupt, or none when the driver asked for none (EVENT_IDX ${eventIdx})`, async (t) => {
    const s = setup({ size: 16, eventIdx });
    const one = () => s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]);
    s.ring.push(one(), one(), one(), one());
    await kickFor(s, 4);
    for (const c of s.host.chains) c.complete(1);
    await until(() => s.ring.usedIdx === 4, 'used 4');
    await turns();
    t.equal(s.host.notifies, 1, 'four completions in one turn: one interrupt');
    // Now the driver asks for no interrupt for the next batch.
    if (eventIdx) s.ring.usedEvent = 9; // interrupt only when used idx passes 9
    else s.ring.availFlags = VRING_AVAIL_F_NO_INTERRUPT;
    s.ring.push(one(), one(), one(), one());
    await kickFor(s, 8);
    for (const c of s.host.chains.slice(4)) c.complete(1);
    await until(() => s.ring.usedIdx === 8, 'used 8');
    await turns();
    t.equal(s.host.notifies, 1, 'used idx 4 -> 8 stays below used_event 9 / NO_INTERRUPT: suppressed');
    // And a batch that crosses used_event (or with interrupts back on) interrupts once.
    if (eventIdx) s.ring.usedEvent = 9;
    else s.ring.availFlags = 0;
    s.ring.push(one(), one(), one(), one());
    await kickFor(s, 12);
    for (const c of s.host.chains.slice(8)) c.complete(1);
    await until(() => s.ring.usedIdx === 12, 'used 12');
    await turns();
    t.equal(s.host.notifies, 2, 'used idx 8 -> 12 passes used_event 9 / interrupts on: one interrupt');
    t.same(s.host.errors, []);
  });
}

// ---- malformed rings: a RingError each, no chain handed out, device usable after reset ----

interface Bad {
  name: string;
  match: RegExp;
  build(s: Setup): void;
  indirect?: boolean;
}

const bad: Bad[] = [
  {
    name: 'descriptor loop',
    match: /loop/,
    build(s) {
      s.ring.writeDesc(0, s.g.mem.alloc(4), 4, Desc.NEXT, 1);
      s.ring.writeDesc(1, s.g.mem.alloc(4), 4, Desc.NEXT, 2);
      s.ring.writeDesc(2, s.g.mem.alloc(4), 4, Desc.NEXT, 0);
      s.ring.push(0);
    },
  },
  {
    name: 'self loop',
    match: /loop/,
    build(s) {
      s.ring.writeDesc(3, s.g.mem.alloc(4), 4, Desc.NEXT | Desc.WRITE, 3);
      s.ring.push(3);
    },
  },
  {
    name: 'next index out of range',
    match: /next 11 out of range/,
    build(s) {
      s.ring.writeDesc(0, s.g.mem.alloc(4), 4, Desc.NEXT, 11);
      s.ring.push(0);
    },
  },
  {
    name: 'head index out of range',
    match: /head 8 out of range/,
    build(s) {
      s.ring.push(8);
    },
  },
  {
    name: 'avail idx more than a ring ahead',
    match: /entries past/,
    build(s) {
      s.g.mem.set16(s.ring.avail + 2, 9);
    },
  },
  {
    name: 'indirect inside indirect',
    match: /inside an indirect table/,
    build(s) {
      const inner = s.g.mem.alloc(16);
      s.ring.writeDesc(0, s.g.mem.alloc(4), 4, Desc.WRITE, 0, inner);
      const outer = s.g.mem.alloc(32);
      s.ring.writeDesc(0, s.g.mem.alloc(16), 16, Desc.NEXT, 1, outer);
      s.ring.writeDesc(1, inner, 16, Desc.INDIRECT, 0, outer);
      s.ring.writeDesc(0, outer, 32, Desc.INDIRECT);
      s.ring.push(0);
    },
  },
  {
    name: 'indirect length not a multiple of 16',
    match: /not a positive multiple of 16/,
    build(s) {
      s.ring.writeDesc(0, s.g.mem.alloc(64), 24, Desc.INDIRECT);
      s.ring.push(0);
    },
  },
  {
    name: 'indirect length 0',
    match: /not a positive multiple of 16/,
    build(s) {
      s.ring.writeDesc(0, s.g.mem.alloc(16), 0, Desc.INDIRECT);
      s.ring.push(0);
    },
  },
  {
    name: 'indirect table too large',
    match: /indirect table of 4096 descriptors/,
    build(s) {
      s.ring.writeDesc(0, s.g.mem.alloc(16), 4096 * 16, Desc.INDIRECT);
      s.ring.push(0);
    },
  },
  {
    name: 'loop inside an indirect table',
    match: /loop in the indirect table/,
    build(s) {
      const table = s.g.mem.alloc(32);
      s.ring.writeDesc(0, s.g.mem.alloc(4), 4, Desc.NEXT, 1, table);
      s.ring.writeDesc(1, s.g.mem.alloc(4), 4, Desc.NEXT, 0, table);
      s.ring.writeDesc(0, table, 32, Desc.INDIRECT);
      s.ring.push(0);
    },
  },
  {
    name: 'indirect next out of range',
    match: /indirect next 5 out of range/,
    build(s) {
      const table = s.g.mem.alloc(32);
      s.ring.writeDesc(0, s.g.mem.alloc(4), 4, Desc.NEXT, 5, table);
      s.ring.writeDesc(0, table, 32, Desc.INDIRECT);
      s.ring.push(0);
    },
  },
  {
    name: 'INDIRECT and NEXT together',
    match: /both INDIRECT and NEXT/,
    build(s) {
      s.ring.writeDesc(0, s.g.mem.alloc(16), 16, Desc.INDIRECT | Desc.NEXT, 1);
      s.ring.push(0);
    },
  },
  {
    name: 'INDIRECT without the feature',
    match: /without VIRTIO_F_INDIRECT_DESC/,
    indirect: false,
    build(s) {
      s.ring.writeDesc(0, s.g.mem.alloc(16), 16, Desc.INDIRECT);
      s.ring.push(0);
    },
  },
  {
    name: 'indirect table at an unmapped IOVA',
    match: /cannot read indirect table at 0x7000000.*unmapped/,
    build(s) {
      s.ring.writeDesc(0, 0x7000000, 32, Desc.INDIRECT);
      s.ring.push(0);
    },
  },
  {
    name: 'indirect table at an IOVA past 2^64',
    match: /cannot read indirect table/,
    build(s) {
      s.ring.writeDesc(0, 0xfffffffffffffff0n, 32, Desc.INDIRECT);
      s.ring.push(0);
    },
  },
  {
    name: 'readable descriptor after a writable one',
    match: /readable descriptor follows a writable/,
    build(s) {
      s.ring.push(s.ring.chain([{ addr: s.g.mem.alloc(4), len: 4, write: true }, { addr: s.g.mem.alloc(4), len: 4 }]));
    },
  },
];

for (const b of bad) {
  t.test(`malformed: ${b.name} → RingError, then the queue works after a reset`, async (t) => {
    const s = setup({ indirect: b.indirect ?? true });
    b.build(s);
    s.vq.kick();
    await until(() => s.host.errors.length > 0, 'a ring error');
    t.equal(s.host.chains.length, 0, 'no chain handed to the device');
    t.match(s.host.errors[0]!.message, b.match);
    t.equal(s.host.errors[0]!.name, 'RingError');
    // Kicks while broken do nothing.
    s.vq.kick();
    await turns();
    t.equal(s.host.errors.length, 1);
    rearm(s);
    s.host.autoComplete = 4;
    const head = s.ring.chain([{ addr: s.g.mem.alloc(4), len: 4, write: true }]);
    s.ring.push(head);
    await kickFor(s, 1);
    await until(() => s.ring.usedIdx === 1, 'used after reset');
    t.same(s.ring.takeUsed(), [{ id: head, len: 4 }], 'works after reset');
    t.same(s.host.errors, []);
  });
}

t.test('rings at unmapped IOVAs fail cleanly (avail, used, descriptor table)', async (t) => {
  // avail ring unmapped
  {
    const s = setup();
    s.vq.reset();
    s.vq.descAddr = BigInt(s.ring.desc);
    s.vq.driverAddr = 0x9000000n;
    s.vq.deviceAddr = BigInt(s.ring.used);
    s.vq.enable();
    s.vq.kick();
    await until(() => s.host.errors.length > 0, 'error');
    t.match(s.host.errors[0]!.message, /cannot read avail->idx at 0x9000002.*unmapped/);
  }
  // used ring unmapped: the chain is taken, its completion cannot be published
  {
    const s = setup();
    s.vq.reset();
    s.vq.descAddr = BigInt(s.ring.desc);
    s.vq.driverAddr = BigInt(s.ring.avail);
    s.vq.deviceAddr = 0x9000000n;
    s.vq.enable();
    s.host.autoComplete = 1;
    s.ring.push(s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]));
    s.vq.kick();
    await until(() => s.host.errors.length > 0, 'error');
    t.match(s.host.errors[0]!.message, /cannot write used ring at 0x9000004/);
  }
  // descriptor table unmapped
  {
    const s = setup();
    s.vq.reset();
    s.vq.descAddr = 0x9000000n;
    s.vq.driverAddr = BigInt(s.ring.avail);
    s.vq.deviceAddr = BigInt(s.ring.used);
    s.vq.enable();
    s.ring.push(0);
    s.vq.kick();
    await until(() => s.host.errors.length > 0, 'error');
    t.match(s.host.errors[0]!.message, /cannot read descriptor at 0x9000000/);
  }
});

t.test('a data buffer at an unmapped IOVA is the device’s problem, not the ring’s', async (t) => {
  const s = setup();
  s.ring.push(s.ring.chain([{ addr: 0x9000000, len: 512, write: true }]));
  await kickFor(s, 1);
  t.same(s.host.errors, [], 'the chain itself is well formed');
  const c = s.host.chains[0]!;
  await t.rejects(chainWrite(s.g.dma, c, 0, Buffer.alloc(4)), { name: 'DmaFault', reason: 'unmapped' });
  c.complete(0);
  await until(() => s.ring.usedIdx === 1, 'used');
});

t.test('reset drops what is in flight; stale completions are ignored', async (t) => {
  const s = setup();
  s.ring.push(s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]));
  await kickFor(s, 1);
  const stale = s.host.chains[0]!;
  rearm(s);
  stale.complete(1);
  await turns();
  t.equal(s.ring.usedIdx, 0, 'a completion from before the reset is not published');
  t.equal(s.vq.inFlight, 0);
  s.host.autoComplete = 1;
  const head = s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]);
  s.ring.push(head);
  await kickFor(s, 1);
  await until(() => s.ring.usedIdx === 1, 'used');
  t.same(s.ring.takeUsed(), [{ id: head, len: 1 }]);
});

t.test('a head made available twice while in flight is a ring error', async (t) => {
  const s = setup({ size: 4 });
  const head = s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]);
  s.ring.push(head, head, head, head);
  await kickFor(s, 4);
  s.ring.push(head);
  s.vq.kick();
  await until(() => s.host.errors.length > 0, 'error');
  t.match(s.host.errors[0]!.message, /more than 4 chains in flight/);
});

t.test('everything also works over DMA_READ/DMA_WRITE messages (no fd)', async (t) => {
  const g = makeMessageGuest();
  const s = setup({ guest: g, eventIdx: true });
  const data = g.mem.alloc(4096);
  const hdr = g.mem.alloc(16);
  g.mem.write(hdr, Buffer.from('header-bytes-16b'));
  const head = s.ring.indirect([
    { addr: hdr, len: 16 },
    { addr: data, len: 4096, write: true },
  ]);
  s.ring.push(head);
  await kickFor(s, 1);
  const c = s.host.chains[0]!;
  t.equal((await chainRead(g.dma, c, 0, 16)).toString(), 'header-bytes-16b');
  await chainWrite(g.dma, c, 0, Buffer.alloc(4096, 0xab));
  c.complete(4096);
  await until(() => s.ring.usedIdx === 1, 'used');
  t.same(s.ring.takeUsed(), [{ id: head, len: 4096 }]);
  t.equal(g.mem.read(data + 4095, 1)[0], 0xab);
  t.equal(s.host.notifies, 1);
  t.ok(g.messages.reads > 0 && g.messages.writes > 0, `ring and data went over messages (${g.messages.reads} reads, ${g.messages.writes} writes)`);
  void BASE;
});

// ---- the synchronous drain (mapped rings): taken in the kick, published and signalled at the end of its turn ----

const oneByte = (s: Setup) => s.ring.chain([{ addr: s.g.mem.alloc(1), len: 1, write: true }]);
/** The rest of the current turn: the microtasks queued so far. */
const endOfTurn = () => Promise.resolve();

for (const eventIdx of [false, true]) {
  t.test(`mapped rings: one kick takes every chain at once; the turn ends with one update and one interrupt (EVENT_IDX ${eventIdx})`, async (t) => {
    const s = setup({ size: 16, eventIdx });
    s.host.autoComplete = 1;
    const seenAtNotify: number[][] = [];
    s.host.notify = () => {
      s.host.notifies++;
      seenAtNotify.push([s.ring.usedIdx, eventIdx ? s.ring.availEvent : s.ring.usedFlags]);
    };
    const heads = [oneByte(s), oneByte(s), oneByte(s)];
    s.ring.push(...heads);
    s.vq.kick();
    t.equal(s.host.chains.length, 3, 'every chain taken inside kick()');
    t.equal(s.ring.usedIdx, 0, 'nothing published while the turn runs');
    await endOfTurn();
    t.equal(s.ring.usedIdx, 3, 'used->idx published at the end of the turn');
    t.equal(s.host.notifies, 1, 'one interrupt');
    t.same(seenAtNotify, [[3, eventIdx ? 3 : 0]], 'the interrupt came after the used ring and after kicks were asked for again');
    t.equal(s.vq.stats.flushes, 1, 'one used-ring update for the three');
    await turns(10);
    t.equal(s.ring.usedIdx, 3, 'nothing published twice');
    t.same(s.ring.takeUsed().map((e) => e.id), heads);
    t.equal(s.vq.stats.flushes, 1);
    t.equal(s.host.notifies, 1);
    t.equal(s.vq.inFlight, 0);
    t.notOk(s.vq.busy, 'idle');
    t.same(s.host.errors, []);
  });

  t.test(`mapped rings: a buffer added during the drain without a kick is taken in the same drain (EVENT_IDX ${eventIdx})`, async (t) => {
    const s = setup({ size: 16, eventIdx });
    let adds = 2;
    s.host.handle = (c) => {
      s.host.chains.push(c);
      c.complete(1);
      // The driver sees kicks suppressed (NO_NOTIFY / a stale avail_event) and does not kick.
      if (adds-- > 0) s.ring.push(oneByte(s));
    };
    s.ring.push(oneByte(s));
    s.vq.kick();
    t.equal(s.host.chains.length, 3, 'all three taken by one kick');
    if (eventIdx) t.equal(s.ring.availEvent, 3, 'avail_event asks for a kick at the next buffer');
    else t.equal(s.ring.usedFlags, 0, 'kicks wanted again');
    await endOfTurn();
    t.equal(s.ring.usedIdx, 3);
    t.equal(s.host.notifies, 1, 'one interrupt for the drain');
    t.equal(s.vq.stats.kicks, 1);
  });

  t.test(`mapped rings: ring views are taken after avail->idx is read, so a copy of them (what --record-dma keeps) is what the device walks (EVENT_IDX ${eventIdx})`, async (t) => {
    const s = setup({ size: 16, eventIdx });
    s.host.autoComplete = 1;
    const real = s.g.dma;
    const idxAddr = s.ring.avail + 2;
    let late = -1;
    // Every view a copy of memory as it is when handed out; the driver adds
    // a buffer (without a kick) just before the device's first look at avail->idx.
    const mappedView: typeof real.mappedView = (addr, len, access) => {
      if (Number(addr) === idxAddr && late < 0) s.ring.push((late = oneByte(s)));
      const v = real.mappedView(addr, len, access);
      return v && access === DMA_ACCESS_READ ? Buffer.from(v) : v;
    };
    s.host.dma = withMappedView(real, mappedView);
    const first = oneByte(s);
    s.ring.push(first);
    s.vq.kick();
    await endOfTurn();
    t.same(s.host.chains.map((c) => c.head), [first, late], 'both chains, each from its own ring entry');
    t.same(s.host.errors, []);
    t.same(s.ring.takeUsed().map((e) => e.id), [first, late]);
  });

  t.test(`mapped rings: the kicks of one turn share one update and one interrupt; the next turn gets its own (EVENT_IDX ${eventIdx})`, async (t) => {
    const s = setup({ size: 16, eventIdx });
    s.host.autoComplete = 1;
    s.ring.push(oneByte(s), oneByte(s));
    s.vq.kick();
    s.ring.push(oneByte(s));
    s.vq.kick(); // a second doorbell in the same socket read
    t.equal(s.host.chains.length, 3);
    await endOfTurn();
    t.equal(s.ring.usedIdx, 3);
    t.equal(s.vq.stats.flushes, 1, 'one used-ring update');
    t.equal(s.host.notifies, 1, 'one interrupt');
    if (eventIdx) s.ring.usedEvent = 3; // the driver has taken three: interrupt past 3
    s.ring.push(oneByte(s));
    s.vq.kick();
    await endOfTurn();
    t.equal(s.ring.usedIdx, 4);
    t.equal(s.host.notifies, 2, 'the next turn is not left without its interrupt');
  });

  t.test(`mapped rings: the interrupt decision holds for a synchronous drain (EVENT_IDX ${eventIdx})`, async (t) => {
    const s = setup({ size: 16, eventIdx });
    s.host.autoComplete = 1;
    s.ring.push(oneByte(s));
    s.vq.kick();
    await endOfTurn();
    t.equal(s.host.notifies, 1, 'the first completion interrupts');
    if (eventIdx) s.ring.usedEvent = 3; // interrupt when used->idx passes 3
    else s.ring.availFlags = VRING_AVAIL_F_NO_INTERRUPT;
    s.ring.push(oneByte(s), oneByte(s));
    s.vq.kick();
    await endOfTurn();
    t.equal(s.ring.usedIdx, 3);
    t.equal(s.host.notifies, 1, 'used 1 -> 3 does not pass used_event 3 / NO_INTERRUPT: none');
    if (!eventIdx) s.ring.availFlags = 0;
    s.ring.push(oneByte(s));
    s.vq.kick();
    await endOfTurn();
    t.equal(s.ring.usedIdx, 4);
    t.equal(s.host.notifies, 2, 'used 3 -> 4 passes used_event 3 / interrupts on: not skipped');
    t.equal(s.vq.stats.interrupts + s.vq.stats.suppressed, s.vq.stats.flushes, 'one decision per update');
  });
}

t.test('mapped rings: what completes later is published by its own flush, once', async (t) => {
  const s = setup({ size: 16, eventIdx: true });
  let kept: DescChain | null = null;
  s.host.handle = (c) => {
    s.host.chains.push(c);
    if (kept === null) kept = c; // as thread-pool I/O would
    else c.complete(1);
  };
  s.ring.push(oneByte(s), oneByte(s));
  s.vq.kick();
  await endOfTurn();
  t.equal(s.ring.usedIdx, 1, 'the completed one published at the end of the turn');
  t.equal(s.host.notifies, 1);
  t.ok(s.vq.busy, 'one still in flight');
  s.ring.usedEvent = 1; // the driver took the first and wants the next
  kept!.complete(1);
  await until(() => s.ring.usedIdx === 2, 'the later one');
  await turns(10);
  t.equal(s.ring.usedIdx, 2);
  t.same(s.ring.takeUsed().map((e) => e.id), [s.host.chains[1]!.head, s.host.chains[0]!.head]);
  t.equal(s.host.notifies, 2);
  t.equal(s.vq.stats.flushes, 2);
  t.notOk(s.vq.busy);
});

t.test('an indirect table that is not mapped: the asynchronous drain goes on from there, each chain taken once', async (t) => {
  const s = setup({ size: 16, eventIdx: true });
  s.host.autoComplete = 1;
  const real = s.g.dma;
  const tableAt = s.g.mem.alloc(32);
  // The indirect table is reachable by copies only (as memory behind messages).
  s.host.dma = withMappedView(real, (addr, len, access) => (Number(addr) === tableAt ? null : real.mappedView(addr, len, access)));
  const first = oneByte(s);
  const x = s.g.mem.alloc(8);
  s.ring.writeDesc(0, x, 4, Desc.WRITE | Desc.NEXT, 1, tableAt);
  s.ring.writeDesc(1, x + 4, 4, Desc.WRITE, 0, tableAt);
  const ind = s.ring.allocDesc();
  s.ring.writeDesc(ind, tableAt, 32, Desc.INDIRECT);
  const last = oneByte(s);
  s.ring.push(first, ind, last);
  s.vq.kick();
  t.same(s.host.chains.map((c) => c.head), [first], 'the mapped chain taken at once, the drain stopped before the other');
  await endOfTurn();
  t.equal(s.ring.usedIdx, 1, 'and published');
  await until(() => s.host.chains.length === 3 && s.ring.usedIdx === 3, 'the rest');
  await turns(10);
  t.same(s.host.chains.map((c) => c.head), [first, ind, last], 'each chain once, in order');
  t.same([s.host.chains[1]!.writable, s.host.chains[1]!.indirect], [8, true]);
  t.equal(s.ring.usedIdx, 3);
  t.equal(s.ring.availEvent, 3, 'kicks asked for again at the end');
  t.notOk(s.vq.busy);
  t.same(s.host.errors, []);
});

t.test('a malformed chain met by the synchronous drain is a RingError, raised once', async (t) => {
  const s = setup({ size: 8 });
  s.host.autoComplete = 1;
  const good = oneByte(s);
  s.ring.writeDesc(5, s.g.mem.alloc(4), 4, Desc.NEXT, 5);
  s.ring.push(good, 5);
  s.vq.kick();
  t.equal(s.host.errors.length, 1, 'reported in the kick');
  t.match(s.host.errors[0]!.message, /loop/);
  t.same(s.host.chains.map((c) => c.head), [good]);
  await endOfTurn();
  t.equal(s.ring.usedIdx, 1, 'what completed before it is still published');
  await turns(10);
  t.equal(s.host.errors.length, 1);
});

// ---- watching the ring (ring-poll.ts): avail_event held behind while a window is open ----

/** A gate that always allows and adds up what missed windows cost. */
function openGate(): PollGate & { charged: number } {
  return { charged: 0, allows: () => true, charge(ns) { this.charged += ns; }, contended() {} };
}

t.test('a window open: the driver need not kick (avail_event one behind), a buffer added without a kick is taken on a later turn', async (t) => {
  const s = setup({ size: 16, eventIdx: true });
  s.host.autoComplete = 1;
  s.host.pollGate = openGate();
  s.vq.window.ns = 1e9; // one second: the test is never too slow for it
  s.ring.push(oneByte(s));
  s.vq.kick();
  await endOfTurn();
  t.equal(s.ring.availEvent, 0, 'avail_event one behind lastAvail (1)');
  t.notOk(needEvent(s.ring.availEvent, 2, 1), 'the driver adding buffer 2 sees no kick wanted');
  s.ring.usedEvent = 1; // as the driver does: interrupt me for the next one
  const second = oneByte(s);
  s.ring.push(second);
  await until(() => s.host.chains.length === 2, 'taken without a kick');
  await until(() => s.ring.usedIdx === 2, 'used');
  t.equal(s.vq.stats.kicks, 1, 'one kick in all');
  t.equal(s.vq.stats.polledHits, 1, 'found by the window');
  t.equal(s.host.notifies, 2, 'and its completion interrupts');
  t.equal(s.ring.availEvent, 1, 'a new window: one behind again');
  s.vq.reset();
});

/** One buffer kicked and served; then the queue watches its ring (a window of `ns`, avail_event held behind). */
async function oneBufferThenWatch(t: Test, s: Setup, gate: PollGate, ns: number): Promise<void> {
  s.host.autoComplete = 1;
  s.host.pollGate = gate;
  s.vq.window.ns = ns;
  s.ring.push(oneByte(s));
  s.vq.kick();
  await endOfTurn();
  t.equal(s.ring.availEvent, 0, 'held behind while the window is open');
}

t.test('a window that ends with nothing: avail_event back to the next buffer, its cost charged to the budget', async (t) => {
  const s = setup({ size: 16, eventIdx: true });
  const gate = openGate();
  await oneBufferThenWatch(t, s, gate, 2e6);
  await until(() => s.vq.stats.polledMisses === 1, 'the window ends');
  t.equal(s.ring.availEvent, 1, 'kicks asked for at the next buffer');
  t.equal(gate.charged, 2e6, 'the 2 ms charged');
  s.ring.push(oneByte(s));
  await turns(10);
  t.equal(s.host.chains.length, 1, 'no longer watched: a buffer waits for its kick');
  await kickFor(s, 2);
  t.equal(s.host.chains.length, 2);
});

t.test('a window whose turn lost the CPU for long ends at once: kicks asked for, the budget told, nothing charged', async (t) => {
  let lost = false;
  const s = setup({ size: 16, eventIdx: true, lostCpu: () => lost });
  const gate = { ...openGate(), contentions: 0, contended() { this.contentions++; } };
  await oneBufferThenWatch(t, s, gate, 1e9);
  await turns(5);
  t.equal(s.vq.stats.polledYields + s.vq.stats.polledMisses, 0, 'still watching while turns keep the CPU');
  lost = true;
  await until(() => s.vq.stats.polledYields === 1, 'the window ends');
  t.equal(s.ring.availEvent, 1, 'kicks asked for at the next buffer');
  t.equal(gate.contentions, 1, 'the budget holds polling off');
  t.equal(gate.charged, 0, 'not charged as a miss');
  t.equal(s.vq.stats.polledMisses, 0);
  s.ring.push(oneByte(s));
  await kickFor(s, 2);
  t.equal(s.host.chains.length, 2);
});

t.test('a buffer found on the turn that lost the CPU is still taken', async (t) => {
  const s = setup({ size: 16, eventIdx: true, lostCpu: () => true });
  await oneBufferThenWatch(t, s, openGate(), 1e9);
  s.ring.push(oneByte(s)); // no kick: the driver saw avail_event behind
  await until(() => s.host.chains.length === 2, 'taken without a kick');
  t.equal(s.vq.stats.polledHits, 1, 'found by the window');
  t.equal(s.vq.stats.kicks, 1, 'the only kick was the first buffer\'s');
});

t.test('no lost buffer at a window\'s end: one added while the driver saw avail_event behind is found by the last look', async (t) => {
  const s = setup({ size: 16, eventIdx: true });
  s.host.autoComplete = 1;
  s.host.pollGate = openGate();
  s.vq.window.ns = 1e6;
  const real = s.g.dma;
  const eventAddr = s.ring.used + 4 + 8 * s.ring.size;
  let added = false;
  const mappedView: typeof real.mappedView = (addr, len, access) => {
    // The store that ends the window: the driver got in just before it.
    if (Number(addr) === eventAddr && access === DMA_ACCESS_WRITE && s.vq.stats.polledMisses === 1 && !added) {
      added = true;
      s.ring.push(oneByte(s));
    }
    return real.mappedView(addr, len, access);
  };
  s.host.dma = withMappedView(real, mappedView);
  s.ring.push(oneByte(s));
  s.vq.kick();
  await until(() => added, 'the window ends');
  await until(() => s.host.chains.length === 2, 'the buffer is taken');
  t.equal(s.vq.stats.kicks, 1, 'without a kick');
  t.same(s.host.errors, []);
  s.vq.reset();
});

t.test('no window: when the budget refuses, without EVENT_IDX, or while the window is closed', async (t) => {
  for (const [what, eventIdx, allows, ns] of [['refused', true, false, 1e9], ['no EVENT_IDX', false, true, 1e9], ['closed', true, true, 0]] as const) {
    const s = setup({ size: 16, eventIdx });
    s.host.autoComplete = 1;
    s.host.pollGate = { allows: () => allows, charge() {}, contended() {} };
    s.vq.window.ns = ns;
    s.ring.push(oneByte(s));
    s.vq.kick();
    await endOfTurn();
    if (eventIdx) t.equal(s.ring.availEvent, 1, `${what}: kicks asked for at the next buffer`);
    else t.equal(s.ring.usedFlags, 0, `${what}: kicks asked for`);
    s.ring.push(oneByte(s));
    await turns(10);
    t.equal(s.host.chains.length, 1, `${what}: a buffer without a kick waits`);
    t.equal(s.vq.stats.polledHits + s.vq.stats.polledMisses, 0, `${what}: no window`);
  }
});

t.test('a reset ends the window: nothing taken or stored after it', async (t) => {
  const s = setup({ size: 16, eventIdx: true });
  s.host.autoComplete = 1;
  s.host.pollGate = openGate();
  s.vq.window.ns = 1e9;
  s.ring.push(oneByte(s));
  s.vq.kick();
  await endOfTurn();
  t.equal(s.ring.availEvent, 0, 'window open');
  s.vq.reset();
  s.ring.push(oneByte(s));
  await turns(10);
  t.equal(s.host.chains.length, 1, 'the buffer after the reset is not taken');
  t.equal(s.ring.availEvent, 0, 'nothing stored into the old ring');
  t.equal(s.vq.stats.polledHits + s.vq.stats.polledMisses, 0);
  t.same(s.host.errors, []);
});

// ---- a driver on another thread: real concurrency, no lost kick ----

/**
 * Guest memory in a memfd, mapped here for the queue and in a worker for a
 * driver that kicks only when avail_event says so; `batches` batches of 1-3
 * buffers, each waited for. Resolves with the driver's kicks, rejects on a stall.
 */
async function raceDriver(t: Test, gate: PollGate | undefined, fixedWindowNs: number | null, batches: number) {
  const size = 1 << 20;
  const fd = native.memfdCreate('vq-race', size);
  const bytes = new Uint8Array(native.mmap(fd, 0, size, native.PROT_READ | native.PROT_WRITE));
  const ctx = new IommuContext();
  ctx.addDevice('d');
  ctx.type1.map({ iova: BASE, size, flags: 3, backing: new MemoryBacking(bytes) });
  const qsize = 16;
  const layout = { desc: 0x1000, avail: 0x2000, used: 0x3000, buffers: 0x8000 };
  const host = new Host(ctx.dma('d'));
  host.autoComplete = 1;
  host.pollGate = gate;
  const vq = new Virtqueue(0, qsize, host);
  vq.descAddr = BigInt(BASE + layout.desc);
  vq.driverAddr = BigInt(BASE + layout.avail);
  vq.deviceAddr = BigInt(BASE + layout.used);
  vq.eventIdx = true;
  vq.enable();
  if (fixedWindowNs !== null) {
    vq.window.ns = fixedWindowNs;
    vq.window.next = () => {};
  }
  const data: DriverData = { fd, size, ...layout, base: BASE, buffers: BASE + layout.buffers, queueSize: qsize, batches, seed: 7 };
  const worker = new Worker(new URL('./concurrent-driver.js', import.meta.url), { workerData: data });
  try {
    const result = await new Promise<{ kicks: number }>((resolve, reject) => {
      worker.on('message', (m: DriverMessage) => {
        if (m.kind === 'kick') vq.kick();
        else if (m.kind === 'done') resolve({ kicks: m.kicks });
        else reject(new Error(`stalled at batch ${m.batch}: avail ${m.availIdx}, used ${m.usedIdx}, avail_event ${m.availEvent}; queue ${JSON.stringify(vq.stats)} lastAvail ${vq.lastAvail}`));
      });
      worker.on('error', reject);
    });
    t.same(host.errors, [], 'no ring error');
    return { ...result, stats: vq.stats };
  } finally {
    await worker.terminate();
    vq.reset();
    native.munmap(bytes.buffer as ArrayBuffer);
    native.close(fd);
  }
}

t.test('a driver on another thread: every batch used, with and without windows, windows ending all the time', async (t) => {
  const batches = 4000;
  const plain = await raceDriver(t, { allows: () => false, charge() {}, contended() {} }, null, batches);
  t.equal(plain.stats.polledHits, 0, 'no windows: every batch came by kick');
  t.equal(plain.kicks, plain.stats.kicks, 'each kick the driver sent arrived');
  const adaptive = await raceDriver(t, openGate(), null, batches);
  t.ok(adaptive.stats.polledHits > 0, `adaptive windows found ${adaptive.stats.polledHits} batches without a kick (${adaptive.kicks} kicks)`);
  t.ok(adaptive.kicks < plain.kicks, 'and the driver kicked less');
  const short = await raceDriver(t, openGate(), 20_000, batches);
  const ended = short.stats.polledMisses + short.stats.polledYields;
  t.ok(ended > 100, `20 µs windows: ${short.stats.polledMisses} ended with nothing, ${short.stats.polledYields} ended when another thread held the CPU, none lost a batch`);
});
