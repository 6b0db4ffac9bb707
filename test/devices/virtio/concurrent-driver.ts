// A split-ring driver on another thread, for the virtqueue's concurrency
// test: it shares the guest memory (the same memfd, mapped here too) and
// does what Linux's virtio_ring does: publish buffers, a full barrier, read
// avail_event, kick only when vring_need_event says so; then it waits for
// the used ring. A lost kick shows as a batch that is never used.
import { parentPort, workerData } from 'node:worker_threads';
import * as native from '../../../native/index.js';
import { SeededRandom } from '../../../faults/prng.js';
import { needEvent } from '../../../devices/virtio/virtqueue.js';

/** What the test hands the worker. */
export interface DriverData {
  fd: number;
  size: number;
  /** Byte offsets in the mapping. */
  desc: number;
  avail: number;
  used: number;
  /** IOVA of the mapping's first byte, and of a scratch area for the buffers. */
  base: number;
  buffers: number;
  queueSize: number;
  batches: number;
  seed: number;
}

/** Messages to the test. */
export type DriverMessage =
  | { kind: 'kick' }
  | { kind: 'done'; kicks: number }
  | { kind: 'stall'; batch: number; availIdx: number; usedIdx: number; availEvent: number };

const d = workerData as DriverData;
const mem = new Uint8Array(native.mmap(d.fd, 0, d.size, native.PROT_READ | native.PROT_WRITE));
const view = new DataView(mem.buffer);
const u16 = new Uint16Array(mem.buffer);
const post = (m: DriverMessage) => parentPort!.postMessage(m);

const rng = new SeededRandom(d.seed, 'virtqueue driver');
const random = () => rng.nextFloat();

function busyWait(us: number): void {
  const end = performance.now() + us / 1000;
  while (performance.now() < end);
}

let availIdx = 0;
let kicks = 0;
const availEventAt = d.used + 4 + 8 * d.queueSize;
for (let b = 0; b < d.batches; b++) {
  const n = 1 + Math.floor(random() * 3);
  const old = availIdx;
  for (let i = 0; i < n; i++) {
    const head = i;
    const at = d.desc + 16 * head;
    view.setBigUint64(at, BigInt(d.buffers + 64 * head), true);
    view.setUint32(at + 8, 1, true);
    view.setUint16(at + 12, 2 /* WRITE */, true);
    view.setUint16(at + 14, 0, true);
    view.setUint16(d.avail + 4 + 2 * (availIdx % d.queueSize), head, true);
    availIdx = (availIdx + 1) & 0xffff;
    // A driver may publish each buffer as it adds it (Linux does).
    if (random() < 0.5 || i === n - 1) Atomics.store(u16, (d.avail + 2) >> 1, availIdx);
  }
  // Full barrier (the store above is sequentially consistent), then the kick decision.
  if (needEvent(Atomics.load(u16, availEventAt >> 1), availIdx, old)) {
    kicks++;
    post({ kind: 'kick' });
  }
  const deadline = Date.now() + 10_000;
  while (Atomics.load(u16, (d.used + 2) >> 1) !== availIdx) {
    if (Date.now() > deadline) {
      post({ kind: 'stall', batch: b, availIdx, usedIdx: Atomics.load(u16, (d.used + 2) >> 1), availEvent: Atomics.load(u16, availEventAt >> 1) });
      process.exit(0);
    }
  }
  // Think: mostly briefly, sometimes past any window.
  const r = random();
  busyWait(r < 0.8 ? r * 60 : r < 0.98 ? 100 + r * 200 : 800);
}
post({ kind: 'done', kicks });
native.munmap(mem.buffer);
