/*
 * Unit tests for frontend/gen.c: certificate chains loaded through the engine
 * (tls_cert_file_load), the words of each load failure, and the check of every
 * certificate against the signer's ListKeysResponse (name, public key, scheme intersection).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kl_test.h"
#include "gen.h"
#include "log.h"

static char g_dir[64];
static const char *g_data;

static void path_of(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/rfc8448/%s", g_data, name);
}

/* A file in the temporary directory made of `copies` copies of the vector file src (or of text). */
static void make_file(char *out, size_t cap, const char *name, const char *src, int copies, const char *text)
{
    char in[512], buf[8192];
    snprintf(out, cap, "%s/%s", g_dir, name);
    FILE *w = fopen(out, "w");
    for (int i = 0; w != NULL && src != NULL && i < copies; i++) {
        path_of(in, sizeof(in), src);
        FILE *r = fopen(in, "r");
        size_t n = r != NULL ? fread(buf, 1, sizeof(buf), r) : 0;
        fwrite(buf, 1, n, w);
        if (r != NULL) {
            fclose(r);
        }
    }
    if (w != NULL && text != NULL) {
        fputs(text, w);
    }
    if (w != NULL) {
        fclose(w);
    }
}

static void test_certs_load(void)
{
    struct tls_cert_file c;
    char why[256], p[512];

    path_of(p, sizeof(p), "server-cert.pem");
    why[0] = '\0';
    ok(certs_load(&c, why, sizeof(why), p) == 0, "RSA chain (RFC 8448 server certificate) loads");
    is_int(c.n_der, 1, "  one certificate");
    ok(c.n_schemes == 3 && c.schemes[0] == TLS_SIG_RSA_PSS_RSAE_SHA256 && c.schemes[1] == TLS_SIG_RSA_PSS_RSAE_SHA384 &&
           c.schemes[2] == TLS_SIG_RSA_PSS_RSAE_SHA512,
       "  RSA key -> rsa_pss_rsae_sha256/384/512 in that order");
    ok(strcmp(c.key_desc, "RSA") == 0, "  described as RSA");
    ok(c.spki_len > 100 && c.spki[0] == 0x30, "  leaf SPKI is a DER SEQUENCE");
    struct tls_cert_file rsa = c; /* kept for the key checks below; its buffers are disposed there */

    path_of(p, sizeof(p), "client-auth-server-ecdsa-cert.pem");
    ok(certs_load(&c, why, sizeof(why), p) == 0, "ECDSA chain loads");
    ok(c.n_schemes == 1 && c.schemes[0] == TLS_SIG_ECDSA_SECP256R1_SHA256,
       "  P-256 key -> ecdsa_secp256r1_sha256 only");
    ok(strcmp(c.key_desc, "ECDSA P-256") == 0, "  described as ECDSA P-256");
    ok(c.spki_len != rsa.spki_len || memcmp(c.spki, rsa.spki, c.spki_len) != 0, "  its SPKI differs from the RSA one");
    tls_cert_file_dispose(&c);
    ok(c.n_der == 0 && c.der[0] == NULL, "dispose clears the struct");
    tls_cert_file_dispose(&c); /* idempotent */

    make_file(p, sizeof(p), "two.pem", "server-cert.pem", 2, NULL);
    ok(certs_load(&c, why, sizeof(why), p) == 0 && c.n_der == 2, "a two-certificate chain keeps both, in order");
    ok(c.n_der == 2 && c.der_len[0] == c.der_len[1] && memcmp(c.der[0], c.der[1], c.der_len[0]) == 0,
       "  the same DER twice");
    tls_cert_file_dispose(&c);

    /* Negative: each failure says why in the words the e2e tests and operators read. */
    snprintf(p, sizeof(p), "%s/does-not-exist.pem", g_dir);
    why[0] = '\0';
    is_int(certs_load(&c, why, sizeof(why), p), KL_ERR_CONFIG, "missing file refused");
    ok(strstr(why, "cannot open the PEM file") != NULL, "  says it cannot open the file");
    ok(c.n_der == 0 && c.spki_len == 0, "  nothing left loaded");

    path_of(p, sizeof(p), "server-cert.der");
    why[0] = '\0';
    is_int(certs_load(&c, why, sizeof(why), p), KL_ERR_CONFIG, "DER instead of PEM refused");
    ok(strstr(why, "no PEM certificate") != NULL, "  says no PEM certificate");

    make_file(p, sizeof(p), "key-only.pem", "server-rsa-key.pem", 1, NULL);
    why[0] = '\0';
    is_int(certs_load(&c, why, sizeof(why), p), KL_ERR_CONFIG, "a private key file is not a chain");
    ok(strstr(why, "no PEM certificate") != NULL, "  says no PEM certificate");

    make_file(p, sizeof(p), "nine.pem", "server-cert.pem", TLS_MAX_CHAIN + 1, NULL);
    why[0] = '\0';
    is_int(certs_load(&c, why, sizeof(why), p), KL_ERR_CONFIG, "more than TLS_MAX_CHAIN certificates refused");
    ok(strstr(why, "more than 8 certificates") != NULL, "  says the chain is too long");
    ok(c.n_der == 0, "  nothing left loaded");

    make_file(p, sizeof(p), "broken.pem", NULL, 0,
              "-----BEGIN CERTIFICATE-----\nMIIBadGarbage\n-----END CERTIFICATE-----\n");
    is_int(certs_load(&c, why, sizeof(why), p), KL_ERR_CONFIG, "a CERTIFICATE block that does not parse refused");
    tls_cert_file_dispose(&rsa);
}

/* Certificates made by the openssl CLI: SAN names, P-384, and a key type TLS 1.3 here cannot use. */
static void test_cli_certs(void)
{
    struct tls_cert_file c;
    char cmd[1024], p384[128], p521[128], why[256];
    snprintf(p384, sizeof(p384), "%s/p384.pem", g_dir);
    snprintf(p521, sizeof(p521), "%s/p521.pem", g_dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout %s/k1.pem -out %s "
             "-subj /CN=t -days 1 -addext 'subjectAltName=DNS:a.example,IP:127.0.0.1,DNS:*.b.example' "
             ">/dev/null 2>&1 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-521 -nodes -keyout "
             "%s/k2.pem -out %s -subj /CN=t -days 1 >/dev/null 2>&1",
             g_dir, p384, g_dir, p521);
    if (system(cmd) != 0) {
        skip("SAN names, P-384 and an unsupported curve", "the openssl CLI is unavailable");
        return;
    }
    ok(certs_load(&c, why, sizeof(why), p384) == 0, "P-384 chain with SAN loads");
    ok(c.n_schemes == 1 && c.schemes[0] == TLS_SIG_ECDSA_SECP384R1_SHA384 && strcmp(c.key_desc, "ECDSA P-384") == 0,
       "  P-384 key -> ecdsa_secp384r1_sha384 only");
    ok(c.n_names == 2 && strcmp(c.names[0], "a.example") == 0 && strcmp(c.names[1], "*.b.example") == 0,
       "  the SAN DNS names, IP entries skipped");
    tls_cert_file_dispose(&c);
    why[0] = '\0';
    is_int(certs_load(&c, why, sizeof(why), p521), KL_ERR_CONFIG, "P-521 leaf refused");
    ok(strstr(why, "unsupported leaf key type (ECDSA P-256/P-384, RSA, Ed25519)") != NULL, "  says the key type");
    ok(c.n_der == 0, "  nothing left loaded");
    snprintf(cmd, sizeof(cmd), "rm -f %s %s %s/k1.pem %s/k2.pem", p384, p521, g_dir, g_dir);
    if (system(cmd) != 0) {
        diag("cleanup failed");
    }
}

/* A generation from a config naming chain_file under key name "k". */
static int make_gen(struct fe_gen **gen_p, char *err, size_t err_len, const char *chain_file)
{
    char conf[128], chain[512];
    struct config *cfg = NULL;
    snprintf(conf, sizeof(conf), "%s/gen.conf", g_dir);
    path_of(chain, sizeof(chain), chain_file);
    FILE *f = fopen(conf, "w");
    if (f == NULL) {
        return -1;
    }
    fprintf(f,
            "[signer]\nsocket = %s/signer.sock\n[cert main]\nchain = %s\nkey = k\n"
            "[listener main]\nlisten = 127.0.0.1:1\nbackend = 127.0.0.1:2\n",
            g_dir, chain);
    fclose(f);
    err[0] = '\0';
    int r = config_load(&cfg, err, conf);
    if (r == 0) {
        r = gen_new(gen_p, err, err_len, cfg);
    }
    unlink(conf);
    return r;
}

/* Per-listener engine configurations: client_auth and the CA bundle (mTLS). */
static int make_gen_mtls(struct fe_gen **gen_p, char *err, size_t err_len, const char *ca, const char *crl)
{
    char conf[128], chain[512];
    struct config *cfg = NULL;
    const char *src = getenv("KL_SOURCE_DIR");
    snprintf(conf, sizeof(conf), "%s/gen.conf", g_dir);
    path_of(chain, sizeof(chain), "server-cert.pem");
    FILE *f = fopen(conf, "w");
    if (f == NULL) {
        return -1;
    }
    fprintf(f,
            "[signer]\nsocket = %s/signer.sock\n[cert main]\nchain = %s\nkey = k\n"
            "[listener main]\nlisten = 127.0.0.1:1\nbackend = 127.0.0.1:2\n"
            "[listener m]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nclient_auth = required\n"
            "client_ca = %s/tests/frontend/mtls/%s\n",
            g_dir, chain, src != NULL ? src : ".", ca);
    if (crl != NULL) {
        fprintf(f, "client_crl = %s/tests/frontend/mtls/%s\n", src != NULL ? src : ".", crl);
    }
    fclose(f);
    err[0] = '\0';
    int r = config_load(&cfg, err, conf);
    if (r == 0) {
        r = gen_new(gen_p, err, err_len, cfg);
    }
    unlink(conf);
    return r;
}

static void test_gen_client_auth(void)
{
    struct fe_gen *g = NULL, *bad = NULL;
    char err[CONFIG_ERR_LEN];
    if (!ok(make_gen_mtls(&g, err, sizeof(err), "ca.pem", "ca-crl.pem") == 0, "generation with an mTLS listener")) {
        diag("%s", err);
        return;
    }
    const struct tls_config *t0 = gen_tls(g, 0), *t1 = gen_tls(g, 1);
    ok(t0->client_auth == TLS_CLIENT_AUTH_NONE && t0->client_ca == NULL, "  listener main: no client_auth");
    ok(t1->client_auth == TLS_CLIENT_AUTH_REQUIRED && t1->client_ca != NULL, "  listener m: required, with its CAs");
    ok(t0->certs == g->tls_certs && t1->certs == g->tls_certs && memcmp(t1->cookie_key, g->tls.cookie_key, 32) == 0,
       "  both share the generation's certificates and cookie key");
    ok(gen_tls(g, 7) == &g->tls, "  an index past the listeners: the shared configuration");
    gen_unref(g);

    ok(make_gen_mtls(&bad, err, sizeof(err), "client.key", NULL) == KL_ERR_CONFIG && bad == NULL,
       "a key file as client_ca refused");
    ok(strstr(err, "gen.conf:13: [listener m] client_ca: ") != NULL &&
           strstr(err, "client.key: no PEM certificate in the file") != NULL,
       "  one line: FILE:LINE: [listener m] client_ca: PATH: why");
    ok(make_gen_mtls(&bad, err, sizeof(err), "ca.pem", "none.pem") == KL_ERR_CONFIG && bad == NULL,
       "a missing client_crl refused");
    ok(strstr(err, "gen.conf:14: [listener m] client_crl: ") != NULL && strstr(err, "none.pem: cannot open") != NULL,
       "  one line: FILE:LINE: [listener m] client_crl: PATH: why");
    ok(make_gen_mtls(&bad, err, sizeof(err), "ca.pem", "ca.pem") == KL_ERR_CONFIG && bad == NULL,
       "a certificate file as client_crl refused");
    ok(strstr(err, "client_crl: ") != NULL && strstr(err, "no PEM X509 CRL") != NULL, "  names the CRL problem");
}

static void test_gen_new(void)
{
    struct fe_gen *a = NULL, *b = NULL, *bad = NULL;
    char err[CONFIG_ERR_LEN];
    static const uint8_t zero[32];
    ok(make_gen(&a, err, sizeof(err), "server-cert.pem") == 0, "generation from an RSA chain");
    ok(make_gen(&b, err, sizeof(err), "server-cert.pem") == 0, "a second generation");
    if (a == NULL || b == NULL) {
        gen_unref(a);
        gen_unref(b);
        return;
    }
    ok(a->tls.n_certs == 1 && a->tls_certs[0].n_chain == 1 && strcmp(a->tls_certs[0].key_name, "k") == 0,
       "  tls_config: one certificate, its chain and key name");
    ok(a->tls_certs[0].n_schemes == 3, "  before the signer answers: the key type's schemes");
    ok(memcmp(a->tls.cookie_key, zero, 32) != 0, "  a cookie key was drawn");
    ok(memcmp(a->tls.cookie_key, b->tls.cookie_key, 32) != 0, "  each generation draws its own cookie key");
    gen_ref(a);
    gen_unref(a);
    ok(a->refs == 1, "gen_ref/gen_unref count");
    gen_unref(b);

    /* Negative: a chain file that is not PEM names the config line, the section and the file. */
    ok(make_gen(&bad, err, sizeof(err), "server-cert.der") == KL_ERR_CONFIG && bad == NULL,
       "generation from a DER file refused");
    ok(strstr(err, "gen.conf:4: [cert main] chain: ") != NULL && strstr(err, "server-cert.der: no PEM certificate"),
       "  one line: FILE:LINE: [cert main] chain: PATH: why");
    if (strstr(err, "no PEM") == NULL) {
        diag("%s", err);
    }

    /* gen_check_keys against fake ListKeysResponses. */
    struct tls_cert_file ec;
    char why[256], p[512];
    path_of(p, sizeof(p), "client-auth-server-ecdsa-cert.pem");
    if (!ok(certs_load(&ec, why, sizeof(why), p) == 0, "ECDSA chain for a foreign SPKI")) {
        gen_unref(a);
        return;
    }
    Keyless__V1__KeyInfo ki = KEYLESS__V1__KEY_INFO__INIT, *kp = &ki;
    Keyless__V1__ListKeysResponse lk = KEYLESS__V1__LIST_KEYS_RESPONSE__INIT;
    uint32_t schemes[4];
    lk.keys = &kp;
    lk.n_keys = 1;
    ki.schemes = schemes;

    ki.name = "other";
    ki.public_key_spki.data = a->certs[0].spki;
    ki.public_key_spki.len = a->certs[0].spki_len;
    schemes[0] = TLS_SIG_RSA_PSS_RSAE_SHA256;
    ki.n_schemes = 1;
    is_int(gen_check_keys(a, err, sizeof(err), &lk), KL_ERR_CONFIG, "signer without the named key: refused");
    ok(strstr(err, "[cert main] key: the signer has no key named 'k'") != NULL, "  says which key is missing");

    ki.name = "k";
    ki.public_key_spki.data = ec.spki;
    ki.public_key_spki.len = ec.spki_len;
    is_int(gen_check_keys(a, err, sizeof(err), &lk), KL_ERR_CONFIG, "signer key with another public key: refused");
    ok(strstr(err, "server-cert.pem does not match signer key 'k' (its public key differs)") != NULL,
       "  says the certificate does not match the key");

    ki.public_key_spki.data = a->certs[0].spki;
    ki.public_key_spki.len = a->certs[0].spki_len - 1;
    is_int(gen_check_keys(a, err, sizeof(err), &lk), KL_ERR_CONFIG, "a truncated SPKI does not match");

    ki.public_key_spki.len = a->certs[0].spki_len;
    schemes[0] = TLS_SIG_ECDSA_SECP256R1_SHA256;
    schemes[1] = TLS_SIG_ED25519;
    ki.n_schemes = 2;
    is_int(gen_check_keys(a, err, sizeof(err), &lk), KL_ERR_CONFIG, "no scheme in common: refused");
    ok(strstr(err, "signer key 'k' allows no scheme a RSA certificate can use") != NULL, "  says no scheme fits");

    /* Intersection, in the certificate's preference order, whatever the signer's order. */
    schemes[0] = TLS_SIG_RSA_PSS_RSAE_SHA512;
    schemes[1] = TLS_SIG_ECDSA_SECP256R1_SHA256;
    schemes[2] = TLS_SIG_RSA_PSS_RSAE_SHA256;
    ki.n_schemes = 3;
    err[0] = '\0';
    is_int(gen_check_keys(a, err, sizeof(err), &lk), 0, "matching key: accepted");
    ok(a->tls_certs[0].n_schemes == 2 && a->tls_certs[0].schemes[0] == TLS_SIG_RSA_PSS_RSAE_SHA256 &&
           a->tls_certs[0].schemes[1] == TLS_SIG_RSA_PSS_RSAE_SHA512,
       "  schemes = the intersection, in the certificate's order (0x0804, 0x0806)");
    ok(err[0] == '\0', "  no error text");
    tls_cert_file_dispose(&ec);
    gen_unref(a);
}

int main(void)
{
    log_level = LOG_LEVEL_WARN;
    g_data = getenv("KL_TESTDATA");
    snprintf(g_dir, sizeof(g_dir), "/tmp/kl-test-gen-XXXXXX");
    if (g_data == NULL || mkdtemp(g_dir) == NULL) {
        printf("Bail out! KL_TESTDATA unset or no temporary directory\n");
        return 1;
    }
    test_certs_load();
    test_cli_certs();
    test_gen_new();
    test_gen_client_auth();
    static const char *made[] = {"two.pem", "key-only.pem", "nine.pem", "broken.pem"};
    for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/%s", g_dir, made[i]);
        unlink(p);
    }
    rmdir(g_dir);
    return kl_test_done();
}
