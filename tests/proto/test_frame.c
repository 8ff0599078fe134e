/* Framing and the generated protobuf code: round trips, bounds, truncation. */
#include <stddef.h>
#include <stdint.h>
#include "kl_test.h"
#include "frame.h"
#include "keyless.pb-c.h"

static void test_roundtrip(void)
{
    struct kl_buf out;
    kl_buf_init(&out, 2 * FRAME_MAX);
    Keyless__V1__Request req = KEYLESS__V1__REQUEST__INIT;
    Keyless__V1__SignRequest sign = KEYLESS__V1__SIGN_REQUEST__INIT;
    uint8_t hash[32];
    memset(hash, 0xab, sizeof(hash));
    req.id = 0x0102030405060708ULL;
    req.body_case = KEYLESS__V1__REQUEST__BODY_SIGN;
    req.sign = &sign;
    sign.key = "ecdsa-p256";
    sign.scheme = 0x0403;
    sign.context = KEYLESS__V1__CONTEXT__SERVER_CERTIFICATE_VERIFY;
    sign.transcript_hash.data = hash;
    sign.transcript_hash.len = sizeof(hash);
    is_int(frame_append(&out, &req.base), 0, "append a sign request");
    is_int(frame_append(&out, &req.base), 0, "append a second one");

    struct kl_span body;
    size_t used;
    is_int(frame_next(&body, &used, out.base, out.len), 0, "first frame complete");
    is_int(used, FRAME_HDR_LEN + body.len, "consumed = header + body");
    Keyless__V1__Request *got = keyless__v1__request__unpack(NULL, body.len, body.base);
    ok(got != NULL, "unpacks");
    if (got != NULL) {
        is_int(got->id, req.id, "id survives");
        is_int(got->body_case, KEYLESS__V1__REQUEST__BODY_SIGN, "oneof sign");
        is_int(got->sign->scheme, 0x0403, "scheme");
        is_mem(got->sign->transcript_hash.data, got->sign->transcript_hash.len, hash, sizeof(hash), "hash");
        keyless__v1__request__free_unpacked(got, NULL);
    }
    /* Every strict prefix of the stream is incomplete, never an error or a frame. */
    int all_want = 1;
    for (size_t n = 0; n < used; n++) {
        if (frame_next(&body, &used, out.base, n) != KL_ERR_WANT_READ)
            all_want = 0;
    }
    ok(all_want, "every truncation asks for more input");
    kl_buf_dispose(&out);
}

static void test_bounds(void)
{
    uint8_t hdr[8] = {0, 1, 0, 0, 0, 0, 0, 0}; /* 65536 = FRAME_MAX: allowed */
    size_t len;
    is_int(frame_decode_header(&len, hdr), 0, "FRAME_MAX accepted");
    is_int(len, FRAME_MAX, "length decoded");
    hdr[3] = 1; /* 65537 */
    is_int(frame_decode_header(&len, hdr), KL_ERR_FRAME_TOO_BIG, "FRAME_MAX + 1 refused");
    uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    struct kl_span body;
    is_int(frame_next(&body, &len, huge, 4), KL_ERR_FRAME_TOO_BIG, "4 GiB header refused from the header alone");
    uint8_t empty[4] = {0, 0, 0, 0};
    is_int(frame_next(&body, &len, empty, 4), 0, "empty frame is a frame");
    is_int(body.len, 0, "of length 0");

    /* Garbage does not unpack. */
    uint8_t garbage[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f};
    ok(keyless__v1__request__unpack(NULL, sizeof(garbage), garbage) == NULL, "garbage protobuf refused");

    /* A message whose packed size exceeds FRAME_MAX is not framed, and out is untouched. */
    struct kl_buf out;
    kl_buf_init(&out, 4 * FRAME_MAX);
    static uint8_t big[FRAME_MAX + 1];
    Keyless__V1__Response resp = KEYLESS__V1__RESPONSE__INIT;
    Keyless__V1__SignResponse sr = KEYLESS__V1__SIGN_RESPONSE__INIT;
    resp.body_case = KEYLESS__V1__RESPONSE__BODY_SIGN;
    resp.sign = &sr;
    sr.signature.data = big;
    sr.signature.len = sizeof(big);
    is_int(frame_append(&out, &resp.base), KL_ERR_FRAME_TOO_BIG, "oversize message not framed");
    is_int(out.len, 0, "nothing written");
    kl_buf_dispose(&out);

    /* A bounded kl_buf refuses to grow past max. */
    struct kl_buf small;
    kl_buf_init(&small, 8);
    is_int(kl_buf_append(&small, "12345678", 8), 0, "fill to max");
    is_int(kl_buf_append(&small, "9", 1), KL_ERR_OVERFLOW, "past max refused");
    kl_buf_consume(&small, 3);
    is_mem(small.base, small.len, "45678", 5, "consume shifts");
    /* consume wipes the freed tail; the nowipe variant only shifts (wire bytes only). */
    is_int(small.base[5] | small.base[6] | small.base[7], 0, "consume wiped the vacated tail");
    kl_buf_consume_nowipe(&small, 2);
    is_mem(small.base, small.len, "678", 3, "consume_nowipe shifts");
    kl_buf_consume_nowipe(&small, 10);
    is_int(small.len, 0, "consume_nowipe past the end empties");
    is_int(kl_buf_append(&small, "abcdefgh", 8), 0, "refill after consume_nowipe");
    kl_buf_reset_nowipe(&small);
    is_int(small.len, 0, "reset_nowipe empties");
    ok(small.base != NULL && small.cap == 8, "reset_nowipe keeps the allocation");
    is_int(kl_buf_append(&small, "x", 1), 0, "reusable after reset_nowipe");
    kl_buf_dispose_nowipe(&small);
    ok(small.base == NULL && small.len == 0 && small.cap == 0, "dispose_nowipe frees");
    kl_buf_dispose(&small);
}

/* Issue 15: unpacking into a frame_arena gives the same message as malloc, spills to the
 * heap only when the arena is full, and refuses what the malloc path refuses. */
static void test_arena(void)
{
    Keyless__V1__Request req = KEYLESS__V1__REQUEST__INIT;
    Keyless__V1__SignRequest sign = KEYLESS__V1__SIGN_REQUEST__INIT;
    uint8_t hash[48], packed[4096], mem[2048], tiny[64];
    char long_name[3000];
    struct frame_arena ar;
    size_t n;
    memset(hash, 0x5c, sizeof(hash));
    req.id = 77;
    req.body_case = KEYLESS__V1__REQUEST__BODY_SIGN;
    req.sign = &sign;
    sign.key = "rsa-2048";
    sign.scheme = 0x0804;
    sign.transcript_hash.data = hash;
    sign.transcript_hash.len = sizeof(hash);
    sign.server_name = "www.example.com";
    n = keyless__v1__request__pack(&req, packed);

    frame_arena_init(&ar, mem, sizeof(mem));
    Keyless__V1__Request *a = keyless__v1__request__unpack(&ar.pc, n, packed);
    ok(a != NULL && a->id == 77 && a->body_case == KEYLESS__V1__REQUEST__BODY_SIGN, "arena: a sign request unpacks");
    ok(a != NULL && strcmp(a->sign->key, "rsa-2048") == 0 && strcmp(a->sign->server_name, "www.example.com") == 0 &&
           a->sign->transcript_hash.len == 48 && memcmp(a->sign->transcript_hash.data, hash, 48) == 0,
       "arena: every field as packed");
    ok(a != NULL && (uint8_t *)a >= mem && (uint8_t *)a < mem + sizeof(mem) && (uint8_t *)a->sign->key >= mem &&
           (uint8_t *)a->sign->key < mem + sizeof(mem),
       "arena: the message and its strings live in the caller's memory");
    is_int(ar.heap_allocs, 0, "arena: no malloc for a sign request");
    ok(((uintptr_t)a % _Alignof(max_align_t)) == 0 && ((uintptr_t)a->sign % _Alignof(max_align_t)) == 0,
       "arena: blocks are aligned for any type");
    keyless__v1__request__free_unpacked(a, &ar.pc);

    /* A name larger than the arena: it spills to malloc and is freed by free_unpacked
     * (the ASan build's leak check fails otherwise). */
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    sign.server_name = long_name;
    n = keyless__v1__request__pack(&req, packed);
    frame_arena_reset(&ar);
    a = keyless__v1__request__unpack(&ar.pc, n, packed);
    ok(a != NULL && strlen(a->sign->server_name) == sizeof(long_name) - 1, "arena full: a long name still unpacks");
    ok(ar.heap_allocs >= 1, "... from the heap");
    keyless__v1__request__free_unpacked(a, &ar.pc);

    /* An arena too small for anything: every block from the heap, nothing lost. */
    frame_arena_init(&ar, tiny, sizeof(tiny));
    sign.server_name = "x";
    n = keyless__v1__request__pack(&req, packed);
    a = keyless__v1__request__unpack(&ar.pc, n, packed);
    ok(a != NULL && strcmp(a->sign->key, "rsa-2048") == 0 && ar.heap_allocs >= 2,
       "a tiny arena: the request unpacks, mostly from the heap");
    keyless__v1__request__free_unpacked(a, &ar.pc);

    /* Negative: what malloc's unpack refuses, the arena refuses too (and frees its spills). */
    static const uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01};
    static const uint8_t truncated[] = {0x08, 0x4d, 0x22, 0x10, 0x0a, 0x08, 'r', 's'};
    frame_arena_init(&ar, mem, sizeof(mem));
    ok(keyless__v1__request__unpack(&ar.pc, sizeof(junk), junk) == NULL, "arena: garbage refused");
    frame_arena_reset(&ar);
    ok(keyless__v1__request__unpack(&ar.pc, sizeof(truncated), truncated) == NULL, "arena: a truncated sign refused");
    ok(keyless__v1__request__unpack(NULL, sizeof(truncated), truncated) == NULL, "... as malloc's unpack refuses it");
}

int main(void)
{
    test_roundtrip();
    test_bounds();
    test_arena();
    return kl_test_done();
}
