/*
 * policy.c - the TLS 1.3 CertificateVerify content and the supported signature schemes.
 */
#include <string.h>
#include <strings.h>
#include <openssl/obj_mac.h>
#include "policy.h"

const uint16_t policy_schemes[POLICY_NUM_SCHEMES] = {
    POLICY_SCHEME_ECDSA_SECP256R1_SHA256, POLICY_SCHEME_ECDSA_SECP384R1_SHA384, POLICY_SCHEME_RSA_PSS_RSAE_SHA256,
    POLICY_SCHEME_RSA_PSS_RSAE_SHA384,    POLICY_SCHEME_RSA_PSS_RSAE_SHA512,    POLICY_SCHEME_ED25519,
};

static const struct {
    uint16_t code;
    const char *name;
    int hash_nid;
} scheme_table[POLICY_NUM_SCHEMES] = {
    {POLICY_SCHEME_ECDSA_SECP256R1_SHA256, "ecdsa_secp256r1_sha256", NID_sha256},
    {POLICY_SCHEME_ECDSA_SECP384R1_SHA384, "ecdsa_secp384r1_sha384", NID_sha384},
    {POLICY_SCHEME_RSA_PSS_RSAE_SHA256, "rsa_pss_rsae_sha256", NID_sha256},
    {POLICY_SCHEME_RSA_PSS_RSAE_SHA384, "rsa_pss_rsae_sha384", NID_sha384},
    {POLICY_SCHEME_RSA_PSS_RSAE_SHA512, "rsa_pss_rsae_sha512", NID_sha512},
    /* Ed25519 signs the whole content (PureEdDSA, RFC 8032), no prehash. */
    {POLICY_SCHEME_ED25519, "ed25519", 0},
};

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

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int policy_scheme_from_name(uint16_t *scheme_p, const char *name)
{
    if (scheme_p == NULL || name == NULL)
        return KL_ERR_INVALID;
    if (name[0] == '0' && (name[1] == 'x' || name[1] == 'X')) {
        unsigned v = 0;
        size_t i;
        for (i = 2; i < 6; i++) {
            int d = hex_digit(name[i]);
            if (d < 0)
                return KL_ERR_NOT_FOUND;
            v = v << 4 | (unsigned)d;
        }
        if (name[i] != '\0' || policy_scheme_name((uint16_t)v) == NULL)
            return KL_ERR_NOT_FOUND;
        *scheme_p = (uint16_t)v;
        return 0;
    }
    for (size_t i = 0; i < POLICY_NUM_SCHEMES; i++) {
        if (strcasecmp(name, scheme_table[i].name) == 0) {
            *scheme_p = scheme_table[i].code;
            return 0;
        }
    }
    return KL_ERR_NOT_FOUND;
}

const char *policy_scheme_name(uint16_t scheme)
{
    for (size_t i = 0; i < POLICY_NUM_SCHEMES; i++) {
        if (scheme_table[i].code == scheme)
            return scheme_table[i].name;
    }
    return NULL;
}

int policy_scheme_hash(uint16_t scheme)
{
    for (size_t i = 0; i < POLICY_NUM_SCHEMES; i++) {
        if (scheme_table[i].code == scheme)
            return scheme_table[i].hash_nid;
    }
    return -1;
}
