/*
 * loadgen: a bounded TLS 1.3 load generator for the keyless benchmarks.
 *
 * It keeps N connections in flight on one thread (non-blocking sockets on
 * epoll). Each connection does a full TLS 1.3 handshake (x25519 only, no
 * resumption: a new SSL per connection, tickets refused, no session cache;
 * with --resume PCT, PCT of every 100 connections resume the newest ticket
 * received instead, issue 11),
 * optionally sends one small HTTP/1.1 request and reads the response to EOF,
 * then closes. It stops by itself after --duration seconds or --count
 * connections, whichever comes first, and prints one summary line of
 * key=value pairs that run-bench.sh parses.
 *
 * Modes:
 *   default    closed loop at --concurrency; with --rate R, an open-loop
 *              schedule of R connection starts per second (still capped at
 *              --concurrency in flight) for the latency-at-load figure.
 *   --idle N   open N connections, finish their handshakes, print "READY"
 *              and hold them open for --hold seconds (RSS per idle conn).
 *
 * This is a test tool: it links libssl (the product never does) and does no
 * certificate verification, on purpose, to load the server and not itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define LG_MAX_CONC 65536
#define LG_MAX_SAMPLES (64u * 1024 * 1024)
#define LG_IO_BUF 65536

enum lg_state { LG_FREE = 0, LG_CONNECTING, LG_HANDSHAKE, LG_WRITE_REQ, LG_READ_RESP, LG_IDLE };

struct lg_conn {
    enum lg_state state;
    int fd;
    SSL *ssl;
    uint64_t t_start;   /* ns, when connect() was issued */
    uint64_t t_hs_done; /* ns, when SSL_connect returned 1 */
    size_t req_off;
};

struct lg_opts {
    const char *host;
    const char *port;
    const char *sni;
    const char *path; /* NULL: handshake only */
    const char *sigalgs;
    const char *ciphersuites;
    unsigned concurrency;
    double duration;
    uint64_t count;
    double rate;
    unsigned idle;
    double hold;
    double conn_timeout;
    unsigned resume; /* percent of connections that offer the newest ticket (needs --request) */
};

struct lg_stats {
    uint64_t started, handshakes, completed, errors, timeouts;
    uint64_t err_connect, err_handshake, err_io, err_http;
    uint64_t bytes_in;
    uint64_t tickets;
    uint64_t resumed; /* handshakes the server resumed */
    uint32_t *lat_us; /* handshake latency per successful handshake */
    size_t lat_n, lat_cap;
};

static struct lg_opts opts;
static struct lg_stats st;
static struct lg_conn *conns;
static struct sockaddr_storage peer;
static socklen_t peer_len;
static SSL_CTX *ctx;
static int epfd = -1;
static char request[1024];
static size_t request_len;
static unsigned in_flight;
static unsigned n_idle; /* connections parked in LG_IDLE */
static volatile sig_atomic_t stop_flag;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen --host H --port P [--sni NAME] [--concurrency N] [--duration S] [--count N]\n"
            "               [--rate R] [--request PATH] [--sigalgs LIST] [--ciphersuites LIST] [--idle N --hold S]\n"
            "               [--conn-timeout S] [--resume PCT]\n"
            "Full TLS 1.3 handshakes (x25519, no resumption, no verification). Bounded: stops after\n"
            "--duration (default 10 s) or --count connections. Prints one 'result ...' line.\n");
}

/* The newest session a server handed us (--resume), offered by the connections that resume. */
static SSL_SESSION *saved_session;

/* A session the server hands us (NewSessionTicket) is counted; kept only with --resume. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    SSL_SESSION *copy;
    st.tickets++;
    if (opts.resume == 0)
        return 0;
    /* A copy: libssl marks the connection's own session not resumable when that connection
       ends without a close_notify exchange (ssl_clear_bad_session), which would turn every
       later offer into a full handshake. */
    copy = SSL_SESSION_dup(sess);
    if (copy != NULL) {
        SSL_SESSION_free(saved_session);
        saved_session = copy;
    }
    return 0;
}

static void lat_push(uint32_t us)
{
    if (st.lat_n == st.lat_cap) {
        size_t cap = st.lat_cap ? st.lat_cap * 2 : 65536;
        uint32_t *p;
        if (cap > LG_MAX_SAMPLES)
            return; /* keep counting, stop sampling: the bound on memory */
        p = realloc(st.lat_us, cap * sizeof(*p));
        if (p == NULL)
            return;
        st.lat_us = p;
        st.lat_cap = cap;
    }
    st.lat_us[st.lat_n++] = us;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static double pct(double p)
{
    size_t i;
    if (st.lat_n == 0)
        return 0;
    i = (size_t)(p / 100.0 * (double)(st.lat_n - 1) + 0.5);
    return (double)st.lat_us[i] / 1000.0;
}

static void conn_close(struct lg_conn *c, int failed)
{
    if (c->ssl != NULL) {
        /* A clean close_notify when the handshake finished, so that servers see an orderly end. */
        if (!failed && SSL_is_init_finished(c->ssl))
            (void)SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (c->state == LG_IDLE && n_idle > 0)
        n_idle--;
    if (c->state != LG_FREE && in_flight > 0)
        in_flight--;
    c->state = LG_FREE;
}

static void conn_fail(struct lg_conn *c, uint64_t *counter)
{
    (*counter)++;
    st.errors++;
    ERR_clear_error();
    conn_close(c, 1);
}

static int conn_start(struct lg_conn *c)
{
    struct epoll_event ev;
    int fd, one = 1;

    fd = socket(peer.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->t_start = now_ns();
    c->state = LG_CONNECTING;
    in_flight++;
    st.started++;
    if (connect(fd, (struct sockaddr *)&peer, peer_len) != 0 && errno != EINPROGRESS) {
        conn_fail(c, &st.err_connect);
        return 0;
    }
    ev.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP;
    ev.data.ptr = c;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        conn_fail(c, &st.err_connect);
        return 0;
    }
    return 0;
}

/* Drive one connection as far as it goes without blocking. */
static void conn_drive(struct lg_conn *c)
{
    char buf[LG_IO_BUF];
    int r, e;

    if (c->state == LG_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            conn_fail(c, &st.err_connect);
            return;
        }
        c->ssl = SSL_new(ctx);
        if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
            conn_fail(c, &st.err_handshake);
            return;
        }
        if (opts.sni != NULL)
            SSL_set_tlsext_host_name(c->ssl, opts.sni);
        /* A fixed pattern, not a random draw: PCT of every 100 starts offer the ticket. */
        if (opts.resume > 0 && saved_session != NULL && st.started % 100 < opts.resume &&
            SSL_set_session(c->ssl, saved_session) != 1) {
            conn_fail(c, &st.err_handshake);
            return;
        }
        SSL_set_connect_state(c->ssl);
        c->state = LG_HANDSHAKE;
    }
    if (c->state == LG_HANDSHAKE) {
        r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            conn_fail(c, &st.err_handshake);
            return;
        }
        c->t_hs_done = now_ns();
        st.handshakes++;
        if (SSL_session_reused(c->ssl))
            st.resumed++;
        lat_push((uint32_t)((c->t_hs_done - c->t_start) / 1000u));
        if (opts.idle) {
            c->state = LG_IDLE;
            n_idle++;
            return;
        }
        if (opts.path == NULL) {
            st.completed++;
            conn_close(c, 0);
            return;
        }
        c->state = LG_WRITE_REQ;
    }
    if (c->state == LG_WRITE_REQ) {
        while (c->req_off < request_len) {
            r = SSL_write(c->ssl, request + c->req_off, (int)(request_len - c->req_off));
            if (r <= 0) {
                e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                    return;
                conn_fail(c, &st.err_io);
                return;
            }
            c->req_off += (size_t)r;
        }
        c->state = LG_READ_RESP;
        c->req_off = 0; /* reused: bytes of response seen */
    }
    if (c->state == LG_READ_RESP) {
        for (;;) {
            r = SSL_read(c->ssl, buf, sizeof(buf));
            if (r > 0) {
                if (c->req_off == 0 && (r < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[9] != '2')) {
                    conn_fail(c, &st.err_http);
                    return;
                }
                c->req_off += (size_t)r;
                st.bytes_in += (uint64_t)r;
                continue;
            }
            e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            /* EOF (close_notify or TCP FIN after a full response) ends the exchange. */
            if ((e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL) && c->req_off > 0) {
                st.completed++;
                ERR_clear_error();
                conn_close(c, 1);
                return;
            }
            conn_fail(c, &st.err_io);
            return;
        }
    }
    if (c->state == LG_IDLE) {
        /* An idle connection that gets readable: tickets are fine, EOF means the server dropped it. */
        r = SSL_read(c->ssl, buf, sizeof(buf));
        if (r <= 0) {
            e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            conn_fail(c, &st.err_io);
        }
    }
}

static int resolve(void)
{
    struct addrinfo hints, *res = NULL;
    int r;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    r = getaddrinfo(opts.host, opts.port, &hints, &res);
    if (r != 0 || res == NULL) {
        fprintf(stderr, "loadgen: cannot resolve %s:%s: %s\n", opts.host, opts.port, gai_strerror(r));
        return -1;
    }
    memcpy(&peer, res->ai_addr, res->ai_addrlen);
    peer_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int make_ctx(void)
{
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return -1;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 || SSL_CTX_set1_groups_list(ctx, "X25519") != 1)
        return -1;
    if (opts.sigalgs != NULL && SSL_CTX_set1_sigalgs_list(ctx, opts.sigalgs) != 1)
        return -1;
    if (opts.ciphersuites != NULL && SSL_CTX_set_ciphersuites(ctx, opts.ciphersuites) != 1)
        return -1;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (opts.resume == 0)
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    /* No client session cache: every connection is a full handshake. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    return 0;
}

static int parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"sni", required_argument, NULL, 's'},
        {"concurrency", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"count", required_argument, NULL, 'n'},
        {"rate", required_argument, NULL, 'r'},
        {"request", required_argument, NULL, 'q'},
        {"sigalgs", required_argument, NULL, 'g'},
        {"idle", required_argument, NULL, 'i'},
        {"hold", required_argument, NULL, 'h'},
        {"conn-timeout", required_argument, NULL, 't'},
        {"ciphersuites", required_argument, NULL, 'C'},
        {"resume", required_argument, NULL, 'R'},

        {"help", no_argument, NULL, '?'},
        {NULL, 0, NULL, 0},
    };
    int ch;

    opts.host = "127.0.0.1";
    opts.concurrency = 32;
    opts.duration = 10;
    opts.hold = 5;
    opts.conn_timeout = 10;
    while ((ch = getopt_long(argc, argv, "c:d:n:r:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'H':
            opts.host = optarg;
            break;
        case 'p':
            opts.port = optarg;
            break;
        case 's':
            opts.sni = optarg;
            break;
        case 'c':
            opts.concurrency = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'd':
            opts.duration = strtod(optarg, NULL);
            break;
        case 'n':
            opts.count = strtoull(optarg, NULL, 10);
            break;
        case 'r':
            opts.rate = strtod(optarg, NULL);
            break;
        case 'q':
            opts.path = optarg;
            break;
        case 'g':
            opts.sigalgs = optarg;
            break;
        case 'i':
            opts.idle = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'h':
            opts.hold = strtod(optarg, NULL);
            break;
        case 't':
            opts.conn_timeout = strtod(optarg, NULL);
            break;
        case 'C':
            opts.ciphersuites = optarg;
            break;
        case 'R':
            opts.resume = (unsigned)strtoul(optarg, NULL, 10);
            break;
        default:
            usage();
            return -1;
        }
    }
    if (opts.port == NULL || opts.concurrency == 0 || opts.concurrency > LG_MAX_CONC || !(opts.duration > 0) ||
        opts.duration > 3600 || opts.rate < 0 || opts.idle > LG_MAX_CONC || opts.hold < 0 || opts.hold > 3600 ||
        !(opts.conn_timeout > 0)) {
        usage();
        return -1;
    }
    if (opts.resume > 100 || (opts.resume > 0 && (opts.path == NULL || opts.idle))) {
        /* TLS 1.3 tickets come after the handshake: only a connection that reads gets them. */
        fprintf(stderr, "loadgen: --resume takes 0..100 and needs --request (tickets are read with the response)\n");
        return -1;
    }
    if (opts.path != NULL && (opts.path[0] != '/' || strlen(opts.path) > 512)) {
        fprintf(stderr, "loadgen: --request takes an absolute path of at most 512 bytes\n");
        return -1;
    }
    return 0;
}

/* Raise RLIMIT_NOFILE to what the connection count needs, within the hard limit. */
static void raise_nofile(unsigned need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < need + 64) {
        rl.rlim_cur = need + 64 < rl.rlim_max ? need + 64 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    struct epoll_event evs[256];
    unsigned slots, i;
    uint64_t t0, t_end, t_last_check = 0;
    double elapsed, next_start_ns;

    if (parse_args(argc, argv) != 0)
        return 2;
    if (resolve() != 0 || make_ctx() != 0) {
        ERR_print_errors_fp(stderr);
        return 2;
    }
    if (opts.path != NULL) {
        int n = snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                         opts.path, opts.sni ? opts.sni : opts.host);
        if (n < 0 || (size_t)n >= sizeof(request))
            return 2;
        request_len = (size_t)n;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    slots = opts.idle ? opts.idle : opts.concurrency;
    raise_nofile(slots);
    conns = calloc(slots, sizeof(*conns));
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (conns == NULL || epfd < 0)
        return 2;
    for (i = 0; i < slots; i++)
        conns[i].fd = -1;

    t0 = now_ns();
    /* In idle mode the duration bounds the ramp-up; the hold comes after. */
    t_end = t0 + (uint64_t)(opts.duration * 1e9);
    next_start_ns = (double)t0;

    while (!stop_flag) {
        uint64_t now = now_ns();
        int n, timeout_ms = 10;

        if (now >= t_end)
            break;
        /* Start new connections: closed loop fills every free slot; open loop follows the schedule. */
        for (i = 0; i < slots && !stop_flag; i++) {
            if (conns[i].state != LG_FREE)
                continue;
            if (opts.idle && st.started >= opts.idle)
                break;
            /* Idle mode ramps up with at most --concurrency handshakes at a time, like the other modes. */
            if (opts.idle && in_flight - n_idle >= opts.concurrency)
                break;
            if (opts.count && st.started >= opts.count)
                break;
            if (opts.rate > 0) {
                if ((double)now < next_start_ns)
                    break;
                next_start_ns += 1e9 / opts.rate;
                /* Do not bank more than one second of missed starts when the server falls behind. */
                if ((double)now - next_start_ns > 1e9)
                    next_start_ns = (double)now - 1e9;
            }
            if (conn_start(&conns[i]) != 0) {
                st.errors++;
                st.err_connect++;
                break;
            }
        }
        if (opts.count && st.started >= opts.count && in_flight == 0)
            break;
        if (opts.idle && st.started >= opts.idle) {
            /* All started: done ramping once none is still handshaking. */
            unsigned busy = 0;
            for (i = 0; i < slots; i++)
                busy += conns[i].state != LG_FREE && conns[i].state != LG_IDLE;
            if (busy == 0)
                break;
        }
        if (opts.rate > 0) {
            double wait = (next_start_ns - (double)now) / 1e6;
            timeout_ms = wait < 1 ? 0 : (wait > 10 ? 10 : (int)wait);
        }
        n = epoll_wait(epfd, evs, 256, timeout_ms);
        for (int k = 0; k < n; k++)
            conn_drive(evs[k].data.ptr);
        /* Time out stuck connections, checked every 100 ms (bounded: at most slots per check). */
        now = now_ns();
        if (now - t_last_check > 100000000u) {
            t_last_check = now;
            for (i = 0; i < slots; i++) {
                struct lg_conn *c = &conns[i];
                if (c->state != LG_FREE && c->state != LG_IDLE &&
                    now - c->t_start > (uint64_t)(opts.conn_timeout * 1e9))
                    conn_fail(c, &st.timeouts);
            }
        }
    }
    elapsed = (double)(now_ns() - t0) / 1e9;

    if (opts.idle) {
        uint64_t hold_end;
        unsigned live = 0;
        for (i = 0; i < slots; i++)
            live += conns[i].state == LG_IDLE;
        printf("READY established=%u errors=%" PRIu64 "\n", live, st.errors);
        fflush(stdout);
        hold_end = now_ns() + (uint64_t)(opts.hold * 1e9);
        while (!stop_flag && now_ns() < hold_end) {
            int n = epoll_wait(epfd, evs, 256, 100);
            for (int k = 0; k < n; k++)
                conn_drive(evs[k].data.ptr);
        }
        live = 0;
        for (i = 0; i < slots; i++)
            live += conns[i].state == LG_IDLE;
        printf("HELD established=%u\n", live);
    }

    /* Whatever is still in flight at the deadline is neither a success nor an error. */
    for (i = 0; i < slots; i++)
        if (conns[i].state != LG_FREE)
            conn_close(&conns[i], 1);

    if (st.lat_n > 0)
        qsort(st.lat_us, st.lat_n, sizeof(*st.lat_us), cmp_u32);
    /* The client's own CPU and context switches, so that the benchmark can take them out of
     * the machine's (/proc/stat) and count what the kernel's threads do for the server too. */
    struct rusage ru;
    memset(&ru, 0, sizeof(ru));
    (void)getrusage(RUSAGE_SELF, &ru);
    uint64_t client_cpu_us = (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec +
                             (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
    printf("result elapsed_s=%.3f started=%" PRIu64 " handshakes=%" PRIu64 " completed=%" PRIu64 " hs_per_s=%.1f "
           "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f errors=%" PRIu64 " err_connect=%" PRIu64
           " err_handshake=%" PRIu64 " err_io=%" PRIu64 " err_http=%" PRIu64 " timeouts=%" PRIu64 " bytes_in=%" PRIu64
           " mbytes_per_s=%.2f tickets=%" PRIu64 " resumed=%" PRIu64 " client_cpu_us=%" PRIu64 " client_ctxsw=%ld\n",
           elapsed, st.started, st.handshakes, st.completed, (double)st.handshakes / elapsed, pct(50), pct(90), pct(99),
           st.lat_n ? (double)st.lat_us[st.lat_n - 1] / 1000.0 : 0.0, st.errors, st.err_connect, st.err_handshake,
           st.err_io, st.err_http, st.timeouts, st.bytes_in, (double)st.bytes_in / elapsed / 1e6, st.tickets,
           st.resumed, client_cpu_us, ru.ru_nvcsw + ru.ru_nivcsw);
    free(st.lat_us);
    SSL_SESSION_free(saved_session);
    free(conns);
    close(epfd);
    SSL_CTX_free(ctx);
    /* Exit status: 0 when at least one handshake succeeded and nothing failed; 1 otherwise. */
    return st.handshakes > 0 && st.errors == 0 ? 0 : 1;
}
