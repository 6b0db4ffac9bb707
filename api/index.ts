// `vfio-user-ts`: run a vfio-user server in-process. Device authors import
// `vfio-user-ts/device`; the IOMMU model is `vfio-user-ts/iommu`; a raw
// protocol client for tests is `vfio-user-ts/testing`.

/** Starts a server: devices by kind (built-in, module path or definition) or ready models; resolves once all listen. */
export { startServer } from '../server/runtime.js';
/** What startServer serves. */
export type { ServerSpec } from '../server/runtime.js';
/** A device startServer builds from its kind and options. */
export type { DeviceFromKind } from '../server/runtime.js';
/** A device the caller built, served as it is. */
export type { ReadyDevice } from '../server/runtime.js';
/** A running server: its models, IOMMU contexts, hosts and close(). */
export type { RunningServer } from '../server/runtime.js';
/** Reads and checks a JSON config file (the one `serve --config` takes); pass the result to startServer. */
export { loadConfigFile } from '../cli/config.js';
/** A checked config. */
export type { ServerConfig } from '../cli/config.js';
/** One checked device of a config. */
export type { DeviceConfig } from '../cli/config.js';
/** A config that cannot be served. */
export { ConfigError } from '../cli/config.js';
/** Sets the server's log level: silent, error (default), warn, info, debug or trace. */
export { setLogLevel } from '../server/log.js';

/** Imports a device module and checks its default export. */
export { loadDeviceModule } from '../devices/load.js';
/** The built-in device definitions. */
export { deviceKinds } from '../devices/index.js';
/** The gpio kind's definition (ACCES PCI-IDIO-16). */
export { gpioDevice } from '../devices/gpio-idio16/definition.js';
/** The rng kind's definition (virtio-rng). */
export { rngDevice } from '../devices/virtio-rng/definition.js';
/** The blk kind's definition (virtio-blk on a raw image). */
export { blkDevice } from '../devices/virtio-blk/definition.js';
/** The nvme kind's definition (an NVMe controller on raw images). */
export { nvmeDevice } from '../devices/nvme/definition.js';
/** The gpio model: setInputs(), inputs, outputs and an 'outputs' event. */
export { Idio16 } from '../devices/gpio-idio16/idio16.js';
/** Idio16's constructor options. */
export type { Idio16Options } from '../devices/gpio-idio16/idio16.js';
/** The rng model: bytesServed. */
export { VirtioRng } from '../devices/virtio-rng/rng.js';
/** VirtioRng's constructor options. */
export type { VirtioRngOptions } from '../devices/virtio-rng/rng.js';
/** The blk model: stats, capacity, close(). */
export { VirtioBlk } from '../devices/virtio-blk/blk.js';
/** VirtioBlk's constructor options. */
export type { VirtioBlkOptions } from '../devices/virtio-blk/blk.js';
/** VirtioBlk's request counters. */
export type { BlkStats } from '../devices/virtio-blk/blk.js';
/** The nvme model: stats(), namespaces, close(). */
export { NvmeController } from '../devices/nvme/controller.js';
/** NvmeController's constructor options. */
export type { NvmeOptions } from '../devices/nvme/controller.js';
/** NvmeController's counters (what stats() returns a copy of). */
export type { NvmeCounters } from '../devices/nvme/stats.js';
