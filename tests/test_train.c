/* The train / eval commands end to end on the tiny config (the config itself: test_config.c). */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "data/preprocess.h"
#include "train/config.h"
#include "train/step.h"
#include "tests/cli_run.h"
#include "tests/check_main.h"

START_TEST(tiny_config_trains_and_eval_loss_falls) {
    static char out[1 << 16];
    char args[512];
    snprintf(args, sizeof args, "train configs/tiny.yaml logging.metrics=/tmp/gt-test-metrics-%d.jsonl", (int)getpid());
    int rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
    double before = gt_test_loss_after(out, "eval before training"), end = gt_test_loss_after(out, "eval after training");
    /* 8192-piece vocabulary (configs/tiny.yaml): 9.027 -> 7.09 here */
    ck_assert_msg(end < before - 1.5, "eval loss %.3f -> %.3f", before, end);
    char path[128];
    snprintf(path, sizeof path, "/tmp/gt-test-metrics-%d.jsonl", (int)getpid());
    FILE *f = fopen(path, "r");
    ck_assert(f != NULL);
    char line[512];
    int steps = 0, evals = 0;
    while (fgets(line, sizeof line, f)) {
        steps += strstr(line, "\"loss\"") != NULL;
        evals += strstr(line, "\"eval_loss\"") != NULL;
    }
    fclose(f);
    unlink(path);
    ck_assert_int_eq(steps, 4); /* every 5 of 20 steps */
    ck_assert_int_eq(evals, 2);
    /* eval command on the same data: same starting loss as the trainer's first eval */
    rc = gt_test_run("eval configs/tiny.yaml", out, sizeof out);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_msg(strstr(out, "\"perplexity\""), "%s", out);
}
END_TEST

/* eval batches examples by length; the per-example output still comes in file order, and its
 * token-weighted mean is the printed loss, whatever the batch size. */
START_TEST(eval_per_example_output_in_file_order) {
    static char out[1 << 16];
    char path[128], args[512];
    snprintf(path, sizeof path, "/tmp/gt-test-per-%d.jsonl", (int)getpid());
    double loss[2];
    for (int k = 0; k < 2; k++) {
        snprintf(args, sizeof args, "eval configs/tiny.yaml eval.batch_size=%d eval.per_example_output=%s",
                 k ? 1 : 6, path);
        int rc = gt_test_run(args, out, sizeof out);
        ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
        const char *p = strstr(out, "{\"loss\": ");
        ck_assert_msg(p != NULL, "%s", out);
        loss[k] = atof(p + 9);
        FILE *f = fopen(path, "r");
        ck_assert(f != NULL);
        char line[512];
        long prev = 0;
        int n = 0;
        double sum = 0, tokens = 0;
        while (fgets(line, sizeof line, f)) {
            long ln;
            double l, t;
            ck_assert_msg(sscanf(line, "{\"line\": %ld, \"loss\": %lf, \"tokens\": %lf}", &ln, &l, &t) == 3, "%s", line);
            ck_assert_msg(ln > prev, "line %ld after %ld", ln, prev);
            prev = ln;
            sum += l * t;
            tokens += t;
            n++;
        }
        fclose(f);
        unlink(path);
        ck_assert_int_eq(n, 50);
        ck_assert_msg(fabs(sum / tokens - loss[k]) <= 1e-5 * loss[k], "%.6f vs %.6f", sum / tokens, loss[k]);
    }
    ck_assert_msg(fabs(loss[0] - loss[1]) <= 1e-5 * loss[0], "batch 6: %.6f, batch 1: %.6f", loss[0], loss[1]);
}
END_TEST

/* A non-finite step under train.on_nonfinite: skip (GT_FAULT_INJECT poisons step 2 only) is
 * logged with loss null: every line of the metrics file stays JSON, and training goes on. */
START_TEST(nonfinite_step_logs_null) {
    static char out[1 << 16];
    char path[128], args[512], line[1024];
    snprintf(path, sizeof path, "/tmp/gt-test-nonfinite-%d.jsonl", (int)getpid());
    snprintf(args, sizeof args,
             "train configs/tiny.yaml train.steps=4 schedule.warmup_steps=0 logging.every_steps=1 "
             "train.on_nonfinite=skip logging.metrics=%s",
             path);
    setenv("GT_FAULT_INJECT", "nonfinite:2", 1);
    int rc = gt_test_run(args, out, sizeof out);
    unsetenv("GT_FAULT_INJECT");
    ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
    ck_assert_msg(strstr(out, "step 2/4 loss nan") && strstr(out, "(skipped: non-finite)"), "%s", out);
    FILE *f = fopen(path, "r");
    ck_assert(f != NULL);
    int steps = 0, evals = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        ck_assert_msg(json_is_object(o), "not JSON (%s): %s", je.text, line);
        json_t *loss = json_object_get(o, "loss");
        if (loss) {
            json_int_t step = json_integer_value(json_object_get(o, "step"));
            bool skipped = json_is_true(json_object_get(o, "skipped"));
            ck_assert_msg(step == 2 ? json_is_null(loss) && skipped : json_is_real(loss) && !skipped, "%s", line);
            ck_assert_msg(json_is_integer(json_object_get(o, "weighted_tokens")), "%s", line);
            steps++;
        } else {
            ck_assert_msg(json_is_real(json_object_get(o, "eval_loss")), "%s", line);
            evals++;
        }
        json_decref(o);
    }
    fclose(f);
    unlink(path);
    ck_assert_int_eq(steps, 4);
    ck_assert_int_eq(evals, 2);
}
END_TEST

/* train.epochs sets the run's length from the data: ceil(2 epochs x 10 examples / 4) = 5 steps */
START_TEST(epochs_set_the_step_count) {
    static char out[1 << 16];
    char data[64], args[512], line[1024];
    snprintf(data, sizeof data, "/tmp/gt-test-epochs-%d.jsonl", (int)getpid());
    FILE *in = fopen("tests/fixtures/debian-eval-50.jsonl", "r"), *f = fopen(data, "w");
    ck_assert(in && f);
    for (int i = 0; i < 10 && fgets(line, sizeof line, in); i++) fputs(line, f);
    fclose(in);
    fclose(f);
    snprintf(args, sizeof args,
             "train configs/tiny.yaml train.steps=0 train.epochs=2 data.train=%s data.eval= "
             "train.batch_size=4 train.micro_batch_size=4 data.sequence_length=16 logging.every_steps=100",
             data);
    int rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
    ck_assert_msg(strstr(out, "step 5/5 loss") && strstr(out, "done after 5 steps"), "%s", out);
    /* the effective config printed at the start */
    ck_assert_msg(strstr(out, "\n  epochs: 2\n") && strstr(out, "\n  steps: 0\n"), "%s", out);
    strcat(args, " schedule.warmup_steps=6");
    ck_assert_int_eq(gt_test_run(args, out, sizeof out), 1);
    unlink(data);
    ck_assert_msg(strstr(out, "schedule.warmup_steps (6) exceeds the run's 5 steps "
                              "(train.epochs 2 x 10 examples / train.batch_size 4)"), "%s", out);
}
END_TEST

START_TEST(bad_inputs_fail_with_one_line) {
    static char out[1 << 16];
    ck_assert_int_eq(gt_test_run("train configs/tiny.yaml data.train=/nonexistent/train.jsonl", out, sizeof out), 1);
    ck_assert_msg(strstr(out, "gemmatrain train: /nonexistent/train.jsonl: cannot open"), "%s", out);
    ck_assert_int_eq(gt_test_run("train configs/tiny.yaml optimizer.lr=1", out, sizeof out), 2);
    ck_assert_msg(strstr(out, "did you mean 'optimizer.learning_rate'"), "%s", out);
    ck_assert_int_eq(gt_test_run("train", out, sizeof out), 2);
    ck_assert_int_eq(gt_test_run("train --keys", out, sizeof out), 0);
    ck_assert_msg(strstr(out, "| `optimizer.learning_rate` | number | `5e-5` | (0, 10] |"), "%s", out);
}
END_TEST

/* A packed row of three examples gives exactly the losses of the three examples in their own
 * rows: segment masks keep attention apart and positions restart, so nothing leaks across. */
/* LoRA with PEFT-style dropout trains; dropout is off in evaluation, so the first eval equals
 * the model without adapters (B = 0), and training moves the eval loss. */
START_TEST(lora_with_dropout_trains) {
    static char out[1 << 16];
    int rc = gt_test_run("train configs/tiny.yaml lora.enabled=true train.full_finetune=false lora.dropout=0.2 "
                 "train.steps=6 schedule.warmup_steps=0 optimizer.learning_rate=0.05", out, sizeof out);
    ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
    ck_assert_msg(strstr(out, "2048 trainable (LoRA)"), "%s", out);
    double before = gt_test_loss_after(out, "eval before training"), end = gt_test_loss_after(out, "eval after training");
    ck_assert_msg(fabs(before - 9.0313) < 1e-3, "eval before training %.4f", before);
    ck_assert_msg(end < before, "eval loss %.4f -> %.4f", before, end);
    /* the model without adapters: the eval command on the same config */
    ck_assert_int_eq(gt_test_run("eval configs/tiny.yaml", out, sizeof out), 0);
    ck_assert_msg(fabs(gt_test_json_loss(out) - before) < 1e-4, "eval %.6f vs %.4f\n%s", gt_test_json_loss(out), before, out);
}
END_TEST

/* The trained result lands in output_dir and scores the same outside the trainer: LoRA as a
 * Keras .lora.h5 (lora.weights), full fine-tuning as a KerasHub preset (model.weights). */

START_TEST(outputs_reload_with_the_trained_eval_loss) {
    static char out[1 << 16];
    char dir[64], args[1024];
    snprintf(dir, sizeof dir, "/tmp/gt-test-out-%d", (int)getpid());
    const char *small = "tokenizer=tests/fixtures/gemma3-tokenizer-8k.json model.vocab_size=8192 train.steps=6 "
                        "schedule.warmup_steps=0";
    const char *lora = "lora.enabled=true train.full_finetune=false optimizer.learning_rate=0.05";
    snprintf(args, sizeof args, "train configs/tiny.yaml %s %s output_dir=%s", small, lora, dir);
    int rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0 && strstr(out, "adapter.lora.h5"), "exit %d:\n%s", rc, out);
    double trained = gt_test_loss_after(out, "eval after training");
    snprintf(args, sizeof args, "eval configs/tiny.yaml %s %s lora.weights=%s/adapter.lora.h5", small, lora, dir);
    rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
    ck_assert_msg(fabs(gt_test_json_loss(out) - trained) < 1e-4, "%.6f vs %.6f\n%s", gt_test_json_loss(out), trained, out);
    /* the same output_dir again, deliberately: the earlier adapter is replaced only when asked */
    snprintf(args, sizeof args, "train configs/tiny.yaml %s output_dir=%s --overwrite", small, dir);
    rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0 && strstr(out, "/model"), "exit %d:\n%s", rc, out);
    trained = gt_test_loss_after(out, "eval after training");
    snprintf(args, sizeof args, "eval configs/tiny.yaml model.weights=%s/model tokenizer= model.generation=0 "
             "model.vocab_size=0 model.num_layers=0 model.hidden_dim=0 model.intermediate_dim=0 "
             "model.num_query_heads=0 model.num_key_value_heads=0 model.head_dim=0 model.sliding_window_size=-1", dir);
    rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
    ck_assert_msg(fabs(gt_test_json_loss(out) - trained) < 1e-4, "%.6f vs %.6f\n%s", gt_test_json_loss(out), trained, out);
    snprintf(args, sizeof args, "rm -rf %s", dir);
    ck_assert(system(args) == 0);
}
END_TEST

/* configs/tiny.yaml as it is (its vocabulary matches its tokenizer) trains a model that exports:
 * the KerasHub preset in output_dir, converted on to a Hugging Face directory. */
START_TEST(tiny_config_exports) {
    static char out[1 << 16];
    char dir[64], args[1024];
    snprintf(dir, sizeof dir, "/tmp/gt-test-tiny-%d", (int)getpid());
    snprintf(args, sizeof args, "train configs/tiny.yaml train.steps=4 data.eval= output_dir=%s", dir);
    int rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0 && strstr(out, "/model") && !strstr(out, "no KerasHub preset"), "exit %d:\n%s", rc, out);
    snprintf(args, sizeof args, "convert %s/model %s/hf --format hf", dir, dir);
    rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0 && strstr(out, "wrote Hugging Face model"), "exit %d:\n%s", rc, out);
    snprintf(args, sizeof args, "rm -rf %s", dir);
    ck_assert(system(args) == 0);
}
END_TEST

START_TEST(packing_equals_separate_rows) {
    char err[1024];
    /* the 8192-piece cut of the real Gemma 3 tokenizer (real ids for <bos>, <eos>, <pad>) */
    gt_tokenizer *tok;
    ck_assert_msg(gt_tok_load("tests/fixtures/gemma3-tokenizer-8k.json", &tok, err, sizeof err) == 0, "%s", err);
    gt_dataset ds;
    ck_assert(gt_dataset_open("tests/fixtures/debian-train-200.jsonl", GT_DS_AUTO, false, &ds, err, sizeof err) == 0);
    gt_gemma_config mc;
    gt_gemma_config_defaults(&mc, 3);
    mc.vocab_size = gt_tok_vocab_size(tok);
    ck_assert_int_eq(mc.vocab_size, 8192);
    mc.num_layers = 2;
    mc.hidden_dim = 16;
    mc.intermediate_dim = 32;
    mc.num_query_heads = 2;
    mc.num_kv_heads = 1;
    mc.head_dim = 8;
    mc.sliding_window = 5; /* layer 0 local, layer 1 local: windows inside packed rows too */
    gt_gemma *m;
    ck_assert(gt_gemma_create(&mc, false, &m, err, sizeof err) == 0);
    gt_gemma_init_random(m, 5, 0.5);
    enum { S = 48, P = 128 }; /* the three examples are 38, 35 and 31 tokens with bos and eos */
    gt_pp_cfg one = {.seq_len = S, .add_bos = true, .add_eos = true}, packed = {.seq_len = P, .add_bos = true, .add_eos = true};
    int32_t ids[3 * S], labels[3 * S], pids[P], plabels[P], pos[P], seg[P];
    uint8_t mask[3 * S], pmask[P];
    float w[3 * S], pw[P];
    gt_pp_row row = {pids, plabels, pos, seg, pmask, pw, 0, 0};
    gt_pp_row_clear(&packed, gt_tok_pad(tok), &row);
    for (int k = 0; k < 3; k++) {
        gt_example ex;
        ck_assert(gt_dataset_read(&ds, k, &ex, err, sizeof err) == 0);
        ck_assert(gt_pp_example(tok, &one, &ex, ids + k * S, labels + k * S, mask + k * S, w + k * S, err, sizeof err) == 0);
        ck_assert_int_eq(gt_pp_pack_append(tok, &packed, &ex, &row, err, sizeof err), 0);
        gt_example_free(&ex);
    }
    ck_assert_int_eq(row.n_segments, 3);
    for (int k = 0; k < 3; k++) ck_assert_int_eq(mask[k * S + S - 1], 0); /* no example cut short */
    ck_assert_int_lt(row.used, P);
    ck_assert(pos[0] == 0 && seg[0] == 0 && seg[row.used - 1] == 2 && seg[row.used] == -1);
    int restarts = 0;
    for (int t = 1; t < row.used; t++) restarts += pos[t] == 0 && seg[t] == seg[t - 1] + 1;
    ck_assert_int_eq(restarts, 2);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_micro_batch sep = {.in = {.batch = 3, .seq = S, .token_ids = ids, .padding_mask = mask}, .labels = labels, .weights = w, .first_row = 0};
    gt_micro_batch pk = {.in = {.batch = 1, .seq = P, .token_ids = pids, .padding_mask = pmask, .positions = pos,
                          .segment_ids = seg}, .labels = plabels, .weights = pw, .first_row = 0};
    double a, aw, b, bw;
    ck_assert_msg(gt_step_eval(&ctx, m, &sep, 64, &a, &aw, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_step_eval(&ctx, m, &pk, 64, &b, &bw, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert(aw == bw && aw > 0);
    ck_assert_msg(fabs(a - b) <= 1e-5 * fabs(a), "separate %.8g vs packed %.8g", a, b);
    gt_ctx_free(&ctx);
    gt_gemma_free(m);
    gt_dataset_close(&ds);
    gt_tok_free(tok);
}
END_TEST

int main(void) {
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, tiny_config_trains_and_eval_loss_falls);
    tcase_add_test(tc, eval_per_example_output_in_file_order);
    tcase_add_test(tc, nonfinite_step_logs_null);
    tcase_add_test(tc, epochs_set_the_step_count);
    tcase_add_test(tc, bad_inputs_fail_with_one_line);
    tcase_add_test(tc, packing_equals_separate_rows);
    tcase_add_test(tc, tiny_config_exports);
    tcase_add_test(tc, lora_with_dropout_trains);
    tcase_add_test(tc, outputs_reload_with_the_trained_eval_loss);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
