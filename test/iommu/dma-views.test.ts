// DeviceDma.withViews: many ranges translated in one call (a descriptor
// chain's buffers), adjacent pieces of one mapping merged, one fault for a
// bad range (before fn runs, nothing left held), and unmap safety.
import t from 'tap';
import { MemoryBacking } from '../../iommu/backing.js';
import { MessageBacking, type DmaMessenger } from '../../iommu/backing-message.js';
import { IommuContext } from '../../iommu/context.js';
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, type Iova, type SpanBuffer } from '../../iommu/device-dma.js';
import { PAGE, fault } from './helpers.js';

const P = BigInt(PAGE);
const BASE = 0x200000;

function setup() {
  const ctx = new IommuContext();
  const mem = new MemoryBacking(16 * PAGE);
  for (let i = 0; i < mem.size; i++) mem.bytes![i] = (i * 3) & 0xff;
  const dev = ctx.addDevice('dev');
  return { ctx, mem, dev, dma: dev.dma, ioas: ctx.compatIoas };
}

/** Where a view points in the backing (views alias the memory). */
const where = (mem: MemoryBacking, v: Uint8Array) => ({ at: v.byteOffset - mem.bytes!.byteOffset, n: v.length });

t.test('adjacent ranges merge into one view; gaps, other areas and order are kept', async (t) => {
  const { mem, dma, ioas } = setup();
  // [BASE, +4 pages) -> backing pages 0..3; [BASE+4 pages, +2) -> backing pages 8..9
  ioas.map({ backing: mem, offset: 0, length: 4n * P, prot: 3, iova: BigInt(BASE) });
  ioas.map({ backing: mem, offset: 8 * PAGE, length: 2n * P, prot: 3, iova: BigInt(BASE + 4 * PAGE) });
  const iovas: Iova[] = [BASE, BASE + PAGE, BASE + 3 * PAGE, BASE + 3 * PAGE + 100, BigInt(BASE + 4 * PAGE), BASE + 2 * PAGE];
  const lens = [PAGE, 512, 100, PAGE - 100, PAGE, 8];
  const segs = await dma.withViews(iovas, lens, DMA_ACCESS_READ, (v) => v.map((s) => where(mem, s)));
  t.same(segs, [
    { at: 0, n: PAGE + 512 }, // two adjacent ranges: one view
    { at: 3 * PAGE, n: PAGE }, // a gap before, then two adjacent pieces of one page
    { at: 8 * PAGE, n: PAGE }, // the next area (another backing offset): its own view
    { at: 2 * PAGE, n: 8 }, // out of order: not merged backwards
  ]);
  const bytes = await dma.withViews([BASE + 10, BASE + 20], [4, 4], DMA_ACCESS_READ, (v) => Buffer.concat(v.map((s) => Buffer.from(s))));
  t.same([...bytes], [10, 11, 12, 13, 20, 21, 22, 23].map((i) => (i * 3) & 0xff), 'the views hold the memory');
  t.same(await dma.withViews([BASE + PAGE - 2], [4], DMA_ACCESS_READ, (v) => v.length), 1, 'one mapping, one view');
  t.same(await dma.withViews([BASE + 4 * PAGE - 2], [4], DMA_ACCESS_READ, (v) => v.map((s) => s.length)), [2, 2], 'a range across two mappings: two views');
  t.same(await dma.withViews([], [], DMA_ACCESS_READ, (v) => v.length), 0, 'no ranges: fn([])');
  t.same(await dma.withViews([BASE, 0x7000_0000], [8, 0], DMA_ACCESS_READ, (v) => v.map((s) => s.length)), [8], 'a zero-length range is skipped, even unmapped');
});

t.test('writes reach the memory; dirty logging covers every range', async (t) => {
  const { mem, dma, ioas } = setup();
  ioas.map({ backing: mem, length: 8n * P, prot: 3, iova: BigInt(BASE) });
  ioas.dirtyStart();
  await dma.withViews([BASE + PAGE, BASE + 5 * PAGE + 7], [3, 2], DMA_ACCESS_WRITE, (v) => {
    for (const s of v) s.fill(0xee);
  });
  t.same([...mem.bytes!.subarray(PAGE, PAGE + 4)], [0xee, 0xee, 0xee, (PAGE + 3) * 3 & 0xff]);
  t.same([...mem.bytes!.subarray(5 * PAGE + 7, 5 * PAGE + 9)], [0xee, 0xee]);
  t.equal(ioas.dirtyReport(BigInt(BASE), 8n * P)[0], 0b100010, 'pages 1 and 5 dirty');
});

t.test('a bad range anywhere in the list: DmaFault before fn, nothing held', async (t) => {
  const { mem, dma, ioas } = setup();
  ioas.map({ backing: mem, length: 4n * P, prot: 3, iova: BigInt(BASE) });
  ioas.map({ backing: mem, offset: 4 * PAGE, length: P, prot: DMA_ACCESS_READ, iova: BigInt(BASE + 8 * PAGE) });
  let ran = 0;
  const fn = () => void ran++;
  const cases: { name: string; iovas: Iova[]; lens: number[]; access?: number; reason: string; iova?: bigint }[] = [
    { name: 'unmapped (last of many)', iovas: [BASE, BASE + PAGE, BASE + 5 * PAGE], lens: [PAGE, PAGE, 16], reason: 'unmapped', iova: BigInt(BASE + 5 * PAGE) },
    { name: 'runs past the mapping', iovas: [BASE, BASE + 3 * PAGE], lens: [16, 2 * PAGE], reason: 'unmapped', iova: BigInt(BASE + 4 * PAGE) },
    { name: 'read-only mapping, DMA_ACCESS_WRITE', iovas: [BASE, BASE + 8 * PAGE], lens: [16, 16], access: DMA_ACCESS_WRITE, reason: 'permission' },
    { name: 'negative length', iovas: [BASE, BASE + 16], lens: [16, -1], reason: 'invalid' },
    { name: 'fractional length', iovas: [BASE], lens: [1.5], reason: 'invalid' },
    { name: 'unsafe number IOVA', iovas: [BASE, 2 ** 60], lens: [1, 1], reason: 'invalid' },
    { name: 'negative IOVA', iovas: [-4096], lens: [1], reason: 'invalid' },
    { name: 'IOVA past 2^64', iovas: [BASE, (1n << 64n) - 1n], lens: [1, 2], reason: 'invalid' },
    { name: 'a string as IOVA', iovas: ['0x1000' as unknown as Iova], lens: [1], reason: 'invalid' },
    { name: 'fewer lengths than IOVAs', iovas: [BASE, BASE + 16], lens: [16], reason: 'invalid' },
    { name: 'bad access', iovas: [BASE], lens: [16], access: 4, reason: 'invalid' },
  ];
  for (const c of cases) {
    const f = await fault(dma.withViews(c.iovas, c.lens, c.access ?? DMA_ACCESS_READ, fn));
    t.equal(f.reason, c.reason, c.name);
    t.equal(f.errno, 14, `${c.name}: EFAULT`);
    if (c.iova !== undefined) t.equal(f.iova, c.iova, `${c.name}: names the first missing byte`);
  }
  t.equal(ran, 0, 'fn never ran');
  const u = ioas.unmap(BigInt(BASE), 4n * P);
  t.equal(u.length, 4n * P);
  let drained = false;
  void u.drained.then(() => (drained = true));
  await new Promise((r) => setImmediate(r));
  t.equal(drained, true, 'no hold was left behind by the faults');
  const detached = new IommuContext().addDevice('lonely', { attach: false });
  t.equal((await fault(detached.dma.withViews([BASE], [1], DMA_ACCESS_READ, fn))).reason, 'not-attached');
});

t.test('unmap while the views are in use: memory kept until fn settles', async (t) => {
  const { mem, dma, ioas } = setup();
  ioas.map({ backing: mem, length: 2n * P, prot: 3, iova: BigInt(BASE) });
  ioas.map({ backing: mem, offset: 4 * PAGE, length: 2n * P, prot: 3, iova: BigInt(BASE + 4 * PAGE) });
  mem.release(); // the areas hold the only references now
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const stale: Uint8Array[] = [];
  const inFlight = dma.withViews([BASE, BASE + PAGE, BASE + 4 * PAGE], [PAGE, PAGE, 16], DMA_ACCESS_WRITE, async (v) => {
    stale.push(...v);
    await gate;
    for (const s of v) s[0] = 42; // still valid: nothing is unmapped for real yet
    return v.length;
  });
  await new Promise((r) => setImmediate(r));
  const u1 = ioas.unmap(BigInt(BASE), 2n * P);
  const u2 = ioas.unmap(BigInt(BASE + 4 * PAGE), 2n * P);
  let drained = false;
  void Promise.all([u1.drained, u2.drained]).then(() => (drained = true));
  await new Promise((r) => setImmediate(r));
  t.equal(drained, false, 'the unmaps wait for the views');
  t.equal(mem.disposed, false);
  release();
  t.equal(await inFlight, 2, 'two views (the first two ranges merged)');
  await Promise.all([u1.drained, u2.drained]);
  t.equal(mem.disposed, true, 'memory released after the last user');
  t.same(stale.map((s) => s.length), [0, 0], 'stale views are detached: they reach nothing');
});

t.test('memory reached by messages: bounced per view, written back for DMA_ACCESS_WRITE', async (t) => {
  const { dma, ioas } = setup();
  const remote = Buffer.alloc(4 * PAGE);
  const log: string[] = [];
  const messenger: DmaMessenger = {
    maxChunk: 1 << 20,
    async read(addr, len) {
      log.push(`R${addr}+${len}`);
      return Buffer.from(remote.subarray(Number(addr), Number(addr) + len));
    },
    async write(addr, data) {
      log.push(`W${addr}+${data.length}`);
      remote.set(data, Number(addr));
    },
  };
  const b = new MessageBacking(messenger, 0n, 4 * PAGE);
  ioas.map({ backing: b, length: 4n * P, prot: 3, iova: BigInt(BASE) });
  b.release();
  await dma.withViews([BASE + 8, BASE + 12, BASE + PAGE], [4, 4, 2], DMA_ACCESS_READ | DMA_ACCESS_WRITE, (v) => {
    for (const s of v) s.fill(9);
  });
  t.same(log, ['R8+8', 'R4096+2', 'W8+8', 'W4096+2'], 'merged, read before, written back after');
  t.same([...remote.subarray(7, 17)], [0, 9, 9, 9, 9, 9, 9, 9, 9, 0]);
});

t.test('mappedView: in-place bytes of directly mapped memory, null for everything else', async (t) => {
  const { mem, dma, ioas } = setup();
  ioas.map({ backing: mem, offset: 0, length: 4n * P, prot: 3, iova: BigInt(BASE) });
  ioas.map({ backing: mem, offset: 8 * PAGE, length: P, prot: 1, iova: BigInt(BASE + 4 * PAGE) });
  const v = dma.mappedView(BASE + 10, 4, DMA_ACCESS_READ)!;
  t.same([...v], [10, 11, 12, 13].map((i) => (i * 3) & 0xff), 'the bytes at the IOVA');
  t.same(where(mem, v), { at: 10, n: 4 }, 'a view of the memory itself, not a copy');
  ioas.dirtyStart();
  dma.mappedView(BASE + 2 * PAGE + 1, 2, DMA_ACCESS_WRITE)!.fill(0xab);
  t.same([...mem.bytes!.subarray(2 * PAGE, 2 * PAGE + 4)], [(2 * PAGE * 3) & 0xff, 0xab, 0xab, ((2 * PAGE + 3) * 3) & 0xff], 'writes land in place');
  t.equal(ioas.dirtyReport(BigInt(BASE), 4n * P)[0], 0b100, 'a writable view counts as a write for dirty tracking');
  t.ok(dma.mappedView(BASE + 4 * PAGE, 8, DMA_ACCESS_READ), 'a read-only mapping can be read');

  // Everything else: null, and the general path says what is wrong.
  t.equal(dma.mappedView(BASE + 4 * PAGE, 8, DMA_ACCESS_WRITE), null, 'no WRITE right');
  t.equal((await fault(dma.write(BASE + 4 * PAGE, Buffer.alloc(8)))).reason, 'permission');
  t.equal(dma.mappedView(BASE + 4 * PAGE - 2, 4, DMA_ACCESS_READ), null, 'a range across two mappings');
  t.equal(dma.mappedView(0x7000_0000, 4, DMA_ACCESS_READ), null, 'unmapped');
  t.equal((await fault(dma.read(0x7000_0000, 4))).reason, 'unmapped');
  t.equal(dma.mappedView(BigInt(BASE), 4, DMA_ACCESS_READ), null, 'a bigint IOVA');
  for (const len of [0, -1, 1.5, NaN, 2 ** 60]) t.equal(dma.mappedView(BASE, len, DMA_ACCESS_READ), null, `length ${len}`);
  for (const iova of [-1, 0.5, 2 ** 60, NaN]) t.equal(dma.mappedView(iova, 4, DMA_ACCESS_READ), null, `iova ${iova}`);
  for (const access of [0, 4, DMA_ACCESS_READ | 8]) t.equal(dma.mappedView(BASE, 4, access), null, `access ${access}`);

  const messenger: DmaMessenger = { maxChunk: PAGE, read: async (_a, len) => Buffer.alloc(len), write: async () => {} };
  const b = new MessageBacking(messenger, 0n, PAGE);
  ioas.map({ backing: b, length: P, prot: 3, iova: 0x900000n });
  b.release();
  t.equal(dma.mappedView(0x900000, 4, DMA_ACCESS_READ), null, 'memory reached by messages');
  const { ctx } = setup();
  t.equal(ctx.addDevice('lonely').dma.mappedView(BASE, 4, DMA_ACCESS_READ), null, 'a device attached to nothing');
});

t.test('mappedWindow: a whole mapping as one view, null where each access must be seen', async (t) => {
  const { mem, dma, ioas } = setup();
  ioas.map({ backing: mem, offset: PAGE, length: 4n * P, prot: 3, iova: BigInt(BASE) });
  ioas.map({ backing: mem, offset: 8 * PAGE, length: P, prot: 1, iova: BigInt(BASE + 4 * PAGE) });
  const w = dma.mappedWindow(BASE + 2 * PAGE + 5, DMA_ACCESS_READ | DMA_ACCESS_WRITE)!;
  t.equal(w.iova, BASE, 'starts at the mapping, whatever IOVA inside it was asked for');
  t.same(where(mem, w.bytes), { at: PAGE, n: 4 * PAGE }, 'the mapping itself, not a copy');
  t.equal(w.bytes[BASE + 3 * PAGE + 7 - w.iova], ((PAGE + 3 * PAGE + 7) * 3) & 0xff, 'bytes[i] is the byte at IOVA iova + i');
  t.equal(dma.mappedWindow(BASE + 4 * PAGE, DMA_ACCESS_READ)!.bytes.length, PAGE, 'a read-only mapping, for reading');
  t.equal(dma.mappedWindow(BASE + 4 * PAGE, DMA_ACCESS_WRITE), null, 'no WRITE right');
  t.equal(dma.mappedWindow(0x7000_0000, DMA_ACCESS_READ), null, 'unmapped');
  t.equal(dma.mappedWindow(BigInt(BASE), DMA_ACCESS_READ), null, 'a bigint IOVA');
  for (const iova of [-1, 0.5, 2 ** 60, NaN]) t.equal(dma.mappedWindow(iova, DMA_ACCESS_READ), null, `iova ${iova}`);
  for (const access of [0, 4, DMA_ACCESS_READ | 8]) t.equal(dma.mappedWindow(BASE, access), null, `access ${access}`);
  ioas.dirtyStart();
  t.equal(dma.mappedWindow(BASE, DMA_ACCESS_READ), null, 'dirty tracking on: every write must be seen');
  ioas.dirtyStop();
  t.ok(dma.mappedWindow(BASE, DMA_ACCESS_READ), 'and off again');
  const messenger: DmaMessenger = { maxChunk: PAGE, read: async (_a, len) => Buffer.alloc(len), write: async () => {} };
  const b = new MessageBacking(messenger, 0n, PAGE);
  ioas.map({ backing: b, length: P, prot: 3, iova: 0x900000n });
  b.release();
  t.equal(dma.mappedWindow(0x900000, DMA_ACCESS_READ), null, 'memory reached by messages');
  const { ctx } = setup();
  t.equal(ctx.addDevice('lonely').dma.mappedWindow(BASE, DMA_ACCESS_READ), null, 'a device attached to nothing');
});

t.test('mappedSpans: a slice of a scatter list as spans of mapped memory, false for everything else', async (t) => {
  const { mem, dma, ioas } = setup();
  ioas.map({ backing: mem, offset: 0, length: 4n * P, prot: 3, iova: BigInt(BASE) });
  ioas.map({ backing: mem, offset: 8 * PAGE, length: 2n * P, prot: 1, iova: BigInt(BASE + 4 * PAGE) });
  const base = mem.bytes!.byteOffset;
  const out: SpanBuffer = { buffers: [new ArrayBuffer(1)], spans: new Float64Array(3), count: 7 };
  const spans = () => [...out.spans.subarray(0, 3 * out.count)];
  // A 16-byte header, two data pages (adjacent: one span), data in a later
  // page, and a status byte after it in the same range: skip the header, stop
  // before the status byte.
  const iovas: Iova[] = [BASE, BASE + PAGE, BASE + 2 * PAGE, BASE + 3 * PAGE + 8];
  const lens = [16, PAGE, PAGE, 101];
  t.ok(dma.mappedSpans(iovas, lens, 16, 2 * PAGE + 100, DMA_ACCESS_WRITE, out), 'all mapped, writable');
  t.same(out.buffers, [mem.bytes!.buffer], 'the memory itself, one buffer (what was in out is dropped)');
  t.same(spans(), [0, base + PAGE, 2 * PAGE, 0, base + 3 * PAGE + 8, 100], 'adjacent pieces merged, the slice honoured');
  t.ok(out.spans.length >= 6, 'the full span array replaced by a larger one');
  t.ok(dma.mappedSpans(iovas, lens, 10, 10, DMA_ACCESS_READ, out), 'a slice across the first two ranges');
  t.same(spans(), [0, base + 10, 6, 0, base + PAGE, 4], 'the tail of one range and the head of the next');
  t.ok(dma.mappedSpans([BASE + 4 * PAGE, BASE], [8, 8], 0, 16, DMA_ACCESS_READ, out), 'a read-only mapping can be read');
  t.same(spans(), [0, base + 8 * PAGE, 8, 0, base, 8], 'order kept, not merged backwards');

  ioas.dirtyStart();
  t.ok(dma.mappedSpans([BASE + PAGE, BASE + 3 * PAGE], [4, 4], 0, 8, DMA_ACCESS_WRITE, out));
  t.equal(ioas.dirtyReport(BigInt(BASE), 4n * P)[0], 0b1010, 'writable spans count as writes for dirty tracking');

  // Everything else: false, and the general path says what is wrong.
  t.notOk(dma.mappedSpans([BASE, BASE + 4 * PAGE], [8, 8], 0, 16, DMA_ACCESS_WRITE, out), 'no WRITE right on one range');
  t.equal((await fault(dma.withSpans([BASE, BASE + 4 * PAGE], [8, 8], DMA_ACCESS_WRITE, () => 0))).reason, 'permission');
  t.notOk(dma.mappedSpans([BASE + 4 * PAGE - 2], [4], 0, 4, DMA_ACCESS_READ, out), 'a range across two mappings');
  t.notOk(dma.mappedSpans([BASE, 0x7000_0000], [8, 8], 0, 16, DMA_ACCESS_READ, out), 'an unmapped range');
  t.ok(dma.mappedSpans([BASE, 0x7000_0000], [8, 8], 0, 8, DMA_ACCESS_READ, out), 'past the slice, nothing is looked at');
  t.notOk(dma.mappedSpans([BigInt(BASE)], [8], 0, 8, DMA_ACCESS_READ, out), 'a bigint IOVA');
  t.notOk(dma.mappedSpans([BASE], [8], 0, 9, DMA_ACCESS_READ, out), 'a slice longer than the ranges');
  t.notOk(dma.mappedSpans([BASE], [8], 8, 1, DMA_ACCESS_READ, out), 'a slice past the ranges');
  for (const len of [-1, 1.5, NaN, 2 ** 60]) t.notOk(dma.mappedSpans([BASE], [len], 0, 4, DMA_ACCESS_READ, out), `range length ${len}`);
  for (const len of [0, -1, 1.5, NaN]) t.notOk(dma.mappedSpans([BASE], [8], 0, len, DMA_ACCESS_READ, out), `slice length ${len}`);
  for (const skip of [-1, 0.5, NaN]) t.notOk(dma.mappedSpans([BASE], [8], skip, 4, DMA_ACCESS_READ, out), `skip ${skip}`);
  for (const iova of [-1, 0.5, 2 ** 60, NaN]) t.notOk(dma.mappedSpans([iova], [8], 0, 8, DMA_ACCESS_READ, out), `iova ${iova}`);
  for (const access of [0, 4, DMA_ACCESS_READ | 8]) t.notOk(dma.mappedSpans([BASE], [8], 0, 8, access, out), `access ${access}`);
  const messenger: DmaMessenger = { maxChunk: PAGE, read: async (_a, len) => Buffer.alloc(len), write: async () => {} };
  const b = new MessageBacking(messenger, 0n, PAGE);
  ioas.map({ backing: b, length: P, prot: 3, iova: 0x900000n });
  b.release();
  t.notOk(dma.mappedSpans([BASE, 0x900000], [8, 8], 0, 16, DMA_ACCESS_READ, out), 'memory reached by messages');
  const { ctx } = setup();
  t.notOk(ctx.addDevice('lonely').dma.mappedSpans([BASE], [8], 0, 8, DMA_ACCESS_READ, out), 'a device attached to nothing');

  // Many ranges in two buffers: the span array grows, each range its own span.
  const other = new MemoryBacking(4 * PAGE);
  ioas.map({ backing: other, length: 4n * P, prot: 3, iova: 0x800000n });
  const many: Iova[] = [];
  for (let i = 0; i < 40; i++) many.push(i % 2 ? BASE + 2 * i : 0x800000 + 2 * i);
  t.ok(dma.mappedSpans(many, many.map(() => 1), 0, 40, DMA_ACCESS_READ, out));
  t.equal(out.count, 40, 'forty spans');
  t.same(out.buffers, [other.bytes!.buffer, mem.bytes!.buffer], 'two buffers, each listed once');
  t.same([...out.spans.subarray(0, 6)], [0, other.bytes!.byteOffset, 1, 1, base + 2, 1]);
});

t.test('withSpans: the same scatter list as spans of ArrayBuffers (no view objects)', async (t) => {
  const { mem, dma, ioas } = setup();
  ioas.map({ backing: mem, offset: 0, length: 4n * P, prot: 3, iova: BigInt(BASE) });
  ioas.map({ backing: mem, offset: 8 * PAGE, length: 2n * P, prot: 1, iova: BigInt(BASE + 4 * PAGE) });
  const base = mem.bytes!.byteOffset;
  const got = await dma.withSpans([BASE, BASE + PAGE, BASE + 3 * PAGE], [PAGE, 512, 100], DMA_ACCESS_READ, (l) => ({
    n: l.count,
    same: l.buffers.length === 1 && l.buffers[0] === mem.bytes!.buffer,
    spans: [...l.spans.subarray(0, 3 * l.count)],
  }));
  t.same(got, { n: 2, same: true, spans: [0, base, PAGE + 512, 0, base + 3 * PAGE, 100] }, 'merged, in place: one buffer, two spans');

  // Memory reached by messages is bounced; mixed sources keep their order.
  const remote = new Uint8Array(2 * PAGE).fill(5);
  const messenger: DmaMessenger = {
    maxChunk: PAGE,
    read: async (addr, len) => Buffer.from(remote.subarray(Number(addr), Number(addr) + len)),
    write: async (addr, data) => void remote.set(data, Number(addr)),
  };
  const b = new MessageBacking(messenger, 0n, 2 * PAGE);
  ioas.map({ backing: b, length: 2n * P, prot: 3, iova: 0x900000n });
  b.release();
  await dma.withSpans([BASE + 8, 0x900000 + 16], [4, 8], DMA_ACCESS_READ | DMA_ACCESS_WRITE, (l) => {
    t.equal(l.count, 2);
    t.equal(l.buffers[l.spans[0]!], mem.bytes!.buffer, 'mapped memory in place');
    t.not(l.buffers[l.spans[3]!], mem.bytes!.buffer, 'message memory bounced');
    const bounce = new Uint8Array(l.buffers[l.spans[3]!]!, l.spans[4]!, l.spans[5]!);
    t.same([...bounce], [5, 5, 5, 5, 5, 5, 5, 5], 'bounce read before fn');
    bounce.fill(7);
  });
  t.same([...remote.subarray(15, 25)], [5, 7, 7, 7, 7, 7, 7, 7, 7, 5], 'and written back after');

  const f = await fault(dma.withSpans([BASE, BASE + 4 * PAGE], [8, 8], DMA_ACCESS_WRITE, () => t.fail('fn must not run')));
  t.equal(f.reason, 'permission', 'one bad range: a fault before fn');
  const u = ioas.unmap(BigInt(BASE), 4n * P);
  let drained = false;
  void u.drained.then(() => (drained = true));
  await new Promise((r) => setImmediate(r));
  t.equal(drained, true, 'nothing left held');
});
