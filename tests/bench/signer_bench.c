/*
 * signer_bench.c - keyless-signer throughput and latency over the RPC, next to raw
 * C_Sign on the same token with the same number of sessions, in the same run.
 *
 *   signer_bench [--threads N] [--workers N] [--seconds S] [--rounds R] [--window W]
 *                [--audit-sync group|none|always] [--audit-group-ms MS] [--remote 1,2,4,8] [--keys LIST]
 *                [--count N [--hook-before CMD] [--hook-after CMD] [--no-sandbox]]
 *
 * Phases per key (ECDSA P-256 / ecdsa_secp256r1_sha256 and RSA-2048 / rsa_pss_rsae_sha256):
 *   raw      N threads, each C_SignInit+C_Sign on its own session (p11_sign_raw: no
 *            hashing, no DER, no verification) - the floor the signer is built on;
 *   p11_sign the same through p11_sign as the signer calls it (hashing, DER, and for RSA
 *            the self-verification): its CPU minus raw's is what those cost;
 *   rpc w=1  N client threads, one connection each, one request in flight: the latency
 *            the signer adds (framing, queue, worker, hashing, DER/verify, audit);
 *   rpc w=W  the same with W requests in flight per connection: throughput.
 * The signer runs with workers = N (N sessions), so both sides have N HSM sessions
 * (--workers 0: the inline mode, one session signed on the I/O thread).
 * Every RPC row also gives the signer's own cost per signature, counters that another
 * process on the machine does not change much: CPU µs (utime + stime of all its threads,
 * /proc/PID/stat) and context switches (voluntary + involuntary of every thread,
 * /proc/PID/task/x/status).
 *
 * --remote LIST (issue 15): the slow-token section instead. The token is exported by
 * `p11-kit server` (the stand-in for a network HSM) and both the raw path and the signer
 * use p11-kit-client.so; for each session count S of LIST (1,2,4,8 by default) raw C_Sign
 * on S sessions from S threads, and the signer with workers = S fed by S connections of
 * W requests each; throughput is also given as a multiple of the 1-session figure.
 * --count N (issue 15): per-signature accounting instead. After a warm-up of 256 requests
 * the signer's pid goes into KL_SIGNER_PID and `sh -c CMD` of --hook-before runs (e.g.
 * attach `strace -c -f -p`, or `callgrind_control -z`), then exactly N requests with the
 * window W, then --hook-after (e.g. `callgrind_control -d`); counts from outside tools
 * then cover N signatures and nothing of the start-up. --no-sandbox: `sandbox = no`, for
 * a signer run under valgrind (which cannot load a seccomp filter).
 * Label `bench`: never run by tests/run.sh. The token comes from hsm-setup (mktoken.sh).
 *
 * Links kl_signer (the PKCS#11 backend) and the signer test harness (token, RPC client).
 */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "crypto.h"
#include "harness.h"
#include "p11_backend.h"
#include "rpc_client.h"

#define MAX_SAMPLES (1u << 21)
#define MAX_ROUNDS 15

struct result {
    double per_s;
    double p50_us, p99_us;
    uint64_t n, errors;
    /* Per signature, -1 when not measured. RPC rows: the signer process (CPU µs, context
     * switches, of which involuntary). Raw rows: the calling threads' own CPU (the token
     * runs inside them) and no switch count. */
    double cpu_us, ctxsw, invol;
    /* --remote, RPC rows: connections the p11-kit server serves, CPU % of its busiest child */
    size_t p11srv_conns;
    double p11srv_busiest_pct;
    double p11srv_cpu_us; /* CPU of all its children per signature: the token's side of each C_Sign */
};

/* The signer process's counters: CPU in clock ticks and context switches of all threads. */
struct proc_counters {
    unsigned long long ticks, ctxsw, invol;
};

static struct proc_counters proc_read(pid_t pid)
{
    struct proc_counters pc = {0, 0, 0};
    char path[128], line[256], buf[1024];
    FILE *f;
    DIR *d;
    struct dirent *de;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "r")) != NULL) {
        if (fgets(buf, sizeof(buf), f) != NULL) {
            /* After "pid (comm) ": state is field 3, utime and stime fields 14 and 15. */
            const char *p = strrchr(buf, ')');
            unsigned long long ut = 0, st = 0;
            if (p != NULL && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2) {
                pc.ticks = ut + st;
            }
        }
        fclose(f);
    }
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    if ((d = opendir(path)) == NULL) {
        return pc;
    }
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') {
            continue;
        }
        snprintf(buf, sizeof(buf), "/proc/%d/task/%s/status", (int)pid, de->d_name);
        if ((f = fopen(buf, "r")) == NULL) {
            continue;
        }
        while (fgets(line, sizeof(line), f) != NULL) {
            unsigned long long v;
            if (sscanf(line, "voluntary_ctxt_switches: %llu", &v) == 1) {
                pc.ctxsw += v;
            } else if (sscanf(line, "nonvoluntary_ctxt_switches: %llu", &v) == 1) {
                pc.ctxsw += v;
                pc.invol += v;
            }
        }
        fclose(f);
    }
    closedir(d);
    return pc;
}

struct bench_thread {
    pthread_t t;
    unsigned index;
    uint64_t deadline;
    uint32_t *lat_ns;
    size_t n, cap;
    uint64_t errors;
    uint64_t cpu_ns; /* the thread's own CPU time over its run */
    /* raw */
    struct p11_backend *be;
    const struct p11_key *key;
    /* rpc */
    const char *sock;
    unsigned window;
    const char *key_name;
    uint16_t scheme;
    uint64_t limit; /* --count: requests this thread sends at most (0: until the deadline) */
};

static void record(struct bench_thread *t, uint64_t ns)
{
    if (t->n < t->cap) {
        t->lat_ns[t->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
    }
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *raw_main(void *arg)
{
    struct bench_thread *t = arg;
    uint8_t digest[32], sig[P11_SIG_MAX];
    uint64_t c0 = thread_cpu_ns();
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
    t->cpu_ns = thread_cpu_ns() - c0;
    return NULL;
}

/* p11_sign as the signer calls it: hashing, DER for ECDSA and, for RSA, the verification
 * of the token's signature before release (RSA-CRT faults). Its CPU minus raw's is the
 * cost of that self-verification (issue 15: reported apart). */
static void *sign_main(void *arg)
{
    struct bench_thread *t = arg;
    uint8_t content[130], sig[P11_SIG_MAX];
    uint64_t c0 = thread_cpu_ns();
    memset(content, 0x20, 64);
    memset(content + 64, 0x5a, sizeof(content) - 64);
    while (kl_clock_ns() < t->deadline) {
        size_t sig_len = sizeof(sig);
        uint64_t t0 = kl_clock_ns();
        if (p11_sign(t->be, sig, &sig_len, t->index, t->key, t->scheme, content, sizeof(content)) != 0) {
            t->errors++;
            continue;
        }
        record(t, kl_clock_ns() - t0);
    }
    t->cpu_ns = thread_cpu_ns() - c0;
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
        int more = kl_clock_ns() < t->deadline && (t->limit == 0 || next_id < t->limit);
        while (more && in_flight < t->window && (t->limit == 0 || next_id < t->limit)) {
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

/* srv_pid > 0: the signer process whose cost per signature goes into the result. */
static struct result run_threads(struct bench_thread *ts, unsigned n, double seconds, void *(*fn)(void *),
                                 pid_t srv_pid)
{
    struct result r;
    uint64_t start = kl_clock_ns(), total = 0;
    uint32_t *all;
    struct proc_counters pc0 = {0, 0, 0}, pc1;
    uint64_t thread_cpu = 0;
    memset(&r, 0, sizeof(r));
    r.cpu_us = r.ctxsw = r.invol = -1;
    if (srv_pid > 0) {
        pc0 = proc_read(srv_pid);
    }
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
        thread_cpu += ts[i].cpu_ns;
    }
    double elapsed = (double)(kl_clock_ns() - start) / 1e9;
    if (srv_pid > 0 && total > 0) {
        pc1 = proc_read(srv_pid);
        r.cpu_us = (double)(pc1.ticks - pc0.ticks) * 1e6 / (double)sysconf(_SC_CLK_TCK) / (double)total;
        r.ctxsw = (double)(pc1.ctxsw - pc0.ctxsw) / (double)total;
        r.invol = (double)(pc1.invol - pc0.invol) / (double)total;
    } else if (thread_cpu > 0 && total > 0) {
        r.cpu_us = (double)thread_cpu / 1e3 / (double)total;
    }
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
    char cpu[32] = "-", cs[48] = "-";
    if (r->cpu_us >= 0) {
        snprintf(cpu, sizeof(cpu), "%.1f", r->cpu_us);
    }
    if (r->ctxsw >= 0) {
        snprintf(cs, sizeof(cs), "%.2f (%.2f)", r->ctxsw, r->invol);
    }
    printf("| %-10s | %-22s | %9.0f | %8.1f | %8.1f | %10s | %12s | %7llu |\n", key, what, r->per_s, r->p50_us,
           r->p99_us, cpu, cs, (unsigned long long)r->errors);
    fflush(stdout);
}

static void print_header(void)
{
    printf("| key        | path                   |  sig/s    | p50 µs   | p99 µs   | CPU µs/sig | cs/sig (inv) | "
           "errors  |\n");
    printf("|------------|------------------------|-----------|----------|----------|------------|--------------|"
           "---------|\n");
}

struct key_spec {
    const char *key;
    uint16_t scheme;
    const char *uri;
};

static const struct key_spec KEYS[] = {{"ecdsa-p256", 0x0403, "pkcs11:token=keyless;object=ecdsa-p256;type=private"},
                                       {"rsa-2048", 0x0804, "pkcs11:token=keyless;object=rsa-2048;type=private"}};

/* Through p11-kit remoting (p11-kit-client.so) the token offers no CKM_EDDSA: only the
 * keys this benchmark signs with. */
static const char REMOTE_KEYS[] = "[key ecdsa-p256]\n"
                                  "uri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
                                  "schemes = ecdsa_secp256r1_sha256\n"
                                  "[key rsa-2048]\n"
                                  "uri = pkcs11:token=keyless;object=rsa-2048;type=private\n"
                                  "schemes = rsa_pss_rsae_sha256\n";

struct opts {
    unsigned threads, workers, window, rounds;
    double seconds;
    const char *sync;
    unsigned group_ms;
    unsigned count;                       /* --count: requests of the accounting run */
    const char *hook_before, *hook_after; /* --count: shell commands around them */
    int no_sandbox;                       /* --count --no-sandbox: for valgrind (no seccomp) */
    pid_t p11_server;                     /* --remote: the `p11-kit server` whose per-connection children are watched */
    unsigned instances;      /* [hsm] module_instances of the backends (issue 15); --remote 0: one per session */
    unsigned token_delay_us; /* --remote: each C_Sign in the server takes this much longer (tests/signer/p11shim.c) */
};

/* The p11-kit server's per-connection children over the RPC throughput run: how many
 * connections it serves and the CPU share of the busiest one (one thread each). */
struct p11srv_watch {
    size_t n;
    pid_t pid[64];
    unsigned long long ticks[64];
    double busiest_pct;
    double total_s; /* CPU seconds of all the children alive in both snapshots */
};

static void p11srv_snapshot(struct p11srv_watch *w, pid_t server)
{
    char path[128];
    FILE *f;
    int child;
    w->n = 0;
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)server, (int)server);
    if (server <= 0 || (f = fopen(path, "r")) == NULL) {
        return;
    }
    while (w->n < 64 && fscanf(f, "%d", &child) == 1) {
        w->pid[w->n] = child;
        w->ticks[w->n] = proc_read(child).ticks;
        w->n++;
    }
    fclose(f);
}

/* after - before, for the children alive in both, over seconds of wall time. */
static void p11srv_busiest(struct p11srv_watch *before, const struct p11srv_watch *after, double seconds)
{
    before->busiest_pct = 0;
    before->total_s = 0;
    for (size_t i = 0; i < after->n; i++) {
        for (size_t k = 0; k < before->n; k++) {
            if (before->pid[k] == after->pid[i] && after->ticks[i] >= before->ticks[k]) {
                double pct =
                    100.0 * (double)(after->ticks[i] - before->ticks[k]) / (double)sysconf(_SC_CLK_TCK) / seconds;
                before->busiest_pct = pct > before->busiest_pct ? pct : before->busiest_pct;
                before->total_s += (double)(after->ticks[i] - before->ticks[k]) / (double)sysconf(_SC_CLK_TCK);
            }
        }
    }
    before->n = after->n;
}

/* The rows of one key: raw C_Sign and the two RPC paths, rounds interleaved, medians. With
 * module NULL the local SoftHSM module; else that module for both (the remoting client). */
static int bench_key(struct harness *h, const struct key_spec *ks, const struct opts *o, const char *module,
                     struct result *raw_p, struct result *full_p, struct result *w1_p, struct result *ww_p)
{
    struct bench_thread ts[64];
    struct p11_backend *be = NULL;
    struct p11_key *key = NULL;
    char err[256], pin[400], conf[400], extra[200], hsm_line[300];
    struct result raw[MAX_ROUNDS], full[MAX_ROUNDS], w1[MAX_ROUNDS], ww[MAX_ROUNDS];
    unsigned sessions = o->workers > 0 ? o->workers : 1;
    unsigned instances = o->instances > 0 ? o->instances : 1;

    snprintf(pin, sizeof(pin), "%s/user.pin", h->hsm);
    if (p11_backend_new(&be, NULL, err, sizeof(err), module != NULL ? module : SOFTHSM_MODULE, NULL, ks->uri, pin,
                        o->threads > sessions ? o->threads : sessions, instances) != 0 ||
        p11_key_find(be, &key, err, sizeof(err), ks->uri) != 0) {
        fprintf(stderr, "signer_bench: %s\n", err);
        p11_backend_free(be);
        return -1;
    }
    snprintf(conf, sizeof(conf), "%s/bench.conf", h->dir);
    snprintf(extra, sizeof(extra), "workers = %u\nqueue_max = 65536\naudit_sync = %s\naudit_group_ms = %u\n",
             o->workers, o->sync, o->group_ms);
    snprintf(hsm_line, sizeof(hsm_line), "module = %s\nmodule_instances = %u", module != NULL ? module : SOFTHSM_MODULE,
             instances);
    if (harness_write_config(h, conf, extra, hsm_line, module != NULL ? REMOTE_KEYS : harness_std_keys) != 0 ||
        harness_start(h, conf) != 0) {
        fprintf(stderr, "signer_bench: keyless-signer did not start (see %s)\n", h->errlog);
        p11_backend_free(be);
        return -1;
    }
    /* Rounds alternate the three paths so that a burst of load from other processes
     * hits all of them alike; the median round of each path is reported. */
    for (unsigned round = 0; round < o->rounds; round++) {
        memset(ts, 0, sizeof(ts));
        for (unsigned i = 0; i < o->threads; i++) {
            ts[i].be = be;
            ts[i].key = key;
            ts[i].scheme = ks->scheme;
        }
        raw[round] = run_threads(ts, o->threads, o->seconds, raw_main, 0);
        if (full_p != NULL) {
            full[round] = run_threads(ts, o->threads, o->seconds, sign_main, 0);
        }
        memset(ts, 0, sizeof(ts));
        for (unsigned i = 0; i < o->threads; i++) {
            ts[i].sock = h->sock;
            ts[i].key_name = ks->key;
            ts[i].scheme = ks->scheme;
            ts[i].window = 1;
        }
        w1[round] = run_threads(ts, o->threads, o->seconds, rpc_main, h->pid);
        for (unsigned i = 0; i < o->threads; i++) {
            ts[i].window = o->window;
        }
        struct p11srv_watch w0, w1s;
        uint64_t t0 = kl_clock_ns();
        p11srv_snapshot(&w0, o->p11_server);
        ww[round] = run_threads(ts, o->threads, o->seconds, rpc_main, h->pid);
        p11srv_snapshot(&w1s, o->p11_server);
        p11srv_busiest(&w0, &w1s, (double)(kl_clock_ns() - t0) / 1e9);
        ww[round].p11srv_conns = w0.n;
        ww[round].p11srv_busiest_pct = w0.busiest_pct;
        ww[round].p11srv_cpu_us = ww[round].n > 0 ? w0.total_s * 1e6 / (double)ww[round].n : -1;
    }
    (void)harness_stop(h);
    p11_backend_free(be);
    *raw_p = median(raw, o->rounds);
    if (full_p != NULL) {
        *full_p = median(full, o->rounds);
    }
    *w1_p = median(w1, o->rounds);
    *ww_p = median(ww, o->rounds);
    return 0;
}

/*
 * RSA: the self-verification p11_sign runs on every signature before it leaves (RSA-CRT
 * faults; issue 13), timed alone: crypto_rsa_pss_verify on one of the token's signatures,
 * as p11_sign calls it, in CPU µs per call (this thread's CPU time: load does not add to it).
 * -1 if it cannot be measured.
 */
static double rsa_verify_cpu_us(struct harness *h, const struct key_spec *ks)
{
    struct p11_backend *be = NULL;
    struct p11_key *key = NULL;
    struct crypto_pubkey *pub = NULL;
    char err[256], pin[400];
    uint8_t content[130], sig[P11_SIG_MAX], digest[CRYPTO_MAX_DIGEST];
    size_t sig_len = sizeof(sig), digest_len = 0, spki_len = 0;
    const uint8_t *spki;
    double us = -1;
    int n = 0;

    snprintf(pin, sizeof(pin), "%s/user.pin", h->hsm);
    memset(content, 0x20, 64);
    memset(content + 64, 0x5a, sizeof(content) - 64);
    if (p11_backend_new(&be, NULL, err, sizeof(err), SOFTHSM_MODULE, NULL, ks->uri, pin, 1, 1) != 0 ||
        p11_key_find(be, &key, err, sizeof(err), ks->uri) != 0 || (spki = p11_key_spki(key, &spki_len)) == NULL ||
        crypto_pubkey_from_spki(&pub, spki, spki_len) != 0 ||
        p11_sign(be, sig, &sig_len, 0, key, ks->scheme, content, sizeof(content)) != 0 ||
        crypto_digest(digest, &digest_len, TLS_HASH_SHA256, content, sizeof(content)) != 0) {
        goto exit;
    }
    uint64_t c0 = thread_cpu_ns();
    for (n = 0; n < 2000; n++) {
        if (crypto_rsa_pss_verify(pub, TLS_HASH_SHA256, sig, sig_len, digest, digest_len) != 0) {
            goto exit;
        }
    }
    us = (double)(thread_cpu_ns() - c0) / 1e3 / n;
    /* Negative check: a changed signature must not verify (the loop above timed real work). */
    sig[sig_len / 2] ^= 1;
    us = crypto_rsa_pss_verify(pub, TLS_HASH_SHA256, sig, sig_len, digest, digest_len) != 0 ? us : -1;
exit:
    crypto_pubkey_free(pub);
    p11_backend_free(be);
    return us;
}

/* --count: one key, one signer; a warm-up, the hook, exactly o->count requests, the hook. */
static int bench_count(struct harness *h, const struct key_spec *ks, const struct opts *o)
{
    struct bench_thread ts[64];
    char conf[400], extra[200], pid_s[32];
    struct result warm, r;
    int ret = -1;

    memset(&warm, 0, sizeof(warm));
    memset(&r, 0, sizeof(r));
    snprintf(conf, sizeof(conf), "%s/bench.conf", h->dir);
    snprintf(extra, sizeof(extra), "workers = %u\nqueue_max = 65536\naudit_sync = %s\naudit_group_ms = %u\n%s",
             o->workers, o->sync, o->group_ms, o->no_sandbox ? "sandbox = no\n" : "");
    if (harness_write_config(h, conf, extra, NULL, harness_std_keys) != 0 || harness_start(h, conf) != 0) {
        fprintf(stderr, "signer_bench: keyless-signer did not start (see %s)\n", h->errlog);
        return -1;
    }
    for (int pass = 0; pass < 2; pass++) {
        memset(ts, 0, sizeof(ts));
        for (unsigned i = 0; i < o->threads; i++) {
            ts[i].sock = h->sock;
            ts[i].key_name = ks->key;
            ts[i].scheme = ks->scheme;
            ts[i].window = o->window;
            ts[i].limit = pass == 0 ? 256 / o->threads + 1 : (o->count + o->threads - 1) / o->threads;
        }
        if (pass == 1) {
            snprintf(pid_s, sizeof(pid_s), "%d", (int)h->pid);
            setenv("KL_SIGNER_PID", pid_s, 1);
            if (o->hook_before != NULL && system(o->hook_before) != 0) {
                fprintf(stderr, "signer_bench: --hook-before failed\n");
                goto exit;
            }
        }
        /* The deadline only bounds a stuck run: the limits end it. */
        if (pass == 0) {
            warm = run_threads(ts, o->threads, 600, rpc_main, h->pid);
        } else {
            r = run_threads(ts, o->threads, 600, rpc_main, h->pid);
        }
    }
    if (o->hook_after != NULL && system(o->hook_after) != 0) {
        fprintf(stderr, "signer_bench: --hook-after failed\n");
        goto exit;
    }
    printf("| %-10s | count %8llu (warm-up %llu) | %9.0f sig/s | CPU %.1f µs/sig | cs %.3f/sig (inv %.3f) | errors "
           "%llu |\n",
           ks->key, (unsigned long long)r.n, (unsigned long long)warm.n, r.per_s, r.cpu_us, r.ctxsw, r.invol,
           (unsigned long long)(r.errors + warm.errors));
    fflush(stdout);
    ret = r.errors + warm.errors == 0 ? 0 : -1;
exit:
    (void)harness_stop(h);
    return ret;
}

/* "1,2,4,8" into counts[]; the number of counts, 0 if malformed. */
static size_t parse_list(unsigned *counts, size_t cap, const char *s)
{
    size_t n = 0;
    while (*s != '\0' && n < cap) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || v < 1 || v > 64 || (*end != ',' && *end != '\0')) {
            return 0;
        }
        counts[n++] = (unsigned)v;
        s = *end == ',' ? end + 1 : end;
    }
    return *s == '\0' ? n : 0;
}

/*
 * `p11-kit server` exporting SoftHSM2 through tests/signer/p11shim.c, whose C_Sign sleeps
 * delay_us first: a token whose signature takes that long whatever this machine's load (a
 * network HSM's latency), so that the rows show what the connections allow rather than
 * what two shared cores allow. The server's pid (its own process group), or -1.
 */
static pid_t p11_server_start_delayed(const char *sock, unsigned delay_us)
{
    char d[32];
    pid_t pid;
    snprintf(d, sizeof(d), "%u", delay_us);
    (void)unlink(sock);
    if ((pid = fork()) < 0) {
        return -1;
    }
    if (pid == 0) {
        FILE *e = freopen("/dev/null", "w", stdout);
        (void)e;
        setpgid(0, 0);
        setenv("KL_SHIM_TARGET", SOFTHSM_MODULE, 1);
        setenv("KL_SHIM_SIGN_DELAY_US", d, 1);
        execlp("p11-kit", "p11-kit", "server", "-f", "-n", sock, "--provider", KL_P11SHIM, "pkcs11:token=keyless",
               (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && access(sock, F_OK) != 0; i++) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return pid;
}

/* The slow-token section: the same token behind `p11-kit server`, 1..N sessions. */
static int bench_remote(struct harness *h, const struct opts *base, const unsigned *counts, size_t n_counts,
                        const struct key_spec *ks)
{
    char p11sock[400], label[64];
    double raw1 = 0, rpc1 = 0, ratio4_raw = 0, ratio4_rpc = 0;
    pid_t server;
    int ret = 0;

    harness_p11_socket(h, p11sock, sizeof(p11sock));
    server = base->token_delay_us > 0 ? p11_server_start_delayed(p11sock, base->token_delay_us)
                                      : harness_p11_server_start(p11sock, 0);
    struct opts ob = *base;
    ob.p11_server = server;
    base = &ob;
    if (server <= 0 || access(p11sock, F_OK) != 0) {
        fprintf(stderr, "signer_bench: p11-kit server did not start\n");
        harness_p11_server_stop(server);
        return -1;
    }
    printf("\nslow token: %s through p11-kit server + p11-kit-client.so, signer workers = sessions, module "
           "instances = %s, one client connection per session with %u in flight, token delay %u µs per C_Sign\n\n",
           ks->key, base->instances == 0 ? "sessions" : "--instances", base->window, base->token_delay_us);
    /* conns: the signer's and this program's raw-path backend (idle during the RPC run);
     * p11 µs/sig: CPU of all the server's children per RPC signature (SoftHSM + RPC). */
    printf("| sessions | raw sig/s | raw x1 | RPC sig/s | RPC x1 | RPC p50 µs (w=1) | srv µs/sig | srv cs/sig | "
           "p11-kit server conns | busiest conn CPU %% | p11 µs/sig | errors |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < n_counts && ret == 0; i++) {
        struct opts o = *base;
        struct result raw, w1, ww;
        o.threads = o.workers = counts[i];
        o.instances = base->instances == 0 ? counts[i] : base->instances < counts[i] ? base->instances : counts[i];
        if ((ret = bench_key(h, ks, &o, CLIENT_MODULE, &raw, NULL, &w1, &ww)) != 0) {
            break;
        }
        if (i == 0) {
            raw1 = raw.per_s;
            rpc1 = ww.per_s;
        }
        snprintf(label, sizeof(label), "%u", counts[i]);
        printf(
            "| %-8s | %9.0f | %6.2f | %9.0f | %6.2f | %16.1f | %10.1f | %10.2f | %20zu | %18.0f | %10.1f | %6llu |\n",
            label, raw.per_s, raw1 > 0 ? raw.per_s / raw1 : 0.0, ww.per_s, rpc1 > 0 ? ww.per_s / rpc1 : 0.0, w1.p50_us,
            ww.cpu_us, ww.ctxsw, ww.p11srv_conns, ww.p11srv_busiest_pct, ww.p11srv_cpu_us,
            (unsigned long long)(raw.errors + w1.errors + ww.errors));
        fflush(stdout);
        if (counts[i] == 4 && raw1 > 0 && rpc1 > 0) {
            ratio4_raw = raw.per_s / raw1;
            ratio4_rpc = ww.per_s / rpc1;
        }
    }
    if (ret == 0 && ratio4_rpc > 0) {
        printf("\n%s: 4 sessions vs 1: raw C_Sign %.2fx, signer RPC %.2fx (target >= 3x)\n", ks->key, ratio4_raw,
               ratio4_rpc);
    }
    harness_p11_server_stop(server);
    return ret;
}

int main(int argc, char **argv)
{
    /* Defaults: the signer's own audit defaults (group, 1 ms), and a window deep enough to
     * cover one group commit (64 requests in flight per connection), so that the RPC rows
     * measure the signer's pipeline rather than the fdatasync latency. */
    struct opts o = {
        .threads = 2, .workers = ~0u, .window = 64, .rounds = 3, .seconds = 2.0, .sync = "group", .group_ms = 1};
    static char self[1024], build[1024], src[1024];
    struct harness h;
    unsigned counts[8];
    size_t n_counts = 0;
    const char *keys_list = "ecdsa-p256,rsa-2048";
    int ret = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            o.threads = (unsigned)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
            o.workers = (unsigned)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            o.seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            o.rounds = (unsigned)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc) {
            o.window = (unsigned)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--audit-sync") == 0 && i + 1 < argc) {
            o.sync = argv[++i];
        } else if (strcmp(argv[i], "--audit-group-ms") == 0 && i + 1 < argc) {
            o.group_ms = (unsigned)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--remote") == 0 && i + 1 < argc) {
            if ((n_counts = parse_list(counts, sizeof(counts) / sizeof(counts[0]), argv[++i])) == 0) {
                fprintf(stderr, "signer_bench: --remote wants session counts such as 1,2,4,8\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--token-delay-us") == 0 && i + 1 < argc) {
            o.token_delay_us = (unsigned)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--instances") == 0 && i + 1 < argc) {
            o.instances = (unsigned)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--keys") == 0 && i + 1 < argc) {
            keys_list = argv[++i];
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            o.count = (unsigned)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--hook-before") == 0 && i + 1 < argc) {
            o.hook_before = argv[++i];
        } else if (strcmp(argv[i], "--hook-after") == 0 && i + 1 < argc) {
            o.hook_after = argv[++i];
        } else if (strcmp(argv[i], "--no-sandbox") == 0) {
            o.no_sandbox = 1;
        } else {
            fprintf(stderr, "usage: signer_bench [--threads N] [--workers N] [--seconds S] [--rounds R] [--window W] "
                            "[--audit-sync MODE] [--audit-group-ms MS] [--remote 1,2,4,8] [--instances N] "
                            "[--token-delay-us US] [--keys ecdsa-p256,rsa-2048] "
                            "[--count N [--hook-before CMD] [--hook-after CMD] [--no-sandbox]]\n");
            return 2;
        }
    }
    if (o.workers == ~0u) {
        o.workers = o.threads;
    }
    if (o.threads < 1 || o.threads > 64 || o.workers > 64 || o.window < 1 || o.window > 1024 || o.rounds < 1 ||
        o.rounds > MAX_ROUNDS || o.instances > 64) {
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
    if (n_counts > 0) {
        printf("signer_bench --remote: %u round(s) of %.1f s per path (median round shown), audit_sync %s (group "
               "%u ms)\n",
               o.rounds, o.seconds, o.sync, o.group_ms);
        for (size_t k = 0; k < sizeof(KEYS) / sizeof(KEYS[0]) && ret == 0; k++) {
            if (strstr(keys_list, KEYS[k].key) != NULL) {
                ret = bench_remote(&h, &o, counts, n_counts, &KEYS[k]);
            }
        }
        harness_cleanup(&h);
        return ret == 0 ? 0 : 1;
    }
    if (o.count > 0) {
        printf("signer_bench --count %u: %u worker(s), %u client thread(s), window %u, audit_sync %s (group %u ms)\n",
               o.count, o.workers, o.threads, o.window, o.sync, o.group_ms);
        for (size_t k = 0; k < sizeof(KEYS) / sizeof(KEYS[0]) && ret == 0; k++) {
            if (strstr(keys_list, KEYS[k].key) != NULL) {
                ret = bench_count(&h, &KEYS[k], &o);
            }
        }
        harness_cleanup(&h);
        return ret == 0 ? 0 : 1;
    }
    printf("signer_bench: %u HSM session(s) / %u worker(s), %u client thread(s), %u round(s) of %.1f s per path "
           "(median round shown), rpc window %u, audit_sync %s (group %u ms), SoftHSM2 token\n\n",
           o.workers > 0 ? o.workers : 1, o.workers, o.threads, o.rounds, o.seconds, o.window, o.sync, o.group_ms);
    print_header();
    for (size_t k = 0; k < sizeof(KEYS) / sizeof(KEYS[0]) && ret == 0; k++) {
        struct result mraw, mfull, mw1, mww;
        char label[64];
        if (strstr(keys_list, KEYS[k].key) == NULL) {
            continue;
        }
        if ((ret = bench_key(&h, &KEYS[k], &o, NULL, &mraw, &mfull, &mw1, &mww)) != 0) {
            break;
        }
        print_row(KEYS[k].key, "raw C_Sign", &mraw);
        print_row(KEYS[k].key, "p11_sign (hash, check)", &mfull);
        print_row(KEYS[k].key, "RPC, 1 in flight/conn", &mw1);
        snprintf(label, sizeof(label), "RPC, %u in flight/conn", o.window);
        print_row(KEYS[k].key, label, &mww);
        printf("| %-10s | RPC/raw throughput %3.0f%%, added p50 (w=1) %+.1f µs |\n", KEYS[k].key,
               mraw.per_s > 0 ? 100.0 * mww.per_s / mraw.per_s : 0.0, mw1.p50_us - mraw.p50_us);
        printf(
            "| %-10s | CPU µs/sig: p11_sign - raw %+.1f (hashing, DER%s); signer per RPC (w=%u) - p11_sign %+.1f |\n",
            KEYS[k].key, mfull.cpu_us - mraw.cpu_us, KEYS[k].scheme == 0x0804 ? ", RSA self-verification" : "",
            o.window, mww.cpu_us - mfull.cpu_us);
        if (KEYS[k].scheme == 0x0804) {
            printf("| %-10s | RSA self-verification alone (crypto_rsa_pss_verify, 2000 calls): %.1f CPU µs/sig |\n",
                   KEYS[k].key, rsa_verify_cpu_us(&h, &KEYS[k]));
        }
    }
    harness_cleanup(&h);
    return ret == 0 ? 0 : 1;
}
