/*
 * tickets.h - the frontend's session ticket keys (RFC 8446 4.6.1): one keyring for all the
 * worker processes of a host, in shared memory, read through a seqlock.
 *
 * Where the keys come from ([frontend] ticket_keys):
 *   hsm        the signer derives one key per epoch inside the HSM (TicketKeys RPC, see
 *              proto/keyless.proto); an epoch is floor(unix_time / ticket_rotation). The ring
 *              holds the current epoch's key (tickets are sealed with it), the previous
 *              `past` epochs' (tickets sealed then may still be valid) and the next one's
 *              (fetched a whole epoch ahead, so the switch at the boundary needs no signer and
 *              happens at the same moment on every host of a fleet). Keys of older epochs are
 *              wiped as soon as they fall out of that window, except that the newest key held
 *              is always kept: through a signer outage the frontend keeps issuing and
 *              accepting tickets with what it has.
 *   file:PATH  1 to 8 keys of TICKETS_FILE_KEY_LEN bytes each, concatenated: bytes 0-15 name
 *              the key (the first 8 are its key id, in clear in every ticket it seals; the
 *              other 8 are ignored), bytes 16-47 are the secret. The first key seals, all of
 *              them open. `openssl rand 48 > ticket.key` makes one; rotate by prepending a new
 *              key and dropping the oldest (nginx style), then SIGHUP, or wait: the workers
 *              notice a changed file within a few seconds. The file must not be readable by
 *              others (mode 0600 or 0640).
 *
 * The ring lives in a MAP_SHARED anonymous mapping that the main process makes before it
 * forks the workers (mlock'ed, MADV_DONTDUMP, wiped on each prune and at exit): a worker
 * restarted during a signer outage finds the keys there. Every worker may refresh it; a
 * lease in the mapping makes one of them at a time ask the signer. Readers never block:
 * tickets_snapshot() copies a consistent state or reports none.
 */
#ifndef KL_FE_TICKETS_H
#define KL_FE_TICKETS_H

#include <stddef.h>
#include <stdint.h>
#include "kl_err.h"
#include "keyless.pb-c.h"
#include "tls/tls.h"

#define TICKETS_FILE_KEY_LEN 48
#define TICKETS_FILE_NAME_LEN 16

enum tickets_source {
    TICKETS_HSM,
    TICKETS_FILE,
};

struct tickets;

/*
 * A new ring in shared memory for source: rotation_s (the epoch length, hsm) and past (how
 * many previous epochs' keys to keep, at most TLS_TICKET_KEYS_MAX - 2). Empty until keys are
 * installed. Call before fork. 0, KL_ERR_INVALID or KL_ERR_NO_MEMORY.
 */
KL_MUST_CHECK int tickets_new(struct tickets **tk_p, enum tickets_source source, uint32_t rotation_s, unsigned past);
/* Wipe the keys and unmap: the owner (the main process), at exit. NULL is fine. */
void tickets_free(struct tickets *tk);

enum tickets_source tickets_source(const struct tickets *tk);
/* The epoch of the time now_ms (CLOCK_REALTIME, ms). */
uint64_t tickets_epoch(const struct tickets *tk, uint64_t now_ms);

/*
 * A consistent copy of the keys usable at now_ms (CLOCK_REALTIME, ms) into *out, with
 * out->issue naming the key that seals: hsm, the current epoch's, else the newest one held;
 * file, the first. 0, KL_ERR_NOT_FOUND when there are none, KL_ERR_TIMEOUT when no
 * consistent copy could be made (a writer that died mid-write): no tickets then. The caller
 * wipes *out.
 */
KL_MUST_CHECK int tickets_snapshot(struct tickets *tk, struct tls_ticket_keys *out, uint64_t now_ms);
/* tls_ticket_keys_fn over tickets_snapshot at the current time; arg is the struct tickets. */
int tickets_keys_fn(void *arg, struct tls_ticket_keys *out);

/*
 * hsm: the epochs the ring lacks at now_ms, oldest first, into epochs[0..max) (the past ones
 * are skipped when only_ahead is set: a signer that refused them). Returns how many.
 */
size_t tickets_wanted(struct tickets *tk, uint64_t *epochs, size_t max, uint64_t now_ms, int only_ahead);

/*
 * Take the refresh lease until now_ms + lease_ms (monotonic ms) when nobody holds it: 1 when
 * the caller should fetch now, 0 when another worker is at it (or recently failed: the lease
 * spaces retries through an outage). tickets_release() gives it back after a success.
 */
int tickets_claim(struct tickets *tk, uint64_t now_mono_ms, uint64_t lease_ms);
void tickets_release(struct tickets *tk);
/* Keep the lease until until_mono_ms: nobody asks before then (a signer that refuses outright). */
void tickets_hold(struct tickets *tk, uint64_t until_mono_ms);

/*
 * Merge keys[0..n) into the ring (hsm: by epoch, a key for an epoch held already replaces
 * it; file: the keys replace the ring), then prune what now_ms no longer needs, wiping it.
 * 0, KL_ERR_INVALID (n > TLS_TICKET_KEYS_MAX), KL_ERR_TIMEOUT (lock).
 */
KL_MUST_CHECK int tickets_install(struct tickets *tk, const struct tls_ticket_key *keys, size_t n, uint64_t now_ms);
/* tickets_install with nothing new: wipe the keys now_ms no longer needs (hsm; nothing for file). */
KL_MUST_CHECK int tickets_prune(struct tickets *tk, uint64_t now_ms);
/* How many keys the ring holds (for logs and tests). */
size_t tickets_count(struct tickets *tk);
/* Tests: the shared mapping itself (*len_p bytes), to check that a dropped key left no trace. */
const void *tickets_mapping(const struct tickets *tk, size_t *len_p);

/*
 * Check a TicketKeysResponse (status OK, every key with an 8-byte key_id, a 32-byte secret and
 * an epoch the request asked for) and install its keys. 0; KL_ERR_DENIED (a status other
 * than OK) or KL_ERR_INVALID (malformed) with a reason in why. The response's secrets are
 * the caller's to wipe.
 */
KL_MUST_CHECK int tickets_install_response(struct tickets *tk, char *why, size_t why_len,
                                           const Keyless__V1__TicketKeysResponse *r, const uint64_t *asked,
                                           size_t n_asked, uint64_t now_ms);

/*
 * Parse a key file's bytes into keys[0..TLS_TICKET_KEYS_MAX) (see the top of this file).
 * 0 with *n_p set; KL_ERR_CONFIG with the reason in why (empty, not whole keys, too many,
 * two keys with one key id). keys is wiped on failure.
 */
KL_MUST_CHECK int tickets_file_parse(struct tls_ticket_key *keys, size_t *n_p, char *why, size_t why_len,
                                     const uint8_t *data, size_t len);
/*
 * Read and install the key file at path when it changed since the last load (or always with
 * force). 0 when loaded, 1 when unchanged, KL_ERR_CONFIG / KL_ERR_IO with a reason in why
 * (cannot open, readable by others, bad contents): the ring keeps its keys then.
 */
KL_MUST_CHECK int tickets_file_load(struct tickets *tk, char *why, size_t why_len, const char *path, int force);

#endif
