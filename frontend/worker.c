#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include "sandbox.h"
#include "worker.h"
#include "log.h"
#include "metrics.h"
#include "sd_notify.h"
#include "conn.h"
#include "clock.h"
#include "tickets.h"
#include "antireplay.h"

#define ACCEPT_BATCH 64
/* How often a worker looks at the ticket ring (prune, refresh, a changed key file). */
#define TICKETS_TICK_MS 2000
/* A worker asking the signer for ticket keys holds the lease this long: one asks at a time,
   and a failed attempt is retried (by any worker) after it. */
#define TICKETS_LEASE_MS 5000
/* After the signer refused outright: ask again this much later. */
#define TICKETS_REFUSED_MS 60000
#define METRICS_MAX 16384

/* --- the worker --- */

/*
 * The connections' signer: this worker's sc_client, but only while the signer's keys are
 * confirmed for every certificate. A signer that came back with another key under the
 * same name would sign with the wrong key: the client would see a bad CertificateVerify
 * and the audit log a signature nobody could use, so the handshake ends at once instead.
 */
static int signer_call(void *ctx, uint64_t *id_p, Keyless__V1__Request *req, sc_cb cb, void *arg)
{
    struct fe_worker *w = ctx;
    if (!w->signer_keys_ok) {
        return KL_ERR_DENIED;
    }
    return sc_call(w->sc, id_p, req, cb, arg);
}

static void signer_cancel(void *ctx, uint64_t id)
{
    struct fe_worker *w = ctx;
    sc_cancel(w->sc, id);
}

static const struct conn_signer_ops signer_ops = {signer_call, signer_cancel};

/* --- what the workers of a host share (issue 11) --- */

static struct tickets *shared_tickets;       /* NULL: ticket_keys = off */
static struct antireplay *shared_antireplay; /* NULL: no 0-RTT */

static uint64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* tls_replay_fn: the strike register, counted. */
static int replay_cb(void *arg, const uint8_t *binder, size_t binder_len, uint64_t expires_ms)
{
    int fresh = antireplay_check(arg, binder, binder_len, expires_ms);
    if (!fresh) {
        metrics_add(METRIC_EARLY_DATA_REPLAYED, 1);
    }
    return fresh;
}

struct startup_tickets {
    int done;
    int ok;
    const uint64_t *asked;
    size_t n_asked;
    char why[200];
};

static void startup_tickets_cb(void *arg, const Keyless__V1__Response *resp)
{
    struct startup_tickets *st = arg;
    st->done = 1;
    if (resp == NULL || resp->body_case != KEYLESS__V1__RESPONSE__BODY_TICKET_KEYS || resp->ticket_keys == NULL) {
        snprintf(st->why, sizeof(st->why), "%s", resp == NULL ? "no answer" : "not a TicketKeysResponse");
        return;
    }
    st->ok = tickets_install_response(shared_tickets, st->why, sizeof(st->why), resp->ticket_keys, st->asked,
                                      st->n_asked, realtime_ms()) == 0;
}

/* The first keys, before fork: a short-lived loop, like gen_check_signer. */
static void startup_fetch(const struct config *cfg)
{
    struct ev_loop *loop = ev_loop_new();
    struct sc_client *sc = NULL;
    uint64_t epochs[TLS_TICKET_KEYS_MAX], id;
    struct startup_tickets st = {.asked = epochs};
    if (loop == NULL || sc_new(&sc, loop, (const char *const *)cfg->signer_sockets, cfg->n_signer_sockets, 2,
                               cfg->signer_timeout_ms > 5000 ? cfg->signer_timeout_ms : 5000) != 0) {
        snprintf(st.why, sizeof(st.why), "out of memory");
        goto exit;
    }
    uint64_t deadline = kl_clock_ms() + 2000;
    while (!sc_up(sc) && kl_clock_ms() < deadline && ev_run_once(loop, 50) == 0) {
    }
    for (int only_ahead = 0; only_ahead < 2 && !st.ok; only_ahead++) {
        st.n_asked = tickets_wanted(shared_tickets, epochs, TLS_TICKET_KEYS_MAX, realtime_ms(), only_ahead);
        st.done = 0;
        if (st.n_asked == 0 ||
            sc_ticket_keys(sc, &id, epochs, st.n_asked, cfg->ticket_rotation_ms / 1000, startup_tickets_cb, &st) != 0) {
            snprintf(st.why, sizeof(st.why), "the signer is not connected");
            break;
        }
        while (!st.done && ev_run_once(loop, 100) == 0) {
        }
    }
exit:
    if (st.ok) {
        log_info("ticket keys: %zu epoch keys from the signer (rotation %u s)", tickets_count(shared_tickets),
                 cfg->ticket_rotation_ms / 1000);
    } else {
        log_warnx("ticket keys: none from the signer yet (%s): no session tickets until it gives them "
                  "(the workers keep asking)",
                  st.why);
    }
    sc_free(sc);
    if (loop != NULL) {
        ev_loop_free(loop);
    }
}

int server_shared_init(const struct fe_gen *gen, char *err, size_t err_len)
{
    int ret = 0;
    const struct config *cfg = gen->cfg;
    char why[300];
    if (cfg->ticket_keys == CONFIG_TICKET_KEYS_OFF) {
        return 0;
    }
    KL_TRY(tickets_new(&shared_tickets, cfg->ticket_keys == CONFIG_TICKET_KEYS_FILE ? TICKETS_FILE : TICKETS_HSM,
                       cfg->ticket_rotation_ms / 1000, config_ticket_past_epochs(cfg)));
    if (cfg->ticket_keys == CONFIG_TICKET_KEYS_FILE) {
        ret = tickets_file_load(shared_tickets, why, sizeof(why), cfg->ticket_key_file, 1);
        if (ret != 0) {
            snprintf(err, err_len, "%s:%d: [frontend] ticket_keys: %s", cfg->path, cfg->ticket_keys_line, why);
            goto exit;
        }
        log_info("ticket keys: %zu keys from %s", tickets_count(shared_tickets), cfg->ticket_key_file);
    } else {
        startup_fetch(cfg);
    }
    /* Always there when tickets are: a reload may turn 0-RTT on. */
    KL_TRY(antireplay_new(&shared_antireplay, ANTIREPLAY_SLOTS_DEFAULT, realtime_ms(), ANTIREPLAY_WARMUP_MS));
exit:
    if (ret != 0) {
        if (err[0] == '\0') {
            snprintf(err, err_len, "cannot map the ticket keys and the 0-RTT register: %s", kl_err_str(ret));
        }
        server_shared_free();
    }
    return ret;
}

void server_shared_free(void)
{
    tickets_free(shared_tickets);
    shared_tickets = NULL;
    antireplay_free(shared_antireplay);
    shared_antireplay = NULL;
}

static void ticket_keys_cb(void *arg, const Keyless__V1__Response *resp)
{
    struct fe_worker *w = arg;
    char why[200];
    w->ticket_req_id = 0;
    int r = KL_ERR_INVALID, narrowed = 0;
    if (resp == NULL) {
        snprintf(why, sizeof(why), "no answer (deadline passed or signer gone)");
    } else if (resp->body_case != KEYLESS__V1__RESPONSE__BODY_TICKET_KEYS || resp->ticket_keys == NULL) {
        snprintf(why, sizeof(why), "the answer is not a TicketKeysResponse");
    } else {
        r = tickets_install_response(shared_tickets, why, sizeof(why), resp->ticket_keys, w->ticket_asked,
                                     w->n_ticket_asked, realtime_ms());
        if (resp->ticket_keys->status == KEYLESS__V1__STATUS__BAD_REQUEST && !w->ticket_only_ahead) {
            /* Past epochs out of the signer's accept window: ask for the current and next only, at once. */
            w->ticket_only_ahead = 1;
            narrowed = 1;
        }
    }
    if (r == 0) {
        tickets_release(shared_tickets);
        metrics_add(METRIC_TICKET_KEY_FETCHES, 1);
        log_info("ticket keys: epochs %llu..%llu from the signer", (unsigned long long)w->ticket_asked[0],
                 (unsigned long long)w->ticket_asked[w->n_ticket_asked - 1]);
        w->ticket_failing = 0;
        return;
    }
    /* The lease stays taken: the next attempt waits TICKETS_LEASE_MS; a signer that refuses
       outright (no [tickets], not authorized) is asked again only after TICKETS_REFUSED_MS,
       so that its audit log does not get a refusal every few seconds. */
    if (narrowed) {
        tickets_release(shared_tickets);
    } else if (r == KL_ERR_DENIED) {
        tickets_hold(shared_tickets, kl_clock_ms() + TICKETS_REFUSED_MS);
    }
    metrics_add(METRIC_TICKET_KEY_FAILURES, 1);
    if (!w->ticket_failing) {
        log_warnx("ticket keys: refresh failed: %s; serving with the %zu keys held", why,
                  tickets_count(shared_tickets));
    }
    w->ticket_failing = 1;
}

/* Prune what the current epoch no longer needs, ask for what it lacks; or re-read a changed key file. */
static void ticket_tick(struct fe_worker *w, int force)
{
    char why[300];
    if (shared_tickets == NULL || w->draining) {
        return;
    }
    const struct config *cfg = w->gen->cfg;
    if (tickets_source(shared_tickets) == TICKETS_FILE) {
        const char *path = cfg->ticket_key_file;
        if (path == NULL) {
            return; /* a reload switched away from the file: that needs a restart (said at reload) */
        }
        int r = tickets_file_load(shared_tickets, why, sizeof(why), path, force);
        if (r == 0) {
            log_info("ticket keys: %zu keys loaded from %s", tickets_count(shared_tickets), path);
            w->ticket_failing = 0;
        } else if (r < 0 && (!w->ticket_failing || force)) {
            log_warnx("ticket keys: %s; keeping the %zu keys held", why, tickets_count(shared_tickets));
            w->ticket_failing = 1;
        }
        return;
    }
    uint64_t now = realtime_ms();
    if (tickets_prune(shared_tickets, now) != 0) {
        log_warnx("ticket keys: the shared ring is locked; pruning later");
    }
    if (w->ticket_req_id != 0 || w->sc == NULL || !sc_up(w->sc)) {
        return;
    }
    w->n_ticket_asked = tickets_wanted(shared_tickets, w->ticket_asked, TLS_TICKET_KEYS_MAX, now, w->ticket_only_ahead);
    if (w->n_ticket_asked == 0 || !tickets_claim(shared_tickets, kl_clock_ms(), TICKETS_LEASE_MS)) {
        return;
    }
    if (sc_ticket_keys(w->sc, &w->ticket_req_id, w->ticket_asked, w->n_ticket_asked, cfg->ticket_rotation_ms / 1000,
                       ticket_keys_cb, w) != 0) {
        w->ticket_req_id = 0; /* the lease spaces the retry */
    }
}

static void ticket_timer_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct fe_worker *w = t->owner;
    ticket_tick(w, 0);
    if (!w->draining && ev_timer_start(loop, t, TICKETS_TICK_MS) != 0) {
        log_warnx("ticket keys: cannot re-arm the refresh timer");
    }
}

static void keylog_cb(void *arg, const char *line)
{
    struct fe_worker *w = arg;
    if (w->keylog != NULL) {
        fprintf(w->keylog, "%s\n", line);
        fflush(w->keylog);
    }
}

static void gen_attach(struct fe_worker *w, struct fe_gen *gen)
{
    if (shared_tickets != NULL) {
        gen->tls.tickets.keys = tickets_keys_fn;
        gen->tls.tickets.keys_arg = shared_tickets;
    }
    if (shared_antireplay != NULL) {
        gen->tls.tickets.replay = replay_cb;
        gen->tls.tickets.replay_arg = shared_antireplay;
    }
    if (w->trace) {
        gen->tls.trace = conn_trace_engine;
        gen->tls.trace_arg = &w->env;
    }
    if (w->keylog != NULL) {
        gen->tls.keylog = keylog_cb;
        gen->tls.keylog_arg = w;
    }
}

static int bind_listener(const struct config_addr *a, int *fd_p)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return KL_ERR_IO;
    }
    int one = 1;
    /* One socket per worker on the same address: the kernel spreads connections (SO_REUSEPORT).
       TCP_NODELAY here: Linux copies it to every accepted socket, so conn_accept makes no
       setsockopt per connection (each flight goes out at once, never behind Nagle). */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        ((a->ss.ss_family == AF_INET || a->ss.ss_family == AF_INET6) &&
         setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) ||
        bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0 || listen(fd, 4096) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return KL_ERR_IO;
    }
    *fd_p = fd;
    return 0;
}

static void listener_cb(struct ev_loop *loop, struct ev_io *io, unsigned revents)
{
    struct fe_listener *l = io->owner;
    struct fe_worker *w = l->w;
    for (int i = 0; i < ACCEPT_BATCH && !w->draining; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: pause accepting (level-triggered would spin) and retry soon. */
                log_warn("accept on %s", w->gen->cfg->listeners[l->index].listen.text);
                for (size_t j = 0; j < w->n_listeners; j++) {
                    ev_io_set(loop, &w->listeners[j].io, 0);
                }
                if (ev_timer_start(loop, &w->accept_pause, 100) != 0) {
                    log_warnx("cannot arm the accept pause timer");
                }
            }
            break;
        }
        if (w->n_conns >= w->max_conns) {
            metrics_add(METRIC_CONN_REJECTED, 1);
            close(fd);
            continue;
        }
        uint64_t id = ((uint64_t)w->index << 40) | ++w->next_conn_id;
        struct conn *c = conn_accept(&w->env, w->gen, l->index, id, fd, (struct sockaddr *)&ss, len);
        if (c == NULL) {
            continue;
        }
        c->prev = NULL;
        c->next = w->conns;
        if (w->conns != NULL) {
            w->conns->prev = c;
        }
        w->conns = c;
        w->n_conns++;
    }
}

static void accept_resume_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct fe_worker *w = t->owner;
    if (w->draining) {
        return;
    }
    for (size_t j = 0; j < w->n_listeners; j++) {
        ev_io_set(loop, &w->listeners[j].io, EV_READ);
    }
}

/* The metrics endpoint: one tiny object per scrape. */
/* --- readiness --- */

/* NULL when this worker can complete handshakes, else why not (for /readyz). */
static const char *worker_not_ready(const struct fe_worker *w)
{
    if (w->draining) {
        return "draining";
    }
    if (w->sc == NULL || !sc_up(w->sc)) {
        return "signer not connected";
    }
    if (!w->signer_keys_ok) {
        return "the signer's keys are not (yet) confirmed for every certificate";
    }
    return NULL;
}

static void verify_keys_cb(void *arg, const Keyless__V1__Response *resp)
{
    struct fe_worker *w = arg;
    char err[CONFIG_ERR_LEN];
    w->verify_id = 0;
    if (resp == NULL || resp->body_case != KEYLESS__V1__RESPONSE__BODY_LIST_KEYS || resp->list_keys == NULL ||
        resp->list_keys->status != KEYLESS__V1__STATUS__OK) {
        w->signer_keys_ok = 0;
        log_warnx("signer reconnected but did not list its keys: not ready");
        return;
    }
    if (gen_check_keys(w->gen, err, sizeof(err), resp->list_keys) != 0) {
        w->signer_keys_ok = 0;
        log_warnx("signer reconnected with other keys: %s; not ready", err);
        return;
    }
    w->signer_keys_ok = 1;
}

/* The signer connection went up (after a loss or a failover) or down: whoever answers
   now must hold every certificate's key, so ask it again before calling ourselves ready. */
static void signer_changed(void *arg, int up, const char *path)
{
    struct fe_worker *w = arg;
    if (!up) {
        return;
    }
    if (w->verify_id != 0) {
        sc_cancel(w->sc, w->verify_id);
        w->verify_id = 0;
    }
    w->signer_keys_ok = 0;
    if (sc_list_keys(w->sc, &w->verify_id, verify_keys_cb, w) != 0) {
        w->verify_id = 0;
        log_warnx("signer at %s: cannot ask for its keys: not ready", path);
    }
}

struct mconn {
    struct fe_worker *w;
    int fd;
    struct ev_io io;
    struct ev_timer timer;
    struct ev_deferred dfr;
    size_t got;
    int answered;
};

static void mconn_free(void *arg)
{
    free(arg);
}

static void mconn_close(struct mconn *m)
{
    ev_timer_stop(m->w->loop, &m->timer);
    ev_io_close(m->w->loop, &m->io);
    close(m->fd);
    ev_defer(m->w->loop, &m->dfr, mconn_free, m);
}

static void mconn_timer_cb(struct ev_loop *loop, struct ev_timer *t)
{
    mconn_close(t->owner);
}

static void mconn_cb(struct ev_loop *loop, struct ev_io *io, unsigned revents)
{
    struct mconn *m = io->owner;
    char req[2048];
    ssize_t n = recv(m->fd, req, sizeof(req), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n <= 0 || m->answered) {
        mconn_close(m);
        return;
    }
    m->got += (size_t)n;
    /* The request line picks the answer: /healthz (the process runs its loop), /readyz
       (it can complete handshakes), anything else the metrics. One read is enough: a
       probe's request line fits in the first segment. */
    req[n < (ssize_t)sizeof(req) ? n : (ssize_t)sizeof(req) - 1] = '\0';
    char *body = malloc(METRICS_MAX);
    char head[200];
    const char *status = "200 OK", *type = "text/plain; version=0.0.4";
    size_t blen;
    if (body == NULL) {
        mconn_close(m);
        return;
    }
    if (strncmp(req, "GET /healthz ", 13) == 0) {
        blen = (size_t)snprintf(body, METRICS_MAX, "ok\n");
        type = "text/plain";
    } else if (strncmp(req, "GET /readyz ", 12) == 0) {
        const char *why = worker_not_ready(m->w);
        blen = (size_t)snprintf(body, METRICS_MAX, "%s%s\n", why == NULL ? "ready" : "not ready: ", why ? why : "");
        status = why == NULL ? "200 OK" : "503 Service Unavailable";
        type = "text/plain";
    } else {
        const struct fe_gen *g = m->w->gen;
        struct metrics_cert certs[CONFIG_MAX_CERTS];
        size_t n_certs = g->cfg->n_certs < CONFIG_MAX_CERTS ? g->cfg->n_certs : CONFIG_MAX_CERTS;
        for (size_t i = 0; i < n_certs; i++) {
            certs[i] = (struct metrics_cert){g->cfg->certs[i].name, g->cfg->certs[i].key_name, g->certs[i].not_after};
        }
        blen = metrics_render(body, METRICS_MAX, certs, n_certs);
    }
    int hlen = snprintf(head, sizeof(head),
                        "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
                        type, blen);
    ssize_t w1 = send(m->fd, head, (size_t)hlen, MSG_NOSIGNAL);
    ssize_t w2 = send(m->fd, body, blen, MSG_NOSIGNAL);
    (void)w1;
    (void)w2;
    free(body);
    m->answered = 1;
    shutdown(m->fd, SHUT_WR);
}

static void metrics_accept_cb(struct ev_loop *loop, struct ev_io *io, unsigned revents)
{
    struct fe_worker *w = io->owner;
    int fd = accept4(w->metrics_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        return;
    }
    struct mconn *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        close(fd);
        return;
    }
    m->w = w;
    m->fd = fd;
    ev_io_init(&m->io, fd, mconn_cb, m);
    ev_io_set(loop, &m->io, EV_READ);
    ev_timer_init(&m->timer, mconn_timer_cb, m);
    if (ev_timer_start(loop, &m->timer, 2000) != 0) {
        mconn_close(m);
    }
}

/* env.on_close: unlink the connection; the last one to end finishes a drain. */
static void conn_closed(void *arg, struct conn *c)
{
    struct fe_worker *w = arg;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        w->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
    w->n_conns--;
    if (w->draining && w->n_conns == 0) {
        log_info("drained: exiting");
        ev_stop(w->loop);
    }
}

static void drain_timeout_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct fe_worker *w = t->owner;
    log_warnx("drain timeout: closing %zu connections", w->n_conns);
    while (w->conns != NULL) {
        conn_abort(w->conns, "drain timeout");
    }
    ev_stop(loop);
}

static void start_drain(struct fe_worker *w)
{
    if (w->draining) {
        return;
    }
    w->draining = 1;
    for (size_t i = 0; i < w->n_listeners; i++) {
        ev_io_close(w->loop, &w->listeners[i].io);
        close(w->listeners[i].fd);
        w->listeners[i].fd = -1;
    }
    log_info("SIGTERM: stopped accepting; draining %zu connections (at most %u ms)", w->n_conns,
             w->gen->cfg->drain_timeout_ms);
    if (w->n_conns == 0) {
        ev_stop(w->loop);
        return;
    }
    if (ev_timer_start(w->loop, &w->drain_timer, w->gen->cfg->drain_timeout_ms) != 0) {
        ev_stop(w->loop);
    }
}

static void reload_keys_cb(void *arg, const Keyless__V1__Response *resp)
{
    struct fe_worker *w = arg;
    struct fe_gen *gen = w->pending_gen;
    char err[CONFIG_ERR_LEN];
    w->pending_gen = NULL;
    w->pending_id = 0;
    (void)kl_sd_notify("READY=1"); /* the reload is decided here, one way or the other */
    if (resp == NULL || resp->body_case != KEYLESS__V1__RESPONSE__BODY_LIST_KEYS || resp->list_keys == NULL ||
        resp->list_keys->status != KEYLESS__V1__STATUS__OK) {
        log_warnx("reload failed: the signer did not list its keys; keeping the running configuration");
        metrics_add(METRIC_RELOAD_FAILURES, 1);
        gen_unref(gen);
        return;
    }
    if (gen_check_keys(gen, err, sizeof(err), resp->list_keys) != 0) {
        log_warnx("reload failed, keeping the running configuration: %s", err);
        metrics_add(METRIC_RELOAD_FAILURES, 1);
        gen_unref(gen);
        return;
    }
    if (gen->cfg->ticket_keys != w->gen->cfg->ticket_keys ||
        gen->cfg->ticket_rotation_ms != w->gen->cfg->ticket_rotation_ms) {
        /* The ring was made before fork for one source and epoch length (tickets.h). */
        log_warnx("reload: ticket_keys and ticket_rotation changes take effect at the next restart");
    }
    gen_attach(w, gen);
    struct fe_gen *old = w->gen;
    w->gen = gen;
    log_level = gen->cfg->log_level;
    log_format = gen->cfg->log_format;
    /* Live connections keep the old generation (their reference) until they end. */
    gen_unref(old);
    metrics_add(METRIC_RELOADS, 1);
    log_info("SIGHUP: configuration and certificates reloaded from %s", gen->cfg->path);
}

static void start_reload(struct fe_worker *w)
{
    char err[CONFIG_ERR_LEN];
    struct config *cfg = NULL;
    struct fe_gen *gen = NULL;
    if (w->draining) {
        return;
    }
    if (config_load(&cfg, err, w->gen->cfg->path) != 0) {
        log_warnx("reload failed, keeping the running configuration: %s", err);
        metrics_add(METRIC_RELOAD_FAILURES, 1);
        return;
    }
    if (!config_same_listeners(cfg, w->gen->cfg)) {
        log_warnx("reload failed: listener addresses changed (that needs a restart); keeping the running "
                  "configuration");
        metrics_add(METRIC_RELOAD_FAILURES, 1);
        config_free(cfg);
        return;
    }
    if (gen_new(&gen, err, sizeof(err), cfg) != 0) {
        log_warnx("reload failed, keeping the running configuration: %s", err);
        metrics_add(METRIC_RELOAD_FAILURES, 1);
        return;
    }
    if (w->pending_gen != NULL) {
        sc_cancel(w->sc, w->pending_id);
        gen_unref(w->pending_gen);
    }
    w->pending_gen = gen;
    if (sc_list_keys(w->sc, &w->pending_id, reload_keys_cb, w) != 0) {
        w->pending_gen = NULL;
        gen_unref(gen);
        log_warnx("reload failed: the signer is not connected; keeping the running configuration");
        metrics_add(METRIC_RELOAD_FAILURES, 1);
    }
}

static void signal_cb(struct ev_loop *loop, int signo, void *arg)
{
    struct fe_worker *w = arg;
    /* kl_sd_notify does nothing in a forked worker: only a single-worker frontend, which
     * is its own main process, tells systemd about its reloads and stop from here. */
    if (signo == SIGHUP) {
        (void)kl_sd_notify("RELOADING=1");
        start_reload(w);
        if (w->pending_gen == NULL) {
            (void)kl_sd_notify("READY=1"); /* failed at once: no ListKeys answer to wait for */
        }
        ticket_tick(w, 1);
    } else if (signo == SIGTERM || signo == SIGINT) {
        (void)kl_sd_notify("STOPPING=1");
        start_drain(w);
    }
}

/*
 * Issue 13 §2, §5: the listeners are bound, so the worker needs no capability from here
 * on (the last one, CAP_NET_BIND_SERVICE, kept by main.c's drop); then the seccomp
 * allow-list, unless sandbox = no. 0, or -1 with one log line.
 */
static int confine_worker(const struct config *cfg, unsigned index)
{
    char err[256];
    const char *why = NULL;
    if (sandbox_drop_caps(err, sizeof(err)) != 0) {
        log_warnx("worker %u: %s", index, err);
        return -1;
    }
    if (!cfg->sandbox) {
        if (index == 0) {
            log_info("sandbox = no: no seccomp filter");
        }
        return 0;
    }
    if (!sandbox_supported(&why)) {
        if (index == 0) {
            log_warnx("no seccomp filter: %s", why);
        }
        return 0;
    }
    if (sandbox_apply(SANDBOX_FRONTEND, (const char *const *)cfg->sandbox_allow, cfg->n_sandbox_allow, err,
                      sizeof(err)) != 0) {
        log_warnx("worker %u: %s", index, err);
        return -1;
    }
    return 0;
}

int server_run_worker(struct fe_gen *gen, unsigned index, int trace)
{
    static const int sigs[] = {SIGHUP, SIGTERM, SIGINT, 0};
    struct fe_worker wk = {.index = index, .trace = trace, .metrics_fd = -1};
    struct fe_worker *w = &wk;
    const struct config *cfg = gen->cfg;
    int code = 1;
    w->gen = gen;
    w->loop = ev_loop_new();
    if (w->loop == NULL) {
        log_warn("event loop");
        return 1;
    }
    w->env.loop = w->loop;
    w->env.signer = &signer_ops;
    w->env.trace = trace;
    w->env.on_close = conn_closed;
    w->env.arg = w;
    w->env.scratch = malloc(CONN_RECORD_MAX);
    if (w->env.scratch == NULL) {
        log_warnx("out of memory");
        goto exit;
    }
    unsigned workers = cfg->workers > 0 ? cfg->workers : 1;
    w->max_conns = (cfg->max_connections + workers - 1) / workers;
    ev_timer_init(&w->accept_pause, accept_resume_cb, w);
    ev_timer_init(&w->drain_timer, drain_timeout_cb, w);
    ev_timer_init(&w->ticket_timer, ticket_timer_cb, w);
    if (ev_signals(w->loop, sigs, signal_cb, w) != 0) {
        log_warn("signalfd");
        goto exit;
    }
    if (cfg->keylog_file != NULL) {
        int kfd = open(cfg->keylog_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        w->keylog = kfd >= 0 ? fdopen(kfd, "a") : NULL;
        if (w->keylog == NULL) {
            log_warn("keylog_file %s", cfg->keylog_file);
        }
    }
    gen_attach(w, gen);
    if (sc_new(&w->sc, w->loop, (const char *const *)cfg->signer_sockets, cfg->n_signer_sockets, cfg->max_pending_sign,
               cfg->signer_timeout_ms) != 0) {
        log_warnx("signer client: out of memory");
        goto exit;
    }
    w->env.signer_ctx = w;
    w->signer_keys_ok = 1; /* the main process checked them before starting the workers */
    sc_set_observer(w->sc, signer_changed, w);
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        struct fe_listener *l = &w->listeners[i];
        l->w = w;
        l->index = i;
        if (bind_listener(&cfg->listeners[i].listen, &l->fd) != 0) {
            log_warn("listen %s", cfg->listeners[i].listen.text);
            goto exit;
        }
        w->n_listeners++;
        ev_io_init(&l->io, l->fd, listener_cb, l);
        ev_io_set(w->loop, &l->io, EV_READ);
    }
    if (cfg->metrics.len > 0) {
        if (bind_listener(&cfg->metrics, &w->metrics_fd) != 0) {
            log_warn("metrics listen %s", cfg->metrics.text);
            goto exit;
        }
        ev_io_init(&w->metrics_io, w->metrics_fd, metrics_accept_cb, w);
        ev_io_set(w->loop, &w->metrics_io, EV_READ);
    }
    if (shared_tickets != NULL && ev_timer_start(w->loop, &w->ticket_timer, TICKETS_TICK_MS) != 0) {
        log_warnx("ticket keys: cannot arm the refresh timer");
        goto exit;
    }
    if (confine_worker(cfg, index) != 0) {
        goto exit;
    }
    (void)kl_sd_notify("READY=1"); /* listeners bound; a forked worker does not notify */
    if (index == 0) {
        log_info("listening on %s (backend %s)%s%s", cfg->listeners[0].listen.text, cfg->listeners[0].backend.text,
                 cfg->metrics.len ? ", metrics on " : "", cfg->metrics.len ? cfg->metrics.text : "");
    }
    if (ev_run(w->loop) != 0) {
        log_warn("event loop");
        goto exit;
    }
    code = 0;
exit:
    while (w->conns != NULL) {
        conn_abort(w->conns, "exit");
    }
    /* Free what the last turn deferred. */
    if (ev_run_once(w->loop, 0) != 0) {
        log_warn("event loop");
    }
    for (size_t i = 0; i < w->n_listeners; i++) {
        if (w->listeners[i].fd >= 0) {
            ev_io_close(w->loop, &w->listeners[i].io);
            close(w->listeners[i].fd);
        }
    }
    if (w->metrics_fd >= 0) {
        ev_io_close(w->loop, &w->metrics_io);
        close(w->metrics_fd);
    }
    if (w->pending_gen != NULL) {
        gen_unref(w->pending_gen);
    }
    ev_timer_stop(w->loop, &w->ticket_timer);
    sc_free(w->sc);
    if (w->keylog != NULL) {
        fclose(w->keylog);
    }
    free(w->env.scratch);
    ev_loop_free(w->loop);
    gen_unref(w->gen);
    return code;
}
