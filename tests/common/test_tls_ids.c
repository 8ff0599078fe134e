/* Unit tests for common/tls_ids.c: every table entry is found by its code point and by its
 * name (any case), group aliases resolve, unknown or near-miss ids and names give NULL,
 * and each entry's hash, hash length, key type and key length match its RFC 8446 name. */
#include <ctype.h>
#include "kl_test.h"
#include "tls_ids.h"

static void upper(char *dst, const char *src, size_t cap)
{
    size_t i = 0;
    for (; src[i] != '\0' && i + 1 < cap; i++)
        dst[i] = (char)toupper((unsigned char)src[i]);
    dst[i] = '\0';
}

static void test_suites(void)
{
    static const uint16_t want[] = {0x1301, 0x1302, 0x1303};
    is_int((int)tls_n_suites, 3, "3 cipher suites");
    int bad = 0;
    for (size_t i = 0; i < tls_n_suites; i++) {
        const struct tls_suite_info *s = &tls_suites[i];
        char up[64], low[64];
        upper(up, s->name, sizeof(up));
        for (size_t j = 0; j <= strlen(up); j++)
            low[j] = (char)tolower((unsigned char)up[j]);
        if (s->id != want[i] || tls_suite_by_id(s->id) != s || tls_suite_by_name(s->name) != s ||
            tls_suite_by_name(up) != s || tls_suite_by_name(low) != s)
            bad++;
        enum tls_hash h = strstr(s->name, "SHA384") ? TLS_HASH_SHA384 : TLS_HASH_SHA256;
        size_t key = strstr(s->name, "AES_128") ? 16 : 32;
        if (s->hash != h || s->key_len != key)
            bad++;
    }
    is_int(bad, 0, "each suite: RFC 8446 B.4 code point, found by id and name (any case), hash and key length");
    ok(tls_suite_by_id(TLS_AES_128_GCM_SHA256)->key_len == 16, "AES-128-GCM: 16-byte key");
    ok(tls_suite_by_id(TLS_AES_256_GCM_SHA384)->hash == TLS_HASH_SHA384, "AES-256-GCM: SHA-384");
    ok(tls_suite_by_id(0x1304) == NULL, "TLS_AES_128_CCM_SHA256 (0x1304): not implemented, NULL");
    ok(tls_suite_by_id(0x1305) == NULL, "0x1305: NULL");
    ok(tls_suite_by_id(0) == NULL, "0: NULL");
    ok(tls_suite_by_id(0xc02f) == NULL, "a TLS 1.2 suite: NULL");
    ok(tls_suite_by_name("TLS_AES_128_CCM_SHA256") == NULL, "an unimplemented suite name: NULL");
    ok(tls_suite_by_name("TLS_AES_128_GCM") == NULL, "a prefix of a name: NULL");
    ok(tls_suite_by_name("TLS_AES_128_GCM_SHA256 ") == NULL, "a name with a trailing space: NULL");
    ok(tls_suite_by_name("") == NULL, "an empty name: NULL");
    ok(tls_suite_by_name(NULL) == NULL, "NULL: NULL");
}

static void test_groups(void)
{
    is_int((int)tls_n_groups, 10, "10 groups");
    ok(tls_n_groups <= TLS_MAX_GROUPS, "TLS_MAX_GROUPS holds them all");
    int bad = 0;
    for (size_t i = 0; i < tls_n_groups; i++) {
        const struct tls_group_info *g = &tls_groups[i];
        char up[64];
        upper(up, g->name, sizeof(up));
        if (tls_group_by_id(g->id) != g || tls_group_by_name(g->name) != g || tls_group_by_name(up) != g)
            bad++;
        for (size_t a = 0; a < 2 && g->alias[a] != NULL; a++) {
            upper(up, g->alias[a], sizeof(up));
            if (tls_group_by_name(g->alias[a]) != g || tls_group_by_name(up) != g)
                bad++;
        }
    }
    is_int(bad, 0, "each group: found by id, by name and by each alias (any case)");
    ok(tls_group_by_id(0x001d) == tls_group_by_name("x25519"), "x25519 is 0x001d");
    ok(tls_group_by_id(0x0017) == tls_group_by_name("P-256"), "P-256 is secp256r1 (0x0017)");
    ok(tls_group_by_name("prime256v1") == tls_group_by_name("secp256r1"), "prime256v1 is secp256r1");
    ok(tls_group_by_id(0x0018) == tls_group_by_name("p-384"), "p-384 is secp384r1 (0x0018)");
    /* The code points of RFC 8446 4.2.7 and RFC 7919, and their names. */
    static const struct {
        uint16_t id;
        const char *name;
        int by_default;
    } want[] = {
        {0x001d, "X25519", 1},    {0x0017, "prime256v1", 1}, {0x0018, "P-384", 1},     {0x001e, "X448", 1},
        {0x0019, "P-521", 1},     {0x0100, "ffdhe2048", 1},  {0x0101, "FFDHE3072", 1}, {0x0102, "ffdhe4096", 1},
        {0x0103, "ffdhe6144", 0}, {0x0104, "ffdhe8192", 0},
    };
    bad = 0;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct tls_group_info *g = tls_group_by_id(want[i].id);
        if (g == NULL || g != tls_group_by_name(want[i].name) || g != &tls_groups[i] ||
            g->by_default != want[i].by_default)
            bad++;
    }
    is_int(bad, 0, "each group at its code point, name, preference rank and default");
    ok(tls_group_by_name("secp521r1") == tls_group_by_id(TLS_GROUP_SECP521R1), "secp521r1 is 0x0019");
    ok(tls_group_by_id(0x001a) == NULL, "brainpoolP256r1 (0x001a): NULL");
    ok(tls_group_by_id(0x0105) == NULL, "0x0105 (after ffdhe8192): NULL");
    ok(tls_group_by_id(0x01fc) == NULL, "ffdhe private use (0x01fc): NULL");
    ok(tls_group_by_id(0x0000) == NULL, "0: NULL");
    ok(tls_group_by_name("ffdhe1024") == NULL, "ffdhe1024: NULL");
    ok(tls_group_by_name("ffdhe") == NULL, "ffdhe: NULL");
    ok(tls_group_by_name("x44") == NULL, "x44: NULL");
    ok(tls_group_by_name("P-52") == NULL, "P-52: NULL");
    ok(tls_group_by_name("P-25") == NULL, "P-25: NULL");
    ok(tls_group_by_name("") == NULL, "empty: NULL");
    ok(tls_group_by_name(NULL) == NULL, "NULL: NULL");
}

static void test_schemes(void)
{
    is_int((int)tls_n_schemes, 6, "6 signature schemes");
    int bad = 0;
    for (size_t i = 0; i < tls_n_schemes; i++) {
        const struct tls_scheme_info *s = &tls_schemes[i];
        char up[64];
        upper(up, s->name, sizeof(up));
        if (tls_scheme_by_id(s->id) != s || tls_scheme_by_name(s->name) != s || tls_scheme_by_name(up) != s)
            bad++;
        /* The name says the hash: ..._sha256 and so on; ed25519 hashes nothing itself. */
        enum tls_hash h = strstr(s->name, "sha256")   ? TLS_HASH_SHA256
                          : strstr(s->name, "sha384") ? TLS_HASH_SHA384
                          : strstr(s->name, "sha512") ? TLS_HASH_SHA512
                                                      : TLS_HASH_NONE;
        if (s->hash != h)
            bad++;
    }
    is_int(bad, 0, "each scheme: found by id and name (any case), hash as its name says");

    const struct tls_scheme_info *s;
    s = tls_scheme_by_id(0x0403);
    ok(s && s->key == TLS_KEY_EC_P256 && tls_hash_len(s->hash) == 32, "0x0403 ecdsa_secp256r1_sha256: P-256, 32");
    s = tls_scheme_by_id(0x0503);
    ok(s && s->key == TLS_KEY_EC_P384 && tls_hash_len(s->hash) == 48, "0x0503 ecdsa_secp384r1_sha384: P-384, 48");
    s = tls_scheme_by_id(0x0804);
    ok(s && s->key == TLS_KEY_RSA && tls_hash_len(s->hash) == 32, "0x0804 rsa_pss_rsae_sha256: RSA, 32");
    s = tls_scheme_by_id(0x0805);
    ok(s && s->key == TLS_KEY_RSA && tls_hash_len(s->hash) == 48, "0x0805 rsa_pss_rsae_sha384: RSA, 48");
    s = tls_scheme_by_id(0x0806);
    ok(s && s->key == TLS_KEY_RSA && tls_hash_len(s->hash) == 64, "0x0806 rsa_pss_rsae_sha512: RSA, 64");
    s = tls_scheme_by_id(0x0807);
    ok(s && s->key == TLS_KEY_ED25519 && s->hash == TLS_HASH_NONE, "0x0807 ed25519: Ed25519, no hash");
    ok(tls_scheme_by_id(0x0401) == NULL, "rsa_pkcs1_sha256 (0x0401, not for TLS 1.3 handshakes): NULL");
    ok(tls_scheme_by_id(0x0603) == NULL, "ecdsa_secp521r1_sha512 (0x0603): NULL");
    ok(tls_scheme_by_id(0x0808) == NULL, "ed448 (0x0808): NULL");
    ok(tls_scheme_by_id(0x0809) == NULL, "rsa_pss_pss_sha256 (0x0809): NULL");
    ok(tls_scheme_by_name("rsa_pkcs1_sha256") == NULL, "rsa_pkcs1_sha256 by name: NULL");
    ok(tls_scheme_by_name("ed448") == NULL, "ed448 by name: NULL");
    ok(tls_scheme_by_name("ecdsa_secp256r1") == NULL, "a prefix of a name: NULL");
    ok(tls_scheme_by_name("") == NULL, "empty: NULL");
    ok(tls_scheme_by_name(NULL) == NULL, "NULL: NULL");
}

static void test_hash_len(void)
{
    is_int((int)tls_hash_len(TLS_HASH_SHA256), 32, "SHA-256: 32 bytes");
    is_int((int)tls_hash_len(TLS_HASH_SHA384), 48, "SHA-384: 48 bytes");
    is_int((int)tls_hash_len(TLS_HASH_SHA512), 64, "SHA-512: 64 bytes");
    is_int((int)tls_hash_len(TLS_HASH_NONE), 0, "none: 0");
    is_int((int)tls_hash_len((enum tls_hash)99), 0, "a value outside the enum: 0");
}

static void test_unique(void)
{
    int dup = 0;
    for (size_t i = 0; i < tls_n_suites; i++)
        for (size_t j = 0; j < i; j++)
            dup += tls_suites[i].id == tls_suites[j].id || strcasecmp(tls_suites[i].name, tls_suites[j].name) == 0;
    for (size_t i = 0; i < tls_n_groups; i++)
        for (size_t j = 0; j < i; j++)
            dup += tls_groups[i].id == tls_groups[j].id || strcasecmp(tls_groups[i].name, tls_groups[j].name) == 0;
    for (size_t i = 0; i < tls_n_schemes; i++)
        for (size_t j = 0; j < i; j++)
            dup += tls_schemes[i].id == tls_schemes[j].id || strcasecmp(tls_schemes[i].name, tls_schemes[j].name) == 0;
    is_int(dup, 0, "no id and no name appears twice in a table");
}

int main(void)
{
    test_suites();
    test_groups();
    test_schemes();
    test_hash_len();
    test_unique();
    return kl_test_done();
}
