/* Preset table and config validation. */
#include <check.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "models/gemma_config.h"
#include "models/gemma_fields.h"
#include "tests/check_main.h"

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
    /* multimodal: the text decoder plus the SigLIP vision encoder (KerasHub preset metadata) */
    {"gemma3_4b", 4299915632LL},          {"gemma3_instruct_4b", 4299915632LL},
    {"gemma3_12b", 12187079280LL},        {"gemma3_instruct_12b", 12187079280LL},
    {"gemma3_27b", 27432062576LL},        {"gemma3_instruct_27b", 27432062576LL},
    /* Gemma 4: the metadata is rounded and includes the vision/audio encoders, so these are
     * KerasHub's count_params() of the text-only Gemma4Backbone built with each preset's
     * hyperparameters (tools/reference/count_gemma4_params.py). */
    {"gemma4_2b", 4628569379LL},          {"gemma4_instruct_2b", 4628569379LL},
    {"gemma4_4b", 7463013418LL},          {"gemma4_instruct_4b", 7463013418LL},
    {"gemma4_31b", 30697345340LL},        {"gemma4_instruct_31b", 30697345340LL},
    {"gemma4_26b_a4b", 25233141790LL},    {"gemma4_instruct_26b_a4b", 25233141790LL}, /* MoE */
};

START_TEST(parameter_counts_match_kerashub) {
    int n = 0;
    for (size_t i = 0; i < sizeof published / sizeof published[0]; i++, n++) {
        gt_gemma_config c = preset(published[i].name);
        ck_assert_msg(gt_gemma_total_param_count(&c) == published[i].params, "%s: %lld != %lld",
                      published[i].name, (long long)gt_gemma_total_param_count(&c),
                      published[i].params);
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

START_TEST(gemma4_layers) {
    /* E2B: 4 local + 1 global, last 20 of 35 layers share k/v and use a 2F MLP */
    gt_gemma_config e2 = preset("gemma4_2b");
    for (int64_t i = 0; i < 35; i++) {
        bool global = i % 5 == 4;
        ck_assert(gt_gemma_layer_is_local(&e2, i) == !global);
        ck_assert_int_eq(gt_gemma_layer_head_dim(&e2, i), global ? 512 : 256);
        ck_assert_int_eq(gt_gemma_layer_rotary_dims(&e2, i), global ? 128 : 256);
        ck_assert_int_eq(gt_gemma_layer_kv_heads(&e2, i), 1);
        ck_assert(!gt_gemma_layer_k_eq_v(&e2, i));
        /* shared layers read the last unshared layer of their type: 13 (local) or 14 (global) */
        ck_assert_int_eq(gt_gemma_kv_source(&e2, i), i < 15 ? -1 : global ? 14 : 13);
        ck_assert_int_eq(gt_gemma_layer_ffw_dim(&e2, i), i < 15 ? 6144 : 12288);
    }
    ck_assert(e2.final_logit_softcap == 30 && e2.attn_logit_softcap == 0 && !e2.norm_add_one);
    ck_assert(gt_gemma_query_scale(&e2) == 1.0);
    /* 31B: global layers have 4 kv heads with k = v, no sharing */
    gt_gemma_config b31 = preset("gemma4_31b");
    ck_assert_int_eq(gt_gemma_layer_kv_heads(&b31, 5), 4);
    ck_assert(gt_gemma_layer_k_eq_v(&b31, 5) && !gt_gemma_layer_k_eq_v(&b31, 4));
    ck_assert_int_eq(gt_gemma_layer_kv_heads(&b31, 4), 16);
    ck_assert_int_eq(gt_gemma_kv_source(&b31, 59), -1);
    /* generations 1-3 are untouched by the Gemma 4 helpers */
    gt_gemma_config g3 = preset("gemma3_1b");
    ck_assert_int_eq(gt_gemma_layer_head_dim(&g3, 5), 256);
    ck_assert_int_eq(gt_gemma_kv_source(&g3, 25), -1);
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
    c = preset("gemma3_270m");
    c.num_kv_shared_layers = 2; /* Gemma 4 only */
    ck_assert_int_ne(gt_gemma_config_validate(&c, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "num_kv_shared_layers"), "%s", err);
    c = preset("gemma4_4b");
    c.num_kv_shared_layers = 42;
    ck_assert_int_ne(gt_gemma_config_validate(&c, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "num_kv_shared_layers"), "%s", err);
    c = preset("gemma4_4b");
    c.num_layers = 6; /* layers 0-4 local, 5 global: sharing 1 leaves no earlier global */
    c.num_kv_shared_layers = 1;
    ck_assert_int_ne(gt_gemma_config_validate(&c, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "layer 5 (global)"), "%s", err);
    c = preset("gemma4_31b");
    c.num_global_kv_heads = 5;
    ck_assert_int_ne(gt_gemma_config_validate(&c, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "num_global_key_value_heads"), "%s", err);
    c = preset("gemma4_31b");
    c.rope_global_partial = 0;
    ck_assert_int_ne(gt_gemma_config_validate(&c, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "partial"), "%s", err);
}
END_TEST

/* The field table covers every architecture field of gt_gemma_config once (the rest, listed
 * here, are not file keys: the name, the generation and the flags it fixes), and its accessors
 * write what they read. */
START_TEST(field_table_covers_the_config) {
    size_t n;
    const gt_gemma_field *f = gt_gemma_fields(&n);
    static const size_t not_keys[] = {offsetof(gt_gemma_config, name), offsetof(gt_gemma_config, generation),
                                      offsetof(gt_gemma_config, norm_add_one),
                                      offsetof(gt_gemma_config, kerashub_query_scaling)};
    unsigned char seen[sizeof(gt_gemma_config)] = {0};
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(f[i].off < sizeof(gt_gemma_config) && !seen[f[i].off], "%s: offset repeated", f[i].name);
        seen[f[i].off] = 1;
        ck_assert_msg(f[i].keras || f[i].hf_gens || f[i].gguf, "%s: no format names it", f[i].name);
        gt_gemma_config c;
        memset(&c, 0, sizeof c);
        gt_gemma_field_set(&c, &f[i], 3);
        ck_assert_msg(gt_gemma_field_get(&c, &f[i]) == (f[i].type == GT_FIELD_BOOL ? 1 : 3), "%s", f[i].name);
        if (f[i].keras) ck_assert(gt_gemma_field_keras(f[i].keras, __builtin_ctz(f[i].keras_gens)) == &f[i]);
    }
    for (size_t k = 0; k < sizeof not_keys / sizeof not_keys[0]; k++) seen[not_keys[k]] = 1;
    /* every member's offset (the struct's members, in order) */
#define M(m) offsetof(gt_gemma_config, m)
    static const size_t members[] = {
        M(name), M(generation), M(vocab_size), M(num_layers), M(hidden_dim), M(intermediate_dim),
        M(num_query_heads), M(num_kv_heads), M(head_dim), M(rms_eps), M(norm_add_one),
        M(use_post_attention_norm), M(use_post_ffw_norm), M(use_qk_norm), M(attn_logit_softcap),
        M(final_logit_softcap), M(sliding_window), M(sliding_pattern), M(rope_local_base),
        M(rope_global_base), M(rope_local_scale), M(rope_global_scale), M(query_head_dim_normalize),
        M(kerashub_query_scaling), M(max_seq_len), M(global_head_dim), M(num_global_kv_heads),
        M(rope_global_partial), M(num_kv_shared_layers), M(double_wide_mlp), M(per_layer_input_dim),
        M(per_layer_vocab_size), M(moe), M(num_experts), M(expert_dim), M(experts_per_token)};
#undef M
    for (size_t k = 0; k < sizeof members / sizeof members[0]; k++)
        ck_assert_msg(seen[members[k]], "member %zu of gt_gemma_config has no row in gemma_fields.c", k);
    ck_assert_uint_eq(n + sizeof not_keys / sizeof not_keys[0], sizeof members / sizeof members[0]);
}
END_TEST

/* Values past a field's type saturate instead of converting out of range (UB under UBSan). */
START_TEST(field_set_saturates) {
    size_t n;
    const gt_gemma_field *f = gt_gemma_fields(&n);
    gt_gemma_config c;
    memset(&c, 0, sizeof c);
    int seen_int = 0, seen_i64 = 0;
    for (size_t i = 0; i < n; i++) {
        if (f[i].type != GT_FIELD_INT) continue;
        double lim = f[i].size == sizeof(int) ? 2147483647.0 : 9223372036854775807.0;
        gt_gemma_field_set(&c, &f[i], 1e30);
        ck_assert_msg(gt_gemma_field_get(&c, &f[i]) == lim, "%s: %g", f[i].name, gt_gemma_field_get(&c, &f[i]));
        gt_gemma_field_set(&c, &f[i], -1e30);
        ck_assert(gt_gemma_field_get(&c, &f[i]) == -lim - 1);
        gt_gemma_field_set(&c, &f[i], NAN);
        ck_assert(gt_gemma_field_get(&c, &f[i]) == 0);
        gt_gemma_field_set(&c, &f[i], 7);
        ck_assert(gt_gemma_field_get(&c, &f[i]) == 7);
        if (f[i].size == sizeof(int)) seen_int++;
        else seen_i64++;
    }
    ck_assert(seen_int > 0 && seen_i64 > 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gemma_config");
    TCase *tc = tcase_create("presets");
    tcase_add_test(tc, parameter_counts_match_kerashub);
    tcase_add_test(tc, every_preset_validates);
    tcase_add_test(tc, layer_patterns);
    tcase_add_test(tc, query_scaling_switch);
    tcase_add_test(tc, gemma4_layers);
    tcase_add_test(tc, bad_configs_name_the_field);
    tcase_add_test(tc, field_table_covers_the_config);
    tcase_add_test(tc, field_set_saturates);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
