/* rowmath.h: vectorised row kernels shared by the softmax-style ops (cross-entropy, LM head).
 *
 * In the fp32 build exp is evaluated 16 lanes at a time (GCC vector extensions lowered by
 * -march; about 1 ulp), because over 262144-wide vocabulary rows libm's scalar expf costs more
 * than the memory traffic. The f64 build uses plain loops and libm, so the gradient checks test
 * the maths. All functions expect max-subtracted arguments to exp (x <= 0 up to rounding).
 * Pure functions over caller-owned rows: nothing allocates, nothing fails. */
#ifndef GT_ROWMATH_H
#define GT_ROWMATH_H

#include "autograd/real.h"

/* max_j z_j (-inf for an empty row; NaNs are skipped here and surface in the sums) */
gt_real gt_row_max(const gt_real *z, int64_t v);
/* sum_j exp(z_j - m), accumulated in double */
double gt_row_sum_exp(const gt_real *z, int64_t v, gt_real m);
/* dz_j += c * exp(z_j - m) */
void gt_row_add_exp(gt_real *dz, const gt_real *z, int64_t v, gt_real m, gt_real c);
/* In place: z_j <- c * exp(z_j - m) * (1 - (z_j * inv_cap)^2); inv_cap = 0 for no soft-cap.
 * (The soft-cap chain rule: z = cap tanh(raw / cap) gives dz/draw = 1 - (z / cap)^2.) */
void gt_row_exp_grad(gt_real *z, int64_t v, gt_real m, gt_real c, gt_real inv_cap);
/* Both in one sweep (one exp per value): returns sum_j exp(z_j - m) (fp32 build: summed in fp32
 * within pieces of 256 values, the pieces in double) and leaves z_j <- exp(z_j - m) *
 * (1 - (z_j * inv_cap)^2) in place. */
double gt_row_exp_sum_grad(gt_real *z, int64_t v, gt_real m, gt_real inv_cap);

/* Scalar exp that inlines and vectorises inside element-wise loops (softmax rows, GELU's
 * sigmoid). The f64 build uses libm. */
#include <math.h>
#include <stdint.h>

#ifdef GT_REAL_DOUBLE
static inline gt_real gt_exp_inline(gt_real x) { return exp(x); }
#else
/* exp for the element-wise loops (softmax rows, GELU's sigmoid), written so that its loops vectorize (glibc's expf is a scalar call and
 * made the fp32 softmax cost as much as a GEMM): x = n ln2 + r with |r| <= ln2/2 (two-part
 * ln2), e^r by its degree-7 Taylor polynomial, times 2^n built in the exponent bits. Relative
 * error < 1e-7 (about 2 ulp) on [-87, 88]; 0 below -87 (no subnormals); NaN passes through. */
static inline float gt_exp_inline(float x) {
    float xc = x < -87.0f ? -87.0f : (x == x ? x : 0.0f); /* NaN: keep the bit tricks defined */
    xc = xc > 88.0f ? 88.0f : xc;
    float n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f; /* round to nearest integer */
    float r = xc - n * 0.693145752f;
    r = r - n * 1.42860677e-06f;
    float e = 1.0f / 5040;
    e = e * r + 1.0f / 720;
    e = e * r + 1.0f / 120;
    e = e * r + 1.0f / 24;
    e = e * r + 1.0f / 6;
    e = e * r + 0.5f;
    e = e * r + 1.0f;
    e = e * r + 1.0f;
    union {
        uint32_t i;
        float f;
    } two_n = {.i = (uint32_t)((int32_t)n + 127) << 23};
    float y = x < -87.0f ? 0.0f : e * two_n.f;
    return x == x ? y : x;
}
#endif


/* Tanh GELU in its sigmoid form: 0.5 x (1 + tanh u) == x sigmoid(2u), u = sqrt(2/pi)(x + 0.044715
 * x^3); the sigmoid form avoids the cancellation in 1 + tanh u for negative x, where the tanh
 * form loses most of its digits in fp32. gt_gelu_sig(x) = sigmoid(2u); gelu(x) = x * it. */
static inline gt_real gt_gelu_sig(gt_real x) {
    gt_real u = (gt_real)0.79788456080286535588 * (x + (gt_real)0.044715 * x * x * x);
    return 1 / (1 + gt_exp_inline(-2 * u));
}

/* d gelu / dx = s + x s (1 - s) 2 du/dx for s = gt_gelu_sig(x). Callers pass s so that the value
 * x s and the derivative share one exp; an out-pointer for the value instead kept GCC from
 * vectorizing geglu's backward (scalar, 10% of a bf16 LoRA step). */
static inline gt_real gt_gelu_der(gt_real x, gt_real s) {
    gt_real du = (gt_real)0.79788456080286535588 * (1 + (gt_real)(3 * 0.044715) * x * x);
    return s + 2 * x * s * (1 - s) * du;
}

#endif
