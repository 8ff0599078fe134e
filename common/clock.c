#include <time.h>
#include "clock.h"

uint64_t kl_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t kl_clock_us(void)
{
    return kl_clock_ns() / 1000u;
}

uint64_t kl_clock_ms(void)
{
    return kl_clock_ns() / 1000000u;
}
