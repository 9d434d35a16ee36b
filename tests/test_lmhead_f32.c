/* The fused LM head (fp32, vectorised exp) against the unfused ops it replaces. */
#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "autograd/autograd.h"
#include "tests/check_main.h"

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 16777216.0f * 2 - 1;
}

/* frozen: E needs no gradient, so the op takes its one-pass path (vocabulary blocks of 256) */
static void compare_dims(double softcap, bool frozen, int N, int D, int V) {
    unsigned seed = 5;
    int64_t sh[2] = {N, D}, st[2] = {V, D};
    gt_tensor *h1 = gt_tensor_new(2, sh, true), *h2 = gt_tensor_new(2, sh, true);
    gt_tensor *e1 = gt_tensor_new(2, st, !frozen), *e2 = gt_tensor_new(2, st, true);
    for (int i = 0; i < N * D; i++) h1->data[i] = h2->data[i] = frand(&seed) * 2;
    for (int i = 0; i < V * D; i++) e1->data[i] = e2->data[i] = frand(&seed);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)N);
    float *w = malloc(sizeof(float) * (size_t)N);
    for (int i = 0; i < N; i++) {
        labels[i] = (int32_t)((i * 97) % V);
        w[i] = i % 3 == 0 ? 0.0f : (float)(i % 5) * 0.5f + 0.25f;
    }
    gt_ctx ctx, ctx2; /* one tape each: backward consumes its tape */
    gt_ctx_init(&ctx, 0);
    gt_ctx_init(&ctx2, 0);
    double ws1, ws2;
    gt_tensor *a = gt_lm_head_loss(&ctx, h1, e1, softcap, labels, w, 8, &ws1, NULL);
    gt_tensor *z = gt_matmul(&ctx2, h2, e2, false, true);
    if (softcap > 0) z = gt_softcap(&ctx2, z, softcap);
    gt_tensor *b = gt_cross_entropy(&ctx2, z, labels, w, &ws2, NULL);
    ck_assert_msg(gt_ok(&ctx) && gt_ok(&ctx2), "%s%s", ctx.err, ctx2.err);
    ck_assert(ws1 == ws2);
    ck_assert_msg(fabs(a->data[0] - b->data[0]) <= 1e-5 * fabs(b->data[0]), "%g vs %g", a->data[0], b->data[0]);
    ck_assert_int_eq(gt_backward(&ctx, a), GT_OK);
    ck_assert_int_eq(gt_backward(&ctx2, b), GT_OK);
    double gmax = 0, dmax = 0;
    for (int i = 0; i < N * D; i++) {
        gmax = fmax(gmax, fabs(h2->grad[i]));
        dmax = fmax(dmax, fabs(h1->grad[i] - h2->grad[i]));
    }
    ck_assert_msg(dmax <= 1e-5 * gmax, "dh: %g vs max %g", dmax, gmax);
    gmax = dmax = 0;
    if (frozen) ck_assert_ptr_null(e1->grad);
    for (int i = 0; i < V * D && !frozen; i++) {
        gmax = fmax(gmax, fabs(e2->grad[i]));
        dmax = fmax(dmax, fabs(e1->grad[i] - e2->grad[i]));
    }
    ck_assert_msg(dmax <= 1e-5 * gmax, "dE: %g vs max %g", dmax, gmax);
    gt_ctx_free(&ctx);
    gt_ctx_free(&ctx2);
    gt_tensor_free(h1);
    gt_tensor_free(h2);
    gt_tensor_free(e1);
    gt_tensor_free(e2);
    free(labels);
    free(w);
}

static void compare(double softcap, bool frozen) { compare_dims(softcap, frozen, 37, 24, 1000); }

START_TEST(matches_unfused_ops) { compare(0, false); }
END_TEST
START_TEST(matches_unfused_ops_with_softcap) { compare(5.0, false); }
END_TEST
START_TEST(frozen_table_matches_unfused_ops) { compare(0, true); }
END_TEST
/* D a multiple of 64 and few rows: the packing-free kernel (threads over vocabulary ranges, a
 * vocabulary that is not a multiple of 4), then the same through OpenBLAS for comparison */
START_TEST(frozen_table_few_rows_direct_kernel) {
    compare_dims(0, true, 37, 128, 1001);
    compare_dims(0, true, 5, 64, 4099);
    setenv("GT_LMHEAD_BLAS", "1", 1);
    compare_dims(0, true, 37, 128, 1001);
    unsetenv("GT_LMHEAD_BLAS");
}
END_TEST
START_TEST(frozen_table_matches_unfused_ops_with_softcap) { compare(5.0, true); }
END_TEST

int main(void) {
    Suite *s = suite_create("lmhead_f32");
    TCase *tc = tcase_create("lmhead");
    tcase_add_test(tc, matches_unfused_ops);
    tcase_add_test(tc, matches_unfused_ops_with_softcap);
    tcase_add_test(tc, frozen_table_matches_unfused_ops);
    tcase_add_test(tc, frozen_table_few_rows_direct_kernel);
    tcase_add_test(tc, frozen_table_matches_unfused_ops_with_softcap);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
