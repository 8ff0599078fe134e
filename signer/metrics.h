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
 *   keyless_signer_config_reloads_total{result="ok|failed"}  SIGHUP reloads (issue 14)
 *   keyless_signer_audit_write_errors_total            appends rolled back (a full disk), once
 *                                                      signer_metrics_set_audit() named the log
 *   keyless_signer_audit_last_checkpoint_timestamp_seconds  the last signed checkpoint (Unix
 *                                                      time, 0 before the first); only with audit_key
 *   keyless_build_info{program,version,commit} 1
 * key is a configured key name or "(none)" (an unknown name is never a label: peers choose
 * it); scheme is the scheme's name or "other" (not one of the key's schemes); status is the
 * RPC status in lower case. A key dropped by a reload keeps its series (counters never go
 * backwards) without new counts; a key added gets its zero ok series.
 */
#ifndef KL_SIGNER_METRICS_H
#define KL_SIGNER_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "kl_err.h"

struct p11_backend;
struct audit_log;

/*
 * Allocate the counters and name the n_keys configured keys (names[i] with the n_schemes[i]
 * code points schemes[i]; copied). Once, before any thread starts. 0, KL_ERR_INVALID
 * (called twice), KL_ERR_NO_MEMORY, or KL_ERR_OVERFLOW as signer_metrics_set_keys().
 */
KL_MUST_CHECK int signer_metrics_init(const char *const *names, const uint16_t *const *schemes, const size_t *n_schemes,
                                      size_t n_keys);

/*
 * A reload (issue 14): the keys configured now, as for init (copied). Keys not named any
 * more keep their counters but count nothing new. From one thread at a time (the I/O
 * thread); the hooks may run meanwhile. 0; KL_ERR_INVALID before init; KL_ERR_OVERFLOW if
 * more than 1024 key names were seen over the process's life (the rest count under "(none)").
 */
KL_MUST_CHECK int signer_metrics_set_keys(const char *const *names, const uint16_t *const *schemes,
                                          const size_t *n_schemes, size_t n_keys);

/*
 * A reload (issue 14): write to path every interval_ms from now on (path NULL: stop
 * writing; the counters stay). A new path is written once before this returns and the old
 * file is removed. 0, or KL_ERR_IO (errno set) / KL_ERR_NO_MEMORY with the old settings kept.
 */
KL_MUST_CHECK int signer_metrics_reconfigure(const char *path, unsigned interval_ms);

/* A configuration reload that succeeded (ok 1) or kept the running configuration (ok 0). */
void signer_metrics_reload(int ok);

/* The backend (borrowed) for the HSM recovery count, also when the writer is started
 * later by a reload (signer_metrics_reconfigure). */
void signer_metrics_set_backend(struct p11_backend *be);

/* The audit log (borrowed; NULL: none) for the write-error count, and whether its
 * checkpoints are signed (then the last checkpoint's time is exported). */
void signer_metrics_set_audit(struct audit_log *audit, int signed_checkpoints);

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
