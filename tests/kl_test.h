/*
 * kl_test.h - a small TAP harness for the unit tests (one executable per module).
 *
 *   int main(void) { ok(1 + 1 == 2, "arith"); is_int(f(), 0, "f"); return kl_test_done(); }
 *
 * Each check prints "ok N - name" or "not ok N - name" with the values that differed.
 * kl_test_done() prints the plan and returns the exit status for ctest.
 */
#ifndef KL_TEST_H
#define KL_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

static int kl_test_n, kl_test_failed;

static inline int kl_test_report(int pass, const char *file, int line, const char *name)
{
    ++kl_test_n;
    if (!pass)
        ++kl_test_failed;
    printf("%s %d - %s\n", pass ? "ok" : "not ok", kl_test_n, name);
    if (!pass)
        printf("#   failed at %s:%d\n", file, line);
    fflush(stdout);
    return pass;
}

static inline void kl_test_hexdiag(const char *label, const void *p, size_t len)
{
    const uint8_t *b = p;
    printf("#   %s (%zu):", label, len);
    for (size_t i = 0; i < len && i < 64; i++)
        printf("%02x", b[i]);
    printf("%s\n", len > 64 ? "..." : "");
}

#define ok(cond, name) kl_test_report(!!(cond), __FILE__, __LINE__, (name))

#define is_int(got, want, name)                                                                                        \
    do {                                                                                                               \
        long long kl_g_ = (long long)(got), kl_w_ = (long long)(want);                                                 \
        if (!kl_test_report(kl_g_ == kl_w_, __FILE__, __LINE__, (name)))                                               \
            printf("#   got %lld (0x%llx), want %lld (0x%llx)\n", kl_g_, (unsigned long long)kl_g_, kl_w_,             \
                   (unsigned long long)kl_w_);                                                                         \
    } while (0)

#define is_mem(got, got_len, want, want_len, name)                                                                     \
    do {                                                                                                               \
        size_t kl_gl_ = (got_len), kl_wl_ = (want_len);                                                                \
        int kl_pass_ = kl_gl_ == kl_wl_ && (kl_gl_ == 0 || memcmp((got), (want), kl_gl_) == 0);                        \
        if (!kl_test_report(kl_pass_, __FILE__, __LINE__, (name))) {                                                   \
            kl_test_hexdiag("got ", (got), kl_gl_);                                                                    \
            kl_test_hexdiag("want", (want), kl_wl_);                                                                   \
        }                                                                                                              \
    } while (0)

/* A check that cannot be made here (TAP "# SKIP"): counted, never a failure, and says why. */
#define skip(name, why)                                                                                                \
    do {                                                                                                               \
        printf("ok %d - %s # SKIP %s\n", ++kl_test_n, (name), (why));                                                  \
        fflush(stdout);                                                                                                \
    } while (0)

#define diag(...)                                                                                                      \
    do {                                                                                                               \
        printf("# ");                                                                                                  \
        printf(__VA_ARGS__);                                                                                           \
        printf("\n");                                                                                                  \
    } while (0)

static inline int kl_test_done(void)
{
    printf("1..%d\n", kl_test_n);
    if (kl_test_failed)
        printf("# %d of %d checks failed\n", kl_test_failed, kl_test_n);
    return kl_test_failed == 0 && kl_test_n > 0 ? 0 : 1;
}

#endif
