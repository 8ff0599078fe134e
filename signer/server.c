/*
 * server.c - the I/O thread: loop (common/ev), accept, SO_PEERCRED, framing, connection
 * I/O, the op table and its dispatcher, audit rotation.
 *
 * Ownership: connections belong to the I/O thread. A job holds a reference on its
 * connection (conn->refs, touched only by the I/O thread: incremented when the job is
 * submitted, decremented when it comes back from jobs_take_done), so a connection that
 * closes while its requests are being signed is freed only once the last result has
 * been dropped (sweep_dead, after the loop turn).
 *
 * Signatures are written to the socket by the thread that finished them (conn_deliver,
 * called by jobs.c); conn->lock serialises everything that touches the output buffer,
 * the fd and the poll interest, so frames never interleave and a closed fd is never
 * written. Answers finished together are written together (issue 15): conn_deliver may
 * only queue an answer (send = 0) when a later deliver of the same batch, or the I/O
 * thread's job_retire -> conn_flush, sends the connection's whole output in one write.
 *
 * Requests are unpacked into a stack arena (conn_read, proto/frame.h): no malloc per
 * request field; what a job needs is copied into the job.
 *
 * Poll interest and threads: common/ev collects interest changes (ev_io_set) and
 * applies them once per turn, from the loop thread only; it is not thread-safe. So only
 * the I/O thread calls ev_io_set (conn_update_events, under conn->lock, recording the
 * interest it asked for in conn->events). A signing thread that sends an answer never
 * changes interest: it computes the interest the connection needs now (under the lock)
 * and, only if that adds to conn->events (a partial send needs EV_WRITE), tells jobs.c
 * the job is urgent, which wakes the I/O thread through the done eventfd; the I/O
 * thread's bookkeeping for that job (job_retire -> conn_flush) then sets the interest. In the common case (the answer
 * went out whole) nothing changes and the I/O thread is not woken per signature.
 */
#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "ev.h"
#include "frame.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "ratelimit.h"
#include "sd_notify.h"
#include "server.h"
#include "sockdir.h"
#include "tickets.h"

#define OUT_MAX (4u * 1024 * 1024) /* a peer that stops reading is dropped past this */
#define OUT_HIGH (256u * 1024)     /* stop reading a peer's requests while its output is this big */
#define DRAIN_TIMEOUT_NS (5ull * 1000 * 1000 * 1000)
/* While stopping, the loop looks every this often whether everything has gone out. */
#define DRAIN_POLL_MS 50
/* A size-triggered audit rotation that failed is tried again after this long. */
#define ROTATE_RETRY_NS (10ull * 1000 * 1000 * 1000)
#define PEER_TABLE_MAX 4096

struct conn {
    struct conn *next, *prev; /* all live connections (I/O thread only) */
    struct server *srv;
    struct ev_io io;
    pthread_mutex_t lock; /* out, fd, dead and events, against the signing threads */
    int fd;
    uint64_t serial;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    struct kl_buf in, out;
    unsigned refs;   /* jobs in flight */
    int closing;     /* close once out is flushed and no job is in flight */
    int dead;        /* fd closed; freed when refs reaches 0 */
    unsigned events; /* the interest last asked of the loop (EV_*), see the top comment */
    int stopping;    /* copy of srv->stopping, for conn_want under the lock */
    /* Timeouts (issue 13 §5, I/O thread only): the last byte read or answer retired, and
     * when the partial frame now in `in` began (0: none). */
    uint64_t last_active_ns, frame_start_ns;
};

struct server {
    const struct signer_config *cfg;
    struct p11_backend *be;
    const struct server_key *keys;
    size_t n_keys;
    struct audit_log *audit;
    struct rl_table *peer_rl;
    struct rl_bucket *key_rl;
    /* Issue 14: cfg, keys, n_keys and ticket_root are those of conf, the current one;
     * confs replaced by a reload wait in retired until their last job is back. */
    struct server_conf conf0, *conf, *retired;
    server_reload_fn reload_fn;
    void *reload_arg;
    struct jobs *jobs;
    struct ev_loop *loop;
    int listen_fd, stop_fd, rotate_fd;
    struct ev_io listen_io, stop_io, rotate_io, done_io;
    uid_t self_uid;           /* getuid() at server_run: keys without allow lists */
    uint64_t rotate_retry_ns; /* audit_rotate_bytes: no new try before this after a failure */
    char *socket_path;
    struct conn *conns;
    struct conn *dead; /* closed, freed by sweep_dead() once their jobs are back */
    size_t n_conns;
    uint64_t next_serial;
    int stopping;
    uint64_t drain_deadline;
    uint64_t turn, drained_turn; /* drain_done once per loop turn, before any event */
    size_t in_flight;            /* jobs submitted and not retired yet (bounded by queue_max) */
    /* op ticket_keys (issue 11) */
    const struct p11_secret *ticket_root; /* NULL: TicketKeys is refused */
    struct rl_bucket ticket_rl;           /* [tickets] rate/burst, over all peers */
    int ticket_rl_ready;
    /* Issue 13: refusals, pings, listings rate-limited before the audit; the rest counted. */
    struct rl_audit *audit_rl;
    uint64_t audit_rl_flush_ns;
    /* Peer limits (issue 13 §5): the sweep timer closes idle and stalled connections; the
     * counts since the last report are logged (and the refusals audited) once per
     * LIMITS_REPORT_NS, never once per connection. */
    struct ev_timer sweep_timer;
    uint64_t sweep_ms;
    uint64_t n_idle_closed, n_stalled_closed, n_cap_refused;
    uid_t last_cap_uid;
    uint64_t limits_reported_ns;
};

/* A job as the server allocates it: with the conf it was authorized under (issue 14).
 * job_free() frees the whole (the job is the first member). */
struct sjob {
    struct job job;
    struct server_conf *conf;
};

/* At most one log line (and one audit record) per this long about the peer limits. */
#define LIMITS_REPORT_NS (10ull * 1000 * 1000 * 1000)

static void signal_fd(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof(one)) < 0) {
        /* already signalled: the counter is saturated, which still wakes the loop */
    }
}

static void clear_fd(int fd)
{
    uint64_t v;
    if (read(fd, &v, sizeof(v)) < 0) {
        /* EAGAIN: already consumed */
    }
}

/* ---- audit ---- */

static void audit_fill(struct audit_record *rec, const struct conn *c, const char *op, const char *key,
                       uint64_t request_id, Keyless__V1__Status st, const char *reason, uint64_t t0_ns)
{
    memset(rec, 0, sizeof(*rec));
    rec->pid = c->pid;
    rec->uid = c->uid;
    rec->gid = c->gid;
    rec->op = op;
    rec->key = key;
    rec->request_id = request_id;
    rec->status = job_status_name(st);
    rec->reason = reason;
    rec->latency_us = t0_ns != 0 ? (kl_clock_ns() - t0_ns) / 1000 : 0;
}

/* ---- issue 13: the audit rate limit (ratelimit.h, rl_audit) ---- */

/* One op "suppressed" record per peer uid with the number of records not written. */
static void flush_suppressed(struct server *srv)
{
    struct rl_audit_count cnt[16];
    size_t n;

    if (srv->audit_rl == NULL) {
        return;
    }
    while ((n = rl_audit_take(srv->audit_rl, cnt, 16)) > 0) {
        for (size_t i = 0; i < n; i++) {
            struct audit_record rec = {
                .uid = cnt[i].uid,
                .op = "suppressed",
                .reason = "refusals, pings or key listings over the audit rate limit: counted here, not one by one",
                .suppressed = cnt[i].count};
            if (audit_append(srv->audit, &rec, NULL) != 0) {
                log_errx("audit: %llu suppressed record(s) of uid %u could not be counted in the log",
                         (unsigned long long)cnt[i].count, (unsigned)cnt[i].uid);
            }
        }
    }
}

/* Append a refusal (or a non-signing answer) from the I/O thread: written before the
 * response is queued; durability follows with the next group commit. Over the audit rate
 * limit the record is only counted (0); the counts go out at most once a second. */
static int audit_now(struct server *srv, const struct audit_record *rec)
{
    if (srv->audit_rl != NULL) {
        uint64_t now = kl_clock_ns();
        if (!rl_audit_admit(srv->audit_rl, (uint32_t)rec->uid, now)) {
            return 0;
        }
        if (now - srv->audit_rl_flush_ns >= 1000000000ULL && rl_audit_pending(srv->audit_rl)) {
            srv->audit_rl_flush_ns = now;
            flush_suppressed(srv);
        }
    }
    int ret = audit_append(srv->audit, rec, NULL);
    if (ret != 0) {
        log_errx("audit: append failed: %s", kl_err_str(ret));
        signer_metrics_audit_failure();
    }
    return ret;
}

/* ---- connections ---- */

/* The interest c needs now. Called with c->lock held, from any thread. */
static unsigned conn_want(const struct conn *c)
{
    unsigned want = 0;
    if (!c->closing && !c->stopping && c->out.len < OUT_HIGH) {
        want |= EV_READ;
    }
    if (c->out.len > 0) {
        want |= EV_WRITE;
    }
    return want;
}

/* I/O thread only, with c->lock held: ask the loop for the interest c needs now. */
static void conn_update_events(struct server *srv, struct conn *c)
{
    unsigned want;
    if (c->dead) {
        return;
    }
    want = conn_want(c);
    if (want != c->events) {
        ev_io_set(srv->loop, &c->io, want);
        c->events = want;
    }
}

static void conn_free(struct conn *c)
{
    kl_buf_dispose(&c->in);
    kl_buf_dispose(&c->out);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/*
 * Close the socket now. The struct is only freed by sweep_dead() after the turn, once
 * its last job has come back: events later in the same turn are skipped by the loop
 * (ev_io_close), and jobs still in the signing threads' hands see c->dead.
 */
static void conn_kill(struct server *srv, struct conn *c)
{
    if (c->dead) {
        return;
    }
    pthread_mutex_lock(&c->lock);
    ev_io_close(srv->loop, &c->io);
    close(c->fd);
    c->fd = -1;
    c->dead = 1;
    pthread_mutex_unlock(&c->lock);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        srv->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    srv->n_conns--;
    c->prev = NULL;
    c->next = srv->dead;
    srv->dead = c;
}

static void sweep_dead(struct server *srv)
{
    struct conn **pp = &srv->dead;
    while (*pp != NULL) {
        struct conn *c = *pp;
        if (c->refs == 0) {
            *pp = c->next;
            conn_free(c);
        } else {
            pp = &c->next;
        }
    }
}

/* Send what c->out holds, as far as the socket takes it. Called with c->lock held;
 * -1 if the peer is gone. */
static int out_send(struct conn *c)
{
    while (c->out.len > 0) {
        ssize_t n = send(c->fd, c->out.base, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (n <= 0) {
            return -1;
        }
        kl_buf_consume(&c->out, (size_t)n);
    }
    return 0;
}

static void conn_flush(struct server *srv, struct conn *c)
{
    int gone, done;
    if (c->dead) {
        return;
    }
    pthread_mutex_lock(&c->lock);
    gone = out_send(c) != 0;
    done = c->closing && c->out.len == 0 && c->refs == 0;
    if (!gone && !done) {
        conn_update_events(srv, c);
    }
    pthread_mutex_unlock(&c->lock);
    if (gone || done) {
        conn_kill(srv, c);
    }
}

/* A TicketKeysResponse (issue 11) and the storage its keys point into; tj borrowed. */
struct ticket_answer {
    Keyless__V1__Response resp;
    Keyless__V1__TicketKeysResponse tr;
    Keyless__V1__TicketKey keys[TICKETS_MAX_EPOCHS];
    Keyless__V1__TicketKey *ptrs[TICKETS_MAX_EPOCHS];
};

static void ticket_answer_init(struct ticket_answer *a, uint64_t id, Keyless__V1__Status st, const char *message,
                               const struct tickets_job *tj)
{
    keyless__v1__response__init(&a->resp);
    a->resp.id = id;
    a->resp.body_case = KEYLESS__V1__RESPONSE__BODY_TICKET_KEYS;
    a->resp.ticket_keys = &a->tr;
    tickets_response(&a->tr, a->keys, a->ptrs, st, message, tj);
}

/*
 * jobs_env.deliver, on the thread that finished j: put j's response on its connection
 * and, with send, send everything queued there right away (send = 0: a later deliver of
 * the same batch, or job_retire's conn_flush, sends it in the same write). Urgent (1)
 * when the I/O thread must look now: the answer was not queued, the connection is
 * closing or gone, or its interest must change.
 */
static int conn_deliver(void *arg, struct job *j, int send)
{
    Keyless__V1__Response resp = KEYLESS__V1__RESPONSE__INIT;
    Keyless__V1__SignResponse sr = KEYLESS__V1__SIGN_RESPONSE__INIT;
    struct ticket_answer ta;
    const ProtobufCMessage *msg = &resp.base;
    struct conn *c = j->conn;
    int interest_changes = 0;
    (void)arg;
    resp.id = j->id;
    resp.body_case = KEYLESS__V1__RESPONSE__BODY_SIGN;
    resp.sign = &sr;
    sr.status = j->status;
    sr.message = (char *)(j->message != NULL ? j->message : "");
    sr.signature.data = j->sig;
    sr.signature.len = j->sig_len;
    if (j->tickets != NULL) {
        ticket_answer_init(&ta, j->id, j->status, j->message, j->tickets);
        msg = &ta.resp.base;
    }
    pthread_mutex_lock(&c->lock);
    j->conn_closing = c->closing || c->dead;
    if (!c->dead) {
        if (frame_append(&c->out, msg) != 0) {
            j->overflow = 1;
        } else {
            j->sent = 1;
            /* A send error is left for the I/O thread to notice on the socket. */
            /* Only interest to add needs the I/O thread now (EV_WRITE after a partial
             * send). Interest to drop can wait: a stale EV_WRITE fires at once on the
             * writable socket and conn_flush() drops it; a stale EV_READ is harmless,
             * conn_read() stops at OUT_HIGH by itself. */
            if (send && out_send(c) == 0) {
                interest_changes = (conn_want(c) & ~c->events) != 0;
            }
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (j->sent) {
        tickets_job_wipe(j->tickets); /* packed: the job's copy of the keys is not needed any more */
    }
    return j->overflow || !j->sent || j->conn_closing || interest_changes;
}

/* Queue one response on c's output. A peer that lets OUT_MAX pile up is dropped. */
static void conn_send(struct server *srv, struct conn *c, const Keyless__V1__Response *resp)
{
    int ret;
    if (c->dead) {
        return;
    }
    pthread_mutex_lock(&c->lock);
    ret = frame_append(&c->out, &resp->base);
    pthread_mutex_unlock(&c->lock);
    if (ret != 0) {
        log_warnx("conn %llu: dropping (output: %s)", (unsigned long long)c->serial, kl_err_str(ret));
        conn_kill(srv, c);
    }
}

static void send_sign_status(struct server *srv, struct conn *c, uint64_t id, Keyless__V1__Status st,
                             const char *message, const uint8_t *sig, size_t sig_len)
{
    Keyless__V1__Response resp = KEYLESS__V1__RESPONSE__INIT;
    Keyless__V1__SignResponse sr = KEYLESS__V1__SIGN_RESPONSE__INIT;
    resp.id = id;
    resp.body_case = KEYLESS__V1__RESPONSE__BODY_SIGN;
    resp.sign = &sr;
    sr.status = st;
    sr.message = (char *)(message != NULL ? message : "");
    sr.signature.data = (uint8_t *)sig;
    sr.signature.len = sig_len;
    conn_send(srv, c, &resp);
}

/* I/O thread: a TicketKeys answer (tj NULL for a refusal); tj's keys are wiped once packed. */
static void send_ticket_answer(struct server *srv, struct conn *c, uint64_t id, Keyless__V1__Status st,
                               const char *message, struct tickets_job *tj)
{
    struct ticket_answer ta;
    ticket_answer_init(&ta, id, st, message, tj);
    conn_send(srv, c, &ta.resp);
    tickets_job_wipe(tj);
}

static void conf_put(struct server *srv, struct server_conf *sc);

/* I/O thread: the bookkeeping of a finished job whose answer conn_deliver() handled; its
 * reference on the conf it was authorized under goes with it. */
static void job_retire(struct server *srv, struct job *j)
{
    struct conn *c = j->conn;
    struct server_conf *sc = ((struct sjob *)j)->conf;
    c->refs--;
    srv->in_flight--;
    signer_metrics_queue(-1);
    c->last_active_ns = kl_clock_ns();
    if (j->overflow && !c->dead) {
        log_warnx("conn %llu: dropping (it does not read its answers)", (unsigned long long)c->serial);
        conn_kill(srv, c);
    } else if (!j->sent && !c->dead && j->tickets != NULL) {
        send_ticket_answer(srv, c, j->id, j->status, j->message, j->tickets);
    } else if (!j->sent && !c->dead) {
        send_sign_status(srv, c, j->id, j->status, j->message, j->sig, j->sig_len);
    }
    job_free(j);
    conf_put(srv, sc);
    if (!c->dead) {
        conn_flush(srv, c);
    }
}

/* Results back from the signing threads: send them (or drop them for a dead peer). */
static void drain_done(struct server *srv)
{
    struct job *list = jobs_take_done(srv->jobs);
    while (list != NULL) {
        struct job *j = list;
        list = j->next;
        job_retire(srv, j);
    }
}

/*
 * Once per loop turn, before any event of the turn is handled: finished jobs first
 * (their references and in_flight), so that queue_max counts only jobs still being
 * worked on. Every callback calls it first; the loop calls it after a turn without
 * events.
 */
static void drain_once(struct server *srv)
{
    if (srv->drained_turn != srv->turn) {
        srv->drained_turn = srv->turn;
        drain_done(srv);
    }
}

/* ---- the op table and its dispatcher ---- */

/*
 * The flags decide what the dispatcher does before the operation's handler (OpenSSH's
 * mon_table): they are the only place an operation's authorization is stated.
 */
#define OP_NEEDS_KEY_AUTH 0x1 /* names a key: found, op->authorize (the policy) and the rate limits pass first */
#define OP_ASYNC 0x2          /* signed off the I/O thread: a job for jobs.c, bounded by queue_max */

struct op {
    Keyless__V1__Request__BodyCase body;
    const char *name; /* the audit record's "op" */
    unsigned flags;
    /* OP_NEEDS_KEY_AUTH: the key name the request carries. */
    const char *(*key_name)(const Keyless__V1__Request *req);
    /* OP_NEEDS_KEY_AUTH: OK, or a refusal status with a static reason. */
    Keyless__V1__Status (*authorize)(const struct server *srv, const struct conn *c, const struct server_key *k,
                                     const Keyless__V1__Request *req, const char **why_p);
    /* The request's fields for the audit record of a refusal (NULL: none). */
    void (*audit_fields)(struct audit_record *rec, const Keyless__V1__Request *req);
    /* OP_ASYNC: fill the request part of a job. */
    void (*make_job)(struct job *j, const Keyless__V1__Request *req);
    /* Not OP_ASYNC: answer now (audit included). */
    void (*handle)(struct server *srv, struct conn *c, const Keyless__V1__Request *req, uint64_t t0);
};

/* The parts of a key's config the policy reads (borrowed from kc and srv's config). */
static struct policy_key policy_key_of(const struct server *srv, const struct cfg_key *kc)
{
    struct policy_key pk = {kc->schemes, kc->n_schemes, kc->uids, kc->n_uids, kc->gids, kc->n_gids, 0, 0};
    pk.contexts = ((kc->contexts & CFG_CONTEXT_SERVER) ? POLICY_CTX_SERVER_BIT : 0) |
                  ((kc->contexts & CFG_CONTEXT_CLIENT) ? POLICY_CTX_CLIENT_BIT : 0);
    pk.allow_same_uid = srv->cfg->allow_same_uid;
    return pk;
}

static const char *sign_key_name(const Keyless__V1__Request *req)
{
    return req->sign->key;
}

static Keyless__V1__Status sign_authorize(const struct server *srv, const struct conn *c, const struct server_key *k,
                                          const Keyless__V1__Request *req, const char **why_p)
{
    const Keyless__V1__SignRequest *sr = req->sign;
    const struct policy_key pk = policy_key_of(srv, k->cfg);
    const struct policy_sign_request pr = {
        .peer_uid = c->uid,
        .peer_gid = c->gid,
        .self_uid = srv->self_uid,
        .scheme = sr->scheme,
        .context = (int)sr->context,
        .hash_len = sr->transcript_hash.len,
    };
    return policy_check_sign(why_p, &pk, &pr);
}

static void sign_audit_fields(struct audit_record *rec, const Keyless__V1__Request *req)
{
    const Keyless__V1__SignRequest *sr = req->sign;
    rec->key = sr->key;
    rec->scheme = (uint16_t)(sr->scheme <= 0xffff ? sr->scheme : 0);
    rec->context = (int)sr->context;
    rec->hash = sr->transcript_hash.data;
    rec->hash_len = sr->transcript_hash.len <= 64 ? sr->transcript_hash.len : 64;
    rec->server_name = sr->server_name;
    rec->client_address = sr->client_address;
    rec->connection_id = sr->connection_id;
}

/* src cut to cap - 1 bytes, NUL-terminated (cap > 0); NULL as "". Not snprintf: that
 * cost more than the rest of making the job (issue 15). */
static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = src != NULL ? strnlen(src, cap - 1) : 0;
    memcpy(dst, src != NULL ? src : "", n);
    dst[n] = '\0';
}

/* Only called once authorize passed: the scheme is a configured one and the hash 32 or 48 bytes. */
static void sign_make_job(struct job *j, const Keyless__V1__Request *req)
{
    const Keyless__V1__SignRequest *sr = req->sign;
    j->scheme = (uint16_t)sr->scheme;
    j->context = (int)sr->context;
    memcpy(j->hash, sr->transcript_hash.data, sr->transcript_hash.len);
    j->hash_len = sr->transcript_hash.len;
    copy_str(j->server_name, sizeof(j->server_name), sr->server_name);
    copy_str(j->client_address, sizeof(j->client_address), sr->client_address);
    j->connection_id = sr->connection_id;
}

static void handle_list_keys(struct server *srv, struct conn *c, const Keyless__V1__Request *req, uint64_t t0)
{
    Keyless__V1__Response resp = KEYLESS__V1__RESPONSE__INIT;
    Keyless__V1__ListKeysResponse lr = KEYLESS__V1__LIST_KEYS_RESPONSE__INIT;
    Keyless__V1__KeyInfo *infos = calloc(srv->n_keys, sizeof(*infos));
    Keyless__V1__KeyInfo **ptrs = calloc(srv->n_keys, sizeof(*ptrs));
    uint32_t *schemes = calloc(srv->n_keys * CFG_MAX_SCHEMES, sizeof(*schemes));
    struct audit_record rec;
    Keyless__V1__Status st = KEYLESS__V1__STATUS__OK;

    resp.id = req->id;
    resp.body_case = KEYLESS__V1__RESPONSE__BODY_LIST_KEYS;
    resp.list_keys = &lr;
    if (infos == NULL || ptrs == NULL || schemes == NULL) {
        st = KEYLESS__V1__STATUS__OVERLOADED;
    } else {
        for (size_t i = 0; i < srv->n_keys; i++) {
            const struct cfg_key *kc = srv->keys[i].cfg;
            keyless__v1__key_info__init(&infos[i]);
            infos[i].name = kc->name;
            for (size_t s = 0; s < kc->n_schemes; s++) {
                schemes[i * CFG_MAX_SCHEMES + s] = kc->schemes[s];
            }
            infos[i].schemes = &schemes[i * CFG_MAX_SCHEMES];
            infos[i].n_schemes = kc->n_schemes;
            infos[i].public_key_spki.data = (uint8_t *)p11_key_spki(srv->keys[i].p11, &infos[i].public_key_spki.len);
            ptrs[i] = &infos[i];
        }
        lr.keys = ptrs;
        lr.n_keys = srv->n_keys;
    }
    audit_fill(&rec, c, "list_keys", NULL, req->id, st, NULL, t0);
    if (audit_now(srv, &rec) != 0) {
        lr.n_keys = 0;
        st = KEYLESS__V1__STATUS__HSM_ERROR;
    }
    lr.status = st;
    conn_send(srv, c, &resp);
    free(infos);
    free(ptrs);
    free(schemes);
}

static void handle_ping(struct server *srv, struct conn *c, const Keyless__V1__Request *req, uint64_t t0)
{
    Keyless__V1__Response resp = KEYLESS__V1__RESPONSE__INIT;
    Keyless__V1__PingResponse pr = KEYLESS__V1__PING_RESPONSE__INIT;
    struct audit_record rec;
    audit_fill(&rec, c, "ping", NULL, req->id, KEYLESS__V1__STATUS__OK, NULL, t0);
    if (audit_now(srv, &rec) != 0) {
        conn_kill(srv, c);
        return;
    }
    resp.id = req->id;
    resp.body_case = KEYLESS__V1__RESPONSE__BODY_PING;
    resp.ping = &pr;
    pr.version = (char *)KL_VERSION;
    conn_send(srv, c, &resp);
}

/* ---- op ticket_keys (issue 11): ticket keys derived in the token, see tickets.h ---- */

/* Audit a refused TicketKeys request (its epochs when there are few enough to list) and answer it. */
static void ticket_refuse(struct server *srv, struct conn *c, const Keyless__V1__Request *req, Keyless__V1__Status st,
                          const char *why, uint64_t t0)
{
    const Keyless__V1__TicketKeysRequest *tr = req->ticket_keys;
    const struct cfg_tickets *tc = &srv->cfg->tickets;
    struct audit_ticket_keys info = {tc->scope, tr->rotation_seconds, NULL, tr->n_epochs, NULL};
    struct audit_record rec;

    if (tr->n_epochs <= TICKETS_MAX_EPOCHS) {
        info.epochs = tr->epochs;
    }
    audit_fill(&rec, c, "ticket_keys", tc->present ? tc->key : NULL, req->id, st, why, t0);
    rec.tickets = &info;
    if (audit_now(srv, &rec) != 0) {
        st = KEYLESS__V1__STATUS__HSM_ERROR;
        why = "the audit log cannot be written";
    }
    send_ticket_answer(srv, c, req->id, st, why, NULL);
}

/*
 * Check a TicketKeys request (tickets_check: configured, peer allowed, rotation, epochs
 * in the window), rate-limit and bound it like a sign request, then hand the derivation
 * to jobs.c: the HSM is called off the I/O thread, and the job audits and answers.
 */
static void handle_ticket_keys(struct server *srv, struct conn *c, const Keyless__V1__Request *req, uint64_t t0)
{
    const Keyless__V1__TicketKeysRequest *tr = req->ticket_keys;
    const struct cfg_tickets *tc = &srv->cfg->tickets;
    const char *why = NULL;
    Keyless__V1__Status st;
    struct job *j;
    uint64_t now;

    st = tickets_check(&why, srv->ticket_root != NULL ? tc : NULL, c->uid, c->gid, srv->self_uid, (uint64_t)time(NULL),
                       tr->rotation_seconds, tr->epochs, tr->n_epochs);
    if (st != KEYLESS__V1__STATUS__OK) {
        ticket_refuse(srv, c, req, st, why, t0);
        return;
    }
    now = kl_clock_ns();
    if ((srv->peer_rl != NULL && !rl_table_take(srv->peer_rl, (uint32_t)c->uid, now)) ||
        !rl_bucket_take(&srv->ticket_rl, now)) {
        ticket_refuse(srv, c, req, KEYLESS__V1__STATUS__RATE_LIMITED, "rate limit exceeded", t0);
        return;
    }
    if (srv->in_flight >= srv->cfg->queue_max) {
        ticket_refuse(srv, c, req, KEYLESS__V1__STATUS__OVERLOADED, "signing queue full", t0);
        return;
    }
    j = calloc(1, sizeof(struct sjob));
    if (j == NULL || (j->tickets = calloc(1, sizeof(*j->tickets))) == NULL) {
        free(j);
        ticket_refuse(srv, c, req, KEYLESS__V1__STATUS__OVERLOADED, "out of memory", t0);
        return;
    }
    j->conn = c;
    j->key_name = tc->key;
    j->id = req->id;
    j->pid = c->pid;
    j->uid = c->uid;
    j->gid = c->gid;
    j->t0_ns = t0;
    j->tickets->root = srv->ticket_root;
    j->tickets->scope = tc->scope;
    j->tickets->rotation = tr->rotation_seconds;
    j->tickets->n = tr->n_epochs;
    memcpy(j->tickets->epochs, tr->epochs, tr->n_epochs * sizeof(tr->epochs[0]));
    ((struct sjob *)j)->conf = srv->conf;
    srv->conf->refs++;
    c->refs++;
    srv->in_flight++;
    jobs_submit(srv->jobs, j);
}

void server_set_ticket_root(struct server *srv, const struct p11_secret *root)
{
    srv->ticket_root = root;
    srv->conf->ticket_root = root;
}

/* The only operations the signer performs. */
static const struct op ops[] = {
    {KEYLESS__V1__REQUEST__BODY_SIGN, "sign", OP_NEEDS_KEY_AUTH | OP_ASYNC, sign_key_name, sign_authorize,
     sign_audit_fields, sign_make_job, NULL},
    {KEYLESS__V1__REQUEST__BODY_LIST_KEYS, "list_keys", 0, NULL, NULL, NULL, NULL, handle_list_keys},
    {KEYLESS__V1__REQUEST__BODY_PING, "ping", 0, NULL, NULL, NULL, NULL, handle_ping},
    /* Names no key: handle_ticket_keys authorizes ([tickets] allow lists) and queues the job itself. */
    {KEYLESS__V1__REQUEST__BODY_TICKET_KEYS, "ticket_keys", 0, NULL, NULL, NULL, NULL, handle_ticket_keys},
};

/*
 * Refuse a request of op: audit (with the request's fields), then answer. The dispatcher
 * refuses only ops with flags, and sign is the only one: the answer is a SignResponse.
 * An op with flags and another response type would need its own refusal answer here.
 */
static void op_refuse(struct server *srv, struct conn *c, const struct op *op, const Keyless__V1__Request *req,
                      Keyless__V1__Status st, const char *why, uint64_t t0)
{
    struct audit_record rec;
    audit_fill(&rec, c, op->name, NULL, req->id, st, why, t0);
    if (op->audit_fields != NULL) {
        op->audit_fields(&rec, req);
    }
    if (audit_now(srv, &rec) != 0) {
        st = KEYLESS__V1__STATUS__HSM_ERROR;
        why = "the audit log cannot be written";
    }
    signer_metrics_sign(rec.key, rec.scheme, (int)st, t0 != 0 ? kl_clock_ns() - t0 : 0);
    send_sign_status(srv, c, req->id, st, why, NULL, 0);
}

static void bad_request(struct server *srv, struct conn *c, uint64_t id, const char *why, uint64_t t0)
{
    struct audit_record rec;
    audit_fill(&rec, c, "request", NULL, id, KEYLESS__V1__STATUS__BAD_REQUEST, why, t0);
    signer_metrics_sign(NULL, 0, KEYLESS__V1__STATUS__BAD_REQUEST, t0 != 0 ? kl_clock_ns() - t0 : 0);
    if (audit_now(srv, &rec) != 0) {
        conn_kill(srv, c);
        return;
    }
    send_sign_status(srv, c, id, KEYLESS__V1__STATUS__BAD_REQUEST, why, NULL, 0);
}

/* The index of the key called name, or n_keys. */
static size_t key_index(const struct server *srv, const char *name)
{
    size_t i = 0;
    while (i < srv->n_keys && strcmp(srv->keys[i].cfg->name, name) != 0) {
        i++;
    }
    return i;
}

/* Run req through the op table: the flags decide the checks and where it is answered. */
static void dispatch(struct server *srv, struct conn *c, const Keyless__V1__Request *req, uint64_t t0)
{
    const struct op *op = NULL;
    const struct server_key *k = NULL;
    Keyless__V1__Status st;
    const char *why = NULL;
    struct job *j;

    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]) && op == NULL; i++) {
        op = ops[i].body == req->body_case ? &ops[i] : NULL;
    }
    if (op == NULL) {
        bad_request(srv, c, req->id, "request has no known operation", t0);
        return;
    }
    if (op->flags & OP_NEEDS_KEY_AUTH) {
        size_t idx = key_index(srv, op->key_name(req));
        uint64_t now;
        if (idx == srv->n_keys) {
            op_refuse(srv, c, op, req, KEYLESS__V1__STATUS__UNKNOWN_KEY, "no such key", t0);
            return;
        }
        k = &srv->keys[idx];
        if ((st = op->authorize(srv, c, k, req, &why)) != KEYLESS__V1__STATUS__OK) {
            op_refuse(srv, c, op, req, st, why, t0);
            return;
        }
        now = kl_clock_ns();
        if ((srv->peer_rl != NULL && !rl_table_take(srv->peer_rl, (uint32_t)c->uid, now)) ||
            !rl_bucket_take(&srv->key_rl[idx], now)) {
            op_refuse(srv, c, op, req, KEYLESS__V1__STATUS__RATE_LIMITED, "rate limit exceeded", t0);
            return;
        }
    }
    if (!(op->flags & OP_ASYNC)) {
        op->handle(srv, c, req, t0);
        return;
    }
    /* OP_ASYNC implies OP_NEEDS_KEY_AUTH (checked in server_new): k is the key to sign with. */
    j = calloc(1, sizeof(struct sjob));
    if (j == NULL) {
        op_refuse(srv, c, op, req, KEYLESS__V1__STATUS__OVERLOADED, "out of memory", t0);
        return;
    }
    /* Bound every job not yet back on this thread (queued, signing, waiting for the audit,
     * done): that bounds the signer's memory however fast peers send. */
    if (srv->in_flight >= srv->cfg->queue_max) {
        free(j);
        op_refuse(srv, c, op, req, KEYLESS__V1__STATUS__OVERLOADED, "signing queue full", t0);
        return;
    }
    j->conn = c;
    j->key_name = k->cfg->name;
    j->key = k->p11;
    j->id = req->id;
    j->pid = c->pid;
    j->uid = c->uid;
    j->gid = c->gid;
    j->t0_ns = t0;
    op->make_job(j, req);
    ((struct sjob *)j)->conf = srv->conf;
    srv->conf->refs++;
    c->refs++;
    srv->in_flight++;
    signer_metrics_queue(1);
    jobs_submit(srv->jobs, j);
}

/* ---- framing ---- */

/* Best effort: the id (field 1, varint) at the start of a Request that does not unpack. */
static uint64_t salvage_id(const uint8_t *p, size_t len)
{
    uint64_t v = 0;
    if (len < 2 || p[0] != 0x08) {
        return 0;
    }
    for (size_t i = 1; i < len && i < 11; i++) {
        v |= (uint64_t)(p[i] & 0x7f) << (7 * (i - 1));
        if ((p[i] & 0x80) == 0) {
            return v;
        }
    }
    return 0;
}

/* server_decode_request with the unpack's memory from alloc (NULL: malloc). */
static int decode_request(Keyless__V1__Request **req_p, uint64_t *id_p, size_t *used_p, const uint8_t *buf, size_t len,
                          ProtobufCAllocator *alloc)
{
    struct kl_span body;
    size_t used = 0;
    int ret;

    *req_p = NULL;
    *id_p = 0;
    *used_p = 0;
    if ((ret = frame_next(&body, &used, buf, len)) != 0) {
        return ret;
    }
    *used_p = used;
    *req_p = keyless__v1__request__unpack(alloc, body.len, body.base);
    if (*req_p == NULL) {
        *id_p = salvage_id(body.base, body.len);
        return KL_ERR_PROTOBUF;
    }
    *id_p = (*req_p)->id;
    return 0;
}

int server_decode_request(Keyless__V1__Request **req_p, uint64_t *id_p, size_t *used_p, const uint8_t *buf, size_t len)
{
    return decode_request(req_p, id_p, used_p, buf, len, NULL);
}

static void conn_set_closing(struct conn *c)
{
    pthread_mutex_lock(&c->lock);
    c->closing = 1;
    pthread_mutex_unlock(&c->lock);
}

/* Room for one unpacked request on the reader's stack: a sign request takes well under
 * 1 KiB (the message structs, its strings and the hash); a larger one (long names) spills
 * to malloc (frame.h), so no size is refused here that the protobuf layer accepts. */
#define REQ_ARENA_SIZE 4096

static void conn_read(struct server *srv, struct conn *c)
{
    /* The requests are unpacked into this arena, not one malloc per field (issue 15). */
    _Alignas(max_align_t) uint8_t arena_mem[REQ_ARENA_SIZE];
    struct frame_arena arena;
    frame_arena_init(&arena, arena_mem, sizeof(arena_mem));
    for (;;) {
        ssize_t n;
        size_t off = 0;
        if (c->in.cap == c->in.len) {
            break; /* cannot happen: a whole maximal frame fits */
        }
        size_t space = c->in.cap - c->in.len;
        n = recv(c->fd, c->in.base + c->in.len, space, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (n <= 0) {
            if (n == 0 && c->in.len > 0) {
                bad_request(srv, c, 0, "connection closed inside a frame (truncated)", kl_clock_ns());
                c->in.len = 0;
            }
            /* The peer is gone or half-closed: answer what is in flight, then close. */
            conn_set_closing(c);
            break;
        }
        c->in.len += (size_t)n;
        c->last_active_ns = kl_clock_ns();
        for (;;) {
            Keyless__V1__Request *req;
            uint64_t id, t0 = kl_clock_ns();
            size_t used;
            int ret;
            frame_arena_reset(&arena);
            ret = decode_request(&req, &id, &used, c->in.base + off, c->in.len - off, &arena.pc);
            if (ret == KL_ERR_WANT_READ) {
                break;
            }
            if (ret == KL_ERR_FRAME_TOO_BIG) {
                /* The stream cannot be resynchronised after an oversize header. */
                bad_request(srv, c, 0, "frame over FRAME_MAX", t0);
                conn_set_closing(c);
                c->in.len = 0;
                goto done;
            }
            if (ret != 0) {
                bad_request(srv, c, id, "request does not decode", t0);
            } else {
                dispatch(srv, c, req, t0);
                keyless__v1__request__free_unpacked(req, &arena.pc);
            }
            if (c->dead) {
                return;
            }
            off += used;
        }
        kl_buf_consume(&c->in, off);
        /* A frame begun and not whole yet: frame_timeout counts from its first byte. */
        if (c->in.len == 0) {
            c->frame_start_ns = 0;
        } else if (c->frame_start_ns == 0 || off > 0) {
            c->frame_start_ns = c->last_active_ns;
        }
        pthread_mutex_lock(&c->lock);
        int full = c->out.len >= OUT_HIGH;
        pthread_mutex_unlock(&c->lock);
        /* A read that did not fill the buffer emptied the socket: the loop is level-
         * triggered and reports what comes next, so no second recv() only to hear EAGAIN
         * (issue 15: one system call less per request at one request in flight). */
        if (full || (size_t)n < space) {
            break;
        }
    }
done:
    if (!c->dead) {
        conn_flush(srv, c);
    }
}

/* ---- loop callbacks ---- */

static void conn_cb(struct ev_loop *loop, struct ev_io *io, unsigned revents)
{
    struct conn *c = io->owner;
    struct server *srv = c->srv;
    (void)loop;
    drain_once(srv);
    if (c->dead) {
        return; /* killed by a result drained just now */
    }
    if ((revents & (EV_RDHUP | EV_ERROR)) && c->closing) {
        conn_kill(srv, c); /* gone both ways: nobody will read the answers */
    } else if ((revents & (EV_READ | EV_RDHUP | EV_ERROR)) && !c->closing) {
        conn_read(srv, c);
    } else if (revents & EV_WRITE) {
        conn_flush(srv, c);
    }
}

/* ---- peer limits (issue 13 §5) ---- */

static unsigned conns_of_uid(const struct server *srv, uid_t uid)
{
    unsigned n = 0;
    for (const struct conn *c = srv->conns; c != NULL; c = c->next) {
        n += c->uid == uid;
    }
    return n;
}

/* The counts since the last report: one log line, and one audit record for the refusals.
 * force: report now (at stop), whenever the last report was. */
static void limits_report(struct server *srv, uint64_t now, int force)
{
    if (srv->n_idle_closed + srv->n_stalled_closed + srv->n_cap_refused == 0 ||
        (!force && now - srv->limits_reported_ns < LIMITS_REPORT_NS)) {
        return;
    }
    srv->limits_reported_ns = now;
    if (srv->n_idle_closed + srv->n_stalled_closed > 0) {
        log_info("closed %llu idle connection(s) (idle_timeout %u ms) and %llu with a partial frame "
                 "(frame_timeout %u ms)",
                 (unsigned long long)srv->n_idle_closed, srv->cfg->idle_timeout_ms,
                 (unsigned long long)srv->n_stalled_closed, srv->cfg->frame_timeout_ms);
    }
    if (srv->n_cap_refused > 0) {
        char why[160];
        struct audit_record rec;
        struct conn peer;
        memset(&peer, 0, sizeof(peer));
        peer.uid = srv->last_cap_uid;
        peer.pid = 0;
        snprintf(why, sizeof(why), "%llu connection(s) over max_connections_per_uid (%u)",
                 (unsigned long long)srv->n_cap_refused, srv->cfg->max_connections_per_uid);
        log_warnx("refused %s; last from uid %u", why, (unsigned)srv->last_cap_uid);
        audit_fill(&rec, &peer, "connect", NULL, 0, KEYLESS__V1__STATUS__OVERLOADED, why, 0);
        (void)audit_now(srv, &rec);
    }
    srv->n_idle_closed = srv->n_stalled_closed = srv->n_cap_refused = 0;
}

/* Close connections idle past idle_timeout (nothing in flight, nothing to send) and those
 * whose partial frame is older than frame_timeout, then report. */
static void sweep_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct server *srv = t->owner;
    uint64_t now, idle_ns = (uint64_t)srv->cfg->idle_timeout_ms * 1000000ull;
    uint64_t frame_ns = (uint64_t)srv->cfg->frame_timeout_ms * 1000000ull;
    struct conn *c;

    /* The results first (they mark their connections active), then the time: a stamp
     * later than `now` would wrap the differences below. */
    drain_once(srv);
    now = kl_clock_ns();
    c = srv->conns;
    while (c != NULL) {
        struct conn *next = c->next;
        int out_pending, reading;
        pthread_mutex_lock(&c->lock);
        out_pending = c->out.len > 0;
        reading = c->out.len < OUT_HIGH; /* a peer held back by its own unread answers is not stalled */
        pthread_mutex_unlock(&c->lock);
        if (c->frame_start_ns != 0 && reading && now > c->frame_start_ns + frame_ns) {
            srv->n_stalled_closed++;
            conn_kill(srv, c);
        } else if (c->refs == 0 && !out_pending && c->in.len == 0 && now > c->last_active_ns + idle_ns) {
            srv->n_idle_closed++;
            conn_kill(srv, c);
        }
        c = next;
    }
    limits_report(srv, now, 0);
    if (ev_timer_start(loop, t, srv->sweep_ms) != 0) {
        log_errx("cannot re-arm the connection sweep timer");
    }
}

static void accept_cb(struct ev_loop *loop, struct ev_io *io, unsigned revents)
{
    struct server *srv = io->owner;
    (void)loop;
    (void)revents;
    drain_once(srv);
    for (;;) {
        struct ucred cred;
        socklen_t cl = sizeof(cred);
        struct conn *c;
        int allowed = 0;
        int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            return; /* EAGAIN, or EMFILE and friends: try again on the next event */
        }
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 || srv->n_conns >= srv->cfg->max_connections ||
            srv->stopping) {
            close(fd);
            continue;
        }
        if (conns_of_uid(srv, cred.uid) >= srv->cfg->max_connections_per_uid) {
            /* One peer (a compromised frontend) cannot take every slot: counted, reported
             * by the sweep in one line and one audit record per LIMITS_REPORT_NS. */
            srv->n_cap_refused++;
            srv->last_cap_uid = cred.uid;
            close(fd);
            continue;
        }
        for (size_t i = 0; i < srv->n_keys; i++) {
            const struct policy_key pk = policy_key_of(srv, srv->keys[i].cfg);
            allowed |= policy_peer_allowed(&pk, cred.uid, cred.gid, srv->self_uid);
        }
        /* A peer that may only fetch ticket keys (issue 11) is let in too. */
        allowed |=
            srv->cfg->tickets.present && tickets_peer_allowed(&srv->cfg->tickets, cred.uid, cred.gid, srv->self_uid);
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        pthread_mutex_init(&c->lock, NULL);
        c->srv = srv;
        c->fd = fd;
        c->serial = ++srv->next_serial;
        c->pid = cred.pid;
        c->uid = cred.uid;
        c->gid = cred.gid;
        if (!allowed) {
            /* A peer that may use no key at all gets nothing, not even list_keys. */
            struct audit_record rec;
            audit_fill(&rec, c, "connect", NULL, 0, KEYLESS__V1__STATUS__NOT_AUTHORIZED, "peer uid/gid may use no key",
                       0);
            (void)audit_now(srv, &rec);
            log_warnx("refused connection from uid %u gid %u pid %d", (unsigned)cred.uid, (unsigned)cred.gid,
                      (int)cred.pid);
            close(fd);
            pthread_mutex_destroy(&c->lock);
            free(c);
            continue;
        }
        kl_buf_init(&c->in, FRAME_HDR_LEN + FRAME_MAX);
        kl_buf_init(&c->out, OUT_MAX);
        if (kl_buf_reserve(&c->in, FRAME_HDR_LEN + FRAME_MAX) != 0) {
            close(fd);
            conn_free(c);
            continue;
        }
        c->last_active_ns = kl_clock_ns();
        ev_io_init(&c->io, fd, conn_cb, c);
        ev_io_set(srv->loop, &c->io, EV_READ);
        c->events = EV_READ;
        c->next = srv->conns;
        if (srv->conns != NULL) {
            srv->conns->prev = c;
        }
        srv->conns = c;
        srv->n_conns++;
    }
}

static void done_cb(struct ev_loop *loop, struct ev_io *io, unsigned revents)
{
    struct server *srv = io->owner;
    (void)loop;
    (void)revents;
    jobs_done_clear(srv->jobs);
    drain_once(srv);
}

static void stop_cb(struct ev_loop *loop, struct ev_io *io, unsigned revents)
{
    struct server *srv = io->owner;
    (void)revents;
    drain_once(srv);
    clear_fd(srv->stop_fd);
    if (srv->stopping) {
        return;
    }
    srv->stopping = 1;
    srv->drain_deadline = kl_clock_ns() + DRAIN_TIMEOUT_NS;
    ev_io_set(loop, &srv->listen_io, 0);
    for (struct conn *c = srv->conns; c != NULL; c = c->next) {
        pthread_mutex_lock(&c->lock);
        c->stopping = 1;
        conn_update_events(srv, c);
        pthread_mutex_unlock(&c->lock);
    }
}

/* ---- audit rotation (I/O thread) ---- */

/* Rotate the audit log now. at_size: the size that triggered it, 0 for SIGHUP. */
static int rotate_log(struct server *srv, uint64_t at_size)
{
    char old[512] = "";
    int ret;
    /* Blocks the loop for one fdatasync + rename: rare, and signatures keep flowing after. */
    if ((ret = audit_rotate_ex(srv->audit, old, sizeof(old))) != 0) {
        log_errx("audit: rotation failed: %s", kl_err_str(ret));
    } else if (at_size != 0) {
        log_info("audit: rotated at %llu bytes; the chain continues from %s", (unsigned long long)at_size, old);
    } else {
        log_info("audit: rotated; the chain continues from %s", old);
    }
    return ret;
}

/* ---- configuration reload (issue 14) ---- */

/* A reference on sc is dropped: a retired conf with no job left is released. */
static void conf_put(struct server *srv, struct server_conf *sc)
{
    if (--sc->refs > 0) {
        return;
    }
    for (struct server_conf **pp = &srv->retired; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == sc) {
            *pp = sc->next;
            break;
        }
    }
    if (sc->release != NULL) {
        sc->release(sc);
    }
}

static int limits_same(double rate_a, double burst_a, double rate_b, double burst_b)
{
    return rate_a == rate_b && burst_a == burst_b;
}

/* The swap: new limiters first (the only step that can fail), then the pointers. */
static int conf_swap(struct server *srv, struct server_conf *next)
{
    const struct signer_config *old = srv->cfg, *cfg = next->cfg;
    struct rl_bucket *key_rl = calloc(next->n_keys > 0 ? next->n_keys : 1, sizeof(*key_rl));
    struct rl_table *peer_rl = srv->peer_rl;
    struct server_conf *prev = srv->conf;

    if (key_rl == NULL) {
        return KL_ERR_NO_MEMORY;
    }
    if (!limits_same(old->rate_per_peer, old->burst_per_peer, cfg->rate_per_peer, cfg->burst_per_peer)) {
        peer_rl = cfg->rate_per_peer > 0 ? rl_table_new(cfg->rate_per_peer, cfg->burst_per_peer, PEER_TABLE_MAX) : NULL;
        if (peer_rl == NULL && cfg->rate_per_peer > 0) {
            free(key_rl);
            return KL_ERR_NO_MEMORY;
        }
        rl_table_free(srv->peer_rl);
    }
    srv->peer_rl = peer_rl;
    /* A key keeps its bucket's state when its name, rate and burst stay; else it starts full. */
    for (size_t i = 0; i < next->n_keys; i++) {
        const struct cfg_key *k = next->keys[i].cfg;
        rl_bucket_init(&key_rl[i], k->rate, k->burst);
        for (size_t o = 0; o < srv->n_keys; o++) {
            const struct cfg_key *ok = srv->keys[o].cfg;
            if (strcmp(ok->name, k->name) == 0 && limits_same(ok->rate, ok->burst, k->rate, k->burst)) {
                key_rl[i].tokens = srv->key_rl[o].tokens;
                key_rl[i].last_ns = srv->key_rl[o].last_ns;
                key_rl[i].started = srv->key_rl[o].started;
            }
        }
    }
    for (size_t o = 0; o < srv->n_keys; o++) {
        rl_bucket_dispose(&srv->key_rl[o]);
    }
    free(srv->key_rl);
    srv->key_rl = key_rl;
    if (!limits_same(old->tickets.rate, old->tickets.burst, cfg->tickets.rate, cfg->tickets.burst)) {
        rl_bucket_dispose(&srv->ticket_rl);
        rl_bucket_init(&srv->ticket_rl, cfg->tickets.rate, cfg->tickets.burst);
    }
    srv->conf = next;
    srv->cfg = cfg;
    srv->keys = next->keys;
    srv->n_keys = next->n_keys;
    srv->ticket_root = next->ticket_root;
    next->refs = 1; /* current */
    srv->sweep_ms = (cfg->frame_timeout_ms < cfg->idle_timeout_ms ? cfg->frame_timeout_ms : cfg->idle_timeout_ms) / 4;
    srv->sweep_ms = srv->sweep_ms < 20 ? 20 : srv->sweep_ms > 1000 ? 1000 : srv->sweep_ms;
    /* The replaced conf: released now, or by the last of its jobs. */
    prev->next = srv->retired;
    srv->retired = prev;
    conf_put(srv, prev);
    return 0;
}

static void reload(struct server *srv)
{
    struct server_conf *next = NULL;
    struct audit_record rec = {.pid = getpid(), .uid = getuid(), .gid = getgid(), .op = "reload"};
    int ret = srv->reload_fn(srv->reload_arg, &next, srv->conf);

    if (ret == 0 && (ret = conf_swap(srv, next)) != 0) {
        log_errx("reload: %s", kl_err_str(ret));
        next->release(next);
    }
    if (ret != 0) {
        log_errx("reload failed; keeping the running configuration");
        rec.status = "FAILED";
        rec.reason = "the new configuration was refused; the running one is kept (see the signer's log)";
    } else {
        log_info("reloaded %s (%zu key(s))", srv->cfg->path, srv->n_keys);
        rec.status = "OK";
        rec.config_sha256 = srv->conf->config_sha256;
    }
    signer_metrics_reload(ret == 0);
    if (audit_append(srv->audit, &rec, NULL) != 0) {
        log_errx("audit: the reload could not be recorded");
        signer_metrics_audit_failure();
    }
}

void server_set_reload(struct server *srv, server_reload_fn fn, void *arg, void (*release0)(struct server_conf *sc))
{
    srv->reload_fn = fn;
    srv->reload_arg = arg;
    srv->conf0.release = release0;
}

static void rotate_cb(struct ev_loop *loop, struct ev_io *io, unsigned revents)
{
    struct server *srv = io->owner;
    (void)loop;
    (void)revents;
    drain_once(srv);
    clear_fd(srv->rotate_fd);
    (void)rotate_log(srv, 0);
    if (srv->reload_fn != NULL) {
        reload(srv);
    }
    (void)kl_sd_notify("READY=1"); /* the SIGHUP's RELOADING=1 (main.c) is done */
}

/*
 * audit_rotate_bytes: once per loop turn, rotate when the current file has reached the
 * limit (it may exceed it by the records of one turn). A failed rotation (say, the
 * directory is not writable) is retried at most every ROTATE_RETRY_NS, not every turn.
 */
static void rotate_by_size(struct server *srv)
{
    uint64_t limit = srv->cfg->audit_rotate_bytes, size, now;
    struct audit_stats st;
    if (limit == 0) {
        return;
    }
    audit_stats(srv->audit, &st);
    if ((size = st.size) < limit) {
        return;
    }
    now = kl_clock_ns();
    if (now < srv->rotate_retry_ns) {
        return;
    }
    if (rotate_log(srv, size) != 0) {
        srv->rotate_retry_ns = now + ROTATE_RETRY_NS;
    }
}

/* ---- the server ---- */

void server_rotate(struct server *srv)
{
    signal_fd(srv->rotate_fd);
}

void server_stop(struct server *srv)
{
    signal_fd(srv->stop_fd);
}

/* Stopping: finished when nothing is in flight and every answer has gone out, or at the deadline. */
static int drained(struct server *srv)
{
    int pending_out = 0;
    for (struct conn *c = srv->conns; c != NULL; c = c->next) {
        pthread_mutex_lock(&c->lock);
        pending_out |= c->out.len > 0;
        pthread_mutex_unlock(&c->lock);
    }
    return (srv->in_flight == 0 && !pending_out) || kl_clock_ns() > srv->drain_deadline;
}

int server_run(struct server *srv)
{
    /* After the privilege drop: the uid a key without allow lists is for. */
    srv->self_uid = getuid();
    for (;;) {
        int timeout = -1;
        if (srv->stopping) {
            if (drained(srv)) {
                break;
            }
            timeout = DRAIN_POLL_MS;
        }
        if (jobs_inline_pending(srv->jobs) > 0) {
            timeout = 0; /* requests still to sign: only look at the sockets */
        }
        srv->turn++;
        if (ev_run_once(srv->loop, timeout) != 0) {
            log_err("epoll_wait");
            return KL_ERR_IO;
        }
        drain_once(srv); /* a turn without events */
        if (jobs_inline_pending(srv->jobs) > 0) {
            jobs_run_inline(srv->jobs);
            drain_done(srv);
        }
        sweep_dead(srv);
        rotate_by_size(srv);
    }
    limits_report(srv, kl_clock_ns(), 1); /* what the last interval counted */
    return 0;
}

int server_new(struct server **srv_p, const struct signer_config *cfg, struct p11_backend *be,
               const struct server_key *keys, size_t n_keys, struct audit_log *audit)
{
    int ret = 0;
    struct server *srv = calloc(1, sizeof(*srv));
    struct jobs_env env;

    *srv_p = NULL;
    KL_ENSURE(srv != NULL, KL_ERR_NO_MEMORY);
    srv->cfg = cfg;
    srv->be = be;
    srv->keys = keys;
    srv->n_keys = n_keys;
    srv->conf0.cfg = cfg;
    srv->conf0.keys = keys;
    srv->conf0.n_keys = n_keys;
    srv->conf0.refs = 1;
    srv->conf = &srv->conf0;
    srv->audit = audit;
    srv->listen_fd = srv->stop_fd = srv->rotate_fd = -1;
    srv->self_uid = getuid();
    /* The dispatcher signs an OP_ASYNC request with the key OP_NEEDS_KEY_AUTH found. */
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        unsigned f = ops[i].flags;
        KL_ENSURE((f & OP_ASYNC) ? (f & OP_NEEDS_KEY_AUTH) && ops[i].make_job != NULL : ops[i].handle != NULL,
                  KL_ERR_INVALID);
        KL_ENSURE(!(f & OP_NEEDS_KEY_AUTH) || (ops[i].key_name != NULL && ops[i].authorize != NULL), KL_ERR_INVALID);
    }
    srv->key_rl = calloc(n_keys, sizeof(*srv->key_rl));
    KL_ENSURE(srv->key_rl != NULL, KL_ERR_NO_MEMORY);
    for (size_t i = 0; i < n_keys; i++) {
        rl_bucket_init(&srv->key_rl[i], keys[i].cfg->rate, keys[i].cfg->burst);
    }
    rl_bucket_init(&srv->ticket_rl, cfg->tickets.rate, cfg->tickets.burst);
    srv->ticket_rl_ready = 1;
    if (cfg->rate_per_peer > 0) {
        srv->peer_rl = rl_table_new(cfg->rate_per_peer, cfg->burst_per_peer, PEER_TABLE_MAX);
        KL_ENSURE(srv->peer_rl != NULL, KL_ERR_NO_MEMORY);
    }
    if (cfg->audit_refusal_rate > 0) {
        srv->audit_rl = rl_audit_new(cfg->audit_refusal_rate, cfg->audit_refusal_burst, PEER_TABLE_MAX);
        KL_ENSURE(srv->audit_rl != NULL, KL_ERR_NO_MEMORY);
    }
    KL_TRY(sockdir_listen(&srv->listen_fd, cfg));
    srv->socket_path = strdup(cfg->socket_path);
    KL_ENSURE(srv->socket_path != NULL, KL_ERR_NO_MEMORY);
    srv->loop = ev_loop_new();
    srv->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    srv->rotate_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    KL_ENSURE(srv->loop != NULL && srv->stop_fd >= 0 && srv->rotate_fd >= 0, KL_ERR_IO);

    memset(&env, 0, sizeof(env));
    env.be = be;
    env.audit = audit;
    env.audit_sync = cfg->audit_sync;
    env.verify_ecdsa = cfg->verify_ecdsa;
    env.workers = cfg->workers;
    env.deliver = conn_deliver;
    env.arg = srv;
    KL_TRY(jobs_new(&srv->jobs, &env));

    ev_io_init(&srv->listen_io, srv->listen_fd, accept_cb, srv);
    ev_io_set(srv->loop, &srv->listen_io, EV_READ);
    ev_io_init(&srv->done_io, jobs_done_fd(srv->jobs), done_cb, srv);
    ev_io_set(srv->loop, &srv->done_io, EV_READ);
    ev_io_init(&srv->stop_io, srv->stop_fd, stop_cb, srv);
    ev_io_set(srv->loop, &srv->stop_io, EV_READ);
    ev_io_init(&srv->rotate_io, srv->rotate_fd, rotate_cb, srv);
    ev_io_set(srv->loop, &srv->rotate_io, EV_READ);
    /* A quarter of the shorter timeout, within 20 ms..1 s: a timeout is late by at most that. */
    srv->sweep_ms = (cfg->frame_timeout_ms < cfg->idle_timeout_ms ? cfg->frame_timeout_ms : cfg->idle_timeout_ms) / 4;
    srv->sweep_ms = srv->sweep_ms < 20 ? 20 : srv->sweep_ms > 1000 ? 1000 : srv->sweep_ms;
    ev_timer_init(&srv->sweep_timer, sweep_cb, srv);
    KL_TRY(ev_timer_start(srv->loop, &srv->sweep_timer, srv->sweep_ms));
    *srv_p = srv;
    srv = NULL;
exit:
    if (ret != 0 && ret != KL_ERR_CONFIG) {
        log_errx("cannot start the RPC server: %s (%s)", kl_err_str(ret), strerror(errno));
    }
    server_free(srv);
    return ret;
}

void server_free(struct server *srv)
{
    if (srv == NULL) {
        return;
    }
    /* The threads first: nothing touches a connection after this. The jobs they still
     * held (the drain timed out) are dropped with them, so every reference is gone. */
    jobs_free(srv->jobs);
    while (srv->conns != NULL) {
        conn_kill(srv, srv->conns);
    }
    for (struct conn *c = srv->dead; c != NULL; c = c->next) {
        c->refs = 0;
    }
    sweep_dead(srv);
    if (srv->listen_fd >= 0) {
        close(srv->listen_fd);
    }
    if (srv->socket_path != NULL) {
        (void)unlink(srv->socket_path);
        free(srv->socket_path);
    }
    if (srv->stop_fd >= 0) {
        close(srv->stop_fd);
    }
    if (srv->rotate_fd >= 0) {
        close(srv->rotate_fd);
    }
    ev_loop_free(srv->loop);
    if (srv->key_rl != NULL) {
        for (size_t i = 0; i < srv->n_keys; i++) {
            rl_bucket_dispose(&srv->key_rl[i]);
        }
    }
    free(srv->key_rl);
    if (srv->ticket_rl_ready) {
        rl_bucket_dispose(&srv->ticket_rl);
    }
    rl_table_free(srv->peer_rl);
    flush_suppressed(srv); /* counts still waiting: before the audit log closes */
    rl_audit_free(srv->audit_rl);
    /* The jobs were dropped with the threads: every conf goes, the current one too (the
     * start-up one has no release: it is the caller's). */
    while (srv->retired != NULL) {
        struct server_conf *sc = srv->retired;
        srv->retired = sc->next;
        if (sc->release != NULL) {
            sc->release(sc);
        }
    }
    if (srv->conf != NULL && srv->conf->release != NULL) {
        srv->conf->release(srv->conf);
    }
    free(srv);
}
