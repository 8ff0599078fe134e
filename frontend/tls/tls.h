/*
 * tls.h - the sans-I/O TLS 1.3 server engine (RFC 8446): the frontend's public API.
 *
 * The engine does no I/O, owns no sockets and never blocks. The caller (the event loop,
 * a unit test, a fuzzer) feeds it received bytes and sends whatever it appends to an
 * output buffer. When the handshake needs the CertificateVerify signature the engine
 * stops with KL_ERR_ASYNC; the caller reads the request with tls_conn_sign_request(),
 * asks the signer, and resumes the engine with tls_conn_sign_done().
 *
 * Errors follow kl_err.h. When a call returns an error other than KL_ERR_ASYNC or
 * KL_ERR_WANT_READ the connection is dead: the alert RFC 8446 names has already been
 * appended to out (when the keys allow it), and every later call returns the same error.
 * KL_ERR_CLOSED means the peer sent close_notify.
 *
 * Ownership: a tls_config and everything it points to is borrowed by every connection
 * made from it and must outlive them (the frontend reference-counts it across SIGHUP).
 * tls_conn_free() wipes every secret the connection held.
 */
#ifndef KL_TLS_H
#define KL_TLS_H

#include <stddef.h>
#include <stdint.h>
#include "kl_buf.h"
#include "kl_err.h"
#include "tls_ids.h" /* the code points: TLS_AES_*, TLS_GROUP_*, TLS_SIG_* */

#define TLS_MAX_CHAIN 8
#define TLS_MAX_SCHEMES 8
#define TLS_MAX_NAMES 16
#define TLS_MAX_ALPN 8
#define TLS_MAX_NAME_LEN 256 /* a DNS name, NUL included */

/* One certificate the server can present. The private key stays in the signer under key_name. */
struct tls_cert {
    const char *key_name;                /* the signer's name for the key */
    const uint8_t *chain[TLS_MAX_CHAIN]; /* DER certificates, leaf first */
    size_t chain_len[TLS_MAX_CHAIN];
    size_t n_chain;
    uint16_t schemes[TLS_MAX_SCHEMES]; /* schemes this key may sign, in preference order */
    size_t n_schemes;
    const char *names[TLS_MAX_NAMES]; /* DNS names (SAN) it serves, "*.example.com" allowed */
    size_t n_names;
};

/* Client certificates (RFC 8446 4.3.2): whether a listener sends CertificateRequest and what it accepts. */
enum tls_client_auth {
    TLS_CLIENT_AUTH_NONE = 0, /* no CertificateRequest */
    TLS_CLIENT_AUTH_OPTIONAL, /* request one; a client without one still connects (no identity) */
    TLS_CLIENT_AUTH_REQUIRED, /* request one; an empty Certificate is certificate_required */
};

/* The CA bundle (and CRLs) client certificates are checked against: tls_client_ca_load(). */
struct tls_client_ca;

/* ---- session tickets and 0-RTT (RFC 8446 2.2, 2.3, 4.2.9-11, 4.6.1, 8) ---- */

#define TLS_TICKET_SECRET_LEN 32        /* one epoch's ticket secret; the engine derives its AEAD key from it */
#define TLS_TICKET_KEY_ID_LEN 8         /* names the key (source, scope, epoch) in clear in every ticket */
#define TLS_TICKET_KEYS_MAX 8           /* current + previous epochs held at once */
#define TLS_HOST_ID_LEN 16              /* tickets carry the issuing host; 0-RTT only there */
#define TLS_TICKET_LIFETIME_MAX 604800u /* RFC 8446 4.6.1: at most 7 days */

/* One epoch's ticket key, as the frontend obtains it (derived in the HSM, or from a key file). */
struct tls_ticket_key {
    uint8_t key_id[TLS_TICKET_KEY_ID_LEN];
    uint64_t epoch;
    uint8_t secret[TLS_TICKET_SECRET_LEN];
};

/* A consistent snapshot of the keys: tickets are sealed with keys[issue]; any of keys[0..n) opens one. */
struct tls_ticket_keys {
    size_t n;
    size_t issue;
    struct tls_ticket_key keys[TLS_TICKET_KEYS_MAX];
};

/*
 * Where the engine gets ticket keys: fill *out (the engine wipes it after use) and return 0;
 * a negative kl_err when there are none yet (then no ticket is issued and every offered PSK is
 * ignored: full handshake). Called at most once per ClientHello and once per ticket issue.
 */
typedef int (*tls_ticket_keys_fn)(void *arg, struct tls_ticket_keys *out);

/*
 * 0-RTT anti-replay (RFC 8446 8): called with the first identity's binder when early data would
 * be accepted. Return 1 when this binder was never seen before (and remember it until
 * expires_ms, a CLOCK_REALTIME time in ms), 0 when it was seen, or when the register cannot
 * tell (full, unavailable): the engine then rejects the early data (fails closed) and the
 * handshake goes on in 1-RTT.
 */
typedef int (*tls_replay_fn)(void *arg, const uint8_t *binder, size_t binder_len, uint64_t expires_ms);

/* Per-listener ticket settings, inside struct tls_config. All zero: no tickets, PSKs ignored. */
struct tls_ticket_config {
    tls_ticket_keys_fn keys; /* NULL: tickets off */
    void *keys_arg;
    unsigned count;          /* NewSessionTickets sent after the handshake (0: none) */
    uint32_t lifetime;       /* seconds, 1..TLS_TICKET_LIFETIME_MAX */
    int allow_psk_ke;        /* accept psk_ke (no (EC)DHE, no forward secrecy); psk_dhe_ke always */
    uint32_t max_early_data; /* 0: no 0-RTT */
    tls_replay_fn replay;    /* required when max_early_data > 0 */
    void *replay_arg;
    uint8_t host_id[TLS_HOST_ID_LEN];
};

/* ---- Encrypted Client Hello (draft-ietf-tls-esni, wire version 0xfe0d), shared mode ---- */

#define TLS_ECH_VERSION 0xfe0d     /* ECHConfig.version and the extension code point */
#define TLS_ECH_MAX_CONFIG_LEN 512 /* one encoded ECHConfig (version ‖ length ‖ contents) */
#define TLS_ECH_MAX_SUITES 8       /* HPKE (kdf, aead) pairs in one ECHConfig */
#define TLS_ECH_KEYS_MAX 16        /* keys one listener tries (rotation) */
#define TLS_ECH_MAX_LIST_LEN (2 + TLS_ECH_KEYS_MAX * TLS_ECH_MAX_CONFIG_LEN) /* an ECHConfigList */

struct tls_ech_suite {
    uint16_t kdf_id;  /* HPKE KDF: 0x0001 HKDF-SHA256 */
    uint16_t aead_id; /* HPKE AEAD: 0x0001 AES-128-GCM, 0x0002 AES-256-GCM, 0x0003 ChaCha20-Poly1305 */
};

/*
 * One ECH key: an ECHConfig (as published in DNS) and its HPKE private key. Loaded from a key
 * file by tls_ech_key_load(), or made by tls_ech_key_generate(). Holds a secret: dispose it.
 */
struct tls_ech_key {
    uint8_t config_id;
    uint16_t kem_id;                                 /* 0x0020 DHKEM(X25519, HKDF-SHA256), the only KEM supported */
    uint8_t private_key[32];                         /* X25519 skR */
    uint8_t public_key[32];                          /* X25519 pkR, as in the ECHConfig */
    struct tls_ech_suite suites[TLS_ECH_MAX_SUITES]; /* the config's suites we support, its order */
    size_t n_suites;
    uint8_t maximum_name_length;
    char public_name[TLS_MAX_NAME_LEN];
    /* The whole ECHConfig: version ‖ length ‖ contents. HPKE info is "tls ech" ‖ 0x00 ‖ config. */
    uint8_t config[TLS_ECH_MAX_CONFIG_LEN];
    size_t config_len;
};

/*
 * A listener's ECH keys, inside struct tls_config. n_keys == 0: ECH off (the extension is ignored
 * like any unknown one). Keys are tried by config_id (several may share one); retry_configs is the
 * ECHConfigList (with its 2-byte length) sent in EncryptedExtensions when the server rejects ECH:
 * the configs the operator publishes, normally tls_ech_config_list() of keys[0].
 */
struct tls_ech_config {
    const struct tls_ech_key *keys;
    size_t n_keys;
    const uint8_t *retry_configs;
    size_t retry_configs_len;
};

/* What happened to a ClientHello's encrypted_client_hello extension (for logs and metrics). */
enum tls_ech_status {
    TLS_ECH_NONE = 0,       /* not offered, or ECH off on this listener */
    TLS_ECH_ACCEPTED,       /* decrypted: the handshake runs on ClientHelloInner */
    TLS_ECH_REJECTED,       /* a key with that config_id and suite exists but HPKE open failed */
    TLS_ECH_UNKNOWN_CONFIG, /* no key with that config_id and suite: GREASE ECH, or a stale config */
};

struct tls_config {
    const struct tls_cert *certs; /* the first one is the default when no name matches */
    size_t n_certs;
    uint16_t suites[3]; /* server preference order */
    size_t n_suites;
    uint16_t groups[TLS_MAX_GROUPS]; /* server preference order */
    size_t n_groups;
    const char *alpn[TLS_MAX_ALPN]; /* protocols we accept, server preference order */
    size_t n_alpn;
    uint8_t cookie_key[32]; /* HMAC key authenticating HelloRetryRequest cookies */
    /* Bound on one handshake message; 0 = default: a ClientHello up to its syntactic maximum
     * (131,396 bytes), a client Certificate up to 64 KiB, the others their own size (KeyUpdate 1,
     * Finished one hash). When set it also bounds the ClientHello. */
    size_t max_handshake_message;
    /* NSS key log lines (SSLKEYLOGFILE format), only when explicitly configured; else NULL. */
    void (*keylog)(void *arg, const char *line);
    void *keylog_arg;
    /* Handshake progress for --trace: called with a static event name ("ClientHello", ...). */
    void (*trace)(void *arg, uint64_t conn_id, const char *event);
    void *trace_arg;
    /* mTLS: client_ca must be set unless client_auth is TLS_CLIENT_AUTH_NONE (else handshakes fail, internal_error). */
    enum tls_client_auth client_auth;
    const struct tls_client_ca *client_ca;
    /* Session tickets, PSK resumption and 0-RTT. */
    struct tls_ticket_config tickets;
    /* Encrypted Client Hello keys (shared mode: this server also terminates the inner ClientHello). */
    struct tls_ech_config ech;
    /* Tests only: force the random inputs so that RFC 8448 traces can be reproduced byte for byte. */
    const struct tls_test_hooks *test;
};

struct tls_test_hooks {
    const uint8_t *server_random;            /* 32 bytes, or NULL */
    const uint8_t *server_ephemeral_private; /* raw private key of the chosen group, or NULL */
    size_t server_ephemeral_private_len;
    /* Raw extension bytes to put in EncryptedExtensions instead of the engine's own, or NULL. */
    const uint8_t *encrypted_extensions_body;
    size_t encrypted_extensions_body_len;
    /*
     * Raw HelloRetryRequest cookie to send instead of the engine's HMAC cookie, or NULL. The
     * second ClientHello must then echo exactly these bytes (RFC 8448 5 echoes NSS's cookie).
     */
    const uint8_t *hrr_cookie;
    size_t hrr_cookie_len;
    /* Raw CertificateRequest body (context and extensions) to send instead of the engine's, or NULL. */
    const uint8_t *certificate_request_body;
    size_t certificate_request_body_len;
    /* Check client certificates at this Unix time instead of now (0: now), to replay old traces. */
    int64_t client_verify_time;
    /* Tickets: the CLOCK_REALTIME time in ms to use instead of now (0: now). */
    uint64_t now_ms;
    /* The nonce of every NewSessionTicket instead of the engine's counter, or NULL (RFC 8448 3: 00 00). */
    const uint8_t *ticket_nonce;
    size_t ticket_nonce_len;
    /* 1: every NewSessionTicket gets ticket_age_add instead of a random one. */
    int force_ticket_age_add;
    uint32_t ticket_age_add;
    /*
     * An identity the engine resumes as if it were one of its tickets, issued for this connection's
     * suite, SNI, ALPN and certificate with the given PSK (hash length), age_add and
     * max_early_data; its age is not checked. RFC 8448 4 resumes NSS's ticket, which only NSS can
     * open. NULL: none.
     */
    const uint8_t *psk_identity;
    size_t psk_identity_len;
    const uint8_t *psk;
    size_t psk_len;
    uint32_t psk_age_add;
    uint32_t psk_max_early_data;
};

/* What the engine needs signed, valid while the connection waits in the signature state. */
struct tls_sign_request {
    const char *key_name;
    uint16_t scheme;
    uint8_t transcript_hash[48];
    size_t transcript_hash_len; /* 32 or 48: the cipher suite's hash */
    const char *server_name;    /* SNI, or "" */
};

/*
 * Denial-of-service caps (as in BoringSSL and rustls): more than this many KeyUpdates, empty
 * application data records or warning alerts (user_canceled) in a row, with no non-empty
 * application data record in between, is unexpected_message. None of them counts as activity
 * for an idle timer: tls_conn_input() appends nothing to app for them.
 */
#define TLS_MAX_KEY_UPDATES 32
#define TLS_MAX_EMPTY_RECORDS 32
#define TLS_MAX_WARNING_ALERTS 4

struct tls_conn;

/* A new server connection. NULL on allocation failure. conn_id appears in traces and sign requests. */
struct tls_conn *tls_conn_new(const struct tls_config *cfg, uint64_t conn_id);
/* Wipe every secret and free. NULL is fine. */
void tls_conn_free(struct tls_conn *c);

/*
 * Feed received bytes. The engine consumes whole records only: *in_len_p is set to the
 * number of bytes consumed; keep the rest and call again when more arrive. Bytes to
 * send are appended to out; decrypted application data to app.
 * Returns 0, KL_ERR_ASYNC (a signature is needed), KL_ERR_CLOSED, or an error (alert queued).
 * Backpressure: once established (and while accepted 0-RTT data arrives), a record is only read if app has room for it
 * (keep at least REC_MAX_CIPHERTEXT = 2^14 + 256 bytes free); otherwise 0 is returned with the record left in the
 * input.
 */
KL_MUST_CHECK int tls_conn_input(struct tls_conn *c, struct kl_buf *out, struct kl_buf *app, const uint8_t *in,
                                 size_t *in_len_p);
/* Valid while the connection is waiting for its signature (after tls_conn_input returned KL_ERR_ASYNC). */
KL_MUST_CHECK int tls_conn_sign_request(const struct tls_conn *c, struct tls_sign_request *req);
/*
 * Resume with the signer's answer: sig/sig_len is the CertificateVerify signature, or
 * sig == NULL when the signer failed or timed out (internal_error is sent).
 * Appends the rest of the server flight to out.
 */
KL_MUST_CHECK int tls_conn_sign_done(struct tls_conn *c, struct kl_buf *out, const uint8_t *sig, size_t sig_len);
/* Protect application data into records (split at 2^14) appended to out. Only once established. */
KL_MUST_CHECK int tls_conn_send(struct tls_conn *c, struct kl_buf *out, const uint8_t *data, size_t len);
/* Append a close_notify alert. */
KL_MUST_CHECK int tls_conn_close(struct tls_conn *c, struct kl_buf *out);
/* Send a KeyUpdate (update_requested if request_peer) and switch our sending keys. */
KL_MUST_CHECK int tls_conn_key_update(struct tls_conn *c, struct kl_buf *out, int request_peer);
/* RFC 8446 7.5 exporter: TLS-Exporter(label, context, out_len). Only once established. */
KL_MUST_CHECK int tls_conn_export(struct tls_conn *c, uint8_t *out, size_t out_len, const char *label,
                                  const uint8_t *context, size_t context_len);

/* sizeof(struct tls_conn), for memory accounting (the struct is opaque). */
size_t tls_conn_sizeof(void);
int tls_conn_established(const struct tls_conn *c);         /* 1 after the client Finished verified */
const char *tls_conn_server_name(const struct tls_conn *c); /* SNI or "" */
const char *tls_conn_alpn(const struct tls_conn *c);        /* negotiated protocol or "" */
uint16_t tls_conn_cipher_suite(const struct tls_conn *c);
uint16_t tls_conn_group(const struct tls_conn *c);
uint16_t tls_conn_scheme(const struct tls_conn *c);

/*
 * The client's verified identity (mTLS). Valid from the end of the handshake to tls_conn_free.
 * present is 1 only when the client sent a certificate whose chain verified against the
 * listener's client_ca and whose CertificateVerify checked out (any failure ends the
 * handshake with an alert, so there is no "present but unverified"): present is the verify
 * result. Text fields are NUL-terminated, truncated, with control characters replaced by '?'.
 */
#define TLS_PEER_TEXT 256
struct tls_peer_cert {
    int present;                    /* 1: a client certificate verified (chain and CertificateVerify) */
    uint8_t sha256[32];             /* SHA-256 of the leaf certificate's DER */
    char subject_cn[TLS_PEER_TEXT]; /* the subject's commonName, or "" */
    char san[TLS_PEER_TEXT];        /* subjectAltName DNS/email/URI entries: "DNS:a,email:b" */
    char subject[TLS_PEER_TEXT];    /* the whole subject (RFC 2253) */
};
/* Never NULL; present == 0 when client authentication was off, optional and skipped, or not done yet. */
const struct tls_peer_cert *tls_conn_peer_cert(const struct tls_conn *c);
/* 1 when the handshake resumed a ticket (no certificate, no signature), else 0. */
int tls_conn_resumed(const struct tls_conn *c);
/*
 * 0-RTT: 1 when the client's early data was accepted. Early application data is appended to
 * app by tls_conn_input() before the handshake completes; tls_conn_early_data_len() is how
 * many of the first application bytes were early data, and tls_conn_early_data_done() is 1
 * once EndOfEarlyData arrived (the count is then final).
 */
int tls_conn_early_data_accepted(const struct tls_conn *c);
uint64_t tls_conn_early_data_len(const struct tls_conn *c);
int tls_conn_early_data_done(const struct tls_conn *c);
/*
 * ECH: what became of the client's encrypted_client_hello. When TLS_ECH_ACCEPTED,
 * tls_conn_server_name() and tls_conn_alpn() are the inner ClientHello's, and the sign request's
 * server_name too; tls_conn_ech_outer_name() is the outer (public) name, "" when none was sent.
 */
enum tls_ech_status tls_conn_ech_status(const struct tls_conn *c);
const char *tls_conn_ech_outer_name(const struct tls_conn *c);

/* ---- certificate files and randomness, for the caller's configuration ---- */

#define TLS_MAX_SPKI 2048 /* a leaf's SubjectPublicKeyInfo, DER (RSA 8192 is ~1.1 KiB) */

/* Why tls_cert_file_load() failed: the caller words the message (typed, not text to match). */
enum tls_cert_error {
    TLS_CERT_OK = 0,
    TLS_CERT_CANNOT_OPEN,     /* the file cannot be opened for reading */
    TLS_CERT_NO_CHAIN,        /* no certificate, a block that does not parse, or more than TLS_MAX_CHAIN */
    TLS_CERT_BAD_LEAF_KEY,    /* the leaf's public key does not parse */
    TLS_CERT_UNSUPPORTED_KEY, /* the leaf's key is none of ECDSA P-256/P-384, RSA, Ed25519 */
    TLS_CERT_NO_MEMORY,
};

/*
 * A PEM certificate chain as the server presents it: the DER certificates (leaf first),
 * the leaf's subjectAltName DNS names, its SubjectPublicKeyInfo (compared with the
 * signer's public key), and the TLS 1.3 schemes its key type can produce in our
 * preference order (P-256: 0x0403; P-384: 0x0503; RSA: 0x0804 0x0805 0x0806; Ed25519: 0x0807).
 * Public data only. The DER buffers are owned; tls_cert_file_dispose() frees them.
 */
struct tls_cert_file {
    uint8_t *der[TLS_MAX_CHAIN];
    size_t der_len[TLS_MAX_CHAIN];
    size_t n_der;
    char names[TLS_MAX_NAMES][TLS_MAX_NAME_LEN]; /* longer names and names past TLS_MAX_NAMES are skipped */
    size_t n_names;
    uint8_t spki[TLS_MAX_SPKI];
    size_t spki_len;
    uint16_t schemes[TLS_MAX_SCHEMES];
    size_t n_schemes;
    char key_desc[32]; /* "ECDSA P-256", "RSA", "Ed25519", ... for logs */
    int64_t not_after; /* the leaf's notAfter, Unix time (the frontend's expiry gauge) */
};

/*
 * Load the PEM chain at path into f. 0, or KL_ERR_CONFIG (KL_ERR_NO_MEMORY) with *why_p
 * saying which of enum tls_cert_error went wrong; f is then empty (disposed).
 */
KL_MUST_CHECK int tls_cert_file_load(struct tls_cert_file *f, enum tls_cert_error *why_p, const char *path);
/* Free the DER buffers and clear f. Idempotent on a cleared or zeroed struct. */
void tls_cert_file_dispose(struct tls_cert_file *f);

/* Why tls_client_ca_load() failed (typed, not text to match). */
enum tls_client_ca_error {
    TLS_CLIENT_CA_OK = 0,
    TLS_CLIENT_CA_CANNOT_OPEN, /* the CA bundle cannot be opened for reading */
    TLS_CLIENT_CA_NO_CERT,     /* no certificate in it, or a block that does not parse */
    TLS_CLIENT_CA_CRL_OPEN,    /* the CRL file cannot be opened for reading */
    TLS_CLIENT_CA_NO_CRL,      /* no CRL in it, or a block that does not parse */
    TLS_CLIENT_CA_NO_MEMORY,
};

/*
 * Load the trust anchors for client certificates: every certificate of the PEM bundle at
 * ca_path is an anchor (its subject is sent in certificate_authorities); crl_path (or
 * NULL) is a PEM file of CRLs, and then every leaf's revocation is checked (a leaf whose
 * issuer has no CRL there fails as unknown_ca). depth: at most this many intermediate CAs
 * between the leaf and an anchor. Chains are checked for the clientAuth purpose at the
 * time of the handshake. 0 with *ca_p set (free with tls_client_ca_free), or
 * KL_ERR_CONFIG / KL_ERR_NO_MEMORY with *why_p set. Immutable and shareable once loaded.
 */
KL_MUST_CHECK int tls_client_ca_load(struct tls_client_ca **ca_p, enum tls_client_ca_error *why_p, const char *ca_path,
                                     const char *crl_path, unsigned depth);
/* NULL-safe. */
void tls_client_ca_free(struct tls_client_ca *ca);

/* ---- ECH key files ---- */

/* Why tls_ech_key_load() failed: the caller words the message (typed, not text to match). */
enum tls_ech_key_error {
    TLS_ECH_KEY_OK = 0,
    TLS_ECH_KEY_CANNOT_OPEN, /* the file cannot be opened for reading */
    TLS_ECH_KEY_NO_KEY,      /* no PRIVATE KEY block, or it is not an X25519 key */
    TLS_ECH_KEY_NO_CONFIG,   /* no ECHCONFIG block, or its base64 does not decode */
    TLS_ECH_KEY_BAD_CONFIG,  /* the ECHConfigList does not parse, or holds more or less than one 0xfe0d config */
    TLS_ECH_KEY_UNSUPPORTED, /* the config's KEM is not X25519, or none of its suites is supported */
    TLS_ECH_KEY_MISMATCH,    /* the config's public key is not the private key's */
    TLS_ECH_KEY_NO_MEMORY,
};

/*
 * Load an ECH key file: PEM, a "PRIVATE KEY" block (PKCS#8 X25519) and an "ECHCONFIG" block
 * holding the base64 of an ECHConfigList with exactly one ECHConfig (the format of
 * draft-farrell-tls-pemesni, which OpenSSL and BoringSSL's tools read too). 0, or KL_ERR_CONFIG
 * (KL_ERR_NO_MEMORY) with *why_p set; k is then wiped.
 */
KL_MUST_CHECK int tls_ech_key_load(struct tls_ech_key *k, enum tls_ech_key_error *why_p, const char *path);
/*
 * A new X25519 key and its ECHConfig (version 0xfe0d, suites HKDF-SHA256 with AES-128-GCM,
 * ChaCha20-Poly1305 and AES-256-GCM, no extensions). public_name must be a DNS name the
 * listener has a certificate for; max_name_length 0 means 0 (clients then pad as they like).
 * KL_ERR_INVALID for a bad name.
 */
KL_MUST_CHECK int tls_ech_key_generate(struct tls_ech_key *k, uint8_t config_id, const char *public_name,
                                       uint8_t max_name_length);
/* The key file text (PEM, both blocks) into buf; KL_ERR_OVERFLOW if cap is too small. Holds the secret. */
KL_MUST_CHECK int tls_ech_key_write_pem(const struct tls_ech_key *k, char *buf, size_t cap, size_t *len_p);
/* The ECHConfigList (2-byte length, then each key's config in order) of keys[0..n): what DNS publishes. */
KL_MUST_CHECK int tls_ech_config_list(uint8_t *out, size_t cap, size_t *len_p, const struct tls_ech_key *keys,
                                      size_t n);
/* Wipe the private key; idempotent. */
void tls_ech_key_dispose(struct tls_ech_key *k);

/*
 * Whether a certificate name (a SAN dNSName, maybe "*.example") covers host: the rule the engine
 * uses to choose a certificate by SNI. Case-insensitive; a wildcard covers exactly one left-most
 * label (RFC 6125 6.4.3). 1 or 0.
 */
int tls_name_matches(const char *pattern, const char *host);

/* Fill buf with len bytes from the engine's CSPRNG (for keys the caller hands the engine, e.g. cookie_key). */
void tls_random(void *buf, size_t len);

#endif
