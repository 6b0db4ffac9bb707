// Admin commands against hand-built queues: the success status and the
// error statuses of Identify, Get/Set Features, Get Log Page, Create/Delete
// I/O SQ and CQ, Abort, Asynchronous Event Request, Doorbell Buffer Config,
// and anything else (Invalid Command Opcode).
import t from 'tap';
import { make, sc, tempDir, turns, PAGE, type Env } from './env.js';

const image = tempDir(t);
const OK = 0;
const INVALID_OPCODE = sc(0, 0x01);
const INVALID_FIELD = sc(0, 0x02);
const INVALID_NS = sc(0, 0x0b);
const CQ_INVALID = sc(1, 0x00);
const INVALID_QID = sc(1, 0x01);
const INVALID_QSIZE = sc(1, 0x02);
const AER_LIMIT = sc(1, 0x05);
const INVALID_VECTOR = sc(1, 0x08);
const INVALID_LOG = sc(1, 0x09);
const INVALID_DELETION = sc(1, 0x0c);
const NOT_SAVEABLE = sc(1, 0x0d);
const SEQUENCE_ERROR = sc(0, 0x0c);

async function admin(e: Env, sqe: Parameters<Env['drv']['cmd']>[1]) {
  return e.drv.cmd(e.drv.admin, sqe);
}

t.test('Identify', async (t) => {
  const e = await make(t, image, { images: 2, serial: 'SN-1234', lbaSize: 4096 });
  const buf = e.g.mem.alloc(PAGE, PAGE);
  const id = (cdw10: number, nsid = 0, cdw11 = 0) => admin(e, { opcode: 0x06, prp1: buf, cdw10, nsid, cdw11 });

  t.equal((await id(1)).status, OK, 'controller');
  const c = e.g.mem.read(buf, PAGE);
  t.equal(c.toString('latin1', 4, 24).trimEnd(), 'SN-1234', 'serial number');
  t.equal(c.readUInt32LE(516), 2, 'NN: two namespaces');
  t.equal(c.readUInt16LE(256) & 0x100, 0x100, 'OACS: Doorbell Buffer Config');
  t.equal(c[512], 0x66, 'SQES');
  t.equal(c[513], 0x44, 'CQES');
  t.equal(c[77], 8, 'MDTS');
  t.equal(c.readUInt32LE(536) & 3, 1, 'SGLs supported');

  t.equal((await id(0, 2)).status, OK, 'namespace 2');
  const ns = e.g.mem.read(buf, PAGE);
  t.equal(Number(ns.readBigUInt64LE(0)), 256, 'NSZE: 1 MiB of 4 KiB blocks');
  t.equal(ns[128 + 2], 12, 'LBAF0: 4096-byte blocks');
  t.equal((await id(0, 3)).status, INVALID_NS, 'namespace 3 does not exist');
  t.equal((await id(0, 0)).status, INVALID_NS, 'namespace 0');

  t.equal((await id(2, 0)).status, OK, 'active namespace list');
  let list = e.g.mem.read(buf, 16);
  t.same([list.readUInt32LE(0), list.readUInt32LE(4), list.readUInt32LE(8)], [1, 2, 0]);
  t.equal((await id(2, 1)).status, OK, 'active namespace list after 1');
  list = e.g.mem.read(buf, 8);
  t.same([list.readUInt32LE(0), list.readUInt32LE(4)], [2, 0]);
  t.equal((await id(2, 0xfffffffe)).status, INVALID_NS);

  t.equal((await id(3, 1)).status, OK, 'namespace identification descriptors');
  const d = e.g.mem.read(buf, 64);
  t.same([d[0], d[1]], [1, 8], 'EUI64 first');
  t.same([d[12], d[13]], [2, 16], 'then NGUID');
  t.same([d[32], d[33], d[36]], [4, 1, 0], 'then CSI: NVM');

  t.equal((await id(6, 0, 0)).status, OK, 'NVM command set controller (CSI 0)');
  t.equal((await id(6, 0, 2 << 24)).status, INVALID_FIELD, 'another command set');
  t.equal((await id(5, 1, 0)).status, OK, 'NVM command set namespace');
  t.equal((await id(0x10)).status, INVALID_FIELD, 'an unknown CNS');
  t.equal((await admin(e, { opcode: 0x06, prp1: 0x7000_0000, cdw10: 1 })).status, sc(0, 0x04, false), 'unmapped buffer: Data Transfer Error');
});

t.test('Get/Set Features', async (t) => {
  let now = 1_000_000;
  const e = await make(t, image, { queues: 3, clock: () => now });
  const get = (fid: number, cdw11 = 0, sel = 0, prp1 = 0) => admin(e, { opcode: 0x0a, cdw10: fid | (sel << 8), cdw11, prp1 });
  const set = (fid: number, cdw11: number, prp1 = 0) => admin(e, { opcode: 0x09, cdw10: fid, cdw11, prp1 });

  let c = await set(0x07, (7 << 16) | 7);
  t.equal(c.status, OK, 'number of queues');
  t.equal(c.dw0, (2 << 16) | 2, '3 of the 8 asked for');
  c = await get(0x07);
  t.equal(c.dw0, (2 << 16) | 2);
  t.equal((await set(0x07, 0xffff)).status, INVALID_FIELD, '65536 queues');
  await e.drv.createIoQueues(1, 4);
  t.equal((await set(0x07, 0)).status, SEQUENCE_ERROR, 'with I/O queues in place');

  t.equal((await set(0x06, 0)).status, OK, 'volatile write cache off');
  t.equal((await get(0x06)).dw0, 0);
  t.equal(e.ctrl.writeCache, false);
  t.equal((await get(0x06, 0, 1)).dw0, 1, 'default: on');
  t.equal((await set(0x08, 0x0a05)).status, OK, 'interrupt coalescing');
  t.equal((await get(0x08)).dw0, 0x0a05);
  t.equal((await set(0x09, 2 | (1 << 16))).status, OK, 'interrupt vector configuration');
  t.equal((await get(0x09, 2)).dw0, 2 | (1 << 16));
  t.equal((await get(0x09, 9)).status, INVALID_FIELD, 'vector 9 does not exist');
  t.equal((await set(0x02, 1)).status, INVALID_FIELD, 'power state 1 does not exist');
  t.equal((await set(0x01, 0x3)).status, OK, 'arbitration');
  t.equal((await set(0x0b, 0x100)).status, OK, 'async event configuration');
  t.equal((await get(0x0b)).dw0, 0x100);
  t.equal((await get(0x04)).dw0, 0x157, 'temperature threshold');
  t.equal((await get(0x07, 0, 3)).dw0 & 4, 4, 'supported capabilities: changeable');
  t.equal((await get(0x99)).status, INVALID_FIELD, 'unknown feature');
  t.equal((await admin(e, { opcode: 0x09, cdw10: 0x06 | (1 << 31), cdw11: 1 })).status, NOT_SAVEABLE);

  // Timestamp: set from the host, then it runs on the controller's clock.
  const buf = e.g.mem.alloc(PAGE, PAGE);
  const ts = Buffer.alloc(8);
  ts.writeUIntLE(5_000_000, 0, 6);
  e.g.mem.write(buf, ts);
  t.equal((await set(0x0e, 0, buf)).status, OK, 'set timestamp');
  now += 1234;
  e.g.mem.view(buf, 8).fill(0);
  t.equal((await get(0x0e, 0, 0, buf)).status, OK, 'get timestamp');
  const got = e.g.mem.read(buf, 8);
  t.equal(got.readUIntLE(0, 6), 5_001_234, 'advanced by the clock');
  t.equal((got[6]! >> 1) & 7, 1, 'origin: set by the host');
});

t.test('Get Log Page', async (t) => {
  const e = await make(t, image);
  const buf = e.g.mem.alloc(2 * PAGE, PAGE);
  const log = (lid: number, dwords: number, offset = 0) =>
    admin(e, { opcode: 0x02, prp1: buf, prp2: buf + PAGE, cdw10: lid | ((dwords - 1) << 16), cdw12: offset });
  t.equal((await log(0x02, 128)).status, OK, 'SMART / health');
  t.equal(e.g.mem.read(buf, 4)[3], 100, 'available spare 100%');
  t.equal((await log(0x01, 16)).status, OK, 'error information');
  t.equal((await log(0x03, 128)).status, OK, 'firmware slot');
  t.equal(e.g.mem.read(buf, 1)[0], 1, 'slot 1 active');
  t.equal((await log(0x05, 1024)).status, OK, 'commands supported and effects (4 KiB, two pages)');
  const fx = e.g.mem.read(buf, PAGE);
  t.equal(fx.readUInt32LE(0x06 * 4) & 1, 1, 'Identify supported');
  t.equal(fx.readUInt32LE(1024 + 0x01 * 4), 3, 'Write supported, changes the media');
  t.equal(fx.readUInt32LE(1024 + 0x02 * 4), 1, 'Read supported');
  t.equal(fx.readUInt32LE(0x80 * 4), 0, 'format NVM not supported');
  t.equal((await log(0x05, 2, 1024 + 4)).status, OK, 'an offset');
  t.equal(e.g.mem.read(buf, 4).readUInt32LE(0), 3, 'starts at the Write entry');
  t.equal((await log(0x02, 1, 4096)).status, INVALID_FIELD, 'offset past the page');
  t.equal((await log(0x02, 1, 2)).status, INVALID_FIELD, 'offset not dword aligned');
  t.equal((await log(0x70, 1)).status, INVALID_LOG, 'unknown log page');
  const huge = await admin(e, { opcode: 0x02, prp1: buf, cdw10: 0x02 | (0xffff << 16), cdw11: 0xffff });
  t.equal(huge.status, INVALID_FIELD, 'NUMDU:NUMDL of 2^32 dwords is refused before any allocation');
  const upper = await admin(e, { opcode: 0x02, prp1: buf, prp2: buf + PAGE, cdw10: 0x05 | (0x3ff << 16), cdw11: 0 });
  t.equal(upper.status, OK, 'NUMDL alone: 1024 dwords');
});

t.test('Create and Delete I/O queues', async (t) => {
  const e = await make(t, image, { queues: 2, queueSize: 64 });
  const mem = e.g.mem.alloc(PAGE, PAGE);
  const createCq = (qid: number, entries: number, cdw11: number, prp1 = mem) =>
    admin(e, { opcode: 0x05, prp1, cdw10: ((entries - 1) << 16) | qid, cdw11 });
  const createSq = (qid: number, entries: number, cdw11: number, prp1 = mem) =>
    admin(e, { opcode: 0x01, prp1, cdw10: ((entries - 1) << 16) | qid, cdw11 });

  t.equal((await createCq(0, 4, 3)).status, INVALID_QID, 'CQ id 0');
  t.equal((await createCq(3, 4, 3)).status, INVALID_QID, 'CQ id past the queues');
  t.equal((await createCq(1, 65, 3)).status, INVALID_QSIZE, 'above MQES');
  t.equal((await createCq(1, 1, 3)).status, INVALID_QSIZE, 'one entry');
  t.equal((await createCq(1, 4, 3 | (3 << 16))).status, INVALID_VECTOR, 'vector 3 of 3');
  t.equal((await createCq(1, 4, 2)).status, INVALID_FIELD, 'not physically contiguous');
  t.equal((await createCq(1, 4, 3, mem + 512)).status, sc(0, 0x13), 'base not page aligned');
  t.equal((await createCq(1, 4, 3 | (1 << 16))).status, OK, 'CQ 1');
  t.equal((await createCq(1, 4, 3)).status, INVALID_QID, 'CQ 1 again');
  t.equal((await createSq(1, 4, 1 | (2 << 16))).status, CQ_INVALID, 'SQ on a missing CQ');
  t.equal((await createSq(1, 4, 1 | (0 << 16))).status, CQ_INVALID, 'SQ on the admin CQ');
  const sqMem = e.g.mem.alloc(PAGE, PAGE);
  t.equal((await createSq(1, 4, 1 | (1 << 16), sqMem)).status, OK, 'SQ 1 on CQ 1');
  t.equal((await createSq(1, 4, 1 | (1 << 16), sqMem)).status, INVALID_QID, 'SQ 1 again');
  t.equal((await admin(e, { opcode: 0x04, cdw10: 1 })).status, INVALID_DELETION, 'CQ 1 still in use');
  t.equal((await admin(e, { opcode: 0x00, cdw10: 2 })).status, INVALID_QID, 'no SQ 2');
  t.equal((await admin(e, { opcode: 0x00, cdw10: 0 })).status, INVALID_QID, 'the admin SQ');
  t.equal((await admin(e, { opcode: 0x00, cdw10: 1 })).status, OK, 'delete SQ 1');
  t.equal((await admin(e, { opcode: 0x04, cdw10: 1 })).status, OK, 'then CQ 1');
  t.equal((await admin(e, { opcode: 0x04, cdw10: 1 })).status, INVALID_QID, 'no CQ 1 any more');
});

t.test('Abort, Asynchronous Event Requests, Doorbell Buffer Config, unknown opcodes', async (t) => {
  const e = await make(t, image);
  const c = await admin(e, { opcode: 0x08, cdw10: 1 | (7 << 16) });
  t.equal(c.status, OK, 'abort');
  t.equal(c.dw0 & 1, 1, 'command not aborted');

  // Four AERs stay outstanding; the fifth is refused.
  for (let i = 0; i < 4; i++) e.drv.put(e.drv.admin, { opcode: 0x0c });
  e.drv.ring(e.drv.admin);
  await turns();
  t.equal(e.drv.peek(e.drv.admin), undefined, 'outstanding AERs do not complete');
  const fifth = await admin(e, { opcode: 0x0c });
  t.equal(fifth.status, AER_LIMIT, 'AER limit exceeded');
  // A write to a doorbell that does not exist is an error event.
  e.drv.write32(0x1000 + 8 * 3, 1);
  const ev = await e.drv.reap(e.drv.admin);
  t.equal(ev.status, OK, 'an AER completed');
  t.equal(ev.dw0 & 7, 0, 'error status event');
  t.equal((ev.dw0 >> 16) & 0xff, 1, 'see the error log');

  const dbs = e.g.mem.alloc(PAGE, PAGE);
  const eis = e.g.mem.alloc(PAGE, PAGE);
  t.equal((await admin(e, { opcode: 0x7c, prp1: dbs + 8, prp2: eis })).status, INVALID_FIELD, 'DBBC: not page aligned');
  t.equal(e.ctrl.stats().shadowDoorbells, 0);
  t.equal((await admin(e, { opcode: 0x7c, prp1: dbs, prp2: eis })).status, OK, 'DBBC');
  t.equal(e.ctrl.stats().shadowDoorbells, 1);

  t.equal((await admin(e, { opcode: 0x80 })).status, INVALID_OPCODE, 'Format NVM is not offered');
  t.equal((await admin(e, { opcode: 0x18 })).status, INVALID_OPCODE, 'Keep Alive is not advertised');
  t.equal((await admin(e, { opcode: 0x06, flags: 0x40, cdw10: 1 })).status, INVALID_FIELD, 'admin commands take PRPs only');
  t.equal(e.ctrl.stats().adminCommands, 11, 'admin commands counted');
});
