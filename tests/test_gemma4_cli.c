/* Gemma 4 through the CLI: a KerasHub Gemma4Backbone preset (tests/fixtures/presets/gemma4, with
 * the Gemma 1 fixture's 61-piece tokenizer) trains with LoRA on every target and with full
 * fine-tuning; the written adapters and model reload with the trained eval loss; generate runs. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/cli_run.h"
#include "tests/check_main.h"

/* configs/tiny.yaml for data and training defaults, its custom model switched off */
#define BASE                                                                                        \
    "model.generation=0 model.vocab_size=0 model.num_layers=0 model.hidden_dim=0 "                  \
    "model.intermediate_dim=0 model.num_query_heads=0 model.num_key_value_heads=0 model.head_dim=0 " \
    "model.sliding_window_size=-1 model.weights=tests/fixtures/presets/gemma4 "                     \
    "tokenizer=tests/fixtures/presets/gemma1/assets/tokenizer/vocabulary.spm "                      \
    "data.train=tests/fixtures/debian-train-200.jsonl data.eval=tests/fixtures/debian-eval-50.jsonl " \
    "data.format=prompt_response data.sequence_length=16 train.batch_size=4 train.micro_batch_size=2 " \
    "train.chunk_rows=16 optimizer.learning_rate=0.01"

START_TEST(lora_and_full_finetune_round_trip) {
    static char out[1 << 16];
    char dir[64], args[2048];
    snprintf(dir, sizeof dir, "/tmp/gt-test-g4-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(args, sizeof args, "train configs/tiny.yaml %s train.steps=4 train.full_finetune=false lora.enabled=true "
             "lora.rank=2 lora.targets=[query,key,value,attention_output,ffw_gating,ffw_gating_2,ffw_linear] "
             "output_dir=%s/lora", BASE, dir);
    int rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0 && strstr(out, "adapter.lora.h5"), "exit %d:\n%s", rc, out);
    double before = gt_test_loss_after(out, "eval before training"), trained = gt_test_loss_after(out, "eval after training");
    ck_assert_msg(trained < before, "LoRA training did not lower the eval loss: %.4f -> %.4f", before, trained);
    snprintf(args, sizeof args, "eval configs/tiny.yaml %s train.full_finetune=false lora.enabled=true lora.rank=2 "
             "lora.targets=[query,key,value,attention_output,ffw_gating,ffw_gating_2,ffw_linear] "
             "lora.weights=%s/lora/adapter.lora.h5", BASE, dir);
    rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
    ck_assert_msg(fabs(gt_test_json_loss(out) - trained) < 1e-4, "%.6f vs %.6f\n%s", gt_test_json_loss(out), trained, out);

    /* full fine-tuning: layer_scalar stays out of the optimizer and is written with the model */
    snprintf(args, sizeof args, "train configs/tiny.yaml %s train.steps=3 train.full_finetune=true lora.enabled=false "
             "output_dir=%s/full", BASE, dir);
    rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0 && strstr(out, "/model"), "exit %d:\n%s", rc, out);
    before = gt_test_loss_after(out, "eval before training"), trained = gt_test_loss_after(out, "eval after training");
    ck_assert_msg(trained < before, "full fine-tuning did not lower the eval loss: %.4f -> %.4f", before, trained);
    snprintf(args, sizeof args, "eval configs/tiny.yaml %s model.weights=%s/full/model tokenizer= lora.enabled=false",
             BASE, dir);
    rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
    ck_assert_msg(fabs(gt_test_json_loss(out) - trained) < 1e-4, "%.6f vs %.6f\n%s", gt_test_json_loss(out), trained, out);

    snprintf(args, sizeof args, "generate --model %s/full/model --max-new-tokens 4 'the cat'", dir);
    rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0 && strstr(out, "the cat"), "exit %d:\n%s", rc, out);
    snprintf(args, sizeof args, "rm -rf %s", dir);
    ck_assert(system(args) == 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gemma4_cli");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, lora_and_full_finetune_round_trip);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
