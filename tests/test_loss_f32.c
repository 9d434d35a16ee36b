/* The fp32 cross-entropy against a double reference: values, gradients, extreme logits, a full
 * Gemma vocabulary row, KerasHub's normalisation, memory use, thread-count independence and
 * error messages. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "tests/check_main.h"

static double urand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (double)(*s >> 8) / 16777216.0;
}

static void fill(gt_tensor *t, unsigned *s, double lo, double hi) {
    for (int64_t i = 0; i < t->size; i++) t->data[i] = (float)(lo + (hi - lo) * urand(s));
}

/* Double-precision reference of one row: ce and, if dz != NULL, dz += c (softmax - onehot). */
static double ref_row(const float *z, int64_t v, int32_t y, double c, double *dz) {
    double m = -INFINITY;
    for (int64_t j = 0; j < v; j++) m = fmax(m, (double)z[j]);
    double s = 0;
    for (int64_t j = 0; j < v; j++) s += exp((double)z[j] - m);
    double lse = m + log(s);
    if (dz) {
        for (int64_t j = 0; j < v; j++) dz[j] += c * exp((double)z[j] - lse);
        dz[y] -= c;
    }
    return lse - z[y];
}

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-300); }

/* Runs the op with backward seed 1 and checks loss, row_ce, weight_sum and the gradient
 * against ref_row. Tolerances: relative on ce and loss, and on the gradient relative to the
 * row's largest entry. */
static void check_against_ref(gt_tensor *x, const int32_t *labels, const float *weights,
                              double tol_val, double tol_grad) {
    int64_t v = gt_cols(x), n = gt_rows(x);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_real *row_ce = malloc((size_t)n * sizeof *row_ce);
    double *ref_dz = calloc((size_t)x->size, sizeof *ref_dz);
    double wsum = -1;
    memset(x->grad, 0, (size_t)x->size * sizeof(gt_real));
    gt_tensor *l = gt_cross_entropy(&ctx, x, labels, weights, &wsum, row_ce);
    ck_assert_msg(l != NULL, "%s", ctx.err);
    ck_assert_int_eq(gt_backward(&ctx, l), GT_OK);
    double total = 0, ws = 0;
    for (int64_t i = 0; i < n; i++) {
        double w = weights ? weights[i] : 1;
        ws += w;
        if (w == 0) {
            ck_assert(row_ce[i] == 0);
            continue;
        }
        double ce = ref_row(x->data + i * v, v, labels[i], w, ref_dz + i * v);
        ck_assert_msg(rel(row_ce[i], ce) <= tol_val, "row %lld: ce %.9g vs reference %.9g",
                      (long long)i, (double)row_ce[i], ce);
        total += w * ce;
    }
    ck_assert_msg(rel(l->data[0], total) <= tol_val, "loss %.9g vs reference %.9g",
                  (double)l->data[0], total);
    ck_assert_double_eq_tol(wsum, ws, 1e-12 * fmax(1, ws));
    /* One assertion per row, on its worst element: Check logs every assertion it passes. */
    for (int64_t i = 0; i < n; i++) {
        double gmax = 0, worst = -1;
        int64_t wj = 0;
        for (int64_t j = 0; j < v; j++) gmax = fmax(gmax, fabs(ref_dz[i * v + j]));
        for (int64_t j = 0; j < v; j++) {
            double a = x->grad[i * v + j], r = ref_dz[i * v + j];
            /* an exact zero (skipped row, -inf logit) must stay exactly zero */
            double err = (r == 0 && a != 0) ? INFINITY : fabs(a - r);
            if (!(err <= worst)) worst = err, wj = j;
        }
        ck_assert_msg(worst <= tol_grad * gmax, "row %lld class %lld: gradient %.9g vs "
                      "reference %.9g (row scale %.3g)", (long long)i, (long long)wj,
                      (double)x->grad[i * v + wj], ref_dz[i * v + wj], gmax);
    }
    free(row_ce);
    free(ref_dz);
    gt_ctx_free(&ctx);
}

START_TEST(values_and_gradient_match_double_reference) {
    unsigned s = 3;
    /* V = 37: two full 16-lane blocks and a 5-wide tail; padding rows 2 and 6. */
    int64_t shape[3] = {2, 4, 37};
    gt_tensor *x = gt_tensor_new(3, shape, true);
    fill(x, &s, -6, 6);
    const int32_t labels[8] = {0, 36, -1, 17, 17, 5, 99, 36};
    const float weights[8] = {1, 0.5f, 0, 3, 1.25f, 0.01f, 0, 2};
    check_against_ref(x, labels, weights, 1e-6, 1e-6);
    /* NULL weights: all ones (labels must all be valid then). */
    const int32_t labels2[8] = {0, 36, 1, 17, 17, 5, 9, 36};
    check_against_ref(x, labels2, NULL, 1e-6, 1e-6);
    /* V shorter than one vector block. */
    int64_t small[2] = {3, 5};
    gt_tensor *y = gt_tensor_new(2, small, true);
    fill(y, &s, -3, 3);
    const int32_t labels3[3] = {4, 0, 2};
    const float weights3[3] = {0.3f, 1, 7};
    check_against_ref(y, labels3, weights3, 1e-6, 1e-6);
    gt_tensor_free(x);
    gt_tensor_free(y);
}
END_TEST

START_TEST(huge_and_infinite_logits_stay_finite) {
    unsigned s = 5;
    int64_t shape[2] = {3, 40};
    gt_tensor *x = gt_tensor_new(2, shape, true);
    fill(x, &s, -1e4, 1e4); /* exp(1e4) overflows anything without the max shift */
    x->data[0 * 40 + 7] = 1.0e4f;
    x->data[0 * 40 + 8] = 1.0e4f - 1.0f;
    /* Row 2: a masked vocabulary (-inf logits) must give them zero probability and gradient. */
    for (int j = 0; j < 40; j += 3) x->data[2 * 40 + j] = -INFINITY;
    const int32_t labels[3] = {8, 0, 1};
    const float weights[3] = {1, 1, 0.5f};
    check_against_ref(x, labels, weights, 1e-6, 1e-6);
    for (int64_t i = 0; i < x->size; i++) ck_assert(isfinite(x->grad[i]));
    ck_assert(x->grad[2 * 40 + 3] == 0);
    /* Row 0 has two classes within 1 of each other: ce = log(1 + e) for label 8, about. */
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    float ce[3];
    ck_assert_ptr_nonnull(gt_cross_entropy(&ctx, x, labels, weights, NULL, ce));
    ck_assert_double_eq_tol(ce[0], log1p(exp(1.0)), 1e-6);
    ck_assert(isfinite(ce[1]) && ce[1] > 1000); /* label 0 sits thousands below the max */
    gt_ctx_free(&ctx);
    gt_tensor_free(x);
}
END_TEST

START_TEST(gemma_vocabulary_rows) {
    /* V = 262144, Gemma 3's vocabulary: the row sum must stay exact to fp32 in double. Logits
     * like a trained LM head's: a broad bulk plus a few strong candidates. */
    unsigned s = 9;
    const int64_t v = 262144;
    int64_t shape[2] = {3, v};
    gt_tensor *x = gt_tensor_new(2, shape, true);
    fill(x, &s, -8, 4);
    x->data[0 * v + 1000] = 14;
    x->data[1 * v + 262143] = 9;
    x->data[2 * v + 5] = 20;
    x->data[2 * v + 6] = 19.5f;
    const int32_t labels[3] = {1000, 123456, 6};
    const float weights[3] = {1, 0.5f, 2};
    check_against_ref(x, labels, weights, 1e-6, 1e-6);
    gt_tensor_free(x);
}
END_TEST

START_TEST(kerashub_normalisation_by_hand) {
    /* B=2, T=3, V=4. By construction (logits are logs of small integers):
     *   (0,0) z = 0,0,0,0            y=1  ce = ln 4
     *   (0,1) z = ln1,ln2,ln3,ln4    y=3  ce = ln(1+2+3+4) - ln 4 = ln 2.5
     *   (0,2) padding, w=0, y=-1, huge logits (ignored)
     *   (1,0) z = ln4,0,0,0          y=0  ce = ln 7 - ln 4 = ln 1.75, weight 2
     *   (1,1), (1,2) padding, w=0
     * sum(w ce) = ln 4 + ln 2.5 + 2 ln 1.75 = ln 30.625; sum(w) = 4; B*T = 6. */
    const float l2 = logf(2), l3 = logf(3), l4 = logf(4);
    float data[24] = {0, 0, 0, 0,   0, l2, l3, l4,   1e30f, -1e30f, 5, 5,
                      l4, 0, 0, 0,  1, 2, 3, 4,      9, 9, 9, 9};
    int64_t shape[3] = {2, 3, 4};
    const int32_t labels[6] = {1, 3, -1, 0, -1, 2};
    const float weights[6] = {1, 1, 0, 2, 0, 0};
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *z = gt_from_data(&ctx, data, 3, shape, false);
    double wsum = 0;
    float ce[6];
    gt_tensor *l = gt_cross_entropy(&ctx, z, labels, weights, &wsum, ce);
    ck_assert_msg(l != NULL, "%s", ctx.err);
    ck_assert_double_eq_tol(ce[0], log(4.0), 1e-6);
    ck_assert_double_eq_tol(ce[1], log(2.5), 1e-6);
    ck_assert_double_eq_tol(ce[3], log(1.75), 1e-6);
    ck_assert(ce[2] == 0 && ce[4] == 0 && ce[5] == 0);
    ck_assert_double_eq_tol(l->data[0], log(30.625), 1e-6);
    ck_assert_double_eq(wsum, 4);
    double keras = l->data[0] / (2 * 3);  /* sum_over_batch_size: the Keras default */
    double per_token = l->data[0] / wsum; /* ours by default */
    ck_assert_double_eq_tol(keras, 0.5703028, 1e-6);   /* ln(30.625) / 6 */
    ck_assert_double_eq_tol(per_token, 0.8554542, 1e-6); /* ln(30.625) / 4 */
    ck_assert(fabs(keras - per_token) > 0.25);
    gt_ctx_free(&ctx);
}
END_TEST

START_TEST(memory_is_not_proportional_to_rows_times_vocab) {
    /* The caller feeds LM-head chunks; the op may keep O(n) state, never O(n V). */
    unsigned s = 13;
    const int64_t n = 64, v = 4096;
    int64_t shape[2] = {n, v};
    gt_tensor *x = gt_tensor_new(2, shape, true);
    fill(x, &s, -2, 2);
    int32_t labels[64];
    float weights[64];
    for (int i = 0; i < n; i++) labels[i] = (i * 37) % v, weights[i] = (float)(i % 3);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 1 << 16);
    size_t before = ctx.arena.used;
    gt_tensor *l = gt_cross_entropy(&ctx, x, labels, weights, NULL, NULL);
    ck_assert_msg(l != NULL, "%s", ctx.err);
    size_t fwd = ctx.arena.used - before;
    ck_assert_msg(fwd < (size_t)(64 * n + 4096), "forward kept %zu bytes for %lld rows", fwd,
                  (long long)n);
    ck_assert_int_eq(gt_backward(&ctx, l), GT_OK);
    /* x is persistent (owns its gradient): backward allocates at most the loss's gradient. */
    ck_assert_msg(ctx.arena.used - before < (size_t)(64 * n + 4096), "backward used %zu bytes",
                  ctx.arena.used - before);
    gt_ctx_free(&ctx);
    gt_tensor_free(x);
}
END_TEST

START_TEST(result_does_not_depend_on_thread_count) {
    unsigned s = 17;
    const int64_t n = 12, v = 5000;
    int64_t shape[2] = {n, v};
    gt_tensor *x = gt_tensor_new(2, shape, true);
    fill(x, &s, -5, 5);
    int32_t labels[12];
    float weights[12];
    for (int i = 0; i < n; i++) labels[i] = i * 400, weights[i] = i == 4 ? 0 : 0.5f + i;
    float loss[2];
    float *grad[2];
    for (int t = 0; t < 2; t++) {
        gt_threads_set(t + 1);
        memset(x->grad, 0, (size_t)x->size * sizeof(float));
        gt_ctx ctx;
        gt_ctx_init(&ctx, 0);
        gt_tensor *l = gt_cross_entropy(&ctx, x, labels, weights, NULL, NULL);
        ck_assert_int_eq(gt_backward(&ctx, l), GT_OK);
        loss[t] = l->data[0];
        grad[t] = malloc((size_t)x->size * sizeof(float));
        memcpy(grad[t], x->grad, (size_t)x->size * sizeof(float));
        gt_ctx_free(&ctx);
    }
    gt_threads_set(0);
    ck_assert(loss[0] == loss[1]);
    ck_assert(memcmp(grad[0], grad[1], (size_t)x->size * sizeof(float)) == 0);
    free(grad[0]);
    free(grad[1]);
    gt_tensor_free(x);
}
END_TEST

START_TEST(no_gradient_work_when_frozen_or_disabled) {
    int64_t shape[2] = {2, 3};
    const float data[6] = {1, 2, 3, 3, 2, 1};
    const int32_t labels[2] = {2, 0};
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *z = gt_from_data(&ctx, data, 2, shape, false);
    gt_tensor *l = gt_cross_entropy(&ctx, z, labels, NULL, NULL, NULL);
    ck_assert(!l->requires_grad);
    ck_assert_int_eq(ctx.n_nodes, 0);
    ctx.grad_enabled = false;
    z->requires_grad = true;
    l = gt_cross_entropy(&ctx, z, labels, NULL, NULL, NULL);
    ck_assert(!l->requires_grad);
    ck_assert_int_eq(ctx.n_nodes, 0);
    /* Both rows: ce = ln(1 + e^-1 + e^-2). */
    ck_assert_double_eq_tol(l->data[0], 2 * log(1 + exp(-1.0) + exp(-2.0)), 1e-6);
    gt_ctx_free(&ctx);
}
END_TEST

/* The call must fail with status st and a message containing every needle. */
static void expect_error(gt_tensor *(*call)(gt_ctx *, void *), void *arg, int st,
                         const char *const *needles) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ck_assert_ptr_null(call(&ctx, arg));
    ck_assert_int_eq(ctx.status, st);
    for (const char *const *nd = needles; *nd; nd++)
        ck_assert_msg(strstr(ctx.err, *nd), "message \"%s\" lacks \"%s\"", ctx.err, *nd);
    gt_ctx_free(&ctx);
}

typedef struct {
    int ndim;
    int64_t shape[3];
    const int32_t *labels;
    const float *weights;
    bool null_logits;
} bad_case;

static gt_tensor *call_bad(gt_ctx *ctx, void *arg) {
    bad_case *b = arg;
    gt_tensor *z = b->null_logits ? NULL : gt_zeros(ctx, b->ndim, b->shape);
    return gt_cross_entropy(ctx, z, b->labels, b->weights, NULL, NULL);
}

START_TEST(errors_name_the_row_and_value) {
    const int32_t bad_label[3] = {1, 2, 7};
    const int32_t neg_label[3] = {1, -1, 0};
    const int32_t ok_labels[3] = {1, 2, 3};
    const float w3[3] = {1, 0.5f, 1};
    const float neg_w[3] = {1, -0.5f, 1};
    const float nan_w[3] = {1, 1, NAN};
    const float inf_w[3] = {INFINITY, 1, 1};

    bad_case c1 = {2, {3, 4}, bad_label, w3, false};
    expect_error(call_bad, &c1, GT_ERR_ARG,
                 (const char *[]){"cross_entropy", "label 7", "row 2", "[0, 4)", "[3,4]", NULL});
    bad_case c2 = {2, {3, 4}, neg_label, NULL, false}; /* -1 with weight 1 is not padding */
    expect_error(call_bad, &c2, GT_ERR_ARG, (const char *[]){"label -1", "row 1", NULL});
    bad_case c3 = {2, {3, 4}, ok_labels, neg_w, false};
    expect_error(call_bad, &c3, GT_ERR_ARG,
                 (const char *[]){"cross_entropy", "weight -0.5", "row 1", "negative", NULL});
    bad_case c4 = {2, {3, 4}, ok_labels, nan_w, false};
    expect_error(call_bad, &c4, GT_ERR_ARG, (const char *[]){"weight nan", "row 2", "finite", NULL});
    bad_case c5 = {2, {3, 4}, ok_labels, inf_w, false};
    expect_error(call_bad, &c5, GT_ERR_ARG, (const char *[]){"weight inf", "row 0", NULL});
    bad_case c6 = {2, {3, 4}, NULL, w3, false};
    expect_error(call_bad, &c6, GT_ERR_ARG, (const char *[]){"cross_entropy", "NULL labels", NULL});
    bad_case c7 = {0, {0}, ok_labels, NULL, false};
    expect_error(call_bad, &c7, GT_ERR_SHAPE, (const char *[]){"cross_entropy", "[..., V]", "[]", NULL});
    bad_case c8 = {2, {3, 0}, ok_labels, NULL, false};
    expect_error(call_bad, &c8, GT_ERR_SHAPE, (const char *[]){"cross_entropy", "[3,0]", "no classes", NULL});
    bad_case c9 = {2, {3, 4}, ok_labels, NULL, true};
    expect_error(call_bad, &c9, GT_ERR_ARG, (const char *[]){"cross_entropy", "NULL logits", NULL});

    /* Zero rows is not an error: the loss and the weight total are 0. */
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t empty[2] = {0, 4};
    double wsum = -1;
    gt_tensor *l = gt_cross_entropy(&ctx, gt_zeros(&ctx, 2, empty), NULL, NULL, &wsum, NULL);
    ck_assert_msg(l != NULL, "%s", ctx.err);
    ck_assert(l->data[0] == 0 && wsum == 0);
    gt_ctx_free(&ctx);
}
END_TEST

int main(void) {
    Suite *s = suite_create("loss_f32");
    TCase *tc = tcase_create("cross_entropy");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, values_and_gradient_match_double_reference);
    tcase_add_test(tc, huge_and_infinite_logits_stay_finite);
    tcase_add_test(tc, gemma_vocabulary_rows);
    tcase_add_test(tc, kerashub_normalisation_by_hand);
    tcase_add_test(tc, memory_is_not_proportional_to_rows_times_vocab);
    tcase_add_test(tc, result_does_not_depend_on_thread_count);
    tcase_add_test(tc, no_gradient_work_when_frozen_or_disabled);
    tcase_add_test(tc, errors_name_the_row_and_value);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
