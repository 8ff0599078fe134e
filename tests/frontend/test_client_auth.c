/*
 * test_client_auth.c - client certificates (mTLS, RFC 8446 4.3.2, 4.4.2, 4.4.3) in the engine:
 * CertificateRequest, the chain check (clientAuth purpose, time, depth, CRL) and the client
 * CertificateVerify, driven by tls_test_client with the fixtures of tests/frontend/mtls/
 * (make.sh there). Every refusal is checked on both sides: the server's error and the alert
 * the client reads. Plus the codecs' negative cases, the CA loader's errors and the RFC 8448
 * section 6 trace (the server's records byte for byte, the client's flight accepted).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kl_test.h"
#include "frontend/rfc8448.h"
#include "crypto.h"
#include "msg.h"
#include "record.h"
#include "tls.h"
#include "tls_test_client.h"
#include "tls_test_pair.h"
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

/* ---- fixtures ---- */

/* Two slots, so that one call can take two fixture paths. */
static char path_buf[2][4096];
static const char *fixture(const char *name)
{
    static int slot;
    const char *src = getenv("KL_SOURCE_DIR");
    slot ^= 1;
    snprintf(path_buf[slot], sizeof(path_buf[slot]), "%s/tests/frontend/mtls/%s", src != NULL ? src : ".", name);
    return path_buf[slot];
}

static char trace_log[2048];
static void on_trace(void *arg, uint64_t id, const char *ev)
{
    (void)arg;
    (void)id;
    if (strlen(trace_log) + strlen(ev) + 2 < sizeof(trace_log)) {
        strcat(trace_log, ev);
        strcat(trace_log, ",");
    }
}

/* A PEM certificate file as DER (the first certificate). */
static uint8_t *cert_der(const char *name, size_t *len_p)
{
    FILE *fp = fopen(fixture(name), "r");
    X509 *x = fp != NULL ? PEM_read_X509(fp, NULL, NULL, NULL) : NULL;
    uint8_t *der = NULL;
    int len = x != NULL ? i2d_X509(x, &der) : -1;
    if (fp != NULL)
        fclose(fp);
    X509_free(x);
    *len_p = len > 0 ? (size_t)len : 0;
    return len > 0 ? der : NULL;
}

static EVP_PKEY *key_pem(const char *path)
{
    FILE *fp = fopen(path, "r");
    EVP_PKEY *k = fp != NULL ? PEM_read_PrivateKey(fp, NULL, NULL, NULL) : NULL;
    if (fp != NULL)
        fclose(fp);
    return k;
}

/* The server: the RFC 8448 RSA certificate; the test plays the signer. */
struct fx {
    EVP_PKEY *server_key;
    uint8_t *server_der;
    size_t server_der_len;
    struct tls_cert cert;
    struct tls_config cfg;
};

static void fx_init(struct fx *f)
{
    memset(f, 0, sizeof(*f));
    f->server_der = rfc8448_read_file("server-cert.der", &f->server_der_len);
    const char *td = getenv("KL_TESTDATA");
    char p[4096];
    snprintf(p, sizeof(p), "%s/rfc8448/server-rsa-key.pem", td != NULL ? td : ".");
    f->server_key = key_pem(p);
    f->cert.key_name = "rsa";
    f->cert.chain[0] = f->server_der;
    f->cert.chain_len[0] = f->server_der_len;
    f->cert.n_chain = 1;
    f->cert.schemes[0] = TLS_SIG_RSA_PSS_RSAE_SHA256;
    f->cert.n_schemes = 1;
    f->cert.names[0] = "rsa";
    f->cert.n_names = 1;
    f->cfg.certs = &f->cert;
    f->cfg.n_certs = 1;
    memset(f->cfg.cookie_key, 0x5a, sizeof(f->cfg.cookie_key));
    f->cfg.trace = on_trace;
}

static void fx_free(struct fx *f)
{
    EVP_PKEY_free(f->server_key);
    free(f->server_der);
}

/* A client identity: key and chain from the fixtures (NULL name: no certificate). */
struct client {
    EVP_PKEY *key;
    uint8_t *der[2];
    size_t len[2];
    size_t n;
};

static void client_load(struct client *cl, const char *name, const char *intermediate)
{
    char kp[256], cp[256];
    memset(cl, 0, sizeof(*cl));
    if (name == NULL)
        return;
    snprintf(kp, sizeof(kp), "%s.key", name);
    snprintf(cp, sizeof(cp), "%s.pem", name);
    cl->key = key_pem(fixture(kp));
    cl->der[cl->n] = cert_der(cp, &cl->len[cl->n]);
    cl->n++;
    if (intermediate != NULL) {
        cl->der[cl->n] = cert_der(intermediate, &cl->len[cl->n]);
        cl->n++;
    }
}

static void client_free(struct client *cl)
{
    EVP_PKEY_free(cl->key);
    for (size_t i = 0; i < cl->n; i++)
        OPENSSL_free(cl->der[i]);
}

struct outcome {
    int server_err, client_err;
    int established;
    struct tls_peer_cert peer;
    int cert_requested, cr_has_cas;
    int cr_offers_p256;
};

/* Run one handshake to completion or failure; the client reads whatever the server sent last (its alert). */
static void run(struct fx *f, struct ttc_config *cc, const struct ttc_client_auth *auth, struct outcome *o)
{
    struct tls_conn *c = tls_conn_new(&f->cfg, 7);
    struct ttc t;
    struct kl_buf c2s, s2c, app;
    memset(o, 0, sizeof(*o));
    memset(&t, 0, sizeof(t));
    kl_buf_init(&c2s, 1 << 20);
    kl_buf_init(&s2c, 1 << 20);
    kl_buf_init(&app, 1 << 20);
    trace_log[0] = 0;
    cc->suites[0] = TLS_AES_128_GCM_SHA256;
    cc->n_suites = 1;
    cc->groups[0] = cc->shares[0] = TLS_GROUP_X25519;
    cc->n_groups = cc->n_shares = 1;
    cc->sig_algs[0] = TLS_SIG_RSA_PSS_RSAE_SHA256;
    cc->n_sig_algs = 1;
    cc->sni = "rsa";
    o->client_err = ttc_start(&t, cc, &c2s);
    ttc_set_client_auth(&t, auth);
    for (int round = 0; round < 8 && o->client_err == 0; round++) {
        size_t n = c2s.len;
        o->server_err = tls_conn_input(c, &s2c, &app, c2s.base, &n);
        kl_buf_consume(&c2s, n);
        if (o->server_err == KL_ERR_ASYNC) {
            struct tls_sign_request req;
            uint8_t content[64 + 34 + 48], sig[512];
            size_t sl = sizeof(sig);
            uint16_t scheme;
            if (tls_conn_sign_request(c, &req) != 0)
                break;
            memset(content, 0x20, 64);
            memcpy(content + 64, "TLS 1.3, server CertificateVerify", 34);
            memcpy(content + 98, req.transcript_hash, req.transcript_hash_len);
            if (ttp_sign_content(f->server_key, &scheme, content, 98 + req.transcript_hash_len, sig, &sl) != 0)
                break;
            o->server_err = tls_conn_sign_done(c, &s2c, sig, sl);
        }
        n = s2c.len;
        if (n != 0) {
            int ce = ttc_input(&t, &c2s, &app, s2c.base, &n);
            kl_buf_consume(&s2c, n);
            if (ce != 0)
                o->client_err = ce;
        }
        if (o->server_err != 0 && o->server_err != KL_ERR_ASYNC)
            break;
        if (t.state == TTC_DONE && c2s.len == 0 && tls_conn_established(c))
            break;
    }
    o->established = tls_conn_established(c) && t.state == TTC_DONE;
    o->peer = *tls_conn_peer_cert(c);
    o->cert_requested = t.cert_requested;
    o->cr_has_cas = t.cr_has_cas;
    for (size_t i = 0; i < t.n_cr_schemes; i++)
        o->cr_offers_p256 |= t.cr_schemes[i] == TLS_SIG_ECDSA_SECP256R1_SHA256;
    ttc_dispose(&t);
    tls_conn_free(c);
    kl_buf_dispose(&c2s);
    kl_buf_dispose(&s2c);
    kl_buf_dispose(&app);
}

/* A handshake with client cl (or none) against mode/ca, with the test client's misbehaviour knobs. */
static void hs(struct fx *f, enum tls_client_auth mode, const struct tls_client_ca *ca, const struct client *cl,
               int omit_cv, int bad_cv, uint16_t cv_scheme, struct outcome *o)
{
    struct ttc_config cc;
    struct ttc_client_auth ca_cfg;
    memset(&cc, 0, sizeof(cc));
    memset(&ca_cfg, 0, sizeof(ca_cfg));
    f->cfg.client_auth = mode;
    f->cfg.client_ca = ca;
    if (cl != NULL && cl->n > 0) {
        for (size_t i = 0; i < cl->n; i++) {
            ca_cfg.client_chain[i] = cl->der[i];
            ca_cfg.client_chain_len[i] = cl->len[i];
        }
        ca_cfg.n_client_chain = cl->n;
        ca_cfg.client_sign = ttp_client_sign;
        ca_cfg.client_sign_arg = cl->key;
    }
    ca_cfg.client_omit_cv = omit_cv;
    ca_cfg.client_bad_cv = bad_cv;
    ca_cfg.client_cv_scheme = cv_scheme;
    run(f, &cc, &ca_cfg, o);
}

/* The handshake failed with alert a: the server's error names it and the client read it. */
static void refused(const struct outcome *o, int alert, const char *what)
{
    char name[256];
    snprintf(name, sizeof(name), "%s: server fails with alert %d", what, alert);
    is_int(o->server_err, KL_ERR_ALERT(alert), name);
    snprintf(name, sizeof(name), "%s: the client reads alert %d", what, alert);
    is_int(o->client_err, KL_ERR_PEER_ALERT(alert), name);
    snprintf(name, sizeof(name), "%s: not established, no identity", what);
    ok(!o->established && !o->peer.present, name);
}

/* ---- the handshakes ---- */

static void test_handshakes(void)
{
    struct fx f;
    struct outcome o;
    struct client good, rsa, expired, revoked, wrongca, serveronly, inter, inter_alone, none;
    struct tls_client_ca *ca = NULL, *ca_crl = NULL, *ca_depth0 = NULL, *ca_depth1 = NULL;
    enum tls_client_ca_error why;

    fx_init(&f);
    ok(f.server_key != NULL && f.server_der != NULL, "server fixtures");
    client_load(&good, "client", NULL);
    client_load(&rsa, "client-rsa", NULL);
    client_load(&expired, "expired", NULL);
    client_load(&revoked, "revoked", NULL);
    client_load(&wrongca, "wrongca", NULL);
    client_load(&serveronly, "serveronly", NULL);
    client_load(&inter, "int-leaf", "int-ca.pem");
    client_load(&inter_alone, "int-leaf", NULL);
    client_load(&none, NULL, NULL);
    ok(good.key != NULL && good.der[0] != NULL && inter.n == 2 && inter.der[1] != NULL, "client fixtures");
    is_int(tls_client_ca_load(&ca, &why, fixture("ca.pem"), NULL, 4), 0, "CA bundle loads");
    is_int(tls_client_ca_load(&ca_crl, &why, fixture("ca.pem"), fixture("ca-crl.pem"), 4), 0, "CA bundle + CRL load");
    is_int(tls_client_ca_load(&ca_depth0, &why, fixture("ca.pem"), NULL, 0), 0, "CA bundle, depth 0");
    is_int(tls_client_ca_load(&ca_depth1, &why, fixture("ca.pem"), NULL, 1), 0, "CA bundle, depth 1");

    /* none: no CertificateRequest at all. */
    hs(&f, TLS_CLIENT_AUTH_NONE, NULL, &good, 0, 0, 0, &o);
    ok(o.established && !o.cert_requested && !o.peer.present, "client_auth none: no CertificateRequest, no identity");

    /* required, good P-256 client: every message, the identity. */
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca, &good, 0, 0, 0, &o);
    ok(o.established, "required + good certificate: established");
    ok(o.cert_requested && o.cr_has_cas && o.cr_offers_p256,
       "CertificateRequest with signature_algorithms (ECDSA P-256 offered) and certificate_authorities");
    ok(strstr(trace_log, "EncryptedExtensions,CertificateRequest,Certificate,") != NULL,
       "CertificateRequest goes after EncryptedExtensions, before Certificate");
    ok(strstr(trace_log, "ClientCertificate,ClientCertificateVerify,ClientFinished") != NULL,
       "the client's Certificate, CertificateVerify, Finished (one record) are processed in order");
    ok(o.peer.present, "identity present");
    is_int(strcmp(o.peer.subject_cn, "client.test"), 0, "identity: subject CN");
    is_int(strcmp(o.peer.san, "DNS:client.test,email:client@example.test"), 0, "identity: SAN");
    is_int(strcmp(o.peer.subject, "CN=client.test"), 0, "identity: subject");
    {
        uint8_t want[32];
        unsigned wl = 0;
        size_t dl;
        uint8_t *der = cert_der("client.pem", &dl);
        EVP_Digest(der, dl, want, &wl, EVP_sha256(), NULL);
        is_mem(o.peer.sha256, 32, want, wl, "identity: SHA-256 of the leaf");
        OPENSSL_free(der);
    }

    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca, &rsa, 0, 0, 0, &o);
    ok(o.established && o.peer.present && strcmp(o.peer.subject_cn, "client-rsa.test") == 0,
       "required + RSA client (RSA-PSS CertificateVerify): established");

    /* missing certificate: optional goes on without an identity, required is certificate_required. */
    hs(&f, TLS_CLIENT_AUTH_OPTIONAL, ca, &none, 0, 0, 0, &o);
    ok(o.established && o.cert_requested && !o.peer.present, "optional + empty Certificate: established, no identity");
    ok(strstr(trace_log, "ClientCertificate,ClientFinished") != NULL, "optional: empty Certificate then Finished");
    hs(&f, TLS_CLIENT_AUTH_OPTIONAL, ca, &good, 0, 0, 0, &o);
    ok(o.established && o.peer.present, "optional + good certificate: identity present");
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca, &none, 0, 0, 0, &o);
    refused(&o, KL_ALERT_CERTIFICATE_REQUIRED, "required + empty Certificate");

    /* the chain check. */
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca, &expired, 0, 0, 0, &o);
    refused(&o, KL_ALERT_CERTIFICATE_EXPIRED, "expired certificate");
    hs(&f, TLS_CLIENT_AUTH_OPTIONAL, ca, &expired, 0, 0, 0, &o);
    refused(&o, KL_ALERT_CERTIFICATE_EXPIRED, "optional does not excuse a bad certificate");
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca, &wrongca, 0, 0, 0, &o);
    refused(&o, KL_ALERT_UNKNOWN_CA, "certificate from another CA");
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca, &revoked, 0, 0, 0, &o);
    ok(o.established, "revoked certificate without a CRL configured: accepted (nothing says otherwise)");
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca_crl, &revoked, 0, 0, 0, &o);
    refused(&o, KL_ALERT_CERTIFICATE_REVOKED, "revoked certificate (CRL)");
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca_crl, &good, 0, 0, 0, &o);
    ok(o.established && o.peer.present, "good certificate with the CRL: established");
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca, &serveronly, 0, 0, 0, &o);
    refused(&o, KL_ALERT_UNSUPPORTED_CERTIFICATE, "certificate for serverAuth only (purpose)");
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca_depth1, &inter, 0, 0, 0, &o);
    ok(o.established && strcmp(o.peer.subject_cn, "int-leaf.test") == 0, "leaf + intermediate, depth 1: established");
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca_depth0, &inter, 0, 0, 0, &o);
    refused(&o, KL_ALERT_UNKNOWN_CA, "leaf + intermediate, depth 0");
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca, &inter_alone, 0, 0, 0, &o);
    refused(&o, KL_ALERT_UNKNOWN_CA, "leaf without its intermediate");
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca_crl, &inter, 0, 0, 0, &o);
    refused(&o, KL_ALERT_UNKNOWN_CA, "CRL checking on, no CRL for the intermediate");

    /* CertificateVerify. */
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca, &good, 0, 1, 0, &o);
    refused(&o, KL_ALERT_DECRYPT_ERROR, "bad CertificateVerify signature");
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca, &rsa, 0, 1, 0, &o);
    refused(&o, KL_ALERT_DECRYPT_ERROR, "bad RSA-PSS CertificateVerify signature");
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca, &good, 1, 0, 0, &o);
    refused(&o, KL_ALERT_UNEXPECTED_MESSAGE, "Certificate without CertificateVerify (Finished instead)");
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca, &good, 0, 0, 0x0401, &o);
    refused(&o, KL_ALERT_ILLEGAL_PARAMETER, "CertificateVerify with a scheme not offered (rsa_pkcs1_sha256)");
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca, &good, 0, 0, TLS_SIG_ECDSA_SECP384R1_SHA384, &o);
    refused(&o, KL_ALERT_ILLEGAL_PARAMETER, "CertificateVerify scheme for another curve than the leaf's");
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, ca, &rsa, 0, 0, TLS_SIG_ECDSA_SECP256R1_SHA256, &o);
    refused(&o, KL_ALERT_ILLEGAL_PARAMETER, "CertificateVerify ECDSA scheme with an RSA leaf");

    /* A configuration that asks for certificates without anchors fails closed. */
    hs(&f, TLS_CLIENT_AUTH_REQUIRED, NULL, &good, 0, 0, 0, &o);
    refused(&o, KL_ALERT_INTERNAL_ERROR, "client_auth without client_ca");

    tls_client_ca_free(ca);
    tls_client_ca_free(ca_crl);
    tls_client_ca_free(ca_depth0);
    tls_client_ca_free(ca_depth1);
    tls_client_ca_free(NULL);
    client_free(&good);
    client_free(&rsa);
    client_free(&expired);
    client_free(&revoked);
    client_free(&wrongca);
    client_free(&serveronly);
    client_free(&inter);
    client_free(&inter_alone);
    fx_free(&f);
}

/* ---- the CA loader ---- */

static void test_ca_load(void)
{
    struct tls_client_ca *ca = (struct tls_client_ca *)&ca;
    enum tls_client_ca_error why;
    int ret;

    ret = tls_client_ca_load(&ca, &why, fixture("no-such-file.pem"), NULL, 4);
    ok(ret == KL_ERR_CONFIG && why == TLS_CLIENT_CA_CANNOT_OPEN && ca == NULL, "missing CA bundle: CANNOT_OPEN");
    ret = tls_client_ca_load(&ca, &why, fixture("client.key"), NULL, 4);
    ok(ret == KL_ERR_CONFIG && why == TLS_CLIENT_CA_NO_CERT && ca == NULL, "a key file as CA bundle: NO_CERT");
    ret = tls_client_ca_load(&ca, &why, fixture("make.sh"), NULL, 4);
    ok(ret == KL_ERR_CONFIG && why == TLS_CLIENT_CA_NO_CERT, "a non-PEM file as CA bundle: NO_CERT");
    ret = tls_client_ca_load(&ca, &why, fixture("ca.pem"), fixture("no-such-crl.pem"), 4);
    ok(ret == KL_ERR_CONFIG && why == TLS_CLIENT_CA_CRL_OPEN, "missing CRL file: CRL_OPEN");
    ret = tls_client_ca_load(&ca, &why, fixture("ca.pem"), fixture("ca.pem"), 4);
    ok(ret == KL_ERR_CONFIG && why == TLS_CLIENT_CA_NO_CRL, "a certificate file as CRL: NO_CRL");
    ret = tls_client_ca_load(&ca, &why, fixture("ca.pem"), NULL, 4);
    ok(ret == 0 && why == TLS_CLIENT_CA_OK && ca != NULL, "good bundle");
    tls_client_ca_free(ca);
}

/* ---- the codecs ---- */

static void test_codecs(void)
{
    static const uint16_t schemes[] = {0x0403, 0x0804};
    static const uint8_t names[] = {0x00, 0x05, 0x00, 0x03, 0x30, 0x01, 0x00};
    static const uint8_t want_cr[] = {13, 0, 0, 34, 0, 0, 31, 0, 13, 0,  6, 0, 4, 4, 3, 8, 4,    0, 50,
                                      0,  6, 0, 4,  4, 3, 8,  4, 0,  47, 0, 7, 0, 5, 0, 3, 0x30, 1, 0};
    uint8_t mem[256];
    struct kl_buf b;
    struct msg_certificate m;
    uint16_t scheme;
    struct kl_span sig;
    int bad = 0;

    kl_buf_init_fixed(&b, mem, sizeof(mem));
    is_int(msg_certificate_request_encode(&b, schemes, 2, kl_span_of(names, sizeof(names))), 0, "encode CR");
    is_mem(b.base, b.len, want_cr, sizeof(want_cr), "CertificateRequest bytes: context, sig_algs, sig_algs_cert, CAs");
    kl_buf_init_fixed(&b, mem, sizeof(mem));
    is_int(msg_certificate_request_encode(&b, schemes, 2, kl_span_of(NULL, 0)), 0, "encode CR without CA names");
    is_int((int)b.len, (int)sizeof(want_cr) - 11, "no certificate_authorities extension without names");
    kl_buf_init_fixed(&b, mem, sizeof(mem));
    is_int(msg_certificate_request_encode(&b, schemes, 0, kl_span_of(NULL, 0)), KL_ERR_INVALID, "no schemes: refused");
    kl_buf_init_fixed(&b, mem, 20);
    is_int(msg_certificate_request_encode(&b, schemes, 2, kl_span_of(names, sizeof(names))), KL_ERR_OVERFLOW,
           "CR into a too small buffer: overflow");

    /* Certificate: context 0, list of two entries (1-byte certs), the second with an extension. */
    static const uint8_t cert_msg[] = {0, 0, 0, 14, 0, 0, 1, 0xaa, 0, 0, 0, 0, 1, 0xbb, 0, 4, 0, 5, 0, 0};
    is_int(msg_certificate_decode(&m, cert_msg, sizeof(cert_msg) - 2), KL_ERR_DECODE, "Certificate: list too short");
    static const uint8_t cert_ok[] = {0, 0, 0, 16, 0, 0, 1, 0xaa, 0, 0, 0, 0, 1, 0xbb, 0, 4, 0, 5, 0, 0};
    is_int(msg_certificate_decode(&m, cert_ok, sizeof(cert_ok)), 0, "Certificate: two entries");
    ok(m.n_certs == 2 && m.certs[0].len == 1 && m.certs[0].base[0] == 0xaa && m.certs[1].base[0] == 0xbb &&
           m.has_extensions && m.context.len == 0,
       "Certificate: entries and the extension flag");
    for (size_t i = 0; i < sizeof(cert_ok); i++)
        bad |= msg_certificate_decode(&m, cert_ok, i) == 0;
    ok(!bad, "Certificate: every strict prefix is refused");
    uint8_t trailing[sizeof(cert_ok) + 1];
    memcpy(trailing, cert_ok, sizeof(cert_ok));
    trailing[sizeof(cert_ok)] = 0;
    is_int(msg_certificate_decode(&m, trailing, sizeof(trailing)), KL_ERR_DECODE, "Certificate: trailing byte");
    static const uint8_t empty_list[] = {0, 0, 0, 0};
    is_int(msg_certificate_decode(&m, empty_list, sizeof(empty_list)), 0, "Certificate: empty list decodes");
    is_int((int)m.n_certs, 0, "Certificate: empty list has no certificates");
    static const uint8_t empty_cert[] = {0, 0, 0, 5, 0, 0, 0, 0, 0};
    is_int(msg_certificate_decode(&m, empty_cert, sizeof(empty_cert)), KL_ERR_DECODE, "Certificate: empty cert_data");
    uint8_t many[4 + 11 * 6];
    many[0] = 0;
    many[1] = 0;
    many[2] = 0;
    many[3] = 11 * 6;
    for (size_t i = 0; i < 11; i++) {
        uint8_t *e = many + 4 + i * 6;
        e[0] = 0, e[1] = 0, e[2] = 1, e[3] = (uint8_t)i, e[4] = 0, e[5] = 0;
    }
    is_int(msg_certificate_decode(&m, many, sizeof(many)), KL_ERR_ALERT(KL_ALERT_BAD_CERTIFICATE),
           "Certificate: more than MSG_MAX_PEER_CHAIN entries");
    is_int(msg_certificate_decode(&m, many, 4 + 10 * 6 - 0), KL_ERR_DECODE, "Certificate: list length past the end");

    static const uint8_t cv[] = {0x04, 0x03, 0, 2, 0x12, 0x34};
    is_int(msg_certificate_verify_decode(&scheme, &sig, cv, sizeof(cv)), 0, "CertificateVerify decodes");
    ok(scheme == 0x0403 && sig.len == 2 && sig.base[0] == 0x12, "CertificateVerify fields");
    is_int(msg_certificate_verify_decode(&scheme, &sig, cv, sizeof(cv) - 1), KL_ERR_DECODE, "CV: truncated");
    static const uint8_t cv_empty[] = {0x04, 0x03, 0, 0};
    is_int(msg_certificate_verify_decode(&scheme, &sig, cv_empty, sizeof(cv_empty)), KL_ERR_DECODE,
           "CV: empty signature");
    static const uint8_t cv_trail[] = {0x04, 0x03, 0, 1, 0x12, 0};
    is_int(msg_certificate_verify_decode(&scheme, &sig, cv_trail, sizeof(cv_trail)), KL_ERR_DECODE,
           "CV: trailing byte");
}

/* ---- RFC 8448 section 6: the server's side byte for byte, the client's flight accepted ---- */

static void test_rfc8448_client_auth(void)
{
    struct rfc8448 *t = rfc8448_load("client-auth.txt");
    uint8_t *ecdsa_der = NULL;
    size_t ecdsa_len = 0, l, n;
    struct tls_cert cert;
    struct tls_config cfg;
    struct tls_test_hooks hooks;
    struct tls_client_ca *ca = NULL;
    enum tls_client_ca_error why;
    const char *td = getenv("KL_TESTDATA");
    char p[4096];

    if (!ok(t != NULL, "RFC 8448 section 6 trace loaded")) {
        return;
    }
    ecdsa_der = rfc8448_read_file("client-auth-server-ecdsa-cert.der", &ecdsa_len);
    snprintf(p, sizeof(p), "%s/rfc8448/client-auth-client-rsa-cert.pem", td != NULL ? td : ".");
    /* The client's certificate is self-signed: it is its own anchor. */
    is_int(tls_client_ca_load(&ca, &why, p, NULL, 0), 0, "the trace's client certificate as the client CA");
    memset(&cert, 0, sizeof(cert));
    memset(&cfg, 0, sizeof(cfg));
    memset(&hooks, 0, sizeof(hooks));
    cert.key_name = "ecdsa";
    cert.chain[0] = ecdsa_der;
    cert.chain_len[0] = ecdsa_len;
    cert.n_chain = 1;
    cert.schemes[0] = TLS_SIG_ECDSA_SECP256R1_SHA256;
    cert.n_schemes = 1;
    cfg.certs = &cert;
    cfg.n_certs = 1;
    cfg.suites[0] = TLS_AES_128_GCM_SHA256;
    cfg.n_suites = 1;
    cfg.groups[0] = TLS_GROUP_X25519;
    cfg.n_groups = 1;
    cfg.client_auth = TLS_CLIENT_AUTH_REQUIRED;
    cfg.client_ca = ca;
    hooks.server_random = rfc8448_must(t, "server_random", &l);
    hooks.server_ephemeral_private = rfc8448_must(t, "server_ephemeral_private", &hooks.server_ephemeral_private_len);
    const uint8_t *ee = rfc8448_must(t, "encrypted_extensions", &l);
    hooks.encrypted_extensions_body = ee + 6;
    hooks.encrypted_extensions_body_len = l - 6;
    /* NSS's CertificateRequest lists more schemes than we accept: replay its body as the hook. */
    const uint8_t *cr = rfc8448_must(t, "certificate_request", &l);
    hooks.certificate_request_body = cr + 4;
    hooks.certificate_request_body_len = l - 4;
    /* The trace's client certificate expired in July 2026: check it as of the trace (2016-08-01). */
    hooks.client_verify_time = 1470009600;
    cfg.test = &hooks;

    for (int pass = 0; pass < 2; pass++) {
        struct tls_conn *c = tls_conn_new(&cfg, 1);
        struct kl_buf out, app;
        const uint8_t *in, *want, *cv;
        size_t cv_len, want_len;
        int r;
        kl_buf_init(&out, 1 << 16);
        kl_buf_init(&app, 1 << 16);
        hooks.client_verify_time = pass == 0 ? 1470009600 : 0;
        in = rfc8448_must(t, "client_hello_record", &l);
        n = l;
        is_int(tls_conn_input(c, &out, &app, in, &n), KL_ERR_ASYNC, "RFC 8448 6: ClientHello -> signature wait");
        want = rfc8448_must(t, "server_hello_record", &want_len);
        if (pass == 0) {
            is_mem(out.base, out.len, want, want_len, "RFC 8448 6: ServerHello record byte for byte");
        }
        out.len = 0;
        /* The ECDSA signature is not deterministic: replay the trace's own (4 header, 2 scheme, 2 length). */
        cv = rfc8448_must(t, "certificate_verify", &cv_len);
        is_int(tls_conn_sign_done(c, &out, cv + 8, cv_len - 8), 0, "RFC 8448 6: signature in");
        want = rfc8448_must(t, "server_encrypted_flight_record", &want_len);
        if (pass == 0) {
            is_mem(out.base, out.len, want, want_len,
                   "RFC 8448 6: EE, CertificateRequest, Certificate, CertificateVerify, Finished record byte for byte");
        }
        out.len = 0;
        in = rfc8448_must(t, "client_encrypted_flight_record", &l);
        n = l;
        r = tls_conn_input(c, &out, &app, in, &n);
        if (pass == 0) {
            is_int(r, 0, "RFC 8448 6: the client's Certificate, CertificateVerify and Finished accepted");
            ok(tls_conn_established(c) && tls_conn_peer_cert(c)->present &&
                   strcmp(tls_conn_peer_cert(c)->subject_cn, "client") == 0,
               "RFC 8448 6: established, the client is CN=client");
            in = rfc8448_must(t, "client_alert_record", &l);
            n = l;
            is_int(tls_conn_input(c, &out, &app, in, &n), KL_ERR_CLOSED, "RFC 8448 6: the client's close_notify");
        } else {
            is_int(r, KL_ERR_ALERT(KL_ALERT_CERTIFICATE_EXPIRED),
                   "RFC 8448 6 today: the client's certificate has expired (certificate_expired)");
            ok(!tls_conn_established(c) && !tls_conn_peer_cert(c)->present, "RFC 8448 6 today: no identity");
        }
        tls_conn_free(c);
        kl_buf_dispose(&out);
        kl_buf_dispose(&app);
    }
    tls_client_ca_free(ca);
    free(ecdsa_der);
    rfc8448_free(t);
}

int main(void)
{
    if (crypto_init() != 0)
        return 1;
    test_codecs();
    test_ca_load();
    test_handshakes();
    test_rfc8448_client_auth();
    return kl_test_done();
}
