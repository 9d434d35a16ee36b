/* vision_rows.c: a job's vision encoder and its rows' images (train/vision_rows.h). */
#include "train/vision_rows.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rng.h"
#include "data/preprocess.h"
#include "models/io/keras_preset.h"
#include "models/io/vision_hf.h"
#include "models/io/vision_keras.h"

static double normal01(uint64_t *s) {
    double u1 = ((double)(gt_rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * gt_rng_uniform(s));
}

/* A directory with config.json: the encoder it holds (none is fine: *enc stays NULL). */
static int load_from(const char *path, bool trainable, gt_vision **enc, char *err, size_t errn) {
    char cfg[1100];
    snprintf(cfg, sizeof cfg, "%s/config.json", path);
    FILE *f = fopen(cfg, "r");
    if (!f) return 0; /* a GGUF file: text only */
    fclose(f);
    return gt_keras_preset_detect(path) ? gt_vision_keras_load(path, trainable, enc, err, errn)
                                        : gt_vision_hf_load(path, trainable, enc, err, errn);
}

int gt_vrows_build(gt_vrows *v, const gt_gemma *m, const gt_config *c, char *err, size_t errn) {
    memset(v, 0, sizeof *v);
    gt_vision_train mode = c->model.vision.train;
    v->trains = mode != GT_VISION_FROZEN;
    if (c->model.weights[0]) {
        if (load_from(c->model.weights, mode == GT_VISION_FULL, &v->enc, err, errn)) return -1;
    } else if (m->cfg.vision.num_layers > 0) {
        char e[512];
        if (gt_vision_create(&m->cfg.vision, mode == GT_VISION_FULL, &v->enc, e, sizeof e))
            return snprintf(err, errn, "model.vision: %s", e), -1;
        uint64_t s = (uint64_t)c->model.init_seed ^ 0x5649534Full; /* its own stream: the decoder's is unchanged */
        for (int64_t i = 0; i < v->enc->n_params; i++) {
            gt_tensor *t = v->enc->params[i];
            bool ln_scale = strstr(t->name, "gamma") != NULL;
            for (int64_t k = 0; k < t->size; k++)
                t->data[k] = ln_scale ? 1.0f : (gt_real)(c->model.init_std * normal01(&s));
        }
    }
    if (!v->enc && mode != GT_VISION_FROZEN)
        return snprintf(err, errn, "model.vision_train: %s, but the model has no vision encoder",
                        gt_cfg_vision_train_names[mode]), -1;
    if (!v->enc) return 0;
    double alpha = c->lora.alpha > 0 ? c->lora.alpha : (double)c->lora.rank;
    if (mode == GT_VISION_LORA &&
        gt_vision_lora_create(v->enc, c->lora.rank, alpha, (uint64_t)c->lora.seed ^ 0x5649534Full, err, errn))
        return -1;
    if (!v->enc) return 0;
    if (v->enc->cfg.output_dim != m->cfg.hidden_dim)
        return snprintf(err, errn, "vision encoder projects to %lld values but the decoder is %lld wide",
                        (long long)v->enc->cfg.output_dim, (long long)m->cfg.hidden_dim), -1;
    v->ic = gt_image_cfg_gemma3((int)v->enc->cfg.image_size);
    v->per = v->enc->cfg.image_size * v->enc->cfg.image_size * 3;
    v->tokens = gt_vision_tokens_per_image(&v->enc->cfg);
    return 0;
}

int gt_vrows_alloc(gt_vrows *v, int64_t rows, int64_t S, int64_t max_images, char *err, size_t errn) {
    v->S = S;
    v->slots = max_images;
    v->count = calloc((size_t)rows, sizeof *v->count);
    v->mask = calloc((size_t)(rows * S), 1);
    v->pixels = v->enc && max_images ? malloc(sizeof(float) * (size_t)(rows * max_images * v->per)) : NULL;
    if (!v->count || !v->mask || (v->enc && max_images && !v->pixels))
        return snprintf(err, errn, "out of memory for %lld rows of images", (long long)rows), -1;
    return 0;
}

int gt_vrows_fill(gt_vrows *v, const gt_tokenizer *tok, int64_t r, const gt_example *ex, const int32_t *ids,
                  char *err, size_t errn) {
    v->count[r] = 0;
    memset(v->mask + r * v->S, 0, (size_t)v->S);
    if (!ex->n_images) return 0;
    if (!v->enc)
        return snprintf(err, errn, "the record has %d image(s) but the model has no vision encoder "
                        "(a Gemma 3 preset with one, model.vision_num_layers, or a KerasHub/HF model with one)",
                        ex->n_images), -1;
    if (ex->n_images > v->slots)
        return snprintf(err, errn, "%d image(s), more than data.max_images_per_prompt (%lld)", ex->n_images,
                        (long long)v->slots), -1;
    int64_t n = gt_pp_vision_mask(tok, ids, v->S, v->mask + r * v->S);
    if (n != ex->n_images * v->tokens)
        return snprintf(err, errn, "data.sequence_length (%lld) cuts the record's images short: %lld of their "
                        "%lld tokens fit", (long long)v->S, (long long)n, (long long)(ex->n_images * v->tokens)), -1;
    for (int i = 0; i < ex->n_images && !v->no_pixels; i++) {
        gt_image im;
        if (gt_image_load(ex->images[i], &im, err, errn)) return -1;
        int rc = gt_image_preprocess(&im, &v->ic, v->pixels + (r * v->slots + i) * v->per, err, errn);
        gt_image_free(&im);
        if (rc) return -1;
    }
    v->count[r] = ex->n_images;
    return 0;
}

int64_t gt_vrows_trainables(const gt_vrows *v, gt_tensor *const **out) {
    *out = NULL;
    if (!v->enc || !v->trains) return 0;
    if (v->enc->n_lora) return *out = v->enc->lora, v->enc->n_lora;
    if (v->enc->n_params && v->enc->params[0]->requires_grad) return *out = v->enc->params, v->enc->n_params;
    return 0;
}

void gt_vrows_free(gt_vrows *v) {
    gt_vision_free(v->enc);
    free(v->pixels);
    free(v->count);
    free(v->mask);
    memset(v, 0, sizeof *v);
}
