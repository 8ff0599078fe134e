/*
 * hpke.c - RFC 9180 base mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and the three TLS
 * AEADs. Contracts in hpke.h.
 *
 * Only the RFC 9180 composition is here (labels, suite ids, the key schedule, nonces and
 * sequence numbers); X25519 is crypto_kex (libsodium), HKDF and the AEADs are crypto.c's
 * (libcrypto). Every intermediate secret lives on the stack and is wiped at the one exit.
 */
#include <string.h>
#include "hpke.h"
#include "tls.h"

#define HPKE_HASH CRYPTO_HASH_SHA256
#define HPKE_NH 32 /* Nh of HKDF-SHA256, and Nsecret of DHKEM(X25519, HKDF-SHA256) */

/*
 * The largest info or exporter_context we take: ECH's info is "tls ech" ‖ 0x00 ‖ ECHConfig
 * (at most 8 + TLS_ECH_MAX_CONFIG_LEN bytes). It bounds the labeled inputs, which are built
 * on the stack, and keeps LabeledExpand's info within crypto_hkdf_expand()'s 1024 bytes.
 */
#define HPKE_MAX_INFO 960
/* "HPKE-v1" ‖ suite_id (at most 10) ‖ label (at most 13) ‖ ikm or info */
#define HPKE_LABELED_MAX (7 + 10 + 16 + HPKE_MAX_INFO + 2)

static const uint8_t hpke_v1[] = {'H', 'P', 'K', 'E', '-', 'v', '1'};

/* suite_id (5.1): "KEM" ‖ I2OSP(kem_id, 2) for the KEM, "HPKE" ‖ kem ‖ kdf ‖ aead for the rest. */
struct hpke_suite_id {
    uint8_t b[10];
    size_t len;
};

static void suite_id_kem(struct hpke_suite_id *s)
{
    s->b[0] = 'K';
    s->b[1] = 'E';
    s->b[2] = 'M';
    s->b[3] = HPKE_KEM_X25519_SHA256 >> 8;
    s->b[4] = HPKE_KEM_X25519_SHA256 & 0xff;
    s->len = 5;
}

static void suite_id_hpke(struct hpke_suite_id *s, uint16_t kdf_id, uint16_t aead_id)
{
    s->b[0] = 'H';
    s->b[1] = 'P';
    s->b[2] = 'K';
    s->b[3] = 'E';
    s->b[4] = HPKE_KEM_X25519_SHA256 >> 8;
    s->b[5] = HPKE_KEM_X25519_SHA256 & 0xff;
    s->b[6] = (uint8_t)(kdf_id >> 8);
    s->b[7] = (uint8_t)kdf_id;
    s->b[8] = (uint8_t)(aead_id >> 8);
    s->b[9] = (uint8_t)aead_id;
    s->len = 10;
}

/* HPKE aead_id -> the TLS 1.3 suite whose keyed AEAD crypto.c provides (same cipher, same Nk). */
static uint16_t aead_tls_suite(uint16_t aead_id)
{
    switch (aead_id) {
    case HPKE_AEAD_AES_128_GCM:
        return TLS_AES_128_GCM_SHA256;
    case HPKE_AEAD_AES_256_GCM:
        return TLS_AES_256_GCM_SHA384;
    case HPKE_AEAD_CHACHA20_POLY1305:
        return TLS_CHACHA20_POLY1305_SHA256;
    default:
        return 0;
    }
}

int hpke_suite_supported(uint16_t kdf_id, uint16_t aead_id)
{
    return kdf_id == HPKE_KDF_HKDF_SHA256 && aead_tls_suite(aead_id) != 0;
}

/* LabeledExtract(salt, label, ikm) = Extract(salt, "HPKE-v1" ‖ suite_id ‖ label ‖ ikm) (4). */
static int labeled_extract(uint8_t prk[HPKE_NH], const struct hpke_suite_id *sid, const uint8_t *salt, size_t salt_len,
                           const char *label, const uint8_t *ikm, size_t ikm_len)
{
    int ret;
    uint8_t in[HPKE_LABELED_MAX];
    size_t label_len = strlen(label), n = 0;

    KL_ENSURE(label_len <= 16 && ikm_len <= HPKE_MAX_INFO, KL_ERR_INVALID);
    memcpy(in, hpke_v1, sizeof(hpke_v1));
    n += sizeof(hpke_v1);
    memcpy(in + n, sid->b, sid->len);
    n += sid->len;
    memcpy(in + n, label, label_len);
    n += label_len;
    if (ikm_len > 0)
        memcpy(in + n, ikm, ikm_len);
    n += ikm_len;
    KL_TRY(crypto_hkdf_extract(HPKE_HASH, prk, salt, salt_len, in, n));
    ret = 0;
exit:
    crypto_wipe(in, sizeof(in));
    return ret;
}

/* LabeledExpand(prk, label, info, L) = Expand(prk, I2OSP(L, 2) ‖ "HPKE-v1" ‖ suite_id ‖ label ‖ info, L) (4). */
static int labeled_expand(uint8_t *out, size_t out_len, const struct hpke_suite_id *sid, const uint8_t prk[HPKE_NH],
                          const char *label, const uint8_t *info, size_t info_len)
{
    int ret;
    uint8_t in[HPKE_LABELED_MAX];
    size_t label_len = strlen(label), n = 0;

    KL_ENSURE(label_len <= 16 && info_len <= HPKE_MAX_INFO && out_len <= 255 * HPKE_NH, KL_ERR_INVALID);
    in[n++] = (uint8_t)(out_len >> 8);
    in[n++] = (uint8_t)out_len;
    memcpy(in + n, hpke_v1, sizeof(hpke_v1));
    n += sizeof(hpke_v1);
    memcpy(in + n, sid->b, sid->len);
    n += sid->len;
    memcpy(in + n, label, label_len);
    n += label_len;
    if (info_len > 0)
        memcpy(in + n, info, info_len);
    n += info_len;
    KL_TRY(crypto_hkdf_expand(HPKE_HASH, out, out_len, prk, HPKE_NH, in, n));
    ret = 0;
exit:
    crypto_wipe(in, sizeof(in));
    return ret;
}

int hpke_derive_keypair(uint8_t sk[HPKE_X25519_LEN], uint8_t pk[HPKE_X25519_LEN], const uint8_t *ikm, size_t ikm_len)
{
    int ret;
    struct hpke_suite_id sid;
    uint8_t dkp_prk[HPKE_NH];

    suite_id_kem(&sid);
    /*
     * 7.1.3: for X25519, "dkp_prk = LabeledExtract("", "dkp_prk", ikm); sk =
     * LabeledExpand(dkp_prk, "sk", "", Nsk)"; the scalar is used as is (X25519 clamps it).
     */
    KL_TRY(labeled_extract(dkp_prk, &sid, NULL, 0, "dkp_prk", ikm, ikm_len));
    KL_TRY(labeled_expand(sk, HPKE_X25519_LEN, &sid, dkp_prk, "sk", NULL, 0));
    KL_TRY(hpke_public_key(pk, sk));
    ret = 0;
exit:
    crypto_wipe(dkp_prk, sizeof(dkp_prk));
    if (ret != 0)
        crypto_wipe(sk, HPKE_X25519_LEN);
    return ret;
}

int hpke_generate_keypair(uint8_t sk[HPKE_X25519_LEN], uint8_t pk[HPKE_X25519_LEN])
{
    int ret;
    struct crypto_kex k;

    memset(&k, 0, sizeof(k));
    KL_TRY(crypto_kex_generate(&k, TLS_GROUP_X25519));
    KL_ENSURE(k.pub_len == HPKE_X25519_LEN, KL_ERR_CRYPTO);
    memcpy(sk, k.priv, HPKE_X25519_LEN);
    memcpy(pk, k.pub, HPKE_X25519_LEN);
    ret = 0;
exit:
    crypto_kex_dispose(&k);
    return ret;
}

int hpke_public_key(uint8_t pk[HPKE_X25519_LEN], const uint8_t sk[HPKE_X25519_LEN])
{
    int ret;
    struct crypto_kex k;

    memset(&k, 0, sizeof(k));
    KL_TRY(crypto_kex_set_private(&k, TLS_GROUP_X25519, sk, HPKE_X25519_LEN));
    KL_ENSURE(k.pub_len == HPKE_X25519_LEN, KL_ERR_CRYPTO);
    memcpy(pk, k.pub, HPKE_X25519_LEN);
    ret = 0;
exit:
    crypto_kex_dispose(&k);
    return ret;
}

/*
 * DH(sk, pk) then ExtractAndExpand(dh, enc ‖ pkRm) (4.1): the KEM's shared_secret.
 * crypto_kex_derive refuses an all-zero X25519 output (a low-order pk): "Senders and
 * recipients MUST check whether the shared secret is the all-zero value and abort if so"
 * (7.1.4), as KL_ERR_ILLEGAL_PARAMETER.
 */
static int kem_shared_secret(uint8_t shared[HPKE_NH], const uint8_t sk[HPKE_X25519_LEN],
                             const uint8_t peer[HPKE_X25519_LEN], const uint8_t enc[HPKE_X25519_LEN],
                             const uint8_t pk_r[HPKE_X25519_LEN])
{
    int ret;
    struct crypto_kex k;
    struct hpke_suite_id sid;
    uint8_t dh[HPKE_X25519_LEN], eae_prk[HPKE_NH], kem_context[2 * HPKE_X25519_LEN];
    size_t dh_len;

    memset(&k, 0, sizeof(k));
    suite_id_kem(&sid);
    KL_TRY(crypto_kex_set_private(&k, TLS_GROUP_X25519, sk, HPKE_X25519_LEN));
    KL_TRY(crypto_kex_derive(&k, dh, &dh_len, peer, HPKE_X25519_LEN));
    KL_ENSURE(dh_len == sizeof(dh), KL_ERR_CRYPTO);
    memcpy(kem_context, enc, HPKE_X25519_LEN);
    memcpy(kem_context + HPKE_X25519_LEN, pk_r, HPKE_X25519_LEN);
    KL_TRY(labeled_extract(eae_prk, &sid, NULL, 0, "eae_prk", dh, sizeof(dh)));
    KL_TRY(labeled_expand(shared, HPKE_NH, &sid, eae_prk, "shared_secret", kem_context, sizeof(kem_context)));
    ret = 0;
exit:
    crypto_kex_dispose(&k);
    crypto_wipe(dh, sizeof(dh));
    crypto_wipe(eae_prk, sizeof(eae_prk));
    if (ret != 0)
        crypto_wipe(shared, HPKE_NH);
    return ret;
}

/*
 * KeySchedule(mode_base, shared_secret, info, default_psk, default_psk_id) (5.1), keying
 * ctx's AEAD for sealing (encrypt = 1) or opening.
 */
static int key_schedule(struct hpke_ctx *ctx, uint16_t kdf_id, uint16_t aead_id, int encrypt,
                        const uint8_t shared[HPKE_NH], const uint8_t *info, size_t info_len)
{
    int ret;
    struct hpke_suite_id sid;
    uint16_t suite = aead_tls_suite(aead_id);
    size_t nk = crypto_suite_key_len(suite);
    uint8_t ksc[1 + 2 * HPKE_NH], secret[HPKE_NH], key[HPKE_MAX_KEY_LEN];

    suite_id_hpke(&sid, kdf_id, aead_id);
    /* key_schedule_context = mode ‖ psk_id_hash ‖ info_hash, with mode_base = 0 and psk_id = "". */
    ksc[0] = 0x00;
    KL_TRY(labeled_extract(ksc + 1, &sid, NULL, 0, "psk_id_hash", NULL, 0));
    KL_TRY(labeled_extract(ksc + 1 + HPKE_NH, &sid, NULL, 0, "info_hash", info, info_len));
    /* secret = LabeledExtract(shared_secret, "secret", psk), psk = "". */
    KL_TRY(labeled_extract(secret, &sid, shared, HPKE_NH, "secret", NULL, 0));
    KL_ENSURE(nk != 0 && nk <= sizeof(key), KL_ERR_INVALID);
    KL_TRY(labeled_expand(key, nk, &sid, secret, "key", ksc, sizeof(ksc)));
    KL_TRY(labeled_expand(ctx->base_nonce, HPKE_NONCE_LEN, &sid, secret, "base_nonce", ksc, sizeof(ksc)));
    KL_TRY(labeled_expand(ctx->exporter_secret, sizeof(ctx->exporter_secret), &sid, secret, "exp", ksc, sizeof(ksc)));
    KL_TRY(crypto_aead_init(&ctx->aead, suite, encrypt, key, nk));
    ctx->kdf_id = kdf_id;
    ctx->aead_id = aead_id;
    ctx->seq = 0;
    ret = 0;
exit:
    crypto_wipe(ksc, sizeof(ksc));
    crypto_wipe(secret, sizeof(secret));
    crypto_wipe(key, sizeof(key));
    return ret;
}

int hpke_setup_base_s(struct hpke_ctx *ctx, uint8_t enc[HPKE_X25519_LEN], uint16_t kdf_id, uint16_t aead_id,
                      const uint8_t pk_r[HPKE_X25519_LEN], const uint8_t *info, size_t info_len, const uint8_t *sk_e)
{
    int ret;
    uint8_t ske[HPKE_X25519_LEN], pke[HPKE_X25519_LEN], shared[HPKE_NH];

    memset(ctx, 0, sizeof(*ctx));
    KL_ENSURE(hpke_suite_supported(kdf_id, aead_id) && info_len <= HPKE_MAX_INFO, KL_ERR_INVALID);
    /* Encap(pkR) (4.1): skE, pkE = GenerateKeyPair(); enc = SerializePublicKey(pkE). */
    if (sk_e != NULL) {
        memcpy(ske, sk_e, sizeof(ske));
        KL_TRY(hpke_public_key(pke, ske));
    } else {
        KL_TRY(hpke_generate_keypair(ske, pke));
    }
    KL_TRY(kem_shared_secret(shared, ske, pk_r, pke, pk_r));
    KL_TRY(key_schedule(ctx, kdf_id, aead_id, 1, shared, info, info_len));
    memcpy(enc, pke, HPKE_X25519_LEN);
    ret = 0;
exit:
    crypto_wipe(ske, sizeof(ske));
    crypto_wipe(shared, sizeof(shared));
    if (ret != 0)
        hpke_ctx_dispose(ctx);
    return ret;
}

int hpke_setup_base_r(struct hpke_ctx *ctx, uint16_t kdf_id, uint16_t aead_id, const uint8_t *enc, size_t enc_len,
                      const uint8_t sk_r[HPKE_X25519_LEN], const uint8_t pk_r[HPKE_X25519_LEN], const uint8_t *info,
                      size_t info_len)
{
    int ret;
    uint8_t shared[HPKE_NH];

    memset(ctx, 0, sizeof(*ctx));
    /* Decap(enc, skR) (4.1): DeserializePublicKey(enc) takes exactly Npk = 32 bytes for X25519. */
    KL_ENSURE(hpke_suite_supported(kdf_id, aead_id) && info_len <= HPKE_MAX_INFO && enc != NULL &&
                  enc_len == HPKE_X25519_LEN,
              KL_ERR_INVALID);
    KL_TRY(kem_shared_secret(shared, sk_r, enc, enc, pk_r));
    KL_TRY(key_schedule(ctx, kdf_id, aead_id, 0, shared, info, info_len));
    ret = 0;
exit:
    crypto_wipe(shared, sizeof(shared));
    if (ret != 0)
        hpke_ctx_dispose(ctx);
    return ret;
}

/*
 * ComputeNonce(seq) (5.2): base_nonce XOR I2OSP(seq, Nn). A uint64_t seq ends at 2^64-1,
 * well before Nn's 2^96-1: "IncrementSeq ... MessageLimitReachedError" there instead.
 */
static int next_nonce(const struct hpke_ctx *ctx, uint8_t nonce[HPKE_NONCE_LEN])
{
    if (ctx->aead.suite == 0)
        return KL_ERR_INVALID;
    if (ctx->seq == UINT64_MAX)
        return KL_ERR_OVERFLOW;
    memcpy(nonce, ctx->base_nonce, HPKE_NONCE_LEN);
    for (size_t i = 0; i < 8; i++)
        nonce[HPKE_NONCE_LEN - 1 - i] ^= (uint8_t)(ctx->seq >> (8 * i));
    return 0;
}

int hpke_seal(struct hpke_ctx *ctx, uint8_t *ct, const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len)
{
    int ret;
    uint8_t nonce[HPKE_NONCE_LEN];

    KL_TRY(next_nonce(ctx, nonce));
    KL_TRY(crypto_aead_seal(&ctx->aead, ct, nonce, aad, aad_len, pt, pt_len));
    ctx->seq++;
    ret = 0;
exit:
    crypto_wipe(nonce, sizeof(nonce));
    return ret;
}

int hpke_open(struct hpke_ctx *ctx, uint8_t *pt, const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t ct_len)
{
    int ret;
    uint8_t nonce[HPKE_NONCE_LEN];

    KL_TRY(next_nonce(ctx, nonce));
    KL_ENSURE(ct_len >= HPKE_TAG_LEN, KL_ERR_BAD_RECORD_MAC);
    /* 5.2: the sequence number advances only on success ("OpenError" leaves it). */
    KL_TRY(crypto_aead_open(&ctx->aead, pt, nonce, aad, aad_len, ct, ct_len));
    ctx->seq++;
    ret = 0;
exit:
    crypto_wipe(nonce, sizeof(nonce));
    return ret;
}

int hpke_export(const struct hpke_ctx *ctx, uint8_t *out, size_t out_len, const uint8_t *exporter_context,
                size_t context_len)
{
    struct hpke_suite_id sid;

    if (ctx->aead.suite == 0 || out_len > 255 * HPKE_NH || context_len > HPKE_MAX_INFO)
        return KL_ERR_INVALID;
    /* 5.3: Context.Export(exporter_context, L) = LabeledExpand(exporter_secret, "sec", exporter_context, L). */
    suite_id_hpke(&sid, ctx->kdf_id, ctx->aead_id);
    return labeled_expand(out, out_len, &sid, ctx->exporter_secret, "sec", exporter_context, context_len);
}

void hpke_ctx_dispose(struct hpke_ctx *ctx)
{
    if (ctx == NULL)
        return;
    crypto_aead_dispose(&ctx->aead);
    crypto_wipe(ctx, sizeof(*ctx));
}
