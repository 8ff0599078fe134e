/*
 * ticket.c - stateless session tickets: encoding, sealing and opening. Contracts in ticket.h.
 */
#include <string.h>
#include <time.h>
#include "ticket.h"
#include "wire.h"

/* Domain separation for the ticket AEAD key: HKDF-Extract salt and the Expand info prefix. */
static const char ticket_salt[] = "keyless ticket v1";
static const char ticket_info[] = "keyless ticket aead key";

uint64_t ticket_now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int put_u64(struct kl_buf *b, uint64_t v)
{
    int ret;
    if ((ret = wire_put_u32(b, (uint32_t)(v >> 32))) != 0)
        return ret;
    return wire_put_u32(b, (uint32_t)v);
}

static int read_u64(struct wire_reader *r, uint64_t *v)
{
    uint32_t hi, lo;
    int ret;
    if ((ret = wire_read_u32(r, &hi)) != 0 || (ret = wire_read_u32(r, &lo)) != 0)
        return ret;
    *v = (uint64_t)hi << 32 | lo;
    return 0;
}

/* A NUL-terminated text of at most 255 bytes as opaque<0..255>. */
static int put_text(struct kl_buf *b, const char *s)
{
    size_t n = strnlen(s, 255), m;
    int ret;
    if ((ret = wire_block_open(b, &m, 1)) != 0 || (ret = wire_put_bytes(b, s, n)) != 0)
        return ret;
    return wire_block_close(b, m, 1);
}

static int read_text(struct wire_reader *r, char *dst, size_t cap)
{
    struct kl_span s;
    int ret;
    if ((ret = wire_read_vec_span(r, &s, 1, 0, 255)) != 0)
        return ret;
    if (s.len >= cap || (s.len != 0 && memchr(s.base, 0, s.len) != NULL))
        return KL_ERR_DECODE;
    if (s.len != 0)
        memcpy(dst, s.base, s.len);
    dst[s.len] = '\0';
    return 0;
}

static int state_encode(struct kl_buf *b, const struct ticket_state *st)
{
    size_t m;
    int ret;
    KL_ENSURE(st->psk_len == 32 || st->psk_len == 48, KL_ERR_INVALID);
    KL_TRY(wire_put_u16(b, st->suite));
    KL_TRY(wire_block_open(b, &m, 1));
    KL_TRY(wire_put_bytes(b, st->psk, st->psk_len));
    KL_TRY(wire_block_close(b, m, 1));
    KL_TRY(put_u64(b, st->created_ms));
    KL_TRY(wire_put_u32(b, st->lifetime));
    KL_TRY(wire_put_u32(b, st->age_add));
    KL_TRY(wire_put_u32(b, st->max_early_data));
    KL_TRY(wire_put_bytes(b, st->host_id, TLS_HOST_ID_LEN));
    KL_TRY(wire_put_bytes(b, st->cert_sha256, 32));
    KL_TRY(put_text(b, st->sni));
    KL_TRY(put_text(b, st->alpn));
    KL_TRY(wire_put_u8(b, st->peer.present ? 1 : 0));
    if (st->peer.present) {
        KL_TRY(wire_put_bytes(b, st->peer.sha256, 32));
        KL_TRY(put_text(b, st->peer.subject_cn));
        KL_TRY(put_text(b, st->peer.san));
        KL_TRY(put_text(b, st->peer.subject));
    }
exit:
    return ret;
}

static int state_decode(struct ticket_state *st, const uint8_t *p, size_t len)
{
    struct wire_reader r;
    struct kl_span psk;
    uint8_t present;
    int ret;
    memset(st, 0, sizeof(*st));
    wire_reader_init(&r, p, len);
    KL_TRY(wire_read_u16(&r, &st->suite));
    KL_TRY(wire_read_vec_span(&r, &psk, 1, 32, 48));
    KL_ENSURE(psk.len == crypto_hash_len(crypto_suite_hash(st->suite)), KL_ERR_DECODE);
    memcpy(st->psk, psk.base, psk.len);
    st->psk_len = psk.len;
    KL_TRY(read_u64(&r, &st->created_ms));
    KL_TRY(wire_read_u32(&r, &st->lifetime));
    KL_TRY(wire_read_u32(&r, &st->age_add));
    KL_TRY(wire_read_u32(&r, &st->max_early_data));
    KL_TRY(wire_read_copy(&r, st->host_id, TLS_HOST_ID_LEN));
    KL_TRY(wire_read_copy(&r, st->cert_sha256, 32));
    KL_TRY(read_text(&r, st->sni, sizeof(st->sni)));
    KL_TRY(read_text(&r, st->alpn, sizeof(st->alpn)));
    KL_TRY(wire_read_u8(&r, &present));
    KL_ENSURE(present <= 1, KL_ERR_DECODE);
    if (present) {
        st->peer.present = 1;
        KL_TRY(wire_read_copy(&r, st->peer.sha256, 32));
        KL_TRY(read_text(&r, st->peer.subject_cn, sizeof(st->peer.subject_cn)));
        KL_TRY(read_text(&r, st->peer.san, sizeof(st->peer.san)));
        KL_TRY(read_text(&r, st->peer.subject, sizeof(st->peer.subject)));
    }
    KL_TRY(wire_reader_end(&r));
exit:
    if (ret != 0)
        crypto_wipe(st, sizeof(*st));
    return ret;
}

/* The header's AEAD key: HKDF-SHA256 over the epoch secret, bound to the key id and the epoch. */
static int ticket_aead(struct crypto_aead *a, int encrypt, const struct tls_ticket_key *key)
{
    uint8_t prk[32], k[32], info[sizeof(ticket_info) - 1 + TLS_TICKET_KEY_ID_LEN + 8];
    struct kl_buf b;
    int ret;
    kl_buf_init_fixed(&b, info, sizeof(info));
    KL_TRY(wire_put_bytes(&b, ticket_info, sizeof(ticket_info) - 1));
    KL_TRY(wire_put_bytes(&b, key->key_id, TLS_TICKET_KEY_ID_LEN));
    KL_TRY(put_u64(&b, key->epoch));
    KL_TRY(crypto_hkdf_extract(CRYPTO_HASH_SHA256, prk, (const uint8_t *)ticket_salt, sizeof(ticket_salt) - 1,
                               key->secret, TLS_TICKET_SECRET_LEN));
    KL_TRY(crypto_hkdf_expand(CRYPTO_HASH_SHA256, k, sizeof(k), prk, sizeof(prk), info, b.len));
    /* AES-256-GCM: the AEAD of TLS_AES_256_GCM_SHA384, keyed with our own key. */
    KL_TRY(crypto_aead_init(a, TLS_AES_256_GCM_SHA384, encrypt, k, sizeof(k)));
exit:
    crypto_wipe(prk, sizeof(prk));
    crypto_wipe(k, sizeof(k));
    return ret;
}

int ticket_seal(struct kl_buf *out, const struct tls_ticket_key *key, const struct ticket_state *st)
{
    uint8_t plain[TICKET_PLAIN_MAX], hdr[TICKET_HEADER_LEN], nonce[TICKET_NONCE_LEN];
    struct crypto_aead a = {0};
    struct kl_buf p, h;
    size_t start = out->len;
    int ret;

    kl_buf_init_fixed(&p, plain, sizeof(plain));
    kl_buf_init_fixed(&h, hdr, sizeof(hdr));
    KL_TRY(state_encode(&p, st));
    crypto_random(nonce, sizeof(nonce));
    KL_TRY(wire_put_u8(&h, TICKET_VERSION));
    KL_TRY(wire_put_bytes(&h, key->key_id, TLS_TICKET_KEY_ID_LEN));
    KL_TRY(put_u64(&h, key->epoch));
    KL_TRY(wire_put_bytes(&h, nonce, sizeof(nonce)));
    KL_TRY(wire_put_bytes(out, hdr, sizeof(hdr)));
    KL_TRY(kl_buf_reserve(out, p.len + CRYPTO_TAG_LEN));
    KL_TRY(ticket_aead(&a, 1, key));
    KL_TRY(crypto_aead_seal(&a, out->base + out->len, nonce, hdr, sizeof(hdr), plain, p.len));
    out->len += p.len + CRYPTO_TAG_LEN;
exit:
    if (ret != 0)
        out->len = start;
    crypto_aead_dispose(&a);
    crypto_wipe(plain, sizeof(plain));
    return ret;
}

int ticket_open(struct ticket_state *st, const struct tls_ticket_keys *keys, const uint8_t *ticket, size_t len)
{
    uint8_t plain[TICKET_PLAIN_MAX], key_id[TLS_TICKET_KEY_ID_LEN], nonce[TICKET_NONCE_LEN], ver;
    const struct tls_ticket_key *key = NULL;
    struct crypto_aead a = {0};
    struct wire_reader r;
    struct kl_span body;
    uint64_t epoch;
    int ret;

    memset(st, 0, sizeof(*st));
    wire_reader_init(&r, ticket, len);
    KL_ENSURE(len >= TICKET_HEADER_LEN + CRYPTO_TAG_LEN && len - TICKET_HEADER_LEN - CRYPTO_TAG_LEN <= sizeof(plain),
              KL_ERR_INVALID);
    KL_ENSURE(wire_read_u8(&r, &ver) == 0 && ver == TICKET_VERSION, KL_ERR_INVALID);
    KL_ENSURE(wire_read_copy(&r, key_id, sizeof(key_id)) == 0 && read_u64(&r, &epoch) == 0 &&
                  wire_read_copy(&r, nonce, sizeof(nonce)) == 0,
              KL_ERR_INVALID);
    for (size_t i = 0; keys != NULL && i < keys->n && i < TLS_TICKET_KEYS_MAX; i++) {
        if (keys->keys[i].epoch == epoch && memcmp(keys->keys[i].key_id, key_id, sizeof(key_id)) == 0)
            key = &keys->keys[i];
    }
    KL_ENSURE(key != NULL, KL_ERR_INVALID); /* an epoch we no longer (or never) held */
    KL_ENSURE(wire_read_span(&r, &body, wire_remaining(&r)) == 0, KL_ERR_INVALID);
    KL_TRY(ticket_aead(&a, 0, key));
    ret = crypto_aead_open(&a, plain, nonce, ticket, TICKET_HEADER_LEN, body.base, body.len);
    KL_ENSURE(ret == 0, KL_ERR_INVALID);
    KL_ENSURE(state_decode(st, plain, body.len - CRYPTO_TAG_LEN) == 0, KL_ERR_INVALID);
exit:
    crypto_aead_dispose(&a);
    crypto_wipe(plain, sizeof(plain));
    if (ret != 0)
        crypto_wipe(st, sizeof(*st));
    return ret;
}
