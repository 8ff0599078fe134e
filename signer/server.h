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
 * fresh file), then reload the configuration if a hook is set (server_set_reload).
 * Async-signal-safe: keyless-signer calls it on SIGHUP.
 */
void server_rotate(struct server *srv);

/*
 * A configuration as the server serves it (issue 14: SIGHUP reloads it): the config, its
 * keys found on the token and the ticket root (NULL: TicketKeys refused). A request is
 * judged by the conf current when it is read; a job in flight holds a reference on its
 * conf (key name, token key, ticket scope), so a conf replaced by a reload is released
 * (release, on the I/O thread) only once its last job is answered.
 */
struct server_conf {
    const struct signer_config *cfg;
    const struct server_key *keys;
    size_t n_keys;
    const struct p11_secret *ticket_root;
    uint8_t config_sha256[32]; /* of the file, for the reload's audit record */
    /* Frees the conf and everything in it; NULL: the caller's (the start-up one, made by server_new). */
    void (*release)(struct server_conf *sc);
    /* server.c's own */
    unsigned refs;
    struct server_conf *next;
};

/*
 * The reload hook, called on the I/O thread on server_rotate() (after the audit rotation):
 * read and check the configuration again and return a new conf in *next_p (0), or log one
 * line per problem and return nonzero (the running conf is kept). cur is the running one.
 */
typedef int (*server_reload_fn)(void *arg, struct server_conf **next_p, const struct server_conf *cur);

/*
 * Set the reload hook (before server_run) and hand the start-up conf (server_new's cfg,
 * keys and ticket root) to the server: release0 frees them once they are replaced and
 * their last job is back, or at server_free. On each SIGHUP the server calls it, swaps the
 * new conf in between two requests (rate limits: a key's bucket, the per-peer table and
 * the [tickets] bucket keep their state when their rate and burst are unchanged and start
 * full when they change), counts the result (signer_metrics_reload) and writes an op
 * "reload" audit record (status OK with config_sha256, or FAILED).
 */
void server_set_reload(struct server *srv, server_reload_fn fn, void *arg, void (*release0)(struct server_conf *sc));

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
