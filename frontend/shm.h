/*
 * shm.h - memory the frontend's worker processes share: mapped by the main process before
 * it forks them (MAP_SHARED | MAP_ANONYMOUS, so nothing has a name on disk), and a lock
 * for it that survives a holder that died.
 *
 * Used by tickets.c (the ticket keys) and antireplay.c (the 0-RTT strike register). The
 * metrics counters (metrics.c) need no lock and keep their own mapping.
 */
#ifndef KL_FE_SHM_H
#define KL_FE_SHM_H

#include <stddef.h>
#include <stdint.h>
#include "kl_err.h"

/*
 * Map len zeroed bytes shared with the children forked later. With secret = 1 the pages
 * are also locked in RAM (mlock: never swapped; a failure, e.g. RLIMIT_MEMLOCK, is logged
 * once and tolerated) and left out of core dumps (MADV_DONTDUMP). 0 with *p_p set, or
 * KL_ERR_NO_MEMORY.
 */
KL_MUST_CHECK int shm_map(void **p_p, size_t len, int secret);
/* Wipe (secret mappings), unlock and unmap. NULL is fine. */
void shm_unmap(void *p, size_t len, int secret);

/*
 * A lock word in shared memory: 0 when free, else the pid of its holder. shm_lock takes it
 * within a bounded number of tries (yielding between them), and takes it over from a holder
 * that no longer exists (a worker killed while holding it), so a crash never wedges the
 * other workers. 0 when taken, KL_ERR_TIMEOUT when another live process kept it: the
 * caller then does without (fails closed).
 */
KL_MUST_CHECK int shm_lock(int32_t *lock);
void shm_unlock(int32_t *lock);

#endif
