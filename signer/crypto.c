/*
 * crypto.c - libcrypto and libsodium for the signer (the contracts are in crypto.h).
 *
 * libsodium for SHA-256 (crypto_sha256: audit chain, SPKI hashes) and the constant-time
 * compare, libcrypto for everything with a public key and for the digests of the signed
 * content (fetched once: issue 15), as in the design's table of who provides what.
 */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "crypto.h"

/*
 * Issue 15: a configured RSA-PSS verification context per hash, kept for the next
 * signature (making one costs ~57,000 instructions: a sixth of the verification). One
 * spare per hash under a lock: a thread takes it or makes its own, and puts it back if
 * the slot is empty. Behind a pointer so that the const key can lend it.
 */
#define PSS_HASHES 3 /* SHA-256, SHA-384, SHA-512 */
struct pss_spares {
    pthread_mutex_t lock;
    EVP_PKEY_CTX *ctx[PSS_HASHES];
};

struct crypto_pubkey {
    EVP_PKEY *pkey;
    struct pss_spares *pss; /* NULL: none kept (not RSA, or its allocation failed) */
};

/*
 * The digests, fetched from the default provider once (issue 15): EVP_sha256() and
 * friends make EVP_Digest fetch the implementation again on every call, a lookup that
 * costs more than hashing a short input. Kept for the process's life. A NULL (a failed
 * fetch) falls back to the implicit fetch.
 */
static EVP_MD *fetched_sha256, *fetched_sha384, *fetched_sha512;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_digests(void)
{
    fetched_sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    fetched_sha384 = EVP_MD_fetch(NULL, "SHA2-384", NULL);
    fetched_sha512 = EVP_MD_fetch(NULL, "SHA2-512", NULL);
}

int crypto_init(void)
{
    /* Here too, so that the fetch (which may read the OpenSSL configuration) happens at
     * start-up, before the seccomp filter. */
    (void)pthread_once(&fetch_once, fetch_digests);
    /* sodium_init() returns 1 when it already ran: both are success. */
    return sodium_init() < 0 ? KL_ERR_CRYPTO : 0;
}

static const EVP_MD *md_of(enum tls_hash hash)
{
    (void)pthread_once(&fetch_once, fetch_digests);
    switch (hash) {
    case TLS_HASH_SHA256:
        return fetched_sha256 != NULL ? fetched_sha256 : EVP_sha256();
    case TLS_HASH_SHA384:
        return fetched_sha384 != NULL ? fetched_sha384 : EVP_sha384();
    case TLS_HASH_SHA512:
        return fetched_sha512 != NULL ? fetched_sha512 : EVP_sha512();
    case TLS_HASH_NONE:
    default:
        return NULL;
    }
}

void crypto_sha256(uint8_t out[CRYPTO_SHA256_LEN], const void *data, size_t len)
{
    /* libsodium, as DESIGN.md's table assigns SHA-256 (OpenSSL's, with the CPU's SHA
     * extensions, measured 1.8 -> 0.45 µs on a 600-byte audit line: a few µs per signature,
     * not worth leaving the table for). */
    crypto_hash_sha256(out, data, len);
}

int crypto_digest(uint8_t out[CRYPTO_MAX_DIGEST], size_t *out_len_p, enum tls_hash hash, const void *data, size_t len)
{
    const EVP_MD *md = md_of(hash);
    unsigned n = 0;

    if (md == NULL || out == NULL || out_len_p == NULL)
        return KL_ERR_INVALID;
    if (EVP_Digest(data, len, out, &n, md, NULL) != 1)
        return KL_ERR_CRYPTO;
    *out_len_p = n;
    return 0;
}

int crypto_equal(const void *a, const void *b, size_t len)
{
    return sodium_memcmp(a, b, len) == 0;
}

enum crypto_curve crypto_curve_from_params(const uint8_t *der, size_t len)
{
    const uint8_t *p = der;
    ASN1_OBJECT *oid;
    int nid;

    if (der == NULL || len == 0 || len > LONG_MAX)
        return CRYPTO_CURVE_UNKNOWN;
    oid = d2i_ASN1_OBJECT(NULL, &p, (long)len);
    nid = oid != NULL ? OBJ_obj2nid(oid) : NID_undef;
    ASN1_OBJECT_free(oid);
    switch (nid) {
    case NID_X9_62_prime256v1:
        return CRYPTO_CURVE_P256;
    case NID_secp384r1:
        return CRYPTO_CURVE_P384;
    case NID_secp521r1:
        return CRYPTO_CURVE_P521;
    default:
        return CRYPTO_CURVE_UNKNOWN;
    }
}

size_t crypto_curve_field_len(enum crypto_curve curve)
{
    switch (curve) {
    case CRYPTO_CURVE_P256:
        return 32;
    case CRYPTO_CURVE_P384:
        return 48;
    case CRYPTO_CURVE_P521:
        return 66;
    case CRYPTO_CURVE_UNKNOWN:
    default:
        return 0;
    }
}

static const char *curve_name(enum crypto_curve curve)
{
    switch (curve) {
    case CRYPTO_CURVE_P256:
        return SN_X9_62_prime256v1;
    case CRYPTO_CURVE_P384:
        return SN_secp384r1;
    case CRYPTO_CURVE_P521:
        return SN_secp521r1;
    case CRYPTO_CURVE_UNKNOWN:
    default:
        return NULL;
    }
}

/* Wrap pkey (taking it) into a fresh crypto_pubkey. */
static int pubkey_wrap(struct crypto_pubkey **pk_p, EVP_PKEY *pkey)
{
    struct crypto_pubkey *pk = calloc(1, sizeof(*pk));
    if (pk == NULL) {
        EVP_PKEY_free(pkey);
        return KL_ERR_NO_MEMORY;
    }
    pk->pkey = pkey;
    if (EVP_PKEY_is_a(pkey, "RSA") && (pk->pss = calloc(1, sizeof(*pk->pss))) != NULL &&
        pthread_mutex_init(&pk->pss->lock, NULL) != 0) {
        free(pk->pss);
        pk->pss = NULL;
    }
    *pk_p = pk;
    return 0;
}

/* A public EVP_PKEY of type ("RSA", "EC") from the parameters in bld. */
static int pubkey_from_params(struct crypto_pubkey **pk_p, const char *type, OSSL_PARAM_BLD *bld)
{
    int ret = 0;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;

    params = OSSL_PARAM_BLD_to_param(bld);
    KL_ENSURE(params != NULL, KL_ERR_CRYPTO);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    KL_ENSURE(ctx != NULL, KL_ERR_CRYPTO);
    KL_ENSURE(EVP_PKEY_fromdata_init(ctx) == 1, KL_ERR_CRYPTO);
    KL_ENSURE(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1, KL_ERR_CRYPTO);
    ret = pubkey_wrap(pk_p, pkey);
exit:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return ret;
}

int crypto_pubkey_rsa(struct crypto_pubkey **pk_p, const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len)
{
    int ret = 0;
    BIGNUM *bn_n = NULL, *bn_e = NULL;
    OSSL_PARAM_BLD *bld = NULL;

    KL_ENSURE(pk_p != NULL && n != NULL && e != NULL && n_len > 0 && e_len > 0 && n_len <= INT_MAX && e_len <= INT_MAX,
              KL_ERR_INVALID);
    bn_n = BN_bin2bn(n, (int)n_len, NULL);
    bn_e = BN_bin2bn(e, (int)e_len, NULL);
    bld = OSSL_PARAM_BLD_new();
    KL_ENSURE(bn_n != NULL && bn_e != NULL && bld != NULL, KL_ERR_NO_MEMORY);
    KL_ENSURE(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) == 1, KL_ERR_CRYPTO);
    KL_ENSURE(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1, KL_ERR_CRYPTO);
    KL_TRY(pubkey_from_params(pk_p, "RSA", bld));
exit:
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    return ret;
}

int crypto_pubkey_ec(struct crypto_pubkey **pk_p, enum crypto_curve curve, const uint8_t *point, size_t point_len)
{
    int ret = 0;
    const char *name = curve_name(curve);
    OSSL_PARAM_BLD *bld = NULL;

    KL_ENSURE(pk_p != NULL && name != NULL && point != NULL && point_len > 0, KL_ERR_INVALID);
    bld = OSSL_PARAM_BLD_new();
    KL_ENSURE(bld != NULL, KL_ERR_NO_MEMORY);
    KL_ENSURE(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, name, 0) == 1, KL_ERR_CRYPTO);
    KL_ENSURE(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, point_len) == 1, KL_ERR_CRYPTO);
    KL_TRY(pubkey_from_params(pk_p, "EC", bld));
exit:
    OSSL_PARAM_BLD_free(bld);
    return ret;
}

int crypto_pubkey_ed25519(struct crypto_pubkey **pk_p, const uint8_t *point, size_t point_len)
{
    EVP_PKEY *pkey;

    if (pk_p == NULL || point == NULL || point_len != 32)
        return KL_ERR_INVALID;
    pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, point, point_len);
    if (pkey == NULL)
        return KL_ERR_CRYPTO;
    return pubkey_wrap(pk_p, pkey);
}

int crypto_pubkey_spki(const struct crypto_pubkey *pk, uint8_t *out, size_t *len_p)
{
    int ret = 0, der_len;
    unsigned char *der = NULL;

    KL_ENSURE(pk != NULL && out != NULL && len_p != NULL, KL_ERR_INVALID);
    der_len = i2d_PUBKEY(pk->pkey, &der);
    KL_ENSURE(der_len > 0, KL_ERR_CRYPTO);
    KL_ENSURE((size_t)der_len <= *len_p, KL_ERR_OVERFLOW);
    memcpy(out, der, (size_t)der_len);
    *len_p = (size_t)der_len;
exit:
    OPENSSL_free(der);
    return ret;
}

size_t crypto_pubkey_size(const struct crypto_pubkey *pk)
{
    int n = pk != NULL ? EVP_PKEY_get_size(pk->pkey) : 0;
    return n > 0 ? (size_t)n : 0;
}

static int pss_slot(enum tls_hash hash)
{
    switch (hash) {
    case TLS_HASH_SHA256:
        return 0;
    case TLS_HASH_SHA384:
        return 1;
    case TLS_HASH_SHA512:
        return 2;
    case TLS_HASH_NONE:
    default:
        return -1;
    }
}

int crypto_rsa_pss_verify(const struct crypto_pubkey *pk, enum tls_hash hash, const uint8_t *sig, size_t sig_len,
                          const uint8_t *digest, size_t digest_len)
{
    int ret = 0, slot = pss_slot(hash);
    const EVP_MD *md = md_of(hash);
    EVP_PKEY_CTX *ctx = NULL;

    KL_ENSURE(pk != NULL && md != NULL && slot >= 0 && sig != NULL && digest != NULL, KL_ERR_INVALID);
    if (pk->pss != NULL) {
        pthread_mutex_lock(&pk->pss->lock);
        ctx = pk->pss->ctx[slot];
        pk->pss->ctx[slot] = NULL;
        pthread_mutex_unlock(&pk->pss->lock);
    }
    if (ctx == NULL) {
        ctx = EVP_PKEY_CTX_new(pk->pkey, NULL);
        KL_ENSURE(ctx != NULL, KL_ERR_CRYPTO);
        KL_ENSURE(EVP_PKEY_verify_init(ctx) == 1, KL_ERR_CRYPTO);
        KL_ENSURE(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1, KL_ERR_CRYPTO);
        KL_ENSURE(EVP_PKEY_CTX_set_signature_md(ctx, md) == 1, KL_ERR_CRYPTO);
        KL_ENSURE(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) == 1, KL_ERR_CRYPTO);
        /* RFC 8446 section 4.2.3: "the length of the Salt MUST be equal to the length of
         * the output of the digest algorithm". */
        KL_ENSURE(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, EVP_MD_get_size(md)) == 1, KL_ERR_CRYPTO);
    }
    KL_ENSURE(EVP_PKEY_verify(ctx, sig, sig_len, digest, digest_len) == 1, KL_ERR_CRYPTO);
    /* Only a context that just verified goes back: one that failed is dropped. */
    if (pk->pss != NULL) {
        pthread_mutex_lock(&pk->pss->lock);
        if (pk->pss->ctx[slot] == NULL) {
            pk->pss->ctx[slot] = ctx;
            ctx = NULL;
        }
        pthread_mutex_unlock(&pk->pss->lock);
    }
exit:
    EVP_PKEY_CTX_free(ctx);
    return ret;
}

int crypto_verify_tls_signature(const uint8_t *spki, size_t spki_len, uint16_t scheme, const uint8_t *content,
                                size_t content_len, const uint8_t *sig, size_t sig_len)
{
    int ret = 0, want_type;
    const struct tls_scheme_info *si = tls_scheme_by_id(scheme);
    const unsigned char *p = spki;
    const EVP_MD *md = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_MD_CTX *mctx = NULL;
    EVP_PKEY_CTX *pctx = NULL;

    KL_ENSURE(si != NULL && spki != NULL && content != NULL && sig != NULL && spki_len <= LONG_MAX, KL_ERR_INVALID);
    switch (si->key) {
    case TLS_KEY_EC_P256:
    case TLS_KEY_EC_P384:
        want_type = EVP_PKEY_EC;
        break;
    case TLS_KEY_RSA:
        want_type = EVP_PKEY_RSA;
        break;
    case TLS_KEY_ED25519:
        want_type = EVP_PKEY_ED25519;
        break;
    default:
        KL_FAIL(KL_ERR_INVALID);
    }
    if (si->hash != TLS_HASH_NONE) {
        md = md_of(si->hash);
        KL_ENSURE(md != NULL, KL_ERR_INVALID);
    }
    pkey = d2i_PUBKEY(NULL, &p, (long)spki_len);
    KL_ENSURE(pkey != NULL && EVP_PKEY_get_base_id(pkey) == want_type, KL_ERR_CRYPTO);
    mctx = EVP_MD_CTX_new();
    KL_ENSURE(mctx != NULL, KL_ERR_NO_MEMORY);
    KL_ENSURE(EVP_DigestVerifyInit(mctx, &pctx, md, NULL, pkey) == 1, KL_ERR_CRYPTO);
    if (want_type == EVP_PKEY_RSA) {
        /* RFC 8446 section 4.2.3: RSASSA-PSS with MGF1, "the length of the Salt MUST be
         * equal to the length of the output of the digest algorithm". */
        KL_ENSURE(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                      EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) == 1 &&
                      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, EVP_MD_get_size(md)) == 1,
                  KL_ERR_CRYPTO);
    }
    KL_ENSURE(EVP_DigestVerify(mctx, sig, sig_len, content, content_len) == 1, KL_ERR_CRYPTO);
exit:
    EVP_MD_CTX_free(mctx);
    EVP_PKEY_free(pkey);
    return ret;
}

void crypto_pubkey_free(struct crypto_pubkey *pk)
{
    if (pk == NULL)
        return;
    if (pk->pss != NULL) {
        for (int i = 0; i < PSS_HASHES; i++)
            EVP_PKEY_CTX_free(pk->pss->ctx[i]);
        pthread_mutex_destroy(&pk->pss->lock);
        free(pk->pss);
    }
    EVP_PKEY_free(pk->pkey);
    free(pk);
}

/* DER length octets of n (n < 65536) at out; their count (1 to 3). */
static size_t der_len(uint8_t *out, size_t n)
{
    if (n < 0x80) {
        out[0] = (uint8_t)n;
        return 1;
    }
    if (n < 0x100) {
        out[0] = 0x81;
        out[1] = (uint8_t)n;
        return 2;
    }
    out[0] = 0x82;
    out[1] = (uint8_t)(n >> 8);
    out[2] = (uint8_t)n;
    return 3;
}

/* The DER INTEGER of the unsigned big-endian v[0..n): its minimal form (leading zero
 * octets dropped, one kept for zero) with a 0x00 in front when the top bit is set. */
static void der_uint_span(const uint8_t *v, size_t n, const uint8_t **start_p, size_t *len_p, int *pad_p)
{
    while (n > 1 && v[0] == 0) {
        v++;
        n--;
    }
    *start_p = v;
    *len_p = n;
    *pad_p = (v[0] & 0x80) != 0;
}

/*
 * By hand (issue 15): ECDSA_SIG/BN/i2d_ECDSA_SIG cost five allocations and about 8,000
 * instructions per signature for what is two INTEGERs in a SEQUENCE. The result is the
 * same DER (test_signer_crypto compares it with i2d_ECDSA_SIG).
 */
int crypto_ecdsa_raw_to_der(uint8_t *out, size_t *out_len_p, const uint8_t *rs, size_t rs_len)
{
    int ret = 0;
    const uint8_t *v[2];
    size_t vlen[2], ilen[2], body = 0, total, off = 0;
    int pad[2];
    uint8_t lenbuf[3];

    KL_ENSURE(out != NULL && out_len_p != NULL && rs != NULL, KL_ERR_INVALID);
    /* A half of more than 16 KiB is no ECDSA signature (P-521: 66 bytes); the bound keeps
     * every length below within der_len's range. */
    KL_ENSURE(rs_len > 0 && rs_len % 2 == 0 && rs_len / 2 <= 16384, KL_ERR_CRYPTO);
    for (int i = 0; i < 2; i++) {
        der_uint_span(rs + i * (rs_len / 2), rs_len / 2, &v[i], &vlen[i], &pad[i]);
        ilen[i] = vlen[i] + (size_t)pad[i];
        body += 1 + der_len(lenbuf, ilen[i]) + ilen[i];
    }
    total = 1 + der_len(lenbuf, body) + body;
    KL_ENSURE(total <= *out_len_p, KL_ERR_OVERFLOW);
    out[off++] = 0x30; /* SEQUENCE */
    off += der_len(out + off, body);
    for (int i = 0; i < 2; i++) {
        out[off++] = 0x02; /* INTEGER */
        off += der_len(out + off, ilen[i]);
        if (pad[i])
            out[off++] = 0x00;
        memcpy(out + off, v[i], vlen[i]);
        off += vlen[i];
    }
    *out_len_p = off;
exit:
    return ret;
}

int crypto_pubkey_from_pem_file(struct crypto_pubkey **pk_p, const char *path)
{
    FILE *f = NULL;
    EVP_PKEY *pkey = NULL, *tmp;
    int ret = 0;

    KL_ENSURE(pk_p != NULL && path != NULL, KL_ERR_INVALID);
    *pk_p = NULL;
    KL_ENSURE((f = fopen(path, "r")) != NULL, KL_ERR_IO);
    pkey = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    KL_ENSURE(pkey != NULL, KL_ERR_CRYPTO);
    /* The audit key is ECDSA P-256: anything else is the wrong file. */
    KL_ENSURE(EVP_PKEY_is_a(pkey, "EC"), KL_ERR_CRYPTO);
    tmp = pkey;
    pkey = NULL; /* pubkey_wrap() takes it, on failure too */
    KL_TRY(pubkey_wrap(pk_p, tmp));
exit:
    EVP_PKEY_free(pkey);
    if (f != NULL)
        fclose(f);
    ERR_clear_error();
    return ret;
}

int crypto_pubkey_from_spki(struct crypto_pubkey **pk_p, const uint8_t *der, size_t der_len)
{
    EVP_PKEY *pkey = NULL, *tmp;
    const unsigned char *p = der;
    int ret = 0;

    KL_ENSURE(pk_p != NULL && der != NULL && der_len > 0 && der_len <= LONG_MAX, KL_ERR_INVALID);
    *pk_p = NULL;
    pkey = d2i_PUBKEY(NULL, &p, (long)der_len);
    KL_ENSURE(pkey != NULL && p == der + der_len, KL_ERR_CRYPTO);
    tmp = pkey;
    pkey = NULL; /* pubkey_wrap() takes it, on failure too */
    KL_TRY(pubkey_wrap(pk_p, tmp));
exit:
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return ret;
}

int crypto_ecdsa_sha256_verify(const struct crypto_pubkey *pk, const uint8_t *sig, size_t sig_len, const void *data,
                               size_t data_len)
{
    EVP_MD_CTX *ctx = NULL;
    int ret = 0;

    KL_ENSURE(pk != NULL && sig != NULL && data != NULL, KL_ERR_INVALID);
    KL_ENSURE(EVP_PKEY_is_a(pk->pkey, "EC"), KL_ERR_CRYPTO);
    KL_ENSURE((ctx = EVP_MD_CTX_new()) != NULL, KL_ERR_NO_MEMORY);
    KL_ENSURE(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pk->pkey) == 1, KL_ERR_CRYPTO);
    KL_ENSURE(EVP_DigestVerify(ctx, sig, sig_len, data, data_len) == 1, KL_ERR_CRYPTO);
exit:
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ret;
}
