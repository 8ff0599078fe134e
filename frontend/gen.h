/*
 * gen.h - configuration generations and the certificates they carry.
 *
 * A generation (struct fe_gen) is everything a SIGHUP can change: the parsed config,
 * the loaded certificate chains (PEM in; DER chains, SAN names and the leaf's SPKI out)
 * and the tls_config made from them. Each connection holds a reference to the
 * generation it was accepted under, so a reload swaps the worker's pointer for new
 * connections while old ones keep theirs until they end.
 */
#ifndef KL_FE_GEN_H
#define KL_FE_GEN_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "kl_err.h"
#include "keyless.pb-c.h"
#include "tls/tls.h"

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

struct fe_gen {
    int refs;
    struct config *cfg; /* owned */
    struct fe_cert certs[CONFIG_MAX_CERTS];
    struct tls_cert tls_certs[CONFIG_MAX_CERTS];
    struct tls_config tls;
};

/*
 * Build a generation from cfg (taking ownership of cfg even on failure): load the chains.
 * err gets "keyless-frontend: FILE:LINE: [cert X] chain: reason" on failure.
 */
KL_MUST_CHECK int gen_new(struct fe_gen **gen_p, char *err, size_t err_len, struct config *cfg);
/*
 * Check every certificate against the signer's keys (a ListKeysResponse) and fill in
 * tls_cert.schemes = the key's schemes that the certificate's key type allows.
 * KL_ERR_CONFIG with one line in err naming the certificate file and the key.
 */
KL_MUST_CHECK int gen_check_keys(struct fe_gen *gen, char *err, size_t err_len,
                                 const Keyless__V1__ListKeysResponse *keys);
void gen_ref(struct fe_gen *gen);
void gen_unref(struct fe_gen *gen);

/* Ask the signer for its keys through a short-lived loop (start-up, before any fork). */
KL_MUST_CHECK int gen_check_signer(struct fe_gen *gen, char *err, size_t err_len);

#endif
