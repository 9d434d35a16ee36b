/* ops_norm.h: RMSNorm and rotary position embedding.
 * Contract (tape.h): every op returns a new step tensor in ctx's arena, or NULL with ctx's sticky
 * error set (message names the op and the shapes); inputs are never modified. */
#ifndef GT_OPS_NORM_H
#define GT_OPS_NORM_H

#include "autograd/tape.h"

/* RMSNorm over the last axis D: y = x * rsqrt(mean(x^2) + eps) * s, where s = 1 + w when
 * add_one (Gemma 1-3, w zero-initialised) or s = w (Gemma 4), or s = 1 when w is NULL
 * (Gemma 4's scale-free value norm). w: [D]. Statistics in gt_real (fp32 in the product). */
gt_tensor *gt_rmsnorm(gt_ctx *ctx, gt_tensor *x, gt_tensor *w, double eps, bool add_one);

typedef struct gt_rope_cfg {
    double base;          /* wavelength base, e.g. 10000 (local) or 1e6 (Gemma 3 global) */
    double scale;         /* linear scaling factor f: positions are divided by f (1 = none) */
    int64_t rotary_dims;  /* R: rotate pairs (i, i+H/2) for i < R/2; 0 means R = H. Frequencies
                             keep H as denominator: inv_freq_i = base^(-2i/H) / f (Gemma 4's
                             partial rotation); the unrotated dims pass through. */
} gt_rope_cfg;

/* Half-split (NEOX) rotary embedding. x: [B, T, heads, H] (H even); positions: B*T int32,
 * position of token t of batch b at positions[b*T + t]. For i < R/2, with th = p * inv_freq_i:
 *   y[i] = x[i] cos th - x[i+H/2] sin th,   y[i+H/2] = x[i+H/2] cos th + x[i] sin th. */
gt_tensor *gt_rope(gt_ctx *ctx, gt_tensor *x, const int32_t *positions, const gt_rope_cfg *cfg);

#endif
