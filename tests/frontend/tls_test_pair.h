/*
 * tls_test_pair.h - the server engine (tls.h) and the test client (tls_test_client.h) in one
 * process, for the engine's unit tests: the test plays the signer with a libcrypto key, and
 * ttp_run pumps records between the two until the handshake is done or one side fails.
 * Kept out of tls_test_client.c, which uses only the engine's own primitives (and is built
 * into the fuzzers).
 */
#ifndef KL_TLS_TEST_PAIR_H
#define KL_TLS_TEST_PAIR_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include "kl_buf.h"
#include "tls.h"
#include "tls_test_client.h"

/*
 * Sign a CertificateVerify content (RFC 8446 4.4.3) with key: RSA-PSS/SHA-256 for an RSA key,
 * else ECDSA/SHA-256 (a P-256 key). *scheme_p gets the scheme; sig (capacity *sig_len_p) the
 * signature, *sig_len_p its length. 0 or KL_ERR_CRYPTO.
 */
int ttp_sign_content(EVP_PKEY *key, uint16_t *scheme_p, const uint8_t *content, size_t len, uint8_t *sig,
                     size_t *sig_len_p);

/* ttp_sign_content as a struct ttc_client_auth client_sign callback: arg is the client's EVP_PKEY. */
int ttp_client_sign(void *arg, uint16_t *scheme_p, const uint8_t *content, size_t len, uint8_t *sig, size_t *sig_len_p);

/* What one ttp_run handshake did. */
struct ttp_run {
    int server_err, client_err;
    int done;            /* both sides finished */
    int signed_;         /* the server asked for a signature (a full handshake) */
    char key_name[32];   /* the sign request's key name: the certificate the server chose */
    char sign_name[256]; /* the sign request's server_name */
    struct kl_buf app;   /* what the server delivered (early data, then application data) */
};

/*
 * Start t with ttc_start_ech(t, cc, pc, e) (pc and e may be NULL: no PSK, no ECH), with
 * ttc_set_client_auth(t, auth) when auth is not NULL (borrowed for the call), and pump
 * records between it and the server c, at most 8 rounds, until both are done or either side
 * returns an error (r->client_err, r->server_err; a sign request is answered with
 * ttp_sign_content(key)). The client reads the server's last flight (the tickets after its
 * Finished). r->app is initialised here: the caller disposes of it (kl_buf_dispose) and of t.
 */
void ttp_run(struct tls_conn *c, struct ttc *t, const struct ttc_config *cc, const struct ttc_psk_config *pc,
             const struct ttc_ech *e, const struct ttc_client_auth *auth, EVP_PKEY *key, struct ttp_run *r);

#endif
