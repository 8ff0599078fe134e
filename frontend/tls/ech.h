/*
 * ech.h - Encrypted Client Hello, the server's ClientHello side (draft-ietf-tls-esni-22, wire
 * version 0xfe0d): the encrypted_client_hello codec, key choice and HPKE open, the
 * EncodedClientHelloInner decoder (ech_outer_extensions expansion, padding) and the acceptance
 * confirmation. hs_server.c decides what to do with the results (accept, reject, alerts on the
 * second ClientHello); this file holds no connection state.
 *
 * Spans borrow from the caller's input. Reconstructed ClientHelloInner bytes and HPKE contexts
 * hold client secrets (the real server name, PSK identities): the caller wipes them
 * (kl_buf_dispose, hpke_ctx_dispose) on every exit path.
 *
 * Cost of one open (hostile clients): one X25519 and a few HKDF calls in hpke_setup_base_r plus
 * one AEAD open of at most 2^16 bytes; a connection does at most one per ClientHello, so at most
 * two (the second ClientHello after HelloRetryRequest reuses the context: no X25519 then), and
 * only for keys whose config_id and suite match (at most TLS_ECH_KEYS_MAX). Measured in
 * test_ech (test_open_cost, RelWithDebInfo, a shared 2-core machine): about 0.09 ms per candidate key for a
 * 300-byte payload (172 us for two keys sharing a config_id, the first failing).
 */
#ifndef KL_TLS_ECH_H
#define KL_TLS_ECH_H

#include <stddef.h>
#include <stdint.h>
#include "hpke.h"
#include "kl_buf.h"
#include "kl_err.h"
#include "msg.h"
#include "tls.h"

#define ECH_TYPE_OUTER 0
#define ECH_TYPE_INNER 1
#define ECH_CONFIRMATION_LEN 8
#define ECH_INFO_PREFIX "tls ech" /* HPKE info = "tls ech" ‖ 0x00 ‖ ECHConfig */
#define ECH_INFO_MAX (sizeof(ECH_INFO_PREFIX) + TLS_ECH_MAX_CONFIG_LEN)
#define ECH_ACCEPT_LABEL "ech accept confirmation"
#define ECH_HRR_ACCEPT_LABEL "hrr ech accept confirmation"

/* The outer form of the extension (type outer). */
struct ech_outer {
    uint16_t kdf_id, aead_id; /* HpkeSymmetricCipherSuite */
    uint8_t config_id;
    struct kl_span enc;     /* 0..2^16-1 bytes (empty in the second ClientHello after HRR) */
    struct kl_span payload; /* 1..2^16-1 bytes: the sealed EncodedClientHelloInner */
};

/*
 * Decode the body of a ClientHello's encrypted_client_hello: *type_p gets ECH_TYPE_OUTER (and o
 * the fields) or ECH_TYPE_INNER (the body is exactly that one byte). decode_error when the
 * lengths do not add up; illegal_parameter for an unknown type.
 */
KL_MUST_CHECK int ech_ext_decode(uint8_t *type_p, struct ech_outer *o, struct kl_span body);

/* The first byte of the extension body (its ECHClientHelloType), or -1 when empty. */
int ech_ext_type(struct kl_span body);

/*
 * The HPKE AAD (draft 5.2): the outer ClientHello body (without the 4-byte handshake header) with
 * the encrypted_client_hello payload replaced by zeros, appended to aad. body must be a ClientHello
 * that msg_client_hello_decode() accepted. KL_ERR_OVERFLOW when aad is too small.
 */
KL_MUST_CHECK int ech_outer_aad(struct kl_buf *aad, const uint8_t *body, size_t len);

/* HPKE info (draft 6.1): "tls ech" ‖ 0x00 ‖ ECHConfig into info (ECH_INFO_MAX bytes). */
KL_MUST_CHECK int ech_info(uint8_t *info, size_t *len_p, const struct tls_ech_key *key);

/*
 * Choose the key and open the payload (draft 7.1): every key of cfg with o's config_id that
 * offers o's suite is tried in order (several may share an id). On 0, *status_p says what
 * happened: TLS_ECH_ACCEPTED (ctx is the receiver context, its next sequence number 1, *key_p the
 * key, pt the EncodedClientHelloInner), TLS_ECH_REJECTED (a key matched but HPKE failed: a bad enc
 * or a payload that does not open) or TLS_ECH_UNKNOWN_CONFIG (no key matched). ctx and pt are
 * wiped unless accepted. A negative error only for internal failures (memory).
 */
KL_MUST_CHECK int ech_open(struct hpke_ctx *ctx, const struct tls_ech_key **key_p, enum tls_ech_status *status_p,
                           struct kl_buf *pt, const struct tls_ech_config *cfg, const struct ech_outer *o,
                           const uint8_t *aad, size_t aad_len);

/*
 * Rebuild ClientHelloInner from an EncodedClientHelloInner (draft 5.1) as a whole handshake message
 * (4-byte header ‖ body) appended to out: legacy_session_id from the outer ClientHello (the encoded
 * one must be empty), ech_outer_extensions replaced by the referenced outer extensions, padding
 * dropped. illegal_parameter for a non-empty encoded legacy_session_id, non-zero padding, a second
 * ech_outer_extensions, or a reference to encrypted_client_hello, to an extension the outer
 * ClientHello lacks, twice to one extension or out of the outer's order; decode_error when the
 * lengths do not add up or the body would exceed max_body bytes. outer_exts is the outer
 * ClientHello's extension list content (ext_client_hello.raw).
 */
KL_MUST_CHECK int ech_inner_rebuild(struct kl_buf *out, const uint8_t *encoded, size_t encoded_len,
                                    const uint8_t *session_id, size_t session_id_len, struct kl_span outer_exts,
                                    size_t max_body);

/*
 * The checks on a decoded ClientHelloInner (draft 7.1): it carries encrypted_client_hello of type
 * inner, and supported_versions offers TLS 1.3 and nothing below it; illegal_parameter otherwise.
 */
KL_MUST_CHECK int ech_inner_check(const struct msg_client_hello *inner);

/*
 * The 8-byte acceptance signal (draft 7.2, 7.2.1): HKDF-Expand-Label(HKDF-Extract(0, inner_random),
 * label, transcript_hash, 8) with the negotiated hash; label ECH_ACCEPT_LABEL for ServerHello,
 * ECH_HRR_ACCEPT_LABEL for HelloRetryRequest.
 */
KL_MUST_CHECK int ech_confirmation(uint8_t out[ECH_CONFIRMATION_LEN], enum crypto_hash_alg alg,
                                   const uint8_t inner_random[32], const char *label, const uint8_t *transcript_hash);

#endif
