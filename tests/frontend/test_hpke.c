/*
 * test_hpke.c - RFC 9180 base mode against the Appendix A.1.1 and A.2.1 vectors
 * (tests/vectors/hpke/rfc9180-x25519-base.txt, parsed here): DeriveKeyPair, enc, the context's
 * base_nonce and exporter_secret, every listed encryption sealed with the vectors' skEm and
 * opened with skRm, the exported values. Then the refusals: wrong tag, wrong aad, out of order,
 * truncated ct, enc of the wrong length, low-order enc and pkR, unsupported suites, sequence
 * number overflow, the wrong direction, and that dispose wipes.
 */
#include <ctype.h>
#include <stdlib.h>
#include "hpke.h"
#include "kl_test.h"
#include "tls.h"

#define VMAX 128 /* the longest hex value in the file is 77 bytes (key_schedule_context) */

struct vbytes {
    uint8_t b[VMAX];
    size_t len;
};

struct venc {
    uint64_t seq;
    struct vbytes pt, aad, nonce, ct;
};

struct vexp {
    struct vbytes context, value;
    size_t L;
};

struct vsuite {
    char title[128];
    unsigned mode, kem_id, kdf_id, aead_id;
    struct vbytes info, ikmE, pkEm, skEm, ikmR, pkRm, skRm, enc, shared_secret, key, base_nonce, exporter_secret;
    struct venc enc_list[16];
    size_t n_enc;
    struct vexp exp_list[8];
    size_t n_exp;
};

static struct vsuite suites[4];
static size_t n_suites;

static int unhex_append(struct vbytes *v, const char *hex)
{
    size_t n = strlen(hex);
    if (n % 2 != 0 || v->len + n / 2 > VMAX)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        unsigned x;
        if (!isxdigit((unsigned char)hex[i]) || !isxdigit((unsigned char)hex[i + 1]) || sscanf(hex + i, "%2x", &x) != 1)
            return -1;
        v->b[v->len++] = (uint8_t)x;
    }
    return 0;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
}

/* Where a "key: value" line of the current section goes; NULL for the numeric ones. */
static struct vbytes *field(struct vsuite *s, int section, const char *key)
{
    if (section == 1) {
        struct venc *e = &s->enc_list[s->n_enc - 1];
        return strcmp(key, "pt") == 0      ? &e->pt
               : strcmp(key, "aad") == 0   ? &e->aad
               : strcmp(key, "nonce") == 0 ? &e->nonce
               : strcmp(key, "ct") == 0    ? &e->ct
                                           : NULL;
    }
    if (section == 2) {
        struct vexp *x = &s->exp_list[s->n_exp - 1];
        return strcmp(key, "exporter_context") == 0 ? &x->context
               : strcmp(key, "exported_value") == 0 ? &x->value
                                                    : NULL;
    }
    static const struct {
        const char *name;
        size_t off;
    } setup[] = {
        {"info", offsetof(struct vsuite, info)},
        {"ikmE", offsetof(struct vsuite, ikmE)},
        {"pkEm", offsetof(struct vsuite, pkEm)},
        {"skEm", offsetof(struct vsuite, skEm)},
        {"ikmR", offsetof(struct vsuite, ikmR)},
        {"pkRm", offsetof(struct vsuite, pkRm)},
        {"skRm", offsetof(struct vsuite, skRm)},
        {"enc", offsetof(struct vsuite, enc)},
        {"shared_secret", offsetof(struct vsuite, shared_secret)},
        {"key", offsetof(struct vsuite, key)},
        {"base_nonce", offsetof(struct vsuite, base_nonce)},
        {"exporter_secret", offsetof(struct vsuite, exporter_secret)},
    };
    for (size_t i = 0; i < sizeof(setup) / sizeof(setup[0]); i++)
        if (strcmp(key, setup[i].name) == 0)
            return (struct vbytes *)((char *)s + setup[i].off);
    return NULL;
}

/*
 * The file as RFC 9180 prints it: "## " starts a suite, "#### Encryptions" and "#### Exported
 * Values" its lists, "key: hex" (the hex may be empty, or start or continue on the next lines).
 * Returns 0, or -1 with a diagnostic for anything it does not understand.
 */
static int parse_vectors(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[512];
    struct vsuite *s = NULL;
    struct vbytes *cur = NULL, scratch;
    int section = 0, lineno = 0;

    if (f == NULL) {
        diag("cannot open %s", path);
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        trim(line);
        if (strncmp(line, "## ", 3) == 0) {
            if (n_suites == sizeof(suites) / sizeof(suites[0]))
                goto bad;
            s = &suites[n_suites++];
            memset(s, 0, sizeof(*s));
            snprintf(s->title, sizeof(s->title), "%.100s", line + 3);
            section = 0;
            cur = NULL;
            continue;
        }
        if (strncmp(line, "###", 3) == 0) {
            section = strstr(line, "Encryptions") != NULL ? 1 : strstr(line, "Exported") != NULL ? 2 : 0;
            cur = NULL;
            continue;
        }
        if (line[0] == '\0' || strcmp(line, "~~~") == 0 || line[0] == '#') {
            if (line[0] == '\0' && section == 0)
                cur = NULL;
            continue;
        }
        if (s == NULL)
            goto bad;
        char *colon = strchr(line, ':');
        if (colon == NULL) {
            /* A continuation of the last hex value. */
            if (cur == NULL || unhex_append(cur, line) != 0)
                goto bad;
            continue;
        }
        *colon = '\0';
        char *key = line, *val = colon + 1;
        while (*val == ' ')
            val++;
        if (section == 1 && strcmp(key, "sequence number") == 0) {
            if (s->n_enc == sizeof(s->enc_list) / sizeof(s->enc_list[0]))
                goto bad;
            s->enc_list[s->n_enc++].seq = strtoull(val, NULL, 10);
            cur = NULL;
            continue;
        }
        if (section == 2 && strcmp(key, "exporter_context") == 0) {
            if (s->n_exp == sizeof(s->exp_list) / sizeof(s->exp_list[0]))
                goto bad;
            s->n_exp++;
        }
        if (section == 2 && strcmp(key, "L") == 0) {
            if (s->n_exp == 0)
                goto bad;
            s->exp_list[s->n_exp - 1].L = strtoul(val, NULL, 10);
            cur = NULL;
            continue;
        }
        if (section == 0 && strcmp(key, "mode") == 0) {
            s->mode = (unsigned)strtoul(val, NULL, 10);
            continue;
        }
        if (section == 0 && (strcmp(key, "kem_id") == 0 || strcmp(key, "kdf_id") == 0 || strcmp(key, "aead_id") == 0)) {
            unsigned v = (unsigned)strtoul(val, NULL, 10);
            *(key[0] == 'a' ? &s->aead_id : key[1] == 'e' ? &s->kem_id : &s->kdf_id) = v;
            continue;
        }
        if (section == 1 && s->n_enc == 0)
            goto bad;
        cur = field(s, section, key);
        if (cur == NULL) {
            /* A value we do not check (key_schedule_context, secret): parse it, keep nothing. */
            memset(&scratch, 0, sizeof(scratch));
            cur = &scratch;
        }
        if (unhex_append(cur, val) != 0)
            goto bad;
    }
    fclose(f);
    return 0;
bad:
    diag("%s:%d: not understood: %s", path, lineno, line);
    fclose(f);
    return -1;
}

static void test_suite(const struct vsuite *v)
{
    char name[256];
    uint8_t sk[32], pk[32], enc[32], out[VMAX];
    struct hpke_ctx s, r;

#define N(what) (snprintf(name, sizeof(name), "%.100s: %.100s", v->title, (what)), name)
    ok(v->mode == 0 && v->kem_id == HPKE_KEM_X25519_SHA256 && v->kdf_id == HPKE_KDF_HKDF_SHA256, N("base mode X25519"));
    ok(v->n_enc == 6 && v->n_exp == 3, N("six encryptions and three exports parsed"));
    ok(hpke_suite_supported((uint16_t)v->kdf_id, (uint16_t)v->aead_id), N("suite supported"));

    /* DeriveKeyPair from ikmR and ikmE. */
    memset(sk, 0, sizeof(sk));
    ok(hpke_derive_keypair(sk, pk, v->ikmR.b, v->ikmR.len) == 0, N("DeriveKeyPair(ikmR)"));
    is_mem(sk, 32, v->skRm.b, v->skRm.len, N("skRm"));
    is_mem(pk, 32, v->pkRm.b, v->pkRm.len, N("pkRm"));
    ok(hpke_derive_keypair(sk, pk, v->ikmE.b, v->ikmE.len) == 0, N("DeriveKeyPair(ikmE)"));
    is_mem(sk, 32, v->skEm.b, v->skEm.len, N("skEm"));
    is_mem(pk, 32, v->pkEm.b, v->pkEm.len, N("pkEm"));
    ok(hpke_public_key(pk, v->skRm.b) == 0, N("public key of skRm"));
    is_mem(pk, 32, v->pkRm.b, v->pkRm.len, N("pkRm from skRm"));

    /* The sender with the vectors' ephemeral key. */
    is_int(hpke_setup_base_s(&s, enc, (uint16_t)v->kdf_id, (uint16_t)v->aead_id, v->pkRm.b, v->info.b, v->info.len,
                             v->skEm.b),
           0, N("SetupBaseS"));
    is_mem(enc, 32, v->enc.b, v->enc.len, N("enc"));
    /* base_nonce and exporter_secret are in the (public) context; the key shows in every ct. */
    is_mem(s.base_nonce, sizeof(s.base_nonce), v->base_nonce.b, v->base_nonce.len, N("sender base_nonce"));
    is_mem(s.exporter_secret, sizeof(s.exporter_secret), v->exporter_secret.b, v->exporter_secret.len,
           N("sender exporter_secret"));
    is_int(s.seq, 0, N("sender starts at seq 0"));

    is_int(hpke_setup_base_r(&r, (uint16_t)v->kdf_id, (uint16_t)v->aead_id, v->enc.b, v->enc.len, v->skRm.b, v->pkRm.b,
                             v->info.b, v->info.len),
           0, N("SetupBaseR"));
    is_mem(r.base_nonce, sizeof(r.base_nonce), v->base_nonce.b, v->base_nonce.len, N("receiver base_nonce"));
    is_mem(r.exporter_secret, sizeof(r.exporter_secret), v->exporter_secret.b, v->exporter_secret.len,
           N("receiver exporter_secret"));

    for (size_t i = 0; i < v->n_enc; i++) {
        const struct venc *e = &v->enc_list[i];
        char what[64];
        /* The vectors skip sequence numbers (3, 5..254): jump the counters there. */
        s.seq = e->seq;
        r.seq = e->seq;
        snprintf(what, sizeof(what), "seal seq %llu", (unsigned long long)e->seq);
        is_int(hpke_seal(&s, out, e->aad.b, e->aad.len, e->pt.b, e->pt.len), 0, N(what));
        snprintf(what, sizeof(what), "ct seq %llu", (unsigned long long)e->seq);
        is_mem(out, e->pt.len + HPKE_TAG_LEN, e->ct.b, e->ct.len, N(what));
        ok(s.seq == e->seq + 1, N("seal advances seq"));
        snprintf(what, sizeof(what), "open seq %llu", (unsigned long long)e->seq);
        memset(out, 0xaa, sizeof(out));
        is_int(hpke_open(&r, out, e->aad.b, e->aad.len, e->ct.b, e->ct.len), 0, N(what));
        is_mem(out, e->ct.len - HPKE_TAG_LEN, e->pt.b, e->pt.len, N("pt back"));
        ok(r.seq == e->seq + 1, N("open advances seq"));
    }

    for (size_t i = 0; i < v->n_exp; i++) {
        const struct vexp *x = &v->exp_list[i];
        char what[64];
        snprintf(what, sizeof(what), "export #%zu (sender)", i);
        memset(out, 0, sizeof(out));
        is_int(hpke_export(&s, out, x->L, x->context.b, x->context.len), 0, N(what));
        is_mem(out, x->L, x->value.b, x->value.len, N(what));
        snprintf(what, sizeof(what), "export #%zu (receiver)", i);
        memset(out, 0, sizeof(out));
        is_int(hpke_export(&r, out, x->L, x->context.b, x->context.len), 0, N(what));
        is_mem(out, x->L, x->value.b, x->value.len, N(what));
    }
    hpke_ctx_dispose(&s);
    hpke_ctx_dispose(&r);
#undef N
}

static int all_zero(const void *p, size_t len)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < len; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

/* The refusals, on the A.1.1 vectors (AES-128-GCM). */
static void test_negatives(const struct vsuite *v)
{
    struct hpke_ctx r, s;
    uint8_t ct[VMAX], pt[VMAX], enc[33], pk[32];
    const struct venc *e0 = &v->enc_list[0], *e1 = &v->enc_list[1];
    const uint16_t kdf = (uint16_t)v->kdf_id, aead = (uint16_t)v->aead_id;

    is_int(hpke_setup_base_r(&r, kdf, aead, v->enc.b, 32, v->skRm.b, v->pkRm.b, v->info.b, v->info.len), 0,
           "receiver for the negatives");

    /* Wrong tag: refused, pt wiped, seq unchanged. */
    memcpy(ct, e0->ct.b, e0->ct.len);
    ct[e0->ct.len - 1] ^= 0x01;
    memset(pt, 0xaa, sizeof(pt));
    is_int(hpke_open(&r, pt, e0->aad.b, e0->aad.len, ct, e0->ct.len), KL_ERR_BAD_RECORD_MAC, "flipped tag bit");
    ok(all_zero(pt, e0->pt.len), "no unauthenticated plaintext released");
    is_int(r.seq, 0, "failed open leaves seq");
    memcpy(ct, e0->ct.b, e0->ct.len);
    ct[0] ^= 0x80;
    is_int(hpke_open(&r, pt, e0->aad.b, e0->aad.len, ct, e0->ct.len), KL_ERR_BAD_RECORD_MAC, "flipped ct bit");

    /* Wrong aad. */
    is_int(hpke_open(&r, pt, e1->aad.b, e1->aad.len, e0->ct.b, e0->ct.len), KL_ERR_BAD_RECORD_MAC, "wrong aad");
    is_int(hpke_open(&r, pt, NULL, 0, e0->ct.b, e0->ct.len), KL_ERR_BAD_RECORD_MAC, "missing aad");

    /* Out of order: seq 1's ct at seq 0, then seq 0's still opens (seq was not consumed). */
    is_int(hpke_open(&r, pt, e1->aad.b, e1->aad.len, e1->ct.b, e1->ct.len), KL_ERR_BAD_RECORD_MAC, "seq 1 ct at seq 0");
    is_int(r.seq, 0, "seq still 0");

    /* Truncated ct: one byte short, shorter than a tag, empty. */
    is_int(hpke_open(&r, pt, e0->aad.b, e0->aad.len, e0->ct.b, e0->ct.len - 1), KL_ERR_BAD_RECORD_MAC,
           "ct one byte short");
    is_int(hpke_open(&r, pt, e0->aad.b, e0->aad.len, e0->ct.b, HPKE_TAG_LEN - 1), KL_ERR_BAD_RECORD_MAC,
           "ct shorter than a tag");
    is_int(hpke_open(&r, pt, e0->aad.b, e0->aad.len, e0->ct.b, 0), KL_ERR_BAD_RECORD_MAC, "empty ct");
    is_int(r.seq, 0, "seq still 0 after the refusals");
    is_int(hpke_open(&r, pt, e0->aad.b, e0->aad.len, e0->ct.b, e0->ct.len), 0, "seq 0 ct opens after them");
    is_mem(pt, e0->pt.len, e0->pt.b, e0->pt.len, "and gives pt");
    is_int(hpke_open(&r, pt, e0->aad.b, e0->aad.len, e0->ct.b, e0->ct.len), KL_ERR_BAD_RECORD_MAC,
           "replayed seq 0 ct refused at seq 1");

    /* A receiver context does not seal. */
    is_int(hpke_seal(&r, ct, NULL, 0, pt, 4), KL_ERR_INVALID, "receiver cannot seal");

    /* Sequence number overflow: the last usable number, then refusal (both directions). */
    r.seq = UINT64_MAX;
    is_int(hpke_open(&r, pt, e0->aad.b, e0->aad.len, e0->ct.b, e0->ct.len), KL_ERR_OVERFLOW, "open at 2^64-1 fails");
    ok(r.seq == UINT64_MAX, "and leaves seq");
    is_int(hpke_setup_base_s(&s, enc, kdf, aead, v->pkRm.b, v->info.b, v->info.len, v->skEm.b), 0, "sender");
    s.seq = UINT64_MAX - 1;
    is_int(hpke_seal(&s, ct, NULL, 0, pt, 4), 0, "seal at 2^64-2");
    is_int(hpke_seal(&s, ct, NULL, 0, pt, 4), KL_ERR_OVERFLOW, "seal at 2^64-1 fails");
    ok(s.seq == UINT64_MAX, "and leaves seq");
    /* A sender context does not open. */
    s.seq = 0;
    is_int(hpke_open(&s, pt, e0->aad.b, e0->aad.len, e0->ct.b, e0->ct.len), KL_ERR_INVALID, "sender cannot open");
    is_int(hpke_export(&s, pt, 255 * 32 + 1, NULL, 0), KL_ERR_INVALID, "export longer than 255*Nh refused");
    is_int(hpke_export(&s, pt, 0, NULL, 0), 0, "export of 0 bytes");

    /* dispose wipes the whole context and is idempotent; a disposed context refuses everything. */
    hpke_ctx_dispose(&s);
    ok(all_zero(&s, sizeof(s)), "dispose wipes the sender context");
    hpke_ctx_dispose(&s);
    hpke_ctx_dispose(NULL);
    is_int(hpke_seal(&s, ct, NULL, 0, pt, 4), KL_ERR_INVALID, "disposed context cannot seal");
    is_int(hpke_export(&s, pt, 32, NULL, 0), KL_ERR_INVALID, "disposed context cannot export");
    hpke_ctx_dispose(&r);
    ok(all_zero(&r, sizeof(r)), "dispose wipes the receiver context");

    /* enc of the wrong length. */
    memcpy(enc, v->enc.b, 32);
    enc[32] = 0;
    is_int(hpke_setup_base_r(&r, kdf, aead, enc, 31, v->skRm.b, v->pkRm.b, v->info.b, v->info.len), KL_ERR_INVALID,
           "enc of 31 bytes");
    is_int(hpke_setup_base_r(&r, kdf, aead, enc, 33, v->skRm.b, v->pkRm.b, v->info.b, v->info.len), KL_ERR_INVALID,
           "enc of 33 bytes");
    is_int(hpke_setup_base_r(&r, kdf, aead, NULL, 0, v->skRm.b, v->pkRm.b, v->info.b, v->info.len), KL_ERR_INVALID,
           "no enc");
    ok(all_zero(&r, sizeof(r)), "a failed setup leaves a wiped context");

    /* Low-order enc and pkR (7.1.4: an all-zero DH output aborts). */
    static const char *low_order[] = {
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    };
    for (size_t i = 0; i < sizeof(low_order) / sizeof(low_order[0]); i++) {
        char name[96];
        for (size_t j = 0; j < 32; j++) {
            unsigned x;
            sscanf(low_order[i] + 2 * j, "%2x", &x);
            pk[j] = (uint8_t)x;
        }
        snprintf(name, sizeof(name), "low-order enc #%zu refused", i);
        is_int(hpke_setup_base_r(&r, kdf, aead, pk, 32, v->skRm.b, v->pkRm.b, v->info.b, v->info.len),
               KL_ERR_ILLEGAL_PARAMETER, name);
        snprintf(name, sizeof(name), "low-order pkR #%zu refused", i);
        is_int(hpke_setup_base_s(&s, enc, kdf, aead, pk, v->info.b, v->info.len, NULL), KL_ERR_ILLEGAL_PARAMETER, name);
    }
    ok(all_zero(&s, sizeof(s)) && all_zero(&r, sizeof(r)), "refused setups leave wiped contexts");

    /* Unsupported suites: another KDF, an unknown AEAD, the export-only AEAD 0xffff. */
    static const uint16_t bad[][2] = {{0x0002, HPKE_AEAD_AES_128_GCM}, {0x0003, HPKE_AEAD_AES_128_GCM},
                                      {HPKE_KDF_HKDF_SHA256, 0x0000},  {HPKE_KDF_HKDF_SHA256, 0x0004},
                                      {HPKE_KDF_HKDF_SHA256, 0xffff},  {0x0000, 0x0000}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char name[96];
        snprintf(name, sizeof(name), "suite (%04x, %04x) unsupported", bad[i][0], bad[i][1]);
        ok(!hpke_suite_supported(bad[i][0], bad[i][1]), name);
        is_int(hpke_setup_base_r(&r, bad[i][0], bad[i][1], v->enc.b, 32, v->skRm.b, v->pkRm.b, NULL, 0), KL_ERR_INVALID,
               name);
        is_int(hpke_setup_base_s(&s, enc, bad[i][0], bad[i][1], v->pkRm.b, NULL, 0, NULL), KL_ERR_INVALID, name);
    }

    /* The receiver with a different info derives other keys: the ct does not open. */
    is_int(hpke_setup_base_r(&r, kdf, aead, v->enc.b, 32, v->skRm.b, v->pkRm.b, (const uint8_t *)"other", 5), 0,
           "receiver with another info");
    is_int(hpke_open(&r, pt, e0->aad.b, e0->aad.len, e0->ct.b, e0->ct.len), KL_ERR_BAD_RECORD_MAC,
           "other info: ct does not open");
    hpke_ctx_dispose(&r);
    /* Info longer than we take. */
    static uint8_t big[4096];
    is_int(hpke_setup_base_r(&r, kdf, aead, v->enc.b, 32, v->skRm.b, v->pkRm.b, big, sizeof(big)), KL_ERR_INVALID,
           "oversized info refused");
}

/* Fresh keys, every supported AEAD (AES-256-GCM has no X25519 vector in RFC 9180), in place. */
static void test_round_trip(void)
{
    static const uint16_t aeads[] = {HPKE_AEAD_AES_128_GCM, HPKE_AEAD_AES_256_GCM, HPKE_AEAD_CHACHA20_POLY1305};
    uint8_t sk[32], pk[32], sk2[32], pk2[32], pkx[32], enc[32], buf[64 + HPKE_TAG_LEN], e1[32], e2[32];
    static const uint8_t info[] = "tls ech\0config";
    static const uint8_t msg[64] = "the inner ClientHello";

    ok(hpke_generate_keypair(sk, pk) == 0 && hpke_generate_keypair(sk2, pk2) == 0, "two fresh key pairs");
    ok(memcmp(sk, sk2, 32) != 0 && memcmp(pk, pk2, 32) != 0, "they differ");
    ok(hpke_public_key(pkx, sk) == 0 && memcmp(pkx, pk, 32) == 0, "public key of a generated private key");

    for (size_t i = 0; i < sizeof(aeads) / sizeof(aeads[0]); i++) {
        struct hpke_ctx s, r, r2;
        char name[96];
        ok(hpke_suite_supported(HPKE_KDF_HKDF_SHA256, aeads[i]), "aead supported");
        is_int(hpke_setup_base_s(&s, enc, HPKE_KDF_HKDF_SHA256, aeads[i], pk, info, sizeof(info), NULL), 0,
               "sender with a fresh ephemeral key");
        is_int(hpke_setup_base_r(&r, HPKE_KDF_HKDF_SHA256, aeads[i], enc, 32, sk, pk, info, sizeof(info)), 0,
               "receiver");
        for (int k = 0; k < 3; k++) {
            memcpy(buf, msg, sizeof(msg));
            snprintf(name, sizeof(name), "aead %u: seal #%d in place", aeads[i], k);
            is_int(hpke_seal(&s, buf, (const uint8_t *)"aad", 3, buf, sizeof(msg)), 0, name);
            ok(memcmp(buf, msg, sizeof(msg)) != 0, "ciphertext differs from plaintext");
            snprintf(name, sizeof(name), "aead %u: open #%d in place", aeads[i], k);
            is_int(hpke_open(&r, buf, (const uint8_t *)"aad", 3, buf, sizeof(buf)), 0, name);
            is_mem(buf, sizeof(msg), msg, sizeof(msg), "plaintext back");
        }
        ok(hpke_export(&s, e1, 32, (const uint8_t *)"x", 1) == 0 &&
               hpke_export(&r, e2, 32, (const uint8_t *)"x", 1) == 0 && memcmp(e1, e2, 32) == 0,
           "both sides export the same secret");
        /* The wrong private key: same enc, other keys, the next ct does not open. */
        is_int(hpke_setup_base_r(&r2, HPKE_KDF_HKDF_SHA256, aeads[i], enc, 32, sk2, pk, info, sizeof(info)), 0,
               "receiver with the wrong private key");
        memcpy(buf, msg, sizeof(msg));
        is_int(hpke_seal(&s, buf, NULL, 0, buf, sizeof(msg)), 0, "seal");
        r2.seq = s.seq - 1;
        snprintf(name, sizeof(name), "aead %u: wrong key does not open", aeads[i]);
        is_int(hpke_open(&r2, buf, NULL, 0, buf, sizeof(buf)), KL_ERR_BAD_RECORD_MAC, name);
        hpke_ctx_dispose(&s);
        hpke_ctx_dispose(&r);
        hpke_ctx_dispose(&r2);
    }
}

int main(void)
{
    char path[1024];
    const char *dir = getenv("KL_TESTDATA");

    if (crypto_init() != 0) {
        ok(0, "crypto_init");
        return kl_test_done();
    }
    snprintf(path, sizeof(path), "%s/hpke/rfc9180-x25519-base.txt", dir != NULL ? dir : "tests/vectors");
    ok(parse_vectors(path) == 0, "parse the RFC 9180 vectors");
    is_int(n_suites, 2, "two suites in the file");
    int seen_aes = 0, seen_chacha = 0;
    for (size_t i = 0; i < n_suites; i++) {
        test_suite(&suites[i]);
        seen_aes |= suites[i].aead_id == HPKE_AEAD_AES_128_GCM;
        seen_chacha |= suites[i].aead_id == HPKE_AEAD_CHACHA20_POLY1305;
    }
    ok(seen_aes && seen_chacha, "AES-128-GCM and ChaCha20-Poly1305 vectors checked");
    for (size_t i = 0; i < n_suites; i++)
        if (suites[i].aead_id == HPKE_AEAD_AES_128_GCM)
            test_negatives(&suites[i]);
    test_round_trip();
    crypto_thread_cleanup();
    return kl_test_done();
}
