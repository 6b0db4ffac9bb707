// virtio-blk through the real server: a raw vfio-user client plays QEMU and
// the guest driver. Guest RAM is a memfd (DMA_MAP with an fd, zero-copy DMA)
// or client memory reached only by DMA_READ/DMA_WRITE; doorbells are posted
// (NO_REPLY) writes; completions arrive on real MSI-X eventfds. A register
// read right after a doorbell is answered while the device still waits for
// its DMA replies (the session is never blocked on guest memory).
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import * as native from '../../../native/index.js';
import { startServer } from '../../../server/runtime.js';
import { Command } from '../../../protocol/constants.js';
import { encodeDmaMapRequest } from '../../../protocol/commands/dma-map.js';
import { VfioUserClient } from '../../../testing/vfio-user-client.js';
import type { VirtioBlk } from '../../../devices/virtio-blk/blk.js';
import { BlkStatus, BlkType } from '../../../devices/virtio-blk/constants.js';
import { Common, Status } from '../../../devices/virtio/constants.js';
import { Layout, VIRTIO_BAR } from '../../../devices/virtio/transport.js';
import { BASE, DriverRing, GuestMem, until } from './env.js';
import { bringUp, read, submit } from './socket-driver.js';

const MiB = 1 << 20;
const MEM = 8 * MiB;

interface Rig {
  c: VfioUserClient;
  mem: GuestMem;
  blk: VirtioBlk;
  image: string;
  efds: number[];
}

async function rig(t: Test, memory: 'memfd' | 'messages'): Promise<Rig> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vblk-sock-'));
  const sock = path.join(dir, 'blk.sock');
  const image = path.join(dir, 'disk.img');
  const rt = await startServer({ devices: [{ name: 'blk0', kind: 'blk', socket: sock, options: { disk: image, size: 16 * MiB } }] });
  const blk = rt.models.get('blk0') as unknown as VirtioBlk;
  const c = await VfioUserClient.open(sock);
  const efds: number[] = [];
  let unmap: (() => void) | undefined;
  t.teardown(async () => {
    c.close();
    await until(() => !rt.host('blk0').connected, 'disconnect');
    await rt.close();
    blk.close();
    unmap?.();
    for (const fd of efds) native.close(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  let bytes: Uint8Array;
  if (memory === 'memfd') {
    const fd = native.memfdCreate('guest-ram', MEM);
    const ab = native.mmap(fd, 0, MEM, native.PROT_READ | native.PROT_WRITE);
    bytes = new Uint8Array(ab);
    unmap = () => native.munmap(ab);
    const r = await c.request(Command.DMA_MAP, encodeDmaMapRequest({ addr: BigInt(BASE), size: BigInt(MEM) }), { fds: [fd] });
    native.close(fd); // the server has its own copy
    if (r.errno) throw new Error(`DMA_MAP: errno ${r.errno}`);
  } else {
    const buf = Buffer.alloc(MEM);
    c.guest = { base: BigInt(BASE), mem: buf };
    bytes = buf;
    const r = await c.request(Command.DMA_MAP, encodeDmaMapRequest({ addr: BigInt(BASE), size: BigInt(MEM) }));
    if (r.errno) throw new Error(`DMA_MAP: errno ${r.errno}`);
  }
  return { c, mem: new GuestMem(bytes, BASE), blk, image, efds };
}

/**
 * The test client answers DMA_READ synchronously and spins on EAGAIN in the
 * same thread as the server, so the replies to the device's concurrent
 * DMA_READs must fit in the socket buffer: keep the message variant small.
 */
async function roundTrip(t: Test, r: Rig, ring: DriverRing, bytes = 256 * 1024): Promise<void> {
  const data = randomBytes(bytes);
  const w = submit(r, ring, BlkType.OUT, 2048, { out: data });
  await until(() => ring.usedIdx === 1, 'write used', 10_000);
  t.equal(r.mem.read(w.st, 1)[0], BlkStatus.OK, 'OUT: status OK');
  await until(() => native.eventfdRead(r.efds[0]!) > 0, 'queue eventfd', 5000);
  t.pass('completion signalled on the queue vector eventfd');
  const onDisk = Buffer.alloc(data.length);
  const fd = fs.openSync(r.image, 'r');
  fs.readSync(fd, onDisk, 0, data.length, 2048 * 512);
  fs.closeSync(fd);
  t.ok(onDisk.equals(data), 'the image holds the data');

  ring.usedEvent = 1;
  const rd = submit(r, ring, BlkType.IN, 2048, { inLen: data.length });
  await until(() => ring.usedIdx === 2, 'read used', 10_000);
  t.equal(r.mem.read(rd.st, 1)[0], BlkStatus.OK, 'IN: status OK');
  t.ok(r.mem.read(rd.din, data.length).equals(data), 'read back through the ring');
  await until(() => native.eventfdRead(r.efds[0]!) > 0, 'queue eventfd', 5000);
  ring.usedEvent = 2;
  const f = submit(r, ring, BlkType.FLUSH, 0, {});
  await until(() => ring.usedIdx === 3, 'flush used', 10_000);
  t.equal(r.mem.read(f.st, 1)[0], BlkStatus.OK, 'FLUSH: status OK');
  t.same(ring.takeUsed().map((u) => u.len), [1, data.length + 1, 1], 'used lengths');
}

t.test('memfd guest RAM: zero-copy DMA, posted doorbells, MSI-X eventfds', async (t) => {
  const r = await rig(t, 'memfd');
  const ring = await bringUp(r);
  await roundTrip(t, r, ring);
  t.equal(r.c.serverRequests.length, 0, 'no DMA_READ/DMA_WRITE messages');
  t.equal(r.blk.stats.bytesWritten, 256 * 1024);
});

t.test('guest RAM without an fd: every DMA over messages, the session never blocks', async (t) => {
  const r = await rig(t, 'messages');
  const ring = await bringUp(r);
  await roundTrip(t, r, ring, 64 * 1024);
  const kinds = new Set(r.c.serverRequests.map((h) => h.command));
  t.ok(kinds.has(Command.DMA_READ) && kinds.has(Command.DMA_WRITE), 'DMA went over DMA_READ and DMA_WRITE');

  // Slow DMA replies: a register read right after the doorbell is answered
  // at once, long before the request completes.
  const inner = r.c as unknown as { dispatch: (h: { flags: number }, p: Buffer, f: number[]) => void };
  const orig = inner.dispatch.bind(r.c);
  inner.dispatch = (h, p, f) => {
    if ((h.flags & 0xf) !== 0) return orig(h, p, f);
    const copy = Buffer.from(p);
    setTimeout(() => {
      if (!r.c.closed) orig(h, copy, f);
    }, 300);
  };
  const before = ring.usedIdx;
  const started = Date.now();
  submit(r, ring, BlkType.IN, 0, { inLen: 4096 });
  const st = await read(r.c, VIRTIO_BAR, Layout.COMMON + Common.DEVICE_STATUS, 1);
  const took = Date.now() - started;
  t.ok(st & Status.DRIVER_OK, 'status read');
  t.ok(took < 250, `answered in ${took} ms while the device waits on DMA`);
  t.equal(ring.usedIdx, before, 'the request is still in flight');
  await until(() => ring.usedIdx === ((before + 1) & 0xffff), 'slow request used', 10_000);
  t.pass('and completes once the DMA replies come');
  // Let the device finish its last (slow) ring accesses before the client goes.
  await until(() => !r.blk.transport.busy, 'device idle', 10_000);
  inner.dispatch = orig;
});
