/* PEFT adapters (models/io/peft.h) against the real PEFT library's fixtures
 * (tools/reference/make_peft_fixtures.py, peft 0.21 + transformers on the tiny HF models of
 * tests/fixtures/hf):
 *   - ours: adapters made here from a seed, written by gt_peft_save; PEFT loaded that directory
 *     onto the HF model (PeftModel.from_pretrained) and recorded its logits, which ours match;
 *     the directory written now is byte for byte the one PEFT read;
 *   - theirs: an adapter PEFT made (random A and B, rank 2, all seven projections; and one with
 *     use_rslora and an alpha_pattern) opened here: our logits match PEFT's;
 *   - round trip save -> open gives the same merged weights (Gemma 3 and Gemma 4);
 *   - bad directories: one clear error.
 * GT_WRITE_PEFT_FIXTURE=DIR writes the "ours" adapters of a model to DIR/<name> and exits (the
 * fixture script's input). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/io/h5io.h"
#include "tests/logits.h"
#include "models/io/hf_gemma.h"
#include "models/io/peft.h"
#include "tests/cli_run.h"

#define FIX "tests/fixtures/peft"

static char g_tmp[256];
static char g_err[1024];

/* Outside a test (the fixture mode) Check's assertions cannot be used: NULL and g_err instead. */
static gt_gemma *load_model(const char *name) {
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fixtures/hf/%s", name);
    gt_gemma *m = NULL;
    return gt_hf_gemma_load(dir, false, &m, g_err, sizeof g_err) ? NULL : m;
}

/* The "ours" adapters: rank 2, alpha 5, every target; A from the seed, B a fixed pattern. */
static gt_lora *make_adapters(const gt_gemma *m) {
    gt_lora *l;
    if (gt_lora_create_for(&m->cfg, 2, 5.0, (1u << GT_LORA_NTARGETS) - 1, 11, &l, g_err, sizeof g_err)) return NULL;
    int64_t k = 0;
    for (int64_t i = 0; i < l->num_layers * GT_LORA_NTARGETS; i++) {
        gt_lora_adapter *ad = &l->adapters[i];
        if (!ad->a.data) continue;
        for (int64_t j = 0; j < ad->b.size; j++, k++) ad->b.data[j] = (gt_real)(0.05 * sin(0.7 * (double)k + 1.0));
    }
    return l;
}

static gt_gemma *load_hf(const char *name) {
    gt_gemma *m = load_model(name);
    ck_assert_msg(m, "%s", g_err);
    return m;
}

static gt_lora *our_adapters(const gt_gemma *m) {
    gt_lora *l = make_adapters(m);
    ck_assert_msg(l, "%s", g_err);
    return l;
}


static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)len + 1);
    ck_assert(p && fread(p, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return p;
}

static void same_file(const char *a, const char *b) {
    size_t na, nb;
    uint8_t *pa = read_all(a, &na), *pb = read_all(b, &nb);
    ck_assert_msg(na == nb && !memcmp(pa, pb, na), "%s and %s differ", a, b);
    free(pa);
    free(pb);
}

/* Every kernel of a copy of m with l merged in. */
static gt_real *merged(const char *name, const gt_lora *l, int64_t *n) {
    gt_gemma *m = load_hf(name);
    ck_assert_msg(gt_gemma_merge_lora(m, l, g_err, sizeof g_err) == 0, "%s", g_err);
    gt_real *v = malloc((size_t)m->n_values * sizeof *v);
    memcpy(v, m->data, (size_t)m->n_values * sizeof *v);
    *n = m->n_values;
    gt_gemma_free(m);
    return v;
}

START_TEST(ours_loaded_by_peft_gives_our_logits) {
    static const char *const names[] = {"gemma3", "gemma4"};
    const char *name = names[_i];
    gt_gemma *m = load_hf(name);
    gt_lora *l = our_adapters(m);
    m->lora = l;
    char ref[256], dir[256], a[512], b[512];
    snprintf(ref, sizeof ref, FIX "/%s_ours_ref.h5", name);
    double e = gt_test_compare_ref(m, ref, 0.5);
    printf("peft %s: our logits vs PEFT's on our export: %.2e x max|logit|\n", name, e);
    ck_assert_msg(e <= 1e-4, "%s: %g", name, e);
    /* what we write now is what PEFT read */
    snprintf(dir, sizeof dir, "%s/%s_ours", g_tmp, name);
    ck_assert_msg(gt_peft_save(dir, l, &m->cfg, NULL, g_err, sizeof g_err) == 0, "%s", g_err);
    snprintf(a, sizeof a, "%s/adapter_model.safetensors", dir);
    snprintf(b, sizeof b, FIX "/%s_ours/adapter_model.safetensors", name);
    same_file(a, b);
    snprintf(a, sizeof a, "%s/adapter_config.json", dir);
    snprintf(b, sizeof b, FIX "/%s_ours/adapter_config.json", name);
    same_file(a, b);
    gt_lora_free(l);
    gt_gemma_free(m);
}
END_TEST

START_TEST(theirs_opened_gives_peft_logits) {
    static const char *const cases[][2] = {{"gemma3", "gemma3_theirs"}, {"gemma3", "gemma3_theirs_rslora"},
                                           {"gemma4", "gemma4_theirs"}};
    gt_gemma *m = load_hf(cases[_i][0]);
    char dir[256], ref[256];
    snprintf(dir, sizeof dir, FIX "/%s", cases[_i][1]);
    snprintf(ref, sizeof ref, FIX "/%s_ref.h5", cases[_i][1]);
    gt_lora *l;
    ck_assert(gt_peft_detect(dir));
    ck_assert_msg(gt_adapters_open(dir, &m->cfg, &l, g_err, sizeof g_err) == 0, "%s", g_err);
    m->lora = l;
    double e = gt_test_compare_ref(m, ref, 0.5);
    printf("peft %s: our logits with PEFT's adapter vs PEFT's: %.2e x max|logit| (rank %lld here)\n", cases[_i][1],
           e, (long long)l->rank);
    ck_assert_msg(e <= 1e-4, "%s: %g", cases[_i][1], e);
    /* and merged into the kernels, the same model */
    m->lora = NULL;
    ck_assert_msg(gt_gemma_merge_lora(m, l, g_err, sizeof g_err) == 0, "%s", g_err);
    e = gt_test_compare_ref(m, ref, 0.5);
    ck_assert_msg(e <= 1e-4, "%s merged: %g", cases[_i][1], e);
    gt_lora_free(l);
    gt_gemma_free(m);
}
END_TEST

START_TEST(save_open_round_trip_merges_the_same) {
    static const char *const names[] = {"gemma3", "gemma4"};
    gt_gemma *m = load_hf(names[_i]);
    gt_lora *l = our_adapters(m), *back;
    char dir[256];
    snprintf(dir, sizeof dir, "%s/rt_%s", g_tmp, names[_i]);
    ck_assert_msg(gt_peft_save(dir, l, &m->cfg, "base", g_err, sizeof g_err) == 0, "%s", g_err);
    ck_assert_msg(gt_peft_open(dir, &m->cfg, &back, g_err, sizeof g_err) == 0, "%s", g_err);
    ck_assert_uint_eq(back->targets, l->targets);
    int64_t n1, n2;
    gt_real *w1 = merged(names[_i], l, &n1), *w2 = merged(names[_i], back, &n2);
    ck_assert_int_eq(n1, n2);
    double md = 0, mx = 0;
    for (int64_t i = 0; i < n1; i++) md = fmax(md, fabs((double)w1[i] - w2[i])), mx = fmax(mx, fabs((double)w1[i]));
    ck_assert_msg(md <= 1e-6 * mx, "%s: merged weights differ by %g (max %g)", names[_i], md, mx);
    free(w1);
    free(w2);
    gt_lora_free(l);
    gt_lora_free(back);
    gt_gemma_free(m);
}
END_TEST

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ck_assert(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(bad_directories_are_refused) {
    gt_gemma *m = load_hf("gemma3");
    gt_lora *l = our_adapters(m), *back = NULL;
    char dir[256], cfg[300];
    snprintf(dir, sizeof dir, "%s/bad", g_tmp);
    ck_assert_msg(gt_peft_save(dir, l, &m->cfg, NULL, g_err, sizeof g_err) == 0, "%s", g_err);
    snprintf(cfg, sizeof cfg, "%s/adapter_config.json", dir);
    static const char *const configs[][2] = {
        {"{\"peft_type\": \"LORA\", \"lora_alpha\": 4, \"use_dora\": true}", "DoRA"},
        {"{\"peft_type\": \"IA3\"}", "peft_type"},
        {"{\"peft_type\": \"LORA\", \"lora_alpha\": 4, \"bias\": \"all\"}", "bias"},
        {"{\"peft_type\": \"LORA\", \"lora_alpha\": 4, \"modules_to_save\": [\"lm_head\"]}", "modules_to_save"},
        {"{\"peft_type\": \"LORA\"", "adapter_config.json"},
    };
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++) {
        write_text(cfg, configs[k][0]);
        ck_assert(gt_peft_open(dir, &m->cfg, &back, g_err, sizeof g_err) != 0);
        ck_assert_ptr_null(back);
        ck_assert_msg(strstr(g_err, configs[k][1]), "case %zu: %s", k, g_err);
    }
    /* adapters for another model's shapes */
    gt_gemma *m4 = load_hf("gemma4");
    snprintf(dir, sizeof dir, "%s/other", g_tmp);
    ck_assert_msg(gt_peft_save(dir, l, &m->cfg, NULL, g_err, sizeof g_err) == 0, "%s", g_err);
    ck_assert(gt_peft_open(dir, &m4->cfg, &back, g_err, sizeof g_err) != 0);
    ck_assert_msg(strstr(g_err, "do not fit") || strstr(g_err, "does not have"), "%s", g_err);
    gt_gemma_free(m4);
    /* no safetensors */
    snprintf(cfg, sizeof cfg, "%s/adapter_model.safetensors", dir);
    ck_assert(remove(cfg) == 0);
    ck_assert(gt_peft_open(dir, &m->cfg, &back, g_err, sizeof g_err) != 0);
    ck_assert_msg(strstr(g_err, "adapter_model.safetensors"), "%s", g_err);
    gt_lora_free(l);
    gt_gemma_free(m);
}
END_TEST

int main(void) {
    const char *fixture_out = getenv("GT_WRITE_PEFT_FIXTURE");
    if (fixture_out && *fixture_out) {
        static const char *const names[] = {"gemma3", "gemma4"};
        for (int k = 0; k < 2; k++) {
            gt_gemma *m = load_model(names[k]);
            gt_lora *l = m ? make_adapters(m) : NULL;
            char dir[512];
            snprintf(dir, sizeof dir, "%s/%s_ours", fixture_out, names[k]);
            if (!l || gt_peft_save(dir, l, &m->cfg, NULL, g_err, sizeof g_err)) {
                fprintf(stderr, "test_peft: %s\n", g_err);
                return EXIT_FAILURE;
            }
            printf("wrote %s\n", dir);
            gt_lora_free(l);
            gt_gemma_free(m);
        }
        return EXIT_SUCCESS;
    }
    snprintf(g_tmp, sizeof g_tmp, "/tmp/gt_peft_test_XXXXXX");
    if (!mkdtemp(g_tmp)) return perror("mkdtemp"), EXIT_FAILURE;
    Suite *s = suite_create("peft");
    TCase *tc = tcase_create("peft");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, ours_loaded_by_peft_gives_our_logits, 0, 2);
    tcase_add_loop_test(tc, theirs_opened_gives_peft_logits, 0, 3);
    tcase_add_loop_test(tc, save_open_round_trip_merges_the_same, 0, 2);
    tcase_add_test(tc, bad_directories_are_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    gt_test_rmtree(g_tmp);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
