/*
 * fuzz_client_hello.c - libFuzzer target for the server handshake engine and the ClientHello codec.
 *
 * Input: byte 0 picks the mode (bits 0-1), the rest is the payload.
 *   engine mode (0): the payload is fed as received bytes to a fresh tls_conn, in pieces whose
 *     sizes come from byte 1, as a socket would deliver them. When the engine asks for a
 *     signature it gets a dummy one (or, if byte 1 says so, a signer failure) and goes on.
 *     Byte 0 bit 2 turns session tickets on (fixed keys, 0-RTT up to 1024 bytes, a replay
 *     register that takes each binder once; bit 3 also allows psk_ke) and injects the PSK
 *     identity "fuzz-psk" (tls_test_hooks), so that pre_shared_key parsing, ticket opening,
 *     the binder check and, with a forged binder, resumption are reached; bits 4-5 ask for
 *     client certificates (1 optional, 2 required, 3 required without a CA: internal_error),
 *     with the CA of tests/frontend/mtls when $KL_SOURCE_DIR is set. ECH is on (one key whose
 *     private key is fixed, fz_ech_key(), so that seeds carry ClientHellos that decrypt) unless
 *     bit 6 is set: the outer/inner decision, HPKE open, ClientHelloInner rebuild and checks, the
 *     confirmations, retry_configs and the second ClientHello after HelloRetryRequest are reached.
 *   codec mode (1): the payload is a ClientHello body for msg_client_hello_decode(). With bit 2
 *     set (ECH inner mode) it is u16 n ‖ an outer ClientHello body of n bytes ‖ an
 *     EncodedClientHelloInner: the inner decoder (ech_inner_rebuild, ech_inner_check) and the AAD
 *     are run directly, since mutations inside a sealed payload almost never decrypt.
 *   protected modes (2: established, 3: waiting for the client Finished): a real handshake
 *     with the test client first (with byte 0 bit 2 set in mode 2: a full handshake that issues a
 *     ticket, then a resumed one with 0-RTT accepted, and the chunks go under the client early
 *     key, reaching early data, its limit and EndOfEarlyData), then the payload is cut into (type, length, content)
 * chunks that are sealed under the client's current keys and fed to the server, so the fuzzer reaches the
 * post-decryption dispatch (KeyUpdate, alerts, fragments, wrong messages) without having to forge AEAD tags. Invariants
 * (abort on violation): consumed <= offered; a failed connection keeps returning the same error and reads nothing more;
 * a decoded ClientHello has bounded fields. Seeds: tests/fuzz/corpus_client_hello (the RFC 8448 ClientHellos in both
 * modes, and psk-*: the PSK ClientHello without psk_key_exchange_modes, with pre_shared_key not last, with more
 * identities than binders, through a HelloRetryRequest, in small pieces, with legacy_version 0x0300; ech-*: an
 * accepted ECH ClientHello, with compression and padding, through a HelloRetryRequest, tampered, with an unknown
 * config_id, and inner-mode inputs; test_ech writes them with KL_WRITE_ECH_SEEDS=dir).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "frontend/tls_test_client.h"
#include "ech.h"
#include "hpke.h"
#include "msg.h"
#include "tls.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A stand-in certificate: the engine copies the chain but never parses it. */
static const uint8_t fake_cert[] = {0x30, 0x03, 0x02, 0x01, 0x00};

static void run_codec(const uint8_t *p, size_t n)
{
    struct msg_client_hello ch;
    if (msg_client_hello_decode(&ch, p, n) != 0)
        return;
    if (ch.session_id_len > 32 || ch.cipher_suites.len % 2 != 0 || ch.ext.server_name.len > 255)
        abort();
    /* Walk the shares: the count matches, no group twice, each one in supported_groups. */
    struct wire_reader r;
    struct ext_key_share ks;
    size_t count = 0;
    static uint8_t seen[65536];
    memset(seen, 0, sizeof(seen));
    if (ch.ext.key_shares.base == NULL) {
        if (ch.ext.n_shares != 0 || ext_has(&ch.ext, EXT_B_KEY_SHARE))
            abort();
        return;
    }
    wire_reader_init(&r, ch.ext.key_shares.base, ch.ext.key_shares.len);
    while (ext_key_share_next(&r, &ks)) {
        if (seen[ks.group]++ != 0)
            abort(); /* duplicates must have been refused */
        if (ext_has(&ch.ext, EXT_B_SUPPORTED_GROUPS) && !ext_u16_list_has(ch.ext.groups, ks.group))
            abort(); /* a share outside supported_groups must have been refused */
        if (count == 0 && (ks.group != ch.ext.first_share.group || ks.key.len != ch.ext.first_share.key.len))
            abort();
        count++;
    }
    if (count != ch.ext.n_shares)
        abort();
}

/* ECH inner mode: the outer ClientHello's extensions feed the rebuild of an arbitrary EncodedClientHelloInner. */
static void run_ech_inner(const uint8_t *p, size_t n)
{
    struct msg_client_hello outer, inner;
    struct wire_reader r;
    struct kl_span ob, enc;
    struct kl_buf out, aad;
    uint16_t olen;
    wire_reader_init(&r, p, n);
    if (wire_read_u16(&r, &olen) != 0 || wire_read_span(&r, &ob, olen) != 0 ||
        wire_read_span(&r, &enc, wire_remaining(&r)) != 0)
        return;
    if (msg_client_hello_decode(&outer, ob.base, ob.len) != 0)
        return;
    kl_buf_init(&aad, ob.len);
    if (ext_has(&outer.ext, EXT_B_ENCRYPTED_CLIENT_HELLO) && ech_outer_aad(&aad, ob.base, ob.len) == 0 &&
        aad.len != ob.len)
        abort(); /* the AAD is the outer ClientHello with only the payload changed */
    kl_buf_dispose(&aad);
    kl_buf_init(&out, MSG_HEADER_LEN + 16384);
    if (ech_inner_rebuild(&out, enc.base, enc.len, outer.session_id, outer.session_id_len, outer.ext.raw, 16384) == 0) {
        if (out.len < MSG_HEADER_LEN || out.len > MSG_HEADER_LEN + 16384)
            abort(); /* bounded like any ClientHello */
        if (msg_client_hello_decode(&inner, out.base + MSG_HEADER_LEN, out.len - MSG_HEADER_LEN) == 0) {
            if (inner.session_id_len != outer.session_id_len)
                abort(); /* the outer legacy_session_id is copied in */
            (void)ech_inner_check(&inner);
        }
    } else if (out.len != 0) {
        abort(); /* nothing left behind on failure */
    }
    kl_buf_dispose(&out);
}

/*
 * The fuzzer's ECH key: DeriveKeyPair from a fixed ikm (32 x 0x45), config_id 0x2a, public name
 * "public.example.com" (covered by the "*.example.com" certificate), suites HKDF-SHA256 with AES-128-GCM and
 * ChaCha20-Poly1305. test_ech's seed writer builds the same key.
 */
static const struct tls_ech_key *fz_ech_key(uint8_t *list, size_t *list_len)
{
    static struct tls_ech_key k;
    static uint8_t l[2 + TLS_ECH_MAX_CONFIG_LEN];
    static size_t ll;
    if (k.config_len == 0) {
        uint8_t ikm[32];
        struct kl_buf b;
        size_t m, sm;
        static const char name[] = "public.example.com";
        memset(ikm, 0x45, sizeof(ikm));
        k.config_id = 0x2a;
        k.kem_id = HPKE_KEM_X25519_SHA256;
        k.suites[0].kdf_id = 1;
        k.suites[0].aead_id = 1;
        k.suites[1].kdf_id = 1;
        k.suites[1].aead_id = 3;
        k.n_suites = 2;
        snprintf(k.public_name, sizeof(k.public_name), "%s", name);
        kl_buf_init_fixed(&b, k.config, sizeof(k.config));
        if (hpke_derive_keypair(k.private_key, k.public_key, ikm, sizeof(ikm)) != 0 ||
            wire_put_u16(&b, TLS_ECH_VERSION) != 0 || wire_block_open(&b, &m, 2) != 0 || wire_put_u8(&b, 0x2a) != 0 ||
            wire_put_u16(&b, HPKE_KEM_X25519_SHA256) != 0 || wire_put_u16(&b, 32) != 0 ||
            wire_put_bytes(&b, k.public_key, 32) != 0 || wire_block_open(&b, &sm, 2) != 0 || wire_put_u16(&b, 1) != 0 ||
            wire_put_u16(&b, 1) != 0 || wire_put_u16(&b, 1) != 0 || wire_put_u16(&b, 3) != 0 ||
            wire_block_close(&b, sm, 2) != 0 || wire_put_u8(&b, 0) != 0 || wire_put_u8(&b, sizeof(name) - 1) != 0 ||
            wire_put_bytes(&b, name, sizeof(name) - 1) != 0 || wire_put_u16(&b, 0) != 0 ||
            wire_block_close(&b, m, 2) != 0)
            abort();
        k.config_len = b.len;
        l[0] = (uint8_t)(k.config_len >> 8);
        l[1] = (uint8_t)k.config_len;
        memcpy(l + 2, k.config, k.config_len);
        ll = 2 + k.config_len;
    }
    if (list != NULL) {
        memcpy(list, l, ll);
        *list_len = ll;
    }
    return &k;
}

/* Tickets for the fuzzer: fixed keys, so seeds can carry tickets that open. */
static int fz_keys(void *arg, struct tls_ticket_keys *out)
{
    (void)arg;
    memset(out, 0, sizeof(*out));
    out->n = 1;
    memset(out->keys[0].key_id, 0x4b, TLS_TICKET_KEY_ID_LEN);
    out->keys[0].epoch = 7;
    memset(out->keys[0].secret, 0x5c, TLS_TICKET_SECRET_LEN);
    return 0;
}

static uint8_t fz_seen[8][48];
static size_t fz_n_seen;
static int fz_replay(void *arg, const uint8_t *binder, size_t len, uint64_t expires_ms)
{
    (void)arg;
    (void)expires_ms;
    if (len > 48 || fz_n_seen == 8)
        return 0;
    for (size_t i = 0; i < fz_n_seen; i++) {
        if (memcmp(fz_seen[i], binder, len) == 0)
            return 0;
    }
    memcpy(fz_seen[fz_n_seen++], binder, len);
    return 1;
}

static void fz_tickets(struct tls_config *cfg, int on, int psk_ke)
{
    static const uint8_t psk[32] = {0x70, 0x73, 0x6b};
    static struct tls_test_hooks hooks;
    memset(&cfg->tickets, 0, sizeof(cfg->tickets));
    cfg->test = NULL;
    fz_n_seen = 0;
    if (!on)
        return;
    cfg->tickets.keys = fz_keys;
    cfg->tickets.count = 2;
    cfg->tickets.lifetime = 3600;
    cfg->tickets.max_early_data = 1024;
    cfg->tickets.replay = fz_replay;
    cfg->tickets.allow_psk_ke = psk_ke;
    hooks.psk_identity = (const uint8_t *)"fuzz-psk";
    hooks.psk_identity_len = 8;
    hooks.psk = psk;
    hooks.psk_len = sizeof(psk);
    hooks.psk_max_early_data = 64;
    cfg->test = &hooks;
}

static const struct tls_client_ca *fz_client_ca(void)
{
    static struct tls_client_ca *ca;
    static int tried;
    if (!tried) {
        const char *src = getenv("KL_SOURCE_DIR");
        char path[4096];
        enum tls_client_ca_error why;
        tried = 1;
        if (src != NULL) {
            snprintf(path, sizeof(path), "%s/tests/frontend/mtls/ca.pem", src);
            if (tls_client_ca_load(&ca, &why, path, NULL, 4) != 0)
                ca = NULL;
        }
    }
    return ca;
}

static void run_engine(const uint8_t *p, size_t n, uint8_t knobs, uint8_t mode)
{
    static struct tls_cert certs[2];
    static struct tls_config cfg;
    struct kl_buf out, app;
    struct tls_conn *c;
    size_t off = 0, step = (size_t)(knobs & 0x3f) + 1;
    int last = 0;

    if (cfg.n_certs == 0) {
        certs[0].key_name = "rsa";
        certs[0].chain[0] = fake_cert;
        certs[0].chain_len[0] = sizeof(fake_cert);
        certs[0].n_chain = 1;
        certs[0].schemes[0] = TLS_SIG_RSA_PSS_RSAE_SHA256;
        certs[0].n_schemes = 1;
        certs[0].names[0] = "server";
        certs[0].n_names = 1;
        certs[1] = certs[0];
        certs[1].key_name = "ecdsa";
        certs[1].schemes[0] = TLS_SIG_ECDSA_SECP256R1_SHA256;
        certs[1].names[0] = "*.example.com";
        cfg.certs = certs;
        cfg.n_certs = 2;
        cfg.alpn[0] = "h2";
        cfg.alpn[1] = "http/1.1";
        cfg.n_alpn = 2;
        cfg.max_handshake_message = 16384;
    }
    /* Half the runs insist on P-256 so that x25519-only ClientHellos reach the HelloRetryRequest path. */
    cfg.groups[0] = (knobs & 0x40) ? TLS_GROUP_SECP256R1 : TLS_GROUP_X25519;
    cfg.n_groups = 1;
    fz_tickets(&cfg, (mode & 0x04) != 0, (mode & 0x08) != 0);
    static const enum tls_client_auth auth[4] = {TLS_CLIENT_AUTH_NONE, TLS_CLIENT_AUTH_OPTIONAL,
                                                 TLS_CLIENT_AUTH_REQUIRED, TLS_CLIENT_AUTH_REQUIRED};
    cfg.client_auth = auth[(mode >> 4) & 3];
    cfg.client_ca = ((mode >> 4) & 3) == 3 ? NULL : fz_client_ca();
    static uint8_t retry[2 + TLS_ECH_MAX_CONFIG_LEN];
    size_t retry_len;
    cfg.ech.keys = fz_ech_key(retry, &retry_len);
    cfg.ech.n_keys = (mode & 0x40) ? 0 : 1;
    cfg.ech.retry_configs = retry;
    cfg.ech.retry_configs_len = retry_len;
    c = tls_conn_new(&cfg, 1);
    if (c == NULL)
        return;
    kl_buf_init(&out, 1 << 20);
    kl_buf_init(&app, 1 << 20);
    /* Offer growing windows of the input; bounded: every pass consumes or stops. */
    for (int pass = 0; pass < 64 && off <= n; pass++) {
        size_t avail = n - off < step * (size_t)(pass + 1) ? n - off : step * (size_t)(pass + 1);
        size_t used = avail;
        int ret = tls_conn_input(c, &out, &app, p + off, &used);
        if (used > avail)
            abort();
        off += used;
        if (ret == KL_ERR_ASYNC) {
            struct tls_sign_request req;
            if (tls_conn_sign_request(c, &req) != 0 || req.transcript_hash_len == 0)
                abort();
            static const uint8_t sig[64] = {1};
            ret = tls_conn_sign_done(c, &out, (knobs & 0x80) ? NULL : sig, sizeof(sig));
        }
        if (ret != 0 && ret != KL_ERR_ASYNC) {
            last = ret;
            break;
        }
        if (tls_conn_early_data_len(c) > 1024 || (tls_conn_early_data_accepted(c) && !tls_conn_resumed(c)))
            abort(); /* early data only on a resumed connection, never over the limit */
        if (cfg.ech.n_keys == 0 && (tls_conn_ech_status(c) != TLS_ECH_NONE || tls_conn_ech_outer_name(c)[0] != 0))
            abort(); /* ECH off: the extension is ignored */
        if ((tls_conn_ech_status(c) == TLS_ECH_REJECTED || tls_conn_ech_status(c) == TLS_ECH_UNKNOWN_CONFIG) &&
            (tls_conn_resumed(c) || tls_conn_early_data_accepted(c)))
            abort(); /* no PSK and no 0-RTT from an outer ClientHello whose ECH was rejected */
        kl_buf_reset(&out);
        kl_buf_reset(&app);
        if (used == 0 && avail == n - off)
            break;
    }
    if (last != 0) {
        size_t used = n - off;
        if (tls_conn_input(c, &out, &app, p + off, &used) != last || used != 0)
            abort(); /* sticky error, nothing read after failure */
    }
    tls_conn_free(c);
    kl_buf_dispose(&out);
    kl_buf_dispose(&app);
}

static void run_protected(const uint8_t *p, size_t n, int before_finished, int early)
{
    static struct tls_cert cert;
    static struct tls_config cfg;
    struct ttc t;
    struct ttc_config cc = {
        {TLS_AES_128_GCM_SHA256}, 1, {TLS_GROUP_X25519}, 1, {TLS_GROUP_X25519}, 1, {0x0804}, 1, NULL, NULL, 0, 0, 1};
    struct kl_buf c2s, s2c, app;
    struct rec_dir cw;
    struct tls_conn *c;
    size_t used;
    int ret;

    if (cfg.n_certs == 0) {
        cert.key_name = "rsa";
        cert.chain[0] = fake_cert;
        cert.chain_len[0] = sizeof(fake_cert);
        cert.n_chain = 1;
        cert.schemes[0] = TLS_SIG_RSA_PSS_RSAE_SHA256;
        cert.n_schemes = 1;
        cfg.certs = &cert;
        cfg.n_certs = 1;
    }
    fz_tickets(&cfg, early, 0);
    cfg.test = NULL;
    c = tls_conn_new(&cfg, 2);
    kl_buf_init(&c2s, 1 << 20);
    kl_buf_init(&s2c, 1 << 20);
    kl_buf_init(&app, 1 << 20);
    rec_dir_init(&cw, 1);
    if (c == NULL || ttc_start(&t, &cc, &c2s) != 0)
        abort();
    used = c2s.len;
    if (tls_conn_input(c, &s2c, &app, c2s.base, &used) != KL_ERR_ASYNC)
        abort();
    static const uint8_t sig[64] = {1};
    if (tls_conn_sign_done(c, &s2c, sig, sizeof(sig)) != 0)
        abort();
    kl_buf_reset(&c2s);
    used = s2c.len;
    if (ttc_input(&t, &c2s, &app, s2c.base, &used) != 0 || t.state != TTC_DONE)
        abort(); /* the engine and the test client must agree */
    if (early) {
        /* Finish, take the client's first ticket, then resume with 0-RTT accepted: the chunks go under the
         * client early key, before EndOfEarlyData. */
        struct ttc_psk_config pc;
        static const uint8_t first[1] = {'x'};
        struct ttc_ticket *tk = malloc(sizeof(*tk));
        used = c2s.len;
        kl_buf_reset(&s2c);
        if (tk == NULL || tls_conn_input(c, &s2c, &app, c2s.base, &used) != 0 || !tls_conn_established(c))
            abort();
        kl_buf_reset(&c2s);
        used = s2c.len;
        if (ttc_input(&t, &c2s, &app, s2c.base, &used) != 0 || t.n_tickets == 0)
            abort();
        *tk = t.tickets[0];
        ttc_dispose(&t);
        tls_conn_free(c);
        c = tls_conn_new(&cfg, 3);
        memset(&pc, 0, sizeof(pc));
        pc.resume = tk;
        pc.early = first;
        pc.early_len = sizeof(first);
        kl_buf_reset(&c2s);
        kl_buf_reset(&s2c);
        kl_buf_reset(&app);
        if (c == NULL || ttc_start_psk(&t, &cc, &pc, &c2s) != 0)
            abort();
        used = c2s.len;
        if (tls_conn_input(c, &s2c, &app, c2s.base, &used) != 0 || !tls_conn_early_data_accepted(c) || app.len != 1)
            abort(); /* the engine and the test client must agree */
        free(tk);
    } else if (before_finished) {
        /* Drop the client's Finished: fuzz what reaches EXPECT_CLIENT_FINISHED under the client handshake key. */
        if (rec_dir_set_secret(&cw, t.suite, t.ks.client_hs, t.hash_len) != 0)
            abort();
    } else {
        used = c2s.len;
        if (tls_conn_input(c, &s2c, &app, c2s.base, &used) != 0 || !tls_conn_established(c))
            abort();
    }
    kl_buf_reset(&s2c);
    /* Chunks: type (1), length (1, scaled), content. */
    for (size_t off = 0; off + 2 <= n;) {
        uint8_t type = p[off] & 0x1f;
        size_t len = (size_t)p[off + 1] * (p[off] & 0x20 ? 80 : 1);
        off += 2;
        if (len > n - off)
            len = n - off;
        struct rec_dir *d = before_finished && !early ? &cw : &t.wr;
        kl_buf_reset(&c2s);
        if (type == 0x1f) {
            /* raw bytes on the wire, unprotected */
            ret = kl_buf_append(&c2s, p + off, len);
        } else {
            type = type < 4 ? (uint8_t)(REC_TYPE_CHANGE_CIPHER_SPEC + type) : type;
            ret = rec_seal(d, &c2s, type, p + off, len, 0);
        }
        off += len;
        if (ret != 0)
            continue;
        used = c2s.len;
        ret = tls_conn_input(c, &s2c, &app, c2s.base, &used);
        if (used > c2s.len)
            abort();
        kl_buf_reset(&s2c);
        kl_buf_reset(&app);
        if (ret != 0) {
            used = c2s.len;
            if (tls_conn_input(c, &s2c, &app, c2s.base, &used) != ret || used != 0)
                abort();
            break;
        }
    }
    ttc_dispose(&t);
    rec_dir_dispose(&cw);
    tls_conn_free(c);
    kl_buf_dispose(&c2s);
    kl_buf_dispose(&s2c);
    kl_buf_dispose(&app);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    switch (data[0] & 3) {
    case 0:
        run_engine(data + 2, size - 2, data[1], data[0]);
        break;
    case 1:
        if (data[0] & 4)
            run_ech_inner(data + 1, size - 1);
        else
            run_codec(data + 1, size - 1);
        break;
    default:
        run_protected(data + 1, size - 1, (data[0] & 3) == 3, (data[0] & 7) == 6);
        break;
    }
    return 0;
}
