#include "autograd/ops_linalg.h"

#include <string.h>

#include "autograd/blas.h"

/* ---------------------------------------------------------------- matmul */

typedef struct {
    bool ta, tb, shared_b;  /* shared_b: b is 2-D and used by every batch of a */
    int64_t batch, m, n, k;
} matmul_saved;

static void matmul_backward(gt_ctx *ctx, gt_node *node) {
    const matmul_saved *s = node->saved;
    gt_tensor *a = node->in[0], *b = node->in[1];
    const gt_real *dc = gt_grad(ctx, node->out);
    gt_real *da = gt_needs_grad(a) ? gt_grad(ctx, a) : NULL;
    gt_real *db = gt_needs_grad(b) ? gt_grad(ctx, b) : NULL;
    /* reads: matmul_reads */
    const gt_real *A = db ? gt_saved_data(ctx, node, 0) : NULL;
    const gt_real *B = da ? gt_saved_data(ctx, node, 1) : NULL;
    if (!gt_ok(ctx)) return;
    int m = (int)s->m, n = (int)s->n, k = (int)s->k;
    int lda = s->ta ? m : k, ldb = s->tb ? k : n;
    int64_t sa = s->m * s->k, sb = s->shared_b ? 0 : s->k * s->n, sc = s->m * s->n;
    for (int64_t i = 0; i < s->batch; i++) {
        const gt_real *dci = dc + i * sc;
        if (da) {
            if (!s->ta) gt_gemm(false, !s->tb, m, k, n, 1, dci, n, B + i * sb, ldb, 1, da + i * sa, k);
            else gt_gemm(s->tb, true, k, m, n, 1, B + i * sb, ldb, dci, n, 1, da + i * sa, m);
        }
        if (db) {
            if (!s->tb) gt_gemm(!s->ta, false, k, n, m, 1, A + i * sa, lda, dci, n, 1, db + i * sb, n);
            else gt_gemm(true, s->ta, n, k, m, 1, dci, n, A + i * sa, lda, 1, db + i * sb, k);
        }
    }
}

/* What matmul's backward reads: b for a's gradient, a for b's (a frozen weight: only b). */
static unsigned matmul_reads(const gt_tensor *a, const gt_tensor *b) {
    return (gt_needs_grad(a) ? GT_READ_IN(1) : 0) | (gt_needs_grad(b) ? GT_READ_IN(0) : 0);
}

gt_tensor *gt_matmul(gt_ctx *ctx, gt_tensor *a, gt_tensor *b, bool trans_a, bool trans_b) {
    if (!gt_ok(ctx)) return NULL;
    if (!a || !b) return gt_fail(ctx, GT_ERR_ARG, "matmul: NULL input");
    if (a->ndim < 2 || b->ndim < 2)
        return gt_fail(ctx, GT_ERR_SHAPE, "matmul: operands need 2+ axes, got %s @ %s",
                       gt_shp(a), gt_shp(b));
    int64_t am = a->shape[a->ndim - 2], ak = a->shape[a->ndim - 1];
    int64_t bk = b->shape[b->ndim - 2], bn = b->shape[b->ndim - 1];
    int64_t m = trans_a ? ak : am, k = trans_a ? am : ak;
    int64_t kb = trans_b ? bn : bk, n = trans_b ? bk : bn;
    if (k != kb)
        return gt_fail(ctx, GT_ERR_SHAPE, "matmul: inner dimensions differ: %s%s @ %s%s (%lld vs %lld)",
                       gt_shp(a), trans_a ? "^T" : "", gt_shp(b), trans_b ? "^T" : "",
                       (long long)k, (long long)kb);
    bool shared_b = b->ndim == 2;
    if (!shared_b) {
        bool same = a->ndim == b->ndim;
        for (int i = 0; same && i < a->ndim - 2; i++) same = a->shape[i] == b->shape[i];
        if (!same)
            return gt_fail(ctx, GT_ERR_SHAPE, "matmul: batch axes differ: %s @ %s (b must be 2-D "
                           "or have a's batch axes)", gt_shp(a), gt_shp(b));
    }
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX)
        return gt_fail(ctx, GT_ERR_SHAPE, "matmul: dimension over 2^31: %s @ %s", gt_shp(a), gt_shp(b));
    int64_t batch = (m * k != 0) ? a->size / (m * k) : 0;
    int64_t shape[GT_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[a->ndim - 2] = m;
    shape[a->ndim - 1] = n;
    gt_tensor *in[2] = {a, b};
    gt_tensor *out = gt_op_out(ctx, a->ndim, shape, in, 2);
    if (!out) return NULL;
    matmul_saved *s = gt_alloc(ctx, sizeof *s);
    if (!s) return NULL;
    *s = (matmul_saved){trans_a, trans_b, shared_b, batch, m, n, k};
    /* A shared weight with untransposed a: fold a's batch axes into the rows of one GEMM. */
    if (shared_b && !trans_a && batch > 1) {
        if (batch * m > INT32_MAX)
            return gt_fail(ctx, GT_ERR_SHAPE, "matmul: %s has over 2^31 rows", gt_shp(a));
        s->m = batch * m;
        s->batch = 1;
    }
    if (k == 0) memset(out->data, 0, (size_t)out->size * sizeof(gt_real));
    int im = (int)s->m, in_ = (int)n, ik = (int)k;
    int64_t sa = s->m * k, sb = shared_b ? 0 : k * n, sc = s->m * n;
    for (int64_t i = 0; i < s->batch && k > 0; i++)
        gt_gemm(trans_a, trans_b, im, in_, ik, 1, a->data + i * sa, trans_a ? im : ik,
                b->data + i * sb, trans_b ? ik : in_, 0, out->data + i * sc, in_);
    if (!gt_record(ctx, "matmul", matmul_backward, out, in, 2, s, matmul_reads(a, b))) return NULL;
    return out;
}

/* ---------------------------------------------------------------- transpose */

typedef struct {
    int64_t pre, d0, mid, d1, post;
} transpose_saved;

/* x viewed as [pre, d0, mid, d1, post] -> y [pre, d1, mid, d0, post]; y (+)= permuted x. */
static void transpose_copy(const transpose_saved *s, const gt_real *x, gt_real *y, bool acc) {
    int64_t outer = s->pre * s->d1;
#pragma omp parallel for schedule(static) if (outer * s->mid * s->d0 * s->post > 65536)
    for (int64_t o = 0; o < outer; o++) {
        int64_t p = o / s->d1, j = o % s->d1;
        for (int64_t mm = 0; mm < s->mid; mm++)
            for (int64_t i = 0; i < s->d0; i++) {
                const gt_real *src = x + (((p * s->d0 + i) * s->mid + mm) * s->d1 + j) * s->post;
                gt_real *dst = y + (((p * s->d1 + j) * s->mid + mm) * s->d0 + i) * s->post;
                if (acc)
                    for (int64_t e = 0; e < s->post; e++) dst[e] += src[e];
                else
                    memcpy(dst, src, (size_t)s->post * sizeof(gt_real));
            }
    }
}

static void transpose_backward(gt_ctx *ctx, gt_node *node) {
    const transpose_saved *s = node->saved;
    gt_real *dx = gt_grad(ctx, node->in[0]);
    const gt_real *dy = gt_grad(ctx, node->out);
    if (!gt_ok(ctx)) return;
    /* The inverse permutation swaps the roles of d0 and d1. */
    transpose_saved inv = {s->pre, s->d1, s->mid, s->d0, s->post};
    transpose_copy(&inv, dy, dx, true);
}

gt_tensor *gt_transpose(gt_ctx *ctx, gt_tensor *x, int ax0, int ax1) {
    if (!gt_ok(ctx)) return NULL;
    if (!x) return gt_fail(ctx, GT_ERR_ARG, "transpose: NULL input");
    if (ax0 < 0) ax0 += x->ndim;
    if (ax1 < 0) ax1 += x->ndim;
    if (ax0 < 0 || ax1 < 0 || ax0 >= x->ndim || ax1 >= x->ndim)
        return gt_fail(ctx, GT_ERR_SHAPE, "transpose: axes out of range for %s", gt_shp(x));
    if (ax0 > ax1) {
        int t = ax0;
        ax0 = ax1;
        ax1 = t;
    }
    transpose_saved sv = {1, x->shape[ax0], 1, x->shape[ax1], 1};
    for (int i = 0; i < ax0; i++) sv.pre *= x->shape[i];
    for (int i = ax0 + 1; i < ax1; i++) sv.mid *= x->shape[i];
    for (int i = ax1 + 1; i < x->ndim; i++) sv.post *= x->shape[i];
    int64_t shape[GT_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[ax0] = x->shape[ax1];
    shape[ax1] = x->shape[ax0];
    gt_tensor *out = gt_op_out(ctx, x->ndim, shape, &x, 1);
    transpose_saved *s = gt_alloc(ctx, sizeof *s);
    if (!out || !s) return NULL;
    *s = sv;
    transpose_copy(s, x->data, out->data, false);
    if (!gt_record(ctx, "transpose", transpose_backward, out, &x, 1, s, 0)) return NULL;
    return out;
}

/* ---------------------------------------------------------------- sum / mean */

static void reduce_backward(gt_ctx *ctx, gt_node *node) {
    gt_tensor *x = node->in[0];
    gt_real *dx = gt_grad(ctx, x);
    const gt_real *dy = gt_grad(ctx, node->out);
    if (!gt_ok(ctx)) return;
    gt_real g = dy[0] * *(const gt_real *)node->saved;
    for (int64_t i = 0; i < x->size; i++) dx[i] += g;
}

static gt_tensor *reduce_all(gt_ctx *ctx, gt_tensor *x, bool mean, const char *op) {
    if (!gt_ok(ctx)) return NULL;
    if (!x) return gt_fail(ctx, GT_ERR_ARG, "%s: NULL input", op);
    if (mean && x->size == 0) return gt_fail(ctx, GT_ERR_SHAPE, "mean: empty tensor %s", gt_shp(x));
    gt_tensor *out = gt_op_out(ctx, 0, NULL, &x, 1);
    gt_real *factor = gt_alloc(ctx, sizeof *factor);
    if (!out || !factor) return NULL;
    double acc = 0; /* double accumulator: sums of many fp32 terms stay exact to fp32 */
    for (int64_t i = 0; i < x->size; i++) acc += x->data[i];
    *factor = mean ? (gt_real)(1.0 / (double)x->size) : 1;
    out->data[0] = (gt_real)(mean ? acc / (double)x->size : acc);
    if (!gt_record(ctx, op, reduce_backward, out, &x, 1, factor, 0)) return NULL;
    return out;
}

gt_tensor *gt_sum(gt_ctx *ctx, gt_tensor *x) { return reduce_all(ctx, x, false, "sum"); }
gt_tensor *gt_mean(gt_ctx *ctx, gt_tensor *x) { return reduce_all(ctx, x, true, "mean"); }

/* ---------------------------------------------------------------- embedding */

typedef struct {
    int32_t *ids;
    int64_t n;
} embed_saved;

static void embedding_backward(gt_ctx *ctx, gt_node *node) {
    const embed_saved *s = node->saved;
    gt_tensor *table = node->in[0];
    gt_real *dt = gt_grad(ctx, table);
    const gt_real *dy = gt_grad(ctx, node->out);
    if (!gt_ok(ctx)) return;
    int64_t d = gt_cols(table);
    /* Serial over rows: repeated ids must accumulate without races. */
    for (int64_t i = 0; i < s->n; i++) {
        gt_real *row = dt + (int64_t)s->ids[i] * d;
        const gt_real *g = dy + i * d;
        for (int64_t j = 0; j < d; j++) row[j] += g[j];
    }
}

gt_tensor *gt_embedding(gt_ctx *ctx, gt_tensor *table, const int32_t *ids, int64_t n) {
    if (!gt_ok(ctx)) return NULL;
    if (!table || (!ids && n > 0)) return gt_fail(ctx, GT_ERR_ARG, "embedding: NULL input");
    if (table->ndim != 2)
        return gt_fail(ctx, GT_ERR_SHAPE, "embedding: table must be [V, D], got %s", gt_shp(table));
    if (n < 0) return gt_fail(ctx, GT_ERR_ARG, "embedding: negative id count %lld", (long long)n);
    int64_t v = table->shape[0], d = table->shape[1];
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= v)
            return gt_fail(ctx, GT_ERR_ARG, "embedding: id %d at position %lld outside [0, %lld) "
                           "of table %s", ids[i], (long long)i, (long long)v, gt_shp(table));
    int64_t shape[2] = {n, d};
    gt_tensor *out = gt_op_out(ctx, 2, shape, &table, 1);
    if (!out) return NULL;
#pragma omp parallel for schedule(static) if (n * d > 65536)
    for (int64_t i = 0; i < n; i++)
        memcpy(out->data + i * d, table->data + (int64_t)ids[i] * d, (size_t)d * sizeof(gt_real));
    if (out->requires_grad) {
        embed_saved *s = gt_alloc(ctx, sizeof *s);
        int32_t *copy = gt_alloc(ctx, (size_t)(n ? n : 1) * sizeof(int32_t));
        if (!s || !copy) return NULL;
        if (n) memcpy(copy, ids, (size_t)n * sizeof(int32_t));
        *s = (embed_saved){copy, n};
        if (!gt_record(ctx, "embedding", embedding_backward, out, &table, 1, s, 0)) return NULL;
    }
    return out;
}
