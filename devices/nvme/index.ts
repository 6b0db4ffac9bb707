export { NvmeController, type NvmeOptions } from './controller.js';
export { NvmeError } from './errors.js';
export type { NvmeCounters } from './stats.js';
