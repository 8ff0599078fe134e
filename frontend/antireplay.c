#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "antireplay.h"
#include "kl_buf.h"
#include "shm.h"

struct ar_slot {
    uint64_t expires_ms; /* 0: free; an expired slot is free too */
    uint8_t fp[ANTIREPLAY_FP_LEN];
};

struct ar_shm {
    int32_t lock;
    uint32_t pad;
    uint64_t ready_ms; /* before this, everything is refused (warm-up) */
    uint64_t unsure;   /* refusals for want of room, lock or warm-up */
    struct ar_slot slots[];
};

struct antireplay {
    struct ar_shm *shm;
    size_t map_len;
    size_t mask;
};

int antireplay_new(struct antireplay **ar_p, size_t slots, uint64_t now_ms, uint64_t warmup_ms)
{
    int ret = 0;
    struct antireplay *ar = NULL;
    KL_ENSURE(slots >= ANTIREPLAY_PROBE && slots <= (1u << 24) && (slots & (slots - 1)) == 0, KL_ERR_INVALID);
    ar = calloc(1, sizeof(*ar));
    KL_ENSURE(ar != NULL, KL_ERR_NO_MEMORY);
    ar->mask = slots - 1;
    ar->map_len = sizeof(struct ar_shm) + slots * sizeof(struct ar_slot);
    KL_TRY(shm_map((void **)&ar->shm, ar->map_len, 1));
    ar->shm->ready_ms = now_ms + warmup_ms;
    *ar_p = ar;
    ar = NULL;
exit:
    free(ar);
    return ret;
}

void antireplay_free(struct antireplay *ar)
{
    if (ar == NULL) {
        return;
    }
    shm_unmap(ar->shm, ar->map_len, 1);
    free(ar);
}

static int refuse(struct antireplay *ar)
{
    __atomic_fetch_add(&ar->shm->unsure, 1, __ATOMIC_RELAXED);
    return 0;
}

int antireplay_check_at(struct antireplay *ar, const uint8_t *binder, size_t binder_len, uint64_t expires_ms,
                        uint64_t now_ms)
{
    struct ar_shm *s = ar->shm;
    if (binder_len < ANTIREPLAY_FP_LEN || now_ms < __atomic_load_n(&s->ready_ms, __ATOMIC_RELAXED) ||
        expires_ms <= now_ms) {
        return refuse(ar);
    }
    if (shm_lock(&s->lock) != 0) {
        return refuse(ar);
    }
    uint64_t h = 0;
    for (int i = 0; i < 8; i++) {
        h = (h << 8) | binder[i];
    }
    struct ar_slot *free_slot = NULL;
    int seen = 0;
    for (size_t i = 0; i < ANTIREPLAY_PROBE; i++) {
        struct ar_slot *sl = &s->slots[(h + i) & ar->mask];
        if (sl->expires_ms <= now_ms) {
            if (free_slot == NULL) {
                free_slot = sl;
            }
            continue;
        }
        /* Not secret (the binder was on the wire), so a plain compare is fine. */
        if (memcmp(sl->fp, binder, ANTIREPLAY_FP_LEN) == 0) {
            seen = 1;
            break;
        }
    }
    int ret;
    if (seen) {
        ret = 0;
    } else if (free_slot == NULL) {
        ret = refuse(ar); /* the neighbourhood is full of live entries: cannot remember it */
    } else {
        memcpy(free_slot->fp, binder, ANTIREPLAY_FP_LEN);
        free_slot->expires_ms = expires_ms;
        ret = 1;
    }
    shm_unlock(&s->lock);
    return ret;
}

int antireplay_check(void *arg, const uint8_t *binder, size_t binder_len, uint64_t expires_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return antireplay_check_at(arg, binder, binder_len, expires_ms,
                               (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

uint64_t antireplay_refused_unsure(const struct antireplay *ar)
{
    return __atomic_load_n(&ar->shm->unsure, __ATOMIC_RELAXED);
}
