// virtioBlkServe: virtio-blk requests served straight off a split ring in a
// window of memory. Plain IN and OUT chains are served in order; anything
// else stops the loop before it with nothing touched (the TS path takes it);
// no ring, however malformed, makes it read or write outside its window.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BlkRing as F, virtioBlkServe } from '../../native/index.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vbr-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

const WIN = 0x10000; // IOVA of the window's first byte
const GUARD = 4096; // bytes either side of the window that must never change
const SIZE = 16;
// Offsets in the window.
const DESC = 0;
const AVAIL = 0x1000;
const USED = 0x2000;
const TABLE = 0x3000;
const HDR = 0x4000;
const STATUS = 0x5000;
const DATA = 0x10000;
const WIN_LEN = 0x40000;
const SECTORS = 64;

const F_NEXT = 1;
const F_WRITE = 2;
const F_INDIRECT = 4;

interface Rig {
  all: Buffer;
  win: Buffer;
  fd: number;
  image: string;
  st: Float64Array;
  avail: number;
  desc(table: number, i: number, addr: number, len: number, flags: number, next?: number): void;
  header(i: number, type: number, sector: number): number;
  push(head: number): void;
  serve(): number;
}

function rig(t: Test): Rig {
  const image = path.join(dir, `img${Math.random().toString(16).slice(2)}`);
  const content = Buffer.alloc(SECTORS * 512);
  for (let i = 0; i < content.length; i++) content[i] = (i * 7) & 0xff;
  fs.writeFileSync(image, content);
  const fd = fs.openSync(image, 'r+');
  t.teardown(() => fs.closeSync(fd));
  const all = Buffer.alloc(WIN_LEN + 2 * GUARD, 0x5a);
  const win = all.subarray(GUARD, GUARD + WIN_LEN);
  win.fill(0);
  win.fill(0xee, STATUS, STATUS + 256);
  const st = new Float64Array(F.FIELDS);
  st[F.WINDOW_IOVA] = WIN;
  st[F.DESC] = WIN + DESC;
  st[F.AVAIL] = WIN + AVAIL;
  st[F.USED] = WIN + USED;
  st[F.SIZE] = SIZE;
  st[F.INDIRECT] = 1;
  st[F.FD] = fd;
  st[F.CAPACITY] = SECTORS;
  st[F.MAX_WRITE] = 1 << 20;
  const r: Rig = {
    all,
    win,
    fd,
    image,
    st,
    avail: 0,
    desc(table, i, addr, len, flags, next = 0) {
      const o = table + 16 * i;
      win.writeBigUInt64LE(BigInt(addr), o);
      win.writeUInt32LE(len, o + 8);
      win.writeUInt16LE(flags, o + 12);
      win.writeUInt16LE(next, o + 14);
    },
    header(i, type, sector) {
      const o = HDR + 16 * i;
      win.writeUInt32LE(type, o);
      win.writeBigUInt64LE(BigInt(sector), o + 8);
      return WIN + o;
    },
    push(head) {
      win.writeUInt16LE(head, AVAIL + 4 + 2 * (r.avail % SIZE));
      r.avail = (r.avail + 1) & 0xffff;
      win.writeUInt16LE(r.avail, AVAIL + 2);
    },
    serve: () => virtioBlkServe(win, st),
  };
  return r;
}

const usedElem = (r: Rig, n: number) => ({ id: r.win.readUInt32LE(USED + 4 + 8 * n), len: r.win.readUInt32LE(USED + 8 + 8 * n) });
const guardIntact = (r: Rig) => r.all.subarray(0, GUARD).every((b) => b === 0x5a) && r.all.subarray(GUARD + WIN_LEN).every((b) => b === 0x5a);

t.test('plain OUT and IN chains, direct and indirect, served in order', async (t) => {
  const r = rig(t);
  const data = Buffer.alloc(4096);
  for (let i = 0; i < data.length; i++) data[i] = (i * 13 + 1) & 0xff;
  data.copy(r.win, DATA);
  // OUT at sector 8: header, two data descriptors, status (direct chain 0-3).
  r.desc(DESC, 0, r.header(0, 1, 8), 16, F_NEXT, 1);
  r.desc(DESC, 1, WIN + DATA, 1024, F_NEXT, 2);
  r.desc(DESC, 2, WIN + DATA + 1024, 3072, F_NEXT, 3);
  r.desc(DESC, 3, WIN + STATUS, 1, F_WRITE);
  // IN of the same sectors through an indirect table, into pieces elsewhere.
  r.desc(TABLE, 0, r.header(1, 0, 8), 16, F_NEXT, 1);
  r.desc(TABLE, 1, WIN + DATA + 0x8000, 512, F_NEXT | F_WRITE, 2);
  r.desc(TABLE, 2, WIN + DATA + 0x9000, 3584, F_NEXT | F_WRITE, 3);
  r.desc(TABLE, 3, WIN + STATUS + 1, 1, F_WRITE);
  r.desc(DESC, 4, WIN + TABLE, 64, F_INDIRECT);
  r.push(0);
  r.push(4);
  t.equal(r.serve(), 2, 'both served');
  t.ok(fs.readFileSync(r.image).subarray(8 * 512, 8 * 512 + 4096).equals(data), 'the OUT data is in the image');
  t.ok(Buffer.concat([r.win.subarray(DATA + 0x8000, DATA + 0x8200), r.win.subarray(DATA + 0x9000, DATA + 0x9e00)]).equals(data), 'the IN read it back');
  t.same([r.win[STATUS], r.win[STATUS + 1]], [0, 0], 'status OK');
  t.same([usedElem(r, 0), usedElem(r, 1)], [{ id: 0, len: 1 }, { id: 4, len: 4097 }], 'used elements: status byte; data + status');
  t.equal(r.win.readUInt16LE(USED + 2), 2, 'used->idx');
  t.same(
    [F.LAST_AVAIL, F.USED_IDX, F.READS, F.WRITES, F.BYTES_READ, F.BYTES_WRITTEN].map((i) => r.st[i]),
    [2, 2, 1, 1, 4096, 4096],
    'state: ring position and counts',
  );
  t.ok(r.st[F.WRITE_NS]! > 0, 'the write was timed');
  t.equal(r.serve(), 0, 'nothing more available');
  t.ok(guardIntact(r));
});

t.test('the ring position wraps at 65536', async (t) => {
  const r = rig(t);
  r.st[F.LAST_AVAIL] = 65535;
  r.st[F.USED_IDX] = 65535;
  r.avail = 65535;
  r.desc(DESC, 0, r.header(0, 0, 0), 16, F_NEXT, 1);
  r.desc(DESC, 1, WIN + DATA, 512, F_NEXT | F_WRITE, 2);
  r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE);
  r.push(0);
  r.push(0);
  t.equal(r.serve(), 2);
  t.same([r.st[F.LAST_AVAIL], r.st[F.USED_IDX], r.win.readUInt16LE(USED + 2)], [1, 1, 1]);
});

/** A chain the loop must leave alone: each builds it at head 0 after a plain IN at head 8. */
const refused: [string, (r: Rig) => void][] = [
  ['FLUSH', (r) => { r.desc(DESC, 0, r.header(0, 4, 0), 16, F_NEXT, 1); r.desc(DESC, 1, WIN + STATUS, 1, F_WRITE); }],
  ['GET_ID', (r) => { r.desc(DESC, 0, r.header(0, 8, 0), 16, F_NEXT, 1); r.desc(DESC, 1, WIN + DATA, 20, F_NEXT | F_WRITE, 2); r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE); }],
  ['a header split in two', (r) => { const h = r.header(0, 0, 0); r.desc(DESC, 0, h, 8, F_NEXT, 1); r.desc(DESC, 1, h + 8, 8, F_NEXT, 2); r.desc(DESC, 2, WIN + DATA, 512, F_NEXT | F_WRITE, 3); r.desc(DESC, 3, WIN + STATUS, 1, F_WRITE); }],
  ['the status inside the data descriptor', (r) => { r.desc(DESC, 0, r.header(0, 0, 0), 16, F_NEXT, 1); r.desc(DESC, 1, WIN + DATA, 513, F_WRITE); }],
  ['IN with readable data', (r) => { r.desc(DESC, 0, r.header(0, 0, 0), 16, F_NEXT, 1); r.desc(DESC, 1, WIN + DATA, 512, F_NEXT, 2); r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE); }],
  ['OUT with writable data', (r) => { r.desc(DESC, 0, r.header(0, 1, 0), 16, F_NEXT, 1); r.desc(DESC, 1, WIN + DATA, 512, F_NEXT | F_WRITE, 2); r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE); }],
  ['data of both directions', (r) => { r.desc(DESC, 0, r.header(0, 0, 0), 16, F_NEXT, 1); r.desc(DESC, 1, WIN + DATA, 512, F_NEXT | F_WRITE, 2); r.desc(DESC, 2, WIN + DATA + 512, 512, F_NEXT, 3); r.desc(DESC, 3, WIN + STATUS, 1, F_WRITE); }],
  ['a descriptor after the status', (r) => { r.desc(DESC, 0, r.header(0, 0, 0), 16, F_NEXT, 1); r.desc(DESC, 1, WIN + DATA, 512, F_NEXT | F_WRITE, 2); r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE | F_NEXT, 3); r.desc(DESC, 3, WIN + DATA + 512, 512, F_WRITE); }],
  ['no data', (r) => { r.desc(DESC, 0, r.header(0, 0, 0), 16, F_NEXT, 1); r.desc(DESC, 1, WIN + STATUS, 1, F_WRITE); }],
  ['a zero-length data descriptor', (r) => { r.desc(DESC, 0, r.header(0, 0, 0), 16, F_NEXT, 1); r.desc(DESC, 1, WIN + DATA, 0, F_NEXT | F_WRITE, 2); r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE); }],
  ['a length not in sectors', (r) => { r.desc(DESC, 0, r.header(0, 0, 0), 16, F_NEXT, 1); r.desc(DESC, 1, WIN + DATA, 500, F_NEXT | F_WRITE, 2); r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE); }],
  ['a sector past the end', (r) => { r.desc(DESC, 0, r.header(0, 0, SECTORS), 16, F_NEXT, 1); r.desc(DESC, 1, WIN + DATA, 512, F_NEXT | F_WRITE, 2); r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE); }],
  ['a request across the end', (r) => { r.desc(DESC, 0, r.header(0, 0, SECTORS - 1), 16, F_NEXT, 1); r.desc(DESC, 1, WIN + DATA, 1024, F_NEXT | F_WRITE, 2); r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE); }],
  ['a sector near 2^64', (r) => { r.desc(DESC, 0, r.header(0, 0, 0), 16, F_NEXT, 1); r.win.writeBigUInt64LE(0xffff_ffff_ffff_fff0n, HDR + 8); r.desc(DESC, 1, WIN + DATA, 512, F_NEXT | F_WRITE, 2); r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE); }],
  ['data outside the window', (r) => { r.desc(DESC, 0, r.header(0, 0, 0), 16, F_NEXT, 1); r.desc(DESC, 1, WIN + WIN_LEN - 256, 512, F_NEXT | F_WRITE, 2); r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE); }],
  ['data below the window', (r) => { r.desc(DESC, 0, r.header(0, 0, 0), 16, F_NEXT, 1); r.desc(DESC, 1, WIN - 512, 512, F_NEXT | F_WRITE, 2); r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE); }],
  ['an address near 2^64', (r) => { r.desc(DESC, 0, r.header(0, 0, 0), 16, F_NEXT, 1); r.win.writeBigUInt64LE(0xffff_ffff_ffff_fe00n, DESC + 16); r.win.writeUInt32LE(512, DESC + 24); r.win.writeUInt16LE(F_NEXT | F_WRITE, DESC + 28); r.win.writeUInt16LE(2, DESC + 30); r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE); }],
  ['a next index out of the table', (r) => { r.desc(DESC, 0, r.header(0, 0, 0), 16, F_NEXT, SIZE); }],
  ['a loop', (r) => { r.desc(DESC, 0, r.header(0, 0, 0), 16, F_NEXT, 1); r.desc(DESC, 1, WIN + DATA, 512, F_NEXT | F_WRITE, 1); }],
  ['an indirect table that is not whole descriptors', (r) => { r.desc(TABLE, 0, r.header(0, 0, 0), 16, F_NEXT, 1); r.desc(TABLE, 1, WIN + DATA, 512, F_NEXT | F_WRITE, 2); r.desc(TABLE, 2, WIN + STATUS, 1, F_WRITE); r.desc(DESC, 0, WIN + TABLE, 40, F_INDIRECT); }],
  ['an indirect descriptor with NEXT', (r) => { r.desc(TABLE, 0, r.header(0, 0, 0), 16, F_NEXT, 1); r.desc(TABLE, 1, WIN + DATA, 512, F_NEXT | F_WRITE, 2); r.desc(TABLE, 2, WIN + STATUS, 1, F_WRITE); r.desc(DESC, 0, WIN + TABLE, 48, F_INDIRECT | F_NEXT, 1); }],
  ['an indirect table in an indirect table', (r) => { r.desc(TABLE, 0, WIN + TABLE + 0x100, 48, F_INDIRECT); r.desc(DESC, 0, WIN + TABLE, 16, F_INDIRECT); }],
  ['an indirect table outside the window', (r) => { r.desc(DESC, 0, WIN + WIN_LEN - 16, 48, F_INDIRECT); }],
  ['indirect without VIRTIO_F_INDIRECT_DESC', (r) => { r.st[F.INDIRECT] = 0; r.desc(TABLE, 0, r.header(0, 0, 0), 16, F_NEXT, 1); r.desc(TABLE, 1, WIN + DATA, 512, F_NEXT | F_WRITE, 2); r.desc(TABLE, 2, WIN + STATUS, 1, F_WRITE); r.desc(DESC, 0, WIN + TABLE, 48, F_INDIRECT); }],
  ['an OUT with writes not allowed', (r) => { r.st[F.MAX_WRITE] = 0; r.desc(DESC, 0, r.header(0, 1, 0), 16, F_NEXT, 1); r.desc(DESC, 1, WIN + DATA, 512, F_NEXT, 2); r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE); }],
  ['an OUT larger than allowed', (r) => { r.st[F.MAX_WRITE] = 512; r.desc(DESC, 0, r.header(0, 1, 0), 16, F_NEXT, 1); r.desc(DESC, 1, WIN + DATA, 1024, F_NEXT, 2); r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE); }],
];

t.test('a chain it does not serve stops the loop there, untouched', async (t) => {
  for (const [what, build] of refused) {
    const r = rig(t);
    // A plain IN first (head 8..10), then the refused chain at head 0, then another plain IN.
    r.desc(DESC, 8, r.header(8, 0, 2), 16, F_NEXT, 9);
    r.desc(DESC, 9, WIN + DATA + 0x20000, 512, F_NEXT | F_WRITE, 10);
    r.desc(DESC, 10, WIN + STATUS + 8, 1, F_WRITE);
    build(r);
    r.push(8);
    r.push(0);
    r.push(8);
    const before = fs.readFileSync(r.image);
    const win = Buffer.from(r.win);
    t.equal(r.serve(), 1, `${what}: the plain request before it is served, then the loop stops`);
    t.same([r.st[F.LAST_AVAIL], r.st[F.USED_IDX], r.win.readUInt16LE(USED + 2)], [1, 1, 1], `${what}: the ring stops before it`);
    // Nothing else changed: only the served request's status, data and used element.
    win[STATUS + 8] = 0;
    r.win.copy(win, DATA + 0x20000, DATA + 0x20000, DATA + 0x20200);
    r.win.copy(win, USED, USED, USED + 12);
    t.ok(r.win.equals(win), `${what}: no other byte of the window written`);
    t.ok(fs.readFileSync(r.image).equals(before), `${what}: the image untouched`);
    t.ok(guardIntact(r), `${what}: nothing outside the window`);
  }
});

t.test('a read the file cannot fill (it ended) is left to the caller', async (t) => {
  const r = rig(t);
  r.st[F.CAPACITY] = SECTORS + 8; // more sectors than the file has
  r.desc(DESC, 0, r.header(0, 0, SECTORS), 16, F_NEXT, 1);
  r.desc(DESC, 1, WIN + DATA, 512, F_NEXT | F_WRITE, 2);
  r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE);
  r.push(0);
  t.equal(r.serve(), 0);
  t.equal(r.win[STATUS], 0xee, 'status untouched');
  r.st[F.FD] = 1 << 20; // not an open fd
  r.win.writeBigUInt64LE(0n, HDR + 8);
  t.equal(r.serve(), 0, 'an I/O error: left to the caller');
});

t.test('rings outside the window, misaligned or malformed: nothing served', async (t) => {
  const cases: [string, (r: Rig) => void][] = [
    ['descriptor table past the window', (r) => (r.st[F.DESC] = WIN + WIN_LEN - 16 * SIZE + 16)],
    ['available ring below the window', (r) => (r.st[F.AVAIL] = WIN - 2)],
    ['used ring past the window (avail_event included)', (r) => (r.st[F.USED] = WIN + WIN_LEN - (4 + 8 * SIZE))],
    ['descriptor table misaligned', (r) => (r.st[F.DESC] = WIN + DESC + 8)],
    ['available ring misaligned', (r) => (r.st[F.AVAIL] = WIN + AVAIL + 1)],
    ['used ring misaligned', (r) => (r.st[F.USED] = WIN + USED + 2)],
    ['avail->idx more than a ring ahead', (r) => r.win.writeUInt16LE(SIZE + 1, AVAIL + 2)],
    ['a head out of the table', (r) => r.win.writeUInt16LE(SIZE, AVAIL + 4)],
    ['a zero-sized queue', (r) => (r.st[F.SIZE] = 0)],
  ];
  for (const [what, spoil] of cases) {
    const r = rig(t);
    r.desc(DESC, 0, r.header(0, 0, 0), 16, F_NEXT, 1);
    r.desc(DESC, 1, WIN + DATA, 512, F_NEXT | F_WRITE, 2);
    r.desc(DESC, 2, WIN + STATUS, 1, F_WRITE);
    r.push(0);
    spoil(r);
    t.equal(r.serve(), 0, what);
    t.equal(r.win[STATUS], 0xee, `${what}: status untouched`);
    t.ok(guardIntact(r), `${what}: nothing outside the window`);
  }
});

t.test('bad arguments throw before anything is read', async (t) => {
  const r = rig(t);
  t.throws(() => virtioBlkServe(new Uint16Array(8) as unknown as Uint8Array, r.st), TypeError, 'window not a Uint8Array');
  t.throws(() => virtioBlkServe(r.win, new Float64Array(F.FIELDS - 1)), TypeError, 'state too short');
  t.throws(() => virtioBlkServe(r.win, new Float32Array(F.FIELDS) as unknown as Float64Array), TypeError, 'state not a Float64Array');
  const bad: [number, number][] = [
    [F.SIZE, 1025],
    [F.SIZE, -1],
    [F.FD, -1],
    [F.FD, 2 ** 31],
    [F.INDIRECT, 2],
    [F.LAST_AVAIL, 65536],
    [F.USED_IDX, 1.5],
    [F.WINDOW_IOVA, 2 ** 53],
    [F.DESC, NaN],
    [F.CAPACITY, Infinity],
    [F.MAX_WRITE, 2 ** 31],
  ];
  for (const [i, v] of bad) {
    const st = Float64Array.from(r.st);
    st[i] = v;
    t.throws(() => virtioBlkServe(r.win, st), RangeError, `field ${i} = ${v}`);
  }
});

t.test('random rings never reach outside the window', async (t) => {
  const r = rig(t);
  let seed = 12345;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  const near = () => (rnd(4) === 0 ? rnd(2 ** 31) * 2 ** rnd(33) : WIN + rnd(WIN_LEN + 64) - 32);
  let served = 0;
  for (let round = 0; round < 2000; round++) {
    for (let i = 0; i < SIZE; i++) r.desc(DESC, i, near(), rnd(3) === 0 ? rnd(2 ** 32) : rnd(9000), rnd(8), rnd(SIZE + 2));
    for (let i = 0; i < 12; i++) r.desc(TABLE, i, near(), rnd(4096), rnd(8), rnd(14));
    for (let i = 0; i < 4; i++) r.header(i, rnd(3), rnd(SECTORS + 4));
    for (let i = 0; i < SIZE; i++) r.win.writeUInt16LE(rnd(SIZE + 2), AVAIL + 4 + 2 * i);
    r.win.writeUInt16LE(rnd(65536), AVAIL + 2);
    r.st[F.LAST_AVAIL] = rnd(65536);
    served += r.serve();
  }
  t.ok(guardIntact(r), 'the bytes around the window never changed');
  t.ok(served >= 0, `${served} random chains happened to be plain requests`);
});
