/*
 * ratelimit.c - token buckets, one alone or many in a bounded table keyed by peer id.
 */
#include <stdlib.h>
#include "ratelimit.h"

/* Tokens a bucket holds at now_ns: refilled at rate, capped at burst. A clock that went
 * backwards refills nothing (and does not move last_ns back). */
static double refill(double rate, double burst, double tokens, uint64_t *last_ns, uint64_t now_ns)
{
    if (now_ns > *last_ns) {
        tokens += (double)(now_ns - *last_ns) * 1e-9 * rate;
        if (tokens > burst)
            tokens = burst;
        *last_ns = now_ns;
    }
    return tokens;
}

static void params_fix(double *rate, double *burst)
{
    /* ratelimit.h: a rate that is not positive (0, negative, NaN) means unlimited; a
     * burst below one token would never allow anything, so it is raised to 1. */
    if (!(*rate > 0))
        *rate = 0;
    if (!(*burst >= 1))
        *burst = 1;
}

void rl_bucket_init(struct rl_bucket *b, double rate_per_s, double burst)
{
    params_fix(&rate_per_s, &burst);
    pthread_mutex_init(&b->lock, NULL);
    b->rate = rate_per_s;
    b->burst = burst;
    b->tokens = burst;
    b->last_ns = 0;
    b->started = 0;
}

int rl_bucket_take(struct rl_bucket *b, uint64_t now_ns)
{
    int allowed;

    if (b->rate == 0)
        return 1;
    pthread_mutex_lock(&b->lock);
    if (!b->started) {
        b->last_ns = now_ns;
        b->started = 1;
    }
    b->tokens = refill(b->rate, b->burst, b->tokens, &b->last_ns, now_ns);
    allowed = b->tokens >= 1.0;
    if (allowed)
        b->tokens -= 1.0;
    pthread_mutex_unlock(&b->lock);
    return allowed;
}

void rl_bucket_dispose(struct rl_bucket *b)
{
    pthread_mutex_destroy(&b->lock);
}

struct rl_entry {
    uint64_t id;
    uint64_t last_ns;
    double tokens;
    int used;
};

struct rl_table {
    pthread_mutex_t lock;
    double rate, burst;
    size_t max_entries, count;
    size_t mask; /* capacity - 1; capacity is a power of two >= 2 * max_entries */
    struct rl_entry *slots;
};

struct rl_table *rl_table_new(double rate, double burst, size_t max_entries)
{
    struct rl_table *t;
    size_t cap = 4;

    if (max_entries == 0 || max_entries > (1u << 24))
        return NULL;
    while (cap < 2 * max_entries)
        cap <<= 1;
    if ((t = calloc(1, sizeof(*t))) == NULL)
        return NULL;
    if ((t->slots = calloc(cap, sizeof(*t->slots))) == NULL) {
        free(t);
        return NULL;
    }
    params_fix(&rate, &burst);
    pthread_mutex_init(&t->lock, NULL);
    t->rate = rate;
    t->burst = burst;
    t->max_entries = max_entries;
    t->mask = cap - 1;
    return t;
}

static size_t slot_of(const struct rl_table *t, uint64_t id)
{
    /* splitmix64 finaliser: uids are small and sequential, spread them over the table. */
    id ^= id >> 30;
    id *= 0xbf58476d1ce4e5b9ULL;
    id ^= id >> 27;
    id *= 0x94d049bb133111ebULL;
    id ^= id >> 31;
    return (size_t)id & t->mask;
}

/* Remove slot i keeping every probe chain intact (backward-shift deletion, no tombstones). */
static void slot_remove(struct rl_table *t, size_t i)
{
    size_t j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        if (!t->slots[j].used)
            break;
        size_t home = slot_of(t, t->slots[j].id);
        /* Move j back into the hole at i unless its home lies cyclically in (i, j]. */
        int home_in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!home_in_range) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i].used = 0;
    t->count--;
}

/* Drop one bucket that has refilled to its burst by now; 1 if one was dropped. */
static int evict_full(struct rl_table *t, uint64_t now_ns)
{
    for (size_t i = 0; i <= t->mask; i++) {
        struct rl_entry *e = &t->slots[i];
        if (!e->used)
            continue;
        uint64_t last = e->last_ns;
        if (refill(t->rate, t->burst, e->tokens, &last, now_ns) >= t->burst) {
            slot_remove(t, i);
            return 1;
        }
    }
    return 0;
}

int rl_table_take64(struct rl_table *t, uint64_t id, uint64_t now_ns)
{
    int allowed = 0;
    size_t i;

    if (t->rate == 0)
        return 1;
    pthread_mutex_lock(&t->lock);
    for (i = slot_of(t, id); t->slots[i].used; i = (i + 1) & t->mask) {
        if (t->slots[i].id == id)
            break;
    }
    if (!t->slots[i].used) {
        if (t->count >= t->max_entries) {
            /* Full: forget only a bucket that holds nothing (see ratelimit.h), else fail closed. */
            if (!evict_full(t, now_ns))
                goto exit;
            for (i = slot_of(t, id); t->slots[i].used; i = (i + 1) & t->mask)
                ;
        }
        t->slots[i].used = 1;
        t->slots[i].id = id;
        t->slots[i].tokens = t->burst;
        t->slots[i].last_ns = now_ns;
        t->count++;
    }
    struct rl_entry *e = &t->slots[i];
    e->tokens = refill(t->rate, t->burst, e->tokens, &e->last_ns, now_ns);
    if (e->tokens >= 1.0) {
        e->tokens -= 1.0;
        allowed = 1;
    }
exit:
    pthread_mutex_unlock(&t->lock);
    return allowed;
}

int rl_table_take(struct rl_table *t, uint32_t uid, uint64_t now_ns)
{
    return rl_table_take64(t, uid, now_ns);
}

size_t rl_table_count(struct rl_table *t)
{
    size_t n;
    pthread_mutex_lock(&t->lock);
    n = t->count;
    pthread_mutex_unlock(&t->lock);
    return n;
}

void rl_table_free(struct rl_table *t)
{
    if (t == NULL)
        return;
    pthread_mutex_destroy(&t->lock);
    free(t->slots);
    free(t);
}

/* ---- the audit limiter: refusals, pings and listings before they are recorded ---- */

struct rl_audit {
    pthread_mutex_t lock;
    struct rl_table *buckets;
    struct rl_audit_count *pending; /* suppressed counts by uid, n of max */
    size_t n, max;
    uint64_t other; /* suppressed for uids that found no slot */
};

struct rl_audit *rl_audit_new(double rate, double burst, size_t max_peers)
{
    struct rl_audit *a;

    if (max_peers == 0 || max_peers > (1u << 16) || (a = calloc(1, sizeof(*a))) == NULL)
        return NULL;
    a->max = max_peers;
    a->buckets = rl_table_new(rate, burst, max_peers);
    a->pending = calloc(max_peers, sizeof(*a->pending));
    if (a->buckets == NULL || a->pending == NULL) {
        rl_audit_free(a);
        return NULL;
    }
    pthread_mutex_init(&a->lock, NULL);
    return a;
}

int rl_audit_admit(struct rl_audit *a, uint32_t uid, uint64_t now_ns)
{
    size_t i;

    if (rl_table_take(a->buckets, uid, now_ns))
        return 1;
    pthread_mutex_lock(&a->lock);
    for (i = 0; i < a->n && a->pending[i].uid != uid; i++)
        ;
    if (i < a->n) {
        a->pending[i].count++;
    } else if (a->n < a->max) {
        a->pending[a->n].uid = uid;
        a->pending[a->n].count = 1;
        a->n++;
    } else {
        a->other++; /* still counted, under RL_AUDIT_OTHER_UID */
    }
    pthread_mutex_unlock(&a->lock);
    return 0;
}

size_t rl_audit_take(struct rl_audit *a, struct rl_audit_count *out, size_t cap)
{
    size_t k = 0;

    pthread_mutex_lock(&a->lock);
    while (a->n > 0 && k < cap) {
        out[k++] = a->pending[--a->n];
    }
    if (a->n == 0 && a->other > 0 && k < cap) {
        out[k].uid = RL_AUDIT_OTHER_UID;
        out[k++].count = a->other;
        a->other = 0;
    }
    pthread_mutex_unlock(&a->lock);
    return k;
}

int rl_audit_pending(struct rl_audit *a)
{
    int p;
    pthread_mutex_lock(&a->lock);
    p = a->n > 0 || a->other > 0;
    pthread_mutex_unlock(&a->lock);
    return p;
}

void rl_audit_free(struct rl_audit *a)
{
    if (a == NULL)
        return;
    if (a->pending != NULL && a->buckets != NULL)
        pthread_mutex_destroy(&a->lock);
    rl_table_free(a->buckets);
    free(a->pending);
    free(a);
}
