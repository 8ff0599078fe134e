/*
 * signer_bench.c - keyless-signer throughput and latency over the RPC, next to raw
 * C_Sign on the same token with the same number of sessions, in the same run.
 *
 *   signer_bench [--threads N] [--seconds S] [--rounds R] [--window W] [--audit-sync group|none|always]
 *                [--audit-group-ms MS]
 *
 * Phases per key (ECDSA P-256 / ecdsa_secp256r1_sha256 and RSA-2048 / rsa_pss_rsae_sha256):
 *   raw      N threads, each C_SignInit+C_Sign on its own session (p11_sign_raw: no
 *            hashing, no DER, no verification) - the floor the signer is built on;
 *   rpc w=1  N client threads, one connection each, one request in flight: the latency
 *            the signer adds (framing, queue, worker, hashing, DER/verify, audit);
 *   rpc w=W  the same with W requests in flight per connection: throughput.
 * The signer runs with workers = N (N sessions), so both sides have N HSM sessions.
 * Label `bench`: never run by tests/run.sh. The token comes from hsm-setup (mktoken.sh).
 *
 * Links kl_signer (the PKCS#11 backend) and the signer test harness (token, RPC client).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "harness.h"
#include "p11_backend.h"
#include "rpc_client.h"

#define MAX_SAMPLES (1u << 21)
#define MAX_ROUNDS 15

struct result {
    double per_s;
    double p50_us, p99_us;
    uint64_t n, errors;
};

struct bench_thread {
    pthread_t t;
    unsigned index;
    uint64_t deadline;
    uint32_t *lat_ns;
    size_t n, cap;
    uint64_t errors;
    /* raw */
    struct p11_backend *be;
    const struct p11_key *key;
    /* rpc */
    const char *sock;
    unsigned window;
    const char *key_name;
    uint16_t scheme;
};

static void record(struct bench_thread *t, uint64_t ns)
{
    if (t->n < t->cap) {
        t->lat_ns[t->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
    }
}

static void *raw_main(void *arg)
{
    struct bench_thread *t = arg;
    uint8_t digest[32], sig[P11_SIG_MAX];
    memset(digest, 0x5a, sizeof(digest));
    while (kl_clock_ns() < t->deadline) {
        size_t sig_len = sizeof(sig);
        uint64_t t0 = kl_clock_ns();
        if (p11_sign_raw(t->be, sig, &sig_len, t->index, t->key, t->scheme, digest, sizeof(digest)) != 0) {
            t->errors++;
            continue;
        }
        record(t, kl_clock_ns() - t0);
    }
    return NULL;
}

static void *rpc_main(void *arg)
{
    struct bench_thread *t = arg;
    struct rpc_client c;
    uint8_t hash[32];
    uint64_t *sent_at = calloc(t->window, sizeof(*sent_at));
    uint64_t next_id = 0;
    unsigned in_flight = 0;
    memset(hash, 0x3c, sizeof(hash));
    if (sent_at == NULL || rpc_client_connect(&c, t->sock) != 0) {
        t->errors++;
        free(sent_at);
        return NULL;
    }
    for (;;) {
        int more = kl_clock_ns() < t->deadline;
        while (more && in_flight < t->window) {
            Keyless__V1__Request req;
            Keyless__V1__SignRequest sr;
            uint64_t id = next_id++;
            rpc_client_sign_request(&req, &sr, id, t->key_name, t->scheme, 1, hash, sizeof(hash));
            sent_at[id % t->window] = kl_clock_ns();
            if (rpc_client_send(&c, &req) != 0) {
                t->errors++;
                goto exit;
            }
            in_flight++;
        }
        if (in_flight == 0) {
            break;
        }
        Keyless__V1__Response *r = NULL;
        if (rpc_client_recv(&c, &r, 10000) != 0) {
            t->errors++;
            break;
        }
        in_flight--;
        if (r->body_case == KEYLESS__V1__RESPONSE__BODY_SIGN && r->sign->status == KEYLESS__V1__STATUS__OK) {
            record(t, kl_clock_ns() - sent_at[r->id % t->window]);
        } else {
            t->errors++;
        }
        keyless__v1__response__free_unpacked(r, NULL);
    }
exit:
    rpc_client_close(&c);
    free(sent_at);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static struct result run_threads(struct bench_thread *ts, unsigned n, double seconds, void *(*fn)(void *))
{
    struct result r;
    uint64_t start = kl_clock_ns(), total = 0;
    uint32_t *all;
    memset(&r, 0, sizeof(r));
    for (unsigned i = 0; i < n; i++) {
        ts[i].index = i;
        ts[i].deadline = start + (uint64_t)(seconds * 1e9);
        ts[i].cap = MAX_SAMPLES / n;
        ts[i].lat_ns = malloc(ts[i].cap * sizeof(uint32_t));
        ts[i].n = 0;
        ts[i].errors = 0;
        pthread_create(&ts[i].t, NULL, fn, &ts[i]);
    }
    for (unsigned i = 0; i < n; i++) {
        pthread_join(ts[i].t, NULL);
        total += ts[i].n;
        r.errors += ts[i].errors;
    }
    double elapsed = (double)(kl_clock_ns() - start) / 1e9;
    all = malloc((total + 1) * sizeof(uint32_t));
    size_t k = 0;
    for (unsigned i = 0; i < n; i++) {
        memcpy(all + k, ts[i].lat_ns, ts[i].n * sizeof(uint32_t));
        k += ts[i].n;
        free(ts[i].lat_ns);
    }
    qsort(all, total, sizeof(uint32_t), cmp_u32);
    r.n = total;
    r.per_s = (double)total / elapsed;
    if (total > 0) {
        r.p50_us = all[total / 2] / 1000.0;
        r.p99_us = all[(total * 99) / 100] / 1000.0;
    }
    free(all);
    return r;
}

/* The round with the median throughput (its latencies come with it). */
static struct result median(const struct result *r, unsigned n)
{
    struct result s[MAX_ROUNDS];
    memcpy(s, r, n * sizeof(*r));
    for (unsigned i = 1; i < n; i++) {
        for (unsigned j = i; j > 0 && s[j - 1].per_s > s[j].per_s; j--) {
            struct result t = s[j];
            s[j] = s[j - 1];
            s[j - 1] = t;
        }
    }
    return s[n / 2];
}

static void print_row(const char *key, const char *what, const struct result *r)
{
    printf("| %-10s | %-22s | %9.0f | %8.1f | %8.1f | %7llu |\n", key, what, r->per_s, r->p50_us, r->p99_us,
           (unsigned long long)r->errors);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    /* Defaults: the signer's own audit defaults (group, 1 ms), and a window deep enough to
     * cover one group commit (64 requests in flight per connection), so that the RPC rows
     * measure the signer's pipeline rather than the fdatasync latency. */
    unsigned threads = 2, window = 64, rounds = 3;
    double seconds = 2;
    const char *sync = "group";
    unsigned group_ms = 1;
    static char self[1024], build[1024], src[1024];
    struct harness h;
    static const struct {
        const char *key;
        uint16_t scheme;
        const char *uri;
    } keys[] = {{"ecdsa-p256", 0x0403, "pkcs11:token=keyless;object=ecdsa-p256;type=private"},
                {"rsa-2048", 0x0804, "pkcs11:token=keyless;object=rsa-2048;type=private"}};

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = (unsigned)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            rounds = (unsigned)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc) {
            window = (unsigned)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--audit-sync") == 0 && i + 1 < argc) {
            sync = argv[++i];
        } else if (strcmp(argv[i], "--audit-group-ms") == 0 && i + 1 < argc) {
            group_ms = (unsigned)atoi(argv[++i]);
        } else {
            fprintf(stderr,
                    "usage: signer_bench [--threads N] [--seconds S] [--rounds R] [--window W] [--audit-sync MODE] "
                    "[--audit-group-ms MS]\n");
            return 2;
        }
    }
    if (threads < 1 || threads > 64 || window < 1 || window > 1024 || rounds < 1 || rounds > MAX_ROUNDS) {
        return 2;
    }
    /* <build>/tests/bench/signer_bench -> <build>; the source tree from this file's path. */
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0 && getenv("KL_BUILD_DIR") == NULL) {
        self[n] = '\0';
        snprintf(build, sizeof(build), "%s", self);
        for (int up = 0; up < 3; up++) {
            char *s = strrchr(build, '/');
            if (s != NULL) {
                *s = '\0';
            }
        }
        setenv("KL_BUILD_DIR", build, 1);
    }
    if (getenv("KL_SOURCE_DIR") == NULL) {
        snprintf(src, sizeof(src), "%s", __FILE__);
        for (int up = 0; up < 3; up++) {
            char *s = strrchr(src, '/');
            if (s != NULL) {
                *s = '\0';
            }
        }
        setenv("KL_SOURCE_DIR", src, 1);
    }
    if (harness_init(&h) != 0) {
        return 1;
    }
    printf("signer_bench: %u HSM session(s) / worker(s), %u client thread(s), %u round(s) of %.1f s per path "
           "(median round shown), rpc window %u, audit_sync %s (group %u ms), SoftHSM2 token\n\n",
           threads, threads, rounds, seconds, window, sync, group_ms);
    printf("| key        | path                   |  sig/s    | p50 µs   | p99 µs   | errors  |\n");
    printf("|------------|------------------------|-----------|----------|----------|---------|\n");
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        struct bench_thread ts[64];
        struct p11_backend *be = NULL;
        struct p11_key *key = NULL;
        char err[256], pin[400], conf[400], extra[200], label[64];
        struct result raw[MAX_ROUNDS], w1[MAX_ROUNDS], ww[MAX_ROUNDS];
        snprintf(pin, sizeof(pin), "%s/user.pin", h.hsm);
        if (p11_backend_new(&be, NULL, err, sizeof(err), SOFTHSM_MODULE, NULL, keys[k].uri, pin, threads) != 0 ||
            p11_key_find(be, &key, err, sizeof(err), keys[k].uri) != 0) {
            fprintf(stderr, "signer_bench: %s\n", err);
            harness_cleanup(&h);
            return 1;
        }
        snprintf(conf, sizeof(conf), "%s/bench.conf", h.dir);
        snprintf(extra, sizeof(extra), "workers = %u\nqueue_max = 65536\naudit_sync = %s\naudit_group_ms = %u\n",
                 threads, sync, group_ms);
        if (harness_write_config(&h, conf, extra, NULL, harness_std_keys) != 0 || harness_start(&h, conf) != 0) {
            fprintf(stderr, "signer_bench: keyless-signer did not start (see %s)\n", h.errlog);
            p11_backend_free(be);
            harness_cleanup(&h);
            return 1;
        }
        /* Rounds alternate the three paths so that a burst of load from other processes
         * hits all of them alike; the median round of each path is reported. */
        for (unsigned round = 0; round < rounds; round++) {
            memset(ts, 0, sizeof(ts));
            for (unsigned i = 0; i < threads; i++) {
                ts[i].be = be;
                ts[i].key = key;
                ts[i].scheme = keys[k].scheme;
            }
            raw[round] = run_threads(ts, threads, seconds, raw_main);
            memset(ts, 0, sizeof(ts));
            for (unsigned i = 0; i < threads; i++) {
                ts[i].sock = h.sock;
                ts[i].key_name = keys[k].key;
                ts[i].scheme = keys[k].scheme;
                ts[i].window = 1;
            }
            w1[round] = run_threads(ts, threads, seconds, rpc_main);
            for (unsigned i = 0; i < threads; i++) {
                ts[i].window = window;
            }
            ww[round] = run_threads(ts, threads, seconds, rpc_main);
        }
        (void)harness_stop(&h);
        p11_backend_free(be);
        struct result mraw = median(raw, rounds), mw1 = median(w1, rounds), mww = median(ww, rounds);
        print_row(keys[k].key, "raw C_Sign", &mraw);
        print_row(keys[k].key, "RPC, 1 in flight/conn", &mw1);
        snprintf(label, sizeof(label), "RPC, %u in flight/conn", window);
        print_row(keys[k].key, label, &mww);
        printf("| %-10s | RPC/raw throughput %3.0f%%, added p50 (w=1) %+.1f µs |\n", keys[k].key,
               mraw.per_s > 0 ? 100.0 * mww.per_s / mraw.per_s : 0.0, mw1.p50_us - mraw.p50_us);
    }
    harness_cleanup(&h);
    return 0;
}
