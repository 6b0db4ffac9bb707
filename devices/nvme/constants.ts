// Wire numbers of an NVMe controller over PCIe, as the NVM Express Base
// Specification 2.0 and the NVM Command Set Specification 1.0 define them
// (section numbers in the comments). Everything here is a plain number so
// the hot path compares small integers.

/** Controller registers in BAR0 (Base 3.1.3). */
export const Reg = {
  CAP: 0x00, // 8 bytes: capabilities
  VS: 0x08, // version
  INTMS: 0x0c, // interrupt mask set (INTx/MSI only)
  INTMC: 0x10, // interrupt mask clear
  CC: 0x14, // controller configuration
  CSTS: 0x1c, // controller status
  NSSR: 0x20, // NVM subsystem reset (not offered)
  AQA: 0x24, // admin queue attributes
  ASQ: 0x28, // 8 bytes: admin SQ base
  ACQ: 0x30, // 8 bytes: admin CQ base
  /** Bytes of the register block we serve (the rest below the doorbells reads as zero). */
  SIZE: 0x40,
  /** First doorbell; SQ y tail at DBS + 2y*4, CQ y head at DBS + (2y+1)*4 (CAP.DSTRD = 0). */
  DBS: 0x1000,
} as const;

/** CC fields (Base 3.1.3.5). */
export const CC = {
  EN: 1 << 0,
  CSS_SHIFT: 4,
  CSS_MASK: 0x7,
  MPS_SHIFT: 7,
  MPS_MASK: 0xf,
  AMS_SHIFT: 11,
  AMS_MASK: 0x7,
  SHN_SHIFT: 14,
  SHN_MASK: 0x3,
  IOSQES_SHIFT: 16,
  IOCQES_SHIFT: 20,
  ES_MASK: 0xf,
  /** CC.CSS 000b: the NVM command set. */
  CSS_NVM: 0,
  SHN_NONE: 0,
  SHN_NORMAL: 1,
  SHN_ABRUPT: 2,
} as const;

/** CSTS fields (Base 3.1.3.6). */
export const CSTS = {
  RDY: 1 << 0,
  CFS: 1 << 1,
  SHST_SHIFT: 2,
  SHST_NORMAL: 0,
  SHST_OCCURRING: 1,
  SHST_COMPLETE: 2,
} as const;

/** Submission and completion queue entry sizes: 64 and 16 bytes. */
export const SQE_SIZE = 64;
export const CQE_SIZE = 16;

/** Byte offsets in a submission queue entry (Base 4.2). */
export const Sqe = {
  OPCODE: 0,
  FLAGS: 1, // FUSE bits 1:0, PSDT bits 7:6
  CID: 2,
  NSID: 4,
  DPTR: 24, // PRP1 or the first SGL descriptor (16 bytes)
  PRP2: 32,
  CDW10: 40,
  CDW11: 44,
  CDW12: 48,
  CDW13: 52,
  CDW14: 56,
  CDW15: 60,
} as const;

/** Admin command opcodes (Base 5). */
export const AdminOp = {
  DELETE_SQ: 0x00,
  CREATE_SQ: 0x01,
  GET_LOG_PAGE: 0x02,
  DELETE_CQ: 0x04,
  CREATE_CQ: 0x05,
  IDENTIFY: 0x06,
  ABORT: 0x08,
  SET_FEATURES: 0x09,
  GET_FEATURES: 0x0a,
  ASYNC_EVENT: 0x0c,
  KEEP_ALIVE: 0x18,
  DOORBELL_BUFFER_CONFIG: 0x7c,
} as const;

/** NVM command set I/O opcodes (NVM 3). */
export const IoOp = {
  FLUSH: 0x00,
  WRITE: 0x01,
  READ: 0x02,
  COMPARE: 0x05,
  WRITE_ZEROES: 0x08,
  DSM: 0x09,
} as const;

/** Status code types (Base 4.6.1.2). */
export const Sct = { GENERIC: 0, COMMAND: 1, MEDIA: 2 } as const;

/**
 * A completion status as the 15-bit Status field of a CQE (without the phase
 * bit): SC bits 7:0, SCT bits 10:8, DNR bit 14.
 */
export type Status = number;

const DNR = 1 << 14;
const st = (sct: number, sc: number, dnr = true): Status => (sct << 8) | sc | (dnr ? DNR : 0);

/** The statuses this controller completes commands with. */
export const S = {
  SUCCESS: 0,
  INVALID_OPCODE: st(Sct.GENERIC, 0x01),
  INVALID_FIELD: st(Sct.GENERIC, 0x02),
  DATA_TRANSFER_ERROR: st(Sct.GENERIC, 0x04, false),
  INTERNAL_ERROR: st(Sct.GENERIC, 0x06, false),
  ABORTED_BY_REQUEST: st(Sct.GENERIC, 0x07),
  INVALID_NAMESPACE: st(Sct.GENERIC, 0x0b),
  COMMAND_SEQUENCE_ERROR: st(Sct.GENERIC, 0x0c),
  INVALID_SGL_SEGMENT: st(Sct.GENERIC, 0x0d),
  INVALID_SGL_COUNT: st(Sct.GENERIC, 0x0e),
  DATA_SGL_LENGTH_INVALID: st(Sct.GENERIC, 0x0f),
  SGL_TYPE_INVALID: st(Sct.GENERIC, 0x11),
  INVALID_PRP_OFFSET: st(Sct.GENERIC, 0x13),
  NAMESPACE_WRITE_PROTECTED: st(Sct.GENERIC, 0x20),
  LBA_OUT_OF_RANGE: st(Sct.GENERIC, 0x80),
  CQ_INVALID: st(Sct.COMMAND, 0x00),
  INVALID_QID: st(Sct.COMMAND, 0x01),
  INVALID_QUEUE_SIZE: st(Sct.COMMAND, 0x02),
  AER_LIMIT_EXCEEDED: st(Sct.COMMAND, 0x05),
  INVALID_VECTOR: st(Sct.COMMAND, 0x08),
  INVALID_LOG_PAGE: st(Sct.COMMAND, 0x09),
  INVALID_QUEUE_DELETION: st(Sct.COMMAND, 0x0c),
  FEATURE_NOT_SAVEABLE: st(Sct.COMMAND, 0x0d),
  COMPARE_FAILURE: st(Sct.MEDIA, 0x85),
} as const;

/** Identify CNS values (Base 5.17.1). */
export const Cns = {
  NAMESPACE: 0x00,
  CONTROLLER: 0x01,
  ACTIVE_NS_LIST: 0x02,
  NS_DESCRIPTORS: 0x03,
  CSI_NAMESPACE: 0x05,
  CSI_CONTROLLER: 0x06,
  CSI_ACTIVE_NS_LIST: 0x07,
} as const;

/** Command set identifier of the NVM command set. */
export const CSI_NVM = 0;
/** Identify and log pages move 4 KiB (log pages: at most their own size). */
export const IDENTIFY_SIZE = 4096;
/** NSID meaning "every namespace". */
export const NSID_ALL = 0xffffffff;

/** Feature identifiers (Base 5.27.1). */
export const Fid = {
  ARBITRATION: 0x01,
  POWER_MANAGEMENT: 0x02,
  TEMPERATURE_THRESHOLD: 0x04,
  ERROR_RECOVERY: 0x05,
  VOLATILE_WRITE_CACHE: 0x06,
  NUMBER_OF_QUEUES: 0x07,
  INTERRUPT_COALESCING: 0x08,
  INTERRUPT_VECTOR_CONFIG: 0x09,
  WRITE_ATOMICITY: 0x0a,
  ASYNC_EVENT_CONFIG: 0x0b,
  TIMESTAMP: 0x0e,
} as const;

/** Log page identifiers (Base 5.16.1). */
export const LogId = {
  ERROR: 0x01,
  SMART: 0x02,
  FIRMWARE_SLOT: 0x03,
  COMMANDS_EFFECTS: 0x05,
} as const;

/** Asynchronous event types and information (Base 5.2). */
export const AsyncEvent = {
  TYPE_ERROR: 0x0,
  INFO_INVALID_DB_REGISTER: 0x00,
  INFO_INVALID_DB_VALUE: 0x01,
} as const;

/** SGL descriptor types, in bits 7:4 of byte 15 (Base 4.1.2). */
export const SglType = {
  DATA_BLOCK: 0x0,
  SEGMENT: 0x2,
  LAST_SEGMENT: 0x3,
} as const;
export const SGL_DESC_SIZE = 16;

/** Dataset Management: CDW11 attribute Deallocate (NVM 3.2.3). */
export const DSM_DEALLOCATE = 1 << 2;
export const DSM_RANGE_SIZE = 16;
/** Write Zeroes: CDW12 Deallocate; Read/Write: Force Unit Access. */
export const CDW12_DEAC = 1 << 25;
export const CDW12_FUA = 1 << 30;

/** PCI class code of an NVM Express I/O controller: mass storage, NVM, NVMe. */
export const NVME_CLASS_CODE = 0x010802;
/** Our default PCI ids (configurable; the Linux driver binds by class). */
export const DEFAULT_VENDOR_ID = 0x1234;
export const DEFAULT_DEVICE_ID = 0x4e56;
/** NVMe 1.4.0, the version whose features we offer. */
export const NVME_VERSION = 0x00010400;
/** Maximum data transfer size: 2^MDTS pages of the minimum page size (4 KiB): 1 MiB. */
export const MDTS = 8;
export const MIN_PAGE_SHIFT = 12;
/** CAP.MPSMAX: pages up to 64 KiB. */
export const MPS_MAX = 4;
/** Outstanding Asynchronous Event Requests we take (Identify AERL is this minus one). */
export const AER_LIMIT = 4;
