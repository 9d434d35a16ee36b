/* Gemma 4 with images against KerasHub (tools/reference/make_gemma4_mm_fixture.py): a tiny
 * Gemma4Backbone (PLE, kv sharing, local window 6) with a tiny Gemma4VisionEncoder, a batch of
 * one row with an image and one without: logits within 1e-4 x max with
 * use_vision_bidirectional_attention (image spans open on local layers only) and without it;
 * with it, the gradient of sum(logits * R) for every trainable weight (decoder and encoder)
 * within 1e-3 relative; a placeholder count that does not match the images is refused, naming
 * the counts; the preprocessor's <|image|> expansion. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/gemma4_mm.h"
#include "models/io/h5io.h"
#include "tests/gemma4_fixture.h"
#include "tests/check_main.h"

#define FIX "tests/fixtures/gemma4_mm.h5"

/* Backward through the placement: d sum(logits * R) for every trainable weight of the decoder
 * and the vision encoder. */
static void check_grads(gt_h5 f, gt_ctx *ctx, gt_tensor *z, const gt_gemma *m, const gt_vision4 *v) {
    float *seed = gt_fix_f32(f, "/expected/seed", z->size);
    ck_assert_int_eq(gt_backward_seed(ctx, z, seed), 0);
    double worst = 0;
    char name[200] = "";
    for (int i = 0; i < m->n_params; i++) {
        if (!m->params[i].t->requires_grad) continue;
        double e = gt_fix_grad_err(f, m->params[i].name, m->params[i].t);
        if (e > worst) worst = e, snprintf(name, sizeof name, "%s", m->params[i].name);
    }
    double vworst = 0;
    for (int i = 0; i < v->n_all; i++) {
        if (!v->all[i]->requires_grad) continue;
        char p[160];
        snprintf(p, sizeof p, "vision/%s", v->all[i]->name);
        double e = gt_fix_grad_err(f, p, v->all[i]);
        vworst = fmax(vworst, e);
        if (e > worst) worst = e, snprintf(name, sizeof name, "%s", p);
    }
    printf("gemma4 + image grads: vision encoder worst %.3g relative\n", vworst);
    printf("gemma4 + image grads: worst %.3g relative (%s)\n", worst, name);
    ck_assert_msg(worst <= 1e-3, "gradient of %s differs by %.3g relative", name, worst);
    free(seed);
}

START_TEST(matches_kerashub_backbone_with_images) {
    gt_h5 f;
    char err[512];
    ck_assert_msg(gt_h5_open_read(FIX, &f, err, sizeof err) == 0, "%s", err);
    gt_gemma *m = gt_fix_gemma4_decoder(f);
    int64_t B = 2, T = 14, V = m->cfg.vocab_size;
    gt_vision4 v;
    gt_fix_vision4(f, &v, m->cfg.hidden_dim);
    ck_assert_int_eq(gt_gemma_param_count(&m->cfg) + gt_vision4_param_count(&v.cfg, false),
                     (int64_t)gt_fix_attr_or(f, "kerashub_param_count", -1));
    int32_t *ids = gt_fix_i32(f, "/inputs/token_ids"), *pad32 = gt_fix_i32(f, "/inputs/padding_mask");
    int32_t *pos = gt_fix_i32(f, "/inputs/positions");
    float *pix = gt_fix_f32(f, "/inputs/pixels", 36 * 48);
    uint8_t pad[28];
    for (int64_t i = 0; i < B * T; i++) pad[i] = (uint8_t)pad32[i];
    int32_t tok = (int32_t)gt_fix_attr_or(f, "image_token_id", -1);
    gt_gemma4_images im = {pix, pos, 1, 36};
    gt_gemma_batch b = {.batch = B, .seq = T, .token_ids = ids, .padding_mask = pad};
    const char *refs[2] = {"/expected/logits", "/expected/logits_causal"};
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    for (int k = 0; k < 2; k++) {
        gt_ctx_reset(&ctx);
        gt_tensor *z = gt_gemma_logits(&ctx, m, gt_gemma4_mm_hidden(&ctx, m, &v, k == 0, tok, &b, &im));
        ck_assert_msg(z, "%s", ctx.err);
        float *ref = gt_fix_f32(f, refs[k], B * T * V);
        double mx = 0, worst = 0;
        for (int64_t i = 0; i < B * T * V; i++) mx = fmax(mx, fabs(ref[i]));
        for (int64_t i = 0; i < B * T * V; i++)
            if (pad[i / V]) worst = fmax(worst, fabs(z->data[i] - ref[i]));
        printf("gemma4 + image (%s): max |ours - KerasHub| = %.3g x max (max %.3g)\n",
               k == 0 ? "vision bidirectional" : "causal", worst / mx, mx);
        ck_assert_msg(worst <= 1e-4 * mx, "%s differs by %.3g x max", refs[k], worst / mx);
        free(ref);
        if (k == 0) check_grads(f, &ctx, z, m, &v);
    }
    /* one placeholder too many: refused with the counts */
    gt_ctx_reset(&ctx);
    int32_t saved = ids[T + 1];
    ids[T + 1] = tok;
    ck_assert_ptr_null(gt_gemma4_mm_hidden(&ctx, m, &v, true, tok, &b, &im));
    ck_assert_msg(strstr(ctx.err, "5 image-token slots") && strstr(ctx.err, "4 image soft tokens"),
                  "%s", ctx.err);
    ids[T + 1] = saved;
    gt_ctx_free(&ctx);
    gt_vision4_free(&v);
    gt_gemma_free(m);
    free(ids);
    free(pad32);
    free(pos);
    free(pix);
    gt_h5_close(f);
}
END_TEST

/* KerasHub's expansion of "<|image|>" (the regex_replace in Gemma4CausalLMPreprocessor) */
START_TEST(expands_image_placeholders) {
    char *out, err[256];
    ck_assert_int_eq(gt_gemma4_expand_images("a <|image|> b<|image|>", 3, &out, err, sizeof err), 0);
    ck_assert_str_eq(out, "a <|image><|image|><|image|><|image|><image|> b"
                          "<|image><|image|><|image|><|image|><image|>");
    free(out);
    ck_assert_int_eq(gt_gemma4_expand_images("no image", 280, &out, err, sizeof err), 0);
    ck_assert_str_eq(out, "no image");
    free(out);
    ck_assert_int_eq(gt_gemma4_expand_images("x", 0, &out, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "0 soft tokens"), "%s", err);
    ck_assert_ptr_null(out);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gemma4_mm");
    TCase *tc = tcase_create("kerashub");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, matches_kerashub_backbone_with_images);
    tcase_add_test(tc, expands_image_placeholders);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
