/* Frozen bf16 storage: rounding, the bf16 ops against fp32 ops on the same values, and a Gemma
 * LoRA step with a bf16 base model against an fp32 model holding the rounded weights. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/gemma.h"
#include "train/config.h"
#include "tests/check_main.h"

static uint32_t bits(float f) {
    union { float f; uint32_t u; } v = {f};
    return v.u;
}
static float from_bits(uint32_t u) {
    union { uint32_t u; float f; } v = {u};
    return v.f;
}

START_TEST(rounding_is_to_nearest_even) {
    ck_assert_uint_eq(gt_f32_to_bf16(1.0f), 0x3f80);
    ck_assert_uint_eq(gt_f32_to_bf16(from_bits(0x3f808000)), 0x3f80); /* tie, even stays */
    ck_assert_uint_eq(gt_f32_to_bf16(from_bits(0x3f818000)), 0x3f82); /* tie, odd rounds up */
    ck_assert_uint_eq(gt_f32_to_bf16(from_bits(0x3f808001)), 0x3f81); /* above the tie */
    ck_assert_uint_eq(gt_f32_to_bf16(-0.0f), 0x8000);
    ck_assert_uint_eq(gt_f32_to_bf16(INFINITY), 0x7f80);
    ck_assert_uint_eq(gt_f32_to_bf16(from_bits(0x7f7fffff)), 0x7f80); /* FLT_MAX overflows to inf */
    ck_assert(isnan(gt_bf16_to_f32(gt_f32_to_bf16(NAN))));
    ck_assert(isnan(gt_bf16_to_f32(gt_f32_to_bf16(from_bits(0x7f800001))))); /* low-bit NaN */
    for (uint32_t h = 0; h < 0x7f80; h += 97) /* expand is exact and round-trips */
        ck_assert_uint_eq(gt_f32_to_bf16(gt_bf16_to_f32((uint16_t)h)), h);
    ck_assert(bits(gt_bf16_to_f32(0x3f81)) == 0x3f810000);
}
END_TEST

static double rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2 - 1;
}

START_TEST(linear_in_row_blocks_matches_matmul) {
    enum { R = 9, C = 7 };
    uint64_t seed = 5;
    uint16_t w16[R * C];
    gt_real wf[R * C], stage[2 * C];
    for (int i = 0; i < R * C; i++) w16[i] = gt_f32_to_bf16((float)rnd(&seed));
    gt_bf16_expand(w16, wf, R * C);
    gt_bf16_mat w = {w16, R, C, stage, 2 * C, false, GT_WFMT_BF16, NULL}; /* blocks of 2 rows, the last one short */
    gt_ctx ctx, c2;
    gt_ctx_init(&ctx, 0);
    gt_ctx_init(&c2, 0);
    int64_t xs[3] = {3, 5, C}, ws[2] = {R, C};
    gt_real x[3 * 5 * C];
    for (int i = 0; i < 3 * 5 * C; i++) x[i] = (gt_real)rnd(&seed);
    gt_tensor *x1 = gt_from_data(&ctx, x, 3, xs, true), *x2 = gt_from_data(&c2, x, 3, xs, true);
    gt_tensor *wt = gt_from_data(&c2, wf, 2, ws, false);
    gt_tensor *y1 = gt_bf16_linear(&ctx, x1, &w), *y2 = gt_matmul(&c2, x2, wt, false, true);
    ck_assert_msg(gt_ok(&ctx) && gt_ok(&c2), "%s%s", ctx.err, c2.err);
    ck_assert_int_eq(y1->ndim, 3);
    ck_assert_int_eq(y1->shape[2], R);
    for (int64_t i = 0; i < y1->size; i++) ck_assert_double_eq_tol(y1->data[i], y2->data[i], 1e-6);
    /* same weighted sum on both: dx = dy W */
    gt_real g[3 * 5 * R];
    for (int i = 0; i < 3 * 5 * R; i++) g[i] = (gt_real)rnd(&seed);
    ck_assert_int_eq(gt_backward_seed(&ctx, y1, g), GT_OK);
    ck_assert_int_eq(gt_backward_seed(&c2, y2, g), GT_OK);
    double amax = 0;
    for (int64_t i = 0; i < x1->size; i++) {
        ck_assert_double_eq_tol(x1->grad[i], x2->grad[i], 1e-6);
        amax = fmax(amax, fabs(x1->grad[i]));
    }
    ck_assert(amax > 0.1);
    /* staging smaller than a row is an error naming the op */
    gt_ctx_reset(&ctx);
    gt_bf16_mat tiny = {w16, R, C, stage, C - 1, false, GT_WFMT_BF16, NULL};
    x1 = gt_from_data(&ctx, x, 3, xs, true);
    ck_assert_ptr_null(gt_bf16_linear(&ctx, x1, &tiny));
    ck_assert_msg(strstr(ctx.err, "bf16_linear") && strstr(ctx.err, "staging"), "%s", ctx.err);
    gt_ctx_free(&ctx);
    gt_ctx_free(&c2);
}
END_TEST

/* bf16 table against its fp32 expansion. The fp32 reference goes through OpenBLAS when asked
 * (GT_LMHEAD_BLAS), so with D a multiple of 64 the packing-free kernel meets BLAS. */
static void bf16_vs_fp32(int V, int D, int N, int stage_rows, bool blas_ref) {
    uint64_t seed = 21;
    uint16_t *e16 = malloc(sizeof(uint16_t) * (size_t)(V * D));
    gt_real *ef = malloc(sizeof(gt_real) * (size_t)(V * D)), *stage = malloc(sizeof(gt_real) * (size_t)(stage_rows * D));
    gt_real *h = malloc(sizeof(gt_real) * (size_t)(N * D));
    /* later vocabulary rows are larger, so row maxima move forward block by block */
    for (int v = 0; v < V; v++)
        for (int k = 0; k < D; k++) e16[v * D + k] = gt_f32_to_bf16((float)(rnd(&seed) * (1 + v / 8.0)));
    gt_bf16_expand(e16, ef, V * D);
    for (int i = 0; i < N * D; i++) h[i] = (gt_real)rnd(&seed);
    gt_bf16_mat e = {e16, V, D, stage, stage_rows * D, false, GT_WFMT_BF16, NULL};
    int32_t labels[6] = {3, (int32_t)V - 1, 17, 0, 30, 9};
    gt_real w[6] = {1, 0, 2, 0.5f, 1, 3}, ce1[6], ce2[6];
    for (int pass = 0; pass < 2; pass++) { /* with and without the soft-cap */
        double cap = pass ? 0 : 3.0, ws1, ws2;
        gt_ctx c1, c2;
        gt_ctx_init(&c1, 0);
        gt_ctx_init(&c2, 0);
        int64_t hs[2] = {N, D}, es[2] = {V, D};
        gt_tensor *h1 = gt_from_data(&c1, h, 2, hs, true), *h2 = gt_from_data(&c2, h, 2, hs, true);
        gt_tensor *et = gt_from_data(&c2, ef, 2, es, false);
        gt_tensor *l1 = gt_lm_head_loss_bf16(&c1, h1, &e, cap, labels, w, 4, &ws1, ce1);
        if (blas_ref) setenv("GT_LMHEAD_BLAS", "1", 1);
        gt_tensor *l2 = gt_lm_head_loss(&c2, h2, et, cap, labels, w, 4, &ws2, ce2);
        unsetenv("GT_LMHEAD_BLAS");
        ck_assert_msg(l1 && l2, "%s%s", c1.err, c2.err);
        ck_assert_double_eq_tol(l1->data[0], l2->data[0], 1e-5 * fabs(l2->data[0]));
        ck_assert(ws1 == ws2);
        for (int i = 0; i < N; i++) ck_assert_double_eq_tol(ce1[i], ce2[i], 1e-5 * (1 + fabs(ce2[i])));
        ck_assert(ce1[1] == 0);
        ck_assert_int_eq(gt_backward(&c1, l1), GT_OK);
        ck_assert_int_eq(gt_backward(&c2, l2), GT_OK);
        double gmax = 0;
        for (int i = 0; i < N * D; i++) gmax = fmax(gmax, fabs(h2->grad[i]));
        for (int i = 0; i < N * D; i++) ck_assert_double_eq_tol(h1->grad[i], h2->grad[i], 1e-5 * (1 + gmax));
        ck_assert(gmax > 0.1);
        for (int k = 0; k < D; k++) ck_assert(h1->grad[1 * D + k] == 0); /* weight 0 */
        gt_ctx_free(&c1);
        gt_ctx_free(&c2);
    }
    free(e16);
    free(ef);
    free(stage);
    free(h);
}

START_TEST(lm_head_in_one_pass_matches_fp32) {
    bf16_vs_fp32(37, 5, 6, 8, false); /* vocabulary blocks of 8, 8, 8, 8, 5 */
    bf16_vs_fp32(1001, 64, 6, 64, true); /* the packing-free kernel (no cap) against OpenBLAS */
}
END_TEST

/* tiny Gemma 3; V > 1024 * D / D rows so the LM head and logits run in two vocabulary blocks */
static gt_gemma *tiny(bool bf16, bool convert_first) {
    gt_gemma_config c;
    gt_gemma_config_defaults(&c, 3);
    c.vocab_size = 1500;
    c.num_layers = 2;
    c.hidden_dim = 16;
    c.intermediate_dim = 24;
    c.num_query_heads = 2;
    c.num_kv_heads = 1;
    c.head_dim = 8;
    c.sliding_window = 3;
    c.final_logit_softcap = 30;
    char err[256];
    gt_gemma *m;
    ck_assert(gt_gemma_create(&c, false, &m, err, sizeof err) == 0);
    if (bf16 && convert_first) ck_assert_msg(gt_gemma_set_frozen_dtype(m, GT_FROZEN_BF16, err, sizeof err) == 0, "%s", err);
    gt_gemma_init_random(m, 11, 0.3);
    if (bf16 && !convert_first) ck_assert_msg(gt_gemma_set_frozen_dtype(m, GT_FROZEN_BF16, err, sizeof err) == 0, "%s", err);
    if (!bf16) /* the fp32 reference holds the rounded values */
        for (int p = 0; p < m->n_params; p++) {
            gt_tensor *t = m->params[p].t;
            if (t->ndim == 2)
                for (int64_t i = 0; i < t->size; i++)
                    t->data[i] = gt_bf16_to_f32(gt_f32_to_bf16((float)t->data[i]));
        }
    return m;
}

static gt_lora *adapters(void) {
    gt_lora_dims d = {2, 16, 24, 2, 1, 8};
    gt_lora *l;
    char err[256];
    ck_assert(gt_lora_create(&d, 2, 4, (1u << GT_LORA_QUERY) | (1u << GT_LORA_VALUE), 9, &l, err,
                             sizeof err) == 0);
    for (int64_t i = 0; i < l->n_values; i++)
        if (l->data[i] == 0) l->data[i] = (gt_real)(0.05 * ((i * 37) % 11 - 5));
    return l;
}

START_TEST(gemma_lora_step_on_bf16_equals_fp32_on_rounded_weights) {
    gt_gemma *ref = tiny(false, false), *a = tiny(true, false), *b = tiny(true, true);
    /* both conversion orders hold exactly the rounded values */
    int64_t maxn = 1500 * 16;
    gt_real *va = malloc(sizeof(gt_real) * maxn), *vb = malloc(sizeof(gt_real) * maxn);
    for (int p = 0; p < ref->n_params; p++) {
        gt_tensor *t = ref->params[p].t;
        gt_gemma_param_values(a, a->params[p].t, va);
        gt_gemma_param_values(b, b->params[p].t, vb);
        ck_assert(memcmp(va, t->data, sizeof(gt_real) * t->size) == 0);
        ck_assert(memcmp(vb, t->data, sizeof(gt_real) * t->size) == 0);
        ck_assert(t->ndim != 2 || !a->params[p].t->data);
    }
    free(va);
    free(vb);
    gt_lora *lr = adapters(), *la = adapters();
    ref->lora = lr;
    a->lora = la;
    enum { T = 7 };
    int32_t ids[2 * T], labels[2 * T];
    for (int i = 0; i < 2 * T; i++) ids[i] = (i * 389) % 1500, labels[i] = (i * 577 + 3) % 1500;
    gt_gemma_batch batch = {.batch = 2, .seq = T, .token_ids = ids};
    double loss[2];
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_gemma *ms[2] = {ref, a};
    for (int k = 0; k < 2; k++) {
        gt_ctx_reset(&ctx);
        double ws;
        gt_tensor *h = gt_gemma_hidden(&ctx, ms[k], &batch);
        gt_tensor *l = gt_gemma_lm_loss(&ctx, ms[k], h, labels, NULL, 3, &ws, NULL);
        ck_assert_msg(l && gt_backward(&ctx, l) == GT_OK, "%s", ctx.err);
        loss[k] = l->data[0];
    }
    ck_assert_double_eq_tol(loss[0], loss[1], 1e-5 * fabs(loss[0]));
    double gmax = 0, dmax = 0;
    for (int64_t i = 0; i < lr->n_values; i++) {
        gmax = fmax(gmax, fabs(lr->grad[i]));
        dmax = fmax(dmax, fabs(lr->grad[i] - la->grad[i]));
    }
    ck_assert(gmax > 1e-3);
    ck_assert_msg(dmax <= 1e-5 * gmax, "LoRA gradients differ by %g (max %g)", dmax, gmax);
    /* inference logits (generation's path) agree too */
    gt_ctx_reset(&ctx);
    ctx.grad_enabled = false;
    gt_tensor *z0 = gt_gemma_logits(&ctx, ref, gt_gemma_hidden(&ctx, ref, &batch));
    gt_tensor *z1 = gt_gemma_logits(&ctx, a, gt_gemma_hidden(&ctx, a, &batch));
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    for (int64_t i = 0; i < z0->size; i++) ck_assert_double_eq_tol(z0->data[i], z1->data[i], 1e-5);
    gt_ctx_free(&ctx);
    /* bf16 storage is for frozen models only, and converts once */
    char err[256];
    ck_assert_int_eq(gt_gemma_set_frozen_dtype(a, GT_FROZEN_BF16, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "already"), "%s", err);
    gt_gemma *full;
    ck_assert(gt_gemma_create(&ref->cfg, true, &full, err, sizeof err) == 0);
    ck_assert_int_eq(gt_gemma_set_frozen_dtype(full, GT_FROZEN_BF16, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "model.frozen_dtype") && strstr(err, "full fine-tuning"), "%s", err);
    ck_assert_int_eq(gt_frozen_dtype_from_name("bf16"), GT_FROZEN_BF16);
    ck_assert_int_eq(gt_frozen_dtype_from_name("fp16"), -1);
    gt_gemma_free(full);
    gt_lora_free(lr);
    gt_lora_free(la);
    gt_gemma_free(ref);
    gt_gemma_free(a);
    gt_gemma_free(b);
}
END_TEST

START_TEST(config_key_is_for_lora_only) {
    gt_config c;
    char err[512];
    const char *kv[] = {"model.preset=gemma3_270m", "data.train=train.jsonl", "tokenizer=t.json",
                        "model.frozen_dtype=bf16"};
    gt_config_defaults(&c);
    for (int i = 0; i < 4; i++) ck_assert_msg(gt_config_override(&c, kv[i], err, sizeof err) == 0, "%s", err);
    gt_config_resolve(&c);
    ck_assert_msg(gt_config_check(&c, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.model.frozen_dtype, GT_FROZEN_BF16);
    ck_assert(gt_config_override(&c, "lora.enabled=false", err, sizeof err) == 0);
    ck_assert(gt_config_override(&c, "train.full_finetune=true", err, sizeof err) == 0);
    ck_assert_int_ne(gt_config_check(&c, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "model.frozen_dtype") && strstr(err, "full fine-tuning"), "%s", err);
    ck_assert_int_ne(gt_config_override(&c, "model.frozen_dtype=fp16", err, sizeof err), 0);
    /* compute_dtype bfloat16 multiplies the bf16-stored weights: fp32 storage is refused */
    ck_assert(gt_config_override(&c, "lora.enabled=true", err, sizeof err) == 0);
    ck_assert(gt_config_override(&c, "train.full_finetune=false", err, sizeof err) == 0);
    ck_assert(gt_config_override(&c, "model.compute_dtype=bfloat16", err, sizeof err) == 0);
    ck_assert_msg(gt_config_check(&c, err, sizeof err) == 0, "%s", err);
    ck_assert(gt_config_override(&c, "model.frozen_dtype=fp32", err, sizeof err) == 0);
    ck_assert_int_ne(gt_config_check(&c, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "model.compute_dtype") && strstr(err, "model.frozen_dtype: bf16"), "%s", err);
}
END_TEST

int main(void) {
    Suite *s = suite_create("frozen_bf16");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, rounding_is_to_nearest_even);
    tcase_add_test(tc, linear_in_row_blocks_matches_matmul);
    tcase_add_test(tc, lm_head_in_one_pass_matches_fp32);
    tcase_add_test(tc, gemma_lora_step_on_bf16_equals_fp32_on_rounded_weights);
    tcase_add_test(tc, config_key_is_for_lora_only);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
