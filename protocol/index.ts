// The protocol layer: wire constants, the header, VERSION negotiation and one
// codec per command. Pure functions over Buffers: no I/O, no device or server
// knowledge. Decoders throw VfioUserError(errno) for every bad field.
export * from './errno.js';
export * from './constants.js';
export * from './limits.js';
export * from './header.js';
export * from './version.js';
export * from './commands/dma-map.js';
export * from './commands/dma-unmap.js';
export * from './commands/device-get-info.js';
export * from './commands/region-info.js';
export * from './commands/region-io-fds.js';
export * from './commands/irq-info.js';
export * from './commands/set-irqs.js';
export * from './commands/region-access.js';
export * from './commands/dma-access.js';
export * from './commands/device-reset.js';
export * from './commands/region-write-multi.js';
export * from './commands/device-feature.js';
export * from './commands/mig-data.js';
export * from './commands/dirty-pages.js';
