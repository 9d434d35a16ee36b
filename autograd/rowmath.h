/* rowmath.h: vectorised row kernels shared by the softmax-style ops (cross-entropy, LM head).
 *
 * In the fp32 build exp is evaluated 16 lanes at a time (GCC vector extensions lowered by
 * -march; about 1 ulp), because over 262144-wide vocabulary rows libm's scalar expf costs more
 * than the memory traffic. The f64 build uses plain loops and libm, so the gradient checks test
 * the maths. All functions expect max-subtracted arguments to exp (x <= 0 up to rounding). */
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

#endif
