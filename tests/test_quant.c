/* Q8_0 frozen storage (model.frozen_dtype q8_0): the blocks against the gguf Python package
 * (tests/fixtures/quant_q8_0.h5, tools/reference/make_quant_fixture.py), the ops on Q8_0 matrices
 * against fp32 ops on the dequantised values, a Gemma LoRA step and a 12-step LoRA loss trajectory
 * against fp32, building straight into the storage (random init, GGUF), refusals, and the trainer
 * end to end. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "autograd/bf16_gemm.h"
#include "autograd/quant.h"
#include "models/gemma.h"
#include "models/io/gemma_gguf.h"
#include "models/io/gguf_export.h"
#include "models/io/gguf_writer.h"
#include "models/io/h5io.h"
#include "models/io/keras_preset.h"
#include "train/config.h"
#include "train/step.h"

START_TEST(q8_blocks_match_the_gguf_package) {
    gt_h5 h;
    char err[256];
    ck_assert_msg(gt_h5_open_read("tests/fixtures/quant_q8_0.h5", &h, err, sizeof err) == 0, "%s", err);
    float *x, *deq;
    int32_t *blocks;
    int nd;
    int64_t sx[8], sb[8], sd[8];
    ck_assert(gt_h5_read_f32(h, "/x", &x, &nd, sx, err, sizeof err) == 0);
    ck_assert(gt_h5_read_i32(h, "/blocks", &blocks, &nd, sb, err, sizeof err) == 0);
    ck_assert(gt_h5_read_f32(h, "/dequant", &deq, &nd, sd, err, sizeof err) == 0);
    gt_h5_close(h);
    int64_t n = sx[0] * sx[1];
    ck_assert_int_eq(sb[0] * sb[1], gt_q8_bytes(n));
    uint8_t *q = malloc((size_t)gt_q8_bytes(n));
    float *back = malloc(sizeof(float) * (size_t)n);
    gt_q8_quantize(x, q, n);
    for (int64_t i = 0; i < gt_q8_bytes(n); i++)
        ck_assert_msg(q[i] == (uint8_t)blocks[i], "byte %lld (block %lld): %u, gguf %d", (long long)i,
                      (long long)(i / GT_Q8_BYTES), q[i], blocks[i]);
    gt_q8_dequant(q, back, n);
    for (int64_t i = 0; i < n; i++) ck_assert_msg(back[i] == deq[i], "value %lld: %g vs %g", (long long)i, back[i], deq[i]);
    ck_assert(back[3 * 64 + 1] == 3 && back[3 * 64 + 2] == -3 && back[3 * 64 + 5] == 127); /* halves away from 0 */
    ck_assert(back[4 * 64] == 0);
    free(q);
    free(back);
    free(x);
    free(blocks);
    free(deq);
}
END_TEST

static double rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2 - 1;
}

/* A random [R, C] Q8_0 matrix and its dequantised values. */
static uint8_t *q8_matrix(int64_t R, int64_t C, uint64_t seed, gt_real **values) {
    gt_real *v = malloc(sizeof(gt_real) * (size_t)(R * C));
    for (int64_t i = 0; i < R * C; i++) v[i] = (gt_real)(rnd(&seed) * (1 + (i / C) / 16.0));
    uint8_t *q = malloc((size_t)gt_q8_bytes(R * C));
    gt_q8_quantize(v, q, R * C);
    gt_q8_dequant(q, v, R * C);
    *values = v;
    return q;
}

START_TEST(linear_and_embedding_match_fp32_on_dequantised_values) {
    enum { R = 40, C = 64 };
    gt_real *wf, stage[16 * C];
    uint8_t *q = q8_matrix(R, C, 5, &wf);
    gt_bf16_mat w = {NULL, R, C, stage, 16 * C, false, GT_WFMT_Q8_0, q}; /* blocks of 16, 16, 8 rows */
    gt_ctx ctx, c2;
    gt_ctx_init(&ctx, 0);
    gt_ctx_init(&c2, 0);
    uint64_t seed = 9;
    int64_t xs[3] = {3, 5, C}, ws[2] = {R, C};
    gt_real x[3 * 5 * C], g[3 * 5 * R];
    for (int i = 0; i < 3 * 5 * C; i++) x[i] = (gt_real)rnd(&seed);
    for (int i = 0; i < 3 * 5 * R; i++) g[i] = (gt_real)rnd(&seed);
    gt_tensor *x1 = gt_from_data(&ctx, x, 3, xs, true), *x2 = gt_from_data(&c2, x, 3, xs, true);
    gt_tensor *wt = gt_from_data(&c2, wf, 2, ws, false);
    gt_tensor *y1 = gt_bf16_linear(&ctx, x1, &w), *y2 = gt_matmul(&c2, x2, wt, false, true);
    ck_assert_msg(gt_ok(&ctx) && gt_ok(&c2), "%s%s", ctx.err, c2.err);
    for (int64_t i = 0; i < y1->size; i++) ck_assert_double_eq_tol(y1->data[i], y2->data[i], 1e-5 * (1 + fabs(y2->data[i])));
    ck_assert_int_eq(gt_backward_seed(&ctx, y1, g), GT_OK); /* dx = dy W: the input gradient LoRA needs */
    ck_assert_int_eq(gt_backward_seed(&c2, y2, g), GT_OK);
    double amax = 0;
    for (int64_t i = 0; i < x1->size; i++) {
        ck_assert_double_eq_tol(x1->grad[i], x2->grad[i], 1e-5 * (1 + fabs(x2->grad[i])));
        amax = fmax(amax, fabs(x1->grad[i]));
    }
    ck_assert(amax > 0.1);
    ck_assert(!gt_bf16_linear_uses_bf16(&w)); /* Q8_0 multiplies in fp32 */
    int32_t ids[4] = {39, 0, 17, 17};
    gt_tensor *e = gt_bf16_embedding(&ctx, &w, ids, 4);
    ck_assert_msg(e != NULL, "%s", ctx.err);
    for (int i = 0; i < 4; i++)
        ck_assert(memcmp(e->data + i * C, wf + ids[i] * C, sizeof(gt_real) * C) == 0);
    gt_ctx_free(&ctx);
    gt_ctx_free(&c2);
    free(q);
    free(wf);
}
END_TEST

/* compute_bf16 on a Q8_0 matrix: rows widened to bf16 in blocks of 32 (64 rows of bf16 staging:
 * half widened, half packed) and multiplied on the bf16 kernel, against a bf16 matrix holding
 * the same widened values on that kernel (one block); every kernel the CPU has. */
START_TEST(linear_on_the_bf16_kernel_matches_bf16_storage) {
    enum { R = 96, C = 64, M = 21 };
    gt_real *wf, *stage = malloc(sizeof(gt_real) * 64 * C), *stage2 = malloc(sizeof(gt_real) * R * C);
    uint8_t *q = q8_matrix(R, C, 13, &wf);
    uint16_t *w16 = malloc(sizeof(uint16_t) * R * C);
    gt_to_bf16_n(wf, w16, R * C);
    gt_bf16_mat wq = {NULL, R, C, stage, 32 * C, true, GT_WFMT_Q8_0, q}; /* 64 bf16 rows: blocks of 32 */
    gt_bf16_mat wb = {w16, R, C, stage2, R * C, true, GT_WFMT_BF16, NULL};
    uint64_t seed = 4;
    gt_real x[M * C], g[M * R];
    for (int i = 0; i < M * C; i++) x[i] = (gt_real)rnd(&seed);
    for (int i = 0; i < M * R; i++) g[i] = (gt_real)rnd(&seed);
    gt_bf16_kernel ks[3] = {GT_BF16K_OFF, GT_BF16K_AVX512, GT_BF16K_AMX};
    for (int kk = 0; kk < 3; kk++) {
        if (gt_bf16_kernel_force((int)ks[kk]) != ks[kk]) continue;
        ck_assert(gt_bf16_linear_uses_bf16(&wq) == (ks[kk] != GT_BF16K_OFF));
        if (ks[kk] == GT_BF16K_OFF) continue; /* the fp32 path: linear_and_embedding_... */
        gt_ctx c1, c2;
        gt_ctx_init(&c1, 0);
        gt_ctx_init(&c2, 0);
        int64_t xs[2] = {M, C};
        gt_tensor *x1 = gt_from_data(&c1, x, 2, xs, true), *x2 = gt_from_data(&c2, x, 2, xs, true);
        gt_tensor *y1 = gt_bf16_linear(&c1, x1, &wq), *y2 = gt_bf16_linear(&c2, x2, &wb);
        ck_assert_msg(y1 && y2, "%s%s", c1.err, c2.err);
        ck_assert_int_eq(gt_backward_seed(&c1, y1, g), GT_OK);
        ck_assert_int_eq(gt_backward_seed(&c2, y2, g), GT_OK);
        double tol = 1e-5;
        for (int64_t i = 0; i < y1->size; i++) ck_assert_double_eq_tol(y1->data[i], y2->data[i], tol * (1 + fabs(y2->data[i])));
        for (int64_t i = 0; i < x1->size; i++) ck_assert_double_eq_tol(x1->grad[i], x2->grad[i], tol * (1 + fabs(x2->grad[i])));
        gt_ctx_free(&c1);
        gt_ctx_free(&c2);
    }
    gt_bf16_kernel_force(-1);
    wq.stage_n = 31 * C; /* under 64 bf16 rows: the fp32 path */
    ck_assert(!gt_bf16_linear_uses_bf16(&wq));
    free(q);
    free(wf);
    free(w16);
    free(stage);
    free(stage2);
}
END_TEST

/* The LM-head loss on a Q8_0 table against gt_lm_head_loss on its dequantised values: blocked
 * one pass (soft-cap) and, D a multiple of 64 without cap, the packing-free per-thread path. */
static void lm_head_vs_fp32(int V, int D, double cap) {
    enum { N = 6 };
    gt_real *ef, *stage = malloc(sizeof(gt_real) * (size_t)(64 * D)), h[N * 128];
    uint8_t *q = q8_matrix(V, D, 21, &ef);
    gt_bf16_mat e = {NULL, V, D, stage, 64 * D, false, GT_WFMT_Q8_0, q};
    uint64_t seed = 3;
    for (int i = 0; i < N * D; i++) h[i] = (gt_real)rnd(&seed);
    int32_t labels[N] = {3, (int32_t)V - 1, 17, 0, 30, 9};
    gt_real w[N] = {1, 0, 2, 0.5f, 1, 3}, ce1[N], ce2[N];
    double ws1, ws2;
    gt_ctx c1, c2;
    gt_ctx_init(&c1, 0);
    gt_ctx_init(&c2, 0);
    int64_t hs[2] = {N, D}, es[2] = {V, D};
    gt_tensor *h1 = gt_from_data(&c1, h, 2, hs, true), *h2 = gt_from_data(&c2, h, 2, hs, true);
    gt_tensor *et = gt_from_data(&c2, ef, 2, es, false);
    gt_tensor *l1 = gt_lm_head_loss_bf16(&c1, h1, &e, cap, labels, w, 4, &ws1, ce1);
    gt_tensor *l2 = gt_lm_head_loss(&c2, h2, et, cap, labels, w, 4, &ws2, ce2);
    ck_assert_msg(l1 && l2, "%s%s", c1.err, c2.err);
    ck_assert_double_eq_tol(l1->data[0], l2->data[0], 1e-5 * fabs(l2->data[0]));
    for (int i = 0; i < N; i++) ck_assert_double_eq_tol(ce1[i], ce2[i], 1e-5 * (1 + fabs(ce2[i])));
    ck_assert_int_eq(gt_backward(&c1, l1), GT_OK);
    ck_assert_int_eq(gt_backward(&c2, l2), GT_OK);
    double gmax = 0;
    for (int i = 0; i < N * D; i++) gmax = fmax(gmax, fabs(h2->grad[i]));
    ck_assert(gmax > 0.1);
    for (int i = 0; i < N * D; i++) ck_assert_double_eq_tol(h1->grad[i], h2->grad[i], 1e-5 * (1 + gmax));
    gt_ctx_free(&c1);
    gt_ctx_free(&c2);
    free(q);
    free(ef);
    free(stage);
}

START_TEST(lm_head_matches_fp32_on_dequantised_values) {
    lm_head_vs_fp32(1000, 32, 30);
    lm_head_vs_fp32(1001, 64, 0);
}
END_TEST

/* tiny Gemma 3 with widths that are multiples of 32 (configs/tiny.yaml's), std 0.2 */
static gt_gemma_config tiny_cfg(void) {
    gt_gemma_config c;
    gt_gemma_config_defaults(&c, 3);
    c.vocab_size = 512;
    c.num_layers = 2;
    c.hidden_dim = 64;
    c.intermediate_dim = 128;
    c.num_query_heads = 2;
    c.num_kv_heads = 1;
    c.head_dim = 32;
    c.sliding_window = 8;
    return c;
}

/* fp32 model, or q8_0 (converted after init, or built stored and initialised in place), or fp32
 * holding the q8_0 values */
typedef enum { FP32, Q8_CONVERTED, Q8_STORED, FP32_DEQUANT } tiny_kind;

static gt_gemma *tiny(tiny_kind k) {
    gt_gemma_config c = tiny_cfg();
    char err[256];
    gt_gemma *m;
    if (k == Q8_STORED) ck_assert_msg(gt_gemma_create_frozen(&c, GT_FROZEN_Q8_0, &m, err, sizeof err) == 0, "%s", err);
    else ck_assert(gt_gemma_create(&c, false, &m, err, sizeof err) == 0);
    gt_gemma_init_random(m, 5, 0.2);
    if (k == Q8_CONVERTED) ck_assert_msg(gt_gemma_set_frozen_dtype(m, GT_FROZEN_Q8_0, err, sizeof err) == 0, "%s", err);
    if (k == FP32_DEQUANT)
        for (int p = 0; p < m->n_params; p++) {
            gt_tensor *t = m->params[p].t;
            if (t->ndim != 2) continue;
            uint8_t *q = malloc((size_t)gt_q8_bytes(t->size));
            gt_q8_quantize(t->data, q, t->size);
            gt_q8_dequant(q, t->data, t->size);
            free(q);
        }
    return m;
}

enum { STEPS = 12, TB = 2, TT = 16 };

/* LoRA (q, v, down) trained with AdamW on a fixed batch; the losses of every step. */
static void train(gt_gemma *m, double *losses, gt_real *grad0, int64_t *ng) {
    char err[256];
    gt_lora_dims d = {2, 64, 128, 2, 1, 32};
    gt_lora *l;
    unsigned targets = (1u << GT_LORA_QUERY) | (1u << GT_LORA_VALUE) | (1u << GT_LORA_DOWN);
    ck_assert(gt_lora_create(&d, 4, 8, targets, 9, &l, err, sizeof err) == 0);
    for (int64_t i = 0; i < l->n_values; i++) /* B non-zero too: A's gradient flows from step 1 */
        if (l->data[i] == 0) l->data[i] = (gt_real)(0.02 * ((i * 37) % 11 - 5));
    m->lora = l;
    gt_param_slice sl[12];
    int n = 0;
    for (int64_t i = 0; i < 2; i++)
        for (int t = 0; t < GT_LORA_NTARGETS; t++) {
            gt_lora_adapter *ad = (gt_lora_adapter *)gt_lora_get(l, i, (gt_lora_target)t);
            if (!ad) continue;
            sl[n++] = (gt_param_slice){ad->a.name, ad->a.data, ad->a.grad, ad->a.size, true};
            sl[n++] = (gt_param_slice){ad->b.name, ad->b.data, ad->b.grad, ad->b.size, true};
        }
    gt_optim opt;
    gt_optim_cfg oc;
    gt_optim_cfg_defaults(&oc, GT_OPT_ADAMW);
    ck_assert(gt_optim_init(&opt, &oc, sl, n, err, sizeof err) == 0);
    int32_t ids[TB * TT], labels[TB * TT];
    gt_real w[TB * TT];
    for (int i = 0; i < TB * TT; i++) ids[i] = (i * 37 + 5) % 512, labels[i] = (i * 11 + 3) % 64, w[i] = 1;
    gt_micro_batch mb = {.in = {.batch = TB, .seq = TT, .token_ids = ids}, .labels = labels, .weights = w};
    gt_step_cfg sc = {.norm = GT_NORM_TOKENS, .chunk_rows = 16};
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    for (int s = 0; s < STEPS; s++) {
        gt_step_result r;
        gt_ctx_reset(&ctx);
        ck_assert_msg(gt_step_run(&ctx, m, &opt, &sc, &mb, 1, TB, 2e-2, &r, err, sizeof err) == 0, "%s", err);
        losses[s] = r.loss;
        if (s == 0 && grad0) {
            ck_assert(l->n_values <= 8192);
            memcpy(grad0, l->grad, sizeof(gt_real) * (size_t)l->n_values);
            *ng = l->n_values;
        }
    }
    gt_ctx_free(&ctx);
    gt_optim_free(&opt);
    m->lora = NULL;
    gt_lora_free(l);
}

START_TEST(gemma_q8_built_either_way_and_trained_like_fp32) {
    gt_gemma *conv = tiny(Q8_CONVERTED), *stored = tiny(Q8_STORED), *deq = tiny(FP32_DEQUANT), *ref = tiny(FP32);
    /* random init straight into the storage gives the same blocks as quantising the fp32 init */
    int64_t qbytes = 0;
    for (int p = 0; p < conv->n_params; p++)
        if (conv->params[p].t->ndim == 2) qbytes += gt_q8_bytes(conv->params[p].t->size);
    ck_assert(memcmp(conv->dataq, stored->dataq, (size_t)qbytes) == 0);
    for (int p = 0; p < conv->n_params; p++) /* the norms */
        if (conv->params[p].t->ndim != 2)
            ck_assert(memcmp(conv->params[p].t->data, stored->params[p].t->data, sizeof(gt_real) * (size_t)conv->params[p].t->size) == 0);
    ck_assert(conv->embedding->data == NULL && stored->layers[1].down->data == NULL);
    /* one step: the q8_0 model equals fp32 holding the dequantised values (loss and LoRA grads) */
    double lq[STEPS], ld[STEPS], lf[STEPS], worst = 0;
    gt_real gq[8192], gd[8192];
    int64_t nq = 0, nd = 0;
    train(stored, lq, gq, &nq);
    train(deq, ld, gd, &nd);
    train(ref, lf, NULL, NULL);
    ck_assert(nq == nd && nq > 0);
    ck_assert_double_eq_tol(lq[0], ld[0], 1e-5 * ld[0]);
    double gmax = 0, dmax = 0;
    for (int64_t i = 0; i < nq; i++)
        gmax = fmax(gmax, fabs(gd[i])), dmax = fmax(dmax, fabs(gq[i] - gd[i]));
    ck_assert(gmax > 1e-4);
    ck_assert_msg(dmax <= 1e-4 * gmax, "LoRA gradients differ by %g (max %g)", dmax, gmax);
    /* the trajectory against the unquantised fp32 model: within 1% every step (stated tolerance) */
    for (int s = 0; s < STEPS; s++) {
        double rel = fabs(lq[s] - lf[s]) / lf[s];
        worst = fmax(worst, rel);
        ck_assert_msg(rel <= 1e-2, "step %d: q8_0 loss %.6f vs fp32 %.6f", s, lq[s], lf[s]);
    }
    ck_assert_msg(lf[STEPS - 1] < 0.8 * lf[0], "the run did not learn: %.4f -> %.4f", lf[0], lf[STEPS - 1]);
    printf("q8_0: LoRA loss %.4f -> %.4f (fp32 %.4f -> %.4f), worst step %.1e relative\n", lq[0], lq[STEPS - 1],
           lf[0], lf[STEPS - 1], worst);
    /* and with compute_dtype bfloat16 (linears on the bf16 kernel where the CPU has one) */
    char err[256];
    gt_gemma *qb = tiny(Q8_STORED);
    ck_assert_msg(gt_gemma_set_compute_bf16(qb, true, err, sizeof err) == 0, "%s", err);
    double lb[STEPS], worst_b = 0;
    train(qb, lb, NULL, NULL);
    for (int s = 0; s < STEPS; s++) {
        worst_b = fmax(worst_b, fabs(lb[s] - lf[s]) / lf[s]);
        ck_assert_msg(fabs(lb[s] - lf[s]) <= 1e-2 * lf[s], "step %d: q8_0 + bf16 loss %.6f vs fp32 %.6f", s, lb[s], lf[s]);
    }
    printf("q8_0 + compute bfloat16 (%s): LoRA loss %.4f -> %.4f, worst step %.1e relative\n",
           gt_bf16_kernel_name(gt_bf16_kernel_active()), lb[0], lb[STEPS - 1], worst_b);
    gt_gemma_free(qb);
    /* widening gives the dequantised values back as fp32 */
    ck_assert(gt_gemma_set_frozen_dtype(conv, GT_FROZEN_FP32, err, sizeof err) == 0);
    for (int p = 0; p < conv->n_params; p++)
        ck_assert(memcmp(conv->params[p].t->data, deq->params[p].t->data, sizeof(gt_real) * (size_t)deq->params[p].t->size) == 0);
    gt_gemma_free(conv);
    gt_gemma_free(stored);
    gt_gemma_free(deq);
    gt_gemma_free(ref);
}
END_TEST

/* GGUF into q8_0: Q8_0 tensors copied byte for byte, F32 ones quantised a slice at a time
 * (equal to converting the fp32 load). */
START_TEST(gguf_loads_straight_into_q8) {
    gt_gemma_config c = tiny_cfg();
    c.vocab_size = 8192; /* the committed tokenizer's; 8 staging slices of the embedding */
    char err[512], path[2][128];
    gt_gemma *m;
    gt_tokenizer *tok;
    ck_assert(gt_gemma_create(&c, false, &m, err, sizeof err) == 0);
    gt_gemma_init_random(m, 7, 0.1);
    ck_assert_msg(gt_tok_load("tests/fixtures/gemma3-tokenizer-8k.json", &tok, err, sizeof err) == 0, "%s", err);
    uint32_t types[2] = {GT_GGML_Q8_0, GT_GGML_F32};
    for (int k = 0; k < 2; k++) {
        snprintf(path[k], sizeof path[k], "/tmp/gt-test-quant-%d-%d.gguf", (int)getpid(), k);
        ck_assert_msg(gt_gguf_export_model(m, tok, path[k], types[k], "tiny", err, sizeof err) == 0, "%s", err);
        gt_gguf *g;
        gt_gemma *f32, *q8;
        ck_assert_msg(gt_gguf_open(path[k], &g, err, sizeof err) == 0, "%s", err);
        ck_assert_msg(gt_gemma_from_gguf(g, false, &f32, err, sizeof err) == 0, "%s", err);
        ck_assert_msg(gt_gemma_from_gguf_frozen(g, GT_FROZEN_Q8_0, &q8, err, sizeof err) == 0, "%s", err);
        ck_assert(q8->frozen_dtype == GT_FROZEN_Q8_0 && q8->layers[0].query->data == NULL);
        if (k == 0) { /* the file's blocks, not requantised */
            const gt_gguf_tensor *t = gt_gguf_find_tensor(g, "blk.1.ffn_down.weight");
            const gt_bf16_mat *w = &q8->mats[q8->layers[1].down - q8->tensors];
            ck_assert(t && t->type == GT_GGML_Q8_0 && memcmp(w->q8, t->data, t->n_bytes) == 0);
        }
        gt_gguf_close(g);
        ck_assert_msg(gt_gemma_set_frozen_dtype(f32, GT_FROZEN_Q8_0, err, sizeof err) == 0, "%s", err);
        int64_t bytes = 0;
        for (int p = 0; p < m->n_params; p++)
            if (m->params[p].t->ndim == 2) bytes += gt_q8_bytes(m->params[p].t->size);
        ck_assert(memcmp(f32->dataq, q8->dataq, (size_t)bytes) == 0);
        for (int p = 0; p < m->n_params; p++)
            if (m->params[p].t->ndim != 2)
                ck_assert(memcmp(f32->params[p].t->data, q8->params[p].t->data, sizeof(gt_real) * (size_t)m->params[p].t->size) == 0);
        gt_gemma_free(f32);
        gt_gemma_free(q8);
        unlink(path[k]);
    }
    gt_tok_free(tok);
    gt_gemma_free(m);
}
END_TEST

/* A KerasHub preset a tensor at a time into bf16 (the fixtures' widths are not whole Q8_0 blocks,
 * which q8_0 refuses naming the tensor): the same stored values as converting the fp32 load, for
 * every layout permutation the reader applies. */
START_TEST(preset_loads_straight_into_storage) {
    char err[512];
    gt_gemma *f32, *b16;
    ck_assert_msg(gt_keras_preset_load("tests/fixtures/presets/gemma3", false, &f32, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_keras_preset_load_frozen("tests/fixtures/presets/gemma3", GT_FROZEN_BF16, &b16, NULL, err, sizeof err) == 0,
                  "%s", err);
    ck_assert(b16->layers[0].query->data == NULL && b16->layers[0].attn_out->data == NULL);
    ck_assert_msg(gt_gemma_set_frozen_dtype(f32, GT_FROZEN_BF16, err, sizeof err) == 0, "%s", err);
    int64_t n16 = 0;
    for (int p = 0; p < f32->n_params; p++) {
        const gt_tensor *t = f32->params[p].t;
        if (t->ndim == 2) n16 += t->size;
        else ck_assert(memcmp(t->data, b16->params[p].t->data, sizeof(gt_real) * (size_t)t->size) == 0);
    }
    ck_assert(memcmp(f32->data16, b16->data16, sizeof(uint16_t) * (size_t)n16) == 0);
    gt_gemma_free(f32);
    gt_gemma_free(b16);
    ck_assert_int_eq(gt_keras_preset_load_frozen("tests/fixtures/presets/gemma3", GT_FROZEN_Q8_0, &b16, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "presets/gemma3") && strstr(err, "q8_0") && strstr(err, "ffw_linear/kernel is [32, 24]"), "%s", err);
}
END_TEST

START_TEST(refusals) {
    char err[256];
    gt_gemma_config c = tiny_cfg();
    c.hidden_dim = 48; /* not whole Q8_0 blocks */
    gt_gemma *m;
    ck_assert_int_eq(gt_gemma_create_frozen(&c, GT_FROZEN_Q8_0, &m, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "q8_0") && strstr(err, "multiples of 32") && strstr(err, "token_embedding"), "%s", err);
    ck_assert(gt_gemma_create(&c, false, &m, err, sizeof err) == 0);
    ck_assert_int_eq(gt_gemma_set_frozen_dtype(m, GT_FROZEN_Q8_0, err, sizeof err), -1);
    ck_assert(m->frozen_dtype == GT_FROZEN_FP32 && m->embedding->data); /* left as it was */
    gt_gemma_free(m);
    c = tiny_cfg();
    ck_assert(gt_gemma_create(&c, true, &m, err, sizeof err) == 0);
    ck_assert_int_eq(gt_gemma_set_frozen_dtype(m, GT_FROZEN_Q8_0, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "q8_0") && strstr(err, "full fine-tuning"), "%s", err);
    gt_gemma_free(m);
    ck_assert(gt_gemma_create_frozen(&c, GT_FROZEN_Q8_0, &m, err, sizeof err) == 0);
    ck_assert_int_eq(gt_gemma_set_frozen_dtype(m, GT_FROZEN_BF16, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "q8_0 already"), "%s", err);
    gt_lora *l;
    gt_lora_dims d = {2, 64, 128, 2, 1, 32};
    ck_assert(gt_lora_create(&d, 2, 2, 1u << GT_LORA_QUERY, 1, &l, err, sizeof err) == 0);
    ck_assert_int_eq(gt_gemma_merge_lora(m, l, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "q8_0"), "%s", err);
    gt_lora_free(l);
    gt_gemma_free(m);
    /* the config key */
    gt_config cfg;
    const char *kv[] = {"model.preset=gemma3_270m", "data.train=train.jsonl", "tokenizer=t.json", "model.frozen_dtype=q8_0"};
    gt_config_defaults(&cfg);
    for (int i = 0; i < 4; i++) ck_assert_msg(gt_config_override(&cfg, kv[i], err, sizeof err) == 0, "%s", err);
    gt_config_resolve(&cfg);
    ck_assert_msg(gt_config_check(&cfg, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(cfg.model.frozen_dtype, GT_FROZEN_Q8_0);
    ck_assert(gt_config_override(&cfg, "model.compute_dtype=bfloat16", err, sizeof err) == 0);
    ck_assert_msg(gt_config_check(&cfg, err, sizeof err) == 0, "%s", err);
    ck_assert(gt_config_override(&cfg, "model.frozen_dtype=fp32", err, sizeof err) == 0);
    ck_assert_int_ne(gt_config_check(&cfg, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "model.compute_dtype") && strstr(err, "model.frozen_dtype: bf16"), "%s", err);
}
END_TEST

/* The trainer end to end: configs/tiny.yaml's model randomly initialised straight into q8_0,
 * LoRA on q, v and down; the eval loss after 6 steps within 1% of fp32 storage's. */
static double trained_eval(const char *dtype, const char *must_say) {
    static char out[1 << 16];
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s train configs/tiny.yaml lora.enabled=true train.full_finetune=false lora.targets=[query,value,ffw_linear] "
             "train.steps=6 schedule.warmup_steps=0 optimizer.learning_rate=0.05 model.frozen_dtype=%s "
             "output_dir=/tmp/gt-test-quant-%d-%s 2>&1; rm -rf /tmp/gt-test-quant-%d-%s",
             getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain", dtype, (int)getpid(), dtype, (int)getpid(), dtype);
    FILE *p = popen(cmd, "r");
    ck_assert(p != NULL);
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = 0;
    ck_assert_msg(pclose(p) == 0, "%s\n%s", cmd, out);
    ck_assert_msg(strstr(out, must_say), "no '%s' in:\n%s", must_say, out);
    const char *e = strstr(out, "eval after training: loss ");
    ck_assert_msg(e != NULL, "no eval after training in:\n%s", out);
    return atof(e + strlen("eval after training: loss "));
}

START_TEST(trainer_with_q8_base) {
    double f = trained_eval("fp32", "trainable (LoRA);"), q = trained_eval("q8_0", "(LoRA, base stored as q8_0)");
    printf("q8_0 trainer: eval loss after 6 LoRA steps %.5f (fp32 storage %.5f)\n", q, f);
    ck_assert_msg(fabs(q - f) <= 1e-2 * f, "q8_0 %.5f vs fp32 %.5f", q, f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("quant");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, q8_blocks_match_the_gguf_package);
    tcase_add_test(tc, linear_and_embedding_match_fp32_on_dequantised_values);
    tcase_add_test(tc, linear_on_the_bf16_kernel_matches_bf16_storage);
    tcase_add_test(tc, lm_head_matches_fp32_on_dequantised_values);
    tcase_add_test(tc, gemma_q8_built_either_way_and_trained_like_fp32);
    tcase_add_test(tc, gguf_loads_straight_into_q8);
    tcase_add_test(tc, preset_loads_straight_into_storage);
    tcase_add_test(tc, refusals);
    tcase_add_test(tc, trainer_with_q8_base);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
