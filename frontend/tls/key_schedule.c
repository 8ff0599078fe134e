/*
 * key_schedule.c - RFC 8446 section 7 on top of crypto.c's HKDF. Contracts in key_schedule.h.
 */
#include <stdio.h>
#include <string.h>
#include "key_schedule.h"
#include "wire.h"

/* ---- transcript ---- */

int ks_transcript_init(struct ks_transcript *t, enum crypto_hash_alg alg)
{
    return crypto_hash_ctx_init(&t->h, alg);
}

int ks_transcript_add(struct ks_transcript *t, const uint8_t *msg, size_t msg_len)
{
    return crypto_hash_ctx_update(&t->h, msg, msg_len);
}

int ks_transcript_hash(const struct ks_transcript *t, uint8_t *out)
{
    return crypto_hash_ctx_peek(&t->h, out);
}

size_t ks_transcript_hash_len(const struct ks_transcript *t)
{
    return crypto_hash_len(t->h.alg);
}

int ks_transcript_hrr_rewrite(struct ks_transcript *t)
{
    int ret;
    uint8_t mh[4 + CRYPTO_MAX_HASH];
    size_t hl = crypto_hash_len(t->h.alg);

    /*
     * 4.4.1: "the value of ClientHello1 is replaced with a special synthetic handshake
     * message of handshake type "message_hash" containing Hash(ClientHello1)".
     */
    mh[0] = 0xfe; /* HandshakeType message_hash (254) */
    mh[1] = 0;
    mh[2] = 0;
    mh[3] = (uint8_t)hl;
    KL_TRY(crypto_hash_ctx_peek(&t->h, mh + 4));
    KL_TRY(crypto_hash_ctx_reset(&t->h));
    KL_TRY(crypto_hash_ctx_update(&t->h, mh, 4 + hl));
    ret = 0;
exit:
    return ret;
}

void ks_transcript_dispose(struct ks_transcript *t)
{
    crypto_hash_ctx_dispose(&t->h);
}

/* ---- 7.1 ---- */

int ks_hkdf_expand_label(enum crypto_hash_alg alg, uint8_t *out, size_t out_len, const uint8_t *secret,
                         const char *label, const uint8_t *context, size_t context_len)
{
    int ret;
    static const char prefix[] = "tls13 ";
    size_t label_len = strlen(label), hl = crypto_hash_len(alg);
    /* HkdfLabel: uint16 length ‖ opaque label<7..255> ‖ opaque context<0..255>. */
    uint8_t info[2 + 1 + 255 + 1 + 255];
    struct kl_buf b;
    size_t mark;

    kl_buf_init_fixed(&b, info, sizeof(info));

    KL_ENSURE(hl != 0 && out_len <= 0xffff && label_len <= 255 - (sizeof(prefix) - 1) && context_len <= 255,
              KL_ERR_INVALID);
    KL_TRY(wire_put_u16(&b, (uint16_t)out_len));
    KL_TRY(wire_block_open(&b, &mark, 1));
    KL_TRY(wire_put_bytes(&b, prefix, sizeof(prefix) - 1));
    KL_TRY(wire_put_bytes(&b, label, label_len));
    KL_TRY(wire_block_close(&b, mark, 1));
    KL_TRY(wire_block_open(&b, &mark, 1));
    KL_TRY(wire_put_bytes(&b, context, context_len));
    KL_TRY(wire_block_close(&b, mark, 1));
    KL_TRY(crypto_hkdf_expand(alg, out, out_len, secret, hl, info, b.len));
    ret = 0;
exit:
    /* The context may be a transcript hash; the label is public. Wipe anyway: it is cheap. */
    crypto_wipe(info, sizeof(info));
    return ret;
}

int ks_derive_secret(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *secret, const char *label,
                     const uint8_t *transcript_hash)
{
    size_t hl = crypto_hash_len(alg);
    return ks_hkdf_expand_label(alg, out, hl, secret, label, transcript_hash, hl);
}

int ks_derive_secret_empty(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *secret, const char *label)
{
    int ret;
    uint8_t h[CRYPTO_MAX_HASH];
    KL_TRY(crypto_digest(alg, h, NULL, 0));
    KL_TRY(ks_derive_secret(alg, out, secret, label, h));
    ret = 0;
exit:
    return ret;
}

int ks_early_secret(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *psk, size_t psk_len)
{
    static const uint8_t zeros[CRYPTO_MAX_HASH];
    size_t hl = crypto_hash_len(alg);
    if (hl == 0)
        return KL_ERR_INVALID;
    /* 7.1: "if no PSK is selected, it will then be a string of Hash.length bytes set to zeros". */
    if (psk == NULL) {
        psk = zeros;
        psk_len = hl;
    }
    return crypto_hkdf_extract(alg, out, zeros, hl, psk, psk_len);
}

int ks_next_stage(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *prev, const uint8_t *ikm, size_t ikm_len)
{
    int ret;
    static const uint8_t zeros[CRYPTO_MAX_HASH];
    uint8_t derived[CRYPTO_MAX_HASH];
    size_t hl = crypto_hash_len(alg);

    KL_ENSURE(hl != 0, KL_ERR_INVALID);
    if (ikm == NULL) {
        ikm = zeros;
        ikm_len = hl;
    }
    KL_TRY(ks_derive_secret_empty(alg, derived, prev, "derived"));
    KL_TRY(crypto_hkdf_extract(alg, out, derived, hl, ikm, ikm_len));
    ret = 0;
exit:
    crypto_wipe(derived, sizeof(derived));
    return ret;
}

int ks_traffic_key_iv(uint16_t suite, uint8_t *key, uint8_t iv[CRYPTO_IV_LEN], const uint8_t *secret)
{
    int ret;
    enum crypto_hash_alg alg = crypto_suite_hash(suite);
    size_t kl = crypto_suite_key_len(suite);
    KL_ENSURE(alg != 0 && kl != 0, KL_ERR_INVALID);
    KL_TRY(ks_hkdf_expand_label(alg, key, kl, secret, "key", NULL, 0));
    KL_TRY(ks_hkdf_expand_label(alg, iv, CRYPTO_IV_LEN, secret, "iv", NULL, 0));
    ret = 0;
exit:
    if (ret != 0) {
        crypto_wipe(key, kl);
        crypto_wipe(iv, CRYPTO_IV_LEN);
    }
    return ret;
}

int ks_finished_key(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *base_key)
{
    return ks_hkdf_expand_label(alg, out, crypto_hash_len(alg), base_key, "finished", NULL, 0);
}

int ks_verify_data(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *base_key, const uint8_t *transcript_hash)
{
    int ret;
    uint8_t fk[CRYPTO_MAX_HASH];
    size_t hl = crypto_hash_len(alg);
    KL_TRY(ks_finished_key(alg, fk, base_key));
    KL_TRY(crypto_hmac(alg, out, fk, hl, transcript_hash, hl));
    ret = 0;
exit:
    crypto_wipe(fk, sizeof(fk));
    return ret;
}

int ks_update_secret(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *secret)
{
    return ks_hkdf_expand_label(alg, out, crypto_hash_len(alg), secret, "traffic upd", NULL, 0);
}

int ks_resumption_psk(enum crypto_hash_alg alg, uint8_t *out, const uint8_t *resumption_master, const uint8_t *nonce,
                      size_t nonce_len)
{
    return ks_hkdf_expand_label(alg, out, crypto_hash_len(alg), resumption_master, "resumption", nonce, nonce_len);
}

int ks_export(enum crypto_hash_alg alg, uint8_t *out, size_t out_len, const uint8_t *exporter_master, const char *label,
              const uint8_t *context, size_t context_len)
{
    int ret;
    uint8_t secret[CRYPTO_MAX_HASH], ch[CRYPTO_MAX_HASH];
    size_t hl = crypto_hash_len(alg);
    KL_ENSURE(hl != 0 && out_len <= 255 * hl, KL_ERR_INVALID);
    KL_TRY(ks_derive_secret_empty(alg, secret, exporter_master, label));
    KL_TRY(crypto_digest(alg, ch, context, context_len));
    KL_TRY(ks_hkdf_expand_label(alg, out, out_len, secret, "exporter", ch, hl));
    ret = 0;
exit:
    crypto_wipe(secret, sizeof(secret));
    return ret;
}

/* ---- the schedule ---- */

/*
 * Without a PSK the Early Secret, and Derive-Secret(Early Secret, "derived", ""), are
 * constants of the hash: compute them once per thread instead of in every handshake.
 */
struct zero_early {
    int ready;
    uint8_t early[CRYPTO_MAX_HASH];
    uint8_t derived[CRYPTO_MAX_HASH];
};
static _Thread_local struct zero_early zero_early_cache[3];

static const struct zero_early *zero_early_get(enum crypto_hash_alg alg)
{
    struct zero_early *z;
    if (alg != CRYPTO_HASH_SHA256 && alg != CRYPTO_HASH_SHA384)
        return NULL;
    z = &zero_early_cache[alg];
    if (!z->ready) {
        if (ks_early_secret(alg, z->early, NULL, 0) != 0 ||
            ks_derive_secret_empty(alg, z->derived, z->early, "derived"))
            return NULL;
        z->ready = 1;
    }
    return z;
}

int ks_schedule_init(struct ks_schedule *s, enum crypto_hash_alg alg, const uint8_t *psk, size_t psk_len)
{
    const struct zero_early *z;
    memset(s, 0, sizeof(*s));
    s->alg = alg;
    s->hash_len = crypto_hash_len(alg);
    if (s->hash_len == 0)
        return KL_ERR_INVALID;
    if (psk == NULL) {
        if ((z = zero_early_get(alg)) == NULL)
            return KL_ERR_CRYPTO;
        memcpy(s->early, z->early, s->hash_len);
        s->psk_less = 1;
        return 0;
    }
    return ks_early_secret(alg, s->early, psk, psk_len);
}

int ks_schedule_binder_key(const struct ks_schedule *s, uint8_t *out, int external)
{
    return ks_derive_secret_empty(s->alg, out, s->early, external ? "ext binder" : "res binder");
}

int ks_schedule_early(struct ks_schedule *s, const uint8_t *th_ch)
{
    int ret;
    KL_TRY(ks_derive_secret(s->alg, s->client_early, s->early, "c e traffic", th_ch));
    KL_TRY(ks_derive_secret(s->alg, s->early_exporter, s->early, "e exp master", th_ch));
    ret = 0;
exit:
    return ret;
}

int ks_schedule_handshake(struct ks_schedule *s, const uint8_t *ecdhe, size_t ecdhe_len, const uint8_t *th_ch_sh)
{
    int ret;
    const struct zero_early *z;
    if (s->psk_less && (z = zero_early_get(s->alg)) != NULL) {
        /* The same as ks_next_stage, with the constant "derived" secret. */
        KL_TRY(crypto_hkdf_extract(s->alg, s->handshake, z->derived, s->hash_len, ecdhe, ecdhe_len));
    } else {
        KL_TRY(ks_next_stage(s->alg, s->handshake, s->early, ecdhe, ecdhe_len));
    }
    KL_TRY(ks_derive_secret(s->alg, s->client_hs, s->handshake, "c hs traffic", th_ch_sh));
    KL_TRY(ks_derive_secret(s->alg, s->server_hs, s->handshake, "s hs traffic", th_ch_sh));
    /* The early secret is not needed any more: the 0-RTT keys were derived before. */
    crypto_wipe(s->early, sizeof(s->early));
    ret = 0;
exit:
    return ret;
}

int ks_schedule_application(struct ks_schedule *s, const uint8_t *th_ch_sf)
{
    int ret;
    KL_TRY(ks_next_stage(s->alg, s->master, s->handshake, NULL, 0));
    KL_TRY(ks_derive_secret(s->alg, s->client_ap, s->master, "c ap traffic", th_ch_sf));
    KL_TRY(ks_derive_secret(s->alg, s->server_ap, s->master, "s ap traffic", th_ch_sf));
    KL_TRY(ks_derive_secret(s->alg, s->exporter, s->master, "exp master", th_ch_sf));
    crypto_wipe(s->handshake, sizeof(s->handshake));
    ret = 0;
exit:
    return ret;
}

int ks_schedule_resumption(struct ks_schedule *s, const uint8_t *th_ch_cf)
{
    return ks_derive_secret(s->alg, s->resumption, s->master, "res master", th_ch_cf);
}

void ks_schedule_dispose(struct ks_schedule *s)
{
    crypto_wipe(s, sizeof(*s));
}

int ks_keylog_line(char *line, size_t line_cap, const char *label, const uint8_t client_random[32],
                   const uint8_t *secret, size_t secret_len)
{
    static const char hex[] = "0123456789abcdef";
    size_t ll = strlen(label), need = ll + 1 + 64 + 1 + 2 * secret_len + 1, o = 0;
    if (need > line_cap)
        return KL_ERR_OVERFLOW;
    memcpy(line, label, ll);
    o = ll;
    line[o++] = ' ';
    for (size_t i = 0; i < 32; i++) {
        line[o++] = hex[client_random[i] >> 4];
        line[o++] = hex[client_random[i] & 15];
    }
    line[o++] = ' ';
    for (size_t i = 0; i < secret_len; i++) {
        line[o++] = hex[secret[i] >> 4];
        line[o++] = hex[secret[i] & 15];
    }
    line[o] = '\0';
    return 0;
}
