/*
 * metrics.h - counters for the Prometheus text endpoint.
 *
 * The counters live in one shared anonymous mapping made before the workers fork,
 * updated with atomic adds, so whichever worker answers a scrape reports the totals
 * of all of them.
 */
#ifndef KL_FE_METRICS_H
#define KL_FE_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "kl_err.h"
#include "tls/tls.h" /* enum tls_ech_status */

enum metric_id {
    METRIC_HS_OK,
    METRIC_HS_SIGNER_ERROR, /* the signer refused, timed out or was away */
    METRIC_HS_ALERT,        /* protocol failure (alert sent or received) */
    METRIC_HS_TIMEOUT,      /* handshake_timeout passed */
    METRIC_HS_CLOSED,       /* client went away during the handshake */
    METRIC_CONN_ACCEPTED,
    METRIC_CONN_ACTIVE,       /* gauge */
    METRIC_CONN_REJECTED,     /* max_connections reached */
    METRIC_BYTES_IN,          /* TLS bytes read from clients */
    METRIC_BYTES_OUT,         /* TLS bytes written to clients */
    METRIC_BACKEND_BYTES_IN,  /* plaintext bytes read from backends */
    METRIC_BACKEND_BYTES_OUT, /* plaintext bytes written to backends */
    METRIC_BACKEND_ERRORS,
    METRIC_SIGNER_RECONNECTS,
    METRIC_SIGNER_TIMEOUTS,
    METRIC_SIGNER_OVERLOAD,
    METRIC_SIGN_REQUESTS,
    METRIC_RELOADS,
    METRIC_RELOAD_FAILURES,
    METRIC_WORKER_RESTARTS, /* workers that died on their own and were restarted */
    /* Issue 11: resumption and 0-RTT. */
    METRIC_HS_RESUMED,          /* completed handshakes that resumed a ticket (no signer call) */
    METRIC_EARLY_DATA_ACCEPTED, /* handshakes whose 0-RTT data was accepted */
    METRIC_EARLY_DATA_REPLAYED, /* 0-RTT refused by the strike register (seen, full or unsure) */
    METRIC_EARLY_DATA_BYTES,    /* 0-RTT bytes passed to backends */
    METRIC_TICKET_KEY_FETCHES,  /* TicketKeys answers installed */
    METRIC_TICKET_KEY_FAILURES, /* TicketKeys requests that failed or were refused */
    /* Issue 16: what became of the ClientHellos that offered ECH (tls.h's enum tls_ech_status). */
    METRIC_ECH_ACCEPTED,       /* decrypted: the handshake ran on the inner ClientHello */
    METRIC_ECH_REJECTED,       /* a key with that config_id and suite, but HPKE open failed */
    METRIC_ECH_UNKNOWN_CONFIG, /* no such key: a stale config, or GREASE ECH */
    METRIC_COUNT
};

#define METRIC_LAT_BUCKETS 13

/* Map the shared counters. Call once, before forking workers. */
KL_MUST_CHECK int metrics_init(void);
void metrics_add(enum metric_id id, int64_t delta);
uint64_t metrics_get(enum metric_id id);
/*
 * Issue 16: count one connection's ECH outcome (TLS_ECH_NONE counts nothing), and its name
 * as the metric's result label and the access line's ech= field: none, accepted, rejected,
 * unknown_config.
 */
void metrics_ech(enum tls_ech_status status);
const char *metrics_ech_result(enum tls_ech_status status);
/* One signer round trip of us microseconds. */
void metrics_signer_latency(uint64_t us);
/* A served certificate, for keyless_frontend_certificate_not_after_seconds. */
struct metrics_cert {
    const char *name;  /* the [certificate NAME] section */
    const char *key;   /* the signer's key name */
    int64_t not_after; /* the leaf's notAfter, Unix time */
};

/*
 * Render the Prometheus text exposition into buf (certs: the current generation's, n_certs
 * of them, borrowed for the call); returns the length (truncated at cap). Names follow the
 * Prometheus conventions: every series is keyless_frontend_* (the signer's are
 * keyless_signer_*), counters end in _total, sizes in _bytes, times in _seconds, and what
 * differs only by direction or result is a label, not another name.
 */
size_t metrics_render(char *buf, size_t cap, const struct metrics_cert *certs, size_t n_certs);

#endif
