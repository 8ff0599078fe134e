/*
 * test_signer_rpc.c - keyless-signer end to end on a real SoftHSM2 token: every scheme
 * and hash length verified with libcrypto against the certificate, every refusal with
 * its status and audit record, bad framing, 10,000 pipelined requests from several
 * threads on one connection, graceful stop, and the audit chain of the run verified.
 */
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "frame.h"
#include "harness.h"
#include "kl_test.h"
#include "rpc_client.h"

static struct harness H;

static const char extra_keys[] = "[key limited]\n"
                                 "uri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
                                 "schemes = ecdsa_secp256r1_sha256\n"
                                 "rate = 0.001\nburst = 3\n"
                                 "[key forbidden]\n"
                                 "uri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
                                 "schemes = ecdsa_secp256r1_sha256\n"
                                 "allow_uids = %u\n";

static Keyless__V1__SignResponse *sign_ok(Keyless__V1__Response *r, uint64_t id)
{
    if (r == NULL || r->id != id || r->body_case != KEYLESS__V1__RESPONSE__BODY_SIGN) {
        return NULL;
    }
    return r->sign;
}

static void test_round_trips(struct rpc_client *c)
{
    static const struct {
        const char *key;
        uint16_t scheme;
    } cases[] = {{"ecdsa-p256", 0x0403}, {"ecdsa-p384", 0x0503}, {"rsa-2048", 0x0804},
                 {"rsa-2048", 0x0805},   {"rsa-2048", 0x0806},   {"ed25519", 0x0807}};
    uint64_t id = 100;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (size_t hl = 32; hl <= 48; hl += 16) {
            for (int ctx = 1; ctx <= 2; ctx++) {
                uint8_t hash[48], content[160];
                Keyless__V1__Response *r = NULL;
                Keyless__V1__SignResponse *s;
                char name[128];
                size_t clen;
                for (size_t b = 0; b < hl; b++) {
                    hash[b] = (uint8_t)(b * 7 + i + ctx);
                }
                clen = harness_content(content, ctx, hash, hl);
                snprintf(name, sizeof(name), "%s scheme 0x%04x hash %zu %s: signature verifies with the certificate",
                         cases[i].key, cases[i].scheme, hl, ctx == 1 ? "server" : "client");
                ++id;
                if (rpc_client_sign(c, &r, id, cases[i].key, cases[i].scheme, ctx, hash, hl) != 0 ||
                    (s = sign_ok(r, id)) == NULL || s->status != KEYLESS__V1__STATUS__OK) {
                    ok(0, name);
                    diag("status %d", r != NULL && r->sign != NULL ? (int)r->sign->status : -1);
                } else {
                    ok(harness_verify(&H, cases[i].key, cases[i].scheme, content, clen, s->signature.data,
                                      s->signature.len),
                       name);
                    /* Negative control: the same signature over the other context must not verify. */
                    if (hl == 32 && ctx == 1) {
                        uint8_t other[160];
                        size_t olen = harness_content(other, 2, hash, hl);
                        ok(!harness_verify(&H, cases[i].key, cases[i].scheme, other, olen, s->signature.data,
                                           s->signature.len),
                           "the signature does not verify over the client context");
                    }
                    ok(harness_audit_has(&H, id, "OK"), "signed request audited as OK");
                }
                if (r != NULL) {
                    keyless__v1__response__free_unpacked(r, NULL);
                }
            }
        }
    }
}

static void expect_status(struct rpc_client *c, uint64_t id, const char *key, uint32_t scheme, int ctx, size_t hash_len,
                          Keyless__V1__Status want, const char *want_name, const char *why, const char *what)
{
    uint8_t hash[64];
    Keyless__V1__Response *r = NULL;
    char name[160];
    memset(hash, 0xab, sizeof(hash));
    int ret = rpc_client_sign(c, &r, id, key, scheme, ctx, hash, hash_len);
    snprintf(name, sizeof(name), "%s -> %s", what, want_name);
    is_int(ret == 0 && r->body_case == KEYLESS__V1__RESPONSE__BODY_SIGN ? (int)r->sign->status : -1, want, name);
    if (ret == 0) {
        ok(r->id == id, "response echoes the id");
        ok(want == KEYLESS__V1__STATUS__OK || r->sign->signature.len == 0, "no signature on a refusal");
        snprintf(name, sizeof(name), "%s: reason \"%s\"", what, why != NULL ? why : "");
        ok(r->body_case == KEYLESS__V1__RESPONSE__BODY_SIGN && r->sign->message != NULL &&
               strcmp(r->sign->message, why != NULL ? why : "") == 0,
           name);
    }
    snprintf(name, sizeof(name), "%s: audited with status %s", what, want_name);
    ok(harness_audit_has(&H, id, want_name), name);
    if (r != NULL) {
        keyless__v1__response__free_unpacked(r, NULL);
    }
}

static void ping_ok(struct rpc_client *c, uint64_t id, const char *what)
{
    Keyless__V1__Request req = KEYLESS__V1__REQUEST__INIT;
    Keyless__V1__PingRequest pr = KEYLESS__V1__PING_REQUEST__INIT;
    Keyless__V1__Response *r = NULL;
    req.id = id;
    req.body_case = KEYLESS__V1__REQUEST__BODY_PING;
    req.ping = &pr;
    int ret = rpc_client_send(c, &req);
    if (ret == 0) {
        ret = rpc_client_recv(c, &r, 5000);
    }
    ok(ret == 0 && r->id == id && r->body_case == KEYLESS__V1__RESPONSE__BODY_PING &&
           strcmp(r->ping->version, KL_VERSION) == 0,
       what);
    if (r != NULL) {
        keyless__v1__response__free_unpacked(r, NULL);
    }
}

static void test_refusals(struct rpc_client *c)
{
    expect_status(c, 1001, "no-such-key", 0x0403, 1, 32, KEYLESS__V1__STATUS__UNKNOWN_KEY, "UNKNOWN_KEY", "no such key",
                  "unknown key");
    expect_status(c, 1002, "ecdsa-p256", 0x0503, 1, 32, KEYLESS__V1__STATUS__SCHEME_NOT_ALLOWED, "SCHEME_NOT_ALLOWED",
                  "scheme not allowed for this key", "P-256 key with the P-384 scheme");
    expect_status(c, 1003, "rsa-2048", 0x0401, 1, 32, KEYLESS__V1__STATUS__SCHEME_NOT_ALLOWED, "SCHEME_NOT_ALLOWED",
                  "scheme not allowed for this key", "RSA key with rsa_pkcs1_sha256 (not TLS 1.3)");
    expect_status(c, 1004, "ecdsa-p256", 0x0403, 1, 20, KEYLESS__V1__STATUS__BAD_REQUEST, "BAD_REQUEST",
                  "transcript hash must be 32 or 48 bytes", "20-byte hash");
    expect_status(c, 1005, "ecdsa-p256", 0x0403, 1, 64, KEYLESS__V1__STATUS__BAD_REQUEST, "BAD_REQUEST",
                  "transcript hash must be 32 or 48 bytes", "64-byte hash");
    expect_status(c, 1006, "ecdsa-p256", 0x0403, 0, 32, KEYLESS__V1__STATUS__BAD_REQUEST, "BAD_REQUEST",
                  "context must be server or client", "context unspecified");
    expect_status(c, 1007, "ecdsa-p256", 0x0403, 7, 32, KEYLESS__V1__STATUS__BAD_REQUEST, "BAD_REQUEST",
                  "context must be server or client", "context out of range");
    expect_status(c, 1008, "forbidden", 0x0403, 1, 32, KEYLESS__V1__STATUS__NOT_AUTHORIZED, "NOT_AUTHORIZED",
                  "peer uid/gid may not use this key", "peer uid not allowed for the key");
    expect_status(c, 1009, "limited", 0x0403, 2, 32, KEYLESS__V1__STATUS__NOT_AUTHORIZED, "NOT_AUTHORIZED",
                  "context not enabled for this key", "client context on a key without contexts = (server only)");
    for (uint64_t i = 0; i < 3; i++) {
        expect_status(c, 1010 + i, "limited", 0x0403, 1, 32, KEYLESS__V1__STATUS__OK, "OK", NULL, "within the burst");
    }
    expect_status(c, 1013, "limited", 0x0403, 1, 32, KEYLESS__V1__STATUS__RATE_LIMITED, "RATE_LIMITED",
                  "rate limit exceeded", "over the key's rate");
    ping_ok(c, 1014, "connection still usable after the refusals");

    /* Garbage protobuf inside a well-formed frame: id salvaged (field 1 = 42), connection kept. */
    {
        static const uint8_t garbage[] = {0, 0, 0, 6, 0x08, 42, 0x12, 0x7f, 0xff, 0xff};
        Keyless__V1__Response *r = NULL;
        int ret = rpc_client_send_raw(c, garbage, sizeof(garbage));
        if (ret == 0) {
            ret = rpc_client_recv(c, &r, 5000);
        }
        ok(ret == 0 && r->id == 42 && r->body_case == KEYLESS__V1__RESPONSE__BODY_SIGN &&
               r->sign->status == KEYLESS__V1__STATUS__BAD_REQUEST,
           "garbage protobuf -> BAD_REQUEST with the salvaged id");
        ok(harness_audit_has(&H, 42, "BAD_REQUEST"), "garbage protobuf audited");
        if (r != NULL) {
            keyless__v1__response__free_unpacked(r, NULL);
        }
        static const uint8_t noid[] = {0, 0, 0, 3, 0xff, 0xff, 0xff};
        r = NULL;
        ret = rpc_client_send_raw(c, noid, sizeof(noid));
        if (ret == 0) {
            ret = rpc_client_recv(c, &r, 5000);
        }
        ok(ret == 0 && r->id == 0 && r->sign->status == KEYLESS__V1__STATUS__BAD_REQUEST,
           "garbage without an id -> BAD_REQUEST with id 0");
        if (r != NULL) {
            keyless__v1__response__free_unpacked(r, NULL);
        }
        /* A Request with no operation. */
        static const uint8_t empty[] = {0, 0, 0, 2, 0x08, 43};
        r = NULL;
        ret = rpc_client_send_raw(c, empty, sizeof(empty));
        if (ret == 0) {
            ret = rpc_client_recv(c, &r, 5000);
        }
        ok(ret == 0 && r->id == 43 && r->sign->status == KEYLESS__V1__STATUS__BAD_REQUEST,
           "request without an operation -> BAD_REQUEST");
        if (r != NULL) {
            keyless__v1__response__free_unpacked(r, NULL);
        }
        ping_ok(c, 1015, "connection still usable after garbage protobuf");
    }
}

static void test_bad_frames(void)
{
    struct rpc_client c;
    Keyless__V1__Response *r = NULL;
    int ret;
    /* Oversized: a header announcing FRAME_MAX + 1 bytes. Refused from the header alone. */
    static const uint8_t big[] = {0x00, 0x01, 0x00, 0x01, 1, 2, 3};
    if (rpc_client_connect(&c, H.sock) != 0) {
        ok(0, "connect");
        return;
    }
    ret = rpc_client_send_raw(&c, big, sizeof(big));
    if (ret == 0) {
        ret = rpc_client_recv(&c, &r, 5000);
    }
    ok(ret == 0 && r->sign != NULL && r->sign->status == KEYLESS__V1__STATUS__BAD_REQUEST,
       "oversized frame -> BAD_REQUEST");
    if (r != NULL) {
        keyless__v1__response__free_unpacked(r, NULL);
        r = NULL;
    }
    is_int(rpc_client_recv(&c, &r, 5000), KL_ERR_CLOSED, "oversized frame -> connection closed");
    ok(harness_audit_grep(&H, "frame over FRAME_MAX"), "oversized frame audited");
    rpc_client_close(&c);

    /* Truncated: half a frame, then end of stream. */
    static const uint8_t half[] = {0x00, 0x00, 0x00, 0x40, 0x08, 0x01, 0x12};
    if (rpc_client_connect(&c, H.sock) != 0) {
        ok(0, "connect");
        return;
    }
    ret = rpc_client_send_raw(&c, half, sizeof(half));
    shutdown(c.fd, SHUT_WR);
    r = NULL;
    ret = ret == 0 ? rpc_client_recv(&c, &r, 5000) : ret;
    ok(ret == 0 && r->sign != NULL && r->sign->status == KEYLESS__V1__STATUS__BAD_REQUEST,
       "truncated frame -> BAD_REQUEST");
    if (r != NULL) {
        keyless__v1__response__free_unpacked(r, NULL);
        r = NULL;
    }
    is_int(rpc_client_recv(&c, &r, 5000), KL_ERR_CLOSED, "truncated frame -> connection closed");
    ok(harness_audit_grep(&H, "truncated"), "truncated frame audited");
    rpc_client_close(&c);
}

/* ---- pipelining ---- */

#define PIPE_THREADS 4
#define PIPE_PER_THREAD 2500
#define PIPE_TOTAL (PIPE_THREADS * PIPE_PER_THREAD)

struct sender {
    struct rpc_client *c;
    unsigned index;
    int failed;
    pthread_t t;
};

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    uint8_t hash[32];
    for (unsigned i = 0; i < PIPE_PER_THREAD; i++) {
        Keyless__V1__Request req;
        Keyless__V1__SignRequest sr;
        uint64_t id = 1000000 + (uint64_t)s->index * PIPE_PER_THREAD + i;
        memset(hash, 0, sizeof(hash));
        memcpy(hash, &id, sizeof(id));
        rpc_client_sign_request(&req, &sr, id, "ecdsa-p256", 0x0403, 1, hash, sizeof(hash));
        if (rpc_client_send(s->c, &req) != 0) {
            s->failed = 1;
            break;
        }
    }
    return NULL;
}

static void test_pipelining(void)
{
    struct rpc_client c;
    struct sender senders[PIPE_THREADS];
    static uint8_t seen[PIPE_TOTAL];
    unsigned answered = 0, okc = 0, overloaded = 0, bad = 0, dup = 0, verified = 0, verify_fail = 0;
    int send_failed = 0;

    if (rpc_client_connect(&c, H.sock) != 0) {
        ok(0, "connect");
        return;
    }
    memset(seen, 0, sizeof(seen));
    for (unsigned i = 0; i < PIPE_THREADS; i++) {
        senders[i].c = &c;
        senders[i].index = i;
        senders[i].failed = 0;
        pthread_create(&senders[i].t, NULL, sender_main, &senders[i]);
    }
    while (answered < PIPE_TOTAL) {
        Keyless__V1__Response *r = NULL;
        if (rpc_client_recv(&c, &r, 20000) != 0) {
            break;
        }
        answered++;
        uint64_t idx = r->id - 1000000;
        if (r->id < 1000000 || idx >= PIPE_TOTAL || r->body_case != KEYLESS__V1__RESPONSE__BODY_SIGN) {
            bad++;
        } else {
            dup += seen[idx]++ != 0;
            if (r->sign->status == KEYLESS__V1__STATUS__OK) {
                okc++;
                if (idx % 97 == 0) {
                    uint8_t hash[32], content[160];
                    uint64_t id = r->id;
                    memset(hash, 0, sizeof(hash));
                    memcpy(hash, &id, sizeof(id));
                    size_t clen = harness_content(content, 1, hash, sizeof(hash));
                    if (harness_verify(&H, "ecdsa-p256", 0x0403, content, clen, r->sign->signature.data,
                                       r->sign->signature.len)) {
                        verified++;
                    } else {
                        verify_fail++;
                    }
                }
            } else if (r->sign->status == KEYLESS__V1__STATUS__OVERLOADED) {
                overloaded++;
            } else {
                bad++;
            }
        }
        keyless__v1__response__free_unpacked(r, NULL);
    }
    for (unsigned i = 0; i < PIPE_THREADS; i++) {
        pthread_join(senders[i].t, NULL);
        send_failed |= senders[i].failed;
    }
    ok(!send_failed, "4 threads sent 10,000 pipelined requests on one connection");
    is_int(answered, PIPE_TOTAL, "every pipelined request answered");
    is_int(dup, 0, "no id answered twice");
    is_int(bad, 0, "every answer has a known id and status OK or OVERLOADED");
    ok(okc > 0, "pipelined requests signed");
    diag("pipelined: %u OK, %u OVERLOADED (queue_max), %u sampled signatures verified", okc, overloaded, verified);
    ok(verified > 0 && verify_fail == 0, "sampled pipelined signatures verify against the certificate");
    ping_ok(&c, 7, "connection usable after the pipeline");
    rpc_client_close(&c);
}

/*
 * Issue 15: a batch of requests written in one write (more than one inline turn of 32,
 * with refusals, a ping and a frame that does not decode among the signatures) is
 * answered completely, each id exactly once and in any order, and the answers read back
 * a few bytes at a time (a batch of answers split anywhere) reassemble into whole frames.
 */
#define BATCH_SIGN 40
static void test_batch(void)
{
    struct rpc_client c;
    struct kl_buf out;
    uint8_t hashes[BATCH_SIGN][32];
    uint64_t ids[BATCH_SIGN + 2];
    int want[BATCH_SIGN + 2], seen[BATCH_SIGN + 2];
    size_t n_ids = 0, answers = 0, verified = 0, extra = 0, bad_status = 0, unknown = 0;
    static const uint8_t garbage[] = {0, 0, 0, 6, 0x08, 0xd0, 0x28, 0x12, 0x7f, 0xff}; /* id 5200 */
    uint8_t in[FRAME_HDR_LEN + FRAME_MAX];
    size_t in_len = 0;

    if (rpc_client_connect(&c, H.sock) != 0) {
        ok(0, "batch: connect");
        return;
    }
    kl_buf_init(&out, 1u << 20);
    for (size_t i = 0; i < BATCH_SIGN; i++) {
        Keyless__V1__Request req;
        Keyless__V1__SignRequest sr;
        for (size_t b = 0; b < 32; b++) {
            hashes[i][b] = (uint8_t)(i * 31 + b);
        }
        if (i == 7 || i == 21 || i == 33) { /* refusals in the middle of the batch */
            rpc_client_sign_request(&req, &sr, 5100 + i, "no-such-key", 0x0403, 1, hashes[i], 32);
            want[n_ids] = KEYLESS__V1__STATUS__UNKNOWN_KEY;
        } else {
            rpc_client_sign_request(&req, &sr, 5000 + i, "ecdsa-p256", 0x0403, 1, hashes[i], 32);
            want[n_ids] = KEYLESS__V1__STATUS__OK;
        }
        ids[n_ids++] = req.id;
        if (frame_append(&out, &req.base) != 0) {
            ok(0, "batch: frame_append");
        }
        if (i == 12) {
            Keyless__V1__Request ping = KEYLESS__V1__REQUEST__INIT;
            Keyless__V1__PingRequest pr = KEYLESS__V1__PING_REQUEST__INIT;
            ping.id = 5300;
            ping.body_case = KEYLESS__V1__REQUEST__BODY_PING;
            ping.ping = &pr;
            want[n_ids] = -1; /* a PingResponse */
            ids[n_ids++] = 5300;
            if (frame_append(&out, &ping.base) != 0) {
                ok(0, "batch: frame_append ping");
            }
        }
        if (i == 25 && kl_buf_append(&out, garbage, sizeof(garbage)) == 0) {
            want[n_ids] = KEYLESS__V1__STATUS__BAD_REQUEST;
            ids[n_ids++] = 5200;
        }
    }
    memset(seen, 0, sizeof(seen));
    ok(rpc_client_send_raw(&c, out.base, out.len) == 0, "batch: 42 frames sent in one write");
    kl_buf_dispose(&out);

    /* Read 5 bytes at a time until every id is answered, then a little longer: nothing more may come. */
    uint64_t deadline = kl_clock_ms() + 20000, quiet_until = 0;
    while (kl_clock_ms() < deadline && (quiet_until == 0 || kl_clock_ms() < quiet_until)) {
        struct pollfd pfd = {c.fd, POLLIN, 0};
        if (poll(&pfd, 1, 50) <= 0) {
            continue;
        }
        ssize_t n = recv(c.fd, in + in_len, sizeof(in) - in_len < 5 ? sizeof(in) - in_len : 5, 0);
        if (n <= 0) {
            break;
        }
        in_len += (size_t)n;
        for (;;) {
            struct kl_span body;
            size_t used;
            if (frame_next(&body, &used, in, in_len) != 0) {
                break;
            }
            Keyless__V1__Response *r = keyless__v1__response__unpack(NULL, body.len, body.base);
            size_t k = 0;
            while (r != NULL && k < n_ids && ids[k] != r->id) {
                k++;
            }
            if (r == NULL || k == n_ids) {
                extra++;
            } else {
                seen[k]++;
                answers++;
                if (want[k] == -1) {
                    bad_status += r->body_case != KEYLESS__V1__RESPONSE__BODY_PING;
                } else if (r->body_case != KEYLESS__V1__RESPONSE__BODY_SIGN || (int)r->sign->status != want[k]) {
                    bad_status++;
                } else if (want[k] == KEYLESS__V1__STATUS__OK) {
                    uint8_t content[200];
                    size_t clen = harness_content(content, 1, hashes[r->id - 5000], 32);
                    verified += harness_verify(&H, "ecdsa-p256", 0x0403, content, clen, r->sign->signature.data,
                                               r->sign->signature.len) != 0;
                } else {
                    unknown += r->sign->signature.len == 0;
                }
            }
            if (r != NULL) {
                keyless__v1__response__free_unpacked(r, NULL);
            }
            memmove(in, in + used, in_len - used);
            in_len -= used;
        }
        if (answers >= n_ids && quiet_until == 0) {
            quiet_until = kl_clock_ms() + 300;
        }
    }
    int once = 1;
    for (size_t k = 0; k < n_ids; k++) {
        once &= seen[k] == 1;
    }
    is_int((int)n_ids, BATCH_SIGN + 2, "batch: 40 signs (3 with an unknown key), a ping and a bad frame");
    ok(once, "batch: every id answered exactly once");
    is_int((int)extra, 0, "batch: no answer for an id not asked");
    is_int((int)bad_status, 0, "batch: every answer has its own status (OK, UNKNOWN_KEY, BAD_REQUEST, ping)");
    is_int((int)verified, BATCH_SIGN - 3, "batch: every signature of the batch verifies with its own hash");
    is_int((int)unknown, 4, "batch: the 3 refusals and the bad frame carry no signature");
    is_int((int)in_len, 0, "batch: the stream ends on a frame boundary");
    ok(harness_audit_has(&H, 5000, "OK") && harness_audit_has(&H, 5039, "OK") &&
           harness_audit_has(&H, 5107, "UNKNOWN_KEY") && harness_audit_has(&H, 5200, "BAD_REQUEST"),
       "batch: signatures and refusals audited");
    ping_ok(&c, 5301, "batch: the connection is usable afterwards");

    /* Answers held back for a batch write must still leave at once: an answer left unsent
     * would only go out with the I/O thread's next wake-up (the sweep timer, up to 1 s).
     * Five batches of 4 in one write each; at least 4 of them answered within 300 ms. */
    int fast = 0;
    for (int round = 0; round < 5; round++) {
        struct kl_buf b;
        int got = 0;
        kl_buf_init(&b, 4096);
        for (int i = 0; i < 4; i++) {
            Keyless__V1__Request req;
            Keyless__V1__SignRequest sr;
            rpc_client_sign_request(&req, &sr, 6000 + (uint64_t)(round * 4 + i), "ecdsa-p256", 0x0403, 1, hashes[i],
                                    32);
            if (frame_append(&b, &req.base) != 0) {
                ok(0, "batch: frame_append");
            }
        }
        uint64_t t0 = kl_clock_ms();
        if (rpc_client_send_raw(&c, b.base, b.len) == 0) {
            Keyless__V1__Response *r = NULL;
            while (got < 4 && rpc_client_recv(&c, &r, 5000) == 0) {
                got += r->body_case == KEYLESS__V1__RESPONSE__BODY_SIGN && r->sign->status == KEYLESS__V1__STATUS__OK;
                keyless__v1__response__free_unpacked(r, NULL);
            }
        }
        kl_buf_dispose(&b);
        fast += got == 4 && kl_clock_ms() - t0 < 300;
    }
    ok(fast >= 4, "batch: small batches answered at once, not at the next timer");
    if (fast < 4) {
        diag("%d of 5 batches within 300 ms", fast);
    }
    rpc_client_close(&c);
}

static void test_list_keys(struct rpc_client *c)
{
    Keyless__V1__Request req = KEYLESS__V1__REQUEST__INIT;
    Keyless__V1__ListKeysRequest lr = KEYLESS__V1__LIST_KEYS_REQUEST__INIT;
    Keyless__V1__Response *r = NULL;
    static const char *names[] = {"ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519"};
    req.id = 5;
    req.body_case = KEYLESS__V1__REQUEST__BODY_LIST_KEYS;
    req.list_keys = &lr;
    if (rpc_client_send(c, &req) != 0 || rpc_client_recv(c, &r, 5000) != 0 ||
        r->body_case != KEYLESS__V1__RESPONSE__BODY_LIST_KEYS) {
        ok(0, "list_keys answered");
        return;
    }
    ok(r->id == 5 && r->list_keys->status == KEYLESS__V1__STATUS__OK, "list_keys answered OK");
    is_int(r->list_keys->n_keys, 6, "list_keys lists every configured key");
    for (size_t n = 0; n < 4; n++) {
        uint8_t want[2048];
        size_t want_len = harness_cert_spki(&H, names[n], want, sizeof(want));
        int found = 0;
        for (size_t i = 0; i < r->list_keys->n_keys; i++) {
            Keyless__V1__KeyInfo *k = r->list_keys->keys[i];
            if (strcmp(k->name, names[n]) == 0) {
                char name[128];
                found = 1;
                snprintf(name, sizeof(name), "%s: SPKI equals the certificate's public key", names[n]);
                is_mem(k->public_key_spki.data, k->public_key_spki.len, want, want_len, name);
                if (strcmp(names[n], "rsa-2048") == 0) {
                    ok(k->n_schemes == 3 && k->schemes[0] == 0x0804 && k->schemes[2] == 0x0806,
                       "rsa-2048 lists its three schemes");
                }
            }
        }
        ok(found, names[n]);
    }
    keyless__v1__response__free_unpacked(r, NULL);
}

#define OTHER_ID 65534u /* nobody / nogroup */

/* In a child running as uid/gid: what does the signer let it do? Exit code says. */
static int as_peer(uid_t uid, gid_t gid)
{
    pid_t pid = fork();
    int st;
    if (pid == 0) {
        struct rpc_client c;
        Keyless__V1__Response *r = NULL;
        uint8_t hash[32] = {1};
        if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
            _exit(10);
        }
        if (rpc_client_connect(&c, H.sock) != 0) {
            _exit(errno == EACCES ? 20 : 21); /* 20: the socket directory kept it out */
        }
        if (rpc_client_sign(&c, &r, 1, "nobody-key", 0x0403, 1, hash, sizeof(hash)) != 0) {
            _exit(30); /* 30: connection refused (closed) by the signer */
        }
        int good = r->sign != NULL && r->sign->status == KEYLESS__V1__STATUS__OK;
        keyless__v1__response__free_unpacked(r, NULL);
        if (rpc_client_sign(&c, &r, 2, "ecdsa-p256", 0x0403, 1, hash, sizeof(hash)) != 0) {
            _exit(31);
        }
        good = good && r->sign != NULL && r->sign->status == KEYLESS__V1__STATUS__NOT_AUTHORIZED;
        keyless__v1__response__free_unpacked(r, NULL);
        rpc_client_close(&c);
        _exit(good ? 40 : 41); /* 40: its own key signs, the other key is refused */
    }
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) {
        return -1;
    }
    return WEXITSTATUS(st);
}

/* Other users: the socket directory (0750, socket_group), the connection check, per-key uids. */
static void test_other_peers(void)
{
    if (getuid() != 0) {
        ok(1, "# SKIP peers with other uids need root");
        return;
    }
    /* mkdtemp made the test directory 0700: let others traverse it (only) to reach run/. */
    ok(chmod(H.dir, 0711) == 0, "test directory traversable");
    is_int(as_peer(OTHER_ID, OTHER_ID), 40,
           "uid in allow_uids, gid = socket_group: its key signs, others NOT_AUTHORIZED");
    is_int(as_peer(OTHER_ID - 1, OTHER_ID), 30, "a peer allowed on no key is closed at connect");
    ok(harness_audit_grep(&H, "\"op\":\"connect\""), "the refused connection is audited");
    is_int(as_peer(OTHER_ID - 1, OTHER_ID - 1), 20, "a peer outside socket_group cannot reach the socket (EACCES)");
}

/* A second signer: one worker, queue_max 2, and a per-peer rate limit. */
static void test_overload_and_peer_rate(void)
{
    char conf[400];
    struct rpc_client c;
    unsigned okc = 0, overloaded = 0, limited = 0, answered = 0, other = 0;
    char keys[4096];
    snprintf(conf, sizeof(conf), "%s/small.conf", H.dir);
    snprintf(keys, sizeof(keys),
             "%s[key nobody-key]\nuri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
             "schemes = ecdsa_secp256r1_sha256\nallow_uids = %u\n",
             harness_std_keys, (unsigned)OTHER_ID);
    char extra[300];
    snprintf(extra, sizeof(extra),
             "workers = %s\nqueue_max = 2\naudit_sync = always\nrate_per_peer = 0.001\n"
             "burst_per_peer = 40\nsocket_group = 65534\n",
             getenv("KL_TEST_WORKERS") != NULL ? getenv("KL_TEST_WORKERS") : "1");
    /* The socket directory gets socket_group only when the signer makes it (issue 13):
     * remove the one the first signer made. */
    char rundir[400];
    snprintf(rundir, sizeof(rundir), "%s/run", H.dir);
    (void)unlink(H.sock);
    ok(rmdir(rundir) == 0, "the first signer's socket directory removed");
    if (harness_write_config(&H, conf, extra, NULL, keys) != 0 || harness_start(&H, conf) != 0 ||
        rpc_client_connect(&c, H.sock) != 0) {
        ok(0, "small signer started");
        return;
    }
    /* 60 RSA requests at once: 2 fit in flight, the burst of 40 passes the peer limit. */
    for (uint64_t id = 1; id <= 60; id++) {
        Keyless__V1__Request req;
        Keyless__V1__SignRequest sr;
        uint8_t hash[32];
        memset(hash, (int)id, sizeof(hash));
        rpc_client_sign_request(&req, &sr, 5000 + id, "rsa-2048", 0x0804, 1, hash, sizeof(hash));
        if (rpc_client_send(&c, &req) != 0) {
            break;
        }
    }
    while (answered < 60) {
        Keyless__V1__Response *r = NULL;
        if (rpc_client_recv(&c, &r, 10000) != 0) {
            break;
        }
        answered++;
        switch (r->sign != NULL ? (int)r->sign->status : -1) {
        case KEYLESS__V1__STATUS__OK:
            okc++;
            break;
        case KEYLESS__V1__STATUS__OVERLOADED:
            overloaded++;
            break;
        case KEYLESS__V1__STATUS__RATE_LIMITED:
            limited++;
            break;
        default:
            other++;
        }
        keyless__v1__response__free_unpacked(r, NULL);
    }
    is_int(answered, 60, "queue_max 2: all 60 answered");
    ok(okc >= 2 && overloaded > 0 && other == 0, "queue_max 2: some signed, the excess OVERLOADED");
    is_int(limited, 20, "rate_per_peer: the 20 requests past the peer's burst are RATE_LIMITED");
    diag("small signer: %u OK, %u OVERLOADED, %u RATE_LIMITED", okc, overloaded, limited);
    ok(harness_audit_grep(&H, "\"status\":\"OVERLOADED\""), "OVERLOADED audited");
    test_other_peers();
    rpc_client_close(&c);
    is_int(harness_stop(&H), 0, "small signer: graceful exit 0");
}

int main(void)
{
    char keys[4096], out[4096], cmd[2048];
    struct rpc_client c;

    if (harness_init(&H) != 0) {
        ok(0, "token fixture");
        return kl_test_done();
    }
    snprintf(keys, sizeof(keys), "%s", harness_std_keys);
    snprintf(keys + strlen(keys), sizeof(keys) - strlen(keys), extra_keys, (unsigned)getuid() + 4242);
    /* KL_TEST_WORKERS=0 (ctest test_signer_rpc_inline): the whole test again with the I/O
     * thread signing itself (workers = 0). */
    char extra[200];
    /* verify_ecdsa: every signature of the run (ECDSA, Ed25519, RSA) goes through the check
     * before release, and each still verifies with the certificate (issue 13). */
    snprintf(extra, sizeof(extra), "workers = %s\nqueue_max = 4096\naudit_sync = group\nverify_ecdsa = yes\n",
             getenv("KL_TEST_WORKERS") != NULL ? getenv("KL_TEST_WORKERS") : "2");
    diag("signer config: %s", extra);
    ok(harness_write_config(&H, H.conf, extra, NULL, keys) == 0, "config written");
    if (harness_start(&H, H.conf) != 0) {
        ok(0, "keyless-signer started");
        harness_run(out, sizeof(out), "cat /dev/null");
        snprintf(cmd, sizeof(cmd), "cat %s", H.errlog);
        harness_run(out, sizeof(out), cmd);
        diag("%s", out);
        harness_cleanup(&H);
        return kl_test_done();
    }
    ok(1, "keyless-signer started");
    {
        struct stat st;
        char dir[400];
        snprintf(dir, sizeof(dir), "%s/run", H.dir);
        ok(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0750, "socket directory is mode 0750");
        ok(stat(H.sock, &st) == 0 && (st.st_mode & 0777) == 0660, "socket is mode 0660");
        /* Hardening: no core file (RLIMIT_CORE 0, set before the token is touched). */
        char cmd2[200], lim[8192];
        snprintf(cmd2, sizeof(cmd2), "awk '/Max core file size/ {print $5, $6}' /proc/%d/limits", (int)H.pid);
        ok(harness_run(lim, sizeof(lim), cmd2) == 0 && strcmp(lim, "0 0\n") == 0, "the signer runs with RLIMIT_CORE 0");
    }
    if (rpc_client_connect(&c, H.sock) != 0) {
        ok(0, "connect");
        harness_cleanup(&H);
        return kl_test_done();
    }
    ping_ok(&c, 1, "ping returns the version");
    {
        /* A second signer must not share the audit log nor steal the socket. */
        char cmd2[1200], out2[4096], conf2[400], audit_save[320];
        snprintf(cmd2, sizeof(cmd2), "%s --config %s 2>&1", H.bin, H.conf);
        is_int(harness_run(out2, sizeof(out2), cmd2), 1, "a second signer on the same config: exit 1");
        ok(strstr(out2, "[signer] audit_log:") != NULL && strstr(out2, "in use") != NULL &&
               strchr(out2, '\n') == out2 + strlen(out2) - 1,
           "... one line: the audit log is in use");
        diag("%s", out2);
        snprintf(conf2, sizeof(conf2), "%s/second.conf", H.dir);
        memcpy(audit_save, H.audit, sizeof(audit_save));
        snprintf(H.audit, sizeof(H.audit), "%s/audit2.jsonl", H.dir);
        ok(harness_write_config(&H, conf2, NULL, NULL, harness_std_keys) == 0, "second config");
        memcpy(H.audit, audit_save, sizeof(audit_save));
        snprintf(cmd2, sizeof(cmd2), "%s --config %s 2>&1", H.bin, conf2);
        is_int(harness_run(out2, sizeof(out2), cmd2), 1, "a second signer on the same socket: exit 1");
        ok(strstr(out2, "[signer] socket:") != NULL && strstr(out2, "in use by a running process") != NULL,
           "... saying the socket is in use");
        diag("%s", out2);
        ping_ok(&c, 2, "the first signer still answers");
    }
    test_list_keys(&c);
    test_round_trips(&c);
    test_refusals(&c);
    rpc_client_close(&c);
    test_bad_frames();
    test_pipelining();
    test_batch();

    /* SIGHUP rotates the audit log; the chain continues in the new file. */
    kill(H.pid, SIGHUP);
    {
        int rotated = 0;
        for (int i = 0; i < 100 && !rotated; i++) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            snprintf(cmd, sizeof(cmd), "grep -q 'audit: rotated' %s", H.errlog);
            rotated = harness_run(NULL, 0, cmd) == 0;
            if (!rotated) {
                nanosleep(&ts, NULL);
            }
        }
        ok(rotated, "SIGHUP: the audit log is rotated");
    }
    if (rpc_client_connect(&c, H.sock) == 0) {
        expect_status(&c, 9001, "ecdsa-p384", 0x0503, 1, 48, KEYLESS__V1__STATUS__OK, "OK", NULL,
                      "signing after the rotation");
        rpc_client_close(&c);
    }
    is_int(harness_stop(&H), 0, "SIGTERM: graceful exit 0");
    char old[512] = "";
    snprintf(cmd, sizeof(cmd), "ls %s.* | head -1 | tr -d '\\n'", H.audit);
    ok(harness_run(old, sizeof(old), cmd) == 0 && old[0] != '\0', "the rotated file is there");
    snprintf(cmd, sizeof(cmd), "%s audit-verify %s %s 2>&1", H.bin, old, H.audit);
    is_int(harness_run(out, sizeof(out), cmd), 0,
           "the run's audit chain (rotated file + current) verifies with keyless-signer audit-verify");
    diag("%s", out);
    ok(strncmp(out, "OK: ", 4) == 0, "audit-verify reports OK with the record count");
    /* Tamper: flip one status in the middle; audit-verify must name that line. */
    snprintf(cmd, sizeof(cmd), "sed -i '5s/\"status\":\"OK\"/\"status\":\"KO\"/' %s && %s audit-verify %s %s 2>&1", old,
             H.bin, old, H.audit);
    ok(harness_run(out, sizeof(out), cmd) != 0 && strstr(out, ":5:") != NULL, "an edited line is detected at line 5");
    diag("%s", out);
    test_overload_and_peer_rate();
    harness_cleanup(&H);
    return kl_test_done();
}
