/*
 * test_msg.c - the handshake message and extension codecs (msg_, ext_) against the
 * RFC 8448 ClientHellos and server messages, plus systematic malformed input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kl_test.h"
#include "frontend/rfc8448.h"
#include "ext.h"
#include "msg.h"
#include "tls.h"
#include "wire.h"

/* A ClientHello body cut into its fixed prefix and its extensions, so tests can rebuild it. */
struct ch_parts {
    const uint8_t *body;
    size_t len;
    size_t prefix_len; /* bytes before the extensions' u16 length */
    size_t n;
    size_t off[64]; /* each extension (type, length, body) */
    size_t elen[64];
    uint16_t type[64];
};

static void ch_split(struct ch_parts *p, const uint8_t *body, size_t len)
{
    size_t o = 34;
    memset(p, 0, sizeof(*p));
    p->body = body;
    p->len = len;
    o += 1 + body[o];
    o += 2 + ((size_t)body[o] << 8 | body[o + 1]);
    o += 1 + body[o];
    p->prefix_len = o;
    o += 2;
    while (o + 4 <= len && p->n < 64) {
        size_t l = (size_t)body[o + 2] << 8 | body[o + 3];
        p->type[p->n] = (uint16_t)(body[o] << 8 | body[o + 1]);
        p->off[p->n] = o;
        p->elen[p->n] = 4 + l;
        p->n++;
        o += 4 + l;
    }
}

/* Rebuild: prefix, then the extensions listed in idx (may repeat), then an optional raw extra. */
static size_t ch_build(uint8_t *out, const struct ch_parts *p, const int *idx, size_t n_idx, const uint8_t *extra,
                       size_t extra_len)
{
    size_t o = p->prefix_len + 2;
    memcpy(out, p->body, p->prefix_len);
    for (size_t i = 0; i < n_idx; i++) {
        memcpy(out + o, p->body + p->off[idx[i]], p->elen[idx[i]]);
        o += p->elen[idx[i]];
    }
    if (extra_len) {
        memcpy(out + o, extra, extra_len);
        o += extra_len;
    }
    size_t el = o - p->prefix_len - 2;
    out[p->prefix_len] = (uint8_t)(el >> 8);
    out[p->prefix_len + 1] = (uint8_t)el;
    return o;
}

static size_t ch_build_with(uint8_t *out, const struct ch_parts *p, const uint8_t *extra, size_t extra_len)
{
    int idx[64];
    for (size_t i = 0; i < p->n; i++)
        idx[i] = (int)i;
    return ch_build(out, p, idx, p->n, extra, extra_len);
}

static int decode(const uint8_t *b, size_t len)
{
    struct msg_client_hello ch;
    return msg_client_hello_decode(&ch, b, len);
}

/* Offsets and widths of every length field we know how to find in a ClientHello body. */
struct lenfield {
    size_t off, width;
};

static size_t ch_length_fields(const struct ch_parts *p, struct lenfield *f, size_t max)
{
    size_t n = 0, o = 34;
    const uint8_t *b = p->body;
#define ADD(off_, w_)                                                                                                  \
    do {                                                                                                               \
        if (n < max) {                                                                                                 \
            f[n].off = (off_);                                                                                         \
            f[n].width = (w_);                                                                                         \
            n++;                                                                                                       \
        }                                                                                                              \
    } while (0)
    ADD(o, 1); /* legacy_session_id */
    o += 1 + b[o];
    ADD(o, 2); /* cipher_suites */
    o += 2 + ((size_t)b[o] << 8 | b[o + 1]);
    ADD(o, 1); /* compression */
    ADD(p->prefix_len, 2);
    for (size_t i = 0; i < p->n; i++) {
        size_t e = p->off[i], body = e + 4;
        ADD(e + 2, 2);
        switch (p->type[i]) {
        case EXT_SERVER_NAME:
            ADD(body, 2);
            ADD(body + 3, 2);
            break;
        case EXT_SUPPORTED_GROUPS:
        case EXT_SIGNATURE_ALGORITHMS:
        case EXT_SIGNATURE_ALGORITHMS_CERT:
        case EXT_COOKIE:
            ADD(body, 2);
            break;
        case EXT_SUPPORTED_VERSIONS:
        case EXT_PSK_KEY_EXCHANGE_MODES:
            ADD(body, 1);
            break;
        case EXT_KEY_SHARE: {
            size_t q = body + 2, end = e + p->elen[i];
            ADD(body, 2);
            while (q + 4 <= end) {
                ADD(q + 2, 2);
                q += 4 + ((size_t)b[q + 2] << 8 | b[q + 3]);
            }
            break;
        }
        case EXT_PRE_SHARED_KEY: {
            size_t ids = (size_t)b[body] << 8 | b[body + 1];
            ADD(body, 2);
            ADD(body + 2, 2); /* first identity */
            ADD(body + 2 + ids, 2);
            ADD(body + 4 + ids, 1); /* first binder */
            break;
        }
        default:
            break;
        }
    }
#undef ADD
    return n;
}

static void test_trace_client_hellos(void)
{
    static const char *files[] = {"simple-1rtt.txt", "compat-mode.txt", "hello-retry-request.txt", "resumed-0rtt.txt",
                                  "client-auth.txt"};
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        struct rfc8448 *t = rfc8448_load(files[f]);
        size_t len, rlen;
        const uint8_t *m = rfc8448_must(t, "client_hello", &len);
        const uint8_t *random = rfc8448_must(t, "client_random", &rlen);
        struct msg_client_hello ch;
        char name[128];
        uint8_t type;
        size_t blen;
        is_int(msg_header_peek(m, len, 0, &type, &blen), 0, "header peek");
        ok(type == MSG_CLIENT_HELLO && blen == len - 4, "header type/len");
        snprintf(name, sizeof(name), "%s: ClientHello decodes", files[f]);
        is_int(msg_client_hello_decode(&ch, m + 4, len - 4), 0, name);
        is_mem(ch.random, 32, random, rlen, "client_random");
        ok(ch.legacy_version == 0x0303, "legacy_version 0x0303");
        ok(ext_u16_list_has(ch.cipher_suites, TLS_AES_128_GCM_SHA256), "offers 0x1301");
        ok(ext_has(&ch.ext, EXT_B_SUPPORTED_VERSIONS) && ext_u16_list_has(ch.ext.versions, TLS_VERSION_13),
           "supported_versions has 0x0304");
        ok(ch.ext.n_shares >= 1, "has a key share");
        ok(ext_has(&ch.ext, EXT_B_SIGNATURE_ALGORITHMS) && ext_u16_list_has(ch.ext.sig_algs, 0x0804),
           "signature_algorithms has rsa_pss_rsae_sha256");
        is_mem(ch.ext.server_name.base, ch.ext.server_name.len, "server", 6, "server_name");
        if (strcmp(files[f], "compat-mode.txt") == 0) {
            size_t sl;
            const uint8_t *sid = rfc8448_must(t, "legacy_session_id", &sl);
            is_mem(ch.session_id, ch.session_id_len, sid, sl, "compat: legacy_session_id");
        } else {
            is_int(ch.session_id_len, 0, "empty legacy_session_id");
        }
        if (strcmp(files[f], "simple-1rtt.txt") == 0) {
            size_t pl;
            const uint8_t *pub = rfc8448_must(t, "client_ephemeral_public", &pl);
            ok(ch.ext.n_shares == 1 && ch.ext.first_share.group == TLS_GROUP_X25519, "x25519 share");
            is_mem(ch.ext.first_share.key.base, ch.ext.first_share.key.len, pub, pl, "x25519 share bytes");
            is_int(ch.ext.record_size_limit, 0x4001, "record_size_limit");
            ok(ext_u16_list_has(ch.ext.groups, TLS_GROUP_SECP384R1), "supported_groups");
            ok(!ext_has(&ch.ext, EXT_B_COOKIE) && !ext_has(&ch.ext, EXT_B_EARLY_DATA), "no cookie/early_data");
        }
        if (strcmp(files[f], "hello-retry-request.txt") == 0) {
            size_t l1, pl;
            const uint8_t *m1 = rfc8448_must(t, "client_hello_1", &l1);
            const uint8_t *pub = rfc8448_must(t, "client_ephemeral_public", &pl);
            struct msg_client_hello ch1;
            is_int(msg_client_hello_decode(&ch1, m1 + 4, l1 - 4), 0, "HRR trace: ClientHello1 decodes");
            ok(ch1.ext.n_shares == 1 && ch1.ext.first_share.group == TLS_GROUP_X25519, "CH1 offers x25519 only");
            ok(ext_u16_list_has(ch1.ext.groups, TLS_GROUP_SECP256R1), "CH1 supports secp256r1");
            ok(ext_has(&ch.ext, EXT_B_COOKIE) && ch.ext.cookie.len == 114, "CH2 echoes the 114-byte cookie");
            ok(ch.ext.n_shares == 1 && ch.ext.first_share.group == TLS_GROUP_SECP256R1, "CH2 P-256 share");
            is_mem(ch.ext.first_share.key.base, ch.ext.first_share.key.len, pub, pl, "CH2 P-256 share bytes");
        }
        if (strcmp(files[f], "resumed-0rtt.txt") == 0) {
            ok(ext_has(&ch.ext, EXT_B_PRE_SHARED_KEY) && ch.ext.last_type == EXT_PRE_SHARED_KEY,
               "0-RTT: pre_shared_key, last");
            ok(ext_has(&ch.ext, EXT_B_EARLY_DATA), "0-RTT: early_data");
        }
        rfc8448_free(t);
    }
}

/* Every length field of each trace ClientHello, +1 and -1; every truncation; a trailing byte. */
static void test_mutations(void)
{
    static const char *files[] = {"simple-1rtt.txt", "compat-mode.txt", "hello-retry-request.txt", "resumed-0rtt.txt"};
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        struct rfc8448 *t = rfc8448_load(files[f]);
        size_t len;
        const uint8_t *m = rfc8448_must(t, "client_hello", &len);
        const uint8_t *body = m + 4;
        size_t blen = len - 4;
        struct ch_parts p;
        struct lenfield lf[128];
        uint8_t *buf = malloc(blen + 8);
        size_t n, fails = 0, n_decode = 0, truncation_ok = 0;
        ch_split(&p, body, blen);
        n = ch_length_fields(&p, lf, 128);
        for (size_t i = 0; i < n; i++) {
            for (int d = -1; d <= 1; d += 2) {
                memcpy(buf, body, blen);
                size_t o = lf[i].off + lf[i].width - 1;
                /* add d to the big-endian field */
                unsigned v = lf[i].width == 1 ? buf[o] : (unsigned)(buf[o - 1] << 8 | buf[o]);
                v = (v + (unsigned)d) & (lf[i].width == 1 ? 0xffu : 0xffffu);
                buf[o] = (uint8_t)v;
                if (lf[i].width == 2)
                    buf[o - 1] = (uint8_t)(v >> 8);
                int r = decode(buf, blen);
                int a = kl_err_is_alert(r) ? kl_err_alert(r) : -1;
                if (a == KL_ALERT_DECODE_ERROR)
                    n_decode++;
                else if (a != KL_ALERT_ILLEGAL_PARAMETER) {
                    fails++;
                    diag("%s: length field at %zu %+d: %d", files[f], lf[i].off, d, r);
                }
            }
        }
        char name[160];
        snprintf(name, sizeof(name), "%s: %zu length fields x (+1,-1) all refused (%zu decode_error)", files[f], n,
                 n_decode);
        ok(n >= 12 && fails == 0, name);
        fails = 0;
        for (size_t cut = 0; cut < blen; cut++) {
            int r = decode(body, cut);
            if (cut == p.prefix_len && r == 0)
                truncation_ok++; /* a ClientHello without extensions is legal (TLS 1.2) */
            else if (r != KL_ERR_DECODE)
                fails++;
        }
        snprintf(name, sizeof(name), "%s: all %zu truncations decode_error (except before extensions)", files[f], blen);
        ok(fails == 0 && truncation_ok == 1, name);
        memcpy(buf, body, blen);
        buf[blen] = 0;
        is_int(decode(buf, blen + 1), KL_ERR_DECODE, "trailing byte: decode_error");
        free(buf);
        rfc8448_free(t);
    }
}

static void test_duplicates_and_order(void)
{
    struct rfc8448 *t = rfc8448_load("resumed-0rtt.txt");
    size_t len;
    const uint8_t *m = rfc8448_must(t, "client_hello", &len);
    struct ch_parts p;
    uint8_t buf[2048];
    int idx[65];
    size_t n;
    ch_split(&p, m + 4, len - 4);
    ok(p.n >= 8 && p.type[p.n - 1] == EXT_PRE_SHARED_KEY, "split: pre_shared_key last");
    /* Each extension duplicated (inserted before pre_shared_key, which must stay last). */
    size_t dup_ok = 0;
    for (size_t d = 0; d < p.n; d++) {
        size_t k = 0;
        for (size_t i = 0; i + 1 < p.n; i++)
            idx[k++] = (int)i;
        idx[k++] = (int)d;
        idx[k++] = (int)(p.n - 1);
        n = ch_build(buf, &p, idx, k, NULL, 0);
        int r = decode(buf, n);
        if (r == KL_ERR_ILLEGAL_PARAMETER)
            dup_ok++;
        else
            diag("duplicate of ext %u: %d", p.type[d], r);
    }
    ok(dup_ok == p.n, "every extension duplicated: illegal_parameter");
    /* pre_shared_key first. */
    idx[0] = (int)(p.n - 1);
    for (size_t i = 0; i + 1 < p.n; i++)
        idx[i + 1] = (int)i;
    n = ch_build(buf, &p, idx, p.n, NULL, 0);
    is_int(decode(buf, n), KL_ERR_ILLEGAL_PARAMETER, "pre_shared_key not last: illegal_parameter");
    /* Rebuilt unchanged: decodes. */
    n = ch_build_with(buf, &p, NULL, 0);
    is_int(decode(buf, n), 0, "rebuilt ClientHello decodes");
    rfc8448_free(t);
}

/* Extra extensions appended to the §3 ClientHello. */
static void test_extension_values(void)
{
    struct rfc8448 *t = rfc8448_load("simple-1rtt.txt");
    size_t len;
    const uint8_t *m = rfc8448_must(t, "client_hello", &len);
    struct ch_parts p;
    uint8_t buf[2048];
    size_t n;
    int idx[64], k;
    ch_split(&p, m + 4, len - 4);
    struct {
        const char *name;
        uint8_t ext[300];
        size_t len;
        int want;
    } cases[] = {
        {"unknown extension ignored", {0xfa, 0xfa, 0x00, 0x01, 0x00}, 5, 0},
        {"unknown duplicated", {0xfa, 0xfa, 0x00, 0x00, 0xfa, 0xfa, 0x00, 0x00}, 8, KL_ERR_ILLEGAL_PARAMETER},
        {"oid_filters (CertificateRequest only)", {0x00, 0x30, 0x00, 0x00}, 4, KL_ERR_ILLEGAL_PARAMETER},
        {"padding ignored", {0x00, 0x15, 0x00, 0x03, 0, 0, 0}, 7, 0},
        {"cookie", {0x00, 0x2c, 0x00, 0x04, 0x00, 0x02, 0xaa, 0xbb}, 8, 0},
        {"cookie empty", {0x00, 0x2c, 0x00, 0x02, 0x00, 0x00}, 6, KL_ERR_DECODE},
        {"early_data non-empty", {0x00, 0x2a, 0x00, 0x01, 0x00}, 5, KL_ERR_DECODE},
        {"alpn h2,http/1.1",
         {0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c, 0x02, 'h', '2', 0x08, 'h', 't', 't', 'p', '/', '1', '.', '1'},
         18,
         0},
        {"alpn empty list", {0x00, 0x10, 0x00, 0x02, 0x00, 0x00}, 6, KL_ERR_DECODE},
        {"alpn empty name", {0x00, 0x10, 0x00, 0x03, 0x00, 0x01, 0x00}, 7, KL_ERR_DECODE},
        {"alpn name overruns", {0x00, 0x10, 0x00, 0x04, 0x00, 0x02, 0x02, 'h'}, 8, KL_ERR_DECODE},
        {"status_request ignored", {0x00, 0x05, 0x00, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00}, 9, 0},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        n = ch_build_with(buf, &p, cases[c].ext, cases[c].len);
        is_int(decode(buf, n), cases[c].want, cases[c].name);
    }
    /* Replacements of known extensions: drop the original, add the variant. */
    struct {
        const char *name;
        uint16_t type;
        uint8_t ext[300];
        size_t len;
        int want;
    } repl[] = {
        {"server_name empty", 0, {0x00, 0x00, 0x00, 0x05, 0x00, 0x03, 0x00, 0x00, 0x00}, 9, KL_ERR_DECODE},
        {"server_name with NUL",
         0,
         {0x00, 0x00, 0x00, 0x07, 0x00, 0x05, 0x00, 0x00, 0x02, 'a', 0},
         11,
         KL_ERR_ILLEGAL_PARAMETER},
        {"server_name type 1",
         0,
         {0x00, 0x00, 0x00, 0x06, 0x00, 0x04, 0x01, 0x00, 0x01, 'a'},
         10,
         KL_ERR_ILLEGAL_PARAMETER},
        {"server_name two names",
         0,
         {0x00, 0x00, 0x00, 0x0a, 0x00, 0x08, 0x00, 0x00, 0x01, 'a', 0x00, 0x00, 0x01, 'b'},
         14,
         KL_ERR_ILLEGAL_PARAMETER},
        {"server_name empty list", 0, {0x00, 0x00, 0x00, 0x02, 0x00, 0x00}, 6, KL_ERR_DECODE},
        {"supported_groups odd", 10, {0x00, 0x0a, 0x00, 0x05, 0x00, 0x03, 0x00, 0x1d, 0x00}, 9, KL_ERR_DECODE},
        {"supported_groups empty", 10, {0x00, 0x0a, 0x00, 0x02, 0x00, 0x00}, 6, KL_ERR_DECODE},
        {"key_share duplicate group",
         51,
         {0x00, 0x33, 0x00, 0x0c, 0x00, 0x0a, 0x00, 0x1d, 0x00, 0x01, 0xaa, 0x00, 0x1d, 0x00, 0x01, 0xbb},
         16,
         KL_ERR_ILLEGAL_PARAMETER},
        {"key_share empty key", 51, {0x00, 0x33, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x00}, 10, KL_ERR_DECODE},
        {"key_share empty list (allowed)", 51, {0x00, 0x33, 0x00, 0x02, 0x00, 0x00}, 6, 0},
        {"supported_versions odd", 43, {0x00, 0x2b, 0x00, 0x04, 0x03, 0x03, 0x04, 0x03}, 8, KL_ERR_DECODE},
        {"supported_versions empty", 43, {0x00, 0x2b, 0x00, 0x01, 0x00}, 5, KL_ERR_DECODE},
        {"psk_key_exchange_modes empty", 45, {0x00, 0x2d, 0x00, 0x01, 0x00}, 5, KL_ERR_DECODE},
        {"record_size_limit 63", 28, {0x00, 0x1c, 0x00, 0x02, 0x00, 0x3f}, 6, KL_ERR_ILLEGAL_PARAMETER},
        {"record_size_limit 3 bytes", 28, {0x00, 0x1c, 0x00, 0x03, 0x40, 0x00, 0x00}, 7, KL_ERR_DECODE},
        {"signature_algorithms odd", 13, {0x00, 0x0d, 0x00, 0x05, 0x00, 0x03, 0x08, 0x04, 0x08}, 9, KL_ERR_DECODE},
    };
    for (size_t c = 0; c < sizeof(repl) / sizeof(repl[0]); c++) {
        k = 0;
        for (size_t i = 0; i < p.n; i++) {
            if (p.type[i] != repl[c].type)
                idx[k++] = (int)i;
        }
        n = ch_build(buf, &p, idx, (size_t)k, repl[c].ext, repl[c].len);
        is_int(decode(buf, n), repl[c].want, repl[c].name);
    }
    /* server_name of 255 and 256 bytes. */
    uint8_t sn[300];
    for (size_t L = 255; L <= 256; L++) {
        sn[0] = 0;
        sn[1] = 0;
        sn[2] = (uint8_t)((L + 5) >> 8);
        sn[3] = (uint8_t)(L + 5);
        sn[4] = (uint8_t)((L + 3) >> 8);
        sn[5] = (uint8_t)(L + 3);
        sn[6] = 0;
        sn[7] = (uint8_t)(L >> 8);
        sn[8] = (uint8_t)L;
        memset(sn + 9, 'a', L);
        k = 0;
        for (size_t i = 0; i < p.n; i++) {
            if (p.type[i] != 0)
                idx[k++] = (int)i;
        }
        n = ch_build(buf, &p, idx, (size_t)k, sn, L + 9);
        is_int(decode(buf, n), L == 255 ? 0 : KL_ERR_ILLEGAL_PARAMETER,
               L == 255 ? "server_name 255" : "server_name 256");
    }
    /* Fixed fields. */
    memcpy(buf, m + 4, len - 4);
    n = len - 4;
    size_t comp = 34 + 1 + 2 + 6; /* session id empty, 3 suites */
    ok(buf[comp] == 1 && buf[comp + 1] == 0, "compression at expected offset");
    buf[comp + 1] = 1;
    is_int(decode(buf, n), KL_ERR_ILLEGAL_PARAMETER, "compression [1]: illegal_parameter");
    buf[comp + 1] = 0;
    buf[36] = 7; /* cipher_suites length 6 → 7 (odd), the rest shifts */
    ok(decode(buf, n) != 0, "cipher_suites odd length refused");
    /* compression [0,1]: rebuild with two methods. */
    {
        uint8_t b2[2048];
        memcpy(b2, m + 4, comp);
        b2[comp] = 2;
        b2[comp + 1] = 0;
        b2[comp + 2] = 1;
        memcpy(b2 + comp + 3, m + 4 + comp + 2, n - comp - 2);
        is_int(decode(b2, n + 1), KL_ERR_ILLEGAL_PARAMETER, "compression [0,1]: illegal_parameter");
        /* session id of 33 bytes */
        uint8_t b3[2048];
        memcpy(b3, m + 4, 34);
        b3[34] = 33;
        memset(b3 + 35, 7, 33);
        memcpy(b3 + 68, m + 4 + 35, n - 35);
        is_int(decode(b3, n + 33), KL_ERR_DECODE, "legacy_session_id of 33 bytes: decode_error");
        b3[34] = 32;
        memcpy(b3 + 67, m + 4 + 35, n - 35);
        is_int(decode(b3, n + 32), 0, "legacy_session_id of 32 bytes");
        /* empty cipher_suites */
        memcpy(b3, m + 4, 35);
        b3[35] = 0;
        b3[36] = 0;
        memcpy(b3 + 37, m + 4 + 43, n - 43);
        is_int(decode(b3, n - 6), KL_ERR_DECODE, "empty cipher_suites: decode_error");
    }
    rfc8448_free(t);
}

static void test_server_messages(void)
{
    struct rfc8448 *t = rfc8448_load("simple-1rtt.txt");
    struct rfc8448 *h = rfc8448_load("hello-retry-request.txt");
    struct kl_buf b, e;
    size_t len, rl, pl, cl, sl;
    const uint8_t *sh = rfc8448_must(t, "server_hello", &len);
    const uint8_t *random = rfc8448_must(t, "server_random", &rl);
    const uint8_t *pub = rfc8448_must(t, "server_ephemeral_public", &pl);
    kl_buf_init(&b, 1 << 16);
    kl_buf_init(&e, 1 << 16);

    is_int(ext_key_share_sh_encode(&e, TLS_GROUP_X25519, pub, pl), 0, "key_share encode");
    is_int(ext_supported_versions_sh_encode(&e, TLS_VERSION_13), 0, "supported_versions encode");
    struct msg_server_hello s = {random, NULL, 0, TLS_AES_128_GCM_SHA256, kl_span_of(e.base, e.len)};
    is_int(msg_server_hello_encode(&b, &s, 0), 0, "ServerHello encode");
    is_mem(b.base, b.len, sh, len, "ServerHello == RFC 8448 3");

    /* HelloRetryRequest with the trace's cookie. */
    const uint8_t *hrr = rfc8448_must(h, "hello_retry_request", &len);
    const uint8_t *cookie = hrr + len - 6 - 114; /* ... cookie(114), supported_versions(6) */
    kl_buf_reset(&b);
    kl_buf_reset(&e);
    is_int(ext_key_share_hrr_encode(&e, TLS_GROUP_SECP256R1), 0, "HRR key_share encode");
    is_int(ext_cookie_encode(&e, cookie, 114), 0, "cookie encode");
    is_int(ext_supported_versions_sh_encode(&e, TLS_VERSION_13), 0, "HRR supported_versions encode");
    struct msg_server_hello r = {NULL, NULL, 0, TLS_AES_128_GCM_SHA256, kl_span_of(e.base, e.len)};
    is_int(msg_server_hello_encode(&b, &r, 1), 0, "HRR encode");
    is_mem(b.base, b.len, hrr, len, "HelloRetryRequest == RFC 8448 5");

    /* EncryptedExtensions as NSS sent it. */
    static const uint16_t nss_groups[] = {0x001d, 0x0017, 0x0018, 0x0019, 0x0100, 0x0101, 0x0102, 0x0103, 0x0104};
    const uint8_t *ee = rfc8448_must(t, "encrypted_extensions", &len);
    kl_buf_reset(&b);
    kl_buf_reset(&e);
    is_int(ext_supported_groups_encode(&e, nss_groups, 9), 0, "supported_groups encode");
    is_int(ext_record_size_limit_encode(&e, 0x4001), 0, "record_size_limit encode");
    is_int(ext_server_name_ack_encode(&e), 0, "server_name ack encode");
    is_int(msg_encrypted_extensions_encode(&b, kl_span_of(e.base, e.len)), 0, "EE encode");
    is_mem(b.base, b.len, ee, len, "EncryptedExtensions == RFC 8448 3");

    /* Certificate from the DER file. */
    const uint8_t *cert_msg = rfc8448_must(t, "certificate", &len);
    uint8_t *der = rfc8448_read_file("server-cert.der", &cl);
    const uint8_t *chain[1] = {der};
    kl_buf_reset(&b);
    is_int(msg_certificate_encode(&b, chain, &cl, 1), 0, "Certificate encode");
    is_mem(b.base, b.len, cert_msg, len, "Certificate == RFC 8448 3");
    free(der);

    const uint8_t *cv = rfc8448_must(t, "certificate_verify", &len);
    kl_buf_reset(&b);
    is_int(msg_certificate_verify_encode(&b, TLS_SIG_RSA_PSS_RSAE_SHA256, cv + 8, len - 8), 0, "CV encode");
    is_mem(b.base, b.len, cv, len, "CertificateVerify == RFC 8448 3");

    const uint8_t *fin = rfc8448_must(t, "server_finished", &len);
    kl_buf_reset(&b);
    is_int(msg_finished_encode(&b, fin + 4, 32), 0, "Finished encode");
    is_mem(b.base, b.len, fin, len, "Finished == RFC 8448 3");
    struct kl_span vd;
    is_int(msg_finished_decode(&vd, fin + 4, 32, 32), 0, "Finished decode");
    is_int(msg_finished_decode(&vd, fin + 4, 31, 32), KL_ERR_DECODE, "Finished short: decode_error");
    is_int(msg_finished_decode(&vd, fin + 4, 32, 48), KL_ERR_DECODE, "Finished for SHA-384 too short");
    is_int(msg_finished_decode(&vd, fin + 4, 32, 31), KL_ERR_DECODE, "Finished long: decode_error");

    int req = -1;
    uint8_t ku[3] = {0, 1, 2};
    is_int(msg_key_update_decode(&req, ku, 1), 0, "KeyUpdate 0");
    is_int(req, 0, "update_not_requested");
    is_int(msg_key_update_decode(&req, ku + 1, 1), 0, "KeyUpdate 1");
    is_int(req, 1, "update_requested");
    is_int(msg_key_update_decode(&req, ku + 2, 1), KL_ERR_ILLEGAL_PARAMETER, "KeyUpdate 2: illegal_parameter");
    is_int(msg_key_update_decode(&req, ku, 2), KL_ERR_DECODE, "KeyUpdate 2 bytes: decode_error");
    is_int(msg_key_update_decode(&req, ku, 0), KL_ERR_DECODE, "KeyUpdate empty: decode_error");
    kl_buf_reset(&b);
    is_int(msg_key_update_encode(&b, 1), 0, "KeyUpdate encode");
    is_mem(b.base, b.len, "\x18\x00\x00\x01\x01", 5, "KeyUpdate bytes");

    uint8_t hash[32];
    memset(hash, 0xab, 32);
    kl_buf_reset(&b);
    is_int(msg_message_hash_encode(&b, hash, 32), 0, "message_hash encode");
    ok(b.len == 36 && b.base[0] == 0xfe && b.base[3] == 32, "message_hash header");

    /* Header peek bounds. */
    uint8_t type;
    size_t bl;
    uint8_t hdr[8] = {1, 0, 0x10, 0x00, 0, 0, 0, 0};
    is_int(msg_header_peek(hdr, 3, 0, &type, &bl), KL_ERR_WANT_READ, "peek: short header wants more");
    is_int(msg_header_peek(hdr, 8, 0, &type, &bl), KL_ERR_WANT_READ, "peek: short body wants more");
    is_int(msg_header_peek(hdr, 8, 0x0fff, &type, &bl), KL_ERR_DECODE, "peek: over max refused before buffering");
    hdr[1] = 0x01;
    hdr[2] = 0x00;
    hdr[3] = 0x01;
    is_int(msg_header_peek(hdr, 8, 0, &type, &bl), KL_ERR_DECODE, "peek: 64 KiB + 1 over the default max");

    /* Overflow: a writer too small fails cleanly. */
    struct kl_buf small;
    kl_buf_init(&small, 20);
    is_int(msg_certificate_verify_encode(&small, 0x0804, cv + 8, len - 8), KL_ERR_OVERFLOW, "encode overflow");
    kl_buf_dispose(&small);
    (void)sl;

    kl_buf_dispose(&b);
    kl_buf_dispose(&e);
    rfc8448_free(t);
    rfc8448_free(h);
}

/* Issue 12: key_share without a count cap, duplicates anywhere, shares inside supported_groups. */
static void test_key_shares_uncapped(void)
{
    struct rfc8448 *t = rfc8448_load("simple-1rtt.txt");
    size_t len;
    const uint8_t *m = rfc8448_must(t, "client_hello", &len);
    struct ch_parts p;
    static uint8_t buf[140000], extra[140000];
    int idx[64];
    size_t k = 0;
    ch_split(&p, m + 4, len - 4);
    for (size_t i = 0; i < p.n; i++) {
        if (p.type[i] != EXT_KEY_SHARE && p.type[i] != EXT_SUPPORTED_GROUPS)
            idx[k++] = (int)i;
    }
    /* n shares of groups 0x6000.. (1-byte keys); supported_groups lists them all unless one is left out. */
    for (int variant = 0; variant < 5; variant++) {
        static const size_t counts[] = {17, 5000, 20, 20, 12000};
        size_t n = counts[variant], o = 0, g = 0, ks_len = 5 * n, gl = 2 * n;
        uint8_t *e = extra;
        e[o++] = 0, e[o++] = EXT_SUPPORTED_GROUPS;
        e[o++] = (uint8_t)((gl + 2) >> 8), e[o++] = (uint8_t)(gl + 2);
        e[o++] = (uint8_t)(gl >> 8), e[o++] = (uint8_t)gl;
        for (size_t i = 0; i < n; i++) {
            uint16_t grp = (uint16_t)(0x6000 + i);
            if (variant == 3 && i == 19)
                grp = 0x7777; /* listed, but no share for it: fine; the share for 0x6013 is then unlisted */
            e[o++] = (uint8_t)(grp >> 8), e[o++] = (uint8_t)grp;
        }
        g = o;
        e[o++] = 0, e[o++] = EXT_KEY_SHARE;
        e[o++] = (uint8_t)((ks_len + 2) >> 8), e[o++] = (uint8_t)(ks_len + 2);
        e[o++] = (uint8_t)(ks_len >> 8), e[o++] = (uint8_t)ks_len;
        for (size_t i = 0; i < n; i++) {
            uint16_t grp = (uint16_t)(0x6000 + (variant == 2 && i == n - 1 ? 3 : i));
            e[o++] = (uint8_t)(grp >> 8), e[o++] = (uint8_t)grp, e[o++] = 0, e[o++] = 1, e[o++] = 0x42;
        }
        (void)g;
        size_t bl = ch_build(buf, &p, idx, k, extra, o);
        struct msg_client_hello ch;
        int r = msg_client_hello_decode(&ch, buf, bl);
        switch (variant) {
        case 0:
            ok(r == 0 && ch.ext.n_shares == 17 && ch.ext.first_share.group == 0x6000 && ch.ext.first_share.key.len == 1,
               "17 key shares: decoded (no cap of 16)");
            break;
        case 1: {
            size_t walked = 0;
            struct wire_reader w;
            struct ext_key_share ks;
            int order = 1;
            wire_reader_init(&w, ch.ext.key_shares.base, ch.ext.key_shares.len);
            while (r == 0 && ext_key_share_next(&w, &ks)) {
                order &= ks.group == 0x6000 + walked;
                walked++;
            }
            ok(r == 0 && ch.ext.n_shares == 5000 && walked == 5000 && order,
               "5000 key shares: decoded and walked in order");
            break;
        }
        case 2:
            is_int(r, KL_ERR_ILLEGAL_PARAMETER, "duplicate group as the 20th share → illegal_parameter (4.2.8)");
            break;
        case 3:
            is_int(r, KL_ERR_ILLEGAL_PARAMETER, "a share whose group is not in supported_groups → illegal_parameter");
            break;
        default:
            /* 12000 shares do not fit in 2^16 - 1 bytes of extensions: the lengths refuse it. */
            ok(r != 0, "key_share past the extensions' size: refused by its length");
            break;
        }
    }
    /* key_share present, supported_groups absent: left to the handshake (missing_extension, 9.2). */
    {
        int idx2[64];
        size_t k2 = 0;
        for (size_t i = 0; i < p.n; i++) {
            if (p.type[i] != EXT_SUPPORTED_GROUPS)
                idx2[k2++] = (int)i;
        }
        size_t bl = ch_build(buf, &p, idx2, k2, NULL, 0);
        is_int(decode(buf, bl), 0, "key_share without supported_groups decodes (hs_ answers missing_extension)");
    }
    rfc8448_free(t);
}

int main(void)
{
    test_trace_client_hellos();
    test_mutations();
    test_duplicates_and_order();
    test_extension_values();
    test_server_messages();
    test_key_shares_uncapped();
    return kl_test_done();
}
