/* Gradient checks (f64 engine) for the audio encoder's ops: activations, clamp, GLU, LayerNorm
 * without bias, the channels-last conv2d (strided, padded, with invalid time steps), the causal
 * depthwise conv1d, and chunked local attention (padded keys, a query with no valid key, T not a
 * multiple of the chunk); plus forward values of conv2d and local attention against direct
 * reference loops. */
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

static void free_all(gt_tensor **t, int n) {
    for (int i = 0; i < n; i++) gt_tensor_free(t[i]);
}

typedef struct {
    int kind;
} act_args;

static gt_tensor *fwd_act(gt_ctx *ctx, gt_tensor **in, void *user) {
    switch (((act_args *)user)->kind) {
    case 0: return gt_relu(ctx, in[0]);
    case 1: return gt_silu(ctx, in[0]);
    case 2: return gt_softplus(ctx, in[0]);
    case 3: return gt_clamp(ctx, in[0], -0.7, 0.9);
    case 4: return gt_glu(ctx, in[0]);
    default: return gt_layernorm_nobias(ctx, in[0], in[1], 1e-6);
    }
}

START_TEST(activations_glu_layernorm) {
    int64_t sx[3] = {2, 3, 8}, sg[1] = {8};
    for (int kind = 0; kind < 6; kind++) {
        gt_tensor *in[2] = {rnd(3, sx, true, -2, 2), rnd(1, sg, true, 0.5, 1.5)};
        /* keep relu/clamp inputs away from their kinks, where differences are one-sided */
        for (int64_t i = 0; i < in[0]->size; i++)
            if (fabs(in[0]->data[i]) < 0.05 || fabs(in[0]->data[i] + 0.7) < 0.05 ||
                fabs(in[0]->data[i] - 0.9) < 0.05)
                in[0]->data[i] += 0.2;
        act_args a = {kind};
        expect_pass(fwd_act, &a, in, kind == 5 ? 2 : 1);
        free_all(in, 2);
    }
}
END_TEST

typedef struct {
    gt_conv2d_cfg c;
    const uint8_t *valid;
} conv_args;

static gt_tensor *fwd_conv(gt_ctx *ctx, gt_tensor **in, void *user) {
    conv_args *a = user;
    return gt_conv2d_nhwc(ctx, in[0], in[1], &a->c, a->valid);
}

START_TEST(conv2d_strided_padded_masked) {
    int64_t sx[4] = {2, 7, 6, 3}, sw[4] = {3, 3, 3, 4};
    gt_tensor *in[2] = {rnd(4, sx, true, -1, 1), rnd(4, sw, true, -1, 1)};
    uint8_t valid[14] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0};
    conv_args a = {{2, 2, 1, 1, 1, 1}, valid};
    expect_pass(fwd_conv, &a, in, 2);
    /* forward against a direct loop at one output */
    gt_ctx ctx;
    gt_ctx_init(&ctx, 1 << 20);
    gt_tensor *y = gt_conv2d_nhwc(&ctx, in[0], in[1], &a.c, valid);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->shape[1], 4);
    ck_assert_int_eq(y->shape[2], 3);
    int64_t b = 1, to = 2, fo = 1, co = 3;
    double ref = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            for (int ci = 0; ci < 3; ci++) {
                int64_t t = to * 2 + i - 1, f = fo * 2 + j - 1;
                if (t < 0 || t >= 7 || f < 0 || f >= 6 || !valid[b * 7 + t]) continue;
                ref += in[0]->data[((b * 7 + t) * 6 + f) * 3 + ci] * in[1]->data[((i * 3 + j) * 3 + ci) * 4 + co];
            }
    ck_assert_double_eq_tol(y->data[((b * 4 + to) * 3 + fo) * 4 + co], ref, 1e-12);
    gt_ctx_free(&ctx);
    free_all(in, 2);
}
END_TEST

static gt_tensor *fwd_dw(gt_ctx *ctx, gt_tensor **in, void *user) {
    return gt_dwconv1d_causal(ctx, in[0], in[1]);
}

START_TEST(dwconv1d_causal) {
    int64_t sx[3] = {2, 6, 4}, sw[2] = {3, 4};
    gt_tensor *in[2] = {rnd(3, sx, true, -1, 1), rnd(2, sw, true, -1, 1)};
    expect_pass(fwd_dw, &in, in, 2);
    free_all(in, 2);
}
END_TEST

typedef struct {
    gt_local_attn_cfg c;
    const uint8_t *valid;
} la_args;

static gt_tensor *fwd_la(gt_ctx *ctx, gt_tensor **in, void *user) {
    la_args *a = user;
    return gt_local_attn(ctx, in[0], in[1], in[2], in[3], a->valid, &a->c);
}

START_TEST(local_attention) {
    /* T = 11 with chunk 4 (a padded last block), 3 past keys; batch 1 has its last 6 steps
     * invalid, so its steps 7..10 see no valid key and take the block average */
    int64_t B = 2, T = 11, N = 2, H = 3, sq[4] = {B, T, N, H}, sr[3] = {3 + 1 + 1, N, H};
    gt_tensor *in[4] = {rnd(4, sq, true, -1.5, 1.5), rnd(4, sq, true, -1.5, 1.5),
                        rnd(4, sq, true, -1, 1), rnd(3, sr, true, -1, 1)};
    uint8_t valid[22];
    for (int i = 0; i < 22; i++) valid[i] = i < 11 || i < 11 + 5;
    la_args a = {{4, 3, 1, 2.0}, valid};
    expect_pass(fwd_la, &a, in, 4);
    a.valid = NULL;
    a.c.cap = 50;
    expect_pass(fwd_la, &a, in, 4);
    /* forward: batch 1, t = 9 (no valid key): mean of v over slots s = 8 - 3 .. 8 - 3 + 7 */
    gt_ctx ctx;
    gt_ctx_init(&ctx, 1 << 20);
    a.valid = valid;
    gt_tensor *y = gt_local_attn(&ctx, in[0], in[1], in[2], in[3], valid, &a.c);
    ck_assert_ptr_nonnull(y);
    for (int h = 0; h < H; h++) {
        double ref = 0;
        for (int64_t s = 5; s < 13 && s < T; s++) ref += in[2]->data[((1 * T + s) * N + 1) * H + h] / 8;
        ck_assert_double_eq_tol(y->data[((1 * T + 9) * N + 1) * H + h], ref, 1e-12);
    }
    gt_ctx_free(&ctx);
    free_all(in, 4);
}
END_TEST

int main(void) {
    Suite *s = suite_create("audio_ops_f64");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, activations_glu_layernorm);
    tcase_add_test(tc, conv2d_strided_padded_masked);
    tcase_add_test(tc, dwconv1d_causal);
    tcase_add_test(tc, local_attention);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
