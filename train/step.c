#include "train/step.h"

#include "models/vision.h"
#include "train/media4_rows.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Finds when each slice's gradient is final during a backward pass: every tape node that reads
 * a slice (or a view into it) will add to its gradient, so the slice is final once backward has
 * visited all of them. */
typedef struct tracker {
    const gt_param_slice *p;
    int n;
    int *by_addr;  /* slice indices sorted by data address */
    int *uses;     /* tape nodes still to visit that read the slice */
    const gt_step_cfg *cfg;
} tracker;

static int by_data(const void *a, const void *b, void *slices) {
    const gt_param_slice *p = slices;
    const gt_real *x = p[*(const int *)a].data, *y = p[*(const int *)b].data;
    return (x > y) - (x < y);
}

static int slice_of(const tracker *t, const gt_real *addr) {
    int lo = 0, hi = t->n - 1, hit = -1;
    while (lo <= hi) { /* last slice starting at or before addr */
        int mid = (lo + hi) / 2;
        if (t->p[t->by_addr[mid]].data <= addr) hit = mid, lo = mid + 1;
        else hi = mid - 1;
    }
    if (hit < 0) return -1;
    const gt_param_slice *s = &t->p[t->by_addr[hit]];
    return addr < s->data + s->size ? t->by_addr[hit] : -1;
}

static void tracker_on_node(void *user, const gt_node *node) {
    tracker *t = user;
    for (int j = 0; j < node->n_in; j++) {
        int i = node->in[j] ? slice_of(t, node->in[j]->data) : -1;
        if (i >= 0 && --t->uses[i] == 0) t->cfg->ready(t->cfg->reduce_user, t->p, t->n, i);
    }
    t->cfg->ready(t->cfg->reduce_user, t->p, t->n, -1);
}

/* Count the readers of every slice on the recorded tape and hook the backward pass. */
static int tracker_arm(tracker *t, gt_ctx *ctx, const gt_param_slice *p, int n, const gt_step_cfg *cfg) {
    t->p = p;
    t->n = n;
    t->cfg = cfg;
    t->by_addr = malloc(sizeof(int) * (size_t)(n ? n : 1));
    t->uses = calloc((size_t)(n ? n : 1), sizeof(int));
    if (!t->by_addr || !t->uses) return -1;
    for (int i = 0; i < n; i++) t->by_addr[i] = i;
    qsort_r(t->by_addr, (size_t)n, sizeof(int), by_data, (void *)p);
    for (const gt_node *node = ctx->tape; node; node = node->prev)
        for (int j = 0; j < node->n_in; j++) {
            int i = node->in[j] ? slice_of(t, node->in[j]->data) : -1;
            if (i >= 0) t->uses[i]++;
        }
    for (int i = 0; i < n; i++) /* not read by this micro-batch: already final */
        if (!t->uses[i]) cfg->ready(cfg->reduce_user, p, n, i);
    ctx->on_node = tracker_on_node;
    ctx->on_node_user = t;
    return 0;
}

static void tracker_free(tracker *t, gt_ctx *ctx) {
    ctx->on_node = NULL;
    ctx->on_node_user = NULL;
    free(t->by_addr);
    free(t->uses);
    memset(t, 0, sizeof *t);
}

/* The micro-batch's images through the encoder, their rows placed at the placeholders
 * and the image spans made bidirectional (in; arrays in ctx until its reset, as backward reads
 * them). Returns 0 or -1 with ctx's error set. */
static int attach_images(gt_ctx *ctx, const gt_micro_batch *mb, gt_gemma_batch *in) {
    const gt_vision *v = mb->encoder;
    const int64_t B = mb->in.batch, T = mb->in.seq, per = v->cfg.image_size * v->cfg.image_size * 3;
    int64_t n_img = 0, n_soft = 0;
    for (int64_t r = 0; r < B; r++) n_img += mb->n_images[r];
    if (!n_img) return 0;
    float *px = gt_alloc(ctx, sizeof(float) * (size_t)(n_img * per));
    int32_t *pos = gt_alloc(ctx, sizeof(int32_t) * (size_t)(B * T)), *end = gt_alloc(ctx, sizeof(int32_t) * (size_t)(B * T));
    if (!px || !pos || !end) return -1;
    for (int64_t r = 0, k = 0; r < B; r++)
        for (int32_t i = 0; i < mb->n_images[r]; i++, k++)
            memcpy(px + k * per, mb->pixels + (r * mb->image_slots + i) * per, sizeof(float) * (size_t)per);
    for (int64_t t = 0; t < B * T; t++)
        if (mb->vision_mask[t]) pos[n_soft++] = (int32_t)t;
    int64_t tokens = gt_vision_tokens_per_image(&v->cfg);
    if (n_soft != n_img * tokens)
        return gt_fail(ctx, GT_ERR_SHAPE, "%lld image placeholders for %lld images of %lld tokens", (long long)n_soft,
                       (long long)n_img, (long long)tokens), -1;
    gt_vision_span_ends(mb->vision_mask, B, T, end);
    gt_tensor *soft = gt_vision_encode(ctx, v, px, n_img);
    if (!soft) return -1;
    int64_t flat[2] = {n_soft, v->cfg.output_dim};
    in->soft_tokens = gt_reshape(ctx, soft, 2, flat);
    in->soft_pos = pos;
    in->n_soft = n_soft;
    in->bidir_end = end;
    return in->soft_tokens ? 0 : -1;
}

static gt_tensor *micro_loss(gt_ctx *ctx, const gt_gemma *m, const gt_micro_batch *mb,
                             int64_t chunk_rows, double *w_sum, gt_real *row_ce) {
    gt_gemma_batch in = mb->in;
    if (mb->encoder && attach_images(ctx, mb, &in)) return NULL;
    gt_tensor *h = mb->media4 ? gt_m4rows_hidden(ctx, m, mb->media4, mb->media4_row0, &in) : gt_gemma_hidden(ctx, m, &in);
    return gt_gemma_lm_loss(ctx, m, h, mb->labels, mb->weights, chunk_rows, w_sum, row_ce);
}

/* Columns [0, n) of a B x T array into a B x n one (elem bytes each); NULL stays NULL. */
static void *cut_cols(const void *src, int64_t B, int64_t T, int64_t n, size_t elem, bool *oom) {
    if (!src) return NULL;
    unsigned char *dst = malloc((size_t)(B * n) * elem);
    if (!dst) return *oom = true, NULL;
    for (int64_t r = 0; r < B; r++)
        memcpy(dst + (size_t)(r * n) * elem, (const unsigned char *)src + (size_t)(r * T) * elem,
               (size_t)n * elem);
    return dst;
}

static void batch_cut_free(const gt_micro_batch *mb, gt_micro_batch *cut) {
    if (cut->in.seq == mb->in.seq) return;
    free((void *)cut->in.token_ids);
    free((void *)cut->in.positions);
    free((void *)cut->in.padding_mask);
    free((void *)cut->in.segment_ids);
    free((void *)cut->labels);
    free((void *)cut->weights);
    free((void *)cut->vision_mask);
    *cut = *mb;
}

/* The decoder is causal, so positions after every row's last weighted label cannot change the
 * loss or any gradient: *cut gets the batch without them (a batch padded to the sequence length
 * costs what its longest example costs). cut == mb's arrays when nothing is cut; else its own,
 * freed by batch_cut_free. Returns 0 or -1 (out of memory, message in err). */
static int batch_cut(const gt_micro_batch *mb, gt_micro_batch *cut, char *err, size_t errn) {
    const int64_t B = mb->in.batch, T = mb->in.seq;
    *cut = *mb;
    if (!mb->weights) return 0; /* every label weighted: nothing to cut */
    int64_t n = 1;
    for (int64_t r = 0; r < B; r++)
        for (int64_t t = T - 1; t >= n; t--)
            if (mb->weights[r * T + t] != 0 || (mb->vision_mask && mb->vision_mask[r * T + t])) { /* whole images */
                n = t + 1;
                break;
            }
    if (n >= T) return 0;
    bool oom = false;
    cut->in.seq = n;
    cut->in.token_ids = cut_cols(mb->in.token_ids, B, T, n, sizeof(int32_t), &oom);
    cut->in.positions = cut_cols(mb->in.positions, B, T, n, sizeof(int32_t), &oom);
    cut->in.padding_mask = cut_cols(mb->in.padding_mask, B, T, n, 1, &oom);
    cut->in.segment_ids = cut_cols(mb->in.segment_ids, B, T, n, sizeof(int32_t), &oom);
    cut->labels = cut_cols(mb->labels, B, T, n, sizeof(int32_t), &oom);
    cut->weights = cut_cols(mb->weights, B, T, n, sizeof(gt_real), &oom);
    cut->vision_mask = cut_cols(mb->vision_mask, B, T, n, 1, &oom);
    if (oom) {
        batch_cut_free(mb, cut);
        snprintf(err, errn, "out of memory for a %lld x %lld batch", (long long)B, (long long)n);
        return -1;
    }
    return 0;
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
        gt_micro_batch cut; /* the micro-batch up to its last weighted label */
        if (batch_cut(&mb[k], &cut, err, errn)) return -1;
        if (cfg->lora) { /* dropout masks stay those of the uncut rows */
            cfg->lora->dropout_token0 = mb[k].first_row * mb[k].in.seq;
            cfg->lora->dropout_row_tokens = cut.in.seq;
            cfg->lora->dropout_row_stride = mb[k].in.seq;
        }
        double ws = 0;
        gt_tensor *l = micro_loss(ctx, m, &cut, cfg->chunk_rows, &ws, NULL);
        tracker tr = {0};
        if (l && k == n_micro - 1 && cfg->reduce && cfg->ready &&
            tracker_arm(&tr, ctx, opt->params, opt->n_params, cfg)) {
            tracker_free(&tr, ctx);
            batch_cut_free(&mb[k], &cut);
            return snprintf(err, errn, "out of memory"), -1;
        }
        if (l) gt_backward(ctx, l);
        tracker_free(&tr, ctx);
        batch_cut_free(&mb[k], &cut); /* backward may read ids and positions */
        if (cfg->lora) cfg->lora->dropout_row_tokens = cfg->lora->dropout_row_stride = 0;
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
    if (cfg->update) return cfg->update(cfg->reduce_user, opt, lr, err, errn);
    gt_optim_step(opt, lr);
    return 0;
}

int gt_step_eval(gt_ctx *ctx, const gt_gemma *m, const gt_micro_batch *mb, int64_t chunk_rows,
                 double *wce_sum, double *w_sum, gt_real *row_ce, char *err, size_t errn) {
    const int64_t B = mb->in.batch, T = mb->in.seq;
    gt_micro_batch cut;
    if (batch_cut(mb, &cut, err, errn)) return -1;
    const int64_t n = cut.in.seq;
    gt_real *ce = row_ce && n < T ? malloc((size_t)(B * n) * sizeof(gt_real)) : row_ce;
    if (row_ce && !ce) {
        batch_cut_free(mb, &cut);
        return snprintf(err, errn, "out of memory"), -1;
    }
    gt_ctx_reset(ctx);
    bool grad = ctx->grad_enabled;
    ctx->grad_enabled = false;
    gt_tensor *l = micro_loss(ctx, m, &cut, chunk_rows, w_sum, ce);
    ctx->grad_enabled = grad;
    int rc = 0;
    if (l) {
        *wce_sum = l->data[0];
        if (ce != row_ce)
            for (int64_t r = 0; r < B; r++)
                for (int64_t t = 0; t < T; t++) row_ce[r * T + t] = t < n ? ce[r * n + t] : 0;
    } else {
        snprintf(err, errn, "%s", ctx->err);
        rc = -1;
    }
    if (ce != row_ce) free(ce);
    batch_cut_free(mb, &cut);
    return rc;
}
