#include "models/io/towers4_keras.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

#define VTOP "layers/gemma4_vision_encoder/layers/"
#define ATOP "layers/gemma4_audio_encoder/"

/* ---------------------------------------------------------------- config.json */

typedef struct {
    json_t *o;
    const char *file, *enc;
    char *err;
    size_t errn;
    int rc;
} cfg_rd;

static int64_t rd_int(cfg_rd *r, const char *key) {
    json_t *x = json_object_get(r->o, key);
    if (r->rc) return 0;
    if (!json_is_integer(x)) {
        r->rc = gt_errf(r->err, r->errn, "%s: config.%s.config.%s: missing or not an integer",
                        r->file, r->enc, key);
        return 0;
    }
    return json_integer_value(x);
}

static double rd_num(cfg_rd *r, const char *key, double dflt) {
    json_t *x = json_object_get(r->o, key);
    if (r->rc || !x || json_is_null(x)) return dflt;
    if (!json_is_number(x)) {
        r->rc = gt_errf(r->err, r->errn, "%s: config.%s.config.%s: not a number", r->file, r->enc,
                        key);
        return dflt;
    }
    return json_number_value(x);
}

static void refuse(cfg_rd *r, bool bad, const char *key, const char *why) {
    if (!r->rc && bad)
        r->rc = gt_errf(r->err, r->errn, "%s: config.%s.config.%s: %s", r->file, r->enc, key, why);
}

static void vision_cfg(cfg_rd *r, gt_vision4_config *c) {
    c->image_size = rd_int(r, "image_size");
    c->patch_size = rd_int(r, "patch_size");
    c->num_heads = rd_int(r, "num_heads");
    c->hidden = rd_int(r, "hidden_dim");
    c->num_layers = rd_int(r, "num_layers");
    c->intermediate = rd_int(r, "intermediate_dim");
    c->head_dim = rd_int(r, "head_dim");
    c->output_dim = rd_int(r, "output_dim");
    c->num_kv_heads = rd_int(r, "num_key_value_heads");
    c->pool_size = rd_int(r, "pool_size");
    c->pos_table = rd_int(r, "position_embedding_size");
    c->rope_base = rd_num(r, "rope_max_wavelength", 100.0);
    c->eps = rd_num(r, "layer_norm_epsilon", 1e-6);
    json_t *clip = json_object_get(r->o, "use_clipped_linears");
    c->clipped = json_is_true(clip);
    refuse(r, clip && !json_is_boolean(clip), "use_clipped_linears", "not a boolean");
    refuse(r, json_is_true(json_object_get(r->o, "standardize")), "standardize",
           "true is not supported (the 26B/31B towers' output standardisation)");
}

/* [[3, 3], [3, 3]] and [[2, 2], [2, 2]]: the only subsampling models/audio.c implements. */
static bool pairs_are(json_t *a, int v) {
    if (!a || json_is_null(a)) return true;
    if (!json_is_array(a) || json_array_size(a) != 2) return false;
    for (size_t i = 0; i < 2; i++) {
        json_t *p = json_array_get(a, i);
        if (!json_is_array(p) || json_array_size(p) != 2) return false;
        for (size_t j = 0; j < 2; j++)
            if (json_integer_value(json_array_get(p, j)) != v) return false;
    }
    return true;
}

static void audio_cfg(cfg_rd *r, gt_audio_enc_config *c) {
    gt_audio_enc_defaults(c, 1);
    c->input_feat_size = rd_int(r, "input_feat_size");
    c->hidden = rd_int(r, "hidden_size");
    c->num_heads = rd_int(r, "num_heads");
    c->num_layers = rd_int(r, "num_layers");
    c->chunk = rd_int(r, "chunk_size");
    c->context_left = rd_int(r, "context_left");
    c->context_right = rd_int(r, "context_right");
    c->logit_cap = rd_num(r, "logit_cap", c->logit_cap);
    c->conv_kernel = rd_int(r, "conv_kernel_size");
    c->residual_weight = rd_num(r, "residual_weight", c->residual_weight);
    c->gradient_clipping = rd_num(r, "gradient_clipping", c->gradient_clipping);
    c->output_dim = rd_int(r, "output_dim");
    c->norm_eps = rd_num(r, "norm_eps", c->norm_eps);
    c->sscp_norm_eps = rd_num(r, "sscp_norm_eps", c->sscp_norm_eps);
    json_t *opd = json_object_get(r->o, "output_proj_dims");
    c->output_proj_dims = json_is_integer(opd) ? json_integer_value(opd) : 0;
    refuse(r, opd && !json_is_null(opd) && !json_is_integer(opd), "output_proj_dims",
           "not an integer or null");
    json_t *ch = json_object_get(r->o, "sscp_conv_channels");
    refuse(r, !json_is_array(ch) || json_array_size(ch) != 2, "sscp_conv_channels",
           "must be two integers");
    if (!r->rc)
        for (size_t i = 0; i < 2; i++) c->sscp_channels[i] = json_integer_value(json_array_get(ch, i));
    refuse(r, !pairs_are(json_object_get(r->o, "sscp_kernel_sizes"), 3), "sscp_kernel_sizes",
           "only [[3, 3], [3, 3]] is supported");
    refuse(r, !pairs_are(json_object_get(r->o, "sscp_stride_sizes"), 2), "sscp_stride_sizes",
           "only [[2, 2], [2, 2]] is supported");
    json_t *red = json_object_get(r->o, "reduction_factor");
    refuse(r, red && json_integer_value(red) != 1, "reduction_factor", "only 1 is supported");
}

int gt_towers4_keras_config(const char *dir, gt_vision4_config *vc, bool *has_vision,
                            gt_audio_enc_config *ac, bool *has_audio, char *err, size_t errn) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (has_vision) *has_vision = false;
    if (has_audio) *has_audio = false;
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        return gt_errf(err, errn, "%s:%d:%d: %s", path, je.line, je.column,
                       gt_err_printable(je.text));
    json_t *top = json_object_get(j, "config");
    cfg_rd r = {NULL, path, "vision_encoder", err, errn, 0};
    json_t *enc = json_object_get(top, "vision_encoder");
    char e[300];
    if (vc && enc && !json_is_null(enc)) {
        r.o = json_object_get(enc, "config");
        vision_cfg(&r, vc);
        if (!r.rc && gt_vision4_validate(vc, e, sizeof e))
            r.rc = gt_errf(err, errn, "%s: config.vision_encoder: %s", path, e);
        if (!r.rc && has_vision) *has_vision = true;
    }
    enc = json_object_get(top, "audio_encoder");
    if (!r.rc && ac && enc && !json_is_null(enc)) {
        r.enc = "audio_encoder";
        r.o = json_object_get(enc, "config");
        audio_cfg(&r, ac);
        if (!r.rc && gt_audio_enc_validate(ac, e, sizeof e))
            r.rc = gt_errf(err, errn, "%s: config.audio_encoder: %s", path, e);
        if (!r.rc && has_audio) *has_audio = true;
    }
    json_decref(j);
    return r.rc;
}

/* ---------------------------------------------------------------- tensor paths */

enum { K_VAR, K_DENSE, K_QKV }; /* vars/<idx>; <layer>/dense/vars/0; the same, transposed */

typedef struct {
    const char *ours, *keras;
    int kind;
} map_row;

static const map_row vision_rows[] = {
    {"pre_attn_norm", "pre_attention_norm", K_VAR}, {"post_attn_norm", "post_attention_norm", K_VAR},
    {"pre_ffw_norm", "pre_ffw_norm", K_VAR},        {"post_ffw_norm", "post_ffw_norm", K_VAR},
    {"q_norm", "attention/query_norm", K_VAR},      {"k_norm", "attention/key_norm", K_VAR},
    {"q", "attention/query_dense", K_QKV},          {"k", "attention/key_dense", K_QKV},
    {"v", "attention/value_dense", K_QKV},          {"o", "attention/output_dense", K_DENSE},
    {"gate", "gating_ffw", K_DENSE},                {"up", "gating_ffw_2", K_DENSE},
    {"down", "ffw_linear", K_DENSE},
};

static const map_row audio_rows[] = {
    {"ffw_start.pre_norm", "ffw_start/pre_norm", K_VAR},
    {"ffw_start.ffw_1", "ffw_start/ffw_1", K_DENSE},
    {"ffw_start.ffw_2", "ffw_start/ffw_2", K_DENSE},
    {"ffw_start.post_norm", "ffw_start/post_norm", K_VAR},
    {"ffw_end.pre_norm", "ffw_end/pre_norm", K_VAR},
    {"ffw_end.ffw_1", "ffw_end/ffw_1", K_DENSE},
    {"ffw_end.ffw_2", "ffw_end/ffw_2", K_DENSE},
    {"ffw_end.post_norm", "ffw_end/post_norm", K_VAR},
    {"attn.pre_norm", "attention/pre_attn_norm", K_VAR},
    {"attn.per_dim_scale", "attention/attn", K_VAR},
    {"attn.q", "attention/attn/q_proj", K_DENSE},
    {"attn.k", "attention/attn/k_proj", K_DENSE},
    {"attn.v", "attention/attn/v_proj", K_DENSE},
    {"attn.pos_proj", "attention/attn/rpe", K_VAR},
    {"attn.out_proj", "attention/out_proj", K_DENSE},
    {"attn.post_norm", "attention/post_norm", K_VAR},
    {"lconv.pre_norm", "lconv/pre_norm", K_VAR},
    {"lconv.linear_start", "lconv/linear_start", K_DENSE},
    {"lconv.depthwise", "lconv/depthwise_conv", K_VAR},
    {"lconv.conv_norm", "lconv/conv_norm", K_VAR},
    {"lconv.linear_end", "lconv/linear_end", K_DENSE},
    {"norm", "norm", K_VAR},
};

static const map_row audio_top[] = {
    {"sscp.conv_0", "layers/gemma4_audio_sub_sample_conv_projection/conv_0/conv", K_VAR},
    {"sscp.norm_0", "layers/gemma4_audio_sub_sample_conv_projection/conv_0/norm", K_VAR},
    {"sscp.conv_1", "layers/gemma4_audio_sub_sample_conv_projection/conv_1/conv", K_VAR},
    {"sscp.norm_1", "layers/gemma4_audio_sub_sample_conv_projection/conv_1/norm", K_VAR},
    {"sscp.input_proj", "layers/gemma4_audio_sub_sample_conv_projection/input_proj", K_VAR},
    {"output_proj.kernel", "layers/dense", K_VAR},
    {"audio_output_projection", "audio_output_projection", K_VAR},
};

static const map_row *find_row(const map_row *t, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].ours, name)) return &t[i];
    return NULL;
}

/* Our tensor name -> the Keras layer directory (*kind, *clip: the name ends in ".clip", *idx:
 * the vars index); -1 for a name with no place (a bug: every walk name is listed). */
static int keras_layer(bool vision, const char *name, char *out, size_t n, int *kind,
                       bool *clip, int *idx) {
    char base[128];
    snprintf(base, sizeof base, "%s", name);
    size_t len = strlen(base);
    *clip = len > 5 && !strcmp(base + len - 5, ".clip");
    if (*clip) base[len - 5] = 0;
    *idx = 0;
    int blk, off = 0;
    const char *fmt = vision ? "block_%d.%n" : "conformer_%d.%n";
    if (sscanf(base, fmt, &blk, &off) == 1 && off > 0) {
        const map_row *r = vision ? find_row(vision_rows, sizeof vision_rows / sizeof *vision_rows, base + off)
                                  : find_row(audio_rows, sizeof audio_rows / sizeof *audio_rows, base + off);
        if (!r) return -1;
        char bdir[200];
        if (vision)
            snprintf(bdir, sizeof bdir, VTOP "gemma4_vision_encoder_block/encoder_blocks/gemma4_vision_decoder_block");
        else
            snprintf(bdir, sizeof bdir, ATOP "conformer_blocks/gemma4_audio_conformer_block");
        char num[16] = "";
        if (blk) snprintf(num, sizeof num, "_%d", blk);
        snprintf(out, n, "%s%s/%s", bdir, num, r->keras);
        *kind = r->kind;
        return 0;
    }
    if (vision) {
        *kind = K_VAR;
        if (!strcmp(base, "patch.proj")) snprintf(out, n, VTOP "gemma4_vision_encoder_block/patch_embedder/input_proj");
        else if (!strcmp(base, "patch.pos")) snprintf(out, n, VTOP "gemma4_vision_encoder_block/patch_embedder");
        else if (!strcmp(base, "projection")) snprintf(out, n, VTOP "gemma4_vision_output/vision_input_projection");
        else return -1;
        return 0;
    }
    const map_row *r = find_row(audio_top, sizeof audio_top / sizeof *audio_top, base);
    if (!r && !strcmp(base, "output_proj.bias")) r = &audio_top[5], *idx = 1;
    if (!r) return -1;
    snprintf(out, n, ATOP "%s", r->keras);
    *kind = r->kind;
    return 0;
}

/* The shape Keras stores a (non-clip) tensor under. */
static int keras_shape(const gt_tensor *t, int kind, const char *name, int64_t hd, int64_t sh[4]) {
    size_t len = strlen(name);
    if (kind == K_QKV) { /* ours [D, N*H] -> (N, D, H) */
        sh[0] = t->shape[1] / hd, sh[1] = t->shape[0], sh[2] = hd;
        return 3;
    }
    if (hd && len >= 2 && !strcmp(name + len - 2, ".o")) { /* [N*H, D] -> (N, H, D) */
        sh[0] = t->shape[0] / hd, sh[1] = hd, sh[2] = t->shape[1];
        return 3;
    }
    for (int a = 0; a < t->ndim; a++) sh[a] = t->shape[a];
    if (strstr(name, ".depthwise")) { /* [K, D] -> (K, D, 1) */
        sh[2] = 1;
        return 3;
    }
    return t->ndim;
}

/* ---------------------------------------------------------------- reading and writing */

typedef struct {
    gt_h5 f;
    const char *file;
    bool vision;
    int64_t hd; /* vision head_dim (layout of q/k/v/o); 0 for audio */
    char *err;
    size_t errn;
} io_t;

static int read_ds(io_t *io, const char *h5, const char *name, const int64_t *want, int wn,
                   float **buf) {
    int nd;
    int64_t sh[8];
    if (!gt_h5_exists(io->f, h5))
        return gt_errf(io->err, io->errn, "%s: missing tensor %s (%s)", io->file, h5, name);
    if (gt_h5_read_f32(io->f, h5, buf, &nd, sh, io->err, io->errn)) return -1;
    bool ok = nd == wn;
    for (int a = 0; ok && a < nd; a++) ok = sh[a] == want[a];
    if (ok) return 0;
    free(*buf);
    return gt_errf(io->err, io->errn, "%s: %s (%s): shape does not fit config.json's encoder",
                   io->file, h5, name);
}

static int load_tensor(io_t *io, gt_tensor *t) {
    char dir[400], h5[460];
    int kind, idx;
    bool clip;
    if (keras_layer(io->vision, t->name, dir, sizeof dir, &kind, &clip, &idx))
        return gt_errf(io->err, io->errn, "%s: no KerasHub path for %s", io->file, t->name);
    float *buf;
    if (clip) { /* four scalars */
        for (int i = 0; i < 4; i++) {
            snprintf(h5, sizeof h5, "%s/vars/%d", dir, i);
            if (read_ds(io, h5, t->name, NULL, 0, &buf)) return -1;
            t->data[i] = buf[0];
            free(buf);
        }
        return 0;
    }
    int64_t sh[4];
    int nd = keras_shape(t, kind, t->name, io->hd, sh);
    snprintf(h5, sizeof h5, kind == K_VAR ? "%s/vars/%d" : "%s/dense/vars/%d", dir, idx);
    if (read_ds(io, h5, t->name, sh, nd, &buf)) return -1;
    if (kind == K_QKV) { /* (N, D, H) -> [D, N*H] */
        int64_t N = sh[0], D = sh[1], H = sh[2];
        for (int64_t n = 0; n < N; n++)
            for (int64_t d = 0; d < D; d++)
                for (int64_t h = 0; h < H; h++)
                    t->data[d * N * H + n * H + h] = buf[(n * D + d) * H + h];
    } else {
        for (int64_t i = 0; i < t->size; i++) t->data[i] = buf[i];
    }
    free(buf);
    return 0;
}

static int write_tensor(io_t *io, const gt_tensor *t, float *buf) {
    char dir[400], h5[460];
    int kind, idx;
    bool clip;
    if (keras_layer(io->vision, t->name, dir, sizeof dir, &kind, &clip, &idx))
        return gt_errf(io->err, io->errn, "%s: no KerasHub path for %s", io->file, t->name);
    if (clip) {
        for (int i = 0; i < 4; i++) {
            float v = (float)t->data[i];
            snprintf(h5, sizeof h5, "%s/vars/%d", dir, i);
            if (gt_h5_write_f32(io->f, h5, &v, 0, NULL, io->err, io->errn)) return -1;
        }
        return 0;
    }
    int64_t sh[4];
    int nd = keras_shape(t, kind, t->name, io->hd, sh);
    if (kind == K_QKV) {
        int64_t N = sh[0], D = sh[1], H = sh[2];
        for (int64_t n = 0; n < N; n++)
            for (int64_t d = 0; d < D; d++)
                for (int64_t h = 0; h < H; h++)
                    buf[(n * D + d) * H + h] = (float)t->data[d * N * H + n * H + h];
    } else {
        for (int64_t i = 0; i < t->size; i++) buf[i] = (float)t->data[i];
    }
    snprintf(h5, sizeof h5, kind == K_VAR ? "%s/vars/%d" : "%s/dense/vars/%d", dir, idx);
    return gt_h5_write_f32(io->f, h5, buf, nd, sh, io->err, io->errn);
}

static int load_all(io_t *io, gt_tensor **all, int n) {
    for (int i = 0; i < n; i++)
        if (load_tensor(io, all[i])) return -1;
    return 0;
}

int gt_towers4_keras_load(const char *dir, gt_vision4 *v, bool *has_vision, gt_audio_enc *a,
                          bool *has_audio, char *err, size_t errn) {
    gt_vision4_config vc;
    gt_audio_enc_config ac;
    bool hv = false, ha = false;
    if (v) memset(v, 0, sizeof *v);
    if (a) memset(a, 0, sizeof *a);
    if (gt_towers4_keras_config(dir, v ? &vc : NULL, &hv, a ? &ac : NULL, &ha, err, errn)) return -1;
    if (has_vision) *has_vision = hv;
    if (has_audio) *has_audio = ha;
    if (!hv && !ha) return 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/model.weights.h5", dir);
    io_t io = {0, path, true, 0, err, errn};
    if (gt_h5_open_read(path, &io.f, err, errn)) return -1;
    int rc = 0;
    if (hv) {
        io.hd = vc.head_dim;
        rc = gt_vision4_init(v, &vc, err, errn) || load_all(&io, v->all, v->n_all) ? -1 : 0;
    }
    if (!rc && ha) {
        io.vision = false, io.hd = 0;
        rc = gt_audio_enc_init(a, &ac, err, errn) || load_all(&io, a->all, a->n_all) ? -1 : 0;
    }
    gt_h5_close(io.f);
    if (rc) {
        if (hv) gt_vision4_free(v);
        if (ha) gt_audio_enc_free(a);
        if (has_vision) *has_vision = false;
        if (has_audio) *has_audio = false;
    }
    return rc;
}

static int write_all(io_t *io, gt_tensor *const *all, int n) {
    int64_t maxn = 1;
    for (int i = 0; i < n; i++) maxn = all[i]->size > maxn ? all[i]->size : maxn;
    float *buf = malloc(sizeof(float) * (size_t)maxn);
    if (!buf) return gt_errf(io->err, io->errn, "%s: out of memory", io->file);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) rc = write_tensor(io, all[i], buf);
    free(buf);
    return rc;
}

int gt_towers4_keras_write(gt_h5 f, const gt_vision4 *v, const gt_audio_enc *a, char *err,
                           size_t errn) {
    io_t io = {f, "model.weights.h5", true, v ? v->cfg.head_dim : 0, err, errn};
    if (v && write_all(&io, v->all, v->n_all)) return -1;
    io.vision = false, io.hd = 0;
    return a ? write_all(&io, a->all, a->n_all) : 0;
}

/* ---------------------------------------------------------------- config.json objects */

static json_t *wrap(const char *module, const char *cls, json_t *cfg) {
    char reg[96];
    snprintf(reg, sizeof reg, "keras_hub>%s", cls);
    return cfg ? json_pack("{s:s, s:s, s:o, s:s}", "module", module, "class_name", cls, "config",
                           cfg, "registered_name", reg)
               : NULL;
}

json_t *gt_towers4_keras_vision_json(const gt_vision4_config *c) {
    json_t *cfg = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:i, s:b, s:b}",
        "image_size", (json_int_t)c->image_size, "patch_size", (json_int_t)c->patch_size,
        "num_heads", (json_int_t)c->num_heads, "hidden_dim", (json_int_t)c->hidden, "num_layers",
        (json_int_t)c->num_layers, "intermediate_dim", (json_int_t)c->intermediate, "head_dim",
        (json_int_t)c->head_dim, "output_dim", (json_int_t)c->output_dim, "num_key_value_heads",
        (json_int_t)c->num_kv_heads, "pool_size", (json_int_t)c->pool_size,
        "position_embedding_size", (json_int_t)c->pos_table, "rope_max_wavelength", c->rope_base,
        "layer_norm_epsilon", c->eps, "dropout", 0, "use_clipped_linears", c->clipped,
        "standardize", 0);
    return wrap("keras_hub.src.models.gemma4.gemma4_vision_encoder", "Gemma4VisionEncoder", cfg);
}

json_t *gt_towers4_keras_audio_json(const gt_audio_enc_config *c) {
    json_t *cfg = json_pack(
        "{s:s, s:b, s:{s:s, s:s, s:{s:s}, s:n}, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I, "
        "s:i, s:f, s:f, s:[I, I], s:[[i, i], [i, i]], s:[[i, i], [i, i]], s:o, s:I, s:f, s:f}",
        "name", "gemma4_audio_encoder", "trainable", 1, "dtype", "module", "keras", "class_name",
        "DTypePolicy", "config", "name", "float32", "registered_name", "input_feat_size",
        (json_int_t)c->input_feat_size, "hidden_size", (json_int_t)c->hidden, "num_heads",
        (json_int_t)c->num_heads, "num_layers", (json_int_t)c->num_layers, "chunk_size",
        (json_int_t)c->chunk, "context_left", (json_int_t)c->context_left, "context_right",
        (json_int_t)c->context_right, "logit_cap", c->logit_cap, "invalid_logit_value", -1e9,
        "conv_kernel_size", (json_int_t)c->conv_kernel, "reduction_factor", 1, "residual_weight",
        c->residual_weight, "gradient_clipping", c->gradient_clipping, "sscp_conv_channels",
        (json_int_t)c->sscp_channels[0], (json_int_t)c->sscp_channels[1], "sscp_kernel_sizes", 3,
        3, 3, 3, "sscp_stride_sizes", 2, 2, 2, 2, "output_proj_dims",
        c->output_proj_dims ? json_integer(c->output_proj_dims) : json_null(), "output_dim",
        (json_int_t)c->output_dim, "norm_eps", c->norm_eps, "sscp_norm_eps", c->sscp_norm_eps);
    return wrap("keras_hub.src.models.gemma4.gemma4_audio_encoder", "Gemma4AudioEncoder", cfg);
}
