/*
 * server.h - the signer's RPC service on a Unix socket.
 *
 * Threads: one I/O thread (the caller of rpc_server_run) owns the listener and every
 * connection (level-triggered epoll); N workers each own PKCS#11 session N of the
 * backend and sign; one audit thread waits for the durability of signed records in
 * groups and only then hands the signatures back to the I/O thread to be sent.
 *
 * Per request: framing (proto/frame.h, FRAME_MAX checked on the header), protobuf
 * unpack, dispatch through a table with per-op flags, policy checks (key, context,
 * scheme, hash length, peer uid/gid from SO_PEERCRED, rate limits), then either an
 * immediate refusal (audited before it is queued for sending) or a job on the bounded
 * queue (full: OVERLOADED). Responses echo the request id and go out in completion order.
 */
#ifndef KL_RPC_SERVER_H
#define KL_RPC_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include "audit.h"
#include "config.h"
#include "kl_err.h"
#include "p11_backend.h"

struct rpc_server;

/* A configured key, ready to sign: its config section and its token object. */
struct rpc_key {
    const struct cfg_key *cfg;
    struct p11_key *p11;
};

/*
 * Create the socket (its directory made or tightened to 0750, the socket 0660, both in
 * cfg's socket_group) and start the worker and audit threads. keys (n_keys) are borrowed,
 * as are cfg, be and audit: they must outlive the server. On failure one line saying
 * why is written to stderr.
 */
KL_MUST_CHECK int rpc_server_new(struct rpc_server **srv_p, const struct signer_config *cfg, struct p11_backend *be,
                                 const struct rpc_key *keys, size_t n_keys, struct audit_log *audit);

/*
 * Serve until rpc_server_stop(). Then stop accepting and reading, finish the requests
 * in flight, flush their responses (bounded wait), stop the threads and return 0.
 */
KL_MUST_CHECK int rpc_server_run(struct rpc_server *srv);

/* Ask rpc_server_run() to finish. Async-signal-safe (it only writes to an eventfd). */
void rpc_server_stop(struct rpc_server *srv);

/*
 * Ask the I/O thread to rotate the audit log (audit_rotate: the chain continues in a
 * fresh file). Async-signal-safe: keyless-signer calls it on SIGHUP.
 */
void rpc_server_rotate(struct rpc_server *srv);

/* Close the socket (and unlink it) and free everything. NULL is fine. */
void rpc_server_free(struct rpc_server *srv);

#endif
