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
};

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
    uint64_t audit_rotate_bytes; /* rotate when the file reaches this size; 0 = never */
    double rate_per_peer, burst_per_peer;
    /* user/group: drop root to these once the token, socket and audit log are open */
    char *user_name;
    uid_t run_uid;
    gid_t run_gid;
    int has_user, has_group;
    unsigned user_line, group_line;
    /* [hsm] */
    unsigned hsm_line;
    char *module;
    char *module_name;
    char *softhsm2_conf;
    char *pin_file;
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

/* The key named name, or NULL. */
const struct cfg_key *cfg_key_find(const struct signer_config *cfg, const char *name);

#endif
