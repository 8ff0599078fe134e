#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "signer_client.h"
#include "frame.h"
#include "log.h"
#include "metrics.h"
#include "clock.h"

#define SC_BACKOFF_MIN_MS 20
/* Below one second so that a restarted signer is found again within a second. */
#define SC_BACKOFF_MAX_MS 250
#define SC_READ_CHUNK 16384
#define SC_WBUF_MAX (8u * 1024 * 1024)

enum sc_state { SC_DOWN, SC_CONNECTING, SC_UP };

struct sc_slot {
    uint64_t id; /* 0 when free */
    sc_cb cb;
    void *arg;
    uint64_t started_us;
    struct ev_timer deadline;
    struct sc_client *sc;
    uint32_t next_free;
};

struct sc_client {
    struct ev_loop *loop;
    char **paths;
    size_t n_paths;
    size_t cur;
    size_t tried; /* paths tried in this connection round */
    enum sc_state state;
    int fd;
    struct ev_io io;
    struct kl_buf rbuf, wbuf;
    struct sc_slot *slots;
    size_t n_slots;
    uint32_t free_head; /* UINT32_MAX: none */
    size_t n_pending;
    uint64_t seq;
    uint32_t timeout_ms;
    struct ev_timer retry;
    uint32_t backoff_ms;
    struct sc_stats stats;
    int ever_up;
    void (*on_change)(void *arg, int up, const char *path);
    void *on_change_arg;
    struct ev_deferred flush_d; /* the end-of-turn send of the requests queued in this turn */
    int flush_scheduled;
};

static void sc_io_cb(struct ev_loop *loop, struct ev_io *io, unsigned revents);
static void sc_connect_round(struct sc_client *sc);

static void slot_release(struct sc_client *sc, struct sc_slot *s)
{
    ev_timer_stop(sc->loop, &s->deadline);
    s->id = 0;
    s->cb = NULL;
    s->arg = NULL;
    s->next_free = sc->free_head;
    sc->free_head = (uint32_t)(s - sc->slots);
    sc->n_pending--;
}

/* Complete slot s with resp (NULL = failure); the slot is free before the callback runs. */
static void slot_finish(struct sc_client *sc, struct sc_slot *s, const Keyless__V1__Response *resp)
{
    sc_cb cb = s->cb;
    void *arg = s->arg;
    uint64_t started = s->started_us;
    slot_release(sc, s);
    if (resp != NULL) {
        metrics_signer_latency(kl_clock_us() - started);
    }
    if (cb != NULL) {
        cb(arg, resp);
    }
}

static void deadline_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct sc_slot *s = t->owner;
    struct sc_client *sc = s->sc;
    sc->stats.timeouts++;
    metrics_add(METRIC_SIGNER_TIMEOUTS, 1);
    log_warnx("signer: request %llu got no answer within %u ms", (unsigned long long)s->id, sc->timeout_ms);
    slot_finish(sc, s, NULL);
}

static void fail_all(struct sc_client *sc)
{
    for (size_t i = 0; i < sc->n_slots; i++) {
        if (sc->slots[i].id != 0) {
            slot_finish(sc, &sc->slots[i], NULL);
        }
    }
}

static void sc_disconnect(struct sc_client *sc, const char *why)
{
    int was_up = sc->state == SC_UP;
    if (sc->fd >= 0) {
        ev_io_close(sc->loop, &sc->io);
        close(sc->fd);
        sc->fd = -1;
    }
    sc->state = SC_DOWN;
    kl_buf_dispose(&sc->rbuf);
    kl_buf_dispose(&sc->wbuf);
    if (was_up) {
        log_warnx("signer: lost %s (%s); reconnecting", sc->paths[sc->cur], why);
        if (sc->on_change != NULL) {
            sc->on_change(sc->on_change_arg, 0, sc->paths[sc->cur]);
        }
    }
    /* Fail in-flight requests now rather than at their deadlines: the answers cannot come. */
    fail_all(sc);
}

static void schedule_retry(struct sc_client *sc)
{
    if (ev_timer_armed(&sc->retry)) {
        return;
    }
    if (ev_timer_start(sc->loop, &sc->retry, sc->backoff_ms) != 0) {
        return;
    }
    sc->backoff_ms = sc->backoff_ms * 2 > SC_BACKOFF_MAX_MS ? SC_BACKOFF_MAX_MS : sc->backoff_ms * 2;
}

static void became_up(struct sc_client *sc)
{
    sc->state = SC_UP;
    if (sc->ever_up) {
        sc->stats.reconnects++;
        metrics_add(METRIC_SIGNER_RECONNECTS, 1);
    }
    sc->ever_up = 1;
    log_info("signer: connected to %s", sc->paths[sc->cur]);
    if (sc->on_change != NULL) {
        sc->on_change(sc->on_change_arg, 1, sc->paths[sc->cur]);
    }
    ev_io_set(sc->loop, &sc->io, EV_READ);
}

/* Try paths from sc->cur on; the first that connects wins (failover in configured order). */
static void sc_connect_round(struct sc_client *sc)
{
    while (sc->tried < sc->n_paths) {
        const char *path = sc->paths[sc->cur];
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t plen = strlen(path);
        int fd = -1;
        if (plen < sizeof(sa.sun_path)) {
            memcpy(sa.sun_path, path, plen + 1);
            fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        }
        if (fd >= 0) {
            int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
            if (r == 0 || errno == EINPROGRESS || errno == EAGAIN) {
                sc->fd = fd;
                ev_io_init(&sc->io, fd, sc_io_cb, sc);
                if (r == 0) {
                    became_up(sc);
                } else {
                    sc->state = SC_CONNECTING;
                    ev_io_set(sc->loop, &sc->io, EV_WRITE);
                }
                return;
            }
            log_debug("signer: connect %s: %s", path, strerror(errno));
            close(fd);
        }
        sc->tried++;
        sc->cur = (sc->cur + 1) % sc->n_paths;
    }
    /* Every socket refused: start again from the first (preferred) one after a backoff. */
    sc->cur = 0;
    sc->tried = 0;
    schedule_retry(sc);
}

static void retry_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct sc_client *sc = t->owner;
    if (sc->state == SC_DOWN) {
        sc_connect_round(sc);
    }
}

/* Room for one unpacked answer: a SignResponse with an RSA-4096 signature takes about
 * 1 KiB; ListKeys and larger answers spill to malloc (frame.h). */
#define SC_ARENA_SIZE 4096

static void handle_frame(struct sc_client *sc, const uint8_t *body, size_t len)
{
    /* The answer is unpacked on the stack, not one malloc per field (issue 15). */
    _Alignas(max_align_t) uint8_t arena_mem[SC_ARENA_SIZE];
    struct frame_arena arena;
    frame_arena_init(&arena, arena_mem, sizeof(arena_mem));
    Keyless__V1__Response *resp = keyless__v1__response__unpack(&arena.pc, len, body);
    if (resp == NULL) {
        log_warnx("signer: reply does not unpack; dropped");
        return;
    }
    uint64_t slot = resp->id & (SC_MAX_PENDING_LIMIT - 1);
    /* The signer answers: the connection is healthy, so the next loss starts the backoff afresh. */
    sc->backoff_ms = SC_BACKOFF_MIN_MS;
    if (resp->id != 0 && slot < sc->n_slots && sc->slots[slot].id == resp->id) {
        slot_finish(sc, &sc->slots[slot], resp);
    } else {
        /* An abandoned request (deadline passed, connection cancelled): drop it. */
        log_debug("signer: late or unknown reply id %llu dropped", (unsigned long long)resp->id);
    }
    keyless__v1__response__free_unpacked(resp, &arena.pc);
}

static int sc_read(struct sc_client *sc)
{
    /* Bounded: at most a few chunks per turn so that one busy signer cannot starve clients. */
    for (int round = 0; round < 8; round++) {
        if (kl_buf_reserve(&sc->rbuf, SC_READ_CHUNK) != 0) {
            return KL_ERR_OVERFLOW;
        }
        ssize_t n = read(sc->fd, sc->rbuf.base + sc->rbuf.len, SC_READ_CHUNK);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                break;
            }
            return KL_ERR_IO;
        }
        if (n == 0) {
            return KL_ERR_CLOSED;
        }
        sc->rbuf.len += (size_t)n;
        size_t off = 0;
        for (;;) {
            struct kl_span body;
            size_t used;
            int r = frame_next(&body, &used, sc->rbuf.base + off, sc->rbuf.len - off);
            if (r == KL_ERR_WANT_READ) {
                break;
            }
            if (r != 0) {
                return r;
            }
            handle_frame(sc, body.base, body.len);
            /* A callback may have torn the connection down (it cannot: sc_call never does); be safe. */
            if (sc->state != SC_UP) {
                return 0;
            }
            off += used;
        }
        kl_buf_consume(&sc->rbuf, off);
        if ((size_t)n < SC_READ_CHUNK) {
            break;
        }
    }
    /* The buffer is kept for the next answers (freed at disconnect): disposing of it when
     * empty cost a malloc, a free and a wipe of the whole chunk per answer. */
    return 0;
}

static int sc_flush(struct sc_client *sc)
{
    while (sc->wbuf.len > 0) {
        ssize_t n = send(sc->fd, sc->wbuf.base, sc->wbuf.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                return 0;
            }
            return KL_ERR_IO;
        }
        kl_buf_consume(&sc->wbuf, (size_t)n);
    }
    /* Kept (empty) for the next requests: one allocation per connection, not per request. */
    return 0;
}

static void sc_io_cb(struct ev_loop *loop, struct ev_io *io, unsigned revents)
{
    struct sc_client *sc = io->owner;
    int r = 0;
    if (sc->state == SC_CONNECTING) {
        int err = 0;
        socklen_t elen = sizeof(err);
        if (getsockopt(sc->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
            ev_io_close(loop, io);
            close(sc->fd);
            sc->fd = -1;
            sc->state = SC_DOWN;
            sc->tried++;
            sc->cur = (sc->cur + 1) % sc->n_paths;
            sc_connect_round(sc);
            return;
        }
        became_up(sc);
    }
    if (revents & (EV_READ | EV_RDHUP | EV_ERROR)) {
        r = sc_read(sc);
    }
    if (r == 0 && sc->state == SC_UP && sc->wbuf.len > 0) {
        r = sc_flush(sc);
    }
    if (r != 0) {
        sc_disconnect(sc, r == KL_ERR_CLOSED ? "closed by signer" : kl_err_str(r));
        sc->tried = 0;
        /* After the backoff, not at once: a signer that accepts and drops us must not make us spin. */
        schedule_retry(sc);
        return;
    }
    if (sc->state == SC_UP) {
        ev_io_set(loop, io, EV_READ | (sc->wbuf.len > 0 ? EV_WRITE : 0));
    }
}

int sc_new(struct sc_client **sc_p, struct ev_loop *loop, const char *const *paths, size_t n_paths, size_t max_pending,
           uint32_t timeout_ms)
{
    int ret = 0;
    struct sc_client *sc = NULL;
    KL_ENSURE(n_paths > 0 && max_pending > 0 && max_pending <= SC_MAX_PENDING_LIMIT, KL_ERR_INVALID);
    sc = calloc(1, sizeof(*sc));
    KL_ENSURE(sc != NULL, KL_ERR_NO_MEMORY);
    sc->loop = loop;
    sc->fd = -1;
    sc->timeout_ms = timeout_ms;
    sc->backoff_ms = SC_BACKOFF_MIN_MS;
    kl_buf_init(&sc->rbuf, FRAME_HDR_LEN + FRAME_MAX + SC_READ_CHUNK);
    kl_buf_init(&sc->wbuf, SC_WBUF_MAX);
    ev_timer_init(&sc->retry, retry_cb, sc);
    sc->paths = calloc(n_paths, sizeof(char *));
    KL_ENSURE(sc->paths != NULL, KL_ERR_NO_MEMORY);
    for (size_t i = 0; i < n_paths; i++) {
        sc->paths[i] = strdup(paths[i]);
        KL_ENSURE(sc->paths[i] != NULL, KL_ERR_NO_MEMORY);
        sc->n_paths++;
    }
    sc->slots = calloc(max_pending, sizeof(*sc->slots));
    KL_ENSURE(sc->slots != NULL, KL_ERR_NO_MEMORY);
    sc->n_slots = max_pending;
    sc->free_head = UINT32_MAX;
    for (size_t i = max_pending; i-- > 0;) {
        ev_timer_init(&sc->slots[i].deadline, deadline_cb, &sc->slots[i]);
        sc->slots[i].sc = sc;
        sc->slots[i].next_free = sc->free_head;
        sc->free_head = (uint32_t)i;
    }
    sc_connect_round(sc);
    *sc_p = sc;
    sc = NULL;
exit:
    sc_free(sc);
    return ret;
}

void sc_free(struct sc_client *sc)
{
    if (sc == NULL) {
        return;
    }
    if (sc->slots != NULL) {
        for (size_t i = 0; i < sc->n_slots; i++) {
            ev_timer_stop(sc->loop, &sc->slots[i].deadline);
        }
    }
    ev_timer_stop(sc->loop, &sc->retry);
    if (sc->fd >= 0) {
        ev_io_close(sc->loop, &sc->io);
        close(sc->fd);
    }
    kl_buf_dispose(&sc->rbuf);
    kl_buf_dispose(&sc->wbuf);
    for (size_t i = 0; i < sc->n_paths; i++) {
        free(sc->paths[i]);
    }
    free(sc->paths);
    free(sc->slots);
    free(sc);
}

int sc_up(const struct sc_client *sc)
{
    return sc->state == SC_UP;
}

const char *sc_path(const struct sc_client *sc)
{
    return sc->paths[sc->cur];
}

size_t sc_pending(const struct sc_client *sc)
{
    return sc->n_pending;
}

const struct sc_stats *sc_stats(const struct sc_client *sc)
{
    return &sc->stats;
}

void sc_set_observer(struct sc_client *sc, void (*on_change)(void *arg, int up, const char *path), void *arg)
{
    sc->on_change = on_change;
    sc->on_change_arg = arg;
}

/* End of the loop turn in which requests were queued: one send() for all of them, without
 * a round trip through epoll for writability (EV_WRITE only if the socket is full). */
static void sc_after_turn(void *arg)
{
    struct sc_client *sc = arg;
    sc->flush_scheduled = 0;
    if (sc->state != SC_UP || sc->wbuf.len == 0) {
        return;
    }
    int r = sc_flush(sc);
    if (r != 0) {
        sc_disconnect(sc, kl_err_str(r));
        sc->tried = 0;
        schedule_retry(sc);
        return;
    }
    ev_io_set(sc->loop, &sc->io, EV_READ | (sc->wbuf.len > 0 ? EV_WRITE : 0));
}

int sc_call(struct sc_client *sc, uint64_t *id_p, Keyless__V1__Request *req, sc_cb cb, void *arg)
{
    if (sc->state != SC_UP) {
        return KL_ERR_IO;
    }
    if (sc->free_head == UINT32_MAX) {
        metrics_add(METRIC_SIGNER_OVERLOAD, 1);
        return KL_ERR_OVERFLOW;
    }
    uint32_t idx = sc->free_head;
    struct sc_slot *s = &sc->slots[idx];
    uint64_t id = (++sc->seq << SC_SLOT_BITS) | idx;
    req->id = id;
    int r = frame_append(&sc->wbuf, &req->base);
    if (r != 0) {
        return r;
    }
    if (ev_timer_start(sc->loop, &s->deadline, sc->timeout_ms) != 0) {
        /* The frame is already queued; its reply will find no slot and be dropped. */
        return KL_ERR_NO_MEMORY;
    }
    sc->free_head = s->next_free;
    sc->n_pending++;
    s->id = id;
    s->cb = cb;
    s->arg = arg;
    s->started_us = kl_clock_us();
    /* Sent at the end of this turn: one send() for the whole turn's requests. */
    if (!sc->flush_scheduled) {
        sc->flush_scheduled = 1;
        ev_defer(sc->loop, &sc->flush_d, sc_after_turn, sc);
    }
    *id_p = id;
    return 0;
}

void sc_cancel(struct sc_client *sc, uint64_t id)
{
    uint64_t slot = id & (SC_MAX_PENDING_LIMIT - 1);
    if (id != 0 && slot < sc->n_slots && sc->slots[slot].id == id) {
        slot_release(sc, &sc->slots[slot]);
    }
}

int sc_list_keys(struct sc_client *sc, uint64_t *id_p, sc_cb cb, void *arg)
{
    Keyless__V1__Request req = KEYLESS__V1__REQUEST__INIT;
    Keyless__V1__ListKeysRequest lk = KEYLESS__V1__LIST_KEYS_REQUEST__INIT;
    req.body_case = KEYLESS__V1__REQUEST__BODY_LIST_KEYS;
    req.list_keys = &lk;
    return sc_call(sc, id_p, &req, cb, arg);
}

int sc_ticket_keys(struct sc_client *sc, uint64_t *id_p, const uint64_t *epochs, size_t n_epochs, uint32_t rotation_s,
                   sc_cb cb, void *arg)
{
    Keyless__V1__Request req = KEYLESS__V1__REQUEST__INIT;
    Keyless__V1__TicketKeysRequest tk = KEYLESS__V1__TICKET_KEYS_REQUEST__INIT;
    if (n_epochs == 0 || n_epochs > 8) {
        return KL_ERR_INVALID;
    }
    tk.epochs = (uint64_t *)epochs; /* packed by sc_call before it returns: never written */
    tk.n_epochs = n_epochs;
    tk.rotation_seconds = rotation_s;
    req.body_case = KEYLESS__V1__REQUEST__BODY_TICKET_KEYS;
    req.ticket_keys = &tk;
    return sc_call(sc, id_p, &req, cb, arg);
}
