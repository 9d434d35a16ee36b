/* Gemma 4 encoders in KerasHub presets (models/io/towers4_keras.h) against a preset keras_hub
 * saved (tests/fixtures/presets/gemma4_towers, tools/reference/make_gemma4_towers_fixture.py):
 * the image files through our converter and the preset's vision encoder, and mel features
 * through its audio encoder, give keras_hub's outputs; a preset we write reads back
 * bit-identical (set GT_TOWERS_EXPORT_DIR to keep it for the script's --check-export). */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/image4.h"
#include "data/tokenizer.h"
#include "models/io/keras_preset.h"
#include "models/io/towers4_keras.h"
#include "tests/h5fixture.h"
#include "tests/cli_run.h"
#include "tests/check_main.h"

#define PRESET "tests/fixtures/presets/gemma4_towers"
#define REF PRESET ".ref.h5"

static double rel_diff(const gt_tensor *y, const float *ref) {
    double mx = 0;
    for (int64_t i = 0; i < y->size; i++) mx = fmax(mx, fabs(ref[i]));
    ck_assert(mx > 0);
    return gt_fix_max_diff(y, ref, 0, y->size) / mx;
}

/* Image files -> gt_image4_load -> the preset's vision encoder, against keras_hub. */
static void check_vision(gt_h5 f, const gt_vision4 *v) {
    static const char *files[] = {"tests/fixtures/images/rgb_37x23.png",
                                  "tests/fixtures/images/grey_18x30.png"};
    gt_image4_cfg ic = {4, 3, 4, {1.0f / 255, 1.0f / 255, 1.0f / 255}, {0, 0, 0}};
    int64_t P = gt_image4_max_patches(&ic), dim = gt_image4_patch_dim(&ic);
    ck_assert_int_eq(P, 36);
    float *pix = malloc(sizeof(float) * (size_t)(2 * P * dim));
    int32_t pos[2 * 36 * 2];
    char err[512];
    for (int i = 0; i < 2; i++)
        ck_assert_msg(!gt_image4_load(files[i], &ic, pix + i * P * dim, pos + i * P * 2, NULL, err,
                                      sizeof err), "%s", err);
    float *rpix = gt_fix_f32(f, "/vision/pixels", 2 * P * dim);
    int32_t *rpos = gt_fix_i32(f, "/vision/positions");
    double dp = 0;
    for (int64_t i = 0; i < 2 * P * dim; i++) dp = fmax(dp, fabs((double)pix[i] - rpix[i]));
    ck_assert_msg(!memcmp(pos, rpos, sizeof pos), "patch positions differ from KerasHub's");
    ck_assert_msg(dp <= 1e-5, "converter differs by %g", dp);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 1 << 22);
    gt_tensor *y = gt_vision4_encode(&ctx, v, pix, pos, 2, P);
    ck_assert_msg(y, "%s", ctx.err);
    ck_assert_int_eq(y->size, 2 * 4 * 32);
    float *ref = gt_fix_f32(f, "/vision/output", y->size);
    double d = rel_diff(y, ref);
    printf("preset vision encoder on our converter's patches: %.3g x max (converter %.3g)\n", d, dp);
    ck_assert_msg(d <= 1e-4, "vision output differs by %.3g x max", d);
    free(pix), free(rpix), free(rpos), free(ref);
    gt_ctx_free(&ctx);
}

static void check_audio(gt_h5 f, const gt_audio_enc *a) {
    int64_t B = 2, T = 38, F = a->cfg.input_feat_size, shape[3] = {B, T, F};
    float *mel = gt_fix_f32(f, "/audio/mel", B * T * F);
    int32_t *mask = gt_fix_i32(f, "/audio/mask");
    uint8_t valid[76];
    for (int i = 0; i < B * T; i++) valid[i] = mask[i] != 0;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 1 << 22);
    gt_tensor *x = gt_from_data(&ctx, mel, 3, shape, false);
    gt_tensor *y = gt_audio_enc_forward(&ctx, a, x, valid, NULL);
    ck_assert_msg(y, "%s", ctx.err);
    float *ref = gt_fix_f32(f, "/audio/output", y->size);
    double d = rel_diff(y, ref);
    printf("preset audio encoder: %.3g x max\n", d);
    ck_assert_msg(d <= 1e-4, "audio output differs by %.3g x max", d);
    free(mel), free(mask), free(ref);
    gt_ctx_free(&ctx);
}

START_TEST(reads_kerashub_preset) {
    char err[1024];
    gt_vision4 v;
    gt_audio_enc a;
    bool hv, ha;
    ck_assert_msg(!gt_towers4_keras_load(PRESET, &v, &hv, &a, &ha, err, sizeof err), "%s", err);
    ck_assert(hv && ha);
    ck_assert_int_eq(v.cfg.num_kv_heads, 1);
    ck_assert(v.cfg.clipped);
    /* the fixture's tight bounds came through (they change the outputs) */
    gt_tensor *clip = gt_vision4_param(&v, "block_0.gate.clip");
    ck_assert(clip && fabs(clip->data[1] - 1.2) < 1e-6);
    gt_h5 f;
    ck_assert_msg(!gt_h5_open_read(REF, &f, err, sizeof err), "%s", err);
    check_vision(f, &v);
    check_audio(f, &a);
    gt_h5_close(f);
    gt_vision4_free(&v);
    gt_audio_enc_free(&a);
}
END_TEST

static void same_tensors(gt_tensor *const *x, gt_tensor *const *y, int n) {
    for (int i = 0; i < n; i++) {
        ck_assert_str_eq(x[i]->name, y[i]->name);
        ck_assert_int_eq(x[i]->size, y[i]->size);
        ck_assert_msg(!memcmp(x[i]->data, y[i]->data, sizeof(gt_real) * (size_t)x[i]->size),
                      "%s differs after the round trip", x[i]->name);
    }
}

/* field by field: the structs have padding */
static void same_vision_cfg(const gt_vision4_config *x, const gt_vision4_config *y) {
    const int64_t a[] = {x->image_size, x->patch_size, x->pool_size, x->hidden, x->intermediate,
                         x->num_layers, x->num_heads, x->num_kv_heads, x->head_dim, x->pos_table,
                         x->output_dim};
    const int64_t b[] = {y->image_size, y->patch_size, y->pool_size, y->hidden, y->intermediate,
                         y->num_layers, y->num_heads, y->num_kv_heads, y->head_dim, y->pos_table,
                         y->output_dim};
    ck_assert(!memcmp(a, b, sizeof a));
    ck_assert(x->rope_base == y->rope_base && x->eps == y->eps && x->clipped == y->clipped);
}

static void same_audio_cfg(const gt_audio_enc_config *x, const gt_audio_enc_config *y) {
    const int64_t a[] = {x->input_feat_size, x->hidden, x->num_heads, x->num_layers, x->chunk,
                         x->context_left, x->context_right, x->conv_kernel, x->sscp_channels[0],
                         x->sscp_channels[1], x->output_proj_dims, x->output_dim};
    const int64_t b[] = {y->input_feat_size, y->hidden, y->num_heads, y->num_layers, y->chunk,
                         y->context_left, y->context_right, y->conv_kernel, y->sscp_channels[0],
                         y->sscp_channels[1], y->output_proj_dims, y->output_dim};
    ck_assert(!memcmp(a, b, sizeof a));
    const double c[] = {x->logit_cap, x->residual_weight, x->gradient_clipping, x->norm_eps,
                        x->sscp_norm_eps};
    const double d[] = {y->logit_cap, y->residual_weight, y->gradient_clipping, y->norm_eps,
                        y->sscp_norm_eps};
    for (int i = 0; i < 5; i++) ck_assert(c[i] == d[i]);
}

START_TEST(written_preset_round_trips) {
    char err[1024], tmp[] = "/tmp/gt_towers_XXXXXX", dir[600];
    const char *keep = getenv("GT_TOWERS_EXPORT_DIR");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    snprintf(dir, sizeof dir, "%s", keep && *keep ? keep : tmp);
    gt_gemma *m, *m2;
    gt_tokenizer *tok; /* any 61-piece SentencePiece model: the Gemma 1 fixture's */
    ck_assert_msg(!gt_keras_preset_load(PRESET, false, &m, NULL, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_tok_load_spm("tests/fixtures/presets/gemma1/assets/tokenizer/vocabulary.spm",
                                   &tok, err, sizeof err), "%s", err);
    gt_vision4 v, v2;
    gt_audio_enc a, a2;
    bool hv, ha;
    ck_assert_msg(!gt_towers4_keras_load(PRESET, &v, &hv, &a, &ha, err, sizeof err), "%s", err);
    gt_preset_save_opts o = {.sequence_length = 16, .prov = {.steps = -1, .final_eval_loss = NAN},
                             .vision4 = &v, .audio = &a};
    ck_assert_msg(!gt_keras_preset_save(dir, m, tok, &o, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_keras_preset_load(dir, false, &m2, NULL, err, sizeof err), "%s", err);
    ck_assert_int_eq(m2->n_values, m->n_values);
    ck_assert(!memcmp(m->data, m2->data, sizeof(gt_real) * (size_t)m->n_values));
    ck_assert_msg(!gt_towers4_keras_load(dir, &v2, &hv, &a2, &ha, err, sizeof err), "%s", err);
    ck_assert(hv && ha);
    same_vision_cfg(&v.cfg, &v2.cfg);
    same_audio_cfg(&a.cfg, &a2.cfg);
    ck_assert_int_eq(v2.n_all, v.n_all);
    ck_assert_int_eq(a2.n_all, a.n_all);
    same_tensors(v.all, v2.all, v.n_all);
    same_tensors(a.all, a2.all, a.n_all);
    /* an encoder for another width is refused, naming the rule */
    a.cfg.output_dim = 7;
    ck_assert_int_eq(gt_keras_preset_save(tmp, m, tok, &o, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "output_dim = hidden_dim"), "%s", err);
    gt_vision4_free(&v), gt_vision4_free(&v2);
    gt_audio_enc_free(&a), gt_audio_enc_free(&a2);
    gt_gemma_free(m), gt_gemma_free(m2);
    gt_tok_free(tok);
    gt_test_rmtree(tmp);
}
END_TEST

/* dir/config.json = the fixture's with config.<enc>.config.<key> set to val. */
static void edited_config(const char *dir, const char *enc, const char *key, json_t *val) {
    json_error_t je;
    json_t *j = json_load_file(PRESET "/config.json", 0, &je);
    ck_assert_ptr_nonnull(j);
    json_t *c = json_object_get(json_object_get(json_object_get(j, "config"), enc), "config");
    json_object_set_new(c, key, val);
    char p[700];
    snprintf(p, sizeof p, "%s/config.json", dir);
    ck_assert_int_eq(json_dump_file(j, p, 0), 0);
    json_decref(j);
}

START_TEST(bad_presets_are_named) {
    char err[1024], dir[] = "/tmp/gt_towers_bad_XXXXXX", p[700];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    gt_vision4_config vc;
    gt_audio_enc_config ac;
    bool hv, ha;
    edited_config(dir, "vision_encoder", "standardize", json_true());
    ck_assert_int_eq(gt_towers4_keras_config(dir, &vc, &hv, &ac, &ha, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "config.vision_encoder.config.standardize"), "%s", err);
    edited_config(dir, "audio_encoder", "hidden_size", json_string("16"));
    ck_assert_int_eq(gt_towers4_keras_config(dir, &vc, &hv, &ac, &ha, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "config.audio_encoder.config.hidden_size"), "%s", err);
    /* the right config over weights without the encoders: the first missing tensor is named */
    edited_config(dir, "vision_encoder", "dropout", json_integer(0));
    gt_h5w w;
    snprintf(p, sizeof p, "%s/model.weights.h5", dir);
    ck_assert_msg(!gt_h5_create(p, &w, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_h5_commit(&w, err, sizeof err), "%s", err);
    gt_vision4 v;
    ck_assert_int_eq(gt_towers4_keras_load(dir, &v, &hv, NULL, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "missing tensor layers/gemma4_vision_encoder/layers/"
                              "gemma4_vision_encoder_block/patch_embedder/input_proj/vars/0"),
                  "%s", err);
    ck_assert(!hv);
    unlink(p);
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    rmdir(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gemma4_towers");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, reads_kerashub_preset);
    tcase_add_test(tc, written_preset_round_trips);
    tcase_add_test(tc, bad_presets_are_named);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
