/*
 * test_signer_p11.c - the same token and keys through different PKCS#11 paths, and
 * token trouble with recovery:
 *  - SoftHSM2's module through p11-kit's proxy (p11-kit-proxy.so) and by its p11-kit
 *    registered name (module_name = softhsm2): same SPKI, signatures verify;
 *  - a remote token: `p11-kit server` exports the SoftHSM2 token, the signer uses
 *    p11-kit-client.so. Killing the server mid-run is a real token removal: the
 *    signer answers HSM_ERROR (and audits it), keeps running, and once the server is
 *    back it re-initialises the module, logs in again, re-finds its keys and signs.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "kl_test.h"
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

int main(void)
{
    if (harness_init(&H) != 0) {
        ok(0, "token fixture");
        return kl_test_done();
    }
    run_module("module = " SOFTHSM_MODULE, "softhsm2-direct");
    run_module("module = " PROXY_MODULE, "p11-kit-proxy");
    run_module("module_name = softhsm2", "p11-kit-registered-name");
    test_remote_token_removed();
    harness_cleanup(&H);
    return kl_test_done();
}
