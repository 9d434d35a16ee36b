/* fp32 engine: forward values of the elementwise and norm ops against double-precision
 * references written here, numerical edge cases (large logits, gelu's negative tail, rope at
 * large positions), and the error messages for bad inputs. */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "util/half.h"
#include "tests/check_main.h"

static unsigned rng = 99;

static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return (double)(rng >> 8) / 16777216.0;
}

static gt_tensor *filled(gt_ctx *ctx, int ndim, const int64_t *shape, double lo, double hi) {
    gt_tensor *t = gt_empty(ctx, ndim, shape);
    ck_assert_ptr_nonnull(t);
    for (int64_t i = 0; i < t->size; i++) t->data[i] = (float)(lo + (hi - lo) * urand());
    return t;
}

static double gelu_ref(double x) {
    return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

/* ---------------------------------------------------------------- values */

START_TEST(rmsnorm_matches_double_reference) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t d = 640, rows = 4, sx[2] = {rows, d}, sw[1] = {d};
    gt_tensor *x = filled(&ctx, 2, sx, -1, 1), *w = filled(&ctx, 1, sw, -0.5, 1.5);
    /* rows at very different magnitudes: the normalisation must remove the scale */
    double mag[4] = {1, 1e3, 1e-3, 37};
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < d; j++) x->data[r * d + j] *= (float)mag[r];
    for (int form = 0; form < 3; form++) { /* 1 + w, w, none */
        gt_tensor *y = gt_rmsnorm(&ctx, x, form == 2 ? NULL : w, 1e-6, form == 0);
        ck_assert_ptr_nonnull(y);
        for (int64_t r = 0; r < rows; r++) {
            double ss = 0;
            for (int64_t j = 0; j < d; j++) ss += (double)x->data[r * d + j] * x->data[r * d + j];
            double rs = 1 / sqrt(ss / d + 1e-6);
            for (int64_t j = 0; j < d; j++) {
                double s = form == 0 ? 1 + (double)w->data[j] : form == 1 ? w->data[j] : 1;
                double ref = x->data[r * d + j] * rs * s;
                ck_assert_msg(fabs(y->data[r * d + j] - ref) <= 2e-6 * (fabs(ref) + 1e-2),
                              "form %d row %lld col %lld: %.9g vs %.9g", form, (long long)r,
                              (long long)j, y->data[r * d + j], ref);
            }
        }
    }
    /* eps dominates a tiny row: y = x / sqrt(eps) for mean(x^2) << eps */
    int64_t s1[2] = {1, 4};
    gt_tensor *tiny = gt_zeros(&ctx, 2, s1);
    tiny->data[0] = 1e-5f;
    gt_tensor *yt = gt_rmsnorm(&ctx, tiny, NULL, 0.01, false);
    ck_assert_ptr_nonnull(yt);
    ck_assert_float_eq_tol(yt->data[0], 1e-5f / sqrtf(0.01f + 2.5e-11f), 1e-10f);
    gt_ctx_free(&ctx);
}
END_TEST

START_TEST(gelu_known_values_and_negative_tail) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    /* exact values of the tanh-approximate GELU (computed in double precision) */
    const double xs[6] = {0, 1, -1, 2, -3, 0.5};
    const double ys[6] = {0, 0.8411919906082768, -0.15880800939172324, 1.954597694087775,
                          -0.0036373920817729943, 0.34571400982514394};
    int64_t s[1] = {6};
    gt_tensor *x = gt_empty(&ctx, 1, s);
    for (int i = 0; i < 6; i++) x->data[i] = (float)xs[i];
    gt_tensor *y = gt_gelu(&ctx, x);
    ck_assert_ptr_nonnull(y);
    for (int i = 0; i < 6; i++)
        ck_assert_msg(fabs(y->data[i] - ys[i]) <= 1e-6 * fabs(ys[i]) + 1e-12,
                      "gelu(%g) = %.9g, expected %.9g", xs[i], y->data[i], ys[i]);
    /* Tail: gelu(-5) ~ -2.3e-7; fp32 1 + tanh(u) would be off by tens of percent here. */
    int64_t st[1] = {4};
    gt_tensor *xt = gt_empty(&ctx, 1, st);
    const float tail[4] = {-5, -6, -4.5f, 7};
    memcpy(xt->data, tail, sizeof tail);
    gt_tensor *yt = gt_gelu(&ctx, xt);
    for (int i = 0; i < 4; i++) {
        double ref = gelu_ref(tail[i]);
        ck_assert_msg(fabs(yt->data[i] - ref) <= 1e-5 * fabs(ref), "gelu(%g) = %.9g, expected %.9g",
                      tail[i], yt->data[i], ref);
    }
    /* geglu = gelu(gate) * up */
    int64_t sg[2] = {3, 50};
    gt_tensor *g = filled(&ctx, 2, sg, -4, 4), *u = filled(&ctx, 2, sg, -2, 2);
    gt_tensor *gg = gt_geglu(&ctx, g, u);
    ck_assert_ptr_nonnull(gg);
    for (int64_t i = 0; i < g->size; i++) {
        double ref = gelu_ref(g->data[i]) * u->data[i];
        ck_assert_double_eq_tol(gg->data[i], ref, 2e-6 * (fabs(ref) + 1e-3));
    }
    gt_ctx_free(&ctx);
}
END_TEST

START_TEST(softmax_rows_sum_to_one_and_are_stable) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t s[2] = {5, 300};
    gt_tensor *x = filled(&ctx, 2, s, -8, 8);
    /* row 1: huge logits; row 2: huge negative; row 3: one masked (-inf) entry */
    for (int64_t j = 0; j < 300; j++) {
        x->data[300 + j] = 1000.0f - (float)(j % 7);
        x->data[600 + j] = -1000.0f + (float)(j % 5);
    }
    x->data[900 + 17] = -INFINITY;
    for (int64_t j = 0; j < 300; j++) x->data[1200 + j] = -INFINITY; /* row 4: all masked */
    gt_tensor *y = gt_softmax(&ctx, x);
    ck_assert_ptr_nonnull(y);
    for (int64_t r = 0; r < 4; r++) {
        const float *xr = x->data + r * 300;
        double m = -INFINITY, sum = 0, ysum = 0;
        for (int j = 0; j < 300; j++) m = fmax(m, xr[j]);
        for (int j = 0; j < 300; j++) sum += exp((double)xr[j] - m);
        for (int j = 0; j < 300; j++) {
            double ref = exp((double)xr[j] - m) / sum;
            ck_assert_msg(isfinite(y->data[r * 300 + j]), "row %lld not finite", (long long)r);
            ck_assert_double_eq_tol(y->data[r * 300 + j], ref, 1e-6 * ref + 1e-9);
            ysum += y->data[r * 300 + j];
        }
        ck_assert_double_eq_tol(ysum, 1.0, 1e-5);
    }
    ck_assert(y->data[900 + 17] == 0);
    for (int64_t j = 0; j < 300; j++) ck_assert(y->data[1200 + j] == 0);
    gt_ctx_free(&ctx);
}
END_TEST

START_TEST(softcap_scale_add_mul_values) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t sa[3] = {2, 3, 4}, sb[2] = {3, 4};
    gt_tensor *a = filled(&ctx, 3, sa, -90, 90), *b = filled(&ctx, 2, sb, -2, 2);
    gt_tensor *c = gt_softcap(&ctx, a, 30), *sc = gt_scale(&ctx, a, -0.25);
    gt_tensor *ad = gt_add(&ctx, a, b), *mu = gt_mul(&ctx, a, b);
    ck_assert(gt_ok(&ctx));
    for (int64_t i = 0; i < a->size; i++) {
        double av = a->data[i], bv = b->data[i % 12], ref = 30 * tanh(av / 30);
        ck_assert_double_eq_tol(c->data[i], ref, 2e-6 * fabs(ref) + 1e-6);
        ck_assert(fabs(c->data[i]) < 30.0f);
        ck_assert_float_eq(sc->data[i], (float)(av * -0.25));
        ck_assert_float_eq(ad->data[i], (float)(av + bv));
        ck_assert_float_eq(mu->data[i], a->data[i] * b->data[i % 12]);
    }
    gt_ctx_free(&ctx);
}
END_TEST

/* ---------------------------------------------------------------- rope */

static double rope_theta(int32_t p, int64_t i, int64_t h, double base, double scale) {
    return (double)p * pow(base, -2.0 * (double)i / (double)h) / scale;
}

START_TEST(rope_position_zero_is_identity_and_norms_are_kept) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t s[4] = {2, 3, 4, 16};
    gt_tensor *x = filled(&ctx, 4, s, -2, 2);
    int32_t zeros[6] = {0}, pos[6] = {17, 3, 250, 1, 0, 4096};
    gt_rope_cfg cfg = {10000, 1, 0};
    gt_tensor *y0 = gt_rope(&ctx, x, zeros, &cfg), *y = gt_rope(&ctx, x, pos, &cfg);
    ck_assert_ptr_nonnull(y0);
    ck_assert_ptr_nonnull(y);
    for (int64_t i = 0; i < x->size; i++) ck_assert(y0->data[i] == x->data[i]);
    for (int64_t v = 0; v < x->size / 16; v++)
        for (int64_t i = 0; i < 8; i++) {
            const float *xa = x->data + v * 16, *ya = y->data + v * 16;
            double nx = hypot(xa[i], xa[i + 8]), ny = hypot(ya[i], ya[i + 8]);
            ck_assert_double_eq_tol(ny, nx, 1e-6 * nx + 1e-12);
        }
    gt_ctx_free(&ctx);
}
END_TEST

/* At position 30000 the angle must be formed in double: an fp32 angle is off by up to ~1e-3 rad
 * there. The check below also proves that such an implementation would fail this tolerance. */
START_TEST(rope_large_positions_match_double_reference) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t h = 64, s[4] = {2, 2, 3, h};
    gt_tensor *x = filled(&ctx, 4, s, -1, 1);
    int32_t pos[4] = {30000, 32767, 29999, 31000};
    gt_rope_cfg cfgs[3] = {{10000, 1, 0}, {1e6, 8, 0}, {1e6, 1, 16}};
    for (int k = 0; k < 3; k++) {
        gt_rope_cfg cfg = cfgs[k];
        int64_t hr = (cfg.rotary_dims ? cfg.rotary_dims : h) / 2;
        gt_tensor *y = gt_rope(&ctx, x, pos, &cfg);
        ck_assert_ptr_nonnull(y);
        double worst = 0, worst_f32_angle = 0;
        for (int64_t v = 0; v < x->size / h; v++) {
            int32_t p = pos[v / 3];
            const float *xa = x->data + v * h, *ya = y->data + v * h;
            for (int64_t i = 0; i < h / 2; i++) {
                double c = 1, sn = 0, cf = 1, sf = 0;
                if (i < hr) {
                    double th = rope_theta(p, i, h, cfg.base, cfg.scale);
                    c = cos(th);
                    sn = sin(th);
                    /* what a float pipeline (fp32 inv_freq, fp32 product) would use */
                    float inv = (float)(pow(cfg.base, -2.0 * (double)i / (double)h) / cfg.scale);
                    float thf = (float)p * inv;
                    cf = cos((double)thf);
                    sf = sin((double)thf);
                }
                double a = xa[i], b = xa[i + h / 2], n = hypot(a, b);
                double r0 = a * c - b * sn, r1 = b * c + a * sn;
                double e = fmax(fabs(ya[i] - r0), fabs(ya[i + h / 2] - r1)) / n;
                double ef = fmax(fabs(a * cf - b * sf - r0), fabs(b * cf + a * sf - r1)) / n;
                worst = fmax(worst, e);
                worst_f32_angle = fmax(worst_f32_angle, ef);
                if (i >= hr) { /* unrotated dims pass through exactly */
                    ck_assert(ya[i] == xa[i]);
                    ck_assert(ya[i + h / 2] == xa[i + h / 2]);
                }
            }
        }
        ck_assert_msg(worst < 1e-5, "cfg %d: worst relative error %.3g", k, worst);
        ck_assert_msg(worst_f32_angle > 1e-4, "cfg %d: an fp32 angle would pass too (%.3g): the "
                      "test does not discriminate", k, worst_f32_angle);
    }
    gt_ctx_free(&ctx);
}
END_TEST

START_TEST(rope_linear_scaling_divides_positions) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t s[4] = {1, 3, 2, 8};
    gt_tensor *x = filled(&ctx, 4, s, -1, 1);
    int32_t p8[3] = {800, 8, 24000}, p1[3] = {100, 1, 3000};
    gt_rope_cfg c8 = {1e6, 8, 0}, c1 = {1e6, 1, 0};
    gt_tensor *y8 = gt_rope(&ctx, x, p8, &c8), *y1 = gt_rope(&ctx, x, p1, &c1);
    ck_assert(gt_ok(&ctx));
    for (int64_t i = 0; i < x->size; i++) ck_assert_float_eq_tol(y8->data[i], y1->data[i], 1e-6f);
    gt_ctx_free(&ctx);
}
END_TEST

/* fp32 gradients through the threaded paths agree with their f64-checked formulas. */
START_TEST(rmsnorm_rope_f32_backward_sane) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t s[4] = {2, 64, 4, 64}, sw[1] = {64};
    gt_tensor *x = filled(&ctx, 4, s, -1, 1);
    x->requires_grad = true;
    gt_tensor *w = gt_tensor_new(1, sw, true);
    int32_t pos[128];
    for (int i = 0; i < 128; i++) pos[i] = (i * 37) % 128;
    gt_rope_cfg cfg = {10000, 1, 0};
    gt_tensor *y = gt_rope(&ctx, gt_rmsnorm(&ctx, x, w, 1e-6, true), pos, &cfg);
    ck_assert_ptr_nonnull(y);
    /* L = sum(y^2)/2 with w = 0 (s = 1). Rope keeps norms, so per row of D = 64 values
     * L_row = D ms / (2 (ms + eps)), ms = mean(x^2): dL/dx_j = x_j eps / (ms + eps)^2 (nearly 0:
     * RMSNorm is scale invariant but for eps), and dL/dw_j = sum over rows of n_j^2. */
    ck_assert_int_eq(gt_backward_seed(&ctx, y, y->data), GT_OK);
    double dw_ref = 0, dw_sum = 0;
    for (int64_t r = 0; r < x->size / 64; r++) {
        const float *xr = x->data + r * 64;
        double ms = 0;
        for (int j = 0; j < 64; j++) ms += (double)xr[j] * xr[j] / 64;
        dw_ref += 64 * ms / (ms + 1e-6);
        for (int j = 0; j < 64; j++) {
            double ref = xr[j] * 1e-6 / ((ms + 1e-6) * (ms + 1e-6));
            ck_assert_double_eq_tol(x->grad[r * 64 + j], ref, 3e-6);
        }
    }
    for (int j = 0; j < 64; j++) dw_sum += w->grad[j];
    ck_assert_double_eq_tol(dw_sum, dw_ref, 1e-5 * dw_ref);
    gt_tensor_free(w);
    gt_ctx_free(&ctx);
}
END_TEST

/* gt_geglu_bf16: the forward is geglu's exactly; the backward is geglu's on gate and up rounded to
 * bf16, bit for bit, on both gradients (banded, in widened pieces), one gradient only, and gate
 * and up being one tensor. n crosses the parallel threshold and is no multiple of the pieces. */
static void geglu_bf16_case(bool gate_grad, bool same) {
    gt_ctx a, b;
    gt_ctx_init(&a, 0);
    gt_ctx_init(&b, 0);
    int64_t s[2] = {3, 23001};
    gt_tensor *g = filled(&a, 2, s, -6, 6), *u = same ? g : filled(&a, 2, s, -2, 2);
    gt_tensor *gr = gt_empty(&b, 2, s), *ur = same ? gr : gt_empty(&b, 2, s);
    for (int64_t i = 0; i < g->size; i++) {
        gr->data[i] = gt_bf16_to_f32(gt_f32_to_bf16(g->data[i]));
        ur->data[i] = gt_bf16_to_f32(gt_f32_to_bf16(u->data[i]));
    }
    g->requires_grad = gr->requires_grad = gate_grad;
    u->requires_grad = ur->requires_grad = true;
    gt_ctx c; /* geglu on the fp32 inputs, no tape */
    gt_ctx_init(&c, 0);
    c.grad_enabled = false;
    gt_tensor *y = gt_geglu_bf16(&a, g, u), *yr = gt_geglu(&b, gr, ur), *y32 = gt_geglu(&c, g, u);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_nonnull(yr);
    ck_assert_ptr_nonnull(y32);
    ck_assert_mem_eq(y->data, y32->data, (size_t)y->size * sizeof(float));
    float *seed = malloc((size_t)y->size * sizeof(float));
    for (int64_t i = 0; i < y->size; i++) seed[i] = (float)(urand() - 0.5);
    ck_assert_int_eq(gt_backward_seed(&a, y, seed), GT_OK);
    ck_assert_int_eq(gt_backward_seed(&b, yr, seed), GT_OK);
    ck_assert_mem_eq(u->grad, ur->grad, (size_t)u->size * sizeof(float));
    if (gate_grad && !same) ck_assert_mem_eq(g->grad, gr->grad, (size_t)g->size * sizeof(float));
    free(seed);
    gt_ctx_free(&a);
    gt_ctx_free(&b);
    gt_ctx_free(&c);
}

START_TEST(geglu_bf16_backward_is_geglu_on_rounded_inputs) {
    geglu_bf16_case(true, false);
    geglu_bf16_case(false, false);
    geglu_bf16_case(true, true);
}
END_TEST

/* ---------------------------------------------------------------- errors */

static void expect_err(gt_ctx *ctx, const void *ret, int status, int n, ...) {
    ck_assert_ptr_null(ret);
    ck_assert_msg(ctx->status == status, "status %d, expected %d (%s)", ctx->status, status, ctx->err);
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *want = va_arg(ap, const char *);
        ck_assert_msg(strstr(ctx->err, want), "message \"%s\" lacks \"%s\"", ctx->err, want);
    }
    va_end(ap);
    gt_ctx_reset(ctx);
}

START_TEST(elementwise_errors_name_op_and_shapes) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t s23[2] = {2, 3}, s2[1] = {2}, s32[2] = {3, 2}, s423[3] = {4, 2, 3};
#define T(shape) gt_zeros(&ctx, (int)(sizeof shape / sizeof shape[0]), shape)
    expect_err(&ctx, gt_add(&ctx, T(s23), T(s2)), GT_ERR_SHAPE, 3, "add", "[2,3]", "[2]");
    expect_err(&ctx, gt_add(&ctx, T(s23), NULL), GT_ERR_ARG, 2, "add", "NULL");
    expect_err(&ctx, gt_mul(&ctx, T(s23), T(s423)), GT_ERR_SHAPE, 3, "mul", "[2,3]", "[4,2,3]");
    expect_err(&ctx, gt_mul(&ctx, T(s23), T(s32)), GT_ERR_SHAPE, 3, "mul", "[2,3]", "[3,2]");
    expect_err(&ctx, gt_scale(&ctx, NULL, 2), GT_ERR_ARG, 2, "scale", "NULL");
    expect_err(&ctx, gt_scale(&ctx, T(s23), INFINITY), GT_ERR_ARG, 3, "scale", "inf", "[2,3]");
    expect_err(&ctx, gt_softcap(&ctx, T(s23), 0), GT_ERR_ARG, 3, "softcap", "cap", "[2,3]");
    expect_err(&ctx, gt_softcap(&ctx, T(s23), -30), GT_ERR_ARG, 2, "softcap", "-30");
    expect_err(&ctx, gt_softcap(&ctx, NULL, 30), GT_ERR_ARG, 2, "softcap", "NULL");
    expect_err(&ctx, gt_gelu(&ctx, NULL), GT_ERR_ARG, 2, "gelu", "NULL");
    expect_err(&ctx, gt_geglu(&ctx, T(s23), T(s32)), GT_ERR_SHAPE, 3, "geglu", "[2,3]", "[3,2]");
    expect_err(&ctx, gt_geglu(&ctx, NULL, T(s32)), GT_ERR_ARG, 2, "geglu", "NULL");
    expect_err(&ctx, gt_softmax(&ctx, gt_zeros(&ctx, 0, NULL)), GT_ERR_SHAPE, 2, "softmax", "[]");
    expect_err(&ctx, gt_softmax(&ctx, NULL), GT_ERR_ARG, 2, "softmax", "NULL");
    /* Sticky: after a failure, a valid op returns NULL and keeps the first message. */
    ck_assert_ptr_null(gt_add(&ctx, T(s23), T(s2)));
    ck_assert_ptr_null(gt_gelu(&ctx, T(s23)));
    ck_assert_msg(strstr(ctx.err, "add"), "message: %s", ctx.err);
#undef T
    gt_ctx_free(&ctx);
}
END_TEST

START_TEST(norm_errors_name_op_and_shapes) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t sx[2] = {2, 4}, sw5[1] = {5}, sw14[2] = {1, 4}, sx0[2] = {2, 0};
    int64_t s3[3] = {2, 3, 8}, s_odd[4] = {1, 2, 1, 7}, s4[4] = {1, 2, 3, 8};
    int32_t pos[2] = {0, 1};
    gt_rope_cfg ok = {10000, 1, 0};
    gt_tensor *x = gt_zeros(&ctx, 2, sx);
    expect_err(&ctx, gt_rmsnorm(&ctx, x, gt_zeros(&ctx, 1, sw5), 1e-6, true), GT_ERR_SHAPE, 3,
               "rmsnorm", "[5]", "[2,4]");
    x = gt_zeros(&ctx, 2, sx);
    expect_err(&ctx, gt_rmsnorm(&ctx, x, gt_zeros(&ctx, 2, sw14), 1e-6, false), GT_ERR_SHAPE, 3,
               "rmsnorm", "[1,4]", "[2,4]");
    expect_err(&ctx, gt_rmsnorm(&ctx, gt_zeros(&ctx, 2, sx0), NULL, 1e-6, false), GT_ERR_SHAPE, 2,
               "rmsnorm", "[2,0]");
    expect_err(&ctx, gt_rmsnorm(&ctx, gt_zeros(&ctx, 2, sx), NULL, -1, false), GT_ERR_ARG, 3,
               "rmsnorm", "eps", "[2,4]");
    expect_err(&ctx, gt_rmsnorm(&ctx, NULL, NULL, 1e-6, false), GT_ERR_ARG, 2, "rmsnorm", "NULL");

    expect_err(&ctx, gt_rope(&ctx, gt_zeros(&ctx, 3, s3), pos, &ok), GT_ERR_SHAPE, 3, "rope",
               "[2,3,8]", "[B,T,heads,H]");
    expect_err(&ctx, gt_rope(&ctx, gt_zeros(&ctx, 4, s_odd), pos, &ok), GT_ERR_SHAPE, 3, "rope",
               "H=7", "[1,2,1,7]");
    gt_rope_cfg bad = {10000, 1, 3};
    expect_err(&ctx, gt_rope(&ctx, gt_zeros(&ctx, 4, s4), pos, &bad), GT_ERR_SHAPE, 3, "rope",
               "rotary_dims 3", "[1,2,3,8]");
    bad.rotary_dims = 10;
    expect_err(&ctx, gt_rope(&ctx, gt_zeros(&ctx, 4, s4), pos, &bad), GT_ERR_SHAPE, 2, "rope",
               "rotary_dims 10");
    bad.rotary_dims = -2;
    expect_err(&ctx, gt_rope(&ctx, gt_zeros(&ctx, 4, s4), pos, &bad), GT_ERR_SHAPE, 2, "rope",
               "rotary_dims -2");
    expect_err(&ctx, gt_rope(&ctx, gt_zeros(&ctx, 4, s4), NULL, &ok), GT_ERR_ARG, 3, "rope",
               "positions", "[1,2,3,8]");
    bad = (gt_rope_cfg){0, 1, 0};
    expect_err(&ctx, gt_rope(&ctx, gt_zeros(&ctx, 4, s4), pos, &bad), GT_ERR_ARG, 3, "rope", "base",
               "[1,2,3,8]");
    bad = (gt_rope_cfg){10000, 0, 0};
    expect_err(&ctx, gt_rope(&ctx, gt_zeros(&ctx, 4, s4), pos, &bad), GT_ERR_ARG, 3, "rope",
               "scale", "[1,2,3,8]");
    bad = (gt_rope_cfg){10000, -8, 0};
    expect_err(&ctx, gt_rope(&ctx, gt_zeros(&ctx, 4, s4), pos, &bad), GT_ERR_ARG, 2, "rope", "-8");
    expect_err(&ctx, gt_rope(&ctx, gt_zeros(&ctx, 4, s4), pos, NULL), GT_ERR_ARG, 2, "rope", "cfg");
    expect_err(&ctx, gt_rope(&ctx, NULL, pos, &ok), GT_ERR_ARG, 2, "rope", "NULL");
    gt_ctx_free(&ctx);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_f32");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, rmsnorm_matches_double_reference);
    tcase_add_test(tc, gelu_known_values_and_negative_tail);
    tcase_add_test(tc, softmax_rows_sum_to_one_and_are_stable);
    tcase_add_test(tc, softcap_scale_add_mul_values);
    tcase_add_test(tc, rope_position_zero_is_identity_and_norms_are_kept);
    tcase_add_test(tc, rope_large_positions_match_double_reference);
    tcase_add_test(tc, rope_linear_scaling_divides_positions);
    tcase_add_test(tc, rmsnorm_rope_f32_backward_sane);
    tcase_add_test(tc, geglu_bf16_backward_is_geglu_on_rounded_inputs);
    tcase_add_test(tc, elementwise_errors_name_op_and_shapes);
    tcase_add_test(tc, norm_errors_name_op_and_shapes);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
