/*
 * certs.h - certificate chains for the frontend: PEM files in, DER chains, SAN names
 * and the leaf's public key (SPKI DER) out. The only frontend file outside tls/ that
 * uses libcrypto, and only for parsing public data.
 */
#ifndef KL_FE_CERTS_H
#define KL_FE_CERTS_H

#include <stddef.h>
#include <stdint.h>
#include "tls/tls.h"
#include "kl_err.h"

struct fe_cert {
    uint8_t *der[TLS_MAX_CHAIN];
    size_t der_len[TLS_MAX_CHAIN];
    size_t n_der;
    char *names[TLS_MAX_NAMES];
    size_t n_names;
    uint8_t *spki; /* leaf SubjectPublicKeyInfo, DER */
    size_t spki_len;
    uint16_t allowed[TLS_MAX_SCHEMES]; /* schemes the leaf's key type can use, preference order */
    size_t n_allowed;
    char key_desc[32]; /* "ECDSA P-256", "RSA 2048", ... for logs */
};

/* Load a PEM chain (leaf first). On failure, a reason (no file name) in why. */
KL_MUST_CHECK int certs_load(struct fe_cert *c, char *why, size_t why_len, const char *path);
void certs_dispose(struct fe_cert *c);

#endif
