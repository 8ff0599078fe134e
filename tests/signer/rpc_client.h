/*
 * rpc_client.h - a small blocking client for the signer's RPC, for tests and the benchmark.
 *
 * One connection; rpc_client_send() may be called from several threads at once (frames
 * are written whole under a lock) while one thread reads with rpc_client_recv(), which
 * is how the pipelining test drives thousands of requests in flight.
 */
#ifndef KL_TESTS_RPC_CLIENT_H
#define KL_TESTS_RPC_CLIENT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "kl_buf.h"
#include "kl_err.h"
#include "keyless.pb-c.h"

struct rpc_client {
    int fd;
    pthread_mutex_t send_lock;
    struct kl_buf in;
};

/* Connect to the signer's socket at path. KL_ERR_IO with errno on failure. */
KL_MUST_CHECK int rpc_client_connect(struct rpc_client *c, const char *path);
void rpc_client_close(struct rpc_client *c);

/* Send one framed Request (thread-safe). */
KL_MUST_CHECK int rpc_client_send(struct rpc_client *c, const Keyless__V1__Request *req);
/* Send raw bytes as they are (to test bad framing). */
KL_MUST_CHECK int rpc_client_send_raw(struct rpc_client *c, const void *buf, size_t len);

/*
 * Read the next Response, waiting at most timeout_ms. The caller frees it with
 * keyless__v1__response__free_unpacked(resp, NULL). KL_ERR_CLOSED if the signer closed
 * the connection, KL_ERR_TIMEOUT, KL_ERR_PROTOBUF, KL_ERR_FRAME_TOO_BIG.
 */
KL_MUST_CHECK int rpc_client_recv(struct rpc_client *c, Keyless__V1__Response **resp_p, int timeout_ms);

/* Send a SignRequest with this id and wait for its response (the only one in flight). */
KL_MUST_CHECK int rpc_client_sign(struct rpc_client *c, Keyless__V1__Response **resp_p, uint64_t id, const char *key,
                                  uint32_t scheme, int context, const uint8_t *hash, size_t hash_len);

/* Fill a SignRequest + Request pair (borrowing key and hash). */
void rpc_client_sign_request(Keyless__V1__Request *req, Keyless__V1__SignRequest *sr, uint64_t id, const char *key,
                             uint32_t scheme, int context, const uint8_t *hash, size_t hash_len);

/* Fill a TicketKeysRequest + Request pair (borrowing epochs, n of them). */
void rpc_client_ticket_keys_request(Keyless__V1__Request *req, Keyless__V1__TicketKeysRequest *tr, uint64_t id,
                                    uint32_t rotation_seconds, const uint64_t *epochs, size_t n);

/* Send a TicketKeysRequest with this id and wait for its response (the only one in flight). */
KL_MUST_CHECK int rpc_client_ticket_keys(struct rpc_client *c, Keyless__V1__Response **resp_p, uint64_t id,
                                         uint32_t rotation_seconds, const uint64_t *epochs, size_t n);

#endif
