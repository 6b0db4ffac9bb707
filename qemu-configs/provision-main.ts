// `node dist/qemu-configs/provision-main.js [--json]`: provisions what is missing, with
// progress on stderr, and prints where everything is.
import { provision } from './provision.js';

const started = Date.now();
const p = await provision({ log: (m) => process.stderr.write(`provision: ${m}\n`) });
if (process.argv.includes('--json')) {
  process.stdout.write(JSON.stringify(p, null, 2) + '\n');
} else {
  process.stdout.write(
    [
      `cache:     ${p.cacheDir}`,
      `qemu:      ${p.qemuNote}`,
      `kernel:    ${p.kernel} (${p.kernelVersion})`,
      `initramfs: ${p.initramfsBase}`,
      `modules:   ${p.modules.join(' ')}`,
      `ready in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    ].join('\n') + '\n',
  );
}
