// I/O commands on temp images: Read/Write round trips with 512- and
// 4096-byte blocks, LBA range and MDTS checks, Flush, Write Zeroes,
// Dataset Management deallocate (the image loses its blocks), Compare
// (match and miscompare), read-only namespaces, bad namespaces and
// opcodes; several namespaces; guest memory reached only by DMA messages.
import t from 'tap';
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { make, makeMessageGuest, sc, tempDir, PAGE, type Env, type QueuePair } from './env.js';

const image = tempDir(t);
const OK = 0;
const LBA_OUT_OF_RANGE = sc(0, 0x80);
const INVALID_FIELD = sc(0, 0x02);
const INVALID_NS = sc(0, 0x0b);
const INVALID_OPCODE = sc(0, 0x01);
const WRITE_PROTECTED = sc(0, 0x20);
const COMPARE_FAILURE = sc(2, 0x85);
const MiB = 1 << 20;

/** Contiguous guest buffer described by PRP1/PRP2 or a PRP list. */
function prps(e: Env, buf: number, len: number): { prp1: number; prp2: number } {
  const pages = Math.ceil(len / PAGE);
  if (pages <= 1) return { prp1: buf, prp2: 0 };
  if (pages === 2) return { prp1: buf, prp2: buf + PAGE };
  const list = e.g.mem.alloc(8 * pages, PAGE);
  for (let i = 1; i < pages; i++) e.g.mem.set64(list + 8 * (i - 1), buf + i * PAGE);
  return { prp1: buf, prp2: list };
}

function io(e: Env, q: QueuePair, opcode: number, slba: number, blocks: number, buf: number, extra: { nsid?: number; cdw12?: number } = {}) {
  const len = blocks * e.ctrl.namespaces[(extra.nsid ?? 1) - 1]!.lbaSize;
  return e.drv.cmd(q, { opcode, nsid: extra.nsid ?? 1, ...prps(e, buf, len), cdw10: slba, cdw12: (blocks - 1) | (extra.cdw12 ?? 0) });
}

function fileBytes(path: string, pos: number, len: number): Buffer {
  const fd = fs.openSync(path, 'r');
  const b = Buffer.alloc(len);
  fs.readSync(fd, b, 0, len, pos);
  fs.closeSync(fd);
  return b;
}

for (const lbaSize of [512, 4096]) {
  t.test(`write and read back with ${lbaSize}-byte blocks`, async (t) => {
    const e = await make(t, image, { lbaSize, size: 4 * MiB });
    const q = await e.drv.createIoQueues(1, 32);
    const data = randomBytes(256 * 1024);
    const buf = e.g.mem.alloc(data.length, PAGE);
    e.g.mem.write(buf, data);
    const blocks = data.length / lbaSize;
    t.equal((await io(e, q, 0x01, 3, blocks, buf)).status, OK, 'write');
    t.same(fileBytes(e.disks[0]!, 3 * lbaSize, data.length), data, 'the image holds it');
    const back = e.g.mem.alloc(data.length, PAGE);
    t.equal((await io(e, q, 0x02, 3, blocks, back)).status, OK, 'read');
    t.same(e.g.mem.read(back, data.length), data, 'read back');
    const total = (4 * MiB) / lbaSize;
    t.equal((await io(e, q, 0x02, total - 1, 1, back)).status, OK, 'the last block');
    t.equal((await io(e, q, 0x02, total - 1, 2, back)).status, LBA_OUT_OF_RANGE, 'past the end');
    t.equal((await io(e, q, 0x02, 0, MiB / lbaSize + 1, back)).status, INVALID_FIELD, 'above MDTS');
    const s = e.ctrl.stats();
    t.equal(s.bytesWritten, data.length);
    t.ok(s.reads >= 2 && s.writes === 1, 'counted by kind');
  });
}

t.test('Flush, FUA and the write cache', async (t) => {
  const e = await make(t, image);
  const q = await e.drv.createIoQueues(1, 8);
  t.equal((await e.drv.cmd(q, { opcode: 0x00, nsid: 1 })).status, OK, 'flush namespace 1');
  t.equal((await e.drv.cmd(q, { opcode: 0x00, nsid: 0xffffffff })).status, OK, 'flush all');
  t.equal((await e.drv.cmd(q, { opcode: 0x00, nsid: 2 })).status, INVALID_NS, 'flush a missing namespace');
  const buf = e.g.mem.alloc(PAGE, PAGE);
  t.equal((await io(e, q, 0x01, 0, 1, buf, { cdw12: 1 << 30 })).status, OK, 'a FUA write');
  t.equal(e.ctrl.stats().flushes, 3);
});

t.test('Write Zeroes and Dataset Management deallocate free blocks of the image', async (t) => {
  const e = await make(t, image, { size: 8 * MiB });
  const q = await e.drv.createIoQueues(1, 8);
  const path = e.disks[0]!;
  fs.writeFileSync(path, randomBytes(8 * MiB));
  const allocated = () => fs.statSync(path).blocks * 512;
  const before = allocated();
  t.ok(before >= 8 * MiB, 'fully allocated');
  // Deallocate 2 MiB at 1 MiB and 1 MiB at 5 MiB.
  const ranges = e.g.mem.alloc(PAGE, PAGE);
  const put = (i: number, slba: number, nlb: number) => {
    e.g.mem.set32(ranges + 16 * i + 4, nlb);
    e.g.mem.set64(ranges + 16 * i + 8, slba);
  };
  put(0, 2048, 4096);
  put(1, 10240, 2048);
  const c = await e.drv.cmd(q, { opcode: 0x09, nsid: 1, prp1: ranges, cdw10: 1, cdw11: 1 << 2 });
  t.equal(c.status, OK, 'deallocate two ranges');
  t.ok(allocated() <= before - 3 * MiB, `3 MiB went back to the file system (${before} → ${allocated()})`);
  t.same(fileBytes(path, 2048 * 512, 4096), Buffer.alloc(4096), 'deallocated blocks read as zeros');
  put(0, 16383, 2);
  t.equal((await e.drv.cmd(q, { opcode: 0x09, nsid: 1, prp1: ranges, cdw10: 0, cdw11: 1 << 2 })).status, LBA_OUT_OF_RANGE, 'a range past the end');
  t.equal((await e.drv.cmd(q, { opcode: 0x09, nsid: 1, prp1: ranges, cdw10: 0, cdw11: 0 })).status, OK, 'hints only: nothing to do');

  const wz = await e.drv.cmd(q, { opcode: 0x08, nsid: 1, cdw10: 8, cdw12: 7 });
  t.equal(wz.status, OK, 'write zeroes');
  t.same(fileBytes(path, 8 * 512, 4096), Buffer.alloc(4096), 'zeros');
  const mid = allocated();
  t.equal((await e.drv.cmd(q, { opcode: 0x08, nsid: 1, cdw10: 12288, cdw12: 2047 | (1 << 25) })).status, OK, 'write zeroes with deallocate');
  t.ok(allocated() <= mid - MiB, 'and the blocks are gone');
  t.equal((await e.drv.cmd(q, { opcode: 0x08, nsid: 1, cdw10: 16383, cdw12: 1 })).status, LBA_OUT_OF_RANGE);
});

t.test('Compare: a match and a miscompare', async (t) => {
  const e = await make(t, image);
  const q = await e.drv.createIoQueues(1, 8);
  const data = randomBytes(8192);
  const buf = e.g.mem.alloc(8192, PAGE);
  e.g.mem.write(buf, data);
  await io(e, q, 0x01, 40, 16, buf);
  t.equal((await io(e, q, 0x05, 40, 16, buf)).status, OK, 'the same bytes');
  e.g.mem.view(buf + 5000, 1)[0] ^= 1;
  t.equal((await io(e, q, 0x05, 40, 16, buf)).status, COMPARE_FAILURE, 'one bit differs');
  t.equal(e.ctrl.stats().compares, 2);
});

t.test('read-only namespaces refuse writes; bad namespaces and opcodes', async (t) => {
  const path = image();
  fs.writeFileSync(path, Buffer.alloc(MiB, 7));
  const e = await make(t, image, { disks: [path], readonly: true });
  const q = await e.drv.createIoQueues(1, 8);
  const buf = e.g.mem.alloc(PAGE, PAGE);
  t.equal((await io(e, q, 0x01, 0, 1, buf)).status, WRITE_PROTECTED, 'write');
  t.equal((await e.drv.cmd(q, { opcode: 0x08, nsid: 1, cdw12: 0 })).status, WRITE_PROTECTED, 'write zeroes');
  t.equal((await io(e, q, 0x02, 0, 1, buf)).status, OK, 'read');
  t.equal(e.g.mem.read(buf, 1)[0], 7);
  t.equal((await io(e, q, 0x02, 0, 1, buf, { nsid: 1 })).status, OK);
  t.equal((await e.drv.cmd(q, { opcode: 0x02, nsid: 0, prp1: buf })).status, INVALID_NS, 'namespace 0');
  t.equal((await e.drv.cmd(q, { opcode: 0x02, nsid: 9, prp1: buf })).status, INVALID_NS, 'namespace 9');
  t.equal((await e.drv.cmd(q, { opcode: 0x7f, nsid: 1 })).status, INVALID_OPCODE, 'unknown I/O opcode');
  t.same(fs.readFileSync(path), Buffer.alloc(MiB, 7), 'the image is unchanged');
});

t.test('two namespaces on two images', async (t) => {
  const e = await make(t, image, { images: 2 });
  const q = await e.drv.createIoQueues(1, 8);
  const buf = e.g.mem.alloc(PAGE, PAGE);
  e.g.mem.write(buf, Buffer.alloc(PAGE, 0xa2));
  t.equal((await io(e, q, 0x01, 0, 8, buf, { nsid: 2 })).status, OK);
  t.same(fileBytes(e.disks[1]!, 0, PAGE), Buffer.alloc(PAGE, 0xa2), 'image 2 written');
  t.same(fileBytes(e.disks[0]!, 0, PAGE), Buffer.alloc(PAGE), 'image 1 untouched');
});

t.test('guest memory reached only by DMA messages', async (t) => {
  const guest = makeMessageGuest();
  const e = await make(t, image, { guest, size: 2 * MiB });
  const q = await e.drv.createIoQueues(1, 8);
  const data = randomBytes(64 * 1024);
  const buf = e.g.mem.alloc(data.length, PAGE);
  e.g.mem.write(buf, data);
  t.equal((await io(e, q, 0x01, 0, 128, buf)).status, OK, 'write');
  const back = e.g.mem.alloc(data.length, PAGE);
  t.equal((await io(e, q, 0x02, 0, 128, back)).status, OK, 'read');
  t.same(e.g.mem.read(back, data.length), data);
  t.ok(guest.messages.reads > 0 && guest.messages.writes > 0, `DMA messages (${guest.messages.reads} reads, ${guest.messages.writes} writes)`);
});
