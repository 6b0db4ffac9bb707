// `vfio-user-ts demo`, the main job: provision what is missing, serve a GPIO
// device, boot the Debian guest in QEMU against it, and report what the guest
// saw and what the server saw. Embedded defaults; nothing to configure.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, UsageError } from './cli-args.js';
import { setLogLevel } from '../server/log.js';
import { startServer } from '../server/runtime.js';
import { provision } from '../qemu-configs/provision.js';
import { bootGuest, describeBoot } from '../qemu-configs/boot.js';
import { gpioGuestScript, hex16 } from '../qemu-configs/guest-scripts/gpio.js';
import type { Idio16 } from '../devices/gpio-idio16/index.js';

const DEFAULT_INPUTS = 0xbeef;
const DEFAULT_OUTPUTS = 0x1234;

/** `vfio-user-ts demo`: returns the exit code. */
export async function demo(argv: readonly string[]): Promise<number> {
  const { flags, positionals } = parseArgs(argv, {
    'log-level': { type: 'string', help: 'server log level' },
    input: { type: 'u32', help: 'inputs the server presents (default 0xBEEF)' },
    output: { type: 'u32', help: 'outputs the guest drives (default 0x1234)' },
    verbose: { type: 'boolean', help: 'echo the guest console' },
  });
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  if (flags['log-level'] !== undefined) setLogLevel(flags['log-level'] as string);
  const inputs = (flags.input as number | undefined) ?? DEFAULT_INPUTS;
  const outputs = (flags.output as number | undefined) ?? DEFAULT_OUTPUTS;
  if (inputs > 0xffff || outputs > 0xffff) throw new UsageError('--input and --output are 16-bit values');

  const say = (m: string) => process.stdout.write(`${m}\n`);
  say('[1/3] provisioning QEMU and the guest (cached after the first run)');
  const p = await provision({ log: (m) => say(`      ${m}`) });
  say(`      ${p.qemuNote}; guest kernel ${p.kernelVersion}`);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfio-user-ts-demo-'));
  const socket = path.join(dir, 'gpio.sock');
  const rt = await startServer({ devices: [{ name: 'gpio0', kind: 'gpio', socket, options: { inputs } }] });
  try {
    const gpio = rt.models.get('gpio0') as Idio16;
    say(`[2/3] serving a PCI-IDIO-16 GPIO device on ${socket} with inputs ${hex16(inputs)}`);
    say('[3/3] booting the Debian guest in QEMU (TCG) with -device vfio-user-pci');
    const r = await bootGuest({
      provisioned: p,
      script: gpioGuestScript(outputs),
      vfioUserSockets: [socket],
      timeoutMs: 5 * 60 * 1000,
      ...(flags.verbose ? { onLine: (l: string) => say(`      guest| ${l}`) } : {}),
    });
    const g = r.results;
    say('');
    say('What the guest saw:');
    say(`  PCI device      ${g.pci ?? '?'}  ids ${g.ids ?? '?'}`);
    say(`  bound driver    ${g.driver ?? '(none)'}`);
    say(`  gpiochip        ${g.gpiochip ?? '?'}, ${g.ngpio ?? '?'} lines`);
    say(`  inputs read     ${g.inputs ?? '?'}   (server presented ${hex16(inputs)})`);
    say(`  outputs driven  ${g.outputs ?? '?'}`);
    say('What the server saw:');
    say(`  outputs         ${hex16(gpio.outputs)}`);
    say(`  QEMU sessions   ${rt.host('gpio0').connections}`);
    const ok = r.done && g.driver === 'pci-idio-16' && g.inputs === hex16(inputs) && gpio.outputs === outputs;
    say('');
    if (ok) {
      say(`demo OK: the guest's pci-idio-16 driver drove our TypeScript device both ways (${(r.durationMs / 1000).toFixed(1)} s boot under ${r.accel})`);
      return 0;
    }
    say(`demo FAILED: ${g.error ?? 'values did not match'}`);
    say(describeBoot(r));
    return 1;
  } finally {
    await rt.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
