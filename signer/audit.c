/*
 * audit.c - the audit log writer: append (into a zero tail kept ahead), group commit, the
 * flusher, rotation, the torn-line check and repair at open, the roll-back of a failed
 * write (a full disk), and the checkpoints: start/stop records, signed checkpoints, the
 * state file, the anchors and the unlinked-log check (audit.h). Lines are formatted and
 * checked by audit_line.c; the offline verifier is audit_verify.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
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
    uint64_t seq;            /* last record written */
    uint64_t durable_seq;    /* last record known durable */
    uint64_t unwaited_seq;   /* GROUP: newest record appended without a waiter (the flusher's work) */
    uint64_t unwaited_ns;    /* GROUP: CLOCK_MONOTONIC append time of the oldest such record not yet durable */
    uint64_t size;           /* bytes of complete lines: the next record is written here */
    uint64_t alloc_end;      /* the file's length: zeros from size to here (see extend_locked) */
    uint64_t prealloc_after; /* a zero step failed (a full disk): none again before size reaches this */
    int no_zero_tail;        /* AUDIT_OPEN_NO_ZERO_TAIL: prealloc_after stays UINT64_MAX */
    uint64_t sync_count;
    int syncing; /* an fdatasync of fd runs outside the lock: fd must stay open */
    int failed;  /* sticky: a write or fdatasync failed */
    int stop;
    int has_flusher;
    pthread_t flusher;
    struct kl_buf line;    /* the line being written (audit_line_format), reused */
    uint64_t write_errors; /* failed writes rolled back (a full disk) */
    int degraded;          /* the last write failed and was rolled back */
    /* Checkpoints (audit_start). */
    int started;
    struct audit_checkpoint_config cp; /* copy; its strings are the owned ones below */
    char *cp_host;                     /* host id, at most CP_HOST_MAX bytes */
    char *cp_host_json;                /* the same escaped, as the line and statement hold it */
    char *cp_state_path;
    int state_fd;
    int anchor_fd;
    char *anchor_cmd;          /* cp.anchor_command, owned */
    pid_t anchor_pid;          /* the anchor command running, or 0 */
    int anchor_busy_said;      /* "still running" said once */
    uint64_t cp_pending;       /* records since the last checkpoint (checkpoints not counted) */
    uint64_t cp_written;       /* checkpoints written since audit_start */
    uint64_t last_cp_ns;       /* CLOCK_MONOTONIC time of the last checkpoint */
    int64_t last_signed_cp;    /* Unix time of the last signed checkpoint (audit_stats) */
    uint64_t first_pending_ns; /* CLOCK_MONOTONIC time of the first record after it */
    pthread_cond_t cp_cv;      /* the checkpointer: stop */
    int has_checkpointer;
    pthread_t checkpointer;
};

#define CP_HOST_MAX 64
#define STATE_MAX 256
/* Zeros written ahead of the records, per step (about 2,500 records of 400 bytes). */
#define PREALLOC_STEP (1u << 20)

static int checkpoint_locked(struct audit_log *log, const char *reason);

/* Write all n bytes, at off (pwrite) or, with off < 0, at the file offset (write). */
static int write_all_at(int fd, const char *p, size_t n, int64_t off)
{
    while (n > 0) {
        ssize_t w = off < 0 ? write(fd, p, n) : pwrite(fd, p, n, (off_t)off);
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
        if (off >= 0)
            off += w;
    }
    return 0;
}

/*
 * Keep a tail of zeros after the records, so that a record overwrites blocks that are
 * already written and inside the file: its fdatasync then writes that data block and no
 * metadata (no new size, no extent to allocate or convert), one device write instead of
 * two (issue 15; tests/bench/audit_sync_bench measures it). fallocate() alone would leave
 * "unwritten" extents whose conversion is a metadata write at the first record in every
 * block, so the zeros are written. The step's own blocks and the new size reach the disk
 * with the next record's fdatasync. Readers of a live or crashed log see the zeros after
 * the last newline (both verifiers skip them, the open finds the end before them); a
 * rotated or cleanly closed file is cut to its records (trim_locked). When the zeros
 * cannot be written (a full disk), the file is cut back and the records grow it as
 * before, with no new try until it has grown by a step. With the lock held.
 */
static void extend_locked(struct audit_log *log, size_t need)
{
    static const char zeros[65536];
    uint64_t end;

    if (log->size + need <= log->alloc_end || log->size < log->prealloc_after)
        return;
    end = (log->size + need + PREALLOC_STEP - 1) / PREALLOC_STEP * PREALLOC_STEP;
    for (uint64_t off = log->alloc_end > log->size ? log->alloc_end : log->size; off < end;) {
        size_t n = end - off < sizeof(zeros) ? (size_t)(end - off) : sizeof(zeros);
        if (write_all_at(log->fd, zeros, n, (int64_t)off) != 0) {
            /* Only zeros were written past size: cutting them loses nothing (and if the
             * cut fails, records overwrite them in place all the same). */
            if (ftruncate(log->fd, (off_t)log->size) != 0)
                log_err("audit: %s: cannot cut back a partial zero step", log->path);
            log->alloc_end = log->size;
            log->prealloc_after = log->size + PREALLOC_STEP;
            return;
        }
        off += n;
    }
    log->alloc_end = end;
}

/* Cut the zero tail off (rotation, close): the file then ends with its last line. The
 * caller's fdatasync makes the new length durable. With the lock held. */
static void trim_locked(struct audit_log *log)
{
    if (log->alloc_end <= log->size)
        return;
    if (ftruncate(log->fd, (off_t)log->size) != 0) {
        /* Harmless: the verifiers and the next open skip a zero tail. */
        log_err("audit: %s: cannot cut the zeros after the last record", log->path);
        return;
    }
    log->alloc_end = log->size;
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
    extend_locked(log, log->line.len);
    if (write_all_at(log->fd, (const char *)log->line.base, log->line.len, (int64_t)log->size) != 0) {
        int saved = errno;
        /* A full disk: cut the partial line off again (and the zeros after it) and refuse
         * only this record, so that the log recovers by itself when space returns (the
         * chain is unchanged). */
        if (ftruncate(log->fd, (off_t)log->size) == 0) {
            log->alloc_end = log->size;
            if (!log->degraded) {
                log_errx("audit: %s: write failed (%s); records are refused until a write succeeds", log->path,
                         strerror(saved));
            }
            log->degraded = 1;
            log->write_errors++;
            return KL_ERR_AUDIT;
        }
        /* A partial line may be on disk now; nothing after it could be trusted to chain
         * correctly, so refuse every further record (the signer fails closed). */
        log->failed = 1;
        pthread_cond_broadcast(&log->durable_cv);
        return KL_ERR_AUDIT;
    }
    if (log->degraded) {
        log_info("audit: %s: writes succeed again after %" PRIu64 " refused record(s)", log->path, log->write_errors);
        log->degraded = 0;
    }
    if (log->started && rec->checkpoint == NULL && log->cp_pending++ == 0)
        log->first_pending_ns = kl_clock_ns();
    log->seq++;
    log->size += log->line.len;
    if (log->size > log->alloc_end)
        log->alloc_end = log->size;
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
     * sync itself); a record nobody waits for is left to the flusher, which is woken only
     * when its first pending record arrives (not once per refusal of a flood). */
    if (ret == 0 && log->sync == AUDIT_SYNC_GROUP && seq_p == NULL) {
        if (log->durable_seq >= log->unwaited_seq) {
            log->unwaited_ns = kl_clock_ns();
            pthread_cond_signal(&log->work_cv);
        }
        log->unwaited_seq = log->seq;
    }
    /* Here, not in the checkpointer: never more than every_records between checkpoints.
     * A checkpoint that fails does not undo the record (the next one tries again). */
    if (ret == 0 && log->started && log->cp_pending >= log->cp.every_records)
        (void)checkpoint_locked(log, "records");
    pthread_mutex_unlock(&log->lock);
    return ret;
}

/* fdatasync everything written so far, outside the lock (called and returning with it
 * held). Only one sync runs at a time; fd stays open meanwhile (rotate/close wait). */
static void sync_unlocked(struct audit_log *log)
{
    uint64_t target = log->seq, start = kl_clock_ns();
    int fd = log->fd, r;

    log->syncing = 1;
    log->sync_count++;
    pthread_mutex_unlock(&log->lock);
    r = fdatasync(fd);
    pthread_mutex_lock(&log->lock);
    log->syncing = 0;
    if (r != 0) {
        log->failed = 1; /* after a failed fdatasync the page cache state is unknown */
    } else if (target > log->durable_seq) {
        log->durable_seq = target;
        /* Unwaited records still pending were appended after this sync started: their
         * group_ms runs from then at the earliest (not from the first one's, now durable). */
        if (log->unwaited_seq > target && log->unwaited_ns < start)
            log->unwaited_ns = start;
    }
    pthread_cond_broadcast(&log->durable_cv);
}

/* What stands between record seq and durability, with the lock held. */
enum durable_step {
    STEP_DONE,   /* durable */
    STEP_FAILED, /* the log failed */
    STEP_WAIT,   /* a sync runs, or NONE mode: wait for durable_cv */
    STEP_SYNC,   /* this caller may run the sync now */
};

/*
 * Group commit without a timer (the way PostgreSQL's and MySQL's commit groups form): a
 * record written while no fdatasync runs is synced at once by its waiter; records written
 * while one runs are not covered by it (it may have passed their blocks already), so their
 * waiters sleep until it ends and then one of them syncs the whole batch written meanwhile.
 * A lone record pays one fdatasync and no wait; a busy log one fdatasync per batch.
 */
static enum durable_step durable_step_locked(const struct audit_log *log, uint64_t seq)
{
    if (log->failed)
        return STEP_FAILED;
    if (log->durable_seq >= seq)
        return STEP_DONE;
    if (log->syncing || log->sync == AUDIT_SYNC_NONE)
        return STEP_WAIT;
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

    if (log == NULL)
        return KL_ERR_INVALID;
    pthread_mutex_lock(&log->lock);
    if (seq > log->seq) {
        ret = KL_ERR_INVALID;
        goto exit;
    }
    for (;;) {
        enum durable_step step = durable_step_locked(log, seq);
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
        } else {
            pthread_cond_wait(&log->durable_cv, &log->lock);
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
 * GROUP mode, records nobody waits for (refusals, list_keys, connection events): each is
 * made durable within group_ms of its append. Until then it may ride a waiter's fdatasync
 * (a signature's, which covers everything written before it started); at the deadline
 * this thread runs one itself. So a flood of refusals costs at most one fdatasync per
 * group_ms, and refusals among signatures cost none of their own. Signatures never wait
 * for this thread or its deadline: their first waiter syncs at once (make_durable).
 */
static void *flusher_main(void *arg)
{
    struct audit_log *log = arg;
    uint64_t bound = (uint64_t)log->group_ms * 1000000ULL;

    pthread_mutex_lock(&log->lock);
    while (!log->stop) {
        if (log->failed || log->durable_seq >= log->unwaited_seq) {
            pthread_cond_wait(&log->work_cv, &log->lock);
            continue;
        }
        uint64_t now = kl_clock_ns(), due = log->unwaited_ns + bound;
        if (now < due) {
            struct timespec ts;
            deadline_in(&ts, due - now);
            /* Appends do not signal while records are pending; this wakes for stop. */
            (void)pthread_cond_timedwait(&log->work_cv, &log->lock, &ts);
            continue;
        }
        if (log->syncing) {
            pthread_cond_wait(&log->durable_cv, &log->lock);
            continue;
        }
        sync_unlocked(log);
    }
    pthread_mutex_unlock(&log->lock);
    return NULL;
}

/* Where the records of a file of file_size bytes end: after its last byte that is not a
 * zero (the tail extend_locked keeps, or left by a crash). 0 or -1 with errno. */
static int find_end(int fd, uint64_t file_size, uint64_t *end_p)
{
    char buf[65536];
    uint64_t end = file_size;

    while (end > 0) {
        size_t n = end < sizeof(buf) ? (size_t)end : sizeof(buf);
        ssize_t r = pread(fd, buf, n, (off_t)(end - n));
        if (r < 0 && errno == EINTR)
            continue;
        if (r != (ssize_t)n) {
            if (r >= 0)
                errno = EIO;
            return -1;
        }
        size_t k = n;
        while (k > 0 && buf[k - 1] == '\0')
            k--;
        if (k > 0) {
            end = end - n + k;
            break;
        }
        end -= n;
    }
    *end_p = end;
    return 0;
}

/* Read the last line of fd (its records end at the first of the trailing zeros) and check
 * it; fill head and seq. */
static int load_tail(struct audit_log *log, unsigned flags, struct open_report *o)
{
    struct stat st;
    size_t window, start;
    uint64_t off, used = 0;
    char *buf = NULL, what[256];
    int ret = 0;

    if (fstat(log->fd, &st) != 0) {
        open_fail(o, AUDIT_OPEN_FAIL_IO, "%s: fstat: %s", log->path, strerror(errno));
        return KL_ERR_IO;
    }
    if (find_end(log->fd, (uint64_t)st.st_size, &used) != 0) {
        open_fail(o, AUDIT_OPEN_FAIL_IO, "%s: read: %s", log->path, strerror(errno));
        return KL_ERR_IO;
    }
    log->size = used;
    log->alloc_end = (uint64_t)st.st_size;
    if (!S_ISREG(st.st_mode) || (flags & AUDIT_OPEN_NO_ZERO_TAIL))
        log->prealloc_after = UINT64_MAX; /* a device or FIFO (tests: /dev/full) gets no zeros */
    if (used == 0)
        return 0; /* fresh log (or only zeros): chains to the genesis hash, seq starts at 1 */
    window = used < AUDIT_MAX_LINE + 2 ? (size_t)used : AUDIT_MAX_LINE + 2;
    off = used - window;
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
                     used - good, good);
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
        int ok = sfd >= 0 && write_all_at(sfd, buf + keep, window - keep, -1) == 0 && fsync(sfd) == 0;
        if (sfd >= 0)
            close(sfd);
        /* The zeros after the torn bytes (if any) go too: the file ends with its last line. */
        if (!ok || ftruncate(log->fd, (off_t)good) != 0 || fsync(log->fd) != 0) {
            open_fail(o, AUDIT_OPEN_FAIL_REPAIR, "%s: repairing the torn last line: %s", log->path, strerror(errno));
            free(saved);
            ret = KL_ERR_IO;
            goto exit;
        }
        free(saved);
        log->size = good;
        log->alloc_end = good;
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
    /* Not O_APPEND: records overwrite the zero tail in place at log->size (extend_locked). */
    int fd = open(log->path, O_RDWR | O_CREAT | O_CLOEXEC | extra_flags, 0600);
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
    log->state_fd = -1;
    log->anchor_fd = -1;
    kl_buf_init(&log->line, AUDIT_MAX_LINE);
    KL_ENSURE((log->path = strdup(path)) != NULL, KL_ERR_NO_MEMORY);
    log->sync = sync;
    log->no_zero_tail = (flags & AUDIT_OPEN_NO_ZERO_TAIL) != 0;
    log->group_ms = group_ms != 0 ? group_ms : AUDIT_DEFAULT_GROUP_MS;
    pthread_mutex_init(&log->lock, NULL);
    pthread_cond_init(&log->durable_cv, NULL);
    pthread_cond_init(&log->work_cv, NULL);
    pthread_cond_init(&log->cp_cv, NULL);
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
            pthread_cond_destroy(&log->cp_cv);
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

/* ------------------------------------------------------------------ checkpoints */

/* The state file: one fixed-length line, rewritten in place after every checkpoint. */
static void state_write_locked(struct audit_log *log)
{
    char buf[STATE_MAX], hex[2 * AUDIT_HASH_LEN + 1];
    int n;

    if (log->state_fd < 0)
        return;
    audit_hex_hash(hex, log->head);
    n = snprintf(buf, sizeof(buf), "keyless-audit-state/1 seq=%020" PRIu64 " head=%s size=%020" PRIu64 "\n", log->seq,
                 hex, log->size);
    if (pwrite(log->state_fd, buf, (size_t)n, 0) != n || fdatasync(log->state_fd) != 0) {
        /* The log itself is fine; only the start-up check loses its reference. */
        log_err("audit: %s: cannot write the state file", log->cp_state_path);
    }
}

struct audit_state {
    uint64_t seq, size;
    uint8_t head[AUDIT_HASH_LEN];
};

/* Read the state file: 1 if it holds a state, 0 if it is empty (none yet), <0 if unusable. */
static int state_read(int fd, struct audit_state *st)
{
    char buf[STATE_MAX], hex[2 * AUDIT_HASH_LEN + 1];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

    if (n < 0)
        return KL_ERR_IO;
    if (n == 0)
        return 0;
    buf[n] = '\0';
    if (sscanf(buf, "keyless-audit-state/1 seq=%20" SCNu64 " head=%64[0-9a-f] size=%20" SCNu64, &st->seq, hex,
               &st->size) != 3 ||
        audit_hex_decode_hash(st->head, hex, strlen(hex)) != 0)
        return KL_ERR_DECODE;
    return 1;
}

/*
 * Does the log hold, ending at byte st->size, the checkpoint line with st->seq and
 * st->head? 0 if so; else KL_ERR_AUDIT with why.
 */
static int state_matches(struct audit_log *log, const struct audit_state *st, char *why, size_t why_len)
{
    char buf[4096], what[256];
    struct audit_line_info *info = NULL;
    size_t window;
    ssize_t got;
    int ret = 0;

    if (log->size == 0) {
        snprintf(why, why_len, "the log is missing or empty, but the state file says it reached seq %" PRIu64, st->seq);
        return KL_ERR_AUDIT;
    }
    if (log->size < st->size) {
        snprintf(why, why_len,
                 "the log has %" PRIu64 " bytes, fewer than the %" PRIu64 " it had at its last checkpoint (seq %" PRIu64
                 "): truncated or replaced",
                 log->size, st->size, st->seq);
        return KL_ERR_AUDIT;
    }
    window = st->size < sizeof(buf) ? (size_t)st->size : sizeof(buf);
    got = pread(log->fd, buf, window, (off_t)(st->size - window));
    KL_ENSURE((info = malloc(sizeof(*info))) != NULL, KL_ERR_NO_MEMORY);
    if (got == (ssize_t)window && window > 0 && buf[window - 1] == '\n') {
        size_t start = window - 1;
        while (start > 0 && buf[start - 1] != '\n')
            start--;
        if ((start > 0 || window == st->size) &&
            audit_line_check(info, what, sizeof(what), buf + start, window - 1 - start) == 0 && info->is_checkpoint &&
            info->seq == st->seq && crypto_equal(info->hash, st->head, AUDIT_HASH_LEN))
            goto exit;
    }
    snprintf(why, why_len,
             "the log does not hold the last checkpoint the state file names (seq %" PRIu64 " ending at byte %" PRIu64
             "): replaced or rewritten",
             st->seq, st->size);
    ret = KL_ERR_AUDIT;
exit:
    free(info);
    return ret;
}

extern char **environ;

/* Run the anchor command with the line as $1, unless the last one still runs. */
static void anchor_command_locked(struct audit_log *log, char *line)
{
    int st;
    pid_t pid;

    if (log->anchor_pid > 0) {
        if (waitpid(log->anchor_pid, &st, WNOHANG) == 0) {
            if (!log->anchor_busy_said)
                log_warnx("audit: the anchor command still runs; checkpoint seq %" PRIu64 " is not sent to it",
                          log->seq);
            log->anchor_busy_said = 1;
            return;
        }
        log->anchor_pid = 0;
    }
    char *argv[] = {"/bin/sh", "-c", log->anchor_cmd, "keyless-anchor", line, NULL};
    /* posix_spawn: no PKCS#11 or lock state is touched in the child before exec. */
    if ((errno = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ)) != 0) {
        log_err("audit: cannot run the anchor command");
        return;
    }
    log->anchor_pid = pid;
    log->anchor_busy_said = 0;
}

/* Send the checkpoint just written (log->seq, log->head) to the anchors. */
static void anchor_locked(struct audit_log *log, const char *reason, uint64_t count)
{
    char hex[2 * AUDIT_HASH_LEN + 1], line[512];
    int n;

    audit_hex_hash(hex, log->head);
    n = snprintf(line, sizeof(line),
                 "keyless-signer audit checkpoint host=%s seq=%" PRIu64 " head=%s count=%" PRIu64 " reason=%s",
                 log->cp_host_json, log->seq, hex, count, reason);
    if (n < 0 || (size_t)n >= sizeof(line) - 1)
        return;
    if (log->cp.syslog_facility >= 0)
        syslog(log->cp.syslog_facility | LOG_NOTICE, "%s", line);
    if (log->anchor_cmd != NULL)
        anchor_command_locked(log, line);
    if (log->anchor_fd >= 0) {
        line[n] = '\n';
        if (write_all_at(log->anchor_fd, line, (size_t)n + 1, -1) != 0)
            log_err("audit: %s: cannot append the checkpoint", log->cp.anchor_file);
    }
}

/* Write a checkpoint record for everything before it, sign it, make it durable, then
 * update the state file and the anchors. With the lock held. */
static int checkpoint_locked(struct audit_log *log, const char *reason)
{
    struct timespec now;
    char tbuf[40], stmt[AUDIT_MAX_STATEMENT];
    uint8_t sig[AUDIT_MAX_SIG];
    size_t sig_len = sizeof(sig), stmt_len;
    struct audit_checkpoint cp = {.host = log->cp_host, .count = log->cp_pending, .interval = log->cp.every_records};
    struct audit_record rec;
    int ret;

    if (log->failed)
        return KL_ERR_AUDIT;
    clock_gettime(CLOCK_REALTIME, &now);
    audit_format_time(tbuf, &now);
    /* The statement holds the strings as the line writes them: tbuf and reason need no
     * escaping (our own constants), the host is escaped once at start. */
    stmt_len = audit_checkpoint_statement(stmt, sizeof(stmt), log->cp_host_json, log->seq + 1, log->head, cp.count,
                                          cp.interval, tbuf, reason);
    if (stmt_len == 0)
        return KL_ERR_OVERFLOW;
    if (log->cp.sign != NULL) {
        if ((ret = log->cp.sign(log->cp.sign_ctx, sig, &sig_len, (const uint8_t *)stmt, stmt_len)) == 0 &&
            sig_len > 0 && sig_len <= sizeof(sig)) {
            cp.sig = sig;
            cp.sig_len = sig_len;
        } else {
            /* Written unsigned all the same: the verifier reports it, and the gap in the
             * signed checkpoints is itself on the record. */
            log_errx("audit: the audit key did not sign checkpoint seq %" PRIu64 " (%s); written unsigned",
                     log->seq + 1, kl_err_str(ret != 0 ? ret : KL_ERR_HSM));
        }
    }
    memset(&rec, 0, sizeof(rec));
    rec.time = now;
    rec.pid = getpid();
    rec.uid = getuid();
    rec.gid = getgid();
    rec.op = "checkpoint";
    rec.status = "OK";
    rec.reason = reason;
    rec.checkpoint = &cp;
    if ((ret = append_locked(log, &rec, NULL, NULL)) != 0)
        return ret;
    log->cp_pending = 0;
    log->cp_written++;
    log->last_cp_ns = kl_clock_ns();
    if (cp.sig != NULL)
        log->last_signed_cp = (int64_t)now.tv_sec;
    /* The state and the anchors must never be ahead of what is on disk. */
    if (log->sync != AUDIT_SYNC_NONE && (ret = drain_locked(log)) != 0)
        return ret;
    state_write_locked(log);
    anchor_locked(log, reason, cp.count);
    return 0;
}

/* The live log was unlinked (st_nlink == 0): every record written to it now would be lost
 * with its last descriptor. Make a new file at the path that continues the chain, say so
 * on the record and in the log. With the lock held. */
static void check_unlinked_locked(struct audit_log *log)
{
    struct stat st;
    struct open_report o = {AUDIT_OPEN_FAIL_NONE, NULL, 0}; /* the reason goes to the log */
    int old_fd;

    if (log->failed || fstat(log->fd, &st) != 0 || st.st_nlink != 0)
        return;
    log_errx("audit: %s was unlinked while the signer wrote to it; a new file there continues the chain", log->path);
    while (log->syncing)
        pthread_cond_wait(&log->durable_cv, &log->lock);
    old_fd = log->fd;
    if (open_file(log, O_EXCL, &o) != 0) {
        log->fd = old_fd;
        log->failed = 1; /* someone else's file at the path: write nowhere rather than there */
        pthread_cond_broadcast(&log->durable_cv);
        return;
    }
    close(old_fd);
    log->size = log->alloc_end = 0;
    log->prealloc_after = log->no_zero_tail ? UINT64_MAX : 0;
    (void)fsync_dir_of(log->path);
    struct audit_record rec = {.pid = getpid(),
                               .uid = getuid(),
                               .gid = getgid(),
                               .op = "reopen",
                               .status = "OK",
                               .reason = "the live log was unlinked; this file continues its chain"};
    if (append_locked(log, &rec, "(unlinked)", NULL) == 0)
        (void)checkpoint_locked(log, "reopen");
}

/* Checkpoints within every_ms of a record, heartbeats when idle, the unlinked-log check. */
static void *checkpointer_main(void *arg)
{
    struct audit_log *log = arg;
    /* A quarter of the shorter period: each checkpoint is at most that late. */
    uint64_t every = (uint64_t)log->cp.every_ms * 1000000ULL, beat = (uint64_t)log->cp.heartbeat_ms * 1000000ULL;
    uint64_t tick = (every < beat ? every : beat) / 4;

    pthread_mutex_lock(&log->lock);
    while (!log->stop) {
        struct timespec ts;
        deadline_in(&ts, tick);
        (void)pthread_cond_timedwait(&log->cp_cv, &log->lock, &ts);
        if (log->stop || log->failed)
            continue;
        check_unlinked_locked(log);
        uint64_t now = kl_clock_ns();
        if (log->cp_pending > 0 && now - log->first_pending_ns >= every)
            (void)checkpoint_locked(log, "interval");
        else if (log->cp_pending == 0 && now - log->last_cp_ns >= beat)
            (void)checkpoint_locked(log, "heartbeat");
    }
    pthread_mutex_unlock(&log->lock);
    return NULL;
}

/* Copy cfg into log (defaults applied, strings owned) and open the state and anchor files. */
static int start_setup(struct audit_log *log, const struct audit_checkpoint_config *cfg, char *err, size_t err_len)
{
    char host[256];
    const char *h = cfg->host;
    size_t plen, jlen;
    int ret = 0;

    /* A start refused earlier may be tried again (with new_chain): drop what it set up. */
    free(log->cp_host);
    free(log->cp_host_json);
    free(log->cp_state_path);
    free((char *)log->cp.anchor_file);
    free(log->anchor_cmd);
    log->cp_host = log->cp_host_json = log->cp_state_path = log->anchor_cmd = NULL;
    if (log->state_fd >= 0)
        close(log->state_fd);
    if (log->anchor_fd >= 0)
        close(log->anchor_fd);
    log->state_fd = log->anchor_fd = -1;
    log->cp = *cfg;
    log->cp.host = NULL;
    log->cp.anchor_file = NULL;
    log->cp.state_path = NULL;
    log->cp.config_sha256 = NULL;
    log->cp.anchor_command = NULL;
    if (log->cp.every_records == 0)
        log->cp.every_records = AUDIT_DEFAULT_CP_RECORDS;
    if (log->cp.every_ms == 0)
        log->cp.every_ms = AUDIT_DEFAULT_CP_MS;
    if (log->cp.heartbeat_ms == 0)
        log->cp.heartbeat_ms = AUDIT_DEFAULT_HEARTBEAT_MS;
    if (h == NULL) {
        if (gethostname(host, sizeof(host)) != 0)
            snprintf(host, sizeof(host), "unknown");
        host[sizeof(host) - 1] = '\0';
        h = host;
    }
    KL_ENSURE((log->cp_host = strndup(h, CP_HOST_MAX)) != NULL, KL_ERR_NO_MEMORY);
    jlen = audit_json_escape(NULL, 0, log->cp_host, strlen(log->cp_host));
    KL_ENSURE((log->cp_host_json = malloc(jlen + 1)) != NULL, KL_ERR_NO_MEMORY);
    audit_json_escape(log->cp_host_json, jlen + 1, log->cp_host, strlen(log->cp_host));
    if (cfg->state_path != NULL) {
        KL_ENSURE((log->cp_state_path = strdup(cfg->state_path)) != NULL, KL_ERR_NO_MEMORY);
    } else {
        plen = strlen(log->path) + sizeof(".state");
        KL_ENSURE((log->cp_state_path = malloc(plen)) != NULL, KL_ERR_NO_MEMORY);
        snprintf(log->cp_state_path, plen, "%s.state", log->path);
    }
    if (cfg->anchor_command != NULL)
        KL_ENSURE((log->anchor_cmd = strdup(cfg->anchor_command)) != NULL, KL_ERR_NO_MEMORY);
    if (cfg->anchor_file != NULL) {
        KL_ENSURE((log->cp.anchor_file = strdup(cfg->anchor_file)) != NULL, KL_ERR_NO_MEMORY);
        log->anchor_fd = open(cfg->anchor_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (log->anchor_fd < 0) {
            snprintf(err, err_len, "%s: cannot open the anchor file: %s", cfg->anchor_file, strerror(errno));
            ret = KL_ERR_IO;
            goto exit;
        }
    }
    log->state_fd = open(log->cp_state_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (log->state_fd < 0) {
        snprintf(err, err_len, "%s: cannot open the state file: %s", log->cp_state_path, strerror(errno));
        ret = KL_ERR_IO;
    }
exit:
    return ret;
}

int audit_start(struct audit_log *log, const struct audit_checkpoint_config *cfg, enum audit_start_fail *fail_p,
                char *err, size_t err_len)
{
    enum audit_start_fail fail = AUDIT_START_FAIL_RESOURCE;
    struct audit_state st;
    char why[400] = "", reason[sizeof(why) + 64];
    char dummy[8];
    int ret = 0, has_state;

    if (err == NULL || err_len == 0) {
        err = dummy;
        err_len = sizeof(dummy);
    }
    err[0] = '\0';
    if (log == NULL || cfg == NULL)
        return KL_ERR_INVALID;
    pthread_mutex_lock(&log->lock);
    KL_ENSURE(!log->started && !log->failed, KL_ERR_INVALID);
    if ((ret = start_setup(log, cfg, err, err_len)) != 0) {
        fail = ret == KL_ERR_NO_MEMORY ? AUDIT_START_FAIL_RESOURCE : AUDIT_START_FAIL_STATE;
        goto exit;
    }
    has_state = state_read(log->state_fd, &st);
    if (has_state < 0 && !cfg->new_chain) {
        snprintf(err, err_len,
                 "%s: the state file is not readable or not in its format; to begin a new chain on "
                 "purpose, start once with --new-audit-chain",
                 log->cp_state_path);
        fail = AUDIT_START_FAIL_STATE;
        ret = KL_ERR_AUDIT;
        goto exit;
    }
    if (has_state > 0) {
        ret = state_matches(log, &st, why, sizeof(why));
        if (ret == KL_ERR_NO_MEMORY)
            goto exit;
    } else if (has_state == 0 && log->size > 0) {
        snprintf(why, sizeof(why), "the log has records but there is no state file (%s) to check it against",
                 log->cp_state_path);
        ret = KL_ERR_AUDIT;
    } else if (has_state < 0) {
        snprintf(why, sizeof(why), "the state file %s was unusable", log->cp_state_path);
        ret = KL_ERR_AUDIT;
    }
    if (ret != 0 && !cfg->new_chain) {
        snprintf(err, err_len, "%s: %s; to begin a new chain on purpose, start once with --new-audit-chain", log->path,
                 why);
        fail = AUDIT_START_FAIL_MISMATCH;
        goto exit;
    }
    if (ret != 0)
        snprintf(reason, sizeof(reason), "new audit chain (--new-audit-chain): %s", why);
    else if (has_state > 0)
        snprintf(reason, sizeof(reason), "continues from checkpoint seq %" PRIu64 "%s", st.seq,
                 log->seq > st.seq ? " (records after it were not checkpointed: no clean stop)" : "");
    else
        snprintf(reason, sizeof(reason), "%s", cfg->new_chain ? "new audit chain (--new-audit-chain)" : "first start");
    ret = 0;
    log->started = 1;
    log->cp_pending = 0;
    struct audit_record rec = {.pid = getpid(),
                               .uid = getuid(),
                               .gid = getgid(),
                               .op = "start",
                               .status = "OK",
                               .reason = reason,
                               .config_sha256 = cfg->config_sha256};
    fail = AUDIT_START_FAIL_WRITE;
    if ((ret = append_locked(log, &rec, NULL, NULL)) != 0 || (ret = checkpoint_locked(log, "start")) != 0) {
        snprintf(err, err_len, "%s: cannot write the start record and checkpoint: %s", log->path, kl_err_str(ret));
        goto exit;
    }
    fail = AUDIT_START_FAIL_RESOURCE;
    if (pthread_create(&log->checkpointer, NULL, checkpointer_main, log) != 0) {
        snprintf(err, err_len, "%s: cannot start the checkpointer thread", log->path);
        ret = KL_ERR_NO_MEMORY;
        goto exit;
    }
    log->has_checkpointer = 1;
    fail = AUDIT_START_FAIL_NONE;
exit:
    if (ret != 0 && ret != KL_ERR_INVALID)
        log->started = 0;
    pthread_mutex_unlock(&log->lock);
    if (fail_p != NULL)
        *fail_p = ret == 0 ? AUDIT_START_FAIL_NONE : fail;
    return ret;
}

int audit_checkpoint_now(struct audit_log *log, const char *reason)
{
    int ret;
    if (log == NULL || reason == NULL)
        return KL_ERR_INVALID;
    pthread_mutex_lock(&log->lock);
    ret = log->started ? checkpoint_locked(log, reason) : KL_ERR_INVALID;
    pthread_mutex_unlock(&log->lock);
    return ret;
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
    /* The old file ends with a checkpoint, the new one starts with one after its rotate record. */
    if (log->started)
        KL_TRY(checkpoint_locked(log, "rotate"));
    trim_locked(log); /* a rotated file ends with its last line */
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
    log->size = log->alloc_end = 0;
    log->prealloc_after = log->no_zero_tail ? UINT64_MAX : 0;
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
    if (log->started)
        KL_TRY(checkpoint_locked(log, "rotated"));
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

void audit_close(struct audit_log *log)
{
    if (log == NULL)
        return;
    pthread_mutex_lock(&log->lock);
    if (log->started && !log->failed) {
        /* A clean stop: its record and a last checkpoint, so that a cut tail shows. */
        struct audit_record rec = {
            .pid = getpid(), .uid = getuid(), .gid = getgid(), .op = "stop", .status = "OK", .reason = NULL};
        if (append_locked(log, &rec, NULL, NULL) == 0)
            (void)checkpoint_locked(log, "stop");
    }
    log->stop = 1;
    pthread_cond_broadcast(&log->work_cv);
    pthread_cond_broadcast(&log->durable_cv);
    pthread_cond_broadcast(&log->cp_cv);
    pthread_mutex_unlock(&log->lock);
    if (log->has_flusher)
        pthread_join(log->flusher, NULL);
    if (log->has_checkpointer)
        pthread_join(log->checkpointer, NULL);
    pthread_mutex_lock(&log->lock);
    if (!log->failed) {
        trim_locked(log); /* a closed file ends with its last line */
        (void)drain_locked(log);
    }
    pthread_mutex_unlock(&log->lock);
    close(log->fd);
    pthread_mutex_destroy(&log->lock);
    pthread_cond_destroy(&log->durable_cv);
    pthread_cond_destroy(&log->work_cv);
    pthread_cond_destroy(&log->cp_cv);
    kl_buf_dispose_nowipe(&log->line);
    if (log->state_fd >= 0)
        close(log->state_fd);
    if (log->anchor_fd >= 0)
        close(log->anchor_fd);
    free(log->cp_host);
    free(log->cp_host_json);
    free(log->cp_state_path);
    free((char *)log->cp.anchor_file);
    free(log->anchor_cmd);
    if (log->anchor_pid > 0)
        (void)waitpid(log->anchor_pid, NULL, WNOHANG); /* reaped if done; never waited for */
    free(log->path);
    free(log);
}

void audit_stats(struct audit_log *log, struct audit_stats *st)
{
    pthread_mutex_lock(&log->lock);
    memcpy(st->head, log->head, AUDIT_HASH_LEN);
    st->seq = log->seq;
    st->durable_seq = log->durable_seq;
    st->size = log->size;
    st->sync_count = log->sync_count;
    st->write_errors = log->write_errors;
    st->checkpoints = log->cp_written;
    st->last_checkpoint_time = log->last_signed_cp;
    pthread_mutex_unlock(&log->lock);
}
