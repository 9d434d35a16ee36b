/* half.h: 16-bit float bit patterns (IEEE binary16 "f16", bfloat16 "bf16") to float and back.
 *
 *   gt_f16_to_f32:  exact; subnormals normalised, inf and NaN kept (NaN payload kept, shifted)
 *   gt_bf16_to_f32: exact (bf16 is the top 16 bits of a float)
 *   gt_f32_to_f16:  round to nearest, ties to even; subnormals; |x| >= 65520 to inf; NaN stays NaN
 *   gt_f32_to_bf16: round to nearest, ties to even; overflow rounds to inf; NaN stays NaN (quiet
 *                   bit set, so a low-bit NaN does not become inf)
 * Pure functions of the bits, no state: safe from any thread. The bf16 pair is inline (hot loops
 * in autograd/ops_bf16 and ops_lmhead).
 * Nothing allocates, nothing fails. */
#ifndef GT_UTIL_HALF_H
#define GT_UTIL_HALF_H

#include <stdint.h>
#include <string.h>

float gt_f16_to_f32(uint16_t h);
/* Round to nearest, ties to even (as numpy's astype(float16)); overflow to inf, subnormals kept,
 * NaN stays NaN (quiet). */
uint16_t gt_f32_to_f16(float f);

static inline float gt_bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t gt_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

#endif
