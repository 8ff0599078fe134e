/*
 * signer_client.h - the frontend's asynchronous client for keyless-signer.
 *
 * One non-blocking Unix-socket connection per worker, requests pipelined with ids
 * and answers matched by id in any order (proto/keyless.proto). Every request has
 * a deadline on the loop's timer heap: when it passes, the callback gets NULL and
 * a reply that arrives later is dropped, because its id no longer names a live slot.
 *
 * Request ids are (sequence << SC_SLOT_BITS) | slot, so matching a reply is one
 * array index plus a comparison, and a stale id can never hit a reused slot.
 *
 * When the signer goes away every in-flight request fails at once (callback with
 * NULL), new requests fail fast until the client has reconnected (with backoff,
 * trying the configured sockets in order: failover), and nothing else is touched.
 * The number of pending requests is bounded: past max_pending, sc_call fails fast.
 */
#ifndef KL_SC_H
#define KL_SC_H

#include <stddef.h>
#include <stdint.h>
#include "ev.h"
#include "keyless.pb-c.h"
#include "kl_err.h"

#define SC_SLOT_BITS 20
#define SC_MAX_PENDING_LIMIT (1u << SC_SLOT_BITS)

/*
 * Called once per request: resp is the signer's answer (borrowed for the call only),
 * or NULL when the request failed (deadline, signer gone). Never called after sc_cancel.
 */
typedef void (*sc_cb)(void *arg, const Keyless__V1__Response *resp);

struct sc_client;

struct sc_stats {
    uint64_t reconnects;
    uint64_t timeouts;
};

/*
 * A client for the sockets paths[0..n_paths) (borrowed strings, copied), at most
 * max_pending requests in flight, each with a deadline of timeout_ms. It starts
 * connecting at once. on_change (may be NULL) is told when the connection goes up (1) or down (0).
 */
KL_MUST_CHECK int sc_new(struct sc_client **sc_p, struct ev_loop *loop, const char *const *paths, size_t n_paths,
                         size_t max_pending, uint32_t timeout_ms);
/* Fail nothing, call nothing: drop every pending request silently and free. NULL is fine. */
/* Not from inside a loop turn that queued a request (its end-of-turn send is pending). */
void sc_free(struct sc_client *sc);

/* 1 when connected to a signer. */
int sc_up(const struct sc_client *sc);
/* The socket path in use (or last tried). */
const char *sc_path(const struct sc_client *sc);
size_t sc_pending(const struct sc_client *sc);
const struct sc_stats *sc_stats(const struct sc_client *sc);
/* Hook for connection changes (log lines, metrics). */
void sc_set_observer(struct sc_client *sc, void (*on_change)(void *arg, int up, const char *path), void *arg);

/*
 * Send req (its id is assigned here) and call cb(arg, ...) with the answer.
 * *id_p receives the id for sc_cancel. Fails fast, without calling cb:
 * KL_ERR_IO when no signer is connected, KL_ERR_OVERFLOW when max_pending requests
 * are already waiting, KL_ERR_FRAME_TOO_BIG for an oversize request.
 */
KL_MUST_CHECK int sc_call(struct sc_client *sc, uint64_t *id_p, Keyless__V1__Request *req, sc_cb cb, void *arg);
/* Forget request id: its callback will not run and its reply, if any, is dropped. Unknown ids are ignored. */
/* sc_call with a ListKeysRequest (the signer's keys, schemes and public keys). */
KL_MUST_CHECK int sc_list_keys(struct sc_client *sc, uint64_t *id_p, sc_cb cb, void *arg);
void sc_cancel(struct sc_client *sc, uint64_t id);
/*
 * sc_call with a TicketKeysRequest: the ticket keys of epochs[0..n_epochs) (at most 8) for
 * epochs of rotation_s seconds, which the signer derives in the HSM (frontend/tickets.h).
 */
KL_MUST_CHECK int sc_ticket_keys(struct sc_client *sc, uint64_t *id_p, const uint64_t *epochs, size_t n_epochs,
                                 uint32_t rotation_s, sc_cb cb, void *arg);

#endif
