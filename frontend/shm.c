#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include "kl_buf.h"
#include "log.h"
#include "shm.h"

/* How many times shm_lock looks at a busy lock before giving up (each look yields once):
   holders keep it for a copy of a few hundred bytes, so this is generous. */
#define SHM_LOCK_TRIES 20000

int shm_map(void **p_p, size_t len, int secret)
{
    static int warned;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return KL_ERR_NO_MEMORY;
    }
    if (secret) {
        if (mlock(p, len) != 0 && !warned) {
            warned = 1;
            log_warn("mlock of %zu bytes of ticket keys and replay state (they may be swapped out)", len);
        }
        if (madvise(p, len, MADV_DONTDUMP) != 0) {
            log_warn("madvise(MADV_DONTDUMP)");
        }
    }
    *p_p = p;
    return 0;
}

void shm_unmap(void *p, size_t len, int secret)
{
    if (p == NULL) {
        return;
    }
    if (secret) {
        kl_wipe(p, len);
        munlock(p, len);
    }
    munmap(p, len);
}

/* 1 when pid names no process any more (a holder that died with the lock). */
static int holder_gone(int32_t pid)
{
    return pid > 0 && kill(pid, 0) != 0 && errno == ESRCH;
}

int shm_lock(int32_t *lock)
{
    int32_t self = (int32_t)getpid();
    for (int i = 0; i < SHM_LOCK_TRIES; i++) {
        int32_t cur = 0;
        if (__atomic_compare_exchange_n(lock, &cur, self, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
            return 0;
        }
        if (cur == self) {
            /* Ours already: a process that died and whose pid came back to us cannot hold it,
               and we never nest, so this is a stale lock of a dead earlier holder with our pid. */
            return 0;
        }
        if (holder_gone(cur) && __atomic_compare_exchange_n(lock, &cur, self, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
            return 0;
        }
        sched_yield();
    }
    return KL_ERR_TIMEOUT;
}

void shm_unlock(int32_t *lock)
{
    __atomic_store_n(lock, 0, __ATOMIC_RELEASE);
}
