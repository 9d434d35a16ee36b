#include "train/step.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static gt_tensor *micro_loss(gt_ctx *ctx, const gt_gemma *m, const gt_micro_batch *mb,
                             int64_t chunk_rows, double *w_sum, gt_real *row_ce) {
    gt_tensor *h = gt_gemma_hidden(ctx, m, &mb->in);
    return gt_gemma_lm_loss(ctx, m, h, mb->labels, mb->weights, chunk_rows, w_sum, row_ce);
}

int gt_step_run(gt_ctx *ctx, const gt_gemma *m, gt_optim *opt, const gt_step_cfg *cfg,
                const gt_micro_batch *mb, int n_micro, int64_t global_batch_rows, double lr,
                gt_step_result *res, char *err, size_t errn) {
    memset(res, 0, sizeof *res);
    for (int i = 0; i < opt->n_params; i++)
        memset(opt->params[i].grad, 0, (size_t)opt->params[i].size * sizeof(gt_real));
    /* scalars: sum(w*ce), sum(w), tokens */
    double sums[3] = {0, 0, 0};
    for (int k = 0; k < n_micro; k++) {
        gt_ctx_reset(ctx);
        double ws = 0;
        gt_tensor *l = micro_loss(ctx, m, &mb[k], cfg->chunk_rows, &ws, NULL);
        if (l) gt_backward(ctx, l);
        if (!gt_ok(ctx)) return snprintf(err, errn, "micro-batch %d: %s", k, ctx->err), -1;
        sums[0] += l->data[0];
        sums[1] += ws;
        sums[2] += (double)(mb[k].in.batch * mb[k].in.seq);
    }
    if (cfg->reduce && cfg->reduce(cfg->reduce_user, opt->params, opt->n_params, sums, 3, err, errn))
        return -1;
    int64_t T = n_micro ? mb[0].in.seq : 0;
    double denom = cfg->norm == GT_NORM_KERAS ? (double)(global_batch_rows * T) : sums[1];
    res->weight_sum = sums[1];
    res->tokens = (int64_t)sums[2];
    if (!(denom > 0)) { /* a batch with no weighted token: nothing to learn, no update */
        res->skipped = true;
        return 0;
    }
    res->loss = sums[0] / denom;
    gt_grad_scale(opt->params, opt->n_params, 1.0 / denom);
    int64_t at = 0;
    int bad = isfinite(res->loss) ? gt_grad_find_nonfinite(opt->params, opt->n_params, &at) : -2;
    if (bad != -1) {
        if (cfg->skip_nonfinite) {
            res->skipped = true;
            return 0;
        }
        if (bad == -2) return snprintf(err, errn, "non-finite loss %g", res->loss), -1;
        return snprintf(err, errn, "non-finite gradient in %s at index %lld",
                        opt->params[bad].name, (long long)at), -1;
    }
    res->grad_norm = gt_grad_clip(opt->params, opt->n_params, cfg->clip_norm);
    gt_optim_step(opt, lr);
    return 0;
}

int gt_step_eval(gt_ctx *ctx, const gt_gemma *m, const gt_micro_batch *mb, int64_t chunk_rows,
                 double *wce_sum, double *w_sum, gt_real *row_ce, char *err, size_t errn) {
    gt_ctx_reset(ctx);
    bool grad = ctx->grad_enabled;
    ctx->grad_enabled = false;
    gt_tensor *l = micro_loss(ctx, m, mb, chunk_rows, w_sum, row_ce);
    ctx->grad_enabled = grad;
    if (!l) return snprintf(err, errn, "%s", ctx->err), -1;
    *wce_sum = l->data[0];
    return 0;
}
