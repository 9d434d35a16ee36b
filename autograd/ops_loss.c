#include "autograd/ops_loss.h"

#include <math.h>
#include <string.h>
#include <tgmath.h>

#include "autograd/blas.h"

/* Per row the forward keeps the max m and 1/s with s = sum_j exp(z_j - m) (logsumexp =
 * m + log s, stored in two parts so that backward's p_j = exp(z_j - m) / s repeats the
 * forward's exponentials exactly and never rounds a large logsumexp). */
typedef struct {
    int64_t n, v;
    int32_t *labels;   /* copies: the caller's buffers may be gone by backward */
    gt_real *weights;  /* NULL = all ones */
    gt_real *rmax;
    double *inv_sum;
} ce_saved;

/* Rows handed to one OpenMP task: about 16k logits, so short rows are batched. */
static int64_t rows_per_chunk(int64_t v) { return v >= 16384 ? 1 : 16384 / (v ? v : 1); }

#ifdef GT_REAL_DOUBLE
/* The fp64 engine is the gradient-check reference: plain loops, libm exp. */

static gt_real row_max(const gt_real *z, int64_t v) {
    gt_real m = -INFINITY;
    for (int64_t j = 0; j < v; j++)
        if (z[j] > m) m = z[j];
    return m;
}

static double row_sum_exp(const gt_real *z, int64_t v, gt_real m) {
    double s = 0;
    for (int64_t j = 0; j < v; j++) s += exp(z[j] - m);
    return s;
}

/* dz_j += c * exp(z_j - m) */
static void row_add_exp(gt_real *dz, const gt_real *z, int64_t v, gt_real m, gt_real c) {
    for (int64_t j = 0; j < v; j++) dz[j] += c * exp(z[j] - m);
}

#else
/* fp32: the rows are 262144 logits long and libm's scalar expf costs several ns each, more
 * than the memory traffic; so exp is evaluated 16 lanes at a time with GCC vector extensions
 * (lowered to AVX-512, AVX2 or SSE by -march). Max error about 1e-7 relative (1 ulp). */

#define VL 16
typedef float vf __attribute__((vector_size(VL * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VL * sizeof(int32_t))));
typedef uint32_t vu __attribute__((vector_size(VL * sizeof(uint32_t))));
typedef double vd __attribute__((vector_size(VL * sizeof(double))));

static inline vf vload(const float *p) {
    vf x;
    memcpy(&x, p, sizeof x);
    return x;
}

/* Partial last block: the missing lanes read as fill. */
static inline vf vload_tail(const float *p, int64_t cnt, float fill) {
    float buf[VL];
    for (int l = 0; l < VL; l++) buf[l] = l < cnt ? p[l] : fill;
    return vload(buf);
}

/* exp(x) for x <= 0 (the max-subtracted logits): 0 below -87 (under 2e-38, far below the
 * rounding of a sum that holds at least 1), NaN stays NaN. x = k ln2 + r, |r| <= ln2/2,
 * exp(r) by its degree-7 Taylor polynomial (truncation < 5e-9), 2^k built in the exponent. */
static inline vf vexp(vf x) {
    const vf magic = (vf){0} + 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    vf t = x * 1.44269504088896341f + magic;
    vf k = t - magic;
    vf r = x - k * 0.693145751953125f;     /* ln2 split: k * hi is exact for |k| < 256 */
    r = r - k * 1.428606765330187045e-06f;
    vf p = r * (1.0f / 5040) + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    vu ku = (vu)t - (vu)magic;              /* the integer k in t's low mantissa bits */
    vf y = p * (vf)((ku + 127u) << 23);
    vi under = x < -87.0f;
    return (vf)((vu)y & ~(vu)under);
}

static gt_real row_max(const float *z, int64_t v) {
    vf m = (vf){0} - INFINITY;
    int64_t j = 0;
    for (; j + VL <= v; j += VL) {
        vf x = vload(z + j);
        vi gt = x > m; /* NaN compares false: skipped here, it surfaces in the sum */
        m = (vf)(((vi)x & gt) | ((vi)m & ~gt));
    }
    float r = -INFINITY;
    for (int l = 0; l < VL; l++)
        if (m[l] > r) r = m[l];
    for (; j < v; j++)
        if (z[j] > r) r = z[j];
    return r;
}

static double row_sum_exp(const float *z, int64_t v, float m) {
    vd acc = {0};
    int64_t j = 0;
    for (; j + VL <= v; j += VL) acc += __builtin_convertvector(vexp(vload(z + j) - m), vd);
    if (j < v) acc += __builtin_convertvector(vexp(vload_tail(z + j, v - j, -INFINITY) - m), vd);
    double s = 0;
    for (int l = 0; l < VL; l++) s += acc[l];
    return s;
}

static void row_add_exp(float *dz, const float *z, int64_t v, float m, float c) {
    int64_t j = 0;
    for (; j + VL <= v; j += VL) {
        vf d = vload(dz + j) + c * vexp(vload(z + j) - m);
        memcpy(dz + j, &d, sizeof d);
    }
    if (j < v) {
        vf e = vexp(vload_tail(z + j, v - j, -INFINITY) - m);
        for (int64_t l = 0; l < v - j; l++) dz[j + l] += c * e[l];
    }
}
#endif

static void ce_backward(gt_ctx *ctx, gt_node *node) {
    const ce_saved *s = node->saved;
    gt_tensor *logits = node->in[0];
    gt_real *dz = gt_grad(ctx, logits);
    const gt_real *dout = gt_grad(ctx, node->out);
    if (!gt_ok(ctx)) return;
    const gt_real g = dout[0];
    const int64_t n = s->n, v = s->v;
    const gt_real *z = logits->data;
    int nt = gt_threads();
#pragma omp parallel for schedule(dynamic, rows_per_chunk(v)) num_threads(nt) if (n * v > 32768)
    for (int64_t i = 0; i < n; i++) {
        gt_real w = s->weights ? s->weights[i] : 1;
        if (w == 0) continue;
        gt_real c = g * w;
        /* dz_j += c (p_j - [j == y]), p_j = exp(z_j - m) / s */
        row_add_exp(dz + i * v, z + i * v, v, s->rmax[i], (gt_real)(c * s->inv_sum[i]));
        dz[i * v + s->labels[i]] -= c;
    }
}

gt_tensor *gt_cross_entropy(gt_ctx *ctx, gt_tensor *logits, const int32_t *labels,
                            const gt_real *weights, double *weight_sum, gt_real *row_ce) {
    if (!gt_ok(ctx)) return NULL;
    if (!logits) return gt_fail(ctx, GT_ERR_ARG, "cross_entropy: NULL logits");
    if (logits->ndim < 1)
        return gt_fail(ctx, GT_ERR_SHAPE, "cross_entropy: logits must be [..., V], got %s",
                       gt_shp(logits));
    const int64_t v = logits->shape[logits->ndim - 1];
    int64_t n = 1;
    for (int d = 0; d < logits->ndim - 1; d++) n *= logits->shape[d];
    if (n > 0 && v == 0)
        return gt_fail(ctx, GT_ERR_SHAPE, "cross_entropy: logits %s have no classes",
                       gt_shp(logits));
    if (!labels && n > 0)
        return gt_fail(ctx, GT_ERR_ARG, "cross_entropy: NULL labels for logits %s",
                       gt_shp(logits));
    /* Validate everything before computing, so an error leaves no partial output behind. */
    double wsum = 0;
    for (int64_t i = 0; i < n; i++) {
        gt_real w = weights ? weights[i] : 1;
        if (!isfinite(w) || w < 0)
            return gt_fail(ctx, GT_ERR_ARG, "cross_entropy: weight %g at row %lld is %s "
                           "(logits %s)", (double)w, (long long)i,
                           isfinite(w) ? "negative" : "not finite", gt_shp(logits));
        if (w != 0 && (labels[i] < 0 || labels[i] >= v))
            return gt_fail(ctx, GT_ERR_ARG, "cross_entropy: label %d at row %lld outside "
                           "[0, %lld) of logits %s (weight %g)", labels[i], (long long)i,
                           (long long)v, gt_shp(logits), (double)w);
        wsum += w;
    }

    gt_tensor *out = gt_op_out(ctx, 0, NULL, &logits, 1);
    double *ce = gt_alloc(ctx, (size_t)(n ? n : 1) * sizeof *ce);
    if (!out || !ce) return NULL;
    ce_saved *s = NULL;
    if (out->requires_grad) {
        s = gt_alloc(ctx, sizeof *s);
        if (!s) return NULL;
        size_t cnt = (size_t)(n ? n : 1);
        *s = (ce_saved){.n = n, .v = v};
        s->labels = gt_alloc(ctx, cnt * sizeof *s->labels);
        s->weights = weights ? gt_alloc(ctx, cnt * sizeof *s->weights) : NULL;
        s->rmax = gt_alloc(ctx, cnt * sizeof *s->rmax);
        s->inv_sum = gt_alloc(ctx, cnt * sizeof *s->inv_sum);
        if (!gt_ok(ctx)) return NULL;
        if (n) memcpy(s->labels, labels, (size_t)n * sizeof *s->labels);
        if (weights && n) memcpy(s->weights, weights, (size_t)n * sizeof *s->weights);
    }

    const gt_real *z = logits->data;
    int nt = gt_threads();
#pragma omp parallel for schedule(dynamic, rows_per_chunk(v)) num_threads(nt) if (n * v > 32768)
    for (int64_t i = 0; i < n; i++) {
        gt_real w = weights ? weights[i] : 1;
        ce[i] = 0;
        if (w == 0) continue;
        const gt_real *zi = z + i * v;
        gt_real m = row_max(zi, v);
        double sum = row_sum_exp(zi, v, m);
        ce[i] = (double)m + log(sum) - (double)zi[labels[i]];
        if (s) {
            s->rmax[i] = m;
            s->inv_sum[i] = 1.0 / sum;
        }
    }

    /* Serial, in row order: the total does not depend on the thread count. */
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        double w = weights ? (double)weights[i] : 1.0;
        if (w != 0) total += w * ce[i];
        if (row_ce) row_ce[i] = (gt_real)ce[i];
    }
    out->data[0] = (gt_real)total;
    if (weight_sum) *weight_sum = wsum;
    if (!gt_record(ctx, "cross_entropy", ce_backward, out, &logits, 1, s)) return NULL;
    return out;
}
