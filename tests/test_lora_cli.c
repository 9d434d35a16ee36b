/* A trained adapter used straight from its .lora.h5: `eval CONFIG --lora FILE` and
 * `generate --model BASE --lora FILE` give the numbers of the merged export (export --merge-lora)
 * and of the trainer's own last eval; an adapter for another model fails with one line naming the
 * file. The tiny config trains with LoRA on every target (rank 2, alpha 8: the file's B carries the
 * scale) once, in the fixture; its checkpoint exports the base preset generate needs (the config's
 * model is random-init) and the merged preset. */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/cli_run.h"
#include "tests/check_main.h"

#define TOK "tokenizer=tests/fixtures/gemma3-tokenizer-8k.json"
#define SMALL TOK " model.vocab_size=8192"
#define TARGETS "[query,key,value,attention_output,ffw_gating,ffw_gating_2,ffw_linear]"

static char g_dir[64];     /* run/ (output_dir), ckpt/, base/, merged/, l3/ */
static char g_err[1 << 14]; /* what went wrong in the fixture, checked by every test */
static double g_trained;   /* the trainer's "eval after training" */
static char g_out[1 << 16];

static int fixture_step(const char *args) {
    int rc = gt_test_run(args, g_out, sizeof g_out);
    if (rc) snprintf(g_err, sizeof g_err, "gemmatrain %s: exit %d\n%s", args, rc, g_out);
    return rc;
}

/* Unchecked (runs once, in the runner): failures are recorded in g_err, not asserted. */
static void setup(void) {
    char args[2048];
    snprintf(g_dir, sizeof g_dir, "/tmp/gt-test-lora-cli-XXXXXX");
    if (!mkdtemp(g_dir)) {
        snprintf(g_err, sizeof g_err, "mkdir %s failed", g_dir);
        return;
    }
    snprintf(args, sizeof args,
             "train configs/tiny.yaml " SMALL " lora.enabled=true train.full_finetune=false lora.rank=2 "
             "lora.alpha=8 lora.targets=" TARGETS " train.steps=8 schedule.warmup_steps=0 "
             "optimizer.learning_rate=0.05 output_dir=%s/run checkpoint.dir=%s/ckpt",
             g_dir, g_dir);
    if (fixture_step(args)) return;
    const char *p = strstr(g_out, "eval after training: loss ");
    if (!p) {
        snprintf(g_err, sizeof g_err, "no eval after training in:\n%s", g_out);
        return;
    }
    g_trained = atof(p + strlen("eval after training: loss "));
    /* the checkpoint rebuilds the random-init model: without --merge-lora, the base preset */
    snprintf(args, sizeof args, "export %s/ckpt/ckpt-00000008.h5 --out %s/base", g_dir, g_dir);
    if (fixture_step(args)) return;
    snprintf(args, sizeof args, "export %s/ckpt/ckpt-00000008.h5 --out %s/merged --merge-lora", g_dir, g_dir);
    if (fixture_step(args)) return;
    snprintf(args, sizeof args, "export %s/ckpt/ckpt-00000008.h5 --out %s/peft --format peft", g_dir, g_dir);
    if (fixture_step(args)) return;
    /* an adapter of the same shapes for a model with one more layer */
    snprintf(args, sizeof args,
             "train configs/tiny.yaml " SMALL " lora.enabled=true train.full_finetune=false model.num_layers=3 "
             "train.steps=1 schedule.warmup_steps=0 data.eval= output_dir=%s/l3", g_dir);
    fixture_step(args);
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd)) fprintf(stderr, "%s failed\n", cmd);
}

static double eval_loss(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static double eval_loss(const char *fmt, ...) {
    static char out[1 << 16];
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0, "%s: exit %d\n%s", args, rc, out);
    return gt_test_json_loss(out);
}

START_TEST(eval_lora_equals_merged_and_trainer) {
    ck_assert_msg(!g_err[0], "%s", g_err);
    /* rank and targets from the file: the config's defaults (rank 4, query/value) do not apply */
    static char out[1 << 16];
    char args[2048];
    snprintf(args, sizeof args, "eval configs/tiny.yaml " SMALL " --lora %s/run/adapter.lora.h5", g_dir);
    ck_assert_msg(gt_test_run(args, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "\n  rank: 2\n") && strstr(out, "\n  targets: [query, key, value, attention_output, "
                                                           "ffw_gating, ffw_gating_2, ffw_linear]\n"),
                  "effective config without the file's rank and targets:\n%s", out);
    double lora = gt_test_json_loss(out);
    double merged = eval_loss("eval configs/tiny.yaml " TOK " --model %s/merged", g_dir);
    double both = eval_loss("eval configs/tiny.yaml " TOK " --model=%s/base --lora=%s/run/adapter.lora.h5", g_dir, g_dir);
    double base = eval_loss("eval configs/tiny.yaml " TOK " --model %s/base", g_dir);
    printf("eval loss: trainer %.6f, --lora %.6f, merged %.6f, base + --lora %.6f, base %.6f\n", g_trained, lora,
           merged, both, base);
    ck_assert_msg(fabs(lora - g_trained) < 1e-4, "--lora %.6f vs trainer %.6f", lora, g_trained);
    ck_assert_msg(fabs(lora - merged) < 1e-4, "--lora %.6f vs merged %.6f", lora, merged);
    ck_assert_msg(fabs(both - merged) < 1e-4, "base --lora %.6f vs merged %.6f", both, merged);
    ck_assert_msg(fabs(base - lora) > 1e-3, "the adapter changed nothing: %.6f vs %.6f", base, lora);
    /* key=value overrides still apply alongside */
    double few = eval_loss("eval configs/tiny.yaml " SMALL " --lora %s/run/adapter.lora.h5 eval.max_examples=5", g_dir);
    double few_merged = eval_loss("eval configs/tiny.yaml " TOK " eval.max_examples=5 --model %s/merged", g_dir);
    ck_assert_msg(fabs(few - few_merged) < 1e-4 && fabs(few - lora) > 1e-6, "5 examples: %.6f vs %.6f (all: %.6f)",
                  few, few_merged, lora);
}
END_TEST

/* The same adapter exported as a PEFT directory (export --format peft) evaluates as the merged
 * model: eval --lora DIR and lora.weights: DIR read it (rank G*r per head group, scale folded). */
START_TEST(peft_export_evaluates_as_merged) {
    ck_assert_msg(!g_err[0], "%s", g_err);
    double merged = eval_loss("eval configs/tiny.yaml " TOK " --model %s/merged", g_dir);
    double peft = eval_loss("eval configs/tiny.yaml " TOK " --model %s/base --lora %s/peft", g_dir, g_dir);
    printf("eval loss: merged %.6f, base + PEFT export %.6f\n", merged, peft);
    ck_assert_msg(fabs(peft - merged) < 1e-4, "PEFT %.6f vs merged %.6f", peft, merged);
    struct stat st;
    char p[256];
    snprintf(p, sizeof p, "%s/peft/adapter_model.safetensors", g_dir);
    ck_assert(stat(p, &st) == 0 && st.st_size > 0);
    /* training on from a PEFT directory is refused with one line */
    static char out[1 << 14];
    char args[1024];
    snprintf(args, sizeof args, "train configs/tiny.yaml " SMALL " lora.enabled=true train.full_finetune=false "
             "lora.weights=%s/peft train.steps=1 schedule.warmup_steps=0", g_dir);
    ck_assert_int_ne(gt_test_run(args, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "PEFT adapter"), "%s", out);
}
END_TEST

/* {"tokens":[...],"loss":[a,b,...],"mean_loss":x}: the per-token losses into l, their count */
static int score_losses(const char *out, double *l, int cap) {
    const char *p = strstr(out, "\"loss\":[");
    ck_assert_msg(p != NULL, "no scores in:\n%s", out);
    p += 8;
    int n = 0;
    while (n < cap && *p && *p != ']') {
        char *end;
        l[n++] = strtod(p, &end);
        ck_assert_msg(end != p, "bad scores: %s", out);
        p = *end == ',' ? end + 1 : end;
    }
    return n;
}

static int score(double *l, int cap, const char *model_args) {
    static char out[1 << 16];
    char args[2048];
    snprintf(args, sizeof args, "generate %s --score 'Package: vim. Description: Vi IMproved, a text editor.'",
             model_args);
    int rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0, "%s: exit %d\n%s", args, rc, out);
    return score_losses(out, l, cap);
}

/* --score --logits prints every position's logits; the next token's log-softmax there is minus
 * --score's loss (KerasHub's scoring_mode "logits" and "loss" on the same ids). */
START_TEST(score_logits_agree_with_score_loss) {
    ck_assert_msg(!g_err[0], "%s", g_err);
    enum { CAP = 256 };
    double loss[CAP];
    char m[512], args[1024];
    snprintf(m, sizeof m, "--model %s/merged", g_dir);
    int n = score(loss, CAP, m);
    static char out[1 << 24];
    snprintf(args, sizeof args, "generate %s --score --logits 'Package: vim. Description: Vi IMproved, a text editor.'", m);
    ck_assert_int_eq(gt_test_run(args, out, sizeof out), 0);
    const char *p = strstr(out, "\"tokens\":[");
    ck_assert_msg(p, "%.300s", out);
    int32_t ids[CAP];
    int nt = 0;
    for (p += 10; *p != ']'; p++) {
        ids[nt++] = (int32_t)strtol(p, (char **)&p, 10);
        if (*p == ']') break;
    }
    ck_assert_int_eq(nt, n + 1); /* the loss has one entry per predicted token */
    p = strstr(p, "\"logits\":[");
    ck_assert(p);
    p += 10;
    for (int t = 0; t < nt; t++) {
        ck_assert(*p == '[' || *p == ',');
        if (*p == ',') p++;
        ck_assert(*p == '[');
        p++;
        double row[8192], mx = -1e30, tot = 0;
        int v = 0;
        for (;; v++) {
            char *end;
            row[v] = strtod(p, &end);
            ck_assert(end != p);
            p = end;
            mx = fmax(mx, row[v]);
            if (*p == ']') break;
            p++;
        }
        p++;
        ck_assert_int_eq(v + 1, 8192);
        for (int k = 0; k <= v; k++) tot += exp(row[k] - mx);
        if (t + 1 < nt) {
            double nll = -(row[ids[t + 1]] - mx - log(tot));
            ck_assert_msg(fabs(nll - loss[t]) < 1e-4, "token %d: %g vs --score %g", t, nll, loss[t]);
        }
    }
}
END_TEST

/* --target-ids (KerasHub's score(target_ids=...)): one target per position; with the next tokens
 * as targets the losses are --score's, plus one at the last position; bad lists are refused. */
START_TEST(score_target_ids) {
    ck_assert_msg(!g_err[0], "%s", g_err);
    enum { CAP = 256 };
    double loss[CAP], with[CAP];
    char m[512], args[8192];
    static char out[1 << 16];
    snprintf(m, sizeof m, "--model %s/merged", g_dir);
    int n = score(loss, CAP, m);
    snprintf(args, sizeof args, "generate %s --score --logits 'Package: vim. Description: Vi IMproved, a text editor.'", m);
    static char big[1 << 24];
    ck_assert_int_eq(gt_test_run(args, big, sizeof big), 0);
    const char *p = strstr(big, "\"tokens\":[");
    ck_assert(p);
    int32_t ids[CAP];
    int nt = 0;
    for (p += 10; *p != ']'; p++) {
        ids[nt++] = (int32_t)strtol(p, (char **)&p, 10);
        if (*p == ']') break;
    }
    ck_assert_int_eq(nt, n + 1);
    char list[4096] = "";
    for (int t = 0; t < nt; t++)
        snprintf(list + strlen(list), sizeof list - strlen(list), t ? ",%d" : "%d", t + 1 < nt ? ids[t + 1] : ids[0]);
    snprintf(args, sizeof args, "generate %s --score --target-ids %s 'Package: vim. Description: Vi IMproved, a text editor.'", m, list);
    ck_assert_msg(gt_test_run(args, out, sizeof out) == 0, "%s\n%s", args, out);
    ck_assert_int_eq(score_losses(out, with, CAP), n + 1);
    for (int t = 0; t < n; t++) ck_assert_msg(fabs(with[t] - loss[t]) < 1e-6, "position %d: %g vs %g", t, with[t], loss[t]);
    ck_assert(with[n] > 0);
    snprintf(args, sizeof args, "generate %s --score --target-ids 1,2 'Package: vim.'", m);
    ck_assert_int_ne(gt_test_run(args, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "--target-ids: 2 ids for the 8 tokens"), "%s", out);
    snprintf(args, sizeof args, "generate %s --score --target-ids 1,2,3,4,5,6,99999,8 'Package: vim.'", m);
    ck_assert_int_ne(gt_test_run(args, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "--target-ids: item 7 is not a token id in [0, 8192)"), "%s", out);
    snprintf(args, sizeof args, "generate %s --target-ids 1 'x'", m);
    ck_assert_int_ne(gt_test_run(args, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "--target-ids needs --score"), "%s", out);
}
END_TEST

static double max_diff(const double *a, const double *b, int n) {
    double d = 0;
    for (int i = 0; i < n; i++) d = fmax(d, fabs(a[i] - b[i]));
    return d;
}

START_TEST(generate_score_lora_equals_merged) {
    ck_assert_msg(!g_err[0], "%s", g_err);
    enum { CAP = 256 };
    double lora[CAP], merged[CAP], base[CAP], alpha[CAP];
    char m[512];
    snprintf(m, sizeof m, "--model %s/base --lora %s/run/adapter.lora.h5", g_dir, g_dir);
    int n = score(lora, CAP, m);
    snprintf(m, sizeof m, "--model %s/merged", g_dir);
    ck_assert_int_eq(score(merged, CAP, m), n);
    snprintf(m, sizeof m, "--model %s/base", g_dir);
    ck_assert_int_eq(score(base, CAP, m), n);
    ck_assert(n > 5);
    printf("generate --score, %d tokens: --lora vs merged %.3g, vs base %.3g\n", n, max_diff(lora, merged, n),
           max_diff(lora, base, n));
    ck_assert_msg(max_diff(lora, merged, n) < 1e-4, "--lora vs merged: %g", max_diff(lora, merged, n));
    ck_assert_msg(max_diff(lora, base, n) > 1e-3, "--lora vs base: %g", max_diff(lora, base, n));
    /* --lora-alpha: rank is the default (scale 1); twice that doubles the adapters' effect */
    snprintf(m, sizeof m, "--model %s/base --lora %s/run/adapter.lora.h5 --lora-alpha 2", g_dir, g_dir);
    ck_assert_int_eq(score(alpha, CAP, m), n);
    ck_assert_msg(max_diff(alpha, lora, n) == 0, "--lora-alpha 2 (= rank) vs default: %g", max_diff(alpha, lora, n));
    snprintf(m, sizeof m, "--model %s/base --lora %s/run/adapter.lora.h5 --lora-alpha 4", g_dir, g_dir);
    ck_assert_int_eq(score(alpha, CAP, m), n);
    ck_assert_msg(max_diff(alpha, lora, n) > 1e-3, "--lora-alpha 4 changed nothing");
}
END_TEST

START_TEST(generate_greedy_lora_equals_merged) {
    ck_assert_msg(!g_err[0], "%s", g_err);
    static char a[1 << 14], b[1 << 14];
    char args[1024];
    snprintf(args, sizeof args, "generate --model %s/base --lora %s/run/adapter.lora.h5 --max-new-tokens 16 "
             "--strip-prompt 'Package: vim'", g_dir, g_dir);
    int rc = gt_test_run(args, a, sizeof a);
    ck_assert_msg(rc == 0 && strlen(a) > 1, "exit %d:\n%s", rc, a);
    snprintf(args, sizeof args, "generate --model %s/merged --max-new-tokens 16 --strip-prompt 'Package: vim'", g_dir);
    rc = gt_test_run(args, b, sizeof b);
    ck_assert_msg(rc == 0, "exit %d:\n%s", rc, b);
    ck_assert_msg(!strcmp(a, b), "--lora: '%s'\nmerged: '%s'", a, b);
}
END_TEST

/* exit 1 and exactly one line that names the file */
static void fails_naming(const char *args, const char *file, const char *what) {
    static char out[1 << 16];
    int rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 1, "%s: exit %d, expected 1\n%s", args, rc, out);
    size_t len = strlen(out);
    ck_assert_msg(len > 0 && out[len - 1] == '\n' && strchr(out, '\n') == out + len - 1,
                  "%s: not one line:\n%s", args, out);
    ck_assert_msg(strstr(out, file) && strstr(out, what), "%s: expected '%s' and '%s' in: %s", args, file, what, out);
}

START_TEST(wrong_adapter_fails_with_one_line) {
    ck_assert_msg(!g_err[0], "%s", g_err);
    char args[2048], l3[128];
    /* Keras' tiny Gemma 3 fixture: 4 heads of width 8 at hidden 32, not 2 x 32 at 64 */
    const char *shape = "tests/fixtures/presets/gemma3.lora.h5";
    snprintf(l3, sizeof l3, "%s/l3/adapter.lora.h5", g_dir);
    const char *missing = "/nonexistent/adapter.lora.h5";
    const struct {
        const char *file, *what;
    } bad[] = {{shape, "shape [4,32,2], expected [2,64,2]"}, {l3, "6 adapter groups, 4 match"},
               {missing, "cannot open"}, {"configs/tiny.yaml", "not a readable HDF5 file"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "generate --model %s/base --lora %s 'Package: vim'", g_dir, bad[i].file);
        fails_naming(args, bad[i].file, bad[i].what);
        snprintf(args, sizeof args, "generate --model %s/base --lora %s --score 'Package: vim'", g_dir, bad[i].file);
        fails_naming(args, bad[i].file, bad[i].what);
        snprintf(args, sizeof args, "eval configs/tiny.yaml " SMALL " --lora %s", bad[i].file);
        fails_naming(args, bad[i].file, bad[i].what);
    }
    static char out[1 << 14];
    snprintf(args, sizeof args, "generate --model %s/base --lora-alpha 4 hi", g_dir);
    ck_assert_int_eq(gt_test_run(args, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "--lora-alpha needs --lora"), "%s", out);
    snprintf(args, sizeof args, "generate --model %s/base --lora %s --lora-alpha 0 hi", g_dir, l3);
    ck_assert_int_eq(gt_test_run(args, out, sizeof out), 2);
    ck_assert_int_eq(gt_test_run("eval configs/tiny.yaml --lora", out, sizeof out), 2);
    ck_assert_msg(strstr(out, "unknown option '--lora'"), "%s", out);
    ck_assert_int_eq(gt_test_run("eval --help", out, sizeof out), 0);
    ck_assert_msg(strstr(out, "--lora FILE") && strstr(out, "--model PATH"), "%s", out);
    ck_assert_int_eq(gt_test_run("generate --help", out, sizeof out), 0);
    ck_assert_msg(strstr(out, "--lora PATH") && strstr(out, "PEFT") && strstr(out, "KerasHub") && !strstr(out, "presets later"), "%s", out);
}
END_TEST

/* Gemma 4 (tests/fixtures/presets/gemma4): layers without key/value kernels get no adapter; the
 * merge skips them as the export does. */
#define G4 \
    "model.generation=0 model.vocab_size=0 model.num_layers=0 model.hidden_dim=0 "                  \
    "model.intermediate_dim=0 model.num_query_heads=0 model.num_key_value_heads=0 model.head_dim=0 " \
    "model.sliding_window_size=-1 model.weights=tests/fixtures/presets/gemma4 "                     \
    "tokenizer=tests/fixtures/presets/gemma1/assets/tokenizer/vocabulary.spm "                      \
    "data.sequence_length=16 train.batch_size=4 train.micro_batch_size=2 train.chunk_rows=16 "      \
    "train.full_finetune=false lora.enabled=true lora.rank=2 lora.targets=" TARGETS

START_TEST(gemma4_generate_lora_equals_merged) {
    ck_assert_msg(!g_err[0], "%s", g_err);
    static char out[1 << 16];
    char args[2048];
    snprintf(args, sizeof args, "train configs/tiny.yaml " G4 " train.steps=3 optimizer.learning_rate=0.05 "
             "data.eval= output_dir=%s/g4", g_dir);
    ck_assert_msg(gt_test_run(args, out, sizeof out) == 0, "%s", out);
    snprintf(args, sizeof args, "export configs/tiny.yaml " G4 " lora.weights=%s/g4/adapter.lora.h5 --out %s/g4base",
             g_dir, g_dir);
    ck_assert_msg(gt_test_run(args, out, sizeof out) == 0, "%s", out);
    snprintf(args, sizeof args, "export configs/tiny.yaml " G4 " lora.weights=%s/g4/adapter.lora.h5 --merge-lora "
             "--out %s/g4merged", g_dir, g_dir);
    ck_assert_msg(gt_test_run(args, out, sizeof out) == 0, "%s", out);
    enum { CAP = 256 };
    double lora[CAP], merged[CAP], base[CAP];
    char m[512];
    snprintf(m, sizeof m, "--model %s/g4base --lora %s/g4/adapter.lora.h5", g_dir, g_dir);
    int n = score(lora, CAP, m);
    snprintf(m, sizeof m, "--model %s/g4merged", g_dir);
    ck_assert_int_eq(score(merged, CAP, m), n);
    snprintf(m, sizeof m, "--model %s/g4base", g_dir);
    ck_assert_int_eq(score(base, CAP, m), n);
    printf("Gemma 4 generate --score, %d tokens: --lora vs merged %.3g, vs base %.3g\n", n,
           max_diff(lora, merged, n), max_diff(lora, base, n));
    ck_assert_msg(max_diff(lora, merged, n) < 1e-4, "--lora vs merged: %g", max_diff(lora, merged, n));
    ck_assert_msg(max_diff(lora, base, n) > 1e-4, "--lora vs base: %g", max_diff(lora, base, n));
}
END_TEST

int main(void) {
    Suite *s = suite_create("lora_cli");
    TCase *tc = tcase_create("lora_cli");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_add_test(tc, eval_lora_equals_merged_and_trainer);
    tcase_add_test(tc, peft_export_evaluates_as_merged);
    tcase_add_test(tc, generate_score_lora_equals_merged);
    tcase_add_test(tc, score_logits_agree_with_score_loss);
    tcase_add_test(tc, generate_greedy_lora_equals_merged);
    tcase_add_test(tc, wrong_adapter_fails_with_one_line);
    tcase_add_test(tc, gemma4_generate_lora_equals_merged);
    tcase_add_test(tc, score_target_ids);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
