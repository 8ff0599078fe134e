/*
 * key_schedule.h - the TLS 1.3 key schedule (RFC 8446 section 7) and transcript hash.
 *
 * Two layers:
 *  - stateless functions (ks_hkdf_expand_label, ks_derive_secret, ...) that map one-to-one
 *    onto the RFC's formulas; the RFC 8448 tests check each of them;
 *  - struct ks_schedule, which walks early → handshake → master secret and keeps every
 *    secret the handshake needs, so hs_server.c calls one function per stage.
 *
 * All outputs are hash_len bytes (32 for SHA-256 suites, 48 for SHA-384) unless said
 * otherwise. Every temporary secret is wiped; ks_schedule_dispose wipes the whole struct.
 */
#ifndef KL_KEY_SCHEDULE_H
#define KL_KEY_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>
#include "crypto.h"
#include "kl_err.h"

/* ---- transcript hash (RFC 8446 4.4.1) ---- */

struct ks_transcript {
    struct crypto_hash_ctx h;
};
KL_MUST_CHECK int ks_transcript_init(struct ks_transcript *t, enum crypto_hash_alg alg);
/* Add one complete handshake message (type ‖ uint24 length ‖ body). */
KL_MUST_CHECK int ks_transcript_add(struct ks_transcript *t, const uint8_t *msg, size_t msg_len);
/* Hash of the messages so far (hash_len bytes); the transcript keeps running. */
KL_MUST_CHECK int ks_transcript_hash(const struct ks_transcript *t, uint8_t *out);
/*
 * After a HelloRetryRequest (RFC 8446 4.4.1): replace everything added so far (ClientHello1)
 * by message_hash = 0xfe 00 00 hash_len ‖ Hash(ClientHello1). Call it before adding the HRR.
 */
KL_MUST_CHECK int ks_transcript_hrr_rewrite(struct ks_transcript *t);
size_t ks_transcript_hash_len(const struct ks_transcript *t);
void ks_transcript_dispose(struct ks_transcript *t);

/* ---- RFC 8446 7.1 functions ---- */

/*
 * HKDF-Expand-Label(secret, label, context, out_len): label without the "tls13 " prefix
 * (at most 249 bytes), context at most 255 bytes. secret is hash_len bytes.
 */
KL_MUST_CHECK int ks_hkdf_expand_label(enum crypto_hash_alg alg, uint8_t *out, size_t out_len, const uint8_t *secret,
                                       const char *label, const uint8_t *context, size_t context_len);
/* Derive-Secret(secret, label, messages) with the transcript hash already computed. */
KL_MUST_CHECK int ks_derive_secret(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *secret, const char *label,
                                   const uint8_t *transcript_hash);
/* Derive-Secret(secret, label, "") — the empty transcript, e.g. "derived", "res binder". */
KL_MUST_CHECK int ks_derive_secret_empty(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *secret,
                                         const char *label);
/* Early Secret = HKDF-Extract(0, PSK), or with hash_len zeros when psk is NULL. */
KL_MUST_CHECK int ks_early_secret(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *psk, size_t psk_len);
/*
 * The next stage: HKDF-Extract(Derive-Secret(prev, "derived", ""), ikm), ikm NULL → hash_len
 * zeros. Early → Handshake Secret with the (EC)DHE secret, Handshake → Master with NULL.
 */
KL_MUST_CHECK int ks_next_stage(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *prev, const uint8_t *ikm,
                                size_t ikm_len);
/* [sender]_write_key / _iv (7.3) for suite from a traffic secret. key gets crypto_suite_key_len bytes. */
KL_MUST_CHECK int ks_traffic_key_iv(uint16_t suite, uint8_t *key, uint8_t iv[CRYPTO_IV_LEN], const uint8_t *secret);
/* finished_key = HKDF-Expand-Label(base_key, "finished", "", hash_len) (4.4.4). */
KL_MUST_CHECK int ks_finished_key(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *base_key);
/* verify_data = HMAC(finished_key(base_key), transcript_hash) (4.4.4). */
KL_MUST_CHECK int ks_verify_data(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *base_key,
                                 const uint8_t *transcript_hash);
/* application_traffic_secret_N+1 = HKDF-Expand-Label(N, "traffic upd", "", hash_len) (7.2). */
KL_MUST_CHECK int ks_update_secret(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *secret);
/* PSK for a ticket = HKDF-Expand-Label(resumption_master_secret, "resumption", nonce, hash_len) (4.6.1). */
KL_MUST_CHECK int ks_resumption_psk(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *resumption_master,
                                    const uint8_t *nonce, size_t nonce_len);
/*
 * TLS-Exporter(label, context, out_len) (7.5):
 *   HKDF-Expand-Label(Derive-Secret(exporter_master, label, ""), "exporter", Hash(context), out_len).
 * label is the full exporter label (no "tls13 " prefix added by the caller). out_len <= 255*hash_len.
 */
KL_MUST_CHECK int ks_export(enum crypto_hash_alg alg, uint8_t *out, size_t out_len, const uint8_t *exporter_master,
                            const char *label, const uint8_t *context, size_t context_len);

/* ---- the schedule of one connection ---- */

struct ks_schedule {
    enum crypto_hash_alg alg;
    size_t hash_len;
    int psk_less; /* early is the constant PSK-less Early Secret (cached per thread) */
    uint8_t early[CRYPTO_MAX_HASH];
    uint8_t handshake[CRYPTO_MAX_HASH];
    uint8_t master[CRYPTO_MAX_HASH];
    uint8_t client_early[CRYPTO_MAX_HASH];   /* c e traffic */
    uint8_t early_exporter[CRYPTO_MAX_HASH]; /* e exp master */
    uint8_t client_hs[CRYPTO_MAX_HASH];      /* c hs traffic */
    uint8_t server_hs[CRYPTO_MAX_HASH];      /* s hs traffic */
    uint8_t client_ap[CRYPTO_MAX_HASH];      /* c ap traffic (the current generation) */
    uint8_t server_ap[CRYPTO_MAX_HASH];      /* s ap traffic (the current generation) */
    uint8_t exporter[CRYPTO_MAX_HASH];       /* exp master */
    uint8_t resumption[CRYPTO_MAX_HASH];     /* res master */
};

/* Early Secret from psk (NULL = full handshake). */
KL_MUST_CHECK int ks_schedule_init(struct ks_schedule *s, enum crypto_hash_alg alg, const uint8_t *psk, size_t psk_len);
/* binder_key = Derive-Secret(early, "res binder" or "ext binder", "") (7.1). */
KL_MUST_CHECK int ks_schedule_binder_key(const struct ks_schedule *s, uint8_t *out, int external);
/* client_early and early_exporter from Hash(ClientHello). */
KL_MUST_CHECK int ks_schedule_early(struct ks_schedule *s, const uint8_t *th_ch);
/* Handshake Secret from the (EC)DHE secret, then client_hs/server_hs from Hash(CH..SH). */
KL_MUST_CHECK int ks_schedule_handshake(struct ks_schedule *s, const uint8_t *ecdhe, size_t ecdhe_len,
                                        const uint8_t *th_ch_sh);
/* Master Secret, then client_ap/server_ap/exporter from Hash(CH..server Finished). */
KL_MUST_CHECK int ks_schedule_application(struct ks_schedule *s, const uint8_t *th_ch_sf);
/* resumption from Hash(CH..client Finished). */
KL_MUST_CHECK int ks_schedule_resumption(struct ks_schedule *s, const uint8_t *th_ch_cf);
/* Wipe everything. */
void ks_schedule_dispose(struct ks_schedule *s);

/* ---- NSS key log (SSLKEYLOGFILE) ---- */

#define KS_KEYLOG_LINE_MAX 256
/*
 * Format "<label> <client_random hex> <secret hex>" (no newline) into line, e.g. label
 * "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
 * "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET".
 * KL_ERR_OVERFLOW if it does not fit line_cap. The line holds a secret: wipe it after use.
 */
KL_MUST_CHECK int ks_keylog_line(char *line, size_t line_cap, const char *label, const uint8_t client_random[32],
                                 const uint8_t *secret, size_t secret_len);

#endif
