/* Gemma 4 audio encoder against KerasHub (tools/reference/make_audio_encoder_fixture.py): a tiny
 * random Gemma4AudioEncoder with a padded clip (masked conv steps, queries with no valid key),
 * tight clip bounds and a bending soft-cap: output within 1e-4 x max, the gradient of
 * sum(output * R) for every trainable weight within 1e-3 relative (to the tensor's largest),
 * frozen weights left without gradient; and the parameter counts of the tiny encoder and of the
 * gemma4_2b / gemma4_4b audio towers equal KerasHub's count_params. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/audio.h"
#include "models/io/h5io.h"
#include "models/io/hf_audio.h"
#include "tests/h5fixture.h"
#include "tests/check_main.h"

#define FIX "tests/fixtures/audio_encoder.h5"

static void load(gt_h5 f, gt_audio_enc *m) {
    gt_audio_enc_config c;
    gt_audio_enc_defaults(&c, (int64_t)gt_fix_attr(f, "output_dim"));
    c.input_feat_size = (int64_t)gt_fix_attr(f, "input_feat_size");
    c.hidden = (int64_t)gt_fix_attr(f, "hidden_size");
    c.num_heads = (int64_t)gt_fix_attr(f, "num_heads");
    c.num_layers = (int64_t)gt_fix_attr(f, "num_layers");
    c.chunk = (int64_t)gt_fix_attr(f, "chunk_size");
    c.context_left = (int64_t)gt_fix_attr(f, "context_left");
    c.context_right = (int64_t)gt_fix_attr(f, "context_right");
    c.logit_cap = gt_fix_attr(f, "logit_cap");
    c.conv_kernel = (int64_t)gt_fix_attr(f, "conv_kernel_size");
    c.output_proj_dims = (int64_t)gt_fix_attr(f, "output_proj_dims");
    c.sscp_channels[0] = (int64_t)gt_fix_attr(f, "sscp_conv_channels_0");
    c.sscp_channels[1] = (int64_t)gt_fix_attr(f, "sscp_conv_channels_1");
    char err[512];
    ck_assert_msg(gt_audio_enc_init(m, &c, err, sizeof err) == 0, "%s", err);
    gt_fix_load(f, "/weights/", m->all, m->n_all);
    ck_assert_int_eq(gt_audio_enc_param_count(&c, false), (int64_t)gt_fix_attr(f, "param_count"));
    ck_assert_int_eq(gt_audio_enc_param_count(&c, true), (int64_t)gt_fix_attr(f, "trainable_count"));
}

START_TEST(matches_kerashub_forward_and_backward) {
    gt_h5 f;
    char err[512];
    ck_assert_msg(gt_h5_open_read(FIX, &f, err, sizeof err) == 0, "%s", err);
    gt_audio_enc m;
    load(f, &m);
    int64_t B = 2, T = 38, F = m.cfg.input_feat_size, shape[3] = {B, T, F};
    float *mel = gt_fix_f32(f, "/inputs/mel", B * T * F);
    int32_t *mask = gt_fix_i32(f, "/inputs/mask");
    uint8_t valid[76];
    for (int i = 0; i < B * T; i++) valid[i] = mask[i] != 0;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 1 << 22);
    gt_tensor *x = gt_from_data(&ctx, mel, 3, shape, false);
    const uint8_t *ov;
    gt_tensor *y = gt_audio_enc_forward(&ctx, &m, x, valid, &ov);
    ck_assert_msg(y, "%s", ctx.err);
    ck_assert_int_eq(y->shape[1], 10);
    ck_assert_int_eq(y->shape[2], m.cfg.output_dim);
    ck_assert_int_eq(ov[10 + 3], 1);
    ck_assert_int_eq(ov[10 + 4], 0);
    float *ref = gt_fix_f32(f, "/expected/output", y->size), *seed = gt_fix_f32(f, "/expected/seed", y->size);
    double mx = 0, worst = gt_fix_max_diff(y, ref, 0, y->size);
    for (int64_t i = 0; i < y->size; i++) mx = fmax(mx, fabs(ref[i]));
    printf("audio encoder output: max |ours - KerasHub| = %.3g x max (max %.3g)\n", worst / mx, mx);
    ck_assert_msg(worst <= 1e-4 * mx, "output differs by %.3g (max %.3g)", worst, mx);
    ck_assert_int_eq(gt_backward_seed(&ctx, y, seed), 0);
    const char *gname = "";
    double gworst = gt_fix_grad_worst(f, m.all, m.n_all, &gname);
    printf("audio encoder grads: worst %.3g relative (%s)\n", gworst, gname);
    ck_assert_msg(gworst <= 1e-3, "gradient of %s differs by %.3g relative", gname, gworst);
    /* the fixture exercises the tight clips and the padding mask: without them the output moves */
    gt_ctx_reset(&ctx);
    gt_tensor *clip = gt_audio_enc_param(&m, "conformer_0.ffw_start.ffw_1.clip");
    ck_assert_ptr_nonnull(clip);
    gt_real saved[4];
    memcpy(saved, clip->data, sizeof saved);
    clip->data[2] = -65504;
    clip->data[3] = 65504;
    x = gt_from_data(&ctx, mel, 3, shape, false);
    gt_tensor *y2 = gt_audio_enc_forward(&ctx, &m, x, valid, NULL);
    ck_assert_msg(y2, "%s", ctx.err);
    ck_assert_msg(gt_fix_max_diff(y2, ref, 0, y2->size) > 1e-3 * mx, "the clip bounds change nothing");
    memcpy(clip->data, saved, sizeof saved);
    gt_tensor *y3 = gt_audio_enc_forward(&ctx, &m, x, NULL, NULL);
    ck_assert_msg(y3, "%s", ctx.err);
    ck_assert_msg(gt_fix_max_diff(y3, ref, 0, y3->size / 2) <= 1e-4 * mx, "clip 0 has no padding");
    ck_assert_msg(gt_fix_max_diff(y3, ref, y3->size / 2, y3->size) > 1e-3 * mx, "the mask changes nothing");
    gt_ctx_free(&ctx);
    gt_audio_enc_free(&m);
    free(mel);
    free(mask);
    free(ref);
    free(seed);
    gt_h5_close(f);
}
END_TEST

START_TEST(preset_param_counts) {
    gt_h5 f;
    char err[512];
    ck_assert_msg(gt_h5_open_read(FIX, &f, err, sizeof err) == 0, "%s", err);
    const char *names[2] = {"gemma4_2b", "gemma4_instruct_4b"};
    const char *keys[2] = {"count_gemma4_2b", "count_gemma4_4b"};
    for (int i = 0; i < 2; i++) {
        gt_audio_enc_config c;
        ck_assert_msg(gt_audio_enc_preset(names[i], &c, err, sizeof err) == 0, "%s", err);
        int64_t n = gt_audio_enc_param_count(&c, false);
        printf("%s audio tower: %lld parameters\n", names[i], (long long)n);
        ck_assert_int_eq(n, (int64_t)gt_fix_attr(f, keys[i]));
    }
    gt_audio_enc_config c;
    ck_assert_int_eq(gt_audio_enc_preset("gemma4_31b", &c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "gemma4_31b"), "%s", err);
    gt_h5_close(f);
}
END_TEST

/* transformers' Gemma4AudioModel + embed_audio (tools/reference/make_hf_audio_fixture.py): our
 * encoder loaded from its safetensors gives its output. */
START_TEST(hf_checkpoint_matches_transformers) {
    const char *dir = "tests/fixtures/hf/gemma4_audio";
    char err[512], path[256];
    gt_audio_enc m;
    ck_assert_msg(gt_hf_audio_load(dir, &m, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(m.cfg.input_feat_size, 16);
    ck_assert_int_eq(m.cfg.output_dim, 10);
    gt_h5 f;
    snprintf(path, sizeof path, "%s/expected.h5", dir);
    ck_assert_msg(gt_h5_open_read(path, &f, err, sizeof err) == 0, "%s", err);
    int64_t B = 2, T = 38, shape[3] = {B, T, 16};
    float *mel = gt_fix_f32(f, "/inputs/mel", B * T * 16), *ref = gt_fix_f32(f, "/expected/output", B * 10 * 10);
    int32_t *mask = gt_fix_i32(f, "/inputs/mask");
    uint8_t valid[76];
    for (int i = 0; i < B * T; i++) valid[i] = mask[i] != 0;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 1 << 22);
    gt_tensor *y = gt_audio_enc_forward(&ctx, &m, gt_from_data(&ctx, mel, 3, shape, false), valid, NULL);
    ck_assert_msg(y, "%s", ctx.err);
    double mx = 0;
    for (int64_t i = 0; i < y->size; i++) mx = fmax(mx, fabs(ref[i]));
    /* clip 1 keeps 4 valid steps of 10; on its padded steps HF and KerasHub differ by design
     * (KerasHub zeroes them before the light conv, HF does not; the preprocessor places only
     * the valid ones), and we follow KerasHub: compare the valid steps */
    double w0 = gt_fix_max_diff(y, ref, 0, y->size / 2), w1 = gt_fix_max_diff(y, ref, y->size / 2, y->size / 2 + 40);
    double wp = gt_fix_max_diff(y, ref, y->size / 2 + 40, y->size);
    printf("HF audio tower: max |ours - transformers| = %.3g x max (clip 0), %.3g x max (clip 1's "
           "valid steps; padded steps %.3g)\n", w0 / mx, w1 / mx, wp / mx);
    ck_assert_msg(w0 <= 1e-4 * mx && w1 <= 1e-4 * mx, "differs from transformers: %.3g, %.3g", w0, w1);
    gt_ctx_free(&ctx);
    gt_audio_enc_free(&m);
    free(mel);
    free(ref);
    free(mask);
    gt_h5_close(f);
    /* a text-only config is refused naming the file */
    ck_assert_int_eq(gt_hf_audio_load("tests/fixtures/hf/gemma4", &m, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "config.json"), "%s", err);
}
END_TEST

int main(void) {
    Suite *s = suite_create("audio_encoder");
    TCase *tc = tcase_create("kerashub");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, matches_kerashub_forward_and_backward);
    tcase_add_test(tc, preset_param_counts);
    tcase_add_test(tc, hf_checkpoint_matches_transformers);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
