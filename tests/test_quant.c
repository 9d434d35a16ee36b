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
#include "tests/quant_model.h"
#include "train/config.h"
#include "train/step.h"
#include "tests/check_main.h"

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
    uint64_t seed = 9;
    int64_t xs[3] = {3, 5, C};
    gt_real x[3 * 5 * C], g[3 * 5 * R];
    for (int i = 0; i < 3 * 5 * C; i++) x[i] = (gt_real)rnd(&seed);
    for (int i = 0; i < 3 * 5 * R; i++) g[i] = (gt_real)rnd(&seed);
    gt_test_pair p; /* backward too: dx = dy W, the input gradient LoRA needs */
    gt_test_linear_pair(&p, &w, NULL, wf, x, 3, xs, g);
    for (int64_t i = 0; i < p.y1->size; i++) ck_assert_double_eq_tol(p.y1->data[i], p.y2->data[i], 1e-5 * (1 + fabs(p.y2->data[i])));
    double amax = 0;
    for (int64_t i = 0; i < p.x1->size; i++) {
        ck_assert_double_eq_tol(p.x1->grad[i], p.x2->grad[i], 1e-5 * (1 + fabs(p.x2->grad[i])));
        amax = fmax(amax, fabs(p.x1->grad[i]));
    }
    ck_assert(amax > 0.1);
    ck_assert(!gt_bf16_linear_uses_bf16(&w)); /* Q8_0 multiplies in fp32 */
    int32_t ids[4] = {39, 0, 17, 17};
    gt_tensor *e = gt_bf16_embedding(&p.c1, &w, ids, 4);
    ck_assert_msg(e != NULL, "%s", p.c1.err);
    for (int i = 0; i < 4; i++)
        ck_assert(memcmp(e->data + i * C, wf + ids[i] * C, sizeof(gt_real) * C) == 0);
    gt_test_pair_free(&p);
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
        int64_t xs[2] = {M, C};
        gt_test_pair p;
        gt_test_linear_pair(&p, &wq, &wb, NULL, x, 2, xs, g);
        double tol = 1e-5;
        for (int64_t i = 0; i < p.y1->size; i++) ck_assert_double_eq_tol(p.y1->data[i], p.y2->data[i], tol * (1 + fabs(p.y2->data[i])));
        for (int64_t i = 0; i < p.x1->size; i++) ck_assert_double_eq_tol(p.x1->grad[i], p.x2->grad[i], tol * (1 + fabs(p.x2->grad[i])));
        gt_test_pair_free(&p);
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
    gt_test_pair p;
    gt_test_lm_head_pair(&p, &e, NULL, ef, h, N, cap, labels, w, 4, ce1, ce2);
    ck_assert_double_eq_tol(p.y1->data[0], p.y2->data[0], 1e-5 * fabs(p.y2->data[0]));
    for (int i = 0; i < N; i++) ck_assert_double_eq_tol(ce1[i], ce2[i], 1e-5 * (1 + fabs(ce2[i])));
    double gmax = 0;
    for (int i = 0; i < N * D; i++) gmax = fmax(gmax, fabs(p.x2->grad[i]));
    ck_assert(gmax > 0.1);
    for (int i = 0; i < N * D; i++) ck_assert_double_eq_tol(p.x1->grad[i], p.x2->grad[i], 1e-5 * (1 + gmax));
    gt_test_pair_free(&p);
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
static gt_gemma_config tiny_cfg(void) { return gt_test_tiny3_cfg(64, 128); }

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

enum { STEPS = 12 };

/* The LoRA run of quant_model.h: 12 steps at 2e-2, B non-zero; the losses of every step. */
static void train(gt_gemma *m, double *losses, gt_real *grad0, int64_t *ng) {
    gt_test_lora_run(m, STEPS, 2e-2, true, losses, grad0, 8192, ng);
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
    double lq[STEPS], ld[STEPS], lf[STEPS];
    gt_real gq[8192], gd[8192];
    int64_t nq = 0, nd = 0;
    train(stored, lq, gq, &nq);
    train(deq, ld, gd, &nd);
    train(ref, lf, NULL, NULL);
    ck_assert(nq == nd && nq > 0);
    ck_assert_double_eq_tol(lq[0], ld[0], 1e-5 * ld[0]);
    gt_test_grads_near(gq, gd, nq, 1e-4, 1e-4, "q8_0");
    /* the trajectory against the unquantised fp32 model: within 1% every step (stated tolerance) */
    double worst = gt_test_losses_near(lq, lf, STEPS, 1e-2, "q8_0 vs fp32");
    gt_test_loss_fell(lf, STEPS);
    printf("q8_0: LoRA loss %.4f -> %.4f (fp32 %.4f -> %.4f), worst step %.1e relative\n", lq[0], lq[STEPS - 1],
           lf[0], lf[STEPS - 1], worst);
    /* and with compute_dtype bfloat16 (linears on the bf16 kernel where the CPU has one) */
    char err[256];
    gt_gemma *qb = tiny(Q8_STORED);
    ck_assert_msg(gt_gemma_set_compute_bf16(qb, true, err, sizeof err) == 0, "%s", err);
    double lb[STEPS];
    train(qb, lb, NULL, NULL);
    double worst_b = gt_test_losses_near(lb, lf, STEPS, 1e-2, "q8_0 + bf16 vs fp32");
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
    return gt_test_suite_main(s);
}
