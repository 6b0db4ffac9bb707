// Where a virtio-blk request's time goes, as QEMU sees it. QEMU's trace
// events (its log backend: `-trace NAME`, `-msg timestamp=on`, `-D FILE`)
// time, for each device, the driver's doorbell and the interrupt that
// completes the request:
//
//   ours (vfio-user-pci):     vfio_region_write to the notify area, vfio_msi_interrupt
//   QEMU's virtio-blk-pci:    virtio_queue_notify, virtio_notify
//
// From a doorbell to the next interrupt is the device's part, with, for
// ours, both hops between the processes (QEMU's posted REGION_WRITE to our
// socket, our eventfd back to QEMU's main loop); from an interrupt to the
// next doorbell is the guest's part. A request our queue took while watching
// its ring has no doorbell: it shows as an interrupt after an interrupt.
// Tracing slows QEMU (a line per event), so this runs only when asked, and
// the figures compare the devices with each other, not with an untraced run.
import { Layout, VIRTIO_BAR } from '../devices/virtio/transport.js';

/** The events the analysis reads. */
const EVENTS = ['vfio_region_write', 'vfio_msi_interrupt', 'virtio_queue_notify', 'virtio_notify'];

/** QEMU arguments that trace those events into `file`. */
export function qemuTraceArgs(file: string): string[] {
  return ['-msg', 'timestamp=on', '-D', file, ...EVENTS.flatMap((e) => ['-trace', e])];
}

/** One device's doorbells and interrupts in time order. */
export interface Timeline {
  doorbells: number;
  interrupts: number;
  /** µs from a doorbell to the next interrupt. */
  doorbellToInterrupt: number[];
  /** µs from an interrupt to the next doorbell (only where a doorbell came next). */
  interruptToDoorbell: number[];
}

function timeline(events: readonly ['d' | 'i', number][]): Timeline {
  const t: Timeline = { doorbells: 0, interrupts: 0, doorbellToInterrupt: [], interruptToDoorbell: [] };
  let bell = NaN;
  let irq = NaN;
  for (const [kind, us] of events) {
    if (kind === 'd') {
      t.doorbells++;
      if (!Number.isNaN(irq)) t.interruptToDoorbell.push(us - irq);
      if (Number.isNaN(bell)) bell = us;
      irq = NaN;
    } else {
      t.interrupts++;
      if (!Number.isNaN(bell)) t.doorbellToInterrupt.push(us - bell);
      bell = NaN;
      irq = us;
    }
  }
  return t;
}

/** "2026-12-06T14:12:49.781445Z" as µs since the epoch (NaN if it is not one). */
function stampUs(s: string): number {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})Z$/.exec(s);
  return m ? Date.parse(`${m[1]}Z`) * 1000 + Number(m[2]) : NaN;
}

/**
 * The timelines of our device (served on `ourSocket`) and of QEMU's
 * virtio-blk device in a trace log. QEMU's device is the one virtio device
 * whose queue notifications appear (the guest has no other).
 */
export function parseQemuTrace(text: string, ourSocket: string): { ours: Timeline; qemu: Timeline } {
  const ours: ['d' | 'i', number][] = [];
  const qemu: ['d' | 'i', number][] = [];
  const notify = new RegExp(`^\\(vfio-user:${escape(ourSocket)}:region${VIRTIO_BAR}\\+0x([0-9a-f]+),`);
  for (const line of text.split('\n')) {
    const sp = line.indexOf(' ');
    const sp2 = line.indexOf(' ', sp + 1);
    if (sp < 0 || sp2 < 0) continue;
    const us = stampUs(line.slice(0, sp));
    if (Number.isNaN(us)) continue;
    const event = line.slice(sp + 1, sp2);
    const rest = line.slice(sp2 + 1).trim();
    if (event === 'vfio_region_write') {
      const m = notify.exec(rest);
      if (m && parseInt(m[1]!, 16) >= Layout.NOTIFY) ours.push(['d', us]);
    } else if (event === 'vfio_msi_interrupt') {
      if (rest.startsWith(`(vfio-user:${ourSocket})`)) ours.push(['i', us]);
    } else if (event === 'virtio_queue_notify') qemu.push(['d', us]);
    else if (event === 'virtio_notify') qemu.push(['i', us]);
  }
  return { ours: timeline(ours), qemu: timeline(qemu) };
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
