/*
 * kl_buf.h - borrowed spans and owned, bounded, wiping buffers.
 *
 * struct kl_span is borrowed: it is never freed by whoever holds it.
 * struct kl_buf owns its memory; kl_buf_dispose() wipes the whole allocation before
 * freeing it, so a buffer that held key material or plaintext leaves nothing behind.
 */
#ifndef KL_BUF_H
#define KL_BUF_H

#include <stddef.h>
#include <stdint.h>
#include "kl_err.h"

struct kl_span {
    const uint8_t *base;
    size_t len;
};

struct kl_buf {
    uint8_t *base;
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated */
    size_t max; /* hard upper bound on cap; growing past it fails with KL_ERR_OVERFLOW */
    int fixed;  /* base is caller memory (kl_buf_init_fixed): never reallocated or freed */
};

static inline struct kl_span kl_span_of(const void *base, size_t len)
{
    struct kl_span s = {(const uint8_t *)base, len};
    return s;
}

/*
 * Wipe len bytes at p in a way the compiler cannot remove (explicit_bzero). For key
 * material outside the crypto files, which use their library's own wipe.
 */
void kl_wipe(void *p, size_t len);

/* Start an empty buffer that may grow to max bytes. Allocates nothing. */
void kl_buf_init(struct kl_buf *b, size_t max);
/*
 * Start an empty buffer over caller memory mem[0..size): it never allocates, growing past
 * size fails with KL_ERR_OVERFLOW, and kl_buf_dispose() wipes it without freeing it. For
 * small fixed messages on hot paths (no malloc) and stack scratch that must be wiped.
 */
void kl_buf_init_fixed(struct kl_buf *b, void *mem, size_t size);
/* Make room for extra more bytes. KL_ERR_OVERFLOW past max, KL_ERR_NO_MEMORY. */
KL_MUST_CHECK int kl_buf_reserve(struct kl_buf *b, size_t extra);
/* Append len bytes. */
KL_MUST_CHECK int kl_buf_append(struct kl_buf *b, const void *src, size_t len);
/* Drop the first n bytes (n <= len), moving the rest to the front, and wipe the freed tail. */
void kl_buf_consume(struct kl_buf *b, size_t n);
/* Set len to 0, wiping the bytes that were in use; keeps the allocation. */
void kl_buf_reset(struct kl_buf *b);
/* Wipe and free the allocation; the buffer is empty (and reusable) afterwards. */
void kl_buf_dispose(struct kl_buf *b);

/*
 * The same without wiping, for buffers that only ever hold bytes that were or will be on
 * the wire in the clear anyway (TLS records: ciphertext, public handshake messages). Wiping
 * those protects nothing and, on a bulk path, costs a memset of every byte.
 * Never use them on a buffer that held plaintext or key material.
 */
/* Drop the first n bytes (n <= len), moving the rest to the front. */
void kl_buf_consume_nowipe(struct kl_buf *b, size_t n);
/* Set len to 0; keeps the allocation. */
void kl_buf_reset_nowipe(struct kl_buf *b);
/* Free the allocation; the buffer is empty (and reusable) afterwards. */
void kl_buf_dispose_nowipe(struct kl_buf *b);

#endif
