/*
 * frame.h - the RPC framing both processes share.
 *
 * On the SOCK_STREAM Unix socket every message is a 4-byte big-endian length
 * followed by that many bytes of one protobuf message (keyless.v1.Request from
 * client to signer, keyless.v1.Response back). A length over FRAME_MAX is refused
 * from the header alone, before anything is allocated.
 */
#ifndef KL_FRAME_H
#define KL_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include "kl_buf.h"
#include "kl_err.h"

#define FRAME_HDR_LEN 4
#define FRAME_MAX (64 * 1024) /* largest protobuf body accepted, in bytes */

/*
 * Decode the 4-byte header at hdr into *len_p.
 * KL_ERR_FRAME_TOO_BIG if the announced length exceeds FRAME_MAX.
 */
KL_MUST_CHECK int frame_decode_header(size_t *len_p, const uint8_t hdr[FRAME_HDR_LEN]);

/*
 * Find the first complete frame in buf[0..len).
 * On success *body_p borrows its body from buf and *consumed_p is header + body.
 * KL_ERR_WANT_READ if more bytes are needed, KL_ERR_FRAME_TOO_BIG if the header
 * announces an oversize frame (the stream cannot be resynchronised: close it).
 */
KL_MUST_CHECK int frame_next(struct kl_span *body_p, size_t *consumed_p, const uint8_t *buf, size_t len);

/*
 * Append one framed message (header + packed protobuf) to out.
 * KL_ERR_FRAME_TOO_BIG if the packed message exceeds FRAME_MAX; out is unchanged on error.
 */
KL_MUST_CHECK int frame_append(struct kl_buf *out, const ProtobufCMessage *msg);

/*
 * A bump allocator for protobuf-c's unpack (issue 15): the unpacked message of one frame
 * lives in caller memory (a stack buffer) instead of one malloc per field; whatever does
 * not fit falls back to malloc. Pass &arena->pc to *_unpack and *_free_unpacked (the
 * latter frees only the fallback blocks), then frame_arena_reset before the next frame.
 * Not thread-safe: one per reader. It holds what the frames carried (public: transcript
 * hashes, names, signatures) and is not wiped.
 */
struct frame_arena {
    ProtobufCAllocator pc;
    uint8_t *base;
    size_t cap, used;
    size_t heap_allocs; /* fallback mallocs since init (for tests and benchmarks) */
};

/* Start an empty arena over mem[0..size) (mem is borrowed and must outlive it). */
void frame_arena_init(struct frame_arena *ar, void *mem, size_t size);
/* Forget every arena allocation (free_unpacked first, for the fallback blocks). */
void frame_arena_reset(struct frame_arena *ar);

#endif
