/* clock.h: monotonic time in seconds, for timing steps, reductions and ops (not wall-clock dates).
 * Never fails; any thread. */
#ifndef GT_UTIL_CLOCK_H
#define GT_UTIL_CLOCK_H

double gt_now(void);

#endif
