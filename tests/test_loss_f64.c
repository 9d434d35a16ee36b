/* Gradient checks (f64 engine) for the fused weighted cross-entropy. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "tests/gradcheck.h"
#include "tests/check_main.h"

static unsigned rng = 11;

static gt_tensor *randu(int ndim, const int64_t *shape, bool req, double lo, double hi) {
    gt_tensor *t = gt_tensor_new(ndim, shape, req);
    gc_fill_uniform(t, &rng, lo, hi);
    return t;
}

/* h = 1e-4 rather than the default 1e-6: the loss is one number summing several O(1) terms,
 * and its rounding (~4e-15) over 2h would swamp gradients of size p ~ 1e-4 at 1e-7; at 1e-4
 * the central-difference truncation (h^2/6 |f'''| ~ 1e-10) is still far below. The
 * tolerance stays the default 1e-7 (observed worst: 1.3e-8). */
static void expect_pass(gc_forward_fn fn, void *user, gt_tensor **in, int n) {
    gc_result res;
    gc_opts opts = {.h = 1e-4};
    int ok = gc_check(fn, user, in, n, &opts, &res);
    ck_assert_msg(ok, "%s", res.msg);
}

typedef struct {
    const int32_t *labels;
    const gt_real *weights;
} ce_args;

static gt_tensor *fwd_ce(gt_ctx *ctx, gt_tensor **in, void *user) {
    ce_args *a = user;
    return gt_cross_entropy(ctx, in[0], a->labels, a->weights, NULL, NULL);
}

/* Plain log-sum-exp of row i, straight from the definition (no max shift: small logits). */
static double naive_ce(const gt_real *z, int64_t v, int32_t y) {
    double s = 0;
    for (int64_t j = 0; j < v; j++) s += exp(z[j]);
    return log(s) - z[y];
}

START_TEST(weighted_rows_with_padding) {
    /* 7 rows x 6 classes; rows 2 and 5 are padding (weight 0, label -1 and an in-range one);
     * labels repeat (3 appears three times). */
    int64_t shape[2] = {7, 6};
    gt_tensor *x = randu(2, shape, true, -3, 3);
    const int32_t labels[7] = {3, 0, -1, 3, 5, 2, 3};
    const gt_real weights[7] = {1.0, 0.25, 0, 2.5, 0.7, 0, 1.3};
    ce_args args = {labels, weights};
    expect_pass(fwd_ce, &args, &x, 1);
    /* gc_check leaves the analytic gradient in x->grad: padding rows get exactly nothing. */
    for (int j = 0; j < 6; j++) {
        ck_assert(x->grad[2 * 6 + j] == 0);
        ck_assert(x->grad[5 * 6 + j] == 0);
    }
    /* And every kept row's gradient sums to 0 (softmax minus one-hot). */
    for (int i = 0; i < 7; i++) {
        double s = 0;
        for (int j = 0; j < 6; j++) s += x->grad[i * 6 + j];
        ck_assert_double_eq_tol(s, 0, 1e-12);
    }
    /* Forward values: total, weight sum, per-row ce. */
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    double wsum = -1;
    gt_real row_ce[7];
    gt_tensor *l = gt_cross_entropy(&ctx, x, labels, weights, &wsum, row_ce);
    ck_assert_msg(l != NULL, "%s", ctx.err);
    ck_assert_int_eq(l->ndim, 0);
    ck_assert_int_eq(l->size, 1);
    double total = 0;
    for (int i = 0; i < 7; i++) {
        double ce = weights[i] ? naive_ce(x->data + i * 6, 6, labels[i]) : 0;
        ck_assert_double_eq_tol(row_ce[i], ce, 1e-13);
        total += weights[i] * ce;
    }
    ck_assert_double_eq_tol(l->data[0], total, 1e-12);
    ck_assert_double_eq_tol(wsum, 5.75, 1e-15);
    gt_ctx_free(&ctx);
    gt_tensor_free(x);
}
END_TEST

START_TEST(three_d_logits) {
    /* [B, T, V] = [2, 3, 5]: rows are (b, t) in order; the last step of batch 1 is padding. */
    int64_t shape[3] = {2, 3, 5};
    gt_tensor *x = randu(3, shape, true, -2, 2);
    const int32_t labels[6] = {4, 4, 1, 0, 2, -1};
    const gt_real weights[6] = {0.5, 1, 1.5, 2, 0.1, 0};
    ce_args args = {labels, weights};
    expect_pass(fwd_ce, &args, &x, 1);
    for (int j = 0; j < 5; j++) ck_assert(x->grad[5 * 5 + j] == 0);
    gt_tensor_free(x);
}
END_TEST

START_TEST(weights_null_means_all_ones) {
    int64_t shape[2] = {4, 9};
    gt_tensor *x = randu(2, shape, true, -4, 4);
    const int32_t labels[4] = {8, 0, 8, 3};
    ce_args args = {labels, NULL};
    expect_pass(fwd_ce, &args, &x, 1);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    double wsum = 0;
    gt_tensor *l = gt_cross_entropy(&ctx, x, labels, NULL, &wsum, NULL);
    ck_assert_msg(l != NULL, "%s", ctx.err);
    ck_assert_double_eq(wsum, 4);
    /* Same value as explicit unit weights. */
    const gt_real ones[4] = {1, 1, 1, 1};
    gt_tensor *l1 = gt_cross_entropy(&ctx, x, labels, ones, NULL, NULL);
    ck_assert(l1->data[0] == l->data[0]);
    double total = 0;
    for (int i = 0; i < 4; i++) total += naive_ce(x->data + i * 9, 9, labels[i]);
    ck_assert_double_eq_tol(l->data[0], total, 1e-12);
    gt_ctx_free(&ctx);
    gt_tensor_free(x);
}
END_TEST

/* L = CE(x) * CE(rows 1..2 of x): x's gradient receives two contributions, one through a view,
 * with upstream gradients other than 1; backward must add (+=), not overwrite. */
static gt_tensor *fwd_ce_product(gt_ctx *ctx, gt_tensor **in, void *user) {
    static const int32_t la[4] = {1, 2, 0, 4}, lb[2] = {3, 3};
    static const gt_real wa[4] = {1, 0.5, 2, 0}, wb[2] = {0.75, 1.25};
    gt_tensor *a = gt_cross_entropy(ctx, in[0], la, wa, NULL, NULL);
    gt_tensor *b = gt_cross_entropy(ctx, gt_slice_rows(ctx, in[0], 1, 2), lb, wb, NULL, NULL);
    int64_t one[2] = {1, 1};
    return gt_matmul(ctx, gt_reshape(ctx, a, 2, one), gt_reshape(ctx, b, 2, one), false, false);
}

START_TEST(gradient_accumulates_through_views) {
    int64_t shape[2] = {4, 5};
    gt_tensor *x = randu(2, shape, true, -1, 1);
    expect_pass(fwd_ce_product, NULL, &x, 1);
    gt_tensor_free(x);
}
END_TEST

START_TEST(large_logits_gradcheck) {
    /* Logits near 50: exp without the max shift would still be fine in double, but the check
     * exercises the shifted path with a dominant class. */
    int64_t shape[2] = {3, 4};
    gt_tensor *x = randu(2, shape, true, 45, 55);
    x->data[1] = 80; /* row 0: class 1 dominates, label elsewhere gives a large ce */
    const int32_t labels[3] = {0, 2, 3};
    const gt_real weights[3] = {1, 3, 0.5};
    ce_args args = {labels, weights};
    expect_pass(fwd_ce, &args, &x, 1);
    gt_tensor_free(x);
}
END_TEST

int main(void) {
    Suite *s = suite_create("loss_f64");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, weighted_rows_with_padding);
    tcase_add_test(tc, three_d_logits);
    tcase_add_test(tc, weights_null_means_all_ones);
    tcase_add_test(tc, gradient_accumulates_through_views);
    tcase_add_test(tc, large_logits_gradcheck);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
