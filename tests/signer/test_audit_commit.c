/* audit_ group commit (issue 15): a lone record is durable without waiting for a timer,
 * records written while an fdatasync runs share the next one, records nobody waits for are
 * durable within group_ms (riding a waiter's sync when there is one), and a failed
 * fdatasync is sticky and fails closed.
 *
 * This executable defines fdatasync() itself: the audit module (linked statically from
 * kl_signer) calls this one, which counts every call, notes how many bytes the file held
 * when it started (what the sync covers), can hold a sync "running" until the test opens
 * a gate, and can fail. It then runs the real system call. So the counts and the coverage
 * checked below are the system's, not the module's own bookkeeping. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "kl_test.h"
#include "audit.h"

/* The log's state now (audit_stats). */
static struct audit_stats st_of(struct audit_log *log)
{
    struct audit_stats st;
    audit_stats(log, &st);
    return st;
}

static char tmpdir[256];

static pthread_mutex_t shim_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t shim_cv = PTHREAD_COND_INITIALIZER;
static unsigned shim_calls;    /* fdatasync calls started */
static unsigned shim_done;     /* and returned */
static int shim_hold;          /* the next sync blocks until the gate opens */
static int shim_holding;       /* a sync is blocked at the gate */
static int shim_fail;          /* fail the next sync with EIO */
static unsigned shim_delay_us; /* a slow disk: every sync takes at least this */
static off_t shim_covered;     /* largest file size seen at the start of a sync that succeeded */

int fdatasync(int fd)
{
    struct stat st;
    off_t size = fstat(fd, &st) == 0 ? st.st_size : 0;
    int fail;

    pthread_mutex_lock(&shim_lock);
    shim_calls++;
    if (shim_hold) {
        shim_hold = 0;
        shim_holding = 1;
        pthread_cond_broadcast(&shim_cv);
        while (shim_holding)
            pthread_cond_wait(&shim_cv, &shim_lock);
    }
    fail = shim_fail;
    shim_fail = 0;
    unsigned delay = shim_delay_us;
    pthread_mutex_unlock(&shim_lock);
    if (delay > 0)
        usleep(delay);
    int r = fail ? -1 : (int)syscall(SYS_fdatasync, fd);
    pthread_mutex_lock(&shim_lock);
    if (r == 0 && size > shim_covered)
        shim_covered = size;
    shim_done++;
    pthread_mutex_unlock(&shim_lock);
    if (fail)
        errno = EIO;
    return r;
}

static unsigned shim_count(void)
{
    pthread_mutex_lock(&shim_lock);
    unsigned n = shim_calls;
    pthread_mutex_unlock(&shim_lock);
    return n;
}

static off_t shim_covered_size(void)
{
    pthread_mutex_lock(&shim_lock);
    off_t n = shim_covered;
    pthread_mutex_unlock(&shim_lock);
    return n;
}

/* Make the next fdatasync block, and wait until one does. */
static void shim_arm_hold(void)
{
    pthread_mutex_lock(&shim_lock);
    shim_hold = 1;
    pthread_mutex_unlock(&shim_lock);
}

static int shim_wait_holding(void)
{
    struct timespec ts;
    int r = 0;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&shim_lock);
    while (!shim_holding && r == 0)
        r = pthread_cond_timedwait(&shim_cv, &shim_lock, &ts);
    pthread_mutex_unlock(&shim_lock);
    return shim_holding ? 0 : -1;
}

static void shim_release(void)
{
    pthread_mutex_lock(&shim_lock);
    shim_holding = 0;
    pthread_cond_broadcast(&shim_cv);
    pthread_mutex_unlock(&shim_lock);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void make_record(struct audit_record *r, uint64_t i, uint8_t *hash)
{
    memset(r, 0, sizeof(*r));
    for (size_t k = 0; k < 32; k++)
        hash[k] = (uint8_t)(i * 7 + k);
    r->pid = 1234;
    r->uid = 1000;
    r->gid = 1000;
    r->op = "sign";
    r->key = "ecdsa-p256";
    r->scheme = 0x0403;
    r->context = 1;
    r->hash = hash;
    r->hash_len = 32;
    r->server_name = "example.com";
    r->request_id = i;
    r->status = "OK";
}

static struct audit_log *open_log(const char *name, enum audit_sync mode, unsigned group_ms)
{
    char path[512];
    struct audit_log *log = NULL;
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    if (audit_open(&log, path, mode, group_ms) != 0)
        return NULL;
    return log;
}

/* One record appended and waited for; 0 or the first error. */
static int append_wait(struct audit_log *log, uint64_t i, uint64_t *seq_p)
{
    struct audit_record r;
    uint8_t h[32];
    uint64_t seq = 0;
    int ret;
    make_record(&r, i, h);
    if ((ret = audit_append(log, &r, &seq)) != 0)
        return ret;
    if (seq_p != NULL)
        *seq_p = seq;
    return audit_wait_durable(log, seq);
}

/* A lone record pays one fdatasync at once: N sequential waits are N syncs, and none of
 * them waits for group_ms (2 s here: the old pacing would take 2 s per record). */
static void test_sequential(void)
{
    struct audit_log *log = open_log("seq.log", AUDIT_SYNC_GROUP, 2000);
    ok(log != NULL, "sequential: open (GROUP, group_ms 2000)");
    if (log == NULL)
        return;
    unsigned base = shim_count(), base_mod = (unsigned)st_of(log).sync_count;
    int fails = 0, uncovered = 0;
    double t0 = now_s(), worst = 0;
    for (int i = 0; i < 20; i++) {
        double t1 = now_s();
        uint64_t seq = 0;
        fails += append_wait(log, (uint64_t)i, &seq) != 0;
        double dt = now_s() - t1;
        worst = dt > worst ? dt : worst;
        /* On disk: a sync that started with the record in the file has returned. */
        uncovered += (uint64_t)shim_covered_size() < st_of(log).size || st_of(log).durable_seq < seq;
    }
    double total = now_s() - t0;
    is_int(fails, 0, "sequential: 20 appends, each waited for");
    is_int(uncovered, 0, "sequential: every wait returned after a sync that covered its record");
    is_int(shim_count() - base, 20, "sequential: 20 waits, 20 fdatasyncs (one each, run at once)");
    is_int((unsigned)st_of(log).sync_count - base_mod, 20, "sequential: the sync count agrees");
    diag("sequential: 20 records in %.1f ms, slowest wait %.1f ms", total * 1000, worst * 1000);
    ok(worst < 1.5, "sequential: no wait came near group_ms (2 s): no timer");
    audit_close(log);
}

struct writer {
    struct audit_log *log;
    unsigned base, n;
    int fails;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (unsigned i = 0; i < w->n; i++) {
        uint64_t seq = 0;
        if (append_wait(w->log, w->base + i, &seq) != 0 || st_of(w->log).durable_seq < seq)
            w->fails++;
    }
    return NULL;
}

/* Concurrent waiters share syncs: on a disk whose fdatasync takes 2 ms, 8 threads x 25
 * records need far fewer than 200. */
static void test_concurrent(void)
{
    struct audit_log *log = open_log("conc.log", AUDIT_SYNC_GROUP, 1);
    struct writer w[8];
    pthread_t t[8];
    ok(log != NULL, "concurrent: open");
    if (log == NULL)
        return;
    shim_delay_us = 2000;
    unsigned base = shim_count();
    for (int i = 0; i < 8; i++) {
        w[i] = (struct writer){log, (unsigned)i * 1000, 25, 0};
        pthread_create(&t[i], NULL, writer_main, &w[i]);
    }
    int fails = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        fails += w[i].fails;
    }
    shim_delay_us = 0;
    unsigned syncs = shim_count() - base;
    is_int(fails, 0, "concurrent: 200 records, each durable when its wait returned");
    diag("concurrent: 8 threads x 25 waited records: %u fdatasyncs", syncs);
    ok(syncs >= 1 && syncs <= 100, "concurrent: they shared fdatasyncs (at most half as many as records)");
    ok((uint64_t)shim_covered_size() >= st_of(log).size, "concurrent: the last sync covered the whole file");
    audit_close(log);
}

struct waiter {
    struct audit_log *log;
    uint64_t seq;
    int ret;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    w->ret = audit_wait_durable(w->log, w->seq);
    return NULL;
}

/* Records written while a sync runs are not durable by it; they ride the next one, which
 * one of their waiters runs: one fdatasync for the batch. */
static void test_batch(void)
{
    struct audit_log *log = open_log("batch.log", AUDIT_SYNC_GROUP, 1);
    struct audit_record r;
    uint8_t h[32];
    uint64_t s1 = 0, s2 = 0, s3 = 0;
    struct waiter a, b, c;
    pthread_t ta, tb, tc;
    ok(log != NULL, "batch: open");
    if (log == NULL)
        return;
    unsigned base = shim_count();
    make_record(&r, 1, h);
    ok(audit_append(log, &r, &s1) == 0, "batch: record 1");
    shim_arm_hold();
    a = (struct waiter){log, s1, -1};
    pthread_create(&ta, NULL, waiter_main, &a);
    ok(shim_wait_holding() == 0, "batch: record 1's waiter runs its fdatasync (held at the gate)");
    make_record(&r, 2, h);
    ok(audit_append(log, &r, &s2) == 0, "batch: record 2 written while that sync runs");
    make_record(&r, 3, h);
    ok(audit_append(log, &r, &s3) == 0, "batch: record 3 too");
    is_int(audit_sync_if_idle(log, s2), KL_ERR_WANT_READ, "batch: sync_if_idle while a sync runs: WANT_READ");
    ok(st_of(log).durable_seq < s1, "batch: nothing durable while the sync is held");
    b = (struct waiter){log, s2, -1};
    c = (struct waiter){log, s3, -1};
    pthread_create(&tb, NULL, waiter_main, &b);
    pthread_create(&tc, NULL, waiter_main, &c);
    usleep(50000); /* let both block on the running sync (the count below holds either way) */
    shim_release();
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_join(tc, NULL);
    ok(a.ret == 0 && b.ret == 0 && c.ret == 0, "batch: all three waits return 0");
    ok(st_of(log).durable_seq >= s3, "batch: all three durable");
    is_int(shim_count() - base, 2, "batch: two fdatasyncs: record 1's, then one for records 2 and 3");
    is_int(audit_sync_if_idle(log, s3), 0, "batch: sync_if_idle on a durable record: 0");
    is_int(shim_count() - base, 2, "... with no further fdatasync");
    make_record(&r, 4, h);
    ok(audit_append(log, &r, &s1) == 0 && audit_sync_if_idle(log, s1) == 0 && st_of(log).durable_seq >= s1,
       "batch: sync_if_idle with no sync running: synced here, at once");
    is_int(shim_count() - base, 3, "... by one fdatasync");
    is_int(audit_sync_if_idle(log, s1 + 1), KL_ERR_INVALID, "sync_if_idle on an unwritten seq is refused");
    is_int(audit_wait_durable(log, s1 + 1), KL_ERR_INVALID, "wait on an unwritten seq is refused");
    audit_close(log);
}

/* Records nobody waits for: durable within group_ms, on a waiter's sync when one comes. */
static void test_unwaited(void)
{
    struct audit_record r;
    uint8_t h[32];
    uint64_t s1 = 0, u = 0;
    struct audit_log *log = open_log("unwaited.log", AUDIT_SYNC_GROUP, 1000);
    ok(log != NULL, "unwaited: open (group_ms 1000)");
    if (log == NULL)
        return;
    unsigned base = shim_count();
    make_record(&r, 1, h);
    ok(audit_append(log, &r, NULL) == 0, "unwaited: a record nobody waits for");
    u = st_of(log).seq;
    ok(append_wait(log, 2, &s1) == 0, "unwaited: then a waited record");
    ok(st_of(log).durable_seq >= u, "unwaited: the waiter's sync made it durable too");
    is_int(shim_count() - base, 1, "unwaited: one fdatasync for both (the flusher ran none)");
    audit_close(log);

    log = open_log("unwaited2.log", AUDIT_SYNC_GROUP, 200);
    ok(log != NULL, "unwaited alone: open (group_ms 200)");
    if (log == NULL)
        return;
    base = shim_count();
    double t0 = now_s();
    make_record(&r, 2, h);
    ok(audit_append(log, &r, NULL) == 0, "unwaited alone: appended");
    u = st_of(log).seq;
    ok(st_of(log).durable_seq < u, "unwaited alone: not durable at once (the flusher waits for group_ms)");
    while (st_of(log).durable_seq < u && now_s() - t0 < 10.0)
        usleep(2000);
    double dt = now_s() - t0;
    diag("unwaited alone: durable after %.1f ms (group_ms 200)", dt * 1000);
    ok(st_of(log).durable_seq >= u, "unwaited alone: the flusher made it durable");
    ok(dt >= 0.15, "unwaited alone: not before about group_ms");
    is_int(shim_count() - base, 1, "unwaited alone: by one fdatasync");
    /* A flood of records nobody waits for: at most about one sync per group_ms. */
    base = shim_count();
    t0 = now_s();
    for (int i = 0; i < 2000; i++) {
        make_record(&r, (uint64_t)i, h);
        if (audit_append(log, &r, NULL) != 0)
            break;
        if (i % 100 == 0)
            usleep(20000);
    }
    u = st_of(log).seq;
    while (st_of(log).durable_seq < u && now_s() - t0 < 10.0)
        usleep(2000);
    dt = now_s() - t0;
    unsigned syncs = shim_count() - base;
    diag("unwaited flood: 2000 records over %.0f ms, %u fdatasyncs", dt * 1000, syncs);
    ok(st_of(log).durable_seq >= u, "unwaited flood: all durable");
    ok(syncs >= 1 && syncs <= (unsigned)(dt / 0.2) + 2, "unwaited flood: at most one fdatasync per group_ms");
    audit_close(log);

    /* NONE: never a sync. */
    log = open_log("none.log", AUDIT_SYNC_NONE, 0);
    ok(log != NULL, "NONE: open");
    if (log == NULL)
        return;
    base = shim_count();
    ok(append_wait(log, 1, NULL) == 0 && audit_append(log, &r, NULL) == 0, "NONE: records written");
    usleep(20000);
    is_int(shim_count() - base, 0, "NONE: no fdatasync");
    audit_close(log);
}

/* A failed fdatasync: every wait on it fails, and the log stays failed (fail closed). */
static void test_sync_failure(void)
{
    struct audit_record r;
    uint8_t h[32];
    uint64_t s1 = 0, s2 = 0;
    struct waiter a, b;
    pthread_t ta, tb;
    struct audit_log *log = open_log("fail.log", AUDIT_SYNC_GROUP, 1);
    ok(log != NULL, "sync failure: open");
    if (log == NULL)
        return;
    ok(append_wait(log, 1, NULL) == 0, "sync failure: a first record is durable");
    make_record(&r, 2, h);
    ok(audit_append(log, &r, &s1) == 0, "sync failure: record 2");
    /* Its sync is held, then fails; a record written meanwhile has a waiter too. */
    pthread_mutex_lock(&shim_lock);
    shim_fail = 1;
    pthread_mutex_unlock(&shim_lock);
    shim_arm_hold();
    a = (struct waiter){log, s1, 0};
    pthread_create(&ta, NULL, waiter_main, &a);
    ok(shim_wait_holding() == 0, "sync failure: record 2's sync runs (held)");
    make_record(&r, 3, h);
    ok(audit_append(log, &r, &s2) == 0, "sync failure: record 3 written meanwhile");
    b = (struct waiter){log, s2, 0};
    pthread_create(&tb, NULL, waiter_main, &b);
    usleep(20000);
    shim_release();
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    is_int(a.ret, KL_ERR_AUDIT, "sync failure: the waiter of the failed sync gets KL_ERR_AUDIT");
    is_int(b.ret, KL_ERR_AUDIT, "sync failure: the record behind it too (no later sync is trusted)");
    ok(st_of(log).durable_seq < s1, "sync failure: neither is durable");
    make_record(&r, 4, h);
    is_int(audit_append(log, &r, NULL), KL_ERR_AUDIT, "sync failure: sticky: later appends fail");
    is_int(audit_sync_if_idle(log, s1), KL_ERR_AUDIT, "sync failure: sticky: sync_if_idle fails");
    is_int(audit_wait_durable(log, s1), KL_ERR_AUDIT, "sync failure: sticky: waits fail");
    audit_close(log);

    /* The inline path (audit_sync_if_idle) sees a failing sync as a failure, not as durable. */
    log = open_log("fail-inline.log", AUDIT_SYNC_GROUP, 1);
    ok(log != NULL, "sync failure, inline: open");
    if (log == NULL)
        return;
    make_record(&r, 1, h);
    pthread_mutex_lock(&shim_lock);
    shim_fail = 1;
    pthread_mutex_unlock(&shim_lock);
    ok(audit_append(log, &r, &s1) == 0, "sync failure, inline: appended");
    is_int(audit_sync_if_idle(log, s1), KL_ERR_AUDIT, "sync failure, inline: sync_if_idle fails");
    is_int(audit_wait_durable(log, s1), KL_ERR_AUDIT, "sync failure, inline: and stays failed");
    audit_close(log);
}

int main(void)
{
    const char *base = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    snprintf(tmpdir, sizeof(tmpdir), "%s/kl-audit-commit-XXXXXX", base);
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_sequential();
    test_concurrent();
    test_batch();
    test_unwaited();
    test_sync_failure();
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        diag("could not remove %s", tmpdir);
    return kl_test_done();
}
