/* ops_elem.h: elementwise and row-wise ops: add, mul, scale, soft-cap, GELU, GeGLU, softmax.
 * Binary ops take equal shapes, or b whose shape equals a's trailing axes (broadcast over a's
 * leading axes, e.g. a per-channel vector); the output has a's shape.
 * Contract (tape.h): every op returns a new step tensor in ctx's arena, or NULL with ctx's sticky
 * error set (message names the op and the shapes); inputs are never modified. */
#ifndef GT_OPS_ELEM_H
#define GT_OPS_ELEM_H

#include "autograd/tape.h"

gt_tensor *gt_add(gt_ctx *ctx, gt_tensor *a, gt_tensor *b);
gt_tensor *gt_mul(gt_ctx *ctx, gt_tensor *a, gt_tensor *b);
/* x * s */
gt_tensor *gt_scale(gt_ctx *ctx, gt_tensor *x, double s);
/* cap * tanh(x / cap); cap > 0. */
gt_tensor *gt_softcap(gt_ctx *ctx, gt_tensor *x, double cap);
/* Tanh-approximate GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
gt_tensor *gt_gelu(gt_ctx *ctx, gt_tensor *x);
/* GeGLU gate: gelu(gate) * up, equal shapes (Gemma's MLP before the down projection). */
gt_tensor *gt_geglu(gt_ctx *ctx, gt_tensor *gate, gt_tensor *up);
/* The same forward; the backward reads gate and up from bf16 copies the op keeps (rounded to
 * nearest even) instead of the fp32 inputs, so those can be released after the forward: half
 * the bytes the MLP keeps for backward. For bf16 compute (model.compute_dtype: bfloat16), where
 * the frozen products round their inputs to bf16 anyway; the gradients then carry bf16 rounding
 * of gate and up (relative 2^-9). */
gt_tensor *gt_geglu_bf16(gt_ctx *ctx, gt_tensor *gate, gt_tensor *up);
/* Inverted dropout: y = x * keep / (1 - p), keep_i = uniform(seed, i) >= p, a counter-based
 * stream so the same (seed, shape) always drops the same elements (backward recomputes the mask;
 * gradient checks are deterministic). 0 <= p < 1; p == 0 returns x itself. */
gt_tensor *gt_dropout(gt_ctx *ctx, gt_tensor *x, double p, uint64_t seed);
/* The same with element i drawing stream position offset + i: a slice of a larger batch gets
 * the mask that the whole batch would have (so splitting a batch does not change the masks). */
gt_tensor *gt_dropout_at(gt_ctx *ctx, gt_tensor *x, double p, uint64_t seed, int64_t offset);
/* The same for a batch cut short: element i is at offset + (i / row_len) * row_stride +
 * i % row_len of the uncut batch's stream (rows of row_len values, row_stride apart there). */
gt_tensor *gt_dropout_rows(gt_ctx *ctx, gt_tensor *x, double p, uint64_t seed, int64_t offset,
                           int64_t row_len, int64_t row_stride);
/* Softmax over the last axis (max-subtracted); a row whose logits are all -inf gives zeros. */
gt_tensor *gt_softmax(gt_ctx *ctx, gt_tensor *x);

#endif
