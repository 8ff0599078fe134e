#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include "audit.h"
#include "keyless.pb-c.h"
#include "log.h"
#include "metrics.h"
#include "p11_backend.h"
#include "tls_ids.h"

#define MAX_GLOBAL 16          /* code points in tls_schemes[] (checked at init) */
#define SLOTS (MAX_GLOBAL + 1) /* the last slot: a scheme the key does not have */
#define N_STATUS 9             /* Keyless__V1__Status 0..8; anything else counts as 0 */
#define N_BUCKETS 15
#define MAX_ROWS 1024   /* key names over the process's life (reloads add, never remove) */
#define NAME_MAX_LEN 72 /* a key name is at most 64 bytes (signer/config.c) */

/* Upper bounds in nanoseconds; the last bucket is +Inf. */
static const uint64_t bounds_ns[N_BUCKETS - 1] = {100000,    250000,    500000,     1000000,      2500000,
                                                  5000000,   10000000,  25000000,   50000000,     100000000,
                                                  250000000, 500000000, 1000000000, 2500000000ull};

struct histo {
    uint64_t bucket[N_BUCKETS];
    uint64_t count, sum_ns;
};

/*
 * One row per key name ever configured (issue 14: a reload adds rows and deactivates the
 * ones it dropped, so no counter goes backwards). Counts are indexed by the scheme's place
 * in tls_schemes[]; a scheme outside the key's current schemes (mask) counts as "other".
 * name is written before the row is published (n_rows, release), never after; mask and
 * active change on the I/O thread and are read with atomics by the signing threads.
 */
struct key_row {
    char name[NAME_MAX_LEN];
    uint32_t mask; /* bit i: tls_schemes[i] is one of the key's schemes */
    int active;    /* configured now: its ok series are shown from 0 */
    uint64_t count[SLOTS][N_STATUS];
};

static struct {
    struct key_row *rows; /* MAX_ROWS */
    size_t n_rows;
    struct key_row none; /* "(none)": an unknown key name, a bad request */
    int ready;
    struct histo request, hsm_sign, audit_sync;
    int64_t queue;
    uint64_t audit_failures;
    uint64_t reloads_ok, reloads_failed;
    struct p11_backend *be;
    struct audit_log *audit;
    int audit_signed; /* checkpoints are signed (audit_key): the timestamp series is shown */
    time_t start;
    /* the writer */
    char *path;
    unsigned interval_ms;
    pthread_t thread;
    int running, stop;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} m = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static size_t scheme_slot(uint16_t scheme)
{
    for (size_t i = 0; i < tls_n_schemes && i < MAX_GLOBAL; i++) {
        if (tls_schemes[i].id == scheme) {
            return i;
        }
    }
    return MAX_GLOBAL;
}

static uint32_t scheme_mask(const uint16_t *schemes, size_t n)
{
    uint32_t mask = 0;
    for (size_t s = 0; s < n; s++) {
        size_t slot = scheme_slot(schemes[s]);
        mask |= slot < MAX_GLOBAL ? 1u << slot : 0;
    }
    return mask;
}

/* The published row named name, or NULL. */
static struct key_row *row_find(const char *name)
{
    size_t n = __atomic_load_n(&m.n_rows, __ATOMIC_ACQUIRE);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(m.rows[i].name, name) == 0) {
            return &m.rows[i];
        }
    }
    return NULL;
}

int signer_metrics_init(const char *const *names, const uint16_t *const *schemes, const size_t *n_schemes,
                        size_t n_keys)
{
    if (m.ready || tls_n_schemes > MAX_GLOBAL) {
        return KL_ERR_INVALID;
    }
    m.rows = calloc(MAX_ROWS, sizeof(*m.rows));
    if (m.rows == NULL) {
        return KL_ERR_NO_MEMORY;
    }
    m.start = time(NULL);
    __atomic_store_n(&m.ready, 1, __ATOMIC_RELEASE);
    return signer_metrics_set_keys(names, schemes, n_schemes, n_keys);
}

int signer_metrics_set_keys(const char *const *names, const uint16_t *const *schemes, const size_t *n_schemes,
                            size_t n_keys)
{
    int ret = 0;
    if (!m.ready) {
        return KL_ERR_INVALID;
    }
    pthread_mutex_lock(&m.lock);
    /* New and kept keys first, so a key in both configurations is never inactive. */
    for (size_t k = 0; k < n_keys; k++) {
        struct key_row *row = row_find(names[k]);
        if (row == NULL && m.n_rows < MAX_ROWS && strlen(names[k]) < NAME_MAX_LEN) {
            row = &m.rows[m.n_rows];
            snprintf(row->name, sizeof(row->name), "%s", names[k]);
            __atomic_store_n(&m.n_rows, m.n_rows + 1, __ATOMIC_RELEASE);
        }
        if (row == NULL) {
            ret = KL_ERR_OVERFLOW; /* counted under "(none)" */
            continue;
        }
        __atomic_store_n(&row->mask, scheme_mask(schemes[k], n_schemes[k]), __ATOMIC_RELAXED);
        __atomic_store_n(&row->active, 1, __ATOMIC_RELAXED);
    }
    for (size_t i = 0; i < m.n_rows; i++) {
        int still = 0;
        for (size_t k = 0; k < n_keys && !still; k++) {
            still = strcmp(m.rows[i].name, names[k]) == 0;
        }
        if (!still) {
            __atomic_store_n(&m.rows[i].active, 0, __ATOMIC_RELAXED);
        }
    }
    pthread_mutex_unlock(&m.lock);
    return ret;
}

void signer_metrics_reload(int ok)
{
    if (m.ready) {
        __atomic_fetch_add(ok ? &m.reloads_ok : &m.reloads_failed, 1, __ATOMIC_RELAXED);
    }
}

void signer_metrics_set_backend(struct p11_backend *be)
{
    m.be = be;
}

void signer_metrics_set_audit(struct audit_log *audit, int signed_checkpoints)
{
    m.audit = audit;
    m.audit_signed = signed_checkpoints;
}

static void histo_add(struct histo *h, uint64_t ns)
{
    size_t i = 0;
    while (i < N_BUCKETS - 1 && ns > bounds_ns[i]) {
        i++;
    }
    __atomic_fetch_add(&h->bucket[i], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->sum_ns, ns, __ATOMIC_RELAXED);
}

void signer_metrics_sign(const char *key, uint16_t scheme, int status, uint64_t ns)
{
    if (!__atomic_load_n(&m.ready, __ATOMIC_ACQUIRE)) {
        return;
    }
    /* Linear: at most a few hundred keys, against a signature that costs a C_Sign. An
     * unknown name (peers choose it) and a key dropped by a reload count under "(none)". */
    struct key_row *row = key != NULL ? row_find(key) : NULL;
    if (row == NULL || !__atomic_load_n(&row->active, __ATOMIC_RELAXED)) {
        row = &m.none;
    }
    size_t slot = scheme_slot(scheme);
    if (slot == MAX_GLOBAL || !(__atomic_load_n(&row->mask, __ATOMIC_RELAXED) & (1u << slot))) {
        slot = MAX_GLOBAL;
    }
    __atomic_fetch_add(&row->count[slot][status >= 0 && status < N_STATUS ? status : 0], 1, __ATOMIC_RELAXED);
    histo_add(&m.request, ns);
}

void signer_metrics_hsm_sign(uint64_t ns)
{
    if (m.ready) {
        histo_add(&m.hsm_sign, ns);
    }
}

void signer_metrics_audit_sync(uint64_t ns)
{
    if (m.ready) {
        histo_add(&m.audit_sync, ns);
    }
}

void signer_metrics_audit_failure(void)
{
    if (m.ready) {
        __atomic_fetch_add(&m.audit_failures, 1, __ATOMIC_RELAXED);
    }
}

void signer_metrics_queue(int delta)
{
    if (m.ready) {
        __atomic_fetch_add(&m.queue, delta, __ATOMIC_RELAXED);
    }
}

/* A label value: the characters Prometheus needs escaped are escaped (key names come from
 * the operator's config, never from peers). */
static void put_label(FILE *out, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"') {
            fputc('\\', out);
            fputc(*s, out);
        } else if (*s == '\n') {
            fputs("\\n", out);
        } else {
            fputc(*s, out);
        }
    }
}

static void put_histo(FILE *out, const char *name, const char *help, const struct histo *h)
{
    uint64_t cum = 0;
    fprintf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (size_t i = 0; i < N_BUCKETS; i++) {
        cum += __atomic_load_n(&h->bucket[i], __ATOMIC_RELAXED);
        if (i < N_BUCKETS - 1) {
            fprintf(out, "%s_bucket{le=\"%g\"} %llu\n", name, (double)bounds_ns[i] / 1e9, (unsigned long long)cum);
        } else {
            fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
        }
    }
    fprintf(out, "%s_sum %.9f\n%s_count %llu\n", name, (double)__atomic_load_n(&h->sum_ns, __ATOMIC_RELAXED) / 1e9,
            name, (unsigned long long)cum);
}

static void put_status(FILE *out, int st)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&keyless__v1__status__descriptor, st);
    for (const char *p = v != NULL ? v->name : "status_unspecified"; *p != '\0'; p++) {
        fputc(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p, out);
    }
}

int signer_metrics_render(FILE *out)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    fprintf(out,
            "# HELP keyless_build_info The version and commit this signer was built from.\n"
            "# TYPE keyless_build_info gauge\n"
            "keyless_build_info{program=\"keyless-signer\",version=\"%s\",commit=\"%s\"} 1\n",
            KL_VERSION, KL_GIT_COMMIT);
    fprintf(out, "# HELP keyless_signer_requests_total Sign requests answered, by key, scheme and status.\n"
                 "# TYPE keyless_signer_requests_total counter\n");
    size_t n_rows = __atomic_load_n(&m.n_rows, __ATOMIC_ACQUIRE);
    for (size_t r = 0; r <= n_rows && m.ready; r++) {
        const struct key_row *row = r < n_rows ? &m.rows[r] : &m.none;
        uint32_t mask = __atomic_load_n(&row->mask, __ATOMIC_RELAXED);
        int active = __atomic_load_n(&row->active, __ATOMIC_RELAXED);
        for (size_t slot = 0; slot < SLOTS; slot++) {
            for (int st = 0; st < N_STATUS; st++) {
                uint64_t v = __atomic_load_n(&row->count[slot][st], __ATOMIC_RELAXED);
                /* Every configured (key, scheme) shows its ok series from the start (rate()
                 * needs a zero); the rest appear when they first happen. */
                int always = active && slot < MAX_GLOBAL && (mask & (1u << slot)) && st == KEYLESS__V1__STATUS__OK;
                if (v == 0 && !always) {
                    continue;
                }
                fputs("keyless_signer_requests_total{key=\"", out);
                put_label(out, row != &m.none ? row->name : "(none)");
                fprintf(out, "\",scheme=\"%s\",status=\"", slot < MAX_GLOBAL ? tls_schemes[slot].name : "other");
                put_status(out, st);
                fprintf(out, "\"} %llu\n", (unsigned long long)v);
            }
        }
    }
    put_histo(out, "keyless_signer_request_duration_seconds",
              "Time from a sign request read to its answer (signed or refused).", &m.request);
    put_histo(out, "keyless_signer_hsm_sign_duration_seconds", "Time of one C_Sign on the token.", &m.hsm_sign);
    put_histo(out, "keyless_signer_audit_sync_duration_seconds",
              "Time a batch of signatures waited for its audit records to be durable.", &m.audit_sync);
    fprintf(out,
            "# HELP keyless_signer_queue_depth Sign jobs accepted and not answered yet.\n"
            "# TYPE keyless_signer_queue_depth gauge\nkeyless_signer_queue_depth %lld\n"
            "# HELP keyless_signer_audit_failures_total Audit records that could not be written or made durable "
            "(their signatures were withheld).\n"
            "# TYPE keyless_signer_audit_failures_total counter\nkeyless_signer_audit_failures_total %llu\n"
            "# HELP keyless_signer_hsm_recoveries_total Times the PKCS#11 module was re-initialised and logged in "
            "again after a token error.\n"
            "# TYPE keyless_signer_hsm_recoveries_total counter\nkeyless_signer_hsm_recoveries_total %u\n"
            "# HELP keyless_signer_start_time_seconds When this signer started (Unix time).\n"
            "# TYPE keyless_signer_start_time_seconds gauge\nkeyless_signer_start_time_seconds %lld\n"
            "# HELP keyless_signer_last_write_timestamp_seconds When this file was written (Unix time): a stale "
            "value means the signer is down or stuck.\n"
            "# TYPE keyless_signer_last_write_timestamp_seconds gauge\n"
            "keyless_signer_last_write_timestamp_seconds %lld.%03ld\n",
            (long long)__atomic_load_n(&m.queue, __ATOMIC_RELAXED),
            (unsigned long long)__atomic_load_n(&m.audit_failures, __ATOMIC_RELAXED),
            m.be != NULL ? p11_backend_recoveries(m.be) : 0u, (long long)m.start, (long long)now.tv_sec,
            now.tv_nsec / 1000000);
    fprintf(out,
            "# HELP keyless_signer_config_reloads_total Configuration reloads (SIGHUP), by result: a failed one "
            "kept the running configuration.\n"
            "# TYPE keyless_signer_config_reloads_total counter\n"
            "keyless_signer_config_reloads_total{result=\"ok\"} %llu\n"
            "keyless_signer_config_reloads_total{result=\"failed\"} %llu\n",
            (unsigned long long)__atomic_load_n(&m.reloads_ok, __ATOMIC_RELAXED),
            (unsigned long long)__atomic_load_n(&m.reloads_failed, __ATOMIC_RELAXED));
    if (m.audit != NULL) {
        struct audit_stats st;
        audit_stats(m.audit, &st);
        fprintf(out,
                "# HELP keyless_signer_audit_write_errors_total Audit appends that failed to write and were rolled "
                "back (a full disk); the log retries.\n"
                "# TYPE keyless_signer_audit_write_errors_total counter\n"
                "keyless_signer_audit_write_errors_total %llu\n",
                (unsigned long long)st.write_errors);
        if (m.audit_signed) {
            fprintf(out,
                    "# HELP keyless_signer_audit_last_checkpoint_timestamp_seconds When the last signed audit "
                    "checkpoint was written (Unix time; 0: none yet).\n"
                    "# TYPE keyless_signer_audit_last_checkpoint_timestamp_seconds gauge\n"
                    "keyless_signer_audit_last_checkpoint_timestamp_seconds %lld\n",
                    (long long)st.last_checkpoint_time);
        }
    }
    return ferror(out) ? KL_ERR_IO : 0;
}

int signer_metrics_write(const char *path)
{
    char tmp[4096];
    int ret = 0, e = 0;
    FILE *f = NULL;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return KL_ERR_IO;
    }
    /* 0644: node_exporter runs as another user; the numbers hold no secret. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    /* fchmod: the signer's umask (privsep_harden, the unit's UMask) would take the 4s off. */
    if (fd < 0 || fchmod(fd, 0644) != 0 || (f = fdopen(fd, "w")) == NULL) {
        e = errno;
        if (fd >= 0) {
            close(fd);
        }
        KL_FAIL(KL_ERR_IO);
    }
    ret = signer_metrics_render(f);
    if (fclose(f) != 0 && ret == 0) {
        ret = KL_ERR_IO;
    }
    e = errno;
    f = NULL;
    KL_TRY(ret);
    if (rename(tmp, path) != 0) {
        e = errno;
        KL_FAIL(KL_ERR_IO);
    }
exit:
    if (ret != 0) {
        unlink(tmp);
        errno = e;
    }
    return ret;
}

static void *writer_main(void *arg)
{
    int failing = 0;
    (void)arg;
    pthread_mutex_lock(&m.lock);
    while (!m.stop) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += m.interval_ms / 1000;
        deadline.tv_nsec += (long)(m.interval_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (!m.stop && pthread_cond_timedwait(&m.cond, &m.lock, &deadline) != ETIMEDOUT) {
        }
        /* A copy: a reload may replace m.path while the file is written. */
        char path[4096];
        snprintf(path, sizeof(path), "%s", m.path);
        pthread_mutex_unlock(&m.lock);
        /* One line when writing starts failing and one when it works again, not one per interval. */
        if (signer_metrics_write(path) != 0) {
            if (!failing) {
                log_warn("metrics: cannot write %s", path);
            }
            failing = 1;
        } else if (failing) {
            log_info("metrics: writing %s again", path);
            failing = 0;
        }
        pthread_mutex_lock(&m.lock);
    }
    pthread_mutex_unlock(&m.lock);
    return NULL;
}

int signer_metrics_start(const char *path, unsigned interval_ms, struct p11_backend *be)
{
    int ret = 0;
    m.be = be;
    m.interval_ms = interval_ms > 0 ? interval_ms : 1000;
    m.stop = 0;
    m.path = strdup(path);
    KL_ENSURE(m.path != NULL, KL_ERR_NO_MEMORY);
    KL_TRY(signer_metrics_write(m.path));
    if (pthread_create(&m.thread, NULL, writer_main, NULL) != 0) {
        KL_FAIL(KL_ERR_IO);
    }
    m.running = 1;
exit:
    if (ret != 0) {
        int e = errno;
        free(m.path);
        m.path = NULL;
        errno = e;
    }
    return ret;
}

/* Stop and join the writer thread (it writes the file a last time); safe if not running. */
static void writer_stop(void)
{
    if (m.running) {
        pthread_mutex_lock(&m.lock);
        m.stop = 1;
        pthread_cond_signal(&m.cond);
        pthread_mutex_unlock(&m.lock);
        pthread_join(m.thread, NULL);
        m.running = 0;
    }
    free(m.path);
    m.path = NULL;
}

int signer_metrics_reconfigure(const char *path, unsigned interval_ms)
{
    int ret = 0;
    char *copy = NULL;

    if (path == NULL) {
        writer_stop();
        return 0;
    }
    if (!m.running) {
        return signer_metrics_start(path, interval_ms, m.be);
    }
    copy = strdup(path);
    KL_ENSURE(copy != NULL, KL_ERR_NO_MEMORY);
    /* Written once here, so that a path that cannot be written fails the reload. */
    KL_TRY(signer_metrics_write(copy));
    pthread_mutex_lock(&m.lock);
    if (strcmp(m.path, copy) != 0) {
        (void)unlink(m.path); /* the collector would read a stale file there forever */
    }
    free(m.path);
    m.path = copy;
    copy = NULL;
    m.interval_ms = interval_ms > 0 ? interval_ms : 1000;
    pthread_cond_signal(&m.cond);
    pthread_mutex_unlock(&m.lock);
exit:
    free(copy);
    return ret;
}

void signer_metrics_stop(void)
{
    writer_stop();
    __atomic_store_n(&m.ready, 0, __ATOMIC_RELEASE);
    free(m.rows);
    m.rows = NULL;
    m.n_rows = 0;
    memset(&m.none, 0, sizeof(m.none));
    memset(&m.request, 0, sizeof(m.request));
    memset(&m.hsm_sign, 0, sizeof(m.hsm_sign));
    memset(&m.audit_sync, 0, sizeof(m.audit_sync));
    m.queue = 0;
    m.audit_failures = 0;
    m.reloads_ok = m.reloads_failed = 0;
    m.be = NULL;
    m.audit = NULL;
    m.audit_signed = 0;
}
