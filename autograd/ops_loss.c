#include "autograd/ops_loss.h"

#include <math.h>
#include <string.h>
#include <tgmath.h>

#include "autograd/blas.h"
#include "autograd/rowmath.h"

/* Per row the forward keeps the max m and 1/s with s = sum_j exp(z_j - m) (logsumexp =
 * m + log s, stored in two parts so that backward's p_j = exp(z_j - m) / s repeats the
 * forward's exponentials exactly and never rounds a large logsumexp). */
typedef struct {
    int64_t n, v;
    int32_t *labels;   /* copies: the caller's buffers may be gone by backward */
    gt_real *weights;  /* NULL = all ones */
    gt_real *rmax;
    double *inv_sum;
} ce_saved;

/* Rows handed to one OpenMP task: about 16k logits, so short rows are batched. */
static int64_t rows_per_chunk(int64_t v) { return v >= 16384 ? 1 : 16384 / (v ? v : 1); }


static void ce_backward(gt_ctx *ctx, gt_node *node) {
    const ce_saved *s = node->saved;
    gt_tensor *logits = node->in[0];
    gt_real *dz = gt_grad(ctx, logits);
    const gt_real *dout = gt_grad(ctx, node->out), *z = gt_saved_data(ctx, node, 0);
    if (!gt_ok(ctx)) return;
    const gt_real g = dout[0];
    const int64_t n = s->n, v = s->v;
    int nt = gt_threads();
#pragma omp parallel for schedule(dynamic, rows_per_chunk(v)) num_threads(nt) if (n * v > 32768)
    for (int64_t i = 0; i < n; i++) {
        gt_real w = s->weights ? s->weights[i] : 1;
        if (w == 0) continue;
        gt_real c = g * w;
        /* dz_j += c (p_j - [j == y]), p_j = exp(z_j - m) / s */
        gt_row_add_exp(dz + i * v, z + i * v, v, s->rmax[i], (gt_real)(c * s->inv_sum[i]));
        dz[i * v + s->labels[i]] -= c;
    }
}

gt_tensor *gt_cross_entropy(gt_ctx *ctx, gt_tensor *logits, const int32_t *labels,
                            const gt_real *weights, double *weight_sum, gt_real *row_ce) {
    if (!gt_ok(ctx)) return NULL;
    if (!logits) return gt_fail(ctx, GT_ERR_ARG, "cross_entropy: NULL logits");
    if (logits->ndim < 1)
        return gt_fail(ctx, GT_ERR_SHAPE, "cross_entropy: logits must be [..., V], got %s",
                       gt_shp(logits));
    const int64_t v = logits->shape[logits->ndim - 1];
    int64_t n = 1;
    for (int d = 0; d < logits->ndim - 1; d++) n *= logits->shape[d];
    if (n > 0 && v == 0)
        return gt_fail(ctx, GT_ERR_SHAPE, "cross_entropy: logits %s have no classes",
                       gt_shp(logits));
    if (!labels && n > 0)
        return gt_fail(ctx, GT_ERR_ARG, "cross_entropy: NULL labels for logits %s",
                       gt_shp(logits));
    /* Validate everything before computing, so an error leaves no partial output behind. */
    double wsum = 0;
    for (int64_t i = 0; i < n; i++) {
        gt_real w = weights ? weights[i] : 1;
        if (!isfinite(w) || w < 0)
            return gt_fail(ctx, GT_ERR_ARG, "cross_entropy: weight %g at row %lld is %s "
                           "(logits %s)", (double)w, (long long)i,
                           isfinite(w) ? "negative" : "not finite", gt_shp(logits));
        if (w != 0 && (labels[i] < 0 || labels[i] >= v))
            return gt_fail(ctx, GT_ERR_ARG, "cross_entropy: label %d at row %lld outside "
                           "[0, %lld) of logits %s (weight %g)", labels[i], (long long)i,
                           (long long)v, gt_shp(logits), (double)w);
        wsum += w;
    }

    gt_tensor *out = gt_op_out(ctx, 0, NULL, &logits, 1);
    double *ce = gt_alloc(ctx, (size_t)(n ? n : 1) * sizeof *ce);
    if (!out || !ce) return NULL;
    ce_saved *s = NULL;
    if (out->requires_grad) {
        s = gt_alloc(ctx, sizeof *s);
        if (!s) return NULL;
        size_t cnt = (size_t)(n ? n : 1);
        *s = (ce_saved){.n = n, .v = v};
        s->labels = gt_alloc(ctx, cnt * sizeof *s->labels);
        s->weights = weights ? gt_alloc(ctx, cnt * sizeof *s->weights) : NULL;
        s->rmax = gt_alloc(ctx, cnt * sizeof *s->rmax);
        s->inv_sum = gt_alloc(ctx, cnt * sizeof *s->inv_sum);
        if (!gt_ok(ctx)) return NULL;
        if (n) memcpy(s->labels, labels, (size_t)n * sizeof *s->labels);
        if (weights && n) memcpy(s->weights, weights, (size_t)n * sizeof *s->weights);
    }

    const gt_real *z = logits->data;
    int nt = gt_threads();
#pragma omp parallel for schedule(dynamic, rows_per_chunk(v)) num_threads(nt) if (n * v > 32768)
    for (int64_t i = 0; i < n; i++) {
        gt_real w = weights ? weights[i] : 1;
        ce[i] = 0;
        if (w == 0) continue;
        const gt_real *zi = z + i * v;
        gt_real m = gt_row_max(zi, v);
        double sum = gt_row_sum_exp(zi, v, m);
        ce[i] = (double)m + log(sum) - (double)zi[labels[i]];
        if (s) {
            s->rmax[i] = m;
            s->inv_sum[i] = 1.0 / sum;
        }
    }

    /* Serial, in row order: the total does not depend on the thread count. */
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        double w = weights ? (double)weights[i] : 1.0;
        if (w != 0) total += w * ce[i];
        if (row_ce) row_ce[i] = (gt_real)ce[i];
    }
    out->data[0] = (gt_real)total;
    if (weight_sum) *weight_sum = wsum;
    /* backward recomputes p from the logits and the saved row statistics */
    if (!gt_record(ctx, "cross_entropy", ce_backward, out, &logits, 1, s, GT_READ_IN(0))) return NULL;
    return out;
}
