/* gt_attention in the f32 engine: forward against a plain double-precision reference, masked
 * keys having no influence at all, the inference path, an f32 gradient check, and messages. */
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

static unsigned rng = 5;

static gt_tensor *new4(int64_t a, int64_t b, int64_t c, int64_t d, bool req) {
    int64_t s[4] = {a, b, c, d};
    gt_tensor *t = gt_tensor_new(4, s, req);
    ck_assert_ptr_nonnull(t);
    gc_fill_uniform(t, &rng, -1, 1);
    return t;
}

/* The header's definition, written out loop by loop in double. out: B*T*N*Hv. */
static void reference(const attn_case *c, const gt_tensor *q, const gt_tensor *k,
                      const gt_tensor *v, double *out) {
    const gt_attn_cfg *g = &c->cfg;
    int64_t G = c->N / c->K;
    double *s = malloc((size_t)c->S * sizeof *s);
    bool *vis = malloc((size_t)c->S * sizeof *vis);
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t n = 0; n < c->N; n++)
            for (int64_t i = 0; i < c->T; i++) {
                int64_t qi = g->q_offset + i, kv = n / G;
                double m = -INFINITY;
                int any = 0;
                for (int64_t j = 0; j < c->S; j++) {
                    vis[j] = (!g->causal || j <= qi) && (g->window == 0 || qi - j < g->window) &&
                             (!g->key_mask || g->key_mask[b * c->S + j] != 0) &&
                             (!g->segment_ids ||
                              g->segment_ids[b * c->S + j] == g->segment_ids[b * c->S + qi]);
                    if (!vis[j]) continue;
                    double d = 0;
                    for (int64_t h = 0; h < c->H; h++)
                        d += (double)q->data[((b * c->T + i) * c->N + n) * c->H + h] *
                             (double)k->data[((b * c->S + j) * c->K + kv) * c->H + h];
                    d *= g->scale;
                    if (g->softcap > 0) d = g->softcap * tanh(d / g->softcap);
                    s[j] = d;
                    if (d > m) m = d;
                    any = 1;
                }
                double z = 0;
                for (int64_t j = 0; j < c->S; j++)
                    if (vis[j]) z += exp(s[j] - m);
                for (int64_t e = 0; e < c->Hv; e++) {
                    double acc = 0;
                    for (int64_t j = 0; j < c->S; j++)
                        if (vis[j])
                            acc += exp(s[j] - m) / z *
                                   (double)v->data[((b * c->S + j) * c->K + kv) * c->Hv + e];
                    out[((b * c->T + i) * c->N + n) * c->Hv + e] = any ? acc : 0;
                }
            }
    free(s);
    free(vis);
}

/* Forward in both the training path (q requires grad: every batch's probabilities kept) and
 * the inference path; both must match the reference to 1e-5. */
static void check_forward(const attn_case *c, const char *what) {
    gt_tensor *q = new4(c->B, c->T, c->N, c->H, true), *k = new4(c->B, c->S, c->K, c->H, true),
              *v = new4(c->B, c->S, c->K, c->Hv, true);
    double *ref = malloc((size_t)(c->B * c->T * c->N * c->Hv) * sizeof *ref);
    reference(c, q, k, v, ref);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *o1 = gt_attention(&ctx, q, k, v, &c->cfg);
    ctx.grad_enabled = false;
    gt_tensor *o2 = gt_attention(&ctx, q, k, v, &c->cfg);
    ck_assert_msg(o1 && o2, "%s: %s", what, ctx.err);
    ck_assert(o1->requires_grad && !o2->requires_grad);
    ck_assert_int_eq(o1->shape[3], c->Hv);
    double err = 0, mag = 0;
    for (int64_t i = 0; i < o1->size; i++) {
        err = fmax(err, fabs((double)o1->data[i] - ref[i]));
        mag = fmax(mag, fabs(ref[i]));
    }
    ck_assert_msg(err < 1e-5, "%s: max abs error %g vs the double reference", what, err);
    ck_assert_msg(mag > 0.05, "%s: reference output is all ~0 (%g)", what, mag);
    /* Same arithmetic, different buffer offsets (vector reductions may split differently). */
    double diff = 0;
    for (int64_t i = 0; i < o1->size; i++)
        diff = fmax(diff, fabs((double)o1->data[i] - o2->data[i]));
    ck_assert_msg(diff < 1e-6, "%s: inference path differs from the training path by %g", what,
                  diff);
    gt_ctx_free(&ctx);
    free(ref);
    gt_tensor_free(q);
    gt_tensor_free(k);
    gt_tensor_free(v);
}

static const uint8_t mixed_mask[22] = {1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1,  /* a hole */
                                       1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0}; /* right padding */
static const int32_t mixed_seg[22] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1,
                                      2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};

static attn_case mixed_case(void) {
    attn_case c = {.B = 2, .T = 9, .S = 11, .N = 4, .K = 2, .H = 8, .Hv = 6};
    c.cfg = (gt_attn_cfg){.scale = 0.9, .softcap = 1.5, .window = 4, .causal = true,
                          .q_offset = 2, .key_mask = mixed_mask, .segment_ids = mixed_seg};
    return c;
}

START_TEST(forward_matches_double_reference) {
    attn_case c = mixed_case();
    check_forward(&c, "GQA + window + padding + softcap + segments + offset");
    c.cfg.causal = false;
    check_forward(&c, "the same, bidirectional");
    c.cfg.causal = true;
    c.cfg.key_mask = NULL; /* each rule alone takes its own path */
    check_forward(&c, "segments without padding");
    c.cfg.key_mask = mixed_mask;
    c.cfg.segment_ids = NULL;
    check_forward(&c, "padding without segments");
}
END_TEST

START_TEST(forward_over_several_query_blocks) {
    enum { T = 2 * GT_ATTN_QBLOCK + 22, OFF = 10, S = T + OFF };
    static uint8_t mask[2 * S];
    static int32_t seg[2 * S];
    for (int j = 0; j < 2 * S; j++) {
        mask[j] = (j % S) < S - 7; /* right padding in both batches */
        seg[j] = j < S ? 0 : (j - S) / 60;
    }
    attn_case c = {.B = 2, .T = T, .S = S, .N = 4, .K = 1, .H = 16, .Hv = 16};
    c.cfg = (gt_attn_cfg){.scale = 0.25, .causal = true, .q_offset = OFF, .key_mask = mask};
    check_forward(&c, "causal, long");
    c.cfg.window = 37;
    c.cfg.softcap = 2.0;
    c.cfg.segment_ids = seg;
    check_forward(&c, "causal + window + cap + segments, long");
    /* short packed examples (as data.packing builds them), one id coming back later */
    for (int j = 0; j < 2 * S; j++) seg[j] = j < S ? j / 11 : (j - S) < 90 ? (j - S) / 17 : 2;
    c.cfg.window = 0;
    c.cfg.softcap = 0;
    check_forward(&c, "causal + short segments, long");
}
END_TEST

START_TEST(masked_keys_have_no_influence) {
    attn_case c = mixed_case();
    c.S = 13; /* keys 11, 12 lie beyond the last query: causally invisible */
    static const uint8_t mask[26] = {1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                     1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1};
    static const int32_t seg[26] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1,
                                    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
    c.cfg.key_mask = mask;
    c.cfg.segment_ids = seg;
    gt_tensor *q = new4(c.B, c.T, c.N, c.H, false), *k = new4(c.B, c.S, c.K, c.H, false),
              *v = new4(c.B, c.S, c.K, c.Hv, false);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *o0 = gt_attention(&ctx, q, k, v, &c.cfg);
    ck_assert_ptr_nonnull(o0);
    /* (batch, key): a padding hole, right padding, and keys after the last query. */
    const int64_t invisible[][2] = {{0, 4}, {1, 8}, {1, 9}, {1, 10}, {0, 11}, {0, 12}, {1, 12}};
    for (size_t t = 0; t < sizeof invisible / sizeof invisible[0]; t++) {
        int64_t b = invisible[t][0], j = invisible[t][1];
        for (int64_t h = 0; h < c.K * c.Hv; h++) v->data[(b * c.S + j) * c.K * c.Hv + h] = 1e4f;
        for (int64_t h = 0; h < c.K * c.H; h++) k->data[(b * c.S + j) * c.K * c.H + h] = -3e3f;
    }
    gt_tensor *o1 = gt_attention(&ctx, q, k, v, &c.cfg);
    ck_assert_ptr_nonnull(o1);
    ck_assert_msg(memcmp(o0->data, o1->data, (size_t)o0->size * sizeof(gt_real)) == 0,
                  "a masked key changed the output");
    /* Segment: batch 0 rows with qi >= 6 (segment 1) must ignore keys 0..5 (segment 0). */
    for (int64_t h = 0; h < c.K * c.Hv; h++) v->data[(0 * c.S + 3) * c.K * c.Hv + h] += 5;
    gt_tensor *o2 = gt_attention(&ctx, q, k, v, &c.cfg);
    ck_assert_ptr_nonnull(o2);
    const int64_t row = c.N * c.Hv;
    for (int64_t i = 0; i < c.T; i++) {
        int cmp = memcmp(o1->data + i * row, o2->data + i * row, (size_t)row * sizeof(gt_real));
        if (c.cfg.q_offset + i >= 6)
            ck_assert_msg(cmp == 0, "row %lld (segment 1) saw a segment-0 key", (long long)i);
        else if (c.cfg.q_offset + i >= 3 && c.cfg.q_offset + i - 3 < c.cfg.window)
            ck_assert_msg(cmp != 0, "row %lld ignores a visible key", (long long)i);
    }
    gt_ctx_free(&ctx);
    gt_tensor_free(q);
    gt_tensor_free(k);
    gt_tensor_free(v);
}
END_TEST

static gt_tensor *fwd_attn(gt_ctx *ctx, gt_tensor **in, void *user) {
    return gt_attention(ctx, in[0], in[1], in[2], &((attn_case *)user)->cfg);
}

START_TEST(f32_backward_agrees_with_finite_differences) {
    /* The f64 suite is the real check; this one guards f32-only paths (the soft-cap derivative
     * recovered from log P + lse) at f32 precision. */
    attn_case c = mixed_case();
    gt_tensor *in[3] = {new4(c.B, c.T, c.N, c.H, true), new4(c.B, c.S, c.K, c.H, true),
                        new4(c.B, c.S, c.K, c.Hv, true)};
    gc_result res;
    gc_opts opts = {.h = 1e-2, .tol = 2e-2};
    ck_assert_msg(gc_check(fwd_attn, &c, in, 3, &opts, &res), "%s", res.msg);
    for (int i = 0; i < 3; i++) gt_tensor_free(in[i]);
}
END_TEST

/* Output and input gradients of one call on `threads` threads (heads split between them, each
 * with single-threaded GEMMs) into res: out, then dq, dk, dv. */
static void run_threads(const attn_case *c, gt_tensor **in, const gt_tensor *seed, int threads, double *res) {
    gt_threads_set(threads);
    for (int i = 0; i < 3; i++) memset(in[i]->grad, 0, (size_t)in[i]->size * sizeof(gt_real));
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *out = gt_attention(&ctx, in[0], in[1], in[2], &c->cfg);
    ck_assert_ptr_nonnull(out);
    for (int64_t i = 0; i < out->size; i++) res[i] = out->data[i];
    ck_assert_int_eq(gt_backward_seed(&ctx, out, seed->data), GT_OK);
    int64_t at = out->size;
    for (int t = 0; t < 3; t++)
        for (int64_t i = 0; i < in[t]->size; i++) res[at++] = in[t]->grad[i];
    gt_ctx_free(&ctx);
    gt_threads_set(0);
}

START_TEST(threaded_heads_match_one_thread) {
    /* big enough for the per-head threads; GQA (two query heads per kv head write one dk, dv),
     * H != Hv (column chunks of different widths), soft-cap, packed segments, several blocks */
    enum { T = 2 * GT_ATTN_QBLOCK + 30 };
    static int32_t seg[2 * T];
    for (int i = 0; i < 2 * T; i++) seg[i] = (i % T) / 50;
    attn_case c = {.B = 2, .T = T, .S = T, .N = 4, .K = 2, .H = 48, .Hv = 32};
    c.cfg = (gt_attn_cfg){.scale = 0.3, .softcap = 2.0, .causal = true, .segment_ids = seg};
    gt_tensor *in[3] = {new4(c.B, c.T, c.N, c.H, true), new4(c.B, c.S, c.K, c.H, true),
                        new4(c.B, c.S, c.K, c.Hv, true)};
    gt_tensor *seed = new4(c.B, c.T, c.N, c.Hv, false);
    int64_t n = seed->size + in[0]->size + in[1]->size + in[2]->size;
    double *one = malloc((size_t)n * sizeof *one), *two = malloc((size_t)n * sizeof *two);
    ck_assert(one && two);
    run_threads(&c, in, seed, 1, one);
    run_threads(&c, in, seed, 2, two);
    double worst = 0, big = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(one[i] - two[i]);
        worst = d > worst ? d : worst;
        big = fabs(one[i]) > big ? fabs(one[i]) : big;
    }
    ck_assert_msg(big > 0.1 && worst <= 1e-5 * big, "threads 1 vs 2: worst %g of %g", worst, big);
    free(one);
    free(two);
    gt_tensor_free(seed);
    for (int i = 0; i < 3; i++) gt_tensor_free(in[i]);
}
END_TEST

/* One bad call: NULL, the right status, and a message naming the op (and shapes if given). */
static void expect_error(gt_tensor *q, gt_tensor *k, gt_tensor *v, const gt_attn_cfg *cfg,
                         int status, const char *want1, const char *want2) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ck_assert_ptr_null(gt_attention(&ctx, q, k, v, cfg));
    ck_assert_int_eq(ctx.status, status);
    ck_assert_msg(strncmp(ctx.err, "attention: ", 11) == 0, "message: %s", ctx.err);
    ck_assert_msg(!strchr(ctx.err, '\n'), "multi-line message: %s", ctx.err);
    ck_assert_msg(strstr(ctx.err, want1), "'%s' not in: %s", want1, ctx.err);
    if (want2) ck_assert_msg(strstr(ctx.err, want2), "'%s' not in: %s", want2, ctx.err);
    gt_ctx_free(&ctx);
}

START_TEST(bad_arguments_give_one_line_messages) {
    gt_tensor *q = new4(1, 4, 3, 8, true), *k = new4(1, 6, 2, 8, true);
    gt_tensor *v = new4(1, 6, 2, 5, true), *q4 = new4(1, 4, 4, 8, true);
    gt_tensor *kh = new4(1, 6, 2, 7, true), *vs = new4(1, 5, 2, 5, true);
    gt_tensor *qb = new4(2, 4, 4, 8, true);
    int64_t s3[3] = {4, 4, 8};
    gt_tensor *q3 = gt_tensor_new(3, s3, true);
    gt_attn_cfg ok = {.scale = 0.5, .causal = true};
    expect_error(NULL, k, v, &ok, GT_ERR_ARG, "NULL", NULL);
    expect_error(q4, k, v, NULL, GT_ERR_ARG, "NULL", NULL);
    expect_error(q3, k, v, &ok, GT_ERR_SHAPE, "[4,4,8]", "[1,6,2,8]");
    expect_error(q, k, v, &ok, GT_ERR_SHAPE, "[1,4,3,8]", "multiple"); /* N % K */
    expect_error(q4, kh, v, &ok, GT_ERR_SHAPE, "[1,4,4,8]", "[1,6,2,7]"); /* H differs */
    expect_error(q4, k, vs, &ok, GT_ERR_SHAPE, "[1,5,2,5]", "[1,6,2,8]"); /* S differs */
    expect_error(qb, k, v, &ok, GT_ERR_SHAPE, "[2,4,4,8]", NULL);         /* B differs */
    gt_attn_cfg bad = ok;
    bad.q_offset = 3; /* 4 + 3 > 6 */
    expect_error(q4, k, v, &bad, GT_ERR_SHAPE, "T + q_offset <= S", "[1,4,4,8]");
    bad = ok;
    bad.window = -1;
    expect_error(q4, k, v, &bad, GT_ERR_ARG, "window -1", "[1,4,4,8]");
    bad = ok;
    bad.softcap = -2;
    expect_error(q4, k, v, &bad, GT_ERR_ARG, "softcap", "[1,4,4,8]");
    bad = ok;
    bad.softcap = NAN;
    expect_error(q4, k, v, &bad, GT_ERR_ARG, "softcap", NULL);
    bad = ok;
    bad.q_offset = -1;
    expect_error(q4, k, v, &bad, GT_ERR_ARG, "q_offset -1", NULL);
    /* Non-causal queries may run past S (no segments): accepted. */
    bad = ok;
    bad.causal = false;
    bad.q_offset = 3;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ck_assert_ptr_nonnull(gt_attention(&ctx, q4, k, v, &bad));
    gt_ctx_free(&ctx);
    gt_tensor *all[] = {q, k, v, q4, kh, vs, qb, q3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) gt_tensor_free(all[i]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("attn_f32");
    TCase *tc = tcase_create("attention");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, forward_matches_double_reference);
    tcase_add_test(tc, forward_over_several_query_blocks);
    tcase_add_test(tc, masked_keys_have_no_influence);
    tcase_add_test(tc, f32_backward_agrees_with_finite_differences);
    tcase_add_test(tc, bad_arguments_give_one_line_messages);
    tcase_add_test(tc, threaded_heads_match_one_thread);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
