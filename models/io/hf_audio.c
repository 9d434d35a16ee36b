/* hf_audio.c: Gemma 4 audio tower from a Hugging Face directory (contract in hf_audio.h). */
#include "models/io/hf_audio.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/io/hf_tower4.h"
#include "models/io/safetensors.h"
#include "util/err.h"

static int get_int(json_t *o, const char *key, int64_t *v, const char *file, char *err, size_t errn) {
    json_t *x = json_object_get(o, key);
    if (!x) return 0; /* keep the default */
    if (!json_is_integer(x)) return gt_errf(err, errn, "%s: audio_config.%s must be an integer", file, key);
    *v = json_integer_value(x);
    return 0;
}

static int get_num(json_t *o, const char *key, double *v, const char *file, char *err, size_t errn) {
    json_t *x = json_object_get(o, key);
    if (!x) return 0;
    if (!json_is_number(x)) return gt_errf(err, errn, "%s: audio_config.%s must be a number", file, key);
    *v = json_number_value(x);
    return 0;
}

static int read_audio_config(json_t *a, gt_audio_enc_config *c, const char *file, char *err,
                             size_t errn) {
    json_t *ch = json_object_get(a, "subsampling_conv_channels");
    if (ch && (!json_is_array(ch) || json_array_size(ch) != 2 ||
               !json_is_integer(json_array_get(ch, 0)) || !json_is_integer(json_array_get(ch, 1))))
        return gt_errf(err, errn, "%s: audio_config.subsampling_conv_channels must be two integers", file);
    if (ch) {
        c->sscp_channels[0] = json_integer_value(json_array_get(ch, 0));
        c->sscp_channels[1] = json_integer_value(json_array_get(ch, 1));
    }
    c->input_feat_size = c->sscp_channels[0];
    if (get_int(a, "hidden_size", &c->hidden, file, err, errn) ||
        get_int(a, "num_attention_heads", &c->num_heads, file, err, errn) ||
        get_int(a, "num_hidden_layers", &c->num_layers, file, err, errn) ||
        get_int(a, "attention_chunk_size", &c->chunk, file, err, errn) ||
        get_int(a, "attention_context_left", &c->context_left, file, err, errn) ||
        get_int(a, "attention_context_right", &c->context_right, file, err, errn) ||
        get_int(a, "conv_kernel_size", &c->conv_kernel, file, err, errn) ||
        get_int(a, "output_proj_dims", &c->output_proj_dims, file, err, errn) ||
        get_num(a, "attention_logit_cap", &c->logit_cap, file, err, errn) ||
        get_num(a, "residual_weight", &c->residual_weight, file, err, errn) ||
        get_num(a, "gradient_clipping", &c->gradient_clipping, file, err, errn) ||
        get_num(a, "rms_norm_eps", &c->norm_eps, file, err, errn))
        return -1;
    c->sscp_norm_eps = c->norm_eps;
    json_t *clipped = json_object_get(a, "use_clipped_linears");
    if (clipped && !json_is_true(clipped))
        return gt_errf(err, errn, "%s: audio_config.use_clipped_linears false is not supported", file);
    return 0;
}

int gt_hf_audio_config(const char *dir, gt_audio_enc_config *c, char *err, size_t errn) {
    char file[1024];
    snprintf(file, sizeof file, "%s/config.json", dir);
    json_error_t je;
    json_t *root = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
    if (!root) return gt_errf(err, errn, "%s: %s", file, je.text);
    json_t *a = json_object_get(root, "audio_config"), *t = json_object_get(root, "text_config");
    json_t *hs = t ? json_object_get(t, "hidden_size") : NULL;
    int rc = -1;
    if (!json_is_object(a)) gt_errf(err, errn, "%s: no audio_config (not an audio model)", file);
    else if (!json_is_integer(hs)) gt_errf(err, errn, "%s: text_config.hidden_size missing", file);
    else {
        gt_audio_enc_defaults(c, json_integer_value(hs));
        rc = read_audio_config(a, c, file, err, errn);
        if (!rc) rc = gt_audio_enc_validate(c, err, errn);
    }
    json_decref(root);
    return rc;
}

/* Our per-layer names (after "conformer_N.") -> HF's (after "layers.N."); a clipped linear's
 * entry has no ".weight": its kernel is ".linear.weight", its bounds ".input_min" etc. */
static const gt_hf_t4_pair LAYER_MAP[] = {
    {"ffw_start.pre_norm", "feed_forward1.pre_layer_norm.weight"},
    {"ffw_start.post_norm", "feed_forward1.post_layer_norm.weight"},
    {"ffw_start.ffw_1", "feed_forward1.ffw_layer_1"}, {"ffw_start.ffw_2", "feed_forward1.ffw_layer_2"},
    {"ffw_end.pre_norm", "feed_forward2.pre_layer_norm.weight"},
    {"ffw_end.post_norm", "feed_forward2.post_layer_norm.weight"},
    {"ffw_end.ffw_1", "feed_forward2.ffw_layer_1"}, {"ffw_end.ffw_2", "feed_forward2.ffw_layer_2"},
    {"attn.pre_norm", "norm_pre_attn.weight"}, {"attn.post_norm", "norm_post_attn.weight"},
    {"attn.per_dim_scale", "self_attn.per_dim_scale"}, {"attn.q", "self_attn.q_proj"},
    {"attn.k", "self_attn.k_proj"}, {"attn.v", "self_attn.v_proj"},
    {"attn.out_proj", "self_attn.post"}, {"attn.pos_proj", "self_attn.relative_k_proj.weight"},
    {"lconv.pre_norm", "lconv1d.pre_layer_norm.weight"}, {"lconv.linear_start", "lconv1d.linear_start"},
    {"lconv.depthwise", "lconv1d.depthwise_conv1d.weight"}, {"lconv.conv_norm", "lconv1d.conv_norm.weight"},
    {"lconv.linear_end", "lconv1d.linear_end"}, {"norm", "norm_out.weight"},
};

static const gt_hf_t4_pair TOP_MAP[] = {
    {"sscp.conv_0", "model.audio_tower.subsample_conv_projection.layer0.conv.weight"},
    {"sscp.norm_0", "model.audio_tower.subsample_conv_projection.layer0.norm.weight"},
    {"sscp.conv_1", "model.audio_tower.subsample_conv_projection.layer1.conv.weight"},
    {"sscp.norm_1", "model.audio_tower.subsample_conv_projection.layer1.norm.weight"},
    {"sscp.input_proj", "model.audio_tower.subsample_conv_projection.input_proj_linear.weight"},
    {"output_proj.kernel", "model.audio_tower.output_proj.weight"},
    {"output_proj.bias", "model.audio_tower.output_proj.bias"},
    {"audio_output_projection", "model.embed_audio.embedding_projection.weight"},
};

static const gt_hf_t4_names NAMES = {TOP_MAP, LAYER_MAP, sizeof TOP_MAP / sizeof *TOP_MAP,
                                      sizeof LAYER_MAP / sizeof *LAYER_MAP, "conformer_",
                                      "model.audio_tower.layers."};

int gt_hf_audio_name(const char *ours, char *out, size_t n) { return gt_hf_t4_name(&NAMES, ours, out, n); }

/* Copy HF's src into t, changing the layout by t's rank: [in, out] <- (out, in);
 * [kt, kf, in, out] <- (out, in, kt, kf); the depthwise [K, D] <- (D, 1, K). */
static void relayout(gt_tensor *t, const float *src, bool depthwise) {
    int64_t *s = t->shape;
    if (t->ndim == 2 && depthwise) {
        for (int64_t k = 0; k < s[0]; k++)
            for (int64_t d = 0; d < s[1]; d++) t->data[k * s[1] + d] = src[d * s[0] + k];
    } else if (t->ndim == 2) {
        for (int64_t i = 0; i < s[0]; i++)
            for (int64_t o = 0; o < s[1]; o++) t->data[i * s[1] + o] = src[o * s[0] + i];
    } else if (t->ndim == 4) {
        for (int64_t a = 0; a < s[0]; a++)
            for (int64_t b = 0; b < s[1]; b++)
                for (int64_t ci = 0; ci < s[2]; ci++)
                    for (int64_t co = 0; co < s[3]; co++)
                        t->data[((a * s[1] + b) * s[2] + ci) * s[3] + co] =
                            src[((co * s[2] + ci) * s[0] + a) * s[1] + b];
    } else {
        for (int64_t i = 0; i < t->size; i++) t->data[i] = src[i];
    }
}

static int load_one(gt_st *st, gt_tensor *t, const char *dir, char *err, size_t errn) {
    char name[256];
    if (gt_hf_audio_name(t->name, name, sizeof name)) return gt_errf(err, errn, "%s: no HF name for %s", dir, t->name);
    if (gt_hf_t4_is_clip(t->name)) return gt_hf_t4_load_clip(st, t, name, dir, err, errn);
    const gt_st_tensor *s = gt_st_find(st, name);
    if (!s) return gt_errf(err, errn, "%s: missing tensor %s", dir, name);
    if (s->n_elements != t->size)
        return gt_errf(err, errn, "%s: %s has %lld values, the config implies %lld", dir, name,
                       (long long)s->n_elements, (long long)t->size);
    float *buf = malloc((size_t)s->n_elements * sizeof *buf);
    if (!buf) return gt_errf(err, errn, "%s: out of memory for %s", dir, name);
    int rc = gt_st_read_f32(s, buf, err, errn);
    if (!rc) relayout(t, buf, strstr(t->name, ".depthwise") != NULL);
    free(buf);
    return rc;
}

int gt_hf_audio_load(const char *dir, gt_audio_enc *m, char *err, size_t errn) {
    gt_audio_enc_config c;
    memset(m, 0, sizeof *m);
    if (gt_hf_audio_config(dir, &c, err, errn) || gt_audio_enc_init(m, &c, err, errn)) return -1;
    gt_st *st;
    if (gt_st_open(dir, &st, err, errn)) {
        gt_audio_enc_free(m);
        return -1;
    }
    int rc = 0;
    for (int i = 0; !rc && i < m->n_all; i++) rc = load_one(st, m->all[i], dir, err, errn);
    gt_st_close(st);
    if (rc) gt_audio_enc_free(m);
    return rc;
}
