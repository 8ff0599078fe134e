/*
 * Unit tests for frontend/signer_client.c against a scripted fake signer (a thread
 * with blocking sockets): ids matched out of order, deadlines with the late answer
 * dropped, cancel, max_pending, the signer going away (fail at once, fail fast,
 * reconnect), failover between sockets, and a flood under EAGAIN both ways.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include "kl_test.h"
#include "frame.h"
#include "signer_client.h"
#include "clock.h"

static char dir[32], path_good[64], path_dead[64];

static int srv_listen(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 8) != 0) {
        return -1;
    }
    return fd;
}

static int read_full(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) {
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Read one request; returns its id and key (copied). */
static int srv_read(int fd, uint64_t *id, char *key, size_t key_len)
{
    uint8_t hdr[4], body[FRAME_MAX];
    size_t len;
    if (read_full(fd, hdr, 4) != 0 || frame_decode_header(&len, hdr) != 0 || read_full(fd, body, len) != 0) {
        return -1;
    }
    Keyless__V1__Request *r = keyless__v1__request__unpack(NULL, len, body);
    if (r == NULL) {
        return -1;
    }
    *id = r->id;
    snprintf(key, key_len, "%s", r->body_case == KEYLESS__V1__REQUEST__BODY_SIGN ? r->sign->key : "?");
    keyless__v1__request__free_unpacked(r, NULL);
    return 0;
}

/* Answer id with a signature equal to the key name. */
static int srv_answer(int fd, uint64_t id, const char *key)
{
    Keyless__V1__Response resp = KEYLESS__V1__RESPONSE__INIT;
    Keyless__V1__SignResponse s = KEYLESS__V1__SIGN_RESPONSE__INIT;
    resp.id = id;
    resp.body_case = KEYLESS__V1__RESPONSE__BODY_SIGN;
    resp.sign = &s;
    s.status = KEYLESS__V1__STATUS__OK;
    s.signature.data = (uint8_t *)key;
    s.signature.len = strlen(key);
    struct kl_buf b;
    kl_buf_init(&b, FRAME_MAX + 4);
    int ret = frame_append(&b, &resp.base) == 0 && write(fd, b.base, b.len) == (ssize_t)b.len ? 0 : -1;
    kl_buf_dispose(&b);
    return ret;
}

/* Scenario 4: one TicketKeysRequest, answered with a key per epoch (key id = epoch byte,
   secret = rotation byte) when it asks for exactly epochs 5 and 6 of 3600 s, else BAD_REQUEST. */
static int srv_ticket_keys(int fd)
{
    uint8_t hdr[4], body[FRAME_MAX], ids[2][8], secret[32];
    size_t len;
    if (read_full(fd, hdr, 4) != 0 || frame_decode_header(&len, hdr) != 0 || read_full(fd, body, len) != 0) {
        return -1;
    }
    Keyless__V1__Request *r = keyless__v1__request__unpack(NULL, len, body);
    if (r == NULL) {
        return -1;
    }
    Keyless__V1__Response resp = KEYLESS__V1__RESPONSE__INIT;
    Keyless__V1__TicketKeysResponse tr = KEYLESS__V1__TICKET_KEYS_RESPONSE__INIT;
    Keyless__V1__TicketKey k[2] = {KEYLESS__V1__TICKET_KEY__INIT, KEYLESS__V1__TICKET_KEY__INIT};
    Keyless__V1__TicketKey *kp[2] = {&k[0], &k[1]};
    resp.id = r->id;
    resp.body_case = KEYLESS__V1__RESPONSE__BODY_TICKET_KEYS;
    resp.ticket_keys = &tr;
    tr.status = KEYLESS__V1__STATUS__BAD_REQUEST;
    if (r->body_case == KEYLESS__V1__REQUEST__BODY_TICKET_KEYS && r->ticket_keys->n_epochs == 2 &&
        r->ticket_keys->epochs[0] == 5 && r->ticket_keys->epochs[1] == 6 && r->ticket_keys->rotation_seconds == 3600) {
        tr.status = KEYLESS__V1__STATUS__OK;
        tr.keys = kp;
        tr.n_keys = 2;
        memset(secret, 0x36, sizeof(secret));
        for (int i = 0; i < 2; i++) {
            memset(ids[i], 5 + i, 8);
            k[i].epoch = 5 + (uint64_t)i;
            k[i].key_id.data = ids[i];
            k[i].key_id.len = 8;
            k[i].secret.data = secret;
            k[i].secret.len = 32;
        }
    }
    keyless__v1__request__free_unpacked(r, NULL);
    struct kl_buf b;
    kl_buf_init(&b, FRAME_MAX + 4);
    int ret = frame_append(&b, &resp.base) == 0 && write(fd, b.base, b.len) == (ssize_t)b.len ? 0 : -1;
    kl_buf_dispose(&b);
    return ret;
}

/* Scenario 5 (issue 15): more requests than the socket buffers hold, answered in one
 * write of reversed order through a small send buffer, with duplicates and an unknown id. */
#define FLOOD_N 600
#define FLOOD_KEY_LEN 1500

static int srv_flood(int c)
{
    static uint64_t ids[FLOOD_N];
    static int idx[FLOOD_N];
    char *key = malloc(FLOOD_KEY_LEN + 1);
    struct kl_buf b;
    int small = 4096, ret = -1;
    kl_buf_init(&b, 4u * 1024 * 1024);
    if (key == NULL) {
        return -1;
    }
    /* A small send buffer: the answers reach the client in many partial reads. */
    struct timeval tmo = {5, 0};
    (void)setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    /* Bounded: a client that lost requests must fail the test, not hang it. */
    (void)setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));
    usleep(200 * 1000); /* the client fills its socket buffer and sees EAGAIN meanwhile */
    for (int i = 0; i < FLOOD_N; i++) {
        if (srv_read(c, &ids[i], key, FLOOD_KEY_LEN + 1) != 0 || sscanf(key, "k%d", &idx[i]) != 1) {
            goto out;
        }
    }
    for (int i = FLOOD_N - 1; i >= -6; i--) {
        Keyless__V1__Response resp = KEYLESS__V1__RESPONSE__INIT;
        Keyless__V1__SignResponse sr = KEYLESS__V1__SIGN_RESPONSE__INIT;
        char sig[16];
        /* i < 0: the first five answers again, and one for an id never asked */
        int j = i >= 0 ? i : i == -6 ? -1 : -i - 1;
        snprintf(sig, sizeof(sig), "s%04d", j >= 0 ? idx[j] : 9999);
        resp.id = j >= 0 ? ids[j] : ids[0] + 1234567;
        resp.body_case = KEYLESS__V1__RESPONSE__BODY_SIGN;
        resp.sign = &sr;
        sr.status = KEYLESS__V1__STATUS__OK;
        sr.signature.data = (uint8_t *)sig;
        sr.signature.len = strlen(sig);
        if (frame_append(&b, &resp.base) != 0) {
            goto out;
        }
    }
    for (size_t off = 0; off < b.len;) {
        ssize_t n = write(c, b.base + off, b.len - off);
        if (n <= 0) {
            goto out;
        }
        off += (size_t)n;
    }
    ret = 0;
out:
    kl_buf_dispose(&b);
    free(key);
    return ret;
}

static int scenario;
static int lfd;
static volatile int srv_done;

static void *server(void *arg)
{
    int c = accept(lfd, NULL, NULL);
    uint64_t ids[4];
    char keys[4][32];
    if (c < 0) {
        return NULL;
    }
    switch (scenario) {
    case 1: /* three requests, answered in reverse order */
        for (int i = 0; i < 3; i++) {
            if (srv_read(c, &ids[i], keys[i], sizeof(keys[i])) != 0) {
                goto out;
            }
        }
        for (int i = 2; i >= 0; i--) {
            if (srv_answer(c, ids[i], keys[i]) != 0) {
                goto out;
            }
        }
        break;
    case 2: /* late answer, and an answer to a cancelled request */
        for (int i = 0; i < 2; i++) {
            if (srv_read(c, &ids[i], keys[i], sizeof(keys[i])) != 0) {
                goto out;
            }
        }
        usleep(600 * 1000);
        if (srv_answer(c, ids[0], keys[0]) != 0 || srv_answer(c, ids[1], keys[1]) != 0 ||
            srv_answer(c, 12345, "bogus") != 0) {
            goto out;
        }
        /* then a normal round trip proves the stream is still in sync */
        if (srv_read(c, &ids[2], keys[2], sizeof(keys[2])) != 0 || srv_answer(c, ids[2], keys[2]) != 0) {
            goto out;
        }
        break;
    case 3: /* read one request, then go away (listener first) without answering */
        if (srv_read(c, &ids[0], keys[0], sizeof(keys[0])) != 0) {
            goto out;
        }
        close(lfd);
        unlink(path_good);
        lfd = -1;
        break;
    case 4:
        if (srv_ticket_keys(c) != 0) {
            goto out;
        }
        break;
    case 5:
        if (srv_flood(c) != 0) {
            goto out;
        }
        usleep(300 * 1000); /* the client reads the rest before the close */
        break;
    }
    usleep(100 * 1000);
out:
    close(c);
    srv_done = 1;
    return NULL;
}

struct tk_result {
    int calls;
    int ok;
};

static void tk_cb(void *arg, const Keyless__V1__Response *resp)
{
    struct tk_result *t = arg;
    t->calls++;
    t->ok = resp != NULL && resp->body_case == KEYLESS__V1__RESPONSE__BODY_TICKET_KEYS &&
            resp->ticket_keys->status == KEYLESS__V1__STATUS__OK && resp->ticket_keys->n_keys == 2 &&
            resp->ticket_keys->keys[1]->epoch == 6 && resp->ticket_keys->keys[1]->key_id.len == 8 &&
            resp->ticket_keys->keys[1]->key_id.data[0] == 6 && resp->ticket_keys->keys[1]->secret.len == 32;
}

struct result {
    int calls;
    int null;
    char sig[32];
};

static void cb(void *arg, const Keyless__V1__Response *resp)
{
    struct result *r = arg;
    r->calls++;
    if (resp == NULL) {
        r->null++;
        return;
    }
    if (resp->body_case == KEYLESS__V1__RESPONSE__BODY_SIGN && resp->sign->signature.len < sizeof(r->sig)) {
        memcpy(r->sig, resp->sign->signature.data, resp->sign->signature.len);
        r->sig[resp->sign->signature.len] = '\0';
    }
}

static int call(struct sc_client *sc, uint64_t *id, const char *key, struct result *r)
{
    Keyless__V1__Request req = KEYLESS__V1__REQUEST__INIT;
    Keyless__V1__SignRequest s = KEYLESS__V1__SIGN_REQUEST__INIT;
    uint8_t hash[32] = {0};
    s.key = (char *)key;
    s.scheme = 0x0403;
    s.context = KEYLESS__V1__CONTEXT__SERVER_CERTIFICATE_VERIFY;
    s.transcript_hash.data = hash;
    s.transcript_hash.len = sizeof(hash);
    req.body_case = KEYLESS__V1__REQUEST__BODY_SIGN;
    req.sign = &s;
    return sc_call(sc, id, &req, cb, r);
}

struct flood_slot {
    int index;
    int calls, null, wrong;
};
static int flood_done;

static void flood_cb(void *arg, const Keyless__V1__Response *resp)
{
    struct flood_slot *f = arg;
    char want[16];
    f->calls++;
    flood_done++;
    if (resp == NULL) {
        f->null++;
        return;
    }
    snprintf(want, sizeof(want), "s%04d", f->index);
    f->wrong += resp->body_case != KEYLESS__V1__RESPONSE__BODY_SIGN || resp->sign->signature.len != strlen(want) ||
                memcmp(resp->sign->signature.data, want, strlen(want)) != 0;
}

/* Run the loop until cond or ms pass. */
#define RUN_UNTIL(loop, cond, ms)                                                                                      \
    do {                                                                                                               \
        uint64_t end_ = kl_clock_ms() + (ms);                                                                          \
        while (!(cond) && kl_clock_ms() < end_) {                                                                      \
            if (ev_run_once((loop), 20) != 0) {                                                                        \
                break;                                                                                                 \
            }                                                                                                          \
        }                                                                                                              \
    } while (0)

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/kl-sc-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        return 1;
    }
    snprintf(path_good, sizeof(path_good), "%s/good.sock", dir);
    snprintf(path_dead, sizeof(path_dead), "%s/dead.sock", dir);
    struct ev_loop *loop = ev_loop_new();
    struct sc_client *sc = NULL;
    pthread_t th;
    const char *paths[] = {path_dead, path_good};

    /* 1: failover to the second socket, answers matched by id in any order */
    lfd = srv_listen(path_good);
    ok(lfd >= 0, "fake signer listening");
    scenario = 1;
    pthread_create(&th, NULL, server, NULL);
    ok(sc_new(&sc, loop, paths, 2, 4, 1000) == 0, "sc_new with a dead first socket");
    RUN_UNTIL(loop, sc_up(sc), 2000);
    ok(sc_up(sc), "failover: connected to the second socket");
    is_mem(sc_path(sc), strlen(sc_path(sc)), path_good, strlen(path_good), "the socket in use is the second one");
    struct result r[4];
    memset(r, 0, sizeof(r));
    uint64_t id[4];
    ok(call(sc, &id[0], "k0", &r[0]) == 0 && call(sc, &id[1], "k1", &r[1]) == 0 && call(sc, &id[2], "k2", &r[2]) == 0,
       "three pipelined requests");
    ok(id[0] != id[1] && id[1] != id[2], "distinct ids");
    is_int(sc_pending(sc), 3, "three pending");
    RUN_UNTIL(loop, r[0].calls && r[1].calls && r[2].calls, 2000);
    ok(strcmp(r[0].sig, "k0") == 0 && strcmp(r[1].sig, "k1") == 0 && strcmp(r[2].sig, "k2") == 0,
       "answers in reverse order reach the right callers");
    is_int(r[0].calls + r[1].calls + r[2].calls, 3, "each callback exactly once");
    is_int(sc_pending(sc), 0, "nothing pending");
    pthread_join(th, NULL);
    RUN_UNTIL(loop, !sc_up(sc), 1000);
    sc_free(sc);
    close(lfd);

    /* 2: deadline, late answer dropped, cancel, max_pending */
    lfd = srv_listen(path_good);
    scenario = 2;
    pthread_create(&th, NULL, server, NULL);
    ok(sc_new(&sc, loop, paths + 1, 1, 2, 100) == 0, "sc_new, deadline 100 ms, max_pending 2");
    RUN_UNTIL(loop, sc_up(sc), 2000);
    memset(r, 0, sizeof(r));
    /* The deadline runs from the loop's clock when the request is made (cached per turn). */
    uint64_t t0 = ev_now(loop);
    ok(call(sc, &id[0], "late", &r[0]) == 0 && call(sc, &id[1], "cancelled", &r[1]) == 0, "two requests");
    is_int(call(sc, &id[2], "third", &r[2]), KL_ERR_OVERFLOW, "a third fails fast: max_pending");
    sc_cancel(sc, id[1]);
    is_int(sc_pending(sc), 1, "cancel frees the slot");
    RUN_UNTIL(loop, r[0].calls, 2000);
    uint64_t dt = kl_clock_ms() - t0;
    ok(r[0].calls == 1 && r[0].null == 1, "past the deadline the callback gets NULL");
    ok(dt >= 100 && dt < 550, "... at the deadline (before the late answer at 600 ms)");
    if (dt < 100 || dt >= 550) {
        diag("answered after %llu ms", (unsigned long long)dt);
    }
    RUN_UNTIL(loop, 0, 700); /* the late answers arrive now */
    is_int(r[0].calls, 1, "the late answer is dropped");
    is_int(r[1].calls, 0, "a cancelled request never calls back");
    ok(call(sc, &id[3], "after", &r[3]) == 0, "a new request after the late answers");
    RUN_UNTIL(loop, r[3].calls, 2000);
    ok(r[3].calls == 1 && strcmp(r[3].sig, "after") == 0, "the stream is still in sync");
    pthread_join(th, NULL);
    RUN_UNTIL(loop, !sc_up(sc), 1000);
    sc_free(sc);
    close(lfd);

    /* 3: the signer goes away with a request in flight, then comes back */
    lfd = srv_listen(path_good);
    scenario = 3;
    srv_done = 0;
    pthread_create(&th, NULL, server, NULL);
    ok(sc_new(&sc, loop, paths + 1, 1, 8, 5000) == 0, "sc_new, deadline 5 s");
    RUN_UNTIL(loop, sc_up(sc), 2000);
    memset(r, 0, sizeof(r));
    ok(call(sc, &id[0], "inflight", &r[0]) == 0, "request in flight");
    t0 = kl_clock_ms();
    RUN_UNTIL(loop, r[0].calls, 3000);
    dt = kl_clock_ms() - t0;
    ok(r[0].null == 1 && dt < 1000, "the signer went away: the in-flight request fails at once, not at its deadline");
    pthread_join(th, NULL);
    is_int(call(sc, &id[1], "away", &r[1]), KL_ERR_IO, "while it is away, new requests fail fast");
    is_int(r[1].calls, 0, "... without a callback");
    RUN_UNTIL(loop, 0, 300);
    lfd = srv_listen(path_good);
    scenario = 1;
    pthread_create(&th, NULL, server, NULL);
    t0 = kl_clock_ms();
    RUN_UNTIL(loop, sc_up(sc), 3000);
    dt = kl_clock_ms() - t0;
    ok(sc_up(sc) && dt < 1000, "reconnects within a second of the signer's return");
    ok(sc_stats(sc)->reconnects >= 1, "reconnect counted");
    memset(r, 0, sizeof(r));
    ok(call(sc, &id[0], "a", &r[0]) == 0 && call(sc, &id[1], "b", &r[1]) == 0 && call(sc, &id[2], "c", &r[2]) == 0,
       "requests after the reconnect");
    RUN_UNTIL(loop, r[0].calls && r[1].calls && r[2].calls, 2000);
    ok(strcmp(r[2].sig, "c") == 0 && strcmp(r[0].sig, "a") == 0, "answered after the reconnect");
    pthread_join(th, NULL);
    sc_free(sc);
    close(lfd);

    /* 4: TicketKeys (issue 11): the request carries the epochs and the rotation; bad counts fail fast */
    lfd = srv_listen(path_good);
    scenario = 4;
    pthread_create(&th, NULL, server, NULL);
    ok(sc_new(&sc, loop, paths + 1, 1, 8, 2000) == 0, "sc_new for TicketKeys");
    RUN_UNTIL(loop, sc_up(sc), 2000);
    uint64_t epochs[9] = {5, 6, 7, 8, 9, 10, 11, 12, 13};
    struct tk_result tr = {0, 0};
    is_int(sc_ticket_keys(sc, &id[0], epochs, 0, 3600, tk_cb, &tr), KL_ERR_INVALID, "no epoch: refused");
    is_int(sc_ticket_keys(sc, &id[0], epochs, 9, 3600, tk_cb, &tr), KL_ERR_INVALID, "nine epochs: refused");
    ok(sc_ticket_keys(sc, &id[0], epochs, 2, 3600, tk_cb, &tr) == 0, "epochs 5 and 6 of 3600 s");
    RUN_UNTIL(loop, tr.calls, 2000);
    ok(tr.calls == 1 && tr.ok, "the signer saw both epochs and the rotation; its keys came back");
    pthread_join(th, NULL);
    sc_free(sc);
    close(lfd);

    /* 5 (issue 15): 600 requests of 1.5 KB (more than the socket takes: the client's send
     * sees EAGAIN and finishes on writability), answered in reverse order through a small
     * send buffer (answers split anywhere across reads), plus 5 duplicates and an unknown
     * id: every request is called back exactly once, with its own answer. */
    lfd = srv_listen(path_good);
    scenario = 5;
    pthread_create(&th, NULL, server, NULL);
    ok(sc_new(&sc, loop, paths + 1, 1, 1024, 15000) == 0, "sc_new for the flood");
    RUN_UNTIL(loop, sc_up(sc), 2000);
    {
        static struct flood_slot fs[FLOOD_N];
        char *key = malloc(FLOOD_KEY_LEN + 1);
        int sent = 0, once = 1, wrong = 0, nul = 0;
        memset(fs, 0, sizeof(fs));
        flood_done = 0;
        for (int i = 0; key != NULL && i < FLOOD_N; i++) {
            Keyless__V1__Request req = KEYLESS__V1__REQUEST__INIT;
            Keyless__V1__SignRequest sr = KEYLESS__V1__SIGN_REQUEST__INIT;
            uint8_t hash[32] = {0};
            uint64_t fid;
            memset(key, 'x', FLOOD_KEY_LEN);
            key[FLOOD_KEY_LEN] = '\0';
            int m = snprintf(key, FLOOD_KEY_LEN, "k%04d", i);
            key[m] = '-';
            sr.key = key;
            sr.scheme = 0x0403;
            sr.transcript_hash.data = hash;
            sr.transcript_hash.len = sizeof(hash);
            req.body_case = KEYLESS__V1__REQUEST__BODY_SIGN;
            req.sign = &sr;
            fs[i].index = i;
            sent += sc_call(sc, &fid, &req, flood_cb, &fs[i]) == 0;
        }
        free(key);
        is_int(sent, FLOOD_N, "600 requests of 1.5 KB queued (900 KB: more than the socket holds)");
        RUN_UNTIL(loop, flood_done >= FLOOD_N, 15000);
        RUN_UNTIL(loop, 0, 200); /* the duplicates and the unknown id arrive too */
        for (int i = 0; i < FLOOD_N; i++) {
            once &= fs[i].calls == 1;
            wrong += fs[i].wrong;
            nul += fs[i].null;
        }
        ok(once, "under EAGAIN both ways: every request called back exactly once");
        is_int(nul, 0, "... none failed");
        is_int(wrong, 0, "... each with its own answer");
        is_int(flood_done, FLOOD_N, "duplicate answers and an unknown id are dropped");
        is_int(sc_pending(sc), 0, "nothing pending");
    }
    pthread_join(th, NULL);
    sc_free(sc);
    close(lfd);
    unlink(path_good);
    rmdir(dir);
    ev_loop_free(loop);
    return kl_test_done();
}
