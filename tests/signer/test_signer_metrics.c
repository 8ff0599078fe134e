/* Unit tests for signer/metrics.c: the textfile's series (names, labels, a configured
 * key's zero series, an unknown key never becoming a label), histogram buckets that add
 * up, the atomic write (no .tmp left, a bad directory refused, the old file kept), the
 * writer thread rewriting the file, and hooks that do nothing before init. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "keyless.pb-c.h"
#include "kl_test.h"
#include "metrics.h"

static char out[65536];

static const char *render(void)
{
    FILE *f = fmemopen(out, sizeof(out) - 1, "w");
    memset(out, 0, sizeof(out));
    if (f == NULL || signer_metrics_render(f) != 0) {
        out[0] = '\0';
    }
    if (f != NULL) {
        fclose(f);
    }
    return out;
}

/* The value of the series whose line starts with exactly `series ` (-1 if absent). */
static double value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p != NULL ? p + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            return strtod(p + n + 1, NULL);
        }
    }
    return -1;
}

static const uint16_t ecdsa[] = {0x0403};
static const uint16_t rsa[] = {0x0804, 0x0805};

static void test_series(void)
{
    const char *names[] = {"web", "a\"b"};
    const uint16_t *schemes[] = {ecdsa, rsa};
    const size_t n_schemes[] = {1, 2};
    const char *t;

    signer_metrics_sign("web", 0x0403, KEYLESS__V1__STATUS__OK, 1000);
    signer_metrics_audit_failure();
    is_int(signer_metrics_init(names, schemes, n_schemes, 2), 0, "init with two keys");
    is_int(signer_metrics_init(names, schemes, n_schemes, 2), KL_ERR_INVALID, "init twice is refused");
    t = render();
    ok(value(t, "keyless_signer_requests_total{key=\"web\",scheme=\"ecdsa_secp256r1_sha256\",status=\"ok\"}") == 0,
       "a configured key's ok series is there at 0 (hooks before init counted nothing)");
    ok(value(t, "keyless_signer_requests_total{key=\"a\\\"b\",scheme=\"rsa_pss_rsae_sha384\",status=\"ok\"}") == 0,
       "each configured scheme has its series; a quote in a key name is escaped");
    ok(value(t, "keyless_signer_audit_failures_total") == 0, "audit failures start at 0");
    ok(strstr(t, "status=\"not_authorized\"") == NULL, "refusal series appear only when they happen");
    ok(strstr(t, "keyless_build_info{program=\"keyless-signer\",version=\"" KL_VERSION "\",commit=\"") != NULL,
       "build_info names program, version and commit");
    ok(strstr(t, "# TYPE keyless_signer_requests_total counter\n") != NULL &&
           strstr(t, "# TYPE keyless_signer_queue_depth gauge\n") != NULL &&
           strstr(t, "# TYPE keyless_signer_hsm_sign_duration_seconds histogram\n") != NULL,
       "TYPE lines");

    signer_metrics_sign("web", 0x0403, KEYLESS__V1__STATUS__OK, 300000);      /* 0.3 ms */
    signer_metrics_sign("web", 0x0403, KEYLESS__V1__STATUS__OK, 3000000000u); /* 3 s: +Inf */
    signer_metrics_sign("web", 0x0804, KEYLESS__V1__STATUS__SCHEME_NOT_ALLOWED, 1000);
    signer_metrics_sign("nosuchkey-from-a-peer", 0x0403, KEYLESS__V1__STATUS__UNKNOWN_KEY, 1000);
    signer_metrics_sign(NULL, 0, KEYLESS__V1__STATUS__BAD_REQUEST, 1000);
    signer_metrics_sign("web", 0x0403, 99, 1000); /* out of range: counted as unspecified */
    signer_metrics_hsm_sign(2000000);
    signer_metrics_audit_sync(50000);
    signer_metrics_audit_failure();
    signer_metrics_queue(3);
    signer_metrics_queue(-1);
    t = render();
    ok(value(t, "keyless_signer_requests_total{key=\"web\",scheme=\"ecdsa_secp256r1_sha256\",status=\"ok\"}") == 2,
       "two signatures counted");
    ok(value(t, "keyless_signer_requests_total{key=\"web\",scheme=\"other\",status=\"scheme_not_allowed\"}") == 1,
       "a scheme the key lacks is 'other'");
    ok(strstr(t, "nosuchkey") == NULL, "an unknown key name never becomes a label");
    ok(value(t, "keyless_signer_requests_total{key=\"(none)\",scheme=\"other\",status=\"unknown_key\"}") == 1,
       "... it counts under key=\"(none)\"");
    ok(value(t, "keyless_signer_requests_total{key=\"(none)\",scheme=\"other\",status=\"bad_request\"}") == 1,
       "a bad request counts under (none)");
    ok(value(t, "keyless_signer_requests_total{key=\"web\",scheme=\"ecdsa_secp256r1_sha256\",status=\"status_"
                "unspecified\"}") == 1,
       "a status out of range counts as unspecified");
    ok(value(t, "keyless_signer_request_duration_seconds_bucket{le=\"0.00025\"}") == 4 &&
           value(t, "keyless_signer_request_duration_seconds_bucket{le=\"0.0005\"}") == 5 &&
           value(t, "keyless_signer_request_duration_seconds_bucket{le=\"2.5\"}") == 5 &&
           value(t, "keyless_signer_request_duration_seconds_bucket{le=\"+Inf\"}") == 6 &&
           value(t, "keyless_signer_request_duration_seconds_count") == 6,
       "request histogram buckets are cumulative, +Inf equals count");
    ok(value(t, "keyless_signer_request_duration_seconds_sum") > 3.0003 &&
           value(t, "keyless_signer_request_duration_seconds_sum") < 3.0004,
       "... and the sum is in seconds");
    ok(value(t, "keyless_signer_hsm_sign_duration_seconds_bucket{le=\"0.001\"}") == 0 &&
           value(t, "keyless_signer_hsm_sign_duration_seconds_bucket{le=\"0.0025\"}") == 1,
       "C_Sign histogram");
    ok(value(t, "keyless_signer_audit_sync_duration_seconds_count") == 1, "audit sync histogram");
    ok(value(t, "keyless_signer_audit_failures_total") == 1, "audit failures counted");
    ok(value(t, "keyless_signer_queue_depth") == 2, "queue depth gauge");
    ok(value(t, "keyless_signer_hsm_recoveries_total") == 0, "no backend: 0 recoveries");
}

/* Issue 14: a reload's keys (added, dropped, schemes changed), the reload counter, and
 * moving the file. Runs after test_series (web, a"b configured; web has 2 ok counts). */
static void test_reload(void)
{
    const char *names[] = {"web", "new"};
    const uint16_t *schemes[] = {rsa, ecdsa};
    const size_t n_schemes[] = {2, 1};
    char dir[] = "/tmp/kl-smetrics-r-XXXXXX", p1[256], p2[256], bad[256];
    const char *t;

    t = render();
    ok(value(t, "keyless_signer_config_reloads_total{result=\"ok\"}") == 0 &&
           value(t, "keyless_signer_config_reloads_total{result=\"failed\"}") == 0,
       "reloads_total: both results at 0");
    ok(strstr(t, "keyless_signer_audit_write_errors_total") == NULL &&
           strstr(t, "keyless_signer_audit_last_checkpoint_timestamp_seconds") == NULL,
       "no audit log named: no audit write-error or checkpoint series");
    signer_metrics_reload(1);
    signer_metrics_reload(0);
    signer_metrics_reload(1);
    is_int(signer_metrics_set_keys(names, schemes, n_schemes, 2), 0, "set_keys: web (now RSA) and new");
    t = render();
    ok(value(t, "keyless_signer_config_reloads_total{result=\"ok\"}") == 2 &&
           value(t, "keyless_signer_config_reloads_total{result=\"failed\"}") == 1,
       "reloads_total counts by result");
    ok(value(t, "keyless_signer_requests_total{key=\"new\",scheme=\"ecdsa_secp256r1_sha256\",status=\"ok\"}") == 0,
       "an added key has its zero ok series");
    ok(value(t, "keyless_signer_requests_total{key=\"web\",scheme=\"rsa_pss_rsae_sha256\",status=\"ok\"}") == 0,
       "a key's new scheme has its zero ok series");
    ok(value(t, "keyless_signer_requests_total{key=\"web\",scheme=\"ecdsa_secp256r1_sha256\",status=\"ok\"}") == 2,
       "a scheme the key lost keeps its count (counters never go backwards)");
    ok(value(t, "keyless_signer_requests_total{key=\"a\\\"b\",scheme=\"rsa_pss_rsae_sha384\",status=\"ok\"}") == -1,
       "a dropped key's zero series are gone");
    signer_metrics_sign("a\"b", 0x0805, KEYLESS__V1__STATUS__OK, 1000);
    signer_metrics_sign("web", 0x0403, KEYLESS__V1__STATUS__SCHEME_NOT_ALLOWED, 1000);
    t = render();
    ok(value(t, "keyless_signer_requests_total{key=\"(none)\",scheme=\"other\",status=\"ok\"}") == 1,
       "a dropped key's requests count under (none)");
    ok(value(t, "keyless_signer_requests_total{key=\"web\",scheme=\"other\",status=\"scheme_not_allowed\"}") == 2,
       "a scheme the key no longer has counts as other");

    if (mkdtemp(dir) == NULL) {
        ok(0, "mkdtemp");
        return;
    }
    snprintf(p1, sizeof(p1), "%s/a.prom", dir);
    snprintf(p2, sizeof(p2), "%s/b.prom", dir);
    snprintf(bad, sizeof(bad), "%s/missing/c.prom", dir);
    is_int(signer_metrics_reconfigure(p1, 100), 0, "reconfigure while not writing: starts the writer");
    ok(access(p1, F_OK) == 0, "... the file is there at once");
    is_int(signer_metrics_reconfigure(bad, 100), KL_ERR_IO, "a path that cannot be written is refused");
    unlink(p1);
    int seen = 0;
    for (int i = 0; i < 50 && !seen; i++) {
        usleep(20000);
        seen = access(p1, F_OK) == 0;
    }
    ok(seen, "... and the old path is still written");
    is_int(signer_metrics_reconfigure(p2, 100), 0, "move the file");
    ok(access(p2, F_OK) == 0 && access(p1, F_OK) != 0, "... written at the new path, the old file removed");
    is_int(signer_metrics_reconfigure(NULL, 100), 0, "metrics_file unset: stop writing");
    unlink(p2);
    usleep(250000);
    ok(access(p2, F_OK) != 0, "... nothing is written any more");
    ok(value(render(), "keyless_signer_config_reloads_total{result=\"ok\"}") == 2, "... the counters stay");
    rmdir(dir);
}

static void test_write(void)
{
    char dir[] = "/tmp/kl-smetrics-XXXXXX", path[256], tmp[300], bad[300];
    struct stat st;
    if (mkdtemp(dir) == NULL) {
        ok(0, "mkdtemp");
        return;
    }
    snprintf(path, sizeof(path), "%s/keyless-signer.prom", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    snprintf(bad, sizeof(bad), "%s/missing/x.prom", dir);
    mode_t old_umask = umask(077); /* the signer's own umask */
    is_int(signer_metrics_write(path), 0, "write the file");
    umask(old_umask);
    ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644 && st.st_size > 100,
       "... mode 0644 whatever the umask (node_exporter reads it), not empty");
    ok(access(tmp, F_OK) != 0, "... no .tmp left behind");
    is_int(signer_metrics_write(bad), KL_ERR_IO, "a missing directory is KL_ERR_IO");
    is_int(signer_metrics_start(bad, 100, NULL), KL_ERR_IO, "start refuses a path it cannot write");

    is_int(signer_metrics_start(path, 100, NULL), 0, "start the writer every 100 ms");
    unlink(path);
    int seen = 0;
    for (int i = 0; i < 50 && !seen; i++) {
        usleep(20000);
        seen = access(path, F_OK) == 0;
    }
    ok(seen, "the writer thread rewrites the file");
    signer_metrics_stop();
    signer_metrics_sign("web", 0x0403, KEYLESS__V1__STATUS__OK, 1);
    signer_metrics_queue(1);
    ok(render()[0] != '\0' && value(out, "keyless_signer_queue_depth") == 0, "after stop, hooks are no-ops");
    signer_metrics_stop(); /* twice is fine */
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    test_series();
    test_reload();
    test_write();
    return kl_test_done();
}
