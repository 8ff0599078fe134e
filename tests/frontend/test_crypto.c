/*
 * test_crypto.c - known-answer tests for crypto.c (RFC 5869, RFC 4231, FIPS 180, RFC 8439,
 * the GCM spec, RFC 8448, RFC 7748's X448 vectors) and its refusals: invalid P-256/P-384/P-521
 * points, X25519 and X448 low-order points, finite-field values outside 1 < Y < p-1, shares of
 * the wrong length, tampered AEAD input, bad signatures; the left-padding of finite-field
 * shares and shared secrets (RFC 8446 4.2.8.1, 7.4.1).
 */
#include <stdlib.h>
#include <unistd.h>
#include "crypto.h"
#include "kl_test.h"
#include "rfc8448.h"
#include "tls.h"

static size_t unhex(uint8_t *out, const char *hex)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

static void test_hash_hmac_hkdf(void)
{
    uint8_t out[64], want[64], ikm[22], salt[13], info[10], prk[48];
    size_t wl;

    /* FIPS 180-2 "abc". */
    ok(crypto_digest(CRYPTO_HASH_SHA256, out, (const uint8_t *)"abc", 3) == 0, "sha256");
    wl = unhex(want, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    is_mem(out, 32, want, wl, "sha256(abc)");
    ok(crypto_digest(CRYPTO_HASH_SHA384, out, (const uint8_t *)"abc", 3) == 0, "sha384");
    wl =
        unhex(want, "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7");
    is_mem(out, 48, want, wl, "sha384(abc)");
    is_int(crypto_hash_len(CRYPTO_HASH_SHA384), 48, "sha384 len");
    is_int(crypto_hash_len(0), 0, "unknown hash len");
    is_int(crypto_digest(0, out, NULL, 0), KL_ERR_INVALID, "unknown hash refused");

    /* Incremental + peek: same as one-shot, and peek does not finalize. */
    struct crypto_hash_ctx h;
    ok(crypto_hash_ctx_init(&h, CRYPTO_HASH_SHA384) == 0, "ctx init");
    ok(crypto_hash_ctx_update(&h, (const uint8_t *)"a", 1) == 0 && crypto_hash_ctx_peek(&h, out) == 0, "peek a");
    ok(crypto_hash_ctx_update(&h, (const uint8_t *)"bc", 2) == 0 && crypto_hash_ctx_peek(&h, out) == 0, "peek abc");
    is_mem(out, 48, want, 48, "incremental sha384 with peeks");
    ok(crypto_hash_ctx_reset(&h) == 0 && crypto_hash_ctx_update(&h, (const uint8_t *)"abc", 3) == 0 &&
           crypto_hash_ctx_peek(&h, out) == 0,
       "reset");
    is_mem(out, 48, want, 48, "after reset");
    crypto_hash_ctx_dispose(&h);
    crypto_hash_ctx_dispose(&h);
    is_int(crypto_hash_ctx_update(&h, out, 1), KL_ERR_INVALID, "use after dispose refused");

    /* RFC 4231 test case 1. */
    uint8_t key[20];
    memset(key, 0x0b, sizeof(key));
    ok(crypto_hmac(CRYPTO_HASH_SHA256, out, key, 20, (const uint8_t *)"Hi There", 8) == 0, "hmac-sha256");
    wl = unhex(want, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    is_mem(out, 32, want, wl, "rfc4231 tc1 sha256");
    ok(crypto_hmac(CRYPTO_HASH_SHA384, out, key, 20, (const uint8_t *)"Hi There", 8) == 0, "hmac-sha384");
    wl =
        unhex(want, "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6");
    is_mem(out, 48, want, wl, "rfc4231 tc1 sha384");

    /* RFC 5869 test case 1 (SHA-256). */
    memset(ikm, 0x0b, sizeof(ikm));
    unhex(salt, "000102030405060708090a0b0c");
    unhex(info, "f0f1f2f3f4f5f6f7f8f9");
    ok(crypto_hkdf_extract(CRYPTO_HASH_SHA256, prk, salt, 13, ikm, 22) == 0, "hkdf extract");
    wl = unhex(want, "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
    is_mem(prk, 32, want, wl, "rfc5869 tc1 prk");
    ok(crypto_hkdf_expand(CRYPTO_HASH_SHA256, out, 42, prk, 32, info, 10) == 0, "hkdf expand");
    wl = unhex(want, "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
    is_mem(out, 42, want, wl, "rfc5869 tc1 okm");
    /* RFC 5869 test case 3: no salt, no info. */
    ok(crypto_hkdf_extract(CRYPTO_HASH_SHA256, prk, NULL, 0, ikm, 22) == 0 &&
           crypto_hkdf_expand(CRYPTO_HASH_SHA256, out, 42, prk, 32, NULL, 0) == 0,
       "hkdf tc3");
    wl = unhex(want, "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
    is_mem(out, 42, want, wl, "rfc5869 tc3 okm");
    /* SHA-384 HKDF: expand(prk, info, 96) across two blocks equals HMAC chain by hand. */
    uint8_t t1[48], t2[48], blk[48 + 10 + 1];
    ok(crypto_hkdf_extract(CRYPTO_HASH_SHA384, prk, salt, 13, ikm, 22) == 0, "hkdf-sha384 extract");
    ok(crypto_hmac(CRYPTO_HASH_SHA384, want, salt, 13, ikm, 22) == 0, "extract = HMAC(salt, ikm)");
    is_mem(prk, 48, want, 48, "sha384 extract");
    memcpy(blk, info, 10);
    blk[10] = 1;
    ok(crypto_hmac(CRYPTO_HASH_SHA384, t1, prk, 48, blk, 11) == 0, "T1");
    memcpy(blk, t1, 48);
    memcpy(blk + 48, info, 10);
    blk[58] = 2;
    ok(crypto_hmac(CRYPTO_HASH_SHA384, t2, prk, 48, blk, 59) == 0, "T2");
    uint8_t okm[60];
    ok(crypto_hkdf_expand(CRYPTO_HASH_SHA384, okm, 60, prk, 48, info, 10) == 0, "sha384 expand 60");
    is_mem(okm, 48, t1, 48, "sha384 okm block 1");
    is_mem(okm + 48, 12, t2, 12, "sha384 okm block 2");
    is_int(crypto_hkdf_expand(CRYPTO_HASH_SHA256, out, 255 * 32 + 1, prk, 32, NULL, 0), KL_ERR_INVALID,
           "expand length bound");
}

static void test_aead(void)
{
    uint8_t key[32], nonce[12], aad[12], pt[128], ct[160], back[160], want[160];
    size_t wl;
    struct crypto_aead e = {0}, d = {0};

    /* RFC 8439 2.8.2. */
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(0x80 + i);
    unhex(nonce, "070000004041424344454647");
    unhex(aad, "50515253c0c1c2c3c4c5c6c7");
    static const char sunscreen[] = "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
                                    "the future, sunscreen would be it.";
    size_t pl = strlen(sunscreen);
    memcpy(pt, sunscreen, pl);
    wl = unhex(want, "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b"
                     "1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
                     "3ff4def08e4b7a9de576d26586cec64b61161ae10b594f09e26a7e902ecbd0600691");
    ok(crypto_aead_init(&e, TLS_CHACHA20_POLY1305_SHA256, 1, key, 32) == 0, "chacha init");
    ok(crypto_aead_seal(&e, ct, nonce, aad, 12, pt, pl) == 0, "chacha seal");
    is_mem(ct, pl + 16, want, wl, "rfc8439 2.8.2 ciphertext+tag");
    ok(crypto_aead_init(&d, TLS_CHACHA20_POLY1305_SHA256, 0, key, 32) == 0, "chacha open init");
    ok(crypto_aead_open(&d, back, nonce, aad, 12, ct, pl + 16) == 0, "chacha open");
    is_mem(back, pl, pt, pl, "chacha round trip");
    ct[5] ^= 1;
    is_int(crypto_aead_open(&d, back, nonce, aad, 12, ct, pl + 16), KL_ERR_BAD_RECORD_MAC, "chacha tampered");
    ct[5] ^= 1;
    aad[0] ^= 1;
    is_int(crypto_aead_open(&d, back, nonce, aad, 12, ct, pl + 16), KL_ERR_BAD_RECORD_MAC, "chacha tampered aad");
    aad[0] ^= 1;
    is_int(crypto_aead_open(&d, back, nonce, aad, 12, ct, 15), KL_ERR_BAD_RECORD_MAC, "shorter than tag");
    is_int(crypto_aead_seal(&d, ct, nonce, aad, 12, pt, pl), KL_ERR_INVALID, "seal on an open context refused");

    /* GCM spec test case 14: AES-256, zero key/iv, 16 zero bytes. */
    memset(key, 0, 32);
    memset(nonce, 0, 12);
    memset(pt, 0, 16);
    wl = unhex(want, "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");
    ok(crypto_aead_init(&e, TLS_AES_256_GCM_SHA384, 1, key, 32) == 0, "re-key to aes-256-gcm");
    ok(crypto_aead_seal(&e, ct, nonce, NULL, 0, pt, 16) == 0, "aes256 seal");
    is_mem(ct, 32, want, wl, "gcm tc14");
    ok(crypto_aead_init(&d, TLS_AES_256_GCM_SHA384, 0, key, 32) == 0, "aes256 open init");
    ok(crypto_aead_open(&d, back, nonce, NULL, 0, ct, 32) == 0, "aes256 open");
    is_mem(back, 16, pt, 16, "aes256 round trip");
    /* In place. */
    memcpy(back, ct, 32);
    ok(crypto_aead_open(&d, back, nonce, NULL, 0, back, 32) == 0 && memcmp(back, pt, 16) == 0, "aes256 open in place");
    ct[31] ^= 0x80;
    memset(back, 0xee, 16);
    is_int(crypto_aead_open(&d, back, nonce, NULL, 0, ct, 32), KL_ERR_BAD_RECORD_MAC, "aes256 tampered tag");
    ok(back[0] == 0 && back[15] == 0, "no unauthenticated plaintext released");
    is_int(crypto_aead_init(&e, TLS_AES_128_GCM_SHA256, 1, key, 32), KL_ERR_INVALID, "wrong key length");
    is_int(crypto_aead_init(&e, 0x1304, 1, key, 16), KL_ERR_INVALID, "unsupported suite (CCM)");
    crypto_aead_dispose(&e);
    crypto_aead_dispose(&d);
    crypto_aead_dispose(&d);
    is_int(crypto_aead_seal(&e, ct, nonce, NULL, 0, pt, 16), KL_ERR_INVALID, "disposed aead refuses");
}

static int is_nist(uint16_t g)
{
    return g == TLS_GROUP_SECP256R1 || g == TLS_GROUP_SECP384R1 || g == TLS_GROUP_SECP521R1;
}

static int is_ffdhe(uint16_t g)
{
    return g >= TLS_GROUP_FFDHE2048 && g <= TLS_GROUP_FFDHE8192;
}

/* Every group: a round trip, the share length, and the refusals every group shares. */
static void test_kex_groups(void)
{
    static uint8_t z1[CRYPTO_MAX_SHARED], z2[CRYPTO_MAX_SHARED], bad[CRYPTO_MAX_SHARE + 1];
    struct crypto_kex a, b;
    size_t l1, l2;

    is_int(tls_n_groups, 10, "ten groups");
    for (size_t gi = 0; gi < tls_n_groups; gi++) {
        uint16_t g = tls_groups[gi].id;
        const char *gn = tls_groups[gi].name;
        char name[96];
        snprintf(name, sizeof(name), "%s: generate + agree", gn);
        ok(crypto_kex_generate(&a, g) == 0 && crypto_kex_generate(&b, g) == 0 &&
               crypto_kex_derive(&a, z1, &l1, b.pub, b.pub_len) == 0 &&
               crypto_kex_derive(&b, z2, &l2, a.pub, a.pub_len) == 0 && l1 == l2 && l1 == crypto_kex_secret_len(g) &&
               memcmp(z1, z2, l1) == 0,
           name);
        snprintf(name, sizeof(name), "%s: share length", gn);
        is_int(a.pub_len, crypto_kex_share_len(g), name);
        snprintf(name, sizeof(name), "%s: share and secret fit the maxima", gn);
        ok(crypto_kex_share_len(g) <= CRYPTO_MAX_SHARE && crypto_kex_secret_len(g) <= CRYPTO_MAX_SHARED, name);
        snprintf(name, sizeof(name), "%s: short share refused", gn);
        is_int(crypto_kex_derive(&a, z1, &l1, b.pub, b.pub_len - 1), KL_ERR_ILLEGAL_PARAMETER, name);
        memcpy(bad, b.pub, b.pub_len);
        bad[b.pub_len] = 0;
        snprintf(name, sizeof(name), "%s: long share refused", gn);
        is_int(crypto_kex_derive(&a, z1, &l1, bad, b.pub_len + 1), KL_ERR_ILLEGAL_PARAMETER, name);
        snprintf(name, sizeof(name), "%s: still agrees after the refusals", gn);
        ok(crypto_kex_derive(&a, z1, &l1, b.pub, b.pub_len) == 0 && l1 == l2 && memcmp(z1, z2, l1) == 0, name);
        if (is_nist(g)) {
            size_t n = b.pub_len;
            memcpy(bad, b.pub, n);
            bad[n - 1] ^= 1; /* y off by one: not on the curve */
            snprintf(name, sizeof(name), "%s: off-curve point refused", gn);
            is_int(crypto_kex_derive(&a, z1, &l1, bad, n), KL_ERR_ILLEGAL_PARAMETER, name);
            memcpy(bad, b.pub, n);
            bad[0] = 0x02; /* compressed marker, uncompressed length */
            snprintf(name, sizeof(name), "%s: non-uncompressed form refused", gn);
            is_int(crypto_kex_derive(&a, z1, &l1, bad, n), KL_ERR_ILLEGAL_PARAMETER, name);
            bad[0] = 0x06; /* hybrid form (X9.62), uncompressed length */
            snprintf(name, sizeof(name), "%s: hybrid form refused", gn);
            is_int(crypto_kex_derive(&a, z1, &l1, bad, n), KL_ERR_ILLEGAL_PARAMETER, name);
            memset(bad, 0, n);
            bad[0] = 0x04;
            snprintf(name, sizeof(name), "%s: (0,0) refused", gn);
            is_int(crypto_kex_derive(&a, z1, &l1, bad, n), KL_ERR_ILLEGAL_PARAMETER, name);
            memset(bad, 0xff, n);
            bad[0] = 0x04;
            snprintf(name, sizeof(name), "%s: coordinates >= p refused", gn);
            is_int(crypto_kex_derive(&a, z1, &l1, bad, n), KL_ERR_ILLEGAL_PARAMETER, name);
            memcpy(bad, b.pub, 1 + (n - 1) / 2);
            bad[0] = 0x02 | (b.pub[n - 1] & 1);
            snprintf(name, sizeof(name), "%s: a valid compressed point (1 + x) refused", gn);
            is_int(crypto_kex_derive(&a, z1, &l1, bad, 1 + (n - 1) / 2), KL_ERR_ILLEGAL_PARAMETER, name);
        }
        if (is_ffdhe(g)) {
            size_t n = b.pub_len;
            /* RFC 7919 5.1: 1 < Y < p-1; Y = 0, 1 and anything >= p (all ones is above p) refused. */
            memset(bad, 0, n);
            snprintf(name, sizeof(name), "%s: Y = 0 refused", gn);
            is_int(crypto_kex_derive(&a, z1, &l1, bad, n), KL_ERR_ILLEGAL_PARAMETER, name);
            bad[n - 1] = 1;
            snprintf(name, sizeof(name), "%s: Y = 1 refused", gn);
            is_int(crypto_kex_derive(&a, z1, &l1, bad, n), KL_ERR_ILLEGAL_PARAMETER, name);
            bad[n - 1] = 2;
            snprintf(name, sizeof(name), "%s: Y = 2 (in range) accepted", gn);
            is_int(crypto_kex_derive(&a, z1, &l1, bad, n), 0, name);
            memset(bad, 0xff, n);
            snprintf(name, sizeof(name), "%s: Y = 2^n - 1 (> p) refused", gn);
            is_int(crypto_kex_derive(&a, z1, &l1, bad, n), KL_ERR_ILLEGAL_PARAMETER, name);
        }
        crypto_kex_dispose(&a);
        crypto_kex_dispose(&b);
        snprintf(name, sizeof(name), "%s: disposed key refuses to derive", gn);
        ok(crypto_kex_derive(&a, z1, &l1, b.pub, crypto_kex_share_len(g)) != 0, name);
    }
    is_int(crypto_kex_share_len(0x0105), 0, "ffdhe 0x0105 unknown");
    is_int(crypto_kex_generate(&a, 0x001a), KL_ERR_INVALID, "brainpoolP256r1 (0x001a) unsupported");
    is_int(crypto_kex_generate(&a, 0x01ff), KL_ERR_INVALID, "ffdhe private-use 0x01ff unsupported");
    is_int(crypto_kex_set_private(&a, TLS_GROUP_FFDHE2048, z1, 256), KL_ERR_INVALID, "ffdhe2048 fixed key refused");
}

/* ffdhe2048's p (RFC 7919 A.1): the values around it, and the left-padding of shares and secrets. */
static void test_kex_ffdhe2048(void)
{
    static const char *p_hex =
        "ffffffffffffffffadf85458a2bb4a9aafdc5620273d3cf1d8b9c583ce2d3695a9e13641146433fbcc939dce249b3ef97d2fe363630c"
        "75d8f681b202aec4617ad3df1ed5d5fd65612433f51f5f066ed0856365553ded1af3b557135e7f57c935984f0c70e0e68b77e2a689daf"
        "3efe8721df158a136ade73530acca4f483a797abc0ab182b324fb61d108a94bb2c8e3fbb96adab760d7f4681d4f42a3de394df4ae56ed"
        "e76372bb190b07a7c8ee0a6d709e02fce1cdf7e2ecc03404cd28342f619172fe9ce98583ff8e4f1232eef28183c3fe3b1b4c6fad733bb"
        "5fcbc2ec22005c58ef1837d1683b2c6f34a26c1b2effa886b423861285c97ffffffffffffffff";
    static uint8_t p[256], y[256], z1[256], z2[256];
    struct crypto_kex a, b;
    size_t l1, l2;
    int pub_padded = 0, secret_padded = 0, agreed = 1;

    is_int(unhex(p, p_hex), 256, "ffdhe2048 p is 256 bytes");
    ok(crypto_kex_generate(&b, TLS_GROUP_FFDHE2048) == 0, "ffdhe2048 key");
    memcpy(y, p, 256);
    is_int(crypto_kex_derive(&b, z1, &l1, y, 256), KL_ERR_ILLEGAL_PARAMETER, "ffdhe2048: Y = p refused");
    y[255] = 0xfe;
    is_int(crypto_kex_derive(&b, z1, &l1, y, 256), KL_ERR_ILLEGAL_PARAMETER, "ffdhe2048: Y = p-1 refused");
    y[255] = 0xfd;
    is_int(crypto_kex_derive(&b, z1, &l1, y, 256), 0, "ffdhe2048: Y = p-2 accepted");
    /* The share must be padded to the size of p: Y = 7 in 255 bytes is refused. */
    memset(y, 0, 255);
    y[254] = 7;
    is_int(crypto_kex_derive(&b, z1, &l1, y, 255), KL_ERR_ILLEGAL_PARAMETER, "ffdhe2048: unpadded 255-byte Y refused");
    memset(y, 0, 256);
    memset(z1, 0xaa, sizeof(z1));
    is_int(crypto_kex_derive(&b, z1, &l1, y, 256), KL_ERR_ILLEGAL_PARAMETER, "ffdhe2048: Y = 0 refused");
    ok(l1 == 0 && z1[0] == 0 && memcmp(z1, z1 + 1, 255) == 0, "ffdhe2048: a refused derive leaves no secret");

    /*
     * A share or a secret below 2^2040 starts with a zero byte one time in 256: keep drawing
     * keys until both have happened (at most 4096 draws: a miss is a 1e-7 event), and check
     * that both ends agree on all 256 bytes each time.
     */
    for (int i = 0; i < 4096 && (!pub_padded || !secret_padded); i++) {
        if (crypto_kex_generate(&a, TLS_GROUP_FFDHE2048) != 0 || a.pub_len != 256 ||
            crypto_kex_derive(&a, z1, &l1, b.pub, b.pub_len) != 0 || crypto_kex_derive(&b, z2, &l2, a.pub, 256) != 0 ||
            l1 != 256 || l2 != 256 || memcmp(z1, z2, 256) != 0)
            agreed = 0;
        pub_padded |= a.pub[0] == 0;
        secret_padded |= z1[0] == 0;
        crypto_kex_dispose(&a);
    }
    ok(agreed, "ffdhe2048: every draw agreed on 256 bytes");
    ok(pub_padded, "ffdhe2048: a share with a leading zero byte is 256 bytes and accepted");
    ok(secret_padded, "ffdhe2048: a secret with a leading zero byte is 256 bytes (7.4.1) and agreed");
    crypto_kex_dispose(&b);
}

/* X448: RFC 7748 5.2 and 6.2, and the low-order points whose output would be all zero. */
static void test_kex_x448(void)
{
    static const char *vec[][3] = {
        /* 5.2: scalar, input u, output u */
        {"3d262fddf9ec8e88495266fea19a34d28882acef045104d0d1aae121700a779c984c24f8cdd78fbff44943eba368f54b29259a4f1c600"
         "ad3",
         "06fce640fa3487bfda5f6cf2d5263f8aad88334cbd07437f020f08f9814dc031ddbdc38c19c6da2583fa5429db94ada18aa7a7fb4ef8a"
         "086",
         "ce3e4ff95a60dc6697da1db1d85e6afbdf79b50a2412d7546d5f239fe14fbaadeb445fc66a01b0779d98223961111e21766282f73dd96"
         "b6f"},
        {"203d494428b8399352665ddca42f9de8fef600908e0d461cb021f8c538345dd77c3e4806e25f46d3315c44e0a5b4371282dd2c8d5be30"
         "95f",
         "0fbcc2f993cd56d3305b0b7d9e55d4c1a8fb5dbb52f8e9a1e9b6201b165d015894e56c4d3570bee52fe205e28a78b91cdfbde71ce8d15"
         "7db",
         "884a02576239ff7a2f2f63b2db6a9ff37047ac13568e1e30fe63c4a7ad1b3ee3a5700df34321d62077e63633c575c1c954514e99da7c1"
         "79d"},
    };
    static const char *alice_priv = "9a8f4925d1519f5775cf46b04b5800d4ee9ee8bae8bc5565d498c28dd9c9baf574a941974489739100"
                                    "6382a6f127ab1d9ac2d8c0a598726b";
    static const char *alice_pub = "9b08f7cc31b7e3e67d22d5aea121074a273bd2b83de09c63faa73d2c22c5d9bbc836647241d953d40c5"
                                   "b12da88120d53177f80e532c41fa0";
    static const char *bob_priv = "1c306a7ac2a0e2e0990b294470cba339e6453772b075811d8fad0d1d6927c120bb5ee8972b0d3e21374c"
                                  "9c921b09d1b0366f10b65173992d";
    static const char *bob_pub = "3eb7a829b0cd20f5bcfc0b599b6feccf6da4627107bdb0d4f345b43027d8b972fc3e34fb4232a13ca706d"
                                 "cb57aec3dae07bdc1c67bf33609";
    static const char *shared = "07fff4181ac6cc95ec1c16a94a0f74d12da232ce40a77552281d282bb60c0b56fd2464c335543936521c24"
                                "403085d59a449a5037514a879d";
    /* u = 0, 1, p-1, and the non-canonical p and p+1 (0 and 1 again): [4k]P is the identity for each. */
    static const char *low_order[] = {
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "00",
        "01000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "00",
        "fefffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffffffffffffffffffffffffffffffffffffffffffffffff"
        "ff",
        "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffffffffffffffffffffffffffffffffffffffffffffffff"
        "ff",
        "00000000000000000000000000000000000000000000000000000000ffffffffffffffffffffffffffffffffffffffffffffffffffffff"
        "ff",
    };
    uint8_t k[56], u[56], want[56], z[56];
    struct crypto_kex a, b;
    size_t l;

    for (size_t i = 0; i < 2; i++) {
        char name[64];
        unhex(k, vec[i][0]);
        unhex(u, vec[i][1]);
        unhex(want, vec[i][2]);
        snprintf(name, sizeof(name), "x448 RFC 7748 5.2 vector %zu", i + 1);
        ok(crypto_kex_set_private(&a, TLS_GROUP_X448, k, 56) == 0 && crypto_kex_derive(&a, z, &l, u, 56) == 0 &&
               l == 56,
           name);
        is_mem(z, 56, want, 56, name);
        crypto_kex_dispose(&a);
    }
    unhex(k, alice_priv);
    ok(crypto_kex_set_private(&a, TLS_GROUP_X448, k, 56) == 0, "x448 6.2 Alice's key");
    unhex(want, alice_pub);
    is_mem(a.pub, a.pub_len, want, 56, "x448 6.2 Alice's public key");
    unhex(k, bob_priv);
    ok(crypto_kex_set_private(&b, TLS_GROUP_X448, k, 56) == 0, "x448 6.2 Bob's key");
    unhex(want, bob_pub);
    is_mem(b.pub, b.pub_len, want, 56, "x448 6.2 Bob's public key");
    unhex(want, shared);
    ok(crypto_kex_derive(&a, z, &l, b.pub, b.pub_len) == 0, "x448 6.2 Alice derives");
    is_mem(z, l, want, 56, "x448 6.2 shared secret (Alice)");
    ok(crypto_kex_derive(&b, z, &l, a.pub, a.pub_len) == 0, "x448 6.2 Bob derives");
    is_mem(z, l, want, 56, "x448 6.2 shared secret (Bob)");
    for (size_t i = 0; i < sizeof(low_order) / sizeof(low_order[0]); i++) {
        char name[64];
        is_int(unhex(u, low_order[i]), 56, "low-order point is 56 bytes");
        memset(z, 0xaa, sizeof(z));
        snprintf(name, sizeof(name), "x448 low-order point %zu refused", i);
        is_int(crypto_kex_derive(&a, z, &l, u, 56), KL_ERR_ILLEGAL_PARAMETER, name);
        snprintf(name, sizeof(name), "x448 low-order point %zu: no secret left", i);
        ok(l == 0 && z[0] == 0 && memcmp(z, z + 1, 55) == 0, name);
    }
    is_int(crypto_kex_set_private(&b, TLS_GROUP_X448, k, 32), KL_ERR_INVALID, "x448 32-byte private key refused");
    crypto_kex_dispose(&a);
    crypto_kex_dispose(&b);
}

static void test_kex(void)
{
    struct crypto_kex a;
    uint8_t z1[48], bad[133];
    size_t l1;

    test_kex_groups();
    test_kex_ffdhe2048();
    test_kex_x448();
    /* X25519 low-order points (RFC 7748 / libsodium's blocklist): the output would be all zero. */
    static const char *low_order[] = {
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    };
    ok(crypto_kex_generate(&a, TLS_GROUP_X25519) == 0, "x25519 key");
    for (size_t i = 0; i < sizeof(low_order) / sizeof(low_order[0]); i++) {
        char name[64];
        unhex(bad, low_order[i]);
        memset(z1, 0xaa, 32);
        snprintf(name, sizeof(name), "x25519 low-order point %zu refused", i);
        is_int(crypto_kex_derive(&a, z1, &l1, bad, 32), KL_ERR_ILLEGAL_PARAMETER, name);
    }
    crypto_kex_dispose(&a);
    uint8_t zero[66] = {0};
    is_int(crypto_kex_set_private(&a, TLS_GROUP_SECP256R1, zero, 32), KL_ERR_INVALID, "P-256 zero scalar refused");
    memset(bad, 0xff, 66);
    is_int(crypto_kex_set_private(&a, TLS_GROUP_SECP256R1, bad, 32), KL_ERR_INVALID, "P-256 scalar >= n refused");
    is_int(crypto_kex_set_private(&a, TLS_GROUP_SECP256R1, bad, 31), KL_ERR_INVALID, "P-256 short scalar refused");
    is_int(crypto_kex_set_private(&a, TLS_GROUP_SECP521R1, zero, 66), KL_ERR_INVALID, "P-521 zero scalar refused");
    bad[0] = 0x01; /* 2^521 - 1 > n */
    is_int(crypto_kex_set_private(&a, TLS_GROUP_SECP521R1, bad, 66), KL_ERR_INVALID, "P-521 scalar >= n refused");
    is_int(crypto_kex_set_private(&a, TLS_GROUP_SECP521R1, bad, 65), KL_ERR_INVALID, "P-521 65-byte scalar refused");
    /* P-521 from a fixed scalar: 1 gives the generator, the same point generate's keys live on. */
    memset(bad, 0, 66);
    bad[65] = 1;
    ok(crypto_kex_set_private(&a, TLS_GROUP_SECP521R1, bad, 66) == 0 && a.pub_len == 133 && a.pub[0] == 0x04 &&
           a.pub[1] == 0x00 && a.pub[2] == 0xc6 && a.pub[3] == 0x85,
       "P-521 scalar 1 gives G (x = 00c685...)");
    struct crypto_kex b;
    uint8_t z2[66], z3[66];
    size_t l2, l3;
    ok(crypto_kex_generate(&b, TLS_GROUP_SECP521R1) == 0 && crypto_kex_derive(&a, z2, &l2, b.pub, b.pub_len) == 0 &&
           crypto_kex_derive(&b, z3, &l3, a.pub, a.pub_len) == 0 && l2 == 66 && l3 == 66 && memcmp(z2, z3, 66) == 0 &&
           memcmp(z2, b.pub + 1, 66) == 0,
       "P-521: 1 * Q is Q (the secret is Q's x, 66 bytes)");
    crypto_kex_dispose(&a);
    crypto_kex_dispose(&b);
}

static void test_random_equal(void)
{
    uint8_t a[32] = {0}, b[32] = {0};
    crypto_random(a, sizeof(a));
    crypto_random(b, sizeof(b));
    ok(memcmp(a, b, 32) != 0, "random differs");
    ok(crypto_equal(a, a, 32), "equal");
    b[0] = a[0];
    memcpy(b, a, 32);
    b[31] ^= 1;
    ok(!crypto_equal(a, b, 32), "not equal in last byte");
    crypto_wipe(a, 32);
    ok(a[0] == 0 && a[31] == 0, "wipe");
}

static void test_certs(void)
{
    size_t rsa_len, ec_len;
    uint8_t *rsa = rfc8448_read_file("server-cert.der", &rsa_len);
    uint8_t *ec = rfc8448_read_file("client-auth-server-ecdsa-cert.der", &ec_len);
    enum crypto_key_type kt;
    uint16_t schemes[8];
    uint8_t spki[1024];
    size_t spki_len, n;
    char names[4][256];

    ok(rsa != NULL && ec != NULL, "read certificates");
    if (rsa == NULL || ec == NULL)
        return;
    ok(crypto_cert_key_type(rsa, rsa_len, &kt) == 0 && kt == CRYPTO_KEY_RSA, "rsa key type");
    n = crypto_key_type_schemes(kt, schemes, 8);
    ok(n == 3 && schemes[0] == 0x0804 && schemes[1] == 0x0805 && schemes[2] == 0x0806, "rsa schemes");
    ok(crypto_cert_key_type(ec, ec_len, &kt) == 0 && kt == CRYPTO_KEY_EC_P256, "p-256 key type");
    n = crypto_key_type_schemes(kt, schemes, 8);
    ok(n == 1 && schemes[0] == 0x0403, "p-256 scheme");
    ok(crypto_key_type_schemes(CRYPTO_KEY_EC_P384, schemes, 8) == 1 && schemes[0] == 0x0503, "p-384 scheme");
    ok(crypto_key_type_schemes(CRYPTO_KEY_ED25519, schemes, 8) == 1 && schemes[0] == 0x0807, "ed25519 scheme");
    is_int(crypto_key_type_schemes(CRYPTO_KEY_RSA, schemes, 1), 1, "schemes bounded by max");
    is_int(crypto_cert_key_type(rsa, rsa_len - 1, &kt), KL_ERR_CONFIG, "truncated certificate refused");

    ok(crypto_cert_spki(rsa, rsa_len, spki, sizeof(spki), &spki_len) == 0, "spki");
    ok(spki_len > 140 && spki[0] == 0x30 && memmem(rsa, rsa_len, spki, spki_len) != NULL,
       "spki is the certificate's SubjectPublicKeyInfo");
    is_int(crypto_cert_spki(rsa, rsa_len, spki, 10, &spki_len), KL_ERR_OVERFLOW, "spki overflow");
    ok(crypto_cert_dns_names(rsa, rsa_len, names, 4, &n) == 0 && n == 0, "no SAN in the RFC 8448 cert");

    /* RSA-PSS CertificateVerify from RFC 8448 §3 over Hash(CH..Certificate). */
    struct rfc8448 *t = rfc8448_load("simple-1rtt.txt");
    size_t l1, l2, l3, l4, cvl;
    const uint8_t *ch = rfc8448_must(t, "client_hello", &l1), *sh = rfc8448_must(t, "server_hello", &l2);
    const uint8_t *ee = rfc8448_must(t, "encrypted_extensions", &l3), *ce = rfc8448_must(t, "certificate", &l4);
    const uint8_t *cv = rfc8448_must(t, "certificate_verify", &cvl);
    struct crypto_hash_ctx h;
    uint8_t content[64 + 34 + 32];
    memset(content, 0x20, 64);
    memcpy(content + 64, "TLS 1.3, server CertificateVerify", 34); /* includes the 0x00 separator */
    ok(crypto_hash_ctx_init(&h, CRYPTO_HASH_SHA256) == 0 && crypto_hash_ctx_update(&h, ch, l1) == 0 &&
           crypto_hash_ctx_update(&h, sh, l2) == 0 && crypto_hash_ctx_update(&h, ee, l3) == 0 &&
           crypto_hash_ctx_update(&h, ce, l4) == 0 && crypto_hash_ctx_peek(&h, content + 98) == 0,
       "transcript for CertificateVerify");
    crypto_hash_ctx_dispose(&h);
    /* certificate_verify = 0f uint24 ‖ scheme(2) ‖ uint16 len ‖ signature */
    ok(cvl == 4 + 2 + 2 + 128 && cv[4] == 0x08 && cv[5] == 0x04, "cv is rsa_pss_rsae_sha256");
    is_int(crypto_cert_verify(rsa, rsa_len, 0x0804, content, sizeof(content), cv + 8, 128), 0,
           "RFC 8448 CertificateVerify verifies");
    content[100] ^= 1;
    is_int(crypto_cert_verify(rsa, rsa_len, 0x0804, content, sizeof(content), cv + 8, 128),
           KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR), "wrong transcript: decrypt_error");
    content[100] ^= 1;
    is_int(crypto_cert_verify(rsa, rsa_len, 0x0805, content, sizeof(content), cv + 8, 128),
           KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR), "wrong scheme hash: decrypt_error");
    is_int(crypto_cert_verify(rsa, rsa_len, 0x0403, content, sizeof(content), cv + 8, 128), KL_ERR_ILLEGAL_PARAMETER,
           "ECDSA scheme with an RSA key refused");
    is_int(crypto_cert_verify(rsa, rsa_len, 0x0401, content, sizeof(content), cv + 8, 128), KL_ERR_INVALID,
           "PKCS#1 v1.5 scheme unsupported");
    rfc8448_free(t);

    /* RFC 8448 §6: the server's ECDSA P-256 CertificateVerify and the client's RSA-PSS one. */
    t = rfc8448_load("client-auth.txt");
    size_t cdl;
    uint8_t *cder = rfc8448_read_file("client-auth-client-rsa-cert.der", &cdl);
    static const char *const srv[] = {"client_hello",        "server_hello", "encrypted_extensions",
                                      "certificate_request", "certificate",  NULL};
    static const char *const cli[] = {"client_hello",        "server_hello",       "encrypted_extensions",
                                      "certificate_request", "certificate",        "certificate_verify",
                                      "server_finished",     "client_certificate", NULL};
    for (int side = 0; side < 2; side++) {
        const char *const *msgs = side == 0 ? srv : cli;
        ok(crypto_hash_ctx_init(&h, CRYPTO_HASH_SHA256) == 0, "ctx");
        for (size_t i = 0; msgs[i] != NULL; i++) {
            const uint8_t *m = rfc8448_must(t, msgs[i], &l1);
            if (crypto_hash_ctx_update(&h, m, l1) != 0)
                ok(0, "update");
        }
        memcpy(content + 64, side == 0 ? "TLS 1.3, server CertificateVerify" : "TLS 1.3, client CertificateVerify", 34);
        ok(crypto_hash_ctx_peek(&h, content + 98) == 0, "transcript");
        crypto_hash_ctx_dispose(&h);
        cv = rfc8448_must(t, side == 0 ? "certificate_verify" : "client_certificate_verify", &cvl);
        const uint8_t *cert = side == 0 ? ec : cder;
        size_t cert_len = side == 0 ? ec_len : cdl;
        uint16_t scheme = (uint16_t)(cv[4] << 8 | cv[5]);
        ok(side == 0 ? scheme == 0x0403 : scheme == 0x0804, "trace scheme");
        is_int(crypto_cert_verify(cert, cert_len, scheme, content, sizeof(content), cv + 8, cvl - 8), 0,
               side == 0 ? "RFC 8448 §6 server ECDSA CertificateVerify verifies"
                         : "RFC 8448 §6 client RSA-PSS CertificateVerify verifies");
        if (side == 0) {
            is_int(crypto_cert_verify(cert, cert_len, 0x0503, content, sizeof(content), cv + 8, cvl - 8),
                   KL_ERR_ILLEGAL_PARAMETER, "ECDSA P-384 scheme with a P-256 key refused");
            content[99] ^= 1;
            is_int(crypto_cert_verify(cert, cert_len, scheme, content, sizeof(content), cv + 8, cvl - 8),
                   KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR), "ECDSA over other content: decrypt_error");
        }
    }
    free(cder);
    rfc8448_free(t);

    /* PEM chain: two certificates concatenated, leaf first. */
    char path[] = "/tmp/kl_test_chainXXXXXX";
    int fd = mkstemp(path);
    size_t p1l, p2l;
    const char *dir = getenv("KL_TESTDATA");
    char f1[512], f2[512];
    snprintf(f1, sizeof(f1), "%s/rfc8448/server-cert.pem", dir);
    snprintf(f2, sizeof(f2), "%s/rfc8448/client-auth-server-ecdsa-cert.pem", dir);
    FILE *a = fopen(f1, "r"), *b = fopen(f2, "r");
    char buf1[8192], buf2[8192];
    p1l = a ? fread(buf1, 1, sizeof(buf1), a) : 0;
    p2l = b ? fread(buf2, 1, sizeof(buf2), b) : 0;
    if (a)
        fclose(a);
    if (b)
        fclose(b);
    ok(fd >= 0 && p1l > 0 && p2l > 0 && write(fd, buf1, p1l) == (ssize_t)p1l && write(fd, buf2, p2l) == (ssize_t)p2l,
       "write chain file");
    close(fd);
    struct crypto_chain c;
    ok(crypto_chain_load_pem(&c, path) == 0, "load pem chain");
    ok(c.n == 2 && c.der_len[0] == rsa_len && memcmp(c.der[0], rsa, rsa_len) == 0 && c.der_len[1] == ec_len &&
           memcmp(c.der[1], ec, ec_len) == 0,
       "chain DER matches, leaf first");
    crypto_chain_dispose(&c);
    /* A corrupted PEM block is a config error, not a shorter chain. */
    FILE *w = fopen(path, "w");
    if (w) {
        fwrite(buf1, 1, p1l, w);
        fputs("-----BEGIN CERTIFICATE-----\nMIIBroken!!\n-----END CERTIFICATE-----\n", w);
        fclose(w);
    }
    is_int(crypto_chain_load_pem(&c, path), KL_ERR_CONFIG, "corrupt PEM block refused");
    w = fopen(path, "w");
    if (w) {
        fputs("no certificates here\n", w);
        fclose(w);
    }
    is_int(crypto_chain_load_pem(&c, path), KL_ERR_CONFIG, "file without certificates refused");
    unlink(path);
    is_int(crypto_chain_load_pem(&c, "/nonexistent/chain.pem"), KL_ERR_CONFIG, "missing file refused");

    /* SAN dNSName entries, from a certificate made by the openssl CLI (skipped if unavailable). */
    char dirt[] = "/tmp/kl_test_sanXXXXXX";
    if (mkdtemp(dirt) != NULL) {
        char cmd[1024], pem[600];
        snprintf(pem, sizeof(pem), "%s/c.pem", dirt);
        snprintf(cmd, sizeof(cmd),
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout %s/k.pem -out %s "
                 "-subj /CN=t -days 1 -addext 'subjectAltName=DNS:a.example,IP:127.0.0.1,DNS:*.b.example' "
                 ">/dev/null 2>&1",
                 dirt, pem);
        if (system(cmd) == 0 && crypto_chain_load_pem(&c, pem) == 0) {
            ok(crypto_cert_dns_names(c.der[0], c.der_len[0], names, 4, &n) == 0 && n == 2 &&
                   strcmp(names[0], "a.example") == 0 && strcmp(names[1], "*.b.example") == 0,
               "SAN dNSNames (IP entries skipped)");
            ok(crypto_cert_dns_names(c.der[0], c.der_len[0], names, 1, &n) == 0 && n == 1, "SAN bounded by max");
            ok(crypto_cert_key_type(c.der[0], c.der_len[0], &kt) == 0 && kt == CRYPTO_KEY_EC_P384, "p-384 cert");
            crypto_chain_dispose(&c);
        } else {
            diag("openssl CLI unavailable: SAN test skipped");
        }
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dirt);
        if (system(cmd) != 0)
            diag("cleanup failed");
    }
    free(rsa);
    free(ec);
}

int main(void)
{
    if (crypto_init() != 0) {
        printf("Bail out! crypto_init\n");
        return 1;
    }
    test_hash_hmac_hkdf();
    test_aead();
    test_kex();
    test_random_equal();
    test_certs();
    return kl_test_done();
}
