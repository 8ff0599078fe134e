#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include "keyless.pb-c.h"
#include "log.h"
#include "metrics.h"
#include "p11_backend.h"
#include "tls_ids.h"

#define MAX_SCHEMES 8           /* per key: the config's CFG_MAX_SCHEMES */
#define SLOTS (MAX_SCHEMES + 1) /* the last slot: a scheme the key does not have */
#define N_STATUS 9              /* Keyless__V1__Status 0..8; anything else counts as 0 */
#define N_BUCKETS 15

/* Upper bounds in nanoseconds; the last bucket is +Inf. */
static const uint64_t bounds_ns[N_BUCKETS - 1] = {100000,    250000,    500000,     1000000,      2500000,
                                                  5000000,   10000000,  25000000,   50000000,     100000000,
                                                  250000000, 500000000, 1000000000, 2500000000ull};

struct histo {
    uint64_t bucket[N_BUCKETS];
    uint64_t count, sum_ns;
};

struct key_row {
    const char *name; /* NULL: the "(none)" row */
    const uint16_t *schemes;
    size_t n_schemes;
    uint64_t count[SLOTS][N_STATUS];
};

static struct {
    struct key_row *rows; /* n_keys + 1: the last is "(none)" */
    size_t n_rows;
    struct histo request, hsm_sign, audit_sync;
    int64_t queue;
    uint64_t audit_failures;
    struct p11_backend *be;
    time_t start;
    /* the writer */
    char *path;
    unsigned interval_ms;
    pthread_t thread;
    int running, stop;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} m = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

int signer_metrics_init(const char *const *names, const uint16_t *const *schemes, const size_t *n_schemes,
                        size_t n_keys)
{
    if (m.rows != NULL) {
        return KL_ERR_INVALID;
    }
    m.rows = calloc(n_keys + 1, sizeof(*m.rows));
    if (m.rows == NULL) {
        return KL_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < n_keys; i++) {
        m.rows[i].name = names[i];
        m.rows[i].schemes = schemes[i];
        m.rows[i].n_schemes = n_schemes[i] < MAX_SCHEMES ? n_schemes[i] : MAX_SCHEMES;
    }
    m.n_rows = n_keys + 1;
    m.start = time(NULL);
    return 0;
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
    if (m.rows == NULL) {
        return;
    }
    /* Linear: at most a few hundred keys, against a signature that costs a C_Sign. */
    struct key_row *row = &m.rows[m.n_rows - 1];
    for (size_t i = 0; key != NULL && i + 1 < m.n_rows; i++) {
        if (strcmp(m.rows[i].name, key) == 0) {
            row = &m.rows[i];
            break;
        }
    }
    size_t slot = MAX_SCHEMES;
    for (size_t s = 0; s < row->n_schemes; s++) {
        if (row->schemes[s] == scheme) {
            slot = s;
            break;
        }
    }
    __atomic_fetch_add(&row->count[slot][status >= 0 && status < N_STATUS ? status : 0], 1, __ATOMIC_RELAXED);
    histo_add(&m.request, ns);
}

void signer_metrics_hsm_sign(uint64_t ns)
{
    if (m.rows != NULL) {
        histo_add(&m.hsm_sign, ns);
    }
}

void signer_metrics_audit_sync(uint64_t ns)
{
    if (m.rows != NULL) {
        histo_add(&m.audit_sync, ns);
    }
}

void signer_metrics_audit_failure(void)
{
    if (m.rows != NULL) {
        __atomic_fetch_add(&m.audit_failures, 1, __ATOMIC_RELAXED);
    }
}

void signer_metrics_queue(int delta)
{
    if (m.rows != NULL) {
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
    for (size_t r = 0; r < m.n_rows; r++) {
        const struct key_row *row = &m.rows[r];
        for (size_t slot = 0; slot < SLOTS; slot++) {
            for (int st = 0; st < N_STATUS; st++) {
                uint64_t v = __atomic_load_n(&row->count[slot][st], __ATOMIC_RELAXED);
                /* Every configured (key, scheme) shows its ok series from the start (rate()
                 * needs a zero); the rest appear when they first happen. */
                int always = row->name != NULL && slot < row->n_schemes && st == KEYLESS__V1__STATUS__OK;
                if (v == 0 && !always) {
                    continue;
                }
                const struct tls_scheme_info *si = slot < row->n_schemes ? tls_scheme_by_id(row->schemes[slot]) : NULL;
                fputs("keyless_signer_requests_total{key=\"", out);
                put_label(out, row->name != NULL ? row->name : "(none)");
                fprintf(out, "\",scheme=\"%s\",status=\"", si != NULL ? si->name : "other");
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
        pthread_mutex_unlock(&m.lock);
        /* One line when writing starts failing and one when it works again, not one per interval. */
        if (signer_metrics_write(m.path) != 0) {
            if (!failing) {
                log_warn("metrics: cannot write %s", m.path);
            }
            failing = 1;
        } else if (failing) {
            log_info("metrics: writing %s again", m.path);
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

void signer_metrics_stop(void)
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
    free(m.rows);
    m.rows = NULL;
    m.n_rows = 0;
    memset(&m.request, 0, sizeof(m.request));
    memset(&m.hsm_sign, 0, sizeof(m.hsm_sign));
    memset(&m.audit_sync, 0, sizeof(m.audit_sync));
    m.queue = 0;
    m.audit_failures = 0;
    m.be = NULL;
}
