/* Unit tests for common/kl_buf.c: the max bound (before any allocation), growth that keeps
 * the contents, consume/reset that wipe what they drop, the nowipe variants, and kl_wipe. */
#include <stdint.h>
#include "kl_test.h"
#include "kl_buf.h"

static int all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != 0)
            return 0;
    }
    return 1;
}

static void test_bounds(void)
{
    struct kl_buf b;
    uint8_t src[64];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (uint8_t)(i + 1);

    kl_buf_init(&b, 10);
    ok(b.base == NULL && b.len == 0 && b.cap == 0 && b.max == 10, "init allocates nothing and records max");
    is_int(kl_buf_reserve(&b, 11), KL_ERR_OVERFLOW, "reserve past max fails");
    ok(b.base == NULL, "... before allocating");
    is_int(kl_buf_reserve(&b, SIZE_MAX), KL_ERR_OVERFLOW, "reserve SIZE_MAX fails (no wrap-around)");
    is_int(kl_buf_append(&b, src, 10), 0, "append exactly max bytes");
    ok(b.len == 10 && b.cap <= b.max, "len = max, cap never above max");
    is_int(kl_buf_append(&b, src, 1), KL_ERR_OVERFLOW, "one byte more fails");
    is_int((int)b.len, 10, "... and leaves len alone");
    is_mem(b.base, b.len, src, 10, "... and the contents");
    is_int(kl_buf_reserve(&b, SIZE_MAX - 5), KL_ERR_OVERFLOW, "reserve whose len + extra wraps fails");
    is_int(kl_buf_append(&b, src, 0), 0, "appending nothing to a full buffer succeeds");
    kl_buf_dispose(&b);
    ok(b.base == NULL && b.len == 0 && b.cap == 0, "dispose empties the buffer");
    is_int(kl_buf_append(&b, src, 3), 0, "a disposed buffer is reusable");
    is_int((int)b.max, 10, "... with its max");
    kl_buf_dispose(&b);

    kl_buf_init(&b, 0);
    is_int(kl_buf_append(&b, src, 1), KL_ERR_OVERFLOW, "max 0: any byte overflows");
    is_int(kl_buf_append(&b, src, 0), 0, "max 0: nothing fits");
    ok(b.base == NULL, "max 0: never allocates");
    kl_buf_dispose(&b);
}

static void test_growth(void)
{
    struct kl_buf b;
    uint8_t want[5000];
    int grew = 0, capped = 1, kept = 1;
    kl_buf_init(&b, sizeof(want));
    for (size_t i = 0; i < sizeof(want); i++) {
        uint8_t c = (uint8_t)(i * 7 + 3);
        want[i] = c;
        size_t cap = b.cap;
        if (kl_buf_append(&b, &c, 1) != 0) {
            kept = 0;
            break;
        }
        if (b.cap != cap)
            grew++;
        if (b.cap > b.max)
            capped = 0;
        if (b.base[i] != c || b.len != i + 1)
            kept = 0;
    }
    ok(kept, "5000 one-byte appends all succeed");
    is_mem(b.base, b.len, want, sizeof(want), "growth keeps every byte");
    ok(capped, "cap never exceeds max while growing");
    ok(grew >= 2 && grew <= 16, "the buffer grows geometrically (a few times, not per byte)");
    is_int((int)b.cap, (int)sizeof(want), "the last growth stops at max");
    uint8_t one = 0;
    is_int(kl_buf_append(&b, &one, 1), KL_ERR_OVERFLOW, "full at max after growing");
    kl_buf_dispose(&b);
}

static void test_consume_reset(void)
{
    struct kl_buf b;
    const uint8_t msg[] = "0123456789abcdef";
    kl_buf_init(&b, 1024);
    ok(kl_buf_append(&b, msg, 16) == 0, "append 16 bytes");
    uint8_t *base = b.base;

    kl_buf_consume(&b, 0);
    is_mem(b.base, b.len, msg, 16, "consume 0 changes nothing");
    kl_buf_consume(&b, 6);
    is_mem(b.base, b.len, msg + 6, 10, "consume 6 moves the rest to the front");
    ok(b.base == base, "... in place");
    ok(all_zero(b.base + 10, 6), "... and wipes the 6 bytes freed at the tail");
    kl_buf_consume(&b, 10);
    is_int((int)b.len, 0, "consume everything empties it");
    ok(all_zero(b.base, 16), "... and wipes all that was in use");
    ok(kl_buf_append(&b, msg, 16) == 0, "refill");
    kl_buf_consume(&b, 100);
    is_int((int)b.len, 0, "consume more than len empties it");
    ok(all_zero(b.base, 16), "... wiping it");

    ok(kl_buf_append(&b, msg, 16) == 0, "refill");
    size_t cap = b.cap;
    kl_buf_reset(&b);
    ok(b.len == 0 && b.cap == cap && b.base == base, "reset keeps the allocation");
    ok(all_zero(b.base, 16), "reset wipes the bytes that were in use");
    kl_buf_dispose(&b);

    /* The nowipe variants move the same way and leave the dropped bytes alone. */
    kl_buf_init(&b, 1024);
    ok(kl_buf_append(&b, msg, 16) == 0, "append 16 bytes");
    kl_buf_consume_nowipe(&b, 6);
    is_mem(b.base, b.len, msg + 6, 10, "consume_nowipe moves the rest to the front");
    is_mem(b.base + 10, 6, msg + 10, 6, "... without wiping the tail");
    kl_buf_consume_nowipe(&b, 99);
    is_int((int)b.len, 0, "consume_nowipe past len empties it");
    ok(kl_buf_append(&b, msg, 16) == 0, "refill");
    kl_buf_reset_nowipe(&b);
    ok(b.len == 0 && b.base != NULL, "reset_nowipe empties and keeps the allocation");
    is_mem(b.base, 16, msg, 16, "... without wiping");
    kl_buf_dispose_nowipe(&b);
    ok(b.base == NULL && b.len == 0 && b.cap == 0, "dispose_nowipe empties the buffer");
    kl_buf_dispose_nowipe(&b);
    kl_buf_dispose(&b);
    ok(b.base == NULL, "disposing twice is harmless");
}

static void test_wipe(void)
{
    uint8_t key[48];
    memset(key, 0xa5, sizeof(key));
    kl_wipe(key + 8, 32);
    ok(all_zero(key + 8, 32), "kl_wipe zeroes the range");
    ok(key[7] == 0xa5 && key[40] == 0xa5, "... and nothing outside it");
    kl_wipe(key, 0);
    ok(key[0] == 0xa5, "kl_wipe of 0 bytes writes nothing");
    kl_wipe(NULL, 16); /* must return without touching memory: a crash here fails the test */
}

int main(void)
{
    test_bounds();
    test_growth();
    test_consume_reset();
    test_wipe();
    return kl_test_done();
}
