/* ops_lmhead.h: the tied LM head fused with the weighted cross-entropy, computed in row chunks.
 *
 * For hidden rows h_i (hidden [..., D], n rows) and the embedding table E [V, D]:
 *   z_i = h_i E^T;  if softcap > 0: z_i = softcap * tanh(z_i / softcap)   (Gemma 2's final cap)
 *   ce_i = logsumexp(z_i) - z_i[label_i]
 * Returns a one-element tensor with sum_i w_i ce_i; *weight_sum gets sum_i w_i; row_ce (n values,
 * optional) gets ce_i (0 where w_i == 0). Only rows with w_i != 0 are computed at all (prompt and
 * padding tokens cost nothing), and the [n x V] logits never exist: the buffer holds at most
 * chunk_rows x V logits. A frozen E (no gradient wanted: LoRA, eval) goes in one pass with an
 * online softmax over vocabulary blocks of 32 x chunk_rows rows, chunk_rows x V / block rows at a
 * time, dh computed on the way (for up to 192 rows in the fp32 build, by its own kernel rather
 * than OpenBLAS, whose packing of the whole table dominates at few rows); a trainable E goes chunk_rows rows at a time, and backward
 * recomputes each chunk's logits for E's gradient. Backward adds into h's gradient and, only
 * when E requires one, E's.
 * Label rules as gt_cross_entropy: a nonzero-weight label outside [0, V) or a negative or
 * non-finite weight is an error naming the row. */
#ifndef GT_OPS_LMHEAD_H
#define GT_OPS_LMHEAD_H

#include "autograd/ops_bf16.h"
#include "autograd/tape.h"

gt_tensor *gt_lm_head_loss(gt_ctx *ctx, gt_tensor *hidden, gt_tensor *table, double softcap,
                           const int32_t *labels, const gt_real *weights, int64_t chunk_rows,
                           double *weight_sum, gt_real *row_ce);
/* The same with a frozen bf16 table (no gradient for it): one pass as above, with vocabulary
 * blocks of as many rows as its staging buffer holds, each expanded once; results agree with the
 * fp32 op on the same values to rounding. With table->compute_bf16 and a bf16 kernel active
 * (bf16_gemm.h) both GEMMs of the pass run on it instead (hidden rows and the softmax terms
 * rounded to bf16, fp32 accumulation; blocks of a multiple of 32 rows, a short last block in
 * fp32), the few-rows kernel is not used; logits then move by up to 2^-8 sum_k |h_k e_k|. With V
 * a multiple of 32 the vocabulary is then split between the threads (blocks of 256 rows each,
 * partial softmaxes merged as a log-sum-exp), so the sums' order depends on the thread count. */
gt_tensor *gt_lm_head_loss_bf16(gt_ctx *ctx, gt_tensor *hidden, const gt_bf16_mat *table,
                                double softcap, const int32_t *labels, const gt_real *weights,
                                int64_t chunk_rows, double *weight_sum, gt_real *row_ce);

#endif
