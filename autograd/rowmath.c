#include "autograd/rowmath.h"

#include <math.h>
#include <string.h>
#include <tgmath.h>

#ifdef GT_REAL_DOUBLE
/* The fp64 engine is the gradient-check reference: plain loops, libm exp. */

gt_real gt_row_max(const gt_real *z, int64_t v) {
    gt_real m = -INFINITY;
    for (int64_t j = 0; j < v; j++)
        if (z[j] > m) m = z[j];
    return m;
}

double gt_row_sum_exp(const gt_real *z, int64_t v, gt_real m) {
    double s = 0;
    for (int64_t j = 0; j < v; j++) s += exp(z[j] - m);
    return s;
}

void gt_row_add_exp(gt_real *dz, const gt_real *z, int64_t v, gt_real m, gt_real c) {
    for (int64_t j = 0; j < v; j++) dz[j] += c * exp(z[j] - m);
}

void gt_row_exp_grad(gt_real *z, int64_t v, gt_real m, gt_real c, gt_real inv_cap) {
    for (int64_t j = 0; j < v; j++) {
        gt_real t = z[j] * inv_cap;
        z[j] = c * exp(z[j] - m) * (1 - t * t);
    }
}

double gt_row_exp_sum_grad(gt_real *z, int64_t v, gt_real m, gt_real inv_cap) {
    double s = 0;
    for (int64_t j = 0; j < v; j++) {
        gt_real t = z[j] * inv_cap, e = exp(z[j] - m);
        s += e;
        z[j] = e * (1 - t * t);
    }
    return s;
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

gt_real gt_row_max(const float *z, int64_t v) {
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

double gt_row_sum_exp(const float *z, int64_t v, float m) {
    vd acc = {0};
    int64_t j = 0;
    for (; j + VL <= v; j += VL) acc += __builtin_convertvector(vexp(vload(z + j) - m), vd);
    if (j < v) acc += __builtin_convertvector(vexp(vload_tail(z + j, v - j, -INFINITY) - m), vd);
    double s = 0;
    for (int l = 0; l < VL; l++) s += acc[l];
    return s;
}

void gt_row_add_exp(float *dz, const float *z, int64_t v, float m, float c) {
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

void gt_row_exp_grad(float *z, int64_t v, float m, float c, float inv_cap) {
    int64_t j = 0;
    for (; j + VL <= v; j += VL) {
        vf x = vload(z + j), t = x * inv_cap;
        vf d = c * vexp(x - m) * (1.0f - t * t);
        memcpy(z + j, &d, sizeof d);
    }
    for (; j < v; j++) {
        float t = z[j] * inv_cap;
        z[j] = c * expf(z[j] - m) * (1.0f - t * t);
    }
}
/* The sum in fp32 lanes over pieces of 16 vectors (16 terms of at most 1 per lane), the pieces
 * added in double: not converting every vector to double, and with no soft-cap (inv_cap 0, the
 * usual case) no cap factor, made the 270M's LM head 1.3% faster (alternated in one process). */
double gt_row_exp_sum_grad(float *z, int64_t v, float m, float inv_cap) {
    vd acc = {0};
    int64_t j = 0;
    while (j + VL <= v) {
        vf part = {0};
        int64_t end = v - j < 16 * VL ? j + (v - j) / VL * VL : j + 16 * VL;
        if (inv_cap == 0)
            for (; j < end; j += VL) {
                vf e = vexp(vload(z + j) - m);
                part += e;
                memcpy(z + j, &e, sizeof e);
            }
        else
            for (; j < end; j += VL) {
                vf x = vload(z + j), t = x * inv_cap, e = vexp(x - m);
                part += e;
                vf d = e * (1.0f - t * t);
                memcpy(z + j, &d, sizeof d);
            }
        acc += __builtin_convertvector(part, vd);
    }
    double s = 0;
    for (int l = 0; l < VL; l++) s += acc[l];
    for (; j < v; j++) {
        float t = z[j] * inv_cap, e = expf(z[j] - m);
        s += e;
        z[j] = e * (1.0f - t * t);
    }
    return s;
}
#endif
