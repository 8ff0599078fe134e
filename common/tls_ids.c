#include <stddef.h>
#include <string.h>
#include <strings.h>
#include "tls_ids.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const struct tls_suite_info tls_suites[] = {
    {TLS_AES_128_GCM_SHA256, "TLS_AES_128_GCM_SHA256", TLS_HASH_SHA256, 16},
    {TLS_AES_256_GCM_SHA384, "TLS_AES_256_GCM_SHA384", TLS_HASH_SHA384, 32},
    {TLS_CHACHA20_POLY1305_SHA256, "TLS_CHACHA20_POLY1305_SHA256", TLS_HASH_SHA256, 32},
};
const size_t tls_n_suites = COUNT(tls_suites);

/*
 * Server preference: the fast elliptic curves first, then X448 and P-521 (stronger, slower),
 * then the finite-field groups, cheapest first (a client that offers only those still
 * connects, as with OpenSSL and GnuTLS servers).
 */
const struct tls_group_info tls_groups[] = {
    {TLS_GROUP_X25519, "x25519", {NULL, NULL}, 1},
    {TLS_GROUP_SECP256R1, "secp256r1", {"P-256", "prime256v1"}, 1},
    {TLS_GROUP_SECP384R1, "secp384r1", {"P-384", NULL}, 1},
    {TLS_GROUP_X448, "x448", {NULL, NULL}, 1},
    {TLS_GROUP_SECP521R1, "secp521r1", {"P-521", NULL}, 1},
    {TLS_GROUP_FFDHE2048, "ffdhe2048", {NULL, NULL}, 1},
    {TLS_GROUP_FFDHE3072, "ffdhe3072", {NULL, NULL}, 1},
    {TLS_GROUP_FFDHE4096, "ffdhe4096", {NULL, NULL}, 1},
    {TLS_GROUP_FFDHE6144, "ffdhe6144", {NULL, NULL}, 0},
    {TLS_GROUP_FFDHE8192, "ffdhe8192", {NULL, NULL}, 0},
};
const size_t tls_n_groups = COUNT(tls_groups);
_Static_assert(COUNT(tls_groups) <= TLS_MAX_GROUPS, "TLS_MAX_GROUPS holds every group");

const struct tls_scheme_info tls_schemes[] = {
    {TLS_SIG_ECDSA_SECP256R1_SHA256, "ecdsa_secp256r1_sha256", TLS_KEY_EC_P256, TLS_HASH_SHA256},
    {TLS_SIG_ECDSA_SECP384R1_SHA384, "ecdsa_secp384r1_sha384", TLS_KEY_EC_P384, TLS_HASH_SHA384},
    {TLS_SIG_RSA_PSS_RSAE_SHA256, "rsa_pss_rsae_sha256", TLS_KEY_RSA, TLS_HASH_SHA256},
    {TLS_SIG_RSA_PSS_RSAE_SHA384, "rsa_pss_rsae_sha384", TLS_KEY_RSA, TLS_HASH_SHA384},
    {TLS_SIG_RSA_PSS_RSAE_SHA512, "rsa_pss_rsae_sha512", TLS_KEY_RSA, TLS_HASH_SHA512},
    {TLS_SIG_ED25519, "ed25519", TLS_KEY_ED25519, TLS_HASH_NONE},
};
const size_t tls_n_schemes = COUNT(tls_schemes);

const struct tls_suite_info *tls_suite_by_id(uint16_t id)
{
    for (size_t i = 0; i < tls_n_suites; i++) {
        if (tls_suites[i].id == id) {
            return &tls_suites[i];
        }
    }
    return NULL;
}

const struct tls_group_info *tls_group_by_id(uint16_t id)
{
    for (size_t i = 0; i < tls_n_groups; i++) {
        if (tls_groups[i].id == id) {
            return &tls_groups[i];
        }
    }
    return NULL;
}

const struct tls_scheme_info *tls_scheme_by_id(uint16_t id)
{
    for (size_t i = 0; i < tls_n_schemes; i++) {
        if (tls_schemes[i].id == id) {
            return &tls_schemes[i];
        }
    }
    return NULL;
}

const struct tls_suite_info *tls_suite_by_name(const char *name)
{
    for (size_t i = 0; name != NULL && i < tls_n_suites; i++) {
        if (strcasecmp(tls_suites[i].name, name) == 0) {
            return &tls_suites[i];
        }
    }
    return NULL;
}

const struct tls_group_info *tls_group_by_name(const char *name)
{
    for (size_t i = 0; name != NULL && i < tls_n_groups; i++) {
        const struct tls_group_info *g = &tls_groups[i];
        if (strcasecmp(g->name, name) == 0) {
            return g;
        }
        for (size_t a = 0; a < COUNT(g->alias) && g->alias[a] != NULL; a++) {
            if (strcasecmp(g->alias[a], name) == 0) {
                return g;
            }
        }
    }
    return NULL;
}

const struct tls_scheme_info *tls_scheme_by_name(const char *name)
{
    for (size_t i = 0; name != NULL && i < tls_n_schemes; i++) {
        if (strcasecmp(tls_schemes[i].name, name) == 0) {
            return &tls_schemes[i];
        }
    }
    return NULL;
}

const struct tls_scheme_info *tls_scheme_parse(const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        unsigned v = 0;
        if (strlen(s) != 6 || strspn(s + 2, "0123456789abcdefABCDEF") != 4) {
            return NULL;
        }
        for (size_t i = 2; i < 6; i++) {
            unsigned char ch = (unsigned char)s[i];
            v = v << 4 | (unsigned)(ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
        }
        return tls_scheme_by_id((uint16_t)v);
    }
    return tls_scheme_by_name(s);
}

size_t tls_hash_len(enum tls_hash hash)
{
    switch (hash) {
    case TLS_HASH_SHA256:
        return 32;
    case TLS_HASH_SHA384:
        return 48;
    case TLS_HASH_SHA512:
        return 64;
    case TLS_HASH_NONE:
    default:
        return 0;
    }
}
