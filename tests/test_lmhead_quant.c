/* The tied LM head over a quantised frozen table (model.frozen_dtype q8_0 / q4_k) with
 * compute_dtype bfloat16: each vocabulary block is widened to bf16 (dequantised, rounded to
 * nearest even) and multiplied on the bf16 kernel, so loss, per-row losses and the hidden
 * gradient equal, bit for bit, those of a bf16 table holding exactly those rounded values (and
 * differ from the fp32 table's: the bf16 arithmetic ran). Without a bf16 kernel the op is the fp32
 * path: then they are within 1e-5 of the fp32 table of the dequantised values. Rows, masked labels and a soft-cap as the LM head sees them in training.
 * With the kernel, the pass whose vocabulary is split between the threads (the default) agrees
 * with the older one that shares each block between them (GT_LMHEAD_SHARED=1): losses to 1e-5,
 * dh to 2e-3 of its largest value (its exp terms are rounded to bf16 under other maxima). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "autograd/bf16_gemm.h"
#include "autograd/quant.h"
#include "tests/check_main.h"

static double rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2 - 1;
}

typedef struct {
    gt_real loss, *ce, *dh;
} head_out;

/* The LM head's loss, per-row losses and dh for table e (bf16_mat) or, with e NULL, fp32 table f. */
static head_out run_head(const gt_bf16_mat *e, const gt_real *f, int64_t V, int64_t D, const gt_real *h, int64_t N,
                         const int32_t *labels, const gt_real *w, double cap) {
    gt_ctx c;
    gt_ctx_init(&c, 0);
    int64_t hs[2] = {N, D}, ts[2] = {V, D};
    gt_tensor *ht = gt_from_data(&c, h, 2, hs, true);
    double ws;
    head_out o = {0, calloc((size_t)N, sizeof(gt_real)), malloc(sizeof(gt_real) * (size_t)(N * D))};
    gt_tensor *l = e ? gt_lm_head_loss_bf16(&c, ht, e, cap, labels, w, 8, &ws, o.ce)
                     : gt_lm_head_loss(&c, ht, gt_from_data(&c, f, 2, ts, false), cap, labels, w, 8, &ws, o.ce);
    ck_assert_msg(l != NULL, "%s", c.err);
    ck_assert_int_eq(gt_backward(&c, l), GT_OK);
    o.loss = l->data[0];
    memcpy(o.dh, ht->grad, sizeof(gt_real) * (size_t)(N * D));
    gt_ctx_free(&c);
    return o;
}

static void head_out_free(head_out *o) { free(o->ce), free(o->dh); }

static void quant_head_case(uint32_t qt, int64_t V, int64_t D, int64_t N, double cap) {
    uint64_t seed = 5 + qt;
    const int64_t SR = 128; /* staging rows: vocabulary blocks of 128 */
    gt_real *vals = malloc(sizeof(gt_real) * (size_t)(V * D)), *deq = malloc(sizeof(gt_real) * (size_t)(V * D));
    uint8_t *blocks = malloc((size_t)gt_qt_bytes(qt, V * D));
    uint16_t *r16 = malloc(sizeof(uint16_t) * (size_t)(V * D));
    gt_real *stage_q = malloc(sizeof(gt_real) * (size_t)(SR * D)), *stage_b = malloc(sizeof(gt_real) * (size_t)(SR * D));
    gt_real *h = malloc(sizeof(gt_real) * (size_t)(N * D)), *w = malloc(sizeof(gt_real) * (size_t)N);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)N);
    for (int64_t i = 0; i < V * D; i++) vals[i] = (gt_real)(rnd(&seed) * 0.5);
    for (int64_t i = 0; i < N * D; i++) h[i] = (gt_real)rnd(&seed);
    for (int64_t i = 0; i < N; i++) labels[i] = (int32_t)((i * 131 + 7) % V), w[i] = i % 5 == 3 ? 0 : 1;
    if (qt == GT_QT_Q8_0) gt_q8_quantize(vals, blocks, V * D);
    else gt_q4k_quantize(vals, blocks, V * D);
    gt_bf16_mat q = {NULL, V, D, stage_q, SR * D, true, gt_wfmt_of_qtype(qt), blocks};
    gt_frozen_rows(&q, 0, V, deq);
    for (int64_t i = 0; i < V * D; i++) r16[i] = gt_f32_to_bf16((float)deq[i]);
    gt_bf16_mat b = {r16, V, D, stage_b, SR * D, true, GT_WFMT_BF16, NULL};
    bool kern = gt_bf16_kernel_active() != GT_BF16K_OFF;
    head_out oq = run_head(&q, NULL, V, D, h, N, labels, w, cap), of = run_head(NULL, deq, V, D, h, N, labels, w, cap);
    double dmax = 0, diff = 0;
    for (int64_t i = 0; i < N * D; i++) dmax = fmax(dmax, fabs(of.dh[i])), diff = fmax(diff, fabs(oq.dh[i] - of.dh[i]));
    if (kern) {
        head_out ob = run_head(&b, NULL, V, D, h, N, labels, w, cap);
        ck_assert_msg(oq.loss == ob.loss, "%s: loss %.9g vs %.9g", gt_qt_name(qt), oq.loss, ob.loss);
        ck_assert_mem_eq(oq.ce, ob.ce, sizeof(gt_real) * (size_t)N);
        ck_assert_mem_eq(oq.dh, ob.dh, sizeof(gt_real) * (size_t)(N * D));
        ck_assert_msg(diff > 0, "the bf16 arithmetic did not run"); /* the fp32 table's result differs */
        /* the vocabulary split between the threads against the pass that shares each block
         * (GT_LMHEAD_SHARED): sums in another order, and the exp terms rounded to bf16 under
         * other running maxima (each thread's own), so dh moves by up to 2^-9 of its terms */
        setenv("GT_LMHEAD_SHARED", "1", 1);
        head_out os = run_head(&b, NULL, V, D, h, N, labels, w, cap);
        unsetenv("GT_LMHEAD_SHARED");
        double sd = 0, sc = 0;
        for (int64_t i = 0; i < N * D; i++) sd = fmax(sd, fabs(os.dh[i] - ob.dh[i]));
        for (int64_t i = 0; i < N; i++) sc = fmax(sc, fabs(os.ce[i] - ob.ce[i]));
        ck_assert_msg(fabs(os.loss - ob.loss) <= 1e-5 * fabs(ob.loss), "split loss %.9g vs shared %.9g", ob.loss,
                      os.loss);
        ck_assert_msg(sc <= 1e-5 && sd <= 2e-3 * dmax, "split vs shared: ce off by %g, dh by %g of max %g", sc, sd,
                      dmax);
        head_out_free(&os);
        head_out_free(&ob);
    } else { /* the fp32 path on the dequantised values (another blocking: to rounding) */
        ck_assert_msg(fabs(oq.loss - of.loss) <= 1e-5 * fabs(of.loss), "loss %.9g vs %.9g", oq.loss, of.loss);
        ck_assert_msg(diff <= 1e-5 * dmax, "dh off by %g of max %g", diff, dmax);
    }
    printf("lm head %s V %lld D %lld N %lld cap %g, kernel %s: %s; dh vs the fp32 dequantised table %.1e of max\n",
           gt_qt_name(qt), (long long)V, (long long)D, (long long)N, cap, gt_bf16_kernel_name(gt_bf16_kernel_active()),
           kern ? "equal to the bf16-rounded table" : "the fp32 path", diff / dmax);
    head_out_free(&oq), head_out_free(&of);
    free(vals), free(deq), free(blocks), free(r16), free(stage_q), free(stage_b), free(h), free(w), free(labels);
}

START_TEST(quantised_table_equals_its_bf16_rounding) {
    quant_head_case(GT_QT_Q8_0, 1024, 64, 21, 0);
    quant_head_case(GT_QT_Q8_0, 512, 64, 5, 30);
    quant_head_case(GT_QT_Q4_K, 512, 256, 19, 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("lmhead_quant");
    TCase *tc = tcase_create("lmhead_quant");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, quantised_table_equals_its_bf16_rounding);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
