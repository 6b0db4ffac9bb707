// The trace analysis of the virtio-blk bench: doorbells and interrupts per
// device from QEMU's log lines, and the times between them.
import t from 'tap';
import { parseQemuTrace, qemuTraceArgs } from '../../bench/qemu-trace.js';

const SOCK = '/tmp/vut-bench-blk-x/ours.sock';
const at = (us: number) => `2026-12-06T14:12:49.${String(us).padStart(6, '0')}Z`;

t.test('our doorbells and interrupts, QEMU device events, and the gaps', async (t) => {
  const log = [
    `${at(100)} vfio_region_write  (vfio-user:${SOCK}:region4+0x14, 0x0, 1)`, // device status: not a doorbell
    `${at(1000)} vfio_region_write  (vfio-user:${SOCK}:region4+0x3004, 0x1, 2)`,
    `${at(1080)} vfio_msi_interrupt  (vfio-user:${SOCK}) vector 2 0xfee00000/0x22`,
    `${at(1300)} vfio_region_write  (vfio-user:${SOCK}:region4+0x3004, 0x1, 2)`,
    `${at(1390)} vfio_msi_interrupt  (vfio-user:${SOCK}) vector 2 0xfee00000/0x22`,
    `${at(1600)} vfio_msi_interrupt  (vfio-user:${SOCK}) vector 2 0xfee00000/0x22`, // taken while watching the ring
    `${at(1700)} vfio_region_write  (vfio-user:/tmp/other.sock:region4+0x3000, 0x0, 2)`, // another server's device
    `${at(2000)} virtio_queue_notify vdev 0x5555 n 1 vq 0x5556`,
    `${at(2040)} virtio_notify vdev 0x5555 vq 0x5556`,
    `${at(2230)} virtio_queue_notify vdev 0x5555 n 1 vq 0x5556`,
    `${at(2280)} virtio_notify vdev 0x5555 vq 0x5556`,
    'not a trace line',
    '',
  ].join('\n');
  const { ours, qemu } = parseQemuTrace(log, SOCK);
  t.same({ d: ours.doorbells, i: ours.interrupts }, { d: 2, i: 3 });
  t.same(ours.doorbellToInterrupt, [80, 90]);
  t.same(ours.interruptToDoorbell, [220], 'an interrupt followed by an interrupt has no doorbell gap');
  t.same({ d: qemu.doorbells, i: qemu.interrupts }, { d: 2, i: 2 });
  t.same(qemu.doorbellToInterrupt, [40, 50]);
  t.same(qemu.interruptToDoorbell, [190]);
});

t.test('a second doorbell before the interrupt: timed from the first', async (t) => {
  const log = [
    `${at(10)} virtio_queue_notify vdev 0x1 n 0 vq 0x2`,
    `${at(30)} virtio_queue_notify vdev 0x1 n 0 vq 0x2`,
    `${at(70)} virtio_notify vdev 0x1 vq 0x2`,
  ].join('\n');
  t.same(parseQemuTrace(log, SOCK).qemu.doorbellToInterrupt, [60]);
});

t.test('the arguments name the log file and every event read', async (t) => {
  const a = qemuTraceArgs('/tmp/q.log');
  t.same(a.slice(0, 4), ['-msg', 'timestamp=on', '-D', '/tmp/q.log']);
  for (const e of ['vfio_region_write', 'vfio_msi_interrupt', 'virtio_queue_notify', 'virtio_notify']) t.ok(a.includes(e), e);
});
