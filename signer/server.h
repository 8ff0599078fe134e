/*
 * server.h - the signer's RPC service on a Unix socket: the I/O thread.
 *
 * One I/O thread (the caller of server_run) runs a common/ev loop that owns the
 * listener and every connection; the signing happens in jobs.[ch] (worker threads, the
 * audit waiter, or inline on this thread with workers = 0).
 *
 * Per request: framing (proto/frame.h, FRAME_MAX checked on the header), protobuf
 * unpack (server_decode_request), then the op table, whose flags decide what the
 * dispatcher does before the handler: OP_NEEDS_KEY_AUTH finds the key the request names
 * and runs the policy (policy_check_sign: context, scheme, hash length, peer uid/gid
 * from SO_PEERCRED) and the rate limits; OP_ASYNC makes a job for jobs.c, bounded by
 * queue_max (full: OVERLOADED). A refusal is audited before its answer is queued.
 * TicketKeys (issue 11, tickets.h) names no key: its handler checks [tickets] and the
 * request (tickets_check), the rate limits and queue_max itself, then queues a job too.
 * Responses echo the request id and go out in completion order.
 *
 * Peer limits (issue 13 §5): at accept, max_connections and max_connections_per_uid (over
 * it: closed, counted); a timer closes connections idle past idle_timeout and those whose
 * partial frame is older than frame_timeout; the counts are logged (and the refusals
 * audited) at most once per 10 s and at stop.
 *
 * The audit log is rotated on this thread: on server_rotate() (SIGHUP) and, with
 * audit_rotate_bytes, once per loop turn when the file has reached the limit.
 */
#ifndef KL_SIGNER_SERVER_H
#define KL_SIGNER_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include "audit.h"
#include "config.h"
#include "keyless.pb-c.h"
#include "kl_err.h"
#include "p11_backend.h"

struct server;

/* A configured key, ready to sign: its config section and its token object. */
struct server_key {
    const struct cfg_key *cfg;
    struct p11_key *p11;
};

/*
 * Create the socket (sockdir_listen: its directory made or tightened to 0750, the socket
 * 0660, both in cfg's socket_group) and start the worker and audit threads. keys
 * (n_keys) are borrowed, as are cfg, be and audit: they must outlive the server. On
 * failure one log line says why.
 */
KL_MUST_CHECK int server_new(struct server **srv_p, const struct signer_config *cfg, struct p11_backend *be,
                             const struct server_key *keys, size_t n_keys, struct audit_log *audit);

/*
 * Serve until server_stop(). Then stop accepting and reading, finish the requests in
 * flight, flush their responses (bounded wait), and return 0. KL_ERR_IO if the loop
 * failed. The signer's own uid for the peer checks (allow_same_uid, keys without allow
 * lists) is getuid() as of this call (after the privilege drop).
 */
KL_MUST_CHECK int server_run(struct server *srv);

/* Ask server_run() to finish. Async-signal-safe (it only writes to an eventfd). */
void server_stop(struct server *srv);

/*
 * Ask the I/O thread to rotate the audit log (audit_rotate: the chain continues in a
 * fresh file). Async-signal-safe: keyless-signer calls it on SIGHUP.
 */
void server_rotate(struct server *srv);

/*
 * Issue 11: answer TicketKeys with keys derived from root (found by p11_secret_find on
 * cfg's [tickets] key; borrowed, it belongs to the backend). Without it TicketKeys is
 * refused with NOT_AUTHORIZED "ticket keys not configured". Call before server_run().
 */
void server_set_ticket_root(struct server *srv, const struct p11_secret *root);

/* Stop the threads, close the socket (and unlink it) and free everything. NULL is fine. */
void server_free(struct server *srv);

/*
 * Turn the bytes at the start of buf (len) into one request, exactly as the server does
 * for every connection: a frame header (FRAME_MAX checked before anything else), then
 * the protobuf unpack of the body. Exposed for the fuzz target.
 *   0                     *req_p holds the request (free it with
 *                         keyless__v1__request__free_unpacked(req, NULL)), *id_p its id
 *   KL_ERR_WANT_READ      no whole frame yet; nothing consumed
 *   KL_ERR_FRAME_TOO_BIG  the header announces more than FRAME_MAX: the stream cannot
 *                         be resynchronised
 *   KL_ERR_PROTOBUF       the body does not unpack; *id_p is the id salvaged from its
 *                         first bytes (0 if none)
 * *used_p is the frame's length (header included) on 0 and KL_ERR_PROTOBUF, else 0.
 */
KL_MUST_CHECK int server_decode_request(Keyless__V1__Request **req_p, uint64_t *id_p, size_t *used_p,
                                        const uint8_t *buf, size_t len);

#endif
