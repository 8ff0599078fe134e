/*
 * metrics.h - the signer's Prometheus metrics, written as a textfile for node_exporter's
 * textfile collector: the signer opens no network port (docs/DEPLOYMENT.md).
 *
 * The counters are process-wide (one signer per process) and updated with relaxed atomic
 * adds from any thread: the I/O thread, the signing workers and the audit waiter. The hooks
 * do nothing before signer_metrics_init(), so unit tests of other modules need no setup.
 * A writer thread renders them every interval into FILE.tmp and renames it over FILE, so
 * the collector never reads half a file.
 *
 * Series (names follow the Prometheus conventions: base units, _total, labels):
 *   keyless_signer_requests_total{key,scheme,status}  sign answers (signed or refused)
 *   keyless_signer_request_duration_seconds            histogram, request received -> answered
 *   keyless_signer_hsm_sign_duration_seconds           histogram, one C_Sign (and its check)
 *   keyless_signer_queue_depth                         gauge, sign jobs not yet retired
 *   keyless_signer_audit_sync_duration_seconds         histogram, a batch's wait for durability
 *   keyless_signer_audit_failures_total                audit records that could not be written
 *                                                      or made durable (answers withheld)
 *   keyless_signer_hsm_recoveries_total                HSM re-initialisations and re-logins
 *   keyless_signer_start_time_seconds, keyless_signer_last_write_timestamp_seconds
 *   keyless_build_info{program,version,commit} 1
 * key is a configured key name or "(none)" (an unknown name is never a label: peers choose
 * it); scheme is the scheme's name or "other"; status is the RPC status in lower case.
 */
#ifndef KL_SIGNER_METRICS_H
#define KL_SIGNER_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "kl_err.h"

struct p11_backend;

/*
 * Allocate the counters for n_keys keys. names[i] and schemes[i] (n_schemes[i] code points)
 * are borrowed and must outlive the metrics (the signer's config does). Once, before any
 * thread starts. 0, KL_ERR_INVALID (called twice), or KL_ERR_NO_MEMORY.
 */
KL_MUST_CHECK int signer_metrics_init(const char *const *names, const uint16_t *const *schemes, const size_t *n_schemes,
                                      size_t n_keys);

/*
 * Start the writer thread: render into path every interval_ms. be (borrowed, may be NULL)
 * gives the HSM recovery count. The first file is written before this returns, so a bad
 * directory is reported at start: 0, or KL_ERR_IO (errno set; nothing is running).
 */
KL_MUST_CHECK int signer_metrics_start(const char *path, unsigned interval_ms, struct p11_backend *be);

/* Stop the writer (writing the file a last time) and free everything; safe if never started. */
void signer_metrics_stop(void);

/* A sign request answered. key: its name as requested (NULL or unknown: "(none)"); status:
 * a Keyless__V1__Status value; ns: since the request was read. */
void signer_metrics_sign(const char *key, uint16_t scheme, int status, uint64_t ns);
/* One C_Sign of ns nanoseconds. */
void signer_metrics_hsm_sign(uint64_t ns);
/* One wait for audit durability of ns nanoseconds. */
void signer_metrics_audit_sync(uint64_t ns);
/* An audit record that could not be appended or made durable. */
void signer_metrics_audit_failure(void);
/* Sign jobs in flight changed by delta. */
void signer_metrics_queue(int delta);

/* Render every series in the text exposition format. 0, or KL_ERR_IO if out failed. */
KL_MUST_CHECK int signer_metrics_render(FILE *out);

/* Write the file once, atomically (path.tmp, then rename). 0, or KL_ERR_IO (errno set). */
KL_MUST_CHECK int signer_metrics_write(const char *path);

#endif
