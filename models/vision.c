#include "models/vision.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#include "util/err.h"

/* Shape symbols of the parameter table. */
enum { VD_NONE, VD_D, VD_I, VD_O, VD_P, VD_K };

typedef struct {
    const char *name; /* KerasHub path; per-layer rows under image_encoder/encoder_block_<i>/ */
    bool per_layer, ones;
    size_t slot;      /* offsetof in gt_vision_layer or gt_vision */
    int dims[2];
} vrow;

#define L(f) offsetof(gt_vision_layer, f)
#define G(f) offsetof(gt_vision, f)
static const vrow rows[] = {
    {"image_encoder/encoder_embeddings/embedding_conv/kernel", false, false, G(patch_w), {VD_D, VD_K}},
    {"image_encoder/encoder_embeddings/embedding_conv/bias", false, false, G(patch_b), {VD_D}},
    {"image_encoder/encoder_embeddings/position_embedding/embeddings", false, false, G(pos), {VD_P, VD_D}},
    {"layer_norm_1/gamma", true, true, L(ln1_g), {VD_D}},
    {"layer_norm_1/beta", true, false, L(ln1_b), {VD_D}},
    {"multi_head_attention/query_proj/kernel", true, false, L(q_w), {VD_D, VD_D}},
    {"multi_head_attention/query_proj/bias", true, false, L(q_b), {VD_D}},
    {"multi_head_attention/key_proj/kernel", true, false, L(k_w), {VD_D, VD_D}},
    {"multi_head_attention/key_proj/bias", true, false, L(k_b), {VD_D}},
    {"multi_head_attention/value_proj/kernel", true, false, L(v_w), {VD_D, VD_D}},
    {"multi_head_attention/value_proj/bias", true, false, L(v_b), {VD_D}},
    {"multi_head_attention/out_proj/kernel", true, false, L(o_w), {VD_D, VD_D}},
    {"multi_head_attention/out_proj/bias", true, false, L(o_b), {VD_D}},
    {"layer_norm_2/gamma", true, true, L(ln2_g), {VD_D}},
    {"layer_norm_2/beta", true, false, L(ln2_b), {VD_D}},
    {"mlp_dense_1/kernel", true, false, L(fc1_w), {VD_I, VD_D}},
    {"mlp_dense_1/bias", true, false, L(fc1_b), {VD_I}},
    {"mlp_dense_2/kernel", true, false, L(fc2_w), {VD_D, VD_I}},
    {"mlp_dense_2/bias", true, false, L(fc2_b), {VD_D}},
    {"image_encoder/encoder_layer_norm/gamma", false, true, G(post_g), {VD_D}},
    {"image_encoder/encoder_layer_norm/beta", false, false, G(post_b), {VD_D}},
    {"vision_output_encoder/vision_soft_embedding_norm/scale", false, false, G(soft_norm), {VD_D}},
    {"vision_output_encoder/vision_input_projection/kernel", false, false, G(proj), {VD_O, VD_D}},
};
#undef L
#undef G
#define N_ROWS (sizeof rows / sizeof *rows)

static int64_t dim_of(const gt_vision_config *c, int d) {
    int64_t w = c->image_size / c->patch_size;
    switch (d) {
    case VD_D: return c->hidden_dim;
    case VD_I: return c->intermediate_dim;
    case VD_O: return c->output_dim;
    case VD_P: return w * w;
    case VD_K: return c->patch_size * c->patch_size * 3;
    default: return 1;
    }
}

void gt_vision_free(gt_vision *v) {
    if (!v) return;
    for (int64_t i = 0; i < v->n_params; i++) gt_tensor_free(v->params[i]);
    for (int64_t i = 0; i < v->n_lora; i++) gt_tensor_free(v->lora[i]);
    free(v->lora);
    free(v->params);
    free(v->layers);
    free(v);
}

/* One tensor of row r (layer li for per-layer rows), named and put in its slot. */
static gt_tensor *make_param(gt_vision *v, const vrow *r, int64_t li, bool trainable) {
    int64_t shape[2] = {dim_of(&v->cfg, r->dims[0]), dim_of(&v->cfg, r->dims[1])};
    gt_tensor *t = gt_tensor_new(r->dims[1] ? 2 : 1, shape, trainable);
    if (!t) return NULL;
    char name[96];
    if (r->per_layer) snprintf(name, sizeof name, "image_encoder/encoder_block_%lld/%s", (long long)li, r->name);
    else snprintf(name, sizeof name, "%s", r->name);
    gt_tensor_set_name(t, name);
    if (r->ones)
        for (int64_t j = 0; j < t->size; j++) t->data[j] = 1;
    char *base = r->per_layer ? (char *)&v->layers[li] : (char *)v;
    *(gt_tensor **)(base + r->slot) = t;
    return t;
}

int gt_vision_create(const gt_vision_config *c, bool trainable, gt_vision **out, char *err,
                     size_t errn) {
    *out = NULL;
    if (gt_vision_config_check(c, err, errn)) return -1;
    gt_vision *v = calloc(1, sizeof *v);
    int64_t total = 0;
    for (size_t i = 0; i < N_ROWS; i++) total += rows[i].per_layer ? c->num_layers : 1;
    if (v) {
        v->cfg = *c;
        v->layers = calloc((size_t)c->num_layers, sizeof *v->layers);
        v->params = calloc((size_t)total, sizeof *v->params);
    }
    if (!v || !v->layers || !v->params) {
        gt_vision_free(v);
        return gt_errf(err, errn, "vision encoder: out of memory");
    }
    /* storage order: the globals before the blocks, the blocks, then the globals after */
    for (size_t i = 0; i < N_ROWS; i++) {
        if (rows[i].per_layer && i > 0 && rows[i - 1].per_layer) continue;
        size_t end = i;
        while (end < N_ROWS && rows[end].per_layer == rows[i].per_layer) end++;
        for (int64_t li = 0; li < (rows[i].per_layer ? c->num_layers : 1); li++)
            for (size_t k = i; k < end; k++) {
                gt_tensor *t = make_param(v, &rows[k], li, trainable);
                if (!t) {
                    gt_vision_free(v);
                    return gt_errf(err, errn, "vision encoder: out of memory for %s", rows[k].name);
                }
                v->params[v->n_params++] = t;
            }
        i = end - 1;
    }
    *out = v;
    return 0;
}

gt_tensor *gt_vision_find(const gt_vision *v, const char *name) {
    for (int64_t i = 0; i < v->n_params; i++)
        if (strcmp(v->params[i]->name, name) == 0) return v->params[i];
    return NULL;
}

static gt_tensor *lora_new(gt_vision *v, int64_t li, int k, bool is_a, int64_t rank, uint64_t *seed) {
    static const char *const proj[4] = {"query", "key", "value", "out"};
    int64_t d = v->cfg.hidden_dim, shape[2] = {is_a ? d : rank, is_a ? rank : d};
    gt_tensor *t = gt_tensor_new(2, shape, true);
    if (!t) return NULL;
    char name[128];
    snprintf(name, sizeof name, "image_encoder/encoder_block_%lld/multi_head_attention/%s_proj/lora_kernel_%c",
             (long long)li, proj[k], is_a ? 'a' : 'b');
    gt_tensor_set_name(t, name);
    double lim = sqrt(6.0 / (double)d); /* He-uniform over the input width */
    for (int64_t j = 0; j < t->size; j++) {
        uint64_t z = (*seed += 0x9E3779B97F4A7C15ull); /* splitmix64 */
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        t->data[j] = is_a ? (gt_real)(lim * (2.0 * (double)(z >> 11) / 9007199254740992.0 - 1.0)) : 0;
    }
    (is_a ? v->layers[li].lora_a : v->layers[li].lora_b)[k] = t;
    return t;
}

int gt_vision_lora_create(gt_vision *v, int64_t rank, double alpha, uint64_t seed, char *err, size_t errn) {
    if (v->lora) return gt_errf(err, errn, "vision encoder: LoRA adapters exist already");
    int64_t n = v->cfg.num_layers * 8;
    if (!(v->lora = calloc((size_t)n, sizeof *v->lora))) return gt_errf(err, errn, "vision encoder: out of memory");
    v->lora_scale = alpha / (double)rank;
    for (int64_t li = 0; li < v->cfg.num_layers; li++)
        for (int k = 0; k < 8; k++) {
            gt_tensor *t = lora_new(v, li, k % 4, k < 4, rank, &seed);
            if (!t) return gt_errf(err, errn, "vision encoder: out of memory for LoRA");
            v->lora[v->n_lora++] = t;
        }
    return 0;
}

void gt_vision_merged(const gt_vision *v, const gt_tensor *t, float *dst) {
    for (int64_t i = 0; i < t->size; i++) dst[i] = (float)t->data[i];
    for (int64_t li = 0; li < v->cfg.num_layers; li++) {
        const gt_vision_layer *ly = &v->layers[li];
        const gt_tensor *w[4] = {ly->q_w, ly->k_w, ly->v_w, ly->o_w};
        for (int k = 0; k < 4; k++) {
            if (w[k] != t || !ly->lora_a[k]) continue;
            const gt_tensor *a = ly->lora_a[k], *b = ly->lora_b[k]; /* [in, r], [r, out] */
            int64_t out = t->shape[0], in = t->shape[1], r = a->shape[1];
            for (int64_t o = 0; o < out; o++)
                for (int64_t i = 0; i < in; i++) {
                    double s = 0;
                    for (int64_t j = 0; j < r; j++) s += (double)a->data[i * r + j] * b->data[j * out + o];
                    dst[o * in + i] += (float)(v->lora_scale * s);
                }
        }
    }
}

/* ---------------------------------------------------------------- forward */

static gt_tensor *linear(gt_ctx *ctx, gt_tensor *x, gt_tensor *w, gt_tensor *b) {
    gt_tensor *y = gt_matmul(ctx, x, w, false, true);
    return b ? gt_add(ctx, y, b) : y;
}

/* Patches as rows: [n, W*W, p*p*3], each patch's pixels in (row, column, channel) order, the
 * layout of a Keras conv kernel (p, p, 3, hidden) flattened over its first three axes. */
static gt_tensor *patches(gt_ctx *ctx, const gt_vision_config *c, const float *img, int64_t n) {
    int64_t s = c->image_size, p = c->patch_size, w = s / p, k = p * p * 3;
    int64_t shape[3] = {n, w * w, k};
    gt_tensor *t = gt_empty(ctx, 3, shape);
    if (!t) return NULL;
    for (int64_t b = 0; b < n; b++)
        for (int64_t pi = 0; pi < w; pi++)
            for (int64_t pj = 0; pj < w; pj++) {
                gt_real *dst = t->data + ((b * w + pi) * w + pj) * k;
                for (int64_t u = 0; u < p; u++) {
                    const float *src = img + ((b * s + pi * p + u) * s + pj * p) * 3;
                    for (int64_t j = 0; j < p * 3; j++) dst[u * p * 3 + j] = (gt_real)src[j];
                }
            }
    return t;
}

/* A projection with its LoRA adapter k of layer ly (when there is one). */
static gt_tensor *proj_lora(gt_ctx *ctx, const gt_vision *v, const gt_vision_layer *ly, int k, gt_tensor *x,
                            gt_tensor *w, gt_tensor *b) {
    gt_tensor *y = linear(ctx, x, w, b);
    if (!ly->lora_a[k]) return y;
    gt_tensor *d = gt_matmul(ctx, gt_matmul(ctx, x, ly->lora_a[k], false, false), ly->lora_b[k], false, false);
    return gt_add(ctx, y, gt_scale(ctx, d, v->lora_scale));
}

static gt_tensor *attention(gt_ctx *ctx, const gt_vision *v, const gt_vision_layer *ly,
                            gt_tensor *x) {
    const gt_vision_config *c = &v->cfg;
    int64_t n = x->shape[0], t = x->shape[1], hd = c->hidden_dim / c->num_heads;
    int64_t sh[4] = {n, t, c->num_heads, hd}, flat[3] = {n, t, c->hidden_dim};
    gt_tensor *q = gt_reshape(ctx, proj_lora(ctx, v, ly, 0, x, ly->q_w, ly->q_b), 4, sh);
    gt_tensor *k = gt_reshape(ctx, proj_lora(ctx, v, ly, 1, x, ly->k_w, ly->k_b), 4, sh);
    gt_tensor *val = gt_reshape(ctx, proj_lora(ctx, v, ly, 2, x, ly->v_w, ly->v_b), 4, sh);
    gt_attn_cfg ac = {.scale = 1.0 / sqrt((double)hd), .causal = false};
    gt_tensor *a = gt_reshape(ctx, gt_attention(ctx, q, k, val, &ac), 3, flat);
    return proj_lora(ctx, v, ly, 3, a, ly->o_w, ly->o_b);
}

static gt_tensor *block(gt_ctx *ctx, const gt_vision *v, const gt_vision_layer *ly, gt_tensor *x) {
    double eps = v->cfg.layer_norm_epsilon;
    gt_scope s = gt_scope_begin(ctx);
    gt_tensor *h = attention(ctx, v, ly, gt_layernorm(ctx, x, ly->ln1_g, ly->ln1_b, eps));
    x = gt_add(ctx, x, h);
    h = gt_layernorm(ctx, x, ly->ln2_g, ly->ln2_b, eps);
    h = linear(ctx, gt_gelu(ctx, linear(ctx, h, ly->fc1_w, ly->fc1_b)), ly->fc2_w, ly->fc2_b);
    x = gt_add(ctx, x, h);
    return gt_scope_end(ctx, s, &x, 1);
}

gt_tensor *gt_vision_encode(gt_ctx *ctx, const gt_vision *v, const float *images, int64_t n) {
    if (!gt_ok(ctx)) return NULL;
    if (!v || !images || n < 1)
        return gt_fail(ctx, GT_ERR_ARG, "vision encode: %s", n < 1 ? "no images" : "NULL input");
    const gt_vision_config *c = &v->cfg;
    gt_tensor *x = linear(ctx, patches(ctx, c, images, n), v->patch_w, v->patch_b);
    x = gt_add(ctx, x, v->pos);
    for (int64_t i = 0; i < c->num_layers; i++) x = block(ctx, v, &v->layers[i], x);
    x = gt_layernorm(ctx, x, v->post_g, v->post_b, c->layer_norm_epsilon);
    x = gt_avgpool2d(ctx, x, c->image_size / c->patch_size, c->pool_size);
    x = gt_rmsnorm(ctx, x, v->soft_norm, c->layer_norm_epsilon, true);
    return gt_matmul(ctx, x, v->proj, false, true);
}

void gt_vision_span_ends(const uint8_t *vision_mask, int64_t B, int64_t T, int32_t *end) {
    for (int64_t b = 0; b < B; b++) {
        const uint8_t *vm = vision_mask + b * T;
        int32_t *e = end + b * T;
        for (int64_t t = T - 1, run_end = 0; t >= 0; t--) {
            if (!vm[t]) {
                e[t] = 0;
                continue;
            }
            if (t == T - 1 || !vm[t + 1]) run_end = t + 1;
            e[t] = (int32_t)run_end;
        }
    }
}
