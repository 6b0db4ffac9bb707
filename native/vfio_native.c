/*
 * vfio_native: the small Node-API surface the vfio-user server needs and
 * node:net cannot give: UNIX sockets with SCM_RIGHTS fds, libuv readiness on
 * raw fds, mmap'd ArrayBuffers that can be unmapped safely, memfd/eventfd.
 *
 * Every call is synchronous and non-blocking, except connectUnix and the
 * file calls that finish on the libuv thread pool (fallocate, preadvFull,
 * pwritevFull: they return promises), a watcher's poll window (watchPoll,
 * at most 1 ms after a callback), and the writes that pwritevFull(block) and
 * virtioBlkServe make on the calling thread (a page-cache copy the caller's
 * blocking-writes rules allow). virtio_blk_ring.c is virtio-blk's ring loop;
 * region_reads.c answers plain REGION_READs for a watcher (watchReads). Socket I/O calls return -errno; setup calls throw an Error with .code/.errno/.syscall.
 * Framing, fd matching, queues and mapping reference counts live in TS.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <node_api.h>
#include <uv.h>

#include "region_reads.h"
#include "virtio_blk_ring.h"

#ifndef F_GET_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#define F_SEAL_WRITE 0x0008
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

#define MAX_FDS 253                      /* SCM_MAX_FD: kernel cap per message */
#define SAFE_MAX 9007199254740991.0      /* Number.MAX_SAFE_INTEGER */
#define CONNECT_TIMEOUT_S 10             /* a full backlog must not hang us */

/* Retry a syscall interrupted by a signal (GNU statement expression). */
#define RETRY(expr) ({ long r_; do r_ = (long)(expr); while (r_ == -1 && errno == EINTR); r_; })

/* ---------------------------------------------------------------- errors */

static const char *errname(int e) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
  const char *s = strerrorname_np(e);
  if (s) return s;
#endif
  return "EUNKNOWN";
}

/* Throw Error("<syscall> <CODE>: <text>[ <path>]") with code, errno (positive),
 * syscall and path properties, the way node's own system errors look. */
static napi_value errno_error(napi_env env, const char *syscall, int err, const char *path) {
  char msg[PATH_MAX + 160];
  napi_value code, text, error, v;
  snprintf(msg, sizeof msg, "%s %s: %s%s%s", syscall, errname(err), strerror(err),
           path ? " " : "", path ? path : "");
  if (napi_create_string_utf8(env, errname(err), NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text) != napi_ok ||
      napi_create_error(env, code, text, &error) != napi_ok)
    return NULL;
  if (napi_create_int32(env, err, &v) == napi_ok) napi_set_named_property(env, error, "errno", v);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v) == napi_ok)
    napi_set_named_property(env, error, "syscall", v);
  if (path && napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &v) == napi_ok)
    napi_set_named_property(env, error, "path", v);
  return error;
}

static napi_value throw_errno(napi_env env, const char *syscall, int err, const char *path) {
  napi_value error = errno_error(env, syscall, err, path);
  if (error) napi_throw(env, error);
  return NULL;
}

/* A napi_* call failed: make sure something is thrown. */
static napi_value throw_napi(napi_env env) {
  bool pending = false;
  const napi_extended_error_info *info = NULL;
  napi_is_exception_pending(env, &pending);
  if (!pending) {
    napi_get_last_error_info(env, &info);
    napi_throw_error(env, NULL, info && info->error_message ? info->error_message : "Node-API call failed");
  }
  return NULL;
}

#define NAPI(call) do { if ((call) != napi_ok) return throw_napi(env); } while (0)

static napi_value type_error(napi_env env, const char *fn, const char *what) {
  char msg[200];
  snprintf(msg, sizeof msg, "%s: %s", fn, what);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

static napi_value range_error(napi_env env, const char *fn, const char *what) {
  char msg[200];
  snprintf(msg, sizeof msg, "%s: %s", fn, what);
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
  return NULL;
}

/* ------------------------------------------------------ argument checking
 * Each arg_* returns 0, or -1 with an exception thrown. */

static int arg_int(napi_env env, const char *fn, napi_value v, const char *name,
                   double min, double max, int64_t *out) {
  char what[160];
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    snprintf(what, sizeof what, "%s must be a number", name);
    return type_error(env, fn, what), -1;
  }
  if (napi_get_value_double(env, v, &d) != napi_ok) return throw_napi(env), -1;
  if (!(d >= min && d <= max) || d != (double)(int64_t)d) {
    snprintf(what, sizeof what, "%s must be an integer in [%.0f, %.0f], got %g", name, min, max, d);
    return range_error(env, fn, what), -1;
  }
  *out = (int64_t)d;
  return 0;
}

static int arg_fd(napi_env env, const char *fn, napi_value v, int *fd) {
  int64_t x;
  if (arg_int(env, fn, v, "fd", 0, INT_MAX, &x)) return -1;
  *fd = (int)x;
  return 0;
}

/* A UTF-8 string without NUL bytes that fits in cap (including the NUL). */
static int arg_string(napi_env env, const char *fn, napi_value v, const char *name, char *buf, size_t cap) {
  char what[160];
  napi_valuetype t;
  size_t len;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
    snprintf(what, sizeof what, "%s must be a string", name);
    return type_error(env, fn, what), -1;
  }
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return throw_napi(env), -1;
  if (len + 1 > cap) {
    snprintf(what, sizeof what, "%s is too long (%zu bytes, max %zu)", name, len, cap - 1);
    return range_error(env, fn, what), -1;
  }
  if (napi_get_value_string_utf8(env, v, buf, cap, &len) != napi_ok) return throw_napi(env), -1;
  if (strlen(buf) != len) {
    snprintf(what, sizeof what, "%s must not contain NUL bytes", name);
    return type_error(env, fn, what), -1;
  }
  return 0;
}

/* buf must be a Uint8Array (Buffer is one); [offset, offset+length) inside it.
 * A detached view has length 0, so it fails the range check instead of crashing. */
static int arg_bytes(napi_env env, const char *fn, napi_value *argv, uint8_t **p, size_t *n) {
  bool is_ta = false;
  napi_typedarray_type type;
  size_t len;
  void *data;
  int64_t off, cnt;
  if (napi_is_typedarray(env, argv[0], &is_ta) != napi_ok || !is_ta)
    return type_error(env, fn, "buf must be a Uint8Array"), -1;
  if (napi_get_typedarray_info(env, argv[0], &type, &len, &data, NULL, NULL) != napi_ok)
    return throw_napi(env), -1;
  if (type != napi_uint8_array) return type_error(env, fn, "buf must be a Uint8Array"), -1;
  if (arg_int(env, fn, argv[1], "offset", 0, (double)len, &off) ||
      arg_int(env, fn, argv[2], "length", 0, (double)len - (double)off, &cnt))
    return -1;
  *p = (uint8_t *)data + off;
  *n = (size_t)cnt;
  return 0;
}

static napi_value num(napi_env env, double x) {
  napi_value v;
  NAPI(napi_create_double(env, x, &v));
  return v;
}

/* Hand a new fd to JS; never leak it if that fails. */
static napi_value return_fd(napi_env env, int fd) {
  napi_value v;
  if (napi_create_int32(env, fd, &v) != napi_ok) {
    close(fd);
    return throw_napi(env);
  }
  return v;
}

static napi_value get_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  size_t argc = n; /* missing arguments read as undefined and fail validation */
  NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  return argv[0];
}
#define ARGS(n) napi_value argv[(n)]; if (!get_args(env, info, (n), argv)) return NULL

/* --------------------------------------------------------------- sockets */

static int unix_addr(const char *path, struct sockaddr_un *sa) {
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa->sun_path) return -1;
  strcpy(sa->sun_path, path);
  return 0;
}

static napi_value js_listen_unix(napi_env env, napi_callback_info info) {
  ARGS(2);
  char path[PATH_MAX];
  int64_t backlog;
  struct sockaddr_un sa;
  int fd, e;
  if (arg_string(env, "listenUnix", argv[0], "path", path, sizeof path) ||
      arg_int(env, "listenUnix", argv[1], "backlog", 0, INT_MAX, &backlog))
    return NULL;
  if (unix_addr(path, &sa)) return throw_errno(env, "bind", ENAMETOOLONG, path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno, NULL);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    e = errno;
    close(fd);
    return throw_errno(env, "bind", e, path);
  }
  if (listen(fd, (int)backlog) < 0) {
    e = errno;
    close(fd);
    return throw_errno(env, "listen", e, path);
  }
  return return_fd(env, fd);
}

static napi_value js_connect_unix(napi_env env, napi_callback_info info) {
  ARGS(1);
  char path[PATH_MAX];
  struct sockaddr_un sa;
  struct timeval tmo = { CONNECT_TIMEOUT_S, 0 }, none = { 0, 0 };
  int fd, e, fl;
  if (arg_string(env, "connectUnix", argv[0], "path", path, sizeof path)) return NULL;
  if (unix_addr(path, &sa)) return throw_errno(env, "connect", ENAMETOOLONG, path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno, NULL);
  /* A UNIX connect blocks only while the listener's backlog is full; if that
   * listener lives in this very thread it would wait forever, so bound it
   * (AF_UNIX connect honours SO_SNDTIMEO and then fails with EAGAIN). */
  if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof tmo) < 0) goto fail_errno;
  /* An interrupted AF_UNIX connect has not queued anything: just retry. */
  if (RETRY(connect(fd, (struct sockaddr *)&sa, sizeof sa)) < 0) {
    e = errno;
    close(fd);
    return throw_errno(env, "connect", e, path);
  }
  if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none) < 0) goto fail_errno;
  if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) goto fail_errno;
  return return_fd(env, fd);
fail_errno:
  e = errno;
  close(fd);
  return throw_errno(env, "connect", e, path);
}

static napi_value js_accept(napi_env env, napi_callback_info info) {
  ARGS(1);
  int lfd, fd;
  if (arg_fd(env, "accept", argv[0], &lfd)) return NULL;
  fd = (int)RETRY(accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (fd < 0) return num(env, -errno);
  return return_fd(env, fd);
}

static napi_value js_socketpair(napi_env env, napi_callback_info info) {
  int sv[2];
  napi_value arr, a, b;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
    return throw_errno(env, "socketpair", errno, NULL);
  if (napi_create_array_with_length(env, 2, &arr) != napi_ok ||
      napi_create_int32(env, sv[0], &a) != napi_ok || napi_create_int32(env, sv[1], &b) != napi_ok ||
      napi_set_element(env, arr, 0, a) != napi_ok || napi_set_element(env, arr, 1, b) != napi_ok) {
    close(sv[0]);
    close(sv[1]);
    return throw_napi(env);
  }
  return arr;
}

/* One non-blocking recvmsg into p[0, n) (n >= 1) with room for `cap` fds
 * (at most MAX_FDS): meta[0] = fds received (in meta[2..]), meta[1] =
 * msg_flags. Returns bytes, 0 at EOF, or -errno. Fds that do not fit in meta
 * are closed and MSG_CTRUNC is set, as the kernel does. */
static long recv_into(int fd, uint8_t *p, size_t n, int32_t *meta, size_t cap) {
  union { struct cmsghdr align; char buf[CMSG_SPACE(MAX_FDS * sizeof(int))]; } ctl;
  size_t room = cap < MAX_FDS ? cap : MAX_FDS;
  int nfds = 0, flags = 0;
  struct iovec iov = { p, n };
  struct msghdr msg;
  struct cmsghdr *c;
  long r;

  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (room > 0) {
    msg.msg_control = ctl.buf;
    msg.msg_controllen = CMSG_SPACE(room * sizeof(int));
  }
  r = RETRY(recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
  if (r < 0) {
    r = -errno;
  } else {
    /* The kernel echoes MSG_CMSG_CLOEXEC back in msg_flags; hide it. */
    flags = msg.msg_flags & ~MSG_CMSG_CLOEXEC;
    for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      size_t i, k;
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (i = 0; i < k; i++) {
        int f;
        memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
        /* CMSG_SPACE rounds up, so the kernel may fit one more fd than meta
         * holds: close it and report truncation, like the kernel would. */
        if ((size_t)nfds < cap) {
          meta[2 + nfds++] = f;
        } else {
          close(f);
          flags |= MSG_CTRUNC;
        }
      }
    }
  }
  meta[0] = nfds;
  meta[1] = flags;
  return r;
}

/* One non-blocking sendmsg of p[0, n) with `nfds` fds riding on the first
 * byte. Returns bytes sent or -errno. */
static long send_from(int fd, const uint8_t *p, size_t n, const int *fds, uint32_t nfds) {
  union { struct cmsghdr align; char buf[CMSG_SPACE(MAX_FDS * sizeof(int))]; } ctl;
  struct iovec iov = { (void *)p, n };
  struct msghdr msg;
  long r;

  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > 0) {
    struct cmsghdr *c;
    memset(ctl.buf, 0, CMSG_SPACE(nfds * sizeof(int)));
    msg.msg_control = ctl.buf;
    msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  }
  r = RETRY(sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT));
  return r < 0 ? -errno : r;
}

/* An Int32Array of at least 2 elements: its data and element count. */
static int arg_meta(napi_env env, const char *fn, napi_value v, int32_t **meta, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  void *data;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta)
    return type_error(env, fn, "meta must be an Int32Array"), -1;
  if (napi_get_typedarray_info(env, v, &type, len, &data, NULL, NULL) != napi_ok) return throw_napi(env), -1;
  if (type != napi_int32_array) return type_error(env, fn, "meta must be an Int32Array"), -1;
  if (*len < 2) return range_error(env, fn, "meta must have at least 2 elements"), -1;
  *meta = data;
  return 0;
}

/* recvmsg(fd, buf, offset, length, meta): meta = [nfds, msg_flags, ...fds]. */
static napi_value js_recvmsg(napi_env env, napi_callback_info info) {
  ARGS(5);
  int fd;
  uint8_t *p;
  size_t n, metalen;
  int32_t *meta;

  if (arg_fd(env, "recvmsg", argv[0], &fd) || arg_bytes(env, "recvmsg", argv + 1, &p, &n)) return NULL;
  if (n == 0) return range_error(env, "recvmsg", "length must be at least 1 (0 means EOF)");
  if (arg_meta(env, "recvmsg", argv[4], &meta, &metalen)) return NULL;
  return num(env, (double)recv_into(fd, p, n, meta, metalen - 2));
}

/* sendmsg(fd, buf, offset, length, fds?): fds ride with the first byte. */
static napi_value js_sendmsg(napi_env env, napi_callback_info info) {
  ARGS(5);
  int fd, fds[MAX_FDS];
  uint32_t nfds = 0, i;
  uint8_t *p;
  size_t n;
  napi_valuetype t;

  if (arg_fd(env, "sendmsg", argv[0], &fd) || arg_bytes(env, "sendmsg", argv + 1, &p, &n)) return NULL;
  NAPI(napi_typeof(env, argv[4], &t));
  if (t != napi_undefined && t != napi_null) {
    napi_value lenv, el;
    int64_t len;
    if (t != napi_object) return type_error(env, "sendmsg", "fds must be an array of fds");
    NAPI(napi_get_named_property(env, argv[4], "length", &lenv));
    if (arg_int(env, "sendmsg", lenv, "fds.length", 0, MAX_FDS, &len)) return NULL;
    nfds = (uint32_t)len;
    for (i = 0; i < nfds; i++) {
      NAPI(napi_get_element(env, argv[4], i, &el));
      if (arg_fd(env, "sendmsg", el, &fds[i])) return NULL;
    }
    /* A zero-length stream send transmits nothing, fds included. */
    if (nfds > 0 && n == 0) return range_error(env, "sendmsg", "fds need at least one byte to ride with");
  }
  return num(env, (double)send_from(fd, p, n, fds, nfds));
}

/* --------------------------------------------------------------- channels
 * The per-message calls of one connection with its buffers registered once.
 * recvmsg/sendmsg above check and convert a typed array on every call, which
 * costs about as much as the syscall; a channel's recv(offset, length) and
 * send(offset, length) take two int32s. channel(fd, meta) returns an object
 * of functions whose Node-API data pointer is the channel: no lookup per
 * call. Buffers are held by reference until replaced or close(); their
 * memory does not move (off-heap ArrayBuffer backing stores). */

#define CHANNEL_FNS 4

struct channel {
  int fd;
  int open;
  int refs;                   /* function objects not yet finalized */
  napi_ref rref, wref, mref;  /* receive buffer, send buffer, meta */
  uint8_t *rbuf, *wbuf;
  size_t rlen, wlen;
  int32_t *meta;
  size_t metacap;             /* fds meta can hold */
};

static void channel_release(napi_env env, struct channel *ch) {
  if (ch->rref) napi_delete_reference(env, ch->rref);
  if (ch->wref) napi_delete_reference(env, ch->wref);
  if (ch->mref) napi_delete_reference(env, ch->mref);
  ch->rref = ch->wref = ch->mref = NULL;
  ch->rbuf = ch->wbuf = NULL;
  ch->rlen = ch->wlen = 0;
  ch->meta = NULL;
  ch->open = 0;
}

static void channel_fn_gone(napi_env env, void *data, void *hint) {
  struct channel *ch = data;
  (void)hint;
  if (--ch->refs > 0) return;
  channel_release(env, ch);
  free(ch);
}

/* The channel behind this call and its two int32 arguments [0, limit]. */
static struct channel *channel_args(napi_env env, napi_callback_info info, const char *fn, int32_t *a, int32_t *b) {
  napi_value argv[2];
  size_t argc = 2;
  void *data;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, &data) != napi_ok) return throw_napi(env), NULL;
  if (argc < 2 || napi_get_value_int32(env, argv[0], a) != napi_ok ||
      napi_get_value_int32(env, argv[1], b) != napi_ok)
    return type_error(env, fn, "offset and length must be numbers"), NULL;
  return data;
}

static int channel_range(napi_env env, const char *fn, int32_t off, int32_t len, size_t have) {
  if (off < 0 || len < 1 || (size_t)off > have || (size_t)len > have - (size_t)off)
    return range_error(env, fn, "[offset, offset+length) must be a non-empty range inside the buffer"), -1;
  return 0;
}

/* recv(offset, length) -> bytes | 0 (EOF) | -errno; fds and flags in meta. */
static napi_value js_channel_recv(napi_env env, napi_callback_info info) {
  int32_t off, len;
  napi_value v;
  struct channel *ch = channel_args(env, info, "channel.recv", &off, &len);
  if (!ch) return NULL;
  if (!ch->open || !ch->rbuf) return (napi_create_int32(env, -EBADF, &v), v);
  if (channel_range(env, "channel.recv", off, len, ch->rlen)) return NULL;
  NAPI(napi_create_int32(env, (int32_t)recv_into(ch->fd, ch->rbuf + off, (size_t)len, ch->meta, ch->metacap), &v));
  return v;
}

/* send(offset, length) -> bytes sent | -errno (no fds: use sendmsg for those). */
static napi_value js_channel_send(napi_env env, napi_callback_info info) {
  int32_t off, len;
  napi_value v;
  struct channel *ch = channel_args(env, info, "channel.send", &off, &len);
  if (!ch) return NULL;
  if (!ch->open || !ch->wbuf) return (napi_create_int32(env, -EBADF, &v), v);
  if (channel_range(env, "channel.send", off, len, ch->wlen)) return NULL;
  NAPI(napi_create_int32(env, (int32_t)send_from(ch->fd, ch->wbuf + off, (size_t)len, NULL, 0), &v));
  return v;
}

/* Holds `v` (a Uint8Array, or null to keep the current one) as a buffer. */
static int channel_hold(napi_env env, napi_value v, napi_ref *ref, uint8_t **p, size_t *n) {
  napi_valuetype t;
  bool is_ta = false;
  napi_typedarray_type type;
  void *data;
  size_t len;
  napi_ref nref;
  if (napi_typeof(env, v, &t) != napi_ok) return throw_napi(env), -1;
  if (t == napi_null || t == napi_undefined) return 0;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, &len, &data, NULL, NULL) != napi_ok || type != napi_uint8_array)
    return type_error(env, "channel.setBuffers", "buffers must be Uint8Arrays"), -1;
  if (napi_create_reference(env, v, 1, &nref) != napi_ok) return throw_napi(env), -1;
  if (*ref) napi_delete_reference(env, *ref);
  *ref = nref;
  *p = data;
  *n = len;
  return 0;
}

/* setBuffers(recvBuf | null, sendBuf | null): null keeps the current one. */
static napi_value js_channel_set_buffers(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t argc = 2;
  void *data;
  struct channel *ch;
  NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, &data));
  ch = data;
  if (!ch->open) return throw_errno(env, "channel.setBuffers", EBADF, NULL);
  if (argc < 2) return type_error(env, "channel.setBuffers", "expected (recvBuf, sendBuf)");
  if (channel_hold(env, argv[0], &ch->rref, &ch->rbuf, &ch->rlen) ||
      channel_hold(env, argv[1], &ch->wref, &ch->wbuf, &ch->wlen))
    return NULL;
  return NULL;
}

/* close(): drops the buffers; later calls return -EBADF. The fd stays open. */
static napi_value js_channel_close(napi_env env, napi_callback_info info) {
  void *data;
  size_t argc = 0;
  NAPI(napi_get_cb_info(env, info, &argc, NULL, NULL, &data));
  channel_release(env, data);
  return NULL;
}

/* channel(fd, meta) -> { recv, send, setBuffers, close } */
static napi_value js_channel(napi_env env, napi_callback_info info) {
  ARGS(2);
  static const struct { const char *name; napi_callback fn; } fns[CHANNEL_FNS] = {
    { "recv", js_channel_recv }, { "send", js_channel_send },
    { "setBuffers", js_channel_set_buffers }, { "close", js_channel_close },
  };
  struct channel *ch;
  int fd, i;
  int32_t *meta;
  size_t metalen;
  napi_value obj, f;
  if (arg_fd(env, "channel", argv[0], &fd) || arg_meta(env, "channel", argv[1], &meta, &metalen)) return NULL;
  ch = calloc(1, sizeof *ch);
  if (!ch) return throw_errno(env, "channel", ENOMEM, NULL);
  ch->fd = fd;
  ch->open = 1;
  ch->meta = meta;
  ch->metacap = metalen - 2;
  if (napi_create_reference(env, argv[1], 1, &ch->mref) != napi_ok || napi_create_object(env, &obj) != napi_ok) {
    channel_release(env, ch);
    free(ch);
    return throw_napi(env);
  }
  /* From here each function's finalizer owns one reference to ch. */
  for (i = 0; i < CHANNEL_FNS; i++) {
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, ch, &f) != napi_ok) break;
    if (napi_add_finalizer(env, f, ch, channel_fn_gone, NULL, NULL) != napi_ok) break;
    ch->refs++;
    if (napi_set_named_property(env, obj, fns[i].name, f) != napi_ok) break;
  }
  if (i < CHANNEL_FNS) {
    channel_release(env, ch);
    if (ch->refs == 0) free(ch);
    return throw_napi(env);
  }
  return obj;
}

/* --------------------------------------------------------------- watchers
 * A Watcher is a JS object {fd} wrapping a struct that owns a uv_poll_t. While
 * open, strong references keep the object and callback alive (like any libuv
 * handle). The struct is freed once both the uv close callback and the JS
 * object's finalizer have run.
 * At env teardown an async cleanup hook closes what is still open and holds
 * the env until every uv close callback has run: a worker unloads this
 * library afterwards, and a late callback into unmapped code would crash. */

static const napi_type_tag WATCHER_TAG = { 0x7666696f75736572ULL, 0x7761746368657231ULL };
static const napi_type_tag MAPPING_TAG = { 0x7666696f75736572ULL, 0x6d6d617070696e67ULL };

struct state;

struct watcher {
  uv_poll_t poll;
  napi_env env;
  struct state *st;
  napi_ref self, cb;
  napi_async_context actx;
  int fd;
  int inited;      /* uv_poll_init succeeded */
  int closing;     /* watchClose (or teardown) ran */
  int handle_done; /* no uv close callback outstanding */
  int js_done;     /* the JS object was finalized */
  int events;      /* what uv_poll is started for (0: stopped) */
  int64_t spin_ns; /* poll window after a callback (watchPoll; 0: off) */
  int last_spin;   /* how the spin after the last callback ended (SPIN_*) */
  int64_t last_end;/* CLOCK_MONOTONIC ns when the last callback (and spin) ended */
  struct watcher_reads *reads; /* watchReads: REGION_READs answered here (NULL: none) */
  struct watcher *next, *prev;
};

/* region_reads.c's state and the JS values its pointers point into. */
struct watcher_reads {
  struct region_reads rr;
  napi_ref shared, out, range[RR_MAX_RANGES];
};

static void reads_free(napi_env env, struct watcher_reads *r, int js_calls_ok) {
  int i;
  if (!r) return;
  if (js_calls_ok) {
    if (r->shared) napi_delete_reference(env, r->shared);
    if (r->out) napi_delete_reference(env, r->out);
    for (i = 0; i < RR_MAX_RANGES; i++)
      if (r->range[i]) napi_delete_reference(env, r->range[i]);
  }
  free(r);
}

struct state {                     /* per env */
  struct watcher *open;            /* open watchers */
  int closes_pending;              /* uv_close callbacks not yet run */
  int tearing_down;
  napi_async_cleanup_hook_handle hook;
};

static void teardown_maybe_done(struct state *st) {
  if (st->tearing_down && st->closes_pending == 0) {
    napi_remove_async_cleanup_hook(st->hook);
    free(st);
  }
}

static void watcher_unlink(struct state *st, struct watcher *w) {
  if (w->prev) w->prev->next = w->next; else if (st->open == w) st->open = w->next;
  if (w->next) w->next->prev = w->prev;
  w->next = w->prev = NULL;
}

static void watcher_maybe_free(struct watcher *w) {
  if (w->handle_done && w->js_done) free(w);
}

static void on_poll_closed(uv_handle_t *h) {
  struct watcher *w = h->data;
  struct state *st = w->st;
  w->handle_done = 1;
  watcher_maybe_free(w);
  st->closes_pending--;
  teardown_maybe_done(st);
}

/* Stop polling and release everything but the struct. Idempotent. */
static void watcher_close(napi_env env, struct watcher *w, int js_calls_ok) {
  struct state *st = w->st;
  if (w->closing) return;
  w->closing = 1;
  watcher_unlink(st, w);
  if (w->inited) {
    st->closes_pending++;
    uv_close((uv_handle_t *)&w->poll, on_poll_closed); /* stops it too */
  } else {
    w->handle_done = 1;
  }
  reads_free(env, w->reads, js_calls_ok);
  w->reads = NULL;
  if (!js_calls_ok) return;
  if (w->cb) napi_delete_reference(env, w->cb);
  if (w->self) napi_delete_reference(env, w->self);
  if (w->actx) napi_async_destroy(env, w->actx);
  w->cb = w->self = NULL;
  w->actx = NULL;
}

static void watcher_finalize(napi_env env, void *data, void *hint) {
  struct watcher *w = data;
  /* Unreachable while the cleanup hook runs first; be safe: no JS calls. */
  if (!w->closing) watcher_close(env, w, 0);
  w->js_done = 1;
  watcher_maybe_free(w);
}

/* ------------------------------------------------------- adaptive polling
 * After a readiness callback (and the microtasks it queued) the watcher may
 * look at its fd for up to spin_ns more before going back to epoll: a
 * request that arrives meanwhile is caught without the sleep and wake-up.
 * The window comes from TS (server/adaptive-poll.ts), which learns it from
 * what each spin reports to the next callback. The spin gives way at once
 * to anything else: another fd of the loop ready (the loop's epoll fd turns
 * readable), an immediate, a due timer or a pending callback
 * (uv_backend_timeout 0), or another thread that wants this CPU (it yields
 * every round; a round that took far longer than one while this thread was
 * switched out means another thread had the CPU, and it stops and says so). */

#define POLL_HIT 4        /* events bit: readiness caught by spinning; arg 3: ns spun */
#define POLL_MISS 8       /* the last spin ran out; arg 3: ns from its end to now */
#define POLL_CONTENDED 16 /* the last spin lost the CPU to another thread */
#define POLL_READ_SERVED 32 /* this readiness was a REGION_READ answered here (watchReads) */
#define POLL_READ_UNSENT 64 /* ... and the rest of its reply is for JS to send */
#define SPIN_NONE 0
#define SPIN_READY 1
#define SPIN_TIMEOUT 2
#define SPIN_CONTENDED 3
#define SPIN_OTHER 4      /* other work of the loop was ready: not a miss */
#define SPIN_CONTENDED_NS 20000 /* one round is ~1 us; 20 us means we were descheduled */
#define SPIN_MAX_ROUNDS 64      /* hits in a row before epoll gets a turn (fairness) */
#define SPIN_MAX_NS 1000000     /* watchPoll refuses longer windows */

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Times this thread was switched out while runnable (-1: unknown). */
static long involuntary_switches(void) {
  struct rusage ru;
  return getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_nivcsw : -1;
}

/* Spin on fd (and the loop's epoll fd) for up to max_ns; *spent: ns spun. */
static int spin_once(int fd, int epfd, int64_t max_ns, int64_t *spent) {
  int64_t start = mono_ns(), last = start, t;
  long switches = involuntary_switches();
  struct pollfd p[2];
  int n;
  for (;;) {
    p[0].fd = fd;
    p[0].events = POLLIN;
    p[0].revents = 0;
    p[1].fd = epfd;
    p[1].events = POLLIN;
    p[1].revents = 0;
    n = poll(p, 2, 0);
    t = mono_ns();
    *spent = t - start;
    if (n < 0 && errno != EINTR) return SPIN_OTHER;
    if (n > 0) return p[0].revents ? SPIN_READY : SPIN_OTHER;
    /* A long round: another thread ran here, or this virtual CPU was
     * stalled by its host or an interrupt (not a reason to stop). */
    if (t - last > SPIN_CONTENDED_NS) {
      long now = involuntary_switches();
      if (switches < 0 || now < 0 || now != switches) return SPIN_CONTENDED;
    }
    if (t - start >= max_ns) return SPIN_TIMEOUT;
    last = t;
    /* Hand the CPU to any thread waiting for it (a vCPU of the guest we
     * serve, say): then the next round sees the jump and stops. */
    sched_yield();
  }
}

static int call_watcher(struct watcher *w, int status, int events, double info) {
  napi_env env = w->env;
  napi_handle_scope scope;
  napi_value cb, recv, argv[3], result, exc;
  if (w->closing || napi_open_handle_scope(env, &scope) != napi_ok) return -1;
  if (napi_get_reference_value(env, w->cb, &cb) == napi_ok &&
      napi_get_reference_value(env, w->self, &recv) == napi_ok &&
      napi_create_int32(env, status, &argv[0]) == napi_ok &&
      napi_create_int32(env, events, &argv[1]) == napi_ok &&
      napi_create_double(env, info, &argv[2]) == napi_ok &&
      napi_make_callback(env, w->actx, recv, cb, 3, argv, &result) == napi_pending_exception &&
      napi_get_and_clear_last_exception(env, &exc) == napi_ok) {
    napi_fatal_exception(env, exc); /* -> process 'uncaughtException' */
  }
  napi_close_handle_scope(env, scope);
  return 0;
}

/* Answer a plain REGION_READ before JS runs: the events bits to add. */
static int serve_read(struct watcher *w) {
  int r = w->reads ? rr_serve(&w->reads->rr, w->fd) : RR_NONE;
  if (r == RR_SENT) return POLL_READ_SERVED;
  return r == RR_UNSENT ? POLL_READ_SERVED | POLL_READ_UNSENT : 0;
}

/* May we spin now? Only for a readable watcher with a window and a loop
 * that has nothing else to do at once. */
static int may_spin(struct watcher *w, uv_loop_t *loop) {
  return !w->closing && w->spin_ns > 0 && (w->events & UV_READABLE) && uv_backend_timeout(loop) != 0;
}

static void on_poll(uv_poll_t *h, int status, int events) {
  struct watcher *w = h->data;
  uv_loop_t *loop = h->loop;
  int64_t now = mono_ns(), spent = 0;
  double info = w->last_end ? (double)(now - w->last_end) : -1;
  int rounds, r = SPIN_NONE;
  if (w->closing) return;
  if (w->last_spin == SPIN_TIMEOUT) events |= POLL_MISS;
  else if (w->last_spin == SPIN_CONTENDED) events |= POLL_CONTENDED;
  if (status == 0 && (events & UV_READABLE)) events |= serve_read(w);
  if (call_watcher(w, status, events, info) < 0) return;
  for (rounds = 0; status == 0 && rounds < SPIN_MAX_ROUNDS && may_spin(w, loop); rounds++) {
    r = spin_once(w->fd, uv_backend_fd(loop), w->spin_ns, &spent);
    if (r != SPIN_READY) break;
    if (call_watcher(w, 0, UV_READABLE | POLL_HIT | serve_read(w), (double)spent) < 0) return;
    r = SPIN_NONE;
  }
  if (w->closing) return;
  w->last_spin = r;
  w->last_end = mono_ns();
}

static struct state *get_state(napi_env env) {
  void *st = NULL;
  napi_get_instance_data(env, &st);
  return st;
}

static int arg_events(napi_env env, const char *fn, napi_value v, int *events) {
  int64_t e;
  if (arg_int(env, fn, v, "events", 0, UV_READABLE | UV_WRITABLE, &e)) return -1;
  *events = (int)e;
  return 0;
}

static napi_value js_watch(napi_env env, napi_callback_info info) {
  ARGS(3);
  struct state *st = get_state(env);
  struct watcher *w, *o;
  napi_valuetype t;
  napi_value obj, fdv, name;
  uv_loop_t *loop;
  int fd, events, r;
  if (arg_fd(env, "watch", argv[0], &fd) || arg_events(env, "watch", argv[1], &events)) return NULL;
  NAPI(napi_typeof(env, argv[2], &t));
  if (t != napi_function) return type_error(env, "watch", "cb must be a function");
  /* libuv misbehaves with two poll handles on one fd; refuse loudly. */
  for (o = st->open; o; o = o->next)
    if (o->fd == fd) return throw_errno(env, "watch", EEXIST, NULL);
  NAPI(napi_get_uv_event_loop(env, &loop));

  NAPI(napi_create_object(env, &obj));
  NAPI(napi_create_int32(env, fd, &fdv));
  napi_property_descriptor prop = { "fd", NULL, NULL, NULL, NULL, fdv, napi_enumerable, NULL };
  NAPI(napi_define_properties(env, obj, 1, &prop));
  NAPI(napi_type_tag_object(env, obj, &WATCHER_TAG));
  w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, "watch", ENOMEM, NULL);
  w->env = env;
  w->st = st;
  w->fd = fd;
  w->poll.data = w;
  if (napi_wrap(env, obj, w, watcher_finalize, NULL, NULL) != napi_ok) {
    free(w);
    return throw_napi(env);
  }
  /* From here the finalizer frees w: on failure only close it. */
  if (napi_create_reference(env, argv[2], 1, &w->cb) != napi_ok ||
      napi_create_reference(env, obj, 1, &w->self) != napi_ok ||
      napi_create_string_utf8(env, "vfio_native.watch", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, obj, name, &w->actx) != napi_ok) {
    watcher_close(env, w, 1); /* not linked yet: unlink is a no-op */
    return throw_napi(env);
  }
  w->next = st->open;
  if (st->open) st->open->prev = w;
  st->open = w;
  if ((r = uv_poll_init(loop, &w->poll, fd)) < 0) goto fail_uv;
  w->inited = 1;
  if (events && (r = uv_poll_start(&w->poll, events, on_poll)) < 0) goto fail_uv;
  w->events = events;
  return obj;
fail_uv:
  watcher_close(env, w, 1);
  return throw_errno(env, "uv_poll", -r, NULL);
}

static struct watcher *arg_watcher(napi_env env, const char *fn, napi_value v) {
  napi_valuetype t;
  bool ok = false;
  void *w = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_object ||
      napi_check_object_type_tag(env, v, &WATCHER_TAG, &ok) != napi_ok || !ok ||
      napi_unwrap(env, v, &w) != napi_ok || !w)
    return type_error(env, fn, "w must be a Watcher from watch()"), NULL;
  return w;
}

static napi_value js_watch_set(napi_env env, napi_callback_info info) {
  ARGS(2);
  struct watcher *w = arg_watcher(env, "watchSet", argv[0]);
  int events, r;
  if (!w || arg_events(env, "watchSet", argv[1], &events)) return NULL;
  if (w->closing) return throw_errno(env, "watchSet", EBADF, NULL);
  r = events ? uv_poll_start(&w->poll, events, on_poll) : uv_poll_stop(&w->poll);
  if (r < 0) return throw_errno(env, "uv_poll", -r, NULL);
  w->events = events;
  return NULL;
}

/* watchPoll(w, ns): after each callback, look at the fd for up to ns more
 * (0: never) before going back to epoll. */
static napi_value js_watch_poll(napi_env env, napi_callback_info info) {
  ARGS(2);
  struct watcher *w = arg_watcher(env, "watchPoll", argv[0]);
  int64_t ns;
  if (!w || arg_int(env, "watchPoll", argv[1], "ns", 0, SPIN_MAX_NS, &ns)) return NULL;
  if (w->closing) return throw_errno(env, "watchPoll", EBADF, NULL);
  w->spin_ns = ns;
  return NULL;
}

/* A Uint8Array (or Int32Array of at least `min` elements) held by a new reference. */
static int hold_typed(napi_env env, const char *fn, napi_value v, napi_typedarray_type want, size_t min,
                      const char *what, napi_ref *ref, void **data, size_t *len) {
  char msg[160];
  bool is_ta = false;
  napi_typedarray_type type;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, len, data, NULL, NULL) != napi_ok || type != want) {
    snprintf(msg, sizeof msg, "%s must be a%s", what, want == napi_int32_array ? "n Int32Array" : " Uint8Array");
    return type_error(env, fn, msg), -1;
  }
  if (*len < min) {
    snprintf(msg, sizeof msg, "%s must have at least %zu elements", what, min);
    return range_error(env, fn, msg), -1;
  }
  if (napi_create_reference(env, v, 1, ref) != napi_ok) return throw_napi(env), -1;
  return 0;
}

/* One {region, offset, bytes} of watchReads' ranges. */
static int reads_range(napi_env env, napi_value v, struct watcher_reads *r, int i) {
  struct rr_range *g = &r->rr.range[i];
  napi_value field;
  int64_t region, offset;
  void *data;
  size_t len;
  if (napi_get_named_property(env, v, "region", &field) != napi_ok ||
      arg_int(env, "watchReads", field, "range.region", 0, UINT32_MAX, &region))
    return -1;
  if (napi_get_named_property(env, v, "offset", &field) != napi_ok ||
      arg_int(env, "watchReads", field, "range.offset", 0, SAFE_MAX, &offset))
    return -1;
  if (napi_get_named_property(env, v, "bytes", &field) != napi_ok ||
      hold_typed(env, "watchReads", field, napi_uint8_array, 0, "range.bytes", &r->range[i], &data, &len))
    return -1;
  if ((double)offset + (double)len > SAFE_MAX) return range_error(env, "watchReads", "range.offset + length is above 2^53"), -1;
  g->region = (uint32_t)region;
  g->offset = (uint64_t)offset;
  g->len = len;
  g->bytes = data;
  return 0;
}

/* watchReads(w, shared, out, ranges): before each callback, answer a plain
 * REGION_READ here (region_reads.c). Replaces what an earlier call set. */
static napi_value js_watch_reads(napi_env env, napi_callback_info info) {
  ARGS(4);
  struct watcher *w = arg_watcher(env, "watchReads", argv[0]);
  struct watcher_reads *r;
  uint32_t n, i;
  bool is_array = false;
  napi_value v;
  void *data;
  size_t len;
  if (!w) return NULL;
  if (w->closing) return throw_errno(env, "watchReads", EBADF, NULL);
  if (napi_is_array(env, argv[3], &is_array) != napi_ok || !is_array) return type_error(env, "watchReads", "ranges must be an array");
  NAPI(napi_get_array_length(env, argv[3], &n));
  if (n > RR_MAX_RANGES) return range_error(env, "watchReads", "at most 16 ranges");
  if (!(r = calloc(1, sizeof *r))) return throw_errno(env, "watchReads", ENOMEM, NULL);
  if (hold_typed(env, "watchReads", argv[1], napi_int32_array, RR_FIELDS, "shared", &r->shared, &data, &len)) goto fail;
  r->rr.shared = data;
  if (hold_typed(env, "watchReads", argv[2], napi_uint8_array, RR_REQUEST_SIZE, "out", &r->out, &data, &len)) goto fail;
  r->rr.out = data;
  r->rr.out_len = len;
  for (i = 0; i < n; i++) {
    if (napi_get_element(env, argv[3], i, &v) != napi_ok) { throw_napi(env); goto fail; }
    if (reads_range(env, v, r, (int)i)) goto fail;
  }
  r->rr.nranges = (int)n;
  reads_free(env, w->reads, 1);
  w->reads = r;
  return NULL;
fail:
  reads_free(env, r, 1);
  return NULL;
}

/* yieldCpu(ns): sched_yield, so that a thread waiting for this CPU runs now
 * (a poller in JS calls it every round, as spin_once does). True when this
 * thread then waited for the CPU for longer than ns: the poller should stop. */
static napi_value js_yield_cpu(napi_env env, napi_callback_info info) {
  ARGS(1);
  int64_t ns, start;
  long before, after;
  napi_value v;
  if (arg_int(env, "yieldCpu", argv[0], "ns", 0, SPIN_MAX_NS, &ns)) return NULL;
  before = involuntary_switches();
  start = mono_ns();
  sched_yield();
  after = involuntary_switches();
  NAPI(napi_get_boolean(env, mono_ns() - start > ns && (before < 0 || after < 0 || after != before), &v));
  return v;
}

static napi_value js_watch_close(napi_env env, napi_callback_info info) {
  ARGS(1);
  struct watcher *w = arg_watcher(env, "watchClose", argv[0]);
  if (w) watcher_close(env, w, 1);
  return NULL;
}

/* Env teardown, before Node-API finalizers run: close what JS left open,
 * then hold the env until the close callbacks are done. */
static void env_cleanup(napi_async_cleanup_hook_handle handle, void *arg) {
  struct state *st = arg;
  st->tearing_down = 1;
  while (st->open) watcher_close(st->open->env, st->open, 1);
  teardown_maybe_done(st);
}

/* ------------------------------------------------------------------ mmap
 * The ArrayBuffer is external. Node frees its backing store (and calls
 * mapping_release via the buffer finalizer) after a detach or a GC, while the
 * JS object may still be alive; the object is also wrapped. So the struct
 * is reference counted: one for the backing store, one for the JS object. */

struct mapping {
  void *base;   /* page-aligned start of the mapping */
  size_t len;   /* whole mapped length */
  int mapped;
  int refs;
};

static void mapping_unmap(struct mapping *m) {
  if (m->mapped && munmap(m->base, m->len) == 0) m->mapped = 0;
}

static void mapping_release(struct mapping *m) {
  if (--m->refs == 0) free(m);
}

static void mapping_store_gone(napi_env env, void *data, void *hint) {
  struct mapping *m = hint;
  mapping_unmap(m); /* no-op after munmap(); the GC path when the JS dropped it */
  mapping_release(m);
}

static void mapping_object_gone(napi_env env, void *data, void *hint) {
  mapping_release(data);
}

static napi_value js_mmap(napi_env env, napi_callback_info info) {
  ARGS(4);
  int fd;
  int64_t off, len, prot;
  long page = sysconf(_SC_PAGESIZE);
  size_t lead, maplen;
  void *addr;
  int mprot, mflags;
  struct mapping *m;
  napi_value ab;
  if (arg_fd(env, "mmap", argv[0], &fd) ||
      arg_int(env, "mmap", argv[1], "offset", 0, SAFE_MAX, &off) ||
      arg_int(env, "mmap", argv[2], "length", 1, SAFE_MAX, &len) ||
      arg_int(env, "mmap", argv[3], "prot", 1, PROT_READ | PROT_WRITE, &prot))
    return NULL;
  if (page <= 0) page = 4096;
  /* Accept any offset: map from the page below it and point past the lead. */
  lead = (size_t)(off % page);
  maplen = lead + (size_t)len;
  if (maplen < (size_t)len) return range_error(env, "mmap", "length too large");
  /* A view cannot be write-only (x86 cannot either), and writing through a
   * JS view of a PROT_READ mapping would SIGSEGV the process. So read-only
   * becomes a private copy-on-write mapping: it still sees the file's pages,
   * and a stray write only changes our private copy. */
  mprot = PROT_READ | PROT_WRITE;
  mflags = (prot & PROT_WRITE) ? MAP_SHARED : MAP_PRIVATE;
  addr = mmap(NULL, maplen, mprot, mflags, fd, (off_t)(off - (int64_t)lead));
  if (addr == MAP_FAILED) return throw_errno(env, "mmap", errno, NULL);
  m = calloc(1, sizeof *m);
  if (!m) {
    munmap(addr, maplen);
    return throw_errno(env, "mmap", ENOMEM, NULL);
  }
  m->base = addr;
  m->len = maplen;
  m->mapped = 1;
  m->refs = 2; /* the backing store's finalizer, and ours (passed to the wrap) */
  /* Fails above buffer.constants.MAX_LENGTH with an exception pending; Node
   * may or may not call the finalizer then, so the refcount covers both. */
  if (napi_create_external_arraybuffer(env, (char *)addr + lead, (size_t)len, mapping_store_gone, m, &ab) != napi_ok) {
    mapping_unmap(m);
    mapping_release(m);
    return throw_napi(env);
  }
  if (napi_type_tag_object(env, ab, &MAPPING_TAG) != napi_ok ||
      napi_wrap(env, ab, m, mapping_object_gone, NULL, NULL) != napi_ok) {
    napi_detach_arraybuffer(env, ab);
    mapping_unmap(m);
    mapping_release(m);
    return throw_napi(env);
  }
  return ab;
}

static napi_value js_munmap(napi_env env, napi_callback_info info) {
  ARGS(1);
  bool is_ab = false, ok = false;
  void *p = NULL;
  struct mapping *m;
  if (napi_is_arraybuffer(env, argv[0], &is_ab) != napi_ok || !is_ab ||
      napi_check_object_type_tag(env, argv[0], &MAPPING_TAG, &ok) != napi_ok || !ok ||
      napi_unwrap(env, argv[0], &p) != napi_ok || !p)
    return type_error(env, "munmap", "ab must be an ArrayBuffer from mmap()");
  m = p;
  if (!m->mapped) return NULL;
  /* Detach first: views then read as length 0 instead of touching freed pages. */
  NAPI(napi_detach_arraybuffer(env, argv[0]));
  if (m->mapped && munmap(m->base, m->len) < 0) return throw_errno(env, "munmap", errno, NULL);
  m->mapped = 0;
  return NULL;
}

/* ------------------------------------------------------------ small calls */

static napi_value js_file_size(napi_env env, napi_callback_info info) {
  ARGS(1);
  int fd;
  struct stat sb;
  if (arg_fd(env, "fileSize", argv[0], &fd)) return NULL;
  if (fstat(fd, &sb) < 0) return throw_errno(env, "fstat", errno, NULL);
  return num(env, (double)sb.st_size);
}

/* fileStat(fd) -> { dev, ino (bigints), size, readable, writable }: what
 * identifies a file (the same inode through any fd of it) and what the fd
 * may do with it (its O_ACCMODE), in one call. */
static napi_value js_file_stat(napi_env env, napi_callback_info info) {
  ARGS(1);
  int fd, fl;
  struct stat sb;
  napi_value o, v;
  if (arg_fd(env, "fileStat", argv[0], &fd)) return NULL;
  if (fstat(fd, &sb) < 0) return throw_errno(env, "fstat", errno, NULL);
  fl = fcntl(fd, F_GETFL);
  if (fl < 0) return throw_errno(env, "fcntl(F_GETFL)", errno, NULL);
  NAPI(napi_create_object(env, &o));
  NAPI(napi_create_bigint_uint64(env, (uint64_t)sb.st_dev, &v));
  NAPI(napi_set_named_property(env, o, "dev", v));
  NAPI(napi_create_bigint_uint64(env, (uint64_t)sb.st_ino, &v));
  NAPI(napi_set_named_property(env, o, "ino", v));
  NAPI(napi_set_named_property(env, o, "size", num(env, (double)sb.st_size)));
  NAPI(napi_get_boolean(env, (fl & O_ACCMODE) != O_WRONLY, &v));
  NAPI(napi_set_named_property(env, o, "readable", v));
  NAPI(napi_get_boolean(env, (fl & O_ACCMODE) != O_RDONLY, &v));
  NAPI(napi_set_named_property(env, o, "writable", v));
  return o;
}

/* fallocate(fd, mode, offset, length) -> Promise<void>, run on the libuv
 * thread pool: punching or zeroing a large range of an image can take a
 * while, and the event loop must keep serving the guest meanwhile. */
struct falloc_work {
  napi_async_work work;
  napi_deferred deferred;
  int fd, mode, err;
  off_t offset, length;
};

static void falloc_execute(napi_env env, void *data) {
  struct falloc_work *w = data;
  (void)env;
  w->err = RETRY(fallocate(w->fd, w->mode, w->offset, w->length)) < 0 ? errno : 0;
}

static void falloc_complete(napi_env env, napi_status status, void *data) {
  struct falloc_work *w = data;
  napi_value v;
  if (status == napi_ok && w->err == 0 && napi_get_undefined(env, &v) == napi_ok) {
    napi_resolve_deferred(env, w->deferred, v);
  } else {
    v = errno_error(env, "fallocate", status == napi_ok ? w->err : ECANCELED, NULL);
    if (v) napi_reject_deferred(env, w->deferred, v);
  }
  napi_delete_async_work(env, w->work);
  free(w);
}

static napi_value js_fallocate(napi_env env, napi_callback_info info) {
  ARGS(4);
  int fd;
  int64_t mode, off, len;
  struct falloc_work *w;
  napi_value promise, name;
  if (arg_fd(env, "fallocate", argv[0], &fd) ||
      arg_int(env, "fallocate", argv[1], "mode", 0, INT_MAX, &mode) ||
      arg_int(env, "fallocate", argv[2], "offset", 0, SAFE_MAX, &off) ||
      arg_int(env, "fallocate", argv[3], "length", 1, SAFE_MAX, &len))
    return NULL;
  if ((double)off + (double)len > SAFE_MAX) return range_error(env, "fallocate", "offset + length overflows");
  w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, "fallocate", ENOMEM, NULL);
  w->fd = fd;
  w->mode = (int)mode;
  w->offset = (off_t)off;
  w->length = (off_t)len;
  if (napi_create_promise(env, &w->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "vfio_native.fallocate", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, falloc_execute, falloc_complete, w, &w->work) != napi_ok) {
    free(w); /* a created deferred without a work item is never settled: acceptable on this failure path */
    return throw_napi(env);
  }
  if (napi_queue_async_work(env, w->work) != napi_ok) {
    napi_delete_async_work(env, w->work);
    free(w);
    return throw_napi(env);
  }
  return promise;
}

/* preadvFull(fd, buffers, spans, count, position, tryInline)
 * pwritevFull(...) -> bytes (number) when done inline, else Promise<bytes>.
 * Positioned scatter/gather I/O between a file and `count` byte ranges of
 * ArrayBuffers (the guest buffers of one virtio request) until every byte
 * is done; a read stops early only at end of file. Range i is
 * buffers[spans[3i]] bytes [spans[3i+1], +spans[3i+2]), each checked against
 * its buffer. Ranges, not views: fetching hundreds of views through
 * napi_get_element costs more than the copy of a small request (index.ts
 * packs views into spans).
 *
 * With tryInline, one preadv2/pwritev2(RWF_NOWAIT) runs first on the calling
 * thread: it copies only what is in the page cache and returns EAGAIN instead
 * of waiting for the disk (what io_uring does before it punts to a worker).
 * A cached request then completes without two thread hand-offs; anything
 * left goes to the libuv thread pool, where the call may block. With
 * `block` (optional, a caller's choice for writes into the page cache, which
 * seldom wait) the call is made on the calling thread without RWF_NOWAIT,
 * so it may block there. Errors always come as a rejected promise (with
 * .code/.errno: a failed inline call is repeated on the pool, which reports
 * it); bad arguments throw. */
#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif
#define MAX_SPANS 65536

struct rw_work {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref buffers; /* keeps the memory alive while the pool uses it */
  int fd, write, err;
  off_t pos;
  size_t done, total, niov, first; /* iov[first..niov) is what is left */
  struct iovec iov[];
};

/* Skip n bytes of w->iov from w->first on. */
static void rw_advance(struct rw_work *w, size_t n) {
  w->done += n;
  w->pos += (off_t)n;
  while (n > 0 && w->first < w->niov) {
    struct iovec *v = &w->iov[w->first];
    if (n < v->iov_len) {
      v->iov_base = (char *)v->iov_base + n;
      v->iov_len -= n;
      return;
    }
    n -= v->iov_len;
    w->first++;
  }
  while (w->first < w->niov && w->iov[w->first].iov_len == 0) w->first++;
}

/* One syscall on what is left (at most IOV_MAX buffers): bytes or -errno. */
static ssize_t rw_once(struct rw_work *w, int flags) {
  size_t cnt = w->niov - w->first;
  ssize_t r;
  if (cnt > IOV_MAX) cnt = IOV_MAX;
  if (w->write) r = RETRY(pwritev2(w->fd, &w->iov[w->first], (int)cnt, w->pos, flags));
  else r = RETRY(preadv2(w->fd, &w->iov[w->first], (int)cnt, w->pos, flags));
  return r < 0 ? -errno : r;
}

/* Until done, EOF (reads), or an error. */
static void rw_execute(napi_env env, void *data) {
  struct rw_work *w = data;
  (void)env;
  while (w->done < w->total) {
    ssize_t r = rw_once(w, 0);
    if (r < 0) {
      w->err = (int)-r;
      return;
    }
    if (r == 0) {
      if (w->write) w->err = EIO; /* a regular file never takes 0 bytes */
      return;
    }
    rw_advance(w, (size_t)r);
  }
}

static void rw_free(napi_env env, struct rw_work *w) {
  if (w->buffers) napi_delete_reference(env, w->buffers);
  free(w);
}

static void rw_complete(napi_env env, napi_status status, void *data) {
  struct rw_work *w = data;
  napi_value v;
  if (status == napi_ok && w->err == 0 && napi_create_double(env, (double)w->done, &v) == napi_ok) {
    napi_resolve_deferred(env, w->deferred, v);
  } else {
    v = errno_error(env, w->write ? "pwritev" : "preadv", status == napi_ok ? w->err : ECANCELED, NULL);
    if (v) napi_reject_deferred(env, w->deferred, v);
  }
  napi_delete_async_work(env, w->work);
  rw_free(env, w);
}

static napi_value rw_call(napi_env env, napi_callback_info info, int write) {
  const char *fn = write ? "pwritevFull" : "preadvFull";
  ARGS(7);
  int fd;
  int64_t count, pos;
  bool is_array = false, is_ta = false, try_inline = false, block = false;
  napi_valuetype block_type;
  uint32_t nbuf, i;
  struct { uint8_t *p; size_t len; } *bufs;
  size_t slen;
  napi_typedarray_type type;
  double *spans;
  struct rw_work *w;
  napi_value promise, name;
  if (arg_fd(env, fn, argv[0], &fd)) return NULL;
  if (napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array) return type_error(env, fn, "buffers must be an array of ArrayBuffer");
  if (napi_is_typedarray(env, argv[2], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[2], &type, &slen, (void **)&spans, NULL, NULL) != napi_ok || type != napi_float64_array)
    return type_error(env, fn, "spans must be a Float64Array");
  if (arg_int(env, fn, argv[3], "count", 0, MAX_SPANS, &count)) return NULL;
  if ((size_t)count * 3 > slen) return range_error(env, fn, "spans holds fewer than count ranges");
  if (arg_int(env, fn, argv[4], "position", 0, SAFE_MAX, &pos)) return NULL;
  if (napi_get_value_bool(env, argv[5], &try_inline) != napi_ok) return type_error(env, fn, "tryInline must be a boolean");
  NAPI(napi_typeof(env, argv[6], &block_type));
  if (block_type != napi_undefined && napi_get_value_bool(env, argv[6], &block) != napi_ok) return type_error(env, fn, "block must be a boolean");
  NAPI(napi_get_array_length(env, argv[1], &nbuf));
  if (nbuf > MAX_SPANS) return range_error(env, fn, "more than 65536 buffers");
  bufs = malloc((nbuf ? nbuf : 1) * sizeof *bufs);
  if (!bufs) return throw_errno(env, fn, ENOMEM, NULL);
  for (i = 0; i < nbuf; i++) {
    napi_value e;
    bool is_ab = false;
    void *p = NULL;
    if (napi_get_element(env, argv[1], i, &e) != napi_ok) return free(bufs), throw_napi(env);
    if (napi_is_arraybuffer(env, e, &is_ab) != napi_ok || !is_ab || napi_get_arraybuffer_info(env, e, &p, &bufs[i].len) != napi_ok) {
      free(bufs);
      return type_error(env, fn, "buffers must be an array of ArrayBuffer");
    }
    bufs[i].p = p;
  }
  w = calloc(1, sizeof *w + (size_t)count * sizeof w->iov[0]);
  if (!w) return free(bufs), throw_errno(env, fn, ENOMEM, NULL);
  w->fd = fd;
  w->write = write;
  w->pos = (off_t)pos;
  w->niov = (size_t)count;
  for (i = 0; i < (uint32_t)count; i++) {
    double b = spans[3 * i], off = spans[3 * i + 1], len = spans[3 * i + 2];
    /* Each range inside its buffer (a detached buffer has length 0). */
    if (!(b >= 0 && b < nbuf && b == (uint32_t)b && off >= 0 && len >= 0 && off == (double)(size_t)off &&
          len == (double)(size_t)len && off + len <= (double)bufs[(uint32_t)b].len)) {
      free(bufs);
      rw_free(env, w);
      return range_error(env, fn, "a span lies outside its buffer");
    }
    w->iov[i].iov_base = bufs[(uint32_t)b].p + (size_t)off;
    w->iov[i].iov_len = (size_t)len;
    w->total += (size_t)len;
  }
  free(bufs);
  if ((double)pos + (double)w->total > SAFE_MAX) return rw_free(env, w), range_error(env, fn, "position + length overflows");
  rw_advance(w, 0); /* skip empty ranges */
  if (try_inline || block) {
    while (w->done < w->total) {
      ssize_t r = rw_once(w, block ? 0 : RWF_NOWAIT);
      if (r <= 0) {
        /* EOF ends a read; a write, EAGAIN, EOPNOTSUPP or an error goes to
         * the pool, which repeats the call and reports what happens. */
        if (r == 0 && !write) w->total = w->done;
        break;
      }
      rw_advance(w, (size_t)r);
    }
    if (w->done == w->total) {
      napi_value v;
      double done = (double)w->done;
      rw_free(env, w);
      NAPI(napi_create_double(env, done, &v));
      return v;
    }
  }
  if (napi_create_reference(env, argv[1], 1, &w->buffers) != napi_ok ||
      napi_create_promise(env, &w->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, fn, NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, rw_execute, rw_complete, w, &w->work) != napi_ok) {
    rw_free(env, w);
    return throw_napi(env);
  }
  if (napi_queue_async_work(env, w->work) != napi_ok) {
    napi_delete_async_work(env, w->work);
    rw_free(env, w);
    return throw_napi(env);
  }
  return promise;
}

static napi_value js_preadv_full(napi_env env, napi_callback_info info) { return rw_call(env, info, 0); }
static napi_value js_pwritev_full(napi_env env, napi_callback_info info) { return rw_call(env, info, 1); }

static napi_value js_get_seals(napi_env env, napi_callback_info info) {
  ARGS(1);
  int fd, r;
  if (arg_fd(env, "getSeals", argv[0], &fd)) return NULL;
  r = fcntl(fd, F_GET_SEALS);
  if (r < 0 && errno == EINVAL) r = 0; /* not a sealable file: no seals */
  if (r < 0) return throw_errno(env, "fcntl(F_GET_SEALS)", errno, NULL);
  return num(env, r);
}

static napi_value js_add_seals(napi_env env, napi_callback_info info) {
  ARGS(2);
  int fd;
  int64_t seals;
  if (arg_fd(env, "addSeals", argv[0], &fd) || arg_int(env, "addSeals", argv[1], "seals", 0, INT_MAX, &seals))
    return NULL;
  if (fcntl(fd, F_ADD_SEALS, (int)seals) < 0) return throw_errno(env, "fcntl(F_ADD_SEALS)", errno, NULL);
  return NULL;
}

static napi_value js_ftruncate(napi_env env, napi_callback_info info) {
  ARGS(2);
  int fd;
  int64_t size;
  if (arg_fd(env, "ftruncate", argv[0], &fd) || arg_int(env, "ftruncate", argv[1], "size", 0, SAFE_MAX, &size))
    return NULL;
  if (RETRY(ftruncate(fd, (off_t)size)) < 0) return throw_errno(env, "ftruncate", errno, NULL);
  return NULL;
}

static napi_value js_memfd_create(napi_env env, napi_callback_info info) {
  ARGS(2);
  char name[250]; /* the kernel's limit is 249 bytes */
  int64_t size;
  int fd, e;
  if (arg_string(env, "memfdCreate", argv[0], "name", name, sizeof name) ||
      arg_int(env, "memfdCreate", argv[1], "size", 0, SAFE_MAX, &size))
    return NULL;
  fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return throw_errno(env, "memfd_create", errno, NULL);
  if (RETRY(ftruncate(fd, (off_t)size)) < 0) {
    e = errno;
    close(fd);
    return throw_errno(env, "ftruncate", e, NULL);
  }
  return return_fd(env, fd);
}

static napi_value js_eventfd(napi_env env, napi_callback_info info) {
  ARGS(1);
  int64_t init;
  int fd;
  if (arg_int(env, "eventfd", argv[0], "initval", 0, UINT32_MAX, &init)) return NULL;
  fd = eventfd((unsigned)init, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return throw_errno(env, "eventfd", errno, NULL);
  return return_fd(env, fd);
}

static napi_value js_eventfd_write(napi_env env, napi_callback_info info) {
  ARGS(2);
  int fd;
  int64_t value;
  uint64_t v;
  if (arg_fd(env, "eventfdWrite", argv[0], &fd) ||
      arg_int(env, "eventfdWrite", argv[1], "value", 0, SAFE_MAX, &value))
    return NULL;
  v = (uint64_t)value;
  if (RETRY(write(fd, &v, sizeof v)) < 0) return num(env, -errno);
  return num(env, 0);
}

static napi_value js_eventfd_read(napi_env env, napi_callback_info info) {
  ARGS(1);
  int fd;
  uint64_t v = 0;
  if (arg_fd(env, "eventfdRead", argv[0], &fd)) return NULL;
  if (RETRY(read(fd, &v, sizeof v)) < 0) return num(env, -errno);
  return num(env, (double)v);
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  ARGS(1);
  int fd;
  if (arg_fd(env, "close", argv[0], &fd)) return NULL;
  /* Never retry close: on Linux the fd is gone even when it reports EINTR. */
  if (close(fd) < 0 && errno != EINTR) return num(env, -errno);
  return num(env, 0);
}

static napi_value js_fd_count(napi_env env, napi_callback_info info) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *de;
  int n = 0;
  if (!d) return throw_errno(env, "opendir", errno, "/proc/self/fd");
  errno = 0;
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] != '.') n++;
  if (errno) {
    int e = errno;
    closedir(d);
    return throw_errno(env, "readdir", e, "/proc/self/fd");
  }
  closedir(d);
  return num(env, n - 1); /* minus the directory's own fd */
}

static napi_value js_errno_name(napi_env env, napi_callback_info info) {
  ARGS(1);
  int64_t e;
  napi_value v;
  if (arg_int(env, "errnoName", argv[0], "errno", -4095, 4095, &e)) return NULL;
  NAPI(napi_create_string_utf8(env, errname((int)(e < 0 ? -e : e)), NAPI_AUTO_LENGTH, &v));
  return v;
}

/* ------------------------------------------------------- virtio-blk ring */

/* virtioBlkServe(window, state): vbr_serve (virtio_blk_ring.c) over the
 * Uint8Array window with the Float64Array state (VBR_* indices, BlkRing in
 * index.ts); returns the chains served and writes the out fields. */
static napi_value js_virtio_blk_serve(napi_env env, napi_callback_info info) {
  ARGS(2);
  static const double max[VBR_LAST_AVAIL] = {
    [VBR_WINDOW_IOVA] = 9007199254740991.0, [VBR_DESC] = 9007199254740991.0,
    [VBR_AVAIL] = 9007199254740991.0, [VBR_USED] = 9007199254740991.0,
    [VBR_SIZE] = 1024, [VBR_INDIRECT] = 1, [VBR_FD] = INT_MAX,
    [VBR_CAPACITY] = 9007199254740991.0 / 512, [VBR_MAX_WRITE] = 1 << 30,
  };
  napi_typedarray_type type;
  size_t len, n;
  void *data, *sdata;
  double *st;
  struct vbr r;
  int served;
  if (napi_get_typedarray_info(env, argv[0], &type, &len, &data, NULL, NULL) != napi_ok || type != napi_uint8_array)
    return type_error(env, "virtioBlkServe", "window must be a Uint8Array");
  if (napi_get_typedarray_info(env, argv[1], &type, &n, &sdata, NULL, NULL) != napi_ok || type != napi_float64_array || n < VBR_FIELDS)
    return type_error(env, "virtioBlkServe", "state must be a Float64Array of the BlkRing fields");
  st = sdata;
  for (int i = 0; i <= VBR_USED_IDX; i++) {
    double lim = i < VBR_LAST_AVAIL ? max[i] : 65535;
    if (!(st[i] >= 0 && st[i] <= lim) || st[i] != (double)(int64_t)st[i]) {
      char what[80];
      snprintf(what, sizeof what, "state field %d out of range: %g", i, st[i]);
      return range_error(env, "virtioBlkServe", what);
    }
  }
  memset(&r, 0, sizeof r);
  r.mem = data;
  r.mem_len = len;
  r.mem_iova = (uint64_t)st[VBR_WINDOW_IOVA];
  r.desc = (uint64_t)st[VBR_DESC];
  r.avail = (uint64_t)st[VBR_AVAIL];
  r.used = (uint64_t)st[VBR_USED];
  r.size = (uint32_t)st[VBR_SIZE];
  r.indirect = st[VBR_INDIRECT] != 0;
  r.fd = (int)st[VBR_FD];
  r.capacity = (uint64_t)st[VBR_CAPACITY];
  r.max_write = (uint64_t)st[VBR_MAX_WRITE];
  r.last_avail = (uint16_t)st[VBR_LAST_AVAIL];
  r.used_idx = (uint16_t)st[VBR_USED_IDX];
  served = vbr_serve(&r);
  st[VBR_LAST_AVAIL] = r.last_avail;
  st[VBR_USED_IDX] = r.used_idx;
  st[VBR_READS] = (double)r.reads;
  st[VBR_WRITES] = (double)r.writes;
  st[VBR_BYTES_READ] = (double)r.bytes_read;
  st[VBR_BYTES_WRITTEN] = (double)r.bytes_written;
  st[VBR_WRITE_NS] = (double)r.write_ns;
  return num(env, served);
}

/* ------------------------------------------------------------------- init */

static napi_value init(napi_env env, napi_value exports) {
  static const struct { const char *name; napi_callback fn; } fns[] = {
    { "listenUnix", js_listen_unix }, { "connectUnix", js_connect_unix },
    { "accept", js_accept }, { "socketpair", js_socketpair },
    { "recvmsg", js_recvmsg }, { "sendmsg", js_sendmsg }, { "channel", js_channel },
    { "watch", js_watch }, { "watchSet", js_watch_set }, { "watchClose", js_watch_close },
    { "watchPoll", js_watch_poll }, { "watchReads", js_watch_reads }, { "yieldCpu", js_yield_cpu }, { "virtioBlkServe", js_virtio_blk_serve },
    { "mmap", js_mmap }, { "munmap", js_munmap },
    { "fileSize", js_file_size }, { "fileStat", js_file_stat }, { "fallocate", js_fallocate },
    { "preadvFull", js_preadv_full }, { "pwritevFull", js_pwritev_full }, { "getSeals", js_get_seals }, { "addSeals", js_add_seals },
    { "ftruncate", js_ftruncate }, { "memfdCreate", js_memfd_create },
    { "eventfd", js_eventfd }, { "eventfdWrite", js_eventfd_write }, { "eventfdRead", js_eventfd_read },
    { "close", js_close }, { "fdCount", js_fd_count }, { "errnoName", js_errno_name },
  };
#define C(x) { #x, x }
  static const struct { const char *name; int value; } consts[] = {
    C(EAGAIN), C(EWOULDBLOCK), C(EINTR), C(EBADF), C(EINVAL), C(EPIPE), C(ECONNRESET),
    C(ENOTCONN), C(ECONNREFUSED), C(EADDRINUSE), C(ENOENT), C(EEXIST), C(EACCES), C(EPERM),
    C(EMFILE), C(ENFILE), C(ENOMEM), C(ENOBUFS), C(EMSGSIZE), C(ENAMETOOLONG), C(ENOTSOCK),
    C(EOVERFLOW), C(EFAULT),
    C(MSG_CTRUNC), C(PROT_READ), C(PROT_WRITE),
    C(FALLOC_FL_KEEP_SIZE), C(FALLOC_FL_PUNCH_HOLE), C(FALLOC_FL_ZERO_RANGE), C(EOPNOTSUPP),
    C(F_SEAL_SEAL), C(F_SEAL_SHRINK), C(F_SEAL_GROW), C(F_SEAL_WRITE), C(F_SEAL_FUTURE_WRITE),
    { "READABLE", UV_READABLE }, { "WRITABLE", UV_WRITABLE },
    C(POLL_HIT), C(POLL_MISS), C(POLL_CONTENDED), C(POLL_READ_SERVED), C(POLL_READ_UNSENT), C(SPIN_MAX_NS),
    { "READS_GATE", RR_GATE }, { "READS_SENT_BYTES", RR_SENT_BYTES }, { "READS_SHARED_FIELDS", RR_FIELDS }, { "READS_MAX_RANGES", RR_MAX_RANGES }, { "MAX_FDS", MAX_FDS },
  };
#undef C
  struct state *st;
  napi_value v;
  size_t i;
  for (i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    NAPI(napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &v));
    NAPI(napi_set_named_property(env, exports, fns[i].name, v));
  }
  for (i = 0; i < sizeof consts / sizeof consts[0]; i++) {
    NAPI(napi_create_int32(env, consts[i].value, &v));
    NAPI(napi_set_named_property(env, exports, consts[i].name, v));
  }
  st = calloc(1, sizeof *st);
  if (!st) return throw_errno(env, "init", ENOMEM, NULL);
  if (napi_set_instance_data(env, st, NULL, NULL) != napi_ok) {
    free(st);
    return throw_napi(env);
  }
  NAPI(napi_add_async_cleanup_hook(env, env_cleanup, st, &st->hook));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
