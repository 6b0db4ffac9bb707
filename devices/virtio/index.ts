// The virtio 1.x modern PCI transport and the split virtqueue; device types
// (virtio-rng, virtio-blk, ...) declare a VirtioDeviceSpec.
export * from './constants.js';
export { iovaAdd, iovaFrom, iovaOf, readU16, storeU16Fenced } from './dma-util.js';
export { DescChain, MAX_INDIRECT, RingError, Virtqueue, needEvent, type QueueStats, type VirtqueueHost } from './virtqueue.js';
export {
  Layout,
  MSIX_BAR,
  VIRTIO_BAR,
  VIRTIO_BAR_SIZE,
  VirtioPciTransport,
  type VirtioDeviceSpec,
  type VirtioTransportOptions,
} from './transport.js';
export { chainRead, chainView, chainWrite, withChainSpans, withChainViews } from './chain-io.js';
