// Virtio 1.x numbers (virtio spec v1.2: 2.1 status, 2.7 split virtqueues,
// 4.1 PCI transport, 6 reserved feature bits). Shared by the transport, the
// virtqueue and the device models.

export const VIRTIO_PCI_VENDOR = 0x1af4;
/** Modern (non-transitional) PCI device id = 0x1040 + virtio device type. */
export const VIRTIO_PCI_DEVICE_BASE = 0x1040;
/** Subsystem id QEMU gives PCI devices; Linux ignores it for ids >= 0x1040. */
export const VIRTIO_PCI_SUBSYSTEM = 0x1100;

/** Virtio device types (spec 5). */
export const VirtioId = {
  NET: 1,
  BLOCK: 2,
  CONSOLE: 3,
  RNG: 4,
} as const;

/** Device status bits (spec 2.1). */
export const Status = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  DEVICE_NEEDS_RESET: 0x40,
  FAILED: 0x80,
} as const;

/** Transport feature bits (spec 6), as bit numbers. */
export const Feature = {
  INDIRECT_DESC: 28,
  EVENT_IDX: 29,
  VERSION_1: 32,
  ACCESS_PLATFORM: 33,
  RING_PACKED: 34,
  IN_ORDER: 35,
  ORDER_PLATFORM: 36,
  SR_IOV: 37,
  NOTIFICATION_DATA: 38,
  RING_RESET: 40,
} as const;

export const bit = (n: number): bigint => 1n << BigInt(n);

/** Transport features every device offers. */
export const TRANSPORT_FEATURES =
  bit(Feature.INDIRECT_DESC) | bit(Feature.EVENT_IDX) | bit(Feature.VERSION_1) | bit(Feature.ACCESS_PLATFORM);

/** vring descriptor flags. */
export const Desc = {
  NEXT: 1,
  WRITE: 2,
  INDIRECT: 4,
  SIZE: 16,
} as const;

/** avail->flags: the driver does not want interrupts (without EVENT_IDX). */
export const VRING_AVAIL_F_NO_INTERRUPT = 1;
/** used->flags: the device does not need notifications (without EVENT_IDX). */
export const VRING_USED_F_NO_NOTIFY = 1;

/** MSI-X "no vector" (config_msix_vector, queue_msix_vector). */
export const NO_VECTOR = 0xffff;

/** Maximum split queue size (spec 2.7). */
export const QUEUE_SIZE_MAX = 32768;

/** virtio_pci_cap.cfg_type (spec 4.1.4). */
export const CapType = {
  COMMON: 1,
  NOTIFY: 2,
  ISR: 3,
  DEVICE: 4,
  PCI_CFG: 5,
} as const;

/** struct virtio_pci_common_cfg offsets (spec 4.1.4.3). */
export const Common = {
  DEVICE_FEATURE_SELECT: 0x00, // le32 RW
  DEVICE_FEATURE: 0x04, // le32 RO
  DRIVER_FEATURE_SELECT: 0x08, // le32 RW
  DRIVER_FEATURE: 0x0c, // le32 RW
  CONFIG_MSIX_VECTOR: 0x10, // le16 RW
  NUM_QUEUES: 0x12, // le16 RO
  DEVICE_STATUS: 0x14, // u8 RW
  CONFIG_GENERATION: 0x15, // u8 RO
  QUEUE_SELECT: 0x16, // le16 RW
  QUEUE_SIZE: 0x18, // le16 RW
  QUEUE_MSIX_VECTOR: 0x1a, // le16 RW
  QUEUE_ENABLE: 0x1c, // le16 RW
  QUEUE_NOTIFY_OFF: 0x1e, // le16 RO
  QUEUE_DESC: 0x20, // le64 RW
  QUEUE_DRIVER: 0x28, // le64 RW
  QUEUE_DEVICE: 0x30, // le64 RW
  QUEUE_NOTIFY_DATA: 0x38, // le16 RO (NOTIF_CONFIG_DATA)
  QUEUE_RESET: 0x3a, // le16 RW (RING_RESET)
  SIZE: 0x3c,
} as const;

/** ISR status bits. */
export const Isr = {
  QUEUE: 1,
  CONFIG: 2,
} as const;
