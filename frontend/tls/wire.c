/*
 * wire.c - bounds-checked reader and capacity-checked writer for every TLS byte.
 * The contract is in wire.h; this is the only place that does arithmetic on packet pointers.
 */
#include <string.h>
#include "wire.h"

void wire_reader_init(struct wire_reader *r, const uint8_t *p, size_t len)
{
    r->p = p;
    r->end = p + len;
}

/* Read an n-byte (n <= 4) big-endian integer. */
static int read_be(struct wire_reader *r, uint32_t *v, size_t n)
{
    uint32_t x = 0;
    if (wire_remaining(r) < n)
        return KL_ERR_DECODE;
    for (size_t i = 0; i < n; i++)
        x = (x << 8) | r->p[i];
    r->p += n;
    *v = x;
    return 0;
}

int wire_read_u8(struct wire_reader *r, uint8_t *v)
{
    uint32_t x;
    int ret = read_be(r, &x, 1);
    if (ret == 0)
        *v = (uint8_t)x;
    return ret;
}

int wire_read_u16(struct wire_reader *r, uint16_t *v)
{
    uint32_t x;
    int ret = read_be(r, &x, 2);
    if (ret == 0)
        *v = (uint16_t)x;
    return ret;
}

int wire_read_u24(struct wire_reader *r, uint32_t *v)
{
    return read_be(r, v, 3);
}

int wire_read_u32(struct wire_reader *r, uint32_t *v)
{
    return read_be(r, v, 4);
}

int wire_read_span(struct wire_reader *r, struct kl_span *out, size_t n)
{
    if (wire_remaining(r) < n)
        return KL_ERR_DECODE;
    out->base = r->p;
    out->len = n;
    r->p += n;
    return 0;
}

int wire_read_copy(struct wire_reader *r, void *dst, size_t n)
{
    if (wire_remaining(r) < n)
        return KL_ERR_DECODE;
    if (n > 0)
        memcpy(dst, r->p, n);
    r->p += n;
    return 0;
}

int wire_read_vec(struct wire_reader *r, struct wire_reader *sub, size_t len_bytes)
{
    uint32_t len;
    int ret;
    if (len_bytes < 1 || len_bytes > 3)
        return KL_ERR_INVALID;
    /* Work on a copy so that a failed open leaves r where it was. */
    struct wire_reader tmp = *r;
    if ((ret = read_be(&tmp, &len, len_bytes)) != 0)
        return ret;
    if (wire_remaining(&tmp) < len)
        return KL_ERR_DECODE;
    sub->p = tmp.p;
    sub->end = tmp.p + len;
    r->p = tmp.p + len;
    return 0;
}

int wire_read_vec_span(struct wire_reader *r, struct kl_span *out, size_t len_bytes, size_t min, size_t max)
{
    struct wire_reader sub, tmp = *r;
    int ret;
    if ((ret = wire_read_vec(&tmp, &sub, len_bytes)) != 0)
        return ret;
    size_t len = wire_remaining(&sub);
    if (len < min || len > max)
        return KL_ERR_DECODE;
    out->base = sub.p;
    out->len = len;
    *r = tmp;
    return 0;
}

int wire_reader_end(const struct wire_reader *r)
{
    return r->p == r->end ? 0 : KL_ERR_DECODE;
}

/* Append n big-endian bytes of v. */
static int put_be(struct kl_buf *b, uint32_t v, size_t n)
{
    uint8_t tmp[4];
    for (size_t i = 0; i < n; i++)
        tmp[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    return kl_buf_append(b, tmp, n);
}

int wire_put_u8(struct kl_buf *b, uint8_t v)
{
    return put_be(b, v, 1);
}

int wire_put_u16(struct kl_buf *b, uint16_t v)
{
    return put_be(b, v, 2);
}

int wire_put_u24(struct kl_buf *b, uint32_t v)
{
    if (v > 0xffffff)
        return KL_ERR_OVERFLOW;
    return put_be(b, v, 3);
}

int wire_put_u32(struct kl_buf *b, uint32_t v)
{
    return put_be(b, v, 4);
}

int wire_put_bytes(struct kl_buf *b, const void *src, size_t len)
{
    return kl_buf_append(b, src, len);
}

int wire_block_open(struct kl_buf *b, size_t *mark_p, size_t len_bytes)
{
    int ret;
    if (len_bytes < 1 || len_bytes > 3)
        return KL_ERR_INVALID;
    *mark_p = b->len;
    /* Placeholder zeros, back-patched by wire_block_close. */
    if ((ret = put_be(b, 0, len_bytes)) != 0)
        return ret;
    return 0;
}

int wire_block_close(struct kl_buf *b, size_t mark, size_t len_bytes)
{
    if (len_bytes < 1 || len_bytes > 3 || mark > b->len || b->len - mark < len_bytes)
        return KL_ERR_INVALID;
    size_t len = b->len - mark - len_bytes;
    if (len >= (size_t)1 << (8 * len_bytes))
        return KL_ERR_OVERFLOW;
    for (size_t i = 0; i < len_bytes; i++)
        b->base[mark + i] = (uint8_t)(len >> (8 * (len_bytes - 1 - i)));
    return 0;
}
