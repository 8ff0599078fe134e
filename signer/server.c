/*
 * server.c - Unix socket RPC: accept, SO_PEERCRED, framing, dispatch, workers, audit.
 *
 * Ownership: connections belong to the I/O thread. A job holds a reference on its
 * connection (conn->refs, touched only by the I/O thread: incremented when the job is
 * queued, decremented when its result comes back), so a connection that closes while
 * its requests are being signed is freed only once the last result has been dropped.
 *
 * Signatures are written to the socket by the thread that finished them (the worker, or
 * the audit thread once the record is durable), saving a hand-off to the I/O thread on
 * the latency path; the job still goes back to the I/O thread for the bookkeeping, which
 * it does at its next turn (it is woken for it only when that cannot wait).
 *
 * workers = 0: no worker threads. The I/O thread signs each turn's requests itself on
 * PKCS#11 session 0 (run_inline), so a signature costs one thread wake-up instead of three:
 * the lowest CPU per signature for an in-process token such as SoftHSM, at the price of
 * serving the sockets only between signatures.
 * conn->lock serialises everything that touches the output buffer, the fd and the epoll
 * interest, so frames never interleave and a closed fd is never written.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>

#include "frame.h"
#include "keyless.pb-c.h"
#include "policy.h"
#include "ratelimit.h"
#include "server.h"
#include "clock.h"

#define OUT_MAX (4u * 1024 * 1024) /* a peer that stops reading is dropped past this */
#define OUT_HIGH (256u * 1024)     /* stop reading a peer's requests while its output is this big */
#define AUDIT_STR_MAX 256          /* server_name / client_address kept for the audit line */
#define DRAIN_TIMEOUT_NS (5ull * 1000 * 1000 * 1000)
/* A size-triggered audit rotation that failed is tried again after this long. */
#define ROTATE_RETRY_NS (10ull * 1000 * 1000 * 1000)
#define PEER_TABLE_MAX 4096
/* Finished jobs that wake the I/O thread for their bookkeeping (see post_done). */
#define DONE_WAKE_BATCH 32
/* workers = 0: requests the I/O thread signs per turn before it looks at the sockets again. */
#define INLINE_TURN_MAX 32

struct conn {
    struct conn *next, *prev; /* all live connections (I/O thread only) */
    pthread_mutex_t lock;     /* out, fd, dead and events, against the signing threads */
    int fd;
    uint64_t serial;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    struct kl_buf in, out;
    unsigned refs;   /* jobs in flight */
    int closing;     /* close once out is flushed and no job is in flight */
    int dead;        /* fd closed; freed when refs reaches 0 */
    uint32_t events; /* current epoll interest */
    int stopping;    /* copy of srv->stopping, for conn_update_events under the lock */
};

struct job {
    struct job *next;
    struct conn *conn;
    size_t key_idx;
    uint64_t id;
    uint16_t scheme;
    int context;
    uint8_t hash[48];
    size_t hash_len;
    char server_name[AUDIT_STR_MAX];
    char client_address[AUDIT_STR_MAX];
    uint64_t connection_id;
    uint64_t t0_ns;
    uint64_t seq;
    /* result */
    Keyless__V1__Status status;
    const char *message;
    int sent;         /* the response went to the connection's output already */
    int conn_closing; /* seen by conn_deliver: the connection is closing or dead */
    int overflow;     /* it did not fit: the I/O thread drops the connection */
    uint8_t sig[P11_SIG_MAX];
    size_t sig_len;
};

struct jobq {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *head, *tail;
    size_t n;
};

struct worker {
    struct rpc_server *srv;
    unsigned index;
    pthread_t thread;
};

struct rpc_server {
    const struct signer_config *cfg;
    struct p11_backend *be;
    const struct rpc_key *keys;
    size_t n_keys;
    struct audit_log *audit;
    struct rl_table *peer_rl;
    struct rl_bucket *key_rl;
    int listen_fd, epfd, done_fd, stop_fd, rotate_fd;
    uint64_t rotate_retry_ns; /* audit_rotate_bytes: no new try before this after a failure */
    char *socket_path;
    struct conn *conns;
    struct conn *dead; /* closed, freed by sweep_dead() once their jobs are back */
    size_t n_conns;
    uint64_t next_serial;
    int stopping;
    struct jobq work;    /* I/O -> workers (with the others, bounded by queue_max) */
    struct jobq durable; /* workers -> audit waiter */
    struct jobq done;    /* audit waiter / workers -> I/O */
    int threads_stop;
    struct worker *workers;
    unsigned n_workers;                    /* 0: the I/O thread signs (run_inline) */
    struct job *inline_head, *inline_tail; /* workers = 0: queued in this turn (I/O thread only) */
    size_t inline_n;
    pthread_t audit_thread;
    int audit_thread_started;
    size_t in_flight;
};

/* Tags for epoll data.ptr that are not connections. */
static char tag_listen, tag_done, tag_stop, tag_rotate;

static const char *status_name(Keyless__V1__Status st)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&keyless__v1__status__descriptor, (int)st);
    return v != NULL ? v->name : "STATUS_UNSPECIFIED";
}

/* ---- job queues ---- */

static void jobq_init(struct jobq *q)
{
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    q->head = q->tail = NULL;
    q->n = 0;
}

static void jobq_dispose(struct jobq *q)
{
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
}

/* Append j and return how many jobs the queue holds now; with max > 0, refuse (return -1)
 * when n already reached max. */
static long jobq_push(struct jobq *q, struct job *j, size_t max)
{
    long n;
    pthread_mutex_lock(&q->lock);
    if (max > 0 && q->n >= max) {
        pthread_mutex_unlock(&q->lock);
        return -1;
    }
    j->next = NULL;
    if (q->tail != NULL) {
        q->tail->next = j;
    } else {
        q->head = j;
    }
    q->tail = j;
    n = (long)++q->n;
    pthread_mutex_unlock(&q->lock);
    /* Signalled after the unlock: a taker woken under the lock would only block on it
     * again (two more futex calls and a context switch per job on this path). */
    pthread_cond_signal(&q->cond);
    return n;
}

/* Take everything (all = 1) or one job; blocks while empty unless *stop is set. */
static struct job *jobq_take(struct jobq *q, int all, const int *stop)
{
    struct job *j;
    pthread_mutex_lock(&q->lock);
    while (q->head == NULL && !__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
        pthread_cond_wait(&q->cond, &q->lock);
    }
    j = q->head;
    if (j != NULL) {
        if (all) {
            q->head = q->tail = NULL;
            q->n = 0;
        } else {
            q->head = j->next;
            if (q->head == NULL) {
                q->tail = NULL;
            }
            j->next = NULL;
            q->n--;
        }
    }
    pthread_mutex_unlock(&q->lock);
    return j;
}

static void jobq_wake_all(struct jobq *q)
{
    pthread_mutex_lock(&q->lock);
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

static void job_free(struct job *j)
{
    sodium_memzero(j->sig, sizeof(j->sig));
    free(j);
}

static void conn_deliver(struct rpc_server *srv, struct job *j);

/* Answer j on its connection now, then hand the job to the I/O thread for bookkeeping.
 * The I/O thread takes the done list at every turn of its loop, so it is woken only when
 * the job needs it now (the answer could not be queued, the connection is closing or
 * gone) or the list grows long; a signature costs no I/O-thread wake-up otherwise. */
static void post_done(struct rpc_server *srv, struct job *j)
{
    uint64_t one = 1;
    conn_deliver(srv, j);
    int urgent = j->overflow || !j->sent || j->conn_closing;
    if (jobq_push(&srv->done, j, 0) >= DONE_WAKE_BATCH || urgent) {
        if (write(srv->done_fd, &one, sizeof(one)) < 0) {
            /* the counter is saturated, which still wakes the loop */
        }
    }
}

/* Replace j's answer by an HSM_ERROR without a signature. */
static void withhold(struct job *j, const char *why)
{
    sodium_memzero(j->sig, sizeof(j->sig));
    j->sig_len = 0;
    j->status = KEYLESS__V1__STATUS__HSM_ERROR;
    j->message = why;
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
    rec->status = status_name(st);
    rec->reason = reason;
    rec->latency_us = t0_ns != 0 ? (kl_clock_ns() - t0_ns) / 1000 : 0;
}

/* Append a refusal (or a non-signing answer) from the I/O thread: written before the
 * response is queued; durability follows with the next group commit. */
static int audit_now(struct rpc_server *srv, const struct audit_record *rec)
{
    int ret = audit_append(srv->audit, rec, NULL);
    if (ret != 0) {
        fprintf(stderr, "keyless-signer: audit: append failed: %s\n", kl_err_str(ret));
    }
    return ret;
}

/* ---- signing ---- */

/*
 * Sign j on PKCS#11 session `session` and append its audit record. Returns 1 if the answer
 * must wait for the record to be durable (a signature, audit_sync group/always), 0 if it can
 * go now (a failure, or audit_sync none). Either way j holds the answer to send.
 */
static int sign_job(struct rpc_server *srv, unsigned session, struct job *j)
{
    const struct rpc_key *k = &srv->keys[j->key_idx];
    uint8_t content[POLICY_MAX_CONTENT];
    size_t content_len = 0;
    struct audit_record rec;
    int ret;

    j->sig_len = sizeof(j->sig);
    ret = policy_build_content(content, &content_len, j->context, j->hash, j->hash_len);
    if (ret == 0) {
        ret = p11_sign(srv->be, j->sig, &j->sig_len, session, k->p11, j->scheme, content, content_len);
    }
    if (ret == 0) {
        j->status = KEYLESS__V1__STATUS__OK;
    } else {
        withhold(j, ret == KL_ERR_CRYPTO ? "the token's signature did not verify" : "the HSM failed to sign");
    }
    memset(&rec, 0, sizeof(rec));
    rec.pid = j->conn->pid; /* immutable after accept: safe to read here */
    rec.uid = j->conn->uid;
    rec.gid = j->conn->gid;
    rec.op = "sign";
    rec.key = k->cfg->name;
    rec.scheme = j->scheme;
    rec.context = j->context;
    rec.hash = j->hash;
    rec.hash_len = j->hash_len;
    rec.server_name = j->server_name;
    rec.client_address = j->client_address;
    rec.connection_id = j->connection_id;
    rec.request_id = j->id;
    rec.status = status_name(j->status);
    rec.reason = j->status == KEYLESS__V1__STATUS__OK ? NULL : j->message;
    rec.latency_us = (kl_clock_ns() - j->t0_ns) / 1000;
    /* A signature waits for its record (its waiter runs the sync); a failure does not, and
     * leaves its record to the flusher. */
    int waits = j->status == KEYLESS__V1__STATUS__OK && srv->cfg->audit_sync != AUDIT_SYNC_NONE;
    if ((ret = audit_append(srv->audit, &rec, waits ? &j->seq : NULL)) != 0) {
        /* No record, no signature: fail closed. */
        fprintf(stderr, "keyless-signer: audit: append failed (%s); withholding signature\n", kl_err_str(ret));
        withhold(j, "the audit log cannot be written");
        return 0;
    }
    return waits;
}

/* ---- workers (workers >= 1) ---- */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct rpc_server *srv = w->srv;
    struct job *j;

    while ((j = jobq_take(&srv->work, 0, &srv->threads_stop)) != NULL) {
        if (sign_job(srv, w->index, j)) {
            /* The audit thread waits for durability (one fdatasync for its whole batch)
             * while this worker goes on signing. */
            (void)jobq_push(&srv->durable, j, 0);
        } else {
            post_done(srv, j);
        }
    }
    return NULL;
}

/* Group commit: wait once for the newest record of a batch, then release the whole batch. */
static void *audit_waiter_main(void *arg)
{
    struct rpc_server *srv = arg;
    struct job *batch;

    while ((batch = jobq_take(&srv->durable, 1, &srv->threads_stop)) != NULL) {
        uint64_t max_seq = 0;
        int ret;
        for (struct job *j = batch; j != NULL; j = j->next) {
            max_seq = j->seq > max_seq ? j->seq : max_seq;
        }
        ret = audit_wait_durable(srv->audit, max_seq);
        while (batch != NULL) {
            struct job *j = batch;
            batch = j->next;
            if (ret != 0) {
                withhold(j, "the audit log cannot be made durable");
            }
            post_done(srv, j);
        }
        if (ret != 0) {
            fprintf(stderr, "keyless-signer: audit: not durable (%s); signatures withheld\n", kl_err_str(ret));
        }
    }
    return NULL;
}

/* ---- connections ---- */

/* Called with c->lock held. */
static void conn_update_events(struct rpc_server *srv, struct conn *c)
{
    uint32_t ev = 0;
    struct epoll_event e;
    if (c->dead) {
        return;
    }
    if (!c->closing && !c->stopping && c->out.len < OUT_HIGH) {
        ev |= EPOLLIN;
    }
    if (c->out.len > 0) {
        ev |= EPOLLOUT;
    }
    if (ev == c->events) {
        return;
    }
    e.events = ev;
    e.data.ptr = c;
    if (epoll_ctl(srv->epfd, EPOLL_CTL_MOD, c->fd, &e) == 0) {
        c->events = ev;
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
 * its last job has come back: events later in the same epoll batch may still name it
 * (they see c->dead), and so may jobs still in the workers' hands.
 */
static void conn_kill(struct rpc_server *srv, struct conn *c)
{
    if (c->dead) {
        return;
    }
    pthread_mutex_lock(&c->lock);
    (void)epoll_ctl(srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
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

static void sweep_dead(struct rpc_server *srv)
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

static void conn_flush(struct rpc_server *srv, struct conn *c)
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

/* Signing threads: put j's response on its connection and send it right away. */
static void conn_deliver(struct rpc_server *srv, struct job *j)
{
    Keyless__V1__Response resp = KEYLESS__V1__RESPONSE__INIT;
    Keyless__V1__SignResponse sr = KEYLESS__V1__SIGN_RESPONSE__INIT;
    struct conn *c = j->conn;
    resp.id = j->id;
    resp.body_case = KEYLESS__V1__RESPONSE__BODY_SIGN;
    resp.sign = &sr;
    sr.status = j->status;
    sr.message = (char *)(j->message != NULL ? j->message : "");
    sr.signature.data = j->sig;
    sr.signature.len = j->sig_len;
    pthread_mutex_lock(&c->lock);
    j->conn_closing = c->closing || c->dead;
    if (!c->dead) {
        if (frame_append(&c->out, &resp.base) != 0) {
            j->overflow = 1;
        } else {
            j->sent = 1;
            /* A send error is left for the I/O thread to notice on the socket. */
            if (out_send(c) == 0) {
                conn_update_events(srv, c);
            }
        }
    }
    pthread_mutex_unlock(&c->lock);
}

/* Queue one response on c's output. A peer that lets OUT_MAX pile up is dropped. */
static void conn_send(struct rpc_server *srv, struct conn *c, const Keyless__V1__Response *resp)
{
    int ret;
    if (c->dead) {
        return;
    }
    pthread_mutex_lock(&c->lock);
    ret = frame_append(&c->out, &resp->base);
    pthread_mutex_unlock(&c->lock);
    if (ret != 0) {
        fprintf(stderr, "keyless-signer: conn %llu: dropping (output: %s)\n", (unsigned long long)c->serial,
                kl_err_str(ret));
        conn_kill(srv, c);
    }
}

static void send_sign_status(struct rpc_server *srv, struct conn *c, uint64_t id, Keyless__V1__Status st,
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

/* ---- request handlers (I/O thread) ---- */

static int peer_allowed(const struct cfg_key *k, uid_t uid, gid_t gid)
{
    if (k->n_uids == 0 && k->n_gids == 0) {
        return uid == getuid();
    }
    for (size_t i = 0; i < k->n_uids; i++) {
        if (k->uids[i] == uid) {
            return 1;
        }
    }
    for (size_t i = 0; i < k->n_gids; i++) {
        if (k->gids[i] == gid) {
            return 1;
        }
    }
    return 0;
}

/* Refuse a sign request: audit, then answer. */
static void sign_refuse(struct rpc_server *srv, struct conn *c, const Keyless__V1__Request *req,
                        const Keyless__V1__SignRequest *sr, Keyless__V1__Status st, const char *why, uint64_t t0)
{
    struct audit_record rec;
    audit_fill(&rec, c, "sign", sr->key, req->id, st, why, t0);
    rec.scheme = (uint16_t)(sr->scheme <= 0xffff ? sr->scheme : 0);
    rec.context = (int)sr->context;
    rec.hash = sr->transcript_hash.data;
    rec.hash_len = sr->transcript_hash.len <= 64 ? sr->transcript_hash.len : 64;
    rec.server_name = sr->server_name;
    rec.client_address = sr->client_address;
    rec.connection_id = sr->connection_id;
    if (audit_now(srv, &rec) != 0) {
        st = KEYLESS__V1__STATUS__HSM_ERROR;
        why = "the audit log cannot be written";
    }
    send_sign_status(srv, c, req->id, st, why, NULL, 0);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src != NULL ? src : "");
}

static void handle_sign(struct rpc_server *srv, struct conn *c, const Keyless__V1__Request *req, uint64_t t0)
{
    const Keyless__V1__SignRequest *sr = req->sign;
    const struct rpc_key *k = NULL;
    size_t idx = 0;
    int scheme_ok = 0;
    uint64_t now;
    struct job *j;

    for (; idx < srv->n_keys; idx++) {
        if (strcmp(srv->keys[idx].cfg->name, sr->key) == 0) {
            k = &srv->keys[idx];
            break;
        }
    }
    if (k == NULL) {
        sign_refuse(srv, c, req, sr, KEYLESS__V1__STATUS__UNKNOWN_KEY, "no such key", t0);
        return;
    }
    if (sr->context != KEYLESS__V1__CONTEXT__SERVER_CERTIFICATE_VERIFY &&
        sr->context != KEYLESS__V1__CONTEXT__CLIENT_CERTIFICATE_VERIFY) {
        sign_refuse(srv, c, req, sr, KEYLESS__V1__STATUS__BAD_REQUEST, "context must be server or client", t0);
        return;
    }
    for (size_t i = 0; i < k->cfg->n_schemes; i++) {
        scheme_ok |= k->cfg->schemes[i] == sr->scheme;
    }
    if (!scheme_ok) {
        sign_refuse(srv, c, req, sr, KEYLESS__V1__STATUS__SCHEME_NOT_ALLOWED, "scheme not allowed for this key", t0);
        return;
    }
    if (!policy_hash_len_ok(sr->transcript_hash.len)) {
        sign_refuse(srv, c, req, sr, KEYLESS__V1__STATUS__BAD_REQUEST, "transcript hash must be 32 or 48 bytes", t0);
        return;
    }
    if (!peer_allowed(k->cfg, c->uid, c->gid)) {
        sign_refuse(srv, c, req, sr, KEYLESS__V1__STATUS__NOT_AUTHORIZED, "peer uid/gid may not use this key", t0);
        return;
    }
    now = kl_clock_ns();
    if ((srv->peer_rl != NULL && !rl_table_take(srv->peer_rl, (uint32_t)c->uid, now)) ||
        !rl_bucket_take(&srv->key_rl[idx], now)) {
        sign_refuse(srv, c, req, sr, KEYLESS__V1__STATUS__RATE_LIMITED, "rate limit exceeded", t0);
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        sign_refuse(srv, c, req, sr, KEYLESS__V1__STATUS__OVERLOADED, "out of memory", t0);
        return;
    }
    j->conn = c;
    j->key_idx = idx;
    j->id = req->id;
    j->scheme = (uint16_t)sr->scheme;
    j->context = (int)sr->context;
    memcpy(j->hash, sr->transcript_hash.data, sr->transcript_hash.len);
    j->hash_len = sr->transcript_hash.len;
    copy_str(j->server_name, sizeof(j->server_name), sr->server_name);
    copy_str(j->client_address, sizeof(j->client_address), sr->client_address);
    j->connection_id = sr->connection_id;
    j->t0_ns = t0;
    /* Bound every job not yet back on this thread (queued, signing, waiting for the audit,
     * done): that bounds the signer's memory however fast peers send. */
    if (srv->in_flight >= srv->cfg->queue_max || (srv->n_workers > 0 && jobq_push(&srv->work, j, 0) < 0)) {
        free(j);
        sign_refuse(srv, c, req, sr, KEYLESS__V1__STATUS__OVERLOADED, "signing queue full", t0);
        return;
    }
    if (srv->n_workers == 0) {
        /* Signed by this thread once the turn's input is read (run_inline). */
        if (srv->inline_tail != NULL) {
            srv->inline_tail->next = j;
        } else {
            srv->inline_head = j;
        }
        srv->inline_tail = j;
        srv->inline_n++;
    }
    c->refs++;
    srv->in_flight++;
}

static void handle_list_keys(struct rpc_server *srv, struct conn *c, const Keyless__V1__Request *req, uint64_t t0)
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

static void handle_ping(struct rpc_server *srv, struct conn *c, const Keyless__V1__Request *req, uint64_t t0)
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

/* The dispatch table: the only operations the signer performs, with their flags. */
#define OP_NEEDS_KEY_AUTH 0x1 /* peer must be allowed for the key it names (checked in the handler) */
#define OP_ASYNC 0x2          /* answered later by a worker */

static const struct rpc_op {
    Keyless__V1__Request__BodyCase body;
    const char *name;
    unsigned flags;
    void (*handle)(struct rpc_server *, struct conn *, const Keyless__V1__Request *, uint64_t);
} ops[] = {
    {KEYLESS__V1__REQUEST__BODY_SIGN, "sign", OP_NEEDS_KEY_AUTH | OP_ASYNC, handle_sign},
    {KEYLESS__V1__REQUEST__BODY_LIST_KEYS, "list_keys", 0, handle_list_keys},
    {KEYLESS__V1__REQUEST__BODY_PING, "ping", 0, handle_ping},
};

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

static void bad_request(struct rpc_server *srv, struct conn *c, uint64_t id, const char *why, uint64_t t0)
{
    struct audit_record rec;
    audit_fill(&rec, c, "request", NULL, id, KEYLESS__V1__STATUS__BAD_REQUEST, why, t0);
    if (audit_now(srv, &rec) != 0) {
        conn_kill(srv, c);
        return;
    }
    send_sign_status(srv, c, id, KEYLESS__V1__STATUS__BAD_REQUEST, why, NULL, 0);
}

static void handle_frame(struct rpc_server *srv, struct conn *c, struct kl_span body)
{
    uint64_t t0 = kl_clock_ns();
    Keyless__V1__Request *req = keyless__v1__request__unpack(NULL, body.len, body.base);
    size_t i;

    if (req == NULL) {
        bad_request(srv, c, salvage_id(body.base, body.len), "request does not decode", t0);
        return;
    }
    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (ops[i].body == req->body_case) {
            ops[i].handle(srv, c, req, t0);
            break;
        }
    }
    if (i == sizeof(ops) / sizeof(ops[0])) {
        bad_request(srv, c, req->id, "request has no known operation", t0);
    }
    keyless__v1__request__free_unpacked(req, NULL);
}

static void conn_read(struct rpc_server *srv, struct conn *c)
{
    for (;;) {
        ssize_t n;
        size_t off = 0;
        if (c->in.cap == c->in.len) {
            break; /* cannot happen: a whole maximal frame fits */
        }
        n = recv(c->fd, c->in.base + c->in.len, c->in.cap - c->in.len, MSG_DONTWAIT);
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
            pthread_mutex_lock(&c->lock);
            c->closing = 1;
            pthread_mutex_unlock(&c->lock);
            break;
        }
        c->in.len += (size_t)n;
        for (;;) {
            struct kl_span body;
            size_t used = 0;
            int ret = frame_next(&body, &used, c->in.base + off, c->in.len - off);
            if (ret == KL_ERR_WANT_READ) {
                break;
            }
            if (ret != 0) {
                /* The stream cannot be resynchronised after an oversize header. */
                bad_request(srv, c, 0, "frame over FRAME_MAX", kl_clock_ns());
                pthread_mutex_lock(&c->lock);
                c->closing = 1;
                pthread_mutex_unlock(&c->lock);
                c->in.len = 0;
                off = 0;
                goto done;
            }
            handle_frame(srv, c, body);
            if (c->dead) {
                return;
            }
            off += used;
        }
        kl_buf_consume(&c->in, off);
        pthread_mutex_lock(&c->lock);
        int full = c->out.len >= OUT_HIGH;
        pthread_mutex_unlock(&c->lock);
        if (full) {
            break;
        }
    }
done:
    if (!c->dead) {
        conn_flush(srv, c);
    }
}

static void accept_all(struct rpc_server *srv)
{
    for (;;) {
        struct ucred cred;
        socklen_t cl = sizeof(cred);
        struct epoll_event e;
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
        for (size_t i = 0; i < srv->n_keys; i++) {
            allowed |= peer_allowed(srv->keys[i].cfg, cred.uid, cred.gid);
        }
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        pthread_mutex_init(&c->lock, NULL);
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
            fprintf(stderr, "keyless-signer: refused connection from uid %u gid %u pid %d\n", (unsigned)cred.uid,
                    (unsigned)cred.gid, (int)cred.pid);
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
        e.events = EPOLLIN;
        e.data.ptr = c;
        if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
            close(fd);
            conn_free(c);
            continue;
        }
        c->events = EPOLLIN;
        c->next = srv->conns;
        if (srv->conns != NULL) {
            srv->conns->prev = c;
        }
        srv->conns = c;
        srv->n_conns++;
    }
}

/* I/O thread: the bookkeeping of a finished job whose answer conn_deliver() handled. */
static void job_retire(struct rpc_server *srv, struct job *j)
{
    struct conn *c = j->conn;
    c->refs--;
    srv->in_flight--;
    if (j->overflow && !c->dead) {
        fprintf(stderr, "keyless-signer: conn %llu: dropping (it does not read its answers)\n",
                (unsigned long long)c->serial);
        conn_kill(srv, c);
    } else if (!j->sent && !c->dead) {
        send_sign_status(srv, c, j->id, j->status, j->message, j->sig, j->sig_len);
    }
    job_free(j);
    if (!c->dead) {
        conn_flush(srv, c);
    }
}

/* Results back from the workers / audit waiter: send them (or drop them for a dead peer).
 * Called at every turn of the I/O loop; done_fd only wakes the loop when one is urgent. */
static void drain_done(struct rpc_server *srv)
{
    struct job *list;
    pthread_mutex_lock(&srv->done.lock);
    list = srv->done.head;
    srv->done.head = srv->done.tail = NULL;
    srv->done.n = 0;
    pthread_mutex_unlock(&srv->done.lock);
    while (list != NULL) {
        struct job *j = list;
        list = j->next;
        job_retire(srv, j);
    }
}

/*
 * workers = 0: the I/O thread signs what this turn read, on PKCS#11 session 0, with no
 * hand-off to another thread. A lone request whose fdatasync can start at once also
 * gets it here (one wake-up per signature in all); a batch, or a record that would have
 * to wait (a sync running, GROUP pacing), goes to the audit thread, so this thread never
 * sleeps on the audit log.
 */
static void run_inline(struct rpc_server *srv)
{
    /* At most INLINE_TURN_MAX per turn: the sockets (accept, refusals, stop) are served
     * between batches however many requests a peer pipelined. */
    size_t n = srv->inline_n < INLINE_TURN_MAX ? srv->inline_n : INLINE_TURN_MAX;
    for (size_t i = 0; i < n; i++) {
        struct job *j = srv->inline_head;
        srv->inline_head = j->next;
        if (srv->inline_head == NULL) {
            srv->inline_tail = NULL;
        }
        srv->inline_n--;
        j->next = NULL;
        if (sign_job(srv, 0, j)) {
            /* A lone request whose sync can start now: run it here. Otherwise (a batch, a
             * sync already running, GROUP pacing) the audit thread waits, not this one. */
            int ret = n > 1 ? KL_ERR_WANT_READ : audit_sync_if_idle(srv->audit, j->seq);
            if (ret == KL_ERR_WANT_READ) {
                (void)jobq_push(&srv->durable, j, 0);
                continue;
            }
            if (ret != 0) {
                fprintf(stderr, "keyless-signer: audit: not durable (%s); signature withheld\n", kl_err_str(ret));
                withhold(j, "the audit log cannot be made durable");
            }
        }
        conn_deliver(srv, j);
        job_retire(srv, j);
    }
}

/* Does something accept on the socket at path (another signer)? */
static int socket_in_use(const char *path)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), in_use;
    if (fd < 0) {
        return 0;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path)); /* length checked by the caller */
    in_use = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return in_use;
}

static int socket_setup(struct rpc_server *srv)
{
    const struct signer_config *cfg = srv->cfg;
    char *dup = strdup(cfg->socket_path);
    char *dir = dup != NULL ? dirname(dup) : NULL;
    struct sockaddr_un sa;
    struct stat st;
    int ret = 0;

    KL_ENSURE(dir != NULL, KL_ERR_NO_MEMORY);
    if (strlen(cfg->socket_path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "keyless-signer: %s: [signer] socket: path longer than %zu bytes\n", cfg->path,
                sizeof(sa.sun_path) - 1);
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    if (cfg_mkdir_parents(dir, 0755) != 0 || (mkdir(dir, 0750) != 0 && errno != EEXIST)) {
        fprintf(stderr, "keyless-signer: %s: [signer] socket: cannot create directory %s: %s\n", cfg->path, dir,
                strerror(errno));
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    /* Only a directory of our own is tightened: never chmod a shared one like /tmp. */
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
        fprintf(stderr,
                "keyless-signer: %s: [signer] socket: directory %s must be a directory owned by the signer "
                "user (it is made 0750)\n",
                cfg->path, dir);
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    if (chmod(dir, 0750) != 0 || (cfg->has_socket_gid && chown(dir, (uid_t)-1, cfg->socket_gid) != 0)) {
        fprintf(stderr, "keyless-signer: %s: [signer] socket_group: cannot set mode/group of %s: %s\n", cfg->path, dir,
                strerror(errno));
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    if (lstat(cfg->socket_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            fprintf(stderr, "keyless-signer: %s: [signer] socket: %s exists and is not a socket\n", cfg->path,
                    cfg->socket_path);
            KL_ENSURE(0, KL_ERR_CONFIG);
        }
        if (socket_in_use(cfg->socket_path)) {
            fprintf(stderr, "keyless-signer: %s: [signer] socket: %s is in use by a running process\n", cfg->path,
                    cfg->socket_path);
            KL_ENSURE(0, KL_ERR_CONFIG);
        }
        (void)unlink(cfg->socket_path); /* stale socket of an earlier run */
    }
    srv->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    KL_ENSURE(srv->listen_fd >= 0, KL_ERR_IO);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, cfg->socket_path, strlen(cfg->socket_path));
    if (bind(srv->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || chmod(cfg->socket_path, 0660) != 0 ||
        (cfg->has_socket_gid && chown(cfg->socket_path, (uid_t)-1, cfg->socket_gid) != 0) ||
        listen(srv->listen_fd, 128) != 0) {
        fprintf(stderr, "keyless-signer: %s: [signer] socket: cannot listen on %s: %s\n", cfg->path, cfg->socket_path,
                strerror(errno));
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    srv->socket_path = strdup(cfg->socket_path);
exit:
    free(dup);
    return ret;
}

int rpc_server_new(struct rpc_server **srv_p, const struct signer_config *cfg, struct p11_backend *be,
                   const struct rpc_key *keys, size_t n_keys, struct audit_log *audit)
{
    int ret = 0;
    struct rpc_server *srv = calloc(1, sizeof(*srv));
    struct epoll_event e;

    *srv_p = NULL;
    KL_ENSURE(srv != NULL, KL_ERR_NO_MEMORY);
    srv->cfg = cfg;
    srv->be = be;
    srv->keys = keys;
    srv->n_keys = n_keys;
    srv->audit = audit;
    srv->listen_fd = srv->epfd = srv->done_fd = srv->stop_fd = srv->rotate_fd = -1;
    jobq_init(&srv->work);
    jobq_init(&srv->durable);
    jobq_init(&srv->done);
    srv->key_rl = calloc(n_keys, sizeof(*srv->key_rl));
    KL_ENSURE(srv->key_rl != NULL, KL_ERR_NO_MEMORY);
    for (size_t i = 0; i < n_keys; i++) {
        rl_bucket_init(&srv->key_rl[i], keys[i].cfg->rate, keys[i].cfg->burst);
    }
    if (cfg->rate_per_peer > 0) {
        srv->peer_rl = rl_table_new(cfg->rate_per_peer, cfg->burst_per_peer, PEER_TABLE_MAX);
        KL_ENSURE(srv->peer_rl != NULL, KL_ERR_NO_MEMORY);
    }
    KL_TRY(socket_setup(srv));
    srv->epfd = epoll_create1(EPOLL_CLOEXEC);
    srv->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    srv->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    srv->rotate_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    KL_ENSURE(srv->epfd >= 0 && srv->done_fd >= 0 && srv->stop_fd >= 0 && srv->rotate_fd >= 0, KL_ERR_IO);
    e.events = EPOLLIN;
    e.data.ptr = &tag_listen;
    KL_ENSURE(epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->listen_fd, &e) == 0, KL_ERR_IO);
    e.data.ptr = &tag_done;
    KL_ENSURE(epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->done_fd, &e) == 0, KL_ERR_IO);
    e.data.ptr = &tag_stop;
    KL_ENSURE(epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->stop_fd, &e) == 0, KL_ERR_IO);
    e.data.ptr = &tag_rotate;
    KL_ENSURE(epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->rotate_fd, &e) == 0, KL_ERR_IO);

    srv->n_workers = cfg->workers;
    srv->workers = calloc(srv->n_workers > 0 ? srv->n_workers : 1, sizeof(*srv->workers));
    KL_ENSURE(srv->workers != NULL, KL_ERR_NO_MEMORY);
    for (unsigned i = 0; i < srv->n_workers; i++) {
        srv->workers[i].srv = srv;
        srv->workers[i].index = i;
        if (pthread_create(&srv->workers[i].thread, NULL, worker_main, &srv->workers[i]) != 0) {
            srv->n_workers = i;
            KL_ENSURE(0, KL_ERR_NO_MEMORY);
        }
    }
    KL_ENSURE(pthread_create(&srv->audit_thread, NULL, audit_waiter_main, srv) == 0, KL_ERR_NO_MEMORY);
    srv->audit_thread_started = 1;
    *srv_p = srv;
    srv = NULL;
exit:
    if (ret != 0 && ret != KL_ERR_CONFIG) {
        fprintf(stderr, "keyless-signer: cannot start the RPC server: %s (%s)\n", kl_err_str(ret), strerror(errno));
    }
    rpc_server_free(srv);
    return ret;
}

void rpc_server_rotate(struct rpc_server *srv)
{
    uint64_t one = 1;
    if (write(srv->rotate_fd, &one, sizeof(one)) < 0) {
        /* already signalled */
    }
}

/* Rotate the audit log now (I/O thread). at_size: the size that triggered it, 0 for SIGHUP. */
static int rotate_log(struct rpc_server *srv, uint64_t at_size)
{
    char old[512] = "";
    int ret;
    /* Blocks the loop for one fdatasync + rename: rare, and signatures keep flowing after. */
    if ((ret = audit_rotate_ex(srv->audit, old, sizeof(old))) != 0) {
        fprintf(stderr, "keyless-signer: audit: rotation failed: %s\n", kl_err_str(ret));
    } else if (at_size != 0) {
        fprintf(stderr, "keyless-signer: audit: rotated at %llu bytes; the chain continues from %s\n",
                (unsigned long long)at_size, old);
    } else {
        fprintf(stderr, "keyless-signer: audit: rotated; the chain continues from %s\n", old);
    }
    return ret;
}

static void rotate_now(struct rpc_server *srv)
{
    uint64_t v;
    if (read(srv->rotate_fd, &v, sizeof(v)) < 0) {
        return;
    }
    (void)rotate_log(srv, 0);
}

/*
 * audit_rotate_bytes: once per loop turn, rotate when the current file has reached the
 * limit (it may exceed it by the records of one turn). A failed rotation (say, the
 * directory is not writable) is retried at most every ROTATE_RETRY_NS, not every turn.
 */
static void rotate_by_size(struct rpc_server *srv)
{
    uint64_t limit = srv->cfg->audit_rotate_bytes, size, now;
    if (limit == 0 || (size = audit_size(srv->audit)) < limit) {
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

void rpc_server_stop(struct rpc_server *srv)
{
    uint64_t one = 1;
    if (write(srv->stop_fd, &one, sizeof(one)) < 0) {
        /* already signalled */
    }
}

int rpc_server_run(struct rpc_server *srv)
{
    struct epoll_event evs[64];
    uint64_t drain_deadline = 0;

    for (;;) {
        int timeout = -1, n;
        if (srv->stopping) {
            /* Finished when nothing is in flight and every answer has gone out. */
            int pending_out = 0;
            for (struct conn *c = srv->conns; c != NULL; c = c->next) {
                pthread_mutex_lock(&c->lock);
                pending_out |= c->out.len > 0;
                pthread_mutex_unlock(&c->lock);
            }
            if ((srv->in_flight == 0 && !pending_out) || kl_clock_ns() > drain_deadline) {
                break;
            }
            timeout = 50;
        }
        if (srv->inline_head != NULL) {
            timeout = 0; /* requests still to sign: only look at the sockets */
        }
        n = epoll_wait(srv->epfd, evs, 64, timeout);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "keyless-signer: epoll_wait: %s\n", strerror(errno));
            return KL_ERR_IO;
        }
        /* Finished jobs first (their references and in_flight), so that queue_max counts
         * only jobs still being worked on and a result is never for a freed conn. */
        drain_done(srv);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &tag_listen) {
                accept_all(srv);
            } else if (p == &tag_done) {
                uint64_t cnt;
                if (read(srv->done_fd, &cnt, sizeof(cnt)) < 0) {
                    /* EAGAIN: already consumed */
                }
            } else if (p == &tag_rotate) {
                rotate_now(srv);
            } else if (p == &tag_stop) {
                uint64_t v;
                if (read(srv->stop_fd, &v, sizeof(v)) < 0) {
                    /* spurious */
                }
                if (!srv->stopping) {
                    srv->stopping = 1;
                    drain_deadline = kl_clock_ns() + DRAIN_TIMEOUT_NS;
                    (void)epoll_ctl(srv->epfd, EPOLL_CTL_DEL, srv->listen_fd, NULL);
                    for (struct conn *c = srv->conns; c != NULL; c = c->next) {
                        pthread_mutex_lock(&c->lock);
                        c->stopping = 1;
                        conn_update_events(srv, c);
                        pthread_mutex_unlock(&c->lock);
                    }
                }
            }
        }
        /* Connections second, so a result drained above is never for a freed conn. */
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == (void *)&tag_listen || c == (void *)&tag_done || c == (void *)&tag_stop ||
                c == (void *)&tag_rotate) {
                continue;
            }
            if (c->dead) {
                continue; /* killed earlier in this turn */
            }
            if ((evs[i].events & (EPOLLHUP | EPOLLERR)) && c->closing) {
                conn_kill(srv, c); /* gone both ways: nobody will read the answers */
            } else if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->closing) {
                conn_read(srv, c);
            } else if (evs[i].events & EPOLLOUT) {
                conn_flush(srv, c);
            }
        }
        run_inline(srv);
        sweep_dead(srv);
        rotate_by_size(srv);
    }
    return 0;
}

void rpc_server_free(struct rpc_server *srv)
{
    if (srv == NULL) {
        return;
    }
    __atomic_store_n(&srv->threads_stop, 1, __ATOMIC_RELEASE);
    jobq_wake_all(&srv->work);
    jobq_wake_all(&srv->durable);
    for (unsigned i = 0; i < srv->n_workers; i++) {
        pthread_join(srv->workers[i].thread, NULL);
    }
    if (srv->audit_thread_started) {
        pthread_join(srv->audit_thread, NULL);
    }
    /* Anything left (the drain timed out): drop it. */
    while (srv->inline_head != NULL) {
        struct job *j = srv->inline_head;
        srv->inline_head = j->next;
        j->conn->refs--;
        job_free(j);
    }
    struct jobq *queues[3] = {&srv->work, &srv->durable, &srv->done};
    for (size_t i = 0; i < 3; i++) {
        while (queues[i]->head != NULL) {
            struct job *j = queues[i]->head;
            queues[i]->head = j->next;
            j->conn->refs--;
            job_free(j);
        }
    }
    while (srv->conns != NULL) {
        conn_kill(srv, srv->conns);
    }
    sweep_dead(srv);
    if (srv->listen_fd >= 0) {
        close(srv->listen_fd);
    }
    if (srv->socket_path != NULL) {
        (void)unlink(srv->socket_path);
        free(srv->socket_path);
    }
    if (srv->epfd >= 0) {
        close(srv->epfd);
    }
    if (srv->done_fd >= 0) {
        close(srv->done_fd);
    }
    if (srv->stop_fd >= 0) {
        close(srv->stop_fd);
    }
    if (srv->rotate_fd >= 0) {
        close(srv->rotate_fd);
    }
    if (srv->key_rl != NULL) {
        for (size_t i = 0; i < srv->n_keys; i++) {
            rl_bucket_dispose(&srv->key_rl[i]);
        }
    }
    free(srv->key_rl);
    rl_table_free(srv->peer_rl);
    free(srv->workers);
    jobq_dispose(&srv->work);
    jobq_dispose(&srv->durable);
    jobq_dispose(&srv->done);
    free(srv);
}
