/* model.frozen_dtype q4_k: GGUF Q4_K, Q6_K and Q5_0 blocks kept as stored, other matrices quantised
 * to Q4_K. The block decoders against the gguf Python package and the Q4_K quantiser against
 * ggml's, byte for byte (tests/fixtures/quant_k.h5, tools/reference/make_quant_k_fixture.py),
 * the linear (forward, input gradient, bf16 kernel), embedding and LM head on such matrices
 * against fp32 ops on the decoded values, a tiny Gemma whose matrices keep mixed block types
 * trained 12 LoRA steps against fp32 holding the same decoded values, a GGUF carrying those
 * blocks loaded straight into them, random init into Q4_K trained near fp32, and the refusals. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/bf16_gemm.h"
#include "autograd/quant.h"
#include "models/gemma.h"
#include "models/gemma_params.h"
#include "models/io/gemma_gguf.h"
#include "models/io/gguf.h"
#include "models/io/gguf_export.h"
#include "models/io/gguf_writer.h"
#include "models/io/h5io.h"
#include "train/step.h"
#include "tests/check_main.h"
#include "tests/quant_model.h"

START_TEST(blocks_decode_like_the_gguf_package) {
    const char *names[3] = {"q4_k", "q6_k", "q5_0"};
    const uint32_t types[3] = {GT_QT_Q4_K, GT_QT_Q6_K, GT_QT_Q5_0};
    gt_h5 h;
    char err[256], path[64];
    ck_assert_msg(gt_h5_open_read("tests/fixtures/quant_k.h5", &h, err, sizeof err) == 0, "%s", err);
    for (int k = 0; k < 3; k++) {
        int32_t *blocks;
        float *want, y[256];
        int nd;
        int64_t sb[8], sd[8];
        snprintf(path, sizeof path, "/%s/blocks", names[k]);
        ck_assert(gt_h5_read_i32(h, path, &blocks, &nd, sb, err, sizeof err) == 0);
        snprintf(path, sizeof path, "/%s/dequant", names[k]);
        ck_assert(gt_h5_read_f32(h, path, &want, &nd, sd, err, sizeof err) == 0);
        ck_assert_int_eq(sb[1], gt_qt_block_bytes(types[k]));
        ck_assert_int_eq(sd[1], gt_qt_block(types[k]));
        int nonzero = 0;
        for (int64_t b = 0; b < sb[0]; b++) {
            uint8_t raw[256];
            for (int64_t i = 0; i < sb[1]; i++) raw[i] = (uint8_t)blocks[b * sb[1] + i];
            gt_qt_block_f32(types[k], raw, y);
            for (int64_t i = 0; i < sd[1]; i++) {
                ck_assert_msg(y[i] == want[b * sd[1] + i], "%s block %lld value %lld: %.9g, gguf %.9g", names[k],
                              (long long)b, (long long)i, y[i], want[b * sd[1] + i]);
                nonzero += y[i] != 0;
            }
        }
        ck_assert(nonzero > sd[0] * sd[1] / 2);
        free(blocks);
        free(want);
    }
    gt_h5_close(h);
    ck_assert_int_eq(gt_qt_block(7), 0); /* Q5_1 is not a kept type */
    ck_assert_int_eq(gt_qt_bytes(GT_QT_Q4_K, 512), 288);
}
END_TEST

/* gt_q4k_quantize against ggml's reference quantiser, byte for byte (the fixture's 128 blocks:
 * normals at three scales, all positive, zero, constant, an outlier, uniform, then 120 of mixed
 * kinds and scales); also an odd count, as the quantiser fits two blocks side by side */
START_TEST(q4_k_quantiser_matches_ggml) {
    gt_h5 h;
    char err[256];
    ck_assert_msg(gt_h5_open_read("tests/fixtures/quant_k.h5", &h, err, sizeof err) == 0, "%s", err);
    float *x;
    int32_t *want;
    int nd;
    int64_t sx[8], sb[8];
    ck_assert(gt_h5_read_f32(h, "/q4_k_quant/x", &x, &nd, sx, err, sizeof err) == 0);
    ck_assert(gt_h5_read_i32(h, "/q4_k_quant/blocks", &want, &nd, sb, err, sizeof err) == 0);
    gt_h5_close(h);
    ck_assert(sx[0] == sb[0] && sx[1] == 256 && sb[1] == 144);
    int64_t n = sx[0] * 256;
    gt_real *xr = malloc(sizeof(gt_real) * (size_t)n);
    for (int64_t i = 0; i < n; i++) xr[i] = x[i];
    uint8_t *q = malloc((size_t)gt_qt_bytes(GT_QT_Q4_K, n));
    gt_q4k_quantize(xr, q, n);
    for (int64_t i = 0; i < sb[0] * 144; i++)
        ck_assert_msg(q[i] == (uint8_t)want[i], "block %lld byte %lld: %u, ggml %d", (long long)(i / 144),
                      (long long)(i % 144), q[i], want[i]);
    /* and the decoded values are close to the input (a sanity bound: 4.5 bits a weight) */
    float y[256];
    gt_qt_block_f32(GT_QT_Q4_K, q + 144, y);
    for (int k = 0; k < 256; k++) ck_assert_double_eq_tol(y[k], x[256 + k], 0.25);
    ck_assert(sb[0] >= 8);
    memset(q, 0, (size_t)(sb[0] * 144));
    gt_q4k_quantize(xr + 256, q, 3 * 256); /* blocks 1..3 alone */
    for (int64_t i = 0; i < 3 * 144; i++) ck_assert_msg(q[i] == (uint8_t)want[144 + i], "odd count: byte %lld", (long long)i);
    free(xr), free(q), free(x), free(want);
}
END_TEST

static uint64_t next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 11;
}

/* Random bytes with every fp16 scale field set to a finite value of the given size: valid
 * blocks of type qt for n values, zero-mean-ish weights of roughly unit scale times `scale`. */
static uint8_t *random_blocks(uint32_t qt, int64_t n, uint64_t seed, double scale) {
    int bl = gt_qt_block(qt), by = gt_qt_block_bytes(qt);
    int64_t nb = n / bl;
    uint8_t *b = malloc((size_t)(nb * by));
    for (int64_t i = 0; i < nb * by; i++) b[i] = (uint8_t)next(&seed);
    for (int64_t i = 0; i < nb; i++) {
        uint8_t *p = b + i * by;
        double jitter = 1 + (double)(next(&seed) % 1000) / 2000;
        uint16_t d, dm;
        switch (qt) {
        case GT_QT_Q4_K: /* d * sc * q - dmin * m: sc, m in [0, 63], q in [0, 15] */
            d = gt_f32_to_f16((float)(scale * jitter / 240)), dm = gt_f32_to_f16((float)(scale * jitter / 32));
            memcpy(p, &d, 2), memcpy(p + 2, &dm, 2);
            break;
        case GT_QT_Q6_K: /* d * sc * (q - 32): sc int8 */
            d = gt_f32_to_f16((float)(scale * jitter / 1800));
            memcpy(p + 208, &d, 2);
            break;
        default: /* Q5_0, Q8_0: d * q */
            d = gt_f32_to_f16((float)(scale * jitter / (qt == GT_QT_Q5_0 ? 9 : 70)));
            memcpy(p, &d, 2);
        }
    }
    return b;
}

static void decode(uint32_t qt, const uint8_t *b, int64_t n, gt_real *out) {
    int bl = gt_qt_block(qt);
    float y[256];
    for (int64_t i = 0; i < n / bl; i++) {
        gt_qt_block_f32(qt, b + i * gt_qt_block_bytes(qt), y);
        for (int k = 0; k < bl; k++) out[i * bl + k] = y[k];
    }
}

static double rnd(uint64_t *s) { return (double)next(s) / 9007199254740992.0 * 2 - 1; }

/* linear forward and input gradient, embedding rows: a kept-type matrix against fp32 on its
 * decoded values (blocks of rows through a staging buffer smaller than the matrix) */
START_TEST(linear_and_embedding_match_fp32_on_decoded_values) {
    enum { R = 40, C = 512, M = 7 };
    const uint32_t types[3] = {GT_QT_Q4_K, GT_QT_Q6_K, GT_QT_Q5_0};
    for (int k = 0; k < 3; k++) {
        gt_real *wf = malloc(sizeof(gt_real) * R * C), *stage = malloc(sizeof(gt_real) * 16 * C);
        uint8_t *q = random_blocks(types[k], R * C, 3 + k, 1.0);
        decode(types[k], q, R * C, wf);
        gt_bf16_mat w = {NULL, R, C, stage, 16 * C, false, gt_wfmt_of_qtype(types[k]), q};
        ck_assert(w.fmt != GT_WFMT_BF16 && gt_wfmt_qtype(w.fmt) == types[k]);
        uint64_t seed = 9;
        int64_t xs[2] = {M, C};
        gt_real x[M * C], g[M * R];
        for (int i = 0; i < M * C; i++) x[i] = (gt_real)rnd(&seed);
        for (int i = 0; i < M * R; i++) g[i] = (gt_real)rnd(&seed);
        gt_test_pair p;
        gt_test_linear_pair(&p, &w, NULL, wf, x, 2, xs, g);
        double ymax = 0, gmax = 0;
        for (int64_t i = 0; i < p.y1->size; i++) ymax = fmax(ymax, fabs(p.y2->data[i]));
        for (int64_t i = 0; i < p.y1->size; i++) ck_assert_double_eq_tol(p.y1->data[i], p.y2->data[i], 1e-5 * ymax);
        for (int64_t i = 0; i < p.x1->size; i++) gmax = fmax(gmax, fabs(p.x2->grad[i]));
        ck_assert(ymax > 0.1 && gmax > 0.1);
        for (int64_t i = 0; i < p.x1->size; i++) ck_assert_double_eq_tol(p.x1->grad[i], p.x2->grad[i], 1e-5 * gmax);
        int32_t ids[3] = {39, 0, 17};
        gt_tensor *e = gt_bf16_embedding(&p.c1, &w, ids, 3);
        ck_assert_msg(e != NULL, "%s", p.c1.err);
        for (int i = 0; i < 3; i++) ck_assert(memcmp(e->data + i * C, wf + ids[i] * C, sizeof(gt_real) * C) == 0);
        gt_test_pair_free(&p);
        free(q);
        free(wf);
        free(stage);
    }
}
END_TEST

/* compute_bf16 on a Q4_K matrix: rows decoded and rounded to bf16 a block of 32 at a time, the
 * same result as a bf16 matrix holding those rounded values, on every bf16 kernel the CPU has */
START_TEST(linear_on_the_bf16_kernel_matches_bf16_storage) {
    enum { R = 96, C = 256, M = 13 };
    gt_real *wf = malloc(sizeof(gt_real) * R * C), *s1 = malloc(sizeof(gt_real) * 32 * C), *s2 = malloc(sizeof(gt_real) * R * C);
    uint8_t *q = random_blocks(GT_QT_Q4_K, R * C, 11, 1.0);
    decode(GT_QT_Q4_K, q, R * C, wf);
    uint16_t *w16 = malloc(sizeof(uint16_t) * R * C);
    gt_to_bf16_n(wf, w16, R * C);
    gt_bf16_mat wq = {NULL, R, C, s1, 32 * C, true, GT_WFMT_Q4_K, q}, wb = {w16, R, C, s2, R * C, true, GT_WFMT_BF16, NULL};
    uint64_t seed = 4;
    gt_real x[M * C], g[M * R];
    for (int i = 0; i < M * C; i++) x[i] = (gt_real)rnd(&seed);
    for (int i = 0; i < M * R; i++) g[i] = (gt_real)rnd(&seed);
    gt_bf16_kernel ks[2] = {GT_BF16K_AVX512, GT_BF16K_AMX};
    int ran = 0;
    for (int kk = 0; kk < 2; kk++) {
        if (gt_bf16_kernel_force((int)ks[kk]) != ks[kk]) continue;
        ck_assert(gt_bf16_linear_uses_bf16(&wq));
        int64_t xs[2] = {M, C};
        gt_test_pair p;
        gt_test_linear_pair(&p, &wq, &wb, NULL, x, 2, xs, g);
        for (int64_t i = 0; i < p.y1->size; i++) ck_assert_double_eq_tol(p.y1->data[i], p.y2->data[i], 1e-5 * (1 + fabs(p.y2->data[i])));
        for (int64_t i = 0; i < p.x1->size; i++) ck_assert_double_eq_tol(p.x1->grad[i], p.x2->grad[i], 1e-5 * (1 + fabs(p.x2->grad[i])));
        gt_test_pair_free(&p);
        ran++;
    }
    gt_bf16_kernel_force(-1);
    printf("q4_k on the bf16 kernel: %d kernel(s) checked\n", ran);
    free(q), free(wf), free(w16), free(s1), free(s2);
}
END_TEST

/* The LM-head loss on a Q6_K table against gt_lm_head_loss on its decoded values. */
START_TEST(lm_head_matches_fp32_on_decoded_values) {
    enum { V = 1000, D = 256, N = 6 };
    gt_real *ef = malloc(sizeof(gt_real) * V * D), *stage = malloc(sizeof(gt_real) * 64 * D), h[N * D];
    uint8_t *q = random_blocks(GT_QT_Q6_K, V * D, 21, 1.0);
    decode(GT_QT_Q6_K, q, V * D, ef);
    gt_bf16_mat e = {NULL, V, D, stage, 64 * D, false, GT_WFMT_Q6_K, q};
    uint64_t seed = 3;
    for (int i = 0; i < N * D; i++) h[i] = (gt_real)(0.1 * rnd(&seed));
    int32_t labels[N] = {3, V - 1, 17, 0, 30, 9};
    gt_real w[N] = {1, 0, 2, 0.5f, 1, 3}, ce1[N], ce2[N];
    gt_test_pair p;
    gt_test_lm_head_pair(&p, &e, NULL, ef, h, N, 30, labels, w, 4, ce1, ce2);
    ck_assert_double_eq_tol(p.y1->data[0], p.y2->data[0], 1e-5 * fabs(p.y2->data[0]));
    double gmax = 0;
    for (int i = 0; i < N * D; i++) gmax = fmax(gmax, fabs(p.x2->grad[i]));
    ck_assert(gmax > 1e-3);
    for (int i = 0; i < N * D; i++) ck_assert_double_eq_tol(p.x1->grad[i], p.x2->grad[i], 1e-5 * gmax);
    gt_test_pair_free(&p);
    free(q), free(ef), free(stage);
}
END_TEST

/* tiny Gemma 3 whose widths admit every kept type: q/k/v/gate/up read 256 (Q4_K), down 512
 * (Q6_K), attention output 64 (Q5_0), the embedding Q8_0 */
static gt_gemma_config tiny_cfg(void) { return gt_test_tiny3_cfg(256, 512); }

static uint32_t pick_by_width(const gt_gemma *m, int p, void *arg) {
    (void)arg;
    int64_t cols = m->params[p].t->shape[1];
    if (m->params[p].t == m->embedding) return GT_QT_Q8_0;
    return cols == 256 ? GT_QT_Q4_K : cols == 512 ? GT_QT_Q6_K : GT_QT_Q5_0;
}

/* The q4_k model with random valid blocks and random norms, and fp32 models holding its decoded
 * values (*deq) and those values rounded through nothing else (the same numbers). */
static gt_gemma *tiny_q4k(gt_gemma **deq) {
    gt_gemma_config c = tiny_cfg();
    char err[256];
    gt_gemma *m, *f;
    ck_assert_msg(gt_gemma_create_frozen_as(&c, GT_FROZEN_Q4_K, pick_by_width, NULL, &m, err, sizeof err) == 0, "%s", err);
    ck_assert(gt_gemma_create(&c, false, &f, err, sizeof err) == 0);
    gt_gemma_init_random(f, 5, 0.2); /* the norms */
    int kinds[4] = {0};
    for (int p = 0; p < m->n_params; p++) {
        gt_tensor *t = m->params[p].t;
        if (t->ndim != 2) {
            memcpy(t->data, f->params[p].t->data, sizeof(gt_real) * (size_t)t->size);
            continue;
        }
        uint32_t qt = gt_wfmt_qtype(m->mats[p].fmt);
        ck_assert(qt == pick_by_width(m, p, NULL));
        kinds[qt == GT_QT_Q4_K ? 0 : qt == GT_QT_Q6_K ? 1 : qt == GT_QT_Q5_0 ? 2 : 3]++;
        uint8_t *b = random_blocks(qt, t->size, 100 + (uint64_t)p, t == m->embedding ? 0.1 : 0.1 * sqrt(256.0 / t->shape[1]));
        ck_assert(gt_gemma_store_blocks(m, t, qt, b) == 0);
        ck_assert(gt_gemma_store_blocks(m, t, qt == GT_QT_Q8_0 ? GT_QT_Q4_K : GT_QT_Q8_0, b) == -1); /* not its type */
        decode(qt, b, t->size, f->params[p].t->data);
        free(b);
    }
    ck_assert(kinds[0] >= 6 && kinds[1] == 2 && kinds[2] == 2 && kinds[3] == 1);
    *deq = f;
    return m;
}

enum { STEPS = 12 };

/* The LoRA run of quant_model.h: 12 steps at 2e-2, B non-zero. */
static void train(gt_gemma *m, double *losses, gt_real *grad0, int64_t *ng) {
    gt_test_lora_run(m, STEPS, 2e-2, true, losses, grad0, 32768, ng);
}

/* Stated tolerance: on the same decoded weights the q4_k model and fp32 differ only in the
 * order of sums (blocks of rows), so every step's loss within 1e-4 relative and the first
 * step's LoRA gradients within 1e-4 of their largest. */
START_TEST(gemma_with_kept_blocks_trains_like_fp32_on_the_decoded_values) {
    gt_gemma *deq, *q = tiny_q4k(&deq);
    ck_assert(q->embedding->data == NULL && q->layers[1].down->data == NULL && q->dataq != NULL);
    int64_t want = 0;
    for (int p = 0; p < q->n_params; p++)
        if (q->params[p].t->ndim == 2) want += gt_qt_bytes(gt_wfmt_qtype(q->mats[p].fmt), q->params[p].t->size);
    ck_assert_int_eq(gt_gemma_stored_bytes(q), want);
    /* the stored values read back are the decoded ones */
    gt_real *vals = malloc(sizeof(gt_real) * 512 * 256);
    for (int p = 0; p < q->n_params; p++) {
        gt_gemma_param_values(q, q->params[p].t, vals);
        ck_assert(memcmp(vals, deq->params[p].t->data, sizeof(gt_real) * (size_t)q->params[p].t->size) == 0);
    }
    free(vals);
    static gt_real gq[32768], gd[32768];
    double lq[STEPS], ld[STEPS];
    int64_t nq = 0, nd = 0;
    train(q, lq, gq, &nq);
    train(deq, ld, gd, &nd);
    ck_assert(nq == nd && nq > 0);
    gt_test_grads_near(gq, gd, nq, 1e-4, 1e-4, "q4_k");
    double worst = gt_test_losses_near(lq, ld, STEPS, 1e-4, "q4_k vs fp32 on the decoded values");
    gt_test_loss_fell(ld, STEPS);
    printf("q4_k (Q4_K, Q6_K, Q5_0, Q8_0 blocks): LoRA loss %.4f -> %.4f (fp32 on the decoded values %.4f -> %.4f), "
           "worst step %.1e relative\n", lq[0], lq[STEPS - 1], ld[0], ld[STEPS - 1], worst);
    /* widening gives the decoded values back as fp32 */
    char err[256];
    ck_assert_msg(gt_gemma_set_frozen_dtype(q, GT_FROZEN_FP32, err, sizeof err) == 0, "%s", err);
    for (int p = 0; p < q->n_params; p++)
        ck_assert(memcmp(q->params[p].t->data, deq->params[p].t->data, sizeof(gt_real) * (size_t)q->params[p].t->size) == 0);
    gt_gemma_free(q);
    gt_gemma_free(deq);
}
END_TEST

/* A GGUF whose matrices carry Q4_K, Q6_K and Q5_0 blocks (our writer has no quantiser for them:
 * a Q8_0 export with those tensors' bytes swapped in place of the directory's type and data) is
 * loaded with its blocks as they are; F32 tensors are quantised to Q4_K (or Q8_0). */
START_TEST(gguf_blocks_are_kept_and_other_sources_quantised) {
    gt_gemma *deq, *q = tiny_q4k(&deq);
    char err[512], path[128];
    gt_tokenizer *tok;
    ck_assert_msg(gt_tok_load("tests/fixtures/gemma3-tokenizer-8k.json", &tok, err, sizeof err) == 0, "%s", err);
    /* an F32 GGUF loaded under q4_k: quantised to Q4_K (widths of whole 256-blocks) or Q8_0 (the
     * 64-wide attention output), the same blocks as converting the fp32 load */
    snprintf(path, sizeof path, "/tmp/gt-test-quant-k-%d.gguf", (int)getpid());
    gt_gemma_config c = tiny_cfg();
    c.vocab_size = 8192;
    gt_gemma *big;
    ck_assert(gt_gemma_create(&c, false, &big, err, sizeof err) == 0);
    gt_gemma_init_random(big, 7, 0.1);
    ck_assert_msg(gt_gguf_export_model(big, tok, path, GT_GGML_F32, "tiny", err, sizeof err) == 0, "%s", err);
    gt_gguf *g;
    gt_gemma *m, *m8;
    ck_assert_msg(gt_gguf_open(path, &g, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_gemma_from_gguf_frozen(g, GT_FROZEN_Q4_K, &m, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_gemma_from_gguf(g, false, &m8, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_gemma_set_frozen_dtype(m8, GT_FROZEN_Q4_K, err, sizeof err) == 0, "%s", err);
    int nq4 = 0;
    for (int p = 0; p < m->n_params; p++) {
        const gt_tensor *t = m->params[p].t;
        if (t->ndim != 2) continue;
        ck_assert(m->mats[p].fmt == (t->shape[1] % 256 ? GT_WFMT_Q8_0 : GT_WFMT_Q4_K) && m8->mats[p].fmt == m->mats[p].fmt);
        uint32_t qt = gt_wfmt_qtype(m->mats[p].fmt);
        nq4 += qt == GT_QT_Q4_K;
        ck_assert_msg(memcmp(m->mats[p].q8, m8->mats[p].q8, (size_t)gt_qt_bytes(qt, t->size)) == 0, "%s", m->params[p].name);
    }
    ck_assert_int_eq(nq4, 1 + 2 * 6);
    ck_assert_int_eq(gt_gemma_stored_bytes(m), gt_gemma_stored_bytes(m8));
    gt_gemma_free(m);
    gt_gemma_free(m8);
    gt_gguf_close(g);
    /* the same file with the kept types' bytes: patch a copy of the F32 file's directory */
    FILE *f = fopen(path, "rb");
    ck_assert(f != NULL);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)len);
    ck_assert(fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    ck_assert_msg(gt_gguf_open_buffer(buf, (size_t)len, "patched", &g, err, sizeof err) == 0, "%s", err);
    int kept = 0;
    for (int64_t i = 0; i < gt_gguf_n_tensors(g); i++) {
        const gt_gguf_tensor *t = gt_gguf_tensor_at(g, i);
        if (t->ndim != 2 || !strcmp(t->name, "token_embd.weight")) continue;
        uint32_t qt = t->dims[0] == 256 ? GT_QT_Q4_K : t->dims[0] == 512 ? GT_QT_Q6_K : GT_QT_Q5_0;
        uint8_t *data = (uint8_t *)t->data;
        uint8_t *b = random_blocks(qt, t->n_elements, (uint64_t)i, 0.1);
        memcpy(data, b, (size_t)gt_qt_bytes(qt, t->n_elements)); /* fits: F32 is larger */
        free(b);
        ((gt_gguf_tensor *)t)->type = qt; /* the parsed directory, as a file saying qt would read */
        ((gt_gguf_tensor *)t)->n_bytes = (uint64_t)gt_qt_bytes(qt, t->n_elements);
        kept++;
    }
    ck_assert_int_eq(kept, 14);
    ck_assert_msg(gt_gemma_from_gguf_frozen(g, GT_FROZEN_Q4_K, &m, err, sizeof err) == 0, "%s", err);
    for (int64_t i = 0; i < gt_gguf_n_tensors(g); i++) {
        const gt_gguf_tensor *t = gt_gguf_tensor_at(g, i);
        if (t->ndim != 2) continue;
        int p = -1;
        for (int k = 0; k < m->n_params; k++) {
            char n[96];
            if (!gt_gemma_param_gguf_name(m->params[k].row, m->params[k].layer, n, sizeof n) && !strcmp(n, t->name)) p = k;
        }
        ck_assert_msg(p >= 0, "%s", t->name);
        const gt_bf16_mat *w = &m->mats[p];
        if (!strcmp(t->name, "token_embd.weight")) ck_assert(w->fmt == GT_WFMT_Q4_K); /* F32 in the file */
        else ck_assert_msg(gt_wfmt_qtype(w->fmt) == t->type && memcmp(w->q8, t->data, t->n_bytes) == 0, "%s", t->name);
    }
    printf("q4_k from GGUF: %lld bytes of blocks (Q8_0 for all: %lld)\n", (long long)gt_gemma_stored_bytes(m),
           (long long)(gt_q8_bytes(gt_gemma_param_count(&m->cfg))));
    gt_gemma_free(m);
    gt_gguf_close(g);
    free(buf);
    unlink(path);
    gt_gemma_free(big);
    gt_tok_free(tok);
    gt_gemma_free(q);
    gt_gemma_free(deq);
}
END_TEST

/* Random init straight into q4_k gives the blocks of quantising the fp32 init; a 12-step LoRA run
 * on it stays within a stated 5% of the unquantised fp32 model's loss at every step (4.5-bit
 * weights: a real difference, unlike the decoded-values comparison above). */
START_TEST(random_init_into_q4_k_and_trained_near_fp32) {
    gt_gemma_config c = tiny_cfg();
    char err[256];
    gt_gemma *st, *cv, *ref;
    ck_assert_msg(gt_gemma_create_frozen(&c, GT_FROZEN_Q4_K, &st, err, sizeof err) == 0, "%s", err);
    ck_assert(gt_gemma_create(&c, false, &cv, err, sizeof err) == 0 && gt_gemma_create(&c, false, &ref, err, sizeof err) == 0);
    gt_gemma_init_random(st, 5, 0.05);
    gt_gemma_init_random(cv, 5, 0.05);
    gt_gemma_init_random(ref, 5, 0.05);
    ck_assert_msg(gt_gemma_set_frozen_dtype(cv, GT_FROZEN_Q4_K, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(gt_gemma_stored_bytes(st), gt_gemma_stored_bytes(cv));
    ck_assert(memcmp(st->dataq, cv->dataq, (size_t)gt_gemma_stored_bytes(st)) == 0);
    ck_assert(st->mats[st->layers[0].query - st->tensors].fmt == GT_WFMT_Q4_K);
    static gt_real g1[32768], g2[32768];
    double lq[STEPS], lf[STEPS];
    int64_t n1, n2;
    train(st, lq, g1, &n1);
    train(ref, lf, g2, &n2);
    double worst = gt_test_losses_near(lq, lf, STEPS, 5e-2, "q4_k vs unquantised fp32");
    gt_test_loss_fell(lf, STEPS);
    printf("q4_k random init: LoRA loss %.4f -> %.4f (unquantised fp32 %.4f -> %.4f), worst step %.1e relative\n",
           lq[0], lq[STEPS - 1], lf[0], lf[STEPS - 1], worst);
    gt_gemma_free(st);
    gt_gemma_free(cv);
    gt_gemma_free(ref);
}
END_TEST

/* Gemma 4 (per-layer embeddings, kv sharing, k = v global layers, 2F MLPs) under q8_0 and q4_k,
 * built straight into the storage by random init: the same blocks as converting the fp32 init,
 * and a LoRA step's loss and adapter gradients equal to fp32 holding the decoded values (the
 * per-layer embedding table read through the stored rows). Widths are whole blocks (Q4_K: 256
 * for the hidden width, Q8_0 for the rest). */
static gt_gemma_config tiny4_cfg(void) {
    gt_gemma_config c;
    gt_gemma_config_defaults(&c, 4);
    c.vocab_size = 512;
    c.num_layers = 4;
    c.hidden_dim = 256;
    c.intermediate_dim = 256;
    c.num_query_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 16;
    c.global_head_dim = 32;
    c.num_global_kv_heads = 1;
    c.sliding_window = 8;
    c.sliding_pattern = 2;
    c.rope_global_partial = 0.25;
    c.num_kv_shared_layers = 1;
    c.double_wide_mlp = true;
    c.per_layer_input_dim = 32;
    return c;
}

/* One LoRA step at learning rate 0: its loss and adapter gradients. */
static double gemma4_step(gt_gemma *m, gt_real *grad, int64_t *ng) {
    double loss;
    gt_test_lora_run(m, 1, 0, true, &loss, grad, 32768, ng);
    return loss;
}

START_TEST(gemma4_quantised_bases) {
    gt_gemma_config c = tiny4_cfg();
    const gt_frozen_dtype dts[2] = {GT_FROZEN_Q8_0, GT_FROZEN_Q4_K};
    char err[256];
    for (int k = 0; k < 2; k++) {
        gt_gemma *st, *cv, *deq;
        ck_assert_msg(gt_gemma_create_frozen(&c, dts[k], &st, err, sizeof err) == 0, "%s", err);
        ck_assert(gt_gemma_create(&c, false, &cv, err, sizeof err) == 0 && gt_gemma_create(&c, false, &deq, err, sizeof err) == 0);
        gt_gemma_init_random(st, 3, 0.05);
        gt_gemma_init_random(cv, 3, 0.05);
        gt_gemma_init_random(deq, 3, 0.05);
        ck_assert_msg(gt_gemma_set_frozen_dtype(cv, dts[k], err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(gt_gemma_stored_bytes(st), gt_gemma_stored_bytes(cv));
        ck_assert(memcmp(st->dataq, cv->dataq, (size_t)gt_gemma_stored_bytes(st)) == 0);
        for (int p = 0; p < st->n_params; p++) /* norms (1 + N(0, std)), layer_scalar */
            if (st->params[p].t->ndim != 2)
                ck_assert(memcmp(st->params[p].t->data, cv->params[p].t->data, sizeof(gt_real) * (size_t)st->params[p].t->size) == 0);
        ck_assert(st->ple_embedding->data == NULL && st->layers[0].ple_gate->data == NULL);
        ck_assert(st->mats[st->ple_embedding - st->tensors].fmt == GT_WFMT_Q8_0); /* width 4 x 32: not 256-blocks */
        for (int p = 0; p < st->n_params; p++) /* deq: fp32 holding the stored values */
            if (st->params[p].t->ndim == 2) gt_gemma_param_values(st, st->params[p].t, deq->params[p].t->data);
        static gt_real g1[32768], g2[32768];
        int64_t n1, n2;
        double l1 = gemma4_step(st, g1, &n1), l2 = gemma4_step(deq, g2, &n2);
        ck_assert(n1 == n2 && n1 > 0);
        ck_assert_msg(fabs(l1 - l2) <= 1e-5 * l2, "%s: loss %.7f vs fp32 on the decoded values %.7f",
                      gt_frozen_dtype_names[dts[k]], l1, l2);
        gt_test_grads_near(g1, g2, n1, 1e-5, 1e-4, gt_frozen_dtype_names[dts[k]]);
        printf("gemma 4 %s: %.2f MB stored, LoRA step loss %.6f (fp32 on the decoded values %.6f)\n",
               gt_frozen_dtype_names[dts[k]], (double)gt_gemma_stored_bytes(st) / 1e6, l1, l2);
        gt_gemma_free(st);
        gt_gemma_free(cv);
        gt_gemma_free(deq);
    }
    /* through a GGUF (llama.cpp's gemma4 layout): an F32 file loaded straight into q4_k equals
     * converting its fp32 load */
    gt_tokenizer *tok;
    ck_assert_msg(gt_tok_load("tests/fixtures/gemma3-tokenizer-8k.json", &tok, err, sizeof err) == 0, "%s", err);
    c.vocab_size = 8192;
    c.num_kv_shared_layers = 2; /* the sharing llama.cpp can express */
    gt_gemma *src, *a, *b;
    ck_assert(gt_gemma_create(&c, false, &src, err, sizeof err) == 0);
    gt_gemma_init_random(src, 4, 0.05);
    char path[128];
    snprintf(path, sizeof path, "/tmp/gt-test-quant-k4-%d.gguf", (int)getpid());
    ck_assert_msg(gt_gguf_export_model(src, tok, path, GT_GGML_F32, "tiny4", err, sizeof err) == 0, "%s", err);
    gt_gguf *g;
    ck_assert_msg(gt_gguf_open(path, &g, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_gemma_from_gguf_frozen(g, GT_FROZEN_Q4_K, &a, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_gemma_from_gguf(g, false, &b, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_gemma_set_frozen_dtype(b, GT_FROZEN_Q4_K, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(gt_gemma_stored_bytes(a), gt_gemma_stored_bytes(b));
    ck_assert(memcmp(a->dataq, b->dataq, (size_t)gt_gemma_stored_bytes(a)) == 0);
    for (int p = 0; p < a->n_params; p++)
        if (a->params[p].t->ndim != 2)
            ck_assert(memcmp(a->params[p].t->data, b->params[p].t->data, sizeof(gt_real) * (size_t)a->params[p].t->size) == 0);
    gt_gguf_close(g);
    unlink(path);
    gt_gemma_free(a);
    gt_gemma_free(b);
    gt_gemma_free(src);
    gt_tok_free(tok);
}
END_TEST

START_TEST(refusals) {
    gt_gemma *deq, *q = tiny_q4k(&deq);
    gt_real row[512] = {0};
    /* rows cannot be quantised into Q6_K or Q5_0; Q4_K and Q8_0 rows can */
    ck_assert_int_eq(gt_gemma_store_rows(q, q->layers[0].down, 0, 1, row), -1);
    ck_assert_int_eq(gt_gemma_store_rows(q, q->layers[0].attn_out, 0, 1, row), -1);
    ck_assert_int_eq(gt_gemma_store_rows(q, q->layers[0].query, 0, 1, row), 0);
    ck_assert_int_eq(gt_gemma_store_rows(q, q->embedding, 0, 1, row), 0);
    char err[256];
    ck_assert_int_eq(gt_gemma_set_frozen_dtype(q, GT_FROZEN_Q8_0, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "q4_k already"), "%s", err);
    ck_assert_int_eq(gt_frozen_dtype_from_name("q4_k"), GT_FROZEN_Q4_K);
    gt_gemma_free(q);
    gt_gemma_free(deq);
    gt_gemma_config c = tiny_cfg();
    c.hidden_dim = 48; /* not whole Q8_0 blocks: the fallback type */
    gt_gemma *m;
    ck_assert_int_eq(gt_gemma_create_frozen(&c, GT_FROZEN_Q4_K, &m, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "q4_k") && strstr(err, "multiples of 32"), "%s", err);
}
END_TEST

int main(void) {
    Suite *s = suite_create("quant_k");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, blocks_decode_like_the_gguf_package);
    tcase_add_test(tc, q4_k_quantiser_matches_ggml);
    tcase_add_test(tc, linear_and_embedding_match_fp32_on_decoded_values);
    tcase_add_test(tc, linear_on_the_bf16_kernel_matches_bf16_storage);
    tcase_add_test(tc, lm_head_matches_fp32_on_decoded_values);
    tcase_add_test(tc, gemma_with_kept_blocks_trains_like_fp32_on_the_decoded_values);
    tcase_add_test(tc, gguf_blocks_are_kept_and_other_sources_quantised);
    tcase_add_test(tc, random_init_into_q4_k_and_trained_near_fp32);
    tcase_add_test(tc, gemma4_quantised_bases);
    tcase_add_test(tc, refusals);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
