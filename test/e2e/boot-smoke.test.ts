// Provisions QEMU + guest (slow only the first time on a machine) and boots the guest
// with no vfio-user device: the script runs, reports, and the guest powers off.
import t from 'tap';
import { provision } from '../../qemu-configs/provision.js';
import { bootGuest, describeBoot } from '../../qemu-configs/boot.js';
import { checkQemu } from '../../qemu-configs/qemu-command.js';
import { parseGuestOutput } from '../../qemu-configs/results.js';

t.setTimeout(30 * 60 * 1000);

const log = (m: string) => process.stderr.write(`# provision: ${m}\n`);

t.test('the results protocol parser', async (t) => {
  const r = parseGuestOutput(
    '[    1.0] noise\r\n@@BOOTED 2.5\n@@RESULT a=1\n[ 3.0] x @@RESULT b=two words=yes\n@@RESULT a=3\n@@MODFAIL x.ko\n@@DONE\n@@EXIT 0\n',
  );
  t.same(r.results, { a: '3', b: 'two words=yes' });
  t.same(r.all.a, ['1', '3']);
  t.equal(r.done, true);
  t.equal(r.exitCode, 0);
  t.equal(r.bootedAt, 2.5);
  t.same(r.moduleFailures, ['x.ko']);
  t.equal(parseGuestOutput('@@EXIT none\n').exitCode, null);
});

t.test('provision, then boot the guest and run a script', async (t) => {
  const started = Date.now();
  const p = await provision({ log });
  t.comment(`provisioned in ${Date.now() - started} ms: ${p.qemuNote}; kernel ${p.kernelVersion}`);
  t.match(p.kernelVersion, /^6\.12\./);
  t.ok(p.modules.includes('gpio_pci_idio_16.ko'), 'the GPIO driver is in the guest');
  t.ok(p.modules.indexOf('gpio_regmap.ko') < p.modules.indexOf('gpio_pci_idio_16.ko'), 'dependencies load first');

  const q = await checkQemu(p.qemu);
  t.ok(q.ok, `QEMU ${q.version} has vfio-user-pci (${q.reason ?? 'ok'})`);

  const script = `
result kernel "$(cat /proc/version)"
n=0
for d in /sys/bus/pci/devices/*; do
  drv=$(basename "$(readlink "$d/driver" 2>/dev/null)" 2>/dev/null)
  echo "pci $(basename "$d") $(cat "$d/vendor"):$(cat "$d/device") class=$(cat "$d/class") driver=$drv"
  n=$((n + 1))
done
result pci_devices "$n"
result extra "$(cat /etc/smoke/hello.txt)"
result modules "$(cut -d' ' -f1 /proc/modules | sort | tr '\\n' ' ')"
echo @@DONE
`;
  const bootStart = Date.now();
  let toScript: number | undefined;
  const r = await bootGuest({
    provisioned: p,
    script,
    files: [{ path: '/etc/smoke/hello.txt', data: 'hello from the host\n' }],
    timeoutMs: 3 * 60 * 1000,
    onLine: (l) => {
      if (l.startsWith('@@BOOTED')) toScript = Date.now() - bootStart;
    },
  });
  t.comment(`boot (${r.accel}): script started after ${toScript} ms, guest off after ${r.durationMs} ms`);
  const why = describeBoot(r);
  t.equal(r.timedOut, false, 'no timeout', { boot: why });
  t.match(r.results.kernel, /^Linux version 6\.12\./, 'the guest read /proc/version', { boot: why });
  t.ok(Number(r.results.pci_devices) >= 1, 'the guest lists PCI devices');
  t.ok(r.lines.some((l) => /^pci 0000:00:00\.0 0x8086:0x29c0 /.test(l)), 'the q35 host bridge is there');
  t.equal(r.results.extra, 'hello from the host', 'an extra file reached the guest');
  t.match(r.results.modules, /\bgpio_pci_idio_16\b/, 'modules were loaded');
  t.same(r.moduleFailures, [], 'no module failed to load');
  t.equal(r.done, true, 'the script reached its end');
  t.equal(r.exitCode, 0, 'the script exited 0');
  t.equal(r.poweredOff, true, 'the guest powered off and QEMU exited 0', { boot: why });
  t.equal(r.panicked, false, 'no kernel panic');
});

t.test('a failing script reports its exit status; private RAM and a vIOMMU boot too', async (t) => {
  const p = await provision({ log });
  const r = await bootGuest({
    provisioned: p,
    script: 'result iommu "$(ls /sys/class/iommu)"\nexit 3\n',
    memory: 'private',
    viommu: true,
    timeoutMs: 3 * 60 * 1000,
  });
  const why = describeBoot(r);
  t.equal(r.results.iommu, 'dmar0', 'the guest has an Intel IOMMU', { boot: why });
  t.equal(r.exitCode, 3);
  t.equal(r.done, false);
  t.equal(r.poweredOff, true, 'still powered off cleanly', { boot: why });
});

t.test('QEMU is stopped at the timeout, or when the caller aborts', async (t) => {
  const p = await provision({ log });
  const slow = await bootGuest({ provisioned: p, script: 'result never 1\n', timeoutMs: 1000 });
  t.equal(slow.timedOut, true, 'timed out');
  t.equal(slow.poweredOff, false);
  t.equal(slow.exitCode, null);

  const ac = new AbortController();
  const hung = await bootGuest({
    provisioned: p,
    script: 'echo @@HANG\nsleep 600\n',
    timeoutMs: 3 * 60 * 1000,
    signal: ac.signal,
    onLine: (l) => {
      if (l === '@@HANG') ac.abort();
    },
  });
  t.ok(hung.lines.includes('@@HANG'), 'the script started', { boot: describeBoot(hung) });
  t.equal(hung.killed, true, 'stopped by the abort');
  t.equal(hung.timedOut, false);
  t.equal(hung.poweredOff, false);
});
