// virtio-rng through its transport: the guest's writable buffers come back
// full of random bytes, the used length says how many.
import t from 'tap';
import { VirtioRng } from '../../../devices/virtio-rng/index.js';
import { createDevice } from '../../../devices/index.js';
import { fakeFds } from '../helpers.js';
import { attach, enableMsix, makeGuest, makeMessageGuest, PciDriver, until, type Guest } from './env.js';

function make(guest: Guest = makeGuest(), opts: { maxRequest?: number } = {}) {
  const fds = fakeFds();
  const rng = new VirtioRng({ fdOps: fds.ops, ...opts });
  attach(rng.device, guest);
  const drv = new PciDriver(rng.device, guest.mem);
  const [ring] = drv.init(1, { msix: true });
  enableMsix(rng.device, fds);
  return { rng, drv, ring: ring!, fds, g: guest };
}

const distinct = (b: Uint8Array) => new Set(b).size;

t.test('identity: 1af4:1044, one queue', async (t) => {
  const rng = createDevice('rng', {});
  t.equal(rng.kind, 'rng');
  const g = makeGuest();
  attach(rng.device, g);
  const drv = new PciDriver(rng.device, g.mem);
  t.equal((rng.device.regionRead(7, 2, 2) as Buffer).readUInt16LE(0), 0x1044);
  drv.enablePci();
  drv.negotiate();
  t.equal(drv.common(0x12, 2), 1, 'num_queues');
});

t.test('fills buffers with random bytes', async (t) => {
  const { ring, drv, g, fds, rng } = make();
  const small = g.mem.alloc(64);
  const big = g.mem.alloc(100_000); // more than one getRandomValues call
  const h1 = ring.chain([{ addr: small, len: 64, write: true }]);
  const h2 = ring.indirect([
    { addr: big, len: 50_000, write: true },
    { addr: big + 50_000, len: 50_000, write: true },
  ]);
  ring.push(h1, h2);
  drv.notify(0);
  await until(() => ring.usedIdx === 2, 'both used');
  const used = ring.takeUsed();
  t.same(used.sort((a, b) => a.id - b.id), [{ id: h1, len: 64 }, { id: h2, len: 65536 }].sort((a, b) => a.id - b.id), 'used lengths (capped at 64 KiB)');
  t.ok(distinct(g.mem.read(small, 64)) > 20, 'small buffer is random');
  t.ok(distinct(g.mem.read(big, 65536)) === 256, 'large buffer: every byte value shows up');
  t.equal(g.mem.read(big + 65536, 100_000 - 65536).every((b) => b === 0), true, 'nothing past the cap is touched');
  t.ok(fds.signals.includes(100), 'interrupt on the queue vector');
  t.equal(rng.bytesServed, 64 + 65536);
});

t.test('a buffer at an unmapped IOVA gets used length 0, the device goes on', async (t) => {
  const { ring, drv, g } = make();
  const h1 = ring.chain([{ addr: 0x9000000, len: 64, write: true }]);
  ring.push(h1);
  drv.notify(0);
  await until(() => ring.usedIdx === 1, 'used');
  t.same(ring.takeUsed(), [{ id: h1, len: 0 }]);
  const ok = g.mem.alloc(32);
  const h2 = ring.chain([{ addr: ok, len: 32, write: true }]);
  ring.push(h2);
  drv.notify(0);
  await until(() => ring.usedIdx === 2, 'used');
  t.same(ring.takeUsed(), [{ id: h2, len: 32 }]);
  t.ok(distinct(g.mem.read(ok, 32)) > 10);
});

t.test('over DMA_WRITE messages (no fd)', async (t) => {
  const g = makeMessageGuest();
  const { ring, drv } = make(g);
  const buf = g.mem.alloc(4096);
  ring.push(ring.chain([{ addr: buf, len: 4096, write: true }]));
  drv.notify(0);
  await until(() => ring.usedIdx === 1, 'used');
  t.equal(ring.takeUsed()[0]!.len, 4096);
  t.equal(distinct(g.mem.read(buf, 4096)), 256);
  t.ok(g.messages.writes > 0);
});
