/*
 * responder.c: the honest minimal vfio-user floor for `npm run bench`.
 *
 * A single-threaded UNIX-socket server with blocking I/O that speaks just
 * enough vfio-user to be driven by bench/c/loadgen.c (and by QEMU's message
 * layout): VERSION, REGION_READ, REGION_WRITE (honouring NO_REPLY), and
 * DMA_MAP / DMA_UNMAP as a message floor (fds received and closed, sizes
 * checked, no table kept).  Every other command gets an ENOSYS error reply.  Messages are framed by the
 * header's msg_size; one read() may carry many messages (and partial ones);
 * all replies produced by one read() go out in one write().  Region accesses
 * are bounds-checked and served from small static arrays, which is the least
 * work any real server must do.
 *
 * usage: responder SOCKET_PATH
 * One client at a time; after a client leaves the next one is accepted.
 * SIGTERM/SIGINT: remove the socket and exit 0.
 *
 * Built by bench/socket.ts at run time with `cc -O2`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "this responder assumes a little-endian host"
#endif

#define HDR_SIZE 16u
#define ACCESS_SIZE 16u /* offset u64, region u32, count u32 */
#define MAX_XFER (1u << 20)
#define IN_CAP (MAX_XFER + HDR_SIZE + ACCESS_SIZE + 4096u)

#define CMD_VERSION 1
#define CMD_DMA_MAP 2
#define CMD_DMA_UNMAP 3
#define CMD_REGION_READ 9
#define CMD_REGION_WRITE 10

#define F_TYPE_MASK 0xfu
#define F_TYPE_COMMAND 0x0u
#define F_TYPE_REPLY 0x1u
#define F_NO_REPLY 0x10u
#define F_ERROR 0x20u

#define NREGIONS 9 /* PCI: BAR0-5, ROM, config, VGA */
#define REGION_SIZE 4096u
#define DMA_MAP_SIZE 32u   /* argsz, flags, offset, addr, size */
#define DMA_UNMAP_SIZE 24u /* argsz, flags, addr, size */
#define MAX_FDS 16

static const char version_json[] =
    "{\"capabilities\":{\"max_msg_fds\":16,\"max_data_xfer_size\":1048576}}";

static uint8_t regions[NREGIONS][REGION_SIZE];
static const char *sock_path;

static uint8_t *out;
static size_t out_len, out_cap;

static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static void die(const char *what) {
    fprintf(stderr, "responder: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* Reserve a reply of `size` bytes in the output buffer, fill its header,
 * return a pointer to the reply's payload. */
static uint8_t *reply(uint16_t id, uint16_t cmd, uint32_t size, uint32_t flags, uint32_t err) {
    if (out_len + size > out_cap) {
        size_t cap = out_cap ? out_cap : 65536;
        while (cap < out_len + size) cap *= 2;
        uint8_t *n = realloc(out, cap);
        if (!n) die("realloc");
        out = n;
        out_cap = cap;
    }
    uint8_t *h = out + out_len;
    out_len += size;
    wr16(h, id);
    wr16(h + 2, cmd);
    wr32(h + 4, size);
    wr32(h + 8, F_TYPE_REPLY | flags);
    wr32(h + 12, err);
    return h + HDR_SIZE;
}

static void error_reply(uint16_t id, uint16_t cmd, uint32_t flags, int err) {
    if (flags & F_NO_REPLY) return;
    reply(id, cmd, HDR_SIZE, F_ERROR, (uint32_t)err);
}

/* Validate an access struct; on success set *dst to the region bytes. */
static int check_access(const uint8_t *p, uint32_t plen, uint8_t **dst, uint32_t *count) {
    if (plen < ACCESS_SIZE) return EINVAL;
    uint64_t offset = rd64(p);
    uint32_t region = rd32(p + 8);
    uint32_t n = rd32(p + 12);
    if (region >= NREGIONS) return EINVAL;
    if (n > MAX_XFER) return EINVAL;
    if (offset > REGION_SIZE || n > REGION_SIZE - offset) return EINVAL;
    *dst = regions[region] + offset;
    *count = n;
    return 0;
}

static void handle(const uint8_t *m, uint32_t size) {
    uint16_t id = rd16(m);
    uint16_t cmd = rd16(m + 2);
    uint32_t flags = rd32(m + 8);
    const uint8_t *p = m + HDR_SIZE;
    uint32_t plen = size - HDR_SIZE;
    uint8_t *mem;
    uint32_t count;
    int err;

    if ((flags & F_TYPE_MASK) != F_TYPE_COMMAND) return; /* not expecting replies */

    switch (cmd) {
    case CMD_VERSION: {
        if (plen < 4) { error_reply(id, cmd, flags, EINVAL); return; }
        if (flags & F_NO_REPLY) return;
        uint8_t *r = reply(id, cmd, HDR_SIZE + 4 + sizeof version_json, 0, 0);
        wr16(r, 0); /* major */
        wr16(r + 2, 0); /* minor */
        memcpy(r + 4, version_json, sizeof version_json); /* NUL included */
        return;
    }
    case CMD_DMA_MAP:
        if (plen != DMA_MAP_SIZE || rd32(p) != DMA_MAP_SIZE) { error_reply(id, cmd, flags, EINVAL); return; }
        if (!(flags & F_NO_REPLY)) reply(id, cmd, HDR_SIZE, 0, 0);
        return;
    case CMD_DMA_UNMAP:
        if (plen != DMA_UNMAP_SIZE || rd32(p) != DMA_UNMAP_SIZE) { error_reply(id, cmd, flags, EINVAL); return; }
        if (!(flags & F_NO_REPLY)) memcpy(reply(id, cmd, HDR_SIZE + DMA_UNMAP_SIZE, 0, 0), p, DMA_UNMAP_SIZE);
        return;
    case CMD_REGION_READ:
        if ((err = check_access(p, plen, &mem, &count)) != 0 || plen != ACCESS_SIZE) {
            error_reply(id, cmd, flags, err ? err : EINVAL);
            return;
        }
        if (flags & F_NO_REPLY) return;
        {
            uint8_t *r = reply(id, cmd, HDR_SIZE + ACCESS_SIZE + count, 0, 0);
            memcpy(r, p, ACCESS_SIZE);
            memcpy(r + ACCESS_SIZE, mem, count);
        }
        return;
    case CMD_REGION_WRITE:
        if ((err = check_access(p, plen, &mem, &count)) != 0 || plen - ACCESS_SIZE != count) {
            error_reply(id, cmd, flags, err ? err : EINVAL);
            return;
        }
        memcpy(mem, p + ACCESS_SIZE, count);
        if (flags & F_NO_REPLY) return;
        memcpy(reply(id, cmd, HDR_SIZE + ACCESS_SIZE, 0, 0), p, ACCESS_SIZE);
        return;
    default:
        error_reply(id, cmd, flags, ENOSYS);
        return;
    }
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* read() that also takes the fds sent with the bytes and closes them (a
 * DMA_MAP's guest-memory fd): the least any server does with one. */
static ssize_t read_closing_fds(int fd, uint8_t *buf, size_t len) {
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)]; } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0) return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
            close(got);
        }
    }
    return n;
}

static void serve(int fd, uint8_t *in) {
    size_t have = 0;
    for (;;) {
        ssize_t n = read_closing_fds(fd, in + have, IN_CAP - have);
        if (n == 0) return;
        if (n < 0) {
            if (errno == EINTR) continue;
            return;
        }
        have += (size_t)n;
        size_t pos = 0;
        while (have - pos >= HDR_SIZE) {
            uint32_t size = rd32(in + pos + 4);
            if (size < HDR_SIZE || size > IN_CAP) {
                fprintf(stderr, "responder: bad msg_size %u, dropping client\n", size);
                out_len = 0;
                return;
            }
            if (have - pos < size) break;
            handle(in + pos, size);
            pos += size;
        }
        if (out_len) {
            if (write_all(fd, out, out_len) < 0) { out_len = 0; return; }
            out_len = 0;
        }
        if (pos) {
            memmove(in, in + pos, have - pos);
            have -= pos;
        }
    }
}

static void on_signal(int sig) {
    (void)sig;
    unlink(sock_path);
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SOCKET_PATH\n", argv[0]);
        return 2;
    }
    sock_path = argv[1];
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    for (unsigned r = 0; r < NREGIONS; r++)
        for (unsigned i = 0; i < REGION_SIZE; i++) regions[r][i] = (uint8_t)(r * 16 + i);

    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(sock_path) >= sizeof addr.sun_path) {
        fprintf(stderr, "responder: socket path too long\n");
        return 2;
    }
    strcpy(addr.sun_path, sock_path);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    unlink(sock_path);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    chmod(sock_path, 0600);
    if (listen(lfd, 4) < 0) die("listen");

    uint8_t *in = malloc(IN_CAP);
    if (!in) die("malloc");
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            die("accept");
        }
        serve(fd, in);
        close(fd);
    }
}
