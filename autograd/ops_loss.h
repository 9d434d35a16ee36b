/* ops_loss.h: fused weighted softmax cross-entropy over integer labels.
 *
 * logits: [..., V] viewed as n rows; labels, weights: n values each (weights NULL = all 1).
 * ce_i = logsumexp(z_i) - z_i[label_i], computed max-subtracted. Returns a one-element tensor
 * holding sum_i w_i ce_i and stores sum_i w_i in *weight_sum (if not NULL), so the caller picks
 * the normalisation: per weighted token (divide by sum w) or KerasHub's sum_over_batch_size
 * (divide by batch x padded length). Rows with w_i == 0 are skipped entirely (their label may be
 * anything, e.g. -1) and get zero gradient; a nonzero-weight label outside [0, V) or a
 * negative weight is an error naming the row. row_ce (if not NULL, n values) receives ce_i
 * (0 for skipped rows), for per-example reporting. */
#ifndef GT_OPS_LOSS_H
#define GT_OPS_LOSS_H

#include "autograd/tape.h"

gt_tensor *gt_cross_entropy(gt_ctx *ctx, gt_tensor *logits, const int32_t *labels,
                            const gt_real *weights, double *weight_sum, gt_real *row_ce);

#endif
