#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "frame.h"

int frame_decode_header(size_t *len_p, const uint8_t hdr[FRAME_HDR_LEN])
{
    uint32_t len = ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) | ((uint32_t)hdr[2] << 8) | hdr[3];
    if (len > FRAME_MAX)
        return KL_ERR_FRAME_TOO_BIG;
    *len_p = len;
    return 0;
}

int frame_next(struct kl_span *body_p, size_t *consumed_p, const uint8_t *buf, size_t len)
{
    size_t body_len;
    int ret;
    if (len < FRAME_HDR_LEN)
        return KL_ERR_WANT_READ;
    if ((ret = frame_decode_header(&body_len, buf)) != 0)
        return ret;
    if (len - FRAME_HDR_LEN < body_len)
        return KL_ERR_WANT_READ;
    body_p->base = buf + FRAME_HDR_LEN;
    body_p->len = body_len;
    *consumed_p = FRAME_HDR_LEN + body_len;
    return 0;
}

int frame_append(struct kl_buf *out, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    int ret;
    if (n > FRAME_MAX)
        return KL_ERR_FRAME_TOO_BIG;
    if ((ret = kl_buf_reserve(out, FRAME_HDR_LEN + n)) != 0)
        return ret;
    uint8_t *p = out->base + out->len;
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    size_t packed = protobuf_c_message_pack(msg, p + FRAME_HDR_LEN);
    if (packed != n)
        return KL_ERR_PROTOBUF;
    out->len += FRAME_HDR_LEN + n;
    return 0;
}

static void *arena_alloc(void *data, size_t size)
{
    struct frame_arena *ar = data;
    size_t align = alignof(max_align_t), need = (size + align - 1) & ~(align - 1);
    if (need >= size && need <= ar->cap - ar->used) {
        void *p = ar->base + ar->used;
        ar->used += need;
        return p;
    }
    ar->heap_allocs++;
    return malloc(size);
}

static void arena_free(void *data, void *p)
{
    struct frame_arena *ar = data;
    uint8_t *b = p;
    /* Blocks in the arena go with frame_arena_reset; only the fallback ones are freed. */
    if (b != NULL && (b < ar->base || b >= ar->base + ar->cap)) {
        free(p);
    }
}

void frame_arena_init(struct frame_arena *ar, void *mem, size_t size)
{
    size_t align = alignof(max_align_t);
    uintptr_t a = ((uintptr_t)mem + align - 1) & ~(uintptr_t)(align - 1);
    size_t skip = (size_t)(a - (uintptr_t)mem);
    ar->pc.alloc = arena_alloc;
    ar->pc.free = arena_free;
    ar->pc.allocator_data = ar;
    ar->base = (uint8_t *)a;
    ar->cap = size > skip ? size - skip : 0;
    ar->used = 0;
    ar->heap_allocs = 0;
}

void frame_arena_reset(struct frame_arena *ar)
{
    ar->used = 0;
}
