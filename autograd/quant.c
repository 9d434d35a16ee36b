/* quant.c: Q8_0 blocks (autograd/quant.h). */
#include "autograd/quant.h"

#include <math.h>
#include <string.h>

#include "util/half.h"

static void quantize_block(const gt_real *x, uint8_t *b) {
    float amax = 0;
    for (int i = 0; i < GT_Q8_BLOCK; i++) {
        float a = fabsf((float)x[i]);
        amax = a > amax ? a : amax;
    }
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    uint16_t h = gt_f32_to_f16(d);
    memcpy(b, &h, 2);
    int8_t *q = (int8_t *)(b + 2);
    for (int i = 0; i < GT_Q8_BLOCK; i++) q[i] = (int8_t)roundf((float)x[i] * id);
}

void gt_q8_quantize(const gt_real *src, uint8_t *dst, int64_t n) {
    int64_t nb = n / GT_Q8_BLOCK;
#pragma omp parallel for schedule(static) if (nb > 4096)
    for (int64_t i = 0; i < nb; i++) quantize_block(src + i * GT_Q8_BLOCK, dst + i * GT_Q8_BYTES);
}

void gt_q8_dequant(const uint8_t *src, gt_real *dst, int64_t n) {
    int64_t nb = n / GT_Q8_BLOCK;
#pragma omp parallel for schedule(static) if (nb > 2048)
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * GT_Q8_BYTES;
        uint16_t h;
        memcpy(&h, b, 2);
        const float d = gt_f16_to_f32(h);
        const int8_t *q = (const int8_t *)(b + 2);
        gt_real *y = dst + i * GT_Q8_BLOCK;
        for (int k = 0; k < GT_Q8_BLOCK; k++) y[k] = (gt_real)(d * (float)q[k]);
    }
}

int gt_qt_block(uint32_t type) {
    switch (type) {
    case GT_QT_Q5_0: case GT_QT_Q8_0: return 32;
    case GT_QT_Q4_K: case GT_QT_Q6_K: return 256;
    default: return 0;
    }
}

int gt_qt_block_bytes(uint32_t type) {
    switch (type) {
    case GT_QT_Q5_0: return 22;
    case GT_QT_Q8_0: return GT_Q8_BYTES;
    case GT_QT_Q4_K: return 144;
    case GT_QT_Q6_K: return 210;
    default: return 0;
    }
}

int64_t gt_qt_bytes(uint32_t type, int64_t n) {
    int b = gt_qt_block(type);
    return b ? n / b * gt_qt_block_bytes(type) : 0;
}

const char *gt_qt_name(uint32_t type) {
    switch (type) {
    case GT_QT_Q5_0: return "Q5_0";
    case GT_QT_Q8_0: return "Q8_0";
    case GT_QT_Q4_K: return "Q4_K";
    case GT_QT_Q6_K: return "Q6_K";
    default: return "?";
    }
}

static float half_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return gt_f16_to_f32(h);
}

/* Q5_0: d, qh[4] (the fifth bits), qs[16] (low nibbles: first half, high: second), offset 16 */
static void q5_0_block(const uint8_t *b, float *y) {
    float d = half_at(b);
    const uint8_t *qs = b + 6;
    uint32_t qh;
    memcpy(&qh, b + 2, 4);
    for (int j = 0; j < 16; j++) {
        int x0 = (qs[j] & 0xF) | (int)(((qh >> j) << 4) & 0x10);
        int x1 = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
        y[j] = d * (float)(x0 - 16);
        y[j + 16] = d * (float)(x1 - 16);
    }
}

/* K-quant 6-bit scale and min of sub-block j from the 12 packed bytes */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q4_K: d, dmin, scales[12], qs[128]; value = d * scale * q - dmin * min per sub-block of 32 */
static void q4_k_block(const uint8_t *b, float *y) {
    float d = half_at(b), dmin = half_at(b + 2);
    const uint8_t *sc = b + 4, *q = b + 16;
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
        uint8_t s1, m1, s2, m2;
        scale_min_k4(is, sc, &s1, &m1);
        scale_min_k4(is + 1, sc, &s2, &m2);
        float d1 = d * s1, mm1 = dmin * m1, d2 = d * s2, mm2 = dmin * m2;
        for (int l = 0; l < 32; l++) {
            y[j + l] = d1 * (float)(q[l] & 0xF) - mm1;
            y[j + 32 + l] = d2 * (float)(q[l] >> 4) - mm2;
        }
    }
}

/* Q6_K: ql[128] (low nibbles), qh[64] (2-bit highs), scales[16] (int8, one per 16), d */
static void q6_k_block(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = half_at(b + 208);
    for (int n = 0; n < 256; n += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = (int)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[n + l] = d * sc[is] * (float)q1;
            y[n + l + 32] = d * sc[is + 2] * (float)q2;
            y[n + l + 64] = d * sc[is + 4] * (float)q3;
            y[n + l + 96] = d * sc[is + 6] * (float)q4;
        }
    }
}

void gt_qt_block_f32(uint32_t type, const uint8_t *b, float *y) {
    switch (type) {
    case GT_QT_Q5_0: q5_0_block(b, y); break;
    case GT_QT_Q8_0: gt_q8_block_f32(b, y); break;
    case GT_QT_Q4_K: q4_k_block(b, y); break;
    case GT_QT_Q6_K: q6_k_block(b, y); break;
    default: break;
    }
}

/* ---------------------------------------------------------------- Q4_K quantiser
 * The reference (ggml's quantize_row_q4_K_ref) algorithm, step for step in fp32 so the bytes
 * agree: per sub-block of 32, weights |x| + rms, a min-max start refined over 21 candidate
 * scales by weighted least squares; then the 8 scales and mins quantised to 6 bits against
 * their maxima, and the values requantised with the rounded scales. */

/* Round to nearest, ties to even, for |v| < 2^22: adding 1.5 * 2^23 leaves the integer in the
 * low mantissa bits (inline and vectorisable, unlike lrintf's call). */
static inline int round_even(float v) {
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static int clamp_q(int l, int hi) { return l < 0 ? 0 : l > hi ? hi : l; }

/* Scale of one sub-block (its min, negated, into *neg_min), levels into L. */
static float fit_sub_block(const float *x, const float *w, uint8_t *L, float *neg_min) {
    enum { N = 32, NMAX = 15, NSTEP = 20 };
    float lo = x[0], hi = x[0], sw = w[0], sx = w[0] * x[0];
    for (int i = 1; i < N; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
        sw += w[i];
        sx += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        memset(L, 0, N);
        *neg_min = -lo;
        return 0;
    }
    /* lo moves to each better fit's min: later candidates are taken against it */
    float iscale = NMAX / (hi - lo), scale = 1 / iscale, best = 0;
    for (int i = 0; i < N; i++) {
        L[i] = (uint8_t)clamp_q(round_even(iscale * (x[i] - lo)), NMAX);
        float e = scale * L[i] + lo - x[i];
        best += w[i] * (e * e);
    }
    uint8_t aux[N];
    for (int s = 0; s <= NSTEP; s++) {
        iscale = (-1.0f + 0.1f * s + NMAX) / (hi - lo);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < N; i++) {
            int l = clamp_q(round_even(iscale * (x[i] - lo)), NMAX);
            aux[i] = (uint8_t)l;
            sl += w[i] * l;
            sl2 += w[i] * l * l;
            sxl += w[i] * l * x[i];
        }
        float det = sw * sl2 - sl * sl;
        if (!(det > 0)) continue;
        float sc = (sw * sxl - sx * sl) / det, m = (sl2 * sx - sl * sxl) / det;
        if (m > 0) m = 0, sc = sxl / sl2;
        float err = 0;
        for (int i = 0; i < N; i++) {
            float e = sc * aux[i] + m - x[i];
            err += w[i] * (e * e);
        }
        if (err < best) {
            memcpy(L, aux, N);
            best = err, scale = sc, lo = m;
        }
    }
    *neg_min = -lo;
    return scale;
}

static void q4_k_quantize_block(const float *x, uint8_t *b) {
    float scales[8], mins[8], w[32], max_scale = 0, max_min = 0;
    uint8_t L[256], *sc = b + 4;
    for (int j = 0; j < 8; j++) {
        const float *xj = x + 32 * j;
        float s2 = 0;
        for (int l = 0; l < 32; l++) s2 += xj[l] * xj[l];
        float av = sqrtf(s2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av + fabsf(xj[l]);
        scales[j] = fit_sub_block(xj, w, L + 32 * j, &mins[j]);
        max_scale = scales[j] > max_scale ? scales[j] : max_scale;
        max_min = mins[j] > max_min ? mins[j] : max_min;
    }
    float is = max_scale > 0 ? 63.f / max_scale : 0.f, im = max_min > 0 ? 63.f / max_min : 0.f;
    memset(sc, 0, 12);
    for (int j = 0; j < 8; j++) {
        int ls = round_even(is * scales[j]), lm = round_even(im * mins[j]);
        ls = ls > 63 ? 63 : ls, lm = lm > 63 ? 63 : lm;
        if (j < 4) {
            sc[j] = (uint8_t)ls, sc[j + 4] = (uint8_t)lm;
        } else { /* low nibbles in bytes 8..11, top two bits over bytes 0..7 */
            sc[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
            sc[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    uint16_t hd = gt_f32_to_f16(max_scale / 63.f), hm = gt_f32_to_f16(max_min / 63.f);
    memcpy(b, &hd, 2);
    memcpy(b + 2, &hm, 2);
    float d = gt_f16_to_f32(hd), dmin = gt_f16_to_f32(hm);
    for (int j = 0; j < 8; j++) { /* requantise against the stored (rounded) scales */
        uint8_t s, m;
        scale_min_k4(j, sc, &s, &m);
        float dj = d * s, mj = dmin * m;
        if (dj == 0) continue;
        for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)clamp_q(round_even((x[32 * j + l] + mj) / dj), 15);
    }
    uint8_t *q = b + 16;
    for (int j = 0; j < 256; j += 64, q += 32)
        for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

void gt_q4k_quantize(const gt_real *src, uint8_t *dst, int64_t n) {
    int64_t nb = n / 256;
#pragma omp parallel for schedule(static) if (nb > 64)
    for (int64_t i = 0; i < nb; i++) {
        float x[256];
        for (int k = 0; k < 256; k++) x[k] = (float)src[i * 256 + k];
        q4_k_quantize_block(x, dst + i * 144);
    }
}
