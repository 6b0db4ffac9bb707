// `vfio-user-ts vm --print-qemu-args`: the QEMU command line for built-in,
// module and config-file devices (socket paths, memory backend, kernel and
// console initrd, vIOMMU, extra arguments), and the flags it refuses. Runs
// against a stand-in provisioned cache: nothing is downloaded or booted.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { vm, type VmDeps } from '../../cli/vm.js';
import { UsageError } from '../../cli/cli-args.js';
import { OptionError } from '../../devices/definition.js';
import { CONSOLE_SCRIPT } from '../../qemu-configs/console.js';
import { shellCommand } from '../../qemu-configs/qemu-console.js';
import { systemQemu } from '../../qemu-configs/qemu-command.js';
import type { Provisioned } from '../../qemu-configs/provision.js';

const TINY = `export default {
  kind: 'tiny',
  description: 'a test device',
  options: { regions: { type: 'u32', help: 'regions', min: 1, max: 9, default: 9 } },
  create() { throw new Error('not served in these tests'); },
};
`;

interface Run {
  code: number;
  out: string;
  notes: string[];
  provisioned: number;
}

function setup(t: Test) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-vm-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
  fs.writeFileSync(path.join(dir, 'tiny.js'), TINY);
  fs.writeFileSync(path.join(dir, 'vmlinuz'), 'kernel');
  fs.mkdirSync(path.join(dir, 'cache/initramfs'), { recursive: true });
  const base = path.join(dir, 'cache/initramfs/base.cpio.gz');
  fs.writeFileSync(base, Buffer.from([0x1f, 0x8b, 0, 0]));
  const p: Provisioned = {
    cacheDir: path.join(dir, 'cache'),
    qemu: systemQemu('/opt/qemu/bin/qemu-system-x86_64'),
    qemuNote: 'test',
    kernel: path.join(dir, 'vmlinuz'),
    kernelVersion: 'test',
    initramfsBase: base,
    modulesDir: path.join(dir, 'modules'),
    modules: [],
    busybox: path.join(dir, 'busybox'),
  };
  const run = async (argv: string[]): Promise<Run> => {
    const r: Run = { code: -1, out: '', notes: [], provisioned: 0 };
    const deps: VmDeps = {
      provision: async () => (r.provisioned++, p),
      accel: async () => 'tcg',
      out: (s) => (r.out += s),
      note: (s) => r.notes.push(s),
    };
    r.code = await vm(argv, deps);
    return r;
  };
  return { dir, p, run };
}

/** The printed device argument for a socket, as sh sees it quoted. */
const deviceArg = (socket: string) => `-device '{"driver":"vfio-user-pci","socket":{"path":"${socket}","type":"unix"}}'`;

t.test('a built-in device: its socket, shared memfd RAM, the kernel and the console initrd', async (t) => {
  const { dir, p, run } = setup(t);
  const sock = path.join(dir, 'g.sock');
  const r = await run(['gpio', '--input', '0xBEEF', '--socket', sock, '--print-qemu-args']);
  t.equal(r.code, 0);
  t.ok(r.out.startsWith('/opt/qemu/bin/qemu-system-x86_64 \\\n'), 'the provisioned QEMU first');
  t.ok(r.out.includes(deviceArg(sock)), 'the vfio-user-pci device on the --socket path');
  t.ok(r.out.includes('-object memory-backend-memfd,id=mem,size=512M,share=on'), 'shared memfd RAM, 512M by default');
  t.ok(r.out.includes('-m 512M'));
  t.ok(r.out.includes(`-kernel ${p.kernel}`), 'the provisioned kernel');
  const initrd = path.join(p.cacheDir, 'initramfs/console.cpio.gz');
  t.ok(r.out.includes(`-initrd ${initrd}`), 'the console initrd in the cache');
  t.ok(r.out.includes('-chardev stdio,id=ser0,signal=off,mux=on'), 'a multiplexed console (Ctrl-A X)');
  t.notOk(r.out.includes('intel-iommu'), 'no vIOMMU unless asked');
  const image = fs.readFileSync(initrd);
  t.same(image.subarray(0, 4), fs.readFileSync(p.initramfsBase), 'the initrd starts with the base image');
  t.ok(image.includes(CONSOLE_SCRIPT), 'and carries the console script as /test.sh');
  t.same(r.notes, [`serve gpio0 on ${sock} for this command line`]);
  t.same(fs.readdirSync(path.join(p.cacheDir, 'initramfs')).sort(), ['base.cpio.gz', 'console.cpio.gz'], 'no temp file left');
});

t.test('without --socket the printed socket is $TMPDIR/<name>.sock', async (t) => {
  const { run } = setup(t);
  const r = await run(['gpio', '--name', 'lights', '--print-qemu-args']);
  t.ok(r.out.includes(deviceArg(path.join(os.tmpdir(), 'lights.sock'))), r.out);
});

t.test('a module device with private RAM, a vIOMMU, 1G and extra QEMU arguments', async (t) => {
  const { dir, run } = setup(t);
  const sock = path.join(dir, 't.sock');
  const r = await run([
    path.join(dir, 'tiny.js'), '--regions', '3', '--socket', sock,
    '--private-ram', '--viommu', '--memory', '1G', '--qemu-arg', '-smp', '--qemu-arg', '2', '--print-qemu-args',
  ]);
  t.equal(r.code, 0);
  t.ok(r.out.includes(deviceArg(sock)), 'the module device on its socket');
  t.ok(r.out.includes('-object memory-backend-ram,id=mem,size=1024M,share=off'), 'private RAM: no fd for DMA_MAP');
  t.notOk(r.out.includes('memfd'));
  t.ok(r.out.includes('-device intel-iommu,caching-mode=on'), 'the vIOMMU');
  t.match(r.out, /-append '[^']*intel_iommu=on/, 'the guest kernel turns it on');
  t.ok(r.out.indexOf('intel-iommu') < r.out.indexOf('vfio-user-pci'), 'the IOMMU comes before the device behind it');
  t.ok(r.out.endsWith(' \\\n  -smp 2\n'), 'extra arguments last, in order');
});

t.test('several devices from a config file', async (t) => {
  const { dir, run } = setup(t);
  const a = path.join(dir, 'a.sock');
  const b = path.join(dir, 'b.sock');
  const cfg = path.join(dir, 'devs.json');
  fs.writeFileSync(cfg, JSON.stringify({ devices: [{ kind: 'gpio', socket: a }, { kind: './tiny.js', name: 'tiny', socket: b }] }));
  const r = await run(['--config', cfg, '--print-qemu-args']);
  t.equal(r.code, 0);
  t.ok(r.out.includes(deviceArg(a)) && r.out.includes(deviceArg(b)), 'one vfio-user-pci per device');
  t.ok(r.out.indexOf(a) < r.out.indexOf(b), 'in the config order');
});

t.test('bad flags are refused, with the known ones listed, before anything is provisioned', async (t) => {
  const { dir, run } = setup(t);
  const cases: Array<[string[], RegExp]> = [
    [['gpio', '--bogus'], /^unknown option --bogus for gpio \(its options: --input; vm options: --log-level, --help, --socket, --name, --config, --control, --faults, --deterministic, --poll-us, --no-native-reads, --record, --record-max, --record-dma, --memory, --private-ram, --viommu, --qemu-arg, --print-qemu-args\)$/],
    [['--config', 'x.json', '--bogus'], /^unknown option --bogus \(vm options: --log-level, .*--print-qemu-args\)$/],
    [[path.join(dir, 'tiny.js'), '--input', '1'], /^unknown option --input for .*tiny\.js \(its options: --regions; vm options: /],
    [['--print-qemu-args'], /^vm needs a device kind/],
    [['gpio', 'extra'], /^unexpected argument 'extra'$/],
    [['gpio', '--memory', '3k'], /^--memory 3k is not a whole number of MiB$/],
    [['gpio', '--memory', '64M'], /^--memory 64M is outside 128M\.\.1024G$/],
    [['gpio', '--memory', 'lots'], /--memory: 'lots' is not a size/],
    [['gpio', '--viommu=yes'], /^--viommu takes no value$/],
    [['gpio', '--qemu-arg'], /^--qemu-arg needs a value$/],
  ];
  for (const [argv, message] of cases) {
    let err: unknown;
    const r = await run(argv).catch((e: unknown) => ((err = e), undefined));
    t.equal(r, undefined, `${argv.join(' ')} is refused`);
    t.match((err as Error)?.message, message, argv.join(' '));
    t.ok(err instanceof UsageError || err instanceof OptionError, 'an error the CLI reports as a usage error (exit code 2)');
  }
  const r = await run(['gpio', '--socket', path.join(dir, 's.sock'), '--print-qemu-args']);
  t.equal(r.provisioned, 1, 'only the good command line got as far as provisioning');
});

t.test('vm --help lists its options and the device options', async (t) => {
  const { run } = setup(t);
  const r = await run(['gpio', '--help']);
  t.equal(r.code, 0);
  t.match(r.out, /usage: vfio-user-ts vm <kind>/);
  t.match(r.out, /--print-qemu-args\s+print the QEMU command line/);
  t.match(r.out, /--input <n>\s+initial input lines/);
  t.equal(r.provisioned, 0);
});

t.test('the printed command line is one sh command with the same arguments', async (t) => {
  const args = ['-device', '{"a":"b c"}', "it's", '-append', 'console=ttyS0 quiet', '$HOME', '-x'];
  const text = shellCommand({ ENV_A: 'x y' }, 'printf', ['%s\\0', ...args]);
  const r = spawnSync('sh', ['-c', `${text.trimEnd()}; printf '%s\\0' "$ENV_A"`], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.same(r.stdout.split('\0').slice(0, -1), [...args, ''], 'sh reads back every argument (the env word applies to the command only)');
});
