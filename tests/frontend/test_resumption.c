/*
 * test_resumption.c - session tickets, PSK resumption and 0-RTT in the engine (issue 11):
 * the ticket format (ticket.c), RFC 8448 3 (resumption PSK, NewSessionTicket fields) and 4 (binder,
 * early secrets, the server's resumed flight byte for byte, 0-RTT and EndOfEarlyData), round trips
 * with the test client (resumption, 0-RTT, after HelloRetryRequest, psk_ke only when allowed, a
 * client identity carried by the ticket) and every refusal with its alert or its fallback to a
 * full handshake.
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
#include "ticket.h"
#include "tls.h"
#include "tls_test_client.h"
#include "tls_test_pair.h"
#include "wire.h"
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

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

/* The ticket keys the listener holds: two epochs, tickets sealed with the current one. */
static struct tls_ticket_keys keys_held;
static int keys_fail;
static int get_keys(void *arg, struct tls_ticket_keys *out)
{
    (void)arg;
    if (keys_fail)
        return KL_ERR_INTERNAL;
    *out = keys_held;
    return 0;
}

static void keys_reset(void)
{
    memset(&keys_held, 0, sizeof(keys_held));
    keys_held.n = 2;
    keys_held.issue = 1;
    for (size_t i = 0; i < 2; i++) {
        memset(keys_held.keys[i].key_id, 0x10 + (int)i, TLS_TICKET_KEY_ID_LEN);
        keys_held.keys[i].epoch = 41 + i;
        memset(keys_held.keys[i].secret, 0xa0 + (int)i, TLS_TICKET_SECRET_LEN);
    }
    keys_fail = 0;
}

/* A strike register: remembers binders; returns 0 for one seen before (or when told to fail). */
static uint8_t strikes[16][CRYPTO_MAX_HASH];
static size_t n_strikes;
static int replay_fail;
static int replay_check(void *arg, const uint8_t *binder, size_t len, uint64_t expires_ms)
{
    (void)arg;
    (void)expires_ms;
    if (replay_fail || len > CRYPTO_MAX_HASH || n_strikes == 16)
        return 0;
    for (size_t i = 0; i < n_strikes; i++) {
        if (memcmp(strikes[i], binder, len) == 0)
            return 0;
    }
    memcpy(strikes[n_strikes++], binder, len);
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

static const char *mtls(const char *name)
{
    static char buf[2][4096];
    static int slot;
    const char *src = getenv("KL_SOURCE_DIR");
    slot ^= 1;
    snprintf(buf[slot], sizeof(buf[slot]), "%s/tests/frontend/mtls/%s", src != NULL ? src : ".", name);
    return buf[slot];
}

struct fx {
    EVP_PKEY *key;
    uint8_t *der;
    size_t der_len;
    struct tls_cert cert;
    struct tls_config cfg;
    struct tls_test_hooks hooks;
};

static void fx_init(struct fx *f)
{
    memset(f, 0, sizeof(*f));
    f->der = rfc8448_read_file("server-cert.der", &f->der_len);
    f->key = key_pem("server-rsa-key.pem");
    f->cert.key_name = "rsa";
    f->cert.chain[0] = f->der;
    f->cert.chain_len[0] = f->der_len;
    f->cert.n_chain = 1;
    f->cert.schemes[0] = TLS_SIG_RSA_PSS_RSAE_SHA256;
    f->cert.n_schemes = 1;
    f->cert.names[0] = "server";
    f->cert.names[1] = "other";
    f->cert.n_names = 2;
    f->cfg.certs = &f->cert;
    f->cfg.n_certs = 1;
    f->cfg.groups[0] = TLS_GROUP_X25519;
    f->cfg.groups[1] = TLS_GROUP_SECP256R1;
    f->cfg.n_groups = 2;
    f->cfg.alpn[0] = "h2";
    f->cfg.alpn[1] = "http/1.1";
    f->cfg.n_alpn = 2;
    memset(f->cfg.cookie_key, 0x5a, sizeof(f->cfg.cookie_key));
    f->cfg.trace = on_trace;
    f->cfg.tickets.keys = get_keys;
    f->cfg.tickets.count = 2;
    f->cfg.tickets.lifetime = 3600;
    f->cfg.tickets.max_early_data = 1024;
    f->cfg.tickets.replay = replay_check;
    memset(f->cfg.tickets.host_id, 0x77, TLS_HOST_ID_LEN);
    keys_reset();
    n_strikes = 0;
    replay_fail = 0;
    trace_log[0] = 0;
}

static void fx_free(struct fx *f)
{
    EVP_PKEY_free(f->key);
    free(f->der);
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
    cc.sni = "server";
    cc.alpn = "h2";
    return cc;
}

/* One handshake (tls_test_pair.h): the server signs with key; its application data is r->app (the caller disposes of
 * it). */
static void run(struct tls_conn *c, struct ttc *t, const struct ttc_config *cc, const struct ttc_psk_config *pc,
                EVP_PKEY *key, struct ttp_run *r)
{
    ttp_run(c, t, cc, pc, NULL, NULL, key, r);
}

/* Application data both ways on an established pair. */
static int exchange(struct tls_conn *c, struct ttc *t)
{
    struct kl_buf wire, app, out;
    static const uint8_t msg[] = "ping over a resumed session";
    int good = 0;
    size_t n;
    kl_buf_init(&wire, 1 << 16);
    kl_buf_init(&app, 1 << 16);
    kl_buf_init(&out, 1 << 16);
    if (ttc_send(t, &wire, msg, sizeof(msg)) != 0)
        goto done;
    n = wire.len;
    if (tls_conn_input(c, &out, &app, wire.base, &n) != 0 || app.len != sizeof(msg) ||
        memcmp(app.base, msg, sizeof(msg)) != 0)
        goto done;
    kl_buf_reset(&wire);
    kl_buf_reset(&app);
    if (tls_conn_send(c, &wire, msg, 4) != 0)
        goto done;
    n = wire.len;
    good = ttc_input(t, &out, &app, wire.base, &n) == 0 && app.len == 4;
done:
    kl_buf_dispose(&wire);
    kl_buf_dispose(&app);
    kl_buf_dispose(&out);
    return good;
}

/* A full handshake that leaves its tickets in *issuer (the caller disposes it). */
static int get_tickets(struct fx *f, struct ttc *issuer, const struct ttc_config *cc)
{
    struct tls_conn *c = tls_conn_new(&f->cfg, 1);
    struct ttp_run r;
    run(c, issuer, cc, NULL, f->key, &r);
    int good = r.done && r.signed_ && issuer->n_tickets == f->cfg.tickets.count;
    kl_buf_dispose(&r.app);
    tls_conn_free(c);
    return good;
}

/* Compare with a trace value (fetched first: argument evaluation order is unspecified). */
static void is_trace(const uint8_t *got, size_t got_len, const struct rfc8448 *t, const char *name, const char *desc)
{
    size_t l;
    const uint8_t *want = rfc8448_must(t, name, &l);
    is_mem(got, got_len, want, l, desc);
}

/* ---- the ticket format ---- */

static void test_ticket_format(void)
{
    struct ticket_state st, back;
    struct kl_buf b;
    uint8_t wire[TICKET_MAX];
    keys_reset();
    memset(&st, 0, sizeof(st));
    st.suite = TLS_AES_256_GCM_SHA384;
    st.psk_len = 48;
    memset(st.psk, 0x33, 48);
    st.created_ms = 1700000000123ULL;
    st.lifetime = 7200;
    st.age_add = 0xdeadbeef;
    st.max_early_data = 4096;
    memset(st.host_id, 9, TLS_HOST_ID_LEN);
    memset(st.cert_sha256, 8, 32);
    strcpy(st.sni, "example.com");
    strcpy(st.alpn, "h2");
    st.peer.present = 1;
    memset(st.peer.sha256, 7, 32);
    strcpy(st.peer.subject_cn, "client one");
    strcpy(st.peer.san, "DNS:client.example");
    strcpy(st.peer.subject, "CN=client one,O=Test");
    kl_buf_init_fixed(&b, wire, sizeof(wire));
    is_int(ticket_seal(&b, &keys_held.keys[1], &st), 0, "ticket: sealed");
    ok(b.len > TICKET_HEADER_LEN + CRYPTO_TAG_LEN && wire[0] == TICKET_VERSION, "ticket: version byte first");
    ok(memcmp(wire + 1, keys_held.keys[1].key_id, TLS_TICKET_KEY_ID_LEN) == 0, "ticket: key id in clear");
    ok(wire[9 + 7] == 42 && wire[9] == 0, "ticket: epoch in clear, big-endian");
    is_int(ticket_open(&back, &keys_held, wire, b.len), 0, "ticket: opens with the key ring");
    ok(memcmp(&st, &back, sizeof(st)) == 0, "ticket: every field comes back (PSK, times, names, identity)");
    /* Tampering anywhere (header = AAD, body, tag) and truncation: unusable, never decoded. */
    int all_refused = 1;
    for (size_t i = 0; i < b.len; i += 7) {
        wire[i] ^= 0x40;
        all_refused &= ticket_open(&back, &keys_held, wire, b.len) == KL_ERR_INVALID;
        wire[i] ^= 0x40;
    }
    ok(all_refused, "ticket: any flipped byte (header, ciphertext, tag) is refused");
    is_int(ticket_open(&back, &keys_held, wire, b.len - 1), KL_ERR_INVALID, "ticket: truncated is refused");
    is_int(ticket_open(&back, &keys_held, wire, 5), KL_ERR_INVALID, "ticket: shorter than a header is refused");
    struct tls_ticket_keys other = keys_held;
    other.n = 1; /* only epoch 41 */
    is_int(ticket_open(&back, &other, wire, b.len), KL_ERR_INVALID, "ticket: an epoch no longer held is refused");
    other = keys_held;
    memset(other.keys[1].secret, 0xee, TLS_TICKET_SECRET_LEN);
    is_int(ticket_open(&back, &other, wire, b.len), KL_ERR_INVALID,
           "ticket: same key id and epoch, another secret (another site) is refused");
    ok(back.psk_len == 0 && back.psk[0] == 0, "ticket: a refused ticket leaves no PSK behind");
    st.psk_len = 20;
    kl_buf_reset(&b);
    is_int(ticket_seal(&b, &keys_held.keys[1], &st), KL_ERR_INVALID, "ticket: a PSK of no hash length is not sealed");
    kl_buf_dispose(&b);
}

/* ---- RFC 8448 3 and 4 ---- */

static void test_rfc8448_psk_values(void)
{
    struct rfc8448 *s = rfc8448_load("simple-1rtt.txt"), *r = rfc8448_load("resumed-0rtt.txt");
    size_t l, l2;
    uint8_t psk[32], out[32];
    struct ks_schedule ks;
    struct kl_buf b;
    if (s == NULL || r == NULL) {
        ok(0, "RFC 8448 traces load");
        rfc8448_free(s);
        rfc8448_free(r);
        return;
    }
    /* 3: PSK = HKDF-Expand-Label(resumption_master_secret, "resumption", ticket_nonce, 32). */
    const uint8_t *rms = rfc8448_must(s, "resumption_master_secret", &l);
    const uint8_t *nonce = rfc8448_must(s, "ticket_nonce", &l2);
    is_int(ks_resumption_psk(CRYPTO_HASH_SHA256, psk, rms, nonce, l2), 0, "3: resumption PSK derived");
    const uint8_t *want = rfc8448_must(s, "resumption_psk", &l);
    is_mem(psk, 32, want, l, "3: resumption PSK = the trace's");
    is_trace(psk, 32, r, "psk", "4: the PSK of section 4 is section 3's");
    /* 3: the NewSessionTicket fields: our encoder rebuilds NSS's message from them. */
    const uint8_t *nst = rfc8448_must(s, "new_session_ticket", &l);
    struct wire_reader rd;
    uint32_t lifetime = 0, age_add = 0;
    struct kl_span n2, tk;
    wire_reader_init(&rd, nst + 4, l - 4);
    ok(wire_read_u32(&rd, &lifetime) == 0 && wire_read_u32(&rd, &age_add) == 0 &&
           wire_read_vec_span(&rd, &n2, 1, 0, 255) == 0 && wire_read_vec_span(&rd, &tk, 2, 1, 0xffff) == 0,
       "3: NewSessionTicket parses");
    is_int(lifetime, 30, "3: ticket_lifetime 30 s");
    is_int(age_add, 0xfad6aac5, "3: ticket_age_add");
    kl_buf_init(&b, 4096);
    is_int(msg_new_session_ticket_encode(&b, lifetime, age_add, n2.base, n2.len, tk.base, tk.len, 1024), 0,
           "3: NewSessionTicket encoded");
    is_mem(b.base, b.len, nst, l, "3: our NewSessionTicket encoder gives NSS's message (early_data 1024)");
    kl_buf_reset(&b);
    is_int(msg_new_session_ticket_encode(&b, lifetime, age_add, n2.base, n2.len, tk.base, 0, 0), KL_ERR_INVALID,
           "3: an empty ticket is not encoded (ticket<1..2^16-1>)");
    kl_buf_dispose(&b);
    /* 4: early secret, binder key, binder over the truncated ClientHello, early traffic secret. */
    is_int(ks_schedule_init(&ks, CRYPTO_HASH_SHA256, psk, 32), 0, "4: schedule from the PSK");
    is_trace(ks.early, 32, r, "early_secret", "4: early secret");
    is_int(ks_schedule_binder_key(&ks, out, 0), 0, "4: binder key derived");
    is_trace(out, 32, r, "binder_key", "4: binder key (\"res binder\")");
    const uint8_t *prefix = rfc8448_must(r, "client_hello_prefix", &l);
    uint8_t h[32], binder[32];
    is_int(crypto_digest(CRYPTO_HASH_SHA256, h, prefix, l), 0, "4: binder hash");
    is_trace(h, 32, r, "binder_hash", "4: binder hash = SHA-256(truncated ClientHello)");
    is_int(ks_verify_data(CRYPTO_HASH_SHA256, binder, out, h), 0, "4: binder computed");
    is_trace(binder, 32, r, "psk_binder", "4: PSK binder");
    is_int(ks_schedule_early(&ks, rfc8448_must(r, "transcript_hash_ch", &l)), 0, "4: early secrets derived");
    is_trace(ks.client_early, 32, r, "client_early_traffic_secret", "4: client early traffic secret");
    is_trace(ks.early_exporter, 32, r, "early_exporter_master_secret", "4: early exporter master secret");
    ks_schedule_dispose(&ks);
    rfc8448_free(s);
    rfc8448_free(r);
}

/* RFC 8448 3 through the engine with tickets on: the NewSessionTicket after the client Finished carries the
 * trace's fields, its ticket opens to the trace's resumption PSK, and it used seq 0 as NSS's did. */
static void test_rfc8448_simple_ticket(void)
{
    struct rfc8448 *r = rfc8448_load("simple-1rtt.txt");
    struct fx f;
    struct kl_buf out, app, pt;
    struct rec_dir srd;
    size_t l, n;
    const uint8_t *v;
    uint8_t type = 0;
    static const uint8_t nonce0[2] = {0, 0};
    fx_init(&f);
    kl_buf_init(&out, 1 << 16);
    kl_buf_init(&app, 1 << 16);
    kl_buf_init(&pt, 1 << 16);
    rec_dir_init(&srd, 0);
    f.hooks.server_random = rfc8448_must(r, "server_random", &l);
    f.hooks.server_ephemeral_private =
        rfc8448_must(r, "server_ephemeral_private", &f.hooks.server_ephemeral_private_len);
    v = rfc8448_must(r, "encrypted_extensions", &l);
    f.hooks.encrypted_extensions_body = v + 6;
    f.hooks.encrypted_extensions_body_len = l - 6;
    f.hooks.ticket_nonce = nonce0;
    f.hooks.ticket_nonce_len = 2;
    f.hooks.force_ticket_age_add = 1;
    f.hooks.ticket_age_add = 0xfad6aac5;
    f.cfg.test = &f.hooks;
    f.cfg.n_alpn = 0;
    f.cfg.tickets.count = 1;
    f.cfg.tickets.lifetime = 30;
    struct tls_conn *c = tls_conn_new(&f.cfg, 3);
    v = rfc8448_must(r, "client_hello_record", &l);
    n = l;
    is_int(tls_conn_input(c, &out, &app, v, &n), KL_ERR_ASYNC, "3+tickets: a full handshake (signature needed)");
    v = rfc8448_must(r, "certificate_verify", &l);
    is_int(tls_conn_sign_done(c, &out, v + 8, l - 8), 0, "3+tickets: the trace's signature");
    kl_buf_reset(&out);
    v = rfc8448_must(r, "client_finished_record", &l);
    n = l;
    is_int(tls_conn_input(c, &out, &app, v, &n), 0, "3+tickets: client Finished");
    ok(tls_conn_established(c) && out.len != 0, "3+tickets: the NewSessionTicket answers the client Finished");
    v = rfc8448_must(r, "server_application_key", &l);
    const uint8_t *iv = rfc8448_must(r, "server_application_iv", &n);
    if (rec_dir_set_keys(&srd, TLS_AES_128_GCM_SHA256, v, l, iv) != 0)
        diag("keys");
    struct rec_record rr;
    ok(rec_next(&rr, out.base, out.len, 0) == 0 && rr.wire_len == out.len && rec_open(&srd, &pt, &type, &rr) == 0 &&
           type == REC_TYPE_HANDSHAKE,
       "3+tickets: one record under the server application key, seq 0");
    struct wire_reader rd, exts;
    uint32_t lifetime = 0, age_add = 0, max_early = 0;
    uint16_t et = 0;
    struct kl_span nonce, ticket;
    uint8_t mt = 0;
    uint32_t ml = 0;
    wire_reader_init(&rd, pt.base, pt.len);
    ok(wire_read_u8(&rd, &mt) == 0 && mt == MSG_NEW_SESSION_TICKET && wire_read_u24(&rd, &ml) == 0 &&
           ml == pt.len - 4 && wire_read_u32(&rd, &lifetime) == 0 && wire_read_u32(&rd, &age_add) == 0 &&
           wire_read_vec_span(&rd, &nonce, 1, 0, 255) == 0 && wire_read_vec_span(&rd, &ticket, 2, 1, 0xffff) == 0 &&
           wire_read_vec(&rd, &exts, 2) == 0 && wire_reader_end(&rd) == 0 && wire_read_u16(&exts, &et) == 0 &&
           et == EXT_EARLY_DATA && wire_read_u16(&exts, &et) == 0 && et == 4 && wire_read_u32(&exts, &max_early) == 0 &&
           wire_reader_end(&exts) == 0,
       "3+tickets: NewSessionTicket parses, one extension: early_data");
    is_int(lifetime, 30, "3+tickets: ticket_lifetime as the trace (30 s)");
    is_int(age_add, 0xfad6aac5, "3+tickets: ticket_age_add as the trace");
    is_mem(nonce.base, nonce.len, nonce0, 2, "3+tickets: ticket_nonce 00 00 as the trace");
    is_int(max_early, 1024, "3+tickets: max_early_data 1024 as the trace");
    struct ticket_state st;
    is_int(ticket_open(&st, &keys_held, ticket.base, ticket.len), 0, "3+tickets: our ticket opens");
    is_trace(st.psk, st.psk_len, r, "resumption_psk", "3+tickets: it carries the trace's resumption PSK");
    ok(st.suite == TLS_AES_128_GCM_SHA256 && strcmp(st.sni, "server") == 0 && st.lifetime == 30 &&
           st.age_add == 0xfad6aac5 && !st.peer.present,
       "3+tickets: suite, SNI, lifetime, age_add inside");
    crypto_wipe(&st, sizeof(st));
    ok(strstr(trace_log, "ClientFinished,NewSessionTicket,") != NULL, "3+tickets: traced");
    /* The ticket took seq 0, so our first application record is the trace's (seq 1) byte for byte. */
    kl_buf_reset(&out);
    v = rfc8448_must(r, "server_application_data_plaintext", &l);
    is_int(tls_conn_send(c, &out, v, l), 0, "3+tickets: server application data");
    is_trace(out.base, out.len, r, "server_application_data_record", "3+tickets: its record byte for byte (seq 1)");
    tls_conn_free(c);
    rec_dir_dispose(&srd);
    kl_buf_dispose(&out);
    kl_buf_dispose(&app);
    kl_buf_dispose(&pt);
    fx_free(&f);
    rfc8448_free(r);
}

static int accept_all(void *arg, const uint8_t *binder, size_t len, uint64_t expires_ms)
{
    (void)arg;
    (void)binder;
    (void)len;
    (void)expires_ms;
    return 1;
}

/* RFC 8448 4 through the engine: NSS's ticket injected as the README says; the flight byte for byte. */
static void test_rfc8448_resumed_0rtt(int early_limit)
{
    struct rfc8448 *r = rfc8448_load("resumed-0rtt.txt");
    struct fx f;
    struct msg_client_hello ch;
    struct wire_reader ids, binders;
    struct ext_psk psk;
    struct kl_buf out, app;
    size_t l, n;
    const uint8_t *v;
    fx_init(&f);
    kl_buf_init(&out, 1 << 16);
    kl_buf_init(&app, 1 << 16);
    const uint8_t *chm = rfc8448_must(r, "client_hello", &l);
    if (msg_client_hello_decode(&ch, chm + 4, l - 4) != 0) {
        ok(0, "4: ClientHello decodes");
        goto done;
    }
    wire_reader_init(&ids, ch.ext.psk_identities.base, ch.ext.psk_identities.len);
    wire_reader_init(&binders, ch.ext.psk_binders.base, ch.ext.psk_binders.len);
    ok(ext_psk_next(&ids, &binders, &psk) == 1 && ch.ext.n_psk == 1, "4: one PSK offered");
    is_trace(psk.binder.base, psk.binder.len, r, "psk_binder", "4: its binder is the trace's");
    f.hooks.server_random = rfc8448_must(r, "server_random", &n);
    f.hooks.server_ephemeral_private =
        rfc8448_must(r, "server_ephemeral_private", &f.hooks.server_ephemeral_private_len);
    v = rfc8448_must(r, "encrypted_extensions", &n);
    f.hooks.encrypted_extensions_body = v + 6;
    f.hooks.encrypted_extensions_body_len = n - 6;
    f.hooks.psk_identity = psk.identity.base;
    f.hooks.psk_identity_len = psk.identity.len;
    f.hooks.psk = rfc8448_must(r, "psk", &f.hooks.psk_len);
    f.hooks.psk_age_add = 0xfad6aac5;
    f.hooks.psk_max_early_data = 1024;
    f.cfg.test = &f.hooks;
    f.cfg.tickets.keys = NULL; /* only the injected identity: no tickets issued either */
    f.cfg.tickets.replay = accept_all;
    f.cfg.tickets.max_early_data = early_limit ? 3 : 1024;
    f.cfg.n_alpn = 0;
    f.cert.names[0] = "rsa";
    struct tls_conn *c = tls_conn_new(&f.cfg, 4);
    v = rfc8448_must(r, "client_hello_record", &l);
    n = l;
    is_int(tls_conn_input(c, &out, &app, v, &n), 0, "4: resumed ClientHello: no signature needed");
    ok(tls_conn_resumed(c) && tls_conn_early_data_accepted(c), "4: resumed, 0-RTT accepted");
    struct kl_buf b;
    kl_buf_init(&b, 1 << 16);
    v = rfc8448_must(r, "server_hello_record", &n);
    if (kl_buf_append(&b, v, n) != 0)
        diag("append");
    v = rfc8448_must(r, "server_encrypted_flight_record", &n);
    if (kl_buf_append(&b, v, n) != 0)
        diag("append");
    is_mem(out.base, out.len, b.base, b.len, "4: ServerHello and {EncryptedExtensions, Finished} byte for byte");
    kl_buf_dispose(&b);
    ok(strstr(trace_log, "PSK accepted,EarlyData accepted,") != NULL, "4: traced: PSK accepted, EarlyData accepted");
    ok(strstr(trace_log, "Certificate") == NULL, "4: no Certificate, no CertificateVerify");
    kl_buf_reset(&out);
    v = rfc8448_must(r, "early_data_record", &l);
    n = l;
    if (early_limit) {
        is_int(tls_conn_input(c, &out, &app, v, &n), KL_ERR_UNEXPECTED_MESSAGE,
               "4: 6 early bytes over a limit of 3: unexpected_message (4.2.10)");
        is_int(app.len, 0, "4: nothing over the limit is delivered");
        goto free_conn;
    }
    is_int(tls_conn_input(c, &out, &app, v, &n), 0, "4: early data record read");
    v = rfc8448_must(r, "early_data_plaintext", &l);
    is_mem(app.base, app.len, v, l, "4: early data delivered before the handshake completes");
    is_int((int)tls_conn_early_data_len(c), (int)l, "4: early_data_len counts it");
    ok(!tls_conn_early_data_done(c) && !tls_conn_established(c), "4: not done, not established");
    /* Client Finished before EndOfEarlyData: still under the early key, it is the wrong message. */
    v = rfc8448_must(r, "end_of_early_data_record", &l);
    n = l;
    is_int(tls_conn_input(c, &out, &app, v, &n), 0, "4: EndOfEarlyData (early key, seq 1)");
    ok(tls_conn_early_data_done(c), "4: early data done");
    v = rfc8448_must(r, "client_finished_record", &l);
    n = l;
    is_int(tls_conn_input(c, &out, &app, v, &n), 0, "4: client Finished over CH..EndOfEarlyData verifies");
    ok(tls_conn_established(c), "4: established");
    is_int(out.len, 0, "4: no NewSessionTicket without ticket keys");
    kl_buf_reset(&app);
    v = rfc8448_must(r, "client_application_data_record", &l);
    n = l;
    is_int(tls_conn_input(c, &out, &app, v, &n), 0, "4: client application data");
    v = rfc8448_must(r, "client_application_data_plaintext", &l);
    is_mem(app.base, app.len, v, l, "4: decrypts to the trace's plaintext");
    v = rfc8448_must(r, "server_application_data_plaintext", &l);
    is_int(tls_conn_send(c, &out, v, l), 0, "4: server application data sent");
    v = rfc8448_must(r, "server_application_data_record", &l);
    is_mem(out.base, out.len, v, l, "4: server application data record byte for byte");
free_conn:
    tls_conn_free(c);
done:
    kl_buf_dispose(&out);
    kl_buf_dispose(&app);
    fx_free(&f);
    rfc8448_free(r);
}

/* RFC 8448 4 negatives: the same ClientHello with a corrupted binder, and without 0-RTT config. */
static void test_rfc8448_binder_negative(void)
{
    struct rfc8448 *r = rfc8448_load("resumed-0rtt.txt");
    struct fx f;
    struct msg_client_hello ch;
    struct wire_reader ids, binders;
    struct ext_psk psk;
    struct kl_buf out, app;
    uint8_t rec[1024];
    size_t l, n;
    fx_init(&f);
    kl_buf_init(&out, 1 << 16);
    kl_buf_init(&app, 1 << 16);
    const uint8_t *chr = rfc8448_must(r, "client_hello_record", &l);
    size_t ch_len = l;
    if (l > sizeof(rec) || (memcpy(rec, chr, l), msg_client_hello_decode(&ch, rec + 9, l - 9)) != 0) {
        ok(0, "4: ClientHello decodes");
        goto done;
    }
    wire_reader_init(&ids, ch.ext.psk_identities.base, ch.ext.psk_identities.len);
    wire_reader_init(&binders, ch.ext.psk_binders.base, ch.ext.psk_binders.len);
    if (ext_psk_next(&ids, &binders, &psk) != 1) {
        ok(0, "4: PSK");
        goto done;
    }
    f.hooks.psk_identity = psk.identity.base;
    f.hooks.psk_identity_len = psk.identity.len;
    f.hooks.psk = rfc8448_must(r, "psk", &f.hooks.psk_len);
    f.hooks.psk_age_add = 0xfad6aac5;
    f.hooks.psk_max_early_data = 1024;
    f.cfg.test = &f.hooks;
    f.cfg.n_alpn = 0;
    /* The binder is the last 32 bytes of the record. */
    rec[l - 1] ^= 1;
    struct tls_conn *c = tls_conn_new(&f.cfg, 5);
    n = l;
    is_int(tls_conn_input(c, &out, &app, rec, &n), KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR),
           "4: a wrong binder is decrypt_error (4.2.11.2)");
    tls_conn_free(c);
    rec[l - 1] ^= 1;
    /* A listener without 0-RTT: resumed, early data refused and skipped. */
    f.cfg.tickets.max_early_data = 0;
    c = tls_conn_new(&f.cfg, 6);
    kl_buf_reset(&out);
    n = l;
    is_int(tls_conn_input(c, &out, &app, rec, &n), 0, "4: max_early_data 0: still resumed in 1-RTT");
    ok(tls_conn_resumed(c) && !tls_conn_early_data_accepted(c), "4: max_early_data 0: early data rejected");
    ok(strstr(trace_log, "EarlyData rejected") != NULL, "4: traced: EarlyData rejected");
    const uint8_t *e = rfc8448_must(r, "early_data_record", &l);
    n = l;
    is_int(tls_conn_input(c, &out, &app, e, &n), 0, "4: the refused early record is skipped");
    is_int(app.len, 0, "4: nothing delivered");
    tls_conn_free(c);
    /* The replay register says "seen" (or cannot tell): rejected, fails closed. */
    f.cfg.tickets.max_early_data = 1024;
    replay_fail = 1;
    c = tls_conn_new(&f.cfg, 7);
    n = ch_len;
    is_int(tls_conn_input(c, &out, &app, rec, &n), 0, "4: replayed ClientHello: resumed in 1-RTT");
    ok(tls_conn_resumed(c) && !tls_conn_early_data_accepted(c), "4: replay register refuses: early data rejected");
    tls_conn_free(c);
    /* No replay callback: fails closed too. */
    replay_fail = 0;
    f.cfg.tickets.replay = NULL;
    c = tls_conn_new(&f.cfg, 8);
    n = ch_len;
    is_int(tls_conn_input(c, &out, &app, rec, &n), 0, "4: no replay register: resumed");
    ok(!tls_conn_early_data_accepted(c), "4: no replay register: early data rejected");
    tls_conn_free(c);
done:
    kl_buf_dispose(&out);
    kl_buf_dispose(&app);
    fx_free(&f);
    rfc8448_free(r);
}

/* ---- round trips ---- */

static void test_round_trips(void)
{
    struct fx f;
    struct ttc issuer, t;
    struct ttc_config cc;
    struct ttc_psk_config pc;
    struct tls_conn *c;
    struct ttp_run r;
    fx_init(&f);
    cc = client_cfg();
    f.hooks.force_ticket_age_add = 1;
    f.hooks.ticket_age_add = 0x01020304;
    f.cfg.test = &f.hooks;
    ok(get_tickets(&f, &issuer, &cc), "full handshake: signed, 2 NewSessionTickets received");
    ok(strstr(trace_log, "ClientFinished,NewSessionTicket,NewSessionTicket,") != NULL,
       "traced: NewSessionTicket after the client Finished");
    is_int(issuer.tickets[0].lifetime, 3600, "NST: ticket_lifetime = tickets.lifetime");
    is_int(issuer.tickets[0].age_add, 0x01020304, "NST: ticket_age_add (forced by the test hook)");
    is_int(issuer.tickets[0].max_early_data, 1024, "NST: early_data max_early_data = tickets.max_early_data");
    ok(issuer.tickets[0].nonce_len == issuer.tickets[1].nonce_len &&
           memcmp(issuer.tickets[0].nonce, issuer.tickets[1].nonce, issuer.tickets[0].nonce_len) != 0,
       "NST: each ticket its own nonce");
    ok(memcmp(issuer.tickets[0].psk, issuer.tickets[1].psk, 32) != 0, "NST: so each ticket its own PSK");
    ok(issuer.tickets[0].ticket[0] == TICKET_VERSION &&
           memcmp(issuer.tickets[0].ticket + 1, keys_held.keys[1].key_id, TLS_TICKET_KEY_ID_LEN) == 0,
       "NST: sealed with the issue key");

    /* Resumption. */
    memset(&pc, 0, sizeof(pc));
    pc.resume = &issuer.tickets[0];
    c = tls_conn_new(&f.cfg, 2);
    trace_log[0] = 0;
    run(c, &t, &cc, &pc, f.key, &r);
    ok(r.done && !r.signed_, "resumption: done without a signature");
    ok(tls_conn_resumed(c) && t.resumed && t.selected == 0, "resumption: server and client agree it resumed");
    is_int(tls_conn_scheme(c), 0, "resumption: no signature scheme");
    ok(strstr(trace_log, "PSK accepted") != NULL && strstr(trace_log, "Certificate") == NULL,
       "resumption: traced PSK accepted, no Certificate");
    is_int(t.n_tickets, 2, "resumption: new tickets on the resumed connection too");
    ok(exchange(c, &t), "resumption: application data both ways");
    ok(strcmp(tls_conn_alpn(c), "h2") == 0 && strcmp(tls_conn_server_name(c), "server") == 0,
       "resumption: ALPN and SNI");
    ok(!tls_conn_peer_cert(c)->present, "resumption: no client identity (none was verified)");
    tls_conn_free(c);
    ttc_dispose(&t);

    /* The previous epoch's key still opens a ticket sealed with it (rotation). */
    keys_held.issue = 0;
    struct ttc old;
    ok(get_tickets(&f, &old, &cc), "tickets sealed with the previous epoch");
    keys_held.issue = 1;
    pc.resume = &old.tickets[0];
    c = tls_conn_new(&f.cfg, 3);
    run(c, &t, &cc, &pc, f.key, &r);
    ok(r.done && !r.signed_ && tls_conn_resumed(c), "previous epoch still held: resumed");
    tls_conn_free(c);
    ttc_dispose(&t);
    /* The epoch no longer held: a full handshake, no alert. */
    keys_held.keys[0].epoch = 99;
    c = tls_conn_new(&f.cfg, 4);
    run(c, &t, &cc, &pc, f.key, &r);
    ok(r.done && r.signed_ && !tls_conn_resumed(c), "epoch no longer held: full handshake");
    tls_conn_free(c);
    ttc_dispose(&t);
    ttc_dispose(&old);
    keys_reset();

    /* 0-RTT. */
    static const uint8_t early[] = "GET / HTTP/1.1\r\n\r\n";
    pc.resume = &issuer.tickets[1];
    pc.early = early;
    pc.early_len = sizeof(early) - 1;
    c = tls_conn_new(&f.cfg, 5);
    trace_log[0] = 0;
    run(c, &t, &cc, &pc, f.key, &r);
    ok(r.done && !r.signed_ && tls_conn_resumed(c), "0-RTT: resumed");
    ok(tls_conn_early_data_accepted(c) && t.early_accepted, "0-RTT: accepted on both sides");
    is_mem(r.app.base, r.app.len, early, sizeof(early) - 1, "0-RTT: the early bytes reached the application");
    is_int((int)tls_conn_early_data_len(c), (int)(sizeof(early) - 1), "0-RTT: early_data_len");
    ok(tls_conn_early_data_done(c), "0-RTT: EndOfEarlyData seen");
    ok(strstr(trace_log, "EarlyData accepted") != NULL && strstr(trace_log, "EndOfEarlyData") != NULL, "0-RTT: traced");
    ok(exchange(c, &t), "0-RTT: then 1-RTT application data");
    kl_buf_dispose(&r.app);
    tls_conn_free(c);
    ttc_dispose(&t);
    /* The same ticket again: another binder, so the register takes it; a garbage identity first makes
     * the ticket identity 1, and 0-RTT is only for the first identity (4.2.10). */
    pc.psk_garbage_first = 1;
    c = tls_conn_new(&f.cfg, 6);
    run(c, &t, &cc, &pc, f.key, &r);
    ok(r.done && !r.signed_ && tls_conn_resumed(c) && t.selected == 1,
       "garbage first identity: skipped, the second is selected");
    ok(!tls_conn_early_data_accepted(c) && !t.early_accepted && r.app.len == 0,
       "garbage first identity: early data rejected and skipped (not the first identity)");
    kl_buf_dispose(&r.app);
    tls_conn_free(c);
    ttc_dispose(&t);
    /* The ninth identity is never tried (HS_MAX_PSK_TRIED): a full handshake. */
    pc.psk_garbage_first = 8;
    c = tls_conn_new(&f.cfg, 60);
    run(c, &t, &cc, &pc, f.key, &r);
    ok(r.done && r.signed_ && !tls_conn_resumed(c), "ticket as the 9th identity: not tried, full handshake");
    kl_buf_dispose(&r.app);
    tls_conn_free(c);
    ttc_dispose(&t);
    pc.psk_garbage_first = 7;
    c = tls_conn_new(&f.cfg, 61);
    run(c, &t, &cc, &pc, f.key, &r);
    ok(r.done && !r.signed_ && tls_conn_resumed(c) && t.selected == 7, "ticket as the 8th identity: resumed");
    kl_buf_dispose(&r.app);
    tls_conn_free(c);
    ttc_dispose(&t);
    pc.psk_garbage_first = 0;
    /* A replayed ClientHello with its 0-RTT (the same bytes to a second connection): the register has its
     * binder, so the second connection rejects the early data and still answers in 1-RTT. */
    {
        struct kl_buf c2s, o1, o2, a1, a2;
        size_t n1, n2;
        kl_buf_init(&c2s, 1 << 16);
        kl_buf_init(&o1, 1 << 16);
        kl_buf_init(&o2, 1 << 16);
        kl_buf_init(&a1, 1 << 16);
        kl_buf_init(&a2, 1 << 16);
        struct tls_conn *c1 = tls_conn_new(&f.cfg, 40), *c2 = tls_conn_new(&f.cfg, 41);
        is_int(ttc_start_psk(&t, &cc, &pc, &c2s), 0, "replay: client hello and 0-RTT captured");
        n1 = n2 = c2s.len;
        is_int(tls_conn_input(c1, &o1, &a1, c2s.base, &n1), 0, "replay: first use");
        ok(tls_conn_early_data_accepted(c1) && a1.len == sizeof(early) - 1, "replay: first use accepts 0-RTT");
        is_int(tls_conn_input(c2, &o2, &a2, c2s.base, &n2), 0, "replay: second use of the same bytes");
        ok(tls_conn_resumed(c2) && !tls_conn_early_data_accepted(c2) && a2.len == 0 && o2.len != 0,
           "replay: second use rejects 0-RTT (binder seen), resumes in 1-RTT and answers");
        tls_conn_free(c1);
        tls_conn_free(c2);
        ttc_dispose(&t);
        kl_buf_dispose(&c2s);
        kl_buf_dispose(&o1);
        kl_buf_dispose(&o2);
        kl_buf_dispose(&a1);
        kl_buf_dispose(&a2);
    }
    /* Replay: the register refuses. */
    replay_fail = 1;
    c = tls_conn_new(&f.cfg, 7);
    run(c, &t, &cc, &pc, f.key, &r);
    ok(r.done && tls_conn_resumed(c) && !tls_conn_early_data_accepted(c) && r.app.len == 0,
       "replay refused: early data rejected, handshake completes in 1-RTT");
    kl_buf_dispose(&r.app);
    tls_conn_free(c);
    ttc_dispose(&t);
    replay_fail = 0;
    /* A listener with max_early_data = 0. */
    f.cfg.tickets.max_early_data = 0;
    c = tls_conn_new(&f.cfg, 8);
    run(c, &t, &cc, &pc, f.key, &r);
    ok(r.done && tls_conn_resumed(c) && !tls_conn_early_data_accepted(c) && r.app.len == 0,
       "listener without 0-RTT: early data skipped, resumed in 1-RTT");
    kl_buf_dispose(&r.app);
    tls_conn_free(c);
    ttc_dispose(&t);
    f.cfg.tickets.max_early_data = 1024;
    /* Another ALPN than the ticket's: resumed, no 0-RTT. */
    cc.alpn = "http/1.1";
    c = tls_conn_new(&f.cfg, 9);
    run(c, &t, &cc, &pc, f.key, &r);
    ok(r.done && tls_conn_resumed(c) && !tls_conn_early_data_accepted(c), "other ALPN: resumed without 0-RTT");
    kl_buf_dispose(&r.app);
    tls_conn_free(c);
    ttc_dispose(&t);
    cc.alpn = "h2";
    /* Another host: resumes, never accepts 0-RTT. */
    f.cfg.tickets.host_id[0] ^= 1;
    c = tls_conn_new(&f.cfg, 10);
    run(c, &t, &cc, &pc, f.key, &r);
    ok(r.done && tls_conn_resumed(c) && !tls_conn_early_data_accepted(c), "other host: resumed without 0-RTT");
    kl_buf_dispose(&r.app);
    tls_conn_free(c);
    ttc_dispose(&t);
    f.cfg.tickets.host_id[0] ^= 1;
    /* More early data than max_early_data. */
    uint8_t big[1500];
    memset(big, 'x', sizeof(big));
    pc.early = big;
    pc.early_len = sizeof(big);
    c = tls_conn_new(&f.cfg, 11);
    run(c, &t, &cc, &pc, f.key, &r);
    is_int(r.server_err, KL_ERR_UNEXPECTED_MESSAGE, "early data over max_early_data: unexpected_message");
    is_int(r.app.len, 0, "early data over max_early_data: nothing delivered");
    kl_buf_dispose(&r.app);
    tls_conn_free(c);
    ttc_dispose(&t);
    pc.early = NULL;
    pc.early_len = 0;

    /* psk_ke: only when the listener allows it. */
    pc.psk_modes = 1;
    c = tls_conn_new(&f.cfg, 12);
    run(c, &t, &cc, &pc, f.key, &r);
    ok(r.done && r.signed_ && !tls_conn_resumed(c), "psk_ke offered, not allowed: full handshake");
    tls_conn_free(c);
    ttc_dispose(&t);
    f.cfg.tickets.allow_psk_ke = 1;
    c = tls_conn_new(&f.cfg, 13);
    run(c, &t, &cc, &pc, f.key, &r);
    ok(r.done && !r.signed_ && tls_conn_resumed(c), "psk_ke allowed: resumed");
    is_int(tls_conn_group(c), 0, "psk_ke: no (EC)DHE group");
    ok(exchange(c, &t), "psk_ke: application data");
    tls_conn_free(c);
    ttc_dispose(&t);
    pc.psk_modes = 3;
    c = tls_conn_new(&f.cfg, 14);
    run(c, &t, &cc, &pc, f.key, &r);
    ok(r.done && tls_conn_resumed(c) && tls_conn_group(c) == TLS_GROUP_X25519,
       "both modes offered: psk_dhe_ke preferred");
    tls_conn_free(c);
    ttc_dispose(&t);
    f.cfg.tickets.allow_psk_ke = 0;
    pc.psk_modes = 0;

    /* After a HelloRetryRequest: the second ClientHello's binder covers the new transcript. */
    struct ttc_config hrr = cc;
    hrr.shares[0] = TLS_GROUP_SECP384R1;
    hrr.groups[2] = TLS_GROUP_SECP384R1;
    hrr.n_groups = 3;
    c = tls_conn_new(&f.cfg, 15);
    trace_log[0] = 0;
    run(c, &t, &hrr, &pc, f.key, &r);
    ok(r.done && !r.signed_ && tls_conn_resumed(c) && t.hrr, "resumption after HelloRetryRequest");
    ok(strstr(trace_log, "HelloRetryRequest") != NULL, "HRR traced");
    tls_conn_free(c);
    ttc_dispose(&t);
    /* 0-RTT offered, then a HelloRetryRequest: the early records are skipped, the second ClientHello resumes. */
    static const uint8_t lost[] = "lost early data";
    pc.early = lost;
    pc.early_len = sizeof(lost);
    c = tls_conn_new(&f.cfg, 17);
    run(c, &t, &hrr, &pc, f.key, &r);
    ok(r.done && tls_conn_resumed(c) && !tls_conn_early_data_accepted(c) && r.app.len == 0,
       "0-RTT then HelloRetryRequest: early data skipped, resumed in 1-RTT");
    kl_buf_dispose(&r.app);
    tls_conn_free(c);
    ttc_dispose(&t);
    pc.early = NULL;
    pc.early_len = 0;
    pc.psk_bad_binder = 1;
    c = tls_conn_new(&f.cfg, 16);
    run(c, &t, &hrr, &pc, f.key, &r);
    is_int(r.server_err, KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR), "after HRR: a bad binder is decrypt_error");
    tls_conn_free(c);
    ttc_dispose(&t);
    pc.psk_bad_binder = 0;

    ttc_dispose(&issuer);
    fx_free(&f);
}

/* One resumption attempt with the knobs set; returns the server's result, *resumed_p and *signed_p. */
static int attempt(struct fx *f, const struct ttc_config *cc, const struct ttc_psk_config *pc, int *resumed_p,
                   int *signed_p)
{
    struct ttc t;
    struct ttp_run r;
    struct tls_conn *c = tls_conn_new(&f->cfg, 20);
    run(c, &t, cc, pc, f->key, &r);
    *resumed_p = tls_conn_resumed(c);
    *signed_p = r.signed_;
    int ret = r.server_err == 0 && !r.done ? -1 : r.server_err;
    kl_buf_dispose(&r.app);
    tls_conn_free(c);
    ttc_dispose(&t);
    return ret;
}

static void test_negative(void)
{
    struct fx f;
    struct ttc issuer;
    struct ttc_config cc;
    struct ttc_psk_config pc;
    int resumed, signed_;
    fx_init(&f);
    cc = client_cfg();
    f.hooks.now_ms = 1800000000000ULL;
    f.cfg.test = &f.hooks;
    ok(get_tickets(&f, &issuer, &cc), "tickets issued (clock fixed by the test hook)");
    memset(&pc, 0, sizeof(pc));
    pc.resume = &issuer.tickets[0];
    is_int(attempt(&f, &cc, &pc, &resumed, &signed_), 0, "baseline: the ticket resumes");
    ok(resumed && !signed_, "baseline: resumed");

    /* Alerts (RFC 8446 4.2.9, 4.2.11). */
    pc.psk_bad_binder = 1;
    is_int(attempt(&f, &cc, &pc, &resumed, &signed_), KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR),
           "bad binder: decrypt_error");
    pc.psk_bad_binder = 0;
    pc.psk_binder_len = 33;
    is_int(attempt(&f, &cc, &pc, &resumed, &signed_), KL_ERR_ILLEGAL_PARAMETER,
           "binder of 33 bytes for a SHA-256 PSK: illegal_parameter");
    pc.psk_binder_len = 31;
    is_int(attempt(&f, &cc, &pc, &resumed, &signed_), KL_ERR_DECODE, "binder under 32 bytes: decode_error");
    pc.psk_binder_len = 0;
    pc.psk_extra_binder = 1;
    is_int(attempt(&f, &cc, &pc, &resumed, &signed_), KL_ERR_ILLEGAL_PARAMETER,
           "identities/binders count mismatch: illegal_parameter");
    pc.psk_extra_binder = 0;
    pc.psk_not_last = 1;
    is_int(attempt(&f, &cc, &pc, &resumed, &signed_), KL_ERR_ILLEGAL_PARAMETER,
           "pre_shared_key not last: illegal_parameter");
    pc.psk_not_last = 0;
    pc.psk_no_modes = 1;
    is_int(attempt(&f, &cc, &pc, &resumed, &signed_), KL_ERR_ALERT(KL_ALERT_MISSING_EXTENSION),
           "PSK without psk_key_exchange_modes: missing_extension");
    pc.psk_no_modes = 0;

    /* Fallbacks to a full handshake (never an alert). */
    struct ttc_config other = cc;
    other.sni = "other";
    is_int(attempt(&f, &other, &pc, &resumed, &signed_), 0, "ticket from another SNI: handshake completes");
    ok(!resumed && signed_, "ticket from another SNI: full handshake");
    other = cc;
    other.suites[0] = TLS_AES_256_GCM_SHA384;
    other.n_suites = 1;
    is_int(attempt(&f, &other, &pc, &resumed, &signed_), 0, "ticket of another hash: handshake completes");
    ok(!resumed && signed_, "ticket of another hash (SHA-256 ticket, SHA-384 suite): full handshake");
    f.hooks.now_ms += 3600u * 1000u;
    pc.ticket_age_ms = 3600u * 1000u;
    is_int(attempt(&f, &cc, &pc, &resumed, &signed_), 0, "expired ticket: handshake completes");
    ok(!resumed && signed_, "expired ticket (age = lifetime): full handshake");
    f.hooks.now_ms -= 1000;
    pc.ticket_age_ms = 3600u * 1000u - 1000;
    is_int(attempt(&f, &cc, &pc, &resumed, &signed_), 0, "just before expiry: handshake completes");
    ok(resumed && !signed_, "just before expiry: resumed");
    f.hooks.now_ms = 1800000000000ULL + 30000;
    pc.ticket_age_ms = 5000;
    is_int(attempt(&f, &cc, &pc, &resumed, &signed_), 0, "age off by 25 s: handshake completes");
    ok(!resumed && signed_, "claimed age outside the 10 s window: full handshake");
    pc.ticket_age_ms = 25000;
    is_int(attempt(&f, &cc, &pc, &resumed, &signed_), 0, "age off by 5 s: handshake completes");
    ok(resumed, "claimed age within the window: resumed");
    f.hooks.now_ms = 1800000000000ULL;
    pc.ticket_age_ms = 0;
    struct ttc_ticket bad = issuer.tickets[0];
    bad.ticket[bad.ticket_len / 2] ^= 0x20;
    pc.resume = &bad;
    is_int(attempt(&f, &cc, &pc, &resumed, &signed_), 0, "corrupted ticket: handshake completes");
    ok(!resumed && signed_, "corrupted ticket: full handshake");
    pc.resume = &issuer.tickets[0];
    keys_held.n = 1; /* the issuing epoch (index 1) dropped */
    is_int(attempt(&f, &cc, &pc, &resumed, &signed_), 0, "epoch no longer held: handshake completes");
    ok(!resumed && signed_, "epoch no longer held: full handshake");
    keys_reset();
    keys_fail = 1;
    is_int(attempt(&f, &cc, &pc, &resumed, &signed_), 0, "no ticket keys available: handshake completes");
    ok(!resumed && signed_, "no ticket keys available: full handshake");
    keys_fail = 0;
    /* The certificate the ticket was issued with is no longer configured. */
    uint8_t *der2 = malloc(f.der_len);
    memcpy(der2, f.der, f.der_len);
    der2[f.der_len - 1] ^= 1;
    f.cert.chain[0] = der2;
    is_int(attempt(&f, &cc, &pc, &resumed, &signed_), 0, "certificate changed: handshake completes");
    ok(!resumed, "certificate changed since the ticket: full handshake");
    f.cert.chain[0] = f.der;
    free(der2);
    /* A listener that requires client certificates: a ticket without identity is not resumed. */
    struct tls_client_ca *ca = NULL;
    enum tls_client_ca_error why;
    is_int(tls_client_ca_load(&ca, &why, mtls("ca.pem"), NULL, 4), 0, "client CA loads");
    f.cfg.client_auth = TLS_CLIENT_AUTH_REQUIRED;
    f.cfg.client_ca = ca;
    {
        struct ttc t;
        struct ttp_run r;
        struct tls_conn *c = tls_conn_new(&f.cfg, 21);
        trace_log[0] = 0;
        run(c, &t, &cc, &pc, f.key, &r);
        ok(r.signed_ && !tls_conn_resumed(c) && strstr(trace_log, "CertificateRequest") != NULL,
           "required client auth, ticket without identity: full handshake with CertificateRequest");
        is_int(r.server_err, KL_ERR_ALERT(KL_ALERT_CERTIFICATE_REQUIRED),
               "required client auth: the client without a certificate gets certificate_required");
        kl_buf_dispose(&r.app);
        tls_conn_free(c);
        ttc_dispose(&t);
    }
    f.cfg.client_auth = TLS_CLIENT_AUTH_NONE;
    f.cfg.client_ca = NULL;
    tls_client_ca_free(ca);
    ttc_dispose(&issuer);
    fx_free(&f);
}

/* mTLS: the ticket carries the verified client identity; a required-auth listener resumes it. */
static void test_identity(void)
{
    struct fx f;
    struct ttc issuer, t;
    struct ttc_config cc = client_cfg();
    struct ttc_psk_config pc;
    struct tls_client_ca *ca = NULL;
    enum tls_client_ca_error why;
    struct ttc_client_auth auth;
    struct ttp_run r;
    EVP_PKEY *ckey = NULL;
    uint8_t *cder = NULL;
    FILE *fp;
    fx_init(&f);
    is_int(tls_client_ca_load(&ca, &why, mtls("ca.pem"), NULL, 4), 0, "client CA loads");
    fp = fopen(mtls("client.key"), "r");
    ckey = fp != NULL ? PEM_read_PrivateKey(fp, NULL, NULL, NULL) : NULL;
    if (fp != NULL)
        fclose(fp);
    fp = fopen(mtls("client.pem"), "r");
    X509 *x = fp != NULL ? PEM_read_X509(fp, NULL, NULL, NULL) : NULL;
    if (fp != NULL)
        fclose(fp);
    int cl = x != NULL ? i2d_X509(x, &cder) : -1;
    X509_free(x);
    if (ca == NULL || ckey == NULL || cl <= 0) {
        ok(0, "mTLS fixtures load");
        goto done;
    }
    memset(&auth, 0, sizeof(auth));
    auth.client_chain[0] = cder;
    auth.client_chain_len[0] = (size_t)cl;
    auth.n_client_chain = 1;
    auth.client_sign = ttp_client_sign;
    auth.client_sign_arg = ckey;
    f.cfg.client_auth = TLS_CLIENT_AUTH_REQUIRED;
    f.cfg.client_ca = ca;
    {
        struct tls_conn *c = tls_conn_new(&f.cfg, 30);
        /* A full handshake with the client certificate. */
        struct ttp_run rr;
        ttp_run(c, &issuer, &cc, NULL, NULL, &auth, f.key, &rr);
        ok(tls_conn_established(c) && tls_conn_peer_cert(c)->present, "mTLS full handshake: identity verified");
        is_int(issuer.n_tickets, 2, "mTLS: tickets issued");
        kl_buf_dispose(&rr.app);
        const struct tls_peer_cert *p1 = tls_conn_peer_cert(c);
        struct tls_peer_cert first = *p1;
        tls_conn_free(c);
        memset(&pc, 0, sizeof(pc));
        pc.resume = &issuer.tickets[0];
        c = tls_conn_new(&f.cfg, 31);
        run(c, &t, &cc, &pc, f.key, &r);
        ok(r.done && !r.signed_ && tls_conn_resumed(c), "required client auth, ticket with identity: resumed");
        ok(memcmp(tls_conn_peer_cert(c), &first, sizeof(first)) == 0,
           "resumed: tls_conn_peer_cert is the identity of the full handshake");
        kl_buf_dispose(&r.app);
        tls_conn_free(c);
        ttc_dispose(&t);
        ttc_dispose(&issuer);
    }
done:
    EVP_PKEY_free(ckey);
    OPENSSL_free(cder);
    tls_client_ca_free(ca);
    fx_free(&f);
}

int main(void)
{
    test_ticket_format();
    test_rfc8448_psk_values();
    test_rfc8448_simple_ticket();
    test_rfc8448_resumed_0rtt(0);
    test_rfc8448_resumed_0rtt(1);
    test_rfc8448_binder_negative();
    test_round_trips();
    test_negative();
    test_identity();
    return kl_test_done();
}
