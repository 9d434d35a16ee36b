/* gemmatrain convert / export between formats, end to end through the CLI: a KerasHub preset
 * converted to Hugging Face and back scores every token exactly as the original; LoRA merged
 * into an HF export scores like LoRA merged into a KerasHub export; misuse is refused. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/check_main.h"

static char tmp[128];
static char out[1 << 16];

static int gt(const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain", args);
    FILE *p = popen(cmd, "r");
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The --score JSON line of a model (tokens and per-token losses). */
static char *score(const char *model) {
    char args[512];
    snprintf(args, sizeof args, "generate --model %s --score \"The package provides a library.\"", model);
    int rc = gt(args);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
    char *line = strstr(out, "{\"tokens\"");
    ck_assert_msg(line != NULL, "%s", out);
    char *end = strchr(line, '\n');
    if (end) *end = 0;
    return strdup(line);
}

static void setup(void) {
    snprintf(tmp, sizeof tmp, "/tmp/gt-test-convert-%d", (int)getpid());
}

static void teardown(void) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    ck_assert(system(cmd) == 0);
}

START_TEST(keras_to_hf_and_back_scores_the_same) {
    char args[512], hf[256], back[256];
    snprintf(hf, sizeof hf, "%s/hf", tmp);
    snprintf(back, sizeof back, "%s/keras", tmp);
    snprintf(args, sizeof args, "convert tests/fixtures/presets/gemma3 %s --format hf", hf);
    ck_assert_msg(gt(args) == 0, "%s", out);
    snprintf(args, sizeof args, "convert %s %s", hf, back);
    ck_assert_msg(gt(args) == 0, "%s", out);
    char *a = score("tests/fixtures/presets/gemma3"), *b = score(hf), *c = score(back);
    ck_assert_str_eq(a, b);
    ck_assert_str_eq(a, c);
    free(a);
    free(b);
    free(c);
}
END_TEST

START_TEST(merged_lora_exports_agree) {
    char cfg[256], args[1024], k[256], h[256];
    snprintf(cfg, sizeof cfg, "%s.yaml", tmp);
    FILE *f = fopen(cfg, "w");
    fprintf(f, "model:\n  weights: tests/fixtures/presets/gemma3\nlora:\n  enabled: true\n"
               "  weights: tests/fixtures/presets/gemma3.lora.h5\n");
    fclose(f);
    snprintf(k, sizeof k, "%s/merged-keras", tmp);
    snprintf(h, sizeof h, "%s/merged-hf", tmp);
    snprintf(args, sizeof args, "export %s --out %s --merge-lora", cfg, k);
    ck_assert_msg(gt(args) == 0, "%s", out);
    snprintf(args, sizeof args, "export %s --out %s --merge-lora --format hf", cfg, h);
    ck_assert_msg(gt(args) == 0, "%s", out);
    char *a = score(k), *b = score(h), *base = score("tests/fixtures/presets/gemma3");
    ck_assert_str_eq(a, b);
    ck_assert_str_ne(a, base); /* the adapters changed something */
    free(a);
    free(b);
    free(base);
    /* an HF directory holds one set of weights */
    snprintf(args, sizeof args, "export %s --out %s/x --format hf", cfg, tmp);
    ck_assert_int_eq(gt(args), 2);
    ck_assert_msg(strstr(out, "add --merge-lora"), "%s", out);
    ck_assert_int_eq(gt("convert tests/fixtures/presets/gemma3 /tmp/x --format onnx"), 2);
    ck_assert_msg(strstr(out, "expected keras, hf or gguf, got 'onnx'"), "%s", out);
    unlink(cfg);
}
END_TEST

static double json_loss(void) {
    const char *p = strstr(out, "{\"loss\": ");
    ck_assert_msg(p != NULL, "no JSON result in:\n%s", out);
    return atof(p + 9);
}

/* A checkpoint exports as the trained model: its own config rebuilds the base, the trained
 * adapters are merged, and both formats score the eval set with exactly the trained loss; also
 * for a run whose frozen base was stored as bf16 (it trained on the rounded weights: those go out). */
START_TEST(export_from_a_checkpoint) {
    const char *small = "tokenizer=tests/fixtures/gemma3-tokenizer-8k.json model.vocab_size=8192 train.steps=6 "
                        "schedule.warmup_steps=0 lora.enabled=true train.full_finetune=false optimizer.learning_rate=0.05";
    const char *reset = "model.generation=0 model.vocab_size=0 model.num_layers=0 model.hidden_dim=0 "
                        "model.intermediate_dim=0 model.num_query_heads=0 model.num_key_value_heads=0 "
                        "model.head_dim=0 model.sliding_window_size=-1 tokenizer=";
    char args[1024];
    const char *dtypes[2] = {"fp32", "bf16"};
    for (int d = 0; d < 2; d++) {
        snprintf(args, sizeof args, "train configs/tiny.yaml %s model.frozen_dtype=%s checkpoint.dir=%s/ck%d",
                 small, dtypes[d], tmp, d);
        ck_assert_msg(gt(args) == 0, "%s", out);
        const char *p = strstr(out, "eval after training: loss ");
        ck_assert_msg(p != NULL, "%s", out);
        double trained = atof(p + 26);
        const char *fmts[2] = {"", "--format hf"};
        for (int i = 0; i < 2; i++) {
            snprintf(args, sizeof args, "export %s/ck%d/ckpt-00000006.h5 --out %s/m%d%d --merge-lora %s", tmp, d,
                     tmp, d, i, fmts[i]);
            ck_assert_msg(gt(args) == 0, "%s: %s", dtypes[d], out);
            snprintf(args, sizeof args, "eval configs/tiny.yaml model.weights=%s/m%d%d %s", tmp, d, i, reset);
            ck_assert_msg(gt(args) == 0, "%s", out);
            ck_assert_msg(fabs(json_loss() - trained) < 1e-4, "%s %s: %.6f vs %.6f", dtypes[d], fmts[i], json_loss(),
                          trained);
        }
    }
    /* a full fine-tuning checkpoint has nothing to merge */
    snprintf(args, sizeof args, "train configs/tiny.yaml tokenizer=tests/fixtures/gemma3-tokenizer-8k.json "
             "model.vocab_size=8192 train.steps=2 schedule.warmup_steps=0 data.eval= checkpoint.dir=%s/full", tmp);
    ck_assert_msg(gt(args) == 0, "%s", out);
    snprintf(args, sizeof args, "export %s/full/ckpt-00000002.h5 --out %s/f --merge-lora", tmp, tmp);
    ck_assert_int_eq(gt(args), 2);
    ck_assert_msg(strstr(out, "no adapters to merge"), "%s", out);
}
END_TEST

int main(void) {
    Suite *s = suite_create("convert");
    TCase *tc = tcase_create("convert");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, keras_to_hf_and_back_scores_the_same);
    tcase_add_test(tc, merged_lora_exports_agree);
    tcase_add_test(tc, export_from_a_checkpoint);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
