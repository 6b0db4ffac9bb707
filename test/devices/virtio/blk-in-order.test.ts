// virtio-blk in deterministic mode (inOrder): a request that completes early
// (a read served at once, in place or on the mapped path) is not published
// before one taken earlier that is still on the thread pool (a write larger
// than may block the loop), so the used ring is the same on every run.
import t from 'tap';
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { until } from './env.js';
import { blkRequest, blkRig } from './blk-rig.js';
import { VirtioBlk } from '../../../devices/virtio-blk/index.js';
import { BlkStatus, BlkType } from '../../../devices/virtio-blk/constants.js';
import { MAX_BLOCKING_WRITE } from '../../../devices/block/blocking-writes.js';

for (const inOrder of [true, false]) {
  t.test(`a read made available after a thread-pool write, ${inOrder ? 'in order' : 'as they come'}`, async (t) => {
    const e = blkRig(t, VirtioBlk, 8 << 20, { inOrder });
    const big = randomBytes(MAX_BLOCKING_WRITE + (1 << 20)); // too large to block the loop: the pool
    const w = blkRequest(e, BlkType.OUT, 0, big, 65536);
    e.drv.notify(0);
    // A second kick in the same turn (the write cannot have completed yet): a read of a hole, served at once.
    const r = blkRequest(e, BlkType.IN, 12_000, 4096);
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
