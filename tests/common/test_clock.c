/* Unit tests for common/clock.c: the clock is CLOCK_MONOTONIC (bracketed by direct reads),
 * never goes back, advances across a sleep by about the time slept, and its ns, us and ms
 * readings agree with each other. */
#include <time.h>
#include "kl_test.h"
#include "clock.h"

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

int main(void)
{
    /* The same clock as CLOCK_MONOTONIC: each reading sits between two direct ones. */
    uint64_t a = mono_ns();
    uint64_t ns = kl_clock_ns();
    uint64_t us = kl_clock_us();
    uint64_t ms = kl_clock_ms();
    uint64_t b = mono_ns();
    ok(a <= ns && ns <= b, "kl_clock_ns reads CLOCK_MONOTONIC");
    ok(a / 1000 <= us && us <= b / 1000, "kl_clock_us = CLOCK_MONOTONIC in microseconds");
    ok(a / 1000000 <= ms && ms <= b / 1000000, "kl_clock_ms = CLOCK_MONOTONIC in milliseconds");
    ok(ns / 1000 <= us && us / 1000 <= ms, "ns, then us, then ms: each at least the previous one scaled");
    ok(b - a < 1000000000u, "the readings are not seconds apart");

    int backwards = 0;
    uint64_t prev_ns = kl_clock_ns(), prev_us = kl_clock_us(), prev_ms = kl_clock_ms();
    for (int i = 0; i < 200000; i++) {
        uint64_t n = kl_clock_ns(), u = kl_clock_us(), m = kl_clock_ms();
        if (n < prev_ns || u < prev_us || m < prev_ms)
            backwards++;
        prev_ns = n;
        prev_us = u;
        prev_ms = m;
    }
    is_int(backwards, 0, "200000 readings of each unit: none goes back");
    ok(prev_ns > a, "the clock advanced over the loop");

    uint64_t t0_ns = kl_clock_ns(), t0_us = kl_clock_us(), t0_ms = kl_clock_ms();
    sleep_ms(50);
    uint64_t d_ns = kl_clock_ns() - t0_ns, d_us = kl_clock_us() - t0_us, d_ms = kl_clock_ms() - t0_ms;
    diag("50 ms sleep: %llu ns, %llu us, %llu ms", (unsigned long long)d_ns, (unsigned long long)d_us,
         (unsigned long long)d_ms);
    ok(d_ns >= 50000000u && d_ns < 5000000000u, "a 50 ms sleep advances ns by >= 50 ms (and < 5 s)");
    ok(d_us >= 49999 && d_us < 5000000u, "... us by >= 50 ms");
    ok(d_ms >= 49 && d_ms < 5000, "... ms by >= 50 ms (to the millisecond)");
    /* The three were read in sequence, so they differ by the reading time, not by a scale error. */
    ok(d_us / 1000 + 2 >= d_ns / 1000000 && d_ns / 1000000 + 2 >= d_us / 1000, "ns and us elapsed agree");
    ok(d_ms + 2 >= d_us / 1000 && d_us / 1000 + 2 >= d_ms, "us and ms elapsed agree");
    return kl_test_done();
}
