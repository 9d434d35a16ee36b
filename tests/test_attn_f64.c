/* Gradient checks (f64 engine) for gt_attention: causal MHA, GQA, soft-cap, sliding window, key
 * padding, packed segments, KV-cache offset, Hv != H, frozen k, rows with no visible key, and
 * sequences spanning several query blocks; image spans seen both ways (also against a naive
 * forward). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/gradcheck.h"
#include "tests/check_main.h"

typedef struct {
    int64_t B, T, S, N, K, H, Hv;
    gt_attn_cfg cfg;
} attn_case;

static gt_tensor *fwd_attn(gt_ctx *ctx, gt_tensor **in, void *user) {
    const attn_case *c = user;
    return gt_attention(ctx, in[0], in[1], in[2], &c->cfg);
}

static unsigned rng = 11;

/* Step of the central differences. Many q/k gradient elements of a softmax are small next to
 * the loss, so at the default h = 1e-6 the loss's rounding noise divided by 2h (~1e-9) exceeds
 * 1e-7 of them (measured worst error 2e-6); larger h trades that for O(h^2) truncation error.
 * Measured over 8 seeds, 2e-5 keeps every case under 1e-7 (worst 9.4e-8); the tolerance stays
 * the default 1e-7. */
#define FD_STEP 2e-5

/* q, k, v filled uniform in [-1, 1); k frozen when asked. */
static void make_inputs(const attn_case *c, gt_tensor **in, bool k_grad) {
    int64_t sq[4] = {c->B, c->T, c->N, c->H}, sk[4] = {c->B, c->S, c->K, c->H},
            sv[4] = {c->B, c->S, c->K, c->Hv};
    in[0] = gt_tensor_new(4, sq, true);
    in[1] = gt_tensor_new(4, sk, k_grad);
    in[2] = gt_tensor_new(4, sv, true);
    for (int i = 0; i < 3; i++) {
        ck_assert_ptr_nonnull(in[i]);
        gc_fill_uniform(in[i], &rng, -1, 1);
    }
}

static void free_inputs(gt_tensor **in) {
    for (int i = 0; i < 3; i++) gt_tensor_free(in[i]);
}

static void check_case(const attn_case *c, const char *what) {
    gt_tensor *in[3];
    make_inputs(c, in, true);
    gc_result res;
    gc_opts opts = {.h = FD_STEP};
    int ok = gc_check(fwd_attn, (void *)c, in, 3, &opts, &res);
    ck_assert_msg(ok, "%s: %s", what, res.msg);
    free_inputs(in);
}

static attn_case base(int64_t B, int64_t T, int64_t N, int64_t K, int64_t H) {
    attn_case c = {.B = B, .T = T, .S = T, .N = N, .K = K, .H = H, .Hv = H};
    c.cfg.scale = 1.0 / sqrt((double)H);
    c.cfg.causal = true;
    return c;
}

START_TEST(causal_mha) {
    attn_case c = base(2, 5, 2, 2, 3);
    check_case(&c, "causal MHA");
    c.cfg.causal = false; /* bidirectional, for completeness */
    check_case(&c, "bidirectional MHA");
}
END_TEST

START_TEST(grouped_query_heads) {
    attn_case c = base(2, 5, 4, 2, 4);
    check_case(&c, "GQA N=4 K=2");
    c = base(1, 6, 4, 1, 4);
    check_case(&c, "MQA N=4 K=1");
}
END_TEST

START_TEST(logit_softcap_in_nonlinear_range) {
    attn_case c = base(1, 6, 2, 1, 4);
    c.cfg.scale = 2.0;
    c.cfg.softcap = 1.0;
    gt_tensor *in[3];
    make_inputs(&c, in, true);
    /* The check is only meaningful if tanh bends: some |scale q.k| / cap must exceed 1. */
    double worst = 0;
    for (int64_t i = 0; i < c.T; i++)
        for (int64_t j = 0; j <= i; j++) {
            double d = 0;
            for (int64_t h = 0; h < c.H; h++)
                d += in[0]->data[i * c.N * c.H + h] * in[1]->data[j * c.H + h];
            worst = fmax(worst, fabs(c.cfg.scale * d / c.cfg.softcap));
        }
    ck_assert_msg(worst > 1.0, "soft-cap never leaves its linear range (max %g)", worst);
    gc_result res;
    gc_opts opts = {.h = FD_STEP};
    ck_assert_msg(gc_check(fwd_attn, &c, in, 3, &opts, &res), "softcap: %s", res.msg);
    free_inputs(in);
}
END_TEST

START_TEST(sliding_window) {
    attn_case c = base(2, 7, 2, 1, 3);
    c.cfg.window = 3;
    check_case(&c, "window 3 of 7");
    c.cfg.window = 2;
    c.cfg.q_offset = 0;
    check_case(&c, "window 2");
}
END_TEST

START_TEST(key_padding_mask) {
    attn_case c = base(2, 7, 2, 1, 3);
    /* batch 0: a hole in the middle; batch 1: right padding as KerasHub's preprocessor emits */
    static const uint8_t mask[14] = {1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    c.cfg.key_mask = mask;
    check_case(&c, "key padding (causal)");
    c.cfg.causal = false;
    check_case(&c, "key padding (bidirectional)");
}
END_TEST

START_TEST(packed_segments) {
    attn_case c = base(2, 7, 2, 2, 3);
    static const int32_t seg[14] = {0, 0, 0, 1, 1, 1, 1, 4, 4, 4, 4, 9, 9, 9};
    c.cfg.segment_ids = seg;
    check_case(&c, "two packed examples");
    static const uint8_t mask[14] = {1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1};
    c.cfg.key_mask = mask;
    c.cfg.window = 2;
    check_case(&c, "segments + padding + window");
}
END_TEST

START_TEST(query_offset_into_longer_keys) {
    attn_case c = base(2, 3, 2, 1, 4);
    c.S = 7;
    c.cfg.q_offset = 4;
    check_case(&c, "q_offset 4, T 3, S 7");
    c.cfg.window = 3;
    c.cfg.q_offset = 2; /* rows see keys 0..4, window trims the front */
    check_case(&c, "q_offset 2 + window 3");
}
END_TEST

START_TEST(value_width_differs) {
    attn_case c = base(2, 5, 4, 2, 4);
    c.Hv = 6;
    check_case(&c, "Hv 6, H 4");
}
END_TEST

START_TEST(frozen_k_gets_no_gradient) {
    attn_case c = base(1, 5, 2, 1, 3);
    c.cfg.softcap = 2.0;
    gt_tensor *in[3];
    make_inputs(&c, in, false);
    gc_result res;
    gc_opts opts = {.h = FD_STEP};
    ck_assert_msg(gc_check(fwd_attn, &c, in, 3, &opts, &res), "frozen k: %s", res.msg);
    ck_assert_ptr_null(in[1]->grad);
    ck_assert_ptr_nonnull(in[0]->grad);
    ck_assert_ptr_nonnull(in[2]->grad);
    free_inputs(in);
}
END_TEST

START_TEST(row_without_visible_key_is_zero) {
    /* Query 0 sees only key 0, which is padding; with window 2 query 4 sees keys 3 and 4, both
     * padding. Those rows must output 0 and pass no gradient to q. */
    attn_case c = base(1, 5, 2, 1, 3);
    static const uint8_t mask[5] = {0, 1, 1, 0, 0};
    c.cfg.key_mask = mask;
    check_case(&c, "masked first key");
    c.cfg.window = 2;
    c.cfg.softcap = 1.5;
    gt_tensor *in[3];
    make_inputs(&c, in, true);
    gc_result res;
    gc_opts opts = {.h = FD_STEP};
    ck_assert_msg(gc_check(fwd_attn, &c, in, 3, &opts, &res), "window 1: %s", res.msg);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *o = gt_attention(&ctx, in[0], in[1], in[2], &c.cfg);
    ck_assert_ptr_nonnull(o);
    const int64_t row = c.N * c.H;
    for (int64_t e = 0; e < row; e++) {
        ck_assert(o->data[0 * row + e] == 0 && o->data[4 * row + e] == 0);
        ck_assert(in[0]->grad[0 * row + e] == 0 && in[0]->grad[4 * row + e] == 0);
        ck_assert(o->data[1 * row + e] != 0); /* and the others are not */
    }
    gt_ctx_free(&ctx);
    free_inputs(in);
}
END_TEST

START_TEST(everything_at_once) {
    attn_case c = base(2, 6, 4, 2, 4);
    c.S = 8;
    c.Hv = 3;
    c.cfg.q_offset = 2;
    c.cfg.window = 4;
    c.cfg.scale = 1.5;
    c.cfg.softcap = 1.0;
    static const uint8_t mask[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0};
    static const int32_t seg[16] = {3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 2, 2, 2, 2};
    c.cfg.key_mask = mask;
    c.cfg.segment_ids = seg;
    check_case(&c, "GQA + offset + window + cap + padding + segments");
}
END_TEST

START_TEST(several_query_blocks) {
    /* Longer than one query block, so the per-block key ranges are exercised. */
    attn_case c = base(1, GT_ATTN_QBLOCK + 6, 2, 1, 2);
    c.S = c.T + 5;
    c.Hv = 2;
    c.cfg.q_offset = 5;
    c.cfg.window = 20;
    c.cfg.softcap = 0.8;
    check_case(&c, "causal + window over two blocks");
    c.cfg.window = 0;
    c.cfg.softcap = 0;
    check_case(&c, "causal over two blocks");
    c.cfg.causal = false;
    c.cfg.window = 9;
    check_case(&c, "bidirectional + window over two blocks");
}
END_TEST

START_TEST(packed_segments_over_several_query_blocks) {
    /* Short packed examples, an id that comes back after another (not contiguous) and right
     * padding: every block's key range is trimmed to its rows' visible keys. */
    attn_case c = base(2, GT_ATTN_QBLOCK + 6, 2, 1, 2);
    enum { T = GT_ATTN_QBLOCK + 6 };
    static int32_t seg[2 * T];
    static uint8_t mask[2 * T];
    for (int i = 0; i < T; i++) {
        seg[i] = i / 9;                        /* examples of 9 tokens */
        seg[T + i] = i < 30 ? i / 13 : i < 40 ? 0 : i < T - 4 ? 7 : -1;
        mask[i] = 1;
        mask[T + i] = i < T - 4;
    }
    c.cfg.segment_ids = seg;
    c.cfg.key_mask = mask;
    check_case(&c, "packed segments over two blocks");
    c.cfg.window = 5;
    c.cfg.softcap = 0.8;
    check_case(&c, "packed segments + window + cap over two blocks");
}
END_TEST

/* Naive forward of one case (N = K, H = Hv, no soft-cap) by the header's visibility rule. */
static double naive_out(const attn_case *c, gt_tensor **in, int64_t b, int64_t i, int64_t n,
                        int64_t h) {
    int64_t qi = c->cfg.q_offset + i, S = c->S, W = c->cfg.window;
    const int32_t *be = c->cfg.bidir_end ? c->cfg.bidir_end + b * S : NULL;
    double sc[256], m = -INFINITY, sum = 0, out = 0;
    for (int64_t j = 0; j < S; j++) {
        bool vis = !c->cfg.causal || j <= qi || (be && j < be[qi]);
        if (W > 0) vis = vis && (be ? llabs(qi - j) < W : qi - j < W);
        if (c->cfg.key_mask) vis = vis && c->cfg.key_mask[b * S + j];
        sc[j] = -INFINITY;
        if (!vis) continue;
        double d = 0;
        for (int64_t x = 0; x < c->H; x++)
            d += in[0]->data[((b * c->T + i) * c->N + n) * c->H + x] *
                 in[1]->data[((b * S + j) * c->K + n) * c->H + x];
        sc[j] = d * c->cfg.scale;
        m = fmax(m, sc[j]);
    }
    for (int64_t j = 0; j < S; j++) sum += isinf(sc[j]) ? 0 : exp(sc[j] - m);
    for (int64_t j = 0; j < S; j++)
        if (!isinf(sc[j])) out += exp(sc[j] - m) / sum * in[2]->data[((b * S + j) * c->K + n) * c->Hv + h];
    return out;
}

static void check_against_naive(const attn_case *c, const char *what) {
    gt_tensor *in[3];
    make_inputs(c, in, true);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *y = gt_attention(&ctx, in[0], in[1], in[2], &c->cfg);
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    double worst = 0;
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t i = 0; i < c->T; i++)
            for (int64_t n = 0; n < c->N; n++)
                for (int64_t h = 0; h < c->Hv; h++)
                    worst = fmax(worst, fabs(y->data[((b * c->T + i) * c->N + n) * c->Hv + h] -
                                             naive_out(c, in, b, i, n, h)));
    ck_assert_msg(worst < 1e-12, "%s: forward differs from the naive rule by %g", what, worst);
    gt_ctx_free(&ctx);
    free_inputs(in);
}

START_TEST(image_spans_see_each_other) {
    /* Gemma 3's image soft tokens: a span's tokens see the whole span, text stays causal; batch
     * 0 holds two images (positions 2..5 and 9..11), batch 1 none, and right padding. */
    enum { T = GT_ATTN_QBLOCK + 6 };
    attn_case c = base(2, T, 2, 2, 2);
    static int32_t end[2 * T];
    static uint8_t mask[2 * T];
    for (int i = 0; i < T; i++) {
        end[i] = i >= 2 && i < 6 ? 6 : i >= 9 && i < 12 ? 12 : i >= 60 && i < 68 ? 68 : 0;
        mask[i] = 1;
        mask[T + i] = i < T - 3;
    }
    c.cfg.bidir_end = end;
    c.cfg.key_mask = mask;
    check_against_naive(&c, "image spans, causal");
    check_case(&c, "image spans, causal");
    c.cfg.window = 3; /* cuts the spans: |qi - j| < 3 both ways */
    check_against_naive(&c, "image spans + window");
    check_case(&c, "image spans + window");
}
END_TEST

int main(void) {
    Suite *s = suite_create("attn_f64");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, causal_mha);
    tcase_add_test(tc, grouped_query_heads);
    tcase_add_test(tc, logit_softcap_in_nonlinear_range);
    tcase_add_test(tc, sliding_window);
    tcase_add_test(tc, key_padding_mask);
    tcase_add_test(tc, packed_segments_over_several_query_blocks);
    tcase_add_test(tc, packed_segments);
    tcase_add_test(tc, query_offset_into_longer_keys);
    tcase_add_test(tc, value_width_differs);
    tcase_add_test(tc, frozen_k_gets_no_gradient);
    tcase_add_test(tc, row_without_visible_key_is_zero);
    tcase_add_test(tc, everything_at_once);
    tcase_add_test(tc, several_query_blocks);
    tcase_add_test(tc, image_spans_see_each_other);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
