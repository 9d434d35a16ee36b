/* Gemma 4 towers written into a Hugging Face directory (models/io/hf_towers4.h): the HF
 * fixtures (tests/fixtures/hf/gemma4_vision, gemma4_audio, written by transformers) read,
 * written and read again give bit-identical towers, and every tensor of the transformers-written
 * file is in ours with the same name, shape and values. GT_HF_TOWERS_EXPORT_DIR keeps the two
 * directories (<dir>/vision, <dir>/audio) for make_hf_vision4_fixture.py --check-export. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/io/hf_audio.h"
#include "models/io/hf_towers4.h"
#include "models/io/hf_vision4.h"
#include "models/io/safetensors.h"
#include "tests/check_main.h"
#include "tests/cli_run.h"
#include "tests/same_tensors.h"

static char g_dir[600];

START_TEST(vision_round_trips) {
    char err[512], dir[700];
    snprintf(dir, sizeof dir, "%s/vision", g_dir);
    gt_vision4 v, v2;
    ck_assert_msg(!gt_hf_vision4_load("tests/fixtures/hf/gemma4_vision", &v, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_hf_towers4_save(dir, &v, NULL, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_hf_vision4_load(dir, &v2, err, sizeof err), "%s", err);
    ck_assert_int_eq(v2.n_all, v.n_all);
    ck_assert(v2.cfg.num_kv_heads == v.cfg.num_kv_heads && v2.cfg.rope_base == v.cfg.rope_base &&
              v2.cfg.clipped && v2.cfg.pos_table == v.cfg.pos_table);
    gt_test_same_params(v.all, v2.all, v.n_all);
    gt_test_same_st("tests/fixtures/hf/gemma4_vision", dir);
    gt_vision4_free(&v), gt_vision4_free(&v2);
}
END_TEST

START_TEST(audio_round_trips) {
    char err[512], dir[700];
    snprintf(dir, sizeof dir, "%s/audio", g_dir);
    gt_audio_enc a, a2;
    ck_assert_msg(!gt_hf_audio_load("tests/fixtures/hf/gemma4_audio", &a, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_hf_towers4_save(dir, NULL, &a, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_hf_audio_load(dir, &a2, err, sizeof err), "%s", err);
    ck_assert_int_eq(a2.n_all, a.n_all);
    ck_assert(a2.cfg.chunk == a.cfg.chunk && a2.cfg.logit_cap == a.cfg.logit_cap &&
              a2.cfg.output_proj_dims == a.cfg.output_proj_dims);
    gt_test_same_params(a.all, a2.all, a.n_all);
    gt_test_same_st("tests/fixtures/hf/gemma4_audio", dir);
    /* what HF's audio_config cannot say is refused, naming it */
    a.cfg.input_feat_size = 128;
    snprintf(dir, sizeof dir, "%s/refused", g_dir);
    ck_assert_int_eq(gt_hf_towers4_save(dir, NULL, &a, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "subsampling_conv_channels[0]"), "%s", err);
    gt_vision4 v;
    ck_assert_msg(!gt_hf_vision4_load("tests/fixtures/hf/gemma4_vision", &v, err, sizeof err), "%s", err);
    ck_assert_int_eq(gt_hf_towers4_save(dir, &v, &a2, err, sizeof err), -1); /* widths 32, 10 */
    ck_assert_msg(strstr(err, "different widths"), "%s", err);
    gt_audio_enc_free(&a), gt_audio_enc_free(&a2), gt_vision4_free(&v);
}
END_TEST

int main(void) {
    int keep = gt_test_scratch(g_dir, sizeof g_dir, "GT_HF_TOWERS_EXPORT_DIR", "gt_hftowers");
    if (keep < 0) return 1;
    Suite *s = suite_create("hf_towers4");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, vision_round_trips);
    tcase_add_test(tc, audio_round_trips);
    suite_add_tcase(s, tc);
    int rc = gt_test_suite_main(s);
    if (!keep) gt_test_rmtree(g_dir);
    return rc;
}
