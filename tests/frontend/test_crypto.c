/*
 * test_crypto.c - known-answer tests for crypto.c (RFC 5869, RFC 4231, FIPS 180, RFC 8439,
 * the GCM spec, RFC 8448) and its refusals: invalid P-256/P-384 points, X25519 low-order
 * points, tampered AEAD input, bad signatures.
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

static void test_kex(void)
{
    struct crypto_kex a, b;
    uint8_t z1[48], z2[48], bad[97];
    size_t l1, l2;

    for (int gi = 0; gi < 3; gi++) {
        uint16_t g = gi == 0 ? TLS_GROUP_X25519 : gi == 1 ? TLS_GROUP_SECP256R1 : TLS_GROUP_SECP384R1;
        char name[96];
        snprintf(name, sizeof(name), "group %04x: generate + agree", g);
        ok(crypto_kex_generate(&a, g) == 0 && crypto_kex_generate(&b, g) == 0 &&
               crypto_kex_derive(&a, z1, &l1, b.pub, b.pub_len) == 0 &&
               crypto_kex_derive(&b, z2, &l2, a.pub, a.pub_len) == 0 && l1 == l2 && l1 == crypto_kex_secret_len(g) &&
               memcmp(z1, z2, l1) == 0,
           name);
        snprintf(name, sizeof(name), "group %04x: share length", g);
        is_int(a.pub_len, crypto_kex_share_len(g), name);
        snprintf(name, sizeof(name), "group %04x: short share refused", g);
        is_int(crypto_kex_derive(&a, z1, &l1, b.pub, b.pub_len - 1), KL_ERR_ILLEGAL_PARAMETER, name);
        if (g != TLS_GROUP_X25519) {
            size_t n = b.pub_len;
            memcpy(bad, b.pub, n);
            bad[n - 1] ^= 1; /* y off by one: not on the curve */
            snprintf(name, sizeof(name), "group %04x: off-curve point refused", g);
            is_int(crypto_kex_derive(&a, z1, &l1, bad, n), KL_ERR_ILLEGAL_PARAMETER, name);
            memcpy(bad, b.pub, n);
            bad[0] = 0x02; /* compressed marker, uncompressed length */
            snprintf(name, sizeof(name), "group %04x: non-uncompressed form refused", g);
            is_int(crypto_kex_derive(&a, z1, &l1, bad, n), KL_ERR_ILLEGAL_PARAMETER, name);
            memset(bad, 0, n);
            bad[0] = 0x04;
            snprintf(name, sizeof(name), "group %04x: (0,0) refused", g);
            is_int(crypto_kex_derive(&a, z1, &l1, bad, n), KL_ERR_ILLEGAL_PARAMETER, name);
            memset(bad, 0xff, n);
            bad[0] = 0x04;
            snprintf(name, sizeof(name), "group %04x: coordinates >= p refused", g);
            is_int(crypto_kex_derive(&a, z1, &l1, bad, n), KL_ERR_ILLEGAL_PARAMETER, name);
            snprintf(name, sizeof(name), "group %04x: compressed 33/49-byte share refused", g);
            is_int(crypto_kex_derive(&a, z1, &l1, b.pub, 1 + (n - 1) / 2), KL_ERR_ILLEGAL_PARAMETER, name);
        }
        crypto_kex_dispose(&a);
        crypto_kex_dispose(&b);
    }
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
    is_int(crypto_kex_generate(&a, 0x001e), KL_ERR_INVALID, "x448 unsupported");
    uint8_t zero[32] = {0};
    is_int(crypto_kex_set_private(&a, TLS_GROUP_SECP256R1, zero, 32), KL_ERR_INVALID, "P-256 zero scalar refused");
    memset(bad, 0xff, 32);
    is_int(crypto_kex_set_private(&a, TLS_GROUP_SECP256R1, bad, 32), KL_ERR_INVALID, "P-256 scalar >= n refused");
    is_int(crypto_kex_set_private(&a, TLS_GROUP_SECP256R1, bad, 31), KL_ERR_INVALID, "P-256 short scalar refused");
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
