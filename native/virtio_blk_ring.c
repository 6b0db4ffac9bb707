/*
 * virtio-blk's hot loop in C. A TCG guest's 1 MiB request has up to 254 data
 * descriptors; walking, translating and gathering them in JS cost 50-65 µs
 * per request (measured in process), here a few. Only the plainest request
 * is served: a header descriptor of 16 readable bytes, data descriptors all
 * of one direction, a 1-byte writable status descriptor, direct or through
 * one indirect table, every byte inside one mapped window, a page-cache hit
 * for reads (RWF_NOWAIT) and a write the caller allows to block. Anything
 * else stops the loop before that chain, untouched: the TS virtqueue walks
 * it and the device's TS path serves it or reports the error. A chain whose
 * I/O failed or came up short is not completed either, so the TS path does
 * it again from the start (reads and writes of the same bytes are
 * idempotent) and reports what it finds.
 *
 * The caller runs this on its own thread in one synchronous call, with the
 * window taken in that same call (an unmap cannot come in between), and
 * only while nothing else publishes to this used ring.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "virtio_blk_ring.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#define DESC_F_NEXT 1
#define DESC_F_WRITE 2
#define DESC_F_INDIRECT 4
#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_S_OK 0
#define SECTOR 512
#define MAX_QUEUE 1024
/* A chain is at most one table of MAX_QUEUE descriptors. */
#define MAX_SEGS MAX_QUEUE

static uint16_t ld16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t ld64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void st32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* [iova, iova+len) inside the window, or NULL. */
static uint8_t *at(const struct vbr *r, uint64_t iova, uint64_t len) {
  uint64_t off;
  if (iova < r->mem_iova) return NULL;
  off = iova - r->mem_iova;
  if (off > r->mem_len || len > r->mem_len - off) return NULL;
  return r->mem + off;
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* One request, when it is plain enough: 1 if served, 0 to stop before it. */
static int serve_one(struct vbr *r, uint8_t *table, uint16_t head, struct iovec *iov) {
  const uint8_t *d = table + 16u * head;
  uint8_t *hdr = NULL, *status = NULL;
  uint32_t tsize = r->size, i = head, n = 0, steps = 0, type;
  uint64_t sector, total = 0;
  int want_write = -1; /* data direction: 1 device-writable (IN), 0 readable (OUT) */
  ssize_t done;

  if (ld16(d + 12) & DESC_F_INDIRECT) {
    uint32_t len = ld32(d + 8);
    if (!r->indirect || (ld16(d + 12) & DESC_F_NEXT) || len == 0 || len % 16 || len / 16 > MAX_QUEUE) return 0;
    table = at(r, ld64(d), len);
    if (!table) return 0;
    tsize = len / 16;
    i = 0;
  }
  for (;;) {
    const uint8_t *e;
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint8_t *p;
    if (i >= tsize || ++steps > tsize) return 0; /* out of range or a loop */
    e = table + 16u * i;
    addr = ld64(e);
    len = ld32(e + 8);
    flags = ld16(e + 12);
    if (flags & DESC_F_INDIRECT) return 0;
    p = at(r, addr, len);
    if (!p || len == 0) return 0;
    if (!hdr) {
      if ((flags & DESC_F_WRITE) || len != 16) return 0;
      hdr = p;
    } else if (status) {
      return 0; /* anything after the status byte */
    } else if ((flags & DESC_F_WRITE) && len == 1 && !(flags & DESC_F_NEXT)) {
      status = p;
    } else {
      int w = (flags & DESC_F_WRITE) != 0;
      if (want_write < 0) want_write = w;
      if (w != want_write || n >= MAX_SEGS) return 0;
      iov[n].iov_base = p;
      iov[n].iov_len = len;
      n++;
      total += len;
    }
    if (!(flags & DESC_F_NEXT)) break;
    i = ld16(e + 14);
  }
  if (!hdr || !status || n == 0) return 0;
  type = ld32(hdr);
  sector = ld64(hdr + 8);
  if (total % SECTOR || sector > r->capacity || total / SECTOR > r->capacity - sector) return 0;
  if (type == BLK_T_IN && want_write == 1) {
    done = preadv2(r->fd, iov, (int)n, (off_t)(sector * SECTOR), RWF_NOWAIT);
    if (done < 0 || (uint64_t)done != total) return 0;
    r->reads++;
    r->bytes_read += total;
  } else if (type == BLK_T_OUT && want_write == 0 && total <= r->max_write) {
    int64_t t0 = now_ns(), t;
    do done = pwritev(r->fd, iov, (int)n, (off_t)(sector * SECTOR));
    while (done < 0 && errno == EINTR);
    t = now_ns() - t0;
    if (t > r->write_ns) r->write_ns = t;
    if (done < 0 || (uint64_t)done != total) return 0;
    r->writes++;
    r->bytes_written += total;
  } else {
    return 0;
  }
  *status = BLK_S_OK;
  {
    uint8_t *elem = at(r, r->used + 4 + 8ull * (r->used_idx % r->size), 8);
    st32(elem, head);
    st32(elem + 4, type == BLK_T_IN ? (uint32_t)total + 1 : 1);
  }
  return 1;
}

int vbr_serve(struct vbr *r) {
  struct iovec iov[MAX_SEGS];
  uint8_t *desc, *avail, *used;
  uint16_t avail_idx;
  int served = 0;

  if (r->size == 0 || r->size > MAX_QUEUE || r->fd < 0) return 0;
  desc = at(r, r->desc, 16ull * r->size);
  /* With used_event and avail_event: the caller's interrupt decision reads them in place. */
  avail = at(r, r->avail, 6 + 2ull * r->size);
  used = at(r, r->used, 6 + 8ull * r->size);
  /* The ring alignments virtio requires (and the atomics below need). */
  if (!desc || !avail || !used || (uintptr_t)desc % 16 || (uintptr_t)avail % 2 || (uintptr_t)used % 4) return 0;
  avail_idx = __atomic_load_n((uint16_t *)(avail + 2), __ATOMIC_ACQUIRE);
  while (r->last_avail != avail_idx) {
    uint16_t head;
    if ((uint16_t)(avail_idx - r->last_avail) > r->size) break; /* malformed: the TS walk reports it */
    head = ld16(avail + 4 + 2u * (r->last_avail % r->size));
    if (head >= r->size || !serve_one(r, desc, head, iov)) break;
    r->last_avail++;
    r->used_idx++;
    served++;
    if (r->last_avail == avail_idx) avail_idx = __atomic_load_n((uint16_t *)(avail + 2), __ATOMIC_ACQUIRE);
  }
  if (served) {
    /* Elements before the index, and the index before the caller's interrupt decision. */
    __atomic_store_n((uint16_t *)(used + 2), r->used_idx, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
  }
  return served;
}
