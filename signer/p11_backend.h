/*
 * p11_backend.h - the signer's only door to the HSM (PKCS#11 through p11-kit).
 *
 * This is the only module that includes p11-kit or PKCS#11 headers; everything it
 * exposes is plain C. The hashing and public-key work around the token is crypto.h's. One backend = one PKCS#11 module,
 * one token (found by the token label of the keys' RFC 7512 URIs), one login, and a pool of sessions: one per worker
 * thread, addressed by index, so a worker never waits for another's session.
 *
 * Instances ([hsm] module_instances, issue 15): a remoting module such as p11-kit-client.so
 * makes a new instance, with its own connection to its server, at every C_GetFunctionList
 * call, and its server answers one request at a time per connection. The backend can take
 * N instances of such a module and spread the session pool over them (session s on instance
 * s % N); each is initialised, logged in, and finds every key on its own (object handles are
 * per instance), and token trouble on one breaks and recovers that instance alone.
 *
 * Token trouble (session handle invalid or closed, user not logged in, device
 * removed or in error, token not present, stale object handles) fails the request
 * in hand with KL_ERR_HSM and marks its instance broken; the next p11_sign() there then
 * re-initialises the instance, reopens its sessions, logs in again (re-reading the
 * PIN file) and re-finds every key before it signs. No restart is needed.
 *
 * Re-login rules: a recovery that fails is retried no sooner than an exponentially
 * growing interval (100 ms doubling to 10 s, reset by a success). A token that refuses
 * the PIN (CKR_PIN_INCORRECT, CKR_PIN_LOCKED, CKR_PIN_EXPIRED, CKR_PIN_INVALID,
 * CKR_PIN_LEN_RANGE) is never asked again on its own: hardware tokens count failed logins
 * and lock, so one refusal stops the logins of every instance. One line names the PIN file,
 * and every signature on an instance that needs a login fails with KL_ERR_HSM until
 * an operator calls p11_backend_rearm() (keyless-signer: SIGHUP) or restarts the signer.
 * After a re-login each key's public key is compared with the one read at start; a key
 * that changed (or is gone) is refused with KL_ERR_HSM, one line, the others sign on.
 *
 * Mechanisms: p11_key_check_scheme() picks, per key and scheme, the raw mechanism
 * (CKM_ECDSA over the digest, CKM_RSA_PKCS_PSS with its parameters, CKM_EDDSA) or, on
 * tokens that offer only hash-and-sign, the combined one (CKM_ECDSA_SHA256/384,
 * CKM_SHA256/384/512_RSA_PKCS_PSS), which is then handed the whole signed content.
 */
#ifndef KL_P11_BACKEND_H
#define KL_P11_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include "kl_err.h"

#define P11_SIG_MAX 1024 /* largest signature produced: RSA up to 8192 bits, DER ECDSA */
#define P11_SPKI_MAX 2048
#define P11_INSTANCES_MAX 64 /* module instances of one backend ([hsm] module_instances) */

struct p11_backend;
struct p11_key;

enum p11_key_type {
    P11_KEY_RSA = 1,
    P11_KEY_EC = 2,
    P11_KEY_ED25519 = 3,
};

/* What p11_backend_new() failed on, so that a caller can name the config key to blame. */
enum p11_fail {
    P11_FAIL_NONE = 0,  /* it did not fail */
    P11_FAIL_INVALID,   /* bad arguments, or token_uri is not an RFC 7512 URI */
    P11_FAIL_NO_MEMORY, /* out of memory before the module was touched */
    P11_FAIL_MODULE,    /* the module cannot be loaded, or C_Initialize failed */
    P11_FAIL_TOKEN,     /* no (or more than one) matching token, no session, a login failure not due to the PIN */
    P11_FAIL_PIN,       /* the PIN file cannot be used (missing, not a regular file, readable by others,
                         * empty), or the token refused its PIN (CKR_PIN_INCORRECT, CKR_PIN_LOCKED,
                         * CKR_PIN_EXPIRED, CKR_PIN_INVALID, CKR_PIN_LEN_RANGE) */
    P11_FAIL_INSTANCES, /* several instances asked of a module that has one per process (it returns the
                         * same function list twice), or of a module named by module_name */
};

/*
 * Load the module and log in. Exactly one of module_path (a module file; p11-kit-proxy.so
 * is accepted too) and module_name (a module registered with p11-kit, e.g. "softhsm2").
 * token_uri is an RFC 7512 URI whose token attributes (token=, serial=, ...) select the
 * token. The PIN is read from pin_file (first line), used for C_Login and wiped.
 * sessions is the size of the session pool (one per worker). instances (1 to
 * P11_INSTANCES_MAX, at most sessions) is how many instances of the module to take: more
 * than one needs module_path, loaded with dlopen, whose C_GetFunctionList returns a new
 * function list at each call; the sessions are spread over them (session s on s % instances).
 * On failure a one-line reason is written to err (never containing the PIN) and, if fail_p
 * is not NULL, what failed to *fail_p (P11_FAIL_NONE on success).
 */
KL_MUST_CHECK int p11_backend_new(struct p11_backend **be_p, enum p11_fail *fail_p, char *err, size_t err_len,
                                  const char *module_path, const char *module_name, const char *token_uri,
                                  const char *pin_file, unsigned sessions, unsigned instances);

/* Log out, close the sessions, C_Finalize and unload. NULL is fine. */
void p11_backend_free(struct p11_backend *be);

/*
 * Find the private key named by uri (and its public key: same CKA_ID, else same label)
 * on the backend's token, read its type and public key. With several instances it is found
 * on each (object handles are per instance) and must show the same public key on each. The key belongs to be and is
 * freed with it. KL_ERR_NOT_FOUND / KL_ERR_HSM / KL_ERR_CONFIG with a reason in err.
 * A key with CKA_ALWAYS_AUTHENTICATE (a PIN per signature) is refused (KL_ERR_CONFIG).
 */
KL_MUST_CHECK int p11_key_find(struct p11_backend *be, struct p11_key **key_p, char *err, size_t err_len,
                               const char *uri);

/*
 * Forget a key found by p11_key_find() (issue 14: a configuration reload dropped or
 * replaced it) and free it. No signature may be using it: the caller waits until the
 * requests that hold it are answered. NULL is fine.
 */
void p11_key_release(struct p11_backend *be, struct p11_key *key);

/*
 * Can key sign with this TLS SignatureScheme, and how? Checks the key type and curve
 * against the scheme, CKA_SIGN and the RSA size, then chooses the mechanism p11_sign()
 * will use for it: the raw one if the key may use it, else the hash-and-sign one. "May":
 * in CKA_ALLOWED_MECHANISMS when the token reports a non-empty list, the token lists it
 * with CKF_SIGN (C_GetMechanismInfo), and, without a list and where there is a choice
 * (not Ed25519), a test signature over a fixed probe content succeeds (RSA: and verifies). Call it once per scheme at
 * start, before signing starts (it writes key). 0 if the key can sign, KL_ERR_DENIED with the reason in err (naming
 * every mechanism tried) if neither can, KL_ERR_HSM on token trouble. With several instances
 * the probe runs on the first: they are one token.
 */
KL_MUST_CHECK int p11_key_check_scheme(struct p11_backend *be, struct p11_key *key, char *err, size_t err_len,
                                       uint16_t scheme);

/* The mechanism p11_key_check_scheme() chose for scheme ("CKM_ECDSA", "CKM_ECDSA_SHA256",
 * ...; a static string), or NULL if it was not checked (p11_sign() then uses the raw one). */
const char *p11_key_mechanism(const struct p11_key *key, uint16_t scheme);

/*
 * What the key allows beyond signing, for the start-up check: 0 if it is neither
 * extractable nor able to decrypt; KL_ERR_DENIED with what it allows in err
 * ("CKA_EXTRACTABLE", "CKA_DECRYPT", "CKA_UNWRAP") otherwise.
 */
KL_MUST_CHECK int p11_key_hygiene(const struct p11_key *key, char *err, size_t err_len);

/* The key's SubjectPublicKeyInfo (DER), borrowed from key. */
const uint8_t *p11_key_spki(const struct p11_key *key, size_t *len_p);
/* The SHA-256 of that SPKI (CRYPTO_SHA256_LEN bytes), computed once when the key was found;
 * NULL when the key has no SPKI. */
const uint8_t *p11_key_spki_sha256(const struct p11_key *key);
enum p11_key_type p11_key_type(const struct p11_key *key);

/*
 * Sign content (the whole RFC 8446 section 4.4.3 content) on session slot session_index
 * with scheme, writing the TLS CertificateVerify signature to sig (*sig_len_p in: capacity,
 * out: length). With a raw mechanism ECDSA and RSA-PSS hash content here; with a
 * hash-and-sign one (see p11_key_check_scheme) the token gets content; Ed25519 signs
 * content itself. A CKR_OPERATION_ACTIVE left on the session by an earlier failed C_Sign
 * is cleared (the operation cancelled, or the session replaced) and the sign retried once. RSA signatures are verified
 * against the public key before they are returned. KL_ERR_HSM on token trouble (see the top of this file),
 * KL_ERR_CRYPTO if a signature does not verify, KL_ERR_INVALID on misuse. Thread-safe across distinct session indices.
 */
KL_MUST_CHECK int p11_sign(struct p11_backend *be, uint8_t *sig, size_t *sig_len_p, unsigned session_index,
                           const struct p11_key *key, uint16_t scheme, const uint8_t *content, size_t content_len);

/*
 * The raw C_SignInit+C_Sign for the benchmark: same session pool, same mechanism as
 * p11_sign, but no hashing, DER encoding or verification around it. digest must already
 * be the hash (or the content for Ed25519).
 */
KL_MUST_CHECK int p11_sign_raw(struct p11_backend *be, uint8_t *sig, size_t *sig_len_p, unsigned session_index,
                               const struct p11_key *key, uint16_t scheme, const uint8_t *digest, size_t digest_len);

/*
 * Secret keys (issue 11: the ticket root). A secret key is found by its CKA_LABEL on the
 * backend's token and used only for HMAC-SHA256 inside the token; its value never leaves it.
 * It belongs to the backend (freed with it) and is re-found after a recovery, like the
 * private keys.
 */
struct p11_secret;

#define P11_HMAC_SHA256_LEN 32

/*
 * Find the one secret key (CKO_SECRET_KEY) labelled label and check that it is fit to be
 * a root that never leaves the token: CKA_SIGN true, CKA_SENSITIVE true, CKA_EXTRACTABLE
 * false, type CKK_GENERIC_SECRET or CKK_SHA256_HMAC, and that the token offers
 * CKM_SHA256_HMAC. KL_ERR_NOT_FOUND (no such key, or several), KL_ERR_CONFIG (unfit),
 * KL_ERR_HSM, KL_ERR_NO_MEMORY, with a one-line reason in err.
 */
KL_MUST_CHECK int p11_secret_find(struct p11_backend *be, struct p11_secret **key_p, char *err, size_t err_len,
                                  const char *label);

/* Forget a secret found by p11_secret_find() and free it, as p11_key_release(). NULL is fine. */
void p11_secret_release(struct p11_backend *be, struct p11_secret *key);

/*
 * out = HMAC-SHA256(key, data), computed by the token (C_Sign with CKM_SHA256_HMAC) on
 * session slot session_index. Token trouble is handled as for p11_sign (KL_ERR_HSM, the
 * backend recovers on the next call); KL_ERR_INVALID on misuse. On failure out is wiped.
 * Thread-safe across distinct session indices.
 */
KL_MUST_CHECK int p11_hmac_sha256(struct p11_backend *be, uint8_t out[P11_HMAC_SHA256_LEN], unsigned session_index,
                                  const struct p11_secret *key, const uint8_t *data, size_t data_len);

/*
 * What a sign request would do first: when the token is in trouble, or SIGHUP re-armed the login,
 * re-initialise and log in now (within the back-off and the refused-PIN stop). A SIGHUP's reload
 * calls it before it probes the keys, so that the reload after a PIN fix checks a logged-in token.
 */
void p11_backend_recover_if_needed(struct p11_backend *be);

/* How many times an instance of the backend has recovered from token trouble (for logs and tests). */
unsigned p11_backend_recoveries(struct p11_backend *be);

/* How many times C_Login was called, at start and in recoveries (for logs and tests). */
unsigned p11_backend_logins(struct p11_backend *be);

/* How many module instances the backend has (the instances given to p11_backend_new). */
unsigned p11_backend_instances(const struct p11_backend *be);

/*
 * An operator acted: allow one more login after the token refused the PIN, and retry a
 * failing recovery without waiting for the back-off, on every instance. Only bumps an
 * atomic counter (the next p11_sign() on each instance acts on it): async-signal-safe, for
 * a SIGHUP handler.
 */
void p11_backend_rearm(struct p11_backend *be);

#endif
