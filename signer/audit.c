/*
 * audit.c - the audit log writer: append, group commit, the flusher, rotation, and the
 * torn-line check and repair at open (audit.h). Lines are formatted and checked by
 * audit_line.c; the offline verifier is audit_verify.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include "audit.h"
#include "clock.h"
#include "crypto.h"
#include "log.h"

struct audit_log {
    pthread_mutex_t lock;
    pthread_cond_t durable_cv; /* durable_seq advanced, an fdatasync ended, or the log failed */
    pthread_cond_t work_cv;    /* the flusher: records pending or stop */
    int fd;
    char *path;
    enum audit_sync sync;
    unsigned group_ms;
    uint8_t head[AUDIT_HASH_LEN];
    uint64_t seq;          /* last record written */
    uint64_t durable_seq;  /* last record known durable */
    uint64_t unwaited_seq; /* GROUP: newest record appended without a waiter (the flusher's work) */
    uint64_t size;
    uint64_t sync_count;
    int syncing;           /* an fdatasync of fd runs outside the lock: fd must stay open */
    uint64_t last_sync_ns; /* CLOCK_MONOTONIC start of the last fdatasync (GROUP pacing) */
    int failed;            /* sticky: a write or fdatasync failed */
    int stop;
    int has_flusher;
    pthread_t flusher;
    struct kl_buf line; /* the line being written (audit_line_format), reused */
};

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char *dir = strdup(path);
    int fd, r;
    if (dir == NULL)
        return -1;
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        strcpy(dir, ".");
    else if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return -1;
    r = fsync(fd);
    close(fd);
    return r;
}

/* Where an open reports its failure: the typed reason, and the one-line message into err,
 * or to the log when err is NULL. */
struct open_report {
    enum audit_open_fail fail;
    char *err;
    size_t err_len;
};

__attribute__((format(printf, 3, 4))) static void open_fail(struct open_report *o, enum audit_open_fail why,
                                                            const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    o->fail = why;
    va_start(ap, fmt);
    if (o->err != NULL && o->err_len > 0) {
        vsnprintf(o->err, o->err_len, fmt, ap);
    } else {
        vsnprintf(msg, sizeof(msg), fmt, ap);
        log_errx("audit: %s", msg);
    }
    va_end(ap);
}

/* Write the line in log->line under the lock; on failure the log fails for good. */
static int append_locked(struct audit_log *log, const struct audit_record *rec, const char *rotated_from,
                         uint64_t *seq_p)
{
    uint8_t h[AUDIT_HASH_LEN];
    int ret;

    if (log->failed)
        return KL_ERR_AUDIT;
    if ((ret = audit_line_format(&log->line, h, rec, log->seq + 1, log->head, rotated_from)) != 0)
        return ret;
    if (write_all(log->fd, (const char *)log->line.base, log->line.len) != 0) {
        /* A partial line may be on disk now; nothing after it could be trusted to chain
         * correctly, so refuse every further record (the signer fails closed). */
        log->failed = 1;
        pthread_cond_broadcast(&log->durable_cv);
        return KL_ERR_AUDIT;
    }
    log->seq++;
    log->size += log->line.len;
    memcpy(log->head, h, AUDIT_HASH_LEN);
    if (log->sync == AUDIT_SYNC_NONE)
        log->durable_seq = log->seq;
    if (seq_p != NULL)
        *seq_p = log->seq;
    return 0;
}

int audit_append(struct audit_log *log, const struct audit_record *rec, uint64_t *seq_p)
{
    int ret;

    if (log == NULL || rec == NULL)
        return KL_ERR_INVALID;
    pthread_mutex_lock(&log->lock);
    ret = append_locked(log, rec, NULL, seq_p);
    /* A caller that takes the sequence number waits for it (audit_wait_durable leads the
     * sync itself); a record nobody waits for is left to the flusher. */
    if (ret == 0 && log->sync == AUDIT_SYNC_GROUP && seq_p == NULL) {
        log->unwaited_seq = log->seq;
        pthread_cond_signal(&log->work_cv);
    }
    pthread_mutex_unlock(&log->lock);
    return ret;
}

/* fdatasync everything written so far, outside the lock (called and returning with it
 * held). Only one sync runs at a time; fd stays open meanwhile (rotate/close wait). */
static void sync_unlocked(struct audit_log *log)
{
    uint64_t target = log->seq;
    int fd = log->fd, r;

    log->syncing = 1;
    log->sync_count++;
    log->last_sync_ns = kl_clock_ns();
    pthread_mutex_unlock(&log->lock);
    r = fdatasync(fd);
    pthread_mutex_lock(&log->lock);
    log->syncing = 0;
    if (r != 0)
        log->failed = 1; /* after a failed fdatasync the page cache state is unknown */
    else if (target > log->durable_seq)
        log->durable_seq = target;
    pthread_cond_broadcast(&log->durable_cv);
}

/* What stands between record seq and durability, with the lock held. */
enum durable_step {
    STEP_DONE,   /* durable */
    STEP_FAILED, /* the log failed */
    STEP_WAIT,   /* a sync runs, or NONE mode: wait for durable_cv */
    STEP_PACE,   /* GROUP pacing: no sync may start before *until_ns */
    STEP_SYNC,   /* this caller may run the sync now */
};

static enum durable_step durable_step_locked(const struct audit_log *log, uint64_t seq, uint64_t *until_ns)
{
    if (log->failed)
        return STEP_FAILED;
    if (log->durable_seq >= seq)
        return STEP_DONE;
    if (log->syncing || log->sync == AUDIT_SYNC_NONE)
        return STEP_WAIT;
    if (log->sync == AUDIT_SYNC_GROUP && log->last_sync_ns != 0) {
        /* At most one fdatasync starts per group_ms. */
        *until_ns = log->last_sync_ns + (uint64_t)log->group_ms * 1000000ULL;
        if (kl_clock_ns() < *until_ns)
            return STEP_PACE;
    }
    return STEP_SYNC;
}

/* An absolute CLOCK_REALTIME deadline wait_ns from now, for pthread_cond_timedwait. */
static void deadline_in(struct timespec *ts, uint64_t wait_ns)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)(wait_ns / 1000000000ULL);
    ts->tv_nsec += (long)(wait_ns % 1000000000ULL);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Make seq durable: run the sync when this caller may, wait for others when may_wait, else
 * KL_ERR_WANT_READ as soon as it would have to wait. */
static int make_durable(struct audit_log *log, uint64_t seq, int may_wait)
{
    int ret = 0;
    uint64_t until = 0;

    if (log == NULL)
        return KL_ERR_INVALID;
    pthread_mutex_lock(&log->lock);
    if (seq > log->seq) {
        ret = KL_ERR_INVALID;
        goto exit;
    }
    for (;;) {
        enum durable_step step = durable_step_locked(log, seq, &until);
        if (step == STEP_DONE)
            break;
        if (step == STEP_FAILED) {
            ret = KL_ERR_AUDIT;
            break;
        }
        if (step == STEP_SYNC) {
            /* This caller leads: one fdatasync for every record written so far, no hand-off
             * to another thread (the others wait for it and find their records covered). */
            sync_unlocked(log);
        } else if (!may_wait) {
            ret = KL_ERR_WANT_READ; /* it would have to wait: the caller hands it off */
            break;
        } else if (step == STEP_WAIT) {
            pthread_cond_wait(&log->durable_cv, &log->lock);
        } else {
            /* Until the next sync may start (a sync that ends meanwhile may cover seq). */
            struct timespec ts;
            uint64_t now = kl_clock_ns();
            deadline_in(&ts, until > now ? until - now : 0);
            (void)pthread_cond_timedwait(&log->durable_cv, &log->lock, &ts);
        }
    }
exit:
    pthread_mutex_unlock(&log->lock);
    return ret;
}

int audit_sync_if_idle(struct audit_log *log, uint64_t seq)
{
    return make_durable(log, seq, 0);
}

int audit_wait_durable(struct audit_log *log, uint64_t seq)
{
    return make_durable(log, seq, 1);
}

/*
 * GROUP mode, records nobody waits for (refusals, list_keys, connection events): as soon
 * as one is pending, fdatasync everything written so far, starting syncs at most every
 * group_ms. Records whose callers wait (signatures) are synced by the first waiter
 * itself (audit_wait_durable), under the same pacing, without waking this thread.
 */
static void *flusher_main(void *arg)
{
    struct audit_log *log = arg;
    uint64_t interval = (uint64_t)log->group_ms * 1000000ULL;

    pthread_mutex_lock(&log->lock);
    while (!log->stop) {
        /* Only records nobody waits for are the flusher's: a waiter syncs its own. */
        if (log->failed || log->durable_seq >= log->unwaited_seq) {
            pthread_cond_wait(&log->work_cv, &log->lock);
            continue;
        }
        if (log->syncing) {
            pthread_cond_wait(&log->durable_cv, &log->lock);
            continue;
        }
        uint64_t now = kl_clock_ns(), last_start = log->last_sync_ns;
        if (last_start != 0 && now < last_start + interval) {
            struct timespec ts;
            deadline_in(&ts, last_start + interval - now);
            /* Wakes early only for stop (appends signal work_cv, ignored until the deadline). */
            while (!log->stop && pthread_cond_timedwait(&log->work_cv, &log->lock, &ts) != ETIMEDOUT)
                ;
            continue;
        }
        sync_unlocked(log);
    }
    pthread_mutex_unlock(&log->lock);
    return NULL;
}

/* Read the last line of fd (size bytes) and check it; fill head and seq. */
static int load_tail(struct audit_log *log, unsigned flags, struct open_report *o)
{
    struct stat st;
    size_t window, start;
    uint64_t off;
    char *buf = NULL, what[256];
    int ret = 0;

    if (fstat(log->fd, &st) != 0) {
        open_fail(o, AUDIT_OPEN_FAIL_IO, "%s: fstat: %s", log->path, strerror(errno));
        return KL_ERR_IO;
    }
    log->size = (uint64_t)st.st_size;
    if (st.st_size == 0)
        return 0; /* fresh log: chains to the genesis hash, seq starts at 1 */
    window = (uint64_t)st.st_size < AUDIT_MAX_LINE + 2 ? (size_t)st.st_size : AUDIT_MAX_LINE + 2;
    off = (uint64_t)st.st_size - window;
    KL_ENSURE((buf = malloc(window)) != NULL, KL_ERR_NO_MEMORY);
    for (size_t got = 0; got < window;) {
        ssize_t r = pread(log->fd, buf + got, window - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            open_fail(o, AUDIT_OPEN_FAIL_IO, "%s: read: %s", log->path, r < 0 ? strerror(errno) : "short read");
            ret = KL_ERR_IO;
            goto exit;
        }
        got += (size_t)r;
    }
    if (buf[window - 1] != '\n') {
        /* A torn last line (crash or full disk mid-write). */
        size_t keep = window;
        while (keep > 0 && buf[keep - 1] != '\n')
            keep--;
        if (keep == 0 && off > 0) {
            open_fail(o, AUDIT_OPEN_FAIL_LONG_LINE, "%s: %s", log->path,
                      "the last line is longer than the maximum line length");
            ret = KL_ERR_AUDIT;
            goto exit;
        }
        uint64_t good = off + keep;
        if (!(flags & AUDIT_OPEN_REPAIR_TORN)) {
            char detail[200];
            snprintf(detail, sizeof(detail),
                     "the last line is incomplete (%" PRIu64 " bytes after offset %" PRIu64
                     ", a torn write); refusing to continue the chain: inspect it, then open with repair",
                     (uint64_t)st.st_size - good, good);
            open_fail(o, AUDIT_OPEN_FAIL_TORN, "%s: %s", log->path, detail);
            ret = KL_ERR_AUDIT;
            goto exit;
        }
        /* Keep the torn bytes as evidence, then cut them off. */
        char *saved = NULL;
        size_t plen = strlen(log->path) + 48;
        KL_ENSURE((saved = malloc(plen)) != NULL, KL_ERR_NO_MEMORY);
        snprintf(saved, plen, "%s.torn.%lld", log->path, (long long)time(NULL));
        int sfd = open(saved, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        int ok = sfd >= 0 && write_all(sfd, buf + keep, window - keep) == 0 && fsync(sfd) == 0;
        if (sfd >= 0)
            close(sfd);
        if (!ok || ftruncate(log->fd, (off_t)good) != 0 || fsync(log->fd) != 0) {
            open_fail(o, AUDIT_OPEN_FAIL_REPAIR, "%s: repairing the torn last line: %s", log->path, strerror(errno));
            free(saved);
            ret = KL_ERR_IO;
            goto exit;
        }
        free(saved);
        log->size = good;
        if (good == 0)
            goto exit; /* nothing complete was ever written: a fresh log */
        window = keep;
    }
    /* The last complete line is buf[start, window - 1). */
    start = window - 1;
    while (start > 0 && buf[start - 1] != '\n')
        start--;
    if (start == 0 && off > 0) {
        open_fail(o, AUDIT_OPEN_FAIL_LONG_LINE, "%s: %s", log->path,
                  "the last line is longer than the maximum line length");
        ret = KL_ERR_AUDIT;
        goto exit;
    }
    struct audit_line_info p;
    if (audit_line_check(&p, what, sizeof(what), buf + start, window - 1 - start) != 0) {
        open_fail(o, AUDIT_OPEN_FAIL_BAD_TAIL, "%s: the last line does not verify: %s", log->path, what);
        ret = KL_ERR_AUDIT;
        goto exit;
    }
    log->seq = p.seq;
    log->durable_seq = p.seq;
    memcpy(log->head, p.hash, AUDIT_HASH_LEN);
exit:
    free(buf);
    return ret;
}

static int open_file(struct audit_log *log, int extra_flags, struct open_report *o)
{
    int fd = open(log->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | extra_flags, 0600);
    if (fd < 0) {
        open_fail(o, AUDIT_OPEN_FAIL_IO, "%s: open: %s", log->path, strerror(errno));
        return KL_ERR_IO;
    }
    /* Two writers would fork the chain: one signer per log file. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int locked = errno == EWOULDBLOCK;
        open_fail(o, locked ? AUDIT_OPEN_FAIL_LOCKED : AUDIT_OPEN_FAIL_IO, "%s: %s", log->path,
                  locked ? "in use by another process (flock)" : strerror(errno));
        close(fd);
        return KL_ERR_IO;
    }
    log->fd = fd;
    return 0;
}

int audit_open_ex(struct audit_log **log_p, const char *path, enum audit_sync sync, unsigned group_ms, unsigned flags,
                  enum audit_open_fail *fail_p, char *err, size_t err_len)
{
    struct audit_log *log = NULL;
    struct open_report o = {AUDIT_OPEN_FAIL_NONE, err, err_len};
    int ret = 0, mutex_ok = 0;

    if (err != NULL && err_len > 0)
        err[0] = '\0';
    if (log_p == NULL || path == NULL || path[0] == '\0' ||
        (sync != AUDIT_SYNC_ALWAYS && sync != AUDIT_SYNC_GROUP && sync != AUDIT_SYNC_NONE) || group_ms > 60000) {
        open_fail(&o, AUDIT_OPEN_FAIL_ARGS, "%s: %s", path != NULL ? path : "(null)", "invalid arguments");
        ret = KL_ERR_INVALID;
        goto exit;
    }
    *log_p = NULL;
    KL_TRY(crypto_init());
    KL_ENSURE((log = calloc(1, sizeof(*log))) != NULL, KL_ERR_NO_MEMORY);
    log->fd = -1;
    kl_buf_init(&log->line, AUDIT_MAX_LINE);
    KL_ENSURE((log->path = strdup(path)) != NULL, KL_ERR_NO_MEMORY);
    log->sync = sync;
    log->group_ms = group_ms != 0 ? group_ms : AUDIT_DEFAULT_GROUP_MS;
    pthread_mutex_init(&log->lock, NULL);
    pthread_cond_init(&log->durable_cv, NULL);
    pthread_cond_init(&log->work_cv, NULL);
    mutex_ok = 1;
    KL_TRY(open_file(log, 0, &o));
    KL_TRY(load_tail(log, flags, &o));
    /* The file (and its name, if just created) must survive a crash before any record
     * that depends on it is acknowledged. */
    if (sync != AUDIT_SYNC_NONE && (fsync(log->fd) != 0 || fsync_dir_of(log->path) != 0)) {
        open_fail(&o, AUDIT_OPEN_FAIL_IO, "%s: fsync: %s", log->path, strerror(errno));
        ret = KL_ERR_IO;
        goto exit;
    }
    if (sync == AUDIT_SYNC_GROUP) {
        if (pthread_create(&log->flusher, NULL, flusher_main, log) != 0) {
            open_fail(&o, AUDIT_OPEN_FAIL_RESOURCE, "%s: %s", log->path, "cannot start the flusher thread");
            ret = KL_ERR_NO_MEMORY;
            goto exit;
        }
        log->has_flusher = 1;
    }
    *log_p = log;
    log = NULL;
exit:
    if (log != NULL) {
        if (log->fd >= 0)
            close(log->fd);
        if (mutex_ok) {
            pthread_mutex_destroy(&log->lock);
            pthread_cond_destroy(&log->durable_cv);
            pthread_cond_destroy(&log->work_cv);
        }
        free(log->path);
        free(log);
    }
    if (ret != 0 && o.fail == AUDIT_OPEN_FAIL_NONE)
        o.fail = AUDIT_OPEN_FAIL_RESOURCE; /* out of memory or no libsodium: nothing was said yet */
    if (fail_p != NULL)
        *fail_p = o.fail;
    return ret;
}

int audit_open(struct audit_log **log_p, const char *path, enum audit_sync sync, unsigned group_ms)
{
    return audit_open_ex(log_p, path, sync, group_ms, 0, NULL, NULL, 0);
}

/* With the lock held: wait out a running fdatasync, then make everything durable. */
static int drain_locked(struct audit_log *log)
{
    while (log->syncing)
        pthread_cond_wait(&log->durable_cv, &log->lock);
    if (log->failed)
        return KL_ERR_AUDIT;
    log->sync_count++;
    if (fdatasync(log->fd) != 0) {
        log->failed = 1;
        pthread_cond_broadcast(&log->durable_cv);
        return KL_ERR_AUDIT;
    }
    log->durable_seq = log->seq;
    pthread_cond_broadcast(&log->durable_cv);
    return 0;
}

int audit_rotate_ex(struct audit_log *log, char *rotated_name, size_t rotated_name_len)
{
    char *newpath = NULL;
    const char *base;
    int ret = 0, old_fd;
    size_t plen;

    if (log == NULL)
        return KL_ERR_INVALID;
    pthread_mutex_lock(&log->lock);
    KL_TRY(drain_locked(log));
    plen = strlen(log->path) + 40;
    KL_ENSURE((newpath = malloc(plen)) != NULL, KL_ERR_NO_MEMORY);
    /* path.<UTC time to the microsecond>Z: names sort in rotation order; never replace. */
    for (int tries = 0;; tries++) {
        struct timespec ts;
        struct tm tm;
        char stamp[32];
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
        snprintf(newpath, plen, "%s.%s.%06ldZ", log->path, stamp, ts.tv_nsec / 1000);
        if (renameat2(AT_FDCWD, log->path, AT_FDCWD, newpath, RENAME_NOREPLACE) == 0)
            break;
        if (errno == EINVAL && tries == 0) {
            /* Filesystem without RENAME_NOREPLACE: link() never replaces either. */
            if (link(log->path, newpath) == 0) {
                if (unlink(log->path) == 0)
                    break;
                (void)unlink(newpath);
            }
        }
        if (errno != EEXIST || tries >= 5) {
            ret = KL_ERR_IO;
            goto exit;
        }
        usleep(2);
    }
    old_fd = log->fd;
    struct open_report o = {AUDIT_OPEN_FAIL_NONE, NULL, 0}; /* the reason goes to the log */
    if (open_file(log, O_EXCL, &o) != 0) {
        /* Could not start the new file: keep writing nowhere rather than to a renamed one. */
        log->fd = old_fd;
        log->failed = 1;
        pthread_cond_broadcast(&log->durable_cv);
        ret = KL_ERR_AUDIT;
        goto exit;
    }
    close(old_fd);
    log->size = 0;
    if (fsync_dir_of(log->path) != 0) {
        log->failed = 1;
        ret = KL_ERR_AUDIT;
        goto exit;
    }
    base = strrchr(newpath, '/');
    base = base != NULL ? base + 1 : newpath;
    struct audit_record rec = {
        .pid = getpid(), .uid = getuid(), .gid = getgid(), .op = "rotate", .status = "OK", .reason = NULL};
    KL_TRY(append_locked(log, &rec, base, NULL));
    if (log->sync != AUDIT_SYNC_NONE)
        KL_TRY(drain_locked(log));
    if (rotated_name != NULL && rotated_name_len > 0)
        snprintf(rotated_name, rotated_name_len, "%s", newpath);
exit:
    pthread_mutex_unlock(&log->lock);
    free(newpath);
    return ret;
}

int audit_rotate(struct audit_log *log)
{
    return audit_rotate_ex(log, NULL, 0);
}

void audit_head(struct audit_log *log, uint8_t head[AUDIT_HASH_LEN], uint64_t *seq_p)
{
    pthread_mutex_lock(&log->lock);
    if (head != NULL)
        memcpy(head, log->head, AUDIT_HASH_LEN);
    if (seq_p != NULL)
        *seq_p = log->seq;
    pthread_mutex_unlock(&log->lock);
}

uint64_t audit_size(struct audit_log *log)
{
    uint64_t n;
    pthread_mutex_lock(&log->lock);
    n = log->size;
    pthread_mutex_unlock(&log->lock);
    return n;
}

uint64_t audit_durable_seq(struct audit_log *log)
{
    uint64_t n;
    pthread_mutex_lock(&log->lock);
    n = log->durable_seq;
    pthread_mutex_unlock(&log->lock);
    return n;
}

uint64_t audit_sync_count(struct audit_log *log)
{
    uint64_t n;
    pthread_mutex_lock(&log->lock);
    n = log->sync_count;
    pthread_mutex_unlock(&log->lock);
    return n;
}

void audit_close(struct audit_log *log)
{
    if (log == NULL)
        return;
    pthread_mutex_lock(&log->lock);
    log->stop = 1;
    pthread_cond_broadcast(&log->work_cv);
    pthread_cond_broadcast(&log->durable_cv);
    pthread_mutex_unlock(&log->lock);
    if (log->has_flusher)
        pthread_join(log->flusher, NULL);
    pthread_mutex_lock(&log->lock);
    if (!log->failed)
        (void)drain_locked(log);
    pthread_mutex_unlock(&log->lock);
    close(log->fd);
    pthread_mutex_destroy(&log->lock);
    pthread_cond_destroy(&log->durable_cv);
    pthread_cond_destroy(&log->work_cv);
    kl_buf_dispose_nowipe(&log->line);
    free(log->path);
    free(log);
}
