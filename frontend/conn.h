/*
 * conn.h - one client connection: TLS through the engine, the signature through
 * the signer client, then plaintext to and from the backend.
 *
 * Buffers are bounded and allocated only while they hold bytes, or, while proxying, until
 * the connection has been quiet for CONN_BUF_KEEP_MS (so that a bulk transfer does not
 * free and re-allocate them every round), so an idle established connection costs its
 * struct, the engine's state and two sockets:
 *   rbuf  partial TLS record from the client (<= 2^14 + 256 + 5 bytes: one record)
 *   cout  TLS records for the client
 *   bout  plaintext for the backend
 * Backpressure: the client is not read while bout is above CONN_BUF_HIGH, the backend
 * is not read while cout is, so one slow side never makes the other buffer grow.
 */
#ifndef KL_CONN_H
#define KL_CONN_H

#include <stdint.h>
#include <sys/socket.h>
#include "ev.h"
#include "kl_buf.h"

#define CONN_RECORD_MAX (16384 + 256 + 5)
#define CONN_BUF_HIGH (64 * 1024)
#define CONN_LINGER_MS 2000
#define CONN_BUF_KEEP_MS 500

struct fe_worker;
struct fe_gen;

enum conn_state {
    CONN_HANDSHAKE,  /* feeding the engine */
    CONN_SIGNING,    /* waiting for the signer */
    CONN_CONNECTING, /* handshake done, backend connect in progress */
    CONN_PROXYING,
    CONN_CLOSING /* close_notify / alert flushing, then close */
};

struct conn {
    struct fe_worker *w;
    struct fe_gen *gen; /* referenced */
    size_t listener;    /* index into gen->cfg->listeners */
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
    unsigned counted_hs : 1; /* handshake result already counted */
    unsigned bufs_kept : 1;  /* empty buffers kept while proxying; the timer frees them when quiet */
    struct ev_timer timer;
    uint64_t last_activity_ms;
    uint64_t start_us, step_us, sign_start_us;
    struct sockaddr_storage peer, local;
    char peer_text[64];
    struct ev_deferred dfr;
    struct conn *prev, *next;
};

/* Take over an accepted client socket. Closes fd on failure. */
void conn_accept(struct fe_worker *w, int fd, size_t listener, const struct sockaddr *peer, socklen_t peer_len);
/* Drop a connection now (no flushing): used at the end of the drain timeout. */
void conn_abort(struct conn *c, const char *why);

#endif
