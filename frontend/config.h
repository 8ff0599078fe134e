/*
 * config.h - keyless-frontend's INI configuration: a key table over common/kl_ini,
 * which the signer's config uses too (same durations, booleans, error lines).
 *
 * Every error is one line, "FILE:LINE: [section] key: reason" (main prefixes "keyless-frontend: "),
 * written into the caller's buffer; main prints it and exits 2. Relative paths are
 * resolved against the directory of the config file. docs/FRONTEND.md documents
 * every key; examples/frontend.conf is an annotated example.
 */
#ifndef KL_FE_CONFIG_H
#define KL_FE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "kl_err.h"
#include "tls_ids.h" /* TLS_MAX_GROUPS */
#include "tls/tls.h" /* struct tls_ech_key, enum tls_ech_key_error */

#define CONFIG_MAX_LISTENERS 16
#define CONFIG_MAX_CERTS 16
#define CONFIG_MAX_SIGNERS 8
#define CONFIG_MAX_ALPN 8
#define CONFIG_ERR_LEN 512
/* max_early_data's bound: early bytes wait in the backend buffer until the handshake ends. */
#define CONFIG_MAX_EARLY_DATA 49152

struct config_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[128]; /* as written, for logs */
};

enum config_backend_connect {
    CONFIG_BACKEND_CONNECT_HANDSHAKE = 0,
    CONFIG_BACKEND_CONNECT_DATA = 1,
};

struct config_listener {
    char *name;
    int line;
    struct config_addr listen;
    struct config_addr backend; /* AF_INET, AF_INET6 or AF_UNIX */
    int proxy_protocol;         /* send a PROXY protocol v2 header to the backend */
    uint32_t backend_connect_timeout_ms;
    /*
     * When the backend is connected (enum config_backend_connect): right after the handshake
     * (handshake, the default: a server-speaks-first protocol such as SMTP or IMAP gets its
     * banner out before the client says anything), or when the first application byte (or
     * accepted 0-RTT data) arrives (data, as an HTTP proxy does: a client that only handshakes
     * and closes costs no backend connection).
     */
    int backend_connect;
    /* mTLS (RFC 8446 4.3.2): tls.h's enum tls_client_auth (0 none, 1 optional, 2 required). */
    int client_auth;
    char *client_ca; /* PEM CA bundle; required unless client_auth is none */
    int client_ca_line;
    char *client_crl; /* PEM CRLs, or NULL: no revocation check */
    int client_crl_line;
    unsigned client_verify_depth; /* intermediate CAs allowed between leaf and anchor (default 4) */
    /* Session tickets (RFC 8446 4.6.1) and 0-RTT (4.2.10): frontend/tickets.h, antireplay.h. */
    unsigned tickets;            /* NewSessionTickets per full handshake (default 2; 0: none) */
    uint32_t ticket_lifetime_ms; /* default 2 h, at most 7 days */
    int ticket_lifetime_line;
    int psk_ke;              /* accept psk_ke (resumption without (EC)DHE): default no */
    uint32_t max_early_data; /* 0-RTT bytes accepted (0: off); needs proxy_protocol */
    int max_early_data_line;
    /*
     * ECH (issue 16): ech_keys = FILE[, FILE...], each loaded and checked while the file is
     * parsed (so --check-config and a SIGHUP reload see them). Every key is tried by config_id;
     * retry_configs (the ECHConfigList of the first key) is what a client that used a stale
     * config is told to use. The keys are secrets: config_free() wipes them.
     */
    char *ech_key_paths[TLS_ECH_KEYS_MAX];
    struct tls_ech_key *ech_keys; /* TLS_ECH_KEYS_MAX entries, n_ech_keys used; NULL when none */
    size_t n_ech_keys;
    int ech_keys_line;
    uint8_t ech_retry_configs[2 + TLS_ECH_MAX_CONFIG_LEN];
    size_t ech_retry_configs_len;
};

struct config_cert {
    char *name;
    int line;
    char *chain_path; /* PEM: leaf first, then intermediates */
    int chain_line;
    char *key_name; /* the signer's name for the private key */
    int key_line;
};

/* [frontend] ticket_keys: where the ticket keys come from (frontend/tickets.h). */
enum config_ticket_keys {
    CONFIG_TICKET_KEYS_HSM = 0, /* the default: the signer derives them in the HSM (TicketKeys) */
    CONFIG_TICKET_KEYS_FILE,    /* file:PATH, 48-byte keys, nginx style */
    CONFIG_TICKET_KEYS_OFF,     /* no tickets, every PSK ignored */
};

#define CONFIG_HOST_ID_LEN 16 /* tls.h's TLS_HOST_ID_LEN */
#define CONFIG_MAX_SANDBOX_ALLOW 64

struct config {
    char *path;
    /* [frontend] */
    unsigned workers;
    int log_level;
    int log_format; /* enum log_format (common/log.h), default text */
    size_t max_connections;
    uint32_t handshake_timeout_ms;
    uint32_t idle_timeout_ms;
    uint32_t drain_timeout_ms;
    struct config_addr metrics; /* metrics.len == 0: no endpoint */
    char *keylog_file;          /* NULL unless configured */
    int ticket_keys;            /* enum config_ticket_keys */
    char *ticket_key_file;      /* CONFIG_TICKET_KEYS_FILE: the key file */
    int ticket_keys_line;
    uint32_t ticket_rotation_ms; /* the epoch length (default 1 h) */
    int ticket_rotation_line;
    uint8_t host_id[CONFIG_HOST_ID_LEN]; /* tickets carry it: 0-RTT is accepted only on this host */
    /* user/group (issue 13 §2): started as root, the frontend becomes this user before it
     * talks to the signer; workers drop the last capability once their listeners are bound */
    char *user_name;
    uint32_t run_uid, run_gid;
    int has_user, has_group;
    unsigned user_line, group_line;
    /* sandbox = no turns the seccomp filter off; sandbox_allow adds syscalls by name */
    int sandbox;
    char *sandbox_allow[CONFIG_MAX_SANDBOX_ALLOW];
    size_t n_sandbox_allow;
    /* [signer] */
    char *signer_sockets[CONFIG_MAX_SIGNERS];
    size_t n_signer_sockets;
    int signer_line;
    uint32_t signer_timeout_ms;
    size_t max_pending_sign;
    uint32_t signer_startup_wait_ms;
    /* [tls] */
    uint16_t suites[3];
    size_t n_suites;
    uint16_t groups[TLS_MAX_GROUPS];
    size_t n_groups;
    char *alpn[CONFIG_MAX_ALPN];
    size_t n_alpn;
    /* [cert NAME] and [listener NAME] */
    struct config_cert certs[CONFIG_MAX_CERTS];
    size_t n_certs;
    struct config_listener listeners[CONFIG_MAX_LISTENERS];
    size_t n_listeners;
};

/*
 * Parse path into a new *cfg_p. On failure returns KL_ERR_CONFIG with the one-line
 * message in err (CONFIG_ERR_LEN bytes).
 */
KL_MUST_CHECK int config_load(struct config **cfg_p, char *err, const char *path);
void config_free(struct config *cfg);

/* Why an ECH key file did not load, in the words operators read (config errors and keyless-ech). */
const char *config_ech_key_why(enum tls_ech_key_error why);

/* Parse "host:port", "[v6]:port" or "unix:/path" (unix only if allow_unix). */
KL_MUST_CHECK int config_parse_addr(struct config_addr *a, const char *s, int allow_unix);

/*
 * The default host_id: /etc/machine-id, else the host name, folded with a fixed label into
 * CONFIG_HOST_ID_LEN bytes (config_host_id_fold). Also what `host_id = TEXT` does with TEXT.
 */
void config_host_id_default(uint8_t out[CONFIG_HOST_ID_LEN]);
/*
 * Fold text into out: two FNV-1a 64 passes with distinct seeds under a fixed label. Not a
 * cryptographic hash (no crypto outside the engine, HACKING.md: one dependency, one file):
 * the id is sealed inside tickets and never logged, and only has to be stable and distinct
 * per host; the fold keeps the raw machine-id out of the process's ticket plaintext.
 */
void config_host_id_fold(uint8_t out[CONFIG_HOST_ID_LEN], const char *text);

/*
 * The ticket key epochs a listener set needs besides the current one: ceil(the longest
 * ticket_lifetime / ticket_rotation), since a ticket sealed late in an epoch stays valid
 * for its lifetime after that epoch ended.
 */
unsigned config_ticket_past_epochs(const struct config *cfg);

/* 1 if a and b listen on the same addresses in the same order (a reload cannot change them). */
int config_same_listeners(const struct config *a, const struct config *b);

#endif
