/* media4_rows.c: a Gemma 4 job's towers and its rows' media (train/media4_rows.h). */
#include "train/media4_rows.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "autograd/rng.h"
#include "models/io/hf_audio.h"
#include "models/io/hf_vision4.h"
#include "models/io/keras_converters4.h"
#include "models/io/keras_preset.h"
#include "models/io/towers4_keras.h"
#include "util/err.h"

static double normal01(uint64_t *s) {
    double u1 = ((double)(gt_rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * gt_rng_uniform(s));
}

/* Random weights for a new tower: normal(0, std) on trainable kernels and tables; norm scales,
 * per-dim scales and the frozen clip bounds keep their initial values (KerasHub's). */
static void init_random(gt_tensor **all, int n, uint64_t seed, double std) {
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        gt_tensor *t = all[i];
        if (!t->requires_grad || strstr(t->name, "norm") || strstr(t->name, "per_dim_scale")) continue;
        for (int64_t k = 0; k < t->size; k++) t->data[k] = (gt_real)(std * normal01(&s));
    }
}

/* The converters' settings from a preset's preprocessor.json, when it has one; and whether
 * config.json opens image spans (KerasHub's use_vision_bidirectional_attention, HF's "vision"). */
static int dir_settings(gt_m4rows *x, const char *dir, char *err, size_t errn) {
    char path[GT_CFG_STR + 32];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *j = json_load_file(path, 0, NULL);
    json_t *hf = json_object_get(json_object_get(j, "text_config"), "use_bidirectional_attention");
    x->vision_bidir = json_is_true(json_object_get(json_object_get(j, "config"), "use_vision_bidirectional_attention")) ||
                      (json_is_string(hf) && !strcmp(json_string_value(hf), "vision"));
    json_decref(j);
    return gt_keras_converters4_load(dir, &x->icfg, &x->acfg, err, errn);
}

/* Towers from a KerasHub preset or HF directory (a GGUF file has none). */
static int load_towers(gt_m4rows *x, const char *dir, char *err, size_t errn) {
    char cfg[GT_CFG_STR + 32], e[1024];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    FILE *f = fopen(cfg, "r");
    if (!f) return 0;
    fclose(f);
    if (gt_keras_preset_detect(dir))
        return gt_towers4_keras_load(dir, &x->v, &x->has_v, &x->a, &x->has_a, err, errn);
    if (!gt_hf_vision4_config(dir, &x->v.cfg, e, sizeof e)) {
        if (gt_hf_vision4_load(dir, &x->v, err, errn)) return -1;
        x->has_v = true;
    }
    if (!gt_hf_audio_config(dir, &x->a.cfg, e, sizeof e)) {
        if (gt_hf_audio_load(dir, &x->a, err, errn)) return -1;
        x->has_a = true;
    }
    return 0;
}

/* Towers of a preset's shapes or model.vision_* / model.audio_*, randomly initialised. */
static int new_towers(gt_m4rows *x, const gt_gemma *m, const gt_config *c, char *err, size_t errn) {
    gt_vision4_config vc;
    gt_audio_enc_config ac;
    char e[512];
    int64_t D = m->cfg.hidden_dim;
    bool pv = c->model.preset[0] && !gt_vision4_preset(c->model.preset, &vc, e, sizeof e);
    bool pa = c->model.preset[0] && !gt_audio_enc_preset(c->model.preset, &ac, e, sizeof e);
    if (!pv) gt_vision4_defaults(&vc, D);
    if (!pa) gt_audio_enc_defaults(&ac, D);
#define SET(dst, v) if (v) dst = v
    SET(vc.patch_size, c->model.vision.patch_size);
    SET(vc.pool_size, c->model.vision.pool_size);
    SET(vc.num_layers, c->model.vision.num_layers);
    SET(vc.hidden, c->model.vision.hidden_dim);
    SET(vc.intermediate, c->model.vision.intermediate_dim);
    if (c->model.vision.num_heads) vc.num_heads = vc.num_kv_heads = c->model.vision.num_heads;
    SET(ac.num_layers, c->model.audio.num_layers);
    SET(ac.hidden, c->model.audio.hidden_dim);
    SET(ac.num_heads, c->model.audio.num_heads);
    SET(ac.input_feat_size, c->model.audio.num_mels);
#undef SET
    vc.head_dim = vc.hidden / vc.num_heads, vc.output_dim = ac.output_dim = D;
    uint64_t seed = (uint64_t)c->model.init_seed;
    if (pv || c->model.vision.num_layers > 0) {
        if (gt_vision4_init(&x->v, &vc, e, sizeof e)) return gt_errf(err, errn, "model.vision_*: %s", e);
        x->has_v = true;
        init_random(x->v.all, x->v.n_all, seed ^ 0x5649533444ull, c->model.init_std);
    }
    if (pa || c->model.audio.num_layers > 0) {
        if (gt_audio_enc_init(&x->a, &ac, e, sizeof e)) return gt_errf(err, errn, "model.audio_*: %s", e);
        x->has_a = true;
        init_random(x->a.all, x->a.n_all, seed ^ 0x415544494full, c->model.init_std);
    }
    return 0;
}

/* Frozen towers record no gradients; model.vision_train full keeps the vision tower's
 * trainable tensors for the optimizer. */
static int set_training(gt_m4rows *x, gt_vision_train mode, char *err, size_t errn) {
    if (mode == GT_VISION_LORA)
        return gt_errf(err, errn, "model.vision_train: lora is Gemma 3 only for now (Gemma 4: frozen or full)");
    if (mode == GT_VISION_FULL && !x->has_v)
        return gt_errf(err, errn, "model.vision_train: full, but the model has no Gemma 4 vision tower");
    x->trains = mode == GT_VISION_FULL;
    if (x->trains && !(x->train_t = calloc((size_t)x->v.n_all, sizeof *x->train_t)))
        return gt_errf(err, errn, "out of memory");
    for (int i = 0; x->has_v && i < x->v.n_all; i++) {
        if (x->trains && x->v.all[i]->requires_grad) x->train_t[x->n_train++] = x->v.all[i];
        else x->v.all[i]->requires_grad = false;
    }
    for (int i = 0; x->has_a && i < x->a.n_all; i++) x->a.all[i]->requires_grad = false;
    return 0;
}

int gt_m4rows_build(gt_m4rows *x, const gt_gemma *m, const gt_config *c, char *err, size_t errn) {
    memset(x, 0, sizeof *x);
    x->image_token = x->audio_token = -1;
    if (m->cfg.generation != 4) return 0;
    x->on = true;
    x->icfg = gt_image4_cfg_gemma4();
    gt_audio_cfg_default(&x->acfg);
    if (c->model.weights[0] ? load_towers(x, c->model.weights, err, errn) : new_towers(x, m, c, err, errn)) return -1;
    if (x->has_v) x->icfg.patch = (int)x->v.cfg.patch_size, x->icfg.pool = (int)x->v.cfg.pool_size;
    if (x->has_a) x->acfg.num_mels = (int)x->a.cfg.input_feat_size;
    if (c->model.weights[0] && dir_settings(x, c->model.weights, err, errn)) return -1;
    if (c->model.vision.soft_tokens) x->icfg.max_soft_tokens = (int)c->model.vision.soft_tokens;
    if (x->has_v && x->v.cfg.output_dim != m->cfg.hidden_dim)
        return gt_errf(err, errn, "the vision tower projects to %lld values but the decoder is %lld wide",
                       (long long)x->v.cfg.output_dim, (long long)m->cfg.hidden_dim);
    if (x->has_a && x->a.cfg.output_dim != m->cfg.hidden_dim)
        return gt_errf(err, errn, "the audio tower projects to %lld values but the decoder is %lld wide",
                       (long long)x->a.cfg.output_dim, (long long)m->cfg.hidden_dim);
    if (gt_image4_validate(&x->icfg, err, errn) || gt_audio_cfg_validate(&x->acfg, err, errn)) return -1;
    x->P = gt_image4_max_patches(&x->icfg), x->pd = gt_image4_patch_dim(&x->icfg), x->L = x->icfg.max_soft_tokens;
    x->F = gt_audio_num_frames(&x->acfg), x->M = x->acfg.num_mels;
    return set_training(x, c->model.vision.train, err, errn);
}

int gt_m4rows_alloc(gt_m4rows *x, const gt_tokenizer *tok, int64_t rows, int64_t S, int64_t max_images,
                    int64_t max_clips, char *err, size_t errn) {
    if (!x->on) return 0;
    x->S = S, x->slots_i = x->has_v ? max_images : 0, x->slots_a = x->has_a ? max_clips : 0;
    if (x->has_v && (x->image_token = gt_tok_piece_id(tok, GT_IMAGE4_PLACEHOLDER)) < 0)
        return gt_errf(err, errn, "tokenizer: no %s piece for the vision tower's images", GT_IMAGE4_PLACEHOLDER);
    if (x->has_a && (x->audio_token = gt_tok_piece_id(tok, GT_AUDIO_PLACEHOLDER)) < 0)
        return gt_errf(err, errn, "tokenizer: no %s piece for the audio tower's clips", GT_AUDIO_PLACEHOLDER);
    size_t ni = (size_t)(rows * x->slots_i), na = (size_t)(rows * x->slots_a);
    x->n_img = calloc((size_t)rows, sizeof *x->n_img);
    x->n_clip = calloc((size_t)rows, sizeof *x->n_clip);
    x->mask = calloc((size_t)(rows * S), 1);
    x->patches = ni ? malloc(sizeof(float) * ni * (size_t)(x->P * x->pd)) : NULL;
    x->pos = ni ? malloc(sizeof(int32_t) * ni * (size_t)(x->P * 2)) : NULL;
    x->mel = na ? malloc(sizeof(float) * na * (size_t)(x->F * x->M)) : NULL;
    x->clip_tokens = calloc(na ? na : 1, sizeof *x->clip_tokens);
    x->clip_valid = calloc(na ? na : 1, sizeof *x->clip_valid);
    if (!x->n_img || !x->n_clip || !x->mask || (ni && (!x->patches || !x->pos)) || (na && !x->mel) ||
        !x->clip_tokens || !x->clip_valid)
        return gt_errf(err, errn, "out of memory for %lld rows of images and audio", (long long)rows);
    return 0;
}

static int count_in(const char *s, const char *mark) {
    int n = 0;
    for (const char *p = s; p && (p = strstr(p, mark)); p += strlen(mark)) n++;
    return n;
}

/* Markers in the text the preprocessor expands: the prompt, or every turn but the model's. */
static int markers(const gt_example *ex, const char *mark) {
    if (ex->kind == GT_DS_PROMPT_RESPONSE) return count_in(ex->prompt, mark);
    int n = 0;
    for (int i = 0; ex->kind == GT_DS_CHAT && i < ex->n_turns; i++)
        if (strcmp(ex->roles[i], "assistant") && strcmp(ex->roles[i], "model")) n += count_in(ex->contents[i], mark);
    return n;
}

/* The record's media against the towers and the slots. */
static int check_counts(const gt_m4rows *x, const gt_example *ex, char *err, size_t errn) {
    if (ex->n_images && !x->has_v)
        return gt_errf(err, errn, "the record has %d image(s) but the model has no Gemma 4 vision tower (a KerasHub "
                       "preset or HF directory with one, a gemma4_2b/4b preset, or model.vision_num_layers)", ex->n_images);
    if (ex->n_audio && !x->has_a)
        return gt_errf(err, errn, "the record has %d audio clip(s) but the model has no Gemma 4 audio tower (a "
                       "KerasHub preset or HF directory with one, a gemma4_2b/4b preset, or model.audio_num_layers)",
                       ex->n_audio);
    if (ex->n_images > x->slots_i)
        return gt_errf(err, errn, "%d image(s), more than data.max_images_per_prompt (%lld)", ex->n_images,
                       (long long)x->slots_i);
    if (ex->n_audio > x->slots_a)
        return gt_errf(err, errn, "%d audio clip(s), more than data.max_audio_per_prompt (%lld)", ex->n_audio,
                       (long long)x->slots_a);
    int mi = x->has_v ? markers(ex, GT_IMAGE4_PLACEHOLDER) : 0, ma = x->has_a ? markers(ex, GT_AUDIO_PLACEHOLDER) : 0;
    if (mi != ex->n_images)
        return gt_errf(err, errn, "%d %s marker(s) for %d image(s)", mi, GT_IMAGE4_PLACEHOLDER, ex->n_images);
    if (ma != ex->n_audio)
        return gt_errf(err, errn, "%d %s marker(s) for %d audio clip(s)", ma, GT_AUDIO_PLACEHOLDER, ex->n_audio);
    return 0;
}

int gt_m4rows_prepare(gt_m4rows *x, int64_t r, const gt_example *ex, gt_pp_cfg *pp, char *err, size_t errn) {
    pp->image4_tokens = 0, pp->audio_tokens = NULL, pp->n_audio = 0;
    if (!x->on) return 0;
    x->n_img[r] = x->n_clip[r] = 0;
    if (check_counts(x, ex, err, errn)) return -1;
    for (int k = 0; k < ex->n_audio; k++) {
        int64_t i = r * x->slots_a + k, ns = 0;
        float *wav = NULL;
        if (gt_audio_read_wav(ex->audio[k], x->acfg.sampling_rate, &wav, &ns, NULL, err, errn)) return -1;
        x->clip_tokens[i] = gt_audio_num_tokens(&x->acfg, ns);
        x->clip_valid[i] = gt_audio_valid_frames(&x->acfg, ns);
        /* Only the clip's own seconds (+1): padding is zeros, so those frames equal the full
         * clip's, and they cover the 4 x tokens the batch reads; a 30 s transform costs 0.3 s. */
        gt_audio_cfg own = x->acfg;
        int64_t secs = ns / own.sampling_rate + 1;
        if (secs < own.max_audio_length) own.max_audio_length = (int)secs;
        int rc = x->no_media ? 0 : gt_audio_features(&own, wav, ns, x->mel + i * x->F * x->M, err, errn);
        free(wav);
        if (rc) return -1;
    }
    pp->image4_tokens = x->has_v ? x->L : 0;
    pp->audio_tokens = x->clip_tokens + r * x->slots_a;
    pp->n_audio = ex->n_audio;
    return 0;
}

int gt_m4rows_check(gt_m4rows *x, int64_t r, const gt_example *ex, const int32_t *ids, char *err, size_t errn) {
    if (!x->on) return 0;
    int64_t ni = 0, na = 0, want_a = 0;
    uint8_t *mk = x->mask + r * x->S;
    for (int64_t t = 0; t < x->S; t++) {
        bool i = x->has_v && ids[t] == x->image_token, a = x->has_a && ids[t] == x->audio_token;
        ni += i, na += a, mk[t] = i || a;
    }
    for (int k = 0; k < ex->n_audio; k++) want_a += x->clip_tokens[r * x->slots_a + k];
    if (ni != ex->n_images * x->L || na != want_a)
        return gt_errf(err, errn, "data.sequence_length (%lld) cuts the record's media short: %lld of %lld image and "
                       "%lld of %lld audio tokens fit", (long long)x->S, (long long)ni, (long long)(ex->n_images * x->L),
                       (long long)na, (long long)want_a);
    for (int k = 0; k < ex->n_images && !x->no_media; k++) {
        int64_t i = r * x->slots_i + k;
        if (gt_image4_load(ex->images[k], &x->icfg, x->patches + i * x->P * x->pd, x->pos + i * x->P * 2, NULL, err,
                           errn))
            return -1;
    }
    x->n_img[r] = ex->n_images, x->n_clip[r] = ex->n_audio;
    return 0;
}

/* Rows [row0, row0 + B)'s images and clips, packed in row order into ctx arrays. */
static int gather(gt_ctx *ctx, const gt_m4rows *x, int64_t row0, int64_t B, gt_gemma4_images *im,
                  gt_gemma4_clips *cl) {
    int64_t ni = 0, na = 0, T = 1;
    for (int64_t r = row0; r < row0 + B; r++) {
        ni += x->n_img[r], na += x->n_clip[r];
        for (int k = 0; k < x->n_clip[r]; k++) { /* frames up to 4 x the slots, as KerasHub clips them */
            int64_t f = 4 * x->clip_tokens[r * x->slots_a + k];
            if (f > T) T = f < x->F ? f : x->F;
        }
    }
    *im = (gt_gemma4_images){.n = ni, .P = x->P};
    *cl = (gt_gemma4_clips){.n = na, .T = T};
    float *px = ni ? gt_alloc(ctx, sizeof(float) * (size_t)(ni * x->P * x->pd)) : NULL;
    int32_t *pos = ni ? gt_alloc(ctx, sizeof(int32_t) * (size_t)(ni * x->P * 2)) : NULL;
    float *mel = na ? gt_alloc(ctx, sizeof(float) * (size_t)(na * T * x->M)) : NULL;
    uint8_t *valid = na ? gt_alloc(ctx, (size_t)(na * T)) : NULL;
    if ((ni && (!px || !pos)) || (na && (!mel || !valid))) return -1;
    for (int64_t r = row0, i = 0, a = 0; r < row0 + B; r++) {
        for (int k = 0; k < x->n_img[r]; k++, i++) {
            int64_t s = r * x->slots_i + k;
            memcpy(px + i * x->P * x->pd, x->patches + s * x->P * x->pd, sizeof(float) * (size_t)(x->P * x->pd));
            memcpy(pos + i * x->P * 2, x->pos + s * x->P * 2, sizeof(int32_t) * (size_t)(x->P * 2));
        }
        for (int k = 0; k < x->n_clip[r]; k++, a++) {
            int64_t s = r * x->slots_a + k;
            memcpy(mel + a * T * x->M, x->mel + s * x->F * x->M, sizeof(float) * (size_t)(T * x->M));
            for (int64_t t = 0; t < T; t++) valid[a * T + t] = t < x->clip_valid[s];
        }
    }
    im->patches = px, im->pos = pos, cl->mel = mel, cl->valid = valid;
    return 0;
}

gt_tensor *gt_m4rows_hidden(gt_ctx *ctx, const gt_gemma *m, const gt_m4rows *x, int64_t row0,
                            const gt_gemma_batch *b) {
    gt_gemma4_images im;
    gt_gemma4_clips cl;
    if (gather(ctx, x, row0, b->batch, &im, &cl)) return NULL;
    gt_gemma4_media md = {.vision = x->has_v ? &x->v : NULL, .vision_bidir = x->vision_bidir,
                          .image_token = x->image_token, .images = &im, .audio = x->has_a ? &x->a : NULL,
                          .audio_token = x->audio_token, .clips = &cl};
    return gt_gemma4_media_hidden(ctx, m, &md, b);
}

void gt_m4rows_free(gt_m4rows *x) {
    if (x->has_v) gt_vision4_free(&x->v);
    if (x->has_a) gt_audio_enc_free(&x->a);
    free(x->patches), free(x->pos), free(x->mel), free(x->clip_tokens), free(x->clip_valid);
    free(x->n_img), free(x->n_clip), free(x->mask), free(x->train_t);
    memset(x, 0, sizeof *x);
}
