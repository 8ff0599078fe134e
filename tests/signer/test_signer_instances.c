/*
 * test_signer_instances.c - [hsm] module_instances (issue 15): several instances of a
 * remoting module, each with its own connection to `p11-kit server` (which serves one
 * request at a time per connection), with the real server and the SoftHSM2 token:
 *  - in process: p11_backend_new() with N instances of p11-kit-client.so makes N server
 *    connections (the server's children), signs on every session (each instance) with
 *    signatures that verify; a killed server child breaks only its instance: one request
 *    fails, the others sign on without a new login, and the next request there recovers it
 *    (one login, one recovery, the connection count back to N);
 *  - refusals: SoftHSM2 directly with 2 instances (it returns the same function list
 *    twice: P11_FAIL_INSTANCES, the message says why), module_name with 2 instances,
 *    0 instances, more instances than sessions, more than P11_INSTANCES_MAX;
 *  - keyless-signer: module_instances = 4 with 4 workers makes 4 connections (1 without
 *    it), signatures verify; a killed child costs one HSM_ERROR and one logged recovery of
 *    that instance; a SIGHUP with another module_instances keeps the running one (one line);
 *    on SoftHSM2 directly module_instances = 2 stops the start with one line naming the
 *    file and [hsm] module_instances.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "kl_test.h"
#include "p11_backend.h"
#include "rpc_client.h"

static struct harness H;

static const char ecdsa_uri[] = "pkcs11:token=keyless;object=ecdsa-p256;type=private";

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The pids of the server's per-connection children (one per client connection). */
static size_t server_children(pid_t server, pid_t *pids, size_t cap)
{
    char path[128];
    FILE *f;
    int child;
    size_t n = 0;
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)server, (int)server);
    if ((f = fopen(path, "r")) == NULL) {
        return 0;
    }
    while (n < cap && fscanf(f, "%d", &child) == 1) {
        pids[n++] = child;
    }
    fclose(f);
    return n;
}

/* Wait (<= 5 s) until the server has want children; the count seen last. */
static size_t wait_children(pid_t server, size_t want)
{
    pid_t pids[128];
    size_t n = 0;
    for (int i = 0; i < 100; i++) {
        if ((n = server_children(server, pids, 128)) == want) {
            break;
        }
        sleep_ms(50);
    }
    return n;
}

/* p11_sign of a content derived from seed on session s; 0 and a verifying signature, or the error. */
static int sign_verify(struct p11_backend *be, const struct p11_key *key, unsigned s, unsigned seed)
{
    uint8_t hash[32], content[200], sig[P11_SIG_MAX];
    size_t cl, sig_len = sizeof(sig);
    int ret;
    for (size_t k = 0; k < sizeof(hash); k++) {
        hash[k] = (uint8_t)(seed * 13 + k);
    }
    cl = harness_content(content, 1, hash, sizeof(hash));
    if ((ret = p11_sign(be, sig, &sig_len, s, key, 0x0403, content, cl)) != 0) {
        return ret;
    }
    return harness_verify(&H, "ecdsa-p256", 0x0403, content, cl, sig, sig_len) ? 0 : -1000;
}

static int backend_try(enum p11_fail *fail_p, char *err, size_t err_len, const char *module, const char *name,
                       unsigned sessions, unsigned instances)
{
    struct p11_backend *be = NULL;
    char pin[400];
    int ret;
    snprintf(pin, sizeof(pin), "%s/user.pin", H.hsm);
    err[0] = '\0';
    *fail_p = (enum p11_fail) - 1;
    ret = p11_backend_new(&be, fail_p, err, err_len, module, name, "pkcs11:token=keyless", pin, sessions, instances);
    ok(ret != 0 || be != NULL, "a backend exactly when it succeeds");
    p11_backend_free(be);
    return ret;
}

static void test_refusals(void)
{
    char err[512];
    enum p11_fail fail;

    ok(backend_try(&fail, err, sizeof(err), SOFTHSM_MODULE, NULL, 2, 2) != 0,
       "SoftHSM2 directly with 2 instances: refused");
    is_int(fail, P11_FAIL_INSTANCES, "... as P11_FAIL_INSTANCES");
    if (!ok(strstr(err, "same function list") != NULL && strstr(err, SOFTHSM_MODULE) != NULL,
            "... the reason names the module and says why")) {
        diag("%s", err);
    }
    ok(backend_try(&fail, err, sizeof(err), NULL, "softhsm2", 2, 2) != 0, "module_name with 2 instances: refused");
    is_int(fail, P11_FAIL_INSTANCES, "... as P11_FAIL_INSTANCES");
    ok(backend_try(&fail, err, sizeof(err), SOFTHSM_MODULE, NULL, 2, 0) != 0, "0 instances: refused");
    is_int(fail, P11_FAIL_INVALID, "... as P11_FAIL_INVALID");
    ok(backend_try(&fail, err, sizeof(err), CLIENT_MODULE, NULL, 2, 3) != 0, "more instances than sessions: refused");
    is_int(fail, P11_FAIL_INVALID, "... as P11_FAIL_INVALID");
    ok(backend_try(&fail, err, sizeof(err), CLIENT_MODULE, NULL, 100, P11_INSTANCES_MAX + 1) != 0,
       "more than P11_INSTANCES_MAX: refused");
    is_int(fail, P11_FAIL_INVALID, "... as P11_FAIL_INVALID");
    /* The control: one instance of SoftHSM2 is what it always was. */
    ok(backend_try(&fail, err, sizeof(err), SOFTHSM_MODULE, NULL, 2, 1) == 0, "SoftHSM2 with 1 instance: opens");
}

static void test_in_process(void)
{
    enum { N = 4 };
    char p11sock[400], pin[400], err[512] = "";
    struct p11_backend *be = NULL;
    struct p11_key *key = NULL;
    pid_t server, pids[128];
    int failed = 0, failed_hsm = 0, good = 0;
    unsigned logins;

    harness_p11_socket(&H, p11sock, sizeof(p11sock));
    server = harness_p11_server_start(p11sock, 0);
    snprintf(pin, sizeof(pin), "%s/user.pin", H.hsm);
    if (!ok(p11_backend_new(&be, NULL, err, sizeof(err), CLIENT_MODULE, NULL, "pkcs11:token=keyless", pin, N, N) == 0 &&
                p11_key_find(be, &key, err, sizeof(err), ecdsa_uri) == 0 &&
                p11_key_check_scheme(be, key, err, sizeof(err), 0x0403) == 0,
            "in process: 4 instances of p11-kit-client.so open, the key is found")) {
        diag("%s", err);
        p11_backend_free(be);
        harness_p11_server_stop(server);
        return;
    }
    is_int((int)p11_backend_instances(be), N, "in process: 4 instances");
    is_int((int)wait_children(server, N), N, "in process: 4 instances make 4 server connections");
    is_int((int)p11_backend_logins(be), N, "in process: one login per instance");
    for (unsigned s = 0; s < N; s++) {
        good += sign_verify(be, key, s, s) == 0;
    }
    is_int(good, N, "in process: every session (each instance) signs, signatures verify");
    ok(sign_verify(be, key, N, 0) == KL_ERR_INVALID, "in process: a session index past the pool: KL_ERR_INVALID");

    /* One connection goes away: its server child dies. */
    if (!ok(server_children(server, pids, 128) == N && kill(pids[1], SIGKILL) == 0, "one server child killed")) {
        p11_backend_free(be);
        harness_p11_server_stop(server);
        return;
    }
    (void)wait_children(server, N - 1);
    logins = p11_backend_logins(be);
    for (unsigned s = 0; s < N; s++) {
        int r = sign_verify(be, key, s, 10 + s);
        failed += r != 0;
        failed_hsm += r == KL_ERR_HSM;
    }
    is_int(failed, 1, "one session fails: only the instance whose connection died");
    is_int(failed_hsm, 1, "... with KL_ERR_HSM");
    is_int((int)p11_backend_logins(be), (int)logins, "the other instances did not log in again");
    is_int((int)p11_backend_recoveries(be), 0, "no recovery yet");
    good = 0;
    for (unsigned s = 0; s < N; s++) {
        good += sign_verify(be, key, s, 20 + s) == 0;
    }
    is_int(good, N, "next round: the broken instance recovered, every session signs and verifies");
    is_int((int)p11_backend_recoveries(be), 1, "one recovery");
    is_int((int)p11_backend_logins(be), (int)logins + 1, "one more login (the recovered instance's)");
    is_int((int)wait_children(server, N), N, "4 server connections again");
    p11_backend_free(be);
    is_int((int)wait_children(server, 0), 0, "p11_backend_free closes every connection");
    harness_p11_server_stop(server);
}

struct load {
    int ok, hsm, other;
    unsigned base;
};

/* One connection of sequential sign requests that verify; counts the answers. */
static void *load_main(void *arg)
{
    struct load *l = arg;
    struct rpc_client c;
    if (rpc_client_connect(&c, H.sock) != 0) {
        l->other = 1;
        return NULL;
    }
    for (unsigned i = 0; i < 12; i++) {
        int st = harness_sign_status(&H, &c, l->base + i, "ecdsa-p256", 0x0403, 1);
        l->ok += st == KEYLESS__V1__STATUS__OK;
        l->hsm += st == KEYLESS__V1__STATUS__HSM_ERROR;
        l->other += st != KEYLESS__V1__STATUS__OK && st != KEYLESS__V1__STATUS__HSM_ERROR;
    }
    rpc_client_close(&c);
    return NULL;
}

/* 8 connections of 12 requests at once, so that every worker takes some; totals in *sum. */
static void load_round(struct load *sum, unsigned base)
{
    pthread_t t[8];
    struct load l[8];
    memset(l, 0, sizeof(l));
    for (unsigned i = 0; i < 8; i++) {
        l[i].base = base + 100 * i;
        if (pthread_create(&t[i], NULL, load_main, &l[i]) != 0) {
            l[i].other = 1;
            t[i] = 0;
        }
    }
    for (unsigned i = 0; i < 8; i++) {
        if (t[i] != 0) {
            pthread_join(t[i], NULL);
        }
        sum->ok += l[i].ok;
        sum->hsm += l[i].hsm;
        sum->other += l[i].other;
    }
}

static void test_signer(void)
{
    char p11sock[400], conf[400], keys[1024], cmd[1200], out[4096];
    const char *ed = strstr(harness_std_keys, "[key ed25519]");
    pid_t server, pids[128];
    struct load sum;
    int st;

    /* p11-kit 0.24's RPC does not carry CKM_EDDSA: the remote tests leave the ed25519 key out. */
    snprintf(keys, sizeof(keys), "%.*s", (int)(ed - harness_std_keys), harness_std_keys);
    snprintf(conf, sizeof(conf), "%s/instances.conf", H.dir);
    {
        FILE *f = fopen(H.errlog, "w"); /* the log lines counted below are this test's */
        if (f != NULL) {
            fclose(f);
        }
    }

    /* SoftHSM2 directly: one instance per process, so module_instances = 2 stops the start. */
    if (harness_write_config(&H, conf, NULL, "module = " SOFTHSM_MODULE "\nmodule_instances = 2", harness_std_keys) ==
        0) {
        snprintf(cmd, sizeof(cmd), "%s --config %s --check-config 2>&1", H.bin, conf);
        st = harness_run(out, sizeof(out), cmd);
        is_int(st, 1, "SoftHSM2 with module_instances = 2: the start fails");
        if (!ok(strstr(out, "instances.conf:") != NULL && strstr(out, "[hsm] module_instances: ") != NULL &&
                    strstr(out, "same function list") != NULL && harness_count_lines(out) == 1,
                "... one line naming the file, [hsm] module_instances and why")) {
            diag("%s", out);
        }
    }

    harness_p11_socket(&H, p11sock, sizeof(p11sock));
    server = harness_p11_server_start(p11sock, 0);

    /* The control: one instance, one connection, however many workers. */
    if (harness_write_config(&H, conf, "workers = 4", "module = " CLIENT_MODULE, keys) == 0 &&
        harness_start(&H, conf) == 0) {
        is_int((int)wait_children(server, 1), 1, "module_instances unset, 4 workers: 1 server connection");
        is_int(harness_stop(&H), 0, "graceful stop");
    } else {
        ok(0, "keyless-signer started on p11-kit-client.so, 1 instance");
    }
    (void)wait_children(server, 0);

    if (!ok(harness_write_config(&H, conf, "workers = 4", "module = " CLIENT_MODULE "\nmodule_instances = 4", keys) ==
                    0 &&
                harness_start(&H, conf) == 0,
            "keyless-signer started with module_instances = 4")) {
        harness_p11_server_stop(server);
        return;
    }
    is_int((int)wait_children(server, 4), 4, "module_instances = 4: 4 server connections");
    memset(&sum, 0, sizeof(sum));
    load_round(&sum, 1000);
    is_int(sum.ok, 96, "96 signatures from 8 connections at once, all verify");
    is_int(sum.hsm + sum.other, 0, "... no error");

    if (!ok(server_children(server, pids, 128) == 4 && kill(pids[2], SIGKILL) == 0, "one server child killed")) {
        harness_stop(&H);
        harness_p11_server_stop(server);
        return;
    }
    memset(&sum, 0, sizeof(sum));
    for (int round = 0; round < 10 && harness_file_count(H.errlog, "hsm: recovered (instance ") == 0; round++) {
        load_round(&sum, 10000 + 1000 * (unsigned)round);
    }
    is_int(sum.hsm, 1, "one HSM_ERROR: the one request on the broken instance");
    is_int(sum.other, 0, "no other failure; every other signature verifies");
    is_int(harness_file_count(H.errlog, "hsm: recovered (instance "), 1, "one recovery logged, naming the instance");
    is_int(harness_file_count(H.errlog, "5 logins so far"), 1, "... after 5 logins in all (4 at start, 1 for it)");
    is_int((int)wait_children(server, 4), 4, "4 server connections again");

    /* SIGHUP with another module_instances: restart-only, the running value kept. */
    if (harness_write_config(&H, conf, "workers = 4", "module = " CLIENT_MODULE "\nmodule_instances = 2", keys) == 0) {
        kill(H.pid, SIGHUP);
        for (int i = 0;
             i < 100 && harness_file_count(H.errlog, "[hsm] module_instances changed; needs a restart (kept 4)") == 0;
             i++) {
            sleep_ms(50);
        }
        is_int(harness_file_count(H.errlog, "[hsm] module_instances changed; needs a restart (kept 4)"), 1,
               "SIGHUP with module_instances = 2: one line, 4 kept");
        memset(&sum, 0, sizeof(sum));
        load_round(&sum, 50000);
        is_int(sum.ok, 96, "after the reload: every signature verifies");
        is_int((int)wait_children(server, 4), 4, "... still on 4 connections");
    }
    is_int(harness_stop(&H), 0, "graceful stop");
    harness_p11_server_stop(server);
    unsetenv("P11_KIT_SERVER_ADDRESS");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* a killed server child: the client module writes to a closed socket */
    if (harness_init(&H) != 0) {
        ok(0, "token fixture");
        return kl_test_done();
    }
    test_refusals();
    test_in_process();
    test_signer();
    harness_cleanup(&H);
    return kl_test_done();
}
