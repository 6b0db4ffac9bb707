// virtio-blk's mapped fast path when the file I/O cannot finish inline and
// goes to the thread pool (inline page-cache copies off, as for data that is
// not cached): the data still arrives, and the guest ranges stay held until
// the I/O is done, so an unmap that comes meanwhile waits for it.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fakeFds } from '../helpers.js';
import { BASE, DEFAULT_DRIVER_FEATURES, MEM_SIZE, attach, enableMsix, makeGuest, PciDriver, until } from './env.js';
import type { DescChain } from '../../../devices/virtio/virtqueue.js';

// Read when file-io.ts loads: set before the import below.
process.env.VFIO_USER_TS_BLK_INLINE_IO = '0';
const { VirtioBlk } = await import('../../../devices/virtio-blk/index.js');
const { BlkStatus, BlkType } = await import('../../../devices/virtio-blk/constants.js');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vblk-pool-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

function setup() {
  const fds = fakeFds();
  const blk = new VirtioBlk({ disk: path.join(dir, `d${Math.random()}.img`), size: 4 << 20, fdOps: fds.ops });
  t.teardown(() => blk.close());
  const g = makeGuest();
  attach(blk.device, g);
  const drv = new PciDriver(blk.device, g.mem);
  const [ring] = drv.init(1, { msix: true, features: DEFAULT_DRIVER_FEATURES | (drv.enablePci(), drv.deviceFeatures()) });
  enableMsix(blk.device, fds);
  return { blk, g, drv, ring: ring! };
}

/** One request: header, data split in 4 KiB descriptors, status. */
function request(e: ReturnType<typeof setup>, type: number, sector: number, data: Buffer | number) {
  const mem = e.g.mem;
  const hdr = mem.alloc(16);
  mem.set32(hdr, type);
  mem.set64(hdr + 8, sector);
  const len = typeof data === 'number' ? data : data.length;
  const buf = mem.alloc(len, 4096);
  if (typeof data !== 'number') mem.write(buf, data);
  const st = mem.alloc(1);
  mem.write(st, Buffer.from([0xee]));
  const bufs = [{ addr: hdr, len: 16 }];
  for (let o = 0; o < len; o += 4096) bufs.push({ addr: buf + o, len: Math.min(4096, len - o), write: type === BlkType.IN } as never);
  bufs.push({ addr: st, len: 1, write: true } as never);
  e.ring.push(e.ring.chain(bufs));
  return { status: () => mem.read(st, 1)[0], data: () => mem.read(buf, len) };
}

t.test('writes and reads on the thread pool', async (t) => {
  const e = setup();
  const data = randomBytes(64 * 1024);
  const w = request(e, BlkType.OUT, 8, data);
  e.drv.notify(0);
  await until(() => e.ring.usedIdx === 1, 'write used');
  t.equal(w.status(), BlkStatus.OK);
  t.ok(fs.readFileSync(e.blk.disk).subarray(8 * 512, 8 * 512 + data.length).equals(data), 'the image holds the data');
  const r = request(e, BlkType.IN, 8, data.length);
  e.drv.notify(0);
  await until(() => e.ring.usedIdx === 2, 'read used');
  t.equal(r.status(), BlkStatus.OK);
  t.ok(r.data().equals(data), 'the guest got the data back');
  t.equal(e.blk.stats.ioErrors, 0);
});

t.test('an unmap during a thread-pool read waits for it', async (t) => {
  const e = setup();
  const spec = e.blk.transport.spec as { handle: (c: DescChain) => void };
  const orig = spec.handle;
  let unmap: { idle: boolean; drained: Promise<void> } | undefined;
  spec.handle = (c) => {
    orig(c);
    // Right after the request went to the pool, in the same turn: the guest memory goes away.
    unmap = e.g.ctx.type1.unmap({ iova: BASE, size: MEM_SIZE });
  };
  request(e, BlkType.IN, 0, 128 * 1024);
  e.drv.notify(0);
  await until(() => unmap !== undefined, 'request taken');
  spec.handle = orig;
  t.equal(unmap!.idle, false, 'the unmap found the ranges held by the I/O');
  let drained = false;
  void unmap!.drained.then(() => (drained = true));
  await until(() => drained, 'unmap drained', 10_000);
  t.equal(e.blk.stats.reads, 1, 'the read ended');
  t.equal(e.g.ctx.compatIoas.list().length, 0, 'nothing is mapped any more');
});
