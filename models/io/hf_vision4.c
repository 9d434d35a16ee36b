/* hf_vision4.c: Gemma 4 vision tower from a Hugging Face directory (contract in hf_vision4.h). */
#include "models/io/hf_vision4.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/io/hf_tower4.h"
#include "models/io/safetensors.h"
#include "util/err.h"

/* v.<key> into *out when present (else the default stays); -1 naming it when not an integer. */
static int get_int(json_t *v, const char *key, int64_t *out, const char *file, char *err,
                   size_t errn) {
    json_t *x = json_object_get(v, key);
    if (!x) return 0;
    if (!json_is_integer(x))
        return gt_errf(err, errn, "%s: vision_config.%s must be an integer", file, key);
    *out = json_integer_value(x);
    return 0;
}

static int read_vision_config(json_t *v, gt_vision4_config *c, const char *file, char *err,
                              size_t errn) {
    if (get_int(v, "patch_size", &c->patch_size, file, err, errn) ||
        get_int(v, "hidden_size", &c->hidden, file, err, errn) ||
        get_int(v, "intermediate_size", &c->intermediate, file, err, errn) ||
        get_int(v, "num_hidden_layers", &c->num_layers, file, err, errn) ||
        get_int(v, "num_attention_heads", &c->num_heads, file, err, errn) ||
        get_int(v, "head_dim", &c->head_dim, file, err, errn) ||
        get_int(v, "pooling_kernel_size", &c->pool_size, file, err, errn) ||
        get_int(v, "position_embedding_size", &c->pos_table, file, err, errn))
        return -1;
    c->num_kv_heads = c->num_heads; /* HF's default: as many kv heads as heads */
    if (get_int(v, "num_key_value_heads", &c->num_kv_heads, file, err, errn)) return -1;
    json_t *eps = json_object_get(v, "rms_norm_eps");
    json_t *theta = json_object_get(json_object_get(v, "rope_parameters"), "rope_theta");
    if ((eps && !json_is_number(eps)) || (theta && !json_is_number(theta)))
        return gt_errf(err, errn, "%s: vision_config.%s must be a number", file,
                       eps && !json_is_number(eps) ? "rms_norm_eps" : "rope_parameters.rope_theta");
    if (eps) c->eps = json_number_value(eps);
    if (theta) c->rope_base = json_number_value(theta);
    json_t *clip = json_object_get(v, "use_clipped_linears");
    c->clipped = json_is_true(clip); /* HF's default: false */
    if (json_is_true(json_object_get(v, "standardize")))
        return gt_errf(err, errn, "%s: vision_config.standardize true is not supported", file);
    return 0;
}

int gt_hf_vision4_config(const char *dir, gt_vision4_config *c, char *err, size_t errn) {
    char file[1024];
    snprintf(file, sizeof file, "%s/config.json", dir);
    json_error_t je;
    json_t *root = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
    if (!root) return gt_errf(err, errn, "%s: %s", file, je.text);
    json_t *v = json_object_get(root, "vision_config"), *t = json_object_get(root, "text_config");
    json_t *hs = t ? json_object_get(t, "hidden_size") : NULL;
    int rc = -1;
    if (!json_is_object(v)) gt_errf(err, errn, "%s: no vision_config (not a vision model)", file);
    else if (!json_is_integer(hs)) gt_errf(err, errn, "%s: text_config.hidden_size missing", file);
    else {
        gt_vision4_defaults(c, json_integer_value(hs));
        c->image_size = 896; /* KerasHub's fixed value: HF's config has none */
        rc = read_vision_config(v, c, file, err, errn);
        if (!rc) rc = gt_vision4_validate(c, err, errn);
    }
    json_decref(root);
    return rc;
}

/* Our per-layer names (after "block_N.") -> HF's (after "encoder.layers.N."); a clipped
 * linear's entry has no ".weight": its kernel is ".linear.weight", its bounds ".input_min"... */
static const gt_hf_t4_pair LAYER_MAP[] = {
    {"pre_attn_norm", "input_layernorm.weight"},
    {"post_attn_norm", "post_attention_layernorm.weight"},
    {"pre_ffw_norm", "pre_feedforward_layernorm.weight"},
    {"post_ffw_norm", "post_feedforward_layernorm.weight"},
    {"q_norm", "self_attn.q_norm.weight"}, {"k_norm", "self_attn.k_norm.weight"},
    {"q", "self_attn.q_proj"}, {"k", "self_attn.k_proj"}, {"v", "self_attn.v_proj"},
    {"o", "self_attn.o_proj"}, {"gate", "mlp.gate_proj"}, {"up", "mlp.up_proj"},
    {"down", "mlp.down_proj"},
};

static const gt_hf_t4_pair TOP_MAP[] = {
    {"patch.proj", "model.vision_tower.patch_embedder.input_proj.weight"},
    {"patch.pos", "model.vision_tower.patch_embedder.position_embedding_table"},
    {"projection", "model.embed_vision.embedding_projection.weight"},
};

static const gt_hf_t4_names NAMES = {TOP_MAP, LAYER_MAP, sizeof TOP_MAP / sizeof *TOP_MAP,
                                      sizeof LAYER_MAP / sizeof *LAYER_MAP, "block_",
                                      "model.vision_tower.encoder.layers."};

int gt_hf_vision4_name(const char *ours, char *out, size_t n) { return gt_hf_t4_name(&NAMES, ours, out, n); }

static int load_one(gt_st *st, gt_tensor *t, const char *dir, char *err, size_t errn) {
    char name[256];
    if (gt_hf_vision4_name(t->name, name, sizeof name))
        return gt_errf(err, errn, "%s: no HF name for %s", dir, t->name);
    if (gt_hf_t4_is_clip(t->name)) return gt_hf_t4_load_clip(st, t, name, dir, err, errn);
    const gt_st_tensor *s = gt_st_find(st, name);
    if (!s) return gt_errf(err, errn, "%s: missing tensor %s", dir, name);
    bool ok = s->n_elements == t->size && s->ndim == t->ndim;
    for (int a = 0; ok && a < t->ndim; a++) /* 2-D: HF (out, in) against our [in, out] */
        ok = s->shape[a] == t->shape[t->ndim == 2 ? 1 - a : a];
    if (!ok) return gt_errf(err, errn, "%s: %s: shape does not fit config.json's vision_config", dir, name);
    float *buf = malloc((size_t)s->n_elements * sizeof *buf);
    if (!buf) return gt_errf(err, errn, "%s: out of memory for %s", dir, name);
    int rc = gt_st_read_f32(s, buf, err, errn);
    if (!rc && t->ndim == 2) {
        int64_t in = t->shape[0], out = t->shape[1];
        for (int64_t i = 0; i < in; i++)
            for (int64_t o = 0; o < out; o++) t->data[i * out + o] = buf[o * in + i];
    } else if (!rc) {
        for (int64_t i = 0; i < t->size; i++) t->data[i] = buf[i];
    }
    free(buf);
    return rc;
}

int gt_hf_vision4_load(const char *dir, gt_vision4 *m, char *err, size_t errn) {
    gt_vision4_config c;
    memset(m, 0, sizeof *m);
    if (gt_hf_vision4_config(dir, &c, err, errn) || gt_vision4_init(m, &c, err, errn)) return -1;
    gt_st *st;
    if (gt_st_open(dir, &st, err, errn)) {
        gt_vision4_free(m);
        return -1;
    }
    int rc = 0;
    for (int i = 0; !rc && i < m->n_all; i++) rc = load_one(st, m->all[i], dir, err, errn);
    gt_st_close(st);
    if (rc) gt_vision4_free(m);
    return rc;
}
