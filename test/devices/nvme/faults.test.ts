// Fault rules on an NVMe controller: an `nvme-status` rule completes the
// I/O commands in its LBA range with its status (Do Not Retry set) without
// doing them, counts each one, and leaves every other command alone; a
// `blk-status` rule maps to Internal Error / Invalid Command Opcode.
import t from 'tap';
import fs from 'node:fs';
import { FaultInjector } from '../../../faults/injector.js';
import { make, sc, tempDir, PAGE } from './env.js';

const image = tempDir(t);
const quiet = { error() {}, warn() {}, info() {}, debug() {} };

function rw(opcode: number, slba: number, buf: number) {
  return { opcode, nsid: 1, prp1: buf, prp2: 0, cdw10: slba, cdw12: 7 }; // 8 blocks of 512
}

t.test('nvme-status on an LBA range: those commands fail with it, the others run', async (t) => {
  const inj = new FaultInjector(['nvme0'], { log: quiet });
  inj.add({ id: 'bad', device: 'nvme0', match: { lba: [100, 108], op: 'read' }, action: { type: 'nvme-status', sct: 2, sc: 0x81 } });
  const e = await make(t, image, { size: 1 << 20, faults: inj.device('nvme0')! });
  const q = await e.drv.createIoQueues(1, 16);
  const buf = e.g.mem.alloc(PAGE, PAGE);
  e.g.mem.write(buf, Buffer.alloc(4096, 0x5a));
  t.equal((await e.drv.cmd(q, rw(0x01, 100, buf))).status, 0, 'a write to the range is not a read: done');
  t.equal((await e.drv.cmd(q, rw(0x02, 100, buf))).status, sc(2, 0x81), 'read of [100, 108): the injected Unrecovered Read Error, DNR set');
  t.equal((await e.drv.cmd(q, rw(0x02, 104, buf))).status, sc(2, 0x81), 'a read overlapping the range too');
  t.equal((await e.drv.cmd(q, rw(0x02, 108, buf))).status, 0, 'a read just past it runs');
  t.equal((await e.drv.cmd(q, rw(0x02, 92, buf))).status, 0, 'a read just before it runs');
  const fd = fs.openSync(e.disks[0]!, 'r');
  const got = Buffer.alloc(4096);
  fs.readSync(fd, got, 0, 4096, 100 * 512);
  fs.closeSync(fd);
  t.same(got, Buffer.alloc(4096, 0x5a), 'the write reached the image');
  const l = inj.list();
  t.match(l.rules[0], { matched: 2, injected: 2 }, 'counted once per command');
});

t.test('blk-status rules on an NVMe device: ioerr is Internal Error, unsupp Invalid Opcode', async (t) => {
  const inj = new FaultInjector(['nvme0'], { log: quiet });
  inj.add({ id: 'w', match: { op: 'write' }, nth: 1, times: 1, action: { type: 'blk-status', status: 'ioerr' } });
  inj.add({ id: 'f', match: { op: 'flush' }, action: { type: 'blk-status', status: 'unsupp' } });
  const e = await make(t, image, { size: 1 << 20, faults: inj.device('nvme0')! });
  const q = await e.drv.createIoQueues(1, 16);
  const buf = e.g.mem.alloc(PAGE, PAGE);
  t.equal((await e.drv.cmd(q, rw(0x01, 0, buf))).status, sc(0, 0x06), 'first write: Internal Error');
  t.equal((await e.drv.cmd(q, rw(0x01, 0, buf))).status, 0, 'second write runs (times 1)');
  t.equal((await e.drv.cmd(q, { opcode: 0x00, nsid: 1, prp1: 0, prp2: 0 })).status, sc(0, 0x01), 'flush: Invalid Command Opcode');
});
