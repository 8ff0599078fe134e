/*
 * test_signer_p11.c - the same token and keys through different PKCS#11 paths, and
 * token trouble with recovery:
 *  - SoftHSM2's module through p11-kit's proxy (p11-kit-proxy.so) and by its p11-kit
 *    registered name (module_name = softhsm2): same SPKI, signatures verify;
 *  - a remote token: `p11-kit server` exports the SoftHSM2 token, the signer uses
 *    p11-kit-client.so. Killing the server mid-run is a real token removal: the
 *    signer answers HSM_ERROR (and audits it), keeps running, and once the server is
 *    back it re-initialises the module, logs in again, re-finds its keys and signs;
 *  - the same remote token going away while the PIN file is changed: one login is tried
 *    when it is back, then none until SIGHUP (counted by the signer's own counter);
 *  - in process, p11_backend_new()'s typed failure (enum p11_fail) for a missing module,
 *    an unregistered module name, a URI that is not one, a token that is not there, PIN
 *    files that cannot be used and a PIN the token refuses; and on success the keys' SPKI
 *    (built by crypto.c from the token's attributes) and p11_sign()'s signatures.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "kl_test.h"
#include "p11_backend.h"
#include "rpc_client.h"

static struct harness H;

static int sign_status(struct rpc_client *c, uint64_t id, const char *key, uint16_t scheme, int verify)
{
    return harness_sign_status(&H, c, id, key, scheme, verify);
}

static void spki_matches(struct rpc_client *c, const char *what)
{
    Keyless__V1__Request req = KEYLESS__V1__REQUEST__INIT;
    Keyless__V1__ListKeysRequest lr = KEYLESS__V1__LIST_KEYS_REQUEST__INIT;
    Keyless__V1__Response *r = NULL;
    int good = 0;
    req.id = 9;
    req.body_case = KEYLESS__V1__REQUEST__BODY_LIST_KEYS;
    req.list_keys = &lr;
    if (rpc_client_send(c, &req) == 0 && rpc_client_recv(c, &r, 5000) == 0 &&
        r->body_case == KEYLESS__V1__RESPONSE__BODY_LIST_KEYS) {
        for (size_t i = 0; i < r->list_keys->n_keys; i++) {
            uint8_t want[2048];
            Keyless__V1__KeyInfo *k = r->list_keys->keys[i];
            size_t wl = harness_cert_spki(&H, k->name, want, sizeof(want));
            good += wl > 0 && wl == k->public_key_spki.len && memcmp(want, k->public_key_spki.data, wl) == 0;
        }
    }
    is_int(good, 4, what);
    if (r != NULL) {
        keyless__v1__response__free_unpacked(r, NULL);
    }
}

static void run_module(const char *hsm_lines, const char *what)
{
    char conf[400], name[200];
    struct rpc_client c;
    snprintf(conf, sizeof(conf), "%s/%s.conf", H.dir, what);
    if (harness_write_config(&H, conf, NULL, hsm_lines, harness_std_keys) != 0 || harness_start(&H, conf) != 0) {
        snprintf(name, sizeof(name), "%s: keyless-signer started", what);
        ok(0, name);
        return;
    }
    if (rpc_client_connect(&c, H.sock) != 0) {
        ok(0, "connect");
        return;
    }
    snprintf(name, sizeof(name), "%s: every key's SPKI equals its certificate's", what);
    spki_matches(&c, name);
    snprintf(name, sizeof(name), "%s: ECDSA P-256 signature verifies", what);
    is_int(sign_status(&c, 1, "ecdsa-p256", 0x0403, 1), KEYLESS__V1__STATUS__OK, name);
    snprintf(name, sizeof(name), "%s: RSA-PSS signature verifies", what);
    is_int(sign_status(&c, 2, "rsa-2048", 0x0805, 1), KEYLESS__V1__STATUS__OK, name);
    snprintf(name, sizeof(name), "%s: Ed25519 signature verifies", what);
    is_int(sign_status(&c, 3, "ed25519", 0x0807, 1), KEYLESS__V1__STATUS__OK, name);
    rpc_client_close(&c);
    snprintf(name, sizeof(name), "%s: graceful stop", what);
    is_int(harness_stop(&H), 0, name);
}

static void test_remote_token_removed(void)
{
    char p11sock[400], conf[400];
    struct rpc_client c;
    pid_t server;
    int st, recovered = 0;
    uint64_t id = 100;

    harness_p11_socket(&H, p11sock, sizeof(p11sock));
    server = harness_p11_server_start(p11sock, 0);
    ok(access(p11sock, F_OK) == 0, "p11-kit server exports the SoftHSM2 token");
    snprintf(conf, sizeof(conf), "%s/remote.conf", H.dir);
    {
        /* p11-kit 0.24's RPC does not carry CKM_EDDSA: the start-up probe must refuse
         * the ed25519 key on this module, with one line naming key and scheme. */
        char cmd[1400], out[4096];
        ok(harness_write_config(&H, conf, NULL, "module = " CLIENT_MODULE, harness_std_keys) == 0, "config");
        snprintf(cmd, sizeof(cmd), "%s --config %s --check-config 2>&1", H.bin, conf);
        st = harness_run(out, sizeof(out), cmd);
        ok(st == 1 && strstr(out, "[key ed25519] schemes: ed25519: the token cannot sign with mechanism") != NULL,
           "remote token without CKM_EDDSA: the ed25519 key is refused at start");
        diag("%s", out);
    }
    const char *keys = strstr(harness_std_keys, "[key ed25519]");
    char remote_keys[2048];
    snprintf(remote_keys, sizeof(remote_keys), "%.*s", (int)(keys - harness_std_keys), harness_std_keys);
    if (harness_write_config(&H, conf, NULL, "module = " CLIENT_MODULE, remote_keys) != 0 ||
        harness_start(&H, conf) != 0) {
        ok(0, "keyless-signer started on p11-kit-client.so");
        harness_p11_server_stop(server);
        return;
    }
    ok(1, "keyless-signer started on p11-kit-client.so");
    if (rpc_client_connect(&c, H.sock) != 0) {
        ok(0, "connect");
        harness_p11_server_stop(server);
        return;
    }
    is_int(sign_status(&c, ++id, "ecdsa-p256", 0x0403, 1), KEYLESS__V1__STATUS__OK, "remote token: signs");
    is_int(sign_status(&c, ++id, "rsa-2048", 0x0804, 1), KEYLESS__V1__STATUS__OK, "remote token: RSA signs");

    harness_p11_server_stop(server); /* the token goes away mid-run */
    st = sign_status(&c, ++id, "ecdsa-p256", 0x0403, 0);
    is_int(st, KEYLESS__V1__STATUS__HSM_ERROR, "token removed: HSM_ERROR");
    ok(harness_audit_has(&H, id, "HSM_ERROR"), "token removed: the failure is audited");
    {
        struct timespec ts = {0, 150 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    st = sign_status(&c, ++id, "ecdsa-p256", 0x0403, 0);
    is_int(st, KEYLESS__V1__STATUS__HSM_ERROR, "token still away: HSM_ERROR again (recovery fails, no crash)");
    ok(kill(H.pid, 0) == 0, "the signer is still running");

    server = harness_p11_server_start(p11sock, 0); /* the token is back */
    for (int i = 0; i < 150 && !recovered; i++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        st = sign_status(&c, ++id, "ecdsa-p256", 0x0403, 1);
        recovered = st == KEYLESS__V1__STATUS__OK;
        if (!recovered) {
            nanosleep(&ts, NULL);
        }
    }
    ok(recovered, "token back: signing recovers without restarting the signer");
    is_int(sign_status(&c, ++id, "rsa-2048", 0x0806, 1), KEYLESS__V1__STATUS__OK,
           "after recovery: RSA-PSS verifies (keys re-found)");
    is_int(sign_status(&c, ++id, "ecdsa-p384", 0x0503, 1), KEYLESS__V1__STATUS__OK, "after recovery: P-384 verifies");
    ok(harness_audit_grep(&H, "\"status\":\"HSM_ERROR\""), "HSM_ERROR records in the audit log");
    rpc_client_close(&c);
    is_int(harness_stop(&H), 0, "graceful stop after the recovery");
    {
        char cmd[800], out[4096];
        snprintf(cmd, sizeof(cmd), "grep -c 'hsm: recovered' %s", H.errlog);
        ok(harness_run(out, sizeof(out), cmd) == 0, "the recovery is logged");
    }
    harness_p11_server_stop(server);
    unsetenv("P11_KIT_SERVER_ADDRESS");
}

/* p11_backend_new() on args; returns its result, *fail_p the typed reason. */
static int backend_try(enum p11_fail *fail_p, const char *module, const char *name, const char *uri, const char *pin)
{
    struct p11_backend *be = NULL;
    char err[512] = "";
    int ret;
    *fail_p = (enum p11_fail) - 1;
    ret = p11_backend_new(&be, fail_p, err, sizeof(err), module, name, uri, pin, 2, 1);
    if (ret != 0) {
        diag("p11_backend_new: %s", err);
    }
    ok(ret != 0 || be != NULL, "a backend exactly when it succeeds");
    p11_backend_free(be);
    return ret;
}

static int write_pin(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    fputs(text, f);
    return fclose(f) == 0 && chmod(path, mode) == 0 ? 0 : -1;
}

static void test_backend_in_process(void)
{
    static const struct {
        const char *key;
        const char *uri;
        uint16_t scheme;
    } keys[] = {
        {"ecdsa-p256", "pkcs11:token=keyless;object=ecdsa-p256;type=private", 0x0403},
        {"ecdsa-p384", "pkcs11:token=keyless;object=ecdsa-p384;type=private", 0x0503},
        {"rsa-2048", "pkcs11:token=keyless;object=rsa-2048;type=private", 0x0806},
        {"ed25519", "pkcs11:token=keyless;id=%04;type=private", 0x0807},
    };
    const char *uri = "pkcs11:token=keyless";
    char pin[400], bad_pin[400], missing[400];
    enum p11_fail fail;
    struct p11_backend *be = NULL;
    char err[512] = "";

    snprintf(pin, sizeof(pin), "%s/user.pin", H.hsm);
    snprintf(bad_pin, sizeof(bad_pin), "%s/inproc-wrong.pin", H.dir);
    snprintf(missing, sizeof(missing), "%s/no-such.pin", H.dir);

    ok(backend_try(&fail, "/nonexistent/libnope.so", NULL, uri, pin) != 0, "missing module file refused");
    is_int(fail, P11_FAIL_MODULE, "missing module file: P11_FAIL_MODULE");
    ok(backend_try(&fail, NULL, "no-such-module", uri, pin) != 0, "unregistered module name refused");
    is_int(fail, P11_FAIL_MODULE, "unregistered module name: P11_FAIL_MODULE");
    ok(backend_try(&fail, SOFTHSM_MODULE, NULL, "token=keyless", pin) != 0, "a token URI that is not a URI refused");
    is_int(fail, P11_FAIL_INVALID, "not a URI: P11_FAIL_INVALID");
    ok(backend_try(&fail, SOFTHSM_MODULE, NULL, "pkcs11:token=no-such-token", pin) != 0, "absent token refused");
    is_int(fail, P11_FAIL_TOKEN, "absent token: P11_FAIL_TOKEN");
    ok(backend_try(&fail, SOFTHSM_MODULE, NULL, uri, missing) != 0, "missing PIN file refused");
    is_int(fail, P11_FAIL_PIN, "missing PIN file: P11_FAIL_PIN");
    if (write_pin(bad_pin, "0000-wrong\n", 0644) == 0) {
        ok(backend_try(&fail, SOFTHSM_MODULE, NULL, uri, bad_pin) != 0, "world-readable PIN file refused");
        is_int(fail, P11_FAIL_PIN, "world-readable PIN file: P11_FAIL_PIN");
    }
    if (write_pin(bad_pin, "0000-wrong\n", 0600) == 0) {
        ok(backend_try(&fail, SOFTHSM_MODULE, NULL, uri, bad_pin) != 0, "wrong PIN refused by the token");
        is_int(fail, P11_FAIL_PIN, "wrong PIN (CKR_PIN_INCORRECT): P11_FAIL_PIN");
    }
    if (write_pin(bad_pin, "\n", 0600) == 0) {
        ok(backend_try(&fail, SOFTHSM_MODULE, NULL, uri, bad_pin) != 0, "empty PIN file refused");
        is_int(fail, P11_FAIL_PIN, "empty PIN file: P11_FAIL_PIN");
    }
    unlink(bad_pin);

    /* The control: the real module, token and PIN. */
    fail = (enum p11_fail) - 1;
    if (!ok(p11_backend_new(&be, &fail, err, sizeof(err), SOFTHSM_MODULE, NULL, uri, pin, 1, 1) == 0,
            "in process: the backend opens")) {
        diag("%s", err);
        return;
    }
    is_int(fail, P11_FAIL_NONE, "success: P11_FAIL_NONE");
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        struct p11_key *key = NULL;
        uint8_t want[2048], hash[32], content[200], sig[P11_SIG_MAX];
        size_t wl, sl = 0, cl, sig_len = sizeof(sig);
        const uint8_t *spki;
        char name[200];
        snprintf(name, sizeof(name), "in process: %s found", keys[i].key);
        if (!ok(p11_key_find(be, &key, err, sizeof(err), keys[i].uri) == 0, name)) {
            diag("%s", err);
            continue;
        }
        wl = harness_cert_spki(&H, keys[i].key, want, sizeof(want));
        spki = p11_key_spki(key, &sl);
        snprintf(name, sizeof(name), "in process: %s SPKI (crypto.c) equals its certificate's", keys[i].key);
        is_mem(spki, sl, want, wl, name);
        for (size_t k = 0; k < sizeof(hash); k++) {
            hash[k] = (uint8_t)(i * 31 + k);
        }
        cl = harness_content(content, 1, hash, sizeof(hash));
        snprintf(name, sizeof(name), "in process: %s signs (scheme 0x%04x)", keys[i].key, keys[i].scheme);
        is_int(p11_sign(be, sig, &sig_len, 0, key, keys[i].scheme, content, cl), 0, name);
        snprintf(name, sizeof(name), "in process: %s signature verifies against the certificate", keys[i].key);
        ok(harness_verify(&H, keys[i].key, keys[i].scheme, content, cl, sig, sig_len), name);
        content[cl - 1] ^= 1;
        snprintf(name, sizeof(name), "in process: %s signature does not verify over other content", keys[i].key);
        ok(!harness_verify(&H, keys[i].key, keys[i].scheme, content, cl, sig, sig_len), name);
        snprintf(name, sizeof(name), "in process: %s refuses a scheme of another key type", keys[i].key);
        ok(p11_key_check_scheme(be, key, err, sizeof(err), keys[i].scheme == 0x0807 ? 0x0403 : 0x0807) != 0, name);
    }
    p11_backend_free(be);
}

/*
 * A real session break (the remote token goes away) while the PIN file is changed under
 * the running signer: when the token is back, one login is tried and refused, then no
 * more (the signer's own login counter, in its log lines), HSM_ERROR until SIGHUP.
 */
static void test_remote_pin_changed(void)
{
    char p11sock[400], conf[400], pin[400], saved[300] = "", keys[1024];
    struct rpc_client c;
    pid_t server;
    uint64_t id = 500;
    int all_hsm = 1, recovered = 0;
    FILE *f;
    const char *ed = strstr(harness_std_keys, "[key ed25519]");

    snprintf(pin, sizeof(pin), "%s/user.pin", H.hsm);
    if ((f = fopen(pin, "r")) != NULL) {
        if (fgets(saved, sizeof(saved), f) == NULL) {
            saved[0] = '\0';
        }
        fclose(f);
    }
    snprintf(keys, sizeof(keys), "%.*s", (int)(ed - harness_std_keys), harness_std_keys);
    harness_p11_socket(&H, p11sock, sizeof(p11sock));
    server = harness_p11_server_start(p11sock, 0);
    snprintf(conf, sizeof(conf), "%s/remote-pin.conf", H.dir);
    if ((f = fopen(H.errlog, "w")) != NULL) {
        fclose(f);
    }
    if (!ok(saved[0] != '\0' && harness_write_config(&H, conf, "workers = 1", "module = " CLIENT_MODULE, keys) == 0 &&
                harness_start(&H, conf) == 0 && rpc_client_connect(&c, H.sock) == 0,
            "PIN change: signer started on p11-kit-client.so")) {
        harness_p11_server_stop(server);
        return;
    }
    is_int(sign_status(&c, ++id, "ecdsa-p256", 0x0403, 1), KEYLESS__V1__STATUS__OK, "PIN change: signs");
    harness_p11_server_stop(server); /* the session breaks for real */
    ok(write_pin(pin, "0000-not-the-pin\n", 0600) == 0, "PIN file changed under the running signer");
    is_int(sign_status(&c, ++id, "ecdsa-p256", 0x0403, 0), KEYLESS__V1__STATUS__HSM_ERROR, "token away: HSM_ERROR");
    server = harness_p11_server_start(p11sock, 0); /* back, but the PIN file is wrong now */
    for (int i = 0; i < 25; i++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        all_hsm &= sign_status(&c, ++id, "ecdsa-p256", 0x0403, 0) == KEYLESS__V1__STATUS__HSM_ERROR;
        nanosleep(&ts, NULL);
    }
    ok(all_hsm, "token back with a wrong PIN file: every request answers HSM_ERROR");
    is_int(harness_file_count(H.errlog, "hsm: the token refused the PIN in"), 1,
           "one login was tried and refused: one line");
    ok(harness_file_count(H.errlog, pin) >= 1 && harness_file_count(H.errlog, "CKR_PIN_INCORRECT") >= 1,
       "... naming the PIN file and the CK_RV");
    is_int(harness_file_count(H.errlog, "hsm: recovered"), 0, "no recovery with the wrong PIN");
    ok(write_pin(pin, saved, 0600) == 0, "PIN file fixed");
    kill(H.pid, SIGHUP);
    for (int i = 0; i < 50 && !recovered; i++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        recovered = sign_status(&c, ++id, "ecdsa-p256", 0x0403, 1) == KEYLESS__V1__STATUS__OK;
        if (!recovered) {
            nanosleep(&ts, NULL);
        }
    }
    ok(recovered, "after SIGHUP: logged in again, signs");
    is_int(
        harness_file_count(H.errlog, "hsm: recovered (sessions reopened, logged in, keys re-found; 3 logins so far)"),
        1, "the signer's login counter: start, the refused one, the one after SIGHUP (3 in all)");
    rpc_client_close(&c);
    is_int(harness_stop(&H), 0, "graceful stop");
    harness_p11_server_stop(server);
    unsetenv("P11_KIT_SERVER_ADDRESS");
}

int main(void)
{
    if (harness_init(&H) != 0) {
        ok(0, "token fixture");
        return kl_test_done();
    }
    test_backend_in_process();
    run_module("module = " SOFTHSM_MODULE, "softhsm2-direct");
    run_module("module = " PROXY_MODULE, "p11-kit-proxy");
    run_module("module_name = softhsm2", "p11-kit-registered-name");
    test_remote_token_removed();
    test_remote_pin_changed();
    harness_cleanup(&H);
    return kl_test_done();
}
