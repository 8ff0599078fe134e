/*
 * fuzz_client_hello.c - libFuzzer target for the server handshake engine and the ClientHello codec.
 *
 * Input: byte 0 picks the mode (bits 0-1), the rest is the payload.
 *   engine mode (0): the payload is fed as received bytes to a fresh tls_conn, in pieces whose
 *     sizes come from byte 1, as a socket would deliver them. When the engine asks for a
 *     signature it gets a dummy one (or, if byte 1 says so, a signer failure) and goes on.
 *   codec mode (1): the payload is a ClientHello body for msg_client_hello_decode().
 *   protected modes (2: established, 3: waiting for the client Finished): a real handshake
 *     with the test client first, then the payload is cut into (type, length, content) chunks
 *     that are sealed under the client's current keys and fed to the server, so the fuzzer
 *     reaches the post-decryption dispatch (KeyUpdate, alerts, fragments, wrong messages)
 *     without having to forge AEAD tags.
 * Invariants (abort on violation): consumed <= offered; a failed connection keeps returning
 * the same error and reads nothing more; a decoded ClientHello has bounded fields.
 * Seeds: tests/fuzz/corpus_client_hello (the RFC 8448 ClientHellos in both modes, and psk-*: the
 * PSK ClientHello without psk_key_exchange_modes, with pre_shared_key not last, with more
 * identities than binders, through a HelloRetryRequest, in small pieces, with legacy_version 0x0300).
 */
#include <stdlib.h>
#include <string.h>
#include "frontend/tls_test_client.h"
#include "msg.h"
#include "tls.h"

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

static void run_engine(const uint8_t *p, size_t n, uint8_t knobs)
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

static void run_protected(const uint8_t *p, size_t n, int before_finished)
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
    if (before_finished) {
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
        struct rec_dir *d = before_finished ? &cw : &t.wr;
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
        run_engine(data + 2, size - 2, data[1]);
        break;
    case 1:
        run_codec(data + 1, size - 1);
        break;
    default:
        run_protected(data + 1, size - 1, (data[0] & 3) == 3);
        break;
    }
    return 0;
}
