#include "models/io/keras_preset.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "models/gemma_fields.h"
#include "models/gemma_params.h"
#include "models/io/h5io.h"
#include "models/io/towers4_keras.h"
#include "models/io/vision_keras.h"
#include "models/io/keras_lora.h"
#include "util/fsutil.h"
#include "util/err.h"

#ifndef GT_VERSION
#define GT_VERSION "dev"
#endif

/* The Keras / KerasHub versions whose preset layout this writer reproduces (checked against
 * their output: tools/reference/make_preset_fixtures.py). */
#define KERAS_FORMAT_VERSION "3.15.1"
#define KERAS_HUB_FORMAT_VERSION "0.32.0"

/* ---------------------------------------------------------------- weight map */

typedef struct {
    char h5[192];        /* dataset path in model.weights.h5 */
    char group[192];     /* its layer's vars group */
    char lname[96];      /* Keras layer name (the vars group's name attribute) */
    gt_tensor *t;
    gt_keras_layout k;
    int kn;              /* rank of the Keras shape */
    int64_t ks[3];       /* Keras shape */
    int64_t layer;       /* decoder block, or -1 */
    int target;          /* gt_lora_target of a kernel, or -1 */
} wmap;

/* Every parameter of m with its Keras path and shape, from the parameter table; *out has
 * m->n_params entries. */
static int build_map(const gt_gemma *m, wmap **out, int *count) {
    wmap *w = calloc((size_t)m->n_params, sizeof *w);
    if (!w) return -1;
    for (int i = 0; i < m->n_params; i++) {
        const gt_gemma_param *p = &m->params[i];
        wmap *e = &w[i];
        gt_gemma_param_keras_group(p->row, &m->cfg, p->layer, e->group, sizeof e->group);
        snprintf(e->h5, sizeof e->h5, "%s/%d", e->group, gt_gemma_param_keras_var(p->row, &m->cfg, p->layer));
        /* the Keras layer is the variable's parent in our name */
        snprintf(e->lname, sizeof e->lname, "%s", p->name);
        char *slash = strrchr(e->lname, '/');
        if (slash) *slash = 0;
        if ((slash = strrchr(e->lname, '/'))) memmove(e->lname, slash + 1, strlen(slash + 1) + 1);
        e->t = p->t;
        e->k = p->row->keras_layout;
        e->kn = gt_gemma_param_keras_shape(p->row, &m->cfg, p->layer, p->t->ndim, p->t->shape, e->ks);
        e->layer = p->layer;
        e->target = p->row->lora;
    }
    *out = w;
    *count = m->n_params;
    return 0;
}

/* ours (src, the model's layout) -> Keras layout (dst) */
static void to_keras(const wmap *e, const gt_real *src, float *dst) {
    const int64_t *s = e->ks;
    switch (e->k) {
    case GT_KERAS_SAME:
        for (int64_t i = 0; i < e->t->size; i++) dst[i] = (float)src[i];
        break;
    case GT_KERAS_HEADS_IN: /* ours [G*H, D] -> (G, D, H) */
    case GT_KERAS_EXPERTS:  /* ours [E*O, X] -> (E, X, O), the same permutation */
        for (int64_t g = 0; g < s[0]; g++)
            for (int64_t d = 0; d < s[1]; d++)
                for (int64_t h = 0; h < s[2]; h++)
                    dst[(g * s[1] + d) * s[2] + h] = (float)src[(g * s[2] + h) * s[1] + d];
        break;
    case GT_KERAS_HEADS_OUT: /* ours [D, N*H] -> (N, H, D) */
        for (int64_t nn = 0; nn < s[0]; nn++)
            for (int64_t h = 0; h < s[1]; h++)
                for (int64_t d = 0; d < s[2]; d++)
                    dst[(nn * s[1] + h) * s[2] + d] = (float)src[d * s[0] * s[1] + nn * s[1] + h];
        break;
    case GT_KERAS_T: /* ours [C, R] -> (R, C) */
        for (int64_t r = 0; r < s[0]; r++)
            for (int64_t c = 0; c < s[1]; c++) dst[r * s[1] + c] = (float)src[c * s[0] + r];
        break;
    }
}

static void from_keras(const wmap *e, const float *src, gt_real *dst) {
    const int64_t *s = e->ks;
    switch (e->k) {
    case GT_KERAS_SAME:
        for (int64_t i = 0; i < e->t->size; i++) dst[i] = (gt_real)src[i];
        break;
    case GT_KERAS_HEADS_IN:
    case GT_KERAS_EXPERTS:
        for (int64_t g = 0; g < s[0]; g++)
            for (int64_t d = 0; d < s[1]; d++)
                for (int64_t h = 0; h < s[2]; h++)
                    dst[(g * s[2] + h) * s[1] + d] = (gt_real)src[(g * s[1] + d) * s[2] + h];
        break;
    case GT_KERAS_HEADS_OUT:
        for (int64_t nn = 0; nn < s[0]; nn++)
            for (int64_t h = 0; h < s[1]; h++)
                for (int64_t d = 0; d < s[2]; d++)
                    dst[d * s[0] * s[1] + nn * s[1] + h] = (gt_real)src[(nn * s[1] + h) * s[2] + d];
        break;
    case GT_KERAS_T:
        for (int64_t r = 0; r < s[0]; r++)
            for (int64_t c = 0; c < s[1]; c++) dst[c * s[0] + r] = (gt_real)src[r * s[1] + c];
        break;
    }
}

static const char *dims_str(int nd, const int64_t *sh, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < nd && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? "," : "", (long long)sh[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

/* ---------------------------------------------------------------- files */

/* Serialise (Keras writes indent 4) and steal the reference. */
static int write_json(const char *dir, const char *name, json_t *j, char *err, size_t errn) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *s = j ? json_dumps(j, JSON_INDENT(4) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!s) return snprintf(err, errn, "%s: out of memory", path), -1;
    int rc = gt_write_file_atomic(path, s, strlen(s), err, errn);
    free(s);
    return rc;
}

/* {"module": "keras", "class_name": "DTypePolicy", "config": {"name": n}, "registered_name": null} */
static json_t *dtype_policy(const char *n) {
    return json_pack("{s:s, s:s, s:{s:s}, s:n}", "module", "keras", "class_name", "DTypePolicy",
                     "config", "name", n, "registered_name");
}

static json_t *serialized(const char *module, const char *cls, json_t *config) {
    char reg[96];
    snprintf(reg, sizeof reg, "keras_hub>%s", cls);
    return json_pack("{s:s, s:s, s:o, s:s}", "module", module, "class_name", cls, "config", config,
                     "registered_name", reg);
}


/* KerasHub can express only its own RoPE bases and sliding patterns: refuse the rest. */
static int representable(const gt_gemma_config *c, char *err, size_t errn) {
#define NO(...) return snprintf(err, errn, "preset export: " __VA_ARGS__), -1
    if (c->generation < 1 || c->generation > 4) NO("Gemma generation %d has no KerasHub writer here", c->generation);
    if (c->generation == 4) return 0; /* Gemma4Backbone's config expresses every gen-4 field we have */
    if (!c->norm_add_one) NO("RMSNorm without the (1 + w) form is not a Gemma 1-3 backbone");
    if (!c->query_head_dim_normalize && !c->kerashub_query_scaling)
        NO("query scaling by (hidden_dim/num_query_heads)^-1/2 differs from KerasHub's head_dim^-1/2");
    bool window = c->sliding_window > 0 && c->sliding_pattern > 0;
    if (c->generation <= 2) {
        if (c->use_qk_norm) NO("QK-norm needs Gemma3Backbone (model.generation 3)");
        if (c->rope_global_base != 10000.0 || (window && c->rope_local_base != 10000.0))
            NO("GemmaBackbone's RoPE wavelength is 10000 (model has %g / %g)", c->rope_local_base, c->rope_global_base);
        if (c->rope_global_scale != 1.0 || (window && c->rope_local_scale != 1.0))
            NO("GemmaBackbone has no RoPE scaling factor");
        if (window && c->sliding_pattern != 2)
            NO("GemmaBackbone's sliding window is on every other layer (pattern 2, model has %d)", c->sliding_pattern);
    } else {
        if (c->rope_global_base != 1000000.0 || (window && c->rope_local_base != 10000.0))
            NO("Gemma3Backbone's RoPE wavelengths are 10000 (local) and 1e6 (global); model has %g / %g",
               c->rope_local_base, c->rope_global_base);
        if (window && c->sliding_pattern != 6)
            NO("Gemma3Backbone's sliding window is on 5 of 6 layers (pattern 6, model has %d)", c->sliding_pattern);
    }
    return 0;
#undef NO
}

/* get_config() key order of each backbone class (generation 1-4); values come from the field
 * table (gemma_fields.c), keras_special() or keras_constants. */
static const char *const keras_keys[5][60] = {
    [1] = {"name", "trainable", "dtype", "vocabulary_size", "num_layers", "num_query_heads", "num_key_value_heads",
           "hidden_dim", "intermediate_dim", "head_dim", "layer_norm_epsilon", "dropout", "query_head_dim_normalize",
           "use_post_ffw_norm", "use_post_attention_norm", "final_logit_soft_cap", "attention_logit_soft_cap",
           "sliding_window_size", "use_sliding_window_attention"},
    [3] = {"name", "trainable", "dtype", "vocabulary_size", "image_size", "num_layers", "num_query_heads",
           "num_key_value_heads", "hidden_dim", "intermediate_dim", "head_dim", "query_head_dim_normalize",
           "use_query_key_norm", "use_post_ffw_norm", "use_post_attention_norm", "attention_logit_soft_cap",
           "final_logit_soft_cap", "use_sliding_window_attention", "sliding_window_size", "local_rope_scaling_factor",
           "global_rope_scaling_factor", "vision_encoder", "use_bidirectional_attention", "layer_norm_epsilon",
           "dropout", "is_embedding_model", "pooling_intermediate_dim", "embedding_dim"},
    [4] = {"name", "trainable", "dtype", "vocabulary_size", "image_size", "num_layers", "num_query_heads",
           "num_key_value_heads", "hidden_dim", "intermediate_dim", "head_dim", "query_head_dim_normalize",
           "attention_logit_soft_cap", "final_logit_soft_cap", "use_sliding_window_attention", "sliding_window_size",
           "sliding_window_pattern", "layer_types", "global_head_dim", "local_rope_scaling_factor",
           "global_rope_scaling_factor", "vision_encoder", "audio_encoder", "num_audio_tokens_per_clip",
           "use_bidirectional_attention", "use_vision_bidirectional_attention", "layer_norm_epsilon", "dropout",
           "is_embedding_model", "pooling_intermediate_dim", "embedding_dim", "num_kv_shared_layers",
           "num_global_key_value_heads", "hidden_size_per_layer_input", "vocab_size_per_layer_input",
           "global_rope_wavelength", "local_rope_wavelength", "global_rope_partial_rotary_factor",
           "use_double_wide_mlp", "enable_moe_block", "num_experts", "expert_intermediate_dim",
           "num_experts_per_token"},
};

/* Keys we write as constants (what a text-only causal LM backbone has), as JSON. */
static const struct {
    const char *key, *json;
} keras_constants[] = {
    {"trainable", "true"}, {"image_size", "null"}, {"dropout", "0"}, {"vision_encoder", "null"},
    {"audio_encoder", "null"}, {"num_audio_tokens_per_clip", "null"}, {"use_bidirectional_attention", "false"},
    {"use_vision_bidirectional_attention", "false"}, {"is_embedding_model", "false"},
    {"pooling_intermediate_dim", "null"}, {"embedding_dim", "null"},
    {"query_head_dim_normalize", "true"}, /* Gemma 4 (the table's row covers 1-3) */
};

/* A table field as KerasHub writes it. */
static json_t *keras_field(const gt_gemma_config *c, const gt_gemma_field *f) {
    double v = gt_gemma_field_get(c, f);
    if ((f->keras_flags & GT_FF_TWICE12) && c->generation <= 2) v *= 2; /* both MLP branches */
    if ((f->keras_flags & GT_FF_NULL_ZERO) && !(v > 0)) return json_null();
    return f->type == GT_FIELD_INT ? json_integer((json_int_t)v) : f->type == GT_FIELD_NUM ? json_real(v)
                                                                                          : json_boolean(v != 0);
}

/* Keys that are neither a field nor a constant: the class's name, the dtype policy, the sliding
 * window (Gemma 1-3 write their class default when off), layer types. */
static json_t *keras_special(const gt_gemma_config *c, const char *key) {
    int g = c->generation;
    bool window = c->sliding_window > 0 && c->sliding_pattern > 0;
    if (!strcmp(key, "name")) return json_string(g == 4 ? "gemma4_backbone" : g == 3 ? "gemma3_backbone" : "gemma_backbone");
    if (!strcmp(key, "dtype")) return dtype_policy("float32");
    if (!strcmp(key, "use_sliding_window_attention")) return json_boolean(g == 4 || window);
    if (!strcmp(key, "sliding_window_size")) return json_integer(window ? c->sliding_window : g == 3 ? 1024 : 4096);
    if (strcmp(key, "layer_types")) return NULL;
    json_t *types = json_array();
    for (int64_t i = 0; types && i < c->num_layers; i++)
        json_array_append_new(types, json_string(gt_gemma_layer_is_local(c, i) ? "sliding_attention" : "full_attention"));
    return types;
}

/* The backbone class's get_config(), in its key order. */
static json_t *backbone_config(const gt_gemma_config *c) {
    int g = c->generation;
    json_t *j = json_object();
    for (int k = 0; j && keras_keys[g <= 2 ? 1 : g][k]; k++) {
        const char *key = keras_keys[g <= 2 ? 1 : g][k];
        const gt_gemma_field *f = gt_gemma_field_keras(key, g);
        json_t *v = f ? keras_field(c, f) : keras_special(c, key);
        for (size_t i = 0; !v && i < sizeof keras_constants / sizeof keras_constants[0]; i++)
            if (!strcmp(keras_constants[i].key, key)) v = json_loads(keras_constants[i].json, JSON_DECODE_ANY, NULL);
        if (!v || json_object_set_new(j, key, v)) {
            json_decref(j);
            return NULL;
        }
    }
    return j;
}

static bool has_pieces(const gt_tokenizer *tok, const char *a, const char *b, const char *c) {
    return gt_tok_piece_id(tok, a) >= 0 && (!b || gt_tok_piece_id(tok, b) >= 0) && (!c || gt_tok_piece_id(tok, c) >= 0);
}

static json_t *tokenizer_json(const gt_gemma_config *c, const gt_tokenizer *tok) {
    bool g3 = c->generation >= 3;
    if (c->generation == 4) {
        /* Gemma4Tokenizer requires each enabled group's special pieces */
        json_t *j = json_pack("{s:s, s:b, s:o, s:s, s:n, s:n, s:b, s:b, s:b, s:b, s:b}", "name", "gemma4_tokenizer",
                              "trainable", 1, "dtype", dtype_policy("int32"), "config_file", "tokenizer.json",
                              "proto", "sequence_length", "add_bos", 0, "add_eos", 0, "has_vision_tokens",
                              has_pieces(tok, "<|image>", "<|image|>", "<image|>"), "has_audio_tokens",
                              has_pieces(tok, "<|audio>", "<|audio|>", "<audio|>"), "has_video_tokens",
                              has_pieces(tok, "<|video|>", NULL, NULL));
        return j ? serialized("keras_hub.src.models.gemma4.gemma4_tokenizer", "Gemma4Tokenizer", j) : NULL;
    }
    json_t *j = json_pack("{s:s, s:b, s:o, s:s, s:n, s:n, s:b, s:b}", "name",
                          g3 ? "gemma3_tokenizer" : "gemma_tokenizer", "trainable", 1, "dtype",
                          dtype_policy("int32"), "config_file", "tokenizer.json", "proto",
                          "sequence_length", "add_bos", 0, "add_eos", 0);
    if (!j) return NULL;
    if (g3) {
        /* Gemma3Tokenizer insists on the image tokens when has_vision_tokens is true */
        bool vision = gt_tok_piece_id(tok, "<img>") >= 0 && gt_tok_piece_id(tok, "<start_of_image>") >= 0 &&
                      gt_tok_piece_id(tok, "<end_of_image>") >= 0;
        json_object_set_new(j, "has_vision_tokens", json_boolean(vision));
        return serialized("keras_hub.src.models.gemma3.gemma3_tokenizer", "Gemma3Tokenizer", j);
    }
    return serialized("keras_hub.src.models.gemma.gemma_tokenizer", "GemmaTokenizer", j);
}

/* Gemma3ImageConverter's config as keras.layers.serialize writes it, for the encoder's image size
 * and our preprocessing (models/io/vision_keras.h; data/image.h: crop to a square, bilinear
 * without antialias, x / 127.5 - 1). */
static json_t *image_converter_json(const gt_vision *v) {
    json_t *j = json_pack("{s:s, s:b, s:o, s:[I, I], s:f, s:f, s:s, s:b, s:b, s:b, s:s}", "name",
                          "gemma3_image_converter", "trainable", 1, "dtype", dtype_policy("float32"), "image_size",
                          (json_int_t)v->cfg.image_size, (json_int_t)v->cfg.image_size, "scale", 1.0 / 127.5,
                          "offset", -1.0, "interpolation", "bilinear", "antialias", 0, "crop_to_aspect_ratio", 1,
                          "pad_to_aspect_ratio", 0, "bounding_box_format", "yxyx");
    return j ? serialized("keras_hub.src.models.gemma3.gemma3_image_converter", "Gemma3ImageConverter", j) : NULL;
}

static json_t *preprocessor_json(const gt_gemma_config *c, const gt_tokenizer *tok, int64_t seq, const gt_vision *v) {
    if (c->generation == 4) {
        /* text only: no converters; the media counts are Gemma4CausalLMPreprocessor's defaults */
        json_t *j = json_pack("{s:s, s:b, s:o, s:o, s:s, s:I, s:b, s:b, s:n, s:n, s:n, s:i, s:i, s:i, s:i, s:i,"
                              " s:i, s:i, s:f}",
                              "name", "gemma4_causal_lm_preprocessor", "trainable", 1, "dtype",
                              dtype_policy("float32"), "tokenizer", tokenizer_json(c, tok), "config_file",
                              "preprocessor.json", "sequence_length", (json_int_t)seq, "add_start_token", 1,
                              "add_end_token", 1, "image_converter", "audio_converter", "video_converter",
                              "num_vision_tokens_per_image", 280, "max_images_per_prompt", 2,
                              "num_audio_tokens_per_clip", 750, "max_audio_clips_per_prompt", 1,
                              "audio_input_feat_size", 128, "num_frames_per_video", 32,
                              "num_vision_tokens_per_frame", 70, "video_fps", 24.0);
        return j ? serialized("keras_hub.src.models.gemma4.gemma4_causal_lm_preprocessor",
                              "Gemma4CausalLMPreprocessor", j)
                 : NULL;
    }
    bool g3 = c->generation >= 3;
    json_t *j = json_pack("{s:s, s:b, s:o, s:o, s:s, s:I, s:b, s:b}", "name",
                          g3 ? "gemma3_causal_lm_preprocessor" : "gemma_causal_lm_preprocessor",
                          "trainable", 1, "dtype", dtype_policy("float32"), "tokenizer",
                          tokenizer_json(c, tok), "config_file", "preprocessor.json",
                          "sequence_length", (json_int_t)seq, "add_start_token", 1, "add_end_token", 1);
    if (!j) return NULL;
    if (g3) {
        /* with an encoder and the image pieces, KerasHub builds the preprocessor with images */
        bool images = v && has_pieces(tok, "<img>", "<start_of_image>", "<end_of_image>");
        json_object_set_new(j, "num_vision_tokens_per_image", json_integer(images ? gt_vision_tokens_per_image(&v->cfg) : 256));
        if (images) json_object_set_new(j, "image_converter", image_converter_json(v));
        json_object_set_new(j, "max_images_per_prompt", json_integer(2));
        return serialized("keras_hub.src.models.gemma3.gemma3_causal_lm_preprocessor",
                          "Gemma3CausalLMPreprocessor", j);
    }
    return serialized("keras_hub.src.models.gemma.gemma_causal_lm_preprocessor",
                      "GemmaCausalLMPreprocessor", j);
}

static json_t *backbone_json(const gt_gemma_config *c) {
    json_t *cfg = backbone_config(c);
    if (!cfg) return NULL;
    if (c->generation == 4) return serialized("keras_hub.src.models.gemma4.gemma4_backbone", "Gemma4Backbone", cfg);
    return c->generation >= 3
               ? serialized("keras_hub.src.models.gemma3.gemma3_backbone", "Gemma3Backbone", cfg)
               : serialized("keras_hub.src.models.gemma.gemma_backbone", "GemmaBackbone", cfg);
}

static json_t *metadata_json(const gt_gemma_config *c, const gt_preset_save_opts *o) {
    char date[64];
    time_t now = time(NULL);
    struct tm tmv;
    localtime_r(&now, &tmv);
    strftime(date, sizeof date, "%Y-%m-%d@%H:%M:%S", &tmv);
    json_t *tasks = c->generation == 3 ? json_pack("[s, s]", "CausalLM", "TextEmbedder") : json_pack("[s]", "CausalLM");
    const gt_preset_provenance *p = &o->prov;
    json_t *lora = json_null();
    if (p->lora) {
        json_t *targets = json_array();
        for (int t = 0; t < GT_LORA_NTARGETS; t++)
            if (p->lora->targets & (1u << t)) json_array_append_new(targets, json_string(gt_lora_target_name((gt_lora_target)t)));
        json_decref(lora);
        lora = json_pack("{s:I, s:f, s:o, s:b}", "rank", (json_int_t)p->lora->rank, "alpha", p->lora->alpha,
                         "targets", targets, "merged", p->lora_merged);
    }
    json_t *g = json_pack("{s:s, s:o, s:o, s:o, s:o}", "version", GT_VERSION, "base_model",
                          p->base_model ? json_string(p->base_model) : json_null(), "lora", lora ? lora : json_null(),
                          "steps", p->steps >= 0 ? json_integer(p->steps) : json_null(), "final_eval_loss",
                          isfinite(p->final_eval_loss) ? json_real(p->final_eval_loss) : json_null());
    return json_pack("{s:s, s:s, s:I, s:s, s:o, s:o}", "keras_version", KERAS_FORMAT_VERSION,
                     "keras_hub_version", KERAS_HUB_FORMAT_VERSION, "parameter_count",
                     (json_int_t)(gt_gemma_param_count(c) + (o->vision ? gt_vision_param_count(&o->vision->cfg) : 0) +
                                  (o->vision4 ? gt_vision4_param_count(&o->vision4->cfg, false) : 0) +
                                  (o->audio ? gt_audio_enc_param_count(&o->audio->cfg, false) : 0)),
                     "date_saved", date, "tasks", tasks,
                     "gemmatrain", g);
}

/* The backbone's config (serialized) with config.vision_encoder and image_size set from v, or
 * Gemma 4's vision_encoder / audio_encoder (KerasHub sets 750 audio tokens with an encoder). */
static json_t *with_vision(json_t *bb, const gt_vision *v, const gt_preset_save_opts *o) {
    json_t *c = json_object_get(bb, "config");
    if (c && o->vision4) json_object_set_new(c, "vision_encoder", gt_towers4_keras_vision_json(&o->vision4->cfg));
    if (c && o->vision4 && o->vision_bidir) json_object_set_new(c, "use_vision_bidirectional_attention", json_true());
    if (c && o->audio) {
        json_object_set_new(c, "audio_encoder", gt_towers4_keras_audio_json(&o->audio->cfg));
        json_object_set_new(c, "num_audio_tokens_per_clip", json_integer(750));
    }
    if (!v || !c) return bb;
    json_object_set_new(c, "vision_encoder", gt_vision_keras_config_json(&v->cfg));
    json_object_set_new(c, "image_size", json_integer(v->cfg.image_size));
    return bb;
}

static int save_weights(const char *dir, const gt_gemma *m, const gt_preset_save_opts *o, char *err,
                        size_t errn) {
    char path[4200];
    snprintf(path, sizeof path, "%s/model.weights.h5", dir);
    wmap *w;
    int n;
    if (build_map(m, &w, &n)) return snprintf(err, errn, "%s: out of memory", path), -1;
    int64_t maxn = 0;
    for (int i = 0; i < n; i++) maxn = w[i].t->size > maxn ? w[i].t->size : maxn;
    float *buf = malloc((size_t)maxn * sizeof *buf);
    gt_real *merged = o->lora && o->merge_lora ? malloc((size_t)maxn * sizeof *merged) : NULL;
    gt_h5w h;
    if (!buf || (o->lora && o->merge_lora && !merged)) {
        free(buf);
        free(merged);
        free(w);
        return snprintf(err, errn, "%s: out of memory", path), -1;
    }
    if (gt_h5_create(path, &h, err, errn)) {
        free(buf);
        free(merged);
        free(w);
        return -1;
    }
    int gen = m->cfg.generation;
    const char *bname = gen == 4 ? "gemma4_backbone" : gen == 3 ? "gemma3_backbone" : "gemma_backbone";
    int rc = gt_h5_group(h.f, "/vars", err, errn);
    rc = rc ? rc : gt_h5_set_attr_str(h.f, "/vars", "name", bname, err, errn);
    rc = rc ? rc : gt_h5_group(h.f, "layers/input_layer/vars", err, errn);
    rc = rc ? rc : gt_h5_set_attr_str(h.f, "layers/input_layer/vars", "name", "token_ids", err, errn);
    rc = rc ? rc : gt_h5_group(h.f, "layers/input_layer_1/vars", err, errn);
    rc = rc ? rc : gt_h5_set_attr_str(h.f, "layers/input_layer_1/vars", "name", "padding_mask", err, errn);
    if (gen == 4) {
        rc = rc ? rc : gt_h5_group(h.f, "layers/input_layer_2/vars", err, errn);
        rc = rc ? rc : gt_h5_set_attr_str(h.f, "layers/input_layer_2/vars", "name", "position_ids", err, errn);
    }
    for (int64_t i = 0; i < m->cfg.num_layers && !rc; i++) {
        char b[64], g[128], nm[64];
        gt_gemma_keras_block_dir(&m->cfg, i, b, sizeof b);
        snprintf(g, sizeof g, "layers/%s/vars", b);
        snprintf(nm, sizeof nm, "decoder_block_%lld", (long long)i);
        rc = gt_h5_group(h.f, g, err, errn);
        rc = rc ? rc : gt_h5_set_attr_str(h.f, g, "name", nm, err, errn);
        snprintf(g, sizeof g, "layers/%s/attention/vars", b);
        rc = rc ? rc : gt_h5_group(h.f, g, err, errn);
        rc = rc ? rc : gt_h5_set_attr_str(h.f, g, "name", "attention", err, errn);
    }
    for (int i = 0; i < n && !rc; i++) {
        const wmap *e = &w[i];
        const gt_real *src = e->t->data;
        const gt_lora_adapter *ad = o->merge_lora && e->target >= 0 ? gt_lora_get(o->lora, e->layer, (gt_lora_target)e->target) : NULL;
        if (ad) {
            memcpy(merged, src, (size_t)e->t->size * sizeof *merged);
            gt_tensor tmp;
            gt_tensor_wrap(&tmp, merged, NULL, e->t->ndim, e->t->shape, false);
            gt_lora_merge(o->lora, ad, &tmp);
            src = merged;
        }
        to_keras(e, src, buf);
        rc = gt_h5_write_f32(h.f, e->h5, buf, e->kn, e->ks, err, errn);
        rc = rc ? rc : gt_h5_set_attr_str(h.f, e->group, "name", e->lname, err, errn);
    }
    free(buf);
    free(merged);
    free(w);
    /* the encoder's adapters are merged unless they go into adapter.lora.h5 beside it */
    if (!rc && o->vision) rc = gt_vision_keras_write(h.f, o->vision, !o->lora || o->merge_lora, err, errn);
    if (!rc && (o->vision4 || o->audio)) rc = gt_towers4_keras_write(h.f, o->vision4, o->audio, err, errn);
    if (rc) {
        gt_h5_abort(&h);
        return -1;
    }
    return gt_h5_commit(&h, err, errn);
}

int gt_keras_preset_save(const char *dir, const gt_gemma *m, const gt_tokenizer *tok,
                         const gt_preset_save_opts *opts, char *err, size_t errn) {
    gt_preset_save_opts o = *opts;
    const gt_gemma_config *c = &m->cfg;
    if (!tok) return snprintf(err, errn, "%s: a preset needs a tokenizer", dir), -1;
    if (m->frozen_dtype != GT_FROZEN_FP32) /* the writer reads fp32 parameters */
        return snprintf(err, errn, "%s: the model is stored as %s: widen it first (gt_gemma_set_frozen_dtype)", dir, gt_frozen_dtype_names[m->frozen_dtype]), -1;
    if (gt_tok_vocab_size(tok) > c->vocab_size)
        return snprintf(err, errn, "%s: tokenizer has %d pieces, the model's vocabulary %lld", dir,
                        gt_tok_vocab_size(tok), (long long)c->vocab_size), -1;
    if (o.merge_lora && !o.lora) o.merge_lora = false;
    if (o.sequence_length <= 0) o.sequence_length = 1024;
    o.prov.lora_merged = o.merge_lora;
    if (representable(c, err, errn)) return -1;
    if (o.vision && (c->generation != 3 || o.vision->cfg.output_dim != c->hidden_dim))
        return snprintf(err, errn, "%s: a vision encoder is written for Gemma 3 with output_dim = hidden_dim", dir), -1;
    if ((o.vision4 && (c->generation != 4 || o.vision4->cfg.output_dim != c->hidden_dim)) ||
        (o.audio && (c->generation != 4 || o.audio->cfg.output_dim != c->hidden_dim)))
        return snprintf(err, errn, "%s: Gemma 4 encoders are written for Gemma 4 with output_dim = hidden_dim", dir), -1;
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/assets/tokenizer", dir);
    if (gt_mkdir_p(sub, err, errn)) return -1;
    snprintf(sub, sizeof sub, "%s/assets/tokenizer/vocabulary.spm", dir);
    if (gt_tok_save_spm(tok, sub, err, errn)) return -1;
    if (save_weights(dir, m, &o, err, errn)) return -1;
    if (o.lora && !o.merge_lora) {
        snprintf(sub, sizeof sub, "%s/adapter.lora.h5", dir);
        if (gt_keras_lora_save_mm(sub, o.lora, c, o.vision, err, errn)) return -1;
    }
    json_t *task = json_pack("{s:o, s:o, s:s}", "backbone", with_vision(backbone_json(c), o.vision, &o), "preprocessor",
                             preprocessor_json(c, tok, o.sequence_length, o.vision), "name",
                             c->generation == 4 ? "gemma4_causal_lm" : c->generation >= 3 ? "gemma3_causal_lm" : "gemma_causal_lm");
    if (task && c->generation == 4) {
        json_object_set_new(task, "final_logit_cap", json_null());
        task = serialized("keras_hub.src.models.gemma4.gemma4_causal_lm", "Gemma4CausalLM", task);
    } else if (task) {
        task = c->generation >= 3 ? serialized("keras_hub.src.models.gemma3.gemma3_causal_lm", "Gemma3CausalLM", task)
                                  : serialized("keras_hub.src.models.gemma.gemma_causal_lm", "GemmaCausalLM", task);
    }
    if (write_json(dir, "task.json", task, err, errn) ||
        write_json(dir, "preprocessor.json", preprocessor_json(c, tok, o.sequence_length, o.vision), err, errn) ||
        write_json(dir, "tokenizer.json", tokenizer_json(c, tok), err, errn) ||
        write_json(dir, "metadata.json", metadata_json(c, &o), err, errn))
        return -1;
    /* config.json last: its presence marks a complete preset */
    return write_json(dir, "config.json", with_vision(backbone_json(c), o.vision, &o), err, errn);
}

/* ---------------------------------------------------------------- loading */

static json_t *read_json(const char *path, char *err, size_t errn) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) {
        FILE *f = fopen(path, "rb");
        if (!f) return gt_err_open(err, errn, path, errno), NULL;
        fclose(f);
        snprintf(err, errn, "%s:%d:%d: malformed JSON: %s", path, je.line, je.column, gt_err_printable(je.text));
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        snprintf(err, errn, "%s: expected a JSON object", path);
        return NULL;
    }
    return j;
}

int gt_keras_preset_detect(const char *path) {
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) return 0;
    char p[4200], e[8];
    snprintf(p, sizeof p, "%s/config.json", path);
    json_t *j = read_json(p, e, sizeof e);
    if (!j) return 0;
    const char *reg = json_string_value(json_object_get(j, "registered_name"));
    const char *mod = json_string_value(json_object_get(j, "module"));
    int ok = json_is_string(json_object_get(j, "class_name")) &&
             ((reg && (!strncmp(reg, "keras_hub>", 10) || !strncmp(reg, "keras_nlp>", 10))) ||
              (mod && (!strncmp(mod, "keras_hub", 9) || !strncmp(mod, "keras_nlp", 9))));
    json_decref(j);
    return ok;
}

typedef struct {
    const char *path;
    json_t *cfg;
    char *err;
    size_t errn;
} jctx;

static int get_int(jctx *x, const char *key, int64_t *out) {
    json_t *v = json_object_get(x->cfg, key);
    if (!json_is_integer(v))
        return snprintf(x->err, x->errn, "%s: config.%s: %s", x->path, key, v ? "expected an integer" : "missing"), -1;
    *out = json_integer_value(v);
    return 0;
}

/* optional bool: dflt when absent */
static int get_bool(jctx *x, const char *key, bool dflt, bool *out) {
    json_t *v = json_object_get(x->cfg, key);
    if (!v || json_is_null(v)) return *out = dflt, 0;
    if (!json_is_boolean(v)) return snprintf(x->err, x->errn, "%s: config.%s: expected true or false", x->path, key), -1;
    *out = json_is_true(v);
    return 0;
}

/* optional number; null and absent give dflt */
static int get_num(jctx *x, const char *key, double dflt, double *out) {
    json_t *v = json_object_get(x->cfg, key);
    if (!v || json_is_null(v)) return *out = dflt, 0;
    if (!json_is_number(v)) return snprintf(x->err, x->errn, "%s: config.%s: expected a number", x->path, key), -1;
    *out = json_number_value(v);
    return 0;
}

/* optional integer; null and absent give dflt */
static int get_int_or(jctx *x, const char *key, int64_t dflt, int64_t *out) {
    json_t *v = json_object_get(x->cfg, key);
    if (!v || json_is_null(v)) return *out = dflt, 0;
    return get_int(x, key, out);
}

/* The table's keys of a backbone class (classes: GT_G bits) into *t: required integers, or the
 * row's default when absent or null; GemmaBackbone's intermediate_dim halved. */
static int read_fields(jctx *x, unsigned classes, gt_gemma_config *t) {
    size_t n;
    const gt_gemma_field *f = gt_gemma_fields(&n);
    for (size_t i = 0; i < n; i++) {
        const gt_gemma_field *r = &f[i];
        if (!r->keras || !(r->keras_gens & classes)) continue;
        int64_t iv = 0;
        double v = r->keras_dflt;
        bool b = v != 0;
        if (r->type == GT_FIELD_INT) {
            if ((r->keras_flags & GT_FF_REQUIRED) ? get_int(x, r->keras, &iv) : get_int_or(x, r->keras, (int64_t)v, &iv))
                return -1;
            if ((r->keras_flags & GT_FF_TWICE12) && (classes & GT_G(1))) {
                if (iv % 2)
                    return snprintf(x->err, x->errn, "%s: config.%s %lld is not even (GemmaBackbone stores both MLP "
                                    "branches)", x->path, r->keras, (long long)iv), -1;
                iv /= 2;
            }
            /* an int field stores what fits in an int; a wider value would not convert (fuzz_config_json) */
            if (r->size == sizeof(int) && (iv < INT_MIN || iv > INT_MAX))
                return snprintf(x->err, x->errn, "%s: config.%s %lld is out of range", x->path, r->keras,
                                (long long)iv), -1;
            v = (double)iv;
        } else if (r->type == GT_FIELD_NUM) {
            if (get_num(x, r->keras, v, &v)) return -1;
        } else {
            if (get_bool(x, r->keras, b, &b)) return -1;
            v = b;
        }
        gt_gemma_field_set(t, r, v);
    }
    return 0;
}

/* A causal text decoder only: no vision encoder (Gemma 3), no bidirectional or embedding model. */
static int refusals(jctx *x, int gen) {
    bool bidir = false, embed = false;
    if (gen >= 3 && (get_bool(x, "use_bidirectional_attention", false, &bidir) ||
                     get_bool(x, "is_embedding_model", false, &embed)))
        return -1;
    if (bidir || embed)
        return snprintf(x->err, x->errn, "%s: config.%s is true: only causal language models are supported", x->path,
                        bidir ? "use_bidirectional_attention" : "is_embedding_model"), -1;
    return 0;
}

/* Local layers: Gemma 1-3 from use_sliding_window_attention (pattern fixed by the class: 2 or
 * 6); Gemma 4 always on, its pattern read, explicit layer_types must be that periodic pattern. */
static int sliding(jctx *x, gt_gemma_config *c) {
#define NO(...) return snprintf(x->err, x->errn, __VA_ARGS__), -1
    bool on;
    int64_t win = 0;
    if (get_bool(x, "use_sliding_window_attention", c->generation == 4, &on)) return -1;
    if (c->generation < 4) {
        if (on && get_int(x, "sliding_window_size", &win)) return -1;
        c->sliding_window = on ? win : 0;
        c->sliding_pattern = on ? (c->generation == 3 ? 6 : 2) : 0;
        return 0;
    }
    int64_t pattern = c->sliding_pattern;
    if (!on) NO("%s: config.use_sliding_window_attention false is not supported for Gemma 4", x->path);
    if (pattern < 1 || pattern > 1000) NO("%s: config.sliding_window_pattern %lld out of range", x->path, (long long)pattern);
    json_t *types = json_object_get(x->cfg, "layer_types");
    if (!types || json_is_null(types)) return 0;
    if (!json_is_array(types) || (int64_t)json_array_size(types) != c->num_layers)
        NO("%s: config.layer_types: expected a list of num_layers (%lld) strings", x->path, (long long)c->num_layers);
    for (int64_t i = 0; i < c->num_layers; i++) {
        const char *t = json_string_value(json_array_get(types, (size_t)i));
        bool global = i % pattern == pattern - 1;
        if (!t || strcmp(t, global ? "full_attention" : "sliding_attention"))
            NO("%s: config.layer_types[%lld] is '%s' but sliding_window_pattern %lld makes it %s: only periodic "
               "layer types are supported", x->path, (long long)i, t ? t : "?", (long long)pattern,
               global ? "full_attention" : "sliding_attention");
    }
    return 0;
#undef NO
}

/* The backbone's text decoder config: the table's fields, GemmaBackbone's generation (2 when it
 * uses Gemma 2's features), then the special cases above. */
static int backbone_fields(jctx *x, const char *cls, const char *dir, gt_gemma_config *c) {
    int gen = !strcmp(cls, "GemmaBackbone") ? 1 : !strcmp(cls, "Gemma3Backbone") ? 3 : !strcmp(cls, "Gemma4Backbone") ? 4 : 0;
    if (!gen)
        return snprintf(x->err, x->errn, "%s: class_name '%s' is not a supported backbone (GemmaBackbone, "
                        "Gemma3Backbone, Gemma4Backbone)", x->path, cls), -1;
    if (!json_is_object(x->cfg)) return snprintf(x->err, x->errn, "%s: no \"config\" object", x->path), -1;
    unsigned classes = gen == 1 ? GT_G(1) | GT_G(2) : GT_G(gen);
    gt_gemma_config t;
    memset(&t, 0, sizeof t);
    bool on = false;
    if (read_fields(x, classes, &t) || get_bool(x, "use_sliding_window_attention", false, &on)) return -1;
    if (gen == 1 && (t.use_post_ffw_norm || t.use_post_attention_norm || on || t.attn_logit_softcap > 0 ||
                     t.final_logit_softcap > 0))
        gen = 2;
    gt_gemma_config_defaults(c, gen);
    size_t n;
    const gt_gemma_field *f = gt_gemma_fields(&n);
    for (size_t i = 0; i < n; i++)
        if (f[i].keras && (f[i].keras_gens & classes)) gt_gemma_field_set(c, &f[i], gt_gemma_field_get(&t, &f[i]));
    const char *base = strrchr(dir, '/');
    base = base && base[1] ? base + 1 : dir;
    snprintf(c->name, sizeof c->name, "keras:%.50s", base);
    c->kerashub_query_scaling = true;
    if (refusals(x, gen) || sliding(x, c)) return -1;
    bool vision = false; /* Gemma 3's encoder shapes (its weights: models/io/vision_keras.h) */
    if (gen == 3 && gt_vision_keras_config(dir, &c->vision, &vision, x->err, x->errn)) return -1;
    char e[512];
    if (gt_gemma_config_validate(c, e, sizeof e)) return snprintf(x->err, x->errn, "%s: %s", x->path, e), -1;
    return 0;
}

int gt_keras_preset_config(const char *dir, gt_gemma_config *c, char *err, size_t errn) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) return snprintf(err, errn, "%s: not a directory", dir), -1;
    if (stat(path, &st)) return snprintf(err, errn, "%s: not a KerasHub preset (no config.json)", dir), -1;
    json_t *j = read_json(path, err, errn);
    if (!j) return -1;
    const char *cls = json_string_value(json_object_get(j, "class_name"));
    jctx x = {path, json_object_get(j, "config"), err, errn};
    int rc = cls ? backbone_fields(&x, cls, dir, c)
                 : (snprintf(err, errn, "%s: no \"class_name\": not a KerasHub preset (a Hugging Face directory?)",
                             path), -1);
    json_decref(j);
    return rc;
}

/* Gemma4Backbone's top-level layers are stored as layers/<class>[_k]: k counts same-class layers
 * in graph order, which other top-level layers of a multimodal preset could shift. Find the
 * group whose vars carry the layer's name and point x at it; -1 when there is none. */
static int resolve_top4(gt_h5 f, wmap *x) {
    char base[192], g[192], name[96], e[8];
    snprintf(base, sizeof base, "%s", x->group + strlen("layers/"));
    base[strlen(base) - strlen("/vars")] = 0;
    char *u = strrchr(base, '_');
    if (u && u[1] && strspn(u + 1, "0123456789") == strlen(u + 1)) *u = 0;
    for (int k = 0; k < 64; k++) {
        if (k) snprintf(g, sizeof g, "layers/%s_%d/vars", base, k);
        else snprintf(g, sizeof g, "layers/%s/vars", base);
        if (!gt_h5_exists(f, g) || gt_h5_attr_str(f, g, "name", name, sizeof name, e, sizeof e)) continue;
        if (strcmp(name, x->lname)) continue;
        snprintf(x->group, sizeof x->group, "%s", g);
        snprintf(x->h5, sizeof x->h5, "%s/0", g);
        return 0;
    }
    return -1;
}

/* One Keras variable into its parameter: fp32 in place, or (a stored matrix of a frozen model)
 * rounded or quantised from one fp32 copy of that tensor alone. */
static int place(gt_gemma *m, const wmap *x, const float *buf) {
    gt_tensor *t = x->t;
    if (t->data) return from_keras(x, buf, t->data), 0;
    gt_real *tmp = x->k == GT_KERAS_SAME ? NULL : malloc(sizeof(gt_real) * (size_t)t->size);
    if (x->k != GT_KERAS_SAME && !tmp) return -1;
    if (tmp) from_keras(x, buf, tmp);
    gt_gemma_store_rows(m, t, 0, t->shape[0], tmp ? tmp : buf);
    free(tmp);
    return 0;
}

static int preset_load(const char *dir, bool trainable, gt_frozen_dtype dt, gt_gemma **model, gt_tokenizer **tok,
                       char *err, size_t errn) {
    *model = NULL;
    if (tok) *tok = NULL;
    gt_gemma_config c;
    if (gt_keras_preset_config(dir, &c, err, errn)) return -1;
    char path[4200];
    snprintf(path, sizeof path, "%s/model.weights.h5", dir);
    struct stat st;
    if (stat(path, &st)) {
        char js[4200];
        snprintf(js, sizeof js, "%s/model.weights.json", dir);
        if (!stat(js, &st)) return snprintf(err, errn, "%s: sharded weights (model.weights.json) are not supported yet", dir), -1;
        return snprintf(err, errn, "%s: no model.weights.h5", dir), -1;
    }
    gt_gemma *m;
    char e[512];
    if (dt == GT_FROZEN_FP32 ? gt_gemma_create(&c, trainable, &m, e, sizeof e) : gt_gemma_create_frozen(&c, dt, &m, e, sizeof e))
        return snprintf(err, errn, "%s: %s", dir, e), -1;
    wmap *w = NULL;
    int n = 0, rc = -1;
    gt_h5 f = -1;
    if (build_map(m, &w, &n)) {
        snprintf(err, errn, "%s: out of memory", dir);
        goto done;
    }
    if (gt_h5_open_read(path, &f, err, errn)) goto done;
    for (int i = 0; i < n; i++) {
        wmap *x = &w[i];
        float *buf = NULL;
        int nd;
        int64_t sh[8];
        if (c.generation == 4 && x->layer < 0 && resolve_top4(f, x)) {
            snprintf(err, errn, "%s: no top-level layer named '%s' (looked for %s and its numbered siblings)", path,
                     x->lname, x->group);
            goto done;
        }
        if (!gt_h5_exists(f, x->h5)) {
            snprintf(err, errn, "%s: missing tensor %s (%s)", path, x->h5, x->t->name);
            goto done;
        }
        if (gt_h5_read_f32(f, x->h5, &buf, &nd, sh, err, errn)) goto done;
        bool ok = nd == x->kn;
        for (int a = 0; ok && a < nd; a++) ok = sh[a] == x->ks[a];
        if (!ok) {
            char got[96], want[96];
            snprintf(err, errn, "%s: %s (%s): shape %s, expected %s from config.json", path, x->h5,
                     x->t->name, dims_str(nd, sh, got, sizeof got), dims_str(x->kn, x->ks, want, sizeof want));
            free(buf);
            goto done;
        }
        int pr = place(m, x, buf);
        free(buf);
        if (pr) {
            snprintf(err, errn, "%s: out of memory for %s", path, x->t->name);
            goto done;
        }
    }
    if (tok) {
        snprintf(path, sizeof path, "%s/assets/tokenizer/vocabulary.spm", dir);
        if (gt_tok_load_spm(path, tok, err, errn)) goto done;
    }
    rc = 0;
done:
    if (f > 0) gt_h5_close(f);
    free(w);
    if (rc) {
        gt_gemma_free(m);
        return -1;
    }
    *model = m;
    return 0;
}

int gt_keras_preset_load(const char *dir, bool trainable, gt_gemma **model, gt_tokenizer **tok,
                         char *err, size_t errn) {
    return preset_load(dir, trainable, GT_FROZEN_FP32, model, tok, err, errn);
}

int gt_keras_preset_load_frozen(const char *dir, gt_frozen_dtype dt, gt_gemma **model, gt_tokenizer **tok,
                                char *err, size_t errn) {
    return preset_load(dir, false, dt, model, tok, err, errn);
}
