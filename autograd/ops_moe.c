#include "autograd/ops_moe.h"

#include <string.h>
#include <tgmath.h>

#include "autograd/blas.h"
#include "autograd/rowmath.h"

/* Below this many elements a loop runs on one thread (as ops_elem.c). The loops below write
 * disjoint rows, so threading does not change results. */

/* ---------------------------------------------------------------- route */

typedef struct {
    gt_moe_plan plan;
    gt_real *q; /* [T, k] renormalised probabilities, before the per-expert scale */
} route_saved;

/* The k largest of row z (E values) into idx, best first; ties go to the lower index. */
static void top_k(const gt_real *z, int64_t E, int64_t k, int32_t *idx) {
    for (int64_t j = 0; j < k; j++) {
        int64_t best = -1;
        for (int64_t e = 0; e < E; e++) {
            bool taken = false;
            for (int64_t i = 0; i < j && !taken; i++) taken = idx[i] == e;
            if (!taken && (best < 0 || z[e] > z[best])) best = e;
        }
        idx[j] = (int32_t)best;
    }
}

/* Group the T*k assignments by expert, in (token, slot) order within each expert. */
static void group(gt_moe_plan *p) {
    int64_t n = p->tokens * p->k;
    memset(p->start, 0, (size_t)(p->experts + 1) * sizeof *p->start);
    for (int64_t a = 0; a < n; a++) p->start[p->idx[a] + 1]++;
    for (int64_t e = 0; e < p->experts; e++) p->start[e + 1] += p->start[e];
    for (int64_t e = 0; e < p->experts; e++) p->row[e] = p->start[e]; /* row[] as cursors first */
    for (int64_t a = 0; a < n; a++) p->slot[p->row[p->idx[a]]++] = a;
    for (int64_t r = 0; r < n; r++) p->row[p->slot[r]] = r;
}

static void route_backward(gt_ctx *ctx, gt_node *node) {
    gt_tensor *logits = node->in[0], *scale = node->n_in > 1 ? node->in[1] : NULL;
    const route_saved *s = node->saved;
    const gt_moe_plan *p = &s->plan;
    int64_t T = p->tokens, k = p->k, E = p->experts;
    const gt_real *dw = gt_grad(ctx, node->out);
    gt_real *dl = gt_needs_grad(logits) ? gt_grad(ctx, logits) : NULL;
    gt_real *ds = gt_needs_grad(scale) ? gt_grad(ctx, scale) : NULL;
    const gt_real *S = scale && dl ? gt_saved_data(ctx, node, 1) : NULL;
    if (!gt_ok(ctx)) return;
    for (int64_t t = 0; t < T; t++) {
        const int32_t *idx = p->idx + t * k;
        const gt_real *q = s->q + t * k, *g = dw + t * k;
        if (ds)
            for (int64_t j = 0; j < k; j++) ds[idx[j]] += g[j] * q[j];
        if (!dl) continue;
        /* q = softmax over the chosen logits: dl_e = q_e (dq_e - sum_i q_i dq_i) */
        double dot = 0;
        for (int64_t j = 0; j < k; j++) dot += (double)q[j] * g[j] * (S ? S[idx[j]] : 1);
        for (int64_t j = 0; j < k; j++)
            dl[t * E + idx[j]] += q[j] * (g[j] * (S ? S[idx[j]] : 1) - (gt_real)dot);
    }
}

static bool alloc_plan(gt_ctx *ctx, gt_moe_plan *p, int64_t T, int64_t k, int64_t E) {
    *p = (gt_moe_plan){T, k, E, NULL, NULL, NULL, NULL};
    p->idx = gt_alloc(ctx, (size_t)(T * k) * sizeof *p->idx);
    p->start = gt_alloc(ctx, (size_t)(E + 1) * sizeof *p->start);
    p->slot = gt_alloc(ctx, (size_t)(T * k) * sizeof *p->slot);
    p->row = gt_alloc(ctx, (size_t)(T * k > E ? T * k : E) * sizeof *p->row);
    return p->idx && p->start && p->slot && p->row;
}

gt_tensor *gt_moe_route(gt_ctx *ctx, gt_tensor *logits, gt_tensor *scale, int64_t k,
                        const gt_moe_plan **plan) {
    if (!gt_ok(ctx)) return NULL;
    if (!logits) return gt_fail(ctx, GT_ERR_ARG, "moe_route: NULL logits");
    int64_t E = gt_cols(logits), T = gt_rows(logits);
    if (k < 1 || k > E) return gt_fail(ctx, GT_ERR_ARG, "moe_route: k = %lld outside [1, %lld]", (long long)k, (long long)E);
    if (scale && scale->size != E)
        return gt_fail(ctx, GT_ERR_SHAPE, "moe_route: scale %s for logits %s", gt_shp(scale), gt_shp(logits));
    route_saved *s = gt_alloc(ctx, sizeof *s);
    if (!s || !alloc_plan(ctx, &s->plan, T, k, E)) return NULL;
    s->q = gt_alloc(ctx, (size_t)(T * k) * sizeof *s->q);
    gt_tensor *in[2] = {logits, scale};
    int64_t shape[2] = {T, k};
    gt_tensor *out = s->q ? gt_op_out(ctx, 2, shape, in, scale ? 2 : 1) : NULL;
    if (!out) return NULL;
    for (int64_t t = 0; t < T; t++) {
        const gt_real *z = logits->data + t * E;
        int32_t *idx = s->plan.idx + t * k;
        top_k(z, E, k, idx);
        /* the full softmax's normaliser cancels in the renormalisation; keep its max shift */
        double sum = 0, e[64], *ev = k <= 64 ? e : NULL;
        for (int64_t j = 0; j < k; j++) {
            double v = exp((double)z[idx[j]] - (double)z[idx[0]]);
            if (ev) ev[j] = v;
            sum += v;
        }
        for (int64_t j = 0; j < k; j++) {
            double v = ev ? ev[j] : exp((double)z[idx[j]] - (double)z[idx[0]]);
            s->q[t * k + j] = (gt_real)(v / sum);
            out->data[t * k + j] = s->q[t * k + j] * (scale ? scale->data[idx[j]] : 1);
        }
    }
    group(&s->plan);
    *plan = &s->plan;
    if (!gt_record(ctx, "moe_route", route_backward, out, in, scale ? 2 : 1, s, scale ? GT_READ_IN(1) : 0))
        return NULL;
    return out;
}

/* ---------------------------------------------------------------- up: gelu(x gate^T) * (x up^T) */

typedef struct {
    const gt_moe_plan *plan;
    gt_real *g, *u; /* [T*k, Fe] pre-activations, grouped rows */
} up_saved;

/* Rows of x routed to expert e, gathered into xe [n, D]. */
static void gather(const gt_moe_plan *p, int64_t e, const gt_real *x, int64_t D, gt_real *xe) {
    for (int64_t r = p->start[e]; r < p->start[e + 1]; r++)
        memcpy(xe + (r - p->start[e]) * D, x + (p->slot[r] / p->k) * D, (size_t)D * sizeof *x);
}

static void up_backward(gt_ctx *ctx, gt_node *node) {
    gt_tensor *x = node->in[0], *gate = node->in[1], *up = node->in[2];
    const up_saved *s = node->saved;
    const gt_moe_plan *p = s->plan;
    int64_t D = gt_cols(x), Fe = gate->shape[0] / p->experts, n = p->tokens * p->k;
    const gt_real *dh = gt_grad(ctx, node->out);
    gt_real *dx = gt_needs_grad(x) ? gt_grad(ctx, x) : NULL;
    gt_real *dg = gt_needs_grad(gate) ? gt_grad(ctx, gate) : NULL;
    gt_real *du = gt_needs_grad(up) ? gt_grad(ctx, up) : NULL;
    const gt_real *X = dg || du ? gt_saved_data(ctx, node, 0) : NULL;
    const gt_real *G = dx ? gt_saved_data(ctx, node, 1) : NULL, *U = dx ? gt_saved_data(ctx, node, 2) : NULL;
    gt_real *xe = gt_alloc(ctx, (size_t)((n ? n : 1) * (D + 2 * Fe)) * sizeof *xe);
    if (!gt_ok(ctx)) return;
    gt_real *dgp = xe + n * D, *dup = dgp + n * Fe; /* d pre-activations, grouped rows */
#pragma omp parallel for schedule(static) if (gt_par(n * Fe))
    for (int64_t i = 0; i < n * Fe; i++) {
        gt_real g = s->g[i], sg = gt_gelu_sig(g);
        dgp[i] = dh[i] * s->u[i] * gt_gelu_der(g, sg);
        dup[i] = dh[i] * (g * sg);
    }
    for (int64_t e = 0; e < p->experts; e++) {
        int64_t r0 = p->start[e], ne = p->start[e + 1] - r0;
        if (!ne) continue; /* an expert no token chose: no work, no gradient */
        const gt_real *a = dgp + r0 * Fe, *b = dup + r0 * Fe;
        if (X) gather(p, e, X, D, xe);
        if (dg) gt_gemm(true, false, (int)Fe, (int)D, (int)ne, 1, a, (int)Fe, xe, (int)D, 1, dg + e * Fe * D, (int)D);
        if (du) gt_gemm(true, false, (int)Fe, (int)D, (int)ne, 1, b, (int)Fe, xe, (int)D, 1, du + e * Fe * D, (int)D);
        if (!dx) continue;
        gt_gemm(false, false, (int)ne, (int)D, (int)Fe, 1, a, (int)Fe, G + e * Fe * D, (int)D, 0, xe, (int)D);
        gt_gemm(false, false, (int)ne, (int)D, (int)Fe, 1, b, (int)Fe, U + e * Fe * D, (int)D, 1, xe, (int)D);
        for (int64_t r = 0; r < ne; r++) {
            gt_real *o = dx + (p->slot[r0 + r] / p->k) * D;
            const gt_real *v = xe + r * D;
            for (int64_t d = 0; d < D; d++) o[d] += v[d];
        }
    }
    gt_release(ctx, xe, (size_t)((n ? n : 1) * (D + 2 * Fe)) * sizeof *xe);
}

gt_tensor *gt_moe_up(gt_ctx *ctx, gt_tensor *x, gt_tensor *gate, gt_tensor *up, const gt_moe_plan *p) {
    if (!gt_ok(ctx)) return NULL;
    if (!x || !gate || !up || !p) return gt_fail(ctx, GT_ERR_ARG, "moe_up: NULL input");
    int64_t D = gt_cols(x), E = p->experts, n = p->tokens * p->k;
    if (gt_rows(x) != p->tokens || gate->ndim != 2 || gate->shape[1] != D || gate->shape[0] % E ||
        !gt_shape_eq(gate, up))
        return gt_fail(ctx, GT_ERR_SHAPE, "moe_up: x %s, gate %s, up %s for %lld tokens and %lld experts",
                       gt_shp(x), gt_shp(gate), gt_shp(up), (long long)p->tokens, (long long)E);
    int64_t Fe = gate->shape[0] / E, shape[2] = {n, Fe};
    gt_tensor *in[3] = {x, gate, up};
    up_saved *s = gt_alloc(ctx, sizeof *s);
    gt_real *xe = gt_alloc(ctx, (size_t)((n ? n : 1) * D) * sizeof *xe);
    if (!s || !xe) return NULL;
    s->plan = p;
    s->g = gt_alloc(ctx, (size_t)((n ? n : 1) * Fe) * sizeof *s->g);
    s->u = gt_alloc(ctx, (size_t)((n ? n : 1) * Fe) * sizeof *s->u);
    gt_tensor *out = s->g && s->u ? gt_op_out(ctx, 2, shape, in, 3) : NULL;
    if (!out) return NULL;
    for (int64_t e = 0; e < E; e++) {
        int64_t r0 = p->start[e], ne = p->start[e + 1] - r0;
        if (!ne) continue;
        gather(p, e, x->data, D, xe);
        gt_gemm(false, true, (int)ne, (int)Fe, (int)D, 1, xe, (int)D, gate->data + e * Fe * D, (int)D, 0,
                s->g + r0 * Fe, (int)Fe);
        gt_gemm(false, true, (int)ne, (int)Fe, (int)D, 1, xe, (int)D, up->data + e * Fe * D, (int)D, 0,
                s->u + r0 * Fe, (int)Fe);
    }
#pragma omp parallel for schedule(static) if (gt_par(n * Fe))
    for (int64_t i = 0; i < n * Fe; i++) out->data[i] = s->g[i] * gt_gelu_sig(s->g[i]) * s->u[i];
    gt_release(ctx, xe, (size_t)((n ? n : 1) * D) * sizeof *xe);
    unsigned reads = (gt_needs_grad(gate) || gt_needs_grad(up) ? GT_READ_IN(0) : 0) |
                     (gt_needs_grad(x) ? GT_READ_IN(1) | GT_READ_IN(2) : 0);
    if (!gt_record(ctx, "moe_up", up_backward, out, in, 3, s, reads)) return NULL;
    return out;
}

/* ---------------------------------------------------------------- down: combine w (h down^T) */

typedef struct {
    const gt_moe_plan *plan;
    gt_real *o; /* [T*k, D] expert outputs before the weights, grouped rows */
} down_saved;

static void down_backward(gt_ctx *ctx, gt_node *node) {
    gt_tensor *h = node->in[0], *down = node->in[1], *w = node->in[2];
    const down_saved *s = node->saved;
    const gt_moe_plan *p = s->plan;
    int64_t Fe = gt_cols(h), D = down->shape[0] / p->experts, k = p->k, n = p->tokens * k;
    const gt_real *dy = gt_grad(ctx, node->out);
    gt_real *dh = gt_needs_grad(h) ? gt_grad(ctx, h) : NULL;
    gt_real *dd = gt_needs_grad(down) ? gt_grad(ctx, down) : NULL;
    gt_real *dw = gt_needs_grad(w) ? gt_grad(ctx, w) : NULL;
    const gt_real *H = dd ? gt_saved_data(ctx, node, 0) : NULL, *Wd = dh ? gt_saved_data(ctx, node, 1) : NULL;
    const gt_real *W = dh || dd ? gt_saved_data(ctx, node, 2) : NULL;
    gt_real *dO = dh || dd ? gt_alloc(ctx, (size_t)((n ? n : 1) * D) * sizeof *dO) : NULL;
    if (!gt_ok(ctx)) return;
#pragma omp parallel for schedule(static) if (gt_par(n * D))
    for (int64_t r = 0; r < n; r++) {
        int64_t a = p->slot[r];
        const gt_real *g = dy + (a / k) * D, *o = s->o + r * D;
        if (dw) {
            double acc = 0;
            for (int64_t d = 0; d < D; d++) acc += (double)o[d] * g[d];
            dw[a] += (gt_real)acc;
        }
        if (dO)
            for (int64_t d = 0; d < D; d++) dO[r * D + d] = W[a] * g[d];
    }
    if (!dO) return;
    for (int64_t e = 0; e < p->experts; e++) {
        int64_t r0 = p->start[e], ne = p->start[e + 1] - r0;
        if (!ne) continue;
        if (dd) gt_gemm(true, false, (int)D, (int)Fe, (int)ne, 1, dO + r0 * D, (int)D, H + r0 * Fe, (int)Fe, 1,
                        dd + e * D * Fe, (int)Fe);
        if (dh) gt_gemm(false, false, (int)ne, (int)Fe, (int)D, 1, dO + r0 * D, (int)D, Wd + e * D * Fe, (int)Fe, 1,
                        dh + r0 * Fe, (int)Fe);
    }
    gt_release(ctx, dO, (size_t)((n ? n : 1) * D) * sizeof *dO);
}

gt_tensor *gt_moe_down(gt_ctx *ctx, gt_tensor *h, gt_tensor *down, gt_tensor *w, const gt_moe_plan *p) {
    if (!gt_ok(ctx)) return NULL;
    if (!h || !down || !w || !p) return gt_fail(ctx, GT_ERR_ARG, "moe_down: NULL input");
    int64_t E = p->experts, k = p->k, n = p->tokens * k, Fe = gt_cols(h);
    if (gt_rows(h) != n || down->ndim != 2 || down->shape[1] != Fe || down->shape[0] % E || w->size != n)
        return gt_fail(ctx, GT_ERR_SHAPE, "moe_down: h %s, down %s, w %s for %lld tokens x %lld experts",
                       gt_shp(h), gt_shp(down), gt_shp(w), (long long)p->tokens, (long long)k);
    int64_t D = down->shape[0] / E, shape[2] = {p->tokens, D};
    gt_tensor *in[3] = {h, down, w};
    down_saved *s = gt_alloc(ctx, sizeof *s);
    if (!s) return NULL;
    s->plan = p;
    s->o = gt_alloc(ctx, (size_t)((n ? n : 1) * D) * sizeof *s->o);
    gt_tensor *out = s->o ? gt_op_out(ctx, 2, shape, in, 3) : NULL;
    if (!out) return NULL;
    for (int64_t e = 0; e < E; e++) {
        int64_t r0 = p->start[e], ne = p->start[e + 1] - r0;
        if (ne) gt_gemm(false, true, (int)ne, (int)D, (int)Fe, 1, h->data + r0 * Fe, (int)Fe, down->data + e * D * Fe,
                        (int)Fe, 0, s->o + r0 * D, (int)D);
    }
    /* combine per token in slot order: the sum does not depend on the grouping */
#pragma omp parallel for schedule(static) if (gt_par(p->tokens * k * D))
    for (int64_t t = 0; t < p->tokens; t++) {
        gt_real *y = out->data + t * D;
        memset(y, 0, (size_t)D * sizeof *y);
        for (int64_t j = 0; j < k; j++) {
            const gt_real *o = s->o + p->row[t * k + j] * D;
            gt_real c = w->data[t * k + j];
            for (int64_t d = 0; d < D; d++) y[d] += c * o[d];
        }
    }
    unsigned reads = (gt_needs_grad(down) ? GT_READ_IN(0) : 0) | (gt_needs_grad(h) ? GT_READ_IN(1) : 0) |
                     (gt_needs_grad(h) || gt_needs_grad(down) ? GT_READ_IN(2) : 0);
    if (!gt_record(ctx, "moe_down", down_backward, out, in, 3, s, reads)) return NULL;
    return out;
}
