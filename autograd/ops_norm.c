#include "autograd/ops_norm.h"

#include <string.h>
#include <tgmath.h>

#include "autograd/blas.h"

/* ---------------------------------------------------------------- rmsnorm */

typedef struct {
    gt_real *rstd; /* [rows] rsqrt(mean(x^2) + eps): the one statistic worth keeping */
    gt_real *s;    /* [D] effective scale: 1 + w, w, or ones */
} rmsnorm_saved;

/* Rows are split into nc fixed bands so the dw sum does not depend on thread scheduling. */
static void rmsnorm_backward(gt_ctx *ctx, gt_node *node) {
    const rmsnorm_saved *sv = node->saved;
    gt_tensor *x = node->in[0], *w = node->in[1];
    const gt_real *dy = gt_grad(ctx, node->out);
    bool fresh = false; /* dx stored, not added (gt_grad_w) */
    gt_real *dx = gt_needs_grad(x) ? gt_grad_w(ctx, x, &fresh) : NULL;
    gt_real *dw = gt_needs_grad(w) ? gt_grad(ctx, w) : NULL;
    if (!gt_ok(ctx)) return;
    int64_t rows = gt_rows(x), d = gt_cols(x);
    int nc = gt_par_chunks(x->size, rows);
    double *part = NULL;
    if (dw) {
        part = gt_alloc(ctx, (size_t)nc * (size_t)d * sizeof(double));
        if (!part) return;
        memset(part, 0, (size_t)nc * (size_t)d * sizeof(double));
    }
    const gt_real *X = gt_saved_data(ctx, node, 0), *S = sv->s, *R = sv->rstd;
    if (!X) return;
    gt_real inv_d = (gt_real)(1.0 / (double)d);
#pragma omp parallel for schedule(static) num_threads(nc) if (nc > 1)
    for (int c = 0; c < nc; c++) {
        double *pw = part ? part + (int64_t)c * d : NULL;
        for (int64_t r = rows * c / nc; r < rows * (c + 1) / nc; r++) {
            const gt_real *xr = X + r * d, *g = dy + r * d;
            gt_real rs = R[r];
            if (dx) {
                /* dx = r (g s - x r^2 <g s, x> / D) */
                gt_real dot = 0;
#pragma omp simd reduction(+ : dot)
                for (int64_t j = 0; j < d; j++) dot += g[j] * S[j] * xr[j];
                gt_real k = rs * rs * rs * dot * inv_d;
                gt_real *o = dx + r * d;
                if (fresh)
                    for (int64_t j = 0; j < d; j++) o[j] = rs * g[j] * S[j] - k * xr[j];
                else
                    for (int64_t j = 0; j < d; j++) o[j] += rs * g[j] * S[j] - k * xr[j];
            }
            if (pw)
                for (int64_t j = 0; j < d; j++) pw[j] += (double)(g[j] * xr[j] * rs);
        }
    }
    if (dw)
        for (int64_t j = 0; j < d; j++) {
            double acc = 0;
            for (int c = 0; c < nc; c++) acc += part[(int64_t)c * d + j];
            dw[j] += (gt_real)acc;
        }
}

gt_tensor *gt_rmsnorm(gt_ctx *ctx, gt_tensor *x, gt_tensor *w, double eps, bool add_one) {
    if (!gt_ok(ctx)) return NULL;
    if (!x) return gt_fail(ctx, GT_ERR_ARG, "rmsnorm: NULL input");
    if (x->ndim < 1 || gt_cols(x) < 1)
        return gt_fail(ctx, GT_ERR_SHAPE, "rmsnorm: x %s needs a non-empty last axis", gt_shp(x));
    int64_t d = gt_cols(x), rows = gt_rows(x);
    if (w && (w->ndim != 1 || w->shape[0] != d))
        return gt_fail(ctx, GT_ERR_SHAPE, "rmsnorm: scale w %s must be [%lld] for x %s", gt_shp(w),
                       (long long)d, gt_shp(x));
    if (!(eps >= 0) || !isfinite(eps))
        return gt_fail(ctx, GT_ERR_ARG, "rmsnorm: eps must be finite and >= 0, got %g (x %s)", eps,
                       gt_shp(x));
    gt_tensor *in[2] = {x, w};
    gt_tensor *out = gt_op_out(ctx, x->ndim, x->shape, in, 2);
    gt_real *s = gt_alloc(ctx, (size_t)d * sizeof(gt_real));
    if (!out || !s) return NULL;
    /* One scale vector for all three forms keeps the row loop branch-free. */
    for (int64_t j = 0; j < d; j++) s[j] = w ? (add_one ? 1 + w->data[j] : w->data[j]) : 1;
    gt_real *rstd = NULL;
    if (out->requires_grad && !(rstd = gt_alloc(ctx, (size_t)(rows ? rows : 1) * sizeof(gt_real))))
        return NULL;
    const gt_real *X = x->data;
    gt_real *Y = out->data, e = (gt_real)eps, inv_d = (gt_real)(1.0 / (double)d);
#pragma omp parallel for schedule(static) if (gt_par_chunks(x->size, rows) > 1)
    for (int64_t r = 0; r < rows; r++) {
        const gt_real *xr = X + r * d;
        gt_real *yr = Y + r * d;
        gt_real ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int64_t j = 0; j < d; j++) ss += xr[j] * xr[j];
        gt_real rs = 1 / sqrt(ss * inv_d + e);
        for (int64_t j = 0; j < d; j++) yr[j] = xr[j] * rs * s[j];
        if (rstd) rstd[r] = rs;
    }
    if (out->requires_grad) {
        rmsnorm_saved *sv = gt_alloc(ctx, sizeof *sv);
        if (!sv) return NULL;
        *sv = (rmsnorm_saved){rstd, s};
        /* backward reads x (either gradient needs it); w's values live on in sv->s */
        if (!gt_record(ctx, "rmsnorm", rmsnorm_backward, out, in, 2, sv, GT_READ_IN(0))) return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- rope */

typedef struct {
    const int32_t *pos; /* [ntok]: a copy when recorded, else the caller's array */
    double *inv_freq;   /* [half_rot] base^(-2i/H) / scale */
    int64_t ntok, heads, h, half_rot;
} rope_saved;

/* dst (+)= src rotated by +theta (forward) or -theta (backward, the inverse rotation).
 * Angles are formed and their cos/sin taken in double: at positions ~32k an fp32 angle is off
 * by ~1e-3 rad. scratch: nc * 2 * half_rot values, one cos/sin pair of rows per band. */
static void rope_apply(const rope_saved *s, const gt_real *src, gt_real *dst, bool inverse,
                       bool acc, gt_real *scratch, int nc) {
    int64_t h2 = s->h / 2, hr = s->half_rot, heads = s->heads, ntok = s->ntok;
    double sign = inverse ? -1.0 : 1.0;
#pragma omp parallel for schedule(static) num_threads(nc) if (nc > 1)
    for (int c = 0; c < nc; c++) {
        gt_real *cs = scratch + (int64_t)c * 2 * hr, *sn = cs + hr;
        for (int64_t t = ntok * c / nc; t < ntok * (c + 1) / nc; t++) {
            double p = (double)s->pos[t];
            for (int64_t i = 0; i < hr; i++) {
                double th = p * s->inv_freq[i];
                cs[i] = (gt_real)cos(th);
                sn[i] = (gt_real)(sign * sin(th));
            }
            for (int64_t n = 0; n < heads; n++) {
                const gt_real *xa = src + (t * heads + n) * s->h, *xb = xa + h2;
                gt_real *ya = dst + (t * heads + n) * s->h, *yb = ya + h2;
                if (acc) {
                    for (int64_t i = 0; i < hr; i++) {
                        ya[i] += xa[i] * cs[i] - xb[i] * sn[i];
                        yb[i] += xb[i] * cs[i] + xa[i] * sn[i];
                    }
                    for (int64_t i = hr; i < h2; i++) {
                        ya[i] += xa[i];
                        yb[i] += xb[i];
                    }
                } else {
                    for (int64_t i = 0; i < hr; i++) {
                        ya[i] = xa[i] * cs[i] - xb[i] * sn[i];
                        yb[i] = xb[i] * cs[i] + xa[i] * sn[i];
                    }
                    if (hr < h2) {
                        memcpy(ya + hr, xa + hr, (size_t)(h2 - hr) * sizeof(gt_real));
                        memcpy(yb + hr, xb + hr, (size_t)(h2 - hr) * sizeof(gt_real));
                    }
                }
            }
        }
    }
}

static gt_real *rope_scratch(gt_ctx *ctx, const rope_saved *s, int nc) {
    size_t per_band = 2 * (size_t)(s->half_rot ? s->half_rot : 1);
    return gt_alloc(ctx, (size_t)nc * per_band * sizeof(gt_real));
}

static void rope_backward(gt_ctx *ctx, gt_node *node) {
    const rope_saved *s = node->saved;
    bool fresh;
    gt_real *dx = gt_grad_w(ctx, node->in[0], &fresh);
    const gt_real *dy = gt_grad(ctx, node->out);
    if (!gt_ok(ctx)) return;
    int nc = gt_par_chunks(node->out->size, s->ntok);
    gt_real *scratch = rope_scratch(ctx, s, nc);
    if (!scratch) return;
    rope_apply(s, dy, dx, true, !fresh, scratch, nc);
}

gt_tensor *gt_rope(gt_ctx *ctx, gt_tensor *x, const int32_t *positions, const gt_rope_cfg *cfg) {
    if (!gt_ok(ctx)) return NULL;
    if (!x || !cfg)
        return gt_fail(ctx, GT_ERR_ARG, "rope: NULL %s (x %s)", x ? "cfg" : "input", gt_shp(x));
    if (x->ndim != 4)
        return gt_fail(ctx, GT_ERR_SHAPE, "rope: x must be [B,T,heads,H], got %s", gt_shp(x));
    int64_t h = x->shape[3];
    int64_t rot = cfg->rotary_dims ? cfg->rotary_dims : h;
    if (h % 2 != 0)
        return gt_fail(ctx, GT_ERR_SHAPE, "rope: head dim H=%lld must be even (x %s)", (long long)h,
                       gt_shp(x));
    if (rot < 0 || rot % 2 != 0 || rot > h)
        return gt_fail(ctx, GT_ERR_SHAPE, "rope: rotary_dims %lld must be even and in [0, H=%lld] "
                       "(x %s)", (long long)cfg->rotary_dims, (long long)h, gt_shp(x));
    if (!positions) return gt_fail(ctx, GT_ERR_ARG, "rope: NULL positions (x %s)", gt_shp(x));
    if (!(cfg->base > 0) || !isfinite(cfg->base))
        return gt_fail(ctx, GT_ERR_ARG, "rope: base must be positive and finite, got %g (x %s)",
                       cfg->base, gt_shp(x));
    if (!(cfg->scale > 0) || !isfinite(cfg->scale))
        return gt_fail(ctx, GT_ERR_ARG, "rope: scale must be positive and finite, got %g (x %s)",
                       cfg->scale, gt_shp(x));
    gt_tensor *out = gt_op_out(ctx, 4, x->shape, &x, 1);
    rope_saved *s = gt_alloc(ctx, sizeof *s);
    if (!out || !s) return NULL;
    *s = (rope_saved){NULL, NULL, x->shape[0] * x->shape[1], x->shape[2], h, rot / 2};
    s->inv_freq = gt_alloc(ctx, (size_t)(s->half_rot ? s->half_rot : 1) * sizeof(double));
    if (!s->inv_freq) return NULL;
    for (int64_t i = 0; i < s->half_rot; i++)
        s->inv_freq[i] = pow(cfg->base, -2.0 * (double)i / (double)h) / cfg->scale;
    if (out->requires_grad) {
        /* Backward needs the positions after the caller's buffer may be gone. */
        int32_t *copy = gt_alloc(ctx, (size_t)(s->ntok ? s->ntok : 1) * sizeof(int32_t));
        if (!copy) return NULL;
        if (s->ntok) memcpy(copy, positions, (size_t)s->ntok * sizeof(int32_t));
        s->pos = copy;
    } else {
        s->pos = positions;
    }
    int nc = gt_par_chunks(x->size, s->ntok);
    gt_real *scratch = rope_scratch(ctx, s, nc);
    if (!scratch) return NULL;
    rope_apply(s, x->data, out->data, false, false, scratch, nc);
    if (!gt_record(ctx, "rope", rope_backward, out, &x, 1, s, 0)) return NULL; /* a linear map */
    return out;
}
