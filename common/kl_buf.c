#include <stdlib.h>
#include <string.h>
#include "kl_buf.h"

void kl_wipe(void *p, size_t len)
{
    if (p != NULL && len > 0) {
        explicit_bzero(p, len); /* glibc: never optimised away, like sodium_memzero */
    }
}

void kl_buf_init(struct kl_buf *b, size_t max)
{
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->fixed = 0;
}

void kl_buf_init_fixed(struct kl_buf *b, void *mem, size_t size)
{
    b->base = mem;
    b->len = 0;
    b->cap = size;
    b->max = size;
    b->fixed = 1;
}

int kl_buf_reserve(struct kl_buf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra)
        return KL_ERR_OVERFLOW;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    if (b->fixed)
        return KL_ERR_OVERFLOW; /* caller memory never grows (cap == max, so unreachable) */
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > b->max / 2 ? b->max : cap * 2;
    if (cap > b->max)
        cap = b->max; /* the first allocation of a small buffer */
    /* Not realloc: the old block may hold secrets and must be wiped, not just released. */
    uint8_t *p = malloc(cap);
    if (p == NULL)
        return KL_ERR_NO_MEMORY;
    if (b->base != NULL) {
        memcpy(p, b->base, b->len);
        kl_wipe(b->base, b->cap);
        free(b->base);
    }
    b->base = p;
    b->cap = cap;
    return 0;
}

int kl_buf_append(struct kl_buf *b, const void *src, size_t len)
{
    int ret;
    if (len == 0)
        return 0;
    if ((ret = kl_buf_reserve(b, len)) != 0)
        return ret;
    memcpy(b->base + b->len, src, len);
    b->len += len;
    return 0;
}

void kl_buf_consume(struct kl_buf *b, size_t n)
{
    if (n >= b->len) {
        kl_buf_reset(b);
        return;
    }
    memmove(b->base, b->base + n, b->len - n);
    kl_wipe(b->base + b->len - n, n);
    b->len -= n;
}

void kl_buf_reset(struct kl_buf *b)
{
    if (b->base != NULL)
        kl_wipe(b->base, b->len);
    b->len = 0;
}

void kl_buf_dispose(struct kl_buf *b)
{
    if (b->fixed) {
        kl_wipe(b->base, b->cap);
        b->len = 0;
        return;
    }
    if (b->base != NULL) {
        kl_wipe(b->base, b->cap);
        free(b->base);
    }
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
}

void kl_buf_consume_nowipe(struct kl_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->base, b->base + n, b->len - n);
    b->len -= n;
}

void kl_buf_reset_nowipe(struct kl_buf *b)
{
    b->len = 0;
}

void kl_buf_dispose_nowipe(struct kl_buf *b)
{
    if (b->fixed) {
        b->len = 0;
        return;
    }
    free(b->base);
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
}
