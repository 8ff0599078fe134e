/*
 * test_ech.c - Encrypted Client Hello in the engine (issue 16, draft-ietf-tls-esni-22): the ech.c decoders
 * directly (the extension, EncodedClientHelloInner with ech_outer_extensions and padding, the inner checks),
 * then whole handshakes with the test client: accept (inner name, inner certificate, status, outer name, the
 * signer's server_name), rejection with retry_configs (unknown config_id, a tampered payload), HelloRetryRequest
 * with ECH (both flights confirmed; the second ClientHello missing, tampered or with an enc), resumption and
 * 0-RTT inside ClientHelloInner, no PSK or 0-RTT from a rejected outer ClientHello, ECH off, and every malformed
 * inner ClientHello with its alert.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kl_test.h"
#include "frontend/rfc8448.h"
#include "crypto.h"
#include "ech.h"
#include "ext.h"
#include "hpke.h"
#include "msg.h"
#include "tls.h"
#include "tls_test_client.h"
#include "tls_test_pair.h"
#include "wire.h"
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

/* ---- fixtures ---- */

static char trace_log[4096];
static void on_trace(void *arg, uint64_t id, const char *ev)
{
    (void)arg;
    (void)id;
    if (strlen(trace_log) + strlen(ev) + 2 < sizeof(trace_log)) {
        strcat(trace_log, ev);
        strcat(trace_log, ",");
    }
}

static struct tls_ticket_keys keys_held;
static int get_keys(void *arg, struct tls_ticket_keys *out)
{
    (void)arg;
    *out = keys_held;
    return 0;
}

static int replay_ok(void *arg, const uint8_t *binder, size_t len, uint64_t expires_ms)
{
    (void)arg;
    (void)binder;
    (void)len;
    (void)expires_ms;
    return 1;
}

static EVP_PKEY *key_pem(const char *file)
{
    const char *td = getenv("KL_TESTDATA");
    char p[4096];
    snprintf(p, sizeof(p), "%s/rfc8448/%s", td != NULL ? td : ".", file);
    FILE *fp = fopen(p, "r");
    EVP_PKEY *k = fp != NULL ? PEM_read_PrivateKey(fp, NULL, NULL, NULL) : NULL;
    if (fp != NULL)
        fclose(fp);
    return k;
}

/* ECHConfig (draft 4): version, length, HpkeKeyConfig, maximum_name_length, public_name, extensions. */
static void make_key_config(struct tls_ech_key *k);
static void make_key(struct tls_ech_key *k, uint8_t config_id, const char *public_name)
{
    memset(k, 0, sizeof(*k));
    k->config_id = config_id;
    k->kem_id = HPKE_KEM_X25519_SHA256;
    if (hpke_generate_keypair(k->private_key, k->public_key) != 0)
        abort();
    k->suites[0].kdf_id = HPKE_KDF_HKDF_SHA256;
    k->suites[0].aead_id = HPKE_AEAD_AES_128_GCM;
    k->suites[1].kdf_id = HPKE_KDF_HKDF_SHA256;
    k->suites[1].aead_id = HPKE_AEAD_CHACHA20_POLY1305;
    k->n_suites = 2;
    snprintf(k->public_name, sizeof(k->public_name), "%s", public_name);
    make_key_config(k);
}

/* Encode k's ECHConfig from its fields (suites AES-128-GCM and ChaCha20-Poly1305). */
static void make_key_config(struct tls_ech_key *k)
{
    struct kl_buf b;
    size_t m, s, n;
    const char *public_name = k->public_name;
    uint8_t config_id = k->config_id;
    kl_buf_init_fixed(&b, k->config, sizeof(k->config));
    n = strlen(public_name);
    if (wire_put_u16(&b, TLS_ECH_VERSION) || wire_block_open(&b, &m, 2) || wire_put_u8(&b, config_id) ||
        wire_put_u16(&b, k->kem_id) || wire_put_u16(&b, 32) || wire_put_bytes(&b, k->public_key, 32) ||
        wire_block_open(&b, &s, 2) || wire_put_u16(&b, 1) || wire_put_u16(&b, 1) || wire_put_u16(&b, 1) ||
        wire_put_u16(&b, 3) || wire_block_close(&b, s, 2) || wire_put_u8(&b, 0) || wire_put_u8(&b, (uint8_t)n) ||
        wire_put_bytes(&b, public_name, n) || wire_put_u16(&b, 0) || wire_block_close(&b, m, 2))
        abort();
    k->config_len = b.len;
}

struct fx {
    EVP_PKEY *key;
    uint8_t *der;
    size_t der_len;
    struct tls_cert certs[3];
    struct tls_config cfg;
    struct tls_ech_key keys[3];
    uint8_t retry[2 + 3 * TLS_ECH_MAX_CONFIG_LEN];
};

/*
 * Three certificates (one DER and key, told apart by key_name): a default, the public name's, the inner
 * name's. Keys: id 7 (published, in retry_configs) and two sharing id 9, the right one second.
 */
static void fx_init(struct fx *f)
{
    static const char *names[3] = {"default.example", "public.example", "inner.example"};
    static const char *key_names[3] = {"default", "public", "inner"};
    memset(f, 0, sizeof(*f));
    f->der = rfc8448_read_file("server-cert.der", &f->der_len);
    f->key = key_pem("server-rsa-key.pem");
    for (size_t i = 0; i < 3; i++) {
        struct tls_cert *c = &f->certs[i];
        c->key_name = key_names[i];
        c->chain[0] = f->der;
        c->chain_len[0] = f->der_len;
        c->n_chain = 1;
        c->schemes[0] = TLS_SIG_RSA_PSS_RSAE_SHA256;
        c->n_schemes = 1;
        c->names[0] = names[i];
        c->n_names = 1;
    }
    f->cfg.certs = f->certs;
    f->cfg.n_certs = 3;
    f->cfg.groups[0] = TLS_GROUP_X25519;
    f->cfg.groups[1] = TLS_GROUP_SECP256R1;
    f->cfg.n_groups = 2;
    f->cfg.alpn[0] = "h2";
    f->cfg.n_alpn = 1;
    memset(f->cfg.cookie_key, 0x5a, sizeof(f->cfg.cookie_key));
    f->cfg.trace = on_trace;
    make_key(&f->keys[0], 7, "public.example");
    make_key(&f->keys[1], 9, "public.example");
    make_key(&f->keys[2], 9, "public.example");
    f->cfg.ech.keys = f->keys;
    f->cfg.ech.n_keys = 3;
    /* retry_configs: the ECHConfigList of keys[0] (what the operator publishes). */
    f->retry[0] = (uint8_t)(f->keys[0].config_len >> 8);
    f->retry[1] = (uint8_t)f->keys[0].config_len;
    memcpy(f->retry + 2, f->keys[0].config, f->keys[0].config_len);
    f->cfg.ech.retry_configs = f->retry;
    f->cfg.ech.retry_configs_len = 2 + f->keys[0].config_len;
    memset(&keys_held, 0, sizeof(keys_held));
    keys_held.n = 1;
    memset(keys_held.keys[0].key_id, 0x11, TLS_TICKET_KEY_ID_LEN);
    keys_held.keys[0].epoch = 5;
    memset(keys_held.keys[0].secret, 0xa5, TLS_TICKET_SECRET_LEN);
    trace_log[0] = 0;
}

static void fx_tickets(struct fx *f)
{
    f->cfg.tickets.keys = get_keys;
    f->cfg.tickets.count = 1;
    f->cfg.tickets.lifetime = 3600;
    f->cfg.tickets.max_early_data = 1024;
    f->cfg.tickets.replay = replay_ok;
    memset(f->cfg.tickets.host_id, 0x77, TLS_HOST_ID_LEN);
}

static void fx_free(struct fx *f)
{
    EVP_PKEY_free(f->key);
    free(f->der);
    for (size_t i = 0; i < 3; i++)
        crypto_wipe(&f->keys[i], sizeof(f->keys[i]));
}

/* The client's ECH offer for key k (suite AES-128-GCM unless aead says otherwise). */
static struct ttc_ech ech_for(const struct tls_ech_key *k, uint16_t aead)
{
    struct ttc_ech e;
    memset(&e, 0, sizeof(e));
    e.config = k->config;
    e.config_len = k->config_len;
    e.config_id = k->config_id;
    e.kdf_id = HPKE_KDF_HKDF_SHA256;
    e.aead_id = aead;
    e.public_key = k->public_key;
    e.public_name = "public.example";
    return e;
}

static struct ttc_config client_cfg(void)
{
    struct ttc_config cc;
    memset(&cc, 0, sizeof(cc));
    cc.suites[0] = TLS_AES_128_GCM_SHA256;
    cc.suites[1] = TLS_AES_256_GCM_SHA384;
    cc.n_suites = 2;
    cc.groups[0] = TLS_GROUP_X25519;
    cc.groups[1] = TLS_GROUP_SECP256R1;
    cc.n_groups = 2;
    cc.shares[0] = TLS_GROUP_X25519;
    cc.n_shares = 1;
    cc.sig_algs[0] = TLS_SIG_RSA_PSS_RSAE_SHA256;
    cc.n_sig_algs = 1;
    cc.sni = "inner.example";
    cc.alpn = "h2";
    cc.compat = 1;
    return cc;
}

/* One handshake (tls_test_pair.h) with the server signing with the fixture's key; the server's application data is
 * dropped. */
static void run(struct fx *f, struct tls_conn *c, struct ttc *t, const struct ttc_config *cc,
                const struct ttc_psk_config *pc, const struct ttc_ech *e, struct ttp_run *r)
{
    trace_log[0] = 0;
    ttp_run(c, t, cc, pc, e, NULL, f->key, r);
    kl_buf_dispose(&r->app);
}

/* One handshake; returns the server's error (0 when both sides finished). */
static int attempt(struct fx *f, const struct ttc_config *cc, const struct ttc_ech *e, enum tls_ech_status *st_p)
{
    struct ttc t;
    struct ttp_run r;
    struct tls_conn *c = tls_conn_new(&f->cfg, 3);
    run(f, c, &t, cc, NULL, e, &r);
    if (st_p != NULL)
        *st_p = tls_conn_ech_status(c);
    int ret = r.server_err == 0 && !r.done ? -1 : r.server_err;
    tls_conn_free(c);
    ttc_dispose(&t);
    return ret;
}

/* ---- ech.c directly ---- */

static void test_ext_decode(void)
{
    static const uint8_t outer[] = {0, 0, 1, 0, 1, 9, 0, 2, 0xaa, 0xbb, 0, 3, 1, 2, 3};
    static const uint8_t inner[] = {1};
    struct ech_outer o;
    uint8_t type = 0xff, buf[sizeof(outer) + 1];
    is_int(ech_ext_decode(&type, &o, kl_span_of(outer, sizeof(outer))), 0, "ext: outer decodes");
    ok(type == ECH_TYPE_OUTER && o.kdf_id == 1 && o.aead_id == 1 && o.config_id == 9 && o.enc.len == 2 &&
           o.payload.len == 3 && o.payload.base[2] == 3,
       "ext: outer fields");
    is_int(ech_ext_decode(&type, &o, kl_span_of(inner, 1)), 0, "ext: inner decodes");
    is_int(type, ECH_TYPE_INNER, "ext: type inner");
    int all = 1;
    for (size_t i = 0; i < sizeof(outer); i++)
        all &= ech_ext_decode(&type, &o, kl_span_of(outer, i)) == KL_ERR_DECODE;
    ok(all, "ext: every strict prefix of the outer form is decode_error");
    memcpy(buf, outer, sizeof(outer));
    buf[sizeof(outer)] = 0;
    is_int(ech_ext_decode(&type, &o, kl_span_of(buf, sizeof(buf))), KL_ERR_DECODE, "ext: trailing byte: decode_error");
    static const uint8_t inner_trailing[] = {1, 0};
    is_int(ech_ext_decode(&type, &o, kl_span_of(inner_trailing, 2)), KL_ERR_DECODE,
           "ext: inner with a body: decode_error");
    static const uint8_t empty_payload[] = {0, 0, 1, 0, 1, 9, 0, 0, 0, 0};
    is_int(ech_ext_decode(&type, &o, kl_span_of(empty_payload, sizeof(empty_payload))), KL_ERR_DECODE,
           "ext: empty payload: decode_error");
    static const uint8_t type2[] = {2};
    is_int(ech_ext_decode(&type, &o, kl_span_of(type2, 1)), KL_ERR_ILLEGAL_PARAMETER,
           "ext: unknown type: illegal_parameter");
}

/* An EncodedClientHelloInner: fixed fields, sid, one suite, compression, then exts (raw) and padding. */
static size_t encoded(uint8_t *out, const uint8_t *sid, size_t sid_len, const uint8_t *exts, size_t exts_len,
                      const uint8_t *pad, size_t pad_len)
{
    struct kl_buf b;
    kl_buf_init_fixed(&b, out, 4096);
    uint8_t random[32];
    memset(random, 0x42, 32);
    if (wire_put_u16(&b, 0x0303) || wire_put_bytes(&b, random, 32) || wire_put_u8(&b, (uint8_t)sid_len) ||
        wire_put_bytes(&b, sid, sid_len) || wire_put_u16(&b, 2) || wire_put_u16(&b, TLS_AES_128_GCM_SHA256) ||
        wire_put_u8(&b, 1) || wire_put_u8(&b, 0) || wire_put_u16(&b, (uint16_t)exts_len) ||
        wire_put_bytes(&b, exts, exts_len) || wire_put_bytes(&b, pad, pad_len))
        abort();
    return b.len;
}

static void test_inner_rebuild(void)
{
    /* Outer extensions: A(0x0a) "a", B(0x0d) "bb", ECH(0xfe0d) "x", C(0x2b) "ccc". */
    static const uint8_t outer[] = {0,    0x0a, 0, 1,   'a', 0,    0x0d, 0, 2,   'b', 'b', 0xfe,
                                    0x0d, 0,    1, 'x', 0,   0x2b, 0,    3, 'c', 'c', 'c'};
    static const uint8_t sid[32] = {1, 2, 3};
    static const uint8_t zeros[16] = {0};
    uint8_t enc[4096];
    size_t n;
    struct kl_buf out;
    kl_buf_init(&out, 1 << 17);
    struct kl_span os = kl_span_of(outer, sizeof(outer));

    /* Own extension Z(0x7777) "z", then ech_outer_extensions [0x0a, 0x2b]. */
    static const uint8_t good[] = {0x77, 0x77, 0, 1, 'z', 0xfd, 0, 0, 5, 4, 0, 0x0a, 0, 0x2b};
    n = encoded(enc, NULL, 0, good, sizeof(good), zeros, sizeof(zeros));
    is_int(ech_inner_rebuild(&out, enc, n, sid, 32, os, MSG_CLIENT_HELLO_MAX), 0, "rebuild: compressed inner");
    {
        /* Expected: header, 0303, random, sid 32, suites, comp, exts Z, A, C; no padding. */
        static const uint8_t want_exts[] = {0x77, 0x77, 0, 1, 'z', 0, 0x0a, 0, 1, 'a', 0, 0x2b, 0, 3, 'c', 'c', 'c'};
        size_t body = 2 + 32 + 1 + 32 + 4 + 2 + 2 + sizeof(want_exts);
        ok(out.len == 4 + body && out.base[0] == MSG_CLIENT_HELLO && out.base[3] == (uint8_t)body,
           "rebuild: length (padding dropped)");
        ok(out.len == 4 + body && out.base[4 + 34] == 32 && memcmp(out.base + 4 + 35, sid, 32) == 0,
           "rebuild: the outer legacy_session_id");
        ok(out.len == 4 + body && memcmp(out.base + out.len - sizeof(want_exts), want_exts, sizeof(want_exts)) == 0,
           "rebuild: references expanded in order, in place");
    }
    struct {
        const uint8_t *exts;
        size_t len;
        const char *name;
    } bad[] = {
        {(const uint8_t[]){0xfd, 0, 0, 3, 2, 0xfe, 0x0d}, 7, "a reference to encrypted_client_hello"},
        {(const uint8_t[]){0xfd, 0, 0, 3, 2, 0x12, 0x34}, 7, "a reference to a missing extension"},
        {(const uint8_t[]){0xfd, 0, 0, 5, 4, 0, 0x0a, 0, 0x0a}, 9, "the same extension twice"},
        {(const uint8_t[]){0xfd, 0, 0, 5, 4, 0, 0x0d, 0, 0x0a}, 9, "references out of order"},
        {(const uint8_t[]){0xfd, 0, 0, 3, 2, 0, 0x0a, 0xfd, 0, 0, 3, 2, 0, 0x2b}, 14, "a second ech_outer_extensions"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char name[128];
        n = encoded(enc, NULL, 0, bad[i].exts, bad[i].len, NULL, 0);
        snprintf(name, sizeof(name), "rebuild: %s: illegal_parameter", bad[i].name);
        is_int(ech_inner_rebuild(&out, enc, n, sid, 32, os, MSG_CLIENT_HELLO_MAX), KL_ERR_ILLEGAL_PARAMETER, name);
        ok(out.len == 0, "rebuild: nothing left behind on failure");
    }
    n = encoded(enc, sid, 32, good, sizeof(good), NULL, 0);
    is_int(ech_inner_rebuild(&out, enc, n, sid, 32, os, MSG_CLIENT_HELLO_MAX), KL_ERR_ILLEGAL_PARAMETER,
           "rebuild: a non-empty encoded legacy_session_id: illegal_parameter");
    static const uint8_t badpad[4] = {0, 0, 1, 0};
    n = encoded(enc, NULL, 0, good, sizeof(good), badpad, sizeof(badpad));
    is_int(ech_inner_rebuild(&out, enc, n, sid, 32, os, MSG_CLIENT_HELLO_MAX), KL_ERR_ILLEGAL_PARAMETER,
           "rebuild: non-zero padding: illegal_parameter");
    static const uint8_t odd[] = {0xfd, 0, 0, 4, 3, 0, 0x0a, 0};
    n = encoded(enc, NULL, 0, odd, sizeof(odd), NULL, 0);
    is_int(ech_inner_rebuild(&out, enc, n, sid, 32, os, MSG_CLIENT_HELLO_MAX), KL_ERR_DECODE,
           "rebuild: an odd OuterExtensions: decode_error");
    static const uint8_t empty_refs[] = {0xfd, 0, 0, 1, 0};
    n = encoded(enc, NULL, 0, empty_refs, sizeof(empty_refs), NULL, 0);
    is_int(ech_inner_rebuild(&out, enc, n, sid, 32, os, MSG_CLIENT_HELLO_MAX), KL_ERR_DECODE,
           "rebuild: an empty OuterExtensions: decode_error");
    n = encoded(enc, NULL, 0, good, sizeof(good), zeros, sizeof(zeros));
    int all = 1;
    for (size_t i = 0; i < 2 + 32 + 1 + 4 + 2 + 2 + sizeof(good); i++)
        all &= ech_inner_rebuild(&out, enc, i, sid, 32, os, MSG_CLIENT_HELLO_MAX) == KL_ERR_DECODE;
    ok(all, "rebuild: every truncation before the padding is decode_error");
    is_int(ech_inner_rebuild(&out, enc, n, sid, 32, os, 80), KL_ERR_DECODE,
           "rebuild: over the ClientHello cap: decode_error");
    is_int(ech_inner_rebuild(&out, enc, n, sid, 32, os, 2 + 32 + 33 + 4 + 2 + 2 + 17), 0,
           "rebuild: exactly at the cap");
    is_int(ech_inner_rebuild(&out, enc, n, sid, 32, os, 2 + 32 + 33 + 4 + 2 + 2 + 16), KL_ERR_DECODE,
           "rebuild: one byte over the cap: decode_error");
    kl_buf_dispose(&out);
}

/* A ClientHello body with these extension bytes (for ech_inner_check and the AAD). */
static size_t ch_body(uint8_t *out, const uint8_t *exts, size_t exts_len)
{
    return encoded(out, NULL, 0, exts, exts_len, NULL, 0);
}

static void test_inner_check(void)
{
    uint8_t body[4096];
    struct msg_client_hello ch;
    size_t n;
    static const uint8_t good[] = {0x00, 0x2b, 0, 3, 2, 3, 4, 0xfe, 0x0d, 0, 1, 1};
    n = ch_body(body, good, sizeof(good));
    ok(msg_client_hello_decode(&ch, body, n) == 0 && ech_inner_check(&ch) == 0, "inner check: TLS 1.3 and type inner");
    static const uint8_t grease[] = {0x00, 0x2b, 0, 5, 4, 0x0a, 0x0a, 3, 4, 0xfe, 0x0d, 0, 1, 1};
    n = ch_body(body, grease, sizeof(grease));
    ok(msg_client_hello_decode(&ch, body, n) == 0 && ech_inner_check(&ch) == 0, "inner check: GREASE version is fine");
    static const uint8_t tls12[] = {0x00, 0x2b, 0, 5, 4, 3, 4, 3, 3, 0xfe, 0x0d, 0, 1, 1};
    n = ch_body(body, tls12, sizeof(tls12));
    ok(msg_client_hello_decode(&ch, body, n) == 0 && ech_inner_check(&ch) == KL_ERR_ILLEGAL_PARAMETER,
       "inner check: TLS 1.2 offered: illegal_parameter");
    static const uint8_t only12[] = {0x00, 0x2b, 0, 3, 2, 3, 3, 0xfe, 0x0d, 0, 1, 1};
    n = ch_body(body, only12, sizeof(only12));
    ok(msg_client_hello_decode(&ch, body, n) == 0 && ech_inner_check(&ch) == KL_ERR_ILLEGAL_PARAMETER,
       "inner check: no TLS 1.3: illegal_parameter");
    static const uint8_t nover[] = {0xfe, 0x0d, 0, 1, 1};
    n = ch_body(body, nover, sizeof(nover));
    ok(msg_client_hello_decode(&ch, body, n) == 0 && ech_inner_check(&ch) == KL_ERR_ILLEGAL_PARAMETER,
       "inner check: no supported_versions: illegal_parameter");
    static const uint8_t noech[] = {0x00, 0x2b, 0, 3, 2, 3, 4};
    n = ch_body(body, noech, sizeof(noech));
    ok(msg_client_hello_decode(&ch, body, n) == 0 && ech_inner_check(&ch) == KL_ERR_ILLEGAL_PARAMETER,
       "inner check: no encrypted_client_hello: illegal_parameter");
    static const uint8_t outer_type[] = {0x00, 0x2b, 0, 3, 2, 3, 4, 0xfe, 0x0d, 0, 11, 0, 0, 1, 0, 1, 9, 0, 0, 0, 1, 0};
    n = ch_body(body, outer_type, sizeof(outer_type));
    ok(msg_client_hello_decode(&ch, body, n) == 0 && ech_inner_check(&ch) == KL_ERR_ILLEGAL_PARAMETER,
       "inner check: type outer inside: illegal_parameter");

    /* The AAD: the same bytes with the payload zeroed. */
    struct kl_buf aad;
    kl_buf_init(&aad, 4096);
    n = ch_body(body, outer_type, sizeof(outer_type));
    body[n - 1] = 0x99; /* the one payload byte */
    ok(ech_outer_aad(&aad, body, n) == 0 && aad.len == n && memcmp(aad.base, body, n - 1) == 0 && aad.base[n - 1] == 0,
       "aad: the outer ClientHello with the payload zeroed");
    kl_buf_dispose(&aad);
}

/* What one ech_open costs (for the memory/CPU note in ech.h). */
static void test_open_cost(void)
{
    struct fx f;
    struct hpke_ctx s, r;
    uint8_t enc[32], info[ECH_INFO_MAX], pt[300], ct[300 + HPKE_TAG_LEN], aad[64];
    size_t info_len;
    struct kl_buf out;
    const struct tls_ech_key *key;
    enum tls_ech_status st;
    struct ech_outer o;
    struct timespec t0, t1;
    const int n = 200;
    int good = 1;
    fx_init(&f);
    memset(pt, 7, sizeof(pt));
    memset(aad, 1, sizeof(aad));
    kl_buf_init(&out, 0xffff);
    if (ech_info(info, &info_len, &f.keys[2]) != 0 ||
        hpke_setup_base_s(&s, enc, 1, 1, f.keys[2].public_key, info, info_len, NULL) != 0 ||
        hpke_seal(&s, ct, aad, sizeof(aad), pt, sizeof(pt)) != 0)
        good = 0;
    memset(&o, 0, sizeof(o));
    o.kdf_id = 1;
    o.aead_id = 1;
    o.config_id = 9;
    o.enc = kl_span_of(enc, 32);
    o.payload = kl_span_of(ct, sizeof(ct));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n && good; i++) {
        good = ech_open(&r, &key, &st, &out, &f.cfg.ech, &o, aad, sizeof(aad)) == 0 && st == TLS_ECH_ACCEPTED &&
               key == &f.keys[2] && out.len == sizeof(pt) && memcmp(out.base, pt, sizeof(pt)) == 0;
        hpke_ctx_dispose(&r);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ok(good, "open: the second key with the shared config_id opens");
    diag("one ech_open with two candidate keys (300-byte payload): %.1f us",
         ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3 / n);
    aad[0] ^= 1;
    ok(ech_open(&r, &key, &st, &out, &f.cfg.ech, &o, aad, sizeof(aad)) == 0 && st == TLS_ECH_REJECTED && out.len == 0 &&
           key == NULL,
       "open: another AAD: rejected, nothing left");
    o.config_id = 8;
    ok(ech_open(&r, &key, &st, &out, &f.cfg.ech, &o, aad, sizeof(aad)) == 0 && st == TLS_ECH_UNKNOWN_CONFIG,
       "open: unknown config_id");
    o.config_id = 9;
    o.aead_id = HPKE_AEAD_AES_256_GCM;
    ok(ech_open(&r, &key, &st, &out, &f.cfg.ech, &o, aad, sizeof(aad)) == 0 && st == TLS_ECH_UNKNOWN_CONFIG,
       "open: a suite the config does not list: unknown config");
    o.aead_id = 1;
    o.enc = kl_span_of(enc, 31);
    ok(ech_open(&r, &key, &st, &out, &f.cfg.ech, &o, aad, sizeof(aad)) == 0 && st == TLS_ECH_REJECTED,
       "open: a short enc: rejected");
    hpke_ctx_dispose(&s);
    kl_buf_dispose(&out);
    fx_free(&f);
}

/* ---- handshakes ---- */

static void test_accept(void)
{
    struct fx f;
    struct ttc t;
    struct ttp_run r;
    fx_init(&f);
    struct ttc_config cc = client_cfg();
    for (int variant = 0; variant < 3; variant++) {
        struct ttc_ech e = ech_for(&f.keys[variant == 2 ? 0 : 2], variant == 1 ? HPKE_AEAD_CHACHA20_POLY1305 : 1);
        if (variant == 1) {
            /* Compression (supported_groups and signature_algorithms, adjacent) and padding. */
            e.compress[0] = EXT_SUPPORTED_GROUPS;
            e.compress[1] = EXT_SIGNATURE_ALGORITHMS;
            e.n_compress = 2;
            e.padding = 37;
        }
        struct tls_conn *c = tls_conn_new(&f.cfg, 1);
        run(&f, c, &t, &cc, NULL, &e, &r);
        char name[64];
        const char *v = variant == 0 ? "shared id" : variant == 1 ? "compressed, ChaCha20" : "first key";
        snprintf(name, sizeof(name), "accept (%s): handshake done", v);
        ok(r.done && r.server_err == 0 && r.client_err == 0, name);
        ok(tls_conn_ech_status(c) == TLS_ECH_ACCEPTED && t.ech_accepted, "accept: status and client confirmation");
        ok(strcmp(tls_conn_server_name(c), "inner.example") == 0, "accept: the inner SNI is served");
        ok(strcmp(tls_conn_ech_outer_name(c), "public.example") == 0, "accept: the outer name");
        ok(strcmp(r.key_name, "inner") == 0, "accept: the inner name's certificate");
        ok(strcmp(r.sign_name, "inner.example") == 0, "accept: the signer's server_name is the inner one");
        ok(strcmp(tls_conn_alpn(c), "h2") == 0 && t.sni_acked, "accept: ALPN and SNI from ClientHelloInner");
        ok(t.retry_configs_len == 0, "accept: no retry_configs");
        ok(strstr(trace_log, "ECH accepted") != NULL, "accept: traced");
        tls_conn_free(c);
        ttc_dispose(&t);
    }
    fx_free(&f);
}

static void test_reject(void)
{
    struct fx f;
    struct ttc t;
    struct ttp_run r;
    fx_init(&f);
    struct ttc_config cc = client_cfg();
    uint8_t pk[32];
    memcpy(pk, f.keys[2].public_key, 32);
    for (int variant = 0; variant < 3; variant++) {
        struct ttc_ech e = ech_for(&f.keys[2], 1);
        enum tls_ech_status want = TLS_ECH_REJECTED;
        e.public_key = pk; /* the client keeps the key it was given */
        if (variant == 0) {
            e.config_id = 8; /* stale or GREASE */
            want = TLS_ECH_UNKNOWN_CONFIG;
        } else if (variant == 1) {
            e.tamper = 1;
        } else {
            struct tls_ech_key other;
            make_key(&other, 9, "public.example"); /* key 2 rotated: neither id-9 key opens this offer */
            memcpy(f.keys[2].private_key, other.private_key, 32);
            memcpy(f.keys[2].public_key, other.public_key, 32);
        }
        struct tls_conn *c = tls_conn_new(&f.cfg, 2);
        run(&f, c, &t, &cc, NULL, &e, &r);
        const char *v = variant == 0 ? "unknown config_id" : variant == 1 ? "tampered payload" : "rotated key";
        char name[96];
        snprintf(name, sizeof(name), "reject (%s): the handshake completes on the outer ClientHello", v);
        ok(r.done && r.server_err == 0, name);
        ok(tls_conn_ech_status(c) == want && !t.ech_accepted, "reject: status, client sees no confirmation");
        ok(strcmp(tls_conn_server_name(c), "public.example") == 0 && strcmp(r.key_name, "public") == 0,
           "reject: the public name's certificate");
        is_mem(t.retry_configs, t.retry_configs_len, f.retry, f.cfg.ech.retry_configs_len,
               "reject: retry_configs in EncryptedExtensions");
        ok(strstr(trace_log, "ECH rejected") != NULL, "reject: traced");
        tls_conn_free(c);
        ttc_dispose(&t);
    }
    fx_free(&f);
}

static void test_off(void)
{
    struct fx f;
    struct ttc t;
    struct ttp_run r;
    fx_init(&f);
    f.cfg.ech.n_keys = 0;
    struct ttc_config cc = client_cfg();
    struct ttc_ech e = ech_for(&f.keys[2], 1);
    struct tls_conn *c = tls_conn_new(&f.cfg, 4);
    run(&f, c, &t, &cc, NULL, &e, &r);
    ok(r.done && tls_conn_ech_status(c) == TLS_ECH_NONE && !t.ech_accepted, "off: the extension is ignored");
    ok(strcmp(tls_conn_server_name(c), "public.example") == 0 && t.retry_configs_len == 0,
       "off: outer name served, no retry_configs");
    ok(strcmp(tls_conn_ech_outer_name(c), "") == 0, "off: no outer name reported");
    tls_conn_free(c);
    ttc_dispose(&t);
    /* A type-inner extension in a plain ClientHello with ECH off is ignored too. */
    e.outer_type_inner = 1;
    is_int(attempt(&f, &cc, &e, NULL), 0, "off: even a malformed extension is ignored");
    fx_free(&f);
}

static void test_hrr(void)
{
    struct fx f;
    struct ttc t;
    struct ttp_run r;
    fx_init(&f);
    struct ttc_config cc = client_cfg();
    cc.n_shares = 0; /* no share: HelloRetryRequest for X25519 */
    struct ttc_ech e = ech_for(&f.keys[2], 1);
    struct tls_conn *c = tls_conn_new(&f.cfg, 5);
    run(&f, c, &t, &cc, NULL, &e, &r);
    ok(r.done && t.hrr, "hrr: handshake done after HelloRetryRequest");
    ok(t.ech_hrr_accepted && t.ech_sh_confirmed, "hrr: the HRR and the ServerHello both confirm");
    ok(tls_conn_ech_status(c) == TLS_ECH_ACCEPTED && strcmp(r.key_name, "inner") == 0 &&
           strcmp(tls_conn_server_name(c), "inner.example") == 0,
       "hrr: accepted, inner certificate");
    tls_conn_free(c);
    ttc_dispose(&t);

    /* Rejected in the first flight: the HRR has no confirmation, the second ClientHello is outer. */
    e.config_id = 8;
    c = tls_conn_new(&f.cfg, 6);
    run(&f, c, &t, &cc, NULL, &e, &r);
    ok(r.done && t.hrr && !t.ech_accepted && tls_conn_ech_status(c) == TLS_ECH_UNKNOWN_CONFIG &&
           t.retry_configs_len == f.cfg.ech.retry_configs_len,
       "hrr: rejected in both flights, retry_configs");
    tls_conn_free(c);
    ttc_dispose(&t);
    e.config_id = 9;

    enum tls_ech_status st;
    e.ch2_tamper = 1;
    is_int(attempt(&f, &cc, &e, &st), KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR),
           "hrr: a second payload that does not decrypt: decrypt_error");
    e.ch2_tamper = 0;
    e.ch2_no_ech = 1;
    is_int(attempt(&f, &cc, &e, &st), KL_ERR_ALERT(KL_ALERT_MISSING_EXTENSION),
           "hrr: no encrypted_client_hello in the second ClientHello: missing_extension");
    e.ch2_no_ech = 0;
    e.ch2_enc = 1;
    is_int(attempt(&f, &cc, &e, &st), KL_ERR_ILLEGAL_PARAMETER,
           "hrr: an enc in the second ClientHello: illegal_parameter");
    e.ch2_enc = 0;
    e.ch2_other_id = 1;
    is_int(attempt(&f, &cc, &e, &st), KL_ERR_ILLEGAL_PARAMETER,
           "hrr: another config_id in the second ClientHello: illegal_parameter");
    fx_free(&f);
}

static void test_resumption(void)
{
    struct fx f;
    struct ttc t1, t2, t3;
    struct ttp_run r;
    static const uint8_t early[] = "GET / early";
    fx_init(&f);
    fx_tickets(&f);
    struct ttc_config cc = client_cfg();
    struct ttc_ech e = ech_for(&f.keys[2], 1);
    struct tls_conn *c = tls_conn_new(&f.cfg, 7);
    run(&f, c, &t1, &cc, NULL, &e, &r);
    ok(r.done && t1.ech_accepted && t1.n_tickets == 1, "resume: a ticket from an ECH connection");
    tls_conn_free(c);

    /* Resumption and 0-RTT inside ClientHelloInner. */
    struct ttc_psk_config pc;
    memset(&pc, 0, sizeof(pc));
    pc.resume = &t1.tickets[0];
    pc.early = early;
    pc.early_len = sizeof(early);
    c = tls_conn_new(&f.cfg, 8);
    run(&f, c, &t2, &cc, &pc, &e, &r);
    ok(r.done && !r.signed_ && tls_conn_resumed(c) && t2.resumed, "resume: the inner ClientHello resumes");
    ok(tls_conn_ech_status(c) == TLS_ECH_ACCEPTED && t2.ech_accepted, "resume: with ECH accepted");
    ok(tls_conn_early_data_accepted(c) && t2.early_accepted, "resume: 0-RTT accepted inside ClientHelloInner");
    tls_conn_free(c);
    ttc_dispose(&t2);

    /* A ticket for the public name (plain connection), then offered in an outer ClientHello whose ECH is
     * rejected: never resumed, no 0-RTT. */
    struct ttc_config pub = client_cfg();
    pub.sni = "public.example";
    c = tls_conn_new(&f.cfg, 9);
    run(&f, c, &t3, &pub, NULL, NULL, &r);
    ok(r.done && t3.n_tickets == 1, "reject+psk: a ticket for the public name");
    tls_conn_free(c);
    pc.resume = &t3.tickets[0];
    c = tls_conn_new(&f.cfg, 10);
    run(&f, c, &t2, &pub, &pc, NULL, &r);
    ok(r.done && tls_conn_resumed(c) && tls_conn_early_data_accepted(c),
       "reject+psk: control: without ECH that ticket resumes with 0-RTT");
    tls_conn_free(c);
    ttc_dispose(&t2);
    e.config_id = 8;
    e.outer_psk = 1;
    c = tls_conn_new(&f.cfg, 11);
    run(&f, c, &t2, &cc, &pc, &e, &r);
    ok(r.done && r.signed_ && !tls_conn_resumed(c) && !t2.resumed,
       "reject+psk: the outer ClientHello's PSK is not accepted (full handshake)");
    ok(!tls_conn_early_data_accepted(c) && !t2.early_accepted, "reject+psk: 0-RTT refused");
    ok(tls_conn_ech_status(c) == TLS_ECH_UNKNOWN_CONFIG && t2.retry_configs_len != 0, "reject+psk: retry_configs");
    tls_conn_free(c);
    ttc_dispose(&t2);
    ttc_dispose(&t1);
    ttc_dispose(&t3);
    fx_free(&f);
}

static void test_malformed(void)
{
    struct fx f;
    fx_init(&f);
    struct ttc_config cc = client_cfg();
    struct {
        const char *name;
        int field;
    } cases[] = {
        {"outer extension of type inner", 0},
        {"non-empty encoded legacy_session_id", 1},
        {"non-zero padding", 2},
        {"no encrypted_client_hello in ClientHelloInner", 3},
        {"ClientHelloInner offers TLS 1.2", 4},
        {"reference to encrypted_client_hello", 5},
        {"reference to a missing extension", 6},
        {"duplicate reference", 7},
        {"references out of order", 8},
        {"two ech_outer_extensions", 9},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ttc_ech e = ech_for(&f.keys[2], 1);
        e.compress[0] = EXT_SUPPORTED_GROUPS;
        e.compress[1] = EXT_SIGNATURE_ALGORITHMS;
        e.n_compress = 2;
        switch (cases[i].field) {
        case 0:
            e.outer_type_inner = 1;
            break;
        case 1:
            e.inner_sid = 1;
            break;
        case 2:
            e.bad_padding = 1;
            break;
        case 3:
            e.inner_no_ech = 1;
            break;
        case 4:
            e.inner_tls12 = 1;
            break;
        case 5:
            e.refs[0] = EXT_ENCRYPTED_CLIENT_HELLO;
            e.n_refs = 1;
            break;
        case 6:
            e.refs[0] = 0x1234;
            e.n_refs = 1;
            break;
        case 7:
            e.refs[0] = EXT_SUPPORTED_GROUPS;
            e.refs[1] = EXT_SUPPORTED_GROUPS;
            e.n_refs = 2;
            break;
        case 8:
            e.refs[0] = EXT_SIGNATURE_ALGORITHMS;
            e.refs[1] = EXT_SUPPORTED_GROUPS;
            e.n_refs = 2;
            break;
        default:
            e.second_outer_ext = 1;
            break;
        }
        char name[128];
        snprintf(name, sizeof(name), "malformed: %s: illegal_parameter", cases[i].name);
        is_int(attempt(&f, &cc, &e, NULL), KL_ERR_ILLEGAL_PARAMETER, name);
    }
    /* The control: the same compression, well formed, is accepted. */
    struct ttc_ech e = ech_for(&f.keys[2], 1);
    e.compress[0] = EXT_SUPPORTED_GROUPS;
    e.compress[1] = EXT_SIGNATURE_ALGORITHMS;
    e.n_compress = 2;
    enum tls_ech_status st;
    ok(attempt(&f, &cc, &e, &st) == 0 && st == TLS_ECH_ACCEPTED, "malformed: control accepted");
    fx_free(&f);
}

/* ---- the fuzz target's seeds (tests/fuzz/fuzz_client_hello.c) ---- */

/* The fuzzer's ECH key (fz_ech_key there): DeriveKeyPair(32 x 0x45), id 0x2a, "public.example.com". */
static void fuzz_key(struct tls_ech_key *k)
{
    uint8_t ikm[32];
    memset(ikm, 0x45, sizeof(ikm));
    make_key(k, 0x2a, "public.example.com");
    if (hpke_derive_keypair(k->private_key, k->public_key, ikm, sizeof(ikm)) != 0)
        abort();
    make_key_config(k); /* re-encode with the derived public key */
}

static void write_seed(const char *name, const uint8_t *head, size_t head_len, const uint8_t *p, size_t n)
{
    const char *dir = getenv("KL_WRITE_ECH_SEEDS");
    char path[4096];
    FILE *fp;
    if (dir == NULL)
        return;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "wb");
    if (fp == NULL || fwrite(head, 1, head_len, fp) != head_len || fwrite(p, 1, n, fp) != n)
        diag("cannot write %s", path);
    if (fp != NULL)
        fclose(fp);
}

/*
 * The seeds: ClientHellos for the fuzzer's key, checked against a listener configured as the fuzzer's engine
 * mode (accepted, rejected, HRR then the second ClientHello reaching the signature), and inner-mode inputs
 * (an outer ClientHello body and the EncodedClientHelloInner it carries, opened with the key).
 */
static void test_fuzz_seeds(void)
{
    struct fx f;
    struct tls_ech_key k;
    struct ttc_config cc = client_cfg();
    fx_init(&f);
    fuzz_key(&k);
    f.cfg.ech.keys = &k;
    f.cfg.ech.n_keys = 1;
    f.certs[1].names[0] = "*.example.com";
    memset(f.cfg.cookie_key, 0, sizeof(f.cfg.cookie_key)); /* the fuzzer's (a static config) */
    cc.sni = "inner.example";
    struct {
        const char *name;
        int variant;
        enum tls_ech_status want;
    } seeds[] = {
        {"ech-accept-engine", 0, TLS_ECH_ACCEPTED},
        {"ech-compressed-padded-engine", 1, TLS_ECH_ACCEPTED},
        {"ech-tampered-engine", 2, TLS_ECH_REJECTED},
        {"ech-unknown-config-engine", 3, TLS_ECH_UNKNOWN_CONFIG},
        {"ech-hrr-engine", 4, TLS_ECH_ACCEPTED},
        {"ech-bad-padding-engine", 5, TLS_ECH_ACCEPTED},
        {"ech-outer-refs-out-of-order-engine", 6, TLS_ECH_ACCEPTED},
    };
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        struct ttc t;
        struct kl_buf c2s, s2c, app;
        struct ttc_ech e = ech_for(&k, 1);
        struct ttc_config c1 = cc;
        int v = seeds[i].variant;
        uint8_t head[2] = {0x00, 0x3f};
        e.public_name = "public.example.com";
        if (v == 1 || v == 5 || v == 6) {
            e.compress[0] = EXT_SUPPORTED_GROUPS;
            e.compress[1] = EXT_SIGNATURE_ALGORITHMS;
            e.n_compress = 2;
            e.padding = 50;
        }
        e.tamper = v == 2;
        e.config_id = v == 3 ? 0x2b : 0x2a;
        e.bad_padding = v == 5;
        if (v == 6) {
            e.refs[0] = EXT_SIGNATURE_ALGORITHMS;
            e.refs[1] = EXT_SUPPORTED_GROUPS;
            e.n_refs = 2;
        }
        f.cfg.groups[0] = v == 4 ? TLS_GROUP_SECP256R1 : TLS_GROUP_X25519;
        f.cfg.n_groups = 1;
        if (v == 4)
            head[1] = 0x7f; /* the fuzzer's knob for P-256 only: HelloRetryRequest */
        kl_buf_init(&c2s, 1 << 18);
        kl_buf_init(&s2c, 1 << 18);
        kl_buf_init(&app, 1 << 18);
        struct tls_conn *c = tls_conn_new(&f.cfg, 40);
        int ok_ = ttc_start_ech(&t, &c1, NULL, &e, &c2s) == 0;
        size_t seed_len = c2s.len, n = c2s.len;
        int ret = tls_conn_input(c, &s2c, &app, c2s.base, &n);
        if (v == 4) {
            ok_ &= ret == 0;
            n = s2c.len;
            ok_ &= ttc_input(&t, &c2s, &app, s2c.base, &n) == 0 && t.ech_hrr_accepted;
            n = c2s.len - seed_len;
            ret = tls_conn_input(c, &s2c, &app, c2s.base + seed_len, &n);
            seed_len = c2s.len;
        }
        char name[128];
        snprintf(name, sizeof(name), "fuzz seed %s: %s", seeds[i].name,
                 v == 5 || v == 6 ? "illegal_parameter" : "reaches the signature");
        ok(ok_ && ret == (v == 5 || v == 6 ? KL_ERR_ILLEGAL_PARAMETER : KL_ERR_ASYNC) &&
               tls_conn_ech_status(c) == seeds[i].want,
           name);
        write_seed(seeds[i].name, head, 2, c2s.base, seed_len);
        if (v == 0 || v == 5) {
            /* Inner mode: open the payload with the key and write outer body ‖ encoded inner. */
            struct msg_client_hello outer;
            struct ech_outer o;
            struct kl_buf aad, pt, in;
            struct hpke_ctx ctx;
            const struct tls_ech_key *key;
            enum tls_ech_status st;
            uint8_t type;
            const uint8_t *ch = t.ch1_outer.base;
            size_t ch_len = t.ch1_outer.len;
            kl_buf_init(&aad, 1 << 17);
            kl_buf_init(&pt, 1 << 17);
            kl_buf_init(&in, 1 << 18);
            int good = msg_client_hello_decode(&outer, ch + 4, ch_len - 4) == 0 &&
                       ech_ext_decode(&type, &o, outer.ext.ech) == 0 && ech_outer_aad(&aad, ch + 4, ch_len - 4) == 0 &&
                       ech_open(&ctx, &key, &st, &pt, &f.cfg.ech, &o, aad.base, aad.len) == 0 && st == TLS_ECH_ACCEPTED;
            uint8_t ih[3] = {0x05, (uint8_t)((ch_len - 4) >> 8), (uint8_t)(ch_len - 4)};
            if (good && kl_buf_append(&in, ch + 4, ch_len - 4) == 0 && kl_buf_append(&in, pt.base, pt.len) == 0)
                write_seed(v == 0 ? "ech-inner-codec" : "ech-inner-bad-padding-codec", ih, 3, in.base, in.len);
            ok(good && ech_inner_rebuild(&aad, pt.base, pt.len, outer.session_id, outer.session_id_len, outer.ext.raw,
                                         16384) == (v == 0 ? 0 : KL_ERR_ILLEGAL_PARAMETER),
               "fuzz seed: the inner-mode input rebuilds as expected");
            hpke_ctx_dispose(&ctx);
            kl_buf_dispose(&aad);
            kl_buf_dispose(&pt);
            kl_buf_dispose(&in);
        }
        tls_conn_free(c);
        ttc_dispose(&t);
        kl_buf_dispose(&c2s);
        kl_buf_dispose(&s2c);
        kl_buf_dispose(&app);
    }
    crypto_wipe(&k, sizeof(k));
    fx_free(&f);
}

int main(void)
{
    test_ext_decode();
    test_inner_rebuild();
    test_inner_check();
    test_open_cost();
    test_accept();
    test_reject();
    test_off();
    test_hrr();
    test_resumption();
    test_malformed();
    test_fuzz_seeds();
    return kl_test_done();
}
