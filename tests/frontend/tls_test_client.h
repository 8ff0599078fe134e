/*
 * tls_test_client.h - a minimal TLS 1.3 client for driving the server engine in tests.
 *
 * Built only from the engine's own primitives (crypto_, ks_, rec_, wire_), so it is an
 * independent second implementation of the client side of RFC 8446 for full handshakes
 * with every suite and group, HelloRetryRequest, middlebox compatibility mode, SNI and
 * ALPN. It checks everything a client must: the ServerHello fields, the server's
 * CertificateVerify signature against the leaf certificate (crypto_cert_verify) and the
 * server Finished. Resumption: it keeps the NewSessionTickets it receives (struct ttc_ticket) and
 * can offer one in a later handshake (pre_shared_key with its binder, psk_key_exchange_modes),
 * with 0-RTT data under the client early traffic key and EndOfEarlyData when the server accepts
 * it; knobs break the PSK offer for negative tests. Client certificates: when the server
 * sends CertificateRequest the client answers with the chain of ttc_set_client_auth (or an
 * empty Certificate) and a CertificateVerify made by its client_sign callback (the test
 * holds the key), and can be told to omit or corrupt the CertificateVerify.
 * Encrypted Client Hello (ttc_start_ech, draft-ietf-tls-esni-22): it builds ClientHelloInner, encodes it
 * (optionally compressing extensions into ech_outer_extensions, with padding), seals it with HPKE into the
 * outer ClientHello that names the public name, with the AAD the draft specifies; it checks the acceptance
 * confirmation in ServerHello.random (and in a HelloRetryRequest), then follows the inner or the outer
 * transcript, and keeps retry_configs from EncryptedExtensions. Knobs break the encoding for negative tests.
 */
#ifndef KL_TLS_TEST_CLIENT_H
#define KL_TLS_TEST_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include "crypto.h"
#include "hpke.h"
#include "key_schedule.h"
#include "kl_buf.h"
#include "record.h"
#include "tls.h"

/* A NewSessionTicket as the client keeps it (4.6.1), with the PSK it derived for it. */
#define TTC_TICKET_MAX 4096
struct ttc_ticket {
    uint8_t ticket[TTC_TICKET_MAX];
    size_t ticket_len;
    uint8_t psk[CRYPTO_MAX_HASH];
    size_t psk_len;
    enum crypto_hash_alg alg;
    uint32_t lifetime, age_add, max_early_data;
    uint8_t nonce[255];
    size_t nonce_len;
};

struct ttc_config {
    uint16_t suites[3];
    size_t n_suites;
    uint16_t groups[3]; /* supported_groups */
    size_t n_groups;
    uint16_t shares[3]; /* key shares sent in the first ClientHello */
    size_t n_shares;
    uint16_t sig_algs[8];
    size_t n_sig_algs;
    const char *sni;  /* NULL: no server_name */
    const char *alpn; /* one protocol offered, or NULL */
    int compat;       /* send a 32-byte legacy_session_id and CCS (middlebox compatibility mode) */
    /* Offer early_data in the first ClientHello and follow it with this many bytes of fake 0-RTT
     * records (outer type application_data, random content) that the server must skip (4.2.10). */
    size_t early_junk;
    /* Fuzzing only: accept any CertificateVerify signature (the fuzzer's server signs with nothing). */
    int skip_verify;
};

/* Resumption and 0-RTT for ttc_start_psk (its own struct so that ttc_config's users need no change). */
struct ttc_psk_config {
    /* Offer this ticket (borrowed) as the last pre_shared_key identity. */
    const struct ttc_ticket *resume;
    unsigned psk_modes;     /* bit 0: psk_ke, bit 1: psk_dhe_ke; 0 means psk_dhe_ke only */
    uint32_t ticket_age_ms; /* the age the client claims for the ticket */
    const uint8_t *early;   /* 0-RTT: offer early_data and send these bytes under the early keys */
    size_t early_len;
    /* Negative tests: break the PSK offer. */
    int psk_bad_binder;         /* flip a bit of the binder */
    size_t psk_binder_len;      /* non-zero: a binder of this length (its first bytes are the real binder) */
    int psk_extra_binder;       /* one binder more than identities */
    int psk_not_last;           /* an unknown extension after pre_shared_key */
    int psk_no_modes;           /* no psk_key_exchange_modes */
    unsigned psk_garbage_first; /* this many identities nobody can open before the ticket */
};

/*
 * Client authentication (set with ttc_set_client_auth after ttc_start; borrowed, must outlive the
 * handshake). Without it the client answers a CertificateRequest with an empty Certificate.
 */
struct ttc_client_auth {
    /* The chain (DER, leaf first) sent when asked; n_client_chain 0 sends an empty Certificate. */
    const uint8_t *client_chain[4];
    size_t client_chain_len[4];
    size_t n_client_chain;
    /* Sign the client CertificateVerify content (4.4.3) with the client's key: *scheme_p gets the scheme,
     * sig (capacity *sig_len_p) the signature. 0 or a negative KL_ERR_*. */
    int (*client_sign)(void *arg, uint16_t *scheme_p, const uint8_t *content, size_t len, uint8_t *sig,
                       size_t *sig_len_p);
    void *client_sign_arg;
    int client_omit_cv;        /* send the Certificate but no CertificateVerify */
    int client_bad_cv;         /* flip a bit in the CertificateVerify signature */
    uint16_t client_cv_scheme; /* non-zero: put this scheme in the CertificateVerify instead of the signer's */
};

/* ECH for ttc_start_ech (borrowed: must outlive the handshake). */
#define TTC_ECH_MAX_REFS 8
struct ttc_ech {
    const uint8_t *config; /* the ECHConfig (version ‖ length ‖ contents): HPKE info */
    size_t config_len;
    uint8_t config_id;
    uint16_t kdf_id, aead_id;
    const uint8_t *public_key; /* 32 bytes, X25519 */
    const char *public_name;   /* the outer ClientHello's SNI (NULL: none) */
    /* Compression (5.1): these inner extensions are left out of the encoding and replaced, where the first of
     * them was, by ech_outer_extensions listing refs (refs defaults to compress when n_refs is 0). */
    uint16_t compress[TTC_ECH_MAX_REFS];
    size_t n_compress;
    uint16_t refs[TTC_ECH_MAX_REFS];
    size_t n_refs;
    int second_outer_ext; /* a second ech_outer_extensions (illegal) */
    size_t padding;       /* zero bytes after the encoded ClientHello */
    /* Negative tests. */
    int tamper;           /* flip one bit of the sealed payload */
    int bad_padding;      /* the last padding byte is 1 */
    int inner_sid;        /* a non-empty legacy_session_id inside the encoding */
    int inner_no_ech;     /* ClientHelloInner without encrypted_client_hello of type inner */
    int inner_tls12;      /* ClientHelloInner also offers TLS 1.2 */
    int outer_type_inner; /* the outer extension says type inner */
    int outer_psk;        /* the outer ClientHello offers the PSK (and early data) too, with its own binder */
    int ch2_no_ech;       /* the second ClientHello has no encrypted_client_hello */
    int ch2_tamper;       /* flip one bit of the second payload */
    int ch2_enc;          /* a non-empty enc in the second ClientHello */
    int ch2_other_id;     /* another config_id in the second ClientHello */
};

enum ttc_state { TTC_WAIT_SH, TTC_WAIT_EE, TTC_WAIT_CERT, TTC_WAIT_CV, TTC_WAIT_FIN, TTC_DONE, TTC_FAILED };

struct ttc {
    struct ttc_config cfg;
    enum ttc_state state;
    struct rec_dir rd, wr;
    struct crypto_kex kex[3];
    size_t n_kex;
    struct ks_transcript th;
    int th_live;
    struct ks_schedule ks;
    enum crypto_hash_alg alg;
    size_t hash_len;
    uint16_t suite, group;
    int hrr;
    uint8_t random[32];
    uint8_t session_id[32];
    struct kl_buf ch1;   /* the first ClientHello, until the ServerHello says which hash to use */
    struct kl_buf hs_in; /* handshake reassembly */
    uint8_t *cert;       /* leaf certificate from the Certificate message */
    size_t cert_len;
    uint16_t scheme; /* from CertificateVerify */
    char alpn[256];  /* selected by the server, or "" */
    int sni_acked;
    int cert_requested;      /* the server sent CertificateRequest */
    uint16_t cr_schemes[16]; /* its signature_algorithms */
    size_t n_cr_schemes;
    int cr_has_cas; /* it carried certificate_authorities */
    const struct ttc_client_auth *auth;
    /* Resumption and 0-RTT. */
    struct ttc_psk_config psk;
    int psk_offered;
    int resumed;        /* the ServerHello selected our PSK */
    uint16_t selected;  /* its selected_identity */
    int early_accepted; /* EncryptedExtensions carried early_data */
    struct ttc_ticket tickets[4];
    size_t n_tickets;
    /* ECH. */
    const struct ttc_ech *ech; /* NULL: no ECH offered */
    int building;              /* build_ch: 0 plain, 1 ClientHelloInner, 2 ClientHelloOuter */
    uint8_t outer_random[32];
    struct hpke_ctx ech_ctx;
    int ech_ctx_live;
    struct kl_buf ch1_outer; /* the first ClientHelloOuter, the transcript's when ECH is rejected */
    int ech_decided;         /* the first server message told us accepted or rejected */
    int ech_accepted;        /* its confirmation matched */
    int ech_hrr_accepted;    /* the HelloRetryRequest's confirmation matched */
    int ech_sh_confirmed;    /* the ServerHello after an accepting HRR confirmed too */
    uint8_t retry_configs[TLS_ECH_MAX_LIST_LEN];
    size_t retry_configs_len;
    uint8_t ech_enc[32];
    size_t ech_enc_len;
    size_t ech_payload_len, ech_payload_off;
    int ech_omit;   /* build_ch: no encrypted_client_hello in this outer ClientHello */
    int ech_second; /* build_ch: building the second ClientHelloOuter */
};

/* Start: appends the ClientHello record to out. */
int ttc_start(struct ttc *t, const struct ttc_config *cfg, struct kl_buf *out);
/* The same, offering a PSK (psk->resume) and 0-RTT data as psk says; psk NULL is ttc_start. */
int ttc_start_psk(struct ttc *t, const struct ttc_config *cfg, const struct ttc_psk_config *psk, struct kl_buf *out);
/*
 * Feed server bytes (whole records; *len_p gets what was consumed). Appends any reply
 * (ClientHello2, client Finished, KeyUpdate answer) to out and application data to app.
 * Returns 0, or a negative KL_ERR_* when the server's flight does not check out.
 */
int ttc_input(struct ttc *t, struct kl_buf *out, struct kl_buf *app, const uint8_t *in, size_t *len_p);
int ttc_send(struct ttc *t, struct kl_buf *out, const uint8_t *data, size_t len);
void ttc_dispose(struct ttc *t);
/* The same, offering ECH (ech may be NULL: ttc_start_psk); psk goes into ClientHelloInner. */
int ttc_start_ech(struct ttc *t, const struct ttc_config *cfg, const struct ttc_psk_config *psk,
                  const struct ttc_ech *ech, struct kl_buf *out);
/* Answer a CertificateRequest with auth (NULL: an empty Certificate). Call after ttc_start. */
void ttc_set_client_auth(struct ttc *t, const struct ttc_client_auth *auth);

#endif
