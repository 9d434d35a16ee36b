#include "tests/quant_model.h"

#include <check.h>
#include <math.h>
#include <string.h>

#include "autograd/ops_lmhead.h"
#include "train/step.h"

gt_gemma_config gt_test_tiny3_cfg(int64_t hidden_dim, int64_t intermediate_dim) {
    gt_gemma_config c;
    gt_gemma_config_defaults(&c, 3);
    c.vocab_size = 512;
    c.num_layers = 2;
    c.hidden_dim = hidden_dim;
    c.intermediate_dim = intermediate_dim;
    c.num_query_heads = 2;
    c.num_kv_heads = 1;
    c.head_dim = 32;
    c.sliding_window = 8;
    return c;
}

/* AdamW over every adapter of l (at most 4 layers of 3 targets). */
static void lora_optim(gt_lora *l, gt_optim *opt) {
    gt_param_slice sl[24];
    int n = 0;
    char err[256];
    for (int64_t i = 0; i < l->num_layers; i++)
        for (int t = 0; t < GT_LORA_NTARGETS; t++) {
            gt_lora_adapter *ad = (gt_lora_adapter *)gt_lora_get(l, i, (gt_lora_target)t);
            if (!ad) continue;
            ck_assert(n + 2 <= 24);
            sl[n++] = (gt_param_slice){ad->a.name, ad->a.data, ad->a.grad, ad->a.size, true};
            sl[n++] = (gt_param_slice){ad->b.name, ad->b.data, ad->b.grad, ad->b.size, true};
        }
    gt_optim_cfg oc;
    gt_optim_cfg_defaults(&oc, GT_OPT_ADAMW);
    ck_assert_msg(gt_optim_init(opt, &oc, sl, n, err, sizeof err) == 0, "%s", err);
}

enum { TB = 2, TT = 16 };

void gt_test_lora_run(gt_gemma *m, int steps, double lr, bool b_nonzero, double *losses, gt_real *grad0,
                      int64_t cap, int64_t *ng) {
    char err[256];
    gt_lora *l;
    unsigned targets = (1u << GT_LORA_QUERY) | (1u << GT_LORA_VALUE) | (1u << GT_LORA_DOWN);
    ck_assert_msg(gt_lora_create_for(&m->cfg, 4, 8, targets, 9, &l, err, sizeof err) == 0, "%s", err);
    if (b_nonzero)
        for (int64_t i = 0; i < l->n_values; i++)
            if (l->data[i] == 0) l->data[i] = (gt_real)(0.02 * ((i * 37) % 11 - 5));
    m->lora = l;
    gt_optim opt;
    lora_optim(l, &opt);
    int32_t ids[TB * TT], labels[TB * TT];
    gt_real w[TB * TT];
    for (int i = 0; i < TB * TT; i++) ids[i] = (i * 37 + 5) % 512, labels[i] = (i * 11 + 3) % 64, w[i] = 1;
    gt_micro_batch mb = {.in = {.batch = TB, .seq = TT, .token_ids = ids}, .labels = labels, .weights = w};
    gt_step_cfg sc = {.norm = GT_NORM_TOKENS, .chunk_rows = 16};
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    for (int s = 0; s < steps; s++) {
        gt_step_result r;
        gt_ctx_reset(&ctx);
        ck_assert_msg(gt_step_run(&ctx, m, &opt, &sc, &mb, 1, TB, lr, &r, err, sizeof err) == 0, "%s", err);
        losses[s] = r.loss;
        if (s == 0 && grad0) {
            ck_assert(l->n_values <= cap);
            memcpy(grad0, l->grad, sizeof(gt_real) * (size_t)l->n_values);
            *ng = l->n_values;
        }
    }
    gt_ctx_free(&ctx);
    gt_optim_free(&opt);
    m->lora = NULL;
    gt_lora_free(l);
}

double gt_test_losses_near(const double *got, const double *ref, int n, double tol, const char *what) {
    double worst = 0;
    for (int s = 0; s < n; s++) {
        double rel = fabs(got[s] - ref[s]) / ref[s];
        worst = fmax(worst, rel);
        ck_assert_msg(rel <= tol, "step %d: %s loss %.7f vs %.7f", s, what, got[s], ref[s]);
    }
    return worst;
}

void gt_test_loss_fell(const double *losses, int n) {
    ck_assert_msg(losses[n - 1] < 0.8 * losses[0], "the run did not learn: %.4f -> %.4f", losses[0], losses[n - 1]);
}

void gt_test_grads_near(const gt_real *got, const gt_real *ref, int64_t n, double gmin, double tol, const char *what) {
    double gmax = 0, dmax = 0;
    for (int64_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(ref[i])), dmax = fmax(dmax, fabs(got[i] - ref[i]));
    ck_assert_msg(gmax > gmin, "%s: LoRA gradients at most %g", what, gmax);
    ck_assert_msg(dmax <= tol * gmax, "%s: LoRA gradients differ by %g (max %g)", what, dmax, gmax);
}

void gt_test_linear_pair(gt_test_pair *p, const gt_bf16_mat *w1, const gt_bf16_mat *w2, const gt_real *wf,
                         const gt_real *x, int ndim, const int64_t *xs, const gt_real *g) {
    gt_ctx_init(&p->c1, 0);
    gt_ctx_init(&p->c2, 0);
    p->x1 = gt_from_data(&p->c1, x, ndim, xs, true);
    p->x2 = gt_from_data(&p->c2, x, ndim, xs, true);
    p->y1 = gt_bf16_linear(&p->c1, p->x1, w1);
    if (w2) p->y2 = gt_bf16_linear(&p->c2, p->x2, w2);
    else {
        int64_t ws[2] = {w1->rows, w1->cols};
        p->y2 = gt_matmul(&p->c2, p->x2, gt_from_data(&p->c2, wf, 2, ws, false), false, true);
    }
    ck_assert_msg(p->y1 && p->y2, "%s%s", p->c1.err, p->c2.err);
    ck_assert_int_eq(gt_backward_seed(&p->c1, p->y1, g), GT_OK);
    ck_assert_int_eq(gt_backward_seed(&p->c2, p->y2, g), GT_OK);
}

void gt_test_lm_head_pair(gt_test_pair *p, const gt_bf16_mat *e1, const gt_bf16_mat *e2, const gt_real *ef,
                          const gt_real *h, int64_t n, double cap, const int32_t *labels, const gt_real *w,
                          int64_t block, gt_real *ce1, gt_real *ce2) {
    double ws1, ws2;
    int64_t hs[2] = {n, e1->cols};
    gt_ctx_init(&p->c1, 0);
    gt_ctx_init(&p->c2, 0);
    p->x1 = gt_from_data(&p->c1, h, 2, hs, true);
    p->x2 = gt_from_data(&p->c2, h, 2, hs, true);
    p->y1 = gt_lm_head_loss_bf16(&p->c1, p->x1, e1, cap, labels, w, block, &ws1, ce1);
    if (e2) p->y2 = gt_lm_head_loss_bf16(&p->c2, p->x2, e2, cap, labels, w, block, &ws2, ce2);
    else {
        int64_t es[2] = {e1->rows, e1->cols};
        gt_tensor *et = gt_from_data(&p->c2, ef, 2, es, false);
        p->y2 = gt_lm_head_loss(&p->c2, p->x2, et, cap, labels, w, block, &ws2, ce2);
    }
    ck_assert_msg(p->y1 && p->y2, "%s%s", p->c1.err, p->c2.err);
    ck_assert_int_eq(gt_backward(&p->c1, p->y1), GT_OK);
    ck_assert_int_eq(gt_backward(&p->c2, p->y2), GT_OK);
}

void gt_test_pair_free(gt_test_pair *p) {
    gt_ctx_free(&p->c1);
    gt_ctx_free(&p->c2);
}
