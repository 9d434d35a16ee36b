#include "models/io/vision_hf.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/io/safetensors.h"
#include "util/err.h"

static int64_t jint(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* Shapes from config.json; *has false when it has no vision_config. */
static int hf_config(const char *path, gt_vision_config *vc, bool *has, char *err, size_t errn) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    *has = false;
    if (!j) return gt_errf(err, errn, "%s:%d:%d: %s", path, je.line, je.column, gt_err_printable(je.text));
    json_t *v = json_object_get(j, "vision_config"), *t = json_object_get(j, "text_config");
    /* Gemma 4's tower is another encoder (models/io/hf_vision4.h), not this one */
    const char *mt = json_string_value(json_object_get(j, "model_type"));
    const char *vt = json_string_value(json_object_get(v, "model_type"));
    bool g4 = (mt && !strcmp(mt, "gemma4")) || (vt && !strcmp(vt, "gemma4_vision"));
    int rc = 0;
    if (json_is_object(v) && !g4) {
        int64_t side = jint(v, "image_size") > 0 && jint(v, "patch_size") > 0
                           ? jint(v, "image_size") / jint(v, "patch_size") : 0;
        int64_t mm = jint(j, "mm_tokens_per_image"), per = mm > 0 ? (int64_t)llround(sqrt((double)mm)) : 0;
        json_t *eps = json_object_get(v, "layer_norm_eps");
        *vc = (gt_vision_config){jint(v, "image_size"), jint(v, "patch_size"),
                                 jint(v, "num_attention_heads"), jint(v, "hidden_size"),
                                 jint(v, "num_hidden_layers"), jint(v, "intermediate_size"),
                                 jint(t, "hidden_size"), per > 0 && side % per == 0 ? side / per : -1,
                                 json_is_number(eps) ? json_number_value(eps) : 1e-6};
        char e[256];
        if (per * per != mm) rc = gt_errf(err, errn, "%s: mm_tokens_per_image %lld is not a square", path, (long long)mm);
        else if (gt_vision_config_check(vc, e, sizeof e)) rc = gt_errf(err, errn, "%s: %s", path, e);
        else *has = true;
    }
    json_decref(j);
    return rc;
}

/* HF's name (below its prefix) of our parameter; *conv for the patch kernel, *tr for a kernel to
 * transpose (HF Linear weights are (out, in) like ours; the projector is (in, out)). */
static bool hf_name(const char *ours, char *out, size_t n, bool *proj, bool *conv, bool *tr) {
    static const char *const map[][2] = {
        {"layer_norm_1/gamma", "layer_norm1.weight"}, {"layer_norm_1/beta", "layer_norm1.bias"},
        {"layer_norm_2/gamma", "layer_norm2.weight"}, {"layer_norm_2/beta", "layer_norm2.bias"},
        {"multi_head_attention/query_proj/kernel", "self_attn.q_proj.weight"},
        {"multi_head_attention/query_proj/bias", "self_attn.q_proj.bias"},
        {"multi_head_attention/key_proj/kernel", "self_attn.k_proj.weight"},
        {"multi_head_attention/key_proj/bias", "self_attn.k_proj.bias"},
        {"multi_head_attention/value_proj/kernel", "self_attn.v_proj.weight"},
        {"multi_head_attention/value_proj/bias", "self_attn.v_proj.bias"},
        {"multi_head_attention/out_proj/kernel", "self_attn.out_proj.weight"},
        {"multi_head_attention/out_proj/bias", "self_attn.out_proj.bias"},
        {"mlp_dense_1/kernel", "mlp.fc1.weight"}, {"mlp_dense_1/bias", "mlp.fc1.bias"},
        {"mlp_dense_2/kernel", "mlp.fc2.weight"}, {"mlp_dense_2/bias", "mlp.fc2.bias"},
        {"image_encoder/encoder_embeddings/embedding_conv/kernel", "embeddings.patch_embedding.weight"},
        {"image_encoder/encoder_embeddings/embedding_conv/bias", "embeddings.patch_embedding.bias"},
        {"image_encoder/encoder_embeddings/position_embedding/embeddings", "embeddings.position_embedding.weight"},
        {"image_encoder/encoder_layer_norm/gamma", "post_layernorm.weight"},
        {"image_encoder/encoder_layer_norm/beta", "post_layernorm.bias"},
        {"vision_output_encoder/vision_soft_embedding_norm/scale", "mm_soft_emb_norm.weight"},
        {"vision_output_encoder/vision_input_projection/kernel", "mm_input_projection_weight"},
    };
    int layer = -1, off = 0;
    if (sscanf(ours, "image_encoder/encoder_block_%d/%n", &layer, &off) == 1 && off > 0) ours += off;
    *proj = !strncmp(ours, "vision_output_encoder/", 22);
    *conv = strstr(ours, "embedding_conv/kernel") != NULL;
    *tr = strstr(ours, "vision_input_projection") != NULL;
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        if (strcmp(map[i][0], ours)) continue;
        if (layer >= 0) snprintf(out, n, "encoder.layers.%d.%s", layer, map[i][1]);
        else snprintf(out, n, "%s", map[i][1]);
        return true;
    }
    return false;
}

static const gt_st_tensor *find(const gt_st *st, const char *const *prefixes, const char *name) {
    char full[512];
    for (int i = 0; prefixes[i]; i++) {
        snprintf(full, sizeof full, "%s%s", prefixes[i], name);
        const gt_st_tensor *t = gt_st_find(st, full);
        if (t) return t;
    }
    return NULL;
}

/* One parameter from the checkpoint, rearranged to our layout. */
static int load_one(const gt_st *st, const char *dir, gt_tensor *p, char *err, size_t errn) {
    static const char *const tower[] = {"model.vision_tower.vision_model.", "vision_tower.vision_model.",
                                        "model.vision_tower.", "vision_tower.", NULL};
    static const char *const projector[] = {"model.multi_modal_projector.", "multi_modal_projector.", NULL};
    char name[256];
    bool proj, conv, tr;
    if (!hf_name(p->name, name, sizeof name, &proj, &conv, &tr))
        return gt_errf(err, errn, "%s: no Hugging Face name for %s", dir, p->name);
    const gt_st_tensor *t = find(st, proj ? projector : tower, name);
    if (!t) return gt_errf(err, errn, "%s: missing tensor %s%s", dir, proj ? "multi_modal_projector." : "vision_tower.", name);
    if (t->n_elements != p->size)
        return gt_errf(err, errn, "%s: %s: %lld values, expected %lld from config.json", dir, t->name,
                       (long long)t->n_elements, (long long)p->size);
    float *buf = malloc(sizeof(float) * (size_t)p->size);
    if (!buf) return gt_errf(err, errn, "%s: out of memory", dir);
    int rc = gt_st_read_f32(t, buf, err, errn);
    int64_t r = p->ndim == 2 ? p->shape[0] : 1, c = p->ndim == 2 ? p->shape[1] : p->size;
    if (!rc && conv) { /* (D, 3, p, p) -> [D, (u, v, ch)] */
        int64_t k = t->shape[2];
        for (int64_t d = 0; d < r; d++)
            for (int64_t ch = 0; ch < 3; ch++)
                for (int64_t u = 0; u < k; u++)
                    for (int64_t v = 0; v < k; v++)
                        p->data[d * c + (u * k + v) * 3 + ch] = buf[((d * 3 + ch) * k + u) * k + v];
    } else if (!rc && tr) { /* (in, out) -> (out, in) */
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < c; j++) p->data[i * c + j] = buf[j * r + i];
    } else if (!rc) {
        memcpy(p->data, buf, sizeof(float) * (size_t)p->size);
    }
    free(buf);
    return rc;
}

int gt_vision_hf_load(const char *dir, bool trainable, gt_vision **out, char *err, size_t errn) {
    *out = NULL;
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    gt_vision_config vc;
    bool has;
    if (hf_config(path, &vc, &has, err, errn)) return -1;
    if (!has) return 0;
    gt_vision *v;
    gt_st *st;
    if (gt_vision_create(&vc, trainable, &v, err, errn)) return -1;
    if (gt_st_open(dir, &st, err, errn)) {
        gt_vision_free(v);
        return -1;
    }
    int rc = 0;
    for (int64_t i = 0; i < v->n_params && !rc; i++) rc = load_one(st, dir, v->params[i], err, errn);
    gt_st_close(st);
    if (rc) {
        gt_vision_free(v);
        return -1;
    }
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------- writing */

void gt_vision_hf_out_free(gt_vision_hf_out *o) {
    for (int64_t i = 0; o->e && i < o->n; i++) {
        free((char *)o->e[i].name);
        free((float *)o->e[i].data);
    }
    free(o->e);
    *o = (gt_vision_hf_out){0};
}

/* p in HF's layout into e (name and data allocated); the inverse of load_one. */
static int hf_entry(const gt_vision *v, const gt_tensor *p, gt_st_entry *e, float *tmp) {
    char name[256], full[300];
    bool proj, conv, tr;
    if (!hf_name(p->name, name, sizeof name, &proj, &conv, &tr)) return -1;
    snprintf(full, sizeof full, "%s%s", proj ? "multi_modal_projector." : "vision_tower.vision_model.", name);
    float *d = malloc(sizeof(float) * (size_t)p->size);
    if (!d || !(e->name = strdup(full))) return free(d), -1;
    e->data = d;
    gt_vision_merged(v, p, tmp);
    int64_t r = p->ndim == 2 ? p->shape[0] : 1, c = p->ndim == 2 ? p->shape[1] : p->size;
    e->ndim = p->ndim;
    for (int a = 0; a < p->ndim; a++) e->shape[a] = p->shape[a];
    if (conv) { /* [D, (u, v, ch)] -> (D, 3, p, p) */
        int64_t k = v->cfg.patch_size;
        e->ndim = 4, e->shape[1] = 3, e->shape[2] = e->shape[3] = k;
        for (int64_t o = 0; o < r; o++)
            for (int64_t ch = 0; ch < 3; ch++)
                for (int64_t u = 0; u < k; u++)
                    for (int64_t w = 0; w < k; w++) d[((o * 3 + ch) * k + u) * k + w] = tmp[o * c + (u * k + w) * 3 + ch];
    } else if (tr) { /* (out, in) -> (in, out) */
        e->shape[0] = c, e->shape[1] = r;
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < c; j++) d[j * r + i] = tmp[i * c + j];
    } else {
        memcpy(d, tmp, sizeof(float) * (size_t)p->size);
    }
    return 0;
}

int gt_vision_hf_tensors(const gt_vision *v, gt_vision_hf_out *out, char *err, size_t errn) {
    *out = (gt_vision_hf_out){0};
    int64_t maxn = 0;
    for (int64_t i = 0; i < v->n_params; i++) maxn = v->params[i]->size > maxn ? v->params[i]->size : maxn;
    float *tmp = malloc(sizeof(float) * (size_t)maxn);
    out->e = calloc((size_t)v->n_params, sizeof *out->e);
    int rc = tmp && out->e ? 0 : gt_errf(err, errn, "hf save: vision encoder: out of memory");
    for (int64_t i = 0; i < v->n_params && !rc; i++, out->n++)
        if (hf_entry(v, v->params[i], &out->e[i], tmp))
            rc = gt_errf(err, errn, "hf save: vision encoder: %s: no Hugging Face name, or out of memory",
                         v->params[i]->name);
    free(tmp);
    if (rc) gt_vision_hf_out_free(out);
    return rc;
}

json_t *gt_vision_hf_config(const gt_vision_config *vc, json_t *text, const int32_t ids[3]) {
    static const int32_t dflt[3] = {255999, 256000, 262144}; /* transformers' Gemma3Config */
    json_t *o = json_object(), *dt = json_object_get(text, "dtype");
    json_t *vis = json_pack("{s:s, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:s, s:f, s:b}", "model_type",
                            "siglip_vision_model", "hidden_size", (json_int_t)vc->hidden_dim, "image_size",
                            (json_int_t)vc->image_size, "intermediate_size", (json_int_t)vc->intermediate_dim,
                            "layer_norm_eps", vc->layer_norm_epsilon, "num_attention_heads",
                            (json_int_t)vc->num_heads, "num_channels", (json_int_t)3, "num_hidden_layers",
                            (json_int_t)vc->num_layers, "patch_size", (json_int_t)vc->patch_size, "hidden_act",
                            "gelu_pytorch_tanh", "attention_dropout", 0.0, "vision_use_head", 0);
    json_t *arch = json_pack("[s]", "Gemma3ForConditionalGeneration");
    if (!o || !vis || !arch || !text) {
        json_decref(o), json_decref(vis), json_decref(arch), json_decref(text);
        return NULL;
    }
    json_object_set_new(o, "architectures", arch);
    json_object_set_new(o, "model_type", json_string("gemma3"));
    if (dt) json_object_set(o, "dtype", dt), json_object_set(o, "torch_dtype", dt);
    json_object_set_new(o, "tie_word_embeddings", json_true());
    json_object_set_new(o, "initializer_range", json_real(0.02));
    json_object_set_new(o, "mm_tokens_per_image", json_integer(gt_vision_tokens_per_image(vc)));
    static const char *const keys[3] = {"boi_token_index", "eoi_token_index", "image_token_index"};
    for (int i = 0; i < 3; i++) json_object_set_new(o, keys[i], json_integer(ids[i] >= 0 ? ids[i] : dflt[i]));
    json_object_del(text, "architectures");
    json_object_set_new(o, "text_config", text);
    json_object_set_new(o, "vision_config", vis);
    return o;
}
