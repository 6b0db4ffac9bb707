// Device-level faults and deterministic mode, through the real server and
// the raw client playing QEMU and the virtio driver (socket-rig): a DMA
// fault on an IOVA range (virtio-rng, and one page of a virtio-blk read),
// virtio-blk IOERR/UNSUPP on a sector range and on
// the Nth request, a lost and a late interrupt, DEVICE_NEEDS_RESET, and
// virtio-rng's output fixed by the seed, virtio-blk's completions in order.
import t, { type Test } from 'tap';
import path from 'node:path';
import * as native from '../../native/index.js';
import { BlkStatus, BlkType } from '../../devices/virtio-blk/constants.js';
import { MAX_BLOCKING_WRITE } from '../../devices/block/blocking-writes.js';
import { Common, Status } from '../../devices/virtio/constants.js';
import { Layout, VIRTIO_BAR } from '../../devices/virtio/transport.js';
import type { DriverRing } from '../devices/virtio/env.js';
import { until } from '../devices/virtio/env.js';
import { bringUp, post, read, rig, submitBlk, type Rig } from '../devices/virtio/socket-rig.js';
import { counts } from './helpers.js';
import { sleep } from '../conformance/helpers.js';

const MiB = 1 << 20;

async function rngRig(t: Test, more: { deterministic?: number } = {}): Promise<{ r: Rig; ring: DriverRing }> {
  const r = await rig(t, 'memfd', { name: 'rng0', kind: 'rng', options: () => ({}), faults: [], ...more });
  return { r, ring: await bringUp(r) };
}

/** One writable buffer of `len` bytes through virtio-rng; resolves with its address and used length. */
async function entropy(r: Rig, ring: DriverRing, len: number): Promise<{ addr: number; used: number }> {
  const addr = r.mem.alloc(len, 4096);
  const before = ring.usedIdx;
  ring.usedEvent = before;
  ring.push(ring.chain([{ addr, len, write: true }]));
  post(r.c, VIRTIO_BAR, Layout.NOTIFY, 2, 0);
  await until(() => ring.usedIdx === before + 1, 'used', 5000);
  const [u] = ring.takeUsed();
  return { addr, used: u!.len };
}

/** 4 KiB and 100 bytes of virtio-rng output, hex, from a fresh server. */
async function rngOutput(t: Test, deterministic?: number): Promise<string> {
  let out = '';
  await t.test(`rng output, seed ${deterministic ?? 'none'}`, async (t) => {
    const { r, ring } = await rngRig(t, deterministic === undefined ? {} : { deterministic });
    for (const len of [4096, 100]) {
      const e = await entropy(r, ring, len);
      t.equal(e.used, len);
      out += r.mem.read(e.addr, len).toString('hex');
    }
  });
  return out;
}

t.test('deterministic mode: the same seed gives the same virtio-rng bytes, another seed others', async (t) => {
  const a = await rngOutput(t, 1);
  const b = await rngOutput(t, 1);
  const c = await rngOutput(t, 2);
  const free1 = await rngOutput(t);
  const free2 = await rngOutput(t);
  t.equal(a, b, 'seed 1 twice: identical');
  t.not(a, c, 'seed 2: different');
  t.not(free1, free2, 'without a seed: different every run');
  t.ok(new Set(Buffer.from(a, 'hex')).size > 200, 'seeded bytes still look random');
});

t.test('deterministic mode: virtio-blk publishes completions in the order the requests were made available', async (t) => {
  const r = await rig(t, 'memfd', { name: 'blk0', kind: 'blk', options: (dir) => ({ disk: path.join(dir, 'disk.img'), size: 16 * MiB }), deterministic: 3 });
  const ring = await bringUp(r);
  ring.usedEvent = 0;
  // A write too large to block the loop (the thread pool), then a read served at once.
  const data = Buffer.alloc(MAX_BLOCKING_WRITE + MiB / 2, 0x5c);
  const w = submitBlk(r, ring, BlkType.OUT, 0, { out: data });
  const rd = submitBlk(r, ring, BlkType.IN, 16_000, { inLen: 4096 });
  await until(() => ring.usedIdx === 2, 'both used', 10_000);
  t.same(ring.takeUsed().map((u) => u.len), [1, 4097], 'the write first, then the read (its 4 KiB and status)');
  t.equal(r.mem.read(w.st, 1)[0], BlkStatus.OK, 'the write succeeded');
  t.equal(r.mem.read(rd.st, 1)[0], BlkStatus.OK, 'the read succeeded');
});

t.test('DMA fault on an IOVA range: that request gets used length 0, another range is served', async (t) => {
  const { r, ring } = await rngRig(t);
  const faults = r.rt.faults!;
  const target = r.mem.alloc(4096, 4096);
  faults.add({ id: 'd', match: { iova: [target, target + 4096], access: 'write' }, action: { type: 'dma-fault' } });
  const before = ring.usedIdx;
  ring.usedEvent = before;
  ring.push(ring.chain([{ addr: target, len: 64, write: true }]));
  post(r.c, VIRTIO_BAR, Layout.NOTIFY, 2, 0);
  await until(() => ring.usedIdx === before + 1, 'used');
  t.same(ring.takeUsed().map((u) => u.len), [0], 'the faulted request: used length 0');
  t.ok(r.mem.read(target, 64).every((b) => b === 0), 'nothing written there');
  const ok = await entropy(r, ring, 64);
  t.equal(ok.used, 64, 'another range is served');
  t.same(counts(faults, 'd'), { matched: 1, injected: 1 });
  t.same(faults.list().injected, { rng0: { 'dma-fault': 1 } });
});

t.test('a lost interrupt is never signalled; a late one comes later', async (t) => {
  const { r, ring } = await rngRig(t);
  const faults = r.rt.faults!;
  const queueFd = r.efds[0]!;
  faults.add({ id: 'lose', match: { irq: 'msix', vector: 0 }, times: 1, action: { type: 'irq-lose' } });
  await entropy(r, ring, 16);
  await sleep(300);
  t.equal(native.eventfdRead(queueFd), -native.EAGAIN, 'the completion was not signalled');
  await entropy(r, ring, 16);
  await until(() => native.eventfdRead(queueFd) > 0, 'the next completion is signalled');
  t.same(counts(faults, 'lose'), { matched: 2, injected: 1 }, 'both interrupts matched, only the first was lost (times: 1)');

  faults.add({ id: 'late', match: { irq: 2, vector: 0 }, times: 1, action: { type: 'irq-delay', ms: 1000 } });
  await entropy(r, ring, 16);
  await sleep(200);
  t.equal(native.eventfdRead(queueFd), -native.EAGAIN, 'not yet (a lower bound: the timer cannot fire early)');
  await until(() => native.eventfdRead(queueFd) > 0, 'the late interrupt', 5000);
  t.same(counts(faults, 'late'), { matched: 1, injected: 1 });
});

t.test('needs-reset: the virtio device sets DEVICE_NEEDS_RESET and signals a config change', async (t) => {
  const { r } = await rngRig(t);
  const status = Layout.COMMON + Common.DEVICE_STATUS;
  r.rt.faults!.add({ id: 'nr', match: { command: 'REGION_READ', region: VIRTIO_BAR, offset: [Layout.COMMON + Common.DEVICE_STATUS, Layout.COMMON + Common.DEVICE_STATUS + 1] }, times: 1, action: { type: 'needs-reset' } });
  t.ok((await read(r.c, VIRTIO_BAR, status, 1)) & Status.DEVICE_NEEDS_RESET, 'the status read that triggered it sees the bit');
  await until(() => native.eventfdRead(r.efds[1]!) > 0, 'config interrupt');
  t.ok((await read(r.c, VIRTIO_BAR, status, 1)) & Status.DEVICE_NEEDS_RESET, 'it stays until the driver resets');
  t.same(counts(r.rt.faults!, 'nr'), { matched: 2, injected: 1 }, 'both status reads matched; it fired once');
});

/** One virtio-blk request, waited for: its status byte and where its data-in buffer is. */
async function blkRequest(r: Rig, ring: DriverRing, type: number, sector: number, io: { out?: Buffer; inLen?: number }): Promise<{ status: number; din: number }> {
  const before = ring.usedIdx;
  ring.usedEvent = before;
  const s = submitBlk(r, ring, type, sector, io);
  await until(() => ring.usedIdx === before + 1, 'used');
  ring.takeUsed();
  return { status: r.mem.read(s.st, 1)[0]!, din: s.din };
}

t.test('virtio-blk: a DMA fault on one page of a read is IOERR, nothing written; other reads served in place', async (t) => {
  const r = await rig(t, 'memfd', { name: 'blk0', kind: 'blk', options: (dir) => ({ disk: path.join(dir, 'disk.img'), size: 16 * MiB }), faults: [] });
  const ring = await bringUp(r);
  const blk = (type: number, sector: number, io: { out?: Buffer; inLen?: number }) => blkRequest(r, ring, type, sector, io);
  t.equal((await blk(BlkType.OUT, 64, { out: Buffer.alloc(16384, 0x5a) })).status, BlkStatus.OK, 'data written');
  // submitBlk's next allocations: the header at `at`, the data from the next page on.
  const at = r.mem.alloc(0, 4096);
  const third = at + 4096 + 2 * 4096;
  r.rt.faults!.add({ id: 'page', match: { iova: [third, third + 4096], access: 'write' }, action: { type: 'dma-fault' } });
  const bad = await blk(BlkType.IN, 64, { inLen: 16384 });
  t.equal(bad.din, at + 4096, 'the data pages are where the rule expects them');
  t.equal(bad.status, BlkStatus.IOERR, 'the faulted read: IOERR');
  t.ok(r.mem.read(bad.din, 16384).every((b) => b === 0), 'not one byte of it written');
  const good = await blk(BlkType.IN, 64, { inLen: 16384 });
  t.equal(good.status, BlkStatus.OK, 'a read elsewhere is served');
  t.ok(r.mem.read(good.din, 16384).every((b) => b === 0x5a), 'with the data');
  t.same(counts(r.rt.faults!, 'page'), { matched: 1, injected: 1 });
});

t.test('virtio-blk: IOERR on a sector range, UNSUPP on the Nth write, other requests served', async (t) => {
  const r = await rig(t, 'memfd', {
    name: 'blk0', kind: 'blk', options: (dir) => ({ disk: path.join(dir, 'disk.img'), size: 16 * MiB }),
    faults: [
      { id: 'bad', match: { lba: [16, 24], op: 'read' }, action: { type: 'blk-status', status: 'ioerr' } },
      { id: 'second-write', match: { op: 'write' }, nth: 2, action: { type: 'blk-status', status: 'unsupp' } },
    ],
  });
  const ring = await bringUp(r);
  const statuses: number[] = [];
  const one = async (type: number, sector: number, io: { out?: Buffer; inLen?: number }) => void statuses.push((await blkRequest(r, ring, type, sector, io)).status);
  await one(BlkType.IN, 8, { inLen: 4096 }); // [8, 16): just below
  await one(BlkType.IN, 12, { inLen: 4096 }); // [12, 20): overlaps
  await one(BlkType.IN, 23, { inLen: 512 }); // [23, 24): the last sector
  await one(BlkType.IN, 24, { inLen: 4096 }); // just above
  await one(BlkType.OUT, 16, { out: Buffer.alloc(4096, 1) }); // writes are not in the first rule
  await one(BlkType.OUT, 100, { out: Buffer.alloc(512, 2) }); // the 2nd write
  await one(BlkType.OUT, 200, { out: Buffer.alloc(512, 3) });
  t.same(statuses, [BlkStatus.OK, BlkStatus.IOERR, BlkStatus.IOERR, BlkStatus.OK, BlkStatus.OK, BlkStatus.UNSUPP, BlkStatus.OK]);
  t.same(counts(r.rt.faults!, 'bad'), { matched: 2, injected: 2 });
  t.same(counts(r.rt.faults!, 'second-write'), { matched: 3, injected: 1 });
  t.same(r.rt.faults!.list().injected, { blk0: { 'blk-status': 3 } });
});
