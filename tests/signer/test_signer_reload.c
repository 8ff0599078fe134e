/*
 * test_signer_reload.c - issue 14: SIGHUP reloads keyless-signer's configuration on a
 * running signer (real SoftHSM2 token), on connections that stay open:
 *   - a key added signs at once on an existing connection; a uid taken off an allow list
 *     is refused NOT_AUTHORIZED; a lowered rate limit applies;
 *   - requests in flight across a reload that drops their key all complete (signed);
 *   - an invalid new file (a syntax error; a key that is not on the token) keeps the old
 *     configuration serving, one line names the file and the field, then "reload failed;
 *     keeping the running configuration", and reloads_total{result="failed"} counts it;
 *   - a restart-only change (socket, workers) logs "needs a restart (kept OLD)" and the
 *     old value stays (the old socket serves);
 *   - [tickets] added by a reload answers TicketKeys; a changed scope applies;
 *   - each reload is an op "reload" audit record and the log still verifies; the metrics
 *     file has the reload counts, audit write errors and the last signed checkpoint.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "kl_test.h"
#include "rpc_client.h"

#define ECDSA 0x0403
#define RSA_PSS 0x0804
#define ED25519 0x0807
#define N_PIPE 120

static struct harness H;
static char metrics[400], conf[400];

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The whole of a file (NUL-terminated) into out; "" if it cannot be read. */
static const char *slurp(char *out, size_t cap, const char *path)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    out[0] = '\0';
    if (f != NULL) {
        n = fread(out, 1, cap - 1, f);
        fclose(f);
    }
    out[n] = '\0';
    return out;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

/* The value of a metrics series (a line starting with `series `), -1 if absent. */
static double metric(const char *series)
{
    static char text[1 << 16];
    size_t n = strlen(series);
    slurp(text, sizeof(text), metrics);
    for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p != NULL ? p + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            return strtod(p + n + 1, NULL);
        }
    }
    return -1;
}

/* Wait (<= 5 s) for the series to reach want in the metrics file (rewritten every 100 ms). */
static int metric_becomes(const char *series, double want)
{
    for (int i = 0; i < 100; i++) {
        if (metric(series) == want) {
            return 1;
        }
        sleep_ms(50);
    }
    return 0;
}

/* Wait (<= 10 s) until the signer's stderr holds the needle n times. */
static int log_count_becomes(const char *needle, int n)
{
    static char text[1 << 18];
    for (int i = 0; i < 200; i++) {
        if (count_of(slurp(text, sizeof(text), H.errlog), needle) >= n) {
            return 1;
        }
        sleep_ms(50);
    }
    return 0;
}

static int log_has(const char *needle)
{
    static char text[1 << 18];
    return strstr(slurp(text, sizeof(text), H.errlog), needle) != NULL;
}

/* Write the config: the signer part common to every step plus extra and the key sections. */
static int write_conf(const char *extra, const char *keys)
{
    char signer[2048];
    snprintf(signer, sizeof(signer),
             "workers = 1\nmetrics_file = %s\nmetrics_interval = 100ms\n"
             "audit_key = pkcs11:token=keyless;object=audit-signing;type=private\n"
             "audit_syslog_facility = none\n%s",
             metrics, extra);
    return harness_write_config(&H, conf, signer, NULL, keys);
}

/* SIGHUP, then wait for the n-th "reloaded" or "reload failed" line. */
static void hup(const char *line, int n)
{
    char what[80];
    ok(kill(H.pid, SIGHUP) == 0, "SIGHUP");
    snprintf(what, sizeof(what), "... the log says '%s' (#%d)", line, n);
    ok(log_count_becomes(line, n), what);
}

static char keys_a[1024], keys_b[1024], keys_c[1024];

static void make_keys(void)
{
    uid_t me = getuid();
    /* A: ecdsa-p256 (no allow list: the signer's own uid), ed25519 for us by uid. */
    snprintf(keys_a, sizeof(keys_a),
             "[key ecdsa-p256]\nuri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
             "schemes = ecdsa_secp256r1_sha256\n"
             "[key ed25519]\nuri = pkcs11:token=keyless;id=%%04;type=private\nschemes = ed25519\n"
             "allow_uids = %u\n",
             (unsigned)me);
    /* B: rsa-2048 added; ed25519 for another uid only; ecdsa-p256 limited to 1/s, burst 2. */
    snprintf(keys_b, sizeof(keys_b),
             "[key ecdsa-p256]\nuri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
             "schemes = ecdsa_secp256r1_sha256\nrate = 0.01\nburst = 2\n"
             "[key ed25519]\nuri = pkcs11:token=keyless;id=%%04;type=private\nschemes = ed25519\n"
             "allow_uids = %u\n"
             "[key rsa-2048]\nuri = pkcs11:token=keyless;object=rsa-2048;type=private\n"
             "schemes = rsa_pss_rsae_sha256\n",
             (unsigned)(me == 4242 ? 4243 : 4242));
    /* C: rsa-2048 dropped again. */
    snprintf(keys_c, sizeof(keys_c),
             "[key ecdsa-p256]\nuri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
             "schemes = ecdsa_secp256r1_sha256\nrate = 0.01\nburst = 2\n");
}

/* One TicketKeys request for the current weekly epoch: its status; the secret into out. */
static int ticket_status(struct rpc_client *c, uint64_t id, uint8_t out[32])
{
    Keyless__V1__Response *r = NULL;
    uint64_t epoch = (uint64_t)time(NULL) / 604800;
    int st = -1;
    if (rpc_client_ticket_keys(c, &r, id, 604800, &epoch, 1) != 0) {
        return -1;
    }
    if (r->id == id && r->body_case == KEYLESS__V1__RESPONSE__BODY_TICKET_KEYS) {
        st = (int)r->ticket_keys->status;
        if (out != NULL && st == KEYLESS__V1__STATUS__OK && r->ticket_keys->n_keys == 1 &&
            r->ticket_keys->keys[0]->secret.len == 32) {
            memcpy(out, r->ticket_keys->keys[0]->secret.data, 32);
        }
    }
    keyless__v1__response__free_unpacked(r, NULL);
    return st;
}

/* N_PIPE rsa-2048 requests sent at once on c, SIGHUP (to C, which drops the key) once the
 * first answer is back: every answer must still be a verified signature. */
static void in_flight(struct rpc_client *c)
{
    uint8_t hashes[N_PIPE][32], content[160];
    int got = 0, good = 0, sent = 1, hupped = 0, before = 0;

    for (int i = 0; i < N_PIPE; i++) {
        Keyless__V1__Request req = KEYLESS__V1__REQUEST__INIT;
        Keyless__V1__SignRequest sr = KEYLESS__V1__SIGN_REQUEST__INIT;
        for (int b = 0; b < 32; b++) {
            hashes[i][b] = (uint8_t)(i * 13 + b);
        }
        rpc_client_sign_request(&req, &sr, 1000 + (uint64_t)i, "rsa-2048", RSA_PSS, 1, hashes[i], 32);
        sent &= rpc_client_send(c, &req) == 0;
    }
    ok(sent, "in flight: 120 rsa-2048 requests sent at once");
    while (got < N_PIPE) {
        Keyless__V1__Response *r = NULL;
        if (rpc_client_recv(c, &r, 10000) != 0) {
            break;
        }
        got++;
        if (!hupped) {
            /* The first answer is back: the rest are queued behind the one worker. */
            ok(write_conf("", keys_c) == 0, "in flight: config C drops rsa-2048");
            ok(kill(H.pid, SIGHUP) == 0, "in flight: SIGHUP with the requests queued");
            hupped = 1;
            before = got;
        }
        uint64_t i = r->id - 1000;
        if (r->body_case == KEYLESS__V1__RESPONSE__BODY_SIGN && i < N_PIPE &&
            r->sign->status == KEYLESS__V1__STATUS__OK) {
            size_t clen = harness_content(content, 1, hashes[i], 32);
            good +=
                harness_verify(&H, "rsa-2048", RSA_PSS, content, clen, r->sign->signature.data, r->sign->signature.len);
        }
        keyless__v1__response__free_unpacked(r, NULL);
    }
    is_int(got, N_PIPE, "in flight: every request was answered");
    is_int(good, N_PIPE, "in flight: every answer is a signature that verifies (judged by the old config)");
    diag("%d answer(s) before the SIGHUP", before);
    ok(log_count_becomes("reloaded ", 2), "in flight: the reload happened");
    is_int(harness_sign_status(&H, c, 2000, "rsa-2048", RSA_PSS, 0), KEYLESS__V1__STATUS__UNKNOWN_KEY,
           "in flight: a new request for the dropped key is UNKNOWN_KEY");
}

static void test_reload(void)
{
    struct rpc_client c, c2;
    char newsock[400], extra[1600], text[4096];
    const char *ok_series = "keyless_signer_config_reloads_total{result=\"ok\"}";
    const char *failed_series = "keyless_signer_config_reloads_total{result=\"failed\"}";

    snprintf(metrics, sizeof(metrics), "%s/signer.prom", H.dir);
    snprintf(conf, sizeof(conf), "%s/reload.conf", H.dir);
    snprintf(newsock, sizeof(newsock), "%s/other.sock", H.dir);
    make_keys();

    ok(write_conf("", keys_a) == 0, "config A");
    if (!ok(harness_start(&H, conf) == 0, "signer started with config A")) {
        return;
    }
    if (!ok(rpc_client_connect(&c, H.sock) == 0, "client connected (kept open to the end)")) {
        harness_stop(&H);
        return;
    }
    is_int(harness_sign_status(&H, &c, 1, "ecdsa-p256", ECDSA, 1), KEYLESS__V1__STATUS__OK, "A: ecdsa-p256 signs");
    is_int(harness_sign_status(&H, &c, 2, "ed25519", ED25519, 1), KEYLESS__V1__STATUS__OK, "A: ed25519 signs for us");
    is_int(harness_sign_status(&H, &c, 3, "rsa-2048", RSA_PSS, 0), KEYLESS__V1__STATUS__UNKNOWN_KEY,
           "A: rsa-2048 is not configured yet");
    ok(metric_becomes(ok_series, 0) && metric(failed_series) == 0, "metrics: reloads ok 0, failed 0 at start");
    ok(metric("keyless_signer_audit_write_errors_total") == 0, "metrics: audit write errors 0");
    ok(metric("keyless_signer_audit_last_checkpoint_timestamp_seconds") > 1.7e9,
       "metrics: the start's signed checkpoint has a timestamp");

    /* B: a key added, a uid taken off, a rate lowered. */
    ok(write_conf("", keys_b) == 0, "config B");
    hup("reloaded ", 1);
    is_int(harness_sign_status(&H, &c, 10, "rsa-2048", RSA_PSS, 1), KEYLESS__V1__STATUS__OK,
           "B: the added key signs on the same connection");
    is_int(harness_sign_status(&H, &c, 11, "ed25519", ED25519, 0), KEYLESS__V1__STATUS__NOT_AUTHORIZED,
           "B: our uid off ed25519's allow list: NOT_AUTHORIZED");
    {
        int st[4];
        for (int i = 0; i < 4; i++) {
            st[i] = harness_sign_status(&H, &c, 20 + (uint64_t)i, "ecdsa-p256", ECDSA, 0);
        }
        ok(st[0] == KEYLESS__V1__STATUS__OK && st[1] == KEYLESS__V1__STATUS__OK &&
               st[2] == KEYLESS__V1__STATUS__RATE_LIMITED && st[3] == KEYLESS__V1__STATUS__RATE_LIMITED,
           "B: ecdsa-p256's new limit (burst 2, a bucket that starts full) refuses the third: RATE_LIMITED");
    }
    ok(metric_becomes(ok_series, 1), "metrics: reloads ok 1");
    ok(metric_becomes("keyless_signer_requests_total{key=\"rsa-2048\",scheme=\"rsa_pss_rsae_sha256\",status=\"ok\"}",
                      1),
       "metrics: the added key has its series");

    /* In flight across a reload that drops the key (config C). */
    if (ok(rpc_client_connect(&c2, H.sock) == 0, "second client")) {
        in_flight(&c2);
        rpc_client_close(&c2);
    }

    /* Invalid: a syntax error. */
    {
        FILE *f = fopen(conf, "a");
        ok(f != NULL && fputs("[signer]\nworkers = lots\n", f) >= 0 && fclose(f) == 0, "config with a bad value");
    }
    hup("reload failed; keeping the running configuration", 1);
    snprintf(text, sizeof(text), "%s:", conf);
    ok(log_has(text) && log_has("[signer] workers: "), "the line names the file and the field");
    ok(metric_becomes(failed_series, 1), "metrics: reloads failed 1");
    is_int(harness_sign_status(&H, &c, 30, "rsa-2048", RSA_PSS, 0), KEYLESS__V1__STATUS__UNKNOWN_KEY,
           "the running config (C) still serves: rsa-2048 unknown");
    sleep_ms(2100); /* ecdsa-p256's bucket: not refilled at 0.01/s; the new limit holds */
    is_int(harness_sign_status(&H, &c, 31, "ecdsa-p256", ECDSA, 0), KEYLESS__V1__STATUS__RATE_LIMITED,
           "... and its rate limit is still C's, its state kept (unchanged rate: not reset)");

    /* Invalid: a key that is not on the token. */
    snprintf(extra, sizeof(extra),
             "%s[key gone]\nuri = pkcs11:token=keyless;object=no-such-key;type=private\n"
             "schemes = ecdsa_secp256r1_sha256\n",
             keys_a);
    ok(write_conf("", extra) == 0, "config with a key not on the token");
    hup("reload failed; keeping the running configuration", 2);
    ok(log_has("[key gone] uri: "), "the line names the key section and its uri");
    ok(metric_becomes(failed_series, 2) && metric(ok_series) == 2, "metrics: reloads failed 2, ok still 2");
    is_int(harness_sign_status(&H, &c, 40, "ed25519", ED25519, 0), KEYLESS__V1__STATUS__UNKNOWN_KEY,
           "the running config (C) still serves: A's ed25519 did not come back");

    /* Invalid: a [key] that is the audit key (it signs checkpoints only). */
    snprintf(extra, sizeof(extra),
             "%s[key audit]\nuri = pkcs11:token=keyless;object=audit-signing;type=private\n"
             "schemes = ecdsa_secp256r1_sha256\n",
             keys_a);
    ok(write_conf("", extra) == 0, "config with the audit key as a [key]");
    hup("reload failed; keeping the running configuration", 3);
    ok(log_has("[key audit] uri: this is the audit key"), "the line names the key section");
    ok(metric_becomes(failed_series, 3), "metrics: reloads failed 3");

    /* Restart-only settings: the socket and workers (the file written by hand: the
     * harness's writer puts its own socket line first). */
    {
        FILE *f = fopen(conf, "w");
        ok(f != NULL &&
               fprintf(f,
                       "[signer]\nsocket = %s\naudit_log = %s\nallow_same_uid = yes\nworkers = 3\n"
                       "metrics_file = %s\nmetrics_interval = 100ms\n"
                       "audit_key = pkcs11:token=keyless;object=audit-signing;type=private\n"
                       "audit_syslog_facility = none\n"
                       "[hsm]\nmodule = " SOFTHSM_MODULE
                       "\npin_file = %s/user.pin\nsofthsm2_conf = %s/softhsm2.conf\n%s",
                       newsock, H.audit, metrics, H.hsm, H.hsm, keys_a) > 0 &&
               fclose(f) == 0,
           "config with another socket and workers = 3");
    }
    hup("reloaded ", 3);
    snprintf(text, sizeof(text), "[signer] socket changed; needs a restart (kept %s)", H.sock);
    ok(log_has(text), "'socket changed; needs a restart (kept OLD)'");
    ok(log_has("[signer] workers changed; needs a restart (kept 1)"), "'workers changed; needs a restart (kept 1)'");
    ok(access(newsock, F_OK) != 0, "no socket at the new path");
    is_int(harness_sign_status(&H, &c, 50, "ed25519", ED25519, 1), KEYLESS__V1__STATUS__OK,
           "the rest of the file applied: ed25519 back for us, on the old socket's connection");
    ok(metric_becomes(ok_series, 3), "metrics: reloads ok 3");

    /* [tickets] added, then its scope changed: the ticket root is found on the reload. */
    {
        uint8_t first[32] = {0};
        ok(ticket_status(&c, 60, NULL) == KEYLESS__V1__STATUS__NOT_AUTHORIZED, "no [tickets]: TicketKeys refused");
        snprintf(extra, sizeof(extra), "%s[tickets]\nscope = site-a\n", keys_a);
        ok(write_conf("", extra) == 0, "config with [tickets] scope = site-a");
        hup("reloaded ", 4);
        is_int(ticket_status(&c, 61, first), KEYLESS__V1__STATUS__OK, "[tickets] added: TicketKeys answered");
        snprintf(extra, sizeof(extra), "%s[tickets]\nscope = site-b\n", keys_a);
        ok(write_conf("", extra) == 0, "config with scope = site-b");
        hup("reloaded ", 5);
        uint8_t second[32] = {0};
        is_int(ticket_status(&c, 62, second), KEYLESS__V1__STATUS__OK, "scope changed: TicketKeys answered");
        ok(memcmp(first, second, 32) != 0, "... with another key (the new scope applies)");
    }
    rpc_client_close(&c);

    is_int(harness_stop(&H), 0, "signer stopped cleanly");
    /* Each SIGHUP rotated the log too: the records are spread over the files. */
    {
        char cmd[1600], out[4096];
        snprintf(cmd, sizeof(cmd), "cat %s.2* %s | grep -c '\"op\":\"reload\",.*\"status\":\"FAILED\"'", H.audit,
                 H.audit);
        ok(harness_run(out, sizeof(out), cmd) == 0 && atoi(out) == 3, "audit: three op reload records FAILED");
        snprintf(cmd, sizeof(cmd),
                 "cat %s.2* %s | grep '\"op\":\"reload\",.*\"status\":\"OK\"' | grep -c config_sha256", H.audit,
                 H.audit);
        ok(harness_run(out, sizeof(out), cmd) == 0 && atoi(out) == 5, "audit: five op reload records OK, with the "
                                                                      "config's digest");
        snprintf(cmd, sizeof(cmd), "%s audit-verify $(ls %s.2* | sort) %s 2>&1", H.bin, H.audit, H.audit);
        is_int(harness_run(out, sizeof(out), cmd), 0, "audit-verify: the rotated files with reload records verify");
        diag("%s", out);
    }
}

int main(void)
{
    if (harness_init(&H) != 0) {
        ok(0, "token fixture");
        return kl_test_done();
    }
    test_reload();
    harness_cleanup(&H);
    return kl_test_done();
}
