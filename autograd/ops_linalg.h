/* ops_linalg.h: matrix products, layout changes, reductions and the embedding gather.
 * Every op returns a new step tensor in ctx's arena or NULL with ctx's error set
 * (message names the op and the operand shapes). See tape.h for the recording rules. */
#ifndef GT_OPS_LINALG_H
#define GT_OPS_LINALG_H

#include "autograd/tape.h"

/* op(a) @ op(b) with cblas_sgemm. a: [..., M, K] ([..., K, M] if trans_a), b: [..., K, N]
 * ([..., N, K] if trans_b). Either both have the same leading (batch) axes, or b is 2-D and
 * is shared by every batch of a (a weight); then a's batch axes are folded into one GEMM.
 * Output [..., M, N]. Backward skips the GEMM of an operand that needs no gradient. */
gt_tensor *gt_matmul(gt_ctx *ctx, gt_tensor *a, gt_tensor *b, bool trans_a, bool trans_b);

/* Copy with axes ax0 and ax1 swapped (negative axes count from the end). */
gt_tensor *gt_transpose(gt_ctx *ctx, gt_tensor *x, int ax0, int ax1);

/* Sum / mean of all elements: a one-element tensor (ndim 0). */
gt_tensor *gt_sum(gt_ctx *ctx, gt_tensor *x);
gt_tensor *gt_mean(gt_ctx *ctx, gt_tensor *x);

/* Rows table[ids[i]] for i < n: [n, D] from table [V, D]. Backward scatter-adds into the
 * table's gradient (repeated ids accumulate). An id outside [0, V) is an error naming it. */
gt_tensor *gt_embedding(gt_ctx *ctx, gt_tensor *table, const int32_t *ids, int64_t n);

#endif
