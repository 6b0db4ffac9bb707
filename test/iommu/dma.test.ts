// DeviceDma: translation, rights, typed faults, scatter lists, views,
// message-backed memory, dirty logging, and memory safety across unmap.
import t from 'tap';
import { MemoryBacking } from '../../iommu/backing.js';
import { MessageBacking, type DmaMessenger } from '../../iommu/backing-message.js';
import { IommuContext } from '../../iommu/context.js';
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE } from '../../iommu/device-dma.js';
import { PAGE, errnoOfAsync, fault } from './helpers.js';

const P = BigInt(PAGE);
const BASE = 0x200000;

function setup() {
  const ctx = new IommuContext();
  const mem = new MemoryBacking(16 * PAGE);
  for (let i = 0; i < mem.size; i++) mem.bytes![i] = i & 0xff;
  const dev = ctx.addDevice('dev');
  const ioas = ctx.compatIoas;
  return { ctx, mem, dev, dma: dev.dma, ioas };
}

t.test('read and write through a mapping', async (t) => {
  const { mem, dma, ioas } = setup();
  ioas.map({ backing: mem, offset: 4 * PAGE, length: 4n * P, prot: 3, iova: BigInt(BASE) });
  const got = await dma.read(BASE + 10, 6);
  t.same([...got], [10, 11, 12, 13, 14, 15].map((x) => (4 * PAGE + x) & 0xff));
  await dma.write(BigInt(BASE + PAGE), Buffer.from([9, 8, 7]));
  t.same([...mem.bytes!.subarray(5 * PAGE, 5 * PAGE + 3)], [9, 8, 7]);
  t.equal((await dma.read(BASE, 0)).length, 0, 'zero-length read');
  got[0] = 0xee;
  t.not(mem.bytes![4 * PAGE + 10], 0xee, 'read returns a copy');
});

t.test('a range across adjacent mappings is a scatter list; a gap faults', async (t) => {
  const { mem, dma, ioas } = setup();
  ioas.map({ backing: mem, offset: 0, length: P, prot: 3, iova: BigInt(BASE) });
  ioas.map({ backing: mem, offset: 8 * PAGE, length: P, prot: 3, iova: BigInt(BASE + PAGE) });
  const got = await dma.read(BASE + PAGE - 2, 4);
  t.same([...got], [(PAGE - 2) & 0xff, (PAGE - 1) & 0xff, (8 * PAGE) & 0xff, (8 * PAGE + 1) & 0xff]);
  const segs = await dma.withView(BASE + PAGE - 2, 4, DMA_ACCESS_READ, (v) => v.map((s) => s.length));
  t.same(segs, [2, 2]);
  const f = await fault(dma.read(BASE + PAGE, 2 * PAGE));
  t.equal(f.reason, 'unmapped');
  t.equal(f.iova, BigInt(BASE + 2 * PAGE), 'fault names the first missing byte');
  t.equal(f.errno, 14, 'EFAULT');
});

t.test('rights: READ-only and WRITE-only mappings', async (t) => {
  const { mem, dma, ioas } = setup();
  ioas.map({ backing: mem, length: P, prot: 1, iova: BigInt(BASE) });
  ioas.map({ backing: mem, length: P, prot: 2, iova: BigInt(BASE + PAGE) });
  t.equal((await fault(dma.write(BASE, Buffer.from([1])))).reason, 'permission');
  t.equal((await fault(dma.read(BASE + PAGE, 1))).reason, 'permission');
  t.equal((await fault(dma.withView(BASE, 1, DMA_ACCESS_READ | DMA_ACCESS_WRITE, () => 0))).reason, 'permission');
  await dma.write(BASE + PAGE, Buffer.from([1]));
  t.equal((await dma.read(BASE, 1)).length, 1);
});

t.test('invalid requests and unattached devices fault, never crash', async (t) => {
  const { ctx, dma } = setup();
  t.equal((await fault(dma.read(-1, 1))).reason, 'invalid');
  t.equal((await fault(dma.read(0.5, 1))).reason, 'invalid');
  t.equal((await fault(dma.read(2 ** 60, 1))).reason, 'invalid', 'unsafe number: use bigint');
  t.equal((await fault(dma.read(0, -1))).reason, 'invalid');
  t.equal((await fault(dma.read((1n << 64n) - 1n, 2))).reason, 'invalid', 'wraps');
  t.equal((await fault(dma.read(BASE, 1))).reason, 'unmapped');
  t.equal((await fault(dma.read(BASE, 1, 3))).reason, 'not-attached', 'PASID 3 is not attached');
  ctx.detach('dev');
  const f = await fault(dma.write(BASE, Buffer.from([1])));
  t.equal(f.reason, 'not-attached');
  t.equal(await errnoOfAsync(() => dma.read(BASE, 1)), 'EFAULT');
});

t.test('PASID: a second IOAS with a copy at another IOVA reads the same bytes', async (t) => {
  const { ctx, mem, dma, ioas } = setup();
  ioas.map({ backing: mem, length: 8n * P, prot: 3, iova: BigInt(BASE) });
  const b = ctx.allocIoas();
  ctx.copy({ srcIoasId: ioas.id, srcIova: BigInt(BASE + PAGE), length: 2n * P, dstIoasId: b.id, dstIova: 0x7000000n, prot: 1 });
  ctx.attach('dev', b.id, 1);
  const viaRid = await dma.read(BASE + PAGE + 100, 64);
  const viaPasid = await dma.read(0x7000000 + 100, 64, 1);
  t.same(viaPasid, viaRid);
  t.equal((await fault(dma.write(0x7000000, Buffer.from([1]), 1))).reason, 'permission', 'the copy is read-only');
  t.equal((await fault(dma.read(BASE, 1, 1))).reason, 'unmapped', 'the PASID sees only its IOAS');
});

t.test('IOVAs above 2^53 as bigint', async (t) => {
  const { mem, dma, ioas } = setup();
  const hi = (1n << 63n) + 7n * P;
  ioas.map({ backing: mem, offset: 2 * PAGE, length: 2n * P, prot: 3, iova: hi });
  await dma.write(hi + P + 3n, Buffer.from([0x5a, 0xa5]));
  t.same([...mem.bytes!.subarray(3 * PAGE + 3, 3 * PAGE + 5)], [0x5a, 0xa5]);
  t.same([...(await dma.read(hi + P + 3n, 2))], [0x5a, 0xa5]);
  const top = (1n << 64n) - P;
  ioas.map({ backing: mem, length: P, prot: 3, iova: top });
  t.equal((await dma.read((1n << 64n) - 1n, 1)).length, 1, 'the last byte of the IOVA space');
});

t.test('withView: zero-copy views, dirty logging of writes', async (t) => {
  const { mem, dma, ioas } = setup();
  ioas.map({ backing: mem, length: 4n * P, prot: 3, iova: BigInt(BASE) });
  ioas.dirtyStart();
  await dma.withView(BASE + 2 * PAGE, 8, DMA_ACCESS_WRITE, (v) => {
    v[0].fill(0x77);
  });
  t.same([...mem.bytes!.subarray(2 * PAGE, 2 * PAGE + 8)], Array(8).fill(0x77), 'the view is the memory');
  const bm = ioas.dirtyReport(BigInt(BASE), 4n * P);
  t.equal(bm[0], 0b0100);
  t.equal(dma.mappedView(BASE, 4, DMA_ACCESS_READ)![1], 1);
  await dma.write(BASE + 3 * PAGE, Buffer.from([1]));
  t.equal(ioas.dirtyReport(BigInt(BASE), 4n * P, 2 * PAGE)[0], 0b10, 'coarser report page size');
});

t.test('unmap while a view is in use: the table changes at once, the memory goes when the view ends', async (t) => {
  const { mem, dma, ioas } = setup();
  ioas.map({ backing: mem, length: 2n * P, prot: 3, iova: BigInt(BASE) });
  mem.release(); // the IOAS area holds the only reference now
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let stale: Uint8Array | null = null;
  const inFlight = dma.withView(BASE, 16, DMA_ACCESS_WRITE, async (v) => {
    stale = v[0];
    await gate;
    v[0][0] = 42; // still valid: the memory is not gone yet
    return v[0][0];
  });
  await new Promise((r) => setImmediate(r));
  const u = ioas.unmap(BigInt(BASE), 2n * P);
  t.equal(u.length, 2n * P);
  t.equal((await fault(dma.read(BASE, 1))).reason, 'unmapped', 'no new access reaches the range');
  t.equal(mem.disposed, false, 'memory kept while the view is in flight');
  let drained = false;
  void u.drained.then(() => (drained = true));
  await new Promise((r) => setImmediate(r));
  t.equal(drained, false, 'drained waits for the view');
  release();
  t.equal(await inFlight, 42);
  await u.drained;
  t.equal(mem.disposed, true, 'released after the last user');
  t.equal(stale!.length, 0, 'a stale view is detached: it reads nothing and cannot reach the memory');
  t.equal(stale![0], undefined);
});

class FakeClient implements DmaMessenger {
  readonly maxChunk = 100;
  readonly mem = Buffer.alloc(4 * PAGE);
  log: string[] = [];
  fail = false;
  constructor(readonly base: bigint) {}
  async read(addr: bigint, len: number): Promise<Buffer> {
    this.log.push(`R${addr - this.base}+${len}`);
    await new Promise((r) => setImmediate(r));
    if (this.fail) throw new Error('client gone');
    const off = Number(addr - this.base);
    return Buffer.from(this.mem.subarray(off, off + len));
  }
  async write(addr: bigint, data: Uint8Array): Promise<void> {
    this.log.push(`W${addr - this.base}+${data.length}`);
    await new Promise((r) => setImmediate(r));
    if (this.fail) throw new Error('client gone');
    this.mem.set(data, Number(addr - this.base));
  }
}

t.test('message-backed memory: chunked, asynchronous, bounced views', async (t) => {
  const { dma, ioas } = setup();
  const client = new FakeClient(0x80000000n);
  for (let i = 0; i < client.mem.length; i++) client.mem[i] = (i * 7) & 0xff;
  const b = new MessageBacking(client, client.base, 4 * PAGE);
  ioas.map({ backing: b, length: 4n * P, prot: 3, iova: BigInt(BASE) });
  b.release();
  const got = await dma.read(BASE + 50, 250);
  t.same([...got], [...client.mem.subarray(50, 300)]);
  t.same(client.log, ['R50+100', 'R150+100', 'R250+50']);
  client.log = [];
  await dma.write(BASE + 10, Buffer.alloc(150, 1));
  t.same(client.log, ['W10+100', 'W110+50'], 'writes in order, chunked');
  t.equal(client.mem[159], 1);
  client.log = [];
  await dma.withView(BASE, 4, DMA_ACCESS_READ | DMA_ACCESS_WRITE, (v) => {
    v[0][0] = v[0][0] + 1;
  });
  t.same(client.log, ['R0+4', 'W0+4'], 'bounce: read before, write back after');
  t.equal(dma.mappedView(BASE, 4, DMA_ACCESS_READ), null, 'memory reached by messages has no view');
  client.fail = true;
  const f = await fault(dma.read(BASE, 10));
  t.equal(f.reason, 'io');
});
