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
import { Command, VFIO_PCI_CONFIG_REGION_INDEX as CFG } from '../../../protocol/constants.js';
import { encodeDmaMapRequest } from '../../../protocol/commands/dma-map.js';
import { encodeRegionReadRequest, encodeRegionWriteRequest } from '../../../protocol/commands/region-access.js';
import { encodeSetIrqsRequest } from '../../../protocol/commands/set-irqs.js';
import { VfioUserClient } from '../../../testing/vfio-user-client.js';
import type { VirtioBlk } from '../../../devices/virtio-blk/blk.js';
import { BlkStatus, BlkType } from '../../../devices/virtio-blk/constants.js';
import { Common, Status } from '../../../devices/virtio/constants.js';
import { Layout, VIRTIO_BAR } from '../../../devices/virtio/transport.js';
import * as V from '../../../devices/pci/vfio-constants.js';
import { BASE, DEFAULT_DRIVER_FEATURES, DriverRing, GuestMem, until } from './env.js';

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

async function read(c: VfioUserClient, region: number, offset: number, count: number): Promise<number> {
  const r = await c.request(Command.REGION_READ, encodeRegionReadRequest({ offset, region, count }));
  if (r.errno) throw new Error(`REGION_READ errno ${r.errno}`);
  return r.payload.subarray(16).readUIntLE(0, count);
}

/** A memory-BAR write as QEMU sends it: posted, no reply. */
function post(c: VfioUserClient, region: number, offset: number, count: number, v: number): void {
  const data = Buffer.alloc(count);
  data.writeUIntLE(v, 0, count);
  c.post(Command.REGION_WRITE, encodeRegionWriteRequest({ offset, region, data }));
}

async function cfgWrite(c: VfioUserClient, offset: number, count: number, v: number): Promise<void> {
  const data = Buffer.alloc(count);
  data.writeUIntLE(v, 0, count);
  const r = await c.request(Command.REGION_WRITE, encodeRegionWriteRequest({ offset, region: CFG, data }));
  if (r.errno) throw new Error(`config write errno ${r.errno}`);
}

/** What Linux's virtio_pci + virtio_blk probe do, over the socket. */
async function bringUp(r: Rig): Promise<DriverRing> {
  const { c } = r;
  const common = (off: number) => Layout.COMMON + off;
  await cfgWrite(c, 0x04, 2, (await read(c, CFG, 0x04, 2)) | 0x6); // memory + bus master
  // MSI-X: eventfds for vector 0 (queue) and 1 (config), then enable.
  r.efds.push(native.eventfd(0), native.eventfd(0));
  const s = await c.request(
    Command.DEVICE_SET_IRQS,
    encodeSetIrqsRequest({ flags: V.VFIO_IRQ_SET_DATA_EVENTFD | V.VFIO_IRQ_SET_ACTION_TRIGGER, index: V.VFIO_PCI_MSIX_IRQ_INDEX, start: 0, count: 2 }),
    { fds: r.efds },
  );
  if (s.errno) throw new Error(`SET_IRQS errno ${s.errno}`);
  const msix = await read(c, CFG, 0x34, 1); // the first capability is MSI-X
  await cfgWrite(c, msix + 2, 2, (await read(c, CFG, msix + 2, 2)) | 0x8000);

  post(c, VIRTIO_BAR, common(Common.DEVICE_STATUS), 1, 0);
  post(c, VIRTIO_BAR, common(Common.DEVICE_STATUS), 1, Status.ACKNOWLEDGE | Status.DRIVER);
  post(c, VIRTIO_BAR, common(Common.DEVICE_FEATURE_SELECT), 4, 1);
  const hi = await read(c, VIRTIO_BAR, common(Common.DEVICE_FEATURE), 4);
  post(c, VIRTIO_BAR, common(Common.DEVICE_FEATURE_SELECT), 4, 0);
  const lo = await read(c, VIRTIO_BAR, common(Common.DEVICE_FEATURE), 4);
  const want = ((BigInt(hi) << 32n) | BigInt(lo)) & (DEFAULT_DRIVER_FEATURES | 0xffffffn);
  post(c, VIRTIO_BAR, common(Common.DRIVER_FEATURE_SELECT), 4, 0);
  post(c, VIRTIO_BAR, common(Common.DRIVER_FEATURE), 4, Number(want & 0xffffffffn));
  post(c, VIRTIO_BAR, common(Common.DRIVER_FEATURE_SELECT), 4, 1);
  post(c, VIRTIO_BAR, common(Common.DRIVER_FEATURE), 4, Number(want >> 32n));
  post(c, VIRTIO_BAR, common(Common.DEVICE_STATUS), 1, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
  const st = await read(c, VIRTIO_BAR, common(Common.DEVICE_STATUS), 1);
  if (!(st & Status.FEATURES_OK)) throw new Error('FEATURES_OK refused');
  post(c, VIRTIO_BAR, common(Common.CONFIG_MSIX_VECTOR), 2, 1);
  post(c, VIRTIO_BAR, common(Common.QUEUE_SELECT), 2, 0);
  const size = await read(c, VIRTIO_BAR, common(Common.QUEUE_SIZE), 2);
  const ring = new DriverRing(r.mem, size);
  for (const [reg, v] of [[Common.QUEUE_DESC, ring.desc], [Common.QUEUE_DRIVER, ring.avail], [Common.QUEUE_DEVICE, ring.used]] as const) {
    post(c, VIRTIO_BAR, common(reg), 4, v);
    post(c, VIRTIO_BAR, common(reg + 4), 4, 0);
  }
  post(c, VIRTIO_BAR, common(Common.QUEUE_MSIX_VECTOR), 2, 0);
  if ((await read(c, VIRTIO_BAR, common(Common.QUEUE_MSIX_VECTOR), 2)) !== 0) throw new Error('vector 0 refused');
  post(c, VIRTIO_BAR, common(Common.QUEUE_ENABLE), 2, 1);
  post(c, VIRTIO_BAR, common(Common.DEVICE_STATUS), 1, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
  const ok = await read(c, VIRTIO_BAR, common(Common.DEVICE_STATUS), 1);
  if (!(ok & Status.DRIVER_OK)) throw new Error('DRIVER_OK did not stick');
  ring.usedEvent = 0;
  return ring;
}

/** One request through the ring; the doorbell is a posted write. */
function submit(r: Rig, ring: DriverRing, type: number, sector: number, data: { out?: Buffer; inLen?: number }): { st: number; din: number } {
  const m = r.mem;
  const hdr = m.alloc(16);
  m.set32(hdr, type);
  m.set64(hdr + 8, sector);
  const bufs: { addr: number; len: number; write?: boolean }[] = [{ addr: hdr, len: 16 }];
  if (data.out) {
    const a = m.alloc(data.out.length, 4096);
    m.write(a, data.out);
    for (let o = 0; o < data.out.length; o += 4096) bufs.push({ addr: a + o, len: Math.min(4096, data.out.length - o) });
  }
  const din = data.inLen ? m.alloc(data.inLen, 4096) : 0;
  for (let o = 0; o < (data.inLen ?? 0); o += 4096) bufs.push({ addr: din + o, len: Math.min(4096, data.inLen! - o), write: true });
  const st = m.alloc(1);
  m.write(st, Buffer.from([0xee]));
  bufs.push({ addr: st, len: 1, write: true });
  ring.push(ring.indirect(bufs));
  post(r.c, VIRTIO_BAR, Layout.NOTIFY, 2, 0);
  return { st, din };
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
