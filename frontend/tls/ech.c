/*
 * ech.c - Encrypted Client Hello, the server's ClientHello side (draft-ietf-tls-esni-22).
 */
#include <string.h>
#include "ech.h"
#include "ext.h"
#include "key_schedule.h"
#include "wire.h"

int ech_ext_decode(uint8_t *type_p, struct ech_outer *o, struct kl_span body)
{
    struct wire_reader r;
    int ret;
    memset(o, 0, sizeof(*o));
    wire_reader_init(&r, body.base, body.len);
    KL_TRY(wire_read_u8(&r, type_p));
    if (*type_p == ECH_TYPE_INNER) {
        /* 5: "case inner: Empty;" */
        KL_TRY(wire_reader_end(&r));
        goto exit;
    }
    /* ECHClientHelloType has outer(0) and inner(1) only. */
    KL_ENSURE(*type_p == ECH_TYPE_OUTER, KL_ERR_ILLEGAL_PARAMETER);
    /* HpkeSymmetricCipherSuite cipher_suite; uint8 config_id; opaque enc<0..2^16-1>; opaque payload<1..2^16-1>; */
    KL_TRY(wire_read_u16(&r, &o->kdf_id));
    KL_TRY(wire_read_u16(&r, &o->aead_id));
    KL_TRY(wire_read_u8(&r, &o->config_id));
    KL_TRY(wire_read_vec_span(&r, &o->enc, 2, 0, 0xffff));
    KL_TRY(wire_read_vec_span(&r, &o->payload, 2, 1, 0xffff));
    KL_TRY(wire_reader_end(&r));
exit:
    return ret;
}

int ech_ext_type(struct kl_span body)
{
    struct wire_reader r;
    uint8_t type;
    wire_reader_init(&r, body.base, body.len);
    return wire_read_u8(&r, &type) == 0 ? type : -1;
}

/* Copy a length-prefixed vector (prefix included) from r to b. */
static int ech_copy_vec(struct kl_buf *b, struct wire_reader *r, size_t len_bytes)
{
    struct kl_span v;
    size_t mark;
    int ret;
    KL_TRY(wire_read_vec_span(r, &v, len_bytes, 0, ((size_t)1 << (8 * len_bytes)) - 1));
    KL_TRY(wire_block_open(b, &mark, len_bytes));
    KL_TRY(wire_put_bytes(b, v.base, v.len));
    KL_TRY(wire_block_close(b, mark, len_bytes));
exit:
    return ret;
}

int ech_outer_aad(struct kl_buf *aad, const uint8_t *body, size_t len)
{
    struct wire_reader r, list;
    struct kl_span fixed;
    size_t mark;
    int ret;

    /* Re-encode the outer ClientHello field by field: the same bytes, except the payload. */
    wire_reader_init(&r, body, len);
    KL_TRY(wire_read_span(&r, &fixed, 2 + 32)); /* legacy_version, random */
    KL_TRY(wire_put_bytes(aad, fixed.base, fixed.len));
    KL_TRY(ech_copy_vec(aad, &r, 1)); /* legacy_session_id */
    KL_TRY(ech_copy_vec(aad, &r, 2)); /* cipher_suites */
    KL_TRY(ech_copy_vec(aad, &r, 1)); /* legacy_compression_methods */
    KL_TRY(wire_read_vec(&r, &list, 2));
    KL_TRY(wire_reader_end(&r));
    KL_TRY(wire_block_open(aad, &mark, 2));
    while (wire_remaining(&list) != 0) {
        uint16_t type;
        struct wire_reader ext;
        struct kl_span ext_body;
        KL_TRY(wire_read_u16(&list, &type));
        KL_TRY(wire_put_u16(aad, type));
        if (type != EXT_ENCRYPTED_CLIENT_HELLO) {
            KL_TRY(ech_copy_vec(aad, &list, 2));
            continue;
        }
        /* 5.2: "the AAD is the ClientHelloOuterAAD [...] with the payload field replaced by a byte string of the
         * same length but whose contents are zeros". */
        uint8_t type_byte;
        struct ech_outer o;
        size_t ext_mark;
        KL_TRY(wire_read_vec(&list, &ext, 2));
        KL_TRY(wire_read_span(&ext, &ext_body, wire_remaining(&ext)));
        KL_TRY(ech_ext_decode(&type_byte, &o, ext_body));
        KL_ENSURE(type_byte == ECH_TYPE_OUTER, KL_ERR_ILLEGAL_PARAMETER);
        KL_TRY(wire_block_open(aad, &ext_mark, 2));
        KL_TRY(wire_put_u8(aad, ECH_TYPE_OUTER));
        KL_TRY(wire_put_u16(aad, o.kdf_id));
        KL_TRY(wire_put_u16(aad, o.aead_id));
        KL_TRY(wire_put_u8(aad, o.config_id));
        KL_TRY(wire_put_u16(aad, (uint16_t)o.enc.len));
        KL_TRY(wire_put_bytes(aad, o.enc.base, o.enc.len));
        KL_TRY(wire_put_u16(aad, (uint16_t)o.payload.len));
        for (size_t i = 0; i < o.payload.len; i++)
            KL_TRY(wire_put_u8(aad, 0));
        KL_TRY(wire_block_close(aad, ext_mark, 2));
    }
    KL_TRY(wire_block_close(aad, mark, 2));
exit:
    return ret;
}

int ech_info(uint8_t *info, size_t *len_p, const struct tls_ech_key *key)
{
    static const char prefix[] = ECH_INFO_PREFIX; /* with its NUL: the 0x00 separator */
    if (key->config_len > TLS_ECH_MAX_CONFIG_LEN)
        return KL_ERR_INVALID;
    memcpy(info, prefix, sizeof(prefix));
    memcpy(info + sizeof(prefix), key->config, key->config_len);
    *len_p = sizeof(prefix) + key->config_len;
    return 0;
}

static int ech_key_has_suite(const struct tls_ech_key *k, uint16_t kdf_id, uint16_t aead_id)
{
    for (size_t i = 0; i < k->n_suites && i < TLS_ECH_MAX_SUITES; i++) {
        if (k->suites[i].kdf_id == kdf_id && k->suites[i].aead_id == aead_id)
            return 1;
    }
    return 0;
}

int ech_open(struct hpke_ctx *ctx, const struct tls_ech_key **key_p, enum tls_ech_status *status_p, struct kl_buf *pt,
             const struct tls_ech_config *cfg, const struct ech_outer *o, const uint8_t *aad, size_t aad_len)
{
    uint8_t info[ECH_INFO_MAX];
    size_t info_len;
    int ret = 0;

    *status_p = TLS_ECH_UNKNOWN_CONFIG;
    *key_p = NULL;
    memset(ctx, 0, sizeof(*ctx));
    for (size_t i = 0; i < cfg->n_keys && i < TLS_ECH_KEYS_MAX; i++) {
        const struct tls_ech_key *k = &cfg->keys[i];
        if (k->config_id != o->config_id || k->kem_id != HPKE_KEM_X25519_SHA256 ||
            !ech_key_has_suite(k, o->kdf_id, o->aead_id) || !hpke_suite_supported(o->kdf_id, o->aead_id))
            continue;
        *status_p = TLS_ECH_REJECTED;
        if (ech_info(info, &info_len, k) != 0)
            continue;
        /* 7.1: "If decryption fails, the server [...] MUST continue with the next candidate ECHConfig" and, with
         * none left, rejects ECH. A bad enc (wrong length, low order) is a decryption failure too. */
        if (hpke_setup_base_r(ctx, o->kdf_id, o->aead_id, o->enc.base, o->enc.len, k->private_key, k->public_key, info,
                              info_len) != 0) {
            hpke_ctx_dispose(ctx);
            continue;
        }
        kl_buf_reset(pt);
        if (o->payload.len < HPKE_TAG_LEN)
            ret = KL_ERR_BAD_RECORD_MAC;
        else
            ret = kl_buf_append(pt, o->payload.base, o->payload.len); /* reserve, then open in place */
        if (ret == 0)
            ret = hpke_open(ctx, pt->base, aad, aad_len, pt->base, o->payload.len);
        if (ret == KL_ERR_NO_MEMORY || ret == KL_ERR_OVERFLOW)
            goto exit;
        if (ret != 0) {
            ret = 0;
            kl_buf_reset(pt);
            hpke_ctx_dispose(ctx);
            continue;
        }
        pt->len = o->payload.len - HPKE_TAG_LEN;
        *key_p = k;
        *status_p = TLS_ECH_ACCEPTED;
        break;
    }
exit:
    if (*status_p != TLS_ECH_ACCEPTED) {
        hpke_ctx_dispose(ctx);
        kl_buf_reset(pt);
    }
    crypto_wipe(info, sizeof(info));
    return ret;
}

/* Find type in the outer extensions from *pos on, moving *pos past it; copy the whole extension to out. */
static int ech_copy_outer(struct kl_buf *out, struct wire_reader *pos, uint16_t want)
{
    int ret;
    while (wire_remaining(pos) != 0) {
        uint16_t type;
        struct kl_span body;
        KL_TRY(wire_read_u16(pos, &type));
        KL_TRY(wire_read_vec_span(pos, &body, 2, 0, 0xffff));
        if (type != want)
            continue;
        KL_TRY(wire_put_u16(out, type));
        KL_TRY(wire_put_u16(out, (uint16_t)body.len));
        KL_TRY(wire_put_bytes(out, body.base, body.len));
        goto exit;
    }
    /* 5.1: a reference to an extension the outer ClientHello lacks, one already used (references must be in
     * the outer's order and each extension appears once there) or one out of order. */
    ret = KL_ERR_ILLEGAL_PARAMETER;
exit:
    return ret;
}

int ech_inner_rebuild(struct kl_buf *out, const uint8_t *encoded, size_t encoded_len, const uint8_t *session_id,
                      size_t session_id_len, struct kl_span outer_exts, size_t max_body)
{
    struct wire_reader r, list, pos;
    struct kl_span fixed, sid, padding;
    size_t msg_mark, list_mark, start = out->len;
    int seen_outer = 0, ret;

    wire_reader_init(&r, encoded, encoded_len);
    wire_reader_init(&pos, outer_exts.base, outer_exts.len);
    KL_TRY(wire_put_u8(out, MSG_CLIENT_HELLO));
    KL_TRY(wire_block_open(out, &msg_mark, 3));
    KL_TRY(wire_read_span(&r, &fixed, 2 + 32)); /* legacy_version, random */
    KL_TRY(wire_put_bytes(out, fixed.base, fixed.len));
    /* 5.1: "legacy_session_id [...] MUST be empty" in the encoding; the server copies the outer one in. */
    KL_TRY(wire_read_vec_span(&r, &sid, 1, 0, 32));
    KL_ENSURE(sid.len == 0, KL_ERR_ILLEGAL_PARAMETER);
    KL_TRY(wire_put_u8(out, (uint8_t)session_id_len));
    KL_TRY(wire_put_bytes(out, session_id, session_id_len));
    KL_TRY(ech_copy_vec(out, &r, 2)); /* cipher_suites */
    KL_TRY(ech_copy_vec(out, &r, 1)); /* legacy_compression_methods */
    KL_TRY(wire_read_vec(&r, &list, 2));
    KL_TRY(wire_block_open(out, &list_mark, 2));
    while (wire_remaining(&list) != 0) {
        uint16_t type;
        struct kl_span body;
        KL_TRY(wire_read_u16(&list, &type));
        KL_TRY(wire_read_vec_span(&list, &body, 2, 0, 0xffff));
        if (type != EXT_ECH_OUTER_EXTENSIONS) {
            KL_TRY(wire_put_u16(out, type));
            KL_TRY(wire_put_u16(out, (uint16_t)body.len));
            KL_TRY(wire_put_bytes(out, body.base, body.len));
            continue;
        }
        /* 5.1: OuterExtensions is "ExtensionType outer_extensions<2..254>"; one such extension (it is an
         * extension like any other: a duplicate is illegal_parameter, RFC 8446 4.2). */
        struct wire_reader refs;
        KL_ENSURE(!seen_outer, KL_ERR_ILLEGAL_PARAMETER);
        seen_outer = 1;
        {
            struct kl_span refs_span;
            struct wire_reader b;
            wire_reader_init(&b, body.base, body.len);
            KL_TRY(wire_read_vec_span(&b, &refs_span, 1, 2, 254));
            KL_TRY(wire_reader_end(&b));
            KL_ENSURE(refs_span.len % 2 == 0, KL_ERR_DECODE);
            wire_reader_init(&refs, refs_span.base, refs_span.len);
        }
        while (wire_remaining(&refs) != 0) {
            uint16_t want;
            KL_TRY(wire_read_u16(&refs, &want));
            /* "If [...] any extension referenced in the OuterExtensions [...] is "encrypted_client_hello", the
             * server MUST abort the connection with an "illegal_parameter" alert." */
            KL_ENSURE(want != EXT_ENCRYPTED_CLIENT_HELLO, KL_ERR_ILLEGAL_PARAMETER);
            KL_TRY(ech_copy_outer(out, &pos, want));
        }
    }
    KL_TRY(wire_block_close(out, list_mark, 2));
    /* 5.1: the padding "MUST be all zeros"; the server checks: illegal_parameter otherwise. */
    KL_TRY(wire_read_span(&r, &padding, wire_remaining(&r)));
    {
        struct wire_reader pr;
        uint8_t z;
        wire_reader_init(&pr, padding.base, padding.len);
        while (wire_read_u8(&pr, &z) == 0)
            KL_ENSURE(z == 0, KL_ERR_ILLEGAL_PARAMETER);
    }
    KL_TRY(wire_block_close(out, msg_mark, 3));
    /* The same cap as any ClientHello (hs_msg_cap): references cannot inflate it past what one accepts. */
    KL_ENSURE(out->len - start - MSG_HEADER_LEN <= max_body, KL_ERR_DECODE);
exit:
    if (ret != 0)
        kl_buf_reset(out);
    return ret;
}

int ech_inner_check(const struct msg_client_hello *inner)
{
    struct wire_reader r;
    struct ech_outer o;
    uint8_t type;
    uint16_t v;
    int has13 = 0;
    /* 7.1: "If ClientHelloInner does not contain an "encrypted_client_hello" extension of type inner [...] abort
     * with an "illegal_parameter" alert". */
    if (!ext_has(&inner->ext, EXT_B_ENCRYPTED_CLIENT_HELLO) || ech_ext_decode(&type, &o, inner->ext.ech) != 0 ||
        type != ECH_TYPE_INNER)
        return KL_ERR_ILLEGAL_PARAMETER;
    /* 7.1: ClientHelloInner "offers TLS 1.2 or below": illegal_parameter. */
    if (!ext_has(&inner->ext, EXT_B_SUPPORTED_VERSIONS))
        return KL_ERR_ILLEGAL_PARAMETER;
    wire_reader_init(&r, inner->ext.versions.base, inner->ext.versions.len);
    while (wire_read_u16(&r, &v) == 0) {
        if (v < TLS_VERSION_13)
            return KL_ERR_ILLEGAL_PARAMETER;
        if (v == TLS_VERSION_13)
            has13 = 1;
    }
    return has13 ? 0 : KL_ERR_ILLEGAL_PARAMETER;
}

int ech_confirmation(uint8_t out[ECH_CONFIRMATION_LEN], enum crypto_hash_alg alg, const uint8_t inner_random[32],
                     const char *label, const uint8_t *transcript_hash)
{
    uint8_t prk[CRYPTO_MAX_HASH];
    int ret;
    /* 7.2: accept_confirmation = HKDF-Expand-Label(HKDF-Extract(0, ClientHelloInner.random), label,
     * transcript_ech_conf, 8): HKDF-Extract with a zero salt is the TLS early secret's formula. */
    KL_TRY(ks_early_secret(alg, prk, inner_random, 32));
    KL_TRY(ks_hkdf_expand_label(alg, out, ECH_CONFIRMATION_LEN, prk, label, transcript_hash, crypto_hash_len(alg)));
exit:
    crypto_wipe(prk, sizeof(prk));
    return ret;
}
