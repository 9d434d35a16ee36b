/* `gemmatrain train` / `eval` with Gemma 4 images and audio, end to end on the shipped media4
 * task (configs/media4-lora.yaml: a tiny random Gemma 4 with frozen random vision and audio
 * towers, LoRA on the decoder; datasets/media4: datasets/speech's Opus clips behind <|audio|>,
 * datasets/shapes' PNGs behind <|image|>): the eval loss falls, on the spoken and on the picture
 * records; `eval --lora` on the trained adapter gives the trainer's number, and a worse one when
 * every eval record gets another record's media (the model reads them); a stopped-and-resumed
 * run gives the uninterrupted run's result; media for a model without that tower, more media
 * than slots, markers that do not match the files, a sequence length that cuts a span, packing
 * and tower LoRA are refused with one line naming file:line or the key. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/check_main.h"
#include "tests/cli_run.h"

#define CFG "configs/media4-lora.yaml"
#define EVAL "datasets/media4/eval.jsonl"

static char g_dir[64], g_out[1 << 16];

/* The CLI, its output in g_out. */
static int run(const char *args) { return gt_test_run(args, g_out, sizeof g_out); }

static double train(const char *extra) {
    char args[2048];
    snprintf(args, sizeof args, "train " CFG " output.overwrite=true %s", extra);
    int rc = run(args);
    ck_assert_msg(rc == 0, "train %s: exit %d\n%s", extra, rc, g_out);
    return gt_test_number_after(g_out, "eval after training: loss ");
}

/* Token-weighted mean loss of the per-example file's records [from, to). */
static double subset_loss(const char *path, int from, int to) {
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s", path);
    char line[512];
    double sum = 0, w = 0;
    for (int i = 0; fgets(line, sizeof line, f); i++) {
        json_t *o = json_loads(line, 0, NULL);
        ck_assert(o != NULL);
        double l = json_number_value(json_object_get(o, "loss")), n = json_number_value(json_object_get(o, "tokens"));
        if (i >= from && i < to) sum += l * n, w += n;
        json_decref(o);
    }
    fclose(f);
    ck_assert(w > 0);
    return sum / w;
}

/* An eval run's per-example losses into dst; returns the total loss. */
static double eval_to(const char *extra, const char *dst) {
    char args[2048];
    snprintf(args, sizeof args, "eval " CFG " eval.per_example_output=%s %s", dst, extra);
    ck_assert_msg(run(args) == 0, "eval %s:\n%s", extra, g_out);
    return gt_test_number_after(g_out, "\"loss\": ");
}

/* The eval file with each record's media replaced by the next record's of the same kind (absolute
 * paths, so the file can live elsewhere). */
static void write_rotated(const char *dst) {
    FILE *in = fopen(EVAL, "r"), *out = fopen(dst, "w");
    ck_assert(in && out);
    json_t *rec[64];
    int n = 0;
    char line[1024], cwd[1024];
    ck_assert(getcwd(cwd, sizeof cwd));
    while (n < 64 && fgets(line, sizeof line, in)) ck_assert((rec[n++] = json_loads(line, 0, NULL)) != NULL);
    for (int i = 0; i < n; i++) {
        const char *key = json_object_get(rec[i], "audio") ? "audio" : "images";
        int j = (i + 1) % n;
        while (!json_object_get(rec[j], key)) j = (j + 1) % n;
        char path[2048];
        snprintf(path, sizeof path, "%s/datasets/media4/%s", cwd,
                 json_string_value(json_array_get(json_object_get(rec[j], key), 0)));
        json_t *o = json_deep_copy(rec[i]);
        json_object_set_new(o, key, json_pack("[s]", path));
        char *s = json_dumps(o, JSON_COMPACT);
        fprintf(out, "%s\n", s);
        free(s);
        json_decref(o);
    }
    for (int i = 0; i < n; i++) json_decref(rec[i]);
    fclose(in);
    fclose(out);
}

START_TEST(train_learns_and_eval_reads_the_media) {
    char extra[512], pe[128], rot[128];
    snprintf(pe, sizeof pe, "%s/base.jsonl", g_dir);
    eval_to("", pe); /* LoRA B = 0: the untrained model */
    double a0 = subset_loss(pe, 0, 24), i0 = subset_loss(pe, 24, 48);
    snprintf(extra, sizeof extra, "output_dir=%s/run", g_dir);
    double after = train(extra);
    double before = gt_test_number_after(g_out, "eval before training: loss ");
    printf("media4 CLI: eval loss %.4f before, %.4f after\n", before, after);
    ck_assert_msg(before > 5 && after < 0.15 * before && after < 2, "eval loss %.4f -> %.4f", before, after);
    snprintf(extra, sizeof extra, "--lora %s/run/adapter.lora.h5", g_dir);
    snprintf(pe, sizeof pe, "%s/right.jsonl", g_dir);
    double again = eval_to(extra, pe);
    ck_assert_msg(fabs(again - after) <= 1e-4 * after, "eval --lora %.6f vs trainer %.6f", again, after);
    double a1 = subset_loss(pe, 0, 24), i1 = subset_loss(pe, 24, 48);
    printf("media4 CLI: spoken records %.4f -> %.4f, pictures %.4f -> %.4f\n", a0, a1, i0, i1);
    ck_assert_msg(a1 < 0.2 * a0 && i1 < 0.1 * i0, "audio %.4f -> %.4f, images %.4f -> %.4f", a0, a1, i0, i1);
    snprintf(rot, sizeof rot, "%s/rotated.jsonl", g_dir);
    write_rotated(rot);
    snprintf(extra, sizeof extra, "--lora %s/run/adapter.lora.h5 data.eval=%s", g_dir, rot);
    snprintf(pe, sizeof pe, "%s/rot.jsonl", g_dir);
    double wrong = eval_to(extra, pe);
    double a2 = subset_loss(pe, 0, 24), i2 = subset_loss(pe, 24, 48);
    printf("media4 CLI: %.4f with every record given the next one's media (spoken %.4f, pictures %.4f)\n", wrong,
           a2, i2);
    ck_assert_msg(i2 > i1 + 0.5 && wrong > after + 0.2, "the media do not matter: %.4f right, %.4f rotated", after,
                  wrong);
}
END_TEST

START_TEST(resume_matches) {
    char extra[512];
    snprintf(extra, sizeof extra, "output_dir=%s/one train.epochs=1", g_dir);
    double one = train(extra);
    snprintf(extra, sizeof extra, "output_dir=%s/res checkpoint.dir=%s/res/ckpt train.epochs=1 train.stop_after_steps=9",
             g_dir, g_dir);
    train(extra);
    snprintf(extra, sizeof extra, "output_dir=%s/res checkpoint.dir=%s/res/ckpt train.epochs=1 checkpoint.resume=latest",
             g_dir, g_dir);
    double resumed = train(extra);
    printf("media4 CLI: one epoch %.6f, stopped at step 9 and resumed %.6f\n", one, resumed);
    ck_assert_msg(resumed == one, "resumed %.6f vs %.6f", resumed, one);
    /* a trained vision tower: another result, and its tensors resume from the checkpoint */
    snprintf(extra, sizeof extra, "output_dir=%s/vone train.epochs=1 model.vision_train=full", g_dir);
    double full = train(extra);
    ck_assert_msg(strstr(g_out, "the trained vision tower is in the checkpoints only"), "%s", g_out);
    snprintf(extra, sizeof extra, "output_dir=%s/vres checkpoint.dir=%s/vres/ckpt train.epochs=1 "
             "model.vision_train=full train.stop_after_steps=9", g_dir, g_dir);
    train(extra);
    snprintf(extra, sizeof extra, "output_dir=%s/vres checkpoint.dir=%s/vres/ckpt train.epochs=1 "
             "model.vision_train=full checkpoint.resume=latest", g_dir, g_dir);
    resumed = train(extra);
    printf("media4 CLI: vision tower trained: %.6f, resumed %.6f\n", full, resumed);
    ck_assert_msg(full != one && resumed == full, "vision_train full %.6f, resumed %.6f, frozen %.6f", full, resumed,
                  one);
}
END_TEST

/* The command fails, naming want. */
static void refused(const char *args, const char *want) {
    int rc = run(args);
    ck_assert_msg(rc != 0 && strstr(g_out, want), "%s: exit %d, wanted '%s' in:\n%s", args, rc, want, g_out);
}

START_TEST(refusals) {
    refused("eval " CFG " model.audio_num_layers=0",
            EVAL ":1: the record has 1 audio clip(s) but the model has no Gemma 4 audio tower");
    refused("eval " CFG " model.vision_num_layers=0",
            EVAL ":25: the record has 1 image(s) but the model has no Gemma 4 vision tower");
    refused("eval " CFG " data.max_images_per_prompt=0", EVAL ":25: 1 image(s), more than data.max_images_per_prompt (0)");
    refused("eval " CFG " data.max_audio_per_prompt=0", EVAL ":1: 1 audio clip(s), more than data.max_audio_per_prompt (0)");
    refused("eval " CFG " data.sequence_length=24", EVAL ":1: data.sequence_length (24) cuts the record's media short");
    refused("train " CFG " output.overwrite=true data.packing=true output_dir=/tmp/gt_media4_never",
            ".jsonl:"); /* whichever record comes first */
    ck_assert_msg(strstr(g_out, "data.packing does not take records with"), "%s", g_out);
    refused("eval " CFG " model.vision_train=lora", "model.vision_train: lora is Gemma 3 only");
    char path[128], args[512], want[256];
    snprintf(path, sizeof path, "%s/nomark.jsonl", g_dir);
    FILE *f = fopen(path, "w");
    char cwd[1024];
    ck_assert(f && getcwd(cwd, sizeof cwd));
    fprintf(f, "{\"prompt\": \"Transcribe the clip.\", \"response\": \"A red circle.\", \"audio\": "
               "[\"%s/datasets/speech/audio/eval_000.opus\"]}\n", cwd);
    fclose(f);
    snprintf(args, sizeof args, "eval " CFG " data.eval=%s", path);
    snprintf(want, sizeof want, "%s:1: 0 <|audio|> marker(s) for 1 audio clip(s)", path);
    refused(args, want);
}
END_TEST

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/gt_media4_cli_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    Suite *s = suite_create("media4_cli");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, train_learns_and_eval_reads_the_media);
    tcase_add_test(tc, resume_matches);
    tcase_add_test(tc, refusals);
    suite_add_tcase(s, tc);
    int rc = gt_test_suite_main(s);
    return gt_test_rmtree(g_dir) ? EXIT_FAILURE : rc;
}
