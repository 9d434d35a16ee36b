/* The shipped speech task (datasets/speech, tools/make_speech_task.py): every record opens as a
 * dataset record with one clip, every clip decodes through gt_audio_read_wav at 16 kHz to a
 * plausible length with speech in it (log-mel features of the first two finite), and every
 * transcript is one of the generator's phrasings of a colour and a shape, each pair equally
 * often. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/audio.h"
#include "data/dataset.h"
#include "tests/check_main.h"

static const char *colours[] = {"red", "green", "blue", "yellow"};
static const char *shapes[] = {"square", "circle", "triangle"};

/* The pair index (colour * 3 + shape) the transcript names, or -1 when it is not a phrasing the
 * generator writes. */
static int transcript_pair(const char *r) {
    static const char *lead[] = {"A ", "The ", "One ", "It is a "};
    for (size_t l = 0; l < 4; l++) {
        size_t n = strlen(lead[l]);
        if (strncmp(r, lead[l], n)) continue;
        for (int c = 0; c < 4; c++)
            for (int s = 0; s < 3; s++) {
                char want[64], please[64];
                snprintf(want, sizeof want, "%s%s %s.", lead[l], colours[c], shapes[s]);
                snprintf(please, sizeof please, "%s%s %s please.", lead[l], colours[c], shapes[s]);
                if (!strcmp(r, want) || (l == 0 && !strcmp(r, please))) return c * 3 + s;
            }
    }
    return -1;
}

static void check_split(const char *path, int64_t want_n, int per_pair) {
    char err[512];
    gt_dataset ds;
    ck_assert_msg(!gt_dataset_open(path, GT_DS_AUTO, false, &ds, err, sizeof err), "%s", err);
    ck_assert_int_eq(ds.n, want_n);
    gt_audio_cfg ac;
    gt_audio_cfg_default(&ac);
    ac.max_audio_length = 5; /* clips are short: keep the feature buffer small */
    int64_t frames = gt_audio_num_frames(&ac);
    float *mel = malloc(sizeof(float) * (size_t)(frames * ac.num_mels));
    int count[12] = {0};
    for (int64_t i = 0; i < ds.n; i++) {
        gt_example ex;
        ck_assert_msg(!gt_dataset_read(&ds, i, &ex, err, sizeof err), "%s", err);
        ck_assert_int_eq(ex.n_audio, 1);
        ck_assert_msg(strstr(ex.prompt, GT_AUDIO_PLACEHOLDER) != NULL, "%s", ex.prompt);
        int pair = transcript_pair(ex.response);
        ck_assert_msg(pair >= 0, "%s:%lld: unexpected transcript %s", path, (long long)ex.line,
                      ex.response);
        count[pair]++;
        float *x;
        int64_t n;
        ck_assert_msg(!gt_audio_read_wav(ex.audio[0], 16000, &x, &n, NULL, err, sizeof err), "%s",
                      err);
        ck_assert_msg(n > 16000 * 3 / 10 && n < 16000 * 5, "%s: %lld samples", ex.audio[0],
                      (long long)n);
        double peak = 0;
        for (int64_t j = 0; j < n; j++) peak = fmax(peak, fabs(x[j]));
        ck_assert_msg(peak > 0.05, "%s: silent (peak %g)", ex.audio[0], peak);
        if (i < 2) { /* features of a couple of clips: the rest decode the same way */
            ck_assert_msg(!gt_audio_features(&ac, x, n, mel, err, sizeof err), "%s", err);
            for (int64_t j = 0; j < frames * ac.num_mels; j++) ck_assert(isfinite(mel[j]));
        }
        free(x);
        gt_example_free(&ex);
    }
    for (int p = 0; p < 12; p++) ck_assert_int_eq(count[p], per_pair);
    free(mel);
    gt_dataset_close(&ds);
}

START_TEST(speech_task_is_complete) {
    check_split("datasets/speech/train.jsonl", 60, 5);
    check_split("datasets/speech/eval.jsonl", 24, 2);
}
END_TEST

int main(void) {
    Suite *s = suite_create("speech_task");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, speech_task_is_complete);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
