/* Custom architectures from YAML (model.architecture): a Gemma 1, 2, 3 and 4 built from config
 * text get every field they set; every row of gt_gemma_fields() is reachable by name; unknown
 * names, bad values and contradictions are one clear error naming the key. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "models/gemma_fields.h"
#include "train/config.h"
#include "train/job.h"
#include "tests/check_main.h"

static char err[1024];

#define TOK "tests/fixtures/spm/gemma4_chat_vocab.spm"
#define BASE "vocab_size: 1024, num_layers: 4, hidden_dim: 16, intermediate_dim: 24, num_query_heads: 2, " \
             "num_kv_heads: 1, head_dim: 8, rms_eps: 1.0e-5, max_seq_len: 2048"

static const char *const per_gen[5] = {
    NULL,
    "use_post_attention_norm: true, final_logit_softcap: 7.5, rope_global_base: 5000.0",
    "sliding_window: 3, sliding_pattern: 2, attn_logit_softcap: 20.0, query_head_dim_normalize: false",
    "use_qk_norm: false, sliding_window: 5, sliding_pattern: 3, rope_local_base: 100.0, rope_global_scale: 4.0",
    "sliding_window: 3, sliding_pattern: 2, global_head_dim: 16, num_global_kv_heads: 1, "
    "rope_global_partial: 0.25, num_kv_shared_layers: 2, double_wide_mlp: true, per_layer_input_dim: 4, "
    "per_layer_vocab_size: 512, rope_local_scale: 2.0",
};

static int load(const char *text, gt_config *c) {
    gt_config_defaults(c);
    if (gt_config_parse_text(text, strlen(text), "custom.yaml", c, err, sizeof err)) return -1;
    gt_config_resolve(c);
    return gt_config_check(c, err, sizeof err);
}

START_TEST(custom_model_of_each_generation) {
    int g = _i;
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "model:\n  generation: %d\n  architecture: {%s, %s}\ntokenizer: " TOK "\n"
             "data: {train: tests/fixtures/debian-train-200.jsonl}\ntrain: {full_finetune: true}\n"
             "lora: {enabled: false}\n",
             g, BASE, per_gen[g]);
    gt_config c;
    ck_assert_msg(load(yaml, &c) == 0, "%s", err);
    gt_dist solo = {.world = 1, .local_world = 1};
    gt_job j;
    gt_job_init(&j, &c, &solo);
    ck_assert_msg(gt_job_build_model(&j, err, sizeof err) == 0, "Gemma %d: %s", g, err);
    const gt_gemma_config *mc = &j.model->cfg;
    ck_assert_int_eq(mc->generation, g);
    size_t n, set = 0;
    const gt_gemma_field *f = gt_gemma_fields(&n);
    for (size_t i = 0; i < n; i++) {
        if (!c.model.architecture_set[i]) continue;
        set++;
        ck_assert_msg(gt_gemma_field_get(mc, &f[i]) == c.model.architecture[i], "Gemma %d: %s is %g, config %g", g,
                      f[i].name, gt_gemma_field_get(mc, &f[i]), c.model.architecture[i]);
    }
    ck_assert_uint_ge(set, 12);
    /* the written config reads back the same */
    char *buf = NULL;
    size_t len = 0;
    FILE *w = open_memstream(&buf, &len);
    gt_config_write(&c, w);
    fclose(w);
    gt_config back;
    gt_config_defaults(&back);
    ck_assert_msg(gt_config_parse_text(buf, len, "back.yaml", &back, err, sizeof err) == 0, "%s", err);
    ck_assert_ptr_null(gt_config_diff(&c, &back));
    free(buf);
    gt_job_free(&j);
}
END_TEST

/* Every field of the table can be set by name, through an override too. */
START_TEST(every_field_reachable) {
    size_t n;
    const gt_gemma_field *f = gt_gemma_fields(&n);
    ck_assert_uint_le(n, GT_CFG_ARCH);
    gt_config c;
    gt_config_defaults(&c);
    for (size_t i = 0; i < n; i++) {
        char kv[128];
        snprintf(kv, sizeof kv, "model.architecture.%s=%s", f[i].name, f[i].type == GT_FIELD_BOOL ? "true" : "3");
        ck_assert_msg(gt_config_override(&c, kv, err, sizeof err) == 0, "%s", err);
        ck_assert(c.model.architecture_set[i] && c.model.architecture[i] == (f[i].type == GT_FIELD_BOOL ? 1 : 3));
    }
    /* a flow mapping merges; "model.architecture=" clears */
    ck_assert(gt_config_override(&c, "model.architecture={num_layers: 7}", err, sizeof err) == 0);
    ck_assert(c.model.architecture[1] == 7 && c.model.architecture_set[0]);
    ck_assert(gt_config_override(&c, "model.architecture=", err, sizeof err) == 0);
    for (size_t i = 0; i < n; i++) ck_assert(!c.model.architecture_set[i]);
}
END_TEST

static void bad(const char *yaml, const char *want1, const char *want2) {
    gt_config c;
    ck_assert_msg(load(yaml, &c) != 0, "accepted: %s", yaml);
    ck_assert_msg(strstr(err, want1) && strstr(err, want2), "%s", err);
    ck_assert_msg(!strchr(err, '\n'), "not one line: %s", err);
}

START_TEST(clear_errors) {
    const char *head = "tokenizer: " TOK "\ndata: {train: x.jsonl}\nmodel:\n  generation: 4\n  architecture:\n";
    char y[1024];
    snprintf(y, sizeof y, "%s    num_layer: 2\n", head);
    bad(y, "custom.yaml:6:5:", "unknown field 'num_layer' (did you mean 'num_layers'?)");
    snprintf(y, sizeof y, "%s    frobnicate: 2\n", head);
    bad(y, "unknown field 'frobnicate' (fields: vocab_size, num_layers", "head_dim");
    snprintf(y, sizeof y, "%s    use_qk_norm: 2\n", head);
    bad(y, "custom.yaml:6:18:", "model.architecture.use_qk_norm: expected true or false, got '2'");
    snprintf(y, sizeof y, "%s    num_layers: -2\n", head);
    bad(y, "model.architecture.num_layers", "out of range");
    snprintf(y, sizeof y, "%s    num_layers: 2.5\n", head);
    bad(y, "model.architecture.num_layers", "expected an integer, got '2.5'");
    snprintf(y, sizeof y, "%s    num_layers: [2]\n", head);
    bad(y, "model.architecture.num_layers", "expected a value, got a list");
    snprintf(y, sizeof y, "%s    num_layers: 2\n    num_layers: 3\n", head);
    bad(y, "custom.yaml:7:5:", "duplicate key 'model.architecture.num_layers'");
    bad("tokenizer: t\ndata: {train: x}\nmodel: {architecture: 4}\n", "custom.yaml:3:23:",
        "expected a mapping like {num_layers: 4}");
    bad("tokenizer: t\ndata: {train: x}\nmodel: {num_layers: 2, architecture: {num_layers: 3}}\n",
        "model.num_layers and model.architecture.num_layers are both set", "give one");
    bad("data: {train: x}\nmodel: {weights: m.gguf, architecture: {rms_eps: 1.0e-5}}\n",
        "model.architecture cannot change a model loaded from model.weights", "");
    bad("tokenizer: t\ndata: {train: x}\nmodel: {generation: 4, architecture: {vocab_size: 8, num_layers: 2}}\n",
        "missing required key 'model.hidden_dim' or model.architecture.hidden_dim", "");
    bad("tokenizer: t\ndata: {train: x}\nmodel: {generation: 5}\n", "model.generation", "out of range [0, 4]");
    /* an invalid combination is refused when the model is built, naming the field */
    gt_config c;
    ck_assert(load("tokenizer: " TOK "\ndata: {train: x}\nmodel: {generation: 4, architecture: {" BASE
                   ", num_kv_shared_layers: 9}}\n", &c) == 0);
    gt_dist solo = {.world = 1, .local_world = 1};
    gt_job j;
    gt_job_init(&j, &c, &solo);
    ck_assert_int_ne(gt_job_build_model(&j, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "num_kv_shared_layers"), "%s", err);
    gt_job_free(&j);
}
END_TEST

/* configs/gemma4-tiny.yaml through the CLI: a custom Gemma 4 fine-tunes with LoRA in Gemma 4's
 * chat format and its eval loss goes down. */
/* The README's config reference lists every field model.architecture accepts (it fell behind
   once: the MoE fields were missing). */
START_TEST(readme_lists_every_field) {
    FILE *fp = fopen("README.md", "rb");
    ck_assert_msg(fp != NULL, "README.md not found (tests run from the repository root)");
    char line[8192], row[8192] = "";
    while (fgets(line, sizeof line, fp))
        if (!strncmp(line, "| `model.architecture` |", 24)) snprintf(row, sizeof row, "%s", line);
    fclose(fp);
    ck_assert_msg(row[0], "README.md has no '| `model.architecture` |' row");
    size_t n;
    const gt_gemma_field *f = gt_gemma_fields(&n);
    for (size_t i = 0; i < n; i++) {
        char want[96];
        snprintf(want, sizeof want, " %s,", f[i].name);
        char last[96];
        snprintf(last, sizeof last, " %s |", f[i].name);
        ck_assert_msg(strstr(row, want) || strstr(row, last),
                      "README's model.architecture row lacks '%s'", f[i].name);
    }
}
END_TEST

START_TEST(tiny_gemma4_example_trains) {
    static char out[1 << 16];
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s train configs/gemma4-tiny.yaml output_dir=/tmp/gt-test-g4tiny-%d 2>&1; rm -rf /tmp/gt-test-g4tiny-%d",
             getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain", (int)getpid(), (int)getpid());
    FILE *p = popen(cmd, "r");
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = 0;
    int st = pclose(p);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", out);
    const char *b = strstr(out, "eval before training: loss "), *a = strstr(out, "eval after training: loss ");
    ck_assert_msg(b && a, "%s", out);
    double before = atof(b + 27), after = atof(a + 26);
    ck_assert_msg(after < before - 0.1, "eval loss %.4f -> %.4f", before, after);
    ck_assert_msg(strstr(out, "template: auto"), "%s", out);
}
END_TEST

int main(void) {
    Suite *s = suite_create("custom_arch");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, custom_model_of_each_generation, 1, 5);
    tcase_add_test(tc, every_field_reachable);
    tcase_add_test(tc, clear_errors);
    tcase_add_test(tc, tiny_gemma4_example_trains);
    tcase_add_test(tc, readme_lists_every_field);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
