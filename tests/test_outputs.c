/* Outputs are never silently replaced (issue 13), through the CLI on the tiny config:
 *   eval leaves the training run's output_dir/config.yaml alone;
 *   a fresh train into an output_dir holding an adapter (or onto an existing metrics file) is
 *   refused with one line unless --overwrite / output.overwrite: true, and the file is untouched;
 *   a resumed run continues into its own output_dir without it;
 *   convert and export refuse an existing target unless --overwrite;
 *   after a resume, logging.metrics holds every step once (the steps an earlier invocation
 *   logged after its last checkpoint are dropped, not repeated);
 *   a resume with a config change that alters the run (learning rate, steps, ...) is refused
 *   naming every such key, unless checkpoint.allow_changes lists them; reporting changes pass;
 *   resume: latest skips a corrupted newest checkpoint for the one before (setting it aside). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tests/check_main.h"

static char dir[128];
static char out[1 << 17];

static int gt(const char *env, const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s %s 2>&1", env, getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain", args);
    FILE *p = popen(cmd, "r");
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static const char *tail_out(void) {
    size_t n = strlen(out);
    return n > 3000 ? out + n - 3000 : out;
}

/* Whole file, malloc'ed (NULL: none). */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = calloc((size_t)n + 1, 1);
    ck_assert((long)fread(b, 1, (size_t)n, f) == n);
    fclose(f);
    return b;
}

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/gt-test-outputs-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert(system(cmd) == 0);
}

#define LORA "configs/tiny.yaml data.eval= train.steps=4 schedule.warmup_steps=0 train.full_finetune=false lora.enabled=true"

START_TEST(eval_leaves_the_runs_config_alone) {
    char args[1024], path[256];
    snprintf(args, sizeof args, "train " LORA " output_dir=%s/run", dir);
    ck_assert_msg(gt("", args) == 0, "%s", tail_out());
    snprintf(path, sizeof path, "%s/run/config.yaml", dir);
    char *before = slurp(path);
    ck_assert(before && strstr(before, "steps: 4"));
    /* the run's config as eval gets it (output_dir included), with eval's own settings */
    snprintf(args, sizeof args, "eval " LORA " output_dir=%s/run lora.weights=%s/run/adapter.lora.h5 eval.batch_size=2",
             dir, dir);
    ck_assert_msg(gt("", args) == 0 && strstr(out, "\"loss\""), "%s", tail_out());
    char *after = slurp(path);
    ck_assert_str_eq(after, before);
    free(before);
    free(after);
}
END_TEST

START_TEST(train_refuses_to_replace_a_trained_result) {
    char args[1024], adapter[256];
    snprintf(args, sizeof args, "train " LORA " output_dir=%s/run", dir);
    ck_assert_msg(gt("", args) == 0, "%s", tail_out());
    snprintf(adapter, sizeof adapter, "%s/run/adapter.lora.h5", dir);
    char *first = slurp(adapter);
    ck_assert(first);
    /* another run (another seed) into the same place */
    snprintf(args, sizeof args, "train " LORA " output_dir=%s/run lora.seed=7", dir);
    ck_assert_int_eq(gt("", args), 1);
    ck_assert_msg(strstr(out, "gemmatrain train: output_dir: ") && strstr(out, adapter) && strstr(out, "--overwrite"),
                  "%s", tail_out());
    ck_assert_msg(!strstr(out, "step 1/"), "trained first:\n%s", tail_out());
    char *now = slurp(adapter);
    ck_assert(memcmp(now, first, 64) == 0);
    free(now);
    /* asked for: both spellings */
    snprintf(args, sizeof args, "train " LORA " output_dir=%s/run lora.seed=7 --overwrite", dir);
    ck_assert_msg(gt("", args) == 0 && strstr(out, "wrote "), "%s", tail_out());
    snprintf(args, sizeof args, "train " LORA " output_dir=%s/run lora.seed=8 output.overwrite=true", dir);
    ck_assert_msg(gt("", args) == 0, "%s", tail_out());
    free(first);
    /* an existing metrics file: the same */
    snprintf(args, sizeof args, "train " LORA " logging.metrics=%s/m.jsonl", dir);
    ck_assert_msg(gt("", args) == 0, "%s", tail_out());
    ck_assert_int_eq(gt("", args), 1);
    ck_assert_msg(strstr(out, "logging.metrics: ") && strstr(out, "m.jsonl already holds"), "%s", tail_out());
}
END_TEST

/* An invocation stopped by train.stop_after_steps, resumed into the same output_dir and metrics:
 * the run continues, nothing to refuse. */
START_TEST(a_resumed_run_continues_into_its_outputs) {
    char args[1024];
    snprintf(args, sizeof args, "train " LORA " output_dir=%s/run checkpoint.dir=%s/ck logging.metrics=%s/m.jsonl "
             "train.stop_after_steps=2", dir, dir, dir);
    ck_assert_msg(gt("", args) == 0, "%s", tail_out());
    snprintf(args, sizeof args, "train " LORA " output_dir=%s/run checkpoint.dir=%s/ck logging.metrics=%s/m.jsonl "
             "checkpoint.resume=latest", dir, dir, dir);
    ck_assert_msg(gt("", args) == 0 && strstr(out, "at step 2"), "%s", tail_out());
}
END_TEST

START_TEST(convert_and_export_refuse_an_existing_target) {
    char args[1024];
    snprintf(args, sizeof args, "convert tests/fixtures/presets/gemma3 %s/p", dir);
    ck_assert_msg(gt("", args) == 0, "%s", tail_out());
    ck_assert_int_eq(gt("", args), 1);
    ck_assert_msg(!strncmp(out, "gemmatrain convert: ", 20) && strstr(out, "already exists") &&
                  strstr(out, "--overwrite") && strchr(out, '\n') == out + strlen(out) - 1, "%s", tail_out());
    snprintf(args, sizeof args, "convert tests/fixtures/presets/gemma3 %s/p --overwrite", dir);
    ck_assert_msg(gt("", args) == 0, "%s", tail_out());
    /* export, from a checkpoint */
    snprintf(args, sizeof args, "train " LORA " checkpoint.dir=%s/ck", dir);
    ck_assert_msg(gt("", args) == 0, "%s", tail_out());
    snprintf(args, sizeof args, "export %s/ck/ckpt-00000004.h5 --out %s/x.lora.h5 --lora-only", dir, dir);
    ck_assert_msg(gt("", args) == 0, "%s", tail_out());
    ck_assert_int_eq(gt("", args), 1);
    ck_assert_msg(strstr(out, "gemmatrain export: ") && strstr(out, "x.lora.h5 already exists"), "%s", tail_out());
    snprintf(args, sizeof args, "export %s/ck/ckpt-00000004.h5 --out %s/x.lora.h5 --lora-only --overwrite", dir, dir);
    ck_assert_msg(gt("", args) == 0, "%s", tail_out());
}
END_TEST

/* Steps of a metrics file's step lines (not evals), in order; returns the count. */
static int metric_steps(const char *path, int *steps, int cap) {
    char *text = slurp(path);
    ck_assert_msg(text != NULL, "%s missing", path);
    int n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        const char *s = strstr(line, "\"step\": ");
        if (s && strstr(line, "\"loss\"") && n < cap) steps[n++] = atoi(s + 8);
    }
    free(text);
    return n;
}

START_TEST(metrics_after_a_resume_do_not_repeat_steps) {
    char args[1024], m[256];
    snprintf(m, sizeof m, "%s/m.jsonl", dir);
    /* killed as step 9 starts, the last checkpoint at step 5: steps 6-8 are logged but not saved */
    snprintf(args, sizeof args, "train configs/tiny.yaml data.eval= train.steps=12 schedule.warmup_steps=0 "
             "checkpoint.dir=%s/ck checkpoint.every_steps=5 logging.every_steps=1 logging.metrics=%s", dir, m);
    ck_assert_int_eq(gt("GT_FAULT_INJECT=rank_kill:0:9", args), 137);
    int steps[64];
    ck_assert_int_eq(metric_steps(m, steps, 64), 8);
    strcat(args, " checkpoint.resume=latest");
    ck_assert_msg(gt("", args) == 0 && strstr(out, "at step 5"), "%s", tail_out());
    int n = metric_steps(m, steps, 64);
    ck_assert_msg(n == 12, "%d step lines for 12 steps", n);
    for (int i = 0; i < n; i++) ck_assert_int_eq(steps[i], i + 1);
}
END_TEST

START_TEST(resume_refuses_changes_that_alter_the_run) {
    char base[1024], args[1200];
    snprintf(base, sizeof base, "train configs/tiny.yaml data.eval= train.steps=12 schedule.warmup_steps=0 "
             "checkpoint.dir=%s/ck", dir);
    snprintf(args, sizeof args, "%s train.stop_after_steps=4", base);
    ck_assert_msg(gt("", args) == 0, "%s", tail_out());
    snprintf(args, sizeof args, "%s checkpoint.resume=latest optimizer.learning_rate=0.5 train.steps=20", base);
    ck_assert_int_eq(gt("", args), 1);
    ck_assert_msg(strstr(out, "gemmatrain train: resume: ") && strstr(out, "optimizer.learning_rate, train.steps,") &&
                  strstr(out, "checkpoint.allow_changes"), "%s", tail_out());
    ck_assert_msg(!strstr(out, "step 5/"), "trained on:\n%s", tail_out());
    /* reporting settings change freely */
    snprintf(args, sizeof args, "%s checkpoint.resume=latest logging.every_steps=4 train.stop_after_steps=8", base);
    ck_assert_msg(gt("", args) == 0 && strstr(out, "accepted: logging.every_steps"), "%s", tail_out());
    /* listed: accepted */
    snprintf(args, sizeof args, "%s checkpoint.resume=latest optimizer.learning_rate=0.5 train.steps=20 "
             "checkpoint.allow_changes=[train.steps,optimizer.learning_rate]", base);
    ck_assert_msg(gt("", args) == 0 && strstr(out, "at step 8") && strstr(out, "step 20/20"), "%s", tail_out());
    snprintf(args, sizeof args, "%s checkpoint.allow_changes=[train.stepz]", base);
    ck_assert_int_eq(gt("", args), 2);
    ck_assert_msg(strstr(out, "'train.stepz' is not a config key"), "%s", tail_out());
}
END_TEST

/* Flips one byte in the middle of path. */
static void corrupt(const char *path) {
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, n / 2, SEEK_SET);
    int c = fgetc(f);
    fseek(f, n / 2, SEEK_SET);
    fputc(c ^ 0x5a, f);
    fclose(f);
}

/* checkpoint.resume: latest with a corrupted newest checkpoint: the one before is used, the bad
 * one set aside (so pruning cannot keep it instead of a good one); with every checkpoint bad the
 * newest one's error, and nothing renamed. */
START_TEST(resume_falls_back_past_a_corrupted_checkpoint) {
    char base[1024], args[1200], p4[256], p2[256], aside[300];
    snprintf(base, sizeof base, "train configs/tiny.yaml data.eval= train.steps=6 schedule.warmup_steps=0 "
             "checkpoint.dir=%s/ck checkpoint.every_steps=2 checkpoint.keep=2", dir);
    snprintf(args, sizeof args, "%s train.stop_after_steps=4", base);
    ck_assert_msg(gt("", args) == 0, "%s", tail_out());
    snprintf(p4, sizeof p4, "%s/ck/ckpt-00000004.h5", dir);
    snprintf(p2, sizeof p2, "%s/ck/ckpt-00000002.h5", dir);
    snprintf(aside, sizeof aside, "%s.corrupt", p4);
    corrupt(p4);
    corrupt(p2);
    snprintf(args, sizeof args, "%s checkpoint.resume=latest", base);
    ck_assert_int_eq(gt("", args), 1);
    ck_assert_msg(strstr(out, "gemmatrain train: ") && strstr(out, p4) && strstr(out, "checksum does not match"),
                  "%s", tail_out());
    struct stat sb;
    ck_assert(stat(p4, &sb) == 0 && stat(aside, &sb) != 0);
    /* the older one good again: resumed from it */
    snprintf(args, sizeof args, "%s train.stop_after_steps=2 checkpoint.resume=none output.overwrite=true", base);
    ck_assert_msg(gt("", args) == 0, "%s", tail_out());
    snprintf(args, sizeof args, "%s checkpoint.resume=latest", base);
    ck_assert_msg(gt("", args) == 0 && strstr(out, "does not match its contents); trying the one before") &&
                  strstr(out, "at step 2") && strstr(out, "set aside as") && strstr(out, "step 6/6"),
                  "%s", tail_out());
    ck_assert(stat(aside, &sb) == 0);
    /* the run went on past step 4: a good ckpt-4 and ckpt-6 are the newest now */
    ck_assert(stat(p4, &sb) == 0);
    snprintf(args, sizeof args, "%s checkpoint.resume=latest train.steps=6", base);
    ck_assert_msg(gt("", args) == 0 && strstr(out, "at step 6") && !strstr(out, "trying"), "%s", tail_out());
}
END_TEST

int main(void) {
    Suite *s = suite_create("outputs");
    TCase *tc = tcase_create("outputs");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, eval_leaves_the_runs_config_alone);
    tcase_add_test(tc, train_refuses_to_replace_a_trained_result);
    tcase_add_test(tc, a_resumed_run_continues_into_its_outputs);
    tcase_add_test(tc, convert_and_export_refuse_an_existing_target);
    tcase_add_test(tc, metrics_after_a_resume_do_not_repeat_steps);
    tcase_add_test(tc, resume_refuses_changes_that_alter_the_run);
    tcase_add_test(tc, resume_falls_back_past_a_corrupted_checkpoint);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
