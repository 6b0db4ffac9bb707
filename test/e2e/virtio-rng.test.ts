// End to end: unmodified QEMU 11.1 boots the Debian guest against our
// virtio-rng device over vfio-user; the guest's virtio_rng driver binds, the
// kernel makes it the current hwrng, and 64 KiB read from /dev/hwrng are not
// all equal bytes (in fact every byte value shows up).
//
// VFIO_USER_TS_E2E_LOG=debug (any server log level) shows the server's log
// on failure (the last lines; `warn` is kept by default).
import t from 'tap';
import path from 'node:path';
import { provision } from '../../qemu-configs/provision.js';
import { bootGuest, describeBoot } from '../../qemu-configs/boot.js';
import { virtioRngGuestScript } from '../../qemu-configs/guest-scripts/virtio.js';
import { serveInTempDir } from './server-log.js';
import type { VirtioRng } from '../../devices/virtio-rng/index.js';

t.setTimeout(30 * 60 * 1000);

const BYTES = 64 * 1024;

t.test('Linux virtio_rng reads random bytes from our virtio-rng device', async (t) => {
  const p = await provision({ log: (m) => t.comment(`provision: ${m}`) });
  const { rt, logLines, socket } = await serveInTempDir(t, 'vut-rng-', (dir) => {
    const socket = path.join(dir, 'rng.sock');
    return { socket, spec: { devices: [{ name: 'rng0', kind: 'rng', socket, options: {} }] } };
  });

  const started = Date.now();
  const r = await bootGuest({
    provisioned: p,
    script: virtioRngGuestScript({ bytes: BYTES }),
    vfioUserSockets: [socket],
    timeoutMs: 10 * 60 * 1000,
  });
  const res = r.results;
  t.comment(
    `boot+script ${((Date.now() - started) / 1000).toFixed(1)} s (accel ${r.accel}); ` +
      `${res.read_bytes ?? '?'} bytes from /dev/hwrng in ${res.read_s ?? '?'} s, ${res.distinct ?? '?'} distinct byte values`,
  );

  t.ok(r.done && r.exitCode === 0, `the guest ran its script to the end (script exit ${r.exitCode})`);
  t.equal(res.rng_ids, '0x1af4:0x1044', 'the guest sees a modern virtio-rng (1af4:1044)');
  t.equal(res.rng_pci_driver, 'virtio-pci', 'virtio-pci bound to the PCI function');
  t.equal(res.rng_driver, 'virtio_rng', 'virtio_rng bound to the virtio device');
  t.match(res.rng_current, /^virtio_rng\.\d+$/, `virtio_rng is the current hwrng (${res.rng_current})`);
  t.match(res.read_status, /^0 /, 'dd from /dev/hwrng succeeded');
  t.equal(res.read_bytes, String(BYTES), `${BYTES} bytes read`);
  const distinct = Number(res.distinct);
  t.ok(distinct > 1, `not all equal bytes (${distinct} distinct values)`);
  // 64 KiB of uniform random bytes miss a byte value with probability ~256·e^-256.
  t.equal(distinct, 256, 'every byte value occurs, as in 64 KiB of random bytes');
  const served = (rt.models.get('rng0') as VirtioRng).bytesServed;
  t.ok(served >= BYTES, `the bytes came from our device (${served} bytes served)`);
  t.equal(rt.host('rng0').connections, 1, 'QEMU connected once');
  t.ok(r.poweredOff, 'the guest powered off by itself');
  if (!t.passing()) {
    t.comment(`${describeBoot(r)}\n--- server log (last ${logLines.length} lines) ---\n${logLines.join('\n')}`);
  }
});
