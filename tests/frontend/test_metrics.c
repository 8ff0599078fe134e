/*
 * test_metrics.c - frontend/metrics.c's ECH counter (issue 16): each outcome counts under its
 * own result label, TLS_ECH_NONE counts nothing, the names are the access line's ech= words,
 * and the rendered family has its HELP (saying where GREASE goes), TYPE and three series.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kl_test.h"
#include "metrics.h"

static char out[65536];

static long long series(const char *result)
{
    char want[128];
    snprintf(want, sizeof(want), "\nkeyless_frontend_ech_total{result=\"%s\"} ", result);
    const char *p = strstr(out, want);
    return p != NULL ? strtoll(p + strlen(want), NULL, 10) : -1;
}

int main(void)
{
    ok(strcmp(metrics_ech_result(TLS_ECH_NONE), "none") == 0 &&
           strcmp(metrics_ech_result(TLS_ECH_ACCEPTED), "accepted") == 0 &&
           strcmp(metrics_ech_result(TLS_ECH_REJECTED), "rejected") == 0 &&
           strcmp(metrics_ech_result(TLS_ECH_UNKNOWN_CONFIG), "unknown_config") == 0,
       "result names");
    ok(strcmp(metrics_ech_result((enum tls_ech_status)42), "none") == 0, "an unknown status reads none");

    size_t len = metrics_render(out, sizeof(out), NULL, 0);
    ok(len > 0 && len < sizeof(out) - 1, "render fits");
    is_int(series("accepted"), 0, "accepted starts at 0");
    is_int(series("rejected"), 0, "rejected starts at 0");
    is_int(series("unknown_config"), 0, "unknown_config starts at 0");
    ok(strstr(out, "# TYPE keyless_frontend_ech_total counter\n") != NULL, "TYPE counter");
    ok(strstr(out, "# HELP keyless_frontend_ech_total ") != NULL && strstr(out, "GREASE ECH") != NULL,
       "HELP names GREASE under unknown_config");
    is_int(series("none"), -1, "no series for none");

    metrics_ech(TLS_ECH_ACCEPTED);
    metrics_ech(TLS_ECH_ACCEPTED);
    metrics_ech(TLS_ECH_REJECTED);
    metrics_ech(TLS_ECH_UNKNOWN_CONFIG);
    metrics_ech(TLS_ECH_UNKNOWN_CONFIG);
    metrics_ech(TLS_ECH_UNKNOWN_CONFIG);
    metrics_ech(TLS_ECH_NONE);
    metrics_ech((enum tls_ech_status)42);
    metrics_render(out, sizeof(out), NULL, 0);
    is_int(series("accepted"), 2, "two accepted");
    is_int(series("rejected"), 1, "one rejected");
    is_int(series("unknown_config"), 3, "three unknown_config");
    is_int((long long)(metrics_get(METRIC_ECH_ACCEPTED) + metrics_get(METRIC_ECH_REJECTED) +
                       metrics_get(METRIC_ECH_UNKNOWN_CONFIG)),
           6, "NONE and an unknown status counted nothing");
    /* The other families are still there, after and around the new one. */
    ok(strstr(out, "keyless_frontend_handshakes_total{result=\"ok\"}") != NULL &&
           strstr(out, "keyless_frontend_signer_duration_seconds_count") != NULL,
       "the other families still render");
    return kl_test_done();
}
