/* Gradient check (f64 engine) of the frozen linear on kept GGUF blocks (Q4_K, Q6_K, Q5_0): the
 * input gradient dy W, W decoded a block of rows at a time, against central differences. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops_bf16.h"
#include "autograd/quant.h"
#include "tests/check_main.h"
#include "tests/gradcheck.h"

static gt_tensor *fwd_linear(gt_ctx *ctx, gt_tensor **in, void *user) { return gt_bf16_linear(ctx, in[0], user); }

/* Random bytes with a small finite fp16 scale in every scale field (valid blocks). */
static uint8_t *blocks(uint32_t qt, int64_t n, unsigned seed) {
    int by = gt_qt_block_bytes(qt);
    int64_t nb = n / gt_qt_block(qt);
    uint8_t *b = malloc((size_t)(nb * by));
    for (int64_t i = 0; i < nb * by; i++) b[i] = (uint8_t)(gc_rand(&seed) * 256);
    uint16_t d = gt_f32_to_f16(qt == GT_QT_Q6_K ? 1e-3f : 1e-2f);
    for (int64_t i = 0; i < nb; i++) {
        memcpy(b + i * by + (qt == GT_QT_Q6_K ? 208 : 0), &d, 2);
        if (qt == GT_QT_Q4_K) memcpy(b + i * by + 2, &d, 2);
    }
    return b;
}

START_TEST(linear_input_gradient_on_kept_blocks) {
    enum { R = 24, C = 256 };
    const uint32_t types[3] = {GT_QT_Q4_K, GT_QT_Q6_K, GT_QT_Q5_0};
    for (int k = 0; k < 3; k++) {
        uint8_t *q = blocks(types[k], R * C, 7 + k);
        gt_real *stage = malloc(sizeof(gt_real) * 10 * C); /* blocks of 10, 10, 4 rows */
        gt_bf16_mat w = {NULL, R, C, stage, 10 * C, false, gt_wfmt_of_qtype(types[k]), q};
        unsigned rng = 3;
        gt_tensor *x = gt_tensor_new(2, (int64_t[]){3, C}, true);
        gc_fill_uniform(x, &rng, -1, 1);
        gt_tensor *in[1] = {x};
        gc_result res;
        gc_opts opts = {.h = 1e-3, .max_elems = 64}; /* linear in x: no truncation error, less rounding */
        ck_assert_msg(gc_check(fwd_linear, &w, in, 1, &opts, &res), "%s: %s", gt_qt_name(types[k]), res.msg);
        gt_tensor_free(x);
        free(stage);
        free(q);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("quant_k_f64");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, linear_input_gradient_on_kept_blocks);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
