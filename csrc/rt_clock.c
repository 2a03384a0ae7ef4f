/* See rt_clock.h. CLOCK_MONOTONIC is system-wide on Linux, which is what lets
 * worker processes stamp records that the parent converts with its own origin. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <time.h>

#include "rt_clock.h"
#include "rt_status.h"

static inline int64_t ts_ns(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000000000LL + (int64_t)ts->tv_nsec;
}

int64_t rt_now_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return -(int64_t)errno;
    return ts_ns(&ts);
}

int rt_clock_resolution_ns(int64_t *out)
{
    struct timespec ts;
    if (out == NULL)
        return RT_EINVAL;
    if (clock_getres(CLOCK_MONOTONIC, &ts) != 0)
        return RT_ESYS;
    *out = ts_ns(&ts);
    return RT_OK;
}

int rt_clock_pair(int64_t *realtime_ns, int64_t *monotonic_ns)
{
    struct timespec a, r, b;
    int64_t best_gap = INT64_MAX, best_real = 0, best_mono = 0;

    if (realtime_ns == NULL || monotonic_ns == NULL)
        return RT_EINVAL;
    /* A preemption between the two readings would skew the origin; keep the
     * attempt whose monotonic bracket around the realtime read is tightest. */
    for (int i = 0; i < 5; i++) {
        if (clock_gettime(CLOCK_MONOTONIC, &a) != 0 ||
            clock_gettime(CLOCK_REALTIME, &r) != 0 ||
            clock_gettime(CLOCK_MONOTONIC, &b) != 0)
            return RT_ESYS;
        int64_t gap = ts_ns(&b) - ts_ns(&a);
        if (gap < best_gap) {
            best_gap = gap;
            best_real = ts_ns(&r);
            best_mono = ts_ns(&a) + gap / 2;
        }
    }
    *realtime_ns = best_real;
    *monotonic_ns = best_mono;
    return RT_OK;
}
