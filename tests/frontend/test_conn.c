/*
 * Unit tests for frontend/conn.c: the connection state machine driven through a fake
 * conn_env. The client is the engine's test client (tls_test_client.c) on a socketpair;
 * the signer is a fake whose call only records the request, answered by the test with a
 * real RSA-PSS signature (the RFC 8448 server key) or an error; the backend is a Unix
 * socket in a temporary directory that the test accepts on. No signer process, no TCP.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include "kl_test.h"
#include "clock.h"
#include "conn.h"
#include "gen.h"
#include "log.h"
#include "metrics.h"
#include "tls_test_client.h"

#define LISTENER_OK 0   /* backend: the test's Unix socket */
#define LISTENER_DEAD 1 /* backend: a path nobody listens on */
#define LISTENER_LAZY 2 /* backend: the test's Unix socket, backend_connect = data */
/* handshake_timeout: long enough for a loaded sanitizer build, except where the deadline is the test. */
#define HS_TIMEOUT_MS 10000
#define HS_TIMEOUT_SHORT_MS 800
/* Bound on each wait for something that should happen at once (generous: the machine may be loaded). */
#define WAIT_MS 5000

/* --- the fake signer --- */

struct fake_signer {
    int calls, cancels, fail_fast;
    uint64_t next_id, id, cancelled_id;
    sc_cb cb;
    void *arg;
    char key[64];
    uint16_t scheme;
    uint8_t th[48];
    size_t th_len;
    int context;
};

static int fake_call(void *ctx, uint64_t *id_p, Keyless__V1__Request *req, sc_cb cb, void *arg)
{
    struct fake_signer *fs = ctx;
    if (fs->fail_fast) {
        return KL_ERR_IO;
    }
    fs->calls++;
    if (req->body_case != KEYLESS__V1__REQUEST__BODY_SIGN || req->sign->transcript_hash.len > sizeof(fs->th)) {
        return KL_ERR_INVALID;
    }
    snprintf(fs->key, sizeof(fs->key), "%s", req->sign->key);
    fs->scheme = (uint16_t)req->sign->scheme;
    fs->context = (int)req->sign->context;
    memcpy(fs->th, req->sign->transcript_hash.data, req->sign->transcript_hash.len);
    fs->th_len = req->sign->transcript_hash.len;
    fs->cb = cb;
    fs->arg = arg;
    fs->id = *id_p = ++fs->next_id;
    return 0;
}

static void fake_cancel(void *ctx, uint64_t id)
{
    struct fake_signer *fs = ctx;
    fs->cancels++;
    fs->cancelled_id = id;
    if (id == fs->id) {
        fs->cb = NULL;
    }
}

static const struct conn_signer_ops fake_ops = {fake_call, fake_cancel};

static EVP_PKEY *g_key; /* the RFC 8448 server key, matching server-cert.pem */

/* The CertificateVerify signature over what the signer would build (RSA-PSS, SHA-256). */
static int sign_th(const struct fake_signer *fs, uint8_t *sig, size_t *sig_len)
{
    uint8_t content[64 + 34 + 48];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    memset(content, 0x20, 64);
    memcpy(content + 64, "TLS 1.3, server CertificateVerify", 34);
    memcpy(content + 98, fs->th, fs->th_len);
    int good = md != NULL && fs->scheme == TLS_SIG_RSA_PSS_RSAE_SHA256 &&
               EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, g_key) == 1 &&
               EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
               EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
               EVP_DigestSign(md, sig, sig_len, content, 98 + fs->th_len) == 1;
    EVP_MD_CTX_free(md);
    return good ? 0 : -1;
}

/* Answer the pending request: status OK with a real signature, another status, or NULL (no answer). */
static void answer(struct fake_signer *fs, int how)
{
    Keyless__V1__Response resp = KEYLESS__V1__RESPONSE__INIT;
    Keyless__V1__SignResponse sr = KEYLESS__V1__SIGN_RESPONSE__INIT;
    uint8_t sig[512];
    size_t sig_len = sizeof(sig);
    sc_cb cb = fs->cb;
    fs->cb = NULL;
    if (cb == NULL) {
        return;
    }
    resp.id = fs->id;
    resp.body_case = KEYLESS__V1__RESPONSE__BODY_SIGN;
    resp.sign = &sr;
    sr.status = (Keyless__V1__Status)how;
    if (how == KEYLESS__V1__STATUS__OK) {
        if (sign_th(fs, sig, &sig_len) != 0) {
            sig_len = 0;
        }
        sr.signature.data = sig;
        sr.signature.len = sig_len;
    } else {
        sr.message = "refused by the test";
    }
    cb(fs->arg, how < 0 ? NULL : &resp);
}

/* --- the fixture: loop, env, generation, client, backend --- */

struct fx {
    char dir[64], conf[96], backend_path[96];
    struct ev_loop *loop;
    struct conn_env env;
    struct fake_signer fs;
    struct fe_gen *gen;
    struct conn *c; /* NULL once on_close ran */
    int closed;     /* on_close calls */
    int cfd;        /* the client's end */
    int lfd, bfd;   /* the backend's listening socket and the accepted connection */
    struct ttc t;
    struct kl_buf c_in, c_out, c_app; /* client: bytes from the server, to send, decrypted */
    int c_ret;                        /* last ttc_input result */
    int c_eof;                        /* the client's socket read EOF */
    char b_got[256];                  /* what the backend received */
    int b_eof;
};

static void on_close(void *arg, struct conn *c)
{
    struct fx *f = arg;
    f->closed++;
    if (f->c == c) {
        f->c = NULL;
    }
}

static int setup_with(struct fx *f, unsigned hs_timeout_ms)
{
    const char *data = getenv("KL_TESTDATA");
    char err[CONFIG_ERR_LEN], path[512];
    struct config *cfg = NULL;
    memset(f, 0, sizeof(*f));
    f->cfd = f->lfd = f->bfd = -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/kl-test-conn-XXXXXX");
    if (data == NULL || mkdtemp(f->dir) == NULL) {
        return -1;
    }
    snprintf(f->conf, sizeof(f->conf), "%s/frontend.conf", f->dir);
    snprintf(f->backend_path, sizeof(f->backend_path), "%s/backend.sock", f->dir);
    FILE *fp = fopen(f->conf, "w");
    if (fp == NULL) {
        return -1;
    }
    fprintf(fp,
            "[frontend]\nhandshake_timeout = %dms\nidle_timeout = 5\n"
            "[signer]\nsocket = %s/signer.sock\n"
            "[cert rsa]\nchain = %s/rfc8448/server-cert.pem\nkey = rsa-key\n"
            "[listener ok]\nlisten = 127.0.0.1:1\nbackend = unix:%s\n"
            "[listener dead]\nlisten = 127.0.0.1:2\nbackend = unix:%s/nobody.sock\n"
            "[listener lazy]\nlisten = 127.0.0.1:3\nbackend = unix:%s\nbackend_connect = data\n",
            hs_timeout_ms, f->dir, data, f->backend_path, f->dir, f->backend_path);
    fclose(fp);
    if (config_load(&cfg, err, f->conf) != 0 || gen_new(&f->gen, err, sizeof(err), cfg) != 0) {
        diag("%s", err);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/rfc8448/server-rsa-key.pem", data);
    if (g_key == NULL) {
        FILE *kf = fopen(path, "r");
        g_key = kf != NULL ? PEM_read_PrivateKey(kf, NULL, NULL, NULL) : NULL;
        if (kf != NULL) {
            fclose(kf);
        }
    }
    f->loop = ev_loop_new();
    f->env.loop = f->loop;
    f->env.signer = &fake_ops;
    f->env.signer_ctx = &f->fs;
    f->env.scratch = malloc(CONN_RECORD_MAX);
    f->env.on_close = on_close;
    f->env.arg = f;
    kl_buf_init(&f->c_in, 1 << 20);
    kl_buf_init(&f->c_out, 1 << 20);
    kl_buf_init(&f->c_app, 1 << 20);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->backend_path);
    f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (g_key == NULL || f->loop == NULL || f->env.scratch == NULL || f->lfd < 0 ||
        bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(f->lfd, 8) != 0) {
        return -1;
    }
    return 0;
}

static int setup(struct fx *f)
{
    return setup_with(f, HS_TIMEOUT_MS);
}

static void teardown(struct fx *f)
{
    if (f->c != NULL) {
        conn_abort(f->c, "test end");
    }
    if (f->loop != NULL && ev_run_once(f->loop, 0) != 0) {
        diag("ev_run_once failed at teardown");
    }
    ev_loop_free(f->loop);
    free(f->env.scratch);
    gen_unref(f->gen);
    ttc_dispose(&f->t);
    kl_buf_dispose(&f->c_in);
    kl_buf_dispose(&f->c_out);
    kl_buf_dispose(&f->c_app);
    int fds[] = {f->cfd, f->lfd, f->bfd};
    for (size_t i = 0; i < 3; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    unlink(f->backend_path);
    unlink(f->conf);
    rmdir(f->dir);
}

/* Accept a connection on listener (its own socketpair end) and start the test client's handshake. */
static int start(struct fx *f, size_t listener)
{
    int sv[2];
    static const struct ttc_config cc = {.suites = {TLS_AES_128_GCM_SHA256},
                                         .n_suites = 1,
                                         .groups = {TLS_GROUP_X25519},
                                         .n_groups = 1,
                                         .shares = {TLS_GROUP_X25519},
                                         .n_shares = 1,
                                         .sig_algs = {TLS_SIG_RSA_PSS_RSAE_SHA256},
                                         .n_sig_algs = 1};
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) {
        return -1;
    }
    struct sockaddr_un peer = {.sun_family = AF_UNIX};
    f->cfd = sv[0];
    f->c = conn_accept(&f->env, f->gen, listener, 7, sv[1], (struct sockaddr *)&peer, sizeof(peer));
    if (f->c == NULL || ttc_start(&f->t, &cc, &f->c_out) != 0) {
        return -1;
    }
    return 0;
}

/* One round: the loop turns once, then the client sends what it has and reads what came. */
static void turn(struct fx *f)
{
    if (ev_run_once(f->loop, 5) != 0) {
        diag("ev_run_once: %s", strerror(errno));
    }
    if (f->cfd >= 0 && f->c_out.len > 0) {
        ssize_t n = send(f->cfd, f->c_out.base, f->c_out.len, MSG_NOSIGNAL);
        if (n > 0) {
            kl_buf_consume(&f->c_out, (size_t)n);
        }
    }
    while (f->cfd >= 0 && !f->c_eof) {
        uint8_t buf[4096];
        ssize_t n = recv(f->cfd, buf, sizeof(buf), 0);
        if (n == 0) {
            f->c_eof = 1;
        }
        if (n <= 0 || kl_buf_append(&f->c_in, buf, (size_t)n) != 0) {
            break;
        }
    }
    if (f->c_in.len > 0 && (f->c_ret == 0 || f->c_ret == KL_ERR_WANT_READ)) {
        size_t n = f->c_in.len;
        f->c_ret = ttc_input(&f->t, &f->c_out, &f->c_app, f->c_in.base, &n);
        kl_buf_consume(&f->c_in, n);
    }
    if (f->lfd >= 0 && f->bfd < 0) {
        f->bfd = accept4(f->lfd, NULL, NULL, SOCK_NONBLOCK);
    }
}

/* Turn until cond holds or ms pass; the result is cond. */
#define RUN_UNTIL(f, cond, ms)                                                                                         \
    ({                                                                                                                 \
        uint64_t until_ = kl_clock_ms() + (ms);                                                                        \
        while (!(cond) && kl_clock_ms() < until_) {                                                                    \
            turn(f);                                                                                                   \
        }                                                                                                              \
        (cond);                                                                                                        \
    })

/* Collect what the backend got so far into f->b_got; 1 once it holds want. EOF sets f->b_eof. */
static int backend_got(struct fx *f, const char *want)
{
    size_t have = strlen(f->b_got);
    ssize_t n = f->bfd >= 0 ? recv(f->bfd, f->b_got + have, sizeof(f->b_got) - 1 - have, 0) : -1;
    if (n == 0) {
        f->b_eof = 1;
    }
    f->b_got[have + (n > 0 ? (size_t)n : 0)] = '\0';
    return want != NULL && strcmp(f->b_got, want) == 0;
}

static int client_send(struct fx *f, const char *s)
{
    return ttc_send(&f->t, &f->c_out, (const uint8_t *)s, strlen(s));
}

/* Up to the signer's request: the connection waits in CONN_SIGNING. */
static int to_signing(struct fx *f, size_t listener)
{
    return start(f, listener) == 0 && RUN_UNTIL(f, f->fs.calls == 1, WAIT_MS) && f->c != NULL &&
           f->c->state == CONN_SIGNING;
}

/* Does the file at path hold a line matching every word of words, in order? */
static int log_has(const char *path, const char *const *words, size_t n)
{
    char line[512];
    int found = 0;
    FILE *fp = fopen(path, "r");
    while (fp != NULL && !found && fgets(line, sizeof(line), fp) != NULL) {
        const char *at = line;
        size_t i = 0;
        for (; i < n && (at = strstr(at, words[i])) != NULL; i++) {
            at += strlen(words[i]);
        }
        found = i == n;
    }
    if (fp != NULL) {
        fclose(fp);
    }
    return found;
}

static void test_happy_path(void)
{
    struct fx f;
    char trace_path[128];
    uint64_t ok0 = metrics_get(METRIC_HS_OK);
    if (!ok(setup(&f) == 0, "happy: fixture")) {
        teardown(&f);
        return;
    }
    /* --trace on: the engine's steps and the connection's go through the log, into a file. */
    snprintf(trace_path, sizeof(trace_path), "%s/trace.log", f.dir);
    int saved_err = dup(2), tfd = open(trace_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (tfd >= 0) {
        dup2(tfd, 2);
        close(tfd);
    }
    int level = log_level;
    log_level = LOG_LEVEL_INFO;
    f.env.trace = 1;
    f.gen->tls.trace = conn_trace_engine;
    f.gen->tls.trace_arg = &f.env;
    ok(to_signing(&f, LISTENER_OK), "happy: ClientHello -> the connection waits for the signer");
    ok(strcmp(f.fs.key, "rsa-key") == 0 && f.fs.scheme == TLS_SIG_RSA_PSS_RSAE_SHA256 && f.fs.th_len == 32 &&
           f.fs.context == KEYLESS__V1__CONTEXT__SERVER_CERTIFICATE_VERIFY,
       "happy: the request names the configured key, the client's scheme, a SHA-256 transcript hash");
    /* Negative: without the signature nothing goes on. */
    RUN_UNTIL(&f, 0, 50);
    ok(f.t.state != TTC_DONE && f.bfd < 0 && f.c != NULL && f.c->state == CONN_SIGNING,
       "happy: before the answer: no server Finished, no backend connection");
    answer(&f.fs, KEYLESS__V1__STATUS__OK);
    ok(RUN_UNTIL(&f, f.t.state == TTC_DONE, WAIT_MS), "happy: signer answers -> the client verifies the server flight");
    ok(RUN_UNTIL(&f, f.bfd >= 0 && f.c != NULL && f.c->state == CONN_PROXYING, WAIT_MS),
       "happy: client Finished -> established, backend connected");
    is_int(metrics_get(METRIC_HS_OK) - ok0, 1, "happy: counted as a handshake ok");
    ok(client_send(&f, "ping") == 0, "happy: client sends data");
    ok(RUN_UNTIL(&f, backend_got(&f, "ping"), WAIT_MS), "happy: the backend receives the plaintext");
    ok(send(f.bfd, "pong", 4, 0) == 4, "happy: backend answers");
    ok(RUN_UNTIL(&f, f.c_app.len == 4, WAIT_MS) && memcmp(f.c_app.base, "pong", 4) == 0,
       "happy: the client receives it through TLS");
    /* Backend EOF: close_notify to the client, half-close; the client's FIN ends the connection. */
    close(f.bfd);
    f.bfd = -1;
    ok(RUN_UNTIL(&f, f.c_ret == KL_ERR_CLOSED, WAIT_MS), "happy: backend EOF -> close_notify to the client");
    ok(f.c != NULL && f.closed == 0, "happy: still open while the client has not closed");
    shutdown(f.cfd, SHUT_WR);
    ok(RUN_UNTIL(&f, f.closed == 1, WAIT_MS) && f.c == NULL, "happy: client FIN -> closed, on_close called once");
    is_int(f.fs.cancels, 0, "happy: nothing cancelled");
    log_level = level;
    dup2(saved_err, 2);
    close(saved_err);
    static const char *const ch[] = {"info: trace conn=7 ClientHello ", " +", " ms (total "};
    static const char *const signer[] = {"trace conn=7 waiting for signer", "trace conn=7 signer answered "};
    static const char *const est[] = {"trace conn=7 established ", " ms"};
    ok(log_has(trace_path, ch, 3), "happy: --trace: the engine's ClientHello step, timed, through the log");
    ok(log_has(trace_path, signer, 1) && log_has(trace_path, signer + 1, 1), "happy: --trace: the signer's wait");
    ok(log_has(trace_path, est, 2), "happy: --trace: established");
    static const char *const nothing[] = {"trace conn=8"};
    ok(!log_has(trace_path, nothing, 1), "happy: --trace: no line for a connection that does not exist");
    unlink(trace_path);
    teardown(&f);
}

/* The signer refuses or does not answer: internal_error alert, no backend. */
static void test_signer_fails(int how, const char *what, enum metric_id metric)
{
    struct fx f;
    char name[160];
    uint64_t m0 = metrics_get(metric);
    if (!ok(setup(&f) == 0, "signer failure: fixture")) {
        teardown(&f);
        return;
    }
    snprintf(name, sizeof(name), "%s: the connection waits for the signer", what);
    ok(to_signing(&f, LISTENER_OK), name);
    answer(&f.fs, how);
    snprintf(name, sizeof(name), "%s: the client gets an internal_error alert", what);
    ok(RUN_UNTIL(&f, f.c_ret != 0, WAIT_MS) && f.c_ret == KL_ERR_PEER_ALERT(KL_ALERT_INTERNAL_ERROR), name);
    snprintf(name, sizeof(name), "%s: the handshake never completes, no backend connection", what);
    ok(f.t.state != TTC_DONE && f.bfd < 0, name);
    snprintf(name, sizeof(name), "%s: counted", what);
    is_int(metrics_get(metric) - m0, 1, name);
    close(f.cfd);
    f.cfd = -1;
    snprintf(name, sizeof(name), "%s: closed once the client goes", what);
    ok(RUN_UNTIL(&f, f.closed == 1, WAIT_MS), name);
    teardown(&f);
}

/* No answer at all: the connection's own deadline ends it and cancels the request. */
static void test_signer_timeout(void)
{
    struct fx f;
    uint64_t t0 = metrics_get(METRIC_HS_TIMEOUT);
    if (!ok(setup_with(&f, HS_TIMEOUT_SHORT_MS) == 0, "timeout: fixture")) {
        teardown(&f);
        return;
    }
    /* The deadline runs from the loop's clock at the accept (no turn runs before it). */
    uint64_t accepted = ev_now(f.loop);
    ok(to_signing(&f, LISTENER_OK), "timeout: the connection waits for the signer");
    uint64_t id = f.fs.id;
    if (kl_clock_ms() - accepted < HS_TIMEOUT_SHORT_MS / 2) {
        ok(f.c != NULL && f.fs.cancels == 0, "timeout: still waiting before handshake_timeout");
    } else {
        skip("timeout: still waiting before handshake_timeout", "the machine is too slow to see it");
    }
    ok(RUN_UNTIL(&f, f.closed == 1, HS_TIMEOUT_SHORT_MS + WAIT_MS), "timeout: closed by handshake_timeout");
    ok(kl_clock_ms() - accepted >= HS_TIMEOUT_SHORT_MS, "timeout: not before the deadline");
    ok(f.fs.cancels == 1 && f.fs.cancelled_id == id, "timeout: the pending request is cancelled");
    is_int(metrics_get(METRIC_HS_TIMEOUT) - t0, 1, "timeout: counted as a handshake timeout");
    ok(RUN_UNTIL(&f, f.c_eof, WAIT_MS) && f.t.state != TTC_DONE, "timeout: the client sees EOF, no handshake");
    teardown(&f);
}

/* The signer is away (call fails fast): internal_error at once. */
static void test_signer_away(void)
{
    struct fx f;
    if (!ok(setup(&f) == 0, "signer away: fixture")) {
        teardown(&f);
        return;
    }
    f.fs.fail_fast = 1;
    ok(start(&f, LISTENER_OK) == 0, "signer away: accepted");
    ok(RUN_UNTIL(&f, f.c_ret != 0, WAIT_MS) && f.c_ret == KL_ERR_PEER_ALERT(KL_ALERT_INTERNAL_ERROR),
       "signer away: internal_error alert without waiting");
    ok(f.fs.calls == 0 && f.fs.cancels == 0 && f.bfd < 0, "signer away: no request pending, no backend");
    teardown(&f);
}

static void test_garbage(void)
{
    struct fx f;
    uint64_t a0 = metrics_get(METRIC_HS_ALERT);
    if (!ok(setup(&f) == 0, "garbage: fixture")) {
        teardown(&f);
        return;
    }
    ok(start(&f, LISTENER_OK) == 0, "garbage: accepted");
    kl_buf_reset(&f.c_out); /* not the ClientHello: an HTTP request */
    ok(kl_buf_append(&f.c_out, (const uint8_t *)"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27) == 0, "garbage: queued");
    /* The engine answers with a plaintext alert record: 15 03 03 00 02 02 desc. */
    ok(RUN_UNTIL(&f, f.c_in.len >= 7 || f.c_ret != 0, WAIT_MS), "garbage: the server answers");
    ok(f.c_ret != 0 && f.c_ret != KL_ERR_CLOSED, "garbage: the client reads a fatal alert");
    ok(f.fs.calls == 0, "garbage: the signer is never asked");
    is_int(metrics_get(METRIC_HS_ALERT) - a0, 1, "garbage: counted as an alert");
    close(f.cfd);
    f.cfd = -1;
    ok(RUN_UNTIL(&f, f.closed == 1, WAIT_MS), "garbage: closed");
    teardown(&f);
}

static void test_client_leaves_while_signing(void)
{
    struct fx f;
    if (!ok(setup(&f) == 0, "client leaves: fixture")) {
        teardown(&f);
        return;
    }
    ok(to_signing(&f, LISTENER_OK), "client leaves: the connection waits for the signer");
    uint64_t id = f.fs.id;
    ok(f.fs.cancels == 0, "client leaves: nothing cancelled while the client is there");
    close(f.cfd);
    f.cfd = -1;
    ok(RUN_UNTIL(&f, f.closed == 1, WAIT_MS), "client leaves: closed at once");
    ok(f.fs.cancels == 1 && f.fs.cancelled_id == id && f.fs.cb == NULL,
       "client leaves: the request is cancelled (its answer can no longer reach the connection)");
    teardown(&f);
}

static void test_backend_refused(void)
{
    struct fx f;
    uint64_t e0 = metrics_get(METRIC_BACKEND_ERRORS);
    if (!ok(setup(&f) == 0, "backend refused: fixture")) {
        teardown(&f);
        return;
    }
    ok(to_signing(&f, LISTENER_DEAD), "backend refused: the connection waits for the signer");
    answer(&f.fs, KEYLESS__V1__STATUS__OK);
    ok(RUN_UNTIL(&f, f.t.state == TTC_DONE, WAIT_MS), "backend refused: the handshake completes");
    ok(RUN_UNTIL(&f, f.c_ret == KL_ERR_CLOSED, WAIT_MS), "backend refused: close_notify to the client");
    is_int(metrics_get(METRIC_BACKEND_ERRORS) - e0, 1, "backend refused: counted as a backend error");
    ok(f.bfd < 0, "backend refused: the test backend (another listener's) got nothing");
    shutdown(f.cfd, SHUT_WR);
    ok(RUN_UNTIL(&f, f.closed == 1, WAIT_MS), "backend refused: closed");
    teardown(&f);
}

/* The backend closes before the client said anything: the client's later data is not relayed. */
static void test_backend_eof_first(void)
{
    struct fx f;
    if (!ok(setup(&f) == 0, "backend EOF first: fixture")) {
        teardown(&f);
        return;
    }
    ok(to_signing(&f, LISTENER_OK), "backend EOF first: waits for the signer");
    answer(&f.fs, KEYLESS__V1__STATUS__OK);
    ok(RUN_UNTIL(&f, f.bfd >= 0 && f.c != NULL && f.c->state == CONN_PROXYING, WAIT_MS),
       "backend EOF first: established, backend connected");
    shutdown(f.bfd, SHUT_WR);
    ok(RUN_UNTIL(&f, f.c_ret == KL_ERR_CLOSED, WAIT_MS), "backend EOF first: close_notify to the client");
    ok(f.c != NULL && f.closed == 0, "backend EOF first: the client's direction stays open");
    ok(client_send(&f, "late") == 0, "backend EOF first: the client still sends");
    ok(RUN_UNTIL(&f, backend_got(&f, "late"), WAIT_MS),
       "backend EOF first: ... and the backend, which only half-closed, gets it");
    shutdown(f.cfd, SHUT_WR);
    ok(RUN_UNTIL(&f, f.closed == 1, WAIT_MS), "backend EOF first: client FIN -> closed");
    ok(RUN_UNTIL(&f, (backend_got(&f, NULL), f.b_eof), WAIT_MS) && strcmp(f.b_got, "late") == 0,
       "backend EOF first: the backend sees EOF after exactly the client's bytes");
    teardown(&f);
}

/* Up to an established connection on listener (the signer answered, the client verified). */
static int to_established(struct fx *f, size_t listener)
{
    if (!to_signing(f, listener)) {
        return 0;
    }
    answer(&f->fs, KEYLESS__V1__STATUS__OK);
    return RUN_UNTIL(f, f->t.state == TTC_DONE && f->c != NULL && f->c->established, WAIT_MS);
}

/* backend_connect = handshake (the default): the backend is connected before the client says a
   word, so a server-speaks-first backend (SMTP, IMAP) gets its banner to the client. */
static void test_banner_first(void)
{
    struct fx f;
    if (!ok(setup(&f) == 0, "banner: fixture")) {
        teardown(&f);
        return;
    }
    ok(to_established(&f, LISTENER_OK), "banner: established");
    ok(RUN_UNTIL(&f, f.bfd >= 0, WAIT_MS), "banner: backend connected without a byte from the client");
    ok(f.bfd >= 0 && send(f.bfd, "220 ready\r\n", 11, 0) == 11, "banner: the backend speaks first");
    ok(RUN_UNTIL(&f, f.c_app.len == 11, WAIT_MS) && memcmp(f.c_app.base, "220 ready\r\n", 11) == 0,
       "banner: the client receives the banner");
    teardown(&f);
}

/* backend_connect = data: no backend until the first application byte, then proxying as usual. */
static void test_data_connect(void)
{
    struct fx f;
    uint64_t ok0 = metrics_get(METRIC_HS_OK);
    if (!ok(setup(&f) == 0, "data: fixture")) {
        teardown(&f);
        return;
    }
    ok(to_established(&f, LISTENER_LAZY), "data: established");
    is_int(metrics_get(METRIC_HS_OK) - ok0, 1, "data: counted as a handshake ok");
    RUN_UNTIL(&f, 0, 100);
    ok(f.bfd < 0 && f.c != NULL && f.c->state == CONN_PROXYING && f.c->backend_wait && f.c->bfd < 0,
       "data: established and quiet -> no backend connection");
    ok(client_send(&f, "ping") == 0, "data: client sends data");
    ok(RUN_UNTIL(&f, backend_got(&f, "ping"), WAIT_MS), "data: the first byte connects the backend, which gets it");
    ok(f.c != NULL && !f.c->backend_wait, "data: no longer waiting for a byte");
    ok(send(f.bfd, "pong", 4, 0) == 4, "data: backend answers");
    ok(RUN_UNTIL(&f, f.c_app.len == 4, WAIT_MS) && memcmp(f.c_app.base, "pong", 4) == 0,
       "data: the client receives it through TLS");
    shutdown(f.cfd, SHUT_WR);
    ok(RUN_UNTIL(&f, (backend_got(&f, NULL), f.b_eof), WAIT_MS) && strcmp(f.b_got, "ping") == 0,
       "data: client FIN -> the backend sees EOF after exactly the client's bytes");
    close(f.bfd);
    f.bfd = -1;
    ok(RUN_UNTIL(&f, f.closed == 1, WAIT_MS), "data: backend EOF -> closed");
    teardown(&f);
}

/* backend_connect = data and the client leaves after the handshake: close_notify back, closed,
   and the backend never sees a connection. */
static void test_data_handshake_only(void)
{
    struct fx f;
    uint64_t e0 = metrics_get(METRIC_BACKEND_ERRORS);
    if (!ok(setup(&f) == 0, "handshake only: fixture")) {
        teardown(&f);
        return;
    }
    ok(to_established(&f, LISTENER_LAZY), "handshake only: established");
    shutdown(f.cfd, SHUT_WR);
    ok(RUN_UNTIL(&f, f.c_ret == KL_ERR_CLOSED, WAIT_MS), "handshake only: client FIN -> close_notify to the client");
    ok(RUN_UNTIL(&f, f.closed == 1 && f.c_eof, WAIT_MS), "handshake only: closed (the client sees EOF)");
    RUN_UNTIL(&f, 0, 50);
    ok(f.bfd < 0, "handshake only: the backend never got a connection");
    is_int(metrics_get(METRIC_BACKEND_ERRORS) - e0, 0, "handshake only: no backend error counted");
    teardown(&f);
}

int main(void)
{
    log_level = LOG_LEVEL_WARN;
    uint64_t t0 = kl_clock_ms();
    test_happy_path();
    test_signer_fails(KEYLESS__V1__STATUS__HSM_ERROR, "signer error status", METRIC_HS_SIGNER_ERROR);
    test_signer_fails(-1, "signer no answer (deadline in the client)", METRIC_HS_SIGNER_ERROR);
    test_signer_timeout();
    test_signer_away();
    test_garbage();
    test_client_leaves_while_signing();
    test_backend_refused();
    test_backend_eof_first();
    test_banner_first();
    test_data_connect();
    test_data_handshake_only();
    EVP_PKEY_free(g_key);
    ok(kl_clock_ms() - t0 < 30000, "the whole test ran in under 30 s");
    return kl_test_done();
}
