// virtio-blk numbers (virtio 1.2, 5.2).

/** Feature bits. */
export const BlkFeature = {
  SIZE_MAX: 1,
  SEG_MAX: 2,
  GEOMETRY: 4,
  RO: 5,
  BLK_SIZE: 6,
  FLUSH: 9,
  TOPOLOGY: 10,
  CONFIG_WCE: 11,
  MQ: 12,
  DISCARD: 13,
  WRITE_ZEROES: 14,
  LIFETIME: 15,
  SECURE_ERASE: 16,
} as const;

/** Request types (virtio_blk_outhdr.type). */
export const BlkType = {
  IN: 0,
  OUT: 1,
  FLUSH: 4,
  GET_ID: 8,
  GET_LIFETIME: 10,
  DISCARD: 11,
  WRITE_ZEROES: 13,
  SECURE_ERASE: 14,
} as const;

/** Status byte values. */
export const BlkStatus = {
  OK: 0,
  IOERR: 1,
  UNSUPP: 2,
} as const;

/** struct virtio_blk_config offsets. */
export const BlkConfig = {
  CAPACITY: 0, // le64, 512-byte sectors
  SIZE_MAX: 8, // le32
  SEG_MAX: 12, // le32
  GEOMETRY: 16, // le16 cylinders, u8 heads, u8 sectors
  BLK_SIZE: 20, // le32
  PHYSICAL_BLOCK_EXP: 24, // u8
  ALIGNMENT_OFFSET: 25, // u8
  MIN_IO_SIZE: 26, // le16
  OPT_IO_SIZE: 28, // le32
  WRITEBACK: 32, // u8
  NUM_QUEUES: 34, // le16
  MAX_DISCARD_SECTORS: 36, // le32
  MAX_DISCARD_SEG: 40, // le32
  DISCARD_SECTOR_ALIGNMENT: 44, // le32
  MAX_WRITE_ZEROES_SECTORS: 48, // le32
  MAX_WRITE_ZEROES_SEG: 52, // le32
  WRITE_ZEROES_MAY_UNMAP: 56, // u8
  SIZE: 60,
} as const;

/** virtio_blk_discard_write_zeroes.flags */
export const DWZ_FLAG_UNMAP = 1;
export const DWZ_SEGMENT_SIZE = 16;

export const SECTOR = 512;
/** struct virtio_blk_outhdr: le32 type, le32 reserved, le64 sector. */
export const OUTHDR_SIZE = 16;
export const ID_BYTES = 20;
