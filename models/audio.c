/* audio.c: Gemma 4 audio encoder (contract in audio.h). */
#include "models/audio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/param_bank.h"
#include "util/err.h"

#define CLIP_F16 65504.0 /* KerasHub's initial clip bounds (the fp16 range) */

void gt_audio_enc_defaults(gt_audio_enc_config *c, int64_t text_hidden) {
    *c = (gt_audio_enc_config){.input_feat_size = 128, .hidden = 1024, .num_heads = 8,
                               .num_layers = 12, .chunk = 12, .context_left = 13,
                               .context_right = 0, .logit_cap = 50.0, .conv_kernel = 5,
                               .residual_weight = 0.5, .gradient_clipping = 1e10,
                               .sscp_channels = {128, 32}, .output_proj_dims = 1536,
                               .output_dim = text_hidden, .norm_eps = 1e-6, .sscp_norm_eps = 1e-6};
}

int gt_audio_enc_preset(const char *name, gt_audio_enc_config *c, char *err, size_t errn) {
    /* E2B and E4B share the USM tower; only the projection into the text width differs. KerasHub
     * spells the instruction-tuned presets gemma4_instruct_2b / gemma4_instruct_4b. */
    if (!strcmp(name, "gemma4_2b") || !strcmp(name, "gemma4_instruct_2b")) gt_audio_enc_defaults(c, 1536);
    else if (!strcmp(name, "gemma4_4b") || !strcmp(name, "gemma4_instruct_4b")) gt_audio_enc_defaults(c, 2560);
    else
        return gt_errf(err, errn, "%s: no audio encoder (audio presets: gemma4_2b, gemma4_4b and "
                       "their gemma4_instruct_ forms)", name);
    return 0;
}

/* Frequency bins after one 3x3 stride-2 conv with (1, 1) padding. */
static int64_t sscp_f(int64_t f) { return (f + 2 - 3) / 2 + 1; }

int gt_audio_enc_validate(const gt_audio_enc_config *c, char *err, size_t errn) {
    if (c->input_feat_size < 1 || c->hidden < 1 || c->num_heads < 1 || c->num_layers < 0 ||
        c->chunk < 1 || c->context_left < 2 || c->context_right < 0 || c->conv_kernel < 1 ||
        c->sscp_channels[0] < 1 || c->sscp_channels[1] < 1 || c->output_proj_dims < 0 ||
        c->output_dim < 1)
        return gt_errf(err, errn, "audio encoder: sizes must be positive (context_left >= 2)");
    if (c->hidden % c->num_heads || c->hidden % 2)
        return gt_errf(err, errn, "audio encoder: hidden %lld must be even and divisible by "
                       "num_heads %lld", (long long)c->hidden, (long long)c->num_heads);
    if (!(c->logit_cap > 0) || !(c->norm_eps > 0) || !(c->sscp_norm_eps > 0) ||
        !(c->gradient_clipping > 0))
        return gt_errf(err, errn, "audio encoder: logit_cap, norm_eps, sscp_norm_eps and "
                                  "gradient_clipping must be positive");
    return 0;
}

/* ---------------------------------------------------------------- parameter walk */

typedef struct {
    gt_pbank b;
    gt_audio_enc *m; /* NULL: count only */
} walk_t;

static gt_tensor *add(walk_t *w, const char *name, int nd, int64_t a, int64_t b, int64_t c,
                      int64_t d, bool trainable) {
    int64_t shape[4] = {a, b, c, d};
    return gt_pbank_add(&w->b, name, nd, shape, trainable);
}

static gt_tensor *norm(walk_t *w, const char *pfx, const char *what, int64_t d) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s", pfx, what);
    gt_tensor *t = add(w, name, 1, d, 0, 0, 0, false);
    for (int64_t i = 0; t && i < d; i++) t->data[i] = 1;
    return t;
}

static gt_audio_dense dense(walk_t *w, const char *pfx, const char *what, int64_t in, int64_t out) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s", pfx, what);
    gt_audio_dense dd = {add(w, name, 2, in, out, 0, 0, true), NULL};
    snprintf(name, sizeof name, "%s.%s.clip", pfx, what);
    dd.clip = add(w, name, 1, 4, 0, 0, 0, false);
    if (dd.clip) {
        const double b[4] = {-CLIP_F16, CLIP_F16, -CLIP_F16, CLIP_F16};
        for (int i = 0; i < 4; i++) dd.clip->data[i] = (gt_real)b[i];
    }
    return dd;
}

static void walk_layer(walk_t *w, const gt_audio_enc_config *c, int i, gt_audio_layer *L) {
    char p[64];
    int64_t D = c->hidden;
    for (int e = 0; e < 2; e++) {
        snprintf(p, sizeof p, "conformer_%d.%s", i, e ? "ffw_end" : "ffw_start");
        L->ffw_pre[e] = norm(w, p, "pre_norm", D);
        L->ffw1[e] = dense(w, p, "ffw_1", D, 4 * D);
        L->ffw2[e] = dense(w, p, "ffw_2", 4 * D, D);
        L->ffw_post[e] = norm(w, p, "post_norm", D);
        if (e == 1) break;
        snprintf(p, sizeof p, "conformer_%d.attn", i);
        L->attn_pre = norm(w, p, "pre_norm", D);
        char name[96];
        snprintf(name, sizeof name, "%s.per_dim_scale", p);
        L->per_dim_scale = add(w, name, 1, D / c->num_heads, 0, 0, 0, true);
        L->q = dense(w, p, "q", D, D);
        L->k = dense(w, p, "k", D, D);
        L->v = dense(w, p, "v", D, D);
        snprintf(name, sizeof name, "%s.pos_proj", p);
        L->pos_proj = add(w, name, 2, D, D, 0, 0, true);
        L->o = dense(w, p, "out_proj", D, D);
        L->attn_post = norm(w, p, "post_norm", D);
        snprintf(p, sizeof p, "conformer_%d.lconv", i);
        L->lconv_pre = norm(w, p, "pre_norm", D);
        L->lin_start = dense(w, p, "linear_start", D, 2 * D);
        snprintf(name, sizeof name, "%s.depthwise", p);
        L->dw = add(w, name, 2, c->conv_kernel, D, 0, 0, true);
        L->conv_norm = norm(w, p, "conv_norm", D);
        L->lin_end = dense(w, p, "linear_end", D, D);
    }
    snprintf(p, sizeof p, "conformer_%d", i);
    L->norm = norm(w, p, "norm", D);
}

static void walk(walk_t *w, const gt_audio_enc_config *c) {
    gt_audio_enc *m = w->m, dummy;
    gt_audio_layer dl;
    if (!m) m = &dummy;
    int64_t c0 = c->sscp_channels[0], c1 = c->sscp_channels[1];
    m->conv0 = add(w, "sscp.conv_0", 4, 3, 3, 1, c0, true);
    m->norm0 = add(w, "sscp.norm_0", 1, c0, 0, 0, 0, true);
    m->conv1 = add(w, "sscp.conv_1", 4, 3, 3, c0, c1, true);
    m->norm1 = add(w, "sscp.norm_1", 1, c1, 0, 0, 0, true);
    for (int64_t i = 0; m->norm0 && i < c0; i++) m->norm0->data[i] = 1;
    for (int64_t i = 0; m->norm1 && i < c1; i++) m->norm1->data[i] = 1;
    int64_t f2 = sscp_f(sscp_f(c->input_feat_size));
    m->input_proj = add(w, "sscp.input_proj", 2, c1 * f2, c->hidden, 0, 0, true);
    for (int64_t i = 0; i < c->num_layers; i++)
        walk_layer(w, c, (int)i, w->m ? &m->layers[i] : &dl);
    int64_t pin = c->output_proj_dims ? c->output_proj_dims : c->hidden;
    m->out_proj_w = m->out_proj_b = NULL;
    if (c->output_proj_dims) {
        m->out_proj_w = add(w, "output_proj.kernel", 2, c->hidden, pin, 0, 0, true);
        m->out_proj_b = add(w, "output_proj.bias", 1, pin, 0, 0, 0, true);
    }
    m->embed_proj = add(w, "audio_output_projection", 2, pin, c->output_dim, 0, 0, true);
}

int64_t gt_audio_enc_param_count(const gt_audio_enc_config *c, bool trainable_only) {
    walk_t w = {.b = {.trainable_only = trainable_only}};
    walk(&w, c);
    return w.b.count;
}

int gt_audio_enc_init(gt_audio_enc *m, const gt_audio_enc_config *c, char *err, size_t errn) {
    memset(m, 0, sizeof *m);
    if (gt_audio_enc_validate(c, err, errn)) return -1;
    walk_t cnt = {0};
    walk(&cnt, c);
    m->cfg = *c;
    m->all = gt_pbank_alloc(cnt.b.n_tensors);
    m->layers = calloc((size_t)(c->num_layers ? c->num_layers : 1), sizeof *m->layers);
    if (!m->all || !m->layers) {
        gt_audio_enc_free(m);
        return gt_errf(err, errn, "audio encoder: out of memory");
    }
    walk_t w = {.b = {.all = m->all, .n_all = &m->n_all, .owner = "audio encoder", .err = err,
                      .errn = errn},
                .m = m};
    walk(&w, c);
    if (w.b.fail) {
        gt_audio_enc_free(m);
        return -1;
    }
    return 0;
}

void gt_audio_enc_free(gt_audio_enc *m) {
    gt_pbank_free(m->all, m->n_all);
    free(m->layers);
    memset(m, 0, sizeof *m);
}

gt_tensor *gt_audio_enc_param(const gt_audio_enc *m, const char *name) {
    return gt_pbank_find(m->all, m->n_all, name);
}

/* ---------------------------------------------------------------- forward */

static gt_tensor *clip(gt_ctx *ctx, gt_tensor *x, double b) { return gt_clamp(ctx, x, -b, b); }

static gt_tensor *lin(gt_ctx *ctx, gt_tensor *x, const gt_audio_dense *d) {
    const gt_real *b = d->clip->data;
    x = gt_clamp(ctx, x, b[0], b[1]);
    return gt_clamp(ctx, gt_matmul(ctx, x, d->w, false, false), b[2], b[3]);
}

static gt_tensor *rms(gt_ctx *ctx, gt_tensor *x, gt_tensor *s, double eps) {
    return gt_rmsnorm(ctx, x, s, eps, false);
}

static gt_tensor *ffw(gt_ctx *ctx, const gt_audio_enc_config *c, const gt_audio_layer *L, int e,
                      gt_tensor *x) {
    gt_tensor *h = rms(ctx, clip(ctx, x, c->gradient_clipping), L->ffw_pre[e], c->norm_eps);
    h = lin(ctx, gt_silu(ctx, lin(ctx, h, &L->ffw1[e])), &L->ffw2[e]);
    h = rms(ctx, clip(ctx, h, c->gradient_clipping), L->ffw_post[e], c->norm_eps);
    return gt_add(ctx, x, gt_scale(ctx, h, c->residual_weight));
}

/* Sinusoids of relative positions max_past, ..., -max_future: [P, D] (sin half, cos half). */
static gt_tensor *rel_signal(gt_ctx *ctx, const gt_audio_enc_config *c) {
    int64_t P = c->context_left + c->context_right, D = c->hidden, half = D / 2;
    int64_t shape[2] = {P, D};
    gt_tensor *s = gt_empty(ctx, 2, shape);
    if (!s) return NULL;
    double inc = log(10000.0) / (double)(half > 1 ? half - 1 : 1);
    for (int64_t f = 0; f < P; f++) {
        double pos = (double)(c->context_left - 1 - f);
        for (int64_t i = 0; i < half; i++) {
            /* KerasHub keeps the timescales and the product in float32 */
            float a = (float)pos * (float)exp(-(double)i * inc);
            s->data[f * D + i] = (gt_real)sinf(a);
            s->data[f * D + half + i] = (gt_real)cosf(a);
        }
    }
    return s;
}

static gt_tensor *attention(gt_ctx *ctx, const gt_audio_enc_config *c, const gt_audio_layer *L,
                            gt_tensor *x, const uint8_t *valid, gt_tensor *sig) {
    int64_t B = x->shape[0], T = x->shape[1], N = c->num_heads, H = c->hidden / N;
    int64_t s4[4] = {B, T, N, H}, s3[3] = {c->context_left + c->context_right, N, H};
    gt_tensor *h = rms(ctx, clip(ctx, x, c->gradient_clipping), L->attn_pre, c->norm_eps);
    gt_tensor *q = gt_reshape(ctx, lin(ctx, h, &L->q), 4, s4);
    gt_tensor *k = gt_reshape(ctx, lin(ctx, h, &L->k), 4, s4);
    gt_tensor *v = gt_reshape(ctx, lin(ctx, h, &L->v), 4, s4);
    /* q (H^-0.5 / ln 2) softplus(per_dim_scale), k ln(1 + e) / ln 2, as KerasHub */
    q = gt_scale(ctx, gt_mul(ctx, q, gt_softplus(ctx, L->per_dim_scale)), pow((double)H, -0.5) / log(2.0));
    k = gt_scale(ctx, k, log(1.0 + exp(1.0)) / log(2.0));
    gt_tensor *rel = gt_reshape(ctx, gt_matmul(ctx, sig, L->pos_proj, false, false), 3, s3);
    gt_local_attn_cfg ac = {(int)c->chunk, (int)c->context_left - 1, (int)c->context_right,
                            c->logit_cap};
    gt_tensor *a = gt_local_attn(ctx, q, k, v, rel, valid, &ac);
    int64_t s3o[3] = {B, T, c->hidden};
    a = lin(ctx, gt_reshape(ctx, a, 3, s3o), &L->o);
    a = rms(ctx, clip(ctx, a, c->gradient_clipping), L->attn_post, c->norm_eps);
    return gt_add(ctx, x, a);
}

static gt_tensor *lconv(gt_ctx *ctx, const gt_audio_enc_config *c, const gt_audio_layer *L,
                        gt_tensor *x, gt_tensor *mask) {
    x = gt_mul(ctx, x, mask); /* padded steps zeroed before the convolution */
    gt_tensor *h = rms(ctx, x, L->lconv_pre, c->norm_eps);
    h = gt_dwconv1d_causal(ctx, gt_glu(ctx, lin(ctx, h, &L->lin_start)), L->dw);
    h = rms(ctx, clip(ctx, h, c->gradient_clipping), L->conv_norm, c->norm_eps);
    return gt_add(ctx, lin(ctx, gt_silu(ctx, h), &L->lin_end), x);
}

/* One SSCP block: conv (padded steps zeroed), LayerNorm over channels, ReLU; *valid is
 * replaced by the strided mask. */
static gt_tensor *sscp_block(gt_ctx *ctx, gt_tensor *x, gt_tensor *w, gt_tensor *g, double eps,
                             const uint8_t **valid) {
    gt_conv2d_cfg cc = {2, 2, 1, 1, 1, 1};
    gt_tensor *y = gt_conv2d_nhwc(ctx, x, w, &cc, *valid);
    if (!y) return NULL;
    int64_t B = x->shape[0], T = x->shape[1], To = y->shape[1];
    uint8_t *nv = gt_alloc(ctx, (size_t)(B * To));
    if (!nv) return NULL;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < To; t++) nv[b * To + t] = !*valid || (*valid)[b * T + 2 * t];
    *valid = nv;
    return gt_relu(ctx, gt_layernorm_nobias(ctx, y, g, eps));
}

gt_tensor *gt_audio_enc_forward(gt_ctx *ctx, const gt_audio_enc *m, gt_tensor *mel,
                                const uint8_t *valid, const uint8_t **out_valid) {
    const gt_audio_enc_config *c = &m->cfg;
    if (!gt_ok(ctx)) return NULL;
    if (!mel || mel->ndim != 3 || mel->shape[2] != c->input_feat_size)
        return gt_fail(ctx, GT_ERR_SHAPE, "audio encoder: mel %s, want [B, T, %lld]",
                       mel ? gt_shp(mel) : "NULL", (long long)c->input_feat_size);
    int64_t B = mel->shape[0], s4[4] = {B, mel->shape[1], c->input_feat_size, 1};
    gt_tensor *x = sscp_block(ctx, gt_reshape(ctx, mel, 4, s4), m->conv0, m->norm0,
                              c->sscp_norm_eps, &valid);
    x = sscp_block(ctx, x, m->conv1, m->norm1, c->sscp_norm_eps, &valid);
    if (!x) return NULL;
    int64_t T = x->shape[1], s3[3] = {B, T, x->shape[2] * x->shape[3]};
    x = gt_matmul(ctx, gt_reshape(ctx, x, 3, s3), m->input_proj, false, false);
    int64_t sm[3] = {B, T, c->hidden};
    gt_tensor *mask = gt_empty(ctx, 3, sm), *sig = rel_signal(ctx, c);
    if (!mask || !sig) return NULL;
    for (int64_t i = 0; i < mask->size; i++) mask->data[i] = (gt_real)valid[i / c->hidden];
    for (int64_t i = 0; i < c->num_layers; i++) {
        const gt_audio_layer *L = &m->layers[i];
        x = ffw(ctx, c, L, 0, x);
        x = attention(ctx, c, L, x, valid, sig);
        x = lconv(ctx, c, L, x, mask);
        x = ffw(ctx, c, L, 1, x);
        x = rms(ctx, clip(ctx, x, c->gradient_clipping), L->norm, c->norm_eps);
    }
    if (m->out_proj_w)
        x = gt_add(ctx, gt_matmul(ctx, x, m->out_proj_w, false, false), m->out_proj_b);
    x = gt_matmul(ctx, gt_rmsnorm(ctx, x, NULL, c->norm_eps, false), m->embed_proj, false, false);
    if (out_valid) *out_valid = valid;
    return x;
}
