#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>
#include "metrics.h"

struct metrics_shm {
    int64_t v[METRIC_COUNT];
    uint64_t lat_bucket[METRIC_LAT_BUCKETS];
    uint64_t lat_count;
    uint64_t lat_sum_us;
};

/* Upper bounds in microseconds; the last bucket is +Inf. */
static const uint64_t lat_bounds_us[METRIC_LAT_BUCKETS - 1] = {250,   500,   1000,   2500,   5000,   10000,
                                                               25000, 50000, 100000, 250000, 500000, 1000000};

/* Before metrics_init (unit tests, --check-config) the counters are process-local. */
static struct metrics_shm local_shm;
static struct metrics_shm *shm = &local_shm;

int metrics_init(void)
{
    void *p = mmap(NULL, sizeof(struct metrics_shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return KL_ERR_NO_MEMORY;
    }
    shm = p;
    return 0;
}

void metrics_add(enum metric_id id, int64_t delta)
{
    __atomic_fetch_add(&shm->v[id], delta, __ATOMIC_RELAXED);
}

uint64_t metrics_get(enum metric_id id)
{
    return (uint64_t)__atomic_load_n(&shm->v[id], __ATOMIC_RELAXED);
}

void metrics_ech(enum tls_ech_status status)
{
    switch (status) {
    case TLS_ECH_ACCEPTED:
        metrics_add(METRIC_ECH_ACCEPTED, 1);
        break;
    case TLS_ECH_REJECTED:
        metrics_add(METRIC_ECH_REJECTED, 1);
        break;
    case TLS_ECH_UNKNOWN_CONFIG:
        metrics_add(METRIC_ECH_UNKNOWN_CONFIG, 1);
        break;
    case TLS_ECH_NONE:
    default:
        break;
    }
}

const char *metrics_ech_result(enum tls_ech_status status)
{
    switch (status) {
    case TLS_ECH_ACCEPTED:
        return "accepted";
    case TLS_ECH_REJECTED:
        return "rejected";
    case TLS_ECH_UNKNOWN_CONFIG:
        return "unknown_config";
    case TLS_ECH_NONE:
    default:
        return "none";
    }
}

void metrics_signer_latency(uint64_t us)
{
    size_t i = 0;
    while (i < METRIC_LAT_BUCKETS - 1 && us > lat_bounds_us[i]) {
        i++;
    }
    __atomic_fetch_add(&shm->lat_bucket[i], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&shm->lat_count, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&shm->lat_sum_us, us, __ATOMIC_RELAXED);
}

/* Append to buf[*len..cap), keeping it NUL-terminated; a full buffer cuts the output. */
__attribute__((format(printf, 4, 5))) static void emit(char *buf, size_t *len, size_t cap, const char *fmt, ...)
{
    va_list ap;
    if (*len + 1 >= cap) {
        return;
    }
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0) {
        *len += (size_t)n < cap - *len ? (size_t)n : cap - *len - 1;
    }
}

#define EMIT(...) emit(buf, &len, cap, __VA_ARGS__)

/* s escaped as a label value (backslash, quote, newline) into out; cut to fit. Names come
 * from the operator's config, not from peers. */
static const char *label_value(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; s != NULL && *s != '\0' && n + 3 < cap; s++) {
        if (*s == '\\' || *s == '"' || *s == '\n') {
            out[n++] = '\\';
            out[n++] = *s == '\n' ? 'n' : *s;
        } else {
            out[n++] = *s;
        }
    }
    out[n] = '\0';
    return out;
}

/* The help and type lines of one metric family. */
#define FAMILY(name, type, help) EMIT("# HELP " name " " help "\n# TYPE " name " " type "\n")

size_t metrics_render(char *buf, size_t cap, const struct metrics_cert *certs, size_t n_certs)
{
    size_t len = 0;
    if (cap == 0) {
        return 0;
    }
    buf[0] = '\0';
    FAMILY("keyless_build_info", "gauge", "The version and commit this frontend was built from.");
    EMIT("keyless_build_info{program=\"keyless-frontend\",version=\"%s\",commit=\"%s\"} 1\n", KL_VERSION,
         KL_GIT_COMMIT);
    static const struct {
        enum metric_id id;
        const char *result;
    } hs[] = {{METRIC_HS_OK, "ok"},
              {METRIC_HS_SIGNER_ERROR, "signer_error"},
              {METRIC_HS_ALERT, "alert"},
              {METRIC_HS_TIMEOUT, "timeout"},
              {METRIC_HS_CLOSED, "client_closed"}};
    FAMILY("keyless_frontend_handshakes_total", "counter", "TLS handshakes by result.");
    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++) {
        EMIT("keyless_frontend_handshakes_total{result=\"%s\"} %lld\n", hs[i].result, (long long)metrics_get(hs[i].id));
    }
    /* One family per quantity; direction and result are labels. */
    static const struct {
        const char *name, *type, *help;
        struct {
            enum metric_id id;
            const char *labels; /* NULL: the family has one series */
        } series[2];
    } families[] = {
        {"keyless_frontend_connections_open", "gauge", "Client connections open now.", {{METRIC_CONN_ACTIVE, NULL}}},
        {"keyless_frontend_connections_accepted_total",
         "counter",
         "Client connections accepted.",
         {{METRIC_CONN_ACCEPTED, NULL}}},
        {"keyless_frontend_connections_rejected_total",
         "counter",
         "Client connections closed at once because max_connections was reached.",
         {{METRIC_CONN_REJECTED, NULL}}},
        {"keyless_frontend_client_bytes_total",
         "counter",
         "TLS bytes from (in) and to (out) clients.",
         {{METRIC_BYTES_IN, "direction=\"in\""}, {METRIC_BYTES_OUT, "direction=\"out\""}}},
        {"keyless_frontend_backend_bytes_total",
         "counter",
         "Plaintext bytes from (in) and to (out) backends.",
         {{METRIC_BACKEND_BYTES_IN, "direction=\"in\""}, {METRIC_BACKEND_BYTES_OUT, "direction=\"out\""}}},
        {"keyless_frontend_backend_errors_total",
         "counter",
         "Backend connections that failed or timed out.",
         {{METRIC_BACKEND_ERRORS, NULL}}},
        {"keyless_frontend_signer_requests_total",
         "counter",
         "Sign requests sent to the signer.",
         {{METRIC_SIGN_REQUESTS, NULL}}},
        {"keyless_frontend_signer_reconnects_total",
         "counter",
         "Times the signer connection was re-established.",
         {{METRIC_SIGNER_RECONNECTS, NULL}}},
        {"keyless_frontend_signer_timeouts_total",
         "counter",
         "Signer requests abandoned at their deadline.",
         {{METRIC_SIGNER_TIMEOUTS, NULL}}},
        {"keyless_frontend_signer_overload_total",
         "counter",
         "Sign requests refused because max_pending_sign were waiting.",
         {{METRIC_SIGNER_OVERLOAD, NULL}}},
        {"keyless_frontend_reloads_total",
         "counter",
         "Configuration reloads (SIGHUP) by result.",
         {{METRIC_RELOADS, "result=\"ok\""}, {METRIC_RELOAD_FAILURES, "result=\"failed\""}}},
        {"keyless_frontend_worker_restarts_total",
         "counter",
         "Worker processes that died on their own and were restarted.",
         {{METRIC_WORKER_RESTARTS, NULL}}},
    };
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        EMIT("# HELP %s %s\n# TYPE %s %s\n", families[i].name, families[i].help, families[i].name, families[i].type);
        for (size_t j = 0; j < 2; j++) {
            if (j > 0 && families[i].series[j].labels == NULL) {
                break;
            }
            const char *labels = families[i].series[j].labels;
            EMIT("%s%s%s%s %lld\n", families[i].name, labels != NULL ? "{" : "", labels != NULL ? labels : "",
                 labels != NULL ? "}" : "", (long long)metrics_get(families[i].series[j].id));
        }
    }
    /* Issue 11: a resumed handshake never calls the signer; the share that needed the HSM is
       keyless_frontend_signer_requests_total over keyless_frontend_handshakes_total{result="ok"}. */
    EMIT("# HELP keyless_frontend_completed_handshakes_total Completed handshakes by whether they resumed a session "
         "ticket.\n"
         "# TYPE keyless_frontend_completed_handshakes_total counter\n"
         "keyless_frontend_completed_handshakes_total{resumed=\"true\"} %lld\n"
         "keyless_frontend_completed_handshakes_total{resumed=\"false\"} %lld\n",
         (long long)metrics_get(METRIC_HS_RESUMED),
         (long long)(metrics_get(METRIC_HS_OK) - metrics_get(METRIC_HS_RESUMED)));
    EMIT("# HELP keyless_frontend_early_data_total 0-RTT offers the strike register decided on, by result.\n"
         "# TYPE keyless_frontend_early_data_total counter\n"
         "keyless_frontend_early_data_total{result=\"accepted\"} %lld\n"
         "keyless_frontend_early_data_total{result=\"replay_refused\"} %lld\n",
         (long long)metrics_get(METRIC_EARLY_DATA_ACCEPTED), (long long)metrics_get(METRIC_EARLY_DATA_REPLAYED));
    EMIT(
        "# HELP keyless_frontend_early_data_bytes_total 0-RTT bytes passed to backends (marked by PROXY v2 TLV 0xE3).\n"
        "# TYPE keyless_frontend_early_data_bytes_total counter\nkeyless_frontend_early_data_bytes_total %lld\n",
        (long long)metrics_get(METRIC_EARLY_DATA_BYTES));
    EMIT("# HELP keyless_frontend_ticket_key_refreshes_total Ticket key requests to the signer, by result.\n"
         "# TYPE keyless_frontend_ticket_key_refreshes_total counter\n"
         "keyless_frontend_ticket_key_refreshes_total{result=\"ok\"} %lld\n"
         "keyless_frontend_ticket_key_refreshes_total{result=\"failed\"} %lld\n",
         (long long)metrics_get(METRIC_TICKET_KEY_FETCHES), (long long)metrics_get(METRIC_TICKET_KEY_FAILURES));
    /* Issue 16: GREASE ECH (an encrypted_client_hello with a random config id, which browsers send
       to every server) cannot be told from a stale config, so it counts as unknown_config. */
    EMIT("# HELP keyless_frontend_ech_total ClientHellos that offered Encrypted Client Hello, by result: accepted "
         "(decrypted, the handshake ran on the inner ClientHello), rejected (a key with that config_id failed to "
         "decrypt it: retry_configs sent), unknown_config (no key with that config_id and suite: a stale config, or "
         "GREASE ECH, which clients send to servers without ECH; retry_configs sent when the listener has keys).\n"
         "# TYPE keyless_frontend_ech_total counter\n"
         "keyless_frontend_ech_total{result=\"%s\"} %lld\n"
         "keyless_frontend_ech_total{result=\"%s\"} %lld\n"
         "keyless_frontend_ech_total{result=\"%s\"} %lld\n",
         metrics_ech_result(TLS_ECH_ACCEPTED), (long long)metrics_get(METRIC_ECH_ACCEPTED),
         metrics_ech_result(TLS_ECH_REJECTED), (long long)metrics_get(METRIC_ECH_REJECTED),
         metrics_ech_result(TLS_ECH_UNKNOWN_CONFIG), (long long)metrics_get(METRIC_ECH_UNKNOWN_CONFIG));
    FAMILY("keyless_frontend_signer_duration_seconds", "histogram", "Signer round trip per answered request.");
    uint64_t cum = 0;
    for (size_t i = 0; i < METRIC_LAT_BUCKETS; i++) {
        cum += __atomic_load_n(&shm->lat_bucket[i], __ATOMIC_RELAXED);
        if (i < METRIC_LAT_BUCKETS - 1) {
            EMIT("keyless_frontend_signer_duration_seconds_bucket{le=\"%g\"} %llu\n", (double)lat_bounds_us[i] / 1e6,
                 (unsigned long long)cum);
        } else {
            EMIT("keyless_frontend_signer_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
    }
    EMIT("keyless_frontend_signer_duration_seconds_sum %.6f\n",
         (double)__atomic_load_n(&shm->lat_sum_us, __ATOMIC_RELAXED) / 1e6);
    EMIT("keyless_frontend_signer_duration_seconds_count %llu\n",
         (unsigned long long)__atomic_load_n(&shm->lat_count, __ATOMIC_RELAXED));
    FAMILY("keyless_frontend_certificate_not_after_seconds", "gauge",
           "When each served certificate expires (the leaf's notAfter, Unix time).");
    for (size_t i = 0; i < n_certs; i++) {
        char name[256], key[256];
        EMIT("keyless_frontend_certificate_not_after_seconds{certificate=\"%s\",key=\"%s\"} %lld\n",
             label_value(name, sizeof(name), certs[i].name), label_value(key, sizeof(key), certs[i].key),
             (long long)certs[i].not_after);
    }
    return len;
}
