// virtio-blk's mapped fast path when the file I/O cannot finish inline and
// goes to the thread pool (inline page-cache copies off, as for data that is
// not cached): the data still arrives, and the guest ranges stay held until
// the I/O is done, so an unmap that comes meanwhile waits for it.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { BASE, MEM_SIZE, until } from './env.js';
import { blkRequest as request, blkRig } from './blk-rig.js';
import type { DescChain } from '../../../devices/virtio/virtqueue.js';

// Read when file-io.ts loads: set before the import below.
process.env.VFIO_USER_TS_BLK_INLINE_IO = '0';
const { VirtioBlk } = await import('../../../devices/virtio-blk/index.js');
const { BlkStatus, BlkType } = await import('../../../devices/virtio-blk/constants.js');

const setup = (t: Test) => blkRig(t, VirtioBlk, 4 << 20);

t.test('writes and reads on the thread pool', async (t) => {
  const e = setup(t);
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
  const e = setup(t);
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
