#include "autograd/ops_vit.h"

#include <string.h>
#include <tgmath.h>

#include "autograd/blas.h"

/* ---------------------------------------------------------------- layernorm */

typedef struct {
    gt_real *mean, *rstd; /* [rows] */
    gt_real *g;           /* [D] gamma or ones */
    double eps;
} layernorm_saved;

/* Column sums of dgamma / dbeta over rows, split into nc fixed bands (deterministic) and
 * accumulated in double. With xhat = (x - mean) rstd and dxh = dy g:
 *   dx = rstd (dxh - mean(dxh) - xhat mean(dxh xhat)),  dgamma += dy xhat,  dbeta += dy. */
static void layernorm_backward(gt_ctx *ctx, gt_node *node) {
    const layernorm_saved *sv = node->saved;
    gt_tensor *x = node->in[0], *g = node->in[1], *b = node->in[2];
    const gt_real *dy = gt_grad(ctx, node->out);
    gt_real *dx = gt_needs_grad(x) ? gt_grad(ctx, x) : NULL;
    gt_real *dg = gt_needs_grad(g) ? gt_grad(ctx, g) : NULL;
    gt_real *db = gt_needs_grad(b) ? gt_grad(ctx, b) : NULL;
    const gt_real *X = gt_saved_data(ctx, node, 0);
    if (!gt_ok(ctx) || !X) return;
    int64_t rows = gt_rows(x), d = gt_cols(x);
    int nc = gt_par_chunks(x->size, rows);
    double *part = NULL;
    if (dg || db) {
        size_t n = (size_t)nc * 2 * (size_t)d;
        if (!(part = gt_alloc(ctx, n * sizeof(double)))) return;
        memset(part, 0, n * sizeof(double));
    }
#pragma omp parallel for schedule(static) num_threads(nc) if (nc > 1)
    for (int c = 0; c < nc; c++) {
        double *pg = part ? part + (int64_t)c * 2 * d : NULL, *pb = pg ? pg + d : NULL;
        for (int64_t r = rows * c / nc; r < rows * (c + 1) / nc; r++) {
            const gt_real *xr = X + r * d, *gy = dy + r * d;
            gt_real mu = sv->mean[r], rs = sv->rstd[r];
            if (dx) {
                double s1 = 0, s2 = 0;
                for (int64_t j = 0; j < d; j++) {
                    double dxh = (double)gy[j] * sv->g[j];
                    s1 += dxh;
                    s2 += dxh * (double)((xr[j] - mu) * rs);
                }
                gt_real m1 = (gt_real)(s1 / (double)d), m2 = (gt_real)(s2 / (double)d);
                gt_real *o = dx + r * d;
                for (int64_t j = 0; j < d; j++)
                    o[j] += rs * (gy[j] * sv->g[j] - m1 - (xr[j] - mu) * rs * m2);
            }
            if (pg)
                for (int64_t j = 0; j < d; j++) {
                    pg[j] += (double)(gy[j] * (xr[j] - mu) * rs);
                    pb[j] += (double)gy[j];
                }
        }
    }
    for (int64_t j = 0; part && j < d; j++) {
        double ag = 0, ab = 0;
        for (int c = 0; c < nc; c++) {
            ag += part[(int64_t)c * 2 * d + j];
            ab += part[(int64_t)c * 2 * d + d + j];
        }
        if (dg) dg[j] += (gt_real)ag;
        if (db) db[j] += (gt_real)ab;
    }
}

static bool ln_param_ok(const gt_tensor *p, int64_t d) {
    return !p || (p->ndim == 1 && p->shape[0] == d);
}

gt_tensor *gt_layernorm(gt_ctx *ctx, gt_tensor *x, gt_tensor *gamma, gt_tensor *beta, double eps) {
    if (!gt_ok(ctx)) return NULL;
    if (!x) return gt_fail(ctx, GT_ERR_ARG, "layernorm: NULL input");
    if (x->ndim < 1 || gt_cols(x) < 1)
        return gt_fail(ctx, GT_ERR_SHAPE, "layernorm: x %s needs a non-empty last axis", gt_shp(x));
    int64_t d = gt_cols(x), rows = gt_rows(x);
    if (!ln_param_ok(gamma, d) || !ln_param_ok(beta, d))
        return gt_fail(ctx, GT_ERR_SHAPE, "layernorm: gamma %s and beta %s must be [%lld] for x %s",
                       gt_shp(gamma), gt_shp(beta), (long long)d, gt_shp(x));
    if (!(eps >= 0) || !isfinite(eps))
        return gt_fail(ctx, GT_ERR_ARG, "layernorm: eps must be finite and >= 0, got %g (x %s)",
                       eps, gt_shp(x));
    gt_tensor *in[3] = {x, gamma, beta};
    gt_tensor *out = gt_op_out(ctx, x->ndim, x->shape, in, 3);
    size_t nr = (size_t)(rows ? rows : 1);
    gt_real *g = gt_alloc(ctx, (size_t)d * sizeof(gt_real));
    gt_real *mean = out && out->requires_grad ? gt_alloc(ctx, nr * sizeof(gt_real)) : NULL;
    gt_real *rstd = mean ? gt_alloc(ctx, nr * sizeof(gt_real)) : NULL;
    if (!out || !g || (out->requires_grad && !rstd)) return NULL;
    for (int64_t j = 0; j < d; j++) g[j] = gamma ? gamma->data[j] : 1;
    const gt_real *X = x->data, *B = beta ? beta->data : NULL;
    gt_real *Y = out->data;
#pragma omp parallel for schedule(static) if (gt_par_chunks(x->size, rows) > 1)
    for (int64_t r = 0; r < rows; r++) {
        const gt_real *xr = X + r * d;
        gt_real *yr = Y + r * d;
        double s = 0, ss = 0; /* two passes in double: the variance of large-mean rows stays exact */
        for (int64_t j = 0; j < d; j++) s += (double)xr[j];
        double mu = s / (double)d;
        for (int64_t j = 0; j < d; j++) ss += ((double)xr[j] - mu) * ((double)xr[j] - mu);
        gt_real m = (gt_real)mu, rs = (gt_real)(1.0 / sqrt(ss / (double)d + eps));
        for (int64_t j = 0; j < d; j++) yr[j] = (xr[j] - m) * rs * g[j] + (B ? B[j] : 0);
        if (rstd) mean[r] = m, rstd[r] = rs;
    }
    if (out->requires_grad) {
        layernorm_saved *sv = gt_alloc(ctx, sizeof *sv);
        if (!sv) return NULL;
        *sv = (layernorm_saved){mean, rstd, g, eps};
        if (!gt_record(ctx, "layernorm", layernorm_backward, out, in, 3, sv, GT_READ_IN(0)))
            return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- avgpool2d */

typedef struct {
    int64_t width, pool;
} avgpool_saved;

/* Forward (acc false): out cell = mean of its pool x pool tokens. Backward (acc true): each
 * token of a cell gets the cell's gradient / pool^2. One loop serves both, cell by cell. */
static void avgpool_run(const avgpool_saved *s, int64_t batch, int64_t d, const gt_real *src,
                        gt_real *dst, bool backward) {
    int64_t w = s->width, p = s->pool, r = w / p;
    gt_real inv = (gt_real)(1.0 / (double)(p * p));
#pragma omp parallel for collapse(2) schedule(static) if (batch * w * w * d >= GT_PAR_MIN)
    for (int64_t b = 0; b < batch; b++)
        for (int64_t cell = 0; cell < r * r; cell++) {
            int64_t ci = cell / r, cj = cell % r;
            gt_real *pooled = backward ? NULL : dst + (b * r * r + cell) * d;
            const gt_real *gcell = backward ? src + (b * r * r + cell) * d : NULL;
            if (pooled) memset(pooled, 0, (size_t)d * sizeof(gt_real));
            for (int64_t u = 0; u < p; u++)
                for (int64_t v = 0; v < p; v++) {
                    int64_t tok = b * w * w + (ci * p + u) * w + cj * p + v;
                    if (backward)
                        for (int64_t k = 0; k < d; k++) dst[tok * d + k] += gcell[k] * inv;
                    else
                        for (int64_t k = 0; k < d; k++) pooled[k] += src[tok * d + k];
                }
            if (pooled)
                for (int64_t k = 0; k < d; k++) pooled[k] *= inv;
        }
}

static void avgpool_backward(gt_ctx *ctx, gt_node *node) {
    const avgpool_saved *s = node->saved;
    gt_tensor *x = node->in[0];
    gt_real *dx = gt_grad(ctx, x);
    const gt_real *dy = gt_grad(ctx, node->out);
    if (!gt_ok(ctx)) return;
    avgpool_run(s, x->shape[0], x->shape[2], dy, dx, true);
}

gt_tensor *gt_avgpool2d(gt_ctx *ctx, gt_tensor *x, int64_t width, int64_t pool) {
    if (!gt_ok(ctx)) return NULL;
    if (!x) return gt_fail(ctx, GT_ERR_ARG, "avgpool2d: NULL input");
    if (x->ndim != 3 || width < 1 || x->shape[1] != width * width)
        return gt_fail(ctx, GT_ERR_SHAPE, "avgpool2d: x %s must be [B, W*W, D] with W = %lld",
                       gt_shp(x), (long long)width);
    if (pool < 1 || pool > width)
        return gt_fail(ctx, GT_ERR_ARG, "avgpool2d: pool %lld must be in [1, W = %lld] (x %s)",
                       (long long)pool, (long long)width, gt_shp(x));
    int64_t r = width / pool, shape[3] = {x->shape[0], r * r, x->shape[2]};
    gt_tensor *out = gt_op_out(ctx, 3, shape, &x, 1);
    if (!out) return NULL;
    avgpool_saved loc = {width, pool};
    avgpool_run(&loc, x->shape[0], x->shape[2], x->data, out->data, false);
    if (out->requires_grad) {
        avgpool_saved *s = gt_alloc(ctx, sizeof *s);
        if (!s) return NULL;
        *s = loc;
        if (!gt_record(ctx, "avgpool2d", avgpool_backward, out, &x, 1, s, 0)) return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- put_rows */

typedef struct {
    int32_t *pos; /* [n] a copy */
    int64_t n;
} put_saved;

static void put_rows_backward(gt_ctx *ctx, gt_node *node) {
    const put_saved *s = node->saved;
    gt_tensor *x = node->in[0], *src = node->in[1];
    const gt_real *dy = gt_grad(ctx, node->out);
    gt_real *dx = gt_needs_grad(x) ? gt_grad(ctx, x) : NULL;
    gt_real *ds = gt_needs_grad(src) ? gt_grad(ctx, src) : NULL;
    if (!gt_ok(ctx)) return;
    int64_t d = gt_cols(x), rows = gt_rows(x);
    if (dx) {
        /* every row but the replaced ones passes its gradient through */
        uint8_t *hit = gt_alloc(ctx, (size_t)rows);
        if (!hit) return;
        memset(hit, 0, (size_t)rows);
        for (int64_t i = 0; i < s->n; i++) hit[s->pos[i]] = 1;
        for (int64_t r = 0; r < rows; r++)
            if (!hit[r])
                for (int64_t j = 0; j < d; j++) dx[r * d + j] += dy[r * d + j];
        gt_release(ctx, hit, (size_t)rows);
    }
    if (ds)
        for (int64_t i = 0; i < s->n; i++)
            for (int64_t j = 0; j < d; j++) ds[i * d + j] += dy[(int64_t)s->pos[i] * d + j];
}

gt_tensor *gt_put_rows(gt_ctx *ctx, gt_tensor *x, gt_tensor *src, const int32_t *pos, int64_t n) {
    if (!gt_ok(ctx)) return NULL;
    if (!x || !src || (n > 0 && !pos))
        return gt_fail(ctx, GT_ERR_ARG, "put_rows: NULL input (x %s, src %s)", gt_shp(x), gt_shp(src));
    int64_t d = gt_cols(x), rows = gt_rows(x);
    if (x->ndim < 1 || gt_cols(src) != d || gt_rows(src) != n)
        return gt_fail(ctx, GT_ERR_SHAPE, "put_rows: src %s must be [%lld, %lld] for x %s",
                       gt_shp(src), (long long)n, (long long)d, gt_shp(x));
    uint8_t *seen = gt_alloc(ctx, (size_t)(rows ? rows : 1));
    if (!seen) return NULL;
    memset(seen, 0, (size_t)rows);
    for (int64_t i = 0; i < n; i++) {
        if (pos[i] < 0 || pos[i] >= rows || seen[pos[i]]) {
            gt_release(ctx, seen, (size_t)(rows ? rows : 1));
            return gt_fail(ctx, GT_ERR_ARG, "put_rows: position %d (entry %lld) %s for x %s", pos[i],
                           (long long)i, pos[i] < 0 || pos[i] >= rows ? "out of range" : "repeated",
                           gt_shp(x));
        }
        seen[pos[i]] = 1;
    }
    gt_release(ctx, seen, (size_t)(rows ? rows : 1));
    gt_tensor *in[2] = {x, src};
    gt_tensor *out = gt_op_out(ctx, x->ndim, x->shape, in, 2);
    if (!out) return NULL;
    memcpy(out->data, x->data, (size_t)x->size * sizeof(gt_real));
    for (int64_t i = 0; i < n; i++)
        memcpy(out->data + (int64_t)pos[i] * d, src->data + i * d, (size_t)d * sizeof(gt_real));
    if (out->requires_grad) {
        put_saved *s = gt_alloc(ctx, sizeof *s);
        int32_t *p = gt_alloc(ctx, (size_t)(n ? n : 1) * sizeof(int32_t));
        if (!s || !p) return NULL;
        if (n) memcpy(p, pos, (size_t)n * sizeof(int32_t));
        *s = (put_saved){p, n};
        if (!gt_record(ctx, "put_rows", put_rows_backward, out, in, 2, s, 0)) return NULL;
    }
    return out;
}
