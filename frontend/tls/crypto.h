/*
 * crypto.h - every cryptographic primitive the TLS engine uses (docs/HACKING.md: one dependency, one file).
 *
 * crypto.c is the only file of the engine that includes libsodium or OpenSSL headers.
 * libsodium provides X25519, one-shot SHA-256, randomness, constant-time compare and
 * wiping; libcrypto provides the transcript hashes, HMAC/HKDF, the three AEADs (its
 * ChaCha20-Poly1305 and SHA-256 are the vectorised/SHA-NI ones, several times faster
 * than libsodium's here: docs/TLS-ENGINE.md), P-256/P-384/P-521 ECDHE, X448, the RFC 7919
 * finite-field groups and X.509 parsing.
 * Nothing here is hand-written crypto.
 *
 * Errors: 0 or a negative KL_ERR_*. A failing library call is KL_ERR_CRYPTO; bad peer
 * input is the alert RFC 8446 names (an invalid key share is KL_ERR_ILLEGAL_PARAMETER,
 * a failed AEAD open is KL_ERR_BAD_RECORD_MAC).
 *
 * Secrets: every struct here that holds key material is wiped by its _dispose.
 */
#ifndef KL_CRYPTO_H
#define KL_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include "kl_buf.h"
#include "kl_err.h"

#define CRYPTO_MAX_HASH 48     /* SHA-384 */
#define CRYPTO_MAX_KEY 32      /* AES-256 / ChaCha20 */
#define CRYPTO_IV_LEN 12       /* every TLS 1.3 AEAD */
#define CRYPTO_TAG_LEN 16      /* every TLS 1.3 AEAD */
#define CRYPTO_MAX_SHARE 1024  /* ffdhe8192: Y padded to the size of p */
#define CRYPTO_MAX_SHARED 1024 /* ffdhe8192: Z padded to the size of p */

/* ---- library setup ---- */

/* sodium_init() and friends; idempotent, call once before anything else. */
KL_MUST_CHECK int crypto_init(void);
/* Free this thread's cached HMAC contexts (wiping their key state) and fetched AEAD ciphers. Optional, at
   thread/process end. */
void crypto_thread_cleanup(void);

/* ---- hashes ---- */

enum crypto_hash_alg {
    CRYPTO_HASH_SHA256 = 1,
    CRYPTO_HASH_SHA384 = 2,
};

/* 32 or 48; 0 for an unknown alg. */
size_t crypto_hash_len(enum crypto_hash_alg alg);
/* One-shot: out gets crypto_hash_len(alg) bytes. */
KL_MUST_CHECK int crypto_digest(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *in, size_t in_len);

/*
 * A running hash (the handshake transcript). crypto_hash_ctx_peek gives the hash of
 * everything so far without finalizing, so the transcript can be read after every message.
 * Allocates one library context at _init; no allocation afterwards.
 */
struct crypto_hash_ctx {
    enum crypto_hash_alg alg;
    void *md;      /* EVP_MD_CTX: the running hash */
    void *scratch; /* EVP_MD_CTX: where peek finalizes a copy, so peek allocates nothing */
};
KL_MUST_CHECK int crypto_hash_ctx_init(struct crypto_hash_ctx *h, enum crypto_hash_alg alg);
KL_MUST_CHECK int crypto_hash_ctx_update(struct crypto_hash_ctx *h, const uint8_t *in, size_t in_len);
/* out gets crypto_hash_len(h->alg) bytes; h keeps running. */
KL_MUST_CHECK int crypto_hash_ctx_peek(const struct crypto_hash_ctx *h, uint8_t *out);
/* The hash of everything so far followed by extra, without adding extra to h (h keeps running). */
KL_MUST_CHECK int crypto_hash_ctx_peek_extra(const struct crypto_hash_ctx *h, uint8_t *out, const uint8_t *extra,
                                             size_t extra_len);
/* Start over (empty input), keeping the algorithm. */
KL_MUST_CHECK int crypto_hash_ctx_reset(struct crypto_hash_ctx *h);
/* Free; NULL-safe, idempotent. */
void crypto_hash_ctx_dispose(struct crypto_hash_ctx *h);

/*
 * HMAC (RFC 2104): out gets crypto_hash_len(alg) bytes. Uses a per-thread HMAC context
 * (made on first use) so that the key schedule allocates nothing per call.
 */
KL_MUST_CHECK int crypto_hmac(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *key, size_t key_len,
                              const uint8_t *in, size_t in_len);

/* HKDF-Extract (RFC 5869 2.2): prk gets crypto_hash_len(alg) bytes. salt NULL/0 means hash_len zeros. */
KL_MUST_CHECK int crypto_hkdf_extract(enum crypto_hash_alg alg, uint8_t *prk, const uint8_t *salt, size_t salt_len,
                                      const uint8_t *ikm, size_t ikm_len);
/*
 * HKDF-Expand (RFC 5869 2.3): out_len <= 255 * hash_len, info_len <= 1024 (TLS labels are
 * at most 514 bytes). KL_ERR_INVALID otherwise.
 */
KL_MUST_CHECK int crypto_hkdf_expand(enum crypto_hash_alg alg, uint8_t *out, size_t out_len, const uint8_t *prk,
                                     size_t prk_len, const uint8_t *info, size_t info_len);

/* ---- AEAD (one direction of a record layer) ---- */

/*
 * A keyed AEAD for one TLS 1.3 cipher suite (0x1301, 0x1302, 0x1303). It keeps one
 * initialized EVP_CIPHER_CTX, so sealing/opening a record allocates nothing.
 */
struct crypto_aead {
    uint16_t suite; /* 0 when not keyed */
    int encrypt;
    void *evp; /* EVP_CIPHER_CTX holding the expanded key */
};

/* The suite's hash, key length; 0 for an unknown suite (never negotiate it). */
enum crypto_hash_alg crypto_suite_hash(uint16_t suite);
size_t crypto_suite_key_len(uint16_t suite);

/* Key (or re-key) a. KL_ERR_INVALID for an unknown suite or a wrong key length. */
KL_MUST_CHECK int crypto_aead_init(struct crypto_aead *a, uint16_t suite, int encrypt, const uint8_t *key,
                                   size_t key_len);
/* out gets in_len + CRYPTO_TAG_LEN bytes (ciphertext then tag); out may equal in. */
KL_MUST_CHECK int crypto_aead_seal(struct crypto_aead *a, uint8_t *out, const uint8_t nonce[CRYPTO_IV_LEN],
                                   const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len);
/*
 * Gather form: seals the concatenation of in[0..n_in) without copying it first (the record
 * layer passes content, type byte and padding). out must not overlap the inputs.
 */
KL_MUST_CHECK int crypto_aead_seal_v(struct crypto_aead *a, uint8_t *out, const uint8_t nonce[CRYPTO_IV_LEN],
                                     const uint8_t *aad, size_t aad_len, const struct kl_span *in, size_t n_in);
/*
 * in is ciphertext ‖ tag (in_len >= CRYPTO_TAG_LEN); out gets in_len - CRYPTO_TAG_LEN bytes
 * and may equal in. KL_ERR_BAD_RECORD_MAC when the tag does not verify (out is wiped).
 */
KL_MUST_CHECK int crypto_aead_open(struct crypto_aead *a, uint8_t *out, const uint8_t nonce[CRYPTO_IV_LEN],
                                   const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len);
/* Wipe the key and free the library context; NULL-safe, idempotent. */
void crypto_aead_dispose(struct crypto_aead *a);

/*
 * ---- (EC)DHE key exchange: x25519, secp256r1, secp384r1, x448, secp521r1, ffdhe2048..8192 ----
 *
 * Cost of one generate + derive (what a handshake does), measured on one core of the 2-core
 * CI machine with OpenSSL 3.0 and libsodium: x25519 0.07 ms, P-256 0.12 ms, P-384 1.6 ms,
 * x448 0.34 ms, P-521 0.6 ms, ffdhe2048 0.5 ms, ffdhe3072 1.3 ms, ffdhe4096 3.8 ms,
 * ffdhe6144 8.4 ms, ffdhe8192 17.6 ms (the finite-field ones with OpenSSL's short private
 * exponents, 225..400 bits). A handshake does one generate and one derive whatever the client
 * sends (a HelloRetryRequest computes nothing, and a connection gets one at most), so a
 * hostile client makes the server spend at most one of these per connection attempt,
 * on a group the server's list allows.
 */

struct crypto_kex {
    uint16_t group;                /* TLS_GROUP_*; 0 when empty */
    uint8_t priv[32];              /* X25519 private key */
    void *pkey;                    /* EVP_PKEY for every other group */
    uint8_t pub[CRYPTO_MAX_SHARE]; /* our key_share: X25519/X448 u, 0x04 ‖ x ‖ y, or Y padded to p */
    size_t pub_len;
};

/* The key_share length for a group (32, 65, 97, 56, 133, or the size of p); 0 if unsupported. */
size_t crypto_kex_share_len(uint16_t group);
/* The shared secret length for a group (32, 32, 48, 56, 66, or the size of p); 0 if unsupported. */
size_t crypto_kex_secret_len(uint16_t group);
/* A fresh ephemeral key pair; k is overwritten, not disposed. KL_ERR_INVALID for an unsupported group. */
KL_MUST_CHECK int crypto_kex_generate(struct crypto_kex *k, uint16_t group);
/*
 * Tests only (RFC 8448 traces, RFC 7748 vectors): use a fixed private key — 32 bytes for
 * X25519 and P-256, 48 for P-384, 66 for P-521 (big-endian scalars), 56 for X448. The public
 * share is computed from it. KL_ERR_INVALID for the finite-field groups.
 */
KL_MUST_CHECK int crypto_kex_set_private(struct crypto_kex *k, uint16_t group, const uint8_t *priv, size_t priv_len);
/*
 * The (EC)DHE shared secret with the peer's key_share: the X25519/X448 output, the
 * x-coordinate for the NIST curves (RFC 8446 7.4.2), or Z left-padded with zeros to the size
 * of p for the finite-field groups (7.4.1). The peer share must be exactly the group's length
 * (a finite-field Y padded to the size of p, 4.2.8.1); NIST points in uncompressed 0x04 form
 * and on the curve; a finite-field Y with 1 < Y < p-1 (RFC 7919 5.1); an all-zero X25519 or
 * X448 output (low-order peer point) is refused too. All of those are
 * KL_ERR_ILLEGAL_PARAMETER. secret gets crypto_kex_secret_len(k->group) bytes;
 * *secret_len_p is set to it.
 */
KL_MUST_CHECK int crypto_kex_derive(struct crypto_kex *k, uint8_t *secret, size_t *secret_len_p, const uint8_t *peer,
                                    size_t peer_len);
/* Wipe and free; NULL-safe, idempotent. */
void crypto_kex_dispose(struct crypto_kex *k);

/* ---- randomness, comparison, wiping ---- */

void crypto_random(void *buf, size_t len);
/* 1 if equal, in time independent of the contents. */
int crypto_equal(const void *a, const void *b, size_t len);
void crypto_wipe(void *p, size_t len);

/*
 * ---- PEM for ECH key files (tls_ech_key_load / _write_pem) ----
 *
 * A key file is PEM text (draft-farrell-tls-pemesni): a "PRIVATE KEY" block (PKCS#8, an
 * X25519 key) and an "ECHCONFIG" block (an ECHConfigList). These read PEM text already in
 * memory (the caller bounds it) and write into the caller's buffer; every decoded private
 * key byte is wiped before it is released.
 */

/*
 * The raw X25519 private key of the first "PRIVATE KEY" block of pem. KL_ERR_NOT_FOUND when
 * there is no such block or its base64 or PKCS#8 DER does not decode (or has trailing bytes);
 * KL_ERR_INVALID when the key is not an X25519 key. sk is wiped on failure.
 */
KL_MUST_CHECK int crypto_pem_read_x25519(uint8_t sk[32], const char *pem, size_t pem_len);
/*
 * The decoded body of the first PEM block called name (e.g. "ECHCONFIG") into out (cap
 * bytes). KL_ERR_NOT_FOUND when there is none, or its base64 does not decode;
 * KL_ERR_OVERFLOW when it is longer than cap.
 */
KL_MUST_CHECK int crypto_pem_read_block(uint8_t *out, size_t cap, size_t *len_p, const char *pem, size_t pem_len,
                                        const char *name);
/*
 * Append a PKCS#8 "PRIVATE KEY" block for the X25519 key sk at buf + *len_p (cap bytes in
 * all, kept NUL-terminated); *len_p grows by what was written. KL_ERR_OVERFLOW if it does
 * not fit (buf is then wiped past the old *len_p).
 */
KL_MUST_CHECK int crypto_pem_write_x25519(char *buf, size_t cap, size_t *len_p, const uint8_t sk[32]);
/* Append a PEM block called name holding data, the same way. */
KL_MUST_CHECK int crypto_pem_write_block(char *buf, size_t cap, size_t *len_p, const char *name, const uint8_t *data,
                                         size_t data_len);

/* ---- certificates (public data only: the private key is in the signer) ---- */

/*
 * A certificate chain read from a PEM file, each as DER, leaf first. The DER buffers are
 * owned by the struct and freed by crypto_chain_dispose().
 */
#define CRYPTO_MAX_CHAIN 8
struct crypto_chain {
    uint8_t *der[CRYPTO_MAX_CHAIN];
    size_t der_len[CRYPTO_MAX_CHAIN];
    size_t n;
};
/*
 * Read every CERTIFICATE block of a PEM file. KL_ERR_CONFIG if the file cannot be read,
 * holds no certificate, a block does not parse, or there are more than CRYPTO_MAX_CHAIN.
 */
KL_MUST_CHECK int crypto_chain_load_pem(struct crypto_chain *c, const char *path);
void crypto_chain_dispose(struct crypto_chain *c);

enum crypto_key_type {
    CRYPTO_KEY_UNKNOWN = 0,
    CRYPTO_KEY_EC_P256,
    CRYPTO_KEY_EC_P384,
    CRYPTO_KEY_RSA,
    CRYPTO_KEY_ED25519,
};

/* The key type of a DER certificate's public key. KL_ERR_CONFIG if it does not parse. */
KL_MUST_CHECK int crypto_cert_key_type(const uint8_t *der, size_t der_len, enum crypto_key_type *type_p);
/*
 * The TLS 1.3 signature schemes a key type can produce, in our preference order
 * (P-256 → 0x0403, P-384 → 0x0503, RSA → 0x0804 0x0805 0x0806, Ed25519 → 0x0807).
 * Returns the count written (at most max).
 */
size_t crypto_key_type_schemes(enum crypto_key_type type, uint16_t *schemes, size_t max);
/*
 * The certificate's SubjectPublicKeyInfo DER, copied into spki (capacity spki_cap).
 * KL_ERR_CONFIG if it does not parse, KL_ERR_OVERFLOW if it does not fit.
 */
KL_MUST_CHECK int crypto_cert_spki(const uint8_t *der, size_t der_len, uint8_t *spki, size_t spki_cap,
                                   size_t *spki_len_p);
/*
 * The dNSName entries of the subjectAltName, each copied NUL-terminated into names[i]
 * (name_cap bytes each). Returns the count via *n_p (at most max; longer names and the
 * rest are skipped). A certificate without SAN gives 0 names.
 */
KL_MUST_CHECK int crypto_cert_dns_names(const uint8_t *der, size_t der_len, char (*names)[256], size_t max,
                                        size_t *n_p);
/* The leaf's notAfter as Unix time (for the certificate expiry gauge). 0, or KL_ERR_CONFIG. */
KL_MUST_CHECK int crypto_cert_not_after(const uint8_t *der, size_t der_len, int64_t *t_p);

/*
 * Verify a signature made with the certificate's key over msg with a TLS 1.3 scheme
 * (the whole CertificateVerify content, not a digest). 0 if valid,
 * KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR) if not, KL_ERR_ILLEGAL_PARAMETER if the key does not
 * fit the scheme (type, or curve for ECDSA), KL_ERR_INVALID for an unsupported scheme.
 * For tests and for checking what the signer returned against the certificate.
 */
KL_MUST_CHECK int crypto_cert_verify(const uint8_t *der, size_t der_len, uint16_t scheme, const uint8_t *msg,
                                     size_t msg_len, const uint8_t *sig, size_t sig_len);

/* ---- client certificates (mTLS, RFC 8446 4.3.2, 4.4.2): the chain check ---- */

/*
 * The trust anchors a listener checks client certificates against: an X509_STORE with the
 * CA bundle (and the CRLs when given) plus the CAs' subject names, encoded as the body of
 * a certificate_authorities extension (RFC 8446 4.2.4). Immutable once loaded, so every
 * connection of a configuration shares it. Public data only.
 */
struct crypto_client_ca;

/* Why crypto_client_ca_load() failed: the caller words the message. */
enum crypto_client_ca_error {
    CRYPTO_CLIENT_CA_OK = 0,
    CRYPTO_CLIENT_CA_CANNOT_OPEN, /* the CA bundle cannot be opened */
    CRYPTO_CLIENT_CA_NO_CERT,     /* no certificate in it, or a block that does not parse */
    CRYPTO_CLIENT_CA_CRL_OPEN,    /* the CRL file cannot be opened */
    CRYPTO_CLIENT_CA_NO_CRL,      /* no CRL in it, or a block that does not parse */
    CRYPTO_CLIENT_CA_NO_MEMORY,
};

/*
 * Load a PEM CA bundle (every CERTIFICATE block is a trust anchor) and, if crl_path is not
 * NULL, a PEM file of X509 CRLs: then the leaf's revocation is checked (and a CA without a
 * CRL in the file makes every leaf it issued fail as unknown_ca). depth bounds the number
 * of intermediate CAs between the leaf and the anchor (OpenSSL's verify depth).
 * 0 with *ca_p set, or KL_ERR_CONFIG / KL_ERR_NO_MEMORY with *why_p saying why.
 */
KL_MUST_CHECK int crypto_client_ca_load(struct crypto_client_ca **ca_p, enum crypto_client_ca_error *why_p,
                                        const char *ca_path, const char *crl_path, unsigned depth);
/* NULL-safe. */
void crypto_client_ca_free(struct crypto_client_ca *ca);
/* The crypto object behind tls.h's public handle (cert.c); NULL for NULL. */
struct tls_client_ca;
const struct crypto_client_ca *tls_client_ca_crypto(const struct tls_client_ca *ca);
/* The number of CA certificates loaded. */
size_t crypto_client_ca_count(const struct crypto_client_ca *ca);
/*
 * The certificate_authorities extension body (DistinguishedName authorities<3..2^16-1>,
 * with its u16 length), or an empty span when the names do not fit in 2^16-1 bytes.
 */
struct kl_span crypto_client_ca_names(const struct crypto_client_ca *ca);

#define CRYPTO_ID_TEXT 256
/* Who a verified client certificate names. Text is printable ASCII/UTF-8: controls become '?'. */
struct crypto_peer_id {
    uint8_t sha256[32];              /* SHA-256 of the leaf's DER */
    char subject_cn[CRYPTO_ID_TEXT]; /* the subject's (last) commonName, or "" */
    char san[CRYPTO_ID_TEXT];        /* subjectAltName DNS/email/URI entries: "DNS:a,email:b", truncated */
    char subject[CRYPTO_ID_TEXT];    /* the whole subject, RFC 2253 form, truncated */
};

/*
 * Check a client's chain (DER, leaf first, n >= 1; the rest are untrusted intermediates)
 * against ca for the clientAuth purpose, the time (at: Unix seconds, 0 = now; tests replay
 * old traces), the depth and the CRLs. 0 with
 * *id filled, or the alert libssl sends for the failure: certificate_expired (expired
 * certificate or CRL), bad_certificate (not yet valid, bad signature, does not parse, ...),
 * unknown_ca (no path to an anchor, chain too long, no CRL for the issuer),
 * certificate_revoked, unsupported_certificate (not for clientAuth). *x509_err_p gets
 * OpenSSL's verify code (0 = ok) for logs.
 */
KL_MUST_CHECK int crypto_client_chain_verify(const struct crypto_client_ca *ca, const uint8_t *const *der,
                                             const size_t *der_len, size_t n, int64_t at, struct crypto_peer_id *id,
                                             int *x509_err_p);

#endif
