#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include "conn.h"
#include "log.h"
#include "metrics.h"
#include "backend.h"
#include "gen.h"
#include "tls/tls.h"
#include "clock.h"

/* The server's first flight (certificate chain included) and a few records of slack. */
#define COUT_MAX (CONN_BUF_HIGH + 4 * CONN_RECORD_MAX + 128 * 1024)
/* One engine call decrypts at most one read buffer's worth of records. */
#define BOUT_MAX (CONN_BUF_HIGH + 2 * CONN_RECORD_MAX + 1024)
#define BACKEND_CHUNK 16384
#define READ_ROUNDS 4

static void conn_update(struct conn *c);
static void conn_close(struct conn *c, const char *why);
static void to_closing(struct conn *c);
static void process_rbuf(struct conn *c);
static void backend_cb(struct ev_loop *loop, struct ev_io *io, unsigned revents);
static void backend_start(struct conn *c);
static void on_backend_eof(struct conn *c);

static const struct config_listener *lconf(const struct conn *c)
{
    return &c->gen->cfg->listeners[c->listener];
}

static int is_closed(const struct conn *c)
{
    return c->cfd < 0;
}

/* cout and bout hold their unsent bytes at [off, len): a partial send advances the offset
   instead of moving the rest to the front; the sent prefix is dropped when the buffer is
   next appended to (compact_cout, compact_bout). Outside flush_*, len > 0 implies off < len,
   so "len == 0" still means "nothing to send". */
static size_t cout_pending(const struct conn *c)
{
    return c->cout.len - c->cout_off;
}

static size_t bout_pending(const struct conn *c)
{
    return c->bout.len - c->bout_off;
}

static void compact_cout(struct conn *c)
{
    if (c->cout_off > 0) {
        kl_buf_consume_nowipe(&c->cout, c->cout_off); /* TLS records: nothing secret */
        c->cout_off = 0;
    }
}

static void compact_bout(struct conn *c)
{
    if (c->bout_off > 0) {
        kl_buf_consume(&c->bout, c->bout_off); /* plaintext: the freed tail is wiped */
        c->bout_off = 0;
    }
}

static void drop_bout(struct conn *c)
{
    kl_buf_dispose(&c->bout);
    c->bout_off = 0;
}

/* Free the buffers that are allocated but empty (kept between rounds while proxying). */
static void release_bufs(struct conn *c)
{
    if (c->cout.len == 0) {
        kl_buf_dispose_nowipe(&c->cout);
        c->cout_off = 0;
    }
    if (c->bout.len == 0) {
        drop_bout(c);
    }
    if (c->rbuf.len == 0) {
        kl_buf_dispose_nowipe(&c->rbuf);
    }
    c->bufs_kept = 0;
}

static void arm_timer(struct conn *c, uint32_t ms)
{
    if (ev_timer_start(c->env->loop, &c->timer, ms) != 0) {
        /* No memory for the heap: a connection without a deadline is not allowed to live. */
        conn_close(c, "out of memory (timer)");
    }
}

/* --- flushing --- */

static int flush_client(struct conn *c)
{
    while (c->cout_off < c->cout.len) {
        ssize_t n = send(c->cfd, c->cout.base + c->cout_off, c->cout.len - c->cout_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EAGAIN ? 0 : KL_ERR_IO;
        }
        c->cout_off += (size_t)n;
        metrics_add(METRIC_BYTES_OUT, n);
        c->bytes_out += (uint64_t)n;
        c->last_activity_ms = ev_now(c->env->loop);
    }
    /* All out. cout only ever holds TLS records, which need no wiping. While proxying the
       allocation is kept for the next round (freeing and faulting it in again per 64 KiB was
       most of the bulk cost); the timer frees it once the connection has been quiet for
       CONN_BUF_KEEP_MS. Before that, idle connections keep no buffer. */
    c->cout_off = 0;
    if (c->state == CONN_PROXYING) {
        kl_buf_reset_nowipe(&c->cout);
    } else {
        kl_buf_dispose_nowipe(&c->cout);
    }
    return 0;
}

static int flush_backend(struct conn *c)
{
    if (c->bfd < 0 || c->state != CONN_PROXYING) {
        return 0;
    }
    while (c->bout_off < c->bout.len) {
        ssize_t n = send(c->bfd, c->bout.base + c->bout_off, c->bout.len - c->bout_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EAGAIN ? 0 : KL_ERR_IO;
        }
        c->bout_off += (size_t)n;
        metrics_add(METRIC_BACKEND_BYTES_OUT, n);
        c->last_activity_ms = ev_now(c->env->loop);
    }
    /* Plaintext: wiped now, the allocation kept for the next round (see flush_client). */
    c->bout_off = 0;
    kl_buf_reset(&c->bout);
    return 0;
}

static void close_backend(struct conn *c)
{
    if (c->bfd >= 0) {
        ev_io_close(c->env->loop, &c->bio);
        close(c->bfd);
        c->bfd = -1;
    }
}

/* Half-closes and the end of the connection once both directions are done. */
static void conn_progress(struct conn *c)
{
    if (is_closed(c)) {
        return;
    }
    if (c->state == CONN_CLOSING) {
        if (c->cout.len == 0 && !c->client_shut) {
            /* Our last bytes (close_notify or an alert) are out: half-close, then wait
               briefly for the client's FIN so that closing does not reset those bytes. */
            shutdown(c->cfd, SHUT_WR);
            c->client_shut = 1;
            arm_timer(c, CONN_LINGER_MS);
        }
        return;
    }
    if (c->state != CONN_PROXYING) {
        return;
    }
    if (c->backend_wait && c->client_eof && !c->backend_eof) {
        /* backend_connect = data and the client ended without sending a byte: no backend to wait
           for, so our close_notify goes out now (RFC 8446 6.1), as a backend's end would send it. */
        on_backend_eof(c);
        if (flush_client(c) != 0) {
            conn_close(c, "client write error");
            return;
        }
    }
    /* Both directions done and everything out: close (a FIN either way; no shutdown first). */
    if (c->client_eof && c->backend_eof && c->cout.len == 0 && c->bfd < 0) {
        conn_close(c, "done");
        return;
    }
    /* RFC 8446 6.1: close_notify closes the sender's write side only; mirror it onto TCP. */
    if (c->backend_eof && c->cout.len == 0 && !c->client_shut) {
        shutdown(c->cfd, SHUT_WR);
        c->client_shut = 1;
    }
    if (c->client_eof && c->bout.len == 0 && c->bfd >= 0 && !c->backend_shut) {
        shutdown(c->bfd, SHUT_WR);
        c->backend_shut = 1;
    }
    if (c->backend_eof && c->backend_shut) {
        close_backend(c);
    }
    if (c->client_eof && c->backend_eof && c->cout.len == 0 && (c->bout.len == 0 || c->bfd < 0)) {
        conn_close(c, "done");
        return;
    }
    if (bout_pending(c) < CONN_BUF_HIGH && c->rbuf.len > 0 && !c->client_eof) {
        process_rbuf(c);
    }
}

/* --- the signature --- */

/* One --trace line: the step's event, its time since the previous step and since accept. */
static void trace_line(struct conn *c, const char *event)
{
    uint64_t now = kl_clock_us();
    log_info("trace conn=%llu %-22s +%.3f ms (total %.3f ms)", (unsigned long long)c->id, event,
             (double)(now - c->step_us) / 1000.0, (double)(now - c->start_us) / 1000.0);
    c->step_us = now;
}

static void trace_step(struct conn *c, const char *event)
{
    if (c->env->trace) {
        trace_line(c, event);
    }
}

void conn_trace_engine(void *arg, uint64_t conn_id, const char *event)
{
    struct conn_env *env = arg;
    struct conn *c = env->tracing;
    if (c == NULL || c->id != conn_id) {
        log_info("trace conn=%llu %s", (unsigned long long)conn_id, event);
        return;
    }
    trace_line(c, event);
}

static void fail_tls(struct conn *c, int err)
{
    if (!c->counted_hs) {
        c->counted_hs = 1;
        metrics_add(METRIC_HS_ALERT, 1);
    }
    if (err == KL_ERR_CLOSED) {
        log_info("conn=%llu closed by the client during the handshake", (unsigned long long)c->id);
    } else if (err <= KL_ERR_PEER_ALERT(0) && err > KL_ERR_PEER_ALERT(0x100)) {
        log_info("conn=%llu client sent alert %d", (unsigned long long)c->id, (-err) & 0xff);
    } else {
        log_info("conn=%llu TLS failure: %s (alert %d)", (unsigned long long)c->id, kl_err_str(err), kl_err_alert(err));
    }
    trace_step(c, "failed");
    to_closing(c);
}

static void finish_sign(struct conn *c, const uint8_t *sig, size_t sig_len, const char *why)
{
    c->signer_us = kl_clock_us() - c->sign_start_us;
    if (c->env->trace) {
        char ev[64];
        snprintf(ev, sizeof(ev), "signer %s", sig != NULL ? "answered" : "failed");
        trace_step(c, ev);
    }
    c->state = CONN_HANDSHAKE;
    c->env->tracing = c;
    int r = tls_conn_sign_done(c->tls, &c->cout, sig, sig_len);
    c->env->tracing = NULL;
    if (sig == NULL || r != 0) {
        if (!c->counted_hs) {
            c->counted_hs = 1;
            metrics_add(sig == NULL ? METRIC_HS_SIGNER_ERROR : METRIC_HS_ALERT, 1);
        }
        log_warnx("conn=%llu handshake failed: %s", (unsigned long long)c->id, why != NULL ? why : kl_err_str(r));
        to_closing(c);
        return;
    }
    if (flush_client(c) != 0) {
        conn_close(c, "client write error");
        return;
    }
    process_rbuf(c);
    if (!is_closed(c)) {
        conn_update(c);
    }
}

static void sign_cb(void *arg, const Keyless__V1__Response *resp)
{
    struct conn *c = arg;
    char why[160];
    c->sign_id = 0;
    if (resp == NULL) {
        finish_sign(c, NULL, 0, "signer: no answer (deadline passed or signer gone)");
    } else if (resp->body_case != KEYLESS__V1__RESPONSE__BODY_SIGN || resp->sign == NULL) {
        finish_sign(c, NULL, 0, "signer: answer is not a SignResponse");
    } else if (resp->sign->status != KEYLESS__V1__STATUS__OK) {
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(&keyless__v1__status__descriptor, (int)resp->sign->status);
        snprintf(why, sizeof(why), "signer refused: %s %s", v != NULL ? v->name : "?",
                 resp->sign->message != NULL ? resp->sign->message : "");
        finish_sign(c, NULL, 0, why);
    } else {
        finish_sign(c, resp->sign->signature.data, resp->sign->signature.len, NULL);
    }
}

static void start_sign(struct conn *c)
{
    struct tls_sign_request sr;
    trace_step(c, "waiting for signer");
    if (tls_conn_sign_request(c->tls, &sr) != 0) {
        finish_sign(c, NULL, 0, "engine has no sign request");
        return;
    }
    Keyless__V1__Request req = KEYLESS__V1__REQUEST__INIT;
    Keyless__V1__SignRequest s = KEYLESS__V1__SIGN_REQUEST__INIT;
    s.key = (char *)sr.key_name;
    s.scheme = sr.scheme;
    s.context = KEYLESS__V1__CONTEXT__SERVER_CERTIFICATE_VERIFY;
    s.transcript_hash.data = sr.transcript_hash;
    s.transcript_hash.len = sr.transcript_hash_len;
    s.server_name = (char *)(sr.server_name != NULL ? sr.server_name : "");
    s.client_address = c->peer_text;
    s.connection_id = c->id;
    req.body_case = KEYLESS__V1__REQUEST__BODY_SIGN;
    req.sign = &s;
    c->state = CONN_SIGNING;
    c->sign_start_us = kl_clock_us();
    metrics_add(METRIC_SIGN_REQUESTS, 1);
    int r = c->env->signer->call(c->env->signer_ctx, &c->sign_id, &req, sign_cb, c);
    if (r != 0) {
        c->sign_id = 0;
        /* Fail fast: the signer is away or max_pending requests already wait. */
        finish_sign(c, NULL, 0,
                    r == KL_ERR_OVERFLOW ? "signer: too many pending requests (max_pending)"
                    : r == KL_ERR_DENIED ? "signer: its keys are not confirmed for the certificates"
                                         : "signer: not connected");
    }
}

/* --- the backend --- */

static void backend_failed(struct conn *c, const char *why)
{
    metrics_add(METRIC_BACKEND_ERRORS, 1);
    log_warnx("conn=%llu backend %s: %s", (unsigned long long)c->id, lconf(c)->backend.text, why);
    to_closing(c);
}

static void backend_connected(struct conn *c)
{
    c->state = CONN_PROXYING;
    c->last_activity_ms = ev_now(c->env->loop);
    arm_timer(c, c->gen->cfg->idle_timeout_ms);
    log_debug("conn=%llu backend %s connected", (unsigned long long)c->id, lconf(c)->backend.text);
}

static void on_established(struct conn *c)
{
    const struct config_listener *l = lconf(c);
    c->established = 1;
    c->counted_hs = 1;
    c->resumed = tls_conn_resumed(c->tls) != 0;
    /* The client's Finished came after its EndOfEarlyData: the early byte count is final. */
    c->early = tls_conn_early_data_accepted(c->tls) != 0;
    c->early_len = c->early ? tls_conn_early_data_len(c->tls) : 0;
    metrics_add(METRIC_HS_OK, 1);
    if (c->resumed) {
        metrics_add(METRIC_HS_RESUMED, 1);
    }
    if (c->early) {
        metrics_add(METRIC_EARLY_DATA_ACCEPTED, 1);
        metrics_add(METRIC_EARLY_DATA_BYTES, (int64_t)c->early_len);
    }
    trace_step(c, "established");
    log_info("conn=%llu handshake ok from %s sni=%s alpn=%s suite=0x%04x group=0x%04x scheme=0x%04x resumed=%s "
             "early_data=%s in %.1f ms",
             (unsigned long long)c->id, c->peer_text,
             tls_conn_server_name(c->tls)[0] ? tls_conn_server_name(c->tls) : "-",
             tls_conn_alpn(c->tls)[0] ? tls_conn_alpn(c->tls) : "-", tls_conn_cipher_suite(c->tls),
             tls_conn_group(c->tls), tls_conn_scheme(c->tls), c->resumed ? "yes" : "no", c->early ? "accepted" : "no",
             (double)(kl_clock_us() - c->start_us) / 1000.0);
    const struct tls_peer_cert *pc = tls_conn_peer_cert(c->tls);
    if (l->client_auth != 0) {
        char fp[65];
        for (size_t i = 0; i < 32; i++) {
            snprintf(fp + 2 * i, 3, "%02x", pc->sha256[i]);
        }
        if (pc->present) {
            log_info("conn=%llu client certificate cn=\"%s\" san=\"%s\" sha256=%s", (unsigned long long)c->id,
                     pc->subject_cn, pc->san, fp);
        } else {
            log_info("conn=%llu no client certificate (client_auth optional)", (unsigned long long)c->id);
        }
    }
    if (l->backend_connect == CONFIG_BACKEND_CONNECT_DATA && c->bout.len == 0) {
        /* backend_connect = data, and no 0-RTT bytes wait: the backend is connected when the
           first application byte arrives (feed), as an HTTP proxy does. The connection counts
           as proxying from now on (idle timeout, close_notify handling), without a backend. */
        c->backend_wait = 1;
        c->state = CONN_PROXYING;
        c->last_activity_ms = ev_now(c->env->loop);
        arm_timer(c, c->gen->cfg->idle_timeout_ms);
        return;
    }
    backend_start(c);
}

/*
 * Connect to the backend: the PROXY v2 header (when configured) goes in front of what bout
 * already holds (0-RTT bytes, or the first application bytes with backend_connect = data).
 */
static void backend_start(struct conn *c)
{
    const struct config_listener *l = lconf(c);
    c->backend_wait = 0;
    c->state = CONN_CONNECTING;
    if (l->proxy_protocol) {
        /* The local address is only needed here: no getsockname() per accept otherwise. */
        socklen_t llen = sizeof(c->local);
        if (getsockname(c->cfd, (struct sockaddr *)&c->local, &llen) != 0) {
            memset(&c->local, 0, sizeof(c->local));
        }
        const struct tls_peer_cert *pc = tls_conn_peer_cert(c->tls);
        struct proxy_client_cert cert = {pc->present, pc->sha256, pc->subject_cn, pc->subject, pc->san};
        struct kl_buf h;
        kl_buf_init(&h, BOUT_MAX);
        /* Listeners with client authentication also tell the backend who the client is (PP2_TYPE_SSL). */
        /* With 0-RTT accepted, PP2_TYPE_KL_EARLY_DATA counts the early bytes that follow the header. */
        if (proxy_v2_header_early(&h, (struct sockaddr *)&c->peer, (struct sockaddr *)&c->local,
                                  tls_conn_server_name(c->tls), tls_conn_alpn(c->tls),
                                  l->client_auth != 0 ? &cert : NULL, c->early ? &c->early_len : NULL) != 0 ||
            kl_buf_append(&h, c->bout.base, c->bout.len) != 0) {
            kl_buf_dispose(&h);
            backend_failed(c, "cannot build the PROXY header");
            return;
        }
        kl_buf_dispose(&c->bout);
        c->bout = h;
    }
    int r = proxy_connect_start(&c->bfd, (const struct sockaddr *)&l->backend.ss, l->backend.len);
    if (r == KL_ERR_IO) {
        c->bfd = -1;
        backend_failed(c, strerror(errno));
        return;
    }
    ev_io_init(&c->bio, c->bfd, backend_cb, c);
    if (r == 0) {
        backend_connected(c);
    } else {
        arm_timer(c, l->backend_connect_timeout_ms);
    }
}

static void on_client_eof(struct conn *c)
{
    c->client_eof = 1;
    kl_buf_dispose_nowipe(&c->rbuf);
}

static void on_backend_eof(struct conn *c)
{
    if (c->backend_eof) {
        return;
    }
    c->backend_eof = 1;
    if (tls_conn_close(c->tls, &c->cout) != 0) {
        log_debug("conn=%llu no close_notify possible", (unsigned long long)c->id);
    }
}

/* The backend stopped reading for good: nothing more can reach it, so both directions end
   (close_notify to the client once its pending records are out). */
static void backend_write_failed(struct conn *c)
{
    log_info("conn=%llu backend write: %s", (unsigned long long)c->id, strerror(errno));
    close_backend(c);
    drop_bout(c);
    on_client_eof(c);
    on_backend_eof(c);
}

/* --- the client --- */

/* Feed data to the engine while it may take more; *used_p gets the bytes consumed. */
static void feed(struct conn *c, const uint8_t *data, size_t len, size_t *used_p)
{
    size_t off = 0;
    compact_bout(c);
    while (off < len && !is_closed(c) && !c->client_eof && bout_pending(c) < CONN_BUF_HIGH &&
           (c->state == CONN_HANDSHAKE || c->state == CONN_CONNECTING || c->state == CONN_PROXYING)) {
        size_t n = len - off;
        if (c->established && kl_buf_reserve(&c->bout, n) != 0) {
            conn_close(c, "out of memory");
            break;
        }
        size_t app_before = c->bout.len;
        c->env->tracing = c;
        int r = tls_conn_input(c->tls, &c->cout, &c->bout, data + off, &n);
        c->env->tracing = NULL;
        off += n;
        /* Only application data is activity: KeyUpdates, empty records and warning alerts
           (capped by the engine, tls.h) append nothing to bout and must not keep a connection alive. */
        if ((c->state == CONN_PROXYING || c->state == CONN_CONNECTING) && c->bout.len > app_before) {
            c->last_activity_ms = ev_now(c->env->loop);
        }
        if (r == KL_ERR_ASYNC) {
            start_sign(c);
            break;
        }
        /* Before the close_notify check: a client may send its Finished (after 0-RTT, its
           EndOfEarlyData too) and close_notify in one flight; the handshake completed, and
           its (early) data must still reach the backend. */
        if ((r == 0 || r == KL_ERR_WANT_READ || r == KL_ERR_CLOSED) && !c->established &&
            tls_conn_established(c->tls)) {
            on_established(c);
        }
        /* backend_connect = data: the first application byte connects the backend. */
        if ((r == 0 || r == KL_ERR_WANT_READ || r == KL_ERR_CLOSED) && c->backend_wait && bout_pending(c) > 0 &&
            c->state == CONN_PROXYING) {
            backend_start(c);
        }
        if (r == KL_ERR_CLOSED && c->established) {
            on_client_eof(c);
            break;
        }
        if (r != 0 && r != KL_ERR_WANT_READ) {
            fail_tls(c, r);
            break;
        }
        if (n == 0) {
            break; /* a partial record: wait for more bytes */
        }
    }
    *used_p = off;
}

static void process_rbuf(struct conn *c)
{
    if (c->rbuf.len == 0) {
        return;
    }
    size_t used = 0;
    feed(c, c->rbuf.base, c->rbuf.len, &used);
    /* rbuf holds TLS records from the wire: nothing to wipe. Kept while proxying (see flush_client). */
    kl_buf_consume_nowipe(&c->rbuf, used);
    if (c->rbuf.len == 0 && c->state != CONN_PROXYING) {
        kl_buf_dispose_nowipe(&c->rbuf);
    }
}

static int want_client_read(const struct conn *c)
{
    switch (c->state) {
    case CONN_HANDSHAKE:
    case CONN_SIGNING: /* kept in rbuf until the signature is in (finish_sign) */
        return c->rbuf.len < CONN_RECORD_MAX;
    case CONN_CONNECTING:
    case CONN_PROXYING:
        return !c->client_eof && bout_pending(c) < CONN_BUF_HIGH && c->rbuf.len < CONN_RECORD_MAX;
    case CONN_CLOSING:
        return c->client_shut;
    default:
        return 0;
    }
}

static void client_read(struct conn *c)
{
    uint8_t *scratch = c->env->scratch;
    for (int round = 0; round < READ_ROUNDS && !is_closed(c) && want_client_read(c); round++) {
        int use_scratch = c->rbuf.len == 0 || c->state == CONN_CLOSING;
        uint8_t *dst;
        size_t room;
        if (use_scratch) {
            dst = scratch;
            room = CONN_RECORD_MAX;
        } else {
            if (kl_buf_reserve(&c->rbuf, CONN_RECORD_MAX - c->rbuf.len) != 0) {
                conn_close(c, "out of memory");
                return;
            }
            dst = c->rbuf.base + c->rbuf.len;
            room = CONN_RECORD_MAX - c->rbuf.len;
        }
        ssize_t n = recv(c->cfd, dst, room, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                break;
            }
            conn_close(c, c->established ? "client read error" : "client read error during the handshake");
            return;
        }
        if (n == 0) {
            if (c->state == CONN_PROXYING || c->state == CONN_CONNECTING) {
                /* FIN without close_notify: treat as the end of the client's data. */
                on_client_eof(c);
                return;
            }
            if (c->state == CONN_HANDSHAKE && !c->counted_hs) {
                c->counted_hs = 1;
                metrics_add(METRIC_HS_CLOSED, 1);
            }
            conn_close(c, "client closed");
            return;
        }
        metrics_add(METRIC_BYTES_IN, n);
        c->bytes_in += (uint64_t)n;
        if (c->state == CONN_CLOSING) {
            continue; /* draining until the client's FIN */
        }
        if (use_scratch) {
            size_t used = 0;
            feed(c, dst, (size_t)n, &used);
            if (used < (size_t)n && !is_closed(c) && c->state != CONN_CLOSING &&
                kl_buf_append(&c->rbuf, dst + used, (size_t)n - used) != 0) {
                conn_close(c, "partial record does not fit");
                return;
            }
        } else {
            c->rbuf.len += (size_t)n;
            process_rbuf(c);
        }
        if ((size_t)n < room) {
            break;
        }
    }
}

static void client_cb(struct ev_loop *loop, struct ev_io *io, unsigned revents)
{
    struct conn *c = io->owner;
    if ((revents & EV_WRITE) && flush_client(c) != 0) {
        conn_close(c, "client write error");
        return;
    }
    if (revents & (EV_READ | EV_RDHUP | EV_ERROR)) {
        if (c->state == CONN_SIGNING && (revents & (EV_RDHUP | EV_ERROR))) {
            /* The client went away while the signer works (its bytes, if any, are moot). */
            if (!c->counted_hs) {
                c->counted_hs = 1;
                metrics_add(METRIC_HS_CLOSED, 1);
            }
            log_info("conn=%llu client went away while waiting for the signer: request cancelled",
                     (unsigned long long)c->id);
            conn_close(c, "client went away while waiting for the signer");
            return;
        }
        if (want_client_read(c) && (revents & EV_READ)) {
            client_read(c);
        } else if (revents & (EV_RDHUP | EV_ERROR)) {
            conn_close(c, "client hung up");
            return;
        }
    }
    /* Write what the input produced now rather than after another epoll round trip (while the
       signer works the flight is not complete yet: it goes out whole from finish_sign). */
    if (!is_closed(c) && c->cout.len > 0 && c->state != CONN_SIGNING && flush_client(c) != 0) {
        conn_close(c, "client write error");
        return;
    }
    if (!is_closed(c) && c->state == CONN_PROXYING && c->bout.len > 0 && flush_backend(c) != 0) {
        backend_write_failed(c);
    }
    if (!is_closed(c)) {
        conn_progress(c);
    }
    if (!is_closed(c)) {
        conn_update(c);
    }
}

static void backend_read(struct conn *c)
{
    uint8_t *buf = c->env->scratch;
    compact_cout(c);
    for (int round = 0; round < READ_ROUNDS && c->bfd >= 0 && !c->backend_eof && cout_pending(c) < CONN_BUF_HIGH;
         round++) {
        ssize_t n = recv(c->bfd, buf, BACKEND_CHUNK, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                break;
            }
            log_info("conn=%llu backend read: %s", (unsigned long long)c->id, strerror(errno));
            close_backend(c);
            on_backend_eof(c);
            break;
        }
        if (n == 0) {
            on_backend_eof(c);
            break;
        }
        metrics_add(METRIC_BACKEND_BYTES_IN, n);
        c->last_activity_ms = ev_now(c->env->loop);
        /* Room for the records in one allocation, not a doubling series inside the engine's appends. */
        int r = kl_buf_reserve(&c->cout, (size_t)n + 64);
        if (r == 0) {
            r = tls_conn_send(c->tls, &c->cout, buf, (size_t)n);
        }
        if (r != 0) {
            conn_close(c, "cannot send to the client (connection closed by it)");
            return;
        }
        if ((size_t)n < BACKEND_CHUNK) {
            break;
        }
    }
    if (flush_client(c) != 0) {
        conn_close(c, "client write error");
    }
}

static void backend_cb(struct ev_loop *loop, struct ev_io *io, unsigned revents)
{
    struct conn *c = io->owner;
    if (c->state == CONN_CONNECTING) {
        if (proxy_connect_finish(c->bfd) != 0) {
            char why[96];
            snprintf(why, sizeof(why), "connect: %s", strerror(errno));
            close_backend(c);
            backend_failed(c, why);
            conn_update(c);
            return;
        }
        backend_connected(c);
        revents |= EV_WRITE;
    }
    if (c->state == CONN_PROXYING && (revents & EV_WRITE) && flush_backend(c) != 0) {
        backend_write_failed(c);
    }
    if (c->state == CONN_PROXYING && c->bfd >= 0) {
        if (revents & EV_READ) {
            backend_read(c);
        } else if (revents & (EV_RDHUP | EV_ERROR)) {
            /* EPOLLHUP without our shutdown: reset by the backend. */
            close_backend(c);
            on_backend_eof(c);
        }
    }
    if (!is_closed(c)) {
        if (flush_client(c) != 0) {
            conn_close(c, "client write error");
            return;
        }
        conn_progress(c);
    }
    if (!is_closed(c)) {
        conn_update(c);
    }
}

static void conn_update(struct conn *c)
{
    unsigned ci = 0, bi = 0;
    if (is_closed(c)) {
        return;
    }
    if (c->state == CONN_PROXYING && !c->bufs_kept &&
        ((c->cout.base != NULL && c->cout.len == 0) || (c->bout.base != NULL && c->bout.len == 0) ||
         (c->rbuf.base != NULL && c->rbuf.len == 0))) {
        /* A buffer kept between rounds: make sure the timer comes back within CONN_BUF_KEEP_MS
           to free it if the connection goes quiet (one re-arm per burst, not per round). */
        c->bufs_kept = 1;
        if (!ev_timer_armed(&c->timer) || c->timer.when_ms > ev_now(c->env->loop) + CONN_BUF_KEEP_MS) {
            arm_timer(c, CONN_BUF_KEEP_MS);
            if (is_closed(c)) {
                return;
            }
        }
    }
    /* The same interest from accept to the end of the handshake (EV_READ | EV_RDHUP), so that a
       handshake costs no epoll_ctl but the ADD and the DEL: while the signer works the client is
       still read (its bytes wait in rbuf, bounded) and EV_RDHUP says it left. The first flight is
       held until the signature completes it (finish_sign): one send per flight. */
    if (want_client_read(c)) {
        ci = EV_READ | EV_RDHUP;
    } else if (c->state == CONN_SIGNING) {
        ci = EV_RDHUP;
    }
    if (c->cout.len > 0 && c->state != CONN_SIGNING) {
        ci |= EV_WRITE;
    }
    ev_io_set(c->env->loop, &c->cio, ci);
    if (c->bfd >= 0) {
        if (c->state == CONN_CONNECTING) {
            bi = EV_WRITE;
        } else if (c->state == CONN_PROXYING) {
            if (!c->backend_eof && cout_pending(c) < CONN_BUF_HIGH) {
                bi = EV_READ;
            }
            if (c->bout.len > 0) {
                bi |= EV_WRITE;
            }
        }
        ev_io_set(c->env->loop, &c->bio, bi);
    }
}

static void to_closing(struct conn *c)
{
    if (is_closed(c)) {
        return;
    }
    c->state = CONN_CLOSING;
    close_backend(c);
    drop_bout(c);
    kl_buf_dispose_nowipe(&c->rbuf);
    /* A clean end toward the client: close_notify unless the engine already queued an alert. */
    if (tls_conn_close(c->tls, &c->cout) != 0) {
        log_debug("conn=%llu engine refused close_notify (already failed)", (unsigned long long)c->id);
    }
    if (flush_client(c) != 0) {
        conn_close(c, "client write error");
        return;
    }
    arm_timer(c, CONN_LINGER_MS);
    conn_progress(c);
    conn_update(c);
}

static void timer_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct conn *c = t->owner;
    const struct config *cfg = c->gen->cfg;
    switch (c->state) {
    case CONN_HANDSHAKE:
    case CONN_SIGNING:
        if (!c->counted_hs) {
            c->counted_hs = 1;
            metrics_add(METRIC_HS_TIMEOUT, 1);
        }
        conn_close(c, "handshake timeout");
        return;
    case CONN_CONNECTING:
        close_backend(c);
        backend_failed(c, "connect timeout");
        return;
    case CONN_PROXYING: {
        uint64_t now = ev_now(loop), idle = now - c->last_activity_ms;
        if (idle >= cfg->idle_timeout_ms) {
            log_info("conn=%llu idle for %llu ms: closing", (unsigned long long)c->id, (unsigned long long)idle);
            to_closing(c);
            return;
        }
        /* Activity does not touch the heap; the timer re-arms for what remains. */
        uint64_t next = cfg->idle_timeout_ms - idle;
        if (c->bufs_kept) {
            if (idle >= CONN_BUF_KEEP_MS) {
                release_bufs(c); /* quiet: back to the idle footprint */
            } else if (CONN_BUF_KEEP_MS - idle < next) {
                next = CONN_BUF_KEEP_MS - idle;
            }
        }
        arm_timer(c, (uint32_t)next);
        return;
    }
    case CONN_CLOSING:
        conn_close(c, "closed");
        return;
    }
}

static void conn_free(void *arg)
{
    struct conn *c = arg;
    tls_conn_free(c->tls);
    kl_buf_dispose_nowipe(&c->rbuf);
    kl_buf_dispose_nowipe(&c->cout);
    kl_buf_dispose(&c->bout);
    gen_unref(c->gen);
    free(c);
}

/*
 * One line per connection when it ends, for operators and log pipelines: who, what was
 * negotiated, what the signer cost, how much went through, and why it ended. Key
 * material and plaintext never appear; SNI and ALPN are the client's (printable) words.
 */
static void access_line(const struct conn *c, const char *why)
{
    const struct tls_suite_info *suite = tls_suite_by_id(tls_conn_cipher_suite(c->tls));
    const struct tls_group_info *group = tls_group_by_id(tls_conn_group(c->tls));
    const char *sni = tls_conn_server_name(c->tls), *alpn = tls_conn_alpn(c->tls);
    char early[24] = "-";
    if (c->early) {
        snprintf(early, sizeof(early), "%llu", (unsigned long long)c->early_len);
    }
    /* Issue 16: with ECH accepted sni= is the inner (real) name and ech_outer= the public one the
       network saw; ech_outer= only when the client offered ECH. */
    enum tls_ech_status ech = tls_conn_ech_status(c->tls);
    const char *outer = tls_conn_ech_outer_name(c->tls);
    /* New fields go last: log pipelines that parse the older ones keep working. */
    log_info("conn=%llu access client=%s sni=%s alpn=%s suite=%s group=%s established=%s signer_ms=%.2f "
             "bytes_in=%llu bytes_out=%llu duration_ms=%.1f close=\"%s\" resumed=%s early_data=%s ech=%s%s%s",
             (unsigned long long)c->id, c->peer_text, sni[0] ? sni : "-", alpn[0] ? alpn : "-",
             suite != NULL ? suite->name : "-", group != NULL ? group->name : "-", c->established ? "yes" : "no",
             (double)c->signer_us / 1000.0, (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out,
             (double)(kl_clock_us() - c->start_us) / 1000.0, why, c->resumed ? "yes" : "no", early,
             metrics_ech_result(ech), ech != TLS_ECH_NONE ? " ech_outer=" : "",
             ech != TLS_ECH_NONE ? (outer != NULL && outer[0] ? outer : "-") : "");
}

static void conn_close(struct conn *c, const char *why)
{
    struct conn_env *env = c->env;
    if (is_closed(c)) {
        return;
    }
    if (c->sign_id != 0) {
        /* Cancelled cleanly: the reply, if it still comes, finds no slot and is dropped. */
        env->signer->cancel(env->signer_ctx, c->sign_id);
        c->sign_id = 0;
    }
    if (!c->counted_hs) {
        c->counted_hs = 1;
        metrics_add(METRIC_HS_CLOSED, 1);
    }
    ev_timer_stop(env->loop, &c->timer);
    ev_io_close(env->loop, &c->cio);
    close(c->cfd);
    c->cfd = -1;
    close_backend(c);
    if (env->tracing == c) {
        env->tracing = NULL;
    }
    metrics_add(METRIC_CONN_ACTIVE, -1);
    /* Once per connection that offered ECH, whatever became of the handshake afterwards. */
    metrics_ech(tls_conn_ech_status(c->tls));
    access_line(c, why);
    /* Freed after this turn: events already collected for it are skipped, not dangling. */
    ev_defer(env->loop, &c->dfr, conn_free, c);
    env->on_close(env->arg, c);
}

void conn_abort(struct conn *c, const char *why)
{
    conn_close(c, why);
}

static void addr_text(char *out, size_t out_len, const struct sockaddr *sa)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(out, out_len, "%s:%u", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(out, out_len, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else {
        snprintf(out, out_len, "local");
    }
}

struct conn *conn_accept(struct conn_env *env, struct fe_gen *gen, size_t listener, uint64_t id, int fd,
                         const struct sockaddr *peer, socklen_t peer_len)
{
    metrics_add(METRIC_CONN_ACCEPTED, 1);
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        metrics_add(METRIC_HS_CLOSED, 1);
        close(fd);
        return NULL;
    }
    c->env = env;
    c->gen = gen;
    gen_ref(c->gen);
    c->listener = listener;
    c->id = id;
    c->cfd = fd;
    c->bfd = -1;
    c->start_us = c->step_us = kl_clock_us();
    kl_buf_init(&c->rbuf, CONN_RECORD_MAX);
    kl_buf_init(&c->cout, COUT_MAX);
    kl_buf_init(&c->bout, BOUT_MAX);
    if (peer_len <= sizeof(c->peer)) {
        memcpy(&c->peer, peer, peer_len);
    }
    addr_text(c->peer_text, sizeof(c->peer_text), (struct sockaddr *)&c->peer);
    ev_io_init(&c->cio, fd, client_cb, c);
    ev_timer_init(&c->timer, timer_cb, c);
    c->tls = tls_conn_new(gen_tls(c->gen, c->listener), c->id);
    /* Until the handshake deadline is armed the connection is not live: no on_close for it. */
    if (c->tls == NULL || ev_timer_start(env->loop, &c->timer, c->gen->cfg->handshake_timeout_ms) != 0) {
        log_warnx("conn=%llu out of memory at accept: closed", (unsigned long long)c->id);
        metrics_add(METRIC_HS_CLOSED, 1);
        close(fd);
        conn_free(c);
        return NULL;
    }
    metrics_add(METRIC_CONN_ACTIVE, 1);
    log_debug("conn=%llu accepted from %s on %s", (unsigned long long)c->id, c->peer_text, lconf(c)->name);
    conn_update(c);
    return c;
}
