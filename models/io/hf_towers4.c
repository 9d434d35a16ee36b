/* hf_towers4.c: Gemma 4 towers into a Hugging Face directory (contract in hf_towers4.h). */
#include "models/io/hf_towers4.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/io/hf_audio.h"
#include "models/io/hf_tower4.h"
#include "models/io/hf_vision4.h"
#include "models/io/safetensors.h"
#include "util/err.h"
#include "util/fsutil.h"

typedef struct {
    gt_st_entry *e;
    char (*names)[200];
    float **owned; /* relayouted copies, freed at the end */
    size_t n, cap, n_owned;
} entries;

static gt_st_entry *add(entries *s, const char *name) {
    if (s->n == s->cap) return NULL;
    snprintf(s->names[s->n], sizeof s->names[s->n], "%s", name);
    gt_st_entry *e = &s->e[s->n];
    memset(e, 0, sizeof *e);
    e->name = s->names[s->n++];
    return e;
}

/* ours -> HF layout: [in, out] -> (out, in); conv [kt, kf, in, out] -> (out, in, kt, kf);
 * the depthwise [K, D] -> (D, 1, K); anything else as is. */
static float *relayout(const gt_tensor *t, bool depthwise, gt_st_entry *e) {
    const int64_t *s = t->shape;
    float *d = malloc(sizeof(float) * (size_t)t->size);
    if (!d) return NULL;
    e->ndim = t->ndim;
    for (int a = 0; a < t->ndim; a++) e->shape[a] = s[a];
    if (t->ndim == 2 && depthwise) {
        e->ndim = 3, e->shape[0] = s[1], e->shape[1] = 1, e->shape[2] = s[0];
        for (int64_t k = 0; k < s[0]; k++)
            for (int64_t c = 0; c < s[1]; c++) d[c * s[0] + k] = (float)t->data[k * s[1] + c];
    } else if (t->ndim == 2) {
        e->shape[0] = s[1], e->shape[1] = s[0];
        for (int64_t i = 0; i < s[0]; i++)
            for (int64_t o = 0; o < s[1]; o++) d[o * s[0] + i] = (float)t->data[i * s[1] + o];
    } else if (t->ndim == 4) {
        e->shape[0] = s[3], e->shape[1] = s[2], e->shape[2] = s[0], e->shape[3] = s[1];
        for (int64_t a = 0; a < s[0]; a++)
            for (int64_t b = 0; b < s[1]; b++)
                for (int64_t ci = 0; ci < s[2]; ci++)
                    for (int64_t co = 0; co < s[3]; co++)
                        d[((co * s[2] + ci) * s[0] + a) * s[1] + b] =
                            (float)t->data[((a * s[1] + b) * s[2] + ci) * s[3] + co];
    } else {
        for (int64_t i = 0; i < t->size; i++) d[i] = (float)t->data[i];
    }
    return d;
}

static int add_tower(entries *s, gt_tensor *const *all, int n, bool vision, char *err,
                     size_t errn) {
    for (int i = 0; i < n; i++) {
        const gt_tensor *t = all[i];
        char name[200], full[220];
        if (vision ? gt_hf_vision4_name(t->name, name, sizeof name)
                   : gt_hf_audio_name(t->name, name, sizeof name))
            return gt_errf(err, errn, "hf save: %s has no Hugging Face name", t->name);
        if (gt_hf_t4_is_clip(t->name)) {
            for (int b = 0; b < 4; b++) { /* 0-d tensors, read straight from the clip */
                snprintf(full, sizeof full, "%s.%s", name, GT_HF_T4_CLIP[b]);
                gt_st_entry *e = add(s, full);
                if (!e) return gt_errf(err, errn, "hf save: too many tensors");
                e->data = (const float *)&t->data[b];
            }
            continue;
        }
        gt_st_entry *e = add(s, name);
        float *d = e ? relayout(t, strstr(t->name, ".depthwise") != NULL, e) : NULL;
        if (!d) return gt_errf(err, errn, "hf save: out of memory for %s", name);
        s->owned[s->n_owned++] = d;
        e->data = d;
    }
    return 0;
}

static json_t *vision_json(const gt_vision4_config *c) {
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:{s:f, s:s}, s:b, "
                     "s:b, s:s}",
                     "model_type", "gemma4_vision", "hidden_size", (json_int_t)c->hidden,
                     "intermediate_size", (json_int_t)c->intermediate, "num_hidden_layers",
                     (json_int_t)c->num_layers, "num_attention_heads", (json_int_t)c->num_heads,
                     "num_key_value_heads", (json_int_t)c->num_kv_heads, "head_dim",
                     (json_int_t)c->head_dim, "patch_size", (json_int_t)c->patch_size,
                     "pooling_kernel_size", (json_int_t)c->pool_size, "position_embedding_size",
                     (json_int_t)c->pos_table, "rms_norm_eps", c->eps, "rope_parameters",
                     "rope_theta", c->rope_base, "rope_type", "axial", "use_clipped_linears",
                     c->clipped, "standardize", 0, "hidden_activation", "gelu_pytorch_tanh");
}

static json_t *audio_json(const gt_audio_enc_config *c) {
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:[I, I], s:I, s:f, s:f, s:f, "
                     "s:b}",
                     "model_type", "gemma4_audio", "hidden_size", (json_int_t)c->hidden,
                     "num_attention_heads", (json_int_t)c->num_heads, "num_hidden_layers",
                     (json_int_t)c->num_layers, "attention_chunk_size", (json_int_t)c->chunk,
                     "attention_context_left", (json_int_t)c->context_left,
                     "attention_context_right", (json_int_t)c->context_right,
                     "attention_logit_cap", c->logit_cap, "conv_kernel_size",
                     (json_int_t)c->conv_kernel, "subsampling_conv_channels",
                     (json_int_t)c->sscp_channels[0], (json_int_t)c->sscp_channels[1],
                     "output_proj_dims", (json_int_t)c->output_proj_dims, "residual_weight",
                     c->residual_weight, "gradient_clipping", c->gradient_clipping, "rms_norm_eps",
                     c->norm_eps, "use_clipped_linears", 1);
}

/* What HF's configs cannot say (hf_towers4.h). */
static int expressible(const gt_vision4 *v, const gt_audio_enc *a, char *err, size_t errn) {
    if (!v && !a) return gt_errf(err, errn, "hf save: no tower to write");
    if (v && a && v->cfg.output_dim != a->cfg.output_dim)
        return gt_errf(err, errn, "hf save: the towers project to different widths (%lld, %lld): "
                       "text_config.hidden_size is one", (long long)v->cfg.output_dim,
                       (long long)a->cfg.output_dim);
    if (!a) return 0;
    const gt_audio_enc_config *c = &a->cfg;
    if (c->input_feat_size != c->sscp_channels[0])
        return gt_errf(err, errn, "hf save: audio input_feat_size %lld: HF's audio_config sizes it "
                       "as subsampling_conv_channels[0] (%lld)", (long long)c->input_feat_size,
                       (long long)c->sscp_channels[0]);
    if (c->output_proj_dims <= 0)
        return gt_errf(err, errn, "hf save: audio output_proj_dims 0: HF's tower always has one");
    if (c->sscp_norm_eps != c->norm_eps)
        return gt_errf(err, errn, "hf save: audio sscp_norm_eps differs from norm_eps: HF has one "
                       "rms_norm_eps");
    return 0;
}

/* The model's config.json: text (a Gemma4ForCausalLM config object, or NULL for the towers
 * alone: text_config.hidden_size only) wrapped as Gemma4ForConditionalGeneration. */
json_t *gt_hf_towers4_config(json_t *text, const gt_vision4 *v, const gt_audio_enc *a,
                             const int32_t ids[6], bool vision_bidir) {
    int64_t width = v ? v->cfg.output_dim : a->cfg.output_dim;
    json_t *tc = text ? text : json_pack("{s:I}", "hidden_size", (json_int_t)width);
    json_t *o = tc ? json_pack("{s:[s], s:s, s:o}", "architectures", "Gemma4ForConditionalGeneration",
                               "model_type", "gemma4", "text_config", tc)
                   : NULL;
    if (!o) return NULL;
    if (text) { /* the class and the head belong to the outer config */
        json_object_del(text, "architectures");
        json_object_set_new(o, "tie_word_embeddings", json_true());
        json_object_set(o, "dtype", json_object_get(text, "dtype"));
        if (vision_bidir) json_object_set_new(text, "use_bidirectional_attention", json_string("vision"));
    }
    if (v) json_object_set_new(o, "vision_config", vision_json(&v->cfg));
    if (a) json_object_set_new(o, "audio_config", audio_json(&a->cfg));
    static const char *const keys[6] = {"boi_token_id", "image_token_id", "eoi_token_id",
                                        "boa_token_id", "audio_token_id", "eoa_token_index"};
    for (int k = 0; ids && k < 6; k++)
        if (ids[k] >= 0) json_object_set_new(o, keys[k], json_integer(ids[k]));
    return o;
}

int gt_hf_towers4_check(const gt_vision4 *v, const gt_audio_enc *a, int64_t text_width, char *err,
                        size_t errn) {
    if (expressible(v, a, err, errn)) return -1;
    int64_t w = v ? v->cfg.output_dim : a->cfg.output_dim;
    if (text_width > 0 && w != text_width)
        return gt_errf(err, errn, "hf save: the towers project to width %lld, the decoder's hidden_size is %lld",
                       (long long)w, (long long)text_width);
    return 0;
}

int gt_hf_towers4_tensors(const gt_vision4 *v, const gt_audio_enc *a, gt_hf_towers4_out *out,
                          char *err, size_t errn) {
    memset(out, 0, sizeof *out);
    size_t cap = 4 * (size_t)((v ? v->n_all : 0) + (a ? a->n_all : 0));
    entries *s = calloc(1, sizeof *s);
    if (s) *s = (entries){calloc(cap, sizeof *s->e), calloc(cap, sizeof *s->names),
                          calloc(cap, sizeof *s->owned), 0, cap, 0};
    out->priv = s;
    int rc = !s || !s->e || !s->names || !s->owned ? gt_errf(err, errn, "hf save: out of memory") : 0;
    if (!rc && v) rc = add_tower(s, v->all, v->n_all, true, err, errn);
    if (!rc && a) rc = add_tower(s, a->all, a->n_all, false, err, errn);
    if (rc) {
        gt_hf_towers4_out_free(out);
        return -1;
    }
    out->e = s->e, out->n = s->n;
    return 0;
}

void gt_hf_towers4_out_free(gt_hf_towers4_out *o) {
    entries *s = o->priv;
    if (s) {
        for (size_t i = 0; i < s->n_owned; i++) free(s->owned[i]);
        free(s->e), free(s->names), free(s->owned), free(s);
    }
    memset(o, 0, sizeof *o);
}

int gt_hf_towers4_save(const char *dir, const gt_vision4 *v, const gt_audio_enc *a, char *err,
                       size_t errn) {
    if (gt_hf_towers4_check(v, a, 0, err, errn) || gt_mkdir_p(dir, err, errn)) return -1;
    gt_hf_towers4_out t;
    if (gt_hf_towers4_tensors(v, a, &t, err, errn)) return -1;
    char *path = gt_path_join(dir, "model.safetensors");
    static const char *const meta[] = {"format", "pt", NULL};
    int rc = path ? gt_st_write(path, t.e, t.n, GT_ST_F32, meta, err, errn) : gt_errf(err, errn, "hf save: out of memory");
    free(path);
    gt_hf_towers4_out_free(&t);
    json_t *o = rc ? NULL : gt_hf_towers4_config(NULL, v, a, NULL, false);
    char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    path = gt_path_join(dir, "config.json");
    if (!rc) rc = text && path ? gt_write_file_atomic(path, text, strlen(text), err, errn)
                               : gt_errf(err, errn, "hf save: out of memory");
    free(text), free(path);
    return rc;
}
