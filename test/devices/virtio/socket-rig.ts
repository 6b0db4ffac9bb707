// A virtio device served by the real server and driven over its socket by
// the raw vfio-user client, which plays QEMU and the guest driver: guest RAM
// is a memfd (DMA_MAP with an fd) or client memory reached only by
// DMA_READ/DMA_WRITE; doorbells are posted writes; completions arrive on
// real MSI-X eventfds. Shared by the virtio socket tests and the fault tests.
import type { Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as native from '../../../native/index.js';
import { startServer, type RunningServer, type ServerSpec } from '../../../server/runtime.js';
import { Command, VFIO_PCI_CONFIG_REGION_INDEX as CFG } from '../../../protocol/constants.js';
import { encodeDmaMapRequest } from '../../../protocol/commands/dma-map.js';
import { encodeRegionReadRequest, encodeRegionWriteRequest } from '../../../protocol/commands/region-access.js';
import { encodeSetIrqsRequest } from '../../../protocol/commands/set-irqs.js';
import { VfioUserClient } from '../../../testing/vfio-user-client.js';
import { Common, Status } from '../../../devices/virtio/constants.js';
import { Layout, VIRTIO_BAR } from '../../../devices/virtio/transport.js';
import * as V from '../../../devices/pci/vfio-constants.js';
import { BASE, DEFAULT_DRIVER_FEATURES, DriverRing, GuestMem, until } from './env.js';

const MiB = 1 << 20;
const MEM = 8 * MiB;

export interface Rig {
  c: VfioUserClient;
  mem: GuestMem;
  rt: RunningServer;
  /** The temp dir (removed at teardown). */
  dir: string;
  efds: number[];
}

/** What the driver functions act through: the client, guest memory, and the eventfds handed over (kept for teardown). */
export type DriverRig = Pick<Rig, 'c' | 'mem' | 'efds'>;

/** What the rig serves: one device named `name` (its socket is made here), plus any other ServerSpec fields. */
export interface RigSpec extends Omit<ServerSpec, 'devices'> {
  name: string;
  kind: string;
  /** The device's options; `dir` is the rig's temp dir (for image files). */
  options: (dir: string) => Record<string, unknown>;
}

export async function rig(t: Test, memory: 'memfd' | 'messages', spec: RigSpec): Promise<Rig> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'virtio-sock-'));
  const sock = path.join(dir, `${spec.name}.sock`);
  const { name, kind, options, ...rest } = spec;
  const rt = await startServer({ ...rest, devices: [{ name, kind, socket: sock, options: options(dir) }] });
  const c = await VfioUserClient.open(sock);
  const efds: number[] = [];
  let unmap: (() => void) | undefined;
  t.teardown(async () => {
    c.close();
    await until(() => !rt.host(name).connected, 'disconnect');
    await rt.close();
    (rt.models.get(name) as { close?: () => void }).close?.();
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
  return { c, mem: new GuestMem(bytes, BASE), rt, dir, efds };
}

export async function read(c: VfioUserClient, region: number, offset: number, count: number): Promise<number> {
  const r = await c.request(Command.REGION_READ, encodeRegionReadRequest({ offset, region, count }));
  if (r.errno) throw new Error(`REGION_READ errno ${r.errno}`);
  return r.payload.subarray(16).readUIntLE(0, count);
}

/** A memory-BAR write as QEMU sends it: posted, no reply. */
export function post(c: VfioUserClient, region: number, offset: number, count: number, v: number): void {
  const data = Buffer.alloc(count);
  data.writeUIntLE(v, 0, count);
  c.post(Command.REGION_WRITE, encodeRegionWriteRequest({ offset, region, data }));
}

export async function cfgWrite(c: VfioUserClient, offset: number, count: number, v: number): Promise<void> {
  const data = Buffer.alloc(count);
  data.writeUIntLE(v, 0, count);
  const r = await c.request(Command.REGION_WRITE, encodeRegionWriteRequest({ offset, region: CFG, data }));
  if (r.errno) throw new Error(`config write errno ${r.errno}`);
}

/** What Linux's virtio_pci + virtio_blk probe do, over the socket. */
export async function bringUp(r: DriverRig): Promise<DriverRing> {
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

/** One virtio-blk request through the ring (indirect descriptors); the doorbell is a posted write. */
export function submitBlk(r: DriverRig, ring: DriverRing, type: number, sector: number, data: { out?: Buffer; inLen?: number }): { st: number; din: number } {
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
