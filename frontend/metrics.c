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

#define EMIT(...)                                                                                                      \
    do {                                                                                                               \
        if (len < cap) {                                                                                               \
            int n_ = snprintf(buf + len, cap - len, __VA_ARGS__);                                                      \
            if (n_ > 0) {                                                                                              \
                len += (size_t)n_ < cap - len ? (size_t)n_ : cap - len - 1;                                            \
            }                                                                                                          \
        }                                                                                                              \
    } while (0)

size_t metrics_render(char *buf, size_t cap)
{
    size_t len = 0;
    if (cap == 0) {
        return 0;
    }
    buf[0] = '\0';
    static const struct {
        enum metric_id id;
        const char *result;
    } hs[] = {{METRIC_HS_OK, "ok"},
              {METRIC_HS_SIGNER_ERROR, "signer_error"},
              {METRIC_HS_ALERT, "alert"},
              {METRIC_HS_TIMEOUT, "timeout"},
              {METRIC_HS_CLOSED, "client_closed"}};
    EMIT("# HELP keyless_handshakes_total TLS handshakes by result.\n# TYPE keyless_handshakes_total counter\n");
    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++) {
        EMIT("keyless_handshakes_total{result=\"%s\"} %lld\n", hs[i].result, (long long)metrics_get(hs[i].id));
    }
    static const struct {
        enum metric_id id;
        const char *name, *type, *help;
    } simple[] = {
        {METRIC_CONN_ACTIVE, "keyless_active_connections", "gauge", "Client connections open now."},
        {METRIC_CONN_ACCEPTED, "keyless_connections_total", "counter", "Client connections accepted."},
        {METRIC_CONN_REJECTED, "keyless_connections_rejected_total", "counter",
         "Client connections closed at once because max_connections was reached."},
        {METRIC_BYTES_IN, "keyless_client_bytes_in_total", "counter", "TLS bytes read from clients."},
        {METRIC_BYTES_OUT, "keyless_client_bytes_out_total", "counter", "TLS bytes written to clients."},
        {METRIC_BACKEND_BYTES_IN, "keyless_backend_bytes_in_total", "counter", "Plaintext bytes read from backends."},
        {METRIC_BACKEND_BYTES_OUT, "keyless_backend_bytes_out_total", "counter",
         "Plaintext bytes written to backends."},
        {METRIC_BACKEND_ERRORS, "keyless_backend_errors_total", "counter",
         "Backend connections that failed or timed out."},
        {METRIC_SIGN_REQUESTS, "keyless_signer_requests_total", "counter", "Sign requests sent to the signer."},
        {METRIC_SIGNER_RECONNECTS, "keyless_signer_reconnects_total", "counter",
         "Times the signer connection was re-established."},
        {METRIC_SIGNER_TIMEOUTS, "keyless_signer_timeouts_total", "counter",
         "Signer requests abandoned at their deadline."},
        {METRIC_SIGNER_OVERLOAD, "keyless_signer_overload_total", "counter",
         "Sign requests refused because max_pending_sign were waiting."},
        {METRIC_RELOADS, "keyless_reloads_total", "counter", "Successful configuration reloads (SIGHUP)."},
        {METRIC_RELOAD_FAILURES, "keyless_reload_failures_total", "counter", "Failed configuration reloads."},
        {METRIC_WORKER_RESTARTS, "keyless_worker_restarts_total", "counter",
         "Worker processes that died on their own and were restarted."},
    };
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        EMIT("# HELP %s %s\n# TYPE %s %s\n%s %lld\n", simple[i].name, simple[i].help, simple[i].name, simple[i].type,
             simple[i].name, (long long)metrics_get(simple[i].id));
    }
    /* Issue 11: a resumed handshake never calls the signer; the share that needed the HSM is
       keyless_signer_requests_total over keyless_handshakes_total{result="ok"}. */
    EMIT("# HELP keyless_resumed_handshakes_total Completed handshakes by whether they resumed a session ticket.\n"
         "# TYPE keyless_resumed_handshakes_total counter\n"
         "keyless_resumed_handshakes_total{resumed=\"true\"} %lld\n"
         "keyless_resumed_handshakes_total{resumed=\"false\"} %lld\n",
         (long long)metrics_get(METRIC_HS_RESUMED),
         (long long)(metrics_get(METRIC_HS_OK) - metrics_get(METRIC_HS_RESUMED)));
    EMIT("# HELP keyless_early_data_total 0-RTT offers the strike register decided on, by result.\n"
         "# TYPE keyless_early_data_total counter\n"
         "keyless_early_data_total{result=\"accepted\"} %lld\n"
         "keyless_early_data_total{result=\"replay_refused\"} %lld\n",
         (long long)metrics_get(METRIC_EARLY_DATA_ACCEPTED), (long long)metrics_get(METRIC_EARLY_DATA_REPLAYED));
    EMIT("# HELP keyless_early_data_bytes_total 0-RTT bytes passed to backends (marked by PROXY v2 TLV 0xE3).\n"
         "# TYPE keyless_early_data_bytes_total counter\nkeyless_early_data_bytes_total %lld\n",
         (long long)metrics_get(METRIC_EARLY_DATA_BYTES));
    EMIT("# HELP keyless_ticket_key_refreshes_total Ticket key requests to the signer, by result.\n"
         "# TYPE keyless_ticket_key_refreshes_total counter\n"
         "keyless_ticket_key_refreshes_total{result=\"ok\"} %lld\n"
         "keyless_ticket_key_refreshes_total{result=\"failed\"} %lld\n",
         (long long)metrics_get(METRIC_TICKET_KEY_FETCHES), (long long)metrics_get(METRIC_TICKET_KEY_FAILURES));
    EMIT("# HELP keyless_signer_latency_seconds Signer round trip per answered request.\n"
         "# TYPE keyless_signer_latency_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i < METRIC_LAT_BUCKETS; i++) {
        cum += __atomic_load_n(&shm->lat_bucket[i], __ATOMIC_RELAXED);
        if (i < METRIC_LAT_BUCKETS - 1) {
            EMIT("keyless_signer_latency_seconds_bucket{le=\"%g\"} %llu\n", (double)lat_bounds_us[i] / 1e6,
                 (unsigned long long)cum);
        } else {
            EMIT("keyless_signer_latency_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
    }
    EMIT("keyless_signer_latency_seconds_sum %.6f\n",
         (double)__atomic_load_n(&shm->lat_sum_us, __ATOMIC_RELAXED) / 1e6);
    EMIT("keyless_signer_latency_seconds_count %llu\n",
         (unsigned long long)__atomic_load_n(&shm->lat_count, __ATOMIC_RELAXED));
    return len;
}
