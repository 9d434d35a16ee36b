/* Optimizers, schedules, clipping (the Keras AdamW trajectory is checked in test_lora_parity). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/optim.h"

START_TEST(adamw_first_steps_by_hand) {
    float w[2] = {1.0f, -2.0f}, g[2] = {0.5f, 0.25f};
    gt_param_slice p = {"kernel", w, g, 2, true};
    gt_optim o;
    gt_optim_cfg c;
    gt_optim_cfg_defaults(&c, GT_OPT_ADAMW);
    c.weight_decay = 0.1;
    char err[128];
    ck_assert(gt_optim_init(&o, &c, &p, 1, err, sizeof err) == 0);
    gt_optim_step(&o, 0.01);
    /* t=1: m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(0.001)/0.1; w = w(1 - lr wd) - alpha m/(sqrt v + eps) */
    for (int j = 0; j < 2; j++) {
        double w0 = j ? -2.0 : 1.0, gj = j ? 0.25 : 0.5;
        double m = 0.1 * gj, v = 0.001 * gj * gj, alpha = 0.01 * sqrt(0.001) / 0.1;
        double want = w0 * (1 - 0.01 * 0.1) - alpha * m / (sqrt(v) + 1e-7);
        ck_assert_msg(fabs(w[j] - want) < 1e-6, "%d: %.8f vs %.8f", j, w[j], want);
    }
    ck_assert_int_eq(o.step, 1);
    gt_optim_free(&o);
}
END_TEST

START_TEST(no_decay_for_excluded_names_and_adam) {
    const char *pat[2] = {"bias", "scale"};
    ck_assert(gt_optim_name_excluded("decoder_block_0/pre_ffw_norm/scale", pat, 2));
    ck_assert(!gt_optim_name_excluded("decoder_block_0/attention/query/lora_kernel_a", pat, 2));
    float w = 1, g = 0;
    gt_param_slice p = {"scale", &w, &g, 1, false};
    gt_optim o;
    gt_optim_cfg c;
    gt_optim_cfg_defaults(&c, GT_OPT_ADAMW);
    c.weight_decay = 0.5;
    char err[128];
    ck_assert(gt_optim_init(&o, &c, &p, 1, err, sizeof err) == 0);
    gt_optim_step(&o, 0.1);
    ck_assert(w == 1.0f); /* zero gradient and no decay: untouched */
    gt_optim_free(&o);
}
END_TEST

START_TEST(sgd_momentum) {
    float w = 1, g = 2;
    gt_param_slice p = {"w", &w, &g, 1, true};
    gt_optim o;
    gt_optim_cfg c;
    gt_optim_cfg_defaults(&c, GT_OPT_SGD);
    c.momentum = 0.9;
    char err[128];
    ck_assert(gt_optim_init(&o, &c, &p, 1, err, sizeof err) == 0);
    gt_optim_step(&o, 0.1); /* vel = -0.2, w = 0.8 */
    gt_optim_step(&o, 0.1); /* vel = -0.18 - 0.2 = -0.38, w = 0.42 */
    ck_assert(fabs(w - 0.42) < 1e-6);
    gt_optim_free(&o);
}
END_TEST

START_TEST(state_restore_is_bit_identical) {
    float w1[3] = {1, 2, 3}, g[3] = {0.1f, -0.2f, 0.3f}, w2[3];
    gt_param_slice p = {"w", w1, g, 3, true};
    gt_optim a, b;
    gt_optim_cfg c;
    gt_optim_cfg_defaults(&c, GT_OPT_ADAMW);
    char err[128];
    ck_assert(gt_optim_init(&a, &c, &p, 1, err, sizeof err) == 0);
    for (int i = 0; i < 3; i++) gt_optim_step(&a, 1e-2);
    memcpy(w2, w1, sizeof w1);
    gt_param_slice q = {"w", w2, g, 3, true};
    ck_assert(gt_optim_init(&b, &c, &q, 1, err, sizeof err) == 0);
    memcpy(b.m, a.m, sizeof(float) * 3);
    memcpy(b.v, a.v, sizeof(float) * 3);
    b.step = a.step;
    gt_optim_step(&a, 1e-2);
    gt_optim_step(&b, 1e-2);
    ck_assert(memcmp(w1, w2, sizeof w1) == 0);
    gt_optim_free(&a);
    gt_optim_free(&b);
}
END_TEST

START_TEST(schedules) {
    gt_schedule s = {GT_SCHED_COSINE, 1.0, 0.1, 10, 110};
    ck_assert_double_eq_tol(gt_schedule_lr(&s, 0), 0.1, 1e-12);  /* (0+1)/10 */
    ck_assert_double_eq_tol(gt_schedule_lr(&s, 9), 1.0, 1e-12);
    ck_assert_double_eq_tol(gt_schedule_lr(&s, 10), 1.0, 1e-12);
    ck_assert_double_eq_tol(gt_schedule_lr(&s, 60), 0.55, 1e-12);
    ck_assert_double_eq_tol(gt_schedule_lr(&s, 110), 0.1, 1e-12);
    ck_assert_double_eq_tol(gt_schedule_lr(&s, 500), 0.1, 1e-12);
    s.kind = GT_SCHED_LINEAR;
    ck_assert_double_eq_tol(gt_schedule_lr(&s, 35), 1.0 - 0.9 * 0.25, 1e-12);
    s.kind = GT_SCHED_CONSTANT;
    ck_assert_double_eq_tol(gt_schedule_lr(&s, 80), 1.0, 1e-12);
}
END_TEST

START_TEST(clipping_and_nonfinite) {
    float g1[2] = {3, 0}, g2[1] = {4}, w[3] = {0};
    gt_param_slice p[2] = {{"a", w, g1, 2, true}, {"b", w + 2, g2, 1, true}};
    ck_assert_double_eq_tol(gt_grad_clip(p, 2, 10), 5, 1e-12);
    ck_assert(g1[0] == 3 && g2[0] == 4); /* below the threshold: untouched */
    ck_assert_double_eq_tol(gt_grad_clip(p, 2, 1), 5, 1e-12);
    ck_assert_double_eq_tol(gt_grad_norm(p, 2), 1, 1e-6);
    ck_assert(fabs(g1[0] - 0.6) < 1e-7 && fabs(g2[0] - 0.8) < 1e-7);
    int64_t at;
    ck_assert_int_eq(gt_grad_find_nonfinite(p, 2, &at), -1);
    g2[0] = NAN;
    ck_assert_int_eq(gt_grad_find_nonfinite(p, 2, &at), 1);
    ck_assert_int_eq(at, 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optim");
    tcase_add_test(tc, adamw_first_steps_by_hand);
    tcase_add_test(tc, no_decay_for_excluded_names_and_adam);
    tcase_add_test(tc, sgd_momentum);
    tcase_add_test(tc, state_restore_is_bit_identical);
    tcase_add_test(tc, schedules);
    tcase_add_test(tc, clipping_and_nonfinite);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
