#include "models/io/vision_keras.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/io/h5io.h"
#include "util/err.h"

int gt_vision_keras_config(const char *dir, gt_vision_config *vc, bool *has, char *err, size_t errn) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    *has = false;
    if (!j) return gt_errf(err, errn, "%s:%d:%d: %s", path, je.line, je.column, gt_err_printable(je.text));
    json_t *enc = json_object_get(json_object_get(j, "config"), "vision_encoder");
    json_t *c = json_object_get(enc, "config");
    /* Gemma 4's tower is another encoder (models/io/towers4_keras.h), not this one */
    const char *cls = json_string_value(json_object_get(enc, "class_name"));
    int rc = 0;
    if (enc && !json_is_null(enc) && !(cls && !strncmp(cls, "Gemma4", 6))) {
        const char *keys[8] = {"image_size", "patch_size", "num_heads", "hidden_dim", "num_layers",
                               "intermediate_dim", "output_dim", "pool_size"};
        int64_t v[8];
        for (int i = 0; i < 8 && !rc; i++) {
            json_t *x = json_object_get(c, keys[i]);
            if (!json_is_integer(x))
                rc = gt_errf(err, errn, "%s: config.vision_encoder.config.%s: missing or not an integer",
                             path, keys[i]);
            else v[i] = json_integer_value(x);
        }
        json_t *eps = json_object_get(c, "layer_norm_epsilon");
        if (!rc) {
            *vc = (gt_vision_config){v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
                                     json_is_number(eps) ? json_number_value(eps) : 1e-6};
            char e[256];
            if (gt_vision_config_check(vc, e, sizeof e)) rc = gt_errf(err, errn, "%s: %s", path, e);
            else *has = true;
        }
    }
    json_decref(j);
    return rc;
}

/* Our name -> the Keras HDF5 path under layers/gemma3_vision_encoder/layers/ (kind: 0 as is,
 * 1 dense kernel transposed, 2 conv kernel). */
static void keras_path(const char *name, char *out, size_t n, int *kind) {
    static const char *const top = "layers/gemma3_vision_encoder/layers/";
    const char *blk = "gemma3_vision_encoder_block/";
    int idx = (strstr(name, "/bias") || strstr(name, "/beta")) ? 1 : 0;
    *kind = strstr(name, "embedding_conv/kernel") ? 2 : strstr(name, "/kernel") ? 1 : 0;
    int layer;
    char rest[96];
    if (sscanf(name, "image_encoder/encoder_block_%d/%95s", &layer, rest) == 2) {
        char *slash = strrchr(rest, '/');
        *slash = 0; /* rest: the layer path below the block */
        const char *sub = strncmp(rest, "multi_head_attention/", 21) ? rest : rest + 21;
        char layer_name[48];
        if (layer) snprintf(layer_name, sizeof layer_name, "gemma3_vision_encoder_layer_%d", layer);
        else snprintf(layer_name, sizeof layer_name, "gemma3_vision_encoder_layer");
        snprintf(out, n, "%s%sresblocks/%s/%s%s/vars/%d", top, blk, layer_name,
                 sub == rest ? "" : "attn/", sub, idx);
    } else if (strstr(name, "embedding_conv")) {
        snprintf(out, n, "%s%svision_embeddings/patch_embedding/vars/%d", top, blk, idx);
    } else if (strstr(name, "position_embedding")) {
        snprintf(out, n, "%s%svision_embeddings/position_embedding/vars/0", top, blk);
    } else if (strstr(name, "encoder_layer_norm")) {
        snprintf(out, n, "%s%sencoder_layer_norm/vars/%d", top, blk, idx);
    } else { /* vision_output_encoder/<layer>/<var> */
        const char *l = name + strlen("vision_output_encoder/");
        snprintf(out, n, "%sgemma3_vision_output/%.*s/vars/0", top, (int)(strchr(l, '/') - l), l);
    }
}

/* Keras' values (src, in Keras' shape) into t in our layout. */
static void from_keras(const float *src, gt_tensor *t, int kind) {
    if (kind == 0) {
        for (int64_t i = 0; i < t->size; i++) t->data[i] = src[i];
        return;
    }
    int64_t r = t->shape[0], c = t->shape[1]; /* ours [out, in]; Keras [in, out] (conv: [p,p,3,out]) */
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < c; j++) t->data[i * c + j] = src[j * r + i];
}

static int load_tensor(gt_h5 f, const char *file, gt_tensor *t, char *err, size_t errn) {
    char h5[512];
    int kind, nd;
    keras_path(t->name, h5, sizeof h5, &kind);
    if (!gt_h5_exists(f, h5)) return gt_errf(err, errn, "%s: missing tensor %s (%s)", file, h5, t->name);
    float *buf;
    int64_t sh[8], n = 1;
    if (gt_h5_read_f32(f, h5, &buf, &nd, sh, err, errn)) return -1;
    for (int a = 0; a < nd; a++) n *= sh[a];
    bool ok = n == t->size && sh[nd - 1] == (kind ? t->shape[0] : t->shape[t->ndim - 1]);
    if (ok) from_keras(buf, t, kind);
    free(buf);
    if (!ok) return gt_errf(err, errn, "%s: %s (%s): shape does not fit config.json's encoder", file, h5, t->name);
    return 0;
}

int gt_vision_keras_load(const char *dir, bool trainable, gt_vision **out, char *err, size_t errn) {
    *out = NULL;
    gt_vision_config vc;
    bool has;
    if (gt_vision_keras_config(dir, &vc, &has, err, errn)) return -1;
    if (!has) return 0;
    gt_vision *v;
    if (gt_vision_create(&vc, trainable, &v, err, errn)) return -1;
    char path[4200];
    snprintf(path, sizeof path, "%s/model.weights.h5", dir);
    gt_h5 f;
    if (gt_h5_open_read(path, &f, err, errn)) {
        gt_vision_free(v);
        return -1;
    }
    int rc = 0;
    for (int64_t i = 0; i < v->n_params && !rc; i++) rc = load_tensor(f, path, v->params[i], err, errn);
    gt_h5_close(f);
    if (rc) {
        gt_vision_free(v);
        return -1;
    }
    *out = v;
    return 0;
}

static const gt_tensor *find_lora(const gt_vision *v, const char *name) {
    for (int64_t i = 0; i < v->n_lora; i++)
        if (!strcmp(v->lora[i]->name, name)) return v->lora[i];
    return NULL;
}

/* t (ours) into dst in Keras' layout: the transpose of from_keras; a kernel with adapters gets
 * scale * A B added (A [in, r], B [r, out]: the product is already Keras' [in, out]). */
static void to_keras(const gt_vision *v, const gt_tensor *t, int kind, bool merge, float *dst) {
    if (kind == 0) {
        for (int64_t i = 0; i < t->size; i++) dst[i] = (float)t->data[i];
        return;
    }
    int64_t r = t->shape[0], c = t->shape[1];
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < c; j++) dst[j * r + i] = (float)t->data[i * c + j];
    char an[200], bn[200];
    size_t base = strlen(t->name) - strlen("/kernel");
    snprintf(an, sizeof an, "%.*s/lora_kernel_a", (int)base, t->name);
    snprintf(bn, sizeof bn, "%.*s/lora_kernel_b", (int)base, t->name);
    const gt_tensor *a = find_lora(v, an), *b = find_lora(v, bn);
    if (!a || !b || !merge) return;
    int64_t rank = a->shape[1]; /* a [c = in, rank], b [rank, r = out] */
    for (int64_t i = 0; i < c; i++)
        for (int64_t j = 0; j < r; j++) {
            double s = 0;
            for (int64_t k = 0; k < rank; k++) s += (double)a->data[i * rank + k] * b->data[k * r + j];
            dst[i * r + j] += (float)(v->lora_scale * s);
        }
}

/* The shape Keras stores t under (kind as keras_path). */
static int keras_shape(const gt_vision *v, const gt_tensor *t, int kind, int64_t sh[4]) {
    if (kind == 2) {
        int64_t p = v->cfg.patch_size;
        sh[0] = p, sh[1] = p, sh[2] = 3, sh[3] = t->shape[0];
        return 4;
    }
    if (kind == 1) {
        sh[0] = t->shape[1], sh[1] = t->shape[0];
        return 2;
    }
    for (int a = 0; a < t->ndim; a++) sh[a] = t->shape[a];
    return t->ndim;
}

int gt_vision_keras_write(gt_h5 f, const gt_vision *v, bool merge_lora, char *err, size_t errn) {
    int64_t maxn = 0;
    for (int64_t i = 0; i < v->n_params; i++) maxn = v->params[i]->size > maxn ? v->params[i]->size : maxn;
    float *buf = malloc((size_t)maxn * sizeof *buf);
    if (!buf) return gt_errf(err, errn, "vision encoder: out of memory");
    int rc = 0;
    for (int64_t i = 0; i < v->n_params && !rc; i++) {
        const gt_tensor *t = v->params[i];
        char h5[512];
        int kind;
        int64_t sh[4];
        keras_path(t->name, h5, sizeof h5, &kind);
        int nd = keras_shape(v, t, kind, sh);
        to_keras(v, t, kind, merge_lora, buf);
        rc = gt_h5_write_f32(f, h5, buf, nd, sh, err, errn);
    }
    free(buf);
    return rc;
}

json_t *gt_vision_keras_config_json(const gt_vision_config *vc) {
    return json_pack("{s:s, s:s, s:{s:s, s:b, s:{s:s, s:s, s:{s:s}, s:n}, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
                     "s:I, s:f}, s:s}",
                     "module", "keras_hub.src.models.gemma3.gemma3_vision_encoder", "class_name",
                     "Gemma3VisionEncoder", "config", "name", "gemma3_vision_encoder", "trainable", 1, "dtype",
                     "module", "keras", "class_name", "DTypePolicy", "config", "name", "float32",
                     "registered_name", "num_heads", (json_int_t)vc->num_heads, "hidden_dim",
                     (json_int_t)vc->hidden_dim, "num_layers", (json_int_t)vc->num_layers, "intermediate_dim",
                     (json_int_t)vc->intermediate_dim, "output_dim", (json_int_t)vc->output_dim, "pool_size",
                     (json_int_t)vc->pool_size, "image_size", (json_int_t)vc->image_size, "patch_size",
                     (json_int_t)vc->patch_size, "layer_norm_epsilon", vc->layer_norm_epsilon,
                     "registered_name", "keras_hub>Gemma3VisionEncoder");
}
