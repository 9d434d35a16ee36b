/* ops_audio.c: the audio encoder's ops (contract in ops_audio.h). Loops are plain: the audio
 * tower is small next to the decoder (about 0.3B parameters, 750 positions per 30 s clip). */
#include "autograd/ops_audio.h"

#include <string.h>
#include <tgmath.h>

#include "autograd/blas.h"



static uint8_t *copy_mask(gt_ctx *ctx, const uint8_t *valid, int64_t n) {
    if (!valid) return NULL;
    uint8_t *m = gt_alloc(ctx, (size_t)n);
    if (m) memcpy(m, valid, (size_t)n);
    return m;
}

/* ---------------------------------------------------------------- unary activations */

enum { ACT_RELU, ACT_SILU, ACT_SOFTPLUS, ACT_CLAMP };

typedef struct {
    int kind;
    gt_real lo, hi;
} act_saved;

static inline gt_real sigm(gt_real x) { return 1 / (1 + exp(-x)); }

static inline gt_real act_val(const act_saved *a, gt_real x) {
    switch (a->kind) {
    case ACT_RELU: return x > 0 ? x : 0;
    case ACT_SILU: return x * sigm(x);
    case ACT_SOFTPLUS: return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); /* no overflow */
    default: return x < a->lo ? a->lo : (x > a->hi ? a->hi : x);
    }
}

static inline gt_real act_der(const act_saved *a, gt_real x) {
    switch (a->kind) {
    case ACT_RELU: return x > 0 ? 1 : 0;
    case ACT_SILU: {
        gt_real s = sigm(x);
        return s * (1 + x * (1 - s));
    }
    case ACT_SOFTPLUS: return sigm(x);
    default: return (x >= a->lo && x <= a->hi) ? 1 : 0;
    }
}

static void act_backward(gt_ctx *ctx, gt_node *node) {
    const act_saved *a = node->saved;
    gt_real *dx = gt_grad(ctx, node->in[0]);
    const gt_real *dy = gt_grad(ctx, node->out), *X = gt_saved_data(ctx, node, 0);
    if (!gt_ok(ctx)) return;
    int64_t n = node->out->size;
#pragma omp parallel for schedule(static) if (gt_par(n))
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * act_der(a, X[i]);
}

static gt_tensor *act(gt_ctx *ctx, gt_tensor *x, act_saved a, const char *name) {
    if (!gt_ok(ctx)) return NULL;
    if (!x) return gt_fail(ctx, GT_ERR_ARG, "%s: NULL input", name);
    gt_tensor *out = gt_op_out(ctx, x->ndim, x->shape, &x, 1);
    if (!out) return NULL;
    int64_t n = x->size;
    const gt_real *X = x->data;
    gt_real *Y = out->data;
#pragma omp parallel for schedule(static) if (gt_par(n))
    for (int64_t i = 0; i < n; i++) Y[i] = act_val(&a, X[i]);
    if (out->requires_grad) {
        act_saved *s = gt_alloc(ctx, sizeof *s);
        if (!s) return NULL;
        *s = a;
        if (!gt_record(ctx, name, act_backward, out, &x, 1, s, GT_READ_IN(0))) return NULL;
    }
    return out;
}

gt_tensor *gt_relu(gt_ctx *ctx, gt_tensor *x) { return act(ctx, x, (act_saved){ACT_RELU, 0, 0}, "relu"); }
gt_tensor *gt_silu(gt_ctx *ctx, gt_tensor *x) { return act(ctx, x, (act_saved){ACT_SILU, 0, 0}, "silu"); }
gt_tensor *gt_softplus(gt_ctx *ctx, gt_tensor *x) {
    return act(ctx, x, (act_saved){ACT_SOFTPLUS, 0, 0}, "softplus");
}
gt_tensor *gt_clamp(gt_ctx *ctx, gt_tensor *x, double lo, double hi) {
    if (gt_ok(ctx) && !(lo <= hi))
        return gt_fail(ctx, GT_ERR_ARG, "clamp: lo %g > hi %g", lo, hi);
    return act(ctx, x, (act_saved){ACT_CLAMP, (gt_real)lo, (gt_real)hi}, "clamp");
}

/* ---------------------------------------------------------------- glu */

static void glu_backward(gt_ctx *ctx, gt_node *node) {
    gt_real *dx = gt_grad(ctx, node->in[0]);
    const gt_real *dy = gt_grad(ctx, node->out), *X = gt_saved_data(ctx, node, 0);
    if (!gt_ok(ctx)) return;
    int64_t D = gt_cols(node->out), rows = gt_rows(node->out);
#pragma omp parallel for schedule(static) if (gt_par(rows * D))
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < D; j++) {
            gt_real a = X[r * 2 * D + j], s = sigm(X[r * 2 * D + D + j]), g = dy[r * D + j];
            dx[r * 2 * D + j] += g * s;
            dx[r * 2 * D + D + j] += g * a * s * (1 - s);
        }
}

gt_tensor *gt_glu(gt_ctx *ctx, gt_tensor *x) {
    if (!gt_ok(ctx)) return NULL;
    if (!x || x->ndim < 1 || x->shape[x->ndim - 1] % 2)
        return gt_fail(ctx, GT_ERR_SHAPE, "glu: last axis must be even, x %s", x ? gt_shp(x) : "NULL");
    int64_t shape[GT_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    int64_t D = shape[x->ndim - 1] / 2;
    shape[x->ndim - 1] = D;
    gt_tensor *out = gt_op_out(ctx, x->ndim, shape, &x, 1);
    if (!out) return NULL;
    int64_t rows = gt_rows(out);
    const gt_real *X = x->data;
#pragma omp parallel for schedule(static) if (gt_par(rows * D))
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < D; j++)
            out->data[r * D + j] = X[r * 2 * D + j] * sigm(X[r * 2 * D + D + j]);
    if (out->requires_grad &&
        !gt_record(ctx, "glu", glu_backward, out, &x, 1, NULL, GT_READ_IN(0)))
        return NULL;
    return out;
}

/* ---------------------------------------------------------------- layernorm without bias */

static void ln_backward(gt_ctx *ctx, gt_node *node) {
    gt_tensor *x = node->in[0], *g = node->in[1];
    double eps = *(const double *)node->saved;
    const gt_real *X = gt_saved_data(ctx, node, 0), *G = gt_saved_data(ctx, node, 1);
    const gt_real *dy = gt_grad(ctx, node->out);
    gt_real *dx = gt_needs_grad(x) ? gt_grad(ctx, x) : NULL;
    gt_real *dg = gt_needs_grad(g) ? gt_grad(ctx, g) : NULL;
    if (!gt_ok(ctx)) return;
    int64_t D = gt_cols(x), rows = gt_rows(x);
    for (int64_t r = 0; r < rows; r++) { /* serial: dg accumulates over rows */
        const gt_real *xr = X + r * D, *gy = dy + r * D;
        double mu = 0, var = 0;
        for (int64_t j = 0; j < D; j++) mu += xr[j];
        mu /= D;
        for (int64_t j = 0; j < D; j++) var += (xr[j] - mu) * (xr[j] - mu);
        var /= D;
        double rs = 1 / sqrt(var + eps), m1 = 0, m2 = 0;
        for (int64_t j = 0; j < D; j++) {
            double xh = (xr[j] - mu) * rs, gh = gy[j] * G[j];
            if (dg) dg[j] += (gt_real)(gy[j] * xh);
            m1 += gh;
            m2 += gh * xh;
        }
        m1 /= D;
        m2 /= D;
        for (int64_t j = 0; dx && j < D; j++) {
            double xh = (xr[j] - mu) * rs;
            dx[r * D + j] += (gt_real)(rs * (gy[j] * G[j] - m1 - xh * m2));
        }
    }
}

gt_tensor *gt_layernorm_nobias(gt_ctx *ctx, gt_tensor *x, gt_tensor *gamma, double eps) {
    if (!gt_ok(ctx)) return NULL;
    if (!x || !gamma || gamma->ndim != 1 || x->ndim < 1 || gamma->shape[0] != x->shape[x->ndim - 1])
        return gt_fail(ctx, GT_ERR_SHAPE, "layernorm: x %s, gamma %s (want [last axis of x])",
                       x ? gt_shp(x) : "NULL", gamma ? gt_shp(gamma) : "NULL");
    gt_tensor *in[2] = {x, gamma};
    gt_tensor *out = gt_op_out(ctx, x->ndim, x->shape, in, 2);
    if (!out) return NULL;
    int64_t D = gt_cols(x), rows = gt_rows(x);
#pragma omp parallel for schedule(static) if (gt_par(rows * D))
    for (int64_t r = 0; r < rows; r++) {
        const gt_real *xr = x->data + r * D;
        double mu = 0, var = 0;
        for (int64_t j = 0; j < D; j++) mu += xr[j];
        mu /= D;
        for (int64_t j = 0; j < D; j++) var += (xr[j] - mu) * (xr[j] - mu);
        var /= D;
        double rs = 1 / sqrt(var + eps);
        for (int64_t j = 0; j < D; j++) out->data[r * D + j] = (gt_real)((xr[j] - mu) * rs * gamma->data[j]);
    }
    if (out->requires_grad) {
        double *s = gt_alloc(ctx, sizeof *s);
        if (!s) return NULL;
        *s = eps;
        if (!gt_record(ctx, "layernorm", ln_backward, out, in, 2, s, GT_READ_IN(0) | GT_READ_IN(1)))
            return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- conv2d (channels last) */

typedef struct {
    gt_conv2d_cfg c;
    const uint8_t *valid; /* [B * T] or NULL */
} conv_saved;

typedef struct {
    int64_t B, T, F, Ci, kt, kf, Co, To, Fo;
} conv_dims;

static conv_dims conv_dims_of(const gt_tensor *x, const gt_tensor *w, const gt_conv2d_cfg *c) {
    conv_dims d = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0], w->shape[1],
                   w->shape[3], 0, 0};
    d.To = (d.T + c->pad_t0 + c->pad_t1 - d.kt) / c->stride_t + 1;
    d.Fo = (d.F + c->pad_f0 + c->pad_f1 - d.kf) / c->stride_f + 1;
    return d;
}

/* Offset of x[b, t, f, 0], or -1 when (t, f) is padding or t is an invalid step. */
static int64_t conv_in(const conv_dims *d, const conv_saved *s, int64_t b, int64_t t, int64_t f) {
    if (t < 0 || t >= d->T || f < 0 || f >= d->F) return -1;
    if (s->valid && !s->valid[b * d->T + t]) return -1;
    return ((b * d->T + t) * d->F + f) * d->Ci;
}

static void conv_backward(gt_ctx *ctx, gt_node *node) {
    gt_tensor *x = node->in[0], *w = node->in[1];
    const conv_saved *s = node->saved;
    conv_dims d = conv_dims_of(x, w, &s->c);
    const gt_real *dy = gt_grad(ctx, node->out);
    const gt_real *X = gt_needs_grad(w) ? gt_saved_data(ctx, node, 0) : NULL;
    const gt_real *Wt = gt_needs_grad(x) ? gt_saved_data(ctx, node, 1) : NULL;
    gt_real *dx = gt_needs_grad(x) ? gt_grad(ctx, x) : NULL;
    gt_real *dw = gt_needs_grad(w) ? gt_grad(ctx, w) : NULL;
    if (!gt_ok(ctx)) return;
    for (int64_t b = 0; b < d.B; b++)
        for (int64_t to = 0; to < d.To; to++)
            for (int64_t fo = 0; fo < d.Fo; fo++) {
                const gt_real *g = dy + ((b * d.To + to) * d.Fo + fo) * d.Co;
                for (int64_t i = 0; i < d.kt; i++)
                    for (int64_t j = 0; j < d.kf; j++) {
                        int64_t o = conv_in(&d, s, b, to * s->c.stride_t + i - s->c.pad_t0,
                                            fo * s->c.stride_f + j - s->c.pad_f0);
                        if (o < 0) continue;
                        for (int64_t ci = 0; ci < d.Ci; ci++) {
                            int64_t wo = ((i * d.kf + j) * d.Ci + ci) * d.Co;
                            double acc = 0;
                            for (int64_t co = 0; co < d.Co; co++) {
                                if (dx) acc += g[co] * Wt[wo + co];
                                if (dw) dw[wo + co] += g[co] * X[o + ci];
                            }
                            if (dx) dx[o + ci] += (gt_real)acc;
                        }
                    }
            }
}

gt_tensor *gt_conv2d_nhwc(gt_ctx *ctx, gt_tensor *x, gt_tensor *w, const gt_conv2d_cfg *cfg,
                          const uint8_t *valid) {
    if (!gt_ok(ctx)) return NULL;
    if (!x || !w || !cfg || x->ndim != 4 || w->ndim != 4 || w->shape[2] != x->shape[3] ||
        cfg->stride_t < 1 || cfg->stride_f < 1 || cfg->pad_t0 < 0 || cfg->pad_t1 < 0 ||
        cfg->pad_f0 < 0 || cfg->pad_f1 < 0)
        return gt_fail(ctx, GT_ERR_SHAPE, "conv2d: x %s, w %s (want [B,T,F,Ci], [kt,kf,Ci,Co], "
                       "positive strides)", x ? gt_shp(x) : "NULL", w ? gt_shp(w) : "NULL");
    conv_saved s = {*cfg, NULL};
    conv_dims d = conv_dims_of(x, w, cfg);
    if (d.To < 1 || d.Fo < 1)
        return gt_fail(ctx, GT_ERR_SHAPE, "conv2d: x %s too small for kernel %s", gt_shp(x), gt_shp(w));
    int64_t shape[4] = {d.B, d.To, d.Fo, d.Co};
    gt_tensor *in[2] = {x, w};
    gt_tensor *out = gt_op_out(ctx, 4, shape, in, 2);
    if (!out) return NULL;
    s.valid = valid;
#pragma omp parallel for schedule(static) if (gt_par(out->size * d.kt * d.kf * d.Ci))
    for (int64_t p = 0; p < d.B * d.To * d.Fo; p++) {
        int64_t b = p / (d.To * d.Fo), to = p / d.Fo % d.To, fo = p % d.Fo;
        gt_real *y = out->data + p * d.Co;
        for (int64_t co = 0; co < d.Co; co++) y[co] = 0;
        for (int64_t i = 0; i < d.kt; i++)
            for (int64_t j = 0; j < d.kf; j++) {
                int64_t o = conv_in(&d, &s, b, to * cfg->stride_t + i - cfg->pad_t0,
                                    fo * cfg->stride_f + j - cfg->pad_f0);
                if (o < 0) continue;
                for (int64_t ci = 0; ci < d.Ci; ci++) {
                    gt_real xv = x->data[o + ci];
                    const gt_real *wr = w->data + ((i * d.kf + j) * d.Ci + ci) * d.Co;
                    for (int64_t co = 0; co < d.Co; co++) y[co] += xv * wr[co];
                }
            }
    }
    if (out->requires_grad) {
        conv_saved *sv = gt_alloc(ctx, sizeof *sv);
        if (!sv) return NULL;
        *sv = s;
        if (valid && !(sv->valid = copy_mask(ctx, valid, d.B * d.T))) return NULL;
        if (!gt_record(ctx, "conv2d", conv_backward, out, in, 2, sv, GT_READ_IN(0) | GT_READ_IN(1)))
            return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- causal depthwise conv1d */

static void dw_backward(gt_ctx *ctx, gt_node *node) {
    gt_tensor *x = node->in[0], *w = node->in[1];
    int64_t B = x->shape[0], T = x->shape[1], D = x->shape[2], K = w->shape[0];
    const gt_real *dy = gt_grad(ctx, node->out);
    const gt_real *X = gt_needs_grad(w) ? gt_saved_data(ctx, node, 0) : NULL;
    const gt_real *W = gt_needs_grad(x) ? gt_saved_data(ctx, node, 1) : NULL;
    gt_real *dx = gt_needs_grad(x) ? gt_grad(ctx, x) : NULL;
    gt_real *dw = gt_needs_grad(w) ? gt_grad(ctx, w) : NULL;
    if (!gt_ok(ctx)) return;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t k = 0; k < K; k++) {
                int64_t ts = t - K + 1 + k;
                if (ts < 0) continue;
                const gt_real *g = dy + (b * T + t) * D;
                for (int64_t j = 0; j < D; j++) {
                    if (dx) dx[(b * T + ts) * D + j] += g[j] * W[k * D + j];
                    if (dw) dw[k * D + j] += g[j] * X[(b * T + ts) * D + j];
                }
            }
}

gt_tensor *gt_dwconv1d_causal(gt_ctx *ctx, gt_tensor *x, gt_tensor *w) {
    if (!gt_ok(ctx)) return NULL;
    if (!x || !w || x->ndim != 3 || w->ndim != 2 || w->shape[1] != x->shape[2])
        return gt_fail(ctx, GT_ERR_SHAPE, "dwconv1d: x %s, w %s (want [B,T,D], [K,D])",
                       x ? gt_shp(x) : "NULL", w ? gt_shp(w) : "NULL");
    gt_tensor *in[2] = {x, w};
    gt_tensor *out = gt_op_out(ctx, 3, x->shape, in, 2);
    if (!out) return NULL;
    int64_t T = x->shape[1], D = x->shape[2], K = w->shape[0];
#pragma omp parallel for schedule(static) if (gt_par(out->size * K))
    for (int64_t r = 0; r < x->shape[0] * T; r++) {
        int64_t t = r % T;
        gt_real *y = out->data + r * D;
        for (int64_t j = 0; j < D; j++) y[j] = 0;
        for (int64_t k = 0; k < K; k++) {
            int64_t ts = t - K + 1 + k;
            if (ts < 0) continue;
            const gt_real *xr = x->data + (r - t + ts) * D;
            for (int64_t j = 0; j < D; j++) y[j] += w->data[k * D + j] * xr[j];
        }
    }
    if (out->requires_grad &&
        !gt_record(ctx, "dwconv1d", dw_backward, out, in, 2, NULL, GT_READ_IN(0) | GT_READ_IN(1)))
        return NULL;
    return out;
}

/* ---------------------------------------------------------------- chunked local attention */

typedef struct {
    gt_local_attn_cfg c;
    const uint8_t *valid; /* [B * T] or NULL */
} la_saved;

typedef struct {
    int64_t B, T, N, H;
    const gt_real *q, *k, *v, *rel;
} la_view;

static inline int64_t la_at(const la_view *a, int64_t b, int64_t t, int64_t n) {
    return ((b * a->T + t) * a->N + n) * a->H;
}

/* Keys of query t: s0..t with p[s - s0] the softmax weights (uncapped logits in l when l is
 * non-NULL); returns the number of keys, 0 when none is valid (p untouched). */
static int64_t la_probs(const la_view *a, const la_saved *s, int64_t b, int64_t t, int64_t n,
                        double *p, double *l, int64_t *s0) {
    int64_t lo = t - s->c.max_past + 1 > 0 ? t - s->c.max_past + 1 : 0, any = 0;
    const gt_real *qt = a->q + la_at(a, b, t, n);
    double mx = -INFINITY;
    for (int64_t sk = lo; sk <= t; sk++) {
        double z = -INFINITY;
        if (!s->valid || s->valid[b * a->T + sk]) {
            const gt_real *ks = a->k + la_at(a, b, sk, n);
            const gt_real *r = a->rel + ((s->c.max_past - (t - sk)) * a->N + n) * a->H;
            double acc = 0;
            for (int64_t h = 0; h < a->H; h++) acc += qt[h] * ((double)ks[h] + r[h]);
            if (l) l[sk - lo] = acc;
            z = s->c.cap * tanh(acc / s->c.cap);
            any = 1;
        }
        p[sk - lo] = z;
        if (z > mx) mx = z;
    }
    if (!any) return 0;
    double sum = 0;
    for (int64_t i = 0; i <= t - lo; i++) sum += (p[i] = isinf(p[i]) ? 0 : exp(p[i] - mx));
    for (int64_t i = 0; i <= t - lo; i++) p[i] /= sum;
    *s0 = lo;
    return t - lo + 1;
}

/* A query with no valid key: its block's context slots, first one and count. */
static void la_slots(const la_saved *s, int64_t T, int64_t t, int64_t *first, int64_t *count) {
    *count = s->c.chunk + s->c.max_past + s->c.max_future;
    *first = t / s->c.chunk * s->c.chunk - s->c.max_past;
    (void)T;
}

static void la_forward_head(const la_view *a, const la_saved *s, int64_t n, gt_real *out,
                            double *p) {
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t t = 0; t < a->T; t++) {
            gt_real *o = out + la_at(a, b, t, n);
            int64_t s0, cnt = la_probs(a, s, b, t, n, p, NULL, &s0);
            for (int64_t h = 0; h < a->H; h++) o[h] = 0;
            if (!cnt) {
                int64_t first, C;
                la_slots(s, a->T, t, &first, &C);
                for (int64_t sk = first > 0 ? first : 0; sk < first + C && sk < a->T; sk++)
                    for (int64_t h = 0; h < a->H; h++) o[h] += a->v[la_at(a, b, sk, n) + h] / (gt_real)C;
                continue;
            }
            for (int64_t i = 0; i < cnt; i++) {
                const gt_real *vs = a->v + la_at(a, b, s0 + i, n);
                for (int64_t h = 0; h < a->H; h++) o[h] += (gt_real)(p[i] * vs[h]);
            }
        }
}

typedef struct {
    gt_real *dq, *dk, *dv, *drel;
} la_grads;

static void la_backward_query(const la_view *a, const la_saved *s, const la_grads *g,
                              const gt_real *dy, int64_t b, int64_t t, int64_t n, double *p,
                              double *l) {
    const gt_real *go = dy + la_at(a, b, t, n);
    int64_t s0, cnt = la_probs(a, s, b, t, n, p, l, &s0);
    if (!cnt) { /* uniform weights: only v gets a gradient */
        int64_t first, C;
        la_slots(s, a->T, t, &first, &C);
        for (int64_t sk = first > 0 ? first : 0; g->dv && sk < first + C && sk < a->T; sk++)
            for (int64_t h = 0; h < a->H; h++) g->dv[la_at(a, b, sk, n) + h] += go[h] / (gt_real)C;
        return;
    }
    double dp[cnt], dot = 0; /* cnt <= max_past, checked at the op */
    for (int64_t i = 0; i < cnt; i++) {
        int64_t vo = la_at(a, b, s0 + i, n);
        double acc = 0;
        for (int64_t h = 0; h < a->H; h++) {
            acc += go[h] * a->v[vo + h];
            if (g->dv) g->dv[vo + h] += (gt_real)(p[i] * go[h]);
        }
        dp[i] = acc;
        dot += p[i] * acc;
    }
    const gt_real *qt = a->q + la_at(a, b, t, n);
    for (int64_t i = 0; i < cnt; i++) {
        if (s->valid && !s->valid[b * a->T + s0 + i]) continue; /* weight 0, l unset */
        double th = tanh(l[i] / s->c.cap), dl = p[i] * (dp[i] - dot) * (1 - th * th);
        int64_t ko = la_at(a, b, s0 + i, n);
        int64_t ro = ((s->c.max_past - (t - s0 - i)) * a->N + n) * a->H;
        for (int64_t h = 0; h < a->H; h++) {
            if (g->dq) g->dq[la_at(a, b, t, n) + h] += (gt_real)(dl * ((double)a->k[ko + h] + a->rel[ro + h]));
            if (g->dk) g->dk[ko + h] += (gt_real)(dl * qt[h]);
            if (g->drel) g->drel[ro + h] += (gt_real)(dl * qt[h]);
        }
    }
}

static void la_backward(gt_ctx *ctx, gt_node *node) {
    const la_saved *s = node->saved;
    gt_tensor *q = node->in[0];
    la_view a = {q->shape[0], q->shape[1], q->shape[2], q->shape[3],
                 gt_saved_data(ctx, node, 0), gt_saved_data(ctx, node, 1),
                 gt_saved_data(ctx, node, 2), gt_saved_data(ctx, node, 3)};
    la_grads g = {0};
    for (int i = 0; i < 4; i++) {
        gt_real *d = gt_needs_grad(node->in[i]) ? gt_grad(ctx, node->in[i]) : NULL;
        *(i == 0 ? &g.dq : i == 1 ? &g.dk : i == 2 ? &g.dv : &g.drel) = d;
    }
    const gt_real *dy = gt_grad(ctx, node->out);
    if (!gt_ok(ctx)) return;
    int64_t P = s->c.max_past;
    /* heads are independent: every gradient row a head writes belongs to that head */
#pragma omp parallel for schedule(dynamic, 1) if (a.N > 1 && gt_par(a.B * a.T * P * a.H))
    for (int64_t n = 0; n < a.N; n++) {
        double p[P], l[P];
        for (int64_t b = 0; b < a.B; b++)
            for (int64_t t = 0; t < a.T; t++) la_backward_query(&a, s, &g, dy, b, t, n, p, l);
    }
}

gt_tensor *gt_local_attn(gt_ctx *ctx, gt_tensor *q, gt_tensor *k, gt_tensor *v, gt_tensor *rel,
                         const uint8_t *valid, const gt_local_attn_cfg *cfg) {
    if (!gt_ok(ctx)) return NULL;
    if (!q || !k || !v || !rel || !cfg)
        return gt_fail(ctx, GT_ERR_ARG, "local_attn: NULL input");
    if (cfg->chunk < 1 || cfg->max_past < 1 || cfg->max_past > 4096 || cfg->max_future < 0 ||
        !(cfg->cap > 0))
        return gt_fail(ctx, GT_ERR_ARG, "local_attn: chunk %d, max_past %d (1..4096), max_future "
                       "%d, cap %g", cfg->chunk, cfg->max_past, cfg->max_future, cfg->cap);
    int64_t P = cfg->max_past + cfg->max_future + 1;
    if (q->ndim != 4 || !gt_shape_eq(q, k) || !gt_shape_eq(q, v) || rel->ndim != 3 ||
        rel->shape[0] != P || rel->shape[1] != q->shape[2] || rel->shape[2] != q->shape[3])
        return gt_fail(ctx, GT_ERR_SHAPE, "local_attn: q %s, k %s, v %s, rel %s (want [B,T,N,H] x3, "
                       "[%lld,N,H])", gt_shp(q), gt_shp(k), gt_shp(v), gt_shp(rel), (long long)P);
    gt_tensor *in[4] = {q, k, v, rel};
    gt_tensor *out = gt_op_out(ctx, 4, q->shape, in, 4);
    if (!out) return NULL;
    la_saved s = {*cfg, valid};
    la_view a = {q->shape[0], q->shape[1], q->shape[2], q->shape[3], q->data, k->data, v->data, rel->data};
#pragma omp parallel for schedule(dynamic, 1) if (a.N > 1 && gt_par(a.B * a.T * cfg->max_past * a.H))
    for (int64_t n = 0; n < a.N; n++) {
        double p[cfg->max_past];
        la_forward_head(&a, &s, n, out->data, p);
    }
    if (out->requires_grad) {
        la_saved *sv = gt_alloc(ctx, sizeof *sv);
        if (!sv) return NULL;
        *sv = s;
        if (valid && !(sv->valid = copy_mask(ctx, valid, a.B * a.T))) return NULL;
        unsigned reads = GT_READ_IN(0) | GT_READ_IN(1) | GT_READ_IN(2) | GT_READ_IN(3);
        if (!gt_record(ctx, "local_attn", la_backward, out, in, 4, sv, reads)) return NULL;
    }
    return out;
}
