/* restiming C clock: CLOCK_MONOTONIC nanoseconds for every stamp.
 *
 * Every function returns a status (0 or a negative RT_E* code) or, for the hot
 * path rt_now_ns(), the value itself with a negative value meaning -errno.
 * High Resolution Time: https://w3c.github.io/hr-time/#dfn-monotonic-clock
 */
#ifndef RT_CLOCK_H
#define RT_CLOCK_H
#include <stdint.h>

int64_t rt_now_ns(void);
int rt_clock_resolution_ns(int64_t *out);
/* One realtime reading paired with one monotonic reading, taken as the
 * midpoint of the tightest of a few monotonic brackets, for a time origin. */
int rt_clock_pair(int64_t *realtime_ns, int64_t *monotonic_ns);

#endif
