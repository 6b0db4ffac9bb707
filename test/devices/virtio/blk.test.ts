// virtio-blk against a temporary raw image: configuration and features,
// IN/OUT/FLUSH/GET_ID/DISCARD/WRITE_ZEROES, the error statuses (bad sector,
// read-only, unsupported, DMA faults), several requests in flight on several
// queues, and guest memory reached only by DMA messages.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { VirtioBlk, type VirtioBlkOptions } from '../../../devices/virtio-blk/index.js';
import { BlkConfig, BlkFeature, BlkStatus, BlkType } from '../../../devices/virtio-blk/constants.js';
import { createDevice } from '../../../devices/index.js';
import { bit, Feature, Status } from '../../../devices/virtio/constants.js';
import { fakeFds } from '../helpers.js';
import {
  attach,
  BASE,
  MEM_SIZE,
  DEFAULT_DRIVER_FEATURES,
  DriverRing,
  enableMsix,
  makeGuest,
  makeMessageGuest,
  PciDriver,
  until,
  type Guest,
} from './env.js';

const MiB = 1 << 20;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vblk-unit-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;
const imagePath = () => path.join(dir, `disk${n++}.img`);

interface Env {
  blk: VirtioBlk;
  drv: PciDriver;
  rings: DriverRing[];
  g: Guest;
  image: string;
  fds: ReturnType<typeof fakeFds>;
}

function make(opts: Partial<VirtioBlkOptions> & { guest?: Guest; features?: bigint; dropFeatures?: bigint } = {}): Env {
  const image = opts.disk ?? imagePath();
  const fds = fakeFds();
  const blk = new VirtioBlk({ size: 4 * MiB, ...opts, disk: image, fdOps: fds.ops });
  t.teardown(() => blk.close());
  const g = opts.guest ?? makeGuest();
  attach(blk.device, g);
  const drv = new PciDriver(blk.device, g.mem);
  const all = DEFAULT_DRIVER_FEATURES | (drv.enablePci(), drv.deviceFeatures());
  const rings = drv.init(blk.numQueues, { msix: true, features: (opts.features ?? all) & ~(opts.dropFeatures ?? 0n) });
  enableMsix(blk.device, fds);
  return { blk, drv, rings, g, image, fds };
}

interface Req {
  type: number;
  sector?: bigint | number;
  /** OUT data, DISCARD/WRITE_ZEROES segments. */
  out?: Buffer;
  /** Device-writable data bytes before the status (IN, GET_ID). */
  inLen?: number;
  /** Split data into descriptors of this many bytes. */
  segment?: number;
  indirect?: boolean;
  queue?: number;
  /** Put the data-in buffer here instead (e.g. an unmapped IOVA). */
  inAddr?: number;
}

interface Done {
  status: number;
  len: number;
  data: Buffer;
  head: number;
}

/** Lay out one request; returns what to check once it is used. */
function build(e: Env, r: Req): { head: number; ring: DriverRing; finish: (len: number) => Done } {
  const ring = e.rings[r.queue ?? 0]!;
  const mem = e.g.mem;
  const hdr = mem.alloc(16);
  mem.set32(hdr, r.type);
  mem.set64(hdr + 8, BigInt(r.sector ?? 0));
  const bufs: { addr: number; len: number; write?: boolean }[] = [{ addr: hdr, len: 16 }];
  const seg = r.segment ?? 1 << 30;
  if (r.out) {
    const a = mem.alloc(r.out.length);
    mem.write(a, r.out);
    for (let o = 0; o < r.out.length; o += seg) bufs.push({ addr: a + o, len: Math.min(seg, r.out.length - o) });
  }
  const inLen = r.inLen ?? 0;
  const din = r.inAddr ?? (inLen ? mem.alloc(inLen) : 0);
  for (let o = 0; o < inLen; o += seg) bufs.push({ addr: din + o, len: Math.min(seg, inLen - o), write: true });
  const st = mem.alloc(1);
  mem.write(st, Buffer.from([0xee]));
  bufs.push({ addr: st, len: 1, write: true });
  const head = r.indirect ? ring.indirect(bufs) : ring.chain(bufs);
  return {
    head,
    ring,
    finish: (len) => ({ status: mem.read(st, 1)[0]!, len, data: r.inAddr || !inLen ? Buffer.alloc(0) : mem.read(din, inLen), head }),
  };
}

async function run(e: Env, r: Req): Promise<Done> {
  const [d] = await runMany(e, [r]);
  return d!;
}

/** Submit all requests at once (one kick per queue), wait for all. */
async function runMany(e: Env, reqs: Req[]): Promise<Done[]> {
  const built = reqs.map((r) => build(e, r));
  const byRing = new Map<DriverRing, number[]>();
  for (const b of built) byRing.set(b.ring, [...(byRing.get(b.ring) ?? []), b.head]);
  const want = new Map<DriverRing, number>();
  for (const [ring, heads] of byRing) {
    want.set(ring, (ring.availIdx + heads.length) & 0xffff);
    ring.push(...heads);
  }
  for (const [ring] of byRing) e.drv.notify(e.rings.indexOf(ring));
  await until(() => [...want].every(([ring, idx]) => ring.usedIdx === idx), 'requests used', 10_000);
  const lens = new Map<DriverRing, Map<number, number>>();
  for (const [ring] of byRing) lens.set(ring, new Map(ring.takeUsed().map((u) => [u.id, u.len])));
  return built.map((b) => b.finish(lens.get(b.ring)!.get(b.head)!));
}

const seg16 = (sector: bigint | number, num: number, flags = 0) => {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(BigInt(sector), 0);
  b.writeUInt32LE(num, 8);
  b.writeUInt32LE(flags, 12);
  return b;
};

t.test('configuration and features', async (t) => {
  const e = make({ queues: 2, queueSize: 128 });
  t.ok(fs.existsSync(e.image), 'image created');
  t.equal(fs.statSync(e.image).size, 4 * MiB, 'at the requested size');
  const cfg = (off: number, len: 1 | 2 | 4) => e.drv.read(0x2000 + off, len);
  t.equal(cfg(BlkConfig.CAPACITY, 4) + cfg(BlkConfig.CAPACITY + 4, 4) * 2 ** 32, 8192, 'capacity in sectors');
  t.equal(cfg(BlkConfig.SEG_MAX, 4), 126, 'seg_max = queue size - 2');
  t.equal(cfg(BlkConfig.BLK_SIZE, 4), 512);
  t.equal(cfg(BlkConfig.NUM_QUEUES, 2), 2);
  t.ok(cfg(BlkConfig.MAX_DISCARD_SECTORS, 4) > 0 && cfg(BlkConfig.MAX_DISCARD_SEG, 4) > 0);
  t.ok(cfg(BlkConfig.MAX_WRITE_ZEROES_SECTORS, 4) > 0 && cfg(BlkConfig.MAX_WRITE_ZEROES_SEG, 4) > 0);
  t.equal(cfg(BlkConfig.DISCARD_SECTOR_ALIGNMENT, 4), 1);
  const f = e.drv.deviceFeatures();
  for (const b of [BlkFeature.SEG_MAX, BlkFeature.BLK_SIZE, BlkFeature.FLUSH, BlkFeature.MQ, BlkFeature.DISCARD, BlkFeature.WRITE_ZEROES]) {
    t.ok(f & bit(b), `offers feature ${b}`);
  }
  t.notOk(f & bit(BlkFeature.RO), 'writable');
  t.ok(f & bit(Feature.ACCESS_PLATFORM) && f & bit(Feature.VERSION_1));
  t.equal(e.drv.common(0x12, 2), 2, 'two request queues');
  t.equal((e.blk.device.regionRead(7, 2, 2) as Buffer).readUInt16LE(0), 0x1042, '1af4:1042');

  const one = make({ queues: 1 });
  t.notOk(one.drv.deviceFeatures() & bit(BlkFeature.MQ), 'one queue: no MQ');
  const ro = make({ disk: one.image, readonly: true });
  const rf = ro.drv.deviceFeatures();
  t.ok(rf & bit(BlkFeature.RO), 'read-only: RO');
  t.notOk(rf & (bit(BlkFeature.DISCARD) | bit(BlkFeature.WRITE_ZEROES)), 'read-only: no DISCARD / WRITE_ZEROES');
});

t.test('opening images', async (t) => {
  t.throws(() => new VirtioBlk({ disk: path.join(dir, 'missing.img') }), /give a size to create it/);
  t.throws(() => new VirtioBlk({ disk: path.join(dir, 'missing.img'), size: 4096, readonly: true }), /must exist/);
  t.throws(() => new VirtioBlk({ disk: imagePath(), size: 1000 }), /multiple of 512/);
  t.throws(() => new VirtioBlk({ disk: imagePath(), size: 4096, queues: 0 }), /queues/);
  t.throws(() => new VirtioBlk({ disk: imagePath(), size: 4096, queueSize: 100 }), /queueSize/);
  t.throws(() => new VirtioBlk({ disk: dir }), /not a regular file|cannot open/);
  const existing = imagePath();
  fs.writeFileSync(existing, Buffer.alloc(3 * 512 + 100));
  const b = new VirtioBlk({ disk: existing, size: 1 * MiB, fdOps: fakeFds().ops });
  t.equal(b.capacity, 3, 'an existing image keeps its size (partial sector dropped)');
  t.equal(fs.statSync(existing).size, 3 * 512 + 100, 'and is not resized');
  b.close();
  const viaRegistry = createDevice('blk', { disk: imagePath(), size: 8192, fdOps: fakeFds().ops });
  t.equal(viaRegistry.kind, 'blk');
  t.equal(viaRegistry.capacity, 16);
  viaRegistry.close();
});

t.test('OUT then IN: the bytes reach the image and come back', async (t) => {
  const e = make();
  const data = randomBytes(64 * 1024);
  const w = await run(e, { type: BlkType.OUT, sector: 10, out: data, segment: 4096, indirect: true });
  t.equal(w.status, BlkStatus.OK);
  t.equal(w.len, 1, 'used len: the status byte');
  const onDisk = fs.readFileSync(e.image).subarray(10 * 512, 10 * 512 + data.length);
  t.ok(onDisk.equals(data), 'the image holds the data');
  const r = await run(e, { type: BlkType.IN, sector: 10, inLen: data.length, segment: 3 * 512 });
  t.equal(r.status, BlkStatus.OK);
  t.equal(r.len, data.length + 1, 'used len: data + status');
  t.ok(r.data.equals(data), 'read back');
  const direct = await run(e, { type: BlkType.IN, sector: 11, inLen: 512 });
  t.ok(direct.data.equals(data.subarray(512, 1024)), 'one sector at an offset');
  t.equal(e.blk.stats.reads, 2);
  t.equal(e.blk.stats.writes, 1);
  t.equal(e.blk.stats.bytesWritten, data.length);
});

t.test('the last sector is readable; one past is IOERR, and huge sectors too', async (t) => {
  const e = make();
  const cap = e.blk.capacity;
  t.equal((await run(e, { type: BlkType.IN, sector: cap - 1, inLen: 512 })).status, BlkStatus.OK);
  t.equal((await run(e, { type: BlkType.IN, sector: cap, inLen: 512 })).status, BlkStatus.IOERR, 'sector = capacity');
  t.equal((await run(e, { type: BlkType.IN, sector: cap - 1, inLen: 1024 })).status, BlkStatus.IOERR, 'runs past the end');
  t.equal((await run(e, { type: BlkType.OUT, sector: 0xffff_ffff_ffff_ff00n, out: Buffer.alloc(512) })).status, BlkStatus.IOERR, 'sector near 2^64');
  t.equal((await run(e, { type: BlkType.IN, sector: 0, inLen: 100 })).status, BlkStatus.IOERR, 'length not a multiple of 512');
  t.equal(e.blk.stats.ioErrors, 4);
  t.equal((await run(e, { type: BlkType.IN, sector: 0, inLen: 512 })).status, BlkStatus.OK, 'still working');
});

t.test('an image shrunk behind our back reads as zeros past its end', async (t) => {
  const e = make();
  const data = randomBytes(8 * 512);
  t.equal((await run(e, { type: BlkType.OUT, sector: 0, out: data })).status, BlkStatus.OK);
  fs.truncateSync(e.image, 3 * 512 + 100); // somebody else truncated it mid-sector
  const at = e.g.mem.alloc(8 * 512);
  e.g.mem.write(at, Buffer.alloc(8 * 512, 0xee)); // not zeros already
  const r = await run(e, { type: BlkType.IN, sector: 0, inLen: 8 * 512, inAddr: at, segment: 1024, indirect: true });
  t.equal(r.status, BlkStatus.OK, 'capacity is what the guest was told: the read succeeds');
  const got = e.g.mem.read(at, 8 * 512);
  t.ok(got.subarray(0, 3 * 512 + 100).equals(data.subarray(0, 3 * 512 + 100)), 'the bytes that are left');
  t.ok(got.subarray(3 * 512 + 100).every((b) => b === 0), 'zeros after them, across descriptors');
});

t.test('FLUSH waits for fdatasync', async (t) => {
  const e = make();
  const real = fs.fdatasync;
  let syncs = 0;
  (fs as { fdatasync: typeof fs.fdatasync }).fdatasync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    syncs++;
    real(fd, cb);
  }) as typeof fs.fdatasync;
  t.teardown(() => void ((fs as { fdatasync: typeof fs.fdatasync }).fdatasync = real));
  await run(e, { type: BlkType.OUT, sector: 0, out: Buffer.alloc(512, 1) });
  t.equal(syncs, 0, 'writeback cache (FLUSH negotiated): a write alone does not sync');
  const f = await run(e, { type: BlkType.FLUSH });
  t.equal(f.status, BlkStatus.OK);
  t.equal(syncs, 1, 'FLUSH → fdatasync');
  t.equal(e.blk.stats.flushes, 1);

  // A driver without VIRTIO_BLK_F_FLUSH gets write-through.
  const wt = make({ features: DEFAULT_DRIVER_FEATURES | bit(BlkFeature.BLK_SIZE) });
  t.notOk(wt.blk.transport.has(BlkFeature.FLUSH));
  syncs = 0;
  t.equal((await run(wt, { type: BlkType.OUT, sector: 0, out: Buffer.alloc(512, 2) })).status, BlkStatus.OK);
  t.equal(syncs, 1, 'write-through: every write is synced before it completes');
});

t.test('GET_ID', async (t) => {
  const e = make({ serial: 'my-serial-0001' });
  const r = await run(e, { type: BlkType.GET_ID, inLen: 20 });
  t.equal(r.status, BlkStatus.OK);
  t.equal(r.data.toString('latin1'), 'my-serial-0001\0\0\0\0\0\0');
  t.equal(r.len, 21);
  const long = make({ serial: 'a-serial-longer-than-twenty-bytes' });
  t.equal((await run(long, { type: BlkType.GET_ID, inLen: 20 })).data.toString(), 'a-serial-longer-than', 'cut at 20 bytes');
  const short = await run(e, { type: BlkType.GET_ID, inLen: 8 });
  t.equal(short.data.toString(), 'my-seria', 'a short buffer gets what fits');
  const dflt = make();
  t.equal((await run(dflt, { type: BlkType.GET_ID, inLen: 20 })).data.toString().replace(/\0+$/, ''), path.basename(dflt.image));
});

t.test('WRITE_ZEROES and DISCARD', async (t) => {
  const e = make();
  await run(e, { type: BlkType.OUT, sector: 0, out: Buffer.alloc(16 * 512, 0xaa) });
  const z = await run(e, { type: BlkType.WRITE_ZEROES, out: Buffer.concat([seg16(2, 3), seg16(8, 1, 1)]) });
  t.equal(z.status, BlkStatus.OK);
  const img = fs.readFileSync(e.image);
  const sectorIs = (s: number, v: number) => img.subarray(s * 512, (s + 1) * 512).every((b) => b === v);
  t.ok([0, 1, 5, 6, 7, 9].every((s) => sectorIs(s, 0xaa)), 'untouched sectors keep their data');
  t.ok([2, 3, 4, 8].every((s) => sectorIs(s, 0)), 'zeroed sectors (UNMAP flag allowed for write zeroes)');
  t.equal(e.blk.stats.writeZeroes, 1);

  const d = await run(e, { type: BlkType.DISCARD, out: Buffer.concat([seg16(0, 4), seg16(10, 2)]) });
  t.equal(d.status, BlkStatus.OK, 'DISCARD accepted');
  t.equal(e.blk.stats.discards, 1);
  t.equal((await run(e, { type: BlkType.DISCARD, out: seg16(0, 1, 1) })).status, BlkStatus.UNSUPP, 'DISCARD with UNMAP → UNSUPP');
  t.equal((await run(e, { type: BlkType.WRITE_ZEROES, out: seg16(0, 1, 2) })).status, BlkStatus.UNSUPP, 'unknown flag → UNSUPP');
  t.equal((await run(e, { type: BlkType.WRITE_ZEROES, out: seg16(e.blk.capacity - 1, 2) })).status, BlkStatus.IOERR, 'past the end → IOERR');
  t.equal((await run(e, { type: BlkType.DISCARD, out: Buffer.alloc(8) })).status, BlkStatus.IOERR, 'a partial segment → IOERR');
  const many = Buffer.concat(Array.from({ length: 17 }, (_, i) => seg16(i, 1)));
  t.equal((await run(e, { type: BlkType.DISCARD, out: many })).status, BlkStatus.UNSUPP, 'more segments than max_discard_seg → UNSUPP');
  t.equal((await run(e, { type: BlkType.WRITE_ZEROES, out: seg16(0, 0x10001) })).status, BlkStatus.IOERR, 'more than max_write_zeroes_sectors → IOERR');
});

t.test('DISCARD gives the space back to the file system; WRITE_ZEROES with UNMAP leaves a hole that reads as zeros', async (t) => {
  const e = make();
  const fd = fs.openSync(e.image, 'r');
  t.teardown(() => fs.closeSync(fd));
  // 1 MiB of data at sector 2048 (1 MiB in), through the device.
  for (let i = 0; i < 8; i++) {
    t.equal((await run(e, { type: BlkType.OUT, sector: 2048 + i * 256, out: Buffer.alloc(128 * 1024, 0x5c) })).status, BlkStatus.OK);
  }
  t.equal((await run(e, { type: BlkType.FLUSH })).status, BlkStatus.OK);
  const full = fs.fstatSync(fd).blocks;
  const d = await run(e, { type: BlkType.DISCARD, out: seg16(2048, 1024) });
  t.equal(d.status, BlkStatus.OK);
  const afterDiscard = fs.fstatSync(fd).blocks;
  t.ok(afterDiscard <= full - 512 * 2 + 16, `512 KiB freed by DISCARD (${full} -> ${afterDiscard} blocks of 512 B)`);
  const img = fs.readFileSync(e.image);
  t.ok(img.subarray(1 * MiB, 1.5 * MiB).every((b) => b === 0), 'the discarded range reads as zeros');
  t.ok(img.subarray(1.5 * MiB, 2 * MiB).every((b) => b === 0x5c), 'the rest keeps its data');

  const z = await run(e, { type: BlkType.WRITE_ZEROES, out: seg16(3072, 512, 1) });
  t.equal(z.status, BlkStatus.OK);
  t.ok(fs.fstatSync(fd).blocks < afterDiscard, 'WRITE_ZEROES with UNMAP freed its blocks too');
  const img2 = fs.readFileSync(e.image);
  t.ok(img2.subarray(1.5 * MiB, 1.75 * MiB).every((b) => b === 0), 'and they read as zeros');
  t.ok(img2.subarray(1.75 * MiB, 2 * MiB).every((b) => b === 0x5c), 'past it the data stays');
});

t.test('read-only disk: OUT, DISCARD, WRITE_ZEROES fail with IOERR; IN works; the image is untouched', async (t) => {
  const image = imagePath();
  const content = randomBytes(8192);
  fs.writeFileSync(image, content);
  const e = make({ disk: image, readonly: true });
  t.equal((await run(e, { type: BlkType.OUT, sector: 0, out: Buffer.alloc(512) })).status, BlkStatus.IOERR);
  t.equal((await run(e, { type: BlkType.WRITE_ZEROES, out: seg16(0, 1) })).status, BlkStatus.IOERR);
  t.equal((await run(e, { type: BlkType.DISCARD, out: seg16(0, 1) })).status, BlkStatus.IOERR);
  t.equal((await run(e, { type: BlkType.FLUSH })).status, BlkStatus.OK, 'FLUSH is harmless');
  const r = await run(e, { type: BlkType.IN, sector: 2, inLen: 1024 });
  t.equal(r.status, BlkStatus.OK);
  t.ok(r.data.equals(content.subarray(1024, 2048)));
  t.ok(fs.readFileSync(image).equals(content), 'image unchanged');
});

t.test('unsupported and malformed requests', async (t) => {
  const e = make();
  t.equal((await run(e, { type: 0x1234, inLen: 0 })).status, BlkStatus.UNSUPP, 'unknown type');
  t.equal((await run(e, { type: BlkType.GET_LIFETIME, inLen: 16 })).status, BlkStatus.UNSUPP, 'GET_LIFETIME');
  t.equal(e.blk.stats.unsupported, 2);
  // A header shorter than 16 bytes.
  const ring = e.rings[0]!;
  const st = e.g.mem.alloc(1);
  const h = ring.chain([{ addr: e.g.mem.alloc(8), len: 8 }, { addr: st, len: 1, write: true }]);
  ring.push(h);
  e.drv.notify(0);
  await until(() => ring.usedIdx === ring.availIdx, 'used');
  ring.takeUsed();
  t.equal(e.g.mem.read(st, 1)[0], BlkStatus.IOERR, 'short header → IOERR');
  // No writable byte at all: nothing to report into, completed with len 0.
  const h2 = ring.chain([{ addr: e.g.mem.alloc(16), len: 16 }]);
  ring.push(h2);
  e.drv.notify(0);
  await until(() => ring.usedIdx === ring.availIdx, 'used');
  t.same(ring.takeUsed(), [{ id: h2, len: 0 }]);
  t.equal((await run(e, { type: BlkType.IN, sector: 0, inLen: 512 })).status, BlkStatus.OK, 'still working');
});

t.test('a data buffer at an unmapped IOVA: IOERR, and the device keeps working', async (t) => {
  const e = make();
  const r = await run(e, { type: BlkType.IN, sector: 0, inLen: 4096, inAddr: 0x9000000 });
  t.equal(r.status, BlkStatus.IOERR);
  t.equal(r.len, 0, 'used len 0: the data was not written');
  t.equal(e.drv.status & Status.DEVICE_NEEDS_RESET, 0, 'no reset needed');
  // OUT data from an IOVA mapped read-only? Use a write-only mapping instead: unmapped header.
  const ring = e.rings[0]!;
  const st = e.g.mem.alloc(1);
  ring.push(ring.chain([{ addr: 0x9100000, len: 16 }, { addr: st, len: 1, write: true }]));
  e.drv.notify(0);
  await until(() => ring.usedIdx === ring.availIdx, 'used');
  ring.takeUsed();
  t.equal(e.g.mem.read(st, 1)[0], BlkStatus.IOERR, 'unreadable header → IOERR');
  const ok = await run(e, { type: BlkType.OUT, sector: 1, out: Buffer.alloc(512, 7) });
  t.equal(ok.status, BlkStatus.OK, 'next request fine');
});

t.test('several requests in flight on several queues', async (t) => {
  const e = make({ queues: 3, size: 8 * MiB });
  const chunks = Array.from({ length: 24 }, () => randomBytes(32 * 1024));
  const writes = chunks.map((c, i) => ({ type: BlkType.OUT, sector: i * 64, out: c, queue: i % 3, segment: 4096, indirect: i % 2 === 0 }));
  const w = await runMany(e, writes);
  t.ok(w.every((d) => d.status === BlkStatus.OK), 'all writes OK');
  const q = e.blk.transport.queues;
  t.ok(q.every((x) => x.stats.chains === 8), 'each queue took its own 8');
  const reads = chunks.map((c, i) => ({ type: BlkType.IN, sector: i * 64, inLen: c.length, queue: (i + 1) % 3 }));
  const r = await runMany(e, reads);
  t.ok(r.every((d, i) => d.status === BlkStatus.OK && d.data.equals(chunks[i]!)), 'all reads match');
  t.ok(q.every((x) => x.stats.interrupts >= 1));
  // Each queue signals its own MSI-X vector.
  t.ok([100, 101, 102].every((fd) => e.fds.signals.includes(fd)), 'vectors 0, 1, 2 signalled');
});

t.test('guest memory over DMA_READ/DMA_WRITE messages (no fd): same results', async (t) => {
  const g = makeMessageGuest();
  const e = make({ guest: g });
  const data = randomBytes(200 * 1024); // more than one 64 KiB message
  t.equal((await run(e, { type: BlkType.OUT, sector: 100, out: data, segment: 8192, indirect: true })).status, BlkStatus.OK);
  const r = await run(e, { type: BlkType.IN, sector: 100, inLen: data.length, segment: 8192 });
  t.equal(r.status, BlkStatus.OK);
  t.ok(r.data.equals(data));
  t.ok(fs.readFileSync(e.image).subarray(100 * 512, 100 * 512 + data.length).equals(data));
  t.ok(g.messages.reads > 4 && g.messages.writes > 4, `messages used (${g.messages.reads} reads, ${g.messages.writes} writes)`);
});

t.test('a reset while a request is in flight: its buffers are left alone', async (t) => {
  const e = make();
  const spec = e.blk.transport.spec as { handle: (c: import('../../../devices/virtio/virtqueue.js').DescChain) => void; serveInPlace?: unknown };
  // Handed out (not served in place, where nothing can come between), so the reset can come in flight.
  spec.serveInPlace = undefined;
  const orig = spec.handle;
  spec.handle = (c) => {
    e.drv.status = 0; // the driver resets right after making the request available
    orig(c);
  };
  const ring = e.rings[0]!;
  const b = build(e, { type: BlkType.OUT, sector: 0, out: Buffer.alloc(512, 0x33) });
  ring.push(b.head);
  e.drv.notify(0);
  await until(() => e.blk.transport.queues[0]!.stats.chains === 1, 'chain taken');
  await new Promise((r) => setTimeout(r, 50));
  spec.handle = orig;
  t.equal(b.finish(0).status, 0xee, 'status byte untouched');
  t.equal(ring.usedIdx, 0, 'nothing published');
  t.equal(fs.readFileSync(e.image).subarray(0, 512).every((x) => x === 0), true, 'nothing written to the image');
  // The driver starts again and the device works.
  e.rings.splice(0, e.rings.length, ...e.drv.init(1, { msix: true }));
  t.equal((await run(e, { type: BlkType.IN, sector: 0, inLen: 512 })).status, BlkStatus.OK);
});

/** Counts the chains the queues hand out one by one (the ones not served in place). */
function countHandled(e: Env): { n: number } {
  const spec = e.blk.transport.spec as { handle: (c: import('../../../devices/virtio/virtqueue.js').DescChain) => void };
  const orig = spec.handle;
  const seen = { n: 0 };
  spec.handle = (c) => {
    seen.n++;
    orig(c);
  };
  return seen;
}

t.test('plain reads and writes are served in place, straight off the ring', async (t) => {
  const e = make();
  const handled = countHandled(e);
  const data = randomBytes(64 * 1024);
  const w = await run(e, { type: BlkType.OUT, sector: 16, out: data, segment: 4096, indirect: true });
  const r = await run(e, { type: BlkType.IN, sector: 16, inLen: data.length, segment: 1536 });
  const one = await run(e, { type: BlkType.IN, sector: 17, inLen: 512 });
  t.same([w.status, r.status, one.status], [BlkStatus.OK, BlkStatus.OK, BlkStatus.OK]);
  t.same([w.len, r.len, one.len], [1, data.length + 1, 513], 'used lengths');
  t.ok(r.data.equals(data) && one.data.equals(data.subarray(512, 1024)), 'read back what was written');
  t.ok(fs.readFileSync(e.image).subarray(16 * 512, 16 * 512 + data.length).equals(data), 'the image holds it');
  t.equal(handled.n, 0, 'no chain was handed out');
  const q = e.blk.transport.queues[0]!.stats;
  t.same([q.chains, q.completions, q.interrupts + q.suppressed], [3, 3, 3], 'taken, completed, and an interrupt decision for each');
  t.ok(q.interrupts >= 1, 'the first one signalled (the driver never moves used_event)');
  t.same([e.blk.stats.reads, e.blk.stats.writes, e.blk.stats.bytesRead, e.blk.stats.bytesWritten], [2, 1, data.length + 512, data.length]);
});

t.test('a batch of plain and other requests: each done once, in place or handed out', async (t) => {
  const e = make();
  const handled = countHandled(e);
  const data = randomBytes(4096);
  const [w, f, r, id, split] = await runMany(e, [
    { type: BlkType.OUT, sector: 4, out: data },
    { type: BlkType.FLUSH },
    { type: BlkType.IN, sector: 4, inLen: 4096 },
    { type: BlkType.GET_ID, inLen: 20 },
    { type: BlkType.IN, sector: 4, inLen: 4096, segment: 4095 }, // pieces need not be whole sectors, only the total
  ]);
  t.same([w!.status, f!.status, r!.status, id!.status, split!.status], [0, 0, 0, 0, 0]);
  t.ok(r!.data.equals(data) && split!.data.equals(data), 'the reads see the write before them');
  t.ok(handled.n >= 2 && handled.n <= 4, `FLUSH and GET_ID handed out, the plain ones may follow them (${handled.n})`);
  t.equal(e.blk.transport.queues[0]!.stats.completions, 5, 'five completions, no more');
});

t.test('while dirty logging runs, requests are handed out and the pages they write are dirty', async (t) => {
  const e = make();
  const handled = countHandled(e);
  const ioas = e.g.ctx.compatIoas;
  ioas.dirtyStart();
  ioas.dirtyReport(BigInt(BASE), BigInt(MEM_SIZE)); // clear what setting up the rings wrote
  const r = await run(e, { type: BlkType.IN, sector: 0, inLen: 4096 });
  t.equal(r.status, BlkStatus.OK);
  t.equal(handled.n, 1, 'handed out');
  const bits = ioas.dirtyReport(BigInt(BASE), BigInt(MEM_SIZE));
  t.ok(bits.some((b) => b !== 0), 'the read marked guest pages dirty');
  ioas.dirtyStop();
  await run(e, { type: BlkType.IN, sector: 0, inLen: 4096 });
  t.equal(handled.n, 1, 'served in place again once dirty logging stopped');
});

t.test('without FLUSH (write-through) writes are handed out, reads still served in place', async (t) => {
  const e = make({ dropFeatures: bit(BlkFeature.FLUSH) });
  const handled = countHandled(e);
  t.equal((await run(e, { type: BlkType.OUT, sector: 0, out: Buffer.alloc(512, 7) })).status, BlkStatus.OK);
  t.equal(handled.n, 1, 'the write went the general way (made durable before it completes)');
  t.equal((await run(e, { type: BlkType.IN, sector: 0, inLen: 512 })).data[0], 7);
  t.equal(handled.n, 1, 'the read did not');
});
