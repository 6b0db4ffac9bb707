// Wire constants of vfio-user (QEMU docs/interop/vfio-user.rst, QEMU 11.1
// hw/vfio-user/protocol.h) and the Linux VFIO constants it reuses
// (include/uapi/linux/vfio.h). All values are host-endian on the wire; we
// only run on little-endian hosts, so codecs read and write LE.

/** Command numbers (the header's `command` field). */
export const Command = {
  VERSION: 1,
  DMA_MAP: 2,
  DMA_UNMAP: 3,
  DEVICE_GET_INFO: 4,
  DEVICE_GET_REGION_INFO: 5,
  DEVICE_GET_REGION_IO_FDS: 6,
  DEVICE_GET_IRQ_INFO: 7,
  DEVICE_SET_IRQS: 8,
  REGION_READ: 9,
  REGION_WRITE: 10,
  /** Server → client. */
  DMA_READ: 11,
  /** Server → client. */
  DMA_WRITE: 12,
  DEVICE_RESET: 13,
  /**
   * @deprecated Dropped from the current spec (migration v1 dirty tracking);
   * still in QEMU's and libvfio-user's enums. Superseded by DEVICE_FEATURE
   * DMA_LOGGING_*.
   */
  DIRTY_PAGES: 14,
  REGION_WRITE_MULTI: 15,
  DEVICE_FEATURE: 16,
  MIG_DATA_READ: 17,
  MIG_DATA_WRITE: 18,
} as const;
export type CommandName = keyof typeof Command;

const commandNames = new Map<number, string>(Object.entries(Command).map(([name, id]) => [id as number, name]));

/** "REGION_READ" for 9; "command 99" for an unknown number (for logs). */
export function commandName(command: number): string {
  return commandNames.get(command) ?? `command ${command}`;
}
export const COMMAND_MIN = 1;
export const COMMAND_MAX = 18;

// ---- header flags (bits 0-3 type, bit 4 no_reply, bit 5 error) ----
export const VFIO_USER_F_TYPE_MASK = 0xf;
export const VFIO_USER_F_TYPE_COMMAND = 0x0;
export const VFIO_USER_F_TYPE_REPLY = 0x1;
export const VFIO_USER_F_NO_REPLY = 0x10;
export const VFIO_USER_F_ERROR = 0x20;

// ---- protocol version and negotiation bounds ----
export const VFIO_USER_MAJOR = 0;
/** QEMU 11.1 rejects a VERSION reply with minor > 0. */
export const VFIO_USER_MINOR = 0;
/** QEMU's VFIO_USER_MAX_MAX_FDS: it rejects a reply above this. */
export const MAX_MSG_FDS_LIMIT = 16;
/** QEMU's VFIO_USER_MAX_MAX_XFER: it rejects a reply above this. */
export const MAX_DATA_XFER_SIZE_LIMIT = 64 * 1024 * 1024;
/** Spec default of max_data_xfer_size (also QEMU's offer). */
export const DEFAULT_MAX_DATA_XFER_SIZE = 1024 * 1024;
/** QEMU reads the whole (PCIe, 4 KiB) config space in one REGION_READ. */
export const MIN_DATA_XFER_SIZE = 4096;
/** Spec default of max_msg_fds when a side does not state it. */
export const DEFAULT_MAX_MSG_FDS = 1;
export const DEFAULT_PGSIZE = 4096;
/** Spec default and QEMU's limit (the kernel's dma_entry_limit). */
export const MAX_DMA_MAPS_LIMIT = 65535;

// ---- VFIO_DEVICE_FLAGS_* (DEVICE_GET_INFO flags) ----
export const VFIO_DEVICE_FLAGS_RESET = 1 << 0;
export const VFIO_DEVICE_FLAGS_PCI = 1 << 1;
export const VFIO_DEVICE_FLAGS_PLATFORM = 1 << 2;
export const VFIO_DEVICE_FLAGS_AMBA = 1 << 3;
export const VFIO_DEVICE_FLAGS_CCW = 1 << 4;
export const VFIO_DEVICE_FLAGS_AP = 1 << 5;
export const VFIO_DEVICE_FLAGS_FSL_MC = 1 << 6;
export const VFIO_DEVICE_FLAGS_CAPS = 1 << 7;
export const VFIO_DEVICE_FLAGS_CDX = 1 << 8;

// ---- PCI region indices ----
export const VFIO_PCI_BAR0_REGION_INDEX = 0;
export const VFIO_PCI_BAR1_REGION_INDEX = 1;
export const VFIO_PCI_BAR2_REGION_INDEX = 2;
export const VFIO_PCI_BAR3_REGION_INDEX = 3;
export const VFIO_PCI_BAR4_REGION_INDEX = 4;
export const VFIO_PCI_BAR5_REGION_INDEX = 5;
export const VFIO_PCI_ROM_REGION_INDEX = 6;
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;
export const VFIO_PCI_VGA_REGION_INDEX = 8;
export const VFIO_PCI_NUM_REGIONS = 9;

// ---- PCI IRQ indices ----
export const VFIO_PCI_INTX_IRQ_INDEX = 0;
export const VFIO_PCI_MSI_IRQ_INDEX = 1;
export const VFIO_PCI_MSIX_IRQ_INDEX = 2;
export const VFIO_PCI_ERR_IRQ_INDEX = 3;
export const VFIO_PCI_REQ_IRQ_INDEX = 4;
export const VFIO_PCI_NUM_IRQS = 5;

// ---- region info ----
export const VFIO_REGION_INFO_FLAG_READ = 1 << 0;
export const VFIO_REGION_INFO_FLAG_WRITE = 1 << 1;
export const VFIO_REGION_INFO_FLAG_MMAP = 1 << 2;
export const VFIO_REGION_INFO_FLAG_CAPS = 1 << 3;
/** Capability ids in the region info capability chain. */
export const VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1;
export const VFIO_REGION_INFO_CAP_TYPE = 2;
export const VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = 3;

// ---- GET_REGION_IO_FDS sub-region types ----
export const VFIO_USER_IO_FD_TYPE_IOEVENTFD = 0;
export const VFIO_USER_IO_FD_TYPE_IOREGIONFD = 1;
/** libvfio-user extension (not in the spec). */
export const VFIO_USER_IO_FD_TYPE_IOEVENTFD_SHADOW = 2;

// ---- IRQ info ----
export const VFIO_IRQ_INFO_EVENTFD = 1 << 0;
export const VFIO_IRQ_INFO_MASKABLE = 1 << 1;
export const VFIO_IRQ_INFO_AUTOMASKED = 1 << 2;
export const VFIO_IRQ_INFO_NORESIZE = 1 << 3;

// ---- SET_IRQS flags: exactly one DATA_* and one ACTION_* ----
export const VFIO_IRQ_SET_DATA_NONE = 1 << 0;
export const VFIO_IRQ_SET_DATA_BOOL = 1 << 1;
export const VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2;
export const VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
export const VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;
export const VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;
export const VFIO_IRQ_SET_DATA_TYPE_MASK = 0x7;
export const VFIO_IRQ_SET_ACTION_TYPE_MASK = 0x38;

// ---- DMA map / unmap flags ----
export const VFIO_DMA_MAP_FLAG_READ = 1 << 0;
export const VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;
export const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0;
export const VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1;

// ---- DIRTY_PAGES (deprecated command 14) flags ----
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1 << 0;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 1 << 1;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 1 << 2;

// ---- DEVICE_FEATURE: flags = feature index (bits 0-15) | GET | SET | PROBE ----
export const VFIO_DEVICE_FEATURE_MASK = 0xffff;
export const VFIO_DEVICE_FEATURE_GET = 1 << 16;
export const VFIO_DEVICE_FEATURE_SET = 1 << 17;
export const VFIO_DEVICE_FEATURE_PROBE = 1 << 18;
/** Feature ids vfio-user defines (a subset of Linux's). */
export const VFIO_DEVICE_FEATURE_MIGRATION = 1;
export const VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE = 2;
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_START = 6;
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP = 7;
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT = 8;
/** Linux's LOG_MAX_RANGES for DMA_LOGGING_START (more → E2BIG). */
export const DMA_LOGGING_MAX_RANGES = 256;

/** VFIO_DEVICE_FEATURE_MIGRATION reply flags. */
export const VFIO_MIGRATION_STOP_COPY = 1 << 0;
export const VFIO_MIGRATION_P2P = 1 << 1;
export const VFIO_MIGRATION_PRE_COPY = 1 << 2;

/** enum vfio_device_mig_state. */
export const MigState = {
  ERROR: 0,
  STOP: 1,
  RUNNING: 2,
  STOP_COPY: 3,
  RESUMING: 4,
  /** Not used in vfio-user. */
  RUNNING_P2P: 5,
  PRE_COPY: 6,
  /** Not used in vfio-user. */
  PRE_COPY_P2P: 7,
} as const;
export const MIG_STATE_COUNT = 8;

// ---- REGION_WRITE_MULTI (QEMU protocol.h) ----
/** Data bytes in one VFIOUserWROne entry: writes of at most 8 bytes. */
export const VFIO_USER_MULTI_DATA = 8;
/** Entries in one REGION_WRITE_MULTI message. */
export const VFIO_USER_MULTI_MAX = 200;
