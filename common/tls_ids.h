/*
 * tls_ids.h - the one table of TLS 1.3 code points both processes use: cipher suites,
 * key exchange groups and signature schemes (RFC 8446 section 4.2.3, 4.2.7, B.4), with
 * the names the config files accept, each scheme's key type and hash.
 *
 * Only what keyless implements is listed; a code point missing here is unknown to both
 * processes. Lookups are linear over a handful of entries and return NULL when not found.
 */
#ifndef KL_TLS_IDS_H
#define KL_TLS_IDS_H

#include <stddef.h>
#include <stdint.h>

/* Cipher suites (RFC 8446 B.4). */
#define TLS_AES_128_GCM_SHA256 0x1301
#define TLS_AES_256_GCM_SHA384 0x1302
#define TLS_CHACHA20_POLY1305_SHA256 0x1303

/* Named groups (RFC 8446 section 4.2.7; the finite-field ones are RFC 7919's). */
#define TLS_GROUP_SECP256R1 0x0017
#define TLS_GROUP_SECP384R1 0x0018
#define TLS_GROUP_SECP521R1 0x0019
#define TLS_GROUP_X25519 0x001d
#define TLS_GROUP_X448 0x001e
#define TLS_GROUP_FFDHE2048 0x0100
#define TLS_GROUP_FFDHE3072 0x0101
#define TLS_GROUP_FFDHE4096 0x0102
#define TLS_GROUP_FFDHE6144 0x0103
#define TLS_GROUP_FFDHE8192 0x0104

/* How many groups keyless implements: a preference list without repeats fits in this many. */
#define TLS_MAX_GROUPS 10

/* Signature schemes (RFC 8446 section 4.2.3). */
#define TLS_SIG_ECDSA_SECP256R1_SHA256 0x0403
#define TLS_SIG_ECDSA_SECP384R1_SHA384 0x0503
#define TLS_SIG_RSA_PSS_RSAE_SHA256 0x0804
#define TLS_SIG_RSA_PSS_RSAE_SHA384 0x0805
#define TLS_SIG_RSA_PSS_RSAE_SHA512 0x0806
#define TLS_SIG_ED25519 0x0807

/* Hash functions named by suites and schemes. */
enum tls_hash { TLS_HASH_NONE = 0, TLS_HASH_SHA256, TLS_HASH_SHA384, TLS_HASH_SHA512 };

/* The kind of key a signature scheme needs. */
enum tls_key_type { TLS_KEY_NONE = 0, TLS_KEY_EC_P256, TLS_KEY_EC_P384, TLS_KEY_RSA, TLS_KEY_ED25519 };

struct tls_suite_info {
    uint16_t id;
    const char *name; /* IANA name, e.g. "TLS_AES_128_GCM_SHA256" */
    enum tls_hash hash;
    size_t key_len; /* AEAD key bytes */
};

struct tls_group_info {
    uint16_t id;
    const char *name;     /* IANA name, e.g. "x25519", "secp256r1", "ffdhe2048" */
    const char *alias[2]; /* other names the config accepts ("P-256", "prime256v1"), NULL-padded */
    /*
     * 1 if the group is in the default server list. ffdhe6144 and ffdhe8192 are not: each
     * handshake on them costs the server several milliseconds of CPU that any client can ask
     * for (docs/FRONTEND.md), so they must be named in [tls] groups to be offered.
     */
    int by_default;
};

struct tls_scheme_info {
    uint16_t id;
    const char *name; /* IANA name, e.g. "ecdsa_secp256r1_sha256" */
    enum tls_key_type key;
    enum tls_hash hash; /* TLS_HASH_NONE for Ed25519 (PureEdDSA) */
};

/* The tables, in preference order, and their sizes. */
extern const struct tls_suite_info tls_suites[];
extern const size_t tls_n_suites;
extern const struct tls_group_info tls_groups[];
extern const size_t tls_n_groups;
extern const struct tls_scheme_info tls_schemes[];
extern const size_t tls_n_schemes;

/* Look up by code point. NULL if keyless does not implement it. */
const struct tls_suite_info *tls_suite_by_id(uint16_t id);
const struct tls_group_info *tls_group_by_id(uint16_t id);
const struct tls_scheme_info *tls_scheme_by_id(uint16_t id);

/* Look up by name, case-insensitively (suites and schemes by IANA name, groups also by alias). */
const struct tls_suite_info *tls_suite_by_name(const char *name);
const struct tls_group_info *tls_group_by_name(const char *name);
const struct tls_scheme_info *tls_scheme_by_name(const char *name);

/*
 * A scheme as the config files write it: its IANA name (case-insensitive) or its code
 * point as "0x" and exactly four hex digits ("0x0403"). NULL for anything else, for a
 * scheme keyless does not implement, and for NULL.
 */
const struct tls_scheme_info *tls_scheme_parse(const char *s);

/* Output length in bytes of a hash (32, 48, 64), 0 for TLS_HASH_NONE. */
size_t tls_hash_len(enum tls_hash hash);

#endif
