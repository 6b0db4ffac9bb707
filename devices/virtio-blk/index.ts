export { VirtioBlk, type BlkStats, type VirtioBlkOptions } from './blk.js';
export { BlkConfig, BlkFeature, BlkStatus, BlkType } from './constants.js';
