// Booting the provisioned guest once: /test.sh = the caller's script, serial console
// captured, QEMU stopped on timeout and never left running.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chooseAccel, markKvmBroken } from './accel.js';
import { bootInitramfs, type ExtraFile } from './initramfs.js';
import { kernelBootArgs, kernelCmdline, machineArgs, vfioUserDeviceArgs, type Accel } from './qemu-args.js';
import { runQemu, type QemuRunResult } from './qemu-process.js';
import { parseGuestOutput, SCRIPT_PRELUDE, type GuestReport } from './results.js';
import type { Provisioned } from './provision.js';

export interface BootOptions {
  provisioned: Provisioned;
  /** sh script run in the guest as /test.sh (a `result KEY VALUE` helper is defined). */
  script: string;
  /** One vfio-user-pci device per socket path (the servers must already listen). */
  vfioUserSockets?: string[];
  /** More QEMU arguments, appended last. */
  extraArgs?: string[];
  /** More guest kernel command-line words. */
  extraCmdline?: string[];
  /** Extra files in the guest (e.g. data or helper scripts). */
  files?: ExtraFile[];
  /** Cached archives unpacked over the base image, before `files` (e.g. `provisionFio()`'s). */
  layers?: readonly string[];
  memory?: 'shared' | 'private';
  memMiB?: number;
  smp?: number;
  viommu?: boolean;
  /** Kernel messages on the console instead of `quiet`. */
  verbose?: boolean;
  /** Forces an accelerator (default: $VFIO_USER_TS_ACCEL, else KVM only if it works here). */
  accel?: Accel;
  timeoutMs: number;
  onLine?: (line: string) => void;
  signal?: AbortSignal;
}

/** What guestQemuArgs needs of a boot. */
export type GuestArgsOptions = Pick<
  BootOptions,
  'provisioned' | 'vfioUserSockets' | 'extraArgs' | 'extraCmdline' | 'memory' | 'memMiB' | 'smp' | 'viommu' | 'verbose'
> & {
  /** The console is a person's terminal (Ctrl-A X quits QEMU). */
  interactive?: boolean;
};

export interface BootResult extends QemuRunResult, GuestReport {
  accel: Accel;
  /** The guest powered itself off after /init ran the script (QEMU exited 0 on its own). */
  poweredOff: boolean;
  /** A kernel panic was seen on the console. */
  panicked: boolean;
  /** The QEMU command line (for error messages). */
  args: string[];
}

/** What QEMU warns when a vfio device offers no ERR interrupt: it then runs without error recovery. */
export const NO_ERROR_RECOVERY = 'Could not enable error recovery';

const KVM_FAILURE = /KVM internal error|kvm run failed|failed to initialize kvm|Could not access KVM/i;

/** The QEMU arguments of one boot of the provisioned kernel with `initrd`: machine, console, kernel, vfio-user devices, extras. */
export function guestQemuArgs(opts: GuestArgsOptions, accel: Accel, initrd: string): string[] {
  return [
    ...machineArgs({
      accel,
      memory: opts.memory ?? 'shared',
      memMiB: opts.memMiB ?? 512,
      smp: opts.smp ?? 1,
      viommu: opts.viommu ?? false,
      interactive: opts.interactive ?? false,
    }),
    ...kernelBootArgs(
      opts.provisioned.kernel,
      initrd,
      kernelCmdline({ viommu: opts.viommu ?? false, verbose: opts.verbose ?? false, extra: opts.extraCmdline ?? [] }),
    ),
    ...(opts.vfioUserSockets ?? []).flatMap((s) => vfioUserDeviceArgs(s)),
    ...(opts.extraArgs ?? []),
  ];
}

/** The accelerator for guests of this provisioned cache: $VFIO_USER_TS_ACCEL, else KVM only if a probe boot works here. */
export function guestAccel(p: Provisioned): Promise<Accel> {
  return chooseAccel(p.cacheDir, () => probeKvm(p));
}

export async function bootGuest(opts: BootOptions): Promise<BootResult> {
  const p = opts.provisioned;
  const accel = opts.accel ?? (await guestAccel(p));
  const r = await bootOnce(opts, accel);
  if (accel === 'kvm' && !opts.accel && KVM_FAILURE.test(r.stderr)) {
    // KVM looked fine earlier but failed now: remember that, and run this boot with TCG.
    await markKvmBroken(p.cacheDir, r.stderr.slice(0, 500));
    return bootOnce(opts, 'tcg');
  }
  return r;
}

async function bootOnce(opts: BootOptions, accel: Accel): Promise<BootResult> {
  const p = opts.provisioned;
  const dir = await mkdtemp(join(tmpdir(), 'vfio-user-ts-boot-'));
  try {
    const initrd = join(dir, 'initrd.img');
    await writeFile(initrd, await bootInitramfs(p.initramfsBase, SCRIPT_PRELUDE + opts.script, opts.files, opts.layers));
    const args = guestQemuArgs(opts, accel, initrd);
    const run = await runQemu({
      qemu: p.qemu,
      args,
      timeoutMs: opts.timeoutMs,
      ...(opts.onLine ? { onLine: opts.onLine } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(accel === 'kvm' ? { killOnStderr: KVM_FAILURE } : {}),
    });
    const report = parseGuestOutput(run.lines);
    return {
      ...run,
      ...report,
      accel,
      poweredOff: run.qemuExitCode === 0 && !run.timedOut && !run.killed && report.exitCode !== null,
      panicked: run.lines.some((l) => l.includes('Kernel panic')),
      args,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A short boot under KVM: it works here only if the guest reaches its script. */
async function probeKvm(p: Provisioned): Promise<{ ok: boolean; detail: string }> {
  let r: BootResult;
  try {
    r = await bootOnce({ provisioned: p, script: 'result kvm ok\n', timeoutMs: 30_000, memMiB: 256 }, 'kvm');
  } catch (e) {
    return { ok: false, detail: `QEMU did not start: ${(e as Error).message}` };
  }
  const ok = r.results.kvm === 'ok' && r.poweredOff;
  return { ok, detail: ok ? `booted in ${r.durationMs} ms` : (r.stderr.trim() || r.output.slice(-300)).slice(0, 500) };
}

/** A readable summary of a boot that went wrong, for test failure messages. */
export function describeBoot(r: BootResult): string {
  return [
    `accel=${r.accel} qemuExit=${r.qemuExitCode ?? r.qemuSignal} timedOut=${r.timedOut} scriptExit=${r.exitCode}`,
    `--- console (last 40 lines) ---`,
    ...r.lines.slice(-40),
    `--- qemu stderr ---`,
    r.stderr.trim().slice(-2000),
  ].join('\n');
}
