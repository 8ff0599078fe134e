#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sodium.h>
#include "ev.h"
#include "gen.h"
#include "log.h"
#include "signer_client.h"
#include "clock.h"

static int key_schemes(struct fe_cert *c, char *why, size_t why_len, EVP_PKEY *pk)
{
    int id = EVP_PKEY_get_base_id(pk);
    if (id == EVP_PKEY_EC) {
        char group[64] = "";
        size_t glen = 0;
        if (EVP_PKEY_get_utf8_string_param(pk, "group", group, sizeof(group), &glen) != 1) {
            snprintf(why, why_len, "EC key without a named curve");
            return KL_ERR_CONFIG;
        }
        if (strcmp(group, "prime256v1") == 0) {
            c->allowed[c->n_allowed++] = TLS_SIG_ECDSA_SECP256R1_SHA256;
            snprintf(c->key_desc, sizeof(c->key_desc), "ECDSA P-256");
        } else if (strcmp(group, "secp384r1") == 0) {
            c->allowed[c->n_allowed++] = TLS_SIG_ECDSA_SECP384R1_SHA384;
            snprintf(c->key_desc, sizeof(c->key_desc), "ECDSA P-384");
        } else {
            snprintf(why, why_len, "EC curve %s is not usable in TLS 1.3 here (P-256, P-384)", group);
            return KL_ERR_CONFIG;
        }
    } else if (id == EVP_PKEY_RSA) {
        /* An rsaEncryption key signs with the rsa_pss_rsae_* schemes in TLS 1.3 (RFC 8446 4.2.3). */
        c->allowed[c->n_allowed++] = TLS_SIG_RSA_PSS_RSAE_SHA256;
        c->allowed[c->n_allowed++] = TLS_SIG_RSA_PSS_RSAE_SHA384;
        c->allowed[c->n_allowed++] = TLS_SIG_RSA_PSS_RSAE_SHA512;
        snprintf(c->key_desc, sizeof(c->key_desc), "RSA %d", EVP_PKEY_get_bits(pk));
    } else if (id == EVP_PKEY_ED25519) {
        c->allowed[c->n_allowed++] = TLS_SIG_ED25519;
        snprintf(c->key_desc, sizeof(c->key_desc), "Ed25519");
    } else {
        snprintf(why, why_len, "unsupported leaf key type (ECDSA P-256/P-384, RSA, Ed25519)");
        return KL_ERR_CONFIG;
    }
    return 0;
}

static int leaf_names(struct fe_cert *c, X509 *x)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (gens != NULL) {
        for (int i = 0; i < sk_GENERAL_NAME_num(gens) && c->n_names < TLS_MAX_NAMES; i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
            if (g->type != GEN_DNS) {
                continue;
            }
            const unsigned char *s = ASN1_STRING_get0_data(g->d.dNSName);
            int len = ASN1_STRING_length(g->d.dNSName);
            if (len <= 0 || memchr(s, 0, (size_t)len) != NULL) {
                continue;
            }
            c->names[c->n_names] = strndup((const char *)s, (size_t)len);
            if (c->names[c->n_names] == NULL) {
                GENERAL_NAMES_free(gens);
                return KL_ERR_NO_MEMORY;
            }
            c->n_names++;
        }
        GENERAL_NAMES_free(gens);
    }
    return 0;
}

int certs_load(struct fe_cert *c, char *why, size_t why_len, const char *path)
{
    int ret = 0;
    BIO *bio = NULL;
    X509 *x = NULL;
    memset(c, 0, sizeof(*c));
    bio = BIO_new_file(path, "r");
    if (bio == NULL) {
        snprintf(why, why_len, "cannot open the PEM file");
        ret = KL_ERR_CONFIG;
        goto exit;
    }
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (c->n_der == TLS_MAX_CHAIN) {
            snprintf(why, why_len, "more than %d certificates in the chain", TLS_MAX_CHAIN);
            ret = KL_ERR_CONFIG;
            goto exit;
        }
        if (c->n_der == 0) {
            EVP_PKEY *pk = X509_get0_pubkey(x);
            if (pk == NULL) {
                snprintf(why, why_len, "the leaf certificate's public key does not parse");
                ret = KL_ERR_CONFIG;
                goto exit;
            }
            KL_TRY(key_schemes(c, why, why_len, pk));
            int n = i2d_PUBKEY(pk, &c->spki);
            KL_ENSURE(n > 0, KL_ERR_CRYPTO);
            c->spki_len = (size_t)n;
            KL_TRY(leaf_names(c, x));
        }
        unsigned char *der = NULL;
        int n = i2d_X509(x, &der);
        KL_ENSURE(n > 0, KL_ERR_CRYPTO);
        c->der[c->n_der] = der;
        c->der_len[c->n_der] = (size_t)n;
        c->n_der++;
        X509_free(x);
        x = NULL;
    }
    ERR_clear_error();
    if (c->n_der == 0) {
        snprintf(why, why_len, "no PEM certificate in the file");
        ret = KL_ERR_CONFIG;
        goto exit;
    }
exit:
    if (ret != 0 && why[0] == '\0') {
        snprintf(why, why_len, "%s", kl_err_str(ret));
    }
    X509_free(x);
    BIO_free(bio);
    if (ret != 0) {
        certs_dispose(c);
    }
    return ret;
}

void certs_dispose(struct fe_cert *c)
{
    for (size_t i = 0; i < c->n_der; i++) {
        OPENSSL_free(c->der[i]);
    }
    for (size_t i = 0; i < c->n_names; i++) {
        free(c->names[i]);
    }
    OPENSSL_free(c->spki);
    memset(c, 0, sizeof(*c));
}

/* --- generations --- */

int gen_new(struct fe_gen **gen_p, char *err, size_t err_len, struct config *cfg)
{
    int ret = 0;
    struct fe_gen *gen = calloc(1, sizeof(*gen));
    if (gen == NULL) {
        config_free(cfg);
        snprintf(err, err_len, "keyless-frontend: out of memory");
        return KL_ERR_NO_MEMORY;
    }
    gen->refs = 1;
    gen->cfg = cfg;
    for (size_t i = 0; i < cfg->n_certs; i++) {
        const struct config_cert *cc = &cfg->certs[i];
        char why[256] = "";
        ret = certs_load(&gen->certs[i], why, sizeof(why), cc->chain_path);
        if (ret != 0) {
            snprintf(err, err_len, "keyless-frontend: %s:%d: [cert %s] chain: %s: %s", cfg->path, cc->chain_line,
                     cc->name, cc->chain_path, why);
            goto exit;
        }
        struct tls_cert *tc = &gen->tls_certs[i];
        tc->key_name = cc->key_name;
        for (size_t j = 0; j < gen->certs[i].n_der; j++) {
            tc->chain[j] = gen->certs[i].der[j];
            tc->chain_len[j] = gen->certs[i].der_len[j];
        }
        tc->n_chain = gen->certs[i].n_der;
        for (size_t j = 0; j < gen->certs[i].n_names; j++) {
            tc->names[j] = gen->certs[i].names[j];
        }
        tc->n_names = gen->certs[i].n_names;
        /* Until the signer has said what the key can do, the key type's schemes. */
        memcpy(tc->schemes, gen->certs[i].allowed, gen->certs[i].n_allowed * sizeof(uint16_t));
        tc->n_schemes = gen->certs[i].n_allowed;
    }
    struct tls_config *t = &gen->tls;
    t->certs = gen->tls_certs;
    t->n_certs = cfg->n_certs;
    memcpy(t->suites, cfg->suites, sizeof(t->suites));
    t->n_suites = cfg->n_suites;
    memcpy(t->groups, cfg->groups, sizeof(t->groups));
    t->n_groups = cfg->n_groups;
    for (size_t i = 0; i < cfg->n_alpn && i < TLS_MAX_ALPN; i++) {
        t->alpn[i] = cfg->alpn[i];
    }
    t->n_alpn = cfg->n_alpn < TLS_MAX_ALPN ? cfg->n_alpn : TLS_MAX_ALPN;
    /* A fresh HelloRetryRequest cookie key per generation: cookies need not survive a reload. */
    randombytes_buf(t->cookie_key, sizeof(t->cookie_key));
    *gen_p = gen;
    gen = NULL;
exit:
    if (gen != NULL) {
        gen_unref(gen);
    }
    return ret;
}

int gen_check_keys(struct fe_gen *gen, char *err, size_t err_len, const Keyless__V1__ListKeysResponse *keys)
{
    const struct config *cfg = gen->cfg;
    for (size_t i = 0; i < cfg->n_certs; i++) {
        const struct config_cert *cc = &cfg->certs[i];
        const struct fe_cert *fc = &gen->certs[i];
        const Keyless__V1__KeyInfo *k = NULL;
        for (size_t j = 0; j < keys->n_keys; j++) {
            if (keys->keys[j]->name != NULL && strcmp(keys->keys[j]->name, cc->key_name) == 0) {
                k = keys->keys[j];
            }
        }
        if (k == NULL) {
            snprintf(err, err_len, "keyless-frontend: %s:%d: [cert %s] key: the signer has no key named '%s'",
                     cfg->path, cc->key_line, cc->name, cc->key_name);
            return KL_ERR_CONFIG;
        }
        if (k->public_key_spki.len != fc->spki_len || memcmp(k->public_key_spki.data, fc->spki, fc->spki_len) != 0) {
            snprintf(err, err_len,
                     "keyless-frontend: %s:%d: [cert %s] key: certificate %s does not match signer key '%s' "
                     "(its public key differs)",
                     cfg->path, cc->key_line, cc->name, cc->chain_path, cc->key_name);
            return KL_ERR_CONFIG;
        }
        struct tls_cert *tc = &gen->tls_certs[i];
        tc->n_schemes = 0;
        for (size_t a = 0; a < fc->n_allowed; a++) {
            for (size_t s = 0; s < k->n_schemes; s++) {
                if (k->schemes[s] == fc->allowed[a] && tc->n_schemes < TLS_MAX_SCHEMES) {
                    tc->schemes[tc->n_schemes++] = fc->allowed[a];
                    break;
                }
            }
        }
        if (tc->n_schemes == 0) {
            snprintf(
                err, err_len,
                "keyless-frontend: %s:%d: [cert %s] key: signer key '%s' allows no scheme a %s certificate can use",
                cfg->path, cc->key_line, cc->name, cc->key_name, fc->key_desc);
            return KL_ERR_CONFIG;
        }
    }
    return 0;
}

void gen_ref(struct fe_gen *gen)
{
    gen->refs++;
}

void gen_unref(struct fe_gen *gen)
{
    if (gen == NULL || --gen->refs > 0) {
        return;
    }
    for (size_t i = 0; i < CONFIG_MAX_CERTS; i++) {
        certs_dispose(&gen->certs[i]);
    }
    sodium_memzero(gen->tls.cookie_key, sizeof(gen->tls.cookie_key));
    config_free(gen->cfg);
    free(gen);
}

/* --- start-up check against the signer --- */

struct startup_wait {
    int done;
    int ok;
    char *err;
    size_t err_len;
    struct fe_gen *gen;
};

static void startup_keys_cb(void *arg, const Keyless__V1__Response *resp)
{
    struct startup_wait *sw = arg;
    sw->done = 1;
    if (resp == NULL || resp->body_case != KEYLESS__V1__RESPONSE__BODY_LIST_KEYS || resp->list_keys == NULL ||
        resp->list_keys->status != KEYLESS__V1__STATUS__OK) {
        snprintf(sw->err, sw->err_len, "keyless-frontend: %s:%d: [signer] socket: ListKeys failed (%s)",
                 sw->gen->cfg->path, sw->gen->cfg->signer_line, resp == NULL ? "no answer" : "error status");
        return;
    }
    sw->ok = gen_check_keys(sw->gen, sw->err, sw->err_len, resp->list_keys) == 0;
}

int gen_check_signer(struct fe_gen *gen, char *err, size_t err_len)
{
    int ret = 0;
    const struct config *cfg = gen->cfg;
    struct sc_client *sc = NULL;
    struct ev_loop *loop = ev_loop_new();
    struct startup_wait sw = {.err = err, .err_len = err_len, .gen = gen};
    KL_ENSURE(loop != NULL, KL_ERR_NO_MEMORY);
    KL_TRY(sc_new(&sc, loop, (const char *const *)cfg->signer_sockets, cfg->n_signer_sockets, 4,
                  cfg->signer_timeout_ms > 5000 ? cfg->signer_timeout_ms : 5000));
    uint64_t deadline = kl_clock_ms() + cfg->signer_startup_wait_ms;
    int logged = 0;
    while (!sc_up(sc) && kl_clock_ms() < deadline) {
        if (!logged) {
            log_info("waiting up to %u ms for the signer at %s", cfg->signer_startup_wait_ms, cfg->signer_sockets[0]);
            logged = 1;
        }
        KL_TRY(ev_run_once(loop, 50));
    }
    if (!sc_up(sc)) {
        snprintf(err, err_len, "keyless-frontend: %s:%d: [signer] socket: cannot connect to %s%s", cfg->path,
                 cfg->signer_line, cfg->signer_sockets[0], cfg->n_signer_sockets > 1 ? " (nor the others)" : "");
        ret = KL_ERR_IO;
        goto exit;
    }
    uint64_t id;
    KL_TRY(sc_list_keys(sc, &id, startup_keys_cb, &sw));
    while (!sw.done) {
        KL_TRY(ev_run_once(loop, 100));
    }
    KL_ENSURE(sw.ok, KL_ERR_CONFIG);
exit:
    sc_free(sc);
    ev_loop_free(loop);
    return ret;
}
