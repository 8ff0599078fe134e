/*
 * antireplay.h - the 0-RTT strike register (RFC 8446 8.2): the ClientHello binders whose
 * early data this host accepted, remembered until the engine's freshness window for them
 * has passed, shared by all the worker processes of the host.
 *
 * A fixed table in a MAP_SHARED anonymous mapping made before fork (no allocation later,
 * bounded memory whatever the load), open addressing with a bounded probe. A binder is an
 * HMAC output nobody can choose without the PSK, so its first ANTIREPLAY_FP_LEN bytes are
 * its fingerprint and its first 8 bytes pick the slot: no hashing needed.
 *
 * It fails closed: a full neighbourhood, a lock it cannot take, a binder too short, or the
 * first ANTIREPLAY_WARMUP_MS after the register was made (a restarted frontend does not
 * know what its previous run accepted, and tickets outlive it) all answer "seen", which
 * makes the engine refuse the early data; the handshake goes on in 1-RTT.
 *
 * Only this host's register matters: the engine accepts 0-RTT only on a ticket that this
 * host issued (the ticket carries the host id), so a fleet needs no shared replay state.
 */
#ifndef KL_FE_ANTIREPLAY_H
#define KL_FE_ANTIREPLAY_H

#include <stddef.h>
#include <stdint.h>
#include "kl_err.h"

#define ANTIREPLAY_FP_LEN 16
/* Twice the engine's freshness window for a ticket's age (tls/: 10 s), with room. */
#define ANTIREPLAY_WARMUP_MS 20000u
#define ANTIREPLAY_SLOTS_DEFAULT 65536u
#define ANTIREPLAY_PROBE 16

struct antireplay;

/*
 * A register of slots entries (a power of two, 16..2^24) in shared memory, refusing
 * everything until warmup_ms after now_ms (CLOCK_REALTIME, ms). Call before fork.
 * 0, KL_ERR_INVALID, KL_ERR_NO_MEMORY.
 */
KL_MUST_CHECK int antireplay_new(struct antireplay **ar_p, size_t slots, uint64_t now_ms, uint64_t warmup_ms);
/* Wipe and unmap: the owner, at exit. NULL is fine. */
void antireplay_free(struct antireplay *ar);

/*
 * 1 when binder was not seen (it is now remembered until expires_ms), 0 when it was, or
 * when the register cannot tell (see the top of this file). Times are CLOCK_REALTIME ms.
 */
int antireplay_check_at(struct antireplay *ar, const uint8_t *binder, size_t binder_len, uint64_t expires_ms,
                        uint64_t now_ms);
/* tls_replay_fn: antireplay_check_at at the current time; arg is the struct antireplay. */
int antireplay_check(void *arg, const uint8_t *binder, size_t binder_len, uint64_t expires_ms);

/* What the register refused so far because it was full or unsure (for metrics). */
uint64_t antireplay_refused_unsure(const struct antireplay *ar);

#endif
