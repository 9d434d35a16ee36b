/* Preset table and config validation. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/gemma_config.h"

static gt_gemma_config preset(const char *name) {
    gt_gemma_config c;
    char err[2048];
    ck_assert_msg(gt_gemma_preset(name, &c, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_gemma_config_validate(&c, err, sizeof err) == 0, "%s: %s", name, err);
    return c;
}

/* The `params` metadata of every preset in KerasHub 0.32's gemma_presets.py / gemma3_presets.py. */
static const struct { const char *name; long long params; } published[] = {
    {"gemma_2b_en", 2506172416LL},        {"gemma_instruct_2b_en", 2506172416LL},
    {"gemma_1.1_instruct_2b_en", 2506172416LL}, {"gemma_7b_en", 8537680896LL},
    {"gemma_instruct_7b_en", 8537680896LL}, {"gemma_1.1_instruct_7b_en", 8537680896LL},
    {"gemma2_2b_en", 2614341888LL},       {"gemma2_instruct_2b_en", 2614341888LL},
    {"gemma2_9b_en", 9241705984LL},       {"gemma2_instruct_9b_en", 9241705984LL},
    {"gemma2_27b_en", 27227128320LL},     {"gemma2_instruct_27b_en", 27227128320LL},
    {"gemma3_270m", 268098176LL},         {"gemma3_instruct_270m", 268098176LL},
    {"gemma3_1b", 999885952LL},           {"gemma3_instruct_1b", 999885952LL},
    {"gemma3_4b_text", 3880099328LL},     {"gemma3_instruct_4b_text", 3880099328LL},
    {"gemma3_12b_text", 11765788416LL},   {"gemma3_instruct_12b_text", 11765788416LL},
    {"gemma3_27b_text", 27009002240LL},   {"gemma3_instruct_27b_text", 27009002240LL},
};

START_TEST(parameter_counts_match_kerashub) {
    int n = 0;
    for (size_t i = 0; i < sizeof published / sizeof published[0]; i++, n++) {
        gt_gemma_config c = preset(published[i].name);
        ck_assert_msg(gt_gemma_param_count(&c) == published[i].params, "%s: %lld != %lld",
                      published[i].name, (long long)gt_gemma_param_count(&c), published[i].params);
    }
    /* and the table has no preset the list above lacks */
    int m = 0;
    for (const char *const *p = gt_gemma_preset_names(); *p; p++) m++;
    ck_assert_int_eq(m, n);
}
END_TEST

START_TEST(every_preset_validates) {
    for (const char *const *n = gt_gemma_preset_names(); *n; n++) preset(*n);
}
END_TEST

START_TEST(layer_patterns) {
    gt_gemma_config g1 = preset("gemma_2b_en"), g2 = preset("gemma2_2b_en"), g3 = preset("gemma3_1b");
    for (int i = 0; i < 12; i++) {
        ck_assert(!gt_gemma_layer_is_local(&g1, i));
        ck_assert(gt_gemma_layer_is_local(&g2, i) == (i % 2 == 0));
        ck_assert(gt_gemma_layer_is_local(&g3, i) == (i % 6 < 5));
    }
    ck_assert(g2.attn_logit_softcap == 50 && g2.final_logit_softcap == 30);
    ck_assert(g3.rope_global_base == 1e6 && g3.rope_local_base == 1e4);
    ck_assert(preset("gemma3_4b_text").rope_global_scale == 8);
}
END_TEST

START_TEST(query_scaling_switch) {
    gt_gemma_config c = preset("gemma2_27b_en");
    ck_assert(!c.query_head_dim_normalize);
    ck_assert_double_eq_tol(gt_gemma_query_scale(&c), 1.0 / sqrt(128.0), 1e-15); /* KerasHub */
    c.kerashub_query_scaling = false;
    ck_assert_double_eq_tol(gt_gemma_query_scale(&c), 1.0 / 12.0, 1e-15);       /* HF: 144^-1/2 */
    gt_gemma_config d = preset("gemma3_27b_text");
    d.kerashub_query_scaling = false;
    ck_assert_double_eq_tol(gt_gemma_query_scale(&d), 1.0 / sqrt(168.0), 1e-15);
}
END_TEST

START_TEST(bad_configs_name_the_field) {
    char err[2048];
    gt_gemma_config c;
    ck_assert_int_ne(gt_gemma_preset("gemma3_2b", &c, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "gemma3_2b") && strstr(err, "gemma3_1b"), "%s", err);
    c = preset("gemma3_270m");
    c.num_kv_heads = 3;
    ck_assert_int_ne(gt_gemma_config_validate(&c, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "num_kv_heads"), "%s", err);
    c = preset("gemma3_270m");
    c.head_dim = 7;
    ck_assert_int_ne(gt_gemma_config_validate(&c, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "head_dim"), "%s", err);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gemma_config");
    TCase *tc = tcase_create("presets");
    tcase_add_test(tc, parameter_counts_match_kerashub);
    tcase_add_test(tc, every_preset_validates);
    tcase_add_test(tc, layer_patterns);
    tcase_add_test(tc, query_scaling_switch);
    tcase_add_test(tc, bad_configs_name_the_field);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
