// Ready QEMU argument sets: machine, memory, console, accelerator, vIOMMU, vfio-user devices.

export type Accel = 'kvm' | 'tcg';

export interface MachineOptions {
  accel: Accel;
  /**
   * 'shared' (default): memfd guest RAM with share=on, so QEMU passes its fd in DMA_MAP
   * and the server maps guest memory. 'private': anonymous RAM, no fd in DMA_MAP, so
   * every device DMA goes over DMA_READ/DMA_WRITE messages.
   */
  memory?: 'shared' | 'private';
  /** Guest RAM in MiB (default 512). */
  memMiB?: number;
  /** vCPUs (default 1). */
  smp?: number;
  /** An emulated Intel IOMMU in the guest (pair with `kernelCmdline({ viommu: true })`). */
  viommu?: boolean;
  /** The console is a person's terminal: multiplexed, so that Ctrl-A X quits QEMU. */
  interactive?: boolean;
}

/** q35 with its RAM from an explicit memory backend, no default devices, serial on stdio. */
export function machineArgs(o: MachineOptions): string[] {
  const mem = o.memMiB ?? 512;
  const machine = ['q35', 'memory-backend=mem'];
  // With KVM, interrupt remapping (on by default with intel-iommu) needs a split irqchip.
  if (o.viommu && o.accel === 'kvm') machine.push('kernel-irqchip=split');
  const backend =
    (o.memory ?? 'shared') === 'shared'
      ? `memory-backend-memfd,id=mem,size=${mem}M,share=on`
      : `memory-backend-ram,id=mem,size=${mem}M,share=off`;
  return [
    '-nodefaults',
    '-no-user-config',
    '-display', 'none',
    '-no-reboot',
    '-machine', machine.join(','),
    '-accel', o.accel,
    ...(o.accel === 'kvm' ? ['-cpu', 'host'] : ['-cpu', 'max']),
    '-m', `${mem}M`,
    '-object', backend,
    '-smp', String(o.smp ?? 1),
    ...consoleArgs(o.interactive ?? false),
    // The IOMMU must exist before the PCI devices that sit behind it.
    ...(o.viommu ? viommuArgs() : []),
  ];
}

/**
 * The first serial port on QEMU's stdin/stdout (Ctrl-C goes to the guest, not to QEMU);
 * `mux` adds QEMU's Ctrl-A escapes (Ctrl-A X quits).
 */
export function consoleArgs(mux = false): string[] {
  return ['-chardev', `stdio,id=ser0,signal=off${mux ? ',mux=on' : ''}`, '-serial', 'chardev:ser0', '-monitor', 'none'];
}

/** An Intel vIOMMU that reports every mapping change (what vfio-user needs). */
export function viommuArgs(): string[] {
  return ['-device', 'intel-iommu,caching-mode=on'];
}

/** One vfio-user-pci device whose server listens on `socketPath`. */
export function vfioUserDeviceArgs(socketPath: string, props: Record<string, unknown> = {}): string[] {
  return ['-device', JSON.stringify({ driver: 'vfio-user-pci', socket: { path: socketPath, type: 'unix' }, ...props })];
}

export interface CmdlineOptions {
  viommu?: boolean;
  /** Keep kernel messages on the console (default: `quiet`). */
  verbose?: boolean;
  extra?: readonly string[];
}

/** Serial console, power off (not reboot) on panic, `intel_iommu=on` with a vIOMMU. */
export function kernelCmdline(o: CmdlineOptions = {}): string {
  return [
    'console=ttyS0',
    'panic=-1',
    'oops=panic',
    o.verbose ? 'loglevel=7' : 'quiet',
    ...(o.viommu ? ['intel_iommu=on'] : []),
    ...(o.extra ?? []),
  ].join(' ');
}

/** Direct kernel boot. */
export function kernelBootArgs(kernel: string, initrd: string, cmdline: string): string[] {
  return ['-kernel', kernel, '-initrd', initrd, '-append', cmdline];
}

export interface BuiltinVirtioBlkOptions {
  id?: string;
  readonly?: boolean;
  /** QEMU's host cache mode for the image (default 'writeback'; 'none' = O_DIRECT). */
  cache?: 'writeback' | 'none' | 'unsafe' | 'directsync' | 'writethrough';
  /** Put the device behind the guest's vIOMMU (needed with `viommu`, as our devices are). */
  iommuPlatform?: boolean;
  queues?: number;
  /** Skip QEMU's image lock, so that two drives (used one at a time) can share one image. */
  noLocking?: boolean;
}

/**
 * QEMU's own virtio-blk-pci on a raw image: the baseline the benchmarks compare our
 * virtio-blk against (same QEMU, same guest, same image).
 */
export function builtinVirtioBlkArgs(image: string, o: BuiltinVirtioBlkOptions = {}): string[] {
  const id = o.id ?? 'qblk0';
  const drive = [`file=${image.replace(/,/g, ',,')}`, 'if=none', `id=${id}`, 'format=raw', `cache=${o.cache ?? 'writeback'}`];
  if (o.readonly) drive.push('readonly=on');
  if (o.noLocking) drive.push('file.locking=off');
  const dev = ['virtio-blk-pci', `drive=${id}`, 'disable-legacy=on'];
  if (o.iommuPlatform) dev.push('iommu_platform=on');
  if (o.queues) dev.push(`num-queues=${o.queues}`);
  return ['-drive', drive.join(','), '-device', dev.join(',')];
}

export interface BuiltinNvmeOptions {
  /** Controller id (default 'qnvme0'); its drives are `<id>-ns<N>`. */
  id?: string;
  serial?: string;
  /** PCI slot on the root bus, e.g. '10.0'. */
  addr?: string;
  /** QEMU's host cache mode for the images (default 'writeback'; 'none' = O_DIRECT). */
  cache?: 'writeback' | 'none' | 'unsafe' | 'directsync' | 'writethrough';
  /** Skip QEMU's image lock, so that drives used one at a time can share an image. */
  noLocking?: boolean;
  /** Discards reach the image (`discard=unmap`), as ours punch holes. */
  discard?: boolean;
  /** Largest transfer, 2^mdts minimum pages (QEMU's default 7: 512 KiB; ours is 8). */
  mdts?: number;
}

/**
 * QEMU's own NVMe controller (`-device nvme`) with one namespace per raw image
 * (NSIDs 1, 2, ... in order): the baseline the NVMe benchmark compares ours against.
 */
export function builtinNvmeArgs(images: readonly string[], o: BuiltinNvmeOptions = {}): string[] {
  const id = o.id ?? 'qnvme0';
  const ctrl = ['nvme', `id=${id}`, `serial=${o.serial ?? id}`];
  if (o.addr) ctrl.push(`addr=${o.addr}`);
  if (o.mdts !== undefined) {
    if (!Number.isInteger(o.mdts) || o.mdts < 0 || o.mdts > 15) throw new RangeError(`mdts ${o.mdts}`);
    ctrl.push(`mdts=${o.mdts}`);
  }
  const args = ['-device', ctrl.join(',')];
  images.forEach((image, i) => {
    const drive = [`file=${image.replace(/,/g, ',,')}`, 'if=none', `id=${id}-ns${i + 1}`, 'format=raw', `cache=${o.cache ?? 'writeback'}`];
    if (o.noLocking) drive.push('file.locking=off');
    if (o.discard) drive.push('discard=unmap');
    args.push('-drive', drive.join(','), '-device', `nvme-ns,drive=${id}-ns${i + 1},bus=${id},nsid=${i + 1}`);
  });
  return args;
}
