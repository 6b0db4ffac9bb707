// Public surface of qemu-configs: provisioning, QEMU argument sets, guest boots.
export { provision, provisionFio, type GuestLayer, type Provisioned, type ProvisionOptions, type QemuCommand, type ProgressLog } from './provision.js';
export { defaultCacheDir } from './cache.js';
export { checkQemu, qemuSpawn } from './qemu-command.js';
export {
  machineArgs,
  consoleArgs,
  viommuArgs,
  vfioUserDeviceArgs,
  builtinVirtioBlkArgs,
  builtinNvmeArgs,
  kernelCmdline,
  kernelBootArgs,
  type Accel,
  type MachineOptions,
} from './qemu-args.js';
export { bootGuest, describeBoot, NO_ERROR_RECOVERY, type BootOptions, type BootResult } from './boot.js';
export { runQemu, type QemuRunOptions, type QemuRunResult } from './qemu-process.js';
export { parseGuestOutput, SCRIPT_PRELUDE, type GuestReport } from './results.js';
export { cpioArchive, concatInitramfs, type CpioEntry } from './cpio.js';
export type { ExtraFile } from './initramfs.js';
