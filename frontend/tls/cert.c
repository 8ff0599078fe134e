/*
 * cert.c - certificate files for the caller's configuration (tls.h), built on crypto.c:
 * the engine's only public way to read a PEM chain, so that no file outside crypto.c
 * includes libcrypto.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tls.h"
#include "crypto.h"

/* The engine's chain bound and the public one are the same limit. */
_Static_assert(CRYPTO_MAX_CHAIN == TLS_MAX_CHAIN, "chain bounds differ");

static const char *key_desc(enum crypto_key_type t)
{
    switch (t) {
    case CRYPTO_KEY_EC_P256:
        return "ECDSA P-256";
    case CRYPTO_KEY_EC_P384:
        return "ECDSA P-384";
    case CRYPTO_KEY_RSA:
        return "RSA";
    case CRYPTO_KEY_ED25519:
        return "Ed25519";
    default:
        return "unknown";
    }
}

int tls_cert_file_load(struct tls_cert_file *f, enum tls_cert_error *why_p, const char *path)
{
    int ret = 0;
    struct crypto_chain chain;
    enum crypto_key_type kt = CRYPTO_KEY_UNKNOWN;
    enum tls_cert_error why = TLS_CERT_OK;

    memset(f, 0, sizeof(*f));
    memset(&chain, 0, sizeof(chain));
    /* crypto_chain_load_pem says only "no chain": an unreadable file gets its own reason. */
    FILE *probe = fopen(path, "r");
    if (probe == NULL) {
        why = TLS_CERT_CANNOT_OPEN;
        ret = KL_ERR_CONFIG;
        goto exit;
    }
    fclose(probe);
    ret = crypto_chain_load_pem(&chain, path);
    if (ret != 0) {
        why = ret == KL_ERR_NO_MEMORY ? TLS_CERT_NO_MEMORY : TLS_CERT_NO_CHAIN;
        goto exit;
    }
    for (size_t i = 0; i < chain.n; i++) {
        /* Ownership of the DER buffers moves to f (both are freed by crypto_chain_dispose). */
        f->der[i] = chain.der[i];
        f->der_len[i] = chain.der_len[i];
        chain.der[i] = NULL;
    }
    f->n_der = chain.n;
    chain.n = 0;
    if (crypto_cert_key_type(f->der[0], f->der_len[0], &kt) != 0) {
        why = TLS_CERT_BAD_LEAF_KEY;
        ret = KL_ERR_CONFIG;
        goto exit;
    }
    f->n_schemes = crypto_key_type_schemes(kt, f->schemes, TLS_MAX_SCHEMES);
    if (f->n_schemes == 0) {
        why = TLS_CERT_UNSUPPORTED_KEY;
        ret = KL_ERR_CONFIG;
        goto exit;
    }
    snprintf(f->key_desc, sizeof(f->key_desc), "%s", key_desc(kt));
    if (crypto_cert_spki(f->der[0], f->der_len[0], f->spki, sizeof(f->spki), &f->spki_len) != 0 ||
        crypto_cert_dns_names(f->der[0], f->der_len[0], f->names, TLS_MAX_NAMES, &f->n_names) != 0 ||
        crypto_cert_not_after(f->der[0], f->der_len[0], &f->not_after) != 0) {
        why = TLS_CERT_BAD_LEAF_KEY;
        ret = KL_ERR_CONFIG;
        goto exit;
    }
exit:
    crypto_chain_dispose(&chain);
    if (ret != 0) {
        tls_cert_file_dispose(f);
    }
    *why_p = why;
    return ret;
}

void tls_cert_file_dispose(struct tls_cert_file *f)
{
    struct crypto_chain chain;
    memset(&chain, 0, sizeof(chain));
    /* The buffers came from crypto_chain_load_pem: hand them back to its dispose. */
    for (size_t i = 0; i < f->n_der && i < TLS_MAX_CHAIN; i++) {
        chain.der[i] = f->der[i];
        chain.der_len[i] = f->der_len[i];
    }
    chain.n = f->n_der;
    crypto_chain_dispose(&chain);
    memset(f, 0, sizeof(*f));
}

void tls_random(void *buf, size_t len)
{
    crypto_random(buf, len);
}

/* ---- client certificate anchors (mTLS) ---- */

/* The public handle wraps the engine's crypto object (only crypto.c sees X509_STORE). */
struct tls_client_ca {
    struct crypto_client_ca *cc;
};

int tls_client_ca_load(struct tls_client_ca **ca_p, enum tls_client_ca_error *why_p, const char *ca_path,
                       const char *crl_path, unsigned depth)
{
    enum crypto_client_ca_error why = CRYPTO_CLIENT_CA_OK;
    struct tls_client_ca *ca;
    int ret;

    *ca_p = NULL;
    *why_p = TLS_CLIENT_CA_OK;
    if ((ca = calloc(1, sizeof(*ca))) == NULL) {
        *why_p = TLS_CLIENT_CA_NO_MEMORY;
        return KL_ERR_NO_MEMORY;
    }
    ret = crypto_client_ca_load(&ca->cc, &why, ca_path, crl_path, depth);
    if (ret != 0) {
        free(ca);
        switch (why) {
        case CRYPTO_CLIENT_CA_CANNOT_OPEN:
            *why_p = TLS_CLIENT_CA_CANNOT_OPEN;
            break;
        case CRYPTO_CLIENT_CA_NO_CERT:
            *why_p = TLS_CLIENT_CA_NO_CERT;
            break;
        case CRYPTO_CLIENT_CA_CRL_OPEN:
            *why_p = TLS_CLIENT_CA_CRL_OPEN;
            break;
        case CRYPTO_CLIENT_CA_NO_CRL:
            *why_p = TLS_CLIENT_CA_NO_CRL;
            break;
        case CRYPTO_CLIENT_CA_OK:
        case CRYPTO_CLIENT_CA_NO_MEMORY:
        default:
            *why_p = TLS_CLIENT_CA_NO_MEMORY;
            break;
        }
        return ret;
    }
    *ca_p = ca;
    return 0;
}

void tls_client_ca_free(struct tls_client_ca *ca)
{
    if (ca == NULL)
        return;
    crypto_client_ca_free(ca->cc);
    free(ca);
}

const struct crypto_client_ca *tls_client_ca_crypto(const struct tls_client_ca *ca)
{
    return ca != NULL ? ca->cc : NULL;
}
