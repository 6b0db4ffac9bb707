// `vfio-user-ts vm`: boot the provisioned guest against devices served by this
// process, with the guest's serial console on the terminal, for poking at a
// device by hand. Devices come as `serve` takes them (a kind and its flags, or
// --config); sockets default to a temp dir, and everything is removed when
// QEMU exits, whose exit code is ours. --print-qemu-args prints the QEMU
// command line instead, for running one's own QEMU against `serve`.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { helpFor, UsageError, type FlagSpec } from './cli-args.js';
import { checkSocketPath, type ServerConfig } from './config.js';
import { kindHelp, parseServeArgs, SERVE_FLAGS } from './cli.js';
import { startServer } from '../server/runtime.js';
import { parseSize } from '../devices/definition.js';
import { resolveDeviceKind } from '../devices/load.js';
import { provision, type Provisioned } from '../qemu-configs/provision.js';
import { guestAccel, guestQemuArgs } from '../qemu-configs/boot.js';
import { consoleInitramfs } from '../qemu-configs/console.js';
import { runQemuOnConsole, shellCommand, type QemuExit } from '../qemu-configs/qemu-console.js';
import type { Accel } from '../qemu-configs/qemu-args.js';

/** The flags `vm` has on top of serve's. */
export const VM_FLAGS: Record<string, FlagSpec> = {
  memory: { type: 'string', placeholder: 'size', help: 'guest RAM (default 512M)' },
  'private-ram': { type: 'boolean', help: 'guest RAM without a shared memfd: device DMA goes over messages' },
  viommu: { type: 'boolean', help: 'an Intel vIOMMU in the guest (caching-mode=on)' },
  'qemu-arg': { type: 'string', repeat: true, placeholder: 'arg', help: 'one more QEMU argument (repeatable)' },
  'print-qemu-args': { type: 'boolean', help: 'print the QEMU command line and exit without booting' },
};

const MIN_MEM_MIB = 128;
const MAX_MEM_MIB = 1024 * 1024;

/** What `vm` needs from outside (tests give a provisioned cache of their own). */
export interface VmDeps {
  provision(): Promise<Provisioned>;
  accel(p: Provisioned): Promise<Accel>;
  /** Where the printed command line goes. */
  out(text: string): void;
  /** Where notes for the user go. */
  note(text: string): void;
}

const DEFAULT_DEPS: VmDeps = {
  provision: () => provision({ log: (m) => process.stderr.write(`provision: ${m}\n`) }),
  accel: guestAccel,
  out: (text) => process.stdout.write(text),
  note: (text) => process.stderr.write(`vfio-user-ts: ${text}\n`),
};

/** `vfio-user-ts vm`: returns the exit code (QEMU's, when it booted). */
export async function vm(argv: readonly string[], deps: VmDeps = DEFAULT_DEPS): Promise<number> {
  if (argv.includes('--help')) {
    deps.out(await vmHelp(argv[0] && !argv[0].startsWith('--') ? argv[0] : undefined));
    return 0;
  }
  // A device without --socket is printed on $TMPDIR/<name>.sock; a boot moves it into its own temp dir.
  const { cfg, flags } = await parseServeArgs(argv, {
    command: 'vm',
    flags: VM_FLAGS,
    defaultSocket: (name) => path.join(os.tmpdir(), socketFile(name)),
  });
  const memMiB = memoryMiB(flags.memory as string | undefined);
  const p = await deps.provision();
  const accel = await deps.accel(p);
  const initrd = await consoleInitramfs(p);
  const qemuArgs = (sockets: string[]) =>
    guestQemuArgs(
      {
        provisioned: p,
        vfioUserSockets: sockets,
        memory: flags['private-ram'] ? 'private' : 'shared',
        memMiB,
        viommu: flags.viommu === true,
        interactive: true,
        extraArgs: (flags['qemu-arg'] as string[] | undefined) ?? [],
      },
      accel,
      initrd,
    );

  if (flags['print-qemu-args']) {
    deps.out(shellCommand(p.qemu.env, p.qemu.file, [...p.qemu.prefixArgs, ...qemuArgs(cfg.devices.map((d) => d.socket))]));
    for (const d of cfg.devices) deps.note(`serve ${d.name} on ${d.socket} for this command line`);
    return 0;
  }

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfio-user-ts-vm-'));
  try {
    const served = inTempDir(cfg, flags.socket === undefined && flags.config === undefined, dir);
    const rt = await startServer(served);
    let exit: QemuExit;
    try {
      for (const d of served.devices) deps.note(`serving ${d.kind.kind} '${d.name}' on ${d.socket}`);
      exit = await runQemuOnConsole(p.qemu, qemuArgs(served.devices.map((d) => d.socket)));
    } finally {
      await rt.close();
    }
    return exit.code ?? 128 + (os.constants.signals[exit.signal!] ?? 0);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function socketFile(name: string): string {
  return `${name}.sock`;
}

/** The config with the one device given without --socket moved into `dir`. */
function inTempDir(cfg: ServerConfig, defaulted: boolean, dir: string): ServerConfig {
  if (!defaulted) return cfg;
  return {
    ...cfg,
    devices: cfg.devices.map((d) => ({ ...d, socket: checkSocketPath(path.join(dir, socketFile(d.name)), d.name) })),
  };
}

/** --memory as whole MiB within bounds. */
function memoryMiB(raw: string | undefined): number {
  if (raw === undefined) return 512;
  const bytes = parseSize(raw, '--memory');
  if (bytes % 2 ** 20 !== 0) throw new UsageError(`--memory ${raw} is not a whole number of MiB`);
  const mib = bytes / 2 ** 20;
  if (mib < MIN_MEM_MIB || mib > MAX_MEM_MIB) throw new UsageError(`--memory ${raw} is outside ${MIN_MEM_MIB}M..${MAX_MEM_MIB / 1024}G`);
  return mib;
}

async function vmHelp(kind: string | undefined): Promise<string> {
  const device = kind === undefined ? '' : `\ndevice:\n${kindHelp(await resolveDeviceKind(kind), kind)}\n`;
  return `usage: vfio-user-ts vm <kind> [device options] [options]
       vfio-user-ts vm --config devices.json [options]

Boots the provisioned Debian guest against the devices, served by this
process, with the guest's serial console on this terminal: a busybox shell
with the guest's driver modules loaded. exit or poweroff -f in the guest
powers it off; Ctrl-A X quits QEMU. Sockets given by neither --socket nor
--config go to a temp dir; all are removed when QEMU exits.

vm options:
${helpFor(VM_FLAGS)}

serve options:
${helpFor(SERVE_FLAGS)}
${device}`;
}
