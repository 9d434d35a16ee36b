#include "autograd/ops_lmhead.h"

#include <math.h>
#include <string.h>
#include <tgmath.h>

#include "autograd/blas.h"
#include "autograd/ops_bf16.h"
#include "autograd/rowmath.h"

typedef struct {
    int64_t m;          /* active rows */
    int64_t *rows;      /* their indices in hidden */
    int32_t *labels;    /* per active row */
    gt_real *w;         /* per active row */
    gt_real *rmax;      /* per active row: max of the (capped) logits */
    double *inv_sum;    /* and 1 / sum exp(z - max): softmax = exp(z - max) * inv_sum */
    double *ce;         /* per active row, summed in row order (thread-count independent) */
    int64_t chunk;            /* active rows per chunk */
    gt_real *hbuf;      /* chunk x D gathered hidden rows */
    gt_real *dh;        /* m x D: d(sum w ce)/dh of the active rows, computed in the forward */
    gt_real *zbuf;      /* chunk x V logits */
    double softcap;
    int64_t V, D;
    const gt_real *tf;        /* the table, fp32 [V, D] ... */
    const gt_bf16_mat *t16;   /* ... or bf16 (frozen) */
    int64_t vblock;           /* vocabulary rows per block in the one-pass path; 0: two passes */
} lmhead_saved;

/* Capped logits of active rows [r0, r0+c) into s->zbuf; gathers their h into s->hbuf (fp32
 * table). */
static void chunk_logits(const lmhead_saved *s, const gt_tensor *hidden, int64_t r0, int64_t c) {
    int64_t D = s->D, V = s->V;
    for (int64_t i = 0; i < c; i++)
        memcpy(s->hbuf + i * D, hidden->data + s->rows[r0 + i] * D, (size_t)D * sizeof(gt_real));
    gt_gemm(false, true, (int)c, (int)V, (int)D, 1, s->hbuf, (int)D, s->tf, (int)D, 0, s->zbuf,
            (int)V);
    if (s->softcap > 0) {
        gt_real cap = (gt_real)s->softcap, inv = (gt_real)(1.0 / s->softcap);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < c * V; i++) s->zbuf[i] = cap * tanh(s->zbuf[i] * inv);
    }
}

/* zbuf (capped logits of active rows [r0, r0+c)) -> d(g * sum w ce)/d(raw logits), in place:
 * g w (softmax - onehot), times the cap's derivative 1 - (z / cap)^2 (z = cap tanh(raw / cap)). */
static void chunk_dz(const lmhead_saved *s, int64_t V, int64_t r0, int64_t c, gt_real g) {
    gt_real inv_cap = s->softcap > 0 ? (gt_real)(1.0 / s->softcap) : 0;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < c; i++) {
        gt_real *z = s->zbuf + i * V;
        int64_t y = s->labels[r0 + i];
        gt_real gw = g * s->w[r0 + i], zy = z[y];
        gt_row_exp_grad(z, V, s->rmax[r0 + i], (gt_real)(gw * s->inv_sum[r0 + i]), inv_cap);
        gt_real ty = zy * inv_cap;
        z[y] -= gw * (1 - ty * ty);
    }
}

/* One pass per row chunk when the table is frozen (backward then never needs logits again):
 * vocabulary blocks of vb rows (a bf16 table's are expanded once into its staging buffer, an fp32
 * table's are used in place) give logits c x vb in zbuf that feed a running max and sum of exp
 * per row (online softmax); when dh is wanted the block's exp(z - running max) * cap' goes
 * straight into acc += e @ E_block, rescaled whenever a row's max grows. At the end
 * dh_i = w_i (acc_i / sum_i - cap'_y E_y). Each table row is read once per chunk (not twice), the
 * GEMMs are c rows tall instead of a few, and the buffer is c x vb instead of c x V. */
static void chunk_one_pass(lmhead_saved *s, const gt_tensor *hidden, int64_t r0, int64_t c) {
    const gt_bf16_mat *t = s->t16;
    int64_t D = s->D, V = s->V, vb = s->vblock;
    gt_real inv_cap = s->softcap > 0 ? (gt_real)(1.0 / s->softcap) : 0, cap = (gt_real)s->softcap;
    gt_real *acc = s->dh ? s->dh + r0 * D : NULL, *zy = s->hbuf + c * D;
    double *sum = s->ce + r0; /* the running sums live where the row's loss will */
    for (int64_t i = 0; i < c; i++) {
        memcpy(s->hbuf + i * D, hidden->data + s->rows[r0 + i] * D, (size_t)D * sizeof(gt_real));
        s->rmax[r0 + i] = -INFINITY;
        sum[i] = 0;
    }
    if (acc) memset(acc, 0, (size_t)(c * D) * sizeof(gt_real));
    for (int64_t v0 = 0; v0 < V; v0 += vb) {
        int64_t nv = V - v0 < vb ? V - v0 : vb;
        const gt_real *blk = s->tf + v0 * D;
        if (t) {
            gt_bf16_expand(t->data + v0 * D, t->stage, nv * D);
            blk = t->stage;
        }
        gt_gemm(false, true, (int)c, (int)nv, (int)D, 1, s->hbuf, (int)D, blk, (int)D, 0,
                s->zbuf, (int)nv);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < c; i++) {
            gt_real *z = s->zbuf + i * nv;
            if (cap > 0)
                for (int64_t j = 0; j < nv; j++) z[j] = cap * tanh(z[j] * inv_cap);
            int64_t y = s->labels[r0 + i];
            if (y >= v0 && y < v0 + nv) zy[i] = z[y - v0];
            gt_real m = s->rmax[r0 + i], bm = gt_row_max(z, nv);
            if (bm > m) { /* rescale what was summed under the old max */
                double f = m == -INFINITY ? 0 : exp((double)m - (double)bm);
                sum[i] *= f;
                if (acc)
                    for (int64_t k = 0; k < D; k++) acc[i * D + k] *= (gt_real)f;
                s->rmax[r0 + i] = m = bm;
            }
            sum[i] += gt_row_sum_exp(z, nv, m);
            if (acc) gt_row_exp_grad(z, nv, m, 1, inv_cap);
        }
        if (acc)
            gt_gemm(false, false, (int)c, (int)D, (int)nv, 1, s->zbuf, (int)nv, blk, (int)D, 1, acc,
                    (int)D);
    }
    for (int64_t i = 0; i < c; i++) {
        double total = sum[i];
        int64_t y = s->labels[r0 + i];
        s->inv_sum[r0 + i] = 1.0 / total;
        s->ce[r0 + i] = (double)s->rmax[r0 + i] + log(total) - (double)zy[i];
        if (!acc) continue;
        gt_real w = s->w[r0 + i], inv = (gt_real)(1.0 / total), ty = zy[i] * inv_cap;
        gt_real cy = 1 - ty * ty;
        gt_real *a = acc + i * D;
        if (t) {
            const uint16_t *ey = t->data + y * D;
            for (int64_t k = 0; k < D; k++)
                a[k] = w * (a[k] * inv - cy * (gt_real)gt_bf16_to_float(ey[k]));
        } else {
            const gt_real *ey = s->tf + y * D;
            for (int64_t k = 0; k < D; k++) a[k] = w * (a[k] * inv - cy * ey[k]);
        }
    }
}

static void lmhead_backward(gt_ctx *ctx, gt_node *node) {
    lmhead_saved *s = node->saved;
    gt_tensor *hidden = node->in[0], *table = node->n_in > 1 ? node->in[1] : NULL;
    gt_real g = gt_grad(ctx, node->out)[0];
    gt_real *dh = gt_needs_grad(hidden) ? gt_grad(ctx, hidden) : NULL;
    gt_real *dt = gt_needs_grad(table) ? gt_grad(ctx, table) : NULL;
    if (!gt_ok(ctx)) return;
    int64_t D = s->D, V = s->V;
    if (dh) /* the loss is linear in its upstream gradient: scale the forward's dh */
        for (int64_t i = 0; i < s->m; i++) {
            gt_real *dst = dh + s->rows[i] * D;
            const gt_real *src = s->dh + i * D;
            for (int64_t k = 0; k < D; k++) dst[k] += g * src[k];
        }
    if (s->dh) gt_release(ctx, s->dh, (size_t)(s->m * D) * sizeof(gt_real));
    s->dh = NULL;
    if (!dt) return;
    /* the table's gradient needs every chunk's logits again (holding them would cost n x V) */
    for (int64_t r0 = 0; r0 < s->m; r0 += s->chunk) {
        int64_t c = s->m - r0 < s->chunk ? s->m - r0 : s->chunk;
        chunk_logits(s, hidden, r0, c);
        chunk_dz(s, V, r0, c, g);
        gt_gemm(true, false, (int)V, (int)D, (int)c, 1, s->zbuf, (int)V, s->hbuf, (int)D, 1, dt,
                (int)D);
    }
}

static gt_tensor *lm_head(gt_ctx *ctx, gt_tensor *hidden, gt_tensor *table, const gt_bf16_mat *t16,
                         int64_t V, int64_t D, double softcap, const int32_t *labels,
                         const gt_real *weights, int64_t chunk_rows, double *weight_sum,
                         gt_real *row_ce) {
    if (chunk_rows < 1 || softcap < 0)
        return gt_fail(ctx, GT_ERR_ARG, "lm_head_loss: chunk_rows must be >= 1 and softcap >= 0");
    int64_t n = gt_rows(hidden);
    if (V > INT32_MAX || D > INT32_MAX)
        return gt_fail(ctx, GT_ERR_SHAPE, "lm_head_loss: table [%lld, %lld] too large", (long long)V,
                       (long long)D);
    lmhead_saved *s = gt_alloc(ctx, sizeof *s);
    if (!s) return NULL;
    memset(s, 0, sizeof *s);
    s->softcap = softcap;
    s->V = V;
    s->D = D;
    s->tf = table ? table->data : NULL;
    s->t16 = t16;
    s->rows = gt_alloc(ctx, (size_t)(n ? n : 1) * sizeof *s->rows);
    s->labels = gt_alloc(ctx, (size_t)(n ? n : 1) * sizeof *s->labels);
    s->w = gt_alloc(ctx, (size_t)(n ? n : 1) * sizeof *s->w);
    s->rmax = gt_alloc(ctx, (size_t)(n ? n : 1) * sizeof *s->rmax);
    s->inv_sum = gt_alloc(ctx, (size_t)(n ? n : 1) * sizeof *s->inv_sum);
    s->ce = gt_alloc(ctx, (size_t)(n ? n : 1) * sizeof *s->ce);
    if (!gt_ok(ctx)) return NULL;
    double wsum = 0;
    for (int64_t i = 0; i < n; i++) {
        gt_real w = weights ? weights[i] : 1;
        if (!(w >= 0) || !isfinite(w))
            return gt_fail(ctx, GT_ERR_ARG, "lm_head_loss: row %lld: weight %g must be finite and >= 0",
                           (long long)i, (double)w);
        if (row_ce) row_ce[i] = 0;
        if (w == 0) continue;
        if (labels[i] < 0 || labels[i] >= V)
            return gt_fail(ctx, GT_ERR_ARG, "lm_head_loss: row %lld: label %d outside [0, %lld)",
                           (long long)i, labels[i], (long long)V);
        s->rows[s->m] = i;
        s->labels[s->m] = labels[i];
        s->w[s->m] = w;
        s->m++;
        wsum += w;
    }
    if (weight_sum) *weight_sum = wsum;
    gt_tensor *in[2] = {hidden, table};
    int n_in = table ? 2 : 1;
    gt_tensor *out = gt_op_out(ctx, 0, NULL, in, n_in);
    if (!out || !gt_ok(ctx)) return NULL;
    bool table_grad = out->requires_grad && table && table->requires_grad;
    /* A frozen table goes in one pass (chunk_one_pass) over vocabulary blocks: a bf16 table's
     * staging rows, else 32 x chunk_rows rows; its row chunk then gets the memory two passes
     * would use (chunk_rows x V logits). A trainable table needs the logits again in backward. */
    int64_t m1 = s->m ? s->m : 1;
    if (!table_grad) {
        int64_t vb = t16 ? gt_bf16_block_rows(t16) : (chunk_rows < V / 32 ? 32 * chunk_rows : V);
        int64_t c = chunk_rows * (V / vb);
        s->vblock = vb;
        s->chunk = c < m1 ? c : m1;
    } else
        s->chunk = chunk_rows < m1 ? chunk_rows : m1;
    /* one pass: hbuf also keeps each row's label logit; zbuf is one vocabulary block wide */
    int64_t zcols = s->vblock ? s->vblock : V, hcols = s->vblock ? D + 1 : D;
    s->hbuf = gt_alloc(ctx, (size_t)(s->chunk * hcols) * sizeof(gt_real));
    s->zbuf = gt_alloc(ctx, (size_t)(s->chunk * zcols) * sizeof(gt_real));
    if (!gt_ok(ctx)) return NULL;
    if (out->requires_grad && hidden->requires_grad) {
        s->dh = gt_alloc(ctx, (size_t)(s->m ? s->m * D : 1) * sizeof(gt_real));
        if (!s->dh) return NULL;
    }
    for (int64_t r0 = 0; r0 < s->m; r0 += s->chunk) {
        int64_t c = s->m - r0 < s->chunk ? s->m - r0 : s->chunk;
        if (s->vblock) {
            chunk_one_pass(s, hidden, r0, c);
            continue;
        }
        chunk_logits(s, hidden, r0, c);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < c; i++) {
            const gt_real *z = s->zbuf + i * V;
            gt_real mx = gt_row_max(z, V);
            double sum = gt_row_sum_exp(z, V, mx);
            s->rmax[r0 + i] = mx;
            s->inv_sum[r0 + i] = 1.0 / sum;
            s->ce[r0 + i] = (double)mx + log(sum) - (double)z[s->labels[r0 + i]];
        }
        /* While the chunk's logits are at hand, take dh for an upstream gradient of 1 (llm.c's
         * fused classifier): backward then only scales it, saving a recompute of the logits. */
        if (s->dh) {
            chunk_dz(s, V, r0, c, 1);
            gt_gemm(false, false, (int)c, (int)D, (int)V, 1, s->zbuf, (int)V, s->tf, (int)D, 0,
                    s->dh + r0 * D, (int)D);
        }
    }
    double total = 0;
    for (int64_t i = 0; i < s->m; i++) {
        total += (double)s->w[i] * s->ce[i];
        if (row_ce) row_ce[s->rows[i]] = (gt_real)s->ce[i];
    }
    out->data[0] = (gt_real)total;
    if (!table_grad) { /* backward needs no logits again */
        gt_release(ctx, s->zbuf, (size_t)(s->chunk * zcols) * sizeof(gt_real));
        gt_release(ctx, s->hbuf, (size_t)(s->chunk * hcols) * sizeof(gt_real));
        s->zbuf = s->hbuf = NULL;
    }
    if (!gt_record(ctx, "lm_head_loss", lmhead_backward, out, in, n_in, s)) return NULL;
    return out;
}

gt_tensor *gt_lm_head_loss(gt_ctx *ctx, gt_tensor *hidden, gt_tensor *table, double softcap,
                           const int32_t *labels, const gt_real *weights, int64_t chunk_rows,
                           double *weight_sum, gt_real *row_ce) {
    if (!gt_ok(ctx)) return NULL;
    if (!hidden || !table || !labels)
        return gt_fail(ctx, GT_ERR_ARG, "lm_head_loss: NULL input");
    if (table->ndim != 2 || gt_cols(hidden) != gt_cols(table))
        return gt_fail(ctx, GT_ERR_SHAPE, "lm_head_loss: hidden %s does not fit table %s (want [..., D] "
                       "and [V, D])", gt_shp(hidden), gt_shp(table));
    return lm_head(ctx, hidden, table, NULL, table->shape[0], gt_cols(table), softcap, labels,
                   weights, chunk_rows, weight_sum, row_ce);
}

gt_tensor *gt_lm_head_loss_bf16(gt_ctx *ctx, gt_tensor *hidden, const gt_bf16_mat *table,
                                double softcap, const int32_t *labels, const gt_real *weights,
                                int64_t chunk_rows, double *weight_sum, gt_real *row_ce) {
    if (!gt_ok(ctx)) return NULL;
    if (!hidden || !table || !table->data || !labels)
        return gt_fail(ctx, GT_ERR_ARG, "lm_head_loss: NULL input");
    if (gt_cols(hidden) != table->cols)
        return gt_fail(ctx, GT_ERR_SHAPE, "lm_head_loss: hidden %s does not fit the bf16 table "
                       "[%lld, %lld]", gt_shp(hidden), (long long)table->rows, (long long)table->cols);
    if (gt_bf16_block_rows(table) < 1)
        return gt_fail(ctx, GT_ERR_ARG, "lm_head_loss: the bf16 table's staging cannot hold a row");
    return lm_head(ctx, hidden, NULL, table, table->rows, table->cols, softcap, labels, weights,
                   chunk_rows, weight_sum, row_ce);
}
