// End to end: unmodified QEMU 11.1 boots the Debian guest against our GPIO
// device over vfio-user; the guest's own gpio-pci-idio-16 driver binds, reads
// the inputs the test set on the server and drives outputs the test sees.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { provision } from '../../qemu-configs/provision.js';
import { bootGuest, describeBoot, NO_ERROR_RECOVERY } from '../../qemu-configs/boot.js';
import { GPIO_FLIP_PROMPT, gpioGuestScript, hex16 } from '../../qemu-configs/guest-scripts/gpio.js';
import { startServer } from '../../server/runtime.js';
import type { Idio16 } from '../../devices/gpio-idio16/index.js';

t.setTimeout(30 * 60 * 1000);

const INPUTS = 0xa5c3;
const OUTPUTS = 0x3c5a;

t.test('Linux pci-idio-16 binds to our GPIO device and moves values both ways', async (t) => {
  const p = await provision({ log: (m) => t.comment(`provision: ${m}`) });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-e2e-'));
  const socket = path.join(dir, 'gpio.sock');
  const rt = await startServer({ devices: [{ name: 'gpio0', kind: 'gpio', socket, options: { inputs: INPUTS } }] });
  t.teardown(async () => {
    await rt.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const gpio = rt.models.get('gpio0') as Idio16;
  const seen: number[] = [];
  gpio.on('outputs', (v: number) => seen.push(v));

  const r = await bootGuest({
    provisioned: p,
    script: gpioGuestScript(OUTPUTS, { irq: true }),
    vfioUserSockets: [socket],
    timeoutMs: 5 * 60 * 1000,
    onLine: (l) => { if (l.includes(GPIO_FLIP_PROMPT)) gpio.setInputs(gpio.inputs ^ 1); },
  });
  t.ok(r.done, `the guest ran its script (${describeBoot(r)})`);
  t.equal(r.results.ids, '0x494f:0x0dc8', 'the guest sees our PCI ids');
  t.equal(r.results.driver, 'pci-idio-16', 'the in-tree driver bound');
  t.equal(r.results.ngpio, '32', 'a 32-line gpiochip');
  t.equal(r.results.inputs, hex16(INPUTS), 'the guest read the inputs set on the server');
  t.equal(gpio.outputs, OUTPUTS, 'the server sees the outputs the guest set');
  t.ok(seen.length > 0, 'output changes were announced');
  t.equal(r.results.in0, `${INPUTS & 1}->${(INPUTS & 1) ^ 1}`, 'the guest saw the input the host flipped');
  t.ok(Number(r.results.irqs) >= 1, `the input change raised INTx in the guest (${r.results.irqs} interrupts)`);
  t.equal(rt.host('gpio0').connections, 1, 'QEMU connected once');
  t.notOk(r.stderr.includes(NO_ERROR_RECOVERY), `QEMU enabled error recovery (ERR interrupt); stderr: ${r.stderr.trim() || '(empty)'}`);
});
