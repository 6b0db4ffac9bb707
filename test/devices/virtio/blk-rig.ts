// A VirtioBlk on a fresh image, attached to hand-built guest memory and
// brought up by the test driver with MSI-X, and requests made available on
// its first queue. The device class is passed in: a test that sets
// file-io's environment switches imports it only after setting them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { fakeFds } from '../helpers.js';
import { attach, DEFAULT_DRIVER_FEATURES, enableMsix, makeGuest, PciDriver } from './env.js';
import type { VirtioBlk, VirtioBlkOptions } from '../../../devices/virtio-blk/index.js';
import { BlkType } from '../../../devices/virtio-blk/constants.js';

export type BlkRig = ReturnType<typeof blkRig>;

/** An image of `size` bytes in a temp dir removed at teardown, served by `Blk`. */
export function blkRig(t: Test, Blk: typeof VirtioBlk, size: number, options: Partial<VirtioBlkOptions> = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vblk-rig-'));
  const fds = fakeFds();
  const blk = new Blk({ disk: path.join(dir, 'd.img'), size, fdOps: fds.ops, ...options });
  t.teardown(() => {
    blk.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const g = makeGuest();
  attach(blk.device, g);
  const drv = new PciDriver(blk.device, g.mem);
  const [ring] = drv.init(1, { msix: true, features: DEFAULT_DRIVER_FEATURES | (drv.enablePci(), drv.deviceFeatures()) });
  enableMsix(blk.device, fds);
  return { blk, g, drv, ring: ring! };
}

/**
 * One request made available (not notified): header, data (bytes to write,
 * or a length to read) in descriptors of at most `segment` bytes, status.
 */
export function blkRequest(e: BlkRig, type: number, sector: number, data: Buffer | number, segment = 4096) {
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
  for (let o = 0; o < len; o += segment) bufs.push({ addr: buf + o, len: Math.min(segment, len - o), write: type === BlkType.IN } as never);
  bufs.push({ addr: st, len: 1, write: true } as never);
  const head = e.ring.chain(bufs);
  e.ring.push(head);
  return { head, status: () => mem.read(st, 1)[0], data: () => mem.read(buf, len) };
}
