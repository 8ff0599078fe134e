/*
 * hs_server.c - the TLS 1.3 server handshake state machine (RFC 8446), sans-I/O.
 *
 * One enum hs_state and one dispatch point, hs_dispatch() (docs/HACKING.md: one dispatch point per state machine): each
 * state names the only handshake message it accepts; everything else is unexpected_message. Parsing is done by
 * msg_/ext_ (plain structs); this file only decides (docs/HACKING.md: parsing and deciding are apart).
 *
 * Flow: ClientHello → [HelloRetryRequest → ClientHello2] → ServerHello (plaintext record,
 * then one CCS in middlebox compatibility mode) → EncryptedExtensions, Certificate are
 * built and held → HS_WAIT_SIGNATURE (KL_ERR_ASYNC) → tls_conn_sign_done() adds
 * CertificateVerify and Finished and sends the whole encrypted flight in one record run →
 * client Finished → HS_ESTABLISHED.
 * With client authentication (tls_config.client_auth) a CertificateRequest follows
 * EncryptedExtensions, and after our Finished the client's Certificate
 * (HS_EXPECT_CLIENT_CERTIFICATE) and, if it was not empty, its CertificateVerify
 * (HS_EXPECT_CLIENT_CERTIFICATE_VERIFY) come before its Finished. The chain and the
 * signature are checked here through crypto.c; the signer never sees them.
 * Resumption (tls_config.tickets): after the client Finished, NewSessionTickets sealed by
 * ticket.c. A ClientHello whose pre_shared_key names a ticket that opens, fits and whose
 * binder verifies resumes: ServerHello with pre_shared_key, then EncryptedExtensions and
 * Finished at once (no Certificate, no signature, never KL_ERR_ASYNC). With 0-RTT accepted the
 * client's early data (HS_EXPECT_END_OF_EARLY_DATA, under its early traffic key) goes to app
 * until EndOfEarlyData, then its Finished under the handshake key.
 * Encrypted Client Hello (tls_config.ech, draft-ietf-tls-esni-22, ech.c): hs_client_hello() first decides on the
 * outer ClientHello (hs_ech). Accepted, the whole handshake above runs on the rebuilt ClientHelloInner (transcript,
 * SNI, ALPN, key share, PSK, certificate, 0-RTT) and ServerHello.random (or the HelloRetryRequest's extension)
 * carries the confirmation; the HPKE context stays in hs_hand to open the second ClientHello after a
 * HelloRetryRequest. Rejected, it runs on the outer ClientHello with no PSK or 0-RTT, and EncryptedExtensions
 * carries retry_configs.
 *
 * Memory: handshake-only state (transcript, key schedule, ephemeral key, the held flight)
 * lives in a separate heap block freed (wiped) once the client Finished is verified; an
 * established connection keeps only its two record directions and the exporter secret.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "crypto.h"
#include "ech.h"
#include "ext.h"
#include "key_schedule.h"
#include "msg.h"
#include "record.h"
#include "ticket.h"
#include "tls.h"
#include "wire.h"

enum hs_state {
    HS_EXPECT_CLIENT_HELLO,
    HS_EXPECT_CLIENT_HELLO_2,
    HS_WAIT_SIGNATURE,
    HS_EXPECT_CLIENT_FINISHED,
    HS_ESTABLISHED,
    HS_CLOSED,
    HS_FAILED,
    /* Client authentication (4.3.2, 4.4.2): after our Finished, before the client's. */
    HS_EXPECT_CLIENT_CERTIFICATE,
    HS_EXPECT_CLIENT_CERTIFICATE_VERIFY,
    /* 0-RTT accepted (4.2.10): early application data, then EndOfEarlyData, under the client early keys. */
    HS_EXPECT_END_OF_EARLY_DATA,
};

/* RFC 8446 4.2.10: when we refuse 0-RTT we skip the client's early data up to this many bytes. */
#define HS_MAX_EARLY_SKIP (4 * REC_MAX_CIPHERTEXT)
#define HS_COOKIE_VERSION 1
#define HS_COOKIE_MAC_LEN 32
#define HS_COOKIE_MAX (1 + 2 + 2 + CRYPTO_MAX_HASH + HS_COOKIE_MAC_LEN)
/* 4.2.11.1 / 8.3: how far the client's idea of a ticket's age may be from ours. */
#define HS_TICKET_AGE_WINDOW_MS 10000
#define HS_TICKET_LIFETIME_DEFAULT 7200
/* Offered identities we try to open: each costs an HKDF and an AEAD open, and a ClientHello can carry
 * about 1,600 of them; clients send one or two. Later ones are ignored (full handshake if none fits). */
#define HS_MAX_PSK_TRIED 8
/* PskKeyExchangeMode (4.2.9). */
#define HS_PSK_KE 0
#define HS_PSK_DHE_KE 1

static const uint16_t hs_default_suites[] = {TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384,
                                             TLS_CHACHA20_POLY1305_SHA256};
/* The groups of common/tls_ids.c marked by_default, in its order (config.c's default list). */
static const uint16_t hs_default_groups[] = {TLS_GROUP_X25519,    TLS_GROUP_SECP256R1, TLS_GROUP_SECP384R1,
                                             TLS_GROUP_X448,      TLS_GROUP_SECP521R1, TLS_GROUP_FFDHE2048,
                                             TLS_GROUP_FFDHE3072, TLS_GROUP_FFDHE4096};

/* Handshake-only state: allocated at the first ClientHello, wiped and freed after the client Finished. */
struct hs_hand {
    enum crypto_hash_alg alg;
    size_t hash_len;
    struct ks_transcript th;
    int th_live;
    struct ks_schedule ks;
    struct crypto_kex kex;
    struct kl_buf flight; /* EE ‖ Certificate (‖ CV ‖ Finished) until it is sealed */
    uint8_t sign_hash[CRYPTO_MAX_HASH];
    uint8_t client_finished[CRYPTO_MAX_HASH]; /* the verify_data we expect */
    /* After a HelloRetryRequest: what the second ClientHello must agree with (4.1.4). */
    uint8_t ch1_digest[32];
    uint16_t hrr_group;
    int early_data_offered;
    size_t early_skip_left;
    int ccs_seen;
    int send_groups;            /* supported_groups in EE: the client's first share was not our preference */
    uint16_t peer_record_limit; /* the client's record_size_limit (RFC 8449), 0 when absent */
    int cert_requested;         /* we sent CertificateRequest */
    uint8_t *peer_leaf;         /* the client's leaf certificate (DER), until its CertificateVerify is checked */
    size_t peer_leaf_len;
    /* PSK resumption (4.2.11): the ticket chosen in this ClientHello, its index and whether (EC)DHE goes with it. */
    int psk_ok;
    int psk_dhe;
    uint16_t psk_index;
    const struct tls_cert *psk_cert;     /* the certificate the ticket's full handshake presented */
    uint8_t psk_binder[CRYPTO_MAX_HASH]; /* its binder: the anti-replay key for 0-RTT (8) */
    struct ticket_state tk;
    /* ECH accepted in the first ClientHello: the HPKE receiver context (its next sequence number opens
     * the second ClientHello after HelloRetryRequest) and the config_id and suite it must repeat. */
    struct hpke_ctx ech_ctx;
    int ech_ctx_live;
    uint8_t ech_config_id;
    uint16_t ech_kdf_id, ech_aead_id;
};

struct tls_conn {
    const struct tls_config *cfg;
    uint64_t id;
    enum hs_state state;
    int error; /* sticky, once FAILED or CLOSED */
    struct rec_dir rd, wr;
    struct hs_hand *hs;
    struct kl_buf hs_in; /* handshake reassembly; empty (freed) between messages once established */
    uint16_t suite, group, scheme;
    enum crypto_hash_alg alg;
    const struct tls_cert *cert;
    const char *alpn;
    uint8_t client_random[32];
    uint8_t session_id[32];
    size_t session_id_len;
    int ccs_sent;
    int sent_close;
    int was_established;
    /* DoS caps (tls.h): counts since the last non-empty application data record. */
    unsigned n_key_updates, n_empty_records, n_warning_alerts;
    int key_update_owed; /* the peer asked for a KeyUpdate we have not sent yet (4.6.3) */
    uint8_t exporter[CRYPTO_MAX_HASH];
    char server_name[256];
    struct tls_peer_cert peer; /* the client's verified identity (mTLS), or the one the resumed ticket carried */
    int resumed;               /* the handshake resumed a ticket: no certificate, no signature */
    int early_accepted, early_done;
    uint64_t early_len; /* early application data bytes received so far */
    uint32_t early_max; /* the most we take (the ticket's max_early_data) */
    enum tls_ech_status ech_status;
    char *ech_outer_name; /* the outer ClientHello's SNI when it offered ECH (heap, only then: idle memory), or NULL */
};

/* ---- small helpers ---- */

static void hs_trace(const struct tls_conn *c, const char *event)
{
    if (c->cfg->trace != NULL)
        c->cfg->trace(c->cfg->trace_arg, c->id, event);
}

static void hs_keylog(const struct tls_conn *c, const char *label, const uint8_t *secret, size_t len)
{
    char line[KS_KEYLOG_LINE_MAX];
    if (c->cfg->keylog == NULL)
        return;
    if (ks_keylog_line(line, sizeof(line), label, c->client_random, secret, len) == 0)
        c->cfg->keylog(c->cfg->keylog_arg, line);
    crypto_wipe(line, sizeof(line));
}

static size_t hs_max_message(const struct tls_conn *c)
{
    return c->cfg->max_handshake_message ? c->cfg->max_handshake_message : MSG_DEFAULT_MAX;
}

/*
 * The largest body we take for a handshake message of this type in the current state (*cap_p),
 * checked when its 4-byte header arrives (before anything is buffered); returns 0 when the type
 * is never accepted here (unexpected_message). RFC 8446 has no alert for "longer than the message can be": a body
 * over its cap is a decode_error, like a body that does not parse.
 *
 * Memory a hostile client can make one connection cost through hs_in (hs_in_max()): one message
 * at its cap plus the 4-byte header plus one record's worth of the next message, i.e. at most
 * MSG_CLIENT_HELLO_MAX + 4 + 2^14 + 256 = 147,940 bytes before the first ClientHello is done
 * (max_handshake_message, when configured, lowers it), and after the handshake one KeyUpdate
 * (5 bytes) plus one record. The same bound is in docs/TLS-ENGINE.md.
 */
/* The largest ClientHello body we take: the syntactic maximum, or max_handshake_message when lower. */
static size_t hs_client_hello_cap(const struct tls_conn *c)
{
    size_t cfg_max = c->cfg->max_handshake_message;
    return cfg_max != 0 && cfg_max < MSG_CLIENT_HELLO_MAX ? cfg_max : MSG_CLIENT_HELLO_MAX;
}

static int hs_msg_cap(const struct tls_conn *c, uint8_t type, size_t *cap_p)
{
    switch (type) {
    case MSG_CLIENT_HELLO:
        if (c->state != HS_EXPECT_CLIENT_HELLO && c->state != HS_EXPECT_CLIENT_HELLO_2)
            return 0;
        *cap_p = hs_client_hello_cap(c);
        return 1;
    case MSG_FINISHED:
        /* 4.4.4: verify_data is exactly Hash.length bytes. */
        if (c->hs == NULL)
            return 0;
        *cap_p = c->hs->hash_len;
        return 1;
    case MSG_END_OF_EARLY_DATA:
        /* 4.5: an empty message, only after we accepted 0-RTT. */
        *cap_p = 0;
        return c->state == HS_EXPECT_END_OF_EARLY_DATA;
    case MSG_KEY_UPDATE:
        *cap_p = MSG_KEY_UPDATE_LEN;
        return c->state == HS_ESTABLISHED;
    case MSG_CERTIFICATE:
        *cap_p = hs_max_message(c);
        return 1;
    case MSG_CERTIFICATE_VERIFY:
        *cap_p = hs_max_message(c) < MSG_CERTIFICATE_VERIFY_MAX ? hs_max_message(c) : MSG_CERTIFICATE_VERIFY_MAX;
        return 1;
    default:
        /* What only a server sends (ServerHello, EncryptedExtensions, ...) and unknown types. */
        return 0;
    }
}

/* The reassembly buffer's bound: the largest message we take, its header, and one record more. */
static size_t hs_in_max(const struct tls_conn *c)
{
    size_t m = hs_max_message(c);
    if (c->cfg->max_handshake_message == 0 && m < MSG_CLIENT_HELLO_MAX)
        m = MSG_CLIENT_HELLO_MAX;
    return m + MSG_HEADER_LEN + REC_MAX_CIPHERTEXT;
}

static void hs_suites(const struct tls_config *cfg, const uint16_t **v, size_t *n)
{
    if (cfg->n_suites == 0 || cfg->n_suites > 3) {
        *v = hs_default_suites;
        *n = 3;
    } else {
        *v = cfg->suites;
        *n = cfg->n_suites;
    }
}

static void hs_groups(const struct tls_config *cfg, const uint16_t **v, size_t *n)
{
    if (cfg->n_groups == 0 || cfg->n_groups > TLS_MAX_GROUPS) {
        *v = hs_default_groups;
        *n = sizeof(hs_default_groups) / sizeof(hs_default_groups[0]);
    } else {
        *v = cfg->groups;
        *n = cfg->n_groups;
    }
}

static void hs_hand_free(struct tls_conn *c)
{
    struct hs_hand *h = c->hs;
    if (h == NULL)
        return;
    if (h->th_live)
        ks_transcript_dispose(&h->th);
    ks_schedule_dispose(&h->ks);
    crypto_kex_dispose(&h->kex);
    if (h->ech_ctx_live)
        hpke_ctx_dispose(&h->ech_ctx);
    kl_buf_dispose(&h->flight);
    free(h->peer_leaf);
    crypto_wipe(h, sizeof(*h));
    free(h);
    c->hs = NULL;
}

/* Drop bytes [from, len) of a buffer, wiping them. */
static void hs_truncate(struct kl_buf *b, size_t from)
{
    if (from < b->len) {
        crypto_wipe(b->base + from, b->len - from);
        b->len = from;
    }
}

/*
 * Enter FAILED with err and queue the alert RFC 8446 names, under the current write key.
 * A peer alert gets no answer; close_notify is not an error.
 */
static int hs_fail(struct tls_conn *c, struct kl_buf *out, int err)
{
    if (c->state == HS_FAILED)
        return c->error;
    if (err != KL_ERR_CLOSED && !kl_err_is_peer_alert(err) && out != NULL) {
        /* Best effort: if out is full the peer just sees the connection close. */
        if (rec_alert(&c->wr, out, kl_err_alert(err)) != 0) {
            /* nothing more we can do */
        }
    }
    c->state = HS_FAILED;
    c->error = err;
    hs_trace(c, kl_err_str(err));
    hs_hand_free(c);
    kl_buf_dispose(&c->hs_in);
    return err;
}

/* ---- connection lifetime ---- */

struct tls_conn *tls_conn_new(const struct tls_config *cfg, uint64_t conn_id)
{
    struct tls_conn *c;
    if (cfg == NULL || crypto_init() != 0)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->cfg = cfg;
    c->id = conn_id;
    c->state = HS_EXPECT_CLIENT_HELLO;
    rec_dir_init(&c->rd, 0);
    rec_dir_init(&c->wr, 1);
    /* The reassembly buffer holds at most one message plus one record's worth of the next. */
    kl_buf_init(&c->hs_in, hs_in_max(c));
    return c;
}

void tls_conn_free(struct tls_conn *c)
{
    if (c == NULL)
        return;
    hs_hand_free(c);
    rec_dir_dispose(&c->rd);
    rec_dir_dispose(&c->wr);
    kl_buf_dispose(&c->hs_in);
    free(c->ech_outer_name);
    crypto_wipe(c, sizeof(*c));
    free(c);
}

/* ---- negotiation (decisions on decoded structs only) ---- */

int tls_name_matches(const char *pattern, const char *host)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        /* A wildcard covers exactly one left-most label (RFC 6125 6.4.3). */
        const char *dot = strchr(host, '.');
        if (dot == NULL || dot == host)
            return 0;
        return strcasecmp(pattern + 1, dot) == 0;
    }
    return strcasecmp(pattern, host) == 0;
}

static uint16_t hs_cert_scheme(const struct tls_cert *cert, struct kl_span sig_algs)
{
    if (cert->n_chain == 0 || cert->chain[0] == NULL || cert->chain_len[0] == 0)
        return 0; /* nothing to send: never select it */
    for (size_t i = 0; i < cert->n_schemes && i < TLS_MAX_SCHEMES; i++) {
        if (ext_u16_list_has(sig_algs, cert->schemes[i]))
            return cert->schemes[i];
    }
    return 0;
}

/*
 * Certificate by SNI, then by the client's signature_algorithms: the first configured
 * certificate for the name with a scheme the client accepts. No name match: every
 * certificate in order (the first is the default) and SNI is not acknowledged.
 */
static int hs_select_cert(struct tls_conn *c, const struct msg_client_hello *ch, int *sni_ack_p)
{
    const struct tls_config *cfg = c->cfg;
    *sni_ack_p = 0;
    if (cfg->certs == NULL || cfg->n_certs == 0)
        return KL_ERR_HANDSHAKE_FAILURE;
    if (c->server_name[0] != '\0') {
        for (size_t i = 0; i < cfg->n_certs; i++) {
            const struct tls_cert *cert = &cfg->certs[i];
            for (size_t j = 0; j < cert->n_names && j < TLS_MAX_NAMES; j++) {
                if (cert->names[j] == NULL || !tls_name_matches(cert->names[j], c->server_name))
                    continue;
                uint16_t s = hs_cert_scheme(cert, ch->ext.sig_algs);
                if (s != 0) {
                    c->cert = cert;
                    c->scheme = s;
                    *sni_ack_p = 1;
                    return 0;
                }
                break;
            }
        }
    }
    for (size_t i = 0; i < cfg->n_certs; i++) {
        uint16_t s = hs_cert_scheme(&cfg->certs[i], ch->ext.sig_algs);
        if (s != 0) {
            c->cert = &cfg->certs[i];
            c->scheme = s;
            return 0;
        }
    }
    /* RFC 8446 4.4.2.2: no certificate the client can verify → handshake_failure. */
    return KL_ERR_HANDSHAKE_FAILURE;
}

static int hs_alpn_has(struct kl_span list, const char *proto)
{
    struct wire_reader r;
    size_t n = strlen(proto);
    wire_reader_init(&r, list.base, list.len);
    while (wire_remaining(&r) != 0) {
        struct kl_span name;
        if (wire_read_vec_span(&r, &name, 1, 1, 255) != 0)
            return 0;
        if (name.len == n && memcmp(name.base, proto, n) == 0)
            return 1;
    }
    return 0;
}

static int hs_select_alpn(struct tls_conn *c, const struct msg_client_hello *ch)
{
    c->alpn = NULL;
    if (!ext_has(&ch->ext, EXT_B_ALPN) || c->cfg->n_alpn == 0)
        return 0;
    for (size_t i = 0; i < c->cfg->n_alpn && i < TLS_MAX_ALPN; i++) {
        const char *p = c->cfg->alpn[i];
        if (p != NULL && p[0] != '\0' && strlen(p) <= 255 && hs_alpn_has(ch->ext.alpn, p)) {
            c->alpn = p;
            return 0;
        }
    }
    /* RFC 7301 3.2: no overlap → "no_application_protocol". */
    return KL_ERR_ALERT(KL_ALERT_NO_APPLICATION_PROTOCOL);
}

/*
 * Version, suite, group, certificate, ALPN. *share is the client's share for the chosen
 * group when *have_share_p is 1; 0 when a HelloRetryRequest is needed.
 */
static int hs_negotiate(struct tls_conn *c, const struct msg_client_hello *ch, struct ext_key_share *share,
                        int *have_share_p, int *sni_ack_p)
{
    const uint16_t *pref;
    size_t n;
    int ret;

    /* RFC 8446 D.5: "Any endpoint receiving a Hello message with ClientHello.legacy_version [...] set to
     * 0x0300 MUST abort the handshake with a "protocol_version" alert." Lower values (SSL 2-era) too. */
    if (ch->legacy_version <= 0x0300)
        return KL_ERR_ALERT(KL_ALERT_PROTOCOL_VERSION);
    /* RFC 8446 4.2.1: a server that only does TLS 1.3 answers a ClientHello without 0x0304 in
     * supported_versions (or without the extension) with protocol_version. */
    if (!ext_has(&ch->ext, EXT_B_SUPPORTED_VERSIONS) || !ext_u16_list_has(ch->ext.versions, TLS_VERSION_13))
        return KL_ERR_ALERT(KL_ALERT_PROTOCOL_VERSION);
    /* RFC 8446 9.2: certificate authentication needs signature_algorithms, (EC)DHE needs supported_groups
     * and key_share; "missing_extension" otherwise. */
    if (!ext_has(&ch->ext, EXT_B_SIGNATURE_ALGORITHMS) || !ext_has(&ch->ext, EXT_B_SUPPORTED_GROUPS) ||
        !ext_has(&ch->ext, EXT_B_KEY_SHARE))
        return KL_ERR_ALERT(KL_ALERT_MISSING_EXTENSION);
    /* RFC 8446 4.2.9: "If clients offer "pre_shared_key" without a "psk_key_exchange_modes" extension,
     * servers MUST abort the handshake." 9.2 names the alert: missing_extension. */
    if (ext_has(&ch->ext, EXT_B_PRE_SHARED_KEY) && !ext_has(&ch->ext, EXT_B_PSK_KEY_EXCHANGE_MODES))
        return KL_ERR_ALERT(KL_ALERT_MISSING_EXTENSION);

    c->suite = 0;
    hs_suites(c->cfg, &pref, &n);
    for (size_t i = 0; i < n && c->suite == 0; i++) {
        if (crypto_suite_hash(pref[i]) != 0 && ext_u16_list_has(ch->cipher_suites, pref[i]))
            c->suite = pref[i];
    }
    if (c->suite == 0)
        return KL_ERR_HANDSHAKE_FAILURE;

    c->group = 0;
    *have_share_p = 0;
    hs_groups(c->cfg, &pref, &n);
    /* RFC 8446 9.3: unknown groups in key_share are ignored, however many there are: one pass over the
     * shares per preferred group (n is at most a handful). */
    for (size_t i = 0; i < n && c->group == 0; i++) {
        struct wire_reader r;
        wire_reader_init(&r, ch->ext.key_shares.base, ch->ext.key_shares.len);
        while (crypto_kex_share_len(pref[i]) != 0 && ext_key_share_next(&r, share)) {
            if (share->group == pref[i]) {
                c->group = pref[i];
                *have_share_p = 1;
                break;
            }
        }
    }
    if (c->group != 0) {
        /* RFC 8446 4.2.8: "Each KeyShareEntry value MUST correspond to a group offered in the
         * "supported_groups" extension"; servers MAY check: illegal_parameter. */
        if (!ext_u16_list_has(ch->ext.groups, c->group))
            return KL_ERR_ILLEGAL_PARAMETER;
    } else {
        for (size_t i = 0; i < n && c->group == 0; i++) {
            if (crypto_kex_share_len(pref[i]) != 0 && ext_u16_list_has(ch->ext.groups, pref[i]))
                c->group = pref[i];
        }
        if (c->group == 0)
            return KL_ERR_HANDSHAKE_FAILURE;
    }

    c->server_name[0] = '\0';
    if (ext_has(&ch->ext, EXT_B_SERVER_NAME)) {
        /* ext_ guarantees 1..255 bytes without NUL. */
        struct wire_reader r;
        wire_reader_init(&r, ch->ext.server_name.base, ch->ext.server_name.len);
        if ((ret = wire_read_copy(&r, c->server_name, ch->ext.server_name.len)) != 0)
            return ret;
        c->server_name[ch->ext.server_name.len] = '\0';
    }
    if ((ret = hs_select_cert(c, ch, sni_ack_p)) != 0)
        return ret;
    return hs_select_alpn(c, ch);
}

/* Our most preferred group that the client lists in supported_groups (0 if none). */
static uint16_t hs_preferred_group(const struct tls_conn *c, const struct msg_client_hello *ch)
{
    const uint16_t *pref;
    size_t n;
    hs_groups(c->cfg, &pref, &n);
    for (size_t i = 0; i < n; i++) {
        if (crypto_kex_share_len(pref[i]) != 0 && ext_u16_list_has(ch->ext.groups, pref[i]))
            return pref[i];
    }
    return 0;
}

/* A digest of the ClientHello fields the second ClientHello must repeat unchanged (4.1.2). */
static int hs_ch_digest(uint8_t out[32], const struct msg_client_hello *ch)
{
    struct kl_buf b;
    const struct kl_span parts[] = {ch->cipher_suites, ch->ext.groups, ch->ext.sig_algs,    ch->ext.sig_algs_cert,
                                    ch->ext.versions,  ch->ext.alpn,   ch->ext.server_name, ch->ext.psk_modes};
    size_t m;
    int ret;
    kl_buf_init(&b, 1 << 18);
    KL_TRY(wire_put_u16(&b, ch->legacy_version));
    KL_TRY(wire_put_bytes(&b, ch->random, 32));
    KL_TRY(wire_block_open(&b, &m, 1));
    KL_TRY(wire_put_bytes(&b, ch->session_id, ch->session_id_len));
    KL_TRY(wire_block_close(&b, m, 1));
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        KL_TRY(wire_put_u8(&b, parts[i].base != NULL));
        KL_TRY(wire_block_open(&b, &m, 2));
        KL_TRY(wire_put_bytes(&b, parts[i].base, parts[i].len));
        KL_TRY(wire_block_close(&b, m, 2));
    }
    KL_TRY(crypto_digest(CRYPTO_HASH_SHA256, out, b.base, b.len));
exit:
    kl_buf_dispose(&b);
    return ret;
}

/* cookie = version ‖ suite ‖ group ‖ Hash(ClientHello1) ‖ HMAC-SHA256(cookie_key, all before). */
static int hs_cookie_make(const struct tls_conn *c, uint8_t *cookie, size_t *len_p, const uint8_t *ch1_hash,
                          size_t hash_len)
{
    struct kl_buf b;
    uint8_t mac[HS_COOKIE_MAC_LEN];
    int ret;
    kl_buf_init(&b, HS_COOKIE_MAX);
    KL_TRY(wire_put_u8(&b, HS_COOKIE_VERSION));
    KL_TRY(wire_put_u16(&b, c->suite));
    KL_TRY(wire_put_u16(&b, c->group));
    KL_TRY(wire_put_bytes(&b, ch1_hash, hash_len));
    KL_TRY(crypto_hmac(CRYPTO_HASH_SHA256, mac, c->cfg->cookie_key, sizeof(c->cfg->cookie_key), b.base, b.len));
    KL_TRY(wire_put_bytes(&b, mac, sizeof(mac)));
    {
        struct wire_reader r;
        wire_reader_init(&r, b.base, b.len);
        KL_TRY(wire_read_copy(&r, cookie, b.len));
    }
    *len_p = b.len;
exit:
    crypto_wipe(mac, sizeof(mac));
    kl_buf_dispose(&b);
    return ret;
}

/* ---- the ClientHello ---- */

static int hs_send_ccs_once(struct tls_conn *c, struct kl_buf *out)
{
    static const uint8_t one = 1;
    /* RFC 8446 D.4: in middlebox compatibility mode (the client sent a non-empty
     * legacy_session_id) the server "sends a dummy change_cipher_spec record immediately after
     * its first handshake message. This may either be after a ServerHello or a HelloRetryRequest." */
    if (c->session_id_len == 0 || c->ccs_sent)
        return 0;
    c->ccs_sent = 1;
    return rec_seal(&c->wr, out, REC_TYPE_CHANGE_CIPHER_SPEC, &one, 1, 0);
}

static int hs_send_hrr(struct tls_conn *c, struct kl_buf *out, const uint8_t *msg, size_t len,
                       const struct msg_client_hello *ch)
{
    struct hs_hand *h = c->hs;
    const struct tls_test_hooks *t = c->cfg->test;
    uint8_t ch1_hash[CRYPTO_MAX_HASH], cookie[HS_COOKIE_MAX], conf[ECH_CONFIRMATION_LEN] = {0};
    const uint8_t *ck = cookie;
    size_t ck_len;
    struct kl_buf e, m;
    int ret;
    kl_buf_init(&e, 1024);
    kl_buf_init(&m, 1024);

    KL_TRY(crypto_digest(h->alg, ch1_hash, msg, len));
    KL_TRY(hs_cookie_make(c, cookie, &ck_len, ch1_hash, h->hash_len));
    if (t != NULL && t->hrr_cookie != NULL) {
        ck = t->hrr_cookie;
        ck_len = t->hrr_cookie_len;
    }
    KL_TRY(hs_ch_digest(h->ch1_digest, ch));
    h->hrr_group = c->group;
    h->early_data_offered = ext_has(&ch->ext, EXT_B_EARLY_DATA);
    h->early_skip_left = h->early_data_offered ? HS_MAX_EARLY_SKIP : 0;

    /* RFC 8448 5 order: key_share, cookie, supported_versions (then encrypted_client_hello, last). */
    KL_TRY(ext_key_share_hrr_encode(&e, c->group));
    KL_TRY(ext_cookie_encode(&e, ck, ck_len));
    KL_TRY(ext_supported_versions_sh_encode(&e, TLS_VERSION_13));
    size_t ech_at = e.len;
    if (c->ech_status == TLS_ECH_ACCEPTED)
        KL_TRY(ext_ech_hrr_encode(&e, conf)); /* zeros for now */
    struct msg_server_hello sh = {NULL, c->session_id, c->session_id_len, c->suite, kl_span_of(e.base, e.len)};
    KL_TRY(msg_server_hello_encode(&m, &sh, 1));

    /* RFC 8446 4.4.1: ClientHello1 is replaced by message_hash in the transcript. */
    KL_TRY(ks_transcript_init(&h->th, h->alg));
    h->th_live = 1;
    KL_TRY(ks_transcript_add(&h->th, msg, len));
    KL_TRY(ks_transcript_hrr_rewrite(&h->th));
    if (c->ech_status == TLS_ECH_ACCEPTED) {
        /* draft-ietf-tls-esni-22 7.2.1: the HRR's confirmation is HKDF-Expand-Label(HKDF-Extract(0,
         * ClientHelloInner1.random), "hrr ech accept confirmation", Hash(message_hash ‖ HRR with the
         * confirmation zeroed), 8). */
        KL_TRY(crypto_hash_ctx_peek_extra(&h->th.h, ch1_hash, m.base, m.len));
        KL_TRY(ech_confirmation(conf, h->alg, c->client_random, ECH_HRR_ACCEPT_LABEL, ch1_hash));
        hs_truncate(&e, ech_at);
        KL_TRY(ext_ech_hrr_encode(&e, conf));
        kl_buf_reset(&m);
        sh.ext = kl_span_of(e.base, e.len);
        KL_TRY(msg_server_hello_encode(&m, &sh, 1));
    }
    KL_TRY(ks_transcript_add(&h->th, m.base, m.len));

    KL_TRY(rec_seal(&c->wr, out, REC_TYPE_HANDSHAKE, m.base, m.len, 0));
    KL_TRY(hs_send_ccs_once(c, out));
    hs_trace(c, "HelloRetryRequest");
    c->state = HS_EXPECT_CLIENT_HELLO_2;
exit:
    crypto_wipe(ch1_hash, sizeof(ch1_hash));
    kl_buf_dispose(&e);
    kl_buf_dispose(&m);
    return ret;
}

/* RFC 8446 4.1.4 / 4.1.2: the second ClientHello against the first and the HelloRetryRequest. */
static int hs_check_ch2(struct tls_conn *c, const struct msg_client_hello *ch)
{
    struct hs_hand *h = c->hs;
    const struct tls_test_hooks *t = c->cfg->test;
    uint8_t digest[32];
    int ret;

    if (ch->ext.n_shares != 1 || ch->ext.first_share.group != h->hrr_group)
        return KL_ERR_ILLEGAL_PARAMETER; /* "exactly the one group requested" */
    if (ext_has(&ch->ext, EXT_B_EARLY_DATA))
        return KL_ERR_ILLEGAL_PARAMETER; /* "Removing the "early_data" extension ... if one was present" */
    if (!ext_has(&ch->ext, EXT_B_COOKIE))
        return KL_ERR_ILLEGAL_PARAMETER; /* the cookie must be echoed */
    if (t != NULL && t->hrr_cookie != NULL) {
        if (ch->ext.cookie.len != t->hrr_cookie_len ||
            !crypto_equal(ch->ext.cookie.base, t->hrr_cookie, t->hrr_cookie_len))
            return KL_ERR_ILLEGAL_PARAMETER;
    } else {
        /* Stateless check: recompute the MAC over the cookie's own fields, then check that they are ours. */
        struct wire_reader r;
        uint8_t ver, mac[HS_COOKIE_MAC_LEN];
        uint16_t suite, group;
        struct kl_span hash, got_mac;
        wire_reader_init(&r, ch->ext.cookie.base, ch->ext.cookie.len);
        if (wire_read_u8(&r, &ver) != 0 || wire_read_u16(&r, &suite) != 0 || wire_read_u16(&r, &group) != 0 ||
            wire_read_span(&r, &hash, h->hash_len) != 0 || wire_read_span(&r, &got_mac, HS_COOKIE_MAC_LEN) != 0 ||
            wire_reader_end(&r) != 0)
            return KL_ERR_ILLEGAL_PARAMETER;
        if ((ret = crypto_hmac(CRYPTO_HASH_SHA256, mac, c->cfg->cookie_key, sizeof(c->cfg->cookie_key),
                               ch->ext.cookie.base, ch->ext.cookie.len - HS_COOKIE_MAC_LEN)) != 0)
            return ret;
        int good = crypto_equal(mac, got_mac.base, HS_COOKIE_MAC_LEN);
        crypto_wipe(mac, sizeof(mac));
        if (!good || ver != HS_COOKIE_VERSION || suite != c->suite || group != h->hrr_group)
            return KL_ERR_ILLEGAL_PARAMETER;
    }
    if ((ret = hs_ch_digest(digest, ch)) != 0)
        return ret;
    /* "the client MUST send the same ClientHello without modification" except the listed fields. */
    if (!crypto_equal(digest, h->ch1_digest, 32))
        return KL_ERR_ILLEGAL_PARAMETER;
    return 0;
}

static int hs_encrypted_extensions(struct tls_conn *c, struct kl_buf *flight, int sni_ack)
{
    const struct tls_test_hooks *t = c->cfg->test;
    struct kl_buf e;
    int ret;
    if (t != NULL && t->encrypted_extensions_body != NULL)
        return msg_encrypted_extensions_encode(
            flight, kl_span_of(t->encrypted_extensions_body, t->encrypted_extensions_body_len));
    kl_buf_init(&e, 1024 + 4 + TLS_ECH_MAX_LIST_LEN);
    if (sni_ack)
        KL_TRY(ext_server_name_ack_encode(&e));
    if (c->alpn != NULL)
        KL_TRY(ext_alpn_encode(&e, c->alpn));
    if (c->hs->send_groups) {
        /* RFC 8446 4.2.7: the server may send supported_groups so that the client can use our preferred
         * group in its next first key_share (it MUST NOT act on it in this handshake). */
        const uint16_t *pref;
        uint16_t ours[16];
        size_t n, k = 0;
        hs_groups(c->cfg, &pref, &n);
        for (size_t i = 0; i < n && k < sizeof(ours) / sizeof(ours[0]); i++) {
            if (crypto_kex_share_len(pref[i]) != 0)
                ours[k++] = pref[i];
        }
        KL_TRY(ext_supported_groups_encode(&e, ours, k));
    }
    if (c->hs->peer_record_limit != 0) {
        /* RFC 8449 4: the limit applies "when the record_size_limit extension is negotiated": we answer
         * with ours (we take any record TLS 1.3 allows, 2^14 + 1). */
        KL_TRY(ext_record_size_limit_encode(&e, REC_MAX_PLAINTEXT + 1));
    }
    /* 4.2.10: "the server MUST include an "early_data" extension in its EncryptedExtensions" when it
     * accepts early data; absent, the client knows its 0-RTT was skipped. */
    if (c->early_accepted)
        KL_TRY(ext_early_data_encode(&e, 0, 0));
    /* draft-ietf-tls-esni-22 7.1: a server that rejects ECH "MUST include the "encrypted_client_hello" extension
     * in its EncryptedExtensions with the "retry_configs" field set to one or more ECHConfig structures", so
     * that the client can retry with them (never a silent downgrade: the client aborts on its side). */
    if ((c->ech_status == TLS_ECH_REJECTED || c->ech_status == TLS_ECH_UNKNOWN_CONFIG) &&
        c->cfg->ech.retry_configs != NULL && c->cfg->ech.retry_configs_len != 0)
        KL_TRY(ext_ech_retry_configs_encode(&e, c->cfg->ech.retry_configs, c->cfg->ech.retry_configs_len));
    KL_TRY(msg_encrypted_extensions_encode(flight, kl_span_of(e.base, e.len)));
exit:
    kl_buf_dispose(&e);
    return ret;
}

/* ---- client authentication (RFC 8446 4.3.2, 4.4.2, 4.4.3) ---- */

/* The schemes we accept in the client's CertificateVerify (what crypto_cert_verify checks), our preference order. */
static const uint16_t hs_client_schemes[] = {
    TLS_SIG_ECDSA_SECP256R1_SHA256, TLS_SIG_ECDSA_SECP384R1_SHA384, TLS_SIG_ED25519,
    TLS_SIG_RSA_PSS_RSAE_SHA256,    TLS_SIG_RSA_PSS_RSAE_SHA384,    TLS_SIG_RSA_PSS_RSAE_SHA512};

/* Messages in these states do not change keys: the client's Certificate, CertificateVerify and
 * Finished may share a record (5.1 forbids only spanning a key change). */
static int hs_client_auth_state(enum hs_state s)
{
    return s == HS_EXPECT_CLIENT_CERTIFICATE || s == HS_EXPECT_CLIENT_CERTIFICATE_VERIFY;
}

/* After EncryptedExtensions, when the listener asks for client certificates (4.3.2). */
static int hs_certificate_request(struct tls_conn *c, struct kl_buf *flight)
{
    struct hs_hand *h = c->hs;
    const struct tls_test_hooks *t = c->cfg->test;
    const struct crypto_client_ca *ca = tls_client_ca_crypto(c->cfg->client_ca);
    size_t start = flight->len;
    int ret;

    if (c->cfg->client_auth == TLS_CLIENT_AUTH_NONE)
        return 0;
    /* A configuration without anchors could only refuse every client: fail closed. */
    KL_ENSURE(ca != NULL, KL_ERR_INTERNAL);
    if (t != NULL && t->certificate_request_body != NULL) {
        KL_TRY(wire_put_u8(flight, MSG_CERTIFICATE_REQUEST));
        KL_TRY(wire_put_u24(flight, (uint32_t)t->certificate_request_body_len));
        KL_TRY(wire_put_bytes(flight, t->certificate_request_body, t->certificate_request_body_len));
    } else {
        KL_TRY(msg_certificate_request_encode(flight, hs_client_schemes,
                                              sizeof(hs_client_schemes) / sizeof(hs_client_schemes[0]),
                                              crypto_client_ca_names(ca)));
    }
    KL_TRY(ks_transcript_add(&h->th, flight->base + start, flight->len - start));
    h->cert_requested = 1;
    hs_trace(c, "CertificateRequest");
exit:
    return ret;
}

static int hs_finish_flight(struct tls_conn *c, struct kl_buf *out, const uint8_t *sig, size_t sig_len);

/* ---- PSK resumption (RFC 8446 4.2.9-11, 4.6.1) and 0-RTT (4.2.10, 8) ---- */

static uint64_t hs_now_ms(const struct tls_conn *c)
{
    const struct tls_test_hooks *t = c->cfg->test;
    return t != NULL && t->now_ms != 0 ? t->now_ms : ticket_now_ms();
}

static int hs_psk_mode_offered(const struct msg_client_hello *ch, uint8_t mode)
{
    struct wire_reader r;
    uint8_t m;
    wire_reader_init(&r, ch->ext.psk_modes.base, ch->ext.psk_modes.len);
    while (wire_read_u8(&r, &m) == 0) {
        if (m == mode)
            return 1;
    }
    return 0;
}

/* The configured certificate whose leaf has this SHA-256, or NULL (the configuration changed since). */
static const struct tls_cert *hs_cert_by_hash(const struct tls_conn *c, const uint8_t sha256[32])
{
    uint8_t h[32];
    for (size_t i = 0; c->cfg->certs != NULL && i < c->cfg->n_certs; i++) {
        const struct tls_cert *cert = &c->cfg->certs[i];
        if (cert->n_chain == 0 || cert->chain[0] == NULL ||
            crypto_digest(CRYPTO_HASH_SHA256, h, cert->chain[0], cert->chain_len[0]) != 0)
            continue;
        if (crypto_equal(h, sha256, 32))
            return cert;
    }
    return NULL;
}

static int hs_leaf_sha256(const struct tls_cert *cert, uint8_t out[32])
{
    if (cert == NULL || cert->n_chain == 0 || cert->chain[0] == NULL)
        return KL_ERR_INVALID;
    return crypto_digest(CRYPTO_HASH_SHA256, out, cert->chain[0], cert->chain_len[0]);
}

/* The test hook's injected PSK, as a ticket of this connection (tls_test_hooks.psk_identity). */
static int hs_test_ticket(const struct tls_conn *c, struct ticket_state *st, uint64_t now)
{
    const struct tls_test_hooks *t = c->cfg->test;
    memset(st, 0, sizeof(*st));
    if (t->psk_len != crypto_hash_len(crypto_suite_hash(c->suite)))
        return KL_ERR_INVALID;
    st->suite = c->suite;
    memcpy(st->psk, t->psk, t->psk_len);
    st->psk_len = t->psk_len;
    st->created_ms = now;
    st->lifetime = 1;
    st->age_add = t->psk_age_add;
    st->max_early_data = t->psk_max_early_data;
    memcpy(st->host_id, c->cfg->tickets.host_id, TLS_HOST_ID_LEN);
    snprintf(st->sni, sizeof(st->sni), "%s", c->server_name);
    snprintf(st->alpn, sizeof(st->alpn), "%s", c->alpn != NULL ? c->alpn : "");
    return hs_leaf_sha256(c->cert, st->cert_sha256);
}

/*
 * 4.2.11: whether an opened ticket fits this ClientHello: the hash of the negotiated suite, the same
 * SNI, not expired, and an obfuscated_ticket_age that un-obfuscates to within the window of the real
 * age (4.2.11.1, 8.3). A listener that requires client certificates only resumes tickets that carry a
 * verified client identity.
 */
static int hs_ticket_fits(const struct tls_conn *c, const struct ticket_state *st, uint32_t obfuscated_age,
                          int check_age, uint64_t now)
{
    uint64_t real_age, client_age, diff;
    if (crypto_suite_hash(st->suite) != crypto_suite_hash(c->suite) || strcmp(st->sni, c->server_name) != 0)
        return 0;
    if (c->cfg->client_auth == TLS_CLIENT_AUTH_REQUIRED && !st->peer.present)
        return 0;
    if (!check_age)
        return 1;
    if (st->created_ms > now + HS_TICKET_AGE_WINDOW_MS)
        return 0; /* from the future: another host's clock, too far off */
    real_age = now > st->created_ms ? now - st->created_ms : 0;
    if (real_age >= (uint64_t)st->lifetime * 1000u)
        return 0; /* 4.6.1: expired */
    client_age = (uint32_t)(obfuscated_age - st->age_add);
    diff = client_age > real_age ? client_age - real_age : real_age - client_age;
    return diff <= HS_TICKET_AGE_WINDOW_MS;
}

/*
 * Choose the PSK of this ClientHello: the first offered identity we can open (a key of tickets.keys
 * with its key id and epoch) that fits (hs_ticket_fits), in a mode we allow, and check its binder.
 * No usable identity is no PSK (a full handshake), never an alert. msg is the whole ClientHello;
 * second: after a HelloRetryRequest, the binder covers the transcript so far too (4.2.11.2).
 * On success h->psk_ok is 1, h->tk the ticket and h->ks starts from its PSK.
 */
static int hs_select_psk(struct tls_conn *c, const struct msg_client_hello *ch, const uint8_t *msg, size_t len,
                         int second)
{
    struct hs_hand *h = c->hs;
    const struct tls_config *cfg = c->cfg;
    const struct tls_test_hooks *t = cfg->test;
    struct tls_ticket_keys keys;
    struct wire_reader ids, binders;
    struct ext_psk psk;
    const struct tls_cert *cert = NULL;
    uint8_t hash[CRYPTO_MAX_HASH], binder_key[CRYPTO_MAX_HASH], expected[CRYPTO_MAX_HASH];
    uint64_t now = hs_now_ms(c);
    int dhe, found = 0, ret = 0;
    uint16_t i;

    memset(&keys, 0, sizeof(keys));
    crypto_wipe(&h->tk, sizeof(h->tk));
    h->psk_ok = 0;
    if (!ext_has(&ch->ext, EXT_B_PRE_SHARED_KEY))
        goto exit;
    /* 4.2.9: psk_dhe_ke always; psk_ke (no forward secrecy) only where the listener allows it. */
    dhe = hs_psk_mode_offered(ch, HS_PSK_DHE_KE);
    if (!dhe && !(cfg->tickets.allow_psk_ke && hs_psk_mode_offered(ch, HS_PSK_KE)))
        goto exit;
    if (cfg->tickets.keys == NULL || cfg->tickets.keys(cfg->tickets.keys_arg, &keys) != 0 ||
        keys.n > TLS_TICKET_KEYS_MAX)
        keys.n = 0;
    if (keys.n == 0 && (t == NULL || t->psk_identity == NULL))
        goto exit;
    wire_reader_init(&ids, ch->ext.psk_identities.base, ch->ext.psk_identities.len);
    wire_reader_init(&binders, ch->ext.psk_binders.base, ch->ext.psk_binders.len);
    for (i = 0; !found && i < HS_MAX_PSK_TRIED && ext_psk_next(&ids, &binders, &psk); i++) {
        int check_age = 1;
        if (t != NULL && t->psk_identity != NULL && psk.identity.len == t->psk_identity_len &&
            memcmp(psk.identity.base, t->psk_identity, t->psk_identity_len) == 0) {
            if (hs_test_ticket(c, &h->tk, now) != 0)
                continue;
            check_age = 0;
        } else if (keys.n == 0 || ticket_open(&h->tk, &keys, psk.identity.base, psk.identity.len) != 0) {
            continue; /* 4.2.11: an identity we cannot use is skipped, never an alert */
        }
        if (hs_ticket_fits(c, &h->tk, psk.obfuscated_age, check_age, now) &&
            (cert = hs_cert_by_hash(c, h->tk.cert_sha256)) != NULL)
            found = 1;
        else
            crypto_wipe(&h->tk, sizeof(h->tk));
    }
    if (!found)
        goto exit;
    i--;
    /* 4.2.11: PskBinderEntry is the HMAC of the hash in use: a binder of another length cannot be valid. */
    KL_ENSURE(psk.binder.len == h->hash_len, KL_ERR_ILLEGAL_PARAMETER);
    /* 4.2.11.2: the binder covers the ClientHello up to (not including) the binders list, after the
     * transcript so far (message_hash and HelloRetryRequest when there was one). */
    size_t trunc = len - 2 - ch->ext.psk_binders.len;
    if (second)
        KL_TRY(crypto_hash_ctx_peek_extra(&h->th.h, hash, msg, trunc));
    else
        KL_TRY(crypto_digest(h->alg, hash, msg, trunc));
    KL_TRY(ks_schedule_init(&h->ks, h->alg, h->tk.psk, h->tk.psk_len));
    KL_TRY(ks_schedule_binder_key(&h->ks, binder_key, 0));
    KL_TRY(ks_verify_data(h->alg, expected, binder_key, hash));
    /* 4.2.11.2: "If this value is not present or does not validate, the server MUST abort the
     * handshake." The binder is a Finished-like MAC: decrypt_error, as for Finished (4.4.4). */
    KL_ENSURE(crypto_equal(expected, psk.binder.base, h->hash_len), KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR));
    memcpy(h->psk_binder, psk.binder.base, h->hash_len);
    h->psk_ok = 1;
    h->psk_dhe = dhe;
    h->psk_index = i;
    h->psk_cert = cert;
exit:
    if (!h->psk_ok)
        crypto_wipe(&h->tk, sizeof(h->tk));
    crypto_wipe(&keys, sizeof(keys));
    crypto_wipe(hash, sizeof(hash));
    crypto_wipe(binder_key, sizeof(binder_key));
    crypto_wipe(expected, sizeof(expected));
    return ret;
}

/*
 * 4.2.10: accept 0-RTT only on the first identity, when the listener and the ticket allow early data,
 * with the ticket's suite, ALPN and SNI (hs_ticket_fits), on the host that issued it, and when the
 * anti-replay register has never seen this binder (8; anything but 1 rejects: fails closed).
 */
static int hs_early_ok(struct tls_conn *c, const struct msg_client_hello *ch)
{
    struct hs_hand *h = c->hs;
    const struct tls_ticket_config *tc = &c->cfg->tickets;
    if (!ext_has(&ch->ext, EXT_B_EARLY_DATA) || !h->psk_ok || h->psk_index != 0)
        return 0;
    if (tc->max_early_data == 0 || h->tk.max_early_data == 0 || h->tk.suite != c->suite)
        return 0;
    if (strcmp(h->tk.alpn, c->alpn != NULL ? c->alpn : "") != 0)
        return 0;
    if (!crypto_equal(h->tk.host_id, tc->host_id, TLS_HOST_ID_LEN) || tc->replay == NULL)
        return 0;
    /* A binder can only come back while its ticket age still passes the window check. */
    return tc->replay(tc->replay_arg, h->psk_binder, h->hash_len, hs_now_ms(c) + 2 * HS_TICKET_AGE_WINDOW_MS) == 1;
}

/* After the client Finished: tickets.count NewSessionTickets, each with its own nonce and PSK (4.6.1). */
#define HS_MAX_TICKETS 8
static int hs_send_tickets(struct tls_conn *c, struct kl_buf *out)
{
    const struct tls_ticket_config *tc = &c->cfg->tickets;
    const struct tls_test_hooks *t = c->cfg->test;
    struct hs_hand *h = c->hs;
    struct tls_ticket_keys keys;
    struct ticket_state st;
    struct kl_buf tk, m;
    uint8_t th[CRYPTO_MAX_HASH], ctr[2];
    int ret = 0;

    memset(&keys, 0, sizeof(keys));
    memset(&st, 0, sizeof(st));
    kl_buf_init(&tk, TICKET_MAX);
    kl_buf_init(&m, TICKET_MAX + 64);
    if (tc->keys == NULL || tc->count == 0)
        goto exit;
    /* No keys (yet): no ticket; the handshake itself is fine. */
    if (tc->keys(tc->keys_arg, &keys) != 0 || keys.n == 0 || keys.n > TLS_TICKET_KEYS_MAX || keys.issue >= keys.n)
        goto exit;
    KL_TRY(ks_transcript_hash(&h->th, th));
    KL_TRY(ks_schedule_resumption(&h->ks, th));
    st.suite = c->suite;
    st.psk_len = h->hash_len;
    st.created_ms = hs_now_ms(c);
    /* 4.6.1: "Servers MUST NOT use any value greater than 604800 seconds (7 days)." */
    st.lifetime = tc->lifetime == 0 ? HS_TICKET_LIFETIME_DEFAULT : tc->lifetime;
    if (st.lifetime > TLS_TICKET_LIFETIME_MAX)
        st.lifetime = TLS_TICKET_LIFETIME_MAX;
    st.max_early_data = tc->max_early_data;
    memcpy(st.host_id, tc->host_id, TLS_HOST_ID_LEN);
    KL_TRY(hs_leaf_sha256(c->cert, st.cert_sha256));
    snprintf(st.sni, sizeof(st.sni), "%s", c->server_name);
    snprintf(st.alpn, sizeof(st.alpn), "%s", c->alpn != NULL ? c->alpn : "");
    st.peer = c->peer;
    for (unsigned i = 0; i < tc->count && i < HS_MAX_TICKETS; i++) {
        const uint8_t *nonce = ctr;
        size_t nonce_len = sizeof(ctr);
        /* 4.6.1: "The PSK associated with the ticket is computed as HKDF-Expand-Label(resumption_master_secret,
         * "resumption", ticket_nonce, Hash.length)"; the nonce "MUST be unique across all tickets issued on
         * this connection". */
        ctr[0] = (uint8_t)(i >> 8);
        ctr[1] = (uint8_t)i;
        if (t != NULL && t->ticket_nonce != NULL) {
            nonce = t->ticket_nonce;
            nonce_len = t->ticket_nonce_len;
        }
        if (t != NULL && t->force_ticket_age_add)
            st.age_add = t->ticket_age_add;
        else
            crypto_random(&st.age_add, sizeof(st.age_add));
        KL_TRY(ks_resumption_psk(h->alg, st.psk, h->ks.resumption, nonce, nonce_len));
        kl_buf_reset(&tk);
        kl_buf_reset(&m);
        KL_TRY(ticket_seal(&tk, &keys.keys[keys.issue], &st));
        KL_TRY(msg_new_session_ticket_encode(&m, st.lifetime, st.age_add, nonce, nonce_len, tk.base, tk.len,
                                             st.max_early_data));
        KL_TRY(rec_seal(&c->wr, out, REC_TYPE_HANDSHAKE, m.base, m.len, 0));
        hs_trace(c, "NewSessionTicket");
    }
exit:
    crypto_wipe(&keys, sizeof(keys));
    crypto_wipe(&st, sizeof(st));
    crypto_wipe(th, sizeof(th));
    kl_buf_dispose(&tk);
    kl_buf_dispose(&m);
    return ret;
}

/* The handshake on one ClientHello (msg, a whole message): the outer one, or ClientHelloInner after ECH. */
static int hs_client_hello_run(struct tls_conn *c, struct kl_buf *out, const uint8_t *msg, size_t len)
{
    const struct tls_test_hooks *t = c->cfg->test;
    struct msg_client_hello ch;
    struct ext_key_share share;
    int have_share;
    struct hs_hand *h;
    uint8_t random[32], ecdhe[CRYPTO_MAX_SHARED], th[CRYPTO_MAX_HASH];
    size_t ecdhe_len = 0;
    struct kl_buf e, m;
    int sni_ack, second = c->state == HS_EXPECT_CLIENT_HELLO_2, ret;
    uint16_t suite1 = c->suite;

    /* ServerHello's extensions and the message: our key_share is up to CRYPTO_MAX_SHARE (ffdhe8192). */
    kl_buf_init(&e, 1024 + CRYPTO_MAX_SHARE);
    kl_buf_init(&m, 1024 + CRYPTO_MAX_SHARE);
    KL_TRY(msg_client_hello_decode(&ch, msg + MSG_HEADER_LEN, len - MSG_HEADER_LEN));
    hs_trace(c, "ClientHello");
    KL_TRY(hs_negotiate(c, &ch, &share, &have_share, &sni_ack));
    if (!second) {
        c->alg = crypto_suite_hash(c->suite);
        c->hs->alg = c->alg;
        c->hs->hash_len = crypto_hash_len(c->alg);
        memcpy(c->client_random, ch.random, 32);
        memcpy(c->session_id, ch.session_id, ch.session_id_len);
        c->session_id_len = ch.session_id_len;
        c->hs->early_data_offered = ext_has(&ch.ext, EXT_B_EARLY_DATA);
        c->hs->early_skip_left = c->hs->early_data_offered ? HS_MAX_EARLY_SKIP : 0;
        c->hs->send_groups = ch.ext.n_shares == 0 || ch.ext.first_share.group != hs_preferred_group(c, &ch);
        c->hs->peer_record_limit = ch.ext.record_size_limit;
    } else {
        /* A second HelloRetryRequest never: the share must be there now. */
        KL_ENSURE(have_share, KL_ERR_ILLEGAL_PARAMETER);
        KL_ENSURE(c->suite == suite1, KL_ERR_ILLEGAL_PARAMETER);
        KL_TRY(hs_check_ch2(c, &ch));
        /* RFC 8446 4.2.10: the second ClientHello cannot offer early data (hs_check_ch2), so the
         * window for skipping undecryptable records closes here: from now on a record that does not
         * decrypt is bad_record_mac. */
        c->hs->early_skip_left = 0;
    }
    h = c->hs;
    /* draft-ietf-tls-esni-22 10.12.3 (and 6.1.2): the PSKs of an outer ClientHello that offered ECH are fakes
     * (the client puts its real ones in ClientHelloInner): when we reject ECH no PSK is accepted, so no
     * early data either. */
    if (c->ech_status != TLS_ECH_REJECTED && c->ech_status != TLS_ECH_UNKNOWN_CONFIG)
        KL_TRY(hs_select_psk(c, &ch, msg, len, second));
    if (!have_share && (!h->psk_ok || h->psk_dhe)) {
        /* (EC)DHE without a usable share: HelloRetryRequest. The PSK is chosen again, and its binder
         * checked over the new transcript, in the second ClientHello (4.1.4, 4.2.11.2). */
        h->psk_ok = 0;
        crypto_wipe(&h->tk, sizeof(h->tk));
        ret = hs_send_hrr(c, out, msg, len, &ch);
        goto exit;
    }
    if (h->psk_ok) {
        /* Resumed: the ticket's certificate and client identity; no Certificate, no signature. */
        c->resumed = 1;
        c->cert = h->psk_cert;
        c->scheme = 0;
        c->peer = h->tk.peer;
        hs_trace(c, "PSK accepted");
        if (!second && hs_early_ok(c, &ch)) {
            c->early_accepted = 1;
            c->early_max = h->tk.max_early_data < c->cfg->tickets.max_early_data ? h->tk.max_early_data
                                                                                 : c->cfg->tickets.max_early_data;
            h->early_skip_left = 0;
            hs_trace(c, "EarlyData accepted");
        }
    }
    if (h->early_data_offered && !c->early_accepted && !second)
        hs_trace(c, "EarlyData rejected");

    /* ServerHello: pre_shared_key, key_share, supported_versions (the order of RFC 8448). */
    if (h->psk_ok)
        KL_TRY(ext_pre_shared_key_sh_encode(&e, h->psk_index));
    if (!h->psk_ok || h->psk_dhe) {
        /* Key exchange. Our public share is encoded before the derivation so that the private key can
         * go right after it. */
        if (t != NULL && t->server_ephemeral_private != NULL)
            KL_TRY(crypto_kex_set_private(&h->kex, c->group, t->server_ephemeral_private,
                                          t->server_ephemeral_private_len));
        else
            KL_TRY(crypto_kex_generate(&h->kex, c->group));
        KL_TRY(ext_key_share_sh_encode(&e, c->group, h->kex.pub, h->kex.pub_len));
        ret = crypto_kex_derive(&h->kex, ecdhe, &ecdhe_len, share.key.base, share.key.len);
        /* The ephemeral private key has done its only job: dispose of it now, not after the signer's wait
         * (forward secrecy depends on it being gone). */
        crypto_kex_dispose(&h->kex);
        KL_TRY(ret);
    } else {
        c->group = 0; /* psk_ke: no (EC)DHE */
    }
    if (t != NULL && t->server_random != NULL)
        memcpy(random, t->server_random, 32);
    else
        crypto_random(random, 32);
    KL_TRY(ext_supported_versions_sh_encode(&e, TLS_VERSION_13));
    if (c->ech_status == TLS_ECH_ACCEPTED)
        memset(random + 32 - ECH_CONFIRMATION_LEN, 0, ECH_CONFIRMATION_LEN);
    struct msg_server_hello sh = {random, c->session_id, c->session_id_len, c->suite, kl_span_of(e.base, e.len)};
    KL_TRY(msg_server_hello_encode(&m, &sh, 0));
    if (!second) {
        KL_TRY(ks_transcript_init(&h->th, h->alg));
        h->th_live = 1;
    }
    KL_TRY(ks_transcript_add(&h->th, msg, len));
    if (c->early_accepted) {
        /* 7.1: client_early_traffic_secret = Derive-Secret(Early Secret, "c e traffic", ClientHello). */
        KL_TRY(ks_transcript_hash(&h->th, th));
        KL_TRY(ks_schedule_early(&h->ks, th));
    }
    if (c->ech_status == TLS_ECH_ACCEPTED) {
        /* draft-ietf-tls-esni-22 7.2: the last 8 bytes of ServerHello.random are HKDF-Expand-Label(HKDF-Extract(0,
         * ClientHelloInner.random), "ech accept confirmation", Hash(ClientHelloInner ‖ ServerHello with those 8
         * bytes zero), 8): the transcript holds ClientHelloInner (and the HRR when there was one). */
        uint8_t conf[ECH_CONFIRMATION_LEN];
        KL_TRY(crypto_hash_ctx_peek_extra(&h->th.h, th, m.base, m.len));
        KL_TRY(ech_confirmation(conf, h->alg, c->client_random, ECH_ACCEPT_LABEL, th));
        memcpy(random + 32 - ECH_CONFIRMATION_LEN, conf, ECH_CONFIRMATION_LEN);
        kl_buf_reset(&m);
        KL_TRY(msg_server_hello_encode(&m, &sh, 0));
    }
    KL_TRY(ks_transcript_add(&h->th, m.base, m.len));
    KL_TRY(ks_transcript_hash(&h->th, th));

    /* Handshake secrets (7.1) and keys: the client's next records are protected with them (after its
     * early data, when we accepted 0-RTT). With psk_ke the (EC)DHE input is zeros. */
    if (!h->psk_ok)
        KL_TRY(ks_schedule_init(&h->ks, h->alg, NULL, 0));
    KL_TRY(ks_schedule_handshake(&h->ks, ecdhe_len != 0 ? ecdhe : NULL, ecdhe_len, th));
    KL_TRY(rec_seal(&c->wr, out, REC_TYPE_HANDSHAKE, m.base, m.len, 0));
    hs_trace(c, "ServerHello");
    KL_TRY(hs_send_ccs_once(c, out));
    KL_TRY(rec_dir_set_secret(&c->wr, c->suite, h->ks.server_hs, h->hash_len));
    if (c->early_accepted) {
        KL_TRY(rec_dir_set_secret(&c->rd, c->suite, h->ks.client_early, h->hash_len));
        hs_keylog(c, "CLIENT_EARLY_TRAFFIC_SECRET", h->ks.client_early, h->hash_len);
    } else {
        KL_TRY(rec_dir_set_secret(&c->rd, c->suite, h->ks.client_hs, h->hash_len));
    }
    if (h->peer_record_limit != 0)
        rec_dir_set_plaintext_limit(&c->wr, h->peer_record_limit); /* from EncryptedExtensions on */
    hs_keylog(c, "CLIENT_HANDSHAKE_TRAFFIC_SECRET", h->ks.client_hs, h->hash_len);
    hs_keylog(c, "SERVER_HANDSHAKE_TRAFFIC_SECRET", h->ks.server_hs, h->hash_len);

    /* EncryptedExtensions and Certificate, held until the signature arrives. */
    size_t start = h->flight.len;
    KL_TRY(hs_encrypted_extensions(c, &h->flight, sni_ack));
    KL_TRY(ks_transcript_add(&h->th, h->flight.base + start, h->flight.len - start));
    hs_trace(c, "EncryptedExtensions");
    if (c->resumed) {
        /* 4.3.2: "Servers which are authenticating with a PSK MUST NOT send the CertificateRequest
         * message in the main handshake"; no Certificate or CertificateVerify either (2.2): the flight
         * is complete now, and the signer is never asked. */
        KL_TRY(hs_finish_flight(c, out, NULL, 0));
        goto exit;
    }
    KL_TRY(hs_certificate_request(c, &h->flight));
    start = h->flight.len;
    KL_TRY(msg_certificate_encode(&h->flight, c->cert->chain, c->cert->chain_len,
                                  c->cert->n_chain < TLS_MAX_CHAIN ? c->cert->n_chain : TLS_MAX_CHAIN));
    KL_TRY(ks_transcript_add(&h->th, h->flight.base + start, h->flight.len - start));
    hs_trace(c, "Certificate");
    KL_TRY(ks_transcript_hash(&h->th, h->sign_hash));
    c->state = HS_WAIT_SIGNATURE;
    hs_trace(c, "CertificateVerify:wait");
    ret = KL_ERR_ASYNC;
exit:
    crypto_wipe(ecdhe, sizeof(ecdhe));
    crypto_wipe(th, sizeof(th));
    crypto_wipe(&ch, sizeof(ch));
    kl_buf_dispose(&e);
    kl_buf_dispose(&m);
    return ret;
}

/*
 * ECH on a ClientHello (draft-ietf-tls-esni-22 7.1): decide accept or reject and, when accepted, rebuild
 * ClientHelloInner into inner (a whole message); inner stays empty when the handshake goes on with the outer
 * ClientHello (ECH off, not offered, or rejected). aad and pt are the caller's scratch buffers.
 */
static int hs_ech(struct tls_conn *c, const struct msg_client_hello *outer, const uint8_t *msg, size_t len,
                  struct kl_buf *inner, struct kl_buf *aad, struct kl_buf *pt)
{
    struct hs_hand *h = c->hs;
    const struct tls_ech_config *ec = &c->cfg->ech;
    struct msg_client_hello in;
    struct ech_outer o;
    const struct tls_ech_key *key;
    enum tls_ech_status status;
    uint8_t type;
    int ret = 0;

    memset(&in, 0, sizeof(in));
    if (c->state == HS_EXPECT_CLIENT_HELLO_2) {
        /* Rejected (or not offered) in the first ClientHello: the second one goes on in the clear too. */
        if (c->ech_status != TLS_ECH_ACCEPTED)
            goto exit;
        /* 7.1.1: "If the client-facing server accepted ECH in the first ClientHello [...] ClientHelloOuter2 [...]
         * does not contain an "encrypted_client_hello" extension: abort with "missing_extension"; a type other
         * than outer, a non-empty enc or another config_id or cipher_suite: "illegal_parameter"; a payload that
         * does not decrypt (with the same context, next sequence number): "decrypt_error". */
        KL_ENSURE(ext_has(&outer->ext, EXT_B_ENCRYPTED_CLIENT_HELLO), KL_ERR_ALERT(KL_ALERT_MISSING_EXTENSION));
        KL_ENSURE(ech_ext_type(outer->ext.ech) != ECH_TYPE_INNER, KL_ERR_ILLEGAL_PARAMETER);
        KL_TRY(ech_ext_decode(&type, &o, outer->ext.ech));
        KL_ENSURE(type == ECH_TYPE_OUTER && o.enc.len == 0 && o.config_id == h->ech_config_id &&
                      o.kdf_id == h->ech_kdf_id && o.aead_id == h->ech_aead_id,
                  KL_ERR_ILLEGAL_PARAMETER);
        KL_TRY(ech_outer_aad(aad, msg + MSG_HEADER_LEN, len - MSG_HEADER_LEN));
        KL_ENSURE(o.payload.len >= HPKE_TAG_LEN, KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR));
        KL_TRY(kl_buf_append(pt, o.payload.base, o.payload.len));
        ret = hpke_open(&h->ech_ctx, pt->base, aad->base, aad->len, pt->base, o.payload.len);
        KL_ENSURE(ret != KL_ERR_BAD_RECORD_MAC, KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR));
        KL_TRY(ret);
        pt->len = o.payload.len - HPKE_TAG_LEN;
    } else {
        /* ECH off: the extension is ignored like any unknown one (no retry_configs). */
        if (ec->n_keys == 0 || ec->keys == NULL || !ext_has(&outer->ext, EXT_B_ENCRYPTED_CLIENT_HELLO))
            goto exit;
        /* 7.1: an outer ClientHello whose extension has type inner: "illegal_parameter" (whatever follows). */
        KL_ENSURE(ech_ext_type(outer->ext.ech) != ECH_TYPE_INNER, KL_ERR_ILLEGAL_PARAMETER);
        KL_TRY(ech_ext_decode(&type, &o, outer->ext.ech));
        free(c->ech_outer_name);
        c->ech_outer_name = calloc(1, outer->ext.server_name.len + 1);
        KL_ENSURE(c->ech_outer_name != NULL, KL_ERR_NO_MEMORY);
        if (outer->ext.server_name.len != 0) {
            struct wire_reader nr;
            wire_reader_init(&nr, outer->ext.server_name.base, outer->ext.server_name.len);
            KL_TRY(wire_read_copy(&nr, c->ech_outer_name, outer->ext.server_name.len));
        }
        KL_TRY(ech_outer_aad(aad, msg + MSG_HEADER_LEN, len - MSG_HEADER_LEN));
        KL_TRY(ech_open(&h->ech_ctx, &key, &status, pt, ec, &o, aad->base, aad->len));
        c->ech_status = status;
        if (status != TLS_ECH_ACCEPTED) {
            /* 7.1: rejected: the handshake goes on with ClientHelloOuter, the public name's certificate and
             * retry_configs (hs_encrypted_extensions). */
            hs_trace(c, status == TLS_ECH_REJECTED ? "ECH rejected" : "ECH rejected:unknown config");
            goto exit;
        }
        h->ech_ctx_live = 1;
        h->ech_config_id = o.config_id;
        h->ech_kdf_id = o.kdf_id;
        h->ech_aead_id = o.aead_id;
    }
    KL_TRY(ech_inner_rebuild(inner, pt->base, pt->len, outer->session_id, outer->session_id_len, outer->ext.raw,
                             hs_client_hello_cap(c)));
    KL_TRY(msg_client_hello_decode(&in, inner->base + MSG_HEADER_LEN, inner->len - MSG_HEADER_LEN));
    KL_TRY(ech_inner_check(&in));
    hs_trace(c, "ECH accepted");
exit:
    if (ret != 0)
        kl_buf_reset(inner);
    crypto_wipe(&in, sizeof(in));
    return ret;
}

/*
 * A ClientHello: the ECH decision on the outer one, then the handshake on whichever ClientHello won.
 * Memory a hostile client can make this cost on top of hs_in (all freed and wiped before returning): the
 * AAD copy (the message's size), the decrypted EncodedClientHelloInner (at most 2^16 - 1 - 16 bytes) and
 * the rebuilt ClientHelloInner (at most hs_client_hello_cap + 4), plus one HPKE open (ech.h says its cost)
 * per ClientHello, at most two per connection; the HPKE context itself lives in hs_hand (a few hundred bytes).
 */
static int hs_client_hello(struct tls_conn *c, struct kl_buf *out, const uint8_t *msg, size_t len)
{
    struct msg_client_hello outer;
    struct kl_buf inner, aad, pt;
    int ret;

    kl_buf_init(&inner, MSG_HEADER_LEN + hs_client_hello_cap(c));
    kl_buf_init(&aad, len);
    kl_buf_init(&pt, 0xffff);
    KL_TRY(msg_client_hello_decode(&outer, msg + MSG_HEADER_LEN, len - MSG_HEADER_LEN));
    if (c->state == HS_EXPECT_CLIENT_HELLO) {
        c->hs = calloc(1, sizeof(*c->hs));
        KL_ENSURE(c->hs != NULL, KL_ERR_NO_MEMORY);
        kl_buf_init(&c->hs->flight, hs_max_message(c) * 4);
    }
    KL_TRY(hs_ech(c, &outer, msg, len, &inner, &aad, &pt));
    kl_buf_dispose(&pt);
    kl_buf_dispose(&aad);
    if (inner.len != 0)
        ret = hs_client_hello_run(c, out, inner.base, inner.len);
    else
        ret = hs_client_hello_run(c, out, msg, len);
exit:
    crypto_wipe(&outer, sizeof(outer));
    kl_buf_dispose(&inner);
    kl_buf_dispose(&aad);
    kl_buf_dispose(&pt);
    return ret;
}

/* ---- after the signature ---- */

int tls_conn_sign_request(const struct tls_conn *c, struct tls_sign_request *req)
{
    if (c == NULL || req == NULL || c->state != HS_WAIT_SIGNATURE || c->hs == NULL)
        return KL_ERR_INVALID;
    memset(req, 0, sizeof(*req));
    req->key_name = c->cert->key_name;
    req->scheme = c->scheme;
    memcpy(req->transcript_hash, c->hs->sign_hash, c->hs->hash_len);
    req->transcript_hash_len = c->hs->hash_len;
    req->server_name = c->server_name;
    return 0;
}

static int hs_finish_flight(struct tls_conn *c, struct kl_buf *out, const uint8_t *sig, size_t sig_len)
{
    struct hs_hand *h = c->hs;
    uint8_t vd[CRYPTO_MAX_HASH], th[CRYPTO_MAX_HASH];
    size_t start;
    int ret;

    if (sig != NULL) {
        start = h->flight.len;
        KL_TRY(msg_certificate_verify_encode(&h->flight, c->scheme, sig, sig_len));
        KL_TRY(ks_transcript_add(&h->th, h->flight.base + start, h->flight.len - start));
        hs_trace(c, "CertificateVerify");
    }
    KL_TRY(ks_transcript_hash(&h->th, th));
    KL_TRY(ks_verify_data(h->alg, vd, h->ks.server_hs, th));
    start = h->flight.len;
    KL_TRY(msg_finished_encode(&h->flight, vd, h->hash_len));
    KL_TRY(ks_transcript_add(&h->th, h->flight.base + start, h->flight.len - start));
    hs_trace(c, "Finished");
    KL_TRY(ks_transcript_hash(&h->th, th));
    KL_TRY(ks_schedule_application(&h->ks, th));
    /* The client's Finished covers the transcript up to our Finished (4.4.4). */
    KL_TRY(ks_verify_data(h->alg, h->client_finished, h->ks.client_hs, th));

    KL_TRY(rec_seal(&c->wr, out, REC_TYPE_HANDSHAKE, h->flight.base, h->flight.len, 0));
    kl_buf_dispose(&h->flight);
    KL_TRY(rec_dir_set_secret(&c->wr, c->suite, h->ks.server_ap, h->hash_len));
    memcpy(c->exporter, h->ks.exporter, h->hash_len);
    hs_keylog(c, "CLIENT_TRAFFIC_SECRET_0", h->ks.client_ap, h->hash_len);
    hs_keylog(c, "SERVER_TRAFFIC_SECRET_0", h->ks.server_ap, h->hash_len);
    hs_keylog(c, "EXPORTER_SECRET", h->ks.exporter, h->hash_len);
    c->state = HS_EXPECT_CLIENT_FINISHED;
    if (h->cert_requested)
        c->state = HS_EXPECT_CLIENT_CERTIFICATE;
    if (c->early_accepted)
        c->state = HS_EXPECT_END_OF_EARLY_DATA;
exit:
    crypto_wipe(vd, sizeof(vd));
    crypto_wipe(th, sizeof(th));
    return ret;
}

int tls_conn_sign_done(struct tls_conn *c, struct kl_buf *out, const uint8_t *sig, size_t sig_len)
{
    int ret;
    if (c == NULL)
        return KL_ERR_INVALID;
    if (c->state == HS_FAILED || c->state == HS_CLOSED)
        return c->error;
    if (c->state != HS_WAIT_SIGNATURE)
        return KL_ERR_INVALID;
    /* The signer failed or timed out: internal_error (DESIGN "What bad input gets"). */
    if (sig == NULL || sig_len == 0 || sig_len > 0xffff)
        return hs_fail(c, out, KL_ERR_INTERNAL);
    if ((ret = hs_finish_flight(c, out, sig, sig_len)) != 0)
        return hs_fail(c, out, ret);
    return 0;
}

static int hs_client_finished(struct tls_conn *c, struct kl_buf *out, const uint8_t *msg, size_t len)
{
    struct hs_hand *h = c->hs;
    struct kl_span vd;
    int ret;

    KL_TRY(msg_finished_decode(&vd, msg + MSG_HEADER_LEN, len - MSG_HEADER_LEN, h->hash_len));
    /* RFC 8446 4.4.4: "Recipients of Finished messages MUST verify that the contents are correct
     * and if incorrect MUST terminate the connection with a "decrypt_error" alert." */
    KL_ENSURE(crypto_equal(vd.base, h->client_finished, h->hash_len), KL_ERR_ALERT(KL_ALERT_DECRYPT_ERROR));
    /* The resumption master secret covers the transcript up to this Finished (7.1). */
    KL_TRY(ks_transcript_add(&h->th, msg, len));
    KL_TRY(rec_dir_set_secret(&c->rd, c->suite, h->ks.client_ap, h->hash_len));
    hs_trace(c, "ClientFinished");
    c->state = HS_ESTABLISHED;
    c->was_established = 1;
    KL_TRY(hs_send_tickets(c, out));
exit:
    return ret;
}

/*
 * Send the KeyUpdate the peer asked for, unless out already holds more than one record's worth
 * of bytes the caller has not sent: then the answer is owed (one answer covers any number of
 * requests) and goes out with the next input or just before our next application data
 * (tls_conn_send). So a client that never reads can make KeyUpdate answers fill out up to
 * HS_KEY_UPDATE_DEFER bytes plus one more answer, never more.
 */
#define HS_KEY_UPDATE_DEFER (REC_MAX_WIRE)
static int hs_answer_key_update(struct tls_conn *c, struct kl_buf *out)
{
    int ret;
    if (!c->key_update_owed || c->sent_close || !tls_conn_established(c) || out->len > HS_KEY_UPDATE_DEFER)
        return 0;
    if ((ret = tls_conn_key_update(c, out, 0)) != 0)
        return ret;
    c->key_update_owed = 0;
    return 0;
}

static int hs_key_update_recv(struct tls_conn *c, struct kl_buf *out, const uint8_t *msg, size_t len)
{
    int req, ret;
    if ((ret = msg_key_update_decode(&req, msg + MSG_HEADER_LEN, len - MSG_HEADER_LEN)) != 0)
        return ret;
    /* DoS cap (tls.h): a peer that only rekeys makes us do HKDF work for nothing. */
    if (++c->n_key_updates > TLS_MAX_KEY_UPDATES)
        return KL_ERR_UNEXPECTED_MESSAGE;
    if ((ret = rec_dir_update(&c->rd)) != 0)
        return ret;
    hs_trace(c, "KeyUpdate");
    /* RFC 8446 4.6.3: on update_requested, "the receiver MUST send a KeyUpdate of its own with
     * request_update set to "update_not_requested" prior to sending its next Application Data";
     * one answer may cover several requests, so the request is only noted here (hs_answer_key_update). */
    if (req && !c->sent_close)
        c->key_update_owed = 1;
    return hs_answer_key_update(c, out);
}

/* The client Finished covers the transcript up to the client's last message before it (4.4.4). */
static int hs_expect_client_finished(struct tls_conn *c)
{
    struct hs_hand *h = c->hs;
    uint8_t th[CRYPTO_MAX_HASH];
    int ret;
    KL_TRY(ks_transcript_hash(&h->th, th));
    KL_TRY(ks_verify_data(h->alg, h->client_finished, h->ks.client_hs, th));
    c->state = HS_EXPECT_CLIENT_FINISHED;
exit:
    crypto_wipe(th, sizeof(th));
    return ret;
}

static int hs_end_of_early_data(struct tls_conn *c, const uint8_t *msg, size_t len)
{
    struct hs_hand *h = c->hs;
    int ret;
    KL_TRY(msg_end_of_early_data_decode(msg + MSG_HEADER_LEN, len - MSG_HEADER_LEN));
    KL_TRY(ks_transcript_add(&h->th, msg, len));
    /* 4.5: after EndOfEarlyData the client's records are under its handshake traffic keys. */
    KL_TRY(rec_dir_set_secret(&c->rd, c->suite, h->ks.client_hs, h->hash_len));
    c->early_done = 1;
    hs_trace(c, "EndOfEarlyData");
    /* The client Finished covers EndOfEarlyData too. */
    KL_TRY(hs_expect_client_finished(c));
exit:
    return ret;
}

static int hs_client_certificate(struct tls_conn *c, const uint8_t *msg, size_t len)
{
    struct hs_hand *h = c->hs;
    struct msg_certificate m;
    struct crypto_peer_id id;
    const uint8_t *der[MSG_MAX_PEER_CHAIN];
    size_t der_len[MSG_MAX_PEER_CHAIN];
    int x509_err, ret;

    KL_TRY(msg_certificate_decode(&m, msg + MSG_HEADER_LEN, len - MSG_HEADER_LEN));
    /* 4.4.2: certificate_request_context is "the value of certificate_request_context in that message"
     * (the CertificateRequest): ours is empty. */
    KL_ENSURE(m.context.len == 0, KL_ERR_ILLEGAL_PARAMETER);
    /* 4.4.2: "Extensions in the Certificate message from the client MUST correspond to extensions in the
     * CertificateRequest message from the server." We request none; 4.2 names unsupported_extension. */
    KL_ENSURE(!m.has_extensions, KL_ERR_ALERT(KL_ALERT_UNSUPPORTED_EXTENSION));
    KL_TRY(ks_transcript_add(&h->th, msg, len));
    hs_trace(c, "ClientCertificate");
    if (m.n_certs == 0) {
        /* 4.4.2.4: with an empty Certificate the server "MAY at its discretion either continue the handshake
         * without client authentication or abort the handshake with a "certificate_required" alert". */
        KL_ENSURE(c->cfg->client_auth != TLS_CLIENT_AUTH_REQUIRED, KL_ERR_ALERT(KL_ALERT_CERTIFICATE_REQUIRED));
        KL_TRY(hs_expect_client_finished(c));
        goto exit;
    }
    for (size_t i = 0; i < m.n_certs; i++) {
        der[i] = m.certs[i].base;
        der_len[i] = m.certs[i].len;
    }
    /* 4.4.2.4: a chain that does not verify ends the handshake with the alert the failure names. */
    KL_TRY(crypto_client_chain_verify(tls_client_ca_crypto(c->cfg->client_ca), der, der_len, m.n_certs,
                                      c->cfg->test != NULL ? c->cfg->test->client_verify_time : 0, &id, &x509_err));
    KL_ENSURE((h->peer_leaf = malloc(m.certs[0].len)) != NULL, KL_ERR_NO_MEMORY);
    memcpy(h->peer_leaf, m.certs[0].base, m.certs[0].len);
    h->peer_leaf_len = m.certs[0].len;
    _Static_assert(sizeof(c->peer.subject_cn) == sizeof(id.subject_cn), "identity text sizes differ");
    memcpy(c->peer.sha256, id.sha256, sizeof(c->peer.sha256));
    memcpy(c->peer.subject_cn, id.subject_cn, sizeof(c->peer.subject_cn));
    memcpy(c->peer.san, id.san, sizeof(c->peer.san));
    memcpy(c->peer.subject, id.subject, sizeof(c->peer.subject));
    c->state = HS_EXPECT_CLIENT_CERTIFICATE_VERIFY;
exit:
    return ret;
}

static int hs_client_certificate_verify(struct tls_conn *c, const uint8_t *msg, size_t len)
{
    struct hs_hand *h = c->hs;
    uint8_t content[64 + 34 + CRYPTO_MAX_HASH];
    struct kl_span sig;
    uint16_t scheme;
    int offered = 0, ret;

    KL_TRY(msg_certificate_verify_decode(&scheme, &sig, msg + MSG_HEADER_LEN, len - MSG_HEADER_LEN));
    /* 4.4.3: the signature algorithm must be one the peer offered ("signature_algorithms" of our
     * CertificateRequest); illegal_parameter otherwise, as for the server's side. */
    for (size_t i = 0; i < sizeof(hs_client_schemes) / sizeof(hs_client_schemes[0]); i++)
        offered |= hs_client_schemes[i] == scheme;
    KL_ENSURE(offered, KL_ERR_ILLEGAL_PARAMETER);
    /* 4.4.3: 64 spaces, "TLS 1.3, client CertificateVerify", a 0 byte, then Transcript-Hash(up to Certificate). */
    memset(content, 0x20, 64);
    memcpy(content + 64, "TLS 1.3, client CertificateVerify", 34);
    KL_TRY(ks_transcript_hash(&h->th, content + 98));
    /* Checked here with the leaf's public key: the signer never sees client certificates. "If the verification
     * fails, the receiver MUST terminate the handshake with a "decrypt_error" alert." */
    ret = crypto_cert_verify(h->peer_leaf, h->peer_leaf_len, scheme, content, 98 + h->hash_len, sig.base, sig.len);
    KL_ENSURE(ret != KL_ERR_INVALID, KL_ERR_ILLEGAL_PARAMETER);
    KL_TRY(ret);
    KL_TRY(ks_transcript_add(&h->th, msg, len));
    hs_trace(c, "ClientCertificateVerify");
    free(h->peer_leaf);
    h->peer_leaf = NULL;
    c->peer.present = 1;
    KL_TRY(hs_expect_client_finished(c));
exit:
    crypto_wipe(content, sizeof(content));
    return ret;
}

const struct tls_peer_cert *tls_conn_peer_cert(const struct tls_conn *c)
{
    return &c->peer;
}

/* The one dispatch point: each state accepts exactly the messages listed, nothing else. */
static int hs_dispatch(struct tls_conn *c, struct kl_buf *out, uint8_t type, const uint8_t *msg, size_t len)
{
    switch (c->state) {
    case HS_EXPECT_CLIENT_HELLO:
    case HS_EXPECT_CLIENT_HELLO_2:
        if (type != MSG_CLIENT_HELLO)
            return KL_ERR_UNEXPECTED_MESSAGE;
        return hs_client_hello(c, out, msg, len);
    case HS_EXPECT_CLIENT_FINISHED:
        if (type != MSG_FINISHED)
            return KL_ERR_UNEXPECTED_MESSAGE;
        return hs_client_finished(c, out, msg, len);
    case HS_EXPECT_END_OF_EARLY_DATA:
        /* 4.5: after the early data the client sends EndOfEarlyData, then its Finished. */
        if (type != MSG_END_OF_EARLY_DATA)
            return KL_ERR_UNEXPECTED_MESSAGE;
        return hs_end_of_early_data(c, msg, len);
    case HS_ESTABLISHED:
        if (type != MSG_KEY_UPDATE)
            return KL_ERR_UNEXPECTED_MESSAGE;
        return hs_key_update_recv(c, out, msg, len);
    case HS_EXPECT_CLIENT_CERTIFICATE:
        /* 4.4.2: "The client MUST send a Certificate message if and only if the server has requested
         * client authentication via a CertificateRequest message" (unexpected_message otherwise). */
        if (type != MSG_CERTIFICATE)
            return KL_ERR_UNEXPECTED_MESSAGE;
        return hs_client_certificate(c, msg, len);
    case HS_EXPECT_CLIENT_CERTIFICATE_VERIFY:
        /* 4.4.3: a client that sent a certificate MUST send CertificateVerify right after it. */
        if (type != MSG_CERTIFICATE_VERIFY)
            return KL_ERR_UNEXPECTED_MESSAGE;
        return hs_client_certificate_verify(c, msg, len);
    case HS_WAIT_SIGNATURE:
    case HS_CLOSED:
    case HS_FAILED:
    default:
        return KL_ERR_UNEXPECTED_MESSAGE;
    }
}

/* Run every complete message in hs_in. */
static int hs_process_messages(struct tls_conn *c, struct kl_buf *out)
{
    int ret;
    for (;;) {
        uint8_t type;
        size_t body_len;
        enum hs_state before = c->state;
        struct wire_reader hr;
        size_t cap;
        if (c->hs_in.len < MSG_HEADER_LEN)
            return 0;
        wire_reader_init(&hr, c->hs_in.base, c->hs_in.len);
        if ((ret = wire_read_u8(&hr, &type)) != 0)
            return ret;
        /* Each type's own cap, checked now that its header is here (hs_msg_cap). */
        if (!hs_msg_cap(c, type, &cap))
            return KL_ERR_UNEXPECTED_MESSAGE;
        ret = msg_header_peek(c->hs_in.base, c->hs_in.len, cap, &type, &body_len);
        if (ret == KL_ERR_WANT_READ)
            return 0;
        if (ret != 0)
            return ret;
        size_t total = MSG_HEADER_LEN + body_len;
        ret = hs_dispatch(c, out, type, c->hs_in.base, total);
        kl_buf_consume(&c->hs_in, total);
        if (ret != 0 && ret != KL_ERR_ASYNC)
            return ret;
        /* RFC 8446 5.1: "Handshake messages MUST NOT span key changes [...] If an implementation detects
         * that they do, it MUST send an "unexpected_message" alert." Every message we accept changes keys
         * (ClientHello, Finished, KeyUpdate), so nothing may follow it in the same record; the client's
         * Certificate and CertificateVerify change none (hs_client_auth_state). */
        if ((c->state != before && !hs_client_auth_state(before)) || type == MSG_KEY_UPDATE) {
            if (c->hs_in.len != 0)
                return KL_ERR_UNEXPECTED_MESSAGE;
        }
        if (ret == KL_ERR_ASYNC)
            return ret;
        if (c->state == HS_ESTABLISHED) {
            /* Handshake-only memory goes away once established (and after each post-handshake message). */
            hs_hand_free(c);
            if (c->hs_in.len == 0)
                kl_buf_dispose(&c->hs_in);
        }
        if (c->hs_in.len == 0)
            return 0;
    }
}

static int hs_alert_recv(struct tls_conn *c, const uint8_t *p, size_t len)
{
    struct wire_reader r;
    uint8_t level, desc;
    wire_reader_init(&r, p, len);
    if (wire_read_u8(&r, &level) != 0 || wire_read_u8(&r, &desc) != 0 || wire_reader_end(&r) != 0)
        return KL_ERR_DECODE;
    if (desc == KL_ALERT_CLOSE_NOTIFY)
        return KL_ERR_CLOSED;
    /* RFC 8446 6.1: user_canceled is followed by close_notify; keep reading until it comes. */
    if (desc == KL_ALERT_USER_CANCELED) {
        /* DoS cap (tls.h): warning alerts in a row are bounded. */
        if (++c->n_warning_alerts > TLS_MAX_WARNING_ALERTS)
            return KL_ERR_UNEXPECTED_MESSAGE;
        return 0;
    }
    /* RFC 8446 6.2: every other alert is fatal whatever its level says. */
    return KL_ERR_PEER_ALERT(desc);
}

/* One record. *stop_p asks the caller to stop before the next record (app buffer full). */
static int hs_record(struct tls_conn *c, struct kl_buf *out, struct kl_buf *app, const struct rec_record *rr,
                     int *stop_p)
{
    struct hs_hand *h = c->hs;
    struct kl_buf *dst = &c->hs_in;
    size_t start;
    uint8_t type;
    int ret;

    *stop_p = 0;
    if (rr->type == REC_TYPE_CHANGE_CIPHER_SPEC) {
        /* RFC 8446 5: a CCS is dropped between the first ClientHello and the client Finished;
         * before or after it is an unexpected record type. We accept it once, unfragmented. */
        if (h == NULL || h->ccs_seen || c->state == HS_EXPECT_CLIENT_HELLO || c->hs_in.len != 0)
            return KL_ERR_UNEXPECTED_MESSAGE;
        h->ccs_seen = 1;
        start = c->hs_in.len;
        ret = rec_open(&c->rd, &c->hs_in, &type, rr);
        hs_truncate(&c->hs_in, start);
        return ret;
    }
    if (rr->type == REC_TYPE_ALERT && c->rd.keyed && c->state == HS_EXPECT_CLIENT_FINISHED && c->hs_in.len == 0) {
        /* A client that could not process our ServerHello has no keys and aborts in plaintext:
         * report its alert rather than answering it with unexpected_message. */
        return hs_alert_recv(c, rr->fragment.base, rr->fragment.len);
    }
    if (rr->type == REC_TYPE_APPLICATION_DATA && h != NULL && h->early_skip_left > 0 &&
        c->state == HS_EXPECT_CLIENT_HELLO_2) {
        /* 4.2.10: after a HelloRetryRequest, skip records with outer type application_data (0-RTT we refused). */
        if (rr->fragment.len > h->early_skip_left)
            return KL_ERR_UNEXPECTED_MESSAGE;
        h->early_skip_left -= rr->fragment.len;
        return 0;
    }
    if (c->state == HS_ESTABLISHED || c->state == HS_EXPECT_END_OF_EARLY_DATA) {
        if (app->max - app->len < rr->fragment.len) {
            *stop_p = 1;
            return 0;
        }
        dst = app;
    }
    start = dst->len;
    ret = rec_open(&c->rd, dst, &type, rr);
    if (ret == KL_ERR_BAD_RECORD_MAC && h != NULL && h->early_skip_left > 0 && c->state == HS_EXPECT_CLIENT_FINISHED &&
        rr->type == REC_TYPE_APPLICATION_DATA) {
        /* 4.2.10: 0-RTT refused: records that do not decrypt with the handshake key are skipped, up to
         * max_early_data_size. */
        if (rr->fragment.len > h->early_skip_left)
            return KL_ERR_BAD_RECORD_MAC;
        h->early_skip_left -= rr->fragment.len;
        return 0;
    }
    if (ret != 0)
        return ret;
    if (h != NULL)
        h->early_skip_left = 0; /* a record decrypted: no more early data may come */

    if (type == REC_TYPE_APPLICATION_DATA) {
        if (dst != app) {
            hs_truncate(dst, start);
            return KL_ERR_UNEXPECTED_MESSAGE;
        }
        if (c->hs_in.len != 0) /* 5.1: not interleaved with a fragmented handshake message */
            return KL_ERR_UNEXPECTED_MESSAGE;
        if (c->state == HS_EXPECT_END_OF_EARLY_DATA) {
            /* 4.2.10: a server that "receives more than max_early_data_size [...] SHOULD terminate the
             * connection with an "unexpected_message" alert". */
            c->early_len += app->len - start;
            if (c->early_len > c->early_max) {
                hs_truncate(app, start);
                return KL_ERR_UNEXPECTED_MESSAGE;
            }
        }
        if (app->len == start) {
            /* 5.1 allows zero-length application data; the DoS cap (tls.h) bounds a run of them. */
            if (++c->n_empty_records > TLS_MAX_EMPTY_RECORDS)
                return KL_ERR_UNEXPECTED_MESSAGE;
            return 0;
        }
        c->n_key_updates = c->n_empty_records = c->n_warning_alerts = 0;
        return 0;
    }
    if (type == REC_TYPE_ALERT) {
        uint8_t a[2] = {0, 0};
        size_t n = dst->len - start;
        /* 5.1: an alert may not sit inside a fragmented handshake message. */
        int interleaved = dst == &c->hs_in ? start != 0 : c->hs_in.len != 0;
        struct wire_reader r;
        wire_reader_init(&r, dst->base + start, n);
        ret = n == 2 ? wire_read_copy(&r, a, 2) : KL_ERR_DECODE;
        hs_truncate(dst, start);
        if (ret != 0)
            return ret;
        if (interleaved)
            return KL_ERR_UNEXPECTED_MESSAGE;
        return hs_alert_recv(c, a, 2);
    }
    if (type == REC_TYPE_HANDSHAKE) {
        if (dst == app) {
            /* Post-handshake message: move it from the app buffer to the reassembly buffer. */
            ret = kl_buf_append(&c->hs_in, app->base + start, app->len - start);
            hs_truncate(app, start);
            if (ret != 0)
                return ret == KL_ERR_OVERFLOW ? KL_ERR_DECODE : ret;
        }
        return hs_process_messages(c, out);
    }
    hs_truncate(dst, start);
    return KL_ERR_UNEXPECTED_MESSAGE;
}

int tls_conn_input(struct tls_conn *c, struct kl_buf *out, struct kl_buf *app, const uint8_t *in, size_t *in_len_p)
{
    size_t len = *in_len_p, off = 0;
    int ret = 0;

    *in_len_p = 0;
    if (c->state == HS_FAILED || c->state == HS_CLOSED)
        return c->error;
    if (c->state == HS_WAIT_SIGNATURE)
        return KL_ERR_ASYNC; /* nothing is read until the flight is complete */
    while (off < len) {
        struct rec_record rr;
        struct wire_reader r;
        struct kl_span rest;
        int stop;
        wire_reader_init(&r, in, len);
        if (wire_read_span(&r, &rest, off) != 0 || wire_read_span(&r, &rest, len - off) != 0)
            break;
        ret = rec_next(&rr, rest.base, rest.len, c->state == HS_EXPECT_CLIENT_HELLO ? REC_FLAG_FIRST : 0);
        if (ret == KL_ERR_WANT_READ) {
            ret = 0;
            break;
        }
        if (ret != 0)
            break;
        ret = hs_record(c, out, app, &rr, &stop);
        if (stop)
            break;
        off += rr.wire_len;
        if (ret != 0)
            break;
    }
    *in_len_p = off;
    if (ret == KL_ERR_CLOSED) {
        c->state = HS_CLOSED;
        c->error = KL_ERR_CLOSED;
        hs_trace(c, "close_notify");
        hs_hand_free(c);
        kl_buf_dispose(&c->hs_in);
        return ret;
    }
    /* A KeyUpdate answer deferred while out was full goes now if out has drained. */
    if (ret == 0)
        ret = hs_answer_key_update(c, out);
    if (ret != 0 && ret != KL_ERR_ASYNC)
        return hs_fail(c, out, ret);
    return ret;
}

/* ---- established ---- */

int tls_conn_send(struct tls_conn *c, struct kl_buf *out, const uint8_t *data, size_t len)
{
    if (c->state == HS_FAILED)
        return c->error;
    if (!tls_conn_established(c) || c->sent_close)
        return KL_ERR_INVALID;
    if (len == 0)
        return 0;
    /* 4.6.3: the KeyUpdate the peer asked for goes "prior to sending its next Application Data". */
    if (c->key_update_owed) {
        int ret = tls_conn_key_update(c, out, 0);
        if (ret != 0)
            return ret;
        c->key_update_owed = 0;
    }
    /* 5.5: rekey before the write key reaches its usage limit (rec_seal refuses past it). */
    if (rec_dir_needs_update(&c->wr)) {
        int ret = tls_conn_key_update(c, out, 0);
        if (ret != 0)
            return ret;
    }
    return rec_seal(&c->wr, out, REC_TYPE_APPLICATION_DATA, data, len, 0);
}

int tls_conn_close(struct tls_conn *c, struct kl_buf *out)
{
    int ret;
    if (c->state == HS_FAILED)
        return c->error;
    if (c->sent_close)
        return 0;
    if ((ret = rec_alert(&c->wr, out, KL_ALERT_CLOSE_NOTIFY)) != 0)
        return ret;
    c->sent_close = 1;
    return 0;
}

int tls_conn_key_update(struct tls_conn *c, struct kl_buf *out, int request_peer)
{
    uint8_t m[5];
    struct kl_buf b;
    int ret;
    if (c->state == HS_FAILED)
        return c->error;
    if (!tls_conn_established(c) || c->sent_close)
        return KL_ERR_INVALID;
    /* A fixed 5-byte message: encode into a stack buffer (no allocation on the record path). */
    kl_buf_init_fixed(&b, m, sizeof(m));
    if ((ret = msg_key_update_encode(&b, request_peer)) != 0)
        return ret;
    if ((ret = rec_seal(&c->wr, out, REC_TYPE_HANDSHAKE, m, b.len, 0)) != 0)
        return ret;
    /* 4.6.3: the sender switches its keys right after sending KeyUpdate. */
    if ((ret = rec_dir_update(&c->wr)) != 0)
        return hs_fail(c, out, ret);
    return 0;
}

int tls_conn_export(struct tls_conn *c, uint8_t *out, size_t out_len, const char *label, const uint8_t *context,
                    size_t context_len)
{
    if (!tls_conn_established(c))
        return KL_ERR_INVALID;
    if (context == NULL && context_len != 0)
        return KL_ERR_INVALID;
    return ks_export(c->alg, out, out_len, c->exporter, label, context, context_len);
}

size_t tls_conn_sizeof(void)
{
    return sizeof(struct tls_conn);
}

int tls_conn_established(const struct tls_conn *c)
{
    return c->state == HS_ESTABLISHED || (c->state == HS_CLOSED && c->was_established);
}

const char *tls_conn_server_name(const struct tls_conn *c)
{
    return c->server_name;
}

const char *tls_conn_alpn(const struct tls_conn *c)
{
    return c->alpn != NULL ? c->alpn : "";
}

uint16_t tls_conn_cipher_suite(const struct tls_conn *c)
{
    return c->suite;
}

uint16_t tls_conn_group(const struct tls_conn *c)
{
    return c->group;
}

uint16_t tls_conn_scheme(const struct tls_conn *c)
{
    return c->scheme;
}

int tls_conn_resumed(const struct tls_conn *c)
{
    return c->resumed;
}

int tls_conn_early_data_accepted(const struct tls_conn *c)
{
    return c->early_accepted;
}

uint64_t tls_conn_early_data_len(const struct tls_conn *c)
{
    return c->early_len;
}

int tls_conn_early_data_done(const struct tls_conn *c)
{
    return c->early_done;
}

enum tls_ech_status tls_conn_ech_status(const struct tls_conn *c)
{
    return c->ech_status;
}

const char *tls_conn_ech_outer_name(const struct tls_conn *c)
{
    return c->ech_outer_name != NULL ? c->ech_outer_name : "";
}
