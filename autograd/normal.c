/* normal.c: counter-based normal draws (contract in normal.h). */
#include "autograd/normal.h"

#include <math.h>

#define GOLDEN 0x9E3779B97F4A7C15ull
enum { PAIRS = 512 }; /* pairs a block: a thread's unit of work, 4 KB of floats */

/* splitmix64's output function: a bijection of 64-bit words that mixes every bit */
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ln u for u in (0, 1]: u = 2^e m with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s) for
 * s = (m - 1) / (m + 1), |s| < 0.172, the odd series to s^9 (truncation below 1e-9). */
static inline float ln_unit(float u) {
    union { float f; int32_t i; } b = {u};
    int32_t e = ((b.i >> 23) & 255) - 127;
    b.i = (b.i & 0x007fffff) | 0x3f800000;
    float m = b.f;
    int big = m > 1.41421356f;
    m = big ? 0.5f * m : m;
    e += big;
    float s = (m - 1) / (m + 1), s2 = s * s;
    float p = s * (2.f + s2 * (2.f / 3 + s2 * (2.f / 5 + s2 * (2.f / 7 + s2 * (2.f / 9)))));
    return p + (float)e * 0.693147181f;
}

/* Pairs p0 .. p0 + np - 1 into y[0 .. 2 np): sd times (r cos a, r sin a). The angle is a quadrant
 * q (top two bits) plus x in [-pi/4, pi/4), where the Taylor series of sin and cos to x^9 and
 * x^8 are within 3e-8. */
static void pairs(uint64_t key, uint64_t p0, int np, float sd, float *y) {
#pragma omp simd
    for (int j = 0; j < np; j++) {
        uint64_t h = mix64(key + (p0 + (uint64_t)j + 1) * GOLDEN);
        int32_t a = (int32_t)(h >> 40), t = (int32_t)((h >> 8) & 0xffffff);
        float r = sd * sqrtf(-2.f * ln_unit((float)(a + 1) * 0x1p-24f));
        int q = t >> 22;
        float x = ((float)(t & 0x3fffff) * 0x1p-22f - 0.5f) * 1.57079633f, x2 = x * x;
        float c = 1.f + x2 * (-1.f / 2 + x2 * (1.f / 24 + x2 * (-1.f / 720 + x2 * (1.f / 40320))));
        float s = x * (1.f + x2 * (-1.f / 6 + x2 * (1.f / 120 + x2 * (-1.f / 5040 + x2 * (1.f / 362880)))));
        /* rotate by q quarter turns: (c, s) -> (-s, c) -> (-c, -s) -> (s, -c) */
        float cq = (q & 1) ? s : c, sq = (q & 1) ? c : s;
        cq = ((q + 1) & 2) ? -cq : cq;
        sq = (q & 2) ? -sq : sq;
        y[2 * j] = r * cq;
        y[2 * j + 1] = r * sq;
    }
}

void gt_normal_fill(uint64_t key, uint64_t first, double std, gt_real *out, int64_t n) {
    if (n <= 0) return;
    uint64_t k = mix64(key ^ 0x6A09E667F3BCC909ull), p0 = first / 2, p1 = (first + (uint64_t)n + 1) / 2;
    int64_t nblk = (int64_t)((p1 - p0 + PAIRS - 1) / PAIRS);
    float sd = (float)std;
#pragma omp parallel for schedule(static) if (nblk > 8)
    for (int64_t b = 0; b < nblk; b++) {
        float y[2 * PAIRS];
        uint64_t q0 = p0 + (uint64_t)b * PAIRS, q1 = q0 + PAIRS < p1 ? q0 + PAIRS : p1;
        pairs(k, q0, (int)(q1 - q0), sd, y);
        /* the values of these pairs that lie in [first, first + n) */
        uint64_t v0 = 2 * q0 > first ? 2 * q0 : first, v1 = 2 * q1 < first + (uint64_t)n ? 2 * q1 : first + (uint64_t)n;
        for (uint64_t v = v0; v < v1; v++) out[v - first] = (gt_real)y[v - 2 * q0];
    }
}
