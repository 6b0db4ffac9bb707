// PCI configuration-space register offsets and bits (Linux
// include/uapi/linux/pci_regs.h names, shortened). Only what the PCI layer
// emulates is listed.

export const PCI_CFG_SPACE_SIZE = 0x100;
export const PCI_CFG_SPACE_EXP_SIZE = 0x1000;

/** Type-0 header. */
export const Hdr = {
  VENDOR_ID: 0x00, // u16, RO
  DEVICE_ID: 0x02, // u16, RO
  COMMAND: 0x04, // u16, RW (see Cmd)
  STATUS: 0x06, // u16, RO + RW1C (see Sts)
  REVISION_ID: 0x08, // u8, RO
  CLASS_PROG: 0x09, // u8, RO (programming interface)
  CLASS_DEVICE: 0x0a, // u16, RO (sub-class, base class)
  CACHE_LINE_SIZE: 0x0c, // u8, RW
  LATENCY_TIMER: 0x0d, // u8, RW on conventional PCI, RO 0 on PCIe
  HEADER_TYPE: 0x0e, // u8, RO (0 = type-0, single function)
  BIST: 0x0f, // u8, RO 0 (no BIST)
  BAR0: 0x10, // 6 × u32
  CARDBUS_CIS: 0x28,
  SUBSYSTEM_VENDOR_ID: 0x2c, // u16, RO
  SUBSYSTEM_ID: 0x2e, // u16, RO
  ROM_ADDRESS: 0x30, // u32, expansion ROM BAR
  CAPABILITY_LIST: 0x34, // u8, RO: first capability
  INTERRUPT_LINE: 0x3c, // u8, RW scratch for the OS
  INTERRUPT_PIN: 0x3d, // u8, RO: 0 none, 1..4 = INTA..INTD
  MIN_GNT: 0x3e,
  MAX_LAT: 0x3f,
  SIZEOF: 0x40,
} as const;

/** Command register bits. */
export const Cmd = {
  IO: 0x0001,
  MEMORY: 0x0002,
  MASTER: 0x0004,
  PARITY: 0x0040,
  SERR: 0x0100,
  INTX_DISABLE: 0x0400,
} as const;
/** The command bits a guest may change. */
export const CMD_WRITABLE =
  Cmd.IO | Cmd.MEMORY | Cmd.MASTER | Cmd.PARITY | Cmd.SERR | Cmd.INTX_DISABLE;

/** Status register bits. */
export const Sts = {
  INTERRUPT: 0x0008, // RO: INTx asserted by the function
  CAP_LIST: 0x0010, // RO: capability list present
  PARITY: 0x0100, // RW1C: master data parity error
  SIG_TARGET_ABORT: 0x0800, // RW1C
  REC_TARGET_ABORT: 0x1000, // RW1C
  REC_MASTER_ABORT: 0x2000, // RW1C
  SIG_SYSTEM_ERROR: 0x4000, // RW1C
  DETECTED_PARITY: 0x8000, // RW1C
} as const;
export const STS_RW1C = 0xf900;

/** BAR low bits. */
export const Bar = {
  SPACE_IO: 0x1,
  MEM_TYPE_64: 0x4,
  MEM_PREFETCH: 0x8,
  IO_FLAG_BITS: 0x3,
  MEM_FLAG_BITS: 0xf,
} as const;

export const ROM_ADDRESS_ENABLE = 0x1;
export const ROM_ADDRESS_MASK = 0xfffff800;

/** Capability IDs. */
export const CapId = {
  PM: 0x01,
  MSI: 0x05,
  VENDOR: 0x09,
  EXP: 0x10,
  MSIX: 0x11,
} as const;

/** Power-management capability (8 bytes). */
export const Pm = {
  PMC: 2, // u16 RO: version, supported states
  CTRL: 4, // u16 PMCSR
  SIZEOF: 8,
  CTRL_STATE_MASK: 0x0003, // RW: D0..D3hot
  CTRL_NO_SOFT_RESET: 0x0008, // RO: D3hot→D0 keeps state
  CTRL_PME_ENABLE: 0x0100, // RW
  CTRL_PME_STATUS: 0x8000, // RW1C
  PMC_VERSION_1_2: 0x0003,
} as const;

/** MSI capability. Layout depends on the 64-bit and per-vector-mask flags. */
export const Msi = {
  FLAGS: 2, // u16
  FLAGS_ENABLE: 0x0001,
  FLAGS_QMASK: 0x000e, // RO: log2(vectors capable)
  FLAGS_QSIZE: 0x0070, // RW: log2(vectors enabled)
  FLAGS_64BIT: 0x0080,
  FLAGS_MASKBIT: 0x0100,
  ADDRESS_LO: 4,
  ADDRESS_HI: 8, // 64-bit only
  DATA_32: 8,
  MASK_32: 12,
  PENDING_32: 16,
  DATA_64: 12,
  MASK_64: 16,
  PENDING_64: 20,
} as const;

/** MSI-X capability (12 bytes) and table entries (16 bytes). */
export const Msix = {
  FLAGS: 2, // u16
  FLAGS_QSIZE: 0x07ff, // RO: table size - 1
  FLAGS_MASKALL: 0x4000, // RW: function mask
  FLAGS_ENABLE: 0x8000, // RW
  TABLE: 4, // u32: BIR in bits 0-2, offset in the rest
  PBA: 8, // u32: same encoding
  BIR_MASK: 0x7,
  SIZEOF: 12,
  ENTRY_SIZE: 16,
  ENTRY_LOWER_ADDR: 0,
  ENTRY_UPPER_ADDR: 4,
  ENTRY_DATA: 8,
  ENTRY_VECTOR_CTRL: 12,
  ENTRY_CTRL_MASKBIT: 0x1,
} as const;

/** PCI Express capability (version 2, endpoint: 0x3c bytes). */
export const Exp = {
  FLAGS: 2, // u16 RO: version, device/port type
  FLAGS_VERSION_2: 0x0002,
  TYPE_ENDPOINT: 0x0 << 4,
  TYPE_RC_END: 0x9 << 4,
  DEVCAP: 4, // u32 RO
  DEVCAP_PAYLOAD_MASK: 0x7,
  DEVCAP_RBER: 0x8000, // role-based error reporting
  DEVCAP_FLR: 0x10000000,
  DEVCTL: 8, // u16
  DEVCTL_WRITABLE: 0x7fff, // error enables, payload, read request size...
  DEVCTL_BCR_FLR: 0x8000, // write 1: function-level reset; reads 0
  DEVCTL_DEFAULT: 0x2810, // relaxed ordering, no-snoop, 512 B read request
  DEVSTA: 0xa, // u16
  DEVSTA_RW1C: 0x000f, // correctable/non-fatal/fatal/unsupported request
  LNKCAP: 0xc, // u32 RO: max speed (bits 0-3), width (bits 4-9)
  LNKCTL: 0x10, // u16
  LNKCTL_WRITABLE: 0x0fc3, // ASPM, CCC, ES, CLKREQ, HAWD, LBMIE, LABIE
  LNKSTA: 0x12, // u16 RO: current speed, width
  DEVCAP2: 0x24,
  DEVCTL2: 0x28,
  DEVCTL2_WRITABLE: 0x001f, // completion timeout value/disable
  LNKCAP2: 0x2c,
  LNKCTL2: 0x30,
  LNKCTL2_WRITABLE: 0x000f, // target link speed
  SIZEOF_V2: 0x3c,
} as const;

/** Vendor-specific capability: ID, next, length, then data. */
export const Vndr = {
  LEN: 2,
  DATA: 3,
} as const;
