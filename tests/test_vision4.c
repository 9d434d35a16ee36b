/* Gemma 4 vision encoder against KerasHub (tools/reference/make_vision4_fixture.py): a tiny random
 * Gemma4VisionEncoder (GQA, 2-D rotary, clipped linears with one tight clip, pool 3): output
 * within 1e-4 x max, the gradient of sum(output * R) for every trainable weight within 1e-3
 * relative (to the tensor's largest), clip bounds left without gradient, with one image padded
 * as the converter pads (positions -1); the parameter count equals KerasHub's count_params; a
 * bad position is refused with a message naming the patch. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/audio.h"
#include "models/gemma_config.h"
#include "models/io/h5io.h"
#include "models/vision4.h"
#include "tests/h5fixture.h"
#include "tests/check_main.h"

#define FIX "tests/fixtures/vision4.h5"

static void load(gt_h5 f, gt_vision4 *m) {
    gt_vision4_config c;
    gt_vision4_defaults(&c, (int64_t)gt_fix_attr(f, "output_dim"));
    c.image_size = (int64_t)gt_fix_attr(f, "image_size");
    c.patch_size = (int64_t)gt_fix_attr(f, "patch_size");
    c.pool_size = (int64_t)gt_fix_attr(f, "pool_size");
    c.hidden = (int64_t)gt_fix_attr(f, "hidden_dim");
    c.intermediate = (int64_t)gt_fix_attr(f, "intermediate_dim");
    c.num_layers = (int64_t)gt_fix_attr(f, "num_layers");
    c.num_heads = (int64_t)gt_fix_attr(f, "num_heads");
    c.num_kv_heads = (int64_t)gt_fix_attr(f, "num_key_value_heads");
    c.head_dim = (int64_t)gt_fix_attr(f, "head_dim");
    c.pos_table = (int64_t)gt_fix_attr(f, "position_embedding_size");
    c.rope_base = gt_fix_attr(f, "rope_max_wavelength");
    c.eps = gt_fix_attr(f, "layer_norm_epsilon");
    c.clipped = gt_fix_attr(f, "use_clipped_linears") != 0;
    char err[512];
    ck_assert_msg(gt_vision4_init(m, &c, err, sizeof err) == 0, "%s", err);
    gt_fix_load(f, "/weights/", m->all, m->n_all);
    ck_assert_int_eq(gt_vision4_param_count(&c, false), (int64_t)gt_fix_attr(f, "param_count"));
}

START_TEST(matches_kerashub_forward_and_backward) {
    gt_h5 f;
    char err[512];
    ck_assert_msg(gt_h5_open_read(FIX, &f, err, sizeof err) == 0, "%s", err);
    gt_vision4 m;
    load(f, &m);
    int64_t n = 4, P = 36, pp3 = 48;
    float *pix = gt_fix_f32(f, "/inputs/pixels", n * P * pp3);
    int32_t *pos = gt_fix_i32(f, "/inputs/positions");
    gt_ctx ctx;
    gt_ctx_init(&ctx, 1 << 22);
    gt_tensor *y = gt_vision4_encode(&ctx, &m, pix, pos, n, P);
    ck_assert_msg(y, "%s", ctx.err);
    ck_assert_int_eq(y->shape[0], n);
    ck_assert_int_eq(y->shape[1], 4);
    ck_assert_int_eq(y->shape[2], m.cfg.output_dim);
    float *ref = gt_fix_f32(f, "/expected/output", y->size), *seed = gt_fix_f32(f, "/expected/seed", y->size);
    double mx = 0;
    for (int64_t i = 0; i < y->size; i++) mx = fmax(mx, fabs(ref[i]));
    double worst = gt_fix_max_diff(y, ref, 0, y->size);
    printf("vision4 encoder output: max |ours - KerasHub| = %.3g x max (max %.3g)\n", worst / mx, mx);
    ck_assert_msg(worst <= 1e-4 * mx, "output differs by %.3g (max %.3g)", worst, mx);
    /* image 3 (6 x 3 real patches, then padding) pools to 2 cells; the other 2 are zero */
    for (int64_t j = 2 * m.cfg.output_dim; j < 4 * m.cfg.output_dim; j++)
        ck_assert(y->data[3 * 4 * m.cfg.output_dim + j] == 0 && ref[3 * 4 * m.cfg.output_dim + j] == 0);
    ck_assert_int_eq(gt_backward_seed(&ctx, y, seed), 0);
    const char *gname = "";
    double gworst = gt_fix_grad_worst(f, m.all, m.n_all, &gname);
    printf("vision4 encoder grads: worst %.3g relative (%s)\n", gworst, gname);
    ck_assert_msg(gworst <= 1e-3, "gradient of %s differs by %.3g relative", gname, gworst);
    /* the tight clip matters: loosening it moves the output */
    gt_ctx_reset(&ctx);
    gt_tensor *clip = gt_vision4_param(&m, "block_0.gate.clip");
    ck_assert_ptr_nonnull(clip);
    clip->data[2] = -65504;
    clip->data[3] = 65504;
    gt_tensor *y2 = gt_vision4_encode(&ctx, &m, pix, pos, n, P);
    ck_assert_msg(y2, "%s", ctx.err);
    ck_assert_msg(gt_fix_max_diff(y2, ref, 0, y2->size) > 1e-3 * mx, "the clip bounds change nothing");
    /* a position outside the table (or half padding) is refused, naming the patch */
    gt_ctx_reset(&ctx);
    pos[2 * 5] = -1;
    ck_assert_ptr_null(gt_vision4_encode(&ctx, &m, pix, pos, n, P));
    ck_assert_msg(strstr(ctx.err, "image 0 patch 5 has position (-1, 0)"), "%s", ctx.err);
    gt_ctx_free(&ctx);
    gt_vision4_free(&m);
    free(pix);
    free(pos);
    free(ref);
    free(seed);
    gt_h5_close(f);
}
END_TEST

/* vision + audio + text of the E2B/E4B presets against KerasHub's `params` metadata (5.1e9,
 * 7.9e9, given to 0.1e9): each tower's count is KerasHub's count_params (the vision one from the
 * fixture, the text and audio ones checked in test_gemma_config / test_audio_encoder). */
START_TEST(preset_totals_match_kerashub) {
    gt_h5 f;
    char err[512];
    ck_assert_msg(gt_h5_open_read(FIX, &f, err, sizeof err) == 0, "%s", err);
    const char *names[2] = {"gemma4_2b", "gemma4_instruct_4b"}, *keys[2] = {"count_gemma4_2b",
                                                                           "count_gemma4_4b"};
    const char *audio[2] = {"gemma4_2b", "gemma4_4b"};
    const double published[2] = {5.1e9, 7.9e9};
    for (int i = 0; i < 2; i++) {
        gt_vision4_config vc;
        gt_audio_enc_config ac;
        gt_gemma_config tc;
        ck_assert_msg(gt_vision4_preset(names[i], &vc, err, sizeof err) == 0, "%s", err);
        ck_assert_msg(gt_audio_enc_preset(audio[i], &ac, err, sizeof err) == 0, "%s", err);
        ck_assert_msg(gt_gemma_preset(names[i], &tc, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(vc.output_dim, tc.hidden_dim);
        int64_t v = gt_vision4_param_count(&vc, false), a = gt_audio_enc_param_count(&ac, false);
        int64_t t = gt_gemma_total_param_count(&tc), total = v + a + t;
        ck_assert_int_eq(v, (int64_t)gt_fix_attr(f, keys[i]));
        printf("%s: text %lld + audio %lld + vision %lld = %lld\n", names[i], (long long)t,
               (long long)a, (long long)v, (long long)total);
        ck_assert_msg(fabs(round(total / 1e8) * 1e8 - published[i]) < 1, "%s: %lld does not round "
                      "to %.1e", names[i], (long long)total, published[i]);
    }
    gt_vision4_config vc;
    ck_assert_int_eq(gt_vision4_preset("gemma4_31b", &vc, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "gemma4_31b"), "%s", err);
    gt_h5_close(f);
}
END_TEST

START_TEST(bad_config_rejected) {
    gt_vision4_config c;
    gt_vision4_defaults(&c, 1536);
    char err[256];
    ck_assert_int_eq(gt_vision4_validate(&c, err, sizeof err), 0);
    c.num_kv_heads = 5;
    ck_assert_int_eq(gt_vision4_validate(&c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "num_kv_heads 5"), "%s", err);
}
END_TEST

int main(void) {
    Suite *s = suite_create("vision4");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, matches_kerashub_forward_and_backward);
    tcase_add_test(tc, preset_totals_match_kerashub);
    tcase_add_test(tc, bad_config_rejected);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
