/*
 * test_signer_tickets.c - issue 11: ticket keys derived in the token (signer/tickets.h),
 * end to end on a SoftHSM2 token made by hsm-setup (which creates the ticket-root key).
 *
 * The root never leaves the token, so the keys cannot be recomputed here: what is checked
 * is that they are the same wherever they should be (two calls, two signer processes on
 * one token, a restart, a remote token through `p11-kit server`, and after that remote
 * token went away and came back) and different wherever
 * they should be (epochs, scope, rotation); that the key id is the documented hash of
 * the secret; every refusal (window, count, duplicates, rotation bounds, peer, missing
 * [tickets], rate limit, queue_max) with its status, message and audit record; pipelining
 * with sign requests on one connection; start-up errors (no
 * root on the token, no scope); and that the audit log names epochs and key ids but never
 * holds a secret, and still verifies. In process: tickets_check()'s window boundaries at a
 * fixed clock and tickets_label()'s exact bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "frame.h"
#include "harness.h"
#include "kl_test.h"
#include "rpc_client.h"
#include "tickets.h"

#define WEEK 604800u

static struct harness H;

/* The std keys minus ed25519 (p11-kit 0.24's remoting lacks CKM_EDDSA). */
static const char remote_keys[] = "[key ecdsa-p256]\n"
                                  "uri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
                                  "schemes = ecdsa_secp256r1_sha256\n";

struct got {
    int status; /* -1: no answer */
    char message[200];
    size_t n;
    uint64_t epochs[TICKETS_MAX_EPOCHS];
    uint8_t ids[TICKETS_MAX_EPOCHS][8];
    uint8_t secrets[TICKETS_MAX_EPOCHS][32];
    int shapes_ok; /* every key has an 8-byte id and a 32-byte secret */
};

static uint64_t now_epoch(uint32_t rotation)
{
    return (uint64_t)time(NULL) / rotation;
}

static void ask(struct got *g, const char *sock, uint64_t id, uint32_t rotation, const uint64_t *epochs, size_t n)
{
    struct rpc_client c;
    Keyless__V1__Response *r = NULL;
    memset(g, 0, sizeof(*g));
    g->status = -1;
    if (rpc_client_connect(&c, sock) != 0) {
        return;
    }
    if (rpc_client_ticket_keys(&c, &r, id, rotation, epochs, n) == 0 && r->id == id &&
        r->body_case == KEYLESS__V1__RESPONSE__BODY_TICKET_KEYS) {
        Keyless__V1__TicketKeysResponse *tr = r->ticket_keys;
        g->status = (int)tr->status;
        snprintf(g->message, sizeof(g->message), "%s", tr->message != NULL ? tr->message : "");
        g->n = tr->n_keys;
        g->shapes_ok = tr->n_keys <= TICKETS_MAX_EPOCHS;
        for (size_t i = 0; i < tr->n_keys && i < TICKETS_MAX_EPOCHS; i++) {
            g->epochs[i] = tr->keys[i]->epoch;
            g->shapes_ok &= tr->keys[i]->key_id.len == 8 && tr->keys[i]->secret.len == 32;
            if (g->shapes_ok) {
                memcpy(g->ids[i], tr->keys[i]->key_id.data, 8);
                memcpy(g->secrets[i], tr->keys[i]->secret.data, 32);
            }
        }
    }
    if (r != NULL) {
        keyless__v1__response__free_unpacked(r, NULL);
    }
    rpc_client_close(&c);
}

static int same_keys(const struct got *a, const struct got *b)
{
    return a->status == KEYLESS__V1__STATUS__OK && b->status == KEYLESS__V1__STATUS__OK && a->n == b->n && a->n > 0 &&
           memcmp(a->epochs, b->epochs, sizeof(a->epochs)) == 0 && memcmp(a->ids, b->ids, a->n * 8) == 0 &&
           memcmp(a->secrets, b->secrets, a->n * 32) == 0;
}

/* 1 if no secret and no id of a equals any of b's (both answered). */
static int all_differ(const struct got *a, const struct got *b)
{
    if (a->status != KEYLESS__V1__STATUS__OK || b->status != KEYLESS__V1__STATUS__OK || a->n == 0 || b->n == 0) {
        return 0;
    }
    for (size_t i = 0; i < a->n; i++) {
        for (size_t k = 0; k < b->n; k++) {
            if (memcmp(a->secrets[i], b->secrets[k], 32) == 0 || memcmp(a->ids[i], b->ids[k], 8) == 0) {
                return 0;
            }
        }
    }
    return 1;
}

/* The key id as tickets.h documents it, computed here with libcrypto. */
static int id_matches(const uint8_t id[8], const uint8_t secret[32])
{
    static const char label[] = "keyless ticket key id v1";
    uint8_t in[sizeof(label) + 32], h[32];
    unsigned hl = 0;
    memcpy(in, label, sizeof(label));
    memcpy(in + sizeof(label), secret, 32);
    return EVP_Digest(in, sizeof(in), h, &hl, EVP_sha256(), NULL) == 1 && hl == 32 && memcmp(h, id, 8) == 0;
}

static void hex(char *out, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sprintf(out + 2 * i, "%02x", p[i]);
    }
}

/* A second signer on the same token: its own socket, audit log and stderr. */
static void harness_twin(struct harness *t, const char *name)
{
    *t = H;
    t->pid = 0;
    snprintf(t->sock, sizeof(t->sock), "%s/run-%s/signer.sock", H.dir, name);
    snprintf(t->audit, sizeof(t->audit), "%s/audit-%s.jsonl", H.dir, name);
    snprintf(t->conf, sizeof(t->conf), "%s/%s.conf", H.dir, name);
    snprintf(t->errlog, sizeof(t->errlog), "%s/%s.err", H.dir, name);
}

static int start_with(struct harness *h, const char *extra_signer, const char *hsm_lines, const char *keys,
                      const char *tickets)
{
    char text[4096];
    snprintf(text, sizeof(text), "%s\n%s", keys, tickets);
    if (harness_write_config(h, h->conf, extra_signer, hsm_lines, text) != 0) {
        return -1;
    }
    return harness_start(h, h->conf);
}

static void test_in_process(void)
{
    struct cfg_tickets t;
    const char *why = NULL;
    uint64_t now = 1000ull * WEEK + 5; /* epoch 1000 under a week's rotation */
    uint64_t e[9];
    uint8_t label[TICKETS_LABEL_MAX];
    size_t len = 0;
    uid_t me = getuid();
    static const uint8_t want[] = {'k', 'e', 'y', 'l',  'e',  's', 's', ' ', 't', 'i', 'c', 'k',  'e',
                                   't', ' ', 'k', 'e',  'y',  ' ', 'v', '1', 0,   's', 'i', 't',  'e',
                                   0,   0,   0,   0x0e, 0x10, 0,   0,   0,   0,   0,   0,   0x01, 0x02};

    memset(&t, 0, sizeof(t));
    t.present = 1;
    t.accept_epochs = 4;
    t.allow_same_uid = 1; /* the peer below is this process: [signer] allow_same_uid = yes */
    e[0] = 996;
    e[1] = 1001;
    t.allow_same_uid = 0;
    is_int(tickets_check(&why, &t, me, 0, me, now, WEEK, e, 2), KEYLESS__V1__STATUS__NOT_AUTHORIZED,
           "the signer's own uid without allow_same_uid: NOT_AUTHORIZED (issue 13: privilege separation)");
    t.allow_same_uid = 1;
    is_int(tickets_check(&why, &t, me, 0, me, now, WEEK, e, 2), KEYLESS__V1__STATUS__OK,
           "window: now - accept_epochs and now + 1 are accepted");
    ok(why == NULL, "... with no reason");
    e[0] = 995;
    is_int(tickets_check(&why, &t, me, 0, me, now, WEEK, e, 1), KEYLESS__V1__STATUS__BAD_REQUEST,
           "window: now - accept_epochs - 1 is refused");
    ok(why != NULL && strstr(why, "window") != NULL, "... as outside the window");
    e[0] = 1002;
    is_int(tickets_check(&why, &t, me, 0, me, now, WEEK, e, 1), KEYLESS__V1__STATUS__BAD_REQUEST,
           "window: now + 2 is refused");
    t.accept_epochs = 0;
    e[0] = 999;
    is_int(tickets_check(&why, &t, me, 0, me, now, WEEK, e, 1), KEYLESS__V1__STATUS__BAD_REQUEST,
           "accept_epochs = 0: the previous epoch is refused");
    t.accept_epochs = 2000;
    e[0] = 0;
    is_int(tickets_check(&why, &t, me, 0, me, now, WEEK, e, 1), KEYLESS__V1__STATUS__OK,
           "a window reaching before epoch 0 does not wrap");
    t.accept_epochs = 4;
    for (size_t i = 0; i < 9; i++) {
        e[i] = 993 + i;
    }
    is_int(tickets_check(&why, &t, me, 0, me, now, WEEK, e + 1, 8), KEYLESS__V1__STATUS__BAD_REQUEST,
           "8 epochs, one of them outside: refused");
    is_int(tickets_check(&why, &t, me, 0, me, now, WEEK, e, 9), KEYLESS__V1__STATUS__BAD_REQUEST, "9 epochs: refused");
    ok(why != NULL && strcmp(why, "ask for 1 to 8 epochs") == 0, "... as too many");
    is_int(tickets_check(&why, &t, me, 0, me, now, WEEK, e, 0), KEYLESS__V1__STATUS__BAD_REQUEST, "0 epochs: refused");
    e[0] = e[1] = 1000;
    is_int(tickets_check(&why, &t, me, 0, me, now, WEEK, e, 2), KEYLESS__V1__STATUS__BAD_REQUEST,
           "an epoch twice: refused");
    e[0] = now / 60;
    is_int(tickets_check(&why, &t, me, 0, me, now, 60, e, 1), KEYLESS__V1__STATUS__OK, "rotation 60 s: accepted");
    is_int(tickets_check(&why, &t, me, 0, me, now, 59, e, 1), KEYLESS__V1__STATUS__BAD_REQUEST,
           "rotation 59 s: refused");
    is_int(tickets_check(&why, &t, me, 0, me, now, WEEK + 1, e, 1), KEYLESS__V1__STATUS__BAD_REQUEST,
           "rotation of a week + 1 s: refused");
    is_int(tickets_check(&why, &t, me, 0, me, now, 0, e, 1), KEYLESS__V1__STATUS__BAD_REQUEST,
           "rotation 0 (unset): refused, no division by zero");
    e[0] = 1000;
    is_int(tickets_check(&why, &t, me + 1, 4242, me, now, WEEK, e, 1), KEYLESS__V1__STATUS__NOT_AUTHORIZED,
           "no allow lists: another uid is refused");
    t.gids[t.n_gids++] = 4242;
    is_int(tickets_check(&why, &t, me + 1, 4242, me, now, WEEK, e, 1), KEYLESS__V1__STATUS__OK,
           "allow_gids: a peer in the group is accepted");
    is_int(tickets_check(&why, &t, me, 0, me, now, WEEK, e, 1), KEYLESS__V1__STATUS__NOT_AUTHORIZED,
           "allow_gids set: the signer's own uid is no longer implied");
    t.present = 0;
    is_int(tickets_check(&why, &t, me + 1, 4242, me, now, WEEK, e, 1), KEYLESS__V1__STATUS__NOT_AUTHORIZED,
           "no [tickets]: refused");
    ok(why != NULL && strcmp(why, "ticket keys not configured") == 0, "... as not configured");
    is_int(tickets_check(&why, NULL, me, 0, me, now, WEEK, e, 1), KEYLESS__V1__STATUS__NOT_AUTHORIZED,
           "no root: refused as not configured");

    is_int(tickets_label(label, &len, "site", 3600, 0x0102), 0, "tickets_label");
    is_mem(label, len, want, sizeof(want), "the HMAC input: label, 0, scope, 0, be32(rotation), be64(epoch)");
    {
        char long_scope[80];
        memset(long_scope, 'a', 65);
        long_scope[65] = '\0';
        is_int(tickets_label(label, &len, long_scope, 3600, 1), KL_ERR_INVALID, "a scope over 64 bytes is refused");
        is_int(tickets_label(label, &len, NULL, 3600, 1), KL_ERR_INVALID, "no scope is refused");
    }
}

static const char tickets_a[] = "[tickets]\nscope = site-a\n";

static void test_round_trip_and_determinism(void)
{
    struct harness B;
    struct got g1, g2, g3, gb, gr, gscope, grot, gorder;
    uint64_t n = now_epoch(WEEK), ep[3] = {n - 1, n, n + 1}, rev[2] = {n, n - 1};
    char conf_b[4096];

    if (start_with(&H, NULL, NULL, harness_std_keys, tickets_a) != 0) {
        ok(0, "signer A with [tickets] starts");
        return;
    }
    ask(&g1, H.sock, 1, WEEK, ep, 3);
    is_int(g1.status, KEYLESS__V1__STATUS__OK, "3 epochs around now: OK");
    is_int(g1.n, 3, "... 3 keys");
    ok(g1.shapes_ok, "... each with an 8-byte id and a 32-byte secret");
    ok(g1.epochs[0] == n - 1 && g1.epochs[1] == n && g1.epochs[2] == n + 1, "... in the order asked");
    ok(memcmp(g1.secrets[0], g1.secrets[1], 32) != 0 && memcmp(g1.secrets[1], g1.secrets[2], 32) != 0 &&
           memcmp(g1.secrets[0], g1.secrets[2], 32) != 0,
       "... each epoch has its own secret");
    ok(memcmp(g1.ids[0], g1.ids[1], 8) != 0 && memcmp(g1.ids[1], g1.ids[2], 8) != 0, "... and its own id");
    ok(id_matches(g1.ids[0], g1.secrets[0]) && id_matches(g1.ids[1], g1.secrets[1]) &&
           id_matches(g1.ids[2], g1.secrets[2]),
       "key id = SHA-256(\"keyless ticket key id v1\" 0 secret)[0..8)");
    {
        uint8_t zero[32] = {0};
        ok(memcmp(g1.secrets[1], zero, 32) != 0, "the secret is not all zeros");
    }
    ask(&g2, H.sock, 2, WEEK, ep, 3);
    ok(same_keys(&g1, &g2), "a second call returns the same keys");
    ask(&gorder, H.sock, 3, WEEK, rev, 2);
    ok(gorder.status == KEYLESS__V1__STATUS__OK && gorder.epochs[0] == n && gorder.epochs[1] == n - 1 &&
           memcmp(gorder.secrets[0], g1.secrets[1], 32) == 0 && memcmp(gorder.secrets[1], g1.secrets[0], 32) == 0,
       "epochs asked in another order: the same key per epoch, in that order");

    /* Pipelined with sign requests on one connection: every answer has its id's type. */
    {
        struct rpc_client c;
        int good = 0, answers = 0;
        if (rpc_client_connect(&c, H.sock) == 0) {
            for (uint64_t i = 0; i < 64; i++) {
                Keyless__V1__Request req;
                Keyless__V1__TicketKeysRequest tr;
                Keyless__V1__SignRequest sr;
                uint8_t hash[32] = {(uint8_t)i};
                if (i % 2 == 0) {
                    rpc_client_ticket_keys_request(&req, &tr, 1000 + i, WEEK, ep, 3);
                } else {
                    rpc_client_sign_request(&req, &sr, 1000 + i, "ecdsa-p256", 0x0403, 1, hash, sizeof(hash));
                }
                if (rpc_client_send(&c, &req) != 0) {
                    break;
                }
            }
            for (int i = 0; i < 64; i++) {
                Keyless__V1__Response *r = NULL;
                if (rpc_client_recv(&c, &r, 10000) != 0) {
                    break;
                }
                answers++;
                if (r->id >= 1000 && r->id < 1064 && r->id % 2 == 0) {
                    good += r->body_case == KEYLESS__V1__RESPONSE__BODY_TICKET_KEYS &&
                            r->ticket_keys->status == KEYLESS__V1__STATUS__OK && r->ticket_keys->n_keys == 3 &&
                            r->ticket_keys->keys[1]->secret.len == 32 &&
                            memcmp(r->ticket_keys->keys[1]->secret.data, g1.secrets[1], 32) == 0;
                } else if (r->id >= 1000 && r->id < 1064) {
                    good +=
                        r->body_case == KEYLESS__V1__RESPONSE__BODY_SIGN && r->sign->status == KEYLESS__V1__STATUS__OK;
                }
                keyless__v1__response__free_unpacked(r, NULL);
            }
            rpc_client_close(&c);
        }
        is_int(answers, 64, "32 ticket_keys and 32 sign requests pipelined on one connection: 64 answers");
        is_int(good, 64, "... each of its own type, OK, the ticket keys the same as before");
    }

    /* Another rotation with the same epoch number: the rotation is part of the derivation. */
    {
        uint64_t e1[1] = {n};
        ask(&grot, H.sock, 4, WEEK - 1, e1, 1);
        is_int(grot.status, KEYLESS__V1__STATUS__OK, "rotation one second shorter, same epoch number: OK");
        ok(grot.n == 1 && memcmp(grot.secrets[0], g1.secrets[1], 32) != 0 && memcmp(grot.ids[0], g1.ids[1], 8) != 0,
           "... and a different key");
    }

    /* A second signer process on the same token, same scope, inline mode. */
    harness_twin(&B, "b");
    snprintf(conf_b, sizeof(conf_b), "%s", tickets_a);
    if (start_with(&B, "workers = 0", NULL, harness_std_keys, conf_b) != 0) {
        ok(0, "signer B (same token, same scope, workers = 0) starts");
    } else {
        ask(&gb, B.sock, 1, WEEK, ep, 3);
        ok(same_keys(&g1, &gb), "signer B (another process, same token and scope) derives the same keys");
        is_int(harness_stop(&B), 0, "signer B stops");
        /* The same token under another scope: another site's keys. */
        if (start_with(&B, NULL, NULL, harness_std_keys, "[tickets]\nscope = site-b\n") != 0) {
            ok(0, "signer B with scope site-b starts");
        } else {
            ask(&gscope, B.sock, 1, WEEK, ep, 3);
            is_int(gscope.status, KEYLESS__V1__STATUS__OK, "scope site-b: OK");
            ok(all_differ(&g1, &gscope), "scope site-b: no secret or id in common with site-a");
            is_int(harness_stop(&B), 0, "signer B stops again");
        }
    }

    /* Across a restart of A. */
    is_int(harness_stop(&H), 0, "signer A stops");
    if (harness_start(&H, H.conf) != 0) {
        ok(0, "signer A restarts");
        return;
    }
    ask(&gr, H.sock, 5, WEEK, ep, 3);
    ok(same_keys(&g1, &gr), "after a restart: the same keys");
    ask(&g3, H.sock, 6, 3600, ep, 1);
    is_int(g3.status, KEYLESS__V1__STATUS__BAD_REQUEST, "an hour's rotation with a week's epoch number: refused");

    /* The audit log: epochs and key ids, never a secret. */
    {
        char needle[400], idhex[17], sechex[65];
        int leaked = 0;
        snprintf(needle, sizeof(needle), "\"op\":\"ticket_keys\",\"key\":\"ticket-root\"");
        ok(harness_audit_grep(&H, needle), "audit: ticket_keys records name the root key");
        ok(harness_audit_has(&H, 1, "OK"), "audit: request 1 recorded as OK");
        snprintf(needle, sizeof(needle),
                 "\"ticket_scope\":\"site-a\",\"ticket_rotation\":%u,\"ticket_epochs\":\"%llu,%llu,%llu\"", WEEK,
                 (unsigned long long)(n - 1), (unsigned long long)n, (unsigned long long)(n + 1));
        ok(harness_audit_grep(&H, needle), "audit: scope, rotation and the epochs asked");
        hex(idhex, g1.ids[0], 8);
        snprintf(needle, sizeof(needle), "\"ticket_key_ids\":\"%s,", idhex);
        ok(harness_audit_grep(&H, needle), "audit: the key ids handed out");
        for (size_t i = 0; i < 3; i++) {
            hex(sechex, g1.secrets[i], 32);
            leaked |= harness_audit_grep(&H, sechex);
            sechex[16] = '\0'; /* not even a prefix */
            leaked |= harness_audit_grep(&H, sechex);
        }
        ok(!leaked, "audit: no secret (nor its first 8 bytes) in the log");
        snprintf(needle, sizeof(needle), "\"request_id\":6,\"status\":\"BAD_REQUEST\"");
        ok(harness_audit_grep(&H, needle), "audit: the refusal is recorded");
        ok(harness_audit_grep(&H, "\"ticket_key_ids\":null"), "audit: a refusal lists no key ids");
    }
}

static void test_refusals(void)
{
    struct got g;
    uint64_t n = now_epoch(WEEK), e[9];
    static const struct {
        uint32_t rotation;
        int64_t first; /* relative to now */
        size_t n;
        const char *message;
        const char *what;
    } bad[] = {
        {WEEK, 2, 1, "epoch outside the accepted window [now - accept_epochs, now + 1]", "now + 2"},
        {WEEK, -5, 1, "epoch outside the accepted window [now - accept_epochs, now + 1]", "now - 5 (accept 4)"},
        {WEEK, -7, 9, "ask for 1 to 8 epochs", "9 epochs"},
        {WEEK, 0, 0, "ask for 1 to 8 epochs", "no epoch"},
        {59, 0, 1, "rotation_seconds must be 60..604800", "rotation 59 s"},
        {WEEK + 1, 0, 1, "rotation_seconds must be 60..604800", "rotation a week + 1 s"},
        {0, 0, 1, "rotation_seconds must be 60..604800", "rotation unset"},
    };
    uint64_t id = 100;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char name[200];
        uint64_t base = bad[i].rotation >= 60 && bad[i].rotation <= WEEK ? now_epoch(bad[i].rotation) : n;
        for (size_t k = 0; k < 9; k++) {
            e[k] = base + (uint64_t)bad[i].first + k;
        }
        ask(&g, H.sock, ++id, bad[i].rotation, e, bad[i].n);
        snprintf(name, sizeof(name), "%s: BAD_REQUEST", bad[i].what);
        is_int(g.status, KEYLESS__V1__STATUS__BAD_REQUEST, name);
        snprintf(name, sizeof(name), "%s: no key in the answer, and the reason", bad[i].what);
        ok(g.n == 0 && strcmp(g.message, bad[i].message) == 0, name);
        if (strcmp(g.message, bad[i].message) != 0) {
            diag("message: %s", g.message);
        }
        snprintf(name, sizeof(name), "%s: audited", bad[i].what);
        ok(harness_audit_has(&H, id, "BAD_REQUEST"), name);
    }
    e[0] = n - 4;
    e[1] = n - 4;
    ask(&g, H.sock, ++id, WEEK, e, 2);
    ok(g.status == KEYLESS__V1__STATUS__BAD_REQUEST && strcmp(g.message, "an epoch is asked twice") == 0,
       "an epoch asked twice: BAD_REQUEST");
    e[0] = n - 4;
    ask(&g, H.sock, ++id, WEEK, e, 1);
    is_int(g.status, KEYLESS__V1__STATUS__OK, "now - 4 (accept 4): OK");
    for (size_t k = 0; k < 6; k++) {
        e[k] = n - 4 + k;
    }
    ask(&g, H.sock, ++id, WEEK, e, 6);
    ok(g.status == KEYLESS__V1__STATUS__OK && g.n == 6, "the whole window (6 epochs) at once: OK");
    for (size_t k = 0; k < 8; k++) {
        e[k] = now_epoch(3600) - 6 + k;
    }
    ask(&g, H.sock, ++id, 3600, e, 8);
    is_int(g.status, KEYLESS__V1__STATUS__BAD_REQUEST, "8 epochs reaching past the window: refused as a whole");
    is_int(harness_stop(&H), 0, "signer A stops");
}

/* Who may ask, rate limit, and a signer without [tickets]. */
static void test_peers(void)
{
    struct got g;
    uint64_t e[1] = {now_epoch(WEEK)};
    char keys[2048], sign_only_nobody[2048];

    /* [tickets] for another uid only: this peer may sign but not fetch ticket keys. */
    if (start_with(&H, NULL, NULL, harness_std_keys, "[tickets]\nscope = site-a\nallow_uids = 65534\n") != 0) {
        ok(0, "signer with [tickets] allow_uids = 65534 starts");
    } else {
        ask(&g, H.sock, 200, WEEK, e, 1);
        is_int(g.status, KEYLESS__V1__STATUS__NOT_AUTHORIZED, "a peer not in [tickets] allow lists: NOT_AUTHORIZED");
        ok(strcmp(g.message, "peer uid/gid may not fetch ticket keys") == 0 && g.n == 0, "... with the reason, no key");
        ok(harness_audit_has(&H, 200, "NOT_AUTHORIZED"), "... audited");
        is_int(harness_stop(&H), 0, "stop");
    }
    /* Keys for another uid only, tickets for us: the connection is accepted for tickets. */
    snprintf(sign_only_nobody, sizeof(sign_only_nobody),
             "[key ecdsa-p256]\nuri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
             "schemes = ecdsa_secp256r1_sha256\nallow_uids = 65534\n");
    if (start_with(&H, NULL, NULL, sign_only_nobody, "[tickets]\nscope = site-a\nrate = 0.001\nburst = 2\n") != 0) {
        ok(0, "signer with keys for uid 65534 and [tickets] for us starts");
    } else {
        struct rpc_client c;
        ask(&g, H.sock, 300, WEEK, e, 1);
        is_int(g.status, KEYLESS__V1__STATUS__OK, "a peer allowed only for ticket keys is let in and served");
        if (rpc_client_connect(&c, H.sock) == 0) {
            is_int(harness_sign_status(&H, &c, 301, "ecdsa-p256", 0x0403, 0), KEYLESS__V1__STATUS__NOT_AUTHORIZED,
                   "... but may not sign");
            rpc_client_close(&c);
        } else {
            ok(0, "connect");
        }
        ask(&g, H.sock, 302, WEEK, e, 1);
        is_int(g.status, KEYLESS__V1__STATUS__OK, "rate: the second request of the burst is served");
        ask(&g, H.sock, 303, WEEK, e, 1);
        is_int(g.status, KEYLESS__V1__STATUS__RATE_LIMITED, "rate: the third is RATE_LIMITED");
        ok(harness_audit_has(&H, 303, "RATE_LIMITED"), "... audited");
        is_int(harness_stop(&H), 0, "stop");
    }
    /* queue_max = 1: 16 requests in one write; those past the bound are OVERLOADED, each
     * answered as a TicketKeysResponse. */
    if (start_with(&H, "queue_max = 1", NULL, harness_std_keys, tickets_a) != 0) {
        ok(0, "signer with queue_max = 1 starts");
    } else {
        struct rpc_client c;
        struct kl_buf out;
        int typed = 0, overloaded = 0, served = 0, answers = 0;
        kl_buf_init(&out, 65536);
        for (uint64_t i = 0; i < 16; i++) {
            Keyless__V1__Request req;
            Keyless__V1__TicketKeysRequest tr;
            rpc_client_ticket_keys_request(&req, &tr, 600 + i, WEEK, e, 1);
            if (frame_append(&out, &req.base) != 0) {
                break;
            }
        }
        if (rpc_client_connect(&c, H.sock) == 0 && rpc_client_send_raw(&c, out.base, out.len) == 0) {
            for (int i = 0; i < 16; i++) {
                Keyless__V1__Response *r = NULL;
                if (rpc_client_recv(&c, &r, 10000) != 0) {
                    break;
                }
                answers++;
                if (r->body_case == KEYLESS__V1__RESPONSE__BODY_TICKET_KEYS) {
                    typed++;
                    overloaded += r->ticket_keys->status == KEYLESS__V1__STATUS__OVERLOADED;
                    served += r->ticket_keys->status == KEYLESS__V1__STATUS__OK && r->ticket_keys->n_keys == 1;
                }
                keyless__v1__response__free_unpacked(r, NULL);
            }
            rpc_client_close(&c);
        }
        kl_buf_dispose(&out);
        is_int(answers, 16, "queue_max = 1, 16 requests at once: 16 answers");
        is_int(typed, 16, "... all TicketKeysResponses");
        ok(overloaded > 0 && served > 0 && overloaded + served == 16, "... some OVERLOADED, the others served");
        diag("%d served, %d overloaded", served, overloaded);
        ok(harness_audit_grep(&H, "\"status\":\"OVERLOADED\",\"reason\":\"signing queue full\""),
           "... the refusals audited");
        is_int(harness_stop(&H), 0, "stop");
    }
    /* No [tickets] at all. */
    snprintf(keys, sizeof(keys), "%s", harness_std_keys);
    if (start_with(&H, NULL, NULL, keys, "") != 0) {
        ok(0, "signer without [tickets] starts");
    } else {
        ask(&g, H.sock, 400, WEEK, e, 1);
        is_int(g.status, KEYLESS__V1__STATUS__NOT_AUTHORIZED, "no [tickets]: NOT_AUTHORIZED");
        ok(strcmp(g.message, "ticket keys not configured") == 0, "... \"ticket keys not configured\"");
        ok(harness_audit_has(&H, 400, "NOT_AUTHORIZED"), "... audited");
        is_int(harness_stop(&H), 0, "stop");
    }
}

static void test_start_errors(void)
{
    char text[4096], cmd[1200], out[4096];
    int st;

    snprintf(text, sizeof(text), "%s\n[tickets]\nscope = site-a\nkey = no-such-root\n", harness_std_keys);
    ok(harness_write_config(&H, H.conf, NULL, NULL, text) == 0, "config naming a missing root");
    snprintf(cmd, sizeof(cmd), "%s --config %s 2>&1", H.bin, H.conf);
    st = harness_run(out, sizeof(out), cmd);
    is_int(st, 1, "a root missing from the token: the signer does not start");
    ok(harness_count_lines(out) == 1 && strstr(out, "[tickets] key: no secret key labelled 'no-such-root'") != NULL &&
           strstr(out, H.conf) != NULL,
       "... one line naming the config file, [tickets] key and the label");
    diag("%s", out);
    snprintf(cmd, sizeof(cmd), "%s --config %s --check-config 2>&1", H.bin, H.conf);
    is_int(harness_run(out, sizeof(out), cmd), 1, "... and --check-config fails the same way");

    /* A private key's label is not a secret key. */
    snprintf(text, sizeof(text), "%s\n[tickets]\nscope = site-a\nkey = ecdsa-p256\n", harness_std_keys);
    ok(harness_write_config(&H, H.conf, NULL, NULL, text) == 0, "config naming a private key as the root");
    snprintf(cmd, sizeof(cmd), "%s --config %s --check-config 2>&1", H.bin, H.conf);
    is_int(harness_run(out, sizeof(out), cmd), 1, "a private key as the root: refused at start");

    /* A secret key that can leave the token is no root. */
    snprintf(cmd, sizeof(cmd),
             "KLP=$(cat %s/user.pin) pkcs11-tool --module " SOFTHSM_MODULE " --token-label keyless --login "
             "--pin env:KLP --keygen --key-type GENERIC:32 --label loose-root --id 20 --usage-sign --extractable "
             "--private </dev/null >/dev/null 2>&1",
             H.hsm);
    ok(harness_run(NULL, 0, cmd) == 0, "an extractable secret key loose-root on the token");
    snprintf(text, sizeof(text), "%s\n[tickets]\nscope = site-a\nkey = loose-root\n", harness_std_keys);
    ok(harness_write_config(&H, H.conf, NULL, NULL, text) == 0, "config naming it as the root");
    snprintf(cmd, sizeof(cmd), "%s --config %s --check-config 2>&1", H.bin, H.conf);
    st = harness_run(out, sizeof(out), cmd);
    ok(st == 1 && strstr(out, "[tickets] key: secret key 'loose-root' must have") != NULL &&
           strstr(out, "CKA_EXTRACTABLE false") != NULL,
       "an extractable root: refused at start, naming CKA_EXTRACTABLE");
    diag("%s", out);

    snprintf(text, sizeof(text), "%s\n[tickets]\naccept_epochs = 2\n", harness_std_keys);
    ok(harness_write_config(&H, H.conf, NULL, NULL, text) == 0, "config without scope");
    st = harness_run(out, sizeof(out), cmd);
    is_int(st, 2, "[tickets] without scope: a config error");
    ok(harness_count_lines(out) == 1 && strstr(out, "[tickets] scope: missing") != NULL, "... one line naming scope");
    diag("%s", out);

    snprintf(text, sizeof(text), "%s\n[tickets]\nscope = site a\n", harness_std_keys);
    ok(harness_write_config(&H, H.conf, NULL, NULL, text) == 0, "config with a bad scope");
    st = harness_run(out, sizeof(out), cmd);
    ok(st == 2 && strstr(out, "[tickets] scope: 'site a' must be") != NULL, "a scope with a blank: a config error");

    snprintf(text, sizeof(text), "%s\n[tickets]\nscope = site-a\naccept_epochs = 1001\n", harness_std_keys);
    ok(harness_write_config(&H, H.conf, NULL, NULL, text) == 0, "config with accept_epochs 1001");
    st = harness_run(out, sizeof(out), cmd);
    ok(st == 2 && strstr(out, "[tickets] accept_epochs") != NULL, "accept_epochs over 1000: a config error");

    snprintf(text, sizeof(text), "%s\n[tickets]\nscope = site-a\n", harness_std_keys);
    ok(harness_write_config(&H, H.conf, NULL, NULL, text) == 0, "a good [tickets]");
    is_int(harness_run(out, sizeof(out), cmd), 0, "--check-config with the root on the token: OK");
}

/* The same token through p11-kit remoting: the same keys as the local signer. */
static void test_remote(const struct got *local, const uint64_t *ep, size_t n)
{
    char p11sock[400];
    struct harness R;
    struct got g;
    pid_t server;

    harness_p11_socket(&H, p11sock, sizeof(p11sock));
    server = harness_p11_server_start(p11sock, 0);
    ok(access(p11sock, F_OK) == 0, "p11-kit server exports the token");
    harness_twin(&R, "remote");
    if (start_with(&R, NULL, "module = " CLIENT_MODULE, remote_keys, tickets_a) != 0) {
        ok(0, "a signer on p11-kit-client.so with [tickets] starts");
    } else {
        int recovered = 0;
        ask(&g, R.sock, 1, WEEK, ep, n);
        ok(same_keys(local, &g), "through p11-kit remoting: the same keys as the local signer");
        /* The token goes away: HSM_ERROR without keys, audited; once it is back the root is
         * found again (a new handle) and the same keys come out. */
        harness_p11_server_stop(server);
        ask(&g, R.sock, 2, WEEK, ep, n);
        ok(g.status == KEYLESS__V1__STATUS__HSM_ERROR && g.n == 0, "token away: HSM_ERROR and no key");
        ok(harness_audit_has(&R, 2, "HSM_ERROR"), "... audited");
        server = harness_p11_server_start(p11sock, 0);
        for (int i = 0; i < 100 && !recovered; i++) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            ask(&g, R.sock, 3 + (uint64_t)i, WEEK, ep, n);
            recovered = g.status == KEYLESS__V1__STATUS__OK;
            if (!recovered) {
                nanosleep(&ts, NULL);
            }
        }
        ok(recovered && same_keys(local, &g), "token back: the same keys again, without a restart");
        is_int(harness_stop(&R), 0, "the remote signer stops");
    }
    harness_p11_server_stop(server);
    unsetenv("P11_KIT_SERVER_ADDRESS");
}

static void test_audit_verifies(void)
{
    char cmd[1200], out[4096];
    snprintf(cmd, sizeof(cmd), "%s audit-verify %s 2>&1", H.bin, H.audit);
    is_int(harness_run(out, sizeof(out), cmd), 0, "audit-verify accepts the log with ticket_keys records");
    diag("%s", out);
    if (getenv("KL_SOURCE_DIR") != NULL) {
        snprintf(cmd, sizeof(cmd), "python3 %s/signer/audit-verify.py %s 2>&1", getenv("KL_SOURCE_DIR"), H.audit);
        is_int(harness_run(out, sizeof(out), cmd), 0, "the independent Python verifier accepts it too");
    }
}

int main(void)
{
    struct got local;
    uint64_t n, ep[2];

    test_in_process();
    if (harness_init(&H) != 0) {
        ok(0, "token set up");
        return kl_test_done();
    }
    test_round_trip_and_determinism();
    test_refusals();
    test_peers();
    test_start_errors();
    /* The local answer for the remote comparison. */
    n = now_epoch(WEEK);
    ep[0] = n;
    ep[1] = n - 1;
    if (start_with(&H, NULL, NULL, harness_std_keys, tickets_a) == 0) {
        ask(&local, H.sock, 500, WEEK, ep, 2);
        is_int(harness_stop(&H), 0, "local signer stops");
        test_remote(&local, ep, 2);
    } else {
        ok(0, "local signer for the remote comparison starts");
    }
    test_audit_verifies();
    harness_cleanup(&H);
    return kl_test_done();
}
