/* qdot.c: Q8_0 x int8 activation dot products (autograd/qdot.h). */
#include "autograd/qdot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/blas.h"
#include "autograd/quant.h"
#include "util/half.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define QDOT_X86 1
#endif

const char *gt_qdot_kernel_name(gt_qdot_kern k) {
    return k == GT_QDOT_VNNI512 ? "avx512vnni" : k == GT_QDOT_SCALAR ? "scalar" : "off";
}

static bool cpu_vnni(void) {
#ifdef QDOT_X86
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
#else
    return false;
#endif
}

static int chosen = -1; /* set once before the threads read it (first decode step or a test) */

gt_qdot_kern gt_qdot_set_kernel(gt_qdot_kern k) {
    chosen = k == GT_QDOT_VNNI512 && !cpu_vnni() ? GT_QDOT_SCALAR : k;
    return (gt_qdot_kern)chosen;
}

gt_qdot_kern gt_qdot_kernel(void) {
    if (chosen >= 0) return (gt_qdot_kern)chosen;
    const char *env = getenv("GT_QDOT_KERNEL");
    gt_qdot_kern k = env && !strcmp(env, "off")      ? GT_QDOT_OFF
                     : env && !strcmp(env, "scalar") ? GT_QDOT_SCALAR
                                                     : GT_QDOT_VNNI512;
    return gt_qdot_set_kernel(k);
}

void gt_qdot_quantize(const float *x, int64_t n, void *buf, gt_qdot_x *out) {
    int8_t *q = buf;
    float *d = (float *)(q + n);
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(xb[i]));
        float s = amax / 127.0f, inv = s != 0 ? 1.0f / s : 0.0f;
        d[b] = s;
        for (int i = 0; i < 32; i++) q[b * 32 + i] = (int8_t)roundf(xb[i] * inv);
    }
    out->q = q;
    out->d = d;
    out->n = n;
}

void gt_qdot_q5_0_to_q8_0(const uint8_t *src, uint8_t *dst, int64_t nblocks) {
    for (int64_t b = 0; b < nblocks; b++) {
        const uint8_t *s = src + b * 22, *qs = s + 6;
        uint8_t *o = dst + b * GT_Q8_BYTES;
        uint32_t qh;
        memcpy(o, s, 2);
        memcpy(&qh, s + 2, 4);
        int8_t *q = (int8_t *)(o + 2);
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)(((qs[j] & 0xF) | (((qh >> j) << 4) & 0x10)) - 16);
            q[j + 16] = (int8_t)(((qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16);
        }
    }
}

/* One row of W (nb Q8_0 blocks) against x: the reference the vector kernel must match up to
 * fp32 summation order. */
static float row_scalar(const uint8_t *w, const gt_qdot_x *x, int64_t b0, int64_t nb) {
    float acc = 0;
    for (int64_t b = b0; b < nb; b++) {
        const uint8_t *blk = w + b * GT_Q8_BYTES;
        uint16_t h;
        memcpy(&h, blk, 2);
        const int8_t *qw = (const int8_t *)(blk + 2), *qx = x->q + b * 32;
        int32_t s = 0;
        for (int i = 0; i < 32; i++) s += (int32_t)qw[i] * qx[i];
        acc += gt_f16_to_f32(h) * x->d[b] * (float)s;
    }
    return acc;
}

#ifdef QDOT_X86
#define QDOT_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vnni,f16c")))

/* Two blocks per 512-bit step: lanes 0-7 sum block b, lanes 8-15 block b + 1. vpdpbusd wants
 * unsigned x signed bytes, so it gets |w| and x with w's sign moved onto it (|q| <= 127 on the
 * activation side: the negation cannot overflow). xs: per block pair, dx[b] in lanes 0-7 and
 * dx[b+1] in lanes 8-15. */
QDOT_TARGET static float row_vnni(const uint8_t *w, const gt_qdot_x *x, const __m512 *xs) {
    int64_t nb = x->n / 32, np = nb / 2;
    __m512 acc = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    for (int64_t p = 0; p < np; p++) {
        const uint8_t *b0 = w + 2 * p * GT_Q8_BYTES, *b1 = b0 + GT_Q8_BYTES;
        __m256i lo = _mm256_loadu_si256((const __m256i *)(b0 + 2));
        __m256i hi = _mm256_loadu_si256((const __m256i *)(b1 + 2));
        __m512i qw = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        __m512i qx = _mm512_load_si512((const void *)(x->q + p * 64));
        __mmask64 neg = _mm512_movepi8_mask(qw);
        __m512i sx = _mm512_mask_sub_epi8(qx, neg, zero, qx);
        __m512i dot = _mm512_dpbusd_epi32(zero, _mm512_abs_epi8(qw), sx);
        uint16_t h0, h1;
        memcpy(&h0, b0, 2);
        memcpy(&h1, b1, 2);
        __m512 dw = _mm512_insertf32x8(_mm512_set1_ps(_cvtsh_ss(h0)), _mm256_set1_ps(_cvtsh_ss(h1)), 1);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, xs[p]), acc);
    }
    float r = _mm512_reduce_add_ps(acc);
    return nb % 2 ? r + row_scalar(w, x, nb - 1, nb) : r;
}

QDOT_TARGET static void rows_vnni(const uint8_t *w, int64_t r0, int64_t r1, const gt_qdot_x *x, const __m512 *xs,
                                  float *y) {
    int64_t rb = gt_q8_bytes(x->n);
    for (int64_t r = r0; r < r1; r++) y[r] = row_vnni(w + r * rb, x, xs);
}

QDOT_TARGET static void scales_vnni(const gt_qdot_x *x, __m512 *xs) {
    for (int64_t p = 0; p < x->n / 64; p++)
        xs[p] = _mm512_insertf32x8(_mm512_set1_ps(x->d[2 * p]), _mm256_set1_ps(x->d[2 * p + 1]), 1);
}
#endif

/* Rows per parallel chunk and the size below which one thread does it all (a region's start
 * costs more than a small matrix's read). */
enum { QDOT_CHUNK = 16 };
#define QDOT_PAR_MIN ((int64_t)1 << 17)

void gt_qdot_matvec(gt_qdot_kern k, const uint8_t *w, int64_t rows, const gt_qdot_x *x, float *y) {
    int64_t rb = gt_q8_bytes(x->n), nch = (rows + QDOT_CHUNK - 1) / QDOT_CHUNK;
    bool par = rows * x->n >= QDOT_PAR_MIN && gt_threads() > 1;
#ifdef QDOT_X86
    if (k == GT_QDOT_VNNI512) {
        __m512 *xs = aligned_alloc(64, (size_t)(x->n / 64 + 1) * sizeof *xs);
        if (xs) {
            scales_vnni(x, xs);
#pragma omp parallel for schedule(static) if (par)
            for (int64_t c = 0; c < nch; c++) {
                int64_t r0 = c * QDOT_CHUNK, r1 = r0 + QDOT_CHUNK < rows ? r0 + QDOT_CHUNK : rows;
                rows_vnni(w, r0, r1, x, xs, y);
            }
            free(xs);
            return;
        }
    }
#else
    (void)k;
#endif
#pragma omp parallel for schedule(static) if (par)
    for (int64_t r = 0; r < rows; r++) y[r] = row_scalar(w + r * rb, x, 0, x->n / 32);
}

static void qdot_linear_rows(const gt_real *x, int64_t M, const uint8_t *w, int64_t R, int64_t C, void *qbuf,
                             float *xf, float *yf, gt_real *y) {
    gt_qdot_kern k = gt_qdot_kernel() == GT_QDOT_OFF ? GT_QDOT_SCALAR : gt_qdot_kernel();
    for (int64_t m = 0; m < M; m++) {
        const float *xr = (const float *)(x + m * C);
        if (sizeof(gt_real) != sizeof(float)) { /* the f64 build: through fp32 */
            for (int64_t i = 0; i < C; i++) xf[i] = (float)x[m * C + i];
            xr = xf;
        }
        gt_qdot_x qx;
        gt_qdot_quantize(xr, C, qbuf, &qx);
        float *yr = sizeof(gt_real) == sizeof(float) ? (float *)(y + m * R) : yf;
        gt_qdot_matvec(k, w, R, &qx, yr);
        if (sizeof(gt_real) != sizeof(float))
            for (int64_t i = 0; i < R; i++) y[m * R + i] = yf[i];
    }
}

gt_tensor *gt_qdot_linear(gt_ctx *ctx, gt_tensor *x, const uint8_t *w, int64_t rows, int64_t cols) {
    if (!gt_ok(ctx)) return NULL;
    if (!x || !w) return gt_fail(ctx, GT_ERR_ARG, "qdot_linear: NULL input");
    if (x->ndim < 1 || gt_cols(x) != cols || cols % 32 || rows < 1)
        return gt_fail(ctx, GT_ERR_SHAPE, "qdot_linear: x %s does not fit a Q8_0 W [%lld, %lld] (width a "
                       "multiple of 32)", gt_shp(x), (long long)rows, (long long)cols);
    if (x->requires_grad && ctx->grad_enabled)
        return gt_fail(ctx, GT_ERR_ARG, "qdot_linear: inference only, but x %s needs a gradient", gt_shp(x));
    int64_t shape[GT_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = rows;
    gt_tensor *out = gt_op_out(ctx, x->ndim, shape, &x, 1);
    if (!out) return NULL;
    bool f64 = sizeof(gt_real) != sizeof(float);
    size_t qb = ((size_t)gt_qdot_x_bytes(cols) + 63) & ~(size_t)63;
    void *qbuf = aligned_alloc(64, qb);
    float *tmp = f64 ? malloc((size_t)(cols + rows) * sizeof *tmp) : NULL;
    if (!qbuf || (f64 && !tmp)) {
        free(qbuf);
        free(tmp);
        return gt_fail(ctx, GT_ERR_NOMEM, "qdot_linear: out of memory for x %s", gt_shp(x));
    }
    qdot_linear_rows(x->data, gt_rows(x), w, rows, cols, qbuf, tmp, tmp ? tmp + cols : NULL, out->data);
    free(qbuf);
    free(tmp);
    return out;
}
