/* rl_: token buckets and the bounded per-uid table, with simulated time. */
#include <pthread.h>
#include "kl_test.h"
#include "ratelimit.h"

#define SEC 1000000000ULL

static void test_bucket(void)
{
    struct rl_bucket b;
    uint64_t t0 = 5 * SEC;
    int n = 0;

    rl_bucket_init(&b, 10, 5);
    for (int i = 0; i < 20; i++)
        n += rl_bucket_take(&b, t0);
    is_int(n, 5, "burst of 5 allowed at one instant, then limited");
    is_int(rl_bucket_take(&b, t0 + SEC / 20), 0, "50 ms later: half a token, still limited");
    is_int(rl_bucket_take(&b, t0 + SEC / 10), 1, "100 ms later: one token refilled");
    is_int(rl_bucket_take(&b, t0 + SEC / 10), 0, "and only one");
    n = 0;
    for (int i = 0; i < 100; i++)
        n += rl_bucket_take(&b, t0 + 100 * SEC);
    is_int(n, 5, "long idle refills only up to the burst");
    n = 0;
    /* 1 s at 10/s in 1 ms steps: exactly 10 more tokens. */
    for (uint64_t ms = 1; ms <= 1000; ms++)
        n += rl_bucket_take(&b, t0 + 100 * SEC + ms * 1000000ULL);
    ok(n >= 9 && n <= 10, "steady rate: 10 per second (rounding allows 9)");
    is_int(rl_bucket_take(&b, t0), 0, "clock going backwards adds no tokens");
    rl_bucket_dispose(&b);

    rl_bucket_init(&b, 0, 1);
    n = 0;
    for (int i = 0; i < 10000; i++)
        n += rl_bucket_take(&b, t0);
    is_int(n, 10000, "rate 0 = unlimited");
    rl_bucket_dispose(&b);

    rl_bucket_init(&b, 1, 0);
    is_int(rl_bucket_take(&b, t0) + rl_bucket_take(&b, t0), 1, "burst below 1 is raised to 1");
    rl_bucket_dispose(&b);
}

static void test_table(void)
{
    struct rl_table *t = rl_table_new(1, 3, 4);
    uint64_t t0 = SEC;
    int n;

    ok(t != NULL, "table created");
    ok(rl_table_new(1, 1, 0) == NULL, "max_entries 0 refused");
    ok(rl_table_new(1, 1, (1u << 24) + 1) == NULL, "huge max_entries refused");
    n = 0;
    for (int i = 0; i < 10; i++)
        n += rl_table_take(t, 1000, t0);
    is_int(n, 3, "uid 1000: burst 3 then limited");
    n = 0;
    for (int i = 0; i < 10; i++)
        n += rl_table_take(t, 1001, t0);
    is_int(n, 3, "uid 1001 independent of uid 1000");
    is_int(rl_table_take(t, 1000, t0 + SEC), 1, "uid 1000 refilled after 1 s");
    is_int(rl_table_take(t, 1000, t0 + SEC), 0, "one token only");
    is_int(rl_table_take(t, 1002, t0 + SEC), 1, "third uid");
    is_int(rl_table_take(t, 1003, t0 + SEC), 1, "fourth uid fills the table");
    is_int((long long)rl_table_count(t), 4, "4 entries");
    /* All four are in debt at t0+1s: a fifth uid is limited, nothing is forgotten. */
    is_int(rl_table_take(t, 1004, t0 + SEC), 0, "table full of indebted buckets: new uid limited (fail closed)");
    is_int((long long)rl_table_count(t), 4, "still 4 entries");
    is_int(rl_table_take(t, 1000, t0 + SEC), 0, "uid 1000's debt not forgotten");
    /* 3 s later uid 1001, 1002 and 1003 are full again: one of them may go. */
    is_int(rl_table_take(t, 1004, t0 + 4 * SEC), 1, "a refilled bucket is evicted for a new uid");
    is_int((long long)rl_table_count(t), 4, "bound kept: 4 entries");
    n = 0;
    for (int i = 0; i < 10; i++)
        n += rl_table_take(t, 1004, t0 + 4 * SEC);
    is_int(n, 2, "new uid then has its own burst (3 - 1 taken)");
    /* Many distinct uids over time never grow the table past its bound, and lookups of
     * the survivors still work after many backward-shift deletions. */
    int max_seen = 0, bad = 0;
    for (uint32_t u = 0; u < 2000; u++) {
        uint64_t now = t0 + (10 + u) * 10 * SEC;
        if (rl_table_take(t, 50000 + u, now) != 1)
            bad++;
        if ((int)rl_table_count(t) > max_seen)
            max_seen = (int)rl_table_count(t);
        /* uid 50000+u is now in debt by 1; taking twice more must hit the limit exactly. */
        if (rl_table_take(t, 50000 + u, now) != 1 || rl_table_take(t, 50000 + u, now) != 1 ||
            rl_table_take(t, 50000 + u, now) != 0)
            bad++;
    }
    is_int(bad, 0, "2000 uids churned through a 4-entry table, each limited correctly");
    is_int(max_seen, 4, "table never above max_entries");
    rl_table_free(t);

    t = rl_table_new(0, 1, 1);
    n = 0;
    for (uint32_t u = 0; u < 100; u++)
        n += rl_table_take(t, u, t0);
    is_int(n, 100, "rate 0 table: unlimited for any number of uids");
    is_int((long long)rl_table_count(t), 0, "and stores nothing");
    rl_table_free(t);
    rl_table_free(NULL);

    t = rl_table_new(1, 1, 2);
    is_int(rl_table_take64(t, (1ULL << 32) | 7, t0), 1, "64-bit id (key<<32|uid)");
    is_int(rl_table_take64(t, (2ULL << 32) | 7, t0), 1, "same uid, other key: independent");
    is_int(rl_table_take64(t, (1ULL << 32) | 7, t0), 0, "first id limited");
    rl_table_free(t);
}

#define THREADS 4
#define TAKES 20000

struct mt_arg {
    struct rl_bucket *b;
    struct rl_table *t;
    int allowed_b, allowed_t;
    uint32_t uid;
};

static void *mt_worker(void *p)
{
    struct mt_arg *a = p;
    for (int i = 0; i < TAKES; i++) {
        /* Time stands still: only the initial burst may be taken, by whoever gets there. */
        a->allowed_b += rl_bucket_take(a->b, 7 * SEC);
        a->allowed_t += rl_table_take(a->t, a->uid, 7 * SEC);
    }
    return NULL;
}

static void test_threads(void)
{
    struct rl_bucket b;
    struct rl_table *t = rl_table_new(1, 1000, 16);
    pthread_t th[THREADS];
    struct mt_arg args[THREADS];
    int total_b = 0, total_t = 0, started = 0;

    rl_bucket_init(&b, 1, 12345);
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct mt_arg){&b, t, 0, 0, (uint32_t)(i % 2)};
        if (pthread_create(&th[i], NULL, mt_worker, &args[i]) == 0)
            started++;
    }
    is_int(started, THREADS, "threads started");
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        total_b += args[i].allowed_b;
        total_t += args[i].allowed_t;
    }
    is_int(total_b, 12345, "4 threads x 20000 takes on one bucket: exactly the burst allowed");
    is_int(total_t, 2 * 1000, "4 threads on 2 uids in a table: exactly 2 bursts allowed");
    rl_bucket_dispose(&b);
    rl_table_free(t);
}

/* Issue 13: the audit limiter counts what it does not let through, per uid. */
static void test_audit_limiter(void)
{
    struct rl_audit *a = rl_audit_new(10, 5, 2);
    struct rl_audit_count out[8];
    uint64_t t0 = 7 * SEC;
    int n = 0;

    ok(a != NULL, "audit limiter: new");
    ok(rl_audit_new(10, 5, 0) == NULL, "audit limiter: max_peers 0 refused");
    ok(rl_audit_new(10, 5, 1u << 20) == NULL, "audit limiter: max_peers over 65536 refused");
    is_int(rl_audit_pending(a), 0, "nothing pending at first");
    is_int((int)rl_audit_take(a, out, 8), 0, "nothing to take at first");
    for (int i = 0; i < 1000; i++)
        n += rl_audit_admit(a, 100, t0);
    is_int(n, 5, "uid 100: the burst is written, the rest counted");
    is_int(rl_audit_pending(a), 1, "counts pending");
    for (int i = 0; i < 7; i++)
        n += rl_audit_admit(a, 200, t0);
    is_int(n, 10, "uid 200 has a bucket of its own");
    /* A third uid: the table of two is full of buckets in debt, so it is limited outright
     * (fail closed), and it finds no count slot of its own: counted under RL_AUDIT_OTHER_UID. */
    for (int i = 0; i < 8; i++)
        n += rl_audit_admit(a, 300, t0);
    size_t k = rl_audit_take(a, out, 8);
    is_int((int)k, 3, "three counts taken");
    uint64_t c100 = 0, c200 = 0, other = 0;
    for (size_t i = 0; i < k; i++) {
        if (out[i].uid == 100)
            c100 = out[i].count;
        else if (out[i].uid == 200)
            c200 = out[i].count;
        else if (out[i].uid == RL_AUDIT_OTHER_UID)
            other = out[i].count;
    }
    is_int((long long)c100, 995, "uid 100: 995 counted");
    is_int((long long)c200, 2, "uid 200: 2 counted");
    is_int((long long)other, 8, "the uid without a slot: all 8 counted together (none lost)");
    is_int(rl_audit_pending(a), 0, "taken: nothing pending");
    is_int(rl_audit_admit(a, 100, t0 + SEC), 1, "a second later uid 100 is written again");
    /* take() with a small buffer leaves the rest pending. */
    for (int i = 0; i < 100; i++)
        n += rl_audit_admit(a, 100, t0 + SEC);
    for (int i = 0; i < 100; i++)
        n += rl_audit_admit(a, 200, t0 + SEC);
    is_int((int)rl_audit_take(a, out, 1), 1, "one count per take of one");
    is_int(rl_audit_pending(a), 1, "the other still pending");
    is_int((int)rl_audit_take(a, out, 8), 1, "then the other");
    rl_audit_free(a);
    rl_audit_free(NULL);

    a = rl_audit_new(0, 1, 4);
    n = 0;
    for (int i = 0; i < 1000; i++)
        n += rl_audit_admit(a, 1, t0);
    is_int(n, 1000, "rate 0: every record written");
    rl_audit_free(a);
}

int main(void)
{
    test_audit_limiter();
    test_bucket();
    test_table();
    test_threads();
    return kl_test_done();
}
