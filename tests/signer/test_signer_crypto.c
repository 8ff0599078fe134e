/*
 * test_signer_crypto.c - crypto_verify_tls_signature(), the check of every Ed25519
 * signature (and RSA-PSS, and ECDSA with verify_ecdsa) before it leaves the signer (issue
 * 13 §5): good signatures of each scheme verify; a flipped bit, another content, another
 * key, a key of the wrong type, a truncated or garbage SPKI, an unknown scheme do not.
 * It also prints the cost of one verification per scheme (the figure in docs/SIGNER.md).
 */
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

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
