/*
 * loadgen.c: the vfio-user load generator for `npm run bench`.
 *
 * Written in C so that the client is never the bottleneck.  Connects to a
 * vfio-user server's UNIX socket (retrying while it is not yet listening),
 * negotiates VERSION like QEMU does, then runs one mode and prints one JSON
 * line on stdout:
 *
 *   {"mode":"pingpong","n":N,"depth":1,"seconds":S,"ops_per_s":R,"cpu_us":C}
 *
 * (cpu_us: this process's user + system CPU time over the timed part.)
 *
 * usage: loadgen -s SOCKET -m MODE -n N [-d DEPTH] [-b PER_WRITE]
 *                [-r REGION:OFFSET:COUNT] [-w REGION:OFFSET:COUNT]
 *   pingpong  N REGION_READs, one in flight
 *   inflight  N REGION_READs, DEPTH in flight (default 32)
 *   posted    N REGION_WRITEs with NO_REPLY, then one REGION_READ whose reply
 *             proves (the server processes in order) that all were consumed
 *   dmamap    N DMA_MAP + DMA_UNMAP pairs of 4 KiB windows of one sealed
 *             memfd (the fd sent with every DMA_MAP, as QEMU does for a guest
 *             behind a vIOMMU), DEPTH pairs in flight (default 32; 1 = each
 *             reply awaited), after LIVE maps were made (-l, default 0); one
 *             op = one pair
 *   window    from the wall-clock time START (-S, CLOCK_REALTIME seconds; so
 *             that many loadgens start together), REGION_READs and
 *             acknowledged REGION_WRITEs in turn, DEPTH in flight; counts the
 *             replies that arrive in [START + WARM, START + WARM + SECONDS)
 *             (-W, -t) and prints them as n, with this process's CPU time
 *             in that window (getrusage) as cpu_s; -n is not used
 *   -l        live maps before the timed pairs (dmamap; at most 65535 - DEPTH)
 *   -b        at most this many requests per write() (default 1, as QEMU
 *             sends every message with its own sendmsg; max 256)
 *   -r        the read target   (default 7:0:4  = config space, 4 bytes at 0)
 *   -w        the write target  (default 2:0:1  = BAR2, 1 byte at 0)
 *
 * Every reply is checked (type REPLY, no ERROR, right command, known msg_id,
 * right size); any mismatch is fatal (exit 1).  Before the posted run one
 * ordinary REGION_WRITE with the same target must succeed, since a rejected
 * posted write would otherwise go unnoticed.
 *
 * Built by bench/socket.ts at run time with `cc -O2`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "this load generator assumes a little-endian host"
#endif

#define HDR_SIZE 16u
#define ACCESS_SIZE 16u
#define MAX_XFER (1u << 20)
#define IN_CAP (4u << 20)

#define CMD_VERSION 1
#define CMD_DMA_MAP 2
#define CMD_DMA_UNMAP 3
#define CMD_REGION_READ 9
#define CMD_REGION_WRITE 10

#define F_TYPE_MASK 0xfu
#define F_TYPE_REPLY 0x1u
#define F_NO_REPLY 0x10u
#define F_ERROR 0x20u

#define POSTED_BATCH 256u

#define PAGE 4096u
#define DMA_MAP_SIZE 32u   /* argsz, flags, offset, addr, size */
#define DMA_UNMAP_SIZE 24u /* argsz, flags, addr, size */
#define MEMFD_PAGES 4096u
#define LIVE_IOVA (1ull << 32)  /* live window i at LIVE_IOVA + i pages */
#define CHURN_IOVA (1ull << 31) /* in-flight slot k at CHURN_IOVA + k pages */
#define MAX_MAPS 65535u
/* Maps sent before their replies are read while filling: each fd-carrying
 * message is its own skb, so many more would fill both socket buffers. */
#define FILL_BATCH 64u

/* What QEMU 11.1 offers (see docs/ARCHITECTURE.md). */
static const char version_json[] =
    "{\"capabilities\":{\"max_msg_fds\":16,\"max_data_xfer_size\":1048576,"
    "\"pgsizes\":4096,\"max_dma_maps\":65535,\"write_multiple\":true}}";

struct target { uint32_t region; uint64_t offset; uint32_t count; };

static int fd = -1;
static uint8_t *in;
static size_t in_have;
static uint8_t pending[65536];  /* msg_ids awaiting a reply */
static uint16_t expect_cmd[65536];
static uint32_t expect_size[65536];
static uint16_t next_id = 1;
static uint16_t last_done[4096]; /* dmamap: msg_ids of the replies recv_replies just took */
static unsigned last_done_n;

static void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static void fail(const char *fmt, const char *detail) {
    fprintf(stderr, "loadgen: ");
    fprintf(stderr, fmt, detail);
    fprintf(stderr, "\n");
    exit(1);
}

static void sysfail(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* This process's CPU time (user + system) in µs. */
static double cpu_us(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* The timed part of a run: its wall clock (returned) and its CPU time. */
static double cpu_at_start, cpu_spent;
static double start_timing(void) {
    cpu_at_start = cpu_us();
    return now();
}
static double stop_timing(void) {
    double t = now();
    cpu_spent = cpu_us() - cpu_at_start;
    return t;
}

static void write_all(const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            sysfail("write");
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Send `count` messages of `one` bytes each, at most `per_write` per write(). */
static void send_chunked(const uint8_t *p, size_t one, unsigned long count, unsigned long per_write) {
    while (count) {
        unsigned long k = count < per_write ? count : per_write;
        write_all(p, one * k);
        p += one * k;
        count -= k;
    }
}

static void hdr(uint8_t *m, uint16_t id, uint16_t cmd, uint32_t size, uint32_t flags) {
    wr16(m, id);
    wr16(m + 2, cmd);
    wr32(m + 4, size);
    wr32(m + 8, flags);
    wr32(m + 12, 0);
}

/* Build a REGION_READ or REGION_WRITE into m; returns its size. */
static uint32_t build_access(uint8_t *m, uint16_t cmd, const struct target *t, uint32_t flags) {
    uint32_t size = HDR_SIZE + ACCESS_SIZE + (cmd == CMD_REGION_WRITE ? t->count : 0);
    hdr(m, 0, cmd, size, flags);
    wr64(m + HDR_SIZE, t->offset);
    wr32(m + HDR_SIZE + 8, t->region);
    wr32(m + HDR_SIZE + 12, t->count);
    if (cmd == CMD_REGION_WRITE)
        for (uint32_t i = 0; i < t->count; i++) m[HDR_SIZE + ACCESS_SIZE + i] = (uint8_t)(0x5a ^ i);
    return size;
}

/* Give message m a fresh msg_id and remember what its reply must look like. */
static void stamp(uint8_t *m, uint32_t reply_size) {
    uint16_t id = next_id++;
    if (pending[id]) fail("%s", "more than 65535 requests outstanding");
    wr16(m, id);
    pending[id] = 1;
    expect_cmd[id] = rd16(m + 2);
    expect_size[id] = reply_size;
}

/* Blocking read once; consume every complete reply; return how many. */
static unsigned recv_replies(void) {
    last_done_n = 0;
    for (;;) {
        ssize_t n = read(fd, in + in_have, IN_CAP - in_have);
        if (n == 0) fail("%s", "server closed the connection");
        if (n < 0) {
            if (errno == EINTR) continue;
            sysfail("read");
        }
        in_have += (size_t)n;
        break;
    }
    unsigned got = 0;
    size_t pos = 0;
    while (in_have - pos >= HDR_SIZE) {
        const uint8_t *m = in + pos;
        uint16_t id = rd16(m);
        uint16_t cmd = rd16(m + 2);
        uint32_t size = rd32(m + 4);
        uint32_t flags = rd32(m + 8);
        if (size < HDR_SIZE || size > IN_CAP) fail("%s", "reply with an impossible msg_size");
        if (in_have - pos < size) break;
        if ((flags & F_TYPE_MASK) != F_TYPE_REPLY) fail("%s", "server sent a non-reply message");
        if (flags & F_ERROR) {
            char b[96];
            snprintf(b, sizeof b, "command %u msg_id %u failed with errno %u", cmd, id, rd32(m + 12));
            fail("error reply: %s", b);
        }
        if (!pending[id]) fail("%s", "reply to an unknown msg_id");
        if (cmd != expect_cmd[id]) fail("%s", "reply with the wrong command");
        if (expect_size[id] && size != expect_size[id]) {
            char b[96];
            snprintf(b, sizeof b, "command %u: got %u bytes, expected %u", cmd, size, expect_size[id]);
            fail("reply of the wrong size: %s", b);
        }
        pending[id] = 0;
        if (last_done_n < sizeof last_done / sizeof last_done[0]) last_done[last_done_n++] = id;
        got++;
        pos += size;
    }
    if (pos) {
        memmove(in, in + pos, in_have - pos);
        in_have -= pos;
    }
    return got;
}

static void wait_replies(unsigned n) {
    while (n) {
        unsigned g = recv_replies();
        n = g >= n ? 0 : n - g;
    }
}

static void connect_retry(const char *path) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) fail("%s", "socket path too long");
    strcpy(addr.sun_path, path);
    double deadline = now() + 20.0;
    for (;;) {
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) sysfail("socket");
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) return;
        int e = errno;
        close(fd);
        if ((e != ENOENT && e != ECONNREFUSED && e != EAGAIN) || now() > deadline) {
            errno = e;
            sysfail("connect");
        }
        usleep(10000);
    }
}

static void negotiate(void) {
    uint8_t m[HDR_SIZE + 4 + sizeof version_json];
    hdr(m, 0, CMD_VERSION, sizeof m, 0);
    wr16(m + HDR_SIZE, 0);     /* major */
    wr16(m + HDR_SIZE + 2, 0); /* minor */
    memcpy(m + HDR_SIZE + 4, version_json, sizeof version_json);
    stamp(m, 0);
    write_all(m, sizeof m);
    wait_replies(1);
}

static int parse_target(const char *s, struct target *t) {
    char *e;
    errno = 0;
    unsigned long long r = strtoull(s, &e, 0);
    if (*e != ':') return -1;
    unsigned long long o = strtoull(e + 1, &e, 0);
    if (*e != ':') return -1;
    unsigned long long c = strtoull(e + 1, &e, 0);
    if (*e != '\0' || errno) return -1;
    if (r > 0xffffffffULL || c == 0 || c > MAX_XFER) return -1;
    t->region = (uint32_t)r;
    t->offset = (uint64_t)o;
    t->count = (uint32_t)c;
    return 0;
}

/* sendmsg of one whole message with one fd. */
static void send_with_fd(const uint8_t *m, size_t n, int passfd) {
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int))]; } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {.iov_base = (void *)m, .iov_len = n};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &passfd, sizeof passfd);
    for (;;) {
        ssize_t w = sendmsg(fd, &mh, 0);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) sysfail("sendmsg");
        if ((size_t)w != n) fail("%s", "short sendmsg of a DMA_MAP");
        return;
    }
}

/* A DMA_MAP (READ|WRITE) of the 4 KiB window at file page `page`; returns its msg_id. */
static uint16_t send_map(int memfd, uint64_t iova, uint32_t page) {
    uint8_t m[HDR_SIZE + DMA_MAP_SIZE];
    hdr(m, 0, CMD_DMA_MAP, sizeof m, 0);
    wr32(m + HDR_SIZE, DMA_MAP_SIZE);
    wr32(m + HDR_SIZE + 4, 3);
    wr64(m + HDR_SIZE + 8, (uint64_t)page * PAGE);
    wr64(m + HDR_SIZE + 16, iova);
    wr64(m + HDR_SIZE + 24, PAGE);
    stamp(m, HDR_SIZE);
    send_with_fd(m, sizeof m, memfd);
    return rd16(m);
}

static uint16_t send_unmap(uint64_t iova) {
    uint8_t m[HDR_SIZE + DMA_UNMAP_SIZE];
    hdr(m, 0, CMD_DMA_UNMAP, sizeof m, 0);
    wr32(m + HDR_SIZE, DMA_UNMAP_SIZE);
    wr32(m + HDR_SIZE + 4, 0);
    wr64(m + HDR_SIZE + 8, iova);
    wr64(m + HDR_SIZE + 16, PAGE);
    stamp(m, HDR_SIZE + DMA_UNMAP_SIZE);
    write_all(m, sizeof m);
    return rd16(m);
}

/* A guest-RAM-like memfd: sealed against shrinking and growing, as QEMU's. */
static int sealed_memfd(void) {
    int m = memfd_create("loadgen-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (m < 0) sysfail("memfd_create");
    if (ftruncate(m, (off_t)MEMFD_PAGES * PAGE) < 0) sysfail("ftruncate");
    if (fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) sysfail("F_ADD_SEALS");
    return m;
}

/* dmamap: LIVE maps pipelined, then N pairs with DEPTH in flight; returns seconds. */
static double run_dmamap(unsigned long n, unsigned long depth, unsigned long live) {
    int memfd = sealed_memfd();
    for (unsigned long i = 0; i < live;) {
        unsigned long k = live - i < FILL_BATCH ? live - i : FILL_BATCH;
        for (unsigned long j = 0; j < k; j++) send_map(memfd, LIVE_IOVA + (uint64_t)(i + j) * PAGE, (uint32_t)((i + j) % MEMFD_PAGES));
        wait_replies((unsigned)k);
        i += k;
    }
    /* slot_of[msg_id]: which in-flight slot a request belongs to; is_map: its kind. */
    static uint16_t slot_of[65536];
    static uint8_t is_map[65536];
    unsigned long started = 0, done = 0;
    double t0 = start_timing();
    for (unsigned long k = 0; k < depth && started < n; k++, started++) {
        uint16_t id = send_map(memfd, CHURN_IOVA + k * PAGE, (uint32_t)(k % MEMFD_PAGES));
        slot_of[id] = (uint16_t)k;
        is_map[id] = 1;
    }
    while (done < n) {
        recv_replies();
        unsigned got = last_done_n;
        uint16_t ids[sizeof last_done / sizeof last_done[0]];
        memcpy(ids, last_done, got * sizeof ids[0]);
        for (unsigned i = 0; i < got; i++) {
            uint16_t id = ids[i];
            uint16_t k = slot_of[id];
            if (is_map[id]) {
                uint16_t u = send_unmap(CHURN_IOVA + (uint64_t)k * PAGE);
                slot_of[u] = k;
                is_map[u] = 0;
            } else {
                done++;
                if (started < n) {
                    uint16_t m = send_map(memfd, CHURN_IOVA + (uint64_t)k * PAGE, (uint32_t)(k % MEMFD_PAGES));
                    slot_of[m] = k;
                    is_map[m] = 1;
                    started++;
                }
            }
        }
    }
    double secs = stop_timing() - t0;
    close(memfd);
    return secs;
}

static double cpu_seconds(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0) sysfail("getrusage");
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* window: see the top. Returns the replies counted; *cpu gets the CPU time in the window. */
static unsigned long run_window(unsigned long depth, const struct target *rt, const struct target *wt, double start,
                                double warm, double secs, double *cpu) {
    uint32_t rsz = HDR_SIZE + ACCESS_SIZE, wsz = HDR_SIZE + ACCESS_SIZE + wt->count;
    uint8_t rd[HDR_SIZE + ACCESS_SIZE];
    uint8_t *wr = malloc(wsz);
    if (!wr) sysfail("malloc");
    build_access(rd, CMD_REGION_READ, rt, 0);
    build_access(wr, CMD_REGION_WRITE, wt, 0);
    const uint32_t read_reply = HDR_SIZE + ACCESS_SIZE + rt->count, write_reply = HDR_SIZE + ACCESS_SIZE;
    unsigned long sent = 0, done = 0, counted = 0;
    /* Sleep until START on the shared wall clock, then measure on the monotonic one. */
    struct timespec at = {.tv_sec = (time_t)start, .tv_nsec = (long)((start - (double)(time_t)start) * 1e9)};
    while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &at, NULL) == EINTR) {}
    struct timespec rnow;
    clock_gettime(CLOCK_REALTIME, &rnow);
    double late = (double)rnow.tv_sec + (double)rnow.tv_nsec * 1e-9 - start; /* already past START */
    double t0 = now() - (late > 0 ? late : 0);
    double ws = t0 + warm, we = ws + secs, cpu0 = 0;
    int in_window = 0;
    for (unsigned long i = 0; i < depth; i++, sent++) {
        if (sent & 1) { stamp(wr, write_reply); write_all(wr, wsz); }
        else { stamp(rd, read_reply); write_all(rd, rsz); }
    }
    for (;;) {
        unsigned got = recv_replies();
        done += got;
        double t = now();
        if (!in_window && t >= ws) { in_window = 1; cpu0 = cpu_seconds(); }
        if (in_window == 1 && t < we) counted += got;
        if (in_window == 1 && t >= we) { in_window = 2; *cpu = cpu_seconds() - cpu0; }
        if (in_window == 2) {
            if (done == sent) break;
            continue;
        }
        for (unsigned i = 0; i < got; i++, sent++) {
            if (sent & 1) { stamp(wr, write_reply); write_all(wr, wsz); }
            else { stamp(rd, read_reply); write_all(rd, rsz); }
        }
    }
    free(wr);
    return counted;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen -s SOCKET -m pingpong|inflight|posted|dmamap -n N [-d DEPTH] [-b PER_WRITE]\n"
            "               [-r REGION:OFFSET:COUNT] [-w REGION:OFFSET:COUNT] [-l LIVE]\n"
            "       loadgen -s SOCKET -m window -S START -t SECONDS [-W WARM] [-d DEPTH] [-r ...] [-w ...]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *sock = NULL, *mode = NULL;
    unsigned long n = 0, depth = 32, batch_max = 1, live = 0;
    double start = 0, warm = 0.5, window = 0;
    struct target rt = {7, 0, 4}, wt = {2, 0, 1};
    int c;
    while ((c = getopt(argc, argv, "s:m:n:d:b:r:w:l:S:W:t:")) != -1) {
        switch (c) {
        case 's': sock = optarg; break;
        case 'm': mode = optarg; break;
        case 'n': n = strtoul(optarg, NULL, 0); break;
        case 'd': depth = strtoul(optarg, NULL, 0); break;
        case 'b': batch_max = strtoul(optarg, NULL, 0); break;
        case 'l': live = strtoul(optarg, NULL, 0); break;
        case 'r': if (parse_target(optarg, &rt)) usage(); break;
        case 'w': if (parse_target(optarg, &wt)) usage(); break;
        case 'S': start = strtod(optarg, NULL); break;
        case 'W': warm = strtod(optarg, NULL); break;
        case 't': window = strtod(optarg, NULL); break;
        default: usage();
        }
    }
    int windowed = mode && strcmp(mode, "window") == 0;
    if (windowed && !(start > 0 && window > 0 && window <= 3600 && warm >= 0 && warm <= 60)) usage();
    if (!sock || !mode || (n == 0 && !windowed) || depth == 0 || depth > 4096 || batch_max == 0 || batch_max > POSTED_BATCH ||
        live + depth > MAX_MAPS)
        usage();
    signal(SIGPIPE, SIG_IGN);
    in = malloc(IN_CAP);
    if (!in) sysfail("malloc");

    connect_retry(sock);
    negotiate();

    if (windowed) {
        double cpu = 0;
        unsigned long got = run_window(depth, &rt, &wt, start, warm, window, &cpu);
        printf("{\"mode\":\"window\",\"n\":%lu,\"depth\":%lu,\"seconds\":%.6f,\"ops_per_s\":%.1f,\"cpu_s\":%.6f}\n", got,
               depth, window, (double)got / window, cpu);
        close(fd);
        return 0;
    }
    const uint32_t read_reply = HDR_SIZE + ACCESS_SIZE + rt.count;
    double t0, t1;
    if (strcmp(mode, "pingpong") == 0) {
        depth = 1;
        uint8_t m[HDR_SIZE + ACCESS_SIZE];
        uint32_t sz = build_access(m, CMD_REGION_READ, &rt, 0);
        t0 = start_timing();
        for (unsigned long i = 0; i < n; i++) {
            stamp(m, read_reply);
            write_all(m, sz);
            wait_replies(1);
        }
        t1 = stop_timing();
    } else if (strcmp(mode, "inflight") == 0) {
        uint32_t one = HDR_SIZE + ACCESS_SIZE;
        uint8_t *batch = malloc((size_t)one * depth);
        if (!batch) sysfail("malloc");
        for (unsigned long i = 0; i < depth; i++) build_access(batch + i * one, CMD_REGION_READ, &rt, 0);
        unsigned long sent = 0, done = 0;
        t0 = start_timing();
        unsigned long first = depth < n ? depth : n;
        for (unsigned long i = 0; i < first; i++) stamp(batch + i * one, read_reply);
        send_chunked(batch, one, first, batch_max);
        sent = first;
        while (done < n) {
            unsigned got = recv_replies();
            done += got;
            unsigned long more = n - sent < got ? n - sent : got;
            if (more) {
                for (unsigned long i = 0; i < more; i++) stamp(batch + i * one, read_reply);
                send_chunked(batch, one, more, batch_max);
                sent += more;
            }
        }
        t1 = stop_timing();
        free(batch);
    } else if (strcmp(mode, "posted") == 0) {
        depth = 0;
        /* The same write, acknowledged, must succeed first. */
        uint8_t *probe = malloc(HDR_SIZE + ACCESS_SIZE + wt.count);
        if (!probe) sysfail("malloc");
        uint32_t psz = build_access(probe, CMD_REGION_WRITE, &wt, 0);
        stamp(probe, HDR_SIZE + ACCESS_SIZE);
        write_all(probe, psz);
        wait_replies(1);
        free(probe);

        uint32_t one = HDR_SIZE + ACCESS_SIZE + wt.count;
        uint8_t *batch = malloc((size_t)one * POSTED_BATCH);
        if (!batch) sysfail("malloc");
        for (unsigned i = 0; i < POSTED_BATCH; i++)
            build_access(batch + (size_t)i * one, CMD_REGION_WRITE, &wt, F_NO_REPLY);
        uint8_t sync[HDR_SIZE + ACCESS_SIZE];
        uint32_t ssz = build_access(sync, CMD_REGION_READ, &rt, 0);
        t0 = start_timing();
        unsigned long left = n;
        while (left) {
            unsigned k = left < POSTED_BATCH ? (unsigned)left : POSTED_BATCH;
            for (unsigned i = 0; i < k; i++) wr16(batch + (size_t)i * one, next_id++);
            send_chunked(batch, one, k, batch_max);
            left -= k;
        }
        stamp(sync, read_reply);
        write_all(sync, ssz);
        wait_replies(1);
        t1 = stop_timing();
        free(batch);
    } else if (strcmp(mode, "dmamap") == 0) {
        t0 = 0;
        t1 = run_dmamap(n, depth, live);
    } else {
        usage();
        return 2;
    }
    double secs = t1 - t0;
    printf("{\"mode\":\"%s\",\"n\":%lu,\"depth\":%lu,\"seconds\":%.6f,\"ops_per_s\":%.1f,\"cpu_us\":%.0f}\n", mode, n,
           depth, secs, (double)n / secs, cpu_spent);
    close(fd);
    return 0;
}
