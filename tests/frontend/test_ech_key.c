/*
 * test_ech_key.c - ECH key files (frontend/tls/ech_key.c): the RFC 9934 section 3 example
 * key file as a known answer, generate -> write -> load round trips, the ECHConfigList, and
 * every way a file can be refused (each enum tls_ech_key_error but NO_MEMORY): a missing
 * file, no or a non-X25519 PRIVATE KEY, no or undecodable ECHCONFIG, every malformed
 * ECHConfig (each length, every truncation, trailing bytes, bad public names, two configs,
 * another version), unsupported KEM / suites / mandatory extensions, and a key that is not
 * the config's.
 */
#include <stdlib.h>
#include <unistd.h>
#include <sys/stat.h>
#include "crypto.h"
#include "hpke.h"
#include "kl_test.h"
#include "tls.h"

static char dir[] = "/tmp/kl_test_ech_keyXXXXXX";
static char path[512];

/* RFC 9934 3: the example key file (an X25519 key and a one-config ECHConfigList). */
static const char rfc9934_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                                  "MC4CAQAwBQYDK2VuBCIEICjd4yGRdsoP9gU7YT7My8DHx1Tjme8GYDXrOMCi8v1V\n"
                                  "-----END PRIVATE KEY-----\n"
                                  "-----BEGIN ECHCONFIG-----\n"
                                  "AD7+DQA65wAgACA8wVN2BtscOl3vQheUzHeIkVmKIiydUhDCliA4iyQRCwAEAAEA\n"
                                  "AQALZXhhbXBsZS5jb20AAA==\n"
                                  "-----END ECHCONFIG-----\n";
static const char rfc9934_list_hex[] = "003efe0d003ae7002000203cc1537606db1c3a5def421794cc778891598a222c9d5210c2962038"
                                       "8b24110b000400010001000b6578616d706c652e636f6d0000";
static const char rfc9934_sk_hex[] = "28dde3219176ca0ff6053b613ecccbc0c7c754e399ef066035eb38c0a2f2fd55";

static size_t unhex(uint8_t *out, const char *hex)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

static int write_text(const char *text, size_t len)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    size_t w = fwrite(text, 1, len, f);
    return fclose(f) == 0 && w == len ? 0 : -1;
}

/* A key file: a PRIVATE KEY block holding der (or none), an ECHCONFIG block holding list (or none). */
static int write_key_file(const uint8_t *der, size_t der_len, const uint8_t *list, size_t list_len)
{
    static char text[96 * 1024];
    size_t len = 0;
    text[0] = '\0';
    if (der != NULL && crypto_pem_write_block(text, sizeof(text), &len, "PRIVATE KEY", der, der_len) != 0)
        return -1;
    if (list != NULL && crypto_pem_write_block(text, sizeof(text), &len, "ECHCONFIG", list, list_len) != 0)
        return -1;
    return write_text(text, len);
}

/* PKCS#8 PrivateKeyInfo for an X25519 key (RFC 8410 7): SEQUENCE { 0, { id-X25519 }, OCTET STRING { OCTET STRING sk }
 * }. */
static size_t pkcs8_x25519(uint8_t *out, const uint8_t sk[32])
{
    size_t n = unhex(out, "302e020100300506032b656e04220420");
    memcpy(out + n, sk, 32);
    return n + 32;
}

/* The parts of one ECHConfig, to be assembled with one thing wrong at a time. */
struct parts {
    uint16_t version;
    uint8_t config_id;
    uint16_t kem_id;
    const uint8_t *pk;
    size_t pk_len;
    const uint8_t *suites;
    size_t suites_len;
    uint8_t max_name;
    const char *name;
    size_t name_len; /* (size_t)-1: strlen(name) */
    const uint8_t *exts;
    size_t exts_len;
    const uint8_t *junk; /* bytes after the extensions, inside the contents */
    size_t junk_len;
    int contents_len_delta; /* added to the ECHConfig's length field */
};

static size_t put16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return 2;
}

static size_t build_config(uint8_t *out, const struct parts *c)
{
    size_t n = 4;
    size_t name_len = c->name_len == (size_t)-1 ? strlen(c->name) : c->name_len;
    out[n++] = c->config_id;
    n += put16(out + n, c->kem_id);
    n += put16(out + n, c->pk_len);
    memcpy(out + n, c->pk, c->pk_len);
    n += c->pk_len;
    n += put16(out + n, c->suites_len);
    memcpy(out + n, c->suites, c->suites_len);
    n += c->suites_len;
    out[n++] = c->max_name;
    out[n++] = (uint8_t)name_len;
    memcpy(out + n, c->name, name_len);
    n += name_len;
    n += put16(out + n, c->exts_len);
    if (c->exts_len > 0)
        memcpy(out + n, c->exts, c->exts_len);
    n += c->exts_len;
    if (c->junk_len > 0)
        memcpy(out + n, c->junk, c->junk_len);
    n += c->junk_len;
    put16(out, c->version);
    put16(out + 2, (size_t)((int)(n - 4) + c->contents_len_delta));
    return n;
}

static size_t wrap_list(uint8_t *out, const uint8_t *cfg, size_t len)
{
    put16(out, len);
    memcpy(out + 2, cfg, len);
    return len + 2;
}

static uint8_t g_sk[32], g_pk[32], g_der[64];
static size_t g_der_len;
static const uint8_t g_suites[] = {0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x03};

static struct parts good_parts(void)
{
    struct parts c = {.version = TLS_ECH_VERSION,
                      .config_id = 0x2a,
                      .kem_id = HPKE_KEM_X25519_SHA256,
                      .pk = g_pk,
                      .pk_len = 32,
                      .suites = g_suites,
                      .suites_len = sizeof(g_suites),
                      .max_name = 0,
                      .name = "public.example",
                      .name_len = (size_t)-1};
    return c;
}

/* Load a file made of the good key and the config c (wrapped in a list); returns why. */
static enum tls_ech_key_error load_parts(const struct parts *c, struct tls_ech_key *k, int *ret_p)
{
    uint8_t cfg[2048], list[2100];
    enum tls_ech_key_error why = TLS_ECH_KEY_OK;
    size_t n = build_config(cfg, c), ln = wrap_list(list, cfg, n);
    if (write_key_file(g_der, g_der_len, list, ln) != 0)
        return (enum tls_ech_key_error) - 1;
    *ret_p = tls_ech_key_load(k, &why, path);
    return why;
}

static int all_zero(const void *p, size_t len)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < len; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

static void expect_parts(const struct parts *c, enum tls_ech_key_error want, const char *name)
{
    struct tls_ech_key k;
    int ret = 0;
    enum tls_ech_key_error why = load_parts(c, &k, &ret);
    char n2[160];
    is_int(why, want, name);
    snprintf(n2, sizeof(n2), "%s: %s", name, want == TLS_ECH_KEY_OK ? "loads" : "KL_ERR_CONFIG, key wiped");
    ok(want == TLS_ECH_KEY_OK ? ret == 0 : ret == KL_ERR_CONFIG && all_zero(&k, sizeof(k)), n2);
    tls_ech_key_dispose(&k);
}

static void test_rfc9934(void)
{
    struct tls_ech_key k;
    enum tls_ech_key_error why = TLS_ECH_KEY_NO_MEMORY;
    uint8_t want_list[128], sk[32], out[TLS_ECH_MAX_LIST_LEN];
    size_t wl = unhex(want_list, rfc9934_list_hex), ol;

    unhex(sk, rfc9934_sk_hex);
    ok(write_text(rfc9934_pem, strlen(rfc9934_pem)) == 0, "write the RFC 9934 example");
    is_int(tls_ech_key_load(&k, &why, path), 0, "RFC 9934 example loads");
    is_int(why, TLS_ECH_KEY_OK, "why = OK");
    is_int(k.config_id, 0xe7, "config_id");
    is_int(k.kem_id, HPKE_KEM_X25519_SHA256, "kem_id");
    ok(strcmp(k.public_name, "example.com") == 0, "public_name");
    is_int(k.maximum_name_length, 0, "maximum_name_length");
    ok(k.n_suites == 1 && k.suites[0].kdf_id == 1 && k.suites[0].aead_id == 1, "one suite: HKDF-SHA256, AES-128-GCM");
    is_mem(k.private_key, 32, sk, 32, "private key");
    is_mem(k.public_key, 32, want_list + 11, 32, "public key");
    is_mem(k.config, k.config_len, want_list + 2, wl - 2, "config bytes");
    is_int(tls_ech_config_list(out, sizeof(out), &ol, &k, 1), 0, "ECHConfigList");
    is_mem(out, ol, want_list, wl, "ECHConfigList bytes = the example's");

    /* The key works for HPKE with ECH's info ("tls ech" 0x00 ECHConfig). */
    uint8_t info[8 + TLS_ECH_MAX_CONFIG_LEN], enc[32], msg[20] = "inner", ct[36];
    struct hpke_ctx s, r;
    memcpy(info, "tls ech", 8);
    memcpy(info + 8, k.config, k.config_len);
    ok(hpke_setup_base_s(&s, enc, 1, 1, k.public_key, info, 8 + k.config_len, NULL) == 0 &&
           hpke_setup_base_r(&r, 1, 1, enc, 32, k.private_key, k.public_key, info, 8 + k.config_len) == 0 &&
           hpke_seal(&s, ct, NULL, 0, msg, sizeof(msg)) == 0 && hpke_open(&r, ct, NULL, 0, ct, sizeof(ct)) == 0 &&
           memcmp(ct, msg, sizeof(msg)) == 0,
       "the loaded key opens what is sealed to its config");
    hpke_ctx_dispose(&s);
    hpke_ctx_dispose(&r);

    tls_ech_key_dispose(&k);
    ok(all_zero(&k, sizeof(k)), "dispose wipes the key");
    tls_ech_key_dispose(&k);
    tls_ech_key_dispose(NULL);
}

static void test_generate_round_trip(void)
{
    struct tls_ech_key k, k2, keys[2];
    enum tls_ech_key_error why;
    static char pem[4096];
    size_t len, ol;
    uint8_t out[TLS_ECH_MAX_LIST_LEN], want[256];

    is_int(tls_ech_key_generate(&k, 7, "public.example", 32), 0, "generate");
    /* The exact bytes, with the generated key in place. */
    size_t n = unhex(want, "fe0d0045"
                           "07"
                           "0020"
                           "0020");
    memcpy(want + n, k.public_key, 32);
    n += 32;
    n += unhex(want + n, "000c"
                         "00010001"
                         "00010003"
                         "00010002"
                         "20"
                         "0e");
    memcpy(want + n, "public.example", 14);
    n += 14;
    n += unhex(want + n, "0000");
    is_mem(k.config, k.config_len, want, n, "generated config bytes");
    ok(k.config_id == 7 && k.maximum_name_length == 32 && strcmp(k.public_name, "public.example") == 0 &&
           k.n_suites == 3 && k.suites[0].aead_id == 1 && k.suites[1].aead_id == 3 && k.suites[2].aead_id == 2,
       "generated fields");
    uint8_t pk[32];
    ok(hpke_public_key(pk, k.private_key) == 0 && memcmp(pk, k.public_key, 32) == 0, "public key is the private key's");

    is_int(tls_ech_key_write_pem(&k, pem, sizeof(pem), &len), 0, "write PEM");
    ok(len == strlen(pem) && strstr(pem, "-----BEGIN PRIVATE KEY-----\n") == pem &&
           strstr(pem, "-----BEGIN ECHCONFIG-----\n") != NULL,
       "PEM: PRIVATE KEY then ECHCONFIG");
    ok(write_text(pem, len) == 0, "write the file");
    is_int(tls_ech_key_load(&k2, &why, path), 0, "load it back");
    ok(k2.config_id == k.config_id && k2.kem_id == k.kem_id && memcmp(k2.private_key, k.private_key, 32) == 0 &&
           memcmp(k2.public_key, k.public_key, 32) == 0 && k2.n_suites == 3 &&
           memcmp(k2.suites, k.suites, sizeof(k.suites)) == 0 && k2.maximum_name_length == 32 &&
           strcmp(k2.public_name, k.public_name) == 0 && k2.config_len == k.config_len &&
           memcmp(k2.config, k.config, k.config_len) == 0,
       "round trip: every field");
    tls_ech_key_dispose(&k2);

    /* Too small a buffer: KL_ERR_OVERFLOW and nothing of the key left in it. */
    memset(pem, 'x', sizeof(pem));
    is_int(tls_ech_key_write_pem(&k, pem, 100, &len), KL_ERR_OVERFLOW, "write PEM into 100 bytes");
    ok(all_zero(pem, 100) && len == 0, "the short buffer is wiped");
    is_int(tls_ech_key_write_pem(&k, pem, 0, &len), KL_ERR_OVERFLOW, "write PEM into 0 bytes");

    /* Two keys: the list is both configs in order after one length. */
    keys[0] = k;
    is_int(tls_ech_key_generate(&keys[1], 8, "other.example", 0), 0, "second key");
    is_int(tls_ech_config_list(out, sizeof(out), &ol, keys, 2), 0, "list of two");
    ok(ol == 2 + keys[0].config_len + keys[1].config_len && out[0] == (uint8_t)((ol - 2) >> 8) &&
           out[1] == (uint8_t)(ol - 2) && memcmp(out + 2, keys[0].config, keys[0].config_len) == 0 &&
           memcmp(out + 2 + keys[0].config_len, keys[1].config, keys[1].config_len) == 0,
       "list bytes: length, first, second");
    is_int(tls_ech_config_list(out, ol - 1, &ol, keys, 2), KL_ERR_OVERFLOW, "list one byte short of room");
    is_int(tls_ech_config_list(out, sizeof(out), &ol, keys, 0), KL_ERR_INVALID, "empty list refused");
    /* A list of two is not a key file. */
    size_t l2;
    ok(tls_ech_config_list(out, sizeof(out), &l2, keys, 2) == 0 && write_key_file(g_der, g_der_len, out, l2) == 0,
       "file with two configs");
    is_int(tls_ech_key_load(&k2, &why, path), KL_ERR_CONFIG, "two configs refused");
    is_int(why, TLS_ECH_KEY_BAD_CONFIG, "two configs: BAD_CONFIG");
    ok(keys[0].private_key[0] != 0 || keys[0].private_key[1] != 0, "keys differ from zero");
    ok(memcmp(keys[0].private_key, keys[1].private_key, 32) != 0, "two generated keys differ");
    tls_ech_key_dispose(&keys[1]);
    tls_ech_key_dispose(&k);

    /* Names generate refuses (and leaves k wiped). */
    static const char *bad[] = {
        "",    ".",        "a.",        ".a",      "a..b",     "-a.example",           "a-.example", "a_b.example",
        "a b", "10.0.0.1", "host.0x1f", "host.0X", "host.123", "xn--\xc3\xa9.example", NULL};
    for (size_t i = 0; bad[i] != NULL; i++) {
        char name[96];
        snprintf(name, sizeof(name), "generate refuses public name '%s'", bad[i]);
        is_int(tls_ech_key_generate(&k, 1, bad[i], 0), KL_ERR_INVALID, name);
    }
    ok(all_zero(&k, sizeof(k)), "refused generate leaves k wiped");
    is_int(tls_ech_key_generate(&k, 1, NULL, 0), KL_ERR_INVALID, "generate refuses no name");
    char label64[80], long_name[300];
    memset(label64, 'a', 64);
    strcpy(label64 + 64, ".example");
    is_int(tls_ech_key_generate(&k, 1, label64, 0), KL_ERR_INVALID, "a label of 64 refused");
    label64[1] = '.';
    is_int(tls_ech_key_generate(&k, 1, label64 + 2, 0), 0, "a label of 62 accepted");
    tls_ech_key_dispose(&k);
    for (size_t i = 0; i < 254; i += 2) {
        long_name[i] = 'a';
        long_name[i + 1] = '.';
    }
    strcpy(long_name + 252, "ab"); /* 254 bytes */
    is_int(tls_ech_key_generate(&k, 1, long_name, 0), KL_ERR_INVALID, "a 254-byte name refused");
    long_name[253] = '\0';
    is_int(tls_ech_key_generate(&k, 1, long_name, 0), 0, "a 253-byte name accepted");
    tls_ech_key_dispose(&k);
    is_int(tls_ech_key_generate(&k, 255, "Public-Name.Example", 255), 0, "mixed case and hyphens accepted");
    tls_ech_key_dispose(&k);
}

static void test_refusals(void)
{
    struct tls_ech_key k;
    enum tls_ech_key_error why;
    struct parts c;
    uint8_t cfg[2048], list[2100], other_sk[32], other_pk[32];
    size_t n, ln;
    int ret;

    expect_parts((c = good_parts(), &c), TLS_ECH_KEY_OK, "the good parts load");
    /* Duplicate suite skipped: (1,1), (1,1), (1,3) -> two. */
    static const uint8_t suites_dup[] = {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 3};
    ret = 0;
    c = good_parts();
    c.suites = suites_dup;
    c.suites_len = sizeof(suites_dup);
    is_int(load_parts(&c, &k, &ret), TLS_ECH_KEY_OK, "load");
    ok(k.n_suites == 2 && k.suites[0].aead_id == 1 && k.suites[1].aead_id == 3, "duplicate suite kept once");
    tls_ech_key_dispose(&k);

    /* CANNOT_OPEN: no file, a directory. */
    is_int(tls_ech_key_load(&k, &why, "/nonexistent/ech.pem"), KL_ERR_CONFIG, "missing file");
    is_int(why, TLS_ECH_KEY_CANNOT_OPEN, "missing file: CANNOT_OPEN");
    is_int(tls_ech_key_load(&k, &why, dir), KL_ERR_CONFIG, "a directory");
    is_int(why, TLS_ECH_KEY_CANNOT_OPEN, "a directory: CANNOT_OPEN");

    /* Files refused as a whole (NO_KEY, NO_CONFIG, BAD_CONFIG of the list): one table row each. */
    c = good_parts();
    n = build_config(cfg, &c);
    ln = wrap_list(list, cfg, n);
    uint8_t der_ed25519[80], der_junk[80], der_after[80], list_long[2100], list_short[2100], list_trail[2101];
    memcpy(der_ed25519, g_der, g_der_len);
    der_ed25519[13] = 0x70; /* id-Ed25519 (1.3.101.112) instead of id-X25519 */
    memcpy(der_junk, g_der, g_der_len);
    der_junk[g_der_len] = 0;
    der_junk[1]++; /* trailing byte inside the SEQUENCE */
    memcpy(der_after, g_der, g_der_len);
    der_after[g_der_len] = 0;
    memcpy(list_long, list, ln);
    list_long[1]++;
    memcpy(list_short, list, ln);
    list_short[1]--;
    memcpy(list_trail, list, ln);
    list_trail[ln] = 0;
    static const uint8_t empty_list[] = {0, 0};
    static const char bad_b64[] = "-----BEGIN PRIVATE KEY-----\n!!!!not base64!!!!\n-----END PRIVATE KEY-----\n";
    static char big[70000];
    memset(big, '\n', sizeof(big));
    memcpy(big + sizeof(big) - strlen(rfc9934_pem), rfc9934_pem, strlen(rfc9934_pem));
    static char bad_cfg_text[2048];
    size_t bad_cfg_len = 0;
    ok(crypto_pem_write_block(bad_cfg_text, sizeof(bad_cfg_text), &bad_cfg_len, "PRIVATE KEY", g_der, g_der_len) == 0,
       "key block");
    strcat(bad_cfg_text, "-----BEGIN ECHCONFIG-----\n*** not base64 ***\n-----END ECHCONFIG-----\n");
    /* The file: text when set, else a PRIVATE KEY block of key (NULL: none) and an ECHCONFIG block of list (NULL:
     * none). */
    const struct {
        const char *file; /* the file, for the check that it was written */
        const char *what; /* what is wrong with it, for the refusal's checks */
        enum tls_ech_key_error want;
        const uint8_t *key;
        size_t key_len;
        const uint8_t *list;
        size_t list_len;
        const char *text;
        size_t text_len;
    } files[] = {
        {"file without a key", "no PRIVATE KEY", TLS_ECH_KEY_NO_KEY, NULL, 0, list, ln, NULL, 0},
        {"file with an Ed25519 key", "Ed25519 key", TLS_ECH_KEY_NO_KEY, der_ed25519, g_der_len, list, ln, NULL, 0},
        {"file with junk in the key's DER", "junk in the PKCS#8 DER", TLS_ECH_KEY_NO_KEY, der_junk, g_der_len + 1, list,
         ln, NULL, 0},
        {"file with a byte after the key's DER", "a byte after the PKCS#8 DER", TLS_ECH_KEY_NO_KEY, der_after,
         g_der_len + 1, list, ln, NULL, 0},
        {"file with a truncated key", "truncated PKCS#8", TLS_ECH_KEY_NO_KEY, g_der, g_der_len - 1, list, ln, NULL, 0},
        {"file with bad base64", "undecodable PRIVATE KEY", TLS_ECH_KEY_NO_KEY, NULL, 0, NULL, 0, bad_b64,
         strlen(bad_b64)},
        {"empty file", "empty file", TLS_ECH_KEY_NO_KEY, NULL, 0, NULL, 0, "", 0},
        {"a 70000-byte file", "over 64 KiB", TLS_ECH_KEY_NO_KEY, NULL, 0, NULL, 0, big, sizeof(big)},
        {"file without a config", "no ECHCONFIG", TLS_ECH_KEY_NO_CONFIG, g_der, g_der_len, NULL, 0, NULL, 0},
        {"file with an undecodable config", "undecodable ECHCONFIG", TLS_ECH_KEY_NO_CONFIG, NULL, 0, NULL, 0,
         bad_cfg_text, strlen(bad_cfg_text)},
        {"empty list", "empty ECHConfigList", TLS_ECH_KEY_BAD_CONFIG, g_der, g_der_len, empty_list, 2, NULL, 0},
        {"one-byte list", "one-byte ECHConfigList", TLS_ECH_KEY_BAD_CONFIG, g_der, g_der_len, list, 1, NULL, 0},
        {"list length one too long", "list length past the end", TLS_ECH_KEY_BAD_CONFIG, g_der, g_der_len, list_long,
         ln, NULL, 0},
        {"list length one too short", "a byte after the list", TLS_ECH_KEY_BAD_CONFIG, g_der, g_der_len, list_short, ln,
         NULL, 0},
        {"trailing byte after the list", "trailing byte after the list", TLS_ECH_KEY_BAD_CONFIG, g_der, g_der_len,
         list_trail, ln + 1, NULL, 0},
    };
    static const char *const why_names[] = {[TLS_ECH_KEY_NO_KEY] = "NO_KEY",
                                            [TLS_ECH_KEY_NO_CONFIG] = "NO_CONFIG",
                                            [TLS_ECH_KEY_BAD_CONFIG] = "BAD_CONFIG"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char name[160];
        int w = files[i].text != NULL
                    ? write_text(files[i].text, files[i].text_len)
                    : write_key_file(files[i].key, files[i].key_len, files[i].list, files[i].list_len);
        ok(w == 0, files[i].file);
        is_int(tls_ech_key_load(&k, &why, path), KL_ERR_CONFIG, files[i].what);
        snprintf(name, sizeof(name), "%s: %s", files[i].what, why_names[files[i].want]);
        is_int(why, files[i].want, name);
    }

    /* Every strict prefix of the config, in a list whose length says so: BAD_CONFIG. */
    int all_bad = 1;
    for (size_t cut = 0; cut < n; cut++) {
        ln = wrap_list(list, cfg, cut);
        if (write_key_file(g_der, g_der_len, list, ln) != 0 || tls_ech_key_load(&k, &why, path) != KL_ERR_CONFIG ||
            why != TLS_ECH_KEY_BAD_CONFIG) {
            all_bad = 0;
            diag("prefix of %zu bytes: why %d", cut, (int)why);
        }
    }
    ok(all_bad, "every truncation of the config is BAD_CONFIG");
    /* Every strict prefix with the lengths left as they were is BAD_CONFIG too. */
    all_bad = 1;
    for (size_t cut = 1; cut < n; cut++) {
        ln = wrap_list(list, cfg, n);
        if (write_key_file(g_der, g_der_len, list, 2 + cut) != 0 || tls_ech_key_load(&k, &why, path) != KL_ERR_CONFIG ||
            why != TLS_ECH_KEY_BAD_CONFIG)
            all_bad = 0;
    }
    ok(all_bad, "every truncated file is BAD_CONFIG");

    /* BAD_CONFIG: the config. */
    c = good_parts();
    c.version = 0xfe0c;
    expect_parts(&c, TLS_ECH_KEY_BAD_CONFIG, "version 0xfe0c");
    c = good_parts();
    c.contents_len_delta = 1;
    expect_parts(&c, TLS_ECH_KEY_BAD_CONFIG, "config length one too long");
    c = good_parts();
    c.contents_len_delta = -1;
    expect_parts(&c, TLS_ECH_KEY_BAD_CONFIG, "config length one too short");
    c = good_parts();
    c.junk = (const uint8_t *)"\0";
    c.junk_len = 1;
    expect_parts(&c, TLS_ECH_KEY_BAD_CONFIG, "a byte after the extensions");
    c = good_parts();
    c.pk_len = 0;
    expect_parts(&c, TLS_ECH_KEY_BAD_CONFIG, "empty public key");
    c = good_parts();
    c.pk_len = 31;
    expect_parts(&c, TLS_ECH_KEY_BAD_CONFIG, "31-byte public key");
    uint8_t pk33[33];
    memcpy(pk33, g_pk, 32);
    pk33[32] = 0;
    c = good_parts();
    c.pk = pk33;
    c.pk_len = 33;
    expect_parts(&c, TLS_ECH_KEY_BAD_CONFIG, "33-byte public key");
    c = good_parts();
    c.suites_len = 0;
    expect_parts(&c, TLS_ECH_KEY_BAD_CONFIG, "no cipher suites");
    c = good_parts();
    c.suites_len = 2;
    expect_parts(&c, TLS_ECH_KEY_BAD_CONFIG, "half a cipher suite");
    c = good_parts();
    c.suites_len = 6;
    expect_parts(&c, TLS_ECH_KEY_BAD_CONFIG, "one and a half cipher suites");
    c = good_parts();
    c.name_len = 0;
    expect_parts(&c, TLS_ECH_KEY_BAD_CONFIG, "empty public_name");
    static const char *bad_names[] = {"a..b",    ".a.example", "a.example.", "-a.example",  "a_b.example",
                                      "1.2.3.4", "a.0x10",     "a.0X",       "a b.example", NULL};
    for (size_t i = 0; bad_names[i] != NULL; i++) {
        char name[96];
        c = good_parts();
        c.name = bad_names[i];
        snprintf(name, sizeof(name), "public_name '%s'", bad_names[i]);
        expect_parts(&c, TLS_ECH_KEY_BAD_CONFIG, name);
    }
    c = good_parts();
    c.name = "a\0b.example";
    c.name_len = 11;
    expect_parts(&c, TLS_ECH_KEY_BAD_CONFIG, "public_name with a NUL");
    static const uint8_t ext_trunc[] = {0x00, 0x01, 0x00, 0x05, 0xaa};
    c = good_parts();
    c.exts = ext_trunc;
    c.exts_len = sizeof(ext_trunc);
    expect_parts(&c, TLS_ECH_KEY_BAD_CONFIG, "extension longer than its list");
    static const uint8_t ext_dup[] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00};
    c = good_parts();
    c.exts = ext_dup;
    c.exts_len = sizeof(ext_dup);
    expect_parts(&c, TLS_ECH_KEY_BAD_CONFIG, "extension twice");
    static uint8_t ext_big[600];
    put16(ext_big, 0x0001);
    put16(ext_big + 2, sizeof(ext_big) - 4);
    c = good_parts();
    c.exts = ext_big;
    c.exts_len = sizeof(ext_big);
    expect_parts(&c, TLS_ECH_KEY_BAD_CONFIG, "config over TLS_ECH_MAX_CONFIG_LEN");

    /* A well-formed optional extension we do not know is fine. */
    static const uint8_t ext_opt[] = {0x00, 0x01, 0x00, 0x02, 0xbe, 0xef};
    c = good_parts();
    c.exts = ext_opt;
    c.exts_len = sizeof(ext_opt);
    expect_parts(&c, TLS_ECH_KEY_OK, "unknown optional extension accepted");

    /* UNSUPPORTED. */
    static const uint8_t ext_mand[] = {0x80, 0x01, 0x00, 0x00};
    c = good_parts();
    c.exts = ext_mand;
    c.exts_len = sizeof(ext_mand);
    expect_parts(&c, TLS_ECH_KEY_UNSUPPORTED, "unknown mandatory extension");
    c = good_parts();
    c.kem_id = 0x0010; /* DHKEM(P-256, HKDF-SHA256) */
    uint8_t p256[65] = {0x04};
    c.pk = p256;
    c.pk_len = sizeof(p256);
    expect_parts(&c, TLS_ECH_KEY_UNSUPPORTED, "P-256 KEM");
    static const uint8_t suites_none[] = {0x00, 0x02, 0x00, 0x01, 0x00, 0x01, 0xff, 0xff, 0x00, 0x01, 0x00, 0x04};
    c = good_parts();
    c.suites = suites_none;
    c.suites_len = sizeof(suites_none);
    expect_parts(&c, TLS_ECH_KEY_UNSUPPORTED, "no supported suite (SHA-384 KDF, export-only, unknown AEAD)");
    static const uint8_t suites_some[] = {0x00, 0x02, 0x00, 0x01, 0x00, 0x01, 0x00, 0x02};
    c = good_parts();
    c.suites = suites_some;
    c.suites_len = sizeof(suites_some);
    is_int(load_parts(&c, &k, &ret), TLS_ECH_KEY_OK, "unsupported suite skipped");
    ok(k.n_suites == 1 && k.suites[0].kdf_id == 1 && k.suites[0].aead_id == 2, "only the supported suite kept");
    tls_ech_key_dispose(&k);

    /* MISMATCH: the config's public key is another key's. */
    ok(hpke_generate_keypair(other_sk, other_pk) == 0, "another key pair");
    c = good_parts();
    c.pk = other_pk;
    expect_parts(&c, TLS_ECH_KEY_MISMATCH, "public key of another private key");
    crypto_wipe(other_sk, sizeof(other_sk));
}

int main(void)
{
    if (crypto_init() != 0 || mkdtemp(dir) == NULL) {
        ok(0, "setup");
        return kl_test_done();
    }
    snprintf(path, sizeof(path), "%s/key.pem", dir);
    ok(hpke_generate_keypair(g_sk, g_pk) == 0, "the good key pair");
    g_der_len = pkcs8_x25519(g_der, g_sk);

    test_rfc9934();
    test_generate_round_trip();
    test_refusals();

    unlink(path);
    rmdir(dir);
    crypto_thread_cleanup();
    return kl_test_done();
}
