/*
 * conn.h - one client connection: TLS through the engine, the signature through
 * the signer client, then plaintext to and from the backend.
 *
 * A connection knows its owner only through a struct conn_env (loop, signer operations,
 * scratch buffer, trace switch, on_close): the worker passes its own, a unit test a fake
 * one (tests/frontend/test_conn.c), and conn.c never includes worker.h.
 *
 * Buffers are bounded and allocated only while they hold bytes, or, while proxying, until
 * the connection has been quiet for CONN_BUF_KEEP_MS (so that a bulk transfer does not
 * free and re-allocate them every round), so an idle established connection costs its
 * struct, the engine's state and two sockets:
 *   rbuf  partial TLS record from the client (<= 2^14 + 256 + 5 bytes: one record)
 *   cout  TLS records for the client
 *   bout  plaintext for the backend
 * The backend is connected once the handshake is complete (backend_connect = handshake), or
 * when the first application byte arrives (backend_connect = data: a client that handshakes
 * and leaves costs no backend connection; the connection is CONN_PROXYING with backend_wait
 * set until then, and a client that ends first gets close_notify without a backend at all).
 * 0-RTT (RFC 8446 2.3): the engine appends accepted early data to bout during the handshake,
 * and the backend is connected only once the handshake is complete, so the early bytes wait
 * there (at most max_early_data, bounded by the config well under CONN_BUF_HIGH) until the
 * count is final (EndOfEarlyData came before the client's Finished). The PROXY v2 header, with
 * PP2_TYPE_KL_EARLY_DATA = that count, then goes in front of them: the backend reads the header,
 * the early bytes, then what came after the handshake (backend.h says what it must do with them).
 * Backpressure: the client is not read while bout is above CONN_BUF_HIGH, the backend
 * is not read while cout is, so one slow side never makes the other buffer grow.
 */
#ifndef KL_CONN_H
#define KL_CONN_H

#include <stdint.h>
#include <sys/socket.h>
#include "ev.h"
#include "kl_buf.h"
#include "signer_client.h" /* sc_cb and the request/response types */

#define CONN_RECORD_MAX (16384 + 256 + 5)
#define CONN_BUF_HIGH (64 * 1024)
#define CONN_LINGER_MS 2000
#define CONN_BUF_KEEP_MS 500

struct fe_gen;
struct conn;

/*
 * The signer as a connection sees it: sc_call/sc_cancel on the worker's sc_client, or a
 * test's fake. call has sc_call's contract (fail fast without calling cb; cb exactly once
 * otherwise, with NULL on deadline or loss), cancel has sc_cancel's (cb never runs after it).
 */
struct conn_signer_ops {
    int (*call)(void *ctx, uint64_t *id_p, Keyless__V1__Request *req, sc_cb cb, void *arg);
    void (*cancel)(void *ctx, uint64_t id);
};

/*
 * What a connection needs from its owner, shared by every connection of one loop.
 * The connection never sees who owns it: the owner (the worker) keeps the list,
 * counts connections and learns about each end through on_close.
 */
struct conn_env {
    struct ev_loop *loop;
    const struct conn_signer_ops *signer;
    void *signer_ctx;
    uint8_t *scratch; /* CONN_RECORD_MAX bytes: one read buffer for every connection of this loop */
    int trace;        /* --trace: one log line per handshake step, with its time */
    /* Set by the connection around its engine calls, so that conn_trace_engine can time the step. */
    struct conn *tracing;
    /*
     * The connection ended (called once, from conn_close, after its sockets are closed).
     * The owner unlinks it here; it is freed after the current loop turn.
     */
    void (*on_close)(void *arg, struct conn *c);
    void *arg;
};

enum conn_state {
    CONN_HANDSHAKE,  /* feeding the engine */
    CONN_SIGNING,    /* waiting for the signer */
    CONN_CONNECTING, /* handshake done, backend connect in progress */
    CONN_PROXYING,   /* also before the backend is connected when backend_wait is set */
    CONN_CLOSING     /* close_notify / alert flushing, then close */
};

struct conn {
    struct conn_env *env; /* borrowed: outlives the connection */
    struct fe_gen *gen;   /* referenced */
    size_t listener;      /* index into gen->cfg->listeners */
    uint64_t id;
    enum conn_state state;
    int cfd, bfd;
    struct ev_io cio, bio;
    struct tls_conn *tls;
    struct kl_buf rbuf, cout, bout;
    size_t cout_off, bout_off; /* sent prefix of cout / bout (unsent bytes are [off, len)) */
    uint64_t sign_id;          /* pending signer request, 0 if none */
    unsigned client_eof : 1;   /* client sent close_notify or FIN: no more plaintext from it */
    unsigned backend_eof : 1;  /* backend closed its side: close_notify queued */
    unsigned backend_shut : 1; /* shutdown(SHUT_WR) sent to the backend */
    unsigned client_shut : 1;  /* shutdown(SHUT_WR) sent to the client */
    unsigned established : 1;
    unsigned counted_hs : 1;   /* handshake result already counted */
    unsigned bufs_kept : 1;    /* empty buffers kept while proxying; the timer frees them when quiet */
    unsigned resumed : 1;      /* the handshake resumed a ticket: no certificate, no signer call */
    unsigned early : 1;        /* 0-RTT accepted; early_len bytes came as early data */
    unsigned backend_wait : 1; /* established (backend_connect = data): no backend until the first byte */
    uint64_t early_len;
    struct ev_timer timer;
    uint64_t last_activity_ms;
    uint64_t start_us, step_us, sign_start_us;
    uint64_t signer_us;           /* the signer round trip, 0 if none finished */
    uint64_t bytes_in, bytes_out; /* TLS bytes from / to the client, for the access line */
    struct sockaddr_storage peer, local;
    char peer_text[64];
    struct ev_deferred dfr;
    struct conn *prev, *next; /* the owner's list: conn never touches these */
};

/*
 * Take over an accepted client socket fd for listener (an index into gen's listeners),
 * under gen (referenced until the connection ends). id names it in logs, traces and sign
 * requests. fd is non-blocking, and a TCP socket has TCP_NODELAY already (the worker sets it
 * on the listening socket, whose accepted sockets inherit it). Returns the live connection,
 * which ends later through env->on_close; or NULL when it could not be set up (fd closed,
 * on_close not called).
 */
struct conn *conn_accept(struct conn_env *env, struct fe_gen *gen, size_t listener, uint64_t id, int fd,
                         const struct sockaddr *peer, socklen_t peer_len);
/* Drop a connection now (no flushing): used at the end of the drain timeout. on_close runs. */
void conn_abort(struct conn *c, const char *why);

/*
 * The engine's trace hook (tls_config.trace, with trace_arg = the env): logs one step of
 * connection conn_id, timed from the previous step when it is env->tracing.
 */
void conn_trace_engine(void *env, uint64_t conn_id, const char *event);

#endif
