/* gemmatrain convert / export between formats, end to end through the CLI: a KerasHub preset
 * converted to Hugging Face and back scores every token exactly as the original; LoRA merged
 * into an HF export scores like LoRA merged into a KerasHub export; misuse is refused. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
    ck_assert_msg(strstr(out, "expected keras or hf, got 'onnx'"), "%s", out);
    unlink(cfg);
}
END_TEST

int main(void) {
    Suite *s = suite_create("convert");
    TCase *tc = tcase_create("convert");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, keras_to_hf_and_back_scores_the_same);
    tcase_add_test(tc, merged_lora_exports_agree);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
