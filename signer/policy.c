/*
 * policy.c - the TLS 1.3 CertificateVerify content, scheme names (from common/tls_ids)
 * and the sign decision.
 */
#include <string.h>
#include "policy.h"

/* RFC 8446 section 4.4.3: the context strings, without their terminating NUL. */
static const char context_server[] = "TLS 1.3, server CertificateVerify";
static const char context_client[] = "TLS 1.3, client CertificateVerify";

int policy_hash_len_ok(size_t hash_len)
{
    /* TLS 1.3 suites hash with SHA-256 or SHA-384; the transcript hash length follows the
     * suite, not the signature scheme, so both are valid for every scheme. */
    return hash_len == 32 || hash_len == 48;
}

int policy_build_content(uint8_t *out, size_t *out_len_p, int context, const uint8_t *hash, size_t hash_len)
{
    const char *ctx;

    if (out == NULL || out_len_p == NULL || hash == NULL || !policy_hash_len_ok(hash_len))
        return KL_ERR_INVALID;
    if (context == POLICY_CONTEXT_SERVER)
        ctx = context_server;
    else if (context == POLICY_CONTEXT_CLIENT)
        ctx = context_client;
    else
        return KL_ERR_INVALID;

    /* RFC 8446 section 4.4.3: "The digital signature is then computed over the
     * concatenation of: - A string that consists of octet 32 (0x20) repeated 64 times
     * - The context string - A single 0 byte which serves as the separator - The content
     * to be signed" (the transcript hash). */
    size_t ctx_len = sizeof(context_server) - 1, off = 0;
    memset(out, 0x20, 64);
    off += 64;
    memcpy(out + off, ctx, ctx_len);
    off += ctx_len;
    out[off++] = 0x00;
    memcpy(out + off, hash, hash_len);
    off += hash_len;
    *out_len_p = off;
    return 0;
}

const char *policy_scheme_name(uint16_t scheme)
{
    const struct tls_scheme_info *info = tls_scheme_by_id(scheme);
    return info != NULL ? info->name : NULL;
}

int policy_peer_allowed(const struct policy_key *k, uid_t uid, gid_t gid, uid_t self_uid)
{
    /* A frontend running as the signer's user could read the PIN file and the token
     * itself: only an explicit allow_same_uid lets that uid in (issue 13 §2). */
    if (uid == self_uid && !k->allow_same_uid) {
        return 0;
    }
    if (k->n_uids == 0 && k->n_gids == 0) {
        return uid == self_uid;
    }
    for (size_t i = 0; i < k->n_uids; i++) {
        if (k->uids[i] == uid) {
            return 1;
        }
    }
    for (size_t i = 0; i < k->n_gids; i++) {
        if (k->gids[i] == gid) {
            return 1;
        }
    }
    return 0;
}

Keyless__V1__Status policy_check_sign(const char **why_p, const struct policy_key *k,
                                      const struct policy_sign_request *req)
{
    int scheme_ok = 0;

    *why_p = NULL;
    if (req->context != POLICY_CONTEXT_SERVER && req->context != POLICY_CONTEXT_CLIENT) {
        *why_p = "context must be server or client";
        return KEYLESS__V1__STATUS__BAD_REQUEST;
    }
    for (size_t i = 0; i < k->n_schemes; i++) {
        scheme_ok |= k->schemes[i] == req->scheme;
    }
    if (!scheme_ok) {
        *why_p = "scheme not allowed for this key";
        return KEYLESS__V1__STATUS__SCHEME_NOT_ALLOWED;
    }
    if (!policy_hash_len_ok(req->hash_len)) {
        *why_p = "transcript hash must be 32 or 48 bytes";
        return KEYLESS__V1__STATUS__BAD_REQUEST;
    }
    if (!policy_peer_allowed(k, req->peer_uid, req->peer_gid, req->self_uid)) {
        *why_p = "peer uid/gid may not use this key";
        return KEYLESS__V1__STATUS__NOT_AUTHORIZED;
    }
    /* The client CertificateVerify context only where it is listed (issue 13 §5): a key
     * that serves TLS servers is not also a client-authentication oracle. */
    if (!(k->contexts & (req->context == POLICY_CONTEXT_SERVER ? POLICY_CTX_SERVER_BIT : POLICY_CTX_CLIENT_BIT))) {
        *why_p = "context not enabled for this key";
        return KEYLESS__V1__STATUS__NOT_AUTHORIZED;
    }
    return KEYLESS__V1__STATUS__OK;
}
