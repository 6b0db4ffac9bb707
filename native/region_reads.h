/*
 * REGION_READs of plain device memory answered below JS (see region_reads.c).
 * No Node-API here; vfio_native.c wraps it and calls rr_serve from a socket
 * watcher before it calls into JS.
 */
#ifndef REGION_READS_H
#define REGION_READS_H

#include <stddef.h>
#include <stdint.h>

#define RR_MAX_RANGES 16
#define RR_REQUEST_SIZE 32 /* header 16 + offset 8, region 4, count 4 */

/* The shared Int32Array: TS writes RR_GATE, C writes RR_SENT_BYTES. */
enum {
  RR_GATE, /* largest count answered here; < 0: closed (TS must see every message) */
  RR_SENT_BYTES, /* after RR_UNSENT: bytes of the reply in `out` that went out */
  RR_FIELDS
};

/* A range of a region whose reads have no side effects and return `bytes`. */
struct rr_range {
  uint32_t region;
  uint64_t offset;
  uint64_t len;
  const uint8_t *bytes;
};

struct region_reads {
  int32_t *shared;   /* RR_FIELDS elements */
  uint8_t *out;      /* the reply is built here (so TS can send a tail) */
  size_t out_len;
  int nranges;
  struct rr_range range[RR_MAX_RANGES];
};

enum {
  RR_NONE,   /* nothing taken off the socket: the TS path reads as usual */
  RR_SENT,   /* one request answered, the whole reply sent */
  RR_UNSENT  /* one request answered; out[shared[RR_SENT_BYTES], reply size) is still to send */
};

/*
 * Answers the request on `fd` if it is the only bytes queued, carries no
 * fds, and is a well-formed REGION_READ (flags 0) wholly inside one range,
 * of at most shared[RR_GATE] bytes. Anything else is left on the socket.
 */
int rr_serve(struct region_reads *r, int fd);

#endif
