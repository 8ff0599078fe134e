/*
 * config.h - keyless-signer's INI configuration: a key table over common/kl_ini, which
 * the frontend's config uses too (same durations, booleans, error lines).
 *
 * Sections: [signer], [hsm], one [key NAME] per key, and the optional [tickets]. docs/SIGNER.md documents every
 * key; examples/signer.conf is an annotated example. Relative paths are resolved against
 * the directory of the config file. Every bad line is reported as
 *   keyless-signer: FILE:LINE: [section] key: reason
 * and loading stops with KL_ERR_CONFIG.
 */
#ifndef KL_SIGNER_CONFIG_H
#define KL_SIGNER_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include "audit.h"
#include "kl_err.h"

#define CFG_MAX_KEYS 256
#define CFG_MAX_SCHEMES 8
#define CFG_MAX_IDS 64
/* audit_rotate_bytes: 0 (off) or at least this (a file must hold more than its rotate record). */
#define CFG_MIN_ROTATE_BYTES 4096

struct cfg_key {
    char *name;
    unsigned line; /* first line of its section, for start-up errors */
    char *uri;
    uint16_t schemes[CFG_MAX_SCHEMES];
    size_t n_schemes;
    uid_t uids[CFG_MAX_IDS];
    size_t n_uids;
    gid_t gids[CFG_MAX_IDS];
    size_t n_gids;
    double rate, burst;
    /* contexts: which CertificateVerify contexts the key signs (CFG_CONTEXT_* bits);
     * server only unless the client context is listed (issue 13 §5) */
    unsigned contexts;
    unsigned contexts_line;
};

/*
 * [tickets] (issue 11): session ticket keys derived in the token from the secret key
 * labelled `key`, under `scope`. Optional: present is 0 when the section is absent, and
 * then TicketKeys is refused.
 */
#define CFG_TICKETS_DEFAULT_KEY "ticket-root"
#define CFG_TICKETS_DEFAULT_ACCEPT 4
#define CFG_TICKETS_MAX_ACCEPT 1000

struct cfg_tickets {
    int present;
    unsigned line;           /* its section header, for start-up errors */
    char *key;               /* CKA_LABEL of the root; CFG_TICKETS_DEFAULT_KEY unless set */
    char *scope;             /* the site name, part of every derivation (required) */
    unsigned accept_epochs;  /* how many epochs before the current one may be asked */
    uid_t uids[CFG_MAX_IDS]; /* who may ask; both empty: the signer's own uid, as for a key */
    size_t n_uids;
    gid_t gids[CFG_MAX_IDS];
    size_t n_gids;
    double rate, burst; /* requests per second over all peers (0: unlimited), as for a key */
    int allow_same_uid; /* [signer] allow_same_uid, copied here by the config check */
};
#define CFG_CONTEXT_SERVER 0x1u
#define CFG_CONTEXT_CLIENT 0x2u
/* sandbox_allow: at most this many extra syscall names */
#define CFG_MAX_SANDBOX_ALLOW 64

struct signer_config {
    char *path;
    /* [signer] */
    char *socket_path;
    gid_t socket_gid;
    int has_socket_gid;
    unsigned workers;
    unsigned queue_max;
    unsigned max_connections;
    char *audit_log;
    enum audit_sync audit_sync;
    unsigned audit_group_ms;
    int audit_repair_torn;       /* audit_repair_torn = yes: AUDIT_OPEN_REPAIR_TORN */
    int audit_zero_tail;         /* audit_zero_tail = no: AUDIT_OPEN_NO_ZERO_TAIL (default yes) */
    uint64_t audit_rotate_bytes; /* rotate when the file reaches this size; 0 = never */
    /* audit checkpoints (issue 13; docs/AUDIT.md) */
    char *audit_key;             /* pkcs11: URI of the audit-signing key; NULL: unsigned checkpoints */
    unsigned audit_cp_records;   /* a checkpoint at least every this many records */
    unsigned audit_cp_ms;        /* and this long after a record */
    unsigned audit_heartbeat_ms; /* and this often when idle */
    int audit_syslog_facility;   /* LOG_AUTHPRIV etc., -1 for none */
    char *audit_anchor_file;     /* each checkpoint also appended here, or NULL */
    char *audit_anchor_command;  /* and given to this command (sh -c, the line as $1), or NULL */
    char *audit_host;            /* host id in checkpoints; NULL: the host name */
    double audit_refusal_rate;   /* refusals, pings, listings audited per second and peer uid (0: all) */
    double audit_refusal_burst;  /* and their burst; the rest are counted in one record per uid */
    double rate_per_peer, burst_per_peer;
    /* Peers (issue 13 §2, §5). allow_same_uid: a peer running as the signer's own uid is
     * refused unless this is set on purpose (then a key may also go without allow lists:
     * it is for the signer's own uid only). */
    int allow_same_uid;
    uint32_t idle_timeout_ms;  /* a connection with nothing in flight is closed after this */
    uint32_t frame_timeout_ms; /* a frame begun must be whole within this */
    unsigned max_connections_per_uid;
    /* verify_ecdsa: check ECDSA signatures before release too (Ed25519 and RSA always) */
    int verify_ecdsa;
    /* sandbox = no turns the seccomp filter off; sandbox_allow adds syscalls by name */
    int sandbox;
    char *sandbox_allow[CFG_MAX_SANDBOX_ALLOW];
    size_t n_sandbox_allow;
    /* user/group: drop root to these once the token, socket and audit log are open */
    char *user_name;
    uid_t run_uid;
    gid_t run_gid;
    int has_user, has_group;
    unsigned user_line, group_line;
    /* logs and metrics (issue 14) */
    int log_level;                /* enum log_level (common/log.h), default info */
    int log_format;               /* enum log_format, default text */
    char *metrics_file;           /* Prometheus textfile, rewritten atomically; NULL = none */
    unsigned metrics_interval_ms; /* how often it is rewritten */
    /* [hsm] */
    unsigned hsm_line;
    char *module;
    char *module_name;
    char *softhsm2_conf;
    char *pin_file;
    int strict_keys; /* strict_keys = yes: an extractable or decrypting key is an error, not a warning */
    /* module_instances (issue 15): instances of the module, the signer's sessions spread over
     * them; more than one needs module = PATH of a module with one instance per C_GetFunctionList */
    unsigned module_instances;
    /* [key NAME] */
    struct cfg_key keys[CFG_MAX_KEYS];
    size_t n_keys;
    /* [tickets] */
    struct cfg_tickets tickets;
};

/*
 * Parse path into a new *cfg_p. Errors are printed to err_out (one line each, the
 * first one only) and KL_ERR_CONFIG or KL_ERR_NO_MEMORY is returned.
 */
KL_MUST_CHECK int cfg_load(struct signer_config **cfg_p, FILE *err_out, const char *path);

/* Free a config from cfg_load(); NULL is fine. */
void cfg_free(struct signer_config *cfg);

/*
 * Create the missing directories above path (the last component is not created), each
 * with mode. 0, or KL_ERR_IO with errno set.
 */
KL_MUST_CHECK int cfg_mkdir_parents(const char *path, mode_t mode);

/*
 * A reload (issue 14): the settings that cannot change without a restart (socket,
 * socket_group, workers, user, group, every audit_* setting but audit_rotate_bytes,
 * verify_ecdsa, sandbox, sandbox_allow, and [hsm] module, module_name, softhsm2_conf,
 * pin_file, module_instances) are set in next back to their running value in cur, with one warning line
 * each: "FILE: [section] key changed; needs a restart (kept OLD)". 0 or KL_ERR_NO_MEMORY.
 */
KL_MUST_CHECK int cfg_keep_restart_only(struct signer_config *next, const struct signer_config *cur);

/* The key named name, or NULL. */
const struct cfg_key *cfg_key_find(const struct signer_config *cfg, const char *name);

#endif
