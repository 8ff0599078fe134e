/*
 * ech_key.c - ECH key files: one ECHConfig (draft-ietf-tls-esni, version 0xfe0d) and its
 * X25519 HPKE private key. Contracts in tls.h ("ECH key files").
 *
 * The wire format of one ECHConfig (draft-ietf-tls-esni 4):
 *
 *   struct { uint16 version; uint16 length; ECHConfigContents contents; } ECHConfig;
 *   struct { HpkeKeyConfig key_config; uint8 maximum_name_length; opaque public_name<1..255>;
 *            Extension extensions<0..2^16-1>; } ECHConfigContents;
 *   struct { uint8 config_id; HpkeKemId kem_id; HpkePublicKey public_key<1..2^16-1>;
 *            HpkeSymmetricCipherSuite cipher_suites<4..2^16-4>; } HpkeKeyConfig;
 *   ECHConfig ECHConfigList<4..2^16-1>;
 *
 * It is parsed strictly: every length inside its bounds and consumed exactly, no trailing
 * bytes; a public_name that is not a DNS name, or a mandatory extension we do not know, and
 * the config is not one we can serve. The PEM text itself is crypto.c's (the only file that
 * includes OpenSSL); the private key is wiped on every exit path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "crypto.h"
#include "hpke.h"
#include "tls.h"
#include "wire.h"

/* A key file is a few hundred bytes; anything past this is not one. */
#define ECH_KEY_FILE_MAX 65536
#define ECH_INFO_LABEL "tls ech"

/*
 * draft-ietf-tls-esni 4: "Clients MUST ignore any ECHConfig structure whose public_name is not
 * parsable as a dot-separated sequence of LDH labels, as defined in RFC 5890, Section 2.3.1 or
 * which begins or ends with an ASCII dot." and "SHOULD ignore the structure if the final LDH
 * label either consists of all ASCII digits ... or is "0x" or "0X" followed by some, possibly
 * empty, sequence of ASCII hexadecimal digits" (an IPv4 address). A config clients ignore is
 * one we must not load or publish.
 */
static int ech_public_name_ok(const uint8_t *name, size_t len)
{
    size_t label_start = 0;

    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || name[i] == '.') {
            size_t ll = i - label_start;
            if (ll == 0 || ll > 63 || name[label_start] == '-' || name[i - 1] == '-')
                return 0;
            label_start = i + 1;
            continue;
        }
        uint8_t c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
    }
    /* The final label: all digits, or 0x followed by hex digits, reads as an IPv4 address. */
    const uint8_t *last = name;
    for (size_t i = 0; i < len; i++)
        if (name[i] == '.')
            last = name + i + 1;
    size_t ll = (size_t)(name + len - last), digits = 0, hex = 0;
    for (size_t i = 0; i < ll; i++) {
        digits += last[i] >= '0' && last[i] <= '9';
        hex += (last[i] >= '0' && last[i] <= '9') || (last[i] >= 'a' && last[i] <= 'f') ||
               (last[i] >= 'A' && last[i] <= 'F');
    }
    if (digits == ll)
        return 0;
    if (ll >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') && hex == ll - 1)
        return 0;
    return 1;
}

/*
 * One whole ECHConfig (version ‖ length ‖ contents) into k (everything but the private key).
 * TLS_ECH_KEY_BAD_CONFIG for anything malformed, TLS_ECH_KEY_UNSUPPORTED for a well-formed
 * config we cannot serve (another version, another KEM, no supported suite, an unknown
 * mandatory extension).
 */
static enum tls_ech_key_error ech_config_parse(struct tls_ech_key *k, const uint8_t *p, size_t len)
{
    struct wire_reader r, contents, suites, exts;
    struct kl_span pk, name;
    uint16_t version, kem_id;
    uint8_t config_id, max_name;

    wire_reader_init(&r, p, len);
    if (len > TLS_ECH_MAX_CONFIG_LEN || wire_read_u16(&r, &version) != 0 || wire_read_vec(&r, &contents, 2) != 0 ||
        wire_reader_end(&r) != 0)
        return TLS_ECH_KEY_BAD_CONFIG;
    if (version != TLS_ECH_VERSION)
        return TLS_ECH_KEY_BAD_CONFIG;
    if (wire_read_u8(&contents, &config_id) != 0 || wire_read_u16(&contents, &kem_id) != 0 ||
        wire_read_vec_span(&contents, &pk, 2, 1, 0xffff) != 0 || wire_read_vec(&contents, &suites, 2) != 0 ||
        wire_read_u8(&contents, &max_name) != 0 || wire_read_vec_span(&contents, &name, 1, 1, 255) != 0 ||
        wire_read_vec(&contents, &exts, 2) != 0 || wire_reader_end(&contents) != 0)
        return TLS_ECH_KEY_BAD_CONFIG;
    /* cipher_suites<4..2^16-4>: whole (kdf_id, aead_id) pairs, at least one. */
    size_t suites_len = wire_remaining(&suites);
    if (suites_len < 4 || suites_len % 4 != 0)
        return TLS_ECH_KEY_BAD_CONFIG;
    if (!ech_public_name_ok(name.base, name.len))
        return TLS_ECH_KEY_BAD_CONFIG;
    /* Extensions: each well formed and each type once; a mandatory one (high bit) we do not know
     * makes the config unusable ("Clients MUST parse the extension list and check for unsupported
     * mandatory extensions"): we know none, so any mandatory one is unsupported. */
    int mandatory = 0;
    uint16_t seen[64];
    size_t n_seen = 0;
    while (wire_remaining(&exts) > 0) {
        uint16_t type;
        struct kl_span body;
        if (wire_read_u16(&exts, &type) != 0 || wire_read_vec_span(&exts, &body, 2, 0, 0xffff) != 0)
            return TLS_ECH_KEY_BAD_CONFIG;
        for (size_t i = 0; i < n_seen; i++)
            if (seen[i] == type)
                return TLS_ECH_KEY_BAD_CONFIG;
        if (n_seen == sizeof(seen) / sizeof(seen[0]))
            return TLS_ECH_KEY_BAD_CONFIG;
        seen[n_seen++] = type;
        mandatory |= (type & 0x8000) != 0;
    }
    if (kem_id != HPKE_KEM_X25519_SHA256)
        return TLS_ECH_KEY_UNSUPPORTED;
    /* The X25519 public key is exactly Npk = 32 bytes. */
    if (pk.len != HPKE_X25519_LEN)
        return TLS_ECH_KEY_BAD_CONFIG;
    if (mandatory)
        return TLS_ECH_KEY_UNSUPPORTED;

    k->n_suites = 0;
    while (wire_remaining(&suites) > 0) {
        uint16_t kdf, aead;
        if (wire_read_u16(&suites, &kdf) != 0 || wire_read_u16(&suites, &aead) != 0)
            return TLS_ECH_KEY_BAD_CONFIG;
        /* Unsupported pairs are skipped (the client picks among the config's suites). */
        if (!hpke_suite_supported(kdf, aead))
            continue;
        int dup = 0;
        for (size_t i = 0; i < k->n_suites; i++)
            dup |= k->suites[i].kdf_id == kdf && k->suites[i].aead_id == aead;
        if (dup || k->n_suites == TLS_ECH_MAX_SUITES)
            continue;
        k->suites[k->n_suites].kdf_id = kdf;
        k->suites[k->n_suites].aead_id = aead;
        k->n_suites++;
    }
    if (k->n_suites == 0)
        return TLS_ECH_KEY_UNSUPPORTED;
    k->config_id = config_id;
    k->kem_id = kem_id;
    memcpy(k->public_key, pk.base, HPKE_X25519_LEN);
    k->maximum_name_length = max_name;
    memcpy(k->public_name, name.base, name.len);
    k->public_name[name.len] = '\0';
    memcpy(k->config, p, len);
    k->config_len = len;
    return TLS_ECH_KEY_OK;
}

/* An ECHConfigList holding exactly one ECHConfig, into k. */
static enum tls_ech_key_error ech_config_list_parse_one(struct tls_ech_key *k, const uint8_t *p, size_t len)
{
    struct wire_reader r, list;
    uint16_t version, clen;

    wire_reader_init(&r, p, len);
    if (wire_read_vec(&r, &list, 2) != 0 || wire_reader_end(&r) != 0 || wire_remaining(&list) < 4)
        return TLS_ECH_KEY_BAD_CONFIG;
    /* Find where the first config ends: its own length says so. */
    const uint8_t *first = list.p;
    if (wire_read_u16(&list, &version) != 0 || wire_read_u16(&list, &clen) != 0 || wire_remaining(&list) < clen)
        return TLS_ECH_KEY_BAD_CONFIG;
    if (wire_remaining(&list) != clen)
        return TLS_ECH_KEY_BAD_CONFIG; /* more than one config: a key file holds one */
    return ech_config_parse(k, first, 4 + (size_t)clen);
}

void tls_ech_key_dispose(struct tls_ech_key *k)
{
    if (k == NULL)
        return;
    crypto_wipe(k, sizeof(*k));
}

int tls_ech_key_load(struct tls_ech_key *k, enum tls_ech_key_error *why_p, const char *path)
{
    int ret;
    enum tls_ech_key_error why = TLS_ECH_KEY_OK;
    FILE *f = NULL;
    char *text = NULL;
    size_t text_len = 0, list_len = 0;
    uint8_t list[TLS_ECH_MAX_LIST_LEN], pk[HPKE_X25519_LEN];

    memset(k, 0, sizeof(*k));
    /* Key files are read before any connection exists (config, keyless-ech): set up the libraries. */
    if (crypto_init() != 0) {
        why = TLS_ECH_KEY_NO_MEMORY;
        KL_FAIL(KL_ERR_NO_MEMORY);
    }
    if ((f = fopen(path, "re")) == NULL) {
        why = TLS_ECH_KEY_CANNOT_OPEN;
        KL_FAIL(KL_ERR_CONFIG);
    }
    if ((text = malloc(ECH_KEY_FILE_MAX + 1)) == NULL) {
        why = TLS_ECH_KEY_NO_MEMORY;
        KL_FAIL(KL_ERR_NO_MEMORY);
    }
    text_len = fread(text, 1, ECH_KEY_FILE_MAX + 1, f);
    if (ferror(f)) {
        why = TLS_ECH_KEY_CANNOT_OPEN;
        KL_FAIL(KL_ERR_CONFIG);
    }
    /* Over the bound it is not a key file: say the key is missing rather than parse a part. */
    if (text_len > ECH_KEY_FILE_MAX) {
        why = TLS_ECH_KEY_NO_KEY;
        KL_FAIL(KL_ERR_CONFIG);
    }
    ret = crypto_pem_read_x25519(k->private_key, text, text_len);
    if (ret == KL_ERR_NO_MEMORY) {
        why = TLS_ECH_KEY_NO_MEMORY;
        goto exit;
    }
    if (ret != 0) {
        why = TLS_ECH_KEY_NO_KEY;
        KL_FAIL(KL_ERR_CONFIG);
    }
    ret = crypto_pem_read_block(list, sizeof(list), &list_len, text, text_len, "ECHCONFIG");
    if (ret == KL_ERR_NO_MEMORY) {
        why = TLS_ECH_KEY_NO_MEMORY;
        goto exit;
    }
    if (ret == KL_ERR_OVERFLOW) {
        why = TLS_ECH_KEY_BAD_CONFIG; /* longer than any list of TLS_ECH_KEYS_MAX configs */
        KL_FAIL(KL_ERR_CONFIG);
    }
    if (ret != 0) {
        why = TLS_ECH_KEY_NO_CONFIG;
        KL_FAIL(KL_ERR_CONFIG);
    }
    if ((why = ech_config_list_parse_one(k, list, list_len)) != TLS_ECH_KEY_OK)
        KL_FAIL(KL_ERR_CONFIG);
    /* The published public key must be the private key's, or no client could reach us. */
    KL_TRY(hpke_public_key(pk, k->private_key));
    if (!crypto_equal(pk, k->public_key, sizeof(pk))) {
        why = TLS_ECH_KEY_MISMATCH;
        KL_FAIL(KL_ERR_CONFIG);
    }
    ret = 0;
exit:
    if (ret != 0 && why == TLS_ECH_KEY_OK)
        why = ret == KL_ERR_NO_MEMORY ? TLS_ECH_KEY_NO_MEMORY : TLS_ECH_KEY_NO_KEY;
    /* The contract (tls.h): KL_ERR_CONFIG, or KL_ERR_NO_MEMORY, and why says which. */
    if (ret != 0 && ret != KL_ERR_NO_MEMORY)
        ret = KL_ERR_CONFIG;
    if (ret != 0)
        tls_ech_key_dispose(k);
    if (text != NULL) {
        crypto_wipe(text, ECH_KEY_FILE_MAX + 1);
        free(text);
    }
    if (f != NULL)
        fclose(f);
    *why_p = why;
    return ret;
}

int tls_ech_key_generate(struct tls_ech_key *k, uint8_t config_id, const char *public_name, uint8_t max_name_length)
{
    int ret;
    struct kl_buf b;
    size_t name_len = public_name != NULL ? strlen(public_name) : 0, outer, contents;
    /* What we offer, in our preference order: HKDF-SHA256 with each AEAD. */
    static const uint16_t aeads[] = {HPKE_AEAD_AES_128_GCM, HPKE_AEAD_CHACHA20_POLY1305, HPKE_AEAD_AES_256_GCM};

    memset(k, 0, sizeof(*k));
    KL_TRY(crypto_init());
    KL_ENSURE(public_name != NULL && ech_public_name_ok((const uint8_t *)public_name, name_len), KL_ERR_INVALID);
    KL_TRY(hpke_generate_keypair(k->private_key, k->public_key));
    kl_buf_init_fixed(&b, k->config, sizeof(k->config));
    KL_TRY(wire_put_u16(&b, TLS_ECH_VERSION));
    KL_TRY(wire_block_open(&b, &outer, 2));
    KL_TRY(wire_put_u8(&b, config_id));
    KL_TRY(wire_put_u16(&b, HPKE_KEM_X25519_SHA256));
    KL_TRY(wire_block_open(&b, &contents, 2));
    KL_TRY(wire_put_bytes(&b, k->public_key, sizeof(k->public_key)));
    KL_TRY(wire_block_close(&b, contents, 2));
    KL_TRY(wire_block_open(&b, &contents, 2));
    for (size_t i = 0; i < sizeof(aeads) / sizeof(aeads[0]); i++) {
        KL_TRY(wire_put_u16(&b, HPKE_KDF_HKDF_SHA256));
        KL_TRY(wire_put_u16(&b, aeads[i]));
        k->suites[i].kdf_id = HPKE_KDF_HKDF_SHA256;
        k->suites[i].aead_id = aeads[i];
    }
    k->n_suites = sizeof(aeads) / sizeof(aeads[0]);
    KL_TRY(wire_block_close(&b, contents, 2));
    KL_TRY(wire_put_u8(&b, max_name_length));
    KL_TRY(wire_block_open(&b, &contents, 1));
    KL_TRY(wire_put_bytes(&b, public_name, name_len));
    KL_TRY(wire_block_close(&b, contents, 1));
    KL_TRY(wire_put_u16(&b, 0)); /* no extensions */
    KL_TRY(wire_block_close(&b, outer, 2));
    k->config_len = b.len;
    k->config_id = config_id;
    k->kem_id = HPKE_KEM_X25519_SHA256;
    k->maximum_name_length = max_name_length;
    memcpy(k->public_name, public_name, name_len + 1);
    ret = 0;
exit:
    if (ret != 0)
        tls_ech_key_dispose(k);
    return ret;
}

int tls_ech_config_list(uint8_t *out, size_t cap, size_t *len_p, const struct tls_ech_key *keys, size_t n)
{
    int ret;
    struct kl_buf b;
    size_t mark;

    *len_p = 0;
    KL_ENSURE(n > 0 && keys != NULL, KL_ERR_INVALID);
    kl_buf_init_fixed(&b, out, cap);
    KL_TRY(wire_block_open(&b, &mark, 2));
    for (size_t i = 0; i < n; i++) {
        KL_ENSURE(keys[i].config_len >= 4 && keys[i].config_len <= sizeof(keys[i].config), KL_ERR_INVALID);
        KL_TRY(wire_put_bytes(&b, keys[i].config, keys[i].config_len));
    }
    KL_TRY(wire_block_close(&b, mark, 2));
    *len_p = b.len;
    ret = 0;
exit:
    return ret;
}

int tls_ech_key_write_pem(const struct tls_ech_key *k, char *buf, size_t cap, size_t *len_p)
{
    int ret;
    uint8_t list[2 + TLS_ECH_MAX_CONFIG_LEN];
    size_t list_len, len = 0;

    *len_p = 0;
    KL_ENSURE(cap > 0, KL_ERR_OVERFLOW);
    buf[0] = '\0';
    KL_TRY(tls_ech_config_list(list, sizeof(list), &list_len, k, 1));
    KL_TRY(crypto_pem_write_x25519(buf, cap, &len, k->private_key));
    KL_TRY(crypto_pem_write_block(buf, cap, &len, "ECHCONFIG", list, list_len));
    *len_p = len;
    ret = 0;
exit:
    if (ret != 0)
        crypto_wipe(buf, cap);
    return ret;
}
