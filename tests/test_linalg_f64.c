/* Gradient checks (f64 engine) for matmul, transpose, reshape/slice views, sum, mean, embedding. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "tests/gradcheck.h"
#include "tests/check_main.h"

static unsigned rng = 7;

static gt_tensor *randn(int ndim, const int64_t *shape, bool req) {
    gt_tensor *t = gt_tensor_new(ndim, shape, req);
    gc_fill_uniform(t, &rng, -1, 1);
    return t;
}

static void expect_pass(gc_forward_fn fn, void *user, gt_tensor **in, int n) {
    gc_result res;
    gc_opts opts = {0};
    int ok = gc_check(fn, user, in, n, &opts, &res);
    ck_assert_msg(ok, "%s", res.msg);
}

typedef struct { bool ta, tb; } mm_args;

static gt_tensor *fwd_matmul(gt_ctx *ctx, gt_tensor **in, void *user) {
    mm_args *a = user;
    return gt_matmul(ctx, in[0], in[1], a->ta, a->tb);
}

START_TEST(matmul_2d_all_transposes) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int64_t sa[2] = {ta ? 4 : 3, ta ? 3 : 4}, sb[2] = {tb ? 5 : 4, tb ? 4 : 5};
            gt_tensor *in[2] = {randn(2, sa, true), randn(2, sb, true)};
            mm_args args = {ta, tb};
            expect_pass(fwd_matmul, &args, in, 2);
            gt_tensor_free(in[0]);
            gt_tensor_free(in[1]);
        }
}
END_TEST

START_TEST(matmul_batched_and_shared_weight) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int64_t sa[3] = {2, ta ? 4 : 3, ta ? 3 : 4};
            int64_t sb3[3] = {2, tb ? 5 : 4, tb ? 4 : 5}, sb2[2] = {tb ? 5 : 4, tb ? 4 : 5};
            mm_args args = {ta, tb};
            gt_tensor *in[2] = {randn(3, sa, true), randn(3, sb3, true)};
            expect_pass(fwd_matmul, &args, in, 2);
            gt_tensor_free(in[1]);
            in[1] = randn(2, sb2, true); /* weight shared by both batches */
            expect_pass(fwd_matmul, &args, in, 2);
            gt_tensor_free(in[0]);
            gt_tensor_free(in[1]);
        }
}
END_TEST

START_TEST(matmul_frozen_weight_gets_no_gradient) {
    int64_t sa[3] = {2, 3, 4}, sb[2] = {4, 5};
    gt_tensor *in[2] = {randn(3, sa, true), randn(2, sb, false)};
    mm_args args = {false, false};
    expect_pass(fwd_matmul, &args, in, 2);
    ck_assert_ptr_null(in[1]->grad);
    gt_tensor_free(in[0]);
    gt_tensor_free(in[1]);
}
END_TEST

START_TEST(matmul_matches_naive_product) {
    int64_t sa[2] = {3, 4}, sb[2] = {5, 4};
    gt_tensor *a = randn(2, sa, false), *b = randn(2, sb, false);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *c = gt_matmul(&ctx, a, b, false, true);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->shape[0], 3);
    ck_assert_int_eq(c->shape[1], 5);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++) {
            double s = 0;
            for (int k = 0; k < 4; k++) s += a->data[i * 4 + k] * b->data[j * 4 + k];
            ck_assert_double_eq_tol(c->data[i * 5 + j], s, 1e-12);
        }
    gt_ctx_free(&ctx);
    gt_tensor_free(a);
    gt_tensor_free(b);
}
END_TEST

/* gt_gemm on skinny shapes (a dimension <= 16: split into one band per thread), every
 * transposition, alpha and beta, against the naive sum; leading dimensions wider than the
 * operands, so a band's offset along the wrong axis would show. */
START_TEST(skinny_gemm_bands_match_naive) {
    static const int shapes[4][3] = {{600, 4, 700}, {4, 900, 500}, {700, 500, 4}, {3, 5, 40000}};
    gt_threads_set(2);
    for (int sh = 0; sh < 4; sh++)
        for (int tr = 0; tr < 4; tr++) {
            int m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
            bool ta = tr & 1, tb = tr & 2;
            int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 1;
            int64_t na = (int64_t)(ta ? k : m) * lda, nb = (int64_t)(tb ? n : k) * ldb, nc = (int64_t)m * ldc;
            double *a = malloc((size_t)na * sizeof *a), *b = malloc((size_t)nb * sizeof *b);
            double *c = malloc((size_t)nc * sizeof *c), *c0 = malloc((size_t)nc * sizeof *c0);
            ck_assert(a && b && c && c0);
            for (int64_t i = 0; i < na; i++) a[i] = (double)((i * 7919) % 23) / 23 - 0.5;
            for (int64_t i = 0; i < nb; i++) b[i] = (double)((i * 104729) % 19) / 19 - 0.5;
            for (int64_t i = 0; i < nc; i++) c[i] = c0[i] = (double)(i % 13) / 13;
            gt_gemm(ta, tb, m, n, k, 0.75, a, lda, b, ldb, 0.5, c, ldc);
            double worst = 0;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j += (n > 64 ? 7 : 1)) {
                    double acc = 0;
                    for (int q = 0; q < k; q++)
                        acc += (ta ? a[(int64_t)q * lda + i] : a[(int64_t)i * lda + q]) *
                               (tb ? b[(int64_t)j * ldb + q] : b[(int64_t)q * ldb + j]);
                    double want = 0.75 * acc + 0.5 * c0[(int64_t)i * ldc + j], d = fabs(c[(int64_t)i * ldc + j] - want);
                    worst = d > worst ? d : worst;
                }
            for (int i = 0; i < m; i++) ck_assert(c[(int64_t)i * ldc + n] == c0[(int64_t)i * ldc + n]); /* padding */
            ck_assert_msg(worst < 1e-9, "shape %d trans %d: worst %g", sh, tr, worst);
            free(a), free(b), free(c), free(c0);
        }
    gt_threads_set(0);
}
END_TEST

static gt_tensor *fwd_transpose(gt_ctx *ctx, gt_tensor **in, void *user) {
    int *ax = user;
    return gt_transpose(ctx, in[0], ax[0], ax[1]);
}

START_TEST(transpose_axes) {
    int64_t s[4] = {2, 3, 4, 5};
    gt_tensor *x = randn(4, s, true);
    int pairs[][2] = {{1, 2}, {0, 3}, {-1, -2}, {2, 0}};
    for (int p = 0; p < 4; p++) expect_pass(fwd_transpose, pairs[p], &x, 1);
    /* And the values land where the permutation says. */
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *y = gt_transpose(&ctx, x, 1, 2);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->shape[1], 4);
    ck_assert_int_eq(y->shape[2], 3);
    ck_assert(y->data[((1 * 4 + 3) * 3 + 2) * 5 + 4] == x->data[((1 * 3 + 2) * 4 + 3) * 5 + 4]);
    gt_ctx_free(&ctx);
    gt_tensor_free(x);
}
END_TEST

/* A view chain: reshape, slice rows, then a product, so gradients must reach the root. */
static gt_tensor *fwd_views(gt_ctx *ctx, gt_tensor **in, void *user) {
    int64_t s2[2] = {6, 4};
    gt_tensor *r = gt_reshape(ctx, in[0], 2, s2);
    gt_tensor *sl = gt_slice_rows(ctx, r, 1, 4);
    gt_tensor *p = gt_matmul(ctx, sl, in[1], false, false);
    return gt_matmul(ctx, p, gt_slice_rows(ctx, r, 2, 3), false, false);
}

START_TEST(views_route_gradients_to_root) {
    int64_t sx[3] = {2, 3, 4}, sw[2] = {4, 3};
    gt_tensor *in[2] = {randn(3, sx, true), randn(2, sw, true)};
    expect_pass(fwd_views, NULL, in, 2);
    gt_tensor_free(in[0]);
    gt_tensor_free(in[1]);
}
END_TEST

static gt_tensor *fwd_sum_sq(gt_ctx *ctx, gt_tensor **in, void *user) {
    /* sum(x @ x^T) and mean(x @ x^T), stacked through a product to get a 2-element output */
    gt_tensor *p = gt_matmul(ctx, in[0], in[0], false, true);
    gt_tensor *s = user ? gt_mean(ctx, p) : gt_sum(ctx, p);
    int64_t one[2] = {1, 1};
    return gt_matmul(ctx, gt_reshape(ctx, s, 2, one), gt_reshape(ctx, s, 2, one), false, false);
}

START_TEST(sum_and_mean) {
    int64_t s[2] = {3, 4};
    gt_tensor *x = randn(2, s, true);
    expect_pass(fwd_sum_sq, NULL, &x, 1);
    expect_pass(fwd_sum_sq, (void *)1, &x, 1);
    gt_tensor_free(x);
}
END_TEST

static gt_tensor *fwd_embed(gt_ctx *ctx, gt_tensor **in, void *user) {
    static const int32_t ids[7] = {3, 0, 3, 5, 1, 3, 0}; /* repeats must accumulate */
    gt_tensor *e = gt_embedding(ctx, in[0], ids, 7);
    return gt_matmul(ctx, e, in[1], false, false);
}

START_TEST(embedding_scatter_add) {
    int64_t st[2] = {6, 4}, sw[2] = {4, 2};
    gt_tensor *in[2] = {randn(2, st, true), randn(2, sw, true)};
    expect_pass(fwd_embed, NULL, in, 2);
    /* Row 2 and 4 are never gathered: their gradient must stay exactly zero. */
    for (int j = 0; j < 4; j++) {
        ck_assert(in[0]->grad[2 * 4 + j] == 0);
        ck_assert(in[0]->grad[4 * 4 + j] == 0);
    }
    gt_tensor_free(in[0]);
    gt_tensor_free(in[1]);
}
END_TEST

/* A deliberately broken op: y = 2x whose backward has a missing factor (or a flipped sign). */
static void broken_backward(gt_ctx *ctx, gt_node *node) {
    int mode = *(int *)node->saved;
    gt_real *dx = gt_grad(ctx, node->in[0]);
    const gt_real *dy = gt_grad(ctx, node->out);
    for (int64_t i = 0; i < node->out->size; i++) dx[i] += (mode ? -2 : 1) * dy[i];
}

static gt_tensor *fwd_broken(gt_ctx *ctx, gt_tensor **in, void *user) {
    gt_tensor *x = in[0];
    gt_tensor *y = gt_op_out(ctx, x->ndim, x->shape, &x, 1);
    for (int64_t i = 0; i < x->size; i++) y->data[i] = 2 * x->data[i];
    gt_record(ctx, "broken", broken_backward, y, &x, 1, user, 0); /* reads no values */
    return y;
}

START_TEST(gradcheck_catches_a_wrong_gradient) {
    int64_t s[2] = {3, 4};
    gt_tensor *x = randn(2, s, true);
    gc_result res;
    gc_opts opts = {0};
    for (int mode = 0; mode < 2; mode++) {
        ck_assert_msg(!gc_check(fwd_broken, &mode, &x, 1, &opts, &res),
                      "a backward with %s passed the check", mode ? "a flipped sign" : "a missing factor");
        ck_assert(res.max_err > 0.1);
    }
    gt_tensor_free(x);
}
END_TEST

int main(void) {
    Suite *s = suite_create("linalg_f64");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, matmul_2d_all_transposes);
    tcase_add_test(tc, matmul_batched_and_shared_weight);
    tcase_add_test(tc, matmul_frozen_weight_gets_no_gradient);
    tcase_add_test(tc, matmul_matches_naive_product);
    tcase_add_test(tc, skinny_gemm_bands_match_naive);
    tcase_add_test(tc, transpose_axes);
    tcase_add_test(tc, views_route_gradients_to_root);
    tcase_add_test(tc, sum_and_mean);
    tcase_add_test(tc, embedding_scatter_add);
    tcase_add_test(tc, gradcheck_catches_a_wrong_gradient);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
