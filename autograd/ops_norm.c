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
/* cos and sign * sin of position p's angles into cs[0, hr) and cs[hr, 2 hr). */
static void rope_trig(const rope_saved *s, double p, double sign, gt_real *cs) {
    for (int64_t i = 0; i < s->half_rot; i++) {
        double th = p * s->inv_freq[i];
        cs[i] = (gt_real)cos(th);
        cs[s->half_rot + i] = (gt_real)(sign * sin(th));
    }
}

/* tab: NULL, or rope_trig rows of positions p0, p0 + 1, ... (see rope_run) */
static void rope_apply(const rope_saved *s, const gt_real *src, gt_real *dst, bool inverse,
                       bool acc, gt_real *scratch, int nc, const gt_real *tab, int64_t p0) {
    int64_t h2 = s->h / 2, hr = s->half_rot, heads = s->heads, ntok = s->ntok;
    double sign = inverse ? -1.0 : 1.0;
#pragma omp parallel for schedule(static) num_threads(nc) if (nc > 1)
    for (int c = 0; c < nc; c++) {
        gt_real *own = scratch + (int64_t)c * 2 * hr;
        for (int64_t t = ntok * c / nc; t < ntok * (c + 1) / nc; t++) {
            const gt_real *cs = tab ? tab + ((int64_t)s->pos[t] - p0) * 2 * hr : own, *sn = cs + hr;
            if (!tab) rope_trig(s, (double)s->pos[t], sign, own);
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

/* dst (+)= src rotated, as rope_apply. When the tokens hold fewer distinct positions than there
 * are tokens (packed examples restart at 0, batch rows repeat them) the cos/sin rows are made once
 * per position into a table first: the per-token sincos was 2% of the 270M LoRA step. */
static void rope_run(gt_ctx *ctx, const rope_saved *s, const gt_real *src, gt_real *dst, bool inverse, bool acc) {
    int nc = gt_par_chunks(s->ntok * s->heads * s->h, s->ntok);
    int64_t hr = s->half_rot ? s->half_rot : 1, lo = 0, hi = -1;
    for (int64_t t = 0; t < s->ntok; t++) {
        lo = t == 0 || s->pos[t] < lo ? s->pos[t] : lo;
        hi = t == 0 || s->pos[t] > hi ? s->pos[t] : hi;
    }
    int64_t np = hi - lo + 1;
    bool table = np < s->ntok && s->half_rot > 0;
    size_t bytes = (size_t)(nc + (table ? np : 0)) * 2 * (size_t)hr * sizeof(gt_real);
    gt_real *buf = gt_alloc(ctx, bytes), *tab = buf ? buf + nc * 2 * hr : NULL; /* scratch, table */
    if (!buf) return;
    if (table) {
#pragma omp parallel for schedule(static) if (gt_par(np * hr * 16))
        for (int64_t r = 0; r < np; r++) rope_trig(s, (double)(lo + r), inverse ? -1.0 : 1.0, tab + r * 2 * hr);
    }
    rope_apply(s, src, dst, inverse, acc, buf, nc, table ? tab : NULL, lo);
    gt_release(ctx, buf, bytes);
}

static void rope_backward(gt_ctx *ctx, gt_node *node) {
    const rope_saved *s = node->saved;
    bool fresh;
    gt_real *dx = gt_grad_w(ctx, node->in[0], &fresh);
    const gt_real *dy = gt_grad(ctx, node->out);
    if (!gt_ok(ctx)) return;
    rope_run(ctx, s, dy, dx, true, !fresh);
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
    rope_run(ctx, s, x->data, out->data, false, false);
    if (!gt_ok(ctx)) return NULL;
    if (!gt_record(ctx, "rope", rope_backward, out, &x, 1, s, 0)) return NULL; /* a linear map */
    return out;
}
