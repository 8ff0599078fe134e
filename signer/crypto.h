/*
 * crypto.h - the signer's only door to libcrypto and libsodium.
 *
 * Purpose: every hash, public-key and encoding operation the signer does itself, so that
 * no other signer file includes an OpenSSL or libsodium header (the token does the private
 * key work through p11_backend.c). What is here is exactly what the signer uses:
 *   - SHA-256 of an audit line and a constant-time compare (libsodium);
 *   - the digest that ECDSA and RSA-PSS sign, the public key of a token key built from its
 *     PKCS#11 attributes (EC params + point, RSA modulus + exponent, Ed25519 point) and its
 *     SubjectPublicKeyInfo DER, RSA-PSS self-verification, the verification of a whole TLS
 *     signature before release, raw r||s ECDSA to DER (libcrypto);
 *   - the audit verifier's public key (PEM) and its ECDSA check of checkpoint signatures.
 *
 * Ownership: a struct crypto_pubkey is owned by whoever made it and freed with
 * crypto_pubkey_free(); every other argument is borrowed for the call.
 * Errors: 0 or a negative kl_err: KL_ERR_CRYPTO (the library refused: bad key material, a
 * signature that does not verify), KL_ERR_NO_MEMORY, KL_ERR_OVERFLOW (output too small),
 * KL_ERR_INVALID (misuse, an unknown hash).
 * Invariants: functions keep no state between calls apart from crypto_init()'s one-time
 * library set-up, and are safe to call from several threads at once.
 */
#ifndef SIGNER_CRYPTO_H
#define SIGNER_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include "kl_err.h"
#include "tls_ids.h"

#define CRYPTO_SHA256_LEN 32
#define CRYPTO_MAX_DIGEST 64 /* SHA-512 */

struct crypto_pubkey;

/* The EC curves a token key may be on (P-521 keys load, no TLS 1.3 scheme of ours uses them). */
enum crypto_curve { CRYPTO_CURVE_UNKNOWN = 0, CRYPTO_CURVE_P256, CRYPTO_CURVE_P384, CRYPTO_CURVE_P521 };

/* One-time set-up of libsodium and of the SHA-2 digests (fetched once from OpenSSL's
 * default provider); idempotent and thread-safe. 0 or KL_ERR_CRYPTO. */
KL_MUST_CHECK int crypto_init(void);

/* SHA-256 of len bytes at data into out. Cannot fail. */
void crypto_sha256(uint8_t out[CRYPTO_SHA256_LEN], const void *data, size_t len);

/*
 * out = hash(data) for TLS_HASH_SHA256/384/512; out holds CRYPTO_MAX_DIGEST bytes and
 * *out_len_p receives the digest length. KL_ERR_INVALID for TLS_HASH_NONE or an unknown hash.
 */
KL_MUST_CHECK int crypto_digest(uint8_t out[CRYPTO_MAX_DIGEST], size_t *out_len_p, enum tls_hash hash, const void *data,
                                size_t len);

/* 1 if the len bytes at a and b are equal, else 0, in time that depends on len only. */
int crypto_equal(const void *a, const void *b, size_t len);

/*
 * The curve named by a DER OBJECT IDENTIFIER (CKA_EC_PARAMS in its namedCurve form), or
 * CRYPTO_CURVE_UNKNOWN for anything else (other OIDs, explicit parameters, garbage).
 */
enum crypto_curve crypto_curve_from_params(const uint8_t *der, size_t len);

/* The field size in bytes (32, 48, 66): each of r and s in a raw ECDSA signature. 0 if unknown. */
size_t crypto_curve_field_len(enum crypto_curve curve);

/* A public key from an RSA modulus and public exponent (big-endian, as CKA_MODULUS and
 * CKA_PUBLIC_EXPONENT hold them). */
KL_MUST_CHECK int crypto_pubkey_rsa(struct crypto_pubkey **pk_p, const uint8_t *n, size_t n_len, const uint8_t *e,
                                    size_t e_len);

/* A public key from an uncompressed or compressed SEC1 point on curve (the inside of
 * CKA_EC_POINT). KL_ERR_CRYPTO if the point is not on the curve. */
KL_MUST_CHECK int crypto_pubkey_ec(struct crypto_pubkey **pk_p, enum crypto_curve curve, const uint8_t *point,
                                   size_t point_len);

/* A public key from a raw 32-byte Ed25519 point (RFC 8032). */
KL_MUST_CHECK int crypto_pubkey_ed25519(struct crypto_pubkey **pk_p, const uint8_t *point, size_t point_len);

/* The key's SubjectPublicKeyInfo in DER into out (capacity *len_p in, length out). */
KL_MUST_CHECK int crypto_pubkey_spki(const struct crypto_pubkey *pk, uint8_t *out, size_t *len_p);

/* The maximum signature size in bytes (for RSA the modulus length). */
size_t crypto_pubkey_size(const struct crypto_pubkey *pk);

/*
 * Verify an RSASSA-PSS signature over digest (MGF1 with the same hash, salt length = the
 * hash length, as TLS 1.3 requires). 0 if it verifies, KL_ERR_CRYPTO if not.
 */
KL_MUST_CHECK int crypto_rsa_pss_verify(const struct crypto_pubkey *pk, enum tls_hash hash, const uint8_t *sig,
                                        size_t sig_len, const uint8_t *digest, size_t digest_len);

/*
 * The audit public key from a PEM SubjectPublicKeyInfo file ("BEGIN PUBLIC KEY"), which
 * must be an EC key. KL_ERR_IO if the file cannot be opened, KL_ERR_CRYPTO if it holds no
 * EC public key.
 */
KL_MUST_CHECK int crypto_pubkey_from_pem_file(struct crypto_pubkey **pk_p, const char *path);

/* A public key from SubjectPublicKeyInfo DER (exactly der_len bytes). KL_ERR_CRYPTO if not one. */
KL_MUST_CHECK int crypto_pubkey_from_spki(struct crypto_pubkey **pk_p, const uint8_t *der, size_t der_len);

/*
 * Verify a DER ECDSA signature over SHA-256(data) with the EC key pk (an audit checkpoint).
 * 0 if it verifies, KL_ERR_CRYPTO if not (or pk is not an EC key).
 */
KL_MUST_CHECK int crypto_ecdsa_sha256_verify(const struct crypto_pubkey *pk, const uint8_t *sig, size_t sig_len,
                                             const void *data, size_t data_len);

/*
 * Verify a TLS 1.3 CertificateVerify signature the way a client will, before it is
 * released (issue 13 §5: a faulty Ed25519 or RSA-CRT signature can leak the key): sig over
 * content (the whole RFC 8446 §4.4.3 content) with scheme's algorithm (ECDSA: DER with the
 * scheme's hash; RSA-PSS: MGF1 and salt = the hash length; Ed25519: PureEdDSA) under the
 * public key in spki (DER SubjectPublicKeyInfo, as p11_key_spki() gives it). Borrowed
 * arguments. 0 if it verifies; KL_ERR_CRYPTO if it does not, or the key is not of the
 * scheme's type or does not parse; KL_ERR_INVALID for an unknown scheme or a NULL pointer.
 */
KL_MUST_CHECK int crypto_verify_tls_signature(const uint8_t *spki, size_t spki_len, uint16_t scheme,
                                              const uint8_t *content, size_t content_len, const uint8_t *sig,
                                              size_t sig_len);

/* NULL is a no-op. */
void crypto_pubkey_free(struct crypto_pubkey *pk);

/*
 * A raw ECDSA signature r || s (two halves of equal length, as PKCS#11 CKM_ECDSA returns
 * it) to the DER ECDSA-Sig-Value TLS sends, into out (capacity *out_len_p in, length out).
 * KL_ERR_CRYPTO for an empty or odd-length input or halves over 16 KiB, KL_ERR_OVERFLOW if
 * out is too small.
 */
KL_MUST_CHECK int crypto_ecdsa_raw_to_der(uint8_t *out, size_t *out_len_p, const uint8_t *rs, size_t rs_len);

#endif
