/*
 * virtio-blk requests served straight off a split virtqueue in mapped guest
 * memory: the one loop of the data path worth writing in C (see
 * virtio_blk_ring.c). No Node-API here; vfio_native.c wraps it.
 */
#ifndef VIRTIO_BLK_RING_H
#define VIRTIO_BLK_RING_H

#include <stdint.h>

/* The state array shared with TS (native/index.ts, BlkRing): one double each. */
enum {
  VBR_WINDOW_IOVA,  /* in: IOVA of the window's first byte */
  VBR_DESC,         /* in: IOVA of the descriptor table */
  VBR_AVAIL,        /* in: IOVA of the available ring */
  VBR_USED,         /* in: IOVA of the used ring */
  VBR_SIZE,         /* in: queue size (1..1024) */
  VBR_INDIRECT,     /* in: 1 if VIRTIO_F_INDIRECT_DESC was negotiated */
  VBR_FD,           /* in: the image's fd */
  VBR_CAPACITY,     /* in: sectors */
  VBR_MAX_WRITE,    /* in: largest OUT request (bytes) written here; 0: none */
  VBR_LAST_AVAIL,   /* in/out: next available entry to take */
  VBR_USED_IDX,     /* in/out: used->idx */
  VBR_READS,        /* out: IN requests served */
  VBR_WRITES,       /* out: OUT requests served */
  VBR_BYTES_READ,   /* out */
  VBR_BYTES_WRITTEN,/* out */
  VBR_WRITE_NS,     /* out: the longest write, ns */
  VBR_FIELDS
};

struct vbr {
  uint8_t *mem;          /* the window: guest memory mapped here */
  uint64_t mem_len;
  uint64_t mem_iova;
  uint64_t desc, avail, used;
  uint32_t size;
  int indirect;
  int fd;
  uint64_t capacity;
  uint64_t max_write;
  uint16_t last_avail, used_idx;
  uint64_t reads, writes, bytes_read, bytes_written;
  int64_t write_ns;
};

/*
 * Serves available chains in order while each is a plain IN or OUT request
 * wholly inside the window, and stops before the first that is anything
 * else (for the caller's general path, which also reports errors). Returns
 * the chains served; their used elements and used->idx are stored.
 */
int vbr_serve(struct vbr *r);

#endif
