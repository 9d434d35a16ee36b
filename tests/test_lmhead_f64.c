/* Gradient checks (f64) of the chunked, fused LM head + weighted cross-entropy. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/gradcheck.h"
#include "tests/check_main.h"

static unsigned rng = 99;

typedef struct {
    double softcap;
    int64_t chunk;
    const int32_t *labels;
    const gt_real *w;
} head_args;

static gt_tensor *fwd_head(gt_ctx *ctx, gt_tensor **in, void *user) {
    head_args *a = user;
    double ws;
    return gt_lm_head_loss(ctx, in[0], in[1], a->softcap, a->labels, a->w, a->chunk, &ws, NULL);
}

static void check_v(double softcap, int64_t chunk, bool table_grad, int64_t vocab) {
    int64_t sh[3] = {2, 5, 6}, st[2] = {vocab, 6};
    gt_tensor *in[2] = {gt_tensor_new(3, sh, true), gt_tensor_new(2, st, table_grad)};
    gc_fill_uniform(in[0], &rng, -1.5, 1.5);
    gc_fill_uniform(in[1], &rng, -1.5, 1.5);
    int32_t labels[10] = {3, -1, 12, 0, 5, 5, 7, -1, 1, 9};
    if (vocab > 13) labels[9] = (int32_t)vocab - 1; /* a label in the last (partial) block */
    gt_real w[10] = {1, 0, 0.5, 2, 1, 1, 0.25, 0, 1, 3};
    head_args a = {softcap, chunk, labels, w};
    gc_result res;
    gc_opts opts = {.h = 3e-5};
    ck_assert_msg(gc_check(fwd_head, &a, in, 2, &opts, &res), "softcap %g chunk %lld: %s", softcap,
                  (long long)chunk, res.msg);
    /* zero-weight rows get exactly zero gradient */
    for (int k = 0; k < 6; k++) {
        ck_assert(in[0]->grad[1 * 6 + k] == 0);
        ck_assert(in[0]->grad[7 * 6 + k] == 0);
    }
    if (!table_grad) ck_assert_ptr_null(in[1]->grad);
    gt_tensor_free(in[0]);
    gt_tensor_free(in[1]);
}

static void check(double softcap, int64_t chunk, bool table_grad) { check_v(softcap, chunk, table_grad, 13); }

START_TEST(plain) { check(0, 64, true); }
END_TEST
START_TEST(chunked_smaller_than_rows) { check(0, 3, true); }
END_TEST
START_TEST(with_final_softcap) { check(2.0, 3, true); }
END_TEST
START_TEST(frozen_table) { check(2.0, 2, false); }
END_TEST
/* one pass: vocabulary blocks of 32 rows (the last partial), row chunks of 9 */
START_TEST(frozen_table_many_vocab_blocks) { check_v(2.0, 1, false, 300); }
END_TEST
START_TEST(frozen_table_many_vocab_blocks_no_cap) { check_v(0, 1, false, 300); }
END_TEST

START_TEST(values_and_row_ce_match_a_direct_computation) {
    int64_t sh[2] = {4, 3}, st[2] = {5, 3};
    gt_tensor *h = gt_tensor_new(2, sh, false), *e = gt_tensor_new(2, st, false);
    gc_fill_uniform(h, &rng, -2, 2);
    gc_fill_uniform(e, &rng, -2, 2);
    int32_t labels[4] = {4, 0, 2, 99};
    gt_real w[4] = {1, 2, 0.5, 0};
    gt_real row_ce[4];
    double ws;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *l = gt_lm_head_loss(&ctx, h, e, 3.0, labels, w, 2, &ws, row_ce);
    ck_assert_msg(l, "%s", ctx.err);
    double total = 0;
    for (int i = 0; i < 3; i++) {
        double z[5], mx = -1e300, acc = 0;
        for (int v = 0; v < 5; v++) {
            double raw = 0;
            for (int k = 0; k < 3; k++) raw += h->data[i * 3 + k] * e->data[v * 3 + k];
            z[v] = 3.0 * tanh(raw / 3.0);
            mx = fmax(mx, z[v]);
        }
        for (int v = 0; v < 5; v++) acc += exp(z[v] - mx);
        double ce = mx + log(acc) - z[labels[i]];
        ck_assert_double_eq_tol(row_ce[i], ce, 1e-12);
        total += w[i] * ce;
    }
    ck_assert(row_ce[3] == 0);
    ck_assert_double_eq_tol(l->data[0], total, 1e-12);
    ck_assert(ws == 3.5);
    gt_ctx_reset(&ctx);
    labels[0] = 5;
    ck_assert_ptr_null(gt_lm_head_loss(&ctx, h, e, 0, labels, w, 2, &ws, NULL));
    ck_assert_msg(strstr(ctx.err, "row 0") && strstr(ctx.err, "label 5"), "%s", ctx.err);
    gt_ctx_free(&ctx);
    gt_tensor_free(h);
    gt_tensor_free(e);
}
END_TEST

int main(void) {
    Suite *s = suite_create("lmhead_f64");
    TCase *tc = tcase_create("lmhead");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, plain);
    tcase_add_test(tc, chunked_smaller_than_rows);
    tcase_add_test(tc, with_final_softcap);
    tcase_add_test(tc, frozen_table);
    tcase_add_test(tc, frozen_table_many_vocab_blocks);
    tcase_add_test(tc, frozen_table_many_vocab_blocks_no_cap);
    tcase_add_test(tc, values_and_row_ce_match_a_direct_computation);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
