/*
 * test_record.c - the record layer against every protected record of RFC 8448 (both
 * directions, byte for byte), plus what it must refuse: tampered bytes, oversized
 * records, bad content types, all-zero inner plaintext, wrong versions, key limits.
 */
#include "kl_test.h"
#include "key_schedule.h"
#include "record.h"
#include "rfc8448.h"
#include "tls.h"

#define SUITE TLS_AES_128_GCM_SHA256

struct row {
    const char *file, *record, *plaintext, *secret;
    uint64_t seq;
    uint8_t type;
};

static const struct row rows[] = {
    {"simple-1rtt.txt", "server_encrypted_flight_record", "server_encrypted_flight_plaintext",
     "server_handshake_traffic_secret", 0, 22},
    {"simple-1rtt.txt", "client_finished_record", "client_finished", "client_handshake_traffic_secret", 0, 22},
    {"simple-1rtt.txt", "new_session_ticket_record", "new_session_ticket", "server_application_traffic_secret_0", 0,
     22},
    {"simple-1rtt.txt", "server_application_data_record", "server_application_data_plaintext",
     "server_application_traffic_secret_0", 1, 23},
    {"simple-1rtt.txt", "server_alert_record", "server_alert_plaintext", "server_application_traffic_secret_0", 2, 21},
    {"simple-1rtt.txt", "client_application_data_record", "client_application_data_plaintext",
     "client_application_traffic_secret_0", 0, 23},
    {"simple-1rtt.txt", "client_alert_record", "client_alert_plaintext", "client_application_traffic_secret_0", 1, 21},
    {"resumed-0rtt.txt", "server_encrypted_flight_record", "server_encrypted_flight_plaintext",
     "server_handshake_traffic_secret", 0, 22},
    {"resumed-0rtt.txt", "client_finished_record", "client_finished", "client_handshake_traffic_secret", 0, 22},
    {"resumed-0rtt.txt", "early_data_record", "early_data_plaintext", "client_early_traffic_secret", 0, 23},
    {"resumed-0rtt.txt", "end_of_early_data_record", "end_of_early_data", "client_early_traffic_secret", 1, 22},
    {"resumed-0rtt.txt", "client_application_data_record", "client_application_data_plaintext",
     "client_application_traffic_secret_0", 0, 23},
    {"resumed-0rtt.txt", "server_application_data_record", "server_application_data_plaintext",
     "server_application_traffic_secret_0", 0, 23},
    {"resumed-0rtt.txt", "client_alert_record", "client_alert_plaintext", "client_application_traffic_secret_0", 1, 21},
    {"resumed-0rtt.txt", "server_alert_record", "server_alert_plaintext", "server_application_traffic_secret_0", 1, 21},
    {"hello-retry-request.txt", "server_encrypted_flight_record", "server_encrypted_flight_plaintext",
     "server_handshake_traffic_secret", 0, 22},
    {"hello-retry-request.txt", "client_finished_record", "client_finished", "client_handshake_traffic_secret", 0, 22},
    {"hello-retry-request.txt", "client_alert_record", "client_alert_plaintext", "client_application_traffic_secret_0",
     0, 21},
    {"hello-retry-request.txt", "server_alert_record", "server_alert_plaintext", "server_application_traffic_secret_0",
     0, 21},
    {"client-auth.txt", "server_encrypted_flight_record", "server_encrypted_flight_plaintext",
     "server_handshake_traffic_secret", 0, 22},
    {"client-auth.txt", "client_encrypted_flight_record", "client_encrypted_flight_plaintext",
     "client_handshake_traffic_secret", 0, 22},
    {"client-auth.txt", "client_alert_record", "client_alert_plaintext", "client_application_traffic_secret_0", 0, 21},
    {"client-auth.txt", "server_alert_record", "server_alert_plaintext", "server_application_traffic_secret_0", 0, 21},
    {"compat-mode.txt", "server_encrypted_flight_record", "server_encrypted_flight_plaintext",
     "server_handshake_traffic_secret", 0, 22},
    {"compat-mode.txt", "client_finished_record", "client_finished", "client_handshake_traffic_secret", 0, 22},
    {"compat-mode.txt", "client_alert_record", "client_alert_plaintext", "client_application_traffic_secret_0", 0, 21},
    {"compat-mode.txt", "server_alert_record", "server_alert_plaintext", "server_application_traffic_secret_0", 0, 21},
};

static void test_rfc8448_rows(void)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *w = &rows[i];
        struct rfc8448 *t = rfc8448_load(w->file);
        size_t rl, pl, sl;
        const uint8_t *rec = rfc8448_must(t, w->record, &rl);
        const uint8_t *pt = rfc8448_must(t, w->plaintext, &pl);
        const uint8_t *sec = rfc8448_must(t, w->secret, &sl);
        struct rec_dir enc, dec;
        struct kl_buf out, content;
        struct rec_record r;
        uint8_t type = 0;
        char name[200];

        rec_dir_init(&enc, 1);
        rec_dir_init(&dec, 0);
        kl_buf_init(&out, REC_MAX_WIRE * 2);
        kl_buf_init(&content, REC_MAX_CIPHERTEXT);
        snprintf(name, sizeof(name), "%s %s: keys from %s", w->file, w->record, w->secret);
        ok(rec_dir_set_secret(&enc, SUITE, sec, sl) == 0 && rec_dir_set_secret(&dec, SUITE, sec, sl) == 0, name);
        enc.seq = dec.seq = w->seq;

        snprintf(name, sizeof(name), "%s %s: protect byte for byte", w->file, w->record);
        if (w->type == 21)
            ok(rec_alert(&enc, &out, pt[1]) == 0, "alert via rec_alert");
        else
            ok(rec_seal(&enc, &out, w->type, pt, pl, 0) == 0, "seal");
        is_mem(out.base, out.len, rec, rl, name);
        is_int(enc.seq, w->seq + 1, "seal advances seq");

        snprintf(name, sizeof(name), "%s %s: unprotect", w->file, w->record);
        ok(rec_next(&r, rec, rl, 0) == 0 && r.wire_len == rl && rec_open(&dec, &content, &type, &r) == 0, name);
        is_mem(content.base, content.len, pt, pl, "plaintext");
        is_int(type, w->type, "inner content type");
        is_int(dec.seq, w->seq + 1, "open advances seq");

        /* Wrong sequence number: the nonce differs, so the tag fails. */
        dec.seq = w->seq + 1;
        kl_buf_reset(&content);
        is_int(rec_open(&dec, &content, &type, &r), KL_ERR_BAD_RECORD_MAC, "wrong seq is bad_record_mac");
        is_int(content.len, 0, "nothing appended on failure");

        rec_dir_dispose(&enc);
        rec_dir_dispose(&dec);
        kl_buf_dispose(&out);
        kl_buf_dispose(&content);
        rfc8448_free(t);
    }
}

/* Every single-byte change of a protected record is refused; in the fragment it is bad_record_mac. */
static void test_tamper(void)
{
    struct rfc8448 *t = rfc8448_load("simple-1rtt.txt");
    size_t rl, sl;
    const uint8_t *rec = rfc8448_must(t, "server_encrypted_flight_record", &rl);
    const uint8_t *sec = rfc8448_must(t, "server_handshake_traffic_secret", &sl);
    struct rec_dir dec;
    struct kl_buf content;
    uint8_t *copy = malloc(rl);
    size_t accepted = 0, frag_not_mac = 0;

    rec_dir_init(&dec, 0);
    kl_buf_init(&content, REC_MAX_CIPHERTEXT);
    ok(rec_dir_set_secret(&dec, SUITE, sec, sl) == 0, "keys");
    for (size_t i = 0; i < rl; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            struct rec_record r;
            uint8_t type;
            memcpy(copy, rec, rl);
            copy[i] ^= (uint8_t)(1 << bit);
            dec.seq = 0;
            kl_buf_reset(&content);
            int rc = rec_next(&r, copy, rl, 0);
            if (rc == 0)
                rc = rec_open(&dec, &content, &type, &r);
            if (rc == 0 && r.wire_len == rl)
                accepted++;
            if (i >= REC_HEADER_LEN && rc != KL_ERR_BAD_RECORD_MAC)
                frag_not_mac++;
        }
    }
    is_int(accepted, 0, "no tampered record accepted (every byte, two bits each)");
    is_int(frag_not_mac, 0, "tampered fragment is always bad_record_mac");
    /* Truncated ciphertext (one byte short, with a consistent header). */
    memcpy(copy, rec, rl);
    copy[4] = (uint8_t)(copy[4] - 1);
    struct rec_record r;
    uint8_t type;
    dec.seq = 0;
    ok(rec_next(&r, copy, rl - 1, 0) == 0 && rec_open(&dec, &content, &type, &r) == KL_ERR_BAD_RECORD_MAC,
       "truncated ciphertext is bad_record_mac");
    /* Shorter than a tag plus the content type byte. */
    static const uint8_t tiny[] = {23, 3, 3, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    ok(rec_next(&r, tiny, sizeof(tiny), 0) == 0 && rec_open(&dec, &content, &type, &r) == KL_ERR_BAD_RECORD_MAC,
       "16-byte ciphertext is bad_record_mac");
    static const uint8_t empty_ad[] = {23, 3, 3, 0, 0};
    ok(rec_next(&r, empty_ad, sizeof(empty_ad), 0) == 0 && rec_open(&dec, &content, &type, &r) == KL_ERR_BAD_RECORD_MAC,
       "empty protected record is bad_record_mac");
    free(copy);
    rec_dir_dispose(&dec);
    kl_buf_dispose(&content);
    rfc8448_free(t);
}

static void test_plaintext_records(void)
{
    struct rfc8448 *t = rfc8448_load("compat-mode.txt");
    size_t l, ml;
    struct rec_record r;
    struct rec_dir in, out;
    struct kl_buf b, content;
    uint8_t type;

    rec_dir_init(&in, 0);
    rec_dir_init(&out, 1);
    kl_buf_init(&b, REC_MAX_WIRE);
    kl_buf_init(&content, REC_MAX_WIRE);
    const uint8_t *chr = rfc8448_must(t, "client_hello_record", &l);
    const uint8_t *ch = rfc8448_must(t, "client_hello", &ml);
    ok(chr[1] == 3 && chr[2] == 1, "ClientHello record carries 0x0301");
    ok(rec_next(&r, chr, l, REC_FLAG_FIRST) == 0 && r.type == 22 && r.version == 0x0301 && r.wire_len == l,
       "first ClientHello record");
    ok(rec_open(&in, &content, &type, &r) == 0 && type == 22, "plaintext open");
    is_mem(content.base, content.len, ch, ml, "ClientHello content");
    /* Partial input: every prefix is WANT_READ. */
    size_t bad = 0;
    for (size_t n = 0; n < l; n++)
        if (rec_next(&r, chr, n, REC_FLAG_FIRST) != KL_ERR_WANT_READ)
            bad++;
    is_int(bad, 0, "every proper prefix is WANT_READ");
    /* Two records back to back: the first is found alone. */
    const uint8_t *ccs = rfc8448_must(t, "client_change_cipher_spec_record", &ml);
    uint8_t two[16];
    memcpy(two, ccs, ml);
    memcpy(two + ml, ccs, ml);
    ok(rec_next(&r, two, 2 * ml, 0) == 0 && r.wire_len == ml, "first of two records");
    kl_buf_reset(&content);
    ok(rec_open(&in, &content, &type, &r) == 0 && type == 20 && content.len == 1, "CCS passes");

    /* ServerHello and CCS written as plaintext. */
    const uint8_t *sh = rfc8448_must(t, "server_hello", &ml);
    const uint8_t *shr = rfc8448_must(t, "server_hello_record", &l);
    ok(rec_seal(&out, &b, 22, sh, ml, 0) == 0, "seal ServerHello");
    is_mem(b.base, b.len, shr, l, "server_hello_record byte for byte");
    kl_buf_reset(&b);
    const uint8_t *sccs = rfc8448_must(t, "server_change_cipher_spec_record", &l);
    static const uint8_t one = 1;
    ok(rec_seal(&out, &b, 20, &one, 1, 0) == 0, "seal CCS");
    is_mem(b.base, b.len, sccs, l, "server_change_cipher_spec_record byte for byte");
    /* A CCS stays unprotected after the keys are on, and is accepted by a keyed reader. */
    size_t sl;
    const uint8_t *sec = rfc8448_must(t, "server_handshake_traffic_secret", &sl);
    ok(rec_dir_set_secret(&out, SUITE, sec, sl) == 0 && rec_dir_set_secret(&in, SUITE, sec, sl) == 0, "keys on");
    kl_buf_reset(&b);
    ok(rec_seal(&out, &b, 20, &one, 1, 0) == 0 && b.len == l && memcmp(b.base, sccs, l) == 0 && out.seq == 0,
       "CCS plaintext with keys on, no seq used");
    kl_buf_reset(&content);
    ok(rec_next(&r, ccs, ml, 0) == 0 && rec_open(&in, &content, &type, &r) == 0 && type == 20,
       "keyed reader passes CCS");
    /* But a plaintext handshake or alert record is refused once keys are on. */
    ok(rec_next(&r, chr, rfc8448_get(t, "client_hello_record", &l) ? l : 0, REC_FLAG_FIRST) == 0 &&
           rec_open(&in, &content, &type, &r) == KL_ERR_UNEXPECTED_MESSAGE,
       "plaintext handshake after keys: unexpected_message");
    static const uint8_t alert[] = {21, 3, 3, 0, 2, 2, 40};
    ok(rec_next(&r, alert, sizeof(alert), 0) == 0 && rec_open(&in, &content, &type, &r) == KL_ERR_UNEXPECTED_MESSAGE,
       "plaintext alert after keys: unexpected_message");
    rec_dir_dispose(&in);
    rec_dir_init(&in, 0);
    static const uint8_t appdata[] = {23, 3, 3, 0, 3, 1, 2, 3};
    ok(rec_next(&r, appdata, sizeof(appdata), 0) == 0 &&
           rec_open(&in, &content, &type, &r) == KL_ERR_UNEXPECTED_MESSAGE,
       "application data before keys: unexpected_message");
    ok(rec_next(&r, alert, sizeof(alert), 0) == 0 && rec_open(&in, &content, &type, &r) == 0 && type == 21,
       "plaintext alert before keys passes");
    is_int(rec_seal(&in, &b, 23, appdata, 3, 0), KL_ERR_INVALID, "sealing app data without keys refused");
    is_int(rec_seal(&in, &b, 22, appdata, 0, 0), KL_ERR_INVALID, "empty handshake record refused");
    is_int(rec_seal(&in, &b, 24, appdata, 1, 0), KL_ERR_INVALID, "unknown type refused");
    /* Bad CCS payloads. */
    static const uint8_t ccs2[] = {20, 3, 3, 0, 1, 2};
    static const uint8_t ccs3[] = {20, 3, 3, 0, 2, 1, 1};
    ok(rec_next(&r, ccs2, sizeof(ccs2), 0) == 0 && rec_open(&in, &content, &type, &r) == KL_ERR_UNEXPECTED_MESSAGE,
       "CCS 0x02 refused");
    ok(rec_next(&r, ccs3, sizeof(ccs3), 0) == 0 && rec_open(&in, &content, &type, &r) == KL_ERR_UNEXPECTED_MESSAGE,
       "two-byte CCS refused");
    rec_dir_dispose(&in);
    rec_dir_dispose(&out);
    kl_buf_dispose(&b);
    kl_buf_dispose(&content);
    rfc8448_free(t);

    /* HRR trace: the second ClientHello is 0x0303 and parses without the first-record flag. */
    t = rfc8448_load("hello-retry-request.txt");
    chr = rfc8448_must(t, "client_hello_record", &l);
    ok(rec_next(&r, chr, l, 0) == 0 && r.version == 0x0303, "second ClientHello record");
    chr = rfc8448_must(t, "client_hello_1_record", &l);
    ok(rec_next(&r, chr, l, REC_FLAG_FIRST) == 0 && r.wire_len == l, "first ClientHello record");
    rfc8448_free(t);
}

static void test_header_checks(void)
{
    uint8_t h[5 + 20] = {22, 3, 3, 0, 1, 1};
    struct rec_record r;

    /* Content types. */
    static const uint8_t bad_types[] = {0, 19, 24, 25, 255};
    for (size_t i = 0; i < sizeof(bad_types); i++) {
        h[0] = bad_types[i];
        char name[64];
        snprintf(name, sizeof(name), "outer type %u: unexpected_message", bad_types[i]);
        is_int(rec_next(&r, h, 6, 0), KL_ERR_UNEXPECTED_MESSAGE, name);
    }
    h[0] = 22;
    /* Versions. */
    h[1] = 3, h[2] = 0;
    is_int(rec_next(&r, h, 6, REC_FLAG_FIRST), 0, "0x0300 on the first record");
    /* RFC 8446 5.1: after the first ClientHello legacy_record_version "MUST be ignored for all purposes". */
    is_int(rec_next(&r, h, 6, 0), 0, "0x0300 later: ignored (5.1), no decode_error");
    h[2] = 4;
    is_int(rec_next(&r, h, 6, REC_FLAG_FIRST), 0, "0x0304 on the first record");
    is_int(rec_next(&r, h, 6, 0), 0, "0x0304 later: ignored");
    h[1] = 0x7f, h[2] = 0xff;
    is_int(rec_next(&r, h, 6, 0), 0, "0x7fff later: ignored");
    is_int(rec_next(&r, h, 6, REC_FLAG_FIRST), KL_ERR_DECODE, "0x7fff on the first record: decode_error");
    h[1] = 3, h[2] = 4;
    h[1] = 4, h[2] = 3;
    is_int(rec_next(&r, h, 6, REC_FLAG_FIRST), KL_ERR_DECODE, "0x0403 first: decode_error");
    h[1] = 'G', h[2] = 'E'; /* "GET /" is not TLS */
    h[0] = 'G';
    is_int(rec_next(&r, h, 6, REC_FLAG_FIRST), KL_ERR_UNEXPECTED_MESSAGE, "HTTP request refused");
    h[0] = 22, h[1] = 3, h[2] = 1;
    is_int(rec_next(&r, h, 6, 0), 0, "0x0301 later ok");
    /* Lengths. */
    h[3] = 0x40, h[4] = 0x00; /* 2^14 */
    is_int(rec_next(&r, h, 6, 0), KL_ERR_WANT_READ, "2^14 plaintext waits for more");
    h[4] = 0x01;
    is_int(rec_next(&r, h, 6, 0), KL_ERR_RECORD_OVERFLOW, "2^14+1 plaintext: record_overflow");
    h[0] = 23, h[3] = 0x41, h[4] = 0x00; /* 2^14 + 256 */
    is_int(rec_next(&r, h, 6, 0), KL_ERR_WANT_READ, "2^14+256 ciphertext waits for more");
    h[4] = 0x01;
    is_int(rec_next(&r, h, 6, 0), KL_ERR_RECORD_OVERFLOW, "2^14+257 ciphertext: record_overflow");
    h[3] = 0xff, h[4] = 0xff;
    is_int(rec_next(&r, h, 5, 0), KL_ERR_RECORD_OVERFLOW, "65535 fails at the header, no waiting");
    static const uint8_t zero_types[] = {20, 21, 22};
    for (size_t i = 0; i < sizeof(zero_types); i++) {
        uint8_t z[5] = {zero_types[i], 3, 3, 0, 0};
        char name[64];
        snprintf(name, sizeof(name), "zero-length type %u record refused", zero_types[i]);
        is_int(rec_next(&r, z, 5, 0), KL_ERR_UNEXPECTED_MESSAGE, name);
    }
    is_int(rec_next(&r, h, 4, 0), KL_ERR_WANT_READ, "partial header");
}

/* Seal raw inner plaintext under a key (for records the sealer would never make). */
static int seal_raw(uint8_t *rec, size_t *rec_len, const uint8_t *key, const uint8_t *iv, const uint8_t *inner,
                    size_t inner_len)
{
    struct crypto_aead a = {0};
    size_t clen = inner_len + 16;
    rec[0] = 23, rec[1] = 3, rec[2] = 3, rec[3] = (uint8_t)(clen >> 8), rec[4] = (uint8_t)clen;
    int rc = crypto_aead_init(&a, SUITE, 1, key, 16);
    if (rc == 0)
        rc = crypto_aead_seal(&a, rec + 5, iv, rec, 5, inner, inner_len); /* seq 0: nonce = iv */
    crypto_aead_dispose(&a);
    *rec_len = 5 + clen;
    return rc;
}

static void test_inner(void)
{
    uint8_t key[16], iv[12];
    static uint8_t inner[REC_MAX_PLAINTEXT + 2], rec[REC_MAX_WIRE + 64];
    size_t rl;
    struct rec_dir dec;
    struct rec_record r;
    struct kl_buf content;
    uint8_t type;

    crypto_random(key, 16);
    crypto_random(iv, 12);
    rec_dir_init(&dec, 0);
    kl_buf_init(&content, REC_MAX_CIPHERTEXT);
#define OPEN_RAW(len)                                                                                                  \
    (dec.seq = 0, kl_buf_reset(&content),                                                                              \
     seal_raw(rec, &rl, key, iv, inner, (len)) == 0 && rec_next(&r, rec, rl, 0) == 0                                   \
         ? rec_open(&dec, &content, &type, &r)                                                                         \
         : -1)
    ok(rec_dir_set_keys(&dec, SUITE, key, 16, iv) == 0, "raw keys");
    memset(inner, 0, sizeof(inner));
    is_int(OPEN_RAW(1), KL_ERR_UNEXPECTED_MESSAGE, "all-zero inner (1 byte): unexpected_message");
    is_int(OPEN_RAW(300), KL_ERR_UNEXPECTED_MESSAGE, "all-zero inner (300 bytes): unexpected_message");
    inner[0] = 'x', inner[1] = 23;
    is_int(OPEN_RAW(200), 0, "padding stripped");
    ok(type == 23 && content.len == 1 && content.base[0] == 'x', "content and type after padding");
    inner[0] = 22, inner[1] = 0;
    is_int(OPEN_RAW(50), KL_ERR_UNEXPECTED_MESSAGE, "zero-length handshake content refused");
    inner[0] = 23;
    is_int(OPEN_RAW(50), 0, "zero-length application data allowed");
    is_int(content.len, 0, "empty content");
    inner[0] = 20;
    is_int(OPEN_RAW(1), KL_ERR_UNEXPECTED_MESSAGE, "protected CCS refused");
    inner[0] = 1, inner[1] = 99;
    is_int(OPEN_RAW(2), KL_ERR_UNEXPECTED_MESSAGE, "unknown inner type refused");
    memset(inner, 'a', sizeof(inner));
    inner[REC_MAX_PLAINTEXT] = 23;
    is_int(OPEN_RAW(REC_MAX_PLAINTEXT + 1), 0, "inner plaintext 2^14 + 1 ok");
    is_int(content.len, REC_MAX_PLAINTEXT, "2^14 content");
    inner[REC_MAX_PLAINTEXT] = 'a';
    inner[REC_MAX_PLAINTEXT + 1] = 23;
    is_int(OPEN_RAW(REC_MAX_PLAINTEXT + 2), KL_ERR_RECORD_OVERFLOW, "inner plaintext 2^14 + 2: record_overflow");
    inner[REC_MAX_PLAINTEXT + 1] = 0;
    inner[100] = 23;
    memset(inner + 101, 0, sizeof(inner) - 101);
    is_int(OPEN_RAW(REC_MAX_PLAINTEXT + 2), KL_ERR_RECORD_OVERFLOW, "oversized by padding: record_overflow");
    /* Output buffer bound. */
    struct kl_buf small;
    kl_buf_init(&small, 24); /* room for the first record's fragment (19) only */
    inner[0] = 'a', inner[1] = 'b', inner[2] = 23;
    ok(seal_raw(rec, &rl, key, iv, inner, 3) == 0 && rec_next(&r, rec, rl, 0) == 0, "small record");
    dec.seq = 0;
    is_int(rec_open(&dec, &small, &type, &r), 0, "fits");
    ok(small.len == 2 && memcmp(small.base, "ab", 2) == 0, "appended");
    ok(seal_raw(rec, &rl, key, iv, (const uint8_t *)"0123456789abcdef\x17", 17) == 0 && rec_next(&r, rec, rl, 0) == 0,
       "larger record");
    dec.seq = 0;
    is_int(rec_open(&dec, &small, &type, &r), KL_ERR_OVERFLOW, "content buffer max enforced");
    is_int(small.len, 2, "content unchanged on overflow");
    kl_buf_dispose(&small);
    rec_dir_dispose(&dec);
    kl_buf_dispose(&content);
#undef OPEN_RAW
}

static void round_trip(uint16_t suite, const char *name)
{
    uint8_t secret[48];
    static uint8_t data[40000];
    size_t hl = crypto_hash_len(crypto_suite_hash(suite));
    struct rec_dir enc, dec;
    struct kl_buf out, content;
    char label[128];

    crypto_random(secret, sizeof(secret));
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7);
    rec_dir_init(&enc, 1);
    rec_dir_init(&dec, 0);
    kl_buf_init(&out, 4 * REC_MAX_WIRE);
    kl_buf_init(&content, sizeof(data) + REC_MAX_CIPHERTEXT); /* rec_open needs fragment-sized room */
    snprintf(label, sizeof(label), "%s: keys", name);
    ok(rec_dir_set_secret(&enc, suite, secret, hl) == 0 && rec_dir_set_secret(&dec, suite, secret, hl) == 0, label);
    is_int(rec_dir_set_secret(&enc, suite, secret, hl == 32 ? 48 : 32), KL_ERR_INVALID, "secret length must match");
    ok(rec_dir_set_secret(&enc, suite, secret, hl) == 0, "re-key");
    snprintf(label, sizeof(label), "%s: seal 40000 bytes", name);
    ok(rec_seal(&enc, &out, 23, data, sizeof(data), 0) == 0, label);
    size_t expect = 3 * (5 + 16 + 1) + sizeof(data);
    snprintf(label, sizeof(label), "%s: split into 3 records (16384, 16384, 7232)", name);
    ok(out.len == expect && enc.seq == 3, label);
    size_t off = 0, n = 0;
    int fail = 0;
    while (off < out.len) {
        struct rec_record r;
        uint8_t type;
        if (rec_next(&r, out.base + off, out.len - off, 0) != 0 || rec_open(&dec, &content, &type, &r) != 0 ||
            type != 23) {
            fail = 1;
            break;
        }
        n++;
        off += r.wire_len;
    }
    snprintf(label, sizeof(label), "%s: open all records", name);
    ok(!fail && n == 3, label);
    is_mem(content.base, content.len, data, sizeof(data), "round trip content");

    /* Padding: 100 zero bytes after the type. */
    kl_buf_reset(&out);
    kl_buf_reset(&content);
    ok(rec_seal(&enc, &out, 22, data, 10, 100) == 0 && out.len == 5 + 10 + 1 + 100 + 16, "padded record size");
    struct rec_record r;
    uint8_t type;
    ok(rec_next(&r, out.base, out.len, 0) == 0 && rec_open(&dec, &content, &type, &r) == 0 && type == 22 &&
           content.len == 10 && memcmp(content.base, data, 10) == 0,
       "padded record opens");
    /* Full record plus padding is clamped to 2^14 + 1 inner. */
    kl_buf_reset(&out);
    kl_buf_reset(&content);
    ok(rec_seal(&enc, &out, 23, data, REC_MAX_PLAINTEXT, 500) == 0 && out.len == 5 + REC_MAX_PLAINTEXT + 1 + 16,
       "padding clamped at the limit");
    ok(rec_next(&r, out.base, out.len, 0) == 0 && rec_open(&dec, &content, &type, &r) == 0, "clamped opens");

    /* KeyUpdate on both sides. */
    uint8_t next[48];
    ok(ks_update_secret(crypto_suite_hash(suite), next, secret) == 0, "next secret");
    ok(rec_dir_update(&enc) == 0 && rec_dir_update(&dec) == 0 && enc.seq == 0 && memcmp(enc.secret, next, hl) == 0,
       "key update: traffic upd, seq 0");
    kl_buf_reset(&out);
    kl_buf_reset(&content);
    ok(rec_seal(&enc, &out, 23, data, 100, 0) == 0 && rec_next(&r, out.base, out.len, 0) == 0 &&
           rec_open(&dec, &content, &type, &r) == 0 && content.len == 100,
       "records after key update");
    /* A reader still on the old key fails. */
    struct rec_dir old;
    rec_dir_init(&old, 0);
    ok(rec_dir_set_secret(&old, suite, secret, hl) == 0, "old key");
    is_int(rec_open(&old, &content, &type, &r), KL_ERR_BAD_RECORD_MAC, "old key rejects updated records");
    rec_dir_dispose(&old);

    /* Empty application data record. */
    kl_buf_reset(&out);
    ok(rec_seal(&enc, &out, 23, NULL, 0, 0) == 0 && out.len == 5 + 1 + 16, "empty app data record");

    /* Output bound: nothing written on overflow. */
    struct kl_buf tiny;
    kl_buf_init(&tiny, 30);
    uint64_t seq = enc.seq;
    is_int(rec_seal(&enc, &tiny, 23, data, 20, 0), KL_ERR_OVERFLOW, "output max enforced");
    ok(tiny.len == 0 && enc.seq == seq, "no partial record, seq unchanged");
    kl_buf_dispose(&tiny);

    rec_dir_dispose(&enc);
    rec_dir_dispose(&dec);
    kl_buf_dispose(&out);
    kl_buf_dispose(&content);
}

static void test_limits(void)
{
    uint8_t secret[32] = {1}, data[4] = {0};
    struct rec_dir enc;
    struct kl_buf out;
    kl_buf_init(&out, REC_MAX_WIRE);

    rec_dir_init(&enc, 1);
    ok(rec_dir_set_secret(&enc, TLS_AES_128_GCM_SHA256, secret, 32) == 0, "aes keys");
    ok(!rec_dir_needs_update(&enc), "fresh key needs no update");
    enc.seq = REC_AES_GCM_SOFT_LIMIT;
    ok(rec_dir_needs_update(&enc), "AES-GCM soft limit asks for KeyUpdate");
    enc.seq = REC_AES_GCM_LIMIT - 1;
    is_int(rec_seal(&enc, &out, 23, data, 4, 0), 0, "last record under the 2^24.5 limit");
    is_int(rec_seal(&enc, &out, 23, data, 4, 0), KL_ERR_INTERNAL, "AES-GCM usage limit refuses");
    ok(rec_dir_update(&enc) == 0 && rec_seal(&enc, &out, 23, data, 4, 0) == 0, "KeyUpdate resets the limit");

    ok(rec_dir_set_secret(&enc, TLS_CHACHA20_POLY1305_SHA256, secret, 32) == 0, "chacha keys");
    enc.seq = REC_AES_GCM_LIMIT + 5;
    ok(!rec_dir_needs_update(&enc) && rec_seal(&enc, &out, 23, data, 4, 0) == 0, "chacha beyond the AES limit");
    enc.seq = UINT64_MAX - 1;
    is_int(rec_seal(&enc, &out, 23, data, 4, 0), 0, "chacha at seq 2^64-2");
    is_int(rec_seal(&enc, &out, 23, data, 4, 0), KL_ERR_INTERNAL, "sequence number never wraps");
    ok(rec_dir_needs_update(&enc), "wrap near: KeyUpdate");

    struct rec_dir dec;
    rec_dir_init(&dec, 0);
    ok(rec_dir_set_secret(&dec, TLS_CHACHA20_POLY1305_SHA256, secret, 32) == 0, "reader");
    dec.seq = UINT64_MAX;
    struct rec_record r;
    uint8_t type;
    struct kl_buf content;
    kl_buf_init(&content, REC_MAX_WIRE);
    ok(rec_next(&r, out.base, out.len, 0) == 0, "a record");
    is_int(rec_open(&dec, &content, &type, &r), KL_ERR_INTERNAL, "reader refuses past 2^64-1");
    struct rec_dir raw;
    rec_dir_init(&raw, 1);
    uint8_t key[16] = {0}, iv[12] = {0};
    ok(rec_dir_set_keys(&raw, SUITE, key, 16, iv) == 0, "raw keys");
    is_int(rec_dir_update(&raw), KL_ERR_INVALID, "no KeyUpdate without a secret");
    rec_dir_dispose(&raw);
    rec_dir_dispose(&dec);
    rec_dir_dispose(&enc);
    ok(!enc.keyed && enc.encrypt == 1, "dispose keeps direction, drops keys");
    kl_buf_dispose(&out);
    kl_buf_dispose(&content);
}

/* RFC 8449: a peer's record_size_limit bounds the inner plaintext of our protected records. */
static void test_record_size_limit(void)
{
    uint8_t secret[32];
    static uint8_t data[1000];
    struct rec_dir enc, dec, plain;
    struct kl_buf out, content;
    crypto_random(secret, sizeof(secret));
    memset(data, 0x61, sizeof(data));
    rec_dir_init(&enc, 1);
    rec_dir_init(&dec, 0);
    rec_dir_init(&plain, 1);
    kl_buf_init(&out, 1 << 16);
    kl_buf_init(&content, 1 << 16);
    ok(rec_dir_set_secret(&enc, TLS_AES_128_GCM_SHA256, secret, 32) == 0 &&
           rec_dir_set_secret(&dec, TLS_AES_128_GCM_SHA256, secret, 32) == 0,
       "keys");
    rec_dir_set_plaintext_limit(&enc, 100);
    is_int(rec_seal(&enc, &out, REC_TYPE_APPLICATION_DATA, data, sizeof(data), 0), 0, "seal 1000 bytes, limit 100");
    size_t off = 0, n = 0, biggest = 0;
    int fail = 0;
    while (off < out.len) {
        struct rec_record r;
        uint8_t type;
        size_t before = content.len;
        if (rec_next(&r, out.base + off, out.len - off, 0) != 0 || rec_open(&dec, &content, &type, &r) != 0) {
            fail = 1;
            break;
        }
        if (content.len - before > biggest)
            biggest = content.len - before;
        n++;
        off += r.wire_len;
    }
    ok(!fail && n == 11, "1000 bytes → 11 records (10 x 99 + 10)");
    is_int(biggest, 99, "content per record is limit - 1 (the inner type byte counts, RFC 8449 4)");
    is_mem(content.base, content.len, data, sizeof(data), "round trip");
    /* Padding is cut so the inner plaintext stays within the limit. */
    kl_buf_reset(&out);
    is_int(rec_seal(&enc, &out, REC_TYPE_APPLICATION_DATA, data, 50, 500), 0, "seal 50 bytes asking 500 of padding");
    is_int(out.len, 5 + 100 + CRYPTO_TAG_LEN, "inner plaintext padded to exactly the limit, not past it");
    /* Out-of-range values are clamped: over 2^14 + 1 means no limit, under 64 means 64. */
    rec_dir_set_plaintext_limit(&enc, 0xffff);
    is_int(enc.plaintext_limit, REC_MAX_PLAINTEXT + 1, "limit over 2^14 + 1 clamped");
    rec_dir_set_plaintext_limit(&enc, 10);
    is_int(enc.plaintext_limit, 64, "limit under 64 raised to 64");
    /* Unprotected records are not subject to it (RFC 8449 4). */
    rec_dir_set_plaintext_limit(&plain, 64);
    kl_buf_reset(&out);
    is_int(rec_seal(&plain, &out, REC_TYPE_HANDSHAKE, data, sizeof(data), 0), 0, "plaintext handshake, limit 64");
    is_int(out.len, 5 + sizeof(data), "  one record: the limit applies to protected records only");
    /* It survives a key change (KeyUpdate) and goes with rec_dir_dispose. */
    rec_dir_set_plaintext_limit(&enc, 200);
    is_int(rec_dir_update(&enc), 0, "KeyUpdate");
    is_int(enc.plaintext_limit, 200, "limit kept across KeyUpdate");
    rec_dir_dispose(&enc);
    is_int(enc.plaintext_limit, 0, "dispose clears it");
    rec_dir_dispose(&dec);
    kl_buf_dispose(&out);
    kl_buf_dispose(&content);
}

int main(void)
{
    if (crypto_init() != 0) {
        printf("Bail out! crypto_init\n");
        return 1;
    }
    test_rfc8448_rows();
    test_tamper();
    test_plaintext_records();
    test_header_checks();
    test_inner();
    round_trip(TLS_AES_128_GCM_SHA256, "aes-128-gcm");
    round_trip(TLS_AES_256_GCM_SHA384, "aes-256-gcm");
    round_trip(TLS_CHACHA20_POLY1305_SHA256, "chacha20-poly1305");
    test_limits();
    test_record_size_limit();
    return kl_test_done();
}
