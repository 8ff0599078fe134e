/*
 * gen.h - configuration generations and the certificates they carry.
 *
 * A generation (struct fe_gen) is everything a SIGHUP can change: the parsed config,
 * the loaded certificate chains (PEM in; DER chains, SAN names and the leaf's SPKI out,
 * read by the engine's tls_cert_file_load, so this file never touches libcrypto) and the
 * tls_config made from them. Each connection holds a reference to the generation it was
 * accepted under, so a reload swaps the worker's pointer for new connections while old
 * ones keep theirs until they end.
 */
#ifndef KL_FE_GEN_H
#define KL_FE_GEN_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "kl_err.h"
#include "keyless.pb-c.h"
#include "tls/tls.h"

/*
 * Load the PEM chain at path (tls_cert_file_load). On failure, a reason (no file name)
 * in why: the e2e tests and operators read these words.
 */
KL_MUST_CHECK int certs_load(struct tls_cert_file *c, char *why, size_t why_len, const char *path);

struct fe_gen {
    int refs;
    struct config *cfg;                           /* owned */
    struct tls_cert_file certs[CONFIG_MAX_CERTS]; /* loaded chains, backing tls_certs */
    struct tls_cert tls_certs[CONFIG_MAX_CERTS];
    struct tls_config tls;
    /* Per listener: tls plus that listener's client authentication (mTLS) and its CA bundle. */
    struct tls_config listener_tls[CONFIG_MAX_LISTENERS];
    struct tls_client_ca *client_ca[CONFIG_MAX_LISTENERS]; /* owned; NULL when client_auth is none */
};

/*
 * Build a generation from cfg (taking ownership of cfg even on failure): load the chains.
 * err gets "FILE:LINE: [cert X] chain: reason" or "FILE:LINE: [listener X] client_ca: reason" on failure.
 */
KL_MUST_CHECK int gen_new(struct fe_gen **gen_p, char *err, size_t err_len, struct config *cfg);
/*
 * The engine configuration of a listener (an index into cfg->listeners; past them, the
 * shared gen->tls): gen->tls with that listener's client authentication. Valid as long as gen.
 */
const struct tls_config *gen_tls(struct fe_gen *gen, size_t listener);

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
