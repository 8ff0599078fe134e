/* test_wire.c - the wire reader/writer: every read bounds-checked, vectors consumed exactly. */
#include "kl_test.h"
#include "wire.h"

static void test_ints(void)
{
    static const uint8_t in[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a};
    struct wire_reader r;
    uint8_t u8;
    uint16_t u16;
    uint32_t u24, u32;

    wire_reader_init(&r, in, sizeof(in));
    is_int(wire_read_u8(&r, &u8), 0, "u8");
    is_int(u8, 0x01, "u8 value");
    is_int(wire_read_u16(&r, &u16), 0, "u16");
    is_int(u16, 0x0203, "u16 value");
    is_int(wire_read_u24(&r, &u24), 0, "u24");
    is_int(u24, 0x040506, "u24 value");
    is_int(wire_read_u32(&r, &u32), 0, "u32");
    is_int(u32, 0x0708090a, "u32 value");
    is_int(wire_remaining(&r), 0, "all consumed");
    is_int(wire_reader_end(&r), 0, "end ok when consumed");
    is_int(wire_read_u8(&r, &u8), KL_ERR_DECODE, "u8 past end");

    /* Every integer width, with every shorter input: decode_error and the cursor unchanged. */
    for (size_t w = 1; w <= 4; w++) {
        for (size_t have = 0; have < w; have++) {
            int rc;
            wire_reader_init(&r, in, have);
            switch (w) {
            case 1:
                rc = wire_read_u8(&r, &u8);
                break;
            case 2:
                rc = wire_read_u16(&r, &u16);
                break;
            case 3:
                rc = wire_read_u24(&r, &u24);
                break;
            default:
                rc = wire_read_u32(&r, &u32);
                break;
            }
            char name[64];
            snprintf(name, sizeof(name), "u%zu from %zu bytes is decode_error", w * 8, have);
            ok(rc == KL_ERR_DECODE && r.p == in, name);
        }
    }
    wire_reader_init(&r, in, 3);
    is_int(wire_reader_end(&r), KL_ERR_DECODE, "trailing bytes: end is decode_error");
}

static void test_span_copy(void)
{
    static const uint8_t in[] = {1, 2, 3, 4, 5};
    struct wire_reader r;
    struct kl_span s;
    uint8_t dst[8] = {0};

    wire_reader_init(&r, in, sizeof(in));
    is_int(wire_read_span(&r, &s, 2), 0, "span");
    ok(s.base == in && s.len == 2, "span borrows input");
    is_int(wire_read_copy(&r, dst, 3), 0, "copy");
    is_mem(dst, 3, in + 2, 3, "copy bytes");
    is_int(wire_read_span(&r, &s, 1), KL_ERR_DECODE, "span past end");
    is_int(wire_read_copy(&r, dst, 1), KL_ERR_DECODE, "copy past end");
    wire_reader_init(&r, in, 4);
    is_int(wire_read_copy(&r, dst, 5), KL_ERR_DECODE, "copy longer than input");
    ok(r.p == in, "failed copy leaves cursor");
    is_int(wire_read_span(&r, &s, 0), 0, "zero-length span ok");
}

static void test_vectors(void)
{
    /* u16 vector of 3 bytes, then u8 vector of 1 byte. */
    static const uint8_t in[] = {0x00, 0x03, 0xaa, 0xbb, 0xcc, 0x01, 0xdd};
    struct wire_reader r, sub;
    struct kl_span s;
    uint8_t u8;

    wire_reader_init(&r, in, sizeof(in));
    is_int(wire_read_vec(&r, &sub, 2), 0, "open u16 vector");
    is_int(wire_remaining(&sub), 3, "sub covers content");
    is_int(wire_read_u8(&sub, &u8), 0, "read in sub");
    is_int(wire_reader_end(&sub), KL_ERR_DECODE, "sub not consumed exactly");
    struct kl_span rest;
    is_int(wire_read_span(&sub, &rest, 2), 0, "read rest of sub");
    is_int(wire_reader_end(&sub), 0, "sub consumed exactly");
    is_int(wire_read_u8(&sub, &u8), KL_ERR_DECODE, "sub cannot read into parent");
    is_int(wire_read_vec_span(&r, &s, 1, 1, 1), 0, "u8 vector span");
    ok(s.len == 1 && s.base[0] == 0xdd, "vector span content");
    is_int(wire_reader_end(&r), 0, "parent consumed");

    /* A vector longer than its parent, for each prefix width. */
    static const uint8_t long1[] = {0x03, 0xaa, 0xbb};
    static const uint8_t long2[] = {0x00, 0x03, 0xaa, 0xbb};
    static const uint8_t long3[] = {0x00, 0x00, 0x03, 0xaa, 0xbb};
    wire_reader_init(&r, long1, sizeof(long1));
    is_int(wire_read_vec(&r, &sub, 1), KL_ERR_DECODE, "u8 vector longer than parent");
    ok(r.p == long1, "failed open leaves cursor");
    wire_reader_init(&r, long2, sizeof(long2));
    is_int(wire_read_vec(&r, &sub, 2), KL_ERR_DECODE, "u16 vector longer than parent");
    wire_reader_init(&r, long3, sizeof(long3));
    is_int(wire_read_vec(&r, &sub, 3), KL_ERR_DECODE, "u24 vector longer than parent");
    /* Truncated length prefix itself. */
    wire_reader_init(&r, long3, 2);
    is_int(wire_read_vec(&r, &sub, 3), KL_ERR_DECODE, "u24 prefix truncated");
    wire_reader_init(&r, long2, 1);
    is_int(wire_read_vec(&r, &sub, 2), KL_ERR_DECODE, "u16 prefix truncated");
    wire_reader_init(&r, long1, 0);
    is_int(wire_read_vec(&r, &sub, 1), KL_ERR_DECODE, "u8 prefix on empty input");
    /* Nested: inner vector claims more than the outer vector holds, though the input has it. */
    static const uint8_t nested[] = {0x00, 0x02, 0x00, 0x03, 0xaa, 0xbb, 0xcc};
    struct wire_reader inner;
    wire_reader_init(&r, nested, sizeof(nested));
    is_int(wire_read_vec(&r, &sub, 2), 0, "outer vector");
    is_int(wire_read_vec(&sub, &inner, 2), KL_ERR_DECODE, "inner vector longer than outer");
    /* Bounds on vec_span. */
    wire_reader_init(&r, in, sizeof(in));
    is_int(wire_read_vec_span(&r, &s, 2, 4, 10), KL_ERR_DECODE, "vector shorter than min");
    ok(r.p == in, "failed vec_span leaves cursor");
    is_int(wire_read_vec_span(&r, &s, 2, 0, 2), KL_ERR_DECODE, "vector longer than max");
    is_int(wire_read_vec_span(&r, &s, 2, 3, 3), 0, "vector within bounds");
    is_int(wire_read_vec(&r, &sub, 4), KL_ERR_INVALID, "bad prefix width");
    static const uint8_t empty_vec[] = {0x00};
    wire_reader_init(&r, empty_vec, 1);
    is_int(wire_read_vec_span(&r, &s, 1, 1, 255), KL_ERR_DECODE, "empty vector where min is 1");
}

static void test_writer(void)
{
    struct kl_buf b;
    size_t m1, m2;
    kl_buf_init(&b, 64);
    is_int(wire_put_u8(&b, 0x01), 0, "put u8");
    is_int(wire_put_u16(&b, 0x0203), 0, "put u16");
    is_int(wire_put_u24(&b, 0x040506), 0, "put u24");
    is_int(wire_put_u32(&b, 0x0708090a), 0, "put u32");
    is_int(wire_put_u24(&b, 0x1000000), KL_ERR_OVERFLOW, "u24 out of range");
    static const uint8_t want1[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    is_mem(b.base, b.len, want1, sizeof(want1), "integers big-endian");
    kl_buf_reset(&b);

    is_int(wire_block_open(&b, &m1, 2), 0, "open outer block");
    is_int(wire_block_open(&b, &m2, 1), 0, "open inner block");
    is_int(wire_put_bytes(&b, "abc", 3), 0, "content");
    is_int(wire_block_close(&b, m2, 1), 0, "close inner");
    is_int(wire_block_close(&b, m1, 2), 0, "close outer");
    static const uint8_t want2[] = {0x00, 0x04, 0x03, 'a', 'b', 'c'};
    is_mem(b.base, b.len, want2, sizeof(want2), "back-patched lengths");

    /* Round trip through the reader. */
    struct wire_reader r, sub;
    struct kl_span s;
    wire_reader_init(&r, b.base, b.len);
    ok(wire_read_vec(&r, &sub, 2) == 0 && wire_read_vec_span(&sub, &s, 1, 3, 3) == 0 && wire_reader_end(&sub) == 0 &&
           wire_reader_end(&r) == 0,
       "writer output parses back");
    kl_buf_reset(&b);

    /* Block overflow: 256 bytes in a u8 block. */
    uint8_t big[256];
    memset(big, 0x5a, sizeof(big));
    struct kl_buf b2;
    kl_buf_init(&b2, 1024);
    is_int(wire_block_open(&b2, &m1, 1), 0, "open u8 block");
    is_int(wire_put_bytes(&b2, big, 255), 0, "255 bytes");
    is_int(wire_block_close(&b2, m1, 1), 0, "255 fits u8");
    is_int(b2.base[0], 255, "prefix 255");
    kl_buf_reset(&b2);
    is_int(wire_block_open(&b2, &m1, 1), 0, "open u8 block again");
    is_int(wire_put_bytes(&b2, big, 256), 0, "256 bytes");
    is_int(wire_block_close(&b2, m1, 1), KL_ERR_OVERFLOW, "256 overflows u8 block");
    is_int(wire_block_close(&b2, 5000, 1), KL_ERR_INVALID, "mark past end is invalid");
    is_int(wire_block_open(&b2, &m1, 0), KL_ERR_INVALID, "block width 0 invalid");
    kl_buf_dispose(&b2);

    /* Capacity: the buffer's max is a hard bound. */
    struct kl_buf small;
    kl_buf_init(&small, 4);
    is_int(wire_put_u32(&small, 1), 0, "fill to max");
    is_int(wire_put_u8(&small, 1), KL_ERR_OVERFLOW, "past max is overflow");
    is_int(small.len, 4, "failed put leaves length");
    kl_buf_reset(&small);
    is_int(wire_put_u16(&small, 0), 0, "2 bytes");
    is_int(wire_block_open(&small, &m1, 3), KL_ERR_OVERFLOW, "block prefix past max");
    kl_buf_dispose(&small);
    kl_buf_dispose(&b);
}

int main(void)
{
    test_ints();
    test_span_copy();
    test_vectors();
    test_writer();
    return kl_test_done();
}
