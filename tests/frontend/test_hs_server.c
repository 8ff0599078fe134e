/*
 * test_hs_server.c - the server handshake engine (tls.h) against RFC 8448 byte for byte,
 * and the negative cases of issue 4: malformed ClientHellos, wrong record types in each
 * state, bad Finished, oversized and tampered records, signer failure, KeyUpdate,
 * close_notify, sticky errors; and issue 12's conformance cases (test_conformance_*), each
 * with the exact alert. White-box: it includes hs_server.c to see what a tls_conn holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kl_test.h"
#include "frontend/rfc8448.h"
#include "crypto.h"
#include "ext.h"
#include "key_schedule.h"
#include "msg.h"
#include "record.h"
#include "tls.h"
#include "tls_test_client.h"
#include "wire.h"
/* White-box: the engine itself, so that tests can see what struct tls_conn holds (the ECDHE key). */
#include "hs_server.c"
#include <malloc.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

/* ---- fixtures ---- */

static char trace_log[1024];
static void on_trace(void *arg, uint64_t id, const char *ev)
{
    (void)arg;
    (void)id;
    if (strlen(trace_log) + strlen(ev) + 2 < sizeof(trace_log)) {
        strcat(trace_log, ev);
        strcat(trace_log, ",");
    }
}

static char keylog[2048];
static void on_keylog(void *arg, const char *line)
{
    (void)arg;
    if (strlen(keylog) + strlen(line) + 2 < sizeof(keylog)) {
        strcat(keylog, line);
        strcat(keylog, "\n");
    }
}

struct fx {
    struct rfc8448 *t;
    uint8_t *der, *ecdsa_der;
    size_t der_len, ecdsa_der_len;
    struct tls_cert certs[2];
    struct tls_config cfg;
    struct tls_test_hooks hooks;
    struct kl_buf out, app;
};

static const uint8_t *V(struct fx *f, const char *name, size_t *len_p)
{
    return rfc8448_must(f->t, name, len_p);
}

/* The RFC 8448 server: RSA certificate, AES-128-GCM, x25519 (and P-256 for 5), forced randoms. */
static void fx_init(struct fx *f, const char *file, int hooks)
{
    size_t l;
    memset(f, 0, sizeof(*f));
    f->t = rfc8448_load(file);
    f->der = rfc8448_read_file("server-cert.der", &f->der_len);
    f->ecdsa_der = rfc8448_read_file("client-auth-server-ecdsa-cert.der", &f->ecdsa_der_len);
    f->certs[0].key_name = "rsa";
    f->certs[0].chain[0] = f->der;
    f->certs[0].chain_len[0] = f->der_len;
    f->certs[0].n_chain = 1;
    f->certs[0].schemes[0] = TLS_SIG_RSA_PSS_RSAE_SHA256;
    f->certs[0].n_schemes = 1;
    f->certs[0].names[0] = "rsa";
    f->certs[0].n_names = 1;
    f->cfg.certs = f->certs;
    f->cfg.n_certs = 1;
    f->cfg.suites[0] = TLS_AES_128_GCM_SHA256;
    f->cfg.n_suites = 1;
    f->cfg.groups[0] = TLS_GROUP_X25519;
    f->cfg.groups[1] = TLS_GROUP_SECP256R1;
    f->cfg.n_groups = 2;
    memset(f->cfg.cookie_key, 0x5a, sizeof(f->cfg.cookie_key));
    f->cfg.trace = on_trace;
    f->cfg.keylog = on_keylog;
    if (hooks) {
        size_t rl;
        const uint8_t *ee = V(f, "encrypted_extensions", &l);
        f->hooks.server_random = V(f, "server_random", &rl);
        f->hooks.server_ephemeral_private = V(f, "server_ephemeral_private", &f->hooks.server_ephemeral_private_len);
        /* EE = 08 len24 len16 extensions: the hook takes the extensions. */
        f->hooks.encrypted_extensions_body = ee + 6;
        f->hooks.encrypted_extensions_body_len = l - 6;
        f->cfg.test = &f->hooks;
    }
    kl_buf_init(&f->out, 1 << 20);
    kl_buf_init(&f->app, 1 << 20);
    trace_log[0] = 0;
    keylog[0] = 0;
}

static void fx_free(struct fx *f)
{
    kl_buf_dispose(&f->out);
    kl_buf_dispose(&f->app);
    free(f->der);
    free(f->ecdsa_der);
    rfc8448_free(f->t);
}

static int feed(struct tls_conn *c, struct fx *f, const uint8_t *in, size_t len, size_t *consumed_p)
{
    size_t n = len;
    int ret = tls_conn_input(c, &f->out, &f->app, in, &n);
    if (consumed_p != NULL)
        *consumed_p = n;
    return ret;
}

/* The last plaintext alert in out, or -1. */
static int plain_alert(const struct kl_buf *out)
{
    if (out->len < 7)
        return -1;
    const uint8_t *p = out->base + out->len - 7;
    if (p[0] != 21 || p[1] != 3 || p[2] != 3 || p[3] != 0 || p[4] != 2 || p[5] != 2)
        return -1;
    return p[6];
}

/* Open every record in buf with d; concatenate contents of type want_type into content. Returns count or -1. */
static int open_all(struct rec_dir *d, const uint8_t *buf, size_t len, struct kl_buf *content, uint8_t *last_type)
{
    size_t off = 0;
    int n = 0;
    while (off < len) {
        struct rec_record r;
        if (rec_next(&r, buf + off, len - off, 0) != 0)
            return -1;
        if (r.type == REC_TYPE_CHANGE_CIPHER_SPEC) {
            off += r.wire_len;
            continue;
        }
        if (rec_open(d, content, last_type, &r) != 0)
            return -1;
        off += r.wire_len;
        n++;
    }
    return n;
}

/* A read direction keyed with trace key/iv names. */
static void dir_keys(struct fx *f, struct rec_dir *d, int encrypt, const char *key, const char *iv)
{
    size_t kl, il;
    const uint8_t *k = V(f, key, &kl), *i = V(f, iv, &il);
    rec_dir_init(d, encrypt);
    if (rec_dir_set_keys(d, TLS_AES_128_GCM_SHA256, k, kl, i) != 0)
        diag("rec_dir_set_keys failed");
}

static void dir_secret(struct fx *f, struct rec_dir *d, int encrypt, const char *secret)
{
    size_t l;
    const uint8_t *s = V(f, secret, &l);
    rec_dir_init(d, encrypt);
    if (rec_dir_set_secret(d, TLS_AES_128_GCM_SHA256, s, l) != 0)
        diag("rec_dir_set_secret failed");
}

/* Hash of concatenated trace messages. */
static void th_of(struct fx *f, uint8_t out[32], const char *const *names)
{
    struct crypto_hash_ctx h;
    if (crypto_hash_ctx_init(&h, CRYPTO_HASH_SHA256) != 0)
        return;
    for (size_t i = 0; names[i] != NULL; i++) {
        size_t l;
        const uint8_t *m = V(f, names[i], &l);
        if (crypto_hash_ctx_update(&h, m, l) != 0)
            diag("hash update");
    }
    if (crypto_hash_ctx_peek(&h, out) != 0)
        diag("hash peek");
    crypto_hash_ctx_dispose(&h);
}

/*
 * Rebuild a ClientHello record from a ClientHello message: drop extension drop_type (0xffff:
 * none), append extra (whole extensions) at the end. Returns the record length.
 */
static size_t ch_record(uint8_t *rec, const uint8_t *ch, size_t ch_len, uint16_t drop_type, const uint8_t *extra,
                        size_t extra_len)
{
    const uint8_t *b = ch + 4;
    size_t blen = ch_len - 4, o = 34, w;
    o += 1 + b[o];
    o += 2 + ((size_t)b[o] << 8 | b[o + 1]);
    o += 1 + b[o];
    size_t prefix = o;
    uint8_t *m = rec + 5, *body = m + 4;
    memcpy(body, b, prefix);
    w = prefix + 2;
    o = prefix + 2;
    while (o + 4 <= blen) {
        uint16_t type = (uint16_t)(b[o] << 8 | b[o + 1]);
        size_t el = 4 + ((size_t)b[o + 2] << 8 | b[o + 3]);
        if (type != drop_type) {
            memcpy(body + w, b + o, el);
            w += el;
        }
        o += el;
    }
    if (extra_len != 0)
        memcpy(body + w, extra, extra_len);
    w += extra_len;
    body[prefix] = (uint8_t)((w - prefix - 2) >> 8);
    body[prefix + 1] = (uint8_t)(w - prefix - 2);
    m[0] = 1;
    m[1] = (uint8_t)(w >> 16);
    m[2] = (uint8_t)(w >> 8);
    m[3] = (uint8_t)w;
    rec[0] = 22;
    rec[1] = 3;
    rec[2] = 1;
    rec[3] = (uint8_t)((w + 4) >> 8);
    rec[4] = (uint8_t)(w + 4);
    return w + 4 + 5;
}

/* A copy of extension type in a ClientHello message (whole extension), or 0. */
static size_t ch_ext(uint8_t *out, const uint8_t *ch, size_t ch_len, uint16_t want)
{
    const uint8_t *b = ch + 4;
    size_t blen = ch_len - 4, o = 34;
    o += 1 + b[o];
    o += 2 + ((size_t)b[o] << 8 | b[o + 1]);
    o += 1 + b[o];
    o += 2;
    while (o + 4 <= blen) {
        uint16_t type = (uint16_t)(b[o] << 8 | b[o + 1]);
        size_t el = 4 + ((size_t)b[o + 2] << 8 | b[o + 3]);
        if (type == want) {
            memcpy(out, b + o, el);
            return el;
        }
        o += el;
    }
    return 0;
}

/* Run a ClientHello record against a fresh RFC 8448 server; returns the error, *alert_p the plaintext alert. */
static int try_ch(struct fx *f, const uint8_t *rec, size_t len, int *alert_p)
{
    struct tls_conn *c = tls_conn_new(&f->cfg, 1);
    kl_buf_reset(&f->out);
    int ret = feed(c, f, rec, len, NULL);
    *alert_p = plain_alert(&f->out);
    tls_conn_free(c);
    return ret;
}

/* ---- RFC 8448 section 3, byte for byte ---- */

static void test_rfc8448_simple(void)
{
    struct fx f;
    size_t l, l2, n;
    uint8_t th[32];
    struct tls_sign_request req;
    fx_init(&f, "simple-1rtt.txt", 1);
    struct tls_conn *c = tls_conn_new(&f.cfg, 7);
    ok(c != NULL, "3: tls_conn_new");

    const uint8_t *chr = V(&f, "client_hello_record", &l);
    int ret = feed(c, &f, chr, l, &n);
    is_int(ret, KL_ERR_ASYNC, "3: ClientHello → KL_ERR_ASYNC (signature needed)");
    is_int(n, l, "3: ClientHello record consumed");
    const uint8_t *shr = V(&f, "server_hello_record", &l2);
    is_mem(f.out.base, f.out.len, shr, l2, "3: ServerHello record == RFC 8448");

    is_int(tls_conn_sign_request(c, &req), 0, "3: sign request available");
    static const char *const upto_cert[] = {"client_hello", "server_hello", "encrypted_extensions", "certificate",
                                            NULL};
    th_of(&f, th, upto_cert);
    is_mem(req.transcript_hash, req.transcript_hash_len, th, 32, "3: sign request hash = SHA-256(CH..Certificate)");
    is_int(req.scheme, TLS_SIG_RSA_PSS_RSAE_SHA256, "3: scheme rsa_pss_rsae_sha256");
    ok(strcmp(req.key_name, "rsa") == 0, "3: key name");
    ok(strcmp(req.server_name, "server") == 0, "3: SNI in the request");

    /* The signer would return the trace's signature: check it verifies over the §4.4.3 content. */
    const uint8_t *cv = V(&f, "certificate_verify", &l);
    const uint8_t *sig = cv + 8;
    size_t sig_len = l - 8;
    uint8_t content[64 + 34 + 32];
    memset(content, 0x20, 64);
    memcpy(content + 64, "TLS 1.3, server CertificateVerify", 34); /* includes the 0x00 */
    memcpy(content + 98, th, 32);
    is_int(crypto_cert_verify(f.der, f.der_len, TLS_SIG_RSA_PSS_RSAE_SHA256, content, sizeof(content), sig, sig_len), 0,
           "3: trace signature verifies against server-cert.der over the CertificateVerify content");
    content[100] ^= 1;
    ok(crypto_cert_verify(f.der, f.der_len, TLS_SIG_RSA_PSS_RSAE_SHA256, content, sizeof(content), sig, sig_len) != 0,
       "3: ... and not over other content");

    ret = feed(c, &f, chr, 0, &n);
    is_int(ret, KL_ERR_ASYNC, "3: input while waiting → still ASYNC");
    kl_buf_reset(&f.out);
    is_int(tls_conn_sign_done(c, &f.out, sig, sig_len), 0, "3: sign_done");
    const uint8_t *flight = V(&f, "server_encrypted_flight_record", &l2);
    is_mem(f.out.base, f.out.len, flight, l2, "3: encrypted server flight == RFC 8448 byte for byte");

    kl_buf_reset(&f.out);
    const uint8_t *cfin = V(&f, "client_finished_record", &l);
    is_int(feed(c, &f, cfin, l, &n), 0, "3: client Finished accepted");
    ok(tls_conn_established(c), "3: established");
    is_int(f.out.len, 0, "3: nothing sent on client Finished");

    const uint8_t *cad = V(&f, "client_application_data_record", &l);
    const uint8_t *cap = V(&f, "client_application_data_plaintext", &l2);
    is_int(feed(c, &f, cad, l, &n), 0, "3: client application data");
    is_mem(f.app.base, f.app.len, cap, l2, "3: application data decrypts to the trace plaintext");

    /* Our first app record is at seq 0 (we send no ticket): compare by decrypting. */
    struct rec_dir srd;
    struct kl_buf pt;
    uint8_t type = 0;
    kl_buf_init(&pt, 1 << 16);
    dir_keys(&f, &srd, 0, "server_application_key", "server_application_iv");
    const uint8_t *sap = V(&f, "server_application_data_plaintext", &l2);
    is_int(tls_conn_send(c, &f.out, sap, l2), 0, "3: send 50 bytes");
    is_int(open_all(&srd, f.out.base, f.out.len, &pt, &type), 1, "3: one record, opens with server_application key");
    is_mem(pt.base, pt.len, sap, l2, "3: server application data round trip");
    ok(type == REC_TYPE_APPLICATION_DATA, "3: inner type application_data");

    /* Exporter matches the trace's exporter_master_secret. */
    uint8_t e1[32], e2[32];
    const uint8_t *ems = V(&f, "exporter_master_secret", &l);
    is_int(tls_conn_export(c, e1, 32, "EXPORTER-test", (const uint8_t *)"ctx", 3), 0, "3: export");
    is_int(ks_export(CRYPTO_HASH_SHA256, e2, 32, ems, "EXPORTER-test", (const uint8_t *)"ctx", 3), 0, "ks_export");
    is_mem(e1, 32, e2, 32, "3: exporter from exporter_master_secret");

    ok(strcmp(trace_log, "ClientHello,ServerHello,EncryptedExtensions,Certificate,CertificateVerify:wait,"
                         "CertificateVerify,Finished,ClientFinished,") == 0,
       "3: trace events in order");
    if (strstr(trace_log, "ClientFinished") == NULL)
        diag("trace: %s", trace_log);
    {
        char hex[65];
        const uint8_t *s = V(&f, "client_handshake_traffic_secret", &l);
        for (size_t i = 0; i < 32; i++)
            sprintf(hex + 2 * i, "%02x", s[i]);
        ok(strstr(keylog, "CLIENT_HANDSHAKE_TRAFFIC_SECRET cb34ecb1") != NULL && strstr(keylog, hex) != NULL,
           "3: keylog CLIENT_HANDSHAKE_TRAFFIC_SECRET line");
        s = V(&f, "server_application_traffic_secret_0", &l);
        for (size_t i = 0; i < 32; i++)
            sprintf(hex + 2 * i, "%02x", s[i]);
        ok(strstr(keylog, "SERVER_TRAFFIC_SECRET_0") != NULL && strstr(keylog, hex) != NULL,
           "3: keylog SERVER_TRAFFIC_SECRET_0 line");
    }

    /* KeyUpdate from the client with update_requested (client app seq 1). */
    struct rec_dir cwr;
    dir_secret(&f, &cwr, 1, "client_application_traffic_secret_0");
    cwr.seq = 1;
    struct kl_buf rec;
    kl_buf_init(&rec, 1 << 16);
    is_int(rec_seal(&cwr, &rec, REC_TYPE_HANDSHAKE, (const uint8_t *)"\x18\x00\x00\x01\x01", 5, 0), 0,
           "client KeyUpdate sealed");
    is_int(rec_dir_update(&cwr), 0, "client switches keys");
    kl_buf_reset(&f.out);
    is_int(feed(c, &f, rec.base, rec.len, &n), 0, "3: KeyUpdate(update_requested) accepted");
    struct rec_dir srd2;
    dir_secret(&f, &srd2, 0, "server_application_traffic_secret_0");
    srd2.seq = 1;
    kl_buf_reset(&pt);
    is_int(open_all(&srd2, f.out.base, f.out.len, &pt, &type), 1, "3: server answered with one record");
    ok(type == REC_TYPE_HANDSHAKE && pt.len == 5 && memcmp(pt.base, "\x18\x00\x00\x01\x00", 5) == 0,
       "3: server KeyUpdate(update_not_requested)");
    is_int(rec_dir_update(&srd2), 0, "client follows the server's new keys");
    kl_buf_reset(&f.out);
    is_int(tls_conn_send(c, &f.out, (const uint8_t *)"after", 5), 0, "send after KeyUpdate");
    kl_buf_reset(&pt);
    is_int(open_all(&srd2, f.out.base, f.out.len, &pt, &type), 1, "3: server data under updated key");
    is_mem(pt.base, pt.len, "after", 5, "3: updated-key data");
    /* Client data under its updated key. */
    kl_buf_reset(&rec);
    kl_buf_reset(&f.app);
    is_int(rec_seal(&cwr, &rec, REC_TYPE_APPLICATION_DATA, (const uint8_t *)"hello", 5, 0), 0, "client data sealed");
    is_int(feed(c, &f, rec.base, rec.len, &n), 0, "3: client data under updated key");
    is_mem(f.app.base, f.app.len, "hello", 5, "3: decrypts");
    /* Server-initiated KeyUpdate with request. */
    kl_buf_reset(&f.out);
    is_int(tls_conn_key_update(c, &f.out, 1), 0, "3: server KeyUpdate(update_requested)");
    kl_buf_reset(&pt);
    is_int(open_all(&srd2, f.out.base, f.out.len, &pt, &type), 1, "one record");
    ok(type == REC_TYPE_HANDSHAKE && pt.len == 5 && pt.base[4] == 1, "3: KeyUpdate request_update=1");
    is_int(rec_dir_update(&srd2), 0, "client follows");
    kl_buf_reset(&f.out);
    is_int(tls_conn_send(c, &f.out, (const uint8_t *)"x", 1), 0, "send");
    kl_buf_reset(&pt);
    is_int(open_all(&srd2, f.out.base, f.out.len, &pt, &type), 1, "3: data under server's second key");

    /* Post-handshake message other than KeyUpdate: unexpected_message, under the server's key. */
    struct tls_conn *saved = c;
    (void)saved;
    /* close_notify from the client. */
    kl_buf_reset(&rec);
    is_int(rec_alert(&cwr, &rec, KL_ALERT_CLOSE_NOTIFY), 0, "client close_notify sealed");
    is_int(feed(c, &f, rec.base, rec.len, &n), KL_ERR_CLOSED, "3: close_notify → KL_ERR_CLOSED");
    is_int(feed(c, &f, rec.base, rec.len, &n), KL_ERR_CLOSED, "3: again → KL_ERR_CLOSED");
    is_int(n, 0, "3: nothing read after close");
    kl_buf_reset(&f.out);
    is_int(tls_conn_close(c, &f.out), 0, "3: our close_notify");
    kl_buf_reset(&pt);
    is_int(open_all(&srd2, f.out.base, f.out.len, &pt, &type), 1, "one record");
    ok(type == REC_TYPE_ALERT && pt.len == 2 && pt.base[0] == 1 && pt.base[1] == 0, "3: close_notify sent");
    ok(tls_conn_send(c, &f.out, (const uint8_t *)"x", 1) != 0, "3: no send after our close_notify");

    rec_dir_dispose(&cwr);
    rec_dir_dispose(&srd);
    rec_dir_dispose(&srd2);
    kl_buf_dispose(&rec);
    kl_buf_dispose(&pt);
    tls_conn_free(c);
    fx_free(&f);
}

/* The trace's own client_alert_record closes the connection (client app seq 1 after its data). */
static void test_rfc8448_simple_alert(void)
{
    struct fx f;
    size_t l, n;
    fx_init(&f, "simple-1rtt.txt", 1);
    struct tls_conn *c = tls_conn_new(&f.cfg, 1);
    const uint8_t *cv = V(&f, "certificate_verify", &l);
    /* The ClientHello split over three records, and all client records in one input. */
    size_t chl;
    const uint8_t *ch = V(&f, "client_hello", &chl);
    uint8_t split[600];
    size_t o = 0, parts[3] = {1, 100, chl - 101}, p = 0;
    for (size_t i = 0; i < 3; i++) {
        split[o++] = 22;
        split[o++] = 3;
        split[o++] = 1;
        split[o++] = (uint8_t)(parts[i] >> 8);
        split[o++] = (uint8_t)parts[i];
        memcpy(split + o, ch + p, parts[i]);
        o += parts[i];
        p += parts[i];
    }
    is_int(feed(c, &f, split, o - 3, &n), 0, "3: ClientHello in 3 records, last one incomplete: wait");
    is_int(n, 5 + 1 + 5 + 100, "3: two whole records consumed");
    is_int(f.out.len, 0, "3: nothing sent yet");
    is_int(feed(c, &f, split + n, o - n, &n), KL_ERR_ASYNC, "3: rest of the ClientHello");
    size_t l2;
    const uint8_t *shr = V(&f, "server_hello_record", &l2);
    is_mem(f.out.base, f.out.len, shr, l2, "3: split ClientHello gives the same ServerHello");
    is_int(tls_conn_sign_done(c, &f.out, cv + 8, l - 8), 0, "sign_done");
    struct kl_buf all;
    kl_buf_init(&all, 1 << 16);
    const char *names[] = {"client_finished_record", "client_application_data_record", "client_alert_record"};
    for (size_t i = 0; i < 3; i++) {
        const uint8_t *r = V(&f, names[i], &l);
        if (kl_buf_append(&all, r, l) != 0)
            diag("append");
    }
    is_int(feed(c, &f, all.base, all.len, &n), KL_ERR_CLOSED, "3: Finished + data + close_notify in one input");
    is_int(n, all.len, "3: all consumed");
    const uint8_t *cap = V(&f, "client_application_data_plaintext", &l);
    is_mem(f.app.base, f.app.len, cap, l, "3: data before the close_notify delivered");
    kl_buf_dispose(&all);
    tls_conn_free(c);
    fx_free(&f);
}

/* RFC 8448 4: a resumption ClientHello with 0-RTT. We do not resume: full handshake, early data skipped. */
static void test_rfc8448_0rtt_refused(void)
{
    struct fx f;
    size_t l, n;
    fx_init(&f, "resumed-0rtt.txt", 0);
    struct tls_conn *c = tls_conn_new(&f.cfg, 30);
    const uint8_t *chr = V(&f, "client_hello_record", &l);
    is_int(feed(c, &f, chr, l, &n), KL_ERR_ASYNC, "4: PSK ClientHello → full handshake (PSK ignored)");
    struct tls_sign_request req;
    is_int(tls_conn_sign_request(c, &req), 0, "4: a certificate signature is requested");
    is_int(tls_conn_sign_done(c, &f.out, (const uint8_t *)"sig", 3), 0, "4: flight sent");
    struct kl_buf early;
    kl_buf_init(&early, 1 << 16);
    const uint8_t *e1 = V(&f, "early_data_record", &l);
    if (kl_buf_append(&early, e1, l) != 0)
        diag("append");
    e1 = V(&f, "end_of_early_data_record", &l);
    if (kl_buf_append(&early, e1, l) != 0)
        diag("append");
    kl_buf_reset(&f.out);
    is_int(feed(c, &f, early.base, early.len, &n), 0, "4: the trace's 0-RTT records are skipped (4.2.10)");
    is_int(n, early.len, "4: both consumed");
    is_int(f.out.len + f.app.len, 0, "4: nothing delivered, nothing sent");
    ok(!tls_conn_established(c), "4: still waiting for the client Finished");
    kl_buf_dispose(&early);
    tls_conn_free(c);
    fx_free(&f);
}

/* ---- RFC 8448 section 7: middlebox compatibility mode ---- */

static void test_rfc8448_compat(void)
{
    struct fx f;
    size_t l, l2, n;
    fx_init(&f, "compat-mode.txt", 1);
    struct tls_conn *c = tls_conn_new(&f.cfg, 2);
    const uint8_t *chr = V(&f, "client_hello_record", &l);
    is_int(feed(c, &f, chr, l, &n), KL_ERR_ASYNC, "7: ClientHello → ASYNC");
    struct kl_buf want;
    kl_buf_init(&want, 1 << 16);
    const uint8_t *shr = V(&f, "server_hello_record", &l2);
    if (kl_buf_append(&want, shr, l2) != 0)
        diag("append");
    shr = V(&f, "server_change_cipher_spec_record", &l2);
    if (kl_buf_append(&want, shr, l2) != 0)
        diag("append");
    is_mem(f.out.base, f.out.len, want.base, want.len, "7: ServerHello (echoing the session id) then CCS");
    const uint8_t *cv = V(&f, "certificate_verify", &l);
    kl_buf_reset(&f.out);
    is_int(tls_conn_sign_done(c, &f.out, cv + 8, l - 8), 0, "7: sign_done");
    const uint8_t *flight = V(&f, "server_encrypted_flight_record", &l2);
    is_mem(f.out.base, f.out.len, flight, l2, "7: encrypted flight == RFC 8448");
    kl_buf_reset(&want);
    const uint8_t *ccs = V(&f, "client_change_cipher_spec_record", &l);
    if (kl_buf_append(&want, ccs, l) != 0)
        diag("append");
    const uint8_t *cfin = V(&f, "client_finished_record", &l);
    if (kl_buf_append(&want, cfin, l) != 0)
        diag("append");
    kl_buf_reset(&f.out);
    is_int(feed(c, &f, want.base, want.len, &n), 0, "7: client CCS ignored, Finished accepted");
    ok(tls_conn_established(c), "7: established");
    const uint8_t *alert = V(&f, "client_alert_record", &l);
    is_int(feed(c, &f, alert, l, &n), KL_ERR_CLOSED, "7: client close_notify");
    tls_conn_free(c);

    /* A second client CCS is an unexpected record. */
    c = tls_conn_new(&f.cfg, 3);
    kl_buf_reset(&f.out);
    chr = V(&f, "client_hello_record", &l);
    is_int(feed(c, &f, chr, l, &n), KL_ERR_ASYNC, "7b: ClientHello");
    is_int(tls_conn_sign_done(c, &f.out, cv + 8, 128), 0, "7b: sign_done");
    kl_buf_reset(&want);
    for (int i = 0; i < 2; i++) {
        if (kl_buf_append(&want, ccs, 6) != 0)
            diag("append");
    }
    kl_buf_reset(&f.out);
    is_int(feed(c, &f, want.base, want.len, &n), KL_ERR_UNEXPECTED_MESSAGE, "7b: two CCS → unexpected_message");
    ok(f.out.len > 0 && f.out.base[0] == 23, "7b: alert sent, protected");
    tls_conn_free(c);

    /* CCS before the first ClientHello. */
    c = tls_conn_new(&f.cfg, 4);
    kl_buf_reset(&f.out);
    is_int(feed(c, &f, ccs, 6, &n), KL_ERR_UNEXPECTED_MESSAGE, "CCS before ClientHello → unexpected_message");
    is_int(plain_alert(&f.out), KL_ALERT_UNEXPECTED_MESSAGE, "plaintext unexpected_message alert");
    tls_conn_free(c);
    kl_buf_dispose(&want);
    fx_free(&f);
}

/* ---- RFC 8448 section 5: HelloRetryRequest ---- */

static void test_rfc8448_hrr(void)
{
    struct fx f;
    size_t l, l2, n, hl;
    uint8_t th[32];
    struct tls_sign_request req;
    fx_init(&f, "hello-retry-request.txt", 1);
    /* Inject NSS's cookie so the HRR and everything after it are byte-identical; the engine's own
     * HMAC cookie is tested below with the trace's ClientHello2 rebuilt around it. */
    const uint8_t *hrr = V(&f, "hello_retry_request", &hl);
    f.hooks.hrr_cookie = hrr + hl - 6 - 114;
    f.hooks.hrr_cookie_len = 114;
    f.cfg.groups[0] = TLS_GROUP_SECP256R1; /* the trace's server only takes P-256 */
    f.cfg.n_groups = 1;
    struct tls_conn *c = tls_conn_new(&f.cfg, 5);
    const uint8_t *ch1 = V(&f, "client_hello_1_record", &l);
    is_int(feed(c, &f, ch1, l, &n), 0, "5: ClientHello1 → HelloRetryRequest, wait for ClientHello2");
    const uint8_t *hrrr = V(&f, "hello_retry_request_record", &l2);
    is_mem(f.out.base, f.out.len, hrrr, l2, "5: HelloRetryRequest record == RFC 8448 (injected cookie)");
    kl_buf_reset(&f.out);
    const uint8_t *ch2 = V(&f, "client_hello_record", &l);
    is_int(feed(c, &f, ch2, l, &n), KL_ERR_ASYNC, "5: ClientHello2 → ASYNC");
    const uint8_t *shr = V(&f, "server_hello_record", &l2);
    is_mem(f.out.base, f.out.len, shr, l2, "5: ServerHello (P-256) == RFC 8448");
    is_int(tls_conn_sign_request(c, &req), 0, "5: sign request");
    /* message_hash replaces ClientHello1 in the transcript. */
    {
        uint8_t ch1h[32], mh[36];
        size_t cl;
        const uint8_t *c1 = V(&f, "client_hello_1", &cl);
        struct crypto_hash_ctx h;
        if (crypto_digest(CRYPTO_HASH_SHA256, ch1h, c1, cl) != 0 || crypto_hash_ctx_init(&h, CRYPTO_HASH_SHA256) != 0)
            diag("hash");
        mh[0] = 254;
        mh[1] = 0;
        mh[2] = 0;
        mh[3] = 32;
        memcpy(mh + 4, ch1h, 32);
        static const char *const rest[] = {"hello_retry_request", "client_hello", "server_hello",
                                           "encrypted_extensions", "certificate"};
        if (crypto_hash_ctx_update(&h, mh, 36) != 0)
            diag("hash");
        for (size_t i = 0; i < 5; i++) {
            const uint8_t *m = V(&f, rest[i], &cl);
            if (crypto_hash_ctx_update(&h, m, cl) != 0)
                diag("hash");
        }
        if (crypto_hash_ctx_peek(&h, th) != 0)
            diag("hash");
        crypto_hash_ctx_dispose(&h);
    }
    is_mem(req.transcript_hash, req.transcript_hash_len, th, 32,
           "5: hash = SHA-256(message_hash ‖ HRR ‖ CH2 ‖ SH ‖ EE ‖ Certificate)");
    const uint8_t *cv = V(&f, "certificate_verify", &l);
    kl_buf_reset(&f.out);
    is_int(tls_conn_sign_done(c, &f.out, cv + 8, l - 8), 0, "5: sign_done");
    const uint8_t *flight = V(&f, "server_encrypted_flight_record", &l2);
    is_mem(f.out.base, f.out.len, flight, l2, "5: encrypted flight == RFC 8448");
    const uint8_t *cfin = V(&f, "client_finished_record", &l);
    is_int(feed(c, &f, cfin, l, &n), 0, "5: client Finished accepted");
    ok(tls_conn_established(c), "5: established");
    is_int(tls_conn_group(c), TLS_GROUP_SECP256R1, "5: group secp256r1");
    ok(strstr(trace_log, "HelloRetryRequest") != NULL, "5: trace has HelloRetryRequest");
    tls_conn_free(c);

    /* Without the injected cookie: our HMAC cookie. NSS's cookie no longer verifies. */
    f.hooks.hrr_cookie = NULL;
    c = tls_conn_new(&f.cfg, 6);
    kl_buf_reset(&f.out);
    ch1 = V(&f, "client_hello_1_record", &l);
    is_int(feed(c, &f, ch1, l, &n), 0, "5b: HRR with our cookie");
    /* Find our cookie in the HRR: extension 002c inside the ServerHello-format message. */
    uint8_t cookie_ext[256];
    size_t ck_len = 0;
    {
        const uint8_t *p = f.out.base + 5; /* HRR message */
        size_t o = 4 + 2 + 32, ml = f.out.len - 5;
        o += 1 + p[o];
        o += 3;
        size_t end = ml;
        o += 2;
        while (o + 4 <= end) {
            uint16_t t = (uint16_t)(p[o] << 8 | p[o + 1]);
            size_t el = 4 + ((size_t)p[o + 2] << 8 | p[o + 3]);
            if (t == EXT_COOKIE && el <= sizeof(cookie_ext)) {
                memcpy(cookie_ext, p + o, el);
                ck_len = el;
            }
            o += el;
        }
    }
    ok(ck_len > 4 && ck_len != 4 + 116, "5b: HRR carries our own cookie");
    int al;
    ch2 = V(&f, "client_hello", &l);
    /* The trace's CH2 echoes NSS's cookie: illegal_parameter. */
    is_int(feed(c, &f, V(&f, "client_hello_record", &l2), l2, &n), KL_ERR_ILLEGAL_PARAMETER,
           "5b: ClientHello2 with a cookie we did not make → illegal_parameter");
    is_int(plain_alert(&f.out), KL_ALERT_ILLEGAL_PARAMETER, "5b: plaintext illegal_parameter alert");
    tls_conn_free(c);
    /* The trace's CH2 with our cookie substituted: the handshake goes on. */
    uint8_t rec[2048];
    size_t rl = ch_record(rec, ch2, l, EXT_COOKIE, cookie_ext, ck_len);
    c = tls_conn_new(&f.cfg, 7);
    kl_buf_reset(&f.out);
    is_int(feed(c, &f, ch1, V(&f, "client_hello_1_record", &l2) ? l2 : 0, &n), 0, "5c: HRR");
    kl_buf_reset(&f.out);
    is_int(feed(c, &f, rec, rl, &n), KL_ERR_ASYNC, "5c: ClientHello2 with our cookie → ServerHello, ASYNC");
    is_mem(f.out.base, f.out.len, shr, V(&f, "server_hello_record", &l2) ? l2 : 0, "5c: same ServerHello as the trace");
    tls_conn_free(c);
    /* The same cookie under another cookie key: refused. */
    f.cfg.cookie_key[0] ^= 1;
    c = tls_conn_new(&f.cfg, 8);
    is_int(feed(c, &f, ch1, l2 = 0, &n), 0, "noop");
    (void)l2;
    {
        size_t c1l;
        const uint8_t *c1r = V(&f, "client_hello_1_record", &c1l);
        is_int(feed(c, &f, c1r, c1l, &n), 0, "5d: HRR");
        is_int(feed(c, &f, rec, rl, &n), KL_ERR_ILLEGAL_PARAMETER, "5d: cookie under another key → illegal_parameter");
    }
    tls_conn_free(c);
    f.cfg.cookie_key[0] ^= 1;

    /* CH2 variants that §4.1.2 forbids. */
    {
        size_t c1l;
        const uint8_t *c1r = V(&f, "client_hello_1_record", &c1l);
        struct {
            const char *name;
            uint16_t drop;
            uint8_t extra[200];
            size_t extra_len;
        } v[] = {

            {"5e: CH2 with an x25519 share instead → illegal_parameter",
             EXT_KEY_SHARE,
             {0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, 1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
              12,   13,   14,   15,   16,   17,   18,   19,   20,   21,   22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32},
             42},
            {"5e: CH2 with early_data → illegal_parameter", 0xffff, {0x00, 0x2a, 0x00, 0x00}, 4},
            {"5e: CH2 with a new ALPN → illegal_parameter",
             0xffff,
             {0x00, 0x10, 0x00, 0x05, 0x00, 0x03, 0x02, 'h', '2'},
             9},
            {"5e: CH2 without the cookie → illegal_parameter", EXT_COOKIE, {0}, 0},
        };
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
            uint8_t r2[2048], tmp[2048];
            /* Start from the CH2 with our cookie (rec), then apply the variant. */
            size_t tl = rl - 5;
            memcpy(tmp, rec + 5, tl);
            size_t r2l = ch_record(r2, tmp, tl, v[i].drop, v[i].extra, v[i].extra_len);
            c = tls_conn_new(&f.cfg, 9);
            kl_buf_reset(&f.out);
            is_int(feed(c, &f, c1r, c1l, &n), 0, "HRR");
            kl_buf_reset(&f.out);
            int r = feed(c, &f, r2, r2l, &n);
            is_int(r, KL_ERR_ILLEGAL_PARAMETER, v[i].name);
            tls_conn_free(c);
        }
        {
            uint8_t r2[2048], tmp[2048];
            size_t tl = rl - 5;
            memcpy(tmp, rec + 5, tl);
            size_t r2l = ch_record(r2, tmp, tl, EXT_KEY_SHARE, NULL, 0);
            c = tls_conn_new(&f.cfg, 9);
            is_int(feed(c, &f, c1r, c1l, &n), 0, "HRR");
            is_int(feed(c, &f, r2, r2l, &n), KL_ERR_ALERT(KL_ALERT_MISSING_EXTENSION),
                   "5e: CH2 without key_share → missing_extension");
            tls_conn_free(c);
        }
        /* ClientHello1 again as CH2 (still no P-256 share): a second HRR never happens. */
        c = tls_conn_new(&f.cfg, 10);
        is_int(feed(c, &f, c1r, c1l, &n), 0, "HRR");
        is_int(feed(c, &f, c1r, c1l, &n), KL_ERR_ILLEGAL_PARAMETER, "5f: no second HelloRetryRequest");
        tls_conn_free(c);
    }
    (void)al;
    fx_free(&f);
}

/* ---- malformed ClientHellos against the engine ---- */

static void test_client_hello_negative(void)
{
    struct fx f;
    size_t l, chl;
    int al, ret;
    uint8_t rec[4096], ext[512];
    fx_init(&f, "simple-1rtt.txt", 1);
    const uint8_t *chr = V(&f, "client_hello_record", &l);
    const uint8_t *ch = V(&f, "client_hello", &chl);

    /* Every length field ±1 (record, handshake header, then the ClientHello's own). */
    {
        size_t fields[64][2], nf = 0, o;
        const uint8_t *b = chr + 9;
        fields[nf][0] = 3, fields[nf++][1] = 2; /* record length */
        fields[nf][0] = 6, fields[nf++][1] = 3; /* handshake length (u24, low 2 bytes mutated) */
        o = 34;
        fields[nf][0] = 9 + o, fields[nf++][1] = 1;
        o += 1 + b[o];
        fields[nf][0] = 9 + o, fields[nf++][1] = 2;
        o += 2 + ((size_t)b[o] << 8 | b[o + 1]);
        fields[nf][0] = 9 + o, fields[nf++][1] = 1;
        o += 1 + b[o];
        fields[nf][0] = 9 + o, fields[nf++][1] = 2;
        o += 2;
        while (o + 4 <= chl - 4 && nf < 64) {
            fields[nf][0] = 9 + o + 2, fields[nf++][1] = 2;
            o += 4 + ((size_t)b[o + 2] << 8 | b[o + 3]);
        }
        size_t bad = 0, waits = 0;
        for (size_t i = 0; i < nf; i++) {
            for (int d = -1; d <= 1; d += 2) {
                memcpy(rec, chr, l);
                size_t off = fields[i][0] + (fields[i][1] == 3 ? 1 : 0), w = fields[i][1] == 3 ? 2 : fields[i][1];
                unsigned v = w == 1 ? rec[off] : (unsigned)(rec[off] << 8 | rec[off + 1]);
                v = (v + (unsigned)d) & (w == 1 ? 0xffu : 0xffffu);
                if (w == 1)
                    rec[off] = (uint8_t)v;
                else {
                    rec[off] = (uint8_t)(v >> 8);
                    rec[off + 1] = (uint8_t)v;
                }
                ret = try_ch(&f, rec, l, &al);
                if (ret == 0 && i < 2 && f.out.len == 0) {
                    waits++; /* a longer record/message: the engine waits for the rest */
                    continue;
                }
                if (!((ret == KL_ERR_DECODE && al == KL_ALERT_DECODE_ERROR) ||
                      (ret == KL_ERR_ILLEGAL_PARAMETER && al == KL_ALERT_ILLEGAL_PARAMETER) ||
                      (i < 2 && ret == KL_ERR_UNEXPECTED_MESSAGE && al == KL_ALERT_UNEXPECTED_MESSAGE))) {
                    bad++;
                    diag("length field %zu (offset %zu) %+d: ret %d alert %d", i, fields[i][0], d, ret, al);
                }
            }
        }
        char name[128];
        snprintf(name, sizeof(name), "%zu length fields x ±1: each refused with its alert (%zu waits for more)", nf,
                 waits);
        ok(bad == 0 && nf > 10, name);
    }

    /* Every extension duplicated. */
    {
        size_t dups = 0, n_ext = 0;
        uint16_t types[] = {0x0000, 0xff01, 0x000a, 0x0033, 0x002b, 0x000d, 0x002d, 0x001c};
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
            size_t el = ch_ext(ext, ch, chl, types[i]);
            if (el == 0)
                continue;
            n_ext++;
            size_t rl = ch_record(rec, ch, chl, 0xfffe, ext, el);
            ret = try_ch(&f, rec, rl, &al);
            if (ret == KL_ERR_ILLEGAL_PARAMETER && al == KL_ALERT_ILLEGAL_PARAMETER)
                dups++;
            else
                diag("dup %04x: %d %d", types[i], ret, al);
        }
        ok(n_ext == 8 && dups == n_ext, "every extension of the 3 ClientHello duplicated → illegal_parameter");
    }
    struct {
        const char *name;
        uint16_t drop;
        uint8_t extra[100];
        size_t extra_len;
        int want;
    } cases[] = {
        {"no supported_versions → protocol_version",
         EXT_SUPPORTED_VERSIONS,
         {0},
         0,
         KL_ERR_ALERT(KL_ALERT_PROTOCOL_VERSION)},
        {"supported_versions without 0x0304 → protocol_version",
         EXT_SUPPORTED_VERSIONS,
         {0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x03, 0x03, 0x02},
         9,
         KL_ERR_ALERT(KL_ALERT_PROTOCOL_VERSION)},
        {"no signature_algorithms → missing_extension",
         EXT_SIGNATURE_ALGORITHMS,
         {0},
         0,
         KL_ERR_ALERT(KL_ALERT_MISSING_EXTENSION)},
        {"no key_share → missing_extension", EXT_KEY_SHARE, {0}, 0, KL_ERR_ALERT(KL_ALERT_MISSING_EXTENSION)},
        {"x25519 share but x25519 not in supported_groups → illegal_parameter",
         EXT_SUPPORTED_GROUPS,
         {0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x01, 0x00},
         8,
         KL_ERR_ILLEGAL_PARAMETER},
        {"signature_algorithms without RSA-PSS → handshake_failure",
         EXT_SIGNATURE_ALGORITHMS,
         {0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03},
         8,
         KL_ERR_HANDSHAKE_FAILURE},
        {"pre_shared_key not last → illegal_parameter",
         0xffff,
         {0x00, 0x29, 0x00, 0x2c, 0x00, 0x07, 0x00, 0x01, 0xaa, 0x00, 0x00, 0x00, 0x00, 0x00, 0x21, 0x20, 1,  2,
          3,    4,    5,    6,    7,    8,    9,    10,   11,   12,   13,   14,   15,   16,   17,   18,   19, 20,
          21,   22,   23,   24,   25,   26,   27,   28,   29,   30,   31,   32,   0xfa, 0xfa, 0x00, 0x00},
         52,
         KL_ERR_ILLEGAL_PARAMETER},
        {"pre_shared_key last: ignored, full handshake",
         0xffff,
         {0x00, 0x29, 0x00, 0x2c, 0x00, 0x07, 0x00, 0x01, 0xaa, 0x00, 0x00, 0x00, 0x00, 0x00, 0x21, 0x20,
          1,    2,    3,    4,    5,    6,    7,    8,    9,    10,   11,   12,   13,   14,   15,   16,
          17,   18,   19,   20,   21,   22,   23,   24,   25,   26,   27,   28,   29,   30,   31,   32},
         48,
         KL_ERR_ASYNC},
        {"ALPN without overlap → no_application_protocol",
         0xffff,
         {0x00, 0x10, 0x00, 0x05, 0x00, 0x03, 0x02, 'h', '3'},
         9,
         KL_ERR_ALERT(KL_ALERT_NO_APPLICATION_PROTOCOL)},
        {"x25519 share of 31 bytes → illegal_parameter",
         EXT_KEY_SHARE,
         {0x00, 0x33, 0x00, 0x25, 0x00, 0x23, 0x00, 0x1d, 0x00, 0x1f, 1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
          12,   13,   14,   15,   16,   17,   18,   19,   20,   21,   22, 23, 24, 25, 26, 27, 28, 29, 30, 31},
         41,
         KL_ERR_ILLEGAL_PARAMETER},
        {"x25519 all-zero share → illegal_parameter",
         EXT_KEY_SHARE,
         {0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20},
         42,
         KL_ERR_ILLEGAL_PARAMETER},
    };
    f.cfg.alpn[0] = "h2";
    f.cfg.n_alpn = 1;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t rl = ch_record(rec, ch, chl, cases[i].drop, cases[i].extra, cases[i].extra_len);
        ret = try_ch(&f, rec, rl, &al);
        is_int(ret, cases[i].want, cases[i].name);
        if (kl_err_is_alert(cases[i].want))
            is_int(al, kl_err_alert(cases[i].want), "  ... and that alert is sent in plaintext");
    }
    f.cfg.n_alpn = 0;

    /* No group in common: secp521r1 and ffdhe2048 only, with a secp521r1 share. */
    {
        uint8_t tmp[4096];
        static const uint8_t groups[] = {0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x19, 0x01, 0x00};
        static const uint8_t share[] = {0x00, 0x33, 0x00, 0x08, 0x00, 0x06, 0x00, 0x19, 0x00, 0x02, 0x04, 0x00};
        size_t tl = ch_record(tmp, ch, chl, EXT_SUPPORTED_GROUPS, groups, sizeof(groups));
        size_t rl = ch_record(rec, tmp + 5, tl - 5, EXT_KEY_SHARE, share, sizeof(share));
        ret = try_ch(&f, rec, rl, &al);
        is_int(ret, KL_ERR_HANDSHAKE_FAILURE, "no group in common → handshake_failure");
        is_int(al, KL_ALERT_HANDSHAKE_FAILURE, "  handshake_failure alert");
    }
    /* No common suite. */
    f.cfg.suites[0] = TLS_CHACHA20_POLY1305_SHA256; /* the trace's client offers 1301 1303 1302: take 1303 */
    ret = try_ch(&f, chr, l, &al);
    is_int(ret, KL_ERR_ASYNC, "server preference: ChaCha20 chosen");
    memcpy(rec, chr, l);
    rec[9 + 34 + 1 + 2 + 3] = 0x04; /* 1303 → 1304 (unknown) */
    f.cfg.suites[0] = TLS_CHACHA20_POLY1305_SHA256;
    ret = try_ch(&f, rec, l, &al);
    is_int(ret, KL_ERR_HANDSHAKE_FAILURE, "no cipher suite in common → handshake_failure");
    is_int(al, KL_ALERT_HANDSHAKE_FAILURE, "  handshake_failure alert");
    f.cfg.suites[0] = TLS_AES_128_GCM_SHA256;

    /* Compression methods other than [0]. */
    memcpy(rec, chr, l);
    rec[9 + 34 + 1 + 2 + 6 + 1] = 1;
    ret = try_ch(&f, rec, l, &al);
    is_int(ret, KL_ERR_ILLEGAL_PARAMETER, "compression [1] → illegal_parameter");
    is_int(al, KL_ALERT_ILLEGAL_PARAMETER, "  alert");

    /* A handshake message after the ClientHello in the same record (spans a key change). */
    memcpy(rec, chr, l);
    memcpy(rec + l, "\x14\x00\x00\x00", 4);
    rec[3] = (uint8_t)((l - 5 + 4) >> 8);
    rec[4] = (uint8_t)(l - 5 + 4);
    ret = try_ch(&f, rec, l + 4, &al);
    is_int(ret, KL_ERR_UNEXPECTED_MESSAGE, "data after ClientHello in its record → unexpected_message");
    /* The ServerHello is out and the handshake key is on: the alert is protected. */
    ok(f.out.len > 7 && f.out.base[f.out.len - 5 - 19] == 23, "  alert sent under the server handshake key");

    /* Other first messages, records. */
    static const uint8_t fin_first[] = {22, 3, 1, 0, 8, 20, 0, 0, 4, 1, 2, 3, 4};
    ret = try_ch(&f, fin_first, sizeof(fin_first), &al);
    is_int(ret, KL_ERR_UNEXPECTED_MESSAGE, "Finished as first message → unexpected_message");
    static const uint8_t app_first[] = {23, 3,  3,  0,  20, 1,  2,  3,  4,  5,  6,  7, 8,
                                        9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
    ret = try_ch(&f, app_first, sizeof(app_first), &al);
    is_int(ret, KL_ERR_UNEXPECTED_MESSAGE, "application_data before the handshake → unexpected_message");
    static const uint8_t big[] = {22, 3, 1, 0x40, 0x01};
    ret = try_ch(&f, big, sizeof(big), &al);
    is_int(ret, KL_ERR_RECORD_OVERFLOW, "plaintext record of 2^14+1 → record_overflow");
    is_int(al, KL_ALERT_RECORD_OVERFLOW, "  alert");
    static const uint8_t alert_first[] = {21, 3, 1, 0, 2, 2, 40};
    ret = try_ch(&f, alert_first, sizeof(alert_first), &al);
    is_int(ret, KL_ERR_PEER_ALERT(40), "peer alert → KL_ERR_PEER_ALERT");
    is_int(al, -1, "  no alert answered");
    f.cfg.max_handshake_message = 100;
    ret = try_ch(&f, chr, l, &al);
    is_int(ret, KL_ERR_DECODE, "ClientHello over max_handshake_message → decode_error");
    f.cfg.max_handshake_message = 0;
    /* A ClientHello header announcing 16 MiB: refused at once, nothing buffered. */
    static const uint8_t huge[] = {22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff};
    ret = try_ch(&f, huge, sizeof(huge), &al);
    is_int(ret, KL_ERR_DECODE, "ClientHello length 2^24-1 → decode_error before buffering");
    /* A TLS 1.2 ClientHello (no extensions). */
    {
        uint8_t r12[200];
        size_t pre = 34 + 1 + 2 + 6 + 2;
        r12[0] = 22, r12[1] = 3, r12[2] = 1, r12[3] = 0, r12[4] = (uint8_t)(pre + 4);
        r12[5] = 1, r12[6] = 0, r12[7] = 0, r12[8] = (uint8_t)pre;
        memcpy(r12 + 9, ch + 4, pre);
        ret = try_ch(&f, r12, 9 + pre, &al);
        is_int(ret, KL_ERR_ALERT(KL_ALERT_PROTOCOL_VERSION), "TLS 1.2 ClientHello → protocol_version");
    }
    fx_free(&f);
}

/* ---- states after the ClientHello ---- */

static struct tls_conn *to_wait_finished(struct fx *f)
{
    size_t l, n;
    struct tls_conn *c = tls_conn_new(&f->cfg, 11);
    const uint8_t *chr = V(f, "client_hello_record", &l);
    if (feed(c, f, chr, l, &n) != KL_ERR_ASYNC)
        diag("ClientHello failed");
    const uint8_t *cv = V(f, "certificate_verify", &l);
    if (tls_conn_sign_done(c, &f->out, cv + 8, l - 8) != 0)
        diag("sign_done failed");
    kl_buf_reset(&f->out);
    return c;
}

/* The alert in out, decrypted with the given trace key. */
static int enc_alert(struct fx *f, const char *key, const char *iv)
{
    struct rec_dir d;
    struct kl_buf pt;
    uint8_t type = 0;
    int ret = -1;
    kl_buf_init(&pt, 1 << 16);
    dir_keys(f, &d, 0, key, iv);
    if (open_all(&d, f->out.base, f->out.len, &pt, &type) == 1 && type == REC_TYPE_ALERT && pt.len == 2 &&
        pt.base[0] == 2)
        ret = pt.base[1];
    rec_dir_dispose(&d);
    kl_buf_dispose(&pt);
    return ret;
}

static void test_states_negative(void)
{
    struct fx f;
    size_t l, n;
    struct tls_conn *c;
    struct rec_dir cw;
    struct kl_buf rec;
    fx_init(&f, "simple-1rtt.txt", 1);
    kl_buf_init(&rec, 1 << 16);
    const uint8_t *cfin = V(&f, "client_finished_record", &l);
    uint8_t bad[256];

    /* Bad Finished → decrypt_error, alert under the server's application key (our current write key). */
    size_t vl;
    const uint8_t *cf = V(&f, "client_finished", &vl);
    uint8_t fin[64];
    memcpy(fin, cf, vl);
    fin[10] ^= 1;
    dir_keys(&f, &cw, 1, "client_handshake_key", "client_handshake_iv");
    is_int(rec_seal(&cw, &rec, REC_TYPE_HANDSHAKE, fin, vl, 0), 0, "seal bad Finished");
    c = to_wait_finished(&f);
    is_int(feed(c, &f, rec.base, rec.len, &n), KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR), "bad Finished → decrypt_error");
    is_int(enc_alert(&f, "server_application_key", "server_application_iv"), KL_ALERT_DECRYPT_ERROR,
           "  decrypt_error alert under the server application key");
    /* Sticky error. */
    kl_buf_reset(&f.out);
    is_int(feed(c, &f, cfin, l, &n), KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR), "  later input: the same error");
    is_int(n, 0, "  nothing read after failure");
    is_int(f.out.len, 0, "  nothing sent after failure");
    is_int(tls_conn_send(c, &f.out, (const uint8_t *)"x", 1), KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR),
           "  send: the same error");
    is_int(tls_conn_sign_done(c, &f.out, fin, 1), KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR), "  sign_done: the same error");
    tls_conn_free(c);
    rec_dir_dispose(&cw);

    /* Finished of the wrong length → decode_error. */
    kl_buf_reset(&rec);
    dir_keys(&f, &cw, 1, "client_handshake_key", "client_handshake_iv");
    static const uint8_t short_fin[] = {20, 0, 0, 4, 1, 2, 3, 4};
    is_int(rec_seal(&cw, &rec, REC_TYPE_HANDSHAKE, short_fin, sizeof(short_fin), 0), 0, "seal");
    c = to_wait_finished(&f);
    is_int(feed(c, &f, rec.base, rec.len, &n), KL_ERR_DECODE, "short Finished → decode_error");
    tls_conn_free(c);
    rec_dir_dispose(&cw);

    /* Application data before the client Finished → unexpected_message. */
    kl_buf_reset(&rec);
    dir_keys(&f, &cw, 1, "client_handshake_key", "client_handshake_iv");
    is_int(rec_seal(&cw, &rec, REC_TYPE_APPLICATION_DATA, (const uint8_t *)"early", 5, 0), 0, "seal");
    c = to_wait_finished(&f);
    is_int(feed(c, &f, rec.base, rec.len, &n), KL_ERR_UNEXPECTED_MESSAGE,
           "application data before Finished → unexpected_message");
    is_int(enc_alert(&f, "server_application_key", "server_application_iv"), KL_ALERT_UNEXPECTED_MESSAGE, "  alert");
    tls_conn_free(c);
    rec_dir_dispose(&cw);

    /* A ClientHello where Finished is expected → unexpected_message. */
    kl_buf_reset(&rec);
    dir_keys(&f, &cw, 1, "client_handshake_key", "client_handshake_iv");
    size_t chl;
    const uint8_t *ch = V(&f, "client_hello", &chl);
    is_int(rec_seal(&cw, &rec, REC_TYPE_HANDSHAKE, ch, chl, 0), 0, "seal");
    c = to_wait_finished(&f);
    is_int(feed(c, &f, rec.base, rec.len, &n), KL_ERR_UNEXPECTED_MESSAGE,
           "ClientHello in EXPECT_CLIENT_FINISHED → unexpected_message");
    tls_conn_free(c);
    rec_dir_dispose(&cw);

    /* A plaintext handshake record once keys are on → unexpected_message. */
    c = to_wait_finished(&f);
    size_t chrl;
    const uint8_t *chr = V(&f, "client_hello_record", &chrl);
    is_int(feed(c, &f, chr, chrl, &n), KL_ERR_UNEXPECTED_MESSAGE,
           "plaintext handshake after keys → unexpected_message");
    tls_conn_free(c);

    /* Tampered ciphertext → bad_record_mac. */
    memcpy(bad, cfin, l);
    bad[20] ^= 0x80;
    c = to_wait_finished(&f);
    is_int(feed(c, &f, bad, l, &n), KL_ERR_BAD_RECORD_MAC, "tampered Finished record → bad_record_mac");
    is_int(enc_alert(&f, "server_application_key", "server_application_iv"), KL_ALERT_BAD_RECORD_MAC, "  alert");
    tls_conn_free(c);
    /* Tampered header (the AAD). */
    memcpy(bad, cfin, l);
    bad[2] = 1; /* 0303 → 0301 is allowed by the header check but changes the AAD */
    c = to_wait_finished(&f);
    is_int(feed(c, &f, bad, l, &n), KL_ERR_BAD_RECORD_MAC, "tampered record header → bad_record_mac");
    tls_conn_free(c);

    /* Oversized protected record → record_overflow. */
    static const uint8_t big[] = {23, 3, 3, 0x41, 0x01};
    c = to_wait_finished(&f);
    is_int(feed(c, &f, big, sizeof(big), &n), KL_ERR_RECORD_OVERFLOW, "ciphertext of 2^14+257 → record_overflow");
    tls_conn_free(c);

    /* A client without keys aborting in plaintext after our flight: its alert is reported, not answered. */
    static const uint8_t plain_alert_rec[] = {21, 3, 3, 0, 2, 2, 42};
    c = to_wait_finished(&f);
    is_int(feed(c, &f, plain_alert_rec, sizeof(plain_alert_rec), &n), KL_ERR_PEER_ALERT(42),
           "plaintext bad_certificate from the client → KL_ERR_PEER_ALERT(42)");
    is_int(f.out.len, 0, "  no alert answered");
    tls_conn_free(c);
    /* A malformed plaintext alert there: decode_error. */
    static const uint8_t plain_alert_bad[] = {21, 3, 3, 0, 3, 2, 42, 0};
    c = to_wait_finished(&f);
    is_int(feed(c, &f, plain_alert_bad, sizeof(plain_alert_bad), &n), KL_ERR_DECODE, "3-byte alert → decode_error");
    tls_conn_free(c);

    /* Signer failure → internal_error under the server handshake key. */
    c = tls_conn_new(&f.cfg, 12);
    kl_buf_reset(&f.out);
    is_int(feed(c, &f, chr, chrl, &n), KL_ERR_ASYNC, "ClientHello");
    kl_buf_reset(&f.out);
    is_int(tls_conn_sign_done(c, &f.out, NULL, 0), KL_ERR_INTERNAL, "sig NULL → internal_error");
    is_int(enc_alert(&f, "server_handshake_key", "server_handshake_iv"), KL_ALERT_INTERNAL_ERROR,
           "  internal_error alert under the server handshake key");
    struct tls_sign_request req;
    ok(tls_conn_sign_request(c, &req) != 0, "  no sign request after failure");
    tls_conn_free(c);

    /* API misuse. */
    c = tls_conn_new(&f.cfg, 13);
    ok(tls_conn_sign_done(c, &f.out, (const uint8_t *)"x", 1) == KL_ERR_INVALID, "sign_done before ClientHello");
    ok(tls_conn_send(c, &f.out, (const uint8_t *)"x", 1) == KL_ERR_INVALID, "send before established");
    ok(tls_conn_sign_request(c, &req) == KL_ERR_INVALID, "sign_request before ClientHello");
    tls_conn_free(c);

    /* Established: CCS → unexpected_message; a Certificate message → unexpected_message. */
    c = to_wait_finished(&f);
    is_int(feed(c, &f, cfin, l, &n), 0, "Finished");
    static const uint8_t ccs[] = {20, 3, 3, 0, 1, 1};
    is_int(feed(c, &f, ccs, sizeof(ccs), &n), KL_ERR_UNEXPECTED_MESSAGE, "CCS after Finished → unexpected_message");
    tls_conn_free(c);
    c = to_wait_finished(&f);
    is_int(feed(c, &f, cfin, l, &n), 0, "Finished");
    struct rec_dir caw;
    dir_secret(&f, &caw, 1, "client_application_traffic_secret_0");
    kl_buf_reset(&rec);
    is_int(rec_seal(&caw, &rec, REC_TYPE_HANDSHAKE, (const uint8_t *)"\x0b\x00\x00\x04\x00\x00\x00\x00", 8, 0), 0,
           "seal");
    is_int(feed(c, &f, rec.base, rec.len, &n), KL_ERR_UNEXPECTED_MESSAGE,
           "post-handshake Certificate → unexpected_message");
    tls_conn_free(c);
    rec_dir_dispose(&caw);
    /* KeyUpdate with a bad value → illegal_parameter; KeyUpdate followed by data in the same record. */
    c = to_wait_finished(&f);
    is_int(feed(c, &f, cfin, l, &n), 0, "Finished");
    dir_secret(&f, &caw, 1, "client_application_traffic_secret_0");
    kl_buf_reset(&rec);
    is_int(rec_seal(&caw, &rec, REC_TYPE_HANDSHAKE, (const uint8_t *)"\x18\x00\x00\x01\x02", 5, 0), 0, "seal");
    is_int(feed(c, &f, rec.base, rec.len, &n), KL_ERR_ILLEGAL_PARAMETER, "KeyUpdate(2) → illegal_parameter");
    tls_conn_free(c);
    rec_dir_dispose(&caw);
    c = to_wait_finished(&f);
    is_int(feed(c, &f, cfin, l, &n), 0, "Finished");
    dir_secret(&f, &caw, 1, "client_application_traffic_secret_0");
    kl_buf_reset(&rec);
    is_int(rec_seal(&caw, &rec, REC_TYPE_HANDSHAKE, (const uint8_t *)"\x18\x00\x00\x01\x00\x18\x00\x00\x01\x00", 10, 0),
           0, "seal");
    is_int(feed(c, &f, rec.base, rec.len, &n), KL_ERR_UNEXPECTED_MESSAGE,
           "two KeyUpdates in one record (spans a key change) → unexpected_message");
    tls_conn_free(c);
    rec_dir_dispose(&caw);
    /* App data into a full app buffer: the engine stops and leaves the record unread. */
    c = to_wait_finished(&f);
    is_int(feed(c, &f, cfin, l, &n), 0, "Finished");
    {
        struct kl_buf tiny, o2;
        kl_buf_init(&tiny, 10);
        kl_buf_init(&o2, 1 << 16);
        const uint8_t *cad = V(&f, "client_application_data_record", &l);
        size_t nn = l;
        is_int(tls_conn_input(c, &o2, &tiny, cad, &nn), 0, "app buffer too small: 0");
        is_int(nn, 0, "  record left unread (backpressure)");
        kl_buf_dispose(&tiny);
        kl_buf_dispose(&o2);
    }
    tls_conn_free(c);

    kl_buf_dispose(&rec);
    fx_free(&f);
}

/* ---- certificate, SNI and ALPN selection ---- */

static void test_selection(void)
{
    struct fx f;
    size_t chl, rl;
    uint8_t rec[4096], ext[300];
    struct tls_sign_request req;
    fx_init(&f, "simple-1rtt.txt", 0);
    const uint8_t *ch = V(&f, "client_hello", &chl);
    /* certs[0]: RSA for "rsa" (the default); certs[1]: ECDSA for "server" and "*.example.com". */
    f.certs[1].key_name = "ecdsa";
    f.certs[1].chain[0] = f.ecdsa_der;
    f.certs[1].chain_len[0] = f.ecdsa_der_len;
    f.certs[1].n_chain = 1;
    f.certs[1].schemes[0] = TLS_SIG_ECDSA_SECP256R1_SHA256;
    f.certs[1].n_schemes = 1;
    f.certs[1].names[0] = "server";
    f.certs[1].names[1] = "*.example.com";
    f.certs[1].n_names = 2;
    f.cfg.n_certs = 2;
    f.cfg.alpn[0] = "http/1.1";
    f.cfg.alpn[1] = "h2";
    f.cfg.n_alpn = 2;

    struct {
        const char *sni;
        int drop_sig;
        const char *want_key;
        const char *want_sni;
    } cases[] = {
        {"server", 0, "ecdsa", "server"},
        {"SERVER", 0, "ecdsa", "SERVER"},
        {"a.example.com", 0, "ecdsa", "a.example.com"},
        {"a.b.example.com", 0, "rsa", "a.b.example.com"},
        {"example.com", 0, "rsa", "example.com"},
        {"rsa", 0, "rsa", "rsa"},
        {"server", 1, "rsa", "server"}, /* the client takes RSA-PSS only: the RSA cert although the name is ECDSA's */
        {NULL, 0, "rsa", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t el = 0;
        if (cases[i].sni != NULL) {
            size_t sl = strlen(cases[i].sni);
            ext[0] = 0, ext[1] = 0, ext[2] = 0, ext[3] = (uint8_t)(sl + 5), ext[4] = 0, ext[5] = (uint8_t)(sl + 3);
            ext[6] = 0, ext[7] = 0, ext[8] = (uint8_t)sl;
            memcpy(ext + 9, cases[i].sni, sl);
            el = sl + 9;
        }
        if (cases[i].drop_sig) {
            /* replace signature_algorithms by rsa_pss_rsae_sha256 only: build in two steps */
            uint8_t tmp[4096];
            static const uint8_t sig[] = {0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x08, 0x04};
            size_t tl = ch_record(tmp, ch, chl, EXT_SIGNATURE_ALGORITHMS, sig, sizeof(sig));
            rl = ch_record(rec, tmp + 5, tl - 5, EXT_SERVER_NAME, ext, el);
        } else {
            rl = ch_record(rec, ch, chl, EXT_SERVER_NAME, ext, el);
        }
        struct tls_conn *c = tls_conn_new(&f.cfg, 20);
        size_t n = rl;
        kl_buf_reset(&f.out);
        int ret = tls_conn_input(c, &f.out, &f.app, rec, &n);
        char name[160];
        snprintf(name, sizeof(name), "SNI %s%s → key %s", cases[i].sni ? cases[i].sni : "(none)",
                 cases[i].drop_sig ? " (RSA-only client)" : "", cases[i].want_key);
        is_int(ret, KL_ERR_ASYNC, name);
        if (tls_conn_sign_request(c, &req) == 0) {
            ok(strcmp(req.key_name, cases[i].want_key) == 0, "  key chosen");
            ok(strcmp(req.server_name, cases[i].want_sni) == 0, "  server_name reported");
            is_int(req.scheme,
                   strcmp(cases[i].want_key, "rsa") == 0 ? TLS_SIG_RSA_PSS_RSAE_SHA256 : TLS_SIG_ECDSA_SECP256R1_SHA256,
                   "  scheme");
        }
        tls_conn_free(c);
    }

    /* ALPN: server preference. */
    static const uint8_t alpn[] = {0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c, 0x02, 'h', '2',
                                   0x08, 'h',  't',  't',  'p',  '/',  '1',  '.', '1'};
    rl = ch_record(rec, ch, chl, 0xffff, alpn, sizeof(alpn));
    struct tls_conn *c = tls_conn_new(&f.cfg, 21);
    size_t n = rl;
    is_int(tls_conn_input(c, &f.out, &f.app, rec, &n), KL_ERR_ASYNC, "ALPN offered h2,http/1.1");
    ok(strcmp(tls_conn_alpn(c), "http/1.1") == 0, "ALPN: server preference http/1.1");
    tls_conn_free(c);
    f.cfg.alpn[0] = "h2";
    f.cfg.alpn[1] = "http/1.1";
    c = tls_conn_new(&f.cfg, 22);
    n = rl;
    is_int(tls_conn_input(c, &f.out, &f.app, rec, &n), KL_ERR_ASYNC, "ALPN again");
    ok(strcmp(tls_conn_alpn(c), "h2") == 0, "ALPN: h2 when preferred");
    tls_conn_free(c);
    c = tls_conn_new(&f.cfg, 23);
    n = chl + 5;
    const uint8_t *chr = V(&f, "client_hello_record", &n);
    is_int(tls_conn_input(c, &f.out, &f.app, chr, &n), KL_ERR_ASYNC, "no ALPN offered");
    ok(strcmp(tls_conn_alpn(c), "") == 0, "ALPN: none");
    tls_conn_free(c);

    /* No certificate configured → handshake_failure. */
    f.cfg.n_certs = 0;
    c = tls_conn_new(&f.cfg, 24);
    n = chl + 5;
    is_int(tls_conn_input(c, &f.out, &f.app, chr, &n), KL_ERR_HANDSHAKE_FAILURE, "no certificate → handshake_failure");
    tls_conn_free(c);
    fx_free(&f);
}

/* ---- full handshakes with the test client ---- */

/* The signer's job, done here with libcrypto and the RFC 8448 RSA key (tests only). */
static EVP_PKEY *load_rsa_key(void)
{
    size_t len;
    uint8_t *pem = rfc8448_read_file("server-rsa-key.pem", &len);
    BIO *bio = pem != NULL ? BIO_new_mem_buf(pem, (int)len) : NULL;
    EVP_PKEY *k = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    free(pem);
    return k;
}

/* A fresh key and a self-signed certificate for CN=localhost (DER in *der, free()d by the caller). */
static EVP_PKEY *make_key_cert(const char *type, const char *param, uint8_t **der, size_t *der_len)
{
    /* EVP_PKEY_Q_keygen's variadic argument: the curve name for EC, the bit count for RSA, none for Ed25519. */
    EVP_PKEY *k = strcmp(type, "RSA") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                  : param != NULL          ? EVP_PKEY_Q_keygen(NULL, NULL, type, param)
                                           : EVP_PKEY_Q_keygen(NULL, NULL, type);
    X509 *x = X509_new();
    int len;
    *der = NULL;
    if (k == NULL || x == NULL)
        goto fail;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, k);
    if (X509_sign(x, k, strcmp(type, "ED25519") == 0 ? NULL : EVP_sha256()) <= 0)
        goto fail;
    len = i2d_X509(x, der);
    if (len <= 0)
        goto fail;
    *der_len = (size_t)len;
    X509_free(x);
    return k;
fail:
    X509_free(x);
    EVP_PKEY_free(k);
    return NULL;
}

static int sign_rsa_pss(EVP_PKEY *key, const struct tls_sign_request *req, uint8_t *sig, size_t *sig_len)
{
    uint8_t content[64 + 34 + 48];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    const EVP_MD *h = req->scheme == TLS_SIG_RSA_PSS_RSAE_SHA384 || req->scheme == TLS_SIG_ECDSA_SECP384R1_SHA384
                          ? EVP_sha384()
                      : req->scheme == TLS_SIG_RSA_PSS_RSAE_SHA512 ? EVP_sha512()
                      : req->scheme == TLS_SIG_ED25519             ? NULL
                                                                   : EVP_sha256();
    int pss = req->scheme >= TLS_SIG_RSA_PSS_RSAE_SHA256 && req->scheme <= TLS_SIG_RSA_PSS_RSAE_SHA512;
    int ok1;
    memset(content, 0x20, 64);
    memcpy(content + 64, "TLS 1.3, server CertificateVerify", 34);
    memcpy(content + 98, req->transcript_hash, req->transcript_hash_len);
    ok1 = md != NULL && EVP_DigestSignInit(md, &pctx, h, NULL, key) == 1 &&
          (!pss || (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1)) &&
          EVP_DigestSign(md, sig, sig_len, content, 98 + req->transcript_hash_len) == 1;
    EVP_MD_CTX_free(md);
    return ok1 ? 0 : -1;
}

/*
 * Run client and server against each other until both are done (bounded rounds).
 * Returns 0 when the client verified the server's flight and the server verified the client Finished.
 */
/* Keys the test signer holds, by key name (NULL name: any request uses keys[0].key). */
struct test_key {
    const char *name;
    EVP_PKEY *key;
};
static struct test_key test_keys[5];

static EVP_PKEY *key_for(const char *name, EVP_PKEY *dflt)
{
    for (size_t i = 0; i < 5; i++) {
        if (test_keys[i].name != NULL && strcmp(test_keys[i].name, name) == 0)
            return test_keys[i].key;
    }
    return dflt;
}

static int run_handshake(struct tls_conn *c, struct ttc *t, const struct ttc_config *cc, EVP_PKEY *key, int *server_err,
                         int *client_err)
{
    struct kl_buf c2s, s2c, app;
    int ret = -1;
    kl_buf_init(&c2s, 1 << 20);
    kl_buf_init(&s2c, 1 << 20);
    kl_buf_init(&app, 1 << 20);
    *server_err = 0;
    *client_err = ttc_start(t, cc, &c2s);
    for (int round = 0; round < 8 && *client_err == 0 && (*server_err == 0 || *server_err == KL_ERR_ASYNC); round++) {
        size_t n = c2s.len;
        *server_err = tls_conn_input(c, &s2c, &app, c2s.base, &n);
        kl_buf_consume(&c2s, n);
        if (*server_err == KL_ERR_ASYNC) {
            struct tls_sign_request req;
            uint8_t sig[512];
            size_t sl = sizeof(sig);
            if (tls_conn_sign_request(c, &req) != 0 || sign_rsa_pss(key_for(req.key_name, key), &req, sig, &sl) != 0)
                break;
            *server_err = tls_conn_sign_done(c, &s2c, sig, sl);
        }
        n = s2c.len;
        *client_err = ttc_input(t, &c2s, &app, s2c.base, &n);
        kl_buf_consume(&s2c, n);
        if (t->state == TTC_DONE && c2s.len == 0 && tls_conn_established(c)) {
            ret = 0;
            break;
        }
    }
    kl_buf_dispose(&c2s);
    kl_buf_dispose(&s2c);
    kl_buf_dispose(&app);
    return ret;
}

/* Application data both ways and a server KeyUpdate the client must answer. */
static int exchange(struct tls_conn *c, struct ttc *t)
{
    struct kl_buf wire, app, out;
    static const uint8_t msg[] = "ping over TLS 1.3";
    uint8_t big[40000];
    int ok1 = 0;
    size_t n;
    kl_buf_init(&wire, 1 << 20);
    kl_buf_init(&app, 1 << 20);
    kl_buf_init(&out, 1 << 20);
    memset(big, 0x42, sizeof(big));
    if (ttc_send(t, &wire, msg, sizeof(msg)) != 0)
        goto done;
    n = wire.len;
    if (tls_conn_input(c, &out, &app, wire.base, &n) != 0 || n != wire.len || app.len != sizeof(msg) ||
        memcmp(app.base, msg, sizeof(msg)) != 0)
        goto done;
    kl_buf_reset(&wire);
    kl_buf_reset(&app);
    /* 40000 bytes: split into 3 records. */
    if (tls_conn_key_update(c, &wire, 1) != 0 || tls_conn_send(c, &wire, big, sizeof(big)) != 0)
        goto done;
    n = wire.len;
    if (ttc_input(t, &out, &app, wire.base, &n) != 0 || app.len != sizeof(big) || memcmp(app.base, big, sizeof(big)))
        goto done;
    /* The client answered the KeyUpdate; then it sends data under its new key. */
    if (ttc_send(t, &out, msg, 4) != 0)
        goto done;
    kl_buf_reset(&app);
    n = out.len;
    if (tls_conn_input(c, &wire, &app, out.base, &n) != 0 || app.len != 4)
        goto done;
    ok1 = 1;
done:
    kl_buf_dispose(&wire);
    kl_buf_dispose(&app);
    kl_buf_dispose(&out);
    return ok1;
}

static void test_full_handshakes(void)
{
    struct fx f;
    EVP_PKEY *key;
    static const uint16_t suites[] = {TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256};
    static const uint16_t groups[] = {TLS_GROUP_X25519, TLS_GROUP_SECP256R1, TLS_GROUP_SECP384R1};
    fx_init(&f, "simple-1rtt.txt", 0);
    key = load_rsa_key();
    ok(key != NULL, "RFC 8448 RSA key loaded (the test plays the signer)");
    f.certs[0].names[0] = "server";
    f.certs[0].schemes[0] = TLS_SIG_RSA_PSS_RSAE_SHA384;
    f.certs[0].schemes[1] = TLS_SIG_RSA_PSS_RSAE_SHA256;
    f.certs[0].n_schemes = 2;
    f.cfg.alpn[0] = "h2";
    f.cfg.n_alpn = 1;
    for (size_t si = 0; si < 3; si++) {
        for (size_t gi = 0; gi < 3; gi++) {
            for (int mode = 0; mode < 2; mode++) {
                /* mode 0: the client's first share is the server's group; mode 1: a share for
                 * another group only, so the server has to ask with a HelloRetryRequest (and the
                 * client runs in compatibility mode). */
                struct ttc t;
                struct ttc_config cc = {{TLS_CHACHA20_POLY1305_SHA256, TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256},
                                        3,
                                        {TLS_GROUP_X25519, TLS_GROUP_SECP256R1, TLS_GROUP_SECP384R1},
                                        3,
                                        {groups[gi]},
                                        1,
                                        {0x0403, 0x0804, 0x0805},
                                        3,
                                        "server",
                                        "h2",
                                        mode,
                                        0,
                                        0};
                if (mode == 1)
                    cc.shares[0] = groups[(gi + 1) % 3];
                f.cfg.suites[0] = suites[si];
                f.cfg.n_suites = 1;
                f.cfg.groups[0] = groups[gi];
                f.cfg.n_groups = 1;
                struct tls_conn *c = tls_conn_new(&f.cfg, 100);
                int se, ce;
                char name[160];
                int r = run_handshake(c, &t, &cc, key, &se, &ce);
                snprintf(name, sizeof(name), "full handshake suite %04x group %04x%s", suites[si], groups[gi],
                         mode ? " via HelloRetryRequest, compat mode" : "");
                ok(r == 0, name);
                if (r != 0)
                    diag("server %d (%s) client %d (%s) client state %d", se, kl_err_str(se), ce, kl_err_str(ce),
                         t.state);
                ok(tls_conn_cipher_suite(c) == suites[si] && t.suite == suites[si] && tls_conn_group(c) == groups[gi] &&
                       t.group == groups[gi] && t.hrr == mode,
                   "  suite/group/HRR agree");
                ok(tls_conn_scheme(c) == TLS_SIG_RSA_PSS_RSAE_SHA384 && t.scheme == TLS_SIG_RSA_PSS_RSAE_SHA384,
                   "  rsa_pss_rsae_sha384 (cert preference), verified by the client");
                ok(strcmp(tls_conn_alpn(c), "h2") == 0 && strcmp(t.alpn, "h2") == 0 && t.sni_acked,
                   "  ALPN h2 and SNI acknowledged");
                ok(r == 0 && exchange(c, &t), "  data both ways, KeyUpdate answered, 40000 bytes in 3 records");
                ttc_dispose(&t);
                tls_conn_free(c);
            }
        }
    }
    /* 0-RTT offered and refused: the server skips the early records, within its bound (4.2.10). */
    for (int hrr = 0; hrr < 2; hrr++) {
        for (int over = 0; over < 2; over++) {
            struct ttc t;
            struct ttc_config cc = {{TLS_AES_128_GCM_SHA256},
                                    1,
                                    {TLS_GROUP_X25519, TLS_GROUP_SECP256R1},
                                    2,
                                    {TLS_GROUP_X25519},
                                    1,
                                    {0x0804},
                                    1,
                                    NULL,
                                    NULL,
                                    hrr,
                                    over ? 70000 : 3000,
                                    0};
            f.cfg.suites[0] = TLS_AES_128_GCM_SHA256;
            f.cfg.groups[0] = hrr ? TLS_GROUP_SECP256R1 : TLS_GROUP_X25519;
            struct tls_conn *c = tls_conn_new(&f.cfg, 102);
            int se, ce;
            int r = run_handshake(c, &t, &cc, key, &se, &ce);
            char name[128];
            if (!over) {
                snprintf(name, sizeof(name), "early_data refused, 3000 bytes of 0-RTT records skipped%s",
                         hrr ? " (after HRR)" : "");
                ok(r == 0, name);
            } else {
                snprintf(name, sizeof(name), "70000 bytes of undecryptable early records: %s",
                         hrr ? "unexpected_message (after HRR)" : "bad_record_mac");
                is_int(se, hrr ? KL_ERR_UNEXPECTED_MESSAGE : KL_ERR_BAD_RECORD_MAC, name);
            }
            ttc_dispose(&t);
            tls_conn_free(c);
        }
    }
    /* The client refuses a server whose signature is wrong: the engine sends the signer's bytes as given. */
    {
        struct ttc t;
        struct ttc_config cc = {{TLS_AES_128_GCM_SHA256},
                                1,
                                {TLS_GROUP_X25519},
                                1,
                                {TLS_GROUP_X25519},
                                1,
                                {0x0804},
                                1,
                                NULL,
                                NULL,
                                0,
                                0,
                                0};
        struct kl_buf c2s, s2c, app;
        struct tls_sign_request req;
        uint8_t sig[512];
        size_t sl = sizeof(sig), n;
        f.cfg.suites[0] = TLS_AES_128_GCM_SHA256;
        f.cfg.groups[0] = TLS_GROUP_X25519;
        kl_buf_init(&c2s, 1 << 20);
        kl_buf_init(&s2c, 1 << 20);
        kl_buf_init(&app, 1 << 20);
        struct tls_conn *c = tls_conn_new(&f.cfg, 101);
        is_int(ttc_start(&t, &cc, &c2s), 0, "client start");
        n = c2s.len;
        is_int(tls_conn_input(c, &s2c, &app, c2s.base, &n), KL_ERR_ASYNC, "server waits for the signature");
        is_int(tls_conn_sign_request(c, &req), 0, "sign request");
        is_int(req.scheme, TLS_SIG_RSA_PSS_RSAE_SHA256, "scheme: the only one the client accepts");
        ok(strcmp(req.server_name, "") == 0, "no SNI: server_name \"\"");
        is_int(sign_rsa_pss(key, &req, sig, &sl), 0, "sign");
        sig[5] ^= 1;
        is_int(tls_conn_sign_done(c, &s2c, sig, sl), 0, "sign_done");
        n = s2c.len;
        is_int(ttc_input(&t, &c2s, &app, s2c.base, &n), KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR),
               "client: bad CertificateVerify refused (the test client checks signatures)");
        ttc_dispose(&t);
        tls_conn_free(c);
        kl_buf_dispose(&c2s);
        kl_buf_dispose(&s2c);
        kl_buf_dispose(&app);
    }
    EVP_PKEY_free(key);
    fx_free(&f);
}

/* Certificate choice by the client's signature_algorithms, with real signatures the client verifies. */
static void test_cert_choice(void)
{
    struct fx f;
    static const struct {
        const char *name, *type, *param;
        uint16_t scheme;
    } kinds[] = {{"ecdsa-p256", "EC", "P-256", TLS_SIG_ECDSA_SECP256R1_SHA256},
                 {"ecdsa-p384", "EC", "P-384", TLS_SIG_ECDSA_SECP384R1_SHA384},
                 {"rsa-2048", "RSA", NULL, TLS_SIG_RSA_PSS_RSAE_SHA256},
                 {"ed25519", "ED25519", NULL, TLS_SIG_ED25519}};
    uint8_t *ders[4] = {NULL};
    fx_init(&f, "simple-1rtt.txt", 0);
    static struct tls_cert certs[4];
    int made = 0;
    for (size_t i = 0; i < 4; i++) {
        size_t dl = 0;
        EVP_PKEY *k = make_key_cert(kinds[i].type, kinds[i].param, &ders[i], &dl);
        if (k == NULL)
            continue;
        made++;
        test_keys[i].name = kinds[i].name;
        test_keys[i].key = k;
        memset(&certs[i], 0, sizeof(certs[i]));
        certs[i].key_name = kinds[i].name;
        certs[i].chain[0] = ders[i];
        certs[i].chain_len[0] = dl;
        certs[i].n_chain = 1;
        certs[i].schemes[0] = kinds[i].scheme;
        certs[i].n_schemes = 1;
        certs[i].names[0] = "localhost";
        certs[i].n_names = 1;
    }
    is_int(made, 4, "four test keys and certificates made (P-256, P-384, RSA-2048, Ed25519)");
    f.cfg.certs = certs;
    f.cfg.n_certs = 4;
    f.cfg.n_suites = 0; /* defaults */
    f.cfg.n_groups = 0;
    struct {
        uint16_t algs[4];
        size_t n;
        const char *want;
    } cases[] = {
        {{0x0403, 0x0503, 0x0804, 0x0807}, 4, "ecdsa-p256"}, /* config order wins when the client takes all */
        {{0x0503}, 1, "ecdsa-p384"},
        {{0x0804, 0x0805}, 2, "rsa-2048"},
        {{0x0807}, 1, "ed25519"},
        {{0x0807, 0x0804}, 2, "rsa-2048"}, /* client order does not matter: first configured cert it accepts */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]) && made == 4; i++) {
        struct ttc t;
        struct ttc_config cc = {{TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384},
                                2,
                                {TLS_GROUP_X25519, TLS_GROUP_SECP256R1},
                                2,
                                {TLS_GROUP_SECP256R1, TLS_GROUP_X25519},
                                2,
                                {0},
                                0,
                                "localhost",
                                NULL,
                                0,
                                0,
                                0};
        memcpy(cc.sig_algs, cases[i].algs, sizeof(cases[i].algs));
        cc.n_sig_algs = cases[i].n;
        struct tls_conn *c = tls_conn_new(&f.cfg, 200);
        int se, ce;
        int r = run_handshake(c, &t, &cc, NULL, &se, &ce);
        char name[128];
        snprintf(name, sizeof(name), "client accepting %zu scheme(s) from %04x: %s certificate, signature verified",
                 cases[i].n, cases[i].algs[0], cases[i].want);
        ok(r == 0 && t.scheme == tls_conn_scheme(c), name);
        if (r != 0)
            diag("server %s client %s", kl_err_str(se), kl_err_str(ce));
        /* Two shares offered (P-256 first): the server's preference x25519 wins. */
        ok(tls_conn_group(c) == TLS_GROUP_X25519 && t.group == TLS_GROUP_X25519,
           "  server preference among the offered shares: x25519");
        int right = 0;
        for (size_t k = 0; k < 4; k++) {
            if (strcmp(kinds[k].name, cases[i].want) == 0)
                right = tls_conn_scheme(c) == kinds[k].scheme;
        }
        ok(right, "  scheme of that certificate");
        ttc_dispose(&t);
        tls_conn_free(c);
    }
    /* SNI acknowledged only when it picked the certificate (RFC 6066 3). */
    for (int matched = 0; matched < 2 && made == 4; matched++) {
        struct ttc t;
        struct ttc_config cc = {{TLS_AES_128_GCM_SHA256},
                                1,
                                {TLS_GROUP_X25519},
                                1,
                                {TLS_GROUP_X25519},
                                1,
                                {0x0807},
                                1,
                                matched ? "LocalHost" : "other.example",
                                NULL,
                                0,
                                0,
                                0};
        struct tls_conn *c = tls_conn_new(&f.cfg, 201);
        int se, ce;
        int r = run_handshake(c, &t, &cc, NULL, &se, &ce);
        ok(r == 0 && t.sni_acked == matched, matched ? "SNI matching a certificate (any case): acknowledged in EE"
                                                     : "SNI matching nothing: default choice, not acknowledged");
        ok(strcmp(tls_conn_server_name(c), cc.sni) == 0, "  tls_conn_server_name reports what the client sent");
        ttc_dispose(&t);
        tls_conn_free(c);
    }
    for (size_t i = 0; i < 4; i++) {
        EVP_PKEY_free(test_keys[i].key);
        test_keys[i].key = NULL;
        test_keys[i].name = NULL;
        free(ders[i]);
    }
    fx_free(&f);
}

/* Heap held by an idle established connection (the frontend budget is 16 KiB RSS per idle connection). */
static void test_idle_memory(void)
{
    enum { N = 200 };
    static struct tls_conn *conns[N];
    struct fx f;
    size_t l, l2, l3, n, established = 0;
    fx_init(&f, "simple-1rtt.txt", 1);
    const uint8_t *chr = V(&f, "client_hello_record", &l);
    const uint8_t *cv = V(&f, "certificate_verify", &l2);
    const uint8_t *cfin = V(&f, "client_finished_record", &l3);
    struct mallinfo2 before = mallinfo2();
    for (int i = 0; i < N; i++) {
        conns[i] = tls_conn_new(&f.cfg, (uint64_t)i);
        kl_buf_reset(&f.out);
        if (feed(conns[i], &f, chr, l, &n) == KL_ERR_ASYNC &&
            tls_conn_sign_done(conns[i], &f.out, cv + 8, l2 - 8) == 0 && feed(conns[i], &f, cfin, l3, &n) == 0 &&
            tls_conn_established(conns[i]))
            established++;
    }
    struct mallinfo2 after = mallinfo2();
    is_int(established, N, "200 connections established (RFC 8448 3 replayed)");
    size_t per = after.uordblks > before.uordblks ? (after.uordblks - before.uordblks) / N : 0;
    diag("heap per idle established connection: %zu bytes (struct tls_conn %zu bytes)", per, tls_conn_sizeof());
    if (after.uordblks == before.uordblks) {
        /* A sanitizer's allocator bypasses malloc's accounting: nothing was measured. */
        skip("idle established connection holds <= 4 KiB of heap", "mallinfo2 does not see this allocator");
    } else {
        ok(per <= 4096, "idle established connection holds <= 4 KiB of heap (handshake buffers freed)");
    }
    for (int i = 0; i < N; i++)
        tls_conn_free(conns[i]);
    fx_free(&f);
}

/* ---- issue 12: conformance (each MUST with its exact alert) ---- */

/*
 * A ClientHello message rebuilt from the trace's: legacy_version, n_fill extra (unknown) cipher
 * suites after the trace's, the trace's extensions without those in drop[] (ended by 0xffff),
 * then extra (whole extensions).
 */
static void build_ch(struct kl_buf *m, const uint8_t *ch, size_t chl, uint16_t legacy_version, size_t n_fill,
                     const uint16_t *drop, const uint8_t *extra, size_t extra_len)
{
    const uint8_t *b = ch + 4;
    size_t blen = chl - 4, o = 34, sid, suites, comp, h, e;
    sid = o;
    o += 1 + b[o];
    suites = o;
    o += 2 + ((size_t)b[o] << 8 | b[o + 1]);
    comp = o;
    o += 1 + b[o];
    kl_buf_reset(m);
    if (wire_put_u8(m, MSG_CLIENT_HELLO) != 0 || wire_block_open(m, &h, 3) != 0 ||
        wire_put_u16(m, legacy_version) != 0 || wire_put_bytes(m, b + 2, 32) != 0 ||
        wire_put_bytes(m, b + sid, 1 + b[sid]) != 0 || wire_block_open(m, &e, 2) != 0 ||
        wire_put_bytes(m, b + suites + 2, comp - suites - 2) != 0)
        diag("build_ch: prefix");
    for (size_t i = 0; i < n_fill; i++) {
        if (wire_put_u16(m, (uint16_t)(0x5a00 + i)) != 0)
            diag("build_ch: suites");
    }
    if (wire_block_close(m, e, 2) != 0 || wire_put_bytes(m, b + comp, 1 + b[comp]) != 0 ||
        wire_block_open(m, &e, 2) != 0)
        diag("build_ch: comp");
    o += 2;
    while (o + 4 <= blen) {
        uint16_t type = (uint16_t)(b[o] << 8 | b[o + 1]);
        size_t el = 4 + ((size_t)b[o + 2] << 8 | b[o + 3]), k;
        for (k = 0; drop != NULL && drop[k] != 0xffff && drop[k] != type; k++) {
        }
        if ((drop == NULL || drop[k] == 0xffff) && wire_put_bytes(m, b + o, el) != 0)
            diag("build_ch: ext");
        o += el;
    }
    if (wire_put_bytes(m, extra, extra_len) != 0 || wire_block_close(m, e, 2) != 0 || wire_block_close(m, h, 3) != 0)
        diag("build_ch: close");
}

/* Plaintext handshake records (first one 0x0301) carrying msg, split at 2^14. */
static void to_records(struct kl_buf *out, const uint8_t *msg, size_t len)
{
    struct rec_dir d;
    rec_dir_init(&d, 1);
    kl_buf_reset(out);
    if (rec_seal(&d, out, REC_TYPE_HANDSHAKE, msg, len, 0) != 0)
        diag("to_records");
    out->base[2] = 1;
}

/* Run a whole ClientHello message (any size) against a fresh server: error and the plaintext alert. */
static int try_ch_msg(struct fx *f, const struct kl_buf *msg, int *alert_p)
{
    struct kl_buf recs;
    kl_buf_init(&recs, 1 << 20);
    to_records(&recs, msg->base, msg->len);
    int ret = try_ch(f, recs.base, recs.len, alert_p);
    kl_buf_dispose(&recs);
    return ret;
}

/* An extension: type, u16 length, then body. */
static size_t put_ext(uint8_t *p, uint16_t type, const uint8_t *body, size_t len)
{
    p[0] = (uint8_t)(type >> 8), p[1] = (uint8_t)type, p[2] = (uint8_t)(len >> 8), p[3] = (uint8_t)len;
    memcpy(p + 4, body, len);
    return 4 + len;
}

static void test_conformance_client_hello(void)
{
    struct fx f;
    size_t chl, l, o;
    int al, ret;
    struct kl_buf m;
    static uint8_t ext[140000], body[140000];
    kl_buf_init(&m, 1 << 20);
    fx_init(&f, "simple-1rtt.txt", 1);
    const uint8_t *ch = V(&f, "client_hello", &chl);
    static const uint16_t drop_ks_groups[] = {EXT_KEY_SHARE, EXT_SUPPORTED_GROUPS, 0xffff};
    size_t xl;
    uint8_t x25519_share[4 + 32];
    {
        uint8_t ks[64];
        xl = ch_ext(ks, ch, chl, EXT_KEY_SHARE); /* 00 33 len16 len16 001d 0020 key */
        memcpy(x25519_share, ks + 6, sizeof(x25519_share));
        ok(xl == 4 + 2 + sizeof(x25519_share), "trace key_share: one x25519 entry");
    }

    /* D.5: legacy_version 0x0300 or less → protocol_version; 0x0301 and 0x0303 go on. */
    static const uint16_t versions[] = {0x0300, 0x0200, 0x0002, 0x0301, 0x0303};
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        char name[96];
        build_ch(&m, ch, chl, versions[i], 0, NULL, NULL, 0);
        ret = try_ch_msg(&f, &m, &al);
        snprintf(name, sizeof(name), "ClientHello.legacy_version %04x → %s", versions[i],
                 versions[i] <= 0x0300 ? "protocol_version (D.5)" : "handshake goes on");
        if (versions[i] <= 0x0300)
            ok(ret == KL_ERR_ALERT(KL_ALERT_PROTOCOL_VERSION) && al == KL_ALERT_PROTOCOL_VERSION, name);
        else
            ok(ret == KL_ERR_ASYNC, name);
    }

    /* 9.3: unknown groups in key_share ignored however many; 4.2.8 duplicates found past any cap. */
    for (int variant = 0; variant < 4; variant++) {
        /* 0: 2000 unknown shares then x25519 (accepted); 1: a duplicate at entry 1500 (illegal_parameter);
         * 2: an unknown share whose group is not in supported_groups (illegal_parameter);
         * 3: x25519's share with supported_groups lacking x25519 (illegal_parameter). */
        size_t n_unknown = variant == 3 ? 0 : 2000, ks_len = 0, g_len = 0;
        uint8_t *ks = body, *g = body + 70000;
        for (size_t i = 0; i < n_unknown; i++) {
            uint16_t grp = (uint16_t)(0x6000 + (variant == 1 && i == 1500 ? 7 : i));
            ks[2 + ks_len++] = (uint8_t)(grp >> 8), ks[2 + ks_len++] = (uint8_t)grp;
            ks[2 + ks_len++] = 0, ks[2 + ks_len++] = 1, ks[2 + ks_len++] = 0x42;
            if (!(variant == 2 && i == 999))
                g[2 + g_len++] = (uint8_t)(grp >> 8), g[2 + g_len++] = (uint8_t)grp;
        }
        memcpy(ks + 2 + ks_len, x25519_share, sizeof(x25519_share));
        ks_len += sizeof(x25519_share);
        if (variant != 3)
            g[2 + g_len++] = 0x00, g[2 + g_len++] = 0x1d;
        g[2 + g_len++] = 0x00, g[2 + g_len++] = 0x17;
        ks[0] = (uint8_t)(ks_len >> 8), ks[1] = (uint8_t)ks_len;
        g[0] = (uint8_t)(g_len >> 8), g[1] = (uint8_t)g_len;
        o = put_ext(ext, EXT_SUPPORTED_GROUPS, g, g_len + 2);
        o += put_ext(ext + o, EXT_KEY_SHARE, ks, ks_len + 2);
        build_ch(&m, ch, chl, 0x0303, 0, drop_ks_groups, ext, o);
        ret = try_ch_msg(&f, &m, &al);
        if (variant == 0)
            ok(ret == KL_ERR_ASYNC, "2001 key shares, 2000 of unknown groups: ignored, x25519 used (9.3)");
        else if (variant == 1)
            ok(ret == KL_ERR_ILLEGAL_PARAMETER && al == KL_ALERT_ILLEGAL_PARAMETER,
               "duplicate key_share group at entry 1500 → illegal_parameter (4.2.8)");
        else if (variant == 2)
            ok(ret == KL_ERR_ILLEGAL_PARAMETER && al == KL_ALERT_ILLEGAL_PARAMETER,
               "unknown key_share group absent from supported_groups → illegal_parameter (4.2.8)");
        else
            ok(ret == KL_ERR_ILLEGAL_PARAMETER && al == KL_ALERT_ILLEGAL_PARAMETER,
               "x25519 key_share, supported_groups without x25519 → illegal_parameter (4.2.8)");
    }

    /* A ClientHello at its syntactic maximum: 32,767 cipher suites and extensions filling 2^16 - 1
     * bytes with a 32,7xx-entry signature_algorithms list. */
    {
        /* Only what a TLS 1.3 handshake needs: supported_versions, key_share, supported_groups
         * (x25519, P-256) and the big signature_algorithms. */
        static const uint16_t drop_sa[] = {EXT_SIGNATURE_ALGORITHMS,
                                           EXT_SERVER_NAME,
                                           EXT_SUPPORTED_GROUPS,
                                           11 /* ec_point_formats */,
                                           35 /* session_ticket */,
                                           EXT_RECORD_SIZE_LIMIT,
                                           EXT_PSK_KEY_EXCHANGE_MODES,
                                           EXT_EARLY_DATA,
                                           EXT_PRE_SHARED_KEY,
                                           0xff01,
                                           EXT_PADDING,
                                           0xffff};
        static const uint8_t groups2[] = {0, 4, 0x00, 0x1d, 0x00, 0x17};
        size_t gl = put_ext(ext, EXT_SUPPORTED_GROUPS, groups2, sizeof(groups2));
        build_ch(&m, ch, chl, 0x0303, 0, drop_sa, ext, gl);
        /* Extensions already there: their block length sits right before them. */
        const uint8_t *bb = m.base + 4;
        size_t oo = 34;
        oo += 1 + bb[oo];
        oo += 2 + ((size_t)bb[oo] << 8 | bb[oo + 1]);
        oo += 1 + bb[oo];
        size_t have = (size_t)bb[oo] << 8 | bb[oo + 1];
        size_t n_sa = (0xffff - have - 6) / 2;
        uint8_t *sa = body;
        sa[0] = (uint8_t)((2 * n_sa) >> 8), sa[1] = (uint8_t)(2 * n_sa);
        for (size_t i = 0; i < n_sa; i++) {
            uint16_t s = i == n_sa - 1 ? TLS_SIG_RSA_PSS_RSAE_SHA256 : (uint16_t)(0x0a0a + i);
            sa[2 + 2 * i] = (uint8_t)(s >> 8), sa[3 + 2 * i] = (uint8_t)s;
        }
        o = gl + put_ext(ext + gl, EXT_SIGNATURE_ALGORITHMS, sa, 2 + 2 * n_sa);
        size_t fill = (0xfffe - (size_t)((ch[4 + 34 + 1 + ch[4 + 34]] << 8) | ch[4 + 34 + 2 + ch[4 + 34]])) / 2;
        build_ch(&m, ch, chl, 0x0303, fill, drop_sa, ext, o);
        diag("ClientHello of %zu bytes (syntactic maximum %d), %zu signature algorithms", m.len - 4,
             MSG_CLIENT_HELLO_MAX, n_sa);
        ok(n_sa >= 32715, "signature_algorithms holds at least 32,715 entries");
        ret = try_ch_msg(&f, &m, &al);
        ok(ret == KL_ERR_ASYNC, "ClientHello near its syntactic maximum (> 64 KiB) is accepted");
        ok(m.len - 4 > 2 * 65536 - 1000, "  it is over 130,000 bytes");
    }
    /* Over the syntactic maximum: refused from the header alone, nothing buffered. */
    {
        uint8_t hdr[9] = {22, 3, 1, 0, 4, 1, 0, 0, 0};
        size_t n;
        uint32_t big = MSG_CLIENT_HELLO_MAX + 1;
        hdr[6] = (uint8_t)(big >> 16), hdr[7] = (uint8_t)(big >> 8), hdr[8] = (uint8_t)big;
        struct tls_conn *c = tls_conn_new(&f.cfg, 40);
        kl_buf_reset(&f.out);
        is_int(feed(c, &f, hdr, sizeof(hdr), &n), KL_ERR_DECODE,
               "ClientHello header announcing max + 1 bytes → decode_error at once");
        is_int(plain_alert(&f.out), KL_ALERT_DECODE_ERROR, "  decode_error alert");
        tls_conn_free(c);
        big = MSG_CLIENT_HELLO_MAX;
        hdr[6] = (uint8_t)(big >> 16), hdr[7] = (uint8_t)(big >> 8), hdr[8] = (uint8_t)big;
        c = tls_conn_new(&f.cfg, 41);
        kl_buf_reset(&f.out);
        is_int(feed(c, &f, hdr, sizeof(hdr), &n), 0, "ClientHello header announcing exactly the max: waits");
        is_int(n, sizeof(hdr), "  record consumed");
        tls_conn_free(c);
        /* Types a server never receives are refused at their header. */
        static const uint8_t never[] = {MSG_SERVER_HELLO,         MSG_NEW_SESSION_TICKET,  MSG_END_OF_EARLY_DATA,
                                        MSG_ENCRYPTED_EXTENSIONS, MSG_CERTIFICATE_REQUEST, 99};
        for (size_t i = 0; i < sizeof(never); i++) {
            char name[80];
            hdr[5] = never[i], hdr[6] = 0, hdr[7] = 0xff, hdr[8] = 0xff;
            c = tls_conn_new(&f.cfg, 42);
            kl_buf_reset(&f.out);
            snprintf(name, sizeof(name), "message type %u as first message → unexpected_message at its header",
                     never[i]);
            ok(feed(c, &f, hdr, sizeof(hdr), &n) == KL_ERR_UNEXPECTED_MESSAGE &&
                   plain_alert(&f.out) == KL_ALERT_UNEXPECTED_MESSAGE,
               name);
            tls_conn_free(c);
        }
    }
    (void)l;
    fx_free(&f);

    /* 4.2.9: pre_shared_key without psk_key_exchange_modes → missing_extension. */
    fx_init(&f, "resumed-0rtt.txt", 0);
    {
        const uint8_t *chr = V(&f, "client_hello_record", &l);
        const uint8_t *pch = V(&f, "client_hello", &chl);
        ok(try_ch(&f, chr, l, &al) == KL_ERR_ASYNC, "PSK ClientHello with psk_key_exchange_modes: goes on");
        static const uint16_t drop_modes[] = {EXT_PSK_KEY_EXCHANGE_MODES, 0xffff};
        build_ch(&m, pch, chl, 0x0303, 0, drop_modes, NULL, 0);
        ret = try_ch_msg(&f, &m, &al);
        ok(ret == KL_ERR_ALERT(KL_ALERT_MISSING_EXTENSION) && al == KL_ALERT_MISSING_EXTENSION,
           "pre_shared_key without psk_key_exchange_modes → missing_extension (4.2.9)");
    }
    fx_free(&f);
    kl_buf_dispose(&m);
}

/* An established RFC 8448 section 3 connection and the client's application write direction. */
static struct tls_conn *established(struct fx *f, struct rec_dir *caw)
{
    size_t l, n;
    struct tls_conn *c = to_wait_finished(f);
    const uint8_t *cfin = V(f, "client_finished_record", &l);
    if (feed(c, f, cfin, l, &n) != 0 || !tls_conn_established(c))
        diag("not established");
    dir_secret(f, caw, 1, "client_application_traffic_secret_0");
    kl_buf_reset(&f->out);
    kl_buf_reset(&f->app);
    return c;
}

/* Seal one record of type with the client's key and feed it. */
static int client_rec(struct tls_conn *c, struct fx *f, struct rec_dir *caw, uint8_t type, const void *data, size_t len)
{
    struct kl_buf rec;
    size_t n;
    int ret;
    kl_buf_init(&rec, 1 << 16);
    ret = rec_seal(caw, &rec, type, data, len, 0);
    if (ret == 0)
        ret = feed(c, f, rec.base, rec.len, &n);
    kl_buf_dispose(&rec);
    return ret;
}

static void test_conformance_records(void)
{
    struct fx f;
    struct rec_dir caw;
    size_t l, n;
    int ret = 0;
    fx_init(&f, "simple-1rtt.txt", 1);
    static const uint8_t ku0[] = {MSG_KEY_UPDATE, 0, 0, 1, 0}, ku1[] = {MSG_KEY_UPDATE, 0, 0, 1, 1};
    static const uint8_t user_canceled[] = {1, KL_ALERT_USER_CANCELED};

    /* 5.1: legacy_record_version ignored after the first ClientHello: a 0x0300 CCS is taken. */
    {
        struct tls_conn *c = to_wait_finished(&f);
        static const uint8_t ccs[] = {20, 3, 0, 0, 1, 1};
        is_int(feed(c, &f, ccs, sizeof(ccs), &n), 0, "CCS with legacy_record_version 0x0300 after ClientHello: taken");
        const uint8_t *cfin = V(&f, "client_finished_record", &l);
        uint8_t fin[256];
        memcpy(fin, cfin, l);
        fin[1] = 0x7f, fin[2] = 0x7f; /* the AAD carries the version: reseal is needed to change it */
        is_int(feed(c, &f, fin, l, &n), KL_ERR_BAD_RECORD_MAC,
               "a changed version on a protected record fails as AAD (bad_record_mac), not as decode_error");
        tls_conn_free(c);
    }

    /* Per-type caps when the header arrives. */
    {
        struct tls_conn *c = to_wait_finished(&f);
        static const uint8_t fin_hdr[] = {22, 3, 3, 0, 4, MSG_FINISHED, 0, 0, 33};
        (void)fin_hdr;
        struct rec_dir chw;
        dir_keys(&f, &chw, 1, "client_handshake_key", "client_handshake_iv");
        static const uint8_t fin33[] = {MSG_FINISHED, 0, 0, 33};
        struct kl_buf rec;
        kl_buf_init(&rec, 1 << 16);
        is_int(rec_seal(&chw, &rec, REC_TYPE_HANDSHAKE, fin33, sizeof(fin33), 0), 0, "seal");
        is_int(feed(c, &f, rec.base, rec.len, &n), KL_ERR_DECODE,
               "Finished header announcing hash length + 1 → decode_error at the header");
        is_int(enc_alert(&f, "server_application_key", "server_application_iv"), KL_ALERT_DECODE_ERROR,
               "  alert (under the server's application key, which is on after its Finished)");
        tls_conn_free(c);
        rec_dir_dispose(&chw);
        c = to_wait_finished(&f);
        dir_keys(&f, &chw, 1, "client_handshake_key", "client_handshake_iv");
        static const uint8_t fin32[] = {MSG_FINISHED, 0, 0, 32};
        kl_buf_reset(&rec);
        is_int(rec_seal(&chw, &rec, REC_TYPE_HANDSHAKE, fin32, sizeof(fin32), 0), 0, "seal");
        is_int(feed(c, &f, rec.base, rec.len, &n), 0, "Finished header announcing 32 bytes: waits for the body");
        tls_conn_free(c);
        rec_dir_dispose(&chw);
        kl_buf_dispose(&rec);

        c = established(&f, &caw);
        static const uint8_t ku2[] = {MSG_KEY_UPDATE, 0, 0, 2};
        is_int(client_rec(c, &f, &caw, REC_TYPE_HANDSHAKE, ku2, sizeof(ku2)), KL_ERR_DECODE,
               "KeyUpdate header announcing 2 bytes → decode_error at the header");
        is_int(enc_alert(&f, "server_application_key", "server_application_iv"), KL_ALERT_DECODE_ERROR, "  alert");
        tls_conn_free(c);
        rec_dir_dispose(&caw);
        c = established(&f, &caw);
        static const uint8_t ch_hdr[] = {MSG_CLIENT_HELLO, 0, 0x10, 0};
        is_int(client_rec(c, &f, &caw, REC_TYPE_HANDSHAKE, ch_hdr, sizeof(ch_hdr)), KL_ERR_UNEXPECTED_MESSAGE,
               "ClientHello header after the handshake → unexpected_message before its body");
        tls_conn_free(c);
        rec_dir_dispose(&caw);
    }

    /* DoS caps: 32 KeyUpdates in a row are fine, the 33rd is unexpected_message; data resets the count. */
    {
        struct tls_conn *c = established(&f, &caw);
        for (int i = 0; i < TLS_MAX_KEY_UPDATES && ret == 0; i++) {
            ret = client_rec(c, &f, &caw, REC_TYPE_HANDSHAKE, ku0, sizeof(ku0));
            if (ret == 0 && rec_dir_update(&caw) != 0)
                ret = -1;
        }
        is_int(ret, 0, "32 KeyUpdates in a row accepted");
        is_int(client_rec(c, &f, &caw, REC_TYPE_APPLICATION_DATA, "x", 1), 0, "then one byte of data");
        for (int i = 0; i < TLS_MAX_KEY_UPDATES && ret == 0; i++) {
            ret = client_rec(c, &f, &caw, REC_TYPE_HANDSHAKE, ku0, sizeof(ku0));
            if (ret == 0 && rec_dir_update(&caw) != 0)
                ret = -1;
        }
        is_int(ret, 0, "data reset the count: 32 more accepted");
        kl_buf_reset(&f.out);
        is_int(client_rec(c, &f, &caw, REC_TYPE_HANDSHAKE, ku0, sizeof(ku0)), KL_ERR_UNEXPECTED_MESSAGE,
               "33rd KeyUpdate in a row → unexpected_message");
        ok(f.out.len > 0, "  an alert is queued");
        tls_conn_free(c);
        rec_dir_dispose(&caw);

        c = established(&f, &caw);
        ret = 0;
        for (int i = 0; i < TLS_MAX_EMPTY_RECORDS && ret == 0; i++)
            ret = client_rec(c, &f, &caw, REC_TYPE_APPLICATION_DATA, NULL, 0);
        is_int(ret, 0, "32 empty records in a row accepted");
        is_int(client_rec(c, &f, &caw, REC_TYPE_APPLICATION_DATA, "y", 1), 0, "then one byte of data");
        for (int i = 0; i < TLS_MAX_EMPTY_RECORDS && ret == 0; i++)
            ret = client_rec(c, &f, &caw, REC_TYPE_APPLICATION_DATA, NULL, 0);
        is_int(ret, 0, "data reset the count: 32 more accepted");
        is_int(f.app.len, 1, "  only the data byte was delivered");
        kl_buf_reset(&f.out);
        is_int(client_rec(c, &f, &caw, REC_TYPE_APPLICATION_DATA, NULL, 0), KL_ERR_UNEXPECTED_MESSAGE,
               "33rd empty record in a row → unexpected_message");
        is_int(enc_alert(&f, "server_application_key", "server_application_iv"), KL_ALERT_UNEXPECTED_MESSAGE,
               "  unexpected_message alert");
        tls_conn_free(c);
        rec_dir_dispose(&caw);

        c = established(&f, &caw);
        ret = 0;
        for (int i = 0; i < TLS_MAX_WARNING_ALERTS && ret == 0; i++)
            ret = client_rec(c, &f, &caw, REC_TYPE_ALERT, user_canceled, 2);
        is_int(ret, 0, "4 warning alerts (user_canceled) in a row accepted");
        kl_buf_reset(&f.out);
        is_int(client_rec(c, &f, &caw, REC_TYPE_ALERT, user_canceled, 2), KL_ERR_UNEXPECTED_MESSAGE,
               "5th warning alert in a row → unexpected_message");
        is_int(enc_alert(&f, "server_application_key", "server_application_iv"), KL_ALERT_UNEXPECTED_MESSAGE,
               "  unexpected_message alert");
        tls_conn_free(c);
        rec_dir_dispose(&caw);
    }

    /* A client that never reads: its KeyUpdate requests queue at most one answer. */
    {
        struct tls_conn *c = established(&f, &caw);
        is_int(client_rec(c, &f, &caw, REC_TYPE_HANDSHAKE, ku1, sizeof(ku1)), 0, "KeyUpdate(update_requested)");
        is_int(f.out.len, 27, "  answered at once while out is empty (one 27-byte record)");
        if (rec_dir_update(&caw) != 0)
            diag("update");
        static uint8_t unsent[REC_MAX_WIRE + 1];
        kl_buf_reset(&f.out);
        if (kl_buf_append(&f.out, unsent, sizeof(unsent)) != 0)
            diag("append");
        ret = 0;
        for (int i = 0; i < 20 && ret == 0; i++) {
            ret = client_rec(c, &f, &caw, REC_TYPE_HANDSHAKE, ku1, sizeof(ku1));
            if (ret == 0 && rec_dir_update(&caw) != 0)
                ret = -1;
        }
        is_int(ret, 0, "20 more requests while out holds unsent bytes");
        is_int(f.out.len, sizeof(unsent), "  no answer queued behind them");
        kl_buf_reset(&f.out);
        is_int(tls_conn_send(c, &f.out, (const uint8_t *)"hi", 2), 0, "server sends data");
        is_int(f.out.len, 27 + 24, "  one KeyUpdate answer for all 20, then the data record");
        /* The answer is a KeyUpdate(update_not_requested) under the first updated server key. */
        struct rec_dir srd;
        struct kl_buf pt;
        struct rec_record rr;
        uint8_t type = 0;
        kl_buf_init(&pt, 1 << 16);
        dir_secret(&f, &srd, 0, "server_application_traffic_secret_0");
        if (rec_dir_update(&srd) != 0)
            diag("update");
        ok(rec_next(&rr, f.out.base, f.out.len, 0) == 0 && rec_open(&srd, &pt, &type, &rr) == 0 &&
               type == REC_TYPE_HANDSHAKE && pt.len == 5 && memcmp(pt.base, ku0, 5) == 0,
           "  it decrypts to KeyUpdate(update_not_requested)");
        kl_buf_dispose(&pt);
        rec_dir_dispose(&srd);
        tls_conn_free(c);
        rec_dir_dispose(&caw);
    }
    fx_free(&f);
}

/* A fresh x25519 share from ttc and a handshake driven by hand up to the server flight. */
static void test_conformance_handshake(void)
{
    struct fx f;
    EVP_PKEY *key = load_rsa_key();
    fx_init(&f, "simple-1rtt.txt", 0);
    f.certs[0].names[0] = "server";
    f.cfg.groups[0] = TLS_GROUP_X25519;
    f.cfg.groups[1] = TLS_GROUP_SECP256R1;
    f.cfg.n_groups = 2;

    /* 4.2.10: after a HelloRetryRequest an undecryptable record is bad_record_mac, not skipped. */
    for (int hrr = 0; hrr < 2; hrr++) {
        struct ttc t;
        struct ttc_config cc = {{TLS_AES_128_GCM_SHA256},
                                1,
                                {TLS_GROUP_X25519, TLS_GROUP_SECP256R1},
                                2,
                                {hrr ? TLS_GROUP_SECP256R1 : TLS_GROUP_X25519},
                                1,
                                {0x0804},
                                1,
                                NULL,
                                NULL,
                                0,
                                200,
                                0};
        struct kl_buf c2s, s2c, app;
        size_t n;
        int se = 0;
        kl_buf_init(&c2s, 1 << 20);
        kl_buf_init(&s2c, 1 << 20);
        kl_buf_init(&app, 1 << 20);
        f.cfg.groups[0] = hrr ? TLS_GROUP_X25519 : TLS_GROUP_X25519;
        /* With hrr the client's only share is P-256 but the server takes only x25519. */
        f.cfg.n_groups = hrr ? 1 : 2;
        struct tls_conn *c = tls_conn_new(&f.cfg, 300);
        int ce = ttc_start(&t, &cc, &c2s);
        for (int round = 0; round < 4 && ce == 0 && (se == 0 || se == KL_ERR_ASYNC) && c2s.len > 0; round++) {
            n = c2s.len;
            se = tls_conn_input(c, &s2c, &app, c2s.base, &n);
            kl_buf_consume(&c2s, n);
            if (se == KL_ERR_ASYNC) {
                struct tls_sign_request req;
                uint8_t sig[512];
                size_t sl = sizeof(sig);
                if (tls_conn_sign_request(c, &req) != 0 || sign_rsa_pss(key, &req, sig, &sl) != 0)
                    break;
                se = tls_conn_sign_done(c, &s2c, sig, sl);
                break;
            }
            n = s2c.len;
            ce = ttc_input(&t, &c2s, &app, s2c.base, &n);
            kl_buf_consume(&s2c, n);
        }
        is_int(se, 0, hrr ? "HRR: ClientHello2 answered, flight sent" : "no HRR: flight sent");
        is_int(t.hrr, hrr, "  HelloRetryRequest as expected");
        /* A record that does not decrypt with the client handshake key, as refused 0-RTT would be. */
        uint8_t junk[5 + 64];
        memset(junk, 0x33, sizeof(junk));
        junk[0] = 23, junk[1] = 3, junk[2] = 3, junk[3] = 0, junk[4] = 64;
        n = sizeof(junk);
        int r = tls_conn_input(c, &s2c, &app, junk, &n);
        if (hrr)
            is_int(r, KL_ERR_BAD_RECORD_MAC, "after ClientHello2 an undecryptable record → bad_record_mac (4.2.10)");
        else
            is_int(r, 0, "0-RTT refused without HRR: an undecryptable record is skipped (4.2.10)");
        ttc_dispose(&t);
        tls_conn_free(c);
        kl_buf_dispose(&c2s);
        kl_buf_dispose(&s2c);
        kl_buf_dispose(&app);
    }

    /* supported_groups in EncryptedExtensions exactly when the first share is not our preference; the
     * ECDHE private key is gone while the signature is awaited. */
    for (int first_pref = 0; first_pref < 2; first_pref++) {
        struct ttc t;
        struct ttc_config cc = {{TLS_AES_128_GCM_SHA256},
                                1,
                                {TLS_GROUP_X25519, TLS_GROUP_SECP256R1},
                                2,
                                {first_pref ? TLS_GROUP_X25519 : TLS_GROUP_SECP256R1},
                                1,
                                {0x0804},
                                1,
                                NULL,
                                NULL,
                                0,
                                0,
                                0};
        struct kl_buf c2s, s2c, app, pt;
        size_t n;
        f.cfg.n_groups = 2;
        kl_buf_init(&c2s, 1 << 20);
        kl_buf_init(&s2c, 1 << 20);
        kl_buf_init(&app, 1 << 20);
        kl_buf_init(&pt, 1 << 20);
        struct tls_conn *c = tls_conn_new(&f.cfg, 301);
        int ce = ttc_start(&t, &cc, &c2s);
        n = c2s.len;
        int se = tls_conn_input(c, &s2c, &app, c2s.base, &n);
        is_int(se, KL_ERR_ASYNC, first_pref ? "x25519 first share: no HRR" : "P-256 share only: taken without HRR");
        ok(c->hs != NULL && c->hs->kex.group == 0 && c->hs->kex.pkey == NULL && c->hs->kex.pub_len == 0,
           "  the ECDHE key is disposed while the signature is awaited");
        struct tls_sign_request req;
        uint8_t sig[512];
        size_t sl = sizeof(sig);
        if (tls_conn_sign_request(c, &req) == 0 && sign_rsa_pss(key, &req, sig, &sl) == 0)
            se = tls_conn_sign_done(c, &s2c, sig, sl);
        /* The client takes the ServerHello record only, then we read EE with its handshake key. */
        struct rec_record rr;
        uint8_t type;
        int has_groups = -1;
        if (ce == 0 && se == 0 && rec_next(&rr, s2c.base, s2c.len, 0) == 0) {
            n = rr.wire_len;
            if (ttc_input(&t, &c2s, &app, s2c.base, &n) == 0 && n == rr.wire_len &&
                rec_next(&rr, s2c.base + n, s2c.len - n, 0) == 0 && rec_open(&t.rd, &pt, &type, &rr) == 0 &&
                pt.len > 6 && pt.base[0] == MSG_ENCRYPTED_EXTENSIONS) {
                struct wire_reader r, exts;
                wire_reader_init(&r, pt.base + 4, pt.len - 4);
                has_groups = 0;
                if (wire_read_vec(&r, &exts, 2) == 0) {
                    uint16_t et;
                    struct kl_span body;
                    while (wire_read_u16(&exts, &et) == 0 && wire_read_vec_span(&exts, &body, 2, 0, 0xffff) == 0) {
                        static const uint8_t want[] = {0, 4, 0x00, 0x1d, 0x00, 0x17};
                        if (et == EXT_SUPPORTED_GROUPS)
                            has_groups = body.len == sizeof(want) && memcmp(body.base, want, sizeof(want)) == 0 ? 1 : 2;
                    }
                }
            }
        }
        if (first_pref)
            is_int(has_groups, 0, "  our preference came first: no supported_groups in EncryptedExtensions");
        else
            is_int(has_groups, 1, "  P-256 first, x25519 preferred: supported_groups [x25519, P-256] in EE (4.2.7)");
        ttc_dispose(&t);
        tls_conn_free(c);
        kl_buf_dispose(&c2s);
        kl_buf_dispose(&s2c);
        kl_buf_dispose(&app);
        kl_buf_dispose(&pt);
    }
    EVP_PKEY_free(key);
    fx_free(&f);

    /* RFC 8449: the client's record_size_limit bounds our protected records from EE on. */
    fx_init(&f, "simple-1rtt.txt", 1);
    {
        size_t chl;
        int al;
        struct kl_buf m, recs;
        kl_buf_init(&m, 1 << 20);
        kl_buf_init(&recs, 1 << 20);
        const uint8_t *ch = V(&f, "client_hello", &chl);
        static const uint16_t drop_rsl[] = {EXT_RECORD_SIZE_LIMIT, 0xffff};
        for (int lim = 0; lim < 2; lim++) {
            uint8_t x[6] = {0, EXT_RECORD_SIZE_LIMIT, 0, 2, 0, lim ? 64 : 63};
            build_ch(&m, ch, chl, 0x0303, 0, drop_rsl, x, sizeof(x));
            to_records(&recs, m.base, m.len);
            struct tls_conn *c = tls_conn_new(&f.cfg, 302);
            kl_buf_reset(&f.out);
            size_t n = recs.len, l2;
            int r = feed(c, &f, recs.base, recs.len, &n);
            if (!lim) {
                al = plain_alert(&f.out);
                ok(r == KL_ERR_ILLEGAL_PARAMETER && al == KL_ALERT_ILLEGAL_PARAMETER,
                   "record_size_limit 63 → illegal_parameter (RFC 8449 4)");
                tls_conn_free(c);
                continue;
            }
            const uint8_t *cv = V(&f, "certificate_verify", &l2);
            is_int(r, KL_ERR_ASYNC, "record_size_limit 64: handshake goes on");
            size_t before = f.out.len;
            is_int(tls_conn_sign_done(c, &f.out, cv + 8, l2 - 8), 0, "  flight sent");
            size_t off = before, count = 0, biggest = 0;
            struct rec_record rr;
            while (off < f.out.len && rec_next(&rr, f.out.base + off, f.out.len - off, 0) == 0) {
                if (rr.type == REC_TYPE_APPLICATION_DATA) {
                    count++;
                    if (rr.fragment.len > biggest)
                        biggest = rr.fragment.len;
                }
                off += rr.wire_len;
            }
            ok(off == f.out.len && count > 10, "  the flight is split into many records");
            is_int(biggest, 64 + CRYPTO_TAG_LEN, "  none over 64 bytes of inner plaintext (RFC 8449 4)");
            tls_conn_free(c);
        }
        kl_buf_dispose(&m);
        kl_buf_dispose(&recs);
    }
    fx_free(&f);
}

int main(void)
{
    if (crypto_init() != 0) {
        printf("Bail out! crypto_init\n");
        return 1;
    }
    test_rfc8448_simple();
    test_rfc8448_simple_alert();
    test_rfc8448_0rtt_refused();
    test_rfc8448_compat();
    test_rfc8448_hrr();
    test_client_hello_negative();
    test_states_negative();
    test_selection();
    test_full_handshakes();
    test_cert_choice();
    test_idle_memory();
    test_conformance_client_hello();
    test_conformance_records();
    test_conformance_handshake();
    return kl_test_done();
}
