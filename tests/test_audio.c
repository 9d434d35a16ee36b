/* Gemma 4 audio features against KerasHub's Gemma4AudioConverter on committed WAVs
 * (tools/reference/make_audio_fixture.py: tone, chirp longer than the clip, noise, short tone,
 * espeak-ng speech), the preprocessor's valid-frame and soft-token counts, and the WAV reader's
 * errors (missing file, wrong rate, not audio), each naming the file. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/audio.h"
#include "data/dataset.h"
#include "models/io/h5io.h"
#include "tests/check_main.h"

#define FIX "tests/fixtures/audio/"

static double attr(gt_h5 f, const char *obj, const char *name) {
    double v;
    char err[512];
    ck_assert_msg(gt_h5_attr_f64(f, obj, name, &v, err, sizeof err) == 0, "%s", err);
    return v;
}

static void fixture_cfg(gt_h5 f, gt_audio_cfg *c) {
    gt_audio_cfg_default(c);
    c->num_mels = (int)attr(f, "/", "num_mels");
    c->num_fft_bins = (int)attr(f, "/", "num_fft_bins");
    c->stride = (int)attr(f, "/", "stride");
    c->frame_length = (int)attr(f, "/", "frame_length");
    c->sampling_rate = (int)attr(f, "/", "sampling_rate");
    c->max_audio_length = (int)attr(f, "/", "max_audio_length");
    c->min_frequency = attr(f, "/", "min_frequency");
    c->max_frequency = attr(f, "/", "max_frequency");
    c->mel_floor = attr(f, "/", "mel_floor");
}

/* Features of FIX<name>.wav vs the fixture; returns the worst absolute difference. */
static double check_clip(gt_h5 f, const gt_audio_cfg *c, const char *name) {
    char path[256], obj[128], err[512];
    snprintf(path, sizeof path, FIX "%s.wav", name);
    float *x;
    int64_t n;
    ck_assert_msg(gt_audio_read_wav(path, c->sampling_rate, &x, &n, NULL, err, sizeof err) == 0,
                  "%s", err);
    snprintf(obj, sizeof obj, "/%s", name);
    ck_assert_int_eq(n, (int64_t)attr(f, obj, "samples"));
    ck_assert_int_eq(gt_audio_valid_frames(c, n), (int64_t)attr(f, obj, "valid_frames"));
    ck_assert_int_eq(gt_audio_num_tokens(c, n), (int64_t)attr(f, obj, "num_tokens"));
    int64_t frames = gt_audio_num_frames(c), shape[8];
    float *got = malloc((size_t)(frames * c->num_mels) * sizeof *got), *ref;
    ck_assert_ptr_nonnull(got);
    ck_assert_msg(gt_audio_features(c, x, n, got, err, sizeof err) == 0, "%s", err);
    snprintf(obj, sizeof obj, "/%s/features", name);
    int nd;
    ck_assert_msg(gt_h5_read_f32(f, obj, &ref, &nd, shape, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(nd, 2);
    ck_assert_int_eq(shape[0], frames);
    ck_assert_int_eq(shape[1], c->num_mels);
    double worst = 0;
    for (int64_t i = 0; i < frames * c->num_mels; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= worst)) worst = d;
    }
    printf("audio features %s: %lld samples, max |ours - KerasHub| = %.3g\n", name, (long long)n,
           worst);
    free(x);
    free(got);
    free(ref);
    return worst;
}

START_TEST(features_match_kerashub) {
    gt_h5 f;
    char err[512];
    ck_assert_msg(gt_h5_open_read(FIX "features.h5", &f, err, sizeof err) == 0, "%s", err);
    gt_audio_cfg c;
    fixture_cfg(f, &c);
    const char *names[] = {"tone440", "chirp", "noise", "short_tone", "speech"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        double w = check_clip(f, &c, names[i]);
        ck_assert_msg(w <= 1e-4, "%s: features differ from KerasHub's by %.3g", names[i], w);
    }
    gt_h5_close(f);
}
END_TEST

START_TEST(token_counts) {
    gt_audio_cfg c;
    gt_audio_cfg_default(&c);
    ck_assert_int_eq(gt_audio_num_frames(&c), 3000);
    /* a full 30 s clip: 3000 frames -> 750 soft tokens (KerasHub's num_audio_tokens_per_clip) */
    ck_assert_int_eq(gt_audio_num_tokens(&c, 30 * 16000), 750);
    ck_assert_int_eq(gt_audio_num_tokens(&c, 60 * 16000), 750);
    ck_assert_int_eq(gt_audio_num_tokens(&c, 0), 1);
    ck_assert_int_eq(gt_audio_num_tokens(&c, 161), 1);
    ck_assert_int_eq(gt_audio_num_tokens(&c, 5 * 160), 2);
}
END_TEST

START_TEST(wav_errors_name_the_file) {
    char err[512];
    float *x;
    int64_t n;
    ck_assert_int_eq(gt_audio_read_wav(FIX "nope.wav", 0, &x, &n, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, FIX "nope.wav"), "%s", err);
    ck_assert_int_eq(gt_audio_read_wav(FIX "tone440.wav", 22050, &x, &n, NULL, err, sizeof err),
                     -1);
    ck_assert_msg(strstr(err, "tone440.wav") && strstr(err, "16000"), "%s", err);
    ck_assert_int_eq(gt_audio_read_wav(FIX "features.h5", 0, &x, &n, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "features.h5"), "%s", err);
    int rate = 0;
    ck_assert_int_eq(gt_audio_read_wav(FIX "tone440.wav", 0, &x, &n, &rate, err, sizeof err), 0);
    ck_assert_int_eq(rate, 16000);
    ck_assert_int_eq(n, 16000);
    /* int16 / 32768: the first sample of sin is 0, the fourth round(0.5 sin(2 pi 440 3/16000) 32767)/32768 */
    ck_assert_float_eq(x[0], 0.0f);
    ck_assert_float_eq_tol(x[3], (float)(round(0.5 * sin(2 * M_PI * 440 * 3 / 16000.0) * 32767) / 32768), 1e-7);
    free(x);
    gt_audio_cfg c;
    gt_audio_cfg_default(&c);
    c.frame_length = 1024;
    ck_assert_int_eq(gt_audio_cfg_validate(&c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "frame_length"), "%s", err);
}
END_TEST

START_TEST(prompt_expansion) {
    char *out, err[256];
    ck_assert_int_eq(gt_audio_expand_prompt("Say <|audio|> twice: <|audio|>.", 2, &out, err, sizeof err), 0);
    ck_assert_str_eq(out, "Say <|audio><|audio|><|audio|><audio|> twice: "
                          "<|audio><|audio|><|audio|><audio|>.");
    free(out);
    ck_assert_int_eq(gt_audio_expand_prompt("no audio", 750, &out, err, sizeof err), 0);
    ck_assert_str_eq(out, "no audio");
    free(out);
    ck_assert_int_eq(gt_audio_expand_prompt("<|audio|>", 0, &out, err, sizeof err), -1);
    /* a full clip: 750 placeholders between the start and end markers */
    ck_assert_int_eq(gt_audio_expand_prompt("<|audio|>", 750, &out, err, sizeof err), 0);
    ck_assert_int_eq(strlen(out), strlen("<|audio>") + 750 * strlen("<|audio|>") + strlen("<audio|>"));
    free(out);
}
END_TEST

START_TEST(jsonl_audio_paths) {
    char dir[] = "/tmp/gt_audio_XXXXXX", path[300], err[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/d.jsonl", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"prompt\": \"<|audio|> says\", \"response\": \"hi\", \"audio\": [\"a.wav\", \"/abs/b.wav\"]}\n"
          "{\"text\": \"plain\"}\n", f);
    fclose(f);
    gt_dataset ds;
    ck_assert_msg(gt_dataset_open(path, GT_DS_AUTO, false, &ds, err, sizeof err) == 0, "%s", err);
    gt_example ex;
    ck_assert_msg(gt_dataset_read(&ds, 0, &ex, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ex.n_audio, 2);
    char want[320];
    snprintf(want, sizeof want, "%s/a.wav", dir);
    ck_assert_str_eq(ex.audio[0], want);
    ck_assert_str_eq(ex.audio[1], "/abs/b.wav");
    gt_example_free(&ex);
    ck_assert_msg(gt_dataset_read(&ds, 1, &ex, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ex.n_audio, 0);
    gt_example_free(&ex);
    gt_dataset_close(&ds);
    f = fopen(path, "w");
    fputs("{\"text\": \"x\"}\n{\"text\": \"y\", \"audio\": [3]}\n", f);
    fclose(f);
    ck_assert_int_eq(gt_dataset_open(path, GT_DS_AUTO, false, &ds, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "d.jsonl:2") && strstr(err, "audio[0]"), "%s", err);
    unlink(path);
    rmdir(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("audio");
    TCase *tc = tcase_create("converter");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, features_match_kerashub);
    tcase_add_test(tc, token_counts);
    tcase_add_test(tc, wav_errors_name_the_file);
    tcase_add_test(tc, prompt_expansion);
    tcase_add_test(tc, jsonl_audio_paths);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
