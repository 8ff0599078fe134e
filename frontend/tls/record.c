/*
 * record.c - TLS 1.3 record layer (RFC 8446 section 5). Contracts in record.h.
 */
#include <string.h>
#include "key_schedule.h"
#include "record.h"
#include "wire.h"

void rec_dir_init(struct rec_dir *d, int encrypt)
{
    memset(d, 0, sizeof(*d));
    d->encrypt = encrypt ? 1 : 0;
}

static uint64_t key_limit(uint16_t suite)
{
    /* 5.5: AES-GCM 2^24.5 full-size records; ChaCha20-Poly1305 > 2^64 (only 5.3's wrap applies). */
    if (suite == 0x1301 || suite == 0x1302)
        return REC_AES_GCM_LIMIT;
    return UINT64_MAX;
}

int rec_dir_set_keys(struct rec_dir *d, uint16_t suite, const uint8_t *key, size_t key_len,
                     const uint8_t iv[CRYPTO_IV_LEN])
{
    int ret;
    KL_TRY(crypto_aead_init(&d->aead, suite, d->encrypt, key, key_len));
    memcpy(d->iv, iv, CRYPTO_IV_LEN);
    d->suite = suite;
    d->seq = 0;
    d->limit = key_limit(suite);
    d->keyed = 1;
    crypto_wipe(d->secret, sizeof(d->secret));
    d->secret_len = 0;
    ret = 0;
exit:
    if (ret != 0)
        rec_dir_dispose(d);
    return ret;
}

int rec_dir_set_secret(struct rec_dir *d, uint16_t suite, const uint8_t *secret, size_t secret_len)
{
    int ret;
    uint8_t key[CRYPTO_MAX_KEY], iv[CRYPTO_IV_LEN];

    KL_ENSURE(crypto_suite_hash(suite) != 0 && secret_len == crypto_hash_len(crypto_suite_hash(suite)), KL_ERR_INVALID);
    KL_TRY(ks_traffic_key_iv(suite, key, iv, secret));
    KL_TRY(rec_dir_set_keys(d, suite, key, crypto_suite_key_len(suite), iv));
    /* Kept only for KeyUpdate; memmove because callers may pass d->secret itself. */
    memmove(d->secret, secret, secret_len);
    d->secret_len = secret_len;
    ret = 0;
exit:
    crypto_wipe(key, sizeof(key));
    crypto_wipe(iv, sizeof(iv));
    return ret;
}

int rec_dir_update(struct rec_dir *d)
{
    int ret;
    uint8_t next[CRYPTO_MAX_HASH];
    KL_ENSURE(d->keyed && d->secret_len != 0, KL_ERR_INVALID);
    /* 7.2: application_traffic_secret_N+1 = HKDF-Expand-Label(N, "traffic upd", "", Hash.length). */
    KL_TRY(ks_update_secret(crypto_suite_hash(d->suite), next, d->secret));
    KL_TRY(rec_dir_set_secret(d, d->suite, next, d->secret_len));
    ret = 0;
exit:
    crypto_wipe(next, sizeof(next));
    return ret;
}

int rec_dir_needs_update(const struct rec_dir *d)
{
    if (!d->keyed)
        return 0;
    if (d->limit == REC_AES_GCM_LIMIT)
        return d->seq >= REC_AES_GCM_SOFT_LIMIT;
    /* ChaCha20-Poly1305: far from any bound in practice, but ask before the wrap. */
    return d->seq >= UINT64_MAX - (1ULL << 20);
}

void rec_dir_set_plaintext_limit(struct rec_dir *d, size_t limit)
{
    if (limit > REC_MAX_PLAINTEXT + 1)
        limit = REC_MAX_PLAINTEXT + 1;
    if (limit < 64)
        limit = 64;
    d->plaintext_limit = limit;
}

/* The most content bytes one record of this type may carry (RFC 8449 applies to protected records only). */
static size_t max_content(const struct rec_dir *d, uint8_t type)
{
    if (!d->keyed || type == REC_TYPE_CHANGE_CIPHER_SPEC || d->plaintext_limit == 0)
        return REC_MAX_PLAINTEXT;
    /* RFC 8449 4: "an endpoint MUST NOT generate a protected record with plaintext that is larger than
     * the RecordSizeLimit value it receives from its peer"; in TLS 1.3 that counts the inner type byte. */
    return d->plaintext_limit - 1;
}

void rec_dir_dispose(struct rec_dir *d)
{
    int encrypt = d->encrypt;
    crypto_aead_dispose(&d->aead);
    crypto_wipe(d, sizeof(*d));
    d->encrypt = encrypt;
}

int rec_next(struct rec_record *r, const uint8_t *in, size_t in_len, unsigned flags)
{
    int ret;
    struct wire_reader rd;
    uint8_t type;
    uint16_t version, len;

    wire_reader_init(&rd, in, in_len);
    if (in_len < REC_HEADER_LEN)
        return KL_ERR_WANT_READ;
    KL_TRY(wire_read_u8(&rd, &type));
    KL_TRY(wire_read_u16(&rd, &version));
    KL_TRY(wire_read_u16(&rd, &len));
    switch (type) {
    case REC_TYPE_CHANGE_CIPHER_SPEC:
    case REC_TYPE_ALERT:
    case REC_TYPE_HANDSHAKE:
    case REC_TYPE_APPLICATION_DATA:
        break;
    default:
        /* 5: "If a TLS implementation receives an unexpected record type, it MUST terminate ... unexpected_message". */
        return KL_ERR_UNEXPECTED_MESSAGE;
    }
    /*
     * 5.1: legacy_record_version "MUST be ignored for all purposes" except in the initial
     * ClientHello (D.2 and 5.1: "MAY be ignored" there, any 0x03xx seen in the wild). We check
     * that one only, as the sign that the peer speaks TLS at all (0x03xx: decode_error
     * otherwise); every later record's version is not looked at.
     */
    if ((flags & REC_FLAG_FIRST) && (version >> 8) != 0x03)
        return KL_ERR_DECODE;
    /* 5.1/5.2: "The length MUST NOT exceed 2^14 bytes [2^14 + 256 for TLSCiphertext] ... record_overflow". */
    if (len > (type == REC_TYPE_APPLICATION_DATA ? REC_MAX_CIPHERTEXT : REC_MAX_PLAINTEXT))
        return KL_ERR_RECORD_OVERFLOW;
    /* 5.1: "Implementations MUST NOT send zero-length fragments of Handshake types"; same for alerts and CCS. */
    if (len == 0 && type != REC_TYPE_APPLICATION_DATA)
        return KL_ERR_UNEXPECTED_MESSAGE;
    if (wire_remaining(&rd) < len)
        return KL_ERR_WANT_READ;
    r->type = type;
    r->version = version;
    r->header = in;
    KL_TRY(wire_read_span(&rd, &r->fragment, len));
    r->wire_len = REC_HEADER_LEN + (size_t)len;
    ret = 0;
exit:
    return ret;
}

/* nonce = iv XOR the 64-bit sequence number, left-padded to the IV length (5.3). */
static void make_nonce(uint8_t nonce[CRYPTO_IV_LEN], const struct rec_dir *d)
{
    memcpy(nonce, d->iv, CRYPTO_IV_LEN);
    for (size_t i = 0; i < 8; i++)
        nonce[CRYPTO_IV_LEN - 1 - i] ^= (uint8_t)(d->seq >> (8 * i));
}

int rec_open(struct rec_dir *d, struct kl_buf *content, uint8_t *type_p, const struct rec_record *r)
{
    int ret;
    uint8_t nonce[CRYPTO_IV_LEN];
    size_t start = content->len;

    if (r->type == REC_TYPE_CHANGE_CIPHER_SPEC) {
        /* 5: a CCS is the single byte 0x01 and is never protected. */
        if (r->fragment.len != 1 || r->fragment.base[0] != 0x01)
            return KL_ERR_UNEXPECTED_MESSAGE;
        *type_p = r->type;
        return kl_buf_append(content, r->fragment.base, 1);
    }
    if (!d->keyed) {
        /* Nothing is sent as plaintext application data in TLS 1.3. */
        if (r->type == REC_TYPE_APPLICATION_DATA)
            return KL_ERR_UNEXPECTED_MESSAGE;
        *type_p = r->type;
        return kl_buf_append(content, r->fragment.base, r->fragment.len);
    }
    /* 5: once keys are on, everything but CCS arrives as application_data. */
    if (r->type != REC_TYPE_APPLICATION_DATA)
        return KL_ERR_UNEXPECTED_MESSAGE;
    if (r->fragment.len < CRYPTO_TAG_LEN + 1)
        return KL_ERR_BAD_RECORD_MAC;
    /*
     * 5.3: the sequence number must not wrap. 5.5's usage limits bind the sender (our
     * rec_seal enforces them); a peer that ignores them is not refused for it.
     */
    if (d->seq == UINT64_MAX)
        return KL_ERR_INTERNAL;
    KL_TRY(kl_buf_reserve(content, r->fragment.len));
    make_nonce(nonce, d);
    uint8_t *p = content->base + start;
    KL_TRY(crypto_aead_open(&d->aead, p, nonce, r->header, REC_HEADER_LEN, r->fragment.base, r->fragment.len));
    d->seq++;
    /* 5.4: the content type is the last non-zero byte; the zeros after it are padding. */
    size_t n = r->fragment.len - CRYPTO_TAG_LEN;
    while (n > 0 && p[n - 1] == 0)
        n--;
    if (n == 0) {
        /* "If a receiving implementation does not find a non-zero octet ... unexpected_message". */
        ret = KL_ERR_UNEXPECTED_MESSAGE;
        goto exit;
    }
    /* 5.4: "The length MUST NOT exceed 2^14 + 1 octets" for the inner plaintext. */
    if (r->fragment.len - CRYPTO_TAG_LEN > REC_MAX_PLAINTEXT + 1) {
        ret = KL_ERR_RECORD_OVERFLOW;
        goto exit;
    }
    uint8_t type = p[n - 1];
    n--;
    /* 5.1: no zero-length handshake or alert content, protected or not. */
    if (n == 0 && type != REC_TYPE_APPLICATION_DATA) {
        ret = KL_ERR_UNEXPECTED_MESSAGE;
        goto exit;
    }
    if (type != REC_TYPE_ALERT && type != REC_TYPE_HANDSHAKE && type != REC_TYPE_APPLICATION_DATA) {
        /* A protected CCS or an unknown inner type. */
        ret = KL_ERR_UNEXPECTED_MESSAGE;
        goto exit;
    }
    /* Wipe the padding and type byte past the content. */
    crypto_wipe(p + n, r->fragment.len - CRYPTO_TAG_LEN - n);
    content->len = start + n;
    *type_p = type;
    ret = 0;
exit:
    if (ret != 0 && content->base != NULL && content->cap > start)
        crypto_wipe(content->base + start,
                    content->cap - start < r->fragment.len ? content->cap - start : r->fragment.len);
    return ret;
}

/* Append one record holding len (<= 2^14) bytes of content type type. */
static int seal_one(struct rec_dir *d, struct kl_buf *out, uint8_t type, const uint8_t *data, size_t len, size_t pad)
{
    int ret;
    uint8_t nonce[CRYPTO_IV_LEN];
    size_t start = out->len;

    /* A CCS is never protected (5, D.4), even when sent after the handshake keys are on. */
    if (!d->keyed || type == REC_TYPE_CHANGE_CIPHER_SPEC) {
        KL_TRY(wire_put_u8(out, type));
        KL_TRY(wire_put_u16(out, 0x0303));
        KL_TRY(wire_put_u16(out, (uint16_t)len));
        KL_TRY(wire_put_bytes(out, data, len));
        ret = 0;
        goto exit;
    }
    if (len + 1 + pad > max_content(d, type) + 1)
        pad = max_content(d, type) - len;
    /* 5.3/5.5: never reuse a nonce, never exceed the key's usage limit. */
    KL_ENSURE(d->seq < d->limit, KL_ERR_INTERNAL);
    size_t inner = len + 1 + pad, clen = inner + CRYPTO_TAG_LEN;
    KL_TRY(kl_buf_reserve(out, REC_HEADER_LEN + clen));
    KL_TRY(wire_put_u8(out, REC_TYPE_APPLICATION_DATA));
    KL_TRY(wire_put_u16(out, 0x0303));
    KL_TRY(wire_put_u16(out, (uint16_t)clen));
    /* TLSInnerPlaintext = content ‖ type ‖ zeros, encrypted straight from the caller's data. */
    static const uint8_t zeros[REC_MAX_PLAINTEXT];
    struct kl_span parts[3] = {{data, len}, {&type, 1}, {zeros, pad}};
    make_nonce(nonce, d);
    KL_TRY(crypto_aead_seal_v(&d->aead, out->base + out->len, nonce, out->base + start, REC_HEADER_LEN, parts, 3));
    out->len += clen;
    d->seq++;
    ret = 0;
exit:
    if (ret != 0) {
        if (out->base != NULL && out->cap > start)
            crypto_wipe(out->base + start, out->cap - start);
        out->len = start;
    }
    return ret;
}

int rec_seal(struct rec_dir *d, struct kl_buf *out, uint8_t type, const uint8_t *data, size_t len, size_t pad)
{
    int ret;
    size_t start = out->len, done = 0;

    if (type != REC_TYPE_ALERT && type != REC_TYPE_HANDSHAKE && type != REC_TYPE_APPLICATION_DATA &&
        type != REC_TYPE_CHANGE_CIPHER_SPEC)
        return KL_ERR_INVALID;
    if (len == 0 && type != REC_TYPE_APPLICATION_DATA)
        return KL_ERR_INVALID;
    /* 5: application data is never sent before keys are on. */
    if (type == REC_TYPE_APPLICATION_DATA && !d->keyed)
        return KL_ERR_INVALID;
    do {
        size_t max = max_content(d, type);
        size_t n = len - done > max ? max : len - done;
        /* data may be NULL for an empty application data record: no pointer arithmetic on it then. */
        KL_TRY(seal_one(d, out, type, n > 0 ? data + done : data, n, pad));
        done += n;
    } while (done < len);
    ret = 0;
exit:
    if (ret != 0)
        out->len = start;
    return ret;
}

int rec_alert(struct rec_dir *d, struct kl_buf *out, uint8_t description)
{
    /* 6: close_notify and user_canceled are warnings; every other alert is fatal in TLS 1.3. */
    uint8_t level = (description == 0 || description == 90) ? 1 : 2;
    uint8_t a[2] = {level, description};
    return rec_seal(d, out, REC_TYPE_ALERT, a, sizeof(a), 0);
}
