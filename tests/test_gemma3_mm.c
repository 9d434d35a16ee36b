/* Gemma 3 with images against KerasHub's Gemma3Backbone + Gemma3VisionEncoder
 * (tests/fixtures/gemma3_mm.h5, tools/reference/make_gemma3_mm_fixture.py): a batch mixing 0, 1
 * and 2 images with padding; logits <= 1e-4 x max, loss, and every decoder and encoder gradient
 * <= 1e-3 of its tensor's max. Also: without the image spans' bidirectional mask the logits
 * differ (the fixture exercises it). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "data/tokenizer.h"
#include "models/gemma.h"
#include "models/generate.h"
#include "models/io/h5io.h"
#include "models/io/hf_gemma.h"
#include "models/io/keras_preset.h"
#include "models/io/vision_hf.h"
#include "models/io/vision_keras.h"
#include "models/vision.h"
#include "tests/check_main.h"

#define FIX "tests/fixtures/gemma3_mm.h5"

static double attr(gt_h5 f, const char *obj, const char *name, double dflt) {
    double v;
    char err[512];
    return gt_h5_attr_f64(f, obj, name, &v, err, sizeof err) == 0 ? v : dflt;
}

static void load_configs(gt_h5 f, gt_gemma_config *c, gt_vision_config *vc) {
    gt_gemma_config_defaults(c, 3);
#define A(n) attr(f, "/config", n, 0)
    c->vocab_size = (int64_t)A("vocabulary_size");
    c->num_layers = (int64_t)A("num_layers");
    c->hidden_dim = (int64_t)A("hidden_dim");
    c->intermediate_dim = (int64_t)A("intermediate_dim");
    c->num_query_heads = (int64_t)A("num_query_heads");
    c->num_kv_heads = (int64_t)A("num_key_value_heads");
    c->head_dim = (int64_t)A("head_dim");
    c->sliding_window = (int64_t)A("sliding_window_size");
    c->rope_global_scale = attr(f, "/config", "global_rope_scaling_factor", 1);
#undef A
#define V(n) (int64_t)attr(f, "/vision_config", n, 0)
    *vc = (gt_vision_config){V("image_size"), V("patch_size"), V("num_heads"), V("hidden_dim"),
                             V("num_layers"), V("intermediate_dim"), V("output_dim"),
                             V("pool_size"), attr(f, "/vision_config", "layer_norm_epsilon", -1)};
#undef V
    c->vision = *vc;
}

static void *read_ds(gt_h5 f, const char *path, int64_t want, bool i32) {
    void *d = NULL;
    int nd = 0;
    int64_t shape[8], n = 1;
    char err[512];
    int rc = i32 ? gt_h5_read_i32(f, path, (int32_t **)&d, &nd, shape, err, sizeof err)
                 : gt_h5_read_f32(f, path, (float **)&d, &nd, shape, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    for (int i = 0; i < nd; i++) n *= shape[i];
    ck_assert_msg(want < 0 || n == want, "%s: %lld values, want %lld", path, (long long)n,
                  (long long)want);
    return d;
}

static void load_into(gt_h5 f, const char *group, gt_tensor *t) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", group, t->name);
    float *d = read_ds(f, path, t->size, false);
    memcpy(t->data, d, sizeof(float) * (size_t)t->size);
    free(d);
}

/* Worst |grad - ref| / max|ref| of one tensor. */
static double grad_err(gt_h5 f, const char *group, const gt_tensor *t) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", group, t->name);
    float *g = read_ds(f, path, t->size, false);
    double gmax = 0, dmax = 0;
    for (int64_t j = 0; j < t->size; j++) {
        gmax = fmax(gmax, fabs(g[j]));
        dmax = fmax(dmax, fabs((double)t->grad[j] - g[j]));
    }
    free(g);
    return gmax > 0 ? dmax / gmax : dmax;
}

typedef struct {
    gt_h5 f;
    gt_gemma *m;
    gt_vision *v;
    int64_t B, T, n_img, n_soft;
    int32_t *ids, *labels, *pos, *end;
    uint8_t *mask;
    float *weights, *images;
} mm_case;

static void open_case(mm_case *c) {
    char err[512];
    ck_assert_msg(gt_h5_open_read(FIX, &c->f, err, sizeof err) == 0, "%s", err);
    gt_gemma_config cfg;
    gt_vision_config vc;
    load_configs(c->f, &cfg, &vc);
    ck_assert_msg(gt_gemma_config_validate(&cfg, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_gemma_create(&cfg, true, &c->m, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_vision_create(&vc, true, &c->v, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < c->m->n_params; i++) load_into(c->f, "/weights", c->m->params[i].t);
    for (int64_t i = 0; i < c->v->n_params; i++) load_into(c->f, "/vision_weights", c->v->params[i]);
    int nd;
    int64_t shape[8];
    ck_assert(gt_h5_read_i32(c->f, "/inputs/token_ids", &c->ids, &nd, shape, err, sizeof err) == 0);
    c->B = shape[0], c->T = shape[1];
    int64_t BT = c->B * c->T;
    int32_t *pm = read_ds(c->f, "/inputs/padding_mask", BT, true);
    int32_t *vm = read_ds(c->f, "/inputs/vision_mask", BT, true);
    c->labels = read_ds(c->f, "/inputs/labels", BT, true);
    c->weights = read_ds(c->f, "/inputs/sample_weight", BT, false);
    c->mask = malloc((size_t)BT);
    uint8_t *vm8 = malloc((size_t)BT);
    for (int64_t i = 0; i < BT; i++) c->mask[i] = (uint8_t)pm[i], vm8[i] = (uint8_t)vm[i];
    c->end = malloc(sizeof(int32_t) * (size_t)BT);
    gt_vision_span_ends(vm8, c->B, c->T, c->end);
    int64_t per = gt_vision_tokens_per_image(&vc), S = vc.image_size;
    c->pos = read_ds(c->f, "/inputs/vision_pos", -1, true);
    c->n_soft = 0;
    for (int64_t i = 0; i < BT; i++) c->n_soft += vm8[i];
    c->n_img = c->n_soft / per;
    c->images = read_ds(c->f, "/inputs/images", c->n_img * S * S * 3, false);
    free(pm), free(vm), free(vm8);
}

static void close_case(mm_case *c) {
    free(c->ids), free(c->labels), free(c->pos), free(c->end), free(c->mask), free(c->weights);
    free(c->images);
    gt_gemma_free(c->m);
    gt_vision_free(c->v);
    gt_h5_close(c->f);
}

/* Logits (and the KerasHub-normalised loss when loss != NULL) of the case; bidir: pass the spans. */
static gt_tensor *forward(gt_ctx *ctx, mm_case *c, bool bidir, gt_tensor **loss) {
    gt_tensor *soft = gt_vision_encode(ctx, c->v, c->images, c->n_img);
    int64_t flat[2] = {c->n_soft, c->m->cfg.hidden_dim};
    gt_gemma_batch b = {.batch = c->B, .seq = c->T, .token_ids = c->ids, .padding_mask = c->mask,
                        .soft_tokens = gt_reshape(ctx, soft, 2, flat), .soft_pos = c->pos,
                        .n_soft = c->n_soft, .bidir_end = bidir ? c->end : NULL};
    gt_tensor *logits = gt_gemma_logits(ctx, c->m, gt_gemma_hidden(ctx, c->m, &b));
    if (loss) {
        double ws;
        gt_tensor *ce = gt_cross_entropy(ctx, logits, c->labels, c->weights, &ws, NULL);
        *loss = gt_scale(ctx, ce, 1.0 / (double)(c->B * c->T));
    }
    ck_assert_msg(gt_ok(ctx), "%s", ctx->err);
    return logits;
}

START_TEST(backbone_with_images_matches_kerashub) {
    mm_case c;
    open_case(&c);
    ck_assert_int_eq(c.n_img, 3);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = true;
    gt_tensor *loss;
    gt_tensor *logits = forward(&ctx, &c, true, &loss);
    float *want = read_ds(c.f, "/expected/logits", logits->size, false);
    double maxref = 0, maxdiff = 0;
    for (int64_t i = 0; i < logits->size; i++) {
        maxref = fmax(maxref, fabs(want[i]));
        maxdiff = fmax(maxdiff, fabs((double)logits->data[i] - want[i]));
    }
    ck_assert_msg(maxdiff <= 1e-4 * maxref, "logits max error %.3g vs max %.3g", maxdiff, maxref);
    float *wl = read_ds(c.f, "/expected/loss", 1, false);
    double rel = fabs(loss->data[0] - wl[0]) / fabs(wl[0]);
    ck_assert_msg(rel <= 1e-5, "loss %.9g vs %.9g", loss->data[0], wl[0]);
    ck_assert_int_eq(gt_backward(&ctx, loss), GT_OK);
    double worst = 0, vworst = 0;
    for (int i = 0; i < c.m->n_params; i++) worst = fmax(worst, grad_err(c.f, "/expected/grads", c.m->params[i].t));
    for (int64_t i = 0; i < c.v->n_params; i++) {
        const gt_tensor *t = c.v->params[i];
        /* the key bias's gradient is 0 in exact arithmetic (softmax cancels it): noise on both sides */
        if (strstr(t->name, "key_proj/bias")) continue;
        double e = grad_err(c.f, "/expected/vision_grads", t);
        ck_assert_msg(e <= 1e-3, "%s: gradient off by %.3g", t->name, e);
        vworst = fmax(vworst, e);
    }
    ck_assert_msg(worst <= 1e-3, "decoder gradient off by %.3g", worst);
    printf("gemma3 + images: logits err %.2e x max, loss rel %.2e, worst grad decoder %.2e, "
           "encoder %.2e\n", maxdiff / maxref, rel, worst, vworst);
    free(want), free(wl);
    gt_ctx_free(&ctx);
    close_case(&c);
}
END_TEST

START_TEST(image_tokens_need_their_bidirectional_mask) {
    mm_case c;
    open_case(&c);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *causal = forward(&ctx, &c, false, NULL);
    float *want = read_ds(c.f, "/expected/logits", causal->size, false);
    double maxdiff = 0;
    for (int64_t i = 0; i < causal->size; i++) maxdiff = fmax(maxdiff, fabs((double)causal->data[i] - want[i]));
    ck_assert_msg(maxdiff > 1e-2, "a causal-only mask matches too (diff %.3g): the fixture does "
                  "not test the image spans", maxdiff);
    free(want);
    gt_ctx_free(&ctx);
    close_case(&c);
}
END_TEST

/* The same backbone saved by KerasHub as a preset: the decoder through gt_keras_preset_load, the
 * encoder through gt_vision_keras_load; the logits are the fixture's. */
START_TEST(kerashub_preset_with_encoder_loads) {
    mm_case c;
    open_case(&c);
    char err[1024];
    gt_gemma *m;
    gt_vision *v;
    const char *dir = "tests/fixtures/presets/gemma3_mm";
    ck_assert_msg(gt_keras_preset_load(dir, false, &m, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_vision_keras_load(dir, false, &v, err, sizeof err) == 0, "%s", err);
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(v->cfg.output_dim, m->cfg.hidden_dim);
    for (int64_t i = 0; i < v->n_params; i++) /* bit-identical to the fixture's copy */
        ck_assert_msg(!memcmp(v->params[i]->data, c.v->params[i]->data, sizeof(float) * (size_t)v->params[i]->size),
                      "%s differs", v->params[i]->name);
    gt_gemma_free(c.m);
    gt_vision_free(c.v);
    c.m = m, c.v = v;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *logits = forward(&ctx, &c, true, NULL);
    float *want = read_ds(c.f, "/expected/logits", logits->size, false);
    double maxref = 0, maxdiff = 0;
    for (int64_t i = 0; i < logits->size; i++) {
        maxref = fmax(maxref, fabs(want[i]));
        maxdiff = fmax(maxdiff, fabs((double)logits->data[i] - want[i]));
    }
    ck_assert_msg(maxdiff <= 1e-4 * maxref, "logits max error %.3g vs max %.3g", maxdiff, maxref);
    free(want);
    gt_ctx_free(&ctx);
    close_case(&c);
    /* a text-only preset has no encoder */
    ck_assert_int_eq(gt_vision_keras_load("tests/fixtures/presets/gemma3", false, &v, err, sizeof err), 0);
    ck_assert_ptr_null(v);
}
END_TEST

/* tools/reference/check_vision_export.py sets GT_VISION_EXPORT_DIR to get the merged export, which
 * keras_hub's Gemma3Backbone.from_preset runs on the fixture's batch (FIX_EXPORT); without it the
 * adapted model's logits must be KerasHub's on our export. */
#define FIX_EXPORT "tests/fixtures/gemma3_mm_export.h5"
static void keras_reads_merged_export(mm_case *c, gt_gemma *m, gt_vision *v, const gt_tokenizer *tok,
                                      const gt_preset_save_opts *o) {
    char err[1024];
    const char *keep = getenv("GT_VISION_EXPORT_DIR");
    if (keep) {
        ck_assert_msg(!gt_keras_preset_save(keep, m, tok, o, err, sizeof err), "%s", err);
        return;
    }
    gt_gemma *m0 = c->m;
    gt_vision *v0 = c->v;
    c->m = m, c->v = v;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *logits = forward(&ctx, c, true, NULL);
    gt_h5 f;
    ck_assert_msg(!gt_h5_open_read(FIX_EXPORT, &f, err, sizeof err), "%s", err);
    float *want;
    int nd;
    int64_t sh[8];
    ck_assert_msg(!gt_h5_read_f32(f, "/expected/logits", &want, &nd, sh, err, sizeof err), "%s", err);
    ck_assert_int_eq(sh[0] * sh[1] * sh[2], logits->size);
    double maxref = 0, maxdiff = 0;
    for (int64_t i = 0; i < logits->size; i++) {
        maxref = fmax(maxref, fabs(want[i]));
        maxdiff = fmax(maxdiff, fabs((double)logits->data[i] - want[i]));
    }
    printf("keras_hub on our merged export: logits %.3g x max\n", maxdiff / maxref);
    ck_assert_msg(maxdiff <= 1e-4 * maxref, "KerasHub on our export: logits max error %.3g vs max %.3g", maxdiff, maxref);
    free(want);
    gt_h5_close(f);
    gt_ctx_free(&ctx);
    c->m = m0, c->v = v0;
}

/* gt_keras_preset_save with .vision: the preset KerasHub saved, written by us and read back,
 * has every encoder and decoder tensor bit-identical and the fixture's logits; with encoder
 * adapters (B != 0) the written kernels are merged: the reloaded encoder's output equals the
 * adapted one's. */
START_TEST(preset_with_encoder_round_trips) {
    char err[1024], dir[] = "/tmp/gt_vwrite_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    gt_gemma *m, *m2;
    gt_vision *v, *v2;
    gt_tokenizer *tok;
    const char *src = "tests/fixtures/presets/gemma3_mm";
    ck_assert_msg(!gt_keras_preset_load(src, false, &m, NULL, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_vision_keras_load(src, false, &v, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_tok_load("tests/fixtures/presets/gemma3/assets/tokenizer/vocabulary.spm", &tok, err, sizeof err), "%s", err);
    gt_preset_save_opts o = {.sequence_length = 16, .prov = {.steps = -1, .final_eval_loss = NAN}, .vision = v};
    ck_assert_msg(!gt_keras_preset_save(dir, m, tok, &o, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_keras_preset_load(dir, false, &m2, NULL, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_vision_keras_load(dir, false, &v2, err, sizeof err), "%s", err);
    ck_assert_ptr_nonnull(v2);
    ck_assert_int_eq(v2->n_params, v->n_params);
    for (int64_t i = 0; i < v->n_params; i++)
        ck_assert_msg(!memcmp(v->params[i]->data, v2->params[i]->data, sizeof(gt_real) * (size_t)v->params[i]->size),
                      "%s differs", v->params[i]->name);
    ck_assert_int_eq(m2->n_values, m->n_values);
    ck_assert(!memcmp(m->data, m2->data, sizeof(gt_real) * (size_t)m->n_values));
    mm_case c;
    open_case(&c);
    gt_gemma_free(c.m);
    gt_vision_free(c.v);
    c.m = m2, c.v = v2;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *logits = forward(&ctx, &c, true, NULL);
    float *want = read_ds(c.f, "/expected/logits", logits->size, false);
    double maxref = 0, maxdiff = 0;
    for (int64_t i = 0; i < logits->size; i++) {
        maxref = fmax(maxref, fabs(want[i]));
        maxdiff = fmax(maxdiff, fabs((double)logits->data[i] - want[i]));
    }
    ck_assert_msg(maxdiff <= 1e-4 * maxref, "logits max error %.3g vs max %.3g", maxdiff, maxref);
    free(want);
    gt_ctx_free(&ctx);
    /* adapters merged on write */
    ck_assert_msg(!gt_vision_lora_create(v, 2, 4.0, 7, err, sizeof err), "%s", err);
    for (int64_t i = 0; i < v->n_lora; i++)
        for (int64_t j = 0; j < v->lora[i]->size; j++) v->lora[i]->data[j] = (gt_real)(0.05 * sin(1.0 + i * 31 + j));
    ck_assert_msg(!gt_keras_preset_save(dir, m, tok, &o, err, sizeof err), "%s", err);
    gt_vision *v3;
    ck_assert_msg(!gt_vision_keras_load(dir, false, &v3, err, sizeof err), "%s", err);
    gt_ctx_init(&ctx, 0);
    int64_t n = 2;
    gt_tensor *ya = gt_vision_encode(&ctx, v, c.images, n), *yb = gt_vision_encode(&ctx, v3, c.images, n);
    ck_assert_msg(ya && yb, "encode failed: %s", ctx.err);
    double md = 0, mx = 0, moved = 0;
    gt_tensor *y0 = gt_vision_encode(&ctx, c.v, c.images, n);
    ck_assert_msg(y0, "%s", ctx.err);
    for (int64_t i = 0; i < ya->size; i++) {
        mx = fmax(mx, fabs(ya->data[i]));
        md = fmax(md, fabs(ya->data[i] - yb->data[i]));
        moved = fmax(moved, fabs(ya->data[i] - y0->data[i]));
    }
    ck_assert_msg(moved > 1e-3 * mx, "the adapters change nothing (%.3g)", moved);
    ck_assert_msg(md <= 1e-5 * mx, "merged encoder differs by %.3g (max %.3g)", md, mx);
    gt_ctx_free(&ctx);
    gt_vision_free(v3);
    keras_reads_merged_export(&c, m, v, tok, &o);
    close_case(&c);
    gt_gemma_free(m);
    gt_vision_free(v);
    gt_tok_free(tok);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* `gemmatrain convert` of a KerasHub preset with an encoder (the fixture's, given the gemma3
 * preset's 71-piece vocabulary) to a KerasHub preset carries the encoder bit-identical. (The tiny
 * HF model's RoPE base is not one a Gemma3Backbone can express, so it cannot be the source.) */
START_TEST(convert_keeps_the_encoder) {
    char err[1024], dir[] = "/tmp/gt_vconv_XXXXXX", cmd[2048];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "cp -r tests/fixtures/presets/gemma3_mm %s/src && mkdir -p %s/src/assets/tokenizer && "
             "cp tests/fixtures/presets/gemma3/assets/tokenizer/vocabulary.spm %s/src/assets/tokenizer/ && "
             "%s convert %s/src %s/p >/dev/null 2>&1", dir, dir, dir,
             getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    gt_vision *a, *b;
    snprintf(cmd, sizeof cmd, "%s/p", dir);
    ck_assert_msg(!gt_vision_keras_load("tests/fixtures/presets/gemma3_mm", false, &a, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_vision_keras_load(cmd, false, &b, err, sizeof err), "%s", err);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(a->n_params, b->n_params);
    for (int64_t i = 0; i < a->n_params; i++)
        ck_assert_msg(!memcmp(a->params[i]->data, b->params[i]->data, sizeof(gt_real) * (size_t)a->params[i]->size),
                      "%s differs", a->params[i]->name);
    gt_vision_free(a);
    gt_vision_free(b);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* transformers' tiny Gemma3ForConditionalGeneration (tests/fixtures/hf/gemma3_mm) with images
 * (tools/reference/make_hf_mm_fixture.py): the projected image features and the logits. */
START_TEST(transformers_with_images_matches) {
    const char *dir = "tests/fixtures/hf/gemma3_mm";
    char err[1024];
    gt_gemma *m;
    gt_vision *v;
    ck_assert_msg(gt_hf_gemma_load(dir, false, &m, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_vision_hf_load(dir, false, &v, err, sizeof err) == 0, "%s", err);
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(v->cfg.pool_size, 1);
    gt_h5 f;
    ck_assert_msg(gt_h5_open_read("tests/fixtures/hf/gemma3_mm_images_ref.h5", &f, err, sizeof err) == 0, "%s", err);
    int nd;
    int64_t sh[8];
    int32_t *ids;
    ck_assert(gt_h5_read_i32(f, "/input_ids", &ids, &nd, sh, err, sizeof err) == 0);
    int64_t B = sh[0], T = sh[1], S = v->cfg.image_size, D = m->cfg.hidden_dim;
    float *px = read_ds(f, "/pixel_values", 3 * S * S * 3, false);
    float *feat = read_ds(f, "/image_features", 3 * 4 * D, false);
    float *want = read_ds(f, "/logits", B * T * m->cfg.vocab_size, false);
    uint8_t *vm = malloc((size_t)(B * T));
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)(B * T)), *end = malloc(sizeof(int32_t) * (size_t)(B * T));
    int64_t n_soft = 0;
    for (int64_t i = 0; i < B * T; i++)
        if ((vm[i] = ids[i] == 152)) pos[n_soft++] = (int32_t)i;
    ck_assert_int_eq(n_soft, 12);
    gt_vision_span_ends(vm, B, T, end);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *soft = gt_vision_encode(&ctx, v, px, 3);
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    double fmaxv = 0, fdiff = 0;
    for (int64_t i = 0; i < soft->size; i++) {
        fmaxv = fmax(fmaxv, fabs(feat[i]));
        fdiff = fmax(fdiff, fabs((double)soft->data[i] - feat[i]));
    }
    ck_assert_msg(fdiff <= 1e-4 * fmaxv, "image features differ by %.3g (max %.3g)", fdiff, fmaxv);
    int64_t flat[2] = {n_soft, D};
    gt_gemma_batch b = {.batch = B, .seq = T, .token_ids = ids, .soft_tokens = gt_reshape(&ctx, soft, 2, flat),
                        .soft_pos = pos, .n_soft = n_soft, .bidir_end = end};
    gt_tensor *logits = gt_gemma_logits(&ctx, m, gt_gemma_hidden(&ctx, m, &b));
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    double maxref = 0, maxdiff = 0;
    for (int64_t i = 0; i < logits->size; i++) {
        maxref = fmax(maxref, fabs(want[i]));
        maxdiff = fmax(maxdiff, fabs((double)logits->data[i] - want[i]));
    }
    printf("transformers gemma3 + images: features %.2e x max, logits %.2e x max\n", fdiff / fmaxv,
           maxdiff / maxref);
    ck_assert_msg(maxdiff <= 1e-4 * maxref, "logits max error %.3g vs max %.3g", maxdiff, maxref);
    b.bidir_end = NULL; /* the fixture exercises transformers' bidirectional image mask */
    logits = gt_gemma_logits(&ctx, m, gt_gemma_hidden(&ctx, m, &b));
    double causal = 0;
    for (int64_t i = 0; i < logits->size; i++) causal = fmax(causal, fabs((double)logits->data[i] - want[i]));
    ck_assert_msg(causal > 1e-2 * maxref, "causal-only logits match too (%.3g)", causal);
    free(ids), free(px), free(feat), free(want), free(vm), free(pos), free(end);
    gt_ctx_free(&ctx);
    gt_h5_close(f);
    gt_vision_free(v);
    gt_gemma_free(m);
}
END_TEST

/* Greedy generation through the KV cache with the images in the prefill (gt_generate's soft
 * tokens) picks, at every step, the argmax of a full forward over the same tokens. */
START_TEST(generation_with_images_matches_full_forward) {
    mm_case c;
    open_case(&c);
    int64_t T = c.T, D = c.m->cfg.hidden_dim, n_prompt = 12; /* row 2: images at 2..5 and 8..11 */
    const int32_t *prompt = c.ids + 2 * T;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *soft = gt_vision_encode(&ctx, c.v, c.images + 1 * 16 * 16 * 3, 2);
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    int32_t pos[8] = {2, 3, 4, 5, 8, 9, 10, 11}, out[8];
    gt_generate_opts o = {.max_length = n_prompt + 5, .sampler = {.kind = GT_SAMPLER_GREEDY},
                          .soft_tokens = soft->data, .soft_pos = pos, .n_soft = 8};
    int64_t n_out;
    bool stopped;
    char err[512];
    ck_assert_msg(gt_generate(c.m, prompt, n_prompt, &o, out, 8, &n_out, &stopped, NULL, NULL, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_int_eq(n_out, 5);
    int32_t seq[32], end[32];
    uint8_t vm[32] = {0};
    memcpy(seq, prompt, sizeof(int32_t) * (size_t)n_prompt);
    for (int i = 0; i < 8; i++) vm[pos[i]] = 1;
    for (int64_t k = 0; k < n_out; k++) {
        int64_t n = n_prompt + k, flat[2] = {8, D};
        gt_vision_span_ends(vm, 1, n, end);
        gt_gemma_batch b = {.batch = 1, .seq = n, .token_ids = seq, .soft_tokens = gt_reshape(&ctx, soft, 2, flat),
                            .soft_pos = pos, .n_soft = 8, .bidir_end = end};
        gt_tensor *z = gt_gemma_logits(&ctx, c.m, gt_gemma_hidden(&ctx, c.m, &b));
        ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
        const gt_real *last = z->data + (n - 1) * c.m->cfg.vocab_size;
        int32_t best = 0;
        for (int32_t vv = 1; vv < c.m->cfg.vocab_size; vv++) best = last[vv] > last[best] ? vv : best;
        ck_assert_msg(out[k] == best, "token %lld: generated %d, full forward's argmax %d", (long long)k, out[k], best);
        seq[n] = out[k];
    }
    gt_ctx_free(&ctx);
    close_case(&c);
}
END_TEST

/* generate --image: a run on transformers' tiny model (its hand-made 160-piece tokenizer.json)
 * that completes and differs from the same prompt without the image; usage and load errors. */
static int run_cli(const char *args, char *out, size_t n) {
    const char *bin = getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s generate %s 2>&1", bin, args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(generate_image_errors) {
    char out[4096], text_only[4096];
    ck_assert_int_eq(run_cli("--model tests/fixtures/hf/gemma3_mm --image tests/fixtures/images/rgb_37x23.png "
                             "--max-new-tokens 6 --strip-prompt 'look: <start_of_image>'", out, sizeof out), 0);
    ck_assert_int_eq(run_cli("--model tests/fixtures/hf/gemma3_mm --max-new-tokens 6 --strip-prompt "
                             "'look: <start_of_image>'", text_only, sizeof text_only), 0);
    ck_assert_msg(strlen(out) > 1 && strcmp(out, text_only), "'%s' vs '%s'", out, text_only);
    ck_assert_int_eq(run_cli("--model tests/fixtures/hf/gemma3_mm --image /nonexistent.png '<start_of_image>'", out,
                             sizeof out), 1);
    ck_assert_msg(strstr(out, "--image: /nonexistent.png: cannot open"), "%s", out);
    ck_assert_int_eq(run_cli("--model tests/fixtures/presets/gemma3_mm --image a.png --image b.png 'x <start_of_image>'",
                             out, sizeof out), 2);
    ck_assert_msg(strstr(out, "PROMPT has 1 <start_of_image> marker for 2 images"), "%s", out);
    ck_assert_int_eq(run_cli("--model tests/fixtures/presets/gemma3 --image a.png '<start_of_image>'", out, sizeof out), 1);
    ck_assert_msg(strstr(out, "tests/fixtures/presets/gemma3 has no vision encoder"), "%s", out);
}
END_TEST

/* generate --score with images: the image changes the losses; --score --logits with the image
 * puts its argmax at the end where greedy generation through the KV cache (checked above against
 * the full forward) puts its first token. */
START_TEST(score_with_images) {
    static char a[1 << 16], b[1 << 16], gen[4096];
    const char *m = "--model tests/fixtures/hf/gemma3_mm";
    char args[1024];
    snprintf(args, sizeof args, "%s --score --image tests/fixtures/images/rgb_37x23.png 'look: <start_of_image> a b'", m);
    ck_assert_int_eq(run_cli(args, a, sizeof a), 0);
    snprintf(args, sizeof args, "%s --score --image tests/fixtures/images/grey_18x30.png 'look: <start_of_image> a b'", m);
    ck_assert_int_eq(run_cli(args, b, sizeof b), 0);
    ck_assert_msg(strstr(a, "\"mean_loss\":") && strcmp(a, b), "%s\nvs\n%s", a, b);
    snprintf(args, sizeof args, "%s --score --logits --image tests/fixtures/images/rgb_37x23.png 'look: <start_of_image> a'", m);
    ck_assert_int_eq(run_cli(args, a, sizeof a), 0);
    snprintf(args, sizeof args, "%s --image tests/fixtures/images/rgb_37x23.png --max-new-tokens 1 --strip-prompt "
             "'look: <start_of_image> a'", m);
    ck_assert_int_eq(run_cli(args, gen, sizeof gen), 0);
    const char *last = strrchr(a, '[');
    ck_assert_ptr_nonnull(last);
    int best = 0, k = 0;
    double top = -1e300;
    for (const char *p = last + 1; *p && *p != ']'; k++) {
        char *e;
        double v = strtod(p, &e);
        if (v > top) top = v, best = k;
        p = *e == ',' ? e + 1 : e;
    }
    ck_assert_int_gt(k, 100);
    gt_tokenizer *tok;
    char err[512], *text = NULL;
    size_t len;
    ck_assert_msg(gt_tok_load("tests/fixtures/hf/gemma3_mm/tokenizer.json", &tok, err, sizeof err) == 0, "%s", err);
    int32_t id = best;
    ck_assert_msg(gt_tok_decode(tok, &id, 1, true, &text, &len, err, sizeof err) == 0, "%s", err);
    printf("score with images: last-position argmax %d ('%s') of %d logits; generate: '%s'\n", best, text, k, gen);
    const char *t = text, *g = gen;
    while (*t == ' ') t++;
    while (*g == ' ') g++;
    ck_assert_msg(*t > ' ' && !strncmp(g, t, strlen(t)), "argmax '%s' but generate gave '%s'", text, gen);
    free(text);
    gt_tok_free(tok);
}
END_TEST

int main(void) {
    gt_h5_process_init();
    Suite *s = suite_create("gemma3_mm");
    TCase *tc = tcase_create("gemma3_mm");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, backbone_with_images_matches_kerashub);
    tcase_add_test(tc, image_tokens_need_their_bidirectional_mask);
    tcase_add_test(tc, kerashub_preset_with_encoder_loads);
    tcase_add_test(tc, preset_with_encoder_round_trips);
    tcase_add_test(tc, convert_keeps_the_encoder);
    tcase_add_test(tc, transformers_with_images_matches);
    tcase_add_test(tc, generation_with_images_matches_full_forward);
    tcase_add_test(tc, generate_image_errors);
    tcase_add_test(tc, score_with_images);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
