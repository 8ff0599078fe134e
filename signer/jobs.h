/*
 * jobs.h - where signatures are made: the job queues, the worker threads, the audit
 * waiter thread and the inline (workers = 0) mode.
 *
 * Threads: N workers each own PKCS#11 session N of the backend and take jobs from one
 * bounded-by-the-caller queue; one audit thread waits for the durability of signed
 * records in groups (one fdatasync per batch) and only then releases the signatures.
 * workers = 0: no worker threads; the I/O thread calls jobs_run_inline() each turn and
 * signs on session 0 itself (one thread wake-up per signature instead of three: the
 * lowest CPU per signature for an in-process token such as SoftHSM, at the price of
 * serving the sockets only between signatures). It also runs the turn's one fdatasync
 * for all the signatures it made when no sync is running; only when one is does the batch
 * go to the audit thread (whose records ride the next sync).
 *
 * The answer to a job is written by the thread that finished it (a worker, the audit
 * thread, or the I/O thread inline) through env->deliver, which saves a hand-off to the
 * I/O thread on the latency path. Answers finished together go out in one write per
 * connection: the audit thread's batch (one send for each run of jobs of one connection)
 * and the inline mode's turn (sent when the I/O thread retires them, once per connection). The job then goes on the
 * done list for the I/O thread's bookkeeping, which it takes with jobs_take_done() at every turn of its loop; the done
 * eventfd (jobs_done_fd) wakes it only when the bookkeeping cannot wait (deliver said so) or DONE_WAKE_BATCH jobs piled
 * up, so a signature costs no I/O-thread wake-up.
 *
 * A job with tickets set (issue 11) derives ticket keys instead (tickets_derive on the
 * worker's session) and goes through the same audit and delivery path.
 *
 * Fail closed: a signature (or ticket keys) whose audit record cannot be written or made
 * durable is withheld (HSM_ERROR, no signature bytes, no keys), and the buffer is wiped.
 */
#ifndef KL_SIGNER_JOBS_H
#define KL_SIGNER_JOBS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "audit.h"
#include "keyless.pb-c.h"
#include "kl_err.h"
#include "p11_backend.h"
#include "tickets.h"

#define JOB_STR_MAX 256 /* server_name / client_address kept for the audit line */

struct conn; /* the server's connection: never dereferenced here */

/*
 * One sign request. The caller fills the request part, hands it over with jobs_submit()
 * and gets it back from jobs_take_done() with the result filled; it frees it with
 * job_free(). Every field is owned by the job except key_name and key (borrowed from the
 * server's key table, which outlives every job) and conn (opaque).
 */
struct job {
    struct job *next;
    struct conn *conn;
    /* request */
    const char *key_name;
    struct p11_key *key;
    uint64_t id;
    uint16_t scheme;
    int context;
    uint8_t hash[48];
    size_t hash_len;
    char server_name[JOB_STR_MAX];
    char client_address[JOB_STR_MAX];
    uint64_t connection_id;
    pid_t pid; /* SO_PEERCRED of the connection, for the audit record */
    uid_t uid;
    gid_t gid;
    uint64_t t0_ns;
    uint64_t seq; /* the audit record's sequence number (jobs only) */
    /* result */
    Keyless__V1__Status status;
    const char *message; /* static text, NULL on OK */
    uint8_t sig[P11_SIG_MAX];
    size_t sig_len;
    /* op ticket_keys (issue 11), owned: derived instead of signed (key is NULL, key_name
     * the root's label); NULL for a sign request */
    struct tickets_job *tickets;
    /* set by env->deliver */
    int sent;         /* the response went to the connection's output already */
    int conn_closing; /* the connection was closing or dead when it was delivered */
    int overflow;     /* it did not fit: the I/O thread drops the connection */
};

struct jobs_env {
    struct p11_backend *be;
    struct audit_log *audit;
    enum audit_sync audit_sync;
    /* Verify each signature against the key's public key before release (issue 13 §5):
     * Ed25519 always (RSA in p11_sign), ECDSA only with verify_ecdsa. */
    int verify_ecdsa;
    unsigned workers; /* 0: inline mode */
    /*
     * Called on the thread that finished j (any thread) to queue j's answer on its
     * connection and, with send set, send everything the connection has queued. Sets
     * j->sent / conn_closing / overflow and returns 1 if the I/O thread must see the job
     * now (the answer could not be queued, the connection is closing or gone, or its poll
     * interest must change), 0 if it can wait for the next turn.
     * send = 0 batches answers into one write: the caller promises that the connection's
     * output is sent later, by a deliver with send set for a later job of the same
     * connection, or by the I/O thread when it retires j (which it always does).
     */
    int (*deliver)(void *arg, struct job *j, int send);
    void *arg;
};

struct jobs;

/*
 * Start the worker threads (env->workers of them) and the audit waiter. env is copied;
 * be, audit and arg are borrowed and must outlive jobs. Errors: KL_ERR_NO_MEMORY,
 * KL_ERR_IO (eventfd) with errno set.
 */
KL_MUST_CHECK int jobs_new(struct jobs **jobs_p, const struct jobs_env *env);

/* I/O thread: take ownership of j and have it signed (by a worker, or by the next
 * jobs_run_inline() when workers = 0). The caller bounds how many are in flight. */
void jobs_submit(struct jobs *jobs, struct job *j);

/* workers = 0: how many submitted jobs wait for jobs_run_inline(). */
size_t jobs_inline_pending(const struct jobs *jobs);

/*
 * workers = 0, I/O thread: sign up to JOBS_INLINE_TURN_MAX waiting jobs (the sockets are
 * served between batches however many requests a peer pipelined). Each one is
 * delivered and put on the done list without a wake-up: take them with
 * jobs_take_done() after this call.
 */
void jobs_run_inline(struct jobs *jobs);

/* The eventfd that becomes readable when jobs_take_done() should be called now. */
int jobs_done_fd(const struct jobs *jobs);

/* Reset the done eventfd (after it was readable). */
void jobs_done_clear(struct jobs *jobs);

/* I/O thread: every finished job so far, oldest first (NULL if none); the caller owns them. */
struct job *jobs_take_done(struct jobs *jobs);

/* The name of an RPC status as the audit log writes it ("OK", "HSM_ERROR", ...). */
const char *job_status_name(Keyless__V1__Status st);

/* Wipe the signature (and ticket keys) and free j. NULL is fine. */
void job_free(struct job *j);

/*
 * Stop and join the threads, then free the jobs still queued (the drain timed out) and
 * jobs itself. Jobs that were never taken are dropped without an answer. NULL is fine.
 */
void jobs_free(struct jobs *jobs);

#endif
