/* Gemma 4 with images and audio against KerasHub (tools/reference/make_gemma4_media_fixture.py):
 * a tiny Gemma4Backbone with both encoders on 3 rows (image + clip, a padded clip alone, an
 * image alone; padding): logits within 1e-4 x max of KerasHub's float64 run, and the gradient of
 * sum(logits * R) for every trainable weight (decoder, vision and audio encoders) within 1e-3 of
 * the tensor's largest reference entry; placeholder counts that do not match the clips are
 * refused, naming both. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/gemma4_mm.h"
#include "tests/gemma4_fixture.h"
#include "tests/check_main.h"

#define FIX "tests/fixtures/gemma4_media.h5"
#define B 3
#define T 20

/* Worst relative gradient error over the trainable tensors all[0..n), names under prefix. */
static double worst_grad(gt_h5 f, const char *prefix, gt_tensor *const *all, const char *const *names,
                         int n, char *worst_name, size_t wn, double *worst) {
    double w = 0;
    for (int i = 0; i < n; i++) {
        if (!all[i]->requires_grad) continue;
        char p[200];
        snprintf(p, sizeof p, "%s%s", prefix, names ? names[i] : all[i]->name);
        double e = gt_fix_grad_err(f, p, all[i]);
        w = fmax(w, e);
        if (e > *worst) *worst = e, snprintf(worst_name, wn, "%s", p);
    }
    return w;
}

static void check_grads(gt_h5 f, gt_ctx *ctx, gt_tensor *z, const gt_gemma *m,
                        const gt_vision4 *v, const gt_audio_enc *a) {
    float *seed = gt_fix_f32(f, "/expected/seed", z->size);
    ck_assert_int_eq(gt_backward_seed(ctx, z, seed), 0);
    gt_tensor **dec = malloc((size_t)m->n_params * sizeof *dec);
    const char **names = malloc((size_t)m->n_params * sizeof *names);
    for (int i = 0; i < m->n_params; i++) dec[i] = m->params[i].t, names[i] = m->params[i].name;
    char name[200] = "";
    double worst = 0;
    double wd = worst_grad(f, "", dec, names, m->n_params, name, sizeof name, &worst);
    double wv = worst_grad(f, "vision/", v->all, NULL, v->n_all, name, sizeof name, &worst);
    double wa = worst_grad(f, "audio/", a->all, NULL, a->n_all, name, sizeof name, &worst);
    printf("gemma4 + image + audio grads (max err / max |ref| per tensor): decoder %.3g, vision "
           "%.3g, audio %.3g; worst %s\n", wd, wv, wa, name);
    ck_assert_msg(worst <= 1e-3, "gradient of %s differs by %.3g relative", name, worst);
    free(dec);
    free(names);
    free(seed);
}

START_TEST(matches_kerashub_backbone_with_images_and_audio) {
    gt_h5 f;
    char err[512];
    ck_assert_msg(gt_h5_open_read(FIX, &f, err, sizeof err) == 0, "%s", err);
    gt_gemma *m = gt_fix_gemma4_decoder(f);
    int64_t V = m->cfg.vocab_size, D = m->cfg.hidden_dim;
    gt_vision4 v;
    gt_audio_enc a;
    gt_fix_vision4(f, &v, D);
    gt_fix_audio_enc(f, &a, D);
    int32_t *ids = gt_fix_i32(f, "/inputs/token_ids"), *pad32 = gt_fix_i32(f, "/inputs/padding_mask");
    int32_t *pos = gt_fix_i32(f, "/inputs/positions"), *mm32 = gt_fix_i32(f, "/inputs/mel_mask");
    float *pix = gt_fix_f32(f, "/inputs/pixels", 2 * 36 * 48);
    float *mel = gt_fix_f32(f, "/inputs/mel", 2 * 24 * a.cfg.input_feat_size);
    uint8_t pad[B * T], mm[2 * 24];
    for (int64_t i = 0; i < B * T; i++) pad[i] = (uint8_t)pad32[i];
    for (int64_t i = 0; i < 2 * 24; i++) mm[i] = (uint8_t)mm32[i];
    gt_gemma4_images im = {pix, pos, 2, 36};
    gt_gemma4_clips cl = {mel, mm, 2, 24};
    gt_gemma4_media md = {&v, true, (int32_t)gt_fix_attr(f, "image_token_id"), &im,
                          &a, (int32_t)gt_fix_attr(f, "audio_token_id"), &cl};
    gt_gemma_batch b = {.batch = B, .seq = T, .token_ids = ids, .padding_mask = pad};
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *z = gt_gemma_logits(&ctx, m, gt_gemma4_media_hidden(&ctx, m, &md, &b));
    ck_assert_msg(z, "%s", ctx.err);
    float *ref = gt_fix_f32(f, "/expected/logits", B * T * V);
    double mx = 0, worst = 0;
    for (int64_t i = 0; i < B * T * V; i++) mx = fmax(mx, fabs(ref[i]));
    for (int64_t i = 0; i < B * T * V; i++)
        if (pad[i / V]) worst = fmax(worst, fabs(z->data[i] - ref[i]));
    printf("gemma4 + image + audio: max |ours - KerasHub f64| = %.3g x max (max %.3g)\n",
           worst / mx, mx);
    ck_assert_msg(worst <= 1e-4 * mx, "logits differ by %.3g x max", worst / mx);
    check_grads(f, &ctx, z, m, &v, &a);
    /* one audio placeholder too many: refused with the counts */
    gt_ctx_reset(&ctx);
    int32_t saved = ids[2 * T + 1];
    ids[2 * T + 1] = md.audio_token;
    ck_assert_ptr_null(gt_gemma4_media_hidden(&ctx, m, &md, &b));
    ck_assert_msg(strstr(ctx.err, "11 audio-token slots") && strstr(ctx.err, "10 audio soft tokens"),
                  "%s", ctx.err);
    ids[2 * T + 1] = saved;
    /* no clips but audio slots: refused too */
    gt_ctx_reset(&ctx);
    md.clips = NULL;
    ck_assert_ptr_null(gt_gemma4_media_hidden(&ctx, m, &md, &b));
    ck_assert_msg(strstr(ctx.err, "10 audio-token slots") && strstr(ctx.err, "0 audio soft"), "%s", ctx.err);
    gt_ctx_free(&ctx);
    gt_vision4_free(&v);
    gt_audio_enc_free(&a);
    gt_gemma_free(m);
    free(ids), free(pad32), free(pos), free(mm32), free(pix), free(mel), free(ref);
    gt_h5_close(f);
}
END_TEST

/* Largest |z - ref row| over the V logits, relative to mx. */
static double row_err(const gt_tensor *z, const float *ref, int64_t V, double mx) {
    double e = 0;
    for (int64_t j = 0; j < V; j++) e = fmax(e, fabs(z->data[j] - ref[j]));
    return e / mx;
}

/* Cached generation sees what the batch forward sees: row 0 (image + clip) prefilled up to t = 13
 * and then fed token by token, row 1 (the padded clip alone) prefilled whole; the last logits
 * against KerasHub's at those positions. */
START_TEST(prefill_and_steps_match_the_batch) {
    gt_h5 f;
    char err[512];
    ck_assert_msg(gt_h5_open_read(FIX, &f, err, sizeof err) == 0, "%s", err);
    gt_gemma *m = gt_fix_gemma4_decoder(f);
    int64_t V = m->cfg.vocab_size, D = m->cfg.hidden_dim;
    gt_vision4 v;
    gt_audio_enc a;
    gt_fix_vision4(f, &v, D);
    gt_fix_audio_enc(f, &a, D);
    int32_t *ids = gt_fix_i32(f, "/inputs/token_ids"), *pos = gt_fix_i32(f, "/inputs/positions");
    int32_t *mm32 = gt_fix_i32(f, "/inputs/mel_mask");
    float *pix = gt_fix_f32(f, "/inputs/pixels", 2 * 36 * 48), *ref = gt_fix_f32(f, "/expected/logits", B * T * V);
    int64_t F = a.cfg.input_feat_size;
    float *mel = gt_fix_f32(f, "/inputs/mel", 2 * 24 * F);
    uint8_t mm[2 * 24];
    for (int64_t i = 0; i < 2 * 24; i++) mm[i] = (uint8_t)mm32[i];
    double mx = 0;
    for (int64_t i = 0; i < B * T * V; i++) mx = fmax(mx, fabs(ref[i]));
    gt_gemma4_images im = {pix, pos, 1, 36};
    gt_gemma4_clips cl = {mel, mm, 1, 24};
    gt_gemma4_media md = {&v, true, (int32_t)gt_fix_attr(f, "image_token_id"), &im,
                          &a, (int32_t)gt_fix_attr(f, "audio_token_id"), &cl};
    gt_gemma_cache cache;
    ck_assert_msg(gt_gemma_cache_init(&cache, m, T, err, sizeof err) == 0, "%s", err);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *z = gt_gemma4_media_prefill(&ctx, m, &md, &cache, ids, 14);
    ck_assert_msg(z, "%s", ctx.err);
    double worst = row_err(z, ref + 13 * V, V, mx);
    for (int64_t t = 14; t < T; t++) {
        gt_ctx_reset(&ctx);
        ck_assert_ptr_nonnull(z = gt_gemma_step(&ctx, m, &cache, ids + t, 1));
        worst = fmax(worst, row_err(z, ref + t * V, V, mx));
    }
    gt_gemma_cache_free(&cache);
    /* row 1: no image, the second clip (13 of 24 frames) */
    gt_gemma4_clips cl1 = {mel + 24 * F, mm + 24, 1, 24};
    md.images = NULL, md.clips = &cl1;
    ck_assert_msg(gt_gemma_cache_init(&cache, m, T, err, sizeof err) == 0, "%s", err);
    gt_ctx_reset(&ctx);
    z = gt_gemma4_media_prefill(&ctx, m, &md, &cache, ids + T, 17);
    ck_assert_msg(z, "%s", ctx.err);
    worst = fmax(worst, row_err(z, ref + (T + 16) * V, V, mx));
    printf("gemma4 + image + audio, cached: prefill and steps within %.3g x max of KerasHub\n", worst);
    ck_assert_msg(worst <= 1e-4, "cached logits differ by %.3g x max", worst);
    gt_gemma_cache_free(&cache);
    gt_ctx_free(&ctx);
    gt_vision4_free(&v);
    gt_audio_enc_free(&a);
    gt_gemma_free(m);
    free(ids), free(pos), free(mm32), free(pix), free(mel), free(ref);
    gt_h5_close(f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gemma4_media");
    TCase *tc = tcase_create("kerashub");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, matches_kerashub_backbone_with_images_and_audio);
    tcase_add_test(tc, prefill_and_steps_match_the_batch);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
