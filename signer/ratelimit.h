/*
 * ratelimit.h - token buckets for the signer's per-peer and per-key rate limits.
 *
 * A bucket holds up to `burst` tokens and refills at `rate` tokens per second; each
 * request takes one token or is limited. A rate of 0 means unlimited (every take is
 * allowed). Time is passed in by the caller as monotonic nanoseconds (CLOCK_MONOTONIC),
 * so tests can simulate it; a clock that goes backwards adds no tokens.
 *
 * Both types are thread-safe: every take is atomic with respect to other takes.
 */
#ifndef SIGNER_RATELIMIT_H
#define SIGNER_RATELIMIT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "kl_err.h"

/* Embeddable; initialise with rl_bucket_init(), release with rl_bucket_dispose(). */
struct rl_bucket {
    pthread_mutex_t lock;
    double rate;   /* tokens per second; 0 = unlimited */
    double burst;  /* capacity */
    double tokens; /* tokens available at last_ns */
    uint64_t last_ns;
    int started; /* last_ns is meaningful */
};

/*
 * Start a bucket full (burst tokens). rate_per_s <= 0 (or NaN) means unlimited; a burst
 * below 1 is raised to 1 so that a limited bucket can ever allow anything.
 */
void rl_bucket_init(struct rl_bucket *b, double rate_per_s, double burst);

/* Take one token at time now_ns: 1 allowed, 0 limited. */
KL_MUST_CHECK int rl_bucket_take(struct rl_bucket *b, uint64_t now_ns);

/* Release the bucket's mutex. */
void rl_bucket_dispose(struct rl_bucket *b);

/*
 * A bounded table of buckets keyed by peer uid (or any 64-bit id: rl_table_take64), all
 * with the same rate and burst. It holds at most max_entries buckets.
 *
 * Eviction: when a new id arrives and the table is full, a bucket that has refilled to
 * its burst by now is dropped first; forgetting it changes nothing, because a new bucket
 * starts full too. If every bucket is still in debt, nothing is forgotten and the new id
 * is limited (fail closed): dropping a drained bucket would let a peer with many ids
 * reset its own limit. Ids are authenticated uids, so legitimate peers fit in a table
 * sized above the number of allowed uids.
 */
struct rl_table;

/* A new table; NULL if out of memory or max_entries is 0 or above 1<<24. */
struct rl_table *rl_table_new(double rate, double burst, size_t max_entries);

/* Take one token for uid at now_ns: 1 allowed, 0 limited. */
KL_MUST_CHECK int rl_table_take(struct rl_table *t, uint32_t uid, uint64_t now_ns);

/* Same, keyed by any 64-bit id (e.g. (uint64_t)key_index << 32 | uid). */
KL_MUST_CHECK int rl_table_take64(struct rl_table *t, uint64_t id, uint64_t now_ns);

/* Number of buckets the table holds now. */
size_t rl_table_count(struct rl_table *t);

/* Free the table; NULL is a no-op. */
void rl_table_free(struct rl_table *t);

/*
 * The audit limiter (issue 13): refusals, pings and key listings are rate-limited per peer
 * uid *before* they are audited, so that no peer can fill the disk with records. A record
 * over the limit is not written; it is counted per uid instead, and the caller writes one
 * aggregate record per uid with the count (rl_audit_take). Up to max_peers uids are
 * counted one by one; the rest are counted together under RL_AUDIT_OTHER_UID, so that
 * nothing goes uncounted. Thread-safe.
 */
struct rl_audit;

#define RL_AUDIT_OTHER_UID UINT32_MAX

struct rl_audit_count {
    uint32_t uid;
    uint64_t count;
};

/* A new limiter (rate per second and burst per uid); NULL if out of memory or max_peers
 * is 0 or above 65536. A rate <= 0 admits everything. */
struct rl_audit *rl_audit_new(double rate, double burst, size_t max_peers);

/* 1: write this record; 0: over the limit, counted for uid (write nothing now). */
KL_MUST_CHECK int rl_audit_admit(struct rl_audit *a, uint32_t uid, uint64_t now_ns);

/* Move up to cap suppressed counts into out (and forget them); returns how many. */
size_t rl_audit_take(struct rl_audit *a, struct rl_audit_count *out, size_t cap);

/* 1 if counts are waiting for rl_audit_take(). */
int rl_audit_pending(struct rl_audit *a);

/* Free the limiter; NULL is a no-op. */
void rl_audit_free(struct rl_audit *a);

#endif
