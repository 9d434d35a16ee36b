/* `gemmatrain train` / `eval` with images, end to end on the shipped shapes task
 * (configs/shapes-lora.yaml: a tiny random Gemma 3 with a frozen random vision encoder, LoRA on
 * the decoder): the eval loss falls; `eval --lora` on the trained adapter gives the trainer's
 * number, and a worse one when every eval record gets another record's picture (the model reads
 * the images); two MPI ranks and a stopped-and-resumed run give the same result; training the
 * encoder fully or with LoRA (model.vision_train) changes the result and resumes exactly; records with
 * images for a model without an encoder, more images than data.max_images_per_prompt, a
 * sequence length that cuts an image and packing are refused with one line naming file:line. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/check_main.h"
#include "tests/cli_run.h"

#define CFG "configs/shapes-lora.yaml"

static char g_dir[64], g_out[1 << 16];

/* The CLI behind prefix, its output in g_out. */
static int run(const char *prefix, const char *args) { return gt_test_run_with(prefix, args, g_out, sizeof g_out); }

/* A train run with extra overrides; returns its "eval after training" loss. */
static double train(const char *prefix, const char *extra) {
    char args[2048];
    snprintf(args, sizeof args, "train " CFG " output.overwrite=true %s", extra);
    int rc = run(prefix, args);
    ck_assert_msg(rc == 0, "train %s: exit %d\n%s", extra, rc, g_out);
    return gt_test_number_after(g_out, "eval after training: loss ");
}

/* datasets/shapes/eval.jsonl with record i's picture replaced by record i+1's (absolute paths). */
static void write_rotated(const char *dst) {
    FILE *in = fopen("datasets/shapes/eval.jsonl", "r"), *out = fopen(dst, "w");
    ck_assert(in && out);
    static char lines[64][512];
    int n = 0;
    while (n < 64 && fgets(lines[n], sizeof lines[n], in)) n++;
    ck_assert_int_gt(n, 8);
    char cwd[1024];
    ck_assert(getcwd(cwd, sizeof cwd));
    for (int i = 0; i < n; i++) {
        char *cut = strstr(lines[i], "\"images\": [\"");
        const char *next = strstr(lines[(i + 1) % n], "\"images\": [\"");
        ck_assert(cut && next);
        fprintf(out, "%.*s\"images\": [\"%s/datasets/shapes/%s", (int)(cut - lines[i]), lines[i], cwd,
                next + strlen("\"images\": [\""));
    }
    fclose(in);
    fclose(out);
}

START_TEST(train_learns_and_eval_reads_the_images) {
    char extra[512], rot[128];
    snprintf(extra, sizeof extra, "output_dir=%s/run", g_dir);
    double after = train("", extra);
    double before = gt_test_number_after(g_out, "eval before training: loss ");
    printf("shapes CLI: eval loss %.4f before, %.4f after\n", before, after);
    ck_assert_msg(before > 5 && after < 0.1 * before && after < 0.8, "eval loss %.4f -> %.4f", before, after);
    snprintf(extra, sizeof extra, "eval " CFG " --lora %s/run/adapter.lora.h5", g_dir);
    ck_assert_msg(run("", extra) == 0, "%s", g_out);
    double again = gt_test_number_after(g_out, "\"loss\": ");
    ck_assert_msg(fabs(again - after) <= 1e-4 * after, "eval --lora %.6f vs trainer %.6f", again, after);
    snprintf(rot, sizeof rot, "%s/rotated.jsonl", g_dir);
    write_rotated(rot);
    snprintf(extra, sizeof extra, "eval " CFG " --lora %s/run/adapter.lora.h5 data.eval=%s", g_dir, rot);
    ck_assert_msg(run("", extra) == 0, "%s", g_out);
    double wrong = gt_test_number_after(g_out, "\"loss\": ");
    printf("shapes CLI: %.4f with every eval record given the next one's picture\n", wrong);
    ck_assert_msg(wrong > after + 0.5, "the images do not matter: %.4f right, %.4f rotated", after, wrong);
}
END_TEST

START_TEST(resume_and_two_ranks_match) {
    char extra[512];
    snprintf(extra, sizeof extra, "output_dir=%s/one", g_dir);
    double one = train("", extra);
    snprintf(extra, sizeof extra, "output_dir=%s/res checkpoint.dir=%s/res/ckpt train.stop_after_steps=50", g_dir, g_dir);
    train("", extra);
    snprintf(extra, sizeof extra, "output_dir=%s/res checkpoint.dir=%s/res/ckpt checkpoint.resume=latest", g_dir, g_dir);
    double resumed = train("", extra);
    ck_assert_msg(resumed == one, "resumed %.6f vs %.6f", resumed, one);
    if (system("command -v mpirun >/dev/null 2>&1")) {
        printf("shapes CLI: no mpirun; the two-rank run is skipped\n");
        return;
    }
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    snprintf(extra, sizeof extra, "output_dir=%s/np2", g_dir);
    double two = train("mpirun --oversubscribe -np 2 -x GT_THREADS=1 -x ASAN_OPTIONS=detect_leaks=0", extra);
    /* 120 steps: summation order (ranks, threads, sanitizer builds) moves the 4th digit */
    ck_assert_msg(fabs(two - one) <= 1e-3 * one, "2 ranks %.6f vs 1 rank %.6f", two, one);
    /* the encoder's adapters are reduced over the ranks too (one epoch: a trained encoder's run
     * drifts by rounding later on, as it does between thread counts) */
    snprintf(extra, sizeof extra, "output_dir=%s/np2l model.vision_train=lora train.epochs=1", g_dir);
    two = train("mpirun --oversubscribe -np 2 -x GT_THREADS=1 -x ASAN_OPTIONS=detect_leaks=0", extra);
    snprintf(extra, sizeof extra, "output_dir=%s/np1l model.vision_train=lora train.epochs=1", g_dir);
    one = train("", extra);
    ck_assert_msg(fabs(two - one) <= 1e-4 * one, "encoder LoRA: 2 ranks %.6f vs 1 rank %.6f", two, one);
}
END_TEST

/* model.vision_train full and lora train the encoder too (a result other than the frozen
 * encoder's, and as good), and the checkpoints carry its trained tensors (an exact resume). */
START_TEST(encoder_training_modes) {
    char extra[512];
    snprintf(extra, sizeof extra, "output_dir=%s/frozen", g_dir);
    double frozen = train("", extra);
    snprintf(extra, sizeof extra, "output_dir=%s/full model.vision_train=full", g_dir);
    double full = train("", extra);
    ck_assert_msg(strstr(g_out, "holds no vision encoder (its trained weights are in the checkpoints only)"), "%s", g_out);
    snprintf(extra, sizeof extra, "output_dir=%s/lora model.vision_train=lora checkpoint.dir=%s/lora/ckpt", g_dir, g_dir);
    double lora = train("", extra);
    printf("shapes CLI: eval loss %.4f frozen encoder, %.4f full, %.4f LoRA\n", frozen, full, lora);
    ck_assert_msg(full != frozen && lora != frozen && full < 0.8 && lora < 0.8, "frozen %.6f full %.6f lora %.6f",
                  frozen, full, lora);
    snprintf(extra, sizeof extra, "output_dir=%s/lres model.vision_train=lora checkpoint.dir=%s/lres/ckpt "
             "train.stop_after_steps=50", g_dir, g_dir);
    train("", extra);
    snprintf(extra, sizeof extra, "output_dir=%s/lres model.vision_train=lora checkpoint.dir=%s/lres/ckpt "
             "checkpoint.resume=latest", g_dir, g_dir);
    double resumed = train("", extra);
    ck_assert_msg(resumed == lora, "resumed %.6f vs %.6f", resumed, lora);
}
END_TEST

static void refused(const char *cmd, const char *overrides, const char *where, const char *what) {
    char args[1024];
    snprintf(args, sizeof args, "%s " CFG " output_dir=%s/bad %s", cmd, g_dir, overrides);
    int rc = run("", args);
    ck_assert_msg(rc != 0, "%s: exit 0\n%s", overrides, g_out);
    ck_assert_msg(strstr(g_out, where) && strstr(g_out, what), "%s: want '%s' and '%s' in:\n%s", overrides, where,
                  what, g_out);
}

/* Full fine-tuning writes a KerasHub preset holding the trained encoder (its adapters merged
 * under model.vision_train=lora): `eval --model` on it gives the run's final eval loss. */
START_TEST(full_finetune_preset_holds_the_encoder) {
    const char *modes[2] = {"full", "lora"};
    for (int i = 0; i < 2; i++) {
        char extra[512], args[1024];
        snprintf(extra, sizeof extra, "output_dir=%s/ft%s lora.enabled=false train.full_finetune=true "
                 "model.vision_train=%s train.epochs=2 optimizer.learning_rate=1e-3", g_dir, modes[i], modes[i]);
        double trained = train("", extra);
        ck_assert_msg(!strstr(g_out, "holds no vision encoder"), "%s", g_out);
        snprintf(args, sizeof args, "eval " CFG " --model %s/ft%s/model lora.enabled=false", g_dir, modes[i]);
        ck_assert_msg(run("", args) == 0, "%s", g_out);
        double back = gt_test_number_after(g_out, "loss ");
        printf("shapes CLI: full fine-tune, encoder %s: eval %.6f in the run, %.6f from the preset\n", modes[i],
               trained, back);
        ck_assert_msg(fabs(back - trained) <= 1e-5 * trained, "preset %.6f vs run %.6f", back, trained);
    }
}
END_TEST

START_TEST(bad_image_setups_are_refused) {
    refused("train", "model.vision_num_layers=0", "datasets/shapes/eval.jsonl:1: ", "no vision encoder");
    refused("eval", "model.vision_num_layers=0", "datasets/shapes/eval.jsonl:1: ", "no vision encoder");
    refused("train", "data.eval= data.max_images_per_prompt=0", "datasets/shapes/train.jsonl:", "max_images_per_prompt (0)");
    refused("eval", "data.sequence_length=8", "datasets/shapes/eval.jsonl:1: ", "cuts the record's images");
    refused("train", "data.eval= data.packing=true", "datasets/shapes/train.jsonl:", "packing");
    refused("train", "model.vision_num_layers=0 model.vision_train=lora", "model.vision_train: lora", "no vision encoder");
}
END_TEST

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/gt-test-vision-cli-XXXXXX");
    if (!mkdtemp(g_dir)) return fprintf(stderr, "mkdir %s failed\n", g_dir), EXIT_FAILURE;
    Suite *s = suite_create("vision_cli");
    TCase *tc = tcase_create("vision_cli");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, train_learns_and_eval_reads_the_images);
    tcase_add_test(tc, resume_and_two_ranks_match);
    tcase_add_test(tc, encoder_training_modes);
    tcase_add_test(tc, full_finetune_preset_holds_the_encoder);
    tcase_add_test(tc, bad_image_setups_are_refused);
    suite_add_tcase(s, tc);
    int rc = gt_test_suite_main(s);
    if (gt_test_rmtree(g_dir)) fprintf(stderr, "removing %s failed\n", g_dir);
    return rc;
}
