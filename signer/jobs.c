/*
 * jobs.c - job queues, worker threads, the audit waiter and the inline mode.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "crypto.h"
#include "jobs.h"
#include "crypto.h"
#include "kl_buf.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"

/* Finished jobs that wake the I/O thread for their bookkeeping (see post_done). */
#define DONE_WAKE_BATCH 32
/* workers = 0: requests the I/O thread signs per turn before it looks at the sockets again. */
#define JOBS_INLINE_TURN_MAX 32
/* workers = 0, answers that need no sync: held for one write at most this long, so that a
 * turn of fast (ECDSA) signatures goes out in a few writes while a slow one (RSA, about
 * 0.6 ms here) is not kept waiting behind the next ones. */
#define JOBS_INLINE_HOLD_NS 500000ull

struct jobq {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *head, *tail;
    size_t n;
};

struct worker {
    struct jobs *jobs;
    unsigned index;
    pthread_t thread;
};

struct jobs {
    struct jobs_env env;
    int done_fd;
    struct jobq work;    /* I/O -> workers */
    struct jobq durable; /* workers -> audit waiter */
    struct jobq done;    /* audit waiter / workers -> I/O */
    int threads_stop;
    struct worker *workers;
    unsigned n_workers;                    /* threads started */
    struct job *inline_head, *inline_tail; /* workers = 0: queued in this turn (I/O thread only) */
    size_t inline_n;
    pthread_t audit_thread;
    int audit_thread_started;
};

const char *job_status_name(Keyless__V1__Status st)
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
    while (q->head != NULL) {
        struct job *j = q->head;
        q->head = j->next;
        job_free(j);
    }
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
}

/* Append j and return how many jobs the queue holds now. */
static size_t jobq_push(struct jobq *q, struct job *j)
{
    size_t n;
    pthread_mutex_lock(&q->lock);
    j->next = NULL;
    if (q->tail != NULL) {
        q->tail->next = j;
    } else {
        q->head = j;
    }
    q->tail = j;
    n = ++q->n;
    pthread_mutex_unlock(&q->lock);
    /* Signalled after the unlock: a taker woken under the lock would only block on it
     * again (two more futex calls and a context switch per job on this path). */
    pthread_cond_signal(&q->cond);
    return n;
}

/* Append the list head..(NULL) in one go: a taker woken by the first job would otherwise
 * take it alone (the audit thread: one sync for it, another for the rest). */
static void jobq_push_list(struct jobq *q, struct job *head)
{
    if (head == NULL) {
        return;
    }
    pthread_mutex_lock(&q->lock);
    if (q->tail != NULL) {
        q->tail->next = head;
    } else {
        q->head = head;
    }
    for (; head != NULL; head = head->next) {
        q->tail = head;
        q->n++;
    }
    pthread_mutex_unlock(&q->lock);
    pthread_cond_signal(&q->cond);
}

/* Take everything (all = 1) or one job; blocks while empty unless *stop is set (and
 * never blocks with stop = NULL). */
static struct job *jobq_take(struct jobq *q, int all, const int *stop)
{
    struct job *j;
    pthread_mutex_lock(&q->lock);
    while (stop != NULL && q->head == NULL && !__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
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

void job_free(struct job *j)
{
    if (j == NULL) {
        return;
    }
    kl_wipe(j->sig, sizeof(j->sig));
    tickets_job_free(j->tickets);
    free(j);
}

static void wake_io(struct jobs *jobs)
{
    uint64_t one = 1;
    if (write(jobs->done_fd, &one, sizeof(one)) < 0) {
        /* the counter is saturated, which still wakes the loop */
    }
}

/* Answer j on its connection now, then hand the job to the I/O thread for bookkeeping.
 * The I/O thread takes the done list at every turn of its loop, so it is woken only when
 * the job needs it now (deliver says so) or the list grows long; a signature costs no
 * I/O-thread wake-up otherwise. */
static void post_done(struct jobs *jobs, struct job *j, int send)
{
    signer_metrics_sign(j->key_name, j->scheme, (int)j->status, kl_clock_ns() - j->t0_ns);
    int urgent = jobs->env.deliver(jobs->env.arg, j, send);
    if (jobq_push(&jobs->done, j) >= DONE_WAKE_BATCH || urgent) {
        wake_io(jobs);
    }
}

/* Replace j's answer by an HSM_ERROR without a signature. */
static void withhold(struct job *j, const char *why)
{
    kl_wipe(j->sig, sizeof(j->sig));
    tickets_job_wipe(j->tickets);
    j->sig_len = 0;
    j->status = KEYLESS__V1__STATUS__HSM_ERROR;
    j->message = why;
}

/*
 * Op ticket_keys (issue 11): derive j's ticket keys on session `session` and append the
 * audit record (epochs and key ids, never a secret). The same contract as sign_job: the
 * keys wait for their record to be durable as a signature does.
 */
static int ticket_keys_job(struct jobs *jobs, unsigned session, struct job *j)
{
    struct audit_record rec;
    struct audit_ticket_keys info;
    int ret, waits;

    if (tickets_derive(j->tickets, jobs->env.be, session) == 0) {
        j->status = KEYLESS__V1__STATUS__OK;
        j->message = NULL;
    } else {
        withhold(j, "the HSM failed to derive the ticket keys");
    }
    memset(&rec, 0, sizeof(rec));
    rec.pid = j->pid;
    rec.uid = j->uid;
    rec.gid = j->gid;
    rec.op = "ticket_keys";
    rec.key = j->key_name;
    rec.request_id = j->id;
    rec.status = job_status_name(j->status);
    rec.reason = j->status == KEYLESS__V1__STATUS__OK ? NULL : j->message;
    rec.latency_us = (kl_clock_ns() - j->t0_ns) / 1000;
    tickets_audit(&info, j->tickets);
    rec.tickets = &info;
    waits = j->status == KEYLESS__V1__STATUS__OK && jobs->env.audit_sync != AUDIT_SYNC_NONE;
    if ((ret = audit_append(jobs->env.audit, &rec, waits ? &j->seq : NULL)) != 0) {
        log_errx("audit: append failed (%s); withholding ticket keys", kl_err_str(ret));
        withhold(j, "the audit log cannot be written");
        return 0;
    }
    return waits;
}

/*
 * Issue 13 §5: check the token's signature against the key's public key before it leaves.
 * Ed25519 is deterministic, so one faulty signature can leak the key; RSA is checked in
 * p11_sign already (RSA-CRT faults); ECDSA when verify_ecdsa is set. 0, or KL_ERR_CRYPTO
 * with one log line (the caller withholds the signature: HSM_ERROR).
 */
static int verify_before_release(struct jobs *jobs, const struct job *j, const uint8_t *content, size_t content_len)
{
    const struct tls_scheme_info *si = tls_scheme_by_id(j->scheme);
    const uint8_t *spki;
    size_t spki_len = 0;
    int ret;
    if (si == NULL || si->key == TLS_KEY_RSA ||
        ((si->key == TLS_KEY_EC_P256 || si->key == TLS_KEY_EC_P384) && !jobs->env.verify_ecdsa)) {
        return 0;
    }
    spki = p11_key_spki(j->key, &spki_len);
    ret = crypto_verify_tls_signature(spki, spki_len, j->scheme, content, content_len, j->sig, j->sig_len);
    if (ret != 0) {
        log_errx("hsm: a %s signature from the token for key %s does not verify with its public key; withheld",
                 si->name, j->key_name);
        return KL_ERR_CRYPTO;
    }
    return 0;
}

/*
 * Sign j on PKCS#11 session `session` and append its audit record. Returns 1 if the answer
 * must wait for the record to be durable (a signature, audit_sync group/always), 0 if it can
 * go now (a failure, or audit_sync none). Either way j holds the answer to send.
 */
static int sign_job(struct jobs *jobs, unsigned session, struct job *j)
{
    uint8_t content[POLICY_MAX_CONTENT];
    size_t content_len = 0;
    struct audit_record rec;
    int ret;

    if (j->tickets != NULL) {
        return ticket_keys_job(jobs, session, j);
    }
    j->sig_len = sizeof(j->sig);
    ret = policy_build_content(content, &content_len, j->context, j->hash, j->hash_len);
    if (ret == 0) {
        uint64_t t0 = kl_clock_ns();
        ret = p11_sign(jobs->env.be, j->sig, &j->sig_len, session, j->key, j->scheme, content, content_len);
        signer_metrics_hsm_sign(kl_clock_ns() - t0);
    }
    if (ret == 0) {
        ret = verify_before_release(jobs, j, content, content_len);
    }
    if (ret == 0) {
        j->status = KEYLESS__V1__STATUS__OK;
        j->message = NULL;
    } else {
        withhold(j, ret == KL_ERR_CRYPTO ? "the token's signature did not verify" : "the HSM failed to sign");
    }
    memset(&rec, 0, sizeof(rec));
    rec.pid = j->pid;
    rec.uid = j->uid;
    rec.gid = j->gid;
    rec.op = "sign";
    rec.key = j->key_name;
    rec.scheme = j->scheme;
    rec.context = j->context;
    rec.hash = j->hash;
    rec.hash_len = j->hash_len;
    rec.server_name = j->server_name;
    rec.client_address = j->client_address;
    rec.connection_id = j->connection_id;
    rec.request_id = j->id;
    rec.status = job_status_name(j->status);
    rec.reason = j->status == KEYLESS__V1__STATUS__OK ? NULL : j->message;
    rec.latency_us = (kl_clock_ns() - j->t0_ns) / 1000;
    /* Issue 13: which signature left, and with which key (a hash names both exactly). */
    uint8_t sig_sha256[CRYPTO_SHA256_LEN];
    /* Hashed once when the key was found (p11_backend), not per signature. */
    const uint8_t *spki_sha256 = p11_key_spki_sha256(j->key);
    if (spki_sha256 != NULL) {
        rec.spki_sha256 = spki_sha256;
    }
    if (j->status == KEYLESS__V1__STATUS__OK) {
        crypto_sha256(sig_sha256, j->sig, j->sig_len);
        rec.sig_sha256 = sig_sha256;
    }
    /* A signature waits for its record (its waiter runs the sync); a failure does not, and
     * leaves its record to the flusher. */
    int waits = j->status == KEYLESS__V1__STATUS__OK && jobs->env.audit_sync != AUDIT_SYNC_NONE;
    if ((ret = audit_append(jobs->env.audit, &rec, waits ? &j->seq : NULL)) != 0) {
        /* No record, no signature: fail closed. */
        log_errx("audit: append failed (%s); withholding signature", kl_err_str(ret));
        signer_metrics_audit_failure();
        withhold(j, "the audit log cannot be written");
        return 0;
    }
    return waits;
}

/* ---- workers (workers >= 1) ---- */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct jobs *jobs = w->jobs;
    struct job *j;

    while ((j = jobq_take(&jobs->work, 0, &jobs->threads_stop)) != NULL) {
        if (sign_job(jobs, w->index, j)) {
            /* The audit thread waits for durability (one fdatasync for its whole batch)
             * while this worker goes on signing. */
            (void)jobq_push(&jobs->durable, j);
        } else {
            post_done(jobs, j, 1);
        }
    }
    return NULL;
}

/* Group commit: wait once for the newest record of a batch, then release the whole batch. */
static void *audit_waiter_main(void *arg)
{
    struct jobs *jobs = arg;
    struct job *batch;

    while ((batch = jobq_take(&jobs->durable, 1, &jobs->threads_stop)) != NULL) {
        uint64_t max_seq = 0;
        int ret;
        for (struct job *j = batch; j != NULL; j = j->next) {
            max_seq = j->seq > max_seq ? j->seq : max_seq;
        }
        uint64_t t0 = kl_clock_ns();
        ret = audit_wait_durable(jobs->env.audit, max_seq);
        signer_metrics_audit_sync(kl_clock_ns() - t0);
        while (batch != NULL) {
            struct job *j = batch;
            batch = j->next;
            if (ret != 0) {
                withhold(j, "the audit log cannot be made durable");
                signer_metrics_audit_failure();
            }
            /* One send per run of answers to one connection (the last of the run sends
             * them all): a batch of N answers is one write, not N. */
            post_done(jobs, j, batch == NULL || batch->conn != j->conn);
        }
        if (ret != 0) {
            log_errx("audit: not durable (%s); signatures withheld", kl_err_str(ret));
        }
    }
    return NULL;
}

/* ---- the I/O thread's side ---- */

void jobs_submit(struct jobs *jobs, struct job *j)
{
    if (jobs->env.workers > 0) {
        (void)jobq_push(&jobs->work, j);
        return;
    }
    /* Signed by the I/O thread once the turn's input is read (jobs_run_inline). */
    j->next = NULL;
    if (jobs->inline_tail != NULL) {
        jobs->inline_tail->next = j;
    } else {
        jobs->inline_head = j;
    }
    jobs->inline_tail = j;
    jobs->inline_n++;
}

size_t jobs_inline_pending(const struct jobs *jobs)
{
    return jobs->inline_n;
}

/* workers = 0: queue j's answer, sent now with send, else when the I/O thread retires it
 * (jobs_take_done right after jobs_run_inline): one write per connection for the turn. */
static void inline_done(struct jobs *jobs, struct job *j, int send)
{
    signer_metrics_sign(j->key_name, j->scheme, (int)j->status, kl_clock_ns() - j->t0_ns);
    (void)jobs->env.deliver(jobs->env.arg, j, send);
    (void)jobq_push(&jobs->done, j);
}

/*
 * workers = 0: the I/O thread signs what this turn read, on PKCS#11 session 0, with no
 * hand-off to another thread. The signatures that wait for their audit record share one
 * fdatasync, run here when it can start at once; when it cannot (a sync is running: theirs
 * rides the next one) the audit thread waits for them, so this thread never sleeps on the audit log
 * beyond its own sync.
 */
void jobs_run_inline(struct jobs *jobs)
{
    size_t n = jobs->inline_n < JOBS_INLINE_TURN_MAX ? jobs->inline_n : JOBS_INLINE_TURN_MAX;
    struct job *waiting = NULL, **tail = &waiting;
    uint64_t max_seq = 0, held_since = kl_clock_ns();
    for (size_t i = 0; i < n; i++) {
        struct job *j = jobs->inline_head;
        jobs->inline_head = j->next;
        if (jobs->inline_head == NULL) {
            jobs->inline_tail = NULL;
        }
        jobs->inline_n--;
        j->next = NULL;
        if (sign_job(jobs, 0, j)) {
            /* Waits for the turn's one sync (records are numbered in order: the last
             * one's durability covers the others). */
            max_seq = j->seq > max_seq ? j->seq : max_seq;
            *tail = j;
            tail = &j->next;
            continue;
        }
        /* A failure, or audit_sync none: nothing to wait for. */
        uint64_t now = kl_clock_ns();
        int send = now - held_since >= JOBS_INLINE_HOLD_NS;
        inline_done(jobs, j, send);
        held_since = send ? now : held_since;
    }
    if (waiting == NULL) {
        return;
    }
    int ret = audit_sync_if_idle(jobs->env.audit, max_seq);
    if (ret == KL_ERR_WANT_READ) {
        /* The audit thread waits for them and sends their answers in one write. */
        jobq_push_list(&jobs->durable, waiting);
        return;
    }
    if (ret != 0) {
        log_errx("audit: not durable (%s); signatures withheld", kl_err_str(ret));
    }
    while (waiting != NULL) {
        struct job *j = waiting;
        waiting = j->next;
        j->next = NULL;
        if (ret != 0) {
            withhold(j, "the audit log cannot be made durable");
            signer_metrics_audit_failure();
        }
        inline_done(jobs, j, 0); /* all ready at once: one write when they are retired */
    }
}

int jobs_done_fd(const struct jobs *jobs)
{
    return jobs->done_fd;
}

void jobs_done_clear(struct jobs *jobs)
{
    uint64_t cnt;
    if (read(jobs->done_fd, &cnt, sizeof(cnt)) < 0) {
        /* EAGAIN: already consumed */
    }
}

struct job *jobs_take_done(struct jobs *jobs)
{
    return jobq_take(&jobs->done, 1, NULL);
}

int jobs_new(struct jobs **jobs_p, const struct jobs_env *env)
{
    int ret = 0;
    struct jobs *jobs = calloc(1, sizeof(*jobs));

    *jobs_p = NULL;
    KL_ENSURE(jobs != NULL, KL_ERR_NO_MEMORY);
    jobs->env = *env;
    jobq_init(&jobs->work);
    jobq_init(&jobs->durable);
    jobq_init(&jobs->done);
    jobs->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    KL_ENSURE(jobs->done_fd >= 0, KL_ERR_IO);
    jobs->workers = calloc(env->workers > 0 ? env->workers : 1, sizeof(*jobs->workers));
    KL_ENSURE(jobs->workers != NULL, KL_ERR_NO_MEMORY);
    for (unsigned i = 0; i < env->workers; i++) {
        jobs->workers[i].jobs = jobs;
        jobs->workers[i].index = i;
        KL_ENSURE(pthread_create(&jobs->workers[i].thread, NULL, worker_main, &jobs->workers[i]) == 0,
                  KL_ERR_NO_MEMORY);
        jobs->n_workers = i + 1;
    }
    KL_ENSURE(pthread_create(&jobs->audit_thread, NULL, audit_waiter_main, jobs) == 0, KL_ERR_NO_MEMORY);
    jobs->audit_thread_started = 1;
    *jobs_p = jobs;
    jobs = NULL;
exit:
    jobs_free(jobs);
    return ret;
}

void jobs_free(struct jobs *jobs)
{
    if (jobs == NULL) {
        return;
    }
    __atomic_store_n(&jobs->threads_stop, 1, __ATOMIC_RELEASE);
    jobq_wake_all(&jobs->work);
    jobq_wake_all(&jobs->durable);
    for (unsigned i = 0; i < jobs->n_workers; i++) {
        pthread_join(jobs->workers[i].thread, NULL);
    }
    if (jobs->audit_thread_started) {
        pthread_join(jobs->audit_thread, NULL);
    }
    /* Anything left (the drain timed out): drop it. */
    while (jobs->inline_head != NULL) {
        struct job *j = jobs->inline_head;
        jobs->inline_head = j->next;
        job_free(j);
    }
    jobq_dispose(&jobs->work);
    jobq_dispose(&jobs->durable);
    jobq_dispose(&jobs->done);
    if (jobs->done_fd >= 0) {
        close(jobs->done_fd);
    }
    free(jobs->workers);
    free(jobs);
}
