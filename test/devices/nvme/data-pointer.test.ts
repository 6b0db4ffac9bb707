// Data pointers through Read and Write commands on a temp image: PRP1 alone,
// PRP1+PRP2 with an offset, PRP lists spanning list pages, misaligned
// entries, unmapped memory; each SGL form (data block, segment, last
// segment, chained segments), bad descriptor types and short SGLs; MDTS.
import t from 'tap';
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { make, sc, tempDir, PAGE, type Env, type QueuePair } from './env.js';

const image = tempDir(t);
const OK = 0;
const DATA_TRANSFER_ERROR = sc(0, 0x04, false);
const INVALID_FIELD = sc(0, 0x02);
const INVALID_PRP_OFFSET = sc(0, 0x13);
const SGL_TYPE_INVALID = sc(0, 0x11);
const SGL_LENGTH_INVALID = sc(0, 0x0f);
const SGL_SEGMENT_INVALID = sc(0, 0x0d);
const UNMAPPED = 0x7000_0000;

async function setup(t: Parameters<typeof make>[0]): Promise<Env & { q: QueuePair; content: Buffer }> {
  const e = await make(t, image, { size: 4 << 20 });
  const content = randomBytes(4 << 20);
  fs.writeFileSync(e.disks[0]!, content);
  const q = await e.drv.createIoQueues(1, 16);
  return { ...e, q, content };
}

const read = (e: Env, q: QueuePair, slba: number, blocks: number, dp: { prp1?: number; prp2?: number; sgl?: { addr: number; length: number; type: number } }) =>
  e.drv.cmd(q, { opcode: 0x02, nsid: 1, flags: dp.sgl ? 0x40 : 0, ...dp, cdw10: slba, cdw12: blocks - 1 });

/** A PRP list of the given entries at `at` (8 bytes each). */
function prpList(e: Env, at: number, entries: number[]): void {
  entries.forEach((v, i) => e.g.mem.set64(at + 8 * i, v));
}

t.test('PRP1 alone, inside one page at an offset', async (t) => {
  const e = await setup(t);
  const buf = e.g.mem.alloc(PAGE, PAGE) + 512;
  t.equal((await read(e, e.q, 8, 2, { prp1: buf })).status, OK);
  t.same(e.g.mem.read(buf, 1024), e.content.subarray(8 * 512, 10 * 512));
});

t.test('PRP1 + PRP2: two pages, the first at an offset', async (t) => {
  const e = await setup(t);
  const a = e.g.mem.alloc(PAGE, PAGE);
  const b = e.g.mem.alloc(2 * PAGE, PAGE) + PAGE; // not adjacent to a
  const off = PAGE - 1024;
  t.equal((await read(e, e.q, 0, 8, { prp1: a + off, prp2: b })).status, OK);
  t.same(Buffer.concat([e.g.mem.read(a + off, 1024), e.g.mem.read(b, 3072)]), e.content.subarray(0, 4096));
  t.equal((await read(e, e.q, 0, 8, { prp1: a + off, prp2: b + 8 })).status, INVALID_PRP_OFFSET, 'PRP2 not page aligned');
  t.equal((await read(e, e.q, 0, 1, { prp1: a + 2 })).status, INVALID_PRP_OFFSET, 'PRP1 not dword aligned');
});

t.test('PRP list across two list pages (the last entry chains), scattered data pages', async (t) => {
  const e = await setup(t);
  const pages = 600; // 600 data pages: list page 1 holds 511 + a chain pointer
  const data = Array.from({ length: pages }, () => e.g.mem.alloc(PAGE, PAGE));
  // Put the pages in reverse order so nothing merges into one range by accident.
  data.reverse();
  const first = data[0]!;
  const rest = data.slice(1);
  const list1 = e.g.mem.alloc(PAGE, PAGE);
  const list2 = e.g.mem.alloc(PAGE, PAGE);
  prpList(e, list1, [...rest.slice(0, 511), list2]);
  prpList(e, list2, rest.slice(511));
  const blocks = (pages * PAGE) / 512;
  const c = await read(e, e.q, 0, 256, { prp1: first, prp2: list1 });
  t.equal(c.status, OK, '128 KiB through a list');
  // The whole transfer: 600 pages is above MDTS (1 MiB = 256 pages).
  t.equal((await read(e, e.q, 0, blocks, { prp1: first, prp2: list1 })).status, INVALID_FIELD, `${pages} pages is above MDTS`);
  const got = Buffer.concat(data.slice(0, 32).map((p) => e.g.mem.read(p, PAGE)));
  t.same(got, e.content.subarray(0, 32 * PAGE), 'each page got its part');
  t.equal((await read(e, e.q, 0, 256, { prp1: first, prp2: list1 + 4 })).status, INVALID_PRP_OFFSET, 'a list pointer not 8-byte aligned');
});

t.test('PRP list that continues on a second list page', async (t) => {
  const e = await setup(t);
  const n = 256; // 1 MiB: PRP1 + 255 entries
  const data = Array.from({ length: n }, () => e.g.mem.alloc(PAGE, PAGE));
  const list1 = e.g.mem.alloc(PAGE, PAGE);
  const list2 = e.g.mem.alloc(PAGE, PAGE);
  // The list starts 100 entries before the end of its page: 99 entries + a chain pointer.
  const start = list1 + PAGE - 8 * 100;
  prpList(e, start, [...data.slice(1, 100), list2]);
  prpList(e, list2, data.slice(100));
  const c = await read(e, e.q, 16, 2048, { prp1: data[0]!, prp2: start });
  t.equal(c.status, OK);
  t.same(Buffer.concat(data.map((p) => e.g.mem.read(p, PAGE))), e.content.subarray(16 * 512, 16 * 512 + (1 << 20)));
  // A list entry that is not page aligned.
  e.g.mem.set64(list2 + 16, data[102]! + 4);
  t.equal((await read(e, e.q, 16, 2048, { prp1: data[0]!, prp2: start })).status, INVALID_PRP_OFFSET);
});

t.test('unmapped memory anywhere is a Data Transfer Error for that command only', async (t) => {
  const e = await setup(t);
  const a = e.g.mem.alloc(PAGE, PAGE);
  const list = e.g.mem.alloc(PAGE, PAGE);
  t.equal((await read(e, e.q, 0, 1, { prp1: UNMAPPED })).status, DATA_TRANSFER_ERROR, 'PRP1');
  t.equal((await read(e, e.q, 0, 16, { prp1: a, prp2: UNMAPPED })).status, DATA_TRANSFER_ERROR, 'PRP2 page');
  t.equal((await read(e, e.q, 0, 24, { prp1: a, prp2: UNMAPPED })).status, DATA_TRANSFER_ERROR, 'the PRP list itself');
  prpList(e, list, [e.g.mem.alloc(PAGE, PAGE), UNMAPPED]);
  t.equal((await read(e, e.q, 0, 24, { prp1: a, prp2: list })).status, DATA_TRANSFER_ERROR, 'an entry of the list');
  const w = await e.drv.cmd(e.q, { opcode: 0x01, nsid: 1, prp1: UNMAPPED, cdw10: 0, cdw12: 0 });
  t.equal(w.status, DATA_TRANSFER_ERROR, 'a write from unmapped memory');
  t.same(fs.readFileSync(e.disks[0]!).subarray(0, 512), e.content.subarray(0, 512), 'the image is unchanged');
  t.equal((await read(e, e.q, 0, 1, { prp1: a })).status, OK, 'the queue still works');
  t.equal((await e.drv.csts()) & 2, 0, 'no controller fatal status');
});

const DATA_BLOCK = 0x00;
const SEGMENT = 0x20;
const LAST_SEGMENT = 0x30;

function descriptors(e: Env, at: number, list: [number, number, number][]): void {
  list.forEach(([addr, length, type], i) => {
    e.g.mem.set64(at + 16 * i, addr);
    e.g.mem.set32(at + 16 * i + 8, length);
    e.g.mem.view(at + 16 * i + 15, 1)[0] = type;
  });
}

t.test('SGL: a data block in the command', async (t) => {
  const e = await setup(t);
  const buf = e.g.mem.alloc(2 * PAGE, 8) + 3; // SGLs need no alignment
  t.equal((await read(e, e.q, 4, 8, { sgl: { addr: buf, length: 4096, type: DATA_BLOCK } })).status, OK);
  t.same(e.g.mem.read(buf, 4096), e.content.subarray(2048, 2048 + 4096));
});

t.test('SGL: a last segment of data blocks', async (t) => {
  const e = await setup(t);
  const seg = e.g.mem.alloc(256, 16);
  const parts = [e.g.mem.alloc(1000, 8), e.g.mem.alloc(48, 8), e.g.mem.alloc(3048, 8)];
  descriptors(e, seg, [[parts[0]!, 1000, DATA_BLOCK], [parts[1]!, 48, DATA_BLOCK], [parts[2]!, 3048, DATA_BLOCK]]);
  t.equal((await read(e, e.q, 0, 8, { sgl: { addr: seg, length: 48, type: LAST_SEGMENT } })).status, OK);
  const got = Buffer.concat([e.g.mem.read(parts[0]!, 1000), e.g.mem.read(parts[1]!, 48), e.g.mem.read(parts[2]!, 3048)]);
  t.same(got, e.content.subarray(0, 4096));
});

t.test('SGL: segments chained by their last descriptor', async (t) => {
  const e = await setup(t);
  const s1 = e.g.mem.alloc(64, 16);
  const s2 = e.g.mem.alloc(64, 16);
  const s3 = e.g.mem.alloc(64, 16);
  const d = [e.g.mem.alloc(2048, 8), e.g.mem.alloc(1024, 8), e.g.mem.alloc(1024, 8)];
  descriptors(e, s1, [[d[0]!, 2048, DATA_BLOCK], [s2, 32, SEGMENT]]);
  descriptors(e, s2, [[d[1]!, 1024, DATA_BLOCK], [s3, 16, LAST_SEGMENT]]);
  descriptors(e, s3, [[d[2]!, 1024, DATA_BLOCK]]);
  t.equal((await read(e, e.q, 100, 8, { sgl: { addr: s1, length: 32, type: SEGMENT } })).status, OK);
  t.same(Buffer.concat(d.map((a, i) => e.g.mem.read(a, i === 0 ? 2048 : 1024))), e.content.subarray(100 * 512, 108 * 512));

  // A write through the same SGL lands in the image.
  const data = randomBytes(4096);
  e.g.mem.write(d[0]!, data.subarray(0, 2048));
  e.g.mem.write(d[1]!, data.subarray(2048, 3072));
  e.g.mem.write(d[2]!, data.subarray(3072));
  const w = await e.drv.cmd(e.q, { opcode: 0x01, nsid: 1, flags: 0x40, sgl: { addr: s1, length: 32, type: SEGMENT }, cdw10: 200, cdw12: 7 });
  t.equal(w.status, OK, 'write');
  const fd = fs.openSync(e.disks[0]!, 'r');
  const back = Buffer.alloc(4096);
  fs.readSync(fd, back, 0, 4096, 200 * 512);
  fs.closeSync(fd);
  t.same(back, data);
});

t.test('SGL errors', async (t) => {
  const e = await setup(t);
  const seg = e.g.mem.alloc(64, 16);
  const buf = e.g.mem.alloc(4096, 8);
  const r = (sgl: { addr: number; length: number; type: number }, blocks = 8) => read(e, e.q, 0, blocks, { sgl });
  t.equal((await r({ addr: buf, length: 4096, type: 0x10 })).status, SGL_TYPE_INVALID, 'bit bucket');
  t.equal((await r({ addr: buf, length: 4096, type: 0x01 })).status, SGL_TYPE_INVALID, 'data block with a subtype');
  t.equal((await r({ addr: buf, length: 4096, type: 0x50 })).status, SGL_TYPE_INVALID, 'type 5');
  t.equal((await r({ addr: buf, length: 2048, type: DATA_BLOCK })).status, SGL_LENGTH_INVALID, 'too short');
  t.equal((await r({ addr: seg, length: 20, type: LAST_SEGMENT })).status, sc(0, 0x0e), 'segment length not a multiple of 16');
  descriptors(e, seg, [[seg, 16, SEGMENT], [buf, 4096, DATA_BLOCK]]);
  t.equal((await r({ addr: seg, length: 32, type: SEGMENT })).status, SGL_SEGMENT_INVALID, 'a segment descriptor that is not last');
  descriptors(e, seg, [[buf, 1024, DATA_BLOCK], [seg, 32, SEGMENT]]);
  t.equal((await r({ addr: seg, length: 32, type: LAST_SEGMENT })).status, SGL_SEGMENT_INVALID, 'a segment inside a last segment');
  // A segment that points at itself loops until the descriptor limit.
  descriptors(e, seg, [[buf, 0, DATA_BLOCK], [seg, 32, SEGMENT]]);
  t.equal((await r({ addr: seg, length: 32, type: SEGMENT })).status, sc(0, 0x0e), 'a self-referencing segment ends at the limit');
  t.equal((await r({ addr: UNMAPPED, length: 32, type: SEGMENT })).status, DATA_TRANSFER_ERROR, 'an unmapped segment');
  t.equal((await r({ addr: UNMAPPED, length: 4096, type: DATA_BLOCK })).status, DATA_TRANSFER_ERROR, 'an unmapped data block');
  t.equal((await e.drv.csts()) & 2, 0, 'no controller fatal status');
});
