// The blk kind: how the CLI, config files and startServer build a VirtioBlk.
import type { DeviceContext, DeviceDefinition } from '../definition.js';
import { VirtioBlk, type VirtioBlkOptions } from './blk.js';

/** virtio-blk on a raw image file (`serve blk --disk d.img`). */
export const blkDevice = {
  kind: 'blk',
  description: 'virtio-blk (1af4:1042) on a raw image file: read/write/flush/discard/write-zeroes, multiqueue',
  guestDriver: 'virtio_blk',
  options: {
    disk: { type: 'string', help: 'raw image file (created at --size if missing)', required: true },
    size: { type: 'size', help: 'image size when creating it, a multiple of 512 (or 64M/2G style)', min: 512, unit: 'bytes' },
    readonly: { type: 'boolean', help: 'read-only disk (VIRTIO_BLK_F_RO)', default: false },
    queues: { type: 'u32', help: 'request queues (more than one offers VIRTIO_BLK_F_MQ)', min: 1, max: 64, default: 1 },
    queueSize: { type: 'u32', help: 'size of each queue, a power of two', min: 4, max: 1024, unit: 'entries', default: 256 },
    serial: { type: 'string', help: 'GET_ID serial, at most 20 bytes (default: the image file name)' },
  },
  create: (options: VirtioBlkOptions, context: DeviceContext) => new VirtioBlk({ log: context.log, inOrder: context.deterministic, ...options }),
} satisfies DeviceDefinition;
