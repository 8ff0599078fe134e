/*
 * tls_test_client.c - a minimal TLS 1.3 client for tests (see tls_test_client.h).
 */
#include <stdlib.h>
#include <string.h>
#include "ext.h"
#include "msg.h"
#include "tls_test_client.h"
#include "wire.h"

static int put_ext_u16_list(struct kl_buf *b, uint16_t type, const uint16_t *v, size_t n, size_t len_bytes)
{
    size_t m, ml;
    int ret;
    if ((ret = wire_put_u16(b, type)) != 0 || (ret = wire_block_open(b, &m, 2)) != 0 ||
        (ret = wire_block_open(b, &ml, len_bytes)) != 0)
        return ret;
    for (size_t i = 0; i < n; i++) {
        if ((ret = wire_put_u16(b, v[i])) != 0)
            return ret;
    }
    if ((ret = wire_block_close(b, ml, len_bytes)) != 0)
        return ret;
    return wire_block_close(b, m, 2);
}

/* The PSK offer's binders vector starts at *binders_off_p; the real binder at *binder_off_p. */
static int put_psk(struct ttc *t, struct kl_buf *msg, size_t *binders_off_p, size_t *binder_off_p)
{
    const struct ttc_ticket *tk = t->psk.resume;
    size_t hl = crypto_hash_len(tk->alg), a, l, e;
    size_t blen = t->psk.psk_binder_len != 0 ? t->psk.psk_binder_len : hl;
    static const uint8_t zeros[255];
    static const uint8_t garbage[40] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    int ret;
    if ((ret = wire_put_u16(msg, EXT_PRE_SHARED_KEY)) != 0 || (ret = wire_block_open(msg, &a, 2)) != 0 ||
        (ret = wire_block_open(msg, &l, 2)) != 0)
        return ret;
    for (unsigned i = 0; i < t->psk.psk_garbage_first; i++) {
        if ((ret = wire_block_open(msg, &e, 2)) != 0 || (ret = wire_put_bytes(msg, garbage, sizeof(garbage))) != 0 ||
            (ret = wire_block_close(msg, e, 2)) != 0 || (ret = wire_put_u32(msg, 1234)) != 0)
            return ret;
    }
    if ((ret = wire_block_open(msg, &e, 2)) != 0 || (ret = wire_put_bytes(msg, tk->ticket, tk->ticket_len)) != 0 ||
        (ret = wire_block_close(msg, e, 2)) != 0 ||
        (ret = wire_put_u32(msg, t->psk.ticket_age_ms + tk->age_add)) != 0 || (ret = wire_block_close(msg, l, 2)) != 0)
        return ret;
    *binders_off_p = msg->len;
    if ((ret = wire_block_open(msg, &l, 2)) != 0)
        return ret;
    for (unsigned i = 0; i < t->psk.psk_garbage_first; i++) {
        if ((ret = wire_put_u8(msg, (uint8_t)hl)) != 0 || (ret = wire_put_bytes(msg, zeros, hl)) != 0)
            return ret;
    }
    if ((ret = wire_put_u8(msg, (uint8_t)blen)) != 0)
        return ret;
    *binder_off_p = msg->len;
    if ((ret = wire_put_bytes(msg, zeros, blen)) != 0)
        return ret;
    if (t->psk.psk_extra_binder &&
        ((ret = wire_put_u8(msg, (uint8_t)hl)) != 0 || (ret = wire_put_bytes(msg, zeros, hl)) != 0))
        return ret;
    if ((ret = wire_block_close(msg, l, 2)) != 0)
        return ret;
    return wire_block_close(msg, a, 2);
}

/* 4.2.11.2: the binder over the ClientHello up to the binders (after the HRR transcript in CH2). */
static int fill_binder(struct ttc *t, struct kl_buf *msg, size_t binders_off, size_t binder_off)
{
    const struct ttc_ticket *tk = t->psk.resume;
    uint8_t hash[CRYPTO_MAX_HASH], bk[CRYPTO_MAX_HASH], binder[CRYPTO_MAX_HASH];
    size_t hl = crypto_hash_len(tk->alg);
    size_t blen = t->psk.psk_binder_len != 0 ? t->psk.psk_binder_len : hl;
    int ret;
    if (t->hrr)
        ret = crypto_hash_ctx_peek_extra(&t->th.h, hash, msg->base, binders_off);
    else
        ret = crypto_digest(tk->alg, hash, msg->base, binders_off);
    if (ret != 0 || (ret = ks_schedule_binder_key(&t->ks, bk, 0)) != 0 ||
        (ret = ks_verify_data(tk->alg, binder, bk, hash)) != 0)
        return ret;
    memcpy(msg->base + binder_off, binder, blen < hl ? blen : hl);
    if (t->psk.psk_bad_binder)
        msg->base[binder_off] ^= 0x01;
    return 0;
}

/* The encrypted_client_hello of the ClientHello being built (t->building): type inner, or outer with a zero payload. */
static int put_ech(struct ttc *t, struct kl_buf *msg)
{
    const struct ttc_ech *e = t->ech;
    size_t a;
    int ret;
    if (t->building == 1) {
        if (e->inner_no_ech)
            return 0;
        return wire_put_u16(msg, EXT_ENCRYPTED_CLIENT_HELLO) != 0 || wire_put_u16(msg, 1) != 0 ||
                       wire_put_u8(msg, 1) != 0
                   ? KL_ERR_OVERFLOW
                   : 0;
    }
    if (t->ech_omit)
        return 0;
    if ((ret = wire_put_u16(msg, EXT_ENCRYPTED_CLIENT_HELLO)) != 0 || (ret = wire_block_open(msg, &a, 2)) != 0 ||
        (ret = wire_put_u8(msg, e->outer_type_inner ? 1 : 0)) != 0 || (ret = wire_put_u16(msg, e->kdf_id)) != 0 ||
        (ret = wire_put_u16(msg, e->aead_id)) != 0 ||
        (ret = wire_put_u8(msg, (uint8_t)(e->config_id ^ (t->ech_second && e->ch2_other_id)))) != 0 ||
        (ret = wire_put_u16(msg, (uint16_t)t->ech_enc_len)) != 0 ||
        (ret = wire_put_bytes(msg, t->ech_enc, t->ech_enc_len)) != 0 ||
        (ret = wire_put_u16(msg, (uint16_t)t->ech_payload_len)) != 0)
        return ret;
    t->ech_payload_off = msg->len;
    for (size_t i = 0; i < t->ech_payload_len; i++) {
        if ((ret = wire_put_u8(msg, 0)) != 0)
            return ret;
    }
    return wire_block_close(msg, a, 2);
}

/* Build a ClientHello message into msg. cookie may be NULL. */
static int build_ch(struct ttc *t, struct kl_buf *msg, const struct kl_span *cookie)
{
    size_t m, mx, mk, s;
    int ret;
    static const uint16_t v13 = TLS_VERSION_13;
    static const uint16_t v13_12[2] = {TLS_VERSION_13, 0x0303};
    int outer = t->building == 2, inner = t->building == 1;
    int with_psk = t->psk.resume != NULL && (!outer || t->ech->outer_psk);
    const char *sni = outer ? t->ech->public_name : t->cfg.sni;
    if ((ret = wire_put_u8(msg, MSG_CLIENT_HELLO)) != 0 || (ret = wire_block_open(msg, &m, 3)) != 0 ||
        (ret = wire_put_u16(msg, 0x0303)) != 0 ||
        (ret = wire_put_bytes(msg, outer ? t->outer_random : t->random, 32)) != 0)
        return ret;
    if ((ret = wire_block_open(msg, &s, 1)) != 0 ||
        (t->cfg.compat && (ret = wire_put_bytes(msg, t->session_id, 32)) != 0) ||
        (ret = wire_block_close(msg, s, 1)) != 0)
        return ret;
    if ((ret = wire_block_open(msg, &s, 2)) != 0)
        return ret;
    for (size_t i = 0; i < t->cfg.n_suites; i++) {
        if ((ret = wire_put_u16(msg, t->cfg.suites[i])) != 0)
            return ret;
    }
    if ((ret = wire_block_close(msg, s, 2)) != 0 || (ret = wire_put_u8(msg, 1)) != 0 ||
        (ret = wire_put_u8(msg, 0)) != 0 || (ret = wire_block_open(msg, &mx, 2)) != 0)
        return ret;
    if (sni != NULL) {
        size_t a, b2, c;
        if ((ret = wire_put_u16(msg, EXT_SERVER_NAME)) != 0 || (ret = wire_block_open(msg, &a, 2)) != 0 ||
            (ret = wire_block_open(msg, &b2, 2)) != 0 || (ret = wire_put_u8(msg, 0)) != 0 ||
            (ret = wire_block_open(msg, &c, 2)) != 0 || (ret = wire_put_bytes(msg, sni, strlen(sni))) != 0 ||
            (ret = wire_block_close(msg, c, 2)) != 0 || (ret = wire_block_close(msg, b2, 2)) != 0 ||
            (ret = wire_block_close(msg, a, 2)) != 0)
            return ret;
    }
    if ((ret = put_ext_u16_list(msg, EXT_SUPPORTED_GROUPS, t->cfg.groups, t->cfg.n_groups, 2)) != 0 ||
        (ret = put_ext_u16_list(msg, EXT_SIGNATURE_ALGORITHMS, t->cfg.sig_algs, t->cfg.n_sig_algs, 2)) != 0 ||
        (ret = inner && t->ech->inner_tls12 ? put_ext_u16_list(msg, EXT_SUPPORTED_VERSIONS, v13_12, 2, 1)
                                            : put_ext_u16_list(msg, EXT_SUPPORTED_VERSIONS, &v13, 1, 1)) != 0)
        return ret;
    if (t->building != 0 && (ret = put_ech(t, msg)) != 0)
        return ret;
    if (t->cfg.alpn != NULL) {
        size_t a, b2, c;
        if ((ret = wire_put_u16(msg, EXT_ALPN)) != 0 || (ret = wire_block_open(msg, &a, 2)) != 0 ||
            (ret = wire_block_open(msg, &b2, 2)) != 0 || (ret = wire_block_open(msg, &c, 1)) != 0 ||
            (ret = wire_put_bytes(msg, t->cfg.alpn, strlen(t->cfg.alpn))) != 0 ||
            (ret = wire_block_close(msg, c, 1)) != 0 || (ret = wire_block_close(msg, b2, 2)) != 0 ||
            (ret = wire_block_close(msg, a, 2)) != 0)
            return ret;
    }
    if (with_psk && !t->psk.psk_no_modes) {
        uint8_t modes[2];
        size_t n = 0, a, l;
        unsigned want = t->psk.psk_modes != 0 ? t->psk.psk_modes : 2;
        if (want & 1)
            modes[n++] = 0;
        if (want & 2)
            modes[n++] = 1;
        if ((ret = wire_put_u16(msg, EXT_PSK_KEY_EXCHANGE_MODES)) != 0 || (ret = wire_block_open(msg, &a, 2)) != 0 ||
            (ret = wire_block_open(msg, &l, 1)) != 0 || (ret = wire_put_bytes(msg, modes, n)) != 0 ||
            (ret = wire_block_close(msg, l, 1)) != 0 || (ret = wire_block_close(msg, a, 2)) != 0)
            return ret;
    }
    if (cookie == NULL && (t->cfg.early_junk != 0 || t->psk.early_len != 0) && (!outer || t->ech->outer_psk)) {
        if ((ret = wire_put_u16(msg, EXT_EARLY_DATA)) != 0 || (ret = wire_put_u16(msg, 0)) != 0)
            return ret;
    }
    if (cookie != NULL) {
        size_t a, c;
        if ((ret = wire_put_u16(msg, EXT_COOKIE)) != 0 || (ret = wire_block_open(msg, &a, 2)) != 0 ||
            (ret = wire_block_open(msg, &c, 2)) != 0 || (ret = wire_put_bytes(msg, cookie->base, cookie->len)) != 0 ||
            (ret = wire_block_close(msg, c, 2)) != 0 || (ret = wire_block_close(msg, a, 2)) != 0)
            return ret;
    }
    if ((ret = wire_put_u16(msg, EXT_KEY_SHARE)) != 0 || (ret = wire_block_open(msg, &mk, 2)) != 0 ||
        (ret = wire_block_open(msg, &s, 2)) != 0)
        return ret;
    for (size_t i = 0; i < t->n_kex; i++) {
        size_t k;
        if ((ret = wire_put_u16(msg, t->kex[i].group)) != 0 || (ret = wire_block_open(msg, &k, 2)) != 0 ||
            (ret = wire_put_bytes(msg, t->kex[i].pub, t->kex[i].pub_len)) != 0 ||
            (ret = wire_block_close(msg, k, 2)) != 0)
            return ret;
    }
    if ((ret = wire_block_close(msg, s, 2)) != 0 || (ret = wire_block_close(msg, mk, 2)) != 0)
        return ret;
    size_t binders_off = 0, binder_off = 0;
    if (with_psk) {
        if ((ret = put_psk(t, msg, &binders_off, &binder_off)) != 0)
            return ret;
        t->psk_offered = 1;
    }
    if (t->psk.psk_not_last && ((ret = wire_put_u16(msg, 0x7a7a)) != 0 || (ret = wire_put_u16(msg, 0)) != 0))
        return ret;
    if ((ret = wire_block_close(msg, mx, 2)) != 0 || (ret = wire_block_close(msg, m, 3)) != 0)
        return ret;
    if (with_psk)
        return fill_binder(t, msg, binders_off, binder_off);
    return 0;
}

static int in_list(const uint16_t *v, size_t n, uint16_t x)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] == x)
            return 1;
    }
    return 0;
}

static int put_outer_exts(struct kl_buf *b, const uint16_t *refs, size_t n)
{
    size_t a, l;
    int ret;
    if ((ret = wire_put_u16(b, EXT_ECH_OUTER_EXTENSIONS)) != 0 || (ret = wire_block_open(b, &a, 2)) != 0 ||
        (ret = wire_block_open(b, &l, 1)) != 0)
        return ret;
    for (size_t i = 0; i < n; i++) {
        if ((ret = wire_put_u16(b, refs[i])) != 0)
            return ret;
    }
    if ((ret = wire_block_close(b, l, 1)) != 0)
        return ret;
    return wire_block_close(b, a, 2);
}

/* EncodedClientHelloInner (5.1) of the ClientHelloInner message msg: empty legacy_session_id, compression, padding. */
static int encode_inner(struct ttc *t, struct kl_buf *enc, const uint8_t *msg, size_t len)
{
    const struct ttc_ech *e = t->ech;
    const uint16_t *refs = e->n_refs != 0 ? e->refs : e->compress;
    size_t n_refs = e->n_refs != 0 ? e->n_refs : e->n_compress, mx;
    struct wire_reader r, list;
    struct kl_span fixed, sid, v;
    int ret, emitted = 0;
    wire_reader_init(&r, msg + 4, len - 4);
    if ((ret = wire_read_span(&r, &fixed, 34)) != 0 || (ret = wire_put_bytes(enc, fixed.base, fixed.len)) != 0 ||
        (ret = wire_read_vec_span(&r, &sid, 1, 0, 32)) != 0)
        return ret;
    if (e->inner_sid)
        ret = wire_put_u8(enc, 32) || wire_put_bytes(enc, t->session_id, 32) ? KL_ERR_OVERFLOW : 0;
    else
        ret = wire_put_u8(enc, 0);
    if (ret != 0 || (ret = wire_read_vec_span(&r, &v, 2, 0, 0xffff)) != 0 ||
        (ret = wire_put_u16(enc, (uint16_t)v.len)) || (ret = wire_put_bytes(enc, v.base, v.len)) != 0 ||
        (ret = wire_read_vec_span(&r, &v, 1, 0, 255)) != 0 || (ret = wire_put_u8(enc, (uint8_t)v.len)) ||
        (ret = wire_put_bytes(enc, v.base, v.len)) != 0 || (ret = wire_read_vec(&r, &list, 2)) != 0 ||
        (ret = wire_block_open(enc, &mx, 2)) != 0)
        return ret;
    while (wire_remaining(&list) != 0) {
        uint16_t type;
        if ((ret = wire_read_u16(&list, &type)) != 0 || (ret = wire_read_vec_span(&list, &v, 2, 0, 0xffff)) != 0)
            return ret;
        if (in_list(e->compress, e->n_compress, type)) {
            if (!emitted && ((ret = put_outer_exts(enc, refs, n_refs)) != 0 ||
                             (e->second_outer_ext && (ret = put_outer_exts(enc, refs, n_refs)) != 0)))
                return ret;
            emitted = 1;
            continue;
        }
        if ((ret = wire_put_u16(enc, type)) != 0 || (ret = wire_put_u16(enc, (uint16_t)v.len)) != 0 ||
            (ret = wire_put_bytes(enc, v.base, v.len)) != 0)
            return ret;
    }
    if ((ret = wire_block_close(enc, mx, 2)) != 0)
        return ret;
    for (size_t i = 0; i < e->padding; i++) {
        if ((ret = wire_put_u8(enc, 0)) != 0)
            return ret;
    }
    if (e->bad_padding && (ret = wire_put_u8(enc, 1)) != 0)
        return ret;
    return 0;
}

/*
 * ClientHelloInner into inner and ClientHelloOuter, with the sealed EncodedClientHelloInner, into outer (5, 6.1).
 * The first call sets up the HPKE context (enc in the outer extension); the second (after HRR) reuses it.
 */
static int build_ech(struct ttc *t, struct kl_buf *inner, struct kl_buf *outer, const struct kl_span *cookie)
{
    const struct ttc_ech *e = t->ech;
    struct kl_buf enc, aad;
    uint8_t info[8 + TLS_ECH_MAX_CONFIG_LEN];
    int second = t->ech_ctx_live, ret;
    kl_buf_init(&enc, 1 << 17);
    kl_buf_init(&aad, 1 << 17);
    t->building = 1;
    if ((ret = build_ch(t, inner, cookie)) != 0 || (ret = encode_inner(t, &enc, inner->base, inner->len)) != 0)
        goto exit;
    if (!second) {
        if (e->config_len > TLS_ECH_MAX_CONFIG_LEN) {
            ret = KL_ERR_INVALID;
            goto exit;
        }
        memcpy(info, "tls ech", 8);
        memcpy(info + 8, e->config, e->config_len);
        if ((ret = hpke_setup_base_s(&t->ech_ctx, t->ech_enc, e->kdf_id, e->aead_id, e->public_key, info,
                                     8 + e->config_len, NULL)) != 0)
            goto exit;
        t->ech_ctx_live = 1;
        t->ech_enc_len = 32;
    } else {
        /* 6.1.5: the second ClientHelloOuter's enc is empty. */
        t->ech_enc_len = e->ch2_enc ? 32 : 0;
        t->ech_omit = e->ch2_no_ech;
        t->ech_second = 1;
    }
    t->ech_payload_len = enc.len + HPKE_TAG_LEN;
    t->building = 2;
    if ((ret = build_ch(t, outer, cookie)) != 0)
        goto exit;
    if (!t->ech_omit) {
        /* 5.2: the AAD is ClientHelloOuter (body, no handshake header) with the payload zeroed, as it is now. */
        static const uint8_t tag_room[HPKE_TAG_LEN];
        size_t pt_len = enc.len;
        /* Sealed in place: the buffer needs room for the tag. */
        if ((ret = kl_buf_append(&enc, tag_room, sizeof(tag_room))) != 0 ||
            (ret = kl_buf_append(&aad, outer->base + 4, outer->len - 4)) != 0 ||
            (ret = hpke_seal(&t->ech_ctx, enc.base, aad.base, aad.len, enc.base, pt_len)) != 0)
            goto exit;
        memcpy(outer->base + t->ech_payload_off, enc.base, t->ech_payload_len);
        if ((!second && e->tamper) || (second && e->ch2_tamper))
            outer->base[t->ech_payload_off + t->ech_payload_len / 2] ^= 0x10;
    }
exit:
    t->building = 0;
    kl_buf_dispose(&enc);
    kl_buf_dispose(&aad);
    return ret;
}

/* The confirmation (7.2, 7.2.1): HKDF-Expand-Label(HKDF-Extract(0, inner random), label, hash, 8). */
static int ech_conf(struct ttc *t, enum crypto_hash_alg alg, const char *label, const uint8_t *hash, uint8_t out[8])
{
    uint8_t prk[CRYPTO_MAX_HASH];
    int ret = ks_early_secret(alg, prk, t->random, 32);
    if (ret == 0)
        ret = ks_hkdf_expand_label(alg, out, 8, prk, label, hash, crypto_hash_len(alg));
    crypto_wipe(prk, sizeof(prk));
    return ret;
}

/*
 * Did the server accept ECH? conf_off: where the 8 confirmation bytes are in msg (ServerHello.random's last 8,
 * or the HelloRetryRequest's extension; 0 when it has none). th: the transcript before msg (NULL: start from
 * ClientHelloInner1, and rewrite to message_hash for a HelloRetryRequest).
 */
static int ech_confirmed(struct ttc *t, enum crypto_hash_alg alg, const uint8_t *msg, size_t len, size_t conf_off,
                         int is_hrr, const struct ks_transcript *th, int *ok_p)
{
    struct ks_transcript tmp;
    struct kl_buf copy;
    uint8_t hash[CRYPTO_MAX_HASH], conf[8];
    int ret;
    *ok_p = 0;
    if (conf_off == 0)
        return 0;
    kl_buf_init(&copy, len);
    if ((ret = kl_buf_append(&copy, msg, len)) != 0)
        goto exit;
    memset(copy.base + conf_off, 0, 8);
    if (th == NULL) {
        if ((ret = ks_transcript_init(&tmp, alg)) != 0)
            goto exit;
        ret = ks_transcript_add(&tmp, t->ch1.base, t->ch1.len);
        if (ret == 0 && is_hrr)
            ret = ks_transcript_hrr_rewrite(&tmp);
        if (ret == 0)
            ret = crypto_hash_ctx_peek_extra(&tmp.h, hash, copy.base, copy.len);
        ks_transcript_dispose(&tmp);
    } else {
        ret = crypto_hash_ctx_peek_extra(&th->h, hash, copy.base, copy.len);
    }
    if (ret == 0 &&
        (ret = ech_conf(t, alg, is_hrr ? "hrr ech accept confirmation" : "ech accept confirmation", hash, conf)) == 0)
        *ok_p = crypto_equal(conf, msg + conf_off, 8);
exit:
    kl_buf_dispose(&copy);
    return ret;
}

int ttc_start(struct ttc *t, const struct ttc_config *cfg, struct kl_buf *out)
{
    return ttc_start_psk(t, cfg, NULL, out);
}

int ttc_start_psk(struct ttc *t, const struct ttc_config *cfg, const struct ttc_psk_config *psk, struct kl_buf *out)
{
    return ttc_start_ech(t, cfg, psk, NULL, out);
}

int ttc_start_ech(struct ttc *t, const struct ttc_config *cfg, const struct ttc_psk_config *psk,
                  const struct ttc_ech *ech, struct kl_buf *out)
{
    int ret;
    memset(t, 0, sizeof(*t));
    t->cfg = *cfg;
    t->ech = ech;
    if (psk != NULL)
        t->psk = *psk;
    rec_dir_init(&t->rd, 0);
    rec_dir_init(&t->wr, 1);
    kl_buf_init(&t->ch1, 1 << 17);
    kl_buf_init(&t->ch1_outer, 1 << 17);
    kl_buf_init(&t->hs_in, 1 << 20);
    crypto_random(t->random, 32);
    crypto_random(t->outer_random, 32);
    crypto_random(t->session_id, 32);
    for (size_t i = 0; i < cfg->n_shares; i++) {
        if ((ret = crypto_kex_generate(&t->kex[i], cfg->shares[i])) != 0)
            return ret;
        t->n_kex++;
    }
    if (t->psk.resume != NULL &&
        (ret = ks_schedule_init(&t->ks, t->psk.resume->alg, t->psk.resume->psk, t->psk.resume->psk_len)) != 0)
        return ret;
    if (ech != NULL) {
        if ((ret = build_ech(t, &t->ch1, &t->ch1_outer, NULL)) != 0 ||
            (ret = rec_seal(&t->wr, out, REC_TYPE_HANDSHAKE, t->ch1_outer.base, t->ch1_outer.len, 0)) != 0)
            return ret;
    } else {
        if ((ret = build_ch(t, &t->ch1, NULL)) != 0)
            return ret;
        if ((ret = rec_seal(&t->wr, out, REC_TYPE_HANDSHAKE, t->ch1.base, t->ch1.len, 0)) != 0)
            return ret;
    }
    if (t->psk.resume != NULL && t->psk.early_len != 0) {
        /* 0-RTT: client_early_traffic_secret from Hash(ClientHello); the suite is the ticket's (our first). */
        uint8_t th[CRYPTO_MAX_HASH];
        if ((ret = crypto_digest(t->psk.resume->alg, th, t->ch1.base, t->ch1.len)) != 0 ||
            (ret = ks_schedule_early(&t->ks, th)) != 0 ||
            (ret = rec_dir_set_secret(&t->wr, cfg->suites[0], t->ks.client_early,
                                      crypto_hash_len(t->psk.resume->alg))) != 0 ||
            (ret = rec_seal(&t->wr, out, REC_TYPE_APPLICATION_DATA, t->psk.early, t->psk.early_len, 0)) != 0)
            return ret;
    }
    /* Fake 0-RTT: records the server cannot decrypt (it never offered early data). */
    for (size_t left = cfg->early_junk; left > 0;) {
        uint8_t rec[5 + 1000];
        size_t n = left < 1000 ? left : 1000;
        rec[0] = REC_TYPE_APPLICATION_DATA;
        rec[1] = 3;
        rec[2] = 3;
        rec[3] = (uint8_t)(n >> 8);
        rec[4] = (uint8_t)n;
        crypto_random(rec + 5, n);
        if ((ret = kl_buf_append(out, rec, 5 + n)) != 0)
            return ret;
        left -= n;
    }
    return 0;
}

static int th_add(struct ttc *t, const uint8_t *m, size_t n)
{
    return ks_transcript_add(&t->th, m, n);
}

static int on_server_hello(struct ttc *t, struct kl_buf *out, const uint8_t *msg, size_t len)
{
    struct wire_reader r, exts;
    uint16_t ver, suite, sv = 0, group = 0;
    uint8_t random[32], comp;
    struct kl_span sid, key = {NULL, 0}, cookie = {NULL, 0};
    size_t hrr_conf_off = 0;
    int ret, is_hrr;
    wire_reader_init(&r, msg + 4, len - 4);
    if ((ret = wire_read_u16(&r, &ver)) != 0 || (ret = wire_read_copy(&r, random, 32)) != 0 ||
        (ret = wire_read_vec_span(&r, &sid, 1, 0, 32)) != 0 || (ret = wire_read_u16(&r, &suite)) != 0 ||
        (ret = wire_read_u8(&r, &comp)) != 0 || (ret = wire_read_vec(&r, &exts, 2)) != 0 ||
        (ret = wire_reader_end(&r)) != 0)
        return ret;
    is_hrr = memcmp(random, msg_hrr_random, 32) == 0;
    if (ver != 0x0303 || comp != 0)
        return KL_ERR_ILLEGAL_PARAMETER;
    /* 4.1.3: legacy_session_id_echo must be what we sent. */
    if (sid.len != (t->cfg.compat ? 32u : 0u) || (sid.len && memcmp(sid.base, t->session_id, 32) != 0))
        return KL_ERR_ILLEGAL_PARAMETER;
    while (wire_remaining(&exts) != 0) {
        uint16_t type;
        struct wire_reader body;
        if ((ret = wire_read_u16(&exts, &type)) != 0 || (ret = wire_read_vec(&exts, &body, 2)) != 0)
            return ret;
        if (type == EXT_SUPPORTED_VERSIONS) {
            if ((ret = wire_read_u16(&body, &sv)) != 0)
                return ret;
        } else if (type == EXT_KEY_SHARE) {
            if ((ret = wire_read_u16(&body, &group)) != 0)
                return ret;
            if (!is_hrr && (ret = wire_read_vec_span(&body, &key, 2, 1, 0xffff)) != 0)
                return ret;
        } else if (type == EXT_COOKIE && is_hrr) {
            if ((ret = wire_read_vec_span(&body, &cookie, 2, 1, 0xffff)) != 0)
                return ret;
        } else if (type == EXT_ENCRYPTED_CLIENT_HELLO && is_hrr && t->ech != NULL) {
            struct kl_span conf;
            hrr_conf_off = (size_t)(body.p - msg);
            if ((ret = wire_read_span(&body, &conf, 8)) != 0)
                return ret;
        } else if (type == EXT_PRE_SHARED_KEY && !is_hrr && t->psk_offered) {
            if ((ret = wire_read_u16(&body, &t->selected)) != 0)
                return ret;
            t->resumed = 1;
        } else {
            return KL_ERR_ALERT(KL_ALERT_UNSUPPORTED_EXTENSION);
        }
        if ((ret = wire_reader_end(&body)) != 0)
            return ret;
    }
    if (sv != TLS_VERSION_13)
        return KL_ERR_ILLEGAL_PARAMETER;
    int offered = 0;
    for (size_t i = 0; i < t->cfg.n_suites; i++)
        offered |= t->cfg.suites[i] == suite;
    if (!offered || (t->hrr && suite != t->suite))
        return KL_ERR_ILLEGAL_PARAMETER;
    if (t->ech != NULL && !t->ech_decided) {
        /* 6.1.4/6.1.5: the first server message says whether ECH was accepted; rejected, the handshake goes on
         * with ClientHelloOuter (and none of ClientHelloInner's PSKs). */
        int ok;
        t->ech_decided = 1;
        if ((ret = ech_confirmed(t, crypto_suite_hash(suite), msg, len, is_hrr ? hrr_conf_off : 4 + 2 + 24, is_hrr,
                                 NULL, &ok)) != 0)
            return ret;
        t->ech_accepted = ok;
        t->ech_hrr_accepted = ok && is_hrr;
        if (!ok) {
            kl_buf_reset(&t->ch1);
            if ((ret = kl_buf_append(&t->ch1, t->ch1_outer.base, t->ch1_outer.len)) != 0)
                return ret;
            t->psk_offered = t->psk_offered && t->ech->outer_psk;
            t->resumed = 0;
        }
    } else if (t->ech != NULL && t->ech_hrr_accepted && !is_hrr) {
        /* 7.2: after an accepting HRR the ServerHello confirms again, over the whole inner transcript. */
        int ok;
        if ((ret = ech_confirmed(t, t->alg, msg, len, 4 + 2 + 24, 0, &t->th, &ok)) != 0)
            return ret;
        if (!ok)
            return KL_ERR_ILLEGAL_PARAMETER;
        t->ech_sh_confirmed = 1;
    }
    if (!t->th_live) {
        t->suite = suite;
        t->alg = crypto_suite_hash(suite);
        t->hash_len = crypto_hash_len(t->alg);
        if ((ret = ks_transcript_init(&t->th, t->alg)) != 0)
            return ret;
        t->th_live = 1;
        if ((ret = th_add(t, t->ch1.base, t->ch1.len)) != 0)
            return ret;
    }
    if (is_hrr) {
        struct kl_buf ch2;
        if (t->hrr)
            return KL_ERR_UNEXPECTED_MESSAGE; /* a second HRR */
        t->hrr = 1;
        if ((ret = ks_transcript_hrr_rewrite(&t->th)) != 0 || (ret = th_add(t, msg, len)) != 0)
            return ret;
        for (size_t i = 0; i < t->n_kex; i++)
            crypto_kex_dispose(&t->kex[i]);
        t->n_kex = 1;
        if ((ret = crypto_kex_generate(&t->kex[0], group)) != 0)
            return ret;
        /* 4.1.2: no early_data in the second ClientHello; the early records already sent are lost. */
        t->psk.early_len = 0;
        t->cfg.early_junk = 0;
        rec_dir_dispose(&t->wr);
        rec_dir_init(&t->wr, 1);
        kl_buf_init(&ch2, 1 << 17);
        struct kl_buf outer2;
        kl_buf_init(&outer2, 1 << 17);
        const struct kl_span *ck = cookie.base != NULL ? &cookie : NULL;
        if (t->ech != NULL && t->ech_accepted) {
            ret = build_ech(t, &ch2, &outer2, ck);
        } else if (t->ech != NULL) {
            /* Rejected: the second ClientHello is the outer one again (no ECH to decrypt any more). */
            t->building = 2;
            t->ech_omit = 1;
            ret = build_ch(t, &ch2, ck);
            t->building = 0;
            if (ret == 0)
                ret = kl_buf_append(&outer2, ch2.base, ch2.len);
        } else {
            ret = build_ch(t, &ch2, ck);
            if (ret == 0)
                ret = kl_buf_append(&outer2, ch2.base, ch2.len);
        }
        if (ret == 0)
            ret = th_add(t, ch2.base, ch2.len);
        if (ret == 0 && t->cfg.compat)
            ret = rec_seal(&t->wr, out, REC_TYPE_CHANGE_CIPHER_SPEC, (const uint8_t *)"\x01", 1, 0);
        if (ret == 0)
            ret = rec_seal(&t->wr, out, REC_TYPE_HANDSHAKE, outer2.base, outer2.len, 0);
        kl_buf_dispose(&ch2);
        kl_buf_dispose(&outer2);
        return ret;
    }
    if ((ret = th_add(t, msg, len)) != 0)
        return ret;
    struct crypto_kex *k = NULL;
    for (size_t i = 0; i < t->n_kex; i++) {
        if (t->kex[i].group == group)
            k = &t->kex[i];
    }
    uint8_t ecdhe[CRYPTO_MAX_SHARED], th[CRYPTO_MAX_HASH];
    size_t el = 0;
    if (t->resumed) {
        /* 4.2.11: the server selects an identity we offered, with the ticket's hash. */
        size_t n_ids = 1 + (size_t)t->psk.psk_garbage_first;
        if (t->selected >= n_ids || t->psk.resume->alg != t->alg)
            return KL_ERR_ILLEGAL_PARAMETER;
    }
    if (key.base != NULL) {
        if (k == NULL)
            return KL_ERR_ILLEGAL_PARAMETER;
        t->group = group;
        if ((ret = crypto_kex_derive(k, ecdhe, &el, key.base, key.len)) != 0)
            return ret;
    } else if (!t->resumed) {
        return KL_ERR_ILLEGAL_PARAMETER; /* only psk_ke goes without key_share */
    }
    if ((ret = ks_transcript_hash(&t->th, th)) != 0 ||
        (!t->resumed && (ret = ks_schedule_init(&t->ks, t->alg, NULL, 0)) != 0) ||
        (ret = ks_schedule_handshake(&t->ks, el != 0 ? ecdhe : NULL, el, th)) != 0 ||
        (ret = rec_dir_set_secret(&t->rd, suite, t->ks.server_hs, t->hash_len)) != 0)
        return ret;
    crypto_wipe(ecdhe, sizeof(ecdhe));
    t->state = TTC_WAIT_EE;
    return 0;
}

static int on_ee(struct ttc *t, const uint8_t *msg, size_t len)
{
    struct wire_reader r, exts;
    int ret;
    wire_reader_init(&r, msg + 4, len - 4);
    if ((ret = wire_read_vec(&r, &exts, 2)) != 0 || (ret = wire_reader_end(&r)) != 0)
        return ret;
    while (wire_remaining(&exts) != 0) {
        uint16_t type;
        struct wire_reader body;
        if ((ret = wire_read_u16(&exts, &type)) != 0 || (ret = wire_read_vec(&exts, &body, 2)) != 0)
            return ret;
        if (type == EXT_SERVER_NAME) {
            if (t->cfg.sni == NULL || wire_remaining(&body) != 0)
                return KL_ERR_ALERT(KL_ALERT_UNSUPPORTED_EXTENSION);
            t->sni_acked = 1;
        } else if (type == EXT_ALPN) {
            struct wire_reader list;
            struct kl_span name;
            if ((ret = wire_read_vec(&body, &list, 2)) != 0 ||
                (ret = wire_read_vec_span(&list, &name, 1, 1, 255)) != 0 || (ret = wire_reader_end(&list)) != 0)
                return ret;
            if (t->cfg.alpn == NULL || name.len != strlen(t->cfg.alpn) || memcmp(name.base, t->cfg.alpn, name.len))
                return KL_ERR_ILLEGAL_PARAMETER;
            memcpy(t->alpn, name.base, name.len);
            t->alpn[name.len] = 0;
        } else if (type == EXT_EARLY_DATA) {
            /* 4.2.10: only when we offered early data and resumed with the first identity. */
            if (t->psk.early_len == 0 || !t->resumed || t->selected != 0)
                return KL_ERR_ALERT(KL_ALERT_UNSUPPORTED_EXTENSION);
            t->early_accepted = 1;
        } else if (type == EXT_ENCRYPTED_CLIENT_HELLO) {
            /* 7.1: retry_configs only when we offered ECH and it was rejected. */
            struct kl_span list;
            if (t->ech == NULL || t->ech_accepted)
                return KL_ERR_ALERT(KL_ALERT_UNSUPPORTED_EXTENSION);
            if ((ret = wire_read_span(&body, &list, wire_remaining(&body))) != 0)
                return ret;
            if (list.len > sizeof(t->retry_configs))
                return KL_ERR_DECODE;
            memcpy(t->retry_configs, list.base, list.len);
            t->retry_configs_len = list.len;
        } else if (type != EXT_SUPPORTED_GROUPS && type != EXT_RECORD_SIZE_LIMIT) {
            return KL_ERR_ALERT(KL_ALERT_UNSUPPORTED_EXTENSION);
        } else {
            struct kl_span rest;
            if ((ret = wire_read_span(&body, &rest, wire_remaining(&body))) != 0)
                return ret;
        }
        if ((ret = wire_reader_end(&body)) != 0)
            return ret;
    }
    t->state = t->resumed ? TTC_WAIT_FIN : TTC_WAIT_CERT;
    return th_add(t, msg, len);
}

/* CertificateRequest (4.3.2): an empty context and a signature_algorithms extension. */
static int on_cert_request(struct ttc *t, const uint8_t *msg, size_t len)
{
    struct wire_reader r, exts;
    struct kl_span ctx;
    int ret, have_sigs = 0;
    wire_reader_init(&r, msg + 4, len - 4);
    if ((ret = wire_read_vec_span(&r, &ctx, 1, 0, 255)) != 0 || (ret = wire_read_vec(&r, &exts, 2)) != 0 ||
        (ret = wire_reader_end(&r)) != 0)
        return ret;
    if (ctx.len != 0)
        return KL_ERR_ILLEGAL_PARAMETER;
    while (wire_remaining(&exts) != 0) {
        uint16_t type, v;
        struct wire_reader body, list;
        struct kl_span rest;
        if ((ret = wire_read_u16(&exts, &type)) != 0 || (ret = wire_read_vec(&exts, &body, 2)) != 0)
            return ret;
        if (type == EXT_SIGNATURE_ALGORITHMS) {
            if ((ret = wire_read_vec(&body, &list, 2)) != 0)
                return ret;
            while (wire_remaining(&list) != 0) {
                if ((ret = wire_read_u16(&list, &v)) != 0)
                    return ret;
                if (t->n_cr_schemes < 16)
                    t->cr_schemes[t->n_cr_schemes++] = v;
            }
            have_sigs = 1;
        } else if (type == EXT_CERTIFICATE_AUTHORITIES) {
            t->cr_has_cas = 1;
        }
        if (wire_remaining(&body) != 0 && (ret = wire_read_span(&body, &rest, wire_remaining(&body))) != 0)
            return ret;
    }
    /* 4.3.2: "The "signature_algorithms" extension MUST be specified". */
    if (!have_sigs)
        return KL_ERR_ALERT(KL_ALERT_MISSING_EXTENSION);
    t->cert_requested = 1;
    return th_add(t, msg, len);
}

/* The client's Certificate and CertificateVerify, appended to msgs and to the transcript. */
static int client_auth_messages(struct ttc *t, struct kl_buf *msgs)
{
    uint8_t content[64 + 34 + CRYPTO_MAX_HASH], sig[1024];
    size_t start = msgs->len, m, l, sig_len = sizeof(sig);
    uint16_t scheme = 0;
    static const struct ttc_client_auth no_cert;
    const struct ttc_client_auth *a = t->auth != NULL ? t->auth : &no_cert;
    int ret;
    if ((ret = wire_put_u8(msgs, MSG_CERTIFICATE)) != 0 || (ret = wire_block_open(msgs, &m, 3)) != 0 ||
        (ret = wire_put_u8(msgs, 0)) != 0 || (ret = wire_block_open(msgs, &l, 3)) != 0)
        return ret;
    for (size_t i = 0; i < a->n_client_chain; i++) {
        size_t c;
        if ((ret = wire_block_open(msgs, &c, 3)) != 0 ||
            (ret = wire_put_bytes(msgs, a->client_chain[i], a->client_chain_len[i])) != 0 ||
            (ret = wire_block_close(msgs, c, 3)) != 0 || (ret = wire_put_u16(msgs, 0)) != 0)
            return ret;
    }
    if ((ret = wire_block_close(msgs, l, 3)) != 0 || (ret = wire_block_close(msgs, m, 3)) != 0 ||
        (ret = th_add(t, msgs->base + start, msgs->len - start)) != 0)
        return ret;
    if (a->n_client_chain == 0 || a->client_omit_cv)
        return 0;
    memset(content, 0x20, 64);
    memcpy(content + 64, "TLS 1.3, client CertificateVerify", 34);
    if ((ret = ks_transcript_hash(&t->th, content + 98)) != 0 ||
        (ret = a->client_sign(a->client_sign_arg, &scheme, content, 98 + t->hash_len, sig, &sig_len)) != 0)
        return ret;
    if (a->client_bad_cv)
        sig[sig_len / 2] ^= 0x01;
    if (a->client_cv_scheme != 0)
        scheme = a->client_cv_scheme;
    start = msgs->len;
    if ((ret = wire_put_u8(msgs, MSG_CERTIFICATE_VERIFY)) != 0 || (ret = wire_block_open(msgs, &m, 3)) != 0 ||
        (ret = wire_put_u16(msgs, scheme)) != 0 || (ret = wire_block_open(msgs, &l, 2)) != 0 ||
        (ret = wire_put_bytes(msgs, sig, sig_len)) != 0 || (ret = wire_block_close(msgs, l, 2)) != 0 ||
        (ret = wire_block_close(msgs, m, 3)) != 0)
        return ret;
    return th_add(t, msgs->base + start, msgs->len - start);
}

static int on_cert(struct ttc *t, const uint8_t *msg, size_t len)
{
    struct wire_reader r, list;
    struct kl_span ctx, cert, exts;
    int ret;
    wire_reader_init(&r, msg + 4, len - 4);
    if ((ret = wire_read_vec_span(&r, &ctx, 1, 0, 255)) != 0 || (ret = wire_read_vec(&r, &list, 3)) != 0 ||
        (ret = wire_reader_end(&r)) != 0 || ctx.len != 0)
        return ret ? ret : KL_ERR_ILLEGAL_PARAMETER;
    int first = 1;
    while (wire_remaining(&list) != 0) {
        if ((ret = wire_read_vec_span(&list, &cert, 3, 1, 0xffffff)) != 0 ||
            (ret = wire_read_vec_span(&list, &exts, 2, 0, 0xffff)) != 0)
            return ret;
        if (first) {
            t->cert = malloc(cert.len);
            if (t->cert == NULL)
                return KL_ERR_NO_MEMORY;
            memcpy(t->cert, cert.base, cert.len);
            t->cert_len = cert.len;
            first = 0;
        }
    }
    if (first)
        return KL_ERR_DECODE;
    t->state = TTC_WAIT_CV;
    return th_add(t, msg, len);
}

static int on_cv(struct ttc *t, const uint8_t *msg, size_t len)
{
    struct wire_reader r;
    struct kl_span sig;
    uint8_t content[64 + 34 + CRYPTO_MAX_HASH];
    int ret;
    wire_reader_init(&r, msg + 4, len - 4);
    if ((ret = wire_read_u16(&r, &t->scheme)) != 0 || (ret = wire_read_vec_span(&r, &sig, 2, 1, 0xffff)) != 0 ||
        (ret = wire_reader_end(&r)) != 0)
        return ret;
    /* 4.4.3: 64 spaces, the context string with its terminating 0, the transcript hash. */
    memset(content, 0x20, 64);
    memcpy(content + 64, "TLS 1.3, server CertificateVerify", 34);
    if ((ret = ks_transcript_hash(&t->th, content + 98)) != 0)
        return ret;
    if (!t->cfg.skip_verify &&
        crypto_cert_verify(t->cert, t->cert_len, t->scheme, content, 98 + t->hash_len, sig.base, sig.len) != 0)
        return KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR);
    t->state = TTC_WAIT_FIN;
    return th_add(t, msg, len);
}

static int on_fin(struct ttc *t, struct kl_buf *out, const uint8_t *msg, size_t len)
{
    uint8_t th[CRYPTO_MAX_HASH], vd[CRYPTO_MAX_HASH], fin[4 + CRYPTO_MAX_HASH];
    int ret;
    if ((ret = ks_transcript_hash(&t->th, th)) != 0 || (ret = ks_verify_data(t->alg, vd, t->ks.server_hs, th)) != 0)
        return ret;
    if (len != 4 + t->hash_len || !crypto_equal(msg + 4, vd, t->hash_len))
        return KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR);
    if ((ret = th_add(t, msg, len)) != 0 || (ret = ks_transcript_hash(&t->th, th)) != 0 ||
        (ret = ks_schedule_application(&t->ks, th)) != 0)
        return ret;
    struct kl_buf auth;
    kl_buf_init(&auth, 1 << 16);
    if (t->early_accepted) {
        /* 4.5: EndOfEarlyData under the early keys, in the transcript before our Finished. */
        static const uint8_t eoed[4] = {MSG_END_OF_EARLY_DATA, 0, 0, 0};
        if ((ret = rec_seal(&t->wr, out, REC_TYPE_HANDSHAKE, eoed, 4, 0)) != 0 || (ret = th_add(t, eoed, 4)) != 0 ||
            (ret = ks_transcript_hash(&t->th, th)) != 0) {
            kl_buf_dispose(&auth);
            return ret;
        }
    }
    /* 4.4.2: the client's Certificate (and CertificateVerify) come before its Finished, which covers them. */
    if (t->cert_requested &&
        ((ret = client_auth_messages(t, &auth)) != 0 || (ret = ks_transcript_hash(&t->th, th)) != 0)) {
        kl_buf_dispose(&auth);
        return ret;
    }
    if ((ret = ks_verify_data(t->alg, vd, t->ks.client_hs, th)) != 0) {
        kl_buf_dispose(&auth);
        return ret;
    }
    fin[0] = MSG_FINISHED;
    fin[1] = 0;
    fin[2] = 0;
    fin[3] = (uint8_t)t->hash_len;
    memcpy(fin + 4, vd, t->hash_len);
    if (t->cfg.compat && !t->hrr &&
        (ret = rec_seal(&t->wr, out, REC_TYPE_CHANGE_CIPHER_SPEC, (const uint8_t *)"\x01", 1, 0)) != 0) {
        kl_buf_dispose(&auth);
        return ret;
    }
    if ((ret = kl_buf_append(&auth, fin, 4 + t->hash_len)) != 0 || (ret = th_add(t, fin, 4 + t->hash_len)) != 0 ||
        (ret = ks_transcript_hash(&t->th, th)) != 0 || (ret = ks_schedule_resumption(&t->ks, th)) != 0) {
        kl_buf_dispose(&auth);
        return ret;
    }
    ret = rec_dir_set_secret(&t->wr, t->suite, t->ks.client_hs, t->hash_len);
    if (ret == 0)
        ret = rec_seal(&t->wr, out, REC_TYPE_HANDSHAKE, auth.base, auth.len, 0);
    kl_buf_dispose(&auth);
    if (ret != 0 || (ret = rec_dir_set_secret(&t->wr, t->suite, t->ks.client_ap, t->hash_len)) != 0 ||
        (ret = rec_dir_set_secret(&t->rd, t->suite, t->ks.server_ap, t->hash_len)) != 0)
        return ret;
    t->state = TTC_DONE;
    return 0;
}

/* NewSessionTicket (4.6.1): keep the ticket and derive its PSK. */
static int on_nst(struct ttc *t, const uint8_t *msg, size_t len)
{
    struct wire_reader r, exts;
    struct kl_span nonce, ticket;
    struct ttc_ticket *tk;
    int ret;
    if (t->n_tickets == sizeof(t->tickets) / sizeof(t->tickets[0]))
        return 0;
    tk = &t->tickets[t->n_tickets];
    memset(tk, 0, sizeof(*tk));
    wire_reader_init(&r, msg + 4, len - 4);
    if ((ret = wire_read_u32(&r, &tk->lifetime)) != 0 || (ret = wire_read_u32(&r, &tk->age_add)) != 0 ||
        (ret = wire_read_vec_span(&r, &nonce, 1, 0, 255)) != 0 ||
        (ret = wire_read_vec_span(&r, &ticket, 2, 1, 0xffff)) != 0 || (ret = wire_read_vec(&r, &exts, 2)) != 0 ||
        (ret = wire_reader_end(&r)) != 0)
        return ret;
    while (wire_remaining(&exts) != 0) {
        uint16_t type;
        struct wire_reader body;
        if ((ret = wire_read_u16(&exts, &type)) != 0 || (ret = wire_read_vec(&exts, &body, 2)) != 0)
            return ret;
        if (type != EXT_EARLY_DATA || (ret = wire_read_u32(&body, &tk->max_early_data)) != 0 ||
            (ret = wire_reader_end(&body)) != 0)
            return ret ? ret : KL_ERR_ALERT(KL_ALERT_UNSUPPORTED_EXTENSION);
    }
    if (ticket.len > sizeof(tk->ticket) || tk->lifetime > 604800)
        return KL_ERR_ILLEGAL_PARAMETER;
    memcpy(tk->ticket, ticket.base, ticket.len);
    tk->ticket_len = ticket.len;
    memcpy(tk->nonce, nonce.base, nonce.len);
    tk->nonce_len = nonce.len;
    tk->alg = t->alg;
    tk->psk_len = t->hash_len;
    if ((ret = ks_resumption_psk(t->alg, tk->psk, t->ks.resumption, nonce.base, nonce.len)) != 0)
        return ret;
    t->n_tickets++;
    return 0;
}

static int on_message(struct ttc *t, struct kl_buf *out, uint8_t type, const uint8_t *msg, size_t len)
{
    switch (t->state) {
    case TTC_WAIT_SH:
        return type == MSG_SERVER_HELLO ? on_server_hello(t, out, msg, len) : KL_ERR_UNEXPECTED_MESSAGE;
    case TTC_WAIT_EE:
        return type == MSG_ENCRYPTED_EXTENSIONS ? on_ee(t, msg, len) : KL_ERR_UNEXPECTED_MESSAGE;
    case TTC_WAIT_CERT:
        if (type == MSG_CERTIFICATE_REQUEST && !t->cert_requested)
            return on_cert_request(t, msg, len);
        return type == MSG_CERTIFICATE ? on_cert(t, msg, len) : KL_ERR_UNEXPECTED_MESSAGE;
    case TTC_WAIT_CV:
        return type == MSG_CERTIFICATE_VERIFY ? on_cv(t, msg, len) : KL_ERR_UNEXPECTED_MESSAGE;
    case TTC_WAIT_FIN:
        return type == MSG_FINISHED ? on_fin(t, out, msg, len) : KL_ERR_UNEXPECTED_MESSAGE;
    case TTC_DONE:
        if (type == MSG_NEW_SESSION_TICKET)
            return on_nst(t, msg, len);
        if (type == MSG_KEY_UPDATE && len == 5) {
            int ret = rec_dir_update(&t->rd);
            if (ret == 0 && msg[4] == 1) {
                ret = rec_seal(&t->wr, out, REC_TYPE_HANDSHAKE, (const uint8_t *)"\x18\x00\x00\x01\x00", 5, 0);
                if (ret == 0)
                    ret = rec_dir_update(&t->wr);
            }
            return ret;
        }
        return KL_ERR_UNEXPECTED_MESSAGE;
    default:
        return KL_ERR_UNEXPECTED_MESSAGE;
    }
}

int ttc_input(struct ttc *t, struct kl_buf *out, struct kl_buf *app, const uint8_t *in, size_t *len_p)
{
    size_t off = 0, len = *len_p;
    int ret = 0;
    while (off < len) {
        struct rec_record rr;
        uint8_t type;
        ret = rec_next(&rr, in + off, len - off, 0);
        if (ret == KL_ERR_WANT_READ) {
            ret = 0;
            break;
        }
        if (ret != 0)
            break;
        off += rr.wire_len;
        if (rr.type == REC_TYPE_CHANGE_CIPHER_SPEC)
            continue;
        size_t start = t->hs_in.len;
        if ((ret = rec_open(&t->rd, &t->hs_in, &type, &rr)) != 0)
            break;
        if (type == REC_TYPE_APPLICATION_DATA) {
            ret = kl_buf_append(app, t->hs_in.base + start, t->hs_in.len - start);
            t->hs_in.len = start;
            if (ret != 0)
                break;
            continue;
        }
        if (type == REC_TYPE_ALERT) {
            uint8_t desc = t->hs_in.len - start == 2 ? t->hs_in.base[start + 1] : 0xff;
            t->hs_in.len = start;
            ret = desc == 0 ? KL_ERR_CLOSED : KL_ERR_PEER_ALERT(desc);
            break;
        }
        for (;;) {
            uint8_t mt;
            size_t bl;
            ret = msg_header_peek(t->hs_in.base, t->hs_in.len, 1 << 20, &mt, &bl);
            if (ret == KL_ERR_WANT_READ) {
                ret = 0;
                break;
            }
            if (ret != 0)
                break;
            ret = on_message(t, out, mt, t->hs_in.base, 4 + bl);
            kl_buf_consume(&t->hs_in, 4 + bl);
            if (ret != 0)
                break;
        }
        if (ret != 0)
            break;
    }
    *len_p = off;
    if (ret != 0 && ret != KL_ERR_CLOSED)
        t->state = TTC_FAILED;
    return ret;
}

int ttc_send(struct ttc *t, struct kl_buf *out, const uint8_t *data, size_t len)
{
    if (t->state != TTC_DONE)
        return KL_ERR_INVALID;
    return rec_seal(&t->wr, out, REC_TYPE_APPLICATION_DATA, data, len, 0);
}

void ttc_dispose(struct ttc *t)
{
    rec_dir_dispose(&t->rd);
    rec_dir_dispose(&t->wr);
    for (size_t i = 0; i < 3; i++)
        crypto_kex_dispose(&t->kex[i]);
    if (t->th_live)
        ks_transcript_dispose(&t->th);
    ks_schedule_dispose(&t->ks);
    kl_buf_dispose(&t->ch1);
    kl_buf_dispose(&t->ch1_outer);
    kl_buf_dispose(&t->hs_in);
    if (t->ech_ctx_live)
        hpke_ctx_dispose(&t->ech_ctx);
    t->ech_ctx_live = 0;
    free(t->cert);
    t->cert = NULL;
}

void ttc_set_client_auth(struct ttc *t, const struct ttc_client_auth *auth)
{
    t->auth = auth;
}
