/* Gradient checks (f64 engine) for rmsnorm (all three scale forms, frozen scale) and rope
 * (full and partial rotation, linear scaling, per-batch non-monotonic positions); plus
 * large-tensor runs (threaded paths) checked against row-by-row and naive references. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/gradcheck.h"
#include "tests/check_main.h"

static unsigned rng = 23;

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


/* ---------------------------------------------------------------- rmsnorm */

typedef struct {
    double eps;
    bool add_one, no_w;
} rms_args;

static gt_tensor *fwd_rms(gt_ctx *ctx, gt_tensor **in, void *user) {
    rms_args *a = user;
    return gt_rmsnorm(ctx, in[0], a->no_w ? NULL : in[1], a->eps, a->add_one);
}

START_TEST(rmsnorm_add_one) {
    int64_t sx[3] = {2, 3, 8}, sw[1] = {8};
    /* w away from zero so that 1 + w differs per channel */
    gt_tensor *in[2] = {rnd(3, sx, true, -2, 2), rnd(1, sw, true, -0.6, 0.6)};
    rms_args a = {1e-6, true, false};
    expect_pass(fwd_rms, &a, in, 2);
    a.eps = 0.5; /* eps comparable to mean(x^2) */
    expect_pass(fwd_rms, &a, in, 2);
    gt_tensor_free(in[0]);
    gt_tensor_free(in[1]);
}
END_TEST

START_TEST(rmsnorm_plain_scale) {
    int64_t sx[2] = {5, 6}, sw[1] = {6};
    gt_tensor *in[2] = {rnd(2, sx, true, -1, 1), rnd(1, sw, true, 0.3, 1.7)};
    rms_args a = {1e-6, false, false};
    expect_pass(fwd_rms, &a, in, 2);
    gt_tensor_free(in[0]);
    gt_tensor_free(in[1]);
}
END_TEST

START_TEST(rmsnorm_without_scale) {
    int64_t sx[3] = {2, 2, 7};
    gt_tensor *x = rnd(3, sx, true, -3, 3);
    rms_args a = {1e-6, false, true};
    expect_pass(fwd_rms, &a, &x, 1);
    gt_tensor_free(x);
}
END_TEST

START_TEST(rmsnorm_frozen_scale_or_input) {
    int64_t sx[2] = {4, 5}, sw[1] = {5};
    gt_tensor *in[2] = {rnd(2, sx, true, -1, 1), rnd(1, sw, false, -0.5, 0.5)};
    rms_args a = {1e-6, true, false};
    expect_pass(fwd_rms, &a, in, 2);
    ck_assert_ptr_null(in[1]->grad);
    gt_tensor_free(in[0]);
    gt_tensor_free(in[1]);
    /* Frozen input, trainable scale: only dw is formed. */
    gt_tensor *in2[2] = {rnd(2, sx, false, -1, 1), rnd(1, sw, true, 0.5, 1.5)};
    a.add_one = false;
    expect_pass(fwd_rms, &a, in2, 2);
    ck_assert_ptr_null(in2[0]->grad);
    gt_tensor_free(in2[0]);
    gt_tensor_free(in2[1]);
}
END_TEST

/* Large input (threaded, banded dw partials) must agree with the op run on one row at a time
 * (single-threaded path), for y, dx and the summed dw. */
START_TEST(rmsnorm_large_matches_row_by_row) {
    int64_t rows = 700, d = 64, sx[2] = {rows, d}, sw[1] = {d}, s1[2] = {1, d};
    gt_tensor *x = rnd(2, sx, true, -2, 2), *w = rnd(1, sw, true, -0.5, 0.5);
    gt_tensor *seed = rnd(2, sx, false, -1, 1);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *y = gt_rmsnorm(&ctx, x, w, 1e-6, true);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(gt_backward_seed(&ctx, y, seed->data), GT_OK);
    double *dw_big = malloc((size_t)d * sizeof *dw_big), *dw_sum = calloc((size_t)d, sizeof *dw_sum);
    memcpy(dw_big, w->grad, (size_t)d * sizeof(double));
    worst_t wy = {0, -1}, wx = {0, -1}, ww = {0, -1};
    gt_ctx c1;
    gt_ctx_init(&c1, 1 << 16);
    for (int64_t r = 0; r < rows; r++) {
        gt_ctx_reset(&c1);
        gt_tensor *xr = gt_from_data(&c1, x->data + r * d, 2, s1, true);
        memset(w->grad, 0, (size_t)d * sizeof(double));
        gt_tensor *yr = gt_rmsnorm(&c1, xr, w, 1e-6, true);
        ck_assert_ptr_nonnull(yr);
        ck_assert_int_eq(gt_backward_seed(&c1, yr, seed->data + r * d), GT_OK);
        for (int64_t j = 0; j < d; j++) {
            track(&wy, r * d + j, y->data[r * d + j], yr->data[j]);
            track(&wx, r * d + j, x->grad[r * d + j], xr->grad[j]);
            dw_sum[j] += w->grad[j];
        }
    }
    gt_ctx_free(&c1);
    for (int64_t j = 0; j < d; j++) track(&ww, j, dw_big[j], dw_sum[j]);
    ASSERT_WORST(wy, 1e-14, "y");
    ASSERT_WORST(wx, 1e-13, "dx");
    ASSERT_WORST(ww, 1e-10, "dw");
    free(dw_big);
    free(dw_sum);
    gt_ctx_free(&ctx);
    gt_tensor_free(x);
    gt_tensor_free(w);
    gt_tensor_free(seed);
}
END_TEST

/* ---------------------------------------------------------------- rope */

typedef struct {
    const int32_t *pos;
    gt_rope_cfg cfg;
} rope_args;

static gt_tensor *fwd_rope(gt_ctx *ctx, gt_tensor **in, void *user) {
    rope_args *a = user;
    return gt_rope(ctx, in[0], a->pos, &a->cfg);
}

/* Batch 0 and batch 1 get different, non-monotonic positions (packed / shuffled tokens). */
static const int32_t pos6[6] = {5, 2, 9, 0, 1000, 3};

START_TEST(rope_full_rotation) {
    int64_t s[4] = {2, 3, 2, 8};
    gt_tensor *x = rnd(4, s, true, -1, 1);
    rope_args a = {pos6, {10000, 1, 0}};
    expect_pass(fwd_rope, &a, &x, 1);
    a.cfg.rotary_dims = 8; /* R = H explicitly: the same op */
    expect_pass(fwd_rope, &a, &x, 1);
    gt_tensor_free(x);
}
END_TEST

START_TEST(rope_partial_rotation_and_scaling) {
    int64_t s[4] = {2, 3, 3, 12};
    gt_tensor *x = rnd(4, s, true, -1, 1);
    rope_args a = {pos6, {1e6, 8, 4}};
    expect_pass(fwd_rope, &a, &x, 1);
    a.cfg = (gt_rope_cfg){10000, 2.5, 6};
    expect_pass(fwd_rope, &a, &x, 1);
    a.cfg.rotary_dims = 2;
    expect_pass(fwd_rope, &a, &x, 1);
    gt_tensor_free(x);
}
END_TEST

/* Gemma 3 style: rope on a q/k-normed tensor, gradient reaches the norm's scale. */
static gt_tensor *fwd_norm_rope(gt_ctx *ctx, gt_tensor **in, void *user) {
    rope_args *a = user;
    return gt_rope(ctx, gt_rmsnorm(ctx, in[0], in[1], 1e-6, true), a->pos, &a->cfg);
}

START_TEST(rope_after_rmsnorm) {
    int64_t s[4] = {2, 3, 2, 8}, sw[1] = {8};
    gt_tensor *in[2] = {rnd(4, s, true, -1, 1), rnd(1, sw, true, -0.5, 0.5)};
    rope_args a = {pos6, {10000, 1, 4}};
    expect_pass(fwd_norm_rope, &a, in, 2);
    gt_tensor_free(in[0]);
    gt_tensor_free(in[1]);
}
END_TEST

/* Threaded rope vs a naive double formula: forward rotation and the inverse-rotated gradient.
 * _i = 0: scattered positions (a sincos per token); 1: packed examples restarting at 3 (fewer
 * distinct positions than tokens: the table of one row per position). */
START_TEST(rope_large_vs_naive) {
    int64_t b = 2, t = 160, nh = 4, h = 32, r = 24, s[4] = {b, t, nh, h};
    gt_tensor *x = rnd(4, s, true, -1, 1), *seed = rnd(4, s, false, -1, 1);
    int32_t *pos = malloc((size_t)(b * t) * sizeof *pos);
    for (int64_t i = 0; i < b * t; i++) pos[i] = (int32_t)(_i == 0 ? (i * 7919) % 32768 : 3 + i % 45);
    gt_rope_cfg cfg = {1e6, 8, r};
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *y = gt_rope(&ctx, x, pos, &cfg);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(gt_backward_seed(&ctx, y, seed->data), GT_OK);
    worst_t wy = {0, -1}, wx = {0, -1};
    for (int64_t tok = 0; tok < b * t; tok++)
        for (int64_t n = 0; n < nh; n++)
            for (int64_t i = 0; i < h / 2; i++) {
                int64_t o = (tok * nh + n) * h + i, o2 = o + h / 2;
                double c = 1, sn = 0;
                if (i < r / 2) {
                    double th = pos[tok] * pow(1e6, -2.0 * (double)i / (double)h) / 8;
                    c = cos(th);
                    sn = sin(th);
                }
                track(&wy, o, y->data[o], x->data[o] * c - x->data[o2] * sn);
                track(&wy, o2, y->data[o2], x->data[o2] * c + x->data[o] * sn);
                track(&wx, o, x->grad[o], seed->data[o] * c + seed->data[o2] * sn);
                track(&wx, o2, x->grad[o2], seed->data[o2] * c - seed->data[o] * sn);
            }
    ASSERT_WORST(wy, 1e-12, "y");
    ASSERT_WORST(wx, 1e-12, "dx");
    gt_ctx_free(&ctx);
    free(pos);
    gt_tensor_free(x);
    gt_tensor_free(seed);
}
END_TEST

/* Random shapes (fixed seed) for both ops: rmsnorm in all forms, rope with random R and factor. */
START_TEST(random_shapes) {
    unsigned srng = 77;
    int32_t pos[64];
    for (int trial = 0; trial < 4; trial++) {
        int nd = 1 + (int)(gc_rand(&srng) * 3);
        int64_t sx[3];
        for (int i = 0; i < nd; i++) sx[i] = 1 + (int64_t)(gc_rand(&srng) * 5);
        gt_tensor *in[2] = {rnd(nd, sx, true, -2, 2), rnd(1, sx + nd - 1, true, -0.5, 1.5)};
        rms_args ra = {1e-6, trial % 2 == 0, trial == 3};
        expect_pass(fwd_rms, &ra, in, ra.no_w ? 1 : 2);
        gt_tensor_free(in[0]);
        gt_tensor_free(in[1]);

        int64_t s4[4] = {1 + (int64_t)(gc_rand(&srng) * 3), 1 + (int64_t)(gc_rand(&srng) * 4),
                         1 + (int64_t)(gc_rand(&srng) * 3), 2 * (1 + (int64_t)(gc_rand(&srng) * 5))};
        for (int i = 0; i < s4[0] * s4[1]; i++) pos[i] = (int32_t)(gc_rand(&srng) * 5000);
        rope_args a = {pos, {10000, 1 + 4 * gc_rand(&srng), 2 * (int64_t)(gc_rand(&srng) * (s4[3] / 2 + 1))}};
        gt_tensor *x = rnd(4, s4, true, -1, 1);
        expect_pass(fwd_rope, &a, &x, 1);
        gt_tensor_free(x);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("norm_f64");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, rmsnorm_add_one);
    tcase_add_test(tc, rmsnorm_plain_scale);
    tcase_add_test(tc, rmsnorm_without_scale);
    tcase_add_test(tc, rmsnorm_frozen_scale_or_input);
    tcase_add_test(tc, rmsnorm_large_matches_row_by_row);
    tcase_add_test(tc, rope_full_rotation);
    tcase_add_test(tc, rope_partial_rotation_and_scaling);
    tcase_add_test(tc, rope_after_rmsnorm);
    tcase_add_loop_test(tc, rope_large_vs_naive, 0, 2);
    tcase_add_test(tc, random_shapes);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
