/*
 * wire.h - the one reader and writer for every TLS byte (docs/HACKING.md: buffers).
 *
 * Reading: a wire_reader is a borrowed (p, end) cursor. Every read is bounds-checked
 * and fails with KL_ERR_DECODE (decode_error) when the input is short. A length-prefixed
 * vector is opened as a sub-reader; wire_reader_end() fails with KL_ERR_DECODE unless the
 * (sub-)reader was consumed exactly, so trailing bytes are never silently ignored.
 *
 * Writing: appends to a bounded struct kl_buf. A length-prefixed block is opened with
 * wire_block_open(), which reserves the prefix, and closed with wire_block_close(), which
 * back-patches it and fails with KL_ERR_OVERFLOW if the content does not fit the prefix.
 *
 * No code outside wire.c does pointer arithmetic on, memcpy from, or ntohs on network data.
 */
#ifndef KL_WIRE_H
#define KL_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include "kl_buf.h"
#include "kl_err.h"

struct wire_reader {
    const uint8_t *p;
    const uint8_t *end;
};

void wire_reader_init(struct wire_reader *r, const uint8_t *p, size_t len);
static inline size_t wire_remaining(const struct wire_reader *r)
{
    return (size_t)(r->end - r->p);
}
KL_MUST_CHECK int wire_read_u8(struct wire_reader *r, uint8_t *v);
KL_MUST_CHECK int wire_read_u16(struct wire_reader *r, uint16_t *v);
KL_MUST_CHECK int wire_read_u24(struct wire_reader *r, uint32_t *v);
KL_MUST_CHECK int wire_read_u32(struct wire_reader *r, uint32_t *v);
/* Borrow the next n bytes as a span (no copy). */
KL_MUST_CHECK int wire_read_span(struct wire_reader *r, struct kl_span *out, size_t n);
/* Copy the next n bytes into dst. */
KL_MUST_CHECK int wire_read_copy(struct wire_reader *r, void *dst, size_t n);
/*
 * Open a vector with a len_bytes (1, 2 or 3) length prefix: sub covers its content and r
 * moves past it. KL_ERR_DECODE if the prefix runs past the end of r.
 */
KL_MUST_CHECK int wire_read_vec(struct wire_reader *r, struct wire_reader *sub, size_t len_bytes);
/* Same, returning the content as a span; the length must lie in [min, max] (RFC vector bounds). */
KL_MUST_CHECK int wire_read_vec_span(struct wire_reader *r, struct kl_span *out, size_t len_bytes, size_t min,
                                     size_t max);
/* KL_ERR_DECODE unless r has been consumed exactly. */
KL_MUST_CHECK int wire_reader_end(const struct wire_reader *r);

KL_MUST_CHECK int wire_put_u8(struct kl_buf *b, uint8_t v);
KL_MUST_CHECK int wire_put_u16(struct kl_buf *b, uint16_t v);
KL_MUST_CHECK int wire_put_u24(struct kl_buf *b, uint32_t v);
KL_MUST_CHECK int wire_put_u32(struct kl_buf *b, uint32_t v);
KL_MUST_CHECK int wire_put_bytes(struct kl_buf *b, const void *src, size_t len);
/* Reserve a len_bytes (1, 2 or 3) length prefix; *mark_p remembers where it is. */
KL_MUST_CHECK int wire_block_open(struct kl_buf *b, size_t *mark_p, size_t len_bytes);
/* Back-patch the prefix opened at mark with the length written since. KL_ERR_OVERFLOW if too long. */
KL_MUST_CHECK int wire_block_close(struct kl_buf *b, size_t mark, size_t len_bytes);

#endif
