// End to end: `vfio-user-ts vm gpio` boots the guest against a GPIO device it
// serves itself, with the guest's console on our pipes; we type at its shell,
// power it off, and check that QEMU's exit code is the command's and that the
// socket and its temp dir are gone.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CONSOLE_PROMPT } from '../../qemu-configs/console.js';

t.setTimeout(5 * 60 * 1000);

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const bin = path.join(root, 'bin/vfio-user-ts.js');

t.test('vm gpio: a shell on the guest console sees the device; poweroff ends it cleanly', async (t) => {
  const child = spawn(process.execPath, [bin, 'vm', 'gpio', '--input', '0xBEEF'], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

  /** Resolves when the console output after `from` matches `re`; fails if the command exits first. */
  const waitFor = (re: RegExp, from: number) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const m = re.exec(out.slice(from));
        if (m) {
          clearInterval(timer);
          resolve(m[0]);
        }
      };
      const timer = setInterval(check, 100);
      void exited.then(() => {
        clearInterval(timer);
        reject(new Error(`vm exited before ${re} appeared\n--- console ---\n${out.slice(-3000)}\n--- stderr ---\n${err}`));
      });
    });
  const type = (line: string) => {
    const from = out.length;
    child.stdin.write(`${line}\n`);
    return from;
  };

  await waitFor(new RegExp(CONSOLE_PROMPT), 0);
  const socket = /serving gpio 'gpio0' on (\S+)/.exec(err)?.[1];
  t.ok(socket, `the socket is named on stderr: ${err}`);
  t.ok(fs.existsSync(socket!), 'the socket exists while the guest runs');

  let from = type('cat /sys/bus/pci/devices/*/vendor /sys/bus/pci/devices/*/device; echo end-$((6*7))');
  const ids = await waitFor(/[\s\S]*end-42/, from);
  t.match(ids, /0x494f/, 'the guest sees our vendor id');
  t.match(ids, /0x0dc8/, 'and our device id');

  from = type('ls /sys/bus/pci/drivers/pci-idio-16/; echo end-$((6*8))');
  t.match(await waitFor(/[\s\S]*end-48/, from), /0000:00:0[0-9a-f]\.0/, 'the pci-idio-16 driver bound to it');

  type('poweroff -f');
  t.equal(await exited, 0, `vm passed on QEMU's exit code 0 (stderr: ${err.trim()})`);
  t.notOk(fs.existsSync(socket!), 'the socket is removed');
  t.notOk(fs.existsSync(path.dirname(socket!)), 'its temp dir is removed');
  t.match(path.basename(path.dirname(socket!)), /^vfio-user-ts-vm-/, 'the socket was in the vm temp dir');
});
