#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include "certs.h"

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
