/* normal.h: fast standard normal draws for random initialisation, counter-based.
 *
 * Value i of the stream of `key` is a pure function of (key, i), so a tensor can be filled in
 * row blocks, in any order and over any number of threads, with the same values. With mix =
 * splitmix64's output function and G its increment 0x9E3779B97F4A7C15, pair p = i / 2 takes
 * h = mix(k + (p + 1) G), k = mix(key ^ 0x6A09E667F3BCC909) (so nearby seeds give unrelated
 * streams); a = h >> 40 and t = (h >> 8) & 0xFFFFFF (24 bits each) give u1 = (a + 1) 2^-24 in
 * (0, 1] and the angle q pi/2 + (f - 1/2) pi/2 for the quadrant q = t >> 22 and f = (t mod 2^22)
 * 2^-22 (uniform on a turn); the Box-Muller pair r = sqrt(-2 ln u1), (r cos, r sin) of the angle
 * are values 2p and 2p + 1.
 * All in fp32 with polynomial ln / sin / cos (no libm calls, so the loops vectorise); their error
 * is below 1e-6 relative. 24-bit uniforms cut the tails at |z| <= 5.77 (probability 8e-9).
 * Pure functions: safe from any thread; nothing fails. */
#ifndef GT_NORMAL_H
#define GT_NORMAL_H

#include <stdint.h>

#include "autograd/real.h"

/* out[k] = std * z(key, first + k) for k in [0, n). Threaded over blocks when n is large. */
void gt_normal_fill(uint64_t key, uint64_t first, double std, gt_real *out, int64_t n);

#endif
