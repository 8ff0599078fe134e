#include <stdio.h>
#include <string.h>
#include <openssl/rsa.h>
#include "kl_err.h"
#include "tls_test_pair.h"

int ttp_sign_content(EVP_PKEY *key, uint16_t *scheme_p, const uint8_t *content, size_t len, uint8_t *sig,
                     size_t *sig_len_p)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int rsa = EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA;
    int good = md != NULL && EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, key) == 1 &&
               (!rsa || (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1)) &&
               EVP_DigestSign(md, sig, sig_len_p, content, len) == 1;
    EVP_MD_CTX_free(md);
    *scheme_p = rsa ? TLS_SIG_RSA_PSS_RSAE_SHA256 : TLS_SIG_ECDSA_SECP256R1_SHA256;
    return good ? 0 : KL_ERR_CRYPTO;
}

int ttp_client_sign(void *arg, uint16_t *scheme_p, const uint8_t *content, size_t len, uint8_t *sig, size_t *sig_len_p)
{
    return ttp_sign_content(arg, scheme_p, content, len, sig, sig_len_p);
}

/* The server's side of a sign request: the 4.4.3 content signed with key, handed back to c. */
static int answer_sign(struct tls_conn *c, EVP_PKEY *key, struct kl_buf *s2c, struct ttp_run *r)
{
    struct tls_sign_request req;
    uint8_t content[64 + 34 + 48], sig[512];
    size_t sl = sizeof(sig);
    uint16_t scheme;
    r->signed_ = 1;
    if (tls_conn_sign_request(c, &req) != 0)
        return -1;
    snprintf(r->key_name, sizeof(r->key_name), "%s", req.key_name);
    snprintf(r->sign_name, sizeof(r->sign_name), "%s", req.server_name);
    memset(content, 0x20, 64);
    memcpy(content + 64, "TLS 1.3, server CertificateVerify", 34);
    memcpy(content + 98, req.transcript_hash, req.transcript_hash_len);
    if (ttp_sign_content(key, &scheme, content, 98 + req.transcript_hash_len, sig, &sl) != 0)
        return -1;
    r->server_err = tls_conn_sign_done(c, s2c, sig, sl);
    return 0;
}

void ttp_run(struct tls_conn *c, struct ttc *t, const struct ttc_config *cc, const struct ttc_psk_config *pc,
             const struct ttc_ech *e, const struct ttc_client_auth *auth, EVP_PKEY *key, struct ttp_run *r)
{
    struct kl_buf c2s, s2c, capp;
    memset(r, 0, sizeof(*r));
    kl_buf_init(&c2s, 1 << 20);
    kl_buf_init(&s2c, 1 << 20);
    kl_buf_init(&capp, 1 << 20);
    kl_buf_init(&r->app, 1 << 20);
    r->client_err = ttc_start_ech(t, cc, pc, e, &c2s);
    if (auth != NULL)
        ttc_set_client_auth(t, auth);
    for (int round = 0; round < 8 && r->client_err == 0 && (r->server_err == 0 || r->server_err == KL_ERR_ASYNC);
         round++) {
        size_t n = c2s.len;
        r->server_err = tls_conn_input(c, &s2c, &r->app, c2s.base, &n);
        kl_buf_consume(&c2s, n);
        if (r->server_err == KL_ERR_ASYNC && answer_sign(c, key, &s2c, r) != 0)
            break;
        n = s2c.len;
        r->client_err = ttc_input(t, &c2s, &capp, s2c.base, &n);
        kl_buf_consume(&s2c, n);
        if (t->state == TTC_DONE && c2s.len == 0 && tls_conn_established(c)) {
            /* The tickets follow the server's answer to the client Finished: let the client read them. */
            n = s2c.len;
            if (n != 0)
                r->client_err = ttc_input(t, &c2s, &capp, s2c.base, &n);
            r->done = r->client_err == 0;
            break;
        }
    }
    kl_buf_dispose(&c2s);
    kl_buf_dispose(&s2c);
    kl_buf_dispose(&capp);
}
