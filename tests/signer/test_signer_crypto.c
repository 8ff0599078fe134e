/*
 * test_signer_crypto.c - crypto_verify_tls_signature(), the check of every Ed25519
 * signature (and RSA-PSS, and ECDSA with verify_ecdsa) before it leaves the signer (issue
 * 13 §5): good signatures of each scheme verify; a flipped bit, another content, another
 * key, a key of the wrong type, a truncated or garbage SPKI, an unknown scheme do not.
 * It also prints the cost of one verification per scheme (the figure in docs/SIGNER.md).
 */
#include <string.h>
#include <time.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "crypto.h"
#include "kl_test.h"
#include "policy.h"

struct key {
    EVP_PKEY *pkey;
    uint8_t spki[1024];
    size_t spki_len;
};

static int key_make(struct key *k, const char *type, const char *param)
{
    unsigned char *p = k->spki;
    int n;
    /* EVP_PKEY_Q_keygen is variadic: "RSA" takes a size_t (bits), "EC" a curve name, the
     * others nothing. Calling it for RSA without the size reads a garbage bit count. */
    if (strcmp(type, "RSA") == 0) {
        k->pkey = EVP_PKEY_Q_keygen(NULL, NULL, type, (size_t)2048);
    } else if (param != NULL) {
        k->pkey = EVP_PKEY_Q_keygen(NULL, NULL, type, param);
    } else {
        k->pkey = EVP_PKEY_Q_keygen(NULL, NULL, type);
    }
    if (k->pkey == NULL || (n = i2d_PUBKEY(k->pkey, NULL)) <= 0 || (size_t)n > sizeof(k->spki)) {
        return -1;
    }
    k->spki_len = (size_t)i2d_PUBKEY(k->pkey, &p);
    return 0;
}

/* Sign content as the TLS scheme does (the test's own, independent signer). */
static size_t sign(uint8_t *sig, size_t cap, const struct key *k, const EVP_MD *md, int pss, const uint8_t *content,
                   size_t len)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    size_t n = cap;
    int good = m != NULL && EVP_DigestSignInit(m, &pctx, md, NULL, k->pkey) == 1;
    if (good && pss) {
        good = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
               EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, EVP_MD_get_size(md)) == 1;
    }
    good = good && EVP_DigestSign(m, sig, &n, content, len) == 1;
    EVP_MD_CTX_free(m);
    return good ? n : 0;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time: stable on a busy machine */
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

struct scheme_case {
    uint16_t scheme;
    const char *type, *param;
    const EVP_MD *(*md)(void);
    int pss;
    const char *name;
};

/* OpenSSL's DER of r || s (each half n bytes): the reference for crypto_ecdsa_raw_to_der. */
static int ref_der(uint8_t *out, size_t cap, const uint8_t *rs, size_t n)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(rs, (int)n, NULL), *s = BN_bin2bn(rs + n, (int)n, NULL);
    unsigned char *p = out;
    int len = -1;
    if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL;
        len = i2d_ECDSA_SIG(es, NULL);
        len = len > 0 && (size_t)len <= cap ? i2d_ECDSA_SIG(es, &p) : -1;
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return len;
}

/* The hand-written DER against OpenSSL's, on halves with leading zeros, top bits set,
 * zero, and the curve sizes (P-521's body needs the long length form); then misuse. */
static void test_raw_to_der(void)
{
    static const size_t halves[] = {1, 2, 32, 48, 66, 70, 200};
    uint8_t rs[400], der[512], want[512];
    int same = 1, cases = 0;
    for (size_t h = 0; h < sizeof(halves) / sizeof(halves[0]); h++) {
        size_t n = halves[h];
        for (int pattern = 0; pattern < 64; pattern++) {
            size_t len = sizeof(der);
            int ref;
            randombytes_buf(rs, 2 * n);
            /* Bits 0-1: r's top octet 0x00 / 0x80 / random; bits 2-3 the same for s; bit 4:
             * r all zero; bit 5: s's first half zero. */
            for (int i = 0; i < 2; i++) {
                int mode = (pattern >> (2 * i)) & 3;
                if (mode == 0)
                    rs[i * n] = 0;
                else if (mode == 1)
                    rs[i * n] |= 0x80;
            }
            if (pattern & 16)
                memset(rs, 0, n);
            if (pattern & 32)
                memset(rs + n, 0, (n + 1) / 2);
            ref = ref_der(want, sizeof(want), rs, n);
            cases++;
            if (ref < 0 || crypto_ecdsa_raw_to_der(der, &len, rs, 2 * n) != 0 || len != (size_t)ref ||
                memcmp(der, want, len) != 0) {
                diag("raw_to_der differs from i2d_ECDSA_SIG: half %zu, pattern %d", n, pattern);
                same = 0;
            }
        }
    }
    diag("raw_to_der: %d cases", cases);
    ok(same, "raw_to_der: the same DER as i2d_ECDSA_SIG (halves of 1 to 200 bytes, 64 patterns each)");
    size_t len = sizeof(der);
    is_int(crypto_ecdsa_raw_to_der(der, &len, rs, 0), KL_ERR_CRYPTO, "raw_to_der: empty input: KL_ERR_CRYPTO");
    len = sizeof(der);
    is_int(crypto_ecdsa_raw_to_der(der, &len, rs, 63), KL_ERR_CRYPTO, "raw_to_der: odd length: KL_ERR_CRYPTO");
    len = sizeof(der);
    is_int(crypto_ecdsa_raw_to_der(NULL, &len, rs, 64), KL_ERR_INVALID, "raw_to_der: NULL output: KL_ERR_INVALID");
    memset(rs, 0xff, 64);
    len = 71; /* 0x30 0x46, two INTEGERs of 33 octets (0x00 in front): 72 in all */
    is_int(crypto_ecdsa_raw_to_der(der, &len, rs, 64), KL_ERR_OVERFLOW, "raw_to_der: one octet short: KL_ERR_OVERFLOW");
    len = 72;
    ok(crypto_ecdsa_raw_to_der(der, &len, rs, 64) == 0 && len == 72, "raw_to_der: exactly enough room");
}

/* crypto_sha256 (OpenSSL's, fetched once) against libsodium's and a FIPS 180-2 vector. */
static void test_sha256(void)
{
    static const uint8_t abc_digest[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
                                           0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
                                           0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    uint8_t buf[1000], got[32], want[32];
    int same = 1;
    crypto_sha256(got, "abc", 3);
    ok(memcmp(got, abc_digest, 32) == 0, "sha256: the FIPS 180-2 \"abc\" vector");
    crypto_sha256(got, "abd", 3);
    ok(memcmp(got, abc_digest, 32) != 0, "sha256: another input, another digest");
    randombytes_buf(buf, sizeof(buf));
    for (size_t n = 0; n <= sizeof(buf); n += 37) {
        crypto_sha256(got, buf, n);
        crypto_hash_sha256(want, buf, n);
        same &= memcmp(got, want, 32) == 0;
    }
    ok(same, "sha256: the same digests as libsodium's for 0 to 999 bytes");
}

/* RSA-PSS over a digest, as the token signs for crypto_rsa_pss_verify (the test's own). */
static size_t pss_sign(uint8_t *sig, size_t cap, EVP_PKEY *pkey, const EVP_MD *md, const uint8_t *dg, size_t dg_len)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
    size_t n = cap;
    if (ctx == NULL || EVP_PKEY_sign_init(ctx) != 1 || EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx, md) != 1 || EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, EVP_MD_get_size(md)) != 1 || EVP_PKEY_sign(ctx, sig, &n, dg, dg_len) != 1)
        n = 0;
    EVP_PKEY_CTX_free(ctx);
    return n;
}

/* crypto_rsa_pss_verify keeps a configured context per hash for the next call: calls in
 * a row, a bad signature in between (its context is dropped), and two hashes alternating
 * must each give the answer a fresh context gives. */
static void test_pss_reuse(const struct key *k)
{
    struct crypto_pubkey *pub = NULL;
    uint8_t d256[32], d384[48], s256[512], s384[512];
    size_t n256, n384;
    int good = 1;
    memset(d256, 0x11, sizeof(d256));
    memset(d384, 0x22, sizeof(d384));
    n256 = pss_sign(s256, sizeof(s256), k->pkey, EVP_sha256(), d256, sizeof(d256));
    n384 = pss_sign(s384, sizeof(s384), k->pkey, EVP_sha384(), d384, sizeof(d384));
    if (!ok(n256 > 0 && n384 > 0 && crypto_pubkey_from_spki(&pub, k->spki, k->spki_len) == 0,
            "pss: two signatures and the public key"))
        return;
    for (int i = 0; i < 4; i++) {
        good &= crypto_rsa_pss_verify(pub, TLS_HASH_SHA256, s256, n256, d256, sizeof(d256)) == 0;
        good &= crypto_rsa_pss_verify(pub, TLS_HASH_SHA384, s384, n384, d384, sizeof(d384)) == 0;
    }
    ok(good, "pss: SHA-256 and SHA-384 alternating, 4 times each, verify");
    s256[n256 / 2] ^= 1;
    is_int(crypto_rsa_pss_verify(pub, TLS_HASH_SHA256, s256, n256, d256, sizeof(d256)), KL_ERR_CRYPTO,
           "pss: a flipped bit: KL_ERR_CRYPTO");
    s256[n256 / 2] ^= 1;
    is_int(crypto_rsa_pss_verify(pub, TLS_HASH_SHA256, s256, n256, d256, sizeof(d256)), 0,
           "pss: the good one again after the failure: 0");
    is_int(crypto_rsa_pss_verify(pub, TLS_HASH_SHA384, s256, n256, d256, sizeof(d256)), KL_ERR_CRYPTO,
           "pss: a SHA-256 signature checked as SHA-384: KL_ERR_CRYPTO");
    is_int(crypto_rsa_pss_verify(pub, TLS_HASH_SHA384, s384, n384, d384, sizeof(d384)), 0,
           "pss: SHA-384 still verifies after that");
    is_int(crypto_rsa_pss_verify(pub, TLS_HASH_NONE, s256, n256, d256, sizeof(d256)), KL_ERR_INVALID,
           "pss: no hash: KL_ERR_INVALID");
    crypto_pubkey_free(pub);
}

int main(void)
{
    static const struct scheme_case cases[] = {
        {TLS_SIG_ECDSA_SECP256R1_SHA256, "EC", "P-256", EVP_sha256, 0, "ecdsa_secp256r1_sha256"},
        {TLS_SIG_ECDSA_SECP384R1_SHA384, "EC", "P-384", EVP_sha384, 0, "ecdsa_secp384r1_sha384"},
        {TLS_SIG_RSA_PSS_RSAE_SHA256, "RSA", NULL, EVP_sha256, 1, "rsa_pss_rsae_sha256"},
        {TLS_SIG_ED25519, "ED25519", NULL, NULL, 0, "ed25519"},
    };
    uint8_t hash[48], content[POLICY_MAX_CONTENT], sig[1024], bad[1024];
    size_t content_len = 0;
    struct key other;

    ok(crypto_init() == 0, "crypto_init");
    test_raw_to_der();
    test_sha256();
    memset(hash, 0x5a, sizeof(hash));
    ok(policy_build_content(content, &content_len, POLICY_CONTEXT_SERVER, hash, 32) == 0, "content built");
    ok(key_make(&other, "ED25519", NULL) == 0, "a second Ed25519 key");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct scheme_case *c = &cases[i];
        struct key k;
        char name[160];
        size_t n;
        if (key_make(&k, c->type, c->param) != 0) {
            ok(0, c->name);
            continue;
        }
        n = sign(sig, sizeof(sig), &k, c->md != NULL ? c->md() : NULL, c->pss, content, content_len);
        snprintf(name, sizeof(name), "%s: a good signature verifies", c->name);
        is_int(crypto_verify_tls_signature(k.spki, k.spki_len, c->scheme, content, content_len, sig, n), 0, name);
        memcpy(bad, sig, n);
        bad[n / 2] ^= 0x01;
        snprintf(name, sizeof(name), "%s: one flipped bit: KL_ERR_CRYPTO", c->name);
        is_int(crypto_verify_tls_signature(k.spki, k.spki_len, c->scheme, content, content_len, bad, n), KL_ERR_CRYPTO,
               name);
        snprintf(name, sizeof(name), "%s: over other content: KL_ERR_CRYPTO", c->name);
        content[70] ^= 0x01;
        is_int(crypto_verify_tls_signature(k.spki, k.spki_len, c->scheme, content, content_len, sig, n), KL_ERR_CRYPTO,
               name);
        content[70] ^= 0x01;
        snprintf(name, sizeof(name), "%s: truncated signature: KL_ERR_CRYPTO", c->name);
        is_int(crypto_verify_tls_signature(k.spki, k.spki_len, c->scheme, content, content_len, sig, n - 1),
               KL_ERR_CRYPTO, name);
        snprintf(name, sizeof(name), "%s: truncated SPKI: KL_ERR_CRYPTO", c->name);
        is_int(crypto_verify_tls_signature(k.spki, k.spki_len - 1, c->scheme, content, content_len, sig, n),
               KL_ERR_CRYPTO, name);
        if (c->scheme != TLS_SIG_ED25519) {
            snprintf(name, sizeof(name), "%s: an Ed25519 key for this scheme: KL_ERR_CRYPTO", c->name);
            is_int(crypto_verify_tls_signature(other.spki, other.spki_len, c->scheme, content, content_len, sig, n),
                   KL_ERR_CRYPTO, name);
        } else {
            snprintf(name, sizeof(name), "%s: another Ed25519 key: KL_ERR_CRYPTO", c->name);
            is_int(crypto_verify_tls_signature(other.spki, other.spki_len, c->scheme, content, content_len, sig, n),
                   KL_ERR_CRYPTO, name);
        }
        if (strcmp(c->type, "RSA") == 0)
            test_pss_reuse(&k);
        /* The cost of the check, for docs/SIGNER.md (the token's sign is the comparison). */
        double t0 = now_us();
        int all = 1;
        for (int r = 0; r < 200; r++) {
            all &= crypto_verify_tls_signature(k.spki, k.spki_len, c->scheme, content, content_len, sig, n) == 0;
        }
        double per = (now_us() - t0) / 200;
        ok(all, "200 verifications in a row");
        diag("verify %-24s %7.1f us CPU each", c->name, per);
        EVP_PKEY_free(k.pkey);
    }
    is_int(crypto_verify_tls_signature(other.spki, other.spki_len, 0x0401, content, content_len, sig, 64),
           KL_ERR_INVALID, "rsa_pkcs1_sha256 (not a TLS 1.3 CertificateVerify scheme): KL_ERR_INVALID");
    is_int(crypto_verify_tls_signature(NULL, 0, TLS_SIG_ED25519, content, content_len, sig, 64), KL_ERR_INVALID,
           "NULL SPKI: KL_ERR_INVALID");
    memset(bad, 0x30, 64);
    is_int(crypto_verify_tls_signature(bad, 64, TLS_SIG_ED25519, content, content_len, sig, 64), KL_ERR_CRYPTO,
           "garbage SPKI: KL_ERR_CRYPTO");
    EVP_PKEY_free(other.pkey);
    return kl_test_done();
}
