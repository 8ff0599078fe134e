/*
 * crypto.c - the TLS engine's only door to libsodium and libcrypto (docs/HACKING.md: one dependency, one file).
 * Contracts are in crypto.h. Nothing here implements a primitive: it picks the library
 * call, checks lengths and peer input, and wipes temporaries.
 */
#include <string.h>
#include <time.h>
#include <sodium.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/dh.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include "crypto.h"
#include "tls.h"

int crypto_init(void)
{
    if (sodium_init() < 0)
        return KL_ERR_CRYPTO;
    return 0;
}

/* ---- hashes ---- */

size_t crypto_hash_len(enum crypto_hash_alg alg)
{
    switch (alg) {
    case CRYPTO_HASH_SHA256:
        return 32;
    case CRYPTO_HASH_SHA384:
        return 48;
    default:
        return 0;
    }
}

static const EVP_MD *evp_md(enum crypto_hash_alg alg)
{
    switch (alg) {
    case CRYPTO_HASH_SHA256:
        return EVP_sha256();
    case CRYPTO_HASH_SHA384:
        return EVP_sha384();
    default:
        return NULL;
    }
}

int crypto_digest(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *in, size_t in_len)
{
    unsigned int len;
    switch (alg) {
    case CRYPTO_HASH_SHA256:
        crypto_hash_sha256(out, in, in_len);
        return 0;
    case CRYPTO_HASH_SHA384:
        if (EVP_Digest(in, in_len, out, &len, EVP_sha384(), NULL) != 1 || len != 48)
            return KL_ERR_CRYPTO;
        return 0;
    default:
        return KL_ERR_INVALID;
    }
}

int crypto_hash_ctx_init(struct crypto_hash_ctx *h, enum crypto_hash_alg alg)
{
    int ret;
    h->alg = alg;
    h->md = NULL;
    h->scratch = NULL;
    KL_ENSURE(evp_md(alg) != NULL, KL_ERR_INVALID);
    KL_ENSURE((h->md = EVP_MD_CTX_new()) != NULL, KL_ERR_NO_MEMORY);
    KL_ENSURE((h->scratch = EVP_MD_CTX_new()) != NULL, KL_ERR_NO_MEMORY);
    KL_TRY(crypto_hash_ctx_reset(h));
    ret = 0;
exit:
    if (ret != 0)
        crypto_hash_ctx_dispose(h);
    return ret;
}

int crypto_hash_ctx_update(struct crypto_hash_ctx *h, const uint8_t *in, size_t in_len)
{
    if (h->md == NULL)
        return KL_ERR_INVALID;
    if (EVP_DigestUpdate(h->md, in, in_len) != 1)
        return KL_ERR_CRYPTO;
    return 0;
}

int crypto_hash_ctx_peek(const struct crypto_hash_ctx *h, uint8_t *out)
{
    unsigned int len;
    if (h->md == NULL)
        return KL_ERR_INVALID;
    /* Finalize a copy: the running context must keep absorbing later messages. */
    if (EVP_MD_CTX_copy_ex(h->scratch, h->md) != 1 || EVP_DigestFinal_ex(h->scratch, out, &len) != 1 ||
        len != crypto_hash_len(h->alg))
        return KL_ERR_CRYPTO;
    return 0;
}

int crypto_hash_ctx_peek_extra(const struct crypto_hash_ctx *h, uint8_t *out, const uint8_t *extra, size_t extra_len)
{
    unsigned int len;
    if (h->md == NULL)
        return KL_ERR_INVALID;
    /* As peek, with extra absorbed by the copy only (a PSK binder over a truncated ClientHello). */
    if (EVP_MD_CTX_copy_ex(h->scratch, h->md) != 1 || EVP_DigestUpdate(h->scratch, extra, extra_len) != 1 ||
        EVP_DigestFinal_ex(h->scratch, out, &len) != 1 || len != crypto_hash_len(h->alg))
        return KL_ERR_CRYPTO;
    return 0;
}

int crypto_hash_ctx_reset(struct crypto_hash_ctx *h)
{
    if (h->md == NULL)
        return KL_ERR_INVALID;
    if (EVP_DigestInit_ex(h->md, evp_md(h->alg), NULL) != 1)
        return KL_ERR_CRYPTO;
    return 0;
}

void crypto_hash_ctx_dispose(struct crypto_hash_ctx *h)
{
    if (h == NULL)
        return;
    /* EVP_MD_CTX_free cleanses the digest state. */
    EVP_MD_CTX_free(h->md);
    EVP_MD_CTX_free(h->scratch);
    h->md = NULL;
    h->scratch = NULL;
}

/*
 * One HMAC context per hash per thread, made on first use: EVP_MAC_init with a new key
 * reuses it, which halves the cost of a short HMAC against a fresh context (the key
 * schedule does about 25 of them per handshake). libcrypto's SHA-256 uses the CPU's SHA
 * extensions where present, which libsodium's portable SHA-256 does not.
 */
static _Thread_local EVP_MAC_CTX *hmac_ctx[3];
/*
 * The three AEAD implementations, fetched once per thread: given the legacy EVP_aes_128_gcm()
 * and friends, OpenSSL 3's EVP_CipherInit_ex fetches the provider's implementation by name on
 * every call (four times per handshake, about 1 % of a handshake's instructions).
 */
static _Thread_local EVP_CIPHER *aead_ciphers[3];

static EVP_MAC_CTX *hmac_get(enum crypto_hash_alg alg)
{
    EVP_MAC *mac;
    OSSL_PARAM params[2];
    const char *name = alg == CRYPTO_HASH_SHA256 ? "SHA256" : alg == CRYPTO_HASH_SHA384 ? "SHA384" : NULL;

    if (name == NULL)
        return NULL;
    if (hmac_ctx[alg] != NULL)
        return hmac_ctx[alg];
    if ((mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
        return NULL;
    hmac_ctx[alg] = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac); /* the context holds its own reference */
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)name, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (hmac_ctx[alg] != NULL && EVP_MAC_CTX_set_params(hmac_ctx[alg], params) != 1) {
        EVP_MAC_CTX_free(hmac_ctx[alg]);
        hmac_ctx[alg] = NULL;
    }
    return hmac_ctx[alg];
}

void crypto_thread_cleanup(void)
{
    for (size_t i = 0; i < sizeof(hmac_ctx) / sizeof(hmac_ctx[0]); i++) {
        EVP_MAC_CTX_free(hmac_ctx[i]); /* cleanses the keyed state */
        hmac_ctx[i] = NULL;
    }
    for (size_t i = 0; i < sizeof(aead_ciphers) / sizeof(aead_ciphers[0]); i++) {
        EVP_CIPHER_free(aead_ciphers[i]);
        aead_ciphers[i] = NULL;
    }
}

int crypto_hmac(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *key, size_t key_len, const uint8_t *in,
                size_t in_len)
{
    static const uint8_t empty = 0;
    size_t hl = crypto_hash_len(alg), len = 0;
    EVP_MAC_CTX *ctx;

    if (hl == 0)
        return KL_ERR_INVALID;
    if ((ctx = hmac_get(alg)) == NULL)
        return KL_ERR_CRYPTO;
    /* A NULL key is refused even with length 0; RFC 2104 allows an empty key. */
    if (EVP_MAC_init(ctx, key != NULL ? key : &empty, key_len, NULL) != 1 ||
        (in_len > 0 && EVP_MAC_update(ctx, in, in_len) != 1) || EVP_MAC_final(ctx, out, &len, hl) != 1 || len != hl)
        return KL_ERR_CRYPTO;
    /* The context keeps the keyed pads until the next call or crypto_thread_cleanup(). */
    return 0;
}

int crypto_hkdf_extract(enum crypto_hash_alg alg, uint8_t *prk, const uint8_t *salt, size_t salt_len,
                        const uint8_t *ikm, size_t ikm_len)
{
    static const uint8_t zeros[CRYPTO_MAX_HASH];
    size_t hl = crypto_hash_len(alg);
    if (hl == 0)
        return KL_ERR_INVALID;
    /* RFC 5869 2.2: a missing salt is HashLen zeros. */
    if (salt == NULL || salt_len == 0) {
        salt = zeros;
        salt_len = hl;
    }
    return crypto_hmac(alg, prk, salt, salt_len, ikm != NULL ? ikm : zeros, ikm_len);
}

int crypto_hkdf_expand(enum crypto_hash_alg alg, uint8_t *out, size_t out_len, const uint8_t *prk, size_t prk_len,
                       const uint8_t *info, size_t info_len)
{
    int ret;
    size_t hl = crypto_hash_len(alg);
    /* T(i-1) ‖ info ‖ i, bounded so it lives on the stack. */
    uint8_t block[CRYPTO_MAX_HASH + 1024 + 1];
    uint8_t t[CRYPTO_MAX_HASH];
    size_t done = 0, tlen = 0;

    KL_ENSURE(hl != 0 && out_len <= 255 * hl && info_len <= 1024, KL_ERR_INVALID);
    for (uint8_t i = 1; done < out_len; i++) {
        memcpy(block, t, tlen);
        if (info_len > 0)
            memcpy(block + tlen, info, info_len);
        block[tlen + info_len] = i;
        KL_TRY(crypto_hmac(alg, t, prk, prk_len, block, tlen + info_len + 1));
        tlen = hl;
        size_t n = out_len - done < hl ? out_len - done : hl;
        memcpy(out + done, t, n);
        done += n;
    }
    ret = 0;
exit:
    sodium_memzero(block, sizeof(block));
    sodium_memzero(t, sizeof(t));
    return ret;
}

/* ---- AEAD ---- */

enum crypto_hash_alg crypto_suite_hash(uint16_t suite)
{
    switch (suite) {
    case TLS_AES_128_GCM_SHA256:
    case TLS_CHACHA20_POLY1305_SHA256:
        return CRYPTO_HASH_SHA256;
    case TLS_AES_256_GCM_SHA384:
        return CRYPTO_HASH_SHA384;
    default:
        return 0;
    }
}

size_t crypto_suite_key_len(uint16_t suite)
{
    switch (suite) {
    case TLS_AES_128_GCM_SHA256:
        return 16;
    case TLS_AES_256_GCM_SHA384:
    case TLS_CHACHA20_POLY1305_SHA256:
        return 32;
    default:
        return 0;
    }
}

/* The AEAD implementations (aead_ciphers, declared with the HMAC contexts), fetched on first use. */
static const EVP_CIPHER *aead_cipher_get(uint16_t suite)
{
    size_t i = suite == TLS_AES_128_GCM_SHA256 ? 0 : suite == TLS_AES_256_GCM_SHA384 ? 1 : 2;
    static const char *const names[3] = {"AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305"};

    if (aead_ciphers[i] == NULL)
        aead_ciphers[i] = EVP_CIPHER_fetch(NULL, names[i], NULL);
    return aead_ciphers[i];
}

int crypto_aead_init(struct crypto_aead *a, uint16_t suite, int encrypt, const uint8_t *key, size_t key_len)
{
    const EVP_CIPHER *cipher;
    size_t want = crypto_suite_key_len(suite);

    if (want == 0 || key_len != want)
        return KL_ERR_INVALID;
    /*
     * All three AEADs through libcrypto's EVP: its ChaCha20-Poly1305 is vectorised
     * (AVX2/AVX-512) and runs about 3.5x faster than libsodium's on 16 KiB records here,
     * which the throughput target of issue 4 needs (see docs/TLS-ENGINE.md).
     */
    if ((cipher = aead_cipher_get(suite)) == NULL)
        return KL_ERR_CRYPTO;
    if (a->evp == NULL && (a->evp = EVP_CIPHER_CTX_new()) == NULL)
        return KL_ERR_NO_MEMORY;
    /* Expand the key schedule once; each record then only sets the nonce. */
    if (EVP_CipherInit_ex(a->evp, cipher, NULL, key, NULL, encrypt ? 1 : 0) != 1) {
        a->suite = 0;
        return KL_ERR_CRYPTO;
    }
    a->suite = suite;
    a->encrypt = encrypt ? 1 : 0;
    return 0;
}

int crypto_aead_seal_v(struct crypto_aead *a, uint8_t *out, const uint8_t nonce[CRYPTO_IV_LEN], const uint8_t *aad,
                       size_t aad_len, const struct kl_span *in, size_t n_in)
{
    int len;
    size_t total = 0;

    if (a->suite == 0 || !a->encrypt || aad_len > INT32_MAX)
        return KL_ERR_INVALID;
    if (EVP_EncryptInit_ex(a->evp, NULL, NULL, NULL, nonce) != 1 ||
        (aad_len > 0 && EVP_EncryptUpdate(a->evp, NULL, &len, aad, (int)aad_len) != 1))
        return KL_ERR_CRYPTO;
    for (size_t i = 0; i < n_in; i++) {
        if (in[i].len == 0)
            continue;
        if (in[i].len > INT32_MAX - total)
            return KL_ERR_INVALID;
        /* Both AEADs are stream modes: EVP buffers partial blocks across updates. */
        if (EVP_EncryptUpdate(a->evp, out + total, &len, in[i].base, (int)in[i].len) != 1 || (size_t)len != in[i].len)
            return KL_ERR_CRYPTO;
        total += in[i].len;
    }
    if (EVP_EncryptFinal_ex(a->evp, out + total, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(a->evp, EVP_CTRL_AEAD_GET_TAG, CRYPTO_TAG_LEN, out + total) != 1)
        return KL_ERR_CRYPTO;
    return 0;
}

int crypto_aead_seal(struct crypto_aead *a, uint8_t *out, const uint8_t nonce[CRYPTO_IV_LEN], const uint8_t *aad,
                     size_t aad_len, const uint8_t *in, size_t in_len)
{
    struct kl_span s = {in, in_len};
    return crypto_aead_seal_v(a, out, nonce, aad, aad_len, &s, 1);
}

int crypto_aead_open(struct crypto_aead *a, uint8_t *out, const uint8_t nonce[CRYPTO_IV_LEN], const uint8_t *aad,
                     size_t aad_len, const uint8_t *in, size_t in_len)
{
    int len;
    uint8_t tag[CRYPTO_TAG_LEN];

    if (a->suite == 0 || a->encrypt || in_len > INT32_MAX || aad_len > INT32_MAX)
        return KL_ERR_INVALID;
    if (in_len < CRYPTO_TAG_LEN)
        return KL_ERR_BAD_RECORD_MAC;
    size_t plen = in_len - CRYPTO_TAG_LEN;
    /* Copy the tag first: with out == in it sits right after the bytes being decrypted. */
    memcpy(tag, in + plen, CRYPTO_TAG_LEN);
    if (EVP_DecryptInit_ex(a->evp, NULL, NULL, NULL, nonce) != 1 ||
        (aad_len > 0 && EVP_DecryptUpdate(a->evp, NULL, &len, aad, (int)aad_len) != 1) ||
        EVP_DecryptUpdate(a->evp, out, &len, in, (int)plen) != 1 || (size_t)len != plen ||
        EVP_CIPHER_CTX_ctrl(a->evp, EVP_CTRL_AEAD_SET_TAG, CRYPTO_TAG_LEN, tag) != 1)
        return KL_ERR_CRYPTO;
    if (EVP_DecryptFinal_ex(a->evp, out + plen, &len) != 1) {
        /* Release no unauthenticated plaintext. */
        sodium_memzero(out, plen);
        return KL_ERR_BAD_RECORD_MAC;
    }
    return 0;
}

void crypto_aead_dispose(struct crypto_aead *a)
{
    if (a == NULL)
        return;
    EVP_CIPHER_CTX_free(a->evp); /* cleanses the expanded key */
    sodium_memzero(a, sizeof(*a));
}

/* ---- key exchange ---- */

/* OpenSSL's names for the RFC 7919 groups, whose primes it has built in; NULL for any other group. */
static const char *ffdhe_name(uint16_t group)
{
    switch (group) {
    case TLS_GROUP_FFDHE2048:
        return "ffdhe2048";
    case TLS_GROUP_FFDHE3072:
        return "ffdhe3072";
    case TLS_GROUP_FFDHE4096:
        return "ffdhe4096";
    case TLS_GROUP_FFDHE6144:
        return "ffdhe6144";
    case TLS_GROUP_FFDHE8192:
        return "ffdhe8192";
    default:
        return NULL;
    }
}

/* The size of p in bytes: both the key_share and the shared secret are padded to it. */
static size_t ffdhe_len(uint16_t group)
{
    switch (group) {
    case TLS_GROUP_FFDHE2048:
        return 256;
    case TLS_GROUP_FFDHE3072:
        return 384;
    case TLS_GROUP_FFDHE4096:
        return 512;
    case TLS_GROUP_FFDHE6144:
        return 768;
    case TLS_GROUP_FFDHE8192:
        return 1024;
    default:
        return 0;
    }
}

size_t crypto_kex_share_len(uint16_t group)
{
    switch (group) {
    case TLS_GROUP_X25519:
        return crypto_scalarmult_curve25519_BYTES;
    case TLS_GROUP_SECP256R1:
        return 65;
    case TLS_GROUP_SECP384R1:
        return 97;
    case TLS_GROUP_SECP521R1:
        return 133;
    case TLS_GROUP_X448:
        return 56;
    default:
        return ffdhe_len(group);
    }
}

size_t crypto_kex_secret_len(uint16_t group)
{
    switch (group) {
    case TLS_GROUP_X25519:
    case TLS_GROUP_SECP256R1:
        return 32;
    case TLS_GROUP_SECP384R1:
        return 48;
    case TLS_GROUP_SECP521R1:
        return 66;
    case TLS_GROUP_X448:
        return 56;
    default:
        return ffdhe_len(group);
    }
}

static const char *ec_group_name(uint16_t group)
{
    switch (group) {
    case TLS_GROUP_SECP256R1:
        return "P-256";
    case TLS_GROUP_SECP384R1:
        return "P-384";
    case TLS_GROUP_SECP521R1:
        return "P-521";
    default:
        return NULL;
    }
}

static int ec_group_nid(uint16_t group)
{
    return group == TLS_GROUP_SECP256R1   ? NID_X9_62_prime256v1
           : group == TLS_GROUP_SECP384R1 ? NID_secp384r1
                                          : NID_secp521r1;
}

/* Fill k->pub from k->pkey (uncompressed point). */
static int ec_export_pub(struct crypto_kex *k)
{
    size_t len = 0;
    if (EVP_PKEY_get_octet_string_param(k->pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, k->pub, sizeof(k->pub), &len) !=
            1 ||
        len != crypto_kex_share_len(k->group) || k->pub[0] != 0x04)
        return KL_ERR_CRYPTO;
    k->pub_len = len;
    return 0;
}

/* Fill k->pub from an X448 k->pkey (the 56-byte u-coordinate). */
static int x448_export_pub(struct crypto_kex *k)
{
    size_t len = crypto_kex_share_len(TLS_GROUP_X448);
    if (EVP_PKEY_get_raw_public_key(k->pkey, k->pub, &len) != 1 || len != crypto_kex_share_len(TLS_GROUP_X448))
        return KL_ERR_CRYPTO;
    k->pub_len = len;
    return 0;
}

/*
 * A key pair in an RFC 7919 group. OpenSSL knows each group's q and draws the private
 * exponent with the group's recommended short length (225 bits for ffdhe2048 up to 400 for
 * ffdhe8192, RFC 7919 5.2), which is what keeps the modular exponentiations affordable.
 * The share is Y padded on the left with zeros to the size of p (RFC 8446 4.2.8.1).
 */
static int ffdhe_generate(struct crypto_kex *k)
{
    int ret;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    BIGNUM *y = NULL;
    size_t len = ffdhe_len(k->group);

    KL_ENSURE((ctx = EVP_PKEY_CTX_new_from_name(NULL, "DH", NULL)) != NULL, KL_ERR_NO_MEMORY);
    KL_ENSURE(EVP_PKEY_keygen_init(ctx) == 1 && EVP_PKEY_CTX_set_group_name(ctx, ffdhe_name(k->group)) == 1,
              KL_ERR_CRYPTO);
    KL_ENSURE(EVP_PKEY_keygen(ctx, &pkey) == 1, KL_ERR_CRYPTO);
    k->pkey = pkey;
    KL_ENSURE(EVP_PKEY_get_bn_param(k->pkey, OSSL_PKEY_PARAM_PUB_KEY, &y) == 1, KL_ERR_CRYPTO);
    KL_ENSURE(BN_bn2binpad(y, k->pub, (int)len) == (int)len, KL_ERR_CRYPTO);
    k->pub_len = len;
    ret = 0;
exit:
    BN_free(y); /* Y is public */
    EVP_PKEY_CTX_free(ctx);
    return ret;
}

int crypto_kex_generate(struct crypto_kex *k, uint16_t group)
{
    int ret;
    memset(k, 0, sizeof(*k));
    if (group == TLS_GROUP_X25519) {
        randombytes_buf(k->priv, sizeof(k->priv));
        if (crypto_scalarmult_curve25519_base(k->pub, k->priv) != 0) {
            sodium_memzero(k, sizeof(*k));
            return KL_ERR_CRYPTO;
        }
        k->pub_len = crypto_scalarmult_curve25519_BYTES;
        k->group = group;
        return 0;
    }
    if (group == TLS_GROUP_X448) {
        k->group = group;
        ret = (k->pkey = EVP_PKEY_Q_keygen(NULL, NULL, "X448")) == NULL ? KL_ERR_CRYPTO : x448_export_pub(k);
    } else if (ffdhe_name(group) != NULL) {
        k->group = group;
        ret = ffdhe_generate(k);
    } else {
        const char *name = ec_group_name(group);
        if (name == NULL)
            return KL_ERR_INVALID;
        k->group = group;
        ret = (k->pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", name)) == NULL ? KL_ERR_CRYPTO : ec_export_pub(k);
    }
    if (ret != 0) {
        crypto_kex_dispose(k);
        ERR_clear_error();
    }
    return ret;
}

/* An EVP_PKEY for a NIST group from a raw private scalar and/or an encoded public point. */
static EVP_PKEY *ec_pkey_fromdata(uint16_t group, const BIGNUM *priv, const uint8_t *pub, size_t pub_len)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    const char *curve = OBJ_nid2sn(ec_group_nid(group));

    if (bld == NULL || OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curve, 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, pub_len) != 1 ||
        (priv != NULL && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv) != 1) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, priv != NULL ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params); /* OSSL_PARAM_BLD_to_param copies the BN into secure-cleared memory on free */
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

/* A public EVP_PKEY in an RFC 7919 group from the peer's Y (already range-checked). */
static EVP_PKEY *ffdhe_pkey_fromdata(uint16_t group, const BIGNUM *y)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;

    if (bld == NULL || OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, ffdhe_name(group), 0) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PUB_KEY, y) != 1 ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "DH", NULL)) == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

int crypto_kex_set_private(struct crypto_kex *k, uint16_t group, const uint8_t *priv, size_t priv_len)
{
    int ret;
    BIGNUM *d = NULL;
    EC_GROUP *g = NULL;
    EC_POINT *q = NULL;

    memset(k, 0, sizeof(*k));
    if (group == TLS_GROUP_X25519) {
        KL_ENSURE(priv_len == sizeof(k->priv), KL_ERR_INVALID);
        memcpy(k->priv, priv, priv_len);
        KL_ENSURE(crypto_scalarmult_curve25519_base(k->pub, k->priv) == 0, KL_ERR_CRYPTO);
        k->pub_len = crypto_scalarmult_curve25519_BYTES;
        k->group = group;
        ret = 0;
        goto exit;
    }
    if (group == TLS_GROUP_X448) {
        KL_ENSURE(priv_len == crypto_kex_secret_len(group), KL_ERR_INVALID);
        k->group = group;
        KL_ENSURE((k->pkey = EVP_PKEY_new_raw_private_key_ex(NULL, "X448", NULL, priv, priv_len)) != NULL,
                  KL_ERR_CRYPTO);
        KL_TRY(x448_export_pub(k));
        ret = 0;
        goto exit;
    }
    KL_ENSURE(ec_group_name(group) != NULL && priv_len == crypto_kex_secret_len(group), KL_ERR_INVALID);
    k->group = group;
    KL_ENSURE((d = BN_secure_new()) != NULL && BN_bin2bn(priv, (int)priv_len, d) != NULL, KL_ERR_NO_MEMORY);
    KL_ENSURE((g = EC_GROUP_new_by_curve_name(ec_group_nid(group))) != NULL && (q = EC_POINT_new(g)) != NULL,
              KL_ERR_NO_MEMORY);
    /* The scalar must be in [1, n-1]. */
    KL_ENSURE(!BN_is_zero(d) && BN_cmp(d, EC_GROUP_get0_order(g)) < 0, KL_ERR_INVALID);
    KL_ENSURE(EC_POINT_mul(g, q, d, NULL, NULL, NULL) == 1, KL_ERR_CRYPTO);
    k->pub_len = EC_POINT_point2oct(g, q, POINT_CONVERSION_UNCOMPRESSED, k->pub, sizeof(k->pub), NULL);
    KL_ENSURE(k->pub_len == crypto_kex_share_len(group), KL_ERR_CRYPTO);
    KL_ENSURE((k->pkey = ec_pkey_fromdata(group, d, k->pub, k->pub_len)) != NULL, KL_ERR_CRYPTO);
    ret = 0;
exit:
    BN_clear_free(d);
    EC_POINT_free(q);
    EC_GROUP_free(g);
    if (ret != 0) {
        crypto_kex_dispose(k);
        ERR_clear_error();
    }
    return ret;
}

/*
 * The peer's public key as an EVP_PKEY, after the checks RFC 8446 4.2.8.1-2 and RFC 7919
 * ask for; NULL (and *ret_p = KL_ERR_ILLEGAL_PARAMETER) when it fails them.
 */
static EVP_PKEY *kex_peer_key(const struct crypto_kex *k, const uint8_t *peer, size_t peer_len, int *ret_p)
{
    EVP_PKEY *pkey = NULL;
    BIGNUM *y = NULL, *p = NULL;

    *ret_p = KL_ERR_ILLEGAL_PARAMETER;
    if (k->group == TLS_GROUP_X448) {
        pkey = EVP_PKEY_new_raw_public_key_ex(NULL, "X448", NULL, peer, peer_len);
    } else if (ffdhe_name(k->group) != NULL) {
        /*
         * RFC 7919 5.1 / RFC 8446 4.2.8.1: "Peers MUST validate each other's public key Y by
         * ensuring that 1 < Y < p-1." That is all we check: the optional subgroup test
         * (Y^q = 1 mod p) would be a second full-size exponentiation a client could make us do
         * on every handshake, and a safe-prime group has no small subgroup beyond {1, p-1}.
         */
        if ((y = BN_bin2bn(peer, (int)peer_len, NULL)) == NULL ||
            EVP_PKEY_get_bn_param(k->pkey, OSSL_PKEY_PARAM_FFC_P, &p) != 1 || BN_sub_word(p, 1) != 1) {
            *ret_p = KL_ERR_NO_MEMORY;
        } else if (BN_cmp(y, BN_value_one()) > 0 && BN_cmp(y, p) < 0) {
            pkey = ffdhe_pkey_fromdata(k->group, y);
        }
    } else if (peer[0] == 0x04) {
        /* 4.2.8.2: only the uncompressed form; the curve check is derive's (validate_peer). */
        pkey = ec_pkey_fromdata(k->group, NULL, peer, peer_len);
    }
    BN_free(y);
    BN_free(p);
    return pkey;
}

int crypto_kex_derive(struct crypto_kex *k, uint8_t *secret, size_t *secret_len_p, const uint8_t *peer, size_t peer_len)
{
    int ret;
    EVP_PKEY *peer_key = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    size_t want = crypto_kex_secret_len(k->group), len;
    int ffdhe = ffdhe_name(k->group) != NULL;

    *secret_len_p = 0;
    KL_ENSURE(want != 0, KL_ERR_INVALID);
    /* 4.2.8: a share of the wrong length for its group is an illegal parameter. A finite-field
     * Y is "padded to the left with zeros to the size of p" (4.2.8.1), so exactly that long. */
    KL_ENSURE(peer_len == crypto_kex_share_len(k->group), KL_ERR_ILLEGAL_PARAMETER);
    if (k->group == TLS_GROUP_X25519) {
        /*
         * 7.4.2: "check whether the computed value is all zeros ... abort if so".
         * libsodium returns -1 for a low-order point; check the output too.
         */
        KL_ENSURE(crypto_scalarmult_curve25519(secret, k->priv, peer) == 0, KL_ERR_ILLEGAL_PARAMETER);
        KL_ENSURE(!sodium_is_zero(secret, want), KL_ERR_ILLEGAL_PARAMETER);
        *secret_len_p = want;
        ret = 0;
        goto exit;
    }
    KL_ENSURE(k->pkey != NULL, KL_ERR_INVALID);
    if ((peer_key = kex_peer_key(k, peer, peer_len, &ret)) == NULL)
        goto exit;
    KL_ENSURE((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL)) != NULL, KL_ERR_NO_MEMORY);
    KL_ENSURE(EVP_PKEY_derive_init(ctx) == 1, KL_ERR_CRYPTO);
    /* 7.4.1: "The negotiated key (Z) is converted to a byte string by encoding in big-endian form
     * and left-padded with zeros up to the size of the prime." OpenSSL strips them unless asked. */
    KL_ENSURE(!ffdhe || EVP_PKEY_CTX_set_dh_pad(ctx, 1) == 1, KL_ERR_CRYPTO);
    /*
     * validate_peer = 1 for the curves: a full public-key check (on the curve, not infinity,
     * right order). For FFDHE the range check above is the one RFC 7919 asks for, and
     * OpenSSL's derive repeats it (its partial check); its full check is the costly one.
     */
    KL_ENSURE(EVP_PKEY_derive_set_peer_ex(ctx, peer_key, !ffdhe) == 1, KL_ERR_ILLEGAL_PARAMETER);
    len = want;
    if (EVP_PKEY_derive(ctx, secret, &len) != 1) {
        /* X448: OpenSSL refuses an all-zero output (a low-order peer point, 7.4.2), the one
         * failure the peer's value can cause once the checks above passed. */
        ret = k->group == TLS_GROUP_X448 ? KL_ERR_ILLEGAL_PARAMETER : KL_ERR_CRYPTO;
        goto exit;
    }
    KL_ENSURE(len == want, KL_ERR_CRYPTO);
    /* 7.4.2 for X448 as for X25519: abort on an all-zero shared secret. */
    KL_ENSURE(k->group != TLS_GROUP_X448 || !sodium_is_zero(secret, want), KL_ERR_ILLEGAL_PARAMETER);
    *secret_len_p = want;
    ret = 0;
exit:
    if (ret != 0 && want != 0)
        sodium_memzero(secret, want);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(peer_key);
    ERR_clear_error();
    return ret;
}

void crypto_kex_dispose(struct crypto_kex *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_free(k->pkey); /* frees the private scalar in clearing memory */
    sodium_memzero(k, sizeof(*k));
}

/* ---- randomness, comparison, wiping ---- */

void crypto_random(void *buf, size_t len)
{
    randombytes_buf(buf, len);
}

int crypto_equal(const void *a, const void *b, size_t len)
{
    return sodium_memcmp(a, b, len) == 0;
}

void crypto_wipe(void *p, size_t len)
{
    sodium_memzero(p, len);
}

/* ---- PEM for ECH key files ---- */

/*
 * The first PEM block called name in pem: *data_p and *len_p from PEM_read_bio (free with
 * OPENSSL_clear_free). Blocks with other names are skipped; a block that does not decode
 * ends the search (KL_ERR_NOT_FOUND), as does the end of the text.
 */
static int pem_find(const char *pem, size_t pem_len, const char *name, unsigned char **data_p, long *len_p)
{
    int ret = KL_ERR_NOT_FOUND;
    BIO *bio = NULL;
    char *bname = NULL, *header = NULL;
    unsigned char *data = NULL;
    long len = 0;

    *data_p = NULL;
    *len_p = 0;
    KL_ENSURE(pem_len <= INT32_MAX, KL_ERR_INVALID);
    KL_ENSURE((bio = BIO_new_mem_buf(pem, (int)pem_len)) != NULL, KL_ERR_NO_MEMORY);
    while (PEM_read_bio(bio, &bname, &header, &data, &len) == 1) {
        int match = strcmp(bname, name) == 0;
        OPENSSL_free(bname);
        OPENSSL_free(header);
        bname = header = NULL;
        if (match) {
            *data_p = data;
            *len_p = len;
            data = NULL;
            ret = 0;
            goto exit;
        }
        OPENSSL_clear_free(data, (size_t)len);
        data = NULL;
    }
    ret = KL_ERR_NOT_FOUND;
exit:
    BIO_free(bio);
    ERR_clear_error();
    return ret;
}

int crypto_pem_read_x25519(uint8_t sk[32], const char *pem, size_t pem_len)
{
    int ret;
    unsigned char *der = NULL;
    long der_len = 0;
    const unsigned char *p;
    PKCS8_PRIV_KEY_INFO *p8 = NULL;
    EVP_PKEY *pkey = NULL;
    size_t sk_len = 32;

    KL_TRY(pem_find(pem, pem_len, "PRIVATE KEY", &der, &der_len));
    p = der;
    /* The whole block is one PKCS#8 PrivateKeyInfo: no trailing bytes. */
    KL_ENSURE((p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, der_len)) != NULL && p == der + der_len, KL_ERR_NOT_FOUND);
    KL_ENSURE((pkey = EVP_PKCS82PKEY(p8)) != NULL, KL_ERR_NOT_FOUND);
    KL_ENSURE(EVP_PKEY_is_a(pkey, "X25519"), KL_ERR_INVALID);
    KL_ENSURE(EVP_PKEY_get_raw_private_key(pkey, sk, &sk_len) == 1 && sk_len == 32, KL_ERR_INVALID);
    ret = 0;
exit:
    if (ret != 0)
        sodium_memzero(sk, 32);
    EVP_PKEY_free(pkey);
    PKCS8_PRIV_KEY_INFO_free(p8); /* clears the key octets */
    OPENSSL_clear_free(der, der != NULL ? (size_t)der_len : 0);
    ERR_clear_error();
    return ret;
}

int crypto_pem_read_block(uint8_t *out, size_t cap, size_t *len_p, const char *pem, size_t pem_len, const char *name)
{
    int ret;
    unsigned char *data = NULL;
    long len = 0;

    *len_p = 0;
    KL_TRY(pem_find(pem, pem_len, name, &data, &len));
    KL_ENSURE((size_t)len <= cap, KL_ERR_OVERFLOW);
    memcpy(out, data, (size_t)len);
    *len_p = (size_t)len;
    ret = 0;
exit:
    OPENSSL_clear_free(data, data != NULL ? (size_t)len : 0);
    return ret;
}

/* Copy what a memory BIO holds to buf + *len_p, NUL-terminated; the BIO's buffer is wiped on free. */
static int pem_bio_append(BIO *bio, char *buf, size_t cap, size_t *len_p)
{
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    if (n < 0 || *len_p >= cap || (size_t)n >= cap - *len_p)
        return KL_ERR_OVERFLOW;
    memcpy(buf + *len_p, p, (size_t)n);
    *len_p += (size_t)n;
    buf[*len_p] = '\0';
    return 0;
}

int crypto_pem_write_x25519(char *buf, size_t cap, size_t *len_p, const uint8_t sk[32])
{
    int ret;
    BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;

    /* A secure-heap memory BIO: its buffer, which holds the key's base64, is cleared when freed. */
    KL_ENSURE((bio = BIO_new(BIO_s_secmem())) != NULL, KL_ERR_NO_MEMORY);
    KL_ENSURE((pkey = EVP_PKEY_new_raw_private_key_ex(NULL, "X25519", NULL, sk, 32)) != NULL, KL_ERR_CRYPTO);
    /* PEM_write_bio_PrivateKey without a cipher writes PKCS#8 "PRIVATE KEY". */
    KL_ENSURE(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) == 1, KL_ERR_CRYPTO);
    KL_TRY(pem_bio_append(bio, buf, cap, len_p));
    ret = 0;
exit:
    if (ret == KL_ERR_OVERFLOW && *len_p < cap)
        sodium_memzero(buf + *len_p, cap - *len_p);
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    ERR_clear_error();
    return ret;
}

int crypto_pem_write_block(char *buf, size_t cap, size_t *len_p, const char *name, const uint8_t *data, size_t data_len)
{
    int ret;
    BIO *bio = NULL;

    KL_ENSURE(data_len <= INT32_MAX, KL_ERR_INVALID);
    KL_ENSURE((bio = BIO_new(BIO_s_mem())) != NULL, KL_ERR_NO_MEMORY);
    KL_ENSURE(PEM_write_bio(bio, name, "", data, (long)data_len) > 0, KL_ERR_CRYPTO);
    KL_TRY(pem_bio_append(bio, buf, cap, len_p));
    ret = 0;
exit:
    if (ret == KL_ERR_OVERFLOW && *len_p < cap)
        sodium_memzero(buf + *len_p, cap - *len_p);
    BIO_free(bio);
    ERR_clear_error();
    return ret;
}

/* ---- certificates ---- */

int crypto_chain_load_pem(struct crypto_chain *c, const char *path)
{
    int ret;
    BIO *bio = NULL;
    X509 *x = NULL;

    memset(c, 0, sizeof(*c));
    KL_ENSURE((bio = BIO_new_file(path, "r")) != NULL, KL_ERR_CONFIG);
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        KL_ENSURE(c->n < CRYPTO_MAX_CHAIN, KL_ERR_CONFIG);
        int len = i2d_X509(x, NULL);
        KL_ENSURE(len > 0, KL_ERR_CONFIG);
        uint8_t *der = OPENSSL_malloc((size_t)len), *p = der;
        KL_ENSURE(der != NULL, KL_ERR_NO_MEMORY);
        c->der[c->n] = der;
        c->der_len[c->n] = (size_t)len;
        c->n++;
        KL_ENSURE(i2d_X509(x, &p) == len, KL_ERR_CONFIG);
        X509_free(x);
        x = NULL;
    }
    /* The loop ends on EOF (PEM_R_NO_START_LINE) or on a block that does not parse. */
    unsigned long err = ERR_peek_last_error();
    KL_ENSURE(c->n > 0, KL_ERR_CONFIG);
    KL_ENSURE(err == 0 || (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE),
              KL_ERR_CONFIG);
    ret = 0;
exit:
    ERR_clear_error();
    X509_free(x);
    BIO_free(bio);
    if (ret != 0)
        crypto_chain_dispose(c);
    return ret;
}

void crypto_chain_dispose(struct crypto_chain *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n && i < CRYPTO_MAX_CHAIN; i++)
        OPENSSL_free(c->der[i]);
    memset(c, 0, sizeof(*c));
}

static X509 *parse_cert(const uint8_t *der, size_t der_len)
{
    const unsigned char *p = der;
    if (der_len > INT32_MAX)
        return NULL;
    X509 *x = d2i_X509(NULL, &p, (long)der_len);
    /* Trailing bytes after the certificate are a malformed input, not a certificate. */
    if (x != NULL && p != der + der_len) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

int crypto_cert_key_type(const uint8_t *der, size_t der_len, enum crypto_key_type *type_p)
{
    int ret;
    X509 *x = NULL;
    char curve[64];
    size_t curve_len;

    *type_p = CRYPTO_KEY_UNKNOWN;
    KL_ENSURE((x = parse_cert(der, der_len)) != NULL, KL_ERR_CONFIG);
    EVP_PKEY *pk = X509_get0_pubkey(x);
    KL_ENSURE(pk != NULL, KL_ERR_CONFIG);
    switch (EVP_PKEY_get_base_id(pk)) {
    case EVP_PKEY_RSA:
        *type_p = CRYPTO_KEY_RSA;
        break;
    case EVP_PKEY_ED25519:
        *type_p = CRYPTO_KEY_ED25519;
        break;
    case EVP_PKEY_EC:
        KL_ENSURE(EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, curve, sizeof(curve), &curve_len) == 1,
                  KL_ERR_CONFIG);
        if (strcmp(curve, "prime256v1") == 0 || strcmp(curve, "P-256") == 0)
            *type_p = CRYPTO_KEY_EC_P256;
        else if (strcmp(curve, "secp384r1") == 0 || strcmp(curve, "P-384") == 0)
            *type_p = CRYPTO_KEY_EC_P384;
        break;
    default:
        break;
    }
    ret = 0;
exit:
    ERR_clear_error();
    X509_free(x);
    return ret;
}

size_t crypto_key_type_schemes(enum crypto_key_type type, uint16_t *schemes, size_t max)
{
    static const uint16_t p256[] = {TLS_SIG_ECDSA_SECP256R1_SHA256};
    static const uint16_t p384[] = {TLS_SIG_ECDSA_SECP384R1_SHA384};
    static const uint16_t rsa[] = {TLS_SIG_RSA_PSS_RSAE_SHA256, TLS_SIG_RSA_PSS_RSAE_SHA384,
                                   TLS_SIG_RSA_PSS_RSAE_SHA512};
    static const uint16_t ed[] = {TLS_SIG_ED25519};
    const uint16_t *list = NULL;
    size_t n = 0;
    switch (type) {
    case CRYPTO_KEY_EC_P256:
        list = p256, n = 1;
        break;
    case CRYPTO_KEY_EC_P384:
        list = p384, n = 1;
        break;
    case CRYPTO_KEY_RSA:
        list = rsa, n = 3;
        break;
    case CRYPTO_KEY_ED25519:
        list = ed, n = 1;
        break;
    default:
        return 0;
    }
    if (n > max)
        n = max;
    memcpy(schemes, list, n * sizeof(*schemes));
    return n;
}

int crypto_cert_spki(const uint8_t *der, size_t der_len, uint8_t *spki, size_t spki_cap, size_t *spki_len_p)
{
    int ret;
    X509 *x = NULL;
    *spki_len_p = 0;
    KL_ENSURE((x = parse_cert(der, der_len)) != NULL, KL_ERR_CONFIG);
    X509_PUBKEY *pub = X509_get_X509_PUBKEY(x);
    int len = pub != NULL ? i2d_X509_PUBKEY(pub, NULL) : -1;
    KL_ENSURE(len > 0, KL_ERR_CONFIG);
    KL_ENSURE((size_t)len <= spki_cap, KL_ERR_OVERFLOW);
    unsigned char *p = spki;
    KL_ENSURE(i2d_X509_PUBKEY(pub, &p) == len, KL_ERR_CONFIG);
    *spki_len_p = (size_t)len;
    ret = 0;
exit:
    ERR_clear_error();
    X509_free(x);
    return ret;
}

int crypto_cert_dns_names(const uint8_t *der, size_t der_len, char (*names)[256], size_t max, size_t *n_p)
{
    int ret;
    X509 *x = NULL;
    GENERAL_NAMES *gens = NULL;
    *n_p = 0;
    KL_ENSURE((x = parse_cert(der, der_len)) != NULL, KL_ERR_CONFIG);
    gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && *n_p < max; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_DNS)
            continue;
        const unsigned char *s = ASN1_STRING_get0_data(g->d.dNSName);
        int len = ASN1_STRING_length(g->d.dNSName);
        /* Skip names too long for the slot or with an embedded NUL: they could never match. */
        if (len <= 0 || len >= 256 || memchr(s, 0, (size_t)len) != NULL)
            continue;
        memcpy(names[*n_p], s, (size_t)len);
        names[*n_p][len] = '\0';
        (*n_p)++;
    }
    ret = 0;
exit:
    ERR_clear_error();
    GENERAL_NAMES_free(gens);
    X509_free(x);
    return ret;
}

int crypto_cert_not_after(const uint8_t *der, size_t der_len, int64_t *t_p)
{
    int ret;
    X509 *x = NULL;
    struct tm tm;
    *t_p = 0;
    KL_ENSURE((x = parse_cert(der, der_len)) != NULL, KL_ERR_CONFIG);
    KL_ENSURE(ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1, KL_ERR_CONFIG);
    *t_p = (int64_t)timegm(&tm);
    ret = 0;
exit:
    ERR_clear_error();
    X509_free(x);
    return ret;
}

int crypto_cert_verify(const uint8_t *der, size_t der_len, uint16_t scheme, const uint8_t *msg, size_t msg_len,
                       const uint8_t *sig, size_t sig_len)
{
    int ret;
    X509 *x = NULL;
    EVP_MD_CTX *md = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    const EVP_MD *h = NULL;
    int pss = 0, base = 0;

    switch (scheme) {
    case TLS_SIG_ECDSA_SECP256R1_SHA256:
        h = EVP_sha256(), base = EVP_PKEY_EC;
        break;
    case TLS_SIG_ECDSA_SECP384R1_SHA384:
        h = EVP_sha384(), base = EVP_PKEY_EC;
        break;
    case TLS_SIG_RSA_PSS_RSAE_SHA256:
        h = EVP_sha256(), base = EVP_PKEY_RSA, pss = 1;
        break;
    case TLS_SIG_RSA_PSS_RSAE_SHA384:
        h = EVP_sha384(), base = EVP_PKEY_RSA, pss = 1;
        break;
    case TLS_SIG_RSA_PSS_RSAE_SHA512:
        h = EVP_sha512(), base = EVP_PKEY_RSA, pss = 1;
        break;
    case TLS_SIG_ED25519:
        base = EVP_PKEY_ED25519;
        break;
    default:
        return KL_ERR_INVALID;
    }
    KL_ENSURE((x = parse_cert(der, der_len)) != NULL, KL_ERR_ALERT(KL_ALERT_BAD_CERTIFICATE));
    EVP_PKEY *pk = X509_get0_pubkey(x);
    KL_ENSURE(pk != NULL && EVP_PKEY_get_base_id(pk) == base, KL_ERR_ILLEGAL_PARAMETER);
    if (base == EVP_PKEY_EC) {
        /* 4.2.3: in TLS 1.3 each ECDSA scheme names its curve too. */
        enum crypto_key_type kt;
        KL_TRY(crypto_cert_key_type(der, der_len, &kt));
        KL_ENSURE(kt == (scheme == TLS_SIG_ECDSA_SECP256R1_SHA256 ? CRYPTO_KEY_EC_P256 : CRYPTO_KEY_EC_P384),
                  KL_ERR_ILLEGAL_PARAMETER);
    }
    KL_ENSURE((md = EVP_MD_CTX_new()) != NULL, KL_ERR_NO_MEMORY);
    KL_ENSURE(EVP_DigestVerifyInit(md, &pctx, h, NULL, pk) == 1, KL_ERR_CRYPTO);
    if (pss) {
        /* 4.2.3: RSASSA-PSS with MGF1 on the same hash and a salt as long as the digest. */
        KL_ENSURE(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
                      EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, h) == 1,
                  KL_ERR_CRYPTO);
    }
    KL_ENSURE(EVP_DigestVerify(md, sig, sig_len, msg, msg_len) == 1, KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR));
    ret = 0;
exit:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    X509_free(x);
    return ret;
}

/* ---- client certificates (mTLS): the chain check ---- */

struct crypto_client_ca {
    X509_STORE *store;
    size_t n_certs;
    uint8_t *names; /* certificate_authorities body: u16 length, then u16-prefixed DER names */
    size_t names_len;
};

/* Append a u16-prefixed DER name to the growing names block (bounded by 2^16-1 + 2 bytes). */
static int client_ca_add_name(struct crypto_client_ca *ca, const X509_NAME *name)
{
    int len = i2d_X509_NAME(name, NULL);
    if (len <= 0)
        return KL_ERR_CONFIG;
    size_t used = ca->names_len == 0 ? 2 : ca->names_len;
    if (used + 2 + (size_t)len > 2 + 0xffff) {
        ca->names_len = SIZE_MAX; /* too many names: send none (the extension is optional) */
        return 0;
    }
    uint8_t *nb = OPENSSL_realloc(ca->names, used + 2 + (size_t)len);
    if (nb == NULL)
        return KL_ERR_NO_MEMORY;
    ca->names = nb;
    nb[used] = (uint8_t)(len >> 8);
    nb[used + 1] = (uint8_t)len;
    unsigned char *p = nb + used + 2;
    if (i2d_X509_NAME(name, &p) != len)
        return KL_ERR_CONFIG;
    used += 2 + (size_t)len;
    nb[0] = (uint8_t)((used - 2) >> 8);
    nb[1] = (uint8_t)(used - 2);
    ca->names_len = used;
    return 0;
}

int crypto_client_ca_load(struct crypto_client_ca **ca_p, enum crypto_client_ca_error *why_p, const char *ca_path,
                          const char *crl_path, unsigned depth)
{
    int ret;
    enum crypto_client_ca_error why = CRYPTO_CLIENT_CA_OK;
    struct crypto_client_ca *ca = NULL;
    BIO *bio = NULL;
    X509 *x = NULL;
    X509_CRL *crl = NULL;
    size_t n_crl = 0;

    *ca_p = NULL;
    KL_ENSURE((ca = OPENSSL_zalloc(sizeof(*ca))) != NULL && (ca->store = X509_STORE_new()) != NULL, KL_ERR_NO_MEMORY);
    if ((bio = BIO_new_file(ca_path, "r")) == NULL) {
        why = CRYPTO_CLIENT_CA_CANNOT_OPEN;
        KL_FAIL(KL_ERR_CONFIG);
    }
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        KL_ENSURE(X509_STORE_add_cert(ca->store, x) == 1, KL_ERR_NO_MEMORY);
        if (ca->names_len != SIZE_MAX)
            KL_TRY(client_ca_add_name(ca, X509_get_subject_name(x)));
        ca->n_certs++;
        X509_free(x);
        x = NULL;
    }
    /* The loop ends at end of file (PEM_R_NO_START_LINE) or at a block that does not parse. */
    unsigned long e = ERR_peek_last_error();
    if (ca->n_certs == 0 || (e != 0 && ERR_GET_REASON(e) != PEM_R_NO_START_LINE)) {
        why = CRYPTO_CLIENT_CA_NO_CERT;
        KL_FAIL(KL_ERR_CONFIG);
    }
    ERR_clear_error();
    BIO_free(bio);
    bio = NULL;
    if (crl_path != NULL) {
        if ((bio = BIO_new_file(crl_path, "r")) == NULL) {
            why = CRYPTO_CLIENT_CA_CRL_OPEN;
            KL_FAIL(KL_ERR_CONFIG);
        }
        while ((crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
            KL_ENSURE(X509_STORE_add_crl(ca->store, crl) == 1, KL_ERR_NO_MEMORY);
            n_crl++;
            X509_CRL_free(crl);
            crl = NULL;
        }
        e = ERR_peek_last_error();
        if (n_crl == 0 || (e != 0 && ERR_GET_REASON(e) != PEM_R_NO_START_LINE)) {
            why = CRYPTO_CLIENT_CA_NO_CRL;
            KL_FAIL(KL_ERR_CONFIG);
        }
        /* The leaf's revocation is checked; intermediates are trusted as the bundle's CAs vouch for them. */
        KL_ENSURE(X509_STORE_set_flags(ca->store, X509_V_FLAG_CRL_CHECK) == 1, KL_ERR_CRYPTO);
    }
    KL_ENSURE(X509_STORE_set_depth(ca->store, (int)(depth > 100 ? 100 : depth)) == 1, KL_ERR_CRYPTO);
    KL_ENSURE(X509_STORE_set_purpose(ca->store, X509_PURPOSE_SSL_CLIENT) == 1, KL_ERR_CRYPTO);
    if (ca->names_len == SIZE_MAX) {
        OPENSSL_free(ca->names);
        ca->names = NULL;
        ca->names_len = 0;
    }
    *ca_p = ca;
    ca = NULL;
    ret = 0;
exit:
    if (ret == KL_ERR_NO_MEMORY)
        why = CRYPTO_CLIENT_CA_NO_MEMORY;
    ERR_clear_error();
    X509_free(x);
    X509_CRL_free(crl);
    BIO_free(bio);
    crypto_client_ca_free(ca);
    *why_p = why;
    return ret;
}

void crypto_client_ca_free(struct crypto_client_ca *ca)
{
    if (ca == NULL)
        return;
    X509_STORE_free(ca->store);
    OPENSSL_free(ca->names);
    OPENSSL_free(ca);
}

size_t crypto_client_ca_count(const struct crypto_client_ca *ca)
{
    return ca->n_certs;
}

struct kl_span crypto_client_ca_names(const struct crypto_client_ca *ca)
{
    return kl_span_of(ca->names, ca->names_len);
}

/* The alert libssl's ssl_verify_alarm_type() sends for a verify error. */
static int client_verify_alert(int err)
{
    switch (err) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
        return KL_ERR_ALERT(KL_ALERT_UNKNOWN_CA);
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CRL_HAS_EXPIRED:
        return KL_ERR_ALERT(KL_ALERT_CERTIFICATE_EXPIRED);
    case X509_V_ERR_CERT_REVOKED:
        return KL_ERR_ALERT(KL_ALERT_CERTIFICATE_REVOKED);
    case X509_V_ERR_INVALID_PURPOSE:
        return KL_ERR_ALERT(KL_ALERT_UNSUPPORTED_CERTIFICATE);
    case X509_V_ERR_OUT_OF_MEM:
        return KL_ERR_NO_MEMORY;
    default:
        return KL_ERR_ALERT(KL_ALERT_BAD_CERTIFICATE);
    }
}

/* Copy at most len bytes of s into a NUL-terminated slot of CRYPTO_ID_TEXT, controls as '?'. */
static void id_text_append(char *dst, const unsigned char *s, size_t len)
{
    size_t at = strlen(dst);
    for (size_t i = 0; i < len && at + 1 < CRYPTO_ID_TEXT; i++)
        dst[at++] = (char)(s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i]);
    dst[at] = '\0';
}

static void client_id_fill(X509 *leaf, struct crypto_peer_id *id)
{
    X509_NAME *subj = X509_get_subject_name(leaf);
    int i = -1, last = -1;
    while ((i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0)
        last = i;
    if (last >= 0) {
        unsigned char *u = NULL;
        int len = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, last)));
        if (len > 0)
            id_text_append(id->subject_cn, u, (size_t)len);
        OPENSSL_free(u);
    }
    BIO *b = BIO_new(BIO_s_mem());
    if (b != NULL && X509_NAME_print_ex(b, subj, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        char *p = NULL;
        long len = BIO_get_mem_data(b, &p);
        if (len > 0)
            id_text_append(id->subject, (const unsigned char *)p, (size_t)len);
    }
    BIO_free(b);
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    for (int k = 0; gens != NULL && k < sk_GENERAL_NAME_num(gens); k++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, k);
        const char *tag;
        const ASN1_STRING *v;
        switch (g->type) {
        case GEN_DNS:
            tag = "DNS:", v = g->d.dNSName;
            break;
        case GEN_EMAIL:
            tag = "email:", v = g->d.rfc822Name;
            break;
        case GEN_URI:
            tag = "URI:", v = g->d.uniformResourceIdentifier;
            break;
        default:
            continue;
        }
        if (id->san[0] != '\0')
            id_text_append(id->san, (const unsigned char *)",", 1);
        id_text_append(id->san, (const unsigned char *)tag, strlen(tag));
        id_text_append(id->san, ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v));
    }
    GENERAL_NAMES_free(gens);
}

int crypto_client_chain_verify(const struct crypto_client_ca *ca, const uint8_t *const *der, const size_t *der_len,
                               size_t n, int64_t at, struct crypto_peer_id *id, int *x509_err_p)
{
    int ret;
    X509 *leaf = NULL;
    STACK_OF(X509) *untrusted = NULL;
    X509_STORE_CTX *ctx = NULL;

    memset(id, 0, sizeof(*id));
    *x509_err_p = X509_V_ERR_UNSPECIFIED;
    KL_ENSURE(ca != NULL && n >= 1, KL_ERR_INVALID);
    /* 4.4.2.4: a certificate that does not parse is bad_certificate. */
    KL_ENSURE((leaf = parse_cert(der[0], der_len[0])) != NULL, KL_ERR_ALERT(KL_ALERT_BAD_CERTIFICATE));
    KL_ENSURE((untrusted = sk_X509_new_null()) != NULL, KL_ERR_NO_MEMORY);
    for (size_t i = 1; i < n; i++) {
        X509 *x = parse_cert(der[i], der_len[i]);
        KL_ENSURE(x != NULL, KL_ERR_ALERT(KL_ALERT_BAD_CERTIFICATE));
        if (sk_X509_push(untrusted, x) <= 0) {
            X509_free(x);
            KL_FAIL(KL_ERR_NO_MEMORY);
        }
    }
    KL_ENSURE((ctx = X509_STORE_CTX_new()) != NULL, KL_ERR_NO_MEMORY);
    KL_ENSURE(X509_STORE_CTX_init(ctx, ca->store, leaf, untrusted) == 1, KL_ERR_NO_MEMORY);
    if (at != 0)
        X509_STORE_CTX_set_time(ctx, 0, (time_t)at);
    if (X509_verify_cert(ctx) != 1) {
        *x509_err_p = X509_STORE_CTX_get_error(ctx);
        KL_FAIL(client_verify_alert(*x509_err_p));
    }
    *x509_err_p = X509_V_OK;
    KL_TRY(crypto_digest(CRYPTO_HASH_SHA256, id->sha256, der[0], der_len[0]));
    client_id_fill(leaf, id);
    ret = 0;
exit:
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    sk_X509_pop_free(untrusted, X509_free);
    X509_free(leaf);
    return ret;
}
