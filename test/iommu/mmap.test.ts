// MmapBacking over the real native addon: memfd guest RAM, file-size checks,
// seals, fd ownership, munmap on the last reference, type1 DMA_MAP with fd.
import t from 'tap';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MmapBacking } from '../../iommu/backing-mmap.js';
import { IommuContext } from '../../iommu/context.js';
import { DMA_ACCESS_WRITE } from '../../iommu/device-dma.js';
import { PAGE, errnoOf } from './helpers.js';

let native: typeof import('../../native/index.js') | undefined;
try {
  native = await import('../../native/index.js');
} catch (e) {
  t.comment(`native addon unavailable: ${(e as Error).message}`);
}

const P = BigInt(PAGE);

t.test('memfd guest RAM through type1 MAP_DMA with an fd', { skip: !native && 'no native addon' }, async (t) => {
  const n = native!;
  const ctx = new IommuContext({ native: n });
  const dev = ctx.addDevice('d');
  const before = n.fdCount();
  const fd = n.memfdCreate('guest-ram', 64 * PAGE);
  n.addSeals(fd, n.F_SEAL_SHRINK); // as QEMU's memfd backend: mapped directly
  // What the client wrote into its RAM before DMA_MAP.
  const shadow = n.mmap(fd, 0, 64 * PAGE, 3);
  new Uint8Array(shadow).fill(0x33, 16 * PAGE, 17 * PAGE);
  ctx.type1.map({ iova: 0x100000n, size: 32n * P, flags: 3, fd, offset: 16 * PAGE });
  t.equal(n.fdCount(), before, 'the fd was closed once mapped');
  t.same([...(await dev.dma.read(0x100000, 4))], [0x33, 0x33, 0x33, 0x33], 'device sees guest RAM at the file offset');
  await dev.dma.write(0x100000 + PAGE, Buffer.from('hello'));
  t.equal(Buffer.from(shadow, 17 * PAGE, 5).toString(), 'hello', 'device writes reach the shared memory');
  const area = ctx.compatIoas.allAreas()[0];
  const backing = area.backing;
  t.equal(backing.kind, 'mmap', 'a sealed memfd is mapped');
  const bytes = backing.bytes!;
  const u = ctx.type1.unmap({ iova: 0x100000n, size: 32n * P });
  await u.drained;
  t.equal(backing.disposed, true, 'munmap at the last reference');
  t.equal(bytes.length, 0, 'old views are detached, not dangling');
  n.munmap(shadow);
});

t.test('fromFd: the file must cover the mapping; fd closed also on failure', { skip: !native && 'no native addon' }, async (t) => {
  const n = native!;
  const before = n.fdCount();
  const fd = n.memfdCreate('small', 4 * PAGE);
  t.equal(errnoOf(() => MmapBacking.fromFd(n, fd, { size: 8 * PAGE })), 'EINVAL', 'past the end of the file');
  t.equal(n.fdCount(), before, 'fd closed on failure');
  const ctx = new IommuContext({ native: n });
  const fd2 = n.memfdCreate('small2', 4 * PAGE);
  t.equal(errnoOf(() => ctx.type1.map({ iova: 0x1000n, size: 8n * P, flags: 3, fd: fd2 })), 'EINVAL');
  t.equal(n.fdCount(), before, 'type1 closes the fd it was given');
  const fd3 = n.memfdCreate('small3', 4 * PAGE);
  t.equal(errnoOf(() => ctx.type1.map({ iova: 0x1001n, size: P, flags: 3, fd: fd3 })), 'EINVAL', 'refused before mmap');
  t.equal(n.fdCount(), before, 'and closes it when refusing early');
  const fd4 = n.memfdCreate('unsealed', 4 * PAGE);
  const u = MmapBacking.fromFd(n, fd4, { size: PAGE });
  t.equal(u.sealed, false);
  u.release();
  const fd5 = n.memfdCreate('sealed', 4 * PAGE);
  n.addSeals(fd5, n.F_SEAL_SHRINK | n.F_SEAL_GROW);
  const b = MmapBacking.fromFd(n, fd5, { size: 4 * PAGE, offset: 0 });
  t.equal(b.sealed, true);
  b.release();
  t.equal(n.fdCount(), before);
});

t.test('anonymous and file-backed control-API memory', { skip: !native && 'no native addon' }, async (t) => {
  const n = native!;
  const ctx = new IommuContext({ native: n });
  const dev = ctx.addDevice('d');
  const b = ctx.allocIoas();
  ctx.attach('d', b.id, 5);
  const iova = ctx.mapMemory(b.id, { length: 8n * P, prot: 3 });
  t.equal(ctx.getIoas(b.id).list()[0].backing.kind, 'mmap');
  await dev.dma.write(iova, Buffer.from([1, 2, 3]), 5);
  t.same([...(await dev.dma.read(iova, 3, 5))], [1, 2, 3]);
  const dir = mkdtempSync(path.join(tmpdir(), 'iommu-'));
  const file = path.join(dir, 'mem.bin');
  writeFileSync(file, Buffer.alloc(4 * PAGE, 0x11));
  const fiova = ctx.mapMemory(b.id, { length: 2n * P, prot: 3, file, offset: PAGE, iova: 0x40000000n });
  t.equal(fiova, 0x40000000n);
  t.same([...(await dev.dma.read(0x40000000, 2, 5))], [0x11, 0x11]);
  await dev.dma.withView(0x40000000 + PAGE, 4, DMA_ACCESS_WRITE, (v) => v[0].set([9, 9, 9, 9]), 5);
  t.equal(errnoOf(() => ctx.mapMemory(b.id, { length: 8n * P, prot: 3, file })), 'EINVAL', 'longer than the file');
  await ctx.getIoas(b.id).unmap(0n, (1n << 64n) - 1n).drained;
  t.same([...readFileSync(file).subarray(2 * PAGE, 2 * PAGE + 4)], [9, 9, 9, 9], 'shared file mapping');
  rmSync(dir, { recursive: true });
});

t.test('a read-only fd: views are copies, write mappings refused', { skip: !native && 'no native addon' }, async (t) => {
  const n = native!;
  const dir = mkdtempSync(path.join(tmpdir(), 'iommu-'));
  const file = path.join(dir, 'ro.bin');
  writeFileSync(file, Buffer.alloc(PAGE, 0x22));
  const b = MmapBacking.fromFile(n, file, { writable: false });
  t.equal(b.writable, false);
  const ctx = new IommuContext({ native: n });
  const dev = ctx.addDevice('d');
  t.equal(errnoOf(() => ctx.compatIoas.map({ backing: b, length: P, prot: 3, iova: P })), 'EPERM');
  ctx.compatIoas.map({ backing: b, length: P, prot: 1, iova: P });
  t.equal((await dev.dma.read(PAGE, 1))[0], 0x22);
  b.release();
  rmSync(dir, { recursive: true });
});

t.test('stress: async views racing unmap/remap of real mappings never crash', { skip: !native && 'no native addon' }, async (t) => {
  const n = native!;
  const ctx = new IommuContext({ native: n });
  const dev = ctx.addDevice('d');
  const before = n.fdCount();
  const SLOTS = 8;
  const iovaOf = (s: number) => BigInt(0x10000000 + s * 0x100000);
  const mapSlot = (s: number) => {
    const fd = n.memfdCreate(`slot${s}`, 16 * PAGE);
    n.addSeals(fd, n.F_SEAL_SHRINK); // mapped, not reached by file I/O
    ctx.type1.map({ iova: iovaOf(s), size: 16n * P, flags: 3, fd });
  };
  for (let s = 0; s < SLOTS; s++) mapSlot(s);
  const tick = () => new Promise((r) => setImmediate(r));
  const stale: Uint8Array[] = [];
  let ok = 0;
  let faults = 0;
  const users: Promise<void>[] = [];
  for (let i = 0; i < 400; i++) {
    const s = i % SLOTS;
    users.push(
      dev.dma
        .withView(iovaOf(s) + BigInt((i % 16) * PAGE), 64, DMA_ACCESS_WRITE, async (v) => {
          await tick();
          v[0].fill(i & 0xff); // the mapping must still be there
          stale.push(v[0]);
          await tick();
        })
        .then(
          () => void ok++,
          (e) => {
            if ((e as { reason?: string }).reason === 'unmapped') faults++;
            else throw e;
          },
        ),
    );
    if (i % 7 === 0) {
      const victim = (i * 3) % SLOTS;
      const r = ctx.type1.unmap({ iova: iovaOf(victim), size: 16n * P });
      if (r.size > 0n) void r.drained.then(() => mapSlot(victim));
    }
    if (i % 50 === 0) await tick();
  }
  await Promise.all(users);
  t.ok(ok > 0 && faults > 0, `${ok} views completed, ${faults} refused after unmap`);
  await ctx.type1.unmap({ iova: 0n, size: 0n, flags: 2 }).drained;
  for (let k = 0; k < 20; k++) await tick(); // let deferred remaps land, then drop them too
  await ctx.type1.unmap({ iova: 0n, size: 0n, flags: 2 }).drained;
  t.ok(stale.every((v) => v.length === 0), 'every view handed out is detached now');
  stale[0][0] = 1; // writing through a stale view is a no-op, not a crash
  t.equal(n.fdCount(), before, 'no fd leaked');
});
