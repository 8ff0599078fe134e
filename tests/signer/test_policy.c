/* policy_: CertificateVerify content bytes (hand-built and RFC 8448 section 3), scheme names,
 * policy_check_sign() (one refusal per reason). */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/rsa.h>
#include <openssl/obj_mac.h>
#include "kl_test.h"
#include "policy.h"

/* Strings compared exactly (the reasons are audited and sent back as they are). */
#define is_str(got, want, name)                                                                                        \
    do {                                                                                                               \
        const char *kl_gs_ = (got), *kl_ws_ = (want);                                                                  \
        if (!ok(strcmp(kl_gs_, kl_ws_) == 0, (name)))                                                                  \
            diag("got \"%s\", want \"%s\"", kl_gs_, kl_ws_);                                                           \
    } while (0)

/* The OpenSSL digest NID of a scheme's hash (tls_ids.h names it), 0 for none, -1 unknown. */
static int scheme_nid(uint16_t scheme)
{
    const struct tls_scheme_info *info = tls_scheme_by_id(scheme);
    if (info == NULL)
        return -1;
    switch (info->hash) {
    case TLS_HASH_SHA256:
        return NID_sha256;
    case TLS_HASH_SHA384:
        return NID_sha384;
    case TLS_HASH_SHA512:
        return NID_sha512;
    default:
        return 0;
    }
}

/* Read "name = hex" from an RFC 8448 trace file (format in the testdata README). */
static size_t trace_value(uint8_t *out, size_t cap, const char *file, const char *name)
{
    char path[1024], line[4096];
    const char *dir = getenv("KL_TESTDATA");
    size_t n = 0, name_len = strlen(name);
    FILE *f;

    snprintf(path, sizeof(path), "%s/rfc8448/%s", dir != NULL ? dir : "tests/vectors", file);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, name, name_len) != 0 || strncmp(line + name_len, " = ", 3) != 0)
            continue;
        const char *h = line + name_len + 3;
        while (n < cap && h[0] != '\0' && h[0] != '\n' && h[1] != '\0') {
            unsigned v;
            if (sscanf(h, "%2x", &v) != 1)
                break;
            out[n++] = (uint8_t)v;
            h += 2;
        }
        break;
    }
    fclose(f);
    return n;
}

static void test_content_bytes(void)
{
    static const char *ctxs[] = {NULL, "TLS 1.3, server CertificateVerify", "TLS 1.3, client CertificateVerify"};
    uint8_t hash[48], out[POLICY_MAX_CONTENT + 8], want[POLICY_MAX_CONTENT];
    size_t out_len, hl[2] = {32, 48};

    for (size_t i = 0; i < sizeof(hash); i++)
        hash[i] = (uint8_t)(0xa0 + i);
    for (int c = 1; c <= 2; c++) {
        for (size_t j = 0; j < 2; j++) {
            char name[80];
            size_t w = 0;
            for (int k = 0; k < 64; k++)
                want[w++] = ' ';
            memcpy(want + w, ctxs[c], 33);
            w += 33;
            want[w++] = 0;
            memcpy(want + w, hash, hl[j]);
            w += hl[j];
            memset(out, 0xee, sizeof(out));
            out_len = 0;
            snprintf(name, sizeof(name), "%s context, %zu-byte hash: call succeeds", c == 1 ? "server" : "client",
                     hl[j]);
            is_int(policy_build_content(out, &out_len, c, hash, hl[j]), 0, name);
            snprintf(name, sizeof(name), "%s context, %zu-byte hash: exact bytes", c == 1 ? "server" : "client", hl[j]);
            is_mem(out, out_len, want, w, name);
            ok(out[out_len] == 0xee, "nothing written past the content");
        }
    }
    is_int(POLICY_MAX_CONTENT, 146, "POLICY_MAX_CONTENT is 64+33+1+48");
}

static void test_content_refusals(void)
{
    uint8_t hash[64] = {0}, out[POLICY_MAX_CONTENT];
    size_t out_len = 12345;
    static const size_t bad_lens[] = {0, 1, 20, 31, 33, 47, 49, 64};
    static const int bad_ctx[] = {0, 3, -1, 256};

    for (size_t i = 0; i < sizeof(bad_lens) / sizeof(bad_lens[0]); i++) {
        char name[64];
        snprintf(name, sizeof(name), "hash length %zu refused", bad_lens[i]);
        is_int(policy_build_content(out, &out_len, POLICY_CONTEXT_SERVER, hash, bad_lens[i]), KL_ERR_INVALID, name);
    }
    for (size_t i = 0; i < sizeof(bad_ctx) / sizeof(bad_ctx[0]); i++) {
        char name[64];
        snprintf(name, sizeof(name), "context %d refused", bad_ctx[i]);
        is_int(policy_build_content(out, &out_len, bad_ctx[i], hash, 32), KL_ERR_INVALID, name);
    }
    is_int(out_len, 12345, "length untouched by refusals");
    is_int(policy_build_content(NULL, &out_len, 1, hash, 32), KL_ERR_INVALID, "NULL out refused");
    is_int(policy_build_content(out, NULL, 1, hash, 32), KL_ERR_INVALID, "NULL length refused");
    is_int(policy_build_content(out, &out_len, 1, NULL, 32), KL_ERR_INVALID, "NULL hash refused");
    ok(policy_hash_len_ok(32) && policy_hash_len_ok(48) && !policy_hash_len_ok(64) && !policy_hash_len_ok(0),
       "policy_hash_len_ok: 32 and 48 only");
}

/* RFC 8448 section 3: the server CertificateVerify verifies over our content. */
static void test_rfc8448(void)
{
    static uint8_t ch[1024], sh[1024], ee[1024], cert[2048], cv[1024], der[2048];
    size_t ch_len = trace_value(ch, sizeof(ch), "simple-1rtt.txt", "client_hello");
    size_t sh_len = trace_value(sh, sizeof(sh), "simple-1rtt.txt", "server_hello");
    size_t ee_len = trace_value(ee, sizeof(ee), "simple-1rtt.txt", "encrypted_extensions");
    size_t cert_len = trace_value(cert, sizeof(cert), "simple-1rtt.txt", "certificate");
    size_t cv_len = trace_value(cv, sizeof(cv), "simple-1rtt.txt", "certificate_verify");
    uint8_t th[32], content[POLICY_MAX_CONTENT];
    unsigned th_len = 0;
    size_t content_len = 0, der_len = 0;
    char path[1024];
    const char *dir = getenv("KL_TESTDATA");
    FILE *f;

    ok(ch_len == 196 && sh_len == 90 && ee_len == 40 && cert_len == 445 && cv_len == 136, "RFC 8448 messages read");
    snprintf(path, sizeof(path), "%s/rfc8448/server-cert.der", dir != NULL ? dir : "tests/vectors");
    if ((f = fopen(path, "rb")) != NULL) {
        der_len = fread(der, 1, sizeof(der), f);
        fclose(f);
    }
    ok(der_len > 0, "server-cert.der read");

    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ok(md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(md, ch, ch_len) == 1 &&
           EVP_DigestUpdate(md, sh, sh_len) == 1 && EVP_DigestUpdate(md, ee, ee_len) == 1 &&
           EVP_DigestUpdate(md, cert, cert_len) == 1 && EVP_DigestFinal_ex(md, th, &th_len) == 1 && th_len == 32,
       "transcript hash CH..Certificate");
    EVP_MD_CTX_free(md);

    /* CertificateVerify: type 0x0f, uint24 length, scheme, uint16 signature length, signature. */
    ok(cv[0] == 0x0f && (cv[4] << 8 | cv[5]) == TLS_SIG_RSA_PSS_RSAE_SHA256 &&
           (size_t)(cv[6] << 8 | cv[7]) == cv_len - 8,
       "CertificateVerify is rsa_pss_rsae_sha256");
    is_int(policy_build_content(content, &content_len, POLICY_CONTEXT_SERVER, th, 32), 0, "content built");
    is_int(scheme_nid(TLS_SIG_RSA_PSS_RSAE_SHA256), NID_sha256, "scheme hash is SHA-256");

    const uint8_t *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)der_len);
    EVP_PKEY *pub = x != NULL ? X509_get0_pubkey(x) : NULL;
    int results[3] = {-1, -1, -1};
    /* 0: the real content; 1: client context; 2: one flipped hash bit. */
    for (int k = 0; k < 3 && pub != NULL; k++) {
        uint8_t c2[POLICY_MAX_CONTENT], th2[32];
        size_t c2_len = 0;
        memcpy(th2, th, 32);
        if (k == 2)
            th2[31] ^= 1;
        if (policy_build_content(c2, &c2_len, k == 1 ? POLICY_CONTEXT_CLIENT : POLICY_CONTEXT_SERVER, th2, 32) != 0)
            continue;
        EVP_MD_CTX *v = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        const EVP_MD *h = EVP_get_digestbynid(scheme_nid(TLS_SIG_RSA_PSS_RSAE_SHA256));
        if (v != NULL && EVP_DigestVerifyInit(v, &pctx, h, NULL, pub) == 1 &&
            EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1)
            results[k] = EVP_DigestVerify(v, cv + 8, cv_len - 8, c2, c2_len);
        EVP_MD_CTX_free(v);
    }
    is_int(results[0], 1, "RFC 8448 server CertificateVerify verifies over policy_build_content");
    is_int(results[1], 0, "same signature does not verify over the client context");
    is_int(results[2], 0, "same signature does not verify over a changed transcript hash");
    X509_free(x);
}

static void test_schemes(void)
{
    static const struct {
        const char *name, *hex;
        uint16_t code;
        int nid;
    } want[] = {
        {"rsa_pss_rsae_sha256", "0x0804", 0x0804, NID_sha256},
        {"rsa_pss_rsae_sha384", "0x0805", 0x0805, NID_sha384},
        {"rsa_pss_rsae_sha512", "0x0806", 0x0806, NID_sha512},
        {"ecdsa_secp256r1_sha256", "0x0403", 0x0403, NID_sha256},
        {"ecdsa_secp384r1_sha384", "0x0503", 0x0503, NID_sha384},
        {"ed25519", "0x0807", 0x0807, 0},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct tls_scheme_info *a = tls_scheme_parse(want[i].name), *b = tls_scheme_parse(want[i].hex);
        uint16_t s = a != NULL ? a->id : 0;
        char name[96];
        snprintf(name, sizeof(name), "%s: name -> code -> name, hex, hash", want[i].name);
        int pass = a != NULL && s == want[i].code && policy_scheme_name(s) != NULL &&
                   strcmp(policy_scheme_name(s), want[i].name) == 0 && b == a && scheme_nid(s) == want[i].nid;
        ok(pass, name);
    }
    is_int((long)tls_n_schemes, (long)(sizeof(want) / sizeof(want[0])), "the signer knows exactly the tls_ids schemes");
    for (size_t i = 0; i < tls_n_schemes; i++) {
        ok(tls_scheme_parse(tls_schemes[i].name) == &tls_schemes[i], "tls_schemes entry known");
    }
    static const char *bad[] = {"",
                                "ecdsa",
                                "ecdsa_secp521r1_sha512",
                                "rsa_pkcs1_sha256",
                                "rsa_pss_pss_sha256",
                                "ed448",
                                "0x0401",
                                "0x0603",
                                "0x0809",
                                "0x403",
                                "0x04030",
                                "0x04g3",
                                "0x",
                                "1027",
                                " ed25519",
                                "ed25519 "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char name[96];
        snprintf(name, sizeof(name), "unknown scheme name \"%s\" refused", bad[i]);
        ok(tls_scheme_parse(bad[i]) == NULL, name);
    }
    ok(tls_scheme_parse("ED25519") == tls_scheme_by_id(TLS_SIG_ED25519), "names are case-insensitive");
    ok(tls_scheme_parse("0X0807") == tls_scheme_by_id(TLS_SIG_ED25519), "hex digits and prefix in either case");
    ok(tls_scheme_parse(NULL) == NULL, "NULL name refused");
    ok(policy_scheme_name(0x0401) == NULL && policy_scheme_name(0) == NULL, "unknown code has no name");
    is_int(scheme_nid(0x0401), -1, "unknown code has no hash");
    is_int(scheme_nid(0x0807), 0, "ed25519 has no prehash");
}

/* policy_check_sign: OK for a good request, then one refusal per reason with its text. */
static void test_check_sign(void)
{
    static const uint16_t schemes[] = {TLS_SIG_ECDSA_SECP256R1_SHA256, TLS_SIG_RSA_PSS_RSAE_SHA256};
    static const uid_t uids[] = {1001, 1002};
    static const gid_t gids[] = {2001};
    const struct policy_key key = {schemes, 2, uids, 2, gids, 1, POLICY_CTX_SERVER_BIT | POLICY_CTX_CLIENT_BIT, 0};
    /* no allow lists, allow_same_uid: the signer's uid only */
    const struct policy_key own = {schemes, 2, NULL, 0, NULL, 0, POLICY_CTX_SERVER_BIT | POLICY_CTX_CLIENT_BIT, 1};
    const struct policy_sign_request good = {1002, 5, 77, TLS_SIG_RSA_PSS_RSAE_SHA256, POLICY_CONTEXT_SERVER, 32};
    struct policy_sign_request r;
    const char *why = "unset";

    is_int(policy_check_sign(&why, &key, &good), KEYLESS__V1__STATUS__OK, "good request (uid listed): OK");
    ok(why == NULL, "no reason on OK");
    r = good;
    r.peer_uid = 9;
    r.peer_gid = 2001;
    r.context = POLICY_CONTEXT_CLIENT;
    r.hash_len = 48;
    is_int(policy_check_sign(&why, &key, &r), KEYLESS__V1__STATUS__OK, "gid listed, client context, 48 bytes: OK");
    r = good;
    r.peer_uid = 77;
    is_int(policy_check_sign(&why, &own, &r), KEYLESS__V1__STATUS__OK, "no allow lists: the signer's own uid is OK");

    static const int bad_ctx[] = {0, 3, -1};
    for (size_t i = 0; i < sizeof(bad_ctx) / sizeof(bad_ctx[0]); i++) {
        r = good;
        r.context = bad_ctx[i];
        why = NULL;
        is_int(policy_check_sign(&why, &key, &r), KEYLESS__V1__STATUS__BAD_REQUEST, "bad context refused");
        is_str(why != NULL ? why : "", "context must be server or client", "... with its reason");
    }
    static const uint32_t bad_scheme[] = {TLS_SIG_ED25519, 0x0401, 0, 0x10804};
    for (size_t i = 0; i < sizeof(bad_scheme) / sizeof(bad_scheme[0]); i++) {
        r = good;
        r.scheme = bad_scheme[i];
        why = NULL;
        is_int(policy_check_sign(&why, &key, &r), KEYLESS__V1__STATUS__SCHEME_NOT_ALLOWED,
               "scheme not configured for the key refused (incl. one past uint16_t)");
        is_str(why != NULL ? why : "", "scheme not allowed for this key", "... with its reason");
    }
    static const size_t bad_len[] = {0, 20, 31, 33, 64};
    for (size_t i = 0; i < sizeof(bad_len) / sizeof(bad_len[0]); i++) {
        r = good;
        r.hash_len = bad_len[i];
        why = NULL;
        is_int(policy_check_sign(&why, &key, &r), KEYLESS__V1__STATUS__BAD_REQUEST, "bad hash length refused");
        is_str(why != NULL ? why : "", "transcript hash must be 32 or 48 bytes", "... with its reason");
    }
    r = good;
    r.peer_uid = 1003;
    r.peer_gid = 2002;
    why = NULL;
    is_int(policy_check_sign(&why, &key, &r), KEYLESS__V1__STATUS__NOT_AUTHORIZED, "unlisted uid and gid refused");
    is_str(why != NULL ? why : "", "peer uid/gid may not use this key", "... with its reason");
    r = good;
    r.peer_uid = 78;
    why = NULL;
    is_int(policy_check_sign(&why, &own, &r), KEYLESS__V1__STATUS__NOT_AUTHORIZED,
           "no allow lists: another uid refused");
    r.peer_uid = 1001; /* listed for the other key only */
    is_int(policy_check_sign(&why, &own, &r), KEYLESS__V1__STATUS__NOT_AUTHORIZED,
           "no allow lists: a uid listed elsewhere refused");

    /* Order: the first failing check is the one reported. */
    r = good;
    r.context = 0;
    r.scheme = 0x0401;
    r.hash_len = 1;
    r.peer_uid = 1;
    r.peer_gid = 1;
    is_int(policy_check_sign(&why, &key, &r), KEYLESS__V1__STATUS__BAD_REQUEST, "all wrong: context reported first");
    r.context = POLICY_CONTEXT_SERVER;
    is_int(policy_check_sign(&why, &key, &r), KEYLESS__V1__STATUS__SCHEME_NOT_ALLOWED, "then the scheme");
    r.scheme = TLS_SIG_ECDSA_SECP256R1_SHA256;
    is_str(policy_check_sign(&why, &key, &r) == KEYLESS__V1__STATUS__BAD_REQUEST ? why : "",
           "transcript hash must be 32 or 48 bytes", "then the hash length");
    r.hash_len = 32;
    is_int(policy_check_sign(&why, &key, &r), KEYLESS__V1__STATUS__NOT_AUTHORIZED, "then the peer");

    ok(policy_peer_allowed(&key, 1001, 0, 77) && policy_peer_allowed(&key, 0, 2001, 77) &&
           !policy_peer_allowed(&key, 0, 0, 77),
       "policy_peer_allowed: listed uid or gid only (the signer's own uid is not implied)");
}

/* Issue 13: the signer's own uid only with allow_same_uid; the client context only when listed. */
static void test_same_uid_and_contexts(void)
{
    static const uint16_t schemes[] = {TLS_SIG_ECDSA_SECP256R1_SHA256};
    static const uid_t uids[] = {77, 1001};
    static const gid_t gids[] = {2001};
    struct policy_key k = {schemes, 1, uids, 2, gids, 1, POLICY_CTX_SERVER_BIT, 0};
    struct policy_sign_request r = {1001, 5, 77, TLS_SIG_ECDSA_SECP256R1_SHA256, POLICY_CONTEXT_SERVER, 32};
    const char *why = NULL;

    is_int(policy_check_sign(&why, &k, &r), KEYLESS__V1__STATUS__OK, "server context on a server-only key: OK");
    r.context = POLICY_CONTEXT_CLIENT;
    is_int(policy_check_sign(&why, &k, &r), KEYLESS__V1__STATUS__NOT_AUTHORIZED,
           "client context on a server-only key (the default): refused");
    is_str(why != NULL ? why : "", "context not enabled for this key", "... with its reason");
    k.contexts = POLICY_CTX_SERVER_BIT | POLICY_CTX_CLIENT_BIT;
    is_int(policy_check_sign(&why, &k, &r), KEYLESS__V1__STATUS__OK, "client context listed: OK");
    k.contexts = POLICY_CTX_CLIENT_BIT;
    r.context = POLICY_CONTEXT_SERVER;
    is_int(policy_check_sign(&why, &k, &r), KEYLESS__V1__STATUS__NOT_AUTHORIZED,
           "a client-only key refuses the server context");
    k.contexts = POLICY_CTX_SERVER_BIT;

    /* uid 77 is the signer's own and listed: still refused without allow_same_uid. */
    r.peer_uid = 77;
    is_int(policy_check_sign(&why, &k, &r), KEYLESS__V1__STATUS__NOT_AUTHORIZED,
           "the signer's own uid refused even when listed");
    r.peer_gid = 2001;
    ok(!policy_peer_allowed(&k, 77, 2001, 77), "... and when its gid is listed");
    k.allow_same_uid = 1;
    ok(policy_peer_allowed(&k, 77, 5, 77), "allow_same_uid: the signer's own uid, listed, is let in");
    static const uid_t others[] = {1001};
    k.uids = others;
    k.n_uids = 1;
    k.n_gids = 0;
    ok(!policy_peer_allowed(&k, 77, 5, 77), "allow_same_uid with lists that do not name it: still refused");
    k.n_uids = 0;
    ok(policy_peer_allowed(&k, 77, 5, 77) && !policy_peer_allowed(&k, 1001, 5, 77),
       "allow_same_uid, no lists: the signer's own uid only");
    k.allow_same_uid = 0;
    ok(!policy_peer_allowed(&k, 77, 5, 77) && !policy_peer_allowed(&k, 1001, 5, 77),
       "no lists, no allow_same_uid: nobody");
}

int main(void)
{
    test_same_uid_and_contexts();
    test_content_bytes();
    test_content_refusals();
    test_rfc8448();
    test_schemes();
    test_check_sign();
    return kl_test_done();
}
