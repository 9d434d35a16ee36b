/* ops_vit.h: the vision model's own ops: LayerNorm with bias, 2-D average pooling, and putting
 * image embeddings into a token sequence.
 * Contract (tape.h): every op returns a new step tensor in ctx's arena, or NULL with ctx's sticky
 * error set (message names the op and the shapes); inputs are never modified. */
#ifndef GT_OPS_VIT_H
#define GT_OPS_VIT_H

#include "autograd/tape.h"

/* LayerNorm over the last axis D (Keras LayerNormalization): y = (x - mean) * rsqrt(var + eps)
 * * gamma + beta with the biased variance; gamma, beta: [D] (either may be NULL: 1 and 0). */
gt_tensor *gt_layernorm(gt_ctx *ctx, gt_tensor *x, gt_tensor *gamma, gt_tensor *beta, double eps);

/* Average pooling of a square grid of tokens (Keras AveragePooling2D, pool = stride, "valid").
 * x: [B, W*W, D], the tokens of a W x W grid row-major; output [B, R*R, D] with R = W / pool
 * (floor: trailing rows and columns of the grid are dropped, as "valid" does), cell (i, j) the
 * mean of the pool x pool tokens at rows i*pool.., columns j*pool... */
gt_tensor *gt_avgpool2d(gt_ctx *ctx, gt_tensor *x, int64_t width, int64_t pool);

/* x with rows replaced: row pos[i] of x (viewed as [rows, D]) becomes row i of src [n, D]
 * (Gemma 3 puts image embeddings at their placeholder tokens). pos: n distinct indices in
 * [0, rows). Backward: dx is dy with those rows zeroed, dsrc[i] = dy[pos[i]]. */
gt_tensor *gt_put_rows(gt_ctx *ctx, gt_tensor *x, gt_tensor *src, const int32_t *pos, int64_t n);

#endif
