/*
 * REGION_READs of plain device memory answered in C. The device declares
 * which ranges of its regions read as memory (no side effects, the bytes are
 * the answer: PCI config space, say); TS opens a gate while nothing it holds
 * could be overtaken (no partial message buffered, no reply unsent, no
 * request queued or in progress, no fault rule or recording looking at
 * messages). A socket watcher calls rr_serve before it calls into JS, and
 * JS is still told afterwards, so that its counters and the adaptive poller
 * see every request; what this saves is the parse, the device call and the
 * reply in JS before the reply goes out.
 *
 * A request is taken only when it is the only thing queued: a client with
 * several in flight is better served by the TS path, which answers a whole
 * batch with one send. Replies are byte for byte what the TS path sends.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "region_reads.h"

#define CMD_REGION_READ 9
#define FLAGS_REPLY 1

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p) {
  return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static const struct rr_range *find(const struct region_reads *r, uint32_t region, uint64_t offset, uint32_t count) {
  for (int i = 0; i < r->nranges; i++) {
    const struct rr_range *g = &r->range[i];
    if (g->region == region && offset >= g->offset && offset - g->offset <= g->len &&
        count <= g->len - (offset - g->offset))
      return g;
  }
  return NULL;
}

int rr_serve(struct region_reads *r, int fd) {
  uint8_t req[RR_REQUEST_SIZE + 1]; /* one byte more: is anything queued behind it? */
  struct iovec iov = { req, sizeof req };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
  const struct rr_range *g;
  int32_t limit = r->shared[RR_GATE];
  uint32_t size, flags, region, count, total;
  uint64_t offset;
  ssize_t n;
  if (limit < 0) return RR_NONE;
  do n = recvmsg(fd, &msg, MSG_PEEK | MSG_DONTWAIT); while (n < 0 && errno == EINTR);
  /* Without a control buffer, MSG_CTRUNC says fds came with these bytes. */
  if (n != RR_REQUEST_SIZE || (msg.msg_flags & MSG_CTRUNC)) return RR_NONE;
  size = le32(req + 4);
  flags = le32(req + 8);
  offset = le64(req + 16);
  region = le32(req + 24);
  count = le32(req + 28);
  if ((req[2] | req[3] << 8) != CMD_REGION_READ || size != RR_REQUEST_SIZE || flags != 0) return RR_NONE;
  if (count > (uint32_t)limit || count > r->out_len - RR_REQUEST_SIZE) return RR_NONE;
  if (!(g = find(r, region, offset, count))) return RR_NONE;
  /* The peek saw these bytes queued and this thread is the socket's only
   * reader, so this takes exactly them. */
  do n = recv(fd, req, RR_REQUEST_SIZE, MSG_DONTWAIT); while (n < 0 && errno == EINTR);
  if (n != RR_REQUEST_SIZE) return RR_NONE;
  total = RR_REQUEST_SIZE + count;
  memcpy(r->out, req, 4); /* msg_id, command */
  put_le32(r->out + 4, total);
  put_le32(r->out + 8, FLAGS_REPLY);
  put_le32(r->out + 12, 0);
  memcpy(r->out + 16, req + 16, 16); /* offset, region, count: as asked */
  memcpy(r->out + RR_REQUEST_SIZE, g->bytes + (offset - g->offset), count);
  do n = send(fd, r->out, total, MSG_DONTWAIT | MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
  if (n == (ssize_t)total) return RR_SENT;
  /* A full socket buffer or an error: TS sends the rest (and meets the error). */
  r->shared[RR_SENT_BYTES] = n > 0 ? (int32_t)n : 0;
  return RR_UNSENT;
}
