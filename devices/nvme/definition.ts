// The nvme kind: how the CLI, config files and startServer build an NvmeController.
import type { DeviceContext, DeviceDefinition } from '../definition.js';
import { DEFAULT_DEVICE_ID, DEFAULT_VENDOR_ID } from './constants.js';
import { NvmeController, type NvmeOptions } from './controller.js';

/** The options `create` receives (the schema's, with the disk list named as the controller wants it). */
type NvmeKindOptions = Omit<NvmeOptions, 'disks'> & { disk: string[] };

/** An NVMe controller on raw image files (`serve nvme --disk a.img --disk b.img`). */
export const nvmeDevice = {
  kind: 'nvme',
  description: 'NVMe controller (class 01 08 02) on raw image files, one namespace each: admin and I/O queues, shadow doorbells, PRP and SGL',
  guestDriver: 'nvme',
  options: {
    disk: { type: 'string', help: 'raw image file, one namespace each (created at --size if missing)', required: true, repeatable: true },
    size: { type: 'size', help: 'image size when creating it, a multiple of the LBA size (or 64M/2G style)', min: 512, unit: 'bytes' },
    readonly: { type: 'boolean', help: 'write-protected namespaces', default: false },
    queues: { type: 'u32', help: 'I/O queue pairs', min: 1, max: 64, default: 4 },
    queueSize: { type: 'u32', help: 'largest queue (CAP.MQES + 1)', min: 2, max: 4096, unit: 'entries', default: 1024 },
    lbaSize: { type: 'u32', help: 'LBA size of the namespaces: 512 or 4096', min: 512, max: 4096, unit: 'bytes', default: 512 },
    serial: { type: 'string', help: 'serial number, at most 20 ASCII characters (default: the first image file name)' },
    vendorId: { type: 'u32', help: 'PCI vendor id', max: 0xfffe, hex: true, default: DEFAULT_VENDOR_ID },
    deviceId: { type: 'u32', help: 'PCI device id', max: 0xffff, hex: true, default: DEFAULT_DEVICE_ID },
  },
  create: ({ disk, ...options }: NvmeKindOptions, context: DeviceContext) => new NvmeController({ log: context.log, ...options, disks: disk }),
} satisfies DeviceDefinition;
