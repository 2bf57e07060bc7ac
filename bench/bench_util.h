/* Small helpers shared by the bench programs (header-only). */
#ifndef DXB_BENCH_UTIL_H
#define DXB_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

static inline double
bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline uint64_t
bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Results are printed as "key=value" lines; tools/bench collects them. */
static inline void
bench_put(const char *key, double value)
{
    printf("%s=%.3f\n", key, value);
    fflush(stdout);
}

#endif
