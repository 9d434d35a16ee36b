/* Gradient checks (f64 engine) for add, mul (incl. broadcasting), scale, softcap, gelu, geglu,
 * softmax; plus large-tensor runs (threaded paths) checked against naive sums. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/gradcheck.h"
#include "tests/check_main.h"

static unsigned rng = 11;

static gt_tensor *rnd(int ndim, const int64_t *shape, bool req, double lo, double hi) {
    gt_tensor *t = gt_tensor_new(ndim, shape, req);
    ck_assert_ptr_nonnull(t);
    gc_fill_uniform(t, &rng, lo, hi);
    return t;
}

static void expect_pass(gc_forward_fn fn, void *user, gt_tensor **in, int n) {
    gc_result res;
    /* h near the eps^(1/3) optimum of central differences for O(1) inputs. The default 1e-6
     * suits bilinear ops; for tanh/exp/rsqrt its rounding noise (~1e-9 of the largest
     * gradient) exceeds what the 1e-7 tolerance allows the smallest elements. */
    gc_opts opts = {.h = 3e-5};
    int ok = gc_check(fn, user, in, n, &opts, &res);
    ck_assert_msg(ok, "%s", res.msg);
}


/* ---------------------------------------------------------------- add / mul */

static gt_tensor *fwd_add(gt_ctx *ctx, gt_tensor **in, void *user) { return gt_add(ctx, in[0], in[1]); }
static gt_tensor *fwd_mul(gt_ctx *ctx, gt_tensor **in, void *user) { return gt_mul(ctx, in[0], in[1]); }

/* x + x and x * x: one tensor as both operands must collect both contributions. */
static gt_tensor *fwd_add_self(gt_ctx *ctx, gt_tensor **in, void *user) { return gt_add(ctx, in[0], in[0]); }
static gt_tensor *fwd_mul_self(gt_ctx *ctx, gt_tensor **in, void *user) { return gt_mul(ctx, in[0], in[0]); }

typedef struct {
    int na, nb;
    int64_t a[4], b[4];
} bshape;

static const bshape binary_shapes[] = {
    {2, 2, {3, 5}, {3, 5}},        /* equal */
    {3, 1, {2, 3, 4}, {4}},        /* per-channel vector */
    {3, 2, {2, 3, 4}, {3, 4}},     /* per-position matrix */
    {4, 3, {2, 1, 3, 2}, {1, 3, 2}},
    {2, 0, {4, 3}, {0}},           /* scalar b (no axes) */
    {1, 1, {7}, {7}},
};

START_TEST(add_mul_shapes_and_broadcasts) {
    for (size_t k = 0; k < sizeof binary_shapes / sizeof binary_shapes[0]; k++) {
        const bshape *s = &binary_shapes[k];
        gt_tensor *in[2] = {rnd(s->na, s->a, true, -1, 1), rnd(s->nb, s->b, true, -1.5, 1.5)};
        expect_pass(fwd_add, NULL, in, 2);
        expect_pass(fwd_mul, NULL, in, 2);
        gt_tensor_free(in[0]);
        gt_tensor_free(in[1]);
    }
}
END_TEST

START_TEST(add_mul_same_tensor_twice) {
    int64_t s[2] = {3, 4};
    gt_tensor *x = rnd(2, s, true, -2, 2);
    expect_pass(fwd_add_self, NULL, &x, 1);
    expect_pass(fwd_mul_self, NULL, &x, 1);
    gt_tensor_free(x);
}
END_TEST

START_TEST(add_mul_frozen_operand) {
    int64_t sa[3] = {2, 3, 4}, sb[1] = {4};
    gt_tensor *in[2] = {rnd(3, sa, true, -1, 1), rnd(1, sb, false, -1, 1)};
    expect_pass(fwd_add, NULL, in, 2);
    expect_pass(fwd_mul, NULL, in, 2);
    ck_assert_ptr_null(in[1]->grad);
    /* Frozen a, trainable broadcast b. */
    gt_tensor_free(in[0]);
    gt_tensor_free(in[1]);
    gt_tensor *in2[2] = {rnd(3, sa, false, -1, 1), rnd(1, sb, true, -1, 1)};
    expect_pass(fwd_add, NULL, in2, 2);
    expect_pass(fwd_mul, NULL, in2, 2);
    ck_assert_ptr_null(in2[0]->grad);
    gt_tensor_free(in2[0]);
    gt_tensor_free(in2[1]);
}
END_TEST

/* Large broadcasts run the threaded reductions: narrow b (per-thread partial rows) and wide b
 * (column blocks). Their b gradients must equal naive sums. */
START_TEST(broadcast_reduction_large) {
    int64_t shapes[2][2] = {{4096, 24}, {6, 6000}};
    for (int k = 0; k < 2; k++) {
        int64_t *sa = shapes[k], sb[1] = {sa[1]};
        gt_tensor *a = rnd(2, sa, true, -1, 1), *b = rnd(1, sb, true, -1, 1);
        gt_tensor *seed = rnd(2, sa, false, -1, 1);
        for (int op = 0; op < 2; op++) {
            memset(a->grad, 0, (size_t)a->size * sizeof(double));
            memset(b->grad, 0, (size_t)b->size * sizeof(double));
            gt_ctx ctx;
            gt_ctx_init(&ctx, 0);
            gt_tensor *y = op ? gt_mul(&ctx, a, b) : gt_add(&ctx, a, b);
            ck_assert_ptr_nonnull(y);
            ck_assert_int_eq(gt_backward_seed(&ctx, y, seed->data), GT_OK);
            worst_t wb = {0, -1}, wa = {0, -1}, wy = {0, -1};
            for (int64_t j = 0; j < sa[1]; j++) {
                double ref = 0;
                for (int64_t o = 0; o < sa[0]; o++)
                    ref += seed->data[o * sa[1] + j] * (op ? a->data[o * sa[1] + j] : 1.0);
                track(&wb, j, b->grad[j], ref);
            }
            for (int64_t i = 0; i < a->size; i++) {
                double bv = b->data[i % sa[1]];
                track(&wa, i, a->grad[i], seed->data[i] * (op ? bv : 1.0));
                track(&wy, i, y->data[i], op ? a->data[i] * bv : a->data[i] + bv);
            }
            ASSERT_WORST(wb, 1e-11, "db");
            ASSERT_WORST(wa, 1e-15, "da");
            ASSERT_WORST(wy, 1e-15, "y");
            gt_ctx_free(&ctx);
        }
        gt_tensor_free(a);
        gt_tensor_free(b);
        gt_tensor_free(seed);
    }
}
END_TEST

static gt_tensor *fwd_geglu(gt_ctx *ctx, gt_tensor **in, void *user);

/* Random shapes (fixed seed): every op; b takes 0..all of a's trailing axes. */
static gt_tensor *fwd_unary(gt_ctx *ctx, gt_tensor **in, void *user) {
    switch (*(int *)user) {
    case 0: return gt_scale(ctx, in[0], 0.6);
    case 1: return gt_softcap(ctx, in[0], 1.2);
    case 2: return gt_gelu(ctx, in[0]);
    default: return gt_softmax(ctx, in[0]);
    }
}

START_TEST(random_shapes_all_ops) {
    unsigned srng = 2024;
    for (int trial = 0; trial < 6; trial++) {
        int na = 2 + trial % 2, nb = trial % (na + 1); /* b: scalar up to all of a's axes */
        int64_t sa[3];
        for (int i = 0; i < na; i++) sa[i] = 1 + (int64_t)(gc_rand(&srng) * 5);
        sa[na - 1] += 1; /* softmax over a single logit is constant: a vacuous check */
        gt_tensor *in[2] = {rnd(na, sa, true, -2, 2), rnd(nb, sa + na - nb, true, -1.5, 1.5)};
        expect_pass(fwd_add, NULL, in, 2);
        expect_pass(fwd_mul, NULL, in, 2);
        for (int op = 0; op < 4; op++) expect_pass(fwd_unary, &op, in, 1);
        gt_tensor *g2[2] = {in[0], rnd(na, sa, true, -1, 1)};
        expect_pass(fwd_geglu, NULL, g2, 2);
        gt_tensor_free(g2[1]);
        gt_tensor_free(in[0]);
        gt_tensor_free(in[1]);
    }
}
END_TEST

/* ---------------------------------------------------------------- unary */

static gt_tensor *fwd_scale(gt_ctx *ctx, gt_tensor **in, void *user) {
    return gt_scale(ctx, in[0], *(double *)user);
}
static gt_tensor *fwd_softcap(gt_ctx *ctx, gt_tensor **in, void *user) {
    return gt_softcap(ctx, in[0], *(double *)user);
}
static gt_tensor *fwd_gelu(gt_ctx *ctx, gt_tensor **in, void *user) { return gt_gelu(ctx, in[0]); }
static gt_tensor *fwd_geglu(gt_ctx *ctx, gt_tensor **in, void *user) { return gt_geglu(ctx, in[0], in[1]); }
static gt_tensor *fwd_softmax(gt_ctx *ctx, gt_tensor **in, void *user) { return gt_softmax(ctx, in[0]); }

START_TEST(scale_grad) {
    int64_t s[3] = {2, 3, 5};
    gt_tensor *x = rnd(3, s, true, -1, 1);
    double f = -1.7;
    expect_pass(fwd_scale, &f, &x, 1);
    for (int i = 0; i < 30; i++) ck_assert(x->grad[i] != 0);
    gt_tensor_free(x);
}
END_TEST

START_TEST(softcap_grad_near_cap) {
    int64_t s[2] = {4, 6};
    double caps[2] = {1.5, 30.0};
    for (int k = 0; k < 2; k++) {
        /* x spans [-2 cap, 2 cap]: the saturating part of tanh, not its linear middle. */
        gt_tensor *x = rnd(2, s, true, -2 * caps[k], 2 * caps[k]);
        expect_pass(fwd_softcap, &caps[k], &x, 1);
        gt_tensor_free(x);
    }
}
END_TEST

START_TEST(gelu_grad) {
    int64_t s[2] = {5, 8};
    gt_tensor *x = rnd(2, s, true, -4, 4);
    expect_pass(fwd_gelu, NULL, &x, 1);
    gt_tensor_free(x);
}
END_TEST

START_TEST(geglu_grad) {
    int64_t s[3] = {2, 3, 7};
    gt_tensor *in[2] = {rnd(3, s, true, -3, 3), rnd(3, s, true, -1, 1)};
    expect_pass(fwd_geglu, NULL, in, 2);
    gt_tensor_free(in[1]);
    in[1] = rnd(3, s, false, -1, 1); /* frozen up */
    expect_pass(fwd_geglu, NULL, in, 2);
    ck_assert_ptr_null(in[1]->grad);
    gt_tensor_free(in[0]);
    gt_tensor_free(in[1]);
}
END_TEST

START_TEST(softmax_grad) {
    int64_t s1[2] = {4, 7}, s2[3] = {2, 3, 5}, s3[1] = {9};
    gt_tensor *xs[3] = {rnd(2, s1, true, -3, 3), rnd(3, s2, true, -2, 2), rnd(1, s3, true, -1, 1)};
    for (int k = 0; k < 3; k++) {
        expect_pass(fwd_softmax, NULL, &xs[k], 1);
        gt_tensor_free(xs[k]);
    }
    /* Large logits: the max-subtraction keeps both passes finite and exact. */
    gt_tensor *x = rnd(2, s1, true, -3, 3);
    for (int64_t i = 0; i < x->size; i++) x->data[i] += 800;
    expect_pass(fwd_softmax, NULL, &x, 1);
    gt_tensor_free(x);
}
END_TEST

/* Threaded softmax/gelu/softcap/geglu on a large tensor vs per-element naive formulas. */
START_TEST(large_unary_vs_naive) {
    int64_t s[2] = {300, 160};
    gt_tensor *x = rnd(2, s, true, -4, 4), *u = rnd(2, s, true, -1, 1), *seed = rnd(2, s, false, -1, 1);
    int64_t n = x->size, d = s[1];
    const double k0 = sqrt(2 / M_PI), k1 = 0.044715;
    for (int op = 0; op < 4; op++) {
        memset(x->grad, 0, (size_t)n * sizeof(double));
        memset(u->grad, 0, (size_t)n * sizeof(double));
        gt_ctx ctx;
        gt_ctx_init(&ctx, 0);
        gt_tensor *y = op == 0 ? gt_softmax(&ctx, x) : op == 1 ? gt_gelu(&ctx, x)
                     : op == 2 ? gt_softcap(&ctx, x, 2.5) : gt_geglu(&ctx, x, u);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(gt_backward_seed(&ctx, y, seed->data), GT_OK);
        worst_t wy = {0, -1}, wx = {0, -1}, wu = {0, -1};
        for (int64_t r = 0; r < s[0]; r++) {
            const double *xr = x->data + r * d, *g = seed->data + r * d;
            double m = -INFINITY, sum = 0, dot = 0;
            for (int64_t j = 0; j < d; j++) m = fmax(m, xr[j]);
            for (int64_t j = 0; j < d; j++) sum += exp(xr[j] - m);
            for (int64_t j = 0; j < d; j++) dot += g[j] * exp(xr[j] - m) / sum;
            for (int64_t j = 0; j < d; j++) {
                int64_t i = r * d + j;
                double v = xr[j], yv, dv;
                double t = tanh(k0 * (v + k1 * v * v * v));
                double gl = 0.5 * v * (1 + t);
                double gd = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k0 * (1 + 3 * k1 * v * v);
                if (op == 0) {
                    yv = exp(v - m) / sum;
                    dv = yv * (g[j] - dot);
                } else if (op == 1) {
                    yv = gl;
                    dv = g[j] * gd;
                } else if (op == 2) {
                    yv = 2.5 * tanh(v / 2.5);
                    dv = g[j] * (1 - tanh(v / 2.5) * tanh(v / 2.5));
                } else {
                    yv = gl * u->data[i];
                    dv = g[j] * u->data[i] * gd;
                    track(&wu, i, u->grad[i], g[j] * gl);
                }
                track(&wy, i, y->data[i], yv);
                track(&wx, i, x->grad[i], dv);
            }
        }
        ASSERT_WORST(wy, 1e-13, "y");
        ASSERT_WORST(wx, 1e-13, "dx");
        ASSERT_WORST(wu, 1e-13, "dup");
        gt_ctx_free(&ctx);
    }
    gt_tensor_free(x);
    gt_tensor_free(u);
    gt_tensor_free(seed);
}
END_TEST

/* A chain of ops through a view, so gradients flow into the root of a reshape. */
static gt_tensor *fwd_chain(gt_ctx *ctx, gt_tensor **in, void *user) {
    int64_t s2[2] = {6, 4};
    gt_tensor *v = gt_reshape(ctx, in[0], 2, s2);
    gt_tensor *h = gt_geglu(ctx, gt_scale(ctx, v, 0.8), gt_add(ctx, v, in[1]));
    return gt_softmax(ctx, gt_softcap(ctx, gt_mul(ctx, h, in[1]), 2.0));
}

START_TEST(op_chain_through_view) {
    int64_t sx[3] = {2, 3, 4}, sb[1] = {4};
    gt_tensor *in[2] = {rnd(3, sx, true, -2, 2), rnd(1, sb, true, -1.5, 1.5)};
    expect_pass(fwd_chain, NULL, in, 2);
    gt_tensor_free(in[0]);
    gt_tensor_free(in[1]);
}
END_TEST

/* Backwards that store a fresh gradient (gt_grad_w) instead of adding: inputs that are step
 * tensors (a leaf's gradient always exists), used twice, as whole views and as overlapping and
 * disjoint parts of one root. A missed element or a wrong store shows up as a gradient error. */
static gt_tensor *fwd_fresh(gt_ctx *ctx, gt_tensor **in, void *user) {
    int which = *(int *)user;
    int64_t s2[2] = {4, 6};
    gt_tensor *x = gt_reshape(ctx, gt_scale(ctx, in[0], 1.3), 2, s2); /* a whole view */
    gt_tensor *a = gt_slice_rows(ctx, x, 0, 2), *b = gt_slice_rows(ctx, x, which == 3 ? 1 : 2, 2);
    gt_tensor *w = gt_scale(ctx, in[1], 0.7);
    gt_tensor *y = which == 0   ? gt_geglu(ctx, x, x)
                   : which == 1 ? gt_add(ctx, x, x)
                   : which == 4 ? gt_rmsnorm(ctx, gt_add(ctx, x, gt_geglu(ctx, x, x)), w, 1e-6, true)
                                : gt_geglu(ctx, a, b);
    /* nonlinear, so every element's gradient differs; times w so that w always has a gradient */
    return gt_mul(ctx, gt_mul(ctx, y, gt_scale(ctx, y, 0.5)), w);
}

START_TEST(fresh_gradients_stored_not_added) {
    int64_t sx[3] = {2, 3, 4}, sw[1] = {6};
    gt_tensor *in[2] = {rnd(3, sx, true, -2, 2), rnd(1, sw, true, -1, 1)};
    for (int which = 0; which < 5; which++) expect_pass(fwd_fresh, &which, in, 2);
    gt_tensor_free(in[0]);
    gt_tensor_free(in[1]);
}
END_TEST

static gt_tensor *fwd_dropout(gt_ctx *ctx, gt_tensor **in, void *user) {
    /* dropout then a product, so the check sees the mask through a nonlinear path */
    gt_tensor *d = gt_dropout(ctx, in[0], 0.3, 42);
    return gt_mul(ctx, d, in[1]);
}

START_TEST(dropout_gradient_and_statistics) {
    int64_t sh[3] = {4, 5, 6};
    gt_tensor *in[2] = {rnd(3, sh, true, -1, 1), rnd(3, sh, true, -1, 1)};
    expect_pass(fwd_dropout, NULL, in, 2);
    /* dropped elements get exactly zero gradient, kept ones 1/(1-p) times the upstream */
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t big[1] = {200000};
    gt_tensor *x = gt_tensor_new(1, big, false);
    for (int64_t i = 0; i < big[0]; i++) x->data[i] = 1;
    gt_tensor *y = gt_dropout(&ctx, x, 0.25, 7);
    int64_t zeros = 0;
    double sum = 0;
    for (int64_t i = 0; i < big[0]; i++) {
        zeros += y->data[i] == 0;
        sum += y->data[i];
        ck_assert(y->data[i] == 0 || fabs(y->data[i] - 1 / 0.75) < 1e-12);
    }
    ck_assert_msg(fabs((double)zeros / (double)big[0] - 0.25) < 0.005, "dropped %lld", (long long)zeros);
    ck_assert(fabs(sum / (double)big[0] - 1) < 0.01); /* inverted dropout keeps the mean */
    /* same seed, same mask; another seed, another mask */
    gt_tensor *y2 = gt_dropout(&ctx, x, 0.25, 7), *y3 = gt_dropout(&ctx, x, 0.25, 8);
    ck_assert(memcmp(y->data, y2->data, sizeof(gt_real) * (size_t)big[0]) == 0);
    ck_assert(memcmp(y->data, y3->data, sizeof(gt_real) * (size_t)big[0]) != 0);
    ck_assert_ptr_eq(gt_dropout(&ctx, x, 0, 7), x);
    ck_assert_ptr_null(gt_dropout(&ctx, x, 1.0, 7));
    ck_assert_msg(strstr(ctx.err, "dropout") && strstr(ctx.err, "[200000]"), "%s", ctx.err);
    gt_ctx_free(&ctx);
    gt_tensor_free(x);
    gt_tensor_free(in[0]);
    gt_tensor_free(in[1]);
}
END_TEST

static gt_tensor *fwd_dropout_rows(gt_ctx *ctx, gt_tensor **in, void *user) {
    (void)user;
    gt_tensor *d = gt_dropout_rows(ctx, in[0], 0.3, 42, 5, 6, 10);
    return gt_mul(ctx, d, in[1]);
}

/* A batch cut short (rows of 3 of 5 positions, 2 values each) draws the uncut batch's mask. */
START_TEST(dropout_rows_of_a_cut_batch) {
    int64_t sh[3] = {4, 3, 2};
    gt_tensor *in[2] = {rnd(3, sh, true, -1, 1), rnd(3, sh, true, -1, 1)};
    expect_pass(fwd_dropout_rows, NULL, in, 2);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t sfull[3] = {4, 5, 2};
    gt_tensor *full = gt_tensor_new(3, sfull, false), *cut = gt_tensor_new(3, sh, false);
    for (int64_t i = 0; i < full->size; i++) full->data[i] = 1;
    for (int64_t i = 0; i < cut->size; i++) cut->data[i] = 1;
    gt_tensor *yf = gt_dropout_at(&ctx, full, 0.5, 9, 7), *yc = gt_dropout_rows(&ctx, cut, 0.5, 9, 7, 6, 10);
    ck_assert_msg(yf && yc, "%s", ctx.err);
    int dropped = 0;
    for (int r = 0; r < 4; r++)
        for (int k = 0; k < 6; k++) {
            ck_assert(yc->data[r * 6 + k] == yf->data[r * 10 + k]);
            dropped += yc->data[r * 6 + k] == 0;
        }
    ck_assert(dropped > 0 && dropped < 24);
    ck_assert_ptr_null(gt_dropout_rows(&ctx, cut, 0.5, 9, 0, 6, 5));
    ck_assert_msg(strstr(ctx.err, "dropout") && strstr(ctx.err, "[4,3,2]"), "%s", ctx.err);
    gt_ctx_free(&ctx);
    gt_tensor_free(full);
    gt_tensor_free(cut);
    gt_tensor_free(in[0]);
    gt_tensor_free(in[1]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("elem_f64");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, add_mul_shapes_and_broadcasts);
    tcase_add_test(tc, add_mul_same_tensor_twice);
    tcase_add_test(tc, add_mul_frozen_operand);
    tcase_add_test(tc, broadcast_reduction_large);
    tcase_add_test(tc, random_shapes_all_ops);
    tcase_add_test(tc, scale_grad);
    tcase_add_test(tc, softcap_grad_near_cap);
    tcase_add_test(tc, gelu_grad);
    tcase_add_test(tc, geglu_grad);
    tcase_add_test(tc, softmax_grad);
    tcase_add_test(tc, large_unary_vs_naive);
    tcase_add_test(tc, op_chain_through_view);
    tcase_add_test(tc, fresh_gradients_stored_not_added);
    tcase_add_test(tc, dropout_gradient_and_statistics);
    tcase_add_test(tc, dropout_rows_of_a_cut_batch);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
