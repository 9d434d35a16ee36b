#include "models/lora.h"

#include "models/gemma_config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rng.h"

const char *const gt_lora_target_names[GT_LORA_NTARGETS + 1] = {
    "query", "key", "value", "attention_output", "ffw_gating", "ffw_gating_2", "ffw_linear", NULL};

int gt_lora_target_from_name(const char *name) {
    for (int i = 0; i < GT_LORA_NTARGETS; i++)
        if (!strcmp(name, gt_lora_target_names[i])) return i;
    return -1;
}

const char *gt_lora_target_name(gt_lora_target t) {
    return (unsigned)t < GT_LORA_NTARGETS ? gt_lora_target_names[t] : "?";
}

/* groups, in, out of each target's base kernel */
/* Shapes of a target's adapter on layer i; false when the layer has no such kernel (Gemma 4). */
static bool target_dims(const gt_lora_dims *d, const gt_gemma_config *c, int64_t i, gt_lora_target t,
                        int64_t *g, int64_t *in, int64_t *out) {
    if (c && c->generation == 4) {
        int64_t h = gt_gemma_layer_head_dim(c, i), k = gt_gemma_layer_kv_heads(c, i);
        bool own = gt_gemma_kv_source(c, i) < 0;
        switch (t) {
        case GT_LORA_QUERY: *g = c->num_query_heads, *in = c->hidden_dim, *out = h; return true;
        case GT_LORA_KEY: *g = k, *in = c->hidden_dim, *out = h; return own;
        case GT_LORA_VALUE: *g = k, *in = c->hidden_dim, *out = h; return own && !gt_gemma_layer_k_eq_v(c, i);
        case GT_LORA_ATTN_OUT: *g = 1, *in = c->num_query_heads * h, *out = c->hidden_dim; return true;
        case GT_LORA_GATE:
        case GT_LORA_UP: *g = 1, *in = c->hidden_dim, *out = gt_gemma_layer_ffw_dim(c, i); return true;
        default: *g = 1, *in = gt_gemma_layer_ffw_dim(c, i), *out = c->hidden_dim; return true;
        }
    }
    switch (t) {
    case GT_LORA_QUERY: *g = d->num_query_heads, *in = d->hidden_dim, *out = d->head_dim; break;
    case GT_LORA_KEY:
    case GT_LORA_VALUE: *g = d->num_kv_heads, *in = d->hidden_dim, *out = d->head_dim; break;
    case GT_LORA_ATTN_OUT: *g = 1, *in = d->num_query_heads * d->head_dim, *out = d->hidden_dim; break;
    case GT_LORA_GATE:
    case GT_LORA_UP: *g = 1, *in = d->hidden_dim, *out = d->intermediate_dim; break;
    default: *g = 1, *in = d->intermediate_dim, *out = d->hidden_dim; break;
    }
    return true;
}

static const char *layer_path(gt_lora_target t) {
    switch (t) {
    case GT_LORA_QUERY: return "attention/query";
    case GT_LORA_KEY: return "attention/key";
    case GT_LORA_VALUE: return "attention/value";
    case GT_LORA_ATTN_OUT: return "attention/attention_output";
    case GT_LORA_GATE: return "ffw_gating";
    case GT_LORA_UP: return "ffw_gating_2";
    default: return "ffw_linear";
    }
}

static int create(const gt_lora_dims *dims, const gt_gemma_config *cfg, int64_t rank, double alpha,
                  unsigned targets, uint64_t seed, gt_lora **out, char *err, size_t errn) {
    *out = NULL;
    if (rank < 1) return snprintf(err, errn, "lora.rank: must be >= 1, got %lld", (long long)rank), -1;
    if (!(alpha > 0)) return snprintf(err, errn, "lora.alpha: must be > 0"), -1;
    if (!targets || targets >= (1u << GT_LORA_NTARGETS))
        return snprintf(err, errn, "lora.targets: no valid target selected"), -1;
    gt_lora *l = calloc(1, sizeof *l);
    if (!l) return snprintf(err, errn, "out of memory"), -1;
    l->rank = rank;
    l->alpha = alpha;
    l->targets = targets;
    l->num_layers = dims->num_layers;
    l->adapters = calloc((size_t)(dims->num_layers * GT_LORA_NTARGETS), sizeof *l->adapters);
    if (!l->adapters) {
        free(l);
        return snprintf(err, errn, "out of memory"), -1;
    }
    int64_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        int64_t off = 0;
        for (int64_t i = 0; i < dims->num_layers; i++)
            for (int t = 0; t < GT_LORA_NTARGETS; t++) {
                if (!(targets & (1u << t))) continue;
                int64_t g, in, o;
                if (!target_dims(dims, cfg, i, (gt_lora_target)t, &g, &in, &o)) continue;
                if (pass == 1) {
                    gt_lora_adapter *ad = &l->adapters[i * GT_LORA_NTARGETS + t];
                    int64_t sa[2] = {in, g * rank}, sb[2] = {rank, o};
                    gt_tensor_wrap(&ad->a, l->data + off, l->grad + off, 2, sa, true);
                    gt_tensor_wrap(&ad->b, l->data + off + in * g * rank,
                                   l->grad + off + in * g * rank, 2, sb, true);
                    ad->groups = g;
                    ad->in = in;
                    ad->out = o;
                    snprintf(ad->name, sizeof ad->name, "decoder_block_%lld/%s", (long long)i,
                             layer_path((gt_lora_target)t));
                    snprintf(ad->a.name, sizeof ad->a.name, "%s/lora_kernel_a", ad->name);
                    snprintf(ad->b.name, sizeof ad->b.name, "%s/lora_kernel_b", ad->name);
                    /* He-uniform on Keras' A shape: fan_in = prod(kernel.shape[:-1]) = g * in */
                    double limit = sqrt(6.0 / (double)(g * in));
                    for (int64_t e = 0; e < in * g * rank; e++) {
                        double u = gt_rng_uniform(&seed);
                        ad->a.data[e] = (gt_real)((2 * u - 1) * limit);
                    }
                }
                off += in * g * rank + rank * o;
            }
        if (pass == 0) {
            total = off;
            l->data = calloc((size_t)(total ? total : 1), sizeof(gt_real));
            l->grad = calloc((size_t)(total ? total : 1), sizeof(gt_real));
            if (!l->data || !l->grad) {
                gt_lora_free(l);
                return snprintf(err, errn, "out of memory for %lld LoRA values", (long long)total), -1;
            }
        }
    }
    l->n_values = total;
    *out = l;
    return 0;
}

int gt_lora_create(const gt_lora_dims *dims, int64_t rank, double alpha, unsigned targets,
                   uint64_t seed, gt_lora **out, char *err, size_t errn) {
    return create(dims, NULL, rank, alpha, targets, seed, out, err, errn);
}

int gt_lora_create_for(const gt_gemma_config *c, int64_t rank, double alpha, unsigned targets,
                       uint64_t seed, gt_lora **out, char *err, size_t errn) {
    gt_lora_dims d = {c->num_layers, c->hidden_dim, c->intermediate_dim, c->num_query_heads, c->num_kv_heads,
                      c->head_dim};
    return create(&d, c, rank, alpha, targets, seed, out, err, errn);
}

void gt_lora_free(gt_lora *l) {
    if (!l) return;
    free(l->adapters);
    free(l->data);
    free(l->grad);
    free(l);
}

const gt_lora_adapter *gt_lora_get(const gt_lora *l, int64_t layer, gt_lora_target t) {
    if (!l || layer < 0 || layer >= l->num_layers || !(l->targets & (1u << t))) return NULL;
    const gt_lora_adapter *ad = &l->adapters[layer * GT_LORA_NTARGETS + t];
    return ad->a.data ? ad : NULL; /* an unused slot: the layer has no such kernel */
}

void gt_lora_zero_grad(gt_lora *l) {
    memset(l->grad, 0, (size_t)l->n_values * sizeof(gt_real));
}

gt_tensor *gt_lora_apply(gt_ctx *ctx, const gt_lora *l, const gt_lora_adapter *ad, gt_tensor *x,
                         gt_tensor *y) {
    if (!ad || !gt_ok(ctx)) return y;
    if (!x || !y) return gt_fail(ctx, GT_ERR_ARG, "lora %s: NULL input", ad->name);
    int64_t rows = x->size / ad->in;
    if (gt_cols(x) != ad->in || y->size != rows * ad->groups * ad->out)
        return gt_fail(ctx, GT_ERR_SHAPE, "lora %s: input %s / output %s do not fit A %s, B %s",
                       ad->name, gt_shp(x), gt_shp(y), gt_shp(&ad->a), gt_shp(&ad->b));
    /* the adapter tensors are persistent; cast away const for the tape's input list only */
    gt_tensor *a = (gt_tensor *)&ad->a, *b = (gt_tensor *)&ad->b;
    gt_tensor *xin = x;
    if (l->dropout > 0 && ctx->grad_enabled) {
        uint64_t seed = l->dropout_seed ^ (uint64_t)(ad - l->adapters + 1) * 0x9E3779B97F4A7C15ull;
        int64_t rt = l->dropout_row_tokens, rs = l->dropout_row_stride;
        if (rt > 0 && rs > rt)
            xin = gt_dropout_rows(ctx, x, l->dropout, seed, l->dropout_token0 * ad->in, rt * ad->in,
                                  rs * ad->in);
        else
            xin = gt_dropout_at(ctx, x, l->dropout, seed, l->dropout_token0 * ad->in);
    }
    gt_tensor *xa = gt_matmul(ctx, xin, a, false, false);
    int64_t s1[2] = {rows * ad->groups, l->rank};
    gt_tensor *d = gt_matmul(ctx, gt_reshape(ctx, xa, 2, s1), b, false, false);
    d = gt_reshape(ctx, d, y->ndim, y->shape);
    double scale = l->alpha / (double)l->rank;
    if (scale != 1) d = gt_scale(ctx, d, scale); /* alpha = rank (Keras' default): x * 1 == x */
    return gt_add(ctx, y, d);
}

void gt_lora_get_keras_a(const gt_lora_adapter *ad, gt_real *out) {
    int64_t r = ad->a.shape[1] / ad->groups;
    for (int64_t g = 0; g < ad->groups; g++)
        for (int64_t i = 0; i < ad->in; i++)
            for (int64_t j = 0; j < r; j++)
                out[(g * ad->in + i) * r + j] = ad->a.data[i * ad->groups * r + g * r + j];
}

void gt_lora_set_keras_a(gt_lora_adapter *ad, const gt_real *in) {
    int64_t r = ad->a.shape[1] / ad->groups;
    for (int64_t g = 0; g < ad->groups; g++)
        for (int64_t i = 0; i < ad->in; i++)
            for (int64_t j = 0; j < r; j++)
                ad->a.data[i * ad->groups * r + g * r + j] = in[(g * ad->in + i) * r + j];
}

void gt_lora_merge(const gt_lora *l, const gt_lora_adapter *ad, gt_tensor *w) {
    int64_t r = l->rank;
    double s = l->alpha / (double)r;
    for (int64_t g = 0; g < ad->groups; g++)
        gt_gemm(true, true, (int)ad->out, (int)ad->in, (int)r, (gt_real)s, ad->b.data,
                (int)ad->out, ad->a.data + g * r, (int)(ad->groups * r), 1,
                w->data + g * ad->out * ad->in, (int)ad->in);
}

void gt_lora_standard_ab(const gt_lora *l, const gt_lora_adapter *ad, double scale, gt_real *A, gt_real *B) {
    int64_t r = l->rank, G = ad->groups, R = G * r, in = ad->in, out = ad->out;
    for (int64_t q = 0; q < R; q++)
        for (int64_t i = 0; i < in; i++) A[q * in + i] = ad->a.data[i * R + q];
    memset(B, 0, (size_t)(G * out * R) * sizeof *B);
    for (int64_t g = 0; g < G; g++)
        for (int64_t o = 0; o < out; o++)
            for (int64_t j = 0; j < r; j++) B[(g * out + o) * R + g * r + j] = (gt_real)(scale * ad->b.data[j * out + o]);
}
