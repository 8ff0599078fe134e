#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "sandbox.h"
#include "worker.h"
#include "log.h"
#include "metrics.h"
#include "conn.h"
#include "clock.h"

#define ACCEPT_BATCH 64
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
    /* One socket per worker on the same address: the kernel spreads connections (SO_REUSEPORT). */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
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
        blen = metrics_render(body, METRICS_MAX);
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
    gen_attach(w, gen);
    struct fe_gen *old = w->gen;
    w->gen = gen;
    log_level = gen->cfg->log_level;
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
    if (signo == SIGHUP) {
        start_reload(w);
    } else if (signo == SIGTERM || signo == SIGINT) {
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
    if (confine_worker(cfg, index) != 0) {
        goto exit;
    }
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
    sc_free(w->sc);
    if (w->keylog != NULL) {
        fclose(w->keylog);
    }
    free(w->env.scratch);
    ev_loop_free(w->loop);
    gen_unref(w->gen);
    return code;
}
