/*
 * fuzz_record.c - libFuzzer target for the record layer: header parsing (rec_next) and
 * unprotection (rec_open) with a fixed key, for each suite.
 *
 * Input: byte 0 picks the suite (bits 0-1) and the mode (bit 2); the rest is either
 *   raw mode:    a byte stream of records, read as the engine reads a socket; or
 *   sealed mode: an inner plaintext (content ‖ type ‖ padding, unchecked) that is sealed
 *                under the fixed key so the fuzzer reaches the post-decryption checks
 *                (content type search, padding, limits) without forging tags.
 * Invariants checked (abort on violation): an accepted record never yields more content
 * than its fragment, a known type, and re-sealing the content opens to the same bytes.
 */
#include <stdlib.h>
#include <string.h>
#include "key_schedule.h"
#include "record.h"
#include "tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint16_t suites[4] = {TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, 0};

static void check_round_trip(uint16_t suite, const uint8_t *secret, size_t hl, uint8_t type, const uint8_t *content,
                             size_t len)
{
    struct rec_dir enc, dec;
    struct kl_buf out, back;
    struct rec_record r;
    uint8_t t2;
    if (type == REC_TYPE_CHANGE_CIPHER_SPEC || (suite == 0 && type == REC_TYPE_APPLICATION_DATA))
        return;
    rec_dir_init(&enc, 1);
    rec_dir_init(&dec, 0);
    kl_buf_init(&out, 2 * REC_MAX_WIRE);
    kl_buf_init(&back, 2 * REC_MAX_WIRE);
    if (suite != 0 &&
        (rec_dir_set_secret(&enc, suite, secret, hl) != 0 || rec_dir_set_secret(&dec, suite, secret, hl) != 0))
        abort();
    if (len > 0 || type == REC_TYPE_APPLICATION_DATA) {
        if (rec_seal(&enc, &out, type, content, len, 3) != 0)
            abort();
        if (rec_next(&r, out.base, out.len, 0) != 0 || rec_open(&dec, &back, &t2, &r) != 0 || t2 != type ||
            back.len != len || (len > 0 && memcmp(back.base, content, len) != 0))
            abort();
    }
    rec_dir_dispose(&enc);
    rec_dir_dispose(&dec);
    kl_buf_dispose(&out);
    kl_buf_dispose(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t secret[48];
    static uint8_t buf[REC_MAX_WIRE + 64];
    struct rec_dir dec;
    struct kl_buf content;
    struct rec_record r;
    uint8_t type;

    if (size < 1)
        return 0;
    if (crypto_init() != 0)
        abort();
    memset(secret, 0x42, sizeof(secret));
    uint16_t suite = suites[data[0] & 3];
    int sealed = (data[0] >> 2) & 1;
    size_t hl = suite == TLS_AES_256_GCM_SHA384 ? 48 : 32;
    data++, size--;

    rec_dir_init(&dec, 0);
    kl_buf_init(&content, REC_MAX_CIPHERTEXT);
    if (suite != 0 && rec_dir_set_secret(&dec, suite, secret, hl) != 0)
        abort();

    if (sealed && suite != 0) {
        /* Seal the input as an inner plaintext under the fixed key (seq 0). */
        uint8_t key[32], iv[12];
        struct crypto_aead a = {0};
        size_t n = size > REC_MAX_CIPHERTEXT - 16 ? REC_MAX_CIPHERTEXT - 16 : size;
        size_t clen = n + 16;
        buf[0] = 23, buf[1] = 3, buf[2] = 3, buf[3] = (uint8_t)(clen >> 8), buf[4] = (uint8_t)clen;
        if (ks_traffic_key_iv(suite, key, iv, secret) != 0 ||
            crypto_aead_init(&a, suite, 1, key, crypto_suite_key_len(suite)) != 0 ||
            crypto_aead_seal(&a, buf + 5, iv, buf, 5, data, n) != 0)
            abort();
        crypto_aead_dispose(&a);
        data = buf;
        size = 5 + clen;
    }

    /* Read records the way the engine does: consume whole records until WANT_READ or an error. */
    size_t off = 0;
    unsigned flags = REC_FLAG_FIRST;
    while (off < size) {
        int rc = rec_next(&r, data + off, size - off, flags);
        if (rc != 0)
            break;
        flags = 0;
        if (r.wire_len > size - off || r.fragment.len > REC_MAX_CIPHERTEXT)
            abort();
        kl_buf_reset(&content);
        rc = rec_open(&dec, &content, &type, &r);
        if (rc == 0) {
            if (content.len > r.fragment.len || content.len > REC_MAX_PLAINTEXT ||
                (type != REC_TYPE_ALERT && type != REC_TYPE_HANDSHAKE && type != REC_TYPE_APPLICATION_DATA &&
                 type != REC_TYPE_CHANGE_CIPHER_SPEC))
                abort();
            check_round_trip(suite, secret, hl, type, content.base, content.len);
        } else if (rc > 0 || !(kl_err_is_alert(rc) || rc == KL_ERR_OVERFLOW || rc == KL_ERR_INTERNAL)) {
            abort();
        }
        if (rc != 0)
            break;
        off += r.wire_len;
    }
    rec_dir_dispose(&dec);
    kl_buf_dispose(&content);
    return 0;
}
