/*
 * hpke.h - Hybrid Public Key Encryption (RFC 9180), base mode, for Encrypted Client Hello.
 *
 * KEM DHKEM(X25519, HKDF-SHA256) (0x0020); KDF HKDF-SHA256 (0x0001); AEADs AES-128-GCM
 * (0x0001), AES-256-GCM (0x0002), ChaCha20-Poly1305 (0x0003). The RFC 9180 key schedule
 * (LabeledExtract/LabeledExpand with the "HPKE-v1" suite_id labels) is ours; X25519, HKDF and
 * the AEADs come from crypto.h (libsodium and libcrypto). Checked byte for byte against the
 * RFC 9180 Appendix A vectors (tests/vectors/hpke).
 *
 * Internal to the engine (frontend/tls): not part of tls.h.
 */
#ifndef KL_TLS_HPKE_H
#define KL_TLS_HPKE_H

#include <stddef.h>
#include <stdint.h>
#include "crypto.h"
#include "kl_err.h"

#define HPKE_KEM_X25519_SHA256 0x0020
#define HPKE_KDF_HKDF_SHA256 0x0001
#define HPKE_AEAD_AES_128_GCM 0x0001
#define HPKE_AEAD_AES_256_GCM 0x0002
#define HPKE_AEAD_CHACHA20_POLY1305 0x0003

#define HPKE_X25519_LEN 32 /* Nsk = Npk = Nenc for X25519 */
#define HPKE_NONCE_LEN 12  /* Nn for every AEAD here */
#define HPKE_TAG_LEN 16    /* Nt for every AEAD here */
#define HPKE_MAX_KEY_LEN 32

/* A base-mode context, sender or receiver side. Holds secrets: dispose it. */
struct hpke_ctx {
    uint16_t kdf_id, aead_id;
    struct crypto_aead aead; /* keyed with the context's key */
    uint8_t base_nonce[HPKE_NONCE_LEN];
    uint64_t seq; /* next sequence number; sealing or opening at 2^64-1 fails */
    uint8_t exporter_secret[32];
};

/* 1 if this (kdf, aead) pair is supported, else 0. */
int hpke_suite_supported(uint16_t kdf_id, uint16_t aead_id);

/* DeriveKeyPair (RFC 9180 7.1.3) for X25519: the vectors' skRm/pkRm from ikmR. */
KL_MUST_CHECK int hpke_derive_keypair(uint8_t sk[HPKE_X25519_LEN], uint8_t pk[HPKE_X25519_LEN], const uint8_t *ikm,
                                      size_t ikm_len);
/* A fresh X25519 key pair from the CSPRNG. */
KL_MUST_CHECK int hpke_generate_keypair(uint8_t sk[HPKE_X25519_LEN], uint8_t pk[HPKE_X25519_LEN]);
/* pk = X25519(sk, 9): the public key of a private one. */
KL_MUST_CHECK int hpke_public_key(uint8_t pk[HPKE_X25519_LEN], const uint8_t sk[HPKE_X25519_LEN]);

/*
 * SetupBaseS: a sender context for pk_r and info; enc gets the encapsulated key. sk_e NULL: a
 * fresh ephemeral key (the normal case); else that ephemeral private key (tests: the vectors'
 * skEm). KL_ERR_INVALID for an unsupported suite; KL_ERR_ILLEGAL_PARAMETER for a low-order pk_r.
 */
KL_MUST_CHECK int hpke_setup_base_s(struct hpke_ctx *ctx, uint8_t enc[HPKE_X25519_LEN], uint16_t kdf_id,
                                    uint16_t aead_id, const uint8_t pk_r[HPKE_X25519_LEN], const uint8_t *info,
                                    size_t info_len, const uint8_t *sk_e);
/*
 * SetupBaseR: a receiver context from the sender's enc (enc_len must be 32), our key pair and
 * info. KL_ERR_INVALID for an unsupported suite or a wrong enc length;
 * KL_ERR_ILLEGAL_PARAMETER for a low-order enc (all-zero shared secret).
 */
KL_MUST_CHECK int hpke_setup_base_r(struct hpke_ctx *ctx, uint16_t kdf_id, uint16_t aead_id, const uint8_t *enc,
                                    size_t enc_len, const uint8_t sk_r[HPKE_X25519_LEN],
                                    const uint8_t pk_r[HPKE_X25519_LEN], const uint8_t *info, size_t info_len);
/* Seal pt with the next sequence number: ct gets pt_len + HPKE_TAG_LEN bytes (may equal pt). */
KL_MUST_CHECK int hpke_seal(struct hpke_ctx *ctx, uint8_t *ct, const uint8_t *aad, size_t aad_len, const uint8_t *pt,
                            size_t pt_len);
/*
 * Open ct (ct_len >= HPKE_TAG_LEN) with the next sequence number: pt gets ct_len - HPKE_TAG_LEN
 * bytes (may equal ct). KL_ERR_BAD_RECORD_MAC when the tag does not verify (pt wiped, seq unchanged).
 */
KL_MUST_CHECK int hpke_open(struct hpke_ctx *ctx, uint8_t *pt, const uint8_t *aad, size_t aad_len, const uint8_t *ct,
                            size_t ct_len);
/* Secret export (RFC 9180 5.3): out gets out_len (<= 255 * 32) bytes. */
KL_MUST_CHECK int hpke_export(const struct hpke_ctx *ctx, uint8_t *out, size_t out_len, const uint8_t *exporter_context,
                              size_t context_len);
/* Wipe; NULL-safe, idempotent. */
void hpke_ctx_dispose(struct hpke_ctx *ctx);

#endif
