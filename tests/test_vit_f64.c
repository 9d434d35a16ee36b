/* Gradient checks (f64 engine) for the vision ops: layernorm (gamma and beta, either absent or
 * frozen, large row means) and avgpool2d (exact and floored grids); forward values against
 * direct formulas. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/gradcheck.h"
#include "tests/check_main.h"

static unsigned rng = 41;

static gt_tensor *rnd(int ndim, const int64_t *shape, bool req, double lo, double hi) {
    gt_tensor *t = gt_tensor_new(ndim, shape, req);
    ck_assert_ptr_nonnull(t);
    gc_fill_uniform(t, &rng, lo, hi);
    return t;
}

static void expect_pass(gc_forward_fn fn, void *user, gt_tensor **in, int n) {
    gc_result res;
    gc_opts opts = {.h = 3e-5};
    int ok = gc_check(fn, user, in, n, &opts, &res);
    ck_assert_msg(ok, "%s", res.msg);
}

typedef struct {
    double eps;
    bool no_gamma, no_beta;
} ln_args;

static gt_tensor *fwd_ln(gt_ctx *ctx, gt_tensor **in, void *user) {
    ln_args *a = user;
    return gt_layernorm(ctx, in[0], a->no_gamma ? NULL : in[1], a->no_beta ? NULL : in[2], a->eps);
}

static void free3(gt_tensor **in) {
    for (int i = 0; i < 3; i++) gt_tensor_free(in[i]);
}

START_TEST(layernorm_grads) {
    int64_t sx[3] = {2, 3, 8}, sw[1] = {8};
    gt_tensor *in[3] = {rnd(3, sx, true, -2, 2), rnd(1, sw, true, 0.4, 1.6),
                        rnd(1, sw, true, -0.5, 0.5)};
    ln_args a = {1e-6, false, false};
    expect_pass(fwd_ln, &a, in, 3);
    a.eps = 0.3; /* eps comparable to the variance */
    expect_pass(fwd_ln, &a, in, 3);
    free3(in);
}
END_TEST

START_TEST(layernorm_without_or_frozen_params) {
    int64_t sx[2] = {5, 6}, sw[1] = {6};
    gt_tensor *in[3] = {rnd(2, sx, true, -1, 1), rnd(1, sw, false, 0.5, 1.5),
                        rnd(1, sw, true, -1, 1)};
    ln_args a = {1e-6, false, false};
    expect_pass(fwd_ln, &a, in, 3);
    ck_assert_ptr_null(in[1]->grad);
    a.no_gamma = a.no_beta = true;
    expect_pass(fwd_ln, &a, in, 1);
    free3(in);
}
END_TEST

START_TEST(layernorm_forward_values) {
    /* rows with a large mean: the two-pass variance keeps them normalised */
    int64_t sx[2] = {3, 7}, sw[1] = {7};
    gt_tensor *x = rnd(2, sx, false, -1, 1), *g = rnd(1, sw, false, 0.5, 1.5),
              *b = rnd(1, sw, false, -1, 1);
    for (int j = 0; j < 7; j++) x->data[7 + j] += 1000;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *y = gt_layernorm(&ctx, x, g, b, 1e-6);
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    for (int r = 0; r < 3; r++) {
        double mu = 0, var = 0;
        for (int j = 0; j < 7; j++) mu += x->data[r * 7 + j] / 7;
        for (int j = 0; j < 7; j++) var += pow(x->data[r * 7 + j] - mu, 2) / 7;
        for (int j = 0; j < 7; j++) {
            double want = (x->data[r * 7 + j] - mu) / sqrt(var + 1e-6) * g->data[j] + b->data[j];
            ck_assert_double_eq_tol(y->data[r * 7 + j], want, 1e-9);
        }
    }
    int64_t bad[1] = {6};
    gt_tensor *gb = gt_tensor_new(1, bad, false);
    ck_assert_ptr_null(gt_layernorm(&ctx, x, gb, NULL, 1e-6));
    ck_assert_ptr_nonnull(strstr(ctx.err, "layernorm: gamma [6]"));
    gt_ctx_free(&ctx);
    gt_tensor_free(gb);
    gt_tensor_free(x), gt_tensor_free(g), gt_tensor_free(b);
}
END_TEST

typedef struct {
    int64_t width, pool;
} pool_args;

static gt_tensor *fwd_pool(gt_ctx *ctx, gt_tensor **in, void *user) {
    pool_args *a = user;
    return gt_avgpool2d(ctx, in[0], a->width, a->pool);
}

START_TEST(avgpool_grads_and_values) {
    int64_t sx[3] = {2, 16, 3};
    gt_tensor *x = rnd(3, sx, true, -1, 1);
    pool_args a = {4, 2};
    expect_pass(fwd_pool, &a, &x, 1);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *y = gt_avgpool2d(&ctx, x, 4, 2);
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    ck_assert_int_eq(y->shape[1], 4);
    /* batch 1, cell (1, 0): tokens (2,0) (2,1) (3,0) (3,1) = 8, 9, 12, 13; channel 2 */
    const double *X = x->data + 16 * 3;
    double want = (X[8 * 3 + 2] + X[9 * 3 + 2] + X[12 * 3 + 2] + X[13 * 3 + 2]) / 4;
    ck_assert_double_eq_tol(y->data[(4 + 2) * 3 + 2], want, 1e-12);
    ck_assert_ptr_null(gt_avgpool2d(&ctx, x, 3, 2));
    ck_assert_ptr_nonnull(strstr(ctx.err, "W*W"));
    gt_ctx_free(&ctx);
    gt_tensor_free(x);
    /* a 5x5 grid pooled by 2: the last row and column are dropped (zero gradient there) */
    int64_t s5[3] = {1, 25, 2};
    x = rnd(3, s5, true, -1, 1);
    a = (pool_args){5, 2};
    expect_pass(fwd_pool, &a, &x, 1);
    for (int t = 20; t < 25; t++) ck_assert_double_eq(x->grad[t * 2], 0);
    gt_tensor_free(x);
}
END_TEST

typedef struct {
    const int32_t *pos;
    int64_t n;
} put_args;

static gt_tensor *fwd_put(gt_ctx *ctx, gt_tensor **in, void *user) {
    put_args *a = user;
    return gt_put_rows(ctx, in[0], in[1], a->pos, a->n);
}

START_TEST(put_rows_grads_and_errors) {
    int64_t sx[3] = {2, 5, 3}, ss[2] = {3, 3};
    gt_tensor *in[2] = {rnd(3, sx, true, -1, 1), rnd(2, ss, true, -1, 1)};
    static const int32_t pos[3] = {7, 1, 2};
    put_args a = {pos, 3};
    expect_pass(fwd_put, &a, in, 2);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *y = gt_put_rows(&ctx, in[0], in[1], pos, 3);
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    ck_assert_double_eq(y->data[7 * 3 + 1], in[1]->data[1]);  /* row 7 <- src row 0 */
    ck_assert_double_eq(y->data[3 * 3 + 2], in[0]->data[3 * 3 + 2]); /* row 3 untouched */
    static const int32_t rep[2] = {4, 4};
    ck_assert_ptr_null(gt_put_rows(&ctx, in[0], in[1], rep, 2));
    ck_assert_ptr_nonnull(strstr(ctx.err, "src [3,3] must be [2, 3]"));
    gt_ctx_reset(&ctx);
    int64_t s2[2] = {2, 3};
    gt_tensor *two = gt_tensor_new(2, s2, false);
    ck_assert_ptr_null(gt_put_rows(&ctx, in[0], two, rep, 2));
    ck_assert_ptr_nonnull(strstr(ctx.err, "position 4 (entry 1) repeated"));
    gt_ctx_free(&ctx);
    gt_tensor_free(two);
    gt_tensor_free(in[0]), gt_tensor_free(in[1]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("vit_f64");
    TCase *tc = tcase_create("vit_f64");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, layernorm_grads);
    tcase_add_test(tc, layernorm_without_or_frozen_params);
    tcase_add_test(tc, layernorm_forward_values);
    tcase_add_test(tc, avgpool_grads_and_values);
    tcase_add_test(tc, put_rows_grads_and_errors);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
