// Queues and interrupts: the CQ phase tag across wraps and the SQ head in
// each completion; a full CQ holding completions until the host frees
// room; shadow doorbells (submissions picked up without MMIO, EventIdx
// published when idle); several I/O queues at once; MSI-X with one
// interrupt per batch, coalescing, and the INTx fallback; a queue in
// unmapped memory is Controller Fatal Status.
import t from 'tap';
import { Reg } from '../../../devices/nvme/constants.js';
import { MemoryBacking } from '../../../iommu/backing.js';
import type { DmaMessenger } from '../../../iommu/backing-message.js';
import { IommuContext } from '../../../iommu/context.js';
import { BASE, GuestMem, MEM_SIZE, type Guest } from '../virtio/env.js';
import { enableMsix, make, makeMessageGuest, tempDir, turns, until, PAGE, type Env, type QueuePair } from './env.js';

const image = tempDir(t);

const flush = (e: Env, q: QueuePair) => e.drv.put(q, { opcode: 0x00, nsid: 1 });

t.test('CQ phase tag across three wraps; SQ head in every completion', async (t) => {
  const e = await make(t, image);
  const q = await e.drv.createIoQueues(1, 4);
  const heads: number[] = [];
  const phases: number[] = [];
  for (let i = 0; i < 12; i++) {
    const cid = e.drv.put(q, { opcode: 0x02, nsid: 1, prp1: e.g.mem.alloc(512, PAGE) });
    e.drv.ring(q);
    const c = await e.drv.reap(q);
    t.equal(c.cid, cid);
    t.equal(c.sqid, 1);
    heads.push(c.sqHead);
    phases.push(c.phase);
  }
  t.same(heads, [1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0], 'SQ head wraps with the queue');
  t.same(phases, [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1], 'phase flips on each CQ wrap');
});

t.test('a full CQ holds completions until the host consumes entries', async (t) => {
  const e = await make(t, image);
  // CQ of 4 entries (3 usable), SQ of 8.
  const cq = e.g.mem.alloc(4 * 16, PAGE);
  const sq = e.g.mem.alloc(8 * 64, PAGE);
  t.equal((await e.drv.cmd(e.drv.admin, { opcode: 0x05, prp1: cq, cdw10: (3 << 16) | 1, cdw11: (1 << 16) | 3 })).status, 0);
  t.equal((await e.drv.cmd(e.drv.admin, { opcode: 0x01, prp1: sq, cdw10: (7 << 16) | 1, cdw11: (1 << 16) | 1 })).status, 0);
  const q = { qid: 1, sqBase: sq, sqSize: 8, cqBase: cq, cqSize: 4, sqTail: 0, cqHead: 0, phase: 1, nextCid: 1 } as QueuePair;
  for (let i = 0; i < 6; i++) flush(e, q);
  e.drv.ring(q);
  await until(() => !e.ctrl.busy, 'commands done');
  await turns();
  t.equal(e.ctrl.cq(1)!.waiting.length, 3, 'three completions wait for room');
  const got: number[] = [];
  for (let i = 0; i < 6; i++) got.push((await e.drv.reap(q)).cid);
  t.same(got.sort((a, b) => a - b), [1, 2, 3, 4, 5, 6], 'all six (flushes end in any order)');
});

t.test('several I/O queues work at once', async (t) => {
  const e = await make(t, image, { queues: 3 });
  const qs = [await e.drv.createIoQueues(1, 16), await e.drv.createIoQueues(2, 16), await e.drv.createIoQueues(3, 16)];
  for (const q of qs) for (let i = 0; i < 10; i++) e.drv.put(q, { opcode: 0x02, nsid: 1, prp1: e.g.mem.alloc(4096, PAGE), cdw12: 7 });
  for (const q of qs) e.drv.ring(q);
  for (const q of qs) for (let i = 0; i < 10; i++) t.equal((await e.drv.reap(q)).status, 0);
  t.equal(e.ctrl.stats().reads, 30);
});

t.test('MSI-X: one vector per CQ, one interrupt for a batch', async (t) => {
  const e = await make(t, image, { queues: 2 });
  enableMsix(e.ctrl.device, e.fds);
  const q1 = await e.drv.createIoQueues(1, 16);
  const q2 = await e.drv.createIoQueues(2, 16);
  // Reads of cached blocks complete inline, all in the same turn.
  const buf = e.g.mem.alloc(4096, PAGE);
  await e.drv.cmd(q1, { opcode: 0x02, nsid: 1, prp1: buf, cdw12: 7 });
  await turns();
  e.fds.signals.length = 0;
  for (let i = 0; i < 8; i++) e.drv.put(q1, { opcode: 0x02, nsid: 1, prp1: buf, cdw12: 7 });
  e.drv.ring(q1);
  await until(() => e.drv.peek(q1) !== undefined && !e.ctrl.busy, 'completions');
  await turns();
  t.same(e.fds.signals, [101], 'vector 1 once for eight completions');
  for (let i = 0; i < 8; i++) await e.drv.reap(q1);
  flush(e, q2);
  e.drv.ring(q2);
  await e.drv.reap(q2);
  await turns();
  t.same(e.fds.signals, [101, 102], 'queue 2 on vector 2');
});

t.test('interrupt coalescing: a threshold or a time, except on excluded vectors', async (t) => {
  const e = await make(t, image, { queues: 1 });
  enableMsix(e.ctrl.device, e.fds);
  const q = await e.drv.createIoQueues(1, 32);
  // Reads of a cached block complete inline: no waiting on the disk in this test.
  const buf = e.g.mem.alloc(512, PAGE);
  const read = () => e.drv.put(q, { opcode: 0x02, nsid: 1, prp1: buf });
  read();
  e.drv.ring(q);
  await e.drv.reap(q);
  // Threshold 4 entries (0-based 3), time 25.5 ms (255 x 100 µs).
  t.equal((await e.drv.cmd(e.drv.admin, { opcode: 0x09, cdw10: 0x08, cdw11: (255 << 8) | 3 })).status, 0);
  await turns();
  e.fds.signals.length = 0;
  for (let i = 0; i < 2; i++) {
    read();
    e.drv.ring(q);
    await until(() => e.drv.peek(q) !== undefined, 'completion');
    await e.drv.reap(q);
  }
  await turns();
  t.same(e.fds.signals, [], 'two entries: below the threshold, the timer runs');
  await until(() => e.fds.signals.length === 1, 'the aggregation time', 1000);
  t.same(e.fds.signals, [101], 'the time ended it');
  for (let i = 0; i < 4; i++) read();
  e.drv.ring(q);
  await until(() => e.fds.signals.length === 2, 'threshold');
  t.pass('four entries reached the threshold at once');
  for (let i = 0; i < 4; i++) await e.drv.reap(q);
  // Vector 1 excluded: every batch interrupts.
  t.equal((await e.drv.cmd(e.drv.admin, { opcode: 0x09, cdw10: 0x09, cdw11: 1 | (1 << 16) })).status, 0);
  const before = e.fds.signals.filter((f) => f === 101).length;
  read();
  e.drv.ring(q);
  await e.drv.reap(q);
  await until(() => e.fds.signals.filter((f) => f === 101).length === before + 1, 'immediate interrupt');
  t.pass('coalescing disabled on vector 1');
});

t.test('INTx fallback: the line follows unconsumed entries', async (t) => {
  const e = await make(t, image);
  const q = await e.drv.createIoQueues(1, 8);
  t.equal(e.ctrl.device.intxLevel, false);
  flush(e, q);
  e.drv.ring(q);
  await until(() => e.drv.peek(q) !== undefined, 'completion');
  await turns();
  t.equal(e.ctrl.device.intxLevel, true, 'high with an entry to consume');
  await e.drv.reap(q);
  t.equal(e.ctrl.device.intxLevel, false, 'low once the head doorbell consumed it');
});

t.test('shadow doorbells: submissions without MMIO while busy, EventIdx = tail when idle', async (t) => {
  const e = await make(t, image, { shadowPollUs: 0 });
  const q = await e.drv.createIoQueues(1, 64);
  const dbs = e.g.mem.alloc(PAGE, PAGE);
  const eis = e.g.mem.alloc(PAGE, PAGE);
  t.equal((await e.drv.cmd(e.drv.admin, { opcode: 0x7c, prp1: dbs, prp2: eis })).status, 0);
  const sqDb = dbs + 8; // SQ 1: doorbell index 2
  const sqEi = eis + 8;
  const cqEi = eis + 12;
  t.equal(e.g.mem.u32(sqEi), 0, 'SQ EventIdx = tail 0');
  t.equal(e.g.mem.u32(cqEi), 63, 'CQ EventIdx one behind the head: no head doorbell needed');

  // The driver writes the tail only to the shadow page; a first MMIO write starts things.
  const mmio0 = e.ctrl.stats().mmioDoorbellWrites;
  e.drv.put(q, { opcode: 0x02, nsid: 1, prp1: e.g.mem.alloc(4096, PAGE), cdw12: 7 });
  e.g.mem.set32(sqDb, q.sqTail);
  e.drv.ring(q);
  // More submissions to the shadow only, while the first is in flight or just done.
  for (let i = 0; i < 5; i++) e.drv.put(q, { opcode: 0x00, nsid: 1 });
  e.g.mem.set32(sqDb, q.sqTail);
  const got: number[] = [];
  for (let i = 0; i < 6; i++) {
    const c = await (async () => {
      for (let n = 0; n < 5000; n++) {
        const p = e.drv.peek(q);
        if (p) {
          q.cqHead = (q.cqHead + 1) % q.cqSize;
          return p;
        }
        await new Promise((r) => setTimeout(r, 1));
      }
      throw new Error('no completion');
    })();
    got.push(c.status);
  }
  t.same(got, [0, 0, 0, 0, 0, 0], 'six commands completed');
  t.equal(e.ctrl.stats().mmioDoorbellWrites - mmio0, 1, 'one MMIO doorbell for six commands');
  t.ok(e.ctrl.stats().shadowTailReads >= 1, 'tails read from the shadow page');
  await until(() => e.g.mem.u32(sqEi) === q.sqTail, 'EventIdx published at idle');
  t.pass(`EventIdx = tail ${q.sqTail} once idle`);
});

t.test('an SQ in unmapped memory is Controller Fatal Status', async (t) => {
  const e = await make(t, image);
  const bad = 0x7000_0000;
  t.equal((await e.drv.cmd(e.drv.admin, { opcode: 0x05, prp1: e.g.mem.alloc(PAGE, PAGE), cdw10: (3 << 16) | 1, cdw11: (1 << 16) | 3 })).status, 0);
  t.equal((await e.drv.cmd(e.drv.admin, { opcode: 0x01, prp1: bad, cdw10: (3 << 16) | 1, cdw11: (1 << 16) | 1 })).status, 0, 'created (its memory is read later)');
  e.drv.write32(Reg.DBS + 8, 1);
  const end = Date.now() + 2000;
  while (Date.now() < end && ((await e.drv.csts()) & 2) === 0) await new Promise((r) => setTimeout(r, 1));
  t.equal((await e.drv.csts()) & 2, 2, 'CFS');
  e.drv.write32(Reg.CC, 0);
  t.equal(await e.drv.csts(), 0, 'a reset clears it');
});

/**
 * Guest memory behind DMA messages whose reads take the bytes when they are
 * asked for and answer a few turns later, as QEMU's replies can arrive
 * after a doorbell the guest wrote meanwhile.
 */
function lateReplyGuest(): Guest {
  const ctx = new IommuContext();
  ctx.addDevice('d');
  const backing = new MemoryBacking(MEM_SIZE);
  const bytes = backing.bytes!;
  let n = 0;
  const later = () => new Promise<void>((r) => {
    let k = n++ % 5;
    const step = () => (k-- > 0 ? setImmediate(step) : r());
    step();
  });
  const messenger: DmaMessenger = {
    maxChunk: 64 * 1024,
    async read(addr, len) {
      const off = Number(addr) - BASE;
      const data = Buffer.from(bytes.subarray(off, off + len));
      await later();
      return data;
    },
    async write(addr, data) {
      bytes.set(data, Number(addr) - BASE);
      await later();
    },
  };
  ctx.type1.map({ iova: BASE, size: MEM_SIZE, flags: 3, messenger });
  return { ctx, dma: ctx.dma('d'), mem: new GuestMem(bytes, BASE), backing };
}

t.test('shadow doorbells in memory reached by DMA messages: a late shadow read never moves the tail back', async (t) => {
  const guest = lateReplyGuest();
  const e = await make(t, image, { guest });
  const q = await e.drv.createIoQueues(1, 32);
  const dbs = e.g.mem.alloc(PAGE, PAGE);
  const eis = e.g.mem.alloc(PAGE, PAGE);
  t.equal((await e.drv.cmd(e.drv.admin, { opcode: 0x7c, prp1: dbs, prp2: eis })).status, 0);
  const buf = e.g.mem.alloc(512, PAGE);
  // As the driver does: the shadow tail first, then the MMIO doorbell, every time.
  // Varying gaps put submissions in every phase of the controller's EventIdx write and shadow read.
  let bad = 0;
  for (let i = 0; i < 200; i++) {
    e.drv.put(q, { opcode: 0x02, nsid: 1, prp1: buf });
    e.g.mem.set32(dbs + 8, q.sqTail);
    e.drv.ring(q);
    if ((await e.drv.reap(q)).status !== 0) bad++;
    await turns(i % 7);
  }
  t.equal(bad, 0, 'every command succeeded');
  await turns(50);
  t.equal(e.drv.peek(q), undefined, 'no completion of a command never submitted');
  t.equal(e.ctrl.stats().ioCommands, 200, 'exactly the 200 commands');
});

/** Doorbell Buffer Config with fresh pages: the shadow doorbell and EventIdx addresses of I/O queue 1. */
async function shadowPages(e: Env): Promise<{ sqDb: number; cqDb: number }> {
  const dbs = e.g.mem.alloc(PAGE, PAGE);
  const eis = e.g.mem.alloc(PAGE, PAGE);
  const c = await e.drv.cmd(e.drv.admin, { opcode: 0x7c, prp1: dbs, prp2: eis });
  if (c.status !== 0) throw new Error(`doorbell buffer config: status 0x${c.status.toString(16)}`);
  return { sqDb: dbs + 8, cqDb: dbs + 12 };
}

/** As the driver does with shadow doorbells: queue a read of one block and write the new tail to the shadow slot only. */
function submitShadowed(e: Env, q: QueuePair, sqDb: number, buf: number): number {
  const cid = e.drv.put(q, { opcode: 0x02, nsid: 1, prp1: buf });
  e.g.mem.set32(sqDb, q.sqTail);
  return cid;
}

/** As the driver does with shadow doorbells: consume the next completion, write the new head to the shadow slot, then (if `ring`) to the MMIO doorbell. */
function consume(e: Env, q: QueuePair, cqDb: number, ring: boolean): number {
  const c = e.drv.peek(q);
  if (!c) throw new Error('no completion');
  q.cqHead = (q.cqHead + 1) % q.cqSize;
  if (q.cqHead === 0) q.phase ^= 1;
  e.g.mem.set32(cqDb, q.cqHead);
  if (ring) e.drv.write32(Reg.DBS + 8 * q.qid + 4, q.cqHead);
  return c.cid;
}

t.test('shadow doorbells: a late MMIO tail older than the shadow tail announces nothing', async (t) => {
  // A long polling window: the controller keeps reading the shadow tail between commands.
  const e = await make(t, image, { shadowPollUs: 1_000_000 });
  const q = await e.drv.createIoQueues(1, 32);
  const { sqDb, cqDb } = await shadowPages(e);
  const buf = e.g.mem.alloc(512, PAGE);
  const reap = async () => {
    await until(() => e.drv.peek(q) !== undefined, 'a completion');
    return consume(e, q, cqDb, true);
  };
  const submit = () => submitShadowed(e, q, sqDb, buf);
  // The first command is rung; the ring of the second is posted but reaches the controller
  // only after the third was already picked up from the shadow slot.
  const cids = [submit()];
  e.drv.ring(q);
  t.equal(await reap(), cids[0]);
  cids.push(submit());
  const lateTail = q.sqTail;
  t.equal(await reap(), cids[1], 'second command taken from the shadow tail');
  cids.push(submit());
  t.equal(await reap(), cids[2], 'third command taken from the shadow tail');
  e.drv.write32(Reg.DBS + 8, lateTail);
  await turns(50);
  t.equal(e.drv.peek(q), undefined, 'no completion of an entry from the last lap');
  t.equal(e.ctrl.stats().ioCommands, 3, 'exactly the three commands');
  t.equal(e.ctrl.stats().lateMmioDoorbells, 1, 'the late write counted');
  t.equal(e.ctrl.stats().errors, 0);
});

t.test('shadow doorbells: a late MMIO CQ head older than the shadow head frees no entries', async (t) => {
  const e = await make(t, image);
  // CQ of 4 entries (3 usable).
  const q = await e.drv.createIoQueues(1, 4);
  const { sqDb, cqDb } = await shadowPages(e);
  const buf = e.g.mem.alloc(512, PAGE);
  const cq = e.ctrl.cq(1)!;
  const submit = async () => {
    const cid = e.drv.put(q, { opcode: 0x02, nsid: 1, prp1: buf });
    e.g.mem.set32(sqDb, q.sqTail);
    e.drv.ring(q);
    await until(() => !e.ctrl.busy, 'command done');
    await turns();
    return cid;
  };
  const cids = [await submit(), await submit(), await submit()];
  t.same([consume(e, q, cqDb, false)], cids.slice(0, 1));
  const lateHead = q.cqHead; // rung, but the write reaches the controller late
  t.same([consume(e, q, cqDb, false), consume(e, q, cqDb, false)], cids.slice(1, 3));
  // The CQ looks full at the controller's head: the shadow head makes room; then full for real.
  const posted = [await submit(), await submit(), await submit()];
  t.equal(cq.waiting.length, 0, 'the shadow head made room for three');
  e.drv.write32(Reg.DBS + 12, lateHead);
  const held = [await submit(), await submit()];
  t.equal(cq.waiting.length, 2, 'a full CQ: both wait (the late head freed nothing)');
  // The driver consumes all, ringing the head each time as the controller asks for it.
  const got: number[] = [];
  for (let i = 0; i < 5; i++) {
    await until(() => e.drv.peek(q) !== undefined, 'a completion');
    got.push(consume(e, q, cqDb, true));
  }
  t.same(got, [...posted, ...held], 'every completion once, in order');
  await turns();
  t.equal(e.drv.peek(q), undefined, 'nothing more');
});

t.test('shadow doorbells through DMA messages: a late MMIO tail older than a shadow tail already read announces nothing', async (t) => {
  const e = await make(t, image, { guest: makeMessageGuest() });
  const q = await e.drv.createIoQueues(1, 32);
  const { sqDb, cqDb } = await shadowPages(e);
  const buf = e.g.mem.alloc(512, PAGE);
  const submit = () => submitShadowed(e, q, sqDb, buf);
  // The first command is rung; the ring of the second is posted but late; the third is only in the
  // shadow slot. The controller's look at the shadow tail after its EventIdx write takes both.
  const cids = [submit()];
  e.drv.ring(q);
  cids.push(submit());
  const lateTail = q.sqTail;
  cids.push(submit());
  await until(() => e.ctrl.stats().ioCommands === 3 && !e.ctrl.busy, 'three commands done');
  const got: number[] = [];
  for (let i = 0; i < 3; i++) {
    await until(() => e.drv.peek(q) !== undefined, 'a completion');
    got.push(consume(e, q, cqDb, false));
  }
  t.same(got, cids, 'the three commands, the second and third through the shadow tail');
  e.drv.write32(Reg.DBS + 8, lateTail);
  await turns(50);
  t.equal(e.drv.peek(q), undefined, 'no completion of an entry from the last lap');
  t.equal(e.ctrl.stats().ioCommands, 3, 'exactly the three commands');
});
