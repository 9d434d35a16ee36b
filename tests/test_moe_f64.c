/* Gradient checks (f64 engine) for the MoE ops (autograd/ops_moe.h): routing, grouped up and down
 * projections, and the whole block; the grouped forward against a dense every-expert reference
 * (KerasHub's formulation); experts nobody chose get no gradient. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/gradcheck.h"
#include "tests/check_main.h"

enum { T = 5, D = 4, E = 6, K = 2, FE = 3 };

static unsigned rng = 23;

static gt_tensor *rnd(int ndim, const int64_t *shape, bool req, double lo, double hi) {
    gt_tensor *t = gt_tensor_new(ndim, shape, req);
    ck_assert_ptr_nonnull(t);
    gc_fill_uniform(t, &rng, lo, hi);
    return t;
}

static gt_tensor *rnd2(int64_t a, int64_t b, bool req, double lo, double hi) {
    int64_t s[2] = {a, b};
    return rnd(2, s, req, lo, hi);
}

static void expect_pass(gc_forward_fn fn, void *user, gt_tensor **in, int n) {
    gc_result res;
    gc_opts opts = {.h = 3e-5};
    ck_assert_msg(gc_check(fn, user, in, n, &opts, &res), "%s", res.msg);
}

static void free_all(gt_tensor **t, int n) {
    for (int i = 0; i < n; i++) gt_tensor_free(t[i]);
}

/* in: logits, scale */
static gt_tensor *fwd_route(gt_ctx *ctx, gt_tensor **in, void *user) {
    const gt_moe_plan *p;
    return gt_moe_route(ctx, in[0], in[1], K, &p);
}

static gt_tensor *fwd_route_unscaled(gt_ctx *ctx, gt_tensor **in, void *user) {
    const gt_moe_plan *p;
    return gt_moe_route(ctx, in[0], NULL, K, &p);
}

START_TEST(route_grad) {
    int64_t se[1] = {E};
    gt_tensor *in[2] = {rnd2(T, E, true, -2, 2), rnd(1, se, true, 0.5, 1.5)};
    expect_pass(fwd_route, NULL, in, 2);
    expect_pass(fwd_route_unscaled, NULL, in, 1);
    free_all(in, 2);
}
END_TEST

/* in: x, gate, up; the plan from fixed logits (user) */
static gt_tensor *fwd_up(gt_ctx *ctx, gt_tensor **in, void *user) {
    const gt_moe_plan *p;
    gt_moe_route(ctx, user, NULL, K, &p);
    return gt_ok(ctx) ? gt_moe_up(ctx, in[0], in[1], in[2], p) : NULL;
}

/* in: h, down, w */
static gt_tensor *fwd_down(gt_ctx *ctx, gt_tensor **in, void *user) {
    const gt_moe_plan *p;
    gt_moe_route(ctx, user, NULL, K, &p);
    return gt_ok(ctx) ? gt_moe_down(ctx, in[0], in[1], in[2], p) : NULL;
}

START_TEST(up_and_down_grad) {
    gt_tensor *logits = rnd2(T, E, false, -2, 2);
    gt_tensor *up[3] = {rnd2(T, D, true, -1, 1), rnd2(E * FE, D, true, -1, 1), rnd2(E * FE, D, true, -1, 1)};
    expect_pass(fwd_up, logits, up, 3);
    gt_tensor *dn[3] = {rnd2(T * K, FE, true, -1, 1), rnd2(E * D, FE, true, -1, 1), rnd2(T, K, true, 0, 1)};
    expect_pass(fwd_down, logits, dn, 3);
    free_all(up, 3);
    free_all(dn, 3);
    gt_tensor_free(logits);
}
END_TEST

/* The whole routed bank: in: x, router [E, D], scale [E], gate, up, down */
static gt_tensor *block(gt_ctx *ctx, gt_tensor **in, const gt_moe_plan **p) {
    gt_tensor *w = gt_moe_route(ctx, gt_matmul(ctx, in[0], in[1], false, true), in[2], K, p);
    return gt_ok(ctx) ? gt_moe_down(ctx, gt_moe_up(ctx, in[0], in[3], in[4], *p), in[5], w, *p) : NULL;
}

static gt_tensor *fwd_block(gt_ctx *ctx, gt_tensor **in, void *user) {
    const gt_moe_plan *p;
    return block(ctx, in, &p);
}

static void make_block(gt_tensor **in, bool req) {
    int64_t se[1] = {E};
    in[0] = rnd2(T, D, req, -1, 1);
    in[1] = rnd2(E, D, req, -2, 2);
    in[2] = rnd(1, se, req, 0.5, 1.5);
    in[3] = rnd2(E * FE, D, req, -1, 1);
    in[4] = rnd2(E * FE, D, req, -1, 1);
    in[5] = rnd2(E * D, FE, req, -1, 1);
}

START_TEST(block_grad) {
    gt_tensor *in[6];
    make_block(in, true);
    expect_pass(fwd_block, NULL, in, 6);
    free_all(in, 6);
}
END_TEST

static double gelu(double x) { return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }

/* Dense reference (KerasHub Gemma4MoEBlock): every expert on every token, combined with a [T, E]
 * dispatch matrix holding the renormalised top-k probabilities times per_expert_scale. */
START_TEST(grouped_equals_dense_and_unchosen_get_nothing) {
    gt_tensor *in[6];
    make_block(in, true);
    /* x > 0, router rows > 0 except the last expert's (zero): it can never be chosen */
    gc_fill_uniform(in[0], &rng, 0.1, 1);
    gc_fill_uniform(in[1], &rng, 0.5, 2);
    memset(in[1]->data + (E - 1) * D, 0, D * sizeof(gt_real));
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    const gt_moe_plan *p;
    gt_tensor *y = block(&ctx, in, &p);
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    double worst = 0;
    bool used[E] = {false};
    for (int64_t t = 0; t < T; t++) {
        double z[E], zmax = -1e300, Z = 0, pr[E];
        for (int e = 0; e < E; e++) {
            z[e] = 0;
            for (int d = 0; d < D; d++) z[e] += in[0]->data[t * D + d] * in[1]->data[e * D + d];
            zmax = fmax(zmax, z[e]);
        }
        for (int e = 0; e < E; e++) Z += pr[e] = exp(z[e] - zmax);
        int top[K];
        for (int j = 0; j < K; j++) {
            int b = -1;
            for (int e = 0; e < E; e++)
                if ((j == 0 || (e != top[0])) && (b < 0 || pr[e] > pr[b])) b = e;
            top[j] = b;
        }
        double s = (pr[top[0]] + pr[top[1]]) / Z;
        for (int d = 0; d < D; d++) {
            double acc = 0;
            for (int j = 0; j < K; j++) {
                int e = top[j];
                ck_assert_int_eq(p->idx[t * K + j], e);
                used[e] = true;
                double o = 0;
                for (int f = 0; f < FE; f++) {
                    double g = 0, u = 0;
                    for (int c = 0; c < D; c++) {
                        g += in[0]->data[t * D + c] * in[3]->data[(e * FE + f) * D + c];
                        u += in[0]->data[t * D + c] * in[4]->data[(e * FE + f) * D + c];
                    }
                    o += gelu(g) * u * in[5]->data[(e * D + d) * FE + f];
                }
                acc += pr[e] / Z / s * in[2]->data[e] * o;
            }
            worst = fmax(worst, fabs(acc - y->data[t * D + d]));
        }
    }
    ck_assert_msg(worst < 1e-12, "grouped vs dense: %.3g", worst);
    gt_tensor *sum = gt_reshape(&ctx, y, 1, (int64_t[]){T * D});
    ck_assert_int_eq(gt_backward_seed(&ctx, sum, (gt_real[T * D]){[0 ... T * D - 1] = 1}), GT_OK);
    int unused = 0;
    for (int e = 0; e < E; e++) {
        double gsum = 0;
        for (int64_t i = 0; i < FE * D; i++) gsum += fabs(in[3]->grad[e * FE * D + i]) + fabs(in[4]->grad[e * FE * D + i]);
        for (int64_t i = 0; i < D * FE; i++) gsum += fabs(in[5]->grad[e * D * FE + i]);
        gsum += fabs(in[2]->grad[e]);
        ck_assert_msg((gsum > 0) == used[e], "expert %d: used %d, gradient mass %g", e, used[e], gsum);
        unused += !used[e];
    }
    ck_assert_int_ge(unused, 1);
    gt_ctx_free(&ctx);
    free_all(in, 6);
}
END_TEST

START_TEST(bad_arguments_fail_cleanly) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *l = rnd2(T, E, false, -1, 1);
    const gt_moe_plan *p;
    ck_assert_ptr_null(gt_moe_route(&ctx, l, NULL, E + 1, &p));
    ck_assert(strstr(ctx.err, "moe_route") != NULL);
    gt_ctx_reset(&ctx);
    gt_moe_route(&ctx, l, NULL, K, &p);
    gt_tensor *x = rnd2(T, D, false, -1, 1), *bad = rnd2(E * FE, D + 1, false, -1, 1);
    ck_assert_ptr_null(gt_moe_up(&ctx, x, bad, bad, p));
    ck_assert(strstr(ctx.err, "moe_up") != NULL);
    gt_ctx_free(&ctx);
    gt_tensor_free(l);
    gt_tensor_free(x);
    gt_tensor_free(bad);
}
END_TEST

int main(void) {
    Suite *s = suite_create("moe_f64");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, route_grad);
    tcase_add_test(tc, up_and_down_grad);
    tcase_add_test(tc, block_grad);
    tcase_add_test(tc, grouped_equals_dense_and_unchosen_get_nothing);
    tcase_add_test(tc, bad_arguments_fail_cleanly);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
