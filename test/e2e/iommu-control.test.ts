// End to end over the control socket, while a real guest runs against our
// GPIO device: QEMU's DMA_MAPs of guest RAM live in the device's default
// IOAS (type1 compat); a second IOAS gets a copy of a range of guest RAM at
// another IOVA, the device's PASID 1 is attached to it, and a DMA through
// either path reads the same guest bytes. Type1 and iommufd errnos hold.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { provision } from '../../qemu-configs/provision.js';
import { bootGuest, describeBoot } from '../../qemu-configs/boot.js';
import { startServer } from '../../server/runtime.js';
import { ControlClient, ControlError } from '../../server/control-client.js';
import type { Idio16 } from '../../devices/gpio-idio16/index.js';

t.setTimeout(30 * 60 * 1000);

const PROMPT = '@@WAIT control-ops';
// The guest waits (bounded) until the host flips input line 0, then exits.
const script = `
dev=
for d in /sys/bus/pci/devices/*; do
  if [ "$(cat $d/vendor)" = 0x494f ]; then dev=$d; fi
done
result driver "$(basename "$(readlink $dev/driver)")"
chip=
for c in /sys/class/gpio/gpiochip*; do
  case "$(readlink -f $c)" in "$(readlink -f $dev)"/*) chip=$c;; esac
done
n=$(( $(cat $chip/base) + 16 ))
echo $n > /sys/class/gpio/export
v=/sys/class/gpio/IIN0/value
[ -e $v ] || v=/sys/class/gpio/gpio$n/value
old=$(cat $v)
echo "${PROMPT}"
i=0
while [ $i -lt 1200 ] && [ "$(cat $v)" = "$old" ]; do sleep 0.1; i=$((i + 1)); done
result released "$i"
echo @@DONE
`;

const SRC_IOVA = 0x1000000; // 16 MiB: inside guest RAM (the kernel image), IOVA = GPA without a vIOMMU
const DST_IOVA = 0x40000000;
const LENGTH = 0x10000;

async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'no error';
  } catch (err) {
    return err instanceof ControlError ? err.error : String(err);
  }
}

t.test('IOAS copy + PASID attach + dma.read through both paths, against a live guest', async (t) => {
  const p = await provision({ log: (m) => t.comment(`provision: ${m}`) });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-iommu-'));
  const socket = path.join(dir, 'gpio.sock');
  const controlPath = path.join(dir, 'control.sock');
  const rt = await startServer({ devices: [{ name: 'gpio0', kind: 'gpio', socket, options: {} }], control: controlPath });
  t.teardown(async () => {
    await rt.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const gpio = rt.models.get('gpio0') as Idio16;

  const checks: Record<string, unknown> = {};
  const runOps = async () => {
    const c = await ControlClient.connect(controlPath);
    try {
      const compat = (await c.call('compat.get')).ioasId as number;
      const list = (await c.call('ioas.list', { ioasId: compat })).areas as Array<{ iova: number; length: number }>;
      checks.compatAreas = list.length;
      const covering = list.find((a) => a.iova <= SRC_IOVA && a.iova + a.length >= SRC_IOVA + LENGTH);
      checks.covering = covering ? { iova: covering.iova, length: covering.length } : null;

      const second = (await c.call('ioas.alloc')).ioasId as number;
      checks.secondIoas = second;
      checks.copy = (await c.call('ioas.copy', {
        srcIoasId: compat, srcIova: SRC_IOVA, length: LENGTH, dstIoasId: second, dstIova: DST_IOVA,
      })).dstIova;
      await c.call('device.attach', { device: 'gpio0', pasid: 1, ioasId: second });

      const viaRid = (await c.call('dma.read', { device: 'gpio0', iova: SRC_IOVA, length: LENGTH })).data as Uint8Array;
      const viaPasid = (await c.call('dma.read', { device: 'gpio0', pasid: 1, iova: DST_IOVA, length: LENGTH })).data as Uint8Array;
      checks.same = Buffer.compare(Buffer.from(viaRid), Buffer.from(viaPasid)) === 0;
      checks.nonZero = viaRid.some((b) => b !== 0);
      checks.length = viaRid.length;
      checks.pasidUnmapped = await errnoOf(c.call('dma.read', { device: 'gpio0', pasid: 1, iova: SRC_IOVA, length: 16 }));

      // A type1 unmap that cuts QEMU's guest-RAM mapping in two: refused (type1 v2).
      checks.bisect = await errnoOf(c.call('type1.unmap', { iova: SRC_IOVA, size: 0x1000 }));
      checks.destroyAttached = await errnoOf(c.call('ioas.destroy', { ioasId: second }));
      await c.call('device.detach', { device: 'gpio0', pasid: 1 });
      checks.destroyDetached = await errnoOf(c.call('ioas.destroy', { ioasId: second }));
    } finally {
      c.close();
      gpio.setInputs(gpio.inputs ^ 1); // let the guest finish
    }
  };

  let ops: Promise<void> | undefined;
  const r = await bootGuest({
    provisioned: p,
    script,
    vfioUserSockets: [socket],
    timeoutMs: 5 * 60 * 1000,
    onLine: (l) => { if (l.includes(PROMPT) && !ops) ops = runOps(); },
  });
  t.ok(ops, 'the guest reached the control-ops point');
  await ops;
  t.ok(r.done, `the guest finished (${describeBoot(r)})`);
  t.equal(r.results.driver, 'pci-idio-16');
  t.ok((checks.compatAreas as number) > 0, `QEMU's DMA_MAPs are in the default IOAS (${checks.compatAreas} areas)`);
  t.ok(checks.covering, `guest RAM covers [0x${SRC_IOVA.toString(16)}, +0x${LENGTH.toString(16)})`);
  t.equal(checks.copy, DST_IOVA, 'ioas.copy put the range at the requested IOVA');
  t.equal(checks.length, LENGTH);
  t.equal(checks.same, true, 'dma.read via the default IOAS and via PASID 1 return the same bytes');
  t.equal(checks.nonZero, true, 'the bytes are real guest memory (not all zero)');
  t.equal(checks.pasidUnmapped, 'EFAULT', 'PASID 1 cannot reach IOVAs not mapped in its IOAS');
  t.equal(checks.bisect, 'EINVAL', 'type1 unmap that bisects a mapping fails with EINVAL');
  t.equal(checks.destroyAttached, 'EBUSY', 'destroying an attached IOAS fails with EBUSY');
  t.equal(checks.destroyDetached, 'no error', 'after detach it can be destroyed');
});
