// virtio-blk in deterministic mode (inOrder): a request that completes early
// (a read served at once, in place or on the mapped path) is not published
// before one taken earlier that is still on the thread pool (a write larger
// than may block the loop), so the used ring is the same on every run.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fakeFds } from '../helpers.js';
import { attach, DEFAULT_DRIVER_FEATURES, enableMsix, makeGuest, PciDriver, until } from './env.js';
import { VirtioBlk } from '../../../devices/virtio-blk/index.js';
import { BlkStatus, BlkType } from '../../../devices/virtio-blk/constants.js';
import { MAX_BLOCKING_WRITE } from '../../../devices/block/blocking-writes.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vblk-order-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

function setup(inOrder: boolean) {
  const fds = fakeFds();
  const blk = new VirtioBlk({ disk: path.join(dir, `d${Math.random()}.img`), size: 8 << 20, fdOps: fds.ops, inOrder });
  t.teardown(() => blk.close());
  const g = makeGuest();
  attach(blk.device, g);
  const drv = new PciDriver(blk.device, g.mem);
  const [ring] = drv.init(1, { msix: true, features: DEFAULT_DRIVER_FEATURES | (drv.enablePci(), drv.deviceFeatures()) });
  enableMsix(blk.device, fds);
  return { blk, g, drv, ring: ring! };
}

/** One request (header, data in 64 KiB descriptors, status) made available; its head and status. */
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
  for (let o = 0; o < len; o += 65536) bufs.push({ addr: buf + o, len: Math.min(65536, len - o), write: type === BlkType.IN } as never);
  bufs.push({ addr: st, len: 1, write: true } as never);
  const head = e.ring.chain(bufs);
  e.ring.push(head);
  return { head, status: () => mem.read(st, 1)[0] };
}

for (const inOrder of [true, false]) {
  t.test(`a read made available after a thread-pool write, ${inOrder ? 'in order' : 'as they come'}`, async (t) => {
    const e = setup(inOrder);
    const big = randomBytes(MAX_BLOCKING_WRITE + (1 << 20)); // too large to block the loop: the pool
    const w = request(e, BlkType.OUT, 0, big);
    e.drv.notify(0);
    // A second kick in the same turn (the write cannot have completed yet): a read of a hole, served at once.
    const r = request(e, BlkType.IN, 12_000, 4096);
    e.drv.notify(0);
    await until(() => e.ring.usedIdx === 2, 'both used');
    t.equal(w.status(), BlkStatus.OK, 'the write succeeded');
    t.equal(r.status(), BlkStatus.OK, 'the read succeeded');
    const ids = e.ring.takeUsed().map((u) => u.id);
    if (inOrder) t.same(ids, [w.head, r.head], 'the read waited for the write taken before it');
    else t.same(ids, [r.head, w.head], 'the read was published first (it finished first)');
    t.ok(fs.readFileSync(e.blk.disk).subarray(0, big.length).equals(big), 'the image holds the write');
  });
}
