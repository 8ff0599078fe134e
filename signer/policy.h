/*
 * policy.h - the signer's narrow oracle: TLS 1.3 CertificateVerify content, the signature
 * schemes the signer knows, and the one decision whether a sign request may be served.
 *
 * The signer never signs bytes it did not build itself. policy_build_content() is the
 * only way content to be signed comes into existence: RFC 8446 section 4.4.3,
 *   64 x 0x20 || context string || 0x00 || transcript hash
 * with the hash length limited to the TLS 1.3 cipher suites' hashes (32 or 48 bytes).
 * A compromised frontend therefore cannot obtain a signature over a certificate, a
 * CSR, a TLS 1.2 ServerKeyExchange or any digest of its choosing.
 *
 * Scheme code points and names come from common/tls_ids.h (TLS_SIG_*, tls_schemes[]):
 * the signer supports exactly the schemes listed there.
 *
 * No function here parses wire bytes or touches connection state (STYLE rule 8): the
 * server decodes the request and hands the fields in.
 */
#ifndef SIGNER_POLICY_H
#define SIGNER_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "keyless.pb-c.h"
#include "kl_err.h"
#include "tls_ids.h"

/* 64 spaces, the longest context string (33 bytes), the 0x00 separator, a SHA-384 hash. */
#define POLICY_MAX_CONTENT (64 + 33 + 1 + 48)

/* Values of the RPC's Context enum (keyless.proto). */
#define POLICY_CONTEXT_SERVER KEYLESS__V1__CONTEXT__SERVER_CERTIFICATE_VERIFY
#define POLICY_CONTEXT_CLIENT KEYLESS__V1__CONTEXT__CLIENT_CERTIFICATE_VERIFY

/*
 * Build the CertificateVerify content for context (POLICY_CONTEXT_SERVER or _CLIENT) and
 * a transcript hash of 32 or 48 bytes into out, which must hold POLICY_MAX_CONTENT bytes.
 * *out_len_p receives the content length (130 or 146 bytes).
 * Errors: KL_ERR_INVALID for any other context, any other hash length or a NULL pointer;
 * out is left untouched on error.
 */
KL_MUST_CHECK int policy_build_content(uint8_t *out, size_t *out_len_p, int context, const uint8_t *hash,
                                       size_t hash_len);

/* 1 if hash_len is a TLS 1.3 transcript hash length (32 or 48), else 0. */
int policy_hash_len_ok(size_t hash_len);

/* The IANA name of scheme, or NULL if it is not one of the supported schemes. */
const char *policy_scheme_name(uint16_t scheme);

/* policy_key.contexts bits (the [key NAME] contexts list). */
#define POLICY_CTX_SERVER_BIT 0x1u
#define POLICY_CTX_CLIENT_BIT 0x2u

/*
 * Who may use a key and how: the parts of a [key NAME] section the policy reads (borrowed
 * from the config). A peer whose uid is the signer's own (self_uid) is refused unless
 * allow_same_uid is set (issue 13 §2: the frontend must not be the user that reads the
 * PIN file); with it, empty uid and gid lists mean "only the signer's own uid".
 * contexts: the CertificateVerify contexts the key signs (POLICY_CTX_*_BIT).
 */
struct policy_key {
    const uint16_t *schemes;
    size_t n_schemes;
    const uid_t *uids;
    size_t n_uids;
    const gid_t *gids;
    size_t n_gids;
    unsigned contexts;
    int allow_same_uid;
};

/* 1 if a peer with uid/gid (from SO_PEERCRED) may use key k, else 0. self_uid: the
 * signer's own (real) uid, after the privilege drop. */
int policy_peer_allowed(const struct policy_key *k, uid_t uid, gid_t gid, uid_t self_uid);

/* The fields of a sign request the decision depends on, as decoded from the wire. */
struct policy_sign_request {
    uid_t peer_uid, peer_gid; /* SO_PEERCRED of the connection */
    uid_t self_uid;           /* the signer's real uid, see policy_peer_allowed() */
    uint32_t scheme;          /* as sent: may be out of uint16_t range */
    int context;              /* the RPC Context value */
    size_t hash_len;          /* transcript hash length */
};

/*
 * May the request be signed with key k? KEYLESS__V1__STATUS__OK, or the refusal status
 * with *why_p set to a static reason (the text audited and sent back):
 *   BAD_REQUEST          "context must be server or client"
 *   SCHEME_NOT_ALLOWED   "scheme not allowed for this key"
 *   BAD_REQUEST          "transcript hash must be 32 or 48 bytes"
 *   NOT_AUTHORIZED       "peer uid/gid may not use this key"
 *   NOT_AUTHORIZED       "context not enabled for this key" (not in its contexts)
 * checked in that order (the first that fails is reported). *why_p is NULL on OK.
 * Rate limits and queue space are the server's business, after this.
 */
Keyless__V1__Status policy_check_sign(const char **why_p, const struct policy_key *k,
                                      const struct policy_sign_request *req);

#endif
