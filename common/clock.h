/*
 * clock.h - the one monotonic clock both processes read.
 *
 * CLOCK_MONOTONIC: never jumps with the wall clock, so deadlines, timeouts and latencies
 * computed from it stay right across NTP steps. Wall-clock time (audit records, log
 * lines) is read where it is printed, not here.
 */
#ifndef KL_CLOCK_H
#define KL_CLOCK_H

#include <stdint.h>

/* Monotonic time now, in nanoseconds, microseconds or milliseconds. */
uint64_t kl_clock_ns(void);
uint64_t kl_clock_us(void);
uint64_t kl_clock_ms(void);

#endif
